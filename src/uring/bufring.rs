//! The provided-buffer ring: receive buffers the kernel picks from when data arrives, so an
//! idle connection holds none.
//!
//! The shard owns the memory for the ring's life. A buffer is the kernel's from the moment it
//! sits in the ring until a completion names it; the shard then reads it and gives it back at
//! once (`recycle`), copying only the bytes of a request split across reads.
//!
//! The kernel takes buffers from the ring first in, first out, so a ring holding all 512 would
//! cycle through every one of them (hundreds of KiB of cold cache lines written per cycle). The
//! ring is therefore kept only as full as recent use needs ([`Refill`]), refilled at each loop
//! turn's end with the buffers given back last, which are still in cache.
#![allow(unsafe_code)] // talks to the kernel: every block carries a SAFETY comment
use std::io;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;

use io_uring::IoUring;

/// A registered buffer ring with `count` buffers of `size` bytes.
pub struct BufRing {
    entries: *mut BufRingEntry,
    entries_len: usize,
    mem: *mut u8,
    mem_len: usize,
    count: u16,
    size: usize,
    /// Distance between buffer starts: a cache line more than `size`, so the starts of the
    /// buffers (where requests land) do not all fall into the same cache sets.
    stride: usize,
    tail: u16,
    refill: Refill,
}

fn mmap_anon(len: usize) -> io::Result<*mut u8> {
    // SAFETY: an anonymous private mapping; no existing memory is affected.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(p.cast())
}

impl BufRing {
    /// Maps and registers `count` (a power of two, at most 32768) buffers of `size` bytes.
    pub fn new(ring: &IoUring, count: u16, size: usize, bgid: u16) -> io::Result<BufRing> {
        if !count.is_power_of_two() || count > 32768 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "buffer count must be a power of two up to 32768",
            ));
        }
        let entries_len = usize::from(count) * std::mem::size_of::<BufRingEntry>();
        let entries = mmap_anon(entries_len)?.cast::<BufRingEntry>();
        let stride = size + 64;
        let mem_len = usize::from(count) * stride;
        let mem = match mmap_anon(mem_len) {
            Ok(m) => m,
            Err(e) => {
                // SAFETY: `entries` was mapped above with this length and is not used elsewhere.
                unsafe { libc::munmap(entries.cast(), entries_len) };
                return Err(e);
            }
        };
        let mut br = BufRing {
            entries,
            entries_len,
            mem,
            mem_len,
            count,
            size,
            stride,
            tail: 0,
            refill: Refill::new(count),
        };
        // SAFETY: the entries array is page-aligned, `count` entries long, and stays mapped
        // until `drop`, after the ring (declared before this in the shard) is gone.
        let reg = unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(entries as u64, count, bgid, 0)
        };
        reg?;
        br.top_up();
        Ok(br)
    }

    /// Buffer size in bytes.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The first `len` bytes of buffer `bid`, which a completion just handed back.
    pub fn get(&self, bid: u16, len: usize) -> &[u8] {
        assert!(
            bid < self.count && len <= self.size,
            "kernel named buffer {bid} with {len} bytes"
        );
        // SAFETY: `bid` and `len` are in bounds (checked above); the kernel finished writing
        // this buffer before posting the completion, and will not touch it until a top-up after
        // `recycle` puts it back in the ring.
        unsafe { std::slice::from_raw_parts(self.mem.add(usize::from(bid) * self.stride), len) }
    }

    /// Takes back buffer `bid`, which a completion named; it returns to the ring at the next
    /// [`BufRing::top_up`].
    pub fn recycle(&mut self, bid: u16) {
        self.refill.given_back(bid);
    }

    /// A receive completion that delivered no data (an error, the end of input, or one for a
    /// connection already gone): takes back any buffer it carries, and if it found the ring
    /// empty (ENOBUFS), every buffer goes in at the next top-up, until use shows fewer are
    /// enough.
    pub fn take_back(&mut self, buffer: Option<u16>, result: i32) {
        if let Some(bid) = buffer {
            self.recycle(bid);
        }
        if result == -libc::ENOBUFS {
            self.refill.ran_dry();
        }
    }

    /// End of a loop turn: puts buffers back into the ring, the last given back first, until
    /// it holds what recent use needs. Returns how many buffers the ring now holds.
    pub fn top_up(&mut self) -> u32 {
        self.refill.end_turn();
        let mut put = false;
        while let Some(bid) = self.refill.next() {
            self.put(bid);
            put = true;
        }
        if put {
            self.publish();
        }
        self.refill.in_ring
    }

    /// Queues buffer `bid` for the kernel; it sees it at the next [`BufRing::publish`].
    fn put(&mut self, bid: u16) {
        let idx = usize::from(self.tail & (self.count - 1));
        // SAFETY: `idx` < `count`, so the entry lies in the mapped array; the kernel reads only
        // entries before the published tail, and this one is after it.
        let entry = unsafe { &mut *self.entries.add(idx) };
        // SAFETY: `bid` < `count`, so the address is inside the buffer mapping.
        entry.set_addr(unsafe { self.mem.add(usize::from(bid) * self.stride) } as u64);
        entry.set_len(self.size as u32);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Makes every buffer put so far visible to the kernel.
    fn publish(&self) {
        // SAFETY: the tail field overlays the first entry's reserved field, inside the mapping,
        // 2-byte aligned; the kernel reads it concurrently, hence the atomic release store.
        let tail = unsafe { &*(BufRingEntry::tail(self.entries).cast::<AtomicU16>()) };
        tail.store(self.tail, Ordering::Release);
    }
}

/// How full the ring is kept, and which buffers go into it.
///
/// Buffers given back wait on a stack; each turn's end moves buffers from its top (the ones
/// last written, so still in cache) into the ring until it holds `window`: twice the most
/// buffers taken in one recent turn (a peak that decays by 1/64 a turn), at least
/// `MIN_WINDOW`. A turn that takes more than that finds the ring dry; the next top-up then puts
/// every buffer in (`ran_dry`), and the window shrinks again as use settles. A buffer counts as
/// in the ring from the top-up that put it there until the completion naming it is handled, and
/// is never both in the ring and on the stack.
#[derive(Debug)]
struct Refill {
    count: u32,
    /// Given back and not yet in the ring, the last given back on top.
    spare: Vec<u16>,
    in_ring: u32,
    window: u32,
    /// Buffers given back since the last top-up.
    taken: u32,
    /// The most taken in one turn, decaying.
    peak: u32,
    /// A receive found the ring empty since the last top-up (or nothing was put in yet).
    dry: bool,
}

/// The fewest buffers a top-up leaves in the ring (or all of them, if there are fewer).
const MIN_WINDOW: u32 = 32;

impl Refill {
    /// Every buffer starts on the stack (buffer 0 on top), and the first top-up puts them all
    /// in: a burst of connections at start-up finds the whole ring.
    fn new(count: u16) -> Refill {
        Refill {
            count: u32::from(count),
            spare: (0..count).rev().collect(),
            in_ring: 0,
            window: 0,
            taken: 0,
            peak: 0,
            dry: true,
        }
    }

    fn given_back(&mut self, bid: u16) {
        debug_assert!(
            self.in_ring > 0,
            "buffer {bid} given back but none is in the ring"
        );
        self.in_ring = self.in_ring.saturating_sub(1);
        self.taken += 1;
        self.spare.push(bid);
    }

    fn ran_dry(&mut self) {
        self.dry = true;
    }

    /// Sizes the window from the turn that just ended: called once per top-up, first.
    fn end_turn(&mut self) {
        let decayed = self.peak.saturating_sub((self.peak / 64).max(1));
        self.peak = self.taken.max(decayed);
        if std::mem::take(&mut self.dry) {
            self.peak = self.peak.max(self.count.div_ceil(2));
        }
        self.taken = 0;
        self.window = (2 * self.peak).clamp(MIN_WINDOW.min(self.count), self.count);
    }

    /// The next buffer to put in the ring, while it holds fewer than the window.
    fn next(&mut self) -> Option<u16> {
        if self.in_ring >= self.window {
            return None;
        }
        let bid = self.spare.pop()?;
        self.in_ring += 1;
        Some(bid)
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: both regions were mapped in `new` with these lengths. The kernel pins the
        // pages it registered, so unmapping cannot pull memory from under it.
        unsafe {
            libc::munmap(self.mem.cast(), self.mem_len);
            libc::munmap(self.entries.cast(), self.entries_len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{HashSet, VecDeque};

    /// A refill policy and a kernel that takes buffers from its ring first in, first out.
    struct Sim {
        r: Refill,
        ring: VecDeque<u16>,
    }

    impl Sim {
        fn new(count: u16) -> Sim {
            let mut s = Sim {
                r: Refill::new(count),
                ring: VecDeque::new(),
            };
            s.top_up();
            s
        }

        fn top_up(&mut self) {
            self.r.end_turn();
            while let Some(b) = self.r.next() {
                assert!(!self.ring.contains(&b), "buffer {b} put in twice");
                self.ring.push_back(b);
            }
            assert_eq!(self.r.in_ring as usize, self.ring.len());
            assert_eq!(self.ring.len() + self.r.spare.len(), self.r.count as usize);
        }

        /// One loop turn in which `n` receives arrive; returns the buffers they used.
        fn turn(&mut self, n: u32) -> Vec<u16> {
            let mut used = Vec::new();
            for _ in 0..n {
                match self.ring.pop_front() {
                    Some(b) => used.push(b),
                    None => self.r.ran_dry(),
                }
            }
            for &b in &used {
                self.r.given_back(b);
            }
            self.top_up();
            used
        }
    }

    #[test]
    fn the_first_top_up_puts_every_buffer_in() {
        let s = Sim::new(512);
        assert_eq!((s.ring.len(), s.r.spare.len()), (512, 0));
    }

    #[test]
    fn steady_use_cycles_through_few_buffers() {
        let mut s = Sim::new(512);
        for _ in 0..2000 {
            s.turn(20);
        }
        assert_eq!(s.r.window, 40);
        let mut seen = HashSet::new();
        for _ in 0..500 {
            seen.extend(s.turn(20));
        }
        assert!(
            seen.len() <= 60,
            "{} distinct buffers for 20 a turn",
            seen.len()
        );
        let mut s = Sim::new(512);
        for _ in 0..2000 {
            s.turn(3);
        }
        assert_eq!(s.r.window, MIN_WINDOW);
    }

    #[test]
    fn a_burst_beyond_the_window_gets_every_buffer_next_turn() {
        let mut s = Sim::new(512);
        for _ in 0..2000 {
            s.turn(10);
        }
        assert_eq!(s.ring.len(), MIN_WINDOW as usize);
        let used = s.turn(300);
        assert_eq!(
            used.len(),
            MIN_WINDOW as usize,
            "the rest found the ring dry"
        );
        assert_eq!(s.ring.len(), 512);
        assert_eq!(s.turn(300).len(), 300);
        // And it shrinks back gradually, never below twice what a turn takes.
        for _ in 0..3000 {
            assert_eq!(s.turn(100).len(), 100);
        }
        assert_eq!(s.r.window, 200);
    }

    #[test]
    fn a_ring_smaller_than_the_minimum_window_is_kept_full() {
        let mut s = Sim::new(2);
        for _ in 0..100 {
            s.turn(1);
            assert_eq!(s.ring.len(), 2);
        }
        assert_eq!(s.turn(5).len(), 2);
        assert_eq!(s.ring.len(), 2);
    }
}
