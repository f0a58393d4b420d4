//! `GET /api/openapi.json`: the OpenAPI 3.1 description of the HTTP API, served without a key.
//! The document is the static file `openapi.json` beside this module, and `tests/openapi.rs` sends a
//! real request for every route and status it lists.

use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Method, Response};

use crate::http::{body, ApiError, Body};

/// The path the document is served at.
pub const PATH: &str = "/api/openapi.json";

/// The document, compiled into the binary.
pub const DOCUMENT: &str = include_str!("openapi.json");

pub fn handle(method: &Method) -> Result<Response<Body>, ApiError> {
    if method != Method::GET && method != Method::HEAD {
        return Err(ApiError::method_not_allowed(method, "GET, HEAD"));
    }
    let mut response = Response::new(body::full(DOCUMENT));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    // The document changes only with the binary, so a short cache lifetime is safe.
    headers.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_is_openapi_3_1_json() {
        let document: serde_json::Value = serde_json::from_str(DOCUMENT).unwrap();
        assert_eq!(document["openapi"], "3.1.0");
        assert_eq!(document["info"]["version"], env!("CARGO_PKG_VERSION"));
        assert!(document["paths"]["/api/media"]["post"].is_object());
    }
}
