//! [`SqlStore`]: the one implementation behind [`PostgresStore`] and
//! [`SqliteStore`]: the table, the statements, the conversions, and the
//! cleanup task.
//!
//! Both stores run the same SQL. PostgreSQL and SQLite agree on everything
//! the stores need: `$1` placeholders, double-quoted identifiers,
//! `INSERT … ON CONFLICT (id) DO UPDATE … WHERE`, row counts from `UPDATE`
//! and `DELETE`, and transactions. They differ only in the column types and
//! in how concurrent migrations are kept apart, which their [`Dialect`]
//! says, and in how a pool is opened, which `postgres.rs` and `sqlite.rs`
//! say.
//!
//! [`PostgresStore`]: crate::PostgresStore
//! [`SqliteStore`]: crate::SqliteStore

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use sqlx::{Database, Pool};

use crate::error::{Error, ErrorKind};
use crate::id::Id;
use crate::store::time::{from_unix_ms, to_unix_ms_i64};
use crate::store::{Created, Record, Rotated, SessionStore, Updated};
use crate::trace::event;

/// The table name a store uses unless told otherwise.
pub(crate) const DEFAULT_TABLE_NAME: &str = "sessions";

/// The longest table name accepted: PostgreSQL keeps 63 bytes of an
/// identifier, and the index name adds [`INDEX_SUFFIX`] to the table name.
pub(crate) const MAX_TABLE_NAME_LEN: usize = 63 - INDEX_SUFFIX.len();

const INDEX_SUFFIX: &str = "_expires_at_idx";

/// The key of the lock taken while migrating (the bytes of `"sesslayr"`).
const MIGRATION_LOCK_KEY: i64 = i64::from_be_bytes(*b"sesslayr");

/// A [`SessionStore`] in an SQL table, through `sqlx`: the implementation
/// that [`PostgresStore`] and [`SqliteStore`] share.
///
/// Use it through those two names: `PostgresStore` is `SqlStore<Postgres>`
/// and `SqliteStore` is `SqlStore<Sqlite>`. Their pages describe the table,
/// expiry, rotation and failures of each database, and how to connect.
///
/// # The table
///
/// | column | type (PostgreSQL / SQLite) | holds |
/// |---|---|---|
/// | `id` | `BYTEA` / `BLOB`, primary key | the 16 raw bytes of the [`Id`] |
/// | `version` | `BIGINT` / `INTEGER` | [`Record::version`] |
/// | `data` | `BYTEA` / `BLOB` | [`Record::data`], exactly as given |
/// | `created_at` | `BIGINT` / `INTEGER` | unix time in milliseconds |
/// | `expires_at` | `BIGINT` / `INTEGER`, indexed | unix time in milliseconds |
///
/// Times are whole milliseconds since the Unix epoch, rounded down; times
/// before the epoch are kept as the epoch, and times past the column's
/// range as its largest value. Every statement compares `expires_at` with
/// the application's clock, passed as a parameter, so both databases treat
/// expiry the same way and a record is never loaded, updated or rotated
/// after its deadline.
///
/// Cloning is cheap and clones share the pool.
///
/// [`PostgresStore`]: crate::PostgresStore
/// [`SqliteStore`]: crate::SqliteStore
pub struct SqlStore<DB: Database> {
    pool: Pool<DB>,
    statements: Arc<Statements>,
}

/// The database of an [`SqlStore`]: `sqlx::Postgres` (feature
/// `postgres-store`) or `sqlx::Sqlite` (feature `sqlite-store`).
///
/// The trait is sealed: it says what the store's SQL needs from a database
/// (its column types, how migrations are kept apart, what its driver
/// provides), and only these two databases are implemented. It cannot be
/// implemented outside this crate, and it has no methods to call.
pub trait Dialect: sealed::Sealed {}

/// Builds an [`SqlStore`] with a table name of your choice:
/// `PostgresStore::builder()` or `SqliteStore::builder()`.
///
/// Setters take the builder by value and return it; the name is checked
/// once, by [`build`](Self::build) or by the database's `connect` (and, for
/// SQLite, `open`), before anything is sent to the database.
///
/// ```
/// use session_layer::{ErrorKind, SqliteStore};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = SqliteStore::builder()
///     .table_name("app_sessions")
///     .connect("sqlite::memory:")
///     .await?;
/// store.migrate().await?;
/// assert_eq!(store.table_name(), "app_sessions");
///
/// let refused = SqliteStore::builder()
///     .table_name("x\"; DROP TABLE users; --")
///     .build(store.pool().clone());
/// assert_eq!(refused.unwrap_err().kind(), ErrorKind::Config);
/// # Ok(())
/// # }
/// ```
#[must_use]
pub struct SqlStoreBuilder<DB: Database> {
    table_name: String,
    database: PhantomData<fn() -> DB>,
}

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
    fn new<DB: sealed::Syntax>(table: &str) -> Result<Self, Error> {
        validate_table_name(table)?;
        Ok(Self::build::<DB>(table))
    }

    /// Returns the statements for `table`, whose name must be valid.
    fn build<DB: sealed::Syntax>(table: &str) -> Self {
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

impl<DB: Database> Clone for SqlStore<DB> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            statements: Arc::clone(&self.statements),
        }
    }
}

impl<DB: Dialect> fmt::Debug for SqlStore<DB> {
    // By hand: the pool's own `Debug` would print its connect options.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(DB::STORE_NAME)
            .field("table", &self.statements.table)
            .field("connections", &self.pool.size())
            .field("idle", &self.pool.num_idle())
            .field("closed", &self.pool.is_closed())
            .finish()
    }
}

impl<DB: Dialect> SqlStore<DB> {
    /// How long a pool opened by the store's `connect` (or SQLite's `open`)
    /// waits for a connection before the store call fails: 3 seconds.
    pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

    /// Creates a store on `pool`, using the table `sessions`.
    ///
    /// Nothing is sent to the database until the store is used; call
    /// [`migrate`](Self::migrate) to create the table. For another table,
    /// use [`builder`](Self::builder). For an in-memory SQLite database, see
    /// [`SqliteStore`](crate::SqliteStore) on how to build the pool.
    pub fn new(pool: Pool<DB>) -> Self {
        // The unit tests check that the default name is valid.
        Self::with_statements(pool, Statements::build::<DB>(DEFAULT_TABLE_NAME))
    }

    fn with_statements(pool: Pool<DB>, statements: Statements) -> Self {
        Self {
            pool,
            statements: Arc::new(statements),
        }
    }

    /// Starts a store with settings other than the defaults (today, the
    /// table name).
    pub fn builder() -> SqlStoreBuilder<DB> {
        SqlStoreBuilder {
            table_name: DEFAULT_TABLE_NAME.to_owned(),
            database: PhantomData,
        }
    }

    /// Returns the name of the table the sessions are kept in.
    pub fn table_name(&self) -> &str {
        &self.statements.table
    }

    /// Returns the connection pool.
    pub fn pool(&self) -> &Pool<DB> {
        &self.pool
    }

    /// Closes the pool, waiting for connections in use to be returned.
    /// Every later call fails; an in-memory SQLite database is gone.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Creates the table and its index, if they do not exist yet.
    ///
    /// It runs in one transaction, and is safe to run from several
    /// instances at once: on PostgreSQL under an advisory lock, so that
    /// instances that start at the same time do not trip over each other;
    /// on SQLite, where one connection writes at a time, the statements
    /// wait for each other already.
    ///
    /// # Errors
    ///
    /// Fails with [`ErrorKind::Store`] if the database fails or refuses (for
    /// example, the user may not create tables, or the SQLite file was
    /// opened read-only).
    pub async fn migrate(&self) -> Result<(), Error> {
        DB::migrate(self).await
    }

    /// Deletes every session whose deadline has passed, and returns how many
    /// were deleted.
    ///
    /// # Errors
    ///
    /// Fails with [`ErrorKind::Store`] if the database fails.
    pub async fn delete_expired(&self) -> Result<u64, Error> {
        DB::delete_expired(self).await
    }

    /// Spawns a task that calls [`delete_expired`](Self::delete_expired)
    /// every `period`, starting one period from now, until the returned
    /// handle is stopped or dropped.
    ///
    /// A failed cleanup is reported (with the `tracing` feature) and tried
    /// again at the next period.
    ///
    /// # Panics
    ///
    /// Panics if `period` is zero, or if called outside a Tokio runtime.
    pub fn spawn_cleanup(&self, period: Duration) -> CleanupHandle {
        let store = self.clone();
        CleanupHandle::spawn(period, move || {
            let store = store.clone();
            async move { DB::delete_expired(&store).await }
        })
    }
}

impl<DB: Dialect> SqlStoreBuilder<DB> {
    /// Keeps the sessions in the table `name` (default `sessions`).
    ///
    /// The name is used in SQL text, so it must be 1 to 48 ASCII letters,
    /// digits or underscores, and must not start with a digit; the call that
    /// finishes the builder checks it. The name is quoted, so upper-case
    /// letters are kept as they are and keywords are allowed.
    pub fn table_name(mut self, name: impl Into<String>) -> Self {
        self.table_name = name.into();
        self
    }

    /// Checks the settings and returns a store on `pool`.
    ///
    /// Nothing is sent to the database until the store is used; call
    /// [`SqlStore::migrate`] to create the table.
    ///
    /// # Errors
    ///
    /// Fails with [`ErrorKind::Config`] if the table name is not 1 to 48
    /// ASCII letters, digits or underscores, or starts with a digit.
    pub fn build(self, pool: Pool<DB>) -> Result<SqlStore<DB>, Error> {
        let statements = Statements::new::<DB>(&self.table_name)?;
        Ok(SqlStore::with_statements(pool, statements))
    }

    /// Checks the settings, then (and only if they are valid) awaits `pool`
    /// and returns a store on it.
    pub(crate) async fn open_pool(
        self,
        pool: impl Future<Output = Result<Pool<DB>, sqlx::Error>>,
    ) -> Result<SqlStore<DB>, Error> {
        let statements = Statements::new::<DB>(&self.table_name)?;
        let pool = pool.await.map_err(Error::store)?;
        Ok(SqlStore::with_statements(pool, statements))
    }
}

impl<DB: Dialect> fmt::Debug for SqlStoreBuilder<DB> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(DB::BUILDER_NAME)
            .field("table_name", &self.table_name)
            .finish()
    }
}

#[async_trait]
impl<DB: Dialect> SessionStore for SqlStore<DB> {
    async fn load(&self, id: &Id) -> Result<Option<Record>, Error> {
        DB::load(self, id).await
    }

    async fn create(&self, record: &Record) -> Result<Created, Error> {
        DB::create(self, record).await
    }

    async fn update(&self, record: &Record, expected_version: u64) -> Result<Updated, Error> {
        DB::update(self, record, expected_version).await
    }

    async fn delete(&self, id: &Id) -> Result<(), Error> {
        DB::delete(self, id).await
    }

    /// Checks the old record, inserts the new one and, in the same
    /// transaction, updates the old row to the retired record (or deletes
    /// it): all of it happens, or none.
    async fn rotate(
        &self,
        old: &Id,
        expected_version: u64,
        record: &Record,
        retired: Option<&Record>,
    ) -> Result<Rotated, Error> {
        DB::rotate(self, old, expected_version, record, retired).await
    }
}

/// What makes [`Dialect`] sealed: public traits that cannot be named
/// outside this crate.
pub(crate) mod sealed {
    use std::future::Future;
    use std::time::SystemTime;

    use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Row, Type};

    use super::{MIGRATION_LOCK_KEY, SqlStore, column_time, corrupt, to_unix_ms_i64, version};
    use crate::error::Error;
    use crate::id::Id;
    use crate::store::{Created, Record, Rotated, Updated};

    /// What one database says for the shared implementation.
    pub trait Syntax: Database {
        /// The name the store's `Debug` shows.
        const STORE_NAME: &'static str;
        /// The name the builder's `Debug` shows.
        const BUILDER_NAME: &'static str;
        /// The column type of the id and the data.
        const BYTES: &'static str;
        /// The column type of the version and the times: a signed 64-bit
        /// integer.
        const INTEGER: &'static str;
        /// A statement run first in the migration's transaction, with
        /// [`MIGRATION_LOCK_KEY`] bound to `$1`, so that application
        /// instances that start together create the table one after the
        /// other.
        const MIGRATION_LOCK: Option<&'static str>;

        /// Returns the number of rows a statement changed.
        fn rows_affected(result: &Self::QueryResult) -> u64;
    }

    /// The shared implementation, for every database whose `sqlx` driver
    /// has what its statements need.
    ///
    /// A trait with a blanket implementation, so that code generic over a
    /// [`Dialect`](super::Dialect) can call it without repeating the
    /// driver's bounds.
    pub trait Sealed: Syntax {
        /// Creates the table and its index if they do not exist.
        fn migrate(store: &SqlStore<Self>) -> impl Future<Output = Result<(), Error>> + Send;

        fn load(
            store: &SqlStore<Self>,
            id: &Id,
        ) -> impl Future<Output = Result<Option<Record>, Error>> + Send;

        fn create(
            store: &SqlStore<Self>,
            record: &Record,
        ) -> impl Future<Output = Result<Created, Error>> + Send;

        fn update(
            store: &SqlStore<Self>,
            record: &Record,
            expected_version: u64,
        ) -> impl Future<Output = Result<Updated, Error>> + Send;

        fn delete(
            store: &SqlStore<Self>,
            id: &Id,
        ) -> impl Future<Output = Result<(), Error>> + Send;

        /// Checks the old record, inserts the new one and replaces the old
        /// one with the retired record (or deletes it) in one transaction:
        /// all of it happens, or none.
        fn rotate(
            store: &SqlStore<Self>,
            old: &Id,
            expected_version: u64,
            record: &Record,
            retired: Option<&Record>,
        ) -> impl Future<Output = Result<Rotated, Error>> + Send;

        /// Deletes every record whose deadline has passed and returns how
        /// many.
        fn delete_expired(
            store: &SqlStore<Self>,
        ) -> impl Future<Output = Result<u64, Error>> + Send;
    }

    impl<DB> Sealed for DB
    where
        DB: Syntax,
        for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
        for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
        for<'q> i64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
        for<'q> &'q [u8]: Encode<'q, DB> + Type<DB>,
        for<'q> Vec<u8>: Decode<'q, DB> + Type<DB>,
        usize: ColumnIndex<DB::Row>,
    {
        async fn migrate(store: &SqlStore<Self>) -> Result<(), Error> {
            let statements = &*store.statements;
            let mut transaction = store.pool.begin().await.map_err(Error::store)?;
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

        async fn load(store: &SqlStore<Self>, id: &Id) -> Result<Option<Record>, Error> {
            let row = sqlx::query(&store.statements.load)
                .bind(id.as_bytes().as_slice())
                .bind(to_unix_ms_i64(SystemTime::now()))
                .fetch_optional(&store.pool)
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
                created_at: column_time(column(2)?)?,
                expires_at: column_time(column(3)?)?,
            }))
        }

        async fn create(store: &SqlStore<Self>, record: &Record) -> Result<Created, Error> {
            let result = insert(store, record, SystemTime::now())?
                .execute(&store.pool)
                .await
                .map_err(Error::store)?;
            Ok(if DB::rows_affected(&result) == 1 {
                Created::Created
            } else {
                Created::IdTaken
            })
        }

        async fn update(
            store: &SqlStore<Self>,
            record: &Record,
            expected_version: u64,
        ) -> Result<Updated, Error> {
            // No stored version can equal one that does not fit in the column.
            let Ok(expected_version) = i64::try_from(expected_version) else {
                return Ok(Updated::Stale);
            };
            let result = sqlx::query(&store.statements.update)
                .bind(version(record)?)
                .bind(&*record.data)
                .bind(to_unix_ms_i64(record.created_at))
                .bind(to_unix_ms_i64(record.expires_at))
                .bind(record.id.as_bytes().as_slice())
                .bind(expected_version)
                .bind(to_unix_ms_i64(SystemTime::now()))
                .execute(&store.pool)
                .await
                .map_err(Error::store)?;
            Ok(if DB::rows_affected(&result) == 1 {
                Updated::Updated
            } else {
                Updated::Stale
            })
        }

        async fn delete(store: &SqlStore<Self>, id: &Id) -> Result<(), Error> {
            sqlx::query(&store.statements.delete)
                .bind(id.as_bytes().as_slice())
                .execute(&store.pool)
                .await
                .map_err(Error::store)?;
            Ok(())
        }

        async fn rotate(
            store: &SqlStore<Self>,
            old: &Id,
            expected_version: u64,
            record: &Record,
            retired: Option<&Record>,
        ) -> Result<Rotated, Error> {
            let Ok(expected_version) = i64::try_from(expected_version) else {
                return Ok(Rotated::Stale);
            };
            // A version too large for its column is an error, found before
            // the transaction starts.
            let retired_version = retired.map(version).transpose()?;
            let now = SystemTime::now();
            let mut transaction = store.pool.begin().await.map_err(Error::store)?;
            let current = sqlx::query(&store.statements.lock_current)
                .bind(old.as_bytes().as_slice())
                .bind(expected_version)
                .bind(to_unix_ms_i64(now))
                .execute(&mut *transaction)
                .await
                .map_err(Error::store)?;
            if DB::rows_affected(&current) != 1 {
                transaction.rollback().await.map_err(Error::store)?;
                return Ok(Rotated::Stale);
            }
            // The old record is still there, so a rotation onto its own id is
            // refused here too.
            let inserted = insert(store, record, now)?
                .execute(&mut *transaction)
                .await
                .map_err(Error::store)?;
            if DB::rows_affected(&inserted) != 1 {
                transaction.rollback().await.map_err(Error::store)?;
                return Ok(Rotated::IdTaken);
            }
            match retired.zip(retired_version) {
                // The row is locked and was checked: the update matches it.
                Some((retired, retired_version)) => {
                    let replaced = sqlx::query(&store.statements.update)
                        .bind(retired_version)
                        .bind(&*retired.data)
                        .bind(to_unix_ms_i64(retired.created_at))
                        .bind(to_unix_ms_i64(retired.expires_at))
                        .bind(old.as_bytes().as_slice())
                        .bind(expected_version)
                        .bind(to_unix_ms_i64(now))
                        .execute(&mut *transaction)
                        .await
                        .map_err(Error::store)?;
                    if DB::rows_affected(&replaced) != 1 {
                        transaction.rollback().await.map_err(Error::store)?;
                        return Ok(Rotated::Stale);
                    }
                }
                None => {
                    sqlx::query(&store.statements.delete)
                        .bind(old.as_bytes().as_slice())
                        .execute(&mut *transaction)
                        .await
                        .map_err(Error::store)?;
                }
            }
            transaction.commit().await.map_err(Error::store)?;
            Ok(Rotated::Rotated)
        }

        async fn delete_expired(store: &SqlStore<Self>) -> Result<u64, Error> {
            let result = sqlx::query(&store.statements.delete_expired)
                .bind(to_unix_ms_i64(SystemTime::now()))
                .execute(&store.pool)
                .await
                .map_err(Error::store)?;
            Ok(DB::rows_affected(&result))
        }
    }

    /// Returns the create-if-absent statement for `record`, which replaces
    /// an expired record under the same id.
    fn insert<'q, DB>(
        store: &'q SqlStore<DB>,
        record: &'q Record,
        now: SystemTime,
    ) -> Result<sqlx::query::Query<'q, DB, DB::Arguments<'q>>, Error>
    where
        DB: Database,
        i64: Encode<'q, DB> + Type<DB>,
        &'q [u8]: Encode<'q, DB> + Type<DB>,
    {
        Ok(sqlx::query(&store.statements.create)
            .bind(record.id.as_bytes().as_slice())
            .bind(version(record)?)
            .bind(&*record.data)
            .bind(to_unix_ms_i64(record.created_at))
            .bind(to_unix_ms_i64(record.expires_at))
            .bind(to_unix_ms_i64(now)))
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

/// Returns the time a column holds: [`from_unix_ms`] of it.
///
/// # Errors
///
/// Fails with [`ErrorKind::Deserialize`] on a negative value, which the
/// store never writes.
fn column_time(ms: i64) -> Result<SystemTime, Error> {
    u64::try_from(ms).map(from_unix_ms).map_err(|_| {
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

/// A running cleanup task, from [`SqlStore::spawn_cleanup`]
/// (`PostgresStore::spawn_cleanup` or `SqliteStore::spawn_cleanup`).
///
/// The task deletes expired sessions once per period, until it is stopped
/// with [`stop`](Self::stop) or the handle is dropped. Stopping aborts the
/// task; a `DELETE` in flight either completes in the database or does not
/// happen at all, so stopping never leaves a half-done cleanup.
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
    use std::time::UNIX_EPOCH;

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
        let stored = to_unix_ms_i64(at);
        assert_eq!(stored, 1_700_000_000_123);
        assert_eq!(
            column_time(stored).expect("in range"),
            UNIX_EPOCH + Duration::from_millis(1_700_000_000_123)
        );
        assert_eq!(to_unix_ms_i64(UNIX_EPOCH - Duration::from_secs(1)), 0);
        assert!(column_time(-1).is_err());
    }
}
