//! The end of a chaos run: after the lease and a second, every open client's view, every
//! node's `GET /api/users/`, the logged-out sockets and Redis's leases against the truth.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::time::Duration;

use tokio::time::Instant;

use super::world::World;
use super::{LEASE, NODES};
use crate::harness::api_state;
use crate::helpers::DEADLINE;

impl World {
    /// After the lease and a second, everyone holds the truth.
    pub(super) async fn check(&mut self) {
        tokio::time::sleep(LEASE + Duration::from_secs(1)).await;
        let truth: BTreeSet<String> = self.clients.iter().map(|c| self.names[c.user].clone()).collect();
        let registered = self.names.len() as u64 + 1; // and the observer
        self.note_end(format!("check: truth {truth:?}, {registered} registered"));
        let deadline = Instant::now() + DEADLINE;
        let mut errors = Vec::new();
        for c in &mut self.clients {
            if let Err(e) = c.held.until(&truth, registered, deadline).await {
                errors.push(format!("c{} (user{}, node {}): {e}", c.id, c.user, c.node));
            }
        }
        for c in self.logged_out.drain(..) {
            let (id, node) = (c.id, c.node);
            match c.held.ended(deadline).await {
                Ok(Some(4001)) => {}
                other => errors.push(format!("logged-out c{id} on node {node}: {other:?}, want a 4001 close")),
            }
        }
        for n in 0..NODES {
            let server = self.server(n);
            loop {
                let have = api_state(server, &self.observer).await;
                if have.0 == truth && have.1 == registered {
                    break;
                }
                if Instant::now() >= deadline {
                    errors.push(format!("node {n} GET /api/users/: {have:?}"));
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        // Redis holds the running nodes' leases only: the dead incarnations were swept.
        while self.cluster.leases() != NODES {
            if Instant::now() >= deadline {
                errors.push(format!(
                    "{} leases in Redis, want {NODES}: {:?}",
                    self.cluster.leases(),
                    self.cluster.redis_keys("")
                ));
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if !errors.is_empty() {
            // What the nodes warned of, to go with the steps.
            for n in 0..NODES {
                let logs = self.server(n).logs();
                let lines: Vec<&str> = logs.lines().filter(|l| l.contains("WARN") || l.contains("ERROR")).collect();
                let mut warned = format!("node {n} warnings (last 30 of {}):", lines.len());
                for l in lines.iter().rev().take(30).rev() {
                    let _ = write!(warned, "\n  {l}");
                }
                errors.push(warned);
            }
            panic!("seed {}: {}", self.log.seed, errors.join("\n"));
        }
    }
}
