//! Concurrent requests on one session: no lost update, no lost key, the
//! later insert wins, and nothing brings back a destroyed or rotated id
//! (SPEC §6).

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::http::header::SET_COOKIE;
use axum::routing::{get, post};
use common::{App, CountingStore, FaultyStore, Gate, ManualClock, Op, Reply, key, stored};
use session_layer::{Error, MemoryStore, Session, SessionLayer};
use tokio::sync::Barrier;
use tokio::task::JoinHandle;

/// The standard routes plus:
/// - `POST /slow/{key}/{value}`: inserts, then pauses at `gate`;
/// - `GET /slow-read`: reads `k`, then pauses at `gate`;
/// - `POST /slow-incr`: increments `n`, then pauses at `gate`;
/// - `GET /len`: the number of values in the session.
fn slow_routes(gate: &Arc<Gate>) -> Router {
    let insert_gate = Arc::clone(gate);
    let read_gate = Arc::clone(gate);
    let incr_gate = Arc::clone(gate);
    common::routes()
        .route(
            "/slow/{key}/{value}",
            post(
                move |session: Session, Path((key, value)): Path<(String, String)>| async move {
                    session.insert(&key, value)?;
                    insert_gate.pause().await;
                    Ok::<_, Error>("slow")
                },
            ),
        )
        .route(
            "/slow-read",
            get(move |session: Session| async move {
                let value = session.get::<String>("k")?.unwrap_or_default();
                read_gate.pause().await;
                Ok::<_, Error>(value)
            }),
        )
        .route(
            "/slow-incr",
            post(move |session: Session| async move {
                let n = session.update("n", |n: Option<u64>| n.unwrap_or(0) + 1)?;
                incr_gate.pause().await;
                Ok::<_, Error>(n.to_string())
            }),
        )
        .route(
            "/len",
            get(|session: Session| async move { session.len().to_string() }),
        )
}

fn spawn_post(app: &App, uri: &str, cookie: &str) -> JoinHandle<Reply> {
    let (app, uri, cookie) = (app.clone(), uri.to_owned(), cookie.to_owned());
    tokio::spawn(async move { app.post(&uri, Some(&cookie)).await })
}

fn spawn_get(app: &App, uri: &str, cookie: &str) -> JoinHandle<Reply> {
    let (app, uri, cookie) = (app.clone(), uri.to_owned(), cookie.to_owned());
    tokio::spawn(async move { app.get(&uri, Some(&cookie)).await })
}

async fn join(task: JoinHandle<Reply>) -> Reply {
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the request finished within 10 s")
        .expect("the request task did not panic")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_updates_are_all_counted() {
    let memory = MemoryStore::default();
    let store = CountingStore::new(memory.clone());
    let app = App::new(SessionLayer::new(store.clone(), key(1)));
    let value = app.start_session().await;

    let tasks: Vec<_> = (0..200)
        .map(|_| spawn_post(&app, "/incr", &value))
        .collect();
    for task in tasks {
        let reply = join(task).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        assert!(reply.headers.get(SET_COOKIE).is_none());
    }
    assert_eq!(app.get("/n", Some(&value)).await.body, "200");
    let record = stored(&memory, &value).await.expect("stored");
    assert_eq!(record.version, 201, "one create and 200 successful updates");
    assert!(store.updates() >= 200);
    assert_eq!(memory.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contended_updates_are_reapplied_until_they_land() {
    // Slow writes make almost every save conflict with another one.
    let memory = MemoryStore::default();
    let faulty = FaultyStore::new(memory.clone());
    let store = CountingStore::new(faulty.clone());
    let layer = SessionLayer::builder(store.clone(), key(1))
        .max_save_attempts(10_000)
        .build()
        .expect("valid config");
    let app = App::new(layer);
    let value = app.start_session().await;
    faulty.delay(Op::Update, Duration::from_millis(2));

    let tasks: Vec<_> = (0..50).map(|_| spawn_post(&app, "/incr", &value)).collect();
    for task in tasks {
        let reply = join(task).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    }
    assert_eq!(app.get("/n", Some(&value)).await.body, "50");
    assert_eq!(
        stored(&memory, &value).await.map(|record| record.version),
        Some(51)
    );
    assert!(
        store.updates() > 50,
        "conflicts happened and were re-applied ({} updates)",
        store.updates()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_of_different_keys_both_survive() {
    let gate = Gate::new();
    let memory = MemoryStore::default();
    let store = CountingStore::new(memory.clone());
    let router = slow_routes(&gate).layer(SessionLayer::new(store.clone(), key(1)));
    let app = App::with_router(router, "id");
    let value = app.start_session().await;
    let before = store.snapshot();

    // A loads version 1, inserts `a`, and waits.
    let slow = spawn_post(&app, "/slow/a/1", &value);
    gate.reached().await;
    // B loads version 1 too, inserts `b`, and saves version 2.
    let reply = app.post("/set/b/2", Some(&value)).await;
    assert_eq!(reply.status, StatusCode::OK);
    // A's compare-and-set fails; it reloads and re-applies its insert.
    gate.open();
    let reply = join(slow).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert!(reply.headers.get(SET_COOKIE).is_none());

    assert_eq!(app.get("/get/a", Some(&value)).await.body, "1");
    assert_eq!(app.get("/get/b", Some(&value)).await.body, "2");
    assert_eq!(app.get("/get/k", Some(&value)).await.body, "v");
    assert_eq!(
        stored(&memory, &value).await.map(|record| record.version),
        Some(3)
    );
    let [loads, creates, updates, deletes, rotates] = store.snapshot();
    assert_eq!(
        [loads, creates, updates, deletes, rotates],
        [before[0] + 3 + 3, before[1], before[2] + 3, 0, 0],
        "A load, B load, A reload (+3 reads above); B update, A stale update, A update"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truly_concurrent_writers_of_different_keys_all_survive() {
    let barrier = Arc::new(Barrier::new(2));
    let memory = MemoryStore::default();
    let waiting = Arc::clone(&barrier);
    let router = common::routes()
        .route(
            "/together/{key}",
            post(move |session: Session, Path(key): Path<String>| {
                let barrier = Arc::clone(&waiting);
                async move {
                    session.insert(&key, true)?;
                    // Both requests have loaded the same version before
                    // either commits.
                    barrier.wait().await;
                    Ok::<_, Error>("ok")
                }
            }),
        )
        .route(
            "/len",
            get(|session: Session| async move { session.len().to_string() }),
        )
        .layer(SessionLayer::new(memory.clone(), key(1)));
    let app = App::with_router(router, "id");
    let value = app.start_session().await;

    for round in 0..50 {
        let first = spawn_post(&app, &format!("/together/a{round}"), &value);
        let second = spawn_post(&app, &format!("/together/b{round}"), &value);
        assert_eq!(join(first).await.status, StatusCode::OK);
        assert_eq!(join(second).await.status, StatusCode::OK);
    }
    // 100 keys plus `k`.
    assert_eq!(app.get("/len", Some(&value)).await.body, "101");
    assert_eq!(
        stored(&memory, &value).await.map(|record| record.version),
        Some(101)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_inserts_of_one_key_the_later_commit_wins() {
    let gate = Gate::new();
    let memory = MemoryStore::default();
    let router = slow_routes(&gate).layer(SessionLayer::new(memory.clone(), key(1)));
    let app = App::with_router(router, "id");
    let value = app.start_session().await;

    // A loads first but commits last.
    let slow = spawn_post(&app, "/slow/k/loaded-first", &value);
    gate.reached().await;
    assert_eq!(
        app.post("/set/k/loaded-second", Some(&value)).await.status,
        StatusCode::OK
    );
    assert_eq!(app.get("/get/k", Some(&value)).await.body, "loaded-second");
    gate.open();
    assert_eq!(join(slow).await.status, StatusCode::OK);

    assert_eq!(app.get("/get/k", Some(&value)).await.body, "loaded-first");
    assert_eq!(
        stored(&memory, &value).await.map(|record| record.version),
        Some(3)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_writer_cannot_recreate_a_destroyed_session() {
    let gate = Gate::new();
    let memory = MemoryStore::default();
    let store = CountingStore::new(memory.clone());
    let router = slow_routes(&gate).layer(SessionLayer::new(store.clone(), key(1)));
    let app = App::with_router(router, "id");
    let value = app.start_session().await;

    let slow = spawn_post(&app, "/slow/x/1", &value);
    gate.reached().await;
    let reply = app.post("/destroy", Some(&value)).await;
    assert!(
        reply
            .session_cookie()
            .is_some_and(|cookie| cookie.is_removal())
    );
    assert_eq!(memory.len(), 0);

    gate.open();
    let reply = join(slow).await;
    assert_eq!(
        reply.status,
        StatusCode::CONFLICT,
        "SessionGone: {}",
        reply.body
    );
    assert!(reply.headers.get(SET_COOKIE).is_none(), "{reply:?}");
    assert_eq!(
        store.creates(),
        1,
        "only the original create, never a re-create"
    );
    assert_eq!(memory.len(), 0);
    assert!(stored(&memory, &value).await.is_none());
    assert_eq!(app.get("/get/x", Some(&value)).await.body, "<none>");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_update_cannot_recreate_a_destroyed_session() {
    let gate = Gate::new();
    let memory = MemoryStore::default();
    let router = slow_routes(&gate).layer(SessionLayer::new(memory.clone(), key(1)));
    let app = App::with_router(router, "id");
    let value = app.start_session().await;

    let slow = spawn_post(&app, "/slow-incr", &value);
    gate.reached().await;
    assert_eq!(
        app.post("/destroy", Some(&value)).await.status,
        StatusCode::OK
    );
    gate.open();
    let reply = join(slow).await;
    assert_eq!(reply.status, StatusCode::CONFLICT, "{}", reply.body);
    assert!(reply.headers.get(SET_COOKIE).is_none());
    assert_eq!(memory.len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_due_a_refresh_cannot_recreate_a_destroyed_session() {
    let gate = Gate::new();
    let clock = ManualClock::new();
    let memory = MemoryStore::default();
    let layer = SessionLayer::builder(memory.clone(), key(1))
        .idle_timeout(Duration::from_secs(60))
        .clock(clock.source())
        .build()
        .expect("valid config");
    let app = App::with_router(slow_routes(&gate).layer(layer), "id");
    let value = app.start_session().await;

    clock.at(30); // a refresh is due
    let slow = spawn_get(&app, "/slow-read", &value);
    gate.reached().await;
    assert_eq!(
        app.post("/destroy", Some(&value)).await.status,
        StatusCode::OK
    );
    gate.open();
    let reply = join(slow).await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "a read does not fail: {}",
        reply.body
    );
    assert_eq!(reply.body, "v");
    assert!(reply.headers.get(SET_COOKIE).is_none(), "{reply:?}");
    assert_eq!(
        memory.len(),
        0,
        "the refresh did not bring the session back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_writer_cannot_recreate_a_rotated_id() {
    let gate = Gate::new();
    let memory = MemoryStore::default();
    let router = slow_routes(&gate).layer(SessionLayer::new(memory.clone(), key(1)));
    let app = App::with_router(router, "id");
    let old = app.start_session().await;

    let slow = spawn_post(&app, "/slow/x/1", &old);
    gate.reached().await;
    let reply = app.post("/cycle", Some(&old)).await;
    let new = reply.session_value().expect("a new id");
    assert_eq!(memory.len(), 1);

    gate.open();
    let reply = join(slow).await;
    assert_eq!(reply.status, StatusCode::CONFLICT, "{}", reply.body);
    assert!(reply.headers.get(SET_COOKIE).is_none(), "{reply:?}");
    assert_eq!(memory.len(), 1, "the old id was not written back");
    assert!(stored(&memory, &old).await.is_none());
    assert_eq!(app.get("/get/k", Some(&old)).await.body, "<none>");
    assert_eq!(app.get("/get/k", Some(&new)).await.body, "v");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_that_loses_a_race_keeps_the_winners_write() {
    let memory = MemoryStore::default();
    let faulty = FaultyStore::new(memory.clone());
    let app = App::new(SessionLayer::new(faulty.clone(), key(1)));
    let old = app.start_session().await;

    // A has loaded version 1 and is about to rotate it.
    let at_rotate = faulty.hold_next(Op::Rotate);
    let cycling = spawn_post(&app, "/cycle", &old);
    at_rotate.reached().await;
    // B saves version 2 under the old id meanwhile.
    assert_eq!(
        app.post("/set/b/2", Some(&old)).await.status,
        StatusCode::OK
    );
    at_rotate.open();

    let reply = join(cycling).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let new = reply.session_value().expect("rotated after a reload");
    assert_ne!(common::id_of(&new), common::id_of(&old));
    assert_eq!(memory.len(), 1);
    assert!(stored(&memory, &old).await.is_none());
    assert_eq!(
        app.get("/get/b", Some(&new)).await.body,
        "2",
        "B's write moved with the session"
    );
    assert_eq!(app.get("/get/k", Some(&new)).await.body, "v");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_during_a_slow_save_wins() {
    let memory = MemoryStore::default();
    let faulty = FaultyStore::new(memory.clone());
    let app = App::new(SessionLayer::new(faulty.clone(), key(1)));
    let value = app.start_session().await;

    // A's write reaches the store only after B's logout.
    let at_update = faulty.hold_next(Op::Update);
    let writing = spawn_post(&app, "/set/k/late", &value);
    at_update.reached().await;
    assert_eq!(
        app.post("/destroy", Some(&value)).await.status,
        StatusCode::OK
    );
    at_update.open();

    let reply = join(writing).await;
    assert_eq!(reply.status, StatusCode::CONFLICT, "{}", reply.body);
    assert!(reply.headers.get(SET_COOKIE).is_none());
    assert_eq!(memory.len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_save_attempts_answers_409_and_keeps_the_winner() {
    let gate = Gate::new();
    let memory = MemoryStore::default();
    let layer = SessionLayer::builder(memory.clone(), key(1))
        .max_save_attempts(1)
        .build()
        .expect("valid config");
    let app = App::with_router(slow_routes(&gate).layer(layer), "id");
    let value = app.start_session().await;

    let slow = spawn_post(&app, "/slow/a/1", &value);
    gate.reached().await;
    assert_eq!(
        app.post("/set/b/2", Some(&value)).await.status,
        StatusCode::OK
    );
    gate.open();
    let reply = join(slow).await;
    assert_eq!(reply.status, StatusCode::CONFLICT, "{}", reply.body);
    assert!(reply.headers.get(SET_COOKIE).is_none());

    assert_eq!(app.get("/get/a", Some(&value)).await.body, "<none>");
    assert_eq!(app.get("/get/b", Some(&value)).await.body, "2");
    assert_eq!(
        stored(&memory, &value).await.map(|record| record.version),
        Some(2)
    );
}
