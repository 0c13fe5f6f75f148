//! The handler API and the router.
//!
//! A handler runs on its shard: a request view in, a [`Reply`] out. `Reply::Ready` is the fast
//! path; `Reply::Later` lets a handler wait on I/O on the shard's executor without blocking it.
//! Each shard builds its own handler from a factory, so nothing here is shared between cores.
use crate::http::request::Request;
use crate::http::response::{Reply, Response};

/// Something that answers requests.
pub trait Handler: 'static {
    fn call(&self, req: &Request<'_>) -> Reply;
}

impl<F, R> Handler for F
where
    F: Fn(&Request<'_>) -> R + 'static,
    R: Into<Reply>,
{
    fn call(&self, req: &Request<'_>) -> Reply {
        self(req).into()
    }
}

enum Pattern {
    Exact(String),
    Prefix(String),
}

impl Pattern {
    /// Match quality: exact beats the longest prefix.
    fn score(&self, path: &str) -> Option<usize> {
        match self {
            Pattern::Exact(p) => (p == path).then_some(usize::MAX),
            Pattern::Prefix(p) => path.starts_with(p.as_str()).then_some(p.len()),
        }
    }
}

struct Route {
    method: String,
    pattern: Pattern,
    handler: Box<dyn Handler>,
}

/// Routes by method and path: exact paths, then the longest prefix. A path that matches with
/// another method gets 405 with `Allow`; no match gets 404. `HEAD` falls back to `GET`.
#[derive(Default)]
pub struct Router {
    routes: Vec<Route>,
}

impl Router {
    pub fn new() -> Router {
        Router::default()
    }

    /// Adds a route for an exact path.
    pub fn route(mut self, method: &str, path: &str, handler: impl Handler) -> Router {
        self.routes.push(Route {
            method: method.to_ascii_uppercase(),
            pattern: Pattern::Exact(path.to_string()),
            handler: Box::new(handler),
        });
        self
    }

    /// Adds a route for every path that starts with `prefix`.
    pub fn prefix(mut self, method: &str, prefix: &str, handler: impl Handler) -> Router {
        self.routes.push(Route {
            method: method.to_ascii_uppercase(),
            pattern: Pattern::Prefix(prefix.to_string()),
            handler: Box::new(handler),
        });
        self
    }

    /// `GET` (and so `HEAD`) on an exact path.
    pub fn get(self, path: &str, handler: impl Handler) -> Router {
        self.route("GET", path, handler)
    }

    /// `POST` on an exact path.
    pub fn post(self, path: &str, handler: impl Handler) -> Router {
        self.route("POST", path, handler)
    }

    fn allow(&self, path: &str, score: usize) -> String {
        let mut methods: Vec<&str> = Vec::new();
        for r in &self.routes {
            if r.pattern.score(path) == Some(score) && !methods.contains(&r.method.as_str()) {
                methods.push(&r.method);
                if r.method == "GET" && !methods.contains(&"HEAD") {
                    methods.push("HEAD");
                }
            }
        }
        methods.join(", ")
    }
}

impl Handler for Router {
    fn call(&self, req: &Request<'_>) -> Reply {
        // One pass: the best-matching pattern wins; among its routes, the request's method,
        // else GET for a HEAD request.
        let (path, method) = (req.path(), req.method());
        let mut best: Option<usize> = None;
        let mut found: Option<(&Route, bool)> = None;
        for r in &self.routes {
            let Some(score) = r.pattern.score(path) else {
                continue;
            };
            if best.is_none_or(|b| score > b) {
                best = Some(score);
                found = None;
            } else if best != Some(score) {
                continue;
            }
            if r.method == method {
                if score == usize::MAX {
                    return r.handler.call(req); // an exact path with its method: nothing beats it
                }
                found = Some((r, true));
            } else if method == "HEAD" && r.method == "GET" && found.is_none() {
                found = Some((r, false));
            }
        }
        match (found, best) {
            (Some((route, _)), _) => route.handler.call(req),
            (None, Some(score)) => Response::text(405, "Method Not Allowed\n")
                .header("Allow", self.allow(path, score))
                .into(),
            (None, None) => Response::text(404, "Not Found\n").into(),
        }
    }
}
