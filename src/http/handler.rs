//! The handler API the HTTP core calls: a request view in, a [`Reply`] out. `Reply::Ready` is
//! the fast path; `Reply::Later` lets a handler wait on I/O on the shard's executor without
//! blocking it. The core owns the trait; handlers (the router, the built-in routes, an
//! embedder's closures) live beside it.
use crate::http::request::Request;
use crate::http::response::{Fixed, Reply};

/// Something that answers requests.
pub trait Handler: 'static {
    fn call(&self, req: &Request<'_>) -> Reply;

    /// What the connection asks: `call`'s reply, or a response encoded in advance that it can
    /// copy. Handlers that hold [`Fixed`] responses (the router, `Fixed` itself) override it.
    #[inline]
    fn answer(&self, req: &Request<'_>) -> Answer<'_> {
        Answer::Reply(self.call(req))
    }

    /// For a request whose body did not come whole with its head (`req` has no body yet): the
    /// size past which this handler takes the body as it arrives ([`Request::body_stream`])
    /// instead of whole. `None`, the default: always whole, up to the body-size limit.
    fn streams_body_over(&self, _req: &Request<'_>) -> Option<usize> {
        None
    }

    /// Whether the answer this handler is working on for `req` is dropped when its client
    /// closes before it is written (nginx's default for proxied requests: a request waiting for
    /// an app process leaves the queue). `false`, the default: a client may half-close after
    /// its last request and still read the answers.
    fn abandons_on_close(&self, _req: &Request<'_>) -> bool {
        false
    }
}

/// A handler's answer as the connection sees it.
pub enum Answer<'h> {
    Reply(Reply),
    /// Borrowed from the handler: nothing is built or freed per request.
    Fixed(&'h Fixed),
    /// Shared with a cache that may replace it (a file's response): a count, not a copy.
    Shared(std::rc::Rc<Fixed>),
}

impl Handler for Fixed {
    fn call(&self, _req: &Request<'_>) -> Reply {
        Reply::Ready(self.to_response())
    }

    #[inline]
    fn answer(&self, _req: &Request<'_>) -> Answer<'_> {
        Answer::Fixed(self)
    }
}

impl<F, R> Handler for F
where
    F: Fn(&Request<'_>) -> R + 'static,
    R: Into<Reply>,
{
    fn call(&self, req: &Request<'_>) -> Reply {
        self(req).into()
    }
}
