//! Drives the connection core alone with 16-deep pipelined batches, for profilers that want a
//! plain process rather than a benchmark harness: `scripts/core-instructions.sh` runs it under
//! callgrind, `scripts/parse-cost.sh` times it, and `perf record` works on it as it is.
//!
//! usage: core_loop [BATCHES] [SHAPE]   (default 100000 wrk; prints the response bytes written)
//!   SHAPE: wrk      what wrk sends with `-s pipeline.lua` (49 bytes, one header)
//!          browser  a browser's navigation request (448 bytes, seven headers)
//!          cookie   a query string and a 1.3 KB cookie (1,624 bytes)
use ringshard::http::conn::{Conn, Ctx};
use ringshard::http::limits::Limits;
use ringshard::{routes, Router};

const WRK: &str = "GET /plaintext HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n";
const UA: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) \
                  Chrome/131.0.0.0 Safari/537.36";

fn request(shape: &str) -> Option<Vec<u8>> {
    let req = match shape {
        "wrk" => WRK.to_string(),
        "browser" => format!(
            "GET /plaintext HTTP/1.1\r\nHost: www.example.com\r\nUser-Agent: {UA}\r\n\
             Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8\r\n\
             Accept-Language: en-US,en;q=0.9\r\nAccept-Encoding: gzip, deflate, br\r\n\
             Cookie: session=8f14e45fceea167a5a36dedd4bea2543; theme=dark; _ga=GA1.2.1234567890.1700000000\r\n\
             Connection: keep-alive\r\n\r\n"
        ),
        "cookie" => {
            let cookie: Vec<String> = (0..20)
                .map(|i| format!("k{i}={}", "abcdef0123456789".repeat(4)))
                .collect();
            format!(
                "GET /plaintext?utm_source=newsletter&utm_medium=email&id=12345 HTTP/1.1\r\n\
                 Host: www.example.com\r\nUser-Agent: {UA}\r\nCookie: {}\r\nAccept: */*\r\n\r\n",
                cookie.join("; ")
            )
        }
        _ => return None,
    };
    Some(req.into_bytes())
}

fn main() {
    let mut args = std::env::args().skip(1);
    let batches: usize = match args.next().map(|s| s.parse()) {
        None => 100_000,
        Some(Ok(n)) => n,
        Some(Err(e)) => {
            eprintln!("core_loop: BATCHES must be a whole number ({e})");
            std::process::exit(2);
        }
    };
    let shape = args.next().unwrap_or_else(|| "wrk".into());
    let Some(req) = request(&shape) else {
        eprintln!("core_loop: SHAPE must be wrk, browser or cookie (got {shape:?})");
        std::process::exit(2);
    };
    let router = routes::builtin(Router::new());
    let limits = Limits::default();
    let ctx = Ctx::new(&limits, b"Mon, 23 Nov 2026 12:00:00 GMT");
    let mut conn = Conn::new();
    let mut out = Vec::with_capacity(64 * 1024);
    let batch = req.repeat(16);
    let mut written = 0;
    for _ in 0..batches {
        out.clear();
        conn.on_data(std::hint::black_box(&batch), &router, &ctx, &mut out);
        written += out.len();
    }
    // Every request answered, with a 200 (a rejection closes the connection and stops the loop).
    assert!(out.starts_with(b"HTTP/1.1 200 "), "not a 200 for {shape}");
    assert_eq!(
        conn.responses(),
        (batches * 16) as u64,
        "a request was not answered"
    );
    println!("{written}");
}
