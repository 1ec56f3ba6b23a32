//! `folddb-realtime` serves live queries and log tails.
//!
//! It will own the subscription registry, the initial-snapshot-to-tail hand-off, matching
//! applied events to subscriptions, resuming from a `_seq` (reading the log when memory no
//! longer holds it), topics with consumer groups, and the transport-agnostic WebSocket
//! message types.
//!
//! Dependencies: `folddb-query`, `folddb-materializer`, `folddb-log`.

pub mod error;

pub use error::{Error, Result};
