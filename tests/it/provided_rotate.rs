//! The provided `SessionStore::rotate`, which the layer runs for a store that
//! does not override it: it creates the new id, then deletes the old one, so
//! a failure never loses the session, a write made meanwhile moves with it,
//! and a logout meanwhile wins.

use axum::http::StatusCode;
use axum::http::header::SET_COOKIE;
use session_layer::{Created, Id, MemoryStore, Record, Rotated, SessionStore, Updated};

use crate::support::{
    self, App, CountingStore, FaultyStore, NoRotate, Op, join_within_5s, key, spawn_post, stored,
};

/// The provided `rotate` keeps every promise of the public suite, the
/// concurrent rotations with retired records included.
#[cfg(feature = "conformance")]
mod conformance {
    session_layer::store_conformance_tests!(|| async {
        crate::support::NoRotate(session_layer::MemoryStore::default())
    });
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
    let app = App::new(support::no_grace(NoRotate(counting.clone()), key(1)));
    (app, counting, faulty, memory)
}

#[tokio::test]
async fn the_default_rotate_moves_the_session() {
    let (app, counting, _faulty, memory) = no_rotate();
    let old = app.start_session().await;

    let reply = app.post("/cycle", Some(&old)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let new = reply.session_value().expect("a new cookie");
    assert_ne!(support::id_of(&new), support::id_of(&old));
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
        support::id_of(&old).expose()
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

    let reply = join_within_5s(cycling).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let new = reply.session_value().expect("the rotation went through");
    assert_ne!(support::id_of(&new), support::id_of(&old));
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

    let reply = join_within_5s(cycling).await;
    assert_eq!(reply.status, StatusCode::CONFLICT, "{}", reply.body);
    assert!(reply.headers.get(SET_COOKIE).is_none(), "{reply:?}");
    assert_eq!(memory.len(), 0, "the copy under the new id was undone");
    assert!(stored(&memory, &old).await.is_none());
    assert_eq!(counting.rotates(), 0);
    assert_eq!((counting.creates(), counting.deletes()), (2, 2));
    assert_eq!(app.get("/get/k", Some(&old)).await.body, "<none>");
}

/// With a retired record, the provided `rotate` checks and replaces the old
/// record in one compare-and-set: a write that lands on the old id after the
/// new record was created makes the rotation `Stale` instead of being lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_during_a_default_rotate_with_a_retired_record_is_kept() {
    let memory = MemoryStore::default();
    let faulty = FaultyStore::new(memory.clone());
    let counting = CountingStore::new(faulty.clone());
    let store = NoRotate(counting.clone());
    let now = std::time::SystemTime::now();
    let old = Record {
        id: Id::generate().expect("os rng"),
        version: 1,
        data: b"old"[..].into(),
        created_at: now,
        expires_at: now + std::time::Duration::from_secs(60),
    };
    assert_eq!(memory.create(&old).await.expect("room"), Created::Created);
    let moved = Record {
        id: Id::generate().expect("os rng"),
        version: 2,
        ..old.clone()
    };
    let retired = Record {
        version: 2,
        data: b"retired"[..].into(),
        ..old.clone()
    };

    // The rotation has created the new record and waits at its
    // compare-and-set on the old id.
    let at_update = faulty.hold_next(Op::Update);
    let rotating = tokio::spawn({
        let (store, old, moved, retired) = (store.clone(), old.id, moved.clone(), retired.clone());
        async move { store.rotate(&old, 1, &moved, Some(&retired)).await }
    });
    at_update.reached().await;
    let written = Record {
        version: 2,
        data: b"written meanwhile"[..].into(),
        ..old.clone()
    };
    assert_eq!(
        memory.update(&written, 1).await.expect("update"),
        Updated::Updated
    );
    at_update.open();

    let outcome = tokio::time::timeout(std::time::Duration::from_secs(5), rotating)
        .await
        .expect("the rotation finished within 5 s")
        .expect("the rotation did not panic")
        .expect("rotate");
    assert_eq!(outcome, Rotated::Stale);
    let kept = memory.load(&old.id).await.expect("load").expect("kept");
    assert_eq!(&*kept.data, b"written meanwhile", "the write was not lost");
    assert!(
        memory.load(&moved.id).await.expect("load").is_none(),
        "the new record was undone"
    );
    assert_eq!(memory.len(), 1);
    assert_eq!(
        (
            counting.loads(),
            counting.creates(),
            counting.updates(),
            counting.deletes()
        ),
        (1, 1, 1, 1),
        "check, create, compare-and-set, undo"
    );
}
