//! The topic endpoints (API.md 1.10): `POST /v1/api/topics/consume` and `/ack`.

use folddb_query::dialect::ConsumeStart;
use folddb_query::engine::{ConsumeRequest, may_consume};
use folddb_query::error::Error;
use folddb_realtime::topic_stream::{acknowledge, message_json, settlement_of, start_of};

use super::*;

/// The longest long-poll a consume may ask for.
const MAX_WAIT_SECONDS: u64 = 60;

/// An error of the topic API: `{"error": "<text>", "code": "…"}`.
fn topic_error(status: StatusCode, code: &str, message: &str) -> Reply {
    reply(status, &json!({"error": message, "code": code}))
}

fn engine_error(e: &Error) -> Reply {
    use folddb_materializer::RejectKind;
    let (status, code) = match e {
        Error::NotFound(_)
        | Error::Rejected {
            kind: RejectKind::NotFound,
            ..
        } => (StatusCode::NOT_FOUND, "NOT_FOUND"),
        Error::PermissionDenied(_) => (StatusCode::FORBIDDEN, "FORBIDDEN"),
        Error::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "CLUSTER_UNAVAILABLE"),
        Error::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR"),
        _ => (StatusCode::BAD_REQUEST, "INVALID_INPUT"),
    };
    topic_error(status, code, e.message())
}

/// The caller of a topic request: authenticated, and of role service, dba or system.
fn topic_caller(state: &State, headers: &HeaderMap) -> Result<Caller, Box<Reply>> {
    let refuse =
        |code: &str, message: &str| Box::new(topic_error(StatusCode::UNAUTHORIZED, code, message));
    let token = match bearer(headers) {
        Ok(Some(t)) => t,
        Ok(None) => return Err(refuse("MISSING_AUTHORIZATION", "Authentication required")),
        Err(()) => return Err(refuse("INVALID_CREDENTIALS", "Invalid credentials")),
    };
    let caller = caller_of(state, token).map_err(|code| refuse(code, "Invalid credentials"))?;
    may_consume(&caller).map_err(|e| Box::new(engine_error(&e)))?;
    Ok(caller)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsumeBody {
    topic_id: String,
    group_id: String,
    #[serde(default)]
    start: Option<Json>,
    #[serde(default)]
    limit: Option<i64>,
    #[serde(default)]
    partition_id: Option<i64>,
    #[serde(default)]
    timeout_seconds: Option<i64>,
}

pub(super) async fn consume(state: &State, headers: &HeaderMap, body: &[u8]) -> Reply {
    let caller = match topic_caller(state, headers) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let bad = |m: &str| topic_error(StatusCode::BAD_REQUEST, "INVALID_INPUT", m);
    let b: ConsumeBody = match serde_json::from_slice(body) {
        Ok(b) => b,
        Err(e) => return bad(&format!("Invalid JSON payload: {e}")),
    };
    let start = match start_of(b.start.as_ref()) {
        Ok(s) => s,
        Err(m) => return bad(&m),
    };
    let limit = b.limit.unwrap_or(100);
    if !(1..=folddb_query::dialect::MAX_CONSUME_LIMIT as i64).contains(&limit) {
        return bad(&format!(
            "limit must be from 1 to {}, not {limit}",
            folddb_query::dialect::MAX_CONSUME_LIMIT
        ));
    }
    let Ok(partition) = u32::try_from(b.partition_id.unwrap_or(0)) else {
        return bad("partition_id must be a partition number, not negative");
    };
    let wait = match b.timeout_seconds.unwrap_or(0) {
        s if s < 0 => return bad("timeout_seconds cannot be negative"),
        s => Duration::from_secs((s as u64).min(MAX_WAIT_SECONDS)),
    };
    if b.group_id.is_empty() {
        return bad("group_id cannot be empty");
    }
    let mut request = ConsumeRequest {
        topic: b.topic_id.clone(),
        group: Some(b.group_id),
        partition,
        start,
        limit: limit as u64,
    };
    // A long-poll: until a message is there, or the wait is over. Subscribed before the
    // first read, so that no change applied in between goes unnoticed.
    let deadline = tokio::time::Instant::now() + wait;
    let mut changes = state.node.changes();
    let consumed = loop {
        match state.engine.consume_claimed(&caller, &request).await {
            Ok(c) if !c.messages.is_empty() || tokio::time::Instant::now() >= deadline => {
                break c;
            }
            Ok(c) => {
                // Where "Latest" was when the poll began: what arrives next is for it.
                request.start = ConsumeStart::Offset(c.next_offset);
                let _ = tokio::time::timeout_at(deadline, changes.recv()).await;
            }
            Err(e) => return engine_error(&e),
        }
    };
    let messages: Vec<Json> = consumed
        .messages
        .iter()
        .map(|d| message_json(&b.topic_id, d))
        .collect();
    reply(
        StatusCode::OK,
        &json!({"messages": messages, "next_offset": consumed.next_offset,
                "has_more": consumed.has_more}),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AckBody {
    topic_id: String,
    group_id: String,
    #[serde(default)]
    partition_id: Option<i64>,
    upto_offset: i64,
    /// FoldDB's: acknowledge `from_offset..=upto_offset` alone (a consumer's own claim)
    /// rather than everything up to `upto_offset`.
    #[serde(default)]
    from_offset: Option<i64>,
    /// FoldDB's, KIP-932's acknowledgement types for `from_offset..=upto_offset` (one
    /// offset without `from_offset`): `accept`, `release` (send again now) or `reject` (to
    /// the dead-letter topic).
    #[serde(default)]
    action: Option<String>,
}

pub(super) async fn ack(state: &State, headers: &HeaderMap, body: &[u8]) -> Reply {
    let caller = match topic_caller(state, headers) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let bad = |m: &str| topic_error(StatusCode::BAD_REQUEST, "INVALID_INPUT", m);
    let b: AckBody = match serde_json::from_slice(body) {
        Ok(b) => b,
        Err(e) => return bad(&format!("Invalid JSON payload: {e}")),
    };
    let Ok(partition) = u32::try_from(b.partition_id.unwrap_or(0)) else {
        return bad("partition_id must be a partition number, not negative");
    };
    let action = match settlement_of(b.action.as_deref()) {
        Ok(a) => a,
        Err(m) => return bad(&m),
    };
    let acked = acknowledge(
        &state.engine,
        &caller,
        (&b.topic_id, &b.group_id, partition),
        (b.from_offset, b.upto_offset),
        action,
    )
    .await;
    match acked {
        Ok(acked) => reply(
            StatusCode::OK,
            &json!({"success": true, "acknowledged_offset": acked}),
        ),
        Err(e) => engine_error(&e),
    }
}
