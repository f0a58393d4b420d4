//! Byte counting wrappers: a connection that counts what it reads and writes, and a response body
//! that counts the data frames it yields.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use prometheus_client::metrics::counter::Counter;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::http::Body;

/// A connection whose read and written bytes go to two counters.
pub struct CountingIo<T> {
    inner: T,
    received: Counter,
    sent: Counter,
}

impl<T> CountingIo<T> {
    pub fn new(inner: T, (received, sent): (Counter, Counter)) -> Self {
        CountingIo {
            inner,
            received,
            sent,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for CountingIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = buf.filled().len().saturating_sub(before);
        if read > 0 {
            self.received.inc_by(read as u64);
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for CountingIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(written)) = &polled {
            self.sent.inc_by(*written as u64);
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(written)) = &polled {
            self.sent.inc_by(*written as u64);
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A response body that adds the length of each data frame to a counter as it is polled.
pub struct CountingBody {
    inner: Body,
    counter: Counter,
}

impl CountingBody {
    pub fn new(inner: Body, counter: Counter) -> Self {
        CountingBody { inner, counter }
    }
}

impl http_body::Body for CountingBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                self.counter.inc_by(data.len() as u64);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn body_counts_data_bytes() {
        let counter = Counter::default();
        let body = CountingBody::new(crate::http::body::full("hello"), counter.clone());
        let collected = body.collect().await.unwrap().to_bytes();
        assert_eq!(collected.as_ref(), b"hello");
        assert_eq!(counter.get(), 5);
    }

    #[tokio::test]
    async fn io_counts_both_directions() {
        let (client, server) = tokio::io::duplex(64);
        let received = Counter::default();
        let sent = Counter::default();
        let mut counted = CountingIo::new(server, (received.clone(), sent.clone()));
        let mut client = client;
        client.write_all(b"request").await.unwrap();
        let mut buf = [0u8; 7];
        counted.read_exact(&mut buf).await.unwrap();
        counted.write_all(b"response!").await.unwrap();
        assert_eq!(received.get(), 7);
        assert_eq!(sent.get(), 9);
    }
}
