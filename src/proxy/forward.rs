//! The request as it goes upstream, and the response head as it comes back: hop-by-hop fields
//! removed, the client named in `X-Forwarded-*` or `Forwarded`, the body framed anew.
use std::net::SocketAddr;

use crate::http::request::{after_authority, Request};
use crate::http::response::Response;
use crate::http::words::trim_ows;

use super::options::{Forwarded, ProxyOptions};

/// Fields that describe one connection, not the message (RFC 9110 §7.6.1), and the framing
/// fields the proxy writes itself.
fn hop_by_hop(name: &str) -> bool {
    const HOP: [&str; 7] = [
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "transfer-encoding",
        "content-length",
    ];
    HOP.iter().any(|h| name.eq_ignore_ascii_case(h))
        || (name.len() > 6 && name[..6].eq_ignore_ascii_case("proxy-"))
}

/// The field names a `Connection` header lists (lower case).
fn connection_names<'a>(fields: impl Iterator<Item = (&'a str, &'a [u8])>) -> Vec<String> {
    let mut names = Vec::new();
    for (name, value) in fields {
        if name.eq_ignore_ascii_case("connection") {
            for token in String::from_utf8_lossy(value).split(',') {
                let t = token.trim().to_ascii_lowercase();
                if !t.is_empty() {
                    names.push(t);
                }
            }
        }
    }
    names
}

fn put(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// The idempotent methods (RFC 9110 §9.2.2): a request with one of them may be sent again.
pub fn idempotent(method: &str) -> bool {
    matches!(
        method,
        "GET" | "HEAD" | "PUT" | "DELETE" | "OPTIONS" | "TRACE"
    )
}

/// Encodes `req` for the upstream: head, then body (`Content-Length`, or chunked when it came
/// with trailers, which go along).
pub fn request(req: &Request<'_>, opts: &ProxyOptions, peer: Option<SocketAddr>) -> Vec<u8> {
    let body = req.body();
    let trailers = req.trailers();
    let mut out = Vec::with_capacity(256 + body.len());
    out.extend_from_slice(req.method().as_bytes());
    out.push(b' ');
    let target = req.target();
    if target.starts_with('/') || target == "*" {
        out.extend_from_slice(target.as_bytes());
    } else {
        // Absolute form: the upstream gets the origin form, the host goes in `Host`.
        match after_authority(target.as_bytes()) {
            Some(i) if target[i..].starts_with('/') => {
                out.extend_from_slice(&target.as_bytes()[i..])
            }
            Some(i) => {
                out.push(b'/');
                out.extend_from_slice(&target.as_bytes()[i..]);
            }
            None => out.extend_from_slice(target.as_bytes()),
        }
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");

    let client_host = req.header("host").unwrap_or(b"");
    match &opts.upstream_host {
        Some(h) => put(&mut out, "Host", h.as_bytes()),
        None => put(&mut out, "Host", client_host),
    }
    let listed = connection_names(req.headers());
    let trusted = peer.is_some_and(|p| opts.trusted.iter().any(|c| c.contains(p.ip())));
    let mut xff: Vec<u8> = Vec::new();
    let mut fwd: Vec<u8> = Vec::new();
    let (mut xproto, mut xhost) = (None, None);
    for (name, value) in req.headers() {
        if hop_by_hop(name)
            || name.eq_ignore_ascii_case("host")
            // The client was told to send its body (or sent it); the upstream gets it at once.
            || name.eq_ignore_ascii_case("expect")
            || listed.iter().any(|l| name.eq_ignore_ascii_case(l))
        {
            continue;
        }
        if name.eq_ignore_ascii_case("x-forwarded-for") {
            if trusted {
                if !xff.is_empty() {
                    xff.extend_from_slice(b", ");
                }
                xff.extend_from_slice(value);
            }
            continue;
        }
        if name.eq_ignore_ascii_case("forwarded") {
            if trusted {
                if !fwd.is_empty() {
                    fwd.extend_from_slice(b", ");
                }
                fwd.extend_from_slice(value);
            }
            continue;
        }
        if name.eq_ignore_ascii_case("x-forwarded-proto") {
            xproto = trusted.then_some(value);
            continue;
        }
        if name.eq_ignore_ascii_case("x-forwarded-host") {
            xhost = trusted.then_some(value);
            continue;
        }
        put(&mut out, name, value);
    }
    let ip = peer.map(|p| p.ip());
    match opts.forwarded {
        Forwarded::XForwarded => {
            if let Some(ip) = ip {
                use std::io::Write;
                if !xff.is_empty() {
                    xff.extend_from_slice(b", ");
                }
                let _ = write!(xff, "{ip}");
            }
            if !xff.is_empty() {
                put(&mut out, "X-Forwarded-For", &xff);
            }
            put(&mut out, "X-Forwarded-Proto", xproto.unwrap_or(b"http"));
            if !client_host.is_empty() || xhost.is_some() {
                put(&mut out, "X-Forwarded-Host", xhost.unwrap_or(client_host));
            }
        }
        Forwarded::Rfc7239 => {
            let mut element = String::new();
            match ip {
                Some(std::net::IpAddr::V6(v6)) => element += &format!("for=\"[{v6}]\""),
                Some(v4) => element += &format!("for={v4}"),
                None => element += "for=unknown",
            }
            if let Ok(h) = std::str::from_utf8(client_host) {
                if !h.is_empty() {
                    element += &format!(";host=\"{h}\"");
                }
            }
            element += ";proto=http";
            if !fwd.is_empty() {
                fwd.extend_from_slice(b", ");
            }
            fwd.extend_from_slice(element.as_bytes());
            put(&mut out, "Forwarded", &fwd);
        }
    }
    if !trailers.is_empty() {
        out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
        if !body.is_empty() {
            out.extend_from_slice(format!("{:x}\r\n", body.len()).as_bytes());
            out.extend_from_slice(body);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"0\r\n");
        out.extend_from_slice(trailers);
        out.extend_from_slice(b"\r\n");
        return out;
    }
    if req.body_stream().is_some() {
        // The body follows as it arrives: with its declared length, else chunked.
        match req.header("content-length") {
            Some(len) => put(&mut out, "Content-Length", trim_ows(len)),
            None => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        }
        out.extend_from_slice(b"\r\n");
        return out;
    }
    let framed =
        req.header("content-length").is_some() || req.header("transfer-encoding").is_some();
    if framed || !body.is_empty() {
        out.extend_from_slice(b"Content-Length: ");
        out.extend_from_slice(body.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// The upstream's response head as the client gets it: its status and end-to-end fields (the
/// server writes framing, `Date` and `Server` itself).
pub fn response(status: u16, headers: &[httparse::Header<'_>]) -> Response {
    let listed = connection_names(headers.iter().map(|h| (h.name, h.value)));
    let mut lines = String::with_capacity(256);
    for h in headers {
        if hop_by_hop(h.name)
            || h.name.eq_ignore_ascii_case("date")
            || h.name.eq_ignore_ascii_case("server")
            || listed.iter().any(|l| h.name.eq_ignore_ascii_case(l))
        {
            continue;
        }
        if !lines.is_empty() {
            lines.push_str("\r\n");
        }
        lines.push_str(h.name);
        lines.push_str(": ");
        // httparse let no CR, LF or NUL through; other bytes outside UTF-8 are rare enough
        // to be replaced.
        lines.push_str(&String::from_utf8_lossy(h.value));
    }
    Response::new(status).field_lines(lines)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::Version;

    fn req<'a>(headers: &'a [httparse::Header<'a>], body: &'a [u8]) -> Request<'a> {
        Request {
            method: "POST",
            target: "/a?b=1",
            version: Version::Http11,
            headers,
            body,
            listener: 0,
            peer: None,
            trailers: b"",
            body_stream: None,
        }
    }

    fn h<'a>(name: &'a str, value: &'a str) -> httparse::Header<'a> {
        httparse::Header {
            name,
            value: value.as_bytes(),
        }
    }

    #[test]
    fn hop_by_hop_fields_go_and_the_client_is_named() {
        let headers = [
            h("Host", "site.example"),
            h("Connection", "keep-alive, X-Secret"),
            h("X-Secret", "1"),
            h("Keep-Alive", "timeout=5"),
            h("TE", "trailers"),
            h("Upgrade", "websocket"),
            h("Proxy-Authorization", "x"),
            h("X-Forwarded-For", "6.6.6.6"),
            h("Content-Length", "2"),
            h("Accept", "*/*"),
        ];
        let mut opts = ProxyOptions::new(Vec::new());
        let peer: SocketAddr = "10.1.2.3:5000".parse().unwrap();
        let out = request(&req(&headers, b"hi"), &opts, Some(peer));
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "POST /a?b=1 HTTP/1.1\r\nHost: site.example\r\nAccept: */*\r\nX-Forwarded-For: 10.1.2.3\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: site.example\r\nContent-Length: 2\r\n\r\nhi"
        );
        opts.trusted
            .push(super::super::options::Cidr::parse("10.0.0.0/8").unwrap());
        opts.upstream_host = Some("app.internal".into());
        let text = String::from_utf8(request(&req(&headers, b"hi"), &opts, Some(peer))).unwrap();
        assert!(text.contains("Host: app.internal\r\n"), "{text}");
        assert!(
            text.contains("X-Forwarded-For: 6.6.6.6, 10.1.2.3\r\n"),
            "{text}"
        );
        opts.forwarded = Forwarded::Rfc7239;
        let text = String::from_utf8(request(&req(&headers, b"hi"), &opts, Some(peer))).unwrap();
        assert!(
            text.contains("Forwarded: for=10.1.2.3;host=\"site.example\";proto=http\r\n"),
            "{text}"
        );
        assert!(!text.contains("X-Forwarded-For"), "{text}");
    }

    #[test]
    fn trailers_go_chunked() {
        let headers = [h("Host", "x"), h("Transfer-Encoding", "chunked")];
        let mut r = req(&headers, b"hello");
        r.trailers = b"X-Sum: 5\r\n";
        let text = String::from_utf8(request(&r, &ProxyOptions::new(Vec::new()), None)).unwrap();
        assert!(
            text.ends_with("Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-Sum: 5\r\n\r\n"),
            "{text}"
        );
    }

    #[test]
    fn response_fields_named_by_connection_go() {
        let headers = [
            h("Connection", "close, X-Hop"),
            h("X-Hop", "1"),
            h("Content-Type", "text/html"),
            h("Transfer-Encoding", "chunked"),
            h("Set-Cookie", "a=1"),
            h("Set-Cookie", "b=2"),
        ];
        let resp = response(201, &headers);
        let lines: Vec<_> = resp.headers.iter().map(|(_, v)| v.to_string()).collect();
        assert_eq!(
            lines,
            ["Content-Type: text/html\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2"]
        );
        assert_eq!(resp.status, 201);
    }
}
