//! The load-benchmark harness: starts one server per subject on loopback,
//! drives it with `wrk`, and prints one table (requests/s, p50/p99 latency,
//! ratio to bare axum), then the scaling runs (live sessions, data size).
//!
//! Run with: `bench/run` (which builds this package in release mode first).
//!
//! Settings, from the environment:
//!
//! - `BENCH_RUNS` (3) and `BENCH_SECS` (5): rounds and seconds per run. All
//!   servers start first; each round runs every case once, each between two
//!   bare-axum runs driven the same way (cookie script or no cookie), and a
//!   case's ratio in a round is its rate over the mean of those two. A case reports its median run, its median ratio and the
//!   range of its ratios. BENCHMARKS.md's tables come from 5 runs of 10 s.
//!   Each run also reads the server's CPU time (`/proc/<pid>/task/*/schedstat`)
//!   and reports it per request, and bare axum's CPU per request over the
//!   case's: the ratio a server-bound machine would reach, which does not
//!   depend on how fast wrk is at the time.
//! - `BENCH_WARMUP_SECS` (1): an uncounted wrk run of every case first.
//! - `BENCH_CONNECTIONS` (64) and `BENCH_THREADS` (1 when pinned, else 2):
//!   wrk's `-c` and `-t`.
//! - `BENCH_PIN` (1 on 2 CPUs or more): the server runs on CPU 0 with one
//!   tokio worker, wrk and redis-server on CPU 1 (`taskset`), so the server's
//!   per-request cost, not the two sharing cores, sets the rate.
//! - `BENCH_SCALE_RUNS` (1) and `BENCH_SCALE_SECS` (3): the same for scaling.
//! - `BENCH_SCALE_SESSIONS` (`10000,100000,1000000`) and `BENCH_SCALE_BYTES`
//!   (`100,4096,65536`); `BENCH_SKIP_SCALING=1` skips the scaling part.
//! - `BENCH_SUBJECTS` (all): a comma-separated list of the subjects to
//!   measure (`sl-memory`, `ts-memory`, `sl-redis`, `ts-redis`); bare axum is
//!   always measured.
//! - `BENCH_BASELINE` (unset): the `server` binary built from another
//!   revision of session-layer (`bench/` copied into a checkout of it); its
//!   session-layer cases run in the same rounds, to compare two revisions on
//!   one machine at one time.
//!
//! Results are also written to `bench/results/` (`table.md`, `scaling.csv`),
//! and `bench/plot.py` draws `bench/plots/*.png` from them when python3 has
//! matplotlib.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

/// The number of pre-made sessions the cookie cases rotate over.
const COOKIES: usize = 64;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn env_list(name: &str, default: &str) -> Vec<usize> {
    std::env::var(name)
        .unwrap_or_else(|_| default.to_owned())
        .split(',')
        .filter_map(|item| item.trim().parse().ok())
        .collect()
}

/// The CPU the server runs on, and the one wrk (and redis-server) run on,
/// when pinning is on.
const SERVER_CPU: usize = 0;
const CLIENT_CPU: usize = 1;

/// Whether to pin: `BENCH_PIN` (1 where there are 2 CPUs or more).
fn pin() -> bool {
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    env_or("BENCH_PIN", usize::from(cpus >= 2)) == 1
}

/// Returns a command for `program`, pinned to `cpu` with `taskset` when
/// pinning is on.
fn pinned(cpu: usize, program: &Path) -> Command {
    if pin() {
        let mut command = Command::new("taskset");
        command.arg("-c").arg(cpu.to_string()).arg(program);
        command
    } else {
        Command::new(program)
    }
}

/// A running server, killed on drop.
struct Server {
    child: Child,
    addr: SocketAddr,
    rss_before_kb: u64,
    rss_after_kb: u64,
    _stdout: BufReader<ChildStdout>,
}

impl Server {
    fn start(subject: &str, env: &[(&str, String)]) -> Self {
        Self::start_binary(subject, env, None)
    }

    /// Starts `binary` (by default the `server` built beside the harness).
    fn start_binary(subject: &str, env: &[(&str, String)], binary: Option<&Path>) -> Self {
        let binary = binary.map_or_else(
            || {
                std::env::current_exe()
                    .expect("the harness knows its path")
                    .with_file_name("server")
            },
            Path::to_path_buf,
        );
        let mut command = pinned(SERVER_CPU, &binary);
        command.arg(subject).stdout(Stdio::piped());
        if pin() {
            command.env("TOKIO_WORKER_THREADS", "1");
        }
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {}: {error}", binary.display()));
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
        let (mut before, mut after) = (0, 0);
        loop {
            let mut line = String::new();
            if stdout.read_line(&mut line).expect("server output") == 0 {
                panic!("server {subject} exited before listening");
            }
            let mut words = line.split_whitespace();
            match (words.next(), words.next()) {
                (Some("rss_before"), Some(kb)) => before = kb.parse().unwrap_or(0),
                (Some("rss_after"), Some(kb)) => after = kb.parse().unwrap_or(0),
                (Some("listening"), Some(addr)) => {
                    return Self {
                        child,
                        addr: addr.parse().expect("a socket address"),
                        rss_before_kb: before,
                        rss_after_kb: after,
                        _stdout: stdout,
                    };
                }
                _ => {}
            }
        }
    }

    /// Returns the server's peak resident set so far, in kB.
    fn peak_rss_kb(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// Makes `COOKIES` sessions through `/init` and returns their cookies,
    /// each checked: a session subject must read the counter `/init` set, or
    /// the run would measure anonymous requests.
    fn cookies(&self, pad: usize) -> Vec<String> {
        (0..COOKIES)
            .map(|i| {
                let response = http_get(self.addr, &format!("/init?pad={pad}"), None);
                response
                    .lines()
                    .find_map(|line| {
                        let (name, value) = line.split_once(':')?;
                        name.eq_ignore_ascii_case("set-cookie").then(|| {
                            value
                                .trim()
                                .split(';')
                                .next()
                                .unwrap_or_default()
                                .to_owned()
                        })
                    })
                    .map_or_else(
                        // Bare axum sets no cookie; it gets a cookie of the
                        // same size, so every subject parses the same request.
                        || format!("id={i:064}"),
                        |cookie| {
                            let read = http_get(self.addr, "/read", Some(&cookie));
                            assert!(
                                read.ends_with("\r\n\r\n1"),
                                "the server did not take its own session cookie: {read}"
                            );
                            cookie
                        },
                    )
            })
            .collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One plain HTTP/1.1 GET, with a `Cookie` header if given; returns the
/// response head and body.
fn http_get(addr: SocketAddr, path: &str, cookie: Option<&str>) -> String {
    let mut stream = TcpStream::connect(addr).expect("the server accepts");
    let cookie = cookie.map_or_else(String::new, |cookie| format!("Cookie: {cookie}\r\n"));
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{cookie}Connection: close\r\n\r\n"
    )
    .expect("the request is sent");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("a response");
    response
}

/// A `redis-server` on a free loopback port, without persistence.
struct Redis {
    child: Child,
    port: u16,
    _dir: TempDir,
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Redis {
    fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free loopback port")
            .port();
        let dir = std::env::temp_dir().join(format!("session-layer-bench-redis-{port}"));
        std::fs::create_dir_all(&dir).expect("a temp dir");
        let child = pinned(CLIENT_CPU, Path::new("redis-server"))
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(&dir)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed (apt-get install redis-server)");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) {
                let mut reply = [0_u8; 7];
                if stream.write_all(b"PING\r\n").is_ok()
                    && stream.read_exact(&mut reply).is_ok()
                    && &reply == b"+PONG\r\n"
                {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            child,
            port,
            _dir: TempDir(dir),
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One wrk run's numbers.
#[derive(Clone, Copy, Default)]
struct Run {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
    /// The server's CPU time (all its threads, user and kernel) per
    /// request, in microseconds.
    cpu_us: f64,
}

/// Parses `12.34us`, `1.2ms` or `1.00s` into milliseconds.
fn millis(text: &str) -> f64 {
    let split = text
        .find(|c: char| c.is_ascii_alphabetic())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().unwrap_or(f64::NAN);
    match unit {
        "us" => number / 1000.0,
        "ms" => number,
        "s" => number * 1000.0,
        "m" => number * 60_000.0,
        _ => f64::NAN,
    }
}

fn parse_wrk(output: &str) -> Run {
    let mut run = Run::default();
    for line in output.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["Requests/sec:", rps] => run.rps = rps.parse().unwrap_or(0.0),
            ["50%", latency] => run.p50_ms = millis(latency),
            ["99%", latency] => run.p99_ms = millis(latency),
            ["Non-2xx", "or", "3xx", "responses:", count] => {
                run.errors += count.parse::<u64>().unwrap_or(0);
            }
            ["Socket", "errors:", rest @ ..] => {
                run.errors += rest
                    .iter()
                    .filter_map(|word| word.trim_end_matches(',').parse::<u64>().ok())
                    .sum::<u64>();
            }
            _ => {}
        }
    }
    run
}

/// Writes a wrk script that sends the cookies round-robin, each wrk thread
/// over its own share of them, so that in-flight requests use distinct
/// sessions.
fn cookie_script(dir: &Path, server: &Server, cookies: &[String]) -> PathBuf {
    let mut lua = String::from("local cookies = {\n");
    for cookie in cookies {
        let _ = writeln!(lua, "  {cookie:?},");
    }
    lua.push_str(
        r#"}
local threads = 0
function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end
local requests = {}
local i = 0
-- The requests are formatted once per thread, so that wrk's Lua costs a
-- table look-up per request.
function init(args)
  local per = math.floor(#cookies / nthreads)
  for j = 1, per do
    local cookie = cookies[(tid * per + j - 1) % #cookies + 1]
    requests[j] = wrk.format("GET", wrk.path, { Cookie = cookie })
  end
end
function request()
  i = i % #requests + 1
  return requests[i]
end
"#,
    );
    let path = dir.join(format!("cookies-{}.lua", server.addr.port()));
    std::fs::write(&path, lua).expect("the script is written");
    path
}

struct Settings {
    connections: usize,
    threads: usize,
}

/// Returns the CPU time that process `pid` has used so far, all threads, in
/// nanoseconds (`/proc/<pid>/task/*/schedstat`, first field).
fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|stat| stat.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// Runs wrk against `server` and adds the server's CPU time per request.
fn measure(
    settings: &Settings,
    server: &Server,
    url: &str,
    secs: usize,
    script: Option<&Path>,
) -> Run {
    let pid = server.child.id();
    let before = cpu_ns(pid);
    let started = Instant::now();
    let mut run = wrk(settings, url, secs, script);
    let requests = run.rps * started.elapsed().as_secs_f64();
    run.cpu_us = cpu_ns(pid).saturating_sub(before) as f64 / 1000.0 / requests;
    run
}

fn wrk(settings: &Settings, url: &str, secs: usize, script: Option<&Path>) -> Run {
    let mut command = pinned(CLIENT_CPU, Path::new("wrk"));
    command
        .arg(format!("-t{}", settings.threads))
        .arg(format!("-c{}", settings.connections))
        .arg(format!("-d{secs}s"))
        .arg("--latency");
    if let Some(script) = script {
        // `nthreads` is read by the script; wrk passes no thread count itself.
        let text = std::fs::read_to_string(script).expect("the script exists");
        let patched = script.with_extension(format!("t{}.lua", settings.threads));
        std::fs::write(&patched, format!("nthreads = {}\n{text}", settings.threads))
            .expect("the script is written");
        command.arg("-s").arg(&patched);
    }
    let output = command
        .arg(url)
        .output()
        .expect("wrk is installed (apt-get install wrk)");
    parse_wrk(&String::from_utf8_lossy(&output.stdout))
}

/// A case's rate and CPU cost against the bare-axum runs around it.
#[derive(Clone, Copy)]
struct Ratios {
    /// Requests/s over bare axum's.
    rps: f64,
    /// Bare axum's server CPU per request over the case's: the ratio of the
    /// rates a server-bound machine would reach.
    cpu: f64,
}

/// Returns the run with the median requests/s.
fn median_run(runs: &[Run]) -> Run {
    let mut sorted = runs.to_vec();
    sorted.sort_by(|a, b| a.rps.total_cmp(&b.rps));
    sorted[sorted.len() / 2]
}

/// Runs an uncounted warm-up, then `runs` wrk runs, and returns the one with
/// the median requests/s.
fn median(settings: &Settings, url: &str, runs: usize, secs: usize, script: Option<&Path>) -> Run {
    let warmup = env_or("BENCH_WARMUP_SECS", 1);
    if warmup > 0 {
        wrk(settings, url, warmup, script);
    }
    let all: Vec<Run> = (0..runs.max(1))
        .map(|_| wrk(settings, url, secs, script))
        .collect();
    median_run(&all)
}

#[derive(Clone)]
struct Case {
    subject: &'static str,
    label: &'static str,
    path: &'static str,
    cookies: bool,
    /// Served by the `BENCH_BASELINE` binary instead of this build's.
    baseline: bool,
}

fn main() {
    let runs = env_or("BENCH_RUNS", 3);
    let secs = env_or("BENCH_SECS", 5);
    let settings = Settings {
        connections: env_or("BENCH_CONNECTIONS", 64),
        threads: env_or("BENCH_THREADS", if pin() { 1 } else { 2 }),
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let results = root.join("results");
    std::fs::create_dir_all(&results).expect("bench/results");
    let started = Instant::now();

    println!(
        "wrk -t{} -c{} --latency, {runs} x {secs} s per case (median run), {COOKIES} sessions per cookie case",
        settings.threads, settings.connections
    );
    if pin() {
        println!(
            "pinned: server on CPU {SERVER_CPU} with 1 tokio worker; wrk and redis-server on CPU {CLIENT_CPU}"
        );
    }
    let redis = Redis::start();
    let redis_env = [("REDIS_URL", redis.url())];

    let all_cases = [
        Case {
            subject: "sl-memory",
            label: "untouched route (cookie sent, not extracted)",
            path: "/untouched",
            cookies: true,
            baseline: false,
        },
        Case {
            subject: "sl-memory",
            label: "read-only",
            path: "/read",
            cookies: true,
            baseline: false,
        },
        Case {
            subject: "sl-memory",
            label: "read + write counter",
            path: "/write",
            cookies: true,
            baseline: false,
        },
        Case {
            subject: "sl-memory",
            label: "anonymous, nothing written",
            path: "/read",
            cookies: false,
            baseline: false,
        },
        Case {
            subject: "sl-memory",
            label: "anonymous, writes (new session each)",
            path: "/write",
            cookies: false,
            baseline: false,
        },
        Case {
            subject: "ts-memory",
            label: "untouched route (cookie sent, not extracted)",
            path: "/untouched",
            cookies: true,
            baseline: false,
        },
        Case {
            subject: "ts-memory",
            label: "read-only",
            path: "/read",
            cookies: true,
            baseline: false,
        },
        Case {
            subject: "ts-memory",
            label: "read + write counter",
            path: "/write",
            cookies: true,
            baseline: false,
        },
        Case {
            subject: "ts-memory",
            label: "anonymous, nothing written",
            path: "/read",
            cookies: false,
            baseline: false,
        },
        Case {
            subject: "ts-memory",
            label: "anonymous, writes (new session each)",
            path: "/write",
            cookies: false,
            baseline: false,
        },
        Case {
            subject: "sl-redis",
            label: "Redis: read + write counter",
            path: "/write",
            cookies: true,
            baseline: false,
        },
        Case {
            subject: "ts-redis",
            label: "Redis: read + write counter",
            path: "/write",
            cookies: true,
            baseline: false,
        },
    ];
    // `BENCH_SUBJECTS=sl-memory,ts-memory` measures only those subjects
    // (bare axum is always measured).
    let only = std::env::var("BENCH_SUBJECTS").unwrap_or_default();
    let mut cases: Vec<Case> = all_cases
        .into_iter()
        .filter(|case| only.is_empty() || only.split(',').any(|name| name == case.subject))
        .collect();
    // `BENCH_BASELINE=<path>`: the `server` binary of another revision of
    // session-layer, measured in the same rounds as this one.
    let baseline = std::env::var_os("BENCH_BASELINE").map(PathBuf::from);
    if baseline.is_some() {
        let again: Vec<Case> = cases
            .iter()
            .filter(|case| case.subject.starts_with("sl-"))
            .map(|case| Case {
                baseline: true,
                ..case.clone()
            })
            .collect();
        cases.extend(again);
    }

    // Every server starts (and makes its sessions) first; then each round
    // runs every case once, each between two bare-axum runs driven the same
    // way (with the cookie script, or without a cookie). A case's ratio in a
    // round is its rate over the mean of the two bare runs around it, so a
    // drift of the machine's speed during the run (other tenants, frequency)
    // does not turn into a difference between subjects, and wrk's own cost,
    // which differs with and without the script, is the same on both sides.
    let servers: Vec<(Server, Option<PathBuf>)> = cases
        .iter()
        .map(|case| {
            let env: &[(&str, String)] = if case.subject.ends_with("redis") {
                &redis_env
            } else {
                &[]
            };
            let binary = baseline.as_deref().filter(|_| case.baseline);
            let server = Server::start_binary(case.subject, env, binary);
            let script = case
                .cookies
                .then(|| cookie_script(&results, &server, &server.cookies(0)));
            (server, script)
        })
        .collect();
    let bare = Server::start("bare", &[]);
    let bare_script = cookie_script(&results, &bare, &bare.cookies(0));
    let bare_url = format!("http://{}/write", bare.addr);
    let urls: Vec<String> = cases
        .iter()
        .zip(&servers)
        .map(|(case, (server, _))| format!("http://{}{}", server.addr, case.path))
        .collect();

    // Warm-up runs, not counted: connections, allocator, caches.
    let warmup = env_or("BENCH_WARMUP_SECS", 1);
    if warmup > 0 {
        wrk(&settings, &bare_url, warmup, Some(&bare_script));
        wrk(&settings, &bare_url, warmup, None);
        for (url, (_, script)) in urls.iter().zip(&servers) {
            wrk(&settings, url, warmup, script.as_deref());
        }
    }
    // `bare_runs[1]` with the cookie script, `bare_runs[0]` without a cookie.
    let mut bare_runs: [Vec<Run>; 2] = [Vec::new(), Vec::new()];
    let mut bare_run = |cookies: bool| {
        let script = cookies.then_some(bare_script.as_path());
        let run = measure(&settings, &bare, &bare_url, secs, script);
        bare_runs[usize::from(cookies)].push(run);
        run
    };
    // The latest bare run, and whether it sent the cookie.
    let mut last: Option<(bool, Run)> = None;
    let mut case_runs: Vec<Vec<(Run, Ratios)>> = vec![Vec::new(); servers.len()];
    for round in 0..runs.max(1) {
        for (((case, url), (server, script)), runs) in
            cases.iter().zip(&urls).zip(&servers).zip(&mut case_runs)
        {
            let before = match last {
                Some((cookies, run)) if cookies == case.cookies => run,
                _ => bare_run(case.cookies),
            };
            let run = measure(&settings, server, url, secs, script.as_deref());
            let after = bare_run(case.cookies);
            last = Some((case.cookies, after));
            let ratios = Ratios {
                rps: run.rps / ((before.rps + after.rps) / 2.0),
                cpu: (before.cpu_us + after.cpu_us) / 2.0 / run.cpu_us,
            };
            runs.push((run, ratios));
        }
        println!("round {} of {} done", round + 1, runs.max(1));
    }

    let mut table = String::new();
    let _ = writeln!(
        table,
        "| subject | case | requests/s | p50 ms | p99 ms | vs bare axum | ratio range | server CPU µs/req | CPU vs bare | errors |"
    );
    let _ = writeln!(table, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (cookies, label) in [
        (true, "bare axum, atomic counter (the limit), cookie sent"),
        (false, "bare axum, atomic counter (the limit), no cookie"),
    ] {
        let runs = &bare_runs[usize::from(cookies)];
        if runs.is_empty() {
            continue;
        }
        let median = median_run(runs);
        let mut cpu: Vec<f64> = runs.iter().map(|run| run.cpu_us).collect();
        cpu.sort_by(f64::total_cmp);
        let _ = writeln!(
            table,
            "| axum 0.8 | {label} | {:.0} | {:.2} | {:.2} | 1.00 | {:.0}–{:.0} req/s | {:.2} | 1.00 | {} |",
            median.rps,
            median.p50_ms,
            median.p99_ms,
            runs.iter().map(|run| run.rps).fold(f64::INFINITY, f64::min),
            runs.iter().map(|run| run.rps).fold(0.0, f64::max),
            cpu[cpu.len() / 2],
            runs.iter().map(|run| run.errors).sum::<u64>()
        );
    }
    for (case, runs) in cases.iter().zip(&case_runs) {
        let run = median_run(&runs.iter().map(|(run, _)| *run).collect::<Vec<_>>());
        let mut ratios: Vec<f64> = runs.iter().map(|(_, ratios)| ratios.rps).collect();
        ratios.sort_by(f64::total_cmp);
        let mut cpu_ratios: Vec<f64> = runs.iter().map(|(_, ratios)| ratios.cpu).collect();
        cpu_ratios.sort_by(f64::total_cmp);
        let mut cpu: Vec<f64> = runs.iter().map(|(run, _)| run.cpu_us).collect();
        cpu.sort_by(f64::total_cmp);
        let subject = match (case.subject, case.baseline) {
            ("sl-memory", false) => "session-layer, MemoryStore",
            ("sl-memory", true) => "baseline session-layer, MemoryStore",
            ("ts-memory", _) => "tower-sessions 0.15, MemoryStore",
            ("sl-redis", false) => "session-layer, RedisStore",
            ("sl-redis", true) => "baseline session-layer, RedisStore",
            _ => "tower-sessions 0.14, RedisStore 0.16",
        };
        let _ = writeln!(
            table,
            "| {subject} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2}–{:.2} | {:.2} | {:.2} | {} |",
            case.label,
            run.rps,
            run.p50_ms,
            run.p99_ms,
            ratios[ratios.len() / 2],
            ratios[0],
            ratios[ratios.len() - 1],
            cpu[cpu.len() / 2],
            cpu_ratios[cpu_ratios.len() / 2],
            runs.iter().map(|(run, _)| run.errors).sum::<u64>()
        );
    }
    drop(servers);
    drop(bare);
    drop(redis);
    std::fs::write(results.join("table.md"), &table).expect("table.md");
    println!("\n{table}");

    if std::env::var("BENCH_SKIP_SCALING").is_ok_and(|value| value == "1") {
        println!(
            "scaling skipped; total {:.0} s",
            started.elapsed().as_secs_f64()
        );
        return;
    }
    scaling(&settings, &results);
    println!("total {:.0} s", started.elapsed().as_secs_f64());
}

/// Requests/s and memory as live sessions and session data grow, on the
/// session-layer memory store, read + write counter.
fn scaling(settings: &Settings, results: &Path) {
    let runs = env_or("BENCH_SCALE_RUNS", 1);
    let secs = env_or("BENCH_SCALE_SECS", 3);
    let mut csv = String::from(
        "axis,value,requests_per_s,p50_ms,p99_ms,prefilled,record_bytes,rss_before_kb,rss_after_fill_kb,peak_rss_kb,bytes_per_session\n",
    );
    println!("\nscaling, session-layer MemoryStore, read + write counter, {runs} x {secs} s");
    println!(
        "| axis | value | requests/s | p99 ms | peak RSS MiB | bytes/session (record bytes) |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    let mut points: Vec<(&str, usize, usize, usize)> = Vec::new();
    for count in env_list("BENCH_SCALE_SESSIONS", "10000,100000,1000000") {
        // Small sessions: a counter and an empty padding string.
        points.push(("sessions", count, count, 0));
    }
    for bytes in env_list("BENCH_SCALE_BYTES", "100,4096,65536") {
        // 1000 stored sessions of this size, for the bytes per session.
        points.push(("data_bytes", bytes, 1000, bytes));
    }
    for (axis, value, prefill, bytes) in points {
        let server = Server::start(
            "sl-memory",
            &[
                ("PREFILL", prefill.to_string()),
                ("PREFILL_BYTES", bytes.to_string()),
            ],
        );
        let script = cookie_script(results, &server, &server.cookies(bytes));
        let url = format!("http://{}/write", server.addr);
        let run = median(settings, &url, runs, secs, Some(&script));
        // The record the pre-fill writes: one flag byte, then the JSON.
        let record_bytes = format!("{{\"n\":0,\"pad\":\"{}\"}}", "x".repeat(bytes)).len() + 1;
        let grown = server.rss_after_kb.saturating_sub(server.rss_before_kb) * 1024;
        let per_session = grown as f64 / prefill.max(1) as f64;
        let peak = server.peak_rss_kb();
        println!(
            "| {axis} | {value} | {:.0} | {:.2} | {:.1} | {per_session:.0} ({record_bytes}) |",
            run.rps,
            run.p99_ms,
            peak as f64 / 1024.0
        );
        let _ = writeln!(
            csv,
            "{axis},{value},{:.0},{:.3},{:.3},{prefill},{record_bytes},{},{},{peak},{per_session:.1}",
            run.rps, run.p50_ms, run.p99_ms, server.rss_before_kb, server.rss_after_kb
        );
    }
    std::fs::write(results.join("scaling.csv"), csv).expect("scaling.csv");
    let plotted = Command::new("python3")
        .arg(results.with_file_name("plot.py"))
        .status()
        .is_ok_and(|status| status.success());
    if !plotted {
        println!("no plots: python3 with matplotlib is needed for bench/plot.py");
    }
}
