//! Throttling in memory: at most `limit` failed attempts per key in any sliding `window`. The
//! server uses three for log-ins (per address and account pair, per address, per account; see
//! `log_in_limits.rs`, which checks before a password is verified, records failures and resets
//! the pair on success) and one for sign-ups (per address, counting created accounts). Time is
//! passed in (`now: Instant`) so tests need no sleeping. Memory is bounded: at most `limit`
//! instants per key, expired keys pruned as time passes, and at most `max_keys` keys (the least
//! recently failed are evicted first). Uses a std `Mutex`, never held across an `.await`: every
//! method is short and synchronous. Depends on nothing else here.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Default cap on the number of keys tracked.
pub const DEFAULT_MAX_KEYS: usize = 100_000;

/// The key is throttled; try again after this long (use it for a `Retry-After` header).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many failed attempts; retry in {} s", retry_secs(*.0))]
pub struct RetryAfter(pub Duration);

impl RetryAfter {
    /// Whole seconds to wait, rounded up, at least 1: the value for `Retry-After`.
    pub fn as_secs_ceil(&self) -> u64 {
        retry_secs(self.0)
    }
}

fn retry_secs(d: Duration) -> u64 {
    let whole = d.as_secs();
    let secs = if d.subsec_nanos() > 0 { whole.saturating_add(1) } else { whole };
    secs.max(1)
}

/// A sliding-window failure counter per key. Share it behind an `Arc`; all methods take `&self`.
#[derive(Debug)]
pub struct Throttle {
    limit: usize,
    window: Duration,
    max_keys: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Failure times per key, oldest first, at most `limit` of them, all within `window` of the
    /// newest.
    failures: HashMap<String, VecDeque<Instant>>,
    /// When expired keys were last swept; a sweep happens at most once per `window`.
    last_sweep: Option<Instant>,
}

impl Throttle {
    /// Allow `limit` failures per key in any `window`; the next attempt is refused until the
    /// oldest of them is `window` old. A `limit` of 0 is treated as 1.
    pub fn new(limit: u32, window: Duration) -> Self {
        Self {
            limit: usize::try_from(limit.max(1)).unwrap_or(usize::MAX),
            window,
            max_keys: DEFAULT_MAX_KEYS,
            state: Mutex::new(State::default()),
        }
    }

    /// Track at most `max_keys` keys (at least 1) instead of [`DEFAULT_MAX_KEYS`].
    pub fn with_max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys.max(1);
        self
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock cannot leave the map inconsistent in a way
        // that matters here, so carry on rather than propagate the poison.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn expired(&self, at: Instant, now: Instant) -> bool {
        now.saturating_duration_since(at) >= self.window
    }

    /// `Ok(())` if `key` may try now, else how long until it may.
    pub fn check(&self, key: &str, now: Instant) -> Result<(), RetryAfter> {
        let state = self.state();
        let Some(times) = state.failures.get(key) else {
            return Ok(());
        };
        let live: Vec<Instant> = times.iter().copied().filter(|&t| !self.expired(t, now)).collect();
        if live.len() < self.limit {
            return Ok(());
        }
        // A slot frees when the oldest failure that still counts leaves the window.
        let oldest = live.len() - self.limit;
        let wait = live
            .get(oldest)
            .map(|&t| t.checked_add(self.window).map_or(Duration::MAX, |end| end.saturating_duration_since(now)))
            .unwrap_or_default();
        Err(RetryAfter(wait))
    }

    /// How many failures of `key` are still within the window at `now` (at most the limit).
    pub fn failures(&self, key: &str, now: Instant) -> usize {
        self.state().failures.get(key).map_or(0, |times| times.iter().filter(|&&t| !self.expired(t, now)).count())
    }

    /// Count a failed attempt for `key` at `now`.
    pub fn record_failure(&self, key: &str, now: Instant) {
        let mut state = self.state();
        self.sweep_if_due(&mut state, now);
        if !state.failures.contains_key(key) && state.failures.len() >= self.max_keys {
            self.make_room(&mut state, now);
        }
        let times = state.failures.entry(key.to_owned()).or_default();
        while times.front().is_some_and(|&t| self.expired(t, now)) {
            times.pop_front();
        }
        times.push_back(now);
        while times.len() > self.limit {
            times.pop_front();
        }
    }

    /// Forget `key` (after a successful log in).
    pub fn reset(&self, key: &str) {
        self.state().failures.remove(key);
    }

    /// How many keys are tracked (for metrics and tests).
    pub fn tracked_keys(&self) -> usize {
        self.state().failures.len()
    }

    /// Drop keys whose newest failure has left the window; at most once per window, so the
    /// cost is amortized over the failures recorded meanwhile.
    fn sweep_if_due(&self, state: &mut State, now: Instant) {
        if state.last_sweep.is_some_and(|last| !self.expired(last, now)) {
            return;
        }
        state.last_sweep = Some(now);
        self.sweep(state, now);
    }

    fn sweep(&self, state: &mut State, now: Instant) {
        state.failures.retain(|_, times| times.back().is_some_and(|&t| !self.expired(t, now)));
    }

    /// At the key cap: sweep, and if still full evict the least recently failed tenth of the
    /// keys at once (amortizing the O(n) selection over many insertions).
    fn make_room(&self, state: &mut State, now: Instant) {
        self.sweep(state, now);
        if state.failures.len() < self.max_keys {
            return;
        }
        let evict = (self.max_keys / 10).max(1);
        let mut newest: Vec<(Instant, String)> =
            state.failures.iter().filter_map(|(k, times)| times.back().map(|&t| (t, k.clone()))).collect();
        if evict < newest.len() {
            newest.select_nth_unstable_by_key(evict, |(t, _)| *t);
            newest.truncate(evict);
        }
        for (_, key) in newest {
            state.failures.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn allows_up_to_limit_then_refuses_until_the_oldest_expires() {
        let t = Throttle::new(3, 10 * MIN);
        let t0 = Instant::now();
        for i in 0..3 {
            assert_eq!(t.check("user:alice", t0 + i * MIN), Ok(()));
            t.record_failure("user:alice", t0 + i * MIN);
        }
        assert_eq!(t.check("user:alice", t0 + 3 * MIN), Err(RetryAfter(7 * MIN)));
        assert_eq!(
            t.check("user:alice", t0 + 10 * MIN - Duration::from_secs(1)),
            Err(RetryAfter(Duration::from_secs(1)))
        );
        // Sliding: at t0+10min the first failure leaves the window; one attempt is allowed.
        assert_eq!(t.check("user:alice", t0 + 10 * MIN), Ok(()));
        t.record_failure("user:alice", t0 + 10 * MIN);
        assert_eq!(t.check("user:alice", t0 + 10 * MIN), Err(RetryAfter(MIN)));
        // Other keys are independent.
        assert_eq!(t.check("user:bob", t0 + 3 * MIN), Ok(()));
        assert_eq!(t.check("ip:192.0.2.1", t0), Ok(()));
    }

    #[test]
    fn failures_counts_what_is_in_the_window() {
        let t = Throttle::new(3, MIN);
        let t0 = Instant::now();
        assert_eq!(t.failures("k", t0), 0);
        t.record_failure("k", t0);
        t.record_failure("k", t0 + MIN / 2);
        assert_eq!(t.failures("k", t0 + MIN / 2), 2);
        assert_eq!(t.failures("k", t0 + MIN), 1, "the first left the window");
        assert_eq!(t.failures("other", t0), 0);
    }

    #[test]
    fn reset_forgets() {
        let t = Throttle::new(1, MIN);
        let t0 = Instant::now();
        t.record_failure("user:alice", t0);
        assert!(t.check("user:alice", t0).is_err());
        t.reset("user:alice");
        assert_eq!(t.check("user:alice", t0), Ok(()));
        assert_eq!(t.tracked_keys(), 0);
    }

    #[test]
    fn limit_zero_means_one() {
        let t = Throttle::new(0, MIN);
        let t0 = Instant::now();
        assert_eq!(t.check("k", t0), Ok(()));
        t.record_failure("k", t0);
        assert_eq!(t.check("k", t0), Err(RetryAfter(MIN)));
    }

    #[test]
    fn keeps_at_most_limit_instants_per_key() {
        let t = Throttle::new(2, MIN);
        let t0 = Instant::now();
        for i in 0..1000 {
            t.record_failure("k", t0 + Duration::from_millis(i));
        }
        let len = t.state().failures.get("k").map(VecDeque::len);
        assert_eq!(len, Some(2));
        // Retry after is measured from the oldest failure still counted (the 999th).
        assert_eq!(t.check("k", t0 + Duration::from_millis(999)), Err(RetryAfter(MIN - Duration::from_millis(1))));
    }

    #[test]
    fn expired_keys_are_swept() {
        let t = Throttle::new(5, MIN);
        let t0 = Instant::now();
        for i in 0..100 {
            t.record_failure(&format!("ip:{i}"), t0);
        }
        assert_eq!(t.tracked_keys(), 100);
        t.record_failure("ip:late", t0 + 2 * MIN);
        assert_eq!(t.tracked_keys(), 1);
    }

    #[test]
    fn key_count_is_capped_evicting_least_recent() {
        let t = Throttle::new(5, MIN).with_max_keys(100);
        let t0 = Instant::now();
        for i in 0..1000u64 {
            t.record_failure(&format!("ip:{i}"), t0 + Duration::from_millis(i));
            assert!(t.tracked_keys() <= 100);
        }
        // The most recent attacker is still tracked; the earliest ones were evicted.
        assert!(t.state().failures.contains_key("ip:999"));
        assert!(!t.state().failures.contains_key("ip:0"));
    }

    #[test]
    fn time_going_backwards_does_not_panic() {
        let t = Throttle::new(2, MIN);
        let t0 = Instant::now() + 10 * MIN;
        t.record_failure("k", t0);
        t.record_failure("k", t0 - 5 * MIN);
        let _ = t.check("k", t0 - 9 * MIN);
        let _ = t.check("k", t0 + 100 * MIN);
    }

    #[test]
    fn huge_window_does_not_overflow() {
        let t = Throttle::new(1, Duration::MAX);
        let t0 = Instant::now();
        t.record_failure("k", t0);
        assert_eq!(t.check("k", t0), Err(RetryAfter(Duration::MAX)));
        assert_eq!(RetryAfter(Duration::MAX).as_secs_ceil(), u64::MAX);
    }

    #[test]
    fn retry_after_rounds_up_for_headers() {
        assert_eq!(RetryAfter(Duration::from_millis(1500)).as_secs_ceil(), 2);
        assert_eq!(RetryAfter(Duration::ZERO).as_secs_ceil(), 1);
        assert_eq!(RetryAfter(MIN).to_string(), "too many failed attempts; retry in 60 s");
    }
}
