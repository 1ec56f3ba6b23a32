//! The cold tier: where flushed row versions go and where the fold finds them again (an
//! update or delete of a flushed row, a primary key checked against both tiers). [`store`]
//! writes and reads the Parquet segments and manifests ([`store::ColdStore`] implements
//! [`ColdTier`]) through the storages' [`backend`]s; the fold drives it, so the cold tier is
//! a fold of the log exactly as the hot tier is (`materializer/FORMAT.md`, "Cold tier").
//!
//! # Correctness
//!
//! Every call that changes the cold tier names the log entry doing it. A table scope's
//! manifest records the newest entry folded into it, and a call for an entry at or below
//! that mark changes nothing: after a crash, the entry that wrote it is re-applied to the
//! hot tier (which is rewound to its last flush) without writing the files twice. The
//! fold flushes the hot tier before it touches the cold one, so the only entry ever
//! re-applied over a cold tier that is ahead of the hot tier is that entry itself.

pub mod backend;
pub mod store;

#[cfg(test)]
#[path = "cold/crash_test.rs"]
mod crash_test;

pub use store::{ColdError, ColdStore, Manifest, SegmentMeta};

use folddb_log::LogIndex;
use serde::{Deserialize, Serialize};

use crate::catalog::{StorageDef, TableDef};
use crate::row::RowVersion;
use crate::value::Value;

/// The result of a cold-tier call: errors are text, reported to the job that asked.
pub type ColdResult<T> = std::result::Result<T, String>;

/// The cold tier of every table, as the fold drives it.
pub trait ColdTier: Send + Sync + std::fmt::Debug + 'static {
    /// The newest cold version of the row with primary key `pk` in `def`'s `scope`.
    /// `storage` is the table's (`STORAGE_ID`): it says where the table's files live.
    fn get(
        &self,
        storage: &StorageDef,
        def: &TableDef,
        scope: &str,
        pk: &Value,
    ) -> ColdResult<Option<RowVersion>>;

    /// Writes `versions` (the newest version of each key, tombstones included) as the
    /// segment of entry `index` in `def`'s `scope`, then the manifest naming it. Does nothing
    /// when the scope's manifest already records `index`.
    fn flush(
        &self,
        storage: &StorageDef,
        def: &TableDef,
        scope: &str,
        index: LogIndex,
        versions: Vec<RowVersion>,
    ) -> ColdResult<FlushReport>;

    /// Merges every segment of every scope of `def` into one per scope, keeping the newest
    /// version of each key and dropping tombstones older than `tombstone_horizon` (a `_seq`),
    /// as entry `index`.
    fn compact(
        &self,
        storage: &StorageDef,
        def: &TableDef,
        index: LogIndex,
        tombstone_horizon: i64,
    ) -> ColdResult<CompactReport>;

    /// Removes the whole cold tier of `def` (DROP TABLE).
    fn drop_table(&self, storage: &StorageDef, def: &TableDef) -> ColdResult<()>;
}

/// What a flush of one scope wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlushReport {
    pub rows: u64,
    pub bytes: u64,
    /// The entry was folded into this scope already: nothing was written.
    pub already: bool,
}

/// What a compaction did over all of a table's scopes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompactReport {
    pub segments_before: u64,
    pub segments_after: u64,
    pub rows_before: u64,
    pub rows_after: u64,
}

/// Kinds of background jobs (API.md 3.7, `system.jobs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobKind {
    Flush,
    Compact,
    StreamEviction,
}

impl JobKind {
    pub fn name(self) -> &'static str {
        match self {
            JobKind::Flush => "flush",
            JobKind::Compact => "compact",
            JobKind::StreamEviction => "stream_eviction",
        }
    }

    /// The job id prefix (`FL-…`, `CO-…`, `SE-…`).
    pub fn prefix(self) -> &'static str {
        match self {
            JobKind::Flush => "FL",
            JobKind::Compact => "CO",
            JobKind::StreamEviction => "SE",
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
