//! Records made by hand for the SQL stores' tests, which put them in the
//! store directly, bypassing the layer.

use std::time::{Duration, SystemTime};

use session_layer::{Created, Id, Record, SessionStore};

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
