//! Concurrent requests on one session: no lost update, no lost key, the
//! later commit wins (even when it writes back what it loaded), an `update`
//! closure may read the session, and nothing brings back a destroyed or
//! rotated id.

use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use crate::support;
use crate::support::{
    App, CountingStore, FaultyStore, Gate, ManualClock, Op, join, key, post_ok, spawn_get,
    spawn_post, stored, while_paused, while_paused_with,
};
use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::http::header::SET_COOKIE;
use axum::routing::{get, post};
use session_layer::{Error, MemoryStore, Session, SessionLayer};
use tokio::sync::Barrier;

/// The standard routes plus:
/// - `POST /slow/{key}/{value}`: inserts, then pauses at `gate`;
/// - `GET /slow-read`: reads `k`, then pauses at `gate`;
/// - `POST /slow-incr`: increments `n`, then pauses at `gate`;
/// - `GET /len`: the number of values in the session.
fn slow_routes(gate: &Arc<Gate>) -> Router {
    let insert_gate = Arc::clone(gate);
    let read_gate = Arc::clone(gate);
    let incr_gate = Arc::clone(gate);
    support::routes()
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

/// Serves [`slow_routes`] pausing at `gate`, behind `layer`.
fn slow_app(gate: &Arc<Gate>, layer: SessionLayer) -> App {
    App::with_router(slow_routes(gate).layer(layer), "id")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_updates_are_all_counted() {
    let (app, store, memory) = support::counted();
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
    let app = slow_app(&gate, SessionLayer::new(store.clone(), key(1)));
    let value = app.start_session().await;
    let before = store.snapshot();

    // A loads version 1, inserts `a`, and waits.
    let slow = spawn_post(&app, "/slow/a/1", &value);
    let reply = while_paused(&gate, slow, async {
        // B loads version 1 too, inserts `b`, and saves version 2.
        let reply = app.post("/set/b/2", Some(&value)).await;
        assert_eq!(reply.status, StatusCode::OK);
    })
    .await;
    // A's compare-and-set fails; it reloads and re-applies its insert.
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
    let router = support::routes()
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
    let app = slow_app(&gate, SessionLayer::new(memory.clone(), key(1)));
    let value = app.start_session().await;

    // A loads first but commits last.
    let slow = spawn_post(&app, "/slow/k/loaded-first", &value);
    let reply = while_paused(&gate, slow, async {
        assert_eq!(
            app.post("/set/k/loaded-second", Some(&value)).await.status,
            StatusCode::OK
        );
        assert_eq!(app.get("/get/k", Some(&value)).await.body, "loaded-second");
    })
    .await;
    assert_eq!(reply.status, StatusCode::OK);

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
    let app = slow_app(&gate, SessionLayer::new(store.clone(), key(1)));
    let value = app.start_session().await;

    let slow = spawn_post(&app, "/slow/x/1", &value);
    let reply = while_paused(&gate, slow, async {
        let reply = app.post("/destroy", Some(&value)).await;
        assert!(
            reply
                .session_cookie()
                .is_some_and(|cookie| cookie.is_removal())
        );
        assert_eq!(memory.len(), 0);
    })
    .await;
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
    let app = slow_app(&gate, SessionLayer::new(memory.clone(), key(1)));
    let value = app.start_session().await;

    let slow = spawn_post(&app, "/slow-incr", &value);
    let reply = while_paused(&gate, slow, post_ok(&app, "/destroy", &value)).await;
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
    let app = slow_app(&gate, layer);
    let value = app.start_session().await;

    clock.at(30); // a refresh is due
    let slow = spawn_get(&app, "/slow-read", &value);
    let reply = while_paused(&gate, slow, post_ok(&app, "/destroy", &value)).await;
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
    let app = slow_app(&gate, support::no_grace(memory.clone(), key(1)));
    let old = app.start_session().await;

    let slow = spawn_post(&app, "/slow/x/1", &old);
    let (new, reply) = while_paused_with(&gate, slow, async {
        let reply = app.post("/cycle", Some(&old)).await;
        let new = reply.session_value().expect("a new id");
        assert_eq!(memory.len(), 1);
        new
    })
    .await;
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
    let app = App::new(support::no_grace(faulty.clone(), key(1)));
    let old = app.start_session().await;

    // A has loaded version 1 and is about to rotate it.
    let at_rotate = faulty.hold_next(Op::Rotate);
    let cycling = spawn_post(&app, "/cycle", &old);
    // B saves version 2 under the old id meanwhile.
    let reply = while_paused(&at_rotate, cycling, post_ok(&app, "/set/b/2", &old)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let new = reply.session_value().expect("rotated after a reload");
    assert_ne!(support::id_of(&new), support::id_of(&old));
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
    let (app, faulty, memory) = support::faulty();
    let value = app.start_session().await;

    // A's write reaches the store only after B's logout.
    let reply = support::logout_during_a_held_write(&app, &faulty, &value).await;
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
    let app = slow_app(&gate, layer);
    let value = app.start_session().await;

    let slow = spawn_post(&app, "/slow/a/1", &value);
    let reply = while_paused(&gate, slow, post_ok(&app, "/set/b/2", &value)).await;
    assert_eq!(reply.status, StatusCode::CONFLICT, "{}", reply.body);
    assert!(reply.headers.get(SET_COOKIE).is_none());

    assert_eq!(app.get("/get/a", Some(&value)).await.body, "<none>");
    assert_eq!(app.get("/get/b", Some(&value)).await.body, "2");
    assert_eq!(
        stored(&memory, &value).await.map(|record| record.version),
        Some(2)
    );
}

// `update`'s closure may read the session it updates, and may run again
// after a conflict.

/// Runs `scenario` on a runtime of its own thread and fails the test unless
/// it finishes within 5 s.
///
/// A `tokio::time::timeout` alone cannot catch a deadlock on the session's
/// `std` mutex: the deadlock blocks the thread that would notice the timeout
/// (and dropping the runtime afterwards waits for the blocked worker). Here
/// the test thread only waits on a channel, so a hang is reported as such.
fn finishes_within_5s<F, Fut>(scenario: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    let (done, finished) = mpsc::channel();
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        runtime.block_on(async move {
            tokio::time::timeout(Duration::from_secs(5), scenario())
                .await
                .expect("the requests finished within 5 s (no deadlock)");
        });
        // A closed channel without this message means the scenario panicked.
        done.send(()).ok();
    });
    let outcome = finished.recv_timeout(Duration::from_secs(5));
    assert!(
        !matches!(outcome, Err(RecvTimeoutError::Timeout)),
        "the requests did not finish within 5 s: a deadlock"
    );
    if outcome.is_err() {
        if let Err(panic) = thread.join() {
            std::panic::resume_unwind(panic);
        }
    }
}

/// The standard routes plus `POST /step/{n}` (stores `step` as a number) and
/// `POST /total`, whose `update` closure reads `step` through a clone of the
/// session.
fn total_routes() -> Router {
    support::routes()
        .route(
            "/step/{n}",
            post(|session: Session, Path(n): Path<u64>| async move {
                session.insert("step", n)?;
                Ok::<_, Error>("ok")
            }),
        )
        .route(
            "/total",
            post(|session: Session| async move {
                let s2 = session.clone();
                let total = session.update("total", move |t: Option<u64>| {
                    t.unwrap_or(0)
                        + s2.get::<u64>("step")
                            .expect("step is a number")
                            .unwrap_or(1)
                })?;
                Ok::<_, Error>(total.to_string())
            }),
        )
        .route(
            "/total",
            get(|session: Session| async move {
                Ok::<_, Error>(session.get::<u64>("total")?.unwrap_or(0).to_string())
            }),
        )
}

#[test]
fn an_update_closure_may_read_the_session_it_updates() {
    finishes_within_5s(an_update_closure_may_read_the_session_it_updates_scenario);
}

async fn an_update_closure_may_read_the_session_it_updates_scenario() {
    let memory = MemoryStore::default();
    let app = App::with_router(
        total_routes().layer(SessionLayer::new(memory.clone(), key(1))),
        "id",
    );
    let value = app.start_session().await;
    post_ok(&app, "/step/5", &value).await;

    let reply = app.post("/total", Some(&value)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body, "5");
    let reply = app.post("/total", Some(&value)).await;
    assert_eq!(reply.body, "10");
    assert_eq!(app.get("/total", Some(&value)).await.body, "10");

    // A new session: the closure runs before anything is stored.
    let reply = app.post("/total", None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body, "1", "no step: the default of 1");
    let fresh = reply.session_value().expect("the update created a session");
    assert_eq!(app.get("/total", Some(&fresh)).await.body, "1");
}

#[test]
fn an_update_closure_that_reads_the_session_may_be_reapplied_after_a_conflict() {
    finishes_within_5s(reapplied_after_a_conflict_scenario);
}

async fn reapplied_after_a_conflict_scenario() {
    let memory = MemoryStore::default();
    let faulty = FaultyStore::new(memory.clone());
    let app = App::with_router(
        total_routes().layer(SessionLayer::new(faulty.clone(), key(1))),
        "id",
    );
    let value = app.start_session().await;
    post_ok(&app, "/step/5", &value).await;

    // A has computed 0 + 5 and waits at its write; B saves 0 + 5 first.
    let at_update = faulty.hold_next(Op::Update);
    let slow = spawn_post(&app, "/total", &value);
    let reply = while_paused(&at_update, slow, async {
        assert_eq!(app.post("/total", Some(&value)).await.body, "5");
    })
    .await;
    // A's write is stale: the layer re-ran the closure (which reads the
    // session again) on B's value.
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(app.get("/total", Some(&value)).await.body, "10");
    assert_eq!(
        stored(&memory, &value).await.map(|record| record.version),
        Some(4),
        "create, step, B's total, A's re-applied total"
    );
}

// The later commit wins, even when it writes what it loaded.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_later_insert_wins_even_with_the_value_it_loaded() {
    let (app, faulty, memory) = support::faulty();
    let value = app.start_session().await;
    post_ok(&app, "/set/theme/light", &value).await;
    let loaded = stored(&memory, &value).await.expect("stored");

    // A loads theme=light and re-inserts "light"; its write waits.
    let at_update = faulty.hold_next(Op::Update);
    let slow = spawn_post(&app, "/set/theme/light", &value);
    let reply = while_paused(&at_update, slow, async {
        // B inserts "dark" and commits first.
        let reply = app.post("/set/theme/dark", Some(&value)).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(app.get("/get/theme", Some(&value)).await.body, "dark");
    })
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert!(reply.headers.get(SET_COOKIE).is_none(), "{reply:?}");
    assert_eq!(
        app.get("/get/theme", Some(&value)).await.body,
        "light",
        "A committed last, so A's insert wins"
    );
    let after = stored(&memory, &value).await.expect("stored");
    assert_eq!(after.version, loaded.version + 2, "B's write, then A's");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_later_remove_wins_even_of_a_key_it_never_saw() {
    let (app, faulty, memory) = support::faulty();
    let value = app.start_session().await;
    let loaded = stored(&memory, &value).await.expect("stored");

    // A loads a session without `x` and removes `x`; its write waits.
    let at_update = faulty.hold_next(Op::Update);
    let slow = spawn_post(&app, "/remove/x", &value);
    let reply = while_paused(&at_update, slow, async {
        // B adds x = 1 and commits first.
        post_ok(&app, "/set/x/1", &value).await;
        assert_eq!(app.get("/get/x", Some(&value)).await.body, "1");
    })
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body, "false", "x was absent when A removed it");
    assert_eq!(
        app.get("/get/x", Some(&value)).await.body,
        "<none>",
        "A's remove committed last, so x is gone"
    );
    assert_eq!(app.get("/get/k", Some(&value)).await.body, "v");
    let after = stored(&memory, &value).await.expect("stored");
    assert_eq!(after.version, loaded.version + 2, "B's write, then A's");
}
