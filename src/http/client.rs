//! The client side of HTTP/1.1, sans-IO: a parser for a stream of (pipelined) responses, as
//! the load generator reads them and as a proxy reads its upstream's.
//!
//! Only a response's head must be contiguous: bodies (`Content-Length`, chunked, or delimited
//! by the close) are consumed as a byte count or a small state machine, so a receive buffer
//! holding many responses is parsed in place, and nothing is copied but a head that straddles
//! two buffers. What the caller learns goes to a [`Sink`]: the loader's counts whole responses
//! (its methods inline away to a counter), a proxy's relays heads and bodies.
//!
//! Strict where a proxy must be: a response that two parsers could frame differently (both
//! `Content-Length` and `Transfer-Encoding`, a repeated or listed `Content-Length`, a bare LF
//! ending a head line, a chunk line not ending in CRLF) is an error, never a guess.

/// Largest response head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// Headers parsed per response.
const MAX_HEADERS: usize = 64;
/// Largest trailer section of a chunked body.
const MAX_TRAILERS: usize = 16 * 1024;

/// Why a response stream cannot be read further. The connection is done; what was not yet
/// complete is lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    Head,
    TooManyHeaders,
    HeadTooLarge,
    /// A head line ended in a bare LF.
    LineEnd,
    ContentLength,
    /// Both `Content-Length` and `Transfer-Encoding`.
    Framing,
    SwitchingProtocols,
    ChunkSize,
    ChunkData,
    Trailers,
}

impl Malformed {
    pub fn as_str(self) -> &'static str {
        match self {
            Malformed::Head => "malformed response head",
            Malformed::TooManyHeaders => "too many response headers",
            Malformed::HeadTooLarge => "response head too large",
            Malformed::LineEnd => "a response head line ends in a bare LF",
            Malformed::ContentLength => "bad, repeated or listed Content-Length",
            Malformed::Framing => "both Content-Length and Transfer-Encoding",
            Malformed::SwitchingProtocols => "unexpected 101 Switching Protocols",
            Malformed::ChunkSize => "bad chunk size line",
            Malformed::ChunkData => "chunk data overruns its size",
            Malformed::Trailers => "bad chunked trailer",
        }
    }
}

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a response's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body (HEAD, 204, 304) or an empty one.
    Empty,
    Length(u64),
    Chunked,
    /// Until the connection closes.
    UntilClose,
}

/// A final (non-1xx) response head, as parsed.
pub struct Head<'a> {
    pub status: u16,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: u8,
    pub reason: &'a str,
    pub headers: &'a [httparse::Header<'a>],
    pub framing: Framing,
    /// The connection closes after this response (`Connection: close`, or HTTP/1.0 without
    /// keep-alive).
    pub close: bool,
}

/// What a caller learns from the stream, in order. Every method but `end` has a default that
/// does nothing, so a caller that only counts pays for nothing else.
pub trait Sink {
    /// An informational (1xx) response's status.
    fn informational(&mut self, _status: u16) {}
    fn head(&mut self, _head: &Head<'_>) {}
    /// Body bytes, chunked framing removed.
    fn body(&mut self, _bytes: &[u8]) {}
    /// A chunked body's trailer section, raw field lines each ending in CRLF.
    fn trailers(&mut self, _fields: &[u8]) {}
    /// The response is complete.
    fn end(&mut self, status: u16);
}

/// Any `FnMut(u16)` is a sink that hears of complete responses only.
impl<F: FnMut(u16)> Sink for F {
    fn end(&mut self, status: u16) {
        self(status)
    }
}

/// What the connection should do after a `feed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Keep reading.
    More,
    /// A response asked for the connection to close (`Connection: close`, HTTP/1.0); the
    /// connection must be reopened before more requests are sent.
    Close,
}

#[derive(Debug, Clone, Copy)]
enum BodyState {
    Head,
    Length(u64),
    Chunked(Chunk),
    UntilClose,
    Closed,
}

#[derive(Debug, Clone, Copy)]
enum Chunk {
    /// In the hex size; `digits` guards against overflow.
    Size {
        size: u64,
        digits: u8,
    },
    /// After the size: an extension, up to the CR.
    Ext {
        size: u64,
    },
    /// At the LF ending a size line.
    SizeLf {
        size: u64,
    },
    Data(u64),
    DataCr,
    DataLf,
    /// At the start of a trailer line (an empty line ends the message).
    TrailerStart,
    /// Inside a trailer field line, and at its LF.
    TrailerLine,
    TrailerLf,
    /// At the LF of the final empty line.
    EndLf,
}

/// Per-connection response parser.
pub struct ResponseParser {
    carry: Vec<u8>,
    trailers: Vec<u8>,
    state: BodyState,
    status: u16,
    close: bool,
    /// Every request is HEAD: responses carry no body whatever they say.
    head_method: bool,
    /// The next response answers a HEAD (a proxy says so request by request).
    next_head: bool,
}

impl ResponseParser {
    /// `head_method`: the requests are HEAD, so responses carry no body.
    pub fn new(head_method: bool) -> Self {
        ResponseParser {
            carry: Vec::new(),
            trailers: Vec::new(),
            state: BodyState::Head,
            status: 0,
            close: false,
            head_method,
            next_head: false,
        }
    }

    /// The next response answers a HEAD request.
    pub fn expect_head(&mut self) {
        self.next_head = true;
    }

    /// Between responses with nothing left over: the connection can carry another request.
    pub fn idle(&self) -> bool {
        self.carry.is_empty() && matches!(self.state, BodyState::Head)
    }

    /// Forgets everything (the connection was reopened).
    pub fn reset(&mut self) {
        self.carry.clear();
        self.trailers.clear();
        self.state = BodyState::Head;
        self.next_head = false;
    }

    /// Parses `data`, telling `sink` what it finds.
    pub fn feed(&mut self, data: &[u8], sink: &mut impl Sink) -> Result<Flow, Malformed> {
        if self.carry.is_empty() {
            let used = self.run(data, sink)?;
            if used < data.len() && !matches!(self.state, BodyState::Closed) {
                self.carry.extend_from_slice(&data[used..]);
            }
        } else {
            let mut carry = std::mem::take(&mut self.carry);
            carry.extend_from_slice(data);
            let used = self.run(&carry, sink);
            carry.drain(..used.unwrap_or(carry.len()));
            self.carry = carry;
            used?;
            if matches!(self.state, BodyState::Closed) {
                self.carry.clear();
            }
        }
        if self.carry.len() > MAX_HEAD {
            return Err(Malformed::HeadTooLarge);
        }
        Ok(if matches!(self.state, BodyState::Closed) {
            Flow::Close
        } else {
            Flow::More
        })
    }

    /// The peer closed: completes a close-delimited body; says whether a response was cut short.
    pub fn eof(&mut self, sink: &mut impl Sink) -> bool {
        match self.state {
            BodyState::UntilClose => {
                sink.end(self.status);
                self.state = BodyState::Closed;
                false
            }
            BodyState::Head => !self.carry.is_empty(),
            BodyState::Closed => false,
            _ => true,
        }
    }

    /// Consumes from `buf`; returns how much, short only when a head is incomplete.
    fn run(&mut self, buf: &[u8], sink: &mut impl Sink) -> Result<usize, Malformed> {
        let mut pos = 0;
        while pos < buf.len() {
            match self.state {
                BodyState::Head => {
                    let Some(n) = self.head(&buf[pos..], sink)? else {
                        return Ok(pos);
                    };
                    pos += n;
                    if let BodyState::Length(0) = self.state {
                        self.complete(sink);
                    }
                }
                BodyState::Length(left) => {
                    let take = left.min((buf.len() - pos) as u64);
                    sink.body(&buf[pos..pos + take as usize]);
                    pos += take as usize;
                    self.state = BodyState::Length(left - take);
                    if left == take {
                        self.complete(sink);
                    }
                }
                BodyState::Chunked(c) => pos += self.chunked(c, &buf[pos..], sink)?,
                BodyState::UntilClose => {
                    sink.body(&buf[pos..]);
                    pos = buf.len();
                }
                BodyState::Closed => return Ok(buf.len()),
            }
        }
        Ok(pos)
    }

    fn complete(&mut self, sink: &mut impl Sink) {
        sink.end(self.status);
        self.state = if self.close {
            BodyState::Closed
        } else {
            BodyState::Head
        };
    }

    /// Parses one head; sets the body state. `None`: incomplete.
    fn head(&mut self, buf: &[u8], sink: &mut impl Sink) -> Result<Option<usize>, Malformed> {
        // Uninitialised header slots: no per-response clearing of the array.
        let mut slots =
            [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut r = httparse::Response::new(&mut []);
        let len = match httparse::ParserConfig::default()
            .parse_response_with_uninit_headers(&mut r, buf, &mut slots)
        {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => return Err(Malformed::TooManyHeaders),
            Err(_) => return Err(Malformed::Head),
        };
        if !crate::http::conn::lines_end_in_crlf(&buf[..len], r.headers) {
            return Err(Malformed::LineEnd);
        }
        let status = r.code.unwrap_or(0);
        let version = r.version.unwrap_or(1);
        let fields = Fields::scan(r.headers, version)?;
        if (100..200).contains(&status) {
            if status == 101 {
                return Err(Malformed::SwitchingProtocols);
            }
            sink.informational(status);
            return Ok(Some(len)); // informational: no body, the final response follows
        }
        let no_body = self.head_method || std::mem::take(&mut self.next_head);
        let framing = if no_body || status == 204 || status == 304 {
            Framing::Empty
        } else {
            fields.framing()?
        };
        self.status = status;
        self.close = fields.close || framing == Framing::UntilClose;
        self.state = match framing {
            Framing::Empty => BodyState::Length(0),
            Framing::Length(l) => BodyState::Length(l),
            Framing::Chunked => BodyState::Chunked(Chunk::Size { size: 0, digits: 0 }),
            Framing::UntilClose => BodyState::UntilClose,
        };
        sink.head(&Head {
            status,
            version,
            reason: r.reason.unwrap_or(""),
            headers: r.headers,
            framing,
            close: self.close,
        });
        Ok(Some(len))
    }

    /// Runs the chunked-body machine over `buf`; returns bytes consumed.
    fn chunked(
        &mut self,
        mut c: Chunk,
        buf: &[u8],
        sink: &mut impl Sink,
    ) -> Result<usize, Malformed> {
        let mut i = 0;
        while i < buf.len() {
            let b = buf[i];
            c = match c {
                Chunk::Data(left) => {
                    let take = left.min((buf.len() - i) as u64);
                    sink.body(&buf[i..i + take as usize]);
                    i += take as usize;
                    c = if left == take {
                        Chunk::DataCr
                    } else {
                        Chunk::Data(left - take)
                    };
                    continue;
                }
                Chunk::EndLf if b == b'\n' => {
                    if !self.trailers.is_empty() {
                        sink.trailers(&self.trailers);
                        self.trailers.clear();
                    }
                    self.complete(sink);
                    return Ok(i + 1);
                }
                Chunk::TrailerStart | Chunk::TrailerLine | Chunk::TrailerLf | Chunk::EndLf => {
                    self.trailer(c, b)?
                }
                _ => size_line(c, b)?,
            };
            i += 1;
        }
        self.state = BodyState::Chunked(c);
        Ok(i)
    }

    /// A byte of the trailer section (not the final LF); returns the next state.
    fn trailer(&mut self, c: Chunk, b: u8) -> Result<Chunk, Malformed> {
        Ok(match (c, b) {
            (Chunk::TrailerStart, b'\r') => Chunk::EndLf,
            (Chunk::TrailerStart | Chunk::TrailerLine, _) => {
                self.trailer_byte(b)?;
                if b == b'\r' {
                    Chunk::TrailerLf
                } else {
                    Chunk::TrailerLine
                }
            }
            (Chunk::TrailerLf, b'\n') => {
                self.trailer_byte(b)?;
                Chunk::TrailerStart
            }
            _ => return Err(Malformed::Trailers),
        })
    }

    /// Keeps a byte of the trailer section, refusing a bare LF and an oversized section.
    fn trailer_byte(&mut self, b: u8) -> Result<(), Malformed> {
        if b == b'\n' && self.trailers.last() != Some(&b'\r') || self.trailers.len() >= MAX_TRAILERS
        {
            return Err(Malformed::Trailers);
        }
        self.trailers.push(b);
        Ok(())
    }
}

/// What a response head's fields say about its framing and its connection.
struct Fields {
    length: Option<u64>,
    chunked: bool,
    /// A `Transfer-Encoding` was given (chunked last or not).
    coded: bool,
    close: bool,
}

impl Fields {
    fn scan(headers: &[httparse::Header<'_>], version: u8) -> Result<Fields, Malformed> {
        let mut f = Fields {
            length: None,
            chunked: false,
            coded: false,
            close: version == 0,
        };
        for h in headers {
            let name = h.name.as_bytes();
            if name.eq_ignore_ascii_case(b"content-length") {
                if f.length.is_some() {
                    return Err(Malformed::ContentLength);
                }
                f.length = Some(parse_length(h.value).ok_or(Malformed::ContentLength)?);
            } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                // The last coding decides whether the body is chunked; any other last coding
                // leaves it delimited by the close (RFC 9112 §6.3).
                let last = h.value.rsplit(|&b| b == b',').next().unwrap_or(b"");
                f.chunked = trim(last).eq_ignore_ascii_case(b"chunked");
                f.coded = true;
            } else if name.eq_ignore_ascii_case(b"connection") {
                for tok in h.value.split(|&b| b == b',') {
                    let tok = trim(tok);
                    if tok.eq_ignore_ascii_case(b"close") {
                        f.close = true;
                    } else if tok.eq_ignore_ascii_case(b"keep-alive") && version == 0 {
                        f.close = false;
                    }
                }
            }
        }
        Ok(f)
    }

    /// How the body of a response that may have one is delimited.
    fn framing(&self) -> Result<Framing, Malformed> {
        Ok(match (self.coded, self.length) {
            (true, Some(_)) => return Err(Malformed::Framing),
            (true, None) if self.chunked => Framing::Chunked,
            (true, None) => Framing::UntilClose,
            (false, Some(0)) => Framing::Empty,
            (false, Some(l)) => Framing::Length(l),
            (false, None) => Framing::UntilClose,
        })
    }
}

/// A byte of a chunk-size line, or of the CRLF after a chunk's data; returns the next state.
fn size_line(c: Chunk, b: u8) -> Result<Chunk, Malformed> {
    Ok(match c {
        Chunk::Size { size, digits } => match hex(b) {
            Some(d) if digits < 15 => Chunk::Size {
                size: size << 4 | d,
                digits: digits + 1,
            },
            Some(_) => return Err(Malformed::ChunkSize),
            None if digits == 0 => return Err(Malformed::ChunkSize),
            None if b == b'\r' => Chunk::SizeLf { size },
            None if b == b';' || b == b' ' || b == b'\t' => Chunk::Ext { size },
            None => return Err(Malformed::ChunkSize),
        },
        Chunk::Ext { size } => match b {
            b'\r' => Chunk::SizeLf { size },
            b'\t' | b' '..=b'~' | 0x80..=0xff => Chunk::Ext { size },
            _ => return Err(Malformed::ChunkSize),
        },
        Chunk::SizeLf { size } => match b {
            b'\n' if size == 0 => Chunk::TrailerStart,
            b'\n' => Chunk::Data(size),
            _ => return Err(Malformed::ChunkSize),
        },
        Chunk::DataCr if b == b'\r' => Chunk::DataLf,
        Chunk::DataLf if b == b'\n' => Chunk::Size { size: 0, digits: 0 },
        _ => return Err(Malformed::ChunkData),
    })
}

fn hex(b: u8) -> Option<u64> {
    match b {
        b'0'..=b'9' => Some((b - b'0') as u64),
        b'a'..=b'f' => Some((b - b'a' + 10) as u64),
        b'A'..=b'F' => Some((b - b'A' + 10) as u64),
        _ => None,
    }
}

fn parse_length(v: &[u8]) -> Option<u64> {
    let v = trim(v);
    if v.is_empty() || v.len() > 18 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(v.iter().fold(0u64, |n, &d| n * 10 + (d - b'0') as u64))
}

fn trim(v: &[u8]) -> &[u8] {
    let s = v
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(v.len());
    let e = v
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(s, |e| e + 1);
    &v[s..e]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(chunks: &[&[u8]], head: bool) -> (Vec<u16>, Result<Flow, Malformed>) {
        let mut p = ResponseParser::new(head);
        let mut seen = Vec::new();
        let mut last = Ok(Flow::More);
        for c in chunks {
            last = p.feed(c, &mut |s| seen.push(s));
            if last.is_err() {
                break;
            }
        }
        (seen, last)
    }

    const STREAM: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nX-T: 1\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n";

    #[test]
    fn pipelined_stream_whole_and_split_at_every_byte() {
        let (seen, r) = parse_all(&[STREAM], false);
        assert_eq!(seen, [200, 404, 204, 201]);
        assert_eq!(r, Ok(Flow::More));
        for cut in 1..STREAM.len() {
            let (seen, r) = parse_all(&[&STREAM[..cut], &STREAM[cut..]], false);
            assert_eq!(seen, [200, 404, 204, 201], "cut at {cut}");
            assert_eq!(r, Ok(Flow::More));
        }
        let bytes: Vec<&[u8]> = STREAM.chunks(1).collect();
        assert_eq!(parse_all(&bytes, false).0, [200, 404, 204, 201]);
    }

    /// Everything a proxy needs, in order: heads, bodies without their chunk framing,
    /// trailers, ends; the same however the stream is split.
    #[test]
    fn a_sink_hears_heads_bodies_and_trailers() {
        #[derive(Default, PartialEq, Debug)]
        struct Log(Vec<String>);
        impl Sink for Log {
            fn informational(&mut self, status: u16) {
                self.0.push(format!("1xx {status}"));
            }
            fn head(&mut self, h: &Head<'_>) {
                let names: Vec<&str> = h.headers.iter().map(|h| h.name).collect();
                self.0.push(format!(
                    "head {} {:?} {names:?} close={}",
                    h.status, h.framing, h.close
                ));
            }
            fn body(&mut self, b: &[u8]) {
                if !b.is_empty() {
                    match self.0.last_mut() {
                        Some(l) if l.starts_with("body ") => {
                            l.push_str(&String::from_utf8_lossy(b))
                        }
                        _ => self.0.push(format!("body {}", String::from_utf8_lossy(b))),
                    }
                }
            }
            fn trailers(&mut self, t: &[u8]) {
                self.0
                    .push(format!("trailers {:?}", String::from_utf8_lossy(t)));
            }
            fn end(&mut self, status: u16) {
                self.0.push(format!("end {status}"));
            }
        }
        let want = [
            "head 200 Length(5) [\"Content-Length\"] close=false",
            "body hello",
            "end 200",
            "head 404 Chunked [\"Transfer-Encoding\"] close=false",
            "body abc0123456789abcdef",
            "trailers \"X-T: 1\\r\\n\"",
            "end 404",
            "1xx 100",
            "head 204 Empty [] close=false",
            "end 204",
            "head 201 Empty [\"content-length\"] close=false",
            "end 201",
        ];
        for cut in 0..STREAM.len() {
            let mut p = ResponseParser::new(false);
            let mut log = Log::default();
            p.feed(&STREAM[..cut], &mut log).unwrap();
            p.feed(&STREAM[cut..], &mut log).unwrap();
            assert_eq!(log.0, want, "cut at {cut}");
        }
        // A close-delimited body ends with the connection, and says so in its head.
        let mut p = ResponseParser::new(false);
        let mut log = Log::default();
        assert_eq!(
            p.feed(b"HTTP/1.1 200 OK\r\n\r\nall of it", &mut log),
            Ok(Flow::More)
        );
        assert!(!p.eof(&mut log));
        assert_eq!(
            log.0,
            [
                "head 200 UntilClose [] close=true",
                "body all of it",
                "end 200"
            ]
        );
    }

    #[test]
    fn close_and_until_close() {
        let mut p = ResponseParser::new(false);
        let mut seen = Vec::new();
        let r = p.feed(
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nxjunk",
            &mut |s| seen.push(s),
        );
        assert_eq!((seen.as_slice(), r), (&[200u16][..], Ok(Flow::Close)));
        let mut p = ResponseParser::new(false);
        let mut seen = Vec::new();
        assert_eq!(
            p.feed(b"HTTP/1.0 200 OK\r\n\r\nbody...", &mut |s| seen.push(s)),
            Ok(Flow::More)
        );
        assert!(seen.is_empty());
        assert!(!p.eof(&mut |s| seen.push(s)));
        assert_eq!(seen, [200]);
        let mut p = ResponseParser::new(false);
        let _ = p.feed(
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
            &mut |_: u16| {},
        );
        assert!(p.eof(&mut |_: u16| {}), "cut short");
    }

    #[test]
    fn head_requests_get_no_body() {
        let (seen, _) = parse_all(&[b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n"], true);
        assert_eq!(seen, [200, 200]);
        // One HEAD among GETs, as a proxy relays them.
        let mut p = ResponseParser::new(false);
        let mut seen = Vec::new();
        p.expect_head();
        p.feed(
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc",
            &mut |s| seen.push(s),
        )
        .unwrap();
        assert_eq!(seen, [200, 200]);
    }

    #[test]
    fn what_two_parsers_could_frame_differently_is_malformed() {
        for (bad, why) in [
            (&b"HTTX/1.1 200 OK\r\n\r\n"[..], Malformed::Head),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
                Malformed::ContentLength,
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                Malformed::ContentLength,
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
                Malformed::ContentLength,
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 1,1\r\n\r\nx",
                Malformed::ContentLength,
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
                Malformed::Framing,
            ),
            (
                b"HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n",
                Malformed::LineEnd,
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\n",
                Malformed::LineEnd,
            ),
            (
                b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
                Malformed::SwitchingProtocols,
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                Malformed::ChunkSize,
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\nx\r\n",
                Malformed::ChunkSize,
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n",
                Malformed::ChunkData,
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\n",
                Malformed::ChunkData,
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: 1\n\r\n",
                Malformed::Trailers,
            ),
        ] {
            assert_eq!(
                parse_all(&[bad], false).1,
                Err(why),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
