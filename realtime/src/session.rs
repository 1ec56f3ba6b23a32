//! One WebSocket connection's live-query session (API.md 2.3–2.6), independent of the
//! transport: the caller feeds it client messages and the node's change sets, and sends
//! what it returns.
//!
//! The hand-off from initial data to live changes loses and repeats nothing (API.md 2.6): a
//! subscription watches the change feed, then takes the newest `_seq` as its boundary. The
//! initial data is the row versions at or below it, paged from storage as the client asks
//! for each batch (by key, from lists of keys and `_seq`s; by query for tables without a
//! key); the changes above it that come while it pages are read from the change journal
//! after the last batch, each once, in `_seq` order. A row that changes before its page is
//! read is not in the initial data: its change, sent as an insert when the client does not
//! hold the row, brings it.
//!
//! A resume (`options.from`) and the catch-up of a connection that fell behind read the
//! journal too: exactly the changes after the cursor, each evaluated on its old and new
//! image (DESIGN.md, "Live path"). STREAM tables, which the journal does not record and
//! which only grow, are caught up from their rows newer than the cursor.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use folddb_materializer::{EventFold, RowEvent, TableKind};
use folddb_query::live::{LiveError, LiveQuery, RowAt, RowObject, SYSTEM_TABLE, SystemLive};
use folddb_query::{Caller, Engine};
use serde::Deserialize;
use serde_json::{Value as Json, json};

use crate::hub::{Delivery, Encoded, Hub, Inbox};
use crate::message::{BatchControl, ChangeType, ServerMessage};
use crate::notify::{self, Notification};
use crate::plans::Plans;
use crate::registry::{Registration, Registry};
use crate::streams::Streams;
use crate::tail::TailRequest;
use crate::topic_stream::{TopicAck, TopicRequest};

#[path = "session_journal.rs"]
mod from_journal;
#[path = "session_paging.rs"]
mod paging;

pub use from_journal::CURSOR_EXPIRED;
use from_journal::{check_cursor, journal_catch_up};
use paging::{batch, page, start_paging, whole};

/// Default rows per initial batch (API.md 2.3).
pub const DEFAULT_BATCH_SIZE: usize = 1000;
/// Default for [`Session::with_max_catch_up`].
pub const DEFAULT_MAX_CATCH_UP: usize = 1_000_000;
/// Default for [`Session::with_listed_rows`].
pub const DEFAULT_LISTED_ROWS: usize = 100_000;
/// Default for [`Session::with_max_batch_size`].
pub const DEFAULT_MAX_BATCH_SIZE: usize = 10_000;
/// Most subscriptions on one connection (API.md 2.5).
pub const MAX_SUBSCRIPTIONS_PER_CONNECTION: usize = 100;

/// The `protocol` object of `authenticate` and `auth_success`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Protocol {
    pub serialization: String,
    pub compression: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Options {
    #[serde(default)]
    pub batch_size: Option<usize>,
    #[serde(default)]
    pub last_rows: Option<usize>,
    #[serde(default, alias = "from_seq_id")]
    pub from: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SubscriptionRequest {
    pub id: String,
    pub sql: String,
    #[serde(default)]
    pub options: Option<Options>,
}

/// A client → server message (API.md 2.3).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    Authenticate {
        method: String,
        token: String,
        protocol: Protocol,
    },
    Subscribe {
        subscription: SubscriptionRequest,
    },
    NextBatch {
        subscription_id: String,
        #[serde(default)]
        last_seq_id: Option<i64>,
    },
    Unsubscribe {
        subscription_id: String,
    },
    /// A log tail (`realtime/PROTOCOL.md`).
    Tail {
        tail: TailRequest,
    },
    /// `credit` more records for tail `id`.
    TailCredit {
        id: String,
        credit: u64,
    },
    TailStop {
        id: String,
    },
    /// A topic stream (`realtime/PROTOCOL.md` §3).
    TopicConsume {
        consume: TopicRequest,
    },
    /// `credit` more messages for topic stream `id`.
    TopicCredit {
        id: String,
        credit: u64,
    },
    /// Acknowledges messages of topic stream `id`'s group, as `POST /v1/api/topics/ack`.
    TopicAck {
        id: String,
        upto_offset: i64,
        #[serde(default)]
        from_offset: Option<i64>,
        #[serde(default)]
        action: Option<String>,
    },
    TopicStop {
        id: String,
    },
    Ping,
}

impl ClientMessage {
    /// A text frame as a client message; the error is the close reason of API.md 2.2.
    pub fn parse(text: &str) -> crate::Result<ClientMessage> {
        serde_json::from_str(text).map_err(|e| crate::Error::InvalidMessage {
            reason: e.to_string(),
        })
    }
}

/// A message to send: built for this connection, or shared with others already encoded
/// as JSON text (see [`crate::hub::Delivery`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Outgoing {
    Json(Json),
    Text(Arc<str>),
}

impl From<Json> for Outgoing {
    fn from(j: Json) -> Outgoing {
        Outgoing::Json(j)
    }
}

fn outgoing(msgs: Vec<Json>) -> Vec<Outgoing> {
    msgs.into_iter().map(Outgoing::Json).collect()
}

/// An `error` message (API.md 2.4).
pub fn error(subscription_id: &str, code: &str, message: &str) -> Json {
    ServerMessage::Error {
        subscription_id: subscription_id.to_owned(),
        code: code.to_owned(),
        message: message.to_owned(),
    }
    .into()
}

struct Sub {
    live_id: String,
    query: Arc<LiveQuery>,
    /// Where the initial data still to send starts, while it is being paged; the batch
    /// size and number of the next batch, and how many keys a list holds.
    paging: Option<Paging>,
    batch_size: usize,
    listed_rows: usize,
    batch_num: u64,
    /// Deletes for the rows that left the view of a resuming client, sent after the
    /// initial data.
    departed: Vec<Outgoing>,
    /// Changes came while the initial data was being paged (or the connection lagged
    /// then): they are caught up from `floor` after the last page.
    overflowed: bool,
    /// The snapshot boundary (API.md 2.6): the newest `_seq` when the subscription started.
    /// The initial data holds row versions at or below it, the changes those above it.
    floor: i64,
    /// The subscription's SQL: with the user, role and the schema it was planned against,
    /// what makes two subscriptions get the same rows.
    sql: String,
    /// Change sets at or below this index are in the last catch-up's read.
    read_at: u64,
    /// The version of each row the last catch-up read (cleared once past `read_until`).
    seen: HashMap<String, i64>,
    read_until: u64,
    /// Every change with a `_seq` up to this one has reached the client (or is queued to):
    /// where a catch-up after lag starts.
    cursor: i64,
    /// Whether `held` lists the client's view: while a fresh snapshot is paged, and until
    /// the changes its last page may have seen have been told (see `settle`).
    tracks: bool,
    /// The applied index after the last page's read: a change set past it was not seen by
    /// any page, so `held` is no longer needed.
    settle: Option<u64>,
    /// While `tracks`: the rows in the client's view, by key, with the `_seq` of the
    /// version it was last told of. A page skips a row changed since it was listed, so a
    /// change to a row the client does not hold is its insert (or, a delete, nothing).
    held: HashMap<String, i64>,
}

/// The initial data still to page.
#[derive(Debug)]
enum Paging {
    /// The rows listed (key and `_seq`, ascending by `_seq`), read a page at a time by key;
    /// past the last, rows newer than `more` are listed next, if it is set.
    Keys {
        keys: VecDeque<RowAt>,
        more: Option<i64>,
    },
    /// Row versions with a `_seq` in `(after, floor]`, a page a query (tables without a
    /// primary key).
    Scan { after: Option<i64> },
    /// A resume: the journal's changes with a `_seq` in `(after, floor]`, a page at a time,
    /// sent as change messages before each (empty) batch.
    Journal { after: i64 },
}

/// How often a subscription over a system table re-reads it.
pub const SYSTEM_POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// A subscription over a system table: re-read every [`SYSTEM_POLL`] and diffed by the
/// first column against what the client was last told.
struct SystemSub {
    live_id: String,
    query: SystemLive,
    rows: BTreeMap<String, RowObject>,
    polled: std::time::Instant,
}

/// The live-query state of one connection.
pub struct Session {
    caller: Option<Caller>,
    subs: HashMap<String, Sub>,
    systems: HashMap<String, SystemSub>,
    streams: Streams,
    registry: Arc<Registry>,
    hub: Arc<Hub>,
    plans: Arc<Plans>,
    connection: u64,
    /// Most changes one subscription may be behind and still be caught up after lag.
    max_catch_up: usize,
    /// Most rows in one initial-data batch.
    max_batch_size: usize,
    /// Rows a subscription lists at a time to page its initial data by key.
    listed_rows: usize,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.registry.disconnect(self.connection);
        self.hub.disconnect(self.connection);
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("caller", &self.caller)
            .field("subscriptions", &self.subs.len())
            .finish()
    }
}

impl Session {
    /// The session of connection `connection` (from [`Registry::connect`]); its change
    /// sets arrive in the returned [`Inbox`], for the subscriptions it holds.
    pub fn new(registry: Arc<Registry>, hub: Arc<Hub>, connection: u64) -> (Session, Inbox) {
        let inbox = hub.connect(connection);
        let session = Session {
            caller: None,
            subs: HashMap::new(),
            systems: HashMap::new(),
            streams: Streams::default(),
            registry,
            hub,
            plans: Arc::new(Plans::new()),
            connection,
            max_catch_up: DEFAULT_MAX_CATCH_UP,
            max_batch_size: DEFAULT_MAX_BATCH_SIZE,
            listed_rows: DEFAULT_LISTED_ROWS,
        };
        (session, inbox)
    }

    /// Plans subscriptions with the node's shared `plans` (by default, its own).
    pub fn with_plans(mut self, plans: Arc<Plans>) -> Session {
        self.plans = plans;
        self
    }

    /// At most `rows` changed rows per subscription are caught up after lag; past that the
    /// subscription gets an explicit error (0: always the error).
    pub fn with_max_catch_up(mut self, rows: usize) -> Session {
        self.max_catch_up = rows;
        self
    }

    /// An initial-data batch holds at most `rows` rows (at least 1): what a subscription holds
    /// in memory while it pages. A larger `batch_size` is lowered to it; a larger
    /// `last_rows` is refused.
    pub fn with_max_batch_size(mut self, rows: usize) -> Session {
        self.max_batch_size = rows.max(1);
        self
    }

    /// A subscription pages its initial data through lists of at most `rows` keys (at least
    /// 1), each read by one query: tens of bytes a row held while it pages.
    pub fn with_listed_rows(mut self, rows: usize) -> Session {
        self.listed_rows = rows.max(1);
        self
    }

    /// Most changes held back for one subscription while it pages (or deletes a resume
    /// sends): as many as a catch-up sends, or the default when catching up is off.
    fn held_back(&self) -> usize {
        match self.max_catch_up {
            0 => DEFAULT_MAX_CATCH_UP,
            n => n,
        }
    }

    /// Forgets subscription `id`: registry, hub and all.
    fn drop_sub(&mut self, id: &str) -> Option<()> {
        if let Some(sys) = self.systems.remove(id) {
            self.registry.unregister(&sys.live_id);
            return Some(());
        }
        let sub = self.subs.remove(id)?;
        self.release(&sub);
        Some(())
    }

    /// Takes subscription `sub` out of the registry and the hub.
    fn release(&self, sub: &Sub) {
        self.registry.unregister(&sub.live_id);
        self.hub.unwatch(
            self.connection,
            sub.query.def.id,
            &sub.query.scope,
            sub.query.guard(),
        );
    }

    pub fn caller(&self) -> Option<&Caller> {
        self.caller.as_ref()
    }

    /// The connection is now `caller`, speaking `protocol` (API.md 2.4): its `auth_success`.
    pub fn authenticated(&mut self, caller: Caller, protocol: Json) -> Json {
        let msg = ServerMessage::AuthSuccess {
            user: caller.user.clone(),
            role: caller.role.name().to_owned(),
            protocol,
        };
        self.caller = Some(caller);
        msg.into()
    }

    /// Handles a message other than `authenticate`; returns the messages to send.
    pub async fn handle(&mut self, engine: &Engine, msg: ClientMessage) -> Vec<Outgoing> {
        match msg {
            ClientMessage::Authenticate { .. } | ClientMessage::Ping => Vec::new(),
            ClientMessage::Subscribe { subscription } => {
                let Some(caller) = self.caller.clone() else {
                    return vec![
                        error(
                            "subscribe",
                            "AUTH_REQUIRED",
                            "Authenticate before subscribing",
                        )
                        .into(),
                    ];
                };
                self.subscribe(engine, &caller, subscription).await
            }
            ClientMessage::NextBatch {
                subscription_id, ..
            } => match self.caller.clone() {
                Some(caller) => self.next_page(engine, &caller, &subscription_id).await,
                None => Vec::new(),
            },
            ClientMessage::Unsubscribe { subscription_id } => {
                self.drop_sub(&subscription_id);
                self.streams.stop(&subscription_id);
                Vec::new()
            }
            ClientMessage::Tail { tail } => {
                let opened = match self.stream_id(&tail.id, "tail") {
                    Ok(caller) => self.streams.open_tail(engine, &caller, tail),
                    Err(e) => e,
                };
                vec![opened.into()]
            }
            ClientMessage::TailCredit { id, credit } => {
                outgoing(self.streams.grant_tail(&id, credit).into_iter().collect())
            }
            ClientMessage::TopicConsume { consume } => {
                let opened = match self.stream_id(&consume.id, "topic stream") {
                    Ok(caller) => self.streams.open_topic(engine, &caller, consume),
                    Err(e) => e,
                };
                vec![opened.into()]
            }
            ClientMessage::TopicCredit { id, credit } => {
                outgoing(self.streams.grant_topic(&id, credit).into_iter().collect())
            }
            ClientMessage::TopicAck {
                id,
                upto_offset,
                from_offset,
                action,
            } => {
                let ack = TopicAck {
                    id,
                    upto_offset,
                    from_offset,
                    action,
                };
                vec![self.streams.ack_topic(engine, ack).await.into()]
            }
            ClientMessage::TailStop { id } | ClientMessage::TopicStop { id } => {
                self.streams.stop(&id);
                Vec::new()
            }
        }
    }

    /// Whether a stream (a log tail or a topic stream) may open under `id`: its caller, or
    /// the error that refuses it.
    fn stream_id(&self, id: &str, what: &str) -> Result<Caller, Json> {
        let id = id.trim();
        let Some(caller) = self.caller.clone() else {
            return Err(error(
                what,
                "AUTH_REQUIRED",
                &format!("Authenticate before opening a {what}"),
            ));
        };
        let code = if what == "tail" {
            "INVALID_TAIL"
        } else {
            "INVALID_CONSUME"
        };
        if id.is_empty() {
            return Err(error(
                &format!("invalid_{}", what.replace(' ', "_")),
                code,
                &format!("A {what}'s id must not be blank"),
            ));
        }
        if self.streams.contains(id) || self.subs.contains_key(id) || self.systems.contains_key(id)
        {
            return Err(error(
                id,
                code,
                "A tail, topic stream or subscription with this id already exists on this connection",
            ));
        }
        if self.subs.len() + self.systems.len() + self.streams.len()
            >= MAX_SUBSCRIPTIONS_PER_CONNECTION
        {
            return Err(error(
                id,
                "UNSUPPORTED",
                "Too many subscriptions and streams on this connection",
            ));
        }
        Ok(caller)
    }

    /// Whether the connection has log tails or topic streams open.
    pub fn has_streams(&self) -> bool {
        !self.streams.is_empty()
    }

    /// Whether a stream may have something to send with nothing newly applied (a topic
    /// group's claims expire).
    pub fn streams_wait_on_time(&self) -> bool {
        self.streams.waits_on_time()
    }

    /// The next batch of each stream that has credit and something to send (one that
    /// fails is closed with an `error`); and whether more may be sent at once.
    pub async fn pump_streams(&mut self, engine: &Engine) -> (Vec<Outgoing>, bool) {
        let (out, more) = self.streams.pump(engine).await;
        (outgoing(out), more)
    }

    async fn subscribe(
        &mut self,
        engine: &Engine,
        caller: &Caller,
        req: SubscriptionRequest,
    ) -> Vec<Outgoing> {
        let id = req.id.trim().to_owned();
        if id.is_empty() {
            return outgoing(vec![error(
                "invalid_subscription",
                "INVALID_SUBSCRIPTION_ID",
                "Subscription id must not be blank",
            )]);
        }
        if self.subs.contains_key(&id) || self.systems.contains_key(&id) {
            return outgoing(vec![error(
                &id,
                "INVALID_SUBSCRIPTION_ID",
                "A subscription with this id already exists on this connection",
            )]);
        }
        if self.subs.len() + self.systems.len() >= MAX_SUBSCRIPTIONS_PER_CONNECTION {
            return outgoing(vec![error(
                &id,
                "UNSUPPORTED",
                "Too many subscriptions on this connection",
            )]);
        }
        let query = match self.plans.plan(engine, caller, &req.sql) {
            Ok(q) => q,
            Err(e) if e.code == SYSTEM_TABLE => {
                return outgoing(
                    self.subscribe_system(engine, caller, id, req, &e.message)
                        .await,
                );
            }
            Err(e) => return outgoing(vec![error(&id, e.code, &e.message)]),
        };
        let schema = query.schema_info();
        let options_json = req.options.as_ref().map_or_else(
            || "null".to_owned(),
            |o| {
                json!({"batch_size": o.batch_size, "last_rows": o.last_rows, "from": o.from})
                    .to_string()
            },
        );
        let live_id = match self.registry.register(
            self.connection,
            Registration {
                subscription_id: &id,
                user_id: &caller.user,
                namespace: &query.def.namespace,
                table: &query.def.name,
                query: &req.sql,
                options: options_json,
            },
        ) {
            Ok(l) => l,
            Err(e) => return outgoing(vec![error(&id, e.code(), &e.to_string())]),
        };
        // Watch before reading the boundary: every change above it reaches this inbox.
        self.hub
            .watch(self.connection, query.def.id, &query.scope, query.guard());
        let (_, floor) = read_point(engine);
        let mut sub = Sub {
            live_id,
            query,
            paging: None,
            batch_size: DEFAULT_BATCH_SIZE,
            listed_rows: self.listed_rows,
            batch_num: 0,
            departed: Vec::new(),
            overflowed: false,
            floor,
            sql: req.sql.clone(),
            read_at: 0,
            seen: HashMap::new(),
            read_until: 0,
            cursor: floor,
            tracks: false,
            settle: None,
            held: HashMap::new(),
        };
        let Some(options) = req.options else {
            // No options: no initial data, live changes from now on.
            self.subs.insert(id.clone(), sub);
            return outgoing(vec![ack(&id, BatchControl::READY, schema)]);
        };
        sub.batch_size = options
            .batch_size
            .unwrap_or(DEFAULT_BATCH_SIZE)
            .clamp(1, self.max_batch_size);
        let refuse = |sub: Sub, code: &str, message: &str| {
            self.release(&sub);
            outgoing(vec![error(&id, code, message)])
        };
        if options.last_rows.is_some_and(|n| n > sub.batch_size) {
            return refuse(sub, "UNSUPPORTED", "last_rows must not exceed batch_size");
        }
        let first = match (options.from, options.last_rows) {
            // Resume from the journal: exactly the changes after `from`, each evaluated on
            // its old and new image.
            (Some(from), _) if sub.query.def.kind != TableKind::Stream => {
                if let Err(e) = check_cursor(engine, from, floor) {
                    return refuse(sub, e.code, &e.message);
                }
                sub.paging = Some(Paging::Journal { after: from });
                page(engine, caller, &id, &mut sub).await
            }
            // A STREAM table (not journaled; append-only): its rows newer than `from`, and
            // the rows that left the view after it as deletes.
            (Some(from), _) => {
                let most = self.held_back();
                match engine
                    .live_departures(
                        caller,
                        &sub.query,
                        from,
                        Some(floor),
                        most.saturating_add(1),
                    )
                    .await
                {
                    Ok(rows) if rows.len() > most => {
                        return refuse(
                            sub,
                            "SUBSCRIPTION_FAILED",
                            "More rows left this view since options.from than the server catches up; subscribe without from",
                        );
                    }
                    Ok(rows) => {
                        sub.departed = rows
                            .into_iter()
                            .map(|r| change(&id, Notification::Delete(r.row)).into())
                            .collect();
                    }
                    Err(e) => return refuse(sub, e.code, &e.message),
                }
                start_paging(engine, caller, &id, &mut sub, Some(from)).await
            }
            // Only the newest rows: one batch.
            (None, Some(n)) => engine
                .live_page(caller, &sub.query, None, floor, n, true)
                .await
                .map(|rows| batch(&id, &mut sub, rows)),
            (None, None) => {
                sub.tracks = true;
                start_paging(engine, caller, &id, &mut sub, None).await
            }
        };
        let (control, first) = match first {
            Ok(f) => f,
            Err(e) => return refuse(sub, e.code, &e.message),
        };
        let mut out = vec![Outgoing::Json(ack(&id, control, schema))];
        out.extend(first);
        self.subs.insert(id, sub);
        out
    }

    /// The next page of subscription `id`'s initial data, when it is being paged (API.md
    /// 2.6: `next_batch`); after the last one, what was held back meanwhile.
    async fn next_page(&mut self, engine: &Engine, caller: &Caller, id: &str) -> Vec<Outgoing> {
        let Some(sub) = self.subs.get_mut(id) else {
            return Vec::new();
        };
        if sub.paging.is_none() {
            return Vec::new();
        }
        let mut out = match page(engine, caller, id, sub).await {
            Ok((_, out)) => out,
            Err(e) => {
                self.drop_sub(id);
                return vec![error(id, "BATCH_FETCH_FAILED", &e.message).into()];
            }
        };
        if sub.paging.is_none() && sub.overflowed {
            // Changes came while the client paged: they are caught up from the boundary.
            sub.overflowed = false;
            sub.cursor = sub.floor;
            let at = read_point(engine);
            out.extend(self.catch_up_one(engine, caller, id, at, None).await);
        }
        out
    }

    /// The change messages one applied entry gives this connection's subscriptions. With
    /// `share`, a subscription past its hand-off takes its messages from `delivery`'s shared
    /// encodings (computing them if it is the first).
    pub fn on_changes(&mut self, delivery: &Delivery, share: bool) -> Vec<Outgoing> {
        let set = &delivery.set;
        let mut out = Vec::new();
        let caller = self.caller.as_ref();
        for (id, sub) in self.subs.iter_mut() {
            if set.index.0 <= sub.read_at {
                continue;
            }
            if sub.tracks && sub.paging.is_none() && sub.settle.is_some_and(|s| set.index.0 > s) {
                sub.stop_tracking();
            }
            // A set without rows of this subscription's table and owner tells it nothing;
            // one at or below the boundary is in the initial data (an entry's versions all
            // lie on one side of it: the boundary is the newest `_seq` of an applied entry).
            let Some(seq) = notify::newest_seq(&sub.query, &set.events) else {
                continue;
            };
            if seq <= sub.floor {
                continue;
            }
            sub.cursor = sub.cursor.max(seq);
            // While the initial data pages, changes are caught up after its last page.
            if sub.paging.is_some() || sub.overflowed {
                sub.overflowed = true;
                continue;
            }
            // Past the versions the last catch-up read, nothing is skipped.
            if set.index.0 > sub.read_until && !sub.seen.is_empty() {
                sub.seen = HashMap::new();
            }
            let encode = |sub: &Sub| -> Encoded {
                let seen = &sub.seen;
                let notes = notify::notify_unseen(&sub.query, &set.events, |key, seq| {
                    seen.get(key).is_some_and(|&s| seq <= s)
                })?;
                Ok(notes
                    .into_iter()
                    .filter_map(|(key, seq, n)| {
                        let n = sub.as_held(&key, n)?;
                        let present = !matches!(n, Notification::Delete(_));
                        Some((key, seq, present, change_body(n)))
                    })
                    .collect())
            };
            let encoded = match caller {
                Some(c) if share && sub.seen.is_empty() && !sub.tracks && sub.paging.is_none() => {
                    let def = &sub.query.def;
                    delivery.shared(
                        (
                            c.user.clone(),
                            c.role.name(),
                            sub.sql.clone(),
                            def.id,
                            def.schema_version,
                        ),
                        || encode(sub),
                    )
                }
                _ => Arc::new(encode(sub)),
            };
            let msgs: Vec<Outgoing> = match encoded.as_ref() {
                Ok(entries) => entries
                    .iter()
                    .map(|(key, seq, present, body)| {
                        sub.hold(key, *seq, *present);
                        Outgoing::Text(with_id(id, body))
                    })
                    .collect(),
                Err(e) => vec![error(id, e.code(), &e.to_string()).into()],
            };
            sub.deliver(&self.registry, msgs, &mut out);
        }
        out
    }

    /// The connection fell behind the change feed (its queue overflowed, `missed` change
    /// sets were dropped, the rest of the queue has been discarded by the caller): each
    /// subscription is caught up from the materialized state — every row changed since its
    /// cursor, once, at its newest version, in `_seq` order; rows that left the view as
    /// deletes — and then tails again. One too far behind (more than the catch-up limit)
    /// gets an explicit error instead and is closed; the client resumes with
    /// `options.from`. Nothing is dropped silently.
    pub async fn catch_up(&mut self, engine: &Engine, missed: u64) -> Vec<Outgoing> {
        let Some(caller) = self.caller.clone() else {
            return Vec::new();
        };
        let at = read_point(engine);
        let mut out = Vec::new();
        let ids: Vec<String> = self.subs.keys().cloned().collect();
        for id in ids {
            if let Some(sub) = self.subs.get_mut(&id)
                && sub.paging.is_some()
            {
                // Still paging its initial data: nothing past the boundary has reached the
                // client; the catch-up follows the last page.
                sub.overflowed = true;
                continue;
            }
            out.extend(
                self.catch_up_one(engine, &caller, &id, at, Some(missed))
                    .await,
            );
        }
        out
    }

    /// Catches subscription `id` up from its cursor (see [`Session::catch_up`]), reading at
    /// `at` (see [`read_point`]) or later; `missed` change sets were dropped (`None`:
    /// changes that came while it paged were).
    async fn catch_up_one(
        &mut self,
        engine: &Engine,
        caller: &Caller,
        id: &str,
        (read_at, base): (u64, i64),
        missed: Option<u64>,
    ) -> Vec<Outgoing> {
        let Some(sub) = self.subs.get_mut(id) else {
            return Vec::new();
        };
        if sub.query.def.kind != TableKind::Stream {
            let told = match self.max_catch_up {
                0 => Err(None),
                most => journal_catch_up(engine, id, sub, most),
            };
            return match told {
                Ok(msgs) => {
                    let mut out = Vec::new();
                    sub.deliver(&self.registry, msgs, &mut out);
                    out
                }
                Err(e) => self.catch_up_failed(id, e, missed),
            };
        }
        // A STREAM table (not journaled; append-only): the rows newer than the cursor.
        let changes = if self.max_catch_up == 0 {
            Err(None)
        } else {
            match engine
                .live_changes_since(
                    caller,
                    &sub.query,
                    sub.cursor,
                    self.max_catch_up.saturating_add(1),
                )
                .await
            {
                Ok(c) if c.len() > self.max_catch_up => Err(None),
                Ok(c) => Ok(c),
                Err(e) => Err(Some(e)),
            }
        };
        let changes = match changes {
            Ok(c) => c,
            Err(e) => return self.catch_up_failed(id, e, missed),
        };
        sub.read_at = read_at;
        sub.read_until = applied(engine);
        sub.cursor = sub.cursor.max(base);
        sub.seen = changes
            .iter()
            .map(|(r, _)| (r.key.clone(), r.seq))
            .collect();
        let mut msgs = Vec::new();
        for (row, present) in changes {
            let note = match (present, sub.held.get(&row.key).copied()) {
                // The client has this version (an earlier catch-up told it).
                (true, Some(had)) if row.seq <= had => continue,
                (true, Some(_)) => {
                    sub.held.insert(row.key, row.seq);
                    notify::whole_update(&sub.query, row.row)
                }
                (true, None) => {
                    sub.held.insert(row.key, row.seq);
                    Notification::Insert(row.row)
                }
                (false, Some(_)) => {
                    sub.held.remove(&row.key);
                    Notification::Delete(row.row)
                }
                (false, None) => continue,
            };
            msgs.push(change(id, note).into());
        }
        let mut out = Vec::new();
        sub.deliver(&self.registry, msgs, &mut out);
        out
    }

    /// Closes subscription `id`, which could not be caught up (`None`: more changed than
    /// the limit), and tells the client why.
    fn catch_up_failed(
        &mut self,
        id: &str,
        e: Option<LiveError>,
        missed: Option<u64>,
    ) -> Vec<Outgoing> {
        let (code, msg) = match (e, missed) {
            (Some(e), _) => (e.code, e.message),
            (None, Some(missed)) => ("SUBSCRIPTION_FAILED", format!(
                "This connection fell {missed} change sets behind, more than the server catches up; resubscribe with options.from set to the last _seq received"
            )),
            (None, None) => ("SUBSCRIPTION_FAILED", "More rows changed while the initial data was paged than the server catches up; resubscribe with options.from set to the last _seq received".to_owned()),
        };
        self.drop_sub(id);
        vec![error(id, code, &msg).into()]
    }

    /// `KILL LIVE QUERY` closed subscription `id` (the registry has forgotten it): the
    /// message that tells the client.
    pub fn killed(&mut self, id: &str) -> Vec<Json> {
        match self.drop_sub(id) {
            Some(_) => vec![error(
                id,
                "SUBSCRIPTION_FAILED",
                "Live query killed by an administrator",
            )],
            None => Vec::new(),
        }
    }

    /// A subscription over a system table: the rows now (as one batch, when options were
    /// given), then an insert / update / delete for each row that differs at a later read.
    async fn subscribe_system(
        &mut self,
        engine: &Engine,
        caller: &Caller,
        id: String,
        req: SubscriptionRequest,
        declined: &str,
    ) -> Vec<Json> {
        let query = match engine.plan_system_live(caller, &req.sql, declined) {
            Ok(q) => q,
            Err(e) => return vec![error(&id, e.code, &e.message)],
        };
        let (names, rows) = match engine.system_rows(caller, &query).await {
            Ok(r) => r,
            Err(e) => return vec![error(&id, e.code, &e.message)],
        };
        let schema: Vec<Json> = names
            .iter()
            .enumerate()
            .map(|(index, name)| json!({"name": name, "index": index}))
            .collect();
        let live_id = match self.registry.register(
            self.connection,
            Registration {
                subscription_id: &id,
                user_id: &caller.user,
                namespace: &query.namespace,
                table: &query.table,
                query: &req.sql,
                options: "null".to_owned(),
            },
        ) {
            Ok(l) => l,
            Err(e) => return vec![error(&id, e.code(), &e.to_string())],
        };
        let mut out = vec![ack(&id, BatchControl::READY, schema)];
        if req.options.is_some() {
            out.push(
                ServerMessage::InitialDataBatch {
                    subscription_id: id.clone(),
                    rows: rows.iter().map(|(_, r)| r.clone()).collect(),
                    batch_control: BatchControl::READY,
                }
                .into(),
            );
        }
        self.systems.insert(
            id,
            SystemSub {
                live_id,
                query,
                rows: rows.into_iter().collect(),
                polled: std::time::Instant::now(),
            },
        );
        out
    }

    /// Re-reads the system subscriptions due for it; the changes since the last read.
    pub async fn poll(&mut self, engine: &Engine) -> Vec<Json> {
        let Some(caller) = self.caller.clone() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (id, sys) in self.systems.iter_mut() {
            if sys.polled.elapsed() < SYSTEM_POLL {
                continue;
            }
            sys.polled = std::time::Instant::now();
            let now: BTreeMap<String, RowObject> =
                match engine.system_rows(&caller, &sys.query).await {
                    Ok((_, r)) => r.into_iter().collect(),
                    Err(e) => {
                        out.push(error(id, e.code, &e.message));
                        continue;
                    }
                };
            let mut msgs = Vec::new();
            for (key, row) in &now {
                match sys.rows.get(key) {
                    None => msgs.push(change(id, Notification::Insert(row.clone()))),
                    Some(old) if old != row => msgs.push(change(
                        id,
                        Notification::Update {
                            new: row.clone(),
                            old: old.clone(),
                        },
                    )),
                    Some(_) => {}
                }
            }
            for (key, old) in &sys.rows {
                if !now.contains_key(key) {
                    msgs.push(change(id, Notification::Delete(old.clone())));
                }
            }
            if !msgs.is_empty() {
                self.registry.delivered(&sys.live_id, msgs.len() as u64);
            }
            sys.rows = now;
            out.extend(msgs);
        }
        out
    }

    /// Ids of the open subscriptions.
    pub fn subscriptions(&self) -> Vec<String> {
        self.subs
            .keys()
            .chain(self.systems.keys())
            .cloned()
            .collect()
    }
}

impl Sub {
    /// What notification `n` of the row at `key` is to a client whose view `held` lists (the
    /// same when it does not): a row no page brought (it changed after it was listed) is
    /// inserted by its update, with every column; a delete of it is nothing.
    fn as_held(&self, key: &str, n: Notification) -> Option<Notification> {
        if !self.tracks || self.held.contains_key(key) {
            return Some(n);
        }
        match n {
            Notification::Update { new, .. } => Some(Notification::Insert(whole(&self.query, new))),
            Notification::Delete(_) => None,
            n => Some(n),
        }
    }

    /// Notes that the client was told of the row at `key` at version `seq` (`present`: it
    /// is in the view).
    fn hold(&mut self, key: &str, seq: i64, present: bool) {
        if !self.tracks {
            return;
        }
        if present {
            self.held.insert(key.to_owned(), seq);
        } else {
            self.held.remove(key);
        }
    }

    /// The client's view no longer needs listing (see `settle`).
    fn stop_tracking(&mut self) {
        self.tracks = false;
        self.settle = None;
        self.held = HashMap::new();
    }

    /// The change messages `events` (journal changes) give this subscription: exactly what
    /// each means to its filter, as held.
    fn told(&mut self, id: &str, events: &[RowEvent]) -> Result<Vec<Outgoing>, LiveError> {
        let notes =
            notify::notify_unseen(&self.query, events, |_, _| false).map_err(|e| LiveError {
                code: e.code(),
                message: e.to_string(),
            })?;
        let mut out = Vec::with_capacity(notes.len());
        for (key, seq, n) in notes {
            let Some(n) = self.as_held(&key, n) else {
                continue;
            };
            self.hold(&key, seq, !matches!(n, Notification::Delete(_)));
            out.push(change(id, n).into());
        }
        Ok(out)
    }

    /// Counts `msgs` as delivered and sends them.
    fn deliver(&mut self, registry: &Registry, msgs: Vec<Outgoing>, out: &mut Vec<Outgoing>) {
        if !msgs.is_empty() {
            registry.delivered(&self.live_id, msgs.len() as u64);
        }
        out.extend(msgs);
    }
}

/// Where a read starts: the applied index, and the newest `_seq` at or before it (read
/// first, so that it never runs ahead of the index).
fn read_point(engine: &Engine) -> (u64, i64) {
    let seq = EventFold::last_seq(engine.store())
        .ok()
        .flatten()
        .unwrap_or(0);
    (applied(engine), seq)
}

fn applied(engine: &Engine) -> u64 {
    engine
        .store()
        .applied_index()
        .ok()
        .flatten()
        .map_or(0, |i| i.0)
}

/// A `subscription_ack`.
fn ack(id: &str, batch_control: BatchControl, schema: impl serde::Serialize) -> Json {
    ServerMessage::SubscriptionAck {
        subscription_id: id.to_owned(),
        total_rows: 0,
        batch_control,
        // Column descriptions (strings and numbers): serializing cannot fail.
        schema: serde_json::to_value(schema).unwrap_or(Json::Null),
    }
    .into()
}

/// A change message's JSON text without its `subscription_id`: what every subscription told
/// of the same rows shares. [`with_id`] makes it one subscription's message.
fn change_body(n: Notification) -> Arc<str> {
    let mut msg = change("", n);
    if let Json::Object(members) = &mut msg {
        members.remove("subscription_id");
    }
    Arc::from(msg.to_string())
}

/// Subscription `id`'s message from a [`change_body`]: the id goes in as the first member.
fn with_id(id: &str, body: &str) -> Arc<str> {
    let rest = body.strip_prefix('{').unwrap_or(body);
    let id = Json::from(id).to_string();
    let mut text = String::with_capacity(body.len() + id.len() + 20);
    text.push_str("{\"subscription_id\":");
    text.push_str(&id);
    text.push(',');
    text.push_str(rest);
    Arc::from(text)
}

fn change(id: &str, n: Notification) -> Json {
    let (change_type, rows, old_values) = match n {
        Notification::Insert(row) => (ChangeType::Insert, Some(vec![row]), None),
        Notification::Update { new, old } => (ChangeType::Update, Some(vec![new]), Some(vec![old])),
        Notification::Delete(old) => (ChangeType::Delete, None, Some(vec![old])),
    };
    ServerMessage::Change {
        subscription_id: id.to_owned(),
        change_type,
        rows,
        old_values,
    }
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_change_body_becomes_each_subscriptions_own_message() {
        let row = |pairs: &[(&str, Json)]| -> serde_json::Map<String, Json> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect()
        };
        let notes = [
            Notification::Insert(row(&[("id", Json::from("1")), ("_seq", Json::from("7"))])),
            Notification::Update {
                new: row(&[("id", Json::from("1")), ("n", Json::from(2))]),
                old: row(&[("id", Json::from("1")), ("n", Json::from(1))]),
            },
            Notification::Delete(row(&[
                ("id", Json::from("1")),
                ("_deleted", Json::from(true)),
            ])),
        ];
        for n in notes {
            let body = change_body(n.clone());
            assert!(!body.contains("subscription_id"), "{body}");
            for id in ["s1", "with \"quotes\" and \\", "ünï\u{1}"] {
                let text = with_id(id, &body);
                let parsed: Json = serde_json::from_str(&text).expect("valid JSON");
                assert_eq!(parsed, change(id, n.clone()), "{text}");
            }
        }
    }
}
