//! The few calls into the kernel outside the ring: sockets, CPU sets and thread load, signals,
//! eventfds.
pub mod activation;
pub mod cpus;
pub mod eventfd;
pub mod fd;
pub mod limits;
pub mod notify;
pub mod process;
pub mod sched;
pub mod signals;
pub mod socket;

/// Turns a libc return value of -1 into the current `errno`.
pub(crate) fn cvt(ret: libc::c_int) -> std::io::Result<libc::c_int> {
    if ret == -1 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}
