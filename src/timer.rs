//! Per-shard deadlines: a min-heap with lazy re-arming.
//!
//! Moving a connection's deadline later, which happens on every request, is a field write: the
//! heap keeps the earlier entry, and when it pops the shard sees the deadline moved and pushes
//! it again. Only a deadline moved earlier pushes at once. The shard waits in the ring for the
//! nearest entry, so there is one timer per shard, not one per connection.
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Milliseconds on the shard's monotonic clock; 0 means "no deadline".
pub type Millis = u64;

/// Where a connection's deadline stands.
#[derive(Clone, Copy, Debug, Default)]
pub struct Deadline {
    /// When the connection times out, or 0.
    pub at: Millis,
    /// The earliest heap entry for this connection, or 0 when it has none.
    queued: Millis,
}

/// The shard's timer heap of (when, slot, generation).
#[derive(Default)]
pub struct Timers {
    heap: BinaryHeap<Reverse<(Millis, u32, u32)>>,
}

impl Timers {
    /// Sets a connection's deadline (0 clears it).
    pub fn set(&mut self, d: &mut Deadline, at: Millis, slot: u32, gen: u32) {
        d.at = at;
        if at != 0 && (d.queued == 0 || at < d.queued) {
            d.queued = at;
            self.heap.push(Reverse((at, slot, gen)));
        }
    }

    /// The nearest entry's time.
    pub fn next(&self) -> Option<Millis> {
        self.heap.peek().map(|Reverse((at, _, _))| *at)
    }

    /// Pops the next entry due at `now`.
    pub fn pop_due(&mut self, now: Millis) -> Option<(Millis, u32, u32)> {
        match self.heap.peek() {
            Some(&Reverse((at, slot, gen))) if at <= now => {
                self.heap.pop();
                Some((at, slot, gen))
            }
            _ => None,
        }
    }

    /// Checks a popped entry against its connection's deadline: true when the deadline has
    /// really passed; otherwise re-queues it if it moved later.
    pub fn fired(&mut self, entry: (Millis, u32, u32), d: &mut Deadline, now: Millis) -> bool {
        let (at, slot, gen) = entry;
        if d.queued != at {
            return false; // superseded by an earlier entry
        }
        d.queued = 0;
        if d.at == 0 {
            return false;
        }
        if d.at <= now {
            return true;
        }
        d.queued = d.at;
        self.heap.push(Reverse((d.at, slot, gen)));
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_deadlines_rearm_lazily_and_earlier_ones_fire() {
        let mut t = Timers::default();
        let mut ds = [Deadline::default(), Deadline::default()];
        t.set(&mut ds[0], 100, 0, 1);
        t.set(&mut ds[0], 300, 0, 1); // moved later: no push
        t.set(&mut ds[1], 200, 1, 1);
        t.set(&mut ds[1], 50, 1, 1); // moved earlier: pushed
        assert_eq!(t.next(), Some(50));
        let run = |t: &mut Timers, ds: &mut [Deadline; 2], now| {
            let mut fired = Vec::new();
            while let Some(e) = t.pop_due(now) {
                if t.fired(e, &mut ds[e.1 as usize], now) {
                    fired.push(e.1);
                }
            }
            fired
        };
        assert_eq!(run(&mut t, &mut ds, 150), vec![1]);
        assert!(run(&mut t, &mut ds, 299).is_empty());
        assert_eq!(run(&mut t, &mut ds, 300), vec![0]);
        assert_eq!(t.next(), None);
    }
}
