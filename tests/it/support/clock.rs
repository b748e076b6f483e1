//! A clock the tests move by hand.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A clock a test moves by hand: a fixed base plus an offset.
///
/// The base is the current time rounded down to the second, so it is never
/// ahead of the real clock the [`MemoryStore`] expires records by, and the
/// store's millisecond precision loses nothing.
#[derive(Debug, Clone)]
pub(crate) struct ManualClock {
    base: SystemTime,
    offset_ms: Arc<AtomicU64>,
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl ManualClock {
    pub(crate) fn new() -> Self {
        let seconds = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("the clock is after 1970")
            .as_secs();
        Self {
            base: UNIX_EPOCH + Duration::from_secs(seconds),
            offset_ms: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Returns the clock's current time.
    pub(crate) fn now(&self) -> SystemTime {
        self.base + Duration::from_millis(self.offset_ms.load(Ordering::SeqCst))
    }

    /// Sets the time to `offset` after the base.
    pub(crate) fn set(&self, offset: Duration) {
        let millis = u64::try_from(offset.as_millis()).expect("a test offset fits in u64");
        self.offset_ms.store(millis, Ordering::SeqCst);
    }

    /// Sets the time to `seconds` after the base.
    pub(crate) fn at(&self, seconds: u64) {
        self.set(Duration::from_secs(seconds));
    }

    /// Returns a closure for [`SessionLayerBuilder::clock`](session_layer::SessionLayerBuilder::clock).
    pub(crate) fn source(&self) -> impl Fn() -> SystemTime + Send + Sync + 'static {
        let clock = self.clone();
        move || clock.now()
    }
}
