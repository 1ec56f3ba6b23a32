//! openraft's storage conformance suite against [`LogStore`] on a real `folddb-log`
//! directory, plus restart checks the suite does not make.
//!
//! The suite also needs a state machine; until the materializer's lands, a small in-memory
//! one here stands in (test code only), so every suite case exercises our log store.

use std::io::Cursor;
use std::sync::{Arc, Mutex};

use folddb_log::{LogConfig, MemStorage};
use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{
    AnyError, BasicNode, Entry, EntryPayload, LogId, RaftLogReader, RaftSnapshotBuilder, Snapshot,
    SnapshotMeta, StorageError, StorageIOError, StoredMembership, Vote,
};
use serde::{Deserialize, Serialize};

use crate::{Command, CommandResult, LogStore, TypeConfig, codec};

fn small() -> LogConfig {
    LogConfig {
        segment_size_bytes: 64 << 10,
        ..LogConfig::default()
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct SmData {
    last_applied: Option<LogId<u64>>,
    membership: StoredMembership<u64, BasicNode>,
    applied: Vec<Vec<u8>>,
}

/// The last snapshot built or installed: its metadata and bytes.
type StoredSnapshot = (SnapshotMeta<u64, BasicNode>, Vec<u8>);

#[derive(Debug, Clone, Default)]
struct TestSm {
    data: Arc<Mutex<SmData>>,
    snapshot: Arc<Mutex<Option<StoredSnapshot>>>,
}

fn sm_err(e: impl std::error::Error + 'static) -> StorageError<u64> {
    StorageIOError::read_state_machine(AnyError::new(&e)).into()
}

impl RaftSnapshotBuilder<TypeConfig> for TestSm {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<u64>> {
        let data = self.data.lock().unwrap().clone();
        let bytes = serde_json::to_vec(&data).map_err(sm_err)?;
        let meta = SnapshotMeta {
            last_log_id: data.last_applied,
            last_membership: data.membership.clone(),
            snapshot_id: format!("{:?}", data.last_applied),
        };
        *self.snapshot.lock().unwrap() = Some((meta.clone(), bytes.clone()));
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for TestSm {
    type SnapshotBuilder = TestSm;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<u64>>, StoredMembership<u64, BasicNode>), StorageError<u64>> {
        let d = self.data.lock().unwrap();
        Ok((d.last_applied, d.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResult>, StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>>,
    {
        let mut d = self.data.lock().unwrap();
        let mut out = Vec::new();
        for e in entries {
            d.last_applied = Some(e.log_id);
            match e.payload {
                EntryPayload::Blank => {}
                EntryPayload::Normal(Command(bytes)) => d.applied.push(bytes),
                EntryPayload::Membership(m) => {
                    d.membership = StoredMembership::new(Some(e.log_id), m);
                }
            }
            out.push(CommandResult::default());
        }
        Ok(out)
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<u64>> {
        Ok(Box::default())
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<u64>> {
        let bytes = snapshot.into_inner();
        *self.data.lock().unwrap() = serde_json::from_slice(&bytes).map_err(sm_err)?;
        *self.snapshot.lock().unwrap() = Some((meta.clone(), bytes));
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<u64>> {
        Ok(self
            .snapshot
            .lock()
            .unwrap()
            .clone()
            .map(|(meta, bytes)| Snapshot {
                meta,
                snapshot: Box::new(Cursor::new(bytes)),
            }))
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }
}

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, TestSm, tempfile::TempDir> for Builder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, TestSm), StorageError<u64>> {
        let dir = tempfile::tempdir().map_err(|e| StorageIOError::write_logs(AnyError::new(&e)))?;
        let store = LogStore::open(dir.path(), small())
            .await
            .map_err(|e| StorageIOError::write_logs(AnyError::new(&e)))?;
        Ok((dir, store, TestSm::default()))
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
