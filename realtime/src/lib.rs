//! `folddb-realtime` serves live queries and log tails.
//!
//! It owns live-query semantics and their transport-agnostic WebSocket session
//! ([`session`]): the client and server messages of API.md 2 (typed: [`ServerMessage`],
//! framed as JSON or MessagePack, maybe gzip'ed, by [`wire`]), subscriptions with their
//! initial data in batches and the hand-off from that snapshot to the node's change feed
//! without loss or repeats; the rules that turn a row change into an insert, update or
//! delete notification by evaluating the filter on its old and new images ([`notify`]);
//! the fan-out of each applied change set to the connections watching its table and owner
//! ([`hub`]); subscription plans shared by callers with the same SQL ([`plans`]); the subscriptions each user holds (`system.live`, [`registry`]). Its errors
//! are [`Error`]. Resume and catch-up read the change journal; log tails ([`tail`]) follow
//! it with credit-based flow control, and topic streams ([`topic_stream`]) push a topic's
//! messages to a consumer (of a group, through the group's claims) the same way
//! ([`streams`]).
//!
//! Dependencies: `folddb-query`, `folddb-materializer`, `folddb-log`.

pub mod error;
pub mod hub;
pub mod message;
pub mod notify;
pub mod plans;
pub mod registry;
pub mod session;
pub mod streams;
pub mod tail;
pub mod topic_stream;
pub mod wire;

pub use error::{Error, Result};
pub use hub::Hub;
pub use message::ServerMessage;
pub use plans::Plans;
pub use registry::Registry;
pub use session::{ClientMessage, Session};
pub use wire::{Frame, Wire};
