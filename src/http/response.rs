//! Responses and their encoding to bytes.
use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;

/// A response body.
pub enum Body {
    Empty,
    Static(&'static [u8]),
    Bytes(Bytes),
    /// Sent with chunked framing as the stream yields; for handlers that produce a body over time.
    Stream(Box<dyn BodyStream>),
    /// A body of known length produced over time (a file): sent with `Content-Length`. A stream
    /// that ends short, or runs long, ends the connection, so the client sees it incomplete.
    Sized(u64, Box<dyn BodyStream>),
}

/// A body produced over time. `Ready(None)` ends it.
pub trait BodyStream {
    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>>;

    /// Asked once the stream has ended: whether it ended whole, and with which trailer fields
    /// (sent after the last chunk of a chunked body). A stream that ends cut (a proxied
    /// upstream that went away mid-body) ends the connection without the last chunk, so the
    /// client sees the body incomplete.
    fn end(&mut self) -> End {
        End::Whole(Vec::new())
    }
}

/// How a [`BodyStream`] ended.
pub enum End {
    /// Complete; the trailer section's field lines (each ending in CRLF), possibly none.
    Whole(Vec<u8>),
    /// Cut short.
    Cut,
}

/// A stream from an iterator of chunks that are all ready now.
pub struct IterStream<I>(pub I);

impl<I: Iterator<Item = Bytes>> BodyStream for IterStream<I> {
    fn poll_chunk(&mut self, _cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        Poll::Ready(self.0.next())
    }
}

/// A header value: borrowed for the constant ones, owned otherwise.
pub type HeaderValue = Cow<'static, str>;

/// A response a handler returns.
pub struct Response {
    pub(crate) status: u16,
    pub(crate) content_type: Option<&'static str>,
    pub(crate) headers: Vec<(HeaderValue, HeaderValue)>,
    pub(crate) body: Body,
}

impl Response {
    /// An empty response with this status.
    #[inline]
    pub fn new(status: u16) -> Response {
        Response {
            status,
            content_type: None,
            headers: Vec::new(),
            body: Body::Empty,
        }
    }

    /// A `text/plain` response.
    #[inline]
    pub fn text(status: u16, body: impl Into<Body>) -> Response {
        Response::new(status).content_type("text/plain").body(body)
    }

    /// An `application/json` response.
    #[inline]
    pub fn json(status: u16, body: impl Into<Body>) -> Response {
        Response::new(status)
            .content_type("application/json")
            .body(body)
    }

    /// Sets `Content-Type`.
    #[inline]
    pub fn content_type(mut self, value: &'static str) -> Response {
        self.content_type = Some(value);
        self
    }

    /// Adds a header. Framing headers (`Content-Length`, `Transfer-Encoding`, `Connection`) are
    /// the server's to write and are ignored here.
    pub fn header(
        mut self,
        name: impl Into<HeaderValue>,
        value: impl Into<HeaderValue>,
    ) -> Response {
        let (name, value) = (name.into(), value.into());
        let framing = [
            "content-length",
            "transfer-encoding",
            "connection",
            "date",
            "server",
        ];
        let valid = !name.is_empty()
            && name.bytes().all(|b| b.is_ascii_graphic() && b != b':')
            && !value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0);
        if valid && !framing.iter().any(|f| name.eq_ignore_ascii_case(f)) {
            self.headers.push((name, value));
        }
        self
    }

    /// Adds field lines already checked (a proxied response's, as its upstream's parser read
    /// them): `lines` is `Name: value` lines joined by CRLF, written as they are. One string for
    /// all of them, where [`Response::header`] would take two per field.
    pub(crate) fn field_lines(mut self, lines: String) -> Response {
        if !lines.is_empty() {
            self.headers
                .push((HeaderValue::Borrowed(""), HeaderValue::Owned(lines)));
        }
        self
    }

    /// Sets the body.
    #[inline]
    pub fn body(mut self, body: impl Into<Body>) -> Response {
        self.body = body.into();
        self
    }

    /// The status code.
    pub fn status(&self) -> u16 {
        self.status
    }
}

impl Body {
    /// The whole body, or the stream that will produce it and its length if known.
    pub(crate) fn into_whole(self) -> Result<Bytes, (Option<u64>, Box<dyn BodyStream>)> {
        match self {
            Body::Empty => Ok(Bytes::new()),
            Body::Static(s) => Ok(Bytes::from_static(s)),
            Body::Bytes(b) => Ok(b),
            Body::Stream(stream) => Err((None, stream)),
            Body::Sized(len, stream) => Err((Some(len), stream)),
        }
    }
}

impl From<&'static str> for Body {
    fn from(s: &'static str) -> Body {
        Body::Static(s.as_bytes())
    }
}
impl From<&'static [u8]> for Body {
    fn from(s: &'static [u8]) -> Body {
        Body::Static(s)
    }
}
impl From<Bytes> for Body {
    fn from(b: Bytes) -> Body {
        Body::Bytes(b)
    }
}
impl From<Vec<u8>> for Body {
    fn from(v: Vec<u8>) -> Body {
        Body::Bytes(Bytes::from(v))
    }
}
impl From<String> for Body {
    fn from(s: String) -> Body {
        Body::Bytes(Bytes::from(s))
    }
}

/// A response that is not ready yet: the handler waits on I/O without blocking its shard.
pub type LaterResponse = Pin<Box<dyn Future<Output = Response>>>;

/// What a handler returns: a response now (the fast path) or a future of one.
pub enum Reply {
    Ready(Response),
    Later(LaterResponse),
}

impl From<Response> for Reply {
    fn from(r: Response) -> Reply {
        Reply::Ready(r)
    }
}

/// A response encoded once, when its route is built, and served by copying its bytes: for answers
/// that never change (health checks, fixed pages, the benchmark routes). A keep-alive HTTP/1.1
/// request gets the stored head, the shard's `Date` and the stored body; any other request (HEAD,
/// HTTP/1.0, `Connection: close`, shutting down) is answered from the same parts, encoded then.
#[derive(Clone)]
pub struct Fixed {
    status: u16,
    content_type: Option<&'static str>,
    headers: Vec<(HeaderValue, HeaderValue)>,
    body: Bytes,
    /// The whole response as sent, with a placeholder date at `date_at`.
    bytes: Box<[u8]>,
    date_at: usize,
}

impl Fixed {
    /// Encodes `resp`. Its body must be whole: a streaming body is never fixed, and panics here,
    /// where routes are built.
    pub fn new(resp: Response) -> Fixed {
        let Response {
            status,
            content_type,
            headers,
            body,
        } = resp;
        let Ok(body) = body.into_whole() else {
            panic!("a streaming body cannot be a fixed response");
        };
        let mut out = Vec::new();
        let framing = Framing::Length(body.len() as u64);
        put_head(
            &mut out,
            status,
            content_type,
            &headers,
            framing,
            None,
            &[b'-'; 29],
        );
        // `put_head` ends with the date and the blank line.
        let date_at = out.len() - 4 - 29;
        if has_body(status, false) {
            out.extend_from_slice(&body);
        }
        Fixed {
            status,
            content_type,
            headers,
            body,
            bytes: out.into(),
            date_at,
        }
    }

    /// The same response, as a handler would return it.
    pub fn to_response(&self) -> Response {
        Response {
            status: self.status,
            content_type: self.content_type,
            headers: self.headers.clone(),
            body: Body::Bytes(self.body.clone()),
        }
    }

    /// The status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The body's length.
    pub fn body_len(&self) -> u64 {
        self.body.len() as u64
    }

    /// Appends the encoded response with today's `Date`.
    #[inline]
    pub(crate) fn put(&self, out: &mut Vec<u8>, date: &[u8; 29]) {
        // One copy, then today's date over the placeholder.
        let at = out.len() + self.date_at;
        out.extend_from_slice(&self.bytes);
        out[at..at + 29].copy_from_slice(date);
    }
}

/// Whether a response with this status, to a request with this method, carries a body.
pub(crate) fn has_body(status: u16, head_request: bool) -> bool {
    !(head_request || status == 204 || status == 304 || status < 200)
}

/// The reason phrase for a status code.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        417 => "Expectation Failed",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

/// Appends `v` in decimal.
pub(crate) fn put_dec(out: &mut Vec<u8>, v: u64) {
    // Small values (every status, most bodies) as fixed-size copies, which compile to a store.
    let d = |n: u64| b'0' + (n % 10) as u8;
    match v {
        0..=9 => out.push(d(v)),
        10..=99 => out.extend_from_slice(&[d(v / 10), d(v)]),
        100..=999 => out.extend_from_slice(&[d(v / 100), d(v / 10), d(v)]),
        1000..=9999 => out.extend_from_slice(&[d(v / 1000), d(v / 100), d(v / 10), d(v)]),
        _ => {
            let mut tmp = [0u8; 20];
            let mut i = tmp.len();
            let mut v = v;
            while v > 0 {
                i -= 1;
                tmp[i] = d(v);
                v /= 10;
            }
            out.extend_from_slice(&tmp[i..]);
        }
    }
}

/// Appends `v` in lower-case hex (chunk sizes).
pub(crate) fn put_hex(out: &mut Vec<u8>, mut v: u64) {
    let mut tmp = [0u8; 16];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b"0123456789abcdef"[(v & 15) as usize];
        v >>= 4;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&tmp[i..]);
}

/// Appends one chunk of a chunked body.
pub(crate) fn put_chunk(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        return; // an empty chunk would end the body
    }
    put_hex(out, data.len() as u64);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// How the head should frame the body.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Framing {
    Length(u64),
    Chunked,
    /// HTTP/1.0 client and a streamed body: the end of the body is the close of the connection.
    UntilClose,
}

/// Appends a response head.
pub(crate) fn put_head(
    out: &mut Vec<u8>,
    status: u16,
    content_type: Option<&str>,
    headers: &[(HeaderValue, HeaderValue)],
    framing: Framing,
    connection: Option<&'static [u8]>,
    date: &[u8; 29],
) {
    // Each line after the first is written with the line break before it, and `Date` goes last
    // with the blank line, so the common head (status 200, a content type, a length) is four
    // constant-size copies, the content type and the length.
    match (status, content_type) {
        (200, Some(ct)) => {
            out.extend_from_slice(b"HTTP/1.1 200 OK\r\nServer: ringshard\r\nContent-Type: ");
            out.extend_from_slice(ct.as_bytes());
        }
        _ => {
            out.extend_from_slice(b"HTTP/1.1 ");
            put_dec(out, u64::from(status));
            out.push(b' ');
            out.extend_from_slice(reason(status).as_bytes());
            out.extend_from_slice(b"\r\nServer: ringshard");
            if let Some(ct) = content_type {
                out.extend_from_slice(b"\r\nContent-Type: ");
                out.extend_from_slice(ct.as_bytes());
            }
        }
    }
    for (name, value) in headers {
        out.extend_from_slice(b"\r\n");
        if !name.is_empty() {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
        }
        out.extend_from_slice(value.as_bytes());
    }
    if let Some(c) = connection {
        out.extend_from_slice(b"\r\nConnection: ");
        out.extend_from_slice(c);
    }
    match framing {
        // 1xx and 204 carry no body and no Content-Length (RFC 9110 §8.6); a 304's would
        // have to be the selected representation's length, which a handler does not give.
        Framing::Length(n) if status >= 200 && status != 204 && status != 304 => {
            out.extend_from_slice(b"\r\nContent-Length: ");
            put_dec(out, n);
        }
        Framing::Length(_) | Framing::UntilClose => {}
        Framing::Chunked => out.extend_from_slice(b"\r\nTransfer-Encoding: chunked"),
    }
    let mut end = *b"\r\nDate: Thu, 01 Jan 1970 00:00:00 GMT\r\n\r\n";
    end[8..37].copy_from_slice(date);
    out.extend_from_slice(&end);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_content_length_on_1xx_204_304() {
        for (status, want) in [
            (100, false),
            (204, false),
            (304, false),
            (200, true),
            (404, true),
        ] {
            let mut out = Vec::new();
            put_head(
                &mut out,
                status,
                None,
                &[],
                Framing::Length(0),
                None,
                &[b'x'; 29],
            );
            let text = String::from_utf8(out).unwrap();
            assert_eq!(text.contains("Content-Length"), want, "{status}: {text}");
        }
    }

    #[test]
    fn numbers() {
        for (v, d, h) in [
            (0u64, "0", "0"),
            (42, "42", "2a"),
            (1000, "1000", "3e8"),
            (9999, "9999", "270f"),
            (10000, "10000", "2710"),
            (u64::MAX, "18446744073709551615", "ffffffffffffffff"),
            (9, "9", "9"),
            (255, "255", "ff"),
            (65536, "65536", "10000"),
        ] {
            let mut out = Vec::new();
            put_dec(&mut out, v);
            assert_eq!(out, d.as_bytes());
            out.clear();
            put_hex(&mut out, v);
            assert_eq!(out, h.as_bytes());
        }
    }

    #[test]
    fn header_rejects_injection_and_framing() {
        let r = Response::new(200)
            .header("X-Ok", "1")
            .header("X-Bad", "a\r\nInjected: 1")
            .header("Content-Length", "5")
            .header("Bad Name", "v");
        assert_eq!(r.headers.len(), 1);
    }
}
