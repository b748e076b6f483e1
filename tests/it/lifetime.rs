//! A session's life: new ids, logout (which also ends "remember me"), the
//! idle and absolute clocks, the refresh throttle, persistent cookies, and
//! what a 5xx saves.

use std::time::Duration;

use crate::support;
use crate::support::{App, CountingStore, ManualClock, key, stored};
use axum::http::StatusCode;
use axum::http::header::SET_COOKIE;
use session_layer::{MemoryStore, Record, SameSite, SessionLayer, SessionStore, Updated};

fn counted() -> (App, CountingStore<MemoryStore>, MemoryStore) {
    let memory = MemoryStore::default();
    let store = CountingStore::new(memory.clone());
    let app = App::new(support::no_grace(store.clone(), key(1)));
    (app, store, memory)
}

/// A layer on a manual clock with these timeouts (in seconds).
fn clocked(
    idle: u64,
    absolute: u64,
) -> (App, CountingStore<MemoryStore>, MemoryStore, ManualClock) {
    let clock = ManualClock::new();
    let memory = MemoryStore::default();
    let store = CountingStore::new(memory.clone());
    let layer = SessionLayer::builder(store.clone(), key(1))
        .idle_timeout(Duration::from_secs(idle))
        .absolute_timeout(Duration::from_secs(absolute))
        .clock(clock.source())
        .build()
        .expect("valid config");
    (App::new(layer), store, memory, clock)
}

#[tokio::test]
async fn cycle_id_keeps_the_data_and_kills_the_old_id() {
    let (app, store, memory) = counted();
    let old = app.start_session().await;
    assert_eq!(
        app.post("/set/role/user", Some(&old)).await.status,
        StatusCode::OK
    );

    let reply = app.post("/cycle", Some(&old)).await;
    assert_eq!(reply.status, StatusCode::OK);
    let new = reply.session_value().expect("a new id means a new cookie");
    assert_ne!(new, old);
    assert_ne!(support::id_of(&new), support::id_of(&old));
    assert_eq!(reply.cache_control(), Some("no-store"));
    assert_eq!(store.rotates(), 1);
    assert_eq!(memory.len(), 1, "moved, not copied");
    assert!(
        stored(&memory, &old).await.is_none(),
        "the old id is gone from the store"
    );
    assert!(stored(&memory, &new).await.is_some());

    assert_eq!(app.get("/get/k", Some(&new)).await.body, "v");
    assert_eq!(app.get("/get/role", Some(&new)).await.body, "user");
    assert_eq!(
        app.get("/id", Some(&new)).await.body,
        support::id_of(&new).expose()
    );

    // The old cookie is anonymous, and a write through it gets a fresh id.
    let reply = app.get("/get/k", Some(&old)).await;
    assert_eq!(reply.body, "<none>");
    assert!(reply.headers.get(SET_COOKIE).is_none());
    let reply = app.post("/set/k/planted", Some(&old)).await;
    let fresh = reply.session_value().expect("a write starts a new session");
    assert_ne!(
        support::id_of(&fresh),
        support::id_of(&old),
        "a dead id is never adopted"
    );
    assert_ne!(support::id_of(&fresh), support::id_of(&new));
    assert_eq!(app.get("/get/k", Some(&new)).await.body, "v");
    assert_eq!(memory.len(), 2);
}

#[tokio::test]
async fn destroy_sends_a_removal_cookie_with_the_configured_attributes() {
    let memory = MemoryStore::default();
    let store = CountingStore::new(memory.clone());
    let layer = SessionLayer::builder(store.clone(), key(1))
        .path("/app")
        .domain("example.com")
        .same_site(SameSite::Strict)
        .build()
        .expect("valid config");
    let app = App::new(layer);
    let value = app.start_session().await;
    assert_eq!(memory.len(), 1);

    let reply = app.post("/destroy", Some(&value)).await;
    assert_eq!(reply.status, StatusCode::OK);
    let removal = reply.session_cookie().expect("a removal cookie");
    assert_eq!(removal.value, "");
    assert_eq!(removal.max_age(), Some(0));
    assert_eq!(removal.attribute("Secure"), Some(None));
    assert_eq!(removal.attribute("HttpOnly"), Some(None));
    assert_eq!(removal.value_of("SameSite"), Some("Strict"));
    assert_eq!(removal.value_of("Path"), Some("/app"));
    assert_eq!(removal.value_of("Domain"), Some("example.com"));
    assert_eq!(reply.cache_control(), Some("no-store"));
    assert_eq!(store.deletes(), 1);
    assert_eq!(memory.len(), 0);
    assert!(stored(&memory, &value).await.is_none());

    // Replaying the old cookie: anonymous, and nothing is recreated.
    let reply = app.get("/get/k", Some(&value)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, "<none>");
    assert!(reply.headers.get(SET_COOKIE).is_none());
    assert_eq!(app.get("/id", Some(&value)).await.body, "none");
    assert_eq!(memory.len(), 0);
}

#[tokio::test]
async fn destroy_then_insert_starts_a_new_session() {
    let (app, store, memory) = counted();
    let old = app.start_session().await;

    let reply = app.post("/sign-out", Some(&old)).await;
    assert_eq!(reply.status, StatusCode::OK);
    let new = reply
        .session_value()
        .expect("one Set-Cookie, for the new session, not a removal");
    assert_ne!(support::id_of(&new), support::id_of(&old));
    assert_eq!(store.deletes(), 1);
    assert_eq!(
        memory.len(),
        1,
        "the old record is gone, the new one is there"
    );
    assert!(stored(&memory, &old).await.is_none());
    assert!(stored(&memory, &new).await.is_some());

    assert_eq!(app.post("/take/flash", Some(&new)).await.body, "signed out");
    assert_eq!(
        app.get("/get/k", Some(&new)).await.body,
        "<none>",
        "the old data is gone"
    );
    assert_eq!(app.get("/get/k", Some(&old)).await.body, "<none>");
}

#[tokio::test]
async fn the_idle_timeout_is_enforced_by_the_layer() {
    let (app, _store, memory, clock) = clocked(60, 3600);
    let value = app.start_session().await;

    clock.at(30);
    assert_eq!(app.get("/get/k", Some(&value)).await.body, "v");

    // 70 s after the last request: over, although the store (on real time)
    // still holds the record.
    clock.at(100);
    let reply = app.get("/get/k", Some(&value)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, "<none>");
    assert!(reply.headers.get(SET_COOKIE).is_none());
    assert_eq!(memory.len(), 1);
    assert!(
        stored(&memory, &value).await.is_some(),
        "the store still returns it: the layer enforced the deadline"
    );

    // An expired id is never adopted.
    let reply = app.post("/set/k/again", Some(&value)).await;
    let fresh = reply.session_value().expect("a new session");
    assert_ne!(support::id_of(&fresh), support::id_of(&value));
    assert_eq!(app.get("/get/k", Some(&value)).await.body, "<none>");

    // The deadline is exclusive: a session untouched for exactly the idle
    // timeout is over.
    clock.at(200);
    let untouched = app.start_session().await;
    clock.at(259);
    assert_eq!(app.get("/get/k", Some(&untouched)).await.body, "v");
    clock.at(259 + 60);
    assert_eq!(app.get("/get/k", Some(&untouched)).await.body, "<none>");
}

#[tokio::test]
async fn the_absolute_timeout_ends_even_an_active_session() {
    let (app, _store, memory, clock) = clocked(60, 150);
    let value = app.start_session().await;

    for at in [40, 80, 120, 145] {
        clock.at(at);
        assert_eq!(app.get("/get/k", Some(&value)).await.body, "v", "at +{at}s");
    }
    // Idle for only 10 s, but 155 s old.
    clock.at(155);
    assert_eq!(app.get("/get/k", Some(&value)).await.body, "<none>");
    assert!(
        stored(&memory, &value).await.is_some(),
        "the layer, not the store, refused it"
    );
}

#[tokio::test]
async fn the_absolute_timeout_holds_even_if_the_store_returns_a_later_deadline() {
    let (app, _store, memory, clock) = clocked(60, 150);
    let value = app.start_session().await;
    // A store (or an older configuration) hands back a far deadline.
    let record = stored(&memory, &value).await.expect("stored");
    let late = Record {
        version: record.version + 1,
        expires_at: clock.now() + Duration::from_secs(10_000),
        ..record.clone()
    };
    assert_eq!(
        memory
            .update(&late, record.version)
            .await
            .expect("memory store"),
        Updated::Updated
    );

    clock.at(140);
    assert_eq!(app.get("/get/k", Some(&value)).await.body, "v");
    clock.at(150);
    let reply = app.get("/get/k", Some(&value)).await;
    assert_eq!(
        reply.body, "<none>",
        "150 s after creation, whatever the record says"
    );
    assert!(reply.headers.get(SET_COOKIE).is_none());
}

#[tokio::test]
async fn cycle_id_does_not_extend_the_absolute_timeout() {
    let (app, _store, _memory, clock) = clocked(60, 150);
    let old = app.start_session().await;
    for at in [40, 80] {
        clock.at(at);
        assert_eq!(app.get("/get/k", Some(&old)).await.body, "v", "at +{at}s");
    }

    clock.at(100);
    let new = app
        .post("/cycle", Some(&old))
        .await
        .session_value()
        .expect("a new cookie");
    clock.at(140);
    assert_eq!(app.get("/get/k", Some(&new)).await.body, "v");
    clock.at(151);
    assert_eq!(app.get("/get/k", Some(&new)).await.body, "<none>");
}

#[tokio::test]
async fn read_only_requests_refresh_the_idle_deadline_at_most_once_per_share() {
    // Idle 60 s, default refresh share 0.25: a refresh is due 15 s after the
    // last one.
    let (app, store, _memory, clock) = clocked(60, 3600);
    let value = app.start_session().await;
    assert_eq!((store.creates(), store.updates()), (1, 0));

    for at in [5, 10, 14] {
        clock.at(at);
        let reply = app.get("/get/k", Some(&value)).await;
        assert_eq!(reply.body, "v");
        assert!(reply.headers.get(SET_COOKIE).is_none());
        assert_eq!(
            store.updates(),
            0,
            "no write before the share has passed (+{at}s)"
        );
    }
    clock.at(16);
    let reply = app.get("/get/k", Some(&value)).await;
    assert_eq!(reply.body, "v");
    assert_eq!(store.updates(), 1, "exactly one refresh");
    assert!(
        reply.headers.get(SET_COOKIE).is_none(),
        "a browser-session cookie has nothing to re-send"
    );

    for at in [17, 20, 30] {
        clock.at(at);
        assert_eq!(app.get("/get/k", Some(&value)).await.body, "v");
        assert_eq!(
            store.updates(),
            1,
            "throttled again after the refresh (+{at}s)"
        );
    }
    clock.at(32);
    assert_eq!(app.get("/get/k", Some(&value)).await.body, "v");
    assert_eq!(store.updates(), 2);

    // The refreshes moved the deadline: 32 + 60.
    clock.at(91);
    assert_eq!(app.get("/get/k", Some(&value)).await.body, "v");
    assert_eq!(store.creates(), 1);
}

#[tokio::test]
async fn a_persistent_refresh_resends_a_max_age_within_the_server_lifetime() {
    let (app, store, _memory, clock) = clocked(60, 100);
    let value = app.start_session().await;

    let reply = app.post("/persist/true", Some(&value)).await;
    let cookie = reply.session_cookie().expect("the lifetime changed");
    assert_eq!(cookie.value, value, "same id, same signature");
    assert_eq!(cookie.max_age(), Some(60));

    clock.at(20);
    let reply = app.get("/get/k", Some(&value)).await;
    assert_eq!(reply.body, "v");
    let cookie = reply
        .session_cookie()
        .expect("a refresh re-sends a persistent cookie");
    assert_eq!(cookie.max_age(), Some(60));
    assert_eq!(reply.cache_control(), Some("no-store"));

    // Near the absolute deadline the cookie ends with it: 100 - 50.
    clock.at(50);
    let updates = store.updates();
    let reply = app.get("/get/k", Some(&value)).await;
    assert_eq!(store.updates(), updates + 1);
    let cookie = reply.session_cookie().expect("refreshed");
    assert_eq!(cookie.max_age(), Some(50));

    // Nothing left to extend: no write, no cookie.
    clock.at(70);
    let reply = app.get("/get/k", Some(&value)).await;
    assert_eq!(reply.body, "v");
    assert!(reply.session_cookie().is_none());
    assert_eq!(store.updates(), updates + 1);

    clock.at(99);
    assert_eq!(app.get("/get/k", Some(&value)).await.body, "v");
    clock.at(100);
    assert_eq!(app.get("/get/k", Some(&value)).await.body, "<none>");
}

#[tokio::test]
async fn set_persistent_gives_a_max_age_equal_to_the_remaining_lifetime() {
    let (app, _store, _memory, clock) = clocked(60, 3600);
    let value = app.start_session().await;
    let default = app.post("/set/k/w", Some(&value)).await;
    assert!(
        default.session_cookie().is_none(),
        "no Max-Age, nothing to re-send by default"
    );

    clock.at(10);
    let reply = app.post("/persist/true", Some(&value)).await;
    let cookie = reply
        .session_cookie()
        .expect("the cookie's lifetime changed");
    assert_eq!(cookie.max_age(), Some(60), "deadline (10 + 60) - now (10)");

    // Every later write re-sends the persistent cookie.
    clock.at(12);
    let reply = app.post("/set/k/x", Some(&value)).await;
    assert_eq!(
        reply.session_cookie().and_then(|cookie| cookie.max_age()),
        Some(60)
    );

    // Back to a browser-session cookie: re-sent without Max-Age.
    let reply = app.post("/persist/false", Some(&value)).await;
    let cookie = reply.session_cookie().expect("the lifetime changed again");
    assert!(!cookie.has("Max-Age"), "{cookie:?}");
    assert_eq!(cookie.value, value);

    // The absolute deadline caps Max-Age.
    let (app, _store, _memory, clock) = clocked(60, 65);
    let value = app.start_session().await;
    clock.at(10);
    let reply = app.post("/persist/true", Some(&value)).await;
    assert_eq!(
        reply.session_cookie().and_then(|cookie| cookie.max_age()),
        Some(55)
    );
}

#[tokio::test]
async fn a_persistent_default_applies_to_new_sessions() {
    let clock = ManualClock::new();
    let layer = SessionLayer::builder(MemoryStore::default(), key(1))
        .persistent(true)
        .idle_timeout(Duration::from_secs(600))
        .clock(clock.source())
        .build()
        .expect("valid config");
    let app = App::new(layer);
    let reply = app.post("/set/k/v", None).await;
    let cookie = reply.session_cookie().expect("set");
    assert_eq!(
        cookie.max_age(),
        Some(600),
        "never more than the idle timeout"
    );

    // A session can opt out.
    let value = cookie.value;
    let reply = app.post("/persist/false", Some(&value)).await;
    assert!(!reply.session_cookie().expect("re-sent").has("Max-Age"));
}

#[tokio::test]
async fn server_errors_do_not_save() {
    let (app, store, memory) = counted();

    // A new session written by a failing handler is not created.
    let reply = app.post("/fail/k/v", None).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        reply.body, "handler failed",
        "the handler's response is kept"
    );
    assert!(reply.headers.get(SET_COOKIE).is_none());
    assert_eq!(store.creates(), 0);
    assert_eq!(memory.len(), 0);

    // An existing session is not changed.
    let value = app.start_session().await;
    let before = stored(&memory, &value).await.expect("stored");
    let updates = store.updates();
    let reply = app.post("/fail/k/changed", Some(&value)).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(reply.headers.get(SET_COOKIE).is_none());
    assert_eq!(store.updates(), updates);
    let after = stored(&memory, &value).await.expect("still stored");
    assert_eq!(after.version, before.version);
    assert_eq!(after.data, before.data);
    assert_eq!(app.get("/get/k", Some(&value)).await.body, "v");
}

#[tokio::test]
async fn save_if_overrides_the_status_rule() {
    let memory = MemoryStore::default();
    let layer = SessionLayer::builder(memory.clone(), key(1))
        .save_if(|_status| true)
        .build()
        .expect("valid config");
    let app = App::new(layer);

    let reply = app.post("/fail/k/v", None).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    let value = reply
        .session_value()
        .expect("saved although the handler failed");
    assert_eq!(memory.len(), 1);
    assert_eq!(
        app.post("/fail/k/w", Some(&value)).await.status,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(app.get("/get/k", Some(&value)).await.body, "w");

    // And the other way round: a predicate that refuses a 200.
    let memory = MemoryStore::default();
    let layer = SessionLayer::builder(memory.clone(), key(1))
        .save_if(|status| status != StatusCode::OK)
        .build()
        .expect("valid config");
    let reply = App::new(layer).post("/set/k/v", None).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.headers.get(SET_COOKIE).is_none());
    assert_eq!(memory.len(), 0);
}

#[tokio::test]
async fn destroy_still_applies_on_a_server_error() {
    let (app, store, memory) = counted();
    let value = app.start_session().await;

    let reply = app.post("/destroy-fail", Some(&value)).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.body, "handler failed");
    let removal = reply.session_cookie().expect("the removal cookie is sent");
    assert!(removal.is_removal(), "{removal:?}");
    assert_eq!(store.deletes(), 1);
    assert_eq!(memory.len(), 0);
    assert_eq!(app.get("/get/k", Some(&value)).await.body, "<none>");
}

#[tokio::test]
async fn destroy_resets_remember_me_to_the_layer_default() {
    let memory = MemoryStore::default();
    let app = App::new(SessionLayer::new(memory.clone(), key(1)));
    let old = app.start_session().await;
    let reply = app.post("/persist/true", Some(&old)).await;
    assert!(
        reply
            .session_cookie()
            .is_some_and(|cookie| cookie.max_age().is_some()),
        "remember me: {reply:?}"
    );

    let reply = app.post("/sign-out", Some(&old)).await;
    assert_eq!(reply.status, StatusCode::OK);
    let cookie = reply.session_cookie().expect("the flash session's cookie");
    assert!(!cookie.is_removal(), "{cookie:?}");
    assert!(
        !cookie.has("Max-Age") && !cookie.has("Expires"),
        "after a logout the new session is a browser-session one: {cookie:?}"
    );
    assert_ne!(support::id_of(&cookie.value), support::id_of(&old));
    let record = stored(&memory, &cookie.value).await.expect("stored");
    assert_eq!(record.data.first(), Some(&0), "stored as a browser-session");

    // A later write on the new session has no persistent cookie to re-send.
    let reply = app.post("/set/k/x", Some(&cookie.value)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.session_cookie().is_none(), "{reply:?}");
    assert_eq!(
        app.post("/take/flash", Some(&cookie.value)).await.body,
        "signed out"
    );
}
