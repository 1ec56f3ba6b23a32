//! Topics (API.md 3.12, 4.5; `materializer/FORMAT.md`, "Topics"): routes from the row
//! changes of tables to partitioned, gap-free message logs, and the offsets consumer groups
//! acknowledged.
//!
//! A route's messages are written by the fold of the log entry that made the change, in the
//! same batch as the change and its applied mark: there is no second write path, no message
//! without its change, and none is lost in a crash. Offsets count from 0 per partition, in
//! log order, so every replica and every replay numbers them alike. A message's partition is
//! a CRC-32 of its key (the row's primary key as text) modulo the topic's partitions.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::catalog::{StateRead, TableDef, TableId};
use crate::codec;
use crate::hot::{Family, HotBatch};
use crate::row::RowEvent;

/// The default retention of a topic's messages (API.md 3.12): seven days…
pub const DEFAULT_RETENTION_SECONDS: u64 = 7 * 24 * 3600;
/// … and one GiB.
pub const DEFAULT_RETENTION_BYTES: u64 = 1 << 30;
/// The most partitions a topic may have.
pub const MAX_PARTITIONS: u32 = 1024;

/// A topic (`system.topics`), in the catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopicDef {
    /// Free-form (dots allowed), as created.
    pub id: String,
    pub partitions: u32,
    pub retention_seconds: u64,
    pub retention_max_bytes: u64,
    pub routes: Vec<Route>,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
    /// A message a group's consumers were sent this many times without acknowledging it
    /// goes to `dead_letter` instead of being sent again (and counts as acknowledged).
    pub max_deliveries: Option<u32>,
    /// Where rejected messages, and those past `max_deliveries`, go.
    pub dead_letter: Option<String>,
}

/// Which row changes of one table a topic receives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Route {
    pub table: TableId,
    /// `namespace.table`, as the route was added.
    pub table_name: String,
    pub op: RouteOp,
    pub payload: Payload,
    /// The route's `WHERE`, over the row (the old image for a delete): a change it does not
    /// hold for (false, or unknown through a NULL) sends no message.
    pub filter: Option<Filter>,
    /// The `WHERE` as written, for `system.topics`.
    pub filter_sql: Option<String>,
}

/// A comparison of a route filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CmpOp {
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
}

/// A route's `WHERE` over a row's columns (by column id), with SQL's three-valued logic.
/// Literals are of their column's type (the planner coerces them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Filter {
    Cmp {
        column: u32,
        op: CmpOp,
        value: crate::value::Value,
    },
    IsNull {
        column: u32,
        negated: bool,
    },
    InList {
        column: u32,
        values: Vec<crate::value::Value>,
        negated: bool,
    },
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
}

impl Filter {
    /// Whether `row` satisfies the filter: `None` when it is unknown (a NULL compared).
    pub fn eval(&self, row: &crate::row::RowVersion) -> Option<bool> {
        use crate::value::Value;
        let cell = |column: u32| {
            row.cells
                .iter()
                .find(|(id, _)| *id == column)
                .map_or(&Value::Null, |(_, v)| v)
        };
        // Values of one type order as their key encoding does (`row::encode_key_part`).
        let order = |a: &Value, b: &Value| {
            let (mut x, mut y) = (Vec::new(), Vec::new());
            crate::row::encode_key_part(a, &mut x);
            crate::row::encode_key_part(b, &mut y);
            x.cmp(&y)
        };
        match self {
            Filter::Cmp { column, op, value } => {
                let v = cell(*column);
                if matches!(v, Value::Null) || matches!(value, Value::Null) {
                    return None;
                }
                let o = order(v, value);
                Some(match op {
                    CmpOp::Eq => o.is_eq(),
                    CmpOp::NotEq => o.is_ne(),
                    CmpOp::Lt => o.is_lt(),
                    CmpOp::LtEq => o.is_le(),
                    CmpOp::Gt => o.is_gt(),
                    CmpOp::GtEq => o.is_ge(),
                })
            }
            Filter::IsNull { column, negated } => {
                Some(matches!(cell(*column), Value::Null) != *negated)
            }
            Filter::InList {
                column,
                values,
                negated,
            } => {
                let v = cell(*column);
                if matches!(v, Value::Null) {
                    return None;
                }
                let found = values.iter().any(|x| order(v, x).is_eq());
                if found {
                    Some(!negated)
                } else if values.iter().any(|x| matches!(x, Value::Null)) {
                    None
                } else {
                    Some(*negated)
                }
            }
            Filter::And(a, b) => match (a.eval(row), b.eval(row)) {
                (Some(false), _) | (_, Some(false)) => Some(false),
                (Some(true), Some(true)) => Some(true),
                _ => None,
            },
            Filter::Or(a, b) => match (a.eval(row), b.eval(row)) {
                (Some(true), _) | (_, Some(true)) => Some(true),
                (Some(false), Some(false)) => Some(false),
                _ => None,
            },
            Filter::Not(a) => a.eval(row).map(|b| !b),
        }
    }
}

/// The kind of row change a route takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RouteOp {
    Insert,
    Update,
    Delete,
}

impl RouteOp {
    /// As SQL `CONSUME` shows it.
    pub fn name(self) -> &'static str {
        match self {
            RouteOp::Insert => "insert",
            RouteOp::Update => "update",
            RouteOp::Delete => "delete",
        }
    }

    /// As the HTTP API shows it.
    pub fn title(self) -> &'static str {
        match self {
            RouteOp::Insert => "Insert",
            RouteOp::Update => "Update",
            RouteOp::Delete => "Delete",
        }
    }
}

/// What a message carries (API.md 3.12).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Payload {
    /// The row's key columns.
    Key,
    /// Every column of the row (the old image for a delete).
    Full,
    /// The key columns and the columns the change set (every column for an insert).
    Diff,
}

impl Payload {
    pub fn name(self) -> &'static str {
        match self {
            Payload::Key => "key",
            Payload::Full => "full",
            Payload::Diff => "diff",
        }
    }
}

/// One message of a topic partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// The source table, `namespace.table`.
    pub table: String,
    pub op: RouteOp,
    /// The row's primary key as text.
    pub key: Option<String>,
    /// JSON bytes (see [`Payload`]).
    pub payload: Vec<u8>,
    /// The owner of a USER table's row.
    pub user: Option<String>,
    /// The time of the command that made the change.
    pub timestamp_ms: u64,
    /// The log entry that made the change.
    pub index: u64,
}

/// A consumer group's acknowledged offset of one partition (`system.topic_offsets`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupOffset {
    pub last_acked: u64,
    pub updated_at_ms: u64,
}

/// A range of a partition one consumer of a group claimed: invisible to the group's other
/// consumers until acknowledged, or until `until_ms` passes (then it is delivered again).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    /// The consumer's id for the claim, as its `ClaimTopic` named it.
    pub id: String,
    /// The first offset after the range.
    pub to: u64,
    pub until_ms: u64,
}

const TOPIC: &[u8] = b"p\0";
const MESSAGE: u8 = b'm';
const HEAD: u8 = b'h';
const GROUP: u8 = b'g';
const CLAIM: u8 = b'c';
const ACKED: u8 = b'a';
const DELIVERIES: u8 = b'd';
const CURSOR: u8 = b'n';
const MARK: u8 = b'b';

#[path = "topics_retention.rs"]
mod retention;
pub use retention::{expired_before, oversize_before, trim};

/// A partition's byte marks are at most this many message bytes apart (see [`publish`]).
pub const MARK_BYTES: u64 = 64 * 1024;

/// The catalog key of topic `id`.
pub fn topic_key(id: &str) -> Vec<u8> {
    [TOPIC, id.as_bytes()].concat()
}

/// `len (u16 BE) + bytes`.
fn part(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    out.extend_from_slice(&(bytes.len().min(u16::MAX as usize) as u16).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// The prefix of every key of topic `id` of a kind (`m`, `h`, `g`).
fn topic_prefix(kind: u8, id: &str) -> Vec<u8> {
    let mut out = vec![kind];
    part(&mut out, id);
    out
}

/// The prefix of the messages of partition `partition` of topic `id`.
pub fn partition_prefix(id: &str, partition: u32) -> Vec<u8> {
    let mut out = topic_prefix(MESSAGE, id);
    out.extend_from_slice(&partition.to_be_bytes());
    out
}

/// The key of message `offset` of partition `partition` of topic `id`.
pub fn message_key(id: &str, partition: u32, offset: u64) -> Vec<u8> {
    let mut out = partition_prefix(id, partition);
    out.extend_from_slice(&offset.to_be_bytes());
    out
}

fn head_key(id: &str, partition: u32) -> Vec<u8> {
    let mut out = topic_prefix(HEAD, id);
    out.extend_from_slice(&partition.to_be_bytes());
    out
}

/// The key of the byte mark at `offset` of a partition.
fn mark_key(id: &str, partition: u32, offset: u64) -> Vec<u8> {
    let mut out = topic_prefix(MARK, id);
    out.extend_from_slice(&partition.to_be_bytes());
    out.extend_from_slice(&offset.to_be_bytes());
    out
}

fn group_key(id: &str, group: &str, partition: u32) -> Vec<u8> {
    let mut out = topic_prefix(GROUP, id);
    part(&mut out, group);
    out.extend_from_slice(&partition.to_be_bytes());
    out
}

/// The offset of a message key's last 8 bytes.
pub fn offset_of(key: &[u8]) -> Option<u64> {
    let tail: [u8; 8] = key.get(key.len().checked_sub(8)?..)?.try_into().ok()?;
    Some(u64::from_be_bytes(tail))
}

/// Topic `id`.
pub fn topic(state: &dyn StateRead, id: &str) -> crate::Result<Option<TopicDef>> {
    state
        .get(Family::Catalog, &topic_key(id))?
        .map(|v| codec::decode(&v, "a topic"))
        .transpose()
}

/// Every topic, by id.
pub fn topics(state: &dyn StateRead) -> crate::Result<Vec<TopicDef>> {
    state
        .scan_prefix(Family::Catalog, TOPIC)?
        .into_iter()
        .map(|(_, v)| codec::decode(&v, "a topic"))
        .collect()
}

/// Writes topic `def`.
pub fn put_topic(batch: &mut HotBatch, def: &TopicDef) {
    batch.put(Family::Catalog, topic_key(&def.id), codec::encode(def));
}

/// Removes topic `id`, its messages and its groups' offsets and claims.
pub fn drop_topic(batch: &mut HotBatch, id: &str) {
    batch.delete(Family::Catalog, topic_key(id));
    for kind in [MESSAGE, HEAD, GROUP, CLAIM, ACKED, DELIVERIES, CURSOR, MARK] {
        batch.delete_prefix(Family::Topics, &topic_prefix(kind, id));
    }
}

/// Removes topic `id`'s messages; offsets go on from where they were.
pub fn clear_topic(batch: &mut HotBatch, id: &str) {
    batch.delete_prefix(Family::Topics, &topic_prefix(MESSAGE, id));
    batch.delete_prefix(Family::Topics, &topic_prefix(MARK, id));
}

/// The offset the next message of a partition gets (how many it ever had).
pub fn head(state: &dyn StateRead, id: &str, partition: u32) -> crate::Result<u64> {
    Ok(head_and_bytes(state, id, partition)?.0)
}

/// A partition's next offset, and the bytes of the messages it ever had (as stored: each
/// message's encoded value). Heads written before the byte count was kept count from 0.
pub fn head_and_bytes(
    state: &dyn StateRead,
    id: &str,
    partition: u32,
) -> crate::Result<(u64, u64)> {
    let Some(v) = state.get(Family::Topics, &head_key(id, partition))? else {
        return Ok((0, 0));
    };
    let word = |at: usize| {
        v.get(at..at + 8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_be_bytes)
    };
    match (v.len(), word(0), word(8)) {
        (8, Some(next), _) => Ok((next, 0)),
        (16, Some(next), Some(bytes)) => Ok((next, bytes)),
        _ => Err(crate::Error::Decode {
            what: "a topic partition's head",
            reason: format!("{} bytes, not 8 or 16", v.len()),
        }),
    }
}

/// Group `group`'s acknowledged offset of a partition.
pub fn group_offset(
    state: &dyn StateRead,
    id: &str,
    group: &str,
    partition: u32,
) -> crate::Result<Option<GroupOffset>> {
    state
        .get(Family::Topics, &group_key(id, group, partition))?
        .map(|v| codec::decode(&v, "a group offset"))
        .transpose()
}

/// Every group offset of topic `id`: (group, partition, offset).
pub fn group_offsets(
    state: &dyn StateRead,
    id: &str,
) -> crate::Result<Vec<(String, u32, GroupOffset)>> {
    let prefix = topic_prefix(GROUP, id);
    let mut out = Vec::new();
    for (k, v) in state.scan_prefix(Family::Topics, &prefix)? {
        let rest = &k[prefix.len()..];
        let Some((len, rest)) = rest.split_first_chunk::<2>() else {
            continue;
        };
        let len = u16::from_be_bytes(*len) as usize;
        let (Some(group), Some(partition)) = (
            rest.get(..len),
            rest.get(len..)
                .and_then(|p| <[u8; 4]>::try_from(p).ok())
                .map(u32::from_be_bytes),
        ) else {
            continue;
        };
        out.push((
            String::from_utf8_lossy(group).into_owned(),
            partition,
            codec::decode(&v, "a group offset")?,
        ));
    }
    Ok(out)
}

/// Sets group `group`'s acknowledged offset of a partition.
pub fn put_group_offset(
    batch: &mut HotBatch,
    id: &str,
    group: &str,
    partition: u32,
    offset: &GroupOffset,
) {
    batch.put(
        Family::Topics,
        group_key(id, group, partition),
        codec::encode(offset),
    );
}

/// The prefix of a kind of key of one group's partition.
fn group_part(kind: u8, id: &str, group: &str, partition: u32) -> Vec<u8> {
    let mut out = topic_prefix(kind, id);
    part(&mut out, group);
    out.extend_from_slice(&partition.to_be_bytes());
    out
}

fn at(prefix: &[u8], offset: u64) -> Vec<u8> {
    [prefix, &offset.to_be_bytes()[..]].concat()
}

fn u64_of(v: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(v).ok().map(u64::from_be_bytes)
}

/// One group's state of one partition: its acknowledged offset, the claims on it, the
/// ranges acknowledged beyond that offset (per-range acks), and how often the messages
/// delivered more than once were delivered.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupState {
    pub offset: Option<GroupOffset>,
    /// Where the group began, before its first acknowledgement.
    pub cursor: Option<u64>,
    /// By first offset.
    pub claims: Vec<(u64, Claim)>,
    /// `[from, to)` ranges, by `from`.
    pub acked: Vec<(u64, u64)>,
    /// (offset, deliveries) of the messages delivered more than once.
    pub deliveries: Vec<(u64, u32)>,
}

impl GroupState {
    /// The first offset the group has not acknowledged: after its acknowledged offset, else
    /// where it began.
    pub fn next(&self) -> Option<u64> {
        match &self.offset {
            Some(o) => Some(o.last_acked + 1),
            None => self.cursor,
        }
    }

    /// How many times the message at `offset` was delivered, counting one more delivery.
    pub fn deliveries_of(&self, offset: u64) -> u32 {
        self.deliveries
            .iter()
            .find(|(o, _)| *o == offset)
            .map_or(1, |(_, n)| *n)
    }

    /// The range a new claim of up to `limit` messages would take at `now_ms` in a partition
    /// whose next offset is `head`, the group beginning at `start` if it has not begun: the
    /// first offsets that are neither acknowledged nor under a live claim.
    pub fn claimable(&self, start: u64, head: u64, limit: u64, now_ms: u64) -> Option<(u64, u64)> {
        let mut blocked: Vec<(u64, u64)> = self.acked.clone();
        blocked.extend(
            self.claims
                .iter()
                .filter(|(_, c)| c.until_ms > now_ms)
                .map(|(from, c)| (*from, c.to)),
        );
        blocked.sort_unstable();
        let mut x = self.next().unwrap_or(start);
        let mut end = head;
        for (a, b) in blocked {
            if a > x {
                end = end.min(a);
                break;
            }
            x = x.max(b);
        }
        let end = end.min(x.saturating_add(limit.max(1)));
        (x < end).then_some((x, end))
    }
}

/// Group `group`'s state of partition `partition` of topic `id`.
pub fn group_state(
    state: &dyn StateRead,
    id: &str,
    group: &str,
    partition: u32,
) -> crate::Result<GroupState> {
    let scan = |kind| -> crate::Result<Vec<(u64, Vec<u8>)>> {
        let prefix = group_part(kind, id, group, partition);
        Ok(state
            .scan_prefix(Family::Topics, &prefix)?
            .into_iter()
            .filter_map(|(k, v)| Some((u64_of(&k[prefix.len()..])?, v)))
            .collect())
    };
    let mut claims = Vec::new();
    for (from, v) in scan(CLAIM)? {
        claims.push((from, codec::decode(&v, "a topic claim")?));
    }
    Ok(GroupState {
        offset: group_offset(state, id, group, partition)?,
        cursor: state
            .get(Family::Topics, &group_part(CURSOR, id, group, partition))?
            .and_then(|v| u64_of(&v)),
        claims,
        acked: scan(ACKED)?
            .into_iter()
            .filter_map(|(from, v)| Some((from, u64_of(&v)?)))
            .collect(),
        deliveries: scan(DELIVERIES)?
            .into_iter()
            .filter_map(|(o, v)| Some((o, u32::from_be_bytes(<[u8; 4]>::try_from(v).ok()?))))
            .collect(),
    })
}

/// Writes `new`, group `group`'s state of partition `partition` of topic `id` that was
/// `old`: first normalized, its acknowledged offset moved over the acknowledged ranges that
/// follow it, and what lies before it dropped.
pub fn put_group_state(
    batch: &mut HotBatch,
    id: &str,
    group: &str,
    partition: u32,
    old: &GroupState,
    mut new: GroupState,
    now_ms: u64,
) {
    // Merge the acknowledged ranges, then let the offset absorb the one it reaches.
    new.acked.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::new();
    for (a, b) in new.acked.drain(..) {
        match merged.last_mut() {
            Some((_, end)) if a <= *end => *end = (*end).max(b),
            _ => merged.push((a, b)),
        }
    }
    if let Some(next) = new.next()
        && let Some(pos) = merged.iter().position(|(a, b)| *a <= next && *b > next)
    {
        let (_, b) = merged.remove(pos);
        new.offset = Some(GroupOffset {
            last_acked: b - 1,
            updated_at_ms: now_ms,
        });
    }
    if let Some(next) = new.offset.as_ref().map(|o| o.last_acked + 1) {
        new.cursor = None;
        merged.retain(|(_, b)| *b > next);
        for r in &mut merged {
            r.0 = r.0.max(next);
        }
        new.claims.retain(|(_, c)| c.to > next);
        for (from, _) in &mut new.claims {
            *from = (*from).max(next);
        }
        new.deliveries.retain(|(o, _)| *o >= next);
    }
    new.acked = merged;
    let kinds = [CLAIM, ACKED, DELIVERIES];
    for kind in kinds {
        let prefix = group_part(kind, id, group, partition);
        let olds: Vec<u64> = match kind {
            CLAIM => old.claims.iter().map(|(f, _)| *f).collect(),
            ACKED => old.acked.iter().map(|(f, _)| *f).collect(),
            _ => old.deliveries.iter().map(|(o, _)| *o).collect(),
        };
        for from in olds {
            batch.delete(Family::Topics, at(&prefix, from));
        }
    }
    for (from, claim) in &new.claims {
        batch.put(
            Family::Topics,
            at(&group_part(CLAIM, id, group, partition), *from),
            codec::encode(claim),
        );
    }
    for (from, to) in &new.acked {
        batch.put(
            Family::Topics,
            at(&group_part(ACKED, id, group, partition), *from),
            to.to_be_bytes().to_vec(),
        );
    }
    for (offset, n) in &new.deliveries {
        batch.put(
            Family::Topics,
            at(&group_part(DELIVERIES, id, group, partition), *offset),
            n.to_be_bytes().to_vec(),
        );
    }
    let cursor = group_part(CURSOR, id, group, partition);
    match new.cursor {
        Some(c) => batch.put(Family::Topics, cursor, c.to_be_bytes().to_vec()),
        None => batch.delete(Family::Topics, cursor),
    }
    if new.offset != old.offset
        && let Some(o) = &new.offset
    {
        put_group_offset(batch, id, group, partition, o);
    }
}

/// Group state after claim `claim` of `[from, to)` at `now_ms` for `visibility_ms`: the
/// expired claims it overlaps give up that part, and each message they held counts one
/// more delivery.
pub fn with_claim(
    mut s: GroupState,
    claim: &str,
    (from, to): (u64, u64),
    now_ms: u64,
    visibility_ms: u64,
) -> GroupState {
    let mut claims = Vec::new();
    for (a, c) in std::mem::take(&mut s.claims) {
        if c.until_ms > now_ms || c.to <= from || a >= to {
            claims.push((a, c));
            continue;
        }
        for o in a.max(from)..c.to.min(to) {
            let n = s.deliveries_of(o) + 1;
            match s.deliveries.iter_mut().find(|(x, _)| *x == o) {
                Some(slot) => slot.1 = n,
                None => s.deliveries.push((o, n)),
            }
        }
        if a < from {
            claims.push((
                a,
                Claim {
                    to: from,
                    ..c.clone()
                },
            ));
        }
        if c.to > to {
            claims.push((to, c));
        }
    }
    claims.push((
        from,
        Claim {
            id: claim.to_owned(),
            to,
            until_ms: now_ms.saturating_add(visibility_ms),
        },
    ));
    claims.sort_by_key(|(a, _)| *a);
    s.claims = claims;
    s
}

/// The `topics` keys and values that append `message` to topic `def` (read through
/// `state`): the message at its partition's next offset, the new head (with the bytes the
/// partition ever had), and a byte mark when those bytes pass a multiple of [`MARK_BYTES`].
/// Write them before publishing the next message.
pub fn publish(
    state: &dyn StateRead,
    def: &TopicDef,
    message: &Message,
) -> crate::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let partition = partition_of(message.key.as_deref().unwrap_or(""), def.partitions);
    let head = head_and_bytes(state, &def.id, partition)?;
    let mut out = Vec::with_capacity(3);
    let (next, bytes) = append(&mut out, &def.id, partition, head, codec::encode(message));
    out.push(head_entry(&def.id, partition, next, bytes));
    Ok(out)
}

/// Appends the message stored as `value` to a partition whose next offset and byte count
/// are `head`: its key and value, and a byte mark when the count passes a multiple of
/// [`MARK_BYTES`]. The partition's head after it.
fn append(
    out: &mut Vec<(Vec<u8>, Vec<u8>)>,
    id: &str,
    partition: u32,
    (offset, bytes): (u64, u64),
    value: Vec<u8>,
) -> (u64, u64) {
    let after = bytes.saturating_add(value.len() as u64);
    out.push((message_key(id, partition, offset), value));
    if bytes / MARK_BYTES != after / MARK_BYTES {
        out.push((
            mark_key(id, partition, offset + 1),
            after.to_be_bytes().to_vec(),
        ));
    }
    (offset + 1, after)
}

/// A partition's head record: its next offset, and the bytes of every message it had.
fn head_entry(id: &str, partition: u32, next: u64, bytes: u64) -> (Vec<u8>, Vec<u8>) {
    (
        head_key(id, partition),
        [next.to_be_bytes(), bytes.to_be_bytes()].concat(),
    )
}

/// Message `offset` of partition `partition` of topic `id`.
pub fn message(
    state: &dyn StateRead,
    id: &str,
    partition: u32,
    offset: u64,
) -> crate::Result<Option<Message>> {
    state
        .get(Family::Topics, &message_key(id, partition, offset))?
        .map(|v| codec::decode(&v, "a topic message"))
        .transpose()
}

impl GroupState {
    /// Whether the group has acknowledged `offset`.
    pub fn is_acked(&self, offset: u64) -> bool {
        self.next().is_some_and(|n| offset < n)
            || self.acked.iter().any(|(a, b)| *a <= offset && offset < *b)
    }

    /// Whether every offset of `[from, to)` was sent to the group: acknowledged, or in a
    /// claim (live or expired).
    pub fn delivered(&self, from: u64, to: u64) -> bool {
        let mut spans: Vec<(u64, u64)> = self.acked.clone();
        spans.extend(self.next().map(|n| (0, n)));
        spans.extend(self.claims.iter().map(|(a, c)| (*a, c.to)));
        spans.sort_unstable();
        let mut covered = from;
        for (a, b) in spans {
            if a > covered {
                break;
            }
            covered = covered.max(b);
        }
        covered >= to
    }

    /// Ends every claim of `from..to` now, so that they can be claimed again at once (as
    /// further deliveries).
    pub fn release(&mut self, from: u64, to: u64) {
        let mut claims = Vec::new();
        for (a, c) in std::mem::take(&mut self.claims) {
            if c.to <= from || a >= to {
                claims.push((a, c));
                continue;
            }
            if a < from {
                claims.push((
                    a,
                    Claim {
                        to: from,
                        ..c.clone()
                    },
                ));
            }
            claims.push((
                a.max(from),
                Claim {
                    to: c.to.min(to),
                    until_ms: 0,
                    ..c.clone()
                },
            ));
            if c.to > to {
                claims.push((to, c));
            }
        }
        claims.sort_by_key(|(a, _)| *a);
        self.claims = claims;
    }
}

/// The partition of a message with `key` in a topic of `partitions`.
pub fn partition_of(key: &str, partitions: u32) -> u32 {
    crc32fast::hash(key.as_bytes()) % partitions.max(1)
}

/// The kind of change `e` is: `None` for a change that leaves no row and had none.
pub fn op_of(e: &RowEvent) -> Option<RouteOp> {
    let old = e.old.as_ref().filter(|v| !v.deleted);
    let new = e.new.as_ref().filter(|v| !v.deleted);
    match (old, new) {
        (None, Some(_)) => Some(RouteOp::Insert),
        (Some(_), Some(_)) => Some(RouteOp::Update),
        (Some(_), None) => Some(RouteOp::Delete),
        (None, None) => None,
    }
}

/// The payload of a message for change `e` of table `def` (API.md 3.12): a JSON object of
/// columns, with `_seq` and `_table` when it carries the row.
pub fn payload_of(def: &TableDef, e: &RowEvent, op: RouteOp, mode: Payload) -> Vec<u8> {
    use serde_json::{Map, Value as J};
    let old = e.old.as_ref().filter(|v| !v.deleted);
    let new = e.new.as_ref().filter(|v| !v.deleted);
    let image = match op {
        RouteOp::Delete => old,
        _ => new,
    };
    let mut out = Map::new();
    let key_col = def.pk_column().map(|c| c.id);
    let Some(image) = image else {
        return b"{}".to_vec();
    };
    for (id, value) in &image.cells {
        let Some(col) = def.column_by_id(*id) else {
            continue;
        };
        let is_key = key_col == Some(*id);
        let take = match mode {
            Payload::Key => is_key,
            Payload::Full => true,
            Payload::Diff => match op {
                RouteOp::Insert => true,
                RouteOp::Delete => is_key,
                RouteOp::Update => {
                    is_key
                        || old.is_none_or(|o| !o.cells.iter().any(|(i, v)| i == id && v == value))
                }
            },
        };
        if take {
            out.insert(col.name.clone(), value.to_json());
        }
    }
    if mode != Payload::Key {
        out.insert("_seq".into(), J::String(image.seq.to_string()));
        out.insert("_table".into(), J::String(def.qualified_name()));
    }
    serde_json::to_vec(&J::Object(out)).unwrap_or_else(|_| b"{}".to_vec())
}

/// The `topics` keys and values to write for the messages the routes of every topic take
/// from `events`, the row changes of the entry at `index` made at `stamp_ms` (`state` is
/// the state they were made in): each message, and the partitions' new heads.
pub fn route(
    state: &dyn StateRead,
    events: &[RowEvent],
    index: u64,
    stamp_ms: u64,
) -> crate::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let topics = topics(state)?;
    if topics.is_empty() {
        return Ok(Vec::new());
    }
    let mut defs: HashMap<TableId, Option<TableDef>> = HashMap::new();
    let mut heads: HashMap<(String, u32), (u64, u64)> = HashMap::new();
    let mut writes = Vec::new();
    for e in events {
        let Some(op) = op_of(e) else {
            continue;
        };
        for topic in &topics {
            for r in topic
                .routes
                .iter()
                .filter(|r| r.table == e.table && r.op == op)
            {
                let def = match defs.get(&e.table) {
                    Some(def) => def.clone(),
                    None => {
                        let def = crate::catalog::table_history(state, e.table)?.pop();
                        defs.insert(e.table, def.clone());
                        def
                    }
                };
                let Some(def) = def else {
                    continue;
                };
                if let Some(filter) = &r.filter {
                    let image = match op {
                        RouteOp::Delete => e.old.as_ref(),
                        _ => e.new.as_ref(),
                    };
                    if image.and_then(|row| filter.eval(row)) != Some(true) {
                        continue;
                    }
                }
                let key = e.pk.plain();
                let partition = partition_of(&key, topic.partitions);
                let slot = (topic.id.clone(), partition);
                let at = match heads.get(&slot) {
                    Some(h) => *h,
                    None => head_and_bytes(state, &topic.id, partition)?,
                };
                let message = Message {
                    table: def.qualified_name(),
                    op,
                    key: Some(key),
                    payload: payload_of(&def, e, op, r.payload),
                    user: (!e.scope.is_empty()).then(|| e.scope.clone()),
                    timestamp_ms: stamp_ms,
                    index,
                };
                let value = codec::encode(&message);
                heads.insert(slot, append(&mut writes, &topic.id, partition, at, value));
            }
        }
    }
    let mut heads: Vec<_> = heads.into_iter().collect();
    heads.sort();
    for ((id, partition), (next, bytes)) in heads {
        writes.push(head_entry(&id, partition, next, bytes));
    }
    Ok(writes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivered_means_acknowledged_or_claimed() {
        let claim = |to| Claim {
            id: "c".into(),
            to,
            until_ms: 0,
        };
        let s = GroupState {
            offset: Some(GroupOffset {
                last_acked: 4,
                updated_at_ms: 0,
            }),
            cursor: None,
            claims: vec![(5, claim(8)), (10, claim(12))],
            acked: vec![(8, 9)],
            deliveries: Vec::new(),
        };
        assert!(s.delivered(0, 9), "acked prefix, claim, acked range");
        assert!(s.delivered(10, 12));
        assert!(!s.delivered(8, 10), "offset 9 was never sent");
        assert!(!s.delivered(11, 13), "offset 12 was never sent");
        assert!(!GroupState::default().delivered(0, 1));
    }

    #[test]
    fn keys_keep_topics_groups_and_offsets_apart() {
        assert_eq!(
            message_key("a.b", 1, 2),
            [
                b'm', 0, 3, b'a', b'.', b'b', 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2
            ]
        );
        assert_eq!(offset_of(&message_key("t", 0, 77)), Some(77));
        // A topic whose id extends another's never shares its prefix.
        assert!(!message_key("ab", 0, 0).starts_with(&partition_prefix("a", 0)));
        assert_eq!(partition_of("42", 1), 0);
        assert_eq!(partition_of("42", 4), crc32fast::hash(b"42") % 4);
    }

    #[test]
    fn payloads_carry_what_their_mode_says() {
        use crate::catalog::{TableDef, TableKind};
        use crate::row::RowVersion;
        use crate::value::Value;
        let def = TableDef::example("app", "t", TableKind::Shared);
        let version = |seq, v: &str| RowVersion {
            seq,
            deleted: false,
            cells: vec![(1, Value::BigInt(7)), (2, Value::Text(v.into()))],
        };
        let event = |old: Option<RowVersion>, new: Option<RowVersion>| RowEvent {
            table: def.id,
            scope: String::new(),
            pk: Value::BigInt(7),
            old,
            new,
        };
        let json = |e: &RowEvent, mode| {
            let op = op_of(e).expect("a change");
            serde_json::from_slice::<serde_json::Value>(&payload_of(&def, e, op, mode))
                .expect("JSON")
        };
        let insert = event(None, Some(version(5, "a")));
        let update = event(Some(version(5, "a")), Some(version(6, "b")));
        let same = event(Some(version(5, "a")), Some(version(6, "a")));
        let tombstone = RowVersion {
            seq: 8,
            deleted: true,
            cells: Vec::new(),
        };
        let delete = event(Some(version(6, "b")), Some(tombstone));
        let full = serde_json::json!({"id": "7", "v": "a", "_seq": "5", "_table": "app.t"});
        assert_eq!(json(&insert, Payload::Full), full);
        assert_eq!(json(&insert, Payload::Diff), full);
        assert_eq!(json(&insert, Payload::Key), serde_json::json!({"id": "7"}));
        assert_eq!(
            json(&update, Payload::Diff),
            serde_json::json!({"id": "7", "v": "b", "_seq": "6", "_table": "app.t"})
        );
        assert_eq!(
            json(&same, Payload::Diff),
            serde_json::json!({"id": "7", "_seq": "6", "_table": "app.t"})
        );
        assert_eq!(op_of(&delete), Some(RouteOp::Delete));
        assert_eq!(
            json(&delete, Payload::Full),
            serde_json::json!({"id": "7", "v": "b", "_seq": "6", "_table": "app.t"}),
            "a delete carries the row as it was"
        );
        assert_eq!(
            json(&delete, Payload::Diff),
            serde_json::json!({"id": "7", "_seq": "6", "_table": "app.t"})
        );
    }
}

#[cfg(test)]
mod filter_tests {
    use super::*;
    use crate::row::RowVersion;
    use crate::value::Value;

    #[test]
    fn filters_follow_sqls_three_valued_logic() {
        let row = RowVersion {
            seq: 1,
            deleted: false,
            cells: vec![
                (1, Value::BigInt(-5)),
                (2, Value::Text("b".into())),
                (3, Value::Null),
            ],
        };
        let cmp = |column, op, value| Filter::Cmp { column, op, value };
        let n_lt_0 = cmp(1, CmpOp::Lt, Value::BigInt(0));
        let v_eq_a = cmp(2, CmpOp::Eq, Value::Text("a".into()));
        let null_gt = cmp(3, CmpOp::Gt, Value::Int(1));
        assert_eq!(n_lt_0.eval(&row), Some(true), "negatives order below zero");
        assert_eq!(
            cmp(2, CmpOp::GtEq, Value::Text("a".into())).eval(&row),
            Some(true)
        );
        assert_eq!(v_eq_a.eval(&row), Some(false));
        assert_eq!(null_gt.eval(&row), None, "a NULL compared is unknown");
        let and = |a: &Filter, b: &Filter| Filter::And(Box::new(a.clone()), Box::new(b.clone()));
        let or = |a: &Filter, b: &Filter| Filter::Or(Box::new(a.clone()), Box::new(b.clone()));
        assert_eq!(and(&n_lt_0, &null_gt).eval(&row), None);
        assert_eq!(and(&v_eq_a, &null_gt).eval(&row), Some(false));
        assert_eq!(or(&n_lt_0, &null_gt).eval(&row), Some(true));
        assert_eq!(or(&v_eq_a, &null_gt).eval(&row), None);
        assert_eq!(Filter::Not(Box::new(null_gt.clone())).eval(&row), None);
        assert_eq!(
            Filter::IsNull {
                column: 3,
                negated: false
            }
            .eval(&row),
            Some(true),
            "a column the row lacks is NULL too"
        );
        assert_eq!(
            Filter::IsNull {
                column: 9,
                negated: true
            }
            .eval(&row),
            Some(false)
        );
        let list = |values: Vec<Value>, negated| Filter::InList {
            column: 2,
            values,
            negated,
        };
        let (a, b) = (Value::Text("a".into()), Value::Text("b".into()));
        assert_eq!(
            list(vec![a.clone(), b.clone()], false).eval(&row),
            Some(true)
        );
        assert_eq!(list(vec![a.clone()], true).eval(&row), Some(true));
        assert_eq!(list(vec![a.clone(), Value::Null], false).eval(&row), None);
        assert_eq!(list(vec![b, Value::Null], true).eval(&row), Some(false));
    }
}

#[cfg(test)]
mod group_tests {
    use super::*;

    fn claim(s: GroupState, id: &str, start: u64, head: u64, limit: u64, now: u64) -> GroupState {
        let range = s
            .claimable(start, head, limit, now)
            .expect("something to claim");
        with_claim(s, id, range, now, 100)
    }

    fn ranges(s: &GroupState) -> Vec<(u64, u64, &str)> {
        s.claims
            .iter()
            .map(|(a, c)| (*a, c.to, c.id.as_str()))
            .collect()
    }

    #[test]
    fn consumers_of_a_group_claim_ranges_apart_and_take_over_expired_ones() {
        let mut s = GroupState {
            cursor: Some(0),
            ..GroupState::default()
        };
        s = claim(s, "a", 0, 10, 3, 0);
        s = claim(s, "b", 0, 10, 3, 0);
        assert_eq!(ranges(&s), [(0, 3, "a"), (3, 6, "b")]);
        // b acknowledges its own range: the offset cannot move past a's.
        s.acked.push((3, 6));
        assert_eq!(s.claimable(0, 10, 10, 50), Some((6, 10)));
        // a's claim expires: its range goes to the next consumer, delivered a second time.
        assert_eq!(s.claimable(0, 10, 10, 100), Some((0, 3)));
        s = claim(s, "c", 0, 10, 2, 100);
        assert_eq!(ranges(&s), [(0, 2, "c"), (2, 3, "a"), (3, 6, "b")]);
        assert_eq!(
            (s.deliveries_of(0), s.deliveries_of(1), s.deliveries_of(2)),
            (2, 2, 1)
        );
        // Nothing past the head.
        let full = GroupState {
            cursor: Some(10),
            ..GroupState::default()
        };
        assert_eq!(full.claimable(0, 10, 5, 0), None);
    }

    #[test]
    fn the_offset_moves_over_acknowledged_ranges_that_follow_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = crate::HotStore::open(dir.path()).expect("store");
        let old = GroupState {
            cursor: Some(0),
            claims: vec![(
                0,
                Claim {
                    id: "a".into(),
                    to: 4,
                    until_ms: 9,
                },
            )],
            ..GroupState::default()
        };
        let mut new = old.clone();
        new.acked = vec![(4, 6), (0, 2), (2, 4), (8, 9)];
        let mut batch = HotBatch::default();
        put_group_state(&mut batch, "t", "g", 0, &GroupState::default(), new, 5);
        store
            .apply(crate::LogIndex(1), crate::Term(1), batch)
            .expect("apply");
        let s = group_state(&store, "t", "g", 0).expect("state");
        assert_eq!(s.offset.as_ref().map(|o| o.last_acked), Some(5));
        assert_eq!(s.cursor, None);
        assert_eq!(s.acked, [(8, 9)]);
        assert!(s.claims.is_empty(), "{:?}", s.claims);
        assert_eq!(s.next(), Some(6));
    }
}
