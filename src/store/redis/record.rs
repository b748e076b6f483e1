//! The value stored under a session key.
//!
//! ```text
//! offset  size  field
//!      0     4  format tag: b"sl\0\x01" (session-layer record, layout 1)
//!      4     8  version, big-endian u64
//!     12     8  created_at, big-endian u64, milliseconds since the Unix epoch
//!     20     8  expires_at, big-endian u64, milliseconds since the Unix epoch
//!     28     …  data, exactly as the layer gave it
//! ```
//!
//! The first 12 bytes (tag and version) are the record's [`header`]: the
//! compare-and-set scripts compare them with `GETRANGE key 0 11`, so they
//! never read or parse the data. Times are kept in whole milliseconds,
//! rounded down; a time before the epoch is kept as the epoch, and a time
//! too large for the field, or a field too large for a `SystemTime`,
//! saturates.

use std::io::Write;
use std::time::SystemTime;

use crate::error::{Error, ErrorKind};
use crate::id::Id;
use crate::store::Record;
use crate::store::time::{from_unix_ms, to_unix_ms};

/// Marks a value as a session record in layout 1. The NUL byte keeps it
/// apart from any text or JSON another program might leave under the key.
const TAG: [u8; 4] = *b"sl\0\x01";

/// The length of [`header`]: tag and version.
const HEADER_LEN: usize = 12;

/// The length of everything before the data.
const PREFIX_LEN: usize = 28;

/// Returns the bytes a record of `version` starts with.
pub(super) fn header(version: u64) -> [u8; HEADER_LEN] {
    let mut header = [0; HEADER_LEN];
    let (tag, rest) = header.split_at_mut(TAG.len());
    tag.copy_from_slice(&TAG);
    rest.copy_from_slice(&version.to_be_bytes());
    header
}

/// Returns the length of the value of `record`.
pub(super) fn len(record: &Record) -> usize {
    PREFIX_LEN + record.data.len()
}

/// Writes the value of `record` (its id is the key, not part of the value)
/// to `out`, an in-memory buffer.
pub(super) fn write(record: &Record, out: &mut impl Write) {
    // Writing to memory cannot fail.
    let _ = out.write_all(&header(record.version));
    let _ = out.write_all(&to_unix_ms(record.created_at).to_be_bytes());
    let _ = out.write_all(&to_unix_ms(record.expires_at).to_be_bytes());
    let _ = out.write_all(&record.data);
}

/// Returns the value of `record`.
#[cfg(test)]
fn encode(record: &Record) -> Vec<u8> {
    let mut value = Vec::with_capacity(len(record));
    write(record, &mut value);
    value
}

/// Decodes the value stored under the key of `id`.
///
/// # Errors
///
/// Fails with [`ErrorKind::Deserialize`] if `value` is not a record in
/// this layout.
pub(super) fn decode(id: Id, value: &[u8]) -> Result<Record, Error> {
    let (Some(tag), Some(version), Some(created), Some(expires), Some(data)) = (
        value.get(..4),
        read_u64(value, 4),
        read_u64(value, 12),
        read_u64(value, 20),
        value.get(PREFIX_LEN..),
    ) else {
        return Err(foreign());
    };
    if tag != TAG {
        return Err(foreign());
    }
    Ok(Record {
        id,
        version,
        data: data.into(),
        created_at: from_unix_ms(created),
        expires_at: from_unix_ms(expires),
    })
}

/// Returns the error for a value that is not a session record.
pub(super) fn foreign() -> Error {
    Error::message(
        ErrorKind::Deserialize,
        "the value under a redis session key is not a session record",
    )
}

/// Returns the `PXAT` argument for a deadline: milliseconds since the epoch,
/// at least 1 (Redis refuses 0) and at most `i64::MAX` (it refuses more).
pub(super) fn pxat(deadline: SystemTime) -> u64 {
    to_unix_ms(deadline).clamp(1, i64::MAX.unsigned_abs())
}

fn read_u64(value: &[u8], at: usize) -> Option<u64> {
    let bytes = value.get(at..at.checked_add(8)?)?;
    bytes.try_into().ok().map(u64::from_be_bytes)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn sample(data: &[u8]) -> Record {
        Record {
            id: Id::from_bytes([7; 16]),
            version: 0x0102_0304_0506_0708,
            data: data.into(),
            created_at: UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
            expires_at: UNIX_EPOCH + Duration::from_millis(1_700_000_360_456),
        }
    }

    #[test]
    fn the_layout_is_as_documented() {
        let value = encode(&sample(b"{}"));
        assert_eq!(value.len(), PREFIX_LEN + 2);
        assert_eq!(&value[..4], b"sl\0\x01");
        assert_eq!(&value[4..12], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&value[..HEADER_LEN], &header(0x0102_0304_0506_0708));
        assert_eq!(&value[12..20], &1_700_000_000_123_u64.to_be_bytes());
        assert_eq!(&value[20..28], &1_700_000_360_456_u64.to_be_bytes());
        assert_eq!(&value[28..], b"{}");
    }

    #[test]
    fn records_round_trip() {
        for data in [&b""[..], b"\0\xff binary \x80", &[0xab; 70_000]] {
            let record = sample(data);
            let decoded = decode(record.id, &encode(&record)).expect("a record");
            assert_eq!(decoded, record);
        }
    }

    #[test]
    fn foreign_values_are_deserialize_errors() {
        let valid = encode(&sample(b"data"));
        let mut wrong_tag = valid.clone();
        wrong_tag[3] = 2;
        let samples: [&[u8]; 5] = [
            b"",
            b"{\"user\":42}",
            &valid[..PREFIX_LEN - 1],
            &wrong_tag,
            b"sl\0\x01 too short",
        ];
        for value in samples {
            let error = decode(Id::from_bytes([1; 16]), value).expect_err("not a record");
            assert_eq!(error.kind(), ErrorKind::Deserialize);
        }
        // The shortest record: a header and no data.
        assert!(decode(Id::from_bytes([1; 16]), &valid[..PREFIX_LEN]).is_ok());
    }

    #[test]
    fn huge_times_in_foreign_data_do_not_panic() {
        let mut value = encode(&sample(b""));
        value[12..28].fill(0xff);
        assert!(decode(Id::from_bytes([1; 16]), &value).is_ok());
    }

    #[test]
    fn pxat_stays_in_the_range_redis_accepts() {
        assert_eq!(pxat(UNIX_EPOCH), 1);
        let before_epoch = UNIX_EPOCH
            .checked_sub(Duration::from_secs(1))
            .expect("representable");
        assert_eq!(pxat(before_epoch), 1);
        assert_eq!(
            pxat(UNIX_EPOCH + Duration::from_millis(1_700_000_000_123)),
            1_700_000_000_123
        );
        let far = UNIX_EPOCH + Duration::from_secs(u64::MAX / 1000);
        assert_eq!(pxat(far), i64::MAX.unsigned_abs());
    }
}
