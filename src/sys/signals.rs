//! SIGINT, SIGTERM, SIGUSR1 and SIGUSR2 as values: blocked in every thread, received by the
//! main thread.
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

/// The signals the server takes as values: shut down (SIGINT, SIGTERM), reopen the log
/// (SIGUSR1), upgrade (SIGUSR2).
const SERVER_SIGNALS: [libc::c_int; 4] =
    [libc::SIGINT, libc::SIGTERM, libc::SIGUSR1, libc::SIGUSR2];

/// Blocks the server's signals in the calling thread and every thread it starts afterwards.
pub fn block_shutdown_signals() -> io::Result<()> {
    let s = set(&SERVER_SIGNALS);
    // SAFETY: pthread_sigmask with a valid set and no old-set output.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &s, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(())
}

/// Waits up to `timeout` for one of the server's signals; returns it, or `None` on timeout.
pub fn wait(timeout: std::time::Duration) -> Option<libc::c_int> {
    let s = set(&SERVER_SIGNALS);
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as _,
    };
    // SAFETY: sigtimedwait with a valid set and timespec; no siginfo output.
    let rc = unsafe { libc::sigtimedwait(&s, std::ptr::null_mut(), &ts) };
    (rc > 0).then_some(rc)
}

/// Set by the first SIGINT once [`catch_interrupt`] is in place.
static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn on_interrupt(_: libc::c_int) {
    if INTERRUPTED.swap(true, std::sync::atomic::Ordering::Relaxed) {
        // A second Ctrl-C: leave at once.
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(130) };
    }
}

/// Routes SIGINT to [`interrupted`] instead of killing the process (the load generator stops
/// and still reports); a second SIGINT exits at once with 130.
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

/// True once SIGINT arrived (after [`catch_interrupt`]).
pub fn interrupted() -> bool {
    INTERRUPTED.load(std::sync::atomic::Ordering::Relaxed)
}
