//! What every engine's shard keeps besides its I/O: the handler, configuration, clock, `Date`
//! cache, deadlines, output-buffer pool, counters and wake-up channel. One per shard, touched
//! only by its own thread.
use std::time::Instant;

use crate::config::ServeConfig;
use crate::handler::Handler;
use crate::http::conn::Ctx;
use crate::http::date::HttpDate;
use crate::session::{Env, Pool, Timeouts};
use crate::stats::{Latency, ShardStats};
use crate::timer::{Millis, Timers};
use crate::wake::Wakeup;

/// A shard's engine-independent state.
pub struct ShardState<H: Handler> {
    pub id: usize,
    pub handler: H,
    pub cfg: ServeConfig,
    pub timeouts: Timeouts,
    pub wakeup: Wakeup,
    pub timers: Timers,
    pub date: HttpDate,
    start: Instant,
    /// Milliseconds since the shard started, read once per loop turn.
    pub now: Millis,
    /// Accepting paused until then after EMFILE and the like (0: not paused).
    pub accept_retry_at: Millis,
    pub draining: bool,
    pub pool: Pool,
    /// Sampled server-side latency (head parsed to response queued).
    pub latency: Latency,
    latency_published: Millis,
    pub stats: ShardStats,
}

impl<H: Handler> ShardState<H> {
    pub fn new(id: usize, cfg: &ServeConfig, handler: H, wakeup: Wakeup) -> Self {
        ShardState {
            id,
            handler,
            cfg: cfg.clone(),
            timeouts: Timeouts::from_config(cfg),
            wakeup,
            timers: Timers::default(),
            date: HttpDate::default(),
            start: Instant::now(),
            now: 1,
            accept_retry_at: 0,
            draining: false,
            pool: Pool::default(),
            latency: Latency::default(),
            latency_published: 0,
            stats: ShardStats::default(),
        }
    }

    /// Reads the clock (once per turn) and refreshes the `Date` text when the second changed.
    pub fn tick(&mut self) {
        self.now = self.start.elapsed().as_millis() as Millis + 1;
        self.date.refresh();
    }

    /// What a session call needs.
    pub fn env(&mut self) -> Env<'_, H> {
        let ctx = Ctx {
            limits: &self.cfg.limits,
            date: self.date.as_bytes(),
            draining: self.draining,
            latency: Some(&self.latency),
        };
        Env {
            handler: &self.handler,
            ctx,
            pool: &mut self.pool,
            now: self.now,
        }
    }

    /// Makes this shard's counters readable by `/metrics` (a few relaxed stores per turn; the
    /// latency histogram once a second).
    pub fn publish(&mut self) {
        let Some(board) = &self.cfg.metrics else {
            return;
        };
        if self.now >= self.latency_published + 1000 {
            self.latency_published = self.now;
            let snapshot = self.latency.snapshot();
            self.stats.latency_samples = snapshot.len();
            board.publish_latency(self.id, &snapshot);
        }
        board.publish(self.id, &self.stats);
    }
}
