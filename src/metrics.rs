//! Per-shard counters made readable from any shard: each shard publishes its own slot (single
//! writer, relaxed stores, once per loop turn; its latency histogram once a second), and a
//! reader merges the slots. Nothing here is touched per request.
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use hdrhistogram::Histogram;

use crate::handler::Handler;
use crate::http::request::Request;
use crate::http::response::{Reply, Response};
use crate::stats::{new_histogram, ShardStats, FIELDS};

struct Slot {
    counters: [AtomicU64; FIELDS],
    latency: Mutex<Histogram<u64>>,
}

/// The board every shard publishes to.
pub struct Board {
    slots: Box<[Slot]>,
    /// Shards that died and were replaced (the process's, not a shard's).
    shard_restarts: AtomicU64,
}

impl std::fmt::Debug for Board {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Board({} shards)", self.slots.len())
    }
}

impl Board {
    pub fn new(shards: usize) -> Arc<Board> {
        let slots = (0..shards)
            .map(|_| Slot {
                counters: std::array::from_fn(|_| AtomicU64::new(0)),
                latency: Mutex::new(new_histogram()),
            })
            .collect();
        Arc::new(Board {
            slots,
            shard_restarts: AtomicU64::new(0),
        })
    }

    /// A shard died and is being replaced.
    pub fn count_shard_restart(&self) {
        self.shard_restarts.fetch_add(1, Ordering::Relaxed);
    }

    /// A shard publishes its counters (only shard `id` writes slot `id`).
    pub fn publish(&self, id: usize, stats: &ShardStats) {
        if let Some(slot) = self.slots.get(id) {
            for (c, (_, _, v)) in slot.counters.iter().zip(stats.fields()) {
                c.store(v, Ordering::Relaxed);
            }
        }
    }

    /// A shard publishes its latency histogram (its sample count goes with the counters).
    pub fn publish_latency(&self, id: usize, h: &Histogram<u64>) {
        if let Some(slot) = self.slots.get(id) {
            let mut l = slot.latency.lock().unwrap_or_else(|e| e.into_inner());
            l.reset();
            let _ = l.add(h);
        }
    }

    /// Counters of one shard as last published.
    pub fn read(&self, id: usize) -> Vec<u64> {
        self.slots[id]
            .counters
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect()
    }

    /// Every shard's counters and latency quantiles in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (i, (name, help, _)) in ShardStats::default().fields().into_iter().enumerate() {
            let kind = if name.ends_with("_total") {
                "counter"
            } else {
                "gauge"
            };
            let _ = writeln!(
                out,
                "# HELP ringshard_{name} {help}\n# TYPE ringshard_{name} {kind}"
            );
            for (shard, slot) in self.slots.iter().enumerate() {
                let v = slot.counters[i].load(Ordering::Relaxed);
                let _ = writeln!(out, "ringshard_{name}{{shard=\"{shard}\"}} {v}");
            }
        }
        let _ = writeln!(
            out,
            "# HELP ringshard_shard_restarts_total Shards that died (a panic in their loop) and were replaced.\n# TYPE ringshard_shard_restarts_total counter\nringshard_shard_restarts_total {}",
            self.shard_restarts.load(Ordering::Relaxed)
        );
        let name = "ringshard_request_latency_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Head parsed to response queued, one request in {} timed.\n# TYPE {name} summary",
            crate::stats::SAMPLE
        );
        for (shard, slot) in self.slots.iter().enumerate() {
            let h = slot
                .latency
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            for q in [0.5, 0.9, 0.99, 0.999] {
                let v = h.value_at_quantile(q) as f64 / 1e9;
                let _ = writeln!(out, "{name}{{shard=\"{shard}\",quantile=\"{q}\"}} {v}");
            }
            let sum = h.mean() * h.len() as f64 / 1e9;
            let _ = writeln!(
                out,
                "{name}_sum{{shard=\"{shard}\"}} {sum}\n{name}_count{{shard=\"{shard}\"}} {}",
                h.len()
            );
        }
        out
    }
}

/// `GET /metrics`.
pub struct MetricsHandler(pub Arc<Board>);

impl Handler for MetricsHandler {
    fn call(&self, _req: &Request<'_>) -> Reply {
        Response::new(200)
            .content_type("text/plain; version=0.0.4")
            .body(self.0.render())
            .into()
    }
}

/// The table `--stats` prints at exit.
pub fn table(per_shard: &[ShardStats]) -> String {
    let mut total = ShardStats::default();
    for s in per_shard {
        total.merge(s);
    }
    let mut out = String::from("counter");
    let width = 36;
    out = format!("{out:<width$}");
    for i in 0..per_shard.len() {
        let _ = write!(out, "{:>14}", format!("shard {i}"));
    }
    let _ = writeln!(out, "{:>14}", "total");
    let rows: Vec<_> = per_shard.iter().map(|s| s.fields()).collect();
    for (i, (name, _, t)) in total.fields().into_iter().enumerate() {
        // The gauges of the last loop turn say nothing about the run as a whole.
        if matches!(
            name,
            "latency_samples_total" | "wait_batching" | "busy_percent"
        ) {
            continue;
        }
        let _ = write!(out, "{name:<width$}");
        for r in &rows {
            let _ = write!(out, "{:>14}", r[i].2);
        }
        let _ = writeln!(out, "{t:>14}");
    }
    if total.requests > 0 && total.enters > 0 {
        let _ = writeln!(
            out,
            "requests per enter call: {:.2}; completions per enter call: {:.2}",
            total.requests as f64 / total.enters as f64,
            total.cqes as f64 / total.enters as f64
        );
    }
    out
}
