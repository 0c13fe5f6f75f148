//! Arbitrary bytes, split at arbitrary points, through the connection core: it must never
//! panic, and must answer the same whatever the split.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ringshard::http::conn::{Conn, Ctx, Progress};
use ringshard::http::limits::Limits;
use ringshard::{routes, Router};

fuzz_target!(|data: &[u8]| {
    let Some((&cuts, input)) = data.split_first() else { return };
    let router = routes::builtin(Router::new());
    let limits = Limits { max_head: 512, max_headers: 16, max_body: 1024 };
    let ctx = Ctx::new(&limits, b"Mon, 23 Nov 2026 12:00:00 GMT");
    let run = |step: usize| {
        let mut conn = Conn::new();
        let mut out = Vec::new();
        for piece in input.chunks(step.max(1)) {
            if conn.on_data(piece, &router, &ctx, &mut out) == Progress::Close {
                break;
            }
        }
        out
    };
    let whole = run(input.len());
    let split = run(usize::from(cuts % 17) + 1);
    assert_eq!(whole, split, "the answer depends on how the bytes were split");
});
