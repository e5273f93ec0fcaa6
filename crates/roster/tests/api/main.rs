//! Integration tests: the real `roster` binary on a free port, a fresh database per test.

mod accounts;
mod admin;
mod backup;
mod cli;
mod config_file;
mod connections;
mod exposure;
mod hardening;
mod helpers;
mod metrics;
mod operations_docs;
mod presence;
mod prometheus;
mod proxy;
mod session_end;
mod session_purge;
mod source;
mod throttle;
mod views;
mod ws_client;

use testkit::pg;
