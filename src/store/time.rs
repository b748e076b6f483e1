//! How the stores turn a [`SystemTime`] into milliseconds and back.
//!
//! Every store keeps `created_at` and `expires_at` as whole milliseconds
//! since the Unix epoch, and every store converts them by one rule:
//!
//! - a time is rounded down to a whole millisecond;
//! - a time before the epoch is kept as the epoch (`0`);
//! - a value too large for the target saturates: a time past the largest
//!   number of milliseconds becomes that number, and a number of
//!   milliseconds past the latest `SystemTime` the platform can represent
//!   becomes that latest time.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Returns `time` in whole milliseconds since the Unix epoch, rounded down:
/// `0` for a time before the epoch, `u64::MAX` for one past it.
pub(crate) fn to_unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |since| {
        u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
    })
}

/// Returns `time` in whole milliseconds since the Unix epoch as a signed
/// 64-bit column value: [`to_unix_ms`], saturating at `i64::MAX`.
#[cfg(any(feature = "postgres-store", feature = "sqlite-store"))]
pub(crate) fn to_unix_ms_i64(time: SystemTime) -> i64 {
    i64::try_from(to_unix_ms(time)).unwrap_or(i64::MAX)
}

/// Returns the time `ms` milliseconds after the Unix epoch, or the latest
/// whole millisecond a `SystemTime` can hold if that is earlier.
///
/// On the usual platforms every `u64` of milliseconds fits; where a
/// `SystemTime` is narrower (Windows keeps about 58 000 years), a larger
/// value saturates.
pub(crate) fn from_unix_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH
        .checked_add(Duration::from_millis(ms))
        .unwrap_or_else(|| latest_below(ms))
}

/// Returns the latest whole millisecond after the epoch that a `SystemTime`
/// can hold, knowing that `unrepresentable` milliseconds is past it.
#[cold]
fn latest_below(unrepresentable: u64) -> SystemTime {
    // `low` always fits, `high` never does: halve the gap until they meet.
    let (mut low, mut high) = (0, unrepresentable);
    while high - low > 1 {
        let middle = low + (high - low) / 2;
        if UNIX_EPOCH
            .checked_add(Duration::from_millis(middle))
            .is_some()
        {
            low = middle;
        } else {
            high = middle;
        }
    }
    UNIX_EPOCH + Duration::from_millis(low)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_down_to_whole_milliseconds() {
        let time = UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_999);
        assert_eq!(to_unix_ms(time), 1_700_000_000_123);
        assert_eq!(
            from_unix_ms(to_unix_ms(time)),
            UNIX_EPOCH + Duration::from_millis(1_700_000_000_123)
        );
        assert_eq!(to_unix_ms(UNIX_EPOCH + Duration::from_micros(999)), 0);
    }

    #[test]
    fn the_epoch_is_zero_and_earlier_times_are_the_epoch() {
        assert_eq!(to_unix_ms(UNIX_EPOCH), 0);
        assert_eq!(from_unix_ms(0), UNIX_EPOCH);
        let before_epoch = UNIX_EPOCH
            .checked_sub(Duration::from_secs(1))
            .expect("representable");
        assert_eq!(to_unix_ms(before_epoch), 0);
    }

    #[test]
    fn times_past_the_largest_value_saturate() {
        // Representable where a `SystemTime` has 64-bit seconds.
        if let Some(far) = UNIX_EPOCH.checked_add(Duration::from_secs(u64::MAX / 2)) {
            assert_eq!(to_unix_ms(far), u64::MAX);
        }
        let latest = from_unix_ms(u64::MAX);
        assert!(latest > UNIX_EPOCH + Duration::from_secs(1_000 * 365 * 24 * 3600));
        // Nothing later than the saturated time is representable in whole
        // milliseconds, unless `u64::MAX` itself was.
        if to_unix_ms(latest) != u64::MAX {
            assert!(latest.checked_add(Duration::from_millis(1)).is_none());
        }
    }

    #[test]
    fn the_search_finds_the_latest_representable_millisecond() {
        // The search itself, over a range that is representable everywhere:
        // told that 1000 ms does not fit, it answers 999 ms.
        assert_eq!(latest_below(1_000), UNIX_EPOCH + Duration::from_millis(999));
        assert_eq!(latest_below(1), UNIX_EPOCH);
    }

    #[cfg(any(feature = "postgres-store", feature = "sqlite-store"))]
    #[test]
    fn column_values_saturate_at_i64_max() {
        let time = UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456);
        assert_eq!(to_unix_ms_i64(time), 1_700_000_000_123);
        let before_epoch = UNIX_EPOCH
            .checked_sub(Duration::from_secs(1))
            .expect("representable");
        assert_eq!(to_unix_ms_i64(before_epoch), 0);
        if let Some(far) = UNIX_EPOCH.checked_add(Duration::from_secs(u64::MAX / 2)) {
            assert_eq!(to_unix_ms_i64(far), i64::MAX);
        }
    }
}
