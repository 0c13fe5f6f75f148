//! A proxied response's body on its way from the upstream to a client that may read slower:
//! held in memory up to the route's `response_buffer`, the rest in an unlinked temporary file,
//! so the upstream is read as fast as it sends and its connection goes back to the pool while
//! the client still reads. The upstream side (the pump task) writes, the client's connection
//! reads through [`RelayStream`].
use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;

use crate::http::response::{BodyStream, End};

/// Bytes one read of the spill file takes.
const FILE_READ: usize = 64 * 1024;

#[derive(Default)]
pub struct Relay {
    mem: VecDeque<Bytes>,
    mem_len: usize,
    /// The spill file: bytes `[read, written)` wait there; `pending` are bytes the pump has
    /// not yet written to it.
    file: Option<Rc<OwnedFd>>,
    written: u64,
    read: u64,
    pending: Vec<u8>,
    /// The upstream's body is complete (`Some(trailers)`), or was cut (`cut`).
    ended: Option<Vec<u8>>,
    cut: bool,
    reader: Option<Waker>,
    writer: Option<Waker>,
    /// The client's side went away: the pump reads on only to free the upstream connection.
    abandoned: bool,
}

pub type Shared = Rc<RefCell<Relay>>;

impl Relay {
    /// Body bytes from the upstream: to memory while it has room and nothing waits in the
    /// file (order is kept), else to the file.
    pub fn push(&mut self, bytes: &[u8], limit: usize) {
        if bytes.is_empty() || self.abandoned {
            return;
        }
        let spilling = self.written > self.read || !self.pending.is_empty();
        if !spilling && self.mem_len + bytes.len() <= limit {
            self.mem_len += bytes.len();
            self.mem.push_back(Bytes::copy_from_slice(bytes));
        } else {
            self.pending.extend_from_slice(bytes);
        }
        self.wake_reader();
    }

    pub fn finish(&mut self, trailers: Vec<u8>) {
        self.ended = Some(trailers);
        self.wake_reader();
    }

    pub fn cut(&mut self) {
        self.cut = true;
        self.wake_reader();
    }

    fn wake_reader(&mut self) {
        if let Some(w) = self.reader.take() {
            w.wake();
        }
    }

    /// Bytes the pump must write to the file before it reads more (none: go on reading).
    pub fn take_pending(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.pending)
    }

    pub fn abandoned(&self) -> bool {
        self.abandoned
    }
}

/// The pump's half: writes what spilled to the temporary file, in order.
pub async fn spill(relay: &Shared, bytes: Vec<u8>) -> std::io::Result<()> {
    let file = {
        let mut r = relay.borrow_mut();
        if r.file.is_none() {
            r.file = Some(Rc::new(temp_file()?));
        }
        r.file.clone().unwrap_or_else(|| unreachable!())
    };
    let mut buf = bytes;
    while !buf.is_empty() {
        let offset = relay.borrow().written;
        let (r, back) = crate::io::write(&file, buf, offset).await;
        let n = r?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        let mut rl = relay.borrow_mut();
        rl.written += n as u64;
        rl.wake_reader();
        buf = if n < back.len() {
            back[n..].to_vec()
        } else {
            Vec::new()
        };
    }
    Ok(())
}

/// An unlinked temporary file (`O_TMPFILE` in the temporary directory).
fn temp_file() -> std::io::Result<OwnedFd> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_TMPFILE)
        .open(std::env::temp_dir())?;
    Ok(f.into())
}

/// A read of the spill file in flight.
type FileRead = Pin<Box<dyn Future<Output = std::io::Result<Vec<u8>>>>>;

/// The client's half.
pub struct RelayStream {
    relay: Shared,
    reading: Option<FileRead>,
    trailers: Option<Vec<u8>>,
}

impl RelayStream {
    pub fn new(relay: Shared) -> RelayStream {
        RelayStream {
            relay,
            reading: None,
            trailers: None,
        }
    }
}

impl BodyStream for RelayStream {
    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        loop {
            if let Some(fut) = &mut self.reading {
                let got = match fut.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(got) => got,
                };
                self.reading = None;
                match got {
                    Ok(buf) if !buf.is_empty() => {
                        self.relay.borrow_mut().read += buf.len() as u64;
                        return Poll::Ready(Some(Bytes::from(buf)));
                    }
                    _ => {
                        self.relay.borrow_mut().cut = true;
                        return Poll::Ready(None);
                    }
                }
            }
            let mut r = self.relay.borrow_mut();
            if let Some(b) = r.mem.pop_front() {
                r.mem_len -= b.len();
                return Poll::Ready(Some(b));
            }
            if r.written > r.read {
                let Some(file) = r.file.clone() else {
                    r.cut = true;
                    return Poll::Ready(None);
                };
                let (offset, len) = (r.read, ((r.written - r.read) as usize).min(FILE_READ));
                drop(r);
                self.reading = Some(Box::pin(async move {
                    crate::io::read(&file, vec![0; len], offset).await
                }));
                continue;
            }
            if r.cut {
                return Poll::Ready(None);
            }
            if r.pending.is_empty() {
                if let Some(t) = r.ended.take() {
                    self.trailers = Some(t);
                    return Poll::Ready(None);
                }
            }
            r.reader = Some(cx.waker().clone());
            return Poll::Pending;
        }
    }

    fn end(&mut self) -> End {
        match self.trailers.take() {
            Some(t) if !self.relay.borrow().cut => End::Whole(t),
            _ => End::Cut,
        }
    }
}

impl Drop for RelayStream {
    fn drop(&mut self) {
        let mut r = self.relay.borrow_mut();
        r.abandoned = true;
        r.mem.clear();
        r.pending.clear();
        if let Some(w) = r.writer.take() {
            w.wake();
        }
    }
}

/// A body already whole when its head arrived, with trailer fields to send after it.
pub struct WholeWithTrailers {
    pub body: Option<Bytes>,
    pub trailers: Vec<u8>,
}

impl BodyStream for WholeWithTrailers {
    fn poll_chunk(&mut self, _cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        Poll::Ready(self.body.take().filter(|b| !b.is_empty()))
    }

    fn end(&mut self) -> End {
        End::Whole(std::mem::take(&mut self.trailers))
    }
}
