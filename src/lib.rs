//! ringshard: a thread-per-core HTTP/1.1 server on io_uring, and the tool that measures it.
//!
//! Read `src/uring/shard.rs` top to bottom to follow one request from accept to send.
// `unsafe` only where ringshard talks to the kernel (src/sys, the ring modules, the epoll
// syscalls); each such module opts in, and each block says why it is sound.
#![deny(unsafe_code)]
pub mod access_log;
pub mod app;
pub mod config;
pub mod config_file;
mod engine;
mod epoll;
pub mod files;
pub mod handler;
pub mod http;
pub mod io;
pub mod lifecycle;
pub mod load;
pub mod metrics;
mod panics;
pub mod probe;
pub mod proxy;
pub mod routes;
pub mod server;
mod session;
mod shard_state;
pub mod stats;
mod steer;
mod sys;
mod timer;
mod token;
pub mod upgrade;
mod uring;
mod wake;

pub use config::ServeConfig;
pub use handler::{Answer, Handler, Router};
pub use http::request::Request;
pub use http::response::{Body, BodyStream, End, Fixed, Reply, Response};
pub use server::Running;
