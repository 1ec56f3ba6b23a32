//! `folddb-materializer` folds committed log entries into state.
//!
//! It will own the event schema (`Event`, `Row`, `Value`, `Seq`) and its versioned codec, the
//! `Propose` trait through which `query` submits writes, and the stores that are folds of the
//! log: the catalog, RocksDB hot rows, Parquet cold segments with their manifests, and
//! stream-table storage. It is the only crate that opens RocksDB or writes Parquet.
//!
//! Dependencies: `folddb-log` only (see `DESIGN.md`, "Workspace").

pub mod error;

pub use error::{Error, Result};
