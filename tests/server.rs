//! Protocol tests against the `ringshard` binary over real loopback sockets, asserting on raw
//! bytes. Every test runs once per engine (`common::engines()`).
mod common;

use std::io::{ErrorKind, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;

// ---------------------------------------------------------------------------------------------
// Built-in routes, response headers, keep-alive
// ---------------------------------------------------------------------------------------------

#[test]
fn builtin_routes() {
    for engine in engines() {
        let srv = Server::start(&engine, &["--shards", "1"]);
        let mut c = srv.connect();

        for path in ["/", "/plaintext"] {
            c.send(&get(path));
            let r = c.resp();
            assert_eq!(r.status, 200, "{path}");
            assert_eq!(r.body, b"Hello, World!");
            assert_eq!(r.header("content-type"), Some("text/plain"));
            assert_eq!(r.header("content-length"), Some("13"));
            assert!(!r.is_close());
            check_common_headers(&r);
        }

        c.send(&get("/json"));
        let r = c.resp();
        assert_eq!(r.status, 200);
        assert_eq!(r.body, br#"{"message":"Hello, World!"}"#);
        assert_eq!(r.header("content-type"), Some("application/json"));
        check_common_headers(&r);

        c.send(&get("/health"));
        let r = c.resp();
        assert_eq!(r.status, 200);
        check_common_headers(&r);

        c.send(&echo(b"ping \x00\xff pong"));
        let r = c.resp();
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"ping \x00\xff pong");
        assert_eq!(r.header("content-type"), Some("application/octet-stream"));
        check_common_headers(&r);

        c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Type: text/x-test\r\nContent-Length: 3\r\n\r\nabc");
        let r = c.resp();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"abc"[..]));
        assert_eq!(r.header("content-type"), Some("text/x-test"));

        // An empty body, by Content-Length: 0 and by no framing at all.
        c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n");
        let r = c.resp();
        assert_eq!((r.status, r.body.len()), (200, 0));
        assert_eq!(r.header("content-length"), Some("0"));
        c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\n\r\n");
        let r = c.resp();
        assert_eq!((r.status, r.body.len()), (200, 0));

        // Router: 404, and 405 with Allow; neither closes the connection.
        c.send(&get("/nope"));
        let r = c.resp();
        assert_eq!(r.status, 404);
        assert!(!r.is_close());
        check_common_headers(&r);

        c.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi");
        let r = c.resp();
        assert_eq!(r.status, 405);
        assert_eq!(r.header("allow"), Some("GET, HEAD"));
        assert!(!r.is_close());

        c.send(&get("/echo"));
        let r = c.resp();
        assert_eq!(r.status, 405);
        assert_eq!(r.header("allow"), Some("POST"));

        c.send(b"DELETE /json HTTP/1.1\r\nHost: t\r\n\r\n");
        let r = c.resp();
        assert_eq!(r.status, 405);
        assert_eq!(r.header("allow"), Some("GET, HEAD"));

        // Query strings do not affect routing.
        c.send(&get("/json?x=1&y=2"));
        assert_eq!(c.resp().status, 200);

        // Still alive after all of it.
        c.send(&get("/"));
        assert_eq!(c.resp().body, b"Hello, World!");
        assert!(c.buf.is_empty(), "stray bytes: {:?}", c.buf);
    }
}

#[test]
fn no_builtin_flag_gives_404() {
    for engine in engines() {
        let srv = Server::start(&engine, &["--shards", "1", "--no-builtin"]);
        let mut c = srv.connect();
        c.send(&get("/"));
        assert_eq!(c.resp().status, 404);
    }
}

#[test]
fn date_header_is_current() {
    for engine in engines() {
        let srv = Server::start(&engine, &["--shards", "1"]);
        let mut c = srv.connect();
        c.send(&get("/"));
        let r = c.resp();
        let date = parse_imf(r.header("date").unwrap()).expect("IMF-fixdate");
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(
            date.abs_diff(now) <= 10,
            "Date {} is {}s away from now",
            r.header("date").unwrap(),
            date as i64 - now as i64
        );
        // The Date value advances (it is refreshed once a second per shard).
        std::thread::sleep(Duration::from_millis(2100));
        c.send(&get("/"));
        let later = parse_imf(c.resp().header("date").unwrap()).unwrap();
        assert!(later > date, "Date did not advance: {date} then {later}");
    }
}

#[test]
fn head_has_headers_but_no_body() {
    for engine in engines() {
        let srv = Server::start(&engine, &["--shards", "1"]);
        let mut c = srv.connect();
        c.send(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n");
        let r = c.resp_head();
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-length"), Some("13"));
        assert_eq!(r.header("content-type"), Some("text/plain"));
        check_common_headers(&r);
        // If a body had been sent, it would show up in front of the next response.
        c.send(&get("/json"));
        let r = c.resp();
        assert_eq!(r.body, br#"{"message":"Hello, World!"}"#);
        // HEAD pipelined with GETs.
        c.send(b"HEAD /json HTTP/1.1\r\nHost: t\r\n\r\nGET /plaintext HTTP/1.1\r\nHost: t\r\n\r\nHEAD /nope HTTP/1.1\r\nHost: t\r\n\r\n");
        let r = c.resp_head();
        assert_eq!(r.header("content-length"), Some("27"));
        assert_eq!(c.resp().body, b"Hello, World!");
        assert_eq!(c.resp_head().status, 404);
        c.expect_silence(Duration::from_millis(200));
        assert!(c.buf.is_empty());
    }
}

#[test]
fn keep_alive_and_close() {
    for engine in engines() {
        let srv = Server::start(&engine, &["--shards", "1"]);

        // HTTP/1.1: keep-alive by default.
        let mut c = srv.connect();
        for _ in 0..5 {
            c.send(&get("/"));
            let r = c.resp();
            assert_eq!(r.status, 200);
            assert!(r.header("connection").is_none(), "{}", r.head);
        }

        // HTTP/1.1 with Connection: close.
        c.send(b"GET /json HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        let r = c.resp();
        assert_eq!(r.status, 200);
        assert!(r.is_close(), "{}", r.head);
        c.expect_eof();

        // Connection tokens are case-insensitive and may be listed.
        let mut c = srv.connect();
        c.send(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: Upgrade, CLOSE\r\n\r\n");
        assert!(c.resp().is_close());
        c.expect_eof();

        // Requests after Connection: close in the same write are not answered.
        let mut c = srv.connect();
        c.send(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\nGET /json HTTP/1.1\r\nHost: t\r\n\r\n");
        assert!(c.resp().is_close());
        c.expect_eof();

        // HTTP/1.0: close by default (no Host needed).
        let mut c = srv.connect();
        c.send(b"GET / HTTP/1.0\r\n\r\n");
        let r = c.resp();
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"Hello, World!");
        assert!(r.is_close(), "{}", r.head);
        c.expect_eof();

        // HTTP/1.0 with Connection: keep-alive stays open and says so.
        let mut c = srv.connect();
        for _ in 0..3 {
            c.send(b"GET /json HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
            let r = c.resp();
            assert_eq!(r.status, 200);
            assert_eq!(r.header("connection"), Some("keep-alive"), "{}", r.head);
        }
        // ... and a 1.0 request without it then closes.
        c.send(b"GET / HTTP/1.0\r\n\r\n");
        assert!(c.resp().is_close());
        c.expect_eof();

        // POST over HTTP/1.0 keep-alive.
        let mut c = srv.connect();
        c.send(b"POST /echo HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 4\r\n\r\nabcd");
        let r = c.resp();
        assert_eq!(r.body, b"abcd");
        assert_eq!(r.header("connection"), Some("keep-alive"));
    }
}

/// A client that opens a connection per request and closes it as soon as the response is whole
/// (as wrk does with `Connection: close`) gets every response whole, from several threads at
/// once: the close of one connection never touches the next one to get its descriptor.
#[test]
fn a_connection_per_request_gets_every_response_whole() {
    for engine in engines() {
        let srv = Server::start(&engine, &["--shards", "1"]);
        let addr = srv.addr;
        let clients: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(move || {
                    let mut failures = Vec::new();
                    for i in 0..1500 {
                        let mut c = Client::connect(addr);
                        c.send(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
                        match c.try_resp(false) {
                            Ok(r) if r.status == 200 && r.body == b"Hello, World!" => {}
                            Ok(r) => failures.push(format!("request {i}: {}", r.head)),
                            Err(e) => failures.push(format!("request {i}: {e}")),
                        }
                        // Dropped here, before the server's FIN: the close wrk makes.
                    }
                    failures
                })
            })
            .collect();
        let failures: Vec<String> = clients
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        assert!(
            failures.is_empty(),
            "{engine:?}: {} of 6000 responses lost or cut, first: {:?}\n{}",
            failures.len(),
            &failures[..failures.len().min(3)],
            srv.stderr()
        );
        let mut m = srv.connect();
        m.send(&get("/metrics"));
        let page = m.resp().text();
        let errors = page
            .lines()
            .find_map(|l| l.strip_prefix("ringshard_send_errors_total{shard=\"0\"} "))
            .unwrap_or_else(|| panic!("no send_errors_total in:\n{page}"));
        assert_eq!(errors.trim(), "0", "{engine:?}: {page}");
    }
}

#[test]
fn half_close_after_requests_still_gets_the_answers() {
    for engine in engines() {
        let srv = Server::start(&engine, &["--shards", "1"]);
        let mut c = srv.connect();
        c.send(&[get("/"), echo(b"two"), get("/json")].concat());
        c.s.shutdown(std::net::Shutdown::Write).unwrap();
        assert_eq!(c.resp().body, b"Hello, World!");
        assert_eq!(c.resp().body, b"two");
        assert_eq!(c.resp().body, br#"{"message":"Hello, World!"}"#);
        c.expect_eof();

        // FIN in the middle of a body: nothing to answer, just a close.
        let mut c = srv.connect();
        c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc");
        c.s.shutdown(std::net::Shutdown::Write).unwrap();
        match c.read_to_eof(READ_LIMIT) {
            Ok(rest) => {
                // A 400 for the truncated request is acceptable; a 200 is not.
                let text = String::from_utf8_lossy(&rest);
                assert!(!text.starts_with("HTTP/1.1 200"), "{text}");
            }
            Err(_) => panic!("no close after a FIN mid-body"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Pipelining and splitting
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy)]
enum Want {
    Hello,
    Json,
    Echo(usize),
    Head,
    NotFound,
}

#[test]
fn pipelined_100_requests_in_one_write() {
    for engine in engines() {
        let srv = Server::start(&engine, &["--shards", "1"]);
        let mut c = srv.connect();
        let mut all = Vec::new();
        let mut want = Vec::new();
        for i in 0..100 {
            match i % 5 {
                0 => {
                    all.extend_from_slice(&get("/"));
                    want.push(Want::Hello);
                }
                1 => {
                    all.extend_from_slice(&get("/json"));
                    want.push(Want::Json);
                }
                2 => {
                    all.extend_from_slice(&echo(format!("body number {i}").as_bytes()));
                    want.push(Want::Echo(i));
                }
                3 => {
                    all.extend_from_slice(b"HEAD /plaintext HTTP/1.1\r\nHost: t\r\n\r\n");
                    want.push(Want::Head);
                }
                _ => {
                    all.extend_from_slice(
                        format!("GET /missing/{i} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes(),
                    );
                    want.push(Want::NotFound);
                }
            }
        }
        c.send(&all);
        for (i, w) in want.iter().enumerate() {
            let r = match w {
                Want::Head => c.resp_head(),
                _ => c.resp(),
            };
            match *w {
                Want::Hello => assert_eq!(
                    (r.status, r.body.as_slice()),
                    (200, &b"Hello, World!"[..]),
                    "#{i}"
                ),
                Want::Json => assert_eq!(r.body, br#"{"message":"Hello, World!"}"#, "#{i}"),
                Want::Echo(n) => assert_eq!(r.text(), format!("body number {n}"), "#{i}"),
                Want::Head => {
                    assert_eq!(r.status, 200, "#{i}");
                    assert_eq!(r.header("content-length"), Some("13"), "#{i}");
                }
                Want::NotFound => assert_eq!(r.status, 404, "#{i}"),
            }
            assert!(!r.is_close(), "#{i}");
        }
        c.expect_silence(Duration::from_millis(200));
        assert!(c.buf.is_empty());
        // The connection is still usable.
        c.send(&get("/health"));
        assert_eq!(c.resp().status, 200);
    }
}

/// Writes `a`, pauses so the server most likely reads it alone, then writes `b`.
fn send_split(c: &mut Client, a: &[u8], b: &[u8]) {
    if !a.is_empty() {
        c.send(a);
        std::thread::sleep(Duration::from_millis(2));
    }
    c.send(b);
}

#[test]
fn request_split_at_every_byte() {
    for engine in engines() {
        let srv = Server::start(&engine, &["--shards", "1"]);
        let req: &[u8] = b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Type: text/x\r\nContent-Length: 11\r\n\r\nhello worldGET /json HTTP/1.1\r\nHost: t\r\n\r\n";
        for cut in 1..req.len() {
            let mut c = srv.connect();
            send_split(&mut c, &req[..cut], &req[cut..]);
            let r = c.resp();
            assert_eq!(
                (r.status, r.text().as_str()),
                (200, "hello world"),
                "cut {cut}"
            );
            assert_eq!(r.header("content-type"), Some("text/x"), "cut {cut}");
            let r = c.resp();
            assert_eq!(r.body, br#"{"message":"Hello, World!"}"#, "cut {cut}");
        }
    }
}

#[test]
fn request_one_byte_per_write() {
    for engine in engines() {
        let srv = Server::start(&engine, &["--shards", "1"]);
        let mut c = srv.connect();
        let req: &[u8] = b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nT: 1\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n";
        for b in req {
            c.send(std::slice::from_ref(b));
            std::thread::sleep(Duration::from_micros(300));
        }
        assert_eq!(c.resp().body, b"abcde");
        assert_eq!(c.resp().body, b"Hello, World!");
    }
}

// ---------------------------------------------------------------------------------------------
// Chunked request bodies, 100-continue
// ---------------------------------------------------------------------------------------------

#[test]
fn chunked_bodies_with_trailers() {
    for engine in engines() {
        let srv = Server::start(&engine, &["--shards", "1"]);
        let mut c = srv.connect();
        let req: &[u8] = b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWiki\r\n5;name=value\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nX-Trailer: one\r\nX-Other: two\r\n\r\n";
        c.send(req);
        let r = c.resp();
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"Wikipedia in\r\n\r\nchunks.");
        assert_eq!(r.header("content-length"), Some("23"));
        assert!(!r.is_close());

        // No trailers, upper-case hex, a "Transfer-Encoding: Chunked" spelling; then keep going.
        c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: Chunked\r\n\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\n");
        assert_eq!(c.resp().body, b"abcdefghijklmnopqrstuvwxyz");
        // An empty chunked body.
        c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
        let r = c.resp();
        assert_eq!((r.status, r.body.len()), (200, 0));
        // Chunked followed by a pipelined request in the same write.
        c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nA: b\r\n\r\nGET /json HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(c.resp().body, b"ok");
        assert_eq!(c.resp().body, br#"{"message":"Hello, World!"}"#);

        // A big chunked body over many writes.
        let mut c = srv.connect();
        c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
        let mut want = Vec::new();
        for i in 0..200u32 {
            let data = vec![b'a' + (i % 26) as u8; 1000 + i as usize];
            let mut chunk = format!("{:x}\r\n", data.len()).into_bytes();
            chunk.extend_from_slice(&data);
            chunk.extend_from_slice(b"\r\n");
            c.send(&chunk);
            want.extend_from_slice(&data);
        }
        c.send(b"0\r\n\r\n");
        let r = c.resp();
        assert_eq!(r.status, 200);
        assert!(
            r.body == want,
            "big chunked body differs ({} vs {} bytes)",
            r.body.len(),
            want.len()
        );
    }
}

#[test]
fn chunked_request_split_at_every_byte() {
    for engine in engines() {
        let srv = Server::start(&engine, &["--shards", "1"]);
        let req: &[u8] = b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWiki\r\n5;a=b\r\npedia\r\n0\r\nT: v\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n";
        for cut in 1..req.len() {
            let mut c = srv.connect();
            send_split(&mut c, &req[..cut], &req[cut..]);
            let r = c.resp();
            assert_eq!(
                (r.status, r.body.as_slice()),
                (200, &b"Wikipedia"[..]),
                "cut {cut}"
            );
            assert_eq!(c.resp().body, b"Hello, World!", "cut {cut}");
        }
    }
}

#[test]
fn expect_100_continue() {
    for engine in engines() {
        let srv = Server::start(&engine, &["--shards", "1", "--max-body-size", "1000"]);

        // Head alone: 100 Continue, then the final response once the body is in.
        let mut c = srv.connect();
        c.send(
            b"POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
        );
        let r = c.resp();
        assert_eq!(r.status, 100);
        assert_eq!(r.raw, b"HTTP/1.1 100 Continue\r\n\r\n");
        c.send(b"hello");
        let r = c.resp();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"hello"[..]));
        assert!(!r.is_close());

        // Chunked with 100-continue; the Expect value is case-insensitive.
        c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-Continue\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(c.resp().status, 100);
        c.send(b"3\r\nabc\r\n0\r\n\r\n");
        assert_eq!(c.resp().body, b"abc");

        // A body too large is refused before the client sends it: 413, no 100.
        let mut c = srv.connect();
        c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 1001\r\n\r\n");
        let r = c.resp();
        assert_eq!(r.status, 413);
        assert!(r.is_close());
        c.expect_eof();

        // A request without a body gets its answer directly.
        let mut c = srv.connect();
        c.send(b"GET / HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n\r\n");
        assert_eq!(c.resp().status, 200);

        // An unknown expectation: 417 and close.
        let mut c = srv.connect();
        c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nExpect: something-else\r\nContent-Length: 2\r\n\r\nhi");
        let r = c.resp();
        assert_eq!(r.status, 417);
        assert!(r.is_close());
        c.expect_eof();
    }
}

// ---------------------------------------------------------------------------------------------
// Limits and rejections
// ---------------------------------------------------------------------------------------------

/// Sends `req` on a fresh connection and checks the rejection: `status`, `Connection: close`,
/// the server's common headers, then EOF.
fn expect_rejected(srv: &Server, name: &str, req: &[u8], status: u16) {
    let mut c = srv.connect();
    // The server may close before reading everything; a failed write is fine.
    let _ = c.try_send(req);
    let r = c
        .try_resp(false)
        .unwrap_or_else(|e| panic!("{name}: no response: {e}"));
    assert_eq!(r.status, status, "{name}: got {}", r.head);
    assert!(r.is_close(), "{name}: no Connection: close in {}", r.head);
    check_common_headers(&r);
    match c.read_to_eof(READ_LIMIT) {
        Ok(rest) => assert!(
            rest.is_empty(),
            "{name}: more bytes after the rejection: {:?}",
            String::from_utf8_lossy(&rest)
        ),
        Err(_) => panic!("{name}: the server did not close after {status}"),
    }
}

fn expect_ok(srv: &Server, name: &str, req: &[u8]) -> Resp {
    let mut c = srv.connect();
    c.send(req);
    let r = c
        .try_resp(false)
        .unwrap_or_else(|e| panic!("{name}: no response: {e}"));
    assert_eq!(r.status, 200, "{name}: got {}", r.head);
    r
}

fn with_headers(n: usize) -> Vec<u8> {
    let mut v = b"GET / HTTP/1.1\r\nHost: t\r\n".to_vec();
    for i in 1..n {
        v.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
    }
    v.extend_from_slice(b"\r\n");
    v
}

/// A GET whose head is exactly `len` bytes.
fn head_of_len(len: usize) -> Vec<u8> {
    let base = b"GET / HTTP/1.1\r\nHost: t\r\nX-Pad: \r\n\r\n".len();
    let mut v = b"GET / HTTP/1.1\r\nHost: t\r\nX-Pad: ".to_vec();
    v.resize(v.len() + len - base, b'p');
    v.extend_from_slice(b"\r\n\r\n");
    assert_eq!(v.len(), len);
    v
}

/// A GET whose request line is `len` bytes long (without CRLF).
fn target_of_len(len: usize) -> Vec<u8> {
    let base = "GET / HTTP/1.1".len();
    let mut v = b"GET /".to_vec();
    v.resize(v.len() + len - base, b'a');
    v.extend_from_slice(b" HTTP/1.1\r\nHost: t\r\n\r\n");
    v
}

fn chunked_echo(chunks: &[usize], trailer: &[u8]) -> Vec<u8> {
    let mut v = b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for &n in chunks {
        v.extend_from_slice(format!("{n:x}\r\n").as_bytes());
        v.resize(v.len() + n, b'z');
        v.extend_from_slice(b"\r\n");
    }
    v.extend_from_slice(b"0\r\n");
    v.extend_from_slice(trailer);
    v.extend_from_slice(b"\r\n");
    v
}

macro_rules! rejections {
    ($srv:expr; $($name:literal: $req:expr => $status:expr;)*) => {
        $( expect_rejected(&$srv, $name, &$req[..], $status); )*
    };
}

#[test]
fn rejections_with_default_limits() {
    for engine in engines() {
        let srv = Server::start(&engine, &["--shards", "1"]);
        let big_header = {
            let mut v = b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: ".to_vec();
            v.resize(v.len() + 17 * 1024, b'b');
            v.extend_from_slice(b"\r\n\r\n");
            v
        };
        rejections! { srv;
            // Malformed heads.
            "no target": b"GET\r\n\r\n" => 400;
            "header without colon": b"GET / HTTP/1.1\r\nHost: t\r\nNo colon here\r\n\r\n" => 400;
            "space before colon": b"GET / HTTP/1.1\r\nHost : t\r\n\r\n" => 400;
            "bad method byte": b"G(T / HTTP/1.1\r\nHost: t\r\n\r\n" => 400;
            "binary garbage": b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n" => 400;
            "bad version": b"GET / HTTQ/1.1\r\nHost: t\r\n\r\n" => 400;
            // Host rules.
            "1.1 without Host": b"GET / HTTP/1.1\r\n\r\n" => 400;
            "two Hosts": b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n" => 400;
            // Framing conflicts.
            "CL and TE": b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n" => 400;
            "TE and CL": b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n5\r\nhello\r\n0\r\n\r\n" => 400;
            "differing CLs": b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!" => 400;
            "differing CL list": b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5, 6\r\n\r\nhello!" => 400;
            // A repeated Content-Length, even equal, is framed differently by different servers.
            "same CL twice": b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello" => 400;
            "same CL in a list": b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1000,1000\r\n\r\nhello" => 400;
            // Every line of a head ends in CRLF.
            "LF only after the request line": b"GET / HTTP/1.1\nHost: t\r\n\r\n" => 400;
            "LF only after a header": b"GET / HTTP/1.1\r\nHost: t\nX-A: 1\r\n\r\n" => 400;
            "LF only ending the head": b"GET / HTTP/1.1\r\nHost: t\r\n\n" => 400;
            "CL not a number": b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: abc\r\n\r\n" => 400;
            "CL negative": b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n" => 400;
            "CL with plus": b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: +5\r\n\r\nhello" => 400;
            "CL empty": b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: \r\n\r\n" => 400;
            "CL hex": b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 0x5\r\n\r\nhello" => 400;
            "chunked twice": b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n" => 400;
            "chunked over HTTP/1.0": b"POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" => 400;
            // Transfer codings other than chunked.
            "TE gzip": b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n" => 501;
            "TE gzip, chunked": b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n" => 501;
            "TE identity": b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: identity\r\n\r\n" => 501;
            // Versions 2 and up.
            "HTTP/2 prior knowledge": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" => 505;
            "HTTP/2.0 request": b"GET / HTTP/2.0\r\nHost: t\r\n\r\n" => 505;
            "HTTP/3.0 request": b"GET / HTTP/3.0\r\nHost: t\r\n\r\n" => 505;
            // Expectations.
            "unknown Expect": b"GET / HTTP/1.1\r\nHost: t\r\nExpect: 200-ok\r\n\r\n" => 417;
            // Malformed chunked bodies.
            "bad chunk size": b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhi\r\n0\r\n\r\n" => 400;
            "chunk data too long": b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhello\r\n0\r\n\r\n" => 400;
            "bare LF in chunk": b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n2\nhi\r\n0\r\n\r\n" => 400;
            "negative chunk": b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n-2\r\nhi\r\n0\r\n\r\n" => 400;
            "junk after a chunk size": b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5 zz\r\nhello\r\n0\r\n\r\n" => 400;
            "space before a chunk line end": b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n" => 400;
            "semicolon without an extension": b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5;\r\nhello\r\n0\r\n\r\n" => 400;
            "control byte in a chunk extension": b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5;a\x01\r\nhello\r\n0\r\n\r\n" => 400;
            // Without the final CRLF, the next request must not pass for trailer fields.
            "request line as a trailer": b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nGET /json HTTP/1.1\r\nHost: a\r\n\r\n" => 400;
            "control byte in a trailer": b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: \x01\r\n\r\n" => 400;
            // Default limits: head 16 KiB (431, 414 for the target), 100 headers, body 1 MiB.
            "head too large": big_header => 431;
            "target too long": target_of_len(17 * 1024) => 414;
            "101 headers": with_headers(101) => 431;
            "body over 1 MiB": b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1048577\r\n\r\n" => 413;
            "huge CL": b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 99999999999999999999\r\n\r\n" => 400;
            "chunk over 1 MiB": b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n100001\r\n" => 413;
            "body over 1 MiB sent anyway": {
                let mut v = b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3000000\r\n\r\n".to_vec();
                v.resize(v.len() + 3_000_000, b'b');
                v
            } => 413;
            "head of 200 KiB sent whole": {
                let mut v = b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: ".to_vec();
                v.resize(v.len() + 200 * 1024, b'h');
                v.extend_from_slice(b"\r\n\r\n");
                v
            } => 431;
            "obs-fold": b"GET / HTTP/1.1\r\nHost: t\r\nX-A: 1\r\n  folded\r\n\r\n" => 400;
            "NUL in a header value": b"GET / HTTP/1.1\r\nHost: t\r\nX-A: a\x00b\r\n\r\n" => 400;
            "empty TE": b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: \r\n\r\n" => 400;
            // Request targets a method does not allow, and an invalid Host.
            "asterisk target for GET": b"GET * HTTP/1.1\r\nHost: t\r\n\r\n" => 400;
            "relative target": b"GET json HTTP/1.1\r\nHost: t\r\n\r\n" => 400;
            "fragment in the target": b"GET /json#x HTTP/1.1\r\nHost: t\r\n\r\n" => 400;
            "Host with a path and userinfo": b"GET / HTTP/1.1\r\nHost: a b/c@d\r\n\r\n" => 400;
        }
        // Valid near-misses are accepted.
        expect_ok(&srv, "100 headers", &with_headers(100));
        let r = expect_ok(
            &srv,
            "whitespace before a chunk extension",
            b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5 ; a=\"b;c\"\r\nhello\r\n0\r\n\r\n",
        );
        assert_eq!(r.body, b"hello");
        // Absolute-form targets route by their path (RFC 9112 §3.2.2).
        let r = expect_ok(
            &srv,
            "absolute-form target",
            b"GET http://t/json HTTP/1.1\r\nHost: t\r\n\r\n",
        );
        assert_eq!(r.body, br#"{"message":"Hello, World!"}"#);
        let r = expect_ok(
            &srv,
            "chunk size with leading zeros",
            b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n00000000000000000005\r\nhello\r\n0\r\n\r\n",
        );
        assert_eq!(r.body, b"hello");
        expect_ok(&srv, "head of 16 KiB", &head_of_len(16 * 1024));
        let mut body = vec![b'q'; 1 << 20];
        body[0] = b'<';
        let r = expect_ok(&srv, "body of 1 MiB", &echo(&body));
        assert!(r.body == body, "1 MiB echo differs");
    }
}

#[test]
fn limits_follow_their_flags() {
    for engine in engines() {
        let srv = Server::start(
            &engine,
            &[
                "--shards",
                "1",
                "--max-head-size",
                "1k",
                "--max-headers",
                "5",
                "--max-body-size",
                "100",
            ],
        );
        // At each limit: accepted.
        expect_ok(&srv, "head of 1024", &head_of_len(1024));
        expect_ok(&srv, "5 headers", &with_headers(5));
        let r = expect_ok(&srv, "CL 100", &echo(&[b'x'; 100]));
        assert_eq!(r.body.len(), 100);
        let r = expect_ok(&srv, "chunked 100", &chunked_echo(&[60, 40], b""));
        assert_eq!(r.body.len(), 100);
        let r = expect_ok(
            &srv,
            "trailers within the head limit",
            &chunked_echo(&[1], b"X-T: 1\r\n"),
        );
        assert_eq!(r.body, b"z");
        // One past each: rejected.
        let big_trailer = {
            let mut t = b"X-Trailer: ".to_vec();
            t.resize(t.len() + 2000, b't');
            t.extend_from_slice(b"\r\n");
            t
        };
        rejections! { srv;
            "head of 1025": head_of_len(1025) => 431;
            "request line of 1100, head arriving whole": target_of_len(1100) => 414;
            "request line of 1024, head arriving whole": target_of_len(1024) => 414;
            "request line of 1000, long header": {
                let mut v = target_of_len(1000);
                v.truncate(v.len() - 2);
                v.extend_from_slice(b"X-Pad: 0123456789012345678901234567890123456789\r\n\r\n");
                v
            } => 431;
            "6 headers": with_headers(6) => 431;
            "CL 101": echo(&[b'x'; 101]) => 413;
            "CL 101 head only": b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 101\r\n\r\n" => 413;
            "chunked 101": chunked_echo(&[60, 41], b"") => 413;
            "one chunk of 101": chunked_echo(&[101], b"") => 413;
            "trailers over the head limit": chunked_echo(&[1], &big_trailer) => 431;
        }
        // A head that grows past the limit over several writes.
        let mut c = srv.connect();
        c.send(b"GET / HTTP/1.1\r\nHost: t\r\n");
        for _ in 0..20 {
            if c.try_send(b"X-Slow: 0123456789012345678901234567890123456789012345678901234567890123456789\r\n").is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let r = c.resp();
        assert_eq!(r.status, 431);
        assert!(r.is_close());
        assert!(c.read_to_eof(READ_LIMIT).is_ok());
    }
}

#[test]
fn rejection_stops_a_pipeline() {
    for engine in engines() {
        let srv = Server::start(&engine, &["--shards", "1"]);
        let mut c = srv.connect();
        c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/2.0\r\nHost: t\r\n\r\nGET /json HTTP/1.1\r\nHost: t\r\n\r\n");
        let r = c.resp();
        assert_eq!(r.status, 200);
        assert!(!r.is_close());
        let r = c.resp();
        assert_eq!(r.status, 505);
        assert!(r.is_close());
        c.expect_eof();

        // A rejection after a body split over reads.
        let mut c = srv.connect();
        c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nab");
        std::thread::sleep(Duration::from_millis(20));
        c.send(b"c\r\nXX");
        let r = c.resp();
        assert_eq!(r.status, 400);
        assert!(r.is_close());
        c.expect_eof();
    }
}

#[test]
fn version_2_split_at_every_byte_is_505() {
    for engine in engines() {
        let srv = Server::start(&engine, &["--shards", "1"]);
        let req: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
        for cut in 1..req.len() {
            let mut c = srv.connect();
            send_split(&mut c, &req[..cut], &req[cut..]);
            let r = c.resp();
            assert_eq!(r.status, 505, "cut {cut}");
            assert!(r.is_close());
            assert!(c.read_to_eof(READ_LIMIT).is_ok(), "cut {cut}: no close");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Timeouts
// ---------------------------------------------------------------------------------------------

#[test]
fn header_timeout() {
    for engine in engines() {
        let srv = Server::start(&engine, &["--shards", "1", "--header-timeout", "1s"]);

        // A head that never completes: 408 and close.
        let mut c = srv.connect();
        let t0 = Instant::now();
        c.send(b"GET / HTTP/1.1\r\nHost: t\r\n");
        let r = c.resp();
        let took = t0.elapsed();
        assert_eq!(r.status, 408, "{}", r.head);
        assert!(r.is_close());
        assert!(
            took >= Duration::from_millis(500),
            "408 after only {took:?}"
        );
        assert!(took <= Duration::from_secs(10), "408 after {took:?}");
        c.expect_eof();

        // A slowloris that keeps sending header lines is cut off too.
        let mut c = srv.connect();
        let t0 = Instant::now();
        c.send(b"GET / HTTP/1.1\r\n");
        let mut w = c.s.try_clone().unwrap();
        let trickle = std::thread::spawn(move || {
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_secs(10) {
                if w.write_all(b"X-A: b\r\n").is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let r = c.resp();
        assert_eq!(r.status, 408);
        assert!(r.is_close());
        assert!(t0.elapsed() >= Duration::from_millis(500));
        assert!(c.read_to_eof(READ_LIMIT).is_ok());
        trickle.join().unwrap();

        // A connection that sends nothing is closed without a response.
        let mut c = srv.connect();
        let t0 = Instant::now();
        c.expect_eof();
        assert!(
            t0.elapsed() >= Duration::from_millis(500),
            "closed after {:?}",
            t0.elapsed()
        );

        // A head that completes in time is served.
        let mut c = srv.connect();
        c.send(b"GET / HTTP/1.1\r\n");
        std::thread::sleep(Duration::from_millis(200));
        c.send(b"Host: t\r\n\r\n");
        assert_eq!(c.resp().status, 200);
        // The header timeout does not apply to an idle keep-alive connection.
        c.expect_silence(Duration::from_millis(2000));
        c.send(&get("/json"));
        assert_eq!(c.resp().status, 200);
        // ... but it does to the next request's head once its first byte is in.
        let t0 = Instant::now();
        c.send(b"GET /json HTTP/1.1\r\n");
        let r = c.resp();
        assert_eq!(r.status, 408);
        assert!(t0.elapsed() >= Duration::from_millis(500));
        c.expect_eof();
    }
}

#[test]
fn pipelined_burst_of_10000_requests() {
    for engine in engines() {
        // Long timeouts: on a loaded machine this can take seconds, and it tests pipelining,
        // not timeouts (see header_timeout_counts_from_each_head_not_from_the_first).
        let srv = Server::start(
            &engine,
            &[
                "--shards",
                "1",
                "--header-timeout",
                "120s",
                "--keepalive-timeout",
                "120s",
            ],
        );
        let mut c = srv.connect();
        let mut w = c.s.try_clone().unwrap();
        let writer = std::thread::spawn(move || {
            let mut all = Vec::new();
            for i in 0..10_000 {
                if i % 3 == 0 {
                    all.extend_from_slice(&echo(format!("{i}").as_bytes()));
                } else {
                    all.extend_from_slice(&get("/plaintext"));
                }
            }
            w.write_all(&all).unwrap();
        });
        for i in 0..10_000 {
            let r = c.resp();
            if i % 3 == 0 {
                assert_eq!(r.text(), format!("{i}"), "#{i}");
            } else {
                assert_eq!(r.body, b"Hello, World!", "#{i}");
            }
        }
        writer.join().unwrap();
        c.expect_silence(Duration::from_millis(100));
    }
}

#[test]
fn client_resets_do_not_disturb_the_server() {
    for engine in engines() {
        let srv = Server::start(&engine, &["--shards", "1"]);
        for partial in [
            &b""[..],
            b"GET / HTTP/1.1\r\nHo",
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nabc",
            b"GET / HTTP/1.1\r\nHost: t\r\n\r\n",
        ] {
            let mut c = srv.connect();
            if !partial.is_empty() {
                c.send(partial);
            }
            let l = libc::linger {
                l_onoff: 1,
                l_linger: 0,
            };
            use std::os::fd::AsRawFd;
            // SAFETY: setsockopt on a socket we own, with a valid linger struct.
            let rc = unsafe {
                libc::setsockopt(
                    c.s.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_LINGER,
                    &l as *const libc::linger as *const libc::c_void,
                    std::mem::size_of::<libc::linger>() as libc::socklen_t,
                )
            };
            assert_eq!(rc, 0);
            drop(c); // RST
        }
        std::thread::sleep(Duration::from_millis(100));
        let mut c = srv.connect();
        c.send(&get("/"));
        assert_eq!(c.resp().status, 200);
    }
}

#[test]
fn ipv6_listen() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 loopback here; skipped");
        return;
    }
    for engine in engines() {
        let srv = Server::start_on("[::1]:0", &engine, &["--shards", "1"]);
        assert!(srv.addr.is_ipv6(), "{}", srv.addr);
        let mut c = srv.connect();
        c.send(&get("/"));
        assert_eq!(c.resp().status, 200);
    }
}

#[test]
fn stray_crlf_after_a_body_is_not_a_head() {
    // Some clients send CRLF after a POST body; RFC 9112 §2.2 says to ignore empty lines
    // before a request line. The connection is idle, not mid-head: no 408.
    for engine in engines() {
        let srv = Server::start(&engine, &["--shards", "1", "--header-timeout", "1s"]);
        let mut c = srv.connect();
        c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nok\r\n");
        assert_eq!(c.resp().body, b"ok");
        c.expect_silence(Duration::from_millis(2500));
        c.send(&get("/"));
        assert_eq!(c.resp().status, 200);
    }
}

#[test]
fn header_timeout_counts_from_each_head_not_from_the_first() {
    // Every write completes one request and starts the next, so each read ends mid-head.
    // Requests keep completing every ~100 ms; none of them took anywhere near the 1 s header
    // timeout, so none may get 408.
    for engine in engines() {
        let srv = Server::start(&engine, &["--shards", "1", "--header-timeout", "1s"]);
        let mut c = srv.connect();
        let req = get("/json");
        let (start, rest) = req.split_at(10);
        c.send(start);
        let t0 = Instant::now();
        for i in 0..30 {
            std::thread::sleep(Duration::from_millis(100));
            c.send(&[rest, start].concat());
            let r = c.resp();
            assert_eq!(
                r.status,
                200,
                "request {i}, {:?} into a stream of requests each complete within 100 ms",
                t0.elapsed()
            );
        }
    }
}

#[test]
fn keepalive_timeout_counts_from_the_last_response() {
    // One request every ~100 ms on one connection for 3 s: never idle for anywhere near the
    // 1 s keep-alive timeout, so never closed.
    for engine in engines() {
        let srv = Server::start(&engine, &["--shards", "1", "--keepalive-timeout", "1s"]);
        let mut c = srv.connect();
        let t0 = Instant::now();
        for i in 0..30 {
            c.try_send(&get("/")).unwrap_or_else(|e| {
                panic!(
                    "request {i}, {:?} into a busy connection: write failed: {e}",
                    t0.elapsed()
                )
            });
            let r = c.try_resp(false).unwrap_or_else(|e| {
                panic!(
                    "request {i}, {:?} into a busy connection: {e}",
                    t0.elapsed()
                )
            });
            assert_eq!(r.status, 200);
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[test]
fn body_timeout() {
    for engine in engines() {
        let srv = Server::start(&engine, &["--shards", "1", "--body-timeout", "1s"]);
        let mut c = srv.connect();
        let t0 = Instant::now();
        c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n01234");
        let r = c.resp();
        let took = t0.elapsed();
        assert_eq!(r.status, 408);
        assert!(r.is_close());
        assert!(
            took >= Duration::from_millis(500),
            "408 after only {took:?}"
        );
        c.expect_eof();

        // Chunked, stalled between chunks.
        let mut c = srv.connect();
        c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n");
        let r = c.resp();
        assert_eq!(r.status, 408);
        assert!(r.is_close());
        c.expect_eof();

        // A body that keeps progressing is not cut off by the body timeout.
        let mut c = srv.connect();
        c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\n");
        for b in b"abcd" {
            std::thread::sleep(Duration::from_millis(300));
            c.send(std::slice::from_ref(b));
        }
        let r = c.resp();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"abcd"[..]));
    }
}

#[test]
fn keepalive_timeout() {
    for engine in engines() {
        let srv = Server::start(&engine, &["--shards", "1", "--keepalive-timeout", "1s"]);
        let mut c = srv.connect();
        c.send(&get("/"));
        assert_eq!(c.resp().status, 200);
        let t0 = Instant::now();
        c.expect_eof();
        let took = t0.elapsed();
        assert!(
            took >= Duration::from_millis(500),
            "closed after only {took:?}"
        );
    }
}

#[test]
fn write_timeout_drops_a_peer_that_stops_reading() {
    // Zero-copy sends too: their buffers come back only once the kernel drops what it queued.
    let mut variants = engines();
    if variants.iter().any(|e| e.contains(&"uring")) {
        variants.push(vec!["--engine", "uring", "--send-zc", "1"]);
    }
    for engine in variants {
        let srv = Server::start(
            &engine,
            &[
                "--shards",
                "1",
                "--write-timeout",
                "1s",
                "--max-body-size",
                "4m",
            ],
        );
        let c = srv.connect();
        c.s.set_write_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut s = c.s.try_clone().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let body = vec![b'w'; 4 << 20];
            let mut req = format!(
                "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .into_bytes();
            req.extend_from_slice(&body);
            let mut sent = 0usize;
            for _ in 0..64 {
                if let Err(e) = s.write_all(&req) {
                    let _ = tx.send((sent, Some(e.kind())));
                    return;
                }
                sent += req.len();
            }
            let _ = tx.send((sent, None));
        });
        // Meanwhile the server goes on serving others.
        std::thread::sleep(Duration::from_millis(300));
        let mut other = srv.connect();
        other.send(&get("/"));
        assert_eq!(other.resp().status, 200);

        let (sent, err) = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the writer neither finished nor failed");
        match err {
            Some(ErrorKind::BrokenPipe | ErrorKind::ConnectionReset) => {}
            other => panic!(
                "expected the server to drop the connection (reset/broken pipe); \
                 the writer ended with {other:?} after {sent} bytes"
            ),
        }
        // Other connections are unaffected.
        other.send(&get("/json"));
        assert_eq!(other.resp().status, 200);
        // Nothing is left holding the shard: shutdown finishes at once.
        drop(other);
        let mut srv = srv;
        srv.signal(libc::SIGTERM);
        let status = srv.wait_exit(Duration::from_secs(10));
        assert!(
            status.is_some_and(|s| s.success()),
            "{engine:?}: exit after SIGTERM: {status:?}\n{}",
            srv.stderr()
        );
    }
}

#[test]
fn write_timeout_spares_a_slow_but_steady_reader() {
    // "A peer that reads nothing of a response for this long is dropped": one that keeps
    // reading, slowly, is not.
    for engine in engines() {
        let srv = Server::start(
            &engine,
            &[
                "--shards",
                "1",
                "--write-timeout",
                "1s",
                "--max-body-size",
                "16m",
            ],
        );
        let mut c = srv.connect();
        let body = vec![b's'; 16 << 20];
        let mut w = c.s.try_clone().unwrap();
        let req = echo(&body);
        let writer = std::thread::spawn(move || w.write_all(&req));
        // Read 64 KiB every 50 ms (about 1.3 MB/s) for 3 s, well inside any write timeout.
        let t0 = Instant::now();
        let mut got = 0usize;
        let mut buf = vec![0u8; 64 * 1024];
        c.s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        while t0.elapsed() < Duration::from_secs(3) {
            use std::io::Read;
            match c.s.read(&mut buf) {
                Ok(0) => panic!(
                    "dropped after {:?} having read {got} bytes steadily",
                    t0.elapsed()
                ),
                Ok(n) => got += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => panic!(
                    "after {:?} having read {got} bytes steadily: {e}",
                    t0.elapsed()
                ),
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(got > 0);
        writer.join().unwrap().unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// Shutdown
// ---------------------------------------------------------------------------------------------

#[test]
fn shutdown_finishes_in_flight_requests() {
    for engine in engines() {
        for sig in [libc::SIGTERM, libc::SIGINT] {
            let mut srv = Server::start(&engine, &["--shards", "2"]);
            let addr = srv.addr;

            // An idle keep-alive connection, served once.
            let mut idle = srv.connect();
            idle.send(&get("/"));
            assert_eq!(idle.resp().status, 200);
            // A fresh connection that has sent nothing.
            let mut fresh = srv.connect();
            // A request in flight: its body is half there.
            let mut busy = srv.connect();
            busy.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n01234");
            std::thread::sleep(Duration::from_millis(100));

            srv.signal(sig);
            std::thread::sleep(Duration::from_millis(300));

            // No new connections: refused once every shard has closed its listener (at
            // once, normally; allow a loaded machine some seconds). One that still gets into
            // a backlog must not be served.
            let t0 = Instant::now();
            loop {
                match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
                    Err(e) if e.kind() == ErrorKind::ConnectionRefused => break,
                    Err(e) => panic!("connect while draining: {e}"),
                    Ok(s) => {
                        let mut c = Client::from_stream(s);
                        let _ = c.try_send(&get("/"));
                        assert!(
                            c.try_resp(false).is_err(),
                            "a new connection was served while draining"
                        );
                    }
                }
                assert!(
                    t0.elapsed() < Duration::from_secs(5),
                    "connections still accepted 5 s into the drain"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
            // The idle connections are closed.
            idle.expect_eof();
            fresh.expect_eof();
            // The request in flight finishes, with Connection: close.
            busy.send(b"56789");
            let r = busy.resp();
            assert_eq!((r.status, r.body.as_slice()), (200, &b"0123456789"[..]));
            assert!(r.is_close(), "{}", r.head);
            busy.expect_eof();

            let status = srv
                .wait_exit(Duration::from_secs(10))
                .expect("the server did not exit after draining");
            assert_eq!(
                status.code(),
                Some(0),
                "exit status {status:?}; stderr:\n{}",
                srv.stderr()
            );
        }
    }
}

#[test]
fn shutdown_closes_a_connection_that_goes_idle_while_draining() {
    // A response still being sent when the signal comes: once it is sent, the connection is
    // idle and should be closed, so the server can exit 0 long before the keep-alive timeout.
    for engine in engines() {
        let mut srv = Server::start(
            &engine,
            &[
                "--shards",
                "1",
                "--max-body-size",
                "32m",
                "--shutdown-timeout",
                "5s",
            ],
        );
        let mut c = srv.connect();
        c.s.set_write_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let body = vec![b'd'; 20 << 20];
        c.send(&echo(&body)); // the server reads it all, then its reply stalls on our window
        std::thread::sleep(Duration::from_millis(500));
        srv.signal(libc::SIGTERM);
        std::thread::sleep(Duration::from_millis(300));
        let r = c.resp();
        assert_eq!(r.status, 200);
        assert!(r.body.len() == body.len());
        let t0 = Instant::now();
        let eof = c.read_to_eof(Duration::from_secs(10));
        let status = srv.wait_exit(Duration::from_secs(10)).expect("no exit");
        assert!(eof.is_ok(), "no EOF");
        assert_eq!(
            status.code(),
            Some(0),
            "the connection was closed only after {:?}, by the shutdown timeout; stderr:\n{}",
            t0.elapsed(),
            srv.stderr()
        );
    }
}

#[test]
fn second_signal_exits_at_once() {
    for engine in engines() {
        let mut srv = Server::start(&engine, &["--shards", "1"]);
        let mut busy = srv.connect();
        busy.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n01234");
        std::thread::sleep(Duration::from_millis(100));
        srv.signal(libc::SIGINT);
        // Still draining: the half-sent request keeps it alive.
        assert!(
            srv.wait_exit(Duration::from_millis(700)).is_none(),
            "exited while a request was in flight; stderr:\n{}",
            srv.stderr()
        );
        let t0 = Instant::now();
        srv.signal(libc::SIGINT);
        let status = srv
            .wait_exit(Duration::from_secs(5))
            .expect("no exit after a second signal");
        assert!(t0.elapsed() < Duration::from_secs(5));
        assert!(
            !status.success(),
            "exit status {status:?} after a second signal"
        );
        let _ = &mut busy;
    }
}

#[test]
fn shutdown_timeout_cuts_off_and_exits_non_zero() {
    for engine in engines() {
        let mut srv = Server::start(&engine, &["--shards", "1", "--shutdown-timeout", "1s"]);
        let mut busy = srv.connect();
        busy.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n01234");
        std::thread::sleep(Duration::from_millis(100));
        srv.signal(libc::SIGTERM);
        let t0 = Instant::now();
        let status = srv
            .wait_exit(Duration::from_secs(10))
            .expect("no exit after the shutdown timeout");
        assert!(
            t0.elapsed() >= Duration::from_millis(500),
            "exited after {:?}",
            t0.elapsed()
        );
        assert!(
            !status.success(),
            "{status:?}: a request was cut off, so the exit should not be 0"
        );
        let _ = busy.read_to_eof(READ_LIMIT);
    }
}

// ---------------------------------------------------------------------------------------------
// Several shards
// ---------------------------------------------------------------------------------------------

#[test]
fn several_shards_serve_at_once() {
    for engine in engines() {
        let srv = Server::start(&engine, &["--shards", "3"]);
        assert!(srv.stderr().contains("(3 shards)"), "{}", srv.stderr());
        // More shards than CPUs is allowed, and said when shards are pinned: they are no longer
        // one per core.
        let pinned = !engine.contains(&"--no-pin");
        assert_eq!(
            srv.stderr().contains("3 shards on") && srv.stderr().contains("shards share CPUs"),
            pinned && allowed_cpus() < 3,
            "{} CPUs: {}",
            allowed_cpus(),
            srv.stderr()
        );
        // Every shard thread is there.
        let mut names = Vec::new();
        for e in std::fs::read_dir(format!("/proc/{}/task", srv.pid())).unwrap() {
            let comm = std::fs::read_to_string(e.unwrap().path().join("comm")).unwrap_or_default();
            names.push(comm.trim().to_string());
        }
        for id in 0..3 {
            assert!(
                names.contains(&format!("ringshard-{id}")),
                "threads: {names:?}"
            );
        }
        // Many connections at once from several threads: with SO_REUSEPORT they spread over
        // the shards, and every one is served (a stuck shard would leave some hanging).
        let addr = srv.addr;
        let threads: Vec<_> = (0..6)
            .map(|t| {
                std::thread::spawn(move || {
                    let mut conns: Vec<Client> = (0..8).map(|_| Client::connect(addr)).collect();
                    for round in 0..10 {
                        for (i, c) in conns.iter_mut().enumerate() {
                            c.send(&echo(format!("t{t} c{i} r{round}").as_bytes()));
                        }
                        for (i, c) in conns.iter_mut().enumerate() {
                            let r = c.resp();
                            assert_eq!(r.text(), format!("t{t} c{i} r{round}"));
                        }
                    }
                    // Plus short-lived connections.
                    for _ in 0..20 {
                        let mut c = Client::connect(addr);
                        c.send(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
                        assert_eq!(c.resp().status, 200);
                        c.expect_eof();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("a client thread failed");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------------------------

#[test]
fn bad_flags_exit_non_zero_naming_the_flag() {
    let cases: &[(&[&str], &str)] = &[
        (&["--shards", "0"], "--shards"),
        (&["--header-timeout", "ten"], "--header-timeout"),
        (&["--listen", "nonsense"], "--listen"),
        (&["--max-headers", "0"], "--max-headers"),
        (&["--max-body-size", "lots"], "--max-body-size"),
        (&["--body-timeout", "0s"], "--body-timeout"),
        (&["--max-headers", "5000"], "--max-headers"),
        (&["--max-head-size", "10"], "--max-head-size"),
        (&["--shards", "many"], "--shards"),
        (&["--wait-busy", "101"], "--wait-busy"),
        (&["--wait-busy", "lots"], "--wait-busy"),
    ];
    for (args, flag) in cases {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ringshard"))
            .arg("serve")
            .args(*args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let t0 = Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if t0.elapsed() > Duration::from_secs(10) {
                let _ = child.kill();
                panic!("{args:?}: still running after 10 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!status.success(), "{args:?}: exit {status:?}");
        assert_eq!(err.lines().count(), 1, "{args:?}: not one line:\n{err}");
        assert!(err.contains(flag), "{args:?}: {err:?} does not name {flag}");
        assert!(!err.contains("listening on"), "{args:?}: it started: {err}");
    }
}

#[test]
fn reading_resumes_after_backpressure() {
    // A response larger than the output the server holds before it stops reading (1 MiB): it
    // pauses reading while the response drains, and must read the next request once it has.
    for engine in engines() {
        let srv = Server::start(&engine, &["--shards", "1"]);
        let mut c = srv.connect();
        let body = vec![b'x'; 1 << 20];
        for round in 0..3 {
            c.send(&echo(&body));
            let r = c.resp();
            assert_eq!(r.status, 200, "round {round}");
            assert!(r.body == body, "round {round}: echoed body differs");
            c.send(&get("/plaintext"));
            let r = c.resp();
            assert_eq!(r.body, b"Hello, World!", "round {round}");
        }
    }
}

/// CPUs this process may run on (its affinity mask, as the server reads it).
fn allowed_cpus() -> usize {
    core_affinity::get_core_ids().map_or(0, |ids| ids.len())
}
