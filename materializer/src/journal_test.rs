//! Tests of `journal`, kept beside it (STYLE.md: a sibling `*_test.rs`).
use super::*;
use crate::event::{Command, decode_outcomes, encode_entry};
use crate::test_support::{cmd, insert, update_then_delete};
use crate::{EventFold, Fold, Outcome, Term};

/// A leader's clock, in Unix milliseconds (2027).
const STAMP: u64 = 1_800_000_000_000;

/// Folds and applies `commands` as entry `index`; the outcomes.
fn fold(store: &HotStore, index: u64, commands: Vec<Command>) -> Vec<Outcome> {
    let mut batch = HotBatch::default();
    let out = EventFold::default()
        .fold(store, LogIndex(index), &encode_entry(&commands), &mut batch)
        .expect("fold");
    store.apply(LogIndex(index), Term(1), batch).expect("apply");
    decode_outcomes(&out).expect("outcomes")
}

fn setup(store: &HotStore) {
    fold(store, 1, crate::test_support::setup());
}

fn shape(changes: &[Change]) -> Vec<(u64, u32, i64, ChangeOp)> {
    changes
        .iter()
        .map(|c| {
            let Value::BigInt(pk) = c.pk else {
                panic!("a BIGINT key: {:?}", c.pk)
            };
            (c.index, c.ordinal, pk, c.op)
        })
        .collect()
}

#[test]
fn every_applied_change_is_read_back_in_log_order_from_an_index_or_a_seq() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = HotStore::open(dir.path()).expect("open");
    setup(&store);
    assert_eq!(horizon(&store).expect("horizon"), 1);
    fold(&store, 2, vec![cmd(STAMP, vec![insert(&[1, 2])])]);
    let inserted = after_index(&store, 0, 100).expect("read");
    let seq1 = inserted[0].seq;
    // The rejected command (a duplicate key) records nothing.
    let outcomes = fold(
        &store,
        3,
        vec![
            cmd(STAMP + 1, vec![insert(&[2])]),
            cmd(STAMP + 1, update_then_delete(seq1)),
        ],
    );
    assert!(matches!(outcomes[0], Outcome::Rejected { .. }));

    let all = after_index(&store, 0, 100).expect("read");
    assert_eq!(
        shape(&all),
        [
            (2, 0, 1, ChangeOp::Insert),
            (2, 1, 2, ChangeOp::Insert),
            (3, 0, 1, ChangeOp::Update),
            (3, 1, 1, ChangeOp::Delete),
        ]
    );
    // Each change has its true images; `_seq`s grow in log order.
    assert!(all[0].old.is_none());
    assert_eq!(all[2].old.as_ref(), all[0].new.as_ref());
    assert_eq!(
        all[2].new.as_ref().and_then(|v| v.cell(2)),
        Some(&Value::Text("new".into()))
    );
    assert_eq!(all[3].old.as_ref(), all[2].new.as_ref());
    assert!(all[3].new.as_ref().is_some_and(|v| v.deleted));
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq), "{all:?}");
    assert_eq!(all[0].unix_ms(), STAMP);
    assert_eq!(all[2].unix_ms(), STAMP + 1);

    // From an index: the entries after it; a limit stops the read.
    assert_eq!(
        shape(&after_index(&store, 2, 100).expect("read")),
        shape(&all[2..])
    );
    assert_eq!(
        shape(&after_index(&store, 0, 3).expect("read")),
        shape(&all[..3])
    );
    assert!(after_index(&store, 3, 100).expect("read").is_empty());
    // From a `_seq` of the table: the changes after it.
    for (i, c) in all.iter().enumerate() {
        let after = after_seq(&store, TableId(1), "", c.seq, 100).expect("read");
        assert_eq!(shape(&after), shape(&all[i + 1..]), "after {}", c.seq);
    }
    assert_eq!(
        shape(&after_seq(&store, TableId(1), "", 0, 100).expect("read")),
        shape(&all)
    );
    // Another table or owner has none.
    assert!(
        after_seq(&store, TableId(2), "", 0, 100)
            .expect("read")
            .is_empty()
    );
    assert!(
        after_seq(&store, TableId(1), "u1", 0, 100)
            .expect("read")
            .is_empty()
    );
}

#[test]
fn a_physical_delete_follows_the_seq_before_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = HotStore::open(dir.path()).expect("open");
    let version = |seq| RowVersion {
        seq,
        deleted: false,
        cells: vec![(1, Value::BigInt(seq))],
    };
    let event = |pk: i64, new: Option<RowVersion>| RowEvent {
        table: TableId(7),
        scope: "u1".into(),
        pk: Value::BigInt(pk),
        old: Some(version(pk)),
        new,
    };
    let mut batch = HotBatch::default();
    // After `_seq` 5: a version at 10, then a key deleted without a tombstone.
    record(
        &mut batch,
        LogIndex(1),
        Some(5),
        &[event(1, Some(version(10))), event(2, None)],
    );
    store.apply(LogIndex(1), Term(1), batch).expect("apply");
    let at = |after| shape(&after_seq(&store, TableId(7), "u1", after, 10).expect("read"));
    assert_eq!(
        at(9),
        [(1, 0, 1, ChangeOp::Update), (1, 1, 2, ChangeOp::Delete)]
    );
    // A reader at `_seq` 10 saw the version, not the delete after it.
    assert_eq!(at(10), [(1, 1, 2, ChangeOp::Delete)]);
    assert_eq!(after_index(&store, 0, 10).expect("read")[1].seq, 10);
}

#[test]
fn a_store_of_an_earlier_layout_starts_its_journal_after_what_it_applied() {
    let dir = tempfile::tempdir().expect("temp dir");
    {
        let store = HotStore::open(dir.path()).expect("open");
        setup(&store);
        fold(&store, 2, vec![cmd(5, vec![insert(&[1])])]);
        // As a build of layout 3 left it: no journal.
        let mut old = HotBatch::default();
        old.put(
            Family::Meta,
            b"layout".to_vec(),
            3u32.to_be_bytes().to_vec(),
        );
        for (key, _) in store.scan_prefix(Family::Journal, b"").expect("journal") {
            old.delete(Family::Journal, key);
        }
        store.upgrade(old).expect("downgrade");
        store.flush().expect("flush");
    }
    let store = HotStore::open(dir.path()).expect("reopen");
    assert_eq!(horizon(&store).expect("horizon"), 3);
    // A cursor before the last version written then may have missed changes.
    let last = crate::EventFold::last_seq(&store).expect("last seq");
    assert!(last.is_some());
    assert_eq!(horizon_seq(&store).expect("horizon seq"), last);
    assert!(after_index(&store, 0, 10).expect("read").is_empty());
    fold(&store, 3, vec![cmd(6, vec![insert(&[2])])]);
    assert_eq!(
        shape(&after_index(&store, 0, 10).expect("read")),
        [(3, 0, 2, ChangeOp::Insert)]
    );
}

#[test]
fn keys_and_records_keep_their_bytes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = HotStore::open(dir.path()).expect("open");
    let event = RowEvent {
        table: TableId(3),
        scope: "ab".into(),
        pk: Value::BigInt(7),
        old: None,
        new: Some(RowVersion {
            seq: 0x0102,
            deleted: false,
            cells: vec![(1, Value::BigInt(7))],
        }),
    };
    let mut batch = HotBatch::default();
    record(&mut batch, LogIndex(0x0a0b), None, [&event]);
    store.apply(LogIndex(1), Term(1), batch).expect("apply");
    let keys = store.scan_prefix(Family::Journal, b"").expect("scan");
    let e = [
        b"e".as_slice(),
        &[0, 0, 0, 0, 0, 0, 0x0a, 0x0b],
        &[0, 0, 0, 0],
    ]
    .concat();
    let t = [
        b"t".as_slice(),
        &[0, 0, 0, 0, 0, 0, 0, 3],
        &[0, 2],
        b"ab",
        &[0, 0, 0, 0, 0, 0, 1, 2],
        &[0, 0, 0, 0],
    ]
    .concat();
    assert_eq!(keys.len(), 2);
    assert_eq!((&keys[0].0, &keys[1].0), (&e, &t));
    assert_eq!(keys[1].1, e);
    assert_eq!(hex(&keys[0].1), GOLDEN_CHANGE);
    let change = decode(&keys[0].1).expect("decode");
    assert_eq!(
        (change.index, change.ordinal, change.op, change.seq),
        (0x0a0b, 0, ChangeOp::Insert, 0x0102)
    );
}

/// The value of the change in `keys_and_records_keep_their_bytes` (codec 1).
const GOLDEN_CHANGE: &str = "01fb0b0a0003026162040e00fb04020001fb0402000101040e";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn a_trim_removes_whole_entries_before_the_cutoff_and_moves_the_horizon() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = HotStore::open(dir.path()).expect("open");
    setup(&store);
    // Entries 2, 3 and 4, a second apart; entry 3 has more changes than a trim reads at once.
    fold(&store, 2, vec![cmd(STAMP, vec![insert(&[1, 2])])]);
    fold(
        &store,
        3,
        vec![cmd(STAMP + 1000, vec![insert(&[3, 4, 5, 6, 7])])],
    );
    fold(&store, 4, vec![cmd(STAMP + 2000, vec![insert(&[8])])]);
    assert_eq!(after_index(&store, 0, 100).expect("read").len(), 8);
    // Nothing is older than the first entry.
    assert_eq!(trim(&store, STAMP).expect("trim"), 0);
    assert_eq!(horizon(&store).expect("horizon"), 1);
    assert_eq!(horizon_seq(&store).expect("horizon seq"), None);
    let removed = after_index(&store, 0, 7).expect("read");

    assert_eq!(trim(&store, STAMP + 1500).expect("trim"), 7);
    assert_eq!(horizon(&store).expect("horizon"), 4);
    // The newest change removed: a cursor at it misses nothing.
    assert_eq!(
        horizon_seq(&store).expect("horizon seq"),
        removed.iter().map(|c| c.seq).max()
    );
    let left = after_index(&store, 0, 100).expect("read");
    assert!(
        left.iter()
            .all(|c| Some(c.seq) > removed.last().map(|c| c.seq))
    );
    assert_eq!(shape(&left), [(4, 0, 8, ChangeOp::Insert)]);
    assert_eq!(
        shape(&after_seq(&store, TableId(1), "", 0, 100).expect("read")),
        shape(&left)
    );
    // Both keys of each change are gone.
    assert_eq!(
        store.scan_prefix(Family::Journal, b"").expect("scan").len(),
        2
    );
    assert_eq!(trim(&store, STAMP + 1500).expect("trim"), 0);
    // New changes go on after the horizon.
    fold(&store, 5, vec![cmd(STAMP + 3000, vec![insert(&[9])])]);
    assert_eq!(after_index(&store, 3, 100).expect("read").len(), 2);
    assert_eq!(trim(&store, u64::MAX).expect("trim"), 2);
    assert_eq!(horizon(&store).expect("horizon"), 6);
    assert!(
        store
            .scan_prefix(Family::Journal, b"")
            .expect("scan")
            .is_empty()
    );
}

#[test]
fn a_position_or_a_seq_finds_where_reading_starts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = HotStore::open(dir.path()).expect("open");
    setup(&store);
    // Entries 2..=9 with two changes each, and entry 10 with none.
    for (k, index) in (2..=9u64).enumerate() {
        let id = 10 * k as i64;
        fold(
            &store,
            index,
            vec![cmd(STAMP + index, vec![insert(&[id, id + 1])])],
        );
    }
    fold(&store, 10, Vec::new());
    let all = after_index(&store, 0, 100).expect("read");
    assert_eq!(all.len(), 16);
    // From a change on: that change and the rest.
    let from = from_position(&store, 5, 1, 100).expect("read");
    assert_eq!(shape(&from), shape(&all[7..]));
    // From a _seq: every change above it is at or after the index found, and the entry
    // before that index holds none above it.
    for (k, c) in all.iter().enumerate() {
        for seq in [c.seq - 1, c.seq] {
            let at = index_for_seq(&store, seq, 11).expect("search");
            let first_above = all.iter().position(|c| c.seq > seq).unwrap_or(all.len());
            assert!(
                all[first_above..].iter().all(|c| c.index >= at),
                "seq {seq} (change {k}): index {at}"
            );
            assert!(
                all.iter().filter(|c| c.index < at).all(|c| c.seq <= seq),
                "seq {seq}: index {at} skips a change above it"
            );
        }
    }
    assert_eq!(index_for_seq(&store, i64::MAX, 11).expect("search"), 9);
    assert_eq!(index_for_seq(&store, 0, 11).expect("search"), 1);
}

#[test]
fn catalog_changes_are_read_in_log_order_with_the_rows_and_keep_their_bytes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = HotStore::open(dir.path()).expect("open");
    setup(&store);
    fold(&store, 2, vec![cmd(STAMP, vec![insert(&[1])])]);
    // A namespace that already exists changes nothing: no record.
    fold(
        &store,
        3,
        vec![cmd(
            STAMP + 1,
            vec![crate::Op::CreateNamespace {
                name: "app".into(),
                description: None,
                if_not_exists: true,
            }],
        )],
    );
    let all = records_from(&store, 0, 0, 100).expect("read");
    let shape: Vec<String> = all
        .iter()
        .map(|r| match r {
            Record::Row(c) => format!("{} {} row", c.index, c.ordinal),
            Record::Catalog(c) => format!("{} {} {} {}", c.index, c.ordinal, c.kind, c.target),
        })
        .collect();
    let first = CATALOG_ORDINAL;
    assert_eq!(
        shape,
        [
            format!("1 {first} create_namespace app"),
            format!("1 {} create_table app.t", first + 1),
            "2 0 row".to_owned(),
        ]
    );
    // From a position, and with a limit.
    let from = records_from(&store, 1, first + 1, 1).expect("read");
    assert_eq!(from.len(), 1);
    assert_eq!(from[0].position(), (1, first + 1));
    // The bytes of a catalog change (codec 1).
    let Record::Catalog(c) = &all[1] else {
        panic!("a catalog change")
    };
    let bytes = store
        .get(Family::Journal, &catalog_key(c.index, c.ordinal))
        .expect("get")
        .expect("present");
    let fixed = CatalogChange {
        index: 7,
        ordinal: first,
        seq: 9,
        actor: "a".into(),
        stamp_ms: 10,
        kind: "drop_table".into(),
        target: "n.t".into(),
        detail: None,
    };
    assert_eq!(hex(&codec::encode(&fixed)), GOLDEN_CATALOG_CHANGE);
    assert_eq!(
        codec::decode::<CatalogChange>(&bytes, "a catalog change").expect("decode"),
        *c
    );
    // A trim past entry 1 takes its catalog changes too.
    assert_eq!(trim(&store, STAMP + 1).expect("trim"), 1);
    assert!(records_from(&store, 0, 0, 100).expect("read").is_empty());
}

/// The encoding of the fixed catalog change above (codec 1).
const GOLDEN_CATALOG_CHANGE: &str = "0107fc000000801201610a0a64726f705f7461626c65036e2e7400";

#[test]
fn a_journal_over_its_byte_limit_loses_its_oldest_entries() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = HotStore::open(dir.path()).expect("open");
    setup(&store);
    for index in 2..=41u64 {
        let id = index as i64 * 100;
        let ids: Vec<i64> = (id..id + 20).collect();
        fold(&store, index, vec![cmd(STAMP + index, vec![insert(&ids)])]);
    }
    store.flush().expect("flush");
    let size = store.family_bytes(Family::Journal).expect("size");
    assert!(size > 0);
    assert_eq!(trim_to_bytes(&store, size).expect("trim"), 0);
    let removed = trim_to_bytes(&store, size / 2).expect("trim");
    // About half the window's entries, whole and oldest first.
    assert!((200..=600).contains(&removed), "{removed} of 800");
    assert_eq!(removed % 20, 0);
    let h = horizon(&store).expect("horizon");
    let left = after_index(&store, 0, 1000).expect("read");
    assert_eq!(left.len(), 800 - removed);
    assert!(left.iter().all(|c| c.index >= h));
    assert_eq!(left.first().map(|c| c.index), Some(h));
}
