//! `ringshard serve --config FILE`, `--static DIR` and `ringshard check-config FILE`, with real
//! files and a real directory tree.
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// A fresh directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ringshard-config-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("site/sub")).unwrap();
    std::fs::write(dir.join("site/index.txt"), b"the site").unwrap();
    std::fs::write(dir.join("site/sub/page.txt"), b"a page").unwrap();
    dir
}

fn check_config(file: &Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ringshard"))
        .args(["check-config"])
        .arg(file)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_config_names_the_file_line_and_key_of_every_error() {
    let dir = scratch("errors");
    let file = dir.join("bad.toml");
    std::fs::write(
        &file,
        "[server]\nshards = \"two\"\nport = 8\n\n[limits]\nmax_headers = 0\n\n[timeouts]\nheader = \"soon\"\n\n[[route]]\nprefix = \"/\"\nstatic = \"/nonexistent/dir\"\n",
    )
    .unwrap();
    let (code, _, err) = check_config(&file);
    assert_ne!(code, 0, "{err}");
    let name = file.display().to_string();
    for want in [
        format!("{name}:2: server.shards: expected a whole number"),
        format!("{name}:3: server.port: unknown key"),
        format!("{name}:9: timeouts.header: "),
        format!("{name}:13: route[0].static: '/nonexistent/dir' is not a directory"),
    ] {
        assert!(err.contains(&want), "missing {want:?} in:\n{err}");
    }
    // A value every flag check passes but the whole configuration refuses, pointed at its line.
    std::fs::write(&file, "[limits]\nmax_headers = 0\n").unwrap();
    let (code, _, err) = check_config(&file);
    assert_ne!(code, 0);
    assert!(
        err.contains(&format!(
            "{name}:2: limits.max_headers: --max-headers must be between 1"
        )),
        "{err}"
    );
    // A syntax error stops at the first, with its line.
    std::fs::write(&file, "[server]\nshards = 2\nlisten =\n").unwrap();
    let (code, _, err) = check_config(&file);
    assert_ne!(code, 0);
    assert!(err.contains(&format!("{name}:3: ")), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_example_configuration_checks_and_prints_what_it_sets() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/example-site.toml");
    let (code, out, err) = check_config(&example);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("shards: 2"), "{out}");
    assert!(out.contains("health: /healthz"), "{out}");
    assert!(out.contains("metrics: off"), "{out}");
    assert!(out.contains("route 0: /static/ -> files of "), "{out}");
    assert!(
        out.contains("route 1: /api/ -> proxy to 127.0.0.1:3000 (RoundRobin, 2 tries"),
        "{out}"
    );
    assert!(out.contains("route 2: / -> the built-in routes"), "{out}");
}

fn a_configured_site_serves_its_routes_and_nothing_else(engine: &[&str]) {
    let dir = scratch(&format!("site-{}", engine.join("")));
    let file = dir.join("site.toml");
    std::fs::write(
        &file,
        format!(
            "[server]\nshards = 2\n\n[health]\npath = \"/up\"\n\n[metrics]\nenabled = false\n\n[[route]]\nprefix = \"/files/\"\nstatic = \"{}\"\n",
            dir.join("site").display()
        ),
    )
    .unwrap();
    // The command line overrides the file: one shard, not two.
    let cfg = file.to_str().unwrap();
    let srv = Server::start(engine, &["--config", cfg, "--shards", "1"]);
    assert!(srv.stderr().contains("(1 shards)"), "{}", srv.stderr());
    let mut c = srv.connect();
    let mut fetch = |path: &str| {
        c.send(&get(path));
        c.resp()
    };
    assert_eq!(fetch("/files/index.txt").body, b"the site");
    assert_eq!(fetch("/files/sub/page.txt").body, b"a page");
    assert_eq!(fetch("/up").status, 200);
    for gone in ["/", "/json", "/health", "/metrics", "/files/nope"] {
        assert_eq!(fetch(gone).status, 404, "{gone}");
    }
    drop(srv);
    let _ = std::fs::remove_dir_all(&dir);
}

fn static_dir_serves_a_directory_at_the_root(engine: &[&str]) {
    let dir = scratch(&format!("static-{}", engine.join("")));
    let site = dir.join("site");
    let srv = Server::start(
        engine,
        &["--shards", "1", "--static", site.to_str().unwrap()],
    );
    let mut c = srv.connect();
    c.send(&get("/sub/page.txt"));
    assert_eq!(c.resp().body, b"a page");
    c.send(&get("/health"));
    assert_eq!(c.resp().status, 200);
    c.send(&get("/json"));
    assert_eq!(c.resp().status, 404, "the demo routes are gone");
    drop(srv);
    let _ = std::fs::remove_dir_all(&dir);
}

fn metrics_on_a_listener_of_their_own_answer_only_there(engine: &[&str]) {
    let dir = scratch(&format!("private-{}", engine.join("")));
    let file = dir.join("site.toml");
    std::fs::write(
        &file,
        "[server]\nshards = 1\n\n[metrics]\nlisten = \"127.0.0.1:0\"\n\n[[route]]\nprefix = \"/\"\nbuiltin = true\n",
    )
    .unwrap();
    let srv = Server::start(engine, &["--config", file.to_str().unwrap()]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let private: std::net::SocketAddr = loop {
        let err = srv.stderr();
        if let Some(a) = err.split("also listening on http://").nth(1) {
            break a.split_whitespace().next().unwrap().parse().unwrap();
        }
        assert!(std::time::Instant::now() < deadline, "{err}");
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    let fetch = |addr: std::net::SocketAddr, path: &str| {
        let mut c = Client::connect(addr);
        c.send(&get(path));
        c.resp()
    };
    assert_eq!(
        fetch(srv.addr, "/metrics").status,
        404,
        "not on the public listener"
    );
    assert_eq!(fetch(srv.addr, "/health").status, 200);
    assert_eq!(fetch(srv.addr, "/").status, 200);
    let m = fetch(private, "/metrics");
    assert_eq!(m.status, 200);
    assert!(
        m.text().contains("ringshard_requests_total"),
        "{}",
        m.text()
    );
    for other in ["/", "/health", "/json"] {
        assert_eq!(
            fetch(private, other).status,
            404,
            "{other} on the metrics listener"
        );
    }
    drop(srv);
    // The site's own address cannot be the metrics' too.
    std::fs::write(
        &file,
        "[server]\nlisten = \"127.0.0.1:9199\"\n[metrics]\nlisten = \"127.0.0.1:9199\"\n",
    )
    .unwrap();
    let (code, _, err) = check_config(&file);
    assert_ne!(code, 0);
    assert!(err.contains("is where the site listens"), "{err}");
    std::fs::write(&file, "[metrics]\nlisten = \"127.0.0.1:9100\"\n").unwrap();
    let (code, out, err) = check_config(&file);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("metrics: /metrics on http://127.0.0.1:9100 only"),
        "{out}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

per_engine! {
    a_configured_site_serves_its_routes_and_nothing_else,
    static_dir_serves_a_directory_at_the_root,
    metrics_on_a_listener_of_their_own_answer_only_there,
}

#[test]
fn bad_combinations_are_refused_with_one_line() {
    let dir = scratch("refused");
    let file = dir.join("ok.toml");
    std::fs::write(&file, "[server]\nshards = 1\n").unwrap();
    for (args, want) in [
        (
            vec!["--config", file.to_str().unwrap(), "--static", "/tmp"],
            "cannot be used with",
        ),
        (vec!["--static", "/nonexistent/dir"], "not a directory"),
        (vec!["--config", "/nonexistent/site.toml"], "cannot read"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_ringshard"))
            .arg("serve")
            .args(["--listen", "127.0.0.1:0"])
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_ne!(out.status.code(), Some(0), "{args:?}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
