//! `kura gc`: removes blob files that no index entry names, temp files left in `tmp/`, cached
//! variants whose source was deleted, and on request the whole variant cache.
//!
//! Orphan blobs appear when a crash falls between a deletion's commit and the file's removal (the
//! documented order of deletion). gc must only run while no server has the database open. The
//! caller ensures that by keeping the opened `Index` for the whole run, so no upload can be between
//! placing a blob and committing its record.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use crate::store::{BlobDirs, Index, StoreError};

/// Options of one gc run. Orphan blobs and temp files are always removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct GcOptions {
    /// Report what would be removed without removing anything.
    pub dry_run: bool,
    /// Drop every cached variant, not only those whose source was deleted. The server computes
    /// them again on the next request.
    pub purge_variants: bool,
}

/// The findings of one gc run, all removed unless it was a dry run.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GcReport {
    pub orphan_blobs: u64,
    pub orphan_blob_bytes: u64,
    pub temp_files: u64,
    pub temp_bytes: u64,
    /// Shard directories under `blobs/` that are empty once the run's files are removed.
    pub empty_dirs: u64,
    /// Variant cache entries dropped from the index.
    pub variants: u64,
    /// Bytes of the variant files that dropping those entries frees (a variant file another entry
    /// or an upload still uses stays).
    pub variant_bytes: u64,
    pub dry_run: bool,
}

impl GcReport {
    pub fn freed_bytes(&self) -> u64 {
        self.orphan_blob_bytes + self.temp_bytes + self.variant_bytes
    }
}

/// Removes (or, on a dry run, counts) orphan blob files, temp files, orphan variants and empty
/// shard directories under `data_dir`. `index` must be open, which keeps servers out.
pub fn collect(data_dir: &Path, index: &Index, options: GcOptions) -> Result<GcReport, StoreError> {
    let dry_run = options.dry_run;
    let dirs = BlobDirs::new(data_dir);
    let mut report = GcReport {
        dry_run,
        ..GcReport::default()
    };
    let dropped: Vec<(String, String)> = if options.purge_variants {
        index.list_variants()?
    } else {
        index.orphan_variants()?
    }
    .into_iter()
    .map(|(key, record)| (key, record.hash))
    .collect();
    report.variants = dropped.len() as u64;
    // Hashes of the files that only the dropped entries reference. A dry run derives them from
    // the reference counts, and a real run gets them from the index as it drops the entries.
    let freed: HashSet<String> = if dry_run {
        let mut counts: BTreeMap<String, u64> = index.blob_refcounts()?;
        let mut freed = HashSet::new();
        for (_, hash) in &dropped {
            if let Some(count) = counts.get_mut(hash) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    freed.insert(hash.clone());
                }
            }
        }
        freed
    } else {
        let keys: Vec<String> = dropped.into_iter().map(|(key, _)| key).collect();
        index.remove_variants(&keys)?.into_iter().collect()
    };
    let mut referenced = index.blob_hashes()?;
    referenced.retain(|hash| !freed.contains(hash));
    if dirs.blobs_root().is_dir() {
        collect_blobs(&dirs, &referenced, &freed, dry_run, &mut report)?;
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
    Ok(report)
}

/// Walks `blobs/`, removing every file that is not a referenced blob at its own address and every
/// directory left empty. `freed` names the variant files whose entries this run dropped, counted
/// apart from orphans.
fn collect_blobs(
    dirs: &BlobDirs,
    referenced: &HashSet<String>,
    freed: &HashSet<String>,
    dry_run: bool,
    report: &mut GcReport,
) -> Result<(), StoreError> {
    // Children come before their directory, so when the walk reaches a directory, `occupied`
    // contains it if any entry in it stays. Deciding from that rather than from the disk makes a
    // dry run count the same directories as the real run.
    let mut occupied: HashSet<PathBuf> = HashSet::new();
    let walk = walkdir::WalkDir::new(dirs.blobs_root())
        .min_depth(1)
        .contents_first(true);
    for entry in walk {
        let entry = entry.map_err(|err| StoreError::Io(err.into()))?;
        let path = entry.path();
        let parent = path.parent().map(Path::to_path_buf);
        if entry.file_type().is_dir() {
            if occupied.contains(path) {
                occupied.extend(parent);
            } else {
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
            occupied.extend(parent);
            continue;
        }
        let size = entry
            .metadata()
            .map_err(|err| StoreError::Io(err.into()))?
            .len();
        if freed.contains(name.as_ref()) && dirs.blob_path(&name) == path {
            report.variant_bytes += size;
        } else {
            tracing::info!(path = %path.display(), size, dry_run, "orphan blob file");
            report.orphan_blobs += 1;
            report.orphan_blob_bytes += size;
        }
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
    use crate::store::{MediaType, NewMedia, VariantRecord};

    fn dry_run() -> GcOptions {
        GcOptions {
            dry_run: true,
            ..GcOptions::default()
        }
    }

    /// Writes `bytes` as a blob file and returns its hash.
    fn place(dirs: &BlobDirs, bytes: &[u8]) -> String {
        let hash = blake3::hash(bytes).to_hex().to_string();
        let path = dirs.blob_path(&hash);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
        hash
    }

    fn upload(index: &Index, hash: &str, size: u64) {
        index
            .insert_media(NewMedia {
                id: uuid::Uuid::new_v4().to_string(),
                wanted_name: "source.png".to_owned(),
                media_type: MediaType::Png,
                size,
                width: None,
                height: None,
                frames: None,
                duration_secs: None,
                alt: None,
                hash: hash.to_owned(),
                cid: String::new(),
                uploaded_at: "2026-01-01T00:00:00Z".to_owned(),
            })
            .unwrap();
    }

    fn cache(index: &Index, source: &str, plan: &str, hash: &str, size: u64) -> String {
        let key = format!("{source}/{plan}/webp");
        let record = VariantRecord {
            hash: hash.to_owned(),
            size,
            mime: "image/webp".to_owned(),
            last_used: 1,
        };
        index.put_variant(&key, &record).unwrap();
        key
    }

    #[test]
    fn drops_variants_of_deleted_sources() {
        let dir = tempfile::tempdir().unwrap();
        let dirs = BlobDirs::new(dir.path());
        dirs.prepare().unwrap();
        let index = Index::open(&dir.path().join("kura.redb")).unwrap();

        let source = place(&dirs, b"source image");
        upload(&index, &source, 12);
        let live = place(&dirs, b"live variant");
        let live_key = cache(&index, &source, "w-100", &live, 12);
        // A crash after the source's last record went but before its variants were purged.
        let deleted_source = blake3::hash(b"deleted source").to_hex().to_string();
        let stale = place(&dirs, b"stale variant!");
        let stale_key = cache(&index, &deleted_source, "w-100", &stale, 14);
        // The same bytes as the live variant: the file stays while the live entry uses it.
        let shared_key = cache(&index, &deleted_source, "w-200", &live, 12);

        let dry = collect(dir.path(), &index, dry_run()).unwrap();
        assert_eq!((dry.variants, dry.variant_bytes), (2, 14));
        assert_eq!(dry.orphan_blobs, 0);
        assert_eq!(dry.empty_dirs, 2, "the stale file's two shard levels");
        assert!(index.get_variant(&stale_key).unwrap().is_some());

        let report = collect(dir.path(), &index, GcOptions::default()).unwrap();
        assert_eq!(
            report,
            GcReport {
                dry_run: false,
                ..dry
            }
        );
        assert_eq!(report.freed_bytes(), 14);
        assert!(index.get_variant(&stale_key).unwrap().is_none());
        assert!(index.get_variant(&shared_key).unwrap().is_none());
        assert!(index.get_variant(&live_key).unwrap().is_some());
        assert!(!dirs.blob_path(&stale).exists());
        assert!(dirs.blob_path(&live).exists());
        assert!(dirs.blob_path(&source).exists());
    }

    #[test]
    fn purge_keeps_upload_files() {
        let dir = tempfile::tempdir().unwrap();
        let dirs = BlobDirs::new(dir.path());
        dirs.prepare().unwrap();
        let index = Index::open(&dir.path().join("kura.redb")).unwrap();

        let source = place(&dirs, b"source image");
        upload(&index, &source, 12);
        let variant = place(&dirs, b"a variant");
        cache(&index, &source, "w-100", &variant, 9);
        // A variant whose bytes equal the upload's own, as `f-orig` can produce.
        cache(&index, &source, "orig", &source, 12);

        let options = GcOptions {
            purge_variants: true,
            ..GcOptions::default()
        };
        let report = collect(dir.path(), &index, options).unwrap();
        assert_eq!((report.variants, report.variant_bytes), (2, 9));
        assert!(index.list_variants().unwrap().is_empty());
        assert!(!dirs.blob_path(&variant).exists());
        assert!(
            dirs.blob_path(&source).exists(),
            "the upload keeps its file"
        );
        let totals = index.totals().unwrap();
        assert_eq!((totals.blob_count, totals.variant_count), (1, 0));
    }

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

        let dry = collect(dir.path(), &index, dry_run()).unwrap();
        assert_eq!(dry.orphan_blobs, 2);
        assert_eq!(dry.orphan_blob_bytes, 8);
        assert_eq!(dry.temp_files, 1);
        assert_eq!(dry.empty_dirs, 2, "counted as the real run will find them");
        assert!(
            dirs.blob_path(&orphan).exists(),
            "a dry run removes nothing"
        );

        let report = collect(dir.path(), &index, GcOptions::default()).unwrap();
        assert_eq!(report.orphan_blobs, 2);
        assert_eq!(report.temp_files, 1);
        assert_eq!(report.temp_bytes, 7);
        assert_eq!(report.empty_dirs, 2, "the orphan's two shard levels");
        assert_eq!(report.freed_bytes(), 15);
        assert_eq!(report.variants, 0);
        assert!(dirs.blob_path(&kept).exists());
        assert!(!dirs.blob_path(&orphan).exists());
        assert!(!dirs.blob_path(&orphan).parent().unwrap().exists());
        assert_eq!(std::fs::read_dir(dirs.tmp_root()).unwrap().count(), 0);

        let again = collect(dir.path(), &index, GcOptions::default()).unwrap();
        assert_eq!(again.freed_bytes(), 0);
        assert_eq!(again.empty_dirs, 0);
    }
}
