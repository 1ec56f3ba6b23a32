//! `/v1/ws` (API.md 2): one task per connection drives a [`Session`] with the client's
//! frames and the node's change feed. Authentication by the upgrade's bearer header or by an
//! `authenticate` message within the timeout; an idle connection is closed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use folddb_realtime::session::error;
use folddb_realtime::{ClientMessage, Session};
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

type Tx = futures::stream::SplitSink<WebSocket, Message>;

async fn send(tx: &mut Tx, msg: &Json) -> bool {
    tx.send(Message::text(msg.to_string())).await.is_ok()
}

async fn close(tx: &mut Tx, code: u16, reason: &str) {
    let _ = tx.send(Message::close_with(code, reason.to_owned())).await;
    let _ = tx.close().await;
}

fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

pub async fn connection(state: Arc<State>, socket: WebSocket, authorization: Option<String>) {
    let (connection, mut kills) = state.live.connect();
    // Change sets for the rows this connection's subscriptions watch arrive in `inbox`;
    // a subscription watches before it reads its initial data, so none is missed.
    let (mut session, mut inbox) = Session::new(state.live.clone(), state.hub.clone(), connection);
    let (mut tx, mut rx) = socket.split();
    if let Some(header) = authorization {
        match bearer(&header).map(|t| caller_of(&state, t)) {
            Some(Ok(caller)) => {
                let ok = session.authenticated(caller);
                if !send(&mut tx, &ok).await {
                    return;
                }
            }
            _ => {
                let _ = send(
                    &mut tx,
                    &json!({"type": "auth_error", "message": "Invalid credentials"}),
                )
                .await;
                close(&mut tx, 1008, "Authentication failed").await;
                return;
            }
        }
    }
    let opened = Instant::now();
    let mut last_activity = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            frame = rx.next() => {
                let Some(Ok(frame)) = frame else { break };
                last_activity = Instant::now();
                if frame.is_close() {
                    break;
                }
                if frame.is_binary() {
                    if !send(&mut tx, &error("protocol", "UNSUPPORTED_DATA", "Binary not supported")).await {
                        break;
                    }
                    continue;
                }
                let Ok(text) = frame.to_str() else { continue };
                if text.len() > MAX_FRAME_BYTES {
                    if !send(&mut tx, &error("protocol", "MESSAGE_TOO_LARGE", "Message exceeds 1 MiB")).await {
                        break;
                    }
                    continue;
                }
                let msg = match ClientMessage::parse(text) {
                    Ok(m) => m,
                    Err(reason) => {
                        close(&mut tx, 1011, &reason.chars().take(120).collect::<String>()).await;
                        break;
                    }
                };
                let replies = match msg {
                    ClientMessage::Authenticate { token, .. } => {
                        if let Some(caller) = session.caller().cloned() {
                            vec![session.authenticated(caller)]
                        } else {
                            match caller_of(&state, &token) {
                                Ok(caller) => vec![session.authenticated(caller)],
                                Err(_) => {
                                    let _ = send(&mut tx, &json!({"type": "auth_error", "message": "Invalid credentials"})).await;
                                    close(&mut tx, 1008, "Authentication failed").await;
                                    break;
                                }
                            }
                        }
                    }
                    other => session.handle(&state.engine, other).await,
                };
                for r in &replies {
                    if !send(&mut tx, r).await {
                        return;
                    }
                }
            }
            set = inbox.changes.recv() => {
                let Some(set) = set else { break };
                let missed = inbox.missed.swap(0, std::sync::atomic::Ordering::Relaxed);
                let replies = if missed > 0 {
                    session.lagged(missed)
                } else {
                    session.on_changes(&set)
                };
                for r in &replies {
                    if !send(&mut tx, r).await {
                        return;
                    }
                }
            }
            Some(id) = kills.recv() => {
                for r in &session.killed(&id) {
                    if !send(&mut tx, r).await {
                        return;
                    }
                }
            }
            _ = tick.tick() => {
                if session.caller().is_none() && opened.elapsed() > AUTH_TIMEOUT {
                    let _ = send(&mut tx, &json!({"type": "auth_error",
                        "message": "Authentication timeout - no auth message received within 3 seconds"})).await;
                    close(&mut tx, 1008, "Authentication timeout").await;
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
