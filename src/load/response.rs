//! Incremental HTTP/1.1 response parser for a stream of pipelined responses.
//!
//! Only the head of a response must be contiguous: bodies (`Content-Length`, chunked, or
//! delimited by the close) are consumed as a byte count or a small state machine, so a receive
//! buffer holding many responses is parsed in place and nothing is copied except a head that
//! straddles two buffers.

/// Largest response head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// Headers parsed per response.
const MAX_HEADERS: usize = 32;

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
enum State {
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
    /// After the size: extension or CR, up to the LF.
    SizeEnd {
        size: u64,
    },
    Data(u64),
    DataCr,
    DataLf,
    /// At the start of a trailer line (an empty line ends the message).
    TrailerStart,
    /// At the CR of the final empty line, expecting LF.
    TrailerEndLf,
    /// Inside a trailer field line.
    TrailerLine,
}

/// Per-connection response parser.
pub struct ResponseParser {
    carry: Vec<u8>,
    state: State,
    status: u16,
    close: bool,
    head_method: bool,
}

impl ResponseParser {
    /// `head_method`: the requests are HEAD, so responses carry no body.
    pub fn new(head_method: bool) -> Self {
        ResponseParser {
            carry: Vec::new(),
            state: State::Head,
            status: 0,
            close: false,
            head_method,
        }
    }

    /// Forgets everything (the connection was reopened).
    pub fn reset(&mut self) {
        self.carry.clear();
        self.state = State::Head;
    }

    /// Parses `data`, calling `done(status)` for each complete response in order.
    pub fn feed(&mut self, data: &[u8], done: &mut impl FnMut(u16)) -> Result<Flow, &'static str> {
        if self.carry.is_empty() {
            let used = self.run(data, done)?;
            if used < data.len() && !matches!(self.state, State::Closed) {
                self.carry.extend_from_slice(&data[used..]);
            }
        } else {
            let mut carry = std::mem::take(&mut self.carry);
            carry.extend_from_slice(data);
            let used = self.run(&carry, done);
            carry.drain(..used.unwrap_or(carry.len()));
            self.carry = carry;
            used?;
            if matches!(self.state, State::Closed) {
                self.carry.clear();
            }
        }
        if self.carry.len() > MAX_HEAD {
            return Err("response head too large");
        }
        Ok(if matches!(self.state, State::Closed) {
            Flow::Close
        } else {
            Flow::More
        })
    }

    /// The peer closed: completes a close-delimited body; says whether a response was cut short.
    pub fn eof(&mut self, done: &mut impl FnMut(u16)) -> bool {
        match self.state {
            State::UntilClose => {
                done(self.status);
                self.state = State::Closed;
                false
            }
            State::Head => !self.carry.is_empty(),
            State::Closed => false,
            _ => true,
        }
    }

    /// Consumes from `buf`; returns how much, short only when a head is incomplete.
    fn run(&mut self, buf: &[u8], done: &mut impl FnMut(u16)) -> Result<usize, &'static str> {
        let mut pos = 0;
        while pos < buf.len() {
            match self.state {
                State::Head => {
                    let Some(n) = self.head(&buf[pos..])? else {
                        return Ok(pos);
                    };
                    pos += n;
                    if let State::Head = self.state {
                        continue; // 1xx: the final response follows
                    }
                    if let State::Length(0) = self.state {
                        self.complete(done);
                    }
                }
                State::Length(left) => {
                    let take = left.min((buf.len() - pos) as u64);
                    pos += take as usize;
                    self.state = State::Length(left - take);
                    if left == take {
                        self.complete(done);
                    }
                }
                State::Chunked(c) => pos += self.chunked(c, &buf[pos..], done)?,
                State::UntilClose => pos = buf.len(),
                State::Closed => return Ok(buf.len()),
            }
        }
        Ok(pos)
    }

    fn complete(&mut self, done: &mut impl FnMut(u16)) {
        done(self.status);
        self.state = if self.close {
            State::Closed
        } else {
            State::Head
        };
    }

    /// Parses one head; sets the body state. `None`: incomplete.
    fn head(&mut self, buf: &[u8]) -> Result<Option<usize>, &'static str> {
        // Uninitialised header slots: no per-response clearing of the array.
        let mut slots =
            [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut r = httparse::Response::new(&mut []);
        let len = match httparse::ParserConfig::default()
            .parse_response_with_uninit_headers(&mut r, buf, &mut slots)
        {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => return Err("too many response headers"),
            Err(_) => return Err("malformed response head"),
        };
        let status = r.code.unwrap_or(0);
        let mut close = r.version == Some(0);
        let mut length: Option<u64> = None;
        let mut chunked = false;
        let mut other_coding = false;
        for h in r.headers.iter() {
            let name = h.name.as_bytes();
            if name.eq_ignore_ascii_case(b"content-length") {
                let v = parse_length(h.value).ok_or("bad Content-Length")?;
                if length.is_some_and(|l| l != v) {
                    return Err("conflicting Content-Length");
                }
                length = Some(v);
            } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                // The last coding decides whether the body is chunked.
                let last = h.value.rsplit(|&b| b == b',').next().unwrap_or(b"");
                chunked = trim(last).eq_ignore_ascii_case(b"chunked");
                other_coding = !chunked;
            } else if name.eq_ignore_ascii_case(b"connection") {
                for tok in h.value.split(|&b| b == b',') {
                    let tok = trim(tok);
                    if tok.eq_ignore_ascii_case(b"close") {
                        close = true;
                    } else if tok.eq_ignore_ascii_case(b"keep-alive") && r.version == Some(0) {
                        close = false;
                    }
                }
            }
        }
        if (100..200).contains(&status) {
            if status == 101 {
                return Err("unexpected 101 Switching Protocols");
            }
            return Ok(Some(len)); // informational: no body, no count
        }
        self.status = status;
        self.close = close;
        self.state = if self.head_method || status == 204 || status == 304 {
            State::Length(0)
        } else if chunked {
            State::Chunked(Chunk::Size { size: 0, digits: 0 })
        } else if other_coding {
            State::UntilClose
        } else if let Some(l) = length {
            State::Length(l)
        } else {
            State::UntilClose
        };
        Ok(Some(len))
    }

    /// Runs the chunked-body machine over `buf`; returns bytes consumed.
    fn chunked(
        &mut self,
        mut c: Chunk,
        buf: &[u8],
        done: &mut impl FnMut(u16),
    ) -> Result<usize, &'static str> {
        let mut i = 0;
        while i < buf.len() {
            let b = buf[i];
            c = match c {
                Chunk::Size { size, digits } => match hex(b) {
                    Some(d) if digits < 15 => Chunk::Size {
                        size: size << 4 | d,
                        digits: digits + 1,
                    },
                    Some(_) => return Err("chunk size too large"),
                    None if digits == 0 => return Err("bad chunk size"),
                    None if b == b'\n' => end_of_size(size),
                    None if b == b'\r' || b == b';' || b == b' ' || b == b'\t' => {
                        Chunk::SizeEnd { size }
                    }
                    None => return Err("bad chunk size"),
                },
                Chunk::SizeEnd { size } => match b {
                    b'\n' => end_of_size(size),
                    b'\r' | b'\t' | b' '..=b'~' | 0x80..=0xff => Chunk::SizeEnd { size },
                    _ => return Err("bad chunk extension"),
                },
                Chunk::Data(left) => {
                    let take = left.min((buf.len() - i) as u64);
                    i += take as usize;
                    c = if left == take {
                        Chunk::DataCr
                    } else {
                        Chunk::Data(left - take)
                    };
                    continue;
                }
                Chunk::DataCr => match b {
                    b'\r' => Chunk::DataLf,
                    b'\n' => Chunk::Size { size: 0, digits: 0 },
                    _ => return Err("chunk data overruns its size"),
                },
                Chunk::DataLf => match b {
                    b'\n' => Chunk::Size { size: 0, digits: 0 },
                    _ => return Err("chunk data overruns its size"),
                },
                Chunk::TrailerStart => match b {
                    b'\r' => Chunk::TrailerEndLf,
                    b'\n' => {
                        i += 1;
                        self.complete(done);
                        return Ok(i);
                    }
                    _ => Chunk::TrailerLine,
                },
                Chunk::TrailerEndLf => match b {
                    b'\n' => {
                        i += 1;
                        self.complete(done);
                        return Ok(i);
                    }
                    _ => return Err("bad chunked trailer"),
                },
                Chunk::TrailerLine => match b {
                    b'\n' => Chunk::TrailerStart,
                    _ => Chunk::TrailerLine,
                },
            };
            i += 1;
        }
        self.state = State::Chunked(c);
        Ok(i)
    }
}

fn end_of_size(size: u64) -> Chunk {
    if size == 0 {
        Chunk::TrailerStart
    } else {
        Chunk::Data(size)
    }
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

    fn parse_all(chunks: &[&[u8]], head: bool) -> (Vec<u16>, Result<Flow, &'static str>) {
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
            &mut |_| {},
        );
        assert!(p.eof(&mut |_| {}), "cut short");
    }

    #[test]
    fn head_method_has_no_body() {
        let (seen, _) = parse_all(&[b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n"], true);
        assert_eq!(seen, [200, 200]);
    }

    #[test]
    fn malformed() {
        for bad in [
            &b"HTTX/1.1 200 OK\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n",
        ] {
            assert!(
                parse_all(&[bad], false).1.is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
