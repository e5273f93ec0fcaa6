//! The Redis layer against real `redis-server`s (one private server per test, on a free port):
//! the conformance suite, the cost of one change, fencing, Redis outages, and an unreliable
//! pub/sub.

mod announce;
mod batches;
mod commands;
mod conformance;
mod fencing;
mod outage;
mod subscriber;
mod support;
