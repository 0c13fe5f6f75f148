//! The reverse proxy over real sockets, on every engine, against a raw upstream app
//! (`tests/proxy_app.py`, which logs every request it reads and numbers its connections): the
//! fields forwarded and dropped, bodies in every framing both ways, large bodies streamed or
//! spilled, 502/504 for each way an upstream fails, which failures are retried, the upstream
//! connection pool, unix-socket upstreams, and ringshard itself as the upstream.
mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::json::Json;
use common::*;

/// The Host every test request carries.
const HOST: &str = "front.example";

/// Longest wait for the upstream app to start or to log something.
const APP_LIMIT: Duration = Duration::from_secs(20);

// ---- the upstream app ----

/// A running `tests/proxy_app.py`; killed on drop.
struct App {
    child: Child,
    /// What `--proxy` takes: `http://127.0.0.1:PORT` or `unix:PATH`.
    url: String,
    log: PathBuf,
}

impl App {
    /// The app on a TCP port of 127.0.0.1, logging to `dir/NAME.log`.
    fn tcp(dir: &Path, name: &str) -> App {
        let (child, ready) = App::spawn(dir, name, &["--port", "0"]);
        let port: u16 = ready.parse().expect("READY <port>");
        App {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log: dir.join(format!("{name}.log")),
        }
    }

    /// The app on the unix socket `dir/NAME.sock`.
    fn unix(dir: &Path, name: &str) -> App {
        let sock = dir.join(format!("{name}.sock"));
        let (child, ready) = App::spawn(dir, name, &["--unix", sock.to_str().unwrap()]);
        assert_eq!(ready, "unix");
        App {
            child,
            url: format!("unix:{}", sock.display()),
            log: dir.join(format!("{name}.log")),
        }
    }

    /// Starts the app and waits for its `READY` line; returns the word after it.
    fn spawn(dir: &Path, name: &str, listen: &[&str]) -> (Child, String) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/proxy_app.py");
        let log = dir.join(format!("{name}.log"));
        let err = std::fs::File::create(dir.join(format!("{name}.err"))).unwrap();
        let mut child = Command::new("python3")
            .arg(script)
            .args(listen)
            .arg("--log")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(err)
            .spawn()
            .expect("spawn python3 tests/proxy_app.py");
        let out = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(out).read_line(&mut line);
            let _ = tx.send(line);
        });
        match rx.recv_timeout(APP_LIMIT) {
            Ok(line) if line.starts_with("READY ") => {
                let word = line["READY ".len()..].trim().to_string();
                (child, word)
            }
            got => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the upstream app did not start ({got:?}); stderr:\n{}",
                    std::fs::read_to_string(dir.join(format!("{name}.err"))).unwrap_or_default()
                );
            }
        }
    }

    /// Every line of the log so far.
    fn events(&self) -> Vec<Json> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(Json::parse)
            .collect()
    }

    /// The requests carrying `X-Test-Id: id` that reached the app.
    fn arrivals(&self, id: &str) -> Vec<Json> {
        self.events()
            .into_iter()
            .filter(|e| e.get("event").str() == Some("request") && e.get("id").str() == Some(id))
            .collect()
    }

    /// Whether the app has written the whole response to the request `id`.
    fn sent(&self, id: &str) -> bool {
        self.events()
            .iter()
            .any(|e| e.get("event").str() == Some("sent") && e.get("id").str() == Some(id))
    }
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Arrivals of `id` at all of `apps`.
fn arrivals(apps: &[&App], id: &str) -> usize {
    apps.iter().map(|a| a.arrivals(id).len()).sum()
}

// ---- servers and requests ----

/// `ringshard serve --proxy URL`, one shard.
fn quick(engine: &[&str], upstream: &str) -> Server {
    Server::start(engine, &["--proxy", upstream, "--shards", "1"])
}

/// A configuration file with one proxy route at `/` to `upstreams` (a string for one, else a
/// list) with `options`, served with `args` added.
fn routed(engine: &[&str], dir: &Path, upstreams: &[&str], options: &str, args: &[&str]) -> Server {
    let quoted: Vec<String> = upstreams.iter().map(|u| format!("\"{u}\"")).collect();
    let proxy = match quoted.as_slice() {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    };
    let file = dir.join("proxy.toml");
    std::fs::write(
        &file,
        format!("[server]\nshards = 1\n\n[[route]]\nprefix = \"/\"\nproxy = {proxy}\n{options}\n"),
    )
    .unwrap();
    let mut all = vec!["--config", file.to_str().unwrap()];
    all.extend_from_slice(args);
    Server::start(engine, &all)
}

/// A request with `Host: front.example` and `X-Test-Id: id`; with a body, a Content-Length.
fn req(
    method: &str,
    path: &str,
    id: &str,
    fields: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Vec<u8> {
    let mut r = format!("{method} {path} HTTP/1.1\r\nHost: {HOST}\r\nX-Test-Id: {id}\r\n");
    for (n, v) in fields {
        r += &format!("{n}: {v}\r\n");
    }
    if let Some(b) = body {
        r += &format!("Content-Length: {}\r\n", b.len());
    }
    r += "\r\n";
    let mut v = r.into_bytes();
    v.extend_from_slice(body.unwrap_or_default());
    v
}

fn get_id(path: &str, id: &str) -> Vec<u8> {
    req("GET", path, id, &[], None)
}

/// A chunked POST /echo: one chunk per part, then `trailers` (whole lines, CRLF-ended).
fn chunked_post(id: &str, parts: &[&[u8]], trailers: &str) -> Vec<u8> {
    let mut v = format!(
        "POST /echo HTTP/1.1\r\nHost: {HOST}\r\nX-Test-Id: {id}\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    .into_bytes();
    for p in parts {
        v.extend_from_slice(format!("{:x}\r\n", p.len()).as_bytes());
        v.extend_from_slice(p);
        v.extend_from_slice(b"\r\n");
    }
    v.extend_from_slice(format!("0\r\n{trailers}\r\n").as_bytes());
    v
}

/// What the app's `/echo` says it received (the request's log record).
fn echoed(r: &Resp) -> Json {
    assert_eq!(r.status, 200, "{}", r.head);
    Json::parse(&r.text())
}

/// The app's deterministic body: byte i is i % 251.
fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

/// A port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Checks that the app got `body` whole.
fn assert_body(rec: &Json, body: &[u8]) {
    assert_eq!(
        rec.get("body_len").num(),
        body.len() as u64,
        "body length at the upstream"
    );
    assert_eq!(
        rec.get("body_sha256").str(),
        Some(sha256_hex(body).as_str()),
        "body content at the upstream"
    );
}

// ---- a response read to EOF, trailers included ----

/// A response parsed from every byte a connection gave until EOF. `complete` says whether its
/// framing was satisfied (a close-delimited body always is).
struct Full {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    trailers: Vec<(String, String)>,
    complete: bool,
}

fn lookup<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn parse_fields(text: &str) -> Vec<(String, String)> {
    text.split("\r\n")
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (n, v) = l
                .split_once(':')
                .unwrap_or_else(|| panic!("bad field line {l:?}"));
            (n.to_string(), v.trim().to_string())
        })
        .collect()
}

fn parse_full(raw: &[u8]) -> Full {
    let end = find(raw, b"\r\n\r\n").unwrap_or_else(|| {
        panic!(
            "no whole response head in {:?}",
            String::from_utf8_lossy(raw)
        )
    });
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let (status_line, fields) = head.split_once("\r\n").unwrap_or((&head, ""));
    assert!(status_line.starts_with("HTTP/1.1 "), "{status_line:?}");
    let status = status_line[9..12].parse().unwrap();
    let headers = parse_fields(fields);
    let rest = &raw[end + 4..];
    let mut full = Full {
        status,
        headers,
        body: Vec::new(),
        trailers: Vec::new(),
        complete: false,
    };
    let chunked = lookup(&full.headers, "transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    if chunked {
        let mut pos = 0;
        while let Some(eol) = find(&rest[pos..], b"\r\n") {
            let line = String::from_utf8_lossy(&rest[pos..pos + eol]).into_owned();
            let size = usize::from_str_radix(line.split(';').next().unwrap().trim(), 16)
                .unwrap_or_else(|_| panic!("bad chunk size line {line:?}"));
            pos += eol + 2;
            if size == 0 {
                // Trailer fields, then an empty line.
                if rest[pos..].starts_with(b"\r\n") {
                    full.complete = true;
                } else if let Some(t) = find(&rest[pos..], b"\r\n\r\n") {
                    full.trailers = parse_fields(&String::from_utf8_lossy(&rest[pos..pos + t]));
                    full.complete = true;
                }
                break;
            }
            let take = size.min(rest.len() - pos);
            full.body.extend_from_slice(&rest[pos..pos + take]);
            if take < size || rest.len() < pos + size + 2 {
                break;
            }
            pos += size + 2;
        }
    } else if let Some(cl) = lookup(&full.headers, "content-length") {
        let n: usize = cl.parse().unwrap();
        full.body = rest[..n.min(rest.len())].to_vec();
        full.complete = rest.len() >= n;
    } else {
        full.body = rest.to_vec();
        full.complete = true;
    }
    full
}

// ---- fields forwarded and dropped ----

fn quick_start_relays_get_post_and_head(engine: &[&str]) {
    let dir = scratch_dir("proxy", "quick", engine);
    let app = App::tcp(&dir, "up");
    let srv = quick(engine, &app.url);
    let mut c = srv.connect();

    c.send(&get_id("/echo?x=1", "q-get"));
    let rec = echoed(&c.resp());
    assert_eq!(rec.get("method").str(), Some("GET"));
    assert_eq!(rec.get("path").str(), Some("/echo?x=1"));
    assert_eq!(rec.get("id").str(), Some("q-get"));

    let body = pattern(10_000);
    c.send(&req("POST", "/echo", "q-post", &[], Some(&body)));
    let rec = echoed(&c.resp());
    assert_eq!(rec.get("method").str(), Some("POST"));
    assert_body(&rec, &body);

    // HEAD: the head only; the next response on the connection starts right after it.
    c.send(&req("HEAD", "/big?n=1000", "q-head", &[], None));
    let r = c.resp_head();
    assert_eq!(r.status, 200, "{}", r.head);
    assert_eq!(r.header("content-length"), Some("1000"), "{}", r.head);
    c.send(&get_id("/other", "q-after"));
    let r = c.resp();
    assert_eq!((r.status, r.text().as_str()), (200, "ok"), "{}", r.head);
}

fn hop_by_hop_fields_are_dropped_both_ways(engine: &[&str]) {
    let dir = scratch_dir("proxy", "hop", engine);
    let app = App::tcp(&dir, "up");
    let srv = quick(engine, &app.url);
    let mut c = srv.connect();

    c.send(&req(
        "GET",
        "/echo",
        "hop-req",
        &[
            ("Connection", "keep-alive, X-Secret-Hop"),
            ("X-Secret-Hop", "1"),
            ("Keep-Alive", "timeout=5"),
            ("TE", "trailers"),
            ("Trailer", "X-Foo"),
            ("Upgrade", "foo/1"),
            ("Proxy-Authorization", "Basic Zm9vOmJhcg=="),
            ("Proxy-Connection", "keep-alive"),
            ("X-Keep", "yes"),
        ],
        None,
    ));
    let rec = echoed(&c.resp());
    for name in [
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "proxy-authorization",
        "proxy-connection",
        "x-secret-hop",
    ] {
        assert!(
            rec.fields("headers", name).is_empty(),
            "{name} reached the upstream: {rec:?}"
        );
    }
    // The proxy may speak its own Connection upstream, but not relay the client's.
    for v in rec.fields("headers", "connection") {
        assert!(
            !v.to_ascii_lowercase().contains("x-secret-hop"),
            "Connection: {v}"
        );
    }
    assert_eq!(rec.fields("headers", "x-keep"), ["yes"]);

    // The upstream's hop-by-hop fields stop at the proxy; its Connection does not close ours.
    c.send(&get_id("/hop", "hop-resp"));
    let r = c.resp();
    assert_eq!((r.status, r.text().as_str()), (200, "hop"), "{}", r.head);
    for name in ["x-up-hop", "keep-alive", "proxy-authenticate", "upgrade"] {
        assert_eq!(
            r.header(name),
            None,
            "{name} reached the client:\n{}",
            r.head
        );
    }
    if let Some(v) = r.header("connection") {
        assert!(!v.to_ascii_lowercase().contains("x-up-hop"), "{}", r.head);
    }
    assert_eq!(r.header("x-end"), Some("kept"), "{}", r.head);
    c.send(&get_id("/other", "hop-after"));
    assert_eq!(c.resp().status, 200);
}

/// The values of every `X-Forwarded-For` field the upstream saw, joined as one list.
fn xff(rec: &Json) -> String {
    rec.fields("headers", "x-forwarded-for").join(", ")
}

fn forwarded_for_is_replaced_from_an_untrusted_peer(engine: &[&str]) {
    let dir = scratch_dir("proxy", "xff-untrusted", engine);
    let app = App::tcp(&dir, "up");
    let srv = quick(engine, &app.url);
    let mut c = srv.connect();
    // No peer is trusted by default: what the client claims is dropped.
    c.send(&req(
        "GET",
        "/echo",
        "xff-1",
        &[("X-Forwarded-For", "1.2.3.4")],
        None,
    ));
    let rec = echoed(&c.resp());
    assert_eq!(xff(&rec), "127.0.0.1");
    assert_eq!(rec.fields("headers", "x-forwarded-proto"), ["http"]);
    assert_eq!(rec.fields("headers", "x-forwarded-host"), [HOST]);
    // Host is kept as the client sent it.
    assert_eq!(rec.fields("headers", "host"), [HOST]);
}

fn forwarded_for_is_appended_to_from_a_trusted_peer(engine: &[&str]) {
    let dir = scratch_dir("proxy", "xff-trusted", engine);
    let app = App::tcp(&dir, "up");
    let srv = routed(
        engine,
        &dir,
        &[&app.url],
        "trusted_proxies = [\"127.0.0.1\"]",
        &[],
    );
    let mut c = srv.connect();
    c.send(&req(
        "GET",
        "/echo",
        "xff-2",
        &[("X-Forwarded-For", "1.2.3.4")],
        None,
    ));
    let rec = echoed(&c.resp());
    assert_eq!(xff(&rec), "1.2.3.4, 127.0.0.1");
    assert_eq!(rec.fields("headers", "x-forwarded-proto"), ["http"]);
    assert_eq!(rec.fields("headers", "x-forwarded-host"), [HOST]);
    c.send(&get_id("/echo", "xff-3"));
    assert_eq!(xff(&echoed(&c.resp())), "127.0.0.1");
}

fn forwarded_header_and_upstream_host(engine: &[&str]) {
    let dir = scratch_dir("proxy", "forwarded", engine);
    let app = App::tcp(&dir, "up");
    let options = "forwarded = \"forwarded\"\nupstream_host = \"up.example\"";
    let srv = routed(engine, &dir, &[&app.url], options, &[]);
    let mut c = srv.connect();
    c.send(&get_id("/echo", "fwd"));
    let rec = echoed(&c.resp());
    assert_eq!(rec.fields("headers", "host"), ["up.example"]);
    let fwd = rec.fields("headers", "forwarded").join(", ");
    for part in ["for=", "127.0.0.1", "proto=http", HOST] {
        assert!(fwd.contains(part), "Forwarded: {fwd:?} lacks {part}");
    }
    assert!(
        rec.fields("headers", "x-forwarded-for").is_empty(),
        "{rec:?}"
    );
}

// ---- bodies ----

fn request_bodies_in_every_framing_reach_the_upstream(engine: &[&str]) {
    let dir = scratch_dir("proxy", "req-bodies", engine);
    let app = App::tcp(&dir, "up");
    let srv = quick(engine, &app.url);
    let mut c = srv.connect();

    let body = pattern(5000);
    c.send(&req("POST", "/echo", "rb-cl", &[], Some(&body)));
    assert_body(&echoed(&c.resp()), &body);

    // Chunked with a trailer field: the body and the trailer both arrive.
    c.send(&chunked_post(
        "rb-trailer",
        &[b"hello", b" world"],
        "X-Sum: 42\r\n",
    ));
    let rec = echoed(&c.resp());
    assert_body(&rec, b"hello world");
    assert_eq!(rec.fields("trailers", "x-sum"), ["42"], "{rec:?}");

    let body = pattern(30_000);
    c.send(&chunked_post(
        "rb-chunked",
        &[&body[..10_000], &body[10_000..]],
        "",
    ));
    assert_body(&echoed(&c.resp()), &body);

    c.send(&req("PUT", "/echo", "rb-empty", &[], Some(b"")));
    let rec = echoed(&c.resp());
    assert_eq!(rec.get("method").str(), Some("PUT"));
    assert_body(&rec, b"");
}

fn response_bodies_in_every_framing_reach_the_client(engine: &[&str]) {
    let dir = scratch_dir("proxy", "resp-bodies", engine);
    let app = App::tcp(&dir, "up");
    let srv = quick(engine, &app.url);

    // Content-Length, larger than the default response buffer.
    let mut c = srv.connect();
    c.send(&get_id("/big?n=300000", "sb-cl"));
    let r = c.resp();
    assert_eq!(r.status, 200, "{}", r.head);
    assert!(
        r.body == pattern(300_000),
        "body differs ({} bytes)",
        r.body.len()
    );

    // Chunked with a trailer field, re-chunked to the client with the trailer.
    let mut c = srv.connect();
    c.send(&req(
        "GET",
        "/chunked",
        "sb-chunked",
        &[("TE", "trailers"), ("Connection", "close")],
        None,
    ));
    let raw = c
        .read_to_eof(READ_LIMIT)
        .expect("the proxy closes after Connection: close");
    let r = parse_full(&raw);
    assert_eq!(r.status, 200);
    assert!(r.complete, "{:?}", String::from_utf8_lossy(&raw));
    assert_eq!(r.body, b"hello world");
    assert_eq!(
        lookup(&r.trailers, "x-checksum"),
        Some("abc"),
        "{:?}",
        String::from_utf8_lossy(&raw)
    );

    // Delimited by the upstream's close: the client gets all of it, however framed.
    let mut c = srv.connect();
    c.send(&req(
        "GET",
        "/until-close?n=200000",
        "sb-close",
        &[("Connection", "close")],
        None,
    ));
    let raw = c
        .read_to_eof(READ_LIMIT)
        .expect("the proxy closes after Connection: close");
    let r = parse_full(&raw);
    assert_eq!(r.status, 200);
    assert!(r.complete);
    assert!(
        r.body == pattern(200_000),
        "body differs ({} bytes)",
        r.body.len()
    );
}

fn large_request_body_is_streamed_and_the_limit_still_holds(engine: &[&str]) {
    let dir = scratch_dir("proxy", "streamed", engine);
    let app = App::tcp(&dir, "up");
    let srv = routed(
        engine,
        &dir,
        &[&app.url],
        "request_buffer = \"64k\"",
        &["--max-body-size", "2m"],
    );
    let mut c = srv.connect();

    let body = pattern(1_500_000);
    c.send(&req("POST", "/echo", "big-cl", &[], Some(&body)));
    assert_body(&echoed(&c.resp()), &body);

    let parts: Vec<&[u8]> = body[..1_200_000].chunks(100_000).collect();
    c.send(&chunked_post("big-chunked", &parts, ""));
    assert_body(&echoed(&c.resp()), &body[..1_200_000]);

    // Streamed, not gathered: with 200 KB of a 1 MB body sent (over the 64 KB buffer), the
    // upstream already has the head; the rest follows, and it all arrives intact.
    let body = pattern(1_000_000);
    let mut head = b"POST /echo HTTP/1.1\r\nHost: front.example\r\nX-Test-Id: big-early\r\nContent-Length: 1000000\r\n\r\n".to_vec();
    head.extend_from_slice(&body[..200_000]);
    c.send(&head);
    wait_until(
        "the head at the upstream before the body is all sent",
        APP_LIMIT,
        || {
            app.events().iter().any(|e| {
                e.get("event").str() == Some("head") && e.get("id").str() == Some("big-early")
            })
        },
    );
    c.send(&body[200_000..]);
    assert_body(&echoed(&c.resp()), &body);

    // A chunked body cut off mid-stream by the client's close: the upstream never gets a
    // request it could take as whole.
    let mut cut = srv.connect();
    cut.send(b"POST /echo HTTP/1.1\r\nHost: front.example\r\nX-Test-Id: big-cut\r\nTransfer-Encoding: chunked\r\n\r\n");
    let chunk = pattern(100_000);
    let mut part = format!("{:x}\r\n", chunk.len()).into_bytes();
    part.extend_from_slice(&chunk);
    part.extend_from_slice(b"\r\n");
    cut.send(&part);
    wait_until("the cut request's head at the upstream", APP_LIMIT, || {
        app.events()
            .iter()
            .any(|e| e.get("event").str() == Some("head") && e.get("id").str() == Some("big-cut"))
    });
    drop(cut);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        app.arrivals("big-cut").len(),
        0,
        "a cut body reached the app as whole"
    );

    // Over --max-body-size: 413 from the proxy, nothing upstream.
    let mut c = srv.connect();
    c.send(b"POST /echo HTTP/1.1\r\nHost: front.example\r\nX-Test-Id: big-413\r\nContent-Length: 3000000\r\n\r\n");
    let r = c.resp();
    assert_eq!(r.status, 413, "{}", r.head);
    assert_eq!(app.arrivals("big-413").len(), 0);
}

// ---- failures ----

fn refused_connect_answers_502(engine: &[&str]) {
    let srv = quick(engine, &format!("http://127.0.0.1:{}", closed_port()));
    let mut c = srv.connect();
    c.send(&get_id("/x", "refused"));
    let r = c.resp();
    assert_eq!(r.status, 502, "{}", r.head);
}

fn first_byte_timeout_answers_504(engine: &[&str]) {
    let dir = scratch_dir("proxy", "first-byte", engine);
    let app = App::tcp(&dir, "up");
    // The upstream answers after 3 s, ten times the timeout.
    let srv = routed(
        engine,
        &dir,
        &[&app.url],
        "first_byte_timeout = \"300ms\"",
        &[],
    );
    let mut c = srv.connect();
    c.send(&get_id("/sleep?ms=3000", "slow-first-byte"));
    let r = c.resp();
    assert_eq!(r.status, 504, "{}", r.head);
    assert!(
        r.text().to_ascii_lowercase().contains("timeout"),
        "body: {:?}",
        r.text()
    );
}

fn malformed_upstream_response_answers_502(engine: &[&str]) {
    let dir = scratch_dir("proxy", "malformed", engine);
    let app = App::tcp(&dir, "up");
    let srv = quick(engine, &app.url);
    let mut c = srv.connect();
    c.send(&get_id("/malformed", "malformed"));
    let r = c.resp();
    assert_eq!(r.status, 502, "{}", r.head);
    // Nothing of the broken response reaches the client, before or after the 502.
    assert!(
        !r.head.contains("2xx") && !r.text().contains("Broken"),
        "{:?}",
        String::from_utf8_lossy(&r.raw)
    );
    assert!(
        c.buf.is_empty(),
        "more after the 502: {:?}",
        String::from_utf8_lossy(&c.buf)
    );
    // Response bytes arrived, so it is not retried.
    assert_eq!(app.arrivals("malformed").len(), 1);
}

fn upstream_closing_before_answering_is_retried_only_when_idempotent(engine: &[&str]) {
    let dir = scratch_dir("proxy", "drop", engine);
    let a = App::tcp(&dir, "a");
    let b = App::tcp(&dir, "b");
    let srv = routed(engine, &dir, &[&a.url, &b.url], "tries = 2", &[]);

    // GET reached an upstream but got no byte back: idempotent, so sent once more, no more.
    let mut c = srv.connect();
    c.send(&get_id("/drop", "drop-get"));
    let r = c.resp();
    assert_eq!(r.status, 502, "{}", r.head);
    assert_eq!(arrivals(&[&a, &b], "drop-get"), 2);

    // POST reached an upstream: never sent twice.
    let mut c = srv.connect();
    c.send(&req("POST", "/drop", "drop-post", &[], Some(b"payload")));
    let r = c.resp();
    assert_eq!(r.status, 502, "{}", r.head);
    assert_eq!(arrivals(&[&a, &b], "drop-post"), 1);
}

fn refused_upstream_is_skipped_for_get_and_post(engine: &[&str]) {
    let dir = scratch_dir("proxy", "skip-refused", engine);
    let app = App::tcp(&dir, "up");
    let dead = format!("http://127.0.0.1:{}", closed_port());
    let srv = routed(
        engine,
        &dir,
        &[&dead, &app.url],
        "tries = 2\nbalance = \"round-robin\"",
        &[],
    );
    let mut c = srv.connect();
    // Round robin sends every other request to the dead upstream first: a failed connect never
    // reached an upstream, so even POST goes on to the live one.
    for i in 0..4 {
        let id = format!("skip-get-{i}");
        c.send(&get_id("/echo", &id));
        assert_eq!(echoed(&c.resp()).get("method").str(), Some("GET"));
        assert_eq!(app.arrivals(&id).len(), 1, "{id}");

        let id = format!("skip-post-{i}");
        c.send(&req("POST", "/echo", &id, &[], Some(b"abc")));
        assert_body(&echoed(&c.resp()), b"abc");
        assert_eq!(app.arrivals(&id).len(), 1, "{id}");
    }
}

fn cut_off_response_is_not_retried_and_closes_the_client(engine: &[&str]) {
    let dir = scratch_dir("proxy", "truncated", engine);
    let a = App::tcp(&dir, "a");
    let b = App::tcp(&dir, "b");
    let srv = routed(engine, &dir, &[&a.url, &b.url], "tries = 2", &[]);
    let mut c = srv.connect();
    c.send(&get_id("/truncated", "truncated"));
    // The head promised 100000 bytes; 10 came before the upstream closed.
    let raw = c.read_to_eof(READ_LIMIT).unwrap_or_else(|got| {
        panic!(
            "the proxy kept the client connection open after {} bytes",
            got.len()
        )
    });
    let r = parse_full(&raw);
    assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&raw));
    assert!(
        !r.complete,
        "a complete response: {:?}",
        String::from_utf8_lossy(&raw)
    );
    assert!(r.body.len() < 100_000);
    assert_eq!(arrivals(&[&a, &b], "truncated"), 1);
}

fn read_timeout_cuts_a_stalled_response(engine: &[&str]) {
    let dir = scratch_dir("proxy", "stall", engine);
    let app = App::tcp(&dir, "up");
    let srv = routed(engine, &dir, &[&app.url], "read_timeout = \"300ms\"", &[]);
    let mut c = srv.connect();
    // 10 bytes of 1000, then 30 s of silence: the 300 ms read timeout cuts the connection.
    c.send(&get_id("/stall-body?ms=30000", "stall"));
    let raw = c.read_to_eof(READ_LIMIT).unwrap_or_else(|got| {
        panic!(
            "the connection was not cut; got {:?}",
            String::from_utf8_lossy(&got)
        )
    });
    if find(&raw, b"\r\n\r\n").is_some() {
        let r = parse_full(&raw);
        assert!(
            !(r.status == 200 && r.complete),
            "{:?}",
            String::from_utf8_lossy(&raw)
        );
    }
    assert_eq!(app.arrivals("stall").len(), 1);
}

// ---- the upstream connection pool ----

fn slow_client_does_not_hold_the_upstream_connection(engine: &[&str]) {
    let dir = scratch_dir("proxy", "slow-client", engine);
    let app = App::tcp(&dir, "up");
    let srv = routed(engine, &dir, &[&app.url], "response_buffer = \"256k\"", &[]);
    const N: usize = 4_000_000;

    // A client that asks for 4 MB and reads nothing yet.
    let mut slow = srv.connect();
    slow.send(&get_id(&format!("/big?n={N}"), "slow"));
    wait_until("the request at the upstream", APP_LIMIT, || {
        !app.arrivals("slow").is_empty()
    });
    let slow_conn = app.arrivals("slow")[0].get("conn").num();
    // The proxy takes the whole response (spilling past 256k) without waiting for the client.
    wait_until(
        "the upstream to finish sending 4 MB to a client reading nothing",
        APP_LIMIT,
        || app.sent("slow"),
    );

    // Meanwhile another client's request goes over the same upstream connection, back in the
    // pool. (Until it is back, a request may open another; so ask again a few times.)
    let mut other = srv.connect();
    let mut seen = Vec::new();
    let deadline = Instant::now() + APP_LIMIT;
    loop {
        other.send(&get_id("/echo", &format!("fast-{}", seen.len())));
        let conn = echoed(&other.resp()).get("conn").num();
        seen.push(conn);
        if conn == slow_conn {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "connection {slow_conn} never came back to the pool; requests went over {seen:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // Then the slow client gets all of it, intact.
    let r = slow.resp();
    assert_eq!(r.status, 200, "{}", r.head);
    assert_eq!(r.body.len(), N);
    assert!(r.body == pattern(N), "the 4 MB body differs");
}

fn upstream_connections_are_reused(engine: &[&str]) {
    let dir = scratch_dir("proxy", "reuse", engine);
    let app = App::tcp(&dir, "up");
    let srv = quick(engine, &app.url);
    let mut c = srv.connect();
    let mut conns = Vec::new();
    for i in 0..50 {
        c.send(&get_id("/echo", &format!("reuse-{i}")));
        conns.push(echoed(&c.resp()).get("conn").num());
    }
    conns.sort_unstable();
    conns.dedup();
    assert!(
        conns.len() <= 2,
        "50 sequential requests used upstream connections {conns:?}"
    );
}

fn both_balance_policies_serve_from_every_upstream(engine: &[&str]) {
    let dir = scratch_dir("proxy", "balance", engine);
    let a = App::tcp(&dir, "a");
    let b = App::tcp(&dir, "b");
    let srv = routed(
        engine,
        &dir,
        &[&a.url, &b.url],
        "balance = \"round-robin\"",
        &[],
    );
    let mut c = srv.connect();
    for i in 0..10 {
        c.send(&get_id("/echo", &format!("rr-{i}")));
        echoed(&c.resp());
    }
    let count = |app: &App, prefix: &str| {
        app.events()
            .iter()
            .filter(|e| e.get("event").str() == Some("request"))
            .filter(|e| e.get("id").str().is_some_and(|id| id.starts_with(prefix)))
            .count()
    };
    let (on_a, on_b) = (count(&a, "rr-"), count(&b, "rr-"));
    assert_eq!(on_a + on_b, 10);
    assert!(
        on_a > 0 && on_b > 0,
        "round robin sent {on_a} to a, {on_b} to b"
    );
    drop(srv);

    let srv = routed(
        engine,
        &dir,
        &[&a.url, &b.url],
        "balance = \"least-outstanding\"",
        &[],
    );
    let mut c = srv.connect();
    for i in 0..10 {
        c.send(&get_id("/echo", &format!("lo-{i}")));
        echoed(&c.resp());
    }
    assert_eq!(count(&a, "lo-") + count(&b, "lo-"), 10);
}

// ---- other upstreams ----

fn unix_socket_upstream(engine: &[&str]) {
    let dir = scratch_dir("proxy", "unix", engine);
    let app = App::unix(&dir, "up");
    let srv = quick(engine, &app.url);
    let mut c = srv.connect();
    c.send(&get_id("/echo", "unix-get"));
    assert_eq!(echoed(&c.resp()).get("method").str(), Some("GET"));
    let body = pattern(20_000);
    c.send(&req("POST", "/echo", "unix-post", &[], Some(&body)));
    assert_body(&echoed(&c.resp()), &body);
}

fn ringshard_serve_as_upstream(engine: &[&str]) {
    let backend = Server::start(engine, &["--shards", "1"]);
    let srv = quick(engine, &format!("http://{}", backend.addr));
    let mut c = srv.connect();
    c.send(&get("/plaintext"));
    let r = c.resp();
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "Hello, World!"),
        "{}",
        r.head
    );
    c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\nContent-Length: 4\r\n\r\nping");
    let r = c.resp();
    assert_eq!((r.status, r.text().as_str()), (200, "ping"), "{}", r.head);
    c.send(&get("/json"));
    let r = c.resp();
    assert_eq!(r.status, 200, "{}", r.head);
    assert!(r.text().contains("Hello, World!"), "{}", r.text());
}

per_engine! {
    quick_start_relays_get_post_and_head,
    hop_by_hop_fields_are_dropped_both_ways,
    forwarded_for_is_replaced_from_an_untrusted_peer,
    forwarded_for_is_appended_to_from_a_trusted_peer,
    forwarded_header_and_upstream_host,
    request_bodies_in_every_framing_reach_the_upstream,
    response_bodies_in_every_framing_reach_the_client,
    large_request_body_is_streamed_and_the_limit_still_holds,
    refused_connect_answers_502,
    first_byte_timeout_answers_504,
    malformed_upstream_response_answers_502,
    upstream_closing_before_answering_is_retried_only_when_idempotent,
    refused_upstream_is_skipped_for_get_and_post,
    cut_off_response_is_not_retried_and_closes_the_client,
    read_timeout_cuts_a_stalled_response,
    slow_client_does_not_hold_the_upstream_connection,
    upstream_connections_are_reused,
    both_balance_policies_serve_from_every_upstream,
    unix_socket_upstream,
    ringshard_serve_as_upstream,
    idle_upstream_connections_close_on_time_and_do_not_hold_shutdown,
    connect_timeout_answers_504,
}

/// Pooled connections close at their idle timeout (the upstream sees its connection end), and a
/// shard that holds some still shuts down at once: their armed receives are cancelled, not
/// waited out.
fn idle_upstream_connections_close_on_time_and_do_not_hold_shutdown(engine: &[&str]) {
    let dir = scratch_dir("proxy", "idle-close", engine);
    let app = App::tcp(&dir, "up");
    let srv = routed(engine, &dir, &[&app.url], "idle_timeout = \"300ms\"", &[]);
    let mut c = srv.connect();
    c.send(&get_id("/echo", "idle-1"));
    let first = echoed(&c.resp()).get("conn").num();
    // Past the idle timeout the pooled connection is gone: the next request opens another.
    std::thread::sleep(Duration::from_millis(1200));
    c.send(&get_id("/echo", "idle-2"));
    let second = echoed(&c.resp()).get("conn").num();
    assert_ne!(
        first, second,
        "a connection idle past idle_timeout was reused"
    );
    drop(srv);

    let srv = routed(engine, &dir, &[&app.url], "idle_timeout = \"60s\"", &[]);
    let mut c = srv.connect();
    c.send(&get_id("/echo", "idle-3"));
    assert_eq!(c.resp().status, 200);
    drop(c);
    let mut srv = srv;
    srv.signal(libc::SIGTERM);
    let status = srv.wait_exit(Duration::from_secs(5));
    assert!(
        status.is_some_and(|s| s.success()),
        "a shard with an idle pooled connection did not exit promptly: {status:?}"
    );
}

/// A listening socket whose accept queue is full: the kernel drops new SYNs, so a connect to
/// it neither succeeds nor fails until the connecting side gives up.
struct FullBacklog {
    fd: i32,
    _filled: Vec<std::net::TcpStream>,
    port: u16,
}

impl FullBacklog {
    fn new() -> FullBacklog {
        // SAFETY: plain socket calls on a descriptor this struct owns; the address structure
        // is zeroed and filled before bind reads it.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
            assert!(fd >= 0);
            let mut sin: libc::sockaddr_in = std::mem::zeroed();
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_addr.s_addr = u32::from_ne_bytes([127, 0, 0, 1]);
            let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            assert_eq!(
                libc::bind(fd, (&sin as *const libc::sockaddr_in).cast(), len),
                0
            );
            assert_eq!(libc::listen(fd, 0), 0);
            let mut got: libc::sockaddr_in = std::mem::zeroed();
            let mut glen = len;
            libc::getsockname(fd, (&mut got as *mut libc::sockaddr_in).cast(), &mut glen);
            let port = u16::from_be(got.sin_port);
            // A backlog of 0 holds one finished handshake; a second makes sure it is full.
            let mut filled = Vec::new();
            for _ in 0..2 {
                if let Ok(s) = std::net::TcpStream::connect_timeout(
                    &format!("127.0.0.1:{port}").parse().unwrap(),
                    Duration::from_millis(300),
                ) {
                    filled.push(s);
                }
            }
            FullBacklog {
                fd,
                _filled: filled,
                port,
            }
        }
    }
}

impl Drop for FullBacklog {
    fn drop(&mut self) {
        // SAFETY: closes the descriptor this struct owns, once.
        unsafe { libc::close(self.fd) };
    }
}

/// An upstream that never completes the handshake: 504 naming the connect timeout, in about
/// the timeout per try, not the kernel's minutes of SYN retries.
fn connect_timeout_answers_504(engine: &[&str]) {
    let dir = scratch_dir("proxy", "connect-timeout", engine);
    let full = FullBacklog::new();
    let url = format!("http://127.0.0.1:{}", full.port);
    let srv = routed(engine, &dir, &[&url], "connect_timeout = \"300ms\"", &[]);
    let mut c = srv.connect();
    let t0 = Instant::now();
    c.send(&get_id("/x", "connect-timeout"));
    let r = c.resp();
    assert_eq!(r.status, 504, "{}", r.head);
    assert!(r.text().contains("connect timeout"), "{}", r.text());
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "took {:?}",
        t0.elapsed()
    );
}

// ---- SHA-256, to compare bodies with the app's digest ----

fn sha256_hex(data: &[u8]) -> String {
    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
        0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
        0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
        0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
        0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
        0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
        0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
        0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];
    let mut h: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
        0x5be0cd19,
    ];
    let mut msg = data.to_vec();
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&(data.len() as u64 * 8).to_be_bytes());
    for block in msg.chunks(64) {
        let mut w = [0u32; 64];
        for (i, word) in block.chunks(4).enumerate() {
            w[i] = u32::from_be_bytes(word.try_into().unwrap());
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16]
                .wrapping_add(s0)
                .wrapping_add(w[i - 7])
                .wrapping_add(s1);
        }
        let mut v = h;
        for (k, wi) in K.iter().zip(w) {
            let [a, b, c, d, e, f, g, hh] = v;
            let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
            let ch = (e & f) ^ (!e & g);
            let t1 = hh
                .wrapping_add(s1)
                .wrapping_add(ch)
                .wrapping_add(*k)
                .wrapping_add(wi);
            let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
            let t2 = s0.wrapping_add((a & b) ^ (a & c) ^ (b & c));
            v = [t1.wrapping_add(t2), a, b, c, d.wrapping_add(t1), e, f, g];
        }
        for (x, y) in h.iter_mut().zip(v) {
            *x = x.wrapping_add(y);
        }
    }
    h.iter().map(|x| format!("{x:08x}")).collect()
}

/// The test helpers themselves (no server): the digest and the JSON reader.
#[test]
fn helpers_digest_and_parse() {
    assert_eq!(
        sha256_hex(b"hello"),
        "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    );
    assert_eq!(
        sha256_hex(b""),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    // Lengths either side of a block's padding boundary, and several blocks (from Python).
    for (n, want) in [
        (
            55,
            "463eb28e72f82e0a96c0a4cc53690c571281131f672aa229e0d45ae59b598b59",
        ),
        (
            56,
            "da2ae4d6b36748f2a318f23e7ab1dfdf45acdc9d049bd80e59de82a60895f562",
        ),
        (
            64,
            "fdeab9acf3710362bd2658cdc9a29e8f9c757fcf9811603a8c447cd1d9151108",
        ),
        (
            1000,
            "4e4c294b331f7a2099a379bec34b9f9fc03dc46ab465d998f4d683da53487e6d",
        ),
    ] {
        assert_eq!(sha256_hex(&pattern(n)), want, "{n} bytes");
    }
    let j = Json::parse(
        r#"{"a": [["Host", "x\u00e9\"y"], ["N", "1"]], "n": 12, "t": true, "z": null, "e": {}}"#,
    );
    assert_eq!(j.fields("a", "host"), ["xé\"y"]);
    assert_eq!(j.get("n").num(), 12);
    assert_eq!(j.get("t"), &Json::Bool(true));
    assert_eq!(j.get("missing"), &Json::Null);
}
