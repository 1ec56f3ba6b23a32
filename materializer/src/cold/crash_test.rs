//! A crash at every step of a flush job and of a compaction job, injected through the
//! storage seam (the [`Backend`] trait): the backend "loses power" before its n-th change,
//! leaving what a crash there leaves (for a write cut before its rename, the synced
//! temporary file), and the job dies with it. The steps are the job's segment writes, its
//! commit entry (proposed once the segments are durable: after a crash past that point the
//! log holds it and a restart applies it), and the settling of its files (the published
//! manifest, the removal of replaced segments). A restart reopens the hot tier and the cold
//! tier from what is on disk, applies what the log holds, sweeps, and runs a job that never
//! committed again, as the scheduler would; the answers then equal a fault-free run's, every
//! file a manifest names exists, no segment file is left that none names, and the next
//! entries fold as they would have.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::Int64Type;

use super::backend::{Backend, BackendResult, Listing, LocalBackend, Source};
use super::{ColdStore, JobKind, job};
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

/// One step of a scenario: an entry, or a job (whose commit is an entry).
#[derive(Clone)]
enum Step {
    Entry(Vec<u8>),
    Job(JobKind, &'static str),
}

/// The steps of a scenario: the ones before the job that crashes, that job, and the ones
/// after it.
struct Scenario {
    before: Vec<Step>,
    target: Step,
    after: Vec<Step>,
}

fn scenario(compact: bool) -> Scenario {
    let mut before = vec![Step::Entry(command(
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
    ))];
    before.push(Step::Entry(command(vec![insert(0..40, "a")], 2_000)));
    let target = if compact {
        before.push(Step::Job(JobKind::Flush, "FL-1"));
        before.push(Step::Entry(command(vec![insert(40..60, "b")], 4_000)));
        before.push(Step::Job(JobKind::Flush, "FL-2"));
        Step::Job(JobKind::Compact, "CO-1")
    } else {
        Step::Job(JobKind::Flush, "FL-1")
    };
    let after = vec![
        Step::Entry(command(
            vec![Op::Update {
                table: crate::TableId(1),
                schema_version: 1,
                scope: String::new(),
                rows: vec![RowChange {
                    pk: Value::BigInt(7),
                    // Both set from the state when folded (see `fold_one`).
                    expected_seq: 0,
                    old: Vec::new(),
                    cells: vec![(1, Value::BigInt(7)), (2, Value::Text("after".into()))],
                }],
            }],
            7_000,
        )),
        Step::Entry(command(vec![insert(60..65, "c")], 8_000)),
        Step::Job(JobKind::Flush, "FL-9"),
    ];
    Scenario {
        before,
        target,
        after,
    }
}

/// A job's writing (outside apply): its commit op.
fn prepare(node: &Node, kind: JobKind, id: &str) -> Op {
    let table = crate::TableId(1);
    match kind {
        JobKind::Flush => job::prepare_flush(&node.store, &node.cold, table, id),
        _ => job::prepare_compact(&node.store, &node.cold, table, id, 6_000),
    }
    .expect("the job writes")
}

/// The rest of a job once its commit op is in the log: applied, its files settled, then
/// (a flush) the hot versions its segments hold trimmed, in ranges of two keys.
fn commit_and_settle(node: &Node, op: &Op) {
    fold_one(node, &command(vec![op.clone()], 5_000));
    job::settle(&node.store, &node.cold, crate::TableId(1), op).expect("settled");
    if matches!(op, Op::CommitFlush { .. }) {
        for trim in job::trims(&node.store, crate::TableId(1), 2).expect("planned") {
            fold_one(node, &command(vec![trim], 5_000));
        }
    }
}

fn run(node: &Node, step: &Step) {
    match step {
        Step::Entry(e) => fold_one(node, e),
        Step::Job(kind, id) => commit_and_settle(node, &prepare(node, *kind, id)),
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
/// row 7 expects the `_seq` it has now, and carries the row as it reads now.
fn fold_one(node: &Node, entry: &[u8]) {
    let index = node
        .store
        .applied()
        .expect("applied")
        .map_or(1, |(i, _)| i.0 + 1);
    let mut entry = entry.to_vec();
    let mut commands = crate::event::decode_entry(&entry).expect("decodes");
    if let Some(Op::Update { rows, .. }) = commands[0].ops.first_mut() {
        let (id, text, seq) = row_7(node);
        rows[0].expected_seq = seq;
        rows[0].old = vec![(1, Value::BigInt(id)), (2, Value::Text(text))];
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
            &node.store,
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

fn row_7(node: &Node) -> (i64, String, i64) {
    view(node)
        .into_iter()
        .find(|r| r.0 == 7)
        .expect("row 7 is visible")
}

/// Every file the manifests name exists and reads back, and every segment file is named.
fn files_match_manifests(node: &Node) {
    let def = def(node);
    let local = StorageDef::local();
    let problems = node.cold.check(&node.store, &local, &def, true);
    assert!(problems.is_empty(), "{problems:?}");
    let listed: Vec<String> = catalog::manifests(&node.store, def.id)
        .expect("manifests")
        .into_iter()
        .flat_map(|m| m.segments.into_iter().map(|s| s.file))
        .collect();
    let dir = node.cold.root().join("app/t");
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .map(|d| {
            d.map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("batch-"))
                .collect()
        })
        .unwrap_or_default();
    on_disk.sort();
    let mut listed = listed;
    listed.sort();
    assert_eq!(on_disk, listed, "segment files vs manifests");
}

/// How far a crashed job got.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Reached {
    /// Died while writing its segments: nothing was proposed.
    Writing,
    /// Its segments are durable and its commit is in the log, not yet applied.
    Proposed,
    /// Applied; died while settling its files.
    Settling,
}

fn crash_at_every_step(compact: bool) {
    let s = scenario(compact);
    // The fault-free run: the answers before and after the target job, and after the rest.
    let reference = tempfile::tempdir().expect("tmp");
    let (want_before, want_target, want_after) = {
        let node = open(reference.path(), None);
        for step in &s.before {
            run(&node, step);
        }
        let before = view(&node);
        run(&node, &s.target);
        let at_target = view(&node);
        files_match_manifests(&node);
        for step in &s.after {
            run(&node, step);
        }
        (before, at_target, view(&node))
    };
    let Step::Job(kind, id) = s.target else {
        panic!("the target is a job")
    };
    let mut seen = Vec::new();
    // Step `points` crashes at the backend's points-th change; `None` between the segments
    // and the commit (the process dies with the commit in the log, unapplied).
    let mut crashes: Vec<Option<usize>> = vec![None];
    crashes.extend((0..).map(Some).take(64));
    for crash in crashes {
        let tmp = tempfile::tempdir().expect("tmp");
        {
            let node = open(tmp.path(), None);
            for step in &s.before {
                run(&node, step);
            }
        }
        let node = open(tmp.path(), crash);
        let mut reached = Reached::Writing;
        let died = catch_unwind(AssertUnwindSafe(|| {
            let op = prepare(&node, kind, id);
            reached = Reached::Proposed;
            if crash.is_none() {
                return Some(op);
            }
            fold_one(&node, &command(vec![op.clone()], 5_000));
            reached = Reached::Settling;
            job::settle(&node.store, &node.cold, crate::TableId(1), &op).expect("settled");
            None
        }));
        drop(node);
        let in_log = match died {
            Ok(None) => break, // past the job's last change: every point was crashed at
            Ok(Some(op)) => Some(op),
            Err(_) => None,
        };
        seen.push(reached);
        // The restart: the log's entries apply, then the sweep.
        let node = open(tmp.path(), None);
        if let Some(op) = &in_log {
            fold_one(&node, &command(vec![op.clone()], 5_000));
        }
        let problems = job::sweep(&node.store, &node.cold);
        assert!(problems.is_empty(), "{problems:?}");
        files_match_manifests(&node);
        if reached == Reached::Writing {
            // Nothing committed: the rows are where they were; the job runs again.
            assert_eq!(
                view(&node),
                want_before,
                "compact={compact} crash {crash:?}"
            );
            run(&node, &s.target);
        }
        assert_eq!(
            view(&node),
            want_target,
            "compact={compact} crash {crash:?}"
        );
        files_match_manifests(&node);
        for step in &s.after {
            run(&node, step);
        }
        assert_eq!(
            view(&node),
            want_after,
            "compact={compact} crash {crash:?}, after"
        );
        files_match_manifests(&node);
    }
    // Around the segment's write and between it and the commit; then around the published
    // manifest's write; a compaction's also around each removal of the two segments it
    // replaced.
    let want: Vec<Reached> = [Reached::Proposed]
        .into_iter()
        .chain([Reached::Writing; 2])
        .chain([Reached::Settling; 2])
        .chain(if compact {
            vec![Reached::Settling; 4]
        } else {
            vec![]
        })
        .collect();
    assert_eq!(seen, want, "compact={compact}");
}

#[test]
fn a_crash_at_any_step_of_a_flush_loses_and_duplicates_nothing() {
    crash_at_every_step(false);
}

#[test]
fn a_crash_at_any_step_of_a_compaction_loses_and_duplicates_nothing() {
    crash_at_every_step(true);
}

/// A second replica's cold tier, for a storage that is a directory of each node: it holds a
/// commit's files by copying them from the first replica's storage directory (what a cluster
/// member fetches from another), records what it was asked, and fails while `fail` is set.
#[derive(Debug)]
struct CopyingTier {
    inner: Arc<ColdStore>,
    from: PathBuf,
    to: PathBuf,
    asked: std::sync::Mutex<Vec<(u64, Vec<super::LocalFile>)>>,
    fail: std::sync::atomic::AtomicBool,
}

impl super::ColdTier for CopyingTier {
    fn get(
        &self,
        state: &dyn catalog::StateRead,
        storage: &StorageDef,
        def: &TableDef,
        scope: &str,
        pk: &Value,
    ) -> super::ColdResult<Option<RowVersion>> {
        self.inner.get(state, storage, def, scope, pk)
    }

    fn hold(
        &self,
        index: u64,
        _: &StorageDef,
        files: &[super::LocalFile],
    ) -> super::ColdResult<()> {
        if self.fail.load(Ordering::SeqCst) {
            return Err("no member could send it".into());
        }
        for f in files {
            let to = self.to.join(&f.path);
            std::fs::create_dir_all(to.parent().expect("a parent")).expect("dir");
            std::fs::copy(self.from.join(&f.path), to).expect("copied");
        }
        self.asked
            .lock()
            .expect("lock")
            .push((index, files.to_vec()));
        Ok(())
    }
}

/// A job's commit (and a flush's trims) as a replica that did not run the job applies them:
/// no settling, which only the job's node does.
fn commit_on_replica(node: &Node, op: &Op) {
    fold_one(node, &command(vec![op.clone()], 5_000));
    if matches!(op, Op::CommitFlush { .. }) {
        for trim in job::trims(&node.store, crate::TableId(1), 2).expect("planned") {
            fold_one(node, &command(vec![trim], 5_000));
        }
    }
}

#[test]
fn a_replica_holds_each_commits_files_before_recording_it() {
    let (a_dir, b_dir) = (
        tempfile::tempdir().expect("tmp"),
        tempfile::tempdir().expect("tmp"),
    );
    let a = open(a_dir.path(), None);
    let tier = Arc::new(CopyingTier {
        inner: Arc::new(ColdStore::new(b_dir.path().join("storage"))),
        from: a_dir.path().join("storage"),
        to: b_dir.path().join("storage"),
        asked: Default::default(),
        fail: Default::default(),
    });
    let b = Node {
        store: HotStore::open_data_dir(b_dir.path()).expect("hot tier"),
        cold: tier.inner.clone(),
        fold: EventFold::new(tier.clone()),
    };
    let s = scenario(true);
    let both = |step: &Step| match step {
        Step::Entry(e) => {
            fold_one(&a, e);
            fold_one(&b, e);
        }
        Step::Job(kind, id) => {
            // The job runs on replica a; its commit applies on both.
            let op = prepare(&a, *kind, id);
            commit_and_settle(&a, &op);
            let before = tier.asked.lock().expect("lock").len();
            let at = b
                .store
                .applied_index()
                .expect("applied")
                .map_or(1, |i| i.0 + 1);
            commit_on_replica(&b, &op);
            let asked = tier.asked.lock().expect("lock");
            assert_eq!(asked.len(), before + 1, "{id}: held once");
            let (index, files) = &asked[before];
            assert_eq!(*index, at, "{id}: held as its commit applies");
            let want = job::files_of(&StorageDef::local(), &def(&a), &op);
            assert_eq!(files, &want, "{id}");
        }
    };
    for step in s.before.iter().chain([&s.target]) {
        both(step);
    }
    // Both replicas answer the same, and b's manifests list only files it holds, byte for
    // byte a's.
    assert_eq!(view(&b), view(&a));
    let listed = job::listed_node_local_files(&b.store).expect("listed");
    assert_eq!(listed.len(), 1);
    let (storage, files) = &listed[0];
    assert_eq!(storage.id, StorageDef::local().id);
    assert_eq!(files.len(), 1, "the compaction's segment: {files:?}");
    assert!(files[0].path.contains("batch-CO-1"), "{files:?}");
    for f in files {
        let (x, y) = (
            std::fs::read(a_dir.path().join("storage").join(&f.path)).expect("a holds it"),
            std::fs::read(b_dir.path().join("storage").join(&f.path)).expect("b holds it"),
        );
        assert_eq!(x, y);
        assert_eq!(y.len() as u64, f.bytes);
    }
    // The segments the compaction replaced are unlisted on b: its sweep's to remove.
    let mut unlisted: Vec<String> = job::unlisted_files(&b.store, &b.cold, true)
        .expect("unlisted")
        .into_iter()
        .map(|(_, path)| path)
        .collect();
    unlisted.sort();
    assert_eq!(
        unlisted,
        ["app/t/batch-FL-1.parquet", "app/t/batch-FL-2.parquet"]
    );

    // A commit whose files cannot be held is not recorded: an error, the state unchanged.
    both(&Step::Entry(command(vec![insert(100..110, "d")], 9_000)));
    let op = prepare(&a, JobKind::Flush, "FL-3");
    tier.fail.store(true, Ordering::SeqCst);
    let applied = b.store.applied_index().expect("applied");
    let mut batch = HotBatch::default();
    let index = LogIndex(applied.expect("some").0 + 1);
    let err = b
        .fold
        .fold(
            &b.store,
            index,
            &command(vec![op.clone()], 9_500),
            &mut batch,
        )
        .expect_err("not held: the entry stays unapplied");
    assert!(matches!(err, crate::Error::ColdHold { .. }), "{err:?}");
    assert_eq!(b.store.applied_index().expect("applied"), applied);
    // Once it can, the same entry applies.
    tier.fail.store(false, Ordering::SeqCst);
    commit_on_replica(&b, &op);
    commit_and_settle(&a, &op);
    assert_eq!(view(&b), view(&a));
}
