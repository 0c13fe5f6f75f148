//! Per-shard counters, written only by their own shard and merged when read.

/// What one shard did and what it asked of the kernel.
#[derive(Clone, Copy, Debug, Default)]
pub struct ShardStats {
    pub accepted: u64,
    pub closed: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// `io_uring_enter` calls, submission entries queued, completions reaped.
    pub enters: u64,
    pub sqes: u64,
    pub cqes: u64,
    /// Receives that found the provided-buffer ring empty.
    pub enobufs: u64,
    pub short_sends: u64,
    pub zc_sends: u64,
    pub accept_errors: u64,
    pub recv_errors: u64,
    pub send_errors: u64,
    pub request_timeouts: u64,
    pub write_timeouts: u64,
    pub idle_closes: u64,
}

impl ShardStats {
    /// Adds another shard's counters.
    pub fn merge(&mut self, o: &ShardStats) {
        self.accepted += o.accepted;
        self.closed += o.closed;
        self.bytes_in += o.bytes_in;
        self.bytes_out += o.bytes_out;
        self.enters += o.enters;
        self.sqes += o.sqes;
        self.cqes += o.cqes;
        self.enobufs += o.enobufs;
        self.short_sends += o.short_sends;
        self.zc_sends += o.zc_sends;
        self.accept_errors += o.accept_errors;
        self.recv_errors += o.recv_errors;
        self.send_errors += o.send_errors;
        self.request_timeouts += o.request_timeouts;
        self.write_timeouts += o.write_timeouts;
        self.idle_closes += o.idle_closes;
    }
}
