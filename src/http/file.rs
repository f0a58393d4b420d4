//! Sends a stored file with the HTTP semantics a CDN relies on: strong ETag, immutable caching,
//! conditional requests (304, 412), single byte ranges (206, 416) and HEAD.

use std::io::SeekFrom;
use std::path::PathBuf;
use std::time::SystemTime;

use hyper::header::{
    HeaderMap, HeaderName, HeaderValue, ACCEPT_RANGES, CACHE_CONTROL, CONTENT_LENGTH,
    CONTENT_RANGE, CONTENT_TYPE, ETAG, IF_MATCH, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE,
    LAST_MODIFIED, RANGE,
};
use hyper::{Method, Response, StatusCode};
use tokio::io::AsyncSeekExt;

use super::body::{self, Body};
use super::error::ApiError;
use super::range::{self, RangeRequest};

/// Content never changes under a given URL, so caches may keep it for a year without revalidating.
pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// A file on disk and the headers that describe it.
#[derive(Clone)]
pub struct Representation {
    pub path: PathBuf,
    pub content_type: String,
    /// Quoted strong entity tag.
    pub etag: String,
    pub last_modified: Option<SystemTime>,
    pub extra_headers: Vec<(HeaderName, HeaderValue)>,
}

/// Failure to send a stored file.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("file {} is missing", .0.display())]
    Missing(PathBuf),
    #[error("failed to read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A validator or the range rules out a response with the file: 412 or 416.
    #[error("{}", .0.message())]
    Precondition(ApiError),
}

/// Serves a GET or HEAD for `representation`, honouring the request's validators and range.
pub async fn serve(
    method: &Method,
    request: &HeaderMap,
    representation: Representation,
) -> Result<Response<Body>, ServeError> {
    let path = representation.path.clone();
    let io_err = |source: std::io::Error| {
        if source.kind() == std::io::ErrorKind::NotFound {
            ServeError::Missing(path.clone())
        } else {
            ServeError::Io {
                path: path.clone(),
                source,
            }
        }
    };
    let mut file = tokio::fs::File::open(&representation.path)
        .await
        .map_err(io_err)?;
    let len = file.metadata().await.map_err(io_err)?.len();

    let etag = representation.etag.as_str();
    let last_modified = representation.last_modified.map(httpdate::fmt_http_date);
    let header = |name: &HeaderName| request.get(name).and_then(|v| v.to_str().ok());

    let mut builder = Response::builder()
        .header(CONTENT_TYPE, representation.content_type.as_str())
        .header(ETAG, etag)
        .header(CACHE_CONTROL, IMMUTABLE)
        .header(ACCEPT_RANGES, "bytes")
        .header("x-content-type-options", "nosniff");
    if let Some(date) = &last_modified {
        builder = builder.header(LAST_MODIFIED, date);
    }
    for (name, value) in &representation.extra_headers {
        builder = builder.header(name, value);
    }

    if let Some(value) = header(&IF_MATCH) {
        if !range::if_match_passes(value, etag) {
            return Err(ServeError::Precondition(ApiError::precondition_failed(
                format!("If-Match {value} does not match the current entity tag {etag}"),
            )));
        }
    }
    let not_modified = match header(&IF_NONE_MATCH) {
        Some(value) => range::none_match_hits(value, etag),
        None => match (header(&IF_MODIFIED_SINCE), representation.last_modified) {
            (Some(value), Some(modified)) => range::not_modified_since(value, modified),
            _ => false,
        },
    };
    if not_modified {
        return Ok(builder
            .status(StatusCode::NOT_MODIFIED)
            .body(body::empty())
            .expect("static headers are valid"));
    }

    let wanted = match header(&RANGE) {
        Some(value) => {
            let range_allowed = match header(&IF_RANGE) {
                Some(validator) => {
                    range::if_range_passes(validator, etag, last_modified.as_deref())
                }
                None => true,
            };
            if range_allowed {
                range::parse_range(value, len)
            } else {
                RangeRequest::Full
            }
        }
        None => RangeRequest::Full,
    };

    let head = method == Method::HEAD;
    let response = match wanted {
        RangeRequest::Full => {
            let body = if head {
                body::empty()
            } else {
                body::file(file, len)
            };
            builder
                .status(StatusCode::OK)
                .header(CONTENT_LENGTH, len)
                .body(body)
        }
        RangeRequest::Partial { start, end } => {
            let count = end - start + 1;
            let body = if head {
                body::empty()
            } else {
                file.seek(SeekFrom::Start(start)).await.map_err(io_err)?;
                body::file(file, count)
            };
            builder
                .status(StatusCode::PARTIAL_CONTENT)
                .header(CONTENT_LENGTH, count)
                .header(CONTENT_RANGE, format!("bytes {start}-{end}/{len}"))
                .body(body)
        }
        // A JSON error, so that nothing caches it as the file or reads it as the file's type.
        RangeRequest::Unsatisfiable => {
            let range = header(&RANGE).unwrap_or("");
            return Err(ServeError::Precondition(ApiError::range_not_satisfiable(
                range, len,
            )));
        }
    };
    Ok(response.expect("response headers are valid"))
}
