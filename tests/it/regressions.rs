//! Regression tests: each guards one behaviour that a plausible change to the
//! layer could break without any other test noticing (SPEC §3.6, §3.7, §4.1,
//! §5.2, §6.1–6.3, §7.1, §7.4).

mod common;

use std::error::Error as _;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use axum::extract::Path;
use axum::http::header::{SET_COOKIE, VARY};
use axum::http::{Response, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use common::{App, CountingStore, FaultyStore, ManualClock, Op, Reply, key, stored};
use session_layer::{
    Created, Error, ErrorKind, Id, MemoryStore, Record, Session, SessionLayer, SessionRejection,
    SessionStore, Updated,
};
use tokio::task::JoinHandle;

const HOUR: Duration = Duration::from_secs(60 * 60);

fn spawn_post(app: &App, uri: &str, cookie: &str) -> JoinHandle<Reply> {
    let (app, uri, cookie) = (app.clone(), uri.to_owned(), cookie.to_owned());
    tokio::spawn(async move { app.post(&uri, Some(&cookie)).await })
}

async fn join(task: JoinHandle<Reply>) -> Reply {
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the request finished within 5 s (no deadlock)")
        .expect("the request task did not panic")
}

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

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

// ---------------------------------------------------------------------------
// 1. `update`'s closure may read the session.
// ---------------------------------------------------------------------------

/// The standard routes plus `POST /step/{n}` (stores `step` as a number) and
/// `POST /total`, whose `update` closure reads `step` through a clone of the
/// session.
fn total_routes() -> Router {
    common::routes()
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
    assert_eq!(
        app.post("/step/5", Some(&value)).await.status,
        StatusCode::OK
    );

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
    assert_eq!(
        app.post("/step/5", Some(&value)).await.status,
        StatusCode::OK
    );

    // A has computed 0 + 5 and waits at its write; B saves 0 + 5 first.
    let at_update = faulty.hold_next(Op::Update);
    let slow = spawn_post(&app, "/total", &value);
    at_update.reached().await;
    assert_eq!(app.post("/total", Some(&value)).await.body, "5");
    // A's write is stale: the layer re-runs the closure (which reads the
    // session again) on B's value.
    at_update.open();
    let reply = join(slow).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(app.get("/total", Some(&value)).await.body, "10");
    assert_eq!(
        stored(&memory, &value).await.map(|record| record.version),
        Some(4),
        "create, step, B's total, A's re-applied total"
    );
}

// ---------------------------------------------------------------------------
// 2. SPEC §6.2: the later commit wins, even when it writes what it loaded.
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_later_insert_wins_even_with_the_value_it_loaded() {
    let memory = MemoryStore::default();
    let faulty = FaultyStore::new(memory.clone());
    let app = App::new(SessionLayer::new(faulty.clone(), key(1)));
    let value = app.start_session().await;
    assert_eq!(
        app.post("/set/theme/light", Some(&value)).await.status,
        StatusCode::OK
    );
    let loaded = stored(&memory, &value).await.expect("stored");

    // A loads theme=light and re-inserts "light"; its write waits.
    let at_update = faulty.hold_next(Op::Update);
    let slow = spawn_post(&app, "/set/theme/light", &value);
    at_update.reached().await;
    // B inserts "dark" and commits first.
    let reply = app.post("/set/theme/dark", Some(&value)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(app.get("/get/theme", Some(&value)).await.body, "dark");

    at_update.open();
    let reply = join(slow).await;
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
    let memory = MemoryStore::default();
    let faulty = FaultyStore::new(memory.clone());
    let app = App::new(SessionLayer::new(faulty.clone(), key(1)));
    let value = app.start_session().await;
    let loaded = stored(&memory, &value).await.expect("stored");

    // A loads a session without `x` and removes `x`; its write waits.
    let at_update = faulty.hold_next(Op::Update);
    let slow = spawn_post(&app, "/remove/x", &value);
    at_update.reached().await;
    // B adds x = 1 and commits first.
    assert_eq!(
        app.post("/set/x/1", Some(&value)).await.status,
        StatusCode::OK
    );
    assert_eq!(app.get("/get/x", Some(&value)).await.body, "1");

    at_update.open();
    let reply = join(slow).await;
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

// ---------------------------------------------------------------------------
// 3. The provided `SessionStore::rotate` (SPEC §4.1 fallback, §6.1, §6.3).
// ---------------------------------------------------------------------------

/// A store that implements only the four required methods, so the layer
/// runs the trait's provided `rotate`.
#[derive(Clone)]
struct NoRotate<St>(St);

#[async_trait]
impl<St: SessionStore> SessionStore for NoRotate<St> {
    async fn load(&self, id: &Id) -> Result<Option<Record>, Error> {
        self.0.load(id).await
    }

    async fn create(&self, record: &Record) -> Result<Created, Error> {
        self.0.create(record).await
    }

    async fn update(&self, record: &Record, expected_version: u64) -> Result<Updated, Error> {
        self.0.update(record, expected_version).await
    }

    async fn delete(&self, id: &Id) -> Result<(), Error> {
        self.0.delete(id).await
    }
}

type Layered = (
    App,
    CountingStore<FaultyStore<MemoryStore>>,
    FaultyStore<MemoryStore>,
    MemoryStore,
);

/// An app whose store has no `rotate` of its own; the counts are those of the
/// calls the provided `rotate` makes.
fn no_rotate() -> Layered {
    let memory = MemoryStore::default();
    let faulty = FaultyStore::new(memory.clone());
    let counting = CountingStore::new(faulty.clone());
    let app = App::new(SessionLayer::new(NoRotate(counting.clone()), key(1)));
    (app, counting, faulty, memory)
}

#[tokio::test]
async fn the_default_rotate_moves_the_session() {
    let (app, counting, _faulty, memory) = no_rotate();
    let old = app.start_session().await;

    let reply = app.post("/cycle", Some(&old)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let new = reply.session_value().expect("a new cookie");
    assert_ne!(common::id_of(&new), common::id_of(&old));
    assert_eq!(counting.rotates(), 0, "the store's own rotate is not used");
    assert_eq!((counting.creates(), counting.deletes()), (2, 1));
    assert_eq!(memory.len(), 1);
    assert!(stored(&memory, &old).await.is_none());
    assert_eq!(app.get("/get/k", Some(&new)).await.body, "v");
}

#[tokio::test]
async fn a_default_rotate_whose_create_fails_keeps_the_old_session() {
    let (app, counting, faulty, memory) = no_rotate();
    let old = app.start_session().await;
    let before = stored(&memory, &old).await.expect("stored");

    faulty.fail(Op::Create, true);
    let reply = app.post("/cycle", Some(&old)).await;
    assert_eq!(
        reply.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{}",
        reply.body
    );
    assert!(reply.headers.get(SET_COOKIE).is_none(), "{reply:?}");
    assert_eq!(counting.deletes(), 0, "never delete first");
    faulty.fail(Op::Create, false);

    assert_eq!(memory.len(), 1);
    let after = stored(&memory, &old)
        .await
        .expect("the old record is intact");
    assert_eq!((after.version, &after.data), (before.version, &before.data));
    assert_eq!(app.get("/get/k", Some(&old)).await.body, "v");
    assert_eq!(
        app.get("/id", Some(&old)).await.body,
        common::id_of(&old).expose()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_during_a_default_rotate_moves_with_the_session() {
    let (app, counting, faulty, memory) = no_rotate();
    let old = app.start_session().await;

    // A checked the old version and waits at the create of the new id.
    let at_create = faulty.hold_next(Op::Create);
    let cycling = spawn_post(&app, "/cycle", &old);
    at_create.reached().await;
    // B writes to the old id meanwhile.
    let reply = app.post("/set/b/2", Some(&old)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    at_create.open();

    let reply = join(cycling).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let new = reply.session_value().expect("the rotation went through");
    assert_ne!(common::id_of(&new), common::id_of(&old));
    assert_eq!(memory.len(), 1, "no copy is left behind");
    assert!(stored(&memory, &old).await.is_none(), "the old id is gone");
    assert_eq!(
        app.get("/get/b", Some(&new)).await.body,
        "2",
        "B's write was not lost"
    );
    assert_eq!(app.get("/get/k", Some(&new)).await.body, "v");
    assert_eq!(app.get("/get/b", Some(&old)).await.body, "<none>");
    assert_eq!(counting.rotates(), 0);
    assert_eq!(
        (counting.creates(), counting.deletes()),
        (3, 2),
        "start; stale copy and its undo; the copy that stuck and the old id"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_during_a_default_rotate_wins() {
    let (app, counting, faulty, memory) = no_rotate();
    let old = app.start_session().await;

    let at_create = faulty.hold_next(Op::Create);
    let cycling = spawn_post(&app, "/cycle", &old);
    at_create.reached().await;
    let reply = app.post("/destroy", Some(&old)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(
        reply
            .session_cookie()
            .is_some_and(|cookie| cookie.is_removal()),
        "{reply:?}"
    );
    at_create.open();

    let reply = join(cycling).await;
    assert_eq!(reply.status, StatusCode::CONFLICT, "{}", reply.body);
    assert!(reply.headers.get(SET_COOKIE).is_none(), "{reply:?}");
    assert_eq!(memory.len(), 0, "the copy under the new id was undone");
    assert!(stored(&memory, &old).await.is_none());
    assert_eq!(counting.rotates(), 0);
    assert_eq!((counting.creates(), counting.deletes()), (2, 2));
    assert_eq!(app.get("/get/k", Some(&old)).await.body, "<none>");
}

// ---------------------------------------------------------------------------
// 4. SPEC §5.2 on the re-issue path.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_reissued_persistent_cookie_never_outlives_the_new_absolute_timeout() {
    let clock = ManualClock::new();
    let memory = MemoryStore::default();
    let under_a = App::new(
        SessionLayer::builder(memory.clone(), key(0xA))
            .idle_timeout(10 * HOUR)
            .absolute_timeout(12 * HOUR)
            .persistent(true)
            .clock(clock.source())
            .build()
            .expect("valid config"),
    );
    let reply = under_a.post("/set/k/v", None).await;
    let cookie = reply.session_cookie().expect("a new session");
    assert_eq!(cookie.max_age(), Some(10 * 3600));
    let signed_by_a = cookie.value;

    // The key is rotated and the absolute timeout cut to one hour; the idle
    // timeout stays long, so the absolute one is what binds.
    clock.at(60);
    let under_b = App::new(
        SessionLayer::builder(memory.clone(), key(0xB))
            .fallback_key(key(0xA))
            .idle_timeout(10 * HOUR)
            .absolute_timeout(HOUR)
            .clock(clock.source())
            .build()
            .expect("valid config"),
    );
    let only_b = App::new(SessionLayer::new(memory.clone(), key(0xB)));

    // A read: the cookie is re-signed without any store write.
    let reply = under_b.get("/get/k", Some(&signed_by_a)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, "v");
    let reissued = reply.session_cookie().expect("re-issued under B");
    assert_ne!(reissued.value, signed_by_a);
    assert_eq!(common::id_of(&reissued.value), common::id_of(&signed_by_a));
    let max_age = reissued.max_age().expect("still a persistent cookie");
    assert!(
        max_age <= 3540,
        "Max-Age {max_age} outlives the server's deadline (1 h after creation, 1 min ago)"
    );
    assert_eq!(max_age, 3540);
    assert_eq!(only_b.get("/get/k", Some(&reissued.value)).await.body, "v");

    // A write through the A-signed cookie: the same bound.
    let reply = under_b.post("/set/k/w", Some(&signed_by_a)).await;
    assert_eq!(reply.status, StatusCode::OK);
    let rewritten = reply.session_cookie().expect("re-issued with the write");
    assert_eq!(rewritten.max_age(), Some(3540));
    assert_eq!(only_b.get("/get/k", Some(&rewritten.value)).await.body, "w");
    let record = stored(&memory, &rewritten.value).await.expect("stored");
    assert!(record.expires_at <= record.created_at + HOUR);
}

// ---------------------------------------------------------------------------
// 5. `destroy` resets "remember me".
// ---------------------------------------------------------------------------

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
    assert_ne!(common::id_of(&cookie.value), common::id_of(&old));
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

// ---------------------------------------------------------------------------
// 6. SPEC §3.6: the removal of a `__Host-` cookie.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_host_prefixed_removal_cookie_keeps_the_prefix_rules() {
    let memory = MemoryStore::default();
    let layer = SessionLayer::builder(memory.clone(), key(1))
        .cookie_name("__Host-id")
        .build()
        .expect("valid config");
    let app = App::named(layer, "__Host-id");
    let value = app.start_session().await;

    let reply = app.post("/destroy", Some(&value)).await;
    assert_eq!(reply.status, StatusCode::OK);
    let removal = reply.session_cookie().expect("a removal cookie");
    assert_eq!(removal.name, "__Host-id");
    assert_eq!(removal.value, "");
    assert_eq!(removal.max_age(), Some(0));
    assert_eq!(removal.attribute("Secure"), Some(None));
    assert_eq!(removal.value_of("Path"), Some("/"));
    assert!(!removal.has("Domain"), "{removal:?}");
    assert_eq!(removal.attribute("HttpOnly"), Some(None));
    assert_eq!(removal.value_of("SameSite"), Some("Lax"));
    assert_eq!(reply.set_cookies().len(), 1);
    assert_eq!(reply.cache_control(), Some("no-store"));
    assert_eq!(memory.len(), 0);
}

// ---------------------------------------------------------------------------
// 7. SPEC §3.7: `Vary: Cookie` on save-error responses.
// ---------------------------------------------------------------------------

fn varies_on_cookie(reply: &Reply) -> bool {
    reply.vary().is_some_and(|vary| {
        vary.split(',')
            .any(|token| token.trim().eq_ignore_ascii_case("cookie"))
    })
}

#[tokio::test]
async fn a_save_error_500_varies_on_cookie_and_sets_no_cookie() {
    let memory = MemoryStore::default();
    let faulty = FaultyStore::new(memory.clone());
    let app = App::new(SessionLayer::new(faulty.clone(), key(1)));
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
    let memory = MemoryStore::default();
    let faulty = FaultyStore::new(memory.clone());
    let app = App::new(SessionLayer::new(faulty.clone(), key(1)));
    let value = app.start_session().await;

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
    assert!(varies_on_cookie(&reply), "{reply:?}");
    assert!(reply.headers.get(SET_COOKIE).is_none(), "{reply:?}");
    assert_eq!(memory.len(), 0);
}

// ---------------------------------------------------------------------------
// 8. SPEC §7.1, §7.4: typed errors keep their source, over HTTP.
// ---------------------------------------------------------------------------

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
    let router = common::routes()
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
        "a response to a failed load still depends on the cookie (SPEC §3.7)"
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
    let id = common::id_of(&value).expose();
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
