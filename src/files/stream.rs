//! A file's bytes as a response body: read through the shard's ring a chunk at a time, each
//! chunk read only when the connection's output has room for it (`BodyStream` is polled by the
//! core under its high-water mark), so a large or cold file holds one chunk of memory and never
//! blocks the shard.
use std::future::Future;
use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use bytes::Bytes;

use crate::http::response::BodyStream;

/// The most read at once.
const CHUNK: u64 = 64 * 1024;

type ReadFuture = Pin<Box<dyn Future<Output = std::io::Result<Vec<u8>>>>>;

/// Bytes `offset..offset + left` of a file. A read error or an early end (the file shrank) ends
/// the stream short, and the core then ends the connection, so the client sees it incomplete.
pub struct FileStream {
    fd: Rc<OwnedFd>,
    offset: u64,
    left: u64,
    reading: Option<ReadFuture>,
}

impl FileStream {
    pub fn new(fd: Rc<OwnedFd>, offset: u64, len: u64) -> FileStream {
        FileStream {
            fd,
            offset,
            left: len,
            reading: None,
        }
    }
}

impl BodyStream for FileStream {
    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let reading = self.reading.get_or_insert_with(|| {
            let (fd, offset) = (self.fd.clone(), self.offset);
            let buf = vec![0; self.left.min(CHUNK) as usize];
            Box::pin(async move { crate::io::read(&fd, buf, offset).await })
        });
        let Poll::Ready(read) = reading.as_mut().poll(cx) else {
            return Poll::Pending;
        };
        self.reading = None;
        match read {
            Ok(buf) if !buf.is_empty() => {
                self.offset += buf.len() as u64;
                self.left = self.left.saturating_sub(buf.len() as u64);
                Poll::Ready(Some(Bytes::from(buf)))
            }
            _ => {
                self.left = 0;
                Poll::Ready(None)
            }
        }
    }
}
