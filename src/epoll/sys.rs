//! The epoll engine's calls into the kernel: the epoll instance, non-blocking accept, receive,
//! send and half-close. Every `unsafe` block of the engine is here; the loop is safe code.
#![allow(unsafe_code)] // talks to the kernel: every block carries a SAFETY comment
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use crate::sys::cvt;

/// Readiness bits, as `epoll_wait` reports them.
pub const IN: u32 = libc::EPOLLIN as u32;
pub const OUT: u32 = libc::EPOLLOUT as u32;
pub const RDHUP: u32 = libc::EPOLLRDHUP as u32;
pub const HUP: u32 = libc::EPOLLHUP as u32;
pub const ERR: u32 = libc::EPOLLERR as u32;
pub const ET: u32 = libc::EPOLLET as u32;
pub const ONESHOT: u32 = libc::EPOLLONESHOT as u32;

/// The most bytes one send is given, so that its result fits the `c_int` that `cvt` checks.
const MAX_IO: usize = 1 << 30;

/// An owned epoll instance and the buffer its waits fill.
pub struct Epoll {
    fd: OwnedFd,
    events: Vec<libc::epoll_event>,
    ready: usize,
}

impl Epoll {
    /// A new epoll instance whose waits return up to `capacity` events.
    pub fn new(capacity: usize) -> io::Result<Epoll> {
        // SAFETY: epoll_create1(2) with a valid flag; the result is checked and owned at once.
        let fd = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        Ok(Epoll {
            // SAFETY: a fresh descriptor nothing else owns.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            events: vec![libc::epoll_event { events: 0, u64: 0 }; capacity.max(1)],
            ready: 0,
        })
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, events: u32, data: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: data };
        // SAFETY: `ev` is a live epoll_event for the duration of the call; the kernel copies it.
        cvt(unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), op, fd, &mut ev) }).map(drop)
    }

    /// Adds `fd` with the readiness bits `events`, reported with `data`.
    pub fn add(&self, fd: RawFd, events: u32, data: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, events, data)
    }

    /// Arms `fd` for `events` again (a one-shot registration), adding it if it is not in the
    /// set (a new socket, or a descriptor number reused after a close removed the old one).
    pub fn rearm(&self, fd: RawFd, events: u32, data: u64) -> io::Result<()> {
        match self.ctl(libc::EPOLL_CTL_MOD, fd, events, data) {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => self.add(fd, events, data),
            r => r,
        }
    }

    /// Removes `fd` (closing the last descriptor of a file removes it too).
    pub fn delete(&self, fd: RawFd) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_DEL, fd, 0, 0)
    }

    /// Waits up to `timeout_ms` (-1: without limit) for readiness; the events are then read
    /// with [`Epoll::event`]`(0..n)`. EINTR counts as no events.
    pub fn wait(&mut self, timeout_ms: i32) -> io::Result<usize> {
        // SAFETY: the kernel writes at most `events.len()` entries into the buffer we own.
        let n = cvt(unsafe {
            libc::epoll_wait(
                self.fd.as_raw_fd(),
                self.events.as_mut_ptr(),
                self.events.len() as libc::c_int,
                timeout_ms,
            )
        });
        self.ready = match n {
            Ok(n) => n as usize,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => 0,
            Err(e) => return Err(e),
        };
        Ok(self.ready)
    }

    /// The `i`th event of the last wait: (readiness bits, data).
    pub fn event(&self, i: usize) -> (u32, u64) {
        debug_assert!(i < self.ready);
        // Copied out by value: the struct is packed on some targets.
        let ev = self.events[i];
        (ev.events, ev.u64)
    }
}

/// Makes `fd` non-blocking.
pub fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl(2) F_GETFL on a descriptor the caller owns; no memory is involved.
    let flags = cvt(unsafe { libc::fcntl(fd, libc::F_GETFL) })?;
    if flags & libc::O_NONBLOCK != 0 {
        return Ok(());
    }
    // SAFETY: as above, F_SETFL with the flags just read plus O_NONBLOCK.
    cvt(unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) }).map(drop)
}

/// Accepts one connection, non-blocking and close-on-exec; `WouldBlock` when none is waiting.
pub fn accept(listener: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: accept4(2) without an address output (both pointers null is allowed).
    let fd = cvt(unsafe {
        libc::accept4(
            listener,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        )
    })?;
    // SAFETY: a fresh descriptor the kernel just gave us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Receives into `buf` (at most `MAX_IO` bytes); Ok(0) is end of input.
pub fn recv(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    let len = buf.len().min(MAX_IO);
    // SAFETY: the kernel writes at most `len` bytes into `buf`, which we borrow mutably.
    let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), len, 0) };
    cvt(n as libc::c_int).map(|n| n as usize)
}

/// Sends from `buf` (at most `MAX_IO` bytes per call) without raising SIGPIPE on a reset peer.
pub fn send(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    let len = buf.len().min(MAX_IO);
    // SAFETY: the kernel reads at most `len` bytes from `buf`, which we borrow.
    let n = unsafe { libc::send(fd, buf.as_ptr().cast(), len, libc::MSG_NOSIGNAL) };
    cvt(n as libc::c_int).map(|n| n as usize)
}

/// Reads an eventfd's counter (resetting it); `WouldBlock` when it was zero.
pub fn read_eventfd(fd: RawFd) -> io::Result<u64> {
    let mut value: u64 = 0;
    // SAFETY: reads exactly 8 bytes into a live u64.
    let n = unsafe { libc::read(fd, (&mut value as *mut u64).cast(), 8) };
    cvt(n as libc::c_int).map(|_| value)
}

/// Shuts down the write side: the peer reads EOF after the data already sent.
pub fn shutdown_write(fd: RawFd) -> io::Result<()> {
    // SAFETY: shutdown(2) on a socket the caller owns; no memory is involved.
    cvt(unsafe { libc::shutdown(fd, libc::SHUT_WR) }).map(drop)
}
