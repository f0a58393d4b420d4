//! In-memory totals of media records and blobs, counted from the index at open and kept current by
//! every upload and deletion, so metrics never scan the index.

use std::sync::atomic::{AtomicU64, Ordering};

use super::inventory::IndexTotals;

/// Live counters; each field changes in the same stripe-locked step as the index.
#[derive(Debug, Default)]
pub struct Usage {
    media: AtomicU64,
    blobs: AtomicU64,
    blob_bytes: AtomicU64,
}

/// One reading of [`Usage`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UsageSnapshot {
    pub media: u64,
    pub blobs: u64,
    /// Sum of the sizes of the distinct blobs that uploads use.
    pub blob_bytes: u64,
}

impl Usage {
    pub fn from_totals(totals: &IndexTotals) -> Usage {
        Usage {
            media: AtomicU64::new(totals.media_count),
            // Uploads and deletions keep these current, while variants are counted by the
            // transformation service, so the start value leaves variant files out too.
            blobs: AtomicU64::new(totals.upload_blob_count),
            blob_bytes: AtomicU64::new(totals.upload_blob_bytes),
        }
    }

    pub fn snapshot(&self) -> UsageSnapshot {
        UsageSnapshot {
            media: self.media.load(Ordering::Relaxed),
            blobs: self.blobs.load(Ordering::Relaxed),
            blob_bytes: self.blob_bytes.load(Ordering::Relaxed),
        }
    }

    /// Counts a new record; `new_blob_bytes` is the size of its blob when the record is the
    /// blob's first reference.
    pub(super) fn add_media(&self, new_blob_bytes: Option<u64>) {
        self.media.fetch_add(1, Ordering::Relaxed);
        if let Some(bytes) = new_blob_bytes {
            self.blobs.fetch_add(1, Ordering::Relaxed);
            self.blob_bytes.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    /// Counts a deleted record; `freed_blob_bytes` is the size of its blob when that went too.
    pub(super) fn remove_media(&self, freed_blob_bytes: Option<u64>) {
        saturating_decrement(&self.media, 1);
        if let Some(bytes) = freed_blob_bytes {
            saturating_decrement(&self.blobs, 1);
            saturating_decrement(&self.blob_bytes, bytes);
        }
    }
}

fn saturating_decrement(counter: &AtomicU64, by: u64) {
    // The closure always returns Some, so the update cannot fail.
    let _ = counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |value| {
        Some(value.saturating_sub(by))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_follow_adds_and_removes() {
        let usage = Usage::default();
        usage.add_media(Some(100));
        usage.add_media(None);
        assert_eq!(
            usage.snapshot(),
            UsageSnapshot {
                media: 2,
                blobs: 1,
                blob_bytes: 100
            }
        );
        usage.remove_media(None);
        usage.remove_media(Some(100));
        usage.remove_media(Some(100));
        assert_eq!(usage.snapshot(), UsageSnapshot::default());
    }
}
