//! `/v1/ws` (API.md 2): one task per connection drives a [`Session`] with the client's
//! frames and the node's change feed. Authentication by the upgrade's bearer header or by an
//! `authenticate` message within the timeout; JSON or MessagePack framing, large messages
//! gzip'ed; a per-connection message rate limit; an idle connection is closed. A connection
//! that falls behind the feed is caught up from the materialized state, never dropped
//! silently.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use folddb_realtime::hub::Inbox;
use folddb_realtime::session::Outgoing;
use folddb_realtime::session::error;
use folddb_realtime::{ClientMessage, Frame, Session, Wire};
use futures::{SinkExt, StreamExt};
use serde_json::{Value as Json, json};
use warp::ws::{Message, WebSocket};

use crate::server::{State, caller_of};

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

type Tx = futures::stream::SplitSink<WebSocket, Message>;

/// Sends one message in the connection's framing; false once the socket is gone.
async fn send(tx: &mut Tx, wire: &Wire, msg: &Json) -> bool {
    let frame = match wire.encode(msg) {
        Frame::Text(t) => Message::text(t),
        Frame::Binary(b) => Message::binary(b),
    };
    tx.send(frame).await.is_ok()
}

async fn send_all(tx: &mut Tx, wire: &Wire, msgs: &[Json]) -> bool {
    for m in msgs {
        if !send(tx, wire, m).await {
            return false;
        }
    }
    true
}

/// Sends session output: its own messages, and ones already encoded and shared.
async fn send_out(tx: &mut Tx, wire: &Wire, msgs: &[Outgoing]) -> bool {
    for m in msgs {
        let frame = match m {
            Outgoing::Json(j) => wire.encode(j),
            Outgoing::Text(t) => wire.encode_text(t),
        };
        let frame = match frame {
            Frame::Text(t) => Message::text(t),
            Frame::Binary(b) => Message::binary(b),
        };
        if tx.send(frame).await.is_err() {
            return false;
        }
    }
    true
}

/// `auth_error` is always plain text (API.md 2.2), then the close.
async fn refuse(tx: &mut Tx, message: &str, reason: &str) {
    let msg = json!({"type": "auth_error", "message": message});
    let _ = tx.send(Message::text(msg.to_string())).await;
    close(tx, 1008, reason).await;
}

async fn close(tx: &mut Tx, code: u16, reason: &str) {
    let _ = tx.send(Message::close_with(code, reason.to_owned())).await;
    let _ = tx.close().await;
}

fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Client messages per second: a fixed one-second window.
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

/// Empties the inbox after the connection fell behind: what it held and what it missed are
/// both covered by the catch-up that follows. Returns how many change sets were missed.
fn drain(inbox: &mut Inbox) -> u64 {
    while inbox.changes.try_recv().is_ok() {}
    inbox.missed.swap(0, Ordering::Relaxed)
}

pub async fn connection(
    state: Arc<State>,
    socket: WebSocket,
    authorization: Option<String>,
    params: Params,
) {
    let (connection, mut kills) = state.live.connect();
    // Change sets for the rows this connection's subscriptions watch arrive in `inbox`;
    // a subscription watches before it reads its initial data, so none is missed.
    let (session, mut inbox) = Session::new(state.live.clone(), state.hub.clone(), connection);
    let mut session = session.with_max_catch_up(state.live_config.max_catch_up_rows);
    let mut wire = Wire {
        msgpack: false,
        gzip: !params.no_gzip,
    };
    let (mut tx, mut rx) = socket.split();
    if let Some(header) = authorization {
        match bearer(&header).map(|t| caller_of(&state, t)) {
            Some(Ok(caller)) => {
                wire.msgpack = params.msgpack;
                // auth_success is JSON; the connection's framing applies after it.
                let ok = session.authenticated(caller, wire.protocol());
                if tx.send(Message::text(ok.to_string())).await.is_err() {
                    return;
                }
            }
            _ => {
                refuse(&mut tx, "Invalid credentials", "Authentication failed").await;
                return;
            }
        }
    }
    let opened = Instant::now();
    let mut last_activity = Instant::now();
    let mut rate = RateLimit {
        limit: state.live_config.max_messages_per_sec,
        window: Instant::now(),
        count: 0,
    };
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            frame = rx.next() => {
                let Some(Ok(frame)) = frame else { break };
                last_activity = Instant::now();
                if frame.is_close() {
                    break;
                }
                if !frame.is_text() && !frame.is_binary() {
                    continue; // ping / pong: activity only
                }
                let bytes = frame.as_bytes();
                if bytes.len() > MAX_FRAME_BYTES {
                    let e = error("protocol", "MESSAGE_TOO_LARGE", "Message exceeds 1 MiB");
                    if !send(&mut tx, &wire, &e).await {
                        break;
                    }
                    continue;
                }
                if !rate.allow() {
                    let e = error("rate_limit", "RATE_LIMIT_EXCEEDED",
                        &format!("More than {} messages per second", rate.limit));
                    if !send(&mut tx, &wire, &e).await {
                        break;
                    }
                    continue;
                }
                let parsed = if frame.is_binary() {
                    if !wire.msgpack {
                        let e = error("protocol", "UNSUPPORTED_DATA", "Binary not supported");
                        if !send(&mut tx, &wire, &e).await {
                            break;
                        }
                        continue;
                    }
                    wire.decode_binary(bytes, MAX_FRAME_BYTES)
                } else {
                    std::str::from_utf8(bytes)
                        .map_err(|e| format!("Invalid message: {e}"))
                        .and_then(ClientMessage::parse)
                };
                let msg = match parsed {
                    Ok(m) => m,
                    Err(reason) => {
                        close(&mut tx, 1011, &reason.chars().take(120).collect::<String>()).await;
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
                                    refuse(&mut tx, "Invalid credentials", "Authentication failed").await;
                                    break;
                                }
                            },
                        };
                        let ok = session.authenticated(caller, wire.protocol());
                        if tx.send(Message::text(ok.to_string())).await.is_err() {
                            break;
                        }
                        Vec::new()
                    }
                    other => session.handle(&state.engine, other).await,
                };
                if !send_out(&mut tx, &wire, &replies).await {
                    return;
                }
            }
            set = inbox.changes.recv() => {
                let Some(set) = set else { break };
                let replies = if inbox.missed.load(Ordering::Relaxed) > 0 {
                    let missed = drain(&mut inbox);
                    tracing::info!(connection, missed, "catching up a connection that fell behind");
                    session.catch_up(&state.engine, missed).await
                } else {
                    // JSON connections share encodings; MessagePack ones encode their own.
                    session.on_changes(&set, !wire.msgpack)
                };
                if !send_out(&mut tx, &wire, &replies).await {
                    return;
                }
            }
            Some(id) = kills.recv() => {
                if !send_all(&mut tx, &wire, &session.killed(&id)).await {
                    return;
                }
            }
            _ = tick.tick() => {
                if !send_all(&mut tx, &wire, &session.poll(&state.engine).await).await {
                    return;
                }
                if session.caller().is_none() && opened.elapsed() > AUTH_TIMEOUT {
                    refuse(&mut tx, "Authentication timeout - no auth message received within 3 seconds",
                        "Authentication timeout").await;
                    break;
                }
                if last_activity.elapsed() > CLIENT_TIMEOUT {
                    close(&mut tx, 1000, "Heartbeat timeout").await;
                    break;
                }
            }
        }
    }
}
