//! Integration tests: the real `roster` binary on a free port, a fresh database per test.

mod accounts;
mod cli;
mod connections;
mod hardening;
mod helpers;
mod metrics;
mod presence;
mod proxy;
mod session_end;
mod throttle;
mod ws_client;
