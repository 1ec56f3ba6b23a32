//! `folddb-cluster` is FoldDB's raft layer.
//!
//! It owns openraft's type configuration ([`TypeConfig`]), the log storage adapter
//! ([`LogStore`], `RaftLogStorage` over `folddb-log`), and — as the engine issue lands — the
//! state machine over `folddb-materializer`, the peer RPC, bootstrap and membership, and the
//! `Node` handle that implements `Propose`. openraft types never leave this crate.
//!
//! Dependencies: `folddb-materializer`, `folddb-log`.

pub mod codec;
pub mod error;
mod log_store;
mod types;

#[cfg(test)]
mod log_store_test;

pub use error::{Error, Result};
pub use log_store::LogStore;
pub use types::{Command, CommandResult, TypeConfig};
