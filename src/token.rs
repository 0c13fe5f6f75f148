//! Event tags: which operation, on which connection slot, of which generation. The io_uring
//! engine puts them in each entry's `user_data`, the epoll engine in each registration's data.
//!
//! `op` (8 bits) | `gen` (24 bits) | `slot` (32 bits). A slot is reused after a connection
//! closes, so a late completion for the old connection carries a stale generation and is
//! recognised as such instead of being applied to the new one.

/// Operations the shard submits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Op {
    Accept = 1,
    Recv = 2,
    Send = 3,
    Cancel = 4,
    Close = 5,
    Shutdown = 6,
    Wake = 7,
    Timeout = 8,
    Reset = 9,
    /// The load generator's connects.
    Connect = 10,
    /// A route's operation (`crate::io`: files, upstream sockets), by its id and generation in
    /// the shard's driver.
    Io = 11,
    /// The cancel of a route's operation (its completion says nothing the shard needs).
    IoCancel = 12,
    /// A message from another shard's ring: task (slot, generation in the result) was woken.
    Woken = 13,
    /// A message this shard sent (by its index among those in flight).
    Message = 14,
}

const GEN_MASK: u32 = (1 << 24) - 1;

/// Packs an operation, slot and generation.
pub fn encode(op: Op, slot: u32, gen: u32) -> u64 {
    (op as u64) << 56 | u64::from(gen & GEN_MASK) << 32 | u64::from(slot)
}

/// Unpacks `user_data`; `None` for a value ringshard never submitted.
pub fn decode(ud: u64) -> Option<(Op, u32, u32)> {
    let op = match (ud >> 56) as u8 {
        1 => Op::Accept,
        2 => Op::Recv,
        3 => Op::Send,
        4 => Op::Cancel,
        5 => Op::Close,
        6 => Op::Shutdown,
        7 => Op::Wake,
        8 => Op::Timeout,
        9 => Op::Reset,
        10 => Op::Connect,
        11 => Op::Io,
        12 => Op::IoCancel,
        13 => Op::Woken,
        14 => Op::Message,
        _ => return None,
    };
    Some((op, ud as u32, (ud >> 32) as u32 & GEN_MASK))
}

/// Generations wrap at 24 bits.
pub fn next_gen(gen: u32) -> u32 {
    (gen + 1) & GEN_MASK
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for (op, slot, gen) in [
            (Op::Recv, 0, 0),
            (Op::Send, u32::MAX, GEN_MASK),
            (Op::Wake, 7, 12345),
        ] {
            assert_eq!(decode(encode(op, slot, gen)), Some((op, slot, gen)));
        }
        assert_eq!(decode(0), None);
        assert_eq!(next_gen(GEN_MASK), 0);
    }
}
