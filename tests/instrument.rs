//! The research-instrument surface: `/metrics`, `ringshard probe`, and knobs that must fail
//! loudly when they cannot be had.
mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{echo, get, metric, per_engine, Server};

fn metrics_count_what_was_sent(engine: &[&str]) {
    let srv = Server::start(engine, &["--shards", "1"]);
    let mut sent = 0u64;
    let mut a = srv.connect();
    for _ in 0..4 {
        let req = get("/plaintext");
        sent += req.len() as u64;
        a.send(&req);
        assert_eq!(a.resp().status, 200);
    }
    let mut b = srv.connect();
    let req = echo(b"twelve bytes");
    sent += req.len() as u64;
    b.send(&req);
    assert_eq!(b.resp().text(), "twelve bytes");
    // A rejected request is a response too.
    let req = b"GET / HTTP/1.1\r\n\r\n".to_vec();
    sent += req.len() as u64;
    b.send(&req);
    assert_eq!(b.resp().status, 400);

    let mut m = srv.connect();
    let req = get("/metrics");
    m.send(&req);
    let page = m.resp();
    assert_eq!(page.status, 200);
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/plain"));
    let page = page.text();
    assert_eq!(metric(&page, "requests_total"), 6, "{page}");
    assert_eq!(metric(&page, "received_bytes_total"), sent, "{page}");
    assert_eq!(metric(&page, "connections_accepted_total"), 3, "{page}");
    assert!(page.contains("# TYPE ringshard_requests_total counter"));
    assert!(page.contains("ringshard_request_latency_seconds_count{shard=\"0\"}"));
}

/// `latency_samples_total` counts the requests timed (one in 64), published once a second,
/// and grows with the requests sent: it is not overwritten with a zero each loop turn.
fn latency_samples_grow_with_the_requests(engine: &[&str]) {
    let srv = Server::start(engine, &["--shards", "1"]);
    let mut c = srv.connect();
    let mut samples = Vec::new();
    for _ in 0..2 {
        // 64 × 16 pipelined requests: 16 timed.
        let batch = get("/plaintext").repeat(16);
        for _ in 0..64 {
            c.send(&batch);
            for _ in 0..16 {
                assert_eq!(c.resp().status, 200);
            }
        }
        // The histogram is published once a second; several turns run meanwhile.
        let t0 = Instant::now();
        let value = loop {
            c.send(&get("/metrics"));
            let v = metric(&c.resp().text(), "latency_samples_total");
            if v >= 16 * (samples.len() as u64 + 1) || t0.elapsed() > Duration::from_secs(5) {
                break v;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        samples.push(value);
    }
    assert!(samples[0] >= 16, "{engine:?}: {samples:?}");
    assert!(samples[1] >= samples[0] + 16, "{engine:?}: {samples:?}");
}

fn pipelined_responses_go_out_in_one_send_per_read(engine: &[&str]) {
    let srv = Server::start(engine, &["--shards", "1"]);
    let mut a = srv.connect();
    // 100 requests in one write (3.6 KB, one segment on loopback): a read or two.
    a.send(&get("/plaintext").repeat(100));
    for _ in 0..100 {
        assert_eq!(a.resp().status, 200);
    }
    let mut m = srv.connect();
    m.send(&get("/metrics"));
    let page = m.resp().text();
    let (recvs, sends) = (metric(&page, "recvs_total"), metric(&page, "sends_total"));
    // Not one send per response: one per turn that read, at most.
    assert!(
        (1..=recvs).contains(&sends) && recvs <= 5,
        "{engine:?}: {sends} sends for {recvs} reads of 100 pipelined requests"
    );
}

per_engine! {
    metrics_count_what_was_sent,
    latency_samples_grow_with_the_requests,
    pipelined_responses_go_out_in_one_send_per_read,
}

/// Whether a uring server's start-up line says its waits may gather several completions.
fn batches(srv: &Server) -> bool {
    srv.stderr().contains("waits gather up to")
}

/// The failure of a test that needs batched waits, on a server whose waits do not batch: the
/// test is ignored where build.rs finds no min-timeout wait, so here the kernel has one.
const NOT_BATCHING: &str = "the shard's waits do not batch, though build.rs found a kernel with \
     io_uring's min-timeout wait (6.12+) and the test is not ignored";

fn probe_json() -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_ringshard"))
        .args(["probe", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn probe_json_has_its_shape() {
    let json = probe_json();
    for key in [
        "\"kernel\":",
        "\"io_uring\":{\"usable\":",
        "\"features\":{",
        "\"multishot_accept\":{\"supported\":",
        "\"multishot_recv\":{\"supported\":",
        "\"provided_buffer_ring\":{\"supported\":",
        "\"send_zc\":{\"supported\":",
        "\"single_issuer_defer_taskrun\":{\"supported\":",
        "\"coop_taskrun\":{\"supported\":",
        "\"registered_files\":{\"supported\":",
        "\"sqpoll\":{\"supported\":",
        "\"recv_bundle\":{\"supported\":",
        "\"limits\":{\"memlock_bytes\":",
        "\"open_files\":",
        "\"somaxconn\":",
        "\"cpus_allowed\":",
    ] {
        assert!(json.contains(key), "probe --json lacks {key}: {json}");
    }
}

/// What `probe` finds, an io_uring server's start-up line says it uses. Runs where
/// `RINGSHARD_TEST_ENGINES` selects io_uring, whose tests need it usable.
#[test]
fn probe_json_agrees_with_a_uring_server() {
    if common::selected("uring").is_empty() {
        common::say_not_selected("probe_json_agrees_with_a_uring_server", "uring");
        return;
    }
    let json = probe_json();
    assert!(
        json.contains("\"io_uring\":{\"usable\":true"),
        "probe says io_uring is not usable here, and the io_uring tests are selected: {json}"
    );
    let supported = |f: &str| json.contains(&format!("\"{f}\":{{\"supported\":true"));
    let srv = Server::start(&["--engine", "uring"], &["--shards", "1"]);
    let line = srv.stderr();
    let want = |yes: bool| if yes { "multishot" } else { "single-shot" };
    assert!(
        line.contains(&format!("accept {}", want(supported("multishot_accept")))),
        "{line}\n{json}"
    );
    assert!(
        line.contains(&format!("recv {}", want(supported("multishot_recv")))),
        "{line}\n{json}"
    );
    let taskrun = if supported("single_issuer_defer_taskrun") {
        "SINGLE_ISSUER|DEFER_TASKRUN"
    } else if supported("coop_taskrun") {
        "COOP_TASKRUN"
    } else {
        "plain"
    };
    assert!(
        line.contains(&format!("io_uring {taskrun}")),
        "{line}\n{json}"
    );
}

/// Start-up must fail, naming the flag.
fn refuses(args: &[&str], names: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_ringshard"))
        .args(["serve", "--listen", "127.0.0.1:0", "--shards", "1"])
        .args(args)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} started: {err}");
    assert!(
        err.contains(names),
        "{args:?}: the error does not name {names}: {err}"
    );
}

#[test]
fn a_knob_that_cannot_be_had_fails_start_up_naming_it() {
    // DEFER_TASKRUN cannot be combined with SQPOLL on any kernel: asked for explicitly, refused.
    refuses(
        &["--engine", "uring", "--taskrun", "defer", "--sqpoll", "1s"],
        "--taskrun",
    );
    // A registered file table larger than the open-files limit.
    refuses(
        &["--engine", "uring", "--registered-files", "1048576"],
        "--registered-files",
    );
    // Batched waits without a wait time.
    refuses(
        &["--engine", "uring", "--wait-batch", "8", "--wait-usec", "0"],
        "--wait-batch",
    );
}

#[test]
fn stats_table_printed_at_exit() {
    let mut srv = Server::start(&[], &["--shards", "1", "--stats"]);
    let mut c = srv.connect();
    c.send(&get("/"));
    assert_eq!(c.resp().status, 200);
    drop(c);
    srv.signal(libc::SIGTERM);
    let status = srv.wait_exit(Duration::from_secs(10)).expect("exits");
    assert!(status.success());
    let err = srv.stderr();
    assert!(err.contains("requests_total"), "{err}");
    assert!(err.contains("connections_accepted_total"), "{err}");
}

#[test]
fn serves_on_an_inherited_listening_socket() {
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let fd = listener.as_raw_fd();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ringshard"));
    cmd.args(["serve", "--listen-fd", "3", "--shards", "2"]);
    // SAFETY: dup2 is async-signal-safe; it runs in the child between fork and exec and puts the
    // listener on fd 3 without close-on-exec, as a supervisor handing over a socket would.
    unsafe {
        cmd.pre_exec(move || {
            // dup2 onto itself would keep close-on-exec: clear the flag instead.
            let rc = if fd == 3 {
                libc::fcntl(3, libc::F_SETFD, 0)
            } else {
                libc::dup2(fd, 3)
            };
            if rc < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    // Killed on drop, printing its stderr if the test fails.
    let mut srv = Server::spawn(cmd);
    drop(listener); // the server's copy is the only one left
    let mut body = String::new();
    for _ in 0..4 {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"GET /plaintext HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .unwrap();
        body.clear();
        s.read_to_string(&mut body).unwrap();
        assert!(
            body.starts_with("HTTP/1.1 200 OK") && body.ends_with("Hello, World!"),
            "{body}"
        );
    }
    srv.signal(libc::SIGTERM);
    let status = srv.wait_exit(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "exit after SIGTERM: {status:?}"
    );
}

#[test]
fn a_listen_fd_that_is_not_a_listener_is_refused() {
    refuses(&["--listen-fd", "0"], "--listen-fd 0");
}

/// Every ring knob serves the protocol correctly, not just starts: pipelining, a chunked body
/// split over writes, and a large response that needs more than one send.
#[test]
fn every_ring_knob_serves_correctly() {
    let knobs: &[&[&str]] = &[
        &["--taskrun", "coop"],
        &["--taskrun", "plain"],
        &["--recv", "single"],
        &["--registered-files", "256"],
        &["--registered-files", "0"],
        &["--sqpoll", "100ms"],
        &["--send-zc", "1"],
        &["--reap", "2"],
        &["--wait-usec", "0"],
        &["--wait-busy", "0"],
        &["--wait-busy", "100"],
        &["--buf-count", "2", "--buf-size", "512"],
        &["--ring-entries", "8"],
    ];
    for knob in knobs {
        let srv = Server::start(
            &["--engine", "uring"],
            &[&["--shards", "1"][..], knob].concat(),
        );
        let mut c = srv.connect();
        let mut batch = Vec::new();
        for _ in 0..100 {
            batch.extend_from_slice(&get("/plaintext"));
        }
        c.send(&batch);
        for i in 0..100 {
            let r = c.resp();
            assert_eq!(
                (r.status, r.text().as_str()),
                (200, "Hello, World!"),
                "{knob:?} response {i}"
            );
        }
        c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel");
        std::thread::sleep(Duration::from_millis(20));
        c.send(b"lo\r\n0\r\n\r\n");
        assert_eq!(c.resp().text(), "hello", "{knob:?}");
        let big = vec![b'x'; 200_000];
        c.send(&echo(&big));
        assert_eq!(c.resp().body.len(), big.len(), "{knob:?}");
    }
}

/// A full registered file table holds new connections in the listen backlog, none lost: near
/// a full table the shard accepts one at a time, and only while a slot is free; the waiting
/// connection is served as soon as a close frees one.
#[test]
fn full_file_table_waits_for_a_free_slot() {
    let srv = Server::start(
        &["--engine", "uring"],
        &["--shards", "1", "--registered-files", "2"],
    );
    let mut a = srv.connect();
    let mut b = srv.connect();
    for c in [&mut a, &mut b] {
        c.send(&get("/plaintext"));
        assert_eq!(c.resp().status, 200);
    }
    // A third connection completes its handshake in the backlog but is not served yet.
    let mut c = srv.connect();
    c.send(&get("/plaintext"));
    c.expect_silence(Duration::from_millis(300));
    drop(a);
    assert_eq!(c.resp().status, 200);
    b.send(&get("/metrics"));
    let page = b.resp().text();
    assert_eq!(metric(&page, "accept_errors_total"), 0, "{page}");
    assert_eq!(metric(&page, "connections_accepted_total"), 3, "{page}");
}

/// From multishot to one-at-a-time accepts as the table fills: 100 slots and a backlog of 16
/// (single-shot below 80 free), 105 clients; all 100 are served, the other 5 wait and are
/// served as slots free, and no connection is dropped on the way.
#[test]
fn filling_the_file_table_loses_no_connection() {
    let srv = Server::start(
        &["--engine", "uring"],
        &[
            "--shards",
            "1",
            "--registered-files",
            "100",
            "--backlog",
            "16",
        ],
    );
    let mut clients: Vec<_> = (0..105).map(|_| srv.connect()).collect();
    for c in &mut clients {
        c.send(&get("/plaintext"));
    }
    for c in &mut clients[..100] {
        assert_eq!(c.resp().status, 200);
    }
    clients[100].expect_silence(Duration::from_millis(200));
    clients.drain(..5);
    for c in &mut clients[95..] {
        assert_eq!(c.resp().status, 200);
    }
    clients[0].send(&get("/metrics"));
    let page = clients[0].resp().text();
    assert_eq!(metric(&page, "accept_errors_total"), 0, "{page}");
    assert_eq!(metric(&page, "connections_accepted_total"), 105, "{page}");
}

#[test]
fn version_and_help_print_and_exit_zero() {
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_ringshard"))
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {:?}", out.status);
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(
        run(&["--version"]).trim(),
        format!("ringshard {}", env!("CARGO_PKG_VERSION"))
    );
    let top = run(&["--help"]);
    for sub in ["serve", "load", "probe"] {
        assert!(top.contains(sub), "{top}");
    }
    assert!(run(&["serve", "--help"]).contains("--listen"));
    assert!(run(&["load", "--help"]).contains("--pipeline"));
    assert!(run(&["probe", "--help"]).contains("--json"));
}

/// Many connections sending at once into a two-buffer ring: most receives find it empty and
/// wait their turn for a buffer, and every request is still answered, in order.
#[test]
fn an_exhausted_buffer_ring_serves_every_connection() {
    let srv = Server::start(
        &["--engine", "uring"],
        &["--shards", "1", "--buf-count", "2", "--buf-size", "512"],
    );
    let mut clients: Vec<_> = (0..200).map(|_| srv.connect()).collect();
    let batch: Vec<u8> = (0..10).flat_map(|_| get("/plaintext")).collect();
    for c in &mut clients {
        c.send(&batch);
    }
    for (n, c) in clients.iter_mut().enumerate() {
        for i in 0..10 {
            let r = c.resp();
            assert_eq!(r.body, b"Hello, World!", "connection {n}, response {i}");
        }
    }
}

/// The buffer ring is kept only as full as recent use needs. After a quiet stretch, a burst of
/// connections far beyond that (held back by stopping the server, then released at once) finds
/// the ring dry; every buffer goes back in and every request is answered.
#[test]
fn a_burst_after_quiet_use_finds_the_buffers_it_needs() {
    let srv = Server::start(&["--engine", "uring"], &["--shards", "1"]);
    let mut quiet = srv.connect();
    for _ in 0..500 {
        quiet.send(&get("/plaintext"));
        assert_eq!(quiet.resp().status, 200);
    }
    srv.signal(libc::SIGSTOP);
    let mut clients: Vec<_> = (0..300).map(|_| srv.connect()).collect();
    let batch = get("/plaintext").repeat(4);
    for c in &mut clients {
        c.send(&batch);
    }
    srv.signal(libc::SIGCONT);
    for (n, c) in clients.iter_mut().enumerate() {
        for i in 0..4 {
            assert_eq!(
                c.resp().body,
                b"Hello, World!",
                "connection {n}, response {i}"
            );
        }
    }
    quiet.send(&get("/metrics"));
    let page = quiet.resp().text();
    assert!(
        metric(&page, "enobufs_total") > 0,
        "the burst never ran the ring dry:\n{page}"
    );
    assert_eq!(metric(&page, "requests_total"), 500 + 1200, "{page}");
}

/// Starts a uring server with `args`; 64 connections send a request each, then four of them
/// one more, up to `rounds` times, until `waits_cut_total` counts one. Returns whether the
/// server's waits batch, and the count.
fn rounds_until_a_wait_is_cut(args: &[&str], rounds: usize) -> (bool, u64) {
    let srv = Server::start(&["--engine", "uring"], args);
    let batching = batches(&srv);
    let mut conns: Vec<_> = (0..64).map(|_| srv.connect()).collect();
    let mut m = srv.connect();
    let mut cut = 0;
    for _ in 0..rounds {
        for c in conns.iter_mut() {
            c.send(&get("/plaintext"));
        }
        for c in conns.iter_mut() {
            assert_eq!(c.resp().status, 200);
        }
        for c in conns.iter_mut().take(4) {
            c.send(&get("/plaintext"));
            assert_eq!(c.resp().status, 200);
        }
        m.send(&get("/metrics"));
        cut = metric(&m.resp().text(), "waits_cut_total");
        if cut > 0 {
            break;
        }
    }
    (batching, cut)
}

#[test]
#[cfg_attr(
    no_min_timeout,
    ignore = "this kernel has no io_uring min-timeout wait (Linux 6.12+, probed by build.rs): waits never batch"
)]
fn a_batched_wait_that_gets_fewer_completions_than_it_asked_for_is_counted() {
    // Sixty-four requests at once make turns of several completions (a shard gathers only with
    // enough connections talking); four follow-ups are fewer than the next wait asks for. How
    // the completions fall into turns depends on timing, so rounds repeat (on a loaded machine
    // too) until one wait has been cut short.
    // --wait-busy 0: batch however idle the shard is (these few requests leave it nearly so).
    let args = [
        "--shards",
        "1",
        "--wait-batch",
        "8",
        "--wait-usec",
        "1000",
        "--wait-busy",
        "0",
    ];
    let (batching, cut) = rounds_until_a_wait_is_cut(&args, 50);
    assert!(batching, "{NOT_BATCHING}");
    assert!(cut > 0, "no wait counted as cut short in 50 rounds");
}

/// Waits that return at the first completion are never cut short (on any kernel).
#[test]
fn a_wait_for_the_first_completion_is_never_counted_as_cut() {
    let (_, cut) = rounds_until_a_wait_is_cut(&["--shards", "1", "--wait-batch", "1"], 5);
    assert_eq!(cut, 0);
}

/// A shard whose waits batch (`--wait-busy 0`, or busy enough by default) answers a lone
/// client, and a few clients in lock step (wrk -c8), without gathering: each wait returns at
/// its first completion, so no request waits out a gathering window while its client, waiting
/// for that very answer, sends nothing more. (Gathering as many as the last turn had, eight
/// clients in lock step were gathered every round.) Sixty-four clients do make the same shard
/// gather (`many_clients_make_a_batching_shard_gather`), so the counter is not silent by
/// construction.
#[test]
#[cfg_attr(
    no_min_timeout,
    ignore = "this kernel has no io_uring min-timeout wait (Linux 6.12+, probed by build.rs): waits never batch"
)]
fn a_lone_client_is_answered_without_a_gathering_wait() {
    for args in [
        &["--shards", "1"][..],
        &["--shards", "1", "--wait-busy", "0"],
    ] {
        let srv = Server::start(&["--engine", "uring"], args);
        assert!(batches(&srv), "{args:?}: {NOT_BATCHING}");
        lock_step(&srv, 1, 500);
        lock_step(&srv, 8, 200);
        let mut m = srv.connect();
        assert_eq!(value(&mut m, "requests_total"), 500 + 1600, "{args:?}");
        assert_eq!(value(&mut m, "gathering_waits_total"), 0, "{args:?}");
        assert_eq!(value(&mut m, "waits_cut_total"), 0, "{args:?}");
    }
}

/// The metrics page's value of `ringshard_NAME{shard="0"}`, asked on `m`.
fn value(m: &mut common::Client, name: &str) -> u64 {
    m.send(&get("/metrics"));
    metric(&m.resp().text(), name)
}

/// `clients` connections send a request each, then read the answers, `rounds` times.
fn lock_step(srv: &Server, clients: usize, rounds: usize) {
    let mut conns: Vec<_> = (0..clients).map(|_| srv.connect()).collect();
    for _ in 0..rounds {
        for c in conns.iter_mut() {
            c.send(&get("/plaintext"));
        }
        for c in conns.iter_mut() {
            assert_eq!(c.resp().status, 200);
        }
    }
}

/// The shard of `a_lone_client_is_answered_without_a_gathering_wait` batching, with many
/// clients: waits gather.
#[test]
#[cfg_attr(
    no_min_timeout,
    ignore = "this kernel has no io_uring min-timeout wait (Linux 6.12+, probed by build.rs): waits never batch"
)]
fn many_clients_make_a_batching_shard_gather() {
    let srv = Server::start(
        &["--engine", "uring"],
        &["--shards", "1", "--wait-busy", "0"],
    );
    assert!(batches(&srv), "{NOT_BATCHING}");
    let mut m = srv.connect();
    let t0 = Instant::now();
    while value(&mut m, "gathering_waits_total") == 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "64 clients never made a wait gather"
        );
        lock_step(&srv, 64, 5);
    }
}

#[test]
#[cfg_attr(
    no_min_timeout,
    ignore = "this kernel has no io_uring min-timeout wait (Linux 6.12+, probed by build.rs): waits never batch"
)]
fn waits_batch_while_the_shard_is_busy_and_stop_when_it_idles() {
    // By default a shard answering a request now and then stays below the 60% that starts
    // batching: each request is answered without a batched wait.
    let srv = Server::start(&["--engine", "uring"], &["--shards", "1"]);
    assert!(batches(&srv), "{NOT_BATCHING}");
    assert!(srv
        .stderr()
        .contains("while the shard is at least 60% busy"));
    let mut m = srv.connect();
    for _ in 0..20 {
        m.send(&get("/plaintext"));
        assert_eq!(m.resp().status, 200);
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(value(&mut m, "wait_batching_starts_total"), 0);
    assert_eq!(value(&mut m, "wait_batching"), 0);
    drop(srv);

    // At a 5% threshold a stream of pipelined requests switches batching on (0.5 ms of the
    // shard's time in a 10 ms window), and an idle spell (under 2.5%) switches it off again.
    let srv = Server::start(
        &["--engine", "uring"],
        &["--shards", "1", "--wait-busy", "5"],
    );
    let mut m = srv.connect();
    let mut conns: Vec<_> = (0..4).map(|_| srv.connect()).collect();
    let batch = get("/plaintext").repeat(16);
    let t0 = Instant::now();
    while value(&mut m, "wait_batching") == 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "batching never started"
        );
        for c in conns.iter_mut() {
            c.send(&batch);
        }
        for c in conns.iter_mut() {
            for _ in 0..16 {
                assert_eq!(c.resp().status, 200);
            }
        }
    }
    let starts = value(&mut m, "wait_batching_starts_total");
    assert!(starts >= 1);
    let t0 = Instant::now();
    loop {
        // Each poll ends a window of 300 ms in which the shard rendered one page.
        std::thread::sleep(Duration::from_millis(300));
        if value(&mut m, "wait_batching") == 0 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "batching never stopped"
        );
    }
    // Idle, it did not start again.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(value(&mut m, "wait_batching_starts_total"), starts);
    assert_eq!(value(&mut m, "wait_batching"), 0);
}
