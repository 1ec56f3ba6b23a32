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
    let patient = VectorIndexes::new(None);
    assert_eq!(ids(&search(&patient, &node, "", &query, 10)), ids(&answer));
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
    let def = node.def();
    let seq = |node: &Node, id: i64| {
        crate::journal::after_seq(&node.store, def.id, "", 0, 100_000)
            .expect("journal")
            .into_iter()
            .rfind(|c| c.pk == Value::BigInt(id))
            .expect("a change")
            .seq
    };
    let (seq7, seq8) = (seq(&node, 7), seq(&node, 8));
    let outcome = node.run(vec![
        Op::Update {
            table: def.id,
            schema_version: def.schema_version,
            scope: String::new(),
            rows: vec![RowChange {
                pk: Value::BigInt(7),
                expected_seq: seq7,
                old: vec![
                    (1, Value::BigInt(7)),
                    (2, Value::Embedding(rows[7].1.clone())),
                    (3, Value::Null),
                ],
                cells: vec![
                    (1, Value::BigInt(7)),
                    (2, Value::Embedding(query.clone())),
                    (3, Value::Null),
                ],
            }],
        },
        Op::Delete {
            table: def.id,
            scope: String::new(),
            rows: vec![RowDelete {
                pk: Value::BigInt(8),
                expected_seq: seq8,
                old: vec![
                    (1, Value::BigInt(8)),
                    (2, Value::Embedding(rows[8].1.clone())),
                    (3, Value::Null),
                ],
            }],
        },
    ]);
    assert!(applied(&outcome), "{outcome:?}");
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
