//! Message framing over real loopback sockets, asserting on raw bytes: keep-alive and close,
//! HEAD, the Date header, pipelining, requests split across writes, chunked bodies and
//! `Expect: 100-continue`. Every test runs once per engine (`common::per_engine!`).
mod common;

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;

// ---------------------------------------------------------------------------------------------
// Response headers, HEAD, keep-alive
// ---------------------------------------------------------------------------------------------

fn date_header_is_current(engine: &[&str]) {
    let srv = Server::start(engine, &["--shards", "1"]);
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

fn head_has_headers_but_no_body(engine: &[&str]) {
    let srv = Server::start(engine, &["--shards", "1"]);
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

fn keep_alive_and_close(engine: &[&str]) {
    let srv = Server::start(engine, &["--shards", "1"]);

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

fn pipelined_100_requests_in_one_write(engine: &[&str]) {
    let srv = Server::start(engine, &["--shards", "1"]);
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

fn pipelined_burst_of_10000_requests(engine: &[&str]) {
    // Long timeouts: on a loaded machine this can take seconds, and it tests pipelining,
    // not timeouts (see header_timeout_counts_from_each_head_not_from_the_first).
    let srv = Server::start(
        engine,
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

fn request_split_at_every_byte(engine: &[&str]) {
    let srv = Server::start(engine, &["--shards", "1"]);
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

fn request_one_byte_per_write(engine: &[&str]) {
    let srv = Server::start(engine, &["--shards", "1"]);
    let mut c = srv.connect();
    let req: &[u8] = b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nT: 1\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n";
    for b in req {
        c.send(std::slice::from_ref(b));
        std::thread::sleep(Duration::from_micros(300));
    }
    assert_eq!(c.resp().body, b"abcde");
    assert_eq!(c.resp().body, b"Hello, World!");
}

fn stray_crlf_after_a_body_is_not_a_head(engine: &[&str]) {
    // Some clients send CRLF after a POST body; RFC 9112 §2.2 says to ignore empty lines
    // before a request line. The connection is idle, not mid-head: no 408.
    let srv = Server::start(engine, &["--shards", "1", "--header-timeout", "1s"]);
    let mut c = srv.connect();
    c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nok\r\n");
    assert_eq!(c.resp().body, b"ok");
    c.expect_silence(Duration::from_millis(2500));
    c.send(&get("/"));
    assert_eq!(c.resp().status, 200);
}

// ---------------------------------------------------------------------------------------------
// Chunked request bodies, 100-continue
// ---------------------------------------------------------------------------------------------

fn chunked_bodies_with_trailers(engine: &[&str]) {
    let srv = Server::start(engine, &["--shards", "1"]);
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

fn chunked_request_split_at_every_byte(engine: &[&str]) {
    let srv = Server::start(engine, &["--shards", "1"]);
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

fn expect_100_continue(engine: &[&str]) {
    let srv = Server::start(engine, &["--shards", "1", "--max-body-size", "1000"]);

    // Head alone: 100 Continue, then the final response once the body is in.
    let mut c = srv.connect();
    c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n");
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
    c.send(
        b"POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 1001\r\n\r\n",
    );
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
    c.send(
        b"POST /echo HTTP/1.1\r\nHost: t\r\nExpect: something-else\r\nContent-Length: 2\r\n\r\nhi",
    );
    let r = c.resp();
    assert_eq!(r.status, 417);
    assert!(r.is_close());
    c.expect_eof();
}

per_engine! {
    date_header_is_current,
    head_has_headers_but_no_body,
    keep_alive_and_close,
    pipelined_100_requests_in_one_write,
    pipelined_burst_of_10000_requests,
    request_split_at_every_byte,
    request_one_byte_per_write,
    stray_crlf_after_a_body_is_not_a_head,
    chunked_bodies_with_trailers,
    chunked_request_split_at_every_byte,
    expect_100_continue,
}
