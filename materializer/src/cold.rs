//! The cold tier: where flushed row versions go. [`store`] writes and reads the Parquet
//! segments through the storages' [`backend`]s; [`job`] runs flushes and compactions.
//!
//! # Correctness (`materializer/FORMAT.md`, "Cold tier")
//!
//! Apply never writes a file. A job reads a consistent snapshot of the node's state, writes
//! its segments (durably) outside apply, and proposes a commit entry naming them; applying
//! that entry only switches the manifests (kept in the node's state) and drops the hot
//! versions the segments hold. A crash before the commit leaves only files no manifest
//! lists, which a sweep removes; the fold's reads of the cold tier ([`ColdTier::get`]) go
//! through the manifests of the state being folded.

pub mod backend;
pub mod job;
pub mod store;

#[cfg(test)]
#[path = "cold/crash_test.rs"]
mod crash_test;

pub use store::{ColdError, ColdStore, Manifest, SegmentMeta};

use serde::{Deserialize, Serialize};

use crate::catalog::{StateRead, StorageDef, TableDef};
use crate::row::RowVersion;
use crate::value::Value;

/// The result of a cold-tier call: errors are text, reported to the job that asked.
pub type ColdResult<T> = std::result::Result<T, String>;

/// The cold tier as the fold reads it: only for the old image of a flushed row that an
/// `UpdateV1` / `DeleteV1` entry (of a build before the key index) changes.
pub trait ColdTier: Send + Sync + std::fmt::Debug + 'static {
    /// The newest cold version of the row with primary key `pk` in `def`'s `scope`, as the
    /// manifests of `state` list them. `storage` is the table's (`STORAGE_ID`): it says
    /// where the table's files live.
    fn get(
        &self,
        state: &dyn StateRead,
        storage: &StorageDef,
        def: &TableDef,
        scope: &str,
        pk: &Value,
    ) -> ColdResult<Option<RowVersion>>;

    /// Makes sure this node holds `files` of `storage`, a directory of each node, before the
    /// commit that lists them is recorded. A node alone wrote them itself: nothing to do. A
    /// cluster member fetches the ones it lacks from the members that hold them (see
    /// [`Replicas`]). `index` is the entry being applied. An error is the environment,
    /// never an outcome: the entry stays unapplied.
    fn hold(&self, index: u64, storage: &StorageDef, files: &[LocalFile]) -> ColdResult<()> {
        let _ = (index, storage, files);
        Ok(())
    }
}

/// A segment file of a storage that is a directory of each node: its path relative to the
/// storage's base, and its length, which a copy must have.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalFile {
    pub path: String,
    pub bytes: u64,
}

/// What a job's files ask of a cluster. When its table's storage is a directory of each node
/// (`filesystem`), the other members copy the files before the commit naming them is
/// proposed, so that a majority holds them whichever member fails next. On a storage every
/// member shares, what a crashed job left is removed only once no member runs that job.
pub trait Replicas: Send + Sync + 'static {
    /// Returns once a majority of the voters (this node counted when it is one) holds
    /// `files` of `storage` durably; an error when it cannot.
    fn replicate<'a>(
        &'a self,
        storage: &'a StorageDef,
        files: &'a [LocalFile],
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ColdResult<()>> + Send + 'a>>;

    /// The ids of the jobs queued or running on every other member, as each says; an error
    /// when one cannot be asked. A shared storage's files that no manifest lists are removed
    /// only when the job that wrote them is in no such list (it crashed, or failed).
    fn jobs_elsewhere(
        &self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ColdResult<Vec<String>>> + Send + '_>>;
}

/// Kinds of background jobs (API.md 3.7, `system.jobs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobKind {
    Flush,
    Compact,
    StreamEviction,
    /// A node building a table scope's vector index (never in the log: each node builds its
    /// own).
    VectorIndex,
    /// Stored files no row references any more removed (never in the log).
    FileCleanup,
    /// `BACKUP DATABASE`: a copy of the state as of one entry, written by one node.
    Backup,
    /// `RESTORE DATABASE`: a backup checked, then written through the log.
    Restore,
    /// `EXPORT USER DATA`: a user's rows and files, zipped on one node.
    UserExport,
}

impl JobKind {
    pub fn name(self) -> &'static str {
        match self {
            JobKind::Flush => "flush",
            JobKind::Compact => "compact",
            JobKind::StreamEviction => "stream_eviction",
            JobKind::VectorIndex => "vector_index",
            JobKind::FileCleanup => "cleanup",
            JobKind::Backup => "backup",
            JobKind::Restore => "restore",
            JobKind::UserExport => "user_export",
        }
    }

    /// The job id prefix (`FL-…`, `CO-…`, `SE-…`, `VI-…`, `CL-…`, `BK-…`, `RS-…`, `UE-…`).
    pub fn prefix(self) -> &'static str {
        match self {
            JobKind::Flush => "FL",
            JobKind::Compact => "CO",
            JobKind::StreamEviction => "SE",
            JobKind::VectorIndex => "VI",
            JobKind::FileCleanup => "CL",
            JobKind::Backup => "BK",
            JobKind::Restore => "RS",
            JobKind::UserExport => "UE",
        }
    }
}

/// A job's record once its entry is applied: persisted in the catalog, so `system.jobs`
/// survives restarts and is the same on every replica and replay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    pub id: String,
    pub kind: JobKind,
    /// `namespace.table`.
    pub target: String,
    pub completed: bool,
    pub message: String,
    /// Rows written (flush), kept (compaction) or removed (eviction).
    pub rows: u64,
    /// The stamp of the command that ran it (the leader's clock when it was proposed).
    pub at_ms: u64,
    /// The log entry that ran it.
    pub index: u64,
}
