//! A scope's hot rows kept as Arrow columns between scans ([`ScanCache`]), so that a full
//! scan reads no row of RocksDB again, and after writes only the rows they changed.
//!
//! An entry is the decoded hot tier of one scope as of its table's written mark
//! ([`HotSnapshot::written`]): every version's key, `_seq`, `_deleted` and the columns scans
//! asked for. Each applied entry that changes the table's rows adds its changes of the scope's
//! hot keys to the entry's delta ([`ScanCache::applied`]), and moves the mark the entry is
//! complete through. A scan reads its snapshot's mark through the snapshot itself, and uses
//! an entry exactly when that mark lies between the entry's base and the mark it is
//! complete through: the base's columns, overridden by the delta's changes up to that mark,
//! show what the snapshot holds, never a write before or after it. A scan folds a delta past
//! a 32nd of its base into new columns; one that grows past its base drops the entry (the
//! next full scan builds it again). Entries fit in a byte budget (least recently used go
//! first); a scope whose hot rows would not fit is scanned from RocksDB as before.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use arrow::array::{Array, ArrayRef, BooleanArray, BooleanBuilder, Int64Array, Int64Builder};
use arrow::compute::kernels::{boolean, cmp};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

use crate::catalog::{TableDef, TableId};
use crate::cold::store::KeyIndex;
use crate::cold::store::scan::{HotSource, InMemory, KeyRange, ScanError, ScanSpec};
use crate::hot::{Family, HotBatch, HotSnapshot, Touched};
use crate::value::DataType;

/// The budget of a new store's cache: 64 MiB.
pub const DEFAULT_BUDGET: usize = 64 << 20;

/// Rows decoded at a time while an entry is built.
const BUILD_CHUNK: usize = 8 * 1024;

/// Scopes remembered as too large to keep, at most.
const TOO_LARGE_KEPT: usize = 1024;

/// A scan folds a delta of more than this many changed keys, or a 32nd of its base's rows
/// if more, into a new base ([`Entry::rebased`]).
const REBASE_ROWS: usize = if cfg!(test) { 2 } else { 1024 };

/// A delta is kept up to this many changed keys, or as many as its base's rows if more:
/// past that, the entry is dropped.
const DELTA_ROWS: usize = if cfg!(test) { 12 } else { 64 * 1024 };

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
    /// Entries built so far.
    built: u64,
    /// Scopes found too large at a written mark: not built again until it changes.
    too_large: HashMap<EntryKey, u64>,
    /// Per table, the last applied entry that changed its rows, as [`ScanCache::applied`]
    /// was told (none: no entry since the cache began).
    marks: HashMap<(Family, TableId), u64>,
    /// Per family, the last applied entry that changed rows of it no one table holds.
    family_marks: HashMap<Family, u64>,
}

#[derive(Debug)]
struct Slot {
    entry: Arc<Entry>,
    used: u64,
    /// The changes of the scope's hot keys after `entry.written`, oldest first.
    delta: Vec<Arc<Chunk>>,
    delta_rows: usize,
    delta_bytes: usize,
    /// The entry index through which `entry` and `delta` hold every change of the rows.
    upto: u64,
}

impl Slot {
    fn bytes(&self) -> usize {
        self.entry.bytes + self.delta_bytes
    }
}

/// A key's new hot version after the scope prefix (`None`: the key left the hot tier).
type Change = (Box<[u8]>, Option<Box<[u8]>>);

/// The changes one applied entry made to a scope's hot keys, sorted by key.
#[derive(Debug)]
struct Chunk {
    mark: u64,
    changes: Vec<Change>,
}

/// What a batch changes in the scopes the cache holds, taken before it is written
/// ([`ScanCache::changes`]) and given to [`ScanCache::applied`] once it is.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    touched: Touched,
    scopes: HashMap<EntryKey, Vec<Change>>,
    ranges: Vec<(Family, Vec<u8>, Vec<u8>)>,
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

/// A scope's cached hot rows as a scan's snapshot holds them: `rows`, the entry's columns,
/// under `delta`, the changes since.
#[derive(Debug)]
pub struct Cached {
    pub rows: InMemory,
    pub delta: Delta,
}

/// Changes of a scope's hot keys made after its cached columns, up to a scan's snapshot.
#[derive(Debug)]
pub struct Delta {
    chunks: Vec<Arc<Chunk>>,
}

impl Delta {
    /// The changed keys within `keys`, each with its newest version, in key order.
    pub fn source(&self, keys: &KeyRange) -> DeltaSource<'_> {
        let mut changes = self.newest();
        changes.retain(|(k, _)| {
            keys.from.as_deref().is_none_or(|f| *k >= f)
                && keys.to.as_deref().is_none_or(|t| *k < t)
        });
        DeltaSource { changes, at: 0 }
    }

    /// Each changed key once, with its newest version, in key order.
    fn newest(&self) -> Vec<(&[u8], Option<&[u8]>)> {
        let mut changes: Vec<(&[u8], Option<&[u8]>)> = Vec::new();
        for chunk in &self.chunks {
            changes.extend(chunk.changes.iter().map(|(k, v)| (&**k, v.as_deref())));
        }
        if self.chunks.len() > 1 {
            // Stable: a key's changes stay oldest first, and the last one is kept.
            changes.sort_by(|a, b| a.0.cmp(b.0));
            let mut newest: Vec<(&[u8], Option<&[u8]>)> = Vec::with_capacity(changes.len());
            for change in changes {
                match newest.last_mut() {
                    Some(last) if last.0 == change.0 => *last = change,
                    _ => newest.push(change),
                }
            }
            changes = newest;
        }
        changes
    }
}

/// The merge's hot side over a [`Delta`]: keys after the scope prefix.
#[derive(Debug)]
pub struct DeltaSource<'a> {
    changes: Vec<(&'a [u8], Option<&'a [u8]>)>,
    at: usize,
}

impl HotSource for DeltaSource<'_> {
    fn key(&self) -> Option<&[u8]> {
        self.changes.get(self.at).map(|c| c.0)
    }

    fn value(&self) -> Option<&[u8]> {
        self.changes.get(self.at).and_then(|c| c.1)
    }

    fn falls_through(&self) -> bool {
        self.changes.get(self.at).is_some_and(|c| c.1.is_none())
    }

    fn advance(&mut self) -> crate::Result<()> {
        self.at += 1;
        Ok(())
    }
}

/// Table, scope and the rest of a row key (`row::scope_prefix`).
fn split_key(key: &[u8]) -> Option<(TableId, &str, &[u8])> {
    let table = u64::from_be_bytes(key.get(..8)?.try_into().ok()?);
    let len = usize::from(u16::from_be_bytes(key.get(8..10)?.try_into().ok()?));
    let scope = std::str::from_utf8(key.get(10..10 + len)?).ok()?;
    Some((TableId(table), scope, &key[10 + len..]))
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

    /// Entries built so far (read from RocksDB whole).
    pub fn built(&self) -> u64 {
        self.lock().built
    }

    /// Forgets every entry (the store was replaced).
    pub fn clear(&self) {
        let mut inner = self.lock();
        *inner = Inner {
            clock: inner.clock,
            built: inner.built,
            ..Inner::default()
        };
    }

    /// What `batch` changes in the cached scopes: taken before the batch is written, given
    /// to [`ScanCache::applied`] once it is.
    pub(crate) fn changes(&self, batch: &HotBatch) -> Pending {
        let touched = batch.touched();
        let cached: HashSet<(Family, TableId)> = {
            let inner = self.lock();
            inner.entries.keys().map(|(f, t, _)| (*f, *t)).collect()
        };
        let is_cached = |family: Family, table: &[u8; 8]| {
            cached.contains(&(family, TableId(u64::from_be_bytes(*table))))
        };
        let mut pending = Pending::default();
        if touched.tables.iter().any(|(f, t)| is_cached(*f, t)) {
            for family in [Family::Rows, Family::Streams] {
                for (key, value) in batch.point_changes(family) {
                    let Some((table, scope, rest)) = split_key(key) else {
                        continue;
                    };
                    if cached.contains(&(family, table)) {
                        pending
                            .scopes
                            .entry((family, table, scope.to_owned()))
                            .or_default()
                            .push((rest.into(), value.map(|v| v.as_slice().into())));
                    }
                }
                pending.ranges.extend(
                    batch
                        .deleted_ranges(family)
                        .map(|(start, end)| (family, start.to_vec(), end.to_vec())),
                );
            }
        }
        pending.touched = touched;
        pending
    }

    /// Entry `index`, whose changes `pending` holds, is written: each cached scope of a table
    /// it changed takes its changes, or is dropped when they cannot be followed (a range
    /// deletion, or a delta too large), or the entry was built missing an earlier change.
    pub(crate) fn applied(&self, index: u64, pending: Pending) {
        let Pending {
            touched,
            mut scopes,
            ranges,
        } = pending;
        let budget = self.budget.load(Ordering::Relaxed);
        let mut inner = self.lock();
        let inner = &mut *inner;
        let mut dropped: Vec<EntryKey> = Vec::new();
        for family in &touched.families {
            inner.family_marks.insert(*family, index);
            dropped.extend(inner.entries.keys().filter(|k| k.0 == *family).cloned());
        }
        for (family, table) in &touched.tables {
            let id = TableId(u64::from_be_bytes(*table));
            let previous = inner
                .marks
                .get(&(*family, id))
                .copied()
                .max(inner.family_marks.get(family).copied());
            for (key, slot) in inner.entries.iter_mut() {
                if (key.0, key.1) != (*family, id) || slot.upto >= index {
                    // Another table's, or built from a snapshot that holds the entry already.
                    continue;
                }
                let prefix = crate::row::scope_prefix(id, &key.2);
                let end = crate::hot::prefix_end(&prefix);
                let cut = ranges.iter().any(|(f, start, stop)| {
                    *f == *family
                        && end.as_ref().is_none_or(|e| start < e)
                        && prefix.as_slice() < stop.as_slice()
                });
                if cut || previous.is_some_and(|p| slot.upto < p) {
                    dropped.push(key.clone());
                    continue;
                }
                if let Some(mut changes) = scopes.remove(key) {
                    changes.sort_by(|a, b| a.0.cmp(&b.0));
                    slot.delta_rows += changes.len();
                    let bytes = chunk_bytes(&changes);
                    slot.delta_bytes += bytes;
                    inner.bytes += bytes;
                    slot.delta.push(Arc::new(Chunk {
                        mark: index,
                        changes,
                    }));
                }
                slot.upto = index;
                if slot.delta_rows > DELTA_ROWS.max(slot.entry.seq.len()) {
                    dropped.push(key.clone());
                }
            }
            inner.marks.insert((*family, id), index);
        }
        for key in dropped {
            if let Some(slot) = inner.entries.remove(&key) {
                inner.bytes -= slot.bytes();
            }
        }
        inner.evict_to(budget);
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
    ) -> Result<Option<Cached>, ScanError> {
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
                    if (slot.entry.written..=slot.upto).contains(&written)
                        && slot.entry.schema_version == def.schema_version =>
                {
                    slot.used = clock;
                    let delta = slot.delta.iter().filter(|c| c.mark <= written);
                    Some((slot.entry.clone(), delta.cloned().collect::<Vec<_>>()))
                }
                _ => None,
            }
        };
        if let Some((entry, chunks)) = &held
            && wanted.iter().all(|&p| entry.columns[p].is_some())
        {
            let delta = Delta {
                chunks: chunks.clone(),
            };
            let changed: usize = chunks.iter().map(|c| c.changes.len()).sum();
            if changed <= REBASE_ROWS.max(entry.seq.len() / 32) {
                return Ok(Some(Cached {
                    rows: entry.in_memory(spec)?,
                    delta,
                }));
            }
            // Many changes: folded into a new base, which this scan reads and leaves for
            // the next ones.
            let rebased = Arc::new(entry.rebased(def, &delta.newest(), written)?);
            self.install(&key, entry, rebased.clone());
            return Ok(Some(Cached {
                rows: rebased.in_memory(spec)?,
                delta: Delta { chunks: Vec::new() },
            }));
        }
        // Only a full scan builds: one that reads a key range or a few rows reads less than
        // the scope's whole hot tier.
        let full = spec.limit.is_none() && spec.keys.from.is_none() && spec.keys.to.is_none();
        if !full || self.lock().too_large.get(&key) == Some(&written) {
            return Ok(None);
        }
        let mut columns = wanted;
        if let Some((entry, _)) = &held {
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
        inner.built += 1;
        let used = inner.clock;
        inner.too_large.remove(&key);
        let slot = Slot {
            entry,
            used,
            delta: Vec::new(),
            delta_rows: 0,
            delta_bytes: 0,
            upto: written,
        };
        inner.bytes += slot.bytes();
        if let Some(old) = inner.entries.insert(key, slot) {
            inner.bytes -= old.bytes();
        }
        inner.evict_to(budget);
        Ok(Some(Cached {
            rows,
            delta: Delta { chunks: Vec::new() },
        }))
    }
}

impl ScanCache {
    /// Puts `rebased` in place of `base` (the entry it was made from) with the changes it
    /// holds taken out of the delta; nothing if the entry was replaced meanwhile.
    fn install(&self, key: &EntryKey, base: &Arc<Entry>, rebased: Arc<Entry>) {
        let mut inner = self.lock();
        let inner = &mut *inner;
        let Some(slot) = inner.entries.get_mut(key) else {
            return;
        };
        if !Arc::ptr_eq(&slot.entry, base) {
            return;
        }
        let before = slot.bytes();
        slot.delta.retain(|c| c.mark > rebased.written);
        slot.delta_rows = slot.delta.iter().map(|c| c.changes.len()).sum();
        slot.delta_bytes = slot.delta.iter().map(|c| chunk_bytes(&c.changes)).sum();
        slot.entry = rebased;
        inner.bytes = inner.bytes - before + slot.bytes();
    }
}

/// A guess of the bytes `changes` take.
fn chunk_bytes(changes: &[Change]) -> usize {
    changes
        .iter()
        .map(|(k, v)| 48 + k.len() + v.as_ref().map_or(0, |v| v.len()))
        .sum()
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
                self.bytes -= slot.bytes();
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

/// The decoded hot rows of one key range of a scope ([`Entry::build`]).
struct Part {
    keys: Vec<u8>,
    ends: Vec<u32>,
    seq: Int64Array,
    deleted: BooleanArray,
    /// By position in the columns built.
    columns: Vec<Vec<ArrayRef>>,
    bytes: usize,
}

/// A key between `a` and `b` (`a < b`), near the middle as if both were fractions in base
/// 256; `None` when there is none to split at.
pub(crate) fn midpoint(a: &[u8], b: &[u8]) -> Option<Vec<u8>> {
    let n = a.len().max(b.len()) + 1;
    let digit = |k: &[u8], i: usize| u16::from(k.get(i).copied().unwrap_or(0));
    let mut sum = vec![0u16; n];
    let mut carry = 0u16;
    for i in (0..n).rev() {
        let d = digit(a, i) + digit(b, i) + carry;
        sum[i] = d & 0xff;
        carry = d >> 8;
    }
    let mut rem = carry;
    let mut mid = Vec::with_capacity(n);
    for d in sum {
        let cur = rem * 256 + d;
        mid.push((cur / 2) as u8);
        rem = cur % 2;
    }
    while mid.last() == Some(&0) {
        mid.pop();
    }
    (a < mid.as_slice() && mid.as_slice() <= b).then_some(mid)
}

impl Entry {
    /// Decodes the hot rows under `prefix` in `columns`, its two halves by key on two
    /// threads; `None` when they take more than `budget` bytes (the work is dropped).
    fn build(
        snapshot: &HotSnapshot<'_>,
        family: Family,
        prefix: &[u8],
        def: &TableDef,
        columns: &[usize],
        written: u64,
        budget: usize,
    ) -> Result<Option<Entry>, ScanError> {
        let first = snapshot.cursor(family, prefix)?.key().map(<[u8]>::to_vec);
        let last = snapshot.last_key(family, prefix)?;
        let split = first
            .zip(last)
            .and_then(|(a, b)| midpoint(&a[prefix.len()..], &b[prefix.len()..]));
        let part = |from: Option<&[u8]>, to: Option<&[u8]>| {
            Entry::part(snapshot, family, prefix, (from, to), def, columns, budget)
        };
        let parts = match &split {
            None => vec![part(None, None)?],
            // The other half's thread takes this one's priority (a query's, lowered).
            Some(mid) => std::thread::scope(|s| {
                let high = s.spawn(|| part(Some(mid), None));
                let low = part(None, Some(mid));
                let high = high.join().unwrap_or_else(|_| {
                    Err(ScanError::State(crate::Error::Decode {
                        what: "cached hot rows",
                        reason: "the thread decoding half of them failed".into(),
                    }))
                });
                Ok::<_, ScanError>(vec![low?, high?])
            })?,
        };
        let Some(parts) = parts.into_iter().collect::<Option<Vec<Part>>>() else {
            return Ok(None);
        };
        if parts.iter().map(|p| p.bytes).sum::<usize>() > budget {
            return Ok(None);
        }
        let concat = |arrays: &[&dyn Array]| -> Result<ArrayRef, ScanError> {
            match arrays {
                [one] => Ok(arrow::array::make_array(one.to_data())),
                many => arrow::compute::concat(many).map_err(arrow_error),
            }
        };
        let mut all = vec![None; def.columns.len()];
        for (i, &p) in columns.iter().enumerate() {
            let arrays: Vec<&dyn Array> = parts
                .iter()
                .flat_map(|part| part.columns[i].iter().map(|a| a.as_ref()))
                .collect();
            all[p] = Some(match arrays.as_slice() {
                [] => arrow::array::new_empty_array(
                    crate::convert::table_schema(def).field(p).data_type(),
                ),
                some => concat(some)?,
            });
        }
        let seqs: Vec<&dyn Array> = parts.iter().map(|p| &p.seq as &dyn Array).collect();
        let flags: Vec<&dyn Array> = parts.iter().map(|p| &p.deleted as &dyn Array).collect();
        let seq = Int64Array::from(concat(&seqs)?.to_data());
        let deleted = BooleanArray::from(concat(&flags)?.to_data());
        let (mut keys, mut ends) = (Vec::new(), Vec::new());
        for part in parts {
            let Ok(base) = u32::try_from(keys.len()) else {
                return Ok(None);
            };
            keys.extend_from_slice(&part.keys);
            for end in part.ends {
                let Some(end) = end.checked_add(base) else {
                    return Ok(None);
                };
                ends.push(end);
            }
        }
        let keys = Arc::new(KeyIndex::in_order(keys, ends));
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

    /// Decodes the hot rows under `prefix` whose keys after it lie in `[from, to)`; `None`
    /// when they take more than `budget` bytes.
    fn part(
        snapshot: &HotSnapshot<'_>,
        family: Family,
        prefix: &[u8],
        (from, to): (Option<&[u8]>, Option<&[u8]>),
        def: &TableDef,
        columns: &[usize],
        budget: usize,
    ) -> Result<Option<Part>, ScanError> {
        let mut cursor = snapshot.cursor_range(family, prefix, from, to)?;
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
        let bytes = bytes + keys.len() + 13 * ends.len();
        Ok(Some(Part {
            keys,
            ends,
            seq: seq.finish(),
            deleted: deleted.finish(),
            columns: parts,
            bytes,
        }))
    }

    /// This entry with `changes` (each key once with its newest version, in key order)
    /// taken in, as of mark `written`: a key's change replaces its version here, or removes
    /// it (`None`).
    fn rebased(
        &self,
        def: &TableDef,
        changes: &[(&[u8], Option<&[u8]>)],
        written: u64,
    ) -> Result<Entry, ScanError> {
        let decoded: Vec<usize> = (0..def.columns.len())
            .filter(|&p| self.columns[p].is_some())
            .collect();
        let puts: Vec<Box<[u8]>> = changes
            .iter()
            .filter_map(|(_, v)| v.map(Into::into))
            .collect();
        let put_columns = crate::hot_columns::columns(def, &decoded, &puts)?;
        let (mut put_seq, mut put_deleted) = (Int64Builder::new(), BooleanBuilder::new());
        for v in &puts {
            let (s, d) = crate::hot_columns::head(v)?;
            put_seq.append_value(s);
            put_deleted.append_value(d);
        }
        let (put_seq, put_deleted) = (put_seq.finish(), put_deleted.finish());
        // Which version each new row is: (0, base row) or (1, put).
        let rows = self.keys.rows();
        let mut picks: Vec<(usize, usize)> = Vec::with_capacity(rows + puts.len());
        let (mut keys, mut ends) = (Vec::new(), Vec::with_capacity(rows + puts.len()));
        let (mut b, mut c, mut p) = (0, 0, 0);
        loop {
            let base = (b < rows).then(|| self.keys.key(b));
            let change = changes.get(c);
            let base_first = match (base, change) {
                (Some(bk), Some((ck, _))) => bk < *ck,
                (Some(_), None) => true,
                (None, _) => false,
            };
            let (key, pick) = match (base, change) {
                (Some(bk), _) if base_first => {
                    b += 1;
                    (bk, Some((0, b - 1)))
                }
                (base, Some((ck, v))) => {
                    if base == Some(*ck) {
                        b += 1;
                    }
                    c += 1;
                    (*ck, v.map(|_| (1, p)))
                }
                _ => break,
            };
            if let Some(pick) = pick {
                // The next put is the one after.
                p += pick.0;
                picks.push(pick);
                keys.extend_from_slice(key);
                let Ok(end) = u32::try_from(keys.len()) else {
                    return Err(ScanError::State(crate::Error::Decode {
                        what: "cached hot rows",
                        reason: "keys past 4 GiB".into(),
                    }));
                };
                ends.push(end);
            }
        }
        let merged = |base: &dyn Array, put: &dyn Array| {
            arrow::compute::interleave(&[base, put], &picks).map_err(arrow_error)
        };
        let mut columns = vec![None; def.columns.len()];
        for (&at, put) in decoded.iter().zip(&put_columns) {
            if let Some(base) = &self.columns[at] {
                columns[at] = Some(merged(base.as_ref(), put.as_ref())?);
            }
        }
        let seq = merged(&self.seq, &put_seq)?;
        let deleted = merged(&self.deleted, &put_deleted)?;
        let downcast = || {
            ScanError::State(crate::Error::Decode {
                what: "cached hot rows",
                reason: "a merged column changed its type".into(),
            })
        };
        let seq = seq
            .as_any()
            .downcast_ref::<Int64Array>()
            .ok_or_else(downcast)?
            .clone();
        let deleted = deleted
            .as_any()
            .downcast_ref::<BooleanArray>()
            .ok_or_else(downcast)?
            .clone();
        let keys = Arc::new(KeyIndex::in_order(keys, ends));
        let bytes = keys.size()
            + seq.get_array_memory_size()
            + deleted.get_array_memory_size()
            + columns
                .iter()
                .flatten()
                .map(|a: &ArrayRef| a.get_array_memory_size())
                .sum::<usize>();
        Ok(Entry {
            written,
            schema_version: self.schema_version,
            keys,
            columns,
            seq,
            deleted,
            bytes,
        })
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn a_midpoint_lies_between_its_ends(
            a in proptest::collection::vec(any::<u8>(), 0..12),
            b in proptest::collection::vec(any::<u8>(), 0..12),
        ) {
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            if let Some(mid) = super::midpoint(&lo, &hi) {
                prop_assert!(lo < mid && mid <= hi, "{lo:?} {mid:?} {hi:?}");
            }
        }

        #[test]
        fn keys_of_integers_apart_split_near_the_middle(a in 0u64..1 << 40, gap in 2u64..1 << 20) {
            let (lo, hi) = (a.to_be_bytes(), (a + gap).to_be_bytes());
            let mid = super::midpoint(&lo, &hi).expect("a key between");
            let mut padded = [0u8; 8];
            padded[..mid.len().min(8)].copy_from_slice(&mid[..mid.len().min(8)]);
            prop_assert_eq!(u64::from_be_bytes(padded), a + gap / 2);
        }
    }
}
