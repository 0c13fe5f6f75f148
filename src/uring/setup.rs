//! A shard's ring at start-up: the task-running mode, the provided-buffer ring, registered
//! files, and the features the kernel has, each asked for and checked, with an error that says
//! what the kernel refused and how to fix it.
use crate::config::{RecvMode, ServeConfig, TaskRunFlag};
use crate::uring::bufring::BufRing;
use crate::uring::probe;
use crate::uring::ring::{Ring, RingConfig, TaskRun};

/// Provided-buffer group id of the receive ring.
pub const BGID: u16 = 0;

/// How this shard receives and accepts, decided at start-up.
#[derive(Clone, Copy, Debug)]
pub struct Features {
    pub taskrun: TaskRun,
    pub multishot_accept: bool,
    pub multishot_recv: bool,
    /// Accepted sockets live in the ring's registered file table (`--registered-files`).
    pub direct: bool,
}

/// A ring ready for a shard.
pub struct Setup {
    pub ring: Ring,
    pub bufs: BufRing,
    pub features: Features,
    /// Slots in the registered file table (0: sockets are plain descriptors).
    pub file_slots: u32,
    /// The free slot count at or below which accepts are single-shot.
    pub multishot_floor: u32,
}

/// Sets up the ring and buffer ring as `cfg` asks.
/// The ring in the task-running mode asked for (or the best the kernel has), with an error that
/// names the flag the kernel refused.
fn open_ring(cfg: &ServeConfig) -> Result<Ring, String> {
    let taskrun = match cfg.taskrun {
        TaskRunFlag::Auto => None,
        TaskRunFlag::Defer => Some(TaskRun::Defer),
        TaskRunFlag::Coop => Some(TaskRun::Coop),
        TaskRunFlag::Plain => Some(TaskRun::Plain),
    };
    Ring::new(RingConfig {
        entries: cfg.ring_entries,
        taskrun,
        wait_batch: cfg.wait_batch,
        min_wait_usec: cfg.wait_usec,
        sqpoll_idle_ms: cfg.sqpoll_idle_ms,
    })
    .map_err(|e| match (taskrun, cfg.sqpoll_idle_ms, e.raw_os_error()) {
        (Some(TaskRun::Defer), Some(_), _) => "--taskrun defer cannot be combined with --sqpoll: \
        deferred completions run only on the submitting thread, and SQPOLL submits from a kernel thread"
        .to_string(),
        (Some(_), _, Some(libc::EINVAL)) => {
        let flag = format!("--taskrun {:?}", cfg.taskrun).to_lowercase();
        format!("{flag}: this kernel does not support it ({e})")
        }
        (None, Some(_), Some(libc::EINVAL | libc::EPERM)) => {
        format!("--sqpoll: this kernel refused a ring with SQPOLL ({e})")
        }
        _ => crate::uring::ring::explain(&e).to_string(),
    })
}

/// Slots of the registered file table accepted sockets go into (0: plain descriptors).
fn file_table(
    ring: &Ring,
    cfg: &ServeConfig,
    kernel: &probe::KernelVersion,
    multishot_accept: bool,
    multishot_floor: u32,
) -> Result<u32, String> {
    Ok(match cfg.registered_files {
        Some(0) => 0,
        // The access log writes each peer's address, and a proxy route forwards it, which a
        // direct descriptor cannot be asked.
        None if cfg.peers => 0,
        Some(n) => {
            if !multishot_accept {
                return Err(format!("--registered-files needs multishot accept (Linux 5.19 or later); this is {kernel}"));
            }
            ring.register_files(n).map_err(|e| {
                format!("--registered-files {n}: the kernel refused the table ({e})")
            })?;
            n
        }
        // Direct descriptors spare every send and receive the fd-table lookup. Without
        // room for many multishot accepts (a low open-files limit), or on a kernel that
        // refuses the table, sockets are plain descriptors.
        None => {
            let n = crate::sys::limits::open_files().min(65_536) as u32;
            let roomy = n > 2 * multishot_floor;
            if roomy && multishot_accept && ring.register_files(n).is_ok() {
                n
            } else {
                0
            }
        }
    })
}

pub fn setup(cfg: &ServeConfig) -> Result<Setup, String> {
    let ring = open_ring(cfg)?;
    let bufs = BufRing::new(ring.inner(), cfg.buf_count, cfg.buf_size, BGID)
        .map_err(|e| crate::uring::ring::no_buffer_ring(&e).to_string())?;
    if cfg.wait_explicit && cfg.wait_batch > 1 && ring.wait_batching().0 == 1 {
        return Err("batched waits (--wait-batch, --wait-usec, --wait-busy) need io_uring's min-timeout wait (Linux 6.12 or later)".into());
    }
    let kernel = probe::kernel_version();
    if cfg.send_zc > 0 && !probe::opcode_supported(&ring, io_uring::opcode::SendZc::CODE) {
        return Err(format!(
            "--send-zc needs IORING_OP_SEND_ZC (Linux 6.0 or later); this is {kernel}"
        ));
    }
    let multishot_recv = match cfg.recv {
        RecvMode::Auto => probe::has_multishot_recv(kernel),
        RecvMode::Multishot if !probe::has_multishot_recv(kernel) => {
            return Err(format!(
                "--recv multishot needs Linux 6.0 or later; this is {kernel}"
            ));
        }
        RecvMode::Multishot => true,
        RecvMode::Single => false,
    };
    let multishot_accept = probe::has_multishot_accept(kernel);
    // Accepts stay multishot while more slots are free than the backlog (which one
    // multishot accept can drain at once) plus headroom for arrivals meanwhile; then one
    // at a time.
    let multishot_floor = cfg.backlog.max(1) as u32 + 64;
    let file_slots = file_table(&ring, cfg, &kernel, multishot_accept, multishot_floor)?;
    let features = Features {
        taskrun: ring.taskrun,
        multishot_accept,
        multishot_recv,
        direct: file_slots > 0,
    };
    Ok(Setup {
        ring,
        bufs,
        features,
        file_slots,
        multishot_floor,
    })
}
