//! openraft's storage conformance suite against [`LogStore`] on a real `folddb-log`
//! directory and [`StateMachine`] on a real hot tier, plus what the suite does not check:
//! normal entries through the fold, replay after restart, snapshots carrying rows.
//!
//! The state machine is the real [`StateMachine`] over a RocksDB hot tier; the materializer's
//! event fold does not exist yet, so a recording fold (test code) stands in for it.

use std::sync::Arc;

use folddb_log::{LogConfig, MemStorage};
use folddb_materializer::{Family, HotStore};
use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{
    AnyError, Entry, EntryPayload, RaftLogReader, RaftSnapshotBuilder, Snapshot, StorageError,
    StorageIOError, Vote,
};

use crate::{Command, CommandResult, LogStore, StateMachine, TypeConfig, codec};
use folddb_materializer::StoreCommands as RecordFold;

fn small() -> LogConfig {
    LogConfig {
        segment_size_bytes: 64 << 10,
        ..LogConfig::default()
    }
}

type TestSm = StateMachine<RecordFold>;

fn open_sm(dir: &std::path::Path) -> TestSm {
    let store = HotStore::open(dir.join("rocksdb")).unwrap();
    StateMachine::new(Arc::new(store), Arc::new(RecordFold), dir.join("snapshots")).unwrap()
}

/// The bytes of a snapshot's file.
async fn bytes_of(mut snap: Snapshot<TypeConfig>) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    snap.snapshot
        .seek(std::io::SeekFrom::Start(0))
        .await
        .unwrap();
    let mut bytes = Vec::new();
    snap.snapshot.read_to_end(&mut bytes).await.unwrap();
    bytes
}

/// Sends `bytes` to `target` as openraft does (into a file it asks for), then installs them.
async fn install(
    target: &mut TestSm,
    meta: &openraft::SnapshotMeta<u64, openraft::BasicNode>,
    bytes: &[u8],
) -> Result<(), StorageError<u64>> {
    use tokio::io::AsyncWriteExt;
    let mut file = target.begin_receiving_snapshot().await?;
    file.write_all(bytes).await.unwrap();
    file.shutdown().await.unwrap();
    target.install_snapshot(meta, file).await
}

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, TestSm, tempfile::TempDir> for Builder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, TestSm), StorageError<u64>> {
        let dir = tempfile::tempdir().map_err(|e| StorageIOError::write_logs(AnyError::new(&e)))?;
        let store = LogStore::open(dir.path().join("log"), small())
            .await
            .map_err(|e| StorageIOError::write_logs(AnyError::new(&e)))?;
        let sm = open_sm(dir.path());
        Ok((dir, store, sm))
    }
}

type S = Suite<TypeConfig, LogStore, TestSm, Builder, tempfile::TempDir>;

/// Runs one suite case on a fresh store, naming it when it fails.
fn case<F, Fu>(name: &str, f: F)
where
    F: Fn(LogStore, TestSm) -> Fu,
    Fu: std::future::Future<Output = Result<(), StorageError<u64>>>,
{
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (_dir, store, sm) = Builder.build().await.unwrap();
        if let Err(e) = f(store, sm).await {
            panic!("conformance case {name} failed: {e}");
        }
    });
}

macro_rules! suite_cases {
    ($($name:ident),* $(,)?) => {
        $( case(stringify!($name), S::$name); )*
    };
}

/// openraft's own list (`Suite::test_store` of 0.9.25), case by case so that a failure names
/// its case. Eight cases sleep a second each after purging (the suite allows purge to finish
/// in the background), so this takes about eight seconds.
#[test]
fn openraft_storage_conformance_suite() {
    suite_cases!(
        last_membership_in_log_initial,
        last_membership_in_log,
        last_membership_in_log_multi_step,
        get_membership_initial,
        get_membership_from_log_and_empty_sm,
        get_membership_from_empty_log_and_sm,
        get_membership_from_log_le_sm_last_applied,
        get_membership_from_log_gt_sm_last_applied_1,
        get_membership_from_log_gt_sm_last_applied_2,
        get_initial_state_without_init,
        get_initial_state_membership_from_log_and_sm,
        get_initial_state_with_state,
        get_initial_state_last_log_gt_sm,
        get_initial_state_last_log_lt_sm,
        get_initial_state_log_ids,
        get_initial_state_re_apply_committed,
        save_vote,
        get_log_entries,
        limited_get_log_entries,
        try_get_log_entry,
        initial_logs,
        get_log_state,
        get_log_id,
        last_id_in_log,
        last_applied_state,
        purge_logs_upto_0,
        purge_logs_upto_5,
        purge_logs_upto_20,
        delete_logs_since_11,
        delete_logs_since_0,
        append_to_log,
        snapshot_meta,
        apply_single,
        apply_multiple,
    );
    // The suite's last case moves a snapshot between two stores.
    let rt = tokio::runtime::Runtime::new().unwrap();
    if let Err(e) = rt.block_on(S::transfer_snapshot(&Builder)) {
        panic!("conformance case transfer_snapshot failed: {e}");
    }
}

fn entry(term: u64, index: u64, bytes: &[u8]) -> Entry<TypeConfig> {
    Entry {
        log_id: codec::log_id(term, index),
        payload: EntryPayload::Normal(Command(bytes.to_vec())),
    }
}

/// Appends through the raft interface and waits for the durability callback.
async fn append_durably(store: &mut LogStore, entries: Vec<Entry<TypeConfig>>) {
    store.blocking_append(entries).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut store = LogStore::open(dir.path(), small()).await.unwrap();
        append_durably(
            &mut store,
            (1..=50).map(|i| entry(1 + i / 20, i, b"x")).collect(),
        )
        .await;
        store.save_vote(&Vote::new(3, 2)).await.unwrap();
        store.truncate(codec::log_id(2, 41)).await.unwrap();
        store.purge(codec::log_id(1, 10)).await.unwrap();
    }
    let mut store = LogStore::open(dir.path(), small()).await.unwrap();
    assert_eq!(store.read_vote().await.unwrap(), Some(Vote::new(3, 2)));
    let state = store.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(codec::log_id(1, 10)));
    assert_eq!(state.last_log_id, Some(codec::log_id(3, 40)));
    let got = store.try_get_log_entries(0..100).await.unwrap();
    let indices: Vec<u64> = got.iter().map(|e| e.log_id.index).collect();
    assert_eq!(indices, (11..=40).collect::<Vec<_>>());
    assert_eq!(got[0], entry(1, 11, b"x"));
}

/// Reads served from the memory of recent entries equal reads of the log itself, across
/// truncation, purge and more entries than the memory keeps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recent_entries_read_as_the_log_holds_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = LogStore::open(dir.path(), small()).await.unwrap();
    let body = |i: u64| format!("entry {i}").into_bytes();
    append_durably(
        &mut store,
        (0..1500).map(|i| entry(1, i, &body(i))).collect(),
    )
    .await;
    store.truncate(codec::log_id(1, 1400)).await.unwrap();
    append_durably(
        &mut store,
        (1400..1450).map(|i| entry(2, i, b"second")).collect(),
    )
    .await;
    store.purge(codec::log_id(1, 1420)).await.unwrap();
    let mut reopened = LogStore::open(dir.path(), small()).await.unwrap();
    for range in [
        0..1450,
        300..1100,
        1000..1450,
        1399..1403,
        1420..1422,
        1421..1450,
    ] {
        let from_memory = store.try_get_log_entries(range.clone()).await.unwrap();
        let from_disk = reopened.try_get_log_entries(range.clone()).await.unwrap();
        assert_eq!(from_memory, from_disk, "entries {range:?}");
    }
    let tail = store.try_get_log_entries(1421..1450).await.unwrap();
    assert_eq!(tail.len(), 29);
    assert!(
        tail.iter()
            .all(|e| e == &entry(2, e.log_id.index, b"second"))
    );
}

/// One append to a member carries about [`crate::log_store::APPEND_BUDGET`] bytes of entries (at least
/// one entry), read from memory or from the log alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_carries_a_bounded_number_of_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = LogStore::open(dir.path(), LogConfig::default())
        .await
        .unwrap();
    let quarter = vec![7u8; crate::log_store::APPEND_BUDGET / 4];
    let huge = vec![8u8; crate::log_store::APPEND_BUDGET * 2];
    let mut entries: Vec<_> = (0..20).map(|i| entry(1, i, &quarter)).collect();
    entries.push(entry(1, 20, &huge));
    entries.extend((21..25).map(|i| entry(1, i, b"small")));
    append_durably(&mut store, entries).await;
    let mut reopened = LogStore::open(dir.path(), LogConfig::default())
        .await
        .unwrap();
    for reader in [&mut store, &mut reopened] {
        let got = reader.limited_get_log_entries(0, 25).await.unwrap();
        let indices: Vec<u64> = got.iter().map(|e| e.log_id.index).collect();
        assert_eq!(indices, [0, 1, 2, 3], "up to the budget");
        let got = reader.limited_get_log_entries(20, 25).await.unwrap();
        assert_eq!(got.len(), 1, "a larger entry goes alone");
        let got = reader.limited_get_log_entries(21, 25).await.unwrap();
        assert_eq!(got.len(), 4);
        assert_eq!(reader.try_get_log_entries(0..25).await.unwrap().len(), 25);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_vote_and_entries_are_errors() {
    let storage = MemStorage::new();
    let dir = std::path::Path::new("/raft");
    let mut store = LogStore::open_with(Arc::new(storage.clone()), dir, small()).unwrap();
    store.save_vote(&Vote::new(1, 1)).await.unwrap();
    let vote_path = dir.join(crate::log_store::VOTE_FILE);
    let mut bytes = storage.file_bytes(&vote_path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xFF;
    storage.put_file(&vote_path, bytes);
    assert!(store.read_vote().await.is_err());

    // A frame whose checksum is right but whose payload is not an entry.
    store
        .log()
        .append(&[folddb_log::Entry {
            index: folddb_log::LogIndex(1),
            term: folddb_log::Term(1),
            payload: vec![9, 9, 9],
        }])
        .unwrap();
    let err = store.try_get_log_entries(1..2).await.unwrap_err();
    assert!(err.to_string().contains("does not decode"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn normal_entries_fold_replay_and_travel_in_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let entries: Vec<Entry<TypeConfig>> = (1..=5)
        .map(|i| entry(2, i, &vec![7u8; i as usize]))
        .collect();
    {
        let mut sm = open_sm(dir.path());
        let results = sm.apply(entries.clone()).await.unwrap();
        let lens: Vec<CommandResult> = (1..=5u64)
            .map(|i| CommandResult(i.to_be_bytes().to_vec()))
            .collect();
        assert_eq!(results, lens, "the fold's answers come back in order");
        // Replaying what is applied already changes nothing.
        sm.apply(entries[2..].to_vec()).await.unwrap();
        let (applied, _) = sm.applied_state().await.unwrap();
        assert_eq!(applied, Some(codec::log_id(2, 5)));
    }
    let mut sm = open_sm(dir.path());
    let (applied, _) = sm.applied_state().await.unwrap();
    assert_eq!(
        applied,
        Some(codec::log_id(2, 5)),
        "applied state survives reopen (flush on close)"
    );

    let snap = sm
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    let meta = snap.meta.clone();
    let bytes = bytes_of(snap).await;
    let other = tempfile::tempdir().unwrap();
    let target_store = Arc::new(HotStore::open(other.path().join("rocksdb")).unwrap());
    let mut target = StateMachine::new(
        target_store.clone(),
        Arc::new(RecordFold),
        other.path().join("snapshots"),
    )
    .unwrap();
    target.apply([entry(1, 1, b"stale")]).await.unwrap();
    install(&mut target, &meta, &bytes).await.unwrap();
    let (applied, _) = target.applied_state().await.unwrap();
    assert_eq!(applied, Some(codec::log_id(2, 5)));
    // Exactly the source's rows, and nothing of what the target held before.
    let rows = target_store.scan_prefix(Family::Rows, &[]).unwrap();
    let expected: Vec<(Vec<u8>, Vec<u8>)> = (1..=5u64)
        .map(|i| (i.to_be_bytes().to_vec(), vec![7u8; i as usize]))
        .collect();
    assert_eq!(rows, expected);
    // The installed file is the target's current snapshot, to send on: the same bytes.
    let got = target.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!(got.meta.last_log_id, Some(codec::log_id(2, 5)));
    assert_eq!(bytes_of(got).await, bytes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_snapshot_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut sm = open_sm(dir.path());
    sm.apply([entry(1, 1, b"keep")]).await.unwrap();
    let snap = sm
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    let meta = snap.meta.clone();
    let bytes = bytes_of(snap).await;
    let other_dir = tempfile::tempdir().unwrap();
    let mut other = open_sm(other_dir.path());
    other.apply([entry(1, 1, b"other")]).await.unwrap();
    let mut damaged: Vec<Vec<u8>> = (0..bytes.len())
        .map(|i| {
            let mut b = bytes.clone();
            b[i] ^= 0x10;
            b
        })
        .collect();
    damaged.push(bytes[..bytes.len() / 2].to_vec());
    damaged.push([bytes.as_slice(), b"x"].concat());
    for b in damaged {
        let err = install(&mut other, &meta, &b).await;
        assert!(err.is_err(), "a damaged file is refused");
        let (applied, _) = other.applied_state().await.unwrap();
        assert_eq!(applied, Some(codec::log_id(1, 1)), "and changes nothing");
    }
    install(&mut other, &meta, &bytes).await.unwrap();
}
