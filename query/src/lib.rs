//! `folddb-query` turns SQL into reads and proposed writes.
//!
//! It owns the SQL dialect ([`dialect`]: splitting, classifying and parsing FoldDB's own
//! statements), the DataFusion catalog and table providers over the hot tier ([`provider`],
//! [`system`]), write planning (DML into events, every non-deterministic value resolved
//! before proposing) and per-statement authorization by role ([`engine`]), and value
//! conversions with the API's JSON cell encoding ([`convert`]).
//!
//! Its error type is the API's: [`SqlError`] with an [`ErrorCode`] of API.md 1.7.4, which the
//! binary maps to HTTP statuses in one place.
//!
//! Dependencies: `folddb-materializer` only; it never writes RocksDB and never sees
//! `cluster`: it proposes through [`folddb_materializer::Propose`].

pub mod cold;
pub mod convert;
pub mod dialect;
pub mod engine;
pub mod fault;
mod functions;
pub mod ids;
pub mod jobs;
pub mod live;
pub mod nesting;
pub mod provider;
pub mod request;
pub mod split;
pub mod storage;
pub mod system;

pub use engine::{Engine, ErrorCode, Limits, QueryResult, SqlError, SqlRequest, SqlResponse};
pub use provider::Caller;
