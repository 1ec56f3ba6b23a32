//! `folddb-materializer` folds committed log entries into state.
//!
//! It owns the stores that are folds of the log. Today: the RocksDB hot tier ([`HotStore`]),
//! whose every write carries the applied index, `_seq` derivation ([`SeqClock`]), and column
//! types and cell values ([`DataType`], [`Value`]) with their API encodings. Coming with the engine issue: the event
//! schema (`Event`, `Row`, `Value`, `Seq`) and its versioned codec, the `Propose` trait
//! through which `query` submits writes, the catalog, Parquet cold segments with their
//! manifests, and stream-table storage. It is the only crate that opens RocksDB or writes
//! Parquet.
//!
//! Dependencies: `folddb-log` only (see `DESIGN.md`, "Workspace").

pub mod error;
pub mod fold;
pub mod hot;
pub mod seq;
pub mod value;

pub use error::{Error, Result};
pub use fold::{Fold, StoreCommands};
pub use hot::{Family, HotBatch, HotStore};
pub use seq::{Seq, SeqClock};
pub use value::{DataType, TypeError, Value};
