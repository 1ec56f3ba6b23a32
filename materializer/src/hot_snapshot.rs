//! The hot tier as of one moment ([`HotSnapshot`]), and a cursor over one prefix of it
//! ([`PrefixCursor`]) that reads keys and values in place: what flush jobs and table scans
//! read through.

use rocksdb::{DB, Direction, IteratorMode};

use super::{Family, HotStore, prefix_end};
use crate::error::{Error, Result};

/// The store as of one moment: reads that all see the same applied index, whatever entries
/// are applied meanwhile (a cold-tier job reads the rows it writes out through one).
pub struct HotSnapshot<'a> {
    store: &'a HotStore,
    snapshot: rocksdb::Snapshot<'a>,
}

impl std::fmt::Debug for HotSnapshot<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HotSnapshot")
            .field("path", &self.store.path)
            .finish()
    }
}

impl HotStore {
    /// A consistent view of the store as it is now.
    pub fn snapshot(&self) -> HotSnapshot<'_> {
        HotSnapshot {
            store: self,
            snapshot: self.db.snapshot(),
        }
    }
}

impl HotSnapshot<'_> {
    /// The last entry applied to the state this snapshot holds.
    pub fn applied_index(&self) -> Result<Option<folddb_log::LogIndex>> {
        match self.get(Family::Meta, super::APPLIED_KEY)? {
            Some(bytes) => Ok(Some(super::decode_applied(&self.store.path, &bytes)?.0)),
            None => Ok(None),
        }
    }
}

/// A snapshot's keys under one prefix, in order ([`HotSnapshot::cursor`]).
pub struct PrefixCursor<'a> {
    iter: rocksdb::DBRawIteratorWithThreadMode<'a, DB>,
    prefix: Vec<u8>,
    store: &'a HotStore,
}

impl std::fmt::Debug for PrefixCursor<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrefixCursor")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl PrefixCursor<'_> {
    /// The current key; `None` past the prefix's last one.
    pub fn key(&self) -> Option<&[u8]> {
        self.iter.key().filter(|k| k.starts_with(&self.prefix))
    }

    pub fn value(&self) -> Option<&[u8]> {
        self.key().and(self.iter.value())
    }

    pub fn advance(&mut self) -> Result<()> {
        if self.iter.valid() {
            self.iter.next();
        }
        self.check()
    }

    fn check(&self) -> Result<()> {
        self.iter.status().map_err(|source| Error::Rocks {
            op: "scan",
            path: self.store.path.clone(),
            source,
        })
    }
}

impl HotSnapshot<'_> {
    /// The index of the last entry, up to this snapshot, that changed a row of table `id` in
    /// `family` (0: none since the store was created): equal for two snapshots exactly when
    /// the table's rows are the same in both, as the fold of one log is.
    pub fn written(&self, family: Family, id: crate::TableId) -> Result<u64> {
        let table = id.0.to_be_bytes();
        let mut newest = 0;
        for key in [
            super::written_key(family, Some(&table)),
            super::written_key(family, None),
        ] {
            if let Some(v) = self.get(Family::Meta, &key)? {
                let index = <[u8; 8]>::try_from(v.as_slice())
                    .map(u64::from_be_bytes)
                    .map_err(|_| Error::Decode {
                        what: "a table's written mark",
                        reason: format!("{} bytes, expected 8", v.len()),
                    })?;
                newest = newest.max(index);
            }
        }
        Ok(newest)
    }

    pub fn get(&self, family: Family, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.snapshot
            .get_cf(self.store.cf(family), key)
            .map_err(self.store.rocks("read a key"))
    }

    /// The keys starting with `prefix`, in key order, read in place as the cursor moves.
    pub fn cursor(&self, family: Family, prefix: &[u8]) -> Result<PrefixCursor<'_>> {
        self.cursor_range(family, prefix, None, None)
    }

    /// The keys `prefix + k` with `from <= k < to` (`None`: unbounded), in key order, read
    /// in place as the cursor moves.
    pub fn cursor_range(
        &self,
        family: Family,
        prefix: &[u8],
        from: Option<&[u8]>,
        to: Option<&[u8]>,
    ) -> Result<PrefixCursor<'_>> {
        let mut options = rocksdb::ReadOptions::default();
        let end = match to {
            Some(to) => Some([prefix, to].concat()),
            None => prefix_end(prefix),
        };
        if let Some(end) = end {
            options.set_iterate_upper_bound(end);
        }
        // A scan reads each block once: it reads ahead, and leaves the block cache to the
        // point reads it would otherwise push out.
        options.fill_cache(false);
        options.set_readahead_size(2 << 20);
        let mut iter = self
            .snapshot
            .raw_iterator_cf_opt(self.store.cf(family), options);
        iter.seek([prefix, from.unwrap_or_default()].concat());
        let cursor = PrefixCursor {
            iter,
            prefix: prefix.to_vec(),
            store: self.store,
        };
        cursor.check()?;
        Ok(cursor)
    }

    /// The last key starting with `prefix`.
    pub fn last_key(&self, family: Family, prefix: &[u8]) -> Result<Option<Vec<u8>>> {
        let mut options = rocksdb::ReadOptions::default();
        if let Some(end) = prefix_end(prefix) {
            options.set_iterate_upper_bound(end);
        }
        options.set_iterate_lower_bound(prefix.to_vec());
        let mut iter = self
            .snapshot
            .raw_iterator_cf_opt(self.store.cf(family), options);
        iter.seek_to_last();
        iter.status().map_err(self.store.rocks("scan"))?;
        Ok(iter
            .key()
            .filter(|k| k.starts_with(prefix))
            .map(<[u8]>::to_vec))
    }

    /// Every key starting with `prefix`, in key order.
    pub fn scan_prefix(&self, family: Family, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut out = Vec::new();
        let iter = self.snapshot.iterator_cf(
            self.store.cf(family),
            IteratorMode::From(prefix, Direction::Forward),
        );
        for item in iter {
            let (k, v) = item.map_err(self.store.rocks("scan"))?;
            if !k.starts_with(prefix) {
                break;
            }
            out.push((k.into_vec(), v.into_vec()));
        }
        Ok(out)
    }
}
