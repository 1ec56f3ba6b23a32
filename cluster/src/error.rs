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

    #[error("a blocking storage task failed: {0}")]
    Task(String),
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
