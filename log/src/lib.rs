//! `folddb-log` is FoldDB's single source of truth on disk: a segmented, append-only log of
//! opaque payloads.
//!
//! It owns the segment files (it is the only crate that touches them): frames with CRC-32,
//! segment headers, group commit, crash recovery, the purge marker, and readers and tailers.
//! Payloads are opaque bytes; it knows nothing of raft or SQL. It depends on no other FoldDB
//! crate. The byte layout and recovery rules are specified in `log/FORMAT.md`.
//!
//! Watermarks, each with one name:
//! - **written**: the last index whose frame has been written; readable from then on.
//! - **durable**: the last index known to be on stable storage (after `fdatasync`).
//!
//! The `committed` and `applied` watermarks belong to the raft layer and the materializer.

pub mod dir;
pub mod error;
pub mod frame;
mod log;
mod mem_storage;
pub mod meta;
pub mod scan;
pub mod storage;

#[cfg(test)]
mod fixture_test;
#[cfg(test)]
mod log_test;

pub use dir::DirScan;
pub use error::{Error, ErrorKind, Result};
pub use log::{Log, LogConfig, Retention, Tailer};
pub use mem_storage::MemStorage;
pub use storage::{FsStorage, Storage, StorageFile};

use std::fmt;

/// A position in the log; the raft log index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct LogIndex(pub u64);

/// A raft term, as stored with each entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Term(pub u64);

impl fmt::Display for LogIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// One log entry: its position, the term it was written in, and an opaque payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub index: LogIndex,
    pub term: Term,
    pub payload: Vec<u8>,
}
