//! Entry point: parse the command line and hand over to `kura::cli`, which sets up logging once
//! the configuration is loaded.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = kura::cli::Cli::parse();
    match kura::cli::dispatch(cli) {
        Ok(code) => code,
        Err(err) => {
            // The chain gives the cause and its context, e.g. which config key or path failed.
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
