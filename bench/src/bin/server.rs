//! One benchmark subject behind axum on 127.0.0.1, on a port the system picks.
//!
//! Usage: `server <subject>`, where the subject is one of `bare`, `sl-memory`,
//! `ts-memory`, `sl-redis`, `ts-redis` (`sl` is session-layer, `ts` is
//! tower-sessions). The Redis subjects read `REDIS_URL`. `PREFILL=<n>` makes
//! the session-layer memory store hold `n` extra sessions of `PREFILL_BYTES`
//! bytes of data each, written through the store API before the server
//! listens.
//!
//! Every subject serves the same routes:
//!
//! - `/untouched`: the session is not extracted (the cookie is still sent);
//! - `/read`: reads the counter;
//! - `/write`: reads the counter and writes it back plus one;
//! - `/init?pad=<bytes>`: starts a session with a counter and a padding
//!   string of that many bytes (the harness collects its cookies).
//!
//! On standard output the server prints `rss_before <kB>` and
//! `rss_after <kB>` (peak resident set, `VmHWM`, around the pre-fill), then
//! `listening <addr>`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::Query;
use axum::routing::get;
use session_layer::{Id, Key, MemoryStore, Record, SessionLayer, SessionStore};

type Params = Query<HashMap<String, usize>>;

fn pad(params: &Params) -> String {
    "x".repeat(params.get("pad").copied().unwrap_or(0))
}

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

fn bare() -> Router {
    let counter = Arc::new(AtomicU64::new(0));
    let (read, write, init) = (counter.clone(), counter.clone(), counter);
    Router::new()
        .route("/untouched", get(|| async { "ok" }))
        .route(
            "/read",
            get(move || async move { read.load(Ordering::Relaxed).to_string() }),
        )
        .route(
            "/write",
            get(move || async move {
                let n = write.load(Ordering::Relaxed) + 1;
                write.store(n, Ordering::Relaxed);
                n.to_string()
            }),
        )
        .route(
            "/init",
            get(move || async move {
                init.store(0, Ordering::Relaxed);
                "0"
            }),
        )
}

/// The session-layer routes, on any store.
fn session_layer_app(store: impl SessionStore) -> Router {
    use session_layer::Session;
    let key = Key::generate().expect("the OS has randomness");
    Router::new()
        .route("/untouched", get(|| async { "ok" }))
        .route(
            "/read",
            get(|session: Session| async move {
                session
                    .get::<u64>("n")
                    .ok()
                    .flatten()
                    .unwrap_or(0)
                    .to_string()
            }),
        )
        .route(
            "/write",
            get(|session: Session| async move {
                let n = session
                    .update("n", |n: Option<u64>| n.unwrap_or(0) + 1)
                    .expect("a u64 serializes");
                n.to_string()
            }),
        )
        .route(
            "/init",
            get(|session: Session, params: Params| async move {
                session.insert("n", 0_u64).expect("a u64 serializes");
                session
                    .insert("pad", pad(&params))
                    .expect("a string serializes");
                "0"
            }),
        )
        .layer(SessionLayer::new(store, key))
}

/// The tower-sessions routes; the macro covers both 0.15 (memory) and 0.14
/// (Redis), whose `Session` types differ.
macro_rules! tower_sessions_app {
    ($ts:ident, $store:expr) => {{
        use $ts::{Session, SessionManagerLayer};
        Router::new()
            .route("/untouched", get(|| async { "ok" }))
            .route(
                "/read",
                get(|session: Session| async move {
                    session
                        .get::<u64>("n")
                        .await
                        .ok()
                        .flatten()
                        .unwrap_or(0)
                        .to_string()
                }),
            )
            .route(
                "/write",
                get(|session: Session| async move {
                    let n = session.get::<u64>("n").await.ok().flatten().unwrap_or(0) + 1;
                    session
                        .insert("n", n)
                        .await
                        .expect("the store accepts the write");
                    n.to_string()
                }),
            )
            .route(
                "/init",
                get(|session: Session, params: Params| async move {
                    session
                        .insert("n", 0_u64)
                        .await
                        .expect("the store accepts the write");
                    session
                        .insert("pad", pad(&params))
                        .await
                        .expect("the store accepts the write");
                    "0"
                }),
            )
            .layer(SessionManagerLayer::new($store).with_secure(false))
    }};
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
            data: data.clone(),
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
        "ts-memory" => tower_sessions_app!(tower_sessions, tower_sessions::MemoryStore::default()),
        "ts-redis" => {
            use tower_sessions_redis_store::fred::prelude::*;
            let config = Config::from_url(&redis_url).expect("a valid Redis URL");
            let pool = Pool::new(config, None, None, None, 6).expect("a Redis pool");
            let _connection = pool.connect();
            pool.wait_for_connect().await.expect("Redis answers");
            tower_sessions_app!(
                tower_sessions_014,
                tower_sessions_redis_store::RedisStore::new(pool)
            )
        }
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
