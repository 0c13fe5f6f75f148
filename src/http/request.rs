//! The request a handler sees: a view borrowing the connection's buffers, no copies.

/// HTTP version of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

/// A parsed request: method, target, headers and the whole (decoded) body.
pub struct Request<'a> {
    pub(crate) method: &'a str,
    pub(crate) target: &'a str,
    pub(crate) version: Version,
    pub(crate) headers: &'a [httparse::Header<'a>],
    pub(crate) body: &'a [u8],
    /// Which of the shard's listeners accepted the connection (their order as configured).
    pub(crate) listener: u8,
    /// The client's address, where the shard looked it up (an access log or a proxy route
    /// asks for it).
    pub(crate) peer: Option<&'a std::net::SocketAddr>,
    /// A chunked body's trailer section: raw field lines, each ending in CRLF.
    pub(crate) trailers: &'a [u8],
    /// The body, when the handler takes it as it arrives (`Handler::streams_body_over`).
    pub(crate) body_stream: Option<&'a crate::http::body::BodyReader>,
}

impl<'a> Request<'a> {
    /// The method, e.g. `GET`.
    pub fn method(&self) -> &'a str {
        self.method
    }

    /// The request target as sent, e.g. `/search?q=1`.
    pub fn target(&self) -> &'a str {
        self.target
    }

    /// The path part of the target, without the query; for an absolute-form target
    /// (`http://host/path`, RFC 9112 §3.2.2) the path after the authority, `/` if it has none.
    pub fn path(&self) -> &'a str {
        let mut target = self.target;
        if !target.starts_with('/') {
            match after_authority(target.as_bytes()) {
                Some(i) if target[i..].starts_with('/') => target = &target[i..],
                Some(_) => return "/",
                None => return target,
            }
        }
        // A plain loop: targets are short, and `find` would call out to a generic searcher.
        match target.bytes().position(|b| b == b'?') {
            Some(i) => &target[..i],
            None => target,
        }
    }

    /// The query part of the target, without the `?`.
    pub fn query(&self) -> Option<&'a str> {
        self.target.find('?').map(|i| &self.target[i + 1..])
    }

    /// HTTP/1.0 or HTTP/1.1.
    pub fn version(&self) -> Version {
        self.version
    }

    /// The first header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }

    /// All header fields in the order received.
    pub fn headers(&self) -> impl Iterator<Item = (&'a str, &'a [u8])> + '_ {
        self.headers.iter().map(|h| (h.name, h.value))
    }

    /// The index of the listener that accepted the connection, in the order the server lists
    /// them (0 when there is one).
    pub fn listener(&self) -> usize {
        usize::from(self.listener)
    }

    /// The body: `Content-Length` bytes, or the decoded chunks.
    pub fn body(&self) -> &'a [u8] {
        self.body
    }

    /// The trailer fields that followed a chunked body, as raw lines each ending in CRLF
    /// (empty when there were none).
    pub fn trailers(&self) -> &'a [u8] {
        self.trailers
    }

    /// The rest of the body, when it was larger than the handler takes whole
    /// (`Handler::streams_body_over`): [`Request::body`] then holds none of it.
    pub fn body_stream(&self) -> Option<&'a crate::http::body::BodyReader> {
        self.body_stream
    }

    /// The client's address, when the server looked it up (with an access log or a proxy
    /// route; not on a unix socket).
    pub fn peer(&self) -> Option<std::net::SocketAddr> {
        self.peer.copied()
    }
}

/// For an absolute-form target with an `http` or `https` scheme, where its authority ends (the
/// index of the path, query or end); `None` for any other target.
pub(crate) fn after_authority(target: &[u8]) -> Option<usize> {
    let rest = if target.len() >= 7 && target[..7].eq_ignore_ascii_case(b"http://") {
        7
    } else if target.len() >= 8 && target[..8].eq_ignore_ascii_case(b"https://") {
        8
    } else {
        return None;
    };
    let end = target[rest..]
        .iter()
        .position(|&b| b == b'/' || b == b'?')
        .map_or(target.len(), |i| rest + i);
    (end > rest).then_some(end)
}
