//! Operations a route starts on its shard's ring and awaits without blocking the shard: the
//! interface by which handlers reach files and upstream sockets.
//!
//! A handler runs on its shard's thread. [`open_beneath`], [`statx`], [`read`] and [`close`]
//! queue an operation in the shard's driver (one per shard thread) and return a future; the
//! handler returns `Reply::Later` with the future that awaits them. At the end of each loop
//! turn the shard takes the queued operations: the io_uring engine submits them to its ring
//! (`OPENAT2`, `STATX`, `READ`, `CLOSE`, `CONNECT`, `SEND`, `RECV`), so a file that is not in
//! the page cache delays only its own request; the epoll engine runs them as ordinary system
//! calls at once, and a socket operation that would block waits in its epoll set.
//!
//! A socket operation can carry a deadline: once it passes, the shard cancels the operation
//! and its future gets `TimedOut`. A socket operation whose future is dropped is cancelled too
//! (an upstream that never answers would otherwise hold its receive for ever). Tasks that no
//! connection awaits (a proxied response read on after its head went to the client) are
//! spawned here ([`spawn`]) and polled by the shard when woken.
//!
//! Ownership: an operation's path, buffers and result live in the driver, not in the future.
//! A future dropped before its operation completes (its client went away) leaves them there,
//! marked abandoned, until the kernel's completion arrives; only then are they freed (and a
//! descriptor an abandoned open returned is closed). So nothing the kernel may still write is
//! freed under it, whatever the connection does.
mod op;
mod spawn;

use std::cell::{Cell, RefCell};
use std::ffi::CString;
use std::future::Future;
use std::os::fd::{OwnedFd, RawFd};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use slab::Slab;

pub use op::{IoOp, Readiness};
pub use spawn::{spawn, spawn_background, TASK_GEN};

use crate::sys::socket::SockAddr;

enum Stage {
    Queued,
    InFlight,
    Done(i32),
    /// Its future is gone; freed when the completion arrives.
    Abandoned,
}

struct Slot {
    op: IoOp,
    stage: Stage,
    /// Tells this use of the slot from earlier ones (completions and cancels name both).
    gen: u32,
    waker: Option<Waker>,
    /// For an operation no future awaits ([`detach`]): where its result goes.
    result: Option<Rc<Cell<Option<i32>>>>,
    /// When the operation is cancelled and reports `-ETIMEDOUT`.
    deadline: Option<Instant>,
    /// Its index in `Driver::timed` while it has a deadline.
    timed: Option<usize>,
    timed_out: bool,
    /// Kept in flight by an idle pool, not by a request: a draining shard cancels it.
    background: bool,
}

/// A shard's queue of operations, their results, and its spawned tasks.
#[derive(Default)]
pub struct Driver {
    ops: RefCell<Slab<Slot>>,
    queued: RefCell<Vec<usize>>,
    next_gen: Cell<u32>,
    /// Operations with a deadline, by id; the nearest deadline among them is `next_check`.
    timed: RefCell<Vec<usize>>,
    next_check: Cell<Option<Instant>>,
    /// Operations to cancel (deadline passed, or future dropped), by (id, gen).
    cancels: RefCell<Vec<(usize, u32)>>,
    /// On the epoll engine: socket operations wait for readiness instead of the ring.
    readiness: Cell<bool>,
    tasks: spawn::Tasks,
    /// This shard's index and the number of shards.
    shard: Cell<(usize, usize)>,
}

thread_local! {
    /// The driver of the shard running on this thread.
    static DRIVER: Rc<Driver> = Rc::new(Driver::default());
}

/// This thread's driver (the shard's, on a shard thread).
pub fn driver() -> Rc<Driver> {
    DRIVER.with(Rc::clone)
}

/// This thread's shard: its index and how many shards there are ((0, 1) off a shard).
pub fn this_shard() -> (usize, usize) {
    DRIVER.with(|d| {
        let (id, n) = d.shard.get();
        (id, n.max(1))
    })
}

/// Says which shard this thread runs (before its handler is built).
pub fn set_this_shard(id: usize, count: usize) {
    DRIVER.with(|d| d.shard.set((id, count)));
}

/// Whether sockets made for this shard should be non-blocking (the epoll engine's).
pub fn nonblocking_sockets() -> bool {
    DRIVER.with(|d| d.readiness.get())
}

impl Driver {
    fn queue(&self, op: IoOp, deadline: Option<Instant>) -> usize {
        let gen = crate::token::next_gen(self.next_gen.get());
        self.next_gen.set(gen);
        let id = self.ops.borrow_mut().insert(Slot {
            op,
            stage: Stage::Queued,
            gen,
            waker: None,
            result: None,
            deadline: None,
            timed: None,
            timed_out: false,
            background: false,
        });
        self.queued.borrow_mut().push(id);
        if deadline.is_some() {
            self.set_deadline(id, deadline);
        }
        id
    }

    /// The epoll engine says so at start: socket operations then wait in its epoll set.
    pub fn use_readiness(&self) {
        self.readiness.set(true);
    }

    /// Whether operations wait to be started or cancelled.
    pub fn has_queued(&self) -> bool {
        !self.queued.borrow().is_empty() || !self.cancels.borrow().is_empty()
    }

    /// Starts every queued operation: `start(id, gen, op)` submits it (io_uring) and returns
    /// `None`, or runs it and returns its result (epoll; `None` when it waits for readiness).
    pub fn start_queued(&self, mut start: impl FnMut(u32, u32, &mut IoOp) -> Option<i32>) {
        let queued = std::mem::take(&mut *self.queued.borrow_mut());
        for id in queued {
            let result = {
                let mut ops = self.ops.borrow_mut();
                let Some(slot) = ops.get_mut(id) else {
                    continue;
                };
                if matches!(slot.stage, Stage::Abandoned) {
                    drop(ops);
                    self.remove(id); // dropped before it started: nothing to wait for
                    continue;
                }
                slot.stage = Stage::InFlight;
                start(id as u32, slot.gen, &mut slot.op)
            };
            if let Some(r) = result {
                self.complete(id as u32, r);
            }
        }
    }

    /// The generation of operation `id`, if it exists.
    pub fn generation(&self, id: u32) -> Option<u32> {
        self.ops.borrow().get(id as usize).map(|s| s.gen)
    }

    /// Runs again a socket operation that waited for readiness (epoll); `run` returns its
    /// result, or `None` to wait again.
    pub fn resume(&self, id: u32, gen: u32, run: impl FnOnce(&mut IoOp) -> Option<i32>) {
        let result = {
            let mut ops = self.ops.borrow_mut();
            match ops.get_mut(id as usize) {
                Some(slot) if slot.gen == gen && matches!(slot.stage, Stage::InFlight) => {
                    run(&mut slot.op)
                }
                Some(slot) if slot.gen == gen && matches!(slot.stage, Stage::Abandoned) => {
                    Some(-libc::ECANCELED)
                }
                _ => return,
            }
        };
        if let Some(r) = result {
            self.complete(id, r);
        }
    }

    /// Operations whose cancel is due, still in flight: `cancel(id, gen)` asks the kernel to
    /// end each (io_uring), or ends it (epoll, where it waits for readiness, not the kernel).
    pub fn take_cancels(&self, mut cancel: impl FnMut(u32, u32)) {
        let cancels = std::mem::take(&mut *self.cancels.borrow_mut());
        for (id, gen) in cancels {
            let live = self.ops.borrow().get(id).is_some_and(|s| {
                s.gen == gen && matches!(s.stage, Stage::InFlight | Stage::Abandoned)
            });
            if live {
                cancel(id as u32, gen);
            }
        }
    }

    /// An operation's completion arrived: its future is woken, or, abandoned, it is freed.
    pub fn complete(&self, id: u32, result: i32) {
        let id = id as usize;
        let mut ops = self.ops.borrow_mut();
        let Some(slot) = ops.get_mut(id) else {
            return;
        };
        if !matches!(slot.stage, Stage::InFlight | Stage::Abandoned) {
            return; // a stale readiness event (epoll)
        }
        let result = if slot.timed_out && result == -libc::ECANCELED {
            -libc::ETIMEDOUT
        } else {
            result
        };
        if matches!(slot.stage, Stage::Abandoned) {
            let open = matches!(slot.op, IoOp::OpenBeneath { .. });
            drop(ops);
            self.remove(id);
            if open && result >= 0 {
                drop(owned(result)); // opened for a future that is gone: close it
            }
            return;
        }
        if let Some(cell) = slot.result.take() {
            drop(ops);
            self.remove(id); // detached: its buffer goes now, its result to the cell
            cell.set(Some(result));
            return;
        }
        slot.stage = Stage::Done(result);
        let waker = slot.waker.take();
        drop(ops);
        self.untime(id);
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Frees an operation's slot.
    fn remove(&self, id: usize) -> Slot {
        self.untime(id);
        self.ops.borrow_mut().remove(id)
    }

    /// Sets (or clears) an operation's deadline.
    fn set_deadline(&self, id: usize, at: Option<Instant>) {
        let mut ops = self.ops.borrow_mut();
        let Some(slot) = ops.get_mut(id) else {
            return;
        };
        slot.deadline = at;
        slot.timed_out = false;
        match (at, slot.timed) {
            (Some(at), None) => {
                let mut timed = self.timed.borrow_mut();
                slot.timed = Some(timed.len());
                timed.push(id);
                if self.next_check.get().is_none_or(|c| at < c) {
                    self.next_check.set(Some(at));
                }
            }
            (Some(at), Some(_)) => {
                if self.next_check.get().is_none_or(|c| at < c) {
                    self.next_check.set(Some(at));
                }
            }
            (None, Some(_)) => {
                drop(ops);
                self.untime(id);
            }
            (None, None) => {}
        }
    }

    /// Takes an operation off the deadline list.
    fn untime(&self, id: usize) {
        let mut ops = self.ops.borrow_mut();
        let Some(i) = ops.get_mut(id).and_then(|s| s.timed.take()) else {
            return;
        };
        let mut timed = self.timed.borrow_mut();
        timed.swap_remove(i);
        if let Some(&moved) = timed.get(i) {
            ops[moved].timed = Some(i);
        }
        if timed.is_empty() {
            self.next_check.set(None);
        }
    }

    /// The nearest deadline of an operation (it may have completed since: then looking costs a
    /// scan of those with deadlines, no more).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.next_check.get()
    }

    /// Cancels the operations whose deadline has passed, and finds the next one (the clock is
    /// read only when some operation has a deadline).
    pub fn expire(&self) {
        let Some(check) = self.next_check.get() else {
            return;
        };
        let now = Instant::now();
        if check > now {
            return;
        }
        let mut next: Option<Instant> = None;
        let mut ops = self.ops.borrow_mut();
        let mut due = Vec::new();
        for &id in self.timed.borrow().iter() {
            let slot = &mut ops[id];
            let Some(at) = slot.deadline else { continue };
            if at <= now {
                if !slot.timed_out && matches!(slot.stage, Stage::InFlight | Stage::Queued) {
                    slot.timed_out = true;
                    due.push((id, slot.gen));
                }
            } else if next.is_none_or(|n| at < n) {
                next = Some(at);
            }
        }
        drop(ops);
        for (id, gen) in due {
            self.untime(id);
            self.cancel(id, gen);
        }
        self.next_check.set(next);
    }

    /// Asks for an operation to be cancelled at the end of the turn; one not yet started
    /// simply completes.
    fn cancel(&self, id: usize, gen: u32) {
        let (queued, sleep) = self.ops.borrow().get(id).map_or((false, false), |s| {
            (
                matches!(s.stage, Stage::Queued),
                matches!(s.op, IoOp::Sleep),
            )
        });
        if sleep {
            // No kernel operation to cancel: its end is the deadline's.
            self.queued.borrow_mut().retain(|&q| q != id);
            self.ops.borrow_mut()[id].stage = Stage::InFlight;
            self.complete(id as u32, -libc::ECANCELED);
        } else if queued {
            self.queued.borrow_mut().retain(|&q| q != id);
            self.ops.borrow_mut()[id].stage = Stage::InFlight;
            self.complete(id as u32, -libc::ECANCELED);
        } else {
            self.cancels.borrow_mut().push((id, gen));
        }
    }

    /// Operations started for requests and not yet complete (a shard waits for them before it
    /// exits).
    pub fn in_flight(&self) -> usize {
        self.ops
            .borrow()
            .iter()
            .filter(|(_, s)| {
                // A sleep holds nothing of the kernel's; a background task's is dropped with it.
                !s.background
                    && !matches!(s.op, IoOp::Sleep)
                    && matches!(s.stage, Stage::InFlight | Stage::Abandoned)
            })
            .count()
    }

    /// For a shard that has drained its connections: drops its background tasks, cancels the
    /// operations idle pools keep in flight, and says whether all of them have completed (the
    /// shard exits only then: their buffers are the kernel's until they do).
    pub fn quiesce(&self) -> bool {
        self.tasks.drop_background();
        let live: Vec<(usize, u32)> = self
            .ops
            .borrow()
            .iter()
            .filter(|(_, s)| s.background && matches!(s.stage, Stage::InFlight | Stage::Abandoned))
            .map(|(id, s)| (id, s.gen))
            .collect();
        if live.is_empty() {
            return true;
        }
        let mut cancels = self.cancels.borrow_mut();
        for op in live {
            if !cancels.contains(&op) {
                cancels.push(op);
            }
        }
        false
    }

    /// Polls spawned task `id` (its waker fired).
    pub fn poll_spawned(&self, id: u32, waker: &Waker) {
        self.tasks.poll(id, waker);
    }

    /// Spawned tasks not finished.
    /// A dead shard's tasks are dropped (see `spawn::Tasks::drop_all`).
    pub fn drop_tasks(&self) {
        self.tasks.drop_all();
    }

    pub fn tasks(&self) -> usize {
        self.tasks.len()
    }

    /// Gives the driver the shard's wake-up channel, through which spawned tasks are woken.
    pub fn set_wakeup(&self, wakeup: crate::wake::Wakeup) {
        self.tasks.set_wakeup(wakeup);
    }
}

/// Takes ownership of a descriptor the kernel returned.
fn owned(fd: i32) -> OwnedFd {
    crate::sys::fd::take(fd)
}

/// The future of one operation.
struct OpFuture {
    id: usize,
    driver: Rc<Driver>,
    done: bool,
}

impl OpFuture {
    /// Whether the operation has completed (its result waits to be taken).
    fn finished(&self) -> bool {
        self.done
            || self
                .driver
                .ops
                .borrow()
                .get(self.id)
                .is_some_and(|s| matches!(s.stage, Stage::Done(_)))
    }
}

impl Future for OpFuture {
    type Output = (i32, IoOp);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut ops = self.driver.ops.borrow_mut();
        let slot = &mut ops[self.id];
        match slot.stage {
            Stage::Done(r) => {
                drop(ops);
                let slot = self.driver.remove(self.id);
                self.done = true;
                Poll::Ready((r, slot.op))
            }
            _ => {
                if !slot.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    slot.waker = Some(cx.waker().clone());
                }
                Poll::Pending
            }
        }
    }
}

impl Drop for OpFuture {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut ops = self.driver.ops.borrow_mut();
        let Some(slot) = ops.get_mut(self.id) else {
            return;
        };
        match slot.stage {
            Stage::Done(r) => {
                let open = matches!(slot.op, IoOp::OpenBeneath { .. });
                drop(ops);
                self.driver.remove(self.id);
                if open && r >= 0 {
                    drop(owned(r));
                }
            }
            // The kernel may still use its buffers: keep them until the completion. A socket
            // operation may wait for ever (a peer that sends nothing): cancel it.
            _ if matches!(slot.op, IoOp::Sleep) => {
                drop(ops);
                self.driver.queued.borrow_mut().retain(|&q| q != self.id);
                self.driver.remove(self.id); // nothing in the kernel refers to it
            }
            _ => {
                let socket = slot.op.readiness().is_some();
                let queued = matches!(slot.stage, Stage::Queued);
                slot.stage = Stage::Abandoned;
                let gen = slot.gen;
                drop(ops);
                if queued {
                    return; // freed when the queue is next started
                }
                if socket {
                    self.driver.cancels.borrow_mut().push((self.id, gen));
                }
            }
        }
    }
}

fn submit(op: IoOp) -> OpFuture {
    submit_until(op, None)
}

fn submit_until(op: IoOp, deadline: Option<Instant>) -> OpFuture {
    let driver = driver();
    let id = driver.queue(op, deadline);
    OpFuture {
        id,
        driver,
        done: false,
    }
}

fn check(r: i32) -> std::io::Result<i32> {
    if r < 0 {
        Err(std::io::Error::from_raw_os_error(-r))
    } else {
        Ok(r)
    }
}

/// Starts an operation no future awaits: its buffers stay with the driver until its completion,
/// whose result is then put in the returned cell (the shard's access log checks it each turn).
pub fn detach(op: IoOp) -> Rc<Cell<Option<i32>>> {
    let driver = driver();
    let id = driver.queue(op, None);
    let cell = Rc::new(Cell::new(None));
    driver.ops.borrow_mut()[id].result = Some(cell.clone());
    cell
}

/// Opens `path` for reading, resolved by the kernel beneath `dir`: no `..`, absolute path or
/// symlink can reach outside it, and no magic link is followed.
pub async fn open_beneath(dir: RawFd, path: &str) -> std::io::Result<OwnedFd> {
    let path = CString::new(path).map_err(|_| std::io::ErrorKind::InvalidInput)?;
    let how = Box::new(crate::sys::fd::open_how_beneath());
    let (r, _) = submit(IoOp::OpenBeneath { dir, path, how }).await;
    check(r).map(owned)
}

/// The file's size, type and times (`STATX_BASIC_STATS`).
pub async fn statx(fd: &OwnedFd) -> std::io::Result<libc::statx> {
    use std::os::fd::AsRawFd;
    let buf = Box::new(crate::sys::fd::zeroed_statx());
    let (r, op) = submit(IoOp::Statx {
        fd: fd.as_raw_fd(),
        buf,
    })
    .await;
    check(r)?;
    match op {
        IoOp::Statx { buf, .. } => Ok(*buf),
        _ => unreachable!("a statx gives back its own buffer"),
    }
}

/// Reads into `buf` (its whole length) from `offset`; returns the buffer, truncated to what
/// was read.
pub async fn read(fd: &OwnedFd, buf: Vec<u8>, offset: u64) -> std::io::Result<Vec<u8>> {
    use std::os::fd::AsRawFd;
    let (r, op) = submit(IoOp::Read {
        fd: fd.as_raw_fd(),
        buf,
        offset,
    })
    .await;
    let n = check(r)? as usize;
    match op {
        IoOp::Read { mut buf, .. } => {
            buf.truncate(n);
            Ok(buf)
        }
        _ => unreachable!("a read gives back its own buffer"),
    }
}

/// Writes `buf` at `offset`; returns how much was written and the buffer.
pub async fn write(fd: &OwnedFd, buf: Vec<u8>, offset: u64) -> (std::io::Result<usize>, Vec<u8>) {
    use std::os::fd::AsRawFd;
    let (r, op) = submit(IoOp::Write {
        fd: fd.as_raw_fd(),
        buf,
        offset,
    })
    .await;
    match op {
        IoOp::Write { buf, .. } => (check(r).map(|n| n as usize), buf),
        _ => unreachable!("a write gives back its own buffer"),
    }
}

/// Closes a descriptor on the ring (a close is a system call the shard need not make itself).
pub async fn close(fd: OwnedFd) {
    use std::os::fd::IntoRawFd;
    let _ = submit(IoOp::Close {
        fd: fd.into_raw_fd(),
    })
    .await;
}

/// A new stream socket of `addr`'s family, for [`connect`].
pub fn socket_for(addr: &SockAddr) -> std::io::Result<OwnedFd> {
    crate::sys::socket::stream(addr.domain(), nonblocking_sockets())
}

/// Connects `fd` to `addr`; `TimedOut` if it has not by `deadline`.
pub async fn connect(fd: &OwnedFd, addr: Box<SockAddr>, deadline: Instant) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let op = IoOp::Connect {
        fd: fd.as_raw_fd(),
        addr,
        started: false,
    };
    let (r, _) = submit_until(op, Some(deadline)).await;
    check(r).map(drop)
}

/// Sends `buf[from..]` (some of it: the result says how much); gives the buffer back.
pub async fn send(
    fd: &OwnedFd,
    buf: Vec<u8>,
    from: usize,
    deadline: Instant,
) -> (std::io::Result<usize>, Vec<u8>) {
    use std::os::fd::AsRawFd;
    let op = IoOp::Send {
        fd: fd.as_raw_fd(),
        buf,
        from,
    };
    let (r, op) = submit_until(op, Some(deadline)).await;
    match op {
        IoOp::Send { buf, .. } => (check(r).map(|n| n as usize), buf),
        _ => unreachable!("a send gives back its own buffer"),
    }
}

/// Completes at `at` (on the shard's clock: the wait's timeout includes it).
pub async fn sleep_until(at: Instant) {
    let _ = submit_until(IoOp::Sleep, Some(at)).await;
}

/// A receive in flight: it can be kept (an idle pooled upstream connection keeps one armed,
/// which is how a close by the peer is seen), asked whether it has completed, given a new
/// deadline, and awaited for the bytes and the buffer.
pub struct Recv(OpFuture);

/// Starts a receive into `buf` (its whole length), to end by `deadline` if given.
pub fn recv(fd: RawFd, buf: Vec<u8>, deadline: Option<Instant>) -> Recv {
    Recv(submit_until(IoOp::Recv { fd, buf }, deadline))
}

impl Recv {
    /// Whether it has completed (data, end of stream, an error or its deadline).
    pub fn finished(&self) -> bool {
        self.0.finished()
    }

    /// Marks it as kept by an idle pool (a draining shard cancels it) or by a request.
    pub fn set_background(&self, background: bool) {
        if let Some(s) = self.0.driver.ops.borrow_mut().get_mut(self.0.id) {
            s.background = background;
        }
    }

    /// Moves its deadline.
    pub fn set_deadline(&self, at: Option<Instant>) {
        if !self.0.done {
            self.0.driver.set_deadline(self.0.id, at);
        }
    }
}

impl Future for Recv {
    /// How many bytes arrived (0: the peer closed), and the buffer.
    type Output = (std::io::Result<usize>, Vec<u8>);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match Pin::new(&mut self.0).poll(cx) {
            Poll::Ready((r, IoOp::Recv { buf, .. })) => {
                Poll::Ready((check(r).map(|n| n as usize), buf))
            }
            Poll::Ready(_) => unreachable!("a receive gives back its own buffer"),
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noop_waker() -> Waker {
        struct Noop;
        impl std::task::Wake for Noop {
            fn wake(self: std::sync::Arc<Self>) {}
        }
        Waker::from(std::sync::Arc::new(Noop))
    }

    /// A future dropped while its read is in flight leaves the buffer with the driver until
    /// the completion, which then frees it.
    #[test]
    fn an_abandoned_operation_keeps_its_buffer_until_its_completion() {
        let driver = driver();
        let mut fut = Box::pin(submit(IoOp::Read {
            fd: 0,
            buf: vec![0; 4096],
            offset: 0,
        }));
        let waker = noop_waker();
        assert!(fut
            .as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_pending());
        let mut started = Vec::new();
        driver.start_queued(|id, _, op| {
            if let IoOp::Read { buf, .. } = op {
                started.push((id, buf.as_ptr()));
            }
            None // in flight
        });
        assert_eq!(started.len(), 1);
        drop(fut);
        assert_eq!(
            driver.in_flight(),
            1,
            "the buffer stays while the kernel holds it"
        );
        driver.complete(started[0].0, 4096);
        assert_eq!(driver.in_flight(), 0);
        assert!(driver.ops.borrow().is_empty());
    }

    /// An operation completed at once (the epoll engine runs it when it is started) wakes its
    /// future with the result and its buffer.
    #[test]
    fn a_completed_read_gives_back_its_buffer() {
        let driver = driver();
        let mut fut = Box::pin(submit(IoOp::Read {
            fd: 0,
            buf: vec![0; 8],
            offset: 0,
        }));
        let waker = noop_waker();
        assert!(fut
            .as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_pending());
        driver.start_queued(|_, _, op| {
            if let IoOp::Read { buf, .. } = op {
                buf[..3].copy_from_slice(b"abc");
            }
            Some(3)
        });
        match fut.as_mut().poll(&mut Context::from_waker(&waker)) {
            Poll::Ready((3, IoOp::Read { buf, .. })) => assert_eq!(&buf[..3], b"abc"),
            _ => panic!("not ready with its buffer"),
        }
        assert!(driver.ops.borrow().is_empty());
    }
}
