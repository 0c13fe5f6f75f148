//! SIGINT and SIGTERM as values: blocked in every thread, received by the main thread.
#![allow(unsafe_code)] // talks to the kernel: every block carries a SAFETY comment
use std::io;

fn set(signals: &[libc::c_int]) -> libc::sigset_t {
    // SAFETY: sigset_t is plain old data, initialised by sigemptyset before use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a live sigset_t.
    unsafe { libc::sigemptyset(&mut set) };
    for &s in signals {
        // SAFETY: as above, with a valid signal number.
        unsafe { libc::sigaddset(&mut set, s) };
    }
    set
}

/// Blocks SIGINT and SIGTERM in the calling thread and every thread it starts afterwards.
pub fn block_shutdown_signals() -> io::Result<()> {
    let s = set(&[libc::SIGINT, libc::SIGTERM]);
    // SAFETY: pthread_sigmask with a valid set and no old-set output.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &s, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(())
}

/// Waits up to `timeout` for SIGINT or SIGTERM; returns the signal, or `None` on timeout.
pub fn wait(timeout: std::time::Duration) -> Option<libc::c_int> {
    let s = set(&[libc::SIGINT, libc::SIGTERM]);
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as _,
    };
    // SAFETY: sigtimedwait with a valid set and timespec; no siginfo output.
    let rc = unsafe { libc::sigtimedwait(&s, std::ptr::null_mut(), &ts) };
    (rc > 0).then_some(rc)
}
