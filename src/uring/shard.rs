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

use crate::config::ServeConfig;
use std::rc::Rc;

use crate::engine::{Core, Engine, Link};
use crate::http::handler::Handler;
use crate::io::Driver;
use crate::session::{Next, Session, Stage};
use crate::shard_state::ShardState;
use crate::stats::ShardStats;
use crate::sys::sched::ThreadLoad;
use crate::timer::Millis;
use crate::token::{self, Op};
use crate::uring::bufring::BufRing;
use crate::uring::busy::{BusyGate, Talkers};
use crate::uring::ring::{Cqe, Ring, Sock};
use crate::uring::setup::{self, Features, Setup, BGID};
use crate::wake::Wakeup;

/// A connection: its socket, what the kernel holds of it, and its session.
pub(crate) struct Connection {
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
    /// It has sent data (its receives are multishot from then on).
    heard: bool,
    /// The talkers window in which it last sent data.
    talked_in: u32,
    /// Its close is submitted (right behind its last send; see `Shard::close_behind`).
    closed: bool,
    /// Queued for a send at the end of this turn.
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
    fn sending_since(&self) -> Option<Millis> {
        self.send.map(|_| self.send_since)
    }
}

/// A listening socket and the accept armed on it.
struct Listener {
    /// Closed once no accept refers to it any more (draining).
    fd: Option<OwnedFd>,
    raw: RawFd,
    /// Every shard accepts from this socket: one accept at a time, so that the shards take
    /// turns (the kernel hands a connection to the oldest waiting accept; a multishot accept
    /// never stops waiting, and would take them all).
    shared: bool,
    armed: bool,
    /// The armed accept is multishot.
    multishot: bool,
}

/// A shard ready to run: its ring is set up and its buffers registered.
pub struct Shard<H: Handler> {
    core: Core<H, Connection>,
    // Field order is drop order: the ring goes before the buffers it may refer to.
    ring: Ring,
    bufs: BufRing,
    /// The listening sockets, each with its own accept (tagged with its index).
    listeners: Vec<Listener>,
    pub features: Features,
    wake_read: Option<u32>,
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
    /// Most completions handled per turn (`--reap`).
    reap_max: usize,
    /// Completions the last turn handled: what the next batched wait asks for.
    gather: usize,
    talkers: Talkers,
    /// File operations routes started (`crate::io`), submitted at the end of each turn.
    io: Rc<Driver>,
    /// Whether the shard is busy enough for batched waits (`--wait-busy`), and its thread's
    /// load, which says so.
    busy: BusyGate,
    load: ThreadLoad,
    /// The ring stopped answering: the shard must be leaked, not dropped (see `abandon`).
    abandoned: bool,
    /// Wakes of other shards' tasks made this turn, and those sent as messages whose
    /// completion has not come (each taken the ordinary way if it could not be sent).
    outbox: Vec<crate::wake::Message>,
    messages: slab::Slab<crate::wake::Message>,
}

/// Longest a wait lasts while waits batch: an idle shard then closes a load window and stops.
const IDLE_CHECK: Duration = Duration::from_millis(50);

/// Shortens a wait's timeout to at most `limit`.
fn cap(timeout: &mut Option<Duration>, limit: Duration) {
    *timeout = Some(timeout.map_or(limit, |t| t.min(limit)));
}

impl<H: Handler> Shard<H> {
    /// A shard on its ring (`setup`); errors say what the kernel refused and how to fix it.
    pub fn new(
        id: usize,
        listeners: Vec<crate::sys::socket::ListenFd>,
        cfg: &ServeConfig,
        handler: H,
        wakeup: Wakeup,
        outputs: crate::shard_state::Outputs,
    ) -> Result<Self, String> {
        let Setup {
            ring,
            bufs,
            features,
            file_slots,
            multishot_floor,
        } = setup::setup(cfg)?;
        let listeners = listeners
            .into_iter()
            .map(|l| Listener {
                raw: crate::sys::socket::raw(&l.fd),
                fd: Some(l.fd),
                shared: l.shared,
                armed: false,
                multishot: false,
            })
            .collect();
        let st = ShardState::new(id, cfg, handler, wakeup, outputs);
        let load = ThreadLoad::for_this_thread(); // this is the shard's thread
        let busy = BusyGate::new(cfg.wait_busy, st.now, load.read());
        Ok(Shard {
            core: Core::new(st),
            ring,
            bufs,
            listeners,
            features,
            wake_read: None,
            file_slots,
            files_in_use: 0,
            multishot_floor,
            cqes: Vec::with_capacity(4096),
            dirty: Vec::with_capacity(1024),
            rearm: Vec::new(),
            starved: std::collections::VecDeque::new(),
            gather: 1,
            talkers: Talkers::new(),
            io: crate::io::driver(),
            busy,
            load,
            abandoned: false,
            outbox: Vec::new(),
            messages: slab::Slab::new(),
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
            self.core.shard.cfg.buf_count,
            self.bufs.size(),
        );
        if let Some(idle) = self.core.shard.cfg.sqpoll_idle_ms {
            line += &format!(", SQPOLL (idle {idle} ms)");
        }
        if self.core.shard.cfg.send_zc > 0 {
            line += &format!(", SEND_ZC from {} B", self.core.shard.cfg.send_zc);
        }
        if self.features.direct {
            line += &format!(", {} registered file slots", self.file_slots);
        }
        if let (batch @ 2.., usec) = self.ring.wait_batching() {
            line += &format!(", waits gather up to {batch} completions for {usec} us");
            if self.core.shard.cfg.wait_busy > 0 {
                let pct = self.core.shard.cfg.wait_busy;
                line += &format!(" while the shard is at least {pct}% busy");
            }
        }
        line
    }

    /// Runs until shutdown has drained every connection, or the ring stops answering (then
    /// [`Shard::abandoned`] says so).
    pub fn run(&mut self) -> ShardStats {
        self.core.shard.wakeup.enter();
        self.core.shard.wakeup.use_messages(self.ring.raw_fd());
        self.io.set_wakeup(self.core.shard.wakeup.clone());
        self.arm_wake();
        self.arm_accept();
        loop {
            // 1. Wait once: submit everything queued last turn, sleep until completions arrive
            //    or the nearest deadline.
            let mut timeout = self.core.wait_timeout();
            if self.batching() {
                // A shard gone idle wakes once to see it, so that its gauges do not stay "busy".
                cap(&mut timeout, IDLE_CHECK);
            }
            if let Err(e) =
                self.ring
                    .submit_and_wait(timeout, token::encode(Op::Timeout, 0, 0), self.gather)
            {
                eprintln!(
                    "ringshard: shard {}: io_uring_enter failed: {e}; stopping this shard",
                    self.core.shard.id
                );
                return self.abandon();
            }
            self.core.shard.tick();
            self.core.shard.stats.gathering_waits += u64::from(self.ring.gathered());
            if self.busy.window_over(self.core.shard.now) {
                let started = self
                    .busy
                    .close_window(self.core.shard.now, self.load.read());
                self.talkers.roll();
                self.core.shard.stats.wait_batching_starts += u64::from(started && self.batching());
            }

            // 2. Every completion: accepts, received bytes (parsed and answered here), sends.
            self.ring.reap(&mut self.cqes, self.reap_max);
            self.core.shard.stats.cqes += self.cqes.len() as u64;
            self.core.shard.stats.waits_cut += u64::from(self.ring.cut_short(self.cqes.len()));
            let (recvs, sends) = (self.core.shard.stats.recvs, self.core.shard.stats.sends);
            let mut cqes = std::mem::take(&mut self.cqes);
            for cqe in cqes.drain(..) {
                self.complete(cqe);
            }
            self.cqes = cqes;

            // 3. Handler futures that were woken; 4. deadlines; 5. one send per connection,
            //    then receives and accepts to arm again.
            self.run_woken();
            self.expire();
            self.send_queued();
            self.rearm_receives();
            self.retry_accept();
            self.core.shard.flush_log();
            self.io.expire();
            self.start_io();
            self.send_messages();
            let stats = &self.core.shard.stats;
            self.gather = self.next_gather(stats.recvs - recvs, stats.sends - sends);

            self.publish();
            if self.core.shard.draining
                && self.core.conns.is_empty()
                && !self.listeners.iter().any(|l| l.armed)
                && self.io.in_flight() == 0
                && self.io.tasks() == 0
                && self.io.quiesce()
                && self.core.shard.log_is_idle()
            {
                break;
            }
        }
        self.core.shard.wakeup.stop_messages();
        self.stop_wake();
        self.counters()
    }

    /// Sends this turn's wakes of other shards' tasks as messages to their rings.
    fn send_messages(&mut self) {
        crate::wake::take_outbox(&mut self.outbox);
        for m in self.outbox.drain(..) {
            let (fd, slot, gen) = (m.ring_fd, m.slot, m.gen);
            let id = self.messages.insert(m) as u32;
            self.core.shard.stats.wake_messages_sent += 1;
            let data = token::encode(Op::Woken, slot, 0);
            self.ring
                .message(fd, data, gen as i32, token::encode(Op::Message, id, 0));
        }
    }

    /// A message's completion: one that could not be sent is taken the ordinary way (and an
    /// old kernel's refusal sends no more).
    fn on_message_sent(&mut self, id: u32, result: i32) {
        let Some(m) = self.messages.try_remove(id as usize) else {
            return;
        };
        if result < 0 {
            self.core.shard.stats.wake_messages_sent -= 1;
            if result == -libc::EINVAL || result == -libc::EOPNOTSUPP {
                crate::wake::no_messages_from_here();
            }
            m.to.wake_task(m.slot, m.gen);
        }
    }

    /// How many completions the next wait gathers, after a turn that handled `recvs` receives
    /// and started `sends` sends. A shard with CPU to spare, or with few connections talking,
    /// returns at the first completion (`uring::busy` says why). A busy one waits for its
    /// sends' completions, which come at once, and for as many receives as this turn had, at
    /// most half of the connections talking and `--wait-batch`.
    fn next_gather(&self, recvs: u64, sends: u64) -> usize {
        let limit = self.talkers.gather_limit(self.core.conns.len());
        if !self.batching() || limit <= 1 {
            return 1;
        }
        let batch = self.ring.wait_batching().0 as usize;
        (sends as usize + (recvs as usize).min(limit).min(batch)).max(1)
    }

    /// Whether this turn's wait batches: the shard is busy and the kernel can.
    fn batching(&self) -> bool {
        self.busy.on() && self.ring.wait_batching().0 > 1
    }

    /// Stops a shard whose ring no longer answers. The kernel may still hold receive and send
    /// buffers, and no completion will say when it lets go of them: they, the ring and
    /// everything else of the shard must be kept for the life of the process rather than freed
    /// under a write the kernel may yet make; the caller leaks the shard (see `server`).
    fn abandon(&mut self) -> ShardStats {
        self.abandoned = true;
        self.counters()
    }

    /// Whether the shard must be leaked rather than dropped.
    pub fn abandoned(&self) -> bool {
        self.abandoned
    }

    /// After a panic in this shard's loop, on its own thread (the ring's only submitter): every
    /// operation in flight is cancelled, so that no accept of the dead ring takes connections
    /// its replacement should get, and its connections are closed, so that their clients see
    /// the end instead of waiting. The caller then leaks the shard: buffers the kernel may
    /// still write stay allocated.
    pub fn stop_after_panic(&mut self) {
        self.abandoned = true;
        self.core.shard.wakeup.stop_messages();
        let cancel = token::encode(Op::Cancel, u32::MAX, 0); // no connection's slot
        if let Err(e) = self.ring.cancel_everything(cancel, Duration::from_secs(1)) {
            eprintln!(
                "ringshard: shard {}: cannot cancel the dead ring's operations: {e}",
                self.core.shard.id
            );
        }
        // Operations hold their own references to the files: closing is safe now, and frees
        // the descriptors (a closed connection's number may be another's already: skipped).
        for (_, c) in self.core.conns.iter_mut() {
            c.session.http.drop_task(); // gives back what it held (an app slot, a queue place)
            if let (Sock::Fd(fd), false) = (c.sock, c.closed) {
                crate::sys::socket::close_abandoned(fd);
                c.closed = true;
            }
        }
        self.io.drop_tasks();
        if self.features.direct {
            self.ring.close_registered_files();
        }
        for l in &mut self.listeners {
            l.fd = None; // the process keeps its own copy
        }
    }

    /// This shard's counters, with the ring's own brought up to date.
    fn counters(&mut self) -> ShardStats {
        self.core.shard.stats.enters = self.ring.enters;
        self.core.shard.stats.sqes = self.ring.submitted;
        self.core.shard.stats.wait_batching = u64::from(self.batching());
        self.core.shard.stats.busy_percent = u64::from(self.busy.last_percent);
        self.core.shard.stats
    }

    /// Makes this shard's counters readable by `/metrics` (a few relaxed stores per turn; the
    /// latency histogram once a second).
    fn publish(&mut self) {
        self.counters();
        self.core.shard.publish();
    }

    fn complete(&mut self, cqe: Cqe) {
        let Some((op, slot, gen)) = token::decode(cqe.user_data) else {
            return;
        };
        match op {
            Op::Accept => self.on_accept(slot, cqe),
            Op::Recv => self.on_recv(slot, gen, cqe),
            Op::Send => self.on_send(slot, gen, cqe),
            Op::Wake => self.on_wake(),
            Op::Timeout => self.ring.timeout_fired(),
            // Every close is of an accepted socket; a direct one's slot is free once it is done.
            Op::Close if self.features.direct => {
                self.files_in_use = self.files_in_use.saturating_sub(1)
            }
            Op::Shutdown | Op::Reset => self.on_socket_op(slot, gen),
            Op::Io => {
                if let Some(r) = self.io_result(slot, gen, cqe.result) {
                    self.io.complete(slot, r);
                }
            }
            Op::Woken => {
                self.core.shard.stats.wake_messages_received += 1;
                self.core.woken_by_message(slot, cqe.result as u32)
            }
            Op::Message => self.on_message_sent(slot, cqe.result),
            Op::Cancel | Op::Close | Op::Connect | Op::IoCancel => {}
        }
    }

    // ---- accept ----

    /// Arms an accept on every listener that has none.
    fn arm_accept(&mut self) {
        if self.core.shard.draining {
            return;
        }
        let open = self.core.conns.len();
        if !self.core.shard.may_accept(open) {
            return; // at --max-connections: new connections wait in the backlog
        }
        let room = self.core.shard.room(open);
        let direct = self.features.direct;
        for (i, l) in self.listeners.iter_mut().enumerate() {
            if l.armed || l.fd.is_none() {
                continue;
            }
            let free = self.file_slots.saturating_sub(self.files_in_use);
            if direct && free == 0 {
                return; // a full table: connections wait in the backlog until a close completes
            }
            let ud = token::encode(Op::Accept, i as u32, 0);
            // A multishot accept may take many slots at once; near a full table, one at a time
            // never takes one that is not there (the kernel would close that connection).
            let multishot = self.features.multishot_accept
                && !l.shared
                && (!direct || free > self.multishot_floor)
                && room > self.multishot_floor as usize;
            if multishot {
                self.ring.accept_multi(l.raw, direct, ud);
            } else {
                self.ring.accept(l.raw, direct, ud);
            }
            l.armed = true;
            l.multishot = multishot;
        }
    }

    fn on_accept(&mut self, which: u32, cqe: Cqe) {
        let Some(l) = self.listeners.get_mut(which as usize) else {
            return;
        };
        if !cqe.more() {
            l.armed = false;
            if self.core.shard.draining {
                // No accept refers to it any more: close it. In a gentle drain another process
                // accepts from it too: what waits now is taken and served here first (see
                // `sys::socket::accept_waiting`).
                let fd = l.fd.take();
                if let (Some(fd), false) = (fd, self.core.shard.closes_idle()) {
                    use std::os::fd::{AsRawFd, IntoRawFd};
                    for sock in crate::sys::socket::accept_waiting(fd.as_raw_fd(), 1024) {
                        self.adopt(which, Sock::Fd(sock.into_raw_fd()));
                    }
                }
                if cqe.result < 0 {
                    return;
                }
            }
        }
        let Some(l) = self.listeners.get_mut(which as usize) else {
            return;
        };
        if cqe.result == -libc::EINVAL && l.multishot {
            // Multishot accept is decided from the kernel version (no probe can see it); a
            // kernel that refuses it gets single-shot accepts from now on.
            self.features.multishot_accept = false;
            l.multishot = false;
            eprintln!(
                "ringshard: shard {}: multishot accept refused (EINVAL); accepting one at a time",
                self.core.shard.id
            );
            return;
        }
        if cqe.result < 0 {
            if cqe.result != -libc::ECANCELED {
                // Out of descriptors or memory, or anything else: back off for 100 ms instead
                // of spinning on the error.
                self.core.shard.stats.accept_errors += 1;
                self.core.shard.accept_retry_at = self.core.shard.now + 100;
            }
            return;
        }
        let sock = if self.features.direct {
            self.files_in_use += 1;
            let free = self.file_slots.saturating_sub(self.files_in_use);
            if l.multishot && cqe.more() && free <= self.multishot_floor {
                // Going single-shot: the cancelled accept's last completion re-arms it.
                let cancel = token::encode(Op::Cancel, 0, 0);
                self.ring
                    .cancel(token::encode(Op::Accept, which, 0), cancel);
                l.multishot = false;
            }
            Sock::Fixed(cqe.result as u32)
        } else {
            Sock::Fd(cqe.result)
        };
        if self.core.shard.closes_idle() {
            self.ring.close(sock, token::encode(Op::Close, 0, 0));
            return;
        }
        // Near --max-connections, one at a time, as near a full file table.
        let room = self.core.shard.room(self.core.conns.len() + 1);
        if l.multishot && cqe.more() && room <= self.multishot_floor as usize {
            let cancel = token::encode(Op::Cancel, 0, 0);
            self.ring
                .cancel(token::encode(Op::Accept, which, 0), cancel);
            l.multishot = false;
        }
        self.adopt(which, sock);
    }

    /// A connection accepted from listener `which` joins the shard.
    fn adopt(&mut self, which: u32, sock: Sock) {
        let mut session = Session::new(self.core.shard.now);
        session.http.set_listener(which as usize);
        if let (true, Sock::Fd(fd)) = (self.core.shard.cfg.peers, sock) {
            session.http.set_peer(crate::sys::socket::peer_addr(fd));
        }
        let gen = self.core.next_gen();
        let slot = self.core.conns.insert(Connection {
            sock,
            gen,
            send: None,
            zc_result: None,
            send_since: 0,
            recv_armed: false,
            recv_multishot: false,
            socket_ops: 0,
            heard: false,
            talked_in: 0,
            closed: false,
            dirty: false,
            session,
        }) as u32;
        self.core.shard.stats.accepted += 1;
        self.arm_recv(slot);
        self.core.refresh_deadline(slot);
    }

    // ---- receive ----

    fn arm_recv(&mut self, slot: u32) {
        let c = &mut self.core.conns[slot as usize];
        if c.recv_armed {
            return;
        }
        let ud = token::encode(Op::Recv, slot, c.gen);
        // A new connection's first receive is single-shot: a client that sends one request and
        // closes then leaves no receive to cancel; one that stays gets a multishot receive next.
        let multishot = self.features.multishot_recv && c.heard;
        if multishot {
            self.ring.recv_multi(c.sock, BGID, ud);
        } else {
            self.ring.recv_select(c.sock, BGID, ud);
        }
        c.recv_armed = true;
        c.recv_multishot = multishot;
    }

    fn on_recv(&mut self, slot: u32, gen: u32, cqe: Cqe) {
        let live = self
            .core
            .conns
            .get(slot as usize)
            .is_some_and(|c| c.gen == gen);
        if !live || cqe.result <= 0 {
            // A buffer must never leak: not one for a connection that is gone, nor one a kernel
            // might attach to an end of input or an error.
            self.bufs.take_back(cqe.buffer(), cqe.result);
            if !live {
                return;
            }
        }
        let c = &mut self.core.conns[slot as usize];
        if !cqe.more() {
            c.recv_armed = false;
        }
        match cqe.result {
            n if n > 0 => {
                let Some(bid) = cqe.buffer() else { return };
                self.core.shard.stats.bytes_in += n as u64;
                self.core.shard.stats.recvs += 1;
                self.talkers.heard(&mut c.talked_in);
                c.heard = true;
                // The buffer goes back to the kernel as soon as the HTTP core has read it.
                let data = self.bufs.get(bid, n as usize);
                let pending = c.session.receive(data, &mut self.core.shard.env());
                self.bufs.recycle(bid);
                if pending {
                    self.poll_task(slot);
                }
                self.after_output(slot);
                let c = &mut self.core.conns[slot as usize];
                let reading = matches!(c.session.stage, Stage::Open | Stage::Lingering);
                if !c.recv_armed && !c.session.recv_paused && reading {
                    self.arm_recv(slot);
                }
            }
            0 => {
                let sending = c.send.is_some();
                match c.session.on_peer_closed(sending) {
                    Next::Close => self.abort(slot),
                    Next::Finish => self.after_output(slot),
                    Next::Stay => {}
                }
            }
            e if -e == libc::ENOBUFS => {
                // The buffer ring ran dry: wait in line for buffers to come back (`flush`).
                self.core.shard.stats.enobufs += 1;
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
                        self.core.shard.id
                    );
                }
                self.rearm.push((slot, gen));
            }
            _ => {
                self.core.shard.stats.recv_errors += 1;
                self.abort(slot);
            }
        }
        self.release_if_done(slot);
    }

    // ---- handler tasks (the async path) ----

    // ---- send ----

    fn start_send(&mut self, slot: u32) {
        let c = &mut self.core.conns[slot as usize];
        if c.send.is_some() || c.session.out.is_empty() || c.session.stage == Stage::Closing {
            return;
        }
        let last = c.session.sends_its_last_output();
        let buf = c.session.take_output();
        self.core.shard.stats.bytes_out += buf.len() as u64;
        let (key, zc) = self.send_buf(slot, buf, 0, last);
        let c = &mut self.core.conns[slot as usize];
        c.send = Some((key, 0));
        c.send_since = self.core.shard.now;
        if last && !zc {
            self.close_behind(slot);
        }
        self.core.refresh_deadline(slot);
    }

    /// The peer asked for the close and sends nothing more: the socket is closed right behind
    /// its last send, in the same submission, so the FIN follows the response at once (as a
    /// `close` after a `write` does) rather than turns later. The send and the receive hold the
    /// socket until they complete, and the send, made with `whole`, completes only when all of
    /// it is sent or fails; the slot stays taken until their completions arrive.
    fn close_behind(&mut self, slot: u32) {
        let c = &mut self.core.conns[slot as usize];
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
        let c = &self.core.conns[slot as usize];
        let ud = token::encode(Op::Send, slot, c.gen);
        self.core.shard.stats.sends += 1;
        let zc = self.core.shard.cfg.send_zc > 0 && buf.len() - from >= self.core.shard.cfg.send_zc;
        if zc {
            self.core.shard.stats.zc_sends += 1;
            (self.ring.send_zc(c.sock, buf, from, ud), true)
        } else {
            (self.ring.send(c.sock, buf, from, whole, ud), false)
        }
    }

    fn on_send(&mut self, slot: u32, gen: u32, mut cqe: Cqe) {
        let c = &mut self.core.conns[slot as usize];
        if cqueue::more(cqe.flags) {
            // Zero-copy: the result now, the buffer with the notification that follows.
            c.zc_result = Some(cqe.result);
            if c.session.stage == Stage::Closing {
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
        let buf = self.ring.send_done(key);
        if cqe.result < 0 {
            self.core.shard.stats.send_errors += u64::from(cqe.result != -libc::ECANCELED);
            self.core.shard.pool.give(buf);
            self.abort(slot);
            return self.release_if_done(slot);
        }
        let sent = from + cqe.result as usize;
        if sent < buf.len() && c.session.stage != Stage::Closing && !c.closed {
            // Short send: the socket buffer filled. Send the rest from where it stopped.
            self.core.shard.stats.short_sends += 1;
            let (key, _) = self.send_buf(slot, buf, sent, false);
            let c = &mut self.core.conns[slot as usize];
            c.send = Some((key, sent));
            c.send_since = self.core.shard.now;
            return self.core.refresh_deadline(slot);
        }
        // Keep the buffer if nothing is queued; an idle connection gives it back below.
        c.session.reclaim(buf, &mut self.core.shard.pool);
        if c.session.task_waiting_output && c.session.stage == Stage::Open {
            self.poll_task(slot);
        }
        let c = &mut self.core.conns[slot as usize];
        if !c.session.out.is_empty() {
            self.start_send(slot);
        } else {
            c.session.shed_output_buffer(&mut self.core.shard.pool);
        }
        self.after_output(slot);
        self.release_if_done(slot);
    }

    /// Sends what the turn's connections queued: one send per connection, all its responses
    /// of the turn together.
    fn send_queued(&mut self) {
        let mut dirty = std::mem::take(&mut self.dirty);
        for (slot, gen) in dirty.drain(..) {
            let Some(c) = self.core.get(slot, gen) else {
                continue;
            };
            c.dirty = false;
            self.start_send(slot);
            self.release_if_done(slot);
        }
        self.dirty = dirty;
    }

    /// Refills the buffer ring, then re-arms the receives that asked for it (reading resumed,
    /// or a cancelled one came back) and, oldest first, as many receives that found the ring
    /// empty as it now holds buffers (at least one): re-arming them all would have every one
    /// but a few fail again at once, turn after turn.
    fn rearm_receives(&mut self) {
        let mut rearm = std::mem::take(&mut self.rearm);
        let in_ring = self.bufs.top_up() as usize;
        let n = self.starved.len().min(in_ring.max(1));
        rearm.extend(self.starved.drain(..n));
        for (slot, gen) in rearm.drain(..) {
            let reading = self.core.get(slot, gen).is_some_and(|c| {
                !c.session.recv_paused && matches!(c.session.stage, Stage::Open | Stage::Lingering)
            });
            if reading {
                self.arm_recv(slot);
            }
        }
        self.rearm = rearm;
    }

    /// Submits the operations routes started this turn, and the cancels of those whose
    /// deadline passed or whose future went away.
    fn start_io(&mut self) {
        if self.io.has_queued() {
            let ring = &mut self.ring;
            self.io.take_cancels(|id, gen| {
                ring.cancel(
                    token::encode(Op::Io, id, gen),
                    token::encode(Op::IoCancel, 0, 0),
                );
            });
            self.io.start_queued(|id, gen, op| {
                ring.io_op(op, token::encode(Op::Io, id, gen));
                None
            });
        }
    }

    /// A route operation's result as its future should see it: a completion whose generation
    /// is not its operation's (24 bits in the tag) is dropped.
    fn io_result(&self, id: u32, gen: u32, result: i32) -> Option<i32> {
        self.io.generation(id).filter(|&g| g == gen)?;
        Some(result)
    }

    /// Accepts again once an accept error's back-off has passed (and re-arms an accept that
    /// ended).
    fn retry_accept(&mut self) {
        let st = &mut self.core.shard;
        if st.accept_retry_at != 0 && st.now >= st.accept_retry_at {
            st.accept_retry_at = 0;
        }
        if st.accept_retry_at == 0 {
            self.arm_accept();
        }
    }

    // ---- close ----

    /// For an aborted connection with a zero-copy send awaiting its notification: that send's
    /// buffer comes back only once the kernel frees the data it queued, which a peer that reads
    /// nothing never lets happen. Resetting the connection drops the data, so the notification
    /// (and the slot's release) follows.
    fn drop_queued(&mut self, slot: u32) {
        let c = &mut self.core.conns[slot as usize];
        c.socket_ops += 1;
        self.ring
            .reset(c.sock, token::encode(Op::Reset, slot, c.gen));
    }

    /// A shutdown or reset completed: the connection may now be closed.
    fn on_socket_op(&mut self, slot: u32, gen: u32) {
        if let Some(c) = self.core.get(slot, gen) {
            c.socket_ops -= 1;
            self.release_if_done(slot);
        }
    }

    // ---- deadlines ----

    // ---- wake-ups and shutdown ----

    fn arm_wake(&mut self) {
        let fd = self.core.shard.wakeup.eventfd().raw();
        self.wake_read = Some(self.ring.read_eventfd(fd, token::encode(Op::Wake, 0, 0)));
    }

    fn on_wake(&mut self) {
        if let Some(key) = self.wake_read.take() {
            self.ring.read_done(key);
        }
        #[cfg(debug_assertions)]
        self.core.shard.wakeup.panic_if_asked();
        if self.core.shard.wakeup.shutdown_requested() && !self.core.shard.draining {
            self.begin_drain();
        }
        self.arm_wake();
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

/// The shared half (`crate::engine`) calls back into these.
impl<H: Handler> Engine for Shard<H> {
    type H = H;
    type C = Connection;

    fn core(&mut self) -> &mut Core<H, Connection> {
        &mut self.core
    }

    /// Closes now: cancels what is in flight; the fd is closed once the kernel let go of it.
    fn abort(&mut self, slot: u32) {
        let c = &mut self.core.conns[slot as usize];
        if !c.session.close() {
            return; // already closing
        }
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
        self.core
            .shard
            .timers
            .set(&mut c.session.deadline, 0, slot, c.gen);
        if zc_queued {
            self.drop_queued(slot);
        }
        self.release_if_done(slot);
    }

    /// After a session produced output or changed state: queue the send, apply backpressure,
    /// move the deadline.
    fn after_output(&mut self, slot: u32) {
        let c = &mut self.core.conns[slot as usize];
        self.core.shard.stats.requests += c.session.answered();
        if !c.session.out.is_empty() && !c.dirty {
            c.dirty = true;
            self.dirty.push((slot, c.gen));
        }
        let pressure = c.session.backpressure(c.send.is_some());
        self.core.shard.stats.reads_paused += u64::from(pressure == Some(true));
        match pressure {
            Some(true) if c.recv_armed => {
                let cancel = token::encode(Op::Cancel, slot, c.gen);
                self.ring
                    .cancel(token::encode(Op::Recv, slot, c.gen), cancel);
            }
            Some(false) if matches!(c.session.stage, Stage::Open | Stage::Lingering) => {
                self.arm_recv(slot)
            }
            _ => {}
        }
        self.core.refresh_deadline(slot);
    }

    /// Moves a connection along its close: a finishing one whose output is all sent shuts its
    /// write side and lingers; a closing one is freed once no operation refers to it.
    fn release_if_done(&mut self, slot: u32) {
        let Some(c) = self.core.conns.get_mut(slot as usize) else {
            return;
        };
        self.core.shard.stats.requests += c.session.answered();
        if self.core.shard.closes_idle() && c.session.is_idle(c.send.is_some()) {
            return self.abort(slot); // went idle while draining: nothing more will come
        }
        if c.session.ready_to_linger(c.send.is_some()) {
            if !c.recv_armed || c.session.peer_sends_no_more() {
                return self.abort(slot); // nothing more can be read or will come: close at once
            }
            c.socket_ops += 1;
            self.ring
                .shutdown_write(c.sock, token::encode(Op::Shutdown, slot, c.gen));
            c.session.start_linger(self.core.shard.now);
            return self.core.refresh_deadline(slot);
        }
        if c.session.stage != Stage::Closing || c.recv_armed || c.send.is_some() || c.socket_ops > 0
        {
            return;
        }
        let c = self.core.conns.remove(slot as usize);
        if !c.closed {
            self.ring
                .close(c.sock, token::encode(Op::Close, slot, c.gen));
        }
        self.core.shard.pool.give(c.session.into_output());
        self.core.shard.stats.closed += 1;
    }

    fn stop_accepting(&mut self) {
        for (i, l) in self.listeners.iter_mut().enumerate() {
            if l.armed {
                let ud = token::encode(Op::Accept, i as u32, 0);
                self.ring.cancel(ud, token::encode(Op::Cancel, 0, 0));
            } else {
                l.fd = None;
            }
        }
    }
}
