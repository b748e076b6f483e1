//! The two clocks of a session, the refresh throttle, and the `Max-Age` a
//! persistent cookie gets from them.
//!
//! A session ends at the earlier of two deadlines: the idle deadline, which
//! moves with every save, and the absolute deadline, a fixed time after
//! creation that nothing extends. Both are checked here on every load,
//! whatever the store hands back.

use std::time::{Duration, SystemTime};

use crate::store::Record;

/// The clocks of one layer's sessions.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Lifetime {
    pub(crate) idle: Duration,
    pub(crate) absolute: Duration,
    /// How long after a write a read-only request writes again to move the
    /// idle deadline.
    pub(crate) refresh_after: Duration,
    /// Whether new sessions get a persistent cookie.
    pub(crate) persistent: bool,
}

impl Lifetime {
    /// Returns the deadline of a session created at `created_at` and active
    /// at `now`: the earlier of the two clocks.
    pub(crate) fn deadline(&self, created_at: SystemTime, now: SystemTime) -> SystemTime {
        let idle = now.checked_add(self.idle);
        let absolute = created_at.checked_add(self.absolute);
        match (idle, absolute) {
            (Some(idle), Some(absolute)) => idle.min(absolute),
            // Only a nonsensical stored time overflows; such a session is
            // already over.
            _ => now,
        }
    }

    /// Returns whether `record` is still valid at `now` under this
    /// configuration, whatever the store thinks.
    pub(crate) fn is_alive(&self, record: &Record, now: SystemTime) -> bool {
        now < record.expires_at
            && record
                .created_at
                .checked_add(self.absolute)
                .is_some_and(|absolute| now < absolute)
    }

    /// Returns whether a read-only request should extend the idle deadline.
    pub(crate) fn refresh_due(
        &self,
        created_at: SystemTime,
        expires_at: SystemTime,
        now: SystemTime,
    ) -> bool {
        let remaining = expires_at.duration_since(now).unwrap_or_default();
        let since_refresh = self.idle.saturating_sub(remaining);
        since_refresh >= self.refresh_after && self.deadline(created_at, now) > expires_at
    }

    /// Returns the `Max-Age` of a persistent cookie for a session whose
    /// stored deadline is `expires_at`: the time left until the server stops
    /// honouring it, capped by the current configuration's clocks, so a
    /// cookie never outlives its session.
    pub(crate) fn max_age(
        &self,
        created_at: SystemTime,
        expires_at: SystemTime,
        now: SystemTime,
    ) -> Duration {
        let deadline = expires_at.min(self.deadline(created_at, now));
        deadline.duration_since(now).unwrap_or(Duration::ZERO)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lifetime(idle: u64, absolute: u64, refresh_after: u64) -> Lifetime {
        Lifetime {
            idle: Duration::from_secs(idle),
            absolute: Duration::from_secs(absolute),
            refresh_after: Duration::from_secs(refresh_after),
            persistent: false,
        }
    }

    fn created() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000)
    }

    #[test]
    fn refresh_is_throttled() {
        let lifetime = lifetime(100, 1000, 25);
        let created = created();
        let expires = created + Duration::from_secs(100);
        let at = |seconds| created + Duration::from_secs(seconds);
        assert!(!lifetime.refresh_due(created, expires, at(10)));
        assert!(!lifetime.refresh_due(created, expires, at(24)));
        assert!(lifetime.refresh_due(created, expires, at(25)));
        // Near the absolute deadline a refresh gains nothing.
        let late = created + Duration::from_secs(1000);
        assert!(!lifetime.refresh_due(created, late, at(990)));
    }

    #[test]
    fn the_absolute_clock_caps_the_deadline() {
        let lifetime = lifetime(100, 150, 0);
        let created = created();
        assert_eq!(
            lifetime.deadline(created, created + Duration::from_secs(120)),
            created + Duration::from_secs(150)
        );
    }

    #[test]
    fn max_age_never_exceeds_either_clock() {
        let created = created();
        let now = created + Duration::from_secs(50);
        // Stored with a deadline the current configuration no longer honours.
        let stored_deadline = created + Duration::from_secs(10_000);
        assert_eq!(
            lifetime(100, 120, 0).max_age(created, stored_deadline, now),
            Duration::from_secs(70)
        );
        assert_eq!(
            lifetime(100, 1000, 0).max_age(created, stored_deadline, now),
            Duration::from_secs(100)
        );
        assert_eq!(
            lifetime(100, 1000, 0).max_age(created, created, now),
            Duration::ZERO
        );
    }
}
