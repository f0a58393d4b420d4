//! Response bodies: small in-memory bodies and files streamed from disk in fixed-size chunks.

use bytes::Bytes;
use futures_util::TryStreamExt;
use http_body_util::{combinators::BoxBody, BodyExt, Empty, Full, StreamBody};
use hyper::body::Frame;
use tokio::io::AsyncReadExt;
use tokio_util::io::ReaderStream;

/// The body type of every response kura sends.
pub type Body = BoxBody<Bytes, std::io::Error>;

/// Chunk size for streaming files: large enough for few syscalls, small enough to keep memory flat.
const FILE_CHUNK_BYTES: usize = 64 * 1024;

pub fn empty() -> Body {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed()
}

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// Streams `len` bytes of an already positioned file.
pub fn file(file: tokio::fs::File, len: u64) -> Body {
    let reader = file.take(len);
    let stream = ReaderStream::with_capacity(reader, FILE_CHUNK_BYTES).map_ok(Frame::data);
    BodyExt::boxed(StreamBody::new(stream))
}
