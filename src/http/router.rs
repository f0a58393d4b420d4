//! The single place that shows a request's way through the server, in order:
//! health and readiness checks → metrics → the OpenAPI document → `/api` (authentication, then
//! the media routes) → public delivery.

use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use serde_json::json;

use super::body::Body;
use super::error::{json_response, ApiError, JsonStatus};
use super::server::AppState;
use crate::{api, delivery, ops};

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
    if path == "/readyz" {
        return ops::health::readyz(state, request.method()).await;
    }
    if path == "/metrics" {
        // With `metrics.listen` set, the metrics are served on that address only.
        if state.config.metrics.listen.trim().is_empty() {
            return ops::metrics_http::metrics(state, request.method());
        }
        return Err(ApiError::not_found(
            "route_not_found",
            "/metrics is served on the metrics.listen address, not here",
        ));
    }
    if path == api::openapi::PATH {
        return api::openapi::handle(request.method());
    }
    if path == "/api" || path.starts_with("/api/") {
        return api::handle(state, request).await;
    }
    delivery::handle(state, request).await
}
