//! `ringshard load`: an HTTP/1.1 load generator on io_uring.
//!
//! Each worker thread is pinned to a CPU and owns one io_uring and its share of the
//! connections. Closed loop keeps `--pipeline` requests in flight per connection; open loop
//! (`--rate`) sends each request at its scheduled time and measures latency from that time, so
//! a stalled server shows in the percentiles (coordinated-omission correction, as wrk2).
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Barrier, OnceLock};
use std::time::{Duration, Instant};

mod args;
mod conn;
mod report;
mod request;
mod ring;
mod stats;
pub mod url;
mod worker;

pub use args::LoadArgs;

use request::{RequestSet, RequestSpec};
use stats::Stats;
use url::Endpoint;
use worker::{Live, Outcome, Plan, Worker};

/// What the flags describe, checked.
struct Setup {
    endpoint: Endpoint,
    label: String,
    reqs: RequestSet,
    threads: usize,
}

fn setup(args: &LoadArgs) -> Result<Setup, String> {
    let mut targets = Vec::new();
    for u in &args.url {
        targets.push(url::parse(u)?);
    }
    let first = targets[0].clone();
    if let Some(t) = targets.iter().find(|t| t.endpoint != first.endpoint) {
        return Err(format!(
            "all URLs must name the same server ({} and {})",
            first.endpoint, t.endpoint
        ));
    }
    let paths = match &args.paths {
        Some(file) => paths_file(file)?,
        None => targets.iter().map(|t| t.path.clone()).collect(),
    };
    let method = args.method.as_str();
    if method.is_empty()
        || !method
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    {
        return Err(format!("invalid method '{method}'"));
    }
    let headers = headers(args)?;
    let body = match (&args.body, &args.body_file) {
        (Some(b), _) => b.as_bytes().to_vec(),
        (None, Some(f)) => {
            std::fs::read(f).map_err(|e| format!("cannot read body file {}: {e}", f.display()))?
        }
        (None, None) => Vec::new(),
    };
    let spec = RequestSpec {
        method,
        host: &first.host,
        headers: &headers,
        body: &body,
    };
    let reqs = RequestSet::new(&spec, &paths, args.pipeline as usize);
    let cpus = core_affinity::get_core_ids().map_or(0, |c| c.len());
    let cpus = if cpus > 0 {
        cpus
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    };
    let threads = (args.threads.map_or(cpus, |t| t as usize))
        .min(args.connections as usize)
        .max(1);
    let label = if args.url.len() == 1 {
        args.url[0].clone()
    } else {
        format!("{} (+{} more)", args.url[0], args.url.len() - 1)
    };
    Ok(Setup {
        endpoint: first.endpoint,
        label,
        reqs,
        threads,
    })
}

/// The request paths listed in `file`, one per line (`#` comments and blank lines skipped).
fn paths_file(file: &std::path::Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read paths file {}: {e}", file.display()))?;
    let paths: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect();
    for p in &paths {
        url::check_path(p).map_err(|w| format!("bad path '{p}' in {}: {w}", file.display()))?;
    }
    if paths.is_empty() {
        return Err(format!("paths file {} has no paths", file.display()));
    }
    Ok(paths)
}

/// The extra request headers, with `Connection: close` under `--no-keepalive` (which refuses
/// any other `Connection`).
fn headers(args: &LoadArgs) -> Result<Vec<(String, String)>, String> {
    let mut headers = args
        .headers
        .iter()
        .map(|h| request::parse_header(h))
        .collect::<Result<Vec<_>, _>>()?;
    if args.no_keepalive {
        let connection = |n: &str| n.eq_ignore_ascii_case("connection");
        if let Some((_, v)) = headers
            .iter()
            .find(|(n, v)| connection(n) && !v.eq_ignore_ascii_case("close"))
        {
            return Err(format!("--no-keepalive sends Connection: close, not '{v}'"));
        }
        if !headers.iter().any(|(n, _)| connection(n)) {
            headers.push(("Connection".into(), "close".into()));
        }
    }
    Ok(headers)
}

/// One plain connection up front, so an unreachable target fails with one clear line.
fn preflight(ep: &Endpoint, timeout: Duration) -> Result<(), String> {
    let r = match ep {
        Endpoint::Tcp(a) => std::net::TcpStream::connect_timeout(a, timeout).map(drop),
        Endpoint::Unix(p) => std::os::unix::net::UnixStream::connect(p).map(drop),
    };
    r.map_err(|e| format!("cannot connect to {ep}: {e}"))
}

/// Runs the load generator.
pub fn run(args: LoadArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let s = setup(&args)?;
    preflight(&s.endpoint, args.timeout.unwrap_or(Duration::from_secs(3)))?;
    let duration = match (args.duration, args.requests) {
        (None, None) => Some(Duration::from_secs(10)),
        (d, _) => d,
    };
    crate::sys::signals::catch_interrupt();
    let reqs = Arc::new(s.reqs);
    let lives: Vec<Arc<Live>> = (0..s.threads).map(|_| Arc::new(Live::default())).collect();
    let handles = spawn_workers(&args, duration, &s.endpoint, &reqs, &lives)?;
    if !args.json && std::io::stderr().is_terminal() {
        show_live(&handles, &lives);
    }
    let (stats, elapsed_ns, stalled) = join_workers(handles)?;
    let summary = report::Summary {
        target: &s.label,
        threads: s.threads,
        connections: args.connections,
        pipeline: args.pipeline,
        rate: args.rate,
        elapsed_s: elapsed_ns as f64 / 1e9,
        stats: &stats,
    };
    let out = if args.json {
        report::json(&summary) + "\n"
    } else {
        report::text(&summary)
    };
    std::io::stdout().write_all(out.as_bytes())?;
    if let Some(path) = &args.hdr_out {
        std::fs::write(path, report::hdr_text(&stats.latency))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    if crate::sys::signals::interrupted() {
        return Ok(ExitCode::from(130));
    }
    if stalled {
        eprintln!("ringshard: gave up: no response and no connection for 10 s");
        return Ok(ExitCode::from(1));
    }
    Ok(if stats.requests == 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

type WorkerHandle = std::thread::JoinHandle<Result<Outcome, String>>;

/// Starts one pinned worker per thread with its share of the connections (and of `-n`); they
/// start sending together, once every ring is set up.
fn spawn_workers(
    args: &LoadArgs,
    duration: Option<Duration>,
    endpoint: &Endpoint,
    reqs: &Arc<RequestSet>,
    lives: &[Arc<Live>],
) -> Result<Vec<WorkerHandle>, String> {
    let threads = lives.len();
    let total = args.connections as usize;
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let barrier = Arc::new(Barrier::new(threads));
    let start: Arc<OnceLock<Instant>> = Arc::new(OnceLock::new());
    let mut handles = Vec::with_capacity(threads);
    let mut first = 0usize;
    for (t, live) in lives.iter().enumerate() {
        let n = total / threads + usize::from(t < total % threads);
        let budget = args.requests.map(|r| {
            let share = |k: usize| (r as u128 * k as u128 / total as u128) as u64;
            share(first + n) - share(first)
        });
        let plan = Plan {
            conns: n,
            first_conn: first,
            total_conns: total,
            depth: args.pipeline as usize,
            budget,
            rate: args.rate,
            duration,
            timeout: args.timeout,
            head_method: args.method.eq_ignore_ascii_case("HEAD"),
            one_per_connection: args.no_keepalive,
        };
        first += n;
        let (ep, reqs, live) = (endpoint.clone(), reqs.clone(), live.clone());
        let (barrier, start) = (barrier.clone(), start.clone());
        let core = cores.get(t % cores.len().max(1)).copied();
        let h = std::thread::Builder::new()
            .name(format!("load-{t}"))
            .spawn(move || -> Result<Outcome, String> {
                if let Some(c) = core {
                    core_affinity::set_for_current(c);
                }
                // The ring is made here: with SINGLE_ISSUER the creating thread is its issuer.
                let w = Worker::new(plan, &ep, reqs, live)
                    .map_err(|e| format!("cannot set up io_uring: {e}"));
                barrier.wait();
                let start = *start.get_or_init(Instant::now);
                w?.run(start)
            })
            .map_err(|e| format!("cannot start worker thread: {e}"))?;
        handles.push(h);
    }
    Ok(handles)
}

/// Waits for every worker: their statistics merged, the longest run, and whether one gave up.
fn join_workers(handles: Vec<WorkerHandle>) -> Result<(Stats, u64, bool), String> {
    let mut stats = Stats::new();
    let mut elapsed_ns = 0u64;
    let mut failure = None;
    let mut stalled = false;
    for h in handles {
        match h.join() {
            Ok(Ok(o)) => {
                stats.merge(&o.stats);
                elapsed_ns = elapsed_ns.max(o.elapsed_ns);
                stalled |= o.stalled;
            }
            Ok(Err(e)) => failure = Some(e),
            Err(_) => failure = Some("a worker thread panicked".to_string()),
        }
    }
    match failure {
        Some(e) => Err(e),
        None => Ok((stats, elapsed_ns, stalled)),
    }
}

/// Once a second on a terminal: rate, errors and p99 so far; erased at the end.
fn show_live(handles: &[WorkerHandle], lives: &[Arc<Live>]) {
    let t0 = Instant::now();
    let mut last = (0u64, t0);
    let mut err = std::io::stderr();
    while !handles.iter().all(|h| h.is_finished()) {
        std::thread::sleep(Duration::from_millis(100));
        let now = Instant::now();
        if now.duration_since(last.1) < Duration::from_secs(1) {
            continue;
        }
        let reqs: u64 = lives
            .iter()
            .map(|l| l.requests.load(Ordering::Relaxed))
            .sum();
        let errors: u64 = lives.iter().map(|l| l.errors.load(Ordering::Relaxed)).sum();
        let p99 = lives
            .iter()
            .map(|l| l.p99_us.load(Ordering::Relaxed))
            .max()
            .unwrap_or(0);
        let rate = (reqs - last.0) as f64 / now.duration_since(last.1).as_secs_f64();
        let _ = write!(
            err,
            "\r\x1b[K{:>5.0}s  {:>12.0} req/s  {} errors  p99 {:.3}ms",
            now.duration_since(t0).as_secs_f64(),
            rate,
            errors,
            p99 as f64 / 1000.0
        );
        let _ = err.flush();
        last = (reqs, now);
    }
    let _ = write!(err, "\r\x1b[K");
    let _ = err.flush();
}
