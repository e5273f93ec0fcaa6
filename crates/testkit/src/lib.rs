//! Test support shared by the integration tests of every crate: services started by the test
//! itself, on free ports, never the ones already running on the machine, and never skipped: a
//! missing binary fails the test with a message saying what to install.
//!
//! - [`pg`]: a private PostgreSQL cluster (`initdb` + `pg_ctl` in a temp dir).
//! - [`redis`]: a private `redis-server`, which a test may kill, restart empty or restart with its
//!   data.
//! - [`nginx`]: a private nginx in front of the test's servers, with a site configuration the
//!   test gives.

pub mod nginx;
pub mod pg;
pub mod redis;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;

/// A TCP port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("binding a free port").port()
}

/// `program` in a directory of PATH.
pub(crate) fn which(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?).map(|d| d.join(program)).find(|p| p.is_file())
}

/// The tests run as root (containers): PostgreSQL and nginx need to know.
pub(crate) fn running_as_root() -> bool {
    let out = Command::new("id").arg("-u").output().expect("running `id -u`");
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}
