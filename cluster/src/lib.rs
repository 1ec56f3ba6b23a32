//! `folddb-cluster` is FoldDB's raft layer.
//!
//! It owns openraft's type configuration ([`TypeConfig`]), the log storage adapter
//! ([`LogStore`], `RaftLogStorage` over `folddb-log`), the state machine ([`StateMachine`],
//! `RaftStateMachine` over the materializer's hot tier), the peer RPC over HTTP
//! ([`network`]), static formation, and the `Node` handle whose [`Proposer`] implements
//! `Propose` (a follower forwards to the leader). openraft types never leave this crate.
//!
//! Dependencies: `folddb-materializer`, `folddb-log`.

mod admin;
pub mod codec;
pub mod error;
pub mod files;
mod log_store;
pub mod network;
mod node;
mod proposer;
pub mod replay;
mod rounds;
pub mod snapshot;
mod state_machine;
mod types;

#[cfg(test)]
mod log_store_test;
#[cfg(test)]
mod node_test;

pub use admin::{Admin, AdminAnswer};
pub use error::{Error, Result};
pub use files::{ClusterCold, ColdFiles};
pub use log_store::LogStore;
pub use network::{ClusterAuth, Peers, Rpc};
pub use node::{MemberStatus, Membership, NoPeers, Node, NodeStatus, SnapshotPolicy};
pub use proposer::Proposer;
pub use state_machine::StateMachine;
pub use types::{Command, CommandResult, TypeConfig};
