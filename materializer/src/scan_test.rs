//! The streaming scan against a straightforward model: random writes, deletes, flushes
//! (trimmed or not yet: their versions then stay hot as well as cold) and compactions of a
//! USER table in two scopes, then every scan compared with the model's answer (each key's
//! newest version, hot over cold, tombstones only when asked for).

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{AsArray, RecordBatchOptions};
use arrow::compute::concat_batches;
use arrow::datatypes::Int64Type;
use proptest::prelude::*;

use super::*;
use crate::catalog::{StorageDef, TableDef, TableKind};
use crate::cold::Manifest;
use crate::convert::{rows_columns, table_schema};
use crate::row::{RowVersion, row_key};
use crate::value::Value;
use crate::{LogIndex, Term, codec};

const SCOPES: [&str; 2] = ["alice", "bob"];

#[derive(Debug, Clone)]
enum Step {
    Put { scope: usize, id: i64, v: u8 },
    Delete { scope: usize, id: i64 },
    Flush { trim: bool },
    Compact { drop_tombstones: bool },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0..2usize, 0..40i64, any::<u8>()).prop_map(|(scope, id, v)| Step::Put { scope, id, v }),
        2 => (0..2usize, 0..40i64).prop_map(|(scope, id)| Step::Delete { scope, id }),
        1 => any::<bool>().prop_map(|trim| Step::Flush { trim }),
        1 => any::<bool>().prop_map(|drop_tombstones| Step::Compact { drop_tombstones }),
    ]
}

fn version(seq: i64, id: i64, v: Option<u8>) -> RowVersion {
    RowVersion {
        seq,
        deleted: v.is_none(),
        cells: vec![
            (1, Value::BigInt(id)),
            (2, v.map_or(Value::Null, |v| Value::Text(format!("v{v}")))),
        ],
    }
}

/// The node's state and cold tier, with the model of what each scope holds.
struct World {
    _dir: tempfile::TempDir,
    store: HotStore,
    cold: ColdStore,
    def: TableDef,
    index: u64,
    seq: i64,
    /// Per scope, per id: the hot version, and the newest cold one.
    hot: [BTreeMap<i64, RowVersion>; 2],
    cold_rows: [BTreeMap<i64, RowVersion>; 2],
    /// Per scope, per id: a flushed version still in the hot tier, awaiting its trim.
    untrimmed: [BTreeMap<i64, RowVersion>; 2],
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().expect("tmp");
        World {
            store: HotStore::open(dir.path().join("state")).expect("state"),
            cold: ColdStore::new(dir.path().join("storage")),
            _dir: dir,
            def: TableDef::example("app", "t", TableKind::User),
            index: 0,
            seq: 0,
            hot: Default::default(),
            cold_rows: Default::default(),
            untrimmed: Default::default(),
        }
    }

    fn apply(&mut self, batch: HotBatch) {
        self.index += 1;
        self.store
            .apply(LogIndex(self.index), Term(1), batch)
            .expect("apply");
    }

    fn write(&mut self, scope: usize, id: i64, v: Option<u8>) {
        self.seq += 1;
        let row = version(self.seq, id, v);
        let mut batch = HotBatch::default();
        let key = row_key(self.def.id, SCOPES[scope], &Value::BigInt(id));
        batch.put(Family::Rows, key, codec::encode(&row));
        self.apply(batch);
        self.untrimmed[scope].remove(&id);
        self.hot[scope].insert(id, row);
    }

    fn manifest(&self, scope: &str) -> Manifest {
        catalog::manifest(&self.store, self.def.id, scope)
            .expect("state")
            .unwrap_or_else(|| Manifest::new(&self.def, scope))
    }

    fn flush(&mut self, trim: bool) {
        let storage = StorageDef::local();
        let versions: BTreeMap<String, Vec<RowVersion>> = (0..2)
            .filter(|&s| !self.hot[s].is_empty())
            .map(|s| {
                (
                    SCOPES[s].to_owned(),
                    self.hot[s].values().cloned().collect(),
                )
            })
            .collect();
        if versions.is_empty() {
            return;
        }
        let job = format!("FL-{}", self.index);
        let written = self
            .cold
            .write_flush(&storage, &self.def, &job, self.index, versions)
            .expect("write");
        let mut batch = HotBatch::default();
        for w in written {
            let m = self.manifest(&w.scope).flushed(w.segment);
            let s = SCOPES.iter().position(|s| *s == w.scope).expect("scope");
            for (id, row) in std::mem::take(&mut self.hot[s]) {
                self.cold_rows[s].insert(id, row.clone());
                self.untrimmed[s].insert(id, row);
            }
            // A trim moves every flushed version out, an earlier flush's too.
            if trim {
                for id in std::mem::take(&mut self.untrimmed[s]).into_keys() {
                    batch.delete(
                        Family::Rows,
                        row_key(self.def.id, &w.scope, &Value::BigInt(id)),
                    );
                }
            }
            batch.put(
                Family::Catalog,
                catalog::manifest_key(self.def.id, &w.scope),
                codec::encode(&m),
            );
        }
        self.apply(batch);
    }

    fn compact(&mut self, drop_tombstones: bool) {
        let storage = StorageDef::local();
        let horizon = if drop_tombstones { self.seq + 1 } else { 0 };
        let manifests = catalog::manifests(&self.store, self.def.id).expect("state");
        let job = format!("CO-{}", self.index);
        let written = self
            .cold
            .write_compaction(&storage, &self.def, &job, self.index, manifests, horizon)
            .expect("write");
        let mut batch = HotBatch::default();
        for w in written {
            let Some((m, _)) = self.manifest(&w.scope).compacted(&w.replaced, w.segment) else {
                continue;
            };
            let key = catalog::manifest_key(self.def.id, &w.scope);
            if m.segments.is_empty() {
                batch.delete(Family::Catalog, key);
            } else {
                batch.put(Family::Catalog, key, codec::encode(&m));
            }
            let s = SCOPES.iter().position(|s| *s == w.scope).expect("scope");
            self.cold_rows[s].retain(|_, v| !(v.deleted && v.seq < horizon));
        }
        self.apply(batch);
    }

    fn run(&mut self, step: &Step) {
        match *step {
            Step::Put { scope, id, v } => self.write(scope, id, Some(v)),
            Step::Delete { scope, id } => self.write(scope, id, None),
            Step::Flush { trim } => self.flush(trim),
            Step::Compact { drop_tombstones } => self.compact(drop_tombstones),
        }
    }

    /// What a scan of `scope` should give: each key's newest version, hot over cold (with
    /// `overlay` over both), tombstones only with `show_deleted`, ids below `below`.
    fn expected(
        &self,
        scope: usize,
        overlay: &BTreeMap<i64, RowVersion>,
        show_deleted: bool,
        below: i64,
    ) -> Vec<RowVersion> {
        let mut all = self.cold_rows[scope].clone();
        all.extend(self.untrimmed[scope].clone());
        all.extend(self.hot[scope].clone());
        all.extend(overlay.clone());
        all.into_values()
            .filter(|v| show_deleted || !v.deleted)
            .filter(|v| matches!(v.cell(1), Some(Value::BigInt(id)) if *id < below))
            .collect()
    }

    fn scan(
        &self,
        scope: usize,
        overlay: Option<&HotBatch>,
        spec: &ScanSpec<'_>,
    ) -> Vec<RecordBatch> {
        let mut out = Vec::new();
        scan_scope(
            &self.store,
            overlay,
            Some(&self.cold),
            SCOPES[scope],
            spec,
            &mut |b| {
                out.push(b);
                true
            },
        )
        .expect("scan");
        out
    }
}

impl World {
    /// A scan in `n` parts on as many threads ([`scan_scope_parts`]), the parts' batches
    /// one after the other.
    fn scan_parts(&self, scope: usize, spec: &ScanSpec<'_>, n: usize) -> Vec<RecordBatch> {
        let mut parts: Vec<Vec<RecordBatch>> = vec![Vec::new(); n];
        {
            let mut sinks: Vec<Box<dyn FnMut(RecordBatch) -> bool + Send + '_>> = parts
                .iter_mut()
                .map(|out| {
                    Box::new(move |b: RecordBatch| {
                        out.push(b);
                        true
                    }) as Box<dyn FnMut(RecordBatch) -> bool + Send + '_>
                })
                .collect();
            let mut refs: Vec<crate::scan::PartSink<'_>> = sinks
                .iter_mut()
                .map(|s| &mut **s as crate::scan::PartSink<'_>)
                .collect();
            crate::scan::scan_scope_parts(
                &self.store,
                None,
                Some(&self.cold),
                SCOPES[scope],
                spec,
                &mut refs,
            )
            .expect("scan");
        }
        parts.concat()
    }
}

fn one_batch(def: &TableDef, projection: &[usize], batches: &[RecordBatch]) -> RecordBatch {
    let schema = Arc::new(table_schema(def).project(projection).expect("projection"));
    if projection.is_empty() {
        let rows = batches.iter().map(RecordBatch::num_rows).sum();
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        return RecordBatch::try_new_with_options(schema, vec![], &options).expect("batch");
    }
    concat_batches(&schema, batches).expect("concat")
}

fn expected_batch(def: &TableDef, projection: &[usize], rows: &[RowVersion]) -> RecordBatch {
    let schema = Arc::new(table_schema(def).project(projection).expect("projection"));
    let options = RecordBatchOptions::new().with_row_count(Some(rows.len()));
    RecordBatch::try_new_with_options(schema, rows_columns(def, projection, rows), &options)
        .expect("batch")
}

/// Keeps the rows whose id (column 0) is below `below`: the filter a query applies above a
/// scan whose segments were pruned by it.
fn ids_below(batch: &RecordBatch, below: i64) -> RecordBatch {
    let keep: arrow::array::BooleanArray = batch
        .column(0)
        .as_primitive::<Int64Type>()
        .iter()
        .map(|id| Some(id.is_some_and(|id| id < below)))
        .collect();
    arrow::compute::filter_record_batch(batch, &keep).expect("filter")
}

/// Keeps the rows whose id (column 0) is at least `from`.
fn ids_from(batch: &RecordBatch, from: i64) -> RecordBatch {
    let keep: arrow::array::BooleanArray = batch
        .column(0)
        .as_primitive::<Int64Type>()
        .iter()
        .map(|id| Some(id.is_some_and(|id| id >= from)))
        .collect();
    arrow::compute::filter_record_batch(batch, &keep).expect("filter")
}

/// Keeps the rows whose `_seq` (column `at`) is at least `floor`.
fn seqs_from(batch: &RecordBatch, at: usize, floor: i64) -> RecordBatch {
    let keep: arrow::array::BooleanArray = batch
        .column(at)
        .as_primitive::<Int64Type>()
        .iter()
        .map(|seq| Some(seq.is_some_and(|seq| seq >= floor)))
        .collect();
    arrow::compute::filter_record_batch(batch, &keep).expect("filter")
}

/// A scan of `keys` of every version `projection` shows, no segment ruled out.
fn plain_spec<'a>(def: &'a TableDef, projection: &'a [usize], keys: &'a KeyRange) -> ScanSpec<'a> {
    ScanSpec {
        def,
        projection,
        show_deleted: false,
        min_seq: None,
        seq_floor: None,
        limit: None,
        may_match: &|_| true,
        keys,
    }
}

/// A full scan of `scope` with every column.
fn scan_all(store: &HotStore, def: &TableDef, scope: &str) -> RecordBatch {
    let all: Vec<usize> = (0..table_schema(def).fields().len()).collect();
    let whole = KeyRange::default();
    let spec = plain_spec(def, &all, &whole);
    let mut out = Vec::new();
    scan_scope(store, None, None, scope, &spec, &mut |b| {
        out.push(b);
        true
    })
    .expect("scan");
    one_batch(def, &all, &out)
}

/// Applies entry `index`: a write of row `id` of `scope`.
fn put(store: &HotStore, def: &TableDef, scope: &str, index: u64, id: i64) {
    let row = version(index as i64, id, Some(index as u8));
    let mut batch = HotBatch::default();
    let key = row_key(def.id, scope, &Value::BigInt(id));
    batch.put(Family::Rows, key, codec::encode(&row));
    store.apply(LogIndex(index), Term(1), batch).expect("apply");
}

#[test]
fn writes_after_a_full_scan_are_read_from_the_cache_with_their_changes() {
    let w = World::new();
    for index in 1..=3 {
        put(&w.store, &w.def, SCOPES[0], index, index as i64);
    }
    assert_eq!(scan_all(&w.store, &w.def, SCOPES[0]).num_rows(), 3);
    let cache = w.store.scan_cache();
    assert_eq!(cache.built(), 1);
    // Another owner's write, then changes of this owner's rows: the entry follows them all.
    put(&w.store, &w.def, SCOPES[1], 4, 1);
    put(&w.store, &w.def, SCOPES[0], 5, 2);
    put(&w.store, &w.def, SCOPES[0], 6, 7);
    let got = scan_all(&w.store, &w.def, SCOPES[0]);
    let ids = got.column(0).as_primitive::<Int64Type>().values().to_vec();
    let seqs = got.column(w.def.columns.len()).as_primitive::<Int64Type>();
    assert_eq!(ids, [1, 2, 3, 7]);
    assert_eq!(seqs.values().to_vec(), [1, 5, 3, 6]);
    assert_eq!(cache.built(), 1, "the entry was followed, not built again");
}

#[test]
fn an_entry_built_from_a_snapshot_before_a_write_is_not_followed() {
    let w = World::new();
    put(&w.store, &w.def, SCOPES[0], 1, 1);
    let older = w.store.snapshot();
    // Nothing is cached yet: nothing follows entry 2.
    put(&w.store, &w.def, SCOPES[0], 2, 2);
    // A scan that took its snapshot before entry 2 keeps the scope's rows only now.
    let all: Vec<usize> = (0..table_schema(&w.def).fields().len()).collect();
    let whole = KeyRange::default();
    let spec = plain_spec(&w.def, &all, &whole);
    let prefix = crate::row::scope_prefix(w.def.id, SCOPES[0]);
    let cached = w.store.scan_cache().rows(&older, SCOPES[0], &prefix, &spec);
    assert!(matches!(cached, Ok(Some(_))));
    drop(older);
    // That entry lacks entry 2: taking entry 3's change would hide row 2.
    put(&w.store, &w.def, SCOPES[0], 3, 3);
    let got = scan_all(&w.store, &w.def, SCOPES[0]);
    let ids = got.column(0).as_primitive::<Int64Type>().values().to_vec();
    assert_eq!(ids, [1, 2, 3]);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn a_streaming_scan_answers_as_the_model(
        steps in proptest::collection::vec(step(), 1..50),
        overlay_steps in proptest::collection::vec((0..40i64, proptest::option::of(any::<u8>())), 0..4),
        below in 0..45i64,
        limit in 1..30usize,
        (lo, hi) in (0..45i64, 0..45i64),
        floor in 0..60i64,
    ) {
        let mut w = World::new();
        let width = table_schema(&w.def).fields().len();
        let all: Vec<usize> = (0..width).collect();
        let def = w.def.clone();
        let whole = KeyRange::default();
        let full = |projection| plain_spec(&def, projection, &whole);
        for (i, s) in steps.iter().enumerate() {
            w.run(s);
            // Full scans between steps keep the scopes' hot rows in the scan cache, as of
            // the table's last write.
            // Each write after it adds to the entry's delta, which the scans between read
            // (a key range builds no entry, it only reads one).
            for scope in 0..SCOPES.len() {
                let rows = w.expected(scope, &BTreeMap::new(), false, i64::MAX);
                if i % 3 == 0 {
                    let got = one_batch(&w.def, &all, &w.scan(scope, None, &full(&all)));
                    prop_assert_eq!(&got, &expected_batch(&w.def, &all, &rows));
                    // The same rows, read in parts on threads.
                    let got = one_batch(&w.def, &all, &w.scan_parts(scope, &full(&all), 3));
                    prop_assert_eq!(&got, &expected_batch(&w.def, &all, &rows));
                } else {
                    let range = KeyRange {
                        from: Some(crate::cold::store::key_of(&Value::BigInt(lo))),
                        to: None,
                    };
                    let spec = ScanSpec { keys: &range, ..full(&all) };
                    let got = one_batch(&w.def, &all, &w.scan(scope, None, &spec));
                    let rows: Vec<RowVersion> = rows
                        .into_iter()
                        .filter(|v| matches!(v.cell(1), Some(Value::BigInt(id)) if *id >= lo))
                        .collect();
                    prop_assert_eq!(&got, &expected_batch(&w.def, &all, &rows));
                }
            }
        }
        let projections: [Vec<usize>; 4] = [all.clone(), vec![1], vec![], vec![2, 0]];
        // Every scan below reads RocksDB, then (the first full scan keeps the hot rows) the
        // scan cache.
        for (budget, (scope, name)) in [0, crate::scan_cache::DEFAULT_BUDGET]
            .into_iter()
            .flat_map(|b| SCOPES.iter().enumerate().map(move |s| (b, s)))
        {
            w.store.scan_cache().set_budget(budget);
            // A transaction's own writes over the committed state (scope 0 only).
            let mut overlay_rows = BTreeMap::new();
            let mut overlay = HotBatch::default();
            if scope == 0 {
                for (i, (id, v)) in overlay_steps.iter().enumerate() {
                    let row = version(w.seq + 1 + i as i64, *id, *v);
                    let key = row_key(w.def.id, name, &Value::BigInt(*id));
                    overlay.put(Family::Rows, key, codec::encode(&row));
                    overlay_rows.insert(*id, row);
                }
            }
            let overlay = (!overlay.is_empty()).then_some(&overlay);
            for show_deleted in [false, true] {
                for projection in &projections {
                    let spec = ScanSpec {
                        def: &w.def,
                        projection,
                        show_deleted,
                        min_seq: None,
                        seq_floor: None,
                        limit: None,
                        may_match: &|_| true,
                        keys: &KeyRange::default(),
                    };
                    let got = one_batch(&w.def, projection, &w.scan(scope, overlay, &spec));
                    let rows = w.expected(scope, &overlay_rows, show_deleted, i64::MAX);
                    prop_assert_eq!(&got, &expected_batch(&w.def, projection, &rows));
                    if overlay.is_none() {
                        let got = one_batch(&w.def, projection, &w.scan_parts(scope, &spec, 2));
                        prop_assert_eq!(&got, &expected_batch(&w.def, projection, &rows));
                    }
                    // The first `limit` rows, in key order.
                    let spec = ScanSpec { limit: Some(limit), ..spec };
                    let got = one_batch(&w.def, projection, &w.scan(scope, overlay, &spec));
                    let first = &rows[..rows.len().min(limit)];
                    prop_assert_eq!(&got, &expected_batch(&w.def, projection, first));
                }
                // Segments whose ids all reach `below` are not read; their keys still hide
                // older versions.
                let pruned = |m: &crate::cold::SegmentMeta| {
                    m.stats[0].min.as_deref().and_then(|t| t.parse::<i64>().ok()).is_none_or(|min| min < below)
                };
                let spec = ScanSpec {
                    def: &w.def,
                    projection: &all,
                    show_deleted,
                    min_seq: None,
                    seq_floor: None,
                    limit: None,
                    may_match: &pruned,
                    keys: &KeyRange::default(),
                };
                let got = ids_below(&one_batch(&w.def, &all, &w.scan(scope, overlay, &spec)), below);
                let rows = w.expected(scope, &overlay_rows, show_deleted, below);
                prop_assert_eq!(&got, &expected_batch(&w.def, &all, &rows));
                // A `_seq` floor: every row at or above it (what is below may come too:
                // the query's filter drops it).
                let spec = ScanSpec {
                    may_match: &|_| true,
                    seq_floor: Some(floor),
                    ..spec
                };
                let got = one_batch(&w.def, &all, &w.scan(scope, overlay, &spec));
                let got = seqs_from(&got, w.def.columns.len(), floor);
                let rows: Vec<RowVersion> = w
                    .expected(scope, &overlay_rows, show_deleted, i64::MAX)
                    .into_iter()
                    .filter(|v| v.seq >= floor)
                    .collect();
                prop_assert_eq!(&got, &expected_batch(&w.def, &all, &rows));
                let spec = ScanSpec { seq_floor: None, ..spec };
                // A primary-key range: no row outside it, every row inside it. (The
                // transaction's own writes are not narrowed: the query's filter drops them.)
                let range = KeyRange {
                    from: Some(crate::cold::store::key_of(&Value::BigInt(lo))),
                    to: Some(crate::cold::store::key_of(&Value::BigInt(hi))),
                };
                let spec = ScanSpec {
                    may_match: &|_| true,
                    keys: &range,
                    ..spec
                };
                let got = one_batch(&w.def, &all, &w.scan(scope, overlay, &spec));
                let got = ids_from(&ids_below(&got, hi), lo);
                let rows: Vec<RowVersion> = w
                    .expected(scope, &overlay_rows, show_deleted, hi)
                    .into_iter()
                    .filter(|v| matches!(v.cell(1), Some(Value::BigInt(id)) if *id >= lo))
                    .collect();
                prop_assert_eq!(&got, &expected_batch(&w.def, &all, &rows));
                if overlay.is_none() {
                    let raw = one_batch(&w.def, &all, &w.scan(scope, None, &spec));
                    prop_assert_eq!(raw.num_rows(), rows.len(), "nothing outside the range");
                }
            }
        }
    }
}
