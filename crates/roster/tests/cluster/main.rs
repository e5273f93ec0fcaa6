//! Several Roster nodes, real processes, sharing one private PostgreSQL and one private
//! `redis-server`: presence crosses nodes, log-outs reach every node, dead, paused and stopped
//! nodes are handled, and Redis and PostgreSQL outages are survived. No mocks; every wait has a
//! deadline.

#[path = "../api/helpers.rs"]
#[allow(dead_code)]
mod helpers;
#[path = "../api/prometheus.rs"]
mod prometheus;
#[path = "../api/ws_client.rs"]
#[allow(dead_code)]
mod ws_client;

mod harness;
mod metrics;
mod nodes;
mod outages;

use testkit::pg;
