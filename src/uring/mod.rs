//! The io_uring engine: one ring per shard.
pub mod bufring;
pub mod busy;
pub mod probe;
pub mod ring;
pub mod setup;
pub mod shard;
