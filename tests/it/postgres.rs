//! `PostgresStore` on a real PostgreSQL server started once for all the
//! tests ([`shared`]): the conformance suite, two application instances
//! sharing one database, expiry and the cleanup task, table names, and the
//! layer's calls end to end. Each test uses a table of its own on the one
//! shared server.

use std::time::{Duration, SystemTime};

use crate::support;
use crate::support::postgres::{self as pg, shared};
use crate::support::records::{create, record};
use crate::support::unique_name;
use crate::support::{App, id_of, key};
use axum::http::StatusCode;
use axum::http::header::SET_COOKIE;
use session_layer::{
    Created, ErrorKind, PostgresStore, Record, SessionLayer, SessionStore, Updated,
};

mod conformance {
    session_layer::store_conformance_tests!(|| async { super::pg::store().await });
}

/// Counts the rows of the store's table, expired or not.
async fn rows(store: &PostgresStore) -> i64 {
    let sql = format!("SELECT COUNT(*) FROM \"{}\"", store.table_name());
    sqlx::query_scalar(&sql)
        .fetch_one(store.pool())
        .await
        .expect("count the rows")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_app_instances_share_one_database_without_losing_an_increment() {
    // Two instances, each with its own pool, as two processes would be;
    // both create the table at the same time at startup.
    let table = unique_name("shared");
    let mut stores = Vec::new();
    for _ in 0..2 {
        let store = PostgresStore::builder()
            .table_name(&table)
            .build(shared().pool(10).await)
            .expect("a valid table name");
        stores.push(store);
    }
    let (first, second) = tokio::join!(stores[0].migrate(), stores[1].migrate());
    first.expect("the first instance migrates");
    second.expect("the second instance migrates");
    let apps: Vec<App> = stores
        .iter()
        .map(|store| App::new(SessionLayer::new(store.clone(), key(1))))
        .collect();

    let value = apps[0].start_session().await;
    let tasks: Vec<_> = (0..200)
        .map(|n| {
            let app = apps[n % 2].clone();
            let value = value.clone();
            tokio::spawn(async move { app.post("/incr", Some(&value)).await })
        })
        .collect();
    for task in tasks {
        let reply = tokio::time::timeout(Duration::from_secs(60), task)
            .await
            .expect("every request finishes")
            .expect("no request panics");
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        assert!(reply.headers.get(SET_COOKIE).is_none());
    }

    assert_eq!(apps[0].get("/n", Some(&value)).await.body, "200");
    assert_eq!(apps[1].get("/n", Some(&value)).await.body, "200");
    let stored = stores[1]
        .load(&id_of(&value))
        .await
        .expect("load")
        .expect("the session is stored");
    assert_eq!(stored.version, 201, "one create and 200 updates");
    assert_eq!(rows(&stores[0]).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_layer_rotates_and_destroys_sessions_in_the_table() {
    let store = pg::store().await;
    let app = App::new(support::no_grace(store.clone(), key(2)));
    let old = app.start_session().await;

    let cycled = app.post("/cycle", Some(&old)).await;
    assert_eq!(cycled.status, StatusCode::OK, "{}", cycled.body);
    let new = cycled.session_value().expect("a rotated cookie");
    assert_ne!(id_of(&new), id_of(&old));
    assert!(store.load(&id_of(&old)).await.expect("load").is_none());
    assert_eq!(app.get("/get/k", Some(&new)).await.body, "v");
    assert_eq!(app.get("/get/k", Some(&old)).await.body, "<none>");
    assert_eq!(rows(&store).await, 1);

    let destroyed = app.post("/destroy", Some(&new)).await;
    assert!(
        destroyed
            .session_cookie()
            .expect("a removal cookie")
            .is_removal()
    );
    assert_eq!(rows(&store).await, 0);
    // The old cookie no longer finds a session: a write starts a new one,
    // under a new id.
    assert_eq!(app.post("/set/k/again", Some(&new)).await.body, "ok");
    assert_eq!(rows(&store).await, 1, "only a new session, under a new id");
    assert!(store.load(&id_of(&new)).await.expect("load").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_expired_removes_exactly_the_expired_rows() {
    let store = pg::store().await;
    let expired: Vec<Record> = (1..=5)
        .map(|n| record(Duration::from_millis(n * 10), true))
        .collect();
    let live: Vec<Record> = (0..3)
        .map(|_| record(Duration::from_secs(3600), false))
        .collect();
    for record in expired.iter().chain(&live) {
        assert_eq!(
            store.create(record).await.expect("create"),
            Created::Created
        );
    }
    assert_eq!(rows(&store).await, 8);

    assert_eq!(store.delete_expired().await.expect("delete_expired"), 5);
    assert_eq!(rows(&store).await, 3);
    for record in &live {
        let loaded = store.load(&record.id).await.expect("load");
        assert_eq!(loaded.map(|loaded| loaded.version), Some(1));
    }
    assert_eq!(store.delete_expired().await.expect("delete_expired"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_rows_are_never_loaded_updated_or_kept_over_a_new_session() {
    let store = pg::store().await;
    let old = record(Duration::from_secs(1), true);
    assert_eq!(store.create(&old).await.expect("create"), Created::Created);
    assert!(store.load(&old.id).await.expect("load").is_none());
    let next = Record {
        version: 2,
        expires_at: SystemTime::now() + Duration::from_secs(60),
        ..old.clone()
    };
    assert_eq!(
        store.update(&next, 1).await.expect("update"),
        Updated::Stale
    );
    // A new session under the same id takes the expired row's place.
    let fresh = Record {
        data: b"fresh"[..].into(),
        ..record(Duration::from_secs(60), false)
    };
    let fresh = Record {
        id: old.id,
        ..fresh
    };
    assert_eq!(
        store.create(&fresh).await.expect("create"),
        Created::Created
    );
    let loaded = store.load(&old.id).await.expect("load").expect("live");
    assert_eq!(&*loaded.data, b"fresh");
    assert_eq!(rows(&store).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cleanup_task_runs_on_its_interval_and_stops_when_told() {
    let store = pg::store().await;
    let live = record(Duration::from_secs(3600), false);
    create(&store, &live).await;
    for _ in 0..2 {
        create(&store, &record(Duration::from_millis(300), false)).await;
    }

    let cleanup = store.spawn_cleanup(Duration::from_millis(100));
    // Nothing has expired yet: the task must not delete live rows.
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(rows(&store).await, 3);
    wait_for_rows(&store, 1).await;
    cleanup.stop().await;

    // Stopped: an expired row stays.
    create(&store, &record(Duration::from_millis(50), false)).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(rows(&store).await, 2, "a stopped task deleted a row");

    // Dropping the handle stops the task too.
    let cleanup = store.spawn_cleanup(Duration::from_millis(100));
    wait_for_rows(&store, 1).await;
    drop(cleanup);
    create(&store, &record(Duration::from_millis(50), false)).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(rows(&store).await, 2, "a dropped task deleted a row");
    assert!(store.load(&live.id).await.expect("load").is_some());
}

/// Waits up to 5 seconds for the table to hold `expected` rows.
async fn wait_for_rows(store: &PostgresStore, expected: i64) {
    for _ in 0..100 {
        if rows(store).await == expected {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(rows(store).await, expected, "the cleanup task did not run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_table_name_is_refused() {
    let pool = shared().pool(2).await;
    for name in [
        "",
        "sessions; DROP TABLE users",
        "x\"; DROP TABLE users; --",
        "public.sessions",
        "9lives",
        "ümlaut",
        &"a".repeat(49),
    ] {
        let error = PostgresStore::builder()
            .table_name(name)
            .build(pool.clone())
            .expect_err(name);
        assert_eq!(error.kind(), ErrorKind::Config, "{name}");
        assert!(
            error.to_string().contains("table name must be"),
            "{name}: {error}"
        );
    }
    // Names are quoted, so case and keywords are kept as they are.
    for name in ["Mixed_Case", "user", "select"] {
        let name = format!("{name}_{}", std::process::id());
        let store = PostgresStore::builder()
            .table_name(&name)
            .build(pool.clone())
            .expect("a valid name");
        store.migrate().await.expect("migrate");
        let record = record(Duration::from_secs(60), false);
        create(&store, &record).await;
        assert!(store.load(&record.id).await.expect("load").is_some());
        assert_eq!(store.table_name(), name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_is_idempotent_and_safe_to_run_concurrently() {
    let pool = shared().pool(8).await;
    let table = unique_name("migrated");
    let store = PostgresStore::builder()
        .table_name(&table)
        .build(pool)
        .expect("a valid table name");
    let runs: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.migrate().await })
        })
        .collect();
    for run in runs {
        run.await.expect("no panic").expect("a concurrent migrate");
    }
    store.migrate().await.expect("migrate again");

    let index: Option<String> = sqlx::query_scalar(
        "SELECT indexdef FROM pg_indexes WHERE tablename = $1 AND indexname = $2",
    )
    .bind(&table)
    .bind(format!("{table}_expires_at_idx"))
    .fetch_optional(store.pool())
    .await
    .expect("query the catalog");
    let index = index.expect("the deadline index exists");
    assert!(index.contains("(expires_at)"), "{index}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_row_is_an_error_not_a_panic() {
    let store = pg::store().await;
    let record = record(Duration::from_secs(60), false);
    create(&store, &record).await;
    let sql = format!(
        "UPDATE \"{}\" SET version = -1 WHERE id = $1",
        store.table_name()
    );
    sqlx::query(&sql)
        .bind(record.id.as_bytes().as_slice())
        .execute(store.pool())
        .await
        .expect("corrupt the row");
    let error = store.load(&record.id).await.expect_err("a corrupt row");
    assert_eq!(error.kind(), ErrorKind::Deserialize);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_opens_a_pool_with_the_default_table() {
    let store = PostgresStore::connect(&shared().url())
        .await
        .expect("connect");
    assert_eq!(store.table_name(), "sessions");
    store.migrate().await.expect("migrate");
    let record = record(Duration::from_secs(60), false);
    assert_eq!(
        store.create(&record).await.expect("create"),
        Created::Created
    );
    assert!(store.load(&record.id).await.expect("load").is_some());
    store.delete(&record.id).await.expect("delete");

    let refused = PostgresStore::connect("postgres://postgres@127.0.0.1:1/postgres").await;
    assert_eq!(refused.expect_err("no server").kind(), ErrorKind::Store);
}
