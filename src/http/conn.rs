//! The HTTP/1.1 connection core, sans-IO: bytes in, requests to the handler, response bytes out.
//!
//! Both engines, the unit tests and the fuzzer drive this same code. It never touches a socket:
//! the engine hands it what the kernel received and sends what it appends to `out`.
//!
//! Requests whose head and body are whole in the received bytes are parsed and answered without
//! a copy. Only a request split across reads is copied: its unparsed bytes into `buf`, or, while
//! its body arrives, its head and decoded body into `body`. Both are freed once used, so an idle
//! connection holds no buffer.
use std::mem::MaybeUninit;
use std::task::{Context, Poll};

use crate::http::body::BodyReader;
use crate::http::chunked::{ChunkedDecoder, ChunkedError};
use crate::http::handler::{Answer, Handler};
use crate::http::limits::Limits;
use crate::http::request::{Request, Version};
use crate::http::response::{
    has_body, put_chunk, put_head, BodyStream, End, Fixed, Framing, LaterResponse, Reply, Response,
};
use crate::http::words::{has_byte, is_name, same_bytes, trim_ows as trim};

/// Most header fields httparse is given room for; `--max-headers` is capped here.
pub const MAX_HEADERS_CAP: usize = 1024;

/// Output held back before a streaming body waits for the peer to read.
const STREAM_HIGH_WATER: usize = 256 * 1024;

/// Per-call context from the shard.
pub struct Ctx<'a> {
    pub limits: &'a Limits,
    pub date: &'a [u8; 29],
    /// Shutting down: answer what is in flight with `Connection: close`.
    pub draining: bool,
    /// Where sampled server-side latencies go, if anywhere.
    pub latency: Option<&'a crate::http::latency::Latency>,
    /// Where each answered request is recorded, if anywhere.
    pub log: Option<&'a dyn crate::http::log::AccessLog>,
}

impl<'a> Ctx<'a> {
    /// A context that is not draining and samples no latency (tests, benches, profiling).
    pub fn new(limits: &'a Limits, date: &'a [u8; 29]) -> Ctx<'a> {
        Ctx {
            limits,
            date,
            draining: false,
            latency: None,
            log: None,
        }
    }
}

/// What the engine should do next with this connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Progress {
    /// All input was used; send `out` and keep reading.
    ReadMore,
    /// A handler's future or a streaming body is running: drive it with [`Conn::poll_task`].
    Pending,
    /// Send `out`, then close: the connection is done (error, `Connection: close`, HTTP/1.0).
    Close,
}

/// Where a connection stands, for timeouts and shutdown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Between requests, nothing buffered.
    Idle,
    /// Part of a request head has arrived.
    Head,
    /// The head is in; the body is arriving.
    Body,
    /// A handler is working on a request.
    Handler,
    /// The last response is written; no more requests are read.
    Closed,
}

/// Result of [`Conn::poll_task`].
#[derive(Debug, PartialEq, Eq)]
pub enum TaskPoll {
    /// The response is complete; call [`Conn::on_data`] with no bytes to go on with buffered input.
    Done,
    /// Waiting for a wake-up.
    Pending,
    /// The stream has produced more than the peer has read; poll again after a send completes.
    OutputFull,
}

enum BodyKind {
    Length(u64),
    Chunked(ChunkedDecoder),
}

enum ReadState {
    Head,
    /// `body` holds the head's bytes (`head_len` of them) followed by the decoded body so far.
    Body {
        head_len: usize,
        kind: BodyKind,
        /// The handler takes the body as a stream once more than this has arrived.
        stream_over: Option<usize>,
    },
    /// A handler runs with the body arriving into its [`BodyReader`].
    Streaming {
        kind: BodyKind,
        reader: BodyReader,
    },
    Waiting,
    Closed,
}

/// How the response to a request is written, decided from its head.
#[derive(Clone, Copy)]
struct ReplyForm {
    version: Version,
    keep_alive: bool,
    head: bool,
}

enum Task {
    Later(LaterResponse, ReplyForm, Option<std::time::Instant>),
    Stream(Box<dyn BodyStream>, Framing),
}

/// One HTTP/1.1 connection's protocol state.
pub struct Conn {
    buf: Vec<u8>,
    body: Vec<u8>,
    /// The trailer fields of the chunked body just gathered.
    trailers: Vec<u8>,
    state: ReadState,
    task: Option<Task>,
    /// Stop after the response being produced (set while a task runs).
    close_after: bool,
    /// The last request asked for the close (`Connection: close`, HTTP/1.0) and nothing was
    /// received after it.
    asked_close: bool,
    /// Responses written so far, rejections included.
    responses: u64,
    /// The peer sent FIN.
    peer_done: bool,
    /// The last Host value this connection sent that was checked and valid.
    host: HostMemo,
    /// The peer's address, when the shard looked it up (for the access log).
    peer: Option<std::net::SocketAddr>,
    /// Which of the shard's listeners accepted this connection.
    listener: u8,
    /// Status and body length of the last answer written, for the access log.
    written: (u16, u64),
    /// The request whose answer a handler's future will give, for the access log.
    pending_log: Option<Box<crate::http::log::Pending>>,
    /// The running handler future is dropped if the peer closes (`Handler::abandons_on_close`).
    abandon_on_eof: bool,
}

/// A connection's requests nearly always name the same host: remembering the last valid value
/// turns the byte-by-byte check of each request's Host into one comparison.
#[derive(Default)]
struct HostMemo {
    len: u8,
    bytes: [u8; 32],
}

impl HostMemo {
    /// Whether `v` is a valid Host value: the remembered one, or one that passes the check
    /// (and is then remembered, if it fits).
    #[inline]
    fn check(&mut self, v: &[u8]) -> bool {
        if usize::from(self.len) == v.len() && same_bytes(&self.bytes[..v.len()], v) {
            return true;
        }
        if !host_ok(v) {
            return false;
        }
        if v.len() <= self.bytes.len() {
            self.bytes[..v.len()].copy_from_slice(v);
            self.len = v.len() as u8;
        }
        true
    }
}

impl Default for Conn {
    fn default() -> Self {
        Conn::new()
    }
}

/// A head that was parsed and checked.
struct HeadInfo {
    reply: ReplyForm,
    framing: BodyFraming,
    expect_continue: bool,
}

#[derive(PartialEq, Eq)]
enum BodyFraming {
    None,
    Length(u64),
    Chunked,
}

impl Conn {
    pub fn new() -> Conn {
        Conn {
            buf: Vec::new(),
            body: Vec::new(),
            trailers: Vec::new(),
            state: ReadState::Head,
            task: None,
            close_after: false,
            asked_close: false,
            responses: 0,
            peer_done: false,
            host: HostMemo::default(),
            peer: None,
            listener: 0,
            written: (0, 0),
            pending_log: None,
            abandon_on_eof: false,
        }
    }

    /// Sets which of the shard's listeners accepted this connection.
    pub fn set_listener(&mut self, index: usize) {
        self.listener = index.min(usize::from(u8::MAX)) as u8;
    }

    /// Sets the peer's address, which the access log writes.
    pub fn set_peer(&mut self, peer: Option<std::net::SocketAddr>) {
        self.peer = peer;
    }

    /// Records an answered request in the access log, if there is one.
    fn log(&self, cx: &Ctx<'_>, req: Option<&Request<'_>>) {
        use crate::http::log::Entry;
        let Some(log) = cx.log else { return };
        let (status, bytes) = self.written;
        let mut entry = Entry {
            peer: self.peer,
            method: "",
            target: "",
            version: Version::Http11,
            status,
            bytes,
            referer: None,
            user_agent: None,
        };
        if let Some(req) = req {
            entry.method = req.method();
            entry.target = req.target();
            entry.version = req.version();
            entry.referer = req.header("referer");
            entry.user_agent = req.header("user-agent");
        } else if let Some(p) = &self.pending_log {
            entry.method = &p.method;
            entry.target = &p.target;
            entry.version = p.version.unwrap_or(Version::Http11);
            entry.referer = p.referer.as_deref();
            entry.user_agent = p.user_agent.as_deref();
        }
        log.record(&entry);
    }

    /// Where the connection stands.
    pub fn phase(&self) -> Phase {
        match self.state {
            ReadState::Head if self.buf.is_empty() => Phase::Idle,
            ReadState::Head => Phase::Head,
            ReadState::Body { .. } => Phase::Body,
            ReadState::Waiting | ReadState::Streaming { .. } => Phase::Handler,
            ReadState::Closed => Phase::Closed,
        }
    }

    /// Responses written so far on this connection (the shard's request counter).
    pub fn responses(&self) -> u64 {
        self.responses
    }

    /// Bytes received but not yet parsed (pipelined behind a running handler, or a partial
    /// head), or received for a handler that takes its body as a stream and not yet taken.
    pub fn buffered(&self) -> usize {
        match &self.state {
            ReadState::Streaming { reader, .. } => self.buf.len() + reader.buffered(),
            _ => self.buf.len(),
        }
    }

    /// A handler runs while its request's body is still arriving.
    pub fn streaming_body(&self) -> bool {
        matches!(self.state, ReadState::Streaming { .. })
    }

    /// The connection ended as its last request asked, with nothing received after that
    /// request: the peer sends no more, so closing at once cannot reset what it still reads.
    /// (Otherwise, as after a rejection, the peer may still be sending, and the close lingers.)
    pub fn ended_as_asked(&self) -> bool {
        matches!(self.state, ReadState::Closed) && self.asked_close && self.buf.is_empty()
    }

    /// Takes received bytes, answers every complete request in them, appends responses to `out`.
    pub fn on_data<H: Handler + ?Sized>(
        &mut self,
        input: &[u8],
        handler: &H,
        cx: &Ctx<'_>,
        out: &mut Vec<u8>,
    ) -> Progress {
        match self.state {
            ReadState::Closed => {
                self.asked_close &= input.is_empty();
                return Progress::Close;
            }
            ReadState::Waiting => {
                self.buf.extend_from_slice(input);
                return Progress::Pending;
            }
            ReadState::Streaming { .. } => {
                self.stream_body(input, cx);
                return Progress::Pending;
            }
            _ => {}
        }
        let progress = self.take_input(input, handler, cx, out);
        if progress == Progress::ReadMore && self.peer_done {
            // Whatever is left can never become a whole request.
            self.state = ReadState::Closed;
            self.buf = Vec::new();
            return Progress::Close;
        }
        progress
    }

    fn take_input<H: Handler + ?Sized>(
        &mut self,
        input: &[u8],
        handler: &H,
        cx: &Ctx<'_>,
        out: &mut Vec<u8>,
    ) -> Progress {
        if self.buf.is_empty() {
            let (used, progress) = self.process(input, handler, cx, out);
            if used < input.len() {
                if matches!(self.state, ReadState::Closed) {
                    self.asked_close = false; // more came after the last request
                } else {
                    self.buf.extend_from_slice(&input[used..]);
                }
            }
            progress
        } else {
            let mut buf = std::mem::take(&mut self.buf);
            buf.extend_from_slice(input);
            let (used, progress) = self.process(&buf, handler, cx, out);
            if matches!(self.state, ReadState::Closed) || used == buf.len() {
                // Dropped, not kept: an idle connection holds no buffer.
                self.asked_close &= used == buf.len();
            } else {
                buf.drain(..used);
                self.buf = buf;
            }
            progress
        }
    }

    /// The peer closed its side. Requests already buffered behind a running handler are still
    /// answered (a client may half-close after writing its last request); nothing more is read.
    pub fn on_eof(&mut self) {
        self.peer_done = true;
        if let ReadState::Streaming { reader, .. } = &self.state {
            reader.fail(499); // the body will never be whole
            self.state = ReadState::Waiting;
            self.close_after = true;
        }
        if !matches!(self.state, ReadState::Waiting) {
            self.state = ReadState::Closed;
            self.buf = Vec::new();
        }
    }

    /// A deadline passed while a request was arriving: answer 408 and close. Returns whether a
    /// response was written (an idle connection is just closed).
    pub fn on_timeout(&mut self, cx: &Ctx<'_>, out: &mut Vec<u8>) -> bool {
        let answer = matches!(self.phase(), Phase::Head | Phase::Body);
        if answer {
            self.reject(408, cx, out);
        }
        self.state = ReadState::Closed;
        answer
    }

    /// Drives a running handler future or streaming body.
    pub fn poll_task(
        &mut self,
        task_cx: &mut Context<'_>,
        cx: &Ctx<'_>,
        out: &mut Vec<u8>,
    ) -> TaskPoll {
        loop {
            match self.task.take() {
                None => return TaskPoll::Done,
                Some(Task::Later(mut fut, reply, t0)) => match catch(|| fut.as_mut().poll(task_cx))
                {
                    None => {
                        self.reject(500, cx, out); // the handler's future panicked
                        return TaskPoll::Done;
                    }
                    Some(Poll::Ready(resp)) => {
                        if let ReadState::Streaming { reader, .. } = &self.state {
                            // Answered before its body was all read: the rest cannot be told
                            // from a next request without reading it, so the connection ends.
                            reader.fail(499);
                            self.state = ReadState::Waiting;
                            self.close_after = true;
                        }
                        self.write_response(resp, reply, cx, out);
                        record_latency(cx, t0);
                        if cx.log.is_some() {
                            self.log(cx, None);
                            self.pending_log = None;
                        }
                        if self.task.is_none() {
                            self.finish_task();
                            return TaskPoll::Done;
                        }
                    }
                    Some(Poll::Pending) => {
                        self.task = Some(Task::Later(fut, reply, t0));
                        return TaskPoll::Pending;
                    }
                },
                Some(Task::Stream(stream, framing)) => {
                    return self.poll_stream(stream, framing, task_cx, out)
                }
            }
        }
    }

    /// Writes what a streamed body has ready, up to the output's high-water mark.
    fn poll_stream(
        &mut self,
        mut stream: Box<dyn BodyStream>,
        mut framing: Framing,
        task_cx: &mut Context<'_>,
        out: &mut Vec<u8>,
    ) -> TaskPoll {
        loop {
            if out.len() >= STREAM_HIGH_WATER {
                self.task = Some(Task::Stream(stream, framing));
                return TaskPoll::OutputFull;
            }
            let Some(polled) = catch(|| stream.poll_chunk(task_cx)) else {
                // The head is out, so no 500: close without the final chunk, which tells the
                // client the body is incomplete.
                return self.cut_short();
            };
            match polled {
                Poll::Ready(Some(chunk)) => match &mut framing {
                    Framing::Chunked => put_chunk(out, &chunk),
                    Framing::Length(left) => {
                        let n = chunk.len().min(*left as usize);
                        out.extend_from_slice(&chunk[..n]);
                        *left -= n as u64;
                        if n < chunk.len() {
                            return self.cut_short(); // longer than it said
                        }
                    }
                    Framing::UntilClose => out.extend_from_slice(&chunk),
                },
                Poll::Ready(None) => {
                    let trailers = match catch(|| stream.end()) {
                        Some(End::Whole(t)) => t,
                        _ => return self.cut_short(),
                    };
                    if framing == Framing::Chunked {
                        out.extend_from_slice(b"0\r\n");
                        out.extend_from_slice(&trailers);
                        out.extend_from_slice(b"\r\n");
                    }
                    if matches!(framing, Framing::Length(left) if left > 0) {
                        return self.cut_short(); // shorter than it said
                    }
                    self.finish_task();
                    return TaskPoll::Done;
                }
                Poll::Pending => {
                    self.task = Some(Task::Stream(stream, framing));
                    return TaskPoll::Pending;
                }
            }
        }
    }

    /// Ends a body that cannot be finished as its head promised: the close tells the client.
    fn cut_short(&mut self) -> TaskPoll {
        self.state = ReadState::Closed;
        self.close_after = true;
        TaskPoll::Done
    }

    /// The peer closed while a handler that gives up on such requests was still working on the
    /// answer: the connection can end now.
    /// Drops the handler's task, if any, without answering (its shard died).
    pub fn drop_task(&mut self) {
        self.task = None;
    }

    pub fn abandoned_by_peer(&self) -> bool {
        self.peer_done && self.abandon_on_eof && matches!(self.task, Some(Task::Later(..)))
    }

    fn finish_task(&mut self) {
        self.abandon_on_eof = false;
        self.state = if self.close_after {
            ReadState::Closed
        } else {
            ReadState::Head
        };
    }

    /// Takes what `input` holds of a body arriving over several reads (into `self.body`, after
    /// its head). Returns the bytes used and whether the body is whole, or the status that
    /// refuses it.
    fn take_body(&mut self, input: &[u8], cx: &Ctx<'_>) -> Result<(usize, bool), u16> {
        let ReadState::Body { head_len, kind, .. } = &mut self.state else {
            return Ok((0, true));
        };
        match kind {
            BodyKind::Length(rem) => {
                let n = (*rem).min(input.len() as u64) as usize;
                self.body.extend_from_slice(&input[..n]);
                *rem -= n as u64;
                Ok((n, *rem == 0))
            }
            BodyKind::Chunked(dec) => {
                let max = cx.limits.max_body + *head_len;
                let r = dec
                    .decode(input, &mut self.body, max, cx.limits.max_head)
                    .map_err(|e| match e {
                        ChunkedError::Invalid => 400,
                        ChunkedError::TooLarge => 413,
                        ChunkedError::TrailersTooLarge => 431,
                    });
                if let Ok((_, true)) = r {
                    self.trailers = dec.take_trailers();
                }
                r
            }
        }
    }

    /// A body that arrives over several reads: keeps its head (`head`), then takes the body
    /// into `self.body` read by read (`take_body`). A client waiting on `Expect: 100-continue`
    /// is told to send it.
    #[allow(clippy::too_many_arguments)]
    fn start_body(
        &mut self,
        head: &[u8],
        info: &HeadInfo,
        body_len: u64,
        nothing_yet: bool,
        stream_over: Option<usize>,
        cx: &Ctx<'_>,
        out: &mut Vec<u8>,
    ) {
        if info.expect_continue && nothing_yet && !cx.draining {
            out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        self.body.clear();
        self.body.extend_from_slice(head);
        let kind = match info.framing {
            BodyFraming::Chunked => BodyKind::Chunked(ChunkedDecoder::default()),
            _ => BodyKind::Length(body_len),
        };
        self.state = ReadState::Body {
            head_len: head.len(),
            kind,
            stream_over,
        };
    }

    /// Parses and answers requests in `data`; returns how many bytes were used.
    ///
    /// Heads are parsed at one call site, whether they come from `data` or were gathered
    /// with their body over several reads: with one call site in the binary (one handler
    /// type, as in `ringshard serve`), fat LTO inlines httparse's parser here, which removes
    /// two store-forwarding stalls per request (DESIGN.md, "HTTP/1.1, sans-IO").
    fn process<H: Handler + ?Sized>(
        &mut self,
        data: &[u8],
        handler: &H,
        cx: &Ctx<'_>,
        out: &mut Vec<u8>,
    ) -> (usize, Progress) {
        let limits = cx.limits;
        let mut pos = 0;
        loop {
            // A head and body gathered over several reads, answered from this buffer.
            let mut gathered = None;
            // The body's decoder, when the handler takes the rest of it as a stream.
            let mut streamed = None;
            if let ReadState::Body {
                head_len,
                stream_over,
                ..
            } = self.state
            {
                match self.take_body(&data[pos..], cx) {
                    Ok((n, false))
                        if stream_over.is_some_and(|l| self.body.len() - head_len > l) =>
                    {
                        pos += n;
                        if let ReadState::Body { kind, .. } =
                            std::mem::replace(&mut self.state, ReadState::Head)
                        {
                            streamed = Some(kind);
                        }
                    }
                    Ok((n, false)) => return (pos + n, Progress::ReadMore),
                    Ok((n, true)) => pos += n,
                    Err(status) => return (pos, self.reject(status, cx, out)),
                }
                self.state = ReadState::Head;
                let trailers = std::mem::take(&mut self.trailers);
                gathered = Some((std::mem::take(&mut self.body), head_len, trailers));
            }
            let (input, window) = match &gathered {
                Some((buf, head_len, _)) => (&buf[..], &buf[..*head_len]),
                None => {
                    pos += empty_lines(&data[pos..]);
                    if !matches!(self.state, ReadState::Head) || pos == data.len() {
                        return (pos, Progress::ReadMore);
                    }
                    let input = &data[pos..];
                    // Only the first `max_head` bytes can hold a head we accept; parsing no
                    // further makes the answer the same however the bytes were split.
                    (input, &input[..input.len().min(limits.max_head)])
                }
            };

            let mut slots =
                [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS_CAP];
            let mut req = httparse::Request::new(&mut []);
            let max_headers = limits.max_headers.min(MAX_HEADERS_CAP);
            match req.parse_with_uninit_headers(window, &mut slots[..max_headers]) {
                Ok(httparse::Status::Complete(n)) => {
                    if gathered.is_none() && !lines_end_in_crlf(&window[..n], req.headers) {
                        return (pos, self.reject(400, cx, out));
                    }
                    let info = match check_head(&req, &mut self.host) {
                        Ok(info) => info,
                        Err(status) => return (pos, self.reject(status, cx, out)),
                    };
                    let after = &input[n..];
                    // A gathered head parsed once already: the rest of the buffer is the body.
                    let body = if gathered.is_some() {
                        after
                    } else {
                        let body_len = match info.framing {
                            BodyFraming::None => 0,
                            BodyFraming::Length(len) if len > limits.max_body as u64 => {
                                return (pos, self.reject(413, cx, out));
                            }
                            BodyFraming::Length(len) => len,
                            BodyFraming::Chunked => u64::MAX,
                        };
                        if body_len > after.len() as u64 {
                            let head = view(&req, &[], self.listener, None, &[], None);
                            let stream_over = handler.streams_body_over(&head);
                            self.start_body(
                                &input[..n],
                                &info,
                                body_len,
                                after.is_empty(),
                                stream_over,
                                cx,
                                out,
                            );
                            pos += n;
                            continue;
                        }
                        // Head and body are whole in this read: answer without a copy.
                        pos += n + body_len as usize;
                        &after[..body_len as usize]
                    };
                    let trailers = gathered.as_ref().map_or(&[][..], |g| &g.2[..]);
                    let peer = self.peer;
                    if let Some(kind) = streamed.take() {
                        return (
                            pos,
                            self.answer_streaming(handler, &req, body, kind, info.reply, cx, out),
                        );
                    }
                    let request = view(&req, body, self.listener, peer.as_ref(), trailers, None);
                    let progress = self.answer(handler, &request, info.reply, cx, out);
                    if progress != Progress::ReadMore {
                        return (pos, progress);
                    }
                }
                // A gathered head parsed whole before; it cannot be partial or fail now.
                _ if gathered.is_some() => return (pos, self.reject(400, cx, out)),
                Ok(httparse::Status::Partial) if input.len() <= limits.max_head => {
                    return (pos, Progress::ReadMore);
                }
                other => {
                    let status = refusal(other.err(), input, limits.max_head);
                    return (pos, self.reject(status, cx, out));
                }
            }
        }
    }

    /// Asks the handler for the answer to a request whose body goes on arriving after `so_far`:
    /// the handler reads the rest from a [`BodyReader`] while the connection fills it.
    #[allow(clippy::too_many_arguments)]
    fn answer_streaming<H: Handler + ?Sized>(
        &mut self,
        handler: &H,
        req: &httparse::Request<'_, '_>,
        so_far: &[u8],
        kind: BodyKind,
        r: ReplyForm,
        cx: &Ctx<'_>,
        out: &mut Vec<u8>,
    ) -> Progress {
        let reader = BodyReader::default();
        reader.fill(|d| d.extend_from_slice(so_far));
        let peer = self.peer;
        let request = view(req, &[], self.listener, peer.as_ref(), &[], Some(&reader));
        let progress = self.answer(handler, &request, r, cx, out);
        if progress == Progress::Pending && matches!(self.state, ReadState::Waiting) {
            self.state = ReadState::Streaming { kind, reader };
            if !self.buf.is_empty() {
                let rest = std::mem::take(&mut self.buf);
                self.stream_body(&rest, cx);
            }
            return Progress::Pending;
        }
        // Answered without reading the body: the rest of it cannot be skipped unread.
        self.close_after = true;
        if progress == Progress::ReadMore {
            self.state = ReadState::Closed;
            return Progress::Close;
        }
        progress
    }

    /// Body bytes for a handler that takes them as a stream; what follows the body waits in
    /// the buffer for the handler to finish.
    fn stream_body(&mut self, input: &[u8], cx: &Ctx<'_>) {
        let ReadState::Streaming { kind, reader } = &mut self.state else {
            self.buf.extend_from_slice(input);
            return;
        };
        let result = match kind {
            BodyKind::Length(rem) => {
                let n = (*rem).min(input.len() as u64) as usize;
                reader.fill(|d| d.extend_from_slice(&input[..n]));
                *rem -= n as u64;
                Ok((n, *rem == 0))
            }
            BodyKind::Chunked(dec) => {
                let max = (cx.limits.max_body as u64).saturating_sub(reader.taken()) as usize;
                reader
                    .fill(|d| dec.decode(input, d, max, cx.limits.max_head))
                    .map_err(|e| match e {
                        ChunkedError::Invalid => 400,
                        ChunkedError::TooLarge => 413,
                        ChunkedError::TrailersTooLarge => 431,
                    })
            }
        };
        match result {
            Ok((_, false)) => {}
            Ok((n, true)) => {
                let trailers = match kind {
                    BodyKind::Chunked(dec) => dec.take_trailers(),
                    BodyKind::Length(_) => Vec::new(),
                };
                reader.finish(trailers);
                self.state = ReadState::Waiting;
                self.buf.extend_from_slice(&input[n..]);
            }
            Err(status) => {
                // The rest of the input cannot be trusted to start at a request boundary.
                reader.fail(status);
                self.state = ReadState::Waiting;
                self.close_after = true;
            }
        }
    }

    /// Asks the handler for the answer to a request and writes it, or parks its future.
    fn answer<H: Handler + ?Sized>(
        &mut self,
        handler: &H,
        req: &Request<'_>,
        r: ReplyForm,
        cx: &Ctx<'_>,
        out: &mut Vec<u8>,
    ) -> Progress {
        let t0 = cx.latency.and_then(|l| l.start());
        let mark = out.len();
        // The answer is written inside the guarded call, so what crosses it is only `Progress`
        // (moving a whole `Reply` out of it cost a store-forwarding stall per request).
        let progress = catch(|| match handler.answer(req) {
            Answer::Fixed(fixed) => self.write_fixed(fixed, r, t0, cx, out),
            Answer::Shared(fixed) => self.write_fixed(&fixed, r, t0, cx, out),
            Answer::Reply(reply) => self.respond(reply, r, t0, cx, out),
        });
        let progress = progress.unwrap_or_else(|| {
            out.truncate(mark); // nothing half-written goes before the 500
            self.task = None;
            self.refuse(500, cx, out) // logged below, with its request
        });
        if let Some(Task::Later(..)) = self.task {
            self.abandon_on_eof = handler.abandons_on_close(req);
        }
        if cx.log.is_some() {
            if let Some(Task::Later(..)) = self.task {
                self.pending_log = Some(Box::new(crate::http::log::Pending {
                    method: req.method().into(),
                    target: req.target().into(),
                    version: Some(req.version()),
                    referer: req.header("referer").map(Into::into),
                    user_agent: req.header("user-agent").map(Into::into),
                }));
            } else {
                self.log(cx, Some(req));
            }
        }
        progress
    }

    /// Writes a response encoded in advance: copied whole for a keep-alive HTTP/1.1 request.
    fn write_fixed(
        &mut self,
        fixed: &Fixed,
        r: ReplyForm,
        t0: Option<std::time::Instant>,
        cx: &Ctx<'_>,
        out: &mut Vec<u8>,
    ) -> Progress {
        let as_encoded = r.keep_alive && r.version == Version::Http11 && !r.head;
        if !as_encoded || cx.draining || self.close_after {
            return self.respond(Reply::Ready(fixed.to_response()), r, t0, cx, out);
        }
        self.responses += 1;
        self.written = (fixed.status(), fixed.body_len());
        fixed.put(out, cx.date);
        record_latency(cx, t0);
        Progress::ReadMore
    }

    /// Writes a handler's reply, or parks its future.
    fn respond(
        &mut self,
        reply: Reply,
        r: ReplyForm,
        t0: Option<std::time::Instant>,
        cx: &Ctx<'_>,
        out: &mut Vec<u8>,
    ) -> Progress {
        match reply {
            Reply::Ready(resp) => {
                self.write_response(resp, r, cx, out);
                record_latency(cx, t0);
                if self.task.is_some() {
                    self.state = ReadState::Waiting;
                    Progress::Pending
                } else if self.close_after {
                    self.state = ReadState::Closed;
                    Progress::Close
                } else {
                    Progress::ReadMore
                }
            }
            Reply::Later(fut) => {
                self.task = Some(Task::Later(fut, r, t0));
                self.state = ReadState::Waiting;
                Progress::Pending
            }
        }
    }

    /// Encodes a response; a streaming body becomes this connection's task.
    fn write_response(&mut self, resp: Response, r: ReplyForm, cx: &Ctx<'_>, out: &mut Vec<u8>) {
        self.responses += 1;
        let mut keep_alive = r.keep_alive && !cx.draining && !self.close_after;
        let body = resp.body.into_whole();
        let (framing, bytes): (Framing, &[u8]) = match &body {
            Ok(b) => (Framing::Length(b.len() as u64), b),
            Err((Some(len), _)) => (Framing::Length(*len), &[]),
            Err(_) if r.version == Version::Http10 => {
                keep_alive = false;
                (Framing::UntilClose, &[])
            }
            Err(_) => (Framing::Chunked, &[]),
        };
        let connection: Option<&'static [u8]> = match (keep_alive, r.version) {
            (false, _) => Some(b"close"),
            (true, Version::Http10) => Some(b"keep-alive"),
            (true, Version::Http11) => None,
        };
        put_head(
            out,
            resp.status,
            resp.content_type,
            &resp.headers,
            framing,
            connection,
            cx.date,
        );
        self.written = match framing {
            Framing::Length(n) if has_body(resp.status, r.head) => (resp.status, n),
            _ => (resp.status, 0),
        };
        if has_body(resp.status, r.head) {
            out.extend_from_slice(bytes);
            if let Err((_, stream)) = body {
                self.task = Some(Task::Stream(stream, framing));
            }
        }
        self.close_after = !keep_alive;
        self.asked_close = !r.keep_alive;
    }

    /// Answers a request the server refuses, and stops reading: the rest of the input cannot be
    /// trusted to start at a request boundary. Logged with the request a handler's future
    /// panicked on, else without a request line.
    fn reject(&mut self, status: u16, cx: &Ctx<'_>, out: &mut Vec<u8>) -> Progress {
        let progress = self.refuse(status, cx, out);
        if cx.log.is_some() {
            self.log(cx, None);
            self.pending_log = None;
        }
        progress
    }

    /// [`Conn::reject`] without the log line, for a caller that logs it with its request.
    fn refuse(&mut self, status: u16, cx: &Ctx<'_>, out: &mut Vec<u8>) -> Progress {
        self.responses += 1;
        let body = crate::http::response::reason(status).as_bytes();
        let framing = Framing::Length(body.len() as u64 + 1);
        put_head(
            out,
            status,
            Some("text/plain"),
            &[],
            framing,
            Some(b"close"),
            cx.date,
        );
        out.extend_from_slice(body);
        out.push(b'\n');
        self.written = (status, body.len() as u64 + 1);
        self.state = ReadState::Closed;
        self.close_after = true;
        self.buf = Vec::new();
        self.body = Vec::new();
        Progress::Close
    }
}

/// Records a sampled request's latency (`t0` is set for one request in `latency::SAMPLE`).
fn record_latency(cx: &Ctx<'_>, t0: Option<std::time::Instant>) {
    if let (Some(l), Some(t0)) = (cx.latency, t0) {
        l.record(t0);
    }
}

/// Runs handler code, turning a panic into `None` (answered 500, connection closed) instead of
/// taking the shard, and every connection on it, down. Free when nothing panics.
fn catch<T>(f: impl FnOnce() -> T) -> Option<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).ok()
}

fn view<'x>(
    req: &'x httparse::Request<'_, '_>,
    body: &'x [u8],
    listener: u8,
    peer: Option<&'x std::net::SocketAddr>,
    trailers: &'x [u8],
    body_stream: Option<&'x BodyReader>,
) -> Request<'x> {
    Request {
        listener,
        peer,
        trailers,
        body_stream,
        method: req.method.unwrap_or(""),
        target: req.path.unwrap_or(""),
        version: if req.version == Some(0) {
            Version::Http10
        } else {
            Version::Http11
        },
        headers: req.headers,
        body,
    }
}

/// Checks a parsed head for what HTTP/1.1 forbids or ringshard refuses; decides the framing.
/// Inlined: its result, returned through memory, was read back wider than it was written (a
/// store-forwarding stall on every request).
#[inline(always)]
fn check_head(req: &httparse::Request<'_, '_>, host: &mut HostMemo) -> Result<HeadInfo, u16> {
    let version = match req.version {
        Some(0) => Version::Http10,
        Some(1) => Version::Http11,
        _ => return Err(505),
    };
    if !target_form_ok(req.method.unwrap_or(""), req.path.unwrap_or("").as_bytes()) {
        return Err(400);
    }
    let mut hosts = 0u32;
    let mut fields = Fields::default();
    for h in req.headers.iter() {
        let name = h.name.as_bytes();
        // `Host` first: it is in every HTTP/1.1 request, often the only header.
        if name.len() == 4 {
            if is_name(name, b"host") {
                if !host.check(h.value) {
                    return Err(400); // RFC 9112 §3.2: an invalid Host is a 400
                }
                hosts += 1;
            }
            continue;
        }
        fields.read(name, h.value, version)?;
    }
    if hosts > 1 || (hosts == 0 && version == Version::Http11) {
        return Err(400);
    }
    let framing = fields.framing(version)?;
    let keep_alive = match version {
        Version::Http11 => !fields.close,
        Version::Http10 => fields.keep_alive && !fields.close,
    };
    let head = req.method == Some("HEAD");
    Ok(HeadInfo {
        reply: ReplyForm {
            version,
            keep_alive,
            head,
        },
        framing,
        expect_continue: fields.expect_continue,
    })
}

/// What a request head's fields other than `Host` say about its framing and connection.
#[derive(Default)]
struct Fields {
    content_length: Option<u64>,
    chunked: u32,
    te_seen: bool,
    close: bool,
    keep_alive: bool,
    expect_continue: bool,
}

impl Fields {
    /// Reads one field; the status refusing the request if it must be.
    #[inline(always)]
    fn read(&mut self, name: &[u8], value: &[u8], version: Version) -> Result<(), u16> {
        match name.len() {
            14 if is_name(name, b"content-length") => {
                // One value, once: a list (`1000,1000`) or a second field line, even an equal
                // one, is framed differently by different servers, and a proxy in front may
                // frame it the other way.
                if self.content_length.is_some() {
                    return Err(400);
                }
                self.content_length = Some(parse_length(trim(value)).ok_or(400u16)?);
            }
            17 if is_name(name, b"transfer-encoding") => {
                self.te_seen = true;
                for coding in value.split(|&b| b == b',').map(trim) {
                    if coding.eq_ignore_ascii_case(b"chunked") {
                        self.chunked += 1;
                    } else if !coding.is_empty() {
                        return Err(501);
                    }
                }
            }
            10 if is_name(name, b"connection") => {
                for token in value.split(|&b| b == b',').map(trim) {
                    self.close |= token.eq_ignore_ascii_case(b"close");
                    self.keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
                }
            }
            6 if is_name(name, b"expect") => {
                if !trim(value).eq_ignore_ascii_case(b"100-continue") {
                    return Err(417);
                }
                self.expect_continue = version == Version::Http11;
            }
            _ => {}
        }
        Ok(())
    }

    /// How the body is delimited, once every field is read.
    #[inline(always)]
    fn framing(&self, version: Version) -> Result<BodyFraming, u16> {
        if self.te_seen {
            // Both framings at once is the classic smuggling vector; HTTP/1.0 has no chunked.
            if self.content_length.is_some() || self.chunked != 1 || version == Version::Http10 {
                return Err(400);
            }
            return Ok(BodyFraming::Chunked);
        }
        Ok(match self.content_length {
            None | Some(0) => BodyFraming::None,
            Some(n) => BodyFraming::Length(n),
        })
    }
}

/// How many bytes of empty lines start `data`. They are ignored before a request line (RFC
/// 9112 §2.2): a stray CRLF after a body must not leave an idle connection looking mid-head,
/// where the header timeout (408) applies instead of the keep-alive one.
fn empty_lines(data: &[u8]) -> usize {
    let mut n = 0;
    loop {
        match &data[n..] {
            [b'\r', b'\n', ..] => n += 2,
            [b'\n', ..] => n += 1,
            _ => return n,
        }
    }
}

/// The status refusing a head httparse could not parse (`err`), or one still partial beyond
/// `max_head` bytes (`None`).
fn refusal(err: Option<httparse::Error>, input: &[u8], max_head: usize) -> u16 {
    match err {
        None => head_too_large(input, max_head),
        Some(httparse::Error::TooManyHeaders) => 431,
        Some(httparse::Error::Version) if is_newer_version(input) => 505,
        Some(_) => 400,
    }
}

/// Whether every line of a head httparse parsed ends in CRLF: it also takes a bare LF, which
/// servers read differently. Its header names and values point into `head`, so the line ends
/// are found without a scan: the request line's just before the first name, each field's after
/// its value (and the whitespace it trimmed off), the empty line's at the end.
pub(crate) fn lines_end_in_crlf(head: &[u8], headers: &[httparse::Header<'_>]) -> bool {
    let base = head.as_ptr() as usize;
    let cr_at = |i: usize| head.get(i) == Some(&b'\r');
    if !head.ends_with(b"\r\n\r\n") {
        return false;
    }
    if let Some(first) = headers.first() {
        let name_at = first.name.as_ptr() as usize - base;
        if name_at < 2 || !cr_at(name_at - 2) {
            return false;
        }
    }
    headers.iter().all(|h| {
        let mut end = h.value.as_ptr() as usize - base + h.value.len();
        while matches!(head.get(end), Some(b' ' | b'\t')) {
            end += 1;
        }
        cr_at(end)
    })
}

/// Whether a request target has a form the method allows (RFC 9112 §3.2): origin-form
/// (`/path?query`) for any method, absolute-form (`http://host/path`) for any method,
/// authority-form (`host:port`) for CONNECT only, `*` for OPTIONS only; never a fragment.
fn target_form_ok(method: &str, target: &[u8]) -> bool {
    match target {
        [b'/', ..] => !has_byte(target, b'#'),
        b"*" => method == "OPTIONS",
        _ if method == "CONNECT" => {
            // host ":" port, the host a name or an IPv4 address or a bracketed IPv6 one.
            let Some(colon) = target.iter().rposition(|&b| b == b':') else {
                return false;
            };
            let (host, port) = (&target[..colon], &target[colon + 1..]);
            !host.is_empty()
                && host.iter().all(|&b| is_host_byte(b))
                && !port.is_empty()
                && port.iter().all(u8::is_ascii_digit)
        }
        _ => crate::http::request::after_authority(target).is_some() && !has_byte(target, b'#'),
    }
}

/// Whether a Host value holds only bytes a host and port may have. Branch-free: a Host is
/// valid nearly always, so every byte is read anyway.
pub(crate) fn host_ok(v: &[u8]) -> bool {
    v.iter().fold(true, |ok, &b| ok & is_host_byte(b))
}

/// A byte that may appear in a Host value (`uri-host [":" port]`, RFC 3986 §3.2.2: unreserved,
/// sub-delims, `%` of a percent-encoding, `:` and the brackets of an IP literal).
fn is_host_byte(b: u8) -> bool {
    HOST_BYTES[b as usize]
}

/// [`is_host_byte`] as a table: one load per byte of a Host value being checked.
static HOST_BYTES: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 128 {
        t[c] = (c as u8).is_ascii_alphanumeric();
        c += 1;
    }
    let other = b"-._~!$&'()*+,;=%:[]";
    let mut i = 0;
    while i < other.len() {
        t[other[i] as usize] = true;
        i += 1;
    }
    t
};

/// The status for a head longer than `max_head`: 414 when the request line alone does not fit,
/// else 431. The same whether the head arrived whole or in pieces.
fn head_too_large(input: &[u8], max_head: usize) -> u16 {
    if input[..max_head.min(input.len())].contains(&b'\n') {
        431
    } else {
        414
    }
}

fn parse_length(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 18 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0u64, |n, &d| n * 10 + u64::from(d - b'0')))
}

/// Whether a request line that httparse refused names HTTP/2 or later (505, not 400).
fn is_newer_version(input: &[u8]) -> bool {
    // The version is the request line's third token; look only there (and only at bytes up to
    // where httparse stopped), so the answer does not depend on how the input was split.
    let mut tokens = input.split(|&b| b == b' ');
    let version = tokens.nth(2).unwrap_or(&[]);
    version.starts_with(b"HTTP/") && matches!(version.get(5), Some(b'2'..=b'9'))
}
