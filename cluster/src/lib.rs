//! `folddb-cluster` is FoldDB's raft layer.
//!
//! It owns openraft's type configuration ([`TypeConfig`]), the log storage adapter
//! ([`LogStore`], `RaftLogStorage` over `folddb-log`), the state machine ([`StateMachine`],
//! `RaftStateMachine` over the materializer's hot tier), and — as the engine issue lands —
//! the peer RPC, bootstrap and membership, and the `Node` handle that implements `Propose`.
//! openraft types never leave this crate.
//!
//! Dependencies: `folddb-materializer`, `folddb-log`.

pub mod codec;
pub mod error;
mod log_store;
mod node;
mod proposer;
pub mod replay;
mod state_machine;
mod types;

#[cfg(test)]
mod log_store_test;
#[cfg(test)]
mod node_test;

pub use error::{Error, Result};
pub use log_store::LogStore;
pub use node::{NoPeers, Node, NodeStatus};
pub use proposer::Proposer;
pub use state_machine::StateMachine;
pub use types::{Command, CommandResult, TypeConfig};
