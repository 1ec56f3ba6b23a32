//! `folddb-materializer` folds committed log entries into state.
//!
//! It owns every store that is a fold of the log: the RocksDB hot tier ([`HotStore`]), whose
//! every write carries the applied index, and the cold tier ([`cold`]: Parquet segments in
//! each storage, written by the flush and compaction jobs of [`cold::job`] outside apply and
//! read by [`cold::ColdStore`] through the storages' backends, filesystem or object storage;
//! the manifests that list them live in the hot tier's catalog, switched only by apply).
//! Also: the event schema ([`Command`], [`Op`], [`Outcome`]) and its versioned [`codec`];
//! the [`Propose`] trait through which `query` submits writes; [`EventFold`], which folds
//! committed entries into the [`catalog`] and the [`row`] versions, checking flushed keys
//! against the cold tier's key index in the hot tier (only entries of earlier builds read
//! a flushed row through [`ColdTier`]); `_seq` derivation ([`SeqClock`]); column
//! types and cell values ([`DataType`], [`Value`]) with their Arrow and API encodings
//! ([`convert`], [`hot_columns`]); table scans ([`scan`]: hot and cold rows merged by primary
//! key as they are pulled) and per-scope counts of visible rows ([`row::visible_rows`]). It is the only crate that opens RocksDB or writes Parquet. It builds no
//! runtime: object storage requests run on the one the program hands in
//! ([`cold::backend::IoRuntime`]).
//!
//! Dependencies: `folddb-log`, and arrow, parquet and object_store for the cold tier (see
//! `DESIGN.md`, "Workspace").

pub mod catalog;
pub mod codec;
pub mod cold;
pub mod convert;
pub mod error;
pub mod event;
mod event_fold;
pub mod files;
pub mod fold;
pub mod hot;
pub mod hot_columns;
pub mod journal;
pub mod row;
pub mod scan;
pub mod scan_cache;
pub mod seq;
#[cfg(test)]
mod test_support;
pub mod topics;
pub mod value;
pub mod vector_index;

pub use catalog::{
    AccessLevel, AuditEntry, ColumnDef, DefaultExpr, LOCAL_STORAGE, NamespaceDef, Role, StateRead,
    StorageDef, StorageKind, TableDef, TableId, TableKind, TableOptions, UserDef, VectorIndexDef,
    VectorMetric,
};
pub use cold::{ColdTier, JobKind, JobRecord};
pub use error::{Error, Result};
pub use event::{
    Command, CompactedScope, Op, OpResult, Outcome, Propose, ProposeError, ProposeFuture,
    RejectKind, RowChange, RowChangeV1, RowDelete, ScopeSegment,
};
pub use event_fold::{EventFold, FoldInPlace, Preview, SEQ_OWN_WRITE};
pub use fold::{Fold, StoreCommands};
/// The log positions this crate's API names (entries folded, cold-tier calls).
pub use folddb_log::{LogIndex, Term};
pub use hot::{Family, HotBatch, HotStore};
pub use row::{ChangeSet, RowEvent, RowVersion};
pub use seq::{Seq, SeqClock};
pub use value::{DataType, TypeError, Value};
