//! What a route asks the kernel to do, and how the epoll engine does it with system calls.
use std::ffi::CString;
use std::os::fd::RawFd;

use crate::sys::socket::SockAddr;

/// One operation. Its buffers live here, owned by the shard's driver, until its completion.
pub enum IoOp {
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
    /// `pwrite(fd, buf, offset)` (a proxied response spilled to a temporary file).
    Write {
        fd: RawFd,
        buf: Vec<u8>,
        offset: u64,
    },
    /// `connect(fd, addr)`. `started`: the epoll engine has called `connect` and waits for the
    /// socket to be writable to learn the outcome.
    Connect {
        fd: RawFd,
        addr: Box<SockAddr>,
        started: bool,
    },
    /// `send(fd, buf[from..], MSG_NOSIGNAL)`; the result is how much of it went.
    Send {
        fd: RawFd,
        buf: Vec<u8>,
        from: usize,
    },
    /// `recv(fd, buf)`, into the whole of `buf`'s length.
    Recv { fd: RawFd, buf: Vec<u8> },
    /// Nothing for the kernel: it completes when its deadline passes (`-ETIMEDOUT`).
    Sleep,
}

/// What a socket operation waits for on the epoll engine.
pub enum Readiness {
    Readable,
    Writable,
}

impl IoOp {
    /// Runs the operation now with system calls (the epoll engine's way); returns what its ring
    /// completion would have: the value, or a negative errno. A socket operation that would
    /// block returns `-EAGAIN` (or `-EINPROGRESS`) and is run again when [`IoOp::readiness`]
    /// says it can go on.
    pub fn run_now(&mut self) -> i32 {
        use crate::sys::{fd, socket};
        match self {
            IoOp::OpenBeneath { dir, path, how } => fd::openat2(*dir, path, how),
            IoOp::Statx { fd: f, buf } => fd::statx(*f, buf),
            IoOp::Read { fd: f, buf, offset } => fd::pread(*f, buf, *offset),
            IoOp::Close { fd: f } => fd::close(*f),
            IoOp::Append { fd: f, buf } => fd::write(*f, buf),
            IoOp::Write { fd: f, buf, offset } => fd::pwrite(*f, buf, *offset),
            IoOp::Connect { fd, addr, started } => {
                if std::mem::replace(started, true) {
                    socket::connect_result(*fd)
                } else {
                    socket::connect(*fd, addr)
                }
            }
            IoOp::Send { fd, buf, from } => socket::send_now(*fd, &buf[*from..]),
            IoOp::Recv { fd, buf } => socket::recv_now(*fd, buf),
            IoOp::Sleep => -libc::EAGAIN,
        }
    }

    /// For a socket operation, its descriptor and what it waits for.
    pub fn readiness(&self) -> Option<(RawFd, Readiness)> {
        match self {
            IoOp::Connect { fd, .. } | IoOp::Send { fd, .. } => Some((*fd, Readiness::Writable)),
            IoOp::Recv { fd, .. } => Some((*fd, Readiness::Readable)),
            _ => None,
        }
    }

    /// Whether the operation must wait (`-EAGAIN`, `-EINPROGRESS`) rather than complete.
    pub fn would_block(&self, result: i32) -> bool {
        self.readiness().is_some() && (result == -libc::EAGAIN || result == -libc::EINPROGRESS)
    }
}
