//! Command-line flags of `ringshard load`.
use std::path::PathBuf;
use std::time::Duration;

/// Flags of `ringshard load`.
#[derive(clap::Args, Debug, Clone)]
#[command(
    after_help = "URL forms: http://host[:port]/path, http://[::1]:port/path, unix:/path/to.sock[:/http/path]"
)]
pub struct LoadArgs {
    /// Target URL(s); several URLs (same server) rotate their paths request by request.
    #[arg(required = true, value_name = "URL")]
    pub url: Vec<String>,

    /// Connections in total, spread over the threads.
    #[arg(short = 'c', long = "connections", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub connections: u32,

    /// How long to run (e.g. 10s, 500ms, 2m); default 10s unless -n is given.
    #[arg(short = 'd', long = "duration", value_parser = parse_duration)]
    pub duration: Option<Duration>,

    /// Total requests to complete (stops at whichever of -n and -d comes first).
    #[arg(short = 'n', long = "requests", value_parser = clap::value_parser!(u64).range(1..))]
    pub requests: Option<u64>,

    /// A new connection per request: each request says `Connection: close`, and the connection
    /// is closed once its response is whole and opened again (as `wrk -H "Connection: close"`,
    /// `ab` without -k, `oha --disable-keepalive`).
    #[arg(long = "no-keepalive", conflicts_with = "pipeline")]
    pub no_keepalive: bool,

    /// Requests in flight per connection (HTTP/1.1 pipelining depth).
    #[arg(long = "pipeline", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub pipeline: u32,

    /// Worker threads, each pinned to its own CPU with its own io_uring (default: available CPUs).
    #[arg(short = 't', long = "threads", value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub threads: Option<u32>,

    /// Open loop: requests per second in total; latency counts from each request's intended send time.
    #[arg(short = 'R', long = "rate", value_parser = parse_rate)]
    pub rate: Option<f64>,

    /// Request method.
    #[arg(short = 'm', long = "method", default_value = "GET")]
    pub method: String,

    /// Extra request header, "Name: value" (repeatable).
    #[arg(short = 'H', long = "header", value_name = "HEADER")]
    pub headers: Vec<String>,

    /// Request body.
    #[arg(long = "body", conflicts_with = "body_file")]
    pub body: Option<String>,

    /// Request body read from a file.
    #[arg(long = "body-file", value_name = "FILE")]
    pub body_file: Option<PathBuf>,

    /// File of request paths (one per line) to rotate through, on the server of the URL.
    #[arg(long = "paths", value_name = "FILE")]
    pub paths: Option<PathBuf>,

    /// Count a request as a timeout error (and reconnect) when it takes longer than this.
    #[arg(long = "timeout", value_parser = parse_duration)]
    pub timeout: Option<Duration>,

    /// Print the results as JSON.
    #[arg(long = "json")]
    pub json: bool,

    /// Write the latency percentile distribution in HdrHistogram's text format (milliseconds).
    #[arg(long = "hdr-out", value_name = "FILE")]
    pub hdr_out: Option<PathBuf>,
}

/// Parses `10s`, `500ms`, `2m`, `1h`, `250us` or a bare number of seconds; zero is refused.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    match crate::config::parse_duration(s)? {
        d if d.is_zero() => Err(format!("'{s}' must be a positive duration")),
        d => Ok(d),
    }
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= 1e9 => Ok(v),
        _ => Err(format!(
            "'{s}' is not a positive rate in requests per second"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("abc").is_err());
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("5x").is_err());
    }
}
