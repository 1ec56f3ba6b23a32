//! The cluster crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong in the raft layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Log(#[from] folddb_log::Error),

    #[error("raft entry {index} has a payload that does not decode: {reason}")]
    BadEntry { index: u64, reason: String },

    #[error("the vote file {file} does not decode: {reason}")]
    BadVote { file: PathBuf, reason: String },

    #[error(transparent)]
    Materializer(#[from] folddb_materializer::Error),

    #[error("a snapshot does not decode: {reason}")]
    BadSnapshot { reason: String },

    #[error("raft failed to {op}: {reason}")]
    Raft { op: &'static str, reason: String },

    #[error(
        "the hot tier has applied entry {applied}, but the log ends at {log_last}: entries \
         that were applied are missing from the log (a torn or truncated tail?). The log is the \
         source of truth: restore its missing segment, or rebuild the hot tier from it with \
         `folddb log replay <data dir> --into <new dir>`"
    )]
    AheadOfLog { applied: u64, log_last: String },

    #[error("the log cannot be replayed: {reason}")]
    Incomplete { reason: String },

    #[error("could not {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("a blocking storage task failed: {0}")]
    Task(String),

    /// The cluster cannot serve the request now (no leader, a leader out of reach, this node
    /// too far behind); the message says which, and nothing was changed.
    #[error("{0}")]
    Unavailable(String),

    /// An operator's request that cannot be done as asked (an unknown node, the last
    /// voter); nothing was changed.
    #[error("{0}")]
    Invalid(String),
}

/// The cluster crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Runs blocking storage work on tokio's blocking pool.
pub(crate) async fn blocking<T, F>(f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Task(e.to_string()))?
}
