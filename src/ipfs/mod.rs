//! IPFS: the Kubo-equal CID computed while an upload streams, replication of every blob to the
//! operator's node (a durable queue and a worker), restores from the node, and lookups by CID.

pub mod cid_builder;
pub mod cli;
pub mod config;
pub mod gateway;
pub mod node;
pub mod restore;
pub mod verify;
pub mod worker;

use std::sync::Arc;

use cid_builder::CidBuilder;
use node::Node;
use worker::Worker;

use crate::config::IpfsConfig;
use crate::store::{BlobRecord, Store, StoreError};

/// Background IPFS tasks of a running server.
pub struct Replication {
    worker: Option<Worker>,
    catch_up: tokio::task::JoinHandle<()>,
}

/// Starts the background tasks: a one-off pass that gives blobs from before CIDs their CID and
/// queues what replication missed while it was off, and, when `ipfs.enabled` is set, the worker.
pub fn start(store: &Arc<Store>, config: &IpfsConfig) -> anyhow::Result<Replication> {
    let worker = if config.enabled {
        let node = Node::new(config)?;
        Some(Worker::start(store.clone(), node, config))
    } else {
        None
    };
    let catch_up = tokio::spawn(catch_up(store.clone()));
    Ok(Replication { worker, catch_up })
}

impl Replication {
    /// Stops the background tasks and waits until they have let go of the store.
    pub async fn stop(self) {
        self.catch_up.abort();
        let _ = self.catch_up.await;
        if let Some(worker) = self.worker {
            worker.stop().await;
        }
    }
}

/// Computes missing CIDs, then reconciles the queue with the blobs.
async fn catch_up(store: Arc<Store>) {
    match backfill_cids(&store).await {
        Ok(0) => {}
        Ok(filled) => tracing::info!(
            filled,
            "computed CIDs of blobs stored before kura computed them"
        ),
        Err(err) => tracing::error!(error = %err, "failed to compute the CIDs of older blobs"),
    }
    let index = store.index().clone();
    match tokio::task::spawn_blocking(move || index.reconcile_ipfs_jobs()).await {
        Ok(Ok(report)) => {
            if report.adds_queued + report.unpins_queued + report.jobs_dropped > 0 {
                tracing::info!(
                    adds_queued = report.adds_queued,
                    unpins_queued = report.unpins_queued,
                    jobs_dropped = report.jobs_dropped,
                    "IPFS queue caught up with blobs changed while replication was off"
                );
            }
        }
        Ok(Err(err)) => tracing::error!(error = %err, "failed to reconcile the IPFS queue"),
        Err(err) => tracing::error!(error = %err, "failed to reconcile the IPFS queue"),
    }
}

/// Gives every blob without a CID the one computed from its file. Returns how many it filled.
async fn backfill_cids(store: &Arc<Store>) -> Result<u64, StoreError> {
    let index = store.index().clone();
    let missing = tokio::task::spawn_blocking(move || index.blobs_without_cid())
        .await
        .map_err(|err| StoreError::Task(err.to_string()))??;
    if missing.is_empty() {
        return Ok(0);
    }
    let options = store.cid_options();
    let mut filled = 0;
    let mut unreadable = 0;
    for hash in missing {
        let path = store.blob_path(&hash);
        let index = store.index().clone();
        let result = tokio::task::spawn_blocking(move || {
            let cid = cid_of_file(&path, options)?;
            index
                .set_blob_cid(&hash, &cid)
                .map_err(std::io::Error::other)
        })
        .await
        .map_err(|err| StoreError::Task(err.to_string()))?;
        match result {
            Ok(true) => filled += 1,
            Ok(false) => {}
            Err(err) => {
                unreadable += 1;
                tracing::error!(error = %err, "failed to compute the CID of a blob; `kura verify` checks the store");
            }
        }
    }
    if unreadable == 0 {
        let index = store.index().clone();
        tokio::task::spawn_blocking(move || index.mark_cids_complete())
            .await
            .map_err(|err| StoreError::Task(err.to_string()))??;
    }
    Ok(filled)
}

/// Computes the CID of a file on disk. Blocks on disk I/O.
pub fn cid_of_file(
    path: &std::path::Path,
    options: cid_builder::CidOptions,
) -> std::io::Result<String> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut builder = CidBuilder::new(options);
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        builder.update(&buffer[..read]);
    }
    Ok(builder.finish().to_string())
}

/// Failure to find a blob by CID.
#[derive(Debug, thiserror::Error)]
pub enum CidLookupError {
    #[error("{text:?} is not a valid CID: {reason}")]
    Invalid { text: String, reason: String },
    #[error("no stored file has CID {cid}")]
    Unknown { cid: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Finds the blob that a CID in any multibase spelling (or a CIDv0) names, and returns its
/// hash and record.
pub async fn find_by_cid(
    store: &Store,
    text: &str,
) -> Result<(String, BlobRecord), CidLookupError> {
    let cid = node::parse_cid(text)
        .map_err(|reason| CidLookupError::Invalid {
            text: text.to_owned(),
            reason,
        })?
        .to_string();
    let index = store.index().clone();
    let lookup = cid.clone();
    let found = tokio::task::spawn_blocking(move || index.blob_by_cid(&lookup))
        .await
        .map_err(|err| StoreError::Task(err.to_string()))??;
    found.ok_or(CidLookupError::Unknown { cid })
}
