//! Run with: cargo run --example sqlite --features sqlite-store
//!
//! The visit counter with its sessions in an SQLite file, so they survive a
//! restart without any database server. Open http://127.0.0.1:3000, reload,
//! stop the app with Ctrl-C, start it again and reload: the count goes on.
//!
//! ```sh
//! DATABASE_URL=sqlite://sessions.db \
//! SESSION_KEY=some-secret-of-at-least-32-bytes... \
//!     cargo run --example sqlite --features sqlite-store
//! ```
//!
//! `DATABASE_URL` defaults to `sqlite://sessions.db` (created if missing);
//! `sqlite::memory:` keeps the sessions in memory instead. Sessions are
//! signed with `SESSION_KEY`; without it, a random key is used and every
//! restart signs everyone out, file or not.

use std::time::Duration;

use axum::{Router, routing::get};
use session_layer::{Key, Session, SessionLayer, SqliteStore};

async fn count(session: Session) -> Result<String, session_layer::Error> {
    let visits = session.update("visits", |visits: Option<u64>| visits.unwrap_or(0) + 1)?;
    Ok(format!("You have been here {visits} times.\n"))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| "sqlite://sessions.db".to_owned());
    let key = match std::env::var("SESSION_KEY") {
        Ok(secret) => Key::from_bytes(secret.as_bytes())?,
        Err(_) => {
            println!("SESSION_KEY is not set: sessions end when the app stops");
            Key::generate()?
        }
    };

    // Creates the file if it is missing, in WAL mode, and the `sessions` table.
    let store = SqliteStore::connect(&url).await?;
    store.migrate().await?;
    // Delete expired sessions every ten minutes while the app runs.
    let cleanup = store.spawn_cleanup(Duration::from_secs(600));

    let app = Router::new()
        .route("/", get(count))
        .layer(SessionLayer::new(store, key));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!(
        "counter: open http://{} (store: SqliteStore at {url})",
        listener.local_addr()?
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    cleanup.stop().await;
    Ok(())
}
