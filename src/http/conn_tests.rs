//! Table-driven tests of the sans-IO connection core: bytes in (whole, split at every byte,
//! one byte at a time) → responses, statuses and `Progress` out.
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use bytes::Bytes;

use crate::http::chunked::ChunkedDecoder;
use crate::http::conn::{Conn, Ctx, Phase, Progress, TaskPoll};
use crate::http::limits::Limits;
use crate::http::request::Request;
use crate::http::response::{Body, IterStream, Reply, Response};

const DATE: [u8; 29] = [b'x'; 29];
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Pending on its first poll (waking itself), ready on the second.
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

/// The trivial handler: `/` says hi, `/echo` returns the body, `/later` answers through a
/// future, `/stream` streams, anything else is 404. Responses name the method and path.
fn handler(req: &Request<'_>) -> Reply {
    let tag = format!("{} {}", req.method(), req.target());
    match req.path() {
        "/" => Response::text(200, "hi").header("X-Req", tag).into(),
        "/echo" => Response::new(200)
            .header("X-Req", tag)
            .body(req.body().to_vec())
            .into(),
        "/later" => Reply::Later(Box::pin(async move {
            YieldOnce(false).await;
            Response::text(200, "later").header("X-Req", tag)
        })),
        "/later-stream" => Reply::Later(Box::pin(async move {
            YieldOnce(false).await;
            Response::new(200)
                .header("X-Req", tag)
                .body(Body::Stream(Box::new(IterStream(
                    vec![Bytes::from_static(b"late"), Bytes::from_static(b"r")].into_iter(),
                ))))
        })),
        "/big-stream" => Response::new(200)
            .body(Body::Stream(Box::new(IterStream(
                (0..64u8).map(|i| Bytes::from(vec![i; 16 * 1024])),
            ))))
            .into(),
        "/stream" => Response::new(200)
            .header("X-Req", tag)
            .body(Body::Stream(Box::new(IterStream(
                vec![
                    Bytes::from_static(b"ab"),
                    Bytes::new(),
                    Bytes::from_static(b"c"),
                ]
                .into_iter(),
            ))))
            .into(),
        _ => Response::text(404, "no").into(),
    }
}

struct Noop;
impl Wake for Noop {
    fn wake(self: Arc<Self>) {}
}

/// Feeds `pieces` the way an engine does: `on_data` per piece; on `Pending`, `poll_task` until
/// done and then `on_data(&[])` for what was buffered behind. Returns all output and the
/// progress of the last call.
fn drive(
    conn: &mut Conn,
    pieces: &[&[u8]],
    limits: &Limits,
    draining: bool,
) -> (Vec<u8>, Progress) {
    let cx = Ctx {
        draining,
        ..Ctx::new(limits, &DATE)
    };
    let waker = Waker::from(Arc::new(Noop));
    let mut task_cx = Context::from_waker(&waker);
    let mut out = Vec::new();
    let mut sent = Vec::new();
    let mut last = Progress::ReadMore;
    for piece in pieces {
        let mut p = conn.on_data(piece, &handler, &cx, &mut out);
        let mut guard = 0;
        while p == Progress::Pending {
            guard += 1;
            assert!(guard < 1000, "task never finished");
            match conn.poll_task(&mut task_cx, &cx, &mut out) {
                TaskPoll::Done => p = conn.on_data(&[], &handler, &cx, &mut out),
                TaskPoll::Pending => {}
                // The engine sends what is there, then polls again.
                TaskPoll::OutputFull => sent.append(&mut out),
            }
        }
        last = p;
        if last == Progress::Close {
            break;
        }
    }
    sent.append(&mut out);
    (sent, last)
}

/// A response parsed back from the output bytes.
#[derive(Debug, PartialEq, Eq)]
struct Parsed {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Parsed {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Splits output into responses (no HEAD requests in the tables: a body always follows).
fn parse_out(out: &[u8]) -> Vec<Parsed> {
    let mut all = Vec::new();
    let mut pos = 0;
    while pos < out.len() {
        let mut hs = [httparse::EMPTY_HEADER; 64];
        let mut r = httparse::Response::new(&mut hs);
        let n = match r.parse(&out[pos..]) {
            Ok(httparse::Status::Complete(n)) => n,
            other => panic!(
                "unparsable output at {pos}: {other:?} in {:?}",
                String::from_utf8_lossy(out)
            ),
        };
        assert_eq!(r.version, Some(1));
        let status = r.code.unwrap();
        let headers: Vec<(String, String)> = r
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_string(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect();
        pos += n;
        let mut p = Parsed {
            status,
            headers,
            body: Vec::new(),
        };
        if status < 200 || status == 204 {
        } else if let Some(cl) = p.header("content-length") {
            let len: usize = cl.parse().unwrap();
            p.body = out[pos..pos + len].to_vec();
            pos += len;
        } else if p.header("transfer-encoding") == Some("chunked") {
            let mut d = ChunkedDecoder::default();
            let (used, done) = d
                .decode(&out[pos..], &mut p.body, usize::MAX, 1 << 20)
                .unwrap();
            assert!(done, "incomplete chunked body");
            pos += used;
        } else {
            p.body = out[pos..].to_vec();
            pos = out.len();
        }
        all.push(p);
    }
    all
}

fn strip_continue(out: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    let mut i = 0;
    while i < out.len() {
        if out[i..].starts_with(CONTINUE) {
            i += CONTINUE.len();
        } else {
            v.push(out[i]);
            i += 1;
        }
    }
    v
}

fn small_limits() -> Limits {
    Limits {
        max_head: 128,
        max_headers: 4,
        max_body: 16,
    }
}

struct Case {
    name: &'static str,
    input: &'static [u8],
    small: bool,
    /// Statuses of the responses, in order (100 Continue left out).
    statuses: &'static [u16],
    progress: Progress,
    phase: Phase,
}

const fn case(
    name: &'static str,
    input: &'static [u8],
    statuses: &'static [u16],
    progress: Progress,
    phase: Phase,
) -> Case {
    Case {
        name,
        input,
        small: false,
        statuses,
        progress,
        phase,
    }
}

const fn small(
    name: &'static str,
    input: &'static [u8],
    statuses: &'static [u16],
    progress: Progress,
    phase: Phase,
) -> Case {
    Case {
        name,
        input,
        small: true,
        statuses,
        progress,
        phase,
    }
}

use Phase::{Body as PBody, Closed, Head, Idle};
use Progress::{Close, ReadMore};

const CASES: &[Case] = &[
    case("get", b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", &[200], ReadMore, Idle),
    case("two pipelined", b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /x HTTP/1.1\r\nHost: a\r\n\r\n", &[200, 404], ReadMore, Idle),
    case("echo by length", b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello", &[200], ReadMore, Idle),
    case("echo chunked with trailers", b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2;x=1\r\nhe\r\n3\r\nllo\r\n0\r\nT: 1\r\nU: 2\r\n\r\n", &[200], ReadMore, Idle),
    case("chunked then get", b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nz\r\n0\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", &[200, 200], ReadMore, Idle),
    case("100-continue", b"POST /echo HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok", &[200], ReadMore, Idle),
    case("later then get", b"GET /later HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", &[200, 200], ReadMore, Idle),
    case("later stream then get", b"GET /later-stream HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", &[200, 200], ReadMore, Idle),
    case("stream then get", b"GET /stream HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", &[200, 200], ReadMore, Idle),
    case("http/1.0 closes", b"GET / HTTP/1.0\r\n\r\nGET / HTTP/1.0\r\n\r\n", &[200], Close, Closed),
    case("http/1.0 keep-alive", b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", &[200], ReadMore, Idle),
    case("connection close", b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", &[200], Close, Closed),
    case("later with close", b"GET /later HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", &[200], Close, Closed),
    case("stray CRLFs around requests", b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n\r\n\nPOST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx\r\n", &[200, 200], ReadMore, Idle),
    case("partial head", b"GET / HTTP/1.1\r\nHost: a\r\n", &[], ReadMore, Head),
    case("partial body", b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhel", &[], ReadMore, PBody),
    case("partial chunked", b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel", &[], ReadMore, PBody),
    case("get then partial", b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HT", &[200], ReadMore, Head),
    // Rejections.
    case("garbage", b"\x01\x02\x03 / HTTP/1.1\r\n\r\n", &[400], Close, Closed),
    case("no host", b"GET / HTTP/1.1\r\n\r\n", &[400], Close, Closed),
    case("two hosts", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", &[400], Close, Closed),
    case("cl and te", b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", &[400], Close, Closed),
    case("differing cl", b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", &[400], Close, Closed),
    case("same cl twice", b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nab", &[400], Close, Closed),
    case("same cl listed", b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 2,2\r\n\r\nab", &[400], Close, Closed),
    case("bare lf ending a header", b"GET / HTTP/1.1\r\nHost: a\nX: 1\r\n\r\n", &[400], Close, Closed),
    case("bare lf ending the request line", b"GET / HTTP/1.1\nHost: a\r\n\r\n", &[400], Close, Closed),
    case("framing names in any case", b"POST /echo HTTP/1.1\r\nhOsT: a\r\nCONTENT-length: 2\r\n\r\nokGET / HTTP/1.1\r\nHOST: a\r\nCONNECTION: Close\r\n\r\n", &[200, 200], Close, Closed),
    case("te in upper case", b"POST /echo HTTP/1.1\r\nHost: a\r\nTRANSFER-ENCODING: CHUNKED\r\n\r\n1\r\nz\r\n0\r\n\r\n", &[200], ReadMore, Idle),
    case("near-miss names are other headers", b"GET / HTTP/1.1\r\nHost: a\r\nContent_Length: 5\r\nHost_: b\r\nConnection~: close\r\n\r\n", &[200], ReadMore, Idle),
    case("upper-case cl and te", b"POST /echo HTTP/1.1\r\nHost: a\r\nCONTENT-LENGTH: 1\r\nTRANSFER-ENCODING: chunked\r\n\r\n", &[400], Close, Closed),
    case("te gzip", b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", &[501], Close, Closed),
    case("te on 1.0", b"POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", &[400], Close, Closed),
    case("http/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", &[505], Close, Closed),
    case("http/2.0", b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", &[505], Close, Closed),
    case("unknown expect", b"GET / HTTP/1.1\r\nHost: a\r\nExpect: nope\r\n\r\n", &[417], Close, Closed),
    case("bad chunk", b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nq\r\n", &[400], Close, Closed),
    // Request-target forms (RFC 9112 §3.2) and the Host value (§3.2: an invalid one is a 400).
    case("absolute-form", b"GET http://a/?q HTTP/1.1\r\nHost: a\r\n\r\nGET HTTPS://a HTTP/1.1\r\nHost: a\r\n\r\n", &[200, 200], ReadMore, Idle),
    case("asterisk for OPTIONS", b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", &[404], ReadMore, Idle),
    case("authority for CONNECT", b"CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n", &[404], ReadMore, Idle),
    case("asterisk for GET", b"GET * HTTP/1.1\r\nHost: a\r\n\r\n", &[400], Close, Closed),
    case("relative target", b"GET json HTTP/1.1\r\nHost: a\r\n\r\n", &[400], Close, Closed),
    case("fragment", b"GET /json#x HTTP/1.1\r\nHost: a\r\n\r\n", &[400], Close, Closed),
    case("fragment in absolute-form", b"GET http://a/x#y HTTP/1.1\r\nHost: a\r\n\r\n", &[400], Close, Closed),
    case("other scheme", b"GET ftp://a/ HTTP/1.1\r\nHost: a\r\n\r\n", &[400], Close, Closed),
    case("authority without CONNECT", b"GET a.example:443 HTTP/1.1\r\nHost: a\r\n\r\n", &[400], Close, Closed),
    case("CONNECT without port", b"CONNECT a.example HTTP/1.1\r\nHost: a\r\n\r\n", &[400], Close, Closed),
    case("hosts of every form", b"GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\nGET / HTTP/1.1\r\nHost: Xn--a-b.Example.COM\r\n\r\nGET / HTTP/1.1\r\nHost: 10.0.0.1:80\r\n\r\nGET / HTTP/1.1\r\nHost:\r\n\r\n", &[200, 200, 200, 200], ReadMore, Idle),
    case("valid host then an invalid one", b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\nGET / HTTP/1.1\r\nHost: a.example\r\n\r\nGET / HTTP/1.1\r\nHost: a.exampl/\r\n\r\n", &[200, 200, 400], Close, Closed),
    case("long host twice then an invalid one", b"GET / HTTP/1.1\r\nHost: a-host-name-longer-than-thirty-two-bytes.example\r\n\r\nGET / HTTP/1.1\r\nHost: a-host-name-longer-than-thirty-two-bytes.example\r\n\r\nGET / HTTP/1.1\r\nHost: a-host-name-longer-than-thirty-two-bytes.exampl@\r\n\r\n", &[200, 200, 400], Close, Closed),
    case("host with a space", b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", &[400], Close, Closed),
    case("host with a path", b"GET / HTTP/1.1\r\nHost: a/c@d\r\n\r\n", &[400], Close, Closed),
    case("host with userinfo", b"GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", &[400], Close, Closed),
    case("ok then bad", b"GET / HTTP/1.1\r\nHost: a\r\n\r\nBAD\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", &[200, 400], Close, Closed),
    // Limits (small: head 128, 4 headers, body 16).
    small("head at limit", b"GET / HTTP/1.1\r\nHost: a\r\nX: 012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345\r\n\r\n", &[200], ReadMore, Idle),
    small("head over limit", b"GET / HTTP/1.1\r\nHost: a\r\nX: 0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456\r\n\r\n", &[431], Close, Closed),
    small("target over limit", b"GET /0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123 HTTP/1.1\r\nHost: a\r\n\r\n", &[414], Close, Closed),
    small("4 headers", b"GET / HTTP/1.1\r\nHost: a\r\nB: 1\r\nC: 1\r\nD: 1\r\n\r\n", &[200], ReadMore, Idle),
    small("5 headers", b"GET / HTTP/1.1\r\nHost: a\r\nB: 1\r\nC: 1\r\nD: 1\r\nE: 1\r\n\r\n", &[431], Close, Closed),
    small("body at limit", b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 16\r\n\r\n0123456789abcdef", &[200], ReadMore, Idle),
    small("body over limit", b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 17\r\n\r\n0123456789abcdefg", &[413], Close, Closed),
    small("chunked at limit", b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n01234567\r\n8\r\n89abcdef\r\n0\r\n\r\n", &[200], ReadMore, Idle),
    small("chunked over limit", b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n01234567\r\n9\r\n89abcdefg\r\n0\r\n\r\n", &[413], Close, Closed),
    small("trailers over limit", b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nT: 0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789\r\n\r\n", &[431], Close, Closed),
];

fn limits_for(c: &Case) -> Limits {
    if c.small {
        small_limits()
    } else {
        Limits::default()
    }
}

/// Runs one case with `input` cut into `pieces`; checks statuses, progress and phase.
fn check(c: &Case, pieces: &[&[u8]], how: &str) -> Vec<u8> {
    let limits = limits_for(c);
    let mut conn = Conn::new();
    let (out, progress) = drive(&mut conn, pieces, &limits, false);
    let responses = parse_out(&out);
    let statuses: Vec<u16> = responses
        .iter()
        .map(|r| r.status)
        .filter(|&s| s != 100)
        .collect();
    assert_eq!(
        statuses,
        c.statuses,
        "{} ({how}): statuses; output {:?}",
        c.name,
        String::from_utf8_lossy(&out)
    );
    assert_eq!(progress, c.progress, "{} ({how}): progress", c.name);
    assert_eq!(conn.phase(), c.phase, "{} ({how}): phase", c.name);
    for r in &responses {
        if r.status >= 400 && r.status != 404 {
            assert_eq!(
                r.header("connection"),
                Some("close"),
                "{} ({how}): rejection without close",
                c.name
            );
        }
        if r.status != 100 {
            assert_eq!(r.header("server"), Some("ringshard"));
            assert_eq!(r.header("date"), Some(std::str::from_utf8(&DATE).unwrap()));
        }
    }
    out
}

#[test]
fn table_whole() {
    for c in CASES {
        check(c, &[c.input], "whole");
    }
}

#[test]
fn table_split_at_every_byte() {
    for c in CASES {
        let whole = strip_continue(&check(c, &[c.input], "whole"));
        for cut in 0..=c.input.len() {
            let (a, b) = c.input.split_at(cut);
            let out = check(c, &[a, b], &format!("cut at {cut}"));
            assert_eq!(
                strip_continue(&out),
                whole,
                "{} (cut at {cut}): output differs from the whole input's",
                c.name
            );
        }
    }
}

#[test]
fn table_one_byte_at_a_time() {
    for c in CASES {
        let whole = strip_continue(&check(c, &[c.input], "whole"));
        let pieces: Vec<&[u8]> = c.input.chunks(1).collect();
        let out = check(c, &pieces, "bytewise");
        assert_eq!(strip_continue(&out), whole, "{} (bytewise)", c.name);
    }
}

#[test]
fn table_three_pieces() {
    // Every pair of cuts on the shorter inputs.
    for c in CASES.iter().filter(|c| c.input.len() <= 100) {
        let whole = strip_continue(&check(c, &[c.input], "whole"));
        for i in 0..=c.input.len() {
            for j in i..=c.input.len() {
                let pieces = [&c.input[..i], &c.input[i..j], &c.input[j..]];
                let out = check(c, &pieces, &format!("cuts {i},{j}"));
                assert_eq!(strip_continue(&out), whole, "{} (cuts {i},{j})", c.name);
            }
        }
    }
}

#[test]
fn responses_carry_what_was_asked() {
    let limits = Limits::default();
    let mut conn = Conn::new();
    let input = b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloGET /later?q HTTP/1.1\r\nHost: a\r\n\r\nGET /stream HTTP/1.1\r\nHost: a\r\n\r\nPOST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
    let (out, p) = drive(&mut conn, &[input], &limits, false);
    assert_eq!(p, Progress::ReadMore);
    let r = parse_out(&out);
    assert_eq!(r.len(), 4);
    assert_eq!(
        (r[0].header("x-req"), r[0].body.as_slice()),
        (Some("POST /echo"), &b"hello"[..])
    );
    assert_eq!(r[0].header("content-length"), Some("5"));
    assert_eq!(
        (r[1].header("x-req"), r[1].body.as_slice()),
        (Some("GET /later?q"), &b"later"[..])
    );
    assert_eq!(r[2].header("transfer-encoding"), Some("chunked"));
    assert_eq!(r[2].body, b"abc");
    assert_eq!(r[3].body, b"abc");
    // The exact bytes of a streamed body: the empty chunk is skipped, not sent as the end.
    let s = std::str::from_utf8(&out).unwrap();
    assert!(s.contains("\r\n\r\n2\r\nab\r\n1\r\nc\r\n0\r\n\r\n"), "{s}");
    // A simple response, byte for byte.
    let mut conn = Conn::new();
    let (out, _) = drive(
        &mut conn,
        &[b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"],
        &limits,
        false,
    );
    assert_eq!(
        String::from_utf8(out).unwrap(),
        format!(
            "HTTP/1.1 200 OK\r\nServer: ringshard\r\nContent-Type: text/plain\r\nX-Req: GET /\r\nContent-Length: 2\r\nDate: {}\r\n\r\nhi",
            "x".repeat(29)
        )
    );
}

#[test]
fn head_gets_no_body() {
    let limits = Limits::default();
    let mut conn = Conn::new();
    let (out, p) = drive(
        &mut conn,
        &[b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\nHEAD /stream HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"],
        &limits,
        false,
    );
    assert_eq!(p, Progress::ReadMore);
    let s = String::from_utf8(out).unwrap();
    let heads: Vec<&str> = s.split("\r\n\r\n").collect();
    // HEAD /: Content-Length 2, no body; HEAD /stream: chunked header, no body; GET /: body.
    assert!(heads[0].contains("Content-Length: 2"), "{s}");
    assert!(heads[1].starts_with("HTTP/1.1 200 OK"), "{s}");
    assert!(heads[2].starts_with("HTTP/1.1 200 OK"), "{s}");
    assert_eq!(heads[3], "hi", "{s}");
    assert_eq!(conn.phase(), Phase::Idle);
}

#[test]
fn http10_stream_is_close_delimited() {
    let limits = Limits::default();
    let mut conn = Conn::new();
    let (out, p) = drive(
        &mut conn,
        &[b"GET /stream HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"],
        &limits,
        false,
    );
    assert_eq!(p, Progress::Close);
    let s = String::from_utf8(out).unwrap();
    assert!(s.contains("Connection: close\r\n"), "{s}");
    assert!(
        !s.contains("Transfer-Encoding") && !s.contains("Content-Length"),
        "{s}"
    );
    assert!(s.ends_with("\r\n\r\nabc"), "{s}");
    assert_eq!(conn.phase(), Phase::Closed);
}

#[test]
fn expect_continue_only_when_the_body_is_not_there() {
    let limits = Limits::default();
    let head: &[u8] =
        b"POST /echo HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n";
    let mut conn = Conn::new();
    let (out, _) = drive(&mut conn, &[head], &limits, false);
    assert_eq!(out, CONTINUE);
    assert_eq!(conn.phase(), Phase::Body);
    let (out, _) = drive(&mut conn, &[b"ok"], &limits, false);
    assert_eq!(parse_out(&out)[0].body, b"ok");
    // Body already there: no 100.
    let mut conn = Conn::new();
    let whole = [head, b"ok"].concat();
    let (out, _) = drive(&mut conn, &[&whole], &limits, false);
    assert!(!out.starts_with(CONTINUE));
    // While draining: no 100 either, and the answer closes.
    let mut conn = Conn::new();
    let (out, _) = drive(&mut conn, &[head], &limits, true);
    assert!(out.is_empty());
    let (out, p) = drive(&mut conn, &[b"ok"], &limits, true);
    assert_eq!(p, Progress::Close);
    assert_eq!(parse_out(&out)[0].header("connection"), Some("close"));
    // HTTP/1.0 never gets a 100.
    let mut conn = Conn::new();
    let (out, _) = drive(
        &mut conn,
        &[b"POST /echo HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n"],
        &limits,
        false,
    );
    assert!(out.is_empty());
}

#[test]
fn draining_closes_after_the_response() {
    let limits = Limits::default();
    for input in [
        &b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"[..],
        b"GET /later HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET /stream HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    ] {
        let mut conn = Conn::new();
        let (out, p) = drive(&mut conn, &[input], &limits, true);
        let r = parse_out(&out);
        assert_eq!(r.len(), 1, "{:?}", String::from_utf8_lossy(&out));
        assert_eq!(r[0].header("connection"), Some("close"));
        assert_eq!(p, Progress::Close);
        assert_eq!(conn.phase(), Phase::Closed);
    }
}

#[test]
fn timeouts_by_phase() {
    let limits = Limits::default();
    let cx = Ctx::new(&limits, &DATE);
    // Idle: no response.
    let mut conn = Conn::new();
    let mut out = Vec::new();
    assert!(!conn.on_timeout(&cx, &mut out));
    assert!(out.is_empty());
    assert_eq!(conn.phase(), Phase::Closed);
    // Head and body arriving: 408 with close.
    for partial in [
        &b"GET / HT"[..],
        b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 9\r\n\r\nabc",
        b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
    ] {
        let mut conn = Conn::new();
        let (_, p) = drive(&mut conn, &[partial], &limits, false);
        assert_eq!(p, Progress::ReadMore);
        let mut out = Vec::new();
        assert!(conn.on_timeout(&cx, &mut out));
        let r = parse_out(&out);
        assert_eq!(r[0].status, 408);
        assert_eq!(r[0].header("connection"), Some("close"));
        assert_eq!(conn.phase(), Phase::Closed);
        // Nothing more is read.
        let mut more = Vec::new();
        assert_eq!(
            conn.on_data(
                b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
                &handler,
                &cx,
                &mut more
            ),
            Progress::Close
        );
        assert!(more.is_empty());
    }
}

#[test]
fn after_close_nothing_more() {
    let limits = Limits::default();
    let cx = Ctx::new(&limits, &DATE);
    let mut conn = Conn::new();
    let mut out = Vec::new();
    assert_eq!(
        conn.on_data(b"BAD\r\n\r\n", &handler, &cx, &mut out),
        Progress::Close
    );
    let mut more = Vec::new();
    assert_eq!(
        conn.on_data(
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
            &handler,
            &cx,
            &mut more
        ),
        Progress::Close
    );
    assert!(more.is_empty());
    // EOF mid-head: closed, nothing buffered.
    let mut conn = Conn::new();
    let mut out = Vec::new();
    conn.on_data(b"GET / HTTP/1.1\r\n", &handler, &cx, &mut out);
    assert_eq!(conn.phase(), Phase::Head);
    conn.on_eof();
    assert_eq!(conn.phase(), Phase::Closed);
    assert_eq!(conn.buffered(), 0);
}

#[test]
fn input_behind_a_pending_task_is_buffered() {
    let limits = Limits::default();
    let cx = Ctx::new(&limits, &DATE);
    let waker = Waker::from(Arc::new(Noop));
    let mut task_cx = Context::from_waker(&waker);
    let mut conn = Conn::new();
    let mut out = Vec::new();
    assert_eq!(
        conn.on_data(
            b"GET /later HTTP/1.1\r\nHost: a\r\n\r\nGET / HT",
            &handler,
            &cx,
            &mut out
        ),
        Progress::Pending
    );
    assert_eq!(conn.phase(), Phase::Handler);
    assert_eq!(
        conn.on_data(b"TP/1.1\r\nHost: a\r\n\r\n", &handler, &cx, &mut out),
        Progress::Pending
    );
    assert!(out.is_empty());
    assert_eq!(
        conn.poll_task(&mut task_cx, &cx, &mut out),
        TaskPoll::Pending
    );
    assert_eq!(conn.poll_task(&mut task_cx, &cx, &mut out), TaskPoll::Done);
    assert_eq!(
        conn.on_data(&[], &handler, &cx, &mut out),
        Progress::ReadMore
    );
    let r = parse_out(&out);
    assert_eq!(r.iter().map(|r| r.status).collect::<Vec<_>>(), [200, 200]);
    assert_eq!(r[0].body, b"later");
    assert_eq!(r[1].body, b"hi");
    assert_eq!(conn.phase(), Phase::Idle);
    assert_eq!(conn.buffered(), 0);
}

#[test]
fn big_stream_arrives_whole_past_the_high_water_mark() {
    let limits = Limits::default();
    let mut conn = Conn::new();
    let (out, p) = drive(
        &mut conn,
        &[b"GET /big-stream HTTP/1.1\r\nHost: a\r\n\r\n"],
        &limits,
        false,
    );
    assert_eq!(p, Progress::ReadMore);
    let r = parse_out(&out);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].body.len(), 64 * 16 * 1024);
    for (i, c) in r[0].body.chunks(16 * 1024).enumerate() {
        assert!(c.iter().all(|&b| b == i as u8), "chunk {i}");
    }
}

/// A `Fixed` response is byte for byte what the same response built per request would be, for
/// every kind of request: keep-alive, HEAD, HTTP/1.0 with and without keep-alive, `Connection:
/// close`, while draining; and with a 204, which has no body.
#[test]
fn fixed_responses_encode_as_built_ones() {
    use crate::http::handler::{Answer, Handler};
    use crate::http::response::Fixed;
    fn make(status: u16) -> Response {
        Response::text(status, "hello")
            .header("X-A", "1")
            .header("Cache-Control", "no-store")
    }
    /// `/fixed...` answers with a `Fixed` (as the router does), `/built...` builds the same
    /// response per request.
    struct Both([Fixed; 3]);
    impl Both {
        fn status(path: &str) -> u16 {
            match path.rsplit('-').next() {
                Some("204") => 204,
                Some("404") => 404,
                _ => 200,
            }
        }
        fn built(status: u16) -> Response {
            if status == 404 {
                Response::text(404, "gone")
            } else {
                make(status)
            }
        }
    }
    impl Handler for Both {
        fn call(&self, req: &Request<'_>) -> Reply {
            Reply::Ready(Both::built(Both::status(req.path())))
        }
        fn answer(&self, req: &Request<'_>) -> Answer<'_> {
            let i = match Both::status(req.path()) {
                204 => 1,
                404 => 2,
                _ => 0,
            };
            if req.path().starts_with("/fixed") {
                Answer::Fixed(&self.0[i])
            } else {
                Answer::Reply(self.call(req))
            }
        }
    }
    let router = Both([200, 204, 404].map(|s| Fixed::new(Both::built(s))));
    let limits = Limits::default();
    for draining in [false, true] {
        let cx = Ctx {
            draining,
            ..Ctx::new(&limits, &DATE)
        };
        for path in ["", "-204", "-404"] {
            for (method, version, extra) in [
                ("GET", "1.1", ""),
                ("HEAD", "1.1", ""),
                ("GET", "1.0", ""),
                ("GET", "1.0", "Connection: keep-alive\r\n"),
                ("GET", "1.1", "Connection: close\r\n"),
            ] {
                let answer = |kind: &str| {
                    let req = format!(
                        "{method} /{kind}{path} HTTP/{version}\r\nHost: a\r\n{extra}\r\n\
                         GET /{kind}{path} HTTP/1.1\r\nHost: a\r\n\r\n"
                    );
                    let mut out = Vec::new();
                    let progress = Conn::new().on_data(req.as_bytes(), &router, &cx, &mut out);
                    (String::from_utf8(out).unwrap(), progress)
                };
                let (fixed, built) = (answer("fixed"), answer("built"));
                assert_eq!(
                    fixed, built,
                    "{method} {path} HTTP/{version} {extra:?} {draining}"
                );
            }
        }
    }
}
