//! Drives the connection core alone with 16-deep pipelined batches, for profilers that want a
//! plain process rather than a benchmark harness: `scripts/core-instructions.sh` runs it under
//! callgrind, and `perf record` works on it as it is.
//!
//! usage: core_loop [BATCHES]   (default 100000; prints the response bytes written)
use ringshard::http::conn::{Conn, Ctx};
use ringshard::http::limits::Limits;
use ringshard::{routes, Router};

/// What wrk sends with `-s pipeline.lua`, to a built-in route.
const REQ: &[u8] = b"GET /plaintext HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n";

fn main() {
    let batches: usize = match std::env::args().nth(1).map(|s| s.parse()) {
        None => 100_000,
        Some(Ok(n)) => n,
        Some(Err(e)) => {
            eprintln!("core_loop: BATCHES must be a whole number ({e})");
            std::process::exit(2);
        }
    };
    let router = routes::builtin(Router::new());
    let limits = Limits::default();
    let ctx = Ctx::new(&limits, b"Mon, 23 Nov 2026 12:00:00 GMT");
    let mut conn = Conn::new();
    let mut out = Vec::with_capacity(64 * 1024);
    let batch = REQ.repeat(16);
    let mut written = 0;
    for _ in 0..batches {
        out.clear();
        conn.on_data(std::hint::black_box(&batch), &router, &ctx, &mut out);
        written += out.len();
    }
    println!("{written}");
}
