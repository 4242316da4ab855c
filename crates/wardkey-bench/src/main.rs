//! The `wardkey-bench` binary: parse the command line and run the mode.

use std::process::ExitCode;

use clap::Parser;
use wardkey_bench::cli::{Cli, Command};
use wardkey_bench::commands;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Setup(args) => commands::setup(args).await,
            Command::ShiftChange(args) => commands::shift_change(args).await,
            Command::Oidc(args) => commands::oidc(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
