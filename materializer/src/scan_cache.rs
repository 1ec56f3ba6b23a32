//! A scope's hot rows kept as Arrow columns between scans ([`ScanCache`]), so that a full
//! scan of a table nobody wrote to since the last one reads no row of RocksDB again.
//!
//! An entry is the decoded hot tier of one scope: every version's key, `_seq`, `_deleted`
//! and the columns scans asked for. It is tagged with the table's written mark
//! ([`HotSnapshot::written`]), which is read through the scan's own snapshot: an entry
//! serves a snapshot exactly when the marks are equal, so it shows what the snapshot holds,
//! never a write before or after it. Entries fit in a byte budget (least recently used go
//! first); a scope whose hot rows would not fit is scanned from RocksDB as before.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use arrow::array::{Array, ArrayRef, BooleanArray, BooleanBuilder, Int64Array, Int64Builder};
use arrow::compute::kernels::{boolean, cmp};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

use crate::catalog::{TableDef, TableId};
use crate::cold::store::KeyIndex;
use crate::cold::store::scan::{InMemory, ScanError, ScanSpec};
use crate::hot::{Family, HotSnapshot};
use crate::value::DataType;

/// The budget of a new store's cache: 64 MiB.
pub const DEFAULT_BUDGET: usize = 64 << 20;

/// Rows decoded at a time while an entry is built.
const BUILD_CHUNK: usize = 8 * 1024;

/// Scopes remembered as too large to keep, at most.
const TOO_LARGE_KEPT: usize = 1024;

type EntryKey = (Family, TableId, String);

/// Decoded hot rows of scopes, within a byte budget.
#[derive(Debug)]
pub struct ScanCache {
    budget: AtomicUsize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<EntryKey, Slot>,
    bytes: usize,
    clock: u64,
    /// Scopes found too large at a written mark: not built again until it changes.
    too_large: HashMap<EntryKey, u64>,
}

#[derive(Debug)]
struct Slot {
    entry: Arc<Entry>,
    used: u64,
}

/// One scope's hot rows, as of its table's written mark `written`.
#[derive(Debug)]
struct Entry {
    written: u64,
    schema_version: u32,
    keys: Arc<KeyIndex>,
    /// By position in the table's schema; `None`: not decoded (no scan asked for it).
    columns: Vec<Option<ArrayRef>>,
    seq: Int64Array,
    deleted: BooleanArray,
    bytes: usize,
}

impl Default for ScanCache {
    fn default() -> Self {
        ScanCache {
            budget: AtomicUsize::new(DEFAULT_BUDGET),
            inner: Mutex::default(),
        }
    }
}

impl ScanCache {
    /// Sets the byte budget (0: nothing is kept), dropping entries beyond it.
    pub fn set_budget(&self, bytes: usize) {
        self.budget.store(bytes, Ordering::Relaxed);
        let mut inner = self.lock();
        inner.evict_to(bytes);
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    /// Forgets every entry (the store was replaced).
    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.entries.clear();
        inner.too_large.clear();
        inner.bytes = 0;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The map holds no invariant a panicking reader could break.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The hot rows of `scope` of `spec.def` as `snapshot` holds them, in columns, when the
    /// cache holds them or `spec` is a full scan worth keeping them for; `None`: the caller
    /// reads RocksDB.
    pub(crate) fn rows(
        &self,
        snapshot: &HotSnapshot<'_>,
        scope: &str,
        prefix: &[u8],
        spec: &ScanSpec<'_>,
    ) -> Result<Option<InMemory>, ScanError> {
        let budget = self.budget.load(Ordering::Relaxed);
        if budget == 0 {
            return Ok(None);
        }
        let def = spec.def;
        let family = def.family();
        let written = snapshot.written(family, def.id)?;
        let key: EntryKey = (family, def.id, scope.to_owned());
        let n = def.columns.len();
        let wanted: Vec<usize> = spec.projection.iter().copied().filter(|&p| p < n).collect();
        let held = {
            let mut inner = self.lock();
            inner.clock += 1;
            let clock = inner.clock;
            match inner.entries.get_mut(&key) {
                Some(slot)
                    if slot.entry.written == written
                        && slot.entry.schema_version == def.schema_version =>
                {
                    slot.used = clock;
                    Some(slot.entry.clone())
                }
                _ => None,
            }
        };
        if let Some(entry) = &held
            && wanted.iter().all(|&p| entry.columns[p].is_some())
        {
            return entry.in_memory(spec).map(Some);
        }
        // Only a full scan builds: one that reads a key range or a few rows reads less than
        // the scope's whole hot tier.
        let full = spec.limit.is_none() && spec.keys.from.is_none() && spec.keys.to.is_none();
        if !full || self.lock().too_large.get(&key) == Some(&written) {
            return Ok(None);
        }
        let mut columns = wanted;
        if let Some(entry) = &held {
            columns.extend((0..n).filter(|&p| entry.columns[p].is_some()));
            columns.sort_unstable();
            columns.dedup();
        }
        // A counted table is not built when its count of visible rows says it cannot fit;
        // any build stops once past the budget.
        if let Some(rows) = crate::row::visible_rows(snapshot, def.id, scope)?
            && estimate(def, &columns, rows) > budget
        {
            return Ok(None);
        }
        let Some(entry) = Entry::build(snapshot, family, prefix, def, &columns, written, budget)?
        else {
            let mut inner = self.lock();
            if inner.too_large.len() >= TOO_LARGE_KEPT {
                inner.too_large.clear();
            }
            inner.too_large.insert(key, written);
            return Ok(None);
        };
        let entry = Arc::new(entry);
        let rows = entry.in_memory(spec)?;
        let mut inner = self.lock();
        inner.clock += 1;
        let used = inner.clock;
        inner.too_large.remove(&key);
        let bytes = entry.bytes;
        if let Some(old) = inner.entries.insert(key, Slot { entry, used }) {
            inner.bytes -= old.entry.bytes;
        }
        inner.bytes += bytes;
        inner.evict_to(budget);
        Ok(Some(rows))
    }
}

impl Inner {
    /// Drops the least recently used entries until the rest fit in `budget`.
    fn evict_to(&mut self, budget: usize) {
        while self.bytes > budget {
            let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, s)| s.used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(slot) = self.entries.remove(&oldest) {
                self.bytes -= slot.entry.bytes;
            }
        }
    }
}

/// A guess of the bytes `rows` hot rows take decoded in `columns`, per column type (text and
/// bytes at 32 bytes), with their key, `_seq` and `_deleted`.
fn estimate(def: &TableDef, columns: &[usize], rows: u64) -> usize {
    let per_row: usize = 16
        + 4
        + 9
        + columns
            .iter()
            .map(|&p| match def.columns[p].data_type {
                DataType::Boolean => 1,
                DataType::SmallInt => 2,
                DataType::Int | DataType::Float | DataType::Date => 4,
                DataType::BigInt
                | DataType::Double
                | DataType::Timestamp
                | DataType::DateTime
                | DataType::Time => 8,
                DataType::Decimal { .. } | DataType::Uuid => 16,
                DataType::Embedding(n) => 4 * usize::from(n) + 4,
                DataType::Text | DataType::Bytes | DataType::Json | DataType::File => 36,
            })
            .sum::<usize>();
    usize::try_from(rows)
        .unwrap_or(usize::MAX)
        .saturating_mul(per_row)
}

impl Entry {
    /// Decodes the hot rows under `prefix` in `columns`; `None` when they take more than
    /// `budget` bytes (the work is dropped).
    fn build(
        snapshot: &HotSnapshot<'_>,
        family: Family,
        prefix: &[u8],
        def: &TableDef,
        columns: &[usize],
        written: u64,
        budget: usize,
    ) -> Result<Option<Entry>, ScanError> {
        let mut cursor = snapshot.cursor(family, prefix)?;
        let (mut keys, mut ends) = (Vec::new(), Vec::new());
        let (mut seq, mut deleted) = (Int64Builder::new(), BooleanBuilder::new());
        let mut chunk: Vec<Box<[u8]>> = Vec::with_capacity(BUILD_CHUNK);
        let mut parts: Vec<Vec<ArrayRef>> = vec![Vec::new(); columns.len()];
        let mut bytes = 0usize;
        let mut decode = |chunk: &mut Vec<Box<[u8]>>, bytes: &mut usize| -> crate::Result<()> {
            for (part, array) in parts
                .iter_mut()
                .zip(crate::hot_columns::columns(def, columns, chunk)?)
            {
                *bytes += array.get_array_memory_size();
                part.push(array);
            }
            chunk.clear();
            Ok(())
        };
        while let (Some(key), Some(value)) = (cursor.key(), cursor.value()) {
            keys.extend_from_slice(&key[prefix.len()..]);
            let Ok(end) = u32::try_from(keys.len()) else {
                return Ok(None);
            };
            ends.push(end);
            let (s, d) = crate::hot_columns::head(value)?;
            seq.append_value(s);
            deleted.append_value(d);
            chunk.push(value.into());
            if chunk.len() == BUILD_CHUNK {
                decode(&mut chunk, &mut bytes)?;
                if bytes + keys.len() + 13 * ends.len() > budget {
                    return Ok(None);
                }
            }
            cursor.advance()?;
        }
        if !chunk.is_empty() {
            decode(&mut chunk, &mut bytes)?;
        }
        let concat = |arrays: &[ArrayRef]| -> Result<ArrayRef, ScanError> {
            let refs: Vec<&dyn Array> = arrays.iter().map(|a| a.as_ref()).collect();
            arrow::compute::concat(&refs).map_err(arrow_error)
        };
        let mut all = vec![None; def.columns.len()];
        for (&p, part) in columns.iter().zip(&parts) {
            all[p] = Some(match part.as_slice() {
                [] => arrow::array::new_empty_array(
                    crate::convert::table_schema(def).field(p).data_type(),
                ),
                [one] => one.clone(),
                many => concat(many)?,
            });
        }
        let keys = Arc::new(KeyIndex::in_order(keys, ends));
        let (seq, deleted) = (seq.finish(), deleted.finish());
        let bytes = keys.size()
            + seq.get_array_memory_size()
            + deleted.get_array_memory_size()
            + all
                .iter()
                .flatten()
                .map(|a| a.get_array_memory_size())
                .sum::<usize>();
        if bytes > budget {
            return Ok(None);
        }
        Ok(Some(Entry {
            written,
            schema_version: def.schema_version,
            keys,
            columns: all,
            seq,
            deleted,
            bytes,
        }))
    }

    /// The entry's rows as `spec` reads them: its projection, and hidden the tombstones
    /// (unless it shows them) and the versions below its `_seq` bounds.
    fn in_memory(&self, spec: &ScanSpec<'_>) -> Result<InMemory, ScanError> {
        let def = spec.def;
        let n = def.columns.len();
        let schema: SchemaRef = Arc::new(
            crate::convert::table_schema(def)
                .project(spec.projection)
                .map_err(arrow_error)?,
        );
        let columns: Vec<ArrayRef> = spec
            .projection
            .iter()
            .map(|&p| match p {
                p if p < n => self.columns[p].clone().ok_or_else(|| {
                    ScanError::State(crate::Error::Decode {
                        what: "a cached hot column",
                        reason: format!("column {p} was not decoded"),
                    })
                }),
                p if p == n => Ok(Arc::new(self.seq.clone()) as ArrayRef),
                _ => Ok(Arc::new(self.deleted.clone()) as ArrayRef),
            })
            .collect::<Result<_, _>>()?;
        let options =
            arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(self.seq.len()));
        let batch =
            RecordBatch::try_new_with_options(schema, columns, &options).map_err(arrow_error)?;
        let mut hidden = if spec.show_deleted {
            BooleanArray::from(vec![false; self.seq.len()])
        } else {
            self.deleted.clone()
        };
        if let Some(floor) = spec.min_seq.max(spec.seq_floor) {
            let below = cmp::lt(&self.seq, &Int64Array::new_scalar(floor)).map_err(arrow_error)?;
            hidden = boolean::or(&hidden, &below).map_err(arrow_error)?;
        }
        Ok(InMemory {
            keys: self.keys.clone(),
            batch,
            hidden,
        })
    }
}

fn arrow_error(e: arrow::error::ArrowError) -> ScanError {
    ScanError::State(crate::Error::Decode {
        what: "cached hot rows",
        reason: e.to_string(),
    })
}
