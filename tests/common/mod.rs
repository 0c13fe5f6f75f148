//! Helpers shared by the integration tests: spawn the binary, speak raw bytes, parse responses.
#![allow(dead_code)]

pub mod json;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Extra `serve` arguments selecting each engine the suite runs against: both engines, or the
/// ones listed in `RINGSHARD_TEST_ENGINES`, comma-separated. An entry is an engine name
/// (`uring,epoll`) or a set of flags (`--engine uring --recv single,--taskrun plain`).
///
/// By default io_uring runs with `--wait-busy 0`: the suite's light load would leave a shard's
/// waits unbatched, and the batched path (a wait asking for several completions with a
/// min-timeout) is the one with more to get wrong. The unbatched path is what tests started
/// without these flags, and `--wait-usec 0` in the knob test, run. A kernel without
/// min-timeout waits (`cfg(no_min_timeout)`, from build.rs) refuses `--wait-busy` at start-up,
/// so there the default io_uring entry is the plain `--engine uring`.
pub fn engines() -> Vec<Vec<&'static str>> {
    match std::env::var("RINGSHARD_TEST_ENGINES") {
        Ok(list) if !list.trim().is_empty() => list
            .split(',')
            .map(|entry| {
                let entry = entry.trim();
                let entry = if entry.starts_with("--") {
                    entry.to_string()
                } else {
                    format!("--engine {entry}")
                };
                entry
                    .split_whitespace()
                    .map(|a| &*Box::leak(a.to_string().into_boxed_str()))
                    .collect()
            })
            .collect(),
        _ if cfg!(no_min_timeout) => vec![vec!["--engine", "uring"], vec!["--engine", "epoll"]],
        _ => vec![
            vec!["--engine", "uring", "--wait-busy", "0"],
            vec!["--engine", "epoll"],
        ],
    }
}

/// The `--engine` value an entry of [`engines`] gives (`--engine X` or `--engine=X`), if any.
pub fn engine_value<'a>(entry: &[&'a str]) -> Option<&'a str> {
    let mut args = entry.iter();
    while let Some(&a) = args.next() {
        if a == "--engine" {
            return args.next().copied();
        }
        if let Some(v) = a.strip_prefix("--engine=") {
            return Some(v);
        }
    }
    None
}

/// The test an entry of [`engines`] runs under: `"epoll"` for `--engine epoll`, else `"uring"`
/// (`--engine uring`, `--engine auto`, and an entry that names no engine, whose server picks
/// io_uring where the kernel allows it).
pub fn engine_kind(entry: &[&str]) -> &'static str {
    match engine_value(entry) {
        Some("epoll") => "epoll",
        _ => "uring",
    }
}

/// The entries of [`engines`] that the test named for `kind` (`"uring"` or `"epoll"`) runs.
pub fn selected(kind: &str) -> Vec<Vec<&'static str>> {
    engines()
        .into_iter()
        .filter(|e| engine_kind(e) == kind)
        .collect()
}

/// Says on stderr that `test` does nothing because `RINGSHARD_TEST_ENGINES` selects no entry of
/// its engine (the test then passes: the variable asked for that).
pub fn say_not_selected(test: &str, kind: &str) {
    eprintln!(
        "{test}: skipped: RINGSHARD_TEST_ENGINES={:?} selects no {kind} entry",
        std::env::var("RINGSHARD_TEST_ENGINES").unwrap_or_default()
    );
}

/// The runner behind [`per_engine!`]: runs `body` with each selected entry of engine `kind`,
/// saying on stderr which (the harness shows it when the test fails); with none selected, says
/// so and returns.
pub fn run_per_engine(kind: &str, test: &str, body: impl Fn(&[&str])) {
    let entries = selected(kind);
    if entries.is_empty() {
        say_not_selected(test, kind);
        return;
    }
    for entry in &entries {
        eprintln!("{test}: serve {}", entry.join(" "));
        body(entry);
    }
}

/// One `#[test]` per behaviour and engine: for each `name`, a module `name` holding the tests
/// `uring` and `epoll` (`keep_alive_and_close::uring`), each calling the behaviour's body
/// `fn name(engine: &[&str])`, written beside the invocation, through [`run_per_engine`]. So a
/// failure names the behaviour and the engine, and `cargo test epoll` or `cargo test
/// keep_alive` picks them out.
///
/// `RINGSHARD_TEST_ENGINES` still selects what runs: the `uring` test runs the body once with
/// every selected entry whose engine is io_uring (an entry that names no `--engine`, or names
/// `uring` or `auto`), the `epoll` test once with every `--engine epoll` entry; a test none of
/// whose entries is selected says so on stderr and passes.
///
/// ```ignore
/// fn keep_alive_and_close(engine: &[&str]) {
///     let srv = Server::start(engine, &["--shards", "1"]);
///     // ...
/// }
///
/// per_engine! {
///     keep_alive_and_close,
///     // Attributes go on both tests of the name.
///     #[cfg_attr(no_ipv6, ignore = "this machine has no IPv6 loopback")]
///     ipv6_listen,
/// }
/// // Only some engines: the tests named for the others are not generated.
/// per_engine! { [uring] write_timeout_drops_a_peer_that_stops_reading_under_zero_copy_sends }
/// // Another runner, for bodies that take something other than the flag list:
/// // `fn(kind: &str, test: &str, body: fn(T))`, named by a path valid inside the module.
/// per_engine! { runner = super::run_embedded; streaming_body_is_chunked_for_http11 }
/// ```
#[allow(unused_macros)]
macro_rules! per_engine {
    (runner = $run:path; $($(#[$attr:meta])* $name:ident),+ $(,)?) => {
        $( $crate::common::per_engine!(@one [uring epoll] $run; [$(#[$attr])*] $name); )+
    };
    ([$($engine:ident),+] $($rest:tt)+) => {
        $crate::common::per_engine!(@engines [$($engine)+] $($rest)+);
    };
    (@engines $engines:tt $($(#[$attr:meta])* $name:ident),+ $(,)?) => {
        $(
            $crate::common::per_engine!(
                @one $engines $crate::common::run_per_engine; [$(#[$attr])*] $name
            );
        )+
    };
    ($($(#[$attr:meta])* $name:ident),+ $(,)?) => {
        $(
            $crate::common::per_engine!(
                @one [uring epoll] $crate::common::run_per_engine; [$(#[$attr])*] $name
            );
        )+
    };
    (@one [$($engine:ident)+] $run:path; $attrs:tt $name:ident) => {
        mod $name {
            $( $crate::common::per_engine!(@test $engine $run; $attrs $name); )+
        }
    };
    (@test $engine:ident $run:path; [$($attr:tt)*] $name:ident) => {
        $($attr)*
        #[test]
        fn $engine() {
            $run(
                stringify!($engine),
                concat!(stringify!($name), "::", stringify!($engine)),
                super::$name,
            );
        }
    };
}
#[allow(unused_imports)]
pub(crate) use per_engine;

/// Longest wait for any one expected response or EOF.
pub const READ_LIMIT: Duration = Duration::from_secs(10);

/// A running `ringshard serve`; killed (SIGKILL) on drop if still running. Dropped while the
/// test panics, it prints the server's stderr, so a failure shows what the server said.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    /// The command line, for the stderr block printed on failure.
    command: String,
    stderr: Arc<Mutex<String>>,
    reader: Option<JoinHandle<()>>,
    status: Option<ExitStatus>,
}

impl Server {
    /// Starts `ringshard serve --listen 127.0.0.1:0` with `engine` and `args` appended, and waits
    /// for the "listening on" line.
    pub fn start(engine: &[&str], args: &[&str]) -> Server {
        Server::start_on("127.0.0.1:0", engine, args)
    }

    /// As [`Server::start`], listening on `listen`.
    pub fn start_on(listen: &str, engine: &[&str], args: &[&str]) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ringshard"));
        cmd.arg("serve")
            .args(["--listen", listen])
            .args(engine)
            .args(args);
        Server::spawn(cmd)
    }

    /// Spawns `cmd` (a `ringshard serve` command line), capturing its stderr, and waits for the
    /// "listening on" line.
    pub fn spawn(mut cmd: Command) -> Server {
        let command = std::iter::once(cmd.get_program())
            .chain(cmd.get_args())
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ringshard");
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel::<String>();
        let pipe = child.stderr.take().unwrap();
        let log = stderr.clone();
        let reader = std::thread::spawn(move || {
            let mut r = BufReader::new(pipe);
            let mut line = String::new();
            let mut tx = Some(tx);
            loop {
                line.clear();
                match r.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        log.lock().unwrap().push_str(&line);
                        if let Some(t) = &tx {
                            if line.contains("listening on http://") {
                                let _ = t.send(line.clone());
                                tx = None;
                            }
                        }
                    }
                }
            }
        });
        let line = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                let _ = reader.join();
                panic!(
                    "server did not report listening: {command}\nstderr:\n{}",
                    stderr.lock().unwrap()
                );
            }
        };
        let rest = line.split("http://").nth(1).unwrap();
        let addr: SocketAddr = rest.split_whitespace().next().unwrap().parse().unwrap();
        Server {
            child,
            addr,
            command,
            stderr,
            reader: Some(reader),
            status: None,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// A connection with bounded reads and writes.
    pub fn connect(&self) -> Client {
        Client::connect(self.addr)
    }

    pub fn signal(&self, sig: i32) {
        signal(self.pid(), sig);
    }

    /// Waits up to `within` for the process to exit.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        if self.status.is_some() {
            return self.status;
        }
        let deadline = Instant::now() + within;
        loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                self.status = Some(s);
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.status.is_none() && matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let status = self.child.wait();
        if std::thread::panicking() {
            // The server has exited, so its stderr is at EOF: the reader has every line.
            if let Some(reader) = self.reader.take() {
                let _ = reader.join();
            }
            let log = self.stderr.lock().unwrap_or_else(|e| e.into_inner());
            eprintln!(
                "---- stderr of the server (pid {}, {}; {status:?}) ----\n{}---- end of the server's stderr ----",
                self.child.id(),
                self.command,
                log.as_str()
            );
        }
    }
}

pub fn signal(pid: i32, sig: i32) {
    // SAFETY: kill(2) with a pid of a child we spawned; no memory is involved.
    let r = unsafe { libc::kill(pid, sig) };
    assert_eq!(r, 0, "kill({pid}, {sig})");
}

/// A parsed response.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    /// The status line and header lines, as received (without the final blank line).
    pub head: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Every byte of the response as received.
    pub raw: Vec<u8>,
}

impl Resp {
    /// The first header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn count(&self, name: &str) -> usize {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .count()
    }

    pub fn is_close(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A client connection that keeps the bytes it has read but not yet parsed.
pub struct Client {
    pub s: TcpStream,
    pub buf: Vec<u8>,
    eof: bool,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
        s.set_nodelay(true).unwrap();
        s.set_write_timeout(Some(READ_LIMIT)).unwrap();
        Client {
            s,
            buf: Vec::new(),
            eof: false,
        }
    }

    pub fn from_stream(s: TcpStream) -> Client {
        s.set_nodelay(true).unwrap();
        s.set_write_timeout(Some(READ_LIMIT)).unwrap();
        Client {
            s,
            buf: Vec::new(),
            eof: false,
        }
    }

    /// Writes all of `bytes`.
    pub fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).expect("write to server");
    }

    /// Writes, ignoring errors (for peers the server may already have closed).
    pub fn try_send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.s.write_all(bytes)
    }

    /// Reads more into `buf` before `deadline`. Ok(false) on EOF (or a reset), Err on timeout.
    fn fill(&mut self, deadline: Instant) -> Result<bool, String> {
        loop {
            if self.eof {
                return Ok(false);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err("timed out".into());
            }
            self.s.set_read_timeout(Some(left)).unwrap();
            let mut tmp = [0u8; 65536];
            return match self.s.read(&mut tmp) {
                Ok(0) => {
                    self.eof = true;
                    Ok(false)
                }
                Ok(n) => {
                    self.buf.extend_from_slice(&tmp[..n]);
                    Ok(true)
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    Err("timed out".into())
                }
                // A thread that once used io_uring can see a spurious EINTR (the ring's
                // asynchronous teardown signals it); a read with a timeout is not restarted.
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                    self.eof = true;
                    Ok(false)
                }
                Err(e) => Err(format!("read error: {e}")),
            };
        }
    }

    /// Reads one response; `head_only` for the answer to a HEAD request.
    pub fn try_resp(&mut self, head_only: bool) -> Result<Resp, String> {
        let deadline = Instant::now() + READ_LIMIT;
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i;
            }
            if !self.fill(deadline)? {
                return Err(format!(
                    "EOF before a whole response head; got {:?}",
                    String::from_utf8_lossy(&self.buf)
                ));
            }
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or("");
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or("");
        if version != "HTTP/1.1" {
            return Err(format!("bad status line {status_line:?}"));
        }
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad status line {status_line:?}"))?;
        let mut headers = Vec::new();
        for l in lines {
            let (n, v) = l
                .split_once(':')
                .ok_or_else(|| format!("bad header line {l:?}"))?;
            headers.push((n.to_string(), v.trim().to_string()));
        }
        let mut r = Resp {
            status,
            head,
            headers,
            body: Vec::new(),
            raw: Vec::new(),
        };
        let mut pos = head_end + 4;
        let no_body = head_only || status < 200 || status == 204 || status == 304;
        if no_body {
        } else if let Some(cl) = r.header("content-length") {
            let n: usize = cl.parse().map_err(|_| format!("bad Content-Length {cl}"))?;
            while self.buf.len() < pos + n {
                if !self.fill(deadline)? {
                    return Err(format!("EOF inside a body of {n} bytes"));
                }
            }
            r.body = self.buf[pos..pos + n].to_vec();
            pos += n;
        } else if r
            .header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
        {
            loop {
                let line_end = loop {
                    if let Some(i) = find(&self.buf[pos..], b"\r\n") {
                        break pos + i;
                    }
                    if !self.fill(deadline)? {
                        return Err("EOF inside a chunked body".into());
                    }
                };
                let line = std::str::from_utf8(&self.buf[pos..line_end]).unwrap_or("?");
                let size = usize::from_str_radix(line.split(';').next().unwrap().trim(), 16)
                    .map_err(|_| format!("bad chunk size line {line:?}"))?;
                pos = line_end + 2;
                if size == 0 {
                    // No trailers from this server: the last chunk ends with an empty line.
                    while self.buf.len() < pos + 2 {
                        if !self.fill(deadline)? {
                            return Err("EOF after the last chunk".into());
                        }
                    }
                    if &self.buf[pos..pos + 2] != b"\r\n" {
                        return Err("no CRLF after the last chunk".into());
                    }
                    pos += 2;
                    break;
                }
                while self.buf.len() < pos + size + 2 {
                    if !self.fill(deadline)? {
                        return Err("EOF inside a chunk".into());
                    }
                }
                r.body.extend_from_slice(&self.buf[pos..pos + size]);
                if &self.buf[pos + size..pos + size + 2] != b"\r\n" {
                    return Err("no CRLF after chunk data".into());
                }
                pos += size + 2;
            }
        } else {
            // Delimited by the close of the connection.
            while self.fill(deadline)? {}
            pos = self.buf.len();
            r.body = self.buf[head_end + 4..].to_vec();
        }
        r.raw = self.buf[..pos].to_vec();
        self.buf.drain(..pos);
        Ok(r)
    }

    /// Reads one response or panics saying why.
    pub fn resp(&mut self) -> Resp {
        self.try_resp(false)
            .unwrap_or_else(|e| panic!("reading a response: {e}"))
    }

    /// Reads the response to a HEAD request.
    pub fn resp_head(&mut self) -> Resp {
        self.try_resp(true)
            .unwrap_or_else(|e| panic!("reading a HEAD response: {e}"))
    }

    /// Reads until EOF (or reset) within `within`; returns the bytes read meanwhile, or Err with
    /// them on timeout.
    pub fn read_to_eof(&mut self, within: Duration) -> Result<Vec<u8>, Vec<u8>> {
        let deadline = Instant::now() + within;
        loop {
            match self.fill(deadline) {
                Ok(true) => {}
                Ok(false) => return Ok(std::mem::take(&mut self.buf)),
                Err(_) => return Err(std::mem::take(&mut self.buf)),
            }
        }
    }

    /// Asserts that the server closes the connection within READ_LIMIT with nothing more sent.
    pub fn expect_eof(&mut self) {
        match self.read_to_eof(READ_LIMIT) {
            Ok(rest) => assert!(
                rest.is_empty(),
                "expected EOF, got more bytes first: {:?}",
                String::from_utf8_lossy(&rest)
            ),
            Err(rest) => panic!(
                "the server did not close the connection within {READ_LIMIT:?} (read {:?})",
                String::from_utf8_lossy(&rest)
            ),
        }
    }

    /// Asserts that nothing arrives and the connection stays open for `d`.
    pub fn expect_silence(&mut self, d: Duration) {
        let deadline = Instant::now() + d;
        match self.fill(deadline) {
            Err(e) if e == "timed out" => {}
            Err(e) => panic!("expected silence, got {e}"),
            Ok(true) => panic!(
                "expected silence, got {:?}",
                String::from_utf8_lossy(&self.buf)
            ),
            Ok(false) => panic!("expected the connection to stay open; got EOF"),
        }
    }
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A GET request with a Host header.
pub fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").into_bytes()
}

/// A POST /echo request with a Content-Length body.
pub fn echo(body: &[u8]) -> Vec<u8> {
    let mut v = format!(
        "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    v.extend_from_slice(body);
    v
}

/// Checks the headers every response carries: one Server, one well-formed Date.
pub fn check_common_headers(r: &Resp) {
    assert_eq!(r.header("server"), Some("ringshard"), "{}", r.head);
    assert_eq!(r.count("date"), 1, "{}", r.head);
    let date = r.header("date").unwrap();
    assert!(parse_imf(date).is_some(), "bad Date {date:?}");
    let framed = r.header("content-length").is_some()
        || r.header("transfer-encoding").is_some()
        || r.status == 204
        || r.status < 200;
    assert!(framed, "no framing header: {}", r.head);
}

/// Parses an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) into seconds since the epoch.
pub fn parse_imf(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() != 29 || &b[3..5] != b", " || &b[25..] != b" GMT" {
        return None;
    }
    let days = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    if !days.contains(&&s[..3]) {
        return None;
    }
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let d: u64 = s[5..7].parse().ok()?;
    let m = months.iter().position(|&x| x == &s[8..11])? as u64 + 1;
    let y: u64 = s[12..16].parse().ok()?;
    let hh: u64 = s[17..19].parse().ok()?;
    let mm: u64 = s[20..22].parse().ok()?;
    let ss: u64 = s[23..25].parse().ok()?;
    if &s[19..20] != ":" || &s[22..23] != ":" || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let (y2, m2) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y2 / 400;
    let yoe = y2 - era * 400;
    let doy = (153 * m2 + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days_since = era * 146_097 + doe - 719_468;
    // The weekday must match the date.
    let wd = ((days_since + 3) % 7) as usize; // 1970-01-01 was a Thursday
    if days[wd] != &s[..3] {
        return None;
    }
    Some(days_since * 86_400 + hh * 3600 + mm * 60 + ss)
}

/// Writes `a`, pauses so the server most likely reads it alone, then writes `b`.
pub fn send_split(c: &mut Client, a: &[u8], b: &[u8]) {
    if !a.is_empty() {
        c.send(a);
        std::thread::sleep(Duration::from_millis(2));
    }
    c.send(b);
}

/// The value of `ringshard_NAME{shard="SHARD"}` in a metrics page.
pub fn shard_metric(page: &str, name: &str, shard: usize) -> u64 {
    let prefix = format!("ringshard_{name}{{shard=\"{shard}\"}} ");
    page.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {name} of shard {shard} in:\n{page}"))
        .trim()
        .parse()
        .unwrap()
}

/// The value of `ringshard_NAME{shard="0"}` in a metrics page.
pub fn metric(page: &str, name: &str) -> u64 {
    shard_metric(page, name, 0)
}

impl Server {
    /// The metrics page (`GET /metrics`), read on a connection of its own.
    pub fn metrics(&self) -> String {
        let mut m = self.connect();
        m.send(&get("/metrics"));
        let r = m.resp();
        assert_eq!(r.status, 200, "GET /metrics: {}", r.head);
        r.text()
    }
}

/// A fresh, empty directory for one test on one engine, named after both.
pub fn scratch_dir(suite: &str, name: &str, engine: &[&str]) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "ringshard-{suite}-{}-{name}-{}",
        std::process::id(),
        engine.join("")
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Waits up to `within` for `ok`; panics with `what` if it never holds.
pub fn wait_until(what: &str, within: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether process `pid` runs (a zombie does not); for any process, child or not.
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit(')')
            .next()
            .is_some_and(|r| !r.trim_start().starts_with('Z'))
    })
}

/// The pids of app processes a server's log says became ready, in order.
pub fn ready_pids(log: &str) -> Vec<i32> {
    log.lines()
        .filter(|l| l.starts_with("ringshard: app ") && l.contains("] ready ("))
        .filter_map(|l| l.split('[').nth(1)?.split(']').next()?.parse().ok())
        .collect()
}
