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

/// The pids the log says became ready, in order.
fn ready_pids(log: &str) -> Vec<i32> {
    log.lines()
        .filter(|l| l.starts_with("ringshard: app ") && l.contains("] ready ("))
        .filter_map(|l| l.split('[').nth(1)?.split(']').next()?.parse().ok())
        .collect()
}

fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + LIMIT;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn alive(pid: i32) -> bool {
    // A zombie is gone for this purpose: its state is Z.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit(')')
            .next()
            .is_some_and(|r| !r.trim_start().starts_with('Z'))
    })
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
    let srv = Server::start(engine, &["--config", file.to_str().unwrap()]);
    wait_for("the pool to give up", || {
        srv.stderr()
            .contains("app flaky: 4 exits within 60s; not starting it again")
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

per_engine! {
    a_killed_process_is_replaced_with_its_children,
    a_crash_loop_is_given_up_with_503,
    a_port_app_is_reached_on_its_port,
}
