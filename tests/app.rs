//! The application pool over real processes (tests/proxy_app.py on python3's standard library,
//! listening where RINGSHARD_SOCKET or PORT says), on both engines: processes started and told
//! where to listen, their output in ringshard's log, a killed process replaced (with the
//! children it started gone), a crash loop given up with 503, and processes stopped when
//! ringshard stops.
mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

const LIMIT: Duration = Duration::from_secs(20);

fn app_script() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/proxy_app.py")
        .display()
        .to_string()
}

/// `ringshard serve --app ...` with one shard.
fn serve_app(engine: &[&str], command: &str, processes: &str) -> Server {
    Server::start(
        engine,
        &["--shards", "1", "--app", command, "--processes", processes],
    )
}

fn wait_for(what: &str, ok: impl FnMut() -> bool) {
    wait_until(what, LIMIT, ok);
}

fn get_status(srv: &Server, path: &str) -> (u16, String) {
    let mut c = srv.connect();
    c.send(&get(path));
    let r = c.resp();
    (r.status, r.text())
}

/// Two processes start, each on its own socket, and log with their name and pid; one killed
/// with SIGKILL is replaced, the child it started is gone with it, and requests go on being
/// answered; at ringshard's exit none is left.
fn a_killed_process_is_replaced_with_its_children(engine: &[&str]) {
    let dir = scratch_dir("app", "replace", engine);
    let log = dir.join("app.log");
    // The shell starts a marker child in the app's process group, then becomes the app.
    let marker = 3000 + (std::process::id() % 1000) * 2 + u32::from(engine_kind(engine) == "epoll");
    let command = format!(
        "sleep {marker} & exec python3 {} --unix \"$RINGSHARD_SOCKET\" --log {}",
        app_script(),
        log.display()
    );
    let mut srv = serve_app(engine, &command, "2");
    wait_for("two processes ready", || {
        ready_pids(&srv.stderr()).len() >= 2
    });
    let log_text = srv.stderr();
    let pids = ready_pids(&log_text);
    for pid in &pids {
        assert!(
            log_text.contains(&format!("app app[{pid}]: READY unix")),
            "the app's output is not in the log with its pid:\n{log_text}"
        );
    }
    assert_eq!(get_status(&srv, "/echo").0, 200);

    let sleepers = || -> Vec<i32> {
        let me = format!("sleep {marker}");
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
            .filter(|p| {
                std::fs::read(format!("/proc/{p}/cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).replace('\0', " ").trim() == me)
            })
            .filter(|&p| alive(p))
            .collect()
    };
    wait_for("the marker children", || sleepers().len() == 2);

    let victim = pids[0];
    signal(victim, libc::SIGKILL);
    wait_for("a replacement ready", || {
        ready_pids(&srv.stderr()).len() >= 3
    });
    let now = ready_pids(&srv.stderr());
    assert!(!now[2..].contains(&victim));
    wait_for("the killed process's child gone", || sleepers().len() == 2);
    for _ in 0..6 {
        assert_eq!(get_status(&srv, "/echo").0, 200);
    }
    assert!(srv
        .stderr()
        .contains(&format!("app app[{victim}] signal: 9")));

    srv.signal(libc::SIGTERM);
    assert!(srv.wait_exit(LIMIT).is_some_and(|s| s.success()));
    for pid in ready_pids(&srv.stderr()) {
        assert!(!alive(pid), "app process {pid} outlived ringshard");
    }
    assert!(sleepers().is_empty(), "an app's child outlived ringshard");
}

/// An app that keeps exiting is started again with a growing delay, then given up on: its
/// route answers 503, and the log says why.
fn a_crash_loop_is_given_up_with_503(engine: &[&str]) {
    let dir = scratch_dir("app", "crash-loop", engine);
    let file = dir.join("site.toml");
    std::fs::write(
        &file,
        "[server]\nshards = 1\n\n[app.flaky]\ncommand = \"exit 3\"\nprocesses = 1\nmax_crashes = 4\ncrash_window = \"60s\"\n\n[[route]]\nprefix = \"/\"\napp = \"flaky\"\n",
    )
    .unwrap();
    let check = std::process::Command::new(env!("CARGO_BIN_EXE_ringshard"))
        .args(["check-config", file.to_str().unwrap()])
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&check.stdout);
    assert!(
        printed.contains("app flaky: `exit 3`, 1 processes told RINGSHARD_SOCKET")
            && printed.contains("4 crashes in 60s give up"),
        "{printed}"
    );
    let srv = Server::start(engine, &["--config", file.to_str().unwrap()]);
    wait_for("the pool to give up", || {
        srv.stderr()
            .contains("app flaky: 4 crashes within 60s; not starting it again")
    });
    let (status, body) = get_status(&srv, "/anything");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("app flaky is not running"), "{body}");
    let exits = srv
        .stderr()
        .lines()
        .filter(|l| l.contains("app flaky[") && l.contains("exit status: 3"))
        .count();
    assert_eq!(exits, 4, "{}", srv.stderr());
}

/// `listen = "port"`: each process gets a free port in PORT, and requests reach it.
fn a_port_app_is_reached_on_its_port(engine: &[&str]) {
    let dir = scratch_dir("app", "port", engine);
    let file = dir.join("site.toml");
    std::fs::write(
        &file,
        format!(
            "[server]\nshards = 1\n\n[app.web]\ncommand = \"python3 {} --port $PORT --log {}\"\nprocesses = 2\nlisten = \"port\"\nenvironment = {{ APP_MODE = \"test\" }}\n\n[[route]]\nprefix = \"/\"\napp = \"web\"\n",
            app_script(),
            dir.join("app.log").display()
        ),
    )
    .unwrap();
    let srv = Server::start(engine, &["--config", file.to_str().unwrap()]);
    wait_for("two processes ready", || {
        ready_pids(&srv.stderr()).len() >= 2
    });
    assert!(
        srv.stderr().contains("ready (127.0.0.1:"),
        "{}",
        srv.stderr()
    );
    for _ in 0..4 {
        assert_eq!(get_status(&srv, "/echo").0, 200);
    }
}

/// A one-process app on one shard, with `options` in its `[app.web]` section; the app's log
/// path is returned with the server.
fn one_process(
    engine: &[&str],
    name: &str,
    prefix: &str,
    options: &str,
) -> (Server, std::path::PathBuf) {
    one_process_on(engine, name, 1, prefix, options)
}

/// As [`one_process`], on `shards` shards.
fn one_process_on(
    engine: &[&str],
    name: &str,
    shards: usize,
    prefix: &str,
    options: &str,
) -> (Server, std::path::PathBuf) {
    let dir = scratch_dir("app", name, engine);
    let log = dir.join("app.log");
    let file = dir.join("site.toml");
    std::fs::write(
        &file,
        format!(
            "[server]\nshards = {shards}\n\n[app.web]\ncommand = '{prefix}exec python3 {} --unix \"$RINGSHARD_SOCKET\" --log {}'\nprocesses = 1\n{options}\n\n[[route]]\nprefix = \"/\"\napp = \"web\"\n",
            app_script(),
            log.display()
        ),
    )
    .unwrap();
    (
        Server::start(engine, &["--config", file.to_str().unwrap()]),
        log,
    )
}

/// How many requests with this `X-Test-Id` reached the app.
fn arrivals(log: &Path, id: &str) -> usize {
    let needle = format!("\"id\": \"{id}\"");
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("\"event\": \"request\"") && l.contains(&needle))
        .count()
}

fn send_id(c: &mut Client, path: &str, id: &str) {
    c.send(format!("GET {path} HTTP/1.1\r\nHost: x\r\nX-Test-Id: {id}\r\n\r\n").as_bytes());
}

/// A request that arrives while the app is still starting waits for it, and is answered once
/// the process accepts connections; none reaches it before.
fn a_request_waits_for_a_starting_process(engine: &[&str]) {
    let (srv, log) = one_process(engine, "slow-start", "sleep 1; ", "");
    let t0 = Instant::now();
    let mut c = srv.connect();
    send_id(&mut c, "/echo", "early");
    let r = c.resp();
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        t0.elapsed() >= Duration::from_millis(900),
        "answered before the app could listen"
    );
    assert_eq!(arrivals(&log, "early"), 1);
    assert!(srv.stderr().contains("] ready ("));
}

/// One process taking one request at a time, a queue of one: the third request gets 503 with
/// Retry-After at once; a request waiting past the queue timeout gets 504; a client that leaves
/// the queue leaves its place (its request never reaches the app). Per shard (the default with
/// one shard) and with the books shared between shards.
fn the_queue_is_bounded_timed_and_left_by_clients_who_go(engine: &[&str]) {
    queue_behaviour(engine, "queue", "");
}

fn a_shared_queue_is_bounded_timed_and_left_by_clients_who_go(engine: &[&str]) {
    queue_behaviour(engine, "shared-queue", "pool = \"shared\"\n");
}

fn queue_behaviour(engine: &[&str], name: &str, pool: &str) {
    let options = format!("{pool}queue = 1\nqueue_timeout = \"1500ms\"");
    let (srv, log) = one_process(engine, name, "", &options);
    wait_for("the process ready", || ready_pids(&srv.stderr()).len() == 1);
    let mut busy = srv.connect();
    send_id(&mut busy, "/sleep?ms=1000", "busy");
    wait_for("the first request at the app", || {
        arrivals(&log, "busy") == 1
    });
    let mut queued = srv.connect();
    send_id(&mut queued, "/echo", "queued");
    std::thread::sleep(Duration::from_millis(100));
    let mut third = srv.connect();
    send_id(&mut third, "/echo", "third");
    let r = third.resp();
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(busy.resp().status, 200);
    assert_eq!(queued.resp().status, 200);
    assert_eq!(arrivals(&log, "third"), 0);

    // Waiting past the queue timeout: 504.
    send_id(&mut busy, "/sleep?ms=3000", "long");
    wait_for("the long request at the app", || {
        arrivals(&log, "long") == 1
    });
    send_id(&mut queued, "/echo", "late");
    let r = queued.resp();
    assert_eq!(r.status, 504, "{}", r.text());
    assert!(r.text().contains("queue timeout"), "{}", r.text());
    assert_eq!(busy.resp().status, 200);

    // A client that goes away while queued: its place is taken by the next, and its request
    // never reaches the app.
    send_id(&mut busy, "/sleep?ms=800", "busy-2");
    wait_for("busy-2 at the app", || arrivals(&log, "busy-2") == 1);
    let mut leaver = srv.connect();
    send_id(&mut leaver, "/echo", "leaver");
    std::thread::sleep(Duration::from_millis(100));
    drop(leaver);
    std::thread::sleep(Duration::from_millis(100));
    let mut next = srv.connect();
    send_id(&mut next, "/echo", "next");
    assert_eq!(next.resp().status, 200);
    assert_eq!(busy.resp().status, 200);
    assert_eq!(
        arrivals(&log, "leaver"),
        0,
        "a request whose client left reached the app"
    );
}

/// The most requests the app's process had read and not begun to answer at once (its log's
/// `in_flight`, counted by the one process).
fn most_at_once(log: &Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .filter_map(|l| {
            let n = l.split("\"in_flight\": ").nth(1)?;
            n.trim_end_matches('}').trim().parse().ok()
        })
        .max()
        .unwrap_or(0)
}

/// One process behind two shards, taking one request at a time: with `pool = "auto"` (shared,
/// since there are fewer processes than shards) it never has two requests at once, however the
/// connections spread over the shards; per shard, each shard counts only its own, so it may
/// have one per shard. Every request is answered. (16 connections: all on one shard is a chance
/// of one in 32,768.)
fn fewer_processes_than_shards_share_an_exact_limit(engine: &[&str]) {
    for (pool, most) in [("auto", 1), ("per-shard", 2)] {
        let options = format!("pool = \"{pool}\"");
        let (srv, log) = one_process_on(engine, &format!("exact-{pool}"), 2, "", &options);
        wait_for("the process ready", || ready_pids(&srv.stderr()).len() == 1);
        let mut clients: Vec<Client> = (0..16)
            .map(|i| {
                let mut c = srv.connect();
                send_id(&mut c, "/sleep?ms=100", &format!("{pool}-{i}"));
                c
            })
            .collect();
        for c in &mut clients {
            assert_eq!(c.resp().status, 200);
        }
        let seen = most_at_once(&log);
        assert!(
            seen <= most,
            "{pool}: {seen} requests at the process at once"
        );
        if pool == "auto" {
            assert_eq!(seen, 1);
            // On io_uring, a slot given back on one shard woke a request on the other by a
            // message between their rings (the requests came on both shards).
            if engine_kind(engine) == "uring" {
                let page = srv.metrics();
                let sum =
                    |name: &str| -> u64 { (0..2).map(|i| shard_metric(&page, name, i)).sum() };
                let sent = sum("wake_messages_sent_total");
                let received = sum("wake_messages_received_total");
                assert!(
                    sent > 0 && sent == received,
                    "sent {sent}, received {received}"
                );
            }
        }
    }
}

/// A process that keeps a request past the request timeout: 504 for that request, the process
/// replaced, and the next request answered by the new one.
fn a_stuck_process_is_replaced(engine: &[&str]) {
    let (srv, _log) = one_process(engine, "stuck", "", "request_timeout = \"500ms\"");
    wait_for("the process ready", || ready_pids(&srv.stderr()).len() == 1);
    let first = ready_pids(&srv.stderr())[0];
    let mut c = srv.connect();
    send_id(&mut c, "/sleep?ms=30000", "stuck");
    let r = c.resp();
    assert_eq!(r.status, 504, "{}", r.text());
    wait_for("a new process", || ready_pids(&srv.stderr()).len() == 2);
    assert!(srv
        .stderr()
        .contains(&format!("app web[{first}] kept a request past its timeout")));
    let mut c = srv.connect();
    send_id(&mut c, "/echo", "after");
    assert_eq!(c.resp().status, 200);
}

/// SIGTERM while the app is answering: the request is finished, then the app is stopped.
fn shutdown_finishes_the_request_at_the_app_then_stops_it(engine: &[&str]) {
    let (mut srv, log) = one_process(engine, "shutdown", "", "");
    wait_for("the process ready", || ready_pids(&srv.stderr()).len() == 1);
    let pid = ready_pids(&srv.stderr())[0];
    let mut c = srv.connect();
    send_id(&mut c, "/sleep?ms=800", "inflight");
    wait_for("the request at the app", || arrivals(&log, "inflight") == 1);
    srv.signal(libc::SIGTERM);
    let r = c.resp();
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(srv.wait_exit(LIMIT).is_some_and(|s| s.success()));
    assert!(!alive(pid), "the app outlived ringshard");
}

/// `max_requests`: after 3 requests a process is recycled, its replacement ready before it
/// leaves, and no request of a steady stream fails.
fn a_process_is_recycled_by_request_count(engine: &[&str]) {
    let (srv, _log) = one_process(engine, "recycle-count", "", "max_requests = 3");
    wait_for("the process ready", || ready_pids(&srv.stderr()).len() == 1);
    let first = ready_pids(&srv.stderr())[0];
    let mut c = srv.connect();
    for i in 0..12 {
        send_id(&mut c, "/echo", &format!("n{i}"));
        let r = c.resp();
        assert_eq!(r.status, 200, "request {i}: {}", r.text());
    }
    wait_for("the first process recycled", || {
        srv.stderr().contains(&format!("app web[{first}] recycled"))
    });
    let log = srv.stderr();
    assert!(
        log.contains(&format!("app web[{first}] is recycled after 3 requests")),
        "{log}"
    );
    assert!(ready_pids(&log).len() >= 3, "{log}");
    assert!(!alive(first));
}

/// `max_memory`: a process that grows past it is recycled the same way.
fn a_process_is_recycled_by_memory(engine: &[&str]) {
    let (srv, _log) = one_process(engine, "recycle-memory", "", "max_memory = \"80m\"");
    wait_for("the process ready", || ready_pids(&srv.stderr()).len() == 1);
    let first = ready_pids(&srv.stderr())[0];
    assert_eq!(get_status(&srv, "/grow?mb=120").0, 200);
    wait_for("the grown process recycled", || {
        srv.stderr().contains(&format!("app web[{first}] recycled"))
    });
    assert!(srv
        .stderr()
        .contains(&format!("app web[{first}] is recycled at ")));
    assert_eq!(get_status(&srv, "/echo").0, 200);
}

per_engine! {
    fewer_processes_than_shards_share_an_exact_limit,
    a_shared_queue_is_bounded_timed_and_left_by_clients_who_go,
    a_process_is_recycled_by_request_count,
    a_process_is_recycled_by_memory,
    a_killed_process_is_replaced_with_its_children,
    a_crash_loop_is_given_up_with_503,
    a_port_app_is_reached_on_its_port,
    a_request_waits_for_a_starting_process,
    the_queue_is_bounded_timed_and_left_by_clients_who_go,
    a_stuck_process_is_replaced,
    shutdown_finishes_the_request_at_the_app_then_stops_it,
}
