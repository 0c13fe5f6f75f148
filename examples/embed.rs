//! Embedding ringshard: your own routes, including one that waits without blocking its shard.
//!
//! `cargo run --release --example embed` then `curl localhost:8080/hello/you` or
//! `curl localhost:8080/slow`.
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use ringshard::{Fixed, Reply, Request, Response, Router, ServeConfig};

/// A future that becomes ready when a timer thread fires: stands in for an upstream or a file.
struct Delay {
    state: Arc<Mutex<(bool, Option<Waker>)>>,
}

impl Delay {
    fn new(d: Duration) -> Delay {
        let state = Arc::new(Mutex::new((false, None::<Waker>)));
        let s = state.clone();
        std::thread::spawn(move || {
            std::thread::sleep(d);
            let mut g = s.lock().unwrap();
            g.0 = true;
            if let Some(w) = g.1.take() {
                w.wake();
            }
        });
        Delay { state }
    }
}

impl Future for Delay {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut g = self.state.lock().unwrap();
        if g.0 {
            Poll::Ready(())
        } else {
            g.1 = Some(cx.waker().clone());
            Poll::Pending
        }
    }
}

fn main() -> std::process::ExitCode {
    let cfg = ServeConfig::default();
    let result = ringshard::server::serve(cfg, || {
        Router::new()
            // Encoded once, copied per request.
            .get("/health", Fixed::new(Response::text(200, "ok\n")))
            .prefix("GET", "/hello/", |req: &Request<'_>| {
                let name = req.path().trim_start_matches("/hello/").to_string();
                Response::text(200, format!("Hello, {name}!\n"))
            })
            .get("/slow", |_: &Request<'_>| {
                Reply::Later(Box::pin(async {
                    Delay::new(Duration::from_millis(100)).await;
                    Response::text(200, "waited 100 ms without blocking the shard\n")
                }))
            })
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("embed: {e}");
            std::process::ExitCode::from(2)
        }
    }
}
