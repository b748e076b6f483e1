//! [`SqliteStore`]: sessions in an SQLite database, through `sqlx`.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::Sqlite;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteQueryResult,
    SqliteSynchronous,
};

use crate::error::Error;
use crate::id::Id;
use crate::store::sql::{CleanupHandle, Dialect, SqlStore};
use crate::store::{Created, Record, Rotated, SessionStore, Updated};

impl Dialect for Sqlite {
    const BYTES: &'static str = "BLOB";
    const INTEGER: &'static str = "INTEGER";
    // SQLite lets one connection write at a time; the migration's
    // `CREATE … IF NOT EXISTS` statements wait for each other already.
    const MIGRATION_LOCK: Option<&'static str> = None;

    fn rows_affected(result: &SqliteQueryResult) -> u64 {
        result.rows_affected()
    }
}

/// A [`SessionStore`] that keeps sessions in an SQLite database: a file
/// that survives restarts, with no server to run.
///
/// SQLite is compiled into the program (`sqlx` bundles it). One file serves
/// one machine; several processes on it may share the file, but to share
/// sessions between machines, use a server database such as
/// [`PostgresStore`](crate::PostgresStore).
///
/// - **The table.** [`migrate`](Self::migrate) creates it if it does not
///   exist: `sessions` unless [`with_table_name`](Self::with_table_name)
///   picks another, with an index on the deadline. Call it once at startup.
///
///   ```sql
///   CREATE TABLE IF NOT EXISTS "sessions" (
///       id BLOB PRIMARY KEY NOT NULL,    -- the 16 raw bytes of the id
///       version INTEGER NOT NULL,
///       data BLOB NOT NULL,
///       created_at INTEGER NOT NULL,     -- unix time in milliseconds
///       expires_at INTEGER NOT NULL      -- unix time in milliseconds
///   );
///   CREATE INDEX IF NOT EXISTS "sessions_expires_at_idx" ON "sessions" (expires_at);
///   ```
/// - **Expiry.** SQLite has no TTL: loads, updates and rotations compare
///   `expires_at` with the current time and ignore expired rows, which stay
///   in the file until [`delete_expired`](Self::delete_expired) removes
///   them; [`spawn_cleanup`](Self::spawn_cleanup) runs it on a schedule.
/// - **Rotation** ([`Session::cycle_id`](crate::Session::cycle_id)) is one
///   transaction: check the old version, insert the new id, delete the old
///   one, all or nothing.
/// - **Concurrency.** SQLite runs one write at a time; the others wait for
///   the connection's busy timeout (5 seconds unless set) and fail after
///   it. Reads do not wait for writes in WAL mode, which
///   [`open`](Self::open) and [`connect`](Self::connect) turn on for files.
/// - **In memory.** `sqlite::memory:` gives a database that lives only as
///   long as its connections, which is handy in tests.
///   [`connect`](Self::connect) gives it a pool of exactly one connection
///   that is never closed, so every request sees the same database. If you
///   build the pool yourself for an in-memory database, do the same
///   (`max_connections(1)`, `idle_timeout(None)`, `max_lifetime(None)`):
///   when its last connection closes, the database and its sessions are gone.
///
/// Cloning is cheap and clones share the pool.
///
/// # Example
///
/// ```
/// use axum::{Router, body::Body, routing::get};
/// use http::{Request, StatusCode, header};
/// use session_layer::{Key, Session, SessionLayer, SqliteStore};
/// use tower::ServiceExt as _;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // A file survives restarts: `SqliteStore::open("sessions.db")`.
/// let store = SqliteStore::connect("sqlite::memory:").await?;
/// store.migrate().await?;
///
/// let app = Router::new()
///     .route("/", get(|session: Session| async move {
///         session.update("n", |n: Option<u64>| n.unwrap_or(0) + 1).map(|n| n.to_string())
///     }))
///     .layer(SessionLayer::new(store.clone(), Key::generate()?));
///
/// let response = app.oneshot(Request::new(Body::empty())).await?;
/// assert_eq!(response.status(), StatusCode::OK);
/// assert!(response.headers().contains_key(header::SET_COOKIE));
/// assert_eq!(store.delete_expired().await?, 0);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct SqliteStore {
    inner: SqlStore<Sqlite>,
}

impl SqliteStore {
    /// How long a pool made by [`open`](Self::open) or
    /// [`connect`](Self::connect) waits for a connection before the store
    /// call fails: 3 seconds.
    pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

    /// Creates a store on `pool`, using the table `sessions`.
    ///
    /// Nothing is sent to the database until the store is used; call
    /// [`migrate`](Self::migrate) to create the table. See the type's docs
    /// for in-memory databases.
    pub fn new(pool: SqlitePool) -> Self {
        Self {
            inner: SqlStore::new(pool),
        }
    }

    /// Opens (or creates) the database file at `path` and creates a store on
    /// it, using the table `sessions`.
    ///
    /// The file is put in WAL mode with `synchronous = NORMAL`: a session
    /// written before a crash of the program is there after it, and readers
    /// do not wait for writers. (A power loss can undo the last writes.)
    /// The pool keeps `sqlx`'s defaults (up to 10 connections) except for
    /// the acquire timeout, which is [`ACQUIRE_TIMEOUT`](Self::ACQUIRE_TIMEOUT).
    ///
    /// # Errors
    ///
    /// Fails with [`ErrorKind::Store`](crate::ErrorKind::Store) if the file
    /// cannot be opened or created.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, Error> {
        let options = SqliteConnectOptions::new().filename(path);
        Self::connect_with(options, false).await
    }

    /// Connects to the database at `url`, such as `sqlite://sessions.db` or
    /// `sqlite::memory:`, and creates a store on it, using the table
    /// `sessions`.
    ///
    /// A file is created if it is missing, and put in WAL mode as by
    /// [`open`](Self::open). An in-memory database (`:memory:` or
    /// `mode=memory`) gets a pool of one connection that is never closed, so
    /// that it lives as long as the store.
    ///
    /// # Errors
    ///
    /// Fails with [`ErrorKind::Store`](crate::ErrorKind::Store) if the URL is
    /// invalid or the database cannot be opened.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        let options = SqliteConnectOptions::from_str(url).map_err(Error::store)?;
        Self::connect_with(options, is_in_memory(url)).await
    }

    async fn connect_with(options: SqliteConnectOptions, in_memory: bool) -> Result<Self, Error> {
        let pool = SqlitePoolOptions::new().acquire_timeout(Self::ACQUIRE_TIMEOUT);
        if in_memory {
            let pool = pool
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .connect_with(options)
                .await
                .map_err(Error::store)?;
            return Ok(Self::new(pool));
        }
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal);
        let pool = pool.connect_with(options).await.map_err(Error::store)?;
        Ok(Self::new(pool))
    }

    /// Returns the store with its sessions in the table `name`.
    ///
    /// # Errors
    ///
    /// Fails with [`ErrorKind::Config`](crate::ErrorKind::Config) unless
    /// `name` is 1 to 48 ASCII letters, digits or underscores and does not
    /// start with a digit. The name is used in SQL text, so nothing else is
    /// accepted.
    ///
    /// ```
    /// # use session_layer::{ErrorKind, SqliteStore};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = SqliteStore::connect("sqlite::memory:").await?;
    /// let store = store.with_table_name("app_sessions")?;
    /// store.migrate().await?;
    /// assert_eq!(store.table_name(), "app_sessions");
    ///
    /// let refused = store.with_table_name("x\"; DROP TABLE users; --");
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
    pub fn pool(&self) -> &SqlitePool {
        self.inner.pool()
    }

    /// Closes the store's connections, waiting for those in use to be
    /// returned. Every later call fails; an in-memory database is gone.
    pub async fn close(&self) {
        self.inner.close().await;
    }

    /// Creates the table and its index, if they do not exist yet.
    ///
    /// # Errors
    ///
    /// Fails with [`ErrorKind::Store`](crate::ErrorKind::Store) if the
    /// database fails (for example, it was opened read-only).
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

/// Returns `true` if `url` names an in-memory database.
fn is_in_memory(url: &str) -> bool {
    let url = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let (database, params) = url.split_once('?').unwrap_or((url, ""));
    database == ":memory:" || params.split('&').any(|param| param == "mode=memory")
}

#[async_trait]
impl SessionStore for SqliteStore {
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

#[cfg(test)]
mod tests {
    use super::is_in_memory;

    #[test]
    fn in_memory_urls_are_recognised() {
        for url in [
            "sqlite::memory:",
            "sqlite://:memory:",
            ":memory:",
            "sqlite://sessions?mode=memory",
            "sqlite:sessions?cache=shared&mode=memory",
        ] {
            assert!(is_in_memory(url), "{url}");
        }
        for url in [
            "sqlite://sessions.db",
            "sqlite:sessions.db?mode=rwc",
            "sessions.db",
        ] {
            assert!(!is_in_memory(url), "{url}");
        }
    }
}
