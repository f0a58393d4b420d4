//! Bulk import of existing files through the same validation and crash-safe write path as an
//! upload (`Store::writer`, then `Store::commit_upload`).
//!
//! Each file is hashed first. A file whose path was imported before with the same content, and
//! whose blob is still stored, is skipped. A file whose content is already stored (from any
//! source, or from an earlier file of this run) counts as a duplicate and adds no record. Every
//! other file is streamed into `tmp/`, validated and stored. Sources are recorded in the index, so
//! an interrupted import can simply be run again.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use tokio::io::AsyncReadExt;
use tokio::sync::watch;

use crate::store::{now_rfc3339, ImportSource, Store, StoreError, UploadError};

/// Bytes read from a source file per step, when hashing and when copying.
const CHUNK_BYTES: usize = 256 * 1024;

/// A regular file found under the paths given to `kura import`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// Absolute path with symbolic links in the given roots resolved.
    pub path: PathBuf,
    pub size: u64,
}

/// A path that could not be imported before any content was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    pub path: PathBuf,
    pub reason: String,
}

/// The files to import and the paths that cannot be.
#[derive(Debug, Default)]
pub struct Sources {
    pub files: Vec<SourceFile>,
    pub unreadable: Vec<Unreadable>,
}

impl Sources {
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

/// Lists the regular files in `roots`, descending into folders. Symbolic links inside a folder
/// are not followed (a link can point back up and loop), and each one is reported as unreadable.
/// A path given twice is listed once.
pub fn collect_sources(roots: &[PathBuf]) -> Sources {
    let mut sources = Sources::default();
    let mut seen = HashSet::new();
    for root in roots {
        let root = match std::fs::canonicalize(root) {
            Ok(root) => root,
            Err(err) => {
                sources.unreadable.push(Unreadable {
                    path: root.clone(),
                    reason: format!("failed to open: {err}"),
                });
                continue;
            }
        };
        let walk = walkdir::WalkDir::new(&root)
            .follow_links(false)
            .sort_by_file_name();
        for entry in walk {
            let entry = match entry {
                Ok(entry) => entry,
                Err(err) => {
                    let path = err.path().unwrap_or(&root).to_path_buf();
                    sources.unreadable.push(Unreadable {
                        path,
                        reason: format!("failed to read: {err}"),
                    });
                    continue;
                }
            };
            let file_type = entry.file_type();
            if file_type.is_dir() {
                continue;
            }
            let path = entry.into_path();
            if file_type.is_symlink() {
                sources.unreadable.push(Unreadable {
                    path,
                    reason: "symbolic link inside a folder, not followed; pass its target instead"
                        .to_owned(),
                });
                continue;
            }
            if !file_type.is_file() {
                sources.unreadable.push(Unreadable {
                    path,
                    reason: "not a regular file".to_owned(),
                });
                continue;
            }
            if !seen.insert(path.clone()) {
                continue;
            }
            match std::fs::metadata(&path) {
                Ok(metadata) => sources.files.push(SourceFile {
                    path,
                    size: metadata.len(),
                }),
                Err(err) => sources.unreadable.push(Unreadable {
                    path,
                    reason: format!("failed to read metadata: {err}"),
                }),
            }
        }
    }
    sources
}

/// Settings of one import run.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// Files processed at once.
    pub jobs: usize,
    /// Largest file accepted, in bytes (`storage.max_upload_bytes`).
    pub max_upload_bytes: u64,
    /// Free bytes the data directory must keep (`storage.min_free_bytes`); below it the import stops.
    pub min_free_bytes: u64,
}

/// The result of importing one file.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Stored as a new record.
    Imported { media_id: String, file_name: String },
    /// Its content was already stored, so no record was added.
    Duplicate,
    /// A previous import stored this path with the same content.
    AlreadyImported,
    /// Not stored, for the stated reason.
    Rejected { reason: String },
    /// Not looked at, because the import stopped on an error first.
    NotAttempted,
}

/// One file's result, passed to the progress callback and kept in the summary.
#[derive(Debug, Clone)]
pub struct FileReport {
    pub path: PathBuf,
    pub size: u64,
    pub outcome: Outcome,
}

/// Totals of an import run.
#[derive(Debug, Default)]
pub struct Summary {
    pub imported: u64,
    pub imported_bytes: u64,
    pub duplicates: u64,
    pub already_imported: u64,
    pub not_attempted: u64,
    /// Each rejected path with its reason, in path order.
    pub rejected: Vec<(PathBuf, String)>,
    /// The error that stopped the import early, if one did.
    pub stopped_by: Option<String>,
}

impl Summary {
    fn add(&mut self, report: &FileReport) {
        match &report.outcome {
            Outcome::Imported { .. } => {
                self.imported += 1;
                self.imported_bytes += report.size;
            }
            Outcome::Duplicate => self.duplicates += 1,
            Outcome::AlreadyImported => self.already_imported += 1,
            Outcome::Rejected { reason } => {
                self.rejected.push((report.path.clone(), reason.clone()));
            }
            Outcome::NotAttempted => self.not_attempted += 1,
        }
    }
}

/// An error that stops the whole import: the database failed or the disk is nearly full.
#[derive(Debug, thiserror::Error)]
enum Fatal {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Disk(#[from] super::disk::SpaceCheckError),
}

/// The result of the first file with a given content, for later files with the same content.
#[derive(Debug, Clone)]
enum ContentResult {
    Stored,
    /// The first file's path and the reason it was rejected.
    Rejected(PathBuf, String),
}

/// Shared state of one run.
struct Run {
    store: Arc<Store>,
    options: ImportOptions,
    /// Content hash → result of the first file of this run with that content.
    claims: Mutex<HashMap<String, watch::Receiver<Option<ContentResult>>>>,
    stop: AtomicBool,
    stopped_by: Mutex<Option<String>>,
}

/// Imports `sources`, calling `on_file` after each file, and returns the totals. Paths in
/// `sources.unreadable` count as rejected.
pub async fn import(
    store: Arc<Store>,
    sources: Sources,
    options: ImportOptions,
    on_file: impl Fn(&FileReport),
) -> Summary {
    let mut summary = Summary::default();
    for unreadable in &sources.unreadable {
        let report = FileReport {
            path: unreadable.path.clone(),
            size: 0,
            outcome: Outcome::Rejected {
                reason: unreadable.reason.clone(),
            },
        };
        on_file(&report);
        summary.add(&report);
    }
    let jobs = options.jobs.max(1);
    let run = Arc::new(Run {
        store,
        options,
        claims: Mutex::new(HashMap::new()),
        stop: AtomicBool::new(false),
        stopped_by: Mutex::new(None),
    });
    let mut reports = futures_util::stream::iter(sources.files)
        .map(|file| {
            let run = run.clone();
            async move {
                let outcome = run.import_file(&file).await;
                FileReport {
                    path: file.path,
                    size: file.size,
                    outcome,
                }
            }
        })
        .buffer_unordered(jobs);
    while let Some(report) = reports.next().await {
        on_file(&report);
        summary.add(&report);
    }
    summary.rejected.sort();
    summary.stopped_by = run.stopped_by.lock().expect("lock poisoned").take();
    summary
}

impl Run {
    async fn import_file(&self, file: &SourceFile) -> Outcome {
        if self.stop.load(Ordering::Relaxed) {
            return Outcome::NotAttempted;
        }
        match self.try_import_file(file).await {
            Ok(outcome) => outcome,
            Err(fatal) => {
                let message = format!("{}: {fatal}", file.path.display());
                tracing::error!(path = %file.path.display(), error = %fatal, "import stopped");
                self.stop.store(true, Ordering::Relaxed);
                self.stopped_by
                    .lock()
                    .expect("lock poisoned")
                    .get_or_insert(message);
                Outcome::NotAttempted
            }
        }
    }

    async fn try_import_file(&self, file: &SourceFile) -> Result<Outcome, Fatal> {
        let limit = self.options.max_upload_bytes;
        let file_name = file
            .path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        if file.size > limit {
            return Ok(rejected(UploadError::TooLarge { file_name, limit }));
        }
        let path = file.path.clone();
        let hash = match blocking(move || hash_file(&path)).await? {
            Ok(hash) => hash,
            Err(err) => {
                return Ok(Outcome::Rejected {
                    reason: format!("failed to read: {err}"),
                })
            }
        };

        let index = self.store.index().clone();
        let key = file.path.as_os_str().as_bytes().to_vec();
        let lookup_hash = hash.clone();
        let (previous, blob_stored) = blocking(move || {
            let previous = index.get_import_source(&key)?;
            let blob_stored = index.get_blob(&lookup_hash)?.is_some();
            Ok::<_, StoreError>((previous, blob_stored))
        })
        .await??;
        if blob_stored && previous.is_some_and(|source| source.hash == hash) {
            return Ok(Outcome::AlreadyImported);
        }

        // Only the first file of this run with this content stores it; the others wait for it.
        let claim = {
            let mut claims = self.claims.lock().expect("lock poisoned");
            match claims.get(&hash) {
                Some(receiver) => Err(receiver.clone()),
                None => {
                    let (sender, receiver) = watch::channel(None);
                    claims.insert(hash.clone(), receiver);
                    Ok(sender)
                }
            }
        };
        let sender = match claim {
            Ok(sender) => sender,
            Err(mut receiver) => {
                let first = receiver
                    .wait_for(Option::is_some)
                    .await
                    .ok()
                    .and_then(|v| v.clone());
                return match first {
                    Some(ContentResult::Stored) => {
                        self.record_source(file, &hash, None).await?;
                        Ok(Outcome::Duplicate)
                    }
                    Some(ContentResult::Rejected(first_path, reason)) => Ok(Outcome::Rejected {
                        reason: format!(
                            "same content as {}, which was rejected: {reason}",
                            first_path.display()
                        ),
                    }),
                    None => Ok(Outcome::NotAttempted),
                };
            }
        };

        let outcome = if blob_stored {
            self.record_source(file, &hash, None).await?;
            Outcome::Duplicate
        } else {
            self.store_file(file, &file_name, &hash).await?
        };
        let result = match &outcome {
            Outcome::Rejected { reason } => {
                ContentResult::Rejected(file.path.clone(), reason.clone())
            }
            _ => ContentResult::Stored,
        };
        // Sending fails only when no later file with this content is waiting, which is fine.
        let _ = sender.send(Some(result));
        Ok(outcome)
    }

    /// Copies the file into `tmp/` and stores it like an upload.
    async fn store_file(
        &self,
        file: &SourceFile,
        file_name: &str,
        hash: &str,
    ) -> Result<Outcome, Fatal> {
        let data_dir = self.store.data_dir().to_path_buf();
        let min_free = self.options.min_free_bytes;
        blocking(move || super::disk::ensure_free(&data_dir, min_free)).await??;

        let limit = self.options.max_upload_bytes;
        let mut source = match tokio::fs::File::open(&file.path).await {
            Ok(source) => source,
            Err(err) => {
                return Ok(Outcome::Rejected {
                    reason: format!("failed to open: {err}"),
                })
            }
        };
        let mut writer = self.store.writer().await?;
        let mut buffer = vec![0u8; CHUNK_BYTES];
        loop {
            let read = match source.read(&mut buffer).await {
                Ok(0) => break,
                Ok(read) => read,
                Err(err) => {
                    return Ok(Outcome::Rejected {
                        reason: format!("failed to read: {err}"),
                    })
                }
            };
            if writer.size() + read as u64 > limit {
                return Ok(rejected(UploadError::TooLarge {
                    file_name: file_name.to_owned(),
                    limit,
                }));
            }
            writer
                .write(&buffer[..read])
                .await
                .map_err(StoreError::Io)?;
        }
        let staged = writer.finish().await.map_err(StoreError::Io)?;
        if staged.hash != hash {
            return Ok(Outcome::Rejected {
                reason: "the file changed while it was being imported; run the import again"
                    .to_owned(),
            });
        }
        match self.store.commit_upload(staged, file_name, None).await {
            Ok(record) => {
                self.record_source(file, hash, Some(record.id.clone()))
                    .await?;
                Ok(Outcome::Imported {
                    media_id: record.id,
                    file_name: record.file_name,
                })
            }
            Err(UploadError::Store(err)) => Err(err.into()),
            // A read error while probing stays with this file, so one unreadable file does not
            // stop the rest of the import.
            Err(other) => Ok(rejected(other)),
        }
    }

    async fn record_source(
        &self,
        file: &SourceFile,
        hash: &str,
        media_id: Option<String>,
    ) -> Result<(), Fatal> {
        let index = self.store.index().clone();
        let key = file.path.as_os_str().as_bytes().to_vec();
        let source = ImportSource {
            hash: hash.to_owned(),
            media_id,
            imported_at: now_rfc3339(),
        };
        blocking(move || index.put_import_source(&key, &source)).await??;
        Ok(())
    }
}

fn rejected(err: UploadError) -> Outcome {
    Outcome::Rejected {
        reason: err.to_string(),
    }
}

/// Returns the hex BLAKE3 hash of a file's bytes.
fn hash_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = blake3::Hasher::new();
    let mut buffer = vec![0u8; CHUNK_BYTES];
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(hasher.finalize().to_hex().to_string())
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|err| StoreError::Task(err.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collect_walks_folders_and_skips_links() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("photos");
        std::fs::create_dir_all(root.join("nested/deeper")).unwrap();
        std::fs::write(root.join("a.jpg"), b"aaa").unwrap();
        std::fs::write(root.join("nested/b.png"), b"bb").unwrap();
        std::fs::write(root.join("nested/deeper/c.gif"), b"c").unwrap();
        std::os::unix::fs::symlink(root.join("a.jpg"), root.join("link.jpg")).unwrap();

        let sources = collect_sources(&[root.clone(), root.join("a.jpg")]);
        let root = std::fs::canonicalize(&root).unwrap();
        let paths: Vec<&Path> = sources.files.iter().map(|f| f.path.as_path()).collect();
        assert_eq!(
            paths,
            vec![
                root.join("a.jpg").as_path(),
                root.join("nested/b.png").as_path(),
                root.join("nested/deeper/c.gif").as_path(),
            ]
        );
        assert_eq!(sources.total_bytes(), 6);
        assert_eq!(sources.unreadable.len(), 1);
        assert_eq!(sources.unreadable[0].path, root.join("link.jpg"));
        assert!(sources.unreadable[0].reason.contains("symbolic link"));
    }

    #[test]
    fn collect_reports_missing_root() {
        let sources = collect_sources(&[PathBuf::from("/nonexistent/kura-import")]);
        assert!(sources.files.is_empty());
        assert_eq!(sources.unreadable.len(), 1);
        assert!(sources.unreadable[0].reason.contains("failed to open"));
    }

    #[test]
    fn hash_file_matches_blake3() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x");
        let bytes = vec![7u8; CHUNK_BYTES * 2 + 3];
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(
            hash_file(&path).unwrap(),
            blake3::hash(&bytes).to_hex().to_string()
        );
    }
}
