//! Arbitrary bytes, split at arbitrary points, through the connection core: it must never
//! panic, and must answer the same whatever the split.
//!
//! Input layout: the first byte says how many of the next bytes are piece sizes (1 to 8); the
//! sizes (1 to 64 bytes each) are used in turn to cut the rest. Run with the dictionary and the
//! seeds, which reach bodies, chunked framing and 100-continue quickly:
//!     cargo fuzz run conn fuzz/corpus/conn fuzz/seeds -- -dict=fuzz/conn.dict
//! (new inputs go to the first directory, which git ignores; `fuzz/seeds` stays as written).
#![no_main]
use libfuzzer_sys::fuzz_target;
use ringshard::http::conn::{Conn, Ctx, Progress};
use ringshard::http::limits::Limits;
use ringshard::{routes, Router};

/// Sent when a head asking for it arrives without its body: whether it is sent depends on how
/// the bytes arrived, so it is left out of the comparison.
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else { return };
    let (sizes, input) = rest.split_at((usize::from(n % 8) + 1).min(rest.len()));
    let router = routes::builtin(Router::new());
    let limits = Limits { max_head: 512, max_headers: 16, max_body: 1024 };
    let ctx = Ctx::new(&limits, b"Mon, 23 Nov 2026 12:00:00 GMT");
    let run = |sizes: &mut dyn Iterator<Item = usize>| {
        let mut conn = Conn::new();
        let mut out = Vec::new();
        let mut at = 0;
        while at < input.len() {
            let end = (at + sizes.next().unwrap_or(input.len())).min(input.len());
            if conn.on_data(&input[at..end], &router, &ctx, &mut out) == Progress::Close {
                break;
            }
            at = end;
        }
        without_continue(&out)
    };
    let whole = run(&mut std::iter::once(input.len()));
    let mut cuts = sizes.iter().map(|&s| usize::from(s % 64) + 1).cycle();
    let split = run(&mut cuts);
    assert_eq!(whole, split, "the answer depends on how the bytes were split");
});

fn without_continue(out: &[u8]) -> Vec<u8> {
    let mut kept = Vec::with_capacity(out.len());
    let mut rest = out;
    while !rest.is_empty() {
        if rest.starts_with(CONTINUE) {
            rest = &rest[CONTINUE.len()..];
        } else {
            kept.push(rest[0]);
            rest = &rest[1..];
        }
    }
    kept
}
