//! The `roster` binary: parse the command line (with the config file it names), hand over to
//! the library.

use roster::config::ConfigError;

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let parsed = match roster::config::parse(std::env::args_os()) {
        Ok(parsed) => parsed,
        Err(ConfigError::Args(e)) => e.exit(),
        Err(e) => {
            eprintln!("roster: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    match roster::cli::run(parsed).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("roster: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
