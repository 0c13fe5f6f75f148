//! Named limits on what a client may send, each mapped to the status that rejects it.

/// Default largest request head (request line plus headers), in bytes. Above it: 431, or 414
/// when the request line alone does not fit.
pub const DEFAULT_MAX_HEAD: usize = 16 * 1024;
/// Default largest number of header fields. Above it: 431.
pub const DEFAULT_MAX_HEADERS: usize = 100;
/// Default largest request body, in bytes, after chunked decoding. Above it: 413.
pub const DEFAULT_MAX_BODY: usize = 1024 * 1024;

/// What the connection core accepts from a client.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_head: usize,
    pub max_headers: usize,
    pub max_body: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head: DEFAULT_MAX_HEAD,
            max_headers: DEFAULT_MAX_HEADERS,
            max_body: DEFAULT_MAX_BODY,
        }
    }
}
