//! What [`PostgresStore`] and [`SqliteStore`] share: the table, the
//! statements, the conversions, and the cleanup task.
//!
//! Both stores run the same SQL. PostgreSQL and SQLite agree on everything
//! the stores need: `$1` placeholders, double-quoted identifiers,
//! `INSERT … ON CONFLICT (id) DO UPDATE … WHERE`, row counts from `UPDATE`
//! and `DELETE`, and transactions. They differ only in the column types and
//! in how concurrent migrations are kept apart, which a [`Dialect`] says.
//!
//! # The table
//!
//! | column | type (PostgreSQL / SQLite) | holds |
//! |---|---|---|
//! | `id` | `BYTEA` / `BLOB`, primary key | the 16 raw bytes of the [`Id`] |
//! | `version` | `BIGINT` / `INTEGER` | [`Record::version`] |
//! | `data` | `BYTEA` / `BLOB` | [`Record::data`], exactly as given |
//! | `created_at` | `BIGINT` / `INTEGER` | unix time in milliseconds |
//! | `expires_at` | `BIGINT` / `INTEGER`, indexed | unix time in milliseconds |
//!
//! Times are whole milliseconds since the Unix epoch, rounded down; times
//! before the epoch are kept as the epoch. Every statement compares
//! `expires_at` with the application's clock, passed as a parameter, so both
//! databases treat expiry the same way and a record is never loaded,
//! updated or rotated after its deadline.
//!
//! [`PostgresStore`]: crate::PostgresStore
//! [`SqliteStore`]: crate::SqliteStore

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Pool, Row, Type};

use crate::error::{Error, ErrorKind};
use crate::id::Id;
use crate::store::{Created, Record, Rotated, Updated};
use crate::trace::event;

/// The table name a store uses unless told otherwise.
pub(crate) const DEFAULT_TABLE_NAME: &str = "sessions";

/// The longest table name accepted: PostgreSQL keeps 63 bytes of an
/// identifier, and the index name adds [`INDEX_SUFFIX`] to the table name.
pub(crate) const MAX_TABLE_NAME_LEN: usize = 63 - INDEX_SUFFIX.len();

const INDEX_SUFFIX: &str = "_expires_at_idx";

/// What one database needs to say for the shared implementation.
pub(crate) trait Dialect: Database {
    /// The column type of the id and the data.
    const BYTES: &'static str;
    /// The column type of the version and the times: a signed 64-bit integer.
    const INTEGER: &'static str;
    /// A statement run first in the migration's transaction, with
    /// [`MIGRATION_LOCK_KEY`] bound to `$1`, so that application instances
    /// that start together create the table one after the other.
    const MIGRATION_LOCK: Option<&'static str>;

    /// Returns the number of rows a statement changed.
    fn rows_affected(result: &Self::QueryResult) -> u64;
}

/// The key of the lock taken while migrating (the bytes of `"sesslayr"`).
const MIGRATION_LOCK_KEY: i64 = i64::from_be_bytes(*b"sesslayr");

/// A validated table name and every statement that uses it.
#[derive(Debug)]
struct Statements {
    table: String,
    create_table: String,
    create_index: String,
    load: String,
    create: String,
    update: String,
    delete: String,
    /// The first step of a rotation: matches the old record only if it is
    /// live and has the expected version, and locks it for the rest of the
    /// transaction.
    lock_current: String,
    delete_expired: String,
}

impl Statements {
    /// Returns the statements for the table `table`, if the name is valid.
    fn new<DB: Dialect>(table: &str) -> Result<Self, Error> {
        validate_table_name(table)?;
        Ok(Self::build::<DB>(table))
    }

    /// Returns the statements for `table`, whose name must be valid.
    fn build<DB: Dialect>(table: &str) -> Self {
        let (bytes, integer) = (DB::BYTES, DB::INTEGER);
        // Valid names hold only ASCII letters, digits and underscores, so
        // nothing can end the quotes early.
        let quoted = format!("\"{table}\"");
        Self {
            create_table: format!(
                "CREATE TABLE IF NOT EXISTS {quoted} (\
                 id {bytes} PRIMARY KEY NOT NULL, \
                 version {integer} NOT NULL, \
                 data {bytes} NOT NULL, \
                 created_at {integer} NOT NULL, \
                 expires_at {integer} NOT NULL)"
            ),
            create_index: format!(
                "CREATE INDEX IF NOT EXISTS \"{table}{INDEX_SUFFIX}\" ON {quoted} (expires_at)"
            ),
            load: format!(
                "SELECT version, data, created_at, expires_at FROM {quoted} \
                 WHERE id = $1 AND expires_at > $2"
            ),
            // An expired record under the id is as good as absent: it is
            // replaced, as in every other store.
            create: format!(
                "INSERT INTO {quoted} (id, version, data, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (id) DO UPDATE SET version = excluded.version, \
                 data = excluded.data, created_at = excluded.created_at, \
                 expires_at = excluded.expires_at \
                 WHERE {quoted}.expires_at <= $6"
            ),
            update: format!(
                "UPDATE {quoted} SET version = $1, data = $2, created_at = $3, expires_at = $4 \
                 WHERE id = $5 AND version = $6 AND expires_at > $7"
            ),
            delete: format!("DELETE FROM {quoted} WHERE id = $1"),
            lock_current: format!(
                "UPDATE {quoted} SET version = version \
                 WHERE id = $1 AND version = $2 AND expires_at > $3"
            ),
            delete_expired: format!("DELETE FROM {quoted} WHERE expires_at <= $1"),
            table: table.to_owned(),
        }
    }
}

/// Checks that `name` can be used as a table name without quoting problems.
///
/// Accepts 1 to [`MAX_TABLE_NAME_LEN`] ASCII letters, digits and
/// underscores, not starting with a digit.
fn validate_table_name(name: &str) -> Result<(), Error> {
    let mut chars = name.chars();
    let starts_well = chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_');
    let rest_is_plain = chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if starts_well && rest_is_plain && name.len() <= MAX_TABLE_NAME_LEN {
        Ok(())
    } else {
        Err(Error::message(
            ErrorKind::Config,
            "a session table name must be 1 to 48 ASCII letters, digits or underscores, \
             and must not start with a digit",
        ))
    }
}

/// The shared store: a pool and the statements for one table.
pub(crate) struct SqlStore<DB: Database> {
    pool: Pool<DB>,
    statements: Arc<Statements>,
}

impl<DB: Database> Clone for SqlStore<DB> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            statements: Arc::clone(&self.statements),
        }
    }
}

impl<DB: Database> fmt::Debug for SqlStore<DB> {
    // By hand: the pool's own `Debug` would print its connect options.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlStore")
            .field("table", &self.statements.table)
            .field("connections", &self.pool.size())
            .field("idle", &self.pool.num_idle())
            .field("closed", &self.pool.is_closed())
            .finish()
    }
}

impl<DB: Dialect> SqlStore<DB> {
    /// Creates a store on `pool` using the table [`DEFAULT_TABLE_NAME`].
    pub(crate) fn new(pool: Pool<DB>) -> Self {
        // The unit tests check that the default name is valid.
        Self {
            pool,
            statements: Arc::new(Statements::build::<DB>(DEFAULT_TABLE_NAME)),
        }
    }

    /// Returns the store with the table `name`, if the name is valid.
    pub(crate) fn with_table_name(self, name: &str) -> Result<Self, Error> {
        Ok(Self {
            statements: Arc::new(Statements::new::<DB>(name)?),
            ..self
        })
    }

    pub(crate) fn table_name(&self) -> &str {
        &self.statements.table
    }

    pub(crate) fn pool(&self) -> &Pool<DB> {
        &self.pool
    }

    /// Closes the pool: waits for connections in use to come back, then
    /// closes every connection.
    pub(crate) async fn close(&self) {
        self.pool.close().await;
    }
}

impl<DB> SqlStore<DB>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> i64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> &'q [u8]: Encode<'q, DB> + Type<DB>,
    for<'q> Vec<u8>: Decode<'q, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
{
    /// Creates the table and its index if they do not exist.
    pub(crate) async fn migrate(&self) -> Result<(), Error> {
        let statements = &*self.statements;
        let mut transaction = self.pool.begin().await.map_err(Error::store)?;
        if let Some(lock) = DB::MIGRATION_LOCK {
            sqlx::query(lock)
                .bind(MIGRATION_LOCK_KEY)
                .execute(&mut *transaction)
                .await
                .map_err(Error::store)?;
        }
        sqlx::query(&statements.create_table)
            .execute(&mut *transaction)
            .await
            .map_err(Error::store)?;
        sqlx::query(&statements.create_index)
            .execute(&mut *transaction)
            .await
            .map_err(Error::store)?;
        transaction.commit().await.map_err(Error::store)
    }

    pub(crate) async fn load(&self, id: &Id) -> Result<Option<Record>, Error> {
        let row = sqlx::query(&self.statements.load)
            .bind(id.as_bytes().as_slice())
            .bind(millis(SystemTime::now()))
            .fetch_optional(&self.pool)
            .await
            .map_err(Error::store)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let column = |index: usize| -> Result<i64, Error> {
            row.try_get::<i64, usize>(index).map_err(corrupt)
        };
        Ok(Some(Record {
            id: *id,
            version: u64::try_from(column(0)?).map_err(corrupt)?,
            data: row.try_get::<Vec<u8>, usize>(1).map_err(corrupt)?.into(),
            created_at: time(column(2)?)?,
            expires_at: time(column(3)?)?,
        }))
    }

    pub(crate) async fn create(&self, record: &Record) -> Result<Created, Error> {
        let result = self
            .insert(record, SystemTime::now())?
            .execute(&self.pool)
            .await
            .map_err(Error::store)?;
        Ok(if DB::rows_affected(&result) == 1 {
            Created::Created
        } else {
            Created::IdTaken
        })
    }

    pub(crate) async fn update(
        &self,
        record: &Record,
        expected_version: u64,
    ) -> Result<Updated, Error> {
        // No stored version can equal one that does not fit in the column.
        let Ok(expected_version) = i64::try_from(expected_version) else {
            return Ok(Updated::Stale);
        };
        let result = sqlx::query(&self.statements.update)
            .bind(version(record)?)
            .bind(&*record.data)
            .bind(millis(record.created_at))
            .bind(millis(record.expires_at))
            .bind(record.id.as_bytes().as_slice())
            .bind(expected_version)
            .bind(millis(SystemTime::now()))
            .execute(&self.pool)
            .await
            .map_err(Error::store)?;
        Ok(if DB::rows_affected(&result) == 1 {
            Updated::Updated
        } else {
            Updated::Stale
        })
    }

    pub(crate) async fn delete(&self, id: &Id) -> Result<(), Error> {
        sqlx::query(&self.statements.delete)
            .bind(id.as_bytes().as_slice())
            .execute(&self.pool)
            .await
            .map_err(Error::store)?;
        Ok(())
    }

    /// Checks the old record, inserts the new one and deletes the old one in
    /// one transaction: all of it happens, or none.
    pub(crate) async fn rotate(
        &self,
        old: &Id,
        expected_version: u64,
        record: &Record,
    ) -> Result<Rotated, Error> {
        let Ok(expected_version) = i64::try_from(expected_version) else {
            return Ok(Rotated::Stale);
        };
        let now = SystemTime::now();
        let mut transaction = self.pool.begin().await.map_err(Error::store)?;
        let current = sqlx::query(&self.statements.lock_current)
            .bind(old.as_bytes().as_slice())
            .bind(expected_version)
            .bind(millis(now))
            .execute(&mut *transaction)
            .await
            .map_err(Error::store)?;
        if DB::rows_affected(&current) != 1 {
            transaction.rollback().await.map_err(Error::store)?;
            return Ok(Rotated::Stale);
        }
        // The old record is still there, so a rotation onto its own id is
        // refused here too.
        let inserted = self
            .insert(record, now)?
            .execute(&mut *transaction)
            .await
            .map_err(Error::store)?;
        if DB::rows_affected(&inserted) != 1 {
            transaction.rollback().await.map_err(Error::store)?;
            return Ok(Rotated::IdTaken);
        }
        sqlx::query(&self.statements.delete)
            .bind(old.as_bytes().as_slice())
            .execute(&mut *transaction)
            .await
            .map_err(Error::store)?;
        transaction.commit().await.map_err(Error::store)?;
        Ok(Rotated::Rotated)
    }

    /// Deletes every record whose deadline has passed and returns how many.
    pub(crate) async fn delete_expired(&self) -> Result<u64, Error> {
        let result = sqlx::query(&self.statements.delete_expired)
            .bind(millis(SystemTime::now()))
            .execute(&self.pool)
            .await
            .map_err(Error::store)?;
        Ok(DB::rows_affected(&result))
    }

    /// Returns the create-if-absent statement for `record`, which replaces
    /// an expired record under the same id.
    fn insert<'q>(
        &'q self,
        record: &'q Record,
        now: SystemTime,
    ) -> Result<sqlx::query::Query<'q, DB, DB::Arguments<'q>>, Error> {
        Ok(sqlx::query(&self.statements.create)
            .bind(record.id.as_bytes().as_slice())
            .bind(version(record)?)
            .bind(&*record.data)
            .bind(millis(record.created_at))
            .bind(millis(record.expires_at))
            .bind(millis(now)))
    }
}

/// Returns `record.version` as a column value.
fn version(record: &Record) -> Result<i64, Error> {
    i64::try_from(record.version).map_err(|_| {
        Error::message(
            ErrorKind::Serialize,
            "a session version does not fit in a signed 64-bit column",
        )
    })
}

/// Returns `time` as whole milliseconds since the Unix epoch, rounded down:
/// `0` before the epoch, `i64::MAX` past what the column holds.
pub(crate) fn millis(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |since| {
        i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
    })
}

/// Returns the time `millis` milliseconds after the Unix epoch.
fn time(millis: i64) -> Result<SystemTime, Error> {
    u64::try_from(millis)
        .ok()
        .and_then(|millis| UNIX_EPOCH.checked_add(Duration::from_millis(millis)))
        .ok_or_else(|| {
            Error::message(
                ErrorKind::Deserialize,
                "a stored session time is out of range",
            )
        })
}

/// Wraps an error met while reading a row that the store did not write.
fn corrupt(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Error {
    Error::new(ErrorKind::Deserialize, source)
}

/// A running cleanup task, from [`PostgresStore::spawn_cleanup`] or
/// [`SqliteStore::spawn_cleanup`].
///
/// The task deletes expired sessions once per period, until it is stopped
/// with [`stop`](Self::stop) or the handle is dropped. Stopping aborts the
/// task; a `DELETE` in flight either completes in the database or does not
/// happen at all, so stopping never leaves a half-done cleanup.
///
/// [`PostgresStore::spawn_cleanup`]: crate::PostgresStore::spawn_cleanup
/// [`SqliteStore::spawn_cleanup`]: crate::SqliteStore::spawn_cleanup
#[derive(Debug)]
#[must_use = "dropping the handle stops the cleanup task"]
pub struct CleanupHandle {
    task: tokio::task::JoinHandle<()>,
}

impl CleanupHandle {
    /// Spawns a task that runs `cleanup` once every `period`, the first time
    /// one period from now.
    pub(crate) fn spawn<F, Fut>(period: Duration, cleanup: F) -> Self
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = Result<u64, Error>> + Send + 'static,
    {
        let task = tokio::spawn(async move {
            let start = tokio::time::Instant::now() + period;
            let mut ticks = tokio::time::interval_at(start, period);
            // After a slow cleanup, wait a whole period again rather than
            // catching up with a burst of deletes.
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                match cleanup().await {
                    Ok(deleted) => {
                        event!(debug, deleted, "deleted expired sessions");
                        let _ = deleted;
                    }
                    Err(error) => {
                        event!(warn, error = %error, "failed to delete expired sessions");
                        let _ = error;
                    }
                }
            }
        });
        Self { task }
    }

    /// Stops the task and waits until it has stopped.
    pub async fn stop(mut self) {
        self.task.abort();
        // `Drop` aborts again, which does nothing for a finished task.
        let _ = (&mut self.task).await;
    }

    /// Returns `true` once the task has stopped.
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

impl Drop for CleanupHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_are_accepted() {
        for name in [DEFAULT_TABLE_NAME, "_x", "Sessions_2", &"a".repeat(48)] {
            assert!(validate_table_name(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn names_that_need_quoting_are_refused() {
        let long = "a".repeat(MAX_TABLE_NAME_LEN + 1);
        for name in [
            "",
            "1sessions",
            "sessions; DROP TABLE users",
            "se\"ssions",
            "public.sessions",
            "sessions-2",
            "séssions",
            " sessions",
            long.as_str(),
        ] {
            let error = validate_table_name(name).expect_err(name);
            assert_eq!(error.kind(), ErrorKind::Config);
        }
    }

    #[test]
    fn the_length_limit_is_the_one_in_the_message() {
        assert_eq!(MAX_TABLE_NAME_LEN, 48);
    }

    #[test]
    fn times_round_trip_at_millisecond_precision() {
        let at = UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456);
        let stored = millis(at);
        assert_eq!(stored, 1_700_000_000_123);
        assert_eq!(
            time(stored).expect("in range"),
            UNIX_EPOCH + Duration::from_millis(1_700_000_000_123)
        );
        assert_eq!(millis(UNIX_EPOCH - Duration::from_secs(1)), 0);
        assert!(time(-1).is_err());
    }
}
