//! Restores a missing or corrupt blob file from the IPFS node by its CID.
//!
//! The bytes stream from the node's `cat` into a temp file through the same writer as uploads,
//! so they are BLAKE3-hashed as they arrive. They replace the blob file only when the hash equals
//! the blob's name, through the store's temp file → fsync → rename → fsync directory sequence.

use futures_util::StreamExt;

use super::node::{Node, NodeError};
use crate::http::AppState;
use crate::store::{BlobRecord, Store, StoreError};

/// Failure to restore one blob.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("blob {hash} has no recorded CID (a cached variant, or a blob whose CID is not computed yet), so it cannot be fetched from IPFS")]
    NoCid { hash: String },
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error("the IPFS node sent more than the {size} bytes of blob {hash}")]
    TooLong { hash: String, size: u64 },
    #[error("the IPFS node's bytes for CID {cid} hash to BLAKE3 {actual}, not {hash}; nothing was replaced")]
    HashMismatch {
        hash: String,
        cid: String,
        actual: String,
    },
    #[error("blob {hash} was deleted while it was being restored")]
    Deleted { hash: String },
    #[error("failed to write the restored bytes of blob {hash}: {source}")]
    Write {
        hash: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Fetches blob `hash` from the node and puts it in place, checked by BLAKE3.
pub async fn restore_blob(
    store: &Store,
    node: &Node,
    hash: &str,
    blob: &BlobRecord,
) -> Result<(), RestoreError> {
    if blob.cid.is_empty() {
        return Err(RestoreError::NoCid {
            hash: hash.to_owned(),
        });
    }
    let write_err = |source| RestoreError::Write {
        hash: hash.to_owned(),
        source,
    };
    let mut writer = store.writer().await?;
    let transfer = async {
        let mut stream = std::pin::pin!(node.cat(&blob.cid));
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            if writer.size() + chunk.len() as u64 > blob.size {
                return Err(RestoreError::TooLong {
                    hash: hash.to_owned(),
                    size: blob.size,
                });
            }
            writer.write(&chunk).await.map_err(write_err)?;
        }
        Ok(())
    };
    match tokio::time::timeout(node.timeout(), transfer).await {
        Ok(result) => result?,
        Err(_) => return Err(node.timeout_error().into()),
    }

    let staged = writer.finish().await.map_err(write_err)?;
    if staged.hash != hash {
        return Err(RestoreError::HashMismatch {
            hash: hash.to_owned(),
            cid: blob.cid.clone(),
            actual: staged.hash.clone(),
        });
    }
    if !store.restore_blob(staged).await? {
        return Err(RestoreError::Deleted {
            hash: hash.to_owned(),
        });
    }
    Ok(())
}

/// Restores the missing file of blob `hash` for a delivery request when replication is on.
/// Returns whether the file is back; every failure is logged here.
pub async fn read_through(state: &AppState, hash: &str) -> bool {
    let config = &state.config.ipfs;
    if !config.enabled {
        return false;
    }
    let index = state.store.index().clone();
    let key = hash.to_owned();
    let blob = match tokio::task::spawn_blocking(move || index.get_blob(&key)).await {
        Ok(Ok(Some(blob))) => blob,
        Ok(Ok(None)) => return false,
        Ok(Err(err)) => {
            tracing::error!(hash, error = %err, "failed to read the blob record for a restore");
            return false;
        }
        Err(err) => {
            tracing::error!(hash, error = %err, "failed to read the blob record for a restore");
            return false;
        }
    };
    let node = match Node::new(config) {
        Ok(node) => node,
        Err(err) => {
            tracing::error!(hash, error = %err, "cannot restore a missing blob");
            return false;
        }
    };
    match restore_blob(&state.store, &node, hash, &blob).await {
        Ok(()) => {
            tracing::warn!(hash, cid = %blob.cid, "restored a missing blob file from the IPFS node");
            true
        }
        Err(err) => {
            tracing::error!(hash, cid = %blob.cid, error = %err, "failed to restore a missing blob file from the IPFS node");
            false
        }
    }
}
