//! Store failures and corrupt records: a 500 (or 409) without a `Set-Cookie`
//! but with `Vary: Cookie`, the stored session left as it was, the user's
//! hook, and typed errors that keep their kind and source.

use std::error::Error as _;
use std::sync::{Arc, Mutex, PoisonError};

use crate::support;
use crate::support::{App, FaultyStore, Op, Reply, key, stored};
use axum::http::header::{CONTENT_TYPE, SET_COOKIE, VARY};
use axum::http::{Response, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use session_layer::{
    ErrorKind, MemoryStore, Record, Session, SessionLayer, SessionRejection, SessionStore, Updated,
};

/// Lets `op` pass again, then checks that the session behind `value` is
/// stored as it was `before` and still reads `k = v`.
async fn unchanged_once_passing(
    app: &App,
    store: &FaultyStore<MemoryStore>,
    memory: &MemoryStore,
    op: Op,
    value: &str,
    before: &Record,
) {
    store.fail(op, false);
    let after = stored(memory, value).await.expect("still stored");
    assert_eq!((after.version, &after.data), (before.version, &before.data));
    assert_eq!(app.get("/get/k", Some(value)).await.body, "v");
}

#[tokio::test]
async fn a_failed_load_rejects_with_500_and_keeps_the_record() {
    let (app, store, memory) = support::faulty();
    let value = app.start_session().await;
    let before = stored(&memory, &value).await.expect("stored");

    store.fail(Op::Load, true);
    for (uri, post) in [
        ("/get/k", false),
        ("/set/k/lost", true),
        ("/maybe", false),
        ("/destroy", true),
    ] {
        let reply = if post {
            app.post(uri, Some(&value)).await
        } else {
            app.get(uri, Some(&value)).await
        };
        assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR, "{uri}");
        assert!(
            reply.body.contains("failed to load the session"),
            "{uri}: {}",
            reply.body
        );
        assert!(
            !reply.body.contains(&value),
            "{uri}: no cookie value in the body"
        );
        assert!(
            reply.headers.get(SET_COOKIE).is_none(),
            "{uri}: the browser keeps its cookie: {reply:?}"
        );
    }
    // Requests that never load are unaffected.
    assert_eq!(app.get("/plain", Some(&value)).await.status, StatusCode::OK);
    // Anonymous requests do not load either.
    assert_eq!(app.get("/get/k", None).await.status, StatusCode::OK);

    unchanged_once_passing(&app, &store, &memory, Op::Load, &value, &before).await;
}

#[tokio::test]
async fn a_failed_update_answers_500_and_changes_nothing() {
    let (app, store, memory) = support::faulty();
    let value = app.start_session().await;
    let before = stored(&memory, &value).await.expect("stored");

    store.fail(Op::Update, true);
    let reply = app.post("/set/k/lost", Some(&value)).await;
    assert_eq!(
        reply.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{}",
        reply.body
    );
    assert_ne!(reply.body, "ok", "the handler's response is replaced");
    assert!(reply.headers.get(SET_COOKIE).is_none(), "{reply:?}");
    assert!(!reply.body.contains(&support::id_of(&value).expose()));

    unchanged_once_passing(&app, &store, &memory, Op::Update, &value, &before).await;
}

#[tokio::test]
async fn a_failed_create_answers_500_without_a_cookie() {
    let (app, store, memory) = support::faulty();

    store.fail(Op::Create, true);
    let reply = app.post("/set/k/v", None).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        reply.headers.get(SET_COOKIE).is_none(),
        "no cookie for a record that does not exist"
    );
    assert_eq!(memory.len(), 0);

    // The sign-out flash: the old session is deleted, the new one fails.
    store.fail(Op::Create, false);
    let value = app.start_session().await;
    store.fail(Op::Create, true);
    let reply = app.post("/sign-out", Some(&value)).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        reply.headers.get(SET_COOKIE).is_none(),
        "no cookie for the session that failed: {reply:?}"
    );
}

#[tokio::test]
async fn a_full_store_answers_500_without_a_cookie() {
    let memory = MemoryStore::with_capacity(0);
    let app = App::new(SessionLayer::new(memory.clone(), key(1)));
    let reply = app.post("/set/k/v", None).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(reply.body.contains("full"), "{}", reply.body);
    assert!(reply.headers.get(SET_COOKIE).is_none());
    assert_eq!(memory.len(), 0);
}

#[tokio::test]
async fn a_failed_rotation_keeps_the_old_session() {
    let (app, store, memory) = support::faulty();
    let value = app.start_session().await;

    store.fail(Op::Rotate, true);
    let reply = app.post("/cycle", Some(&value)).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(reply.headers.get(SET_COOKIE).is_none(), "{reply:?}");
    store.fail(Op::Rotate, false);
    assert_eq!(memory.len(), 1);
    assert_eq!(app.get("/get/k", Some(&value)).await.body, "v");
}

#[tokio::test]
async fn a_failed_delete_keeps_the_cookie_and_the_session() {
    let (app, store, memory) = support::faulty();
    let value = app.start_session().await;

    store.fail(Op::Delete, true);
    let reply = app.post("/destroy", Some(&value)).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        reply.headers.get(SET_COOKIE).is_none(),
        "no removal cookie for a session that still exists: {reply:?}"
    );
    store.fail(Op::Delete, false);
    assert_eq!(memory.len(), 1);
    assert_eq!(app.get("/get/k", Some(&value)).await.body, "v");
}

#[tokio::test]
async fn the_save_error_hook_builds_the_response() {
    let memory = MemoryStore::default();
    let store = FaultyStore::new(memory.clone());
    let layer = SessionLayer::builder(store.clone(), key(1))
        .on_save_error(|error| {
            let mut response = Response::new(format!("try again later ({:?})", error.kind()));
            *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            response
                .headers_mut()
                .insert(SET_COOKIE, "id=from-the-hook".parse().expect("valid"));
            response
        })
        .build()
        .expect("valid config");
    let app = App::new(layer);

    store.fail(Op::Create, true);
    let reply = app.post("/set/k/v", None).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.body, "try again later (Store)");
    assert!(
        reply.session_cookie().is_none(),
        "the hook's response never carries the session cookie: {reply:?}"
    );

    store.fail(Op::Create, false);
    let value = app.start_session().await;
    store.fail(Op::Update, true);
    let reply = app.post("/set/k/w", Some(&value)).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.body, "try again later (Store)");
}

#[tokio::test]
async fn the_default_save_error_is_plain_text() {
    let (app, store, _memory) = support::faulty();
    store.fail(Op::Create, true);
    let reply = app.post("/set/k/v", None).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        reply.header(CONTENT_TYPE),
        Some("text/plain; charset=utf-8")
    );
    assert!(reply.body.contains("session store error"), "{}", reply.body);
    assert!(
        !reply.body.contains("injected"),
        "the source stays out of the body"
    );
}

#[tokio::test]
async fn a_corrupt_record_is_an_error_not_a_panic() {
    let memory = MemoryStore::default();
    let app = App::new(SessionLayer::new(memory.clone(), key(1)));
    let value = app.start_session().await;
    let record = stored(&memory, &value).await.expect("stored");

    for garbage in [
        &b""[..],
        b"\xff\xff",
        b"\x00not json",
        b"\x00[1,2]",
        b"\x09{}",
    ] {
        let current = stored(&memory, &value).await.expect("stored");
        let corrupt = Record {
            data: garbage.into(),
            version: current.version + 1,
            ..record.clone()
        };
        let updated = memory
            .update(&corrupt, current.version)
            .await
            .expect("memory store");
        assert_eq!(updated, Updated::Updated);

        let reply = app.get("/get/k", Some(&value)).await;
        assert_eq!(
            reply.status,
            StatusCode::INTERNAL_SERVER_ERROR,
            "{garbage:?}"
        );
        assert!(
            reply.body.contains("deserialize"),
            "{garbage:?}: {}",
            reply.body
        );
        assert!(reply.headers.get(SET_COOKIE).is_none(), "{garbage:?}");
    }
    let error = session_layer::Error::store(std::io::Error::other("x"));
    assert_eq!(error.kind(), ErrorKind::Store);
}

// A response to a failed save still depends on the cookie: `Vary: Cookie`.

fn varies_on_cookie(reply: &Reply) -> bool {
    reply.vary().is_some_and(|vary| {
        vary.split(',')
            .any(|token| token.trim().eq_ignore_ascii_case("cookie"))
    })
}

#[tokio::test]
async fn a_save_error_500_varies_on_cookie_and_sets_no_cookie() {
    let (app, faulty, _memory) = support::faulty();
    let value = app.start_session().await;

    faulty.fail(Op::Update, true);
    let reply = app.post("/set/k/lost", Some(&value)).await;
    assert_eq!(
        reply.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{}",
        reply.body
    );
    assert!(varies_on_cookie(&reply), "{reply:?}");
    assert!(reply.headers.get(SET_COOKIE).is_none(), "{reply:?}");

    // A new session whose create fails: the same.
    faulty.fail(Op::Create, true);
    let reply = app.post("/set/k/v", None).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(varies_on_cookie(&reply), "{reply:?}");
    assert!(reply.headers.get(SET_COOKIE).is_none(), "{reply:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_gone_409_varies_on_cookie_and_sets_no_cookie() {
    let (app, faulty, memory) = support::faulty();
    let value = app.start_session().await;

    let reply = support::logout_during_a_held_write(&app, &faulty, &value).await;
    assert_eq!(reply.status, StatusCode::CONFLICT, "{}", reply.body);
    assert!(varies_on_cookie(&reply), "{reply:?}");
    assert!(reply.headers.get(SET_COOKIE).is_none(), "{reply:?}");
    assert_eq!(memory.len(), 0);
}

// Typed errors keep their kind and source, over HTTP.

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What a handler saw of a load rejection.
#[derive(Debug, Default)]
struct SeenRejection {
    kind: Option<ErrorKind>,
    chain: Vec<String>,
    io_kind: Option<std::io::ErrorKind>,
}

#[tokio::test]
async fn a_load_rejection_keeps_its_kind_and_source() {
    let seen = Arc::new(Mutex::new(None::<SeenRejection>));
    let record = Arc::clone(&seen);
    let memory = MemoryStore::default();
    let faulty = FaultyStore::new(memory.clone());
    let router = support::routes()
        .route(
            "/checked",
            get(move |session: Result<Session, SessionRejection>| {
                let record = Arc::clone(&record);
                async move {
                    let Err(rejection) = session else {
                        return (StatusCode::OK, "loaded").into_response();
                    };
                    let mut seen = SeenRejection::default();
                    if let SessionRejection::Load(error) = &rejection {
                        seen.kind = Some(error.kind());
                    }
                    seen.chain.push(rejection.to_string());
                    let mut source = rejection.source();
                    while let Some(error) = source {
                        seen.chain.push(error.to_string());
                        if let Some(io) = error.downcast_ref::<std::io::Error>() {
                            seen.io_kind = Some(io.kind());
                        }
                        source = error.source();
                    }
                    *lock(&record) = Some(seen);
                    (StatusCode::SERVICE_UNAVAILABLE, "handled").into_response()
                }
            }),
        )
        .layer(SessionLayer::new(faulty.clone(), key(1)));
    let app = App::with_router(router, "id");
    let value = app.start_session().await;
    assert_eq!(app.get("/checked", Some(&value)).await.body, "loaded");
    assert!(lock(&seen).is_none());

    faulty.fail(Op::Load, true);
    let reply = app.get("/checked", Some(&value)).await;
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "the handler got the rejection: {}",
        reply.body
    );
    assert_eq!(reply.body, "handled");
    assert!(reply.headers.get(SET_COOKIE).is_none(), "{reply:?}");
    assert_eq!(
        reply.headers.get(VARY).map(|value| value.as_bytes()),
        Some(&b"Cookie"[..]),
        "a response to a failed load still depends on the cookie"
    );

    let seen = lock(&seen).take().expect("the handler saw a rejection");
    assert_eq!(seen.kind, Some(ErrorKind::Store), "{seen:?}");
    assert_eq!(
        seen.chain.last().map(String::as_str),
        Some("injected Load failure"),
        "the source chain reaches the injected error: {seen:?}"
    );
    assert_eq!(
        seen.chain.get(1).map(String::as_str),
        Some("session store error"),
        "the rejection's source is the crate's Error: {seen:?}"
    );
    assert_eq!(
        seen.io_kind,
        Some(std::io::ErrorKind::ConnectionReset),
        "{seen:?}"
    );
    let id = support::id_of(&value).expose();
    assert!(seen.chain.iter().all(|text| !text.contains(&id)));
    assert!(seen.chain.iter().all(|text| !text.contains(&value)));
}

#[tokio::test]
async fn the_save_error_hook_receives_the_store_error_with_its_source() {
    type Seen = (ErrorKind, Option<String>, Option<std::io::ErrorKind>);
    let seen = Arc::new(Mutex::new(None::<Seen>));
    let record = Arc::clone(&seen);
    let memory = MemoryStore::default();
    let faulty = FaultyStore::new(memory.clone());
    let layer = SessionLayer::builder(faulty.clone(), key(1))
        .on_save_error(move |error| {
            let source = error.source();
            let io_kind = source
                .and_then(|source| source.downcast_ref::<std::io::Error>())
                .map(std::io::Error::kind);
            *lock(&record) = Some((error.kind(), source.map(ToString::to_string), io_kind));
            let mut response = Response::new("hooked".to_owned());
            *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            response
        })
        .build()
        .expect("valid config");
    let app = App::new(layer);
    let value = app.start_session().await;
    assert!(lock(&seen).is_none(), "no error, no hook");

    faulty.fail(Op::Update, true);
    let reply = app.post("/set/k/lost", Some(&value)).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.body, "hooked");
    assert!(reply.headers.get(SET_COOKIE).is_none(), "{reply:?}");
    assert_eq!(
        lock(&seen).take(),
        Some((
            ErrorKind::Store,
            Some("injected Update failure".to_owned()),
            Some(std::io::ErrorKind::ConnectionReset)
        ))
    );

    faulty.fail(Op::Create, true);
    let reply = app.post("/set/k/v", None).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        lock(&seen).take().and_then(|(_, source, _)| source),
        Some("injected Create failure".to_owned())
    );
}
