//! One benchmark subject behind axum on 127.0.0.1, on a port the system picks.
//!
//! Usage: `server <subject>`, where the subject is one of `bare`, `sl-memory`,
//! `ts-memory`, `sl-redis`, `ts-redis` (`sl` is session-layer, `ts` is
//! tower-sessions). The Redis subjects read `REDIS_URL`. `PREFILL=<n>` makes
//! the session-layer memory store hold `n` extra sessions of `PREFILL_BYTES`
//! bytes of data each, written through the store API before the server
//! listens.
//!
//! Every subject serves the same routes (see the library, `src/lib.rs`).
//!
//! On standard output the server prints `rss_before <kB>` and
//! `rss_after <kB>` (peak resident set, `VmHWM`, around the pre-fill), then
//! `listening <addr>`.

use std::time::{Duration, SystemTime};

use session_layer::{Id, MemoryStore, Record, SessionStore};
use session_layer_bench::{
    bare, session_layer_app, tower_sessions_memory_app, tower_sessions_redis_app,
};

/// Returns a line of `/proc/self/status` in kB, or 0 where there is none.
fn status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(field))
                .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn env_usize(name: &str) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(0)
}

/// Writes `count` sessions of `bytes` bytes of data into `store`.
async fn prefill(store: &MemoryStore, count: usize, bytes: usize) {
    let data = {
        let mut map = serde_json::Map::new();
        map.insert("n".into(), 0.into());
        map.insert("pad".into(), "x".repeat(bytes).into());
        // The layer's record format: one byte for the cookie lifetime, then
        // the values as JSON.
        let mut data = vec![0_u8];
        serde_json::to_writer(&mut data, &map).expect("a map serializes");
        data
    };
    let now = SystemTime::now();
    for _ in 0..count {
        let record = Record {
            id: Id::generate().expect("the OS has randomness"),
            version: 1,
            data: data.clone().into(),
            created_at: now,
            expires_at: now + Duration::from_secs(24 * 3600),
        };
        let _ = store
            .create(&record)
            .await
            .expect("the memory store never fails");
    }
}

#[tokio::main]
async fn main() {
    let subject = std::env::args().nth(1).unwrap_or_default();
    let redis_url = std::env::var("REDIS_URL").unwrap_or_default();
    let rss_before = status_kb("VmHWM:");
    let app = match subject.as_str() {
        "bare" => bare(),
        "sl-memory" => {
            let count = env_usize("PREFILL");
            // The capacity is a limit, not an allocation: room for the
            // pre-fill and every anonymous visitor of a run.
            let store = MemoryStore::with_capacity(count + 50_000_000);
            prefill(&store, count, env_usize("PREFILL_BYTES")).await;
            session_layer_app(store)
        }
        "sl-redis" => {
            let store = session_layer::RedisStore::connect(redis_url.as_str())
                .await
                .expect("Redis answers");
            session_layer_app(store)
        }
        "ts-memory" => tower_sessions_memory_app(),
        "ts-redis" => tower_sessions_redis_app(&redis_url).await,
        other => {
            panic!("unknown subject {other:?}: bare, sl-memory, ts-memory, sl-redis, ts-redis")
        }
    };
    let rss_after = status_kb("VmHWM:");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    println!("rss_before {rss_before}");
    println!("rss_after {rss_after}");
    println!(
        "listening {}",
        listener.local_addr().expect("a bound address")
    );
    axum::serve(listener, app).await.expect("the server runs");
}
