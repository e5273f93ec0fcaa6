//! Who may try a password now: three sliding-window counters of failed log-ins, combined so
//! that a guesser is stopped without letting anyone lock an account's owner out.
//!
//! - per (account, client address) pair, `--login-limit`: the guesser at one address gets a few
//!   tries at one account, then 429 until the window frees a slot;
//! - per client address across accounts, `--login-address-limit`: a guesser spraying many
//!   accounts from one address gets 429;
//! - per account across addresses, `--login-account-limit`: a ceiling that never refuses. Beyond
//!   it, an attempt from an address that has already failed on this account waits
//!   [`ACCOUNT_SLOWDOWN`] before its password is checked; an address that has not failed on it
//!   (the owner's, usually) goes through at once. Failures from elsewhere therefore never keep
//!   the owner out, and a guesser spread over many addresses pays a delay for every repeat.
//!
//! A success clears only its own pair. Usernames that cannot exist (invalid) count only against
//! the address, so a guesser cannot fill memory with long made-up account keys. Time is passed
//! in; no I/O, no HTTP. Built on [`Throttle`].

use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::throttle::{RetryAfter, Throttle};

/// How long an attempt waits once its account is past the ceiling and its address has failed
/// on that account before.
pub const ACCOUNT_SLOWDOWN: Duration = Duration::from_secs(2);

/// The limits, from the settings.
#[derive(Clone, Copy, Debug)]
pub struct LogInLimitSettings {
    pub per_pair: u32,
    pub per_address: u32,
    pub per_account: u32,
    pub window: Duration,
}

/// What to do with an attempt before checking its password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Check the password now.
    Go,
    /// Wait this long, then check the password (the account is past its ceiling).
    Slow(Duration),
    /// Refuse with 429.
    Refuse(RetryAfter),
}

/// The three counters. Share behind the application state; all methods take `&self`.
#[derive(Debug)]
pub struct LogInLimits {
    pair: Throttle,
    address: Throttle,
    account: Throttle,
}

impl LogInLimits {
    pub fn new(s: LogInLimitSettings) -> LogInLimits {
        LogInLimits {
            pair: Throttle::new(s.per_pair, s.window),
            address: Throttle::new(s.per_address, s.window),
            account: Throttle::new(s.per_account, s.window),
        }
    }

    /// Whether an attempt on `account` (its username key; `None` for a username that cannot
    /// exist) from `ip` may go ahead at `now`.
    pub fn admit(&self, account: Option<&str>, ip: IpAddr, now: Instant) -> Admission {
        let address = ip.to_string();
        let mut refusal = self.address.check(&address, now).err();
        if let Some(account) = account {
            if let Err(r) = self.pair.check(&pair_key(account, &address), now) {
                refusal = Some(refusal.map_or(r, |other| RetryAfter(other.0.max(r.0))));
            }
        }
        if let Some(r) = refusal {
            return Admission::Refuse(r);
        }
        match account {
            Some(account)
                if self.account.check(account, now).is_err()
                    && self.pair.failures(&pair_key(account, &address), now) > 0 =>
            {
                Admission::Slow(ACCOUNT_SLOWDOWN)
            }
            _ => Admission::Go,
        }
    }

    /// Counts a failed attempt. Returns true when this failure takes `account` to its ceiling
    /// (once per crossing, for a log line).
    pub fn failed(&self, account: Option<&str>, ip: IpAddr, now: Instant) -> bool {
        let address = ip.to_string();
        self.address.record_failure(&address, now);
        let Some(account) = account else { return false };
        self.pair.record_failure(&pair_key(account, &address), now);
        let below = self.account.check(account, now).is_ok();
        self.account.record_failure(account, now);
        below && self.account.check(account, now).is_err()
    }

    /// A correct password: forget this pair's failures (not the address's, nor the account's).
    pub fn succeeded(&self, account: &str, ip: IpAddr) {
        self.pair.reset(&pair_key(account, &ip.to_string()));
    }
}

fn pair_key(account: &str, address: &str) -> String {
    format!("{address} {account}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    fn limits(pair: u32, address: u32, account: u32) -> LogInLimits {
        LogInLimits::new(LogInLimitSettings { per_pair: pair, per_address: address, per_account: account, window: MIN })
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    #[test]
    fn a_pair_is_refused_while_other_addresses_and_accounts_go() {
        let l = limits(2, 100, 100);
        let t0 = Instant::now();
        for _ in 0..2 {
            assert_eq!(l.admit(Some("alice"), ip(1), t0), Admission::Go);
            l.failed(Some("alice"), ip(1), t0);
        }
        assert_eq!(l.admit(Some("alice"), ip(1), t0), Admission::Refuse(RetryAfter(MIN)));
        assert_eq!(l.admit(Some("alice"), ip(2), t0), Admission::Go, "the owner elsewhere");
        assert_eq!(l.admit(Some("bob"), ip(1), t0), Admission::Go, "another account from the guesser");
        assert_eq!(l.admit(Some("alice"), ip(1), t0 + MIN), Admission::Go, "the window slid");
    }

    #[test]
    fn an_address_spraying_accounts_is_refused() {
        let l = limits(5, 3, 100);
        let t0 = Instant::now();
        for name in ["a", "b"] {
            l.failed(Some(name), ip(1), t0);
        }
        l.failed(None, ip(1), t0);
        assert!(matches!(l.admit(Some("c"), ip(1), t0), Admission::Refuse(_)));
        assert!(matches!(l.admit(None, ip(1), t0), Admission::Refuse(_)));
        assert_eq!(l.admit(Some("c"), ip(2), t0), Admission::Go);
    }

    #[test]
    fn past_the_account_ceiling_repeat_addresses_are_slowed_and_nobody_is_refused() {
        let l = limits(5, 100, 3);
        let t0 = Instant::now();
        let crossed: Vec<bool> = (1..=4).map(|i| l.failed(Some("alice"), ip(i), t0)).collect();
        assert_eq!(crossed, [false, false, true, false], "the crossing is reported once");
        assert_eq!(l.admit(Some("alice"), ip(1), t0), Admission::Slow(ACCOUNT_SLOWDOWN));
        assert_eq!(l.admit(Some("alice"), ip(99), t0), Admission::Go, "a fresh address is not slowed");
        // Hundreds of failures from many addresses never refuse a fresh one.
        for i in 0..=255 {
            l.failed(Some("alice"), ip(i), t0);
        }
        assert_eq!(l.admit(Some("alice"), IpAddr::from([198, 51, 100, 1]), t0), Admission::Go);
    }

    #[test]
    fn success_clears_only_its_pair() {
        let l = limits(1, 2, 100);
        let t0 = Instant::now();
        l.failed(Some("alice"), ip(1), t0);
        assert!(matches!(l.admit(Some("alice"), ip(1), t0), Admission::Refuse(_)));
        l.succeeded("alice", ip(1));
        assert_eq!(l.admit(Some("alice"), ip(1), t0), Admission::Go);
        l.failed(Some("bob"), ip(1), t0);
        assert!(matches!(l.admit(Some("alice"), ip(1), t0), Admission::Refuse(_)), "the address count stays");
    }
}
