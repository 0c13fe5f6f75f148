//! End-to-end tests of `ringshard load` against small std::net servers with known behaviour,
//! over loopback. Each run is bounded (a few seconds) and tolerances are generous where the
//! behaviour allows, so a loaded 2-core machine does not make them flake.
mod common;

use common::json::Json;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// Test servers

/// One parsed request, as a handler sees it.
struct Req<'a> {
    path: &'a str,
    body: &'a [u8],
    /// 1-based index of the request on its connection.
    on_conn: u64,
    /// 1-based index over the whole server.
    global: u64,
}

enum Reply {
    /// Write these bytes.
    Send(Vec<u8>),
    /// Write these bytes, then close.
    SendClose(Vec<u8>),
    /// Close at once (after what earlier requests produced), answering nothing more.
    Drop,
    /// Never answer (the connection stays open).
    Silent,
}

type Handler = Arc<dyn Fn(&Req<'_>) -> Reply + Send + Sync>;

struct Server {
    url: String,
    /// Requests received (parsed), over all connections.
    count: Arc<AtomicU64>,
}

fn ok(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn serve_tcp(handler: Handler) -> Server {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", l.local_addr().unwrap());
    let count = Arc::new(AtomicU64::new(0));
    let c = count.clone();
    thread::spawn(move || {
        for s in l.incoming().flatten() {
            let _ = s.set_nodelay(true);
            let (h, c) = (handler.clone(), c.clone());
            thread::spawn(move || conn_loop(s, h, c));
        }
    });
    Server { url, count }
}

/// Reads requests (head plus Content-Length body), answers each through the handler; the
/// answers to one read are written together, as pipelining servers do.
fn conn_loop<S: Read + Write>(mut s: S, h: Handler, count: Arc<AtomicU64>) {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 65536];
    let mut on_conn = 0;
    loop {
        let n = match s.read(&mut tmp) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&tmp[..n]);
        let mut out = Vec::new();
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let body_len = head
                .lines()
                .find_map(|l| {
                    let (n, v) = l.split_once(':')?;
                    n.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if buf.len() < end + 4 + body_len {
                break;
            }
            let body: Vec<u8> = buf.drain(..end + 4 + body_len).skip(end + 4).collect();
            on_conn += 1;
            let global = count.fetch_add(1, Ordering::SeqCst) + 1;
            let path = head.split(' ').nth(1).unwrap_or("/").to_string();
            match h(&Req {
                path: &path,
                body: &body,
                on_conn,
                global,
            }) {
                Reply::Send(b) => out.extend_from_slice(&b),
                Reply::SendClose(b) => {
                    out.extend_from_slice(&b);
                    let _ = s.write_all(&out);
                    return;
                }
                Reply::Drop => {
                    let _ = s.write_all(&out);
                    return;
                }
                Reply::Silent => {}
            }
        }
        if !out.is_empty() && s.write_all(&out).is_err() {
            return;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Running the load generator

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn load(args: &[&str]) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringshard"))
        .arg("load")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let t_err = thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            // Killed, its pipes are at EOF: the readers have everything it wrote.
            let stderr = t_err.join().unwrap();
            panic!("ringshard load {args:?} did not finish in 30 s; stderr:\n{stderr}");
        }
        thread::sleep(Duration::from_millis(10));
    };
    Run {
        code: status.code().unwrap_or(-1),
        stdout: t_out.join().unwrap(),
        stderr: t_err.join().unwrap(),
    }
}

/// Runs with `--json` and parses the result.
fn load_json(args: &[&str]) -> Json {
    let mut a = args.to_vec();
    a.push("--json");
    let r = load(&a);
    assert_eq!(r.code, 0, "exit code; stderr: {}", r.stderr);
    if !r.stderr.is_empty() {
        eprintln!("stderr of {args:?}: {}", r.stderr);
    }
    Json::try_parse(&r.stdout).unwrap_or_else(|e| panic!("bad JSON ({e}): {}", r.stdout))
}

fn tmp_file(name: &str, content: &str) -> String {
    let p = std::env::temp_dir().join(format!("ringshard-load-test-{}-{name}", std::process::id()));
    std::fs::write(&p, content).unwrap();
    p.to_string_lossy().into_owned()
}

// ---------------------------------------------------------------------------------------------
// Tests

#[test]
fn the_json_reader_reads_json() {
    let j = Json::try_parse(r#"{"a": [1, true, null, "x\"y"], "b": {"c": -2.5e1}}"#).unwrap();
    match j.get("a") {
        Json::Arr(v) => {
            assert!(
                matches!(v.as_slice(), [Json::Num(n), Json::Bool(true), Json::Null, Json::Str(s)] if *n == 1.0 && s == "x\"y")
            )
        }
        o => panic!("{o:?}"),
    }
    assert_eq!(j.num_at("b.c"), -25.0);
    assert!(Json::try_parse("{").is_err());
}

#[test]
fn exact_request_counts_with_n_and_json_agrees_with_server() {
    let s = serve_tcp(Arc::new(|_| Reply::Send(ok("hello"))));
    let j = load_json(&["-n", "1000", "-c", "4", "--threads", "2", &s.url]);
    assert_eq!(j.u("requests"), 1000);
    assert_eq!(j.u("sent"), 1000);
    assert_eq!(j.u("status.200"), 1000);
    assert_eq!(j.u("errors.total"), 0);
    assert_eq!(s.count.load(Ordering::SeqCst), 1000, "server count");
    assert!(j.u("latency_us.p50") > 0 && j.u("latency_us.max") >= j.u("latency_us.p99"));

    let s = serve_tcp(Arc::new(|_| Reply::Send(ok("hello"))));
    let j = load_json(&[
        "-n",
        "1003",
        "-c",
        "3",
        "--pipeline",
        "8",
        "--threads",
        "1",
        &s.url,
    ]);
    assert_eq!(j.u("requests"), 1003);
    assert_eq!(j.u("status.200"), 1003);
    assert_eq!(s.count.load(Ordering::SeqCst), 1003, "server count");
    // bytes_read is exactly the responses' bytes.
    assert_eq!(j.u("bytes_read"), 1003 * ok("hello").len() as u64);
}

/// `--no-keepalive`: every request on its own connection, saying `Connection: close`, whether
/// the server closes after answering or (ignoring the header) would keep the connection; every
/// request is answered and none is counted as an error.
#[test]
fn no_keepalive_opens_a_connection_per_request() {
    for server_closes in [true, false] {
        let headers_ok = Arc::new(AtomicU64::new(0));
        let seen = headers_ok.clone();
        let s = serve_tcp(Arc::new(move |r: &Req<'_>| {
            assert_eq!(r.on_conn, 1, "a second request on one connection");
            let _ = r.path;
            seen.fetch_add(1, Ordering::SeqCst);
            if server_closes {
                Reply::SendClose(
                    b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok".to_vec(),
                )
            } else {
                Reply::Send(ok("ok"))
            }
        }));
        let j = load_json(&[
            "-n",
            "600",
            "-c",
            "4",
            "--threads",
            "1",
            "--no-keepalive",
            &s.url,
        ]);
        assert_eq!(j.u("requests"), 600, "server closes: {server_closes}");
        assert_eq!(j.u("status.200"), 600);
        assert_eq!(j.u("errors.total"), 0, "server closes: {server_closes}");
        assert!(j.u("connects") >= 600, "{} connects", j.u("connects"));
        assert_eq!(s.count.load(Ordering::SeqCst), 600);
        assert_eq!(headers_ok.load(Ordering::SeqCst), 600);
    }
    // The flag and what contradicts it.
    let s = serve_tcp(Arc::new(|_| Reply::Send(ok("ok"))));
    for (args, want) in [
        (
            vec!["--no-keepalive", "--pipeline", "4"],
            "cannot be used with",
        ),
        (
            vec!["--no-keepalive", "-H", "Connection: keep-alive"],
            "--no-keepalive sends Connection: close",
        ),
    ] {
        let mut a = args.clone();
        a.push(&s.url);
        let r = load(&a);
        assert_ne!(r.code, 0, "{args:?}");
        assert!(r.stderr.contains(want), "{args:?}: {}", r.stderr);
    }
}

#[test]
fn pipelined_mixed_responses_are_matched_in_order() {
    // Each path has its own status and framing; a response mis-framed by the client would
    // shift every later one and show up as wrong status counts or malformed errors.
    let s = serve_tcp(Arc::new(|r| {
        Reply::Send(match r.path {
            "/a" => ok("alpha"),
            "/b" => b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n11;ext=1\r\n0123456789abcdefg\r\n0\r\nX-Trailer: t\r\n\r\n".to_vec(),
            "/c" => b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n".to_vec(),
            _ => b"HTTP/1.1 204 No Content\r\n\r\n".to_vec(),
        })
    }));
    let paths = tmp_file("paths", "/a\n/b\n/c\n/d\n");
    let j = load_json(&[
        "-n",
        "4000",
        "-c",
        "1",
        "--threads",
        "1",
        "--pipeline",
        "16",
        "--paths",
        &paths,
        &s.url,
    ]);
    assert_eq!(j.u("requests"), 4000);
    for code in ["200", "404", "201", "204"] {
        assert_eq!(j.u(&format!("status.{code}")), 1000, "status {code}");
    }
    assert_eq!(j.u("errors.total"), 0);
    assert_eq!(s.count.load(Ordering::SeqCst), 4000);
}

#[test]
fn large_chunked_and_content_length_bodies_span_buffers() {
    let big: String = "x".repeat(100_000);
    let chunked = {
        let mut r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n".to_vec();
        for part in big.as_bytes().chunks(7_000) {
            r.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
            r.extend_from_slice(part);
            r.extend_from_slice(b"\r\n");
        }
        r.extend_from_slice(b"0\r\n\r\n");
        r
    };
    let cl = ok(&big);
    let s = serve_tcp(Arc::new(move |r| {
        Reply::Send(if r.global % 2 == 0 {
            chunked.clone()
        } else {
            cl.clone()
        })
    }));
    let j = load_json(&[
        "-n",
        "300",
        "-c",
        "3",
        "--pipeline",
        "4",
        "--threads",
        "1",
        &s.url,
    ]);
    assert_eq!(j.u("requests"), 300);
    assert_eq!(j.u("status.200"), 300);
    assert_eq!(j.u("errors.total"), 0);
    assert!(j.u("bytes_read") > 300 * 100_000);
}

#[test]
fn server_closing_mid_stream_counts_errors_and_reconnects() {
    // Every 7th request on a connection is dropped along with the connection.
    let s = serve_tcp(Arc::new(|r| {
        if r.on_conn % 7 == 0 {
            Reply::Drop
        } else {
            Reply::Send(ok("ok"))
        }
    }));
    let j = load_json(&[
        "-n",
        "600",
        "-c",
        "4",
        "--pipeline",
        "4",
        "--threads",
        "2",
        &s.url,
    ]);
    assert_eq!(j.u("requests"), 600, "run completes its -n");
    assert!(
        j.u("errors.closed") > 0,
        "closes with requests outstanding are counted"
    );
    assert!(j.u("connects") > 4, "reconnected: {}", j.u("connects"));
    assert_eq!(j.u("errors.malformed"), 0);
    // Lost requests are sent again, so the server saw at least as many as completed.
    assert!(s.count.load(Ordering::SeqCst) >= 600);

    // A graceful `Connection: close` after 5 responses is not an error.
    let s = serve_tcp(Arc::new(|r| {
        if r.on_conn == 5 {
            Reply::SendClose(
                b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok".to_vec(),
            )
        } else {
            Reply::Send(ok("ok"))
        }
    }));
    let j = load_json(&["-n", "200", "-c", "2", "--threads", "1", &s.url]);
    assert_eq!(j.u("requests"), 200);
    assert_eq!(j.u("errors.total"), 0);
    assert!(j.u("connects") >= 40);
    assert_eq!(s.count.load(Ordering::SeqCst), 200);

    // A close-delimited body (no length) ends at the close.
    let s = serve_tcp(Arc::new(|_| {
        Reply::SendClose(b"HTTP/1.0 200 OK\r\n\r\nuntil close".to_vec())
    }));
    let j = load_json(&["-n", "50", "-c", "2", "--threads", "1", &s.url]);
    assert_eq!(j.u("requests"), 50);
    assert_eq!(j.u("errors.total"), 0);
}

#[test]
fn malformed_responses_and_refused_reconnects_are_counted() {
    // Every 5th response on a connection has a broken status line: counted as malformed, the
    // connection is dropped and opened again, and the run still completes its -n.
    let s = serve_tcp(Arc::new(|r| {
        if r.on_conn % 5 == 0 {
            Reply::Send(b"HTTP/1.1 2x0 Nope\r\nContent-Length: 0\r\n\r\n".to_vec())
        } else {
            Reply::Send(ok("ok"))
        }
    }));
    let j = load_json(&["-n", "100", "-c", "2", "--threads", "1", &s.url]);
    assert_eq!(j.u("requests"), 100);
    assert!(
        j.u("errors.malformed") > 0,
        "malformed: {}",
        j.u("errors.malformed")
    );
    assert!(j.u("connects") > 2, "reconnected: {}", j.u("connects"));

    // A server that answers 3 requests on its only connection and then goes away: the
    // loader's reconnects are refused and counted, and the run ends at its deadline.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", l.local_addr().unwrap());
    thread::spawn(move || {
        let _preflight = l.accept().unwrap(); // the loader's reachability check
        let (s, _) = l.accept().unwrap();
        drop(l); // nothing listens any more
        conn_loop(
            s,
            Arc::new(|r| {
                if r.on_conn <= 3 {
                    Reply::Send(ok("ok"))
                } else {
                    Reply::Drop
                }
            }),
            Arc::new(AtomicU64::new(0)),
        );
    });
    let j = load_json(&["-d", "1s", "-c", "1", "--threads", "1", &url]);
    assert_eq!(j.u("requests"), 3);
    assert!(
        j.u("errors.connect") > 0,
        "connect errors: {}",
        j.u("errors.connect")
    );
}

#[test]
fn fixed_rate_is_achieved_within_5_percent() {
    let s = serve_tcp(Arc::new(|_| Reply::Send(ok("hello"))));
    // One thread, and the rate split over two threads and their connections.
    for threads in ["1", "2"] {
        let j = load_json(&[
            "--rate",
            "2000",
            "-d",
            "3s",
            "-c",
            "8",
            "--threads",
            threads,
            &s.url,
        ]);
        let rate = j.num_at("rate");
        assert!(
            (rate - 2000.0).abs() <= 100.0,
            "{threads} thread(s): achieved {rate} req/s"
        );
        assert_eq!(j.u("errors.total"), 0);
        let n = j.u("requests");
        assert!(
            (5700..=6300).contains(&n),
            "{threads} thread(s): {n} requests in 3 s at 2000/s"
        );
    }
}

#[test]
fn a_server_pause_shows_in_p99_under_rate() {
    // After 300 requests every connection stalls for one second, once.
    let pause: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    let s = serve_tcp(Arc::new(move |r| {
        let until = {
            let mut p = pause.lock().unwrap();
            if r.global == 300 {
                *p = Some(Instant::now() + Duration::from_secs(1));
            }
            *p
        };
        if let Some(u) = until {
            let now = Instant::now();
            if u > now {
                thread::sleep(u - now);
            }
        }
        Reply::Send(ok("hello"))
    }));
    let j = load_json(&[
        "--rate",
        "500",
        "-d",
        "3s",
        "-c",
        "4",
        "--threads",
        "1",
        &s.url,
    ]);
    let p99 = j.u("latency_us.p99");
    // About a third of the intended send times fall inside the pause, so p99 is most of it;
    // measured from actual send times only the few requests caught in it would see it.
    assert!(p99 >= 500_000, "p99 {p99} us does not show the 1 s pause");
    assert!(j.u("latency_us.p50") < 500_000);
    assert_eq!(j.u("errors.total"), 0);
}

#[test]
fn timeouts_are_counted() {
    let s = serve_tcp(Arc::new(|r| {
        if r.path == "/slow" {
            Reply::Silent
        } else {
            Reply::Send(ok("x"))
        }
    }));
    let url = format!("{}slow", s.url);
    let r = load(&[
        "-d",
        "1s",
        "--timeout",
        "200ms",
        "-c",
        "2",
        "--threads",
        "1",
        "--json",
        &url,
    ]);
    assert_eq!(r.code, 1, "no request completed: {}", r.stderr);
    let j = Json::try_parse(&r.stdout).unwrap();
    assert!(j.u("errors.timeout") >= 2, "{}", r.stdout);
    assert_eq!(j.u("requests"), 0);
}

#[test]
fn unix_socket_target() {
    let path =
        std::env::temp_dir().join(format!("ringshard-load-test-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let l = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let count = Arc::new(AtomicU64::new(0));
    let c = count.clone();
    thread::spawn(move || {
        for s in l.incoming().flatten() {
            let c = c.clone();
            thread::spawn(move || conn_loop(s, Arc::new(|_| Reply::Send(ok("unix"))), c));
        }
    });
    let url = format!("unix:{}:/x", path.display());
    let j = load_json(&[
        "-n",
        "500",
        "-c",
        "2",
        "--pipeline",
        "2",
        "--threads",
        "1",
        &url,
    ]);
    assert_eq!(j.u("requests"), 500);
    assert_eq!(count.load(Ordering::SeqCst), 500);
    let _ = std::fs::remove_file(&path);
}

#[test]
#[cfg_attr(
    no_ipv6,
    ignore = "this machine has no IPv6 loopback (build.rs could not bind [::1]:0)"
)]
fn ipv6_target() {
    let l = TcpListener::bind("[::1]:0").expect("bind [::1]:0, as build.rs could");
    let port = l.local_addr().unwrap().port();
    let count = Arc::new(AtomicU64::new(0));
    let c = count.clone();
    thread::spawn(move || {
        for s in l.incoming().flatten() {
            let c = c.clone();
            thread::spawn(move || conn_loop(s, Arc::new(|_| Reply::Send(ok("v6"))), c));
        }
    });
    let j = load_json(&[
        "-n",
        "300",
        "-c",
        "2",
        "--threads",
        "1",
        &format!("http://[::1]:{port}/"),
    ]);
    assert_eq!(j.u("requests"), 300);
    assert_eq!(count.load(Ordering::SeqCst), 300);
}

#[test]
fn requests_carry_method_headers_body_and_host() {
    let seen: Arc<Mutex<Vec<u8>>> = Arc::new(Mutex::new(Vec::new()));
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr: SocketAddr = l.local_addr().unwrap();
    let s2 = seen.clone();
    thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let mut got = Vec::new();
            while !got.ends_with(b"body!") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            if !got.is_empty() {
                *s2.lock().unwrap() = got;
                let _ = s.write_all(&ok("fine"));
                let mut rest = Vec::new();
                let _ = s.read_to_end(&mut rest);
            }
        }
    });
    let url = format!("http://{addr}/submit?x=1");
    let j = load_json(&[
        "-n",
        "1",
        "-c",
        "1",
        "-m",
        "PUT",
        "-H",
        "X-Test: yes",
        "--body",
        "body!",
        &url,
    ]);
    assert_eq!(j.u("requests"), 1);
    let req = String::from_utf8(seen.lock().unwrap().clone()).unwrap();
    assert!(req.starts_with("PUT /submit?x=1 HTTP/1.1\r\n"), "{req}");
    assert!(req.contains(&format!("\r\nHost: {addr}\r\n")), "{req}");
    assert!(req.contains("\r\nX-Test: yes\r\n"), "{req}");
    assert!(req.contains("\r\nContent-Length: 5\r\n\r\nbody!"), "{req}");
}

#[test]
fn several_urls_rotate_request_by_request_with_a_body_file() {
    let paths: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let p2 = paths.clone();
    let s = serve_tcp(Arc::new(move |r| {
        p2.lock()
            .unwrap()
            .push(format!("{} {}", r.path, String::from_utf8_lossy(r.body)));
        Reply::Send(ok("fine"))
    }));
    let body = tmp_file("rotate-body", "from a file");
    let (a, b) = (format!("{}a", s.url), format!("{}b?q=1", s.url));
    let j = load_json(&["-n", "6", "-c", "1", "--body-file", &body, &a, &b]);
    assert_eq!(j.u("requests"), 6);
    assert_eq!(s.count.load(Ordering::SeqCst), 6);
    let seen = paths.lock().unwrap().clone();
    let (a, b) = ("/a from a file", "/b?q=1 from a file");
    assert_eq!(seen, [a, b, a, b, a, b]);
}

#[test]
fn hdr_out_writes_the_percentile_distribution() {
    let s = serve_tcp(Arc::new(|_| Reply::Send(ok("hello"))));
    let out = std::env::temp_dir().join(format!("ringshard-load-test-{}.hdr", std::process::id()));
    let r = load(&[
        "-n",
        "2000",
        "-c",
        "2",
        "--threads",
        "1",
        "--hdr-out",
        out.to_str().unwrap(),
        &s.url,
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("requests  2,000 completed"),
        "{}",
        r.stdout
    );
    let t = std::fs::read_to_string(&out).unwrap();
    assert!(
        t.starts_with("       Value     Percentile TotalCount 1/(1-Percentile)\n\n"),
        "{t}"
    );
    assert!(t.contains("Total count    =         2000]"), "{t}");
    let rows: Vec<&str> = t
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.contains("Value"))
        .collect();
    assert!(rows.len() > 10);
    let last: Vec<&str> = rows.last().unwrap().split_whitespace().collect();
    assert_eq!((last[1], last[2]), ("1.000000000000", "2000"));
    let _ = std::fs::remove_file(&out);
}

#[test]
fn bad_input_gets_one_clear_line_and_nonzero_exit() {
    for (args, want) in [
        (vec!["http//nope"], "malformed URL"),
        (vec!["http://127.0.0.1:99999/"], "invalid port"),
        (vec!["https://127.0.0.1/"], "https is not supported"),
        (
            vec!["-H", "broken", "http://127.0.0.1:1/"],
            "not 'Name: value'",
        ),
        (
            vec!["--body-file", "/nonexistent/x", "http://127.0.0.1:1/"],
            "cannot read body file",
        ),
    ] {
        let r = load(&args);
        assert_ne!(r.code, 0, "{args:?}");
        assert_eq!(r.stderr.lines().count(), 1, "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains(want), "{args:?}: {}", r.stderr);
    }
    // Unreachable: a port nothing listens on.
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let r = load(&["-n", "10", &format!("http://127.0.0.1:{port}/")]);
    assert_ne!(r.code, 0);
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("cannot connect to 127.0.0.1"),
        "{}",
        r.stderr
    );
    // Nonsense flags and values are refused by the argument parser before anything runs.
    for args in [
        vec!["--bogus", "http://127.0.0.1:1/"],
        vec!["-c", "0", "http://127.0.0.1:1/"],
        vec!["-d", "5parsecs", "http://127.0.0.1:1/"],
        vec![],
    ] {
        let r = load(&args);
        assert_ne!(r.code, 0, "{args:?}");
        assert!(r.stderr.starts_with("error:"), "{args:?}: {}", r.stderr);
        assert_eq!(r.stderr.lines().count(), 1, "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains("ringshard load --help"), "{}", r.stderr);
    }
    // A sanity check that the closed port really refuses.
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[test]
fn ctrl_c_stops_the_run_and_still_reports() {
    let s = serve_tcp(Arc::new(|_| Reply::Send(ok("hello"))));
    let child = Command::new(env!("CARGO_BIN_EXE_ringshard"))
        .args([
            "load",
            "-d",
            "20s",
            "-c",
            "2",
            "--threads",
            "1",
            "--json",
            &s.url,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    thread::sleep(Duration::from_millis(700));
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let t = Instant::now();
    let out = child.wait_with_output().unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "did not stop promptly"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "stderr: {stderr}");
    let j = Json::try_parse(&String::from_utf8_lossy(&out.stdout))
        .unwrap_or_else(|e| panic!("bad JSON ({e}); stderr: {stderr}"));
    assert!(j.u("requests") > 0);
    assert_eq!(
        j.u("requests"),
        s.count.load(Ordering::SeqCst),
        "in-flight responses were awaited"
    );
}
