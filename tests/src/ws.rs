//! A WebSocket client for `/v1/ws`, as the black-box tests drive it: connect (header or
//! message authentication, query parameters), send JSON, read the server's messages in
//! either framing (text JSON, or gzip'ed JSON in a binary frame; API.md 2.2), and keep a
//! subscriber's view by applying what arrives.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens `/v1/ws?{query}` on `port`, with `token` as a bearer header when given.
pub async fn connect_with(port: u16, token: Option<&str>, query: &str) -> Ws {
    let mut req = format!("ws://127.0.0.1:{port}/v1/ws?{query}")
        .into_client_request()
        .expect("request");
    if let Some(t) = token {
        req.headers_mut().insert(
            "authorization",
            format!("Bearer {t}").parse().expect("header"),
        );
    }
    tokio_tungstenite::connect_async(req)
        .await
        .expect("upgrade")
        .0
}

pub async fn connect(port: u16, token: Option<&str>) -> Ws {
    connect_with(port, token, "").await
}

pub async fn send(ws: &mut Ws, msg: Value) {
    ws.send(Message::text(msg.to_string())).await.expect("sent");
}

/// Inflates a gzip'ed frame.
pub fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .expect("a gzip'ed frame");
    out
}

/// A server frame as JSON: text, or gzip'ed JSON in a binary frame; `None` for control
/// frames. Panics on anything else.
pub fn message(frame: Message) -> Option<Value> {
    match frame {
        Message::Text(t) => Some(serde_json::from_str(t.as_str()).expect("JSON text")),
        Message::Binary(b) => {
            assert!(b.starts_with(&[0x1f, 0x8b]), "a binary frame is gzip");
            Some(serde_json::from_slice(&gunzip(&b)).expect("gzip'ed JSON"))
        }
        _ => None,
    }
}

/// The next message, or `None` once the server closed the connection.
pub async fn next(ws: &mut Ws) -> Option<Value> {
    next_within(ws, Duration::from_secs(5)).await
}

pub async fn next_within(ws: &mut Ws, wait: Duration) -> Option<Value> {
    loop {
        let frame = tokio::time::timeout(wait, ws.next())
            .await
            .expect("a message in time")?;
        let frame = frame.ok()?;
        if let Message::Close(_) = frame {
            return None;
        }
        if let Some(m) = message(frame) {
            return Some(m);
        }
    }
}

/// Nothing arrives for a while.
pub async fn quiet(ws: &mut Ws) {
    let got = tokio::time::timeout(Duration::from_millis(300), ws.next()).await;
    assert!(got.is_err(), "unexpected message: {got:?}");
}

/// How often a reading client pings, as client libraries do (API.md 2.7: the server closes
/// a connection it has heard nothing from for 10 s).
pub const PING_EVERY: Duration = Duration::from_secs(2);

/// Hands each message to `step` until it says the awaited condition holds. Asks for the
/// next initial batch whenever one says there is more, and pings every [`PING_EVERY`]. A
/// test waits on a condition, never on a quiet spell: this panics, naming what happened,
/// when the server closes the connection first or the condition does not hold within
/// `deadline`.
pub async fn read_until(ws: &mut Ws, deadline: Duration, step: impl FnMut(&Value) -> bool) {
    if let Err(e) = try_read_until(ws, deadline, step).await {
        panic!("{e}");
    }
}

/// [`read_until`], saying what ended the wait instead of panicking.
pub async fn try_read_until(
    ws: &mut Ws,
    deadline: Duration,
    mut step: impl FnMut(&Value) -> bool,
) -> Result<(), String> {
    let end = Instant::now() + deadline;
    let mut pinged = Instant::now();
    loop {
        if pinged.elapsed() >= PING_EVERY {
            send(ws, serde_json::json!({"type": "ping"})).await;
            pinged = Instant::now();
        }
        let left = end.saturating_duration_since(Instant::now());
        let frame = match tokio::time::timeout(left.min(PING_EVERY), ws.next()).await {
            Err(_) if left > PING_EVERY => continue,
            Err(_) => return Err(format!("the condition did not hold within {deadline:?}")),
            Ok(None) => return Err("the connection ended before the condition held".into()),
            Ok(Some(Err(e))) => {
                return Err(format!(
                    "the connection failed before the condition held: {e}"
                ));
            }
            Ok(Some(Ok(Message::Close(c)))) => {
                return Err(format!(
                    "the server closed the connection before the condition held: {c:?}"
                ));
            }
            Ok(Some(Ok(frame))) => frame,
        };
        let Some(m) = message(frame) else { continue };
        if step(&m) {
            return Ok(());
        }
        if m["type"] == "initial_data_batch" && m["batch_control"]["has_more"] == true {
            let more = serde_json::json!({"type": "next_batch",
                "subscription_id": m["subscription_id"],
                "last_seq_id": m["batch_control"]["last_seq_id"]});
            send(ws, more).await;
        }
    }
}

/// Applies messages to `views` (by subscription id) until `done(views, others)` holds; the
/// other messages (errors, and any of an unknown subscription) are returned. Panics as
/// [`read_until`] does, with each view's size and newest `_seq`.
pub async fn read_views_until(
    ws: &mut Ws,
    views: &mut HashMap<String, View>,
    deadline: Duration,
    done: impl Fn(&HashMap<String, View>, &[Value]) -> bool,
) -> Vec<Value> {
    let mut others = Vec::new();
    let read = try_read_until(ws, deadline, |m| {
        let id = m["subscription_id"].as_str().unwrap_or("");
        match views.get_mut(id) {
            Some(v) if m["type"] != "error" => v.apply(m),
            _ => others.push(m.clone()),
        }
        done(views, &others)
    })
    .await;
    if let Err(e) = read {
        let sizes: BTreeMap<&String, (usize, i64)> = views
            .iter()
            .map(|(id, v)| (id, (v.rows.len(), v.last_seq)))
            .collect();
        panic!("{e}; views (rows, newest _seq): {sizes:?}; other messages: {others:?}");
    }
    others
}

/// Applies messages to `views` until the connection ends (or `deadline` passes); the other
/// messages are returned.
pub async fn read_views_to_end(
    ws: &mut Ws,
    views: &mut HashMap<String, View>,
    deadline: Duration,
) -> Vec<Value> {
    let end = Instant::now() + deadline;
    let mut others = Vec::new();
    let left = || end.saturating_duration_since(Instant::now());
    while let Ok(Some(Ok(frame))) = tokio::time::timeout(left(), ws.next()).await {
        let Some(m) = message(frame) else { continue };
        let id = m["subscription_id"].as_str().unwrap_or("");
        match views.get_mut(id) {
            Some(v) if m["type"] != "error" => v.apply(&m),
            _ => others.push(m),
        }
    }
    others
}

/// A `_seq` cell as a number (the API sends it as a string).
/// Reads `ws` into `view` until it holds `rows` rows (within 30 s; an error message fails).
pub async fn hear(ws: &mut Ws, view: &mut View, rows: usize) {
    read_until(ws, Duration::from_secs(30), |m| {
        assert_ne!(m["type"], "error", "{m}");
        view.apply(m);
        view.rows.len() == rows
    })
    .await;
}

pub fn seq_of(cell: &Value) -> i64 {
    match cell {
        Value::String(s) => s.parse().expect("a numeric _seq"),
        other => other.as_i64().expect("a numeric _seq"),
    }
}

/// A row's `_seq`.
pub fn seq(row: &Value) -> i64 {
    row["_seq"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("_seq")
}

/// One subscriber's view, keyed by the `id` column, kept by applying what it receives, and
/// what it checks on the way: every version it receives is newer than the one before, and
/// an update is of a row it holds.
#[derive(Debug, Default)]
pub struct View {
    pub rows: BTreeMap<String, Value>,
    pub last_seq: i64,
    /// Messages applied, by `change_type` (or `initial` for initial rows).
    pub counts: BTreeMap<String, usize>,
    /// `_seq`s must increase across messages (not across a resume's initial data and its
    /// deletes, which are two ordered runs).
    pub strict: bool,
}

impl View {
    pub fn strict() -> View {
        View {
            strict: true,
            ..View::default()
        }
    }

    pub fn apply(&mut self, m: &Value) {
        let id = |r: &Value| r["id"].as_str().unwrap_or("").to_owned();
        match (m["type"].as_str(), m["change_type"].as_str()) {
            (Some("initial_data_batch"), _) => {
                for r in m["rows"].as_array().into_iter().flatten() {
                    self.seen(seq(r));
                    self.rows.insert(id(r), r.clone());
                    *self.counts.entry("initial".into()).or_default() += 1;
                }
            }
            (Some("change"), Some(kind)) => {
                *self.counts.entry(kind.into()).or_default() += 1;
                match kind {
                    "insert" => {
                        let r = &m["rows"][0];
                        self.seen(seq(r));
                        self.rows.insert(id(r), r.clone());
                    }
                    "update" => {
                        let r = &m["rows"][0];
                        self.seen(seq(r));
                        let row = self
                            .rows
                            .get_mut(&id(r))
                            .expect("an update of a row in the view");
                        for (k, v) in r.as_object().into_iter().flatten() {
                            row[k] = v.clone();
                        }
                    }
                    "delete" => {
                        // Stamped with the version that removed the row: newer than any
                        // the view has seen (API.md 2.4).
                        let old = &m["old_values"][0];
                        self.seen(seq(old));
                        self.rows.remove(&id(old));
                    }
                    other => panic!("unknown change_type {other}: {m}"),
                }
            }
            (Some("subscription_ack"), _) => {}
            other => panic!("unexpected message {other:?}: {m}"),
        }
    }

    /// The view has been told of every version up to `seq` and holds `rows` rows.
    pub fn caught_up(&self, rows: usize, seq: i64) -> bool {
        self.last_seq >= seq && self.rows.len() == rows
    }

    fn seen(&mut self, s: i64) {
        if self.strict {
            assert!(s > self.last_seq, "_seq went from {} to {s}", self.last_seq);
        }
        self.last_seq = self.last_seq.max(s);
    }

    /// The view's rows as `[id, columns…]` arrays, ascending by numeric id, for comparing
    /// with a SELECT's rows.
    pub fn table(&self, columns: &[&str]) -> Vec<Value> {
        let mut rows: Vec<(i64, Value)> = self
            .rows
            .iter()
            .map(|(k, r)| {
                let cells: Vec<Value> = columns.iter().map(|c| r[*c].clone()).collect();
                (k.parse().unwrap_or(i64::MAX), Value::Array(cells))
            })
            .collect();
        rows.sort_by_key(|(k, _)| *k);
        rows.into_iter().map(|(_, r)| r).collect()
    }
}
