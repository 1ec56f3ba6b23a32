//! `/v1/ws` (API.md 2): one task per connection drives a [`Session`] with the client's
//! frames and the node's change feed, and a reader task beside it takes the client's frames
//! as they arrive, so that keepalives count even while the connection is busy sending.
//! Authentication by the upgrade's bearer header or by an `authenticate` message within the
//! timeout; JSON or MessagePack framing, large messages gzip'ed; a per-connection message
//! rate limit; an idle connection is closed. A connection that falls behind the feed is
//! caught up from the materialized state, never dropped silently.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use folddb_realtime::hub::Inbox;
use folddb_realtime::session::Outgoing;
use folddb_realtime::session::error;
use folddb_realtime::{ClientMessage, Frame, Session, Wire};
use futures::{SinkExt, StreamExt};
use serde_json::Value as Json;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

use crate::server::{State, account_unchanged, caller_of};
use crate::ws::Socket;

/// How often an authenticated connection checks that its account is unchanged.
const ACCOUNT_CHECK: Duration = Duration::from_secs(2);

/// Largest client frame (API.md 2.2); larger ones get `MESSAGE_TOO_LARGE`.
pub const MAX_FRAME_BYTES: usize = 1 << 20;
/// Time to authenticate after the upgrade.
const AUTH_TIMEOUT: Duration = Duration::from_secs(3);
/// Idle time after which the connection is closed (no frame of any kind).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// The upgrade's query parameters (API.md 2.1).
#[derive(Debug, Clone, Copy, Default)]
pub struct Params {
    /// `compress=false`, or `compression=none`: never gzip.
    no_gzip: bool,
    /// `serialization=msgpack` (read with header authentication).
    msgpack: bool,
}

impl Params {
    pub fn from_query(q: &HashMap<String, String>) -> Params {
        let is = |k: &str, v: &str| q.get(k).is_some_and(|x| x.eq_ignore_ascii_case(v));
        Params {
            no_gzip: is("compress", "false") || is("compression", "none"),
            msgpack: is("serialization", "msgpack"),
        }
    }
}

type Tx = futures::stream::SplitSink<Socket, Message>;
type Rx = futures::stream::SplitStream<Socket>;

/// When the client last sent a frame of any kind, stamped by the reader task as frames
/// arrive — not when the connection loop gets round to them, so that a loop held up sending
/// to a slow reader never takes that client's pings for silence (API.md 2.7).
#[derive(Debug)]
struct Activity {
    since: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            since: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.since.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// How long the client has been silent.
    fn idle(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.since.elapsed().saturating_sub(last)
    }
}

/// The sending half of a connection. A send that cannot complete (the client stopped
/// reading) waits for as long as the client shows signs of life, and gives up once it has
/// been silent for [`CLIENT_TIMEOUT`]: a stuck peer never pins the connection for ever.
struct Outbox {
    tx: Tx,
    activity: Arc<Activity>,
}

impl Outbox {
    /// Sends one frame; false once the socket is gone, or once this send has waited
    /// [`CLIENT_TIMEOUT`] on a client that was silent all that time (it neither reads nor
    /// writes). A client that reads, however slowly, or that pings, is waited for.
    async fn put(&mut self, frame: Message) -> bool {
        self.put_all(vec![frame]).await
    }

    /// Sends frames in order with one flush: a change that reaches many subscriptions of
    /// this connection goes out in as few writes as the socket takes, not one per message.
    /// Gives up as [`Outbox::put`] does.
    async fn put_all(&mut self, frames: Vec<Message>) -> bool {
        if frames.is_empty() {
            return true;
        }
        let (tx, activity) = (&mut self.tx, &self.activity);
        let send = async move {
            for frame in frames {
                tx.feed(frame).await?;
            }
            tx.flush().await
        };
        tokio::pin!(send);
        if let Some(sent) = futures::FutureExt::now_or_never(&mut send) {
            return sent.is_ok();
        }
        loop {
            tokio::select! {
                sent = &mut send => return sent.is_ok(),
                () = tokio::time::sleep(CLIENT_TIMEOUT) => {
                    if activity.idle() >= CLIENT_TIMEOUT {
                        tracing::info!("dropping a connection that neither reads nor writes");
                        return false;
                    }
                }
            }
        }
    }

    /// Sends one message in the connection's framing.
    async fn send(&mut self, wire: &Wire, msg: &Json) -> bool {
        self.put(message(wire.encode(msg))).await
    }

    async fn send_all(&mut self, wire: &Wire, msgs: &[Json]) -> bool {
        let frames = msgs.iter().map(|m| message(wire.encode(m))).collect();
        self.put_all(frames).await
    }

    /// Sends session output: its own messages, and ones already encoded and shared.
    async fn send_out(&mut self, wire: &Wire, msgs: &[Outgoing]) -> bool {
        let frames = msgs
            .iter()
            .map(|m| {
                message(match m {
                    Outgoing::Json(j) => wire.encode(j),
                    Outgoing::Text(t) => wire.encode_text(t),
                })
            })
            .collect();
        self.put_all(frames).await
    }

    /// `auth_error` is always plain text (API.md 2.2), then the close.
    async fn refuse(&mut self, message: &str, reason: &str) {
        let msg = Json::from(folddb_realtime::ServerMessage::AuthError {
            message: message.to_owned(),
        });
        if self.put(Message::text(msg.to_string())).await {
            self.close(1008, reason).await;
        }
    }

    async fn close(&mut self, code: u16, reason: &str) {
        let frame = CloseFrame {
            code: code.into(),
            reason: reason.into(),
        };
        if self.put(Message::Close(Some(frame))).await {
            let _ = tokio::time::timeout(Duration::from_secs(1), self.tx.close()).await;
        }
    }
}

fn message(frame: Frame) -> Message {
    match frame {
        Frame::Text(t) => Message::text(t),
        Frame::Binary(b) => Message::binary(b),
    }
}

fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Client messages per second: a fixed one-second window.
#[derive(Debug)]
struct RateLimit {
    limit: u32,
    window: Instant,
    count: u32,
}

impl RateLimit {
    fn allow(&mut self) -> bool {
        if self.window.elapsed() >= Duration::from_secs(1) {
            self.window = Instant::now();
            self.count = 0;
        }
        self.count += 1;
        self.limit == 0 || self.count <= self.limit
    }
}

/// What the reader task hands the connection loop.
#[derive(Debug)]
enum Incoming {
    /// A text or binary frame within the size and rate limits.
    Frame(Message),
    TooLarge,
    RateLimited,
    Close,
}

/// Frames the reader may hold for a connection loop that is busy sending.
const INCOMING_QUEUE: usize = 16;

/// Reads the client's frames as they arrive, whatever the connection loop is doing: stamps
/// [`Activity`], applies the size and rate limits, answers keepalives (ping frames and
/// `{"type":"ping"}`: activity only) and hands the rest on.
async fn read(
    mut rx: Rx,
    to: mpsc::Sender<Incoming>,
    activity: Arc<Activity>,
    mut rate: RateLimit,
) {
    while let Some(Ok(frame)) = rx.next().await {
        activity.touch();
        let incoming = if frame.is_close() {
            Incoming::Close
        } else if !frame.is_text() && !frame.is_binary() {
            continue;
        } else if frame.len() > MAX_FRAME_BYTES {
            Incoming::TooLarge
        } else if !rate.allow() {
            Incoming::RateLimited
        } else if is_ping(&frame) {
            continue;
        } else {
            Incoming::Frame(frame)
        };
        let last = matches!(incoming, Incoming::Close);
        if to.send(incoming).await.is_err() || last {
            return;
        }
    }
}

/// A JSON `{"type":"ping"}` (MessagePack ones are handed on, and ignored there).
fn is_ping(frame: &Message) -> bool {
    matches!(frame, Message::Text(t) if matches!(ClientMessage::parse(t), Ok(ClientMessage::Ping)))
}

/// Aborts the reader task when the connection ends, however it ends.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Catches up a connection that fell behind the change feed: empties its inbox (what it
/// held and what it missed are both covered by the catch-up), then reads what changed.
async fn catch_up(
    state: &State,
    session: &mut Session,
    inbox: &mut Inbox,
    connection: u64,
) -> Vec<Outgoing> {
    while inbox.changes.try_recv().is_ok() {}
    let missed = inbox.missed.swap(0, Ordering::Relaxed);
    tracing::info!(
        connection,
        missed,
        "catching up a connection that fell behind"
    );
    session.catch_up(&state.engine, missed).await
}

pub async fn connection(
    state: Arc<State>,
    socket: Socket,
    authorization: Option<String>,
    params: Params,
) {
    let (connection, mut kills) = state.live.connect();
    // Change sets for the rows this connection's subscriptions watch arrive in `inbox`;
    // a subscription watches before it reads its initial data, so none is missed.
    let (session, mut inbox) = Session::new(state.live.clone(), state.hub.clone(), connection);
    let mut session = session
        .with_plans(state.plans.clone())
        .with_max_catch_up(state.live_config.max_catch_up_rows)
        .with_max_batch_size(state.live_config.max_batch_size)
        .with_listed_rows(state.live_config.listed_rows);
    let mut wire = Wire {
        msgpack: false,
        gzip: !params.no_gzip,
    };
    let (tx, rx) = socket.split();
    let activity = Arc::new(Activity::new());
    let mut out = Outbox {
        tx,
        activity: activity.clone(),
    };
    let (to_loop, mut frames) = mpsc::channel(INCOMING_QUEUE);
    let rate = RateLimit {
        limit: state.live_config.max_messages_per_sec,
        window: Instant::now(),
        count: 0,
    };
    let _reader =
        AbortOnDrop(tokio::spawn(read(rx, to_loop, activity.clone(), rate)).abort_handle());
    if let Some(header) = authorization {
        match bearer(&header).map(|t| caller_of(&state, t)) {
            Some(Ok(caller)) => {
                wire.msgpack = params.msgpack;
                // auth_success is JSON; the connection's framing applies after it.
                let ok = session.authenticated(caller, wire.protocol());
                if !out.put(Message::text(ok.to_string())).await {
                    return;
                }
            }
            _ => {
                out.refuse("Invalid credentials", "Authentication failed")
                    .await;
                return;
            }
        }
    }
    let opened = Instant::now();
    let mut account_checked = Instant::now();
    // Log tails and topic streams read on when more is applied, or at once while they have
    // more to read.
    let mut applied = state.hub.applied();
    let mut pump = false;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            incoming = frames.recv() => {
                let frame = match incoming {
                    None | Some(Incoming::Close) => break,
                    Some(Incoming::TooLarge) => {
                        let e = error("protocol", "MESSAGE_TOO_LARGE", "Message exceeds 1 MiB");
                        if !out.send(&wire, &e).await {
                            break;
                        }
                        continue;
                    }
                    Some(Incoming::RateLimited) => {
                        let e = error("rate_limit", "RATE_LIMIT_EXCEEDED",
                            &format!("More than {} messages per second",
                                state.live_config.max_messages_per_sec));
                        if !out.send(&wire, &e).await {
                            break;
                        }
                        continue;
                    }
                    Some(Incoming::Frame(frame)) => frame,
                };
                let bytes: &[u8] = match &frame {
                    Message::Text(t) => t.as_bytes(),
                    Message::Binary(b) => b,
                    _ => continue,
                };
                let parsed = if frame.is_binary() {
                    if !wire.msgpack {
                        let e = error("protocol", "UNSUPPORTED_DATA", "Binary not supported");
                        if !out.send(&wire, &e).await {
                            break;
                        }
                        continue;
                    }
                    wire.decode_binary(bytes, MAX_FRAME_BYTES)
                } else {
                    std::str::from_utf8(bytes)
                        .map_err(|e| folddb_realtime::Error::InvalidMessage {
                            reason: e.to_string(),
                        })
                        .and_then(ClientMessage::parse)
                };
                let msg = match parsed {
                    Ok(m) => m,
                    Err(e) => {
                        let reason = e.to_string();
                        out.close(1011, &reason.chars().take(120).collect::<String>()).await;
                        break;
                    }
                };
                let replies = match msg {
                    ClientMessage::Authenticate { token, protocol, .. } => {
                        let caller = match session.caller().cloned() {
                            Some(c) => c,
                            None => match caller_of(&state, &token) {
                                Ok(c) => {
                                    wire.msgpack = protocol.serialization.eq_ignore_ascii_case("msgpack");
                                    if protocol.compression.eq_ignore_ascii_case("none") {
                                        wire.gzip = false;
                                    }
                                    c
                                }
                                Err(_) => {
                                    out.refuse("Invalid credentials", "Authentication failed").await;
                                    break;
                                }
                            },
                        };
                        let ok = session.authenticated(caller, wire.protocol());
                        if !out.put(Message::text(ok.to_string())).await {
                            break;
                        }
                        Vec::new()
                    }
                    other => {
                        // A subscription or tail starts from every write acknowledged before
                        // it, whichever node took it (on a follower: once it has applied as
                        // far as the leader had committed).
                        let starts = match &other {
                            ClientMessage::Subscribe { subscription } => Some(&subscription.id),
                            ClientMessage::Tail { tail } => Some(&tail.id),
                            ClientMessage::TopicConsume { consume } => Some(&consume.id),
                            _ => None,
                        };
                        let barrier = match starts {
                            Some(id) => state.node.read_barrier().await.err().map(|e| (id.clone(), e)),
                            None => None,
                        };
                        match barrier {
                            Some((id, e)) => {
                                vec![error(&id, "LEADER_NOT_AVAILABLE", &e.to_string()).into()]
                            }
                            None => session.handle(&state.engine, other).await,
                        }
                    }
                };
                if !out.send_out(&wire, &replies).await {
                    return;
                }
                pump = session.has_streams();
            }
            Ok(()) = applied.changed(), if session.has_streams() && !pump => {
                pump = true;
            }
            () = std::future::ready(()), if pump => {
                let (batches, more) = session.pump_streams(&state.engine).await;
                pump = more;
                if !out.send_out(&wire, &batches).await {
                    return;
                }
            }
            set = inbox.changes.recv() => {
                let Some(set) = set else { break };
                let replies = if inbox.missed.load(Ordering::Relaxed) > 0 {
                    catch_up(&state, &mut session, &mut inbox, connection).await
                } else {
                    // JSON connections share encodings; MessagePack ones encode their own.
                    session.on_changes(&set, !wire.msgpack)
                };
                if !out.send_out(&wire, &replies).await {
                    return;
                }
            }
            Some(id) = kills.recv() => {
                if !out.send_all(&wire, &session.killed(&id)).await {
                    return;
                }
            }
            _ = tick.tick() => {
                // A consumer group's expired claims are due again with nothing applied.
                pump |= session.streams_wait_on_time();
                // Change sets can be missed with nothing left queued to say so (the feed
                // itself lagged): the tick notices them.
                if inbox.missed.load(Ordering::Relaxed) > 0 {
                    let replies = catch_up(&state, &mut session, &mut inbox, connection).await;
                    if !out.send_out(&wire, &replies).await {
                        return;
                    }
                }
                if !out.send_all(&wire, &session.poll(&state.engine).await).await {
                    return;
                }
                if session.caller().is_none() && opened.elapsed() > AUTH_TIMEOUT {
                    out.refuse("Authentication timeout - no auth message received within 3 seconds",
                        "Authentication timeout").await;
                    break;
                }
                if account_checked.elapsed() >= ACCOUNT_CHECK
                    && let Some(caller) = session.caller()
                {
                    account_checked = Instant::now();
                    if !account_unchanged(&state, caller) {
                        tracing::info!(connection, user = %caller.user,
                            "closing the connection of a dropped or changed account");
                        out.close(1008, "Account dropped or changed").await;
                        break;
                    }
                }
                if activity.idle() > CLIENT_TIMEOUT {
                    tracing::info!(connection, "closing a connection idle past the client timeout");
                    out.close(1000, "Heartbeat timeout").await;
                    break;
                }
            }
        }
    }
}
