//! Index entries of transformed variants. A variant's bytes are an ordinary blob counted in
//! `blobs_v1` like an upload's, so deleting one never removes a file the other still uses.

use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};

use super::index::{add_blob_reference, db_err, drop_blob_reference, from_json, to_json, Index};
use super::StoreError;

/// Variant key (`SOURCE_HASH/PLAN/FORMAT`) → `VariantRecord` as JSON. Keys start with the source
/// hash, so a source's variants form one key range.
pub(super) const VARIANTS: TableDefinition<&str, &[u8]> = TableDefinition::new("variants_v1");

/// One cached variant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VariantRecord {
    /// Hex BLAKE3 hash of the variant's bytes, which is also its blob name.
    pub hash: String,
    pub size: u64,
    pub mime: String,
    /// Unix seconds of the last use recorded in the index (hits update memory only).
    pub last_used: u64,
}

impl Index {
    pub fn get_variant(&self, key: &str) -> Result<Option<VariantRecord>, StoreError> {
        let txn = self.db().begin_read().map_err(db_err)?;
        let table = match txn.open_table(VARIANTS) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(err) => return Err(db_err(err)),
        };
        let found = table.get(key).map_err(db_err)?;
        found.map(|guard| from_json(guard.value())).transpose()
    }

    /// Records a variant whose blob is already in place. Replacing an existing key releases the
    /// old blob reference; returns the hashes whose last reference went away.
    pub fn put_variant(
        &self,
        key: &str,
        record: &VariantRecord,
    ) -> Result<Vec<String>, StoreError> {
        let txn = self.db().begin_write().map_err(db_err)?;
        let mut released = Vec::new();
        {
            let mut table = txn.open_table(VARIANTS).map_err(db_err)?;
            let previous: Option<VariantRecord> = match table.get(key).map_err(db_err)? {
                Some(guard) => Some(from_json(guard.value())?),
                None => None,
            };
            table
                .insert(key, to_json(record).as_slice())
                .map_err(db_err)?;
            add_blob_reference(&txn, &record.hash, record.size, None)?;
            if let Some(previous) = previous {
                if drop_blob_reference(&txn, &previous.hash)? {
                    released.push(previous.hash);
                }
            }
        }
        txn.commit().map_err(db_err)?;
        Ok(released)
    }

    /// Removes variants by key; returns the blob hashes whose last reference went away.
    pub fn remove_variants(&self, keys: &[String]) -> Result<Vec<String>, StoreError> {
        let txn = self.db().begin_write().map_err(db_err)?;
        let mut released = Vec::new();
        {
            let mut table = txn.open_table(VARIANTS).map_err(db_err)?;
            for key in keys {
                let removed: Option<VariantRecord> =
                    match table.remove(key.as_str()).map_err(db_err)? {
                        Some(guard) => Some(from_json(guard.value())?),
                        None => None,
                    };
                if let Some(record) = removed {
                    if drop_blob_reference(&txn, &record.hash)? {
                        released.push(record.hash);
                    }
                }
            }
        }
        txn.commit().map_err(db_err)?;
        Ok(released)
    }

    /// Lists every variant key with its record, for rebuilding the in-memory LRU at start.
    pub fn list_variants(&self) -> Result<Vec<(String, VariantRecord)>, StoreError> {
        let txn = self.db().begin_read().map_err(db_err)?;
        let table = match txn.open_table(VARIANTS) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(err) => return Err(db_err(err)),
        };
        let mut out = Vec::with_capacity(table.len().map_err(db_err)? as usize);
        for entry in table.iter().map_err(db_err)? {
            let (key, value) = entry.map_err(db_err)?;
            out.push((key.value().to_owned(), from_json(value.value())?));
        }
        Ok(out)
    }

    /// Lists the keys of a source's variants.
    pub fn variant_keys_of(&self, source_hash: &str) -> Result<Vec<String>, StoreError> {
        let txn = self.db().begin_read().map_err(db_err)?;
        let table = match txn.open_table(VARIANTS) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(err) => return Err(db_err(err)),
        };
        let start = format!("{source_hash}/");
        let end = format!("{source_hash}0");
        let mut keys = Vec::new();
        for entry in table.range(start.as_str()..end.as_str()).map_err(db_err)? {
            let (key, _) = entry.map_err(db_err)?;
            keys.push(key.value().to_owned());
        }
        Ok(keys)
    }
}
