//! The kernel side: one io_uring per worker thread, its provided-buffer ring for multishot
//! receive, and the sockets. All of the load generator's `unsafe` lives here.
//!
//! Ownership rule: memory the kernel may touch (receive buffers, the buffer ring, the encoded
//! requests, the target address) stays alive until every operation that could touch it has
//! completed; if the ring is dropped with operations still outstanding, that memory is leaked
//! rather than freed.
#![allow(unsafe_code)] // talks to the kernel: every block carries a SAFETY comment
use std::io;
use std::mem::ManuallyDrop;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::Duration;

use io_uring::{cqueue, opcode, squeue, types, IoUring};

use super::request::RequestSet;
use super::url::Endpoint;

/// Set by the first SIGINT: workers stop and the results are still reported.
static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn on_interrupt(_: libc::c_int) {
    if INTERRUPTED.swap(true, Ordering::Relaxed) {
        // A second Ctrl-C: leave at once.
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(130) };
    }
}

/// Routes SIGINT to `interrupted()` instead of killing the process.
pub fn catch_interrupt() {
    // SAFETY: the handler only touches an atomic and calls _exit, both async-signal-safe; the
    // sigaction struct is fully initialised (zeroed, then mask emptied).
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_interrupt as extern "C" fn(libc::c_int) as usize;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGINT, &sa, std::ptr::null_mut());
    }
}

/// True once SIGINT arrived (after `catch_interrupt`).
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
}

/// Buffer group id of the provided-buffer ring.
const BGID: u16 = 0;

/// A completion, copied out of the completion queue.
#[derive(Debug, Clone, Copy)]
pub struct Cqe {
    pub user_data: u64,
    pub result: i32,
    pub flags: u32,
}

impl Cqe {
    /// The provided buffer holding received data, if any.
    pub fn buffer(&self) -> Option<u16> {
        cqueue::buffer_select(self.flags)
    }
    /// True when a multishot operation stays armed after this completion.
    pub fn more(&self) -> bool {
        cqueue::more(self.flags)
    }
}

/// A socket address in the form `connect(2)` takes.
struct SockAddr {
    storage: libc::sockaddr_storage,
    len: libc::socklen_t,
}

impl SockAddr {
    fn new(ep: &Endpoint) -> io::Result<Self> {
        let (mut storage, len) = match ep {
            Endpoint::Tcp(addr) => crate::sys::socket::sockaddr(*addr),
            // SAFETY: sockaddr_storage is plain old data; all-zero is a valid (unspecified) value.
            Endpoint::Unix(_) => (unsafe { std::mem::zeroed() }, 0),
        };
        let len = match ep {
            Endpoint::Tcp(_) => len as usize,
            Endpoint::Unix(path) => {
                use std::os::unix::ffi::OsStrExt;
                let bytes = path.as_os_str().as_bytes();
                // SAFETY: all-zero is a valid sockaddr_un.
                let mut sun: libc::sockaddr_un = unsafe { std::mem::zeroed() };
                if bytes.len() >= sun.sun_path.len() || bytes.contains(&0) {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "unix socket path too long",
                    ));
                }
                sun.sun_family = libc::AF_UNIX as libc::sa_family_t;
                for (d, s) in sun.sun_path.iter_mut().zip(bytes) {
                    *d = *s as libc::c_char;
                }
                // SAFETY: sockaddr_storage is larger than and aligned at least as sockaddr_un.
                unsafe { std::ptr::write(&mut storage as *mut _ as *mut libc::sockaddr_un, sun) };
                std::mem::size_of::<libc::sa_family_t>() + bytes.len() + 1
            }
        };
        Ok(SockAddr {
            storage,
            len: len as libc::socklen_t,
        })
    }
}

/// An anonymous private mapping (page-aligned, zeroed).
struct Mapping {
    ptr: *mut u8,
    len: usize,
}

impl Mapping {
    fn new(len: usize) -> io::Result<Self> {
        // SAFETY: a fresh anonymous mapping; no existing memory is affected.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapping {
            ptr: ptr.cast(),
            len,
        })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: ptr/len came from mmap and nothing refers to the mapping any more (the ring
        // leaks its mappings instead of dropping them while the kernel may still use them).
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// The provided-buffer ring: `count` buffers of `size` bytes the kernel picks from on receive.
struct BufRing {
    ring: Mapping,
    bufs: Mapping,
    size: usize,
    /// Distance between buffers: a cache line more than `size`, so the starts of successive
    /// buffers (where small responses land) do not all fall into the same cache sets.
    stride: usize,
    mask: u16,
    tail: u16,
}

impl BufRing {
    fn entry(&mut self, bid: u16) {
        let slot = (self.tail & self.mask) as usize;
        // SAFETY: slot < ring entries, so the entry lies inside the ring mapping; the kernel
        // only reads entries between its head and our published tail, and this one is past it.
        let e = unsafe { &mut *(self.ring.ptr as *mut types::BufRingEntry).add(slot) };
        // SAFETY: bid < count, so the buffer lies inside the buffers mapping.
        e.set_addr(unsafe { self.bufs.ptr.add(bid as usize * self.stride) } as u64);
        e.set_len(self.size as u32);
        e.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Publishes the entries written since the last call.
    fn commit(&self) {
        // SAFETY: the tail field lives inside the first entry of the ring mapping, is 2-byte
        // aligned, and is shared with the kernel only through atomic accesses.
        let tail = unsafe {
            &*(types::BufRingEntry::tail(self.ring.ptr as *const types::BufRingEntry)
                as *const AtomicU16)
        };
        tail.store(self.tail, Ordering::Release);
    }
}

/// Ring sizes.
pub struct RingConfig {
    pub entries: u32,
    /// Registered file slots, one per connection.
    pub slots: u32,
    pub buffers: u16,
    pub buffer_size: usize,
}

/// Most completions a closed-loop turn waits to gather, and for how long at most.
const BATCH_MAX: usize = 64;
const BATCH_WAIT_USEC: u32 = 200;

/// One worker's io_uring with its buffers, target address and request bytes.
pub struct Ring {
    uring: ManuallyDrop<IoUring>,
    bufs: ManuallyDrop<BufRing>,
    addr: ManuallyDrop<Box<SockAddr>>,
    reqs: ManuallyDrop<Arc<RequestSet>>,
    domain: libc::c_int,
    tcp: bool,
    /// Operations submitted whose final completion has not been seen.
    outstanding: usize,
    /// Sockets shut down but not yet closed: an entry still in the submission queue may name
    /// the descriptor, and closing it first would let another socket (of any thread) take the
    /// number and receive that operation.
    to_close: Vec<RawFd>,
}

impl Ring {
    pub fn new(cfg: &RingConfig, endpoint: &Endpoint, reqs: Arc<RequestSet>) -> io::Result<Self> {
        let uring = build_uring(cfg.entries)?;
        // Operations name sockets by registered slot: no per-operation file lookup and
        // reference count, and a slot is ours alone, unlike a descriptor number.
        uring.submitter().register_files_sparse(cfg.slots)?;
        let count = cfg.buffers.next_power_of_two().max(1);
        let ring_map =
            Mapping::new((count as usize * std::mem::size_of::<types::BufRingEntry>()).max(4096))?;
        let stride = cfg.buffer_size + 64;
        let bufs_map = Mapping::new(count as usize * stride)?;
        let mut bufs = BufRing {
            ring: ring_map,
            bufs: bufs_map,
            size: cfg.buffer_size,
            stride,
            mask: count - 1,
            tail: 0,
        };
        // SAFETY: the ring mapping holds `count` entries and outlives the registration (it is
        // dropped after the io_uring, or leaked).
        unsafe {
            uring
                .submitter()
                .register_buf_ring_with_flags(bufs.ring.ptr as u64, count, BGID, 0)?
        };
        for bid in 0..count {
            bufs.entry(bid);
        }
        bufs.commit();
        let (domain, tcp) = match endpoint {
            Endpoint::Tcp(std::net::SocketAddr::V4(_)) => (libc::AF_INET, true),
            Endpoint::Tcp(std::net::SocketAddr::V6(_)) => (libc::AF_INET6, true),
            Endpoint::Unix(_) => (libc::AF_UNIX, false),
        };
        Ok(Ring {
            uring: ManuallyDrop::new(uring),
            bufs: ManuallyDrop::new(bufs),
            addr: ManuallyDrop::new(Box::new(SockAddr::new(endpoint)?)),
            reqs: ManuallyDrop::new(reqs),
            domain,
            tcp,
            outstanding: 0,
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
        loop {
            // SAFETY: every entry pushed here refers only to memory the ring owns and keeps
            // alive (see the module comment) or to file descriptors, which the kernel pins.
            if unsafe { self.uring.submission().push(&e) }.is_ok() {
                self.outstanding += 1;
                return;
            }
            // Full submission queue: hand what is there to the kernel and retry.
            let _ = self.uring.submit();
        }
    }

    /// Puts socket `fd` in registered slot `slot` (replacing the previous one, which the
    /// kernel keeps alive until operations already issued on it finish).
    pub fn install(&mut self, slot: u32, fd: RawFd) -> io::Result<()> {
        self.uring
            .submitter()
            .register_files_update(slot, &[fd])
            .map(drop)
    }

    /// Connects the socket in `slot` to the target.
    pub fn connect(&mut self, slot: u32, user_data: u64) {
        let e = opcode::Connect::new(
            types::Fixed(slot),
            &self.addr.storage as *const _ as *const libc::sockaddr,
            self.addr.len,
        )
        .build()
        .user_data(user_data);
        self.push(e);
    }

    /// Sends `len` bytes of the encoded requests from `offset`.
    pub fn send(&mut self, slot: u32, offset: usize, len: usize, user_data: u64) {
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

    /// Submits and waits for at least one completion or `timeout`. With `want` above 1 and a
    /// kernel with min-timeout waits (6.12+), gathers up to `want` completions for at most
    /// [`BATCH_WAIT_USEC`] first: fewer, fuller turns in a closed loop.
    pub fn submit_and_wait(&mut self, timeout: Option<Duration>, want: usize) -> io::Result<()> {
        let batch = want > 1 && self.uring.params().is_feature_min_timeout();
        let r = match timeout {
            None if !batch => self.uring.submit_and_wait(1),
            _ => {
                let t = timeout.unwrap_or(Duration::from_secs(3600));
                let ts = types::Timespec::new()
                    .sec(t.as_secs())
                    .nsec(t.subsec_nanos());
                let args = types::SubmitArgs::new().timespec(&ts);
                if batch {
                    let args = args.min_wait_usec(BATCH_WAIT_USEC);
                    self.uring
                        .submitter()
                        .submit_with_args(want.min(BATCH_MAX), &args)
                } else {
                    self.uring.submitter().submit_with_args(1, &args)
                }
            }
        };
        if !self.to_close.is_empty() && self.uring.submission().is_empty() {
            // Every queued entry has been issued and holds its own file reference.
            for fd in self.to_close.drain(..) {
                // SAFETY: fd is a socket of this worker that nothing refers to by number any more.
                unsafe { libc::close(fd) };
            }
        }
        match r {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY | libc::EAGAIN)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Moves the available completions into `out` (cleared first).
    pub fn reap(&mut self, out: &mut Vec<Cqe>) {
        out.clear();
        for c in self.uring.completion() {
            let cqe = Cqe {
                user_data: c.user_data(),
                result: c.result(),
                flags: c.flags(),
            };
            if !cqe.more() {
                self.outstanding -= 1;
            }
            out.push(cqe);
        }
    }

    /// The data a receive completion delivered in buffer `bid`.
    pub fn buffer(&self, bid: u16, len: usize) -> &[u8] {
        assert!(bid <= self.bufs.mask && len <= self.bufs.size);
        // SAFETY: the kernel handed buffer `bid` to us with this completion and does not touch
        // it again until `recycle` gives it back; it lies inside the buffers mapping.
        unsafe {
            std::slice::from_raw_parts(self.bufs.bufs.ptr.add(bid as usize * self.bufs.stride), len)
        }
    }

    /// Returns buffer `bid` to the kernel (published by `commit_buffers`).
    pub fn recycle(&mut self, bid: u16) {
        self.bufs.entry(bid);
    }

    /// Publishes the recycled buffers.
    pub fn commit_buffers(&mut self) {
        self.bufs.commit();
    }

    /// A new blocking stream socket for the target (io_uring never blocks on it).
    pub fn socket(&self) -> io::Result<RawFd> {
        // SAFETY: plain socket(2) call.
        let fd = unsafe { libc::socket(self.domain, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        if self.tcp {
            let one: libc::c_int = 1;
            // SAFETY: fd is ours; the option value is a live c_int of the size passed.
            unsafe {
                libc::setsockopt(
                    fd,
                    libc::IPPROTO_TCP,
                    libc::TCP_NODELAY,
                    &one as *const _ as *const libc::c_void,
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
        }
        Ok(fd)
    }

    /// Shuts `fd` down (so its pending operations complete) and closes it after the next
    /// submission.
    pub fn close(&mut self, fd: RawFd) {
        // SAFETY: fd is a socket this worker opened and has not closed yet.
        unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
        self.to_close.push(fd);
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: each field is dropped (or leaked) exactly once, here; the io_uring goes first
        // so the kernel lets go of the buffers before they are unmapped, then the sockets whose
        // numbers no queued entry can use any more.
        unsafe {
            ManuallyDrop::drop(&mut self.uring);
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

/// Sets up the ring with the cheapest task-running mode the kernel accepts.
fn build_uring(entries: u32) -> io::Result<IoUring> {
    let cq = entries.saturating_mul(4);
    let mut b = IoUring::builder();
    b.setup_cqsize(cq)
        .setup_submit_all()
        .setup_single_issuer()
        .setup_defer_taskrun();
    if let Ok(r) = b.build(entries) {
        return Ok(r);
    }
    let mut b = IoUring::builder();
    b.setup_cqsize(cq).setup_coop_taskrun();
    if let Ok(r) = b.build(entries) {
        return Ok(r);
    }
    IoUring::builder().setup_cqsize(cq).build(entries)
}
