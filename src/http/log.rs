//! What the core tells an access log about each answered request. The core only describes the
//! request and its answer; the log (the shard's, `crate::access_log`) formats and writes.
use std::net::SocketAddr;

use crate::http::request::Version;

/// One answered request.
pub struct Entry<'a> {
    pub peer: Option<SocketAddr>,
    /// Empty when the request was refused before its line could be read.
    pub method: &'a str,
    pub target: &'a str,
    pub version: Version,
    pub status: u16,
    /// Body bytes of the answer (0 for HEAD, 304, and a body streamed without a length).
    pub bytes: u64,
    pub referer: Option<&'a [u8]>,
    pub user_agent: Option<&'a [u8]>,
}

/// Where entries go.
pub trait AccessLog {
    fn record(&self, entry: &Entry<'_>);
}

/// What an entry needs of a request whose answer comes later: copied when the handler waits.
#[derive(Default)]
pub struct Pending {
    pub method: Box<str>,
    pub target: Box<str>,
    pub version: Option<Version>,
    pub referer: Option<Box<[u8]>>,
    pub user_agent: Option<Box<[u8]>>,
}
