//! `folddb-materializer` folds committed log entries into state.
//!
//! It owns the stores that are folds of the log. Today: the RocksDB hot tier ([`HotStore`]),
//! whose every write carries the applied index; the event schema ([`Command`], [`Op`],
//! [`Outcome`]) and its versioned [`codec`]; the [`Propose`] trait through which `query`
//! submits writes; [`EventFold`], which folds committed entries into the [`catalog`] and the
//! [`row`] versions, and drives the [`cold`] tier through [`ColdTier`] (whose Parquet
//! implementation lives in `folddb-query`, next to the Arrow conversions); `_seq` derivation
//! ([`SeqClock`]); column types and cell values ([`DataType`], [`Value`]) with their API
//! encodings. It is the only crate that opens RocksDB.
//!
//! Dependencies: `folddb-log` only (see `DESIGN.md`, "Workspace").

pub mod catalog;
pub mod codec;
pub mod cold;
pub mod error;
pub mod event;
mod event_fold;
pub mod fold;
pub mod hot;
pub mod row;
pub mod seq;
pub mod value;

pub use catalog::{
    AccessLevel, AuditEntry, ColumnDef, DefaultExpr, LOCAL_STORAGE, NamespaceDef, Role, StateRead,
    StorageDef, StorageKind, TableDef, TableId, TableKind, TableOptions, UserDef,
};
pub use cold::{ColdTier, JobKind, JobRecord};
pub use error::{Error, Result};
pub use event::{Command, Op, OpResult, Outcome, Propose, ProposeError, ProposeFuture, RowChange};
pub use event_fold::{EventFold, Preview, SEQ_OWN_WRITE};
pub use fold::{Fold, StoreCommands};
pub use hot::{Family, HotBatch, HotStore};
pub use row::{ChangeSet, RowEvent, RowVersion};
pub use seq::{Seq, SeqClock};
pub use value::{DataType, TypeError, Value};
