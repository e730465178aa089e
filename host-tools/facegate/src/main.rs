//! `facegate`: the host command line.
//!
//! One subcommand per file under `cmd/`, each with a `run()`.

mod cmd;
mod memory;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    memory::keep_freed_memory();
    let cli = cmd::Cli::parse();
    match cmd::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
