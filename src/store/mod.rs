//! Blob files, the redb index and upload validation, behind one `Store` handle.
//!
//! Upload order: temp file (hashed as it streams) → fsync → sniff and probe → rename into the
//! blob directory → fsync the directory → one redb write transaction. A crash at any point
//! therefore leaves the whole upload or nothing visible. Deletion runs the other way: the transaction
//! commits first, then an unreferenced blob file is removed. A crash between the two leaves an
//! orphan file that no record names, never a record without its file.

pub mod blobs;
pub mod imports;
pub mod index;
pub mod inventory;
pub mod ipfs_jobs;
pub mod names;
pub mod probe;
pub mod usage;
pub mod variants;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::Mutex;

pub use blobs::{BlobDirs, BlobWriter, StagedBlob};
pub use imports::ImportSource;
pub use index::{ApiKeyRecord, BlobRecord, Deleted, Index, MediaRecord, NewMedia};
pub use inventory::IndexTotals;
pub use ipfs_jobs::{IpfsJob, IpfsStatus, JobCounts, JobKind, JobOutcome, JobState, QueuePolicy};
pub use probe::{MediaInfo, MediaType, ProbeError, ProbeLimits};
pub use usage::{Usage, UsageSnapshot};
pub use variants::VariantRecord;

/// Name of the database file inside the data directory.
pub const DB_FILE: &str = "kura.redb";

/// Lock stripes that order blob placement against blob removal for the same hash.
const LOCK_STRIPES: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "the database {} is in use by another process (a running `kura serve`?); stop it first or use another --data-dir",
        path.display()
    )]
    DatabaseLocked { path: PathBuf },
    #[error(
        "the database {} has schema version {found}, newer than the {supported} this kura supports; upgrade kura",
        path.display()
    )]
    SchemaTooNew {
        path: PathBuf,
        found: u64,
        supported: u64,
    },
    #[error("database error: {0}")]
    Database(String),
    #[error("an API key named {0:?} already exists; pick another name or revoke it first")]
    KeyExists(String),
    #[error("no API key named {0:?}; `kura key list` shows the existing names")]
    KeyNotFound(String),
    #[error("background task failed: {0}")]
    Task(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Reasons an upload is rejected, each mapped to a 4xx status by the HTTP layer.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("the file {file_name:?} is empty (0 bytes); upload a file with content")]
    Empty { file_name: String },
    #[error("the file {file_name:?} is larger than the upload limit of {limit} bytes")]
    TooLarge { file_name: String, limit: u64 },
    #[error("the file {file_name:?} is {detected}, which kura does not store; accepted types are PNG, JPEG, GIF, WebP, MP4 and WebM")]
    Unsupported {
        file_name: String,
        detected: &'static str,
    },
    #[error("the file {file_name:?} was rejected: {source}")]
    Invalid {
        file_name: String,
        #[source]
        source: ProbeError,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The store handle shared by all requests.
pub struct Store {
    data_dir: PathBuf,
    dirs: BlobDirs,
    index: Arc<Index>,
    probe_limits: ProbeLimits,
    stripes: Vec<Mutex<()>>,
    usage: Arc<Usage>,
}

impl Store {
    /// Opens the data directory: creates its folders, removes leftover temp files and opens the
    /// index. Blocks on disk I/O.
    pub fn open(data_dir: &Path, probe_limits: ProbeLimits) -> Result<Store, StoreError> {
        std::fs::create_dir_all(data_dir)?;
        // The index first: its lock keeps a second process from clearing the temp files of a
        // running server's uploads.
        let index = Index::open(&data_dir.join(DB_FILE))?;
        let dirs = BlobDirs::new(data_dir);
        let removed = dirs.prepare()?;
        if removed > 0 {
            tracing::info!(removed, "removed temp files left by an interrupted upload");
        }
        let usage = Arc::new(Usage::from_totals(&index.totals()?));
        Ok(Store {
            data_dir: data_dir.to_path_buf(),
            dirs,
            index: Arc::new(index),
            probe_limits,
            stripes: (0..LOCK_STRIPES).map(|_| Mutex::new(())).collect(),
            usage,
        })
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn index(&self) -> &Arc<Index> {
        &self.index
    }

    /// Current counts of records and blobs, for metrics.
    pub fn usage(&self) -> UsageSnapshot {
        self.usage.snapshot()
    }

    pub fn blob_path(&self, hash: &str) -> PathBuf {
        self.dirs.blob_path(hash)
    }

    pub fn blob_dirs(&self) -> &BlobDirs {
        &self.dirs
    }

    /// Returns the DAG layout of the CIDs computed for new blobs.
    pub fn cid_options(&self) -> crate::ipfs::cid_builder::CidOptions {
        self.dirs.cid_options()
    }

    /// Applies the `[ipfs]` settings: the DAG layout of the CIDs computed for new blobs, and
    /// which blob changes queue replication jobs. Call before the store is shared.
    pub fn configure_ipfs(&mut self, config: &crate::config::IpfsConfig) {
        self.dirs = self.dirs.clone().with_cid_options(config.cid_options());
        self.index.set_ipfs_policy(config.queue_policy());
    }

    /// Puts restored bytes in place of a missing or corrupt blob file. Returns false, storing
    /// nothing, when no record uses the blob any more, so a restore racing a deletion cannot
    /// leave an orphan file. The caller has checked that the staged hash is the blob's.
    pub async fn restore_blob(&self, staged: StagedBlob) -> Result<bool, StoreError> {
        let _guard = self.stripe(&staged.hash).lock().await;
        let dirs = self.dirs.clone();
        let index = self.index.clone();
        run_blocking(move || {
            if index.get_blob(&staged.hash)?.is_none() {
                return Ok(false);
            }
            dirs.replace(staged)?;
            Ok(true)
        })
        .await?
    }

    /// Starts a new upload in the temp directory.
    pub async fn writer(&self) -> Result<BlobWriter, StoreError> {
        Ok(self.dirs.writer().await?)
    }

    /// Holds the lock that orders placing and removing the blob `hash`.
    pub async fn lock_blob(&self, hash: &str) -> tokio::sync::MutexGuard<'_, ()> {
        self.stripe(hash).lock().await
    }

    fn stripe(&self, hash: &str) -> &Mutex<()> {
        let first = u8::from_str_radix(&hash[..2], 16).unwrap_or(0);
        &self.stripes[first as usize % LOCK_STRIPES]
    }

    /// Validates a staged upload (type from its bytes, header limits, full decode of images), then
    /// places its blob and records it. Nothing is stored when validation fails.
    pub async fn commit_upload(
        &self,
        staged: StagedBlob,
        file_name: &str,
        alt: Option<String>,
    ) -> Result<MediaRecord, UploadError> {
        if staged.size == 0 {
            return Err(UploadError::Empty {
                file_name: file_name.to_owned(),
            });
        }
        let media_type =
            probe::sniff(&staged.head).map_err(|unsupported| UploadError::Unsupported {
                file_name: file_name.to_owned(),
                detected: unsupported.detected,
            })?;

        let path = staged.path().to_path_buf();
        let limits = self.probe_limits.clone();
        let info = run_blocking(move || probe::probe_file(&path, media_type, &limits))
            .await?
            .map_err(|source| UploadError::Invalid {
                file_name: file_name.to_owned(),
                source,
            })?;

        let new = NewMedia {
            id: uuid::Uuid::new_v4().to_string(),
            wanted_name: names::sanitize(file_name, media_type.extension()),
            media_type,
            size: staged.size,
            width: info.width,
            height: info.height,
            frames: info.frames,
            duration_secs: info.duration_secs,
            alt,
            hash: staged.hash.clone(),
            cid: staged.cid.clone(),
            uploaded_at: now_rfc3339(),
        };

        let _guard = self.stripe(&staged.hash).lock().await;
        let dirs = self.dirs.clone();
        let index = self.index.clone();
        let usage = self.usage.clone();
        let record = run_blocking(move || {
            // The stripe lock keeps this result true until the insert below commits.
            let new_blob = index.get_blob(&staged.hash)?.is_none();
            dirs.place(staged)?;
            let record = index.insert_media(new)?;
            usage.add_media(new_blob.then_some(record.size));
            Ok::<_, StoreError>(record)
        })
        .await??;
        Ok(record)
    }

    pub async fn get_media(&self, id: &str) -> Result<Option<MediaRecord>, StoreError> {
        let index = self.index.clone();
        let id = id.to_owned();
        run_blocking(move || index.get_media(&id)).await?
    }

    pub async fn get_by_name(&self, name: &str) -> Result<Option<MediaRecord>, StoreError> {
        let index = self.index.clone();
        let name = name.to_owned();
        run_blocking(move || index.get_by_name(&name)).await?
    }

    pub async fn list_page(
        &self,
        offset: u64,
        limit: u64,
    ) -> Result<(Vec<MediaRecord>, u64), StoreError> {
        let index = self.index.clone();
        run_blocking(move || index.list_page(offset, limit)).await?
    }

    /// Deletes a record; the blob file goes too when no other record uses it.
    pub async fn delete_media(&self, id: &str) -> Result<Option<MediaRecord>, StoreError> {
        let Some(record) = self.get_media(id).await? else {
            return Ok(None);
        };
        let _guard = self.stripe(&record.hash).lock().await;
        let dirs = self.dirs.clone();
        let index = self.index.clone();
        let id = id.to_owned();
        let usage = self.usage.clone();
        run_blocking(move || {
            let Some(deleted) = index.delete_media(&id)? else {
                return Ok(None);
            };
            let freed = deleted.blob_unreferenced.then_some(deleted.record.size);
            usage.remove_media(freed);
            if deleted.blob_unreferenced {
                dirs.remove(&deleted.record.hash)?;
            }
            Ok(Some(deleted.record))
        })
        .await?
    }

    /// Returns whether any record or variant still references the blob `hash`.
    pub async fn blob_referenced(&self, hash: &str) -> Result<bool, StoreError> {
        let index = self.index.clone();
        let hash = hash.to_owned();
        Ok(run_blocking(move || index.get_blob(&hash))
            .await??
            .is_some())
    }

    /// Returns the key name when `key` is a valid API key.
    pub async fn authenticate(&self, key: &str) -> Result<Option<String>, StoreError> {
        let hash = hash_api_key(key);
        let index = self.index.clone();
        run_blocking(move || index.find_api_key(&hash)).await?
    }
}

/// Runs blocking store work on tokio's blocking pool.
async fn run_blocking<T, F>(work: F) -> Result<T, StoreError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|err| StoreError::Task(err.to_string()))
}

pub fn hash_api_key(key: &str) -> [u8; 32] {
    *blake3::hash(key.as_bytes()).as_bytes()
}

/// Creates a random API key, stores its hash under `name` and returns the key.
pub fn create_api_key(index: &Index, name: &str) -> Result<String, StoreError> {
    use rand::Rng;
    let secret: String = rand::rngs::OsRng
        .sample_iter(&rand::distributions::Alphanumeric)
        .take(40)
        .map(char::from)
        .collect();
    let key = format!("kura_{secret}");
    let hash = hash_api_key(&key);
    index.create_api_key(
        ApiKeyRecord {
            name: name.to_owned(),
            hash: blake3::Hash::from(hash).to_hex().to_string(),
            prefix: key[..9].to_owned(),
            created_at: now_rfc3339(),
        },
        &hash,
    )?;
    Ok(key)
}

pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .expect("zero nanoseconds are valid")
        .format(&time::format_description::well_known::Rfc3339)
        .expect("RFC 3339 formatting of the current time succeeds")
}
