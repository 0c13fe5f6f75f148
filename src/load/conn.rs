//! One client connection's state inside a worker.
use std::collections::VecDeque;
use std::os::fd::RawFd;

use crate::http::client::ResponseParser;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnState {
    /// No socket; reconnect at `retry_at`.
    Down,
    Connecting,
    Open,
}

pub struct Conn {
    pub fd: RawFd,
    /// Bumped on every reconnect so completions of the previous socket are recognised.
    pub gen: u32,
    pub state: ConnState,
    pub parser: ResponseParser,
    /// Send (closed loop) or intended send (open loop) time of each request in flight, in order.
    pub inflight: VecDeque<u64>,
    /// A send is in flight: its byte range of the request blob.
    pub sending: bool,
    pub send_off: usize,
    pub send_len: usize,
    pub recv_armed: bool,
    /// Rotation index of the next request.
    pub next_req: usize,
    /// Open loop: index of the next scheduled request, and this connection's phase.
    pub sched_k: u64,
    pub phase_ns: f64,
    /// Down: when to reconnect. Connecting: when the attempt started.
    pub since: u64,
}

impl Conn {
    pub fn new(depth: usize, head_method: bool, next_req: usize, phase_ns: f64) -> Self {
        Conn {
            fd: -1,
            gen: 0,
            state: ConnState::Down,
            parser: ResponseParser::new(head_method),
            inflight: VecDeque::with_capacity(depth),
            sending: false,
            send_off: 0,
            send_len: 0,
            recv_armed: false,
            next_req,
            sched_k: 0,
            phase_ns,
            since: 0,
        }
    }
}
