//! The log's error type. Variants are facts with fields; [`Error::kind`] sorts them into the
//! four kinds the rest of FoldDB acts on (see `STYLE.md`, "Errors").

use std::io;
use std::path::PathBuf;

use crate::LogIndex;

/// How a caller should treat an [`Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The bytes on disk are wrong. Stop; never retry.
    Corruption,
    /// The environment failed (disk full, permissions, a failed fsync). Maybe retryable after
    /// the log is reopened.
    Io,
    /// The caller asked for something the log cannot do (a gap, an out-of-range read).
    InvalidInput,
    /// A broken invariant inside the log.
    Internal,
}

/// Everything that can go wrong in the log.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error(
        "checksum mismatch in segment {segment} at byte offset {offset}: \
         stored {stored:#010x}, computed {computed:#010x}"
    )]
    ChecksumMismatch {
        segment: PathBuf,
        offset: u64,
        stored: u32,
        computed: u32,
    },

    #[error("corrupt frame in segment {segment} at byte offset {offset}: {reason}")]
    CorruptFrame {
        segment: PathBuf,
        offset: u64,
        reason: String,
    },

    #[error("bad segment header in {segment}: {reason}")]
    BadHeader { segment: PathBuf, reason: String },

    #[error("{file} has format version {found}; this build reads version {supported}")]
    UnsupportedVersion {
        file: PathBuf,
        found: u32,
        supported: u32,
    },

    #[error(
        "entries are missing: segment {segment} ends at index {last} \
         but the next segment starts at {next_first}"
    )]
    Gap {
        segment: PathBuf,
        last: LogIndex,
        next_first: LogIndex,
    },

    #[error(
        "entries are missing: the log's first segment {segment} starts at index {first}, \
         but the log should hold entries from index {expected} on (was a segment removed?)"
    )]
    MissingHead {
        segment: PathBuf,
        first: LogIndex,
        expected: LogIndex,
    },

    #[error("bad metadata file {file}: {reason}")]
    BadMetaFile { file: PathBuf, reason: String },

    #[error("the log is poisoned after a failed write or fsync ({reason}); reopen it")]
    Poisoned { reason: String },

    #[error("append at index {got}, but the log's next index is {expected}")]
    NonContiguous { expected: LogIndex, got: LogIndex },

    #[error("index {index} is out of range: the log holds {range}")]
    OutOfRange { index: LogIndex, range: String },

    #[error("entry payload of {size} bytes exceeds the limit of {limit} bytes")]
    PayloadTooLarge { size: usize, limit: u32 },

    #[error("invalid log configuration: {0}")]
    InvalidConfig(String),

    #[error("entries from index {index} were truncated while being read")]
    Truncated { index: LogIndex },

    #[error("an append needs at least one entry")]
    EmptyAppend,

    #[error("the log is closed")]
    Closed,
}

impl Error {
    /// Sorts the error for the caller (see [`ErrorKind`]).
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::ChecksumMismatch { .. }
            | Error::CorruptFrame { .. }
            | Error::BadHeader { .. }
            | Error::UnsupportedVersion { .. }
            | Error::Gap { .. }
            | Error::MissingHead { .. }
            | Error::BadMetaFile { .. } => ErrorKind::Corruption,
            Error::Io { .. } | Error::Poisoned { .. } | Error::Closed => ErrorKind::Io,
            Error::NonContiguous { .. }
            | Error::OutOfRange { .. }
            | Error::PayloadTooLarge { .. }
            | Error::InvalidConfig(_)
            | Error::EmptyAppend
            | Error::Truncated { .. } => ErrorKind::InvalidInput,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// The log's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
