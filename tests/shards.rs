//! Shards, listeners and the command line: several shards serving at once, an IPv6 listener,
//! and flags refused at start-up. The server tests run once per engine
//! (`common::per_engine!`).
mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn several_shards_serve_at_once(engine: &[&str]) {
    let srv = Server::start(engine, &["--shards", "3"]);
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
    // ... and they did spread: SO_REUSEPORT hashes each connection's address and port to one
    // shard's listener, so each of the 168 connections (6 x 8 kept, 6 x 20 short-lived, each
    // from its own port) lands on a given shard with probability 1/3. A shard left without any
    // has probability at most 3 x (2/3)^168, about 1e-29: this cannot flake, while a server
    // that accepted everything on one shard (one listener, or shards that never accept) fails.
    let page = srv.metrics();
    let accepted: Vec<u64> = (0..3)
        .map(|shard| shard_metric(&page, "connections_accepted_total", shard))
        .collect();
    assert!(
        accepted.iter().all(|&n| n > 0),
        "connections accepted per shard: {accepted:?}; the 168 connections did not spread \
         over the 3 shards"
    );
    assert!(
        accepted.iter().sum::<u64>() >= 168,
        "connections accepted per shard: {accepted:?}, fewer than the 168 opened"
    );
}

fn ipv6_listen(engine: &[&str]) {
    let srv = Server::start_on("[::1]:0", engine, &["--shards", "1"]);
    assert!(srv.addr.is_ipv6(), "{}", srv.addr);
    let mut c = srv.connect();
    c.send(&get("/"));
    assert_eq!(c.resp().status, 200);
}

/// CPUs this process may run on (its affinity mask, as the server reads it).
fn allowed_cpus() -> usize {
    core_affinity::get_core_ids().map_or(0, |ids| ids.len())
}

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

per_engine! {
    several_shards_serve_at_once,
    #[cfg_attr(no_ipv6, ignore = "this machine has no IPv6 loopback (build.rs could not bind [::1]:0)")]
    ipv6_listen,
}
