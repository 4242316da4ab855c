//! The `wardkey` binary: `wardkey serve` runs the identity server; the other
//! subcommands administer its directory. Thin by design: parse arguments,
//! load configuration, call the libraries.

mod cli;

use std::process::ExitCode;

use clap::Parser;

/// The server allocates and frees small buffers on every request (headers,
/// JSON, tokens): under load glibc's malloc took 15 % of the server's CPU
/// (BENCHMARKS.md, "Where the Redis time goes"); mimalloc is built for this.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    // Both ring (via reqwest) and aws-lc-rs are compiled in; rustls needs to
    // be told which to use or it panics at the first TLS handshake.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
