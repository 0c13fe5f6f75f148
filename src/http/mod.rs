//! HTTP/1.1, sans-IO: parsing, framing and encoding, with no socket in sight.
pub mod body;
pub mod chunked;
pub mod client;
pub mod conn;
#[cfg(test)]
mod conn_tests;
pub mod date;
pub mod handler;
pub mod latency;
pub mod limits;
pub mod log;
pub mod request;
pub mod response;
pub(crate) mod words;
