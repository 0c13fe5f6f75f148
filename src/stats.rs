//! Per-shard counters, written only by their own shard and merged when read.
pub use crate::http::latency::{new_histogram, Latency, SAMPLE};

/// What one shard did and what it asked of the kernel.
#[derive(Clone, Copy, Debug, Default)]
pub struct ShardStats {
    pub accepted: u64,
    pub closed: u64,
    /// Responses written (requests answered, rejections included).
    pub requests: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Reads that delivered bytes, and send operations started (a send carries every response
    /// its connection's reads of one turn produced; continuations of short sends count too).
    pub recvs: u64,
    pub sends: u64,
    /// `io_uring_enter` calls, submission entries queued, completions reaped.
    pub enters: u64,
    pub sqes: u64,
    pub cqes: u64,
    /// Waits that asked to gather several completions (the others return at the first).
    pub gathering_waits: u64,
    /// Batched waits that returned with fewer completions than they asked for: the gathering
    /// window (`--wait-usec`) ran out, and the turn's first completions waited all of it.
    pub waits_cut: u64,
    /// Times batched waits switched on (the shard's load reached `--wait-busy`).
    pub wait_batching_starts: u64,
    /// 1 while this shard's waits batch (merged: how many shards do); a gauge.
    pub wait_batching: u64,
    /// Share of a CPU the shard's thread wanted (ran or waited to run) in its last load window,
    /// in percent (merged: the busiest shard's); a gauge, as of the shard's last loop turn.
    pub busy_percent: u64,
    /// Receives that found the provided-buffer ring empty.
    pub enobufs: u64,
    /// Times a connection stopped reading for backpressure (its output and unparsed input
    /// passed 1 MiB).
    pub reads_paused: u64,
    pub short_sends: u64,
    pub zc_sends: u64,
    pub accept_errors: u64,
    /// Wakes of another shard's tasks sent as messages between rings, and those received.
    pub wake_messages_sent: u64,
    pub wake_messages_received: u64,
    pub recv_errors: u64,
    pub send_errors: u64,
    pub request_timeouts: u64,
    pub write_timeouts: u64,
    pub idle_closes: u64,
    /// Requests timed for the latency histogram, as of its last publication (once a second).
    pub latency_samples: u64,
    /// Access log writes that failed (their lines are lost).
    pub log_write_failures: u64,
    /// Proxy routes: upstream connections opened, requests sent upstream (every try), tries
    /// after a request's first, and requests the proxy answered 502 or 504.
    pub upstream_connects: u64,
    pub upstream_requests: u64,
    pub upstream_retries: u64,
    pub upstream_failures: u64,
}

impl ShardStats {
    /// Adds another shard's counters (gauges: `wait_batching` adds up to the shards batching,
    /// `busy_percent` keeps the busiest).
    pub fn merge(&mut self, o: &ShardStats) {
        self.accepted += o.accepted;
        self.closed += o.closed;
        self.requests += o.requests;
        self.bytes_in += o.bytes_in;
        self.recvs += o.recvs;
        self.sends += o.sends;
        self.bytes_out += o.bytes_out;
        self.enters += o.enters;
        self.sqes += o.sqes;
        self.cqes += o.cqes;
        self.gathering_waits += o.gathering_waits;
        self.waits_cut += o.waits_cut;
        self.wait_batching_starts += o.wait_batching_starts;
        self.wait_batching += o.wait_batching;
        self.busy_percent = self.busy_percent.max(o.busy_percent);
        self.enobufs += o.enobufs;
        self.reads_paused += o.reads_paused;
        self.short_sends += o.short_sends;
        self.zc_sends += o.zc_sends;
        self.accept_errors += o.accept_errors;
        self.wake_messages_sent += o.wake_messages_sent;
        self.wake_messages_received += o.wake_messages_received;
        self.recv_errors += o.recv_errors;
        self.send_errors += o.send_errors;
        self.request_timeouts += o.request_timeouts;
        self.write_timeouts += o.write_timeouts;
        self.idle_closes += o.idle_closes;
        self.latency_samples += o.latency_samples;
        self.log_write_failures += o.log_write_failures;
        self.upstream_connects += o.upstream_connects;
        self.upstream_requests += o.upstream_requests;
        self.upstream_retries += o.upstream_retries;
        self.upstream_failures += o.upstream_failures;
    }
}

/// Number of counters in [`ShardStats::fields`].
pub const FIELDS: usize = 34;

impl ShardStats {
    /// Every counter as (Prometheus name, help, value), in a fixed order.
    pub fn fields(&self) -> [(&'static str, &'static str, u64); FIELDS] {
        [
            (
                "connections_accepted_total",
                "Connections accepted.",
                self.accepted,
            ),
            (
                "connections_closed_total",
                "Connections closed.",
                self.closed,
            ),
            (
                "connections_open",
                "Connections open now.",
                self.accepted.saturating_sub(self.closed),
            ),
            (
                "requests_total",
                "Responses written, rejections included.",
                self.requests,
            ),
            ("received_bytes_total", "Bytes received.", self.bytes_in),
            ("recvs_total", "Reads that delivered bytes.", self.recvs),
            (
                "sends_total",
                "Send operations started (one carries all of a turn's responses on a connection).",
                self.sends,
            ),
            (
                "sent_bytes_total",
                "Bytes handed to the kernel to send.",
                self.bytes_out,
            ),
            (
                "enter_calls_total",
                "io_uring_enter calls (epoll: epoll_wait and I/O syscalls).",
                self.enters,
            ),
            ("sqes_total", "Submission queue entries queued.", self.sqes),
            ("cqes_total", "Completions reaped.", self.cqes),
            (
                "gathering_waits_total",
                "Waits that asked to gather several completions (--wait-batch; the others return at the first).",
                self.gathering_waits,
            ),
            (
                "waits_cut_total",
                "Batched waits that ended with fewer completions than asked for (--wait-usec ran out).",
                self.waits_cut,
            ),
            (
                "wait_batching_starts_total",
                "Times batched waits switched on (the shard's load reached --wait-busy; io_uring engine).",
                self.wait_batching_starts,
            ),
            (
                "wait_batching",
                "1 while this shard's waits batch completions (io_uring engine).",
                self.wait_batching,
            ),
            (
                "busy_percent",
                "Share of a CPU the shard's thread ran or waited to run in its last window of 10 ms or more, in percent (io_uring engine).",
                self.busy_percent,
            ),
            (
                "enobufs_total",
                "Receives that found the provided-buffer ring empty.",
                self.enobufs,
            ),
            (
                "reads_paused_total",
                "Times a connection stopped reading for backpressure (1 MiB of unsent output and unparsed input).",
                self.reads_paused,
            ),
            (
                "short_sends_total",
                "Sends the kernel completed only in part.",
                self.short_sends,
            ),
            (
                "zero_copy_sends_total",
                "Sends made with SEND_ZC.",
                self.zc_sends,
            ),
            (
                "accept_errors_total",
                "Accepts that failed.",
                self.accept_errors,
            ),
            (
                "wake_messages_sent_total",
                "Wakes of another shard's tasks sent as messages to its ring (IORING_OP_MSG_RING).",
                self.wake_messages_sent,
            ),
            (
                "wake_messages_received_total",
                "Wakes of this shard's tasks received as messages from another shard's ring.",
                self.wake_messages_received,
            ),
            (
                "recv_errors_total",
                "Receives that failed (resets and the like).",
                self.recv_errors,
            ),
            ("send_errors_total", "Sends that failed.", self.send_errors),
            (
                "request_timeouts_total",
                "Requests not whole within the header or body timeout.",
                self.request_timeouts,
            ),
            (
                "write_timeouts_total",
                "Peers dropped for not reading.",
                self.write_timeouts,
            ),
            (
                "idle_closes_total",
                "Idle keep-alive connections closed.",
                self.idle_closes,
            ),
            (
                "latency_samples_total",
                "Requests timed for the latency histogram (as of its last publication, once a second).",
                self.latency_samples,
            ),
            (
                "log_write_failures_total",
                "Access log writes that failed; their lines are lost.",
                self.log_write_failures,
            ),
            (
                "upstream_connects_total",
                "Connections opened to proxy upstreams.",
                self.upstream_connects,
            ),
            (
                "upstream_requests_total",
                "Requests sent to proxy upstreams (every try).",
                self.upstream_requests,
            ),
            (
                "upstream_retries_total",
                "Tries of a proxied request after its first.",
                self.upstream_retries,
            ),
            (
                "upstream_failures_total",
                "Proxied requests answered 502 or 504 by the proxy.",
                self.upstream_failures,
            ),
        ]
    }
}
