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
//! - A snapshot is every key of the store with the applied log id and membership; installing
//!   one replaces the store atomically and flushes it.

use std::io::Cursor;
use std::sync::{Arc, Mutex};

use folddb_log::{LogIndex, Term};
use folddb_materializer::{ChangeSet, Family, Fold, HotBatch, HotStore};
use openraft::storage::RaftStateMachine;
use openraft::{
    AnyError, BasicNode, Entry, EntryPayload, LogId, RaftSnapshotBuilder, Snapshot, SnapshotMeta,
    StorageError, StorageIOError, StoredMembership,
};

use crate::codec;
use crate::error::{Error, Result, blocking};
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

/// The last snapshot built or installed.
type CurrentSnapshot = Arc<Mutex<Option<(SnapshotMeta<u64, BasicNode>, Vec<u8>)>>>;

/// The raft state machine. Cheap to clone; clones share the store.
/// Change sets kept for receivers that fall behind; past that a receiver is told how many it
/// missed (never silently) and resynchronises from the hot tier by `_seq`.
pub const CHANGE_FEED_CAPACITY: usize = 4096;

/// The row changes of every applied entry, published once they are in the hot tier.
pub type ChangeFeed = tokio::sync::broadcast::Sender<Arc<ChangeSet>>;

pub struct StateMachine<F: Fold> {
    store: Arc<HotStore>,
    fold: Arc<F>,
    current: CurrentSnapshot,
    feed: ChangeFeed,
}

impl<F: Fold> Clone for StateMachine<F> {
    fn clone(&self) -> Self {
        StateMachine {
            store: self.store.clone(),
            fold: self.fold.clone(),
            current: self.current.clone(),
            feed: self.feed.clone(),
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

fn family_code(family: Family) -> u8 {
    match family {
        Family::Rows => 0,
        Family::Catalog => 1,
        Family::Meta => 2,
        Family::Streams => 3,
        Family::ColdKeys => 4,
        Family::Journal => 5,
    }
}

fn family_of(code: u8) -> Option<Family> {
    Family::ALL.into_iter().find(|f| family_code(*f) == code)
}

impl<F: Fold> StateMachine<F> {
    pub fn new(store: Arc<HotStore>, fold: Arc<F>) -> Self {
        StateMachine {
            store,
            fold,
            current: Arc::default(),
            feed: tokio::sync::broadcast::channel(CHANGE_FEED_CAPACITY).0,
        }
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
        let store = self.store.clone();
        let (applied, membership, bytes) = blocking(move || {
            let (applied, membership) = Self::applied_state_now(&store)?;
            let dump: Vec<codec::SnapshotKey> = store
                .dump()?
                .into_iter()
                .map(|(f, k, v)| (family_code(f), k, v))
                .collect();
            Ok((applied, membership, codec::encode_dump(&dump)))
        })
        .await
        .map_err(snapshot_err)?;
        let meta = SnapshotMeta {
            last_log_id: applied,
            last_membership: membership,
            snapshot_id: match applied {
                Some(id) => format!("{}-{}", id.leader_id.term, id.index),
                None => "empty".to_owned(),
            },
        };
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((meta.clone(), bytes.clone()));
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
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
                if !events.is_empty() && feed.receiver_count() > 0 {
                    // Only receivers that exist now get it; none is an error.
                    let _ = feed.send(Arc::new(ChangeSet { index, events }));
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
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<u64>> {
        Ok(Box::default())
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<u64>> {
        let bytes = snapshot.into_inner();
        let store = self.store.clone();
        let (applied, copy) = (meta.last_log_id, bytes.clone());
        blocking(move || {
            let mut contents = HotBatch::default();
            for (code, k, v) in codec::decode_dump(&copy)? {
                let family = family_of(code).ok_or_else(|| Error::BadSnapshot {
                    reason: format!("unknown column family code {code}"),
                })?;
                contents.put(family, k, v);
            }
            let applied = applied.map(|id| (LogIndex(id.index), Term(id.leader_id.term)));
            Ok(store.replace_all(applied, contents)?)
        })
        .await
        .map_err(snapshot_err)?;
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Some((meta.clone(), bytes));
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<u64>> {
        let current = self
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        Ok(current.map(|(meta, bytes)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        }))
    }
}
