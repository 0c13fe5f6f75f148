//! The built-in handlers and the router, over real loopback sockets, asserting on raw bytes:
//! each route's status, headers and body, 404 and 405, and `--no-builtin`. Every test runs
//! once per engine (`common::per_engine!`).
mod common;

use common::*;

fn builtin_routes(engine: &[&str]) {
    let srv = Server::start(engine, &["--shards", "1"]);
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

fn no_builtin_flag_gives_404(engine: &[&str]) {
    let srv = Server::start(engine, &["--shards", "1", "--no-builtin"]);
    let mut c = srv.connect();
    c.send(&get("/"));
    assert_eq!(c.resp().status, 404);
}

per_engine! {
    builtin_routes,
    no_builtin_flag_gives_404,
}
