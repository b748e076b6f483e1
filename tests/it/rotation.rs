//! Rotation under concurrency: a request that still presents the id a
//! sign-in (`cycle_id`) or a renewal (`renew_id`) replaced a moment ago.
//!
//! Every ordering runs on every store: the request before or after the
//! rotation, two rotations at once, rotation then sign-out, the grace period
//! over (on the store's own clock, with real time), and an attacker who
//! planted the pre-sign-in id. What must hold throughout: such a request
//! never receives a `Set-Cookie` that could replace the newer cookie, never
//! creates an anonymous session in its place, and never sees the new id or
//! what the sign-in added.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::{get, post};
use session_layer::{Error, ErrorKind, MemoryStore, Session, SessionLayer, SessionStore};

use crate::support::{App, Gate, Reply, join, key, spawn_post};

type Store = Arc<dyn SessionStore>;
/// Whatever keeps a store's server alive for the test.
type Guard = Box<dyn Any + Send>;

/// The routes of this module:
///
/// | route | what the handler does |
/// |---|---|
/// | `POST /add/{item}` | appends `item` to `cart` |
/// | `GET /view` | `user=…;cart=…` |
/// | `POST /login/{name}` | sets `user`, then `cycle_id` |
/// | `POST /renew` | `renew_id` |
/// | `POST /logout` | `destroy` |
/// | `POST /slow-add/{item}` | like `/add`, then pauses at the gate |
/// | `POST /slow-login/{name}` | like `/login`, then pauses at the gate |
fn routes(gate: &Arc<Gate>) -> Router {
    let (add_gate, login_gate) = (Arc::clone(gate), Arc::clone(gate));
    Router::new()
        .route("/add/{item}", post(add))
        .route("/view", get(view))
        .route("/login/{name}", post(login))
        .route("/renew", post(renew))
        .route("/logout", post(logout))
        .route(
            "/slow-add/{item}",
            post(move |session: Session, item: Path<String>| async move {
                let reply = add(session, item).await;
                add_gate.pause().await;
                reply
            }),
        )
        .route(
            "/slow-login/{name}",
            post(move |session: Session, name: Path<String>| async move {
                let reply = login(session, name).await;
                login_gate.pause().await;
                reply
            }),
        )
}

async fn add(session: Session, Path(item): Path<String>) -> Result<&'static str, Error> {
    session.update("cart", move |cart: Option<Vec<String>>| {
        let mut cart = cart.unwrap_or_default();
        cart.push(item.clone());
        cart
    })?;
    Ok("added")
}

async fn view(session: Session) -> Result<String, Error> {
    let user = session.get::<String>("user")?.unwrap_or_default();
    let cart = session.get::<Vec<String>>("cart")?.unwrap_or_default();
    Ok(format!("user={user};cart={}", cart.join(",")))
}

async fn login(session: Session, Path(name): Path<String>) -> Result<&'static str, Error> {
    session.insert("user", name)?;
    session.cycle_id();
    Ok("signed in")
}

async fn renew(session: Session) -> &'static str {
    session.renew_id();
    "renewed"
}

async fn logout(session: Session) -> &'static str {
    session.destroy();
    "signed out"
}

/// The app on `store`, with a grace period of `grace`.
fn app(store: Store, grace: Duration, gate: &Arc<Gate>) -> App {
    let layer = SessionLayer::builder(store, key(3))
        .rotation_grace(grace)
        .build()
        .expect("a valid configuration");
    App::with_router(routes(gate).layer(layer), "id")
}

/// An anonymous visitor's session holding a cart with `tea`.
async fn with_tea(app: &App) -> String {
    let reply = app.post("/add/tea", None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply
        .session_value()
        .expect("a new session sets its cookie")
}

/// Signs in through `old` and returns the new cookie value.
async fn sign_in(app: &App, old: &str, name: &str) -> String {
    let reply = app.post(&format!("/login/{name}"), Some(old)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let new = reply.session_value().expect("sign-in sends the new cookie");
    assert_ne!(new, old);
    new
}

/// A response to a request that presented a replaced id: no cookie at all.
fn assert_no_cookie(reply: &Reply) {
    assert!(
        reply.set_cookies().is_empty(),
        "a request with a replaced id gets no Set-Cookie: {:?}",
        reply.headers
    );
}

/// The refusal of a change sent through an id a sign-in replaced.
fn assert_refused(reply: &Reply) {
    assert_eq!(reply.status, StatusCode::CONFLICT, "{}", reply.body);
    assert!(
        reply.body.contains(&ErrorKind::IdRotated.to_string()),
        "{}",
        reply.body
    );
    assert_no_cookie(reply);
}

const GRACE: Duration = Duration::from_secs(10);

async fn a_request_after_the_sign_in_reads_the_old_data_and_cannot_write(store: Store) {
    let app = app(store, GRACE, &Gate::new());
    let old = with_tea(&app).await;
    let new = sign_in(&app, &old, "Nora").await;

    // Another tab, still holding the old cookie.
    let reply = app.get("/view", Some(&old)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, "user=;cart=tea", "the data as it was before");
    assert_no_cookie(&reply);
    assert_refused(&app.post("/add/mug", Some(&old)).await);

    assert_eq!(
        app.get("/view", Some(&new)).await.body,
        "user=Nora;cart=tea"
    );
}

async fn a_request_loaded_before_the_sign_in_and_saved_after_is_refused(store: Store) {
    let gate = Gate::new();
    let app = app(store, GRACE, &gate);
    let old = with_tea(&app).await;

    let slow = spawn_post(&app, "/slow-add/mug", &old);
    gate.reached().await;
    let new = sign_in(&app, &old, "Nora").await;
    gate.open();
    assert_refused(&join(slow).await);

    assert_eq!(
        app.get("/view", Some(&new)).await.body,
        "user=Nora;cart=tea"
    );
}

async fn two_sign_ins_at_once_both_end_signed_in_with_the_data(store: Store) {
    let gate = Gate::new();
    let app = app(store, GRACE, &gate);
    let old = with_tea(&app).await;

    // A double submit: the first loads, changes and waits; the second signs
    // in meanwhile; then the first saves.
    let slow = spawn_post(&app, "/slow-login/Nora", &old);
    gate.reached().await;
    let first = sign_in(&app, &old, "Nora").await;
    gate.open();
    let reply = join(slow).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let second = reply
        .session_value()
        .expect("the later sign-in sets a cookie");
    assert_ne!(second, old);
    assert_ne!(second, first, "the old id's holder never learns the new id");

    // Whichever cookie the browser keeps, it is signed in with the cart.
    for cookie in [&first, &second] {
        assert_eq!(
            app.get("/view", Some(cookie)).await.body,
            "user=Nora;cart=tea"
        );
    }
    // A sign-in that arrives after the first one ends the same way.
    let third = sign_in(&app, &old, "Nora").await;
    assert!(third != first && third != second);
    assert_eq!(
        app.get("/view", Some(&third)).await.body,
        "user=Nora;cart=tea"
    );
}

async fn signing_out_through_the_replaced_id_is_refused_and_through_the_new_one_ends_it(
    store: Store,
) {
    let app = app(store, GRACE, &Gate::new());
    let old = with_tea(&app).await;
    let new = sign_in(&app, &old, "Nora").await;

    assert_refused(&app.post("/logout", Some(&old)).await);
    assert_eq!(
        app.get("/view", Some(&new)).await.body,
        "user=Nora;cart=tea"
    );

    let reply = app.post("/logout", Some(&new)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.session_cookie().expect("a removal").is_removal());
    assert_eq!(reply.header("clear-site-data"), Some("\"cache\""));
    let reply = app.get("/view", Some(&new)).await;
    assert_eq!(reply.body, "user=;cart=", "signed out");
    // The old id shows at most what it held before the sign-in.
    let reply = app.get("/view", Some(&old)).await;
    assert!(!reply.body.contains("Nora"), "{}", reply.body);
    assert_no_cookie(&reply);
}

async fn after_the_grace_period_the_replaced_id_is_unknown(store: Store) {
    let app = app(store, Duration::from_secs(1), &Gate::new());
    let old = with_tea(&app).await;
    let new = sign_in(&app, &old, "Nora").await;
    assert_eq!(app.get("/view", Some(&old)).await.body, "user=;cart=tea");

    // The store's own clock: the record left under the old id expires by
    // itself.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let reply = app.get("/view", Some(&old)).await;
    assert_eq!(reply.body, "user=;cart=", "an unknown id is anonymous");
    // A write starts a session of its own, never the signed-in one.
    let reply = app.post("/add/mug", Some(&old)).await;
    assert_eq!(reply.status, StatusCode::OK);
    let fresh = reply.session_value().expect("a fresh session");
    assert!(fresh != old && fresh != new);
    assert_eq!(app.get("/view", Some(&fresh)).await.body, "user=;cart=mug");
    assert_eq!(
        app.get("/view", Some(&new)).await.body,
        "user=Nora;cart=tea"
    );
}

async fn a_planted_id_never_reaches_the_signed_in_session(store: Store) {
    let app = app(store, Duration::from_secs(1), &Gate::new());
    // The attacker makes a session and plants its cookie in the victim's
    // browser; the victim signs in with it.
    let planted = with_tea(&app).await;
    let victim = sign_in(&app, &planted, "Nora").await;
    let mut seen = Vec::new();

    // During the grace period: only what the attacker had.
    let reply = app.get("/view", Some(&planted)).await;
    assert_eq!(reply.body, "user=;cart=tea");
    seen.push(reply);
    let reply = app.post("/add/knife", Some(&planted)).await;
    assert_refused(&reply);
    seen.push(reply);
    // Signing in through the planted id gives the attacker a session of
    // his own, made from what he had.
    let reply = app.post("/login/Mallory", Some(&planted)).await;
    let own = reply.session_value().expect("the attacker's own sign-in");
    assert_ne!(own, victim);
    seen.push(reply);
    assert_eq!(
        app.get("/view", Some(&own)).await.body,
        "user=Mallory;cart=tea"
    );

    // After it: a stranger.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let reply = app.get("/view", Some(&planted)).await;
    assert_eq!(reply.body, "user=;cart=");
    seen.push(reply);

    for reply in &seen {
        assert!(!reply.body.contains("Nora"), "{}", reply.body);
        assert!(
            reply
                .set_cookies()
                .iter()
                .all(|cookie| cookie.value != victim),
            "the attacker never receives the victim's cookie"
        );
    }
    assert_eq!(
        app.get("/view", Some(&victim)).await.body,
        "user=Nora;cart=tea"
    );
}

async fn after_a_renewal_the_old_id_writes_to_the_renewed_session(store: Store) {
    let app = app(store, GRACE, &Gate::new());
    let old = with_tea(&app).await;
    let reply = app.post("/renew", Some(&old)).await;
    let new = reply.session_value().expect("the renewed cookie");
    assert_ne!(new, old);

    let reply = app.post("/add/mug", Some(&old)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_no_cookie(&reply);
    assert_eq!(
        app.get("/view", Some(&new)).await.body,
        "user=;cart=tea,mug"
    );
    assert_eq!(app.get("/view", Some(&old)).await.body, "user=;cart=tea");

    // Signing out through the old id ends the renewed session too.
    let reply = app.post("/logout", Some(&old)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(app.get("/view", Some(&new)).await.body, "user=;cart=");
}

async fn without_a_grace_period_the_old_id_is_gone_at_once(store: Store) {
    let app = app(store, Duration::ZERO, &Gate::new());
    let old = with_tea(&app).await;
    let new = sign_in(&app, &old, "Nora").await;
    assert_eq!(app.get("/view", Some(&old)).await.body, "user=;cart=");
    assert_eq!(
        app.get("/view", Some(&new)).await.body,
        "user=Nora;cart=tea"
    );
}

/// Generates one test per ordering for one store.
macro_rules! on_store {
    ($store:ident, $make:expr) => {
        mod $store {
            use super::*;

            on_store!(@tests $make;
                a_request_after_the_sign_in_reads_the_old_data_and_cannot_write,
                a_request_loaded_before_the_sign_in_and_saved_after_is_refused,
                two_sign_ins_at_once_both_end_signed_in_with_the_data,
                signing_out_through_the_replaced_id_is_refused_and_through_the_new_one_ends_it,
                after_the_grace_period_the_replaced_id_is_unknown,
                a_planted_id_never_reaches_the_signed_in_session,
                after_a_renewal_the_old_id_writes_to_the_renewed_session,
                without_a_grace_period_the_old_id_is_gone_at_once,
            );
        }
    };
    (@tests $make:expr; $($test:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                let (store, _guard): (Store, Guard) = $make.await;
                super::$test(store).await;
            }
        )*
    };
}

async fn memory() -> (Store, Guard) {
    (Arc::new(MemoryStore::default()), Box::new(()))
}

on_store!(memory_store, memory());

#[cfg(feature = "sqlite-store")]
async fn sqlite() -> (Store, Guard) {
    let store = session_layer::SqliteStore::connect("sqlite::memory:")
        .await
        .expect("an in-memory database");
    store.migrate().await.expect("the table");
    (Arc::new(store), Box::new(()))
}

#[cfg(feature = "sqlite-store")]
on_store!(sqlite_store, sqlite());

#[cfg(feature = "postgres-store")]
async fn postgres() -> (Store, Guard) {
    (
        Arc::new(crate::support::postgres::store().await),
        Box::new(()),
    )
}

#[cfg(feature = "postgres-store")]
on_store!(postgres_store, postgres());

#[cfg(feature = "redis-store")]
async fn redis() -> (Store, Guard) {
    let server = crate::support::redis::RedisServer::start().await;
    (Arc::new(server.store().await), Box::new(server))
}

#[cfg(feature = "redis-store")]
on_store!(redis_store, redis());

#[tokio::test]
async fn responses_that_read_a_stored_session_are_not_cached() {
    let app = app(Arc::new(MemoryStore::default()), GRACE, &Gate::new());
    let anonymous = app.get("/view", None).await;
    assert_eq!(anonymous.cache_control(), None, "nothing stored was read");
    let value = with_tea(&app).await;
    let reply = app.get("/view", Some(&value)).await;
    assert_eq!(reply.cache_control(), Some("no-store"));
    assert!(reply.set_cookies().is_empty());

    let layer = SessionLayer::builder(MemoryStore::default(), key(3))
        .no_store(false)
        .clear_site_data(false)
        .build()
        .expect("valid");
    let app = App::with_router(routes(&Gate::new()).layer(layer), "id");
    let value = with_tea(&app).await;
    let reply = app.get("/view", Some(&value)).await;
    assert_eq!(reply.cache_control(), None);
    let reply = app.post("/logout", Some(&value)).await;
    assert_eq!(reply.header("clear-site-data"), None);
    assert_eq!(reply.cache_control(), Some("no-store"), "a removal cookie");
}

#[test]
fn a_grace_period_over_a_minute_is_refused() {
    let error = SessionLayer::builder(MemoryStore::default(), key(3))
        .rotation_grace(Duration::from_secs(61))
        .build()
        .expect_err("over a minute");
    assert_eq!(error.kind(), ErrorKind::Config);
}

/// The demo, driven as `curl` would: sign in through one request while
/// another, sent with the same (pre-sign-in) cookie, adds to the cart.
#[tokio::test]
async fn the_sign_in_race_of_the_demo_keeps_the_user_signed_in() {
    use axum::body::Body;
    use axum::http::header::{CONTENT_TYPE, COOKIE};
    use axum::http::{Method, Request};

    let router = crate::demo_app::app(MemoryStore::default(), key(9)).expect("the demo");
    let app = App::with_router(router, "id");
    let form = |path: &str, cookie: &str, body: &str| {
        Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(COOKIE, format!("id={cookie}"))
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(body.to_owned()))
            .expect("a valid request")
    };

    let a = app
        .get("/", None)
        .await
        .session_value()
        .expect("a first visit");
    let reply = app.call(form("/cart/add", &a, "item=tea")).await;
    assert!(reply.status.is_redirection(), "{}", reply.body);
    // Tab 1 signs in; tab 2 adds a mug with the cookie it had.
    let reply = app.call(form("/login", &a, "name=Nora")).await;
    let b = reply.session_value().expect("the signed-in cookie");
    let reply = app.call(form("/cart/add", &a, "item=mug")).await;
    assert_eq!(reply.status, StatusCode::CONFLICT, "{}", reply.body);
    assert!(
        reply.session_value().is_none(),
        "no cookie replaces the signed-in one"
    );

    // The browser keeps B: signed in as Nora, with the tea.
    let cart = app.get("/cart", Some(&b)).await;
    assert!(cart.body.contains("Nora"), "{}", cart.body);
    assert!(cart.body.contains("Green tea"), "{}", cart.body);
    assert!(
        !cart.body.contains("Enamel mug"),
        "the refused add added nothing"
    );
}
