//! openraft's type configuration for FoldDB.
//!
//! `single-term-leader` is on: at most one leader per term, as in standard raft, so a log id
//! is exactly `(term, index)` — what every `folddb-log` frame already stores.

use serde::{Deserialize, Serialize};

/// A write proposed through raft: the materializer's encoded events, opaque here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command(pub Vec<u8>);

/// What applying a [`Command`] reported, encoded by the materializer.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CommandResult(pub Vec<u8>);

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
