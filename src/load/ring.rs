//! The load generator's kernel side: one io_uring per worker thread (the shared ring core of
//! `crate::uring::ring`), its provided-buffer ring for multishot receive, the target address,
//! the encoded requests, and the sockets' registered slots. All of the load generator's
//! `unsafe` lives here.
//!
//! Ownership rule: memory the kernel may touch (receive buffers, the buffer ring, the encoded
//! requests, the target address) stays alive until every operation that could touch it has
//! completed; if the ring is dropped with operations still outstanding, that memory is leaked
//! rather than freed.
#![allow(unsafe_code)] // talks to the kernel: every block carries a SAFETY comment
use std::io;
use std::mem::ManuallyDrop;
use std::os::fd::{IntoRawFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use io_uring::{opcode, squeue, types};

use crate::token::{self, Op};
use crate::uring::bufring::BufRing;
pub use crate::uring::ring::Cqe;
use crate::uring::ring::{self as core_ring, RingConfig as CoreConfig};

use super::request::RequestSet;
use super::url::Endpoint;
use crate::sys::socket::SockAddr;

/// Buffer group id of the provided-buffer ring.
const BGID: u16 = 0;

/// Ring sizes.
pub struct RingConfig {
    pub entries: u32,
    /// Registered file slots, one per connection.
    pub slots: u32,
    pub buffers: u16,
    pub buffer_size: usize,
}

/// Most completions a closed-loop turn waits to gather, and for how long at most.
const BATCH_MAX: u32 = 64;
const BATCH_WAIT_USEC: u32 = 200;

/// One worker's io_uring with its buffers, target address and request bytes.
pub struct Ring {
    core: ManuallyDrop<core_ring::Ring>,
    bufs: ManuallyDrop<BufRing>,
    addr: ManuallyDrop<Box<SockAddr>>,
    reqs: ManuallyDrop<Arc<RequestSet>>,
    domain: libc::c_int,
    /// Operations submitted whose final completion has not been seen.
    outstanding: usize,
    /// Submissions so far, and the one each registered slot was last named in by a queued
    /// entry: a slot named since the last submission must not change yet.
    epoch: u64,
    named: Vec<u64>,
    /// Sockets done with but not yet closed: an entry still in the submission queue may name
    /// the descriptor, and closing it first would let another socket (of any thread) take the
    /// number and receive that operation.
    to_close: Vec<RawFd>,
}

impl Ring {
    pub fn new(cfg: &RingConfig, endpoint: &Endpoint, reqs: Arc<RequestSet>) -> io::Result<Self> {
        let core = core_ring::Ring::new(CoreConfig {
            entries: cfg.entries,
            taskrun: None,
            wait_batch: BATCH_MAX,
            min_wait_usec: BATCH_WAIT_USEC,
            sqpoll_idle_ms: None,
        })?;
        // Operations name sockets by registered slot: no per-operation file lookup and
        // reference count, and a slot is ours alone, unlike a descriptor number.
        core.register_files(cfg.slots)?;
        let count = cfg.buffers.next_power_of_two().max(1);
        // The server's provided-buffer ring: buffers a cache line apart, recycled in batches.
        let bufs = BufRing::new(core.inner(), count, cfg.buffer_size, BGID)?;
        let domain = match endpoint {
            Endpoint::Tcp(std::net::SocketAddr::V4(_)) => libc::AF_INET,
            Endpoint::Tcp(std::net::SocketAddr::V6(_)) => libc::AF_INET6,
            Endpoint::Unix(_) => libc::AF_UNIX,
        };
        Ok(Ring {
            core: ManuallyDrop::new(core),
            bufs: ManuallyDrop::new(bufs),
            addr: ManuallyDrop::new(Box::new(SockAddr::new(endpoint)?)),
            reqs: ManuallyDrop::new(reqs),
            domain,
            outstanding: 0,
            epoch: 1,
            named: vec![0; cfg.slots as usize],
            to_close: Vec::new(),
        })
    }

    /// Operations still owned by the kernel.
    pub fn outstanding(&self) -> usize {
        self.outstanding
    }

    /// The encoded requests sends are taken from.
    pub fn requests(&self) -> &RequestSet {
        &self.reqs
    }

    fn push(&mut self, e: squeue::Entry) {
        // SAFETY: every entry pushed here refers only to memory this ring owns and keeps alive
        // (see the module comment) or to registered sockets, which the kernel pins.
        unsafe { self.core.push_entry(e) };
        self.outstanding += 1;
    }

    /// Whether an entry queued since the last submission names `slot`.
    pub fn names(&self, slot: u32) -> bool {
        self.named[slot as usize] == self.epoch
    }

    /// Notes that a queued entry names `slot`.
    fn name(&mut self, slot: u32) {
        self.named[slot as usize] = self.epoch;
    }

    /// A new socket for the target.
    pub fn socket(&self) -> io::Result<RawFd> {
        crate::sys::socket::client(self.domain).map(IntoRawFd::into_raw_fd)
    }

    /// Puts socket `fd` in registered slot `slot` (replacing the previous one, which the
    /// kernel keeps alive until operations already issued on it finish).
    pub fn install(&mut self, slot: u32, fd: RawFd) -> io::Result<()> {
        self.core
            .inner()
            .submitter()
            .register_files_update(slot, &[fd])
            .map(drop)
    }

    /// Connects the socket in `slot` to the target.
    pub fn connect(&mut self, slot: u32, user_data: u64) {
        self.name(slot);
        let e = opcode::Connect::new(types::Fixed(slot), self.addr.as_ptr(), self.addr.len())
            .build()
            .user_data(user_data);
        self.push(e);
    }

    /// Sends `len` bytes of the encoded requests from `offset`.
    pub fn send(&mut self, slot: u32, offset: usize, len: usize, user_data: u64) {
        self.name(slot);
        let blob = self.reqs.blob();
        assert!(offset + len <= blob.len());
        let e = opcode::Send::new(types::Fixed(slot), blob[offset..].as_ptr(), len as u32)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(user_data);
        self.push(e);
    }

    /// Arms a multishot receive into the provided buffers.
    pub fn recv(&mut self, slot: u32, user_data: u64) {
        self.name(slot);
        let e = opcode::RecvMulti::new(types::Fixed(slot), BGID)
            .build()
            .user_data(user_data);
        self.push(e);
    }

    /// Cancels every operation in flight (their completions still arrive).
    pub fn cancel_all(&mut self, user_data: u64) {
        let e = opcode::AsyncCancel2::new(types::CancelBuilder::any())
            .build()
            .user_data(user_data);
        self.push(e);
    }

    /// Lets go of a socket whose exchange is over: cancels its armed receive (`recv`, by its
    /// user data), the only operation left on it, and closes it after the next submission.
    pub fn release(&mut self, fd: RawFd, recv: Option<u64>, user_data: u64) {
        if let Some(target) = recv {
            self.push(
                opcode::AsyncCancel::new(target)
                    .build()
                    .user_data(user_data),
            );
        }
        self.to_close.push(fd);
    }

    /// Shuts `fd` down (so its pending operations complete) and closes it after the next
    /// submission.
    pub fn close(&mut self, fd: RawFd) {
        crate::sys::socket::shutdown(fd);
        self.to_close.push(fd);
    }

    /// Submits and waits for at least one completion or `timeout`. With `want` above 1 and a
    /// kernel with min-timeout waits (6.12+), gathers up to `want` completions for at most
    /// [`BATCH_WAIT_USEC`] first: fewer, fuller turns in a closed loop.
    pub fn submit_and_wait(&mut self, timeout: Option<Duration>, want: usize) -> io::Result<()> {
        let r = self
            .core
            .submit_and_wait(timeout, token::encode(Op::Timeout, 0, 0), want);
        self.after_submit();
        r
    }

    /// Submits what is queued, without waiting.
    pub fn submit(&mut self) -> io::Result<()> {
        let r = self.core.submit();
        self.after_submit();
        r
    }

    /// Once every queued entry has gone in: a new epoch, and the sockets no queued entry names
    /// any more are closed.
    fn after_submit(&mut self) {
        if !self.core.all_submitted() {
            return;
        }
        self.epoch += 1;
        // Every queued entry has been issued and holds its own file reference.
        for fd in self.to_close.drain(..) {
            // SAFETY: fd is a socket of this worker that nothing refers to by number any more.
            unsafe { libc::close(fd) };
        }
    }

    /// Moves the available completions into `out` (cleared first).
    pub fn reap(&mut self, out: &mut Vec<Cqe>) {
        out.clear();
        self.core.reap(out, usize::MAX);
        out.retain(|c| {
            if let Some((Op::Timeout, _, _)) = token::decode(c.user_data) {
                self.core.timeout_fired(); // the fallback wait timer, not one of ours
                return false;
            }
            if !c.more() {
                self.outstanding -= 1;
            }
            true
        });
    }

    /// The data a receive completion delivered in buffer `bid`.
    pub fn buffer(&self, bid: u16, len: usize) -> &[u8] {
        self.bufs.get(bid, len)
    }

    /// Takes back buffer `bid` (into the ring again at `commit_buffers`).
    pub fn recycle(&mut self, bid: u16) {
        self.bufs.recycle(bid);
    }

    /// A receive completion that delivered no data: takes back any buffer it carries and
    /// notes an ENOBUFS (see `BufRing::take_back`).
    pub fn take_back_buffer(&mut self, cqe: &Cqe) {
        self.bufs.take_back(cqe.buffer(), cqe.result);
    }

    /// End of a turn: refills the buffer ring with the buffers taken back.
    pub fn commit_buffers(&mut self) {
        self.bufs.top_up();
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: each field is dropped (or leaked) exactly once, here; the io_uring goes first
        // so the kernel lets go of the buffers before they are unmapped, then the sockets whose
        // numbers no queued entry can use any more.
        unsafe {
            ManuallyDrop::drop(&mut self.core);
            for &fd in &self.to_close {
                libc::close(fd);
            }
            if self.outstanding == 0 {
                ManuallyDrop::drop(&mut self.bufs);
                ManuallyDrop::drop(&mut self.addr);
                ManuallyDrop::drop(&mut self.reqs);
            }
            // Otherwise the kernel may still write into the buffers or read the requests while
            // it tears the ring down: leak them.
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::request::RequestSpec;

    /// A submission the kernel refuses is reported by the next wait, not retried for ever: here
    /// a ring set up for a single issuer is used from another thread (EEXIST).
    #[test]
    fn a_refused_submission_is_reported_not_spun_on() {
        let reqs = RequestSet::new(
            &RequestSpec {
                method: "GET",
                host: "h",
                headers: &[],
                body: &[],
            },
            &["/".to_string()],
            1,
        );
        let cfg = RingConfig {
            entries: 1,
            slots: 1,
            buffers: 2,
            buffer_size: 64,
        };
        let ep = Endpoint::Tcp("127.0.0.1:1".parse().unwrap());
        let ring = Ring::new(&cfg, &ep, Arc::new(reqs)).unwrap();
        if !ring.core.inner().params().is_setup_single_issuer() {
            eprintln!("this kernel gave no single-issuer ring; nothing to refuse");
            return;
        }
        /// Moves the ring to another thread, which the kernel then refuses as its issuer.
        struct Across(Ring);
        // SAFETY: the ring is used by one thread at a time; only the kernel's issuer check
        // cares which one, and that is what this test exercises.
        unsafe impl Send for Across {}
        impl Across {
            fn into_inner(self) -> Ring {
                self.0
            }
        }
        let across = Across(ring);
        let got = std::thread::spawn(move || {
            let mut ring = across.into_inner();
            // The second entry finds the one-entry queue full and submits: refused.
            ring.cancel_all(1);
            ring.cancel_all(2);
            let r = ring.submit_and_wait(Some(Duration::from_millis(10)), 1);
            std::mem::forget(ring); // entries may be in flight: the memory stays
            r
        })
        .join()
        .unwrap();
        let err = got.expect_err("a refused submission must be reported");
        assert_eq!(err.raw_os_error(), Some(libc::EEXIST), "{err}");
    }
}
