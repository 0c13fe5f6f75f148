//! One epoll shard's event loop, top to bottom: accept → read → parse → handler → write → close.
//!
//! Each turn: wait in epoll once, handle every readiness event (accepting and reading until the
//! kernel has nothing more, answering what was read), run woken handler tasks, expire
//! deadlines, then write once per connection that has output (all responses of a read
//! coalesced). Sockets are registered once, edge-triggered for input, output and the peer's
//! half-close, so a turn asks the kernel nothing but the reads and writes themselves.
//!
//! What to do with a connection (HTTP, deadlines, the close sequence) is the engine-independent
//! [`Session`]'s, as in the io_uring shard; this file does the I/O. Reads go into one
//! per-shard buffer, so an idle connection holds no receive buffer; writes go straight from
//! `Session::out`, and a short one leaves the rest there until the socket is writable again.
use std::io::ErrorKind;
use std::os::fd::{AsRawFd, OwnedFd};

use crate::config::ServeConfig;
use crate::epoll::sys::{self, Epoll};

use crate::engine::{Core, Engine, Link};
use crate::http::handler::Handler;
use crate::session::{Next, Session, Stage};
use crate::shard_state::ShardState;
use crate::stats::ShardStats;
use crate::timer::Millis;
use crate::token::{self, Op};
use crate::wake::Wakeup;

/// The per-shard read buffer every connection reads into.
const READ_BUF: usize = 64 * 1024;
/// Events one `epoll_wait` returns at most.
const EVENTS: usize = 1024;
/// What a connection is registered for, once: edge-triggered input, output and half-close.
const CONN_EVENTS: u32 = sys::IN | sys::OUT | sys::RDHUP | sys::ET;

// Tokens in the epoll data: `Op::Accept` with its index for a listener, `Op::Wake` for the eventfd and
// `Op::Recv` with slot and generation for a connection's readiness (reusing the ring's scheme,
// so a stale event for a reused slot is recognised by its generation).

/// A connection: its socket, what the kernel last said about it, and its session.
pub(crate) struct Connection {
    fd: OwnedFd,
    gen: u32,
    /// Input may be waiting: an input edge arrived and was not read to the end (reading paused).
    readable: bool,
    /// The input edge said the peer closed or failed: read to EOF, not just to a short read.
    hup: bool,
    /// The peer's FIN was read: nothing more will arrive.
    eof: bool,
    /// False from a short write until the output edge: output waits in `s.out` since `blocked`.
    writable: bool,
    blocked: Millis,
    /// How much of `s.out` short writes already sent (compacted away once it is half of it, so
    /// a large response is neither copied per write nor kept whole).
    sent: usize,
    /// Queued for a write at the end of this turn.
    dirty: bool,
    session: Session,
}

impl Link for Connection {
    fn gen(&self) -> u32 {
        self.gen
    }
    fn session(&mut self) -> &mut Session {
        &mut self.session
    }
    fn session_ref(&self) -> &Session {
        &self.session
    }
    /// Output waits for the socket: the epoll form of "a send is in flight".
    fn sending_since(&self) -> Option<Millis> {
        (!self.writable).then_some(self.blocked)
    }
}

impl Connection {
    /// Whether input is read now: paused for backpressure, never while closing. A lingering
    /// connection drains its input whatever its output did.
    fn may_read(&self) -> bool {
        match self.session.stage {
            Stage::Open | Stage::Finishing => !self.session.recv_paused,
            Stage::Lingering => true,
            Stage::Closing => false,
        }
    }
}

/// Connections one turn takes from a listening socket the shards share.
const SHARED_ACCEPTS: usize = 4;

/// An epoll shard ready to run: its listener and eventfd are registered.
pub struct Shard<H: Handler> {
    core: Core<H, Connection>,
    ep: Epoll,
    /// The listening sockets, registered with their index.
    listeners: Vec<crate::sys::socket::ListenFd>,
    rbuf: Box<[u8]>,
    dirty: Vec<(u32, u32)>,
    /// Connections to read again at the end of the turn (reading resumed, or lingering began).
    rearm: Vec<(u32, u32)>,
    /// The shard fell below `--max-connections`' low-water mark: accept at the end of the turn.
    resume_accepts: bool,
}

impl<H: Handler> Shard<H> {
    /// Creates the epoll instance and registers the (now non-blocking) listener and eventfd.
    pub fn new(
        id: usize,
        listeners: Vec<crate::sys::socket::ListenFd>,
        cfg: &ServeConfig,
        handler: H,
        wakeup: Wakeup,
        outputs: crate::shard_state::Outputs,
    ) -> Result<Self, String> {
        let ep = Epoll::new(EVENTS).map_err(|e| format!("epoll_create1: {e}"))?;
        for (i, l) in listeners.iter().enumerate() {
            let lfd = l.fd.as_raw_fd();
            sys::set_nonblocking(lfd).map_err(|e| format!("listener {lfd}: fcntl: {e}"))?;
            // Its own socket, edge-triggered: every accept runs until EAGAIN (or backs off and
            // retries on a timer). A socket the shards share, level-triggered: each wakes for it
            // and takes a few, so that one shard does not drain the backlog for all.
            let events = if l.shared { sys::IN } else { sys::IN | sys::ET };
            let ud = token::encode(Op::Accept, i as u32, 0);
            ep.add(lfd, events, ud)
                .map_err(|e| format!("epoll_ctl (listener): {e}"))?;
        }
        // Level-triggered: each wake is drained with one read.
        ep.add(
            wakeup.eventfd().raw(),
            sys::IN,
            token::encode(Op::Wake, 0, 0),
        )
        .map_err(|e| format!("epoll_ctl (eventfd): {e}"))?;
        Ok(Shard {
            core: Core::new(ShardState::new(id, cfg, handler, wakeup, outputs)),
            ep,
            listeners,
            rbuf: vec![0; READ_BUF].into_boxed_slice(),
            dirty: Vec::with_capacity(1024),
            rearm: Vec::new(),
            resume_accepts: false,
        })
    }

    /// The start-up line: what this shard uses.
    pub fn describe(&self) -> String {
        format!(
            "epoll, edge-triggered, {} KiB read buffer",
            self.rbuf.len() / 1024
        )
    }

    /// Runs until shutdown has drained every connection.
    ///
    /// `stats.enters` counts every system call the loop makes (epoll_wait, epoll_ctl, accept4,
    /// recv, send, shutdown, eventfd reads; not the closes), `stats.cqes` the events returned.
    pub fn run(&mut self) -> ShardStats {
        let io = crate::io::driver();
        self.core.shard.wakeup.enter();
        io.set_wakeup(self.core.shard.wakeup.clone());
        io.use_readiness();
        loop {
            // 1. Wait once, until readiness or the nearest deadline; not at all when the last
            //    turn left work queued for this one.
            let timeout = if !self.dirty.is_empty() || !self.rearm.is_empty() || io.has_queued() {
                0
            } else {
                self.core
                    .wait_timeout()
                    .map_or(-1, |d| d.as_millis().min(i32::MAX as u128) as i32)
            };
            self.core.shard.stats.enters += 1;
            let n = match self.ep.wait(timeout) {
                Ok(n) => n,
                Err(e) => {
                    eprintln!(
                        "ringshard: shard {}: epoll_wait failed: {e}; stopping this shard",
                        self.core.shard.id
                    );
                    break;
                }
            };
            self.core.shard.tick();

            // 2. Every event: accepts, input (parsed and answered here), output space, wakes.
            self.core.shard.stats.cqes += n as u64;
            for i in 0..n {
                let (events, data) = self.ep.event(i);
                self.ready(events, data);
            }

            // 3. Handler futures that were woken; 4. deadlines; 5. one write per connection.
            self.run_woken();
            self.expire();
            self.core.shard.flush_log();
            io.expire();
            self.run_io();
            self.flush();

            self.publish();
            if self.core.shard.draining
                && self.core.conns.is_empty()
                && self.core.shard.log_is_idle()
                && io.in_flight() == 0
                && io.tasks() == 0
                && io.quiesce()
            {
                break;
            }
        }
        self.core.shard.stats
    }

    /// Runs the operations routes started this turn, with ordinary system calls (a file's
    /// blocks on a cold disk: only the io_uring engine never does; a socket's that would block
    /// waits in the epoll set, once), and the tasks they woke.
    fn run_io(&mut self) {
        let io = crate::io::driver();
        while io.has_queued() {
            io.take_cancels(|id, _| io.complete(id, -libc::ECANCELED));
            let ep = &self.ep;
            let mut ctls = 0;
            io.start_queued(|id, gen, op| {
                run_or_wait(ep, op, token::encode(Op::Io, id, gen), &mut ctls)
            });
            self.core.shard.stats.enters += ctls;
            self.run_woken();
        }
    }

    /// A socket operation's descriptor is ready: run it again.
    fn on_io_ready(&mut self, id: u32, gen: u32) {
        let io = crate::io::driver();
        let ep = &self.ep;
        let mut ctls = 0;
        io.resume(id, gen, |op| {
            run_or_wait(ep, op, token::encode(Op::Io, id, gen), &mut ctls)
        });
        self.core.shard.stats.enters += ctls + 1;
    }

    /// Makes this shard's counters readable by `/metrics` (a few relaxed stores per turn; the
    /// latency histogram once a second).
    fn publish(&mut self) {
        self.core.shard.publish();
    }

    fn ready(&mut self, events: u32, data: u64) {
        let Some((op, slot, gen)) = token::decode(data) else {
            return;
        };
        match op {
            Op::Accept => self.accept(slot as usize),
            Op::Wake => self.on_wake(),
            Op::Recv => self.on_ready(slot, gen, events),
            Op::Io => self.on_io_ready(slot, gen),
            _ => {}
        }
    }

    /// An epoll shard leaves nothing in the kernel's hands: never abandoned.
    pub fn abandoned(&self) -> bool {
        false
    }

    /// After a panic in this shard's loop: its connections are closed (their clients see the
    /// end instead of waiting) and its listeners let go; the rest is leaked by the caller.
    pub fn stop_after_panic(&mut self) {
        self.core.conns.clear();
        crate::io::driver().drop_tasks();
        self.listeners.clear();
    }

    // ---- accept ----

    /// Accepts from listener `which` until its backlog is empty.
    fn accept(&mut self, which: usize) {
        if self.core.shard.draining || self.core.shard.accept_retry_at != 0 {
            return;
        }
        let Some((lfd, shared)) = self
            .listeners
            .get(which)
            .map(|l| (l.fd.as_raw_fd(), l.shared))
        else {
            return;
        };
        let mut taken = 0;
        loop {
            if !self.core.shard.may_accept(self.core.conns.len()) {
                return; // at --max-connections: the rest wait in the backlog
            }
            if shared && taken == SHARED_ACCEPTS {
                return; // the socket is still ready: the next turn (or another shard) takes more
            }
            taken += 1;
            self.core.shard.stats.enters += 1;
            let fd = match sys::accept(lfd) {
                Ok(fd) => fd,
                Err(e) => match e.raw_os_error().unwrap_or(0) {
                    libc::EAGAIN => return,
                    libc::EINTR => continue,
                    // Out of descriptors or memory: back off instead of spinning on the error.
                    libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM => {
                        self.core.shard.stats.accept_errors += 1;
                        self.core.shard.accept_retry_at = self.core.shard.now + 100;
                        return;
                    }
                    // A connection reset while in the backlog, or the like: take the next one.
                    _ => {
                        self.core.shard.stats.accept_errors += 1;
                        continue;
                    }
                },
            };
            let gen = self.core.next_gen();
            let entry = self.core.conns.vacant_entry();
            let slot = entry.key() as u32;
            self.core.shard.stats.enters += 1;
            let raw = fd.as_raw_fd();
            if self
                .ep
                .add(raw, CONN_EVENTS, token::encode(Op::Recv, slot, gen))
                .is_err()
            {
                self.core.shard.stats.accept_errors += 1;
                continue; // `fd` is closed here
            }
            let mut session = Session::new(self.core.shard.now);
            session.http.set_listener(which);
            if self.core.shard.cfg.peers {
                session.http.set_peer(crate::sys::socket::peer_addr(raw));
            }
            entry.insert(Connection {
                fd,
                gen,
                readable: false,
                hup: false,
                eof: false,
                writable: true,
                blocked: 0,
                sent: 0,
                dirty: false,
                session,
            });
            self.core.shard.stats.accepted += 1;
            self.core.refresh_deadline(slot);
        }
    }

    // ---- readiness ----

    fn on_ready(&mut self, slot: u32, gen: u32, events: u32) {
        let Some(c) = self.core.get(slot, gen) else {
            return; // a connection already closed (its slot may be taken by a new one)
        };
        if events & (sys::OUT | sys::ERR | sys::HUP) != 0 && !c.writable {
            // Output space again (or an error the write will report): write at the end of
            // this turn.
            c.writable = true;
            if !c.session.out.is_empty() && !c.dirty {
                c.dirty = true;
                self.dirty.push((slot, gen));
            }
        }
        if events & (sys::IN | sys::RDHUP | sys::ERR | sys::HUP) != 0 {
            c.readable = true;
            c.hup |= events & (sys::RDHUP | sys::ERR | sys::HUP) != 0;
            self.read(slot);
        }
    }

    // ---- read ----

    /// Reads until the kernel has no more (EAGAIN or a short read), the peer's EOF, or the
    /// session stops reading; feeds each read to the session.
    fn read(&mut self, slot: u32) {
        loop {
            let Some(c) = self.core.conns.get_mut(slot as usize) else {
                return;
            };
            if !c.readable || !c.may_read() {
                return;
            }
            self.core.shard.stats.enters += 1;
            match sys::recv(c.fd.as_raw_fd(), &mut self.rbuf) {
                Ok(0) => {
                    c.readable = false;
                    c.eof = true;
                    match c.session.on_peer_closed(c.sending()) {
                        Next::Close => return self.abort(slot),
                        Next::Finish => self.after_output(slot),
                        Next::Stay => {}
                    }
                    return self.release_if_done(slot);
                }
                Ok(n) => {
                    self.core.shard.stats.bytes_in += n as u64;
                    self.core.shard.stats.recvs += 1;
                    if n < self.rbuf.len() && !c.hup {
                        // A short read emptied the socket; new input brings a new edge.
                        c.readable = false;
                    }
                    if c.session
                        .receive(&self.rbuf[..n], &mut self.core.shard.env())
                    {
                        self.poll_task(slot);
                    }
                    self.after_output(slot);
                    self.release_if_done(slot);
                }
                Err(e) => match e.kind() {
                    ErrorKind::WouldBlock => {
                        c.readable = false;
                        return;
                    }
                    ErrorKind::Interrupted => {}
                    _ => {
                        self.core.shard.stats.recv_errors += 1;
                        return self.abort(slot);
                    }
                },
            }
        }
    }

    // ---- handler tasks (the async path) ----

    // ---- write ----

    /// One write of everything queued; a short one keeps the rest for the output edge.
    fn write(&mut self, slot: u32) {
        let c = &mut self.core.conns[slot as usize];
        if !c.writable || c.session.out.is_empty() || c.session.stage == Stage::Closing {
            return;
        }
        debug_assert!(
            c.sent < c.session.out.len(),
            "only what is not sent is kept"
        );
        self.core.shard.stats.enters += 1;
        self.core.shard.stats.sends += 1;
        match sys::send(c.fd.as_raw_fd(), &c.session.out[c.sent..]) {
            Ok(n) if c.sent + n == c.session.out.len() => {
                self.core.shard.stats.bytes_out += n as u64;
                c.sent = c.session.wrote(c.sent + n);
            }
            Ok(n) => {
                // The socket buffer filled: keep the rest and wait for the output edge.
                self.core.shard.stats.bytes_out += n as u64;
                self.core.shard.stats.short_sends += 1;
                c.sent = c.session.wrote(c.sent + n);
                c.writable = false;
                c.blocked = self.core.shard.now;
                return self.after_output(slot);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                self.core.shard.stats.short_sends += 1;
                c.writable = false;
                c.blocked = self.core.shard.now;
                return self.after_output(slot);
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {
                c.dirty = true;
                self.dirty.push((slot, c.gen));
                return;
            }
            Err(_) => {
                self.core.shard.stats.send_errors += 1;
                return self.abort(slot);
            }
        }
        // All written: a streaming body waiting for the peer goes on; an idle connection gives
        // its output buffer back.
        if c.session.task_waiting_output && c.session.stage == Stage::Open {
            self.poll_task(slot);
        }
        let c = &mut self.core.conns[slot as usize];
        c.session.shed_output_buffer(&mut self.core.shard.pool);
        self.after_output(slot);
        self.release_if_done(slot);
    }

    /// End of turn: reads that resumed, then one write per connection with output; accepts
    /// after a back-off.
    fn flush(&mut self) {
        if std::mem::take(&mut self.resume_accepts) {
            for i in 0..self.listeners.len() {
                self.accept(i);
            }
        }
        let mut rearm = std::mem::take(&mut self.rearm);
        for (slot, gen) in rearm.drain(..) {
            if self
                .core
                .conns
                .get(slot as usize)
                .is_some_and(|c| c.gen == gen)
            {
                self.read(slot);
            }
        }
        if self.rearm.is_empty() {
            self.rearm = rearm;
        }
        let mut dirty = std::mem::take(&mut self.dirty);
        for (slot, gen) in dirty.drain(..) {
            let Some(c) = self.core.get(slot, gen) else {
                continue;
            };
            c.dirty = false;
            self.write(slot);
        }
        if self.dirty.is_empty() {
            self.dirty = dirty;
        }
        if self.core.shard.accept_retry_at != 0
            && self.core.shard.now >= self.core.shard.accept_retry_at
        {
            self.core.shard.accept_retry_at = 0;
            for i in 0..self.listeners.len() {
                self.accept(i);
            }
        }
    }

    // ---- close ----

    // ---- deadlines ----

    // ---- wake-ups and shutdown ----

    /// The eventfd is readable: drain it, then see whether shutdown was asked for. Woken
    /// handler tasks are collected every turn by [`Shard::run_woken`].
    fn on_wake(&mut self) {
        self.core.shard.stats.enters += 1;
        let _ = sys::read_eventfd(self.core.shard.wakeup.eventfd().raw());
        #[cfg(debug_assertions)]
        self.core.shard.wakeup.panic_if_asked();
        if self.core.shard.wakeup.shutdown_requested() && !self.core.shard.draining {
            self.begin_drain();
        }
    }
}

/// Runs a route's operation now; one that would block waits for its socket's readiness, once
/// (`EPOLLONESHOT`, reported with `tag`), and returns `None`.
fn run_or_wait(ep: &sys::Epoll, op: &mut crate::io::IoOp, tag: u64, ctls: &mut u64) -> Option<i32> {
    if let crate::io::IoOp::Sleep = op {
        return None; // the driver's deadline ends it
    }
    let r = op.run_now();
    if !op.would_block(r) {
        return Some(r);
    }
    let (fd, want) = op.readiness()?;
    let events = match want {
        crate::io::Readiness::Readable => sys::IN | sys::RDHUP,
        crate::io::Readiness::Writable => sys::OUT,
    } | sys::ONESHOT;
    *ctls += 1;
    match ep.rearm(fd, events, tag) {
        Ok(()) => None,
        Err(e) => Some(-e.raw_os_error().unwrap_or(libc::EIO)),
    }
}

/// The shared half (`crate::engine`) calls back into these.
impl<H: Handler> Engine for Shard<H> {
    type H = H;
    type C = Connection;

    fn core(&mut self) -> &mut Core<H, Connection> {
        &mut self.core
    }

    /// Closes now. Nothing is in flight in the kernel, so the connection goes at once; closing
    /// its descriptor also takes it out of the epoll set.
    fn abort(&mut self, slot: u32) {
        if !self.core.conns.contains(slot as usize) {
            return;
        }
        // Its timer entries go stale: they carry this connection's generation.
        let mut c = self.core.conns.remove(slot as usize);
        self.core.shard.stats.requests += c.session.answered();
        self.core.shard.pool.give(c.session.into_output());
        self.core.shard.stats.closed += 1;
        if self.core.shard.at_capacity && self.core.shard.may_accept(self.core.conns.len()) {
            // Below the low-water mark: what waited in the backlog brings no new edge.
            self.resume_accepts = true;
        }
    }

    /// After a session produced output or changed state: queue the write, apply backpressure,
    /// move the deadline.
    fn after_output(&mut self, slot: u32) {
        let c = &mut self.core.conns[slot as usize];
        self.core.shard.stats.requests += c.session.answered();
        if !c.session.out.is_empty() && !c.dirty && c.writable {
            c.dirty = true;
            self.dirty.push((slot, c.gen));
        }
        // Pausing is the session's flag (`may_read`); resuming reads what waited meanwhile.
        let pressure = c.session.backpressure(c.sending());
        self.core.shard.stats.reads_paused += u64::from(pressure == Some(true));
        if pressure == Some(false) && c.readable {
            self.rearm.push((slot, c.gen));
        }
        self.core.refresh_deadline(slot);
    }

    /// Moves a connection along its close: a finishing one whose output is all written shuts
    /// its write side and lingers, reading and dropping input until EOF or the deadline; while
    /// draining, one that went idle closes.
    fn release_if_done(&mut self, slot: u32) {
        let Some(c) = self.core.conns.get_mut(slot as usize) else {
            return;
        };
        self.core.shard.stats.requests += c.session.answered();
        if c.session.stage == Stage::Closing {
            return self.abort(slot);
        }
        if self.core.shard.closes_idle() && c.session.is_idle(c.sending()) {
            // Its last response (begun before shutdown) is written: nothing is left to finish.
            return self.abort(slot);
        }
        if !c.session.ready_to_linger(c.sending()) {
            return;
        }
        if c.eof || c.session.peer_sends_no_more() {
            return self.abort(slot); // the peer closed, or will send no more: nothing to linger for
        }
        self.core.shard.stats.enters += 1;
        if sys::shutdown_write(c.fd.as_raw_fd()).is_err() {
            return self.abort(slot);
        }
        c.session.start_linger(self.core.shard.now);
        if c.readable {
            self.rearm.push((slot, c.gen));
        }
        self.core.refresh_deadline(slot);
    }

    fn stop_accepting(&mut self) {
        for l in std::mem::take(&mut self.listeners) {
            self.core.shard.stats.enters += 1;
            let _ = self.ep.delete(l.fd.as_raw_fd());
        }
    }
}
