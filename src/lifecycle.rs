//! Where the server stands in its life, for the few handlers that must say so.
use std::sync::atomic::AtomicBool;

/// Set when shutdown begins: `/health` answers 503 `draining` from then on, so a load balancer
/// stops sending. Written once by the main thread, read only by the health route.
pub static DRAINING: AtomicBool = AtomicBool::new(false);
