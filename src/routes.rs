//! The built-in routes, on by default: enough to benchmark and health-check a fresh server.
use std::sync::Arc;

use crate::handler::Router;
use crate::http::request::Request;
use crate::http::response::{Fixed, Response};
use crate::metrics::{Board, MetricsHandler};

const HELLO: &str = "Hello, World!";
const HELLO_JSON: &str = r#"{"message":"Hello, World!"}"#;

/// Adds `GET /`, `/plaintext`, `/json`, `/health` and `POST /echo` to a router.
pub fn builtin(router: Router) -> Router {
    router
        .get("/", Fixed::new(Response::text(200, HELLO)))
        .get("/plaintext", Fixed::new(Response::text(200, HELLO)))
        .get("/json", Fixed::new(Response::json(200, HELLO_JSON)))
        .get("/health", Fixed::new(Response::text(200, "ok\n")))
        .post("/echo", |req: &Request<'_>| {
            let ct = match req.header("content-type") {
                Some(v) => String::from_utf8_lossy(v).into_owned(),
                None => "application/octet-stream".to_string(),
            };
            Response::new(200)
                .header("Content-Type", ct)
                .body(req.body().to_vec())
        })
}

/// Adds `GET /metrics`: every shard's counters in the Prometheus text format.
pub fn metrics(router: Router, board: Arc<Board>) -> Router {
    router.get("/metrics", MetricsHandler(board))
}
