//! systemd socket activation (`sd_listen_fds(3)`): the listening sockets a service manager
//! opened and passed as descriptors 3, 4, ... with `LISTEN_FDS`, `LISTEN_PID` and
//! `LISTEN_FDNAMES` in the environment.
#![allow(unsafe_code)] // talks to the kernel: every block carries a SAFETY comment

/// The first passed descriptor.
const FIRST: i32 = 3;

/// The descriptors passed to this process, each with its name (`LISTEN_FDNAMES`, else
/// `fd N`); none when `LISTEN_FDS` is unset or `LISTEN_PID` names another process (the
/// variables were meant for a parent). Each is checked to be a listening socket and marked
/// close-on-exec, so the processes ringshard starts do not inherit them. `meant_for_parent`:
/// the parent handed them over in an upgrade, with the variables it was given.
pub fn listen_fds(meant_for_parent: bool) -> Result<Vec<(i32, String)>, String> {
    let Ok(count) = std::env::var("LISTEN_FDS") else {
        return Ok(Vec::new());
    };
    match std::env::var("LISTEN_PID").map(|p| p.parse::<u32>()) {
        Ok(Ok(pid)) if pid == std::process::id() || meant_for_parent => {}
        _ => return Ok(Vec::new()),
    }
    let n: i32 = count
        .parse()
        .ok()
        .filter(|n| (1..=1024).contains(n))
        .ok_or_else(|| format!("LISTEN_FDS={count}: not a number of descriptors (1 to 1024)"))?;
    let names: Vec<String> = std::env::var("LISTEN_FDNAMES")
        .map(|v| v.split(':').map(str::to_string).collect())
        .unwrap_or_default();
    let mut out = Vec::new();
    for i in 0..n {
        let fd = FIRST + i;
        let name = names
            .get(i as usize)
            .filter(|n| !n.is_empty())
            .cloned()
            .unwrap_or_else(|| format!("fd {fd}"));
        if !listening(fd) {
            return Err(format!(
                "LISTEN_FDS: descriptor {fd} ({name}) is not a listening socket"
            ));
        }
        // SAFETY: fcntl on a descriptor this process was given; it only sets a flag.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        out.push((fd, name));
    }
    Ok(out)
}

/// Whether `fd` is a socket that listens.
fn listening(fd: i32) -> bool {
    super::socket::get_int(fd, libc::SOL_SOCKET, libc::SO_ACCEPTCONN).is_ok_and(|v| v != 0)
}
