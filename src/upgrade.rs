//! Zero-downtime binary upgrade. On `SIGUSR2` the running (old) process starts the binary at
//! the path it was started from (`--binary` overrides) with the same arguments and hands it its
//! very listening sockets, each keeping its descriptor number across `exec`: a TCP address's
//! `SO_REUSEPORT` sockets in shard order, unix sockets, socket-activated and `--listen-fd`
//! ones. `RINGSHARD_UPGRADE_FDS` names the keyed ones (`tcp:ADDR` as configured, `unix:PATH`)
//! so the new process takes each for the listener it belongs to, shard by shard. The new
//! process says it is ready on a socket whose number `RINGSHARD_UPGRADE_READY` gives, once its
//! app processes accept and every shard listens; only then the old one stops accepting and
//! drains. If the new binary exits or is not ready in time, the old one goes on serving.
use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const FDS_VAR: &str = "RINGSHARD_UPGRADE_FDS";
const READY_VAR: &str = "RINGSHARD_UPGRADE_READY";

/// How long a new process has to become ready, in milliseconds: 120 s, or more when its apps
/// may take longer to start (see [`allow_for_apps`]).
static READY_WITHIN_MS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(120_000);

/// The apps of this process take up to `start` to become ready: a new process is given that,
/// and a minute more, before the upgrade is counted as failed.
pub fn allow_for_apps(start: Duration) {
    let ms = (start + Duration::from_secs(60)).as_millis() as u64;
    READY_WITHIN_MS.fetch_max(ms, std::sync::atomic::Ordering::Relaxed);
}

fn ready_within() -> Duration {
    Duration::from_millis(READY_WITHIN_MS.load(std::sync::atomic::Ordering::Relaxed))
}

/// What a previous process handed to this one, read once from the environment.
struct Handed {
    sockets: Vec<(String, Vec<OwnedFd>)>,
    ready: Option<UnixStream>,
    /// An upgrade started this process.
    upgraded: bool,
}

static HANDED: Mutex<Option<Handed>> = Mutex::new(None);

/// Reads (once) what an upgrading parent handed over; errors name the variable.
fn handed() -> Result<std::sync::MutexGuard<'static, Option<Handed>>, String> {
    let mut h = HANDED.lock().unwrap_or_else(|e| e.into_inner());
    if h.is_none() {
        *h = Some(read_env()?);
    }
    Ok(h)
}

fn read_env() -> Result<Handed, String> {
    let mut sockets = Vec::new();
    if let Ok(list) = std::env::var(FDS_VAR) {
        for entry in list.split(';').filter(|e| !e.is_empty()) {
            let bad = || format!("{FDS_VAR}: malformed entry {entry:?}");
            let (key, fds) = entry.split_once('=').ok_or_else(bad)?;
            let key = unhex(key).ok_or_else(bad)?;
            let fds = fds
                .split(',')
                .map(|n| {
                    let n: RawFd = n.parse().map_err(|_| bad())?;
                    crate::sys::socket::from_inherited(n)
                        .map_err(|e| format!("{FDS_VAR}: {key}: descriptor {n}: {e}"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            sockets.push((key, fds));
        }
    }
    let upgraded = std::env::var_os(READY_VAR).is_some();
    let ready = match std::env::var(READY_VAR) {
        Ok(n) => {
            let n: RawFd = n
                .parse()
                .map_err(|_| format!("{READY_VAR}={n}: not a descriptor"))?;
            Some(UnixStream::from(
                crate::sys::socket::adopt_stream(n)
                    .map_err(|e| format!("{READY_VAR}: descriptor {n}: {e}"))?,
            ))
        }
        Err(_) => None,
    };
    Ok(Handed {
        sockets,
        ready,
        upgraded,
    })
}

/// Reads what an upgrading parent handed over, and takes its variables out of the environment:
/// the app processes this one starts must not see them. Called while the process has one
/// thread.
pub fn take_env() -> Result<(), String> {
    drop(handed()?);
    std::env::remove_var(FDS_VAR);
    std::env::remove_var(READY_VAR);
    Ok(())
}

/// Whether this process was started by an upgrade.
pub fn is_upgrade() -> bool {
    handed().is_ok_and(|h| h.as_ref().is_some_and(|h| h.upgraded))
}

/// The sockets handed over for listener `key`, if any (taken: asked again, none).
pub fn take(key: &str) -> Result<Vec<OwnedFd>, String> {
    let mut h = handed()?;
    let sockets = &mut h.as_mut().expect("read above").sockets;
    Ok(match sockets.iter().position(|(k, _)| k == key) {
        Some(i) => sockets.remove(i).1,
        None => Vec::new(),
    })
}

/// The sockets handed over that no configured listener took: still served, since closing one
/// would reset the connections waiting in its backlog.
pub fn take_rest() -> Result<Vec<(String, Vec<OwnedFd>)>, String> {
    let mut h = handed()?;
    Ok(std::mem::take(&mut h.as_mut().expect("read above").sockets))
}

/// Tells the process that started this one that it serves now.
pub fn say_ready() {
    let Ok(mut h) = handed() else { return };
    if let Some(mut s) = h.as_mut().and_then(|h| h.ready.take()) {
        let _ = writeln!(s, "ready {}", std::process::id());
    }
}

/// systemd's socket-activation variables were meant for the parent that handed its sockets
/// over: they hold for this process too.
pub fn activation_meant_for_parent() -> bool {
    is_upgrade()
        && std::env::var("LISTEN_PID")
            .ok()
            .and_then(|p| p.parse::<u32>().ok())
            .is_some_and(|p| p == std::os::unix::process::parent_id())
}

/// An upgrade in progress, seen from the old process.
pub struct Upgrade {
    child: std::process::Child,
    ready: UnixStream,
    said: Vec<u8>,
    started: Instant,
}

/// Where an upgrade stands.
pub enum Progress {
    Waiting,
    /// The new process (its pid) serves.
    Ready(u32),
    /// It failed; the old process goes on serving.
    Failed(String),
}

impl Upgrade {
    /// Starts `binary` with `args` (the old process's command line after the program name),
    /// handing over `keyed` sockets by name and `all` listening descriptors.
    pub fn start(
        binary: &PathBuf,
        args: &[OsString],
        keyed: &[(String, Vec<RawFd>)],
        all: &[RawFd],
    ) -> Result<Upgrade, String> {
        let (ours, theirs) =
            UnixStream::pair().map_err(|e| format!("cannot make the readiness socket: {e}"))?;
        ours.set_nonblocking(true)
            .map_err(|e| format!("readiness socket: {e}"))?;
        let list: Vec<String> = keyed
            .iter()
            .map(|(k, fds)| {
                let fds: Vec<String> = fds.iter().map(ToString::to_string).collect();
                format!("{}={}", hex(k), fds.join(","))
            })
            .collect();
        let mut cmd = std::process::Command::new(binary);
        cmd.args(args)
            .env(FDS_VAR, list.join(";"))
            .env(READY_VAR, theirs.as_raw_fd().to_string());
        if std::env::var_os("LISTEN_FDS").is_some() {
            cmd.env("LISTEN_PID", std::process::id().to_string());
        }
        // systemd's watchdog names this process; the new one pings for itself once it is the
        // main process (NotifyAccess=all takes its pings before).
        cmd.env_remove("WATCHDOG_PID");
        let mut keep = all.to_vec();
        keep.push(theirs.as_raw_fd());
        crate::sys::process::keep_descriptors(&mut cmd, keep);
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        drop(theirs);
        Ok(Upgrade {
            child,
            ready: ours,
            said: Vec::new(),
            started: Instant::now(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Looks (without waiting) at what the new process said or did.
    pub fn poll(&mut self) -> Progress {
        let mut buf = [0u8; 64];
        loop {
            match self.ready.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => self.said.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        if self.said.ends_with(b"\n") {
            return Progress::Ready(self.child.id());
        }
        match self.child.try_wait() {
            Ok(Some(status)) => {
                return Progress::Failed(format!(
                    "the new process (pid {}) exited before it was ready ({status})",
                    self.child.id()
                ))
            }
            Ok(None) => {}
            Err(e) => return Progress::Failed(format!("cannot watch the new process: {e}")),
        }
        if self.started.elapsed() > ready_within() {
            self.abandon();
            return Progress::Failed(format!(
                "the new process was not ready within {} s; stopped it",
                ready_within().as_secs()
            ));
        }
        Progress::Waiting
    }

    /// Stops the new process (it never became ready, or this one stops first) and reaps it.
    pub fn abandon(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `ringshard upgrade --pid-file FILE`: sends SIGUSR2 to the server the file names and waits
/// until the file names the new process (done), or is written again by the old one (the
/// upgrade failed: the old process goes on serving, and its log says why).
pub fn run_cli(
    pid_file: PathBuf,
    timeout: Duration,
) -> Result<std::process::ExitCode, Box<dyn std::error::Error>> {
    let read = || -> Result<(u32, std::time::SystemTime), String> {
        let text = std::fs::read_to_string(&pid_file)
            .map_err(|e| format!("--pid-file {}: {e}", pid_file.display()))?;
        let pid = text.trim().parse::<u32>().map_err(|_| {
            format!(
                "--pid-file {}: {:?} is not a pid",
                pid_file.display(),
                text.trim()
            )
        })?;
        let mtime = std::fs::metadata(&pid_file)
            .and_then(|m| m.modified())
            .map_err(|e| format!("--pid-file {}: {e}", pid_file.display()))?;
        Ok((pid, mtime))
    };
    let (old, written) = read()?;
    crate::sys::process::signal(old, libc::SIGUSR2)
        .map_err(|e| format!("cannot signal pid {old} (from {}): {e}", pid_file.display()))?;
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        match read() {
            Ok((pid, _)) if pid != old && crate::sys::process::signal(pid, 0).is_ok() => {
                println!("upgraded: pid {pid} serves; pid {old} finishes its requests and exits");
                return Ok(std::process::ExitCode::SUCCESS);
            }
            Ok((_, mtime)) if mtime != written => {
                eprintln!("ringshard upgrade: failed; pid {old} still serves (its log says why)");
                return Ok(std::process::ExitCode::from(1));
            }
            _ if crate::sys::process::signal(old, 0).is_err() => {
                eprintln!("ringshard upgrade: pid {old} exited and no new process took over");
                return Ok(std::process::ExitCode::from(1));
            }
            _ => {}
        }
    }
    eprintln!(
        "ringshard upgrade: no new process within {} s; pid {old} still serves",
        timeout.as_secs()
    );
    Ok(std::process::ExitCode::from(1))
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<String> {
    if s.len() % 2 != 0 {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_survive_the_environment() {
        for key in ["tcp:127.0.0.1:0", "unix:/run/a;b=c,d", "tcp:[::1]:80"] {
            assert_eq!(super::unhex(&super::hex(key)).as_deref(), Some(key));
        }
        assert_eq!(super::unhex("7"), None);
        assert_eq!(super::unhex("zz"), None);
    }
}
