//! Content-addressed blob files under `data_dir/blobs/`, written crash-safely.
//!
//! A blob is named by the hex BLAKE3 hash of its bytes and sharded by the first two bytes of the
//! hash (`blobs/ab/cd/abcd…`), so no directory grows past 65 536 entries of shards. Bytes land in
//! `data_dir/tmp/` first (the same filesystem, so the rename is atomic), are fsynced, renamed into
//! place, and the shard directory is fsynced before the index may name the blob.

use std::io;
use std::path::{Path, PathBuf};

use tokio::io::AsyncWriteExt;

use crate::ipfs::cid_builder::{CidBuilder, CidOptions};

/// How many leading bytes of an upload are kept for type sniffing.
pub const HEAD_BYTES: usize = 4096;

/// Hex BLAKE3 digest of a blob.
pub type BlobHash = String;

/// Layout of the blob directories under one data directory.
#[derive(Debug, Clone)]
pub struct BlobDirs {
    blobs: PathBuf,
    tmp: PathBuf,
    /// DAG layout of the CID computed for every new blob.
    cid_options: CidOptions,
}

impl BlobDirs {
    pub fn new(data_dir: &Path) -> Self {
        BlobDirs {
            blobs: data_dir.join("blobs"),
            tmp: data_dir.join("tmp"),
            cid_options: CidOptions::default(),
        }
    }

    pub fn cid_options(&self) -> CidOptions {
        self.cid_options
    }

    /// Sets the DAG layout of the CIDs that new writers compute.
    pub fn with_cid_options(mut self, cid_options: CidOptions) -> Self {
        self.cid_options = cid_options;
        self
    }

    /// Creates the directories and removes temp files that a crash or kill left behind.
    pub fn prepare(&self) -> io::Result<usize> {
        std::fs::create_dir_all(&self.blobs)?;
        std::fs::create_dir_all(&self.tmp)?;
        let mut removed = 0;
        for entry in std::fs::read_dir(&self.tmp)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                std::fs::remove_file(entry.path())?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    pub fn blob_path(&self, hash: &str) -> PathBuf {
        self.blobs.join(&hash[0..2]).join(&hash[2..4]).join(hash)
    }

    pub fn blobs_root(&self) -> &Path {
        &self.blobs
    }

    pub fn tmp_root(&self) -> &Path {
        &self.tmp
    }

    /// Opens a new temp file for an incoming blob.
    pub async fn writer(&self) -> io::Result<BlobWriter> {
        let path = self
            .tmp
            .join(format!("upload-{}.tmp", uuid::Uuid::new_v4().simple()));
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await?;
        Ok(BlobWriter {
            file,
            guard: TempFile::new(path),
            hasher: blake3::Hasher::new(),
            cid: CidBuilder::new(self.cid_options),
            size: 0,
            head: Vec::with_capacity(HEAD_BYTES),
        })
    }

    /// Moves a fsynced temp file to its content address and makes the rename durable.
    /// Returns false when the blob already existed, in which case the temp file is removed.
    pub fn place(&self, staged: StagedBlob) -> io::Result<bool> {
        let target = self.blob_path(&staged.hash);
        if target.is_file() {
            // Dedup: the same bytes are already stored, and a rename would only replace them.
            return Ok(false);
        }
        rename_durably(staged, &target)?;
        Ok(true)
    }

    /// Stores `bytes` as a blob from a blocking thread, with the same temp-fsync-rename sequence
    /// as uploads. Returns the hex hash.
    pub fn write_bytes(&self, bytes: &[u8]) -> io::Result<BlobHash> {
        use std::io::Write;
        let path = self
            .tmp
            .join(format!("variant-{}.tmp", uuid::Uuid::new_v4().simple()));
        let guard = TempFile::new(path);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(guard.path())?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        let staged = StagedBlob {
            hash: blake3::hash(bytes).to_hex().to_string(),
            // Variants are a cache that is never pinned, so they get no CID.
            cid: String::new(),
            size: bytes.len() as u64,
            head: Vec::new(),
            guard,
        };
        let hash = staged.hash.clone();
        self.place(staged)?;
        Ok(hash)
    }

    /// Deletes a blob file; a missing file is not an error because deletion is the goal.
    pub fn remove(&self, hash: &str) -> io::Result<()> {
        let path = self.blob_path(hash);
        match std::fs::remove_file(&path) {
            Ok(()) => sync_dir(path.parent().expect("blob paths have a shard directory")),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// Moves a fsynced temp file over the blob at its content address, replacing a missing or
    /// corrupt file, and makes the rename durable. The caller has checked the staged hash.
    pub fn replace(&self, staged: StagedBlob) -> io::Result<()> {
        let target = self.blob_path(&staged.hash);
        rename_durably(staged, &target)
    }
}

/// Renames a staged temp file to `target` and fsyncs the directories the rename changed.
fn rename_durably(staged: StagedBlob, target: &Path) -> io::Result<()> {
    let shard = target.parent().expect("blob paths have a shard directory");
    std::fs::create_dir_all(shard)?;
    std::fs::rename(staged.guard.path(), target)?;
    staged.guard.disarm();
    sync_dir(shard)?;
    // A new shard directory must itself be durable in its parent.
    if let Some(parent) = shard.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Streams an upload into a temp file while hashing it (BLAKE3 and the IPFS CID) and keeping its
/// first bytes.
pub struct BlobWriter {
    file: tokio::fs::File,
    guard: TempFile,
    hasher: blake3::Hasher,
    cid: CidBuilder,
    size: u64,
    head: Vec<u8>,
}

impl BlobWriter {
    pub async fn write(&mut self, chunk: &[u8]) -> io::Result<()> {
        if self.head.len() < HEAD_BYTES {
            let take = (HEAD_BYTES - self.head.len()).min(chunk.len());
            self.head.extend_from_slice(&chunk[..take]);
        }
        self.hasher.update(chunk);
        self.cid.update(chunk);
        self.size += chunk.len() as u64;
        self.file.write_all(chunk).await
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Flushes and fsyncs the temp file; the result still deletes it unless it is placed.
    pub async fn finish(mut self) -> io::Result<StagedBlob> {
        self.file.flush().await?;
        self.file.sync_all().await?;
        drop(self.file);
        Ok(StagedBlob {
            hash: self.hasher.finalize().to_hex().to_string(),
            cid: self.cid.finish().to_string(),
            size: self.size,
            head: self.head,
            guard: self.guard,
        })
    }
}

/// A complete, fsynced upload waiting in `tmp/` for validation and placement.
pub struct StagedBlob {
    pub hash: BlobHash,
    /// CIDv1 in base32, as Kubo's `add` with the configured layout and raw leaves reports it.
    pub cid: String,
    pub size: u64,
    pub head: Vec<u8>,
    guard: TempFile,
}

impl StagedBlob {
    pub fn path(&self) -> &Path {
        self.guard.path()
    }
}

/// Removes its file when dropped unless disarmed, so every early return cleans up.
struct TempFile {
    path: PathBuf,
    armed: bool,
}

impl TempFile {
    fn new(path: PathBuf) -> Self {
        TempFile { path, armed: true }
    }

    fn path(&self) -> &Path {
        &self.path
    }

    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.armed {
            if let Err(err) = std::fs::remove_file(&self.path) {
                if err.kind() != io::ErrorKind::NotFound {
                    tracing::warn!(path = %self.path.display(), error = %err, "failed to remove temp file");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn place_dedups_and_cleans_temp() {
        let dir = tempfile::tempdir().unwrap();
        let dirs = BlobDirs::new(dir.path());
        dirs.prepare().unwrap();

        let mut first = dirs.writer().await.unwrap();
        first.write(b"hello ").await.unwrap();
        first.write(b"world").await.unwrap();
        let staged = first.finish().await.unwrap();
        let hash = staged.hash.clone();
        assert_eq!(hash, blake3::hash(b"hello world").to_hex().to_string());
        assert_eq!(staged.head, b"hello world");
        // `printf 'hello world' | ipfs add --cid-version=1 --raw-leaves` gives this CID.
        assert_eq!(
            staged.cid,
            "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"
        );
        assert!(dirs.place(staged).unwrap());
        assert_eq!(
            std::fs::read(dirs.blob_path(&hash)).unwrap(),
            b"hello world"
        );

        let mut second = dirs.writer().await.unwrap();
        second.write(b"hello world").await.unwrap();
        let staged = second.finish().await.unwrap();
        assert!(!dirs.place(staged).unwrap());
        assert_eq!(std::fs::read_dir(dirs.tmp_root()).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn dropped_writer_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let dirs = BlobDirs::new(dir.path());
        dirs.prepare().unwrap();
        let mut writer = dirs.writer().await.unwrap();
        writer.write(b"partial").await.unwrap();
        drop(writer);
        assert_eq!(std::fs::read_dir(dirs.tmp_root()).unwrap().count(), 0);
    }

    #[test]
    fn prepare_removes_leftover_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let dirs = BlobDirs::new(dir.path());
        dirs.prepare().unwrap();
        std::fs::write(dirs.tmp_root().join("upload-x.tmp"), b"junk").unwrap();
        assert_eq!(dirs.prepare().unwrap(), 1);
        assert_eq!(std::fs::read_dir(dirs.tmp_root()).unwrap().count(), 0);
    }
}
