//! The crate's error type: what a live-query session refuses or cannot do, by kind. The
//! variant decides the WebSocket error code (API.md 2) and the text is the message.

/// Everything that can go wrong in this crate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A client frame that is not a message of API.md 2.2 (bad JSON or MessagePack, bad
    /// UTF-8, a gzip body that does not inflate or inflates past the frame limit): the
    /// connection closes with this reason.
    #[error("Invalid message: {reason}")]
    InvalidMessage { reason: String },
    /// The user holds as many subscriptions as the server allows each user.
    #[error("User '{user}' already holds {held} subscriptions (the limit is {limit})")]
    SubscriptionLimit {
        user: String,
        held: usize,
        limit: usize,
    },
    /// A changed row could not be turned into its notification (a value the wire cannot
    /// carry, a filter that cannot be evaluated on it).
    #[error("{reason}")]
    Conversion { reason: String },
}

/// How an error sorts (STYLE.md "Errors").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The client's mistake or a limit it reached.
    InvalidInput,
    /// A broken invariant of this program: the row was committed, its notification failed.
    Internal,
}

impl Error {
    pub fn kind(&self) -> Kind {
        match self {
            Error::InvalidMessage { .. } | Error::SubscriptionLimit { .. } => Kind::InvalidInput,
            Error::Conversion { .. } => Kind::Internal,
        }
    }

    /// The `code` of the `error` message that reports it to the subscriber (API.md 2.3). An
    /// invalid message is never reported so: the connection closes with its text as reason.
    pub fn code(&self) -> &'static str {
        match self {
            Error::InvalidMessage { .. } => "INVALID_MESSAGE",
            Error::SubscriptionLimit { .. } => "SUBSCRIPTION_LIMIT_EXCEEDED",
            Error::Conversion { .. } => "CONVERSION_ERROR",
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_has_its_code_and_text() {
        let limit = Error::SubscriptionLimit {
            user: "alice".into(),
            held: 3,
            limit: 3,
        };
        assert_eq!(limit.code(), "SUBSCRIPTION_LIMIT_EXCEEDED");
        assert_eq!(
            limit.to_string(),
            "User 'alice' already holds 3 subscriptions (the limit is 3)"
        );
        let bad = Error::InvalidMessage {
            reason: "expected value at line 1".into(),
        };
        assert_eq!(bad.to_string(), "Invalid message: expected value at line 1");
        assert_eq!(bad.kind(), Kind::InvalidInput);
        let conversion = Error::Conversion {
            reason: "no such column".into(),
        };
        assert_eq!(
            (conversion.kind(), conversion.code()),
            (Kind::Internal, "CONVERSION_ERROR")
        );
    }
}
