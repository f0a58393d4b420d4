//! The media API under `/api`: Bearer authentication, the API version header and the routes.

mod ipfs;
mod media;
pub mod openapi;
mod upload;

use hyper::body::Incoming;
use hyper::header::AUTHORIZATION;
use hyper::{Method, Request, Response};
use serde::Serialize;

use crate::http::{ApiError, AppState, Body};
use crate::store::MediaRecord;

/// The only API version; clients may send it in `x-api-version` or leave the header out.
pub const API_VERSION: &str = "v1";

/// Authenticates the request, checks the API version and dispatches to the route.
pub async fn handle(
    state: &AppState,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    authenticate(state, &request).await?;
    if let Some(version) = request.headers().get("x-api-version") {
        let version = String::from_utf8_lossy(version.as_bytes());
        if version != API_VERSION {
            return Err(ApiError::bad_request(
                "unsupported_api_version",
                format!("x-api-version {version:?} is not supported; send {API_VERSION:?} or leave the header out"),
            ));
        }
    }

    let path = request.uri().path().to_owned();
    let segments: Vec<&str> = path
        .trim_start_matches("/api")
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let method = request.method().clone();
    match segments.as_slice() {
        ["media"] => match method {
            Method::GET => media::list(state, &request).await,
            Method::POST => upload::single(state, request).await,
            other => Err(ApiError::method_not_allowed(&other, "GET, POST")),
        },
        ["media", "batch"] => match method {
            Method::POST => upload::batch(state, request).await,
            other => Err(ApiError::method_not_allowed(&other, "POST")),
        },
        ["media", id] => match method {
            Method::GET => media::details(state, id).await,
            Method::DELETE => media::delete(state, id).await,
            other => Err(ApiError::method_not_allowed(&other, "GET, DELETE")),
        },
        ["ipfs"] => match method {
            Method::GET => ipfs::status(state).await,
            other => Err(ApiError::method_not_allowed(&other, "GET")),
        },
        ["ipfs", "verify"] => match method {
            Method::POST => ipfs::verify(state, &request).await,
            other => Err(ApiError::method_not_allowed(&other, "POST")),
        },
        _ => Err(ApiError::not_found(
            "route_not_found",
            format!("no API route {path}; see the README for the routes"),
        )),
    }
}

async fn authenticate(state: &AppState, request: &Request<Incoming>) -> Result<String, ApiError> {
    let Some(header) = request.headers().get(AUTHORIZATION) else {
        return Err(ApiError::unauthorized(
            "missing Authorization header; send `Authorization: Bearer KEY` with a key from `kura key create`",
        ));
    };
    let header = header.to_str().unwrap_or("").trim_start();
    // The scheme name is case-insensitive (RFC 9110, section 11.1).
    let key = header
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, key)| key.trim())
        .filter(|key| !key.is_empty());
    let Some(key) = key else {
        return Err(ApiError::unauthorized(
            "the Authorization header must be `Bearer KEY`",
        ));
    };
    match state.store.authenticate(key).await? {
        Some(name) => Ok(name),
        None => Err(ApiError::unauthorized(
            "invalid API key; create one with `kura key create --name NAME`",
        )),
    }
}

/// A media record as the API shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MediaItem<'a> {
    pub id: &'a str,
    pub url: String,
    pub file_name: &'a str,
    pub mime_type: &'static str,
    pub size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frames: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alt: Option<&'a str>,
    pub hash: &'a str,
    /// CIDv1 in base32; `null` only for a blob stored before kura computed CIDs, until the
    /// start-up pass has computed it.
    pub cid: Option<&'a str>,
    pub uploaded_at: &'a str,
    /// Replication state; absent while replication is off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipfs: Option<IpfsItem<'a>>,
}

/// Replication state of a record's blob as the API shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IpfsItem<'a> {
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pinned_at: Option<&'a str>,
    /// Last failure, kept while the job is retried or after it failed for good.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'a str>,
}

impl<'a> MediaItem<'a> {
    pub fn new(record: &'a MediaRecord, public_url: &str) -> Self {
        MediaItem {
            id: &record.id,
            url: crate::delivery::public_url(public_url, &record.file_name),
            file_name: &record.file_name,
            mime_type: record.media_type.mime(),
            size: record.size,
            width: record.width,
            height: record.height,
            frames: record.frames,
            duration: record.duration_secs,
            alt: record.alt.as_deref(),
            hash: &record.hash,
            cid: Some(record.cid.as_str()).filter(|cid| !cid.is_empty()),
            uploaded_at: &record.uploaded_at,
            ipfs: record.ipfs.as_ref().map(|status| IpfsItem {
                status: status.state.as_str(),
                pinned_at: status.pinned_at.as_deref(),
                error: status.error.as_deref(),
            }),
        }
    }
}
