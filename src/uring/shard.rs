//! One shard's event loop, top to bottom: accept → recv → parse → handler → send → close.
//!
//! Each turn: wait in the ring once (submitting everything queued), handle every completion,
//! run woken handler tasks, expire deadlines, then queue one send per connection that has
//! output (all responses of a read coalesced) and re-arm what needs it. Nothing here is shared
//! with another shard; the ring and the buffer ring are this thread's alone.
//!
//! What to do with a connection (HTTP, deadlines, the close sequence) is the engine-independent
//! [`Session`]'s; this file does the I/O and keeps what the kernel holds until it lets go.
use std::os::fd::{OwnedFd, RawFd};
use std::time::Duration;

use io_uring::cqueue;
use slab::Slab;

use crate::config::{RecvMode, ServeConfig, TaskRunFlag};
use crate::handler::Handler;
use crate::session::{Env, Next, Session, State};
use crate::shard_state::ShardState;
use crate::stats::ShardStats;
use crate::sys::sched::ThreadLoad;
use crate::timer::Millis;
use crate::uring::bufring::BufRing;
use crate::uring::busy::{BusyGate, Talkers};
use crate::uring::probe;
use crate::uring::ring::{Cqe, Ring, RingConfig, Sock, TaskRun};
use crate::uring::token::{self, Op};
use crate::wake::Wakeup;

/// Provided-buffer group id of the receive ring.
const BGID: u16 = 0;

/// A connection: its socket, what the kernel holds of it, and its session.
struct Connection {
    sock: Sock,
    gen: u32,
    /// Ring key of the send in flight, and how much of its buffer was sent before (short sends).
    send: Option<(u32, usize)>,
    /// A zero-copy send's result, held until its notification frees the buffer.
    zc_result: Option<i32>,
    send_since: Millis,
    recv_armed: bool,
    /// The armed receive is multishot.
    recv_multishot: bool,
    /// A shutdown or reset in flight: the kernel may run them late (a shutdown goes to a worker
    /// thread), so the descriptor is not closed, and its number or slot reused, before they end.
    socket_ops: u8,
    /// The talkers window in which it last sent data.
    talked_in: u32,
    /// Its close is submitted (right behind its last send; see `Shard::close_behind`).
    closed: bool,
    /// Queued for a send at the end of this turn.
    dirty: bool,
    s: Session,
}

/// How this shard receives and accepts, decided at start-up.
#[derive(Clone, Copy, Debug)]
pub struct Features {
    pub taskrun: TaskRun,
    pub multishot_accept: bool,
    pub multishot_recv: bool,
    /// Accepted sockets live in the ring's registered file table (`--registered-files`).
    pub direct: bool,
}

/// A shard ready to run: its ring is set up and its buffers registered.
pub struct Shard<H: Handler> {
    st: ShardState<H>,
    // Field order is drop order: the ring goes before the buffers it may refer to.
    ring: Ring,
    bufs: BufRing,
    listener: Option<OwnedFd>,
    listen_fd: RawFd,
    conns: Slab<Connection>,
    next_gen: u32,
    pub features: Features,
    wake_read: Option<u32>,
    accept_armed: bool,
    /// The armed accept is multishot.
    accept_multishot: bool,
    /// Slots in the registered file table (0: sockets are plain descriptors), how many hold a
    /// socket (accepted, and not yet closed by a completed close), and the free count at or
    /// below which accepts are single-shot.
    file_slots: u32,
    files_in_use: u32,
    multishot_floor: u32,
    cqes: Vec<Cqe>,
    dirty: Vec<(u32, u32)>,
    rearm: Vec<(u32, u32)>,
    /// Connections whose receive found the buffer ring empty, oldest first. Each turn re-arms
    /// as many as the ring then holds buffers (at least one): re-arming them all would have
    /// every one but a few fail again at once, turn after turn.
    starved: std::collections::VecDeque<(u32, u32)>,
    woken: Vec<(u32, u32)>,
    expired: Vec<(u32, u32)>,
    /// Most completions handled per turn (`--reap`).
    reap_max: usize,
    /// Completions the last turn handled: what the next batched wait asks for.
    expect: usize,
    talkers: Talkers,
    /// Whether the shard is busy enough for batched waits (`--wait-busy`), and its thread's
    /// load, which says so.
    busy: BusyGate,
    load: ThreadLoad,
}

/// Longest a wait lasts while waits batch: an idle shard then closes a load window and stops.
const IDLE_CHECK: Duration = Duration::from_millis(50);

/// Shortens a wait's timeout to at most `limit`.
fn cap(timeout: &mut Option<Duration>, limit: Duration) {
    *timeout = Some(timeout.map_or(limit, |t| t.min(limit)));
}

impl<H: Handler> Shard<H> {
    /// Sets up the ring and buffer ring; errors say what the kernel refused and how to fix it.
    pub fn new(
        id: usize,
        listener: OwnedFd,
        cfg: &ServeConfig,
        handler: H,
        wakeup: Wakeup,
    ) -> Result<Self, String> {
        let taskrun = match cfg.taskrun {
            TaskRunFlag::Auto => None,
            TaskRunFlag::Defer => Some(TaskRun::Defer),
            TaskRunFlag::Coop => Some(TaskRun::Coop),
            TaskRunFlag::Plain => Some(TaskRun::Plain),
        };
        let ring = Ring::new(RingConfig {
            entries: cfg.ring_entries,
            taskrun,
            wait_batch: cfg.wait_batch,
            min_wait_usec: cfg.wait_usec,
            sqpoll_idle_ms: cfg.sqpoll_idle_ms,
        })
        .map_err(|e| match (taskrun, cfg.sqpoll_idle_ms, e.raw_os_error()) {
            (Some(TaskRun::Defer), Some(_), _) => "--taskrun defer cannot be combined with --sqpoll: \
                deferred completions run only on the submitting thread, and SQPOLL submits from a kernel thread"
                .to_string(),
            (Some(_), _, Some(libc::EINVAL)) => {
                let flag = format!("--taskrun {:?}", cfg.taskrun).to_lowercase();
                format!("{flag}: this kernel does not support it ({e})")
            }
            (None, Some(_), Some(libc::EINVAL | libc::EPERM)) => {
                format!("--sqpoll: this kernel refused a ring with SQPOLL ({e})")
            }
            _ => crate::uring::ring::explain(&e).to_string(),
        })?;
        let bufs = BufRing::new(ring.inner(), cfg.buf_count, cfg.buf_size, BGID)
            .map_err(|e| crate::uring::ring::no_buffer_ring(&e).to_string())?;
        if cfg.wait_explicit && cfg.wait_batch > 1 && ring.wait_batching().0 == 1 {
            return Err("batched waits (--wait-batch, --wait-usec, --wait-busy) need io_uring's min-timeout wait (Linux 6.12 or later)".into());
        }
        let kernel = probe::kernel_version();
        if cfg.send_zc > 0 && !probe::opcode_supported(&ring, io_uring::opcode::SendZc::CODE) {
            return Err(format!(
                "--send-zc needs IORING_OP_SEND_ZC (Linux 6.0 or later); this is {kernel}"
            ));
        }
        let multishot_recv = match cfg.recv {
            RecvMode::Auto => probe::has_multishot_recv(kernel),
            RecvMode::Multishot if !probe::has_multishot_recv(kernel) => {
                return Err(format!(
                    "--recv multishot needs Linux 6.0 or later; this is {kernel}"
                ));
            }
            RecvMode::Multishot => true,
            RecvMode::Single => false,
        };
        let multishot_accept = probe::has_multishot_accept(kernel);
        // Accepts stay multishot while more slots are free than the backlog (which one
        // multishot accept can drain at once) plus headroom for arrivals meanwhile; then one
        // at a time.
        let multishot_floor = cfg.backlog.max(1) as u32 + 64;
        let file_slots = match cfg.registered_files {
            Some(0) => 0,
            Some(n) => {
                if !multishot_accept {
                    return Err(format!("--registered-files needs multishot accept (Linux 5.19 or later); this is {kernel}"));
                }
                ring.register_files(n).map_err(|e| {
                    format!("--registered-files {n}: the kernel refused the table ({e})")
                })?;
                n
            }
            // Direct descriptors spare every send and receive the fd-table lookup. Without
            // room for many multishot accepts (a low open-files limit), or on a kernel that
            // refuses the table, sockets are plain descriptors.
            None => {
                let n = crate::sys::limits::open_files().min(65_536) as u32;
                let roomy = n > 2 * multishot_floor;
                if roomy && multishot_accept && ring.register_files(n).is_ok() {
                    n
                } else {
                    0
                }
            }
        };
        let features = Features {
            taskrun: ring.taskrun,
            multishot_accept,
            multishot_recv,
            direct: file_slots > 0,
        };
        let listen_fd = crate::sys::socket::raw(&listener);
        let st = ShardState::new(id, cfg, handler, wakeup);
        let load = ThreadLoad::for_this_thread(); // this is the shard's thread
        let busy = BusyGate::new(cfg.wait_busy, st.now, load.read());
        Ok(Shard {
            st,
            ring,
            bufs,
            listener: Some(listener),
            listen_fd,
            conns: Slab::with_capacity(1024),
            next_gen: 1,
            features,
            wake_read: None,
            accept_armed: false,
            accept_multishot: false,
            file_slots,
            files_in_use: 0,
            multishot_floor,
            cqes: Vec::with_capacity(4096),
            dirty: Vec::with_capacity(1024),
            rearm: Vec::new(),
            starved: std::collections::VecDeque::new(),
            woken: Vec::new(),
            expired: Vec::new(),
            expect: 1,
            talkers: Talkers::new(),
            busy,
            load,
            reap_max: if cfg.reap == 0 {
                usize::MAX
            } else {
                cfg.reap as usize
            },
        })
    }

    /// The start-up line: what this shard uses.
    pub fn describe(&self) -> String {
        let kind = |multishot| {
            if multishot {
                "multishot"
            } else {
                "single-shot"
            }
        };
        let mut line = format!(
            "io_uring {}, accept {}, recv {}, {} x {} B receive buffers",
            self.features.taskrun.name(),
            kind(self.features.multishot_accept),
            kind(self.features.multishot_recv),
            self.st.cfg.buf_count,
            self.bufs.size(),
        );
        if let Some(idle) = self.st.cfg.sqpoll_idle_ms {
            line += &format!(", SQPOLL (idle {idle} ms)");
        }
        if self.st.cfg.send_zc > 0 {
            line += &format!(", SEND_ZC from {} B", self.st.cfg.send_zc);
        }
        if self.features.direct {
            line += &format!(", {} registered file slots", self.file_slots);
        }
        if let (batch @ 2.., usec) = self.ring.wait_batching() {
            line += &format!(", waits gather up to {batch} completions for {usec} us");
            if self.st.cfg.wait_busy > 0 {
                let pct = self.st.cfg.wait_busy;
                line += &format!(" while the shard is at least {pct}% busy");
            }
        }
        line
    }

    /// Runs until shutdown has drained every connection.
    pub fn run(mut self) -> ShardStats {
        self.arm_wake();
        self.arm_accept();
        loop {
            // 1. Wait once: submit everything queued last turn, sleep until completions arrive
            //    or the nearest deadline.
            let mut timeout = self
                .st
                .timers
                .next()
                .map(|at| Duration::from_millis(at.saturating_sub(self.st.now).max(1)));
            if self.st.accept_retry_at != 0 {
                cap(&mut timeout, Duration::from_millis(100));
            }
            if self.batching() {
                // A shard gone idle wakes once to see it, so that its gauges do not stay "busy".
                cap(&mut timeout, IDLE_CHECK);
            }
            if let Err(e) =
                self.ring
                    .submit_and_wait(timeout, token::encode(Op::Timeout, 0, 0), self.expect)
            {
                eprintln!(
                    "ringshard: shard {}: io_uring_enter failed: {e}; stopping this shard",
                    self.st.id
                );
                return self.abandon();
            }
            self.st.tick();
            self.st.stats.gathering_waits += u64::from(self.ring.gathered());
            if self.busy.window_over(self.st.now) {
                let started = self.busy.close_window(self.st.now, self.load.read());
                self.talkers.roll();
                self.st.stats.wait_batching_starts += u64::from(started && self.batching());
            }

            // 2. Every completion: accepts, received bytes (parsed and answered here), sends.
            self.ring.reap(&mut self.cqes, self.reap_max);
            self.st.stats.cqes += self.cqes.len() as u64;
            self.st.stats.waits_cut += u64::from(self.ring.cut_short(self.cqes.len()));
            // As many completions as this turn had is what the next wait may gather: a busy
            // shard batches, one serving a single client wakes at its first completion. A shard
            // with CPU to spare answers at once (uring::busy says why).
            self.expect = if self.batching() {
                let limit = self.talkers.gather_limit(self.conns.len());
                self.cqes.len().min(limit)
            } else {
                1
            };
            let mut cqes = std::mem::take(&mut self.cqes);
            for cqe in cqes.drain(..) {
                self.complete(cqe);
            }
            self.cqes = cqes;

            // 3. Handler futures that were woken; 4. deadlines; 5. one send per connection.
            self.run_woken();
            self.expire();
            self.flush();

            self.publish();
            if self.st.draining && self.conns.is_empty() && !self.accept_armed {
                break;
            }
        }
        self.stop_wake();
        self.counters()
    }

    /// Whether this turn's wait batches: the shard is busy and the kernel can.
    fn batching(&self) -> bool {
        self.busy.on() && self.ring.wait_batching().0 > 1
    }

    /// Stops a shard whose ring no longer answers. The kernel may still hold receive and send
    /// buffers, and no completion will say when it lets go of them: they, the ring and
    /// everything else of the shard are kept for the life of the process (which a stopped
    /// shard ends: see `server::serve`) rather than freed under a write the kernel may yet make.
    fn abandon(mut self) -> ShardStats {
        let stats = self.counters();
        std::mem::forget(self);
        stats
    }

    /// This shard's counters, with the ring's own brought up to date.
    fn counters(&mut self) -> ShardStats {
        self.st.stats.enters = self.ring.enters;
        self.st.stats.sqes = self.ring.submitted;
        self.st.stats.wait_batching = u64::from(self.batching());
        self.st.stats.busy_percent = u64::from(self.busy.last_percent);
        self.st.stats
    }

    /// Makes this shard's counters readable by `/metrics` (a few relaxed stores per turn; the
    /// latency histogram once a second).
    fn publish(&mut self) {
        self.counters();
        self.st.publish();
    }

    fn complete(&mut self, cqe: Cqe) {
        let Some((op, slot, gen)) = token::decode(cqe.user_data) else {
            return;
        };
        match op {
            Op::Accept => self.on_accept(cqe),
            Op::Recv => self.on_recv(slot, gen, cqe),
            Op::Send => self.on_send(slot, gen, cqe),
            Op::Wake => self.on_wake(),
            Op::Timeout => self.ring.timeout_fired(),
            // Every close is of an accepted socket; a direct one's slot is free once it is done.
            Op::Close if self.features.direct => {
                self.files_in_use = self.files_in_use.saturating_sub(1)
            }
            Op::Shutdown | Op::Reset => self.on_socket_op(slot, gen),
            Op::Cancel | Op::Close => {}
        }
    }

    /// Splits the borrows a session call needs from the rest of the shard.
    fn env(&mut self) -> (&mut Slab<Connection>, Env<'_, H>) {
        (&mut self.conns, self.st.env())
    }

    // ---- accept ----

    fn arm_accept(&mut self) {
        if self.accept_armed || self.st.draining || self.listener.is_none() {
            return;
        }
        let direct = self.features.direct;
        let free = self.file_slots.saturating_sub(self.files_in_use);
        if direct && free == 0 {
            return; // a full table: new connections wait in the backlog until a close completes
        }
        let ud = token::encode(Op::Accept, 0, 0);
        // A multishot accept may take many slots at once; near a full table, one at a time
        // never takes one that is not there (the kernel would close that connection).
        let multishot = self.features.multishot_accept && (!direct || free > self.multishot_floor);
        if multishot {
            self.ring.accept_multi(self.listen_fd, direct, ud);
        } else {
            self.ring.accept(self.listen_fd, direct, ud);
        }
        self.accept_armed = true;
        self.accept_multishot = multishot;
    }

    fn on_accept(&mut self, cqe: Cqe) {
        if !cqe.more() {
            self.accept_armed = false;
            if self.st.draining {
                self.listener = None; // no accept refers to it any more: close it
            }
        }
        if cqe.result == -libc::EINVAL && self.accept_multishot {
            // Multishot accept is decided from the kernel version (no probe can see it); a
            // kernel that refuses it gets single-shot accepts from now on.
            self.features.multishot_accept = false;
            self.accept_multishot = false;
            eprintln!(
                "ringshard: shard {}: multishot accept refused (EINVAL); accepting one at a time",
                self.st.id
            );
            return;
        }
        if cqe.result < 0 {
            if cqe.result != -libc::ECANCELED {
                // Out of descriptors or memory, or anything else: back off for 100 ms instead
                // of spinning on the error.
                self.st.stats.accept_errors += 1;
                self.st.accept_retry_at = self.st.now + 100;
            }
            return;
        }
        let sock = if self.features.direct {
            self.files_in_use += 1;
            let free = self.file_slots.saturating_sub(self.files_in_use);
            if self.accept_multishot && cqe.more() && free <= self.multishot_floor {
                // Going single-shot: the cancelled accept's last completion re-arms it.
                let cancel = token::encode(Op::Cancel, 0, 0);
                self.ring.cancel(token::encode(Op::Accept, 0, 0), cancel);
                self.accept_multishot = false;
            }
            Sock::Fixed(cqe.result as u32)
        } else {
            Sock::Fd(cqe.result)
        };
        if self.st.draining {
            self.ring.close(sock, token::encode(Op::Close, 0, 0));
            return;
        }
        let gen = self.next_gen;
        self.next_gen = token::next_gen(gen);
        let slot = self.conns.insert(Connection {
            sock,
            gen,
            send: None,
            zc_result: None,
            send_since: 0,
            recv_armed: false,
            recv_multishot: false,
            socket_ops: 0,
            talked_in: 0,
            closed: false,
            dirty: false,
            s: Session::new(self.st.now),
        }) as u32;
        self.st.stats.accepted += 1;
        self.arm_recv(slot);
        self.refresh_deadline(slot);
    }

    // ---- receive ----

    fn arm_recv(&mut self, slot: u32) {
        let c = &mut self.conns[slot as usize];
        if c.recv_armed {
            return;
        }
        let ud = token::encode(Op::Recv, slot, c.gen);
        if self.features.multishot_recv {
            self.ring.recv_multi(c.sock, BGID, ud);
        } else {
            self.ring.recv_select(c.sock, BGID, ud);
        }
        c.recv_armed = true;
        c.recv_multishot = self.features.multishot_recv;
    }

    fn on_recv(&mut self, slot: u32, gen: u32, cqe: Cqe) {
        let live = self.conns.get(slot as usize).is_some_and(|c| c.gen == gen);
        if !live || cqe.result <= 0 {
            // A buffer must never leak: not one for a connection that is gone, nor one a kernel
            // might attach to an end of input or an error.
            self.bufs.settle(cqe.buffer(), cqe.result);
            if !live {
                return;
            }
        }
        let c = &mut self.conns[slot as usize];
        if !cqe.more() {
            c.recv_armed = false;
        }
        match cqe.result {
            n if n > 0 => {
                let Some(bid) = cqe.buffer() else { return };
                self.st.stats.bytes_in += n as u64;
                self.st.stats.recvs += 1;
                self.talkers.heard(&mut c.talked_in);
                // The buffer goes back to the kernel as soon as the HTTP core has read it.
                let data = self.bufs.get(bid, n as usize);
                let pending = c.s.receive(data, &mut self.st.env());
                self.bufs.recycle(bid);
                if pending {
                    self.poll_task(slot);
                }
                self.after_output(slot);
                let c = &mut self.conns[slot as usize];
                let reading = matches!(c.s.state, State::Open | State::Lingering);
                if !c.recv_armed && !c.s.recv_paused && reading {
                    self.arm_recv(slot);
                }
            }
            0 => {
                let sending = c.send.is_some();
                match c.s.on_peer_closed(sending) {
                    Next::Close => self.abort(slot),
                    Next::Finish => self.after_output(slot),
                    Next::Stay => {}
                }
            }
            e if -e == libc::ENOBUFS => {
                // The buffer ring ran dry: wait in line for buffers to come back (`flush`).
                self.st.stats.enobufs += 1;
                self.starved.push_back((slot, gen));
            }
            // Cancelled for backpressure (or on close): if the output drained before this
            // completion came, the resume found the recv still armed, so re-arm here.
            e if -e == libc::ECANCELED => self.rearm.push((slot, gen)),
            e if -e == libc::EINVAL && c.recv_multishot => {
                // As for accept: a kernel that refuses multishot receive gets single-shot
                // receives from the buffer ring, on this connection and every other one.
                if self.features.multishot_recv {
                    self.features.multishot_recv = false;
                    eprintln!(
                        "ringshard: shard {}: multishot recv refused (EINVAL); receiving single-shot",
                        self.st.id
                    );
                }
                self.rearm.push((slot, gen));
            }
            _ => {
                self.st.stats.recv_errors += 1;
                self.abort(slot);
            }
        }
        self.release_if_done(slot);
    }

    /// After a session produced output or changed state: queue the send, apply backpressure,
    /// move the deadline.
    fn after_output(&mut self, slot: u32) {
        let c = &mut self.conns[slot as usize];
        self.st.stats.requests += c.s.answered();
        if !c.s.out.is_empty() && !c.dirty {
            c.dirty = true;
            self.dirty.push((slot, c.gen));
        }
        match c.s.backpressure(c.send.is_some()) {
            Some(true) if c.recv_armed => {
                let cancel = token::encode(Op::Cancel, slot, c.gen);
                self.ring
                    .cancel(token::encode(Op::Recv, slot, c.gen), cancel);
            }
            Some(false) if matches!(c.s.state, State::Open | State::Lingering) => {
                self.arm_recv(slot)
            }
            _ => {}
        }
        self.refresh_deadline(slot);
    }

    // ---- handler tasks (the async path) ----

    fn poll_task(&mut self, slot: u32) {
        let waker = self.st.wakeup.waker(slot, self.conns[slot as usize].gen);
        let (conns, mut env) = self.env();
        conns[slot as usize].s.poll_task(&waker, &mut env);
    }

    fn run_woken(&mut self) {
        self.st.wakeup.take_woken(&mut self.woken);
        let mut woken = std::mem::take(&mut self.woken);
        for (slot, gen) in woken.drain(..) {
            if self
                .conns
                .get(slot as usize)
                .is_some_and(|c| c.gen == gen && c.s.state != State::Closing)
            {
                self.poll_task(slot);
                self.after_output(slot);
                self.release_if_done(slot);
            }
        }
        self.woken = woken;
    }

    // ---- send ----

    fn start_send(&mut self, slot: u32) {
        let c = &mut self.conns[slot as usize];
        if c.send.is_some() || c.s.out.is_empty() || c.s.state == State::Closing {
            return;
        }
        let last = c.s.sends_its_last_output();
        let buf = std::mem::take(&mut c.s.out);
        self.st.stats.bytes_out += buf.len() as u64;
        let (key, zc) = self.send_buf(slot, buf, 0, last);
        let c = &mut self.conns[slot as usize];
        c.send = Some((key, 0));
        c.send_since = self.st.now;
        if last && !zc {
            self.close_behind(slot);
        }
        self.refresh_deadline(slot);
    }

    /// The peer asked for the close and sends nothing more: the socket is closed right behind
    /// its last send, in the same submission, so the FIN follows the response at once (as a
    /// `close` after a `write` does) rather than turns later. The send and the receive hold the
    /// socket until they complete, and the send, made with `whole`, completes only when all of
    /// it is sent or fails; the slot stays taken until their completions arrive.
    fn close_behind(&mut self, slot: u32) {
        let c = &mut self.conns[slot as usize];
        if c.recv_armed {
            let cancel = token::encode(Op::Cancel, slot, c.gen);
            self.ring
                .cancel(token::encode(Op::Recv, slot, c.gen), cancel);
        }
        self.ring
            .close(c.sock, token::encode(Op::Close, slot, c.gen));
        c.closed = true;
    }

    /// Queues `buf[from..]`, zero-copy when it is at least `--send-zc` bytes (and says so);
    /// `whole`: see [`Ring::send`].
    fn send_buf(&mut self, slot: u32, buf: Vec<u8>, from: usize, whole: bool) -> (u32, bool) {
        let c = &self.conns[slot as usize];
        let ud = token::encode(Op::Send, slot, c.gen);
        self.st.stats.sends += 1;
        let zc = self.st.cfg.send_zc > 0 && buf.len() - from >= self.st.cfg.send_zc;
        if zc {
            self.st.stats.zc_sends += 1;
            (self.ring.send_zc(c.sock, buf, from, ud), true)
        } else {
            (self.ring.send(c.sock, buf, from, whole, ud), false)
        }
    }

    fn on_send(&mut self, slot: u32, gen: u32, mut cqe: Cqe) {
        let c = &mut self.conns[slot as usize];
        if cqueue::more(cqe.flags) {
            // Zero-copy: the result now, the buffer with the notification that follows.
            c.zc_result = Some(cqe.result);
            if c.s.state == State::Closing {
                self.drop_queued(slot); // aborted before this result came
            }
            return;
        }
        if cqueue::notif(cqe.flags) {
            cqe.result = c.zc_result.take().unwrap_or(-libc::EIO);
        }
        debug_assert_eq!(
            c.gen, gen,
            "a slot is never freed while its send is in flight"
        );
        let Some((key, from)) = c.send.take() else {
            return;
        };
        let mut buf = self.ring.send_done(key);
        if cqe.result < 0 {
            self.st.stats.send_errors += u64::from(cqe.result != -libc::ECANCELED);
            self.st.pool.give(buf);
            self.abort(slot);
            return self.release_if_done(slot);
        }
        let sent = from + cqe.result as usize;
        if sent < buf.len() && c.s.state != State::Closing && !c.closed {
            // Short send: the socket buffer filled. Send the rest from where it stopped.
            self.st.stats.short_sends += 1;
            let (key, _) = self.send_buf(slot, buf, sent, false);
            let c = &mut self.conns[slot as usize];
            c.send = Some((key, sent));
            c.send_since = self.st.now;
            return self.refresh_deadline(slot);
        }
        // Keep the buffer if nothing is queued; an idle connection gives it back below.
        buf.clear();
        if c.s.out.is_empty() {
            std::mem::swap(&mut c.s.out, &mut buf);
        }
        self.st.pool.give(buf);
        if c.s.task_waiting_output && c.s.state == State::Open {
            self.poll_task(slot);
        }
        let c = &mut self.conns[slot as usize];
        if !c.s.out.is_empty() {
            self.start_send(slot);
        } else if c.s.state == State::Open {
            let out = std::mem::take(&mut c.s.out);
            self.st.pool.give(out);
        }
        self.after_output(slot);
        self.release_if_done(slot);
    }

    /// End of turn: one send per connection with output; lingering closes; re-arms.
    fn flush(&mut self) {
        let mut dirty = std::mem::take(&mut self.dirty);
        for (slot, gen) in dirty.drain(..) {
            let Some(c) = self.conns.get_mut(slot as usize).filter(|c| c.gen == gen) else {
                continue;
            };
            c.dirty = false;
            self.start_send(slot);
            self.release_if_done(slot);
        }
        self.dirty = dirty;
        let mut rearm = std::mem::take(&mut self.rearm);
        let in_ring = self.bufs.top_up() as usize;
        let n = self.starved.len().min(in_ring.max(1));
        rearm.extend(self.starved.drain(..n));
        for (slot, gen) in rearm.drain(..) {
            let ok = self.conns.get(slot as usize).is_some_and(|c| {
                c.gen == gen
                    && !c.s.recv_paused
                    && matches!(c.s.state, State::Open | State::Lingering)
            });
            if ok {
                self.arm_recv(slot);
            }
        }
        self.rearm = rearm;
        if self.st.accept_retry_at != 0 && self.st.now >= self.st.accept_retry_at {
            self.st.accept_retry_at = 0;
        }
        if self.st.accept_retry_at == 0 {
            self.arm_accept();
        }
    }

    // ---- close ----

    /// Closes now: cancels what is in flight; the fd is closed once the kernel let go of it.
    fn abort(&mut self, slot: u32) {
        let c = &mut self.conns[slot as usize];
        if c.s.state == State::Closing {
            return;
        }
        c.s.state = State::Closing;
        let cancel = token::encode(Op::Cancel, slot, c.gen);
        if c.recv_armed {
            self.ring
                .cancel(token::encode(Op::Recv, slot, c.gen), cancel);
        }
        if c.send.is_some() {
            self.ring
                .cancel(token::encode(Op::Send, slot, c.gen), cancel);
        }
        let zc_queued = c.zc_result.is_some();
        self.st.timers.set(&mut c.s.deadline, 0, slot, c.gen);
        if zc_queued {
            self.drop_queued(slot);
        }
        self.release_if_done(slot);
    }

    /// For an aborted connection with a zero-copy send awaiting its notification: that send's
    /// buffer comes back only once the kernel frees the data it queued, which a peer that reads
    /// nothing never lets happen. Resetting the connection drops the data, so the notification
    /// (and the slot's release) follows.
    fn drop_queued(&mut self, slot: u32) {
        let c = &mut self.conns[slot as usize];
        c.socket_ops += 1;
        self.ring
            .reset(c.sock, token::encode(Op::Reset, slot, c.gen));
    }

    /// A shutdown or reset completed: the connection may now be closed.
    fn on_socket_op(&mut self, slot: u32, gen: u32) {
        if let Some(c) = self.conns.get_mut(slot as usize).filter(|c| c.gen == gen) {
            c.socket_ops -= 1;
            self.release_if_done(slot);
        }
    }

    /// Moves a connection along its close: a finishing one whose output is all sent shuts its
    /// write side and lingers; a closing one is freed once no operation refers to it.
    fn release_if_done(&mut self, slot: u32) {
        let Some(c) = self.conns.get_mut(slot as usize) else {
            return;
        };
        self.st.stats.requests += c.s.answered();
        if self.st.draining && c.s.is_idle(c.send.is_some()) {
            return self.abort(slot); // went idle while draining: nothing more will come
        }
        if c.s.ready_to_linger(c.send.is_some()) {
            if !c.recv_armed || c.s.peer_sends_no_more() {
                return self.abort(slot); // nothing more can be read or will come: close at once
            }
            c.socket_ops += 1;
            self.ring
                .shutdown_write(c.sock, token::encode(Op::Shutdown, slot, c.gen));
            c.s.start_linger(self.st.now);
            return self.refresh_deadline(slot);
        }
        if c.s.state != State::Closing || c.recv_armed || c.send.is_some() || c.socket_ops > 0 {
            return;
        }
        let c = self.conns.remove(slot as usize);
        if !c.closed {
            self.ring
                .close(c.sock, token::encode(Op::Close, slot, c.gen));
        }
        self.st.pool.give(c.s.out);
        self.st.stats.closed += 1;
    }

    // ---- deadlines ----

    fn refresh_deadline(&mut self, slot: u32) {
        let c = &mut self.conns[slot as usize];
        let sending = c.send.map(|_| c.send_since);
        let at = c.s.deadline_at(sending, self.st.now, &self.st.timeouts);
        self.st.timers.set(&mut c.s.deadline, at, slot, c.gen);
    }

    fn expire(&mut self) {
        while let Some(entry) = self.st.timers.pop_due(self.st.now) {
            let (_, slot, gen) = entry;
            let Some(c) = self.conns.get_mut(slot as usize).filter(|c| c.gen == gen) else {
                continue;
            };
            if self.st.timers.settle(entry, &mut c.s.deadline, self.st.now) {
                self.expired.push((slot, gen));
            }
        }
        let mut expired = std::mem::take(&mut self.expired);
        for (slot, _) in expired.drain(..) {
            let (conns, mut env) = self.env();
            let c = &mut conns[slot as usize];
            let (next, kind) = c.s.on_deadline(c.send.is_some(), &mut env);
            self.st.stats.count_expiry(kind);
            match next {
                Next::Close => self.abort(slot),
                Next::Finish => self.after_output(slot),
                Next::Stay => {}
            }
        }
        self.expired = expired;
    }

    // ---- wake-ups and shutdown ----

    fn arm_wake(&mut self) {
        let fd = self.st.wakeup.eventfd().raw();
        self.wake_read = Some(self.ring.read_eventfd(fd, token::encode(Op::Wake, 0, 0)));
    }

    fn on_wake(&mut self) {
        if let Some(key) = self.wake_read.take() {
            self.ring.read_done(key);
        }
        if self.st.wakeup.shutdown_requested() && !self.st.draining {
            self.begin_drain();
        }
        self.arm_wake();
    }

    /// Graceful shutdown: stop accepting, close idle connections, let requests in flight
    /// finish (their responses say `Connection: close`).
    fn begin_drain(&mut self) {
        self.st.draining = true;
        if self.accept_armed {
            self.ring.cancel(
                token::encode(Op::Accept, 0, 0),
                token::encode(Op::Cancel, 0, 0),
            );
        } else {
            self.listener = None;
        }
        let idle: Vec<u32> = self
            .conns
            .iter()
            .filter(|(_, c)| c.s.is_idle(c.send.is_some()))
            .map(|(k, _)| k as u32)
            .collect();
        for slot in idle {
            self.abort(slot);
        }
    }

    /// Cancels the eventfd read and waits for it, so its buffer is not freed under the kernel.
    fn stop_wake(&mut self) {
        if self.wake_read.is_none() {
            return;
        }
        self.ring.cancel(
            token::encode(Op::Wake, 0, 0),
            token::encode(Op::Cancel, 0, 0),
        );
        for _ in 0..100 {
            let timeout = Some(Duration::from_millis(10));
            if self
                .ring
                .submit_and_wait(timeout, token::encode(Op::Timeout, 0, 0), 1)
                .is_err()
            {
                break;
            }
            self.ring.reap(&mut self.cqes, usize::MAX);
            for cqe in std::mem::take(&mut self.cqes) {
                if let Some((Op::Wake, _, _)) = token::decode(cqe.user_data) {
                    if let Some(key) = self.wake_read.take() {
                        self.ring.read_done(key);
                    }
                }
            }
            if self.wake_read.is_none() {
                break;
            }
        }
    }
}
