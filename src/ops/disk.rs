//! Free space on the data directory's filesystem, and the `storage.min_free_bytes` floor that
//! uploads and readiness check against it.

use std::path::Path;

/// Space on a filesystem, from `statvfs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskSpace {
    /// Bytes an unprivileged process may still write (`f_bavail × f_frsize`).
    pub available_bytes: u64,
    /// Size of the filesystem in bytes (`f_blocks × f_frsize`).
    pub total_bytes: u64,
}

/// Reads the space of the filesystem that contains `path`.
pub fn space(path: &Path) -> std::io::Result<DiskSpace> {
    let stat = rustix::fs::statvfs(path)?;
    Ok(DiskSpace {
        available_bytes: stat.f_bavail.saturating_mul(stat.f_frsize),
        total_bytes: stat.f_blocks.saturating_mul(stat.f_frsize),
    })
}

/// The data directory's filesystem has less free space than `storage.min_free_bytes`.
#[derive(Debug, thiserror::Error)]
#[error(
    "the data directory has {free_bytes} bytes free, below storage.min_free_bytes = {required_bytes}; free disk space or lower the limit"
)]
pub struct LowDiskSpace {
    pub free_bytes: u64,
    pub required_bytes: u64,
}

/// Failure to check free space: the limit is not met, or `statvfs` failed.
#[derive(Debug, thiserror::Error)]
pub enum SpaceCheckError {
    #[error(transparent)]
    Low(#[from] LowDiskSpace),
    #[error("failed to read free space of {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// Checks that the filesystem holding `path` has at least `required_bytes` free. A floor of 0
/// turns the check off, so `statvfs` is not even called.
pub fn ensure_free(path: &Path, required_bytes: u64) -> Result<(), SpaceCheckError> {
    if required_bytes == 0 {
        return Ok(());
    }
    let space = space(path).map_err(|source| SpaceCheckError::Io {
        path: path.display().to_string(),
        source,
    })?;
    if space.available_bytes < required_bytes {
        return Err(LowDiskSpace {
            free_bytes: space.available_bytes,
            required_bytes,
        }
        .into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn space_of_temp_dir_is_plausible() {
        let dir = tempfile::tempdir().unwrap();
        let space = space(dir.path()).unwrap();
        assert!(space.total_bytes > 0);
        assert!(space.available_bytes <= space.total_bytes);
    }

    #[test]
    fn ensure_free_names_both_numbers() {
        let dir = tempfile::tempdir().unwrap();
        assert!(ensure_free(dir.path(), 0).is_ok());
        let err = ensure_free(dir.path(), u64::MAX).unwrap_err();
        let SpaceCheckError::Low(low) = &err else {
            panic!("expected low space, got {err}");
        };
        assert_eq!(low.required_bytes, u64::MAX);
        let message = err.to_string();
        assert!(message.contains(&low.free_bytes.to_string()), "{message}");
        assert!(message.contains(&u64::MAX.to_string()), "{message}");
        assert!(message.contains("storage.min_free_bytes"), "{message}");
    }

    #[test]
    fn missing_path_is_an_io_error() {
        let err = ensure_free(Path::new("/nonexistent/kura/data"), 1).unwrap_err();
        assert!(matches!(err, SpaceCheckError::Io { .. }), "{err}");
        assert!(ensure_free(Path::new("/nonexistent/kura/data"), 0).is_ok());
    }
}
