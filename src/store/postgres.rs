//! [`PostgresStore`]: sessions in a PostgreSQL table, through `sqlx`.

use sqlx::Postgres;
use sqlx::postgres::{PgPoolOptions, PgQueryResult};

use crate::error::Error;
use crate::store::sql::sealed::Syntax;
use crate::store::sql::{Dialect, SqlStore, SqlStoreBuilder};

/// A [`SessionStore`](crate::SessionStore) that keeps sessions in a
/// PostgreSQL table.
///
/// Several application instances can share one database: every write is a
/// single statement or transaction that checks the record's version, so
/// concurrent requests on different instances never lose each other's
/// updates.
///
/// - **The table.** [`migrate`](SqlStore::migrate) creates it if it does
///   not exist: `sessions` unless [`builder`](SqlStore::builder) picks
///   another with [`table_name`](SqlStoreBuilder::table_name), with an index
///   on the deadline. Call it once at startup; it is safe to run from
///   several instances at once.
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
///   in the table until [`delete_expired`](SqlStore::delete_expired) removes
///   them; [`spawn_cleanup`](SqlStore::spawn_cleanup) runs it on a schedule.
/// - **Rotation** ([`Session::cycle_id`](crate::Session::cycle_id)) is one
///   transaction: check the old version, insert the new id, then update the
///   old row to the retired record (which expires like any other row) or
///   delete it, all or nothing.
/// - **Failures.** Every database error is an [`ErrorKind::Store`] error
///   whose source is the `sqlx::Error`. A pool waits at most its acquire
///   timeout for a connection, so a database that is down turns requests
///   into prompt `500`s rather than hung ones:
///   [`connect`](PostgresStore#method.connect) sets it to
///   [`ACQUIRE_TIMEOUT`](SqlStore::ACQUIRE_TIMEOUT); set a short one on a
///   pool you build yourself, since `sqlx`'s default is 30 seconds.
///
/// `PostgresStore` is the PostgreSQL [`SqlStore`]; its methods are listed
/// there and below. Cloning is cheap and clones share the pool.
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
///
/// With a table of its own, on a pool you configured:
///
/// ```
/// use session_layer::{ErrorKind, PostgresStore};
/// use sqlx::postgres::PgPool;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // A lazy pool: nothing connects until the store is used.
/// let pool = PgPool::connect_lazy("postgres://app@localhost/app")?;
/// let store = PostgresStore::builder()
///     .table_name("app_sessions")
///     .build(pool.clone())?;
/// assert_eq!(store.table_name(), "app_sessions");
///
/// let refused = PostgresStore::builder()
///     .table_name("sessions; DROP TABLE users")
///     .build(pool);
/// assert_eq!(refused.unwrap_err().kind(), ErrorKind::Config);
/// # Ok(())
/// # }
/// ```
pub type PostgresStore = SqlStore<Postgres>;

/// Builds a [`PostgresStore`]: `PostgresStore::builder()`, then
/// [`table_name`](SqlStoreBuilder::table_name), then
/// [`connect`](PostgresStoreBuilder#method.connect) or
/// [`build`](SqlStoreBuilder::build).
pub type PostgresStoreBuilder = SqlStoreBuilder<Postgres>;

impl Syntax for Postgres {
    const STORE_NAME: &'static str = "PostgresStore";
    const BUILDER_NAME: &'static str = "PostgresStoreBuilder";
    const BYTES: &'static str = "BYTEA";
    const INTEGER: &'static str = "BIGINT";
    // Held until the migration commits. Without it, two instances creating
    // the table at once can fail on PostgreSQL's catalog constraints.
    const MIGRATION_LOCK: Option<&'static str> = Some("SELECT pg_advisory_xact_lock($1)");

    fn rows_affected(result: &PgQueryResult) -> u64 {
        result.rows_affected()
    }
}

impl Dialect for Postgres {}

impl SqlStore<Postgres> {
    /// Connects a pool to the database at `url` and creates a store on it,
    /// using the table `sessions`.
    ///
    /// The same as `PostgresStore::builder().connect(url)`; see
    /// [`PostgresStoreBuilder::connect`](PostgresStoreBuilder#method.connect).
    ///
    /// # Errors
    ///
    /// Fails with [`ErrorKind::Store`](crate::ErrorKind::Store) if the URL is
    /// invalid or the database cannot be reached.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        Self::builder().connect(url).await
    }
}

impl SqlStoreBuilder<Postgres> {
    /// Checks the settings, then connects a pool to the database at `url`
    /// and returns a store on it.
    ///
    /// The pool keeps `sqlx`'s defaults (up to 10 connections) except for
    /// the acquire timeout, which is
    /// [`ACQUIRE_TIMEOUT`](SqlStore::ACQUIRE_TIMEOUT). For other settings,
    /// build a [`PgPool`](sqlx::PgPool) yourself and use
    /// [`build`](SqlStoreBuilder::build).
    ///
    /// # Errors
    ///
    /// Fails with [`ErrorKind::Config`](crate::ErrorKind::Config) if the
    /// table name is invalid (before connecting; see
    /// [`table_name`](SqlStoreBuilder::table_name)), and with
    /// [`ErrorKind::Store`](crate::ErrorKind::Store) if the URL is invalid or
    /// the database cannot be reached.
    pub async fn connect(self, url: &str) -> Result<PostgresStore, Error> {
        let options = PgPoolOptions::new().acquire_timeout(PostgresStore::ACQUIRE_TIMEOUT);
        self.open_pool(options.connect(url)).await
    }
}
