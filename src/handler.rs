//! The router: handlers by method and path, beside the HTTP core, through the core's
//! [`Handler`] trait. Each shard builds its own from a factory, so nothing here is shared
//! between cores.
pub use crate::http::handler::{Answer, Handler};
use crate::http::request::Request;
use crate::http::response::{Fixed, Reply, Response};
use crate::http::words::same;

struct Route {
    method: Box<str>,
    path: Box<str>,
    target: Target,
}

/// A route's handler; a fixed response is held as itself, so answering it is a field read
/// instead of a call through the handler's vtable.
enum Target {
    Fixed(Fixed),
    Handler(Box<dyn Handler>),
}

/// Routes by method and path: an exact path first, else the longest prefix. A path that matches
/// with another method gets 405 with `Allow`; no match gets 404. `HEAD` falls back to `GET`.
#[derive(Default)]
pub struct Router {
    exact: Vec<Route>,
    /// Longest prefix first, so the first match is the best.
    prefixes: Vec<Route>,
}

impl Router {
    pub fn new() -> Router {
        Router::default()
    }

    /// Adds a route for an exact path.
    pub fn route(mut self, method: &str, path: &str, handler: impl Handler) -> Router {
        self.exact.push(Route::new(method, path, handler));
        self
    }

    /// Adds a route for every path that starts with `prefix`.
    pub fn prefix(mut self, method: &str, prefix: &str, handler: impl Handler) -> Router {
        self.prefixes.push(Route::new(method, prefix, handler));
        // Stable: among equal prefixes the first added stays first.
        self.prefixes
            .sort_by_key(|r| std::cmp::Reverse(r.path.len()));
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
}

impl Route {
    fn new(method: &str, path: &str, handler: impl Handler) -> Route {
        let any: &dyn std::any::Any = &handler;
        let target = match any.downcast_ref::<Fixed>() {
            Some(fixed) => Target::Fixed(fixed.clone()),
            None => Target::Handler(Box::new(handler)),
        };
        Route {
            method: method.to_ascii_uppercase().into(),
            path: path.into(),
            target,
        }
    }

    #[inline]
    fn answer(&self, req: &Request<'_>) -> Answer<'_> {
        match &self.target {
            Target::Fixed(fixed) => Answer::Fixed(fixed),
            Target::Handler(h) => h.answer(req),
        }
    }
}

/// Among routes whose path matched, the one for this method (`HEAD` falling back to `GET`), or
/// 405 naming the methods the path has.
fn pick<'r>(
    routes: impl Iterator<Item = &'r Route> + Clone,
    method: &str,
    req: &Request<'_>,
) -> Answer<'r> {
    let mut get = None;
    for r in routes.clone() {
        if same(&r.method, method) {
            return r.answer(req);
        }
        if get.is_none() && &*r.method == "GET" {
            get = Some(r);
        }
    }
    match get {
        Some(r) if method == "HEAD" => r.answer(req),
        _ => {
            let mut allow: Vec<&str> = Vec::new();
            for r in routes {
                for m in [&*r.method, "HEAD"] {
                    if !allow.contains(&m) && (m == &*r.method || &*r.method == "GET") {
                        allow.push(m);
                    }
                }
            }
            Answer::Reply(
                Response::text(405, "Method Not Allowed\n")
                    .header("Allow", allow.join(", "))
                    .into(),
            )
        }
    }
}

impl Handler for Router {
    fn call(&self, req: &Request<'_>) -> Reply {
        match self.answer(req) {
            Answer::Reply(reply) => reply,
            Answer::Fixed(fixed) => fixed.call(req),
            Answer::Shared(fixed) => fixed.call(req),
        }
    }

    fn answer(&self, req: &Request<'_>) -> Answer<'_> {
        let method = req.method();
        // Most targets carry no query: try them whole before looking for one.
        let target = req.target();
        let exact = |path: &str| self.exact.iter().position(|r| same(&r.path, path));
        let path = match exact(target) {
            Some(i) => Some((i, target)),
            None => Some(req.path())
                .filter(|p| p.len() < target.len())
                .and_then(|p| Some((exact(p)?, p))),
        };
        if let Some((i, path)) = path {
            // Most paths have one route, and it is the first found: answer without looking on.
            let first = &self.exact[i];
            if same(&first.method, method) {
                return first.answer(req);
            }
            // The first exact route for the path, and the ones after it with the same path.
            let routes = self.exact[i..].iter().filter(|r| same(&r.path, path));
            return pick(routes, method, req);
        }
        let path = req.path();
        // The longest matching prefix, and every route with that same prefix.
        if let Some(i) = self
            .prefixes
            .iter()
            .position(|r| path.starts_with(&*r.path))
        {
            let best = &self.prefixes[i].path;
            let routes = self.prefixes[i..].iter().filter(|r| r.path == *best);
            return pick(routes, method, req);
        }
        Answer::Reply(Response::text(404, "Not Found\n").into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::Version;

    fn status_and_body(router: &Router, method: &str, target: &str) -> (u16, String, String) {
        let req = Request {
            method,
            target,
            version: Version::Http11,
            headers: &[],
            body: b"",
            listener: 0,
            peer: None,
            trailers: b"",
            body_stream: None,
        };
        let Reply::Ready(resp) = router.call(&req) else {
            panic!("router answered later")
        };
        let allow = resp
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("allow"))
            .map(|(_, v)| v.to_string())
            .unwrap_or_default();
        let body = match resp.body {
            crate::http::response::Body::Static(b) => String::from_utf8_lossy(b).into_owned(),
            crate::http::response::Body::Bytes(b) => String::from_utf8_lossy(&b).into_owned(),
            _ => String::new(),
        };
        (resp.status, body, allow)
    }

    fn fixed(body: &'static str) -> impl Handler {
        move |_: &Request<'_>| Response::text(200, body)
    }

    #[test]
    fn exact_prefix_methods_and_misses() {
        let router = Router::new()
            .get("/a", fixed("get a"))
            .post("/a", fixed("post a"))
            .route("DELETE", "/a/b/c/d/e/f/g/h", fixed("long exact"))
            .prefix("GET", "/a/", fixed("prefix a/"))
            .prefix("GET", "/a/b/", fixed("prefix a/b/"))
            .prefix("PUT", "/a/b/", fixed("put prefix a/b/"))
            .get("/", fixed("root"));
        for (method, target, want) in [
            ("GET", "/a", (200, "get a", "")),
            ("GET", "/a?x=1", (200, "get a", "")),
            ("HEAD", "/a", (200, "get a", "")),
            ("POST", "/a", (200, "post a", "")),
            (
                "PUT",
                "/a",
                (405, "Method Not Allowed\n", "GET, HEAD, POST"),
            ),
            ("GET", "/a/x", (200, "prefix a/", "")),
            ("GET", "/a/b/x", (200, "prefix a/b/", "")),
            ("PUT", "/a/b/x", (200, "put prefix a/b/", "")),
            (
                "POST",
                "/a/b/x",
                (405, "Method Not Allowed\n", "GET, HEAD, PUT"),
            ),
            ("DELETE", "/a/b/c/d/e/f/g/h", (200, "long exact", "")),
            (
                "DELETE",
                "/a/b/c/d/e/f/g/i",
                (405, "Method Not Allowed\n", "GET, HEAD, PUT"),
            ),
            ("GET", "/", (200, "root", "")),
            ("GET", "/b", (404, "Not Found\n", "")),
            ("GET", "/A", (404, "Not Found\n", "")),
            ("GE", "/a", (405, "Method Not Allowed\n", "GET, HEAD, POST")),
        ] {
            let (s, b, a) = status_and_body(&router, method, target);
            assert_eq!((s, b.as_str(), a.as_str()), want, "{method} {target}");
        }
    }
}
