//! The benchmark subjects, shared by the load server (`server`) and the
//! instruction counter (`instructions`): the same routes on bare axum,
//! session-layer and tower-sessions.
//!
//! Every subject serves:
//!
//! - `/untouched`: the session is not extracted (the cookie is still sent);
//! - `/read`: reads the counter;
//! - `/write`: reads the counter and writes it back plus one;
//! - `/init?pad=<bytes>`: starts a session with the counter at 1 and a
//!   padding string of that many bytes (the harness collects its cookies; a
//!   `/read` that answers `0` was not given a live session).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::extract::Query;
use axum::routing::get;
use session_layer::{Key, SessionLayer, SessionStore};

type Params = Query<HashMap<String, usize>>;

fn pad(params: &Params) -> String {
    "x".repeat(params.get("pad").copied().unwrap_or(0))
}

/// Bare axum: the same routes on an `AtomicU64`, no layer (the limit).
pub fn bare() -> Router {
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

/// The session-layer routes, on any store, with the default configuration.
pub fn session_layer_app(store: impl SessionStore) -> Router {
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
                session.insert("n", 1_u64).expect("a u64 serializes");
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
                        .insert("n", 1_u64)
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

/// tower-sessions 0.15 on its memory store.
pub fn tower_sessions_memory_app() -> Router {
    tower_sessions_app!(tower_sessions, tower_sessions::MemoryStore::default())
}

/// tower-sessions 0.14 on tower-sessions-redis-store 0.16 (fred), connected
/// to `url`.
pub async fn tower_sessions_redis_app(url: &str) -> Router {
    use tower_sessions_redis_store::fred::prelude::*;
    let config = Config::from_url(url).expect("a valid Redis URL");
    let pool = Pool::new(config, None, None, None, 6).expect("a Redis pool");
    let _connection = pool.connect();
    pool.wait_for_connect().await.expect("Redis answers");
    tower_sessions_app!(
        tower_sessions_014,
        tower_sessions_redis_store::RedisStore::new(pool)
    )
}
