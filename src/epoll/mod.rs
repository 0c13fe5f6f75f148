//! The epoll engine: the same HTTP core and handlers on non-blocking sockets, for kernels or
//! sandboxes without io_uring and for comparison.
pub mod shard;
mod sys;
