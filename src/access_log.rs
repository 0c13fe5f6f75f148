//! The access log: one line per answered request, nginx's `combined` format or JSON.
//!
//! Each shard formats its lines into its own buffer (`ShardLog`, the core's `AccessLog`) and
//! hands the buffer to the kernel in one write to the `O_APPEND` file: through its ring on the
//! io_uring engine (`crate::io::detach`), a plain `write` on epoll. A write of whole lines to an
//! `O_APPEND` file lands whole at the end, so lines are never torn or interleaved between
//! shards; one write in flight per shard keeps a shard's lines in order. A buffer is written
//! when it passes 64 KiB, at least once a second, and at shutdown. SIGUSR1 reopens the file
//! (after logrotate renamed it): the main thread opens the new one, and each shard moves to it
//! at its next write.
use std::cell::{Cell, RefCell};
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::http::log::{AccessLog, Entry};
use crate::http::request::Version;
use crate::timer::Millis;

/// How lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// nginx's `combined`: `addr - - [time] "request" status bytes "referer" "agent"`.
    Combined,
    /// One JSON object per line.
    Json,
}

/// A buffer this large is written at once.
const FLUSH_AT: usize = 64 * 1024;
/// A buffer is written at least this often.
const FLUSH_EVERY: Millis = 1000;

/// The log file every shard appends to, reopened on SIGUSR1.
pub struct LogFile {
    path: PathBuf,
    current: Mutex<Arc<OwnedFd>>,
    generation: AtomicU64,
}

impl LogFile {
    /// Opens (creating it, mode 0644) `path` for appending.
    pub fn open(path: &Path) -> std::io::Result<Arc<LogFile>> {
        Ok(Arc::new(LogFile {
            path: path.to_path_buf(),
            current: Mutex::new(Arc::new(open_append(path)?)),
            generation: AtomicU64::new(0),
        }))
    }

    /// Opens the path again (a new file, if the old one was renamed away); shards move to it at
    /// their next write, and the old file is closed when the last of them has.
    pub fn reopen(&self) -> std::io::Result<()> {
        let fd = Arc::new(open_append(&self.path)?);
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = fd;
        self.generation.fetch_add(1, Ordering::Release);
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn current(&self) -> (Arc<OwnedFd>, u64) {
        let g = self.generation.load(Ordering::Acquire);
        let fd = self
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        (fd, g)
    }
}

fn open_append(path: &Path) -> std::io::Result<OwnedFd> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o644)
        .open(path)?;
    Ok(f.into())
}

/// A write in flight: the descriptor it names and where its result arrives.
type InFlight = (Arc<OwnedFd>, Rc<Cell<Option<i32>>>);

/// A shard's side of the log: its buffer, its view of the file, its one write in flight.
pub struct ShardLog {
    file: Arc<LogFile>,
    fd: Arc<OwnedFd>,
    generation: u64,
    format: LogFormat,
    buf: RefCell<Vec<u8>>,
    /// The write in flight: the descriptor it names (kept open until it completes) and where
    /// its result arrives.
    writing: Option<InFlight>,
    last_write: Millis,
    /// The current second and its text: `07/Dec/2026:21:05:03 +0000` (combined) or
    /// `2026-12-07T21:05:03Z` (JSON).
    second: Cell<u64>,
    time: RefCell<String>,
    /// Writes that failed or came up short (their lines are lost; the count is a metric).
    pub failed_writes: u64,
}

impl ShardLog {
    pub fn new(file: Arc<LogFile>, format: LogFormat) -> ShardLog {
        let (fd, generation) = file.current();
        ShardLog {
            file,
            fd,
            generation,
            format,
            buf: RefCell::new(Vec::with_capacity(FLUSH_AT)),
            writing: None,
            last_write: 0,
            second: Cell::new(u64::MAX),
            time: RefCell::new(String::new()),
            failed_writes: 0,
        }
    }

    /// Sets the clock the lines carry (the shard's, read once per turn).
    pub fn set_time(&self, secs: u64) {
        if self.second.replace(secs) == secs {
            return;
        }
        let (y, mo, d, h, mi, s) = crate::http::date::civil(secs);
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        *self.time.borrow_mut() = match self.format {
            LogFormat::Combined => format!(
                "{d:02}/{}/{y}:{h:02}:{mi:02}:{s:02} +0000",
                MONTHS[mo as usize - 1]
            ),
            LogFormat::Json => format!("{y}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z"),
        };
    }

    /// Hands the buffered lines to the kernel if it is time (a full buffer, a second since the
    /// last write, or `now_too`), unless a write is still in flight.
    pub fn flush(&mut self, now: Millis, now_too: bool) {
        if let Some((_, result)) = &self.writing {
            let Some(r) = result.get() else { return };
            if r < 0 {
                self.failed_writes += 1;
            }
            self.writing = None;
        }
        let len = self.buf.borrow().len();
        let due = now_too || len >= FLUSH_AT || now >= self.last_write + FLUSH_EVERY;
        if len == 0 || !due {
            return;
        }
        let (fd, generation) = self.file.current();
        if generation != self.generation {
            (self.fd, self.generation) = (fd, generation);
        }
        let buf = std::mem::replace(&mut *self.buf.borrow_mut(), Vec::with_capacity(FLUSH_AT));
        let result = crate::io::detach(crate::io::IoOp::Append {
            fd: self.fd.as_raw_fd(),
            buf,
        });
        self.writing = Some((self.fd.clone(), result));
        self.last_write = now;
    }

    /// When the buffered lines are due, if any are waiting.
    pub fn deadline(&self) -> Option<Millis> {
        (!self.buf.borrow().is_empty()).then_some(self.last_write + FLUSH_EVERY)
    }

    /// Nothing buffered and no write in flight.
    pub fn is_idle(&self) -> bool {
        let written = self.writing.as_ref().is_none_or(|(_, r)| r.get().is_some());
        self.buf.borrow().is_empty() && written
    }
}

impl AccessLog for ShardLog {
    fn record(&self, e: &Entry<'_>) {
        let mut guard = self.buf.borrow_mut();
        let b = &mut *guard;
        let time = self.time.borrow();
        let version = match e.version {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        };
        match self.format {
            LogFormat::Combined => {
                match e.peer {
                    Some(p) => {
                        let _ = write!(b, "{}", p.ip());
                    }
                    None => b.push(b'-'),
                }
                b.extend_from_slice(b" - - [");
                b.extend_from_slice(time.as_bytes());
                b.extend_from_slice(b"] \"");
                if e.method.is_empty() {
                    b.push(b'-');
                } else {
                    escape_combined(b, e.method.as_bytes());
                    b.push(b' ');
                    escape_combined(b, e.target.as_bytes());
                    b.push(b' ');
                    b.extend_from_slice(version.as_bytes());
                }
                let _ = write!(b, "\" {} {} \"", e.status, e.bytes);
                escape_combined(b, e.referer.unwrap_or(b"-"));
                b.extend_from_slice(b"\" \"");
                escape_combined(b, e.user_agent.unwrap_or(b"-"));
                b.extend_from_slice(b"\"\n");
            }
            LogFormat::Json => {
                b.extend_from_slice(b"{\"time\":\"");
                b.extend_from_slice(time.as_bytes());
                b.extend_from_slice(b"\",\"remote_addr\":");
                match e.peer {
                    Some(p) => {
                        let _ = write!(b, "\"{}\"", p.ip());
                    }
                    None => b.extend_from_slice(b"null"),
                }
                let field = |b: &mut Vec<u8>, name: &str, v: Option<&[u8]>| {
                    let _ = write!(b, ",\"{name}\":");
                    match v {
                        Some(v) => {
                            b.push(b'"');
                            escape_json(b, v);
                            b.push(b'"');
                        }
                        None => b.extend_from_slice(b"null"),
                    }
                };
                let line = (!e.method.is_empty()).then_some(());
                field(b, "method", line.map(|_| e.method.as_bytes()));
                field(b, "uri", line.map(|_| e.target.as_bytes()));
                field(b, "protocol", line.map(|_| version.as_bytes()));
                let _ = write!(b, ",\"status\":{},\"bytes\":{}", e.status, e.bytes);
                field(b, "referer", e.referer);
                field(b, "user_agent", e.user_agent);
                b.extend_from_slice(b"}\n");
            }
        }
    }
}

/// nginx's escaping: `"`, `\`, control bytes and bytes above 0x7e as `\xHH`.
fn escape_combined(out: &mut Vec<u8>, v: &[u8]) {
    for &c in v {
        if c == b'"' || c == b'\\' || !(0x20..0x7f).contains(&c) {
            let _ = write!(out, "\\x{c:02X}");
        } else {
            out.push(c);
        }
    }
}

/// A JSON string's escaping; bytes above 0x7e as `\u00HH`, so any input is valid JSON.
fn escape_json(out: &mut Vec<u8>, v: &[u8]) {
    for &c in v {
        match c {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x20..=0x7e => out.push(c),
            _ => {
                let _ = write!(out, "\\u{c:04x}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry<'a>(method: &'a str, target: &'a str, agent: &'a [u8]) -> Entry<'a> {
        Entry {
            peer: Some("10.0.0.7:5555".parse().unwrap()),
            method,
            target,
            version: Version::Http11,
            status: 200,
            bytes: 1024,
            referer: None,
            user_agent: Some(agent),
        }
    }

    fn lines(format: LogFormat, e: &Entry<'_>) -> String {
        let dir = std::env::temp_dir().join(format!("ringshard-log-unit-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let file = LogFile::open(&dir.join(format!("{format:?}.log"))).unwrap();
        let log = ShardLog::new(file, format);
        log.set_time(784_111_777);
        log.record(e);
        let out = String::from_utf8(log.buf.borrow().clone()).unwrap();
        out
    }

    #[test]
    fn combined_lines_are_nginx_s_with_quotes_escaped() {
        let line = lines(
            LogFormat::Combined,
            &entry("GET", "/a?q=\"x\"", b"curl/8 \"evil\"\n"),
        );
        assert_eq!(
            line,
            "10.0.0.7 - - [06/Nov/1994:08:49:37 +0000] \"GET /a?q=\\x22x\\x22 HTTP/1.1\" 200 1024 \"-\" \"curl/8 \\x22evil\\x22\\x0A\"\n"
        );
        let refused = lines(LogFormat::Combined, &entry("", "", b"x"));
        assert!(refused.contains("] \"-\" 200 "), "{refused}");
    }

    #[test]
    fn json_lines_are_valid_json_whatever_the_bytes() {
        let line = lines(LogFormat::Json, &entry("GET", "/p\\q", b"a\"b\xff\x01"));
        assert_eq!(
            line,
            "{\"time\":\"1994-11-06T08:49:37Z\",\"remote_addr\":\"10.0.0.7\",\"method\":\"GET\",\"uri\":\"/p\\\\q\",\"protocol\":\"HTTP/1.1\",\"status\":200,\"bytes\":1024,\"referer\":null,\"user_agent\":\"a\\\"b\\u00ff\\u0001\"}\n"
        );
    }
}
