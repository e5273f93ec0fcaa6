//! Integration tests: the real `roster` binary on a free port, a fresh database per test.

mod accounts;
mod backup;
mod cli;
mod config_file;
mod helpers;
mod operations_docs;
use testkit::pg;
mod presence;
mod session_purge;
mod ws_client;
