//! `ringshard load`: the HTTP load generator (being built).
use std::process::ExitCode;

/// Flags of `ringshard load`.
#[derive(clap::Args, Debug)]
pub struct LoadArgs {
    /// Target URL.
    pub url: Vec<String>,
}

/// Runs the load generator.
pub fn run(_args: LoadArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    Err("ringshard load is not built yet".into())
}
