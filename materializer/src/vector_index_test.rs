//! Tests of `vector_index`, kept beside it (STYLE.md: a sibling `*_test.rs`).
use super::*;
use crate::catalog::{ColumnDef, TableKind};
use crate::event::{Command, Op, RowChange, RowDelete, decode_outcomes, encode_entry};
use crate::test_support::cmd;
use crate::{EventFold, Fold, HotBatch, LogIndex, Outcome, Term};
use proptest::prelude::*;
use std::sync::atomic::{AtomicUsize, Ordering};

const STAMP: u64 = 1_800_000_000_000;

struct Node {
    _dir: tempfile::TempDir,
    store: Arc<HotStore>,
    next: u64,
}

impl Node {
    fn new() -> Node {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Arc::new(HotStore::open(dir.path()).expect("open"));
        Node {
            _dir: dir,
            store,
            next: 1,
        }
    }

    /// Folds and applies `ops` as one command of the next entry; its outcome.
    fn run(&mut self, ops: Vec<Op>) -> Outcome {
        let commands: Vec<Command> = vec![cmd(STAMP + self.next, ops)];
        let mut batch = HotBatch::default();
        let out = EventFold::default()
            .fold(
                &self.store,
                LogIndex(self.next),
                &encode_entry(&commands),
                &mut batch,
            )
            .expect("fold");
        self.store
            .apply(LogIndex(self.next), Term(1), batch)
            .expect("apply");
        self.next += 1;
        decode_outcomes(&out).expect("outcomes").remove(0)
    }

    fn def(&self) -> TableDef {
        catalog::table(self.store.as_ref(), "app", "docs")
            .expect("read")
            .expect("table")
    }

    fn index(&self) -> VectorIndexDef {
        catalog::vector_index(self.store.as_ref(), self.def().id, 2)
            .expect("read")
            .expect("an index")
    }
}

fn applied(o: &Outcome) -> bool {
    matches!(o, Outcome::Applied(_))
}

/// `app.docs` (id BIGINT key, e EMBEDDING(dims), t TEXT) of `kind`, with a cosine index on
/// `e`.
fn docs(node: &mut Node, kind: TableKind, dims: u16) {
    let mut table = TableDef::example("app", "docs", kind);
    table.columns = vec![
        ColumnDef {
            id: 1,
            name: "id".into(),
            data_type: DataType::BigInt,
            nullable: false,
            default: None,
            unique: true,
        },
        ColumnDef {
            id: 2,
            name: "e".into(),
            data_type: DataType::Embedding(dims),
            nullable: true,
            default: None,
            unique: false,
        },
        ColumnDef {
            id: 3,
            name: "t".into(),
            data_type: DataType::Text,
            nullable: true,
            default: None,
            unique: false,
        },
    ];
    table.next_column_id = 4;
    for op in [
        Op::CreateNamespace {
            name: "app".into(),
            description: None,
            if_not_exists: true,
        },
        Op::CreateTable {
            table,
            if_not_exists: false,
        },
        create_index("e"),
    ] {
        assert!(applied(&node.run(vec![op])));
    }
}

fn create_index(column: &str) -> Op {
    Op::CreateVectorIndex {
        namespace: "app".into(),
        table: "docs".into(),
        column: column.into(),
        metric: VectorMetric::Cosine,
    }
}

fn insert(node: &mut Node, scope: &str, rows: &[(i64, Vec<f32>)]) {
    let def = node.def();
    let outcome = node.run(vec![Op::Insert {
        table: def.id,
        schema_version: def.schema_version,
        scope: scope.into(),
        rows: rows
            .iter()
            .map(|(id, e)| {
                vec![
                    (1, Value::BigInt(*id)),
                    (2, Value::Embedding(e.clone())),
                    (3, Value::Null),
                ]
            })
            .collect(),
    }]);
    assert!(applied(&outcome), "{outcome:?}");
}

/// A deterministic vector of `dims` components in [-1, 1).
fn vector(seed: u64, dims: usize) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..dims)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % 2000) as f32 / 1000.0 - 1.0
        })
        .collect()
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    1.0 - dot / (norm(a) * norm(b))
}

fn ids(hits: &Hits) -> Vec<i64> {
    hits.hits
        .iter()
        .map(|(pk, _)| match pk {
            Value::BigInt(i) => *i,
            other => panic!("a BIGINT key: {other:?}"),
        })
        .collect()
}

fn search(indexes: &VectorIndexes, node: &Node, scope: &str, q: &[f32], k: usize) -> Hits {
    indexes
        .search(
            &node.store,
            None,
            Target {
                def: &node.def(),
                index: &node.index(),
                scope,
            },
            q,
            k,
        )
        .expect("search")
        .expect("the index is up to date within the wait")
}

#[derive(Default)]
struct Counting {
    builds: AtomicUsize,
}

impl BuildObserver for Counting {
    fn started(&self, target: &str) -> String {
        self.builds.fetch_add(1, Ordering::SeqCst);
        target.to_owned()
    }
    fn finished(&self, _token: &str, result: std::result::Result<String, String>) {
        assert!(result.is_ok(), "{result:?}");
    }
}

/// A search that cannot wait for its index is answered without it (the caller searches
/// exactly); the build goes on, and a later search uses it without building again.
#[test]
fn a_build_longer_than_a_search_waits_goes_on_in_the_background() {
    let mut node = Node::new();
    docs(&mut node, TableKind::Shared, 16);
    let rows: Vec<(i64, Vec<f32>)> = (0..3000).map(|i| (i, vector(i as u64, 16))).collect();
    for chunk in rows.chunks(500) {
        insert(&mut node, "", chunk);
    }
    let counting = Arc::new(Counting::default());
    let impatient = VectorIndexes::new(Some(counting.clone())).with_wait(std::time::Duration::ZERO);
    let query = vector(12_345, 16);
    let target = |node: &Node| (node.def(), node.index());
    let (def, index) = target(&node);
    let ask = |indexes: &VectorIndexes| {
        indexes
            .search(
                &node.store,
                None,
                Target {
                    def: &def,
                    index: &index,
                    scope: "",
                },
                &query,
                10,
            )
            .expect("search")
    };
    let first = ask(&impatient);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let answer = loop {
        if let Some(hits) = ask(&impatient) {
            break hits;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the build never ended"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(answer.indexed, 3000);
    if let Some(first) = first {
        assert_eq!(first, answer);
    }
    assert_eq!(counting.builds.load(Ordering::SeqCst), 1, "built once");
    // Another build (a graph of its own) finds (nearly) the same rows.
    let patient = VectorIndexes::new(None);
    let again = ids(&search(&patient, &node, "", &query, 10));
    let same = again.iter().filter(|i| ids(&answer).contains(i)).count();
    assert!(same >= 9, "{again:?} against {:?}", ids(&answer));
}

#[test]
fn the_index_finds_what_brute_force_finds_and_follows_every_change() {
    let mut node = Node::new();
    docs(&mut node, TableKind::Shared, 16);
    let rows: Vec<(i64, Vec<f32>)> = (0..2000).map(|i| (i, vector(i as u64, 16))).collect();
    for chunk in rows.chunks(500) {
        insert(&mut node, "", chunk);
    }
    let counting = Arc::new(Counting::default());
    let indexes = VectorIndexes::new(Some(counting.clone()));
    // Recall@10 over 20 queries against brute force.
    let mut found = 0;
    for q in 0..20 {
        let query = vector(10_000 + q, 16);
        let hits = search(&indexes, &node, "", &query, 10);
        assert_eq!(hits.indexed, 2000);
        let mut exact: Vec<(f32, i64)> =
            rows.iter().map(|(i, e)| (cosine(&query, e), *i)).collect();
        exact.sort_by(|a, b| a.0.total_cmp(&b.0));
        let truth: Vec<i64> = exact[..10].iter().map(|(_, i)| *i).collect();
        found += ids(&hits).iter().filter(|i| truth.contains(i)).count();
        // Distances are the index's own cosine distances, nearest first.
        for (pk, d) in &hits.hits {
            let Value::BigInt(i) = pk else { panic!() };
            assert!((cosine(&query, &rows[*i as usize].1) - d).abs() < 1e-3);
        }
    }
    assert!(found >= 190, "recall@10 {}", found as f64 / 200.0);
    assert_eq!(counting.builds.load(Ordering::SeqCst), 1, "built once");

    // An update moves row 7 onto the query; a delete takes row 8 away; an insert adds 5000.
    let query = vector(99_999, 16);
    move_7_and_delete_8(&mut node, &query, 16);
    let mut near = query.clone();
    near[0] += 0.01;
    insert(&mut node, "", &[(5000, near)]);
    let hits = search(&indexes, &node, "", &query, 3);
    assert_eq!(ids(&hits)[..2], [7, 5000]);
    assert_eq!(hits.indexed, 2000);
    let everything = search(&indexes, &node, "", &query, 5000);
    assert!(!ids(&everything).contains(&8), "a deleted row is gone");
    // An approximate search for every vector finds nearly all of them (the exact path
    // covers the rest: see `query::vector_exec`).
    assert!(everything.hits.len() >= 1900, "{}", everything.hits.len());
    assert_eq!(
        counting.builds.load(Ordering::SeqCst),
        1,
        "caught up, not rebuilt"
    );

    // With the journal trimmed past what the index holds, it is built again, with the same answers.
    // (A trim of changes the index has folded in already costs nothing: 5001 is not.)
    insert(&mut node, "", &[(5001, vector(5001, 16))]);
    crate::journal::trim(&node.store, u64::MAX).expect("trim");
    let again = search(&indexes, &node, "", &query, 3);
    assert_eq!(counting.builds.load(Ordering::SeqCst), 2, "rebuilt");
    assert_eq!(ids(&again)[..2], [7, 5000]);
    assert_eq!(again.indexed, 2001);
    // A fresh node (a restart, a replay) builds the same index.
    let fresh = VectorIndexes::new(None);
    assert_eq!(ids(&search(&fresh, &node, "", &query, 2)), [7, 5000]);
}

#[test]
fn only_embedding_columns_of_user_and_shared_tables_take_one_index() {
    let mut node = Node::new();
    docs(&mut node, TableKind::User, 4);
    let rejected = |o: Outcome| matches!(o, Outcome::Rejected { .. });
    assert!(
        rejected(node.run(vec![create_index("e")])),
        "one per column"
    );
    assert!(rejected(node.run(vec![create_index("t")])), "TEXT");
    assert!(rejected(node.run(vec![create_index("nope")])));
    let drop = |column: &str| Op::DropVectorIndex {
        namespace: "app".into(),
        table: "docs".into(),
        column: column.into(),
    };
    assert!(rejected(node.run(vec![drop("t")])), "no index on t");
    assert!(applied(&node.run(vec![drop("e")])));
    assert!(
        catalog::vector_indexes(node.store.as_ref(), node.def().id)
            .expect("read")
            .is_empty()
    );
    assert!(applied(&node.run(vec![create_index("e")])));
    // Dropping the column drops its index; so does dropping the table.
    let mut altered = node.def();
    altered.columns.retain(|c| c.name != "e");
    let version = altered.schema_version;
    let id = altered.id;
    assert!(applied(&node.run(vec![Op::AlterTable {
        table: altered,
        expected_version: version,
    }])));
    assert!(
        catalog::vector_indexes(node.store.as_ref(), id)
            .expect("read")
            .is_empty()
    );

    let mut stream = Node::new();
    let mut table = TableDef::example("app", "docs", TableKind::Stream);
    table.columns[1].data_type = DataType::Embedding(4);
    assert!(applied(&stream.run(vec![Op::CreateNamespace {
        name: "app".into(),
        description: None,
        if_not_exists: false,
    }])));
    assert!(applied(&stream.run(vec![Op::CreateTable {
        table,
        if_not_exists: false,
    }])));
    assert!(rejected(stream.run(vec![Op::CreateVectorIndex {
        namespace: "app".into(),
        table: "docs".into(),
        column: "v".into(),
        metric: VectorMetric::Cosine,
    }])));
}

#[test]
fn dropping_a_table_drops_its_index() {
    let mut node = Node::new();
    docs(&mut node, TableKind::Shared, 4);
    let id = node.def().id;
    assert!(applied(&node.run(vec![Op::DropTable {
        namespace: "app".into(),
        name: "docs".into(),
        if_exists: false,
    }])));
    assert!(
        catalog::vector_indexes(node.store.as_ref(), id)
            .expect("read")
            .is_empty()
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    /// A user's search never returns another user's row, however the rows are shared out
    /// and whatever the query.
    #[test]
    fn a_search_never_sees_another_users_rows(
        owners in proptest::collection::vec(0u8..3, 1..120),
        query_seed in 0u64..1000,
        k in 1usize..50,
    ) {
        let mut node = Node::new();
        docs(&mut node, TableKind::User, 8);
        let users = ["alice", "bob", "carol"];
        for (u, user) in users.iter().enumerate() {
            let rows: Vec<(i64, Vec<f32>)> = owners
                .iter()
                .enumerate()
                .filter(|(_, o)| usize::from(**o) == u)
                .map(|(i, _)| (i as i64, vector(i as u64, 8)))
                .collect();
            if !rows.is_empty() {
                insert(&mut node, user, &rows);
            }
        }
        let indexes = VectorIndexes::new(None);
        let query = vector(query_seed + 7_777, 8);
        for (u, user) in users.iter().enumerate() {
            let hits = search(&indexes, &node, user, &query, k);
            let own = owners.iter().filter(|o| usize::from(**o) == u).count();
            prop_assert_eq!(hits.indexed, own);
            prop_assert_eq!(hits.hits.len(), k.min(own));
            for id in ids(&hits) {
                prop_assert_eq!(usize::from(owners[id as usize]), u);
            }
        }
    }
}

/// Waits for `indexes`' background work (builds, catch-ups and the saves after them) to end.
fn settle(indexes: &VectorIndexes) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while indexes
        .lock()
        .values()
        .any(|s| s.busy.load(Ordering::Acquire))
    {
        assert!(std::time::Instant::now() < deadline, "still busy");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// `search`, then [`settle`].
fn search_settled(indexes: &VectorIndexes, node: &Node, q: &[f32], k: usize) -> Hits {
    let hits = search(indexes, node, "", q, k);
    settle(indexes);
    hits
}

/// The files of the node's snapshot directory, sorted.
fn snapshot_files(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Updates row 7 onto `to` and deletes row 8 (both inserted as `vector(id, dims)`).
fn move_7_and_delete_8(node: &mut Node, to: &[f32], dims: usize) {
    let def = node.def();
    let seq = |node: &Node, id: i64| {
        crate::journal::after_seq(&node.store, def.id, "", 0, 100_000)
            .expect("journal")
            .into_iter()
            .rfind(|c| c.pk == Value::BigInt(id))
            .expect("a change")
            .seq
    };
    let row = |id: i64, e: Vec<f32>| {
        vec![
            (1, Value::BigInt(id)),
            (2, Value::Embedding(e)),
            (3, Value::Null),
        ]
    };
    let (seq7, seq8) = (seq(node, 7), seq(node, 8));
    let outcome = node.run(vec![
        Op::Update {
            table: def.id,
            schema_version: def.schema_version,
            scope: String::new(),
            rows: vec![RowChange {
                pk: Value::BigInt(7),
                expected_seq: seq7,
                old: row(7, vector(7, dims)),
                cells: row(7, to.to_vec()),
            }],
        },
        Op::Delete {
            table: def.id,
            scope: String::new(),
            rows: vec![RowDelete {
                pk: Value::BigInt(8),
                expected_seq: seq8,
                old: row(8, vector(8, dims)),
            }],
        },
    ]);
    assert!(applied(&outcome), "{outcome:?}");
}

/// A node that restarts loads its saved index and catches it up from the journal instead
/// of building it again, with the same answers; so does one whose index was saved after
/// changes.
#[test]
fn a_restarted_node_loads_its_saved_index_and_catches_it_up() {
    let mut node = Node::new();
    docs(&mut node, TableKind::Shared, 16);
    let rows: Vec<(i64, Vec<f32>)> = (0..1500).map(|i| (i, vector(i as u64, 16))).collect();
    for chunk in rows.chunks(500) {
        insert(&mut node, "", chunk);
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let query = vector(4242, 16);
    move_7_and_delete_8(&mut node, &query, 16);
    let first = Arc::new(Counting::default());
    let before = search_settled(
        &VectorIndexes::new(Some(first.clone())).with_snapshots(dir.path()),
        &node,
        &query,
        10,
    );
    assert_eq!(first.builds.load(Ordering::SeqCst), 1);
    assert_eq!(before.indexed, 1499);
    assert_eq!(ids(&before)[0], 7);
    let stem = format!("t{}-c2-i{}-s", node.def().id.0, node.index().created_index);
    assert_eq!(
        snapshot_files(dir.path()),
        [format!("{stem}.meta"), format!("{stem}.vix")]
    );

    // A restart: nothing built, the same answer.
    let restarted = Arc::new(Counting::default());
    let indexes = VectorIndexes::new(Some(restarted.clone()))
        .with_snapshots(dir.path())
        .with_save_after(2);
    assert_eq!(search_settled(&indexes, &node, &query, 10), before);
    // Changes made meanwhile are caught up (and, past 2 of them, saved).
    let mut near = query.clone();
    near[1] += 0.01;
    insert(&mut node, "", &[(9000, near), (9001, vector(9001, 16))]);
    let after = search_settled(&indexes, &node, &query, 10);
    assert_eq!(ids(&after)[..2], [7, 9000]);
    assert_eq!(after.indexed, 1501);
    assert_eq!(
        restarted.builds.load(Ordering::SeqCst),
        0,
        "loaded, not built"
    );

    // A second restart loads what was saved after the changes: the journal need not hold
    // them any more.
    insert(
        &mut node,
        "",
        &[(9002, vector(9002, 16)), (9003, vector(9003, 16))],
    );
    search_settled(&indexes, &node, &query, 10);
    crate::journal::trim(&node.store, u64::MAX).expect("trim");
    let again = Arc::new(Counting::default());
    let reloaded = VectorIndexes::new(Some(again.clone())).with_snapshots(dir.path());
    let answer = search(&reloaded, &node, "", &query, 10);
    assert_eq!(again.builds.load(Ordering::SeqCst), 0, "loaded, not built");
    assert_eq!(answer.indexed, 1503);
    assert_eq!(ids(&answer), ids(&after));
}

/// A snapshot that is damaged (any flipped byte), torn by a crash between its two renames,
/// older than the journal reaches back, or of an index dropped since is never used: the
/// index is built again from the rows, with the same answers, and saved anew.
#[test]
fn an_unusable_snapshot_is_replaced_by_a_build() {
    let mut node = Node::new();
    docs(&mut node, TableKind::Shared, 8);
    let rows: Vec<(i64, Vec<f32>)> = (0..300).map(|i| (i, vector(i as u64, 8))).collect();
    insert(&mut node, "", &rows);
    let dir = tempfile::tempdir().expect("temp dir");
    let query = vector(77, 8);
    search_settled(
        &VectorIndexes::new(None).with_snapshots(dir.path()),
        &node,
        &query,
        5,
    );
    let stem = format!("t{}-c2-i{}-s", node.def().id.0, node.index().created_index);
    let (vix, meta) = (
        dir.path().join(format!("{stem}.vix")),
        dir.path().join(format!("{stem}.meta")),
    );
    let pristine = (
        std::fs::read(&vix).expect("vix"),
        std::fs::read(&meta).expect("meta"),
    );
    // Builds by a restarted node after `damage`; its answer finds (nearly) what brute force
    // finds over `rows` (an approximate index: not always every one of the 5).
    let builds_after = |node: &Node, rows: &[(i64, Vec<f32>)], damage: &dyn Fn()| {
        damage();
        let counting = Arc::new(Counting::default());
        let indexes = VectorIndexes::new(Some(counting.clone())).with_snapshots(dir.path());
        let mut exact: Vec<(f32, i64)> =
            rows.iter().map(|(i, e)| (cosine(&query, e), *i)).collect();
        exact.sort_by(|a, b| a.0.total_cmp(&b.0));
        let truth: Vec<i64> = exact[..5].iter().map(|(_, i)| *i).collect();
        let got = ids(&search_settled(&indexes, node, &query, 5));
        let found = got.iter().filter(|i| truth.contains(i)).count();
        assert!(found >= 4, "{got:?} against {truth:?}");
        counting.builds.load(Ordering::SeqCst)
    };
    let restore = || {
        std::fs::write(&vix, &pristine.0).expect("write");
        std::fs::write(&meta, &pristine.1).expect("write");
    };
    assert_eq!(
        builds_after(&node, &rows, &restore),
        0,
        "the pristine snapshot is loaded"
    );
    for (file, at) in [
        (&vix, 0),
        (&vix, pristine.0.len() / 2),
        (&meta, 3),
        (&meta, pristine.1.len() - 1),
    ] {
        let flip = || {
            restore();
            let mut bytes = std::fs::read(file).expect("read");
            bytes[at] ^= 0x10;
            std::fs::write(file, bytes).expect("write");
        };
        assert_eq!(
            builds_after(&node, &rows, &flip),
            1,
            "{} byte {at} flipped",
            file.display()
        );
    }
    // A crash between the renames: a new .vix beside the old .meta; and the temporary
    // files a crash mid-save leaves, swept at the next start.
    let torn = || {
        restore();
        std::fs::write(&vix, b"a graph saved after the .meta").expect("write");
        std::fs::write(dir.path().join(format!("{stem}.vix.tmp")), b"half").expect("write");
    };
    assert_eq!(builds_after(&node, &rows, &torn), 1);
    assert_eq!(
        snapshot_files(dir.path()),
        [format!("{stem}.meta"), format!("{stem}.vix")],
        "rebuilt, saved again, nothing left over"
    );
    // Older than the journal reaches back.
    restore();
    insert(&mut node, "", &[(5000, vector(5000, 8))]);
    crate::journal::trim(&node.store, u64::MAX).expect("trim");
    let mut rows = rows;
    rows.push((5000, vector(5000, 8)));
    assert_eq!(builds_after(&node, &rows, &|| {}), 1, "stale");
    // An index dropped and created again: the old one's files go.
    for op in [
        Op::DropVectorIndex {
            namespace: "app".into(),
            table: "docs".into(),
            column: "e".into(),
        },
        create_index("e"),
    ] {
        assert!(applied(&node.run(vec![op])));
    }
    assert_eq!(builds_after(&node, &rows, &|| {}), 1, "another index");
    let fresh = format!("t{}-c2-i{}-s", node.def().id.0, node.index().created_index);
    assert_ne!(fresh, stem);
    assert_eq!(
        snapshot_files(dir.path()),
        [format!("{fresh}.meta"), format!("{fresh}.vix")]
    );
}

/// The `.meta` encoding (`materializer/FORMAT.md`, "Vector index snapshots").
#[test]
fn snapshot_meta_golden_bytes() {
    let meta = snapshot::Meta {
        table: 3,
        column: 2,
        created_index: 17,
        scope: "u1".into(),
        dims: 4,
        metric: VectorMetric::Cosine,
        through: (1000, 1),
        seen_seq: 1001,
        next_key: 2,
        graph_bytes: 300,
        graph_crc: 0xdead_beef,
        rows: vec![(0, Value::BigInt(5)), (1, Value::Text("k".into()))],
    };
    let bytes = snapshot::encode_meta(&meta);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    // "FOLDVIX\n", format 1 (u32 LE), codec version 1, the fields in order (varints;
    // `through.0` and `seen_seq` zigzagged), then the CRC-32 of all before it (LE).
    assert_eq!(
        hex,
        "464f4c445649580a01000000\
         01030211027531040\
         0fbd00701fbd20702fb2c01fcefbeadde\
         0200040a0108016b\
         efda3879"
    );
    assert_eq!(snapshot::decode_meta(&bytes), Ok(meta));
}
