//! The `ringshard` binary: `serve`, `check-config`, `upgrade`, `load` and `probe`.
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
    #[command(args_override_self = true)]
    Serve(Box<ringshard::config::ServeArgs>),
    /// Check a configuration file: print the effective configuration, or every error with its
    /// line and key.
    CheckConfig {
        /// The TOML file.
        file: std::path::PathBuf,
    },
    /// Generate HTTP load against a server and report throughput and latency.
    Load(Box<ringshard::load::LoadArgs>),
    /// Report what this kernel lets ringshard use: io_uring, its features, the limits that matter.
    Probe(ringshard::probe::ProbeArgs),
    /// Upgrade a running server without refusing a connection: SIGUSR2 to the pid in the file,
    /// then wait until a new process serves (exit 0) or the upgrade failed (exit 1).
    Upgrade {
        /// The server's `--pid-file`.
        #[arg(long, value_name = "FILE")]
        pid_file: std::path::PathBuf,
        /// How long to wait for the new process (e.g. 2m).
        #[arg(long, default_value = "150s", value_parser = ringshard::config::parse_duration)]
        timeout: std::time::Duration,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    let result = match cli.command {
        Command::Serve(args) => {
            // The flags after `serve`, read again over a configuration file's.
            let argv = std::env::args_os()
                .skip_while(|a| a != "serve")
                .skip(1)
                .collect();
            ringshard::server::run_cli(*args, argv)
        }
        Command::CheckConfig { file } => ringshard::server::check_config(file),
        Command::Load(args) => ringshard::load::run(*args),
        Command::Probe(args) => ringshard::probe::run(args),
        Command::Upgrade { pid_file, timeout } => ringshard::upgrade::run_cli(pid_file, timeout),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ringshard: {e}");
            ExitCode::from(2)
        }
    }
}

/// Help and version print as clap has them; a usage error is one line naming the problem and
/// where to read more, not clap's block of tips and usage.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        e.exit();
    }
    let rendered = e.render().to_string();
    // The message is the first paragraph (a list of missing arguments continues it, indented).
    let message: Vec<&str> = rendered
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect();
    let sub = std::env::args()
        .nth(1)
        .filter(|a| ["serve", "load", "probe", "check-config"].contains(&a.as_str()));
    let help = match sub {
        Some(sub) => format!("ringshard {sub} --help"),
        None => "ringshard --help".into(),
    };
    eprintln!("{}; see '{help}'", message.join(" "));
    ExitCode::from(2)
}
