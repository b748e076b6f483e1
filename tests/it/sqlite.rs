//! `SqliteStore` on real SQLite databases: the conformance suite on a file
//! and in memory, sessions that survive a restart, concurrent increments,
//! expiry and the cleanup task, and table names.

use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::support::TempDir;
use crate::support::records::{create, record};
use crate::support::{App, Keeps, Wrapped, id_of, key};
use axum::http::StatusCode;
use axum::http::header::SET_COOKIE;
use session_layer::{
    Created, Error, ErrorKind, Id, Record, Rotated, SessionLayer, SessionStore, SqliteStore,
    Updated,
};

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

/// Counts the rows of the store's table, expired or not.
async fn rows(store: &SqliteStore) -> i64 {
    let sql = format!("SELECT COUNT(*) FROM \"{}\"", store.table_name());
    sqlx::query_scalar(&sql)
        .fetch_one(store.pool())
        .await
        .expect("count the rows")
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
    assert_eq!(rows(&store).await, 1);
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
    let store = file.inner().clone();
    let expired: Vec<Record> = (1..=5)
        .map(|n| record(Duration::from_millis(n * 10), true))
        .collect();
    let live: Vec<Record> = (0..3)
        .map(|_| record(Duration::from_secs(3600), false))
        .collect();
    for record in expired.iter().chain(&live) {
        create(&store, record).await;
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
    let file = file_store().await;
    let store = file.inner().clone();
    let old = record(Duration::from_secs(1), true);
    create(&store, &old).await;
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
    let fresh = Record {
        id: old.id,
        data: b"fresh"[..].into(),
        ..record(Duration::from_secs(60), false)
    };
    create(&store, &fresh).await;
    let loaded = store.load(&old.id).await.expect("load").expect("live");
    assert_eq!(&*loaded.data, b"fresh");
    assert_eq!(rows(&store).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cleanup_task_runs_on_its_interval_and_stops_when_told() {
    let file = file_store().await;
    let store = file.inner().clone();
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
    assert!(!cleanup.is_finished());
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
async fn wait_for_rows(store: &SqliteStore, expected: i64) {
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
    let file = file_store().await;
    let store = file.inner().clone();
    for name in [
        "",
        "sessions; DROP TABLE users",
        "x\"; DROP TABLE users; --",
        "main.sessions",
        "9lives",
        "ümlaut",
        &"a".repeat(49),
    ] {
        let error = SqliteStore::builder()
            .table_name(name)
            .build(store.pool().clone())
            .expect_err(name);
        assert_eq!(error.kind(), ErrorKind::Config, "{name}");
        assert_eq!(
            error.to_string(),
            "invalid session layer configuration: a session table name must be 1 to 48 \
             ASCII letters, digits or underscores, and must not start with a digit"
        );
    }
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
        let record = record(Duration::from_secs(60), false);
        create(&store, &record).await;
        let sql = format!(
            "UPDATE \"{}\" SET {column} = {value} WHERE id = $1",
            store.table_name()
        );
        sqlx::query(&sql)
            .bind(record.id.as_bytes().as_slice())
            .execute(store.pool())
            .await
            .expect("corrupt the row");
        match store.load(&record.id).await {
            Err(error) => assert_eq!(error.kind(), ErrorKind::Deserialize, "{column} = {value}"),
            Ok(loaded) => panic!("{column} = {value} loaded as {loaded:?}"),
        }
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
