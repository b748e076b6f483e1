//! [`SqliteStore`]: sessions in an SQLite database, through `sqlx`.

use std::path::Path;
use std::str::FromStr;

use sqlx::Sqlite;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteQueryResult,
    SqliteSynchronous,
};

use crate::error::Error;
use crate::store::sql::sealed::Syntax;
use crate::store::sql::{Dialect, SqlStore, SqlStoreBuilder};

/// A [`SessionStore`](crate::SessionStore) that keeps sessions in an SQLite
/// database: a file
/// that survives restarts, with no server to run.
///
/// SQLite is compiled into the program (`sqlx` bundles it). One file serves
/// one machine; several processes on it may share the file, but to share
/// sessions between machines, use a server database such as
/// [`PostgresStore`](crate::PostgresStore).
///
/// - **The table.** [`migrate`](SqlStore::migrate) creates it if it does
///   not exist: `sessions` unless [`builder`](SqlStore::builder) picks
///   another with [`table_name`](SqlStoreBuilder::table_name), with an index
///   on the deadline. Call it once at startup.
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
///   in the file until [`delete_expired`](SqlStore::delete_expired) removes
///   them; [`spawn_cleanup`](SqlStore::spawn_cleanup) runs it on a schedule.
/// - **Rotation** ([`Session::cycle_id`](crate::Session::cycle_id)) is one
///   transaction: check the old version, insert the new id, then update the
///   old row to the retired record (which expires like any other row) or
///   delete it, all or nothing.
/// - **Concurrency.** SQLite runs one write at a time; the others wait for
///   the connection's busy timeout (5 seconds unless set) and fail after
///   it. Reads do not wait for writes in WAL mode, which
///   [`open`](SqliteStore#method.open) and
///   [`connect`](SqliteStore#method.connect) turn on for files.
/// - **In memory.** `sqlite::memory:` gives a database that lives only as
///   long as its connections, which is handy in tests.
///   [`connect`](SqliteStore#method.connect) gives it a pool of exactly one connection
///   that is never closed, so every request sees the same database. If you
///   build the pool yourself for an in-memory database, do the same
///   (`max_connections(1)`, `idle_timeout(None)`, `max_lifetime(None)`):
///   when its last connection closes, the database and its sessions are gone.
///
/// `SqliteStore` is the SQLite [`SqlStore`]; its methods are listed there
/// and below. Cloning is cheap and clones share the pool.
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
pub type SqliteStore = SqlStore<Sqlite>;

/// Builds an [`SqliteStore`]: `SqliteStore::builder()`, then
/// [`table_name`](SqlStoreBuilder::table_name), then
/// [`open`](SqliteStoreBuilder#method.open),
/// [`connect`](SqliteStoreBuilder#method.connect) or
/// [`build`](SqlStoreBuilder::build).
pub type SqliteStoreBuilder = SqlStoreBuilder<Sqlite>;

impl Syntax for Sqlite {
    const STORE_NAME: &'static str = "SqliteStore";
    const BUILDER_NAME: &'static str = "SqliteStoreBuilder";
    const BYTES: &'static str = "BLOB";
    const INTEGER: &'static str = "INTEGER";
    // SQLite lets one connection write at a time; the migration's
    // `CREATE … IF NOT EXISTS` statements wait for each other already.
    const MIGRATION_LOCK: Option<&'static str> = None;

    fn rows_affected(result: &SqliteQueryResult) -> u64 {
        result.rows_affected()
    }
}

impl Dialect for Sqlite {}

impl SqlStore<Sqlite> {
    /// Opens (or creates) the database file at `path` and creates a store on
    /// it, using the table `sessions`.
    ///
    /// The same as `SqliteStore::builder().open(path)`; see
    /// [`SqliteStoreBuilder::open`](SqliteStoreBuilder#method.open).
    ///
    /// # Errors
    ///
    /// Fails with [`ErrorKind::Store`](crate::ErrorKind::Store) if the file
    /// cannot be opened or created.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, Error> {
        Self::builder().open(path).await
    }

    /// Connects to the database at `url`, such as `sqlite://sessions.db` or
    /// `sqlite::memory:`, and creates a store on it, using the table
    /// `sessions`.
    ///
    /// The same as `SqliteStore::builder().connect(url)`; see
    /// [`SqliteStoreBuilder::connect`](SqliteStoreBuilder#method.connect).
    ///
    /// # Errors
    ///
    /// Fails with [`ErrorKind::Store`](crate::ErrorKind::Store) if the URL is
    /// invalid or the database cannot be opened.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        Self::builder().connect(url).await
    }
}

impl SqlStoreBuilder<Sqlite> {
    /// Checks the settings, then opens (or creates) the database file at
    /// `path` and returns a store on it.
    ///
    /// The file is put in WAL mode with `synchronous = NORMAL`: a session
    /// written before a crash of the program is there after it, and readers
    /// do not wait for writers. (A power loss can undo the last writes.)
    /// The pool keeps `sqlx`'s defaults (up to 10 connections) except for
    /// the acquire timeout, which is
    /// [`ACQUIRE_TIMEOUT`](SqlStore::ACQUIRE_TIMEOUT).
    ///
    /// # Errors
    ///
    /// Fails with [`ErrorKind::Config`](crate::ErrorKind::Config) if the
    /// table name is invalid (before opening anything; see
    /// [`table_name`](SqlStoreBuilder::table_name)), and with
    /// [`ErrorKind::Store`](crate::ErrorKind::Store) if the file cannot be
    /// opened or created.
    pub async fn open(self, path: impl AsRef<Path>) -> Result<SqliteStore, Error> {
        let options = SqliteConnectOptions::new().filename(path);
        self.connect_with(options, false).await
    }

    /// Checks the settings, then connects to the database at `url`, such as
    /// `sqlite://sessions.db` or `sqlite::memory:`, and returns a store on
    /// it.
    ///
    /// A file is created if it is missing, and put in WAL mode as by
    /// [`open`](Self::open). An in-memory database (`:memory:` or
    /// `mode=memory`) gets a pool of one connection that is never closed, so
    /// that it lives as long as the store.
    ///
    /// # Errors
    ///
    /// Fails with [`ErrorKind::Config`](crate::ErrorKind::Config) if the
    /// table name is invalid (before opening anything; see
    /// [`table_name`](SqlStoreBuilder::table_name)), and with
    /// [`ErrorKind::Store`](crate::ErrorKind::Store) if the URL is invalid or
    /// the database cannot be opened.
    pub async fn connect(self, url: &str) -> Result<SqliteStore, Error> {
        let options = SqliteConnectOptions::from_str(url).map_err(Error::store)?;
        self.connect_with(options, is_in_memory(url)).await
    }

    async fn connect_with(
        self,
        options: SqliteConnectOptions,
        in_memory: bool,
    ) -> Result<SqliteStore, Error> {
        let pool = SqlitePoolOptions::new().acquire_timeout(SqliteStore::ACQUIRE_TIMEOUT);
        if in_memory {
            let pool = pool
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None);
            return self.open_pool(pool.connect_with(options)).await;
        }
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal);
        self.open_pool(pool.connect_with(options)).await
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
