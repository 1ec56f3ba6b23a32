//! The hot tier: RocksDB holding recent row versions and the catalog, with the index of the
//! last log entry folded into it.
//!
//! # Correctness
//!
//! - Every entry's changes and the new applied index are written in one `WriteBatch`, so the
//!   store always holds exactly the fold of the log up to its applied index.
//! - The RocksDB WAL is off: the log is the durable record. After a crash RocksDB comes back
//!   at its last flush, which is some earlier applied index, and the caller replays the log
//!   from the entry after it. `atomic_flush` keeps the column families at the same point;
//!   without it, a crash could leave one family ahead of the applied index.
//! - Applying is idempotent per index: an entry at or below the applied index is skipped, so
//!   replaying an entry twice changes nothing.
//! - Reads of the catalog family are served from memory ([`CatalogCache`]) until a write
//!   touches that family: every request reads the catalog (its caller's account, the tables
//!   it names), while only DDL and account changes write it. A write empties the cache
//!   before [`HotStore::apply`] returns, so nothing that runs after an entry is applied
//!   sees the catalog as it was before it.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use folddb_log::{LogIndex, Term};
use rocksdb::{
    ColumnFamily, ColumnFamilyDescriptor, DB, DBPath, Direction, FlushOptions, IteratorMode,
    Options, WriteBatch, WriteOptions,
};

use crate::error::{Error, Result};

/// Where a key lives. Key layouts are specified in `materializer/FORMAT.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    /// Row versions of USER and SHARED tables.
    Rows,
    /// Rows of STREAM tables: their files live apart (`data/streams/`), expire by TTL and
    /// are never flushed.
    Streams,
    /// Namespaces, tables, users, storages.
    Catalog,
    /// The materializer's own bookkeeping: the applied index.
    Meta,
    /// The cold tier's key index: each row key whose newest flushed version is live, with
    /// that version's `_seq`. What primary-key checks read instead of the segments.
    ColdKeys,
    /// The change journal ([`crate::journal`]): every row change applied, in log order and
    /// by table.
    Journal,
    /// Topic messages, their partitions' heads and consumer groups' offsets
    /// ([`crate::topics`]).
    Topics,
}

impl Family {
    pub const ALL: [Family; 7] = [
        Family::Rows,
        Family::Catalog,
        Family::Meta,
        Family::Streams,
        Family::ColdKeys,
        Family::Journal,
        Family::Topics,
    ];

    /// The family's position in [`Family::ALL`].
    fn slot(self) -> usize {
        match self {
            Family::Rows => 0,
            Family::Catalog => 1,
            Family::Meta => 2,
            Family::Streams => 3,
            Family::ColdKeys => 4,
            Family::Journal => 5,
            Family::Topics => 6,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Family::Rows => "rows",
            Family::Streams => "streams",
            Family::Catalog => "catalog",
            Family::Meta => "meta",
            Family::ColdKeys => "cold_keys",
            Family::Journal => "journal",
            Family::Topics => "topics",
        }
    }
}

/// One key of the store with its family and value.
pub type KeyValue = (Family, Vec<u8>, Vec<u8>);

const APPLIED_KEY: &[u8] = b"applied";
/// The hot tier's layout version (`materializer/FORMAT.md`, "Versions").
const LAYOUT_KEY: &[u8] = b"layout";
const LAYOUT: u32 = 5;
/// Meta key: the cold tier's key index (`cold_keys`) is still to be built from the segments.
/// Set when a store of layout 2 or older is upgraded (those builds kept no index); the
/// server builds the index before it applies anything (`cold::job::build_key_index`).
pub const KEY_INDEX_PENDING_KEY: &[u8] = b"cold_keys_pending";

/// Meta key: the index of the last entry that changed a row of `table` (its first 8 key
/// bytes) in `family`, u64 BE; with no table, of the last one that changed rows of the
/// family it could not attribute to one table. What cached columns of a table's hot rows
/// are checked against ([`HotSnapshot::written`]).
fn written_key(family: Family, table: Option<&[u8]>) -> Vec<u8> {
    [
        b"written/",
        family.name().as_bytes(),
        b"/",
        table.unwrap_or_default(),
    ]
    .concat()
}

fn decode_applied(path: &Path, bytes: &[u8]) -> Result<(LogIndex, Term)> {
    let raw: [u8; 16] = bytes.try_into().map_err(|_| Error::BadAppliedIndex {
        path: path.to_path_buf(),
        len: bytes.len(),
    })?;
    let (index, term) = raw.split_at(8);
    let be = |b: &[u8]| u64::from_be_bytes(b.try_into().expect("8 bytes"));
    Ok((LogIndex(be(index)), Term(be(term))))
}

fn applied_bytes(index: LogIndex, term: Term) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&index.0.to_be_bytes());
    b[8..].copy_from_slice(&term.0.to_be_bytes());
    b
}

/// The changes one log entry makes, written atomically by [`HotStore::apply`].
///
/// A batch also answers reads of its own writes ([`HotBatch::get`], [`HotBatch::scan_prefix`])
/// so that the commands packed into one entry see each other's effects in order, and it can be
/// rolled back to a [`HotBatch::mark`] so that a command that fails half-way leaves nothing.
#[derive(Default, Clone)]
pub struct HotBatch {
    ops: Vec<(Family, Vec<u8>, Option<Vec<u8>>)>,
    /// Per family (by [`Family::slot`]), the position in `ops` of each key's newest op: what
    /// a read inside the batch sees.
    latest: [HashMap<Vec<u8>, usize>; Family::ALL.len()],
    /// Keys deleted by prefix ([`HotBatch::delete_prefix`]), in the order made.
    ranges: Vec<PrefixDelete>,
    /// The row changes the ops make, for live queries; not written to the store.
    events: Vec<crate::row::RowEvent>,
}

/// The tables a batch changes rows of ([`HotBatch::touched`]).
#[derive(Debug, Default)]
pub(crate) struct Touched {
    /// By family and table id (big-endian, as keys start).
    pub tables: BTreeSet<(Family, [u8; 8])>,
    /// Families with changes no one table holds.
    pub families: BTreeSet<Family>,
}

/// Every key of `family` from `start` up to (not including) `end` deleted, after the first
/// `at` ops of the batch and before the others.
#[derive(Debug, Clone)]
struct PrefixDelete {
    family: Family,
    start: Vec<u8>,
    end: Vec<u8>,
    at: usize,
}

/// A point in a [`HotBatch`] to roll back to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    ops: usize,
    ranges: usize,
    events: usize,
}

impl std::fmt::Debug for HotBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HotBatch")
            .field("ops", &self.ops.len())
            .field("ranges", &self.ranges.len())
            .finish()
    }
}

/// The first key after every key starting with `prefix`; none when there is no such key
/// (the prefix is empty or all `0xff`).
pub(crate) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let last = prefix.iter().rposition(|b| *b != 0xff)?;
    let mut end = prefix[..=last].to_vec();
    end[last] += 1;
    Some(end)
}

impl HotBatch {
    pub fn put(&mut self, family: Family, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.push(family, key.into(), Some(value.into()));
    }

    pub fn delete(&mut self, family: Family, key: impl Into<Vec<u8>>) {
        self.push(family, key.into(), None);
    }

    /// Deletes every key of `family` that starts with `prefix`, as one range deletion
    /// (RocksDB `DeleteRange`), whatever the store or the batch holds there so far: the
    /// ops made after it still apply. False, and nothing done, when the prefix bounds no
    /// range (empty, or all `0xff`): the caller deletes the keys one by one.
    pub fn delete_prefix(&mut self, family: Family, prefix: &[u8]) -> bool {
        let Some(end) = prefix_end(prefix) else {
            return false;
        };
        self.ranges.push(PrefixDelete {
            family,
            start: prefix.to_vec(),
            end,
            at: self.ops.len(),
        });
        true
    }

    /// Deletes every key of `family` from `start` up to (not including) `end`, as one range
    /// deletion, like [`HotBatch::delete_prefix`].
    pub fn delete_range(&mut self, family: Family, start: Vec<u8>, end: Vec<u8>) {
        self.ranges.push(PrefixDelete {
            family,
            start,
            end,
            at: self.ops.len(),
        });
    }

    /// A put that no read of the batch needs to see ([`HotBatch::get`] and
    /// [`HotBatch::holds`] do not): the journal's records, of which an entry writes two per
    /// row change, skip the batch's index of keys.
    pub(crate) fn append(&mut self, family: Family, key: Vec<u8>, value: Vec<u8>) {
        self.ops.push((family, key, Some(value)));
    }

    fn push(&mut self, family: Family, key: Vec<u8>, value: Option<Vec<u8>>) {
        self.latest[family.slot()].insert(key.clone(), self.ops.len());
        self.ops.push((family, key, value));
    }

    /// The position of the newest range deletion of `family` covering `key`.
    fn range_over(&self, family: Family, key: &[u8]) -> Option<usize> {
        self.ranges
            .iter()
            .rev()
            .find(|r| r.family == family && r.start.as_slice() <= key && key < r.end.as_slice())
            .map(|r| r.at)
    }

    /// The newest change of `key` in the batch: `Some(None)` for a deletion.
    pub(crate) fn newest(&self, family: Family, key: &[u8]) -> Option<Option<&Vec<u8>>> {
        let point = self.latest[family.slot()].get(key).copied();
        match (point, self.range_over(family, key)) {
            // A range deletion made at position `r` follows the ops before `r`.
            (Some(at), Some(r)) if at < r => Some(None),
            (Some(at), _) => Some(self.ops[at].2.as_ref()),
            (None, Some(_)) => Some(None),
            (None, None) => None,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty() && self.ranges.is_empty()
    }

    /// The `meta` keys of the tables whose rows the batch changes ([`written_key`]), each
    /// once.
    fn written_keys(&self) -> BTreeSet<Vec<u8>> {
        let touched = self.touched();
        let tables = touched
            .tables
            .iter()
            .map(|(family, table)| written_key(*family, Some(table)));
        let families = touched
            .families
            .iter()
            .map(|family| written_key(*family, None));
        tables.chain(families).collect()
    }

    /// The tables whose rows the batch changes: a change of a key too short to name its
    /// table (or a range deletion reaching past one table) touches its whole family.
    pub(crate) fn touched(&self) -> Touched {
        let mut out = Touched::default();
        let mut mark = |family: Family, start: &[u8], end: Option<&[u8]>| {
            if !matches!(family, Family::Rows | Family::Streams) {
                return;
            }
            let Some(table) = start.get(..8).and_then(|t| <[u8; 8]>::try_from(t).ok()) else {
                out.families.insert(family);
                return;
            };
            let within = end.is_none_or(|end| {
                end.starts_with(&table) || prefix_end(&table).is_some_and(|e| e == end)
            });
            if within {
                out.tables.insert((family, table));
            } else {
                out.families.insert(family);
            }
        };
        for (family, key, _) in &self.ops {
            mark(*family, key, None);
        }
        for r in &self.ranges {
            mark(r.family, &r.start, Some(&r.end));
        }
        out
    }

    /// The keys of `family` the batch writes or deletes one by one, each once with its
    /// newest value (`None`: deleted), in no order.
    pub(crate) fn point_changes(
        &self,
        family: Family,
    ) -> impl Iterator<Item = (&[u8], Option<&Vec<u8>>)> {
        self.latest[family.slot()]
            .keys()
            .map(move |k| (k.as_slice(), self.newest(family, k).flatten()))
    }

    /// The ranges of `family` the batch deletes, each as `[start, end)`.
    pub(crate) fn deleted_ranges(&self, family: Family) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.ranges
            .iter()
            .filter(move |r| r.family == family)
            .map(|r| (r.start.as_slice(), r.end.as_slice()))
    }

    /// Whether the batch changes any key of `family` starting with `prefix`.
    pub(crate) fn touches(&self, family: Family, prefix: &[u8]) -> bool {
        let overlaps = |r: &PrefixDelete| {
            r.family == family
                && prefix_end(prefix).is_none_or(|end| r.start < end)
                && prefix < r.end.as_slice()
        };
        self.ranges.iter().any(overlaps)
            || self.latest[family.slot()]
                .keys()
                .any(|k| k.starts_with(prefix))
    }

    /// The keys of `family` starting with `prefix` that the batch writes or deletes, sorted,
    /// each with its newest value (`None`: deleted).
    pub(crate) fn changes_under(
        &self,
        family: Family,
        prefix: &[u8],
    ) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        let mut out: Vec<(Vec<u8>, Option<Vec<u8>>)> = self.latest[family.slot()]
            .keys()
            .filter(|k| k.starts_with(prefix))
            .map(|k| (k.clone(), self.newest(family, k).and_then(|v| v.cloned())))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// A point to roll back to.
    pub fn mark(&self) -> Mark {
        Mark {
            ops: self.ops.len(),
            ranges: self.ranges.len(),
            events: self.events.len(),
        }
    }

    /// Records a row change the batch makes (see [`crate::row::RowEvent`]).
    pub fn record(&mut self, event: crate::row::RowEvent) {
        self.events.push(event);
    }

    /// The row changes recorded so far.
    pub(crate) fn events(&self) -> &[crate::row::RowEvent] {
        &self.events
    }

    /// The row changes recorded so far, leaving none.
    pub fn take_events(&mut self) -> Vec<crate::row::RowEvent> {
        std::mem::take(&mut self.events)
    }

    /// Forgets every change made since `mark`.
    pub fn rollback_to(&mut self, mark: Mark) {
        self.events.truncate(mark.events);
        self.ranges.truncate(mark.ranges);
        if mark.ops >= self.ops.len() {
            return;
        }
        self.ops.truncate(mark.ops);
        for map in &mut self.latest {
            map.clear();
        }
        for (at, (family, key, _)) in self.ops.iter().enumerate() {
            self.latest[family.slot()].insert(key.clone(), at);
        }
    }

    /// Whether the batch writes (or deletes) `key`.
    pub fn holds(&self, family: Family, key: &[u8]) -> bool {
        self.newest(family, key).is_some()
    }

    /// `key` as the store will hold it once this batch is applied.
    pub fn get(&self, store: &HotStore, family: Family, key: &[u8]) -> Result<Option<Vec<u8>>> {
        match self.newest(family, key) {
            Some(v) => Ok(v.cloned()),
            None => store.get(family, key),
        }
    }

    /// Every key starting with `prefix`, in key order, as the store will hold them once this
    /// batch is applied.
    pub fn scan_prefix(
        &self,
        store: &HotStore,
        family: Family,
        prefix: &[u8],
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let ours = &self.latest[family.slot()];
        let overlaps = |r: &PrefixDelete| {
            r.family == family
                && prefix_end(prefix).is_none_or(|end| r.start < end)
                && prefix < r.end.as_slice()
        };
        if !self.ranges.iter().any(overlaps) && !ours.keys().any(|k| k.starts_with(prefix)) {
            return store.scan_prefix(family, prefix);
        }
        let mut merged: std::collections::BTreeMap<Vec<u8>, Option<Vec<u8>>> =
            std::collections::BTreeMap::new();
        for (k, v) in store.scan_prefix(family, prefix)? {
            let v = match self.newest(family, &k) {
                Some(ours) => ours.cloned(),
                None => Some(v),
            };
            merged.insert(k, v);
        }
        for k in ours.keys().filter(|k| k.starts_with(prefix)) {
            let v = self.newest(family, k).and_then(|v| v.cloned());
            merged.insert(k.clone(), v);
        }
        Ok(merged
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect())
    }
}

/// The RocksDB hot tier. Only the materializer opens RocksDB.
pub struct HotStore {
    db: DB,
    path: PathBuf,
    write_options: WriteOptions,
    catalog: Mutex<CatalogCache>,
    scan_cache: crate::scan_cache::ScanCache,
}

/// Keys and prefix scans of the catalog family as RocksDB last gave them, each kept until a
/// write touches the family.
///
/// A read that misses notes the cache's generation, reads RocksDB, and keeps what it read
/// only if no write has emptied the cache since: a value read before a write can never be
/// kept after it.
#[derive(Default)]
struct CatalogCache {
    generation: u64,
    gets: HashMap<Vec<u8>, Option<Vec<u8>>>,
    scans: HashMap<Vec<u8>, Vec<KeyValuePair>>,
}

/// A key and its value, as a prefix scan returns them.
type KeyValuePair = (Vec<u8>, Vec<u8>);

/// One of the [`CatalogCache`]'s maps.
type Map<T> = fn(&mut CatalogCache) -> &mut HashMap<Vec<u8>, T>;

impl CatalogCache {
    /// Entries kept at most (of each kind); past it the cache starts over.
    const MAX_ENTRIES: usize = 4096;
    /// Bytes of one prefix scan kept at most (the audit log is not worth keeping).
    const MAX_SCAN_BYTES: usize = 64 * 1024;

    fn invalidate(&mut self) {
        self.generation += 1;
        self.gets.clear();
        self.scans.clear();
    }

    fn gets(&mut self) -> &mut HashMap<Vec<u8>, Option<Vec<u8>>> {
        &mut self.gets
    }

    fn scans(&mut self) -> &mut HashMap<Vec<u8>, Vec<KeyValuePair>> {
        &mut self.scans
    }

    /// Keeps `value`, read at `generation`, as `key`'s in `map`, unless a write has emptied
    /// the cache since.
    fn keep<T: Clone>(&mut self, map: Map<T>, generation: u64, key: &[u8], value: &T) {
        if generation != self.generation {
            return;
        }
        let map = map(self);
        if map.len() >= Self::MAX_ENTRIES {
            map.clear();
        }
        map.insert(key.to_vec(), value.clone());
    }
}

impl std::fmt::Debug for HotStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HotStore")
            .field("path", &self.path)
            .finish()
    }
}

impl HotStore {
    /// Opens (or creates) the hot tier in `path`, every family's files in it.
    pub fn open(path: impl Into<PathBuf>) -> Result<HotStore> {
        HotStore::open_with(path.into(), None)
    }

    /// Opens (or creates) the hot tier of data directory `dir` (DESIGN.md "Storage layout"):
    /// `dir/rocksdb`, with the STREAM tables' rows in `dir/streams`. A data directory must
    /// always be opened this way.
    pub fn open_data_dir(dir: &Path) -> Result<HotStore> {
        HotStore::open_with(dir.join("rocksdb"), Some(dir.join("streams")))
    }

    fn open_with(path: PathBuf, streams: Option<PathBuf>) -> Result<HotStore> {
        let rocks = |op: &'static str, at: &Path| {
            let at = at.to_path_buf();
            move |source| Error::Rocks {
                op,
                path: at,
                source,
            }
        };
        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        options.set_atomic_flush(true);
        let streams_path = match &streams {
            Some(dir) => Some(DBPath::new(dir, u64::MAX).map_err(rocks("place streams", dir))?),
            None => None,
        };
        let descriptors = Family::ALL.map(|family| {
            let mut cf = Options::default();
            if let (Family::Streams, Some(p)) = (family, &streams_path) {
                cf.set_cf_paths(std::slice::from_ref(p));
            }
            ColumnFamilyDescriptor::new(family.name(), cf)
        });
        if let Some(dir) = &streams {
            std::fs::create_dir_all(dir).map_err(|e| Error::Io {
                op: "create the streams directory",
                path: dir.clone(),
                source: e,
            })?;
        }
        let db =
            DB::open_cf_descriptors(&options, &path, descriptors).map_err(rocks("open", &path))?;
        let mut write_options = WriteOptions::default();
        write_options.disable_wal(true);
        let store = HotStore {
            db,
            path,
            write_options,
            catalog: Mutex::default(),
            scan_cache: Default::default(),
        };
        if store.discard_interrupted_import()? {
            tracing::warn!(
                path = %store.path.display(),
                "a snapshot install was cut off: the store is emptied, to be brought up again"
            );
        }
        store.upgrade_layout()?;
        Ok(store)
    }

    /// Brings a store written by an earlier build to the current layout (`meta` key
    /// `layout`), in one batch with the new mark: layout 1 kept STREAM rows in `rows`; they
    /// move to `streams`. Layouts 1 and 2 kept no cold key index: a store that applied
    /// entries is marked for its build ([`KEY_INDEX_PENDING_KEY`]); a new one has none to
    /// build.
    fn upgrade_layout(&self) -> Result<()> {
        let layout = self.get(Family::Meta, LAYOUT_KEY)?.map_or(1, |b| {
            <[u8; 4]>::try_from(b.as_slice()).map_or(0, u32::from_be_bytes)
        });
        if layout == LAYOUT {
            return Ok(());
        }
        // A newer build's store: its keys may mean what this build cannot know.
        if layout > LAYOUT {
            return Err(Error::Decode {
                what: "the hot tier's layout",
                reason: format!(
                    "layout {layout} was written by a newer build; this build reads layouts up \
                     to {LAYOUT}: run the newer build, or rebuild the data directory from the \
                     log with this one (folddb log replay)"
                ),
            });
        }
        let mut batch = WriteBatch::default();
        let mut moved = Vec::new();
        if layout < 2 {
            for table in crate::catalog::tables(self, None)? {
                if table.kind != crate::TableKind::Stream {
                    continue;
                }
                let prefix = crate::row::table_prefix(table.id);
                for (k, v) in self.scan_prefix(Family::Rows, &prefix)? {
                    batch.delete_cf(self.cf(Family::Rows), &k);
                    batch.put_cf(self.cf(Family::Streams), k, v);
                }
                moved.push(prefix);
            }
        }
        let applied = self.applied()?;
        if let Some((index, _)) = applied {
            if layout < 3 {
                batch.put_cf(self.cf(Family::Meta), KEY_INDEX_PENDING_KEY, [1]);
            }
            // Layouts 1 to 3 kept no journal: it starts after what was applied.
            if layout < 4 {
                batch.put_cf(
                    self.cf(Family::Meta),
                    crate::journal::HORIZON_KEY,
                    (index.0 + 1).to_be_bytes(),
                );
                if let Some(seq) = self.get(Family::Meta, crate::event_fold::LAST_SEQ_KEY)? {
                    batch.put_cf(self.cf(Family::Meta), crate::journal::HORIZON_SEQ_KEY, seq);
                }
            }
            // Layout 4 had no `topics` family (opening creates it): no topic existed, so
            // there is nothing to write.
        }
        batch.put_cf(self.cf(Family::Meta), LAYOUT_KEY, LAYOUT.to_be_bytes());
        self.commit(batch, None, false, "upgrade the layout")?;
        self.flush()?;
        for prefix in moved {
            self.compact_prefix(Family::Rows, &prefix);
        }
        Ok(())
    }

    fn cf(&self, family: Family) -> &ColumnFamily {
        self.db
            .cf_handle(family.name())
            .expect("every family is created at open")
    }

    fn rocks(&self, op: &'static str) -> impl Fn(rocksdb::Error) -> Error + '_ {
        move |source| Error::Rocks {
            op,
            path: self.path.clone(),
            source,
        }
    }

    /// The index and term of the last entry folded into this store.
    pub fn applied(&self) -> Result<Option<(LogIndex, Term)>> {
        let Some(bytes) = self
            .db
            .get_cf(self.cf(Family::Meta), APPLIED_KEY)
            .map_err(self.rocks("read the applied index"))?
        else {
            return Ok(None);
        };
        decode_applied(&self.path, &bytes).map(Some)
    }

    /// The index of the last entry folded into this store.
    pub fn applied_index(&self) -> Result<Option<LogIndex>> {
        Ok(self.applied()?.map(|(i, _)| i))
    }

    /// Folds the changes of entry `index` (of `term`) in, atomically with the new applied
    /// mark. Returns `false` (and changes nothing) if the entry is at or below the applied
    /// mark: applied already. (Entries arrive in log order; raft, not the store, guarantees
    /// there are no gaps, and openraft's own conformance suite applies with gaps.)
    pub fn apply(&self, index: LogIndex, term: Term, changes: HotBatch) -> Result<bool> {
        if self.applied_index()?.is_some_and(|a| index <= a) {
            return Ok(false);
        }
        let mut batch = WriteBatch::default();
        for key in changes.written_keys() {
            batch.put_cf(self.cf(Family::Meta), key, index.0.to_be_bytes());
        }
        // What the cached scopes' rows become, taken before the batch is given away.
        let cached = self.scan_cache.changes(&changes);
        let catalog = self.add(&mut batch, changes);
        match self.commit(batch, Some((index, term)), catalog, "apply a batch") {
            Ok(()) => self.scan_cache.applied(index.0, cached),
            Err(e) => {
                // What the store holds now is not known: nothing cached is kept.
                self.scan_cache.clear();
                return Err(e);
            }
        }
        Ok(true)
    }

    /// Writes `batch` with the applied mark set to `applied` (if any), atomically; `catalog`
    /// says whether it may touch the catalog family.
    fn commit(
        &self,
        mut batch: WriteBatch,
        applied: Option<(LogIndex, Term)>,
        catalog: bool,
        op: &'static str,
    ) -> Result<()> {
        if let Some((index, term)) = applied {
            batch.put_cf(
                self.cf(Family::Meta),
                APPLIED_KEY,
                applied_bytes(index, term),
            );
        }
        let written = self
            .db
            .write_opt(batch, &self.write_options)
            .map_err(self.rocks(op));
        // Even a failed write may have reached part of the store.
        if catalog {
            self.catalog_cache().invalidate();
        }
        written
    }

    /// Adds `changes` to `batch`; whether they touch the catalog family.
    fn add(&self, batch: &mut WriteBatch, changes: HotBatch) -> bool {
        let mut catalog = false;
        let mut ranges = changes.ranges.into_iter().peekable();
        let mut delete_ranges = |batch: &mut WriteBatch, upto: usize, catalog: &mut bool| {
            while let Some(r) = ranges.next_if(|r| r.at <= upto) {
                *catalog |= r.family == Family::Catalog;
                batch.delete_range_cf(self.cf(r.family), r.start, r.end);
            }
        };
        for (at, (family, key, value)) in changes.ops.into_iter().enumerate() {
            delete_ranges(batch, at, &mut catalog);
            catalog |= family == Family::Catalog;
            match value {
                Some(v) => batch.put_cf(self.cf(family), key, v),
                None => batch.delete_cf(self.cf(family), key),
            }
        }
        delete_ranges(batch, usize::MAX, &mut catalog);
        catalog
    }

    /// The hot rows of scopes kept in columns between scans ([`crate::scan_cache`]).
    pub fn scan_cache(&self) -> &crate::scan_cache::ScanCache {
        &self.scan_cache
    }

    fn catalog_cache(&self) -> std::sync::MutexGuard<'_, CatalogCache> {
        // The cache holds no invariant a panicking reader could break.
        self.catalog.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes `changes` to a window of the log's history kept beside the state (the
    /// journal's retention), outside the log: never rows, the catalog or the applied mark.
    /// Not flushed: a crash may undo it, which leaves an earlier, as consistent window.
    pub fn write_window(&self, changes: HotBatch) -> Result<()> {
        let mut batch = WriteBatch::default();
        let catalog = self.add(&mut batch, changes);
        self.commit(batch, None, catalog, "trim the journal")
    }

    /// Writes `changes` outside the log, durably: only for upgrading what an earlier build
    /// left (`materializer/FORMAT.md`, "Versions"), never for a fold's changes.
    pub fn upgrade(&self, changes: HotBatch) -> Result<()> {
        let mut batch = WriteBatch::default();
        let catalog = self.add(&mut batch, changes);
        self.scan_cache.clear();
        self.commit(batch, None, catalog, "upgrade the store")?;
        self.flush()
    }

    /// Every key of every family except the applied mark: what a snapshot carries.
    pub fn dump(&self) -> Result<Vec<KeyValue>> {
        let mut out = Vec::new();
        for family in Family::ALL {
            for (k, v) in self.scan_prefix(family, &[])? {
                if !(family == Family::Meta && k == APPLIED_KEY) {
                    out.push((family, k, v));
                }
            }
        }
        Ok(out)
    }

    /// Replaces the whole store with `contents`, applied through `applied` (installing a
    /// snapshot), atomically, and flushes it.
    pub fn replace_all(&self, applied: Option<(LogIndex, Term)>, contents: HotBatch) -> Result<()> {
        let mut batch = WriteBatch::default();
        for family in Family::ALL {
            for (k, _) in self.scan_prefix(family, &[])? {
                batch.delete_cf(self.cf(family), k);
            }
        }
        self.add(&mut batch, contents);
        self.scan_cache.clear();
        self.commit(batch, applied, true, "replace the store")?;
        self.flush()
    }

    pub fn get(&self, family: Family, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if family != Family::Catalog {
            return self.read(family, key);
        }
        self.through_cache(CatalogCache::gets, key, |_| true, || self.read(family, key))
    }

    /// `read()`, answered from the catalog cache's `map` when it holds `key`, else kept there
    /// if it `fits`.
    fn through_cache<T: Clone>(
        &self,
        map: Map<T>,
        key: &[u8],
        fits: impl FnOnce(&T) -> bool,
        read: impl FnOnce() -> Result<T>,
    ) -> Result<T> {
        let generation = {
            let mut cache = self.catalog_cache();
            if let Some(v) = map(&mut cache).get(key) {
                return Ok(v.clone());
            }
            cache.generation
        };
        let value = read()?;
        if fits(&value) {
            self.catalog_cache().keep(map, generation, key, &value);
        }
        Ok(value)
    }

    fn read(&self, family: Family, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.db
            .get_cf(self.cf(family), key)
            .map_err(self.rocks("read a key"))
    }

    /// Every key starting with `prefix`, in key order.
    pub fn scan_prefix(&self, family: Family, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        if family != Family::Catalog {
            return self.scan(family, prefix);
        }
        let small = |rows: &Vec<KeyValuePair>| {
            rows.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>()
                <= CatalogCache::MAX_SCAN_BYTES
        };
        self.through_cache(CatalogCache::scans, prefix, small, || {
            self.scan(family, prefix)
        })
    }

    fn scan(&self, family: Family, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut out = Vec::new();
        let iter = self.db.iterator_cf(
            self.cf(family),
            IteratorMode::From(prefix, Direction::Forward),
        );
        for item in iter {
            let (k, v) = item.map_err(self.rocks("scan"))?;
            if !k.starts_with(prefix) {
                break;
            }
            out.push((k.into_vec(), v.into_vec()));
        }
        Ok(out)
    }

    /// Up to `limit` keys from `start` on that start with `prefix`, in key order.
    pub fn scan_range(
        &self,
        family: Family,
        start: &[u8],
        prefix: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut out = Vec::new();
        let iter = self.db.iterator_cf(
            self.cf(family),
            IteratorMode::From(start, Direction::Forward),
        );
        for item in iter {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item.map_err(self.rocks("scan"))?;
            if !k.starts_with(prefix) {
                break;
            }
            out.push((k.into_vec(), v.into_vec()));
        }
        Ok(out)
    }

    /// How many keys start with `prefix` (counted without reading values into memory).
    pub fn count_prefix(&self, family: Family, prefix: &[u8]) -> Result<u64> {
        let mut n = 0u64;
        let iter = self.db.iterator_cf(
            self.cf(family),
            IteratorMode::From(prefix, Direction::Forward),
        );
        for item in iter {
            let (k, _) = item.map_err(self.rocks("scan"))?;
            if !k.starts_with(prefix) {
                break;
            }
            n += 1;
        }
        Ok(n)
    }

    /// Compacts the keys starting with `prefix` in `family`: after a flush moved a table's
    /// rows out, this drops the deletion markers scans would otherwise step over one by one.
    /// The memtables are written out first and the bottom level is rewritten too: markers
    /// left in either would stay, and every scan of the prefix would step over them.
    pub fn compact_prefix(&self, family: Family, prefix: &[u8]) {
        if let Err(e) = self.flush() {
            tracing::warn!(error = %e, "could not write the memtables out before a compaction");
        }
        let mut end = prefix.to_vec();
        while let Some(last) = end.pop() {
            if last < u8::MAX {
                end.push(last + 1);
                break;
            }
        }
        let end = (!end.is_empty()).then_some(end);
        let mut options = rocksdb::CompactOptions::default();
        options.set_bottommost_level_compaction(rocksdb::BottommostLevelCompaction::Force);
        self.db
            .compact_range_cf_opt(self.cf(family), Some(prefix), end.as_deref(), &options);
    }

    /// Writes the memtables of every family out together, so that the current applied index
    /// survives a crash and replay can start after it.
    /// About how many bytes `family` holds on disk and in memory (RocksDB's estimates:
    /// live data in its files, plus its memtables).
    pub fn family_bytes(&self, family: Family) -> Result<u64> {
        let cf = self.cf(family);
        let get = |name: &str| {
            self.db
                .property_int_value_cf(cf, name)
                .map(|v| v.unwrap_or(0))
                .map_err(self.rocks("read a property"))
        };
        Ok(get("rocksdb.estimate-live-data-size")? + get("rocksdb.cur-size-all-mem-tables")?)
    }

    pub fn flush(&self) -> Result<()> {
        let mut options = FlushOptions::default();
        options.set_wait(true);
        let cfs: Vec<&ColumnFamily> = Family::ALL.iter().map(|f| self.cf(*f)).collect();
        self.db
            .flush_cfs_opt(&cfs, &options)
            .map_err(self.rocks("flush"))
    }

    /// The directory of this store.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

// The whole store out and in: what a raft snapshot carries.
#[path = "hot_export.rs"]
mod export;

// Consistent reads of the store: snapshots and their prefix cursors.
#[path = "hot_snapshot.rs"]
mod snapshot;
pub use snapshot::{HotSnapshot, PrefixCursor};

#[cfg(test)]
#[path = "hot_test.rs"]
mod tests;
