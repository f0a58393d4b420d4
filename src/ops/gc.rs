//! `kura gc`: removes blob files that no index entry names and temp files left in `tmp/`.
//!
//! Orphan blobs appear when a crash falls between a deletion's commit and the file's removal (the
//! documented order of deletion). gc must only run while no server has the database open. The
//! caller ensures that by keeping the opened `Index` for the whole run, so no upload can be between
//! placing a blob and committing its record.

use std::collections::HashSet;
use std::path::Path;

use crate::store::{BlobDirs, Index, StoreError};

/// The findings of one gc run, all removed unless it was a dry run.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GcReport {
    pub orphan_blobs: u64,
    pub orphan_blob_bytes: u64,
    pub temp_files: u64,
    pub temp_bytes: u64,
    /// Shard directories left empty under `blobs/`.
    pub empty_dirs: u64,
    /// Variant cache entries and bytes, or `None` when this build has no variant cache.
    pub variant_cache: Option<(u64, u64)>,
    pub dry_run: bool,
}

impl GcReport {
    pub fn freed_bytes(&self) -> u64 {
        let variants = self.variant_cache.map_or(0, |(_, bytes)| bytes);
        self.orphan_blob_bytes + self.temp_bytes + variants
    }
}

/// Finds orphan blob files, temp files and empty shard directories under `data_dir` and removes
/// them unless `dry_run` is set. `index` must be open, which keeps servers out.
pub fn collect(data_dir: &Path, index: &Index, dry_run: bool) -> Result<GcReport, StoreError> {
    let dirs = BlobDirs::new(data_dir);
    let referenced = index.blob_hashes()?;
    let mut report = GcReport {
        dry_run,
        ..GcReport::default()
    };
    if dirs.blobs_root().is_dir() {
        collect_blobs(&dirs, &referenced, dry_run, &mut report)?;
    }
    if dirs.tmp_root().is_dir() {
        for entry in std::fs::read_dir(dirs.tmp_root())? {
            let entry = entry?;
            let metadata = entry.metadata()?;
            if !metadata.is_file() {
                continue;
            }
            report.temp_files += 1;
            report.temp_bytes += metadata.len();
            if !dry_run {
                remove_file(&entry.path())?;
            }
        }
    }
    report.variant_cache = collect_variant_cache(data_dir, dry_run)?;
    Ok(report)
}

/// Trims the cache of transformed variants and returns (entries, bytes) removed, or `None` when
/// this build keeps no such cache.
/// TODO: the image transformation feature should remove its cached variants here.
pub fn collect_variant_cache(
    _data_dir: &Path,
    _dry_run: bool,
) -> Result<Option<(u64, u64)>, StoreError> {
    Ok(None)
}

fn collect_blobs(
    dirs: &BlobDirs,
    referenced: &HashSet<String>,
    dry_run: bool,
    report: &mut GcReport,
) -> Result<(), StoreError> {
    // Children come before their directory, so a shard emptied here is seen empty afterwards.
    let walk = walkdir::WalkDir::new(dirs.blobs_root())
        .min_depth(1)
        .contents_first(true);
    for entry in walk {
        let entry = entry.map_err(|err| StoreError::Io(err.into()))?;
        let path = entry.path();
        if entry.file_type().is_dir() {
            let empty = std::fs::read_dir(path)?.next().is_none();
            if empty {
                report.empty_dirs += 1;
                if !dry_run {
                    std::fs::remove_dir(path)?;
                }
            }
            continue;
        }
        let name = entry.file_name().to_string_lossy();
        // A file counts as a blob only under its own content address; anything else under
        // blobs/ can never be served and is removed too.
        let is_blob = is_blob_hash(&name)
            && referenced.contains(name.as_ref())
            && dirs.blob_path(&name) == path;
        if is_blob {
            continue;
        }
        let size = entry
            .metadata()
            .map_err(|err| StoreError::Io(err.into()))?
            .len();
        tracing::info!(path = %path.display(), size, dry_run, "orphan blob file");
        report.orphan_blobs += 1;
        report.orphan_blob_bytes += size;
        if !dry_run {
            remove_file(path)?;
        }
    }
    Ok(())
}

fn is_blob_hash(name: &str) -> bool {
    name.len() == 64
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn remove_file(path: &Path) -> Result<(), StoreError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(err.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{MediaType, NewMedia};

    #[test]
    fn removes_orphans_and_temp_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let dirs = BlobDirs::new(dir.path());
        dirs.prepare().unwrap();
        let index = Index::open(&dir.path().join("kura.redb")).unwrap();

        let kept = blake3::hash(b"kept").to_hex().to_string();
        let orphan = blake3::hash(b"orphan").to_hex().to_string();
        for (hash, bytes) in [(&kept, &b"kept"[..]), (&orphan, &b"orphan"[..])] {
            let path = dirs.blob_path(hash);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, bytes).unwrap();
        }
        index
            .insert_media(NewMedia {
                id: "id".to_owned(),
                wanted_name: "kept.png".to_owned(),
                media_type: MediaType::Png,
                size: 4,
                width: None,
                height: None,
                frames: None,
                duration_secs: None,
                alt: None,
                hash: kept.clone(),
                cid: String::new(),
                uploaded_at: "2026-01-01T00:00:00Z".to_owned(),
            })
            .unwrap();
        std::fs::write(dirs.tmp_root().join("upload-x.tmp"), b"partial").unwrap();
        std::fs::write(dirs.blobs_root().join("stray.txt"), b"??").unwrap();

        let dry = collect(dir.path(), &index, true).unwrap();
        assert_eq!(dry.orphan_blobs, 2);
        assert_eq!(dry.orphan_blob_bytes, 8);
        assert_eq!(dry.temp_files, 1);
        assert!(
            dirs.blob_path(&orphan).exists(),
            "a dry run removes nothing"
        );

        let report = collect(dir.path(), &index, false).unwrap();
        assert_eq!(report.orphan_blobs, 2);
        assert_eq!(report.temp_files, 1);
        assert_eq!(report.temp_bytes, 7);
        assert_eq!(report.empty_dirs, 2, "the orphan's two shard levels");
        assert_eq!(report.freed_bytes(), 15);
        assert_eq!(report.variant_cache, None);
        assert!(dirs.blob_path(&kept).exists());
        assert!(!dirs.blob_path(&orphan).exists());
        assert!(!dirs.blob_path(&orphan).parent().unwrap().exists());
        assert_eq!(std::fs::read_dir(dirs.tmp_root()).unwrap().count(), 0);

        let again = collect(dir.path(), &index, false).unwrap();
        assert_eq!(again.freed_bytes(), 0);
        assert_eq!(again.empty_dirs, 0);
    }
}
