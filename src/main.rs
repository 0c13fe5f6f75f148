//! The `ringshard` binary: `serve`, `load` and `probe`.
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "ringshard",
    version,
    about = "A thread-per-core HTTP/1.1 server and load generator on io_uring"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve HTTP/1.1 (defaults: 127.0.0.1:8080, one shard per allowed CPU).
    Serve(Box<ringshard::config::ServeArgs>),
    /// Generate HTTP load against a server and report throughput and latency.
    Load(Box<ringshard::load::LoadArgs>),
    /// Report what this kernel lets ringshard use: io_uring, its features, the limits that matter.
    Probe(ringshard::probe::ProbeArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => ringshard::server::run_cli(*args),
        Command::Load(args) => ringshard::load::run(*args),
        Command::Probe(args) => ringshard::probe::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ringshard: {e}");
            ExitCode::from(2)
        }
    }
}
