//! Instructions per request, counted by valgrind: what each subject costs in
//! user space, with no network, no scheduler noise and no other tenant of the
//! machine in the number.
//!
//! Run with: `bench/instructions` (builds this package in release mode first).
//!
//! Without arguments it runs itself under `valgrind --tool=cachegrind` for
//! every case, twice (`BENCH_IR_REQUESTS`, default 2000, and 0 requests after
//! the same set-up), and prints the difference divided by the request count:
//! the instructions of one request through `Router::oneshot`, from building
//! the request to reading the whole response body. Results also go to
//! `bench/results/instructions.md`.
//!
//! With arguments (`instructions <subject> <path> <cookie|anonymous> <n>`) it
//! is the measured program: it builds the subject's router, makes 64 sessions
//! through `/init` when a cookie is sent, and sends `n` requests round-robin
//! over them on a current-thread runtime.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use axum::Router;
use axum::body::Body;
use http::{Request, header};
use session_layer::MemoryStore;
use session_layer_bench::{bare, session_layer_app, tower_sessions_memory_app};
use tower::ServiceExt;

/// The number of sessions a cookie case rotates over, as in the load harness.
const COOKIES: usize = 64;

/// `(subject, label, path, sends a cookie)`.
const CASES: &[(&str, &str, &str, bool)] = &[
    ("bare", "bare axum, atomic counter", "/write", true),
    ("sl-memory", "untouched route", "/untouched", true),
    ("sl-memory", "read-only", "/read", true),
    ("sl-memory", "read + write counter", "/write", true),
    ("sl-memory", "anonymous, nothing written", "/read", false),
    ("sl-memory", "anonymous, writes", "/write", false),
    ("ts-memory", "untouched route", "/untouched", true),
    ("ts-memory", "read-only", "/read", true),
    ("ts-memory", "read + write counter", "/write", true),
    ("ts-memory", "anonymous, nothing written", "/read", false),
    ("ts-memory", "anonymous, writes", "/write", false),
];

/// The subject's router, its handlers turned into services once, as
/// `axum::serve` does (a `Router` called directly would do it per request).
fn app(subject: &str) -> Router {
    let app = match subject {
        "bare" => bare(),
        "sl-memory" => session_layer_app(MemoryStore::with_capacity(10_000_000)),
        "ts-memory" => tower_sessions_memory_app(),
        other => panic!("unknown subject {other:?}: bare, sl-memory, ts-memory"),
    };
    app.with_state(())
}

async fn send(app: &Router, path: &str, cookie: Option<&str>) -> http::Response<Body> {
    let mut request = Request::get(path);
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    let request = request.body(Body::empty()).expect("a valid request");
    app.clone().oneshot(request).await.expect("infallible")
}

/// The measured program: set-up, then `n` requests.
fn measured(subject: &str, path: &str, with_cookie: bool, n: usize) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let app = app(subject);
        let mut cookies = Vec::new();
        if with_cookie {
            for i in 0..COOKIES {
                let response = send(&app, "/init", None).await;
                let cookie = response
                    .headers()
                    .get(header::SET_COOKIE)
                    .and_then(|value| value.to_str().ok())
                    .and_then(|value| value.split(';').next())
                    .map_or_else(|| format!("id={i:064}"), str::to_owned);
                cookies.push(cookie);
            }
        }
        for i in 0..n {
            let cookie = cookies.get(i % COOKIES).map(String::as_str);
            let response = send(&app, path, cookie).await;
            assert!(response.status().is_success(), "{subject} {path}");
            axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .expect("the body is read");
        }
    });
}

/// Runs the measured program under cachegrind and returns the instructions
/// it executed.
fn count(subject: &str, path: &str, with_cookie: bool, n: usize) -> u64 {
    let program = std::env::current_exe().expect("the program knows its path");
    let output = Command::new("valgrind")
        .args([
            "--tool=cachegrind",
            "--cache-sim=no",
            "--cachegrind-out-file=/dev/null",
        ])
        .arg(program)
        .args([
            subject,
            path,
            if with_cookie { "cookie" } else { "anonymous" },
        ])
        .arg(n.to_string())
        .output()
        .expect("valgrind is installed (apt-get install valgrind)");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{subject} {path}: {stderr}");
    stderr
        .lines()
        .find_map(|line| {
            let (_, n) = line.split_once("refs:")?;
            line.contains("I ").then(|| n.trim().replace(',', ""))
        })
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no instruction count from valgrind: {stderr}"))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [subject, path, cookie, n] = args.as_slice() {
        let n = n.parse().expect("a request count");
        measured(subject, path, cookie == "cookie", n);
        return;
    }
    let requests: usize = std::env::var("BENCH_IR_REQUESTS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(2000);
    let mut table = String::from(
        "| subject | case | instructions per request | beyond bare axum |\n|---|---|---:|---:|\n",
    );
    let mut bare_ir = f64::NAN;
    for &(subject, label, path, with_cookie) in CASES {
        let total = count(subject, path, with_cookie, requests);
        let setup = count(subject, path, with_cookie, 0);
        let per_request = total.saturating_sub(setup) as f64 / requests as f64;
        if subject == "bare" {
            bare_ir = per_request;
        }
        let subject = match subject {
            "bare" => "axum 0.8",
            "sl-memory" => "session-layer, MemoryStore",
            _ => "tower-sessions 0.15, MemoryStore",
        };
        let row = format!(
            "| {subject} | {label} | {per_request:.0} | {:+.0} |",
            per_request - bare_ir
        );
        println!("{row}");
        let _ = writeln!(table, "{row}");
    }
    let results = Path::new(env!("CARGO_MANIFEST_DIR")).join("results");
    std::fs::create_dir_all(&results).expect("bench/results");
    std::fs::write(results.join("instructions.md"), table).expect("the table is written");
}
