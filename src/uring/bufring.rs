//! The provided-buffer ring: receive buffers the kernel picks from when data arrives, so an
//! idle connection holds none.
//!
//! The shard owns the memory for the ring's life. A buffer is the kernel's from the moment it
//! sits in the ring until a completion names it; the shard then reads it and gives it back at
//! once (`recycle`), copying only the bytes of a request split across reads.
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
        };
        // SAFETY: the entries array is page-aligned, `count` entries long, and stays mapped
        // until `drop`, after the ring (declared before this in the shard) is gone.
        let reg = unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(entries as u64, count, bgid, 0)
        };
        reg?;
        for bid in 0..count {
            br.put(bid);
        }
        br.publish();
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
        // this buffer before posting the completion, and will not touch it until `recycle`.
        unsafe { std::slice::from_raw_parts(self.mem.add(usize::from(bid) * self.stride), len) }
    }

    /// Gives buffer `bid` back to the kernel.
    pub fn recycle(&mut self, bid: u16) {
        self.put(bid);
        self.publish();
    }

    /// Queues buffer `bid` for the kernel; it sees it at the next [`BufRing::publish`].
    pub fn put(&mut self, bid: u16) {
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
    pub fn publish(&self) {
        // SAFETY: the tail field overlays the first entry's reserved field, inside the mapping,
        // 2-byte aligned; the kernel reads it concurrently, hence the atomic release store.
        let tail = unsafe { &*(BufRingEntry::tail(self.entries).cast::<AtomicU16>()) };
        tail.store(self.tail, Ordering::Release);
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
