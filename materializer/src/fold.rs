//! The contract between the raft layer and the materializer: how one committed command
//! becomes hot-tier changes.

use folddb_log::LogIndex;

use crate::hot::{Family, HotBatch, HotStore};

/// Folds one committed command into hot-tier changes, and says what to report back to the
/// proposer. The materializer's event fold implements it (issue #3); `cluster`'s state
/// machine calls it for every normal raft entry, in log order.
///
/// # Correctness
///
/// `fold` must be a pure function of the store's state, the index and the command: no clock,
/// no randomness, no I/O outside the store. Replicas and replays agree only because of that.
/// A command that cannot be applied (a failed precondition) is not an error: it folds to no
/// changes and a result that says why, so that every replica records the same no-op.
///
/// An error is the environment (the store failing, bytes that do not decode), never an
/// outcome: the caller must not apply the entry, and stops applying until the fault is
/// repaired (a restart retries the entry).
pub trait Fold: Send + Sync + 'static {
    fn fold(
        &self,
        store: &HotStore,
        index: LogIndex,
        command: &[u8],
        changes: &mut HotBatch,
    ) -> crate::Result<Vec<u8>>;
}

/// The simplest fold: each command becomes one row keyed by its index (big-endian) in the
/// `rows` family, and the result is the command's length (u64 big-endian). It stands in for
/// the event fold in benchmarks and tests of the raft path until that exists.
#[derive(Debug, Clone, Copy, Default)]
pub struct StoreCommands;

impl Fold for StoreCommands {
    fn fold(
        &self,
        _: &HotStore,
        index: LogIndex,
        command: &[u8],
        changes: &mut HotBatch,
    ) -> crate::Result<Vec<u8>> {
        changes.put(
            Family::Rows,
            index.0.to_be_bytes().to_vec(),
            command.to_vec(),
        );
        Ok((command.len() as u64).to_be_bytes().to_vec())
    }
}
