//! Timeouts over real loopback sockets: header, body, keep-alive and write timeouts, each cut
//! off when it should and not before. Every test runs once per engine
//! (`common::per_engine!`).
mod common;

use std::io::{ErrorKind, Write};
use std::time::{Duration, Instant};

use common::*;

fn header_timeout(engine: &[&str]) {
    let srv = Server::start(engine, &["--shards", "1", "--header-timeout", "1s"]);

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

fn header_timeout_counts_from_each_head_not_from_the_first(engine: &[&str]) {
    // Every write completes one request and starts the next, so each read ends mid-head.
    // Requests keep completing every ~100 ms; none of them took anywhere near the 1 s header
    // timeout, so none may get 408.
    let srv = Server::start(engine, &["--shards", "1", "--header-timeout", "1s"]);
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

fn body_timeout(engine: &[&str]) {
    let srv = Server::start(engine, &["--shards", "1", "--body-timeout", "1s"]);
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

fn keepalive_timeout(engine: &[&str]) {
    let srv = Server::start(engine, &["--shards", "1", "--keepalive-timeout", "1s"]);
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

fn keepalive_timeout_counts_from_the_last_response(engine: &[&str]) {
    // One request every ~100 ms on one connection for 3 s: never idle for anywhere near the
    // 1 s keep-alive timeout, so never closed.
    let srv = Server::start(engine, &["--shards", "1", "--keepalive-timeout", "1s"]);
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

fn write_timeout_drops_a_peer_that_stops_reading(engine: &[&str]) {
    let srv = Server::start(
        engine,
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

/// As [`write_timeout_drops_a_peer_that_stops_reading`], with zero-copy sends: their buffers
/// come back only once the kernel drops what it queued.
fn write_timeout_drops_a_peer_that_stops_reading_under_zero_copy_sends(engine: &[&str]) {
    let mut flags = engine.to_vec();
    if !flags.contains(&"--send-zc") {
        flags.extend(["--send-zc", "1"]);
    }
    write_timeout_drops_a_peer_that_stops_reading(&flags);
}

fn write_timeout_spares_a_slow_but_steady_reader(engine: &[&str]) {
    // "A peer that reads nothing of a response for this long is dropped": one that keeps
    // reading, slowly, is not.
    let srv = Server::start(
        engine,
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

per_engine! {
    header_timeout,
    header_timeout_counts_from_each_head_not_from_the_first,
    body_timeout,
    keepalive_timeout,
    keepalive_timeout_counts_from_the_last_response,
    write_timeout_drops_a_peer_that_stops_reading,
    write_timeout_spares_a_slow_but_steady_reader,
}
per_engine! { [uring] write_timeout_drops_a_peer_that_stops_reading_under_zero_copy_sends }
