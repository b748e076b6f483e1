//! The tools the tests share. Nothing here mocks a backend.
//!
//! - [`App`] serves a real axum [`Router`](axum::Router) behind the real
//!   [`SessionLayer`](session_layer::SessionLayer), sends requests through
//!   `oneshot`, and reads the answer back; [`ManualClock`] is the clock the
//!   tests move by hand.
//! - [`CountingStore`] and [`FaultyStore`] wrap a real store (usually
//!   [`MemoryStore`]) and only watch, fail or pause the calls the layer makes;
//!   they and the tests' own wrappers are a [`Wrapped`] store with a [`Hook`].
//! - [`browser`], [`postgres`] and [`redis`] run the real programs the tests
//!   talk to: Chromium with chromedriver, a PostgreSQL server, Redis servers
//!   and clusters. [`records`] builds records by hand for the SQL stores'
//!   tests, [`sql`] holds the tests both SQL stores run, and [`TempDir`] holds what the servers and databases write.

mod app;
mod clock;
mod stores;
#[cfg(any(
    feature = "redis-store",
    feature = "postgres-store",
    feature = "sqlite-store"
))]
mod temp;

pub(crate) mod browser;
#[cfg(feature = "postgres-store")]
pub(crate) mod postgres;
#[cfg(any(feature = "postgres-store", feature = "sqlite-store"))]
pub(crate) mod records;
#[cfg(feature = "redis-store")]
pub(crate) mod redis;
#[cfg(any(feature = "postgres-store", feature = "sqlite-store"))]
pub(crate) mod sql;

pub(crate) use app::{
    App, Reply, SetCookie, counted, faulty, join, join_within_5s, logout_during_a_held_write,
    post_ok, routes, spawn_get, spawn_post, while_paused, while_paused_with,
};
pub(crate) use clock::ManualClock;
#[cfg(any(feature = "sqlite-store", feature = "redis-store"))]
pub(crate) use stores::Keeps;
pub(crate) use stores::{Call, CountingStore, FaultyStore, Gate, Hook, NoRotate, Op, Wrapped};
#[cfg(any(
    feature = "redis-store",
    feature = "postgres-store",
    feature = "sqlite-store"
))]
pub(crate) use temp::{TempDir, unique_name};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use session_layer::{Id, Key, MemoryStore, Record, SessionStore};

/// A layer on `store` whose rotations delete the old id at once, with no
/// grace period: for the tests of what a rotation does to the store and to
/// the old id itself. The grace period is tested in `rotation`.
pub(crate) fn no_grace(store: impl SessionStore, key: Key) -> session_layer::SessionLayer {
    session_layer::SessionLayer::builder(store, key)
        .rotation_grace(std::time::Duration::ZERO)
        .build()
        .expect("a valid configuration")
}

/// Returns a fixed 32-byte key made of `byte`.
pub(crate) fn key(byte: u8) -> Key {
    Key::from_bytes(&[byte; 32]).expect("32 bytes make a key")
}

/// Returns the session id carried by a cookie value: the first 16 bytes of
/// its base64url decoding (the rest is the tag).
pub(crate) fn id_of(cookie_value: &str) -> Id {
    let raw = URL_SAFE_NO_PAD
        .decode(cookie_value)
        .expect("a session cookie value is base64url");
    let bytes: [u8; 16] = raw
        .get(..16)
        .and_then(|bytes| bytes.try_into().ok())
        .expect("a session cookie value starts with a 16-byte id");
    Id::from_bytes(bytes)
}

/// Loads the record behind a cookie value straight from `store`, bypassing
/// the layer (and its deadlines).
pub(crate) async fn stored(store: &MemoryStore, cookie_value: &str) -> Option<Record> {
    store
        .load(&id_of(cookie_value))
        .await
        .expect("the memory store does not fail")
}
