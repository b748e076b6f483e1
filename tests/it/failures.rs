//! Store failures and corrupt records: a 500 without a `Set-Cookie`, the
//! stored session left as it was, and the user's hook (SPEC §7).

mod common;

use axum::http::header::{CONTENT_TYPE, SET_COOKIE};
use axum::http::{Response, StatusCode};
use common::{App, FaultyStore, Op, key, stored};
use session_layer::{ErrorKind, MemoryStore, Record, SessionLayer, SessionStore, Updated};

fn faulty() -> (App, FaultyStore<MemoryStore>, MemoryStore) {
    let memory = MemoryStore::default();
    let store = FaultyStore::new(memory.clone());
    let app = App::new(SessionLayer::new(store.clone(), key(1)));
    (app, store, memory)
}

#[tokio::test]
async fn a_failed_load_rejects_with_500_and_keeps_the_record() {
    let (app, store, memory) = faulty();
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

    store.fail(Op::Load, false);
    let after = stored(&memory, &value).await.expect("still stored");
    assert_eq!((after.version, &after.data), (before.version, &before.data));
    assert_eq!(app.get("/get/k", Some(&value)).await.body, "v");
}

#[tokio::test]
async fn a_failed_update_answers_500_and_changes_nothing() {
    let (app, store, memory) = faulty();
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
    assert!(!reply.body.contains(&common::id_of(&value).expose()));

    store.fail(Op::Update, false);
    let after = stored(&memory, &value).await.expect("still stored");
    assert_eq!((after.version, &after.data), (before.version, &before.data));
    assert_eq!(app.get("/get/k", Some(&value)).await.body, "v");
}

#[tokio::test]
async fn a_failed_create_answers_500_without_a_cookie() {
    let (app, store, memory) = faulty();

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
    let (app, store, memory) = faulty();
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
    let (app, store, memory) = faulty();
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
    let (app, store, _memory) = faulty();
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
