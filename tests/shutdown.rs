//! Graceful shutdown of the `ringshard` binary: a signal stops accepting, in-flight requests
//! finish, idle connections close, a second signal or the shutdown timeout cuts it short.
//! Every test runs once per engine (`common::per_engine!`).
mod common;

use std::io::ErrorKind;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

fn shutdown_finishes_in_flight_requests(engine: &[&str]) {
    for sig in [libc::SIGTERM, libc::SIGINT] {
        let mut srv = Server::start(engine, &["--shards", "2"]);
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

fn shutdown_closes_a_connection_that_goes_idle_while_draining(engine: &[&str]) {
    // A response still being sent when the signal comes: once it is sent, the connection is
    // idle and should be closed, so the server can exit 0 long before the keep-alive timeout.
    let mut srv = Server::start(
        engine,
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

fn second_signal_exits_at_once(engine: &[&str]) {
    let mut srv = Server::start(engine, &["--shards", "1"]);
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

fn shutdown_timeout_cuts_off_and_exits_non_zero(engine: &[&str]) {
    let mut srv = Server::start(engine, &["--shards", "1", "--shutdown-timeout", "1s"]);
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

per_engine! {
    shutdown_finishes_in_flight_requests,
    shutdown_closes_a_connection_that_goes_idle_while_draining,
    second_signal_exits_at_once,
    shutdown_timeout_cuts_off_and_exits_non_zero,
}
