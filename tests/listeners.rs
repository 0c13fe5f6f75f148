//! Several listeners per server, unix sockets, and systemd socket activation, over real
//! sockets on every engine.
mod common;

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

/// One request over a unix socket; the whole answer.
fn over_unix(path: &Path, request: &[u8]) -> String {
    let mut s = UnixStream::connect(path).expect("connect to the unix socket");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

const CLOSE: &[u8] = b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

/// The addresses a server says it also listens on (the lines after the first: waited for).
fn also_listening(srv: &Server, n: usize) -> Vec<String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while srv.stderr().matches("also listening on ").count() < n {
        assert!(std::time::Instant::now() < deadline, "{}", srv.stderr());
        std::thread::sleep(Duration::from_millis(10));
    }
    srv.stderr()
        .lines()
        .filter_map(|l| l.split("also listening on ").nth(1))
        .map(str::to_string)
        .collect()
}

fn several_tcp_and_unix_listeners_serve_alike(engine: &[&str]) {
    let dir = scratch_dir("listen", "several", engine);
    let sock = dir.join("rs.sock");
    let unix = format!("unix:{}", sock.display());
    let mut srv = Server::start(
        engine,
        &[
            "--shards",
            "2",
            "--listen",
            "127.0.0.1:0",
            "--listen",
            &unix,
            "--unix-mode",
            "600",
        ],
    );
    let also = also_listening(&srv, 2);
    assert_eq!(also.len(), 2, "{}", srv.stderr());
    let second: std::net::SocketAddr = also[0].trim_start_matches("http://").parse().unwrap();
    assert_ne!(second, srv.addr);
    assert_eq!(also[1], unix);
    for addr in [srv.addr, second] {
        let mut c = Client::connect(addr);
        c.send(&get("/health"));
        assert_eq!(c.resp().status, 200, "{addr}");
    }
    // Many connections over the unix socket: every shard's accept takes from it.
    for _ in 0..20 {
        let answer = over_unix(&sock, CLOSE);
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    srv.signal(libc::SIGTERM);
    assert!(srv.wait_exit(Duration::from_secs(20)).unwrap().success());
    assert!(!sock.exists(), "the unix socket is removed at shutdown");
    let _ = std::fs::remove_dir_all(&dir);
}

fn a_stale_unix_socket_is_replaced_and_a_live_one_refused(engine: &[&str]) {
    let dir = scratch_dir("listen", "stale", engine);
    let sock = dir.join("rs.sock");
    drop(UnixListener::bind(&sock).unwrap()); // a file left by a process that is gone
    assert!(sock.exists());
    let unix = format!("unix:{}", sock.display());
    let srv = Server::start(engine, &["--shards", "1", "--listen", &unix]);
    assert!(over_unix(&sock, CLOSE).starts_with("HTTP/1.1 200 OK"));
    // A second server on the same path is refused, and the first keeps its socket.
    let out = Command::new(env!("CARGO_BIN_EXE_ringshard"))
        .args(["serve", "--shards", "1", "--listen", &unix])
        .args(engine)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "cannot listen on {unix}: another program listens there"
        )),
        "{err}"
    );
    assert!(over_unix(&sock, CLOSE).starts_with("HTTP/1.1 200 OK"));
    drop(srv);
    let _ = std::fs::remove_dir_all(&dir);
}

fn socket_activation_serves_the_sockets_systemd_passed(engine: &[&str]) {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let dir = scratch_dir("listen", "activation", engine);
    let sock = dir.join("activated.sock");
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let unix = UnixListener::bind(&sock).unwrap();
    let (t, u) = (tcp.as_raw_fd(), unix.as_raw_fd());
    // As systemd does: the sockets as descriptors 3 and 4, LISTEN_PID the service's own pid
    // (the shell's, which exec keeps).
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("LISTEN_PID=$$ exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_ringshard"))
        .args(["serve", "--shards", "2"])
        .args(engine)
        .env("LISTEN_FDS", "2")
        .env("LISTEN_FDNAMES", "web:local");
    // SAFETY: between fork and exec only fcntl and dup2 run, which are async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            // Out of the way first: either socket may itself be descriptor 3 or 4.
            let high = [t, u].map(|fd| libc::fcntl(fd, libc::F_DUPFD, 100));
            for (from, to) in [(high[0], 3), (high[1], 4)] {
                if from < 0 || libc::dup2(from, to) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let srv = Server::spawn(cmd);
    assert_eq!(srv.addr, tcp.local_addr().unwrap(), "{}", srv.stderr());
    assert_eq!(also_listening(&srv, 1), ["fd 4 (local, from systemd)"]);
    drop((tcp, unix)); // the server holds its own copies
    for _ in 0..20 {
        let mut c = srv.connect();
        c.send(CLOSE);
        assert_eq!(c.resp().status, 200);
        assert!(over_unix(&sock, CLOSE).starts_with("HTTP/1.1 200 OK"));
    }
    drop(srv);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Bad listeners and a log that cannot be opened stop the start with one line naming the problem.
#[test]
fn bad_listeners_are_refused_with_one_line() {
    let refused = |args: &[&str], env: &[(&str, &str)], want: &str| {
        let out = Command::new("sh")
            .arg("-c")
            .arg("LISTEN_PID=$$ exec \"$0\" \"$@\"")
            .arg(env!("CARGO_BIN_EXE_ringshard"))
            .arg("serve")
            .args(args)
            .envs(env.iter().copied())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} started");
        assert!(err.contains(want), "{args:?}: {want:?} not in {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    };
    refused(
        &["--listen", "nope:xx"],
        &[],
        "--listen nope:xx: not an address",
    );
    refused(&["--listen", "unix:"], &[], "--listen unix: needs a path");
    refused(
        &["--listen", "unix:/nonexistent-dir/s.sock"],
        &[],
        "cannot listen on unix:/nonexistent-dir/s.sock: No such file or directory",
    );
    refused(&["--unix-mode", "999"], &[], "'999' is not an octal mode");
    refused(
        &["--access-log", "/nonexistent-dir/a.log"],
        &[],
        "--access-log /nonexistent-dir/a.log: cannot open it for appending",
    );
    refused(&[], &[("LISTEN_FDS", "zz")], "LISTEN_FDS=zz: not a number");
    // Descriptor 3 is not a listening socket here.
    refused(&[], &[("LISTEN_FDS", "1")], "LISTEN_FDS: descriptor 3");
}

per_engine! {
    several_tcp_and_unix_listeners_serve_alike,
    a_stale_unix_socket_is_replaced_and_a_live_one_refused,
    socket_activation_serves_the_sockets_systemd_passed,
}
