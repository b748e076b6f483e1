//! What the SQL stores' tests share: the same tests on any [`SqlStore`],
//! which `postgres` and `sqlite` run on a store of their own.

// A shared test fails by panicking, as the test itself would.
#![allow(clippy::panic)]

use std::time::{Duration, SystemTime};

use session_layer::{Dialect, ErrorKind, Id, Record, SessionStore, SqlStore, Updated};
use sqlx::Pool;

use super::records::{create, record};

/// The store's table, reached with SQL of its own (the query is the same on
/// every database; the driver that runs it is not).
pub(crate) trait Table {
    /// Counts the rows of the store's table, expired or not.
    async fn rows(&self) -> i64;

    /// Sets `column` to the SQL expression `value` in the row of `id`.
    async fn corrupt(&self, id: &Id, column: &str, value: &str);
}

macro_rules! table_on {
    ($db:ty) => {
        impl Table for SqlStore<$db> {
            async fn rows(&self) -> i64 {
                let sql = format!("SELECT COUNT(*) FROM \"{}\"", self.table_name());
                sqlx::query_scalar(&sql)
                    .fetch_one(self.pool())
                    .await
                    .expect("count the rows")
            }

            async fn corrupt(&self, id: &Id, column: &str, value: &str) {
                let sql = format!(
                    "UPDATE \"{}\" SET {column} = {value} WHERE id = $1",
                    self.table_name()
                );
                sqlx::query(&sql)
                    .bind(id.as_bytes().as_slice())
                    .execute(self.pool())
                    .await
                    .expect("corrupt the row");
            }
        }
    };
}

#[cfg(feature = "postgres-store")]
table_on!(sqlx::Postgres);
#[cfg(feature = "sqlite-store")]
table_on!(sqlx::Sqlite);

/// `delete_expired` removes the five expired rows of eight, then none.
pub(crate) async fn delete_expired_removes_exactly_the_expired_rows<DB: Dialect>(
    store: &SqlStore<DB>,
) where
    SqlStore<DB>: Table,
{
    let expired: Vec<Record> = (1..=5)
        .map(|n| record(Duration::from_millis(n * 10), true))
        .collect();
    let live: Vec<Record> = (0..3)
        .map(|_| record(Duration::from_secs(3600), false))
        .collect();
    for record in expired.iter().chain(&live) {
        create(store, record).await;
    }
    assert_eq!(store.rows().await, 8);

    assert_eq!(store.delete_expired().await.expect("delete_expired"), 5);
    assert_eq!(store.rows().await, 3);
    for record in &live {
        let loaded = store.load(&record.id).await.expect("load");
        assert_eq!(loaded.map(|loaded| loaded.version), Some(1));
    }
    assert_eq!(store.delete_expired().await.expect("delete_expired"), 0);
}

/// Stores an expired row and checks that it is neither loaded nor updated;
/// returns it and the update that was refused.
pub(crate) async fn an_expired_row_is_neither_loaded_nor_updated<DB: Dialect>(
    store: &SqlStore<DB>,
) -> (Record, Record) {
    let old = record(Duration::from_secs(1), true);
    create(store, &old).await;
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
    (old, next)
}

/// A new session under the id of the expired row `old` takes its place.
pub(crate) async fn a_new_session_takes_the_expired_rows_place<DB: Dialect>(
    store: &SqlStore<DB>,
    old: &Record,
) where
    SqlStore<DB>: Table,
{
    let fresh = Record {
        id: old.id,
        data: b"fresh"[..].into(),
        ..record(Duration::from_secs(60), false)
    };
    create(store, &fresh).await;
    let loaded = store.load(&old.id).await.expect("load").expect("live");
    assert_eq!(&*loaded.data, b"fresh");
    assert_eq!(store.rows().await, 1);
}

/// The cleanup task deletes expired rows on its interval, never live ones,
/// and stops when told to or dropped.
pub(crate) async fn the_cleanup_task_runs_on_its_interval_and_stops_when_told<DB: Dialect>(
    store: &SqlStore<DB>,
) where
    SqlStore<DB>: Table,
{
    let live = record(Duration::from_secs(3600), false);
    create(store, &live).await;
    for _ in 0..2 {
        create(store, &record(Duration::from_millis(300), false)).await;
    }

    let cleanup = store.spawn_cleanup(Duration::from_millis(100));
    // Nothing has expired yet: the task must not delete live rows.
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(store.rows().await, 3);
    wait_for_rows(store, 1).await;
    assert!(!cleanup.is_finished());
    cleanup.stop().await;

    // Stopped: an expired row stays.
    create(store, &record(Duration::from_millis(50), false)).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(store.rows().await, 2, "a stopped task deleted a row");

    // Dropping the handle stops the task too.
    let cleanup = store.spawn_cleanup(Duration::from_millis(100));
    wait_for_rows(store, 1).await;
    drop(cleanup);
    create(store, &record(Duration::from_millis(50), false)).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(store.rows().await, 2, "a dropped task deleted a row");
    assert!(store.load(&live.id).await.expect("load").is_some());
}

/// Waits up to 5 seconds for the table to hold `expected` rows.
async fn wait_for_rows(store: &impl Table, expected: i64) {
    for _ in 0..100 {
        if store.rows().await == expected {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(store.rows().await, expected, "the cleanup task did not run");
}

/// The builder refuses every invalid table name on `pool`, `qualified`
/// (a name with its schema) among them, with a `Config` error.
pub(crate) fn invalid_table_names_are_refused<DB: Dialect>(pool: &Pool<DB>, qualified: &str) {
    for name in [
        "",
        "sessions; DROP TABLE users",
        "x\"; DROP TABLE users; --",
        qualified,
        "9lives",
        "ümlaut",
        &"a".repeat(49),
    ] {
        let error = SqlStore::<DB>::builder()
            .table_name(name)
            .build(pool.clone())
            .expect_err(name);
        assert_eq!(error.kind(), ErrorKind::Config, "{name}");
        assert!(
            error.to_string().contains("table name must be"),
            "{name}: {error}"
        );
        assert_eq!(
            error.to_string(),
            "invalid session layer configuration: a session table name must be 1 to 48 \
             ASCII letters, digits or underscores, and must not start with a digit"
        );
    }
}

/// A row corrupted by `column = value` loads as a `Deserialize` error.
pub(crate) async fn a_corrupt_row_is_an_error<DB: Dialect>(
    store: &SqlStore<DB>,
    column: &str,
    value: &str,
) where
    SqlStore<DB>: Table,
{
    let record = record(Duration::from_secs(60), false);
    create(store, &record).await;
    store.corrupt(&record.id, column, value).await;
    match store.load(&record.id).await {
        Err(error) => assert_eq!(error.kind(), ErrorKind::Deserialize, "{column} = {value}"),
        Ok(loaded) => panic!("{column} = {value} loaded as {loaded:?}"),
    }
}
