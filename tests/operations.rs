//! Running a server for months: systemd's notify protocol over a NOTIFY_SOCKET the test listens
//! on (systemd is not PID 1 here: READY=1 with MAINPID once every shard listens, WATCHDOG=1
//! pings while every shard's loop turns, STATUS= lines, STOPPING=1 when shutdown begins), /health
//! answering 503 `draining` from then on, the pid file, and connections past --max-connections
//! waiting until others close, new work shed (not reset) while descriptors run out, and a shard
//! that panics replaced. Both engines.
mod common;

use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// `n` keep-alive connections, each having had a request answered.
fn served_connections(srv: &Server, n: usize) -> Vec<Client> {
    (0..n)
        .map(|_| {
            let mut c = srv.connect();
            c.send(b"GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n");
            assert_eq!(c.resp().status, 200);
            c
        })
        .collect()
}

fn next_message(sock: &UnixDatagram) -> Option<String> {
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

fn notify_messages_arrive_in_order(engine: &[&str]) {
    let dir = scratch_dir("notify", "order", engine);
    let path = dir.join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ringshard"));
    cmd.arg("serve")
        .args(["--listen", "127.0.0.1:0", "--shards", "2"])
        .args(engine)
        .env("NOTIFY_SOCKET", &path)
        .env("WATCHDOG_USEC", "200000");
    let mut srv = Server::spawn(cmd);
    let first = next_message(&sock).expect("no notification");
    assert!(first.contains("READY=1"), "{first}");
    assert!(first.contains(&format!("MAINPID={}", srv.pid())), "{first}");
    assert!(first.contains("STATUS=listening on "), "{first}");
    let (mut pings, mut status) = (0, false);
    let deadline = Instant::now() + Duration::from_secs(10);
    while (pings < 3 || !status) && Instant::now() < deadline {
        let m = next_message(&sock).expect("notifications stopped");
        assert!(!m.contains("READY=1") && !m.contains("STOPPING=1"), "{m}");
        pings += usize::from(m.contains("WATCHDOG=1"));
        status |= m.contains("STATUS=") && m.contains("requests/s");
    }
    assert!(pings >= 3 && status, "pings {pings}, status {status}");
    srv.signal(libc::SIGTERM);
    let mut stopping = false;
    while let Some(m) = next_message(&sock) {
        if m.contains("STOPPING=1") {
            stopping = true;
            break;
        }
    }
    assert!(stopping, "no STOPPING=1 after SIGTERM");
    assert!(srv
        .wait_exit(Duration::from_secs(10))
        .is_some_and(|s| s.success()));
}

/// A connection in the middle of a request when shutdown begins gets 503 `draining` from
/// /health, where it got 200 before.
fn health_answers_503_while_draining(engine: &[&str]) {
    let srv = Server::start(engine, &["--shards", "1"]);
    let mut c = srv.connect();
    c.send(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(c.resp().status, 200);
    let mut c = srv.connect();
    c.send(b"GET /health HTTP/1.1\r\nHost: x\r\n");
    std::thread::sleep(Duration::from_millis(100));
    srv.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(300));
    c.send(b"\r\n");
    let r = c.resp();
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.text(), "draining\n");
}

/// `--pid-file`: the pid once the server listens, removed at exit; a file that cannot be
/// written stops the start with a line naming it.
fn the_pid_file_is_kept_current(engine: &[&str]) {
    let dir = scratch_dir("notify", "pid-file", engine);
    let path = dir.join("ringshard.pid");
    let mut srv = Server::start(
        engine,
        &["--shards", "1", "--pid-file", path.to_str().unwrap()],
    );
    let text = std::fs::read_to_string(&path).expect("no pid file");
    assert_eq!(text.trim(), srv.pid().to_string());
    srv.signal(libc::SIGTERM);
    assert!(srv
        .wait_exit(Duration::from_secs(10))
        .is_some_and(|s| s.success()));
    assert!(!path.exists(), "the pid file outlived the server");

    let out = Command::new(env!("CARGO_BIN_EXE_ringshard"))
        .args(["serve", "--listen", "127.0.0.1:0", "--shards", "1"])
        .args(engine)
        .args(["--pid-file", "/nonexistent/dir/ringshard.pid"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--pid-file /nonexistent/dir/ringshard.pid"),
        "{err}"
    );
}

/// `--max-connections 4`: a fifth connection is not served while four are open; once two of
/// them close (below the low-water mark) it is, and nothing was refused.
fn connections_past_the_limit_are_served_when_others_close(engine: &[&str]) {
    let srv = Server::start(engine, &["--shards", "1", "--max-connections", "4"]);
    let mut open = served_connections(&srv, 4);
    let mut fifth = srv.connect(); // the handshake completes: it waits in the backlog
    fifth.send(b"GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n");
    fifth.expect_silence(Duration::from_millis(500));
    open.truncate(2);
    let r = fifth.resp();
    assert_eq!(r.status, 200);
    for c in &mut open {
        c.send(b"GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(c.resp().status, 200);
    }
}

/// Debug builds: a shard made to panic in its loop (through `RINGSHARD_DEBUG_PANIC_FILE`) is
/// logged with its backtrace, counted in /metrics and replaced on the same listening socket; its
/// connection sees the end instead of waiting, the other shard's connection goes on, and every
/// shard answers new connections. Three deaths within a minute end the process, non-zero.
fn a_shard_that_panics_is_replaced(engine: &[&str]) {
    let dir = scratch_dir("operations", "shard-death", engine);
    let trigger = dir.join("panic");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ringshard"));
    cmd.arg("serve")
        .args(["--listen", "127.0.0.1:0", "--shards", "2"])
        .args(engine)
        .env("RINGSHARD_DEBUG_PANIC_FILE", &trigger);
    let mut srv = Server::spawn(cmd);
    // Keep-alive connections on both shards (the kernel hashes them; 20 all on one shard is
    // a chance of one in half a million).
    let mut conns = served_connections(&srv, 20);
    std::fs::write(&trigger, "0").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !srv.stderr().contains("replaced: shard 0") {
        assert!(Instant::now() < deadline, "shard 0 not replaced");
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = srv.stderr();
    assert!(
        log.contains("shard 0 died: panicked: a panic asked for by the debug hook"),
        "{log}"
    );
    assert!(log.contains("backtrace:"), "{log}");
    // The dead shard's connections were closed; the other shard's go on.
    let (mut ended, mut served) = (0, 0);
    for c in &mut conns {
        let _ = c.try_send(b"GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n");
        match c.try_resp(false) {
            Ok(r) => {
                assert_eq!(r.status, 200);
                served += 1;
            }
            Err(e) => {
                assert_ne!(e, "timed out", "a dead shard's connection was left open");
                ended += 1;
            }
        }
    }
    assert!(ended > 0 && served > 0, "ended {ended}, served {served}");
    let before = srv.metrics();
    assert!(
        before.contains("\nringshard_shard_restarts_total 1\n"),
        "{before}"
    );
    for _ in 0..100 {
        let mut c = srv.connect();
        c.send(b"GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(c.resp().status, 200);
    }
    let after = srv.metrics();
    for shard in 0..2 {
        assert!(
            shard_metric(&after, "requests_total", shard)
                > shard_metric(&before, "requests_total", shard),
            "shard {shard} answered none of 100 new connections"
        );
    }
    // Two more deaths within the minute: the process ends, non-zero.
    for shard in ["1", "0"] {
        std::fs::write(&trigger, shard).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while trigger.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let status = srv
        .wait_exit(Duration::from_secs(10))
        .expect("still running after 3 deaths");
    assert!(!status.success(), "{status:?}");
    assert!(
        srv.stderr().contains("3 shards died within 60 s"),
        "{}",
        srv.stderr()
    );
}

/// Two shards at `--max-connections 4`: eight connections made one after another are all
/// served, since once a shard is full new connections are steered to the one with room (the
/// kernel's hash alone would send one of them, three times in four, to a full shard's backlog).
fn new_connections_go_to_shards_with_room(engine: &[&str]) {
    let srv = Server::start(engine, &["--shards", "2", "--max-connections", "4"]);
    let mut open = Vec::new();
    for i in 0..8 {
        let mut c = srv.connect();
        c.send(b"GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n");
        match c.try_resp(false) {
            Ok(r) => assert_eq!(r.status, 200),
            Err(e) => panic!("connection {i} not served ({e}): it went to a full shard"),
        }
        open.push(c);
    }
    // Both full: the ninth waits; once a connection closes on each shard, it is served.
    let mut ninth = srv.connect();
    ninth.send(b"GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n");
    ninth.expect_silence(Duration::from_millis(300));
    open.truncate(2);
    assert_eq!(ninth.resp().status, 200);
}

/// Whether a response (or anything) has arrived on `c`, without waiting.
fn answered(c: &Client) -> bool {
    c.s.set_nonblocking(true).unwrap();
    let mut b = [0u8; 1];
    let got = matches!(c.s.peek(&mut b), Ok(n) if n > 0);
    c.s.set_nonblocking(false).unwrap();
    got
}

/// Out of descriptors (`ulimit -n 64`, hard and soft, so the server cannot raise it): of 100
/// connections each with a request, those past what the limit allows wait in the backlog (none
/// is reset); the served ones go on being served, and a request that needs a descriptor (a
/// static file, an upstream connection) is shed with 503 and `Retry-After` where none is left,
/// never answered 404 or blamed on the upstream; once the served connections close, every
/// waiting one is answered.
fn out_of_descriptors_the_server_sheds_new_work(engine: &[&str]) {
    let dir = scratch_dir("operations", "descriptors", engine);
    std::fs::create_dir_all(dir.join("site")).unwrap();
    std::fs::write(dir.join("site/page.txt"), "a page\n").unwrap();
    let config = dir.join("site.toml");
    std::fs::write(
        &config,
        format!(
            "[health]\npath = \"/health\"\n[[route]]\nprefix = \"/static/\"\nstatic = \"{}\"\n\
             [[route]]\nprefix = \"/up/\"\nproxy = \"http://127.0.0.1:1\"\n",
            dir.join("site").display()
        ),
    )
    .unwrap();
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg("ulimit -n 64 && exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_ringshard"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--shards",
            "1",
            "--config",
        ])
        .arg(&config)
        .args(engine);
    let srv = Server::spawn(cmd);
    let conns: Vec<Client> = (0..100)
        .map(|_| {
            let mut c = srv.connect();
            c.send(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
            c
        })
        .collect();
    // Those the server could take are answered; wait for their number to settle.
    let mut served = 0;
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(100));
        let now = conns.iter().filter(|c| answered(c)).count();
        if now == served && now > 0 {
            break;
        }
        served = now;
    }
    let (mut first, mut waiting): (Vec<Client>, Vec<Client>) =
        conns.into_iter().partition(answered);
    assert!(
        first.len() >= 10 && waiting.len() >= 20,
        "served {}, waiting {}: the limit did not bite",
        first.len(),
        waiting.len()
    );
    for c in &mut first {
        assert_eq!(c.resp().status, 200);
        c.send(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(
            c.resp().status,
            200,
            "a served connection stopped being served"
        );
    }
    // Plain descriptors (epoll) are all taken by connections; io_uring's registered ones are
    // not descriptors, so there a file still opens.
    let fds_exhausted = engine.contains(&"epoll");
    let c = &mut first[0];
    c.send(b"GET /static/page.txt HTTP/1.1\r\nHost: x\r\n\r\n");
    let r = c.resp();
    match fds_exhausted {
        true => assert_eq!(r.status, 503, "{}", r.head),
        false => assert!(r.status == 200 || r.status == 503, "{}", r.head),
    }
    if r.status == 503 {
        assert_eq!(r.header("retry-after"), Some("1"));
    }
    c.send(b"GET /up/x HTTP/1.1\r\nHost: x\r\n\r\n");
    let r = c.resp();
    match fds_exhausted {
        true => assert_eq!(r.status, 503, "{}", r.text()),
        false => assert!(r.status == 502 || r.status == 503, "{}", r.head),
    }
    for c in &waiting {
        assert!(!answered(c));
    }
    drop(first);
    for c in &mut waiting {
        let r = c.resp();
        assert_eq!(r.status, 200);
    }
}

per_engine! {
    new_connections_go_to_shards_with_room,
    out_of_descriptors_the_server_sheds_new_work,
    a_shard_that_panics_is_replaced,
    connections_past_the_limit_are_served_when_others_close,
    notify_messages_arrive_in_order,
    health_answers_503_while_draining,
    the_pid_file_is_kept_current,
}
