//! Tests of `event_fold`, kept beside it (STYLE.md: a sibling `*_test.rs` once they grow).
use super::*;
use crate::event::{RowChange, RowChangeV1, RowDelete};
use crate::event::{decode_outcomes, encode_entry};
use crate::test_support::{cmd, insert, own_delete, setup, update_then_delete};
use folddb_log::Term;
use proptest::prelude::*;

/// Applies `entries` (each a list of commands) to a fresh store; returns the outcomes
/// and the store's dump.
fn run(entries: &[Vec<Command>]) -> (Vec<Vec<Outcome>>, Vec<crate::hot::KeyValue>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = HotStore::open(dir.path()).expect("open");
    let mut outcomes = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let mut batch = HotBatch::default();
        let index = LogIndex(i as u64 + 1);
        let out = EventFold::default()
            .fold(&store, index, &encode_entry(e), &mut batch)
            .expect("fold");
        store.apply(index, Term(1), batch).expect("apply");
        outcomes.push(decode_outcomes(&out).expect("outcomes"));
    }
    (outcomes, store.dump().expect("dump"))
}

#[test]
fn a_failed_precondition_rolls_the_whole_command_back_and_later_commands_see_earlier_ones() {
    let entries = vec![
        setup(),
        vec![
            cmd(2, vec![insert(&[1, 2])]),
            // Duplicate of a key the previous command (same entry) wrote: rejected whole,
            // including its first row.
            cmd(2, vec![insert(&[3]), insert(&[1])]),
            cmd(2, vec![insert(&[4])]),
        ],
    ];
    let (outcomes, dump) = run(&entries);
    assert!(matches!(outcomes[1][0], Outcome::Applied(_)));
    match &outcomes[1][1] {
        Outcome::Rejected { op, error, kind } => {
            assert_eq!(*op, 1);
            assert_eq!(*kind, RejectKind::Constraint);
            assert!(
                error.contains("Primary key violation: value '1'"),
                "{error}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(outcomes[1][2], Outcome::Applied(_)));
    let rows: Vec<_> = dump.iter().filter(|(f, _, _)| *f == Family::Rows).collect();
    assert_eq!(rows.len(), 3, "rows 1, 2 and 4; not 3");
}

#[test]
fn update_and_delete_check_the_expected_seq() {
    let (outcomes, _) = run(&[setup(), vec![cmd(5, vec![insert(&[1])])]]);
    let Outcome::Applied(r) = &outcomes[1][0] else {
        panic!("insert failed");
    };
    let seq = r[0].seqs[0];
    let update = |expected_seq| Op::Update {
        table: TableId(1),
        schema_version: 1,
        scope: String::new(),
        rows: vec![RowChange {
            pk: Value::BigInt(1),
            expected_seq,
            old: vec![(1, Value::BigInt(1)), (2, Value::Text("v1".into()))],
            cells: vec![(1, Value::BigInt(1)), (2, Value::Text("new".into()))],
        }],
    };
    let (outcomes, _) = run(&[
        setup(),
        vec![cmd(5, vec![insert(&[1])])],
        vec![cmd(6, vec![update(seq)]), cmd(6, vec![update(seq)])],
    ]);
    assert!(matches!(outcomes[2][0], Outcome::Applied(_)));
    assert!(
        matches!(&outcomes[2][1], Outcome::Rejected { error, .. } if error.contains("changed concurrently")),
        "the second update expected a _seq that the first one replaced"
    );
}

#[test]
fn own_write_sentinel_matches_only_rows_the_same_command_wrote() {
    let update = |id: i64, expected_seq| Op::Update {
        table: TableId(1),
        schema_version: 1,
        scope: String::new(),
        rows: vec![RowChange {
            pk: Value::BigInt(id),
            expected_seq,
            old: vec![(1, Value::BigInt(id)), (2, Value::Text(format!("v{id}")))],
            cells: vec![(1, Value::BigInt(id)), (2, Value::Text("again".into()))],
        }],
    };
    let delete = |id: i64| Op::Delete {
        table: TableId(1),
        scope: String::new(),
        rows: vec![own_delete(id)],
    };
    let (outcomes, _) = run(&[
        setup(),
        vec![cmd(5, vec![insert(&[1])])],
        vec![
            // Inserted and changed twice in one command: accepted.
            cmd(6, vec![insert(&[2]), update(2, SEQ_OWN_WRITE), delete(2)]),
            // Row 1 was written by an earlier command, not this one: refused.
            cmd(6, vec![update(1, SEQ_OWN_WRITE)]),
        ],
        // A later command in another entry cannot claim row 2 either.
        vec![cmd(
            7,
            vec![insert(&[3]), update(3, SEQ_OWN_WRITE), delete(1)],
        )],
    ]);
    assert!(
        matches!(&outcomes[2][0], Outcome::Applied(r) if r.len() == 3),
        "{:?}",
        outcomes[2][0]
    );
    assert!(matches!(&outcomes[2][1], Outcome::Rejected { op: 0, .. }));
    assert!(
        matches!(&outcomes[3][0], Outcome::Rejected { op: 2, .. }),
        "{:?}",
        outcomes[3][0]
    );
}

#[test]
fn a_preview_reads_its_own_writes_and_its_ops_replay_as_one_command() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = HotStore::open(dir.path()).expect("open");
    for (i, e) in [setup(), vec![cmd(5, vec![insert(&[1])])]]
        .iter()
        .enumerate()
    {
        let mut batch = HotBatch::default();
        let index = LogIndex(i as u64 + 1);
        EventFold::default()
            .fold(&store, index, &encode_entry(e), &mut batch)
            .expect("fold");
        store.apply(index, Term(1), batch).expect("apply");
    }
    let mut preview = Preview::new(&store, &EventFold::default()).expect("preview");
    let key2 = row_key(TableId(1), "", &Value::BigInt(2));
    assert!(matches!(
        preview
            .apply(&store, &cmd(9, vec![insert(&[2])]))
            .expect("preview"),
        Outcome::Applied(_)
    ));
    assert!(preview.wrote(&key2));
    assert!(
        preview
            .batch()
            .get(&store, Family::Rows, &key2)
            .expect("read")
            .is_some()
    );
    // A duplicate inside the transaction fails at the statement, and leaves the rest.
    assert!(matches!(
        preview
            .apply(&store, &cmd(9, vec![insert(&[3]), insert(&[1])]))
            .expect("preview"),
        Outcome::Rejected { op: 1, .. }
    ));
    let key3 = row_key(TableId(1), "", &Value::BigInt(3));
    assert!(!preview.wrote(&key3));
    assert!(
        preview
            .batch()
            .get(&store, Family::Rows, &key3)
            .expect("read")
            .is_none()
    );
    // Nothing reached the store.
    assert!(store.get(Family::Rows, &key2).expect("read").is_none());
}

#[test]
fn folding_records_each_row_change_with_its_old_and_new_image() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = HotStore::open(dir.path()).expect("open");
    let fold = |i: u64, e: Vec<Command>| {
        let mut batch = HotBatch::default();
        let out = EventFold::default()
            .fold(&store, LogIndex(i), &encode_entry(&e), &mut batch)
            .expect("fold");
        let events = batch.take_events();
        store.apply(LogIndex(i), Term(1), batch).expect("apply");
        (decode_outcomes(&out).expect("outcomes"), events)
    };
    fold(1, setup());
    let (_, events) = fold(2, vec![cmd(5, vec![insert(&[1, 2])])]);
    assert_eq!(events.len(), 2);
    assert!(
        events
            .iter()
            .all(|e| e.old.is_none() && e.table == TableId(1))
    );
    let seq1 = events[0].new.as_ref().map(|v| v.seq);
    // A rejected command leaves no events; the applied one leaves its two, in order.
    let (outcomes, events) = fold(
        3,
        vec![
            cmd(6, vec![insert(&[2])]),
            cmd(6, update_then_delete(seq1.unwrap_or_default())),
        ],
    );
    assert!(matches!(outcomes[0], Outcome::Rejected { .. }));
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0].pk, Value::BigInt(1));
    assert_eq!(events[0].old.as_ref().map(|v| v.seq), seq1);
    let updated = events[0].new.clone().expect("a new image");
    assert_eq!(updated.cell(2), Some(&Value::Text("new".into())));
    assert_eq!(events[1].old.as_ref(), Some(&updated));
    assert!(events[1].new.as_ref().is_some_and(|v| v.deleted));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Fold determinism: the same entries give the same outcomes and the same state, and
    /// `_seq` increases strictly in log order whatever the stamps say.
    #[test]
    fn folding_is_deterministic(batches in proptest::collection::vec(
        proptest::collection::vec((0i64..20, 0u64..3), 1..4), 1..6)) {
        let mut entries = vec![setup()];
        for (n, batch) in batches.iter().enumerate() {
            entries.push(
                batch
                    .iter()
                    .map(|(id, skew)| cmd(1000 + n as u64 * 2 - skew, vec![insert(&[*id])]))
                    .collect(),
            );
        }
        let a = run(&entries);
        let b = run(&entries);
        prop_assert_eq!(&a.0, &b.0);
        prop_assert_eq!(&a.1, &b.1);
        let seqs: Vec<i64> = a.0.iter().flatten().filter_map(|o| match o {
            Outcome::Applied(r) => Some(r.iter().flat_map(|r| r.seqs.clone()).collect::<Vec<_>>()),
            Outcome::Rejected { .. } => None,
        }).flatten().collect();
        prop_assert!(seqs.windows(2).all(|w| w[0] < w[1]));
    }
}

/// A cold tier whose storage cannot be read.
#[derive(Debug)]
struct Unreachable;

impl ColdTier for Unreachable {
    fn get(
        &self,
        _: &dyn StateRead,
        _: &catalog::StorageDef,
        _: &TableDef,
        _: &str,
        _: &Value,
    ) -> crate::cold::ColdResult<Option<crate::RowVersion>> {
        Err("s3://lake/app/t: connection refused".into())
    }
}

/// A store folded by a fold whose cold tier cannot be read: entries go in one at a time.
struct UnreachableNode {
    _dir: tempfile::TempDir,
    store: HotStore,
    fold: EventFold,
    index: u64,
}

impl UnreachableNode {
    fn new() -> UnreachableNode {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = HotStore::open(dir.path()).expect("open");
        let mut node = UnreachableNode {
            _dir: dir,
            store,
            fold: EventFold::new(Arc::new(Unreachable)),
            index: 0,
        };
        for c in setup() {
            node.fold_one(c).expect("setup folds");
        }
        node
    }

    /// Folds and applies `cmd` as the next entry: its outcome and row events, or the error
    /// that left it unapplied.
    fn fold_one(&mut self, cmd: Command) -> crate::Result<(Outcome, Vec<RowEvent>)> {
        let mut batch = HotBatch::default();
        let index = LogIndex(self.index + 1);
        let out = self
            .fold
            .fold(&self.store, index, &encode_entry(&[cmd]), &mut batch)?;
        let events = batch.take_events();
        self.store.apply(index, Term(1), batch).expect("apply");
        self.index += 1;
        let outcome = decode_outcomes(&out).expect("outcomes").remove(0);
        Ok((outcome, events))
    }

    fn applied(&mut self, cmd: Command) -> (Vec<OpResult>, Vec<RowEvent>) {
        match self.fold_one(cmd).expect("folds") {
            (Outcome::Applied(r), events) => (r, events),
            (other, _) => panic!("{other:?}"),
        }
    }
}

#[test]
fn primary_keys_are_checked_against_the_key_index_and_only_a_legacy_op_reads_the_cold_tier() {
    let ms = crate::seq::SEQ_EPOCH_UNIX_MS;
    let mut node = UnreachableNode::new();
    // The table counts its visible rows, hot or cold, through every change below.
    let count = |node: &UnreachableNode| {
        crate::row::visible_rows(&node.store, TableId(1), "").expect("a count")
    };
    assert_eq!(count(&node), Some(0));
    // Nothing was ever flushed: no key index entry, no cold read.
    let (r, _) = node.applied(cmd(ms + 1000, vec![insert(&[1, 2, 3])]));
    assert_eq!(count(&node), Some(3));
    let seqs = r[0].seqs.clone();
    let (r, _) = node.applied(cmd(ms + 2000, vec![delete_op(3, seqs[2], Vec::new())]));
    assert_eq!(count(&node), Some(2));
    let through = r[0].seqs[0];
    node.applied(cmd(ms + 3000, vec![flush_commit(through)]));
    // The commit moved nothing yet: its trim does.
    let hot_rows = |node: &UnreachableNode| node.store.scan_prefix(Family::Rows, &[]).expect("hot");
    assert_eq!(hot_rows(&node).len(), 3);
    node.applied(cmd(
        ms + 3500,
        vec![Op::TrimHot {
            table: TableId(1),
            from: Vec::new(),
            to: None,
        }],
    ));
    // The index holds the live flushed keys with their `_seq`, not the tombstone.
    let indexed: Vec<(Vec<u8>, i64)> = node
        .store
        .scan_prefix(Family::ColdKeys, &[])
        .expect("index")
        .into_iter()
        .map(|(k, v)| (k, crate::row::decode_indexed_seq(&v).expect("a _seq")))
        .collect();
    let key = |id| row_key(TableId(1), "", &Value::BigInt(id));
    assert_eq!(indexed, vec![(key(1), seqs[0]), (key(2), seqs[1])]);
    assert_eq!(
        count(&node),
        Some(2),
        "a flush moves rows, it changes no count"
    );
    assert!(hot_rows(&node).is_empty());
    // A flushed key is a duplicate, a flushed tombstone's key is free: neither reads the
    // (unreachable) segments.
    match node
        .fold_one(cmd(ms + 4000, vec![insert(&[1])]))
        .expect("folds")
    {
        (Outcome::Rejected { error, .. }, _) => {
            assert!(
                error.contains("Primary key violation: value '1'"),
                "{error}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(count(&node), Some(2), "a rejected insert counts nothing");
    node.applied(cmd(ms + 5000, vec![insert(&[3, 9])]));
    assert_eq!(
        count(&node),
        Some(4),
        "a flushed tombstone's key counts again"
    );
    // An update of a cold row checks its `_seq` against the index and reports the old
    // image the op carries.
    let image = vec![(1, Value::BigInt(2)), (2, Value::Text("v2".into()))];
    let update = |expected_seq| Op::Update {
        table: TableId(1),
        schema_version: 1,
        scope: String::new(),
        rows: vec![RowChange {
            pk: Value::BigInt(2),
            expected_seq,
            old: image.clone(),
            cells: vec![(1, Value::BigInt(2)), (2, Value::Text("new".into()))],
        }],
    };
    match node
        .fold_one(cmd(ms + 6000, vec![update(seqs[1] - 1)]))
        .expect("folds")
    {
        (Outcome::Rejected { error, .. }, _) => {
            assert!(error.contains("changed concurrently"), "{error}")
        }
        other => panic!("{other:?}"),
    }
    let (_, events) = node.applied(cmd(ms + 7000, vec![update(seqs[1])]));
    let old = events[0].old.as_ref().expect("an old image");
    assert_eq!((old.seq, old.deleted, &old.cells), (seqs[1], false, &image));
    assert_eq!(count(&node), Some(4), "an update changes no count");
    // An op from before old images has to read the segments: the failure is the
    // environment's, so the fold errs and the entry is not applied.
    let applied = node.store.applied_index().expect("applied");
    let legacy = Op::UpdateV1 {
        table: TableId(1),
        schema_version: 1,
        scope: String::new(),
        rows: vec![RowChangeV1 {
            pk: Value::BigInt(1),
            expected_seq: seqs[0],
            cells: vec![(1, Value::BigInt(1)), (2, Value::Text("x".into()))],
        }],
    };
    let e = node
        .fold_one(cmd(ms + 8000, vec![legacy]))
        .expect_err("not an outcome");
    assert!(matches!(e, crate::Error::ColdRead { .. }), "{e}");
    assert!(e.to_string().contains("connection refused"), "{e}");
    assert_eq!(node.store.applied_index().expect("applied"), applied);
    node.applied(cmd(
        ms + 8500,
        vec![delete_op(
            1,
            seqs[0],
            vec![(1, Value::BigInt(1)), (2, Value::Text("v1".into()))],
        )],
    ));
    assert_eq!(count(&node), Some(3), "a cold row's delete counts");
    // Dropping the table drops its index entries and its counts.
    node.applied(cmd(
        ms + 9000,
        vec![Op::DropTable {
            namespace: "app".into(),
            name: "t".into(),
            if_exists: false,
        }],
    ));
    assert_eq!(count(&node), None);
    assert!(
        node.store
            .scan_prefix(Family::Meta, b"count")
            .expect("meta")
            .is_empty()
    );
    assert!(
        node.store
            .scan_prefix(Family::ColdKeys, &[])
            .expect("index")
            .is_empty()
    );
}

#[test]
fn an_inline_flush_commit_drops_the_hot_versions_it_covers_and_a_stale_one_is_rejected() {
    let ms = crate::seq::SEQ_EPOCH_UNIX_MS;
    let covered = crate::Seq::at_unix_ms(ms + 1000).0 + 10;
    let commit = |job: &str, through_seq: i64, segments: usize| Op::CommitFlushInline {
        table: TableId(1),
        job: job.into(),
        as_of: 3,
        through_seq,
        segments: (0..segments)
            .map(|_| crate::ScopeSegment {
                scope: String::new(),
                segment: crate::event::golden::segment(),
            })
            .collect(),
    };
    let mut entries: Vec<Vec<Command>> = setup().into_iter().map(|c| vec![c]).collect();
    entries.push(vec![cmd(ms + 1000, vec![insert(&[1, 2, 3])])]);
    entries.push(vec![cmd(ms + 2000, vec![insert(&[4])])]);
    entries.push(vec![cmd(ms + 3000, vec![commit("FL-a", covered, 1)])]);
    // A job that read an earlier state commits after it: refused, nothing changes.
    entries.push(vec![cmd(ms + 4000, vec![commit("FL-b", covered - 5, 1)])]);
    // A job that read no hot version of the table: a no-op, recorded.
    entries.push(vec![cmd(ms + 5000, vec![commit("FL-c", covered - 5, 0)])]);
    let (outcomes, dump) = run(&entries);
    let n = outcomes.len();
    assert!(
        matches!(outcomes[n - 3][0], Outcome::Applied(_)),
        "{outcomes:?}"
    );
    assert!(
        matches!(&outcomes[n - 2][0], Outcome::Rejected { error, .. } if error.contains("overtaken")),
        "{outcomes:?}"
    );
    assert!(
        matches!(outcomes[n - 1][0], Outcome::Applied(_)),
        "{outcomes:?}"
    );
    // Rows 1 to 3 left the hot tier; row 4 (written after the job's state) stays.
    let hot: Vec<&Vec<u8>> = dump
        .iter()
        .filter(|(f, _, _)| *f == Family::Rows)
        .map(|(_, k, _)| k)
        .collect();
    assert_eq!(hot.len(), 1, "{hot:?}");
    assert!(hot[0].ends_with(&crate::cold::store::key_of(&Value::BigInt(4))));
    let manifests: Vec<crate::cold::Manifest> = dump
        .iter()
        .filter(|(f, k, _)| *f == Family::Catalog && k.starts_with(b"c\0"))
        .map(|(_, _, v)| codec::decode(v, "a manifest").expect("manifest"))
        .collect();
    assert_eq!(manifests.len(), 1);
    assert_eq!(
        manifests[0].segments.len(),
        1,
        "FL-b's segment is not listed"
    );
    let jobs: Vec<crate::JobRecord> = dump
        .iter()
        .filter(|(f, k, _)| *f == Family::Catalog && k.starts_with(b"j\0"))
        .map(|(_, _, v)| codec::decode(v, "a job").expect("job"))
        .collect();
    let messages: Vec<(&str, &str)> = jobs
        .iter()
        .map(|j| (j.id.as_str(), j.message.as_str()))
        .collect();
    assert_eq!(messages.len(), 2, "{messages:?}");
    assert!(
        messages[0].1.starts_with("Flushed 2 row(s)"),
        "{messages:?}"
    );
    assert!(messages[1].1.contains("no pending writes"), "{messages:?}");
}

/// A DELETE of row `id` of table 1, expected at `expected_seq`, with old image `old`.
fn delete_op(id: i64, expected_seq: i64, old: Vec<(u32, Value)>) -> Op {
    Op::Delete {
        table: TableId(1),
        scope: String::new(),
        rows: vec![RowDelete {
            pk: Value::BigInt(id),
            expected_seq,
            old,
        }],
    }
}

/// The commit of a flush of table 1 through `through_seq`, one segment.
fn flush_commit(through_seq: i64) -> Op {
    Op::CommitFlush {
        table: TableId(1),
        job: "FL-1".into(),
        as_of: 3,
        through_seq,
        segments: vec![crate::ScopeSegment {
            scope: String::new(),
            segment: crate::event::golden::segment(),
        }],
    }
}

/// The cold tier's key index, as (row id, indexed `_seq`).
fn indexed_ids(node: &UnreachableNode) -> Vec<(i64, i64)> {
    node.store
        .scan_prefix(Family::ColdKeys, &[])
        .expect("index")
        .into_iter()
        .map(|(k, v)| {
            let id = (1..10)
                .find(|id| k == row_key(TableId(1), "", &Value::BigInt(*id)))
                .expect("a row id");
            (id, crate::row::decode_indexed_seq(&v).expect("a _seq"))
        })
        .collect()
}

#[test]
fn trims_move_only_the_flushed_versions_of_their_range_and_answers_stay_the_same() {
    let ms = crate::seq::SEQ_EPOCH_UNIX_MS;
    let mut node = UnreachableNode::new();
    let (r, _) = node.applied(cmd(ms + 1000, vec![insert(&[1, 2, 3, 4])]));
    let seqs = r[0].seqs.clone();
    let (r, _) = node.applied(cmd(ms + 2000, vec![delete_op(3, seqs[2], Vec::new())]));
    let through = r[0].seqs[0];
    node.applied(cmd(ms + 3000, vec![flush_commit(through)]));
    node.applied(cmd(ms + 4000, vec![insert(&[5])]));
    let hot_ids = |node: &UnreachableNode| -> Vec<(i64, i64)> {
        node.store
            .scan_prefix(Family::Rows, &[])
            .expect("hot")
            .into_iter()
            .map(|(_, v)| {
                let row: RowVersion = codec::decode(&v, "a row").expect("a row");
                match row.cell(1) {
                    Some(Value::BigInt(id)) => (*id, row.seq),
                    other => panic!("{other:?}"),
                }
            })
            .collect()
    };
    assert_eq!(
        hot_ids(&node).len(),
        5,
        "the commit leaves every hot version"
    );
    assert!(indexed_ids(&node).is_empty());
    // A flushed key still hot is a duplicate, as it is once trimmed.
    match node
        .fold_one(cmd(ms + 4500, vec![insert(&[1])]))
        .expect("folds")
    {
        (Outcome::Rejected { error, .. }, _) => {
            assert!(error.contains("Primary key violation"), "{error}")
        }
        other => panic!("{other:?}"),
    }
    // A trim of the keys below row 4's, in a command whose first op updates row 2: that
    // newer version stays hot; rows 1 and 3 (a tombstone) leave.
    let suffix = |id: i64| row_key(TableId(1), "", &Value::BigInt(id))[8..].to_vec();
    let (r, _) = node.applied(cmd(
        ms + 5000,
        vec![
            Op::Update {
                table: TableId(1),
                schema_version: 1,
                scope: String::new(),
                rows: vec![RowChange {
                    pk: Value::BigInt(2),
                    expected_seq: seqs[1],
                    old: Vec::new(),
                    cells: vec![(1, Value::BigInt(2)), (2, Value::Text("new".into()))],
                }],
            },
            Op::TrimHot {
                table: TableId(1),
                from: Vec::new(),
                to: Some(suffix(4)),
            },
        ],
    ));
    assert_eq!(r[1].affected, 2, "{r:?}");
    let updated = r[0].seqs[0];
    assert_eq!(indexed_ids(&node), vec![(1, seqs[0])]);
    let hot: Vec<i64> = hot_ids(&node).into_iter().map(|(id, _)| id).collect();
    assert_eq!(hot, vec![2, 4, 5]);
    // The rest of the table: row 4 leaves, row 5 (written after the flush) stays.
    let rest = Op::TrimHot {
        table: TableId(1),
        from: suffix(4),
        to: None,
    };
    let (r, _) = node.applied(cmd(ms + 6000, vec![rest.clone()]));
    assert_eq!(r[0].affected, 1);
    assert_eq!(indexed_ids(&node), vec![(1, seqs[0]), (4, seqs[3])]);
    assert_eq!(
        hot_ids(&node)
            .into_iter()
            .map(|(id, _)| id)
            .collect::<Vec<_>>(),
        vec![2, 5]
    );
    assert!(hot_ids(&node).contains(&(2, updated)));
    // Trimming again, or a table never flushed, moves nothing.
    let (r, _) = node.applied(cmd(ms + 7000, vec![rest]));
    assert_eq!(r[0].affected, 0);
    let (r, _) = node.applied(cmd(
        ms + 8000,
        vec![Op::TrimHot {
            table: TableId(99),
            from: Vec::new(),
            to: None,
        }],
    ));
    assert_eq!(r[0].affected, 0);
    assert_eq!(
        crate::row::visible_rows(&node.store, TableId(1), "").expect("a count"),
        Some(4),
        "trims change no count"
    );
}

/// A topic's routes write their messages in the fold of the entry that made the change, at
/// gap-free offsets: a rejected command routes nothing, and folding again gives the same
/// bytes.
#[test]
fn topic_routes_write_their_messages_with_the_change() {
    use crate::topics::{self, Payload, Route, RouteOp};
    let route = |op| {
        cmd(
            1,
            vec![Op::AddTopicRoute {
                topic: "feed".into(),
                route: Route {
                    table: TableId(1),
                    table_name: "app.t".into(),
                    op,
                    payload: Payload::Full,
                    filter: None,
                    filter_sql: None,
                },
            }],
        )
    };
    let entries = vec![
        setup(),
        vec![
            cmd(
                1,
                vec![Op::CreateTopic {
                    id: "feed".into(),
                    partitions: 1,
                    if_not_exists: false,
                    max_deliveries: None,
                    dead_letter: None,
                    retention_seconds: None,
                }],
            ),
            route(RouteOp::Insert),
            route(RouteOp::Insert),
        ],
        vec![
            cmd(7, vec![insert(&[1, 2])]),
            // Rejected (a duplicate key): none of its rows is routed.
            cmd(7, vec![insert(&[3]), insert(&[1])]),
        ],
        vec![cmd(9, vec![insert(&[4])])],
    ];
    let (outcomes, dump) = run(&entries);
    assert!(
        matches!(&outcomes[1][2], Outcome::Rejected { error, .. } if error.contains("already exists")),
        "a second route of the same table and operation: {:?}",
        outcomes[1][2]
    );
    let messages: Vec<(u64, topics::Message)> = dump
        .iter()
        .filter(|(f, k, _)| {
            *f == Family::Topics && k.starts_with(&topics::partition_prefix("feed", 0))
        })
        .map(|(_, k, v)| {
            (
                topics::offset_of(k).expect("offset"),
                crate::codec::decode(v, "a message").expect("decodes"),
            )
        })
        .collect();
    let got: Vec<(u64, Option<&str>, u64, u64)> = messages
        .iter()
        .map(|(o, m)| (*o, m.key.as_deref(), m.index, m.timestamp_ms))
        .collect();
    assert_eq!(
        got,
        [
            (0, Some("1"), 3, 7),
            (1, Some("2"), 3, 7),
            (2, Some("4"), 4, 9)
        ]
    );
    let payload: serde_json::Value = serde_json::from_slice(&messages[0].1.payload).expect("JSON");
    assert_eq!(payload["v"], "v1");
    assert_eq!(payload["_table"], "app.t");
    assert_eq!(run(&entries).1, dump, "folding again gives the same state");
}
