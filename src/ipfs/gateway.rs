//! `GET /ipfs/{cid}`: serves the blob kura stores under a CID, like a read-only IPFS gateway
//! restricted to this server's own files. Any multibase spelling of the CIDv1, and the CIDv0 of a
//! dag-pb root, name the same blob. Images take the same transformations as name URLs, in the
//! query (`/ipfs/{cid}?tr=w-500`) or the path (`/tr:w-500/ipfs/{cid}`).

use hyper::body::Incoming;
use hyper::{Method, Request, Response};

use super::CidLookupError;
use crate::delivery::{
    content_disposition, send_blob, send_record, send_variant, transformation, Source,
};
use crate::http::file::Representation;
use crate::http::{query_param, ApiError, AppState, Body};

pub async fn handle(
    state: &AppState,
    method: &Method,
    request: &Request<Incoming>,
    cid_text: &str,
    path_chain: Option<&str>,
) -> Result<Response<Body>, ApiError> {
    let query = request.uri().query().unwrap_or("");
    let (chain, plan) = transformation(state, request, path_chain)?;
    let (hash, blob) = match super::find_by_cid(&state.store, cid_text).await {
        Ok(found) => found,
        Err(CidLookupError::Store(err)) => return Err(err.into()),
        Err(err) => {
            // `di-` names a stored file to serve, with the same transformation, when the CID is
            // unknown.
            let fallback = plan.as_ref().and_then(|plan| plan.default_image());
            let record = match fallback {
                Some(name) => state.store.get_by_name(name).await?,
                None => None,
            };
            let Some(record) = record else {
                return Err(
                    ApiError::not_found("not_found", err.to_string()).with_ik_error("ENOENT")
                );
            };
            let label = record.file_name.clone();
            return send_record(
                state,
                method,
                request,
                &record,
                &label,
                chain.as_deref(),
                plan,
            )
            .await;
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
    let disposition = content_disposition(&file_name, attachment);
    let label = format!("/ipfs/{cid_text}");
    if let Some(plan) = plan.filter(|plan| !plan.is_original()) {
        let source = Source {
            hash: &hash,
            media_type,
            label: &label,
            last_modified: None,
        };
        return send_variant(
            state,
            method,
            request,
            source,
            chain.as_deref(),
            plan,
            disposition,
        )
        .await;
    }
    let representation = Representation {
        path: state.store.blob_path(&hash),
        content_type: media_type.mime().to_owned(),
        etag: format!("\"{hash}\""),
        // A blob has no single upload time, so conditional requests use the ETag alone.
        last_modified: None,
        extra_headers: vec![disposition],
    };
    send_blob(
        state,
        method,
        request.headers(),
        Some(&hash),
        &label,
        representation,
    )
    .await
}
