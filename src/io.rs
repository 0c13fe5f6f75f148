//! Operations a route starts on its shard's ring and awaits without blocking the shard: the
//! interface by which handlers reach files (and, next, upstream sockets).
//!
//! A handler runs on its shard's thread. [`open_beneath`], [`statx`], [`read`] and [`close`]
//! queue an operation in the shard's driver (one per shard thread) and return a future; the
//! handler returns `Reply::Later` with the future that awaits them. At the end of each loop
//! turn the shard takes the queued operations: the io_uring engine submits them to its ring
//! (`OPENAT2`, `STATX`, `READ`, `CLOSE`), so a file that is not in the page cache delays only
//! its own request; the epoll engine runs them as ordinary system calls at once.
//!
//! Ownership: an operation's path, buffers and result live in the driver, not in the future.
//! A future dropped before its operation completes (its client went away) leaves them there,
//! marked abandoned, until the kernel's completion arrives; only then are they freed (and a
//! descriptor an abandoned open returned is closed). So nothing the kernel may still write is
//! freed under it, whatever the connection does.
use std::cell::RefCell;
use std::ffi::CString;
use std::future::Future;
use std::os::fd::{OwnedFd, RawFd};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use slab::Slab;

/// What the kernel is asked to do.
pub enum FileOp {
    /// `openat2(dir, path, how)`, `how` being read-only, beneath `dir`, no magic links.
    OpenBeneath {
        dir: RawFd,
        path: CString,
        how: Box<libc::open_how>,
    },
    /// `statx(fd, "", AT_EMPTY_PATH, STATX_BASIC_STATS)` into `buf`.
    Statx { fd: RawFd, buf: Box<libc::statx> },
    /// `pread(fd, buf, offset)`, into the whole of `buf`'s length.
    Read {
        fd: RawFd,
        buf: Vec<u8>,
        offset: u64,
    },
    /// `close(fd)`.
    Close { fd: RawFd },
    /// `write(fd, buf)` at the file's end (the access log's `O_APPEND` file).
    Append { fd: RawFd, buf: Vec<u8> },
}

impl FileOp {
    /// Runs the operation now with system calls (the epoll engine's way); returns what its ring
    /// completion would have: the value, or a negative errno.
    pub fn run_now(&mut self) -> i32 {
        use crate::sys::fd;
        match self {
            FileOp::OpenBeneath { dir, path, how } => fd::openat2(*dir, path, how),
            FileOp::Statx { fd: f, buf } => fd::statx(*f, buf),
            FileOp::Read { fd: f, buf, offset } => fd::pread(*f, buf, *offset),
            FileOp::Close { fd: f } => fd::close(*f),
            FileOp::Append { fd: f, buf } => fd::write(*f, buf),
        }
    }
}

enum Stage {
    Queued,
    InFlight,
    Done(i32),
    /// Its future is gone; freed when the completion arrives.
    Abandoned,
}

struct Slot {
    op: FileOp,
    stage: Stage,
    waker: Option<Waker>,
    /// For an operation no future awaits ([`detach`]): where its result goes.
    result: Option<Rc<std::cell::Cell<Option<i32>>>>,
}

/// A shard's queue of file operations and their results.
#[derive(Default)]
pub struct Driver {
    ops: RefCell<Slab<Slot>>,
    queued: RefCell<Vec<usize>>,
}

thread_local! {
    /// The driver of the shard running on this thread.
    static DRIVER: Rc<Driver> = Rc::new(Driver::default());
}

/// This thread's driver (the shard's, on a shard thread).
pub fn driver() -> Rc<Driver> {
    DRIVER.with(Rc::clone)
}

impl Driver {
    fn queue(&self, op: FileOp) -> usize {
        let id = self.ops.borrow_mut().insert(Slot {
            op,
            stage: Stage::Queued,
            waker: None,
            result: None,
        });
        self.queued.borrow_mut().push(id);
        id
    }

    /// Whether operations wait to be started.
    pub fn has_queued(&self) -> bool {
        !self.queued.borrow().is_empty()
    }

    /// Starts every queued operation: `start(id, op)` submits it (io_uring) and returns
    /// `None`, or runs it and returns its result (epoll).
    pub fn start_queued(&self, mut start: impl FnMut(u32, &mut FileOp) -> Option<i32>) {
        let queued = std::mem::take(&mut *self.queued.borrow_mut());
        for id in queued {
            let result = {
                let mut ops = self.ops.borrow_mut();
                let Some(slot) = ops.get_mut(id) else {
                    continue;
                };
                if matches!(slot.stage, Stage::Abandoned) {
                    ops.remove(id); // dropped before it started: nothing to wait for
                    continue;
                }
                slot.stage = Stage::InFlight;
                start(id as u32, &mut slot.op)
            };
            if let Some(r) = result {
                self.complete(id as u32, r);
            }
        }
    }

    /// An operation's completion arrived: its future is woken, or, abandoned, it is freed.
    pub fn complete(&self, id: u32, result: i32) {
        let mut ops = self.ops.borrow_mut();
        let Some(slot) = ops.get_mut(id as usize) else {
            return;
        };
        if matches!(slot.stage, Stage::Abandoned) {
            let slot = ops.remove(id as usize);
            if let (FileOp::OpenBeneath { .. }, fd @ 0..) = (slot.op, result) {
                drop(owned(fd)); // opened for a future that is gone: close it
            }
            return;
        }
        if let Some(cell) = slot.result.take() {
            ops.remove(id as usize); // detached: its buffer goes now, its result to the cell
            cell.set(Some(result));
            return;
        }
        slot.stage = Stage::Done(result);
        if let Some(w) = slot.waker.take() {
            drop(ops);
            w.wake();
        }
    }

    /// Operations started and not yet complete (a shard waits for them before it exits).
    pub fn in_flight(&self) -> usize {
        self.ops
            .borrow()
            .iter()
            .filter(|(_, s)| matches!(s.stage, Stage::InFlight | Stage::Abandoned))
            .count()
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

impl Future for OpFuture {
    type Output = (i32, FileOp);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut ops = self.driver.ops.borrow_mut();
        let slot = &mut ops[self.id];
        match slot.stage {
            Stage::Done(r) => {
                let slot = ops.remove(self.id);
                drop(ops);
                self.done = true;
                Poll::Ready((r, slot.op))
            }
            _ => {
                slot.waker = Some(cx.waker().clone());
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
        if let Some(slot) = ops.get_mut(self.id) {
            match slot.stage {
                Stage::Done(r) => {
                    let slot = ops.remove(self.id);
                    if let (FileOp::OpenBeneath { .. }, fd @ 0..) = (slot.op, r) {
                        drop(owned(fd));
                    }
                }
                // The kernel may still use its buffers: keep them until the completion.
                _ => slot.stage = Stage::Abandoned,
            }
        }
    }
}

fn submit(op: FileOp) -> OpFuture {
    let driver = driver();
    let id = driver.queue(op);
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
pub fn detach(op: FileOp) -> Rc<std::cell::Cell<Option<i32>>> {
    let driver = driver();
    let id = driver.queue(op);
    let cell = Rc::new(std::cell::Cell::new(None));
    driver.ops.borrow_mut()[id].result = Some(cell.clone());
    cell
}

/// Opens `path` for reading, resolved by the kernel beneath `dir`: no `..`, absolute path or
/// symlink can reach outside it, and no magic link is followed.
pub async fn open_beneath(dir: RawFd, path: &str) -> std::io::Result<OwnedFd> {
    let path = CString::new(path).map_err(|_| std::io::ErrorKind::InvalidInput)?;
    let how = Box::new(crate::sys::fd::open_how_beneath());
    let (r, _) = submit(FileOp::OpenBeneath { dir, path, how }).await;
    check(r).map(owned)
}

/// The file's size, type and times (`STATX_BASIC_STATS`).
pub async fn statx(fd: &OwnedFd) -> std::io::Result<libc::statx> {
    use std::os::fd::AsRawFd;
    let buf = Box::new(crate::sys::fd::zeroed_statx());
    let (r, op) = submit(FileOp::Statx {
        fd: fd.as_raw_fd(),
        buf,
    })
    .await;
    check(r)?;
    match op {
        FileOp::Statx { buf, .. } => Ok(*buf),
        _ => unreachable!("a statx gives back its own buffer"),
    }
}

/// Reads into `buf` (its whole length) from `offset`; returns the buffer, truncated to what
/// was read.
pub async fn read(fd: &OwnedFd, buf: Vec<u8>, offset: u64) -> std::io::Result<Vec<u8>> {
    use std::os::fd::AsRawFd;
    let (r, op) = submit(FileOp::Read {
        fd: fd.as_raw_fd(),
        buf,
        offset,
    })
    .await;
    let n = check(r)? as usize;
    match op {
        FileOp::Read { mut buf, .. } => {
            buf.truncate(n);
            Ok(buf)
        }
        _ => unreachable!("a read gives back its own buffer"),
    }
}

/// Closes a descriptor on the ring (a close is a system call the shard need not make itself).
pub async fn close(fd: OwnedFd) {
    use std::os::fd::IntoRawFd;
    let _ = submit(FileOp::Close {
        fd: fd.into_raw_fd(),
    })
    .await;
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
        let mut fut = Box::pin(submit(FileOp::Read {
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
        driver.start_queued(|id, op| {
            if let FileOp::Read { buf, .. } = op {
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
        let mut fut = Box::pin(submit(FileOp::Read {
            fd: 0,
            buf: vec![0; 8],
            offset: 0,
        }));
        let waker = noop_waker();
        assert!(fut
            .as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_pending());
        driver.start_queued(|_, op| {
            if let FileOp::Read { buf, .. } = op {
                buf[..3].copy_from_slice(b"abc");
            }
            Some(3)
        });
        match fut.as_mut().poll(&mut Context::from_waker(&waker)) {
            Poll::Ready((3, FileOp::Read { buf, .. })) => assert_eq!(&buf[..3], b"abc"),
            _ => panic!("not ready with its buffer"),
        }
        assert!(driver.ops.borrow().is_empty());
    }
}
