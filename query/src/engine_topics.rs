//! Topics (API.md 3.12, 1.10): DDL, `CONSUME` and `ACK`, over the messages the fold routes
//! from table changes (`folddb_materializer::topics`).

use folddb_materializer::topics::{self, Message, Route};
use folddb_materializer::{Family, Op, Role};

use super::*;
use crate::dialect::{ConsumeStart, TopicCommand};

/// One message as a consumer gets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    pub partition: u32,
    pub offset: u64,
    pub message: Message,
    /// How many times it was sent to the group (1 the first time); 1 outside a group.
    pub deliveries: u32,
}

/// What one consume returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumed {
    pub messages: Vec<Delivered>,
    /// The offset to consume from next.
    pub next_offset: u64,
    /// Whether the limit cut the answer short.
    pub has_more: bool,
}

/// What a consume asks for.
#[derive(Debug, Clone)]
pub struct ConsumeRequest {
    pub topic: String,
    pub group: Option<String>,
    pub partition: u32,
    pub start: ConsumeStart,
    pub limit: u64,
}

/// CONSUME's result columns (API.md 3.12).
const CONSUME_COLS: crate::system::Cols = &[
    ("topic_id", DataType::Text),
    ("partition_id", DataType::Int),
    ("offset", DataType::BigInt),
    ("key", DataType::Text),
    ("payload", DataType::Bytes),
    ("timestamp_ms", DataType::BigInt),
    ("user_id", DataType::Text),
    ("op", DataType::Text),
];

/// ACK's result columns.
const ACK_COLS: crate::system::Cols = &[
    ("topic", DataType::Text),
    ("group_id", DataType::Text),
    ("partition", DataType::Int),
    ("committed_offset", DataType::BigInt),
];

/// Consume and ack need role service, dba or system (API.md 1.10, 3.12).
pub fn may_consume(caller: &Caller) -> StmtResult<()> {
    if caller.role == Role::User {
        return Err(Error::PermissionDenied(
            "Consuming topics requires role service, dba or system".into(),
        ));
    }
    Ok(())
}

impl Engine {
    pub(super) async fn topic_command(
        &self,
        caller: &Caller,
        namespace: &str,
        command: &TopicCommand,
    ) -> StmtResult<Out> {
        match command {
            TopicCommand::Create {
                id,
                partitions,
                if_not_exists,
                max_deliveries,
                dead_letter,
                retention_seconds,
                retention_max_bytes,
            } => {
                let create = Op::CreateTopic {
                    id: id.clone(),
                    partitions: *partitions,
                    if_not_exists: *if_not_exists,
                    max_deliveries: *max_deliveries,
                    dead_letter: dead_letter.clone(),
                    retention_seconds: *retention_seconds,
                };
                let skipped = format!("Topic '{id}' already exists (skipped)");
                let created = format!("Topic '{id}' created with {partitions} partition(s)");
                let Some(bytes) = retention_max_bytes else {
                    return msg(
                        caller,
                        self.propose_catalog(caller, create, skipped, created)
                            .await?,
                    );
                };
                // The byte limit is its own op, in the same command (so applied with the
                // creation, or not at all); an existing topic keeps its own.
                if *if_not_exists && topics::topic(self.store.as_ref(), id)?.is_some() {
                    return msg(caller, skipped);
                }
                let limit = Op::SetTopicRetention {
                    topic: id.clone(),
                    seconds: None,
                    max_bytes: Some(*bytes),
                };
                let r = self.propose(&caller.user, vec![create, limit]).await?;
                msg(
                    caller,
                    if r.first().is_some_and(|r| r.affected == 0) {
                        skipped
                    } else {
                        created
                    },
                )
            }
            TopicCommand::SetRetention {
                id,
                retention_seconds,
                retention_max_bytes,
            } => msg(
                caller,
                self.propose_catalog(
                    caller,
                    Op::SetTopicRetention {
                        topic: id.clone(),
                        seconds: *retention_seconds,
                        max_bytes: *retention_max_bytes,
                    },
                    String::new(),
                    format!("Topic '{id}' altered"),
                )
                .await?,
            ),
            TopicCommand::Drop { id, if_exists } => msg(
                caller,
                self.propose_catalog(
                    caller,
                    Op::DropTopic {
                        id: id.clone(),
                        if_exists: *if_exists,
                    },
                    format!("Topic '{id}' does not exist (skipped)"),
                    format!("Topic '{id}' dropped"),
                )
                .await?,
            ),
            TopicCommand::Clear { id } => msg(
                caller,
                self.propose_catalog(
                    caller,
                    Op::ClearTopic { id: id.clone() },
                    String::new(),
                    format!("Topic '{id}' cleared"),
                )
                .await?,
            ),
            TopicCommand::AddSource {
                topic,
                table,
                op,
                payload,
                filter,
            } => {
                // An unqualified source table is in namespace `default` (API.md 3.12).
                let def = self.table(
                    table
                        .namespace
                        .as_deref()
                        .unwrap_or(if namespace.is_empty() {
                            "default"
                        } else {
                            namespace
                        }),
                    table,
                )?;
                let planned = match filter {
                    Some(text) => Some(plan_filter(&def, text)?),
                    None => None,
                };
                let route = Route {
                    table: def.id,
                    table_name: def.qualified_name(),
                    op: *op,
                    payload: *payload,
                    filter: planned,
                    filter_sql: filter.clone(),
                };
                let done = format!(
                    "Route {} ON {} added to topic '{topic}'",
                    route.table_name,
                    op.name().to_ascii_uppercase()
                );
                self.propose(
                    &caller.user,
                    vec![Op::AddTopicRoute {
                        topic: topic.clone(),
                        route,
                    }],
                )
                .await?;
                msg(caller, done)
            }
            TopicCommand::Consume {
                topic,
                group,
                start,
                limit,
            } => {
                may_consume(caller)?;
                let request = ConsumeRequest {
                    topic: topic.clone(),
                    group: group.clone(),
                    partition: 0,
                    start: *start,
                    limit: *limit,
                };
                let consumed = match group {
                    Some(_) => self.consume_claimed(caller, &request).await?,
                    None => self.consume(&request)?,
                };
                // With a group, SQL CONSUME acknowledges what it returned (API.md 3.12).
                if let (Some(group), Some(last)) = (group, consumed.messages.last()) {
                    self.ack(caller, topic, group, 0, last.offset).await?;
                }
                let mut rows = crate::system::Rows::new(CONSUME_COLS);
                for d in &consumed.messages {
                    rows.rows.push(vec![
                        Value::Text(topic.clone()),
                        Value::Int(d.partition as i32),
                        Value::BigInt(d.offset as i64),
                        d.message.key.clone().map_or(Value::Null, Value::Text),
                        Value::Bytes(d.message.payload.clone()),
                        Value::BigInt(d.message.timestamp_ms as i64),
                        d.message.user.clone().map_or(Value::Null, Value::Text),
                        Value::Text(d.message.op.name().into()),
                    ]);
                }
                Ok(Out::Result(table_result(caller, &rows)?))
            }
            TopicCommand::Settle {
                topic,
                group,
                partition,
                offset,
                kind,
            } => {
                may_consume(caller)?;
                let committed = self
                    .settle(caller, topic, group, *partition, (*offset, *offset), *kind)
                    .await?;
                let mut rows = crate::system::Rows::new(ACK_COLS);
                rows.rows.push(vec![
                    Value::Text(topic.clone()),
                    Value::Text(group.clone()),
                    Value::Int(*partition as i32),
                    committed.map_or(Value::Null, |c| Value::BigInt(c as i64)),
                ]);
                Ok(Out::Result(table_result(caller, &rows)?))
            }
            TopicCommand::Ack {
                topic,
                group,
                partition,
                upto,
            } => {
                may_consume(caller)?;
                let committed = self.ack(caller, topic, group, *partition, *upto).await?;
                let mut rows = crate::system::Rows::new(ACK_COLS);
                rows.rows.push(vec![
                    Value::Text(topic.clone()),
                    Value::Text(group.clone()),
                    Value::Int(*partition as i32),
                    Value::BigInt(committed as i64),
                ]);
                Ok(Out::Result(table_result(caller, &rows)?))
            }
        }
    }

    /// The next offset of the partition `request` names, and where `start` puts a reader
    /// that has no offset: checks the topic, partition and limit.
    fn resolve(&self, request: &ConsumeRequest) -> StmtResult<(u64, u64)> {
        let store = self.store.as_ref();
        let topic = &request.topic;
        let def = topics::topic(store, topic)?
            .ok_or_else(|| Error::NotFound(format!("Topic '{topic}' not found")))?;
        let partition = request.partition;
        if partition >= def.partitions {
            return Err(Error::InvalidInput(format!(
                "Topic '{topic}' has no partition {partition} (it has {})",
                def.partitions
            )));
        }
        if request.limit == 0 {
            return Err(Error::InvalidInput("limit must be at least 1".into()));
        }
        let head = topics::head(store, topic, partition)?;
        let start = match request.start {
            ConsumeStart::Latest => head,
            ConsumeStart::Earliest => 0,
            ConsumeStart::Offset(n) if n > head => {
                return Err(Error::InvalidInput(format!(
                    "Offset {n} is out of range: partition {partition} of topic '{topic}' has \
                     offsets below {head}"
                )));
            }
            ConsumeStart::Offset(n) => n,
        };
        Ok((head, start))
    }

    /// The messages `request` asks for, from this node's applied state, claiming nothing:
    /// after the group's acknowledged offset when it has one, else from `start`.
    pub fn consume(&self, request: &ConsumeRequest) -> StmtResult<Consumed> {
        let (head, start) = self.resolve(request)?;
        let (topic, partition) = (&request.topic, request.partition);
        let next = match &request.group {
            Some(g) => topics::group_state(self.store.as_ref(), topic, g, partition)?.next(),
            None => None,
        };
        let from = next.unwrap_or(start);
        let mut consumed = self.read_range(topic, partition, from, request.limit, None)?;
        if consumed.messages.is_empty() {
            consumed.next_offset = head.max(from);
        }
        Ok(consumed)
    }

    /// For a consumer of a group: claims, through the log, the next messages no other
    /// consumer of the group holds (API.md 4.5), and returns them. They are sent to the
    /// group's other consumers again once the visibility timeout passes without an ack.
    pub async fn consume_claimed(
        &self,
        caller: &Caller,
        request: &ConsumeRequest,
    ) -> StmtResult<Consumed> {
        let (head, start) = self.resolve(request)?;
        let (topic, partition) = (&request.topic, request.partition);
        let Some(group) = request.group.clone() else {
            return self.consume(request);
        };
        let state = topics::group_state(self.store.as_ref(), topic, &group, partition)?;
        let nothing = Consumed {
            messages: Vec::new(),
            next_offset: state.next().unwrap_or(start).max(head),
            has_more: false,
        };
        // Nothing to claim: no entry, unless the group's first position is to be fixed.
        if state.next().is_some()
            && state
                .claimable(start, head, request.limit, now_ms())
                .is_none()
        {
            return Ok(nothing);
        }
        Ok(self
            .claim_once(caller, request, &group, start)
            .await?
            .unwrap_or(nothing))
    }

    /// One claim of [`Engine::consume_claimed`]: `None` when it took nothing.
    async fn claim_once(
        &self,
        caller: &Caller,
        request: &ConsumeRequest,
        group: &str,
        start: u64,
    ) -> StmtResult<Option<Consumed>> {
        let (topic, partition) = (&request.topic, request.partition);
        let claim = crate::ids::ulid();
        let claimed = self
            .propose(
                &caller.user,
                vec![Op::ClaimTopic {
                    topic: topic.clone(),
                    group: group.to_owned(),
                    partition,
                    claim: claim.clone(),
                    start,
                    limit: request.limit,
                    visibility_ms: self.topic_visibility_ms,
                }],
            )
            .await?;
        let Some(taken) = claimed.first().filter(|r| r.affected > 0) else {
            return Ok(None);
        };
        let range = match taken.seqs[..] {
            [a, b] => Some((a as u64, b as u64)),
            _ => None,
        };
        // In a cluster the leader answered once it applied the claim; this node may apply
        // it a moment later.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let state = topics::group_state(self.store.as_ref(), topic, group, partition)?;
            if let Some((from, c)) = state.claims.iter().find(|(_, c)| c.id == claim) {
                let mut got =
                    self.read_range(topic, partition, *from, c.to - from, Some(&state))?;
                got.has_more = got.messages.len() as u64 == request.limit;
                return Ok(Some(got));
            }
            // Gone and acknowledged: another consumer's cumulative ack passed it between
            // the claim and this read. Nothing of it is left to deliver.
            if let Some((from, to)) = range
                && (from..to).all(|o| state.is_acked(o))
            {
                return Ok(Some(Consumed {
                    messages: Vec::new(),
                    next_offset: to,
                    has_more: true,
                }));
            }
            if std::time::Instant::now() >= deadline {
                return Err(Error::Unavailable(
                    "the claim was made, but this node has not applied it yet: retry".into(),
                ));
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    /// Up to `limit` messages of a partition from offset `from`, with their deliveries to
    /// the group whose state is `group`.
    fn read_range(
        &self,
        topic: &str,
        partition: u32,
        from: u64,
        limit: u64,
        group: Option<&topics::GroupState>,
    ) -> StmtResult<Consumed> {
        let store = self.store.as_ref();
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let found = store.scan_range(
            Family::Topics,
            &topics::message_key(topic, partition, from),
            &topics::partition_prefix(topic, partition),
            limit,
        )?;
        let mut messages = Vec::with_capacity(found.len());
        for (k, v) in found {
            let offset = topics::offset_of(&k).ok_or_else(|| {
                Error::Internal(format!("a message key of topic '{topic}' is damaged"))
            })?;
            if group.is_some_and(|g| g.is_acked(offset)) {
                // Acknowledged meanwhile, or sent to the dead-letter topic by this claim.
                continue;
            }
            let message: Message = folddb_materializer::codec::decode(&v, "a topic message")?;
            messages.push(Delivered {
                partition,
                offset,
                message,
                deliveries: group.map_or(1, |g| g.deliveries_of(offset)),
            });
        }
        let next_offset = messages.last().map_or(from, |d| d.offset + 1);
        Ok(Consumed {
            has_more: messages.len() == limit,
            messages,
            next_offset,
        })
    }

    /// Removes, through the log, the messages of every topic older than its retention, or
    /// past its byte limit (for the leader's scheduler, now and then). Returns how many partitions it trimmed.
    pub async fn trim_topics(&self, now_ms: u64) -> StmtResult<usize> {
        let store = self.store.clone();
        let ops = tokio::task::spawn_blocking(move || {
            let mut ops = Vec::new();
            for def in topics::topics(store.as_ref())? {
                let cutoff = now_ms.saturating_sub(def.retention_seconds.saturating_mul(1000));
                // The byte limit is the topic's: each partition keeps its share.
                let share = def.retention_max_bytes / u64::from(def.partitions.max(1));
                for partition in 0..def.partitions {
                    // A bounded read each time: a long backlog goes over several rounds.
                    let old =
                        topics::expired_before(store.as_ref(), &def, partition, cutoff, 10_000)?;
                    let over =
                        topics::oversize_before(store.as_ref(), &def, partition, share, 100_000)?;
                    if let Some(before) = old.max(over) {
                        ops.push(Op::TrimTopic {
                            topic: def.id.clone(),
                            partition,
                            before,
                        });
                    }
                }
            }
            Ok::<_, folddb_materializer::Error>(ops)
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))??;
        let n = ops.len();
        for op in ops {
            self.propose("system", vec![op]).await?;
        }
        Ok(n)
    }

    /// Settles group `group`'s messages `from..=to` of a partition alone (a consumer's own
    /// claim), through the log: acknowledged, released to be sent again at once, or
    /// rejected (to the dead-letter topic). Returns the group's acknowledged offset after
    /// it, if it has one.
    pub async fn settle(
        &self,
        caller: &Caller,
        topic: &str,
        group: &str,
        partition: u32,
        (from, to): (u64, u64),
        kind: crate::dialect::Settlement,
    ) -> StmtResult<Option<u64>> {
        use crate::dialect::Settlement;
        may_consume(caller)?;
        if group.is_empty() {
            return Err(Error::InvalidInput("An ack needs a group".into()));
        }
        let (topic, group) = (topic.to_owned(), group.to_owned());
        let op = match kind {
            Settlement::Accept => Op::AckTopicRange {
                topic: topic.clone(),
                group: group.clone(),
                partition,
                from,
                to,
            },
            Settlement::Release | Settlement::Reject => Op::SettleTopic {
                topic: topic.clone(),
                group: group.clone(),
                partition,
                from,
                to,
                reject: kind == Settlement::Reject,
            },
        };
        self.propose(&caller.user, vec![op]).await?;
        let (topic, group) = (topic.as_str(), group.as_str());
        Ok(
            topics::group_offset(self.store.as_ref(), topic, group, partition)?
                .map(|o| o.last_acked),
        )
    }

    /// Acknowledges group `group`'s messages of a partition up to `upto`, through the log;
    /// returns the group's acknowledged offset after it (acks never regress).
    pub async fn ack(
        &self,
        caller: &Caller,
        topic: &str,
        group: &str,
        partition: u32,
        upto: u64,
    ) -> StmtResult<u64> {
        may_consume(caller)?;
        if group.is_empty() {
            return Err(Error::InvalidInput("An ack needs a group".into()));
        }
        self.propose(
            &caller.user,
            vec![Op::AckTopic {
                topic: topic.to_owned(),
                group: group.to_owned(),
                partition,
                upto,
            }],
        )
        .await?;
        Ok(
            topics::group_offset(self.store.as_ref(), topic, group, partition)?
                .map_or(upto, |o| o.last_acked),
        )
    }
}

/// A route's `WHERE` text as the fold evaluates it: comparisons of a column with a literal
/// (coerced to the column's type), `IN` lists, `IS [NOT] NULL`, `AND`, `OR`, `NOT`.
pub fn plan_filter(def: &TableDef, text: &str) -> StmtResult<topics::Filter> {
    use datafusion::sql::sqlparser::ast::{BinaryOperator as B, UnaryOperator};
    use datafusion::sql::sqlparser::dialect::GenericDialect;
    use datafusion::sql::sqlparser::parser::Parser;
    use topics::{CmpOp, Filter};

    let expr = Parser::new(&GenericDialect {})
        .try_with_sql(text)
        .and_then(|mut p| p.parse_expr())
        .map_err(|e| Error::InvalidSql(format!("Route filter: {e}")))?;
    let unsupported = |e: &Expr| {
        Error::InvalidInput(format!(
            "Route filters compare a column with a literal (=, <>, <, <=, >, >=, IN, IS [NOT] \
             NULL) and combine with AND, OR, NOT; not: {e}"
        ))
    };
    let column = |e: &Expr| -> StmtResult<&folddb_materializer::ColumnDef> {
        let name = match e {
            Expr::Identifier(id) => id.value.to_ascii_lowercase(),
            Expr::CompoundIdentifier(parts) => parts
                .last()
                .map(|p| p.value.to_ascii_lowercase())
                .unwrap_or_default(),
            other => return Err(unsupported(other)),
        };
        def.column(&name).ok_or_else(|| {
            Error::NotFound(format!(
                "Column '{name}' does not exist in {}",
                def.qualified_name()
            ))
        })
    };
    let literal = |e: &Expr, col: &folddb_materializer::ColumnDef| -> StmtResult<Value> {
        match dml::eval_literal(e, &[]) {
            Ok(dml::Evaluated::Literal(lit)) => convert::coerce(&lit, col.data_type).map_err(|m| {
                Error::InvalidInput(format!("Route filter on column '{}': {m}", col.name))
            }),
            _ => Err(unsupported(e)),
        }
    };
    let ordered = |col: &folddb_materializer::ColumnDef| {
        !matches!(
            col.data_type,
            DataType::Embedding(_) | DataType::Bytes | DataType::Json | DataType::File
        )
    };
    fn walk(
        e: &Expr,
        cmp: &dyn Fn(&Expr, &Expr, CmpOp) -> StmtResult<Filter>,
        leaf: &dyn Fn(&Expr) -> StmtResult<Filter>,
    ) -> StmtResult<Filter> {
        match e {
            Expr::Nested(inner) => walk(inner, cmp, leaf),
            Expr::BinaryOp { left, op, right } => {
                let both = |f: fn(Box<Filter>, Box<Filter>) -> Filter| -> StmtResult<Filter> {
                    Ok(f(
                        Box::new(walk(left, cmp, leaf)?),
                        Box::new(walk(right, cmp, leaf)?),
                    ))
                };
                match op {
                    B::And => both(Filter::And),
                    B::Or => both(Filter::Or),
                    B::Eq => cmp(left, right, CmpOp::Eq),
                    B::NotEq => cmp(left, right, CmpOp::NotEq),
                    B::Lt => cmp(left, right, CmpOp::Lt),
                    B::LtEq => cmp(left, right, CmpOp::LtEq),
                    B::Gt => cmp(left, right, CmpOp::Gt),
                    B::GtEq => cmp(left, right, CmpOp::GtEq),
                    _ => leaf(e),
                }
            }
            Expr::UnaryOp {
                op: UnaryOperator::Not,
                expr,
            } => Ok(Filter::Not(Box::new(walk(expr, cmp, leaf)?))),
            other => leaf(other),
        }
    }
    let cmp = |l: &Expr, r: &Expr, op: CmpOp| -> StmtResult<Filter> {
        // A column on either side: `5 < n` is `n > 5`.
        let (col, lit, op) = match (column(l), column(r)) {
            (Ok(c), _) => (c, r, op),
            (Err(_), Ok(c)) => (
                c,
                l,
                match op {
                    CmpOp::Lt => CmpOp::Gt,
                    CmpOp::LtEq => CmpOp::GtEq,
                    CmpOp::Gt => CmpOp::Lt,
                    CmpOp::GtEq => CmpOp::LtEq,
                    same => same,
                },
            ),
            (Err(e), Err(_)) => return Err(e),
        };
        if !matches!(op, CmpOp::Eq | CmpOp::NotEq) && !ordered(col) {
            return Err(Error::InvalidInput(format!(
                "Column '{}' cannot be ordered in a route filter",
                col.name
            )));
        }
        Ok(Filter::Cmp {
            column: col.id,
            op,
            value: literal(lit, col)?,
        })
    };
    let leaf = |e: &Expr| -> StmtResult<Filter> {
        match e {
            Expr::IsNull(inner) => Ok(Filter::IsNull {
                column: column(inner)?.id,
                negated: false,
            }),
            Expr::IsNotNull(inner) => Ok(Filter::IsNull {
                column: column(inner)?.id,
                negated: true,
            }),
            Expr::InList {
                expr,
                list,
                negated,
            } => {
                let col = column(expr)?;
                Ok(Filter::InList {
                    column: col.id,
                    values: list
                        .iter()
                        .map(|v| literal(v, col))
                        .collect::<StmtResult<_>>()?,
                    negated: *negated,
                })
            }
            other => Err(unsupported(other)),
        }
    };
    walk(&expr, &cmp, &leaf)
}

#[cfg(test)]
#[path = "engine_topics_test.rs"]
mod tests;
