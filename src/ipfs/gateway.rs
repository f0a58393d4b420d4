//! `GET /ipfs/{cid}`: serves the blob kura stores under a CID, like a read-only IPFS gateway
//! restricted to this server's own files. Any multibase spelling of the CIDv1, and the CIDv0 of a
//! dag-pb root, name the same blob.

use hyper::body::Incoming;
use hyper::{Method, Request, Response};

use super::CidLookupError;
use crate::delivery::{content_disposition, send_blob};
use crate::http::file::Representation;
use crate::http::{query_param, ApiError, AppState, Body};

pub async fn handle(
    state: &AppState,
    method: &Method,
    request: &Request<Incoming>,
    cid_text: &str,
) -> Result<Response<Body>, ApiError> {
    let query = request.uri().query().unwrap_or("");
    if let Some(chain) = query_param(query, "tr") {
        return Err(ApiError::bad_request(
            "unsupported_transformation",
            format!(
                "transformation {chain:?} is not available on /ipfs/ URLs, which serve originals only; use the file's name URL to transform it"
            ),
        )
        .with_ik_error("EINVALIDTR"));
    }
    let (hash, blob) = match super::find_by_cid(&state.store, cid_text).await {
        Ok(found) => found,
        Err(CidLookupError::Store(err)) => return Err(err.into()),
        Err(err) => {
            return Err(ApiError::not_found("not_found", err.to_string()).with_ik_error("ENOENT"))
        }
    };
    // Only media blobs are indexed by CID, so every blob found here has a media type.
    let Some(media_type) = blob.media_type else {
        let message = format!("no stored file has CID {cid_text}");
        return Err(ApiError::not_found("not_found", message).with_ik_error("ENOENT"));
    };
    let attachment = query_param(query, "ik-attachment").as_deref() == Some("true");
    // Several records with different names may share the blob, so the CID names the download.
    let file_name = format!("{}.{}", blob.cid, media_type.extension());
    let representation = Representation {
        path: state.store.blob_path(&hash),
        content_type: media_type.mime().to_owned(),
        etag: format!("\"{hash}\""),
        // A blob has no single upload time, so conditional requests use the ETag alone.
        last_modified: None,
        extra_headers: vec![content_disposition(&file_name, attachment)],
    };
    send_blob(
        state,
        method,
        request.headers(),
        Some(&hash),
        &format!("/ipfs/{cid_text}"),
        representation,
    )
    .await
}
