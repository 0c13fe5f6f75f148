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

/// Where a shard's output beyond its sockets goes: its counters' board and the access log.
#[derive(Clone, Default)]
pub struct Outputs {
    pub board: Option<Arc<Board>>,
    pub log: Option<Arc<crate::access_log::LogFile>>,
    /// Where a shard says it is full, or has room again.
    pub steering: Option<Arc<crate::steer::Steering>>,
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
    /// Accepting paused at `--max-connections`, until the shard is down to nine tenths of it.
    pub at_capacity: bool,
    pub draining: bool,
    /// A gentle drain (an upgrade's old process) leaves idle connections open until then
    /// (0: not draining gently).
    pub gentle_until: Millis,
    pub pool: Pool,
    /// Sampled server-side latency (head parsed to response queued).
    pub latency: Latency,
    latency_published: Millis,
    pub stats: ShardStats,
    /// Where this shard publishes its counters (`/metrics` reads it), if anywhere.
    board: Option<Arc<Board>>,
    /// This shard's side of the access log, if there is one.
    pub log: Option<crate::access_log::ShardLog>,
    steering: Option<Arc<crate::steer::Steering>>,
}

impl<H: Handler> ShardState<H> {
    pub fn new(id: usize, cfg: &ServeConfig, handler: H, wakeup: Wakeup, outputs: Outputs) -> Self {
        if let Some(s) = &outputs.steering {
            s.set_full(id, false); // a replaced shard's predecessor may have been full
        }
        let log = outputs
            .log
            .map(|file| crate::access_log::ShardLog::new(file, cfg.access_log_format));
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
            at_capacity: false,
            draining: false,
            gentle_until: 0,
            pool: Pool::default(),
            latency: Latency::default(),
            latency_published: 0,
            stats: ShardStats::default(),
            board: outputs.board,
            log,
            steering: outputs.steering,
        }
    }

    /// Whether a connection gone idle while draining is closed now (not while a gentle drain
    /// leaves idle connections to their next request).
    pub fn closes_idle(&self) -> bool {
        self.draining && self.gentle_until == 0
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

    /// Whether the shard may accept another connection with `open` connections: no at
    /// `--max-connections`, and yes again only at nine tenths of it or below (one less, for a
    /// limit under ten), so that a shard at its limit does not switch accepting on and off
    /// with every close.
    pub fn may_accept(&mut self, open: usize) -> bool {
        let max = self.cfg.max_connections;
        if max == 0 {
            return true;
        }
        let was = self.at_capacity;
        if self.at_capacity && open <= max - (max / 10).max(1) {
            self.at_capacity = false;
        } else if open >= max {
            self.at_capacity = true;
        }
        if was != self.at_capacity {
            if let Some(s) = &self.steering {
                s.set_full(self.id, self.at_capacity);
            }
        }
        !self.at_capacity
    }

    /// Room for more connections before `--max-connections` (unbounded: `usize::MAX`).
    pub fn room(&self, open: usize) -> usize {
        match self.cfg.max_connections {
            0 => usize::MAX,
            max => max.saturating_sub(open),
        }
    }

    /// Reads the clock (once per turn) and refreshes the `Date` text when the second changed.
    pub fn tick(&mut self) {
        self.now = self.start.elapsed().as_millis() as Millis + 1;
        self.date.refresh();
        if let Some(log) = &self.log {
            log.set_time(self.date.second());
        }
    }

    /// Hands the access log's lines to the kernel when they are due (at once while draining).
    pub fn flush_log(&mut self) {
        if let Some(log) = &mut self.log {
            log.flush(self.now, self.draining);
            self.stats.log_write_failures = log.failed_writes;
        }
    }

    /// Whether the access log has written everything (a draining shard waits for it).
    pub fn log_is_idle(&self) -> bool {
        self.log.as_ref().is_none_or(|l| l.is_idle())
    }

    /// What a session call needs.
    pub fn env(&mut self) -> Env<'_, H> {
        let ctx = Ctx {
            limits: &self.cfg.limits,
            date: self.date.as_bytes(),
            draining: self.draining,
            latency: Some(&self.latency),
            log: self
                .log
                .as_ref()
                .map(|l| l as &dyn crate::http::log::AccessLog),
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
        let [connects, requests, retries, failures] = crate::proxy::counters();
        self.stats.upstream_connects = connects;
        self.stats.upstream_requests = requests;
        self.stats.upstream_retries = retries;
        self.stats.upstream_failures = failures;
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
