//! What the running kernel offers: io_uring itself, the features ringshard uses, and the limits
//! that matter. Feature answers come from trying (a ring set up with the flags, a register
//! call, the opcode probe), not from the version number alone, except for multishot accept and
//! recv, which no probe can see.
#![allow(unsafe_code)] // talks to the kernel: every block carries a SAFETY comment
use std::io;

use io_uring::{opcode, register::Probe, IoUring};

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

/// Whether the ring's kernel supports an opcode.
pub fn opcode_supported(ring: &crate::uring::ring::Ring, code: u8) -> bool {
    let mut p = Probe::new();
    ring.inner().submitter().register_probe(&mut p).is_ok() && p.is_supported(code)
}

/// One feature's answer.
#[derive(Clone, Debug)]
pub struct Feature {
    pub name: &'static str,
    pub supported: bool,
    /// How it was found out, or why not.
    pub note: String,
}

/// Everything `ringshard probe` reports.
#[derive(Clone, Debug)]
pub struct Report {
    pub kernel: String,
    pub io_uring: Result<(), String>,
    pub features: Vec<Feature>,
    pub memlock_bytes: Option<u64>,
    pub open_files: Option<u64>,
    pub somaxconn: Option<u64>,
    pub cpus_allowed: usize,
}

fn try_setup(
    f: impl FnOnce(&mut io_uring::Builder) -> &mut io_uring::Builder,
) -> Result<IoUring, String> {
    let mut b = IoUring::builder();
    f(&mut b);
    b.build(8).map_err(|e| e.to_string())
}

/// A feature the ring's set-up parameters report as a flag.
fn flag(name: &'static str, present: bool, yes: &str) -> Feature {
    let r = if present {
        Ok(())
    } else {
        Err("feature flag absent".into())
    };
    feature(name, r, yes)
}

fn feature(name: &'static str, r: Result<(), String>, yes: &str) -> Feature {
    match r {
        Ok(()) => Feature {
            name,
            supported: true,
            note: yes.to_string(),
        },
        Err(e) => Feature {
            name,
            supported: false,
            note: e,
        },
    }
}

/// Probes the running kernel.
pub fn probe() -> Report {
    let kernel = kernel_release().unwrap_or_else(|e| format!("unknown ({e})"));
    let mut features = Vec::new();
    let usable = match IoUring::new(8) {
        Ok(ring) => {
            features.extend(operations(&ring, kernel_version()));
            features.extend(setups(&ring));
            Ok(())
        }
        Err(e) => Err(crate::uring::ring::explain(&e).to_string()),
    };
    Report {
        kernel,
        io_uring: usable,
        features,
        memlock_bytes: crate::sys::limits::soft(libc::RLIMIT_MEMLOCK),
        open_files: crate::sys::limits::soft(libc::RLIMIT_NOFILE),
        somaxconn: std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()
            .and_then(|s| s.trim().parse().ok()),
        cpus_allowed: crate::sys::cpus::allowed().len(),
    }
}

/// The operations ringshard uses: from the opcode probe, the kernel version (for multishot
/// flags no probe shows) and a test buffer ring.
fn operations(ring: &IoUring, v: KernelVersion) -> Vec<Feature> {
    let mut p = Probe::new();
    let probed = ring.submitter().register_probe(&mut p).is_ok();
    let op = |code: u8| probed && p.is_supported(code);
    let version = |ok: bool, since: &str| {
        if ok {
            Ok(())
        } else {
            Err(format!("needs Linux {since}, this is {v}"))
        }
    };
    let bufring = crate::uring::ring::Ring::new(crate::uring::ring::RingConfig {
        entries: 8,
        taskrun: Some(crate::uring::ring::TaskRun::Plain),
        wait_batch: 1,
        min_wait_usec: 0,
        sqpoll_idle_ms: None,
    })
    .map_err(|e| e.to_string())
    .and_then(|r| {
        crate::uring::bufring::BufRing::new(r.inner(), 8, 4096, 0)
            .map(drop)
            .map_err(|e| e.to_string())
    });
    vec![
        feature(
            "multishot_accept",
            version(
                has_multishot_accept(v) && op(opcode::AcceptMulti::CODE),
                "5.19",
            ),
            "kernel 5.19+",
        ),
        feature(
            "multishot_recv",
            version(has_multishot_recv(v) && op(opcode::RecvMulti::CODE), "6.0"),
            "kernel 6.0+",
        ),
        feature("provided_buffer_ring", bufring, "registered a test ring"),
        feature(
            "send_zc",
            if op(opcode::SendZc::CODE) {
                Ok(())
            } else {
                Err("opcode not supported".into())
            },
            "opcode probe",
        ),
    ]
}

/// Ring set-up flags and features: each tried by setting up a ring with it, or read off the
/// ring's parameters.
fn setups(ring: &IoUring) -> Vec<Feature> {
    let setup = |r: Result<IoUring, String>| r.map(drop);
    let params = ring.params();
    vec![
        feature(
            "single_issuer_defer_taskrun",
            setup(try_setup(|b| b.setup_single_issuer().setup_defer_taskrun())),
            "ring set up with the flags",
        ),
        feature(
            "coop_taskrun",
            setup(try_setup(|b| b.setup_coop_taskrun())),
            "ring set up with the flag",
        ),
        feature(
            "registered_files",
            ring.submitter()
                .register_files_sparse(16)
                .map_err(|e| e.to_string()),
            "registered a sparse file table",
        ),
        feature(
            "sqpoll",
            setup(try_setup(|b| b.setup_sqpoll(1000))),
            "ring set up with SQPOLL",
        ),
        flag(
            "recv_bundle",
            params.is_feature_recvsend_bundle(),
            "IORING_FEAT_RECVSEND_BUNDLE",
        ),
        flag(
            "ext_arg",
            params.is_feature_ext_arg(),
            "IORING_FEAT_EXT_ARG",
        ),
        flag(
            "min_timeout",
            params.is_feature_min_timeout(),
            "IORING_FEAT_MIN_TIMEOUT (--wait-batch)",
        ),
    ]
}
