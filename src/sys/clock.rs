//! The calling thread's CPU time.
#![allow(unsafe_code)] // talks to the kernel: every block carries a SAFETY comment

/// Nanoseconds of CPU the calling thread has used (0 if the clock cannot be read). A system
/// call (no vDSO path for this clock), so read it a few times a second, not per turn.
pub fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec that outlives the call.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if r != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
