//! The messages the server sends on `/v1/ws` (API.md 2.4), typed: each is built as a
//! [`ServerMessage`] and serialized once, so a field's name or shape cannot drift between
//! the places that send it. JSON objects encode with their keys in sorted order (as
//! `serde_json`'s maps do), the form the reference's clients are tested against.

use serde::Serialize;
use serde_json::{Map, Value as Json};

/// One server message, by its `type`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    AuthSuccess {
        user: String,
        role: String,
        /// The connection's framing (see [`crate::Wire::protocol`]).
        protocol: Json,
    },
    AuthError {
        message: String,
    },
    /// A subscription failed or was refused (`code`: API.md 2.4's error codes).
    Error {
        subscription_id: String,
        code: String,
        message: String,
    },
    SubscriptionAck {
        subscription_id: String,
        total_rows: u64,
        batch_control: BatchControl,
        /// The result's columns: an array of `{name, data_type, index, …}` objects.
        schema: Json,
    },
    InitialDataBatch {
        subscription_id: String,
        rows: Vec<Map<String, Json>>,
        batch_control: BatchControl,
    },
    Change {
        subscription_id: String,
        change_type: ChangeType,
        #[serde(skip_serializing_if = "Option::is_none")]
        rows: Option<Vec<Map<String, Json>>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        old_values: Option<Vec<Map<String, Json>>>,
    },
}

/// Where the initial data of a subscription stands (API.md 2.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BatchControl {
    pub batch_num: u64,
    pub has_more: bool,
    pub status: BatchStatus,
    /// The newest `_seq` of the rows sent in this batch; none for an empty batch.
    pub last_seq_id: Option<i64>,
}

impl BatchControl {
    /// Nothing (more) to load: what an ack without initial data carries.
    pub const READY: BatchControl = BatchControl {
        batch_num: 0,
        has_more: false,
        status: BatchStatus::Ready,
        last_seq_id: None,
    };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchStatus {
    /// The first batch, more to come.
    Loading,
    /// A later batch, more to come.
    LoadingBatch,
    /// The last batch: live changes follow.
    Ready,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeType {
    Insert,
    Update,
    Delete,
}

impl From<ServerMessage> for Json {
    fn from(m: ServerMessage) -> Json {
        // Strings, numbers, booleans and JSON values: serializing cannot fail.
        serde_json::to_value(&m).unwrap_or(Json::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(pairs: &[(&str, Json)]) -> Map<String, Json> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    /// The wire form of each message, as API.md 2.4 shows it.
    #[test]
    fn messages_encode_as_the_contract_shows() {
        let ack = ServerMessage::SubscriptionAck {
            subscription_id: "s1".into(),
            total_rows: 0,
            batch_control: BatchControl::READY,
            schema: json!([{"name": "id", "index": 0}]),
        };
        assert_eq!(
            Json::from(ack).to_string(),
            r#"{"batch_control":{"batch_num":0,"has_more":false,"last_seq_id":null,"status":"ready"},"schema":[{"index":0,"name":"id"}],"subscription_id":"s1","total_rows":0,"type":"subscription_ack"}"#
        );
        let batch = ServerMessage::InitialDataBatch {
            subscription_id: "s1".into(),
            rows: vec![row(&[("id", json!("1")), ("_seq", json!("7"))])],
            batch_control: BatchControl {
                batch_num: 1,
                has_more: true,
                status: BatchStatus::LoadingBatch,
                last_seq_id: Some(7),
            },
        };
        assert_eq!(
            Json::from(batch),
            json!({"type": "initial_data_batch", "subscription_id": "s1",
                   "rows": [{"id": "1", "_seq": "7"}],
                   "batch_control": {"batch_num": 1, "has_more": true,
                                     "status": "loading_batch", "last_seq_id": 7}})
        );
        let delete = ServerMessage::Change {
            subscription_id: "s1".into(),
            change_type: ChangeType::Delete,
            rows: None,
            old_values: Some(vec![row(&[("id", json!("1"))])]),
        };
        assert_eq!(
            Json::from(delete),
            json!({"type": "change", "subscription_id": "s1", "change_type": "delete",
                   "old_values": [{"id": "1"}]})
        );
        let err = ServerMessage::Error {
            subscription_id: "s1".into(),
            code: "INVALID_SQL".into(),
            message: "no".into(),
        };
        assert_eq!(
            Json::from(err),
            json!({"type": "error", "subscription_id": "s1", "code": "INVALID_SQL",
                   "message": "no"})
        );
        let auth = ServerMessage::AuthError {
            message: "bad token".into(),
        };
        assert_eq!(
            Json::from(auth),
            json!({"type": "auth_error", "message": "bad token"})
        );
    }
}
