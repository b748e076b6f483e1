//! Run with: cargo run --example counter
//!
//! A visit counter kept in the session, on the built-in memory store. Open
//! http://127.0.0.1:3000 and reload: the count goes up; a private window
//! starts again from one.

use axum::{Router, routing::get};
use session_layer::{Key, MemoryStore, Session, SessionLayer};

async fn count(session: Session) -> Result<String, session_layer::Error> {
    let visits = session.update("visits", |visits: Option<u64>| visits.unwrap_or(0) + 1)?;
    Ok(format!("You have been here {visits} times.\n"))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A generated key signs everyone out on restart: load a fixed secret of at
    // least 32 bytes with `Key::from_bytes` in production.
    let key = Key::generate()?;
    let app = Router::new()
        .route("/", get(count))
        .layer(SessionLayer::new(MemoryStore::default(), key));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!(
        "counter: open http://{} (store: MemoryStore)",
        listener.local_addr()?
    );
    axum::serve(listener, app).await?;
    Ok(())
}
