//! Public delivery: resolves `/{file-name}` (or `/ipfs/{cid}`) to a stored blob and streams it,
//! no key needed.

use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_DISPOSITION};
use hyper::{Method, Request, Response};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::http::file::{self, Representation, ServeError};
use crate::http::{query_param, raw_query_param, ApiError, AppState, Body};
use crate::store::{MediaRecord, MediaType};
use crate::transform::signing::{self, Signature};
use crate::transform::{ClientHints, Plan, TransformError, TransformFailure};

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
    let raw_path = request.uri().path().trim_start_matches('/');
    // Path form `/tr:CHAIN/NAME`: the chain is one whole segment right before the name.
    let (path_chain, raw_name) = match raw_path.strip_prefix("tr:") {
        Some(rest) => match rest.split_once('/') {
            Some((chain, name)) => (Some(chain), name),
            None => return Err(not_found(raw_path)),
        },
        None => (None, raw_path),
    };
    // `/ipfs/{cid}` names a blob by its content; every other path names a file.
    if let Some(cid) = raw_name.strip_prefix("ipfs/") {
        let (cid, path_chain) = (cid.to_owned(), path_chain.map(str::to_owned));
        let path_chain = path_chain.as_deref();
        return crate::ipfs::gateway::handle(state, &method, &request, &cid, path_chain).await;
    }
    let name = percent_decode_str(raw_name)
        .decode_utf8()
        .map_err(|_| not_found(raw_name))?
        .into_owned();
    if name.is_empty() || name.contains('/') {
        return Err(not_found(&name));
    }
    let (chain, plan) = transformation(state, &request, path_chain)?;

    let record = match state.store.get_by_name(&name).await? {
        Some(record) => record,
        None => {
            // `di-` names a stored file to serve, with the same transformation, when the
            // requested one is missing.
            let fallback = plan
                .as_ref()
                .and_then(|plan| plan.default_image().map(str::to_owned));
            match fallback {
                Some(default) => state
                    .store
                    .get_by_name(&default)
                    .await?
                    .ok_or_else(|| not_found(&name))?,
                None => return Err(not_found(&name)),
            }
        }
    };
    send_record(
        state,
        &method,
        &request,
        &record,
        &name,
        chain.as_deref(),
        plan,
    )
    .await
}

/// Sends the stored file of `record`: the original bytes, or the variant for `plan` when the URL
/// requests a transformation. `label` names the request's target in errors.
pub async fn send_record(
    state: &AppState,
    method: &Method,
    request: &Request<Incoming>,
    record: &MediaRecord,
    label: &str,
    chain: Option<&str>,
    plan: Option<Plan>,
) -> Result<Response<Body>, ApiError> {
    let query = request.uri().query().unwrap_or("");
    let attachment = query_param(query, "ik-attachment").as_deref() == Some("true");
    let disposition = content_disposition(&record.file_name, attachment);

    let Some(plan) = plan.filter(|plan| !plan.is_original()) else {
        let representation = Representation {
            path: state.store.blob_path(&record.hash),
            content_type: record.media_type.mime().to_owned(),
            etag: format!("\"{}\"", record.hash),
            last_modified: parse_rfc3339(&record.uploaded_at),
            extra_headers: vec![disposition],
        };
        let headers = request.headers();
        return send_blob(
            state,
            method,
            headers,
            Some(&record.hash),
            label,
            representation,
        )
        .await;
    };

    let source = Source {
        hash: &record.hash,
        media_type: record.media_type,
        label,
        last_modified: parse_rfc3339(&record.uploaded_at),
    };
    send_variant(state, method, request, source, chain, plan, disposition).await
}

/// Reads the transformation of a delivery request: the path chain (`/tr:…/`) followed by the
/// query's `tr`, checked against the URL signature. Returns the chain and its parsed plan, or
/// `None` twice when the URL requests no transformation.
pub fn transformation(
    state: &AppState,
    request: &Request<Incoming>,
    path_chain: Option<&str>,
) -> Result<(Option<String>, Option<Plan>), ApiError> {
    let query = request.uri().query().unwrap_or("");
    let mut query_chains = query.split('&').filter_map(|pair| pair.strip_prefix("tr="));
    if let (Some(first), Some(second)) = (query_chains.next(), query_chains.next()) {
        let message = format!(
            "the query has more than one `tr` ({first:?} and {second:?}); chain the steps with `:` in one `tr`"
        );
        return Err(
            ApiError::bad_request("invalid_transformation", message).with_ik_error("EINVALIDTR")
        );
    }
    // Both forms in one URL: the path chain runs first, then the query chain.
    let chain = match (path_chain, raw_query_param(query, "tr")) {
        (Some(path), Some(query)) => Some(format!("{path}:{query}")),
        (Some(path), None) => Some(path.to_owned()),
        (None, Some(query)) => Some(query.to_owned()),
        (None, None) => None,
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let transform = &state.config.transform;
    let signature = signing::verify(
        transform.signing_key.as_deref(),
        request.uri().path(),
        query,
        now,
    )
    .map_err(|err| ApiError::invalid_signature(err.to_string()))?;
    if chain.is_some() && transform.require_signed && signature == Signature::Absent {
        return Err(ApiError::invalid_signature(
            "this server only serves signed transformation URLs; add ik-s (and ik-t) signed with the private key",
        ));
    }
    let plan = match &chain {
        Some(chain) => Some(
            crate::transform::parse_chain(chain, state.transformer.named())
                .map_err(|err| ApiError::from(TransformFailure::from(err)))?,
        ),
        None => None,
    };
    Ok((chain, plan))
}

/// The stored original that a variant is computed from.
pub struct Source<'a> {
    /// Hex BLAKE3 hash of the original, which names its blob.
    pub hash: &'a str,
    pub media_type: MediaType,
    /// The request's target as error messages and logs name it.
    pub label: &'a str,
    pub last_modified: Option<std::time::SystemTime>,
}

/// Sends the variant of `source` for `plan`, from the cache or computed now. `chain` is the
/// transformation text for error messages and `disposition` the `Content-Disposition` header.
pub async fn send_variant(
    state: &AppState,
    method: &Method,
    request: &Request<Incoming>,
    source: Source<'_>,
    chain: Option<&str>,
    mut plan: Plan,
    disposition: (HeaderName, HeaderValue),
) -> Result<Response<Body>, ApiError> {
    if !source.media_type.is_image() {
        return Err(ApiError::from(TransformFailure::from(
            TransformError::unsupported(
                chain.unwrap_or(""),
                format!(
                    "{:?} is a video; only images can be transformed",
                    source.label
                ),
            ),
        )));
    }
    let mut extra_headers = vec![disposition];
    if plan.uses_client_hints() {
        let header = |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok());
        let hints = ClientHints {
            width: header("sec-ch-width").and_then(|v| v.trim().parse().ok()),
            dpr: header("sec-ch-dpr").and_then(|v| v.trim().parse().ok()),
        };
        if let Some(content_dpr) = plan.apply_client_hints(&hints) {
            if let Ok(value) = HeaderValue::from_str(&format!("{content_dpr}")) {
                extra_headers.push((HeaderName::from_static("content-dpr"), value));
            }
        }
    }
    let accept = request
        .headers()
        .get(hyper::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let accepts = state.transformer.accepts(accept);
    let variant = match state.transformer.variant(source.hash, &plan, accepts).await {
        // A source whose file went missing is restored from IPFS, then the variant computed.
        Err(TransformFailure::SourceMissing(path)) => {
            if !crate::ipfs::restore::read_through(state, source.hash).await {
                return Err(blob_unavailable(source.label, &path));
            }
            state
                .transformer
                .variant(source.hash, &plan, accepts)
                .await?
        }
        result => result?,
    };
    if state.transformer.negotiates(&plan) {
        extra_headers.push((hyper::header::VARY, HeaderValue::from_static("Accept")));
    }
    let cache = if variant.cache_hit { "hit" } else { "miss" };
    extra_headers.push((
        HeaderName::from_static("x-cache"),
        HeaderValue::from_static(cache),
    ));
    let representation = Representation {
        path: state.store.blob_path(&variant.record.hash),
        content_type: variant.record.mime.clone(),
        etag: format!("\"{}\"", variant.record.hash),
        last_modified: source.last_modified,
        extra_headers,
    };
    // Variants are never pinned, so a missing variant file cannot come back from IPFS. The cache
    // lookup above recomputes a variant whose file is gone.
    send_blob(
        state,
        method,
        request.headers(),
        None,
        source.label,
        representation,
    )
    .await
}

/// Sends a stored file. When the file is missing and `restorable_hash` names its blob, the blob
/// is restored from the IPFS node first, while replication is on. `label` names the request's
/// target in the error when the file stays missing.
pub async fn send_blob(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
    restorable_hash: Option<&str>,
    label: &str,
    representation: Representation,
) -> Result<Response<Body>, ApiError> {
    let mut restore = restorable_hash;
    loop {
        match file::serve(method, headers, representation.clone()).await {
            Ok(response) => return Ok(response),
            Err(ServeError::Precondition(err)) => return Err(err),
            Err(ServeError::Missing(path)) => {
                if let Some(hash) = restore.take() {
                    if crate::ipfs::restore::read_through(state, hash).await {
                        continue;
                    }
                }
                return Err(blob_unavailable(label, &path));
            }
            Err(err @ ServeError::Io { .. }) => return Err(ApiError::internal(err.to_string())),
        }
    }
}

/// Logs and returns the error for a blob whose file is missing and could not be restored.
fn blob_unavailable(label: &str, path: &std::path::Path) -> ApiError {
    tracing::error!(target = %label, path = %path.display(),
        "blob file missing for an indexed media record");
    ApiError::service_unavailable(
        "blob_unavailable",
        format!("the stored bytes of {label:?} are missing on this server and could not be restored from IPFS; the operator must restore them (`kura verify --repair`)"),
        60,
    )
    .with_ik_error("ENOENT")
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
