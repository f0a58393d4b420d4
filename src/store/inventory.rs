//! Whole-index reads for the operations tools: totals for `kura stats` and the metrics gauges,
//! the set of blob hashes that `kura gc` compares with the files on disk, and the cached variants
//! whose source was deleted.

use std::collections::{BTreeMap, HashSet};

use redb::{ReadableDatabase, ReadableTable};

use super::index::{db_err, from_json, BlobRecord, Index, MediaRecord, BLOBS, MEDIA};
use super::variants::{VariantRecord, VARIANTS};
use super::StoreError;

/// Counts and bytes over the whole index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexTotals {
    pub media_count: u64,
    /// Sum of record sizes; identical files count once per record.
    pub media_bytes: u64,
    pub blob_count: u64,
    /// Sum of distinct blob sizes: what `blobs/` holds, uploads and variants alike.
    pub blob_bytes: u64,
    /// Distinct blobs that at least one media record uses, and their bytes.
    pub upload_blob_count: u64,
    pub upload_blob_bytes: u64,
    /// Cached variants and the sum of their sizes, the figure `transform.cache_max_bytes` caps.
    pub variant_count: u64,
    pub variant_bytes: u64,
    /// MIME type → (records, bytes).
    pub by_type: BTreeMap<String, (u64, u64)>,
}

impl Index {
    /// Reads every media, blob and variant entry in one read transaction. Costs one pass over the
    /// three tables, so it runs at start and in `kura stats`, never per request.
    pub fn totals(&self) -> Result<IndexTotals, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let mut totals = IndexTotals::default();
        let media = txn.open_table(MEDIA).map_err(db_err)?;
        for entry in media.iter().map_err(db_err)? {
            let (_, value) = entry.map_err(db_err)?;
            let record: MediaRecord = from_json(value.value())?;
            totals.media_count += 1;
            totals.media_bytes += record.size;
            let by_type = totals
                .by_type
                .entry(record.media_type.mime().to_owned())
                .or_default();
            by_type.0 += 1;
            by_type.1 += record.size;
        }
        let blobs = txn.open_table(BLOBS).map_err(db_err)?;
        for entry in blobs.iter().map_err(db_err)? {
            let (_, value) = entry.map_err(db_err)?;
            let blob: BlobRecord = from_json(value.value())?;
            totals.blob_count += 1;
            totals.blob_bytes += blob.size;
            // Only uploads record a type. A blob that both an upload and a variant use has it too.
            if blob.media_type.is_some() {
                totals.upload_blob_count += 1;
                totals.upload_blob_bytes += blob.size;
            }
        }
        match txn.open_table(VARIANTS) {
            Ok(variants) => {
                for entry in variants.iter().map_err(db_err)? {
                    let (_, value) = entry.map_err(db_err)?;
                    let variant: VariantRecord = from_json(value.value())?;
                    totals.variant_count += 1;
                    totals.variant_bytes += variant.size;
                }
            }
            Err(redb::TableError::TableDoesNotExist(_)) => {}
            Err(err) => return Err(db_err(err)),
        }
        Ok(totals)
    }

    /// Returns the hash of every blob the index references.
    pub fn blob_hashes(&self) -> Result<HashSet<String>, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let blobs = txn.open_table(BLOBS).map_err(db_err)?;
        let mut hashes = HashSet::new();
        for entry in blobs.iter().map_err(db_err)? {
            let (key, _) = entry.map_err(db_err)?;
            hashes.insert(key.value().to_owned());
        }
        Ok(hashes)
    }

    /// Returns the keys and records of cached variants whose source blob no media record uses any
    /// more. Deleting a source's last record purges its variants in a later step, so a crash
    /// between the two leaves such entries behind.
    pub fn orphan_variants(&self) -> Result<Vec<(String, VariantRecord)>, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let variants = match txn.open_table(VARIANTS) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(err) => return Err(db_err(err)),
        };
        let blobs = txn.open_table(BLOBS).map_err(db_err)?;
        let mut orphans = Vec::new();
        for entry in variants.iter().map_err(db_err)? {
            let (key, value) = entry.map_err(db_err)?;
            let key = key.value();
            let source = key.split('/').next().unwrap_or_default();
            let source_is_upload = match blobs.get(source).map_err(db_err)? {
                Some(guard) => from_json::<BlobRecord>(guard.value())?.media_type.is_some(),
                None => false,
            };
            if !source_is_upload {
                orphans.push((key.to_owned(), from_json(value.value())?));
            }
        }
        Ok(orphans)
    }

    /// Returns each blob's reference count, which `kura gc --dry-run` uses to tell which files
    /// removing variants would free.
    pub fn blob_refcounts(&self) -> Result<BTreeMap<String, u64>, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let blobs = txn.open_table(BLOBS).map_err(db_err)?;
        let mut counts = BTreeMap::new();
        for entry in blobs.iter().map_err(db_err)? {
            let (key, value) = entry.map_err(db_err)?;
            let blob: BlobRecord = from_json(value.value())?;
            counts.insert(key.value().to_owned(), blob.refcount);
        }
        Ok(counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{MediaType, NewMedia};

    fn media(hash: &str, size: u64, media_type: MediaType) -> NewMedia {
        NewMedia {
            id: uuid::Uuid::new_v4().to_string(),
            wanted_name: "a.bin".to_owned(),
            media_type,
            size,
            width: None,
            height: None,
            frames: None,
            duration_secs: None,
            alt: None,
            hash: hash.to_owned(),
            cid: String::new(),
            uploaded_at: "2026-01-01T00:00:00Z".to_owned(),
        }
    }

    #[test]
    fn totals_count_shared_blobs_once() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(&dir.path().join("kura.redb")).unwrap();
        assert_eq!(index.totals().unwrap(), IndexTotals::default());

        let shared = "aa".repeat(32);
        let other = "bb".repeat(32);
        index
            .insert_media(media(&shared, 10, MediaType::Png))
            .unwrap();
        index
            .insert_media(media(&shared, 10, MediaType::Png))
            .unwrap();
        index
            .insert_media(media(&other, 7, MediaType::Jpeg))
            .unwrap();

        let totals = index.totals().unwrap();
        assert_eq!(totals.media_count, 3);
        assert_eq!(totals.media_bytes, 27);
        assert_eq!(totals.blob_count, 2);
        assert_eq!(totals.blob_bytes, 17);
        assert_eq!(totals.by_type["image/png"], (2, 20));
        assert_eq!(totals.by_type["image/jpeg"], (1, 7));
        assert_eq!(index.blob_hashes().unwrap(), HashSet::from([shared, other]));
    }
}
