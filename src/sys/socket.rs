//! Listening sockets: one per shard, bound with `SO_REUSEPORT` so the kernel spreads
//! connections over the shards, or taken over from an inherited descriptor.
#![allow(unsafe_code)] // talks to the kernel: every block carries a SAFETY comment
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::cvt;

/// An integer socket option's value.
pub fn get_int(fd: RawFd, level: libc::c_int, name: libc::c_int) -> io::Result<libc::c_int> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt into a live c_int with its length; fails cleanly on a bad fd.
    cvt(unsafe {
        libc::getsockopt(
            fd,
            level,
            name,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    })?;
    Ok(v)
}

fn set_int(fd: RawFd, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: `value` is a live c_int and the length passed matches it.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// Binds a listening socket with `SO_REUSEPORT` (and `TCP_NODELAY`, which accepted sockets
/// inherit on Linux, saving a syscall per connection).
pub fn bind_reuseport(addr: SocketAddr, backlog: i32) -> io::Result<OwnedFd> {
    let domain = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: plain socket(2); the result is checked and owned right away.
    let fd = cvt(unsafe { libc::socket(domain, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: `fd` is a fresh descriptor nothing else owns.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    set_int(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
    set_int(fd, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)?;
    set_int(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, 1)?;
    let (storage, len) = sockaddr(addr);
    // SAFETY: `storage` holds a valid sockaddr of `len` bytes for this family.
    cvt(unsafe { libc::bind(fd, (&storage as *const libc::sockaddr_storage).cast(), len) })?;
    // SAFETY: listen(2) on a bound socket we own.
    cvt(unsafe { libc::listen(fd, backlog) })?;
    Ok(owned)
}

/// A shard's listening socket.
pub struct ListenFd {
    pub fd: OwnedFd,
    /// Every shard accepts from this same socket (a unix socket, one systemd passed), rather
    /// than from its own in a SO_REUSEPORT group: the shards must take turns on it.
    pub shared: bool,
}

/// Binds a listening unix socket at `path` with permissions `mode`. A socket file left by a
/// process that is gone (nothing accepts on it) is replaced; one that something still listens
/// on, or a file that is not a socket, is an error.
pub fn bind_unix(path: &std::path::Path, mode: u32, backlog: i32) -> io::Result<OwnedFd> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    use std::os::unix::net::{UnixListener, UnixStream};
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "a file that is not a socket is in the way",
            ));
        }
        if UnixStream::connect(path).is_ok() {
            return Err(io::Error::from_raw_os_error(libc::EADDRINUSE));
        }
        std::fs::remove_file(path)?;
    }
    let l = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    let fd: OwnedFd = l.into();
    // SAFETY: listen(2) again on a listening socket we own sets its backlog.
    cvt(unsafe { libc::listen(fd.as_raw_fd(), backlog) })?;
    Ok(fd)
}

/// Takes over an inherited listening descriptor (a supervisor or an older ringshard passed it).
pub fn from_inherited(fd: RawFd) -> io::Result<OwnedFd> {
    let kind = get_int(fd, libc::SOL_SOCKET, libc::SO_ACCEPTCONN)?;
    if kind == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("fd {fd} is not a listening socket"),
        ));
    }
    // SAFETY: fcntl on a descriptor this process was given; it only sets a flag (the processes
    // ringshard starts must not inherit a listening socket).
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    // SAFETY: the descriptor was handed to this process to own; it is checked to be a socket.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Takes the connections waiting in a listening socket's queue, without waiting for more (at
/// most `max`). For a drain that hands the socket to another process: a wake-up the kernel gave
/// this process's cancelled accept (io_uring's accepts wait exclusively: one waiter is woken per
/// connection) would otherwise leave its connection waiting until the next one arrives. The
/// socket is shared, and may be blocking: a receive timeout bounds each accept to 10 ms, and is
/// put back afterwards.
pub fn accept_waiting(listener: RawFd, max: usize) -> Vec<OwnedFd> {
    let tv = |usec| libc::timeval {
        tv_sec: 0,
        tv_usec: usec,
    };
    let set = |t: libc::timeval| {
        // SAFETY: setsockopt with a live timeval and its size, on a socket this process holds.
        unsafe {
            libc::setsockopt(
                listener,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&t as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        }
    };
    if set(tv(10_000)) != 0 {
        return Vec::new();
    }
    let mut out = Vec::new();
    while out.len() < max {
        // SAFETY: accept4(2) without an address output (both pointers null is allowed).
        let fd = unsafe {
            libc::accept4(
                listener,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_CLOEXEC,
            )
        };
        if fd < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            break; // EAGAIN after the timeout: nothing waits
        }
        // SAFETY: a fresh descriptor the kernel just gave us; nothing else owns it.
        out.push(unsafe { OwnedFd::from_raw_fd(fd) });
    }
    set(tv(0));
    out
}

/// Closes a dead shard's connection socket, which only a leaked structure still names.
pub fn close_abandoned(fd: RawFd) {
    shutdown(fd);
    // SAFETY: close(2) on a descriptor this process opened and nothing will use again (its
    // connection is leaked with its shard); operations in flight hold their own references.
    unsafe { libc::close(fd) };
}

/// `SO_ATTACH_REUSEPORT_CBPF` and `SO_DETACH_REUSEPORT_BPF` (asm-generic/socket.h).
const SO_ATTACH_REUSEPORT_CBPF: libc::c_int = 51;
const SO_DETACH_REUSEPORT_BPF: libc::c_int = 68;

/// Attaches a classic BPF program to the `SO_REUSEPORT` group of `fd`: it picks the socket
/// (by index in the group) that takes each new connection.
pub fn attach_reuseport_program(fd: &OwnedFd, program: &[libc::sock_filter]) -> io::Result<()> {
    let prog = libc::sock_fprog {
        len: u16::try_from(program.len()).map_err(|_| io::Error::from_raw_os_error(libc::E2BIG))?,
        filter: program.as_ptr().cast_mut(),
    };
    // SAFETY: the kernel copies the program out of `prog`, which points at `program`, alive
    // for the call; setsockopt on a socket we own.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_ATTACH_REUSEPORT_CBPF,
            (&prog as *const libc::sock_fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// Takes the group's program away: the kernel's hash picks again. A group without one is fine.
pub fn detach_reuseport_program(fd: &OwnedFd) -> io::Result<()> {
    let none: libc::c_int = 0;
    // SAFETY: setsockopt with a live c_int on a socket we own.
    let r = cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_DETACH_REUSEPORT_BPF,
            (&none as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    });
    match r {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        r => r.map(drop),
    }
}

/// Takes ownership of an inherited descriptor that must be a stream socket (the readiness
/// socket of an upgrade).
pub fn adopt_stream(fd: RawFd) -> io::Result<OwnedFd> {
    let kind = get_int(fd, libc::SOL_SOCKET, libc::SO_TYPE)?;
    if kind != libc::SOCK_STREAM {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("fd {fd} is not a stream socket"),
        ));
    }
    // SAFETY: the descriptor was handed to this process to own; it is checked to be a socket.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: fcntl on a descriptor we own; it only sets a flag.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    Ok(owned)
}

/// The address a socket is bound to (to learn the port after binding port 0).
pub fn local_addr(fd: &OwnedFd) -> io::Result<SocketAddr> {
    let dup = fd.try_clone()?;
    let l = TcpListener::from(dup);
    l.local_addr()
}

/// The address of a connected socket's peer; `None` if the kernel cannot say (it went away).
pub fn peer_addr(fd: RawFd) -> Option<SocketAddr> {
    // SAFETY: `fd` is a live socket the caller owns; the ManuallyDrop wrapper borrows it for
    // one getpeername and never closes it.
    let s = std::mem::ManuallyDrop::new(unsafe { std::net::TcpStream::from_raw_fd(fd) });
    s.peer_addr().ok()
}

/// A socket address as the kernel takes it.
pub(crate) fn sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

/// The raw descriptor, for the ring.
pub fn raw(fd: &OwnedFd) -> RawFd {
    fd.as_raw_fd()
}

/// A new blocking stream socket for a client (io_uring never blocks on it), with
/// `TCP_NODELAY` for TCP.
pub fn client(domain: libc::c_int) -> io::Result<OwnedFd> {
    stream(domain, false)
}

/// A new stream socket for a client, non-blocking if asked (the epoll engine waits for its
/// readiness), with `TCP_NODELAY` for TCP.
pub fn stream(domain: libc::c_int, nonblocking: bool) -> io::Result<OwnedFd> {
    let nb = if nonblocking { libc::SOCK_NONBLOCK } else { 0 };
    // SAFETY: plain socket(2) call.
    let fd = cvt(unsafe { libc::socket(domain, libc::SOCK_STREAM | libc::SOCK_CLOEXEC | nb, 0) })?;
    // SAFETY: `fd` was just returned by socket(2) and is owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    if domain != libc::AF_UNIX {
        set_int(fd.as_raw_fd(), libc::IPPROTO_TCP, libc::TCP_NODELAY, 1)?;
    }
    Ok(fd)
}

/// Shuts a socket down both ways, so the operations in flight on it end.
pub fn shutdown(fd: RawFd) {
    // SAFETY: shutdown(2) on a descriptor; an invalid one is an error return, no more.
    unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
}

/// A socket address in the form `connect(2)` takes: an IP address or a unix socket path.
#[derive(Clone)]
pub struct SockAddr {
    storage: libc::sockaddr_storage,
    len: libc::socklen_t,
}

impl SockAddr {
    pub fn new(ep: &crate::load::url::Endpoint) -> io::Result<SockAddr> {
        use crate::load::url::Endpoint;
        let (storage, len) = match ep {
            Endpoint::Tcp(addr) => sockaddr(*addr),
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
                // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
                let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
                // SAFETY: sockaddr_storage is larger than and aligned at least as sockaddr_un.
                unsafe { std::ptr::write(&mut storage as *mut _ as *mut libc::sockaddr_un, sun) };
                let len = std::mem::size_of::<libc::sa_family_t>() + bytes.len() + 1;
                (storage, len as libc::socklen_t)
            }
        };
        Ok(SockAddr { storage, len })
    }

    /// The address family, for `socket(2)`.
    pub fn domain(&self) -> libc::c_int {
        libc::c_int::from(self.storage.ss_family)
    }

    /// The address as `connect(2)` takes it (valid while `self` is).
    pub fn as_ptr(&self) -> *const libc::sockaddr {
        (&self.storage as *const libc::sockaddr_storage).cast()
    }

    pub fn len(&self) -> libc::socklen_t {
        self.len
    }
}

/// The result as a ring completion has it: the value, or the negative errno.
fn completion(r: isize) -> i32 {
    if r < 0 {
        -io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO)
    } else {
        r as i32
    }
}

/// `connect(fd, addr)`, as a ring completion reports it (`-EINPROGRESS` on a non-blocking
/// socket that is still connecting).
pub fn connect(fd: RawFd, addr: &SockAddr) -> i32 {
    // SAFETY: `addr` points to a live sockaddr of `addr.len()` bytes.
    completion(unsafe { libc::connect(fd, addr.as_ptr(), addr.len()) } as isize)
}

/// A non-blocking connect's outcome once the socket is writable (`SO_ERROR`, negated).
pub fn connect_result(fd: RawFd) -> i32 {
    match get_int(fd, libc::SOL_SOCKET, libc::SO_ERROR) {
        Ok(err) => -err,
        Err(e) => -e.raw_os_error().unwrap_or(libc::EIO),
    }
}

/// `send(fd, buf, MSG_NOSIGNAL | MSG_DONTWAIT)`, as a ring completion reports it.
pub fn send_now(fd: RawFd, buf: &[u8]) -> i32 {
    let len = buf.len().min(1 << 30);
    // SAFETY: the kernel reads at most `len` bytes from `buf`, which we borrow.
    let n = unsafe {
        libc::send(
            fd,
            buf.as_ptr().cast(),
            len,
            libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
        )
    };
    completion(n)
}

/// `recv(fd, buf, MSG_DONTWAIT)`, as a ring completion reports it.
pub fn recv_now(fd: RawFd, buf: &mut [u8]) -> i32 {
    let len = buf.len().min(1 << 30);
    // SAFETY: the kernel writes at most `len` bytes into `buf`, which we borrow mutably.
    let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), len, libc::MSG_DONTWAIT) };
    completion(n)
}
