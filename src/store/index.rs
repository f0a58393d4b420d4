//! The redb index: schema, typed accessors and the counted listing tree.
//!
//! Every method here blocks on disk I/O and must run on a blocking thread. redb types stay inside
//! this module. After a failed commit redb may already have made the changes durable, so callers
//! treat a commit error as "state unknown" and report it instead of retrying blindly.

use std::path::Path;
use std::sync::OnceLock;

use redb::{
    Database, DatabaseError, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    TableDefinition, WriteTransaction,
};
use serde::{Deserialize, Serialize};

use super::ipfs_jobs::{self, IpfsStatus, QueuePolicy};
use super::names;
use super::probe::MediaType;
use super::StoreError;

/// Version of the table layout below; bumped with a migration when a table changes shape.
pub const SCHEMA_VERSION: u64 = 1;

/// Media id (UUID text) → `MediaRecord` as JSON.
pub(super) const MEDIA: TableDefinition<&str, &[u8]> = TableDefinition::new("media_v1");
/// Stored file name → media id; an empty id marks a retired name that is never handed out again.
const NAMES: TableDefinition<&str, &str> = TableDefinition::new("media_names_v1");
/// Upload sequence number (grows with upload time) → media id.
const LISTING: TableDefinition<u64, &str> = TableDefinition::new("media_listing_v1");
/// Node of the count tree over sequence numbers → live records below that node.
const LISTING_COUNTS: TableDefinition<u64, u64> = TableDefinition::new("media_listing_counts_v1");
/// Blob hash → `BlobRecord` as JSON.
pub(super) const BLOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("blobs_v1");
/// API key name → `ApiKeyRecord` as JSON.
const API_KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("api_keys_v1");
/// BLAKE3 hash of an API key → key name.
const API_KEY_HASHES: TableDefinition<&[u8], &str> = TableDefinition::new("api_key_hashes_v1");
/// Unversioned by design: it records the versions of everything else.
pub(super) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

const META_SCHEMA_VERSION: &str = "schema_version";
const META_NEXT_SEQ: &str = "next_seq";

/// Height of the count tree. Sequence numbers stay below 2^48, far beyond any real upload count.
const TREE_LEVELS: u32 = 48;

/// One uploaded file as the index stores it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MediaRecord {
    pub id: String,
    pub file_name: String,
    pub media_type: MediaType,
    pub size: u64,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub frames: Option<u32>,
    pub duration_secs: Option<f64>,
    pub alt: Option<String>,
    /// Hex BLAKE3 hash of the bytes, which is also the blob's name.
    pub hash: String,
    /// RFC 3339 in UTC.
    pub uploaded_at: String,
    /// Position in the upload-time listing.
    pub seq: u64,
    /// CIDv1 (base32) of the bytes; empty in records written before kura computed CIDs.
    #[serde(default)]
    pub cid: String,
    /// Replication state of the blob, filled in when records are read while replication is on.
    #[serde(skip)]
    pub ipfs: Option<IpfsStatus>,
}

/// Per-blob index entry: reference count, size and type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlobRecord {
    pub refcount: u64,
    pub size: u64,
    /// The uploaded type; `None` for blobs that only transformed variants use.
    pub media_type: Option<MediaType>,
    /// CIDv1 (base32) of the bytes; empty in records written before kura computed CIDs and in
    /// blobs that only transformed variants use.
    #[serde(default)]
    pub cid: String,
}

/// Metadata of one API key; the key itself is never stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    pub name: String,
    /// Hex BLAKE3 hash of the key.
    pub hash: String,
    /// First characters of the key, enough to tell keys apart in `kura key list`.
    pub prefix: String,
    pub created_at: String,
}

/// Everything about a new upload except what the index assigns (name uniqueness, sequence).
#[derive(Debug, Clone)]
pub struct NewMedia {
    pub id: String,
    pub wanted_name: String,
    pub media_type: MediaType,
    pub size: u64,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub frames: Option<u32>,
    pub duration_secs: Option<f64>,
    pub alt: Option<String>,
    pub hash: String,
    /// CIDv1 (base32) computed while the upload streamed.
    pub cid: String,
    pub uploaded_at: String,
}

/// The result of deleting a record.
#[derive(Debug)]
pub struct Deleted {
    pub record: MediaRecord,
    /// True when this was the last record over the blob, so its file may go.
    pub blob_unreferenced: bool,
}

pub struct Index {
    pub(super) db: Database,
    /// Queueing rules for IPFS jobs. Replication stays off until the store sets them.
    pub(super) ipfs_policy: OnceLock<QueuePolicy>,
    /// Woken after a commit that queued an IPFS job, so the worker need not poll.
    pub(super) ipfs_jobs_queued: tokio::sync::Notify,
}

pub(super) fn db_err(err: impl std::fmt::Display) -> StoreError {
    StoreError::Database(err.to_string())
}

pub(super) fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("index records serialise to JSON")
}

pub(super) fn from_json<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|err| db_err(format!("corrupt index record: {err}")))
}

impl Index {
    pub(super) fn db(&self) -> &Database {
        &self.db
    }

    /// Opens or creates the database file, creating tables and checking the schema version.
    pub fn open(path: &Path) -> Result<Index, StoreError> {
        let db = Database::create(path).map_err(|err| match err {
            DatabaseError::DatabaseAlreadyOpen => StoreError::DatabaseLocked {
                path: path.to_path_buf(),
            },
            other => db_err(other),
        })?;
        let txn = db.begin_write().map_err(db_err)?;
        {
            let mut meta = txn.open_table(META).map_err(db_err)?;
            let found = meta
                .get(META_SCHEMA_VERSION)
                .map_err(db_err)?
                .map(|v| v.value());
            match found {
                None => {
                    meta.insert(META_SCHEMA_VERSION, SCHEMA_VERSION)
                        .map_err(db_err)?;
                }
                Some(version) if version > SCHEMA_VERSION => {
                    return Err(StoreError::SchemaTooNew {
                        path: path.to_path_buf(),
                        found: version,
                        supported: SCHEMA_VERSION,
                    });
                }
                Some(_) => {}
            }
            txn.open_table(MEDIA).map_err(db_err)?;
            txn.open_table(NAMES).map_err(db_err)?;
            txn.open_table(LISTING).map_err(db_err)?;
            txn.open_table(LISTING_COUNTS).map_err(db_err)?;
            txn.open_table(BLOBS).map_err(db_err)?;
            txn.open_table(API_KEYS).map_err(db_err)?;
            txn.open_table(API_KEY_HASHES).map_err(db_err)?;
            ipfs_jobs::create_tables(&txn)?;
        }
        txn.commit().map_err(db_err)?;
        Ok(Index {
            db,
            ipfs_policy: OnceLock::new(),
            ipfs_jobs_queued: tokio::sync::Notify::new(),
        })
    }

    pub fn schema_version(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let meta = txn.open_table(META).map_err(db_err)?;
        let version = meta.get(META_SCHEMA_VERSION).map_err(db_err)?;
        Ok(version.map(|v| v.value()).unwrap_or(0))
    }

    /// Inserts a media record, giving it a unique name and the next listing position, counts one
    /// more reference to its blob, and indexes the blob's CID and queues its IPFS pin, all in one
    /// transaction.
    pub fn insert_media(&self, new: NewMedia) -> Result<MediaRecord, StoreError> {
        let mut records = self.insert_media_many(vec![new])?;
        Ok(records.pop().expect("one record in, one record out"))
    }

    /// Inserts several media records in one transaction, which costs one commit (and one fsync)
    /// for the whole batch. Their blobs must already be in place.
    pub fn insert_media_many(&self, batch: Vec<NewMedia>) -> Result<Vec<MediaRecord>, StoreError> {
        let policy = self.ipfs_policy();
        let txn = self.db.begin_write().map_err(db_err)?;
        let mut records = Vec::with_capacity(batch.len());
        for new in batch {
            let mut record = insert_in(&txn, new)?;
            ipfs_jobs::media_stored(&txn, &policy, &mut record)?;
            records.push(record);
        }
        txn.commit().map_err(db_err)?;
        if policy.enabled {
            self.ipfs_jobs_queued.notify_one();
        }
        Ok(records)
    }

    pub fn get_media(&self, id: &str) -> Result<Option<MediaRecord>, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let media = txn.open_table(MEDIA).map_err(db_err)?;
        let found = media.get(id).map_err(db_err)?;
        let mut record: Option<MediaRecord> =
            found.map(|guard| from_json(guard.value())).transpose()?;
        self.annotate(&txn, record.as_mut_slice())?;
        Ok(record)
    }

    pub fn get_by_name(&self, name: &str) -> Result<Option<MediaRecord>, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let names = txn.open_table(NAMES).map_err(db_err)?;
        let id = match names.get(name).map_err(db_err)? {
            Some(guard) if !guard.value().is_empty() => guard.value().to_owned(),
            _ => return Ok(None),
        };
        let media = txn.open_table(MEDIA).map_err(db_err)?;
        let found = media.get(id.as_str()).map_err(db_err)?;
        let mut record: Option<MediaRecord> =
            found.map(|guard| from_json(guard.value())).transpose()?;
        self.annotate(&txn, record.as_mut_slice())?;
        Ok(record)
    }

    pub fn media_count(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let media = txn.open_table(MEDIA).map_err(db_err)?;
        media.len().map_err(db_err)
    }

    /// Reads `limit` records, newest first, after skipping `offset` newer ones. The count tree finds
    /// the starting record in O(tree height) reads, so a deep page costs the same as the first.
    pub fn list_page(
        &self,
        offset: u64,
        limit: u64,
    ) -> Result<(Vec<MediaRecord>, u64), StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let media = txn.open_table(MEDIA).map_err(db_err)?;
        let total = media.len().map_err(db_err)?;
        if offset >= total || limit == 0 {
            return Ok((Vec::new(), total));
        }
        let listing = txn.open_table(LISTING).map_err(db_err)?;
        let counts = txn.open_table(LISTING_COUNTS).map_err(db_err)?;
        let start = nth_newest_seq(&counts, &listing, offset)?;
        let mut items = Vec::with_capacity(limit as usize);
        for entry in listing.range(..=start).map_err(db_err)?.rev() {
            if items.len() as u64 == limit {
                break;
            }
            let (_, id) = entry.map_err(db_err)?;
            let guard = media
                .get(id.value())
                .map_err(db_err)?
                .ok_or_else(|| db_err(format!("listing names missing media {}", id.value())))?;
            items.push(from_json(guard.value())?);
        }
        self.annotate(&txn, &mut items)?;
        Ok((items, total))
    }

    /// Removes a record, retires its name for good, and drops one blob reference. Dropping the
    /// last one also queues the blob's IPFS unpin in the same transaction.
    pub fn delete_media(&self, id: &str) -> Result<Option<Deleted>, StoreError> {
        let policy = self.ipfs_policy();
        let txn = self.db.begin_write().map_err(db_err)?;
        let deleted = {
            let mut media = txn.open_table(MEDIA).map_err(db_err)?;
            let record: MediaRecord = match media.remove(id).map_err(db_err)? {
                Some(guard) => from_json(guard.value())?,
                None => return Ok(None),
            };
            // The name stays taken so that its URL can never start serving other bytes.
            txn.open_table(NAMES)
                .map_err(db_err)?
                .insert(record.file_name.as_str(), "")
                .map_err(db_err)?;
            txn.open_table(LISTING)
                .map_err(db_err)?
                .remove(record.seq)
                .map_err(db_err)?;
            adjust_counts(&txn, record.seq, false)?;

            let blob_unreferenced = drop_blob_reference(&txn, &record.hash)?;
            // NOTE: a blob that a cached variant still uses is not unreferenced here, and when
            // the variant later drops the last reference no unpin is queued, so the pin stays on
            // the node. That needs identical bytes uploaded and produced by a transformation.
            if blob_unreferenced {
                ipfs_jobs::blob_removed(&txn, &policy, &record.hash, &record.cid)?;
            }
            Deleted {
                record,
                blob_unreferenced,
            }
        };
        txn.commit().map_err(db_err)?;
        if policy.enabled && deleted.blob_unreferenced {
            self.ipfs_jobs_queued.notify_one();
        }
        Ok(Some(deleted))
    }

    pub fn get_blob(&self, hash: &str) -> Result<Option<BlobRecord>, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let blobs = txn.open_table(BLOBS).map_err(db_err)?;
        let found = blobs.get(hash).map_err(db_err)?;
        found.map(|guard| from_json(guard.value())).transpose()
    }

    pub fn create_api_key(
        &self,
        record: ApiKeyRecord,
        key_hash: &[u8; 32],
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(db_err)?;
        {
            let mut keys = txn.open_table(API_KEYS).map_err(db_err)?;
            if keys.get(record.name.as_str()).map_err(db_err)?.is_some() {
                return Err(StoreError::KeyExists(record.name));
            }
            keys.insert(record.name.as_str(), to_json(&record).as_slice())
                .map_err(db_err)?;
            txn.open_table(API_KEY_HASHES)
                .map_err(db_err)?
                .insert(key_hash.as_slice(), record.name.as_str())
                .map_err(db_err)?;
        }
        txn.commit().map_err(db_err)?;
        Ok(())
    }

    pub fn list_api_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let keys = txn.open_table(API_KEYS).map_err(db_err)?;
        let mut out = Vec::new();
        for entry in keys.iter().map_err(db_err)? {
            let (_, value) = entry.map_err(db_err)?;
            out.push(from_json(value.value())?);
        }
        Ok(out)
    }

    pub fn revoke_api_key(&self, name: &str) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(db_err)?;
        {
            let mut keys = txn.open_table(API_KEYS).map_err(db_err)?;
            let record: ApiKeyRecord = match keys.remove(name).map_err(db_err)? {
                Some(guard) => from_json(guard.value())?,
                None => return Err(StoreError::KeyNotFound(name.to_owned())),
            };
            let hash = blake3::Hash::from_hex(&record.hash)
                .map_err(|err| db_err(format!("corrupt key hash for {name}: {err}")))?;
            txn.open_table(API_KEY_HASHES)
                .map_err(db_err)?
                .remove(hash.as_bytes().as_slice())
                .map_err(db_err)?;
        }
        txn.commit().map_err(db_err)?;
        Ok(())
    }

    /// Returns the name of the key with this hash, if one exists.
    pub fn find_api_key(&self, key_hash: &[u8; 32]) -> Result<Option<String>, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let hashes = txn.open_table(API_KEY_HASHES).map_err(db_err)?;
        let found = hashes.get(key_hash.as_slice()).map_err(db_err)?;
        Ok(found.map(|guard| guard.value().to_owned()))
    }

    pub fn api_key_count(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let keys = txn.open_table(API_KEYS).map_err(db_err)?;
        keys.len().map_err(db_err)
    }
}

/// Writes one new record, its name, listing entry and blob reference inside `txn`.
fn insert_in(txn: &WriteTransaction, new: NewMedia) -> Result<MediaRecord, StoreError> {
    let file_name = allocate_name(txn, &new.wanted_name)?;
    let seq = next_seq(txn)?;
    let record = MediaRecord {
        id: new.id,
        file_name,
        media_type: new.media_type,
        size: new.size,
        width: new.width,
        height: new.height,
        frames: new.frames,
        duration_secs: new.duration_secs,
        alt: new.alt,
        hash: new.hash,
        uploaded_at: new.uploaded_at,
        seq,
        cid: new.cid,
        ipfs: None,
    };
    txn.open_table(MEDIA)
        .map_err(db_err)?
        .insert(record.id.as_str(), to_json(&record).as_slice())
        .map_err(db_err)?;
    txn.open_table(NAMES)
        .map_err(db_err)?
        .insert(record.file_name.as_str(), record.id.as_str())
        .map_err(db_err)?;
    txn.open_table(LISTING)
        .map_err(db_err)?
        .insert(seq, record.id.as_str())
        .map_err(db_err)?;
    adjust_counts(txn, seq, true)?;

    add_blob_reference(txn, &record.hash, record.size, Some(record.media_type))?;
    Ok(record)
}

/// Counts one more reference to a blob, creating its entry on the first.
pub(super) fn add_blob_reference(
    txn: &WriteTransaction,
    hash: &str,
    size: u64,
    media_type: Option<MediaType>,
) -> Result<(), StoreError> {
    let mut blobs = txn.open_table(BLOBS).map_err(db_err)?;
    let existing: Option<BlobRecord> = match blobs.get(hash).map_err(db_err)? {
        Some(guard) => Some(from_json(guard.value())?),
        None => None,
    };
    let blob = match existing {
        Some(mut blob) => {
            blob.refcount += 1;
            blob.media_type = blob.media_type.or(media_type);
            blob
        }
        None => BlobRecord {
            refcount: 1,
            size,
            media_type,
            // Set by `ipfs_jobs::media_stored` when a media record uses the blob.
            cid: String::new(),
        },
    };
    blobs
        .insert(hash, to_json(&blob).as_slice())
        .map_err(db_err)?;
    Ok(())
}

/// Drops one reference to a blob; returns true when it was the last, so the file may go.
pub(super) fn drop_blob_reference(txn: &WriteTransaction, hash: &str) -> Result<bool, StoreError> {
    let mut blobs = txn.open_table(BLOBS).map_err(db_err)?;
    let blob: Option<BlobRecord> = match blobs.get(hash).map_err(db_err)? {
        Some(guard) => Some(from_json(guard.value())?),
        None => None,
    };
    match blob {
        Some(mut blob) if blob.refcount > 1 => {
            blob.refcount -= 1;
            blobs
                .insert(hash, to_json(&blob).as_slice())
                .map_err(db_err)?;
            Ok(false)
        }
        _ => {
            blobs.remove(hash).map_err(db_err)?;
            Ok(true)
        }
    }
}

/// Picks the wanted name, or the name with a random suffix when it is taken, retired or reserved.
fn allocate_name(txn: &WriteTransaction, wanted: &str) -> Result<String, StoreError> {
    let names = txn.open_table(NAMES).map_err(db_err)?;
    let mut candidate = wanted.to_owned();
    loop {
        let reserved = names::RESERVED_NAMES.contains(&candidate.as_str());
        if !reserved && names.get(candidate.as_str()).map_err(db_err)?.is_none() {
            return Ok(candidate);
        }
        candidate = names::with_random_suffix(wanted);
    }
}

fn next_seq(txn: &WriteTransaction) -> Result<u64, StoreError> {
    let mut meta = txn.open_table(META).map_err(db_err)?;
    let seq = meta
        .get(META_NEXT_SEQ)
        .map_err(db_err)?
        .map(|v| v.value())
        .unwrap_or(0);
    if seq >= 1 << TREE_LEVELS {
        return Err(db_err("upload sequence exhausted"));
    }
    meta.insert(META_NEXT_SEQ, seq + 1).map_err(db_err)?;
    Ok(seq)
}

/// Key of a count-tree node: the level in the top byte, the node's index within the level below.
/// A node at `level` counts the live sequence numbers in `[index << level, (index + 1) << level)`.
fn tree_node(level: u32, index: u64) -> u64 {
    (u64::from(level) << 56) | index
}

/// Adds or removes `seq` from every count-tree node above it (levels 1 to the root).
fn adjust_counts(txn: &WriteTransaction, seq: u64, insert: bool) -> Result<(), StoreError> {
    let mut counts = txn.open_table(LISTING_COUNTS).map_err(db_err)?;
    for level in 1..=TREE_LEVELS {
        let node = tree_node(level, seq >> level);
        let current = counts
            .get(node)
            .map_err(db_err)?
            .map(|v| v.value())
            .unwrap_or(0);
        let updated = if insert {
            current + 1
        } else {
            current.saturating_sub(1)
        };
        if updated == 0 {
            counts.remove(node).map_err(db_err)?;
        } else {
            counts.insert(node, updated).map_err(db_err)?;
        }
    }
    Ok(())
}

/// Finds the sequence number of the record with `offset` newer records above it by walking down
/// the count tree, always preferring the newer (right) half.
fn nth_newest_seq(
    counts: &impl ReadableTable<u64, u64>,
    listing: &impl ReadableTable<u64, &'static str>,
    mut offset: u64,
) -> Result<u64, StoreError> {
    let mut index = 0u64;
    for level in (1..=TREE_LEVELS).rev() {
        let right = index * 2 + 1;
        let right_count = if level == 1 {
            u64::from(listing.get(right).map_err(db_err)?.is_some())
        } else {
            counts
                .get(tree_node(level - 1, right))
                .map_err(db_err)?
                .map(|v| v.value())
                .unwrap_or(0)
        };
        if right_count > offset {
            index = right;
        } else {
            offset -= right_count;
            index = right - 1;
        }
    }
    Ok(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_media(n: u32, hash: &str) -> NewMedia {
        NewMedia {
            id: uuid::Uuid::new_v4().to_string(),
            wanted_name: format!("file{n}.png"),
            media_type: MediaType::Png,
            size: 10,
            width: Some(1),
            height: Some(1),
            frames: Some(1),
            duration_secs: None,
            alt: None,
            hash: hash.to_owned(),
            cid: String::new(),
            uploaded_at: "2026-01-01T00:00:00Z".to_owned(),
        }
    }

    fn open_temp() -> (tempfile::TempDir, Index) {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(&dir.path().join("kura.redb")).unwrap();
        (dir, index)
    }

    #[test]
    fn pages_are_newest_first_across_deletions() {
        let (_dir, index) = open_temp();
        let mut ids = Vec::new();
        for n in 0..57 {
            ids.push(
                index
                    .insert_media(new_media(n, &format!("{n:064}")))
                    .unwrap()
                    .id,
            );
        }
        // Delete every third record so the sequence space has gaps.
        for id in ids.iter().step_by(3) {
            index.delete_media(id).unwrap().unwrap();
        }
        let live: Vec<&String> = ids
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 3 != 0)
            .map(|(_, id)| id)
            .rev()
            .collect();
        for limit in [1u64, 5, 7, 100] {
            for offset in 0..live.len() as u64 + 2 {
                let (items, total) = index.list_page(offset, limit).unwrap();
                assert_eq!(total, live.len() as u64);
                let expected: Vec<&String> = live
                    .iter()
                    .skip(offset as usize)
                    .take(limit as usize)
                    .copied()
                    .collect();
                let got: Vec<&String> = items.iter().map(|r| &r.id).collect();
                assert_eq!(got, expected, "offset {offset} limit {limit}");
            }
        }
    }

    #[test]
    fn refcount_tracks_shared_blob() {
        let (_dir, index) = open_temp();
        let hash = "ab".repeat(32);
        let first = index.insert_media(new_media(1, &hash)).unwrap();
        let second = index.insert_media(new_media(2, &hash)).unwrap();
        assert_eq!(index.get_blob(&hash).unwrap().unwrap().refcount, 2);
        let deleted = index.delete_media(&first.id).unwrap().unwrap();
        assert!(!deleted.blob_unreferenced);
        assert_eq!(index.get_blob(&hash).unwrap().unwrap().refcount, 1);
        let deleted = index.delete_media(&second.id).unwrap().unwrap();
        assert!(deleted.blob_unreferenced);
        assert!(index.get_blob(&hash).unwrap().is_none());
        assert!(index.delete_media(&second.id).unwrap().is_none());
    }

    #[test]
    fn names_are_unique_and_never_reused() {
        let (_dir, index) = open_temp();
        let first = index.insert_media(new_media(1, &"01".repeat(32))).unwrap();
        assert_eq!(first.file_name, "file1.png");
        let second = index.insert_media(new_media(1, &"02".repeat(32))).unwrap();
        assert_ne!(second.file_name, "file1.png");
        assert!(second.file_name.starts_with("file1_"));
        assert!(second.file_name.ends_with(".png"));
        index.delete_media(&first.id).unwrap();
        assert!(index.get_by_name("file1.png").unwrap().is_none());
        let third = index.insert_media(new_media(1, &"03".repeat(32))).unwrap();
        assert_ne!(third.file_name, "file1.png");
    }

    #[test]
    fn reserved_names_get_a_suffix() {
        let (_dir, index) = open_temp();
        let mut media = new_media(1, &"04".repeat(32));
        media.wanted_name = "healthz".to_owned();
        let record = index.insert_media(media).unwrap();
        assert!(
            record.file_name.starts_with("healthz_"),
            "{}",
            record.file_name
        );
    }

    #[test]
    fn second_open_reports_locked() {
        let (dir, _index) = open_temp();
        let err = Index::open(&dir.path().join("kura.redb")).err().unwrap();
        assert!(matches!(err, StoreError::DatabaseLocked { .. }), "{err}");
    }

    #[test]
    fn schema_version_is_recorded() {
        let (_dir, index) = open_temp();
        assert_eq!(index.schema_version().unwrap(), SCHEMA_VERSION);
    }
}
