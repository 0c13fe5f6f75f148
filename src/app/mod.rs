//! The application pool: ringshard starts the app's processes, tells each where to listen,
//! watches them and starts again those that exit, and its proxy routes send requests to them.
//!
//! Each process has a slot with a fixed address (a unix socket `N.sock` in a directory ringshard
//! creates with mode 0700, or with `listen = "port"` a port chosen at start-up), so a proxy
//! route's upstreams are known before any process runs: a process that is starting, or
//! restarting, refuses connections, and the proxy sends the request to another (a request that
//! never reached a process may go anywhere, a POST included). This module supervises; routing,
//! the per-process limit and the queue are the proxy's.
mod gate;
mod supervisor;

use std::path::PathBuf;
use std::time::Duration;

pub use gate::{Gate, GateSpec, Pool, Refused, Slot};
pub use supervisor::{status, AppStatus, Supervisor};

/// How each process is told where to listen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listen {
    /// `RINGSHARD_SOCKET`: a unix socket path.
    Unix,
    /// `PORT`: a TCP port on 127.0.0.1, as Heroku-style apps expect.
    Port,
}

/// An app as configured (`[app.NAME]`, or `--app CMD`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppSpec {
    pub name: String,
    /// Run by `/bin/sh -c`, so that it may hold arguments, quotes, variables and `exec`.
    pub command: String,
    pub processes: usize,
    pub environment: Vec<(String, String)>,
    pub directory: Option<PathBuf>,
    pub listen: Listen,
    /// How long a new process has to accept connections before it is counted as failed.
    pub ready_timeout: Duration,
    /// This many crashes (exits before accepting connections, or within a second of it) within
    /// `crash_window` and the pool stops restarting.
    pub max_crashes: u32,
    pub crash_window: Duration,
    /// Between SIGTERM and SIGKILL when the pool stops.
    pub grace: Duration,
    /// With `listen = "port"`: each process's port, chosen when the configuration is read.
    pub ports: Vec<u16>,
    /// Admission: requests per process at a time, the queue and how long one may wait.
    pub gate: GateSpec,
    /// A process with no answer for this long is stuck: its request gets 504, it is replaced.
    pub request_timeout: Duration,
    /// Recycle a process after this many requests (0: never).
    pub max_requests: u64,
    /// Recycle a process whose resident memory passes this many bytes (0: never).
    pub max_memory: u64,
}

impl AppSpec {
    pub fn new(name: &str, command: &str, processes: usize) -> AppSpec {
        AppSpec {
            name: name.into(),
            command: command.into(),
            processes: processes.max(1),
            environment: Vec::new(),
            directory: None,
            listen: Listen::Unix,
            ready_timeout: Duration::from_secs(30),
            max_crashes: 5,
            crash_window: Duration::from_secs(60),
            grace: Duration::from_secs(30),
            ports: Vec::new(),
            gate: GateSpec {
                concurrency: 1,
                queue: 100,
                queue_timeout: Duration::from_secs(30),
                max_requests: 0,
                pool: Pool::Auto,
            },
            request_timeout: Duration::from_secs(60),
            max_requests: 0,
            max_memory: 0,
        }
    }

    /// Chooses the processes' ports (`listen = "port"`): free ones, asked of the kernel, two per
    /// process (its replacement starts on the other while it still serves).
    pub fn choose_ports(&mut self) -> std::io::Result<()> {
        self.ports.clear();
        let mut held = Vec::new();
        for _ in 0..2 * self.processes {
            let l = std::net::TcpListener::bind("127.0.0.1:0")?;
            self.ports.push(l.local_addr()?.port());
            held.push(l); // held until all are chosen, so no two are the same
        }
        Ok(())
    }

    /// Where slot `i`'s process listens, as a proxy upstream: each slot has two addresses
    /// (`alt` 0 and 1), so that a process being recycled serves on one while its replacement
    /// starts on the other.
    pub fn address(&self, i: usize, alt: usize) -> crate::load::url::Endpoint {
        use crate::load::url::Endpoint;
        match self.listen {
            Listen::Unix => {
                let name = if alt == 0 {
                    format!("{i}.sock")
                } else {
                    format!("{i}b.sock")
                };
                Endpoint::Unix(self.socket_dir().join(name))
            }
            Listen::Port => Endpoint::Tcp(std::net::SocketAddr::from((
                [127, 0, 0, 1],
                self.ports.get(2 * i + alt).copied().unwrap_or(0),
            ))),
        }
    }

    /// The proxy's upstream list: slot `i`'s addresses are entries `2i` and `2i + 1`.
    pub fn upstreams(&self) -> Vec<crate::load::url::Endpoint> {
        (0..self.processes)
            .flat_map(|i| [self.address(i, 0), self.address(i, 1)])
            .collect()
    }

    /// Where the sockets of this process's pool live (under `$XDG_RUNTIME_DIR`, else the
    /// temporary directory).
    pub fn socket_dir(&self) -> PathBuf {
        let base = std::env::var_os("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .filter(|p| p.is_dir())
            .unwrap_or_else(std::env::temp_dir);
        base.join(format!("ringshard-{}-{}", std::process::id(), self.name))
    }
}

/// A name an app may have: letters, digits, `-` and `_` (it names a directory and a log prefix).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}
