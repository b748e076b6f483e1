//! The storage contract: versioned records with create-if-absent and
//! compare-and-set writes.
//!
//! The layer never overwrites a record blindly. Every write names the version
//! it read, and a store refuses a write whose version is stale or whose record
//! is gone. On refusal the layer reloads and re-applies the request's changes,
//! so concurrent requests never lose each other's updates, and a logged-out
//! session can never be written back.

use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;

use crate::error::Error;
use crate::id::Id;

#[cfg(feature = "conformance")]
pub mod conformance;
#[cfg(feature = "memory-store")]
pub(crate) mod memory;
#[cfg(feature = "postgres-store")]
pub(crate) mod postgres;
#[cfg(feature = "redis-store")]
pub(crate) mod redis;
#[cfg(any(feature = "postgres-store", feature = "sqlite-store"))]
pub(crate) mod sql;
#[cfg(feature = "sqlite-store")]
pub(crate) mod sqlite;
#[cfg(any(
    feature = "conformance",
    feature = "memory-store",
    feature = "redis-store",
    feature = "postgres-store",
    feature = "sqlite-store"
))]
mod time;

/// One stored session.
#[derive(Clone, PartialEq, Eq)]
pub struct Record {
    /// The session id, the store's key.
    pub id: Id,
    /// Counts the writes to this record; the first one is `1`. A store keeps
    /// it exactly as given.
    pub version: u64,
    /// The session's values and settings, encoded by the layer. Opaque to the
    /// store, which keeps the bytes exactly as given.
    ///
    /// Shared, so a store that keeps records in memory can hand them out
    /// and take them in without copying (`Vec<u8>`, `&[u8]` and `String`
    /// convert with `.into()`).
    pub data: Arc<[u8]>,
    /// When the session was created; the absolute timeout runs from here and
    /// is never extended.
    pub created_at: SystemTime,
    /// The earlier of the idle and the absolute deadline. A store may expire
    /// the record at this instant (a native TTL), and must not return it from
    /// [`SessionStore::load`] after it.
    pub expires_at: SystemTime,
}

impl std::fmt::Debug for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Record")
            .field("id", &self.id)
            .field("version", &self.version)
            .field("data_len", &self.data.len())
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// What [`SessionStore::create`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Created {
    /// The record was stored.
    Created,
    /// A record with this id exists already; nothing was written.
    IdTaken,
}

/// What [`SessionStore::update`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Updated {
    /// The stored record had the expected version and was replaced.
    Updated,
    /// The record is gone, or its version is not the expected one; nothing was
    /// written.
    Stale,
}

/// What [`SessionStore::rotate`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Rotated {
    /// The new record exists, and the old one is replaced by the retired
    /// record or gone.
    Rotated,
    /// The old record is gone, or its version is not the expected one;
    /// nothing was written.
    Stale,
    /// A record with the new id exists already; nothing was written.
    IdTaken,
}

/// A backend that keeps session records.
///
/// Implementations must make [`create`](Self::create),
/// [`update`](Self::update) and, if overridden, [`rotate`](Self::rotate)
/// atomic with respect to each other; the layer builds its guarantees
/// (no lost update, no resurrection after logout) on that. Run the public
/// conformance suite (feature `conformance`) against your store to check it.
///
/// Records past their `expires_at` must not be returned by `load`. The layer
/// checks the deadlines again itself, so a store that keeps them around a
/// little longer is still safe.
#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// Returns the record with this id, or `None` if there is none or it
    /// has expired.
    ///
    /// # Errors
    ///
    /// Fails if the backend fails.
    async fn load(&self, id: &Id) -> Result<Option<Record>, Error>;

    /// Stores `record` only if no record with its id exists.
    ///
    /// # Errors
    ///
    /// Fails if the backend fails, or with [`ErrorKind::Capacity`] if the
    /// store is full.
    ///
    /// [`ErrorKind::Capacity`]: crate::ErrorKind::Capacity
    async fn create(&self, record: &Record) -> Result<Created, Error>;

    /// Replaces the record with `record.id` only if its stored version is
    /// `expected_version` (compare-and-set). A missing record is never
    /// created.
    ///
    /// # Errors
    ///
    /// Fails if the backend fails.
    async fn update(&self, record: &Record, expected_version: u64) -> Result<Updated, Error>;

    /// Deletes the record with this id, if there is one.
    ///
    /// # Errors
    ///
    /// Fails if the backend fails.
    async fn delete(&self, id: &Id) -> Result<(), Error>;

    /// Moves a session to a new id: stores `record` under its (new) id and,
    /// in the same step, replaces the record under `old` with `retired`
    /// (whose id is `old`), or deletes it when `retired` is `None`; but only
    /// if `old` still has `expected_version` and is live.
    ///
    /// - [`Rotated::Rotated`]: `record` is stored, and `old` holds `retired`
    ///   or nothing.
    /// - [`Rotated::Stale`]: the record under `old` is gone, expired or at
    ///   another version; nothing was written.
    /// - [`Rotated::IdTaken`]: a live record holds `record.id` (an expired
    ///   one counts as absent, as in [`create`](Self::create)); nothing was
    ///   written.
    ///
    /// A retired record is an ordinary [`Record`], opaque to the store like
    /// any other: it loads, expires at its own `expires_at` (with the
    /// store's native expiry, if it has one), and can be updated by
    /// compare-and-set and deleted. The caller marks it in its own data
    /// encoding, and gives it a version other than `expected_version`, so
    /// that a write from a request that read the old record is refused. It
    /// is stored under `old`, whatever its `id` says.
    ///
    /// The provided implementation uses only the other four methods, so it is
    /// not atomic. It checks the old version, then creates the new record.
    /// With a `retired` record it then replaces the old record with
    /// [`update`](Self::update)`(retired, expected_version)`: that one
    /// compare-and-set both checks and replaces it, so a write or a delete
    /// that reached the old id first makes it `Stale` (the new record is
    /// deleted again and the answer is `Stale`), and no write to the old id
    /// can be lost. Without one, it checks the old version again (and, if a
    /// write or a delete got there first, deletes the new record and answers
    /// `Stale`), then deletes the old record; what it cannot rule out there
    /// is a write to the old id that lands in the one round trip between the
    /// second check and the delete: that write is lost. Either way it never
    /// deletes first, so a failure leaves the session reachable under one of
    /// its ids (after an error it removes the new record again, best
    /// effort). Stores that can do better (a transaction, a script) override
    /// it.
    ///
    /// # Errors
    ///
    /// Fails if the backend fails, or with [`ErrorKind::Capacity`] if the
    /// store is full.
    ///
    /// [`ErrorKind::Capacity`]: crate::ErrorKind::Capacity
    async fn rotate(
        &self,
        old: &Id,
        expected_version: u64,
        record: &Record,
        retired: Option<&Record>,
    ) -> Result<Rotated, Error> {
        match self.load(old).await? {
            Some(current) if current.version == expected_version => {}
            _ => return Ok(Rotated::Stale),
        }
        // `update` stores a record under its own id; the retired record
        // belongs under `old`.
        let renamed;
        let retired = match retired {
            Some(retired) if retired.id != *old => {
                renamed = Record {
                    id: *old,
                    ..retired.clone()
                };
                Some(&renamed)
            }
            retired => retired,
        };
        if self.create(record).await? == Created::IdTaken {
            return Ok(Rotated::IdTaken);
        }
        // From here on the new record exists, but its id reaches the client
        // only on success: every other way out removes it again.
        let finish = async {
            // A write or a logout that reached the old id meanwhile wins: undo
            // the copy, and let the layer reload (and re-apply, or give up).
            if let Some(retired) = retired {
                // The check and the replacement in one compare-and-set.
                return Ok(match self.update(retired, expected_version).await? {
                    Updated::Updated => Rotated::Rotated,
                    Updated::Stale => Rotated::Stale,
                });
            }
            match self.load(old).await? {
                Some(current) if current.version == expected_version => {}
                _ => return Ok(Rotated::Stale),
            }
            self.delete(old).await?;
            Ok(Rotated::Rotated)
        };
        let outcome = finish.await;
        if !matches!(outcome, Ok(Rotated::Rotated)) {
            // On an error this is best effort: the error that matters is the
            // one already in hand.
            let undo = self.delete(&record.id).await;
            if matches!(outcome, Ok(Rotated::Stale)) {
                undo?;
            }
        }
        outcome
    }
}

#[async_trait]
impl<St: SessionStore + ?Sized> SessionStore for Arc<St> {
    async fn load(&self, id: &Id) -> Result<Option<Record>, Error> {
        (**self).load(id).await
    }

    async fn create(&self, record: &Record) -> Result<Created, Error> {
        (**self).create(record).await
    }

    async fn update(&self, record: &Record, expected_version: u64) -> Result<Updated, Error> {
        (**self).update(record, expected_version).await
    }

    async fn delete(&self, id: &Id) -> Result<(), Error> {
        (**self).delete(id).await
    }

    async fn rotate(
        &self,
        old: &Id,
        expected_version: u64,
        record: &Record,
        retired: Option<&Record>,
    ) -> Result<Rotated, Error> {
        (**self)
            .rotate(old, expected_version, record, retired)
            .await
    }
}
