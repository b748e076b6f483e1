//! Tools for the SQL store tests: temporary directories, unique table names,
//! and a real PostgreSQL server started for the test binary.
//!
//! Nothing here mocks a database. The SQLite tests open files in a
//! [`TempDir`]; the PostgreSQL tests start `postgres` itself from the
//! system's binaries ([`postgres::PgServer`]).

// Every test binary compiles this module but uses a different part of it.
#![allow(dead_code)]
// A test harness reports what went wrong by panicking, like the tests.
#![allow(clippy::panic)]

#[cfg(feature = "postgres-store")]
pub(crate) mod postgres;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use session_layer::{Created, Id, Record, SessionStore};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Returns a name no other call in this process returns: `prefix`, the
/// process id, the time and a counter.
pub(crate) fn unique_name(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .subsec_nanos();
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}_{}_{nanos}_{count}", std::process::id())
}

/// A directory under the system's temporary directory, removed with
/// everything in it when dropped.
#[derive(Debug)]
pub(crate) struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub(crate) fn new(prefix: &str) -> Self {
        let path = std::env::temp_dir().join(unique_name(prefix));
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|error| panic!("cannot create {}: {error}", path.display()));
        Self { path }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Keeps the directory on disk: the caller removes it.
    pub(crate) fn into_path(self) -> PathBuf {
        let path = self.path.clone();
        std::mem::forget(self);
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Returns a version-1 record that expires `lifetime` from now, or expired
/// `lifetime` ago when `expired` is set.
pub(crate) fn record(lifetime: Duration, expired: bool) -> Record {
    let now = SystemTime::now();
    let expires_at = if expired {
        now - lifetime
    } else {
        now + lifetime
    };
    Record {
        id: Id::generate().expect("os rng"),
        version: 1,
        data: b"{}"[..].into(),
        created_at: now - Duration::from_secs(3600),
        expires_at,
    }
}

/// Creates `record`, which must not exist yet.
pub(crate) async fn create(store: &impl SessionStore, record: &Record) {
    let created = store.create(record).await.expect("create");
    assert_eq!(created, Created::Created);
}
