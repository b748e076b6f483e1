//! `SqliteStore` on real SQLite databases: the conformance suite on a file
//! and in memory, sessions that survive a restart, concurrent increments,
//! expiry and the cleanup task, and table names.

use std::path::Path;
use std::time::Duration;

use crate::support::TempDir;
use crate::support::records::{create, record};
use crate::support::sql::{self, Table as _};
use crate::support::{App, Keeps, Wrapped, id_of, key};
use axum::http::StatusCode;
use axum::http::header::SET_COOKIE;
use session_layer::{ErrorKind, Rotated, SessionLayer, SessionStore, SqliteStore};

/// A store on a database file in a directory of its own, removed with it.
type FileStore = Wrapped<SqliteStore, Keeps<TempDir>>;

async fn file_store() -> FileStore {
    let dir = TempDir::new("session_layer_sqlite");
    let store = open(&dir.path().join("sessions.db")).await;
    Wrapped::with_hook(store, Keeps(dir))
}

mod conformance_file {
    session_layer::store_conformance_tests!(|| async { super::file_store().await });
}

mod conformance_in_memory {
    session_layer::store_conformance_tests!(|| async {
        let store = session_layer::SqliteStore::connect("sqlite::memory:")
            .await
            .expect("an in-memory database");
        store.migrate().await.expect("migrate");
        store
    });
}

async fn open(path: &Path) -> SqliteStore {
    let store = SqliteStore::open(path).await.expect("open the file");
    store.migrate().await.expect("migrate");
    store
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_survives_a_restart() {
    let dir = TempDir::new("session_layer_sqlite");
    let path = dir.path().join("sessions.db");

    let store = open(&path).await;
    let app = App::new(SessionLayer::new(store.clone(), key(1)));
    let value = app.post("/set/user/ada", None).await.session_value();
    let value = value.expect("a new session sets its cookie");
    assert_eq!(app.post("/incr", Some(&value)).await.body, "1");
    assert_eq!(app.post("/incr", Some(&value)).await.body, "2");
    // Shut down as a process would: the app goes, and every connection to
    // the file is closed.
    drop(app);
    store.close().await;
    drop(store);

    // A new app on the same file, through a URL this time.
    let url = format!("sqlite://{}", path.display());
    let store = SqliteStore::connect(&url).await.expect("connect");
    store.migrate().await.expect("migrate an existing table");
    let app = App::new(SessionLayer::new(store.clone(), key(1)));
    let reply = app.get("/get/user", Some(&value)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, "ada");
    assert!(reply.headers.get(SET_COOKIE).is_none(), "the same session");
    assert_eq!(app.post("/incr", Some(&value)).await.body, "3");
    assert_eq!(store.rows().await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_increments_on_a_file_are_all_counted() {
    let dir = TempDir::new("session_layer_sqlite");
    let store = open(&dir.path().join("sessions.db")).await;
    let app = App::new(SessionLayer::new(store.clone(), key(1)));
    let value = app.start_session().await;

    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let (app, value) = (app.clone(), value.clone());
            tokio::spawn(async move { app.post("/incr", Some(&value)).await })
        })
        .collect();
    for task in tasks {
        let reply = task.await.expect("no request panics");
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        assert!(reply.headers.get(SET_COOKIE).is_none());
    }
    assert_eq!(app.get("/n", Some(&value)).await.body, "200");
    let stored = store.load(&id_of(&value)).await.expect("load");
    assert_eq!(stored.expect("stored").version, 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_memory_database_is_one_database_for_the_whole_pool() {
    let store = SqliteStore::connect("sqlite::memory:")
        .await
        .expect("an in-memory database");
    store.migrate().await.expect("migrate");
    let app = App::new(SessionLayer::new(store.clone(), key(1)));
    let value = app.start_session().await;
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (app, value) = (app.clone(), value.clone());
            tokio::spawn(async move { app.post("/incr", Some(&value)).await })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.expect("no panic").status, StatusCode::OK);
    }
    assert_eq!(app.get("/n", Some(&value)).await.body, "50");
    assert_eq!(store.pool().size(), 1);

    // Two in-memory stores are two databases.
    let other = SqliteStore::connect("sqlite::memory:")
        .await
        .expect("an in-memory database");
    other.migrate().await.expect("migrate");
    assert!(other.load(&id_of(&value)).await.expect("load").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_expired_removes_exactly_the_expired_rows() {
    let file = file_store().await;
    sql::delete_expired_removes_exactly_the_expired_rows(file.inner()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_rows_are_never_loaded_updated_or_kept_over_a_new_session() {
    let file = file_store().await;
    let store = file.inner().clone();
    let (old, next) = sql::an_expired_row_is_neither_loaded_nor_updated(&store).await;
    let moved = record(Duration::from_secs(60), false);
    for retired in [None, Some(&next)] {
        assert_eq!(
            store
                .rotate(&old.id, 1, &moved, retired)
                .await
                .expect("rotate"),
            Rotated::Stale
        );
    }
    assert!(store.load(&old.id).await.expect("load").is_none());
    // A new session under the same id takes the expired row's place.
    sql::a_new_session_takes_the_expired_rows_place(&store, &old).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cleanup_task_runs_on_its_interval_and_stops_when_told() {
    let file = file_store().await;
    sql::the_cleanup_task_runs_on_its_interval_and_stops_when_told(file.inner()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_table_name_is_refused() {
    let file = file_store().await;
    let store = file.inner().clone();
    sql::invalid_table_names_are_refused(store.pool(), "main.sessions");
    // Quoted names: keywords and mixed case work; two tables, two stores.
    let plain = store.clone();
    let keyword = SqliteStore::builder()
        .table_name("select")
        .build(store.pool().clone())
        .expect("a valid name");
    keyword.migrate().await.expect("migrate");
    let record = record(Duration::from_secs(60), false);
    create(&keyword, &record).await;
    assert!(keyword.load(&record.id).await.expect("load").is_some());
    assert!(plain.load(&record.id).await.expect("load").is_none());
    assert_eq!(keyword.table_name(), "select");
    assert_eq!(plain.table_name(), "sessions");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_row_is_an_error_not_a_panic() {
    let file = file_store().await;
    let store = file.inner().clone();
    // SQLite's loose typing lets a hand-made row break the schema's intent.
    for (column, value) in [
        ("version", "-1"),
        ("version", "'one'"),
        ("expires_at", "'soon'"),
        ("created_at", "-5"),
    ] {
        sql::a_corrupt_row_is_an_error(&store, column, value).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_directory_is_a_store_error() {
    let dir = TempDir::new("session_layer_sqlite");
    let error = SqliteStore::open(dir.path().join("missing").join("sessions.db"))
        .await
        .expect_err("no such directory");
    assert_eq!(error.kind(), ErrorKind::Store);
}
