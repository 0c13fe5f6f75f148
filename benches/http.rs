//! The connection core on its own: one plaintext request, and a 16-deep pipelined batch.
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ringshard::http::conn::{Conn, Ctx};
use ringshard::http::limits::Limits;
use ringshard::{routes, Router};

const REQ: &[u8] =
    b"GET /plaintext HTTP/1.1\r\nHost: localhost:8080\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n";

fn bench(c: &mut Criterion) {
    let router = routes::builtin(Router::new());
    let limits = Limits::default();
    let ctx = Ctx::new(&limits, b"Mon, 23 Nov 2026 12:00:00 GMT");
    let mut conn = Conn::new();
    let mut out = Vec::with_capacity(64 * 1024);

    let mut g = c.benchmark_group("conn");
    g.throughput(Throughput::Elements(1));
    g.bench_function("plaintext", |b| {
        b.iter(|| {
            out.clear();
            conn.on_data(std::hint::black_box(REQ), &router, &ctx, &mut out);
            std::hint::black_box(out.len())
        })
    });
    let batch: Vec<u8> = REQ.repeat(16);
    g.throughput(Throughput::Elements(16));
    g.bench_function("pipelined_16", |b| {
        b.iter(|| {
            out.clear();
            conn.on_data(std::hint::black_box(&batch), &router, &ctx, &mut out);
            std::hint::black_box(out.len())
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
