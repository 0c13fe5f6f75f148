//! The reverse proxy: a route that sends each request to an upstream over HTTP/1.1 and relays
//! the answer. Upstream connections are the shard's own, beside its client connections: opened,
//! written and read through the shard's ring (`crate::io`; on the epoll engine, its epoll set),
//! kept alive in a per-shard pool per upstream, and never shared with another core.
//!
//! One request's path: the handler encodes the request for the upstream at once (hop-by-hop
//! fields out, the client named, the body framed anew; `forward`) and returns a future. The
//! future picks an upstream (`upstream::Upstreams::pick`), takes an idle connection from its
//! pool or connects, sends, and reads until the response head is whole. A response that is
//! whole by then goes to the client as it is and its connection back to the pool; a longer one
//! is read on by a task of its own (`pump`) into the route's response buffer and a temporary
//! file beyond it (`relay`), so the upstream connection is free as soon as the upstream has
//! sent, however slowly the client reads.
//!
//! Retries follow nginx's rule: a request goes to another upstream only if it never reached
//! one (the connect failed, or a pooled connection was found closed before anything was
//! written), or if its method is idempotent and no byte of an answer came; never once a byte
//! went to the client; at most `tries` in all.
mod forward;
pub mod options;
mod relay;
mod upstream;

use std::cell::Cell;
use std::rc::Rc;
use std::time::Instant;

use bytes::Bytes;

use crate::http::client::{Framing, Head, Malformed, Sink};
use crate::http::request::Request;
use crate::http::response::{Body, Reply, Response};

pub use options::ProxyOptions;
use relay::{Relay, RelayStream, WholeWithTrailers};
use upstream::{UpConn, Upstream, Upstreams};

thread_local! {
    static COUNTERS: Counters = Counters::default();
}

/// This shard's proxy counters (published with its others).
#[derive(Default)]
struct Counters {
    connects: Cell<u64>,
    requests: Cell<u64>,
    retries: Cell<u64>,
    failures: Cell<u64>,
}

/// Upstream connections opened, requests sent upstream, tries after the first, and requests
/// answered 502 or 504 by the proxy, on this thread's shard so far.
pub fn counters() -> [u64; 4] {
    COUNTERS.with(|c| {
        [
            c.connects.get(),
            c.requests.get(),
            c.retries.get(),
            c.failures.get(),
        ]
    })
}

fn count(f: impl FnOnce(&Counters)) {
    COUNTERS.with(f);
}

/// A proxy route, built on its shard.
pub struct ProxyRoute {
    route: Rc<Route>,
}

struct Route {
    opts: ProxyOptions,
    ups: Upstreams,
    /// The app pool behind the route, if any: 503 once it gave up restarting.
    app: Option<std::sync::Arc<crate::app::AppStatus>>,
    /// Admission to the app's processes on this shard.
    gate: Option<Rc<crate::app::Gate>>,
}

impl ProxyRoute {
    pub fn new(opts: &ProxyOptions) -> std::io::Result<ProxyRoute> {
        Ok(ProxyRoute {
            route: Rc::new(Route {
                ups: Upstreams::new(opts)?,
                opts: opts.clone(),
                app: opts.app.as_deref().map(crate::app::status),
                gate: match (&opts.app, opts.gate) {
                    (Some(name), Some(spec)) => {
                        let (shard, shards) = crate::io::this_shard();
                        let status = crate::app::status(name);
                        Some(Rc::new(crate::app::Gate::new(status, spec, shard, shards)))
                    }
                    _ => None,
                },
            }),
        })
    }
}

impl crate::handler::Handler for ProxyRoute {
    fn call(&self, req: &Request<'_>) -> Reply {
        use std::sync::atomic::Ordering;
        if let Some(app) = &self.route.app {
            if app.gave_up.load(Ordering::Relaxed) {
                let name = self.route.opts.app.as_deref().unwrap_or_default();
                let body = format!("app {name} is not running: it kept exiting (see the log)\n");
                return Response::text(503, body).into();
            }
        }
        let bytes = forward::request(req, &self.route.opts, req.peer());
        let body = req.body_stream().cloned();
        let ask = Ask {
            // A body taken as it arrives cannot be sent twice.
            idempotent: forward::idempotent(req.method()) && body.is_none(),
            head: req.method() == "HEAD",
            chunked: req.header("content-length").is_none(),
        };
        Reply::Later(Box::pin(exchange(self.route.clone(), bytes, body, ask)))
    }

    fn streams_body_over(&self, _req: &Request<'_>) -> Option<usize> {
        Some(self.route.opts.request_buffer)
    }

    /// As nginx: a client that closes while its request is proxied is not answered, and a
    /// request waiting for an app process leaves the queue.
    fn abandons_on_close(&self, _req: &Request<'_>) -> bool {
        true
    }
}

#[derive(Clone, Copy)]
struct Ask {
    idempotent: bool,
    head: bool,
    /// A body that streams goes upstream chunked (the client's had no length).
    chunked: bool,
}

/// Why a try failed.
enum Failure {
    NoUpstream,
    Connect(std::io::Error),
    ConnectTimeout,
    Send(std::io::Error),
    FirstByteTimeout,
    ReadTimeout,
    /// The upstream closed (or reset) before its answer's head was whole.
    Closed,
    Malformed(Malformed),
    /// The client's body, taken as it arrived, could not be had whole (its status says why).
    Body(u16),
}

impl Failure {
    fn response(&self, upstream: &str) -> Response {
        let (status, why) = match self {
            Failure::NoUpstream => (502, "no upstream to send the request to".to_string()),
            Failure::Connect(e) if out_of_resources(e) => {
                let why = format!("out of descriptors or memory, try again ({e})\n");
                return Response::text(503, why).header("Retry-After", "1");
            }
            Failure::Connect(e) => (502, format!("cannot connect to the upstream ({e})")),
            Failure::ConnectTimeout => (504, "upstream connect timeout".to_string()),
            Failure::Send(e) => (502, format!("the upstream did not take the request ({e})")),
            Failure::FirstByteTimeout => (
                504,
                "upstream first-byte timeout: no answer in time".to_string(),
            ),
            Failure::ReadTimeout => (
                504,
                "upstream read timeout: the answer stopped coming".to_string(),
            ),
            Failure::Closed => (
                502,
                "the upstream closed the connection without an answer".to_string(),
            ),
            Failure::Malformed(m) => (502, format!("the upstream's answer is malformed: {m}")),
            Failure::Body(413) => (413, "request body too large".to_string()),
            Failure::Body(431) => (431, "request trailer fields too large".to_string()),
            Failure::Body(_) => (
                400,
                "the request body was cut short or malformed".to_string(),
            ),
        };
        let body = if upstream.is_empty() || matches!(self, Failure::Body(_)) {
            format!("{why}\n")
        } else {
            format!("{why} ({upstream})\n")
        };
        Response::text(status, body)
    }
}

/// This process could not make a socket: work is shed (503), the upstream is not at fault.
fn out_of_resources(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// A try's outcome that ends the request's tries: what came back, or a failure after which
/// another try could run the request twice.
struct Failed {
    failure: Failure,
    /// Bytes of the request were written (the upstream may have acted on it).
    sent: bool,
    /// Bytes of an answer came.
    answered: bool,
}

/// What a try read: the head (and as much of the body as came with it).
#[derive(Default)]
struct Collect {
    head: Option<(Response, Framing, bool, Option<u64>)>,
    body: Vec<u8>,
    trailers: Vec<u8>,
    done: bool,
}

impl Sink for Collect {
    fn head(&mut self, head: &Head<'_>) {
        let length = head
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("content-length"))
            .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse().ok());
        let resp = forward::response(head.status, head.headers);
        self.head = Some((resp, head.framing, head.close, length));
    }
    fn body(&mut self, bytes: &[u8]) {
        self.body.extend_from_slice(bytes);
    }
    fn trailers(&mut self, fields: &[u8]) {
        self.trailers.extend_from_slice(fields);
    }
    fn end(&mut self, _status: u16) {
        self.done = true;
    }
}

/// Counts a request in flight to an upstream for as long as it lives (and holds its app
/// process's slot, if the route is an app's).
struct InFlight {
    up: Rc<Upstream>,
    _slot: Option<crate::app::Slot>,
}

impl InFlight {
    fn new(up: &Rc<Upstream>, slot: Option<crate::app::Slot>) -> InFlight {
        up.outstanding.set(up.outstanding.get() + 1);
        InFlight {
            up: up.clone(),
            _slot: slot,
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.up.outstanding.set(self.up.outstanding.get() - 1);
    }
}

/// Sends one request upstream, with the tries the rules allow, and answers.
async fn exchange(
    route: Rc<Route>,
    mut bytes: Vec<u8>,
    body: Option<crate::http::body::BodyReader>,
    ask: Ask,
) -> Response {
    let opts = &route.opts;
    let mut tried: Vec<usize> = Vec::new();
    // Pooled connections found closed when written to: no try spent (bounded all the same).
    let mut stale = 0;
    let mut last = (Failure::NoUpstream, String::new());
    let mut tries = 0u32;
    while (tried.len() as u32 + tries) < opts.tries.max(1) {
        // An app's request waits for a free process; another upstream's goes to the next.
        let (i, slot) = match &route.gate {
            Some(gate) => match gate.slot(&tried).await {
                Ok(slot) => (slot.upstream(), Some(slot)),
                Err(refused) => return queue_refusal(refused, opts),
            },
            None => match route.ups.pick(&tried) {
                Some(i) => (i, None),
                None => break,
            },
        };
        let up = route.ups.list[i].clone();
        if !tried.is_empty() {
            count(|c| c.retries.set(c.retries.get() + 1));
        }
        let mut dead = 0;
        let pooled = up.take_idle(&mut dead);
        let reused = pooled.is_some();
        let mut conn = match pooled {
            Some(c) => c,
            None => match connect(&up, opts).await {
                Ok(c) => c,
                Err(Failure::Connect(e)) if out_of_resources(&e) => {
                    // This process's shortage, not the upstream's fault: shed the request.
                    count(|c| c.failures.set(c.failures.get() + 1));
                    return Failure::Connect(e).response(&up.name);
                }
                Err(f) => {
                    last = (f, up.name.clone());
                    if let Some(gate) = &route.gate {
                        // A process that went away: the request waits for one that accepts
                        // (this one, once restarted, or another), without spending a try.
                        gate.status().not_ready(i / 2);
                        continue;
                    }
                    up.failed(opts);
                    tried.push(i);
                    continue; // never reached the upstream: any method may go elsewhere
                }
            },
        };
        let flight = InFlight::new(&up, slot);
        count(|c| c.requests.set(c.requests.get() + 1));
        let (outcome, back) = attempt(&mut conn, bytes, body.as_ref(), ask, opts).await;
        bytes = back;
        match outcome {
            Ok(got) => {
                up.succeeded();
                return answer(got, conn, up, &route, ask, flight);
            }
            Err(failed) => {
                drop(conn);
                if let (Failure::FirstByteTimeout, Some(gate)) = (&failed.failure, &route.gate) {
                    // Stuck: it does not hold the queue. Its request gets the 504.
                    gate.status().replace(i / 2);
                    count(|c| c.failures.set(c.failures.get() + 1));
                    return failed.failure.response(&up.name);
                }
                if reused && !failed.sent && !failed.answered && stale <= opts.idle_connections {
                    stale += 1; // written to a connection the upstream had closed: nothing went
                    continue;
                }
                up.failed(opts);
                if route.gate.is_none() {
                    tried.push(i); // another upstream next; an app's request takes any process
                } else {
                    tried.clear();
                    tries += 1;
                }
                let again = !failed.answered && (!failed.sent || ask.idempotent);
                last = (failed.failure, up.name.clone());
                if !again {
                    break;
                }
            }
        }
    }
    count(|c| c.failures.set(c.failures.get() + 1));
    last.0.response(&last.1)
}

/// The answer to a request an app's queue did not admit.
fn queue_refusal(refused: crate::app::Refused, opts: &ProxyOptions) -> Response {
    count(|c| c.failures.set(c.failures.get() + 1));
    let app = opts.app.as_deref().unwrap_or_default();
    match refused {
        crate::app::Refused::Full => Response::text(
            503,
            format!("app {app}: every process is busy and the queue is full\n"),
        )
        .header("Retry-After", "1"),
        crate::app::Refused::Timeout => Response::text(
            504,
            format!("app {app}: no process was free within the queue timeout\n"),
        ),
    }
}

/// Opens a connection to `up`.
async fn connect(up: &Upstream, opts: &ProxyOptions) -> Result<UpConn, Failure> {
    let fd = crate::io::socket_for(&up.addr).map_err(Failure::Connect)?;
    let deadline = Instant::now() + opts.connect_timeout;
    match crate::io::connect(&fd, Box::new(up.addr.clone()), deadline).await {
        Ok(()) => {
            count(|c| c.connects.set(c.connects.get() + 1));
            Ok(UpConn::new(fd))
        }
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => Err(Failure::ConnectTimeout),
        Err(e) => Err(Failure::Connect(e)),
    }
}

/// One try on `conn`: sends `bytes` and reads until the answer's head is whole. Gives the
/// request's bytes back for another try.
async fn attempt(
    conn: &mut UpConn,
    bytes: Vec<u8>,
    body: Option<&crate::http::body::BodyReader>,
    ask: Ask,
    opts: &ProxyOptions,
) -> (Result<Collect, Failed>, Vec<u8>) {
    conn.requests += 1;
    if ask.head {
        conn.parser.expect_head();
    }
    // The receive goes in with the send (one submission); a pooled connection has one armed.
    let first_byte = Instant::now() + opts.first_byte_timeout;
    match &conn.recv {
        Some(r) => r.set_deadline(Some(first_byte)),
        None => conn.arm(Some(first_byte)),
    }
    let (r, buf) = send_all(conn, bytes, Instant::now() + opts.read_timeout).await;
    if let Err(f) = r {
        return (Err(f), buf);
    }
    if let Some(reader) = body {
        // The rest of the body, as the client sends it.
        loop {
            let chunk = match reader.chunk().await {
                Ok(c) => c,
                Err(status) => return (Err(failed(Failure::Body(status), true, false)), buf),
            };
            let (framed, last) = match (chunk, ask.chunked) {
                (Some(data), false) => (data, false),
                (Some(data), true) => {
                    let mut f = format!("{:x}\r\n", data.len()).into_bytes();
                    f.extend_from_slice(&data);
                    f.extend_from_slice(b"\r\n");
                    (f, false)
                }
                (None, false) => break,
                (None, true) => {
                    let mut f = b"0\r\n".to_vec();
                    f.extend_from_slice(&reader.trailers());
                    f.extend_from_slice(b"\r\n");
                    (f, true)
                }
            };
            let deadline = Instant::now() + opts.read_timeout;
            if let (Err(mut f), _) = send_all(conn, framed, deadline).await {
                f.sent = true;
                return (Err(f), buf);
            }
            if last {
                break;
            }
        }
    }
    let mut got = Collect::default();
    let mut answered = false;
    loop {
        let Some(recv) = conn.recv.take() else {
            unreachable!("a receive is armed before each wait")
        };
        let (r, data) = recv.await;
        let n = match r {
            Ok(0) => {
                let cut = conn.parser.eof(&mut got);
                conn.buf = Some(data);
                if got.head.is_some() && !cut {
                    return (Ok(got), buf); // a close-delimited answer, whole
                }
                let f = if answered && got.head.is_none() {
                    Failure::Malformed(Malformed::Head)
                } else {
                    Failure::Closed
                };
                return (Err(failed(f, true, answered)), buf);
            }
            Ok(n) => n,
            Err(e) => {
                conn.buf = Some(data);
                let f = match e.kind() {
                    std::io::ErrorKind::TimedOut if answered => Failure::ReadTimeout,
                    std::io::ErrorKind::TimedOut => Failure::FirstByteTimeout,
                    _ => Failure::Closed,
                };
                return (Err(failed(f, true, answered)), buf);
            }
        };
        answered = true;
        let fed = conn.parser.feed(&data[..n], &mut got);
        conn.buf = Some(data);
        if let Err(m) = fed {
            return (Err(failed(Failure::Malformed(m), true, true)), buf);
        }
        if got.head.is_some() {
            return (Ok(got), buf);
        }
        conn.arm(Some(Instant::now() + opts.read_timeout));
    }
}

/// Writes all of `bytes` to the upstream; gives them back.
async fn send_all(
    conn: &UpConn,
    bytes: Vec<u8>,
    deadline: Instant,
) -> (Result<(), Failed>, Vec<u8>) {
    let mut buf = bytes;
    let mut sent = 0;
    while sent < buf.len() {
        let (r, back) = crate::io::send(&conn.fd, buf, sent, deadline).await;
        buf = back;
        let failure = match r {
            Ok(n) if n > 0 => {
                sent += n;
                continue;
            }
            Ok(_) => Failure::Send(std::io::ErrorKind::WriteZero.into()),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => Failure::ReadTimeout,
            Err(e) => Failure::Send(e),
        };
        return (Err(failed(failure, sent > 0, false)), buf);
    }
    (Ok(()), buf)
}

fn failed(failure: Failure, sent: bool, answered: bool) -> Failed {
    Failed {
        failure,
        sent,
        answered,
    }
}

/// The response to the client from what a try read; the rest of a longer body is read on by
/// a task of its own.
fn answer(
    got: Collect,
    conn: UpConn,
    up: Rc<Upstream>,
    route: &Rc<Route>,
    ask: Ask,
    flight: InFlight,
) -> Response {
    let Some((resp, framing, close, length)) = got.head else {
        unreachable!("a try succeeds with a head")
    };
    if got.done {
        drop(flight);
        if !close && conn.parser.idle() && framing != Framing::UntilClose {
            up.put_idle(conn, &route.opts);
        }
        if ask.head {
            let empty = Box::new(WholeWithTrailers {
                body: None,
                trailers: Vec::new(),
            });
            return match length {
                Some(n) => resp.body(Body::Sized(n, empty)),
                None => resp,
            };
        }
        if !got.trailers.is_empty() {
            return resp.body(Body::Stream(Box::new(WholeWithTrailers {
                body: Some(Bytes::from(got.body)),
                trailers: got.trailers,
            })));
        }
        return resp.body(got.body);
    }
    let relay = Rc::new(std::cell::RefCell::new(Relay::default()));
    relay
        .borrow_mut()
        .push(&got.body, route.opts.response_buffer);
    let stream = Box::new(RelayStream::new(relay.clone()));
    let reuse = !close && framing != Framing::UntilClose;
    crate::io::spawn(pump(conn, relay, up, route.clone(), reuse, flight));
    match framing {
        Framing::Length(n) => resp.body(Body::Sized(n, stream)),
        _ => resp.body(Body::Stream(stream)),
    }
}

/// What the pump's reads tell the relay.
struct ToRelay<'a> {
    relay: &'a mut Relay,
    limit: usize,
    trailers: Vec<u8>,
    done: bool,
}

impl Sink for ToRelay<'_> {
    fn body(&mut self, bytes: &[u8]) {
        self.relay.push(bytes, self.limit);
    }
    fn trailers(&mut self, fields: &[u8]) {
        self.trailers.extend_from_slice(fields);
    }
    fn end(&mut self, _status: u16) {
        self.done = true;
    }
}

/// Reads the rest of a response body from the upstream as fast as it comes, into the relay;
/// then gives the connection back to the pool (if the answer left it reusable).
async fn pump(
    mut conn: UpConn,
    relay: relay::Shared,
    up: Rc<Upstream>,
    route: Rc<Route>,
    reuse: bool,
    flight: InFlight,
) {
    let opts = &route.opts;
    let mut trailers = Vec::new();
    let mut done = false;
    loop {
        let pending = relay.borrow_mut().take_pending();
        if !pending.is_empty() && relay::spill(&relay, pending).await.is_err() {
            relay.borrow_mut().cut();
            return;
        }
        if done {
            break;
        }
        if relay.borrow().abandoned() {
            return; // the client went away: this connection closes
        }
        if conn
            .buf
            .as_ref()
            .is_some_and(|b| b.len() < upstream::BODY_RECV_SIZE)
        {
            conn.buf = Some(vec![0; upstream::BODY_RECV_SIZE]);
        }
        conn.arm(Some(Instant::now() + opts.read_timeout));
        let Some(recv) = conn.recv.take() else {
            return;
        };
        let (r, data) = recv.await;
        let mut rl = relay.borrow_mut();
        let mut sink = ToRelay {
            relay: &mut rl,
            limit: opts.response_buffer,
            trailers: Vec::new(),
            done: false,
        };
        let ok = match r {
            Ok(0) => !conn.parser.eof(&mut sink) && sink.done,
            Ok(n) => conn.parser.feed(&data[..n], &mut sink).is_ok(),
            Err(_) => false,
        };
        done = sink.done;
        trailers.extend_from_slice(&sink.trailers);
        conn.buf = Some(data);
        if !ok {
            rl.cut();
            up.failed(opts);
            return;
        }
    }
    relay.borrow_mut().finish(trailers);
    drop(flight);
    if reuse && conn.parser.idle() {
        up.put_idle(conn, opts);
    }
}
