//! `folddb-query` turns SQL into reads and proposed writes.
//!
//! It owns the SQL dialect ([`dialect`]: splitting, classifying and parsing FoldDB's own
//! statements), the DataFusion catalog and table providers over the hot tier ([`provider`],
//! [`system`]), write planning (DML into events, every non-deterministic value resolved
//! before proposing) and per-statement authorization by role ([`engine`]), and the pruning
//! of cold segments by a query's filters ([`pruning`]). It reads the cold tier through the
//! materializer's `cold::ColdStore`, which owns the files, and runs the background jobs
//! ([`jobs`]): a flush or compaction is the materializer's `cold::job` writing the files,
//! then the commit this crate proposes; value conversions are the materializer's too
//! ([`convert`], re-exported).
//!
//! A statement fails with [`error::Error`], whose variant is what went wrong: it decides the
//! [`ErrorCode`] of API.md 1.7.4 and whether a caller below dba may read the message. A
//! request answers with [`SqlError`], which the binary maps to HTTP statuses in one place.
//!
//! Dependencies: `folddb-materializer` and DataFusion; never `folddb-log`, Parquet or object
//! storage. It never writes RocksDB or the cold tier and never sees `cluster`: it proposes
//! through [`folddb_materializer::Propose`].

pub use folddb_materializer::convert;
pub mod as_of;
pub mod backup;
pub mod dialect;
pub mod engine;
pub mod error;
mod functions;
pub mod ids;
pub mod jobs;
pub mod live;
pub mod nesting;
pub mod node_info;
pub mod prepared;
pub mod provider;
pub mod pruning;
pub mod request;
pub mod scan_exec;
pub mod split;
pub mod sql_dialect;
pub mod storage;
pub mod system;
mod system_views;
pub mod vector;
pub mod vector_exec;
pub mod vector_plan;
pub mod vector_search;

pub use engine::{
    Answer, Engine, ErrorCode, Limits, QueryResult, RowStream, SqlError, SqlRequest, SqlResponse,
};
pub use provider::Caller;
