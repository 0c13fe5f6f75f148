//! A request body a handler takes as it arrives, instead of whole: what a proxy route does
//! with a body larger than it buffers. The connection decodes the body into the reader's
//! buffer as it is received and stops reading while that buffer is full (the connection's
//! usual backpressure counts it), so a fast client cannot fill memory ahead of a slow upstream.
use std::cell::RefCell;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

#[derive(Default)]
struct Chan {
    data: Vec<u8>,
    /// Bytes the handler has taken so far.
    taken: u64,
    done: bool,
    trailers: Vec<u8>,
    /// Why the body cannot be had whole: 400 malformed, 413 too large, 431 trailers too large,
    /// 499 the client went away.
    failed: Option<u16>,
    waker: Option<Waker>,
}

/// The handler's end: chunks of the body in order, then the end (with the trailer fields of a
/// chunked body).
#[derive(Clone, Default)]
pub struct BodyReader(Rc<RefCell<Chan>>);

impl BodyReader {
    /// The next bytes of the body: `Ok(None)` at its end; `Err(status)` if it cannot be had
    /// whole (malformed 400, too large 413, trailers too large 431, client gone 499).
    pub fn poll_chunk(&self, cx: &mut Context<'_>) -> Poll<Result<Option<Vec<u8>>, u16>> {
        let mut c = self.0.borrow_mut();
        if !c.data.is_empty() {
            let data = std::mem::take(&mut c.data);
            c.taken += data.len() as u64;
            return Poll::Ready(Ok(Some(data)));
        }
        if let Some(status) = c.failed {
            return Poll::Ready(Err(status));
        }
        if c.done {
            return Poll::Ready(Ok(None));
        }
        c.waker = Some(cx.waker().clone());
        Poll::Pending
    }

    /// The next bytes of the body (see [`BodyReader::poll_chunk`]).
    pub async fn chunk(&self) -> Result<Option<Vec<u8>>, u16> {
        std::future::poll_fn(|cx| self.poll_chunk(cx)).await
    }

    /// A chunked body's trailer fields (raw lines each ending in CRLF), once it has ended.
    pub fn trailers(&self) -> Vec<u8> {
        self.0.borrow().trailers.clone()
    }

    // The connection's end.

    /// Bytes received and not yet taken.
    pub(crate) fn buffered(&self) -> usize {
        self.0.borrow().data.len()
    }

    pub(crate) fn taken(&self) -> u64 {
        self.0.borrow().taken
    }

    /// Runs `f` on the buffer the connection decodes into, then wakes the handler if it grew.
    pub(crate) fn fill<T>(&self, f: impl FnOnce(&mut Vec<u8>) -> T) -> T {
        let mut c = self.0.borrow_mut();
        let before = c.data.len();
        let r = f(&mut c.data);
        if c.data.len() > before {
            if let Some(w) = c.waker.take() {
                drop(c);
                w.wake();
            }
        }
        r
    }

    pub(crate) fn finish(&self, trailers: Vec<u8>) {
        let mut c = self.0.borrow_mut();
        c.done = true;
        c.trailers = trailers;
        if let Some(w) = c.waker.take() {
            drop(c);
            w.wake();
        }
    }

    pub(crate) fn fail(&self, status: u16) {
        let mut c = self.0.borrow_mut();
        c.failed.get_or_insert(status);
        if let Some(w) = c.waker.take() {
            drop(c);
            w.wake();
        }
    }
}
