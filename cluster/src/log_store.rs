//! [`LogStore`]: openraft's `RaftLogStorage` over `folddb-log`.
//!
//! Each raft entry is one log frame: the frame carries term and index (which make up the log
//! id, see `types.rs`) and the payload is the entry's [`crate::codec`] encoding. The vote is
//! a metadata file in the same directory, replaced atomically.
//!
//! # Correctness
//!
//! - `append` returns once the entries are readable; its callback fires once they are
//!   durable (the log's group commit shares one `fdatasync` among concurrent appends).
//! - Write I/O is never reordered: `save_vote` first waits until every appended entry is
//!   durable, so a vote is never on disk ahead of entries appended before it. Truncation and
//!   purge are durable when they return.
//! - Logs have no holes: `folddb-log` refuses any append that does not continue the log.
//!   Entries at or below the purge marker are dropped on arrival, as already purged.
//! - The newest entries appended are also kept in memory, as openraft handed them over
//!   ([`Recent`]): applying an entry reads it back right after it is appended, and serving
//!   that read from memory spares a blocking read and a decode. The memory only ever holds
//!   entries the log holds: it is filled after an append succeeds and emptied of what a
//!   truncation or purge removes before the log changes.

use std::collections::VecDeque;
use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use folddb_log::{FsStorage, Log, LogConfig, LogIndex, Storage, Term, meta};
use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{
    AnyError, Entry, LogId, LogState, OptionalSend, RaftLogReader, StorageError, StorageIOError,
    Vote,
};

use crate::codec;
use crate::error::{Error, Result, blocking};
use crate::types::TypeConfig;

/// Name of the vote file in the log directory.
pub const VOTE_FILE: &str = "vote.meta";

/// The raft log store. Cheap to clone; clones share the log.
#[derive(Debug, Clone)]
pub struct LogStore {
    log: Log,
    storage: Arc<dyn Storage>,
    dir: PathBuf,
    recent: Arc<Mutex<Recent>>,
}

/// The newest entries appended, consecutive, as openraft handed them over.
#[derive(Debug, Default)]
struct Recent {
    entries: VecDeque<(Entry<TypeConfig>, usize)>,
    bytes: usize,
}

impl Recent {
    /// Entries kept at most.
    const MAX_ENTRIES: usize = 1024;
    /// Encoded bytes kept at most.
    const MAX_BYTES: usize = 16 << 20;

    fn first(&self) -> Option<u64> {
        self.entries.front().map(|(e, _)| e.log_id.index)
    }

    fn push(&mut self, entry: Entry<TypeConfig>, bytes: usize) {
        let next = self.entries.back().map(|(e, _)| e.log_id.index + 1);
        if next.is_some_and(|n| n != entry.log_id.index) {
            self.entries.clear();
            self.bytes = 0;
        }
        self.entries.push_back((entry, bytes));
        self.bytes += bytes;
        while self.entries.len() > Self::MAX_ENTRIES || self.bytes > Self::MAX_BYTES {
            match self.entries.pop_front() {
                Some((_, b)) => self.bytes -= b,
                None => break,
            }
        }
    }

    /// Entries `start..end`, if every one of them is here, stopping after the first that
    /// reaches `budget` encoded bytes.
    fn get(&self, start: u64, end: u64, budget: usize) -> Option<Vec<Entry<TypeConfig>>> {
        let first = self.first()?;
        let skip = usize::try_from(start.checked_sub(first)?).ok()?;
        let n = usize::try_from(end - start).ok()?;
        (skip + n <= self.entries.len()).then(|| {
            within(
                self.entries
                    .iter()
                    .skip(skip)
                    .take(n)
                    .map(|(e, b)| (e.clone(), *b)),
                budget,
            )
        })
    }

    /// Forgets the entries `keep` rejects.
    fn retain(&mut self, keep: impl Fn(u64) -> bool) {
        self.entries.retain(|(e, _)| keep(e.log_id.index));
        self.bytes = self.entries.iter().map(|(_, b)| b).sum();
    }
}

/// The encoded bytes of entries one append to a member carries, unless its first entry alone
/// is larger: openraft gives an append one heartbeat interval, and a member catching up on
/// large entries would otherwise time out on every batch, never catch up, and call
/// elections.
pub const APPEND_BUDGET: usize = 1 << 20;

/// The entries of `sized` (entry, encoded bytes) up to and including the first that brings
/// their bytes to `budget`: at least one.
fn within(
    sized: impl Iterator<Item = (Entry<TypeConfig>, usize)>,
    budget: usize,
) -> Vec<Entry<TypeConfig>> {
    let mut total = 0;
    let mut out = Vec::new();
    for (entry, bytes) in sized {
        if total >= budget {
            break;
        }
        total += bytes;
        out.push(entry);
    }
    out
}

fn read_err(e: Error) -> StorageError<u64> {
    StorageIOError::read_logs(AnyError::new(&e)).into()
}

fn write_err(e: Error) -> StorageError<u64> {
    StorageIOError::write_logs(AnyError::new(&e)).into()
}

impl LogStore {
    /// Opens (or creates) the raft log in `dir` on the real filesystem.
    pub async fn open(dir: impl Into<PathBuf>, config: LogConfig) -> Result<LogStore> {
        let dir = dir.into();
        blocking(move || Self::open_with(Arc::new(FsStorage), &dir, config)).await
    }

    /// Opens (or creates) the raft log in `dir` on `storage`. Blocks.
    pub fn open_with(storage: Arc<dyn Storage>, dir: &Path, config: LogConfig) -> Result<Self> {
        let log = Log::open_with(storage.clone(), dir, config)?;
        if log.purged().is_none() {
            check_head(&log)?;
        }
        Ok(LogStore {
            log,
            storage,
            dir: dir.to_path_buf(),
            recent: Arc::default(),
        })
    }

    fn recent(&self) -> MutexGuard<'_, Recent> {
        // Each change to the memory completes under the lock or leaves it consistent.
        self.recent.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The underlying log, for tailing and tooling.
    pub fn log(&self) -> &Log {
        &self.log
    }

    fn log_state(&self) -> LogState<TypeConfig> {
        let purged = self.log.purged().map(|(i, t)| codec::log_id(t.0, i.0));
        let last = match (self.log.last_index(), self.log.last_term()) {
            (Some(i), Some(t)) if purged.is_none_or(|p| i.0 > p.index) => {
                Some(codec::log_id(t.0, i.0))
            }
            _ => purged,
        };
        LogState {
            last_purged_log_id: purged,
            last_log_id: last,
        }
    }
}

/// Raft's log starts at index 0: entries before the first segment, with no purge marker to
/// say they were purged, are missing (a sealed segment was removed).
pub(crate) fn check_head(log: &Log) -> Result<()> {
    match log.first_segment() {
        Some((segment, first)) if first.0 > 0 => Err(folddb_log::Error::MissingHead {
            segment,
            first,
            expected: LogIndex(0),
        }
        .into()),
        _ => Ok(()),
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<u64>> {
        self.entries_within(range, usize::MAX).await
    }

    /// What one append to a member carries: [`APPEND_BUDGET`].
    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<u64>> {
        self.entries_within(start..end, APPEND_BUDGET).await
    }
}

impl LogStore {
    /// The entries of `range` up to `budget` encoded bytes (at least one when any is there).
    async fn entries_within<RB: RangeBounds<u64>>(
        &self,
        range: RB,
        budget: usize,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<u64>> {
        let (Some(first), Some(last)) = (self.log.first_index(), self.log.last_index()) else {
            return Ok(Vec::new());
        };
        let start = match range.start_bound() {
            Bound::Included(s) => *s,
            Bound::Excluded(s) => s.saturating_add(1),
            Bound::Unbounded => 0,
        }
        .max(first.0);
        let end = match range.end_bound() {
            Bound::Included(e) => e.saturating_add(1),
            Bound::Excluded(e) => *e,
            Bound::Unbounded => u64::MAX,
        }
        .min(last.0 + 1);
        if start >= end {
            return Ok(Vec::new());
        }
        if let Some(entries) = self.recent().get(start, end, budget) {
            return Ok(entries);
        }
        let log = self.log.clone();
        // A few entries at a time, so that a budget is not met by reading the whole range.
        let frames = blocking(move || {
            let (mut frames, mut bytes, mut at) = (Vec::new(), 0, start);
            while at < end && bytes < budget {
                let to = end.min(at.saturating_add(16));
                for f in log.read(LogIndex(at)..LogIndex(to))? {
                    bytes += f.payload.len();
                    frames.push(f);
                }
                at = to;
            }
            Ok(frames)
        })
        .await
        .map_err(read_err)?;
        let sized = frames
            .into_iter()
            .map(|f| {
                codec::decode_entry(f.term.0, f.index.0, &f.payload).map(|e| (e, f.payload.len()))
            })
            .collect::<Result<Vec<_>>>()
            .map_err(read_err)?;
        Ok(within(sized.into_iter(), budget))
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<u64>> {
        Ok(self.log_state())
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), StorageError<u64>> {
        let vote_err = |e: Error| -> StorageError<u64> {
            StorageIOError::write_vote(AnyError::new(&e)).into()
        };
        if let Some(last) = self.log.last_index() {
            self.log
                .wait_durable(last)
                .await
                .map_err(|e| vote_err(e.into()))?;
        }
        let (storage, dir, bytes) = (
            self.storage.clone(),
            self.dir.clone(),
            codec::encode_vote(vote),
        );
        blocking(move || Ok(meta::write_meta(storage.as_ref(), &dir, VOTE_FILE, &bytes)?))
            .await
            .map_err(vote_err)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StorageError<u64>> {
        let (storage, dir) = (self.storage.clone(), self.dir.clone());
        blocking(move || {
            let Some(bytes) = meta::read_meta(storage.as_ref(), &dir, VOTE_FILE)? else {
                return Ok(None);
            };
            codec::decode_vote(&bytes, &dir.join(VOTE_FILE)).map(Some)
        })
        .await
        .map_err(|e| StorageIOError::read_vote(AnyError::new(&e)).into())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        // An entry at or below the purge marker is purged on arrival: openraft may append
        // one after purging up to a state machine that is ahead of the log.
        let purged = self.log.purged().map(|(i, _)| i.0);
        let entries: Vec<Entry<TypeConfig>> = entries
            .into_iter()
            .filter(|e| purged.is_none_or(|p| e.log_id.index > p))
            .collect();
        let frames: Vec<folddb_log::Entry> = entries
            .iter()
            .map(|e| folddb_log::Entry {
                index: LogIndex(e.log_id.index),
                term: Term(e.log_id.leader_id.term),
                payload: codec::encode_payload(&e.payload),
            })
            .collect();
        let sizes: Vec<usize> = frames.iter().map(|f| f.payload.len()).collect();
        let log = self.log.clone();
        let last = blocking(move || Ok(log.append(&frames)?))
            .await
            .map_err(write_err)?;
        let mut recent = self.recent();
        for (entry, size) in entries.into_iter().zip(sizes) {
            recent.push(entry, size);
        }
        drop(recent);
        let Some(last) = last else {
            callback.log_io_completed(Ok(()));
            return Ok(());
        };
        let log = self.log.clone();
        tokio::spawn(async move {
            let durable = log.wait_durable(last).await.map_err(io::Error::other);
            callback.log_io_completed(durable);
        });
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        self.recent().retain(|i| i < log_id.index);
        let log = self.log.clone();
        blocking(move || Ok(log.truncate(LogIndex(log_id.index))?))
            .await
            .map_err(write_err)
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        self.recent().retain(|i| i > log_id.index);
        let log = self.log.clone();
        let (index, term) = (LogIndex(log_id.index), Term(log_id.leader_id.term));
        blocking(move || Ok(log.purge(index, term)?))
            .await
            .map_err(write_err)
    }
}
