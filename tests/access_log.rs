//! The access log over real sockets, on every engine: one line per request, none lost at
//! shutdown, both formats, reopened after logrotate's rename.
mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

fn lines(file: &Path) -> Vec<String> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Waits until `file` holds `n` lines (lines reach the file at least once a second).
fn wait_for_lines(file: &Path, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = lines(file);
        if got.len() >= n || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends `n` requests spread over three keep-alive connections; returns them in order sent.
fn send_requests(srv: &Server, n: usize) -> Vec<String> {
    let mut clients: Vec<Client> = (0..3).map(|_| srv.connect()).collect();
    let mut sent = Vec::new();
    for i in 0..n {
        let path = match i % 3 {
            0 => "/health".to_string(),
            1 => format!("/nope/{i}"),
            _ => "/plaintext".to_string(),
        };
        let c = &mut clients[i % 3];
        c.send(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nUser-Agent: test \"agent\"\r\nReferer: http://r.example/\r\n\r\n")
                .as_bytes(),
        );
        c.resp();
        sent.push(path);
    }
    sent
}

fn stop(mut srv: Server) {
    srv.signal(libc::SIGTERM);
    let status = srv
        .wait_exit(Duration::from_secs(20))
        .expect("the server exits");
    assert!(status.success(), "exit {status:?}");
}

fn every_request_gets_one_line_and_none_is_lost_at_shutdown(engine: &[&str]) {
    let dir = scratch_dir("log", "count", engine);
    let file = dir.join("access.log");
    let srv = Server::start(
        engine,
        &["--shards", "2", "--access-log", file.to_str().unwrap()],
    );
    let sent = send_requests(&srv, 300);
    // Stopped at once: whatever is still buffered is written before the process exits.
    stop(srv);
    let got = lines(&file);
    assert_eq!(got.len(), sent.len(), "one line per request");
    for path in &sent {
        let want = format!("\"GET {path} HTTP/1.1\"");
        assert!(got.iter().any(|l| l.contains(&want)), "no line for {path}");
    }
    let health = got.iter().find(|l| l.contains("/health")).unwrap();
    assert!(health.starts_with("127.0.0.1 - - ["), "{health}");
    assert!(
        health.ends_with(
            "\"GET /health HTTP/1.1\" 200 3 \"http://r.example/\" \"test \\x22agent\\x22\""
        ),
        "{health}"
    );
    assert!(got.iter().any(|l| l.contains("/nope/1 HTTP/1.1\" 404 ")));
    let _ = std::fs::remove_dir_all(&dir);
}

fn json_lines_hold_the_same_fields(engine: &[&str]) {
    let dir = scratch_dir("log", "json", engine);
    let file = dir.join("access.json");
    let srv = Server::start(
        engine,
        &[
            "--shards",
            "1",
            "--access-log",
            file.to_str().unwrap(),
            "--access-log-format",
            "json",
        ],
    );
    send_requests(&srv, 3);
    // A request refused before its line could be read is logged too, without one.
    let mut c = srv.connect();
    c.send(b"GARBAGE\r\n\r\n");
    assert_eq!(c.resp().status, 400);
    stop(srv);
    let got = lines(&file);
    assert_eq!(got.len(), 4, "{got:?}");
    let l = &got[0];
    assert!(l.starts_with("{\"time\":\"20"), "{l}");
    for want in [
        "\"remote_addr\":\"127.0.0.1\"",
        "\"method\":\"GET\",\"uri\":\"/health\",\"protocol\":\"HTTP/1.1\",\"status\":200,\"bytes\":3",
        "\"referer\":\"http://r.example/\",\"user_agent\":\"test \\\"agent\\\"\"}",
    ] {
        assert!(l.contains(want), "{want} not in {l}");
    }
    assert!(
        got[3].contains("\"method\":null,\"uri\":null"),
        "{}",
        got[3]
    );
    assert!(got[3].contains("\"status\":400"), "{}", got[3]);
    let _ = std::fs::remove_dir_all(&dir);
}

fn sigusr1_reopens_the_log_after_a_rename(engine: &[&str]) {
    let dir = scratch_dir("log", "reopen", engine);
    let file = dir.join("access.log");
    let rotated = dir.join("access.log.1");
    let srv = Server::start(
        engine,
        &["--shards", "2", "--access-log", file.to_str().unwrap()],
    );
    send_requests(&srv, 30);
    assert_eq!(
        wait_for_lines(&file, 30).len(),
        30,
        "written within a second or so"
    );
    std::fs::rename(&file, &rotated).unwrap();
    srv.signal(libc::SIGUSR1);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !srv.stderr().contains("SIGUSR1: reopened") {
        assert!(Instant::now() < deadline, "no reopen: {}", srv.stderr());
        std::thread::sleep(Duration::from_millis(20));
    }
    send_requests(&srv, 12);
    stop(srv);
    assert_eq!(lines(&rotated).len(), 30, "the old file keeps its lines");
    assert_eq!(lines(&file).len(), 12, "new lines go to the new file");
    let _ = std::fs::remove_dir_all(&dir);
}

per_engine! {
    every_request_gets_one_line_and_none_is_lost_at_shutdown,
    json_lines_hold_the_same_fields,
    sigusr1_reopens_the_log_after_a_rename,
}
