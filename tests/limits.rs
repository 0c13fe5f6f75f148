//! Limits and rejections over real loopback sockets, asserting on raw bytes: malformed and
//! refused requests with the default limits, limits that follow their flags, a rejection in a
//! pipeline, and versions 2 and up. Every test runs once per engine (`common::per_engine!`).
mod common;

use std::time::Duration;

use common::*;

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

fn rejections_with_default_limits(engine: &[&str]) {
    let srv = Server::start(engine, &["--shards", "1"]);
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

fn limits_follow_their_flags(engine: &[&str]) {
    let srv = Server::start(
        engine,
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
        if c.try_send(
            b"X-Slow: 0123456789012345678901234567890123456789012345678901234567890123456789\r\n",
        )
        .is_err()
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let r = c.resp();
    assert_eq!(r.status, 431);
    assert!(r.is_close());
    assert!(c.read_to_eof(READ_LIMIT).is_ok());
}

fn rejection_stops_a_pipeline(engine: &[&str]) {
    let srv = Server::start(engine, &["--shards", "1"]);
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

fn version_2_split_at_every_byte_is_505(engine: &[&str]) {
    let srv = Server::start(engine, &["--shards", "1"]);
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

per_engine! {
    rejections_with_default_limits,
    limits_follow_their_flags,
    rejection_stops_a_pipeline,
    version_2_split_at_every_byte_is_505,
}
