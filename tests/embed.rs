//! In-process tests: `Running::start` with custom handlers, over real loopback sockets.
mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::ValueEnum;
use ringshard::config::{EngineFlag, Listen};
use ringshard::{Body, BodyStream, Reply, Request, Response, Router, Running, ServeConfig};

use common::*;

/// The runner of this file's [`per_engine!`] tests, whose bodies take the engine to embed: the
/// `--engine` values of the selected entries of its kind (see `common::run_per_engine`), each
/// once (an entry that names none embeds `auto`, as the binary would run it).
fn run_embedded(kind: &str, test: &str, body: fn(EngineFlag)) {
    let mut flags = Vec::new();
    for entry in selected(kind) {
        let name = engine_value(&entry).unwrap_or("auto");
        let flag =
            EngineFlag::from_str(name, true).unwrap_or_else(|e| panic!("engine {name}: {e}"));
        if !flags.contains(&flag) {
            flags.push(flag);
        }
    }
    if flags.is_empty() {
        say_not_selected(test, kind);
    }
    for flag in flags {
        eprintln!("{test}: embed {flag:?}");
        body(flag);
    }
}

/// A gate the test opens; closed gates hold the futures waiting on them.
#[derive(Clone, Default)]
struct Gate(Arc<(Mutex<bool>, Condvar)>);

impl Gate {
    fn open(&self) {
        *self.0 .0.lock().unwrap() = true;
        self.0 .1.notify_all();
    }
    fn wait(&self) {
        let mut open = self.0 .0.lock().unwrap();
        while !*open {
            open = self.0 .1.wait(open).unwrap();
        }
    }
}

#[derive(Default)]
struct WakeState {
    done: bool,
    waker: Option<Waker>,
}

/// Completes once a std thread has waited for `gate` and then slept `delay`; the thread wakes
/// the shard through the waker, as a real I/O completion would.
struct ThreadWait {
    gate: Option<Gate>,
    delay: Duration,
    state: Arc<Mutex<WakeState>>,
    started: bool,
}

fn thread_wait(gate: Option<Gate>, delay: Duration) -> ThreadWait {
    ThreadWait {
        gate,
        delay,
        state: Arc::default(),
        started: false,
    }
}

impl Future for ThreadWait {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        {
            let mut st = self.state.lock().unwrap();
            if st.done {
                return Poll::Ready(());
            }
            st.waker = Some(cx.waker().clone());
        }
        if !self.started {
            self.started = true;
            let (gate, delay, state) = (self.gate.clone(), self.delay, self.state.clone());
            std::thread::spawn(move || {
                if let Some(g) = gate {
                    g.wait();
                }
                std::thread::sleep(delay);
                let w = {
                    let mut st = state.lock().unwrap();
                    st.done = true;
                    st.waker.take()
                };
                if let Some(w) = w {
                    w.wake();
                }
            });
        }
        Poll::Pending
    }
}

/// Yields `chunks` in order; before each chunk marked `true` it waits ~20 ms on a std thread.
struct SlowStream {
    chunks: Vec<(bool, Bytes)>,
    waiting: Option<ThreadWait>,
}

impl BodyStream for SlowStream {
    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        if self.chunks.is_empty() {
            return Poll::Ready(None);
        }
        if self.chunks[0].0 {
            let w = self
                .waiting
                .get_or_insert_with(|| thread_wait(None, Duration::from_millis(20)));
            if Pin::new(w).poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.waiting = None;
        }
        Poll::Ready(Some(self.chunks.remove(0).1))
    }
}

fn slow_stream() -> SlowStream {
    SlowStream {
        chunks: vec![
            (false, Bytes::from_static(b"a")),
            (true, Bytes::from_static(b"bb")),
            (false, Bytes::new()), // an empty chunk must not end the body
            (true, Bytes::from_static(b"ccc")),
        ],
        waiting: None,
    }
}

fn router(gate: Gate) -> Router {
    let g = gate.clone();
    Router::new()
        .get("/fast", |_: &Request<'_>| Response::text(200, "fast"))
        .get("/gated", move |_: &Request<'_>| {
            let wait = thread_wait(Some(g.clone()), Duration::from_millis(50));
            Reply::Later(Box::pin(async move {
                wait.await;
                Response::text(200, "gated")
            }))
        })
        .get("/later", |req: &Request<'_>| {
            let q = req.query().unwrap_or("").to_string();
            let wait = thread_wait(None, Duration::from_millis(50));
            Reply::Later(Box::pin(async move {
                wait.await;
                Response::text(200, format!("later {q}"))
            }))
        })
        .post("/echo", |req: &Request<'_>| {
            Response::new(200).body(req.body().to_vec())
        })
        .get("/stream", |_: &Request<'_>| {
            Response::new(200)
                .content_type("text/plain")
                .body(Body::Stream(Box::new(slow_stream())))
        })
        .get("/big-stream", |_: &Request<'_>| {
            let chunks = (0..100u8)
                .map(|i| (i % 10 == 9, Bytes::from(vec![b'A' + i % 26; 16 * 1024])))
                .collect();
            Response::new(200).body(Body::Stream(Box::new(SlowStream {
                chunks,
                waiting: None,
            })))
        })
}

fn start(gate: &Gate, engine: EngineFlag) -> Running {
    let cfg = ServeConfig {
        listen: vec![Listen::Tcp("127.0.0.1:0".parse().unwrap())],
        shards: 1,
        engine,
        ..Default::default()
    };
    let g = gate.clone();
    Running::start(cfg, move || router(g.clone())).expect("start")
}

fn stop(srv: Running) {
    srv.shutdown();
    srv.wait(Some(Duration::from_secs(10)))
        .unwrap_or_else(|left| panic!("{left} shard(s) did not stop"));
}

fn async_handler_does_not_block_the_shard(engine: EngineFlag) {
    let gate = Gate::default();
    let srv = start(&gate, engine);
    let addr = srv.local_addr();

    let mut slow = Client::connect(addr);
    slow.send(&get("/gated"));
    // While that handler waits, a single-shard server keeps serving other connections.
    let mut other = Client::connect(addr);
    for _ in 0..20 {
        other.send(&get("/fast"));
        assert_eq!(other.resp().body, b"fast");
    }
    let mut third = Client::connect(addr);
    third.send(&echo(b"meanwhile"));
    assert_eq!(third.resp().body, b"meanwhile");
    // The gated request has no answer yet.
    slow.expect_silence(Duration::from_millis(100));

    let t0 = Instant::now();
    gate.open();
    let r = slow.resp();
    assert_eq!((r.status, r.body.as_slice()), (200, &b"gated"[..]));
    assert!(
        t0.elapsed() >= Duration::from_millis(40),
        "answered before the wake"
    );
    assert!(!r.is_close());
    // The connection goes on after the async response.
    slow.send(&get("/fast"));
    assert_eq!(slow.resp().body, b"fast");
    stop(srv);
}

fn pipelined_requests_behind_a_pending_handler_stay_in_order(engine: EngineFlag) {
    let gate = Gate::default();
    let srv = start(&gate, engine);
    let mut c = Client::connect(srv.local_addr());
    let mut all = Vec::new();
    all.extend_from_slice(&get("/later?1"));
    all.extend_from_slice(&get("/fast"));
    all.extend_from_slice(&echo(b"third"));
    all.extend_from_slice(&get("/later?4"));
    all.extend_from_slice(&get("/later?5"));
    all.extend_from_slice(b"GET /fast HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    all.extend_from_slice(&get("/fast")); // after close: never answered
    c.send(&all);
    assert_eq!(c.resp().text(), "later 1");
    assert_eq!(c.resp().text(), "fast");
    assert_eq!(c.resp().text(), "third");
    assert_eq!(c.resp().text(), "later 4");
    assert_eq!(c.resp().text(), "later 5");
    let r = c.resp();
    assert_eq!(r.text(), "fast");
    assert!(r.is_close());
    c.expect_eof();

    // Bytes that arrive while the handler is pending, in pieces.
    let mut c = Client::connect(srv.local_addr());
    c.send(&get("/later?a"));
    std::thread::sleep(Duration::from_millis(5));
    c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Le");
    std::thread::sleep(Duration::from_millis(5));
    c.send(b"ngth: 3\r\n\r\nxyz");
    assert_eq!(c.resp().text(), "later a");
    assert_eq!(c.resp().text(), "xyz");
    stop(srv);
}

fn streaming_body_is_chunked_for_http11(engine: EngineFlag) {
    let srv = start(&Gate::default(), engine);
    let mut c = Client::connect(srv.local_addr());
    c.send(&get("/stream"));
    let r = c.resp();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert!(r.header("content-length").is_none());
    assert_eq!(r.body, b"abbccc");
    let body_raw = &r.raw[r.head.len() + 4..];
    assert_eq!(body_raw, b"1\r\na\r\n2\r\nbb\r\n3\r\nccc\r\n0\r\n\r\n");
    check_common_headers(&r);
    // Keep-alive goes on after a streamed response, and after a HEAD of one.
    c.send(b"HEAD /stream HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.resp_head();
    assert_eq!(r.status, 200);
    c.send(&get("/fast"));
    assert_eq!(c.resp().body, b"fast");

    // Pipelined behind a stream.
    c.send(&[get("/stream"), get("/stream"), get("/fast")].concat());
    assert_eq!(c.resp().body, b"abbccc");
    assert_eq!(c.resp().body, b"abbccc");
    assert_eq!(c.resp().body, b"fast");

    // A stream larger than the output high-water mark.
    c.send(&get("/big-stream"));
    let r = c.resp();
    assert_eq!(r.body.len(), 100 * 16 * 1024);
    for (i, chunk) in r.body.chunks(16 * 1024).enumerate() {
        assert!(
            chunk.iter().all(|&b| b == b'A' + (i % 26) as u8),
            "chunk {i}"
        );
    }
    c.send(&get("/fast"));
    assert_eq!(c.resp().body, b"fast");
    stop(srv);
}

fn streaming_body_is_close_delimited_for_http10(engine: EngineFlag) {
    let srv = start(&Gate::default(), engine);
    for req in [
        &b"GET /stream HTTP/1.0\r\n\r\n"[..],
        b"GET /stream HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    ] {
        let mut c = Client::connect(srv.local_addr());
        c.send(req);
        let r = c.resp(); // no framing header: read to EOF
        assert_eq!(r.status, 200);
        assert!(r.header("transfer-encoding").is_none(), "{}", r.head);
        assert!(r.header("content-length").is_none(), "{}", r.head);
        assert!(r.is_close(), "{}", r.head);
        assert_eq!(r.body, b"abbccc");
    }
    stop(srv);
}

fn shutdown_waits_for_a_pending_handler(engine: EngineFlag) {
    let gate = Gate::default();
    let srv = start(&gate, engine);
    let mut c = Client::connect(srv.local_addr());
    c.send(&get("/gated"));
    c.expect_silence(Duration::from_millis(100));
    srv.shutdown();
    std::thread::sleep(Duration::from_millis(100));
    gate.open();
    let r = c.resp();
    assert_eq!(r.body, b"gated");
    assert!(r.is_close(), "{}", r.head);
    c.expect_eof();
    srv.wait(Some(Duration::from_secs(10)))
        .unwrap_or_else(|left| panic!("{left} shard(s) did not stop"));
}

fn half_close_behind_a_pending_handler(engine: EngineFlag) {
    // The client sends two requests and half-closes; the first is answered asynchronously.
    // With synchronous handlers every request read before the FIN is answered; the same is
    // expected here.
    let srv = start(&Gate::default(), engine);
    let mut c = Client::connect(srv.local_addr());
    c.send(&[get("/later?1"), get("/fast")].concat());
    std::thread::sleep(Duration::from_millis(10));
    c.s.shutdown(std::net::Shutdown::Write).unwrap();
    let r = c.resp();
    assert_eq!(r.text(), "later 1");
    let second = c.try_resp(false);
    stop(srv);
    let r = second.unwrap_or_else(|e| {
        panic!("the request pipelined behind a pending handler was dropped on FIN: {e}")
    });
    assert_eq!(r.text(), "fast");
}

fn a_panicking_handler_gets_500_and_the_shard_lives_on(engine: EngineFlag) {
    let cfg = ServeConfig {
        listen: vec![Listen::Tcp("127.0.0.1:0".parse().unwrap())],
        shards: 1,
        engine,
        ..Default::default()
    };
    let srv = Running::start(cfg, || {
        Router::new()
            .get("/boom", |_: &Request<'_>| -> Response {
                panic!("handler bug")
            })
            .get("/later-boom", |_: &Request<'_>| {
                Reply::Later(Box::pin(async { panic!("future bug") }))
            })
            .get("/ok", |_: &Request<'_>| Response::text(200, "ok"))
    })
    .expect("start");
    for path in ["/boom", "/later-boom"] {
        let mut c = Client::connect(srv.local_addr());
        c.send(&get(path));
        let r = c.resp();
        assert_eq!(r.status, 500, "{path}");
        assert!(r.is_close(), "{path}");
        c.expect_eof();
    }
    let mut c = Client::connect(srv.local_addr());
    c.send(&get("/ok"));
    assert_eq!(c.resp().text(), "ok");
    stop(srv);
}

/// The route interface in use: files opened beneath a root, `statx`ed and read through the
/// shard's ring (io_uring) or with system calls (epoll), from a real directory tree with
/// symlinks inside and out of it.
fn a_route_reads_files_through_the_shard(engine: EngineFlag) {
    let dir =
        std::env::temp_dir().join(format!("ringshard-files-{}-{engine:?}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("site/sub")).unwrap();
    std::fs::write(dir.join("site/a.txt"), b"hello").unwrap();
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(dir.join("site/sub/big.bin"), &big).unwrap();
    std::fs::write(dir.join("secret"), b"outside").unwrap();
    std::os::unix::fs::symlink("a.txt", dir.join("site/inside")).unwrap();
    std::os::unix::fs::symlink(dir.join("secret"), dir.join("site/outside")).unwrap();
    std::os::unix::fs::symlink("../secret", dir.join("site/up")).unwrap();
    let cfg = ServeConfig {
        listen: vec![Listen::Tcp("127.0.0.1:0".parse().unwrap())],
        shards: 1,
        engine,
        ..Default::default()
    };
    let site = dir.join("site");
    let srv = Running::start(cfg, move || {
        Router::new().prefix(
            "GET",
            "/files/",
            ringshard::files::FileRoute::new(&site, "/files/").expect("open the root"),
        )
    })
    .expect("start");
    let mut c = Client::connect(srv.local_addr());
    let mut fetch = |path: &str| {
        c.send(&get(path));
        c.resp()
    };
    let r = fetch("/files/a.txt");
    assert_eq!(
        (r.status, r.body.as_slice()),
        (200, &b"hello"[..]),
        "{engine:?}"
    );
    let r = fetch("/files/sub/big.bin");
    assert_eq!(r.status, 200);
    assert!(r.body == big, "{engine:?}: 300 KB file differs");
    assert_eq!(
        fetch("/files/inside").body,
        b"hello",
        "a symlink inside the root"
    );
    for (path, status) in [
        ("/files/outside", 403),   // absolute symlink out of the root
        ("/files/up", 403),        // relative symlink out of it
        ("/files/../secret", 404), // a dot segment is never looked up
        ("/files/%2e%2e/secret", 404),
        ("/files/..%2fsecret", 400), // an encoded slash
        ("/files/nope", 404),
        ("/files/sub/", 404), // a directory without an index.html
    ] {
        let r = fetch(path);
        assert_eq!(r.status, status, "{engine:?} {path}");
        assert!(!r.body.windows(7).any(|w| w == b"outside"), "{path} leaked");
    }
    // A directory without its slash: a redirect on the same host, even from `//host`.
    let r = fetch("/files/sub");
    assert_eq!((r.status, r.header("location")), (301, Some("/files/sub/")));
    std::fs::write(dir.join("site/sub/index.html"), b"<p>index</p>").unwrap();
    let r = fetch("/files/sub/");
    assert_eq!((r.status, r.body.as_slice()), (200, &b"<p>index</p>"[..]));
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    stop(srv);
    let _ = std::fs::remove_dir_all(&dir);
}

per_engine! { runner = super::run_embedded;
    a_panicking_handler_gets_500_and_the_shard_lives_on,
    async_handler_does_not_block_the_shard,
    pipelined_requests_behind_a_pending_handler_stay_in_order,
    streaming_body_is_chunked_for_http11,
    streaming_body_is_close_delimited_for_http10,
    shutdown_waits_for_a_pending_handler,
    half_close_behind_a_pending_handler,
    a_route_reads_files_through_the_shard,
}
