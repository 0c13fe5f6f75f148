//! Child processes: an app pool's (their own process group, and signals to it) and an
//! upgrade's new server (the descriptors it inherits).
#![allow(unsafe_code)] // talks to the kernel: every block carries a SAFETY comment
use std::os::unix::process::CommandExt;
use std::process::Command;

/// The child leads a process group of its own (so a signal to the group reaches what it starts),
/// and is killed if the thread that started it (the pool's supervisor) goes away: a ringshard
/// that is itself killed leaves no app behind. It starts with no signal blocked.
pub fn own_group_dying_with_parent(cmd: &mut Command) {
    cmd.process_group(0);
    // SAFETY: prctl(2) and sigprocmask(2) are async-signal-safe and touch no memory of the
    // parent; they are the only things done between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            unblock_all_signals()
        });
    }
}

/// Between fork and exec: the server blocks the signals it takes as values in every thread,
/// and a child would inherit that mask (an app deaf to SIGTERM).
///
/// # Safety
/// Only for a `pre_exec` closure: it calls async-signal-safe functions on stack memory.
unsafe fn unblock_all_signals() -> std::io::Result<()> {
    // SAFETY: sigset_t is plain old data, emptied by sigemptyset before use.
    let mut none: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `none` is a live sigset_t.
    let emptied = unsafe { libc::sigemptyset(&mut none) } == 0;
    // SAFETY: sigprocmask with a live, empty set and no old-set output.
    if !emptied || unsafe { libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut()) } != 0
    {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Sends `sig` to the process group `pid` leads (nothing if `pid` is 0).
pub fn kill_group(pid: u32, sig: i32) {
    if pid == 0 || pid > i32::MAX as u32 {
        return;
    }
    // SAFETY: kill(2) with a negative pid signals a process group; no memory is involved.
    unsafe { libc::kill(-(pid as i32), sig) };
}

/// The child inherits descriptors `fds` at their numbers (their close-on-exec flag is cleared
/// between fork and exec, in the child only), and starts with no signal blocked.
pub fn keep_descriptors(cmd: &mut Command, fds: Vec<std::os::fd::RawFd>) {
    // SAFETY: fcntl(2) and sigprocmask(2) are async-signal-safe and touch no memory but the
    // vector, allocated before the fork, and the stack; they are all that runs between fork and
    // exec.
    unsafe {
        cmd.pre_exec(move || {
            for &fd in &fds {
                if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            unblock_all_signals()
        });
    }
}

/// Sends `sig` to process `pid` (0: only checks that it exists and may be signalled).
pub fn signal(pid: u32, sig: i32) -> std::io::Result<()> {
    let pid = i32::try_from(pid)
        .ok()
        .filter(|&p| p > 0)
        .ok_or_else(|| std::io::Error::from_raw_os_error(libc::ESRCH))?;
    // SAFETY: kill(2) on one process; no memory is involved.
    crate::sys::cvt(unsafe { libc::kill(pid, sig) }).map(drop)
}
