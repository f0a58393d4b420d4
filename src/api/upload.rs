//! Streaming multipart uploads: `POST /api/media` (one `file`) and `POST /api/media/batch`
//! (repeated `files`). File bytes go from the socket to a temp file chunk by chunk; no upload is
//! ever held whole in memory.

use futures_util::TryStreamExt;
use http_body_util::BodyStream;
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Request, Response};
use multer::{Constraints, Field, Multipart, SizeLimit};
use serde_json::json;

use super::MediaItem;
use crate::http::error::{json_response, JsonStatus};
use crate::http::{ApiError, AppState, Body};
use crate::ops::disk::{self, SpaceCheckError};
use crate::store::{StagedBlob, UploadError};

/// Room for multipart headers, boundaries and the text fields around the file bytes.
const MULTIPART_OVERHEAD: u64 = 1 << 20;
/// Longest accepted text field (`alt`, `fileName`), in bytes.
const MAX_TEXT_FIELD: usize = 4096;

/// `POST /api/media`: one file, with optional `alt` text and `fileName`.
pub async fn single(
    state: &AppState,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let result = store_single(state, request).await;
    if let Err(err) = &result {
        count_rejection(state, err);
    }
    result
}

async fn store_single(
    state: &AppState,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    ensure_disk_space(state)?;
    let limit = state.config.storage.max_upload_bytes;
    let mut multipart = open_multipart(request, limit.saturating_add(MULTIPART_OVERHEAD))?;

    let mut file: Option<(String, StagedBlob)> = None;
    let mut alt = None;
    let mut file_name = None;
    while let Some(field) = multipart.next_field().await.map_err(multipart_error)? {
        match field.name().unwrap_or("") {
            "file" => {
                if file.is_some() {
                    return Err(ApiError::bad_request(
                        "too_many_files",
                        "send exactly one `file` field; use POST /api/media/batch for several files",
                    ));
                }
                let name = field.file_name().unwrap_or("").to_owned();
                let staged = stream_file(state, field, &name, false).await?;
                file = Some((name, staged));
            }
            "alt" => alt = Some(read_text(field, "alt").await?),
            "fileName" => file_name = Some(read_text(field, "fileName").await?),
            other => return Err(unknown_field(other, "file, alt, fileName")),
        }
    }
    let Some((part_name, staged)) = file else {
        return Err(ApiError::bad_request(
            "missing_file",
            "the multipart body has no `file` field; send the file as form field `file`",
        ));
    };
    let name = file_name.unwrap_or(part_name);
    let record = state.store.commit_upload(staged, &name, alt).await?;
    state.metrics.record_upload(record.size);
    tracing::info!(media_id = %record.id, hash = %record.hash, size = record.size,
        mime = record.media_type.mime(), "media uploaded");
    let item = MediaItem::new(&record, &state.config.server.public_url);
    Ok(json_response(
        JsonStatus::Created,
        &json!({ "success": true, "data": item }),
    ))
}

/// `POST /api/media/batch`: up to `storage.max_batch_files` files in fields named `files`.
/// Files are staged first, so a request over the file limit stores nothing. Each file is then
/// validated and stored on its own, and the response lists what succeeded and what failed.
pub async fn batch(
    state: &AppState,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let result = store_batch(state, request).await;
    if let Err(err) = &result {
        count_rejection(state, err);
    }
    result
}

async fn store_batch(
    state: &AppState,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    ensure_disk_space(state)?;
    let storage = &state.config.storage;
    let max_files = storage.max_batch_files;
    let whole_limit = storage
        .max_upload_bytes
        .saturating_add(MULTIPART_OVERHEAD)
        .saturating_mul(max_files as u64);
    let mut multipart = open_multipart(request, whole_limit)?;

    let mut staged: Vec<(String, Result<StagedBlob, ApiError>)> = Vec::new();
    while let Some(field) = multipart.next_field().await.map_err(multipart_error)? {
        match field.name().unwrap_or("") {
            "files" | "files[]" => {
                if staged.len() == max_files {
                    return Err(ApiError::bad_request(
                        "too_many_files",
                        format!("a batch takes at most {max_files} files (storage.max_batch_files); nothing was stored"),
                    ));
                }
                let name = field.file_name().unwrap_or("").to_owned();
                let result = match stream_file(state, field, &name, true).await {
                    Ok(blob) => Ok(blob),
                    Err(err) if err.code() == "payload_too_large" => Err(err),
                    Err(err) => return Err(err),
                };
                staged.push((name, result));
            }
            other => return Err(unknown_field(other, "files")),
        }
    }
    if staged.is_empty() {
        return Err(ApiError::bad_request(
            "missing_file",
            "the multipart body has no `files` field; send each file as form field `files`",
        ));
    }

    let public_url = &state.config.server.public_url;
    let mut records = Vec::new();
    let mut failures: Vec<(String, ApiError)> = Vec::new();
    for (name, blob) in staged {
        let outcome = match blob {
            Ok(blob) => state
                .store
                .commit_upload(blob, &name, None)
                .await
                .map_err(ApiError::from),
            Err(err) => Err(err),
        };
        match outcome {
            Ok(record) => {
                state.metrics.record_upload(record.size);
                tracing::info!(media_id = %record.id, hash = %record.hash, size = record.size,
                    mime = record.media_type.mime(), "media uploaded in batch");
                records.push(record);
            }
            Err(err) if err.status().is_server_error() => return Err(err),
            Err(err) => {
                count_rejection(state, &err);
                failures.push((name, err));
            }
        }
    }

    let items: Vec<MediaItem> = records
        .iter()
        .map(|r| MediaItem::new(r, public_url))
        .collect();
    let failed: Vec<serde_json::Value> = failures
        .iter()
        .map(|(name, err)| json!({ "fileName": name, "error": err.to_json() }))
        .collect();
    let data = json!({ "uploaded": items.len(), "items": items, "failed": failed });
    if items.is_empty() {
        let count = failures.len();
        let (_, first) = failures
            .into_iter()
            .next()
            .expect("an empty batch was rejected above");
        return Ok(first.into_response_with_data(
            &format!("all {count} files were rejected; see data.failed for each reason"),
            data,
        ));
    }
    let status = if failed.is_empty() {
        JsonStatus::Created
    } else {
        JsonStatus::MultiStatus
    };
    Ok(json_response(
        status,
        &json!({ "success": true, "data": data }),
    ))
}

/// Rejects an upload before its body is read when the data directory's filesystem has less than
/// `storage.min_free_bytes` free, so a nearly full disk never receives a partial temp file.
fn ensure_disk_space(state: &AppState) -> Result<(), ApiError> {
    let required = state.config.storage.min_free_bytes;
    match disk::ensure_free(state.store.data_dir(), required) {
        Ok(()) => Ok(()),
        Err(SpaceCheckError::Low(low)) => Err(ApiError::insufficient_storage(format!(
            "the server is low on disk space and stores no uploads now: {low}; nothing was stored"
        ))),
        Err(err @ SpaceCheckError::Io { .. }) => Err(ApiError::internal(err.to_string())),
    }
}

/// Counts a refused upload in the metrics; server faults are not refusals and are left out.
fn count_rejection(state: &AppState, err: &ApiError) {
    if err.status().is_client_error() || err.code() == "insufficient_storage" {
        state.metrics.record_upload_rejection(err.code());
    }
}

fn open_multipart(
    request: Request<Incoming>,
    body_limit: u64,
) -> Result<Multipart<'static>, ApiError> {
    let content_type = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let boundary = multer::parse_boundary(content_type).map_err(|_| {
        ApiError::unsupported_content_type(format!(
            "Content-Type {content_type:?} is not multipart/form-data with a boundary; upload files as a multipart form"
        ))
    })?;
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(length) = declared {
        if length > body_limit {
            return Err(ApiError::payload_too_large(format!(
                "the request body of {length} bytes is larger than the limit of {body_limit} bytes"
            )));
        }
    }
    let stream = BodyStream::new(request.into_body())
        .try_filter_map(|frame| async move { Ok(frame.into_data().ok()) });
    let constraints = Constraints::new().size_limit(SizeLimit::new().whole_stream(body_limit));
    Ok(Multipart::with_constraints(stream, boundary, constraints))
}

/// Streams one file field into a temp file. Over the size limit it fails with 413; with `drain`
/// set the rest of the field is read and discarded so the next field can still be parsed.
async fn stream_file(
    state: &AppState,
    mut field: Field<'static>,
    file_name: &str,
    drain: bool,
) -> Result<StagedBlob, ApiError> {
    let limit = state.config.storage.max_upload_bytes;
    let mut writer = state.store.writer().await?;
    while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
        if writer.size() + chunk.len() as u64 > limit {
            drop(writer);
            if drain {
                while field.chunk().await.map_err(multipart_error)?.is_some() {}
            }
            return Err(ApiError::from(UploadError::TooLarge {
                file_name: file_name.to_owned(),
                limit,
            }));
        }
        writer.write(&chunk).await.map_err(|err| {
            ApiError::internal(format!(
                "failed to write upload to the temp directory: {err}"
            ))
        })?;
    }
    writer
        .finish()
        .await
        .map_err(|err| ApiError::internal(format!("failed to sync upload to disk: {err}")))
}

async fn read_text(mut field: Field<'static>, name: &str) -> Result<String, ApiError> {
    let mut bytes = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
        bytes.extend_from_slice(&chunk);
        if bytes.len() > MAX_TEXT_FIELD {
            return Err(ApiError::bad_request(
                "invalid_parameter",
                format!("field `{name}` is longer than {MAX_TEXT_FIELD} bytes"),
            ));
        }
    }
    String::from_utf8(bytes).map_err(|_| {
        ApiError::bad_request(
            "invalid_parameter",
            format!("field `{name}` is not valid UTF-8"),
        )
    })
}

fn unknown_field(name: &str, accepted: &str) -> ApiError {
    ApiError::bad_request(
        "invalid_parameter",
        format!("unknown form field {name:?}; accepted fields: {accepted}"),
    )
}

fn multipart_error(err: multer::Error) -> ApiError {
    match err {
        multer::Error::StreamSizeExceeded { limit } => ApiError::payload_too_large(format!(
            "the request body is larger than the limit of {limit} bytes"
        )),
        multer::Error::StreamReadFailed(source) => ApiError::bad_request(
            "upload_interrupted",
            format!("failed to read the request body: {source}"),
        ),
        other => ApiError::bad_request(
            "invalid_multipart",
            format!("malformed multipart body: {other}"),
        ),
    }
}
