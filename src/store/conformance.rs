//! The public conformance suite for [`SessionStore`] implementations.
//!
//! The layer's guarantees (no lost update, no session brought back after
//! logout, expired sessions never adopted) rest on a handful of promises
//! each store makes. This module checks them, one `async fn` per promise.
//! The stores in this crate run it unchanged; run it against yours too.
//!
//! Each check takes the store as `&dyn SessionStore`, uses fresh random ids
//! so that all checks can share one store, and panics with a message naming
//! the check and the broken promise. Times are compared at millisecond
//! precision (within 1 ms), since stores may keep milliseconds only; the
//! checks build their records with whole-millisecond times.
//!
//! # Using it from your store's tests
//!
//! Enable the `conformance` feature in your dev-dependencies, with `tokio`
//! (features `macros` and `rt-multi-thread`) next to it:
//!
//! ```toml
//! [dev-dependencies]
//! session-layer = { version = "0.1", features = ["conformance"] }
//! tokio = { version = "1", features = ["macros", "rt-multi-thread"] }
//! ```
//!
//! Then, in a test file such as `tests/conformance.rs`, invoke
//! [`store_conformance_tests!`](crate::store_conformance_tests) with a
//! closure that returns a future of a fresh store. It expands to one
//! `#[tokio::test]` per check (on a two-worker multi-thread runtime), named
//! after the check, so a failure points at the broken promise:
//!
//! ```
//! use session_layer::MemoryStore;
//!
//! session_layer::store_conformance_tests!(|| async {
//!     // Connect to your backend here; `.await` is allowed.
//!     MemoryStore::default()
//! });
//! # fn main() {}
//! ```
//!
//! To test several stores in one file, invoke the macro once per module.
//! To run the whole suite from one test (or from a custom harness), call
//! [`run_all`]:
//!
//! ```
//! use session_layer::MemoryStore;
//! use session_layer::store::conformance;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! conformance::run_all(&MemoryStore::default()).await;
//! # }
//! ```
//!
//! # What the checks prove
//!
#![doc = crate::__store_conformance_checks!({ crate::__store_conformance_doc_table } {})]
//!
//! The three expiry checks sleep for 1.5 seconds each.
#![allow(clippy::panic, clippy::unwrap_used)]

use std::time::{Duration, SystemTime};

use futures_util::future::join_all;

use crate::id::Id;
use crate::store::time::{from_unix_ms, to_unix_ms};
use crate::store::{Created, Record, Rotated, SessionStore, Updated};

/// Generates one `#[tokio::test]` per conformance check, for the store that
/// `$make_store` makes.
///
/// `$make_store` is called once per test with no arguments and must return
/// a future whose output implements [`SessionStore`]; write it as
/// `|| async { ... }`, so that it may `.await` a connection. The tests run on
/// a multi-thread runtime with two workers, so the calling crate needs
/// `tokio` with the `macros` and `rt-multi-thread` features.
///
/// See the [`conformance`](crate::store::conformance) module for the checks
/// and a full example.
///
/// ```
/// session_layer::store_conformance_tests!(|| async { session_layer::MemoryStore::default() });
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! store_conformance_tests {
    (@tests $make_store:expr; $($check:ident: $promise:literal,)*) => {
        $(
            #[doc = $promise]
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let store = ($make_store)().await;
                $crate::store::conformance::$check(&store).await;
            }
        )*
    };
    ($make_store:expr $(,)?) => {
        $crate::__store_conformance_checks!(
            { $crate::store_conformance_tests }
            { @tests $make_store; }
        );
    };
}

/// The conformance checks, in order, each with the promise it proves: the
/// one list from which the module's table, [`run_all`] and
/// [`store_conformance_tests!`](crate::store_conformance_tests) are made.
///
/// Passes the list, as `name: "promise",` entries, to the macro named in
/// the first group, after the tokens of the second group.
#[doc(hidden)]
#[macro_export]
macro_rules! __store_conformance_checks {
    ({ $($callback:tt)* } { $($before:tt)* }) => {
        $($callback)*! {
            $($before)*
            create_then_load: "a created record loads back with every field equal",
            load_unknown_id: "an id never stored loads as `None`",
            create_existing_id: "create never overwrites: `IdTaken`, stored record unchanged",
            update_current_version: "compare-and-set with the stored version replaces data, version and deadline",
            update_stale_version: "compare-and-set with any other version is `Stale` and writes nothing",
            update_missing_record: "update never creates a record: a session that is gone stays gone",
            delete_then_load: "delete removes the record; deleting a missing id is not an error",
            update_after_delete: "a request that started before logout cannot bring the session back",
            rotate_moves_record: "rotation without a retired record stores the record under the new id and removes the old one",
            rotate_stale_version: "rotation from a stale version is `Stale` and writes nothing, with or without a retired record",
            rotate_to_existing_id: "rotation never overwrites another record: `IdTaken`, both intact, with or without a retired record",
            rotate_deleted_record: "rotation of a logged-out session is `Stale` and creates nothing, with or without a retired record",
            rotate_leaves_the_retired_record: "rotation with a retired record leaves exactly that record under the old id",
            the_old_version_is_stale_after_rotate: "after a rotation the old version is stale; the retired record is updated and deleted like any other",
            rotate_with_retired_is_stale_when_the_old_record_moved: "a write to the old record first makes a rotation with a retired record `Stale`, and the write is kept",
            concurrent_rotations_one_winner: "of many concurrent rotations of one record, exactly one wins",
            concurrent_updates_one_winner: "of many concurrent writes from one version, exactly one wins",
            sequential_updates_count: "a read-then-write loop counts every write",
            concurrent_increments_lose_nothing: "interleaved reload-and-retry writers lose no increment",
            expired_record_not_loaded: "a record is not loaded after its `expires_at`",
            a_retired_record_expires_by_itself: "a retired record is not loaded after its own `expires_at`, and its id is free again",
            update_extends_deadline: "an update that moves `expires_at` keeps the record past its old deadline",
            data_kept_exactly: "data bytes round-trip exactly: binary, empty and 64 KiB",
        }
    };
}

/// Writes the module's table of checks and promises.
#[doc(hidden)]
#[macro_export]
macro_rules! __store_conformance_doc_table {
    ($($check:ident: $promise:literal,)*) => {
        concat!(
            "| check | promise |\n|---|---|\n",
            $("| [`", stringify!($check), "`] | ", $promise, " |\n",)*
        )
    };
}

/// Writes [`run_all`], which awaits every check in turn.
macro_rules! run_all {
    ($($check:ident: $promise:literal,)*) => {
        /// Runs every check, in the order of the table in the module docs.
        ///
        /// Takes about five seconds, most of it in the three expiry checks.
        ///
        /// # Panics
        ///
        /// Panics at the first broken promise, naming the check.
        pub async fn run_all(store: &dyn SessionStore) {
            $($check(store).await;)*
        }
    };
}

crate::__store_conformance_checks!({ run_all } {});

/// Checks that a created record loads back with every field equal.
///
/// # Panics
///
/// Panics if the store breaks the promise or fails.
pub async fn create_then_load(store: &dyn SessionStore) {
    const CHECK: &str = "create_then_load";
    let record = record(CHECK, b"{\"user\":42}".to_vec());
    create(store, &record, CHECK).await;
    let loaded = load(store, &record.id, CHECK).await;
    assert_loaded(loaded.as_ref(), &record, CHECK, "the created record");
}

/// Checks that an id that was never stored loads as `None`.
///
/// # Panics
///
/// Panics if the store breaks the promise or fails.
pub async fn load_unknown_id(store: &dyn SessionStore) {
    const CHECK: &str = "load_unknown_id";
    let loaded = load(store, &new_id(CHECK), CHECK).await;
    assert!(loaded.is_none(), "{CHECK}: an unknown id loaded a record");
}

/// Checks that creating a record under a taken id returns
/// [`Created::IdTaken`] and leaves the stored record unchanged.
///
/// # Panics
///
/// Panics if the store breaks the promise or fails.
pub async fn create_existing_id(store: &dyn SessionStore) {
    const CHECK: &str = "create_existing_id";
    let first = record(CHECK, b"first".to_vec());
    create(store, &first, CHECK).await;
    let second = Record {
        version: 7,
        data: b"second"[..].into(),
        expires_at: first.expires_at + Duration::from_secs(60),
        ..first.clone()
    };
    let outcome = store.create(&second).await;
    assert_eq!(
        ok(outcome, CHECK, "create"),
        Created::IdTaken,
        "{CHECK}: create on a taken id must be refused"
    );
    let loaded = load(store, &first.id, CHECK).await;
    assert_loaded(
        loaded.as_ref(),
        &first,
        CHECK,
        "the first record after a refused create",
    );
}

/// Checks that an update naming the stored version returns
/// [`Updated::Updated`] and replaces the data, version and deadline.
///
/// # Panics
///
/// Panics if the store breaks the promise or fails.
pub async fn update_current_version(store: &dyn SessionStore) {
    const CHECK: &str = "update_current_version";
    let first = record(CHECK, b"before".to_vec());
    create(store, &first, CHECK).await;
    let next = next(&first, b"after".to_vec());
    assert_eq!(
        update(store, &next, first.version, CHECK).await,
        Updated::Updated,
        "{CHECK}: an update with the stored version must succeed"
    );
    let loaded = load(store, &first.id, CHECK).await;
    assert_loaded(loaded.as_ref(), &next, CHECK, "the updated record");
}

/// Checks that an update naming another version returns [`Updated::Stale`]
/// and writes nothing.
///
/// # Panics
///
/// Panics if the store breaks the promise or fails.
pub async fn update_stale_version(store: &dyn SessionStore) {
    const CHECK: &str = "update_stale_version";
    let first = record(CHECK, b"kept".to_vec());
    create(store, &first, CHECK).await;
    let second = next(&first, b"second".to_vec());
    assert_eq!(
        update(store, &second, first.version, CHECK).await,
        Updated::Updated
    );
    for expected in [first.version, second.version + 1, 0, u64::MAX] {
        let stale = Record {
            version: expected.wrapping_add(1),
            ..next(&second, b"lost".to_vec())
        };
        assert_eq!(
            update(store, &stale, expected, CHECK).await,
            Updated::Stale,
            "{CHECK}: an update expecting version {expected} (stored: {}) must be stale",
            second.version
        );
    }
    let loaded = load(store, &first.id, CHECK).await;
    assert_loaded(
        loaded.as_ref(),
        &second,
        CHECK,
        "the record after stale updates",
    );
}

/// Checks that an update of a missing record returns [`Updated::Stale`] and
/// does not create it.
///
/// # Panics
///
/// Panics if the store breaks the promise or fails.
pub async fn update_missing_record(store: &dyn SessionStore) {
    const CHECK: &str = "update_missing_record";
    let missing = record(CHECK, b"ghost".to_vec());
    for expected in [0, 1] {
        assert_eq!(
            update(store, &missing, expected, CHECK).await,
            Updated::Stale,
            "{CHECK}: an update of a missing record must be stale"
        );
    }
    assert!(
        load(store, &missing.id, CHECK).await.is_none(),
        "{CHECK}: an update created a missing record"
    );
}

/// Checks that a deleted record no longer loads, and that deleting a
/// missing id succeeds.
///
/// # Panics
///
/// Panics if the store breaks the promise or fails.
pub async fn delete_then_load(store: &dyn SessionStore) {
    const CHECK: &str = "delete_then_load";
    let record = record(CHECK, b"bye".to_vec());
    create(store, &record, CHECK).await;
    delete(store, &record.id, CHECK).await;
    assert!(
        load(store, &record.id, CHECK).await.is_none(),
        "{CHECK}: a deleted record still loads"
    );
    delete(store, &record.id, CHECK).await;
    delete(store, &new_id(CHECK), CHECK).await;
}

/// Checks that an update after a delete returns [`Updated::Stale`] and does
/// not bring the record back: a request that loaded the session before
/// logout cannot undo the logout.
///
/// # Panics
///
/// Panics if the store breaks the promise or fails.
pub async fn update_after_delete(store: &dyn SessionStore) {
    const CHECK: &str = "update_after_delete";
    let record = record(CHECK, b"logged in".to_vec());
    create(store, &record, CHECK).await;
    delete(store, &record.id, CHECK).await;
    let late = next(&record, b"late write".to_vec());
    assert_eq!(
        update(store, &late, record.version, CHECK).await,
        Updated::Stale,
        "{CHECK}: an update after delete must be stale"
    );
    assert!(
        load(store, &record.id, CHECK).await.is_none(),
        "{CHECK}: an update brought a deleted record back"
    );
}

/// Checks that a rotation without a retired record returns
/// [`Rotated::Rotated`], stores the record under the new id and removes the
/// old id.
///
/// # Panics
///
/// Panics if the store breaks the promise or fails.
pub async fn rotate_moves_record(store: &dyn SessionStore) {
    const CHECK: &str = "rotate_moves_record";
    let old = record(CHECK, b"moving".to_vec());
    create(store, &old, CHECK).await;
    let moved = moved(&old, b"moved", CHECK);
    assert_eq!(
        rotate(store, &old.id, old.version, &moved, None, CHECK).await,
        Rotated::Rotated,
        "{CHECK}: a rotation from the stored version must succeed"
    );
    let loaded = load(store, &moved.id, CHECK).await;
    assert_loaded(
        loaded.as_ref(),
        &moved,
        CHECK,
        "the record under its new id",
    );
    assert!(
        load(store, &old.id, CHECK).await.is_none(),
        "{CHECK}: the old id still loads after a rotation without a retired record"
    );
}

/// Checks that a rotation from a stale version returns [`Rotated::Stale`],
/// with or without a retired record: the old record is intact and the new id
/// absent.
///
/// # Panics
///
/// Panics if the store breaks the promise or fails.
pub async fn rotate_stale_version(store: &dyn SessionStore) {
    const CHECK: &str = "rotate_stale_version";
    for retiring in [false, true] {
        let old = record(CHECK, b"stays".to_vec());
        create(store, &old, CHECK).await;
        let moved = moved(&old, b"moved", CHECK);
        let retired = retiring.then(|| retired(&old, b"retired".to_vec()));
        assert_eq!(
            rotate(
                store,
                &old.id,
                old.version + 1,
                &moved,
                retired.as_ref(),
                CHECK
            )
            .await,
            Rotated::Stale,
            "{CHECK}: a rotation from a stale version must be stale (retired record: {retiring})"
        );
        let loaded = load(store, &old.id, CHECK).await;
        assert_loaded(
            loaded.as_ref(),
            &old,
            CHECK,
            "the old record after a stale rotation",
        );
        assert!(
            load(store, &moved.id, CHECK).await.is_none(),
            "{CHECK}: a stale rotation created the new id (retired record: {retiring})"
        );
    }
}

/// Checks that a rotation onto a taken id returns [`Rotated::IdTaken`], with
/// or without a retired record, and leaves both records intact.
///
/// # Panics
///
/// Panics if the store breaks the promise or fails.
pub async fn rotate_to_existing_id(store: &dyn SessionStore) {
    const CHECK: &str = "rotate_to_existing_id";
    for retiring in [false, true] {
        let old = record(CHECK, b"old".to_vec());
        let other = record(CHECK, b"other".to_vec());
        create(store, &old, CHECK).await;
        create(store, &other, CHECK).await;
        let moved = Record {
            id: other.id,
            ..next(&old, b"moved".to_vec())
        };
        let retired = retiring.then(|| retired(&old, b"retired".to_vec()));
        assert_eq!(
            rotate(store, &old.id, old.version, &moved, retired.as_ref(), CHECK).await,
            Rotated::IdTaken,
            "{CHECK}: a rotation onto a taken id must be refused (retired record: {retiring})"
        );
        let loaded = load(store, &old.id, CHECK).await;
        assert_loaded(
            loaded.as_ref(),
            &old,
            CHECK,
            "the old record after a refused rotation",
        );
        let loaded = load(store, &other.id, CHECK).await;
        assert_loaded(
            loaded.as_ref(),
            &other,
            CHECK,
            "the other record after a refused rotation",
        );
    }
}

/// Checks that a rotation of a deleted record returns [`Rotated::Stale`],
/// with or without a retired record, and creates nothing: a logged-out
/// session cannot come back under a new id, nor as a retired record under
/// its old one.
///
/// # Panics
///
/// Panics if the store breaks the promise or fails.
pub async fn rotate_deleted_record(store: &dyn SessionStore) {
    const CHECK: &str = "rotate_deleted_record";
    for retiring in [false, true] {
        let old = record(CHECK, b"logged out".to_vec());
        create(store, &old, CHECK).await;
        delete(store, &old.id, CHECK).await;
        let moved = moved(&old, b"moved", CHECK);
        let retired = retiring.then(|| retired(&old, b"retired".to_vec()));
        assert_eq!(
            rotate(store, &old.id, old.version, &moved, retired.as_ref(), CHECK).await,
            Rotated::Stale,
            "{CHECK}: a rotation of a deleted record must be stale (retired record: {retiring})"
        );
        assert!(
            load(store, &moved.id, CHECK).await.is_none(),
            "{CHECK}: a rotation of a deleted record created the new id (retired record: {retiring})"
        );
        assert!(
            load(store, &old.id, CHECK).await.is_none(),
            "{CHECK}: a rotation brought the deleted record back (retired record: {retiring})"
        );
    }
}

/// Checks that a rotation with a retired record returns
/// [`Rotated::Rotated`], stores the record under the new id, and leaves
/// exactly the retired record (version, data and times) under the old id.
///
/// # Panics
///
/// Panics if the store breaks the promise or fails.
pub async fn rotate_leaves_the_retired_record(store: &dyn SessionStore) {
    const CHECK: &str = "rotate_leaves_the_retired_record";
    let old = record(CHECK, b"signing in".to_vec());
    create(store, &old, CHECK).await;
    let moved = moved(&old, b"signed in", CHECK);
    // Times unlike the old record's, so a store that keeps those is caught.
    let retired = Record {
        created_at: old.created_at + Duration::from_millis(7),
        expires_at: now() + Duration::from_secs(60),
        ..retired(&old, b"\0retired: moved on".to_vec())
    };
    assert_eq!(
        rotate(store, &old.id, old.version, &moved, Some(&retired), CHECK).await,
        Rotated::Rotated,
        "{CHECK}: a rotation from the stored version must succeed"
    );
    let loaded = load(store, &moved.id, CHECK).await;
    assert_loaded(
        loaded.as_ref(),
        &moved,
        CHECK,
        "the record under its new id",
    );
    let loaded = load(store, &old.id, CHECK).await;
    assert_loaded(
        loaded.as_ref(),
        &retired,
        CHECK,
        "the retired record under the old id",
    );
}

/// Checks that after a rotation with a retired record, an update of the old
/// id from the old version is [`Updated::Stale`], while an update from the
/// retired record's version succeeds and a delete removes it: a retired
/// record is an ordinary record.
///
/// # Panics
///
/// Panics if the store breaks the promise or fails.
pub async fn the_old_version_is_stale_after_rotate(store: &dyn SessionStore) {
    const CHECK: &str = "the_old_version_is_stale_after_rotate";
    let old = record(CHECK, b"before".to_vec());
    create(store, &old, CHECK).await;
    let moved = moved(&old, b"after", CHECK);
    let retired = retired(&old, b"retired".to_vec());
    assert_eq!(
        rotate(store, &old.id, old.version, &moved, Some(&retired), CHECK).await,
        Rotated::Rotated
    );
    // A request that loaded the old record before the rotation writes back.
    let late = next(&old, b"late write".to_vec());
    assert_eq!(
        update(store, &late, old.version, CHECK).await,
        Updated::Stale,
        "{CHECK}: an update of the old id from the version before the rotation must be stale"
    );
    let loaded = load(store, &old.id, CHECK).await;
    assert_loaded(
        loaded.as_ref(),
        &retired,
        CHECK,
        "the retired record after a stale update",
    );
    let rewritten = next(&retired, b"retired, rewritten".to_vec());
    assert_eq!(
        update(store, &rewritten, retired.version, CHECK).await,
        Updated::Updated,
        "{CHECK}: an update of the retired record from its own version must succeed"
    );
    let loaded = load(store, &old.id, CHECK).await;
    assert_loaded(
        loaded.as_ref(),
        &rewritten,
        CHECK,
        "the retired record after an update",
    );
    delete(store, &old.id, CHECK).await;
    assert!(
        load(store, &old.id, CHECK).await.is_none(),
        "{CHECK}: a deleted retired record still loads"
    );
    let loaded = load(store, &moved.id, CHECK).await;
    assert_loaded(
        loaded.as_ref(),
        &moved,
        CHECK,
        "the new record after the retired one was written and deleted",
    );
}

/// Checks that a rotation with a retired record, from a version that a
/// concurrent update has replaced, returns [`Rotated::Stale`]: nothing is
/// stored under the new id and the old record is as the update left it.
///
/// # Panics
///
/// Panics if the store breaks the promise or fails.
pub async fn rotate_with_retired_is_stale_when_the_old_record_moved(store: &dyn SessionStore) {
    const CHECK: &str = "rotate_with_retired_is_stale_when_the_old_record_moved";
    let old = record(CHECK, b"read".to_vec());
    create(store, &old, CHECK).await;
    // Another request's write lands first.
    let written = next(&old, b"written meanwhile".to_vec());
    assert_eq!(
        update(store, &written, old.version, CHECK).await,
        Updated::Updated
    );
    let moved = moved(&old, b"moved", CHECK);
    let retired = retired(&old, b"retired".to_vec());
    assert_eq!(
        rotate(store, &old.id, old.version, &moved, Some(&retired), CHECK).await,
        Rotated::Stale,
        "{CHECK}: a rotation from a version written over must be stale"
    );
    assert!(
        load(store, &moved.id, CHECK).await.is_none(),
        "{CHECK}: a stale rotation left a record under the new id"
    );
    let loaded = load(store, &old.id, CHECK).await;
    assert_loaded(
        loaded.as_ref(),
        &written,
        CHECK,
        "the old record after a stale rotation",
    );
}

/// Checks that of 16 concurrent rotations of one record, each with a
/// retired record and a new id of its own, exactly one succeeds: its new
/// record and its retired record load, and no other new id does.
///
/// # Panics
///
/// Panics if the store breaks the promise or fails.
pub async fn concurrent_rotations_one_winner(store: &dyn SessionStore) {
    const CHECK: &str = "concurrent_rotations_one_winner";
    let old = record(CHECK, b"start".to_vec());
    create(store, &old, CHECK).await;
    let rotations: Vec<(Record, Record)> = (0..16)
        .map(|n| {
            let moved = Record {
                id: new_id(CHECK),
                ..next(&old, format!("rotation {n}").into_bytes())
            };
            (moved, retired(&old, format!("retired by {n}").into_bytes()))
        })
        .collect();
    let outcomes = join_all(
        rotations
            .iter()
            .map(|(moved, retired)| store.rotate(&old.id, old.version, moved, Some(retired))),
    )
    .await;
    let mut winners = Vec::new();
    for ((moved, retired), outcome) in rotations.iter().zip(outcomes) {
        match ok(outcome, CHECK, "rotate") {
            Rotated::Rotated => winners.push((moved, retired)),
            Rotated::Stale => {}
            Rotated::IdTaken => panic!("{CHECK}: a rotation to a fresh id found it taken"),
        }
    }
    let [(moved, retired)] = winners.as_slice() else {
        panic!(
            "{CHECK}: {} of 16 concurrent rotations from one version succeeded, expected exactly 1",
            winners.len()
        );
    };
    let loaded = load(store, &old.id, CHECK).await;
    assert_loaded(
        loaded.as_ref(),
        retired,
        CHECK,
        "the winner's retired record",
    );
    let loaded = load(store, &moved.id, CHECK).await;
    assert_loaded(loaded.as_ref(), moved, CHECK, "the winner's new record");
    for (other, _) in &rotations {
        if other.id != moved.id {
            assert!(
                load(store, &other.id, CHECK).await.is_none(),
                "{CHECK}: a losing rotation left a record under its new id"
            );
        }
    }
}

/// Checks that of 32 concurrent updates expecting the same version, exactly
/// one succeeds, and that its data is what loads.
///
/// # Panics
///
/// Panics if the store breaks the promise or fails.
pub async fn concurrent_updates_one_winner(store: &dyn SessionStore) {
    const CHECK: &str = "concurrent_updates_one_winner";
    let first = record(CHECK, b"start".to_vec());
    create(store, &first, CHECK).await;
    let writers: Vec<Record> = (0..32)
        .map(|writer| next(&first, format!("writer {writer}").into_bytes()))
        .collect();
    let outcomes = join_all(
        writers
            .iter()
            .map(|writer| store.update(writer, first.version)),
    )
    .await;
    let mut winners = Vec::new();
    for (writer, outcome) in writers.iter().zip(outcomes) {
        if ok(outcome, CHECK, "update") == Updated::Updated {
            winners.push(writer);
        }
    }
    let [winner] = winners.as_slice() else {
        panic!(
            "{CHECK}: {} of 32 concurrent updates from one version succeeded, expected exactly 1",
            winners.len()
        );
    };
    let loaded = load(store, &first.id, CHECK).await;
    assert_loaded(loaded.as_ref(), winner, CHECK, "the record after the race");
}

/// Checks that 50 read-then-write increments in a row, each expecting the
/// version it read, all succeed and all count.
///
/// # Panics
///
/// Panics if the store breaks the promise or fails.
pub async fn sequential_updates_count(store: &dyn SessionStore) {
    const CHECK: &str = "sequential_updates_count";
    let first = record(CHECK, b"0".to_vec());
    create(store, &first, CHECK).await;
    for _ in 0..50 {
        let current = load_live(store, &first.id, CHECK).await;
        let incremented = next(
            &current,
            (counter(&current, CHECK) + 1).to_string().into_bytes(),
        );
        assert_eq!(
            update(store, &incremented, current.version, CHECK).await,
            Updated::Updated,
            "{CHECK}: an update from the version just loaded must succeed"
        );
    }
    let last = load_live(store, &first.id, CHECK).await;
    assert_eq!(counter(&last, CHECK), 50, "{CHECK}: increments were lost");
    assert_eq!(
        last.version,
        first.version + 50,
        "{CHECK}: wrong final version"
    );
}

/// Checks that 8 interleaved writers, each incrementing a counter 10 times
/// by reloading and retrying whenever its update is stale (as the layer
/// does), end with the counter at exactly 80.
///
/// The writers yield to each other between load and update, so their
/// writes conflict even on a store that never suspends.
///
/// # Panics
///
/// Panics if the store breaks the promise or fails, or a writer needs more
/// than 1000 attempts for one increment.
pub async fn concurrent_increments_lose_nothing(store: &dyn SessionStore) {
    const CHECK: &str = "concurrent_increments_lose_nothing";
    const WRITERS: u64 = 8;
    const INCREMENTS: u64 = 10;
    let first = record(CHECK, b"0".to_vec());
    create(store, &first, CHECK).await;
    let first = &first;
    let writer = move |_| async move {
        for _ in 0..INCREMENTS {
            let mut attempts = 0;
            loop {
                attempts += 1;
                assert!(
                    attempts <= 1000,
                    "{CHECK}: a writer never got its update in"
                );
                let current = load_live(store, &first.id, CHECK).await;
                tokio::task::yield_now().await;
                let value = counter(&current, CHECK) + 1;
                let incremented = next(&current, value.to_string().into_bytes());
                if update(store, &incremented, current.version, CHECK).await == Updated::Updated {
                    break;
                }
            }
        }
    };
    join_all((0..WRITERS).map(writer)).await;
    let last = load_live(store, &first.id, CHECK).await;
    assert_eq!(
        counter(&last, CHECK),
        WRITERS * INCREMENTS,
        "{CHECK}: concurrent increments were lost"
    );
    assert_eq!(
        last.version,
        first.version + WRITERS * INCREMENTS,
        "{CHECK}: wrong final version"
    );
}

/// Checks that a record loads before its `expires_at` and not after it.
///
/// The record expires one second after it is created; the check sleeps for
/// 1.5 seconds.
///
/// # Panics
///
/// Panics if the store breaks the promise or fails.
pub async fn expired_record_not_loaded(store: &dyn SessionStore) {
    const CHECK: &str = "expired_record_not_loaded";
    let record = Record {
        expires_at: now() + Duration::from_secs(1),
        ..record(CHECK, b"short".to_vec())
    };
    create(store, &record, CHECK).await;
    let loaded = load(store, &record.id, CHECK).await;
    assert_loaded(
        loaded.as_ref(),
        &record,
        CHECK,
        "a record before its deadline",
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        load(store, &record.id, CHECK).await.is_none(),
        "{CHECK}: a record loaded after its expires_at"
    );
}

/// Checks that a retired record left by a rotation loads before its own
/// `expires_at` and not after it (the new record stays), and that its id is
/// then free for a new record, as for any expired record.
///
/// The retired record expires one second after the rotation; the check
/// sleeps for 1.5 seconds.
///
/// # Panics
///
/// Panics if the store breaks the promise or fails.
pub async fn a_retired_record_expires_by_itself(store: &dyn SessionStore) {
    const CHECK: &str = "a_retired_record_expires_by_itself";
    let old = record(CHECK, b"long-lived".to_vec());
    create(store, &old, CHECK).await;
    let moved = moved(&old, b"moved", CHECK);
    let retired = Record {
        expires_at: now() + Duration::from_secs(1),
        ..retired(&old, b"short-lived".to_vec())
    };
    assert_eq!(
        rotate(store, &old.id, old.version, &moved, Some(&retired), CHECK).await,
        Rotated::Rotated
    );
    let loaded = load(store, &old.id, CHECK).await;
    assert_loaded(
        loaded.as_ref(),
        &retired,
        CHECK,
        "a retired record before its deadline",
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        load(store, &old.id, CHECK).await.is_none(),
        "{CHECK}: a retired record loaded after its expires_at"
    );
    let loaded = load(store, &moved.id, CHECK).await;
    assert_loaded(
        loaded.as_ref(),
        &moved,
        CHECK,
        "the new record after the retired one expired",
    );
    let reused = record(CHECK, b"a new session".to_vec());
    let reused = Record {
        id: old.id,
        ..reused
    };
    assert_eq!(
        ok(store.create(&reused).await, CHECK, "create"),
        Created::Created,
        "{CHECK}: an expired retired record still holds its id"
    );
    let loaded = load(store, &old.id, CHECK).await;
    assert_loaded(
        loaded.as_ref(),
        &reused,
        CHECK,
        "a new record in the expired retired record's place",
    );
}

/// Checks that an update moving `expires_at` later keeps the record past its
/// original deadline.
///
/// The record is created to expire in one second and updated to expire in
/// 60 seconds; the check sleeps for 1.5 seconds.
///
/// # Panics
///
/// Panics if the store breaks the promise or fails.
pub async fn update_extends_deadline(store: &dyn SessionStore) {
    const CHECK: &str = "update_extends_deadline";
    let first = Record {
        expires_at: now() + Duration::from_secs(1),
        ..record(CHECK, b"short".to_vec())
    };
    create(store, &first, CHECK).await;
    let extended = Record {
        expires_at: now() + Duration::from_secs(60),
        ..next(&first, b"extended".to_vec())
    };
    assert_eq!(
        update(store, &extended, first.version, CHECK).await,
        Updated::Updated
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let loaded = load(store, &first.id, CHECK).await;
    assert_loaded(
        loaded.as_ref(),
        &extended,
        CHECK,
        "a record past its old deadline",
    );
}

/// Checks that data bytes round-trip exactly through create and update:
/// bytes that are not UTF-8 (including NUL), an empty value, and 64 KiB.
///
/// # Panics
///
/// Panics if the store breaks the promise or fails.
pub async fn data_kept_exactly(store: &dyn SessionStore) {
    const CHECK: &str = "data_kept_exactly";
    let binary = vec![0x00, 0xff, 0xc3, 0x28, 0x80, b'\'', b'"', b'\\', 0x00, 0xfe];
    let large: Vec<u8> = (0..64 * 1024_u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let samples = [binary, Vec::new(), large];
    for data in &samples {
        let created = record(CHECK, data.clone());
        create(store, &created, CHECK).await;
        let loaded = load(store, &created.id, CHECK).await;
        assert_loaded(loaded.as_ref(), &created, CHECK, "a created record's data");
    }
    // The same values written by update, each over a different one.
    let mut current = record(CHECK, b"x".to_vec());
    create(store, &current, CHECK).await;
    for data in samples.iter().chain(samples.iter().rev()) {
        let updated = next(&current, data.clone());
        assert_eq!(
            update(store, &updated, current.version, CHECK).await,
            Updated::Updated
        );
        let loaded = load(store, &current.id, CHECK).await;
        assert_loaded(loaded.as_ref(), &updated, CHECK, "an updated record's data");
        current = updated;
    }
}

/// Returns the current time, rounded down to a whole millisecond.
fn now() -> SystemTime {
    from_unix_ms(to_unix_ms(SystemTime::now()))
}

fn new_id(check: &str) -> Id {
    Id::generate().unwrap_or_else(|error| panic!("{check}: cannot generate an id: {error}"))
}

/// Returns a version-1 record under a fresh id, created now and expiring in
/// an hour.
fn record(check: &str, data: Vec<u8>) -> Record {
    let created_at = now();
    Record {
        id: new_id(check),
        version: 1,
        data: data.into(),
        created_at,
        expires_at: created_at + Duration::from_secs(3600),
    }
}

/// Returns the record a rotation of `old` leaves under its id: the next
/// version, with new data and a deadline in a minute.
fn retired(old: &Record, data: Vec<u8>) -> Record {
    Record {
        expires_at: now() + Duration::from_secs(60),
        ..next(old, data)
    }
}

/// Returns `old`'s next version under a fresh id, holding `data`: what a
/// rotation stores.
fn moved(old: &Record, data: &[u8], check: &str) -> Record {
    Record {
        id: new_id(check),
        ..next(old, data.to_vec())
    }
}

/// Returns the next version of `record` with new data and a later deadline,
/// as the layer writes it.
fn next(record: &Record, data: Vec<u8>) -> Record {
    Record {
        version: record.version + 1,
        data: data.into(),
        expires_at: now() + Duration::from_secs(3600),
        ..record.clone()
    }
}

fn counter(record: &Record, check: &str) -> u64 {
    std::str::from_utf8(&record.data)
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or_else(|| panic!("{check}: the counter's data was corrupted"))
}

fn ok<T>(outcome: Result<T, crate::Error>, check: &str, call: &str) -> T {
    outcome.unwrap_or_else(|error| panic!("{check}: {call} failed: {error} ({error:?})"))
}

async fn load(store: &dyn SessionStore, id: &Id, check: &str) -> Option<Record> {
    ok(store.load(id).await, check, "load")
}

async fn load_live(store: &dyn SessionStore, id: &Id, check: &str) -> Record {
    load(store, id, check)
        .await
        .unwrap_or_else(|| panic!("{check}: a live record did not load"))
}

async fn create(store: &dyn SessionStore, record: &Record, check: &str) {
    let outcome = ok(store.create(record).await, check, "create");
    assert_eq!(
        outcome,
        Created::Created,
        "{check}: create under a fresh id must succeed"
    );
}

async fn update(store: &dyn SessionStore, record: &Record, expected: u64, check: &str) -> Updated {
    ok(store.update(record, expected).await, check, "update")
}

async fn delete(store: &dyn SessionStore, id: &Id, check: &str) {
    ok(store.delete(id).await, check, "delete");
}

async fn rotate(
    store: &dyn SessionStore,
    old: &Id,
    expected: u64,
    record: &Record,
    retired: Option<&Record>,
    check: &str,
) -> Rotated {
    ok(
        store.rotate(old, expected, record, retired).await,
        check,
        "rotate",
    )
}

/// Asserts that `loaded` is `expected`, with times compared to within 1 ms.
fn assert_loaded(loaded: Option<&Record>, expected: &Record, check: &str, what: &str) {
    let Some(loaded) = loaded else {
        panic!("{check}: {what} did not load");
    };
    assert!(loaded.id == expected.id, "{check}: {what} has the wrong id");
    assert_eq!(
        loaded.version, expected.version,
        "{check}: {what} has the wrong version"
    );
    assert!(
        loaded.data == expected.data,
        "{check}: {what} has different data ({} bytes, expected {})",
        loaded.data.len(),
        expected.data.len()
    );
    assert_close(
        loaded.created_at,
        expected.created_at,
        check,
        what,
        "created_at",
    );
    assert_close(
        loaded.expires_at,
        expected.expires_at,
        check,
        what,
        "expires_at",
    );
}

fn assert_close(loaded: SystemTime, expected: SystemTime, check: &str, what: &str, field: &str) {
    let difference = loaded
        .duration_since(expected)
        .or_else(|_| expected.duration_since(loaded))
        .unwrap_or(Duration::MAX);
    assert!(
        difference < Duration::from_millis(1),
        "{check}: {what} has {field} off by {difference:?}"
    );
}
