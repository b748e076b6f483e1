//! Run with: cargo run --example postgres --features postgres-store
//!
//! The visit counter with its sessions in PostgreSQL, so that several
//! instances of the app share them and a restart keeps them. Point
//! `DATABASE_URL` at a database the app may create a table in, then open
//! http://127.0.0.1:3000 and reload:
//!
//! ```sh
//! DATABASE_URL=postgres://app@localhost/app \
//! SESSION_KEY=some-secret-of-at-least-32-bytes... \
//!     cargo run --example postgres --features postgres-store
//! ```
//!
//! Sessions are signed with `SESSION_KEY`; without it, a random key is used
//! and every restart signs everyone out.

use std::time::Duration;

use axum::{Router, routing::get};
use session_layer::{Key, PostgresStore, Session, SessionLayer};

async fn count(session: Session) -> Result<String, session_layer::Error> {
    let visits = session.update("visits", |visits: Option<u64>| visits.unwrap_or(0) + 1)?;
    Ok(format!("You have been here {visits} times.\n"))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("DATABASE_URL")
        .map_err(|_| "set DATABASE_URL, e.g. postgres://app@localhost/app")?;
    let key = match std::env::var("SESSION_KEY") {
        Ok(secret) => Key::from_bytes(secret.as_bytes())?,
        Err(_) => {
            println!("SESSION_KEY is not set: sessions end when the app stops");
            Key::generate()?
        }
    };

    // A pool with a short acquire timeout, and the `sessions` table.
    let store = PostgresStore::connect(&url).await?;
    store.migrate().await?;
    // Delete expired sessions every ten minutes while the app runs.
    let cleanup = store.spawn_cleanup(Duration::from_secs(600));

    let app = Router::new()
        .route("/", get(count))
        .layer(SessionLayer::new(store, key));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!(
        "counter: open http://{} (store: PostgresStore)",
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
