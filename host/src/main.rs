//! The `switchboard` binary: parse arguments, run the command (which sets up logging once
//! its config is read: `switchboard::telemetry`).

use clap::Parser;
use std::process::ExitCode;
use switchboard::cli::Cli;
use switchboard::commands;

/// mimalloc, not the system's allocator: a host allocates and frees for every request, run
/// and query (glibc's malloc and free were ~12 % of a busy host's CPU; docs/benchmarks.md,
/// run 15).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
