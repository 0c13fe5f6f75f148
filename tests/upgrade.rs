//! Zero-downtime upgrade: `ringshard upgrade --pid-file` (SIGUSR2) starts a new process that
//! takes over the very listening sockets (TCP, one per shard, and unix), says READY=1 with its
//! MAINPID after RELOADING=1, and rewrites the pid file; the old process answers the next
//! request of an idle keep-alive connection with `Connection: close` instead of closing it
//! under its client, then exits 0 and leaves the unix socket file to the new one. A new binary
//! that exits at once, or that is missing, leaves the old process serving; an app pool is
//! started anew by the new process and stopped with the old. Both engines.
mod common;

use std::io::{Read, Write};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

/// A process the test did not spawn (the upgrade's new server): stopped when the test ends.
struct Adopted(u32);

impl Drop for Adopted {
    fn drop(&mut self) {
        // SAFETY: kill(2) on a pid; it may be gone already, which is no error here.
        unsafe { libc::kill(self.0 as i32, libc::SIGKILL) };
    }
}

fn read_pid(file: &Path) -> u32 {
    std::fs::read_to_string(file)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn upgrade_cli(pid_file: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ringshard"))
        .args(["upgrade", "--timeout", "60s", "--pid-file"])
        .arg(pid_file)
        .output()
        .unwrap()
}

/// `ringshard upgrade` that must succeed: the new pid (stopped when the guard goes) and what
/// the command printed.
fn upgrade_ok(pid_file: &Path) -> (u32, Adopted, String) {
    let out = upgrade_cli(pid_file);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let new = read_pid(pid_file);
    (
        new,
        Adopted(new),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Waits until the server's log says `what`.
fn wait_log(srv: &Server, what: &str) {
    wait_until(what, Duration::from_secs(10), || {
        srv.stderr().contains(what)
    });
}

/// Waits for process `pid` to exit (it is not the test's child: polled).
fn wait_gone(pid: u32) {
    wait_until(
        &format!("pid {pid} to exit"),
        Duration::from_secs(20),
        || !alive(pid as i32),
    );
}

/// GET /plaintext over the unix socket at `path`: the status line.
fn unix_get(path: &Path) -> String {
    let mut s = UnixStream::connect(path).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /plaintext HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.lines().next().unwrap_or("").to_string()
}

fn an_upgrade_hands_over_every_listener(engine: &[&str]) {
    let dir = scratch_dir("upgrade", "hand-over", engine);
    let (pid_file, unix, notify) = (dir.join("pid"), dir.join("s.sock"), dir.join("notify"));
    let sock = UnixDatagram::bind(&notify).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ringshard"));
    cmd.arg("serve")
        .args(["--listen", "127.0.0.1:0", "--shards", "2", "--listen"])
        .arg(format!("unix:{}", unix.display()))
        .arg("--pid-file")
        .arg(&pid_file)
        .args(engine)
        .env("NOTIFY_SOCKET", &notify);
    let mut srv = Server::spawn(cmd);
    let old = srv.pid() as u32;
    let mut idle = srv.connect();
    idle.send(b"GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(idle.resp().status, 200);

    let (new, _new_guard, said) = upgrade_ok(&pid_file);
    assert_ne!(new, old);
    assert!(said.contains(&format!("pid {new} serves")), "{said}");

    // systemd hears of the reload, then of the new main process.
    let mut said: Vec<String> = Vec::new();
    let mut buf = [0u8; 4096];
    while said.iter().filter(|m| m.contains("READY=1")).count() < 2 {
        let n = sock.recv(&mut buf).expect("no READY=1 after the upgrade");
        let m = String::from_utf8_lossy(&buf[..n]).into_owned();
        if m.contains("RELOADING=1") || m.contains("READY=1") {
            said.push(m);
        }
    }
    assert!(said[0].contains(&format!("MAINPID={old}")), "{said:?}");
    assert!(said[1].contains("RELOADING=1"), "{said:?}");
    assert!(said[2].contains(&format!("MAINPID={new}")), "{said:?}");

    // The old process, once it has seen the new one ready, answers the idle connection's
    // next request, saying it closes (and that it drains).
    wait_log(&srv, &format!("upgrade: pid {new} serves"));
    idle.send(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    let r = idle.resp();
    assert_eq!((r.status, r.text().as_str()), (503, "draining\n"));
    assert!(r.is_close(), "{}", r.head);
    idle.expect_eof();
    let status = srv
        .wait_exit(Duration::from_secs(20))
        .expect("the old process did not exit");
    assert!(status.success(), "{status:?}");

    // The same sockets, served by the new process only.
    for _ in 0..20 {
        let mut c = srv.connect();
        c.send(b"GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(c.resp().status, 200);
    }
    assert!(
        unix.exists(),
        "the old process removed the new one's unix socket"
    );
    assert_eq!(unix_get(&unix), "HTTP/1.1 200 OK");
    assert!(alive(new as i32));

    // The new process upgrades in turn (its own pid file, its own sockets).
    let (third, _third_guard, _) = upgrade_ok(&pid_file);
    assert!(third != new && alive(third as i32));
    wait_gone(new);
    let mut c = srv.connect();
    c.send(b"GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(c.resp().status, 200);
    assert_eq!(unix_get(&unix), "HTTP/1.1 200 OK");
    signal(third as i32, libc::SIGTERM);
    wait_gone(third);
    assert!(!unix.exists(), "the last process left its unix socket file");
}

fn a_failed_upgrade_leaves_the_old_process_serving(engine: &[&str]) {
    let dir = scratch_dir("upgrade", "failed", engine);
    let pid_file = dir.join("pid");
    let broken = dir.join("broken-ringshard");
    std::fs::write(&broken, "#!/bin/sh\necho 'broken build' >&2\nexit 3\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&broken, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ringshard"));
    cmd.arg("serve")
        .args(["--listen", "127.0.0.1:0", "--shards", "2", "--binary"])
        .arg(&broken)
        .arg("--pid-file")
        .arg(&pid_file)
        .args(engine);
    let srv = Server::spawn(cmd);
    let mut kept = srv.connect();
    kept.send(b"GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(kept.resp().status, 200);
    let out = upgrade_cli(&pid_file);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("still serves"));
    assert_eq!(read_pid(&pid_file), srv.pid() as u32);
    let log = srv.stderr();
    assert!(
        log.contains("upgrade failed: the new process") && log.contains("exit status: 3"),
        "{log}"
    );
    // Still serving, on the open connection and on new ones, and /health says so.
    kept.send(b"GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n");
    let r = kept.resp();
    assert_eq!(r.status, 200);
    assert!(!r.is_close());
    let mut c = srv.connect();
    c.send(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(c.resp().status, 200);
    // A binary that is not there: the same.
    std::fs::remove_file(&broken).unwrap();
    let out = upgrade_cli(&pid_file);
    assert_eq!(out.status.code(), Some(1));
    wait_log(&srv, "cannot upgrade: cannot start");
    let mut c = srv.connect();
    c.send(b"GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(c.resp().status, 200);
}

/// A server socket-activated (a TCP socket as descriptor 3, as systemd passes it) and with a
/// TCP listener of its own, upgraded twice while its configuration changes the shard count: 2,
/// then 1 (one shard accepts from both sockets of the group: none is closed), then 3 (the third
/// shard's socket joins the group). Every connection on either listener is served throughout.
fn an_upgrade_keeps_activated_sockets_and_may_change_the_shard_count(engine: &[&str]) {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let dir = scratch_dir("upgrade", "shards", engine);
    let (pid_file, config) = (dir.join("pid"), dir.join("site.toml"));
    let write_config = |shards: usize| {
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nshards = {shards}\npid_file = \"{}\"\n\
             [health]\npath = \"/health\"\n",
            pid_file.display()
        );
        std::fs::write(&config, text).unwrap();
    };
    write_config(2);
    let activated = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (fd, activated_addr) = (activated.as_raw_fd(), activated.local_addr().unwrap());
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("LISTEN_PID=$$ exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_ringshard"))
        .args(["serve", "--config"])
        .arg(&config)
        .args(engine)
        .env("LISTEN_FDS", "1");
    // SAFETY: between fork and exec only fcntl and dup2 run, which are async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            let high = libc::fcntl(fd, libc::F_DUPFD, 100);
            if high < 0 || libc::dup2(high, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut srv = Server::spawn(cmd);
    drop(activated);
    let own_addr = srv.addr;
    let served_everywhere = || {
        for _ in 0..30 {
            for addr in [own_addr, activated_addr] {
                let mut c = Client::connect(addr);
                c.send(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
                assert_eq!(c.resp().status, 200, "on {addr}");
            }
        }
    };
    served_everywhere();
    let mut guards = Vec::new();
    let mut previous = srv.pid() as u32;
    for shards in [1, 3] {
        write_config(shards);
        let (new, guard, _) = upgrade_ok(&pid_file);
        guards.push(guard);
        match previous == srv.pid() as u32 {
            true => assert!(srv.wait_exit(Duration::from_secs(20)).is_some()),
            false => wait_gone(previous),
        }
        let log = srv.stderr();
        assert!(log.contains(&format!("({shards} shards)")), "{log}");
        served_everywhere();
        previous = new;
    }
    signal(previous as i32, libc::SIGTERM);
    wait_gone(previous);
}

/// An app pool across an upgrade: the new process starts its own app processes and says it is
/// ready only once they accept; the old one's are stopped when it exits; requests are answered
/// throughout; and the new process's apps stop on SIGTERM when it does (they do not inherit the
/// server's blocked signals).
fn an_upgrade_brings_its_own_app_processes(engine: &[&str]) {
    let dir = scratch_dir("upgrade", "app", engine);
    let (pid_file, config, log) = (dir.join("pid"), dir.join("site.toml"), dir.join("app.log"));
    let app = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/proxy_app.py");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nshards = 2\npid_file = \"{}\"\n\n\
             [app.web]\ncommand = 'exec python3 {} --unix \"$RINGSHARD_SOCKET\" --log {}'\n\
             processes = 2\ngrace = \"20s\"\n\n[[route]]\nprefix = \"/\"\napp = \"web\"\n",
            pid_file.display(),
            app.display(),
            log.display()
        ),
    )
    .unwrap();
    let mut srv = Server::start_on(
        "127.0.0.1:0",
        engine,
        &["--config", config.to_str().unwrap()],
    );
    wait_until("two app processes ready", Duration::from_secs(20), || {
        ready_pids(&srv.stderr()).len() == 2
    });
    let old_apps = ready_pids(&srv.stderr());
    let mut c = srv.connect();
    c.send(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(c.resp().status, 200);
    drop(c);

    let (new, _guard, _) = upgrade_ok(&pid_file);
    // Ready was said after the new apps accepted: both are in the log already.
    let new_apps: Vec<i32> = ready_pids(&srv.stderr())
        .into_iter()
        .filter(|p| !old_apps.contains(p))
        .collect();
    assert_eq!(new_apps.len(), 2, "{}", srv.stderr());
    for _ in 0..20 {
        let mut c = srv.connect();
        c.send(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(c.resp().status, 200);
    }
    assert!(srv
        .wait_exit(Duration::from_secs(20))
        .is_some_and(|s| s.success()));
    wait_until(
        "the old process's apps to go with it",
        Duration::from_secs(10),
        || !old_apps.iter().any(|&p| alive(p)),
    );
    assert!(new_apps.iter().all(|&p| alive(p)));
    // SIGTERM to the new server: its apps get SIGTERM and go well before their 20 s grace.
    signal(new as i32, libc::SIGTERM);
    wait_until(
        "the new process's apps to stop on SIGTERM",
        Duration::from_secs(10),
        || !new_apps.iter().any(|&p| alive(p)) && !alive(new as i32),
    );
}

per_engine! {
    an_upgrade_brings_its_own_app_processes,
    an_upgrade_keeps_activated_sockets_and_may_change_the_shard_count,
    an_upgrade_hands_over_every_listener,
    a_failed_upgrade_leaves_the_old_process_serving,
}

/// `ringshard upgrade` with a pid file that is missing, or holds no pid: one line naming it,
/// exit 2, and no signal sent anywhere.
#[test]
fn upgrade_refuses_a_bad_pid_file() {
    let dir = scratch_dir("upgrade", "bad-pid", &[]);
    let missing = dir.join("missing.pid");
    let out = upgrade_cli(&missing);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("--pid-file {}", missing.display())),
        "{err}"
    );
    let garbage = dir.join("garbage.pid");
    std::fs::write(&garbage, "not-a-pid\n").unwrap();
    let out = upgrade_cli(&garbage);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("\"not-a-pid\" is not a pid"), "{err}");
}
