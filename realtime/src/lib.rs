//! `folddb-realtime` serves live queries and log tails.
//!
//! It owns the transport-agnostic WebSocket session ([`session`]): the client and server
//! messages of API.md 2, subscriptions with their initial data in batches, and the
//! hand-off from that snapshot to the node's change feed without loss or repeats. Still to
//! come: a registry indexed by table and user for fan-out, resuming from the log on disk,
//! topics with consumer groups.
//!
//! Dependencies: `folddb-query`, `folddb-materializer`, `folddb-log`.

pub mod error;
pub mod hub;
pub mod message;
pub mod notify;
pub mod registry;
pub mod session;
pub mod wire;

pub use error::{Error, Result};
pub use hub::Hub;
pub use message::ServerMessage;
pub use registry::Registry;
pub use session::{ClientMessage, Session};
pub use wire::{Frame, Wire};
