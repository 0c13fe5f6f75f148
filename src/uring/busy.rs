//! When batched waits pay: only while the shard is busy.
//!
//! A batched wait holds a turn's first completions until more arrive or `--wait-usec` runs out:
//! fewer, fuller turns, each request answered up to that much later. Under load that is a good
//! trade (turns cost a system call and a pass over the loop, and queueing dominates latency
//! anyway); on a shard with CPU to spare it only adds latency, since a client sending on its
//! own schedule (an open loop) has its requests held for the whole window at any rate. So a
//! shard measures how much of a CPU its thread wanted (ran, or waited on a run queue to run)
//! over each window of at least [`WINDOW_MS`], and batches from [`ON_AFTER`] windows in a row
//! where that reached `--wait-busy` percent until one falls below [`LOW`] of it: batching
//! itself lowers the shard's CPU use, and the gap keeps that from switching it off again; the
//! windows in a row keep a host's hiccup from switching it on under a load that would then keep
//! it on.
pub use crate::sys::sched::Sample;
use crate::timer::Millis;

/// Shortest measurement window.
pub const WINDOW_MS: Millis = 10;
/// Batching stops below this share of the threshold that started it.
pub const LOW: f64 = 0.5;
/// Windows in a row at or above the threshold that start batching: a host's hiccup (a burst of
/// steal time reads as busy) does not switch on batching that a lighter load then keeps.
pub const ON_AFTER: u32 = 3;

/// How many connections a shard hears from, and so how many completions a wait may gather.
///
/// A closed-loop client (wrk, a browser, an application's connection pool) sends a connection's
/// next request only once it has read the answer to the last. A wait that gathers as many
/// completions as the last turn had can settle on the requests of nearly every connection in
/// play: it holds the first of them until the client, idle for want of answers, sends the
/// rest, and the two sides take turns instead of working at once. So a wait gathers at most half of the connections heard from in this load
/// window or the last and open now ([`SHARE`]): the turns settle into two groups, and the client
/// works on one while the shard answers the other. Below [`MIN_GATHER`], a wait does not gather
/// at all: the few turns it would save cost less than its hold and its timer. DESIGN.md, "When
/// a wait gathers completions", has the figures.
pub struct Talkers {
    window: u32,
    now: u32,
    last: u32,
}

/// Share of the connections heard from that one wait may gather (1/SHARE).
pub const SHARE: u32 = 2;
/// Fewest completions worth gathering.
pub const MIN_GATHER: u32 = 16;

impl Talkers {
    pub fn new() -> Talkers {
        Talkers {
            window: 1,
            now: 0,
            last: 0,
        }
    }

    /// A connection sent data; `mark` is its own record of the window it last did.
    pub fn heard(&mut self, mark: &mut u32) {
        if *mark != self.window {
            *mark = self.window;
            self.now += 1;
        }
    }

    /// A load window ended.
    pub fn roll(&mut self) {
        self.window = self.window.wrapping_add(1).max(1);
        self.last = std::mem::take(&mut self.now);
    }

    /// Connections heard from in this window or the last, whichever had more, of the `open`
    /// ones: with a new connection per request, many come and go in a window, and only those
    /// open at once are in play.
    pub fn count(&self, open: usize) -> u32 {
        self.now.max(self.last).min(open as u32)
    }

    /// Most completions a wait may gather (1: it returns at the first) with `open` connections.
    pub fn gather_limit(&self, open: usize) -> usize {
        gather_limit(self.count(open))
    }
}

/// Most completions a wait may gather when `peers` connections are in play: a [`SHARE`] of
/// them, or 1 (return at the first) when that is fewer than [`MIN_GATHER`].
pub fn gather_limit(peers: u32) -> usize {
    match peers / SHARE {
        n if n < MIN_GATHER => 1,
        n => n as usize,
    }
}

impl Default for Talkers {
    fn default() -> Self {
        Talkers::new()
    }
}

/// Whether a shard is busy enough for batched waits.
pub struct BusyGate {
    /// Busy share (0..=1) at which batching starts; 0: batch always.
    high: f64,
    window_at: Millis,
    /// The reading the current window started from (`None` after a failed read).
    from: Option<Sample>,
    on: bool,
    /// Windows in a row at or above the threshold while off.
    over: u32,
    /// Share of a CPU wanted in the last whole window, in percent.
    pub last_percent: u32,
}

impl BusyGate {
    /// `percent`: the `--wait-busy` threshold (0 batches always); `now` and `at`: the clock
    /// and a reading of the load when the shard starts.
    pub fn new(percent: u32, now: Millis, at: Option<Sample>) -> BusyGate {
        BusyGate {
            high: f64::from(percent.min(100)) / 100.0,
            window_at: now,
            from: at,
            on: percent == 0,
            over: 0,
            last_percent: 0,
        }
    }

    /// Whether turns should gather completions now.
    pub fn on(&self) -> bool {
        self.on
    }

    /// Whether the current window is long enough to close (see [`BusyGate::close_window`]).
    pub fn window_over(&self, now: Millis) -> bool {
        now >= self.window_at + WINDOW_MS
    }

    /// Ends the window with a reading of the load (`None`: unreadable, the window is dropped
    /// and the state kept); returns true when batching has just been switched on.
    pub fn close_window(&mut self, now: Millis, at: Option<Sample>) -> bool {
        self.window_at = now;
        let (Some(from), Some(to)) = (std::mem::replace(&mut self.from, at), at) else {
            return false;
        };
        let wall = to.wall_ns.saturating_sub(from.wall_ns).max(1);
        let busy = (to.busy_ns.saturating_sub(from.busy_ns) as f64 / wall as f64).min(1.0);
        self.last_percent = (busy * 100.0).round() as u32;
        if self.high == 0.0 {
            return false;
        }
        let was = self.on;
        self.over = if busy >= self.high { self.over + 1 } else { 0 };
        self.on = if was {
            busy >= self.high * LOW
        } else {
            self.over >= ON_AFTER
        };
        self.on && !was
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    /// Feeds windows of 10 ms with the given busy shares (percent); the gate's state after each.
    fn run(percent: u32, shares: &[u64]) -> Vec<bool> {
        let at = |ms: u64, busy: u64| {
            Some(Sample {
                wall_ns: ms * MS,
                busy_ns: busy,
            })
        };
        let mut g = BusyGate::new(percent, 1, at(1, 0));
        let (mut now, mut busy) = (1, 0);
        shares
            .iter()
            .map(|s| {
                now += WINDOW_MS;
                busy += s * WINDOW_MS * MS / 100;
                assert!(g.window_over(now));
                g.close_window(now, at(now, busy));
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
        // On after three windows at 50%, held down to 25%, off below it, on again only after
        // three more at 50%.
        let got = run(50, &[49, 50, 50, 50, 30, 25, 24, 45, 50, 50, 50]);
        let want = [
            false, false, false, true, true, true, false, false, false, false, true,
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn a_hiccup_does_not_start_batching() {
        // One or two busy windows (a burst of steal time reads as busy) between lighter ones.
        let got = run(60, &[40, 90, 40, 70, 80, 43, 45, 40]);
        assert_eq!(got, [false; 8]);
    }

    #[test]
    fn zero_batches_always_and_a_hundred_only_when_saturated() {
        assert_eq!(run(0, &[0, 0, 100]), [true; 3]);
        assert_eq!(
            run(100, &[99, 100, 100, 100, 50]),
            [false, false, false, true, true]
        );
    }

    #[test]
    fn a_window_is_measured_by_its_readings_not_the_millisecond_clock() {
        let at = |wall_ms: u64, busy_ms: u64| {
            Some(Sample {
                wall_ns: wall_ms * MS,
                busy_ns: busy_ms * MS,
            })
        };
        let mut g = BusyGate::new(50, 100, at(100, 7));
        assert!(!g.window_over(100 + WINDOW_MS - 1));
        assert!(g.window_over(100 + WINDOW_MS));
        // 6 ms busy over a 12 ms window: 50%; on at the third such window.
        assert!(!g.close_window(110, at(112, 13)));
        assert_eq!(g.last_percent, 50);
        assert!(!g.close_window(122, at(124, 19)));
        assert!(g.close_window(134, at(136, 25)));
        // A long idle spell (10 s, 1 ms busy) is one window: off.
        assert!(!g.close_window(10_112, at(10_112, 14)));
        assert!(!g.on());
        assert_eq!(g.last_percent, 0);
    }

    #[test]
    fn an_unreadable_load_keeps_the_state_and_skips_the_window() {
        let at = |ms: u64| {
            Some(Sample {
                wall_ns: ms * MS,
                busy_ns: ms * MS,
            })
        };
        let mut g = BusyGate::new(50, 0, at(0));
        assert!(!g.close_window(4, at(4)));
        assert!(!g.close_window(7, at(7)));
        assert!(g.close_window(10, at(10))); // fully busy three times: on
        assert!(!g.close_window(20, None)); // unreadable: still on
        assert!(g.on());
        // The window after the failed read starts from the next good reading.
        assert!(!g.close_window(30, at(30)));
        assert!(g.on());
        assert_eq!(g.last_percent, 100);
        // A reading below the previous one (it cannot go backwards) counts as idle, not wraps.
        assert!(!g.close_window(
            40,
            Some(Sample {
                wall_ns: 40 * MS,
                busy_ns: 0
            })
        ));
        assert!(!g.on());
    }
}
