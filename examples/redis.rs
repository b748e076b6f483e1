//! Run with: cargo run --example redis --features redis-store
//!
//! The visit counter with its sessions in Redis, so that any number of
//! instances of the app share them. It connects to `REDIS_URL` (default
//! `redis://127.0.0.1:6379`) and listens on `PORT` (default 3000).
//!
//! Start Redis (`apt-get install redis-server` or `docker run -p 6379:6379
//! redis`), then two instances with the same key:
//!
//! ```sh
//! export SESSION_KEY=0123456789abcdef0123456789abcdef
//! cargo run --example redis --features redis-store &
//! PORT=3001 cargo run --example redis --features redis-store
//! ```
//!
//! Open http://127.0.0.1:3000, reload, then http://127.0.0.1:3001: the count
//! goes on, whichever instance answers. `redis-cli --scan --pattern
//! 'session:*'` lists the sessions, and `redis-cli pttl <key>` shows the
//! idle timeout running down.

use std::time::Duration;

use axum::{Router, routing::get};
use session_layer::{Key, RedisStore, Session, SessionLayer};

async fn count(session: Session) -> Result<String, session_layer::Error> {
    let visits = session.update("visits", |visits: Option<u64>| visits.unwrap_or(0) + 1)?;
    Ok(format!("You have been here {visits} times.\n"))
}

async fn peek(session: Session) -> Result<String, session_layer::Error> {
    let visits = session.get::<u64>("visits")?.unwrap_or(0);
    Ok(format!(
        "{visits} visits so far; this page does not count.\n"
    ))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let port = std::env::var("PORT").unwrap_or_else(|_| "3000".to_owned());

    // Every instance must sign cookies with the same key, or they refuse
    // each other's cookies. In production, load at least 32 secret bytes
    // from your secret store.
    let key = match std::env::var("SESSION_KEY") {
        Ok(secret) => Key::from_bytes(secret.as_bytes())?,
        Err(_) => {
            eprintln!("SESSION_KEY is not set: this instance uses a key of its own");
            Key::generate()?
        }
    };

    let store = RedisStore::builder()
        .prefix("session:")
        .timeout(Duration::from_millis(500))
        .connect(url.as_str())
        .await?;
    let app = Router::new()
        .route("/", get(count))
        .route("/peek", get(peek))
        .layer(SessionLayer::new(store, key));

    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await?;
    println!(
        "redis counter: open http://{} (store: RedisStore at {url})",
        listener.local_addr()?
    );
    axum::serve(listener, app).await?;
    Ok(())
}
