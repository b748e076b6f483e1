//! Run with: cargo run --example login
//!
//! Sign in and out: signing in gives the session a new id (so an id planted
//! before login is worthless), signing out destroys the session and leaves a
//! "signed out" message in a fresh one. Open http://127.0.0.1:3000.

use axum::response::{Html, Redirect};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;
use session_layer::{Key, MemoryStore, Session, SessionLayer};

const USER: &str = "user";
const FLASH: &str = "flash";

#[derive(Deserialize)]
struct Login {
    name: String,
    #[serde(default)]
    remember: Option<String>,
}

async fn home(session: Session) -> Result<Html<String>, session_layer::Error> {
    let flash = session
        .take::<String>(FLASH)?
        .map(|message| format!("<p><em>{}</em></p>", escape(&message)))
        .unwrap_or_default();
    let body = match session.get::<String>(USER)? {
        Some(name) => format!(
            "<p>Signed in as <b>{}</b>.</p>\
             <form method=post action=/logout><button>Sign out</button></form>",
            escape(&name)
        ),
        None => "<form method=post action=/login>\
                 <input name=name placeholder=name required> \
                 <label><input type=checkbox name=remember value=1> remember me</label> \
                 <button>Sign in</button></form>"
            .to_owned(),
    };
    Ok(Html(format!(
        "<!doctype html><title>login</title>{flash}{body}"
    )))
}

async fn login(
    session: Session,
    Form(login): Form<Login>,
) -> Result<Redirect, session_layer::Error> {
    // A real application checks a password here.
    session.cycle_id();
    session.set_persistent(login.remember.is_some());
    session.insert(USER, &login.name)?;
    session.insert(FLASH, "Signed in.")?;
    Ok(Redirect::to("/"))
}

async fn logout(session: Session) -> Result<Redirect, session_layer::Error> {
    session.destroy();
    session.insert(FLASH, "Signed out.")?;
    Ok(Redirect::to("/"))
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let layer = SessionLayer::builder(MemoryStore::default(), Key::generate()?)
        .idle_timeout(std::time::Duration::from_secs(24 * 60 * 60))
        .absolute_timeout(std::time::Duration::from_secs(7 * 24 * 60 * 60))
        .build()?;
    let app = Router::new()
        .route("/", get(home))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .layer(layer);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!(
        "login: open http://{} (store: MemoryStore)",
        listener.local_addr()?
    );
    axum::serve(listener, app).await?;
    Ok(())
}
