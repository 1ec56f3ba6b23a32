//! `folddb-cluster` is FoldDB's raft layer.
//!
//! It will own openraft's type configuration, `RaftLogStorage` over `folddb-log`,
//! `RaftStateMachine` over `folddb-materializer`, the peer RPC, bootstrap and membership, and
//! the `Node` handle that implements `Propose`. openraft types never leave this crate.
//!
//! Dependencies: `folddb-materializer`, `folddb-log`.

pub mod error;

pub use error::{Error, Result};
