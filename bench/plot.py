"""Draws bench/plots/*.png from bench/results/scaling.csv (written by the harness)."""

import csv
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

here = pathlib.Path(__file__).resolve().parent
rows = list(csv.DictReader(open(here / "results" / "scaling.csv")))
(here / "plots").mkdir(exist_ok=True)

for axis, xlabel, name in [
    ("sessions", "live sessions in MemoryStore", "sessions.png"),
    ("data_bytes", "session data (bytes of padding)", "data_size.png"),
]:
    points = [r for r in rows if r["axis"] == axis]
    if not points:
        continue
    x = [int(r["value"]) for r in points]
    rps = [float(r["requests_per_s"]) for r in points]
    rss = [int(r["peak_rss_kb"]) / 1024 for r in points]
    fig, left = plt.subplots(figsize=(6, 4))
    left.plot(x, rps, "o-", color="tab:blue")
    left.set_xscale("log")
    left.set_xlabel(xlabel)
    left.set_ylabel("requests/s (read + write)", color="tab:blue")
    left.set_ylim(bottom=0)
    right = left.twinx()
    right.plot(x, rss, "s--", color="tab:red")
    right.set_ylabel("peak RSS (MiB)", color="tab:red")
    right.set_ylim(bottom=0)
    left.set_title(f"session-layer MemoryStore: requests/s vs {xlabel}", fontsize=9)
    fig.tight_layout()
    fig.savefig(here / "plots" / name, dpi=100)
    print(f"wrote {here / 'plots' / name}")
