//! Jittered exponential backoff for reconnects, so nodes that lost Redis together do not come
//! back in lockstep. Pure apart from the random source (fastrand).

use std::time::Duration;

use crate::config::{BACKOFF_MAX, BACKOFF_MIN};

#[derive(Default)]
pub(crate) struct Backoff {
    attempt: u32,
}

impl Backoff {
    /// The next wait: `BACKOFF_MIN` doubled per failed attempt up to `BACKOFF_MAX`, each taken
    /// at a random point between half and all of it.
    pub fn next(&mut self) -> Duration {
        let full = BACKOFF_MIN.saturating_mul(1 << self.attempt.min(16)).min(BACKOFF_MAX);
        self.attempt = self.attempt.saturating_add(1);
        full.mul_f64(0.5 + fastrand::f64() / 2.0)
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_jittered_and_capped() {
        let mut b = Backoff::default();
        let first = b.next();
        assert!(first >= BACKOFF_MIN / 2 && first <= BACKOFF_MIN);
        for _ in 0..40 {
            assert!(b.next() <= BACKOFF_MAX);
        }
        assert!(b.next() >= BACKOFF_MAX / 2);
        b.reset();
        assert!(b.next() <= BACKOFF_MIN);
    }
}
