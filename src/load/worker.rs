//! A worker thread's event loop: its share of the connections on its own io_uring.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::conn::{Conn, ConnState};
use super::request::RequestSet;
use super::ring::{Cqe, Ring, RingConfig};
use super::stats::{ErrorKind, Stats};
use super::url::Endpoint;
use crate::http::client::Flow;
use crate::token::{self, Op};
use crate::uring::busy::gather_limit;

/// Wait before retrying a failed connect.
const CONNECT_BACKOFF_NS: u64 = 100_000_000;

/// An entry's tag: operation, connection index and the connection's generation.
#[inline]
fn ud(gen: u32, idx: usize, op: Op) -> u64 {
    token::encode(op, idx as u32, gen)
}

/// What one worker does.
pub struct Plan {
    /// Connections of this worker, and the global index of its first.
    pub conns: usize,
    pub first_conn: usize,
    pub total_conns: usize,
    pub depth: usize,
    /// Requests this worker completes (`-n` share), if limited.
    pub budget: Option<u64>,
    /// Open loop: total requests per second over all workers.
    pub rate: Option<f64>,
    pub duration: Option<Duration>,
    pub timeout: Option<Duration>,
    pub head_method: bool,
    /// A new connection per request (`--no-keepalive`).
    pub one_per_connection: bool,
}

/// Counters the main thread reads for the live line.
#[derive(Default)]
#[repr(align(64))]
pub struct Live {
    pub requests: AtomicU64,
    pub errors: AtomicU64,
    pub p99_us: AtomicU64,
}

/// What a worker hands back.
pub struct Outcome {
    pub stats: Stats,
    /// Nanoseconds from the common start to when this worker stopped sending (or finished).
    pub elapsed_ns: u64,
    /// Set when the worker stopped because nothing succeeded for `STALL_NS`.
    pub stalled: bool,
}

/// A worker with neither a response nor a successful connect for this long gives up, so a run
/// bounded only by `-n` cannot hang on a server that went away.
const STALL_NS: u64 = 10_000_000_000;

pub struct Worker {
    ring: Ring,
    conns: Vec<Conn>,
    plan: Plan,
    stats: Stats,
    live: Arc<Live>,
    start: Instant,
    now: u64,
    /// Requests still to hand out (`u64::MAX` without `-n`).
    to_issue: u64,
    inflight: usize,
    /// Connections with a request in flight, and sends queued since the last wait: the
    /// completions that will arrive without this worker doing anything (what a wait may gather).
    awaiting: usize,
    queued_sends: usize,
    stopping: bool,
    stop_at: u64,
    /// Open loop: per-connection interval and the earliest time a ready connection is due.
    period_ns: f64,
    next_due: u64,
    rearm: Vec<usize>,
    /// Connections to reopen once their reconnect time has come and the operations queued
    /// for their old socket have been submitted (a slot must not change under a queued entry).
    down: Vec<usize>,
    /// Last time a response completed or a connect succeeded, and whether the run gave up.
    progress_at: u64,
    progress_mark: (u64, u64),
    stalled: bool,
}

impl Worker {
    pub fn new(
        plan: Plan,
        endpoint: &Endpoint,
        reqs: Arc<RequestSet>,
        live: Arc<Live>,
    ) -> std::io::Result<Self> {
        let n = plan.conns;
        let cfg = RingConfig {
            slots: n as u32,
            entries: ((n * 2 + 16).next_power_of_two()).clamp(64, 16384) as u32,
            buffers: ((n * 2).next_power_of_two()).clamp(64, 8192) as u16,
            buffer_size: if n > 1024 { 8192 } else { 16384 },
        };
        let distinct = reqs.distinct();
        let ring = Ring::new(&cfg, endpoint, reqs)?;
        let (period_ns, phase_step) = match plan.rate {
            Some(r) => (plan.total_conns as f64 * 1e9 / r, 1e9 / r),
            None => (0.0, 0.0),
        };
        let conns = (0..n)
            .map(|i| {
                let g = plan.first_conn + i;
                Conn::new(
                    plan.depth,
                    plan.head_method,
                    g % distinct,
                    g as f64 * phase_step,
                )
            })
            .collect();
        Ok(Worker {
            ring,
            conns,
            to_issue: plan.budget.unwrap_or(u64::MAX),
            plan,
            stats: Stats::new(),
            live,
            start: Instant::now(),
            now: 0,
            inflight: 0,
            awaiting: 0,
            queued_sends: 0,
            stopping: false,
            stop_at: 0,
            period_ns,
            next_due: u64::MAX,
            rearm: Vec::new(),
            down: Vec::new(),
            progress_at: 0,
            progress_mark: (0, 0),
            stalled: false,
        })
    }

    #[inline]
    fn clock(&mut self) -> u64 {
        self.now = self.start.elapsed().as_nanos() as u64;
        self.now
    }

    #[inline]
    fn intended(&self, c: &Conn, k: u64) -> u64 {
        (c.phase_ns + k as f64 * self.period_ns) as u64
    }

    /// Runs until the duration or the request budget is reached, then drains.
    pub fn run(mut self, start: Instant) -> Result<Outcome, String> {
        self.start = start;
        self.clock();
        let deadline = self.plan.duration.map_or(u64::MAX, |d| d.as_nanos() as u64);
        let tick = self.plan.timeout.map_or(50_000_000, |t| {
            (t.as_nanos() as u64 / 4).clamp(1_000_000, 50_000_000)
        });
        let grace = self
            .plan
            .timeout
            .map_or(1_000_000_000, |t| t.as_nanos() as u64);
        if self.plan.budget == Some(0) {
            self.stop();
        }
        for i in 0..self.conns.len() {
            if !self.stopping {
                self.connect(i);
            }
        }
        let mut cqes = Vec::with_capacity(1024);
        let mut next_tick = self.now + tick;
        let mut next_p99 = self.now + 500_000_000;
        loop {
            let now = self.now;
            if !self.stopping && now >= deadline {
                self.stop_at = deadline;
                self.stop();
            }
            if !self.stopping && crate::sys::signals::interrupted() {
                self.stop();
            }
            if self.stopping && (self.inflight == 0 || now >= self.stop_at.saturating_add(grace)) {
                break;
            }
            let mut wake = next_tick.min(deadline).min(self.next_due);
            if self.stopping {
                wake = wake.min(self.stop_at.saturating_add(grace));
            }
            let wait = Duration::from_nanos(wake.saturating_sub(now).max(1));
            self.ring
                .submit_and_wait(Some(wait), self.gather())
                .map_err(|e| format!("io_uring wait failed: {e}"))?;
            self.queued_sends = 0;
            self.clock();
            self.ring.reap(&mut cqes);
            for c in &cqes {
                self.complete(c);
            }
            if !self.down.is_empty() && !self.stopping {
                self.reconnect_due()
                    .map_err(|e| format!("io_uring submit failed: {e}"))?;
            }
            debug_assert_eq!(
                self.awaiting,
                self.conns.iter().filter(|c| !c.inflight.is_empty()).count(),
                "awaiting counts the connections with a request in flight"
            );
            self.ring.commit_buffers();
            self.rearm_receives();
            if self.now >= self.next_due {
                self.next_due = u64::MAX;
                for i in 0..self.conns.len() {
                    self.try_send(i);
                }
            }
            if self.now >= next_tick {
                next_tick = self.now + tick;
                self.housekeeping();
                self.publish_live(&mut next_p99);
            }
        }
        self.live
            .requests
            .store(self.stats.requests, Ordering::Relaxed);
        self.shutdown(&mut cqes);
        Ok(Outcome {
            elapsed_ns: self.stop_at,
            stalled: self.stalled,
            stats: std::mem::take(&mut self.stats),
        })
    }

    /// How many completions the next wait gathers. Open loop must wake on time for each send.
    /// A closed loop with many connections awaiting answers gathers a completion per queued
    /// send and the answers of a share of them (`gather_limit`: waiting for all would have the
    /// server idle until the last one came); with few, it returns at the first completion,
    /// since the timer of a gathering wait costs more than the turn it saves.
    fn gather(&self) -> usize {
        let gather = gather_limit(self.awaiting as u32);
        match self.plan.rate {
            None if gather > 1 => self.queued_sends + gather,
            _ => 1,
        }
    }

    /// Arms again the receives that ended (a multishot receive stops on ENOBUFS).
    fn rearm_receives(&mut self) {
        while let Some(i) = self.rearm.pop() {
            let c = &mut self.conns[i];
            if c.state == ConnState::Open && !c.recv_armed {
                c.recv_armed = true;
                self.ring.recv(i as u32, ud(c.gen, i, Op::Recv));
            }
        }
    }

    /// The counts the main thread shows on its live line; p99 at most every 500 ms.
    fn publish_live(&mut self, next_p99: &mut u64) {
        self.live
            .requests
            .store(self.stats.requests, Ordering::Relaxed);
        self.live
            .errors
            .store(self.stats.error_total(), Ordering::Relaxed);
        if self.now >= *next_p99 {
            *next_p99 = self.now + 500_000_000;
            self.live.p99_us.store(
                self.stats.latency.value_at_quantile(0.99),
                Ordering::Relaxed,
            );
        }
    }

    fn stop(&mut self) {
        if !self.stopping {
            self.stopping = true;
            if self.stop_at == 0 {
                self.stop_at = self.now;
            }
        }
    }

    /// Closes every socket and waits (bounded) until the kernel has finished with the ring.
    fn shutdown(&mut self, cqes: &mut Vec<Cqe>) {
        for c in &mut self.conns {
            if c.fd >= 0 {
                self.ring.close(c.fd);
                c.fd = -1;
                c.gen = token::next_gen(c.gen);
            }
        }
        self.ring.cancel_all(ud(0, 0, Op::Cancel));
        let until = Instant::now() + Duration::from_secs(2);
        while self.ring.outstanding() > 0 && Instant::now() < until {
            if self
                .ring
                .submit_and_wait(Some(Duration::from_millis(50)), 1)
                .is_err()
            {
                break;
            }
            self.ring.reap(cqes);
            for c in cqes.iter() {
                if let Some(bid) = c.buffer() {
                    self.ring.recycle(bid);
                }
            }
            self.ring.commit_buffers();
        }
    }

    /// Reopens the connections whose time has come. Entries still queued for their old sockets
    /// go to the kernel first: a registered slot must not change under a queued entry.
    fn reconnect_due(&mut self) -> std::io::Result<()> {
        let due = |&i: &usize| self.conns[i].since <= self.now;
        if !self.down.iter().any(due) {
            return Ok(());
        }
        if self
            .down
            .iter()
            .filter(|i| due(i))
            .any(|&i| self.ring.names(i as u32))
        {
            self.ring.submit()?;
        }
        let mut k = 0;
        while k < self.down.len() {
            let i = self.down[k];
            if self.conns[i].since <= self.now {
                self.down.swap_remove(k);
                self.connect(i);
            } else {
                k += 1;
            }
        }
        Ok(())
    }

    fn connect(&mut self, i: usize) {
        let now = self.now;
        let opened = self
            .ring
            .socket()
            .and_then(|fd| match self.ring.install(i as u32, fd) {
                Ok(()) => Ok(fd),
                Err(e) => {
                    self.ring.close(fd);
                    Err(e)
                }
            });
        match opened {
            Ok(fd) => {
                let c = &mut self.conns[i];
                c.fd = fd;
                c.state = ConnState::Connecting;
                c.since = now;
                let u = ud(c.gen, i, Op::Connect);
                self.ring.connect(i as u32, u);
            }
            Err(_) => {
                self.stats.error(ErrorKind::Connect);
                let c = &mut self.conns[i];
                c.state = ConnState::Down;
                c.since = now + CONNECT_BACKOFF_NS;
                self.down.push(i);
            }
        }
    }

    /// Drops connection `i` (counting `kind` if given); it reconnects after the next submission,
    /// or after a back-off when the connect itself failed.
    fn fail(&mut self, i: usize, kind: Option<ErrorKind>) {
        if let Some(k) = kind {
            self.stats.error(k);
        }
        let now = self.now;
        let c = &mut self.conns[i];
        if c.fd >= 0 {
            if kind.is_none() && !c.sending {
                // Done with it (its answers are in): only the receive needs ending.
                let recv = c.recv_armed.then(|| ud(c.gen, i, Op::Recv));
                self.ring.release(c.fd, recv, ud(0, 0, Op::Cancel));
            } else {
                self.ring.close(c.fd);
            }
            c.fd = -1;
        }
        c.gen = token::next_gen(c.gen);
        let lost = c.inflight.len();
        c.inflight.clear();
        c.parser.reset();
        c.sending = false;
        c.recv_armed = false;
        c.state = ConnState::Down;
        c.since = if kind == Some(ErrorKind::Connect) {
            now + CONNECT_BACKOFF_NS
        } else {
            now
        };
        self.answered(i, lost);
        if self.plan.budget.is_some() {
            self.to_issue += lost as u64;
        }
        self.down.push(i);
    }

    /// Timeouts and delayed reconnects.
    fn housekeeping(&mut self) {
        let now = self.now;
        let timeout = self.plan.timeout.map(|t| t.as_nanos() as u64);
        let mark = (self.stats.requests, self.stats.connects);
        // Idle open connections waiting for their schedule are not stuck.
        let waiting = self.inflight > 0 || self.conns.iter().any(|c| c.state != ConnState::Open);
        if mark != self.progress_mark || !waiting {
            self.progress_mark = mark;
            self.progress_at = now;
        } else if !self.stopping && now - self.progress_at > STALL_NS.max(timeout.unwrap_or(0) * 2)
        {
            self.stalled = true;
            self.stop();
        }
        for i in 0..self.conns.len() {
            let c = &self.conns[i];
            match c.state {
                ConnState::Connecting
                    if timeout.is_some_and(|t| now.saturating_sub(c.since) > t) =>
                {
                    self.fail(i, Some(ErrorKind::Connect))
                }
                ConnState::Open => {
                    if let (Some(t), Some(&first)) = (timeout, c.inflight.front()) {
                        if now.saturating_sub(first) > t {
                            self.fail(i, Some(ErrorKind::Timeout));
                        }
                    }
                }
                _ => {}
            }
        }
    }

    fn complete(&mut self, cqe: &Cqe) {
        let Some((op, i, gen)) = token::decode(cqe.user_data) else {
            return;
        };
        let i = i as usize;
        if op == Op::Cancel {
            return;
        }
        let stale = self.conns.get(i).is_none_or(|c| c.gen != gen);
        if stale {
            if op == Op::Recv {
                self.ring.take_back_buffer(cqe);
            }
            return;
        }
        match op {
            Op::Connect => {
                if cqe.result < 0 {
                    self.fail(i, Some(ErrorKind::Connect));
                    return;
                }
                self.stats.connects += 1;
                let c = &mut self.conns[i];
                c.state = ConnState::Open;
                c.recv_armed = true;
                let u = ud(c.gen, i, Op::Recv);
                self.ring.recv(i as u32, u);
                self.try_send(i);
            }
            Op::Send => {
                if cqe.result < 0 {
                    self.fail(i, Some(ErrorKind::Reset));
                    return;
                }
                let sent = cqe.result as usize;
                self.stats.bytes_written += sent as u64;
                let c = &mut self.conns[i];
                if sent < c.send_len {
                    c.send_off += sent;
                    c.send_len -= sent;
                    let (off, len, u) = (c.send_off, c.send_len, ud(c.gen, i, Op::Send));
                    self.ring.send(i as u32, off, len, u);
                    self.queued_sends += 1;
                } else {
                    c.sending = false;
                    self.try_send(i);
                }
            }
            Op::Recv => self.received(i, cqe),
            _ => {}
        }
    }

    fn received(&mut self, i: usize, cqe: &Cqe) {
        if !cqe.more() {
            self.conns[i].recv_armed = false;
        }
        if cqe.result <= 0 {
            // A buffer must never leak, nor one a kernel might attach to an end of input.
            self.ring.take_back_buffer(cqe);
        }
        if cqe.result < 0 {
            match -cqe.result {
                libc::ENOBUFS => self.rearm.push(i),
                libc::ECANCELED => {}
                _ => self.fail(i, Some(ErrorKind::Reset)),
            }
            return;
        }
        let now = self.now;
        if cqe.result == 0 {
            // The peer closed: a close-delimited body ends here.
            let c = &mut self.conns[i];
            let mut done = 0usize;
            let stats = &mut self.stats;
            let inflight = &mut c.inflight;
            let cut = c.parser.eof(&mut |status| {
                if let Some(t) = inflight.pop_front() {
                    stats.response(status, now.saturating_sub(t));
                    done += 1;
                }
            });
            self.answered(i, done);
            let lost = cut || !self.conns[i].inflight.is_empty();
            self.fail(i, lost.then_some(ErrorKind::Closed));
            self.check_budget();
            return;
        }
        let Some(bid) = cqe.buffer() else {
            self.fail(i, Some(ErrorKind::Reset));
            return;
        };
        let len = cqe.result as usize;
        self.stats.bytes_read += len as u64;
        let c = &mut self.conns[i];
        let mut done = 0usize;
        let mut unsolicited = false;
        let stats = &mut self.stats;
        let inflight = &mut c.inflight;
        let flow =
            c.parser.feed(
                self.ring.buffer(bid, len),
                &mut |status| match inflight.pop_front() {
                    Some(t) => {
                        stats.response(status, now.saturating_sub(t));
                        done += 1;
                    }
                    None => unsolicited = true,
                },
            );
        self.ring.recycle(bid);
        self.answered(i, done);
        match flow {
            _ if unsolicited => self.fail(i, Some(ErrorKind::Malformed)),
            Err(_) => self.fail(i, Some(ErrorKind::Malformed)),
            Ok(Flow::Close) => {
                let lost = !self.conns[i].inflight.is_empty();
                self.fail(i, lost.then_some(ErrorKind::Closed));
            }
            Ok(Flow::More) if self.plan.one_per_connection && self.conns[i].inflight.is_empty() => {
                self.fail(i, None); // its one request is answered: a new connection for the next
            }
            Ok(Flow::More) => {
                if !self.conns[i].recv_armed {
                    self.rearm.push(i);
                }
                self.try_send(i);
            }
        }
        self.check_budget();
    }

    /// `done` requests of connection `i` are no longer in flight (answered, or lost with the
    /// connection); the counts that size each wait follow.
    fn answered(&mut self, i: usize, done: usize) {
        self.inflight -= done;
        if done > 0 && self.conns[i].inflight.is_empty() {
            self.awaiting -= 1;
        }
    }

    fn check_budget(&mut self) {
        if let Some(b) = self.plan.budget {
            if self.stats.requests >= b {
                self.stop();
            }
        }
    }

    /// Sends what connection `i` may send now: up to the pipeline depth, the budget, and in
    /// open loop the requests whose intended time has come.
    fn try_send(&mut self, i: usize) {
        if self.stopping {
            return;
        }
        let c = &self.conns[i];
        if c.state != ConnState::Open || c.sending {
            return;
        }
        let room = self.plan.depth - c.inflight.len();
        let mut k = (room as u64).min(self.to_issue) as usize;
        if k == 0 {
            return;
        }
        let now = self.now;
        if self.plan.rate.is_some() {
            let mut due = 0;
            while due < k && self.intended(c, c.sched_k + due as u64) <= now {
                due += 1;
            }
            if due < k {
                let next = self.intended(c, c.sched_k + due as u64);
                self.next_due = self.next_due.min(next);
            }
            k = due;
            if k == 0 {
                return;
            }
        }
        let (off, len) = self.ring.requests().span(c.next_req, k);
        let distinct = self.ring.requests().distinct();
        let open = self.plan.rate.is_some();
        let base_k = c.sched_k;
        if c.inflight.is_empty() {
            self.awaiting += 1;
        }
        for j in 0..k as u64 {
            let t = if open {
                self.intended(&self.conns[i], base_k + j)
            } else {
                now
            };
            self.conns[i].inflight.push_back(t);
        }
        let c = &mut self.conns[i];
        c.sched_k += k as u64;
        c.next_req = (c.next_req + k) % distinct;
        c.sending = true;
        c.send_off = off;
        c.send_len = len;
        let u = ud(c.gen, i, Op::Send);
        self.ring.send(i as u32, off, len, u);
        self.queued_sends += 1;
        self.stats.sent += k as u64;
        self.inflight += k;
        if self.to_issue != u64::MAX {
            self.to_issue -= k as u64;
        }
    }
}
