//! Topic streams (`realtime/PROTOCOL.md` §3): a consumer of one topic partition over
//! `/v1/ws`, pushed its messages as they are published, within the credit it grants. With a
//! group, each push is a claim of the group (API.md 4.5), made through the log like an HTTP
//! consume's, so the group's other consumers (HTTP or WebSocket) never get the same
//! messages before the visibility timeout, and the stream acknowledges what it processed
//! with `topic_ack`. Without a group it reads from its position and claims nothing. The
//! topic is the buffer: a stream holds only its position and credit.

use base64::Engine as _;
use folddb_query::dialect::{ConsumeStart, Settlement};
use folddb_query::engine::{ConsumeRequest, Delivered, may_consume};
use folddb_query::error::Error;
use folddb_query::live::LiveError;
use folddb_query::{Caller, Engine};
use serde::Deserialize;
use serde_json::{Value as Json, json};

/// Most messages in one `topic_messages`.
pub const MAX_BATCH: u64 = 1000;
/// Most credit a stream may hold.
pub const MAX_CREDIT: u64 = 1_000_000;
/// Credit a stream opened without one starts with.
pub const DEFAULT_CREDIT: u64 = 100;

/// A `topic_consume` request: the fields of an HTTP consume (API.md 1.10), plus the stream's
/// id and credit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicRequest {
    pub id: String,
    pub topic_id: String,
    /// Without one, the stream reads and claims nothing.
    #[serde(default)]
    pub group_id: Option<String>,
    #[serde(default)]
    pub partition_id: Option<i64>,
    /// As an HTTP consume's `start`.
    #[serde(default)]
    pub start: Option<Json>,
    #[serde(default)]
    pub credit: Option<u64>,
}

/// A `topic_ack`: as an HTTP ack's body, for the stream's topic, group and partition.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicAck {
    pub id: String,
    pub upto_offset: i64,
    #[serde(default)]
    pub from_offset: Option<i64>,
    #[serde(default)]
    pub action: Option<String>,
}

/// `start` of a consume: `"Latest"`, `"Earliest"` (any case), `{"Offset": n}` or
/// `{"offset": n}` (API.md 1.10).
pub fn start_of(v: Option<&Json>) -> Result<ConsumeStart, String> {
    let bad = || {
        "start must be \"Latest\", \"Earliest\" or {\"Offset\": n} with n not negative".to_owned()
    };
    match v {
        None | Some(Json::Null) => Ok(ConsumeStart::Latest),
        Some(Json::String(s)) if s.eq_ignore_ascii_case("latest") => Ok(ConsumeStart::Latest),
        Some(Json::String(s)) if s.eq_ignore_ascii_case("earliest") => Ok(ConsumeStart::Earliest),
        Some(Json::Object(o)) if o.len() == 1 => o
            .get("Offset")
            .or_else(|| o.get("offset"))
            .and_then(Json::as_u64)
            .map(ConsumeStart::Offset)
            .ok_or_else(bad),
        _ => Err(bad()),
    }
}

/// The `action` of an ack: `accept`, `release` or `reject` (KIP-932's types), any case.
pub fn settlement_of(action: Option<&str>) -> Result<Option<Settlement>, String> {
    match action.map(str::to_ascii_lowercase).as_deref() {
        None => Ok(None),
        Some("accept") => Ok(Some(Settlement::Accept)),
        Some("release") => Ok(Some(Settlement::Release)),
        Some("reject") => Ok(Some(Settlement::Reject)),
        Some(other) => Err(format!(
            "action must be accept, release or reject, not '{other}'"
        )),
    }
}

/// Settles `from..=upto` of a group's partition: without `from` and `action`, a cumulative
/// ack (the reference's); otherwise that range alone, with `action` (accept by default).
/// The group's acknowledged offset after it, if it has one.
pub async fn acknowledge(
    engine: &Engine,
    caller: &Caller,
    (topic, group, partition): (&str, &str, u32),
    (from, upto): (Option<i64>, i64),
    action: Option<Settlement>,
) -> Result<Option<u64>, Error> {
    let upto = u64::try_from(upto)
        .map_err(|_| Error::InvalidInput("upto_offset cannot be negative".into()))?;
    match (from, action) {
        (None, None) => engine
            .ack(caller, topic, group, partition, upto)
            .await
            .map(Some),
        (from, action) => {
            let from = match from {
                None => upto,
                Some(f) => u64::try_from(f)
                    .map_err(|_| Error::InvalidInput("from_offset cannot be negative".into()))?,
            };
            let action = action.unwrap_or(Settlement::Accept);
            engine
                .settle(caller, topic, group, partition, (from, upto), action)
                .await
        }
    }
}

/// One message as the topic API sends it (API.md 1.10), with FoldDB's `delivery_count`.
pub fn message_json(topic: &str, d: &Delivered) -> Json {
    let mut m = json!({
        "topic_id": topic,
        "partition_id": d.partition,
        "offset": d.offset,
        "payload": base64::engine::general_purpose::STANDARD.encode(&d.message.payload),
        "key": d.message.key,
        "timestamp_ms": d.message.timestamp_ms,
        "op": d.message.op.title(),
        "delivery_count": d.deliveries,
    });
    if let Some(user) = &d.message.user {
        m["user"] = json!(user);
    }
    m
}

/// The stream error of engine error `e`.
fn stream_error(e: &Error) -> LiveError {
    use folddb_materializer::RejectKind;
    let code = match e {
        Error::NotFound(_)
        | Error::Rejected {
            kind: RejectKind::NotFound,
            ..
        } => "TOPIC_NOT_FOUND",
        Error::PermissionDenied(_) => "PERMISSION_DENIED",
        Error::Unavailable(_) => "LEADER_NOT_AVAILABLE",
        Error::Internal(_) => "CONSUME_FAILED",
        _ => "INVALID_CONSUME",
    };
    LiveError {
        code,
        message: e.message().to_owned(),
    }
}

/// One topic stream of a connection.
#[derive(Debug)]
pub struct TopicStream {
    id: String,
    caller: Caller,
    /// The topic, group and partition; `start` is where the next read begins without a
    /// group, and where the group begins when it has no position yet.
    request: ConsumeRequest,
    credit: u64,
}

impl TopicStream {
    /// Opens stream `req` for `caller`; its `topic_ready`.
    pub fn open(
        engine: &Engine,
        caller: &Caller,
        req: TopicRequest,
    ) -> Result<(TopicStream, Json), LiveError> {
        let invalid = |m: String| LiveError {
            code: "INVALID_CONSUME",
            message: m,
        };
        may_consume(caller).map_err(|e| stream_error(&e))?;
        let partition = u32::try_from(req.partition_id.unwrap_or(0))
            .map_err(|_| invalid("partition_id must be a partition number, not negative".into()))?;
        if req.group_id.as_deref().is_some_and(str::is_empty) {
            return Err(invalid("group_id cannot be empty".into()));
        }
        let start = start_of(req.start.as_ref()).map_err(invalid)?;
        let mut request = ConsumeRequest {
            topic: req.topic_id.clone(),
            group: req.group_id.clone(),
            partition,
            start,
            limit: 1,
        };
        // Where the stream starts, fixed now: "Latest" is the head at the time of the ask.
        let first = engine.consume(&request).map_err(|e| stream_error(&e))?;
        let from = first
            .messages
            .first()
            .map_or(first.next_offset, |d| d.offset);
        if request.group.is_none() || request.start == ConsumeStart::Latest {
            request.start = ConsumeStart::Offset(from);
        }
        let credit = req.credit.unwrap_or(DEFAULT_CREDIT).min(MAX_CREDIT);
        let ready = json!({
            "type": "topic_ready",
            "id": req.id,
            "topic_id": request.topic,
            "group_id": request.group,
            "partition_id": partition,
            "next_offset": from,
            "credit": credit,
        });
        let stream = TopicStream {
            id: req.id,
            caller: caller.clone(),
            request,
            credit,
        };
        Ok((stream, ready))
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Whether it consumes for a group: then messages also become due as claims expire.
    pub fn has_group(&self) -> bool {
        self.request.group.is_some()
    }

    /// The client grants `n` more messages.
    pub fn grant(&mut self, n: u64) {
        self.credit = self.credit.saturating_add(n).min(MAX_CREDIT);
    }

    /// The next `topic_messages`, if the client has credit and there are messages for it
    /// (for a group: claimed for this stream); and whether more may follow at once.
    pub async fn pump(&mut self, engine: &Engine) -> Result<(Option<Json>, bool), LiveError> {
        if self.credit == 0 {
            return Ok((None, false));
        }
        self.request.limit = self.credit.min(MAX_BATCH);
        let got = engine
            .consume_claimed(&self.caller, &self.request)
            .await
            .map_err(|e| stream_error(&e))?;
        if self.request.group.is_none() {
            self.request.start = ConsumeStart::Offset(got.next_offset);
        }
        if got.messages.is_empty() {
            return Ok((None, false));
        }
        self.credit = self.credit.saturating_sub(got.messages.len() as u64);
        let topic = &self.request.topic;
        let messages: Vec<Json> = got
            .messages
            .iter()
            .map(|d| message_json(topic, d))
            .collect();
        let batch = json!({
            "type": "topic_messages",
            "id": self.id,
            "messages": messages,
            "next_offset": got.next_offset,
        });
        Ok((Some(batch), got.has_more && self.credit > 0))
    }

    /// Acknowledges `ack` for the stream's group: its `topic_acked`.
    pub async fn ack(&self, engine: &Engine, ack: TopicAck) -> Json {
        let r = &self.request;
        let acked = match (&r.group, settlement_of(ack.action.as_deref())) {
            (None, _) => Err(LiveError {
                code: "INVALID_ACK",
                message: "A stream without a group has nothing to acknowledge".into(),
            }),
            (Some(_), Err(m)) => Err(LiveError {
                code: "INVALID_ACK",
                message: m,
            }),
            (Some(group), Ok(action)) => acknowledge(
                engine,
                &self.caller,
                (&r.topic, group, r.partition),
                (ack.from_offset, ack.upto_offset),
                action,
            )
            .await
            .map_err(|e| match stream_error(&e) {
                LiveError {
                    code: "INVALID_CONSUME",
                    message,
                } => LiveError {
                    code: "INVALID_ACK",
                    message,
                },
                other => other,
            }),
        };
        match acked {
            Ok(offset) => json!({
                "type": "topic_acked",
                "id": self.id,
                "success": true,
                "acknowledged_offset": offset,
            }),
            Err(e) => json!({
                "type": "topic_acked",
                "id": self.id,
                "success": false,
                "code": e.code,
                "message": e.message,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_and_actions_parse_as_the_contract_spells_them() {
        assert_eq!(start_of(None), Ok(ConsumeStart::Latest));
        assert_eq!(
            start_of(Some(&json!("EARLIEST"))),
            Ok(ConsumeStart::Earliest)
        );
        assert_eq!(
            start_of(Some(&json!({"Offset": 7}))),
            Ok(ConsumeStart::Offset(7))
        );
        assert_eq!(
            start_of(Some(&json!({"offset": 3}))),
            Ok(ConsumeStart::Offset(3))
        );
        for bad in [
            json!({"offset": -1}),
            json!("soon"),
            json!(5),
            json!({"a": 1, "b": 2}),
        ] {
            assert!(start_of(Some(&bad)).is_err(), "{bad}");
        }
        assert_eq!(settlement_of(None), Ok(None));
        assert_eq!(
            settlement_of(Some("Release")),
            Ok(Some(Settlement::Release))
        );
        assert!(settlement_of(Some("later")).is_err());
    }
}
