//! Pre-encoded requests: every request of the rotation is encoded once, up front, into one
//! blob laid out so that any run of up to `window` consecutive requests is one contiguous
//! slice, which is what a pipelined send hands to the kernel.

/// What goes into each request besides its path.
pub struct RequestSpec<'a> {
    pub method: &'a str,
    pub host: &'a str,
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
}

/// The rotation of encoded requests.
pub struct RequestSet {
    blob: Vec<u8>,
    /// `offsets[i]..offsets[i + 1]` is request `i % distinct` of the repeated sequence.
    offsets: Vec<usize>,
    distinct: usize,
    window: usize,
}

impl RequestSet {
    /// Encodes `paths` (at least one) so that runs of up to `window` requests are contiguous.
    pub fn new(spec: &RequestSpec<'_>, paths: &[String], window: usize) -> Self {
        assert!(!paths.is_empty() && window > 0);
        let encoded: Vec<Vec<u8>> = paths.iter().map(|p| encode(spec, p)).collect();
        let distinct = encoded.len();
        let total = distinct + window;
        let mut blob = Vec::new();
        let mut offsets = Vec::with_capacity(total + 1);
        for i in 0..total {
            offsets.push(blob.len());
            blob.extend_from_slice(&encoded[i % distinct]);
        }
        offsets.push(blob.len());
        RequestSet {
            blob,
            offsets,
            distinct,
            window,
        }
    }

    /// Number of different requests in the rotation.
    pub fn distinct(&self) -> usize {
        self.distinct
    }

    /// Byte range of the `count` requests starting at rotation index `first`.
    #[inline]
    pub fn span(&self, first: usize, count: usize) -> (usize, usize) {
        debug_assert!(first < self.distinct && count <= self.window);
        let start = self.offsets[first];
        (start, self.offsets[first + count] - start)
    }

    /// The encoded bytes (kept alive by the ring while sends are in flight).
    pub fn blob(&self) -> &[u8] {
        &self.blob
    }
}

fn encode(spec: &RequestSpec<'_>, path: &str) -> Vec<u8> {
    let mut r = Vec::with_capacity(64 + path.len() + spec.body.len());
    r.extend_from_slice(spec.method.as_bytes());
    r.push(b' ');
    r.extend_from_slice(path.as_bytes());
    r.extend_from_slice(b" HTTP/1.1\r\n");
    let has = |name: &str| {
        spec.headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name))
    };
    if !has("host") {
        r.extend_from_slice(b"Host: ");
        r.extend_from_slice(spec.host.as_bytes());
        r.extend_from_slice(b"\r\n");
    }
    for (n, v) in spec.headers {
        if n.eq_ignore_ascii_case("content-length") && !spec.body.is_empty() {
            continue; // ours below is the one that matches the body
        }
        r.extend_from_slice(n.as_bytes());
        r.extend_from_slice(b": ");
        r.extend_from_slice(v.as_bytes());
        r.extend_from_slice(b"\r\n");
    }
    if !spec.body.is_empty()
        || (spec.method != "GET" && spec.method != "HEAD" && !has("content-length"))
    {
        r.extend_from_slice(format!("Content-Length: {}\r\n", spec.body.len()).as_bytes());
    }
    r.extend_from_slice(b"\r\n");
    r.extend_from_slice(spec.body);
    r
}

/// Splits `Name: value`, rejecting what would corrupt the request.
pub fn parse_header(h: &str) -> Result<(String, String), String> {
    let (n, v) = h
        .split_once(':')
        .ok_or_else(|| format!("header '{h}' is not 'Name: value'"))?;
    let n = n.trim();
    let v = v.trim();
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if n.is_empty() || !n.bytes().all(token) {
        return Err(format!("header '{h}' has an invalid name"));
    }
    if v.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        return Err(format!("header '{h}' has a line break in its value"));
    }
    Ok((n.to_string(), v.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_spans_are_contiguous() {
        let spec = RequestSpec {
            method: "GET",
            host: "h",
            headers: &[],
            body: b"",
        };
        let paths = vec!["/a".to_string(), "/bb".to_string(), "/c".to_string()];
        let set = RequestSet::new(&spec, &paths, 4);
        let (s, l) = set.span(2, 4);
        let text = std::str::from_utf8(&set.blob()[s..s + l]).unwrap();
        let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("GET")).collect();
        assert_eq!(
            lines,
            [
                "GET /c HTTP/1.1",
                "GET /a HTTP/1.1",
                "GET /bb HTTP/1.1",
                "GET /c HTTP/1.1"
            ]
        );
    }

    #[test]
    fn body_and_headers() {
        let headers = vec![parse_header("X-A: 1").unwrap()];
        let spec = RequestSpec {
            method: "POST",
            host: "h:1",
            headers: &headers,
            body: b"hello",
        };
        let set = RequestSet::new(&spec, &["/p".to_string()], 1);
        let (s, l) = set.span(0, 1);
        assert_eq!(
            &set.blob()[s..s + l],
            b"POST /p HTTP/1.1\r\nHost: h:1\r\nX-A: 1\r\nContent-Length: 5\r\n\r\nhello"
        );
        assert!(parse_header("nocolon").is_err());
        assert!(parse_header("Bad Name: x").is_err());
    }
}
