//! The IPFS side of the index: blobs by CID and the durable replication queue.
//!
//! Every blob has at most one job, keyed by its BLAKE3 hash. An `add` job pins the blob on the
//! node and stays in the table as `pinned` afterwards, so the table is also the replication
//! status of every blob. An `unpin` job is queued when the last record of a blob is deleted and
//! disappears once the node has dropped the pin. Jobs are written in the same transaction as the
//! blob change that causes them, so a crash cannot separate the two.
//!
//! `DUE` lists pending jobs by due time and `COUNTS` counts jobs per kind and state. Both are
//! kept in step with `JOBS` by [`put_job`], the only function that writes any of the three.

use std::collections::HashSet;
use std::time::{SystemTime, UNIX_EPOCH};

use redb::{ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::index::{
    db_err, from_json, to_json, BlobRecord, Index, MediaRecord, BLOBS, MEDIA, META,
};
use super::StoreError;

/// Blob hash → `IpfsJob` as JSON.
const JOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("ipfs_jobs_v1");
/// (due time in Unix milliseconds, blob hash) → nothing, for every pending job.
const DUE: TableDefinition<(u64, &str), ()> = TableDefinition::new("ipfs_jobs_due_v1");
/// `kind/state` → number of jobs of that kind in that state.
const COUNTS: TableDefinition<&str, u64> = TableDefinition::new("ipfs_job_counts_v1");
/// CIDv1 in base32 → blob hash.
const BY_CID: TableDefinition<&str, &str> = TableDefinition::new("blobs_by_cid_v1");

/// Set while every blob has a job. Storing or removing a blob while replication is off removes
/// it, so that turning replication on later queues what was missed.
const META_QUEUE_IN_SYNC: &str = "ipfs_queue_in_sync";
/// Set once every blob record carries a CID, so start-up stops looking for old ones.
const META_CIDS_COMPLETE: &str = "ipfs_cids_complete";
const META_NEXT_JOB_ID: &str = "ipfs_next_job_id";

/// Operation the node performs on a blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobKind {
    Add,
    Unpin,
}

/// State of a job. `Failed` is final until an operator retries it (`kura verify --repair`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Pending,
    Pinned,
    Failed,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Pinned => "pinned",
            JobState::Failed => "failed",
        }
    }
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Add => "add",
            JobKind::Unpin => "unpin",
        }
    }
}

/// One replication job as the queue stores it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IpfsJob {
    /// Unique per queued job, so a worker that finishes an old job for a blob cannot overwrite
    /// the newer job that replaced it.
    pub id: u64,
    pub kind: JobKind,
    pub state: JobState,
    /// CIDv1 (base32) the node must report for the blob.
    pub cid: String,
    /// Leaf size in bytes the CID was computed with, sent as the add's chunker.
    pub chunk_size: usize,
    /// Calls made to the node for this job so far.
    pub attempts: u32,
    #[serde(default)]
    pub last_error: Option<String>,
    /// Unix milliseconds after which a pending job may run.
    pub next_attempt_ms: u64,
    /// RFC 3339 in UTC.
    #[serde(default)]
    pub pinned_at: Option<String>,
    pub created_at: String,
}

/// Queueing rules taken from the `[ipfs]` configuration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueuePolicy {
    /// Replication is on: new blobs queue an add and removed blobs an unpin.
    pub enabled: bool,
    pub unpin_on_delete: bool,
    /// Leaf size in bytes of the CIDs computed at upload.
    pub chunk_size: usize,
}

/// Replication state of a blob as the API shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct IpfsStatus {
    pub state: JobState,
    pub pinned_at: Option<String>,
    pub error: Option<String>,
}

/// Result of one job attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum JobOutcome {
    /// The node stores the blob under the expected CID and pins it.
    Pinned,
    /// The node no longer pins the blob; the job is removed.
    Unpinned,
    /// The call failed in a way that may pass; try again after `delay_ms`.
    Retry { error: String, delay_ms: u64 },
    /// Retrying cannot help, e.g. the node computed another CID.
    Failed { error: String },
}

/// Number of jobs per kind and state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobCounts {
    pub add_pending: u64,
    pub add_pinned: u64,
    pub add_failed: u64,
    pub unpin_pending: u64,
    pub unpin_failed: u64,
}

impl JobCounts {
    /// Returns the counts under the state names that `kura stats` and `/metrics` use: add jobs
    /// as `pending`, `pinned` and `failed`, unpins as `unpin_pending` and `unpin_failed`.
    pub fn by_state(&self) -> [(&'static str, u64); 5] {
        [
            ("pending", self.add_pending),
            ("pinned", self.add_pinned),
            ("failed", self.add_failed),
            ("unpin_pending", self.unpin_pending),
            ("unpin_failed", self.unpin_failed),
        ]
    }
}

/// Queue changes made by a start-up pass over the blobs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    pub adds_queued: u64,
    pub unpins_queued: u64,
    pub jobs_dropped: u64,
}

pub(super) fn create_tables(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(JOBS).map_err(db_err)?;
    txn.open_table(DUE).map_err(db_err)?;
    txn.open_table(COUNTS).map_err(db_err)?;
    txn.open_table(BY_CID).map_err(db_err)?;
    Ok(())
}

pub fn unix_ms_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or(0)
}

fn count_key(kind: JobKind, state: JobState) -> String {
    format!("{}/{}", kind.as_str(), state.as_str())
}

/// Replaces the job of `hash` (`old`, as stored) with `new`, or removes it when `new` is `None`,
/// keeping the due list and the counts in step.
fn put_job(
    txn: &WriteTransaction,
    hash: &str,
    old: Option<&IpfsJob>,
    new: Option<&IpfsJob>,
) -> Result<(), StoreError> {
    let mut due = txn.open_table(DUE).map_err(db_err)?;
    let mut counts = txn.open_table(COUNTS).map_err(db_err)?;
    if let Some(old) = old {
        if old.state == JobState::Pending {
            due.remove((old.next_attempt_ms, hash)).map_err(db_err)?;
        }
        let key = count_key(old.kind, old.state);
        let current = counts
            .get(key.as_str())
            .map_err(db_err)?
            .map(|v| v.value())
            .unwrap_or(0);
        if current <= 1 {
            counts.remove(key.as_str()).map_err(db_err)?;
        } else {
            counts.insert(key.as_str(), current - 1).map_err(db_err)?;
        }
    }
    let mut jobs = txn.open_table(JOBS).map_err(db_err)?;
    match new {
        Some(new) => {
            if new.state == JobState::Pending {
                due.insert((new.next_attempt_ms, hash), ())
                    .map_err(db_err)?;
            }
            let key = count_key(new.kind, new.state);
            let current = counts
                .get(key.as_str())
                .map_err(db_err)?
                .map(|v| v.value())
                .unwrap_or(0);
            counts.insert(key.as_str(), current + 1).map_err(db_err)?;
            jobs.insert(hash, to_json(new).as_slice()).map_err(db_err)?;
        }
        None => {
            jobs.remove(hash).map_err(db_err)?;
        }
    }
    Ok(())
}

fn read_job(
    jobs: &impl ReadableTable<&'static str, &'static [u8]>,
    hash: &str,
) -> Result<Option<IpfsJob>, StoreError> {
    let found = jobs.get(hash).map_err(db_err)?;
    found.map(|guard| from_json(guard.value())).transpose()
}

fn next_job_id(txn: &WriteTransaction) -> Result<u64, StoreError> {
    let mut meta = txn.open_table(META).map_err(db_err)?;
    let id = meta
        .get(META_NEXT_JOB_ID)
        .map_err(db_err)?
        .map(|v| v.value())
        .unwrap_or(1);
    meta.insert(META_NEXT_JOB_ID, id + 1).map_err(db_err)?;
    Ok(id)
}

fn set_meta_flag(txn: &WriteTransaction, key: &str, set: bool) -> Result<(), StoreError> {
    let mut meta = txn.open_table(META).map_err(db_err)?;
    if set {
        meta.insert(key, 1).map_err(db_err)?;
    } else {
        meta.remove(key).map_err(db_err)?;
    }
    Ok(())
}

/// Queues a new job for `hash`, replacing whatever job the blob had.
fn queue_job(
    txn: &WriteTransaction,
    hash: &str,
    kind: JobKind,
    cid: &str,
    chunk_size: usize,
) -> Result<(), StoreError> {
    let old = read_job(&txn.open_table(JOBS).map_err(db_err)?, hash)?;
    let job = IpfsJob {
        id: next_job_id(txn)?,
        kind,
        state: JobState::Pending,
        cid: cid.to_owned(),
        chunk_size,
        attempts: 0,
        last_error: None,
        next_attempt_ms: unix_ms_now(),
        pinned_at: None,
        created_at: super::now_rfc3339(),
    };
    put_job(txn, hash, old.as_ref(), Some(&job))
}

/// Completes a media record just inserted into `MEDIA` with its blob's IPFS state. It indexes
/// the blob's CID, queues an add when the blob has no add job yet (a new blob, or one whose unpin
/// is still pending), and sets the record's replication status.
///
/// The blob's recorded CID is the one pinned, so it replaces the record's CID when the two
/// differ, which happens when the same bytes were uploaded before the DAG layout settings
/// changed. A blob recorded before kura computed CIDs takes the record's CID instead.
pub(super) fn media_stored(
    txn: &WriteTransaction,
    policy: &QueuePolicy,
    record: &mut MediaRecord,
) -> Result<(), StoreError> {
    let hash = record.hash.as_str();
    {
        let mut blobs = txn.open_table(BLOBS).map_err(db_err)?;
        let stored = match blobs.get(hash).map_err(db_err)? {
            Some(guard) => Some(from_json::<BlobRecord>(guard.value())?),
            None => None,
        };
        if let Some(mut blob) = stored {
            if blob.cid.is_empty() {
                blob.cid = record.cid.clone();
                blobs
                    .insert(hash, to_json(&blob).as_slice())
                    .map_err(db_err)?;
            } else if blob.cid != record.cid {
                record.cid = blob.cid;
                txn.open_table(MEDIA)
                    .map_err(db_err)?
                    .insert(record.id.as_str(), to_json(&*record).as_slice())
                    .map_err(db_err)?;
            }
        }
    }
    if record.cid.is_empty() {
        return Ok(());
    }
    txn.open_table(BY_CID)
        .map_err(db_err)?
        .insert(record.cid.as_str(), hash)
        .map_err(db_err)?;

    let job = read_job(&txn.open_table(JOBS).map_err(db_err)?, hash)?;
    let has_add = job.is_some_and(|job| job.kind == JobKind::Add);
    if !has_add {
        if policy.enabled {
            queue_job(txn, hash, JobKind::Add, &record.cid, policy.chunk_size)?;
        } else {
            set_meta_flag(txn, META_QUEUE_IN_SYNC, false)?;
        }
    }
    record.ipfs = status_in(txn, policy, hash)?;
    Ok(())
}

/// Drops the CID entry of a blob whose last reference is gone and, while replication is on,
/// queues its unpin (or removes its job when unpinning is off). `record_cid` is the CID of the
/// deleted record, empty for records written before kura computed CIDs.
pub(super) fn blob_removed(
    txn: &WriteTransaction,
    policy: &QueuePolicy,
    hash: &str,
    record_cid: &str,
) -> Result<(), StoreError> {
    let old = read_job(&txn.open_table(JOBS).map_err(db_err)?, hash)?;
    // The job's CID is the pinned one; the record's can only differ for pre-CID records.
    let cid = match &old {
        Some(job) => job.cid.clone(),
        None => record_cid.to_owned(),
    };
    if !cid.is_empty() {
        let mut by_cid = txn.open_table(BY_CID).map_err(db_err)?;
        let maps_here = by_cid
            .get(cid.as_str())
            .map_err(db_err)?
            .is_some_and(|guard| guard.value() == hash);
        if maps_here {
            by_cid.remove(cid.as_str()).map_err(db_err)?;
        }
    }
    if !policy.enabled {
        set_meta_flag(txn, META_QUEUE_IN_SYNC, false)?;
        return Ok(());
    }
    if policy.unpin_on_delete && !cid.is_empty() {
        // The unpin runs even when the add never finished: the node may have pinned the blob
        // before the response was lost, and unpinning what is not pinned succeeds.
        return queue_job(txn, hash, JobKind::Unpin, &cid, policy.chunk_size);
    }
    if old.is_some() {
        put_job(txn, hash, old.as_ref(), None)?;
    }
    Ok(())
}

/// Returns the replication status shown for a live blob, or `None` while replication is off.
fn status_of(
    jobs: &impl ReadableTable<&'static str, &'static [u8]>,
    policy: &QueuePolicy,
    hash: &str,
) -> Result<Option<IpfsStatus>, StoreError> {
    if !policy.enabled {
        return Ok(None);
    }
    let status = match read_job(jobs, hash)? {
        Some(job) if job.kind == JobKind::Add => IpfsStatus {
            state: job.state,
            pinned_at: job.pinned_at,
            error: job.last_error,
        },
        // No add job yet (the blob predates replication, and the start-up pass will queue it),
        // or a leftover unpin that a new upload of the same bytes is about to replace.
        _ => IpfsStatus {
            state: JobState::Pending,
            pinned_at: None,
            error: None,
        },
    };
    Ok(Some(status))
}

fn status_in(
    txn: &WriteTransaction,
    policy: &QueuePolicy,
    hash: &str,
) -> Result<Option<IpfsStatus>, StoreError> {
    status_of(&txn.open_table(JOBS).map_err(db_err)?, policy, hash)
}

impl Index {
    /// Sets which blob changes queue IPFS jobs. Only the first call has an effect, because the
    /// policy must not change under a running worker.
    pub fn set_ipfs_policy(&self, policy: QueuePolicy) {
        let _ = self.ipfs_policy.set(policy);
    }

    pub fn ipfs_policy(&self) -> QueuePolicy {
        self.ipfs_policy.get().copied().unwrap_or_default()
    }

    /// Resolves when a commit queued a job since the last call returned.
    pub async fn ipfs_job_queued(&self) {
        self.ipfs_jobs_queued.notified().await;
    }

    /// Adds the replication status to records, and the blob's CID to records written before
    /// kura computed CIDs.
    pub(super) fn annotate(
        &self,
        txn: &ReadTransaction,
        records: &mut [MediaRecord],
    ) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let policy = self.ipfs_policy();
        let jobs = txn.open_table(JOBS).map_err(db_err)?;
        let blobs = txn.open_table(BLOBS).map_err(db_err)?;
        for record in records {
            record.ipfs = status_of(&jobs, &policy, &record.hash)?;
            if record.cid.is_empty() {
                if let Some(guard) = blobs.get(record.hash.as_str()).map_err(db_err)? {
                    let blob: BlobRecord = from_json(guard.value())?;
                    record.cid = blob.cid;
                }
            }
        }
        Ok(())
    }

    /// Returns the hash and record of the blob with this CID (CIDv1, base32).
    pub fn blob_by_cid(&self, cid: &str) -> Result<Option<(String, BlobRecord)>, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let by_cid = txn.open_table(BY_CID).map_err(db_err)?;
        let Some(hash) = by_cid
            .get(cid)
            .map_err(db_err)?
            .map(|g| g.value().to_owned())
        else {
            return Ok(None);
        };
        let blobs = txn.open_table(BLOBS).map_err(db_err)?;
        let found = blobs.get(hash.as_str()).map_err(db_err)?;
        match found {
            Some(guard) => Ok(Some((hash, from_json(guard.value())?))),
            None => Ok(None),
        }
    }

    /// Returns up to `limit` blobs in hash order, starting after `after`.
    pub fn blobs_page(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, BlobRecord)>, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let blobs = txn.open_table(BLOBS).map_err(db_err)?;
        let range = match after {
            Some(after) => blobs.range(after..),
            None => blobs.iter(),
        }
        .map_err(db_err)?;
        let mut page = Vec::with_capacity(limit);
        for entry in range {
            let (hash, value) = entry.map_err(db_err)?;
            if Some(hash.value()) == after {
                continue;
            }
            if page.len() == limit {
                break;
            }
            page.push((hash.value().to_owned(), from_json(value.value())?));
        }
        Ok(page)
    }

    /// Returns the blobs recorded before kura computed CIDs, or an empty list at once when an
    /// earlier pass found none.
    pub fn blobs_without_cid(&self) -> Result<Vec<String>, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let meta = txn.open_table(META).map_err(db_err)?;
        if meta.get(META_CIDS_COMPLETE).map_err(db_err)?.is_some() {
            return Ok(Vec::new());
        }
        let blobs = txn.open_table(BLOBS).map_err(db_err)?;
        let mut missing = Vec::new();
        for entry in blobs.iter().map_err(db_err)? {
            let (hash, value) = entry.map_err(db_err)?;
            let blob: BlobRecord = from_json(value.value())?;
            // Blobs that only cached variants use are never pinned, so they need no CID.
            if blob.cid.is_empty() && blob.media_type.is_some() {
                missing.push(hash.value().to_owned());
            }
        }
        Ok(missing)
    }

    /// Records that every blob has a CID, so later start-ups skip the search.
    pub fn mark_cids_complete(&self) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(db_err)?;
        set_meta_flag(&txn, META_CIDS_COMPLETE, true)?;
        txn.commit().map_err(db_err)
    }

    /// Records the CID computed for an existing blob that had none. Returns false when the blob
    /// is gone or already has a CID.
    pub fn set_blob_cid(&self, hash: &str, cid: &str) -> Result<bool, StoreError> {
        let txn = self.db.begin_write().map_err(db_err)?;
        {
            let mut blobs = txn.open_table(BLOBS).map_err(db_err)?;
            let mut blob: BlobRecord = match blobs.get(hash).map_err(db_err)? {
                Some(guard) => from_json(guard.value())?,
                None => return Ok(false),
            };
            if !blob.cid.is_empty() {
                return Ok(false);
            }
            blob.cid = cid.to_owned();
            blobs
                .insert(hash, to_json(&blob).as_slice())
                .map_err(db_err)?;
            txn.open_table(BY_CID)
                .map_err(db_err)?
                .insert(cid, hash)
                .map_err(db_err)?;
            // The blob had no CID, so it cannot have had a job, and the start-up pass queues it.
            set_meta_flag(&txn, META_QUEUE_IN_SYNC, false)?;
        }
        txn.commit().map_err(db_err)?;
        Ok(true)
    }

    /// Brings the queue in line with the blobs after replication was off or CIDs were added.
    /// Every blob without a job gets an add. Every job whose blob is gone becomes an unpin, or
    /// is removed when unpinning is off. Does nothing while replication is off or when no blob
    /// changed since the last pass.
    pub fn reconcile_ipfs_jobs(&self) -> Result<ReconcileReport, StoreError> {
        let policy = self.ipfs_policy();
        let mut report = ReconcileReport::default();
        if !policy.enabled {
            return Ok(report);
        }
        let txn = self.db.begin_write().map_err(db_err)?;
        {
            let in_sync = txn
                .open_table(META)
                .map_err(db_err)?
                .get(META_QUEUE_IN_SYNC)
                .map_err(db_err)?
                .is_some();
            if in_sync {
                return Ok(report);
            }

            let mut unqueued = Vec::new();
            let mut live = HashSet::new();
            let mut all_have_cids = true;
            {
                let blobs = txn.open_table(BLOBS).map_err(db_err)?;
                let jobs = txn.open_table(JOBS).map_err(db_err)?;
                for entry in blobs.iter().map_err(db_err)? {
                    let (hash, value) = entry.map_err(db_err)?;
                    let hash = hash.value().to_owned();
                    let blob: BlobRecord = from_json(value.value())?;
                    if blob.cid.is_empty() {
                        // A blob that only cached variants use is never pinned.
                        all_have_cids &= blob.media_type.is_none();
                    } else if jobs.get(hash.as_str()).map_err(db_err)?.is_none() {
                        unqueued.push((hash.clone(), blob.cid));
                    }
                    live.insert(hash);
                }
            }
            let mut orphaned = Vec::new();
            {
                let jobs = txn.open_table(JOBS).map_err(db_err)?;
                for entry in jobs.iter().map_err(db_err)? {
                    let (hash, value) = entry.map_err(db_err)?;
                    let job: IpfsJob = from_json(value.value())?;
                    if job.kind == JobKind::Add && !live.contains(hash.value()) {
                        orphaned.push((hash.value().to_owned(), job));
                    }
                }
            }

            for (hash, cid) in unqueued {
                queue_job(&txn, &hash, JobKind::Add, &cid, policy.chunk_size)?;
                report.adds_queued += 1;
            }
            for (hash, job) in orphaned {
                if policy.unpin_on_delete {
                    queue_job(&txn, &hash, JobKind::Unpin, &job.cid, job.chunk_size)?;
                    report.unpins_queued += 1;
                } else {
                    put_job(&txn, &hash, Some(&job), None)?;
                    report.jobs_dropped += 1;
                }
            }
            set_meta_flag(&txn, META_QUEUE_IN_SYNC, all_have_cids)?;
        }
        txn.commit().map_err(db_err)?;
        if report.adds_queued + report.unpins_queued > 0 {
            self.ipfs_jobs_queued.notify_one();
        }
        Ok(report)
    }

    /// Returns up to `limit` pending jobs due at `now_ms`, oldest due first, leaving out blobs in
    /// `skip` (jobs already running).
    pub fn due_ipfs_jobs(
        &self,
        now_ms: u64,
        limit: usize,
        skip: &HashSet<String>,
    ) -> Result<Vec<(String, IpfsJob)>, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let due = txn.open_table(DUE).map_err(db_err)?;
        let jobs = txn.open_table(JOBS).map_err(db_err)?;
        let mut found = Vec::new();
        for entry in due.iter().map_err(db_err)? {
            if found.len() == limit {
                break;
            }
            let (key, _) = entry.map_err(db_err)?;
            let (due_ms, hash) = key.value();
            if due_ms > now_ms {
                break;
            }
            if skip.contains(hash) {
                continue;
            }
            let job = read_job(&jobs, hash)?
                .ok_or_else(|| db_err(format!("due list names missing IPFS job {hash}")))?;
            found.push((hash.to_owned(), job));
        }
        Ok(found)
    }

    /// Returns when the earliest pending job outside `skip` is due, in Unix milliseconds.
    pub fn next_ipfs_due_ms(&self, skip: &HashSet<String>) -> Result<Option<u64>, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let due = txn.open_table(DUE).map_err(db_err)?;
        for entry in due.iter().map_err(db_err)? {
            let (key, _) = entry.map_err(db_err)?;
            let (due_ms, hash) = key.value();
            if !skip.contains(hash) {
                return Ok(Some(due_ms));
            }
        }
        Ok(None)
    }

    /// Records how an attempt at job `job_id` of `hash` ended. Returns false, changing nothing,
    /// when the blob's job was replaced while the attempt ran.
    pub fn finish_ipfs_job(
        &self,
        hash: &str,
        job_id: u64,
        outcome: &JobOutcome,
    ) -> Result<bool, StoreError> {
        let txn = self.db.begin_write().map_err(db_err)?;
        {
            let old = match read_job(&txn.open_table(JOBS).map_err(db_err)?, hash)? {
                Some(job) if job.id == job_id => job,
                _ => return Ok(false),
            };
            let mut job = old.clone();
            job.attempts = job.attempts.saturating_add(1);
            let new = match outcome {
                JobOutcome::Pinned => {
                    job.state = JobState::Pinned;
                    job.pinned_at = Some(super::now_rfc3339());
                    job.last_error = None;
                    Some(job)
                }
                JobOutcome::Unpinned => None,
                JobOutcome::Retry { error, delay_ms } => {
                    job.last_error = Some(error.clone());
                    job.next_attempt_ms = unix_ms_now().saturating_add(*delay_ms);
                    Some(job)
                }
                JobOutcome::Failed { error } => {
                    job.state = JobState::Failed;
                    job.last_error = Some(error.clone());
                    Some(job)
                }
            };
            put_job(&txn, hash, Some(&old), new.as_ref())?;
        }
        txn.commit().map_err(db_err)?;
        Ok(true)
    }

    /// Makes every failed job pending again with a fresh attempt count. Returns how many.
    pub fn retry_failed_ipfs_jobs(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_write().map_err(db_err)?;
        let mut retried = 0;
        {
            let failed: Vec<(String, IpfsJob)> = {
                let jobs = txn.open_table(JOBS).map_err(db_err)?;
                let mut failed = Vec::new();
                for entry in jobs.iter().map_err(db_err)? {
                    let (hash, value) = entry.map_err(db_err)?;
                    let job: IpfsJob = from_json(value.value())?;
                    if job.state == JobState::Failed {
                        failed.push((hash.value().to_owned(), job));
                    }
                }
                failed
            };
            for (hash, old) in failed {
                let mut job = old.clone();
                job.state = JobState::Pending;
                job.attempts = 0;
                job.next_attempt_ms = unix_ms_now();
                put_job(&txn, &hash, Some(&old), Some(&job))?;
                retried += 1;
            }
        }
        txn.commit().map_err(db_err)?;
        if retried > 0 {
            self.ipfs_jobs_queued.notify_one();
        }
        Ok(retried)
    }

    pub fn ipfs_job(&self, hash: &str) -> Result<Option<IpfsJob>, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        read_job(&txn.open_table(JOBS).map_err(db_err)?, hash)
    }

    pub fn ipfs_job_counts(&self) -> Result<JobCounts, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let counts = txn.open_table(COUNTS).map_err(db_err)?;
        let get = |kind, state| -> Result<u64, StoreError> {
            let key = count_key(kind, state);
            Ok(counts
                .get(key.as_str())
                .map_err(db_err)?
                .map(|v| v.value())
                .unwrap_or(0))
        };
        Ok(JobCounts {
            add_pending: get(JobKind::Add, JobState::Pending)?,
            add_pinned: get(JobKind::Add, JobState::Pinned)?,
            add_failed: get(JobKind::Add, JobState::Failed)?,
            unpin_pending: get(JobKind::Unpin, JobState::Pending)?,
            unpin_failed: get(JobKind::Unpin, JobState::Failed)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::index::NewMedia;
    use crate::store::MediaType;

    const ENABLED: QueuePolicy = QueuePolicy {
        enabled: true,
        unpin_on_delete: true,
        chunk_size: 262_144,
    };

    fn open(policy: QueuePolicy) -> (tempfile::TempDir, Index) {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(&dir.path().join("kura.redb")).unwrap();
        index.set_ipfs_policy(policy);
        (dir, index)
    }

    fn new_media(n: u8) -> NewMedia {
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
            hash: format!("{n:02x}").repeat(32),
            cid: format!("bafkreitest{n}"),
            uploaded_at: "2026-01-01T00:00:00Z".to_owned(),
        }
    }

    fn due(index: &Index) -> Vec<(String, IpfsJob)> {
        index
            .due_ipfs_jobs(unix_ms_now() + 1, 100, &HashSet::new())
            .unwrap()
    }

    #[test]
    fn upload_queues_one_add_per_blob() {
        let (_dir, index) = open(ENABLED);
        let first = index.insert_media(new_media(1)).unwrap();
        let second = index.insert_media(new_media(1)).unwrap();
        assert_eq!(first.ipfs.as_ref().unwrap().state, JobState::Pending);
        assert_eq!(second.ipfs.as_ref().unwrap().state, JobState::Pending);
        let jobs = due(&index);
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].1.kind, JobKind::Add);
        assert_eq!(jobs[0].1.cid, "bafkreitest1");
        assert_eq!(index.ipfs_job_counts().unwrap().add_pending, 1);
        let (hash, blob) = index.blob_by_cid("bafkreitest1").unwrap().unwrap();
        assert_eq!(hash, first.hash);
        assert_eq!(blob.refcount, 2);
    }

    #[test]
    fn disabled_policy_queues_nothing() {
        let (_dir, index) = open(QueuePolicy::default());
        let record = index.insert_media(new_media(2)).unwrap();
        assert!(record.ipfs.is_none());
        assert!(due(&index).is_empty());
        assert_eq!(index.ipfs_job_counts().unwrap(), JobCounts::default());
        // The CID is indexed whether or not replication is on.
        assert!(index.blob_by_cid("bafkreitest2").unwrap().is_some());
    }

    #[test]
    fn reupload_queues_blob_without_job() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kura.redb");
        let index = Index::open(&path).unwrap();
        index.set_ipfs_policy(QueuePolicy::default());
        index.insert_media(new_media(12)).unwrap();
        drop(index);

        let index = Index::open(&path).unwrap();
        index.set_ipfs_policy(ENABLED);
        let record = index.insert_media(new_media(12)).unwrap();
        assert_eq!(record.ipfs.unwrap().state, JobState::Pending);
        let jobs = due(&index);
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].1.kind, JobKind::Add);
    }

    #[test]
    fn finish_moves_job_through_states() {
        let (_dir, index) = open(ENABLED);
        let record = index.insert_media(new_media(3)).unwrap();
        let (hash, job) = due(&index).remove(0);

        let retry = JobOutcome::Retry {
            error: "node unreachable".to_owned(),
            delay_ms: 60_000,
        };
        assert!(index.finish_ipfs_job(&hash, job.id, &retry).unwrap());
        assert!(
            due(&index).is_empty(),
            "a retry is not due before its delay"
        );
        let stored = index.ipfs_job(&hash).unwrap().unwrap();
        assert_eq!(stored.attempts, 1);
        assert_eq!(stored.last_error.as_deref(), Some("node unreachable"));
        let shown = index.get_media(&record.id).unwrap().unwrap().ipfs.unwrap();
        assert_eq!(shown.state, JobState::Pending);
        assert_eq!(shown.error.as_deref(), Some("node unreachable"));

        assert!(index
            .finish_ipfs_job(&hash, job.id, &JobOutcome::Pinned)
            .unwrap());
        let shown = index.get_media(&record.id).unwrap().unwrap().ipfs.unwrap();
        assert_eq!(shown.state, JobState::Pinned);
        assert!(shown.pinned_at.is_some());
        assert!(shown.error.is_none());
        let counts = index.ipfs_job_counts().unwrap();
        assert_eq!(counts.add_pending, 0);
        assert_eq!(counts.add_pinned, 1);
        assert_eq!(index.next_ipfs_due_ms(&HashSet::new()).unwrap(), None);
    }

    #[test]
    fn last_delete_queues_unpin() {
        let (_dir, index) = open(ENABLED);
        let record = index.insert_media(new_media(4)).unwrap();
        let (hash, add) = due(&index).remove(0);
        index
            .finish_ipfs_job(&hash, add.id, &JobOutcome::Pinned)
            .unwrap();

        index.delete_media(&record.id).unwrap().unwrap();
        let (_, unpin) = due(&index).remove(0);
        assert_eq!(unpin.kind, JobKind::Unpin);
        assert_ne!(unpin.id, add.id);
        assert!(index.blob_by_cid("bafkreitest4").unwrap().is_none());
        let counts = index.ipfs_job_counts().unwrap();
        assert_eq!(counts.add_pinned, 0);
        assert_eq!(counts.unpin_pending, 1);

        // The finished add of the replaced job changes nothing.
        assert!(!index
            .finish_ipfs_job(&hash, add.id, &JobOutcome::Pinned)
            .unwrap());
        assert!(index
            .finish_ipfs_job(&hash, unpin.id, &JobOutcome::Unpinned)
            .unwrap());
        assert!(index.ipfs_job(&hash).unwrap().is_none());
        assert_eq!(index.ipfs_job_counts().unwrap(), JobCounts::default());
    }

    #[test]
    fn reupload_replaces_pending_unpin() {
        let (_dir, index) = open(ENABLED);
        let record = index.insert_media(new_media(5)).unwrap();
        index.delete_media(&record.id).unwrap().unwrap();
        index.insert_media(new_media(5)).unwrap();
        let jobs = due(&index);
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].1.kind, JobKind::Add);
        assert_eq!(index.ipfs_job_counts().unwrap().unpin_pending, 0);
    }

    #[test]
    fn running_jobs_are_skipped() {
        let (_dir, index) = open(ENABLED);
        index.insert_media(new_media(6)).unwrap();
        index.insert_media(new_media(7)).unwrap();
        let all = due(&index);
        assert_eq!(all.len(), 2);
        let running: HashSet<String> = [all[0].0.clone()].into();
        let rest = index
            .due_ipfs_jobs(unix_ms_now() + 1, 100, &running)
            .unwrap();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].0, all[1].0);
    }

    #[test]
    fn failed_jobs_can_be_retried() {
        let (_dir, index) = open(ENABLED);
        index.insert_media(new_media(8)).unwrap();
        let (hash, job) = due(&index).remove(0);
        let failed = JobOutcome::Failed {
            error: "CID mismatch".to_owned(),
        };
        index.finish_ipfs_job(&hash, job.id, &failed).unwrap();
        assert!(due(&index).is_empty());
        assert_eq!(index.ipfs_job_counts().unwrap().add_failed, 1);
        assert_eq!(index.retry_failed_ipfs_jobs().unwrap(), 1);
        assert_eq!(due(&index).len(), 1);
        assert_eq!(index.ipfs_job_counts().unwrap().add_pending, 1);
    }

    #[test]
    fn reconcile_queues_blobs_changed_while_disabled() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kura.redb");

        // Replication on: one blob is pinned.
        let index = Index::open(&path).unwrap();
        index.set_ipfs_policy(ENABLED);
        let pinned = index.insert_media(new_media(9)).unwrap();
        let (hash, job) = due(&index).remove(0);
        index
            .finish_ipfs_job(&hash, job.id, &JobOutcome::Pinned)
            .unwrap();
        drop(index);

        // Replication off: the pinned blob is deleted and another one is stored.
        let index = Index::open(&path).unwrap();
        index.set_ipfs_policy(QueuePolicy::default());
        index.delete_media(&pinned.id).unwrap().unwrap();
        let unqueued = index.insert_media(new_media(10)).unwrap();
        drop(index);

        // Replication on again: the pass catches up with both changes.
        let index = Index::open(&path).unwrap();
        index.set_ipfs_policy(ENABLED);
        let report = index.reconcile_ipfs_jobs().unwrap();
        assert_eq!(report.adds_queued, 1, "{report:?}");
        assert_eq!(report.unpins_queued, 1, "{report:?}");
        let kinds: Vec<(String, JobKind)> = due(&index)
            .into_iter()
            .map(|(hash, job)| (hash, job.kind))
            .collect();
        assert!(kinds.contains(&(pinned.hash, JobKind::Unpin)), "{kinds:?}");
        assert!(kinds.contains(&(unqueued.hash, JobKind::Add)), "{kinds:?}");
        assert_eq!(
            index.reconcile_ipfs_jobs().unwrap(),
            ReconcileReport::default(),
            "a second pass finds the queue in sync"
        );
    }

    #[test]
    fn old_records_without_cid_still_read() {
        let json = br#"{"id":"x","file_name":"a.png","media_type":"Png","size":1,"width":1,"height":1,"frames":1,"duration_secs":null,"alt":null,"hash":"ab","uploaded_at":"2026-01-01T00:00:00Z","seq":0}"#;
        let record: MediaRecord = from_json(json).unwrap();
        assert_eq!(record.cid, "");
        let blob: BlobRecord = from_json(br#"{"refcount":1,"size":1,"media_type":"Png"}"#).unwrap();
        assert_eq!(blob.media_type, Some(MediaType::Png));
        assert_eq!(blob.cid, "");
    }
}
