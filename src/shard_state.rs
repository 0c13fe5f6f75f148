//! What every engine's shard keeps besides its I/O: the handler, configuration, clock, `Date`
//! cache, deadlines, output-buffer pool, counters and wake-up channel. One per shard, touched
//! only by its own thread.
use std::sync::Arc;
use std::time::Instant;

use crate::config::ServeConfig;
use crate::http::conn::Ctx;
use crate::http::date::HttpDate;
use crate::http::handler::Handler;
use crate::metrics::Board;
use crate::session::{Env, Expiry, Pool, Timeouts};
use crate::stats::{Latency, ShardStats};
use crate::timer::{Millis, Timers};
use crate::wake::Wakeup;

/// The configured timeouts in shard milliseconds.
fn timeouts(cfg: &ServeConfig) -> Timeouts {
    let ms = |d: std::time::Duration| d.as_millis() as Millis;
    Timeouts {
        header: ms(cfg.header_timeout),
        body: ms(cfg.body_timeout),
        keepalive: ms(cfg.keepalive_timeout),
        write: ms(cfg.write_timeout),
    }
}

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
    /// Where this shard publishes its counters (`/metrics` reads it), if anywhere.
    board: Option<Arc<Board>>,
}

impl<H: Handler> ShardState<H> {
    pub fn new(
        id: usize,
        cfg: &ServeConfig,
        handler: H,
        wakeup: Wakeup,
        board: Option<Arc<Board>>,
    ) -> Self {
        ShardState {
            id,
            handler,
            cfg: cfg.clone(),
            timeouts: timeouts(cfg),
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
            board,
        }
    }

    /// Counts a timeout by its kind.
    pub fn count_expiry(&mut self, kind: Expiry) {
        let s = &mut self.stats;
        match kind {
            Expiry::Request => s.request_timeouts += 1,
            Expiry::Write => s.write_timeouts += 1,
            Expiry::Idle => s.idle_closes += 1,
            Expiry::Linger => {}
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
        let Some(board) = &self.board else {
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
