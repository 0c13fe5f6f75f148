//! One epoll shard's event loop (being built).
use std::os::fd::OwnedFd;

use crate::config::ServeConfig;
use crate::handler::Handler;
use crate::stats::ShardStats;
use crate::wake::Wakeup;

/// An epoll shard.
pub struct Shard<H: Handler> {
    _handler: H,
}

impl<H: Handler> Shard<H> {
    pub fn new(
        _id: usize,
        _listener: OwnedFd,
        _cfg: &ServeConfig,
        _handler: H,
        _wakeup: Wakeup,
    ) -> Result<Self, String> {
        Err("the epoll engine is not built yet".into())
    }

    pub fn describe(&self) -> String {
        "epoll".into()
    }

    pub fn run(self) -> ShardStats {
        ShardStats::default()
    }
}
