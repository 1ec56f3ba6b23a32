//! [`StateMachine`]: openraft's `RaftStateMachine` over the materializer's hot tier.
//!
//! Each entry is folded into one atomic `HotStore` batch together with its applied mark:
//! normal entries through the materializer's [`Fold`], membership entries as the stored
//! membership (`raft_membership` in the `meta` family), blank entries as no changes.
//!
//! # Correctness
//!
//! - Apply is a pure function of (state, entry); the store skips an entry at or below its
//!   applied mark, so replaying the log after a crash changes nothing already applied.
//! - An error from the fold is the environment (the store failing, an entry that does not
//!   decode), never an outcome: it goes back to openraft, whose core stops with the entry
//!   unapplied; the node reports why (`Node::status`) and a restart retries the entry.
//! - A snapshot is a file of every key of the store as of one moment, with the applied log
//!   id and membership of that moment ([`crate::snapshot`]); installing one checks the whole
//!   file first, then replaces the store (an install cut off is discarded at the next start).

use std::path::PathBuf;
use std::sync::Arc;

use folddb_log::{LogIndex, Term};
use folddb_materializer::{ChangeSet, Family, Fold, HotBatch, HotStore};
use openraft::storage::RaftStateMachine;
use openraft::{
    AnyError, BasicNode, Entry, EntryPayload, LogId, RaftSnapshotBuilder, Snapshot, SnapshotMeta,
    StorageError, StorageIOError, StoredMembership,
};

use crate::codec;
use crate::error::{Error, Result, blocking};
use crate::snapshot::SnapshotDir;
use crate::types::{CommandResult, TypeConfig};

/// Key of the stored membership in the `meta` family.
pub const MEMBERSHIP_KEY: &[u8] = b"raft_membership";

type Membership = StoredMembership<u64, BasicNode>;

/// Folds one raft entry into `store` (a normal entry through `fold`; a membership entry
/// as the membership), atomically with the applied mark: what applying does, and what
/// `folddb log replay` does with entries read from a log directory.
pub fn apply_entry<F: Fold>(
    store: &HotStore,
    fold: &F,
    e: &Entry<TypeConfig>,
) -> Result<(CommandResult, LogIndex, Vec<folddb_materializer::RowEvent>)> {
    let (index, term) = (LogIndex(e.log_id.index), Term(e.log_id.leader_id.term));
    let mut changes = HotBatch::default();
    let result = match &e.payload {
        EntryPayload::Blank => CommandResult::default(),
        EntryPayload::Normal(cmd) => {
            CommandResult(fold.fold(store, index, &cmd.0, &mut changes)?)
        }
        EntryPayload::Membership(m) => {
            let stored = Membership::new(Some(e.log_id), m.clone());
            changes.put(
                Family::Meta,
                MEMBERSHIP_KEY,
                codec::encode_membership(&stored),
            );
            CommandResult::default()
        }
    };
    let events = changes.take_events();
    store.apply(index, term, changes)?;
    Ok((result, index, events))
}

/// The raft state machine. Cheap to clone; clones share the store.
/// Change sets kept for receivers that fall behind; past that a receiver is told how many it
/// missed (never silently) and resynchronises from the hot tier by `_seq`.
pub const CHANGE_FEED_CAPACITY: usize = 4096;

/// The row changes of every applied entry, published once they are in the hot tier.
pub type ChangeFeed = tokio::sync::broadcast::Sender<Arc<ChangeSet>>;

pub struct StateMachine<F: Fold> {
    store: Arc<HotStore>,
    fold: Arc<F>,
    snapshots: Arc<SnapshotDir>,
    feed: ChangeFeed,
    files: Option<Arc<crate::files::ColdFiles>>,
}

impl<F: Fold> Clone for StateMachine<F> {
    fn clone(&self) -> Self {
        StateMachine {
            store: self.store.clone(),
            fold: self.fold.clone(),
            snapshots: self.snapshots.clone(),
            feed: self.feed.clone(),
            files: self.files.clone(),
        }
    }
}

impl<F: Fold> std::fmt::Debug for StateMachine<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateMachine")
            .field("store", &self.store)
            .finish()
    }
}

fn sm_err(e: Error) -> StorageError<u64> {
    StorageIOError::write_state_machine(AnyError::new(&e)).into()
}

fn snapshot_err(e: Error) -> StorageError<u64> {
    StorageIOError::read_snapshot(None, AnyError::new(&e)).into()
}

impl<F: Fold> StateMachine<F> {
    /// A state machine over `store`, its snapshot files in `snapshot_dir`: the newest one an
    /// earlier run left is current again, unless it is ahead of the store (whose hot tier
    /// was rebuilt from the log, say), which raft does not allow.
    pub fn new(store: Arc<HotStore>, fold: Arc<F>, snapshot_dir: PathBuf) -> Result<Self> {
        let applied = store.applied_index()?.map(|i| i.0);
        Ok(StateMachine {
            store,
            fold,
            snapshots: Arc::new(SnapshotDir::open(snapshot_dir, applied)?),
            feed: tokio::sync::broadcast::channel(CHANGE_FEED_CAPACITY).0,
            files: None,
        })
    }

    /// The same, fetching the node-local cold files an installed snapshot lists from the
    /// members that hold them.
    pub fn with_files(mut self, files: Arc<crate::files::ColdFiles>) -> Self {
        self.files = Some(files);
        self
    }

    /// The feed of row changes, in log order, each published after its entry is applied.
    pub fn feed(&self) -> &ChangeFeed {
        &self.feed
    }

    fn applied_state_now(store: &HotStore) -> Result<(Option<LogId<u64>>, Membership)> {
        let applied = store.applied()?.map(|(i, t)| codec::log_id(t.0, i.0));
        let membership = match store.get(Family::Meta, MEMBERSHIP_KEY)? {
            Some(bytes) => codec::decode_membership(&bytes)?,
            None => Membership::default(),
        };
        Ok((applied, membership))
    }
}

impl<F: Fold> RaftSnapshotBuilder<TypeConfig> for StateMachine<F> {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<u64>> {
        let (store, dir) = (self.store.clone(), self.snapshots.clone());
        let (meta, file) = blocking(move || {
            dir.build(&store, |(applied, membership)| {
                let last_log_id = applied.map(|(i, t)| codec::log_id(t.0, i.0));
                let last_membership = match membership {
                    Some(bytes) => codec::decode_membership(&bytes)?,
                    None => Membership::default(),
                };
                Ok(SnapshotMeta {
                    last_log_id,
                    last_membership,
                    snapshot_id: match last_log_id {
                        Some(id) => format!("{}-{}", id.leader_id.term, id.index),
                        None => "empty".to_owned(),
                    },
                })
            })
        })
        .await
        .map_err(snapshot_err)?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(tokio::fs::File::from_std(file)),
        })
    }
}

impl<F: Fold> StateMachine<F> {
    async fn current_snapshot(&self) -> Result<Option<Snapshot<TypeConfig>>> {
        let dir = self.snapshots.clone();
        let current = blocking(move || dir.open_current()).await?;
        Ok(current.map(|(file, meta)| Snapshot {
            meta,
            snapshot: Box::new(tokio::fs::File::from_std(file)),
        }))
    }
}

impl<F: Fold> RaftStateMachine<TypeConfig> for StateMachine<F> {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<u64>>, Membership), StorageError<u64>> {
        let store = self.store.clone();
        blocking(move || Self::applied_state_now(&store))
            .await
            .map_err(sm_err)
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResult>, StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>>,
    {
        let entries: Vec<Entry<TypeConfig>> = entries.into_iter().collect();
        let (store, fold, feed) = (self.store.clone(), self.fold.clone(), self.feed.clone());
        blocking(move || {
            let mut results = Vec::with_capacity(entries.len());
            for e in entries {
                let (result, index, events) = apply_entry(&store, fold.as_ref(), &e)?;
                // Every applied entry, with or without row changes: those waiting on what
                // is applied (log tails of DDL, topic streams and long-polls, which claims,
                // acks and topic DDL concern) learn of it too.
                if feed.receiver_count() > 0 {
                    // Only receivers that exist now get it; none is an error.
                    let _ = feed.send(Arc::new(ChangeSet {
                        index,
                        events,
                        replaced: false,
                    }));
                }
                results.push(result);
            }
            Ok(results)
        })
        .await
        .map_err(sm_err)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<tokio::fs::File>, StorageError<u64>> {
        let dir = self.snapshots.clone();
        let file = blocking(move || dir.receive())
            .await
            .map_err(|e| StorageIOError::write_snapshot(None, AnyError::new(&e)))?;
        Ok(Box::new(tokio::fs::File::from_std(file)))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, BasicNode>,
        snapshot: Box<tokio::fs::File>,
    ) -> Result<(), StorageError<u64>> {
        let file = snapshot.into_std().await;
        let (store, dir, meta) = (self.store.clone(), self.snapshots.clone(), meta.clone());
        let index = meta.last_log_id.map_or(0, |id| id.index);
        blocking(move || dir.install(&store, file, meta))
            .await
            .map_err(snapshot_err)?;
        // The snapshot's manifests of node-local storages name files this node may lack: it
        // fetches them in the background (a restart starts over), and each later commit
        // holds its own before it is recorded.
        if let Some(files) = &self.files {
            tokio::spawn(files.clone().hold_listed());
        }
        // Live queries and tails on this node catch up from the journal the snapshot
        // brought: the changes it folded in were never applied here one by one.
        if self.feed.receiver_count() > 0 {
            let _ = self.feed.send(Arc::new(ChangeSet {
                index: LogIndex(index),
                events: Vec::new(),
                replaced: true,
            }));
        }
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<u64>> {
        self.current_snapshot().await.map_err(snapshot_err)
    }
}
