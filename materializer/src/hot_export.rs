//! The whole store out and in, a key at a time: what a raft snapshot of a node carries
//! ([`HotStore::export`]) and how a node brought up from one takes it in
//! ([`HotStore::import_begin`], [`HotStore::import_chunk`], [`HotStore::import_finish`]),
//! without holding the store in memory on either side.
//!
//! # Correctness
//!
//! - An export reads one RocksDB snapshot: every key and the applied mark as of one moment,
//!   whatever is applied meanwhile.
//! - An import is not one batch: it starts by emptying the store and writing, durably, a
//!   mark that it is under way; only its last batch sets the applied mark and removes that
//!   mark. A store opened with the mark still there was cut off mid-import: it is emptied
//!   again ([`HotStore::discard_interrupted_import`]), so it never serves half a snapshot;
//!   nor does an export read one ([`crate::Error::Importing`]).

use rocksdb::WriteBatch;

use super::{APPLIED_KEY, Family, HotBatch, HotStore, decode_applied};
use crate::error::{Error, Result};
use folddb_log::{LogIndex, Term};

/// Meta key: an import (a snapshot install) started and has not finished.
const IMPORTING_KEY: &[u8] = b"importing";

impl HotStore {
    /// Calls `each` with every key of the store as of now (family by family, in key order),
    /// except the applied mark, which it returns: the state a snapshot carries.
    pub fn export(
        &self,
        mut each: impl FnMut(Family, &[u8], &[u8]) -> Result<()>,
    ) -> Result<Option<(LogIndex, Term)>> {
        let snap = self.snapshot();
        if snap.get(Family::Meta, IMPORTING_KEY)?.is_some() {
            return Err(Error::Importing {
                path: self.path.clone(),
            });
        }
        let applied = match snap.get(Family::Meta, APPLIED_KEY)? {
            Some(bytes) => Some(decode_applied(&self.path, &bytes)?),
            None => None,
        };
        for family in Family::ALL {
            let mut cursor = snap.cursor(family, &[])?;
            while let (Some(k), Some(v)) = (cursor.key(), cursor.value()) {
                if !(family == Family::Meta && k == APPLIED_KEY) {
                    each(family, k, v)?;
                }
                cursor.advance()?;
            }
        }
        Ok(applied)
    }

    /// Starts replacing the whole store: empties it and marks, durably, that an import is
    /// under way.
    pub fn import_begin(&self) -> Result<()> {
        let mut batch = WriteBatch::default();
        self.empty_into(&mut batch)?;
        batch.put_cf(self.cf(Family::Meta), IMPORTING_KEY, [1]);
        self.scan_cache.clear();
        self.commit(batch, None, true, "start a snapshot install")?;
        self.flush()
    }

    /// Adds `contents` to a store being imported.
    pub fn import_chunk(&self, contents: HotBatch) -> Result<()> {
        let mut batch = WriteBatch::default();
        let catalog = self.add(&mut batch, contents);
        self.commit(batch, None, catalog, "install a snapshot")
    }

    /// Ends an import: the store is applied through `applied`, durably.
    pub fn import_finish(&self, applied: Option<(LogIndex, Term)>) -> Result<()> {
        let mut batch = WriteBatch::default();
        batch.delete_cf(self.cf(Family::Meta), IMPORTING_KEY);
        self.scan_cache.clear();
        self.commit(batch, applied, true, "finish a snapshot install")?;
        self.flush()
    }

    /// Whether an import was cut off in this store (before [`HotStore::import_finish`]): if
    /// so, empties the store. Returns whether it did.
    pub(crate) fn discard_interrupted_import(&self) -> Result<bool> {
        if self.get(Family::Meta, IMPORTING_KEY)?.is_none() {
            return Ok(false);
        }
        let mut batch = WriteBatch::default();
        self.empty_into(&mut batch)?;
        self.commit(batch, None, true, "discard an interrupted snapshot install")?;
        self.flush()?;
        Ok(true)
    }

    /// Deletes, in `batch`, every key of every family.
    fn empty_into(&self, batch: &mut WriteBatch) -> Result<()> {
        let snap = self.snapshot();
        for family in Family::ALL {
            let first = snap.cursor(family, &[])?.key().map(<[u8]>::to_vec);
            let last = snap.last_key(family, &[])?;
            if let (Some(first), Some(mut last)) = (first, last) {
                // The range's end is exclusive: the first key past the last one.
                last.push(0);
                batch.delete_range_cf(self.cf(family), first, last);
            }
        }
        Ok(())
    }
}
