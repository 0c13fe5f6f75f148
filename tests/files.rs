//! Static files over real sockets, from a real directory tree, on every engine: validators,
//! ranges, HEAD, precompressed siblings, large files streamed, a file replaced while cached,
//! and every way a path could try to leave the root.
mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::*;

/// A fresh site for one test: small and large files, a precompressed sibling, symlinks.
fn site(name: &str, engine: &[&str]) -> PathBuf {
    let dir = scratch_dir("files", name, engine);
    std::fs::create_dir_all(dir.join("site/sub")).unwrap();
    std::fs::create_dir_all(dir.join("site/.well-known")).unwrap();
    std::fs::create_dir_all(dir.join("site/.git")).unwrap();
    std::fs::write(dir.join("site/small.txt"), b"0123456789abcdef").unwrap();
    std::fs::write(dir.join("site/big.bin"), big()).unwrap();
    std::fs::write(dir.join("site/app.js"), b"console.log('plain')").unwrap();
    std::fs::write(dir.join("site/app.js.gz"), b"GZIPPED-BYTES").unwrap();
    std::fs::write(dir.join("site/app.js.br"), b"BROTLI-BYTES").unwrap();
    std::fs::write(dir.join("site/.env"), b"SECRET=1").unwrap();
    std::fs::write(dir.join("site/.git/config"), b"secret").unwrap();
    std::fs::write(dir.join("site/.well-known/acme"), b"token").unwrap();
    std::fs::write(dir.join("secret.txt"), b"outside").unwrap();
    std::os::unix::fs::symlink("small.txt", dir.join("site/inside")).unwrap();
    std::os::unix::fs::symlink(dir.join("secret.txt"), dir.join("site/abs")).unwrap();
    std::os::unix::fs::symlink("../secret.txt", dir.join("site/up")).unwrap();
    std::os::unix::fs::symlink("../..", dir.join("site/sub/out")).unwrap();
    dir
}

/// A file larger than the cache keeps in memory, so it is streamed from its descriptor.
fn big() -> Vec<u8> {
    (0..1_100_000u32).map(|i| (i % 251) as u8).collect()
}

/// Serves `dir/site` at `/` with a configuration file whose route has `options`.
fn serve(engine: &[&str], dir: &std::path::Path, options: &str) -> Server {
    let file = dir.join("site.toml");
    std::fs::write(
        &file,
        format!(
            "[server]\nshards = 1\n\n[[route]]\nprefix = \"/\"\nstatic = \"{}\"\n{options}\n",
            dir.join("site").display()
        ),
    )
    .unwrap();
    Server::start(engine, &["--config", file.to_str().unwrap()])
}

fn request(path: &str, fields: &[(&str, &str)]) -> Vec<u8> {
    request_as("GET", path, fields)
}

fn request_as(method: &str, path: &str, fields: &[(&str, &str)]) -> Vec<u8> {
    let mut r = format!("{method} {path} HTTP/1.1\r\nHost: x\r\n");
    for (n, v) in fields {
        r += &format!("{n}: {v}\r\n");
    }
    r += "\r\n";
    r.into_bytes()
}

/// Request fields; the status, `Content-Range` and body they should get.
type Case = (Vec<(&'static str, String)>, u16, Option<String>, Vec<u8>);

fn validators_answer_304_and_ranges_206_or_416(engine: &[&str]) {
    let dir = site("cond", engine);
    let srv = serve(engine, &dir, "cache_control = \"max-age=60\"");
    let mut c = srv.connect();
    for (path, body) in [
        ("/small.txt", b"0123456789abcdef".to_vec()),
        ("/big.bin", big()),
    ] {
        c.send(&request(path, &[]));
        let r = c.resp();
        assert_eq!(r.status, 200, "{path}");
        assert!(r.body == body, "{path}: body differs");
        assert_eq!(r.header("cache-control"), Some("max-age=60"));
        assert_eq!(r.header("accept-ranges"), Some("bytes"));
        let etag = r.header("etag").expect("an ETag").to_string();
        let modified = r
            .header("last-modified")
            .expect("Last-Modified")
            .to_string();
        assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
        let len = body.len();
        let cases: Vec<Case> = vec![
            (vec![("If-None-Match", etag.clone())], 304, None, vec![]),
            (
                vec![("If-None-Match", format!("\"x\", W/{etag}"))],
                304,
                None,
                vec![],
            ),
            (
                vec![("If-None-Match", "\"other\"".into())],
                200,
                None,
                body.clone(),
            ),
            (
                vec![("If-Modified-Since", modified.clone())],
                304,
                None,
                vec![],
            ),
            (
                vec![("If-Modified-Since", "Thu, 01 Jan 1970 00:00:00 GMT".into())],
                200,
                None,
                body.clone(),
            ),
            (
                vec![("Range", "bytes=2-5".into())],
                206,
                Some(format!("bytes 2-5/{len}")),
                body[2..6].to_vec(),
            ),
            (
                vec![("Range", "bytes=-3".into())],
                206,
                Some(format!("bytes {}-{}/{len}", len - 3, len - 1)),
                body[len - 3..].to_vec(),
            ),
            (
                vec![("Range", format!("bytes={}-", len - 4))],
                206,
                Some(format!("bytes {}-{}/{len}", len - 4, len - 1)),
                body[len - 4..].to_vec(),
            ),
            (
                vec![("Range", format!("bytes={len}-"))],
                416,
                Some(format!("bytes */{len}")),
                b"range not satisfiable\n".to_vec(),
            ),
            // Malformed, another unit, several ranges: the whole file.
            (vec![("Range", "bytes=5-2".into())], 200, None, body.clone()),
            (vec![("Range", "bytes=abc".into())], 200, None, body.clone()),
            (vec![("Range", "lines=1-2".into())], 200, None, body.clone()),
            (
                vec![("Range", "bytes=0-1,4-5".into())],
                200,
                None,
                body.clone(),
            ),
            (
                vec![("Range", "bytes=0-3".into()), ("If-Range", etag.clone())],
                206,
                Some(format!("bytes 0-3/{len}")),
                body[..4].to_vec(),
            ),
            (
                vec![
                    ("Range", "bytes=0-3".into()),
                    ("If-Range", "\"old\"".into()),
                ],
                200,
                None,
                body.clone(),
            ),
            (
                vec![
                    ("Range", "bytes=0-3".into()),
                    ("If-Range", modified.clone()),
                ],
                206,
                Some(format!("bytes 0-3/{len}")),
                body[..4].to_vec(),
            ),
        ];
        for (fields, status, range, want) in cases {
            let f: Vec<(&str, &str)> = fields.iter().map(|(n, v)| (*n, v.as_str())).collect();
            c.send(&request(path, &f));
            let r = c.resp();
            assert_eq!(r.status, status, "{path} {fields:?}");
            assert_eq!(
                r.header("content-range"),
                range.as_deref(),
                "{path} {fields:?}"
            );
            assert!(r.body == want, "{path} {fields:?}: body differs");
            if status == 304 {
                assert_eq!(r.header("etag"), Some(etag.as_str()));
                assert_eq!(r.header("content-length"), None);
            }
        }
    }
    drop(srv);
    let _ = std::fs::remove_dir_all(&dir);
}

fn head_gives_the_length_and_no_body(engine: &[&str]) {
    let dir = site("head", engine);
    let srv = serve(engine, &dir, "");
    let mut c = srv.connect();
    for (path, len) in [("/small.txt", 16), ("/big.bin", big().len())] {
        // Twice: the first answer comes from the disk, the second from the cache.
        for _ in 0..2 {
            c.send(&request_as("HEAD", path, &[]));
            let r = c.resp_head();
            assert_eq!(r.status, 200, "{path}");
            assert_eq!(r.header("content-length"), Some(len.to_string().as_str()));
            // The next answer on the connection starts where the head ended: no body was sent.
            c.send(&request("/small.txt", &[]));
            assert_eq!(c.resp().body, b"0123456789abcdef", "{path}");
        }
    }
    c.send(&request_as(
        "POST",
        "/small.txt",
        &[("Content-Length", "0")],
    ));
    let r = c.resp();
    assert_eq!((r.status, r.header("allow")), (405, Some("GET, HEAD")));
    drop(srv);
    let _ = std::fs::remove_dir_all(&dir);
}

fn a_file_replaced_while_cached_is_served_new(engine: &[&str]) {
    let dir = site("replaced", engine);
    let srv = serve(engine, &dir, "cache_valid = \"50ms\"");
    let mut c = srv.connect();
    let mut fetch = |path: &str| {
        c.send(&request(path, &[]));
        c.resp()
    };
    assert_eq!(fetch("/small.txt").body, b"0123456789abcdef");
    // Replaced the way deployments do it: a new file renamed over the old one.
    std::fs::write(dir.join("site/new.tmp"), b"the new version").unwrap();
    std::fs::rename(dir.join("site/new.tmp"), dir.join("site/small.txt")).unwrap();
    // And written in place, the same length.
    let big_before = fetch("/big.bin");
    let mut changed = big();
    changed[..7].copy_from_slice(b"CHANGED");
    std::thread::sleep(Duration::from_millis(20)); // a later modification time
    std::fs::write(dir.join("site/big.bin"), &changed).unwrap();
    std::thread::sleep(Duration::from_millis(200)); // past cache_valid
    assert_eq!(fetch("/small.txt").body, b"the new version");
    let big_after = fetch("/big.bin");
    assert!(
        big_after.body == changed,
        "the changed large file is served"
    );
    assert_ne!(big_before.header("etag"), big_after.header("etag"));
    drop(srv);
    let _ = std::fs::remove_dir_all(&dir);
}

fn precompressed_siblings_are_chosen_by_accept_encoding(engine: &[&str]) {
    let dir = site("coded", engine);
    let srv = serve(engine, &dir, "precompressed = true");
    let mut c = srv.connect();
    for (accept, encoding, body) in [
        (None, None, &b"console.log('plain')"[..]),
        (Some("gzip"), Some("gzip"), b"GZIPPED-BYTES"),
        (Some("gzip, deflate, br, zstd"), Some("br"), b"BROTLI-BYTES"),
        (Some("br;q=0, gzip"), Some("gzip"), b"GZIPPED-BYTES"),
        (Some("zstd"), None, b"console.log('plain')"),
        (Some("identity"), None, b"console.log('plain')"),
    ] {
        let fields: Vec<(&str, &str)> =
            accept.map(|a| ("Accept-Encoding", a)).into_iter().collect();
        // Twice: from the disk, then from the cache.
        for _ in 0..2 {
            c.send(&request("/app.js", &fields));
            let r = c.resp();
            assert_eq!(r.status, 200);
            assert_eq!(r.header("content-encoding"), encoding, "{accept:?}");
            assert_eq!(r.header("vary"), Some("Accept-Encoding"), "{accept:?}");
            assert_eq!(
                r.header("content-type"),
                Some("text/javascript; charset=utf-8")
            );
            assert_eq!(r.body, body, "{accept:?}");
        }
    }
    // A file without siblings is served as it is.
    c.send(&request("/small.txt", &[("Accept-Encoding", "gzip, br")]));
    let r = c.resp();
    assert_eq!(
        (r.header("content-encoding"), r.body.as_slice()),
        (None, &b"0123456789abcdef"[..])
    );
    drop(srv);
    let _ = std::fs::remove_dir_all(&dir);
}

fn no_path_leaves_the_root_or_reaches_a_hidden_file(engine: &[&str]) {
    let dir = site("paths", engine);
    let srv = Server::start(
        engine,
        &[
            "--shards",
            "1",
            "--static",
            dir.join("site").to_str().unwrap(),
        ],
    );
    let mut c = srv.connect();
    let mut fetch = |path: &str| {
        c.send(&request(path, &[]));
        c.resp()
    };
    assert_eq!(
        fetch("/inside").body,
        b"0123456789abcdef",
        "a symlink inside the root"
    );
    assert_eq!(fetch("/.well-known/acme").body, b"token");
    for (path, status) in [
        ("/abs", 403),                // an absolute symlink out of the root
        ("/up", 403),                 // a relative one
        ("/sub/out/secret.txt", 403), // a symlinked directory out of it
        ("/../secret.txt", 404),
        ("/sub/../../secret.txt", 404),
        ("/%2e%2e/secret.txt", 404),
        ("/%2E%2E/secret.txt", 404),
        ("/%252e%252e/secret.txt", 404), // decoded once: a name that does not exist
        ("/..%2fsecret.txt", 400),
        ("/..%5csecret.txt", 400),
        ("/small.txt%00.png", 400),
        ("/%zz", 400),
        ("/.env", 404),
        ("/.git/config", 404),
        ("/sub/.env", 404),
        ("//etc/passwd", 404),
        ("/nope", 404),
    ] {
        let r = fetch(path);
        assert_eq!(r.status, status, "{path}");
        assert!(
            !r.body
                .windows(7)
                .any(|w| w == b"outside" || w == b"SECRET="),
            "{path} leaked"
        );
    }
    // A directory without its slash: a redirect that stays on this host.
    for (path, location) in [("/sub", "/sub/"), ("//sub", "/sub/")] {
        let r = fetch(path);
        assert_eq!(
            (r.status, r.header("location")),
            (301, Some(location)),
            "{path}"
        );
    }
    drop(srv);
    let _ = std::fs::remove_dir_all(&dir);
}

fn a_directory_is_listed_only_where_the_route_asks(engine: &[&str]) {
    let dir = site("listing", engine);
    std::fs::write(dir.join("site/sub/<b>&co.txt"), b"x").unwrap();
    std::fs::write(dir.join("site/sub/.hidden"), b"x").unwrap();
    std::fs::create_dir(dir.join("site/sub/deeper")).unwrap();
    let srv = serve(engine, &dir, "listing = true");
    let mut c = srv.connect();
    c.send(&request("/sub/", &[]));
    let r = c.resp();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    let html = r.text();
    assert!(
        html.contains("<a href=\"./%3Cb%3E%26co.txt\">&lt;b&gt;&amp;co.txt</a> (1 bytes)"),
        "{html}"
    );
    assert!(html.contains("<a href=\"./deeper/\">deeper/</a>"), "{html}");
    assert!(!html.contains("hidden") && !html.contains("<b>"), "{html}");
    // A directory with an index.html is served by it, listing or not.
    std::fs::write(dir.join("site/sub/deeper/index.html"), b"<p>deeper</p>").unwrap();
    c.send(&request("/sub/deeper/", &[]));
    assert_eq!(c.resp().body, b"<p>deeper</p>");
    drop(srv);
    // Off by default: 404.
    let srv = serve(engine, &dir, "");
    let mut c = srv.connect();
    c.send(&request("/sub/", &[]));
    assert_eq!(c.resp().status, 404);
    drop(srv);
    let _ = std::fs::remove_dir_all(&dir);
}

per_engine! {
    a_directory_is_listed_only_where_the_route_asks,
    validators_answer_304_and_ranges_206_or_416,
    head_gives_the_length_and_no_body,
    a_file_replaced_while_cached_is_served_new,
    precompressed_siblings_are_chosen_by_accept_encoding,
    no_path_leaves_the_root_or_reaches_a_hidden_file,
}
