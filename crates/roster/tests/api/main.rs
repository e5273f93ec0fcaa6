//! Integration tests: the real `roster` binary on a free port, a fresh database per test.

mod accounts;
mod cli;
mod config_file;
mod helpers;
mod presence;
mod session_purge;
mod ws_client;
