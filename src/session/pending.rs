//! The change log of a session, and what a finished request hands to saving.
//!
//! Every change made through the handle is kept in order, so that if a
//! concurrent request saved first, the save can reload the newer record and
//! apply this request's changes to it again ([`Edits::rebase`]).

use std::sync::Arc;
use std::time::SystemTime;

use serde_json::Value;

use super::data::Data;
pub(crate) use super::data::{Retired, retire};
use crate::error::Error;
use crate::id::Id;

/// `update`'s closure, erased so it can run again on newer data.
pub(crate) type Reapply = Box<dyn FnMut(Option<&Value>) -> Result<Value, Error> + Send>;

/// A change made through the handle.
pub(crate) enum Change {
    Insert(String, Value),
    Remove(String),
    Update(String, Reapply),
    Clear,
    Persistent(bool),
}

/// The stored record a request's session was loaded from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stored {
    pub(crate) id: Id,
    pub(crate) version: u64,
    pub(crate) created_at: SystemTime,
    pub(crate) expires_at: SystemTime,
    /// The layer's clock when the record was loaded.
    pub(crate) loaded_at: SystemTime,
    /// The cookie lifetime as loaded.
    pub(crate) persistent: bool,
}

/// What a finished request hands to saving, taken out of the session once
/// the response is ready.
pub(crate) struct Pending {
    /// The record the session was loaded from; `None` for a new session, or
    /// one destroyed in this request.
    pub(crate) stored: Option<Stored>,
    /// A record that `destroy` asked to delete.
    pub(crate) delete: Option<Id>,
    /// `destroy` was called while the browser holds a cookie: remove it.
    pub(crate) remove_cookie: bool,
    /// The cookie verified under a fallback key: sign it again.
    pub(crate) reissue: bool,
    /// `cycle_id` or `renew_id` was called.
    pub(crate) rotate: Option<Rotation>,
    /// The session was loaded from the record a rotation left under the id
    /// the request presented.
    pub(crate) retired: Option<Retired>,
    /// What the request did to the data; `None` when the response's status
    /// saves nothing.
    pub(crate) edits: Option<Edits>,
}

/// How a session moves to a new id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rotation {
    /// `cycle_id`: privileges change (sign-in); nothing the old id sends
    /// afterwards is written.
    Cycle,
    /// `renew_id`: same privileges; writes sent with the old id during the
    /// grace period are forwarded to the new one.
    Renew,
}

/// The data as a request leaves it, and the changes that led there.
pub(crate) struct Edits {
    /// The changes in the order they were made.
    log: Vec<Change>,
    /// The request made changes (the log was not empty).
    pub(crate) changed: bool,
    /// The data, encoded; `None` if nothing changed.
    pub(crate) encoded: Option<Arc<[u8]>>,
    /// The record the changes were applied to.
    pub(crate) base: Arc<[u8]>,
    /// The cookie lifetime after the changes.
    pub(crate) persistent: bool,
    /// A new session holds no values (always `false` for a stored one,
    /// whose emptiness nothing depends on).
    pub(crate) empty: bool,
}

impl Edits {
    /// Encodes `data` after `log`, if anything changed or `always`; fails
    /// only if a value cannot be encoded.
    pub(crate) fn new(
        log: Vec<Change>,
        data: &Data,
        persistent: bool,
        always: bool,
        stored: bool,
    ) -> Result<Self, Error> {
        let changed = !log.is_empty();
        let encoded = if changed || always {
            Some(data.encode(persistent)?)
        } else {
            None
        };
        Ok(Self {
            changed,
            log,
            encoded,
            base: Arc::clone(data.record()),
            persistent,
            // Counting the values walks them all: only a new session needs it.
            empty: !stored && data.is_empty(),
        })
    }

    /// Applies the changes again, in order, to `record`, a newer version of
    /// the stored data.
    ///
    /// # Errors
    ///
    /// Fails if `record` does not decode, or a re-run `update` closure's
    /// value cannot be encoded.
    pub(crate) fn rebase(&mut self, record: Arc<[u8]>) -> Result<(), Error> {
        let (mut data, header) = Data::decode(record)?;
        let mut persistent = header.persistent;
        apply(&mut self.log, &mut data, &mut persistent)?;
        self.encoded = Some(data.encode(persistent)?);
        self.base = Arc::clone(data.record());
        self.persistent = persistent;
        Ok(())
    }

    /// Returns whether the encoded data differs from the record it was
    /// applied to.
    pub(crate) fn changes_base(&self) -> bool {
        self.encoded
            .as_ref()
            .is_some_and(|encoded| *encoded != self.base)
    }

    /// Returns the bytes to store: the encoded data, or the base record if
    /// nothing changed.
    pub(crate) fn bytes(&self) -> Arc<[u8]> {
        Arc::clone(self.encoded.as_ref().unwrap_or(&self.base))
    }
}

/// Applies `changes` in order to `data`.
fn apply(changes: &mut [Change], data: &mut Data, persistent: &mut bool) -> Result<(), Error> {
    for change in changes {
        match change {
            Change::Insert(key, value) => data.set(key, value.clone()),
            Change::Remove(key) => {
                data.remove(key);
            }
            Change::Update(key, f) => {
                let value = f(data.get::<Value>(key)?.as_ref())?;
                data.set(key, value);
            }
            Change::Clear => data.clear(),
            Change::Persistent(value) => *persistent = *value,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_reapply_in_order() {
        let (mut data, header) =
            Data::decode(b"\x00{\"gone\":1,\"n\":10}"[..].into()).expect("a valid record");
        let mut persistent = header.persistent;
        let mut changes = vec![
            Change::Update(
                "n".into(),
                Box::new(|value: Option<&Value>| {
                    Ok(Value::from(value.and_then(Value::as_u64).unwrap_or(0) + 1))
                }),
            ),
            Change::Remove("gone".into()),
            Change::Insert("k".into(), Value::from("v")),
            Change::Persistent(true),
        ];
        apply(&mut changes, &mut data, &mut persistent).expect("applies");
        assert_eq!(data.get::<u64>("n").expect("a number"), Some(11));
        assert_eq!(data.get::<u64>("gone").expect("nothing"), None);
        assert_eq!(
            data.get::<String>("k").expect("a string").as_deref(),
            Some("v")
        );
        assert_eq!(
            &*data.encode(persistent).expect("encodes"),
            b"\x01{\"k\":\"v\",\"n\":11}"
        );
    }

    #[test]
    fn a_rebase_that_changes_nothing_is_seen() {
        let insert = || vec![Change::Insert("k".into(), Value::from(1))];
        let data = Data::default();
        let mut edits = Edits::new(insert(), &data, false, false, false).expect("encodes");
        assert!(edits.changes_base());
        // The newer record already holds the value.
        edits
            .rebase(b"\x00{\"k\":1}"[..].into())
            .expect("a valid record");
        assert!(!edits.changes_base());
        edits
            .rebase(b"\x00{\"k\":2}"[..].into())
            .expect("a valid record");
        assert!(edits.changes_base());
        assert_eq!(&*edits.bytes(), b"\x00{\"k\":1}");
    }
}
