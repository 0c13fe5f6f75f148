//! What the running kernel offers: version-gated features the opcode probe cannot see.
use std::io;

/// A kernel version, from uname(2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct KernelVersion(pub u32, pub u32);

impl std::fmt::Display for KernelVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.0, self.1)
    }
}

/// The running kernel's release string, e.g. `6.18.44-fc`.
pub fn kernel_release() -> io::Result<String> {
    // SAFETY: utsname is plain old data; uname fills it.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a live utsname.
    if unsafe { libc::uname(&mut u) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let bytes: Vec<u8> = u
        .release
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Major and minor version of the running kernel (0.0 if unreadable).
pub fn kernel_version() -> KernelVersion {
    let release = kernel_release().unwrap_or_default();
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty());
    let major = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let minor = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    KernelVersion(major, minor)
}

/// Multishot accept arrived in 5.19.
pub fn has_multishot_accept(v: KernelVersion) -> bool {
    v >= KernelVersion(5, 19)
}

/// Multishot recv arrived in 6.0.
pub fn has_multishot_recv(v: KernelVersion) -> bool {
    v >= KernelVersion(6, 0)
}
