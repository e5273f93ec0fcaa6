//! Caps on open connections: in total (the process's file descriptors are finite, and a server
//! that cannot accept cannot even answer `/healthz`) and per client address (so one client
//! cannot take them all). A connection holds a [`Slot`] from accept until its stream is dropped,
//! which for an upgraded WebSocket is when the socket closes.
//!
//! The per-address count uses the TCP peer (headers are not read yet at accept); peers in
//! `--trusted-proxies` count only in the total, since every client behind them shares their
//! address. Uses a std `Mutex`, held for a few instructions and never across an `.await`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::web::client::TrustedProxies;

/// Descriptors kept free for everything that is not a client connection (database, logs,
/// the runtimes, the listeners).
pub const DESCRIPTOR_RESERVE: u64 = 64;

/// The default total cap: the open-file soft limit minus [`DESCRIPTOR_RESERVE`] (at least 16).
pub fn default_max_connections() -> u32 {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile).current.unwrap_or(1_000_000);
    u32::try_from(limit.saturating_sub(DESCRIPTOR_RESERVE).max(16)).unwrap_or(u32::MAX)
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Total,
    PerAddress,
}

impl Refused {
    /// The metrics label.
    pub fn label(self) -> &'static str {
        match self {
            Refused::Total => "total",
            Refused::PerAddress => "per_address",
        }
    }
}

/// The counts and their limits. Share behind an `Arc`.
#[derive(Debug)]
pub struct ConnectionCaps {
    max_total: usize,
    max_per_address: usize,
    exempt: Arc<TrustedProxies>,
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_address: HashMap<IpAddr, usize>,
}

impl ConnectionCaps {
    pub fn new(max_total: u32, max_per_address: u32, exempt: Arc<TrustedProxies>) -> Arc<ConnectionCaps> {
        Arc::new(ConnectionCaps {
            max_total: usize::try_from(max_total).unwrap_or(usize::MAX),
            max_per_address: usize::try_from(max_per_address).unwrap_or(usize::MAX),
            exempt,
            counts: Mutex::new(Counts::default()),
        })
    }

    fn counts(&self) -> MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A slot for a new connection from `ip`, or why there is none.
    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Refused> {
        let ip = ip.to_canonical();
        let per_address = !self.exempt.contains(ip);
        let mut c = self.counts();
        if c.total >= self.max_total {
            return Err(Refused::Total);
        }
        if per_address {
            let n = c.per_address.entry(ip).or_insert(0);
            if *n >= self.max_per_address {
                return Err(Refused::PerAddress);
            }
            *n += 1;
        }
        c.total += 1;
        Ok(Slot { caps: self.clone(), ip: per_address.then_some(ip) })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.counts().total
    }

    pub fn max_total(&self) -> usize {
        self.max_total
    }

    pub fn max_per_address(&self) -> usize {
        self.max_per_address
    }

    fn release(&self, ip: Option<IpAddr>) {
        let mut c = self.counts();
        c.total = c.total.saturating_sub(1);
        if let Some(ip) = ip {
            if let Some(n) = c.per_address.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    c.per_address.remove(&ip);
                }
            }
        }
    }
}

/// One open connection's place under the caps; dropping it frees the place.
#[derive(Debug)]
pub struct Slot {
    caps: Arc<ConnectionCaps>,
    /// The address counted, if counted per address.
    ip: Option<IpAddr>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.caps.release(self.ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::web::client::parse_trusted_proxy;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn caps_per_address_and_in_total_and_frees_on_drop() {
        let caps = ConnectionCaps::new(4, 2, Arc::default());
        let a1 = caps.try_acquire(ip(2)).expect("first");
        let a2 = caps.try_acquire(ip(2)).expect("second");
        assert_eq!(caps.try_acquire(ip(2)).err(), Some(Refused::PerAddress));
        let b1 = caps.try_acquire(ip(3)).expect("another address");
        let b2 = caps.try_acquire(ip(3)).expect("another address");
        assert_eq!(caps.try_acquire(ip(4)).err(), Some(Refused::Total));
        assert_eq!(caps.open(), 4);
        drop(a1);
        let a3 = caps.try_acquire(ip(2)).expect("freed");
        drop((a2, a3, b1, b2));
        assert_eq!(caps.open(), 0);
        assert!(caps.counts().per_address.is_empty(), "no entry left behind");
    }

    #[test]
    fn trusted_proxies_count_only_in_the_total() {
        let proxies = Arc::new(TrustedProxies::new(vec![parse_trusted_proxy("127.0.0.9").expect("ip")]));
        let caps = ConnectionCaps::new(3, 1, proxies);
        let _slots: Vec<Slot> = (0..3).map(|_| caps.try_acquire(ip(9)).expect("proxy")).collect();
        assert_eq!(caps.try_acquire(ip(9)).err(), Some(Refused::Total));
    }

    #[test]
    fn the_default_total_leaves_a_reserve() {
        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile).current.unwrap_or(1_000_000);
        let cap = u64::from(default_max_connections());
        assert!(cap + DESCRIPTOR_RESERVE <= limit.max(16 + DESCRIPTOR_RESERVE), "{cap} of {limit}");
    }
}
