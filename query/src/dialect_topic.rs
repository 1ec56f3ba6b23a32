//! The topic statements (API.md 3.12), parsed from the dialect's tokens.

use super::*;
use folddb_materializer::topics::{Payload, RouteOp};

/// Where a group with no acknowledged offset starts consuming.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumeStart {
    /// After the last message (what a new group gets by default).
    Latest,
    /// At the first message the partition holds.
    Earliest,
    Offset(u64),
}

/// One topic statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicCommand {
    /// `CREATE TOPIC [IF NOT EXISTS] id [PARTITIONS n] [WITH (max_deliveries = n,
    /// dead_letter = 'id', retention_seconds = n, retention_max_bytes = n)]`.
    Create {
        id: String,
        partitions: u32,
        if_not_exists: bool,
        max_deliveries: Option<u32>,
        dead_letter: Option<String>,
        retention_seconds: Option<u64>,
        retention_max_bytes: Option<u64>,
    },
    /// `ALTER TOPIC id SET (retention_seconds = n, retention_max_bytes = n)`: either or
    /// both.
    SetRetention {
        id: String,
        retention_seconds: Option<u64>,
        retention_max_bytes: Option<u64>,
    },
    /// `DROP TOPIC [IF EXISTS] id`.
    Drop { id: String, if_exists: bool },
    /// `CLEAR TOPIC id`.
    Clear { id: String },
    /// `ALTER TOPIC id ADD SOURCE ns.t ON INSERT|UPDATE|DELETE [WHERE …]
    /// [WITH (payload = '…')]`.
    AddSource {
        topic: String,
        table: TableName,
        op: RouteOp,
        payload: Payload,
        /// The `WHERE` condition's text.
        filter: Option<String>,
    },
    /// `CONSUME FROM id [GROUP 'g'] [FROM LATEST|EARLIEST|n] [LIMIT n]`.
    Consume {
        topic: String,
        group: Option<String>,
        start: ConsumeStart,
        limit: u64,
    },
    /// `ACK id GROUP 'g' [PARTITION p] UPTO OFFSET n`.
    Ack {
        topic: String,
        group: String,
        partition: u32,
        upto: u64,
    },
    /// `ACK | RELEASE | REJECT id GROUP 'g' [PARTITION p] OFFSET n`: one message (KIP-932's
    /// acknowledgement types).
    Settle {
        topic: String,
        group: String,
        partition: u32,
        offset: u64,
        kind: Settlement,
    },
}

/// What a consumer says of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settlement {
    /// Processed.
    Accept,
    /// Not processed: send it again (to any consumer of the group) now.
    Release,
    /// Never to be processed: to the dead-letter topic.
    Reject,
}

/// The default `LIMIT` of `CONSUME`.
pub const DEFAULT_CONSUME_LIMIT: u64 = 100;
/// The largest `LIMIT` of `CONSUME`.
pub const MAX_CONSUME_LIMIT: u64 = 100_000;

/// A topic id: dotted words (`app.new_messages`), or a quoted string; lowercase like other
/// identifiers.
fn topic_id(c: &mut Cursor) -> Result<String, ParseError> {
    let mut id = c.ident()?;
    while c.token(&Token::Period) {
        id.push('.');
        id.push_str(&c.ident()?);
    }
    if id.is_empty() || id.len() > 255 {
        return Err("A topic id has from 1 to 255 characters".into());
    }
    Ok(id)
}

/// A whole number that is not negative.
fn count(c: &mut Cursor, what: &str) -> Result<u64, ParseError> {
    match c.next() {
        Some(Token::Number(n, _)) => n
            .parse::<u64>()
            .map_err(|_| format!("{what} expects a whole number that is not negative, not {n}")),
        Some(Token::Minus) => Err(format!("{what} cannot be negative")),
        other => Err(format!(
            "{what} expects a number, found {}",
            other.map_or_else(|| "end of statement".to_owned(), |t| t.to_string())
        )),
    }
}

/// A group name: quoted, or a bare word.
fn group(c: &mut Cursor) -> Result<String, ParseError> {
    match c.next() {
        Some(Token::SingleQuotedString(s)) | Some(Token::DoubleQuotedString(s))
            if !s.is_empty() =>
        {
            Ok(s)
        }
        Some(Token::Word(w)) => Ok(w.value),
        _ => Err("GROUP expects a group name, e.g. GROUP 'workers'".into()),
    }
}

/// The rest of `CREATE TOPIC`.
pub(super) fn parse_create_topic(c: &mut Cursor) -> Result<Statement, ParseError> {
    let if_not_exists = c.if_not_exists()?;
    let id = topic_id(c)?;
    let partitions = if c.keyword("partitions") {
        let n = count(c, "PARTITIONS")?;
        u32::try_from(n)
            .ok()
            .filter(|n| (1..=folddb_materializer::topics::MAX_PARTITIONS).contains(n))
            .ok_or_else(|| {
                format!(
                    "PARTITIONS must be from 1 to {}, not {n}",
                    folddb_materializer::topics::MAX_PARTITIONS
                )
            })?
    } else {
        1
    };
    let (mut max_deliveries, mut dead_letter) = (None, None);
    let mut retention = (None, None);
    if c.keyword("with") {
        c.expect_token(&Token::LParen, "(")?;
        loop {
            let key = c.ident()?;
            c.expect_token(&Token::Eq, "=")?;
            if retention_option(c, &key, &mut retention)? {
                if !c.token(&Token::Comma) {
                    break;
                }
                continue;
            }
            match key.as_str() {
                "max_deliveries" => {
                    let n = count(c, "max_deliveries")?;
                    max_deliveries = Some(
                        u32::try_from(n)
                            .ok()
                            .filter(|n| *n >= 1)
                            .ok_or_else(|| format!("max_deliveries must be from 1, not {n}"))?,
                    );
                }
                "dead_letter" => dead_letter = Some(topic_id(c)?),
                other => return Err(format!("Unknown topic option '{other}'")),
            }
            if !c.token(&Token::Comma) {
                break;
            }
        }
        c.expect_token(&Token::RParen, ")")?;
    }
    c.end().map(|_| {
        Statement::Topic(TopicCommand::Create {
            id,
            partitions,
            if_not_exists,
            max_deliveries,
            dead_letter,
            retention_seconds: retention.0,
            retention_max_bytes: retention.1,
        })
    })
}

/// A retention option `key = n` (its `=` read): `retention_seconds` or
/// `retention_max_bytes`, each at least 1, into `into`; false for another key.
fn retention_option(
    c: &mut Cursor,
    key: &str,
    into: &mut (Option<u64>, Option<u64>),
) -> Result<bool, ParseError> {
    let slot = match key {
        "retention_seconds" => &mut into.0,
        "retention_max_bytes" => &mut into.1,
        _ => return Ok(false),
    };
    let n = count(c, key)?;
    if n == 0 {
        return Err(format!("{key} must be at least 1"));
    }
    *slot = Some(n);
    Ok(true)
}

/// The rest of `DROP TOPIC`.
pub(super) fn parse_drop_topic(c: &mut Cursor) -> Result<Statement, ParseError> {
    let if_exists = c.if_exists()?;
    let id = topic_id(c)?;
    c.end()
        .map(|_| Statement::Topic(TopicCommand::Drop { id, if_exists }))
}

/// The rest of `CLEAR TOPIC`.
pub(super) fn parse_clear_topic(c: &mut Cursor) -> Result<Statement, ParseError> {
    let id = topic_id(c)?;
    c.end()
        .map(|_| Statement::Topic(TopicCommand::Clear { id }))
}

/// The rest of `ALTER TOPIC`.
pub(super) fn parse_alter_topic(c: &mut Cursor) -> Result<Statement, ParseError> {
    let topic = topic_id(c)?;
    if c.keyword("set") {
        c.expect_token(&Token::LParen, "(")?;
        let mut retention = (None, None);
        loop {
            let key = c.ident()?;
            c.expect_token(&Token::Eq, "=")?;
            if !retention_option(c, &key, &mut retention)? {
                return Err(format!(
                    "ALTER TOPIC … SET takes retention_seconds and retention_max_bytes, not '{key}'"
                ));
            }
            if !c.token(&Token::Comma) {
                break;
            }
        }
        c.expect_token(&Token::RParen, ")")?;
        return c.end().map(|_| {
            Statement::Topic(TopicCommand::SetRetention {
                id: topic,
                retention_seconds: retention.0,
                retention_max_bytes: retention.1,
            })
        });
    }
    c.expect("add")?;
    c.expect("source")?;
    let table = c.table_name()?;
    c.expect("on")?;
    let op = match c.word().as_deref() {
        Some("insert") => RouteOp::Insert,
        Some("update") => RouteOp::Update,
        Some("delete") => RouteOp::Delete,
        _ => return Err("ADD SOURCE … ON expects INSERT, UPDATE or DELETE".into()),
    };
    let mut filter = None;
    if c.keyword("where") {
        // Up to a `WITH` outside parentheses, or the end.
        let (mut depth, mut parts) = (0i32, Vec::new());
        while let Some(t) = c.peek() {
            match t {
                Token::LParen => depth += 1,
                Token::RParen => depth -= 1,
                Token::Word(w)
                    if depth == 0
                        && w.quote_style.is_none()
                        && w.value.eq_ignore_ascii_case("with") =>
                {
                    break;
                }
                _ => {}
            }
            if let Some(t) = c.next() {
                parts.push(t.to_string());
            }
        }
        if parts.is_empty() {
            return Err("ADD SOURCE … WHERE needs a condition".into());
        }
        filter = Some(parts.join(" "));
    }
    let mut payload = Payload::Full;
    if c.keyword("with") {
        c.expect_token(&Token::LParen, "(")?;
        loop {
            let key = c.ident()?;
            c.expect_token(&Token::Eq, "=")?;
            let value = match c.next() {
                Some(Token::SingleQuotedString(s)) => s.to_ascii_lowercase(),
                Some(Token::Word(w)) => w.value.to_ascii_lowercase(),
                _ => return Err(format!("WITH ({key} = …) expects a value")),
            };
            match (key.as_str(), value.as_str()) {
                ("payload", "key") => payload = Payload::Key,
                ("payload", "full") => payload = Payload::Full,
                ("payload", "diff") => payload = Payload::Diff,
                ("payload", other) => {
                    return Err(format!(
                        "Unknown payload '{other}': use 'key', 'full' or 'diff'"
                    ));
                }
                (other, _) => return Err(format!("Unknown route option '{other}'")),
            }
            if !c.token(&Token::Comma) {
                break;
            }
        }
        c.expect_token(&Token::RParen, ")")?;
    }
    c.end().map(|_| {
        Statement::Topic(TopicCommand::AddSource {
            topic,
            table,
            op,
            payload,
            filter,
        })
    })
}

/// The rest of `CONSUME`.
pub(super) fn parse_consume(c: &mut Cursor) -> Result<Statement, ParseError> {
    c.expect("from")?;
    let topic = topic_id(c)?;
    let (mut group_name, mut start, mut limit) = (None, ConsumeStart::Latest, None);
    loop {
        if c.keyword("group") {
            group_name = Some(group(c)?);
        } else if c.keyword("from") {
            start = if c.keyword("latest") {
                ConsumeStart::Latest
            } else if c.keyword("earliest") {
                ConsumeStart::Earliest
            } else {
                ConsumeStart::Offset(count(c, "FROM")?)
            };
        } else if c.keyword("limit") {
            let n = count(c, "LIMIT")?;
            if n == 0 || n > MAX_CONSUME_LIMIT {
                return Err(format!(
                    "LIMIT must be from 1 to {MAX_CONSUME_LIMIT}, not {n}"
                ));
            }
            limit = Some(n);
        } else {
            break;
        }
    }
    c.end().map(|_| {
        Statement::Topic(TopicCommand::Consume {
            topic,
            group: group_name,
            start,
            limit: limit.unwrap_or(DEFAULT_CONSUME_LIMIT),
        })
    })
}

/// The rest of `RELEASE` and `REJECT`.
pub(super) fn parse_settle(c: &mut Cursor, kind: Settlement) -> Result<Statement, ParseError> {
    let topic = topic_id(c)?;
    c.expect("group")?;
    let group = group(c)?;
    let partition = partition(c)?;
    c.expect("offset")?;
    let offset = count(c, "OFFSET")?;
    c.end().map(|_| {
        Statement::Topic(TopicCommand::Settle {
            topic,
            group,
            partition,
            offset,
            kind,
        })
    })
}

fn partition(c: &mut Cursor) -> Result<u32, ParseError> {
    if c.keyword("partition") {
        let p = count(c, "PARTITION")?;
        u32::try_from(p).map_err(|_| format!("No partition {p}"))
    } else {
        Ok(0)
    }
}

/// The rest of `ACK`.
pub(super) fn parse_ack(c: &mut Cursor) -> Result<Statement, ParseError> {
    let topic = topic_id(c)?;
    c.expect("group")?;
    let group = group(c)?;
    let partition = partition(c)?;
    if c.keyword("offset") {
        let offset = count(c, "OFFSET")?;
        return c.end().map(|_| {
            Statement::Topic(TopicCommand::Settle {
                topic,
                group,
                partition,
                offset,
                kind: Settlement::Accept,
            })
        });
    }
    c.expect("upto")?;
    c.expect("offset")?;
    let upto = count(c, "UPTO OFFSET")?;
    c.end().map(|_| {
        Statement::Topic(TopicCommand::Ack {
            topic,
            group,
            partition,
            upto,
        })
    })
}
