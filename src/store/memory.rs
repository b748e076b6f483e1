//! [`MemoryStore`]: a bounded, sharded in-process store.
//!
//! Records live in 64 shards, each a `HashMap` behind its own `Mutex`, so
//! requests on different sessions rarely wait for each other. A lock is held
//! only for the map operation itself; nothing awaits while holding it.
//!
//! Expired records are removed without scanning the store. Each shard keeps a
//! min-heap of `(deadline, id)` entries, one pushed when a record is created.
//! Creates and updates pop a few due entries from their shard: an entry whose
//! record is gone is dropped, an entry whose record was refreshed is pushed
//! back with the record's current deadline (so a refresh costs no heap push),
//! and an entry whose record has expired removes the record. A store that is
//! full pops every due entry of every shard before it refuses a session.

use std::cmp::Reverse;
use std::collections::hash_map::Entry as MapEntry;
use std::collections::{BinaryHeap, HashMap};
use std::fmt;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use async_trait::async_trait;

use crate::error::{Error, ErrorKind};
use crate::id::{ID_LEN, Id};
use crate::store::time::{from_unix_ms, to_unix_ms};
use crate::store::{Created, Record, Rotated, SessionStore, Updated};

/// The number of shards; a power of two so that a mask picks one.
const SHARDS: usize = 64;

/// The most heap entries a create or update pops from its shard.
const PURGE_BUDGET: usize = 8;

/// Slack before a shard's heap is rebuilt; see [`Shard::maintain`].
const HEAP_SLACK: usize = 64;

/// Below this capacity a shard's map or heap is never shrunk.
const MIN_SHRINK_CAPACITY: usize = 1024;

/// An in-memory [`SessionStore`]: bounded, concurrent, and cheap to clone.
///
/// This is the default store. Sessions do not survive a restart and are not
/// shared between processes; use a database-backed store for that.
///
/// - **Cheap handle.** `MemoryStore` is an [`Arc`] inside: clone it to keep a
///   handle (for tests or an admin endpoint) while the layer holds another.
///   All clones share the same records.
/// - **Bounded.** The store holds at most [`capacity`](Self::capacity)
///   records ([`DEFAULT_CAPACITY`](Self::DEFAULT_CAPACITY) unless set with
///   [`with_capacity`](Self::with_capacity)). When it is full, a new session
///   first makes room by removing expired records; if none have expired,
///   [`create`](SessionStore::create) fails with [`ErrorKind::Capacity`]. A
///   live session is never evicted to make room. A
///   [`rotate`](SessionStore::rotate) that leaves a retired record under the
///   old id adds a record (the old id keeps its slot and the new id takes
///   one), so it counts against the capacity like a new session: a full
///   store first makes room from expired records, and if none have expired
///   the rotation fails with [`ErrorKind::Capacity`] and writes nothing.
///   The retired record is short-lived, but letting it past the bound would
///   let a burst of sign-ins grow the store past it. A rotation without a
///   retired record moves the record and never needs room.
/// - **Expiry.** [`load`](SessionStore::load) never returns a record past its
///   `expires_at`. Expired records are removed a few at a time as sessions are
///   written, without scanning the store.
/// - **Precision.** `created_at` and `expires_at` are kept in whole
///   milliseconds since the Unix epoch, rounded down; times before the epoch
///   read back as the epoch.
/// - **Concurrency.** Records are spread over 64 independently locked shards.
///   [`rotate`](SessionStore::rotate) is atomic: it checks the old record,
///   stores the new one and replaces the old one with the retired record
///   (or removes it) under the locks of both ids' shards. A retired record
///   is scheduled for expiry like any other.
///
/// The shards are keyed by the id's own bytes, which is sound because the
/// layer generates every id from the OS CSPRNG and verifies a cookie's
/// signature before an id reaches the store. Code that calls the store
/// directly with ids it did not generate (for example from
/// [`Id::from_bytes`] on attacker-chosen input) could crowd one shard and
/// slow it down, never corrupt it.
///
/// # Example
///
/// ```
/// use std::time::{Duration, SystemTime};
///
/// use session_layer::{Created, Id, MemoryStore, Record, SessionStore};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), session_layer::Error> {
/// let store = MemoryStore::with_capacity(10_000);
/// let handle = store.clone(); // e.g. give `store` to the layer
///
/// let now = SystemTime::now();
/// let record = Record {
///     id: Id::generate()?,
///     version: 1,
///     data: b"{}"[..].into(),
///     created_at: now,
///     expires_at: now + Duration::from_secs(3600),
/// };
/// assert_eq!(store.create(&record).await?, Created::Created);
///
/// let loaded = handle.load(&record.id).await?.expect("the record is live");
/// assert_eq!(loaded.data, record.data);
/// assert_eq!(handle.len(), 1);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// Always exactly [`SHARDS`] long.
    shards: Box<[Mutex<Shard>]>,
    /// Records in all shards, expired or not. A slot is reserved (never
    /// past `capacity`) before a record is inserted and released after one
    /// is removed, both under the shard's lock, so the count is never below
    /// the records held. The maps are ordered by their mutexes; the counter
    /// needs atomicity only, so `Relaxed` is enough.
    len: AtomicUsize,
    capacity: usize,
}

/// One lock's worth of records.
#[derive(Default)]
struct Shard {
    map: HashMap<Key, Slot, BuildHasherDefault<IdHasher>>,
    /// Expiry schedule. Invariant: every record in `map` has an entry whose
    /// deadline is no later than the record's `expires_ms`; entries of
    /// deleted records stay until they pop or the heap is rebuilt.
    heap: BinaryHeap<Reverse<(u64, Key)>>,
}

/// A stored record without its id (the map key): 40 bytes plus the data,
/// which is shared with the layer's copy, not copied in or out.
struct Slot {
    version: u64,
    created_ms: u64,
    expires_ms: u64,
    data: Arc<[u8]>,
}

/// The raw id bytes, hashed by [`IdHasher`].
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Key([u8; ID_LEN]);

/// Hashes a [`Key`] to its first eight bytes.
///
/// A session id is 16 uniformly random bytes from the OS CSPRNG, and the
/// layer only hands the store ids it generated itself or found in a cookie
/// whose HMAC it verified, so a client cannot pick ids that collide. Any eight
/// of the bytes are then already a uniform 64-bit hash, and running them
/// through SipHash would only cost time. The shard is picked from byte 8,
/// which this hash does not use, so the records of one shard still spread over
/// all of its map's buckets.
#[derive(Default)]
struct IdHasher(u64);

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash_bits());
    }
}

impl Key {
    fn hash_bits(&self) -> u64 {
        let [a, b, c, d, e, f, g, h, ..] = self.0;
        u64::from_le_bytes([a, b, c, d, e, f, g, h])
    }

    fn shard_index(&self) -> usize {
        let [.., shard_byte, _, _, _, _, _, _, _] = self.0;
        usize::from(shard_byte) & (SHARDS - 1)
    }
}

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        // Not reached through `Key`, which calls `write_u64`; kept correct
        // for any other input all the same.
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl MemoryStore {
    /// The number of records a store holds unless told otherwise: 100 000.
    pub const DEFAULT_CAPACITY: usize = 100_000;

    /// Creates an empty store that holds up to
    /// [`DEFAULT_CAPACITY`](Self::DEFAULT_CAPACITY) records.
    pub fn new() -> Self {
        Self::with_capacity(Self::DEFAULT_CAPACITY)
    }

    /// Creates an empty store that holds up to `capacity` records.
    ///
    /// This is a limit, not a preallocation: memory grows with the records
    /// actually stored. A capacity of `0` refuses every session.
    pub fn with_capacity(capacity: usize) -> Self {
        let shards = (0..SHARDS).map(|_| Mutex::default()).collect();
        Self {
            inner: Arc::new(Inner {
                shards,
                len: AtomicUsize::new(0),
                capacity,
            }),
        }
    }

    /// Returns the most records this store holds.
    pub fn capacity(&self) -> usize {
        self.inner.capacity
    }

    /// Returns the number of records held, counting expired records that
    /// have not been removed yet.
    pub fn len(&self) -> usize {
        self.inner.len.load(Ordering::Relaxed)
    }

    /// Returns `true` if the store holds no records.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("len", &self.len())
            .field("capacity", &self.capacity())
            .finish_non_exhaustive()
    }
}

impl Inner {
    /// Returns the shard that holds `key`.
    fn shard(&self, key: &Key) -> &Mutex<Shard> {
        // `shard_index` masks with `SHARDS - 1` and `shards` has `SHARDS`
        // entries, so the index is always in bounds.
        #[allow(clippy::indexing_slicing)]
        &self.shards[key.shard_index()]
    }

    /// Takes one more slot if the store is not full.
    fn try_reserve(&self) -> bool {
        self.len
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |len| {
                (len < self.capacity).then_some(len + 1)
            })
            .is_ok()
    }

    /// Removes every record whose deadline has passed, shard by shard,
    /// popping only due heap entries.
    fn purge_all(&self, now: u64) {
        for shard in &*self.shards {
            lock(shard).purge(now, usize::MAX, &self.len);
        }
    }

    fn load(&self, key: Key, now: u64) -> Option<Record> {
        let mut shard = lock(self.shard(&key));
        let slot = shard.map.get(&key)?;
        if slot.expires_ms > now {
            return Some(slot.to_record(key));
        }
        let expired = shard.remove(&key, &self.len);
        drop(shard);
        drop(expired);
        None
    }

    fn create(&self, key: Key, new: Slot, now: u64) -> Result<Created, Error> {
        let mut purged_all = false;
        loop {
            let mut shard = lock(self.shard(&key));
            shard.purge(now, PURGE_BUDGET, &self.len);
            match shard.map.entry(key) {
                MapEntry::Occupied(occupied) if occupied.get().expires_ms > now => {
                    return Ok(Created::IdTaken);
                }
                // An expired record is as good as absent: take its place. Its
                // heap entry is due already, so the new record needs an entry
                // only if its deadline is earlier still.
                MapEntry::Occupied(mut occupied) => {
                    let earlier = new.expires_ms < occupied.get().expires_ms;
                    let expires_ms = new.expires_ms;
                    let old = occupied.insert(new);
                    if earlier {
                        shard.schedule(expires_ms, key);
                    }
                    drop(shard);
                    drop(old);
                    return Ok(Created::Created);
                }
                MapEntry::Vacant(vacant) if self.try_reserve() => {
                    let expires_ms = new.expires_ms;
                    vacant.insert(new);
                    shard.schedule(expires_ms, key);
                    return Ok(Created::Created);
                }
                MapEntry::Vacant(_) => {}
            }
            // Full. Make room from expired records in every shard once, with
            // this shard unlocked so that shards are only ever locked one at
            // a time (or in index order, by `rotate`).
            drop(shard);
            if purged_all {
                return Err(Error::message(
                    ErrorKind::Capacity,
                    "every record in the memory store is live",
                ));
            }
            self.purge_all(now);
            purged_all = true;
        }
    }

    fn update(&self, key: Key, new: Slot, expected: u64, now: u64) -> Updated {
        let mut shard = lock(self.shard(&key));
        shard.purge(now, PURGE_BUDGET, &self.len);
        let Some(slot) = shard.map.get_mut(&key) else {
            return Updated::Stale;
        };
        if slot.expires_ms <= now || slot.version != expected {
            return Updated::Stale;
        }
        let earlier = new.expires_ms < slot.expires_ms;
        let expires_ms = new.expires_ms;
        let old = std::mem::replace(slot, new);
        // A later deadline reuses the record's heap entry (rescheduled when
        // it pops); only an earlier one needs an entry of its own.
        if earlier {
            shard.schedule(expires_ms, key);
        }
        drop(shard);
        drop(old);
        Updated::Updated
    }

    fn delete(&self, key: Key) {
        let mut shard = lock(self.shard(&key));
        let old = shard.remove(&key, &self.len);
        drop(shard);
        drop(old);
    }

    /// Moves the record under `old_key` to `new_key`, leaving `retired` (or
    /// nothing) under `old_key`.
    ///
    /// With a retired record the store holds one more record than before,
    /// so a full store first makes room from expired records, as `create`
    /// does, and then refuses the rotation with [`ErrorKind::Capacity`].
    fn rotate(
        &self,
        old_key: Key,
        expected: u64,
        new_key: Key,
        mut new: Slot,
        mut retired: Option<Slot>,
        now: u64,
    ) -> Result<Rotated, Error> {
        let mut purged_all = false;
        loop {
            match self.rotate_locked(old_key, expected, new_key, new, retired, now) {
                Ok((outcome, garbage)) => {
                    // Free replaced records after unlocking.
                    drop(garbage);
                    return Ok(outcome);
                }
                Err(Full(taken_new, taken_retired)) => {
                    (new, retired) = (taken_new, Some(taken_retired));
                }
            }
            // As in `create`: every shard is purged with no lock held.
            if purged_all {
                return Err(Error::message(
                    ErrorKind::Capacity,
                    "every record in the memory store is live",
                ));
            }
            self.purge_all(now);
            purged_all = true;
        }
    }

    /// Locks the shards of both ids and runs [`Pair::rotate`].
    fn rotate_locked(
        &self,
        old_key: Key,
        expected: u64,
        new_key: Key,
        new: Slot,
        retired: Option<Slot>,
        now: u64,
    ) -> Result<(Rotated, [Option<Slot>; 2]), Full> {
        let (old_index, new_index) = (old_key.shard_index(), new_key.shard_index());
        let rotation = Rotation {
            old_key,
            expected,
            new_key,
            new,
            retired,
            now,
        };
        // Two shards are locked in index order, so two rotations can never
        // each hold the lock the other one waits for.
        match old_index.cmp(&new_index) {
            std::cmp::Ordering::Equal => {
                let mut shard = lock(self.shard(&old_key));
                Pair::One(&mut shard).rotate(rotation, self)
            }
            std::cmp::Ordering::Less => {
                let mut old_shard = lock(self.shard(&old_key));
                let mut new_shard = lock(self.shard(&new_key));
                Pair::Two(&mut old_shard, &mut new_shard).rotate(rotation, self)
            }
            std::cmp::Ordering::Greater => {
                let mut new_shard = lock(self.shard(&new_key));
                let mut old_shard = lock(self.shard(&old_key));
                Pair::Two(&mut old_shard, &mut new_shard).rotate(rotation, self)
            }
        }
    }
}

/// The arguments of one rotation.
struct Rotation {
    old_key: Key,
    expected: u64,
    new_key: Key,
    new: Slot,
    retired: Option<Slot>,
    now: u64,
}

/// A rotation with a retired record that found the store full; it hands its
/// records back for another attempt.
struct Full(Slot, Slot);

/// The locked shards of a rotation: the old id's and the new id's, which may
/// be one and the same.
enum Pair<'a> {
    One(&'a mut Shard),
    Two(&'a mut Shard, &'a mut Shard),
}

impl Pair<'_> {
    fn source(&mut self) -> &mut Shard {
        match self {
            Self::One(shard) | Self::Two(shard, _) => shard,
        }
    }

    fn target(&mut self) -> &mut Shard {
        match self {
            Self::One(shard) | Self::Two(_, shard) => shard,
        }
    }

    /// Checks, then moves the record and leaves the retired one (if any) in
    /// its place; returns the outcome and the records it displaced, for the
    /// caller to free after unlocking, or [`Full`] if the store has no slot
    /// for the extra record.
    fn rotate(
        mut self,
        rotation: Rotation,
        inner: &Inner,
    ) -> Result<(Rotated, [Option<Slot>; 2]), Full> {
        let Rotation {
            old_key,
            expected,
            new_key,
            new,
            retired,
            now,
        } = rotation;
        let len = &inner.len;
        match self.source().map.get(&old_key) {
            Some(slot) if slot.expires_ms > now && slot.version == expected => {}
            _ => return Ok((Rotated::Stale, [None, None])),
        }
        // Also covers `new_key == old_key`: the old record is live.
        let target = self.target().map.get(&new_key);
        if target.is_some_and(|slot| slot.expires_ms > now) {
            return Ok((Rotated::IdTaken, [None, None]));
        }
        // Without a retired record the record moves, so the count stays as
        // it is; with one, the old id keeps its slot and the new id needs
        // one more, reserved (never past the capacity) before anything is
        // written. An expired record under the new id gives its slot to the
        // new record either way. Not releasing a slot in between keeps a
        // concurrent `create` from taking it.
        let new_id_vacant = target.is_none();
        let retiring = retired.is_some();
        let retired = match retired {
            // The reservation is taken only when it is needed.
            Some(retired) if new_id_vacant && !inner.try_reserve() => {
                return Err(Full(new, retired));
            }
            retired => retired,
        };
        let source = self.source();
        let old = match retired {
            // In place of the old record, as `update` writes: a later
            // deadline reuses the old record's heap entry (rescheduled when
            // it pops), an earlier one gets an entry of its own.
            Some(retired) => {
                let expires_ms = retired.expires_ms;
                let old = source
                    .map
                    .get_mut(&old_key)
                    .map(|slot| std::mem::replace(slot, retired));
                if old.as_ref().is_some_and(|old| expires_ms < old.expires_ms) {
                    source.schedule(expires_ms, old_key);
                }
                old
            }
            None => {
                let old = source.map.remove(&old_key);
                source.maintain();
                old
            }
        };
        let shard = self.target();
        let expires_ms = new.expires_ms;
        let replaced = match shard.map.entry(new_key) {
            // An expired record under the new id: take its place, as
            // `create` does. Without a retired record, the slot the moved
            // record held is free now.
            MapEntry::Occupied(mut occupied) => {
                let earlier = expires_ms < occupied.get().expires_ms;
                let replaced = occupied.insert(new);
                if !retiring {
                    len.fetch_sub(1, Ordering::Relaxed);
                }
                if earlier {
                    shard.schedule(expires_ms, new_key);
                }
                Some(replaced)
            }
            MapEntry::Vacant(vacant) => {
                vacant.insert(new);
                shard.schedule(expires_ms, new_key);
                None
            }
        };
        Ok((Rotated::Rotated, [old, replaced]))
    }
}

impl Shard {
    /// Adds a heap entry for `key`, due at `expires_ms`.
    fn schedule(&mut self, expires_ms: u64, key: Key) {
        self.heap.push(Reverse((expires_ms, key)));
        self.maintain();
    }

    /// Removes `key`'s record, if any, and returns it so that the caller can
    /// free it after unlocking. Its heap entry stays until it pops.
    fn remove(&mut self, key: &Key, len: &AtomicUsize) -> Option<Slot> {
        let slot = self.map.remove(key)?;
        len.fetch_sub(1, Ordering::Relaxed);
        self.maintain();
        Some(slot)
    }

    /// Pops up to `budget` heap entries that are due at `now`.
    fn purge(&mut self, now: u64, budget: usize, len: &AtomicUsize) {
        let mut removed = false;
        for _ in 0..budget {
            match self.heap.peek() {
                Some(Reverse((deadline, _))) if *deadline <= now => {}
                _ => break,
            }
            let Some(Reverse((_, key))) = self.heap.pop() else {
                break;
            };
            match self.map.get(&key) {
                // The record was deleted: drop its leftover entry.
                None => {}
                // The record was refreshed: reschedule at its deadline,
                // which is after `now`, so this loop will not meet it again.
                Some(slot) if slot.expires_ms > now => {
                    let expires_ms = slot.expires_ms;
                    self.heap.push(Reverse((expires_ms, key)));
                }
                Some(_) => {
                    self.map.remove(&key);
                    len.fetch_sub(1, Ordering::Relaxed);
                    removed = true;
                }
            }
        }
        if removed {
            self.maintain();
        }
    }

    /// Keeps the heap within `2 × records + HEAP_SLACK` entries and gives
    /// memory back after a shard has mostly emptied.
    ///
    /// Entries of deleted records pile up until they pop. Rebuilding costs
    /// one pass over the map, and the next rebuild needs as many new
    /// leftovers again, so the cost per delete stays constant.
    fn maintain(&mut self) {
        let records = self.map.len();
        if self.heap.len() > 2 * records + HEAP_SLACK {
            self.heap = self
                .map
                .iter()
                .map(|(key, slot)| Reverse((slot.expires_ms, *key)))
                .collect();
        }
        // Shrinking rehashes every record, and the next shrink needs the
        // shard to lose half of them again: constant cost per removal.
        if self.map.capacity() > MIN_SHRINK_CAPACITY && records * 4 < self.map.capacity() {
            self.map.shrink_to(records * 2);
        }
        if self.heap.capacity() > MIN_SHRINK_CAPACITY && self.heap.len() * 4 < self.heap.capacity()
        {
            self.heap.shrink_to(self.heap.len() * 2);
        }
    }
}

impl Slot {
    fn from_record(record: &Record) -> Self {
        Self {
            version: record.version,
            created_ms: to_unix_ms(record.created_at),
            expires_ms: to_unix_ms(record.expires_at),
            data: Arc::clone(&record.data),
        }
    }

    fn to_record(&self, key: Key) -> Record {
        Record {
            id: Id::from_bytes(key.0),
            version: self.version,
            data: Arc::clone(&self.data),
            created_at: from_unix_ms(self.created_ms),
            expires_at: from_unix_ms(self.expires_ms),
        }
    }
}

/// Locks a shard. No code panics while holding a shard lock, but if one ever
/// did, the shard's map and heap are each left consistent, so a poisoned lock
/// is taken over rather than failing every later request.
fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

fn now_ms() -> u64 {
    to_unix_ms(SystemTime::now())
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn load(&self, id: &Id) -> Result<Option<Record>, Error> {
        Ok(self.inner.load(Key(*id.as_bytes()), now_ms()))
    }

    async fn create(&self, record: &Record) -> Result<Created, Error> {
        let slot = Slot::from_record(record);
        self.inner
            .create(Key(*record.id.as_bytes()), slot, now_ms())
    }

    async fn update(&self, record: &Record, expected_version: u64) -> Result<Updated, Error> {
        let slot = Slot::from_record(record);
        let key = Key(*record.id.as_bytes());
        Ok(self.inner.update(key, slot, expected_version, now_ms()))
    }

    async fn delete(&self, id: &Id) -> Result<(), Error> {
        self.inner.delete(Key(*id.as_bytes()));
        Ok(())
    }

    async fn rotate(
        &self,
        old: &Id,
        expected_version: u64,
        record: &Record,
        retired: Option<&Record>,
    ) -> Result<Rotated, Error> {
        let slot = Slot::from_record(record);
        let retired = retired.map(Slot::from_record);
        let (old, new) = (Key(*old.as_bytes()), Key(*record.id.as_bytes()));
        self.inner
            .rotate(old, expected_version, new, slot, retired, now_ms())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const T0: u64 = 1_700_000_000_000;

    /// Returns a key in shard `shard`, distinct for each `n`.
    fn key(shard: u8, n: u64) -> Key {
        let mut bytes = [0; ID_LEN];
        for (byte, value) in bytes.iter_mut().zip(n.to_le_bytes()) {
            *byte = value;
        }
        if let Some(byte) = bytes.get_mut(8) {
            *byte = shard;
        }
        Key(bytes)
    }

    fn slot(version: u64, expires_ms: u64) -> Slot {
        Slot {
            version,
            created_ms: T0,
            expires_ms,
            data: Arc::new([1, 2, 3]),
        }
    }

    fn heap_len(store: &MemoryStore, key: &Key) -> usize {
        lock(store.inner.shard(key)).heap.len()
    }

    fn create(store: &MemoryStore, key: Key, expires_ms: u64, now: u64) -> Created {
        store
            .inner
            .create(key, slot(1, expires_ms), now)
            .expect("the store has room")
    }

    #[test]
    fn keys_pick_shards_from_bytes_the_hash_does_not_use() {
        let key = key(3, u64::MAX);
        assert_eq!(key.shard_index(), 3);
        assert_eq!(key.hash_bits(), u64::MAX);
        assert_eq!(Key([0xff; ID_LEN]).shard_index(), SHARDS - 1);
    }

    #[test]
    fn expired_records_are_purged_a_few_at_a_time_per_shard() {
        let store = MemoryStore::new();
        for n in 0..20 {
            assert_eq!(create(&store, key(3, n), T0 + 30, T0), Created::Created);
        }
        for n in 0..5 {
            assert_eq!(create(&store, key(4, n), T0 + 30, T0), Created::Created);
        }
        assert_eq!(store.len(), 25);

        // Each create in shard 3 pops at most `PURGE_BUDGET` due entries,
        // and never touches shard 4.
        let later = T0 + 60;
        assert_eq!(
            create(&store, key(3, 100), later + 60_000, later),
            Created::Created
        );
        assert_eq!(store.len(), 25 - PURGE_BUDGET + 1);
        assert_eq!(
            create(&store, key(3, 101), later + 60_000, later),
            Created::Created
        );
        assert_eq!(store.len(), 25 - 2 * PURGE_BUDGET + 2);
        assert_eq!(
            create(&store, key(3, 102), later + 60_000, later),
            Created::Created
        );
        assert_eq!(store.len(), 5 + 3);
        assert_eq!(heap_len(&store, &key(3, 0)), 3);
        assert_eq!(heap_len(&store, &key(4, 0)), 5);
    }

    #[test]
    fn a_refreshed_record_is_rescheduled_without_a_new_heap_entry() {
        let store = MemoryStore::new();
        let refreshed = key(7, 1);
        assert_eq!(create(&store, refreshed, T0 + 30, T0), Created::Created);
        let outcome = store
            .inner
            .update(refreshed, slot(2, T0 + 60_000), 1, T0 + 10);
        assert_eq!(outcome, Updated::Updated);
        assert_eq!(heap_len(&store, &refreshed), 1);

        // The original deadline passes: the entry pops and is pushed back.
        assert_eq!(
            create(&store, key(7, 2), T0 + 60_000, T0 + 100),
            Created::Created
        );
        assert_eq!(store.len(), 2);
        assert_eq!(heap_len(&store, &refreshed), 2);
        let loaded = store.inner.load(refreshed, T0 + 100).expect("still live");
        assert_eq!(loaded.version, 2);

        // The new deadline passes: the rescheduled entry removes it.
        let end = T0 + 60_001;
        assert_eq!(
            create(&store, key(7, 3), end + 60_000, end),
            Created::Created
        );
        assert_eq!(store.len(), 1);
        assert_eq!(heap_len(&store, &refreshed), 1);
    }

    #[test]
    fn an_earlier_deadline_gets_its_own_heap_entry() {
        let store = MemoryStore::new();
        let shortened = key(9, 1);
        assert_eq!(create(&store, shortened, T0 + 60_000, T0), Created::Created);
        let outcome = store.inner.update(shortened, slot(2, T0 + 30), 1, T0);
        assert_eq!(outcome, Updated::Updated);
        assert_eq!(heap_len(&store, &shortened), 2);
        assert_eq!(
            create(&store, key(9, 2), T0 + 60_000, T0 + 31),
            Created::Created
        );
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn load_hides_and_removes_an_expired_record() {
        let store = MemoryStore::new();
        let key = key(1, 1);
        assert_eq!(create(&store, key, T0 + 30, T0), Created::Created);
        assert!(store.inner.load(key, T0 + 29).is_some());
        assert!(store.inner.load(key, T0 + 30).is_none());
        assert!(store.is_empty());
    }

    #[test]
    fn an_expired_record_does_not_hold_its_id() {
        let store = MemoryStore::new();
        let key = key(1, 1);
        assert_eq!(create(&store, key, T0 + 30, T0), Created::Created);
        assert_eq!(create(&store, key, T0 + 90, T0 + 29), Created::IdTaken);
        assert_eq!(create(&store, key, T0 + 90, T0 + 30), Created::Created);
        assert_eq!(store.len(), 1);
        assert!(store.inner.load(key, T0 + 89).is_some());
    }

    #[test]
    fn a_full_store_refuses_live_sessions_then_purges_every_shard() {
        let store = MemoryStore::with_capacity(3);
        for n in 0..3 {
            assert_eq!(
                create(&store, key(10 + n as u8, n), T0 + 30, T0),
                Created::Created
            );
        }
        let refused = store
            .inner
            .create(key(20, 9), slot(1, T0 + 60_000), T0 + 29)
            .expect_err("the store is full of live records");
        assert_eq!(refused.kind(), ErrorKind::Capacity);
        assert_eq!(store.len(), 3);
        for n in 0..3 {
            assert!(store.inner.load(key(10 + n as u8, n), T0 + 29).is_some());
        }

        // Once they expire, a create in another shard makes room.
        assert_eq!(
            create(&store, key(20, 9), T0 + 60_000, T0 + 30),
            Created::Created
        );
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn a_zero_capacity_store_refuses_everything() {
        let store = MemoryStore::with_capacity(0);
        let refused = store.inner.create(key(0, 0), slot(1, T0 + 30), T0);
        assert_eq!(
            refused.map_err(|error| error.kind()),
            Err(ErrorKind::Capacity)
        );
    }

    #[test]
    fn the_heap_stays_bounded_under_deletes_and_shortened_deadlines() {
        let store = MemoryStore::new();
        let shard = 5;
        for n in 0..100 {
            assert_eq!(
                create(&store, key(shard, n), T0 + 60_000, T0),
                Created::Created
            );
        }
        for n in 100..10_100 {
            assert_eq!(
                create(&store, key(shard, n), T0 + 60_000, T0),
                Created::Created
            );
            store.inner.delete(key(shard, n));
            assert!(heap_len(&store, &key(shard, 0)) <= 2 * 100 + HEAP_SLACK);
        }
        let mut deadline = T0 + 60_000;
        for version in 1..10_000 {
            deadline -= 1;
            let outcome =
                store
                    .inner
                    .update(key(shard, 0), slot(version + 1, deadline), version, T0);
            assert_eq!(outcome, Updated::Updated);
            assert!(heap_len(&store, &key(shard, 0)) <= 2 * 100 + HEAP_SLACK);
        }
        assert_eq!(store.len(), 100);
    }

    #[test]
    fn an_emptied_shard_gives_memory_back() {
        let store = MemoryStore::new();
        for n in 0..10_000 {
            assert_eq!(create(&store, key(2, n), T0 + 30, T0), Created::Created);
        }
        for n in 0..10_000 {
            store.inner.delete(key(2, n));
        }
        let shard = lock(store.inner.shard(&key(2, 0)));
        assert!(shard.map.capacity() <= MIN_SHRINK_CAPACITY);
        assert!(shard.heap.capacity() <= 4 * MIN_SHRINK_CAPACITY);
    }

    fn rotate(
        store: &MemoryStore,
        old: Key,
        expected: u64,
        new: Key,
        moved: Slot,
        retired: Option<Slot>,
        now: u64,
    ) -> Rotated {
        store
            .inner
            .rotate(old, expected, new, moved, retired, now)
            .expect("the store has room")
    }

    #[test]
    fn rotate_keeps_the_count_within_and_across_shards() {
        let store = MemoryStore::new();
        let (a, b, c) = (key(1, 1), key(1, 2), key(2, 3));
        let live = T0 + 60_000;
        assert_eq!(create(&store, a, live, T0), Created::Created);
        let rotated = rotate(&store, a, 1, b, slot(2, live), None, T0);
        assert_eq!(rotated, Rotated::Rotated);
        let rotated = rotate(&store, b, 2, c, slot(3, live), None, T0);
        assert_eq!(rotated, Rotated::Rotated);
        let rotated = rotate(&store, c, 3, a, slot(4, live), None, T0);
        assert_eq!(rotated, Rotated::Rotated);
        assert_eq!(store.len(), 1);
        assert!(store.inner.load(a, T0).is_some());
        assert!(store.inner.load(b, T0).is_none());
        assert!(store.inner.load(c, T0).is_none());

        // Onto itself: the id is taken. Onto an expired record: replaced.
        assert_eq!(
            rotate(&store, a, 4, a, slot(5, live), None, T0),
            Rotated::IdTaken
        );
        assert_eq!(create(&store, c, T0 + 30, T0), Created::Created);
        assert_eq!(store.len(), 2);
        let rotated = rotate(&store, a, 4, c, slot(5, live), None, T0 + 30);
        assert_eq!(rotated, Rotated::Rotated);
        assert_eq!(store.len(), 1);
        assert_eq!(
            store.inner.load(c, T0 + 30).map(|record| record.version),
            Some(5)
        );
    }

    #[test]
    fn a_retired_record_keeps_the_old_slot_within_and_across_shards() {
        let store = MemoryStore::new();
        let (a, b, c) = (key(1, 1), key(2, 2), key(2, 3));
        let live = T0 + 60_000;
        assert_eq!(create(&store, a, live, T0), Created::Created);
        let rotated = rotate(&store, a, 1, b, slot(2, live), Some(slot(2, T0 + 30)), T0);
        assert_eq!(rotated, Rotated::Rotated);
        assert_eq!(store.len(), 2);
        let rotated = rotate(&store, b, 2, c, slot(3, live), Some(slot(3, T0 + 40)), T0);
        assert_eq!(rotated, Rotated::Rotated);
        assert_eq!(store.len(), 3);
        let retired = store.inner.load(a, T0).expect("the retired record");
        assert_eq!(retired.version, 2);
        assert_eq!(
            store.inner.load(b, T0).map(|record| record.version),
            Some(3)
        );
        assert_eq!(
            store.inner.load(c, T0).map(|record| record.version),
            Some(3)
        );

        // Onto an expired record: it gives its slot to the new record.
        let d = key(3, 4);
        assert_eq!(create(&store, d, T0 + 20, T0), Created::Created);
        assert_eq!(store.len(), 4);
        let rotated = rotate(&store, c, 3, d, slot(4, live), Some(slot(4, live)), T0 + 20);
        assert_eq!(rotated, Rotated::Rotated);
        assert_eq!(store.len(), 4);
        assert_eq!(
            store.inner.load(d, T0 + 20).map(|record| record.version),
            Some(4)
        );
        assert_eq!(
            store.inner.load(c, T0 + 20).map(|record| record.version),
            Some(4)
        );
    }

    #[test]
    fn a_retired_record_is_scheduled_for_expiry() {
        let store = MemoryStore::new();
        let (old, new) = (key(1, 1), key(2, 2));
        let live = T0 + 60_000;
        assert_eq!(create(&store, old, live, T0), Created::Created);
        assert_eq!(heap_len(&store, &old), 1);
        // Earlier than the old record's deadline: an entry of its own.
        let rotated = rotate(
            &store,
            old,
            1,
            new,
            slot(2, live),
            Some(slot(2, T0 + 30)),
            T0,
        );
        assert_eq!(rotated, Rotated::Rotated);
        assert_eq!(heap_len(&store, &old), 2);
        assert_eq!(store.len(), 2);

        // Its deadline passes: a create in its shard removes it, with no
        // load of the old id and no scan.
        assert_eq!(create(&store, key(1, 9), live, T0 + 30), Created::Created);
        assert_eq!(store.len(), 2);
        assert!(!lock(store.inner.shard(&old)).map.contains_key(&old));

        // Later than the old record's deadline: the old entry is rescheduled
        // when it pops, and then removes the retired record.
        let (old, new) = (key(5, 1), key(6, 2));
        assert_eq!(create(&store, old, T0 + 30, T0), Created::Created);
        let rotated = rotate(
            &store,
            old,
            1,
            new,
            slot(2, live),
            Some(slot(2, T0 + 90)),
            T0,
        );
        assert_eq!(rotated, Rotated::Rotated);
        assert_eq!(heap_len(&store, &old), 1);
        assert_eq!(create(&store, key(5, 9), live, T0 + 60), Created::Created);
        assert!(store.inner.load(old, T0 + 60).is_some(), "still live");
        assert_eq!(heap_len(&store, &old), 2);
        assert_eq!(create(&store, key(5, 10), live, T0 + 90), Created::Created);
        assert!(!lock(store.inner.shard(&old)).map.contains_key(&old));
        assert_eq!(store.len(), 5);
    }

    #[test]
    fn a_full_store_refuses_a_rotation_that_retires_and_writes_nothing() {
        let store = MemoryStore::with_capacity(2);
        let (a, b, x) = (key(1, 1), key(2, 2), key(3, 3));
        let live = T0 + 60_000;
        assert_eq!(create(&store, a, live, T0), Created::Created);
        assert_eq!(create(&store, x, live, T0), Created::Created);
        let refused = store
            .inner
            .rotate(a, 1, b, slot(2, live), Some(slot(2, live)), T0)
            .expect_err("the store is full of live records");
        assert_eq!(refused.kind(), ErrorKind::Capacity);
        assert_eq!(store.len(), 2);
        assert_eq!(
            store.inner.load(a, T0).map(|record| record.version),
            Some(1)
        );
        assert!(store.inner.load(b, T0).is_none());

        // Stale and taken ids are answered as such, full or not.
        let stale = store
            .inner
            .rotate(a, 7, b, slot(2, live), Some(slot(2, live)), T0);
        assert_eq!(stale.map_err(|error| error.kind()), Ok(Rotated::Stale));
        let taken = store
            .inner
            .rotate(a, 1, x, slot(2, live), Some(slot(2, live)), T0);
        assert_eq!(taken.map_err(|error| error.kind()), Ok(Rotated::IdTaken));

        // Without a retired record, the record moves and needs no room.
        assert_eq!(
            rotate(&store, a, 1, b, slot(2, live), None, T0),
            Rotated::Rotated
        );
        assert_eq!(store.len(), 2);

        // Once a record expires, the rotation makes room from it.
        assert_eq!(
            store.inner.update(x, slot(2, T0 + 30), 1, T0),
            Updated::Updated
        );
        let c = key(4, 4);
        let rotated = rotate(&store, b, 2, c, slot(3, live), Some(slot(3, live)), T0 + 30);
        assert_eq!(rotated, Rotated::Rotated);
        assert_eq!(store.len(), 2);
        assert!(store.inner.load(b, T0 + 30).is_some());
        assert!(store.inner.load(c, T0 + 30).is_some());
    }

    #[test]
    fn debug_shows_counts_only() {
        let store = MemoryStore::with_capacity(7);
        assert_eq!(
            format!("{store:?}"),
            "MemoryStore { len: 0, capacity: 7, .. }"
        );
    }

    #[tokio::test]
    async fn expired_records_leave_as_sessions_are_created() {
        let store = MemoryStore::new();
        let short = SystemTime::now() + Duration::from_millis(30);
        for n in 0..4 {
            let record = Record {
                id: Id::from_bytes(key(6, n).0),
                version: 1,
                data: vec![0; 8].into(),
                created_at: SystemTime::now(),
                expires_at: short,
            };
            assert_eq!(store.create(&record).await.expect("room"), Created::Created);
        }
        assert_eq!(store.len(), 4);
        tokio::time::sleep(Duration::from_millis(60)).await;

        let long = SystemTime::now() + Duration::from_secs(60);
        let record = Record {
            id: Id::from_bytes(key(6, 99).0),
            version: 1,
            data: Vec::new().into(),
            created_at: SystemTime::now(),
            expires_at: long,
        };
        assert_eq!(store.create(&record).await.expect("room"), Created::Created);
        assert_eq!(store.len(), 1);
        let loaded = store.load(&record.id).await.expect("load").expect("live");
        assert_eq!(loaded.expires_at, from_unix_ms(to_unix_ms(long)));
    }
}
