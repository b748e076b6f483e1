//! `PostgresStore` on a real PostgreSQL server started once for all the
//! tests ([`shared`]): the conformance suite, two application instances
//! sharing one database, expiry and the cleanup task, table names, and the
//! layer's calls end to end. Each test uses a table of its own on the one
//! shared server.

use std::time::Duration;

use crate::support;
use crate::support::postgres::{self as pg, shared};
use crate::support::records::{create, record};
use crate::support::sql::{self, Table as _};
use crate::support::unique_name;
use crate::support::{App, id_of, key};
use axum::http::StatusCode;
use axum::http::header::SET_COOKIE;
use session_layer::{Created, ErrorKind, PostgresStore, SessionLayer, SessionStore};

mod conformance {
    session_layer::store_conformance_tests!(|| async { super::pg::store().await });
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
    assert_eq!(stores[0].rows().await, 1);
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
    assert_eq!(store.rows().await, 1);

    let destroyed = app.post("/destroy", Some(&new)).await;
    assert!(
        destroyed
            .session_cookie()
            .expect("a removal cookie")
            .is_removal()
    );
    assert_eq!(store.rows().await, 0);
    // The old cookie no longer finds a session: a write starts a new one,
    // under a new id.
    assert_eq!(app.post("/set/k/again", Some(&new)).await.body, "ok");
    assert_eq!(store.rows().await, 1, "only a new session, under a new id");
    assert!(store.load(&id_of(&new)).await.expect("load").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_expired_removes_exactly_the_expired_rows() {
    sql::delete_expired_removes_exactly_the_expired_rows(&pg::store().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_rows_are_never_loaded_updated_or_kept_over_a_new_session() {
    let store = pg::store().await;
    let (old, _next) = sql::an_expired_row_is_neither_loaded_nor_updated(&store).await;
    sql::a_new_session_takes_the_expired_rows_place(&store, &old).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cleanup_task_runs_on_its_interval_and_stops_when_told() {
    sql::the_cleanup_task_runs_on_its_interval_and_stops_when_told(&pg::store().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_table_name_is_refused() {
    let pool = shared().pool(2).await;
    sql::invalid_table_names_are_refused(&pool, "public.sessions");
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
    sql::a_corrupt_row_is_an_error(&pg::store().await, "version", "-1").await;
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
