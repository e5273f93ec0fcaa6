//! Test support shared by the integration tests of every crate: services started by the test
//! itself, on free ports, never the ones already running on the machine, and never skipped: a
//! missing binary fails the test with a message saying what to install.
//!
//! - [`pg`]: a private PostgreSQL cluster (`initdb` + `pg_ctl` in a temp dir).
//! - [`redis`]: a private `redis-server`, which a test may kill, restart empty or restart with its
//!   data.

pub mod pg;
pub mod redis;

use std::net::TcpListener;

/// A TCP port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("binding a free port").port()
}
