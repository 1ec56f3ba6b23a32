//! `folddb-query` turns SQL into reads and proposed writes.
//!
//! It will own the SQL dialect (parsing and classifying standard SQL and FoldDB's
//! extensions), the DataFusion catalog and table providers over the materialized state,
//! write planning (DML into events), authorization by table type and role, and FoldDB's SQL
//! functions.
//!
//! Dependencies: `folddb-materializer` only; it never opens RocksDB and never sees `cluster`.

pub mod error;

pub use error::{Error, Result};
