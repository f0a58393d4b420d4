//! `kura stats`: counts and bytes of media records, blobs, replication states and cached variants.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use crate::store::{Index, StoreError};

/// Everything `kura stats` prints.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    pub media: CountBytes,
    /// Distinct files that uploads use. Cached variants are counted under `variants`.
    pub blobs: CountBytes,
    /// Bytes that identical uploads share instead of storing twice.
    pub deduplicated_bytes: u64,
    /// MIME type → records and bytes.
    pub by_type: BTreeMap<String, CountBytes>,
    /// Replication state → jobs, or `None` when this build does not replicate.
    pub replication: Option<BTreeMap<String, u64>>,
    /// Cached transformed variants.
    pub variants: VariantStats,
    pub disk: Option<DiskStats>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CountBytes {
    pub count: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VariantStats {
    pub count: u64,
    /// Sum of the variants' sizes, the figure least-recently-used eviction keeps under `max_bytes`.
    pub bytes: u64,
    /// `transform.cache_max_bytes`.
    pub max_bytes: u64,
}

#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DiskStats {
    pub free_bytes: u64,
    pub total_bytes: u64,
    pub min_free_bytes: u64,
}

/// Reads the statistics from an open index and the data directory's filesystem.
pub fn gather(
    data_dir: &Path,
    index: &Index,
    min_free_bytes: u64,
    cache_max_bytes: u64,
) -> Result<Stats, StoreError> {
    let totals = index.totals()?;
    let disk = super::disk::space(data_dir).ok().map(|space| DiskStats {
        free_bytes: space.available_bytes,
        total_bytes: space.total_bytes,
        min_free_bytes,
    });
    Ok(Stats {
        media: CountBytes {
            count: totals.media_count,
            bytes: totals.media_bytes,
        },
        blobs: CountBytes {
            count: totals.upload_blob_count,
            bytes: totals.upload_blob_bytes,
        },
        deduplicated_bytes: totals.media_bytes.saturating_sub(totals.upload_blob_bytes),
        by_type: totals
            .by_type
            .into_iter()
            .map(|(mime, (count, bytes))| (mime, CountBytes { count, bytes }))
            .collect(),
        replication: replication_states(index)?,
        variants: VariantStats {
            count: totals.variant_count,
            bytes: totals.variant_bytes,
            max_bytes: cache_max_bytes,
        },
        disk,
    })
}

/// Returns the number of IPFS replication jobs in each state (see `JobCounts::by_state`), or
/// `None` while replication is off.
pub fn replication_states(index: &Index) -> Result<Option<BTreeMap<String, u64>>, StoreError> {
    if !index.ipfs_policy().enabled {
        return Ok(None);
    }
    let counts = index.ipfs_job_counts()?;
    let states = counts
        .by_state()
        .into_iter()
        .map(|(state, count)| (state.to_owned(), count))
        .collect();
    Ok(Some(states))
}
