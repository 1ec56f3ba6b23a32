//! Test-only helpers shared by the cluster's tests.

use folddb_log::LogIndex;
use folddb_materializer::{Family, Fold, HotBatch, HotStore};

/// A fold for tests until the materializer's event fold exists: stores each command under
/// its index in the `rows` family and answers with the command's length.
pub struct RecordFold;

impl Fold for RecordFold {
    fn fold(
        &self,
        _: &HotStore,
        index: LogIndex,
        command: &[u8],
        changes: &mut HotBatch,
    ) -> Vec<u8> {
        changes.put(
            Family::Rows,
            index.0.to_be_bytes().to_vec(),
            command.to_vec(),
        );
        (command.len() as u64).to_be_bytes().to_vec()
    }
}
