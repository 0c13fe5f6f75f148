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

/// Files from a directory, through the shard's ring (`crate::io`): opened beneath the root by
/// the kernel (no `..`, absolute path or symlink reaches outside it), `statx`ed and read
/// without blocking the shard on the disk. A small demonstration of the route interface, whole
/// files up to [`FileRoute::MAX`]; the web server's static files build on it.
pub struct FileRoute {
    root: std::rc::Rc<std::os::fd::OwnedFd>,
    prefix: Box<str>,
}

impl FileRoute {
    /// Largest file served.
    pub const MAX: u64 = 16 << 20;

    /// Serves the directory `dir` at `prefix` (a route added with `Router::prefix`).
    pub fn new(dir: &std::path::Path, prefix: &str) -> std::io::Result<FileRoute> {
        use std::os::unix::fs::OpenOptionsExt;
        let root = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_PATH)
            .open(dir)?;
        Ok(FileRoute {
            root: std::rc::Rc::new(root.into()),
            prefix: prefix.into(),
        })
    }
}

impl crate::handler::Handler for FileRoute {
    fn call(&self, req: &Request<'_>) -> crate::http::response::Reply {
        use std::os::fd::AsRawFd;
        let rel = req
            .path()
            .strip_prefix(&*self.prefix)
            .unwrap_or("")
            .trim_start_matches('/')
            .to_string();
        let root = self.root.clone();
        crate::http::response::Reply::Later(Box::pin(async move {
            if rel.is_empty() || rel.contains('%') {
                return Response::text(404, "not found\n");
            }
            let file = match crate::io::open_beneath(root.as_raw_fd(), &rel).await {
                Ok(f) => f,
                // EXDEV: the path would leave the root; ELOOP: a symlink the kernel refused.
                Err(e) if matches!(e.raw_os_error(), Some(libc::EXDEV | libc::ELOOP)) => {
                    return Response::text(403, "forbidden\n");
                }
                Err(_) => return Response::text(404, "not found\n"),
            };
            let st = match crate::io::statx(&file).await {
                Ok(st) => st,
                Err(_) => return Response::text(500, "cannot stat\n"),
            };
            if u32::from(st.stx_mode) & libc::S_IFMT != libc::S_IFREG {
                return Response::text(404, "not found\n");
            }
            if st.stx_size > FileRoute::MAX {
                return Response::text(413, "file too large for this route\n");
            }
            let body = match crate::io::read(&file, vec![0; st.stx_size as usize], 0).await {
                Ok(b) => b,
                Err(_) => return Response::text(500, "cannot read\n"),
            };
            crate::io::close(file).await;
            Response::new(200)
                .content_type("application/octet-stream")
                .body(body)
        }))
    }
}
