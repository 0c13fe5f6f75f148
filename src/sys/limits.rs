//! Resource limits: what the process may hold open or lock.
#![allow(unsafe_code)] // talks to the kernel: every block carries a SAFETY comment

/// A resource's soft limit (`u64::MAX` for unlimited), or `None` if it cannot be read.
pub fn soft(resource: libc::__rlimit_resource_t) -> Option<u64> {
    get(resource).map(|r| widen(r.rlim_cur))
}

/// How many descriptors the process may hold open (1024 if the limit cannot be read).
pub fn open_files() -> u64 {
    soft(libc::RLIMIT_NOFILE).unwrap_or(1024)
}

/// Raises the open-files soft limit to the hard limit, as servers do (a connection is a
/// descriptor). Best effort: the limit stays as it was if the kernel refuses.
pub fn raise_open_files() {
    if let Some(mut r) = get(libc::RLIMIT_NOFILE) {
        if r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max;
            // SAFETY: setrlimit reads a live, initialised rlimit.
            unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &r) };
        }
    }
}

fn get(resource: libc::__rlimit_resource_t) -> Option<libc::rlimit> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into a live rlimit.
    (unsafe { libc::getrlimit(resource, &mut r) } == 0).then_some(r)
}

fn widen(v: libc::rlim_t) -> u64 {
    if v == libc::RLIM_INFINITY {
        u64::MAX
    } else {
        v
    }
}
