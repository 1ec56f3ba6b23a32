//! openraft's type configuration for FoldDB.
//!
//! `single-term-leader` is on: at most one leader per term, as in standard raft, so a log id
//! is exactly `(term, index)` — what every `folddb-log` frame already stores.

use serde::{Deserialize, Serialize};

/// A write proposed through raft: the materializer's encoded events, opaque here.
///
/// Its bytes are encoded as one run (`serde_bytes`): the same bytes as a sequence of `u8`
/// in bincode (length, then the bytes), written and read as a copy rather than element by
/// element, which kept a runtime thread busy for seconds on an entry of a few MiB.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command(#[serde(with = "serde_bytes")] pub Vec<u8>);

/// What applying a [`Command`] reported, encoded by the materializer.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CommandResult(#[serde(with = "serde_bytes")] pub Vec<u8>);

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Command({} bytes)", self.0.len())
    }
}

openraft::declare_raft_types!(
    /// FoldDB's raft types.
    pub TypeConfig:
        D = Command,
        R = CommandResult,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = tokio::fs::File,
        AsyncRuntime = openraft::TokioRuntime,
);
