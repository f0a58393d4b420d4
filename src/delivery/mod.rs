//! Public delivery: resolves `/{file-name}` (or `/ipfs/{cid}`) to a stored blob and streams it,
//! no key needed.

use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_DISPOSITION};
use hyper::{Method, Request, Response};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::http::file::{self, Representation, ServeError};
use crate::http::{query_param, ApiError, AppState, Body};

/// Characters left as they are in a URL path segment: RFC 3986 unreserved characters.
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Builds the public URL of a stored file name.
pub fn public_url(base: &str, file_name: &str) -> String {
    format!("{base}/{}", utf8_percent_encode(file_name, PATH_SEGMENT))
}

pub async fn handle(
    state: &AppState,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let method = request.method().clone();
    if method != Method::GET && method != Method::HEAD {
        return Err(ApiError::method_not_allowed(&method, "GET, HEAD"));
    }
    let raw_path = request.uri().path();
    if let Some(cid) = raw_path.strip_prefix("/ipfs/") {
        let cid = cid.to_owned();
        return crate::ipfs::gateway::handle(state, &method, &request, &cid).await;
    }
    let name = percent_decode_str(raw_path.trim_start_matches('/'))
        .decode_utf8()
        .map_err(|_| not_found(raw_path))?
        .into_owned();
    if name.is_empty() || name.contains('/') {
        return Err(not_found(&name));
    }
    let query = request.uri().query().unwrap_or("");
    if let Some(chain) = query_param(query, "tr") {
        return Err(ApiError::bad_request(
            "unsupported_transformation",
            format!(
                "transformation {chain:?} is not available: this server only delivers originals"
            ),
        )
        .with_ik_error("EINVALIDTR"));
    }

    let record = state
        .store
        .get_by_name(&name)
        .await?
        .ok_or_else(|| not_found(&name))?;
    let attachment = query_param(query, "ik-attachment").as_deref() == Some("true");
    let representation = || Representation {
        path: state.store.blob_path(&record.hash),
        content_type: record.media_type.mime(),
        etag: format!("\"{}\"", record.hash),
        last_modified: parse_rfc3339(&record.uploaded_at),
        extra_headers: vec![content_disposition(&record.file_name, attachment)],
    };
    send_blob(
        state,
        &method,
        request.headers(),
        &record.hash,
        &name,
        representation,
    )
    .await
}

/// Sends the file of blob `hash` as `representation()` describes it. A missing file is
/// restored from the IPFS node first when replication is on; `label` names the request's
/// target in the error otherwise.
pub async fn send_blob(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
    hash: &str,
    label: &str,
    representation: impl Fn() -> Representation,
) -> Result<Response<Body>, ApiError> {
    let mut restored = false;
    loop {
        match file::serve(method, headers, representation()).await {
            Ok(response) => return Ok(response),
            Err(ServeError::Precondition(err)) => return Err(err),
            Err(ServeError::Missing(path)) => {
                if !restored && crate::ipfs::restore::read_through(state, hash).await {
                    restored = true;
                    continue;
                }
                tracing::error!(hash = %hash, target = %label, path = %path.display(),
                    "blob file missing for an indexed media record");
                return Err(ApiError::service_unavailable(
                    "blob_unavailable",
                    format!("the stored bytes of {label:?} are missing on this server and could not be restored from IPFS; the operator must restore them (`kura verify --repair`)"),
                    60,
                )
                .with_ik_error("ENOENT"));
            }
            Err(err @ ServeError::Io { .. }) => return Err(ApiError::internal(err.to_string())),
        }
    }
}

fn not_found(name: &str) -> ApiError {
    ApiError::not_found("not_found", format!("no file named {name:?}")).with_ik_error("ENOENT")
}

/// `inline` (or `attachment`) with an ASCII fallback name and the exact UTF-8 name (RFC 6266).
pub fn content_disposition(file_name: &str, attachment: bool) -> (HeaderName, HeaderValue) {
    let kind = if attachment { "attachment" } else { "inline" };
    let fallback: String = file_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded = utf8_percent_encode(file_name, PATH_SEGMENT);
    let value = format!("{kind}; filename=\"{fallback}\"; filename*=UTF-8''{encoded}");
    (
        CONTENT_DISPOSITION,
        HeaderValue::from_str(&value).expect("the value is built from visible ASCII"),
    )
}

fn parse_rfc3339(text: &str) -> Option<std::time::SystemTime> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(std::time::SystemTime::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_url_encodes_unicode_and_spaces() {
        assert_eq!(public_url("http://h", "a b.png"), "http://h/a%20b.png");
        assert_eq!(
            public_url("http://h", "йцук.jpg"),
            "http://h/%D0%B9%D1%86%D1%83%D0%BA.jpg"
        );
        assert_eq!(public_url("http://h", "a-b_c.d~"), "http://h/a-b_c.d~");
    }

    #[test]
    fn disposition_has_ascii_fallback() {
        let (_, value) = content_disposition("йцук.jpg", false);
        assert_eq!(
            value.to_str().unwrap(),
            "inline; filename=\"____.jpg\"; filename*=UTF-8''%D0%B9%D1%86%D1%83%D0%BA.jpg"
        );
    }
}
