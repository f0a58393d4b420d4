//! The error envelope and the one place where domain errors become HTTP statuses.
//!
//! Every error response is `{"success":false,"error":{"code":"snake_case","message":"…"}}`. The
//! code is stable for clients to match on; the message names the offending value and a remedy.

use hyper::header::{HeaderName, HeaderValue, ALLOW, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use hyper::{Response, StatusCode};
use serde_json::json;

use super::body::{self, Body};
use crate::store::{ProbeError, StoreError, UploadError};
use crate::transform::codec::PixelError;
use crate::transform::TransformFailure;

/// An error on its way to becoming a response.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            headers: Vec::new(),
        }
    }

    fn with_header(mut self, name: HeaderName, value: &str) -> Self {
        if let Ok(value) = HeaderValue::from_str(value) {
            self.headers.push((name, value));
        }
        self
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
            .with_header(WWW_AUTHENTICATE, "Bearer realm=\"kura\"")
    }

    /// Builds the 401 error for a missing, wrong or expired URL signature.
    pub fn invalid_signature(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::UNAUTHORIZED, "invalid_signature", message)
            .with_ik_error("EINVALIDSIG")
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, code, message)
    }

    /// Builds the 405 error for a route that exists but does not take `method`; `allow` lists
    /// the methods it takes.
    pub fn method_not_allowed(method: &hyper::Method, allow: &'static str) -> Self {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("method {method} is not allowed here; allowed: {allow}"),
        )
        .with_header(ALLOW, allow)
    }

    pub fn payload_too_large(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
    }

    pub fn unsupported_content_type(message: impl Into<String>) -> Self {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_content_type",
            message,
        )
    }

    /// 416 for a byte range that starts at or past the end of a file of `len` bytes.
    pub fn range_not_satisfiable(range: &str, len: u64) -> Self {
        ApiError::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "range_not_satisfiable",
            format!("Range {range} starts past the end of this {len}-byte file"),
        )
        .with_header(hyper::header::CONTENT_RANGE, &format!("bytes */{len}"))
    }

    pub fn precondition_failed(message: impl Into<String>) -> Self {
        ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            "precondition_failed",
            message,
        )
    }

    pub fn service_unavailable(
        code: &'static str,
        message: impl Into<String>,
        retry_after_secs: u32,
    ) -> Self {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
            .with_header(RETRY_AFTER, &retry_after_secs.to_string())
    }

    /// Builds the 507 error for an upload refused because the disk is nearly full.
    pub fn insufficient_storage(message: impl Into<String>) -> Self {
        ApiError::new(
            StatusCode::INSUFFICIENT_STORAGE,
            "insufficient_storage",
            message,
        )
    }

    pub fn internal(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", message)
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn code(&self) -> &'static str {
        self.code
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// Adds ImageKit's diagnostic header (`ik-error: CODE - message`) used on delivery URLs.
    pub fn with_ik_error(self, ik_code: &str) -> Self {
        let text = format!("{ik_code} - {}", self.message);
        // Header values must be visible ASCII, so other characters are replaced.
        let ascii: String = text
            .chars()
            .map(|c| {
                if c.is_ascii_graphic() || c == ' ' {
                    c
                } else {
                    '?'
                }
            })
            .collect();
        self.with_header(HeaderName::from_static("ik-error"), &ascii)
    }

    /// Returns the JSON `error` object, also used inside batch upload results.
    pub fn to_json(&self) -> serde_json::Value {
        json!({ "code": self.code, "message": self.message })
    }

    /// Builds this error's response with another message and a `data` member, for batch uploads
    /// in which every file failed.
    pub fn into_response_with_data(
        mut self,
        message: &str,
        data: serde_json::Value,
    ) -> Response<Body> {
        self.message = message.to_owned();
        let body = json!({ "success": false, "error": self.to_json(), "data": data });
        self.respond(body)
    }

    pub fn into_response(self) -> Response<Body> {
        let body = json!({ "success": false, "error": self.to_json() });
        self.respond(body)
    }

    fn respond(self, body: serde_json::Value) -> Response<Body> {
        let mut response = Response::new(body::full(body.to_string()));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for (name, value) in self.headers {
            headers.append(name, value);
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        // Store errors that reach a handler are faults of the server, never of the client.
        ApiError::internal(format!("storage failure: {err}"))
    }
}

impl From<UploadError> for ApiError {
    fn from(err: UploadError) -> Self {
        let message = err.to_string();
        match err {
            UploadError::Empty { .. } => ApiError::bad_request("empty_file", message),
            UploadError::TooLarge { .. } => ApiError::payload_too_large(message),
            UploadError::Unsupported { .. } => ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                message,
            ),
            UploadError::Invalid { source, .. } => match source {
                ProbeError::Io(io) => ApiError::internal(format!("failed to read upload: {io}")),
                other => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, other.code(), message),
            },
            UploadError::Store(store) => ApiError::from(store),
        }
    }
}

impl From<TransformFailure> for ApiError {
    fn from(err: TransformFailure) -> Self {
        let message = err.to_string();
        match err {
            TransformFailure::Transform(err) => {
                let ik_code = if err.code() == "limit_exceeded" {
                    "ELIMIT"
                } else {
                    "EINVALIDTR"
                };
                ApiError::new(StatusCode::BAD_REQUEST, err.code(), message).with_ik_error(ik_code)
            }
            TransformFailure::Pixel(err) => match err {
                PixelError::TooLarge { .. } | PixelError::TooManyFrames { .. } => {
                    ApiError::new(StatusCode::BAD_REQUEST, err.code(), message)
                        .with_ik_error("ELIMIT")
                }
                PixelError::UnsupportedOutput { .. } => {
                    ApiError::new(StatusCode::BAD_REQUEST, err.code(), message)
                        .with_ik_error("EINVALIDTR")
                }
                PixelError::UnknownFormat
                | PixelError::Unsupported { .. }
                | PixelError::Invalid { .. } => {
                    // The stored file passed upload checks but the pixel stage cannot read it.
                    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, err.code(), message)
                }
                PixelError::Encode { .. } | PixelError::InvalidOperation(_) => {
                    ApiError::internal(message)
                }
            },
            TransformFailure::Busy { .. } => ApiError::service_unavailable(
                "transform_queue_full",
                format!("{message}; retry shortly"),
                1,
            ),
            TransformFailure::SourceMissing(_) => ApiError::service_unavailable(
                "blob_unavailable",
                format!("{message}; the operator must restore it (`kura verify --repair`)"),
                60,
            )
            .with_ik_error("ENOENT"),
            TransformFailure::Internal(message) => ApiError::internal(message),
        }
    }
}

/// Builds a JSON success response.
pub fn json_response(status: JsonStatus, value: &serde_json::Value) -> Response<Body> {
    let mut response = Response::new(body::full(value.to_string()));
    *response.status_mut() = match status {
        JsonStatus::Ok => StatusCode::OK,
        JsonStatus::Created => StatusCode::CREATED,
        JsonStatus::MultiStatus => StatusCode::MULTI_STATUS,
        JsonStatus::ServiceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
    };
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// The success statuses handlers may pick for a JSON body.
#[derive(Debug, Clone, Copy)]
pub enum JsonStatus {
    Ok,
    Created,
    MultiStatus,
    /// For bodies that describe why the service cannot work, such as a failed readiness check.
    ServiceUnavailable,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unauthorized_carries_challenge() {
        let response = ApiError::unauthorized("missing key").into_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert!(response.headers()[WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .starts_with("Bearer"));
    }

    #[test]
    fn ik_error_header_is_ascii() {
        let response = ApiError::not_found("not_found", "no file named \"йцук.jpg\"")
            .with_ik_error("ENOENT")
            .into_response();
        let value = response.headers()["ik-error"].to_str().unwrap();
        assert!(value.starts_with("ENOENT - no file named"), "{value}");
    }
}
