//! A connection's life beside its requests, over real loopback sockets: a connection per
//! request, half-closes, resets, and reading paused for backpressure and resumed. Every test
//! runs once per engine (`common::per_engine!`).
mod common;

use std::io::Write;
use std::time::Duration;

use common::*;

/// A client that opens a connection per request and closes it as soon as the response is whole
/// (as wrk does with `Connection: close`) gets every response whole, from several threads at
/// once: the close of one connection never touches the next one to get its descriptor.
fn a_connection_per_request_gets_every_response_whole(engine: &[&str]) {
    let srv = Server::start(engine, &["--shards", "1"]);
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

fn half_close_after_requests_still_gets_the_answers(engine: &[&str]) {
    let srv = Server::start(engine, &["--shards", "1"]);
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

fn client_resets_do_not_disturb_the_server(engine: &[&str]) {
    let srv = Server::start(engine, &["--shards", "1"]);
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

fn reading_resumes_after_backpressure(engine: &[&str]) {
    // A response larger than the output the server holds before it stops reading (1 MiB): it
    // pauses reading while the response drains, and must read the next request once it has.
    let srv = Server::start(engine, &["--shards", "1"]);
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
    // Each echo put its whole response, 1 MiB of body and a head, in front of the socket at
    // once: past the 1 MiB mark, so reading paused, once a round.
    let paused = metric(&srv.metrics(), "reads_paused_total");
    assert!(
        paused >= 3,
        "reads paused {paused} times in 3 rounds, each with over 1 MiB of output queued"
    );

    // Pipelined, none read until the writer is done or blocked: three echoes of 1 MiB and a
    // GET in one write. Each response passes the mark again while the next requests wait in
    // the socket; reading resumes as each drains, until the GET is read and answered.
    let mut w = c.s.try_clone().unwrap();
    let req = [echo(&body), echo(&body), echo(&body), get("/plaintext")].concat();
    let writer = std::thread::spawn(move || w.write_all(&req));
    std::thread::sleep(Duration::from_millis(200));
    for i in 0..3 {
        let r = c.resp();
        assert_eq!(r.status, 200, "pipelined echo {i}");
        assert!(r.body == body, "pipelined echo {i}: echoed body differs");
    }
    assert_eq!(c.resp().body, b"Hello, World!", "the GET behind the echoes");
    writer
        .join()
        .unwrap()
        .expect("write the pipelined requests");
    let again = metric(&srv.metrics(), "reads_paused_total");
    assert!(
        again > paused,
        "reads paused {paused} times before three pipelined echoes of 1 MiB, {again} after"
    );
}

per_engine! {
    a_connection_per_request_gets_every_response_whole,
    half_close_after_requests_still_gets_the_answers,
    client_resets_do_not_disturb_the_server,
    reading_resumes_after_backpressure,
}
