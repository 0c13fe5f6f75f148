//! The shard's io_uring: set-up with feature fallback, operation builders, submit and reap.
//!
//! The ring owns every buffer it hands the kernel for a send or a read: the caller gives a
//! `Vec` away with the operation and gets it back only with the completion, so no buffer can be
//! freed or moved while the kernel may still touch it, whatever the connection does meanwhile.
#![allow(unsafe_code)] // talks to the kernel: every block carries a SAFETY comment
use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use io_uring::{cqueue, opcode, squeue, types, IoUring};
use slab::Slab;

/// How the ring is set up: which task-running mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskRun {
    /// `SINGLE_ISSUER | DEFER_TASKRUN`: completions are processed only when the shard waits.
    Defer,
    /// `COOP_TASKRUN`: no inter-processor interrupts to run completions.
    Coop,
    /// No task-running hints (oldest kernels).
    Plain,
}

impl TaskRun {
    pub fn name(self) -> &'static str {
        match self {
            TaskRun::Defer => "SINGLE_ISSUER|DEFER_TASKRUN",
            TaskRun::Coop => "COOP_TASKRUN",
            TaskRun::Plain => "plain",
        }
    }
}

/// Ring set-up knobs.
#[derive(Clone, Copy, Debug)]
pub struct RingConfig {
    pub entries: u32,
    /// `None`: the best the kernel offers; `Some`: exactly this, or fail.
    pub taskrun: Option<TaskRun>,
    /// Completions to wait for per turn before `min_wait_usec` runs out (1: return at the first).
    pub wait_batch: u32,
    /// How long a turn may wait to gather `wait_batch` completions (needs 6.12's min-timeout).
    pub min_wait_usec: u32,
    /// A kernel thread polls the submission queue, idling after this many ms (`None`: off).
    pub sqpoll_idle_ms: Option<u32>,
}

/// A socket as the ring names it: a plain descriptor, or an index in the ring's registered
/// file table (no file lookup and reference count per operation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sock {
    Fd(RawFd),
    Fixed(u32),
}

/// Builds an entry for either kind of socket.
macro_rules! on_sock {
    ($sock:expr, |$t:ident| $build:expr) => {
        match $sock {
            Sock::Fd(fd) => {
                let $t = types::Fd(fd);
                $build.build()
            }
            Sock::Fixed(i) => {
                let $t = types::Fixed(i);
                $build.build()
            }
        }
    };
}

/// One completion, copied out of the queue so the loop can submit while handling it.
#[derive(Clone, Copy, Debug)]
pub struct Cqe {
    pub user_data: u64,
    pub result: i32,
    pub flags: u32,
}

impl Cqe {
    /// More completions will follow for this multishot operation.
    pub fn more(&self) -> bool {
        cqueue::more(self.flags)
    }

    /// The provided buffer this completion filled, if any.
    pub fn buffer(&self) -> Option<u16> {
        cqueue::buffer_select(self.flags)
    }
}

/// Why io_uring cannot be used at all, with what to do about it.
#[derive(Debug)]
pub struct Unavailable {
    pub cause: String,
    pub fix: String,
}

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "io_uring is unavailable: {}. {}", self.cause, self.fix)
    }
}

/// A shard's ring.
pub struct Ring {
    ring: IoUring,
    pub taskrun: TaskRun,
    /// `io_uring_enter` can wait with a timeout (5.11+); otherwise a timeout SQE is used.
    ext_arg: bool,
    /// Batched waiting: wait for this many completions, for at most `min_wait_usec`.
    wait_batch: u32,
    min_wait_usec: u32,
    /// Completions the last wait gathered for (1: it returned at the first).
    gathering: usize,
    timeout: Box<types::Timespec>,
    timeout_armed: bool,
    /// Send buffers the kernel holds, by key.
    sends: Slab<Vec<u8>>,
    /// Eight-byte buffers for eventfd reads, by key.
    reads: Slab<Box<u64>>,
    /// Counters for what the kernel was asked to do.
    pub enters: u64,
    pub submitted: u64,
    /// A submission the kernel refused, reported by the next wait or submit.
    broken: Option<io::Error>,
    /// The kernel can leave out a successful entry's completion (5.17+).
    skip_success: bool,
}

impl Ring {
    /// Sets up a ring, trying the fastest task-running mode first unless one is named.
    pub fn new(cfg: RingConfig) -> Result<Ring, io::Error> {
        let modes: &[TaskRun] = match cfg.taskrun {
            Some(TaskRun::Defer) => &[TaskRun::Defer],
            Some(TaskRun::Coop) => &[TaskRun::Coop],
            Some(TaskRun::Plain) => &[TaskRun::Plain],
            // DEFER_TASKRUN needs the submitting task to run completions; SQPOLL has a kernel
            // thread submit instead, so the two do not mix.
            None if cfg.sqpoll_idle_ms.is_some() => &[TaskRun::Coop, TaskRun::Plain],
            None => &[TaskRun::Defer, TaskRun::Coop, TaskRun::Plain],
        };
        let mut last = io::Error::from_raw_os_error(libc::EINVAL);
        for &mode in modes {
            let mut b = IoUring::builder();
            b.setup_cqsize(cfg.entries * 4);
            if let Some(idle) = cfg.sqpoll_idle_ms {
                b.setup_sqpoll(idle);
            }
            match mode {
                TaskRun::Defer => {
                    b.setup_single_issuer().setup_defer_taskrun();
                }
                TaskRun::Coop => {
                    b.setup_coop_taskrun();
                }
                TaskRun::Plain => {}
            }
            match b.build(cfg.entries) {
                Ok(ring) => {
                    let ext_arg = ring.params().is_feature_ext_arg();
                    let skip_success = ring.params().is_feature_skip_cqe_on_success();
                    let min_timeout = ring.params().is_feature_min_timeout();
                    let batch =
                        ext_arg && min_timeout && cfg.wait_batch > 1 && cfg.min_wait_usec > 0;
                    return Ok(Ring {
                        ring,
                        taskrun: mode,
                        ext_arg,
                        wait_batch: if batch { cfg.wait_batch } else { 1 },
                        min_wait_usec: if batch { cfg.min_wait_usec } else { 0 },
                        gathering: 1,
                        timeout: Box::new(types::Timespec::new()),
                        timeout_armed: false,
                        sends: Slab::new(),
                        reads: Slab::new(),
                        enters: 0,
                        submitted: 0,
                        broken: None,
                        skip_success,
                    });
                }
                // EINVAL: this kernel lacks the flags; try the next mode.
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => last = e,
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }

    /// Completions a turn waits to gather, and for how long (1 and 0 when not batching).
    pub fn wait_batching(&self) -> (u32, u32) {
        (self.wait_batch, self.min_wait_usec)
    }

    /// Registers an empty table of `n` direct descriptors that accepts fill in.
    pub fn register_files(&self, n: u32) -> io::Result<()> {
        self.ring.submitter().register_files_sparse(n)
    }

    pub(crate) fn inner(&self) -> &IoUring {
        &self.ring
    }

    /// Queues an entry built in this module, submitting first if the queue is full.
    fn push(&mut self, sqe: squeue::Entry) {
        // SAFETY: every entry built in this module points only at memory the ring keeps alive
        // until the completion (the `sends`/`reads` slabs, the boxed timespec) or at the
        // provided-buffer ring, which outlives the ring's operations.
        unsafe { self.push_entry(sqe) }
    }

    /// Queues an entry, submitting first if the submission queue is full. If the kernel
    /// refuses that submission, the entry is dropped and the next wait (or submit) reports
    /// why: nothing is retried for ever.
    ///
    /// # Safety
    /// Memory the entry points at (buffers, addresses, timespecs) must stay valid until its
    /// completion arrives, whatever the caller does meanwhile.
    pub unsafe fn push_entry(&mut self, sqe: squeue::Entry) {
        loop {
            // SAFETY: the caller keeps the entry's memory alive until its completion.
            let pushed = unsafe { self.ring.submission().push(&sqe) };
            if pushed.is_ok() {
                self.submitted += 1;
                return;
            }
            if let Err(e) = self.submit() {
                self.broken.get_or_insert(e);
                return;
            }
        }
    }

    /// Submits what is queued, without waiting: retried on EINTR, and a bounded number of
    /// times on EBUSY or EAGAIN (the kernel short of room for a moment); any other failure,
    /// or one an earlier push met, is returned.
    pub fn submit(&mut self) -> io::Result<()> {
        if let Some(e) = self.broken.take() {
            return Err(e);
        }
        let mut busy = 0;
        loop {
            self.enters += 1;
            match self.ring.submit() {
                Ok(_) => return Ok(()),
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                Err(e)
                    if matches!(e.raw_os_error(), Some(libc::EBUSY | libc::EAGAIN))
                        && busy < 100 =>
                {
                    busy += 1;
                    std::thread::yield_now();
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Whether every queued entry has gone to the kernel.
    pub fn all_submitted(&mut self) -> bool {
        self.ring.submission().is_empty()
    }

    /// Arms a multishot accept on a listening socket.
    pub fn accept_multi(&mut self, fd: RawFd, direct: bool, ud: u64) {
        // A direct descriptor is never in the fd table, so it takes no SOCK_CLOEXEC (EINVAL).
        let flags = if direct { 0 } else { libc::SOCK_CLOEXEC };
        let e = opcode::AcceptMulti::new(types::Fd(fd))
            .allocate_file_index(direct)
            .flags(flags)
            .build();
        self.push(e.user_data(ud));
    }

    /// A single accept: on kernels without multishot accept, and for the last free slots of a
    /// registered file table (one accept in flight cannot take more than one).
    pub fn accept(&mut self, fd: RawFd, direct: bool, ud: u64) {
        let e = opcode::Accept::new(types::Fd(fd), std::ptr::null_mut(), std::ptr::null_mut());
        let e = if direct {
            e.file_index(Some(types::DestinationSlot::auto_target()))
        } else {
            e.flags(libc::SOCK_CLOEXEC)
        };
        self.push(e.build().user_data(ud));
    }

    /// Arms a multishot receive into buffers from group `bgid`.
    pub fn recv_multi(&mut self, sock: Sock, bgid: u16, ud: u64) {
        let e = on_sock!(sock, |t| opcode::RecvMulti::new(t, bgid));
        self.push(e.user_data(ud));
    }

    /// One receive into a buffer the kernel picks from group `bgid`.
    pub fn recv_select(&mut self, sock: Sock, bgid: u16, ud: u64) {
        let e = on_sock!(sock, |t| opcode::Recv::new(t, std::ptr::null_mut(), 0)
            .buf_group(bgid));
        self.push(e.flags(squeue::Flags::BUFFER_SELECT).user_data(ud));
    }

    /// Sends `buf[from..]`. The ring keeps `buf` until [`Ring::send_done`] with the returned key.
    /// `whole`: the kernel sends all of it before completing (a short send is retried inside),
    /// for a last send whose socket is closed behind it.
    pub fn send(&mut self, sock: Sock, buf: Vec<u8>, from: usize, whole: bool, ud: u64) -> u32 {
        let key = self.sends.insert(buf);
        let buf = &self.sends[key];
        let len = (buf.len() - from) as u32;
        // MSG_NOSIGNAL: a peer that went away is an error result, not SIGPIPE.
        let flags = libc::MSG_NOSIGNAL | if whole { libc::MSG_WAITALL } else { 0 };
        let ptr = buf[from..].as_ptr();
        let e = on_sock!(sock, |t| opcode::Send::new(t, ptr, len).flags(flags));
        self.push(e.user_data(ud));
        key as u32
    }

    /// Like [`Ring::send`] without copying: the kernel sends from `buf` itself and posts a
    /// second, notification completion when it no longer needs it; only then may
    /// [`Ring::send_done`] take the buffer back.
    pub fn send_zc(&mut self, sock: Sock, buf: Vec<u8>, from: usize, ud: u64) -> u32 {
        let key = self.sends.insert(buf);
        let buf = &self.sends[key];
        let len = (buf.len() - from) as u32;
        let ptr = buf[from..].as_ptr();
        let e = on_sock!(sock, |t| opcode::SendZc::new(t, ptr, len)
            .flags(libc::MSG_NOSIGNAL));
        self.push(e.user_data(ud));
        key as u32
    }

    /// Returns a send buffer once its completion has arrived.
    pub fn send_done(&mut self, key: u32) -> Vec<u8> {
        self.sends.remove(key as usize)
    }

    /// Reads an eventfd's counter; its buffer is kept until [`Ring::read_done`].
    pub fn read_eventfd(&mut self, fd: RawFd, ud: u64) -> u32 {
        let key = self.reads.insert(Box::new(0));
        let ptr: *mut u64 = &mut *self.reads[key];
        self.push(
            opcode::Read::new(types::Fd(fd), ptr.cast(), 8)
                .build()
                .user_data(ud),
        );
        key as u32
    }

    /// Releases an eventfd read buffer after its completion.
    pub fn read_done(&mut self, key: u32) {
        self.reads.remove(key as usize);
    }

    /// Asks the kernel to cancel the operation carrying `target`.
    pub fn cancel(&mut self, target: u64, ud: u64) {
        let e = opcode::AsyncCancel::new(target).build().user_data(ud);
        // Nobody reads a successful cancel's own completion (the cancelled operation's tells).
        let e = if self.skip_success {
            e.flags(squeue::Flags::SKIP_SUCCESS)
        } else {
            e
        };
        self.push(e);
    }

    /// Starts a route's file operation. Its path, buffers and result stay in the shard's
    /// driver (`crate::io`) until this entry's completion arrives.
    pub fn io_op(&mut self, op: &mut crate::io::IoOp, ud: u64) {
        use crate::io::IoOp;
        let e = match op {
            IoOp::OpenBeneath { dir, path, how } => {
                // open_how and io_uring's OpenHow are the same kernel structure.
                let how: *const libc::open_how = &**how;
                opcode::OpenAt2::new(types::Fd(*dir), path.as_ptr(), how.cast()).build()
            }
            IoOp::Statx { fd, buf } => {
                let buf: *mut libc::statx = &mut **buf;
                opcode::Statx::new(types::Fd(*fd), c"".as_ptr(), buf.cast())
                    .flags(libc::AT_EMPTY_PATH)
                    .mask(libc::STATX_BASIC_STATS)
                    .build()
            }
            IoOp::Read { fd, buf, offset } => {
                opcode::Read::new(types::Fd(*fd), buf.as_mut_ptr(), buf.len() as u32)
                    .offset(*offset)
                    .build()
            }
            IoOp::Close { fd } => opcode::Close::new(types::Fd(*fd)).build(),
            // Offset -1: the file's position, which O_APPEND puts at its end.
            IoOp::Append { fd, buf } => {
                opcode::Write::new(types::Fd(*fd), buf.as_ptr(), buf.len() as u32)
                    .offset(u64::MAX)
                    .build()
            }
            IoOp::Write { fd, buf, offset } => {
                opcode::Write::new(types::Fd(*fd), buf.as_ptr(), buf.len() as u32)
                    .offset(*offset)
                    .build()
            }
            IoOp::Connect { fd, addr, .. } => {
                opcode::Connect::new(types::Fd(*fd), addr.as_ptr(), addr.len()).build()
            }
            IoOp::Send { fd, buf, from } => {
                let rest = &buf[*from..];
                opcode::Send::new(types::Fd(*fd), rest.as_ptr(), rest.len() as u32)
                    .flags(libc::MSG_NOSIGNAL)
                    .build()
            }
            IoOp::Recv { fd, buf } => {
                opcode::Recv::new(types::Fd(*fd), buf.as_mut_ptr(), buf.len() as u32).build()
            }
            IoOp::Sleep => return, // the driver's deadline ends it
        };
        // SAFETY: the entry points into `op`'s heap allocations (path, open_how, statx buffer,
        // read, write, send or receive buffer, socket address), which the driver keeps,
        // unmoved, until this entry's completion; the statx path is a static empty string.
        unsafe { self.push_entry(e.user_data(ud)) };
    }

    /// Closes a descriptor once nothing else in flight refers to it.
    pub fn close(&mut self, sock: Sock, ud: u64) {
        let e = on_sock!(sock, |t| opcode::Close::new(t));
        self.push(e.user_data(ud));
    }

    /// Resets a connection (RST) and drops what its socket still holds to send, keeping the
    /// descriptor: a connect to `AF_UNSPEC` is TCP's disconnect.
    pub fn reset(&mut self, sock: Sock, ud: u64) {
        /// Static: the kernel may read the address after this call returns.
        static UNSPEC: libc::sockaddr = libc::sockaddr {
            sa_family: libc::AF_UNSPEC as libc::sa_family_t,
            sa_data: [0; 14],
        };
        let len = std::mem::size_of::<libc::sockaddr>() as libc::socklen_t;
        let e = on_sock!(sock, |t| opcode::Connect::new(t, &UNSPEC, len));
        self.push(e.user_data(ud));
    }

    /// Half-closes a socket for writing (lingering close).
    pub fn shutdown_write(&mut self, sock: Sock, ud: u64) {
        let e = on_sock!(sock, |t| opcode::Shutdown::new(t, libc::SHUT_WR));
        self.push(e.user_data(ud));
    }

    /// Submits everything queued and waits for at least one completion or the timeout: the one
    /// `io_uring_enter` of a loop turn.
    pub fn submit_and_wait(
        &mut self,
        timeout: Option<Duration>,
        timeout_ud: u64,
        want: usize,
    ) -> io::Result<()> {
        if let Some(e) = self.broken.take() {
            return Err(e);
        }
        self.enters += 1;
        let want = if self.wait_batch > 1 { want } else { 1 };
        self.gathering = want.max(1);
        let res = match timeout {
            _ if want > 1 => {
                // Gather `want` completions for at most `min_wait_usec`, then return as soon
                // as there is one: fewer, fuller turns under load.
                let d = timeout.unwrap_or(Duration::from_secs(3600));
                let ts = types::Timespec::new()
                    .sec(d.as_secs())
                    .nsec(d.subsec_nanos());
                let args = types::SubmitArgs::new()
                    .timespec(&ts)
                    .min_wait_usec(self.min_wait_usec);
                self.ring.submitter().submit_with_args(want, &args)
            }
            Some(d) if self.ext_arg => {
                let ts = types::Timespec::new()
                    .sec(d.as_secs())
                    .nsec(d.subsec_nanos());
                let args = types::SubmitArgs::new().timespec(&ts);
                self.ring.submitter().submit_with_args(1, &args)
            }
            Some(d) => {
                if !self.timeout_armed {
                    *self.timeout = types::Timespec::new()
                        .sec(d.as_secs())
                        .nsec(d.subsec_nanos());
                    let ptr: *const types::Timespec = &*self.timeout;
                    self.push(opcode::Timeout::new(ptr).build().user_data(timeout_ud));
                    self.timeout_armed = true;
                }
                self.ring.submit_and_wait(1)
            }
            None => self.ring.submit_and_wait(1),
        };
        match res {
            Ok(_) => Ok(()),
            Err(e) => match e.raw_os_error() {
                Some(libc::ETIME) | Some(libc::EINTR) | Some(libc::EBUSY) | Some(libc::EAGAIN) => {
                    Ok(())
                }
                _ => Err(e),
            },
        }
    }

    /// Whether the last wait asked to gather several completions.
    pub fn gathered(&self) -> bool {
        self.gathering > 1
    }

    /// Whether the last wait gathered for several completions and `got` fewer: its window ran
    /// out first. (A deadline ending the wait counts too; those are rare under load.)
    pub fn cut_short(&self, got: usize) -> bool {
        self.gathering > 1 && got < self.gathering
    }

    /// The fallback timeout SQE completed.
    pub fn timeout_fired(&mut self) {
        self.timeout_armed = false;
    }

    /// Sends the ring `ring_fd` a completion of its own (`IORING_OP_MSG_RING`, 5.18+) with
    /// `data` and `result`; this ring's completion `ud` says whether it went.
    pub fn message(&mut self, ring_fd: i32, data: u64, result: i32, ud: u64) {
        let e = opcode::MsgRingData::new(types::Fd(ring_fd), result, data, None)
            .build()
            .user_data(ud);
        self.push(e);
    }

    /// This ring's descriptor (where other shards send their messages).
    pub fn raw_fd(&self) -> i32 {
        use std::os::fd::AsRawFd;
        self.ring.as_raw_fd()
    }

    /// Cancels every operation in flight (`IORING_ASYNC_CANCEL_ANY`, 5.19+) and waits up to
    /// `limit` for the kernel to confirm. The buffers those operations used stay allocated:
    /// the caller keeps them for the life of the process.
    pub fn cancel_everything(&mut self, ud: u64, limit: Duration) -> io::Result<()> {
        let e = opcode::AsyncCancel2::new(types::CancelBuilder::any())
            .build()
            .user_data(ud);
        self.push(e);
        let deadline = std::time::Instant::now() + limit;
        let mut seen = Vec::new();
        while std::time::Instant::now() < deadline {
            self.submit_and_wait(Some(Duration::from_millis(10)), ud.wrapping_add(1), 1)?;
            seen.clear();
            self.reap(&mut seen, usize::MAX);
            if let Some(c) = seen.iter().find(|c| c.user_data == ud) {
                return match c.result {
                    r if r >= 0 || r == -libc::ENOENT => Ok(()),
                    r => Err(io::Error::from_raw_os_error(-r)),
                };
            }
        }
        Err(io::Error::from(io::ErrorKind::TimedOut))
    }

    /// Closes every socket in the registered file table (the kernel drops its references).
    pub fn close_registered_files(&mut self) {
        let _ = self.ring.submitter().unregister_files();
    }

    /// Copies up to `max` completions into `into`.
    pub fn reap(&mut self, into: &mut Vec<Cqe>, max: usize) {
        let mut cq = self.ring.completion();
        cq.sync();
        for c in cq.take(max) {
            into.push(Cqe {
                user_data: c.user_data(),
                result: c.result(),
                flags: c.flags(),
            });
        }
    }
}

/// Whether the io_uring engine can run here: sets up a tiny ring and registers a tiny
/// provided-buffer ring on it (the engine needs both), then drops them.
pub fn usable() -> Result<(), Unavailable> {
    let ring = IoUring::new(2).map_err(|e| explain(&e))?;
    let bufs = crate::uring::bufring::BufRing::new(&ring, 2, 512, 0);
    // The ring first, as in a shard: the kernel lets go of the buffers it registered.
    drop(ring);
    match bufs {
        Ok(_) => Ok(()),
        Err(e) => Err(no_buffer_ring(&e)),
    }
}

/// The fix for a locked-memory limit too low for the ring or its buffers.
const RAISE_MEMLOCK: &str =
    "Raise the memlock limit (ulimit -l unlimited, or LimitMEMLOCK= in systemd)";

/// Why a provided-buffer ring could not be registered, and the fix.
pub(crate) fn no_buffer_ring(err: &io::Error) -> Unavailable {
    match err.raw_os_error() {
        Some(libc::ENOMEM) => Unavailable {
            cause: "the provided-buffer ring could not be registered (ENOMEM), usually the locked-memory limit (ulimit -l)".into(),
            fix: format!("{RAISE_MEMLOCK}, or use --engine epoll."),
        },
        _ => Unavailable {
            cause: format!("this kernel has io_uring but refused a provided-buffer ring ({err}); it needs Linux 5.19 or later"),
            fix: "Run on Linux 6.1 or later, or use --engine epoll.".into(),
        },
    }
}

/// Turns a set-up failure into the cause and the fix.
pub fn explain(err: &io::Error) -> Unavailable {
    let disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .unwrap_or(0);
    match err.raw_os_error() {
        Some(libc::ENOSYS) => Unavailable {
            cause: "the kernel has no io_uring (ENOSYS: older than 5.1 or built without CONFIG_IO_URING)".into(),
            fix: "Run on Linux 6.1 or later, or use --engine epoll.".into(),
        },
        Some(libc::EPERM) | Some(libc::EACCES) if disabled > 0 => Unavailable {
            cause: format!("the sysctl kernel.io_uring_disabled is {disabled}"),
            fix: "Set it to 0 (sysctl -w kernel.io_uring_disabled=0), or for 1 add this user to kernel.io_uring_group; or use --engine epoll.".into(),
        },
        Some(libc::EPERM) | Some(libc::EACCES) => Unavailable {
            cause: "io_uring_setup was refused (EPERM), most likely by a seccomp filter such as Docker's default profile".into(),
            fix: "Allow io_uring_setup, io_uring_enter and io_uring_register in the seccomp profile, or use --engine epoll.".into(),
        },
        Some(libc::ENOMEM) => Unavailable {
            cause: "the ring could not be allocated (ENOMEM), usually the locked-memory limit (ulimit -l) on kernels before 5.12".into(),
            fix: format!("{RAISE_MEMLOCK}, or lower --ring-entries."),
        },
        Some(libc::EINVAL) => Unavailable {
            cause: "the kernel refused the ring parameters (EINVAL): it is too old for the requested features".into(),
            fix: "Run on Linux 6.1 or later, or lower --ring-entries.".into(),
        },
        _ => Unavailable { cause: format!("io_uring_setup failed: {err}"), fix: "Use --engine epoll.".into() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_setup_failure_names_its_cause_and_fix() {
        let cases = [
            (libc::ENOSYS, "no io_uring", "--engine epoll"),
            (libc::ENOMEM, "locked-memory limit", "ulimit -l"),
            (libc::EINVAL, "too old", "Linux 6.1"),
            (libc::EIO, "io_uring_setup failed", "--engine epoll"),
        ];
        for (errno, cause, fix) in cases {
            let why = explain(&io::Error::from_raw_os_error(errno));
            assert!(why.cause.contains(cause), "{errno}: {}", why.cause);
            assert!(why.fix.contains(fix), "{errno}: {}", why.fix);
            assert!(why.to_string().starts_with("io_uring is unavailable: "));
        }
        // EPERM: the sysctl when it is set, else a seccomp filter.
        let why = explain(&io::Error::from_raw_os_error(libc::EPERM));
        let disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
            .map(|s| s.trim() != "0")
            .unwrap_or(false);
        let (cause, fix) = if disabled {
            (
                "kernel.io_uring_disabled",
                "sysctl -w kernel.io_uring_disabled=0",
            )
        } else {
            ("seccomp", "seccomp profile")
        };
        assert!(why.cause.contains(cause), "{}", why.cause);
        assert!(why.fix.contains(fix), "{}", why.fix);

        let why = no_buffer_ring(&io::Error::from_raw_os_error(libc::EINVAL));
        assert!(why.cause.contains("5.19") && why.fix.contains("--engine epoll"));
        let why = no_buffer_ring(&io::Error::from_raw_os_error(libc::ENOMEM));
        assert!(why.cause.contains("locked-memory") && why.fix.contains("ulimit -l"));
    }

    #[test]
    fn this_kernel_can_run_the_engine() {
        // The machines this project runs on have io_uring; if this fails, the message says why.
        if let Err(why) = usable() {
            panic!("{why}");
        }
    }
}
