//! When batched waits pay: only while the shard is busy.
//!
//! A batched wait holds a turn's first completions until more arrive or `--wait-usec` runs out:
//! fewer, fuller turns, each request answered up to that much later. Under load that is a good
//! trade (turns cost a system call and a pass over the loop, and queueing dominates latency
//! anyway); on a shard with CPU to spare it only adds latency, since a client sending on its
//! own schedule (an open loop) has its requests held for the whole window at any rate. So a
//! shard measures the share of a CPU its thread used over each window of [`WINDOW_MS`] and
//! batches from the window where that reached `--wait-busy` percent until one falls below
//! [`LOW`] of it (the gap keeps a shard whose batching lowers its own CPU use from flapping).
use crate::timer::Millis;

/// Length of one measurement window.
pub const WINDOW_MS: Millis = 10;
/// Batching stops below this share of the threshold that started it.
pub const LOW: f64 = 0.7;

/// Whether a shard is busy enough for batched waits.
pub struct BusyGate {
    /// Busy share (0..=1) at which batching starts; 0: batch always.
    high: f64,
    window_at: Millis,
    window_cpu_ns: u64,
    on: bool,
    /// Share of a CPU used in the last whole window, in percent.
    pub last_percent: u32,
}

impl BusyGate {
    /// `percent`: the `--wait-busy` threshold (0 batches always).
    pub fn new(percent: u32, now: Millis, cpu_ns: u64) -> BusyGate {
        BusyGate {
            high: f64::from(percent.min(100)) / 100.0,
            window_at: now,
            window_cpu_ns: cpu_ns,
            on: percent == 0,
            last_percent: 0,
        }
    }

    /// Whether turns should gather completions now.
    pub fn on(&self) -> bool {
        self.on
    }

    /// Whether a window has ended by `now` (then call [`BusyGate::close_window`]).
    pub fn window_over(&self, now: Millis) -> bool {
        now >= self.window_at + WINDOW_MS
    }

    /// Ends the window at `now`, with the thread's CPU time then; returns true when batching
    /// has just been switched on.
    pub fn close_window(&mut self, now: Millis, cpu_ns: u64) -> bool {
        let wall_ns = (now - self.window_at) * 1_000_000;
        let busy = cpu_ns.saturating_sub(self.window_cpu_ns) as f64 / wall_ns.max(1) as f64;
        self.window_at = now;
        self.window_cpu_ns = cpu_ns;
        self.last_percent = (busy * 100.0).round().min(100.0) as u32;
        if self.high == 0.0 {
            return false;
        }
        let was = self.on;
        self.on = if was {
            busy >= self.high * LOW
        } else {
            busy >= self.high
        };
        self.on && !was
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    /// Feeds windows of the given busy shares (percent); returns the gate's state after each.
    fn run(percent: u32, shares: &[u64]) -> Vec<bool> {
        let mut g = BusyGate::new(percent, 1, 0);
        let (mut now, mut cpu) = (1, 0);
        shares
            .iter()
            .map(|s| {
                now += WINDOW_MS;
                cpu += s * WINDOW_MS * MS / 100;
                assert!(g.window_over(now));
                g.close_window(now, cpu);
                g.on()
            })
            .collect()
    }

    #[test]
    fn an_idle_shard_does_not_batch() {
        assert_eq!(run(50, &[0, 5, 20, 49]), [false; 4]);
    }

    #[test]
    fn batching_starts_at_the_threshold_and_stops_below_its_low_share() {
        // On at 50%, held down to 35%, off below it, on again only at 50%.
        let got = run(50, &[49, 50, 40, 35, 34, 45, 50]);
        assert_eq!(got, [false, true, true, true, false, false, true]);
    }

    #[test]
    fn zero_batches_always_and_a_hundred_only_when_saturated() {
        assert_eq!(run(0, &[0, 0, 100]), [true; 3]);
        assert_eq!(run(100, &[99, 100, 75]), [false, true, true]);
    }

    #[test]
    fn a_window_ends_only_after_its_length_and_reports_its_share() {
        let mut g = BusyGate::new(50, 100, 7 * MS);
        assert!(!g.window_over(100 + WINDOW_MS - 1));
        assert!(g.window_over(100 + WINDOW_MS));
        // 6 ms of CPU over a 12 ms window (a late turn): 50%.
        assert!(g.close_window(112, 13 * MS));
        assert_eq!(g.last_percent, 50);
        // An idle window (no CPU used) switches it off.
        assert!(!g.close_window(124, 13 * MS));
        assert!(!g.on());
        assert_eq!(g.last_percent, 0);
    }
}
