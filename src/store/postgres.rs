//! [`PostgresStore`]: sessions in a PostgreSQL table, through `sqlx`.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::Postgres;
use sqlx::postgres::{PgPool, PgPoolOptions, PgQueryResult};

use crate::error::Error;
use crate::id::Id;
use crate::store::sql::{CleanupHandle, Dialect, SqlStore};
use crate::store::{Created, Record, Rotated, SessionStore, Updated};

impl Dialect for Postgres {
    const BYTES: &'static str = "BYTEA";
    const INTEGER: &'static str = "BIGINT";
    // Held until the migration commits. Without it, two instances creating
    // the table at once can fail on PostgreSQL's catalog constraints.
    const MIGRATION_LOCK: Option<&'static str> = Some("SELECT pg_advisory_xact_lock($1)");

    fn rows_affected(result: &PgQueryResult) -> u64 {
        result.rows_affected()
    }
}

/// A [`SessionStore`] that keeps sessions in a PostgreSQL table.
///
/// Several application instances can share one database: every write is a
/// single statement or transaction that checks the record's version, so
/// concurrent requests on different instances never lose each other's
/// updates.
///
/// - **The table.** [`migrate`](Self::migrate) creates it if it does not
///   exist: `sessions` unless [`with_table_name`](Self::with_table_name)
///   picks another, with an index on the deadline. Call it once at startup;
///   it is safe to run from several instances at once.
///
///   ```sql
///   CREATE TABLE IF NOT EXISTS "sessions" (
///       id BYTEA PRIMARY KEY NOT NULL,   -- the 16 raw bytes of the id
///       version BIGINT NOT NULL,
///       data BYTEA NOT NULL,
///       created_at BIGINT NOT NULL,      -- unix time in milliseconds
///       expires_at BIGINT NOT NULL       -- unix time in milliseconds
///   );
///   CREATE INDEX IF NOT EXISTS "sessions_expires_at_idx" ON "sessions" (expires_at);
///   ```
///
///   If you manage your schema with a migration tool, put these statements
///   in a migration instead and skip `migrate`. The table lives in the first
///   schema of the connection's `search_path`.
/// - **Expiry.** Loads, updates and rotations ignore rows past their
///   `expires_at`, compared with the application's clock. Expired rows stay
///   in the table until [`delete_expired`](Self::delete_expired) removes
///   them; [`spawn_cleanup`](Self::spawn_cleanup) runs it on a schedule.
/// - **Rotation** ([`Session::cycle_id`](crate::Session::cycle_id)) is one
///   transaction: check the old version, insert the new id, delete the old
///   one, all or nothing.
/// - **Failures.** Every database error is an [`ErrorKind::Store`] error
///   whose source is the `sqlx::Error`. A pool waits at most its acquire
///   timeout for a connection, so a database that is down turns requests
///   into prompt `500`s rather than hung ones: [`connect`](Self::connect)
///   sets it to [`ACQUIRE_TIMEOUT`](Self::ACQUIRE_TIMEOUT); set a short one
///   on a pool you build yourself, since `sqlx`'s default is 30 seconds.
///
/// Cloning is cheap and clones share the pool.
///
/// [`ErrorKind::Store`]: crate::ErrorKind::Store
///
/// # Example
///
/// ```no_run
/// use std::time::Duration;
///
/// use axum::{Router, routing::get};
/// use session_layer::{Key, PostgresStore, Session, SessionLayer};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let store = PostgresStore::connect("postgres://app@localhost/app").await?;
/// store.migrate().await?;
/// // Delete expired sessions every ten minutes, for as long as `cleanup` lives.
/// let cleanup = store.spawn_cleanup(Duration::from_secs(600));
///
/// let app: Router = Router::new()
///     .route("/", get(|session: Session| async move { session.id().is_some().to_string() }))
///     .layer(SessionLayer::new(store, Key::generate()?));
/// # let _ = (app, cleanup);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct PostgresStore {
    inner: SqlStore<Postgres>,
}

impl PostgresStore {
    /// How long a pool made by [`connect`](Self::connect) waits for a
    /// connection before the store call fails: 3 seconds.
    pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

    /// Creates a store on `pool`, using the table `sessions`.
    ///
    /// Nothing is sent to the database until the store is used; call
    /// [`migrate`](Self::migrate) to create the table.
    pub fn new(pool: PgPool) -> Self {
        Self {
            inner: SqlStore::new(pool),
        }
    }

    /// Connects a pool to the database at `url` and creates a store on it,
    /// using the table `sessions`.
    ///
    /// The pool keeps `sqlx`'s defaults (up to 10 connections) except for
    /// the acquire timeout, which is [`ACQUIRE_TIMEOUT`](Self::ACQUIRE_TIMEOUT).
    /// For other settings, build a [`PgPool`] yourself and use
    /// [`new`](Self::new).
    ///
    /// # Errors
    ///
    /// Fails with [`ErrorKind::Store`](crate::ErrorKind::Store) if the URL is
    /// invalid or the database cannot be reached.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        let pool = PgPoolOptions::new()
            .acquire_timeout(Self::ACQUIRE_TIMEOUT)
            .connect(url)
            .await
            .map_err(Error::store)?;
        Ok(Self::new(pool))
    }

    /// Returns the store with its sessions in the table `name`.
    ///
    /// # Errors
    ///
    /// Fails with [`ErrorKind::Config`](crate::ErrorKind::Config) unless
    /// `name` is 1 to 48 ASCII letters, digits or underscores and does not
    /// start with a digit. The name is used in SQL text, so nothing else is
    /// accepted. Upper-case letters are kept as they are (the name is quoted).
    ///
    /// ```
    /// use session_layer::{ErrorKind, PostgresStore};
    /// use sqlx::postgres::PgPool;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // A lazy pool: nothing connects until the store is used.
    /// let pool = PgPool::connect_lazy("postgres://app@localhost/app")?;
    /// let store = PostgresStore::new(pool).with_table_name("app_sessions")?;
    /// assert_eq!(store.table_name(), "app_sessions");
    ///
    /// let refused = store.with_table_name("sessions; DROP TABLE users");
    /// assert_eq!(refused.unwrap_err().kind(), ErrorKind::Config);
    /// # Ok(())
    /// # }
    /// ```
    pub fn with_table_name(self, name: &str) -> Result<Self, Error> {
        Ok(Self {
            inner: self.inner.with_table_name(name)?,
        })
    }

    /// Returns the name of the table the sessions are kept in.
    pub fn table_name(&self) -> &str {
        self.inner.table_name()
    }

    /// Returns the connection pool.
    pub fn pool(&self) -> &PgPool {
        self.inner.pool()
    }

    /// Closes the pool, waiting for connections in use to be returned.
    /// Every later call fails.
    pub async fn close(&self) {
        self.inner.close().await;
    }

    /// Creates the table and its index, if they do not exist yet.
    ///
    /// Runs in one transaction under an advisory lock, so instances that
    /// start at the same time do not trip over each other.
    ///
    /// # Errors
    ///
    /// Fails with [`ErrorKind::Store`](crate::ErrorKind::Store) if the
    /// database fails or refuses (for example, the user may not create
    /// tables).
    pub async fn migrate(&self) -> Result<(), Error> {
        self.inner.migrate().await
    }

    /// Deletes every session whose deadline has passed, and returns how many
    /// were deleted.
    ///
    /// # Errors
    ///
    /// Fails with [`ErrorKind::Store`](crate::ErrorKind::Store) if the
    /// database fails.
    pub async fn delete_expired(&self) -> Result<u64, Error> {
        self.inner.delete_expired().await
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
        let store = self.inner.clone();
        CleanupHandle::spawn(period, move || {
            let store = store.clone();
            async move { store.delete_expired().await }
        })
    }
}

#[async_trait]
impl SessionStore for PostgresStore {
    async fn load(&self, id: &Id) -> Result<Option<Record>, Error> {
        self.inner.load(id).await
    }

    async fn create(&self, record: &Record) -> Result<Created, Error> {
        self.inner.create(record).await
    }

    async fn update(&self, record: &Record, expected_version: u64) -> Result<Updated, Error> {
        self.inner.update(record, expected_version).await
    }

    async fn delete(&self, id: &Id) -> Result<(), Error> {
        self.inner.delete(id).await
    }

    async fn rotate(
        &self,
        old: &Id,
        expected_version: u64,
        record: &Record,
    ) -> Result<Rotated, Error> {
        self.inner.rotate(old, expected_version, record).await
    }
}
