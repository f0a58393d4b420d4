//! `GET /api/ipfs` (replication status) and `POST /api/ipfs/verify` (store check and repair).

use std::time::Duration;

use hyper::body::Incoming;
use hyper::{Request, Response};
use serde_json::json;

use crate::http::error::{json_response, JsonStatus};
use crate::http::{query_param, ApiError, AppState, Body};
use crate::ipfs::node::Node;
use crate::ipfs::verify::verify_store;

/// Maximum wait for the node's version in a status request, so a hung node cannot hold the
/// request for the full `ipfs.timeout_secs`.
const STATUS_PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// `GET /api/ipfs`: whether replication is on, whether the node responds, and job counts.
pub async fn status(state: &AppState) -> Result<Response<Body>, ApiError> {
    let config = &state.config.ipfs;
    let layout = json!({
        "chunkSize": config.chunk_size,
        "maxLinks": config.max_links,
        "hash": config.hash,
    });
    if !config.enabled {
        let data = json!({ "enabled": false, "cid": layout });
        return Ok(json_response(
            JsonStatus::Ok,
            &json!({ "success": true, "data": data }),
        ));
    }

    let mut probe_config = config.clone();
    probe_config.timeout_secs = config.timeout_secs.min(STATUS_PROBE_TIMEOUT.as_secs());
    let node = match Node::new(&probe_config) {
        Ok(node) => match node.version().await {
            Ok(version) => {
                json!({ "apiUrl": node.api_url(), "reachable": true, "version": version })
            }
            Err(err) => {
                json!({ "apiUrl": node.api_url(), "reachable": false, "error": err.to_string() })
            }
        },
        Err(err) => {
            json!({ "apiUrl": config.api_url, "reachable": false, "error": err.to_string() })
        }
    };

    let index = state.store.index().clone();
    let counts = tokio::task::spawn_blocking(move || index.ipfs_job_counts())
        .await
        .map_err(|err| ApiError::internal(format!("background task failed: {err}")))??;
    let data = json!({
        "enabled": true,
        "node": node,
        "jobs": {
            "pending": counts.add_pending,
            "pinned": counts.add_pinned,
            "failed": counts.add_failed,
        },
        "unpins": {
            "pending": counts.unpin_pending,
            "failed": counts.unpin_failed,
        },
        "cid": layout,
    });
    Ok(json_response(
        JsonStatus::Ok,
        &json!({ "success": true, "data": data }),
    ))
}

/// `POST /api/ipfs/verify?repair=true|false`: rehashes every blob and, with `repair=true`,
/// restores the missing and corrupt ones from the node. Runs inside the server, so it works
/// while the database is held.
pub async fn verify(
    state: &AppState,
    request: &Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let query = request.uri().query().unwrap_or("");
    let repair = match query_param(query, "repair").as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(ApiError::bad_request(
                "invalid_parameter",
                format!("repair={other:?} is invalid; repair must be true or false"),
            ))
        }
    };
    let node = if repair && state.config.ipfs.enabled {
        Some(Node::new(&state.config.ipfs).map_err(|err| ApiError::internal(err.to_string()))?)
    } else {
        None
    };
    let report = verify_store(&state.store, node.as_ref(), repair).await?;
    tracing::info!(
        checked = report.checked,
        missing = report.missing,
        corrupt = report.corrupt,
        repaired = report.repaired,
        unrepaired = report.unrepaired,
        "store verified"
    );
    Ok(json_response(
        JsonStatus::Ok,
        &json!({ "success": true, "data": report }),
    ))
}
