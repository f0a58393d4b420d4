//! Listing, details and deletion of media records.

use hyper::body::Incoming;
use hyper::{Request, Response};
use serde_json::json;

use super::MediaItem;
use crate::http::error::{json_response, JsonStatus};
use crate::http::{query_param, ApiError, AppState, Body};

pub const DEFAULT_LIMIT: u64 = 20;
pub const MAX_LIMIT: u64 = 100;

/// `GET /api/media?page=&limit=`: one page of records, newest first.
pub async fn list(
    state: &AppState,
    request: &Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let query = request.uri().query().unwrap_or("");
    let page = query_param(query, "page")
        .map(|value| parse_positive("page", &value, u64::MAX))
        .transpose()?
        .unwrap_or(1);
    let limit = query_param(query, "limit")
        .map(|value| parse_positive("limit", &value, MAX_LIMIT))
        .transpose()?
        .unwrap_or(DEFAULT_LIMIT);

    // A page so far out that its offset overflows is simply past the end.
    let offset = (page - 1).saturating_mul(limit);
    let (records, total) = state.store.list_page(offset, limit).await?;
    let public_url = &state.config.server.public_url;
    let items: Vec<MediaItem> = records
        .iter()
        .map(|r| MediaItem::new(r, public_url))
        .collect();
    let body = json!({
        "success": true,
        "data": {
            "items": items,
            "total": total,
            "page": page,
            "limit": limit,
            "pages": total.div_ceil(limit),
        }
    });
    Ok(json_response(JsonStatus::Ok, &body))
}

/// `GET /api/media/{id}`.
pub async fn details(state: &AppState, id: &str) -> Result<Response<Body>, ApiError> {
    let record = state
        .store
        .get_media(id)
        .await?
        .ok_or_else(|| media_not_found(id))?;
    let item = MediaItem::new(&record, &state.config.server.public_url);
    Ok(json_response(
        JsonStatus::Ok,
        &json!({ "success": true, "data": item }),
    ))
}

/// `DELETE /api/media/{id}`.
pub async fn delete(state: &AppState, id: &str) -> Result<Response<Body>, ApiError> {
    let record = state
        .store
        .delete_media(id)
        .await?
        .ok_or_else(|| media_not_found(id))?;
    tracing::info!(media_id = %record.id, hash = %record.hash, file_name = %record.file_name, "media deleted");
    if !state.store.blob_referenced(&record.hash).await? {
        // The last record of this content is gone, so its variants can never be requested again.
        state.transformer.purge_source(&record.hash).await;
    }
    Ok(json_response(
        JsonStatus::Ok,
        &json!({ "success": true, "message": "Media file deleted successfully" }),
    ))
}

fn media_not_found(id: &str) -> ApiError {
    ApiError::not_found("media_not_found", format!("no media with id {id:?}"))
}

fn parse_positive(name: &str, value: &str, max: u64) -> Result<u64, ApiError> {
    let invalid = || {
        ApiError::bad_request(
            "invalid_parameter",
            format!("{name}={value:?} is invalid; {name} must be a whole number from 1 to {max}"),
        )
    };
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    match value.parse::<u64>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(invalid()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_positive_table() {
        assert_eq!(parse_positive("limit", "1", 100).unwrap(), 1);
        assert_eq!(parse_positive("limit", "100", 100).unwrap(), 100);
        for bad in [
            "0",
            "-1",
            "101",
            "1.5",
            "abc",
            "",
            " 1",
            "99999999999999999999999",
        ] {
            let err = parse_positive("limit", bad, 100).unwrap_err();
            assert_eq!(err.code(), "invalid_parameter", "value {bad:?}");
            assert!(err.message().contains("limit="), "{}", err.message());
        }
    }
}
