//! `GET /readyz`: whether this instance can take traffic, with the result of each check.
//!
//! Ready means the database completes a read transaction, the data directory takes a new file and
//! its filesystem has at least `storage.min_free_bytes` free. `/healthz` stays a plain liveness
//! check so that a full disk makes a load balancer stop sending uploads without a supervisor
//! restarting the process.

use std::path::Path;

use hyper::{Method, Response};
use serde_json::{json, Value};

use crate::http::error::{json_response, JsonStatus};
use crate::http::{ApiError, AppState, Body};

/// The outcome of one readiness check as it appears in the body.
#[derive(Debug)]
pub struct Check {
    pub ok: bool,
    /// Extra members of the check's JSON object, e.g. `freeBytes`.
    pub details: Value,
}

impl Check {
    fn pass(details: Value) -> Check {
        Check { ok: true, details }
    }

    fn fail(error: impl std::fmt::Display, mut details: Value) -> Check {
        details["error"] = Value::String(error.to_string());
        Check { ok: false, details }
    }

    fn to_json(&self) -> Value {
        let mut value = json!({ "ok": self.ok });
        if let (Some(target), Some(extra)) = (value.as_object_mut(), self.details.as_object()) {
            target.extend(extra.clone());
        }
        value
    }
}

/// Handles `GET`/`HEAD /readyz`: 200 when every check passes, 503 otherwise, with the same body.
pub async fn readyz(state: &AppState, method: &Method) -> Result<Response<Body>, ApiError> {
    if method != Method::GET && method != Method::HEAD {
        return Err(ApiError::method_not_allowed(method, "GET, HEAD"));
    }
    let store = state.store.clone();
    let min_free_bytes = state.config.storage.min_free_bytes;
    let (database, writable, disk) = tokio::task::spawn_blocking(move || {
        let database = match store.index().schema_version() {
            Ok(_) => Check::pass(json!({})),
            Err(err) => Check::fail(err, json!({})),
        };
        let writable = check_writable(&store.data_dir().join("tmp"));
        let disk = check_disk(store.data_dir(), min_free_bytes);
        (database, writable, disk)
    })
    .await
    .map_err(|err| ApiError::internal(format!("readiness check task failed: {err}")))?;

    let ready = database.ok && writable.ok && disk.ok;
    let mut checks = json!({
        "database": database.to_json(),
        "dataDirWritable": writable.to_json(),
        "diskSpace": disk.to_json(),
    });
    // Reported for the operator's information only: an unreachable IPFS node does not make the
    // instance unready, because delivery and uploads work without it.
    if let Some(ipfs) = ipfs_reachability(state).await {
        checks["ipfs"] = ipfs.to_json();
    }
    let status = if ready {
        JsonStatus::Ok
    } else {
        JsonStatus::ServiceUnavailable
    };
    let body = json!({
        "status": if ready { "ready" } else { "not_ready" },
        "checks": checks,
    });
    Ok(json_response(status, &body))
}

/// Reports whether the IPFS node responds. Returns `None` while this build has no IPFS client,
/// and `/readyz` then leaves the `ipfs` member out.
/// TODO: the IPFS replication feature should return the node's reachability here.
pub async fn ipfs_reachability(_state: &AppState) -> Option<Check> {
    None
}

/// Creates and removes a probe file in `dir`, the temp directory uploads stream into.
fn check_writable(dir: &Path) -> Check {
    let probe = dir.join(format!("readyz-{}.probe", uuid::Uuid::new_v4().simple()));
    let result = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .and_then(|_| std::fs::remove_file(&probe));
    match result {
        Ok(()) => Check::pass(json!({})),
        Err(err) => Check::fail(
            format!("failed to create and remove {}: {err}", probe.display()),
            json!({}),
        ),
    }
}

fn check_disk(data_dir: &Path, min_free_bytes: u64) -> Check {
    match super::disk::space(data_dir) {
        Ok(space) => {
            let details = json!({
                "freeBytes": space.available_bytes,
                "minFreeBytes": min_free_bytes,
            });
            if space.available_bytes >= min_free_bytes {
                Check::pass(details)
            } else {
                let low = super::disk::LowDiskSpace {
                    free_bytes: space.available_bytes,
                    required_bytes: min_free_bytes,
                };
                Check::fail(low, details)
            }
        }
        // With no floor configured, uploads do not depend on statvfs, so readiness does not either.
        Err(_) if min_free_bytes == 0 => Check::pass(json!({ "minFreeBytes": 0 })),
        Err(err) => Check::fail(
            format!("failed to read free space of {}: {err}", data_dir.display()),
            json!({ "minFreeBytes": min_free_bytes }),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writable_probe_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let check = check_writable(dir.path());
        assert!(check.ok, "{:?}", check.details);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn writable_probe_fails_on_missing_dir() {
        let dir = tempfile::tempdir().unwrap();
        let check = check_writable(&dir.path().join("missing"));
        assert!(!check.ok);
        assert!(check.to_json()["error"]
            .as_str()
            .unwrap()
            .contains("failed to create"));
    }

    #[test]
    fn disk_check_reports_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let passing = check_disk(dir.path(), 0).to_json();
        assert_eq!(passing["ok"], true);
        assert_eq!(passing["minFreeBytes"], 0);
        assert!(passing["freeBytes"].as_u64().is_some());

        let failing = check_disk(dir.path(), u64::MAX).to_json();
        assert_eq!(failing["ok"], false);
        assert!(failing["error"]
            .as_str()
            .unwrap()
            .contains("storage.min_free_bytes"));
    }
}
