//! `ringshard serve` flags, validated into one [`ServeConfig`] in one place.
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::http::conn::MAX_HEADERS_CAP;
use crate::http::limits::{Limits, DEFAULT_MAX_BODY, DEFAULT_MAX_HEAD, DEFAULT_MAX_HEADERS};

/// Batched waits: up to this many completions per busy turn...
pub const DEFAULT_WAIT_BATCH: u32 = 64;
/// ...gathered for at most this many microseconds: longer holds cost more latency than the
/// turns they save (BENCHMARKS.md).
pub const DEFAULT_WAIT_USEC: u32 = 200;
/// ...and only while the shard's thread wants at least this much of a CPU (percent): a shard
/// with CPU to spare answers at once (see `uring::busy` and DESIGN.md).
pub const DEFAULT_WAIT_BUSY: u32 = 60;

/// Task-running mode of each ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TaskRunFlag {
    /// The best the kernel has: defer, else coop, else plain.
    Auto,
    /// SINGLE_ISSUER + DEFER_TASKRUN (6.1+).
    Defer,
    /// COOP_TASKRUN (5.19+).
    Coop,
    /// No task-running flags.
    Plain,
}

/// Which I/O engine runs the shards.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum EngineFlag {
    /// io_uring when the kernel allows it, else epoll (with a line saying why).
    Auto,
    /// io_uring, or fail at start-up saying why not.
    Uring,
    /// epoll with non-blocking sockets: same HTTP core and handlers.
    Epoll,
}

/// How connections receive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RecvMode {
    /// Multishot recv where the kernel has it, else single-shot.
    Auto,
    /// One multishot recv per connection (6.0+).
    Multishot,
    /// One recv per read, re-armed after each.
    Single,
}

/// Flags of `ringshard serve`.
#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// Where to listen (repeat for several; every shard accepts on all): an IPv4 or IPv6 address
    /// (`127.0.0.1:8080`, `[::1]:8080`; a socket per shard with SO_REUSEPORT) or a unix socket
    /// (`unix:/run/ringshard.sock`; one socket the shards share, removed at shutdown). Default:
    /// 127.0.0.1:8080, unless systemd passed sockets (LISTEN_FDS).
    #[arg(long, value_name = "ADDR")]
    pub listen: Vec<String>,
    /// Permissions of the unix sockets `--listen` creates (octal).
    #[arg(long, value_name = "MODE", default_value = "666", value_parser = parse_mode)]
    pub unix_mode: u32,
    /// Serve on an inherited listening socket instead of binding (repeat for one per shard; a
    /// single one is shared by every shard). For supervisors and binary upgrades.
    #[arg(long = "listen-fd", value_name = "FD")]
    pub listen_fd: Vec<i32>,
    /// I/O engine.
    #[arg(long, value_enum, default_value_t = EngineFlag::Auto)]
    pub engine: EngineFlag,
    /// Number of shards (threads, each pinned to its own CPU); default: the CPUs this process may use. More than that runs, with a warning, several shards per CPU.
    #[arg(long)]
    pub shards: Option<usize>,
    /// Largest request head (request line and headers); 431 above it, 414 when the request line alone is longer.
    #[arg(long, default_value_t = DEFAULT_MAX_HEAD, value_parser = parse_size)]
    pub max_head_size: usize,
    /// Most header fields in a request; 431 above it.
    #[arg(long, default_value_t = DEFAULT_MAX_HEADERS)]
    pub max_headers: usize,
    /// Largest request body; 413 above it.
    #[arg(long, default_value_t = DEFAULT_MAX_BODY, value_parser = parse_size)]
    pub max_body_size: usize,
    /// Time for a request head to arrive whole (from its first byte, or from accept); then 408.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub header_timeout: Duration,
    /// Longest pause while a request body arrives; then 408.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub body_timeout: Duration,
    /// Idle keep-alive connections are closed after this.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub keepalive_timeout: Duration,
    /// A peer that reads nothing of a response for this long is dropped.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub write_timeout: Duration,
    /// On SIGINT/SIGTERM, time allowed for requests in flight before exiting anyway.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,
    /// Listen backlog of each shard's socket.
    #[arg(long, default_value_t = 4096)]
    pub backlog: i32,
    /// Connections one shard holds at most: at the limit it stops accepting (new connections
    /// wait in the backlog) and starts again once it is down to nine tenths. Default: the
    /// open-files limit shared out between the shards, less a reserve for files and upstreams.
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// Do not pin shards to CPUs.
    #[arg(long)]
    pub no_pin: bool,
    /// Submission queue entries per ring (the completion queue is four times larger).
    #[arg(long, default_value_t = 1024)]
    pub ring_entries: u32,
    /// Ring task-running mode.
    #[arg(long, value_enum, default_value_t = TaskRunFlag::Auto)]
    pub taskrun: TaskRunFlag,
    /// Most completions a busy loop turn waits to gather (as many as the last turn had), for at most --wait-usec; 1 wakes at the first. Default 64 where the kernel has min-timeout waits (6.12+), else 1.
    #[arg(long)]
    pub wait_batch: Option<u32>,
    /// Longest a loop turn waits to gather completions, in microseconds (default 200): fewer, fuller turns under load for at most this much added latency.
    #[arg(long)]
    pub wait_usec: Option<u32>,
    /// Batch waits only while the shard is busy: from a window of 10 ms or more in which its thread ran or waited to run for at least this share of it (percent) until one below half of that; 0 batches always. Default 60.
    #[arg(long, value_name = "PERCENT", value_parser = clap::value_parser!(u32).range(0..=100))]
    pub wait_busy: Option<u32>,
    /// Keep accepted sockets in a registered file table of this many slots per shard (0: plain descriptors); caps connections per shard, the rest wait in the backlog. Default: the open-files limit, at most 65536, where the kernel has direct accept (5.19+), else plain descriptors.
    #[arg(long)]
    pub registered_files: Option<u32>,
    /// Run a kernel thread that polls the submission queue (SQPOLL), idling after this long (e.g. 1000ms); off by default.
    #[arg(long, value_parser = parse_duration)]
    pub sqpoll: Option<Duration>,
    /// Send responses of at least this many bytes with SEND_ZC (0: never).
    #[arg(long, default_value_t = 0, value_parser = parse_size)]
    pub send_zc: usize,
    /// Most completions handled per loop turn (0: all that are ready).
    #[arg(long, default_value_t = 0)]
    pub reap: u32,
    /// Receive mode.
    #[arg(long, value_enum, default_value_t = RecvMode::Auto)]
    pub recv: RecvMode,
    /// Receive buffers per shard in the provided-buffer ring (a power of two).
    #[arg(long, default_value_t = 512)]
    pub buf_count: u32,
    /// Size of each receive buffer.
    #[arg(long, default_value_t = 4096, value_parser = parse_size)]
    pub buf_size: usize,
    /// Print every shard's counters as a table at exit.
    #[arg(long)]
    pub stats: bool,
    /// Write the process's pid to this file once every shard listens; removed at exit.
    #[arg(long, value_name = "FILE")]
    pub pid_file: Option<PathBuf>,
    /// The binary an upgrade (SIGUSR2, `ringshard upgrade`) starts [default: the path this
    /// process was started from, read again at the upgrade, so a new file installed there runs].
    #[arg(long, value_name = "PATH")]
    pub binary: Option<PathBuf>,
    /// Write an access log line per request to this file ("off": none). SIGUSR1 reopens it.
    #[arg(long, value_name = "PATH")]
    pub access_log: Option<PathBuf>,
    /// The access log's format.
    #[arg(long, value_enum, default_value_t = crate::access_log::LogFormat::Combined)]
    pub access_log_format: crate::access_log::LogFormat,
    /// Turn off the built-in routes (/, /plaintext, /json, /echo, /health).
    #[arg(long)]
    pub no_builtin: bool,
    /// Read the configuration from this TOML file (`ringshard check-config FILE` checks one);
    /// flags given here override it.
    #[arg(long, value_name = "FILE", conflicts_with = "static_dir")]
    pub config: Option<std::path::PathBuf>,
    /// Serve the files of DIR at / (a configuration with that one route).
    #[arg(long = "static", value_name = "DIR")]
    pub static_dir: Option<std::path::PathBuf>,
    /// Send every request to this upstream (http://HOST:PORT or unix:/path; repeat for several,
    /// taken in turn): a configuration with that one proxy route at /.
    #[arg(long, value_name = "URL", conflicts_with_all = ["static_dir", "config"], value_parser = crate::proxy::options::parse_upstream)]
    pub proxy: Vec<crate::load::url::Endpoint>,
    /// Run this command as the app (`/bin/sh -c`), in --processes processes, each listening on
    /// the unix socket named by RINGSHARD_SOCKET, and send every request to them.
    #[arg(long, value_name = "COMMAND", conflicts_with_all = ["static_dir", "config", "proxy"])]
    pub app: Option<String>,
    /// Processes of --app (default: one per shard).
    #[arg(long, value_name = "N", requires = "app", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub processes: Option<u16>,
}

/// `serve`'s flags on their own, for reading them again with a configuration file's before
/// them: a flag given twice takes its last value, so the command line overrides the file.
#[derive(clap::Parser, Debug)]
#[command(no_binary_name = true, args_override_self = true)]
pub struct ServeCommand {
    #[command(flatten)]
    pub args: ServeArgs,
}

impl ServeCommand {
    /// Parses `serve`'s flags; the error is clap's first line, without its "error: ".
    pub fn parse<I: Into<std::ffi::OsString> + Clone>(
        argv: impl IntoIterator<Item = I>,
    ) -> Result<ServeArgs, String> {
        use clap::Parser;
        ServeCommand::try_parse_from(argv)
            .map(|c| c.args)
            .map_err(|e| {
                let text = e.render().to_string();
                let first = text.lines().next().unwrap_or("").trim();
                first.strip_prefix("error: ").unwrap_or(first).to_string()
            })
    }
}

/// A validated server configuration.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// Where to listen; every shard accepts on each.
    pub listen: Vec<Listen>,
    /// Permissions of the unix sockets it creates.
    pub unix_mode: u32,
    /// How many of the last `listen` entries are the site's endpoints' own (`[metrics] listen`).
    pub endpoint_listeners: u8,
    pub engine: EngineFlag,
    pub shards: usize,
    pub pin: bool,
    pub limits: Limits,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub keepalive_timeout: Duration,
    pub write_timeout: Duration,
    pub shutdown_timeout: Duration,
    pub backlog: i32,
    /// Per shard; 0: no limit.
    pub max_connections: usize,
    pub ring_entries: u32,
    pub taskrun: TaskRunFlag,
    pub wait_batch: u32,
    pub wait_usec: u32,
    /// Busy share (percent) from which waits batch; 0: always.
    pub wait_busy: u32,
    /// The wait knobs were given on the command line: refuse them if the kernel lacks them.
    pub wait_explicit: bool,
    /// Registered file slots per shard; `None`: chosen at start-up (see `--registered-files`).
    pub registered_files: Option<u32>,
    pub sqpoll_idle_ms: Option<u32>,
    pub send_zc: usize,
    pub reap: u32,
    pub recv: RecvMode,
    pub buf_count: u16,
    pub buf_size: usize,
    pub builtin: bool,
    /// Print the counters table at exit.
    pub stats: bool,
    /// Where the pid is written (and removed at exit).
    pub pid_file: Option<PathBuf>,
    /// The binary an upgrade starts (`None`: the one this process runs, by its path).
    pub binary: Option<PathBuf>,
    /// Inherited listening descriptors, used instead of binding (one per shard, or one shared).
    pub inherited: Vec<i32>,
    /// The access log's file, if any, and its format.
    pub access_log: Option<PathBuf>,
    pub access_log_format: crate::access_log::LogFormat,
    /// Look up each client's address at accept (the access log writes it, a proxy route
    /// forwards it).
    pub peers: bool,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            listen: vec![Listen::Tcp(SocketAddr::from(([127, 0, 0, 1], 8080)))],
            unix_mode: 0o666,
            endpoint_listeners: 0,
            engine: EngineFlag::Auto,
            shards: crate::sys::cpus::allowed().len().max(1),
            pin: true,
            limits: Limits::default(),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(30),
            shutdown_timeout: Duration::from_secs(30),
            backlog: 4096,
            max_connections: 0,
            ring_entries: 1024,
            taskrun: TaskRunFlag::Auto,
            wait_batch: DEFAULT_WAIT_BATCH,
            wait_usec: DEFAULT_WAIT_USEC,
            wait_busy: DEFAULT_WAIT_BUSY,
            wait_explicit: false,
            registered_files: None,
            sqpoll_idle_ms: None,
            send_zc: 0,
            reap: 0,
            recv: RecvMode::Auto,
            buf_count: 512,
            buf_size: 4096,
            builtin: true,
            stats: false,
            pid_file: None,
            binary: None,
            inherited: Vec::new(),
            access_log: None,
            access_log_format: crate::access_log::LogFormat::Combined,
            peers: false,
        }
    }
}

impl ServeArgs {
    /// Checks every flag and resolves the address; the message names the flag at fault.
    pub fn validate(&self) -> Result<ServeConfig, String> {
        let mut listen = self
            .listen
            .iter()
            .map(|l| parse_listen(l))
            .collect::<Result<Vec<_>, _>>()?;
        let activated =
            crate::sys::activation::listen_fds(crate::upgrade::activation_meant_for_parent())?;
        listen.extend(activated.into_iter().map(|(fd, name)| Listen::Fd(fd, name)));
        if listen.is_empty() && self.listen_fd.is_empty() {
            listen.push(Listen::Tcp(SocketAddr::from(([127, 0, 0, 1], 8080))));
        }
        let mut paths: Vec<&PathBuf> = Vec::new();
        for l in &listen {
            if let Listen::Unix(p) = l {
                if paths.contains(&p) {
                    return Err(format!("--listen unix:{}: given twice", p.display()));
                }
                paths.push(p);
            }
        }
        if self.listen_fd.iter().any(|&fd| fd < 0) {
            return Err("--listen-fd takes a descriptor number (0 or more)".into());
        }
        let shards = match self.shards {
            Some(0) => return Err("--shards must be at least 1".into()),
            Some(n) if n > 1024 => return Err(format!("--shards {n} is more than 1024")),
            Some(n) => n,
            None => crate::sys::cpus::allowed().len().max(1),
        };
        self.check_limits()?;
        self.check_ring()?;
        let (wait_batch, wait_usec) = self.waits()?;
        let wait_busy = self.wait_busy.unwrap_or(DEFAULT_WAIT_BUSY); // clap checked 0..=100
        Ok(ServeConfig {
            listen,
            unix_mode: self.unix_mode,
            endpoint_listeners: 0,
            engine: self.engine,
            shards,
            pin: !self.no_pin,
            limits: Limits {
                max_head: self.max_head_size,
                max_headers: self.max_headers,
                max_body: self.max_body_size,
            },
            header_timeout: self.header_timeout,
            body_timeout: self.body_timeout,
            keepalive_timeout: self.keepalive_timeout,
            write_timeout: self.write_timeout,
            shutdown_timeout: self.shutdown_timeout,
            backlog: self.backlog,
            max_connections: self.max_connections.unwrap_or(0),
            ring_entries: self.ring_entries,
            taskrun: self.taskrun,
            wait_batch,
            wait_usec,
            wait_busy,
            wait_explicit: self.wait_batch.is_some()
                || self.wait_usec.is_some()
                || self.wait_busy.is_some(),
            registered_files: self.registered_files,
            sqpoll_idle_ms: self
                .sqpoll
                .map(|d| d.as_millis().min(u32::MAX as u128) as u32),
            send_zc: self.send_zc,
            reap: self.reap,
            recv: self.recv,
            buf_count: self.buf_count as u16,
            buf_size: self.buf_size,
            builtin: !self.no_builtin,
            stats: self.stats,
            pid_file: self.pid_file.clone(),
            binary: self.binary.clone(),
            inherited: self.listen_fd.clone(),
            access_log: self.access_log.clone().filter(|p| p.as_os_str() != "off"),
            access_log_format: self.access_log_format,
            peers: self
                .access_log
                .as_ref()
                .is_some_and(|p| p.as_os_str() != "off"),
        })
    }
}

impl ServeArgs {
    /// The HTTP limits and timeouts.
    fn check_limits(&self) -> Result<(), String> {
        if self.max_head_size < 64 {
            return Err("--max-head-size must be at least 64 bytes".into());
        }
        if self.max_headers == 0 || self.max_headers > MAX_HEADERS_CAP {
            return Err(format!(
                "--max-headers must be between 1 and {MAX_HEADERS_CAP}"
            ));
        }
        for (name, d) in [
            ("--header-timeout", self.header_timeout),
            ("--body-timeout", self.body_timeout),
            ("--keepalive-timeout", self.keepalive_timeout),
            ("--write-timeout", self.write_timeout),
        ] {
            if d.is_zero() {
                return Err(format!("{name} must be more than zero"));
            }
        }
        if self.backlog < 1 {
            return Err("--backlog must be at least 1".into());
        }
        Ok(())
    }

    /// The ring's sizes.
    fn check_ring(&self) -> Result<(), String> {
        if !(2..=32768).contains(&self.buf_count) || !self.buf_count.is_power_of_two() {
            return Err("--buf-count must be a power of two between 2 and 32768".into());
        }
        if !(512..=1 << 20).contains(&self.buf_size) {
            return Err("--buf-size must be between 512 bytes and 1 MiB".into());
        }
        if !(2..=32768).contains(&self.ring_entries) {
            return Err("--ring-entries must be between 2 and 32768".into());
        }
        if self.registered_files.is_some_and(|n| n > 1 << 20) {
            return Err("--registered-files must be at most 1048576".into());
        }
        Ok(())
    }

    /// The batched waits' size and window, as given or defaulted.
    fn waits(&self) -> Result<(u32, u32), String> {
        // The default gives way to a small ring; an explicit value is checked below.
        let wait_batch = self
            .wait_batch
            .unwrap_or(DEFAULT_WAIT_BATCH.min(self.ring_entries));
        let wait_usec = self.wait_usec.unwrap_or(DEFAULT_WAIT_USEC);
        if wait_batch == 0 || wait_batch > self.ring_entries {
            return Err("--wait-batch must be between 1 and --ring-entries".into());
        }
        if self.wait_batch.is_some_and(|b| b > 1) && wait_usec == 0 {
            return Err("--wait-batch above 1 needs --wait-usec above 0".into());
        }
        if wait_usec > 1_000_000 {
            return Err("--wait-usec must be at most 1000000 (one second)".into());
        }
        // --wait-usec 0 alone turns batching off.
        let wait_batch = if wait_usec == 0 { 1 } else { wait_batch };
        Ok((wait_batch, wait_usec))
    }
}

/// Where a server listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listen {
    /// A TCP address: one socket per shard, bound with SO_REUSEPORT.
    Tcp(SocketAddr),
    /// A unix socket path: one socket the shards share, removed at shutdown.
    Unix(PathBuf),
    /// A listening socket systemd passed (LISTEN_FDS), with its name: shared by the shards.
    Fd(i32, String),
}

impl std::fmt::Display for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Listen::Tcp(a) => write!(f, "http://{a}"),
            Listen::Unix(p) => write!(f, "unix:{}", p.display()),
            Listen::Fd(fd, name) => write!(f, "fd {fd} ({name}, from systemd)"),
        }
    }
}

/// `--listen`: an address, a host name and port, or `unix:PATH`.
pub fn parse_listen(s: &str) -> Result<Listen, String> {
    match s.strip_prefix("unix:") {
        Some("") => Err("--listen unix: needs a path, e.g. unix:/run/ringshard.sock".into()),
        Some(p) if p.len() > 107 => Err(format!(
            "--listen unix:{p}: the path is longer than a unix socket address holds (107 bytes)"
        )),
        Some(p) => Ok(Listen::Unix(PathBuf::from(p))),
        None => resolve(s).map(Listen::Tcp),
    }
}

/// `--unix-mode`: octal permissions.
fn parse_mode(s: &str) -> Result<u32, String> {
    match u32::from_str_radix(s.trim_start_matches("0o"), 8) {
        Ok(m) if m <= 0o777 => Ok(m),
        _ => Err(format!("'{s}' is not an octal mode such as 660")),
    }
}

fn resolve(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    match s.to_socket_addrs() {
        Ok(mut addrs) => addrs
            .next()
            .ok_or_else(|| format!("--listen {s}: the name has no address")),
        Err(e) => Err(format!(
            "--listen {s}: not an address like 127.0.0.1:8080 or [::1]:8080 ({e})"
        )),
    }
}

/// Parses `10s`, `500ms`, `250us`, `2m`, `1h` or a plain number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let v: f64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a duration like 10s, 500ms or 2m"))?;
    let secs = match unit {
        "" | "s" => v,
        "ms" => v / 1000.0,
        "us" => v / 1e6,
        "m" => v * 60.0,
        "h" => v * 3600.0,
        _ => {
            return Err(format!(
                "'{s}': unknown unit '{unit}' (use us, ms, s, m or h)"
            ))
        }
    };
    if !secs.is_finite() || !(0.0..=86_400.0 * 365.0).contains(&secs) {
        return Err(format!("'{s}' is out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses `4096`, `16k`, `16KiB`, `1m`, `1MiB`.
pub fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let v: usize = num
        .parse()
        .map_err(|_| format!("'{s}' is not a size like 4096, 16k or 1m"))?;
    let mult = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(format!("'{s}': unknown unit '{unit}' (use k, m or g)")),
    };
    v.checked_mul(mult)
        .ok_or_else(|| format!("'{s}' is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5 fortnights").is_err());
        assert_eq!(parse_size("16k"), Ok(16384));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert!(parse_size("-1").is_err());
        assert!(parse_size("99999999999999999999g").is_err());
    }
}
