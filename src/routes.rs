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
        .get("/health", Health::new())
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

/// `/health`: 200 `ok`, and 503 `draining` once the server has begun to shut down (a load
/// balancer then stops sending).
pub struct Health(Fixed);

impl Health {
    pub fn new() -> Health {
        Health(Fixed::new(Response::text(200, "ok\n")))
    }
}

impl Default for Health {
    fn default() -> Health {
        Health::new()
    }
}

impl crate::handler::Handler for Health {
    fn call(&self, req: &Request<'_>) -> crate::http::response::Reply {
        match self.answer(req) {
            crate::handler::Answer::Fixed(f) => f.to_response().into(),
            crate::handler::Answer::Shared(f) => f.to_response().into(),
            crate::handler::Answer::Reply(r) => r,
        }
    }

    fn answer(&self, _req: &Request<'_>) -> crate::handler::Answer<'_> {
        if crate::lifecycle::DRAINING.load(std::sync::atomic::Ordering::Relaxed) {
            return crate::handler::Answer::Reply(Response::text(503, "draining\n").into());
        }
        crate::handler::Answer::Fixed(&self.0)
    }
}

/// Adds `GET /metrics`: every shard's counters in the Prometheus text format.
pub fn metrics(router: Router, board: Arc<Board>) -> Router {
    router.get("/metrics", MetricsHandler(board))
}

/// A configured site: `/health` and `/metrics` where the configuration puts them (or nowhere),
/// then the first route whose prefix (and, if it names one, host) the request matches; 404
/// when none does. An endpoint given a listener of its own answers only there, and such a
/// listener answers nothing else.
pub struct Site {
    health: Option<(Box<str>, Option<usize>, Health)>,
    metrics: Option<(Box<str>, Option<usize>, MetricsHandler)>,
    /// The listeners that belong to endpoints.
    private: Vec<usize>,
    routes: Vec<SiteRoute>,
}

struct SiteRoute {
    prefix: Box<str>,
    host: Option<Box<str>>,
    handler: Box<dyn crate::handler::Handler>,
}

impl Site {
    /// Builds the site of `routes` (on the shard's thread, like any handler).
    pub fn new(
        routes: &[crate::config_file::RouteSpec],
        health: Option<&crate::config_file::Endpoint>,
        metrics: Option<(&crate::config_file::Endpoint, Arc<Board>)>,
    ) -> std::io::Result<Site> {
        use crate::config_file::Target;
        let mut built = Vec::new();
        for r in routes {
            let handler: Box<dyn crate::handler::Handler> =
                match &r.target {
                    Target::Builtin => Box::new(builtin(crate::handler::Router::new())),
                    Target::Static { dir, opts } => Box::new(
                        crate::files::FileRoute::with_options(dir, &r.prefix, opts.clone())?,
                    ),
                    Target::Proxy(opts) => Box::new(crate::proxy::ProxyRoute::new(opts)?),
                };
            built.push(SiteRoute {
                prefix: r.prefix.as_str().into(),
                host: r.host.as_deref().map(Into::into),
                handler,
            });
        }
        let private = [
            health.and_then(|e| e.listener),
            metrics.as_ref().and_then(|(e, _)| e.listener),
        ];
        Ok(Site {
            health: health.map(|e| (e.path.as_str().into(), e.listener, Health::new())),
            metrics: metrics.map(|(e, b)| (e.path.as_str().into(), e.listener, MetricsHandler(b))),
            private: private.into_iter().flatten().collect(),
            routes: built,
        })
    }
}

impl crate::handler::Handler for Site {
    fn call(&self, req: &Request<'_>) -> crate::http::response::Reply {
        match self.answer(req) {
            crate::handler::Answer::Reply(r) => r,
            crate::handler::Answer::Fixed(f) => f.to_response().into(),
            crate::handler::Answer::Shared(f) => f.to_response().into(),
        }
    }

    fn answer(&self, req: &Request<'_>) -> crate::handler::Answer<'_> {
        use crate::handler::Answer;
        let path = req.path();
        let on = req.listener();
        // An endpoint answers on its own listener if it has one, else on the site's.
        let here = |own: &Option<usize>| match own {
            Some(l) => *l == on,
            None => !self.private.contains(&on),
        };
        if let Some((p, own, health)) = &self.health {
            if path == &**p && here(own) {
                return crate::handler::Handler::answer(health, req);
            }
        }
        if let Some((p, own, m)) = &self.metrics {
            if path == &**p && here(own) {
                return m.answer(req);
            }
        }
        if self.private.contains(&on) {
            return Answer::Reply(Response::text(404, "not found\n").into());
        }
        match self.route(req) {
            Some(r) => r.handler.answer(req),
            None => Answer::Reply(Response::text(404, "not found\n").into()),
        }
    }

    fn abandons_on_close(&self, req: &Request<'_>) -> bool {
        self.route(req)
            .is_some_and(|r| r.handler.abandons_on_close(req))
    }

    fn streams_body_over(&self, req: &Request<'_>) -> Option<usize> {
        if self.private.contains(&req.listener()) {
            return None;
        }
        self.route(req)?.handler.streams_body_over(req)
    }
}

impl Site {
    /// The first route whose prefix (and host, if it names one) the request matches.
    fn route(&self, req: &Request<'_>) -> Option<&SiteRoute> {
        let path = req.path();
        let host = req.header("host").map(host_name).unwrap_or_default();
        self.routes
            .iter()
            .find(|r| r.host.as_deref().is_none_or(|h| h == host) && path.starts_with(&*r.prefix))
    }
}

/// A `Host` value's name, lower-cased and without its port (`[::1]:8080` is `[::1]`).
fn host_name(h: &[u8]) -> String {
    let h = String::from_utf8_lossy(h).to_ascii_lowercase();
    if h.starts_with('[') {
        return match h.find(']') {
            Some(end) => h[..=end].to_string(),
            None => h,
        };
    }
    match h.rsplit_once(':') {
        Some((name, _)) => name.to_string(),
        None => h,
    }
}
