//! The values of one session: the stored JSON object, read in place, with the
//! request's changes on top.
//!
//! Loading a session does not build a tree of values. It checks the record
//! once and notes where each value sits in it; `get` then deserializes the
//! requested value straight from those bytes into the caller's type. Values
//! the request sets or removes are kept apart, and encoding copies every
//! untouched value's bytes as they are. A request that reads one value of a
//! large session therefore allocates nothing per value, and one that changes
//! one value re-encodes only that one.
//!
//! Keys are kept in byte order, as `serde_json`'s map writes them, so a
//! session encodes to the same bytes whether a value was copied or set again
//! to what it was.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use serde::de::{self, DeserializeOwned, DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::error::{Error, ErrorKind};
use crate::id::{ID_LEN, Id};

/// The first byte of an encoded record: the format, the cookie lifetime, and
/// whether the record is the one a rotation left under the old id.
const BROWSER_SESSION: u8 = 0;
const PERSISTENT: u8 = 1;
/// The session moved to a new id; this record, left under the old one for
/// the grace period, keeps the data as it was before the move.
const RETIRED: u8 = 2;
/// With [`RETIRED`], after a renewal at the same privilege: the new id
/// follows the JSON object (16 bytes), so writes can be forwarded to it.
const FORWARDS: u8 = 4;

/// What the first byte of a record says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    /// The cookie lifetime: `true` for persistent.
    pub(crate) persistent: bool,
    /// `Some` for a record a rotation left under the old id.
    pub(crate) retired: Option<Retired>,
}

/// Why a record was left under an old id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retired {
    /// `cycle_id`: privileges changed, nothing is forwarded.
    Cycled,
    /// `renew_id`: same privileges; writes are forwarded to the new id.
    Renewed(Id),
}

impl Header {
    /// Reads the header of `record`.
    ///
    /// # Errors
    ///
    /// Fails with [`ErrorKind::Deserialize`] on an unknown flag byte, or a
    /// record too short for the id it says it carries.
    pub(crate) fn of(record: &[u8]) -> Result<Self, Error> {
        let corrupt = || Error::message(ErrorKind::Deserialize, "corrupt session record");
        let flag = *record.first().ok_or_else(corrupt)?;
        let retired = match flag & !PERSISTENT {
            0 => None,
            RETIRED => Some(Retired::Cycled),
            FORWARDS_RETIRED => {
                let at = record.len().checked_sub(ID_LEN).ok_or_else(corrupt)?;
                let bytes = record.get(at..).and_then(|id| id.try_into().ok());
                Some(Retired::Renewed(Id::from_bytes(bytes.ok_or_else(corrupt)?)))
            }
            _ => return Err(corrupt()),
        };
        Ok(Self {
            persistent: flag & PERSISTENT != 0,
            retired,
        })
    }

    /// Returns where the JSON object of a record with this header ends.
    fn json_end(&self, record: &[u8]) -> usize {
        match self.retired {
            Some(Retired::Renewed(_)) => record.len().saturating_sub(ID_LEN),
            _ => record.len(),
        }
    }
}

const FORWARDS_RETIRED: u8 = RETIRED | FORWARDS;

/// Returns the record a rotation leaves under the old id: `record` (a live
/// record) marked retired, followed by the new id for a renewal.
pub(crate) fn retire(record: &[u8], successor: Option<&Id>) -> Arc<[u8]> {
    let flag = record.first().copied().unwrap_or(BROWSER_SESSION) & PERSISTENT;
    let mut out = Vec::with_capacity(record.len() + ID_LEN);
    out.push(match successor {
        None => flag | RETIRED,
        Some(_) => flag | FORWARDS_RETIRED,
    });
    out.extend_from_slice(record.get(1..).unwrap_or(b"{}"));
    if let Some(id) = successor {
        out.extend_from_slice(id.as_bytes());
    }
    out.into()
}

/// Room beyond the previous encoding's length that a new encoding starts
/// with, so that a session that grows a little needs no reallocation.
const ENCODE_HEADROOM: usize = 64;

/// A session's values.
#[derive(Default)]
pub(crate) struct Data {
    /// The record as loaded (a flag byte, then a JSON object), or empty for
    /// a new session. Shared with the store's copy where the store keeps one.
    record: Arc<[u8]>,
    /// Where each value of `record` sits, sorted by key, one entry per key.
    index: Vec<Entry>,
    /// What this request set (`Some`) or removed (`None`), by key.
    changed: BTreeMap<String, Option<Value>>,
    /// `clear` was called: nothing of `record` counts any more.
    cleared: bool,
}

/// One value of the loaded record.
struct Entry {
    key: EntryKey,
    /// The value's JSON text within the record.
    value: Range<usize>,
}

/// A key of the loaded record: its text within the record, or, if the JSON
/// escaped it, the unescaped text.
enum EntryKey {
    InRecord(Range<usize>),
    Unescaped(Box<str>),
}

impl Entry {
    fn key<'a>(&'a self, record: &'a [u8]) -> &'a [u8] {
        match &self.key {
            // The index only holds ranges within the record.
            EntryKey::InRecord(range) => record.get(range.clone()).unwrap_or_default(),
            EntryKey::Unescaped(key) => key.as_bytes(),
        }
    }
}

impl Data {
    /// Checks a stored record and indexes its values; returns them with the
    /// record's [`Header`] (its cookie lifetime, and whether it is retired).
    ///
    /// # Errors
    ///
    /// Fails with [`ErrorKind::Deserialize`] unless the record is a known
    /// flag byte followed by exactly one JSON object.
    pub(crate) fn decode(record: Arc<[u8]>) -> Result<(Self, Header), Error> {
        let header = Header::of(&record)?;
        let json = record.get(1..header.json_end(&record)).unwrap_or_default();
        let mut deserializer = serde_json::Deserializer::from_slice(json);
        // Offsets are taken within the whole record, flag byte included.
        let mut index = deserializer
            .deserialize_map(IndexVisitor { record: &record })
            .and_then(|index| deserializer.end().map(|()| index))
            .map_err(|error| Error::new(ErrorKind::Deserialize, error))?;
        // Records this crate wrote are sorted and have no duplicate keys;
        // for any other, the last value of a key wins, as in a JSON map.
        if !index
            .windows(2)
            .all(|pair| matches!(pair, [a, b] if a.key(&record) < b.key(&record)))
        {
            index.reverse();
            index.sort_by(|a, b| a.key(&record).cmp(b.key(&record)));
            index.dedup_by(|later, earlier| later.key(&record) == earlier.key(&record));
        }
        let data = Self {
            record,
            index,
            changed: BTreeMap::new(),
            cleared: false,
        };
        Ok((data, header))
    }

    /// Returns the record this data was loaded from (empty for a new
    /// session).
    pub(crate) fn record(&self) -> &Arc<[u8]> {
        &self.record
    }

    /// The JSON text of `key`'s value in the loaded record, if it still
    /// counts.
    fn stored(&self, key: &str) -> Option<&[u8]> {
        if self.cleared {
            return None;
        }
        let position = self
            .index
            .binary_search_by(|entry| entry.key(&self.record).cmp(key.as_bytes()))
            .ok()?;
        let entry = self.index.get(position)?;
        Some(self.slice(&entry.value))
    }

    /// Returns the value of `key` as a `T`.
    ///
    /// # Errors
    ///
    /// Fails with [`ErrorKind::Deserialize`] if the value is not a `T`.
    pub(crate) fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, Error> {
        let decoded = match self.changed.get(key) {
            Some(Some(value)) => T::deserialize(value),
            Some(None) => return Ok(None),
            None => match self.stored(key) {
                Some(json) => serde_json::from_slice(json),
                None => return Ok(None),
            },
        };
        decoded
            .map(Some)
            .map_err(|error| Error::new(ErrorKind::Deserialize, error))
    }

    /// Returns whether `key` has a value.
    pub(crate) fn contains(&self, key: &str) -> bool {
        match self.changed.get(key) {
            Some(value) => value.is_some(),
            None => self.stored(key).is_some(),
        }
    }

    /// Sets `key` to `value`.
    pub(crate) fn set(&mut self, key: &str, value: Value) {
        self.change(key, Some(value));
    }

    /// Removes `key`; returns whether it had a value.
    pub(crate) fn remove(&mut self, key: &str) -> bool {
        let existed = self.contains(key);
        self.change(key, None);
        existed
    }

    fn change(&mut self, key: &str, value: Option<Value>) {
        match self.changed.get_mut(key) {
            Some(slot) => *slot = value,
            None => {
                self.changed.insert(key.to_owned(), value);
            }
        }
    }

    /// Removes every value.
    pub(crate) fn clear(&mut self) {
        self.changed.clear();
        self.cleared = true;
    }

    /// Returns the number of values.
    pub(crate) fn len(&self) -> usize {
        let mut len = 0;
        let counted = self.merge(|_| {
            len += 1;
            Ok(())
        });
        counted.map_or(0, |()| len)
    }

    /// Returns whether there are no values.
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Encodes the values and the cookie lifetime as a record: one flag byte,
    /// then a JSON object. Untouched values keep their bytes.
    ///
    /// # Errors
    ///
    /// Fails with [`ErrorKind::Serialize`] if a value cannot be written.
    pub(crate) fn encode(&self, persistent: bool) -> Result<Arc<[u8]>, Error> {
        let mut out = Vec::with_capacity(self.record.len().saturating_add(ENCODE_HEADROOM));
        out.push(if persistent {
            PERSISTENT
        } else {
            BROWSER_SESSION
        });
        out.push(b'{');
        let mut first = true;
        let written = self.merge(|item| {
            if !std::mem::take(&mut first) {
                out.push(b',');
            }
            match item {
                Item::Stored(entry) => {
                    match &entry.key {
                        // Not escaped in the record, so these bytes are
                        // already the JSON string's contents.
                        EntryKey::InRecord(range) => {
                            out.push(b'"');
                            out.extend_from_slice(self.slice(range));
                            out.push(b'"');
                        }
                        EntryKey::Unescaped(key) => serde_json::to_writer(&mut out, key)?,
                    }
                    out.push(b':');
                    out.extend_from_slice(self.slice(&entry.value));
                }
                Item::Set(key, value) => {
                    serde_json::to_writer(&mut out, key)?;
                    out.push(b':');
                    serde_json::to_writer(&mut out, value)?;
                }
            }
            Ok(())
        });
        written.map_err(|error| Error::new(ErrorKind::Serialize, error))?;
        out.push(b'}');
        Ok(out.into())
    }

    /// Returns a part of the record; the index only holds ranges within it.
    fn slice(&self, range: &Range<usize>) -> &[u8] {
        self.record.get(range.clone()).unwrap_or_default()
    }

    /// Calls `visit` for every value in key order: the stored one, unless
    /// this request set or removed the key.
    fn merge<'a>(
        &'a self,
        mut visit: impl FnMut(Item<'a>) -> Result<(), serde_json::Error>,
    ) -> Result<(), serde_json::Error> {
        let stored: &[Entry] = if self.cleared { &[] } else { &self.index };
        let mut stored = stored.iter().peekable();
        let mut changed = self.changed.iter().peekable();
        loop {
            let order = match (stored.peek(), changed.peek()) {
                (None, None) => return Ok(()),
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some(entry), Some((key, _))) => entry.key(&self.record).cmp(key.as_bytes()),
            };
            // A key this request changed replaces its stored value.
            if order != Ordering::Greater {
                if let Some(entry) = stored.next() {
                    if order == Ordering::Less {
                        visit(Item::Stored(entry))?;
                        continue;
                    }
                }
            }
            if let Some((key, Some(value))) = changed.next() {
                visit(Item::Set(key, value))?;
            }
        }
    }
}

/// A value, as [`Data::merge`] yields them.
enum Item<'a> {
    /// A value of the loaded record.
    Stored(&'a Entry),
    /// A value this request set.
    Set(&'a str, &'a Value),
}

impl fmt::Debug for Data {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Data").field("len", &self.len()).finish()
    }
}

/// Returns where `part`, borrowed from `record`, sits within it.
fn offset(record: &[u8], part: &str) -> Option<Range<usize>> {
    let start = part.as_ptr().addr().checked_sub(record.as_ptr().addr())?;
    let end = start.checked_add(part.len())?;
    (end <= record.len()).then_some(start..end)
}

/// Reads a JSON object into an index of its keys and values.
struct IndexVisitor<'de> {
    record: &'de [u8],
}

impl<'de> Visitor<'de> for IndexVisitor<'de> {
    type Value = Vec<Entry>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vec<Entry>, A::Error> {
        let mut index = Vec::new();
        while let Some(key) = map.next_key_seed(KeySeed {
            record: self.record,
        })? {
            let value: &'de RawValue = map.next_value()?;
            let value = offset(self.record, value.get())
                .ok_or_else(|| de::Error::custom("a value outside the record"))?;
            index.push(Entry { key, value });
        }
        Ok(index)
    }
}

/// Reads one key: its place in the record if the JSON did not escape it,
/// else its unescaped text.
struct KeySeed<'de> {
    record: &'de [u8],
}

impl<'de> DeserializeSeed<'de> for KeySeed<'de> {
    type Value = EntryKey;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<EntryKey, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'de> {
    type Value = EntryKey;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string key")
    }

    fn visit_borrowed_str<E: de::Error>(self, key: &'de str) -> Result<EntryKey, E> {
        offset(self.record, key)
            .map(EntryKey::InRecord)
            .ok_or_else(|| E::custom("a key outside the record"))
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<EntryKey, E> {
        Ok(EntryKey::Unescaped(key.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(record: &[u8]) -> Data {
        Data::decode(record.into()).expect("a valid record").0
    }

    /// What `serde_json`'s own map makes of the same values: the encoding
    /// this module must match byte for byte.
    fn via_map(flag: u8, values: &[(&str, Value)]) -> Vec<u8> {
        let map: serde_json::Map<String, Value> = values
            .iter()
            .map(|(key, value)| ((*key).to_owned(), value.clone()))
            .collect();
        let mut bytes = vec![flag];
        serde_json::to_writer(&mut bytes, &map).expect("a map serializes");
        bytes
    }

    #[test]
    fn records_round_trip_and_corruption_is_an_error() {
        let record = via_map(PERSISTENT, &[("n", Value::from(3))]);
        let (data, header) = Data::decode(record.clone().into()).expect("decodes");
        assert!(header.persistent);
        assert_eq!(data.get::<u64>("n").expect("a number"), Some(3));
        assert_eq!(*data.encode(true).expect("encodes"), *record);
        for corrupt in [
            &b""[..],
            b"\x07{}",
            b"\x00{",
            b"\x00[1]",
            b"\x00\"s\"",
            b"\x01\xff",
            b"\x00{\"a\":1}{}",
            b"\x00{\"a\":}",
        ] {
            let error = Data::decode(corrupt.into()).expect_err("corrupt");
            assert_eq!(error.kind(), ErrorKind::Deserialize, "{corrupt:?}");
        }
    }

    #[test]
    fn values_are_read_in_place_and_untouched_ones_keep_their_bytes() {
        let values = [
            ("cart", serde_json::json!([{"sku": "a", "qty": 2}])),
            ("n", Value::from(41)),
            ("name", Value::from("Zoë \"the\" admin\n")),
        ];
        let mut data = decoded(&via_map(BROWSER_SESSION, &values));
        assert_eq!(data.len(), 3);
        assert_eq!(
            data.get::<String>("name").expect("a string").as_deref(),
            Some("Zoë \"the\" admin\n")
        );
        assert_eq!(data.get::<u64>("missing").expect("nothing"), None);
        let error = data.get::<u64>("name").expect_err("not a number");
        assert_eq!(error.kind(), ErrorKind::Deserialize);

        data.set("n", Value::from(42));
        data.set("a-new-first-key", Value::from(true));
        assert!(data.remove("cart"));
        assert!(!data.remove("cart"));
        assert!(!data.remove("never"));
        assert_eq!(data.get::<u64>("n").expect("a number"), Some(42));
        assert_eq!(data.get::<Value>("cart").expect("nothing"), None);
        assert_eq!(data.len(), 3);
        assert_eq!(
            &*data.encode(false).expect("encodes"),
            via_map(
                BROWSER_SESSION,
                &[
                    ("a-new-first-key", Value::from(true)),
                    ("n", Value::from(42)),
                    ("name", values[2].1.clone()),
                ]
            )
        );
    }

    #[test]
    fn escaped_keys_are_found_and_written_back() {
        let values = [
            ("plain", Value::from(1)),
            ("quote\"key", Value::from(2)),
            ("tab\tkey", Value::from(3)),
        ];
        let record = via_map(BROWSER_SESSION, &values);
        let mut data = decoded(&record);
        assert_eq!(data.get::<u64>("quote\"key").expect("a number"), Some(2));
        assert_eq!(data.get::<u64>("tab\tkey").expect("a number"), Some(3));
        assert_eq!(&*data.encode(false).expect("encodes"), record);
        data.set("tab\tkey", Value::from(30));
        assert_eq!(
            &*data.encode(false).expect("encodes"),
            via_map(
                BROWSER_SESSION,
                &[
                    ("plain", Value::from(1)),
                    ("quote\"key", Value::from(2)),
                    ("tab\tkey", Value::from(30)),
                ]
            )
        );
    }

    #[test]
    fn foreign_records_are_sorted_and_the_last_duplicate_wins() {
        let mut data = decoded(b"\x00{ \"b\" : 2, \"a\":1, \"b\":3 }");
        assert_eq!(data.len(), 2);
        assert_eq!(data.get::<u64>("b").expect("a number"), Some(3));
        assert_eq!(
            &*data.encode(false).expect("encodes"),
            b"\x00{\"a\":1,\"b\":3}"
        );
        data.set("c", Value::from(4));
        assert_eq!(
            &*data.encode(false).expect("encodes"),
            b"\x00{\"a\":1,\"b\":3,\"c\":4}"
        );
    }

    #[test]
    fn clear_drops_the_stored_values_but_not_later_ones() {
        let mut data = decoded(&via_map(BROWSER_SESSION, &[("k", Value::from(1))]));
        data.set("early", Value::from(1));
        data.clear();
        assert!(data.is_empty());
        assert_eq!(data.get::<u64>("k").expect("nothing"), None);
        assert!(!data.contains("early"));
        data.set("late", Value::from(2));
        assert_eq!(data.len(), 1);
        assert_eq!(&*data.encode(false).expect("encodes"), b"\x00{\"late\":2}");
    }

    #[test]
    fn a_new_session_starts_empty() {
        let mut data = Data::default();
        assert!(data.is_empty());
        assert!(data.record().is_empty());
        assert_eq!(&*data.encode(false).expect("encodes"), b"\x00{}");
        data.set("k", Value::from("v"));
        assert_eq!(
            data.get::<Value>("k").expect("json"),
            Some(Value::from("v"))
        );
        assert_eq!(&*data.encode(true).expect("encodes"), b"\x01{\"k\":\"v\"}");
    }

    /// One change a request can make, for the model test.
    #[derive(Debug, Clone)]
    enum Op {
        Set(String, i64),
        Remove(String),
        Clear,
    }

    fn key() -> impl proptest::strategy::Strategy<Value = String> {
        // Few distinct keys, so that changes meet stored keys; quotes,
        // backslashes, control and non-ASCII characters, so that some are
        // escaped in JSON.
        proptest::string::string_regex("[ab\"\\\t\u{e9}\u{1F600}]{0,3}").expect("a valid regex")
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            4 => (key(), any::<i64>()).prop_map(|(key, value)| Op::Set(key, value)),
            2 => key().prop_map(Op::Remove),
            1 => Just(Op::Clear),
        ]
    }

    proptest::proptest! {
        /// Against a `serde_json` map as the model: every read agrees, and the
        /// encoding is the map's own, byte for byte.
        #[test]
        fn behaves_like_a_json_map(
            stored in proptest::collection::btree_map(key(), proptest::prelude::any::<i64>(), 0..6),
            ops in proptest::collection::vec(op(), 0..12),
        ) {
            let mut model: serde_json::Map<String, Value> =
                stored.into_iter().map(|(key, value)| (key, Value::from(value))).collect();
            let mut record = vec![BROWSER_SESSION];
            serde_json::to_writer(&mut record, &model).expect("a map serializes");
            let mut data = decoded(&record);
            for op in ops {
                match op {
                    Op::Set(key, value) => {
                        data.set(&key, Value::from(value));
                        model.insert(key, Value::from(value));
                    }
                    Op::Remove(key) => {
                        proptest::prop_assert_eq!(data.remove(&key), model.remove(&key).is_some());
                    }
                    Op::Clear => {
                        data.clear();
                        model.clear();
                    }
                }
                proptest::prop_assert_eq!(data.len(), model.len());
            }
            for (key, value) in &model {
                proptest::prop_assert_eq!(data.get::<Value>(key).expect("json"), Some(value.clone()));
            }
            let mut expected = vec![BROWSER_SESSION];
            serde_json::to_writer(&mut expected, &model).expect("a map serializes");
            let encoded = data.encode(false).expect("encodes");
            proptest::prop_assert_eq!(&*encoded, &expected[..]);
            // And what it wrote reads back the same.
            let again = decoded(&encoded);
            proptest::prop_assert_eq!(again.len(), model.len());
        }
    }
}
