//! What every engine does with a connection apart from the I/O itself: feeding the HTTP core,
//! driving handler tasks, the close sequence, deadlines and backpressure.
//!
//! An engine owns the socket and the operations in flight; it asks its `Session` what to do.
use std::task::{Context, Waker};

use crate::http::conn::{Conn, Ctx, Phase, Progress, TaskPoll};
use crate::http::handler::Handler;
use crate::timer::{Deadline, Millis};

/// After the last response of a closing connection, how long to keep reading (and discarding)
/// before closing, so that unread input does not turn the close into a reset that destroys the
/// response on its way.
pub const LINGER: Millis = 2_000;
/// Stop reading from a connection whose unsent output and unparsed input exceed this; resume
/// below half of it.
pub const BACKPRESSURE: usize = 1 << 20;
/// Output buffers kept for reuse, and the largest kept.
const POOL_MAX: usize = 1024;
const POOL_BUF_MAX: usize = 64 * 1024;

/// Where a connection is in its life.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Stage {
    /// Serving requests.
    Open,
    /// Send what is queued, then close lingering.
    Finishing,
    /// Write side shut down; input is read and dropped until EOF or the linger deadline.
    Lingering,
    /// Closing now: the engine releases it once no operation refers to it.
    Closing,
}

/// The timeouts, in shard milliseconds.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    pub header: Millis,
    pub body: Millis,
    pub keepalive: Millis,
    pub write: Millis,
}

/// Output buffers for reuse, so that a connection holds one only while it has output.
#[derive(Default)]
pub struct Pool(Vec<Vec<u8>>);

impl Pool {
    pub fn take(&mut self) -> Vec<u8> {
        self.0.pop().unwrap_or_default()
    }

    pub fn give(&mut self, mut buf: Vec<u8>) {
        if buf.capacity() > 0 && buf.capacity() <= POOL_BUF_MAX && self.0.len() < POOL_MAX {
            buf.clear();
            self.0.push(buf);
        }
    }
}

/// What a deadline or an end of input means for the connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Nothing to do.
    Stay,
    /// Send what is queued, then close lingering.
    Finish,
    /// Close now, cancelling what is in flight.
    Close,
}

/// One connection's engine-independent state.
pub struct Session {
    pub http: Conn,
    /// Responses not yet handed to the kernel.
    pub out: Vec<u8>,
    pub stage: Stage,
    pub deadline: Deadline,
    /// Reading is paused for backpressure.
    pub recv_paused: bool,
    /// A streaming body waits for the peer to read before producing more.
    pub task_waiting_output: bool,
    phase: Phase,
    since: Millis,
    served: bool,
    /// Responses already counted by [`Session::answered`].
    counted: u64,
    /// A sent output buffer larger than the pool keeps, held while a body streams: the stream
    /// fills it next instead of growing (and faulting in) a new one for every chunk.
    spare: Vec<u8>,
    /// The waker its tasks are polled with, made at the first.
    pub waker: Option<std::task::Waker>,
}

/// What a session needs from its shard for one call.
pub struct Env<'a, H: ?Sized> {
    pub handler: &'a H,
    pub ctx: Ctx<'a>,
    pub pool: &'a mut Pool,
    pub now: Millis,
}

impl Session {
    pub fn new(now: Millis) -> Session {
        Session {
            http: Conn::new(),
            out: Vec::new(),
            stage: Stage::Open,
            deadline: Deadline::default(),
            recv_paused: false,
            task_waiting_output: false,
            phase: Phase::Idle,
            since: now,
            served: false,
            counted: 0,
            spare: Vec::new(),
            waker: None,
        }
    }

    /// Feeds received bytes to the HTTP core. Returns true when a handler task is pending and
    /// must be polled with [`Session::poll_task`].
    pub fn receive<H: Handler + ?Sized>(&mut self, data: &[u8], env: &mut Env<'_, H>) -> bool {
        if self.stage != Stage::Open {
            return false; // finishing or lingering: input is dropped
        }
        if self.out.capacity() == 0 {
            self.out = env.pool.take();
        }
        let before = self.http.responses();
        let progress = self
            .http
            .on_data(data, env.handler, &env.ctx, &mut self.out);
        if self.http.phase() == Phase::Body || self.http.responses() != before {
            // A body that progresses is not stalled; after a response, the keep-alive or
            // header timeout counts from now, not from the connection's first request.
            self.since = env.now;
        }
        self.apply(progress)
    }

    /// Responses written since the last call (the shard's request counter).
    pub fn answered(&mut self) -> u64 {
        let n = self.http.responses();
        let d = n - self.counted;
        self.counted = n;
        d
    }

    fn apply(&mut self, progress: Progress) -> bool {
        match progress {
            Progress::ReadMore => {}
            Progress::Pending => return true,
            Progress::Close => self.stage = Stage::Finishing,
        }
        self.served |= self.http.phase() != Phase::Head;
        false
    }

    /// Drives a pending handler future or streaming body, and the requests queued behind it.
    pub fn poll_task<H: Handler + ?Sized>(&mut self, waker: &Waker, env: &mut Env<'_, H>) {
        let mut task_cx = Context::from_waker(waker);
        loop {
            if self.out.capacity() == 0 {
                self.out = match self.spare.capacity() {
                    0 => env.pool.take(),
                    _ => std::mem::take(&mut self.spare),
                };
            }
            match self.http.poll_task(&mut task_cx, &env.ctx, &mut self.out) {
                TaskPoll::Done => {
                    self.task_waiting_output = false;
                    self.since = env.now;
                    // Finishing after the peer's FIN: requests it sent before are still answered.
                    let progress = if matches!(self.stage, Stage::Open | Stage::Finishing) {
                        self.http.on_data(&[], env.handler, &env.ctx, &mut self.out)
                    } else {
                        Progress::Close
                    };
                    if !self.apply(progress) {
                        return;
                    }
                }
                TaskPoll::Pending => return,
                TaskPoll::OutputFull => {
                    self.task_waiting_output = true;
                    return;
                }
            }
        }
    }

    /// Whether the engine should stop reading (Some(true)) or resume (Some(false)).
    pub fn backpressure(&mut self, sending: bool) -> Option<bool> {
        let pending = self.out.len() + self.http.buffered();
        if !self.recv_paused && self.stage == Stage::Open && pending > BACKPRESSURE {
            self.recv_paused = true;
            Some(true)
        } else if self.recv_paused && pending <= BACKPRESSURE / 2 && !sending {
            self.recv_paused = false;
            Some(false)
        } else {
            None
        }
    }

    /// The peer sent FIN: answer what is in flight, then close.
    pub fn on_peer_closed(&mut self, sending: bool) -> Next {
        match self.stage {
            Stage::Open => {
                self.http.on_eof();
                if self.http.abandoned_by_peer() && !sending && self.out.is_empty() {
                    return Next::Close; // its answer is given up on: the task goes with it
                }
                if sending || !self.out.is_empty() || self.http.phase() == Phase::Handler {
                    self.stage = Stage::Finishing;
                    Next::Finish
                } else {
                    Next::Close
                }
            }
            Stage::Lingering => Next::Close,
            Stage::Finishing | Stage::Closing => Next::Stay,
        }
    }

    /// Whether a finishing connection has sent everything and may start its lingering close.
    pub fn ready_to_linger(&self, sending: bool) -> bool {
        self.stage == Stage::Finishing
            && !sending
            && self.out.is_empty()
            && self.http.phase() != Phase::Handler
    }

    /// A finishing connection whose peer sends no more (it asked for the close and sent nothing
    /// after): it closes at once, with no lingering.
    pub fn peer_sends_no_more(&self) -> bool {
        self.http.ended_as_asked()
    }

    /// The output queued now is the last this connection sends: it is finishing, its peer sends
    /// no more, and no handler is left to write.
    pub fn sends_its_last_output(&self) -> bool {
        self.stage == Stage::Finishing && self.peer_sends_no_more()
    }

    /// Closing now: the engine cancels what is in flight. False if it already was closing.
    pub fn close(&mut self) -> bool {
        let was = self.stage;
        self.stage = Stage::Closing;
        was != Stage::Closing
    }

    /// Takes everything queued for one send; the engine keeps it until the send completes.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// A send of `buf` completed: it becomes the output buffer again if nothing was queued
    /// meanwhile (no allocation for the next response), else goes back to the pool.
    pub fn reclaim(&mut self, mut buf: Vec<u8>, pool: &mut Pool) {
        buf.clear();
        if self.out.is_empty() {
            std::mem::swap(&mut self.out, &mut buf);
        }
        let streaming = self.http.phase() == Phase::Handler;
        if streaming && buf.capacity() > POOL_BUF_MAX && self.spare.capacity() == 0 {
            self.spare = buf;
        } else {
            pool.give(buf);
        }
    }

    /// An open connection with nothing left to send gives its output buffer back: an idle
    /// connection holds none.
    pub fn shed_output_buffer(&mut self, pool: &mut Pool) {
        if self.out.is_empty() && self.stage == Stage::Open {
            pool.give(std::mem::take(&mut self.out));
            if self.http.phase() != Phase::Handler {
                pool.give(std::mem::take(&mut self.spare));
            }
        }
    }

    /// The engine wrote `sent` bytes of the output in place (epoll). Returns where the rest
    /// starts: 0 once it is all written (the output is then empty), else the offset, with what
    /// was written dropped once that is half of the buffer, so a large response is neither
    /// copied per write nor kept whole.
    pub fn wrote(&mut self, sent: usize) -> usize {
        if sent >= self.out.len() {
            self.out.clear();
            0
        } else if sent >= self.out.len() / 2 {
            self.out.drain(..sent);
            0
        } else {
            sent
        }
    }

    /// The connection is gone: its output buffer, for the pool.
    pub fn into_output(self) -> Vec<u8> {
        self.out
    }

    /// The write side is shut down; input is now drained until EOF or [`LINGER`].
    pub fn start_linger(&mut self, now: Millis) {
        self.stage = Stage::Lingering;
        self.since = now;
    }

    /// A connection with nothing in flight that shutdown may close at once.
    pub fn is_idle(&self, sending: bool) -> bool {
        self.stage == Stage::Open
            && self.http.phase() == Phase::Idle
            && !sending
            && self.out.is_empty()
    }

    /// The connection's deadline now, given the send in flight (started at `sending_since`).
    pub fn deadline_at(
        &mut self,
        sending_since: Option<Millis>,
        now: Millis,
        t: &Timeouts,
    ) -> Millis {
        let phase = self.http.phase();
        if phase != self.phase {
            self.phase = phase;
            self.since = now;
        }
        if let Some(since) = sending_since {
            return since + t.write;
        }
        match (self.stage, phase) {
            (Stage::Closing, _) => 0,
            (Stage::Lingering, _) => self.since + LINGER,
            (Stage::Finishing, _) => now + t.write,
            (Stage::Open, Phase::Idle) if self.served => self.since + t.keepalive,
            (Stage::Open, Phase::Idle | Phase::Head) => self.since + t.header,
            (Stage::Open, Phase::Body) => self.since + t.body,
            // A body a handler takes as it arrives: it must keep arriving.
            (Stage::Open, Phase::Handler) if self.http.streaming_body() => now + t.body,
            (Stage::Open, Phase::Handler | Phase::Closed) => 0,
        }
    }

    /// The deadline passed: a request still arriving gets 408; anything else closes.
    /// Returns the timeout's kind for the counters along with what to do.
    pub fn on_deadline<H: Handler + ?Sized>(
        &mut self,
        sending: bool,
        env: &mut Env<'_, H>,
    ) -> (Next, Expiry) {
        if sending {
            return (Next::Close, Expiry::Write);
        }
        if self.stage != Stage::Open {
            return (Next::Close, Expiry::Linger);
        }
        match self.http.phase() {
            Phase::Head | Phase::Body => {
                if self.out.capacity() == 0 {
                    self.out = env.pool.take();
                }
                self.http.on_timeout(&env.ctx, &mut self.out);
                self.stage = Stage::Finishing;
                (Next::Finish, Expiry::Request)
            }
            Phase::Idle if !self.served => (Next::Close, Expiry::Request),
            // A handler runs, so no 408 can go before its answer: the connection ends.
            Phase::Handler if self.http.streaming_body() => (Next::Close, Expiry::Request),
            _ => (Next::Close, Expiry::Idle),
        }
    }
}

/// Which timeout fired, for the counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expiry {
    Request,
    Idle,
    Write,
    Linger,
}
