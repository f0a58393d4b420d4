//! The single place that shows a request's way through the server, in order:
//! health check → `/api` (authentication, then the media routes) → public delivery.

use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use serde_json::json;

use super::body::Body;
use super::error::{json_response, ApiError, JsonStatus};
use super::server::AppState;
use crate::{api, delivery};

pub async fn route(
    state: &AppState,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let path = request.uri().path();
    if path == "/healthz" {
        return match *request.method() {
            Method::GET | Method::HEAD => {
                Ok(json_response(JsonStatus::Ok, &json!({ "status": "ok" })))
            }
            ref other => Err(ApiError::method_not_allowed(other, "GET, HEAD")),
        };
    }
    if path == "/api" || path.starts_with("/api/") {
        return api::handle(state, request).await;
    }
    delivery::handle(state, request).await
}
