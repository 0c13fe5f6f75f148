//! Probes the machine the tests will run on (cargo runs this on the machine that builds, which
//! for `cargo test` is the same one) for what some integration tests need, so that a test which
//! cannot run here is reported as ignored, with the reason, instead of passing silently:
//!
//! - `cfg(no_ipv6)`: binding `[::1]:0` fails (no IPv6 loopback).
//! - `cfg(no_min_timeout)`: the kernel is older than 6.12, so io_uring has no min-timeout wait
//!   and a shard's waits never batch (`--wait-batch`, `--wait-busy`).
//!
//! The probes run again when this file changes, not when the machine does: after moving a
//! build directory to another machine, or a kernel upgrade, `touch build.rs`.
use std::net::TcpListener;

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rustc-check-cfg=cfg(no_ipv6)");
    println!("cargo::rustc-check-cfg=cfg(no_min_timeout)");
    let linux = std::env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "linux");
    if TcpListener::bind("[::1]:0").is_err() {
        println!("cargo::rustc-cfg=no_ipv6");
    }
    if !linux || kernel_version().is_none_or(|v| v < (6, 12)) {
        println!("cargo::rustc-cfg=no_min_timeout");
    }
}

/// The running kernel's (major, minor), from `/proc/sys/kernel/osrelease` (`6.12.8-...`).
fn kernel_version() -> Option<(u32, u32)> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
    let mut parts = release.trim().split(['.', '-']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}
