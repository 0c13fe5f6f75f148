//! systemd's notify protocol (`Type=notify`): datagrams of `KEY=VALUE` lines to the unix socket
//! named by `NOTIFY_SOCKET` (a path, or `@name` in the abstract namespace). Without the variable,
//! nothing is sent.
use std::os::unix::net::UnixDatagram;

/// Where notifications go, if systemd (or a test) asked for them.
pub struct Notifier {
    sock: UnixDatagram,
    target: std::os::unix::net::SocketAddr,
}

impl Notifier {
    /// From `NOTIFY_SOCKET`; `None` when it is not set or cannot be used.
    pub fn from_env() -> Option<Notifier> {
        let path = std::env::var_os("NOTIFY_SOCKET")?;
        let bytes = std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str()).to_vec();
        let target = match bytes.strip_prefix(b"@") {
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                std::os::unix::net::SocketAddr::from_abstract_name(name).ok()?
            }
            None => std::os::unix::net::SocketAddr::from_pathname(&path).ok()?,
        };
        let sock = UnixDatagram::unbound().ok()?;
        Some(Notifier { sock, target })
    }

    /// Sends `msg` (`READY=1`, `STOPPING=1`, `WATCHDOG=1`, `STATUS=...`, several joined by
    /// newlines); a failure is ignored, as systemd's own clients do.
    pub fn send(&self, msg: &str) {
        let _ = self.sock.send_to_addr(msg.as_bytes(), &self.target);
    }
}

/// `WATCHDOG_USEC` as a duration, when systemd expects pings (and `WATCHDOG_PID`, if set, is
/// this process).
pub fn watchdog_interval() -> Option<std::time::Duration> {
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.trim() != std::process::id().to_string() {
            return None;
        }
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.trim().parse().ok()?;
    (usec > 0).then(|| std::time::Duration::from_micros(usec))
}
