//! The materializer's error type.

use std::path::PathBuf;

/// Everything that can go wrong in the materializer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("RocksDB failed to {op} in {path}: {source}")]
    Rocks {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: rocksdb::Error,
    },

    #[error("cannot {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A vector index could not be built or searched (never the client's input).
    #[error("vector index: {0}")]
    VectorIndex(String),

    #[error("cannot decode {what}: {reason}")]
    Decode { what: &'static str, reason: String },

    #[error(
        "log entry {index} does not decode ({reason}): the log is corrupt or was written by a newer version"
    )]
    UndecodableEntry { index: u64, reason: String },

    /// The cold tier could not be read while folding an entry: a storage out of reach, a
    /// segment missing or damaged. Not an outcome: the entry stays unapplied.
    #[error("cannot read the cold tier: {reason}")]
    ColdRead { reason: String },

    /// The files a cold-tier commit lists are not on this node and could not be fetched
    /// from the members that hold them. Not an outcome: the entry stays unapplied.
    #[error("cannot hold the cold tier's files: {reason}")]
    ColdHold { reason: String },

    /// A snapshot was asked of a store that is being replaced by one (an install under way).
    #[error("the store in {path} is being replaced by a snapshot install: nothing to export")]
    Importing { path: PathBuf },

    #[error("the applied index stored in {path} is {len} bytes long, expected 8")]
    BadAppliedIndex { path: PathBuf, len: usize },
}

/// The materializer's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
