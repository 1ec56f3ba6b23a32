//! A crash at every step of a flush and of a compaction, injected through the storage seam
//! (the [`Backend`] trait): the backend "loses power" before its n-th change, leaving what
//! a crash there leaves (for a write cut before its rename, the synced temporary file), and
//! the fold of the entry dies with it, uncommitted. A restart reopens the hot tier and the
//! cold tier from what is on disk and folds the entry again; the answers then equal a
//! fault-free run's, every file a manifest names exists, and the next entries fold as they
//! would have.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::Int64Type;

use super::ColdStore;
use super::backend::{Backend, BackendResult, Listing, LocalBackend, Source};
use crate::catalog::{self, StorageDef, TableDef, TableKind};
use crate::event::{Command, Op, RowChange, encode_entry};
use crate::hot::{Family, HotBatch, HotStore};
use crate::row::{RowVersion, scope_prefix};
use crate::value::Value;
use crate::{EventFold, Fold, LogIndex, Term, codec};

/// Local files where the power goes at the `points`-th point: the points are just before
/// and just after each write or removal. The crash panics (the process is gone); cut
/// before a write, it first leaves the write's synced temporary file as [`LocalBackend`]
/// names it (a crash between its sync and its rename).
#[derive(Debug)]
struct Crashing {
    inner: LocalBackend,
    root: PathBuf,
    points: AtomicUsize,
}

impl Crashing {
    /// Past one more point, or the crash.
    fn point(&self, torn: Option<(&str, &[u8])>) {
        if self.points.fetch_sub(1, Ordering::SeqCst) > 0 {
            return;
        }
        if let Some((path, bytes)) = torn {
            let tmp = self.root.join(format!("{path}.tmp"));
            if let Some(dir) = tmp.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            let _ = std::fs::write(tmp, bytes);
        }
        panic!("injected crash");
    }
}

impl Backend for Crashing {
    fn locate(&self, path: &str) -> String {
        self.inner.locate(path)
    }
    fn open(&self, path: &str) -> BackendResult<Option<Source>> {
        self.inner.open(path)
    }
    fn write(&self, path: &str, bytes: Vec<u8>) -> BackendResult<()> {
        self.point(Some((path, &bytes)));
        self.inner.write(path, bytes)?;
        self.point(None);
        Ok(())
    }
    fn list(&self, dir: &str) -> BackendResult<Listing> {
        self.inner.list(dir)
    }
    fn remove(&self, path: &str) -> BackendResult<()> {
        self.point(None);
        self.inner.remove(path)?;
        self.point(None);
        Ok(())
    }
    fn remove_all(&self, dir: &str) -> BackendResult<()> {
        self.point(None);
        self.inner.remove_all(dir)?;
        self.point(None);
        Ok(())
    }
}

fn command(ops: Vec<Op>, stamp_ms: u64) -> Vec<u8> {
    encode_entry(&[Command {
        stamp_ms,
        actor: "t".into(),
        ops,
    }])
}

fn insert(ids: std::ops::Range<i64>, v: &str) -> Op {
    Op::Insert {
        table: crate::TableId(1),
        schema_version: 1,
        scope: String::new(),
        rows: ids
            .map(|i| vec![(1, Value::BigInt(i)), (2, Value::Text(format!("{v}{i}")))])
            .collect(),
    }
}

/// The log of a scenario: the entries before the one that crashes, that entry, and the ones
/// after it.
struct Scenario {
    before: Vec<Vec<u8>>,
    target: Vec<u8>,
    after: Vec<Vec<u8>>,
}

fn scenario(compact: bool) -> Scenario {
    let table = crate::TableId(1);
    let flush = |job: &str| Op::Flush {
        table,
        job: job.into(),
    };
    let mut before = vec![command(
        vec![
            Op::CreateNamespace {
                name: "app".into(),
                description: None,
                if_not_exists: false,
            },
            Op::CreateTable {
                table: TableDef::example("app", "t", TableKind::Shared),
                if_not_exists: false,
            },
        ],
        1_000,
    )];
    before.push(command(vec![insert(0..40, "a")], 2_000));
    let target = if compact {
        before.push(command(vec![flush("FL-1")], 3_000));
        before.push(command(vec![insert(40..60, "b")], 4_000));
        before.push(command(vec![flush("FL-2")], 5_000));
        command(
            vec![Op::Compact {
                table,
                job: "CO-1".into(),
            }],
            6_000,
        )
    } else {
        command(vec![flush("FL-1")], 3_000)
    };
    let after = vec![
        command(
            vec![Op::Update {
                table,
                schema_version: 1,
                scope: String::new(),
                rows: vec![RowChange {
                    pk: Value::BigInt(7),
                    // Set from the state when folded (see `fold_all`).
                    expected_seq: 0,
                    cells: vec![(1, Value::BigInt(7)), (2, Value::Text("after".into()))],
                }],
            }],
            7_000,
        ),
        command(vec![insert(60..65, "c"), flush("FL-9")], 8_000),
    ];
    Scenario {
        before,
        target,
        after,
    }
}

struct Node {
    store: HotStore,
    cold: Arc<ColdStore>,
    fold: EventFold,
}

fn open(dir: &Path, crash_after: Option<usize>) -> Node {
    let store = HotStore::open_data_dir(dir).expect("hot tier");
    let root = dir.join("storage");
    let cold = ColdStore::new(&root);
    if let Some(n) = crash_after {
        cold.install_backend(
            &StorageDef::local(),
            Arc::new(Crashing {
                inner: LocalBackend::new(&root),
                root,
                points: AtomicUsize::new(n),
            }),
        );
    }
    let cold = Arc::new(cold);
    let fold = EventFold::new(cold.clone());
    Node { store, cold, fold }
}

/// The table's definition, once created.
fn def(node: &Node) -> TableDef {
    catalog::table(&node.store, "app", "t")
        .expect("catalog")
        .expect("table")
}

/// Folds `entry` as the next index, the way the state machine applies it. An UPDATE of
/// row 7 expects the `_seq` it has now.
fn fold_one(node: &Node, entry: &[u8]) {
    let index = node
        .store
        .applied()
        .expect("applied")
        .map_or(1, |(i, _)| i.0 + 1);
    let mut entry = entry.to_vec();
    let mut commands = crate::event::decode_entry(&entry).expect("decodes");
    if let Some(Op::Update { rows, .. }) = commands[0].ops.first_mut() {
        rows[0].expected_seq = seq_of(node, 7);
        entry = encode_entry(&commands);
    }
    let mut batch = HotBatch::default();
    let out = node
        .fold
        .fold(&node.store, LogIndex(index), &entry, &mut batch)
        .expect("folds");
    for o in crate::event::decode_outcomes(&out).expect("outcomes") {
        assert!(
            matches!(o, crate::Outcome::Applied(_)),
            "entry {index}: {o:?}"
        );
    }
    node.store
        .apply(LogIndex(index), Term(1), batch)
        .expect("applied");
}

/// Every visible row of the table: (id, v, `_seq`), hot and cold merged.
fn view(node: &Node) -> Vec<(i64, String, i64)> {
    let def = def(node);
    let prefix = scope_prefix(def.id, "");
    let mut out = Vec::new();
    let mut hot_keys = Vec::new();
    for (key, bytes) in node
        .store
        .scan_prefix(Family::Rows, &prefix)
        .expect("hot rows")
    {
        hot_keys.push(key[prefix.len()..].to_vec());
        let row: RowVersion = codec::decode(&bytes, "a row version").expect("row");
        if !row.deleted {
            out.push((cell_i64(&row, 1), cell_text(&row, 2), row.seq));
        }
    }
    let all: Vec<usize> = (0..4).collect();
    let batches: Vec<RecordBatch> = node
        .cold
        .visible(
            &StorageDef::local(),
            &def,
            "",
            &hot_keys,
            false,
            &all,
            &|_| true,
        )
        .expect("cold rows");
    for b in batches {
        let (ids, vs, seqs) = (
            b.column(0).as_primitive::<Int64Type>(),
            b.column(1).as_string::<i32>(),
            b.column(2).as_primitive::<Int64Type>(),
        );
        for r in 0..b.num_rows() {
            out.push((ids.value(r), vs.value(r).to_owned(), seqs.value(r)));
        }
    }
    out.sort();
    out
}

fn cell_i64(row: &RowVersion, id: u32) -> i64 {
    match row.cell(id) {
        Some(Value::BigInt(v)) => *v,
        other => panic!("{other:?}"),
    }
}

fn cell_text(row: &RowVersion, id: u32) -> String {
    match row.cell(id) {
        Some(Value::Text(v)) => v.clone(),
        other => panic!("{other:?}"),
    }
}

fn seq_of(node: &Node, id: i64) -> i64 {
    view(node)
        .into_iter()
        .find(|r| r.0 == id)
        .map(|r| r.2)
        .expect("row 7 is visible")
}

/// Every file the manifests name exists and reads back.
fn referenced_files_exist(node: &Node) {
    let problems = node.cold.check(&StorageDef::local(), &def(node), true);
    assert!(problems.is_empty(), "{problems:?}");
}

fn crash_at_every_step(compact: bool) {
    let s = scenario(compact);
    // The fault-free run: the answers after the target entry, and after the rest.
    let reference = tempfile::tempdir().expect("tmp");
    let (want_target, want_after) = {
        let node = open(reference.path(), None);
        for e in s.before.iter().chain([&s.target]) {
            fold_one(&node, e);
        }
        let at_target = view(&node);
        for e in &s.after {
            fold_one(&node, e);
        }
        (at_target, view(&node))
    };
    let mut crashed = 0;
    for step in 0.. {
        let tmp = tempfile::tempdir().expect("tmp");
        {
            let node = open(tmp.path(), None);
            for e in &s.before {
                fold_one(&node, e);
            }
        }
        let node = open(tmp.path(), Some(step));
        let died = catch_unwind(AssertUnwindSafe(|| fold_one(&node, &s.target))).is_err();
        drop(node);
        if !died {
            // Past the entry's last change: every step was crashed at.
            break;
        }
        crashed += 1;
        let node = open(tmp.path(), None);
        fold_one(&node, &s.target);
        assert_eq!(view(&node), want_target, "compact={compact} step {step}");
        referenced_files_exist(&node);
        for e in &s.after {
            fold_one(&node, e);
        }
        assert_eq!(
            view(&node),
            want_after,
            "compact={compact} step {step}, after"
        );
        referenced_files_exist(&node);
    }
    // Before and after a flush's segment and manifest; a compaction's also around each
    // removal of the two segments it replaced.
    let points = if compact { 8 } else { 4 };
    assert_eq!(
        crashed, points,
        "compact={compact}: only {crashed} crash points"
    );
}

#[test]
fn a_crash_at_any_step_of_a_flush_loses_and_duplicates_nothing() {
    crash_at_every_step(false);
}

#[test]
fn a_crash_at_any_step_of_a_compaction_loses_and_duplicates_nothing() {
    crash_at_every_step(true);
}
