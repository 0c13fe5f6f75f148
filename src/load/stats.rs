//! Per-thread counters and latency histogram, merged at the end of the run.
use hdrhistogram::Histogram;

/// Kinds of errors, counted per event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A connection attempt failed.
    Connect,
    /// The connection was reset (or a send/receive failed) with requests outstanding.
    Reset,
    /// The server closed the connection with requests outstanding.
    Closed,
    /// A request took longer than `--timeout`.
    Timeout,
    /// The response did not parse.
    Malformed,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 5] = [
        ErrorKind::Connect,
        ErrorKind::Reset,
        ErrorKind::Closed,
        ErrorKind::Timeout,
        ErrorKind::Malformed,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Reset => "reset",
            ErrorKind::Closed => "closed",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Malformed => "malformed",
        }
    }
}

/// Highest latency the histogram holds, in microseconds (an hour).
pub const MAX_LATENCY_US: u64 = 3_600_000_000;

/// One worker's results.
pub struct Stats {
    /// Requests whose whole response arrived.
    pub requests: u64,
    /// Requests handed to the kernel to send.
    pub sent: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    /// Successful connects.
    pub connects: u64,
    /// Count per status code; index = code, codes outside 0..1000 land in 0.
    pub status: Vec<u64>,
    pub errors: [u64; 5],
    /// Latency in microseconds.
    pub latency: Histogram<u64>,
}

impl Stats {
    pub fn new() -> Self {
        Stats {
            requests: 0,
            sent: 0,
            bytes_read: 0,
            bytes_written: 0,
            connects: 0,
            status: vec![0; 1000],
            errors: [0; 5],
            latency: new_histogram(),
        }
    }

    #[inline]
    pub fn error(&mut self, kind: ErrorKind) {
        self.errors[kind as usize] += 1;
    }

    pub fn error_total(&self) -> u64 {
        self.errors.iter().sum()
    }

    #[inline]
    pub fn response(&mut self, status: u16, latency_ns: u64) {
        self.requests += 1;
        let i = if (status as usize) < self.status.len() {
            status as usize
        } else {
            0
        };
        self.status[i] += 1;
        self.latency
            .saturating_record((latency_ns / 1000).clamp(1, MAX_LATENCY_US));
    }

    pub fn merge(&mut self, o: &Stats) {
        self.requests += o.requests;
        self.sent += o.sent;
        self.bytes_read += o.bytes_read;
        self.bytes_written += o.bytes_written;
        self.connects += o.connects;
        for (a, b) in self.status.iter_mut().zip(&o.status) {
            *a += b;
        }
        for (a, b) in self.errors.iter_mut().zip(&o.errors) {
            *a += b;
        }
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.latency.add(&o.latency);
    }
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds")
}
