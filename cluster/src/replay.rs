//! Rebuilding materialized state from a log directory alone (`folddb log replay`): every
//! entry from the store's applied index on, up to a chosen index, folded exactly as a
//! running node applies it ([`crate::state_machine::apply_entry`]).

use std::path::Path;

use folddb_log::{Log, LogConfig, LogIndex};
use folddb_materializer::{Fold, HotStore};

use crate::codec;
use crate::error::{Error, Result};
use crate::state_machine::apply_entry;

/// Entries read from the log at a time.
const CHUNK: u64 = 4096;

/// Folds the entries of the log in `log_dir` into `store` with `fold`, from the entry after
/// the store's applied index up to `to` (inclusive; the whole log when `None`), calling
/// `progress(applied, last)` after each chunk. Returns the index of the last entry applied
/// (0 for none). The log is opened as a node opens it, so it must be a directory this
/// process may own (a copy, not a running node's).
pub fn replay<F: Fold>(
    log_dir: &Path,
    to: Option<u64>,
    store: &HotStore,
    fold: &F,
    mut progress: impl FnMut(u64, u64),
) -> Result<u64> {
    let log = Log::open(log_dir, LogConfig::default())?;
    // A rebuild into a fresh store needs every entry from raft's first (index 0): refuse,
    // rather than "succeed" into a directory missing the head of the history. Purged entries
    // still on disk (the default retention keeps them) are read like the others.
    let first = log.first_retained_index();
    if store.applied_index()?.is_none() {
        match (first, log.purged()) {
            (Some(f), Some((p, _))) if f.0 > 0 => {
                return Err(Error::Incomplete {
                    reason: format!(
                        "entries up to index {p} were purged and the log retains none before \
                         index {f}; a replay needs every entry from index 0 (this node was \
                         brought up from a snapshot: replay another member's log)"
                    ),
                });
            }
            (None, Some((p, _))) => {
                return Err(Error::Incomplete {
                    reason: format!(
                        "entries up to index {p} were purged and none is retained; a replay \
                         needs every entry from index 0"
                    ),
                });
            }
            _ => crate::log_store::check_head(&log)?,
        }
    }
    let last = log.last_index().map_or(0, |i| i.0);
    let end = to.map_or(last, |t| t.min(last));
    let first = first.map_or(1, |i| i.0);
    let mut next = store.applied_index()?.map_or(first, |a| a.0 + 1).max(first);
    let mut applied = next.saturating_sub(1);
    while next <= end {
        let stop = (next + CHUNK).min(end + 1);
        for e in log.read_retained(LogIndex(next)..LogIndex(stop))? {
            let entry = codec::decode_entry(e.term.0, e.index.0, &e.payload)?;
            apply_entry(store, fold, &entry)?;
            applied = e.index.0;
        }
        next = stop;
        progress(applied, end);
    }
    store.flush()?;
    Ok(applied)
}

/// The commits of cold-tier jobs ([`folddb_materializer::Op::CommitFlush`],
/// [`folddb_materializer::Op::CommitCompact`]) in the log in `log_dir` up to `to`, in log
/// order. The log does not carry the files they name; a replay writes them again when it
/// reaches the state each job read (see `folddb_materializer::cold::job::rewrite`).
pub fn job_commits(log_dir: &Path, to: Option<u64>) -> Result<Vec<folddb_materializer::Op>> {
    use folddb_materializer::Op;
    use openraft::EntryPayload;
    let log = Log::open(log_dir, LogConfig::default())?;
    let last = log.last_index().map_or(0, |i| i.0);
    let end = to.map_or(last, |t| t.min(last));
    let mut next = log.first_retained_index().map_or(1, |i| i.0);
    let mut out = Vec::new();
    while next <= end {
        let stop = (next + CHUNK).min(end + 1);
        for e in log.read_retained(LogIndex(next)..LogIndex(stop))? {
            let entry = codec::decode_entry(e.term.0, e.index.0, &e.payload)?;
            let EntryPayload::Normal(cmd) = &entry.payload else {
                continue;
            };
            // An entry that does not decode is reported by the replay itself.
            let Ok(commands) = folddb_materializer::event::decode_entry(&cmd.0) else {
                continue;
            };
            out.extend(commands.into_iter().flat_map(|c| c.ops).filter(|op| {
                matches!(
                    op,
                    Op::CommitFlush { .. }
                        | Op::CommitFlushInline { .. }
                        | Op::CommitCompact { .. }
                )
            }));
        }
        next = stop;
    }
    Ok(out)
}
