//! How much CPU the calling thread wanted: time it ran plus time it waited to run.
#![allow(unsafe_code)] // talks to the kernel: every block carries a SAFETY comment
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::time::Instant;

/// A reading of a thread's load: nanoseconds since its [`ThreadLoad`] was made, and how long
/// the thread had run or waited to run by then.
#[derive(Clone, Copy)]
pub struct Sample {
    pub wall_ns: u64,
    pub busy_ns: u64,
}

/// The calling thread's demand for CPU, read a few times a second (each read is a system call).
pub struct ThreadLoad {
    /// `/proc/thread-self/schedstat` of the thread that made this ("RUN_NS WAIT_NS SLICES"):
    /// its second field is the time the thread waited on a run queue, up to date whenever the
    /// thread itself reads it (the wait ended when it was last scheduled). Its first lags up
    /// to a scheduler tick, so the run time comes from the thread's CPU clock instead. `None`
    /// where it cannot be read (no schedstats): run time alone, which cannot see a thread kept
    /// off its CPU by others.
    schedstat: Option<File>,
    made: Instant,
}

impl ThreadLoad {
    /// For the calling thread: make it on the thread it measures.
    pub fn for_this_thread() -> ThreadLoad {
        let schedstat = File::open("/proc/thread-self/schedstat")
            .ok()
            .filter(|f| run_queue_wait_ns(f).is_some());
        ThreadLoad {
            schedstat,
            made: Instant::now(),
        }
    }

    /// The thread's load now; `None` if it cannot be read.
    pub fn read(&self) -> Option<Sample> {
        let busy_ns = self.busy_ns()?;
        let wall_ns = self.made.elapsed().as_nanos() as u64;
        Some(Sample { wall_ns, busy_ns })
    }

    /// Nanoseconds the thread has run or waited to run since it started; `None` if unreadable.
    fn busy_ns(&self) -> Option<u64> {
        let waited = match &self.schedstat {
            Some(f) => run_queue_wait_ns(f)?,
            None => 0,
        };
        Some(thread_cpu_ns()? + waited)
    }
}

/// The run-queue wait from a schedstat file.
fn run_queue_wait_ns(f: &File) -> Option<u64> {
    let mut buf = [0u8; 96];
    let n = f.read_at(&mut buf, 0).ok()?;
    let text = std::str::from_utf8(&buf[..n]).ok()?;
    text.split_ascii_whitespace().nth(1)?.parse().ok()
}

/// CPU time the calling thread has used (no vDSO path for this clock: a system call).
fn thread_cpu_ns() -> Option<u64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec that outlives the call.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    (r == 0).then(|| ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_thread_shows_what_it_ran() {
        let load = ThreadLoad::for_this_thread();
        let before = load.busy_ns().expect("readable");
        let t0 = std::time::Instant::now();
        while t0.elapsed() < std::time::Duration::from_millis(20) {
            std::hint::black_box(0u64);
        }
        let spent = load.busy_ns().expect("readable") - before;
        // It ran, or waited to run, for the whole 20 ms; without schedstats only the running
        // counts, which others may have cut short.
        let least = if load.schedstat.is_some() {
            19_000_000
        } else {
            1
        };
        assert!(spent >= least, "{spent} ns");
    }
}
