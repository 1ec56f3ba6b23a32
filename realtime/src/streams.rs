//! The credit-driven streams of one connection (`realtime/PROTOCOL.md` §2, §3): log tails,
//! which the change journal buffers, and topic streams, which their topic buffers. Each
//! holds a position and the credit its client granted; [`Streams::pump`] sends what the
//! credit allows, and a stream that fails is closed with an `error`.

use std::collections::HashMap;

use folddb_query::live::LiveError;
use folddb_query::{Caller, Engine};
use serde_json::Value as Json;

use crate::session::error;
use crate::tail::{Tail, TailRequest};
use crate::topic_stream::{TopicAck, TopicRequest, TopicStream};

#[derive(Debug, Default)]
pub struct Streams {
    tails: HashMap<String, Tail>,
    topics: HashMap<String, TopicStream>,
}

fn not_found(id: &str, code: &str, what: &str) -> Json {
    error(
        id,
        code,
        &format!("No {what} with this id on this connection"),
    )
}

impl Streams {
    pub fn contains(&self, id: &str) -> bool {
        self.tails.contains_key(id) || self.topics.contains_key(id)
    }

    pub fn len(&self) -> usize {
        self.tails.len() + self.topics.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tails.is_empty() && self.topics.is_empty()
    }

    /// Whether a stream may have messages due with nothing applied: a group's claims
    /// expire with time.
    pub fn waits_on_time(&self) -> bool {
        self.topics.values().any(TopicStream::has_group)
    }

    /// Closes stream `id`, if there is one.
    pub fn stop(&mut self, id: &str) {
        self.tails.remove(id);
        self.topics.remove(id);
    }

    /// Opens log tail `req` (its id checked by the caller): its `tail_ack`, or why not.
    pub fn open_tail(&mut self, engine: &Engine, caller: &Caller, req: TailRequest) -> Json {
        let id = req.id.trim().to_owned();
        opened(&id, Tail::open(engine, caller, req), &mut self.tails)
    }

    /// Opens topic stream `req` (its id checked by the caller): its `topic_ready`, or why
    /// not.
    pub fn open_topic(&mut self, engine: &Engine, caller: &Caller, req: TopicRequest) -> Json {
        let id = req.id.trim().to_owned();
        opened(
            &id,
            TopicStream::open(engine, caller, req),
            &mut self.topics,
        )
    }

    /// Tail `id` may send `credit` more records; an error when there is no such tail.
    pub fn grant_tail(&mut self, id: &str, credit: u64) -> Option<Json> {
        match self.tails.get_mut(id) {
            Some(t) => {
                t.grant(credit);
                None
            }
            None => Some(not_found(id, "TAIL_NOT_FOUND", "tail")),
        }
    }

    /// Topic stream `id` may send `credit` more messages; an error when there is none.
    pub fn grant_topic(&mut self, id: &str, credit: u64) -> Option<Json> {
        match self.topics.get_mut(id) {
            Some(t) => {
                t.grant(credit);
                None
            }
            None => Some(not_found(id, "STREAM_NOT_FOUND", "topic stream")),
        }
    }

    /// Acknowledges for topic stream `ack.id`: its `topic_acked`, or an error when there
    /// is no such stream.
    pub async fn ack_topic(&self, engine: &Engine, ack: TopicAck) -> Json {
        match self.topics.get(&ack.id) {
            Some(t) => t.ack(engine, ack).await,
            None => not_found(&ack.id, "STREAM_NOT_FOUND", "topic stream"),
        }
    }

    /// The next batch of each stream that has credit and something to send; and whether
    /// more may be sent at once.
    pub async fn pump(&mut self, engine: &Engine) -> (Vec<Json>, bool) {
        let mut out = Vec::new();
        let mut more = false;
        let mut failed = Vec::new();
        let mut sent = |id: &str, r: Result<(Option<Json>, bool), LiveError>| match r {
            Ok((batch, again)) => {
                out.extend(batch);
                more |= again;
            }
            Err(e) => {
                out.push(error(id, e.code, &e.message));
                failed.push(id.to_owned());
            }
        };
        for (id, tail) in self.tails.iter_mut() {
            sent(id, tail.pump(engine));
        }
        for (id, stream) in self.topics.iter_mut() {
            sent(id, stream.pump(engine).await);
        }
        for id in failed {
            self.stop(&id);
        }
        (out, more)
    }
}

/// Keeps stream `opened` under `id`: its first message, or the error that refused it.
fn opened<S>(
    id: &str,
    opened: Result<(S, Json), LiveError>,
    into: &mut HashMap<String, S>,
) -> Json {
    match opened {
        Ok((stream, first)) => {
            into.insert(id.to_owned(), stream);
            first
        }
        Err(e) => error(id, e.code, &e.message),
    }
}
