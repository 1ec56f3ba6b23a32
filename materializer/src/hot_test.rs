//! Tests of the hot tier store: batches, applies, snapshots, layouts.

use super::*;

fn put(i: u64) -> HotBatch {
    let mut b = HotBatch::default();
    b.put(
        Family::Rows,
        i.to_be_bytes().to_vec(),
        format!("row {i}").into_bytes(),
    );
    b.put(Family::Catalog, b"last".to_vec(), i.to_be_bytes().to_vec());
    b
}

#[test]
fn catalog_reads_see_every_applied_write() {
    let dir = tempfile::tempdir().unwrap();
    let store = HotStore::open(dir.path()).unwrap();
    let key = b"t/app/a".to_vec();
    let prefix = b"t/app/".to_vec();
    let absent = || {
        assert_eq!(store.get(Family::Catalog, &key).unwrap(), None);
        assert!(
            store
                .scan_prefix(Family::Catalog, &prefix)
                .unwrap()
                .is_empty()
        );
    };
    // Misses are kept too: a key read absent, then written, reads as written.
    absent();
    for (i, value) in [(1u64, "v1"), (2, "v2")] {
        let mut b = HotBatch::default();
        b.put(Family::Catalog, key.clone(), value.as_bytes().to_vec());
        store.apply(LogIndex(i), Term(1), b).unwrap();
        for _ in 0..2 {
            assert_eq!(
                store.get(Family::Catalog, &key).unwrap().as_deref(),
                Some(value.as_bytes())
            );
            assert_eq!(
                store.scan_prefix(Family::Catalog, &prefix).unwrap(),
                vec![(key.clone(), value.as_bytes().to_vec())]
            );
        }
    }
    let mut del = HotBatch::default();
    del.delete(Family::Catalog, key.clone());
    store.apply(LogIndex(3), Term(1), del).unwrap();
    absent();
    // A snapshot installed over the store replaces what was read before it.
    let mut snapshot = HotBatch::default();
    snapshot.put(Family::Catalog, key.clone(), b"v4".to_vec());
    store
        .replace_all(Some((LogIndex(4), Term(2))), snapshot)
        .unwrap();
    assert_eq!(
        store.get(Family::Catalog, &key).unwrap().as_deref(),
        Some(&b"v4"[..])
    );
}

#[test]
fn a_read_overtaken_by_a_write_is_not_kept() {
    let mut cache = CatalogCache::default();
    let before = cache.generation;
    cache.invalidate();
    cache.keep(CatalogCache::gets, before, b"k", &Some(b"old".to_vec()));
    let rows = vec![(b"k".to_vec(), b"old".to_vec())];
    cache.keep(CatalogCache::scans, before, b"k", &rows);
    assert!(cache.gets.is_empty() && cache.scans.is_empty());
    let now = cache.generation;
    cache.keep(CatalogCache::gets, now, b"k", &Some(b"new".to_vec()));
    assert_eq!(cache.gets.get(&b"k"[..]), Some(&Some(b"new".to_vec())));
}

#[test]
fn a_large_catalog_scan_is_not_kept() {
    let dir = tempfile::tempdir().unwrap();
    let store = HotStore::open(dir.path()).unwrap();
    let mut b = HotBatch::default();
    b.put(
        Family::Catalog,
        b"a/1".to_vec(),
        vec![0u8; CatalogCache::MAX_SCAN_BYTES + 1],
    );
    b.put(Family::Catalog, b"b/1".to_vec(), b"small".to_vec());
    store.apply(LogIndex(1), Term(1), b).unwrap();
    assert_eq!(store.scan_prefix(Family::Catalog, b"a/").unwrap().len(), 1);
    assert_eq!(store.scan_prefix(Family::Catalog, b"b/").unwrap().len(), 1);
    let cache = store.catalog_cache();
    assert!(
        !cache.scans.contains_key(&b"a/"[..]),
        "a large scan is not kept"
    );
    assert!(cache.scans.contains_key(&b"b/"[..]));
}

#[test]
fn applies_in_order_and_skips_replays() {
    let dir = tempfile::tempdir().unwrap();
    let store = HotStore::open(dir.path()).unwrap();
    assert_eq!(store.applied_index().unwrap(), None);
    assert!(store.apply(LogIndex(5), Term(1), put(5)).unwrap());
    assert!(store.apply(LogIndex(6), Term(1), put(6)).unwrap());
    assert!(
        !store.apply(LogIndex(6), Term(1), put(999)).unwrap(),
        "a replayed entry is skipped"
    );
    assert_eq!(
        store
            .get(Family::Rows, &6u64.to_be_bytes())
            .unwrap()
            .unwrap(),
        b"row 6"
    );
    assert!(
        !store.apply(LogIndex(3), Term(1), put(3)).unwrap(),
        "below the mark"
    );
    assert_eq!(store.applied_index().unwrap(), Some(LogIndex(6)));
    let mut del = HotBatch::default();
    del.delete(Family::Rows, 5u64.to_be_bytes().to_vec());
    store.apply(LogIndex(7), Term(2), del).unwrap();
    let rows = store.scan_prefix(Family::Rows, &[]).unwrap();
    assert_eq!(rows, vec![(6u64.to_be_bytes().to_vec(), b"row 6".to_vec())]);
}

#[test]
fn flushed_state_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = HotStore::open(dir.path()).unwrap();
        for i in 1..=100 {
            store.apply(LogIndex(i), Term(1), put(i)).unwrap();
        }
        store.flush().unwrap();
    }
    let store = HotStore::open(dir.path()).unwrap();
    assert_eq!(store.applied_index().unwrap(), Some(LogIndex(100)));
    assert_eq!(store.scan_prefix(Family::Rows, &[]).unwrap().len(), 100);
}

#[test]
fn dump_and_replace_all_move_the_whole_state() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let src = HotStore::open(a.path()).unwrap();
    for i in 1..=20 {
        src.apply(LogIndex(i), Term(3), put(i)).unwrap();
    }
    let dst = HotStore::open(b.path()).unwrap();
    dst.apply(LogIndex(1), Term(1), put(999)).unwrap();
    let mut contents = HotBatch::default();
    for (family, k, v) in src.dump().unwrap() {
        contents.put(family, k, v);
    }
    dst.replace_all(Some((LogIndex(20), Term(3))), contents)
        .unwrap();
    assert_eq!(dst.applied().unwrap(), Some((LogIndex(20), Term(3))));
    assert_eq!(dst.dump().unwrap(), src.dump().unwrap());
    assert!(
        dst.get(Family::Rows, &999u64.to_be_bytes())
            .unwrap()
            .is_none()
    );
}

/// Exports `src` into `dst` in chunks of `chunk` keys, stopping before the last batch when
/// `finish` is false: the applied mark the export read.
fn import(src: &HotStore, dst: &HotStore, chunk: usize, finish: bool) -> Option<(LogIndex, Term)> {
    dst.import_begin().unwrap();
    let mut batch = HotBatch::default();
    let mut n = 0;
    let applied = src
        .export(|family, k, v| {
            batch.put(family, k.to_vec(), v.to_vec());
            n += 1;
            if n % chunk == 0 {
                dst.import_chunk(std::mem::take(&mut batch))?;
            }
            Ok(())
        })
        .unwrap();
    dst.import_chunk(batch).unwrap();
    if finish {
        dst.import_finish(applied).unwrap();
    }
    applied
}

#[test]
fn export_and_import_move_the_whole_state_a_chunk_at_a_time() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let src = HotStore::open(a.path()).unwrap();
    for i in 1..=50 {
        src.apply(LogIndex(i), Term(3), put(i)).unwrap();
    }
    let dst = HotStore::open(b.path()).unwrap();
    for i in 1..=3 {
        dst.apply(LogIndex(i), Term(1), put(900 + i)).unwrap();
    }
    // Catalog reads cached before the import must not survive it.
    assert!(dst.get(Family::Catalog, b"last").unwrap().is_some());
    let applied = import(&src, &dst, 7, true);
    assert_eq!(applied, Some((LogIndex(50), Term(3))));
    assert_eq!(dst.applied().unwrap(), applied);
    assert_eq!(dst.dump().unwrap(), src.dump().unwrap());
    assert_eq!(
        dst.get(Family::Catalog, b"last").unwrap(),
        Some(50u64.to_be_bytes().to_vec())
    );
    drop(dst);
    let dst = HotStore::open(b.path()).unwrap();
    assert_eq!(dst.applied().unwrap(), applied);
    assert_eq!(dst.dump().unwrap(), src.dump().unwrap());
}

#[test]
fn an_import_cut_off_leaves_an_empty_store_after_reopening() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let src = HotStore::open(a.path()).unwrap();
    for i in 1..=30 {
        src.apply(LogIndex(i), Term(3), put(i)).unwrap();
    }
    {
        let dst = HotStore::open(b.path()).unwrap();
        dst.apply(LogIndex(1), Term(1), put(901)).unwrap();
        import(&src, &dst, 4, false);
        dst.flush().unwrap();
    }
    // Half an import is never exported.
    let c = tempfile::tempdir().unwrap();
    let half = HotStore::open(c.path()).unwrap();
    half.import_begin().unwrap();
    assert!(matches!(
        half.export(|_, _, _| Ok(())),
        Err(Error::Importing { .. })
    ));
    let dst = HotStore::open(b.path()).unwrap();
    assert_eq!(dst.applied().unwrap(), None);
    let left: Vec<_> = dst
        .dump()
        .unwrap()
        .into_iter()
        .filter(|(f, k, _)| !(*f == Family::Meta && k.as_slice() == LAYOUT_KEY))
        .collect();
    assert_eq!(
        left,
        Vec::new(),
        "neither the old state nor half the new one"
    );
}

const CHILD_ENV: &str = "FOLDDB_HOT_CRASH_CHILD";

/// The child half of the crash test: applies entries forever, flushing now and then and
/// reporting each flushed index on stdout, until the parent kills it.
fn crash_child(dir: &str) {
    use std::io::Write;
    let store = HotStore::open(dir).unwrap();
    let mut out = std::io::stdout().lock();
    for i in 1u64.. {
        store.apply(LogIndex(i), Term(1), put(i)).unwrap();
        if i % 300 == 0 {
            store.flush().unwrap();
            writeln!(out, "flushed {i}").unwrap();
            out.flush().unwrap();
        }
    }
}

/// SIGKILL a process that is applying entries: on reopen the store holds exactly the
/// entries up to its applied index (every one of them, none after), and the applied index
/// is at least the last one flushed before the kill.
#[test]
fn sigkill_leaves_data_and_applied_index_consistent() {
    use std::io::BufRead;
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        crash_child(&dir);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "hot::tests::sigkill_leaves_data_and_applied_index_consistent",
        ])
        .args(["--nocapture", "--test-threads", "1"])
        .env(CHILD_ENV, dir.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut flushed = 0u64;
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(n) = line.strip_prefix("flushed ") {
            flushed = n.parse().unwrap();
            if flushed >= 3000 {
                break;
            }
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(flushed >= 3000, "the child stopped early");

    let store = HotStore::open(dir.path()).unwrap();
    let applied = store.applied_index().unwrap().unwrap().0;
    assert!(applied >= flushed, "applied {applied} < flushed {flushed}");
    let rows = store.scan_prefix(Family::Rows, &[]).unwrap();
    assert_eq!(
        rows.len() as u64,
        applied,
        "exactly the rows up to the applied index"
    );
    for (k, (key, value)) in rows.iter().enumerate() {
        let i = k as u64 + 1;
        assert_eq!(key, &i.to_be_bytes());
        assert_eq!(value, format!("row {i}").as_bytes());
    }
    let last = store.get(Family::Catalog, b"last").unwrap().unwrap();
    assert_eq!(
        last,
        applied.to_be_bytes(),
        "every family stopped at the same entry"
    );
}

#[test]
fn each_entry_marks_the_tables_whose_rows_it_changes() {
    let dir = tempfile::tempdir().unwrap();
    let store = HotStore::open(dir.path()).unwrap();
    let row = |t: u64, k: u8| [&t.to_be_bytes()[..], &[k]].concat();
    let marks = |store: &HotStore| {
        let snapshot = store.snapshot();
        [(Family::Rows, 1), (Family::Rows, 2), (Family::Streams, 1)]
            .map(|(f, t)| snapshot.written(f, crate::TableId(t)).unwrap())
    };
    assert_eq!(marks(&store), [0, 0, 0], "nothing written yet");
    let mut batch = HotBatch::default();
    batch.put(Family::Rows, row(1, 1), vec![1]);
    batch.put(Family::Rows, row(1, 2), vec![2]);
    batch.put(Family::Catalog, row(2, 1), vec![3]);
    store.apply(LogIndex(1), Term(1), batch).unwrap();
    assert_eq!(marks(&store), [1, 0, 0], "only table 1's rows changed");

    let mut batch = HotBatch::default();
    batch.delete(Family::Streams, row(1, 1));
    assert!(batch.delete_prefix(Family::Rows, &2u64.to_be_bytes()));
    store.apply(LogIndex(2), Term(1), batch).unwrap();
    assert_eq!(
        marks(&store),
        [1, 2, 2],
        "a deletion, and a table's range, count"
    );
    let before = store.snapshot();

    // A range reaching past one table marks every table of its family.
    let mut batch = HotBatch::default();
    assert!(batch.delete_prefix(Family::Rows, &[0]));
    store.apply(LogIndex(3), Term(1), batch).unwrap();
    assert_eq!(marks(&store), [3, 3, 2]);
    // A snapshot keeps the marks of its moment.
    assert_eq!(before.written(Family::Rows, crate::TableId(1)).unwrap(), 1);
    // An entry applied again changes nothing.
    let mut batch = HotBatch::default();
    batch.put(Family::Rows, row(1, 1), vec![9]);
    assert!(!store.apply(LogIndex(3), Term(1), batch).unwrap());
    assert_eq!(marks(&store), [3, 3, 2]);
}

#[test]
fn a_prefix_deletion_hides_earlier_writes_and_later_ones_stay() {
    let dir = tempfile::tempdir().unwrap();
    let store = HotStore::open(dir.path()).unwrap();
    let key = |t: u8, k: u8| vec![0, t, k];
    let mut before = HotBatch::default();
    for k in 1..=3 {
        before.put(Family::Rows, key(1, k), vec![k]);
    }
    before.put(Family::Rows, key(2, 1), b"other table".to_vec());
    store.apply(LogIndex(1), Term(1), before).unwrap();

    let mut batch = HotBatch::default();
    batch.put(Family::Rows, key(1, 4), vec![4]);
    let mark = batch.mark();
    assert!(batch.delete_prefix(Family::Rows, &[0, 1]));
    batch.put(Family::Rows, key(1, 2), b"written back".to_vec());
    // Reads inside the batch see the deletion, then what came after it.
    for k in [1, 3, 4] {
        assert_eq!(batch.get(&store, Family::Rows, &key(1, k)).unwrap(), None);
        assert!(batch.holds(Family::Rows, &key(1, k)));
    }
    let scanned = |b: &HotBatch, p: &[u8]| b.scan_prefix(&store, Family::Rows, p).unwrap();
    assert_eq!(
        scanned(&batch, &[0, 1]),
        vec![(key(1, 2), b"written back".to_vec())]
    );
    assert_eq!(scanned(&batch, &[0]).len(), 2, "table 2 is untouched");
    // Rolled back, the deletion is gone with the writes after the mark.
    let mut undone = batch.clone();
    undone.rollback_to(mark);
    assert_eq!(scanned(&undone, &[0, 1]).len(), 4);

    store.apply(LogIndex(2), Term(1), batch).unwrap();
    let rows = store.scan_prefix(Family::Rows, &[]).unwrap();
    assert_eq!(
        rows,
        vec![
            (key(1, 2), b"written back".to_vec()),
            (key(2, 1), b"other table".to_vec())
        ]
    );
    assert_eq!(prefix_end(&[0, 0xff, 0xff]), Some(vec![1]));
    assert_eq!(prefix_end(&[0xff]), None);
    assert!(!HotBatch::default().delete_prefix(Family::Rows, &[]));
}

#[test]
fn each_family_has_its_own_slot_in_a_batch() {
    for (i, family) in Family::ALL.into_iter().enumerate() {
        assert_eq!(family.slot(), i, "{family:?}");
    }
}

#[test]
fn only_a_store_that_applied_entries_under_layout_2_needs_a_key_index_build() {
    let fresh = tempfile::tempdir().unwrap();
    let store = HotStore::open_data_dir(fresh.path()).unwrap();
    assert_eq!(
        store.get(Family::Meta, KEY_INDEX_PENDING_KEY).unwrap(),
        None
    );
    let old = tempfile::tempdir().unwrap();
    {
        let store = HotStore::open_data_dir(old.path()).unwrap();
        let mut layout_2 = HotBatch::default();
        layout_2.put(Family::Meta, LAYOUT_KEY, 2u32.to_be_bytes().to_vec());
        store
            .replace_all(Some((LogIndex(9), Term(1))), layout_2)
            .unwrap();
    }
    let store = HotStore::open_data_dir(old.path()).unwrap();
    assert!(
        store
            .get(Family::Meta, KEY_INDEX_PENDING_KEY)
            .unwrap()
            .is_some()
    );
    assert_eq!(
        store.get(Family::Meta, LAYOUT_KEY).unwrap().as_deref(),
        Some(&LAYOUT.to_be_bytes()[..])
    );
}

#[test]
fn a_layout_4_store_keeps_its_journal_horizon_when_it_gains_the_topics_family() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = HotStore::open_data_dir(dir.path()).unwrap();
        let mut layout_4 = HotBatch::default();
        layout_4.put(Family::Meta, LAYOUT_KEY, 4u32.to_be_bytes().to_vec());
        layout_4.put(
            Family::Meta,
            crate::journal::HORIZON_KEY,
            3u64.to_be_bytes().to_vec(),
        );
        store
            .replace_all(Some((LogIndex(9), Term(1))), layout_4)
            .unwrap();
    }
    let store = HotStore::open_data_dir(dir.path()).unwrap();
    assert_eq!(
        store
            .get(Family::Meta, crate::journal::HORIZON_KEY)
            .unwrap()
            .as_deref(),
        Some(&3u64.to_be_bytes()[..]),
        "the journal it kept stays readable"
    );
    assert_eq!(
        store.get(Family::Meta, LAYOUT_KEY).unwrap().as_deref(),
        Some(&5u32.to_be_bytes()[..])
    );
    assert_eq!(store.scan_prefix(Family::Topics, b"").unwrap(), Vec::new());
}

#[test]
fn a_data_dir_keeps_stream_rows_apart_and_an_older_layout_is_upgraded() {
    use crate::catalog::{TableDef, TableId, TableKind};
    let dir = tempfile::tempdir().unwrap();
    let mut stream = TableDef::example("app", "ev", TableKind::Stream);
    stream.id = TableId(7);
    let shared = TableDef::example("app", "s", TableKind::Shared);
    let key = |t: TableId| [crate::row::table_prefix(t), b"k".to_vec()].concat();
    {
        let store = HotStore::open_data_dir(dir.path()).unwrap();
        // A store as an earlier build left it: no layout mark, stream rows in `rows`.
        let mut old = HotBatch::default();
        old.put(
            Family::Catalog,
            crate::catalog::table_key("app", "ev"),
            crate::codec::encode(&stream),
        );
        old.put(Family::Rows, key(stream.id), b"stream-row-77".to_vec());
        old.put(Family::Rows, key(shared.id), b"shared-row".to_vec());
        store
            .replace_all(Some((LogIndex(3), Term(1))), old)
            .unwrap();
        assert!(store.get(Family::Meta, LAYOUT_KEY).unwrap().is_none());
    }
    let store = HotStore::open_data_dir(dir.path()).unwrap();
    assert_eq!(store.get(Family::Rows, &key(stream.id)).unwrap(), None);
    assert_eq!(
        store
            .get(Family::Streams, &key(stream.id))
            .unwrap()
            .as_deref(),
        Some(&b"stream-row-77"[..])
    );
    assert_eq!(
        store.get(Family::Rows, &key(shared.id)).unwrap().as_deref(),
        Some(&b"shared-row"[..])
    );
    assert_eq!(store.applied_index().unwrap(), Some(LogIndex(3)));
    // It kept no cold key index: one is to be built before it applies anything.
    assert!(
        store
            .get(Family::Meta, KEY_INDEX_PENDING_KEY)
            .unwrap()
            .is_some()
    );
    // The upgrade flushed: the stream's rows are in a file under `streams/`, and none
    // under `rocksdb/`.
    let holding = |sub: &str| {
        std::fs::read_dir(dir.path().join(sub))
            .unwrap()
            .flatten()
            .filter(|e| {
                std::fs::read(e.path()).is_ok_and(|b| b.windows(13).any(|w| w == b"stream-row-77"))
            })
            .count()
    };
    assert_eq!(holding("streams"), 1);
    assert_eq!(holding("rocksdb"), 0);
}

#[test]
fn a_store_of_a_newer_layout_is_refused_and_left_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let newer = (LAYOUT + 1).to_be_bytes().to_vec();
    {
        let store = HotStore::open_data_dir(dir.path()).unwrap();
        let mut batch = HotBatch::default();
        batch.put(Family::Meta, LAYOUT_KEY, newer.clone());
        store
            .replace_all(Some((LogIndex(3), Term(1))), batch)
            .unwrap();
    }
    let e = HotStore::open_data_dir(dir.path()).expect_err("a newer layout");
    assert!(e.to_string().contains("newer build"), "{e}");
    // Untouched: the newer build still opens it as it left it.
    let path = dir.path().join("rocksdb");
    let families = rocksdb::DB::list_cf(&rocksdb::Options::default(), &path).unwrap();
    let db = rocksdb::DB::open_cf(&rocksdb::Options::default(), &path, families).unwrap();
    let meta = db.cf_handle(Family::Meta.name()).unwrap();
    assert_eq!(db.get_cf(&meta, LAYOUT_KEY).unwrap(), Some(newer));
}
