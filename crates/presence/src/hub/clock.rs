//! The hub's clock: tokio's monotonic clock (so paused-time tests work) mapped to unix
//! milliseconds, the one time format of events and of the store.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub(super) struct Clock {
    base: Instant,
    base_unix_ms: i64,
}

impl Clock {
    pub(super) fn new() -> Self {
        let unix = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
        Self { base: tokio::time::Instant::now().into_std(), base_unix_ms: i64::try_from(unix).unwrap_or(i64::MAX) }
    }

    pub(super) fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }

    /// `at` as nanoseconds since the clock was made.
    pub(super) fn ns(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.base).as_nanos()).unwrap_or(u64::MAX)
    }

    pub(super) fn at_ns(&self, ns: u64) -> Instant {
        self.base + Duration::from_nanos(ns)
    }

    pub(super) fn unix_ms(&self, at: Instant) -> i64 {
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        match at.checked_duration_since(self.base) {
            Some(d) => self.base_unix_ms.saturating_add(ms(d)),
            None => self.base_unix_ms.saturating_sub(ms(self.base - at)),
        }
    }

    /// The instant of unix time `ms` (for timers on unix deadlines such as session expiry).
    pub(super) fn instant_of(&self, ms: i64) -> Instant {
        let delta = ms.saturating_sub(self.base_unix_ms);
        let offset = Duration::from_millis(delta.unsigned_abs());
        if delta >= 0 {
            self.base.checked_add(offset).unwrap_or(self.base + Duration::from_secs(86_400 * 365 * 100))
        } else {
            self.base.checked_sub(offset).unwrap_or(self.base)
        }
    }
}
