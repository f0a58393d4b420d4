//! The record of files brought in by `kura import`: source path → content hash, so that a rerun
//! skips files it already stored.
//!
//! A source is recorded in its own transaction after the upload's transaction commits. A crash
//! between the two leaves a stored record without its source entry; the rerun then finds the
//! content in the blob table, counts the file as a duplicate and records the source, so nothing is
//! stored twice.

use redb::{ReadableDatabase, ReadableTable, TableDefinition, TableError};
use serde::{Deserialize, Serialize};

use super::index::{db_err, from_json, to_json, Index};
use super::StoreError;

/// Absolute source path (raw OS bytes, since paths need not be UTF-8) → `ImportSource` as JSON.
const IMPORT_SOURCES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("import_sources_v1");

/// Record of what an earlier import stored for one source path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportSource {
    /// Hex BLAKE3 hash of the file's bytes when it was imported.
    pub hash: String,
    /// The record created for it; `None` when its content was already stored under another record.
    pub media_id: Option<String>,
    /// RFC 3339 in UTC.
    pub imported_at: String,
}

impl Index {
    pub fn get_import_source(&self, path: &[u8]) -> Result<Option<ImportSource>, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        // The table appears with the first import; before that no path is recorded.
        let table = match txn.open_table(IMPORT_SOURCES) {
            Ok(table) => table,
            Err(TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(err) => return Err(db_err(err)),
        };
        let found = table.get(path).map_err(db_err)?;
        found.map(|guard| from_json(guard.value())).transpose()
    }

    pub fn put_import_source(&self, path: &[u8], source: &ImportSource) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(db_err)?;
        txn.open_table(IMPORT_SOURCES)
            .map_err(db_err)?
            .insert(path, to_json(source).as_slice())
            .map_err(db_err)?;
        txn.commit().map_err(db_err)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_round_trip_and_start_empty() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(&dir.path().join("kura.redb")).unwrap();
        assert_eq!(index.get_import_source(b"/photos/a.jpg").unwrap(), None);
        let source = ImportSource {
            hash: "ab".repeat(32),
            media_id: Some("id-1".to_owned()),
            imported_at: "2026-01-01T00:00:00Z".to_owned(),
        };
        index.put_import_source(b"/photos/a.jpg", &source).unwrap();
        assert_eq!(
            index.get_import_source(b"/photos/a.jpg").unwrap(),
            Some(source)
        );
        assert_eq!(index.get_import_source(b"/photos/b.jpg").unwrap(), None);
    }
}
