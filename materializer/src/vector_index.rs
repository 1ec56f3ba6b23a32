//! Vector indexes (API.md 3.3, 3.6): an approximate nearest-neighbour index (usearch's HNSW)
//! of one EMBEDDING column, per table scope (each owner of a USER table has its own, so a
//! search never sees another user's vectors). The catalog says which columns have one
//! ([`VectorIndexDef`]); the index itself is a fold every node makes for itself, in
//! memory:
//!
//! - **built** from a scan of the scope's visible rows, hot and cold, the first time the
//!   scope is searched, after noting the last `_seq` assigned (nothing the scan misses is
//!   older);
//! - **kept up to date** from the change journal: before each search, the scope's changes
//!   after the last one folded in (inserts, updates, deletes, in log order) are applied to
//!   it. Re-applying a change the scan already saw changes nothing, so a change made during
//!   the scan is never lost;
//! - **saved** to the node's disk after a build and every [`SAVE_AFTER_CHANGES`] changes
//!   folded in (with [`VectorIndexes::with_snapshots`]; `vector_snapshot.rs`), and after a
//!   restart **loaded** from there and caught up from the journal;
//! - **built again** when the journal no longer holds the changes it needs (trimmed past
//!   it), when the index was dropped and created again, or when no usable snapshot is
//!   there (a new node, a replay into a new directory, a crash during the first build): it
//!   holds nothing the log and the segments do not.
//!
//! An index answers with candidates (primary keys and distances); the caller reads the
//! rows and ranks them exactly.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::Float32Type;

use crate::catalog::{self, StateRead, TableDef, TableId, VectorIndexDef, VectorMetric};
use crate::cold::ColdStore;
use crate::convert;
use crate::error::{Error, Result};
use crate::hot::HotStore;
use crate::journal;
use crate::row::encode_key_part;
use crate::scan::{ScanSpec, scan_scope};
use crate::value::{DataType, Value};

#[path = "vector_snapshot.rs"]
mod snapshot;
use snapshot::Snapshots;

/// Changes read from the journal at a time while catching up.
const CATCH_UP_BATCH: usize = 4096;
/// A scope's index is saved again once this many changes were folded in since it was last
/// saved (or loaded): at most this many are caught up again after a restart.
pub const SAVE_AFTER_CHANGES: u64 = 10_000;
/// Candidates an HNSW search keeps while it walks the graph.
const EXPANSION_SEARCH: usize = 128;
/// Concurrent searches and inserts one index serves (usearch keeps a context for each).
const THREADS: usize = 64;
/// How long a search waits for its index to be built or caught up (a million vectors take
/// minutes to build): past it, the search is answered exactly and the work goes on.
const WAIT_FOR_INDEX: std::time::Duration = std::time::Duration::from_secs(3);

/// What an index build tells whoever watches (`system.jobs`).
pub trait BuildObserver: Send + Sync {
    /// A build of `target` (`namespace.table.column`, and the owner for a USER table)
    /// starts; the token identifies it to [`BuildObserver::finished`].
    fn started(&self, target: &str) -> String;
    /// The build ended: the vectors indexed, or why it failed.
    fn finished(&self, token: &str, result: std::result::Result<String, String>);
}

/// Which index a search reads: the one on `index`'s column of `def`, for the rows of
/// `scope` (a USER table's owner; empty for SHARED tables).
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub def: &'a TableDef,
    pub index: &'a VectorIndexDef,
    pub scope: &'a str,
}

/// One search's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Hits {
    /// The nearest rows found, nearest first: primary key and distance (the index's:
    /// cosine distance, squared Euclidean distance, or 1 − inner product).
    pub hits: Vec<(Value, f32)>,
    /// How many vectors the scope's index holds: a search for that many or more found them
    /// all.
    pub indexed: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ScopeKey {
    table: TableId,
    column: u32,
    created_index: u64,
    scope: String,
}

/// Every vector index this node has built, by table scope.
pub struct VectorIndexes {
    scopes: Mutex<HashMap<ScopeKey, Arc<ScopeIndex>>>,
    observer: Option<Arc<dyn BuildObserver>>,
    /// How long a search waits for its index to be built or caught up before it leaves
    /// the work to go on in the background and is answered by an exact search.
    wait: std::time::Duration,
    snapshots: Option<Arc<Snapshots>>,
    save_after: u64,
    build_delay: std::time::Duration,
    /// Whether the snapshot directory was swept since this node started.
    swept: std::sync::atomic::AtomicBool,
}

impl Default for VectorIndexes {
    fn default() -> VectorIndexes {
        VectorIndexes::new(None)
    }
}

impl std::fmt::Debug for VectorIndexes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VectorIndexes")
            .field("scopes", &self.lock().len())
            .finish()
    }
}

#[derive(Default)]
struct ScopeIndex {
    /// Set while a thread builds or catches up the index: one at a time.
    busy: std::sync::atomic::AtomicBool,
    built: RwLock<Option<Built>>,
}

struct Built {
    index: usearch::Index,
    dims: usize,
    metric: VectorMetric,
    /// The encoded primary key of each row indexed → its key in the index, and back.
    keys: HashMap<Vec<u8>, u64>,
    rows: HashMap<u64, Value>,
    next_key: u64,
    /// The journal position of the last change folded in.
    through: (i64, u32),
    /// The last `_seq` assigned when it was last caught up.
    seen_seq: i64,
    /// Changes folded in since it was last saved or loaded (`u64::MAX`: never saved).
    unsaved: u64,
}

fn index_error(e: impl std::fmt::Display) -> Error {
    Error::VectorIndex(e.to_string())
}

fn metric_kind(metric: VectorMetric) -> usearch::MetricKind {
    match metric {
        VectorMetric::Cosine => usearch::MetricKind::Cos,
        VectorMetric::L2 => usearch::MetricKind::L2sq,
        VectorMetric::Dot => usearch::MetricKind::IP,
    }
}

fn pk_bytes(pk: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    encode_key_part(pk, &mut out);
    out
}

impl Built {
    fn new(dims: usize, metric: VectorMetric, capacity: usize) -> Result<Built> {
        let options = usearch::IndexOptions {
            dimensions: dims,
            metric: metric_kind(metric),
            quantization: usearch::ScalarKind::F32,
            connectivity: 0,
            expansion_add: 0,
            expansion_search: 0,
            multi: false,
        };
        let index = usearch::Index::new(&options).map_err(index_error)?;
        // A wider search than usearch's default 64: fewer true neighbours missed, for a
        // little more time per search.
        index.change_expansion_search(EXPANSION_SEARCH);
        index
            .reserve_capacity_and_threads(capacity.max(64), THREADS)
            .map_err(index_error)?;
        Ok(Built {
            index,
            dims,
            metric,
            keys: HashMap::new(),
            rows: HashMap::new(),
            next_key: 0,
            through: (0, 0),
            seen_seq: 0,
            unsaved: u64::MAX,
        })
    }

    /// Room for `more` vectors beyond those held.
    fn reserve(&self, more: usize) -> Result<()> {
        let needed = self.index.size() + more;
        if needed > self.index.capacity() {
            let capacity = needed.max(self.index.capacity() * 2);
            self.index
                .reserve_capacity_and_threads(capacity, THREADS)
                .map_err(index_error)?;
        }
        Ok(())
    }

    /// The memory it holds: the graph and vectors (usearch's count), and about what the key
    /// maps take.
    fn memory_bytes(&self) -> usize {
        let keys = self.keys.capacity() * (std::mem::size_of::<(Vec<u8>, u64)>() + 1)
            + self.keys.keys().map(Vec::capacity).sum::<usize>();
        let rows = self.rows.capacity() * (std::mem::size_of::<(u64, Value)>() + 1);
        self.index.memory_usage() + keys + rows
    }

    /// Takes `pk` out of the index, if it is in.
    fn remove(&mut self, pk: &[u8]) -> Result<()> {
        if let Some(key) = self.keys.remove(pk) {
            self.rows.remove(&key);
            self.index.remove(key).map_err(index_error)?;
        }
        Ok(())
    }

    /// A key for row `pk`, recorded.
    fn assign(&mut self, pk: Value, bytes: Vec<u8>) -> u64 {
        let key = self.next_key;
        self.next_key += 1;
        self.keys.insert(bytes, key);
        self.rows.insert(key, pk);
        key
    }

    /// Whether the index can rank `vector`: of its dimension, finite, and (for cosine
    /// distance, which a zero vector has none of) not all zeros.
    fn rankable(&self, vector: &[f32]) -> bool {
        vector.len() == self.dims
            && vector.iter().all(|x| x.is_finite())
            && (self.metric != VectorMetric::Cosine || vector.iter().any(|x| *x != 0.0))
    }

    /// Folds in journal changes of the scope, in log order (the last change of a row
    /// decides it), adding on `threads` threads.
    fn apply_changes(
        &mut self,
        changes: &[journal::Change],
        column: u32,
        threads: usize,
    ) -> Result<()> {
        let mut last: HashMap<Vec<u8>, (&Value, Option<&[f32]>)> = HashMap::new();
        for change in changes {
            let vector =
                change
                    .new
                    .as_ref()
                    .filter(|v| !v.deleted)
                    .and_then(|v| match v.cell(column) {
                        Some(Value::Embedding(e)) => Some(e.as_slice()),
                        _ => None,
                    });
            last.insert(pk_bytes(&change.pk), (&change.pk, vector));
        }
        let mut todo = Vec::with_capacity(last.len());
        for (bytes, (pk, vector)) in last {
            self.remove(&bytes)?;
            if let Some(vector) = vector.filter(|v| self.rankable(v)) {
                todo.push((self.assign(pk.clone(), bytes), vector));
            }
        }
        self.add_all(&todo, threads)?;
        if let Some(change) = changes.last() {
            self.through = change.scope_position();
        }
        self.unsaved = self.unsaved.saturating_add(changes.len() as u64);
        Ok(())
    }

    /// Adds `todo` (keys assigned) to the index, on `threads` threads.
    fn add_all(&self, todo: &[(u64, &[f32])], threads: usize) -> Result<()> {
        self.reserve(todo.len())?;
        let index = &self.index;
        let chunk = todo.len().div_ceil(threads.max(1)).max(1);
        std::thread::scope(|s| {
            let workers: Vec<_> = todo
                .chunks(chunk)
                .map(|part| {
                    s.spawn(move || {
                        part.iter()
                            .try_for_each(|(key, v)| index.add(*key, v).map_err(index_error))
                    })
                })
                .collect();
            workers.into_iter().try_for_each(|w| {
                w.join()
                    .unwrap_or_else(|_| Err(index_error("an indexing thread failed")))
            })
        })
    }

    /// Adds the rows of one scanned batch (primary key, embedding), on `threads` threads.
    fn add_batch(&mut self, batch: &RecordBatch, pk_type: DataType, threads: usize) -> Result<()> {
        let (pks, vectors) = (batch.column(0), batch.column(1));
        let Some(list) = vectors.as_fixed_size_list_opt() else {
            return Err(index_error("the embedding column is not a list of floats"));
        };
        let values = list
            .values()
            .as_primitive_opt::<Float32Type>()
            .ok_or_else(|| index_error("the embedding column is not a list of floats"))?
            .values();
        let dims = usize::try_from(list.value_length()).unwrap_or(0);
        if dims != self.dims {
            return Err(index_error(format!(
                "the column holds vectors of {dims} components, the index {}",
                self.dims
            )));
        }
        let mut todo = Vec::with_capacity(batch.num_rows());
        for row in 0..batch.num_rows() {
            if list.is_null(row) {
                continue;
            }
            let start = list.value_offset(row) as usize;
            let vector = &values[start..start + dims];
            if !self.rankable(vector) {
                continue;
            }
            let pk = convert::arrow_to_value(pks.as_ref(), row, pk_type).map_err(index_error)?;
            let bytes = pk_bytes(&pk);
            self.remove(&bytes)?;
            todo.push((self.assign(pk, bytes), vector));
        }
        self.add_all(&todo, threads)
    }
}

impl VectorIndexes {
    /// Indexes whose builds `observer` is told of.
    pub fn new(observer: Option<Arc<dyn BuildObserver>>) -> VectorIndexes {
        VectorIndexes {
            scopes: Mutex::default(),
            observer,
            wait: WAIT_FOR_INDEX,
            snapshots: None,
            save_after: SAVE_AFTER_CHANGES,
            build_delay: std::time::Duration::ZERO,
            swept: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Indexes saved in (and loaded from) directory `dir` of the node's disk.
    pub fn with_snapshots(mut self, dir: impl Into<std::path::PathBuf>) -> VectorIndexes {
        self.snapshots = Some(Arc::new(Snapshots::new(dir.into())));
        self
    }

    /// The same, each build starting after `delay` (tests: a crash during a build).
    pub fn with_build_delay(mut self, delay: std::time::Duration) -> VectorIndexes {
        self.build_delay = delay;
        self
    }

    /// The same, saving an index again after `changes` changes instead of
    /// [`SAVE_AFTER_CHANGES`] (tests).
    pub fn with_save_after(mut self, changes: u64) -> VectorIndexes {
        self.save_after = changes;
        self
    }

    /// The same, with searches waiting `wait` for their index (tests).
    pub fn with_wait(mut self, wait: std::time::Duration) -> VectorIndexes {
        self.wait = wait;
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ScopeKey, Arc<ScopeIndex>>> {
        self.scopes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The index of `key`, made (empty) if this node has none yet. Indexes the catalog no
    /// longer names are forgotten on the way.
    fn scope(&self, state: &dyn StateRead, key: &ScopeKey) -> Result<Arc<ScopeIndex>> {
        let mut scopes = self.lock();
        if let Some(s) = scopes.get(key) {
            return Ok(s.clone());
        }
        let mut live = HashMap::new();
        for k in scopes.keys() {
            if let std::collections::hash_map::Entry::Vacant(e) = live.entry((k.table, k.column)) {
                let def = catalog::vector_index(state, k.table, k.column)?;
                e.insert(def.map(|d| d.created_index));
            }
        }
        scopes.retain(|k, _| live.get(&(k.table, k.column)) == Some(&Some(k.created_index)));
        if let Some(snapshots) = &self.snapshots {
            // Once per scope this node starts to serve: the snapshots of indexes dropped
            // since are deleted (and, at the first, what crashed saves left).
            let first = !self.swept.swap(true, std::sync::atomic::Ordering::AcqRel);
            let live = |table: u64, column: u32, created: u64| {
                catalog::vector_index(state, TableId(table), column)
                    .map(|d| d.is_none_or(|d| d.created_index == created))
                    .unwrap_or(true)
            };
            snapshots.sweep(&live, first);
        }
        Ok(scopes.entry(key.clone()).or_default().clone())
    }

    /// The `count` rows of `scope` of `def` nearest to `query` by `index`, with the index
    /// first built or caught up to the committed state of `store` (and `cold` under it).
    /// `None` when that takes longer than the search waits ([`WAIT_FOR_INDEX`]), or another
    /// search's is under way: it goes on in the background, and the caller searches
    /// exactly. Blocking.
    pub fn search(
        &self,
        store: &Arc<HotStore>,
        cold: Option<&Arc<ColdStore>>,
        target: Target<'_>,
        query: &[f32],
        count: usize,
    ) -> Result<Option<Hits>> {
        let Target { def, index, scope } = target;
        let column = def
            .column_by_id(index.column)
            .ok_or_else(|| index_error("the indexed column no longer exists"))?;
        let DataType::Embedding(dims) = column.data_type else {
            return Err(index_error("the indexed column is not an EMBEDDING"));
        };
        if query.len() != usize::from(dims) || !query.iter().all(|x| x.is_finite()) {
            return Err(index_error(format!(
                "the query vector must have {dims} finite components"
            )));
        }
        let key = ScopeKey {
            table: def.id,
            column: index.column,
            created_index: index.created_index,
            scope: scope.to_owned(),
        };
        let entry = self.scope(store.as_ref(), &key)?;
        let last = crate::EventFold::last_seq(store.as_ref())?.unwrap_or(0);
        let current = entry
            .built
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .is_some_and(|b| b.seen_seq == last && b.dims == usize::from(dims));
        if !current {
            let work = BringUp {
                entry: entry.clone(),
                store: store.clone(),
                cold: cold.cloned(),
                def: def.clone(),
                index: index.clone(),
                scope: scope.to_owned(),
                key,
                dims,
                observer: self.observer.clone(),
                snapshots: self.snapshots.clone(),
                save_after: self.save_after,
                build_delay: self.build_delay,
            };
            if !work.run_waiting(self.wait)? {
                return Ok(None);
            }
        }
        let built = entry.built.read().unwrap_or_else(|p| p.into_inner());
        let Some(built) = built.as_ref() else {
            return Err(index_error("the index was not built"));
        };
        let indexed = built.index.size();
        if indexed == 0 || count == 0 {
            return Ok(Some(Hits {
                hits: Vec::new(),
                indexed,
            }));
        }
        let found = built
            .index
            .search(query, count.min(indexed))
            .map_err(index_error)?;
        let hits = found
            .keys
            .iter()
            .zip(found.distances)
            .filter_map(|(k, d)| built.rows.get(k).map(|pk| (pk.clone(), d)))
            .collect();
        Ok(Some(Hits { hits, indexed }))
    }
}

/// Bringing one scope's index up to date (a build, or a catch-up from the journal), on a
/// thread of its own: it owns what it reads.
struct BringUp {
    entry: Arc<ScopeIndex>,
    store: Arc<HotStore>,
    cold: Option<Arc<ColdStore>>,
    def: TableDef,
    index: VectorIndexDef,
    scope: String,
    key: ScopeKey,
    dims: u16,
    observer: Option<Arc<dyn BuildObserver>>,
    snapshots: Option<Arc<Snapshots>>,
    save_after: u64,
    build_delay: std::time::Duration,
}

impl BringUp {
    /// Starts the work, unless another thread is at it, and waits for it up to `wait`:
    /// whether it is done (its error, if it failed in time).
    fn run_waiting(self, wait: std::time::Duration) -> Result<bool> {
        use std::sync::atomic::Ordering;
        if self
            .entry
            .busy
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return Ok(false);
        }
        let entry = self.entry.clone();
        let (done, answer) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("folddb-vector-index".into())
            .spawn(move || {
                let result = self.bring_up_to_date();
                if let Err(e) = &result {
                    tracing::warn!(error = %e, "bringing a vector index up to date");
                }
                let ok = result.is_ok();
                let _ = done.send(result);
                if ok {
                    self.save_if_due();
                }
                self.entry.busy.store(false, Ordering::Release);
            });
        if let Err(e) = spawned {
            entry.busy.store(false, Ordering::Release);
            return Err(index_error(format!("starting an index build: {e}")));
        }
        match answer.recv_timeout(wait) {
            Ok(result) => result.map(|()| true),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Ok(false),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                Err(index_error("the index build stopped"))
            }
        }
    }

    /// Loads or builds the index if it has none (or one the journal can no longer bring up
    /// to date), then folds in the scope's changes since. The caller holds `busy`.
    fn bring_up_to_date(&self) -> Result<()> {
        let (entry, store, dims) = (&self.entry, self.store.as_ref(), self.dims);
        let horizon = journal::horizon_seq(store)?;
        let last = crate::EventFold::last_seq(store)?.unwrap_or(0);
        // The journal must still hold every change after what the index holds, and the
        // index must hold nothing newer than the state (a snapshot of another history).
        let usable = |b: &Built| {
            b.dims == usize::from(dims)
                && horizon.is_none_or(|h| h <= b.through.0)
                && b.seen_seq <= last
        };
        let current = entry
            .built
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .is_some_and(usable);
        if !current {
            let loaded = self.snapshots.as_ref().and_then(|s| {
                let built = s.load(&self.key, usize::from(dims), self.index.metric)?;
                if usable(&built) {
                    return Some(built);
                }
                tracing::info!(index = ?self.key, "a vector index snapshot is older than the \
                        journal reaches back: building the index again");
                s.remove(&self.key);
                None
            });
            let built = match loaded {
                Some(built) => built,
                None => self.build()?,
            };
            *entry.built.write().unwrap_or_else(|p| p.into_inner()) = Some(built);
        }
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        loop {
            let last = crate::EventFold::last_seq(store)?.unwrap_or(0);
            let through = match entry
                .built
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .as_ref()
            {
                Some(b) => b.through,
                None => return Err(index_error("the index was not built")),
            };
            let changes =
                journal::after_position(store, self.def.id, &self.scope, through, CATCH_UP_BATCH)?;
            let mut guard = entry.built.write().unwrap_or_else(|p| p.into_inner());
            let Some(built) = guard.as_mut() else {
                return Err(index_error("the index was not built"));
            };
            built.apply_changes(&changes, self.index.column, threads)?;
            if changes.len() < CATCH_UP_BATCH {
                built.seen_seq = last;
                return Ok(());
            }
        }
    }

    /// Saves the index to the node's disk if it was never saved, or enough changes were
    /// folded in since it was. Searches go on meanwhile; a failure is logged (the index
    /// in memory is whole, and a restart builds it again).
    fn save_if_due(&self) {
        let Some(snapshots) = &self.snapshots else {
            return;
        };
        let guard = self.entry.built.read().unwrap_or_else(|p| p.into_inner());
        let Some(built) = guard.as_ref() else { return };
        if built.unsaved < self.save_after {
            return;
        }
        let started = std::time::Instant::now();
        match snapshots.save(&self.key, built) {
            Ok(()) => {
                tracing::debug!(index = ?self.key, vectors = built.index.size(),
                    ms = started.elapsed().as_millis() as u64, "saved a vector index");
                drop(guard);
                if let Some(b) = self
                    .entry
                    .built
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .as_mut()
                {
                    b.unsaved = 0;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, index = ?self.key, "saving a vector index");
            }
        }
    }

    /// A new index of the scope's visible rows, as of at least the last `_seq` assigned
    /// when it starts (the journal brings it up to date from there).
    fn build(&self) -> Result<Built> {
        let (def, index, scope) = (&self.def, &self.index, self.scope.as_str());
        let mut target = format!(
            "{}.{}",
            def.qualified_name(),
            def.column_by_id(index.column)
                .map_or("?", |c| c.name.as_str())
        );
        if !scope.is_empty() {
            target.push_str(&format!(" ({scope})"));
        }
        let token = self.observer.as_ref().map(|o| o.started(&target));
        let started = std::time::Instant::now();
        std::thread::sleep(self.build_delay);
        let result = build_scope(
            self.store.as_ref(),
            self.cold.as_deref(),
            def,
            index,
            scope,
            self.dims,
        );
        if let (Some(o), Some(token)) = (&self.observer, token) {
            o.finished(
                &token,
                match &result {
                    Ok(b) => {
                        let bytes = b.memory_bytes();
                        Ok(format!(
                            "indexed {} vectors of {target} in {} ms; memory {:.1} MiB \
                             ({} bytes a vector)",
                            b.index.size(),
                            started.elapsed().as_millis(),
                            bytes as f64 / (1 << 20) as f64,
                            bytes / b.index.size().max(1),
                        ))
                    }
                    Err(e) => Err(e.to_string()),
                },
            );
        }
        result
    }
}

fn build_scope(
    store: &HotStore,
    cold: Option<&ColdStore>,
    def: &TableDef,
    index: &VectorIndexDef,
    scope: &str,
    dims: u16,
) -> Result<Built> {
    let from = crate::EventFold::last_seq(store)?.unwrap_or(0);
    let schema = convert::table_schema(def);
    let (pk, column) = match (def.pk_column(), def.column_by_id(index.column)) {
        (Some(pk), Some(column)) => (pk, column),
        _ => {
            return Err(index_error(
                "the table has no primary key or indexed column",
            ));
        }
    };
    let position = |name: &str| {
        schema
            .index_of(name)
            .map_err(|e| index_error(format!("column {name}: {e}")))
    };
    let projection = [position(&pk.name)?, position(&column.name)?];
    let rows = crate::row::visible_rows(store, def.id, scope)?.unwrap_or(0);
    let mut built = Built::new(usize::from(dims), index.metric, rows as usize)?;
    built.through = (from, 0);
    built.seen_seq = from;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let spec = ScanSpec::visible(def, &projection);
    let mut failed = None;
    scan_scope(
        store,
        None,
        cold,
        scope,
        &spec,
        &mut |batch| match built.add_batch(&batch, pk.data_type, threads) {
            Ok(()) => true,
            Err(e) => {
                failed = Some(e);
                false
            }
        },
    )
    .map_err(|e| index_error(e.to_string()))?;
    match failed {
        Some(e) => Err(e),
        None => Ok(built),
    }
}

#[cfg(test)]
#[path = "vector_index_test.rs"]
mod tests;
