//! File operations as ordinary system calls (how the epoll engine runs what a route asks of
//! the ring), and the plain-data structures and descriptors the kernel hands back.
#![allow(unsafe_code)] // talks to the kernel: every block carries a SAFETY comment
use std::ffi::CStr;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// Takes ownership of a descriptor the kernel just returned.
pub fn take(fd: i32) -> OwnedFd {
    debug_assert!(fd >= 0);
    // SAFETY: `fd` was returned by an open (a system call or a ring completion) and nothing
    // else owns it.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// An all-zero `statx`, for the kernel to fill.
pub fn zeroed_statx() -> libc::statx {
    // SAFETY: statx is plain old data; all-zero is a valid value.
    unsafe { std::mem::zeroed() }
}

/// How a route's files are opened: read-only, and resolved beneath the directory given, with
/// no magic links (`/proc/self/fd/...`) followed.
pub fn open_how_beneath() -> libc::open_how {
    // SAFETY: open_how is plain old data; all-zero is a valid value (mode 0, no flags).
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOCTTY) as u64;
    how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS;
    how
}

/// The result as a ring completion has it: the value, or the negative errno.
fn result(r: i64) -> i32 {
    if r < 0 {
        -std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO)
    } else {
        r as i32
    }
}

/// `openat2(dir, path, how)`.
pub fn openat2(dir: RawFd, path: &CStr, how: &libc::open_how) -> i32 {
    // SAFETY: `path` is a live NUL-terminated string and `how` a live open_how of the size
    // passed.
    result(unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir,
            path.as_ptr(),
            how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    })
}

/// `statx(fd, "", AT_EMPTY_PATH, STATX_BASIC_STATS)` into `buf`.
pub fn statx(fd: RawFd, buf: &mut libc::statx) -> i32 {
    // SAFETY: an empty NUL-terminated path with AT_EMPTY_PATH, and a live statx buffer.
    result(i64::from(unsafe {
        libc::statx(
            fd,
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            libc::STATX_BASIC_STATS,
            buf,
        )
    }))
}

/// `pread(fd, buf, offset)`.
pub fn pread(fd: RawFd, buf: &mut [u8], offset: u64) -> i32 {
    // SAFETY: `buf` is live and writable for its whole length.
    result(unsafe { libc::pread(fd, buf.as_mut_ptr().cast(), buf.len(), offset as i64) } as i64)
}

/// `write(fd, buf)`.
pub fn write(fd: RawFd, buf: &[u8]) -> i32 {
    // SAFETY: `buf` is live and readable for its whole length.
    result(unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) } as i64)
}

/// `close(fd)`, of a descriptor its owner gave up.
pub fn close(fd: RawFd) -> i32 {
    // SAFETY: the caller owned `fd` and gives it up here; nothing uses it after.
    result(i64::from(unsafe { libc::close(fd) }))
}

/// `pwrite(fd, buf, offset)`.
pub fn pwrite(fd: RawFd, buf: &[u8], offset: u64) -> i32 {
    // SAFETY: `buf` is live and readable for its whole length.
    result(unsafe { libc::pwrite(fd, buf.as_ptr().cast(), buf.len(), offset as i64) } as i64)
}
