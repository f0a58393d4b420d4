//! Store verification: rehash every blob the index lists and, on request, restore the missing
//! and corrupt ones from the IPFS node. `kura verify` and `POST /api/ipfs/verify` share it.

use std::io::Read;
use std::path::Path;

use serde::Serialize;

use super::node::Node;
use super::restore::restore_blob;
use crate::store::{BlobRecord, Store, StoreError};

/// Blobs read from the index per transaction, so a large store is never listed at once.
const PAGE: usize = 256;
/// Read buffer for rehashing, in bytes.
const READ_BUFFER: usize = 1 << 20;

/// Findings and repairs of one verification run.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyReport {
    /// Blobs the index lists.
    pub checked: u64,
    pub ok: u64,
    pub missing: u64,
    pub corrupt: u64,
    pub repaired: u64,
    /// Missing or corrupt blobs that are still bad at the end.
    pub unrepaired: u64,
    /// Failed replication jobs made pending again by a repair.
    pub failed_jobs_retried: u64,
    pub problems: Vec<BlobProblem>,
}

impl VerifyReport {
    /// True when every blob the index lists is present and intact (after repairs).
    pub fn is_clean(&self) -> bool {
        self.unrepaired == 0
    }
}

/// One blob that failed the check.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BlobProblem {
    pub hash: String,
    pub cid: String,
    pub problem: ProblemKind,
    pub detail: String,
    /// Whether a repair put intact bytes in place.
    pub repaired: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repair_error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProblemKind {
    Missing,
    Corrupt,
}

/// Result of rehashing one blob file.
enum FileCheck {
    Intact,
    Missing,
    Corrupt(String),
}

/// Rehashes every blob and, when `repair` is set, restores bad ones from `node`. A repair
/// also makes failed replication jobs pending again while replication is on.
pub async fn verify_store(
    store: &Store,
    node: Option<&Node>,
    repair: bool,
) -> Result<VerifyReport, StoreError> {
    let mut report = VerifyReport::default();
    let mut after: Option<String> = None;
    loop {
        let index = store.index().clone();
        let cursor = after.clone();
        let page = tokio::task::spawn_blocking(move || index.blobs_page(cursor.as_deref(), PAGE))
            .await
            .map_err(|err| StoreError::Task(err.to_string()))??;
        let Some((last, _)) = page.last() else {
            break;
        };
        after = Some(last.clone());
        for (hash, blob) in page {
            report.checked += 1;
            let path = store.blob_path(&hash);
            let expected = hash.clone();
            let check = tokio::task::spawn_blocking(move || check_file(&path, &expected))
                .await
                .map_err(|err| StoreError::Task(err.to_string()))?;
            let (problem, detail) = match check {
                FileCheck::Intact => {
                    report.ok += 1;
                    continue;
                }
                FileCheck::Missing => {
                    report.missing += 1;
                    (ProblemKind::Missing, "the blob file is missing".to_owned())
                }
                FileCheck::Corrupt(detail) => {
                    report.corrupt += 1;
                    (ProblemKind::Corrupt, detail)
                }
            };
            tracing::error!(hash = %hash, cid = %blob.cid, problem = ?problem, detail = %detail, "blob failed verification");
            let mut entry = BlobProblem {
                hash,
                cid: blob.cid.clone(),
                problem,
                detail,
                repaired: false,
                repair_error: None,
            };
            if repair {
                repair_entry(store, node, &blob, &mut entry).await;
            }
            if entry.repaired {
                report.repaired += 1;
            } else {
                report.unrepaired += 1;
            }
            report.problems.push(entry);
        }
    }

    if repair && store.index().ipfs_policy().enabled {
        let index = store.index().clone();
        report.failed_jobs_retried =
            tokio::task::spawn_blocking(move || index.retry_failed_ipfs_jobs())
                .await
                .map_err(|err| StoreError::Task(err.to_string()))??;
    }
    Ok(report)
}

async fn repair_entry(
    store: &Store,
    node: Option<&Node>,
    blob: &BlobRecord,
    entry: &mut BlobProblem,
) {
    let Some(node) = node else {
        entry.repair_error =
            Some("ipfs.enabled is false, so there is no IPFS node to restore from".to_owned());
        return;
    };
    match restore_blob(store, node, &entry.hash, blob).await {
        Ok(()) => {
            tracing::warn!(hash = %entry.hash, cid = %entry.cid, "blob restored from the IPFS node");
            entry.repaired = true;
        }
        Err(err) => {
            tracing::error!(hash = %entry.hash, cid = %entry.cid, error = %err, "failed to restore blob from the IPFS node");
            entry.repair_error = Some(err.to_string());
        }
    }
}

/// Rehashes the file at `path` with BLAKE3 and compares the digest with `expected` (hex).
fn check_file(path: &Path, expected: &str) -> FileCheck {
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return FileCheck::Missing,
        Err(err) => return FileCheck::Corrupt(format!("failed to open the blob file: {err}")),
    };
    let mut hasher = blake3::Hasher::new();
    let mut buffer = vec![0u8; READ_BUFFER];
    loop {
        match file.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => {
                hasher.update(&buffer[..read]);
            }
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(err) => return FileCheck::Corrupt(format!("failed to read the blob file: {err}")),
        }
    }
    let actual = hasher.finalize().to_hex();
    if actual.as_str() == expected {
        FileCheck::Intact
    } else {
        FileCheck::Corrupt(format!("the file's BLAKE3 hash is {actual}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_file_classifies() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        let hash = blake3::hash(b"content").to_hex().to_string();
        assert!(matches!(check_file(&path, &hash), FileCheck::Missing));
        std::fs::write(&path, b"content").unwrap();
        assert!(matches!(check_file(&path, &hash), FileCheck::Intact));
        std::fs::write(&path, b"c0ntent").unwrap();
        assert!(matches!(check_file(&path, &hash), FileCheck::Corrupt(_)));
    }
}
