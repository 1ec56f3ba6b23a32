//! The event schema: what a log entry says, and what applying it reported.
//!
//! A [`Command`] is one SQL statement (or one `BEGIN … COMMIT` transaction) planned into
//! [`Op`]s, with every non-deterministic value already resolved: the leader's time stamp,
//! defaults, generated ids, the owner of USER-table rows. A raft entry carries one or more
//! commands ([`encode_entry`]): under load the proposer packs concurrent commands into one
//! entry so they share one append and one apply, but each command is still applied
//! atomically and on its own — fully, or not at all with an [`Outcome::Rejected`].
//! Normative: `materializer/FORMAT.md`, "entries".

use serde::{Deserialize, Serialize};

use crate::catalog::{StorageDef, TableDef, TableId, UserDef};
use crate::codec;
use crate::cold::SegmentMeta;
use crate::error::Result;
use crate::value::Value;

/// One statement or transaction, planned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Command {
    /// The leader's wall clock when it planned the command (ms since the Unix epoch); `_seq`
    /// derives from it (DESIGN.md, "Identity and order").
    pub stamp_ms: u64,
    /// The authenticated user the command runs as.
    pub actor: String,
    pub ops: Vec<Op>,
}

/// A change to a row that exists: the new cells, applied only if the row's `_seq` is still
/// `expected_seq` (optimistic concurrency; DESIGN.md "Write path", step 4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RowChange {
    pub pk: Value,
    pub expected_seq: i64,
    /// The row as the proposer read it (version `expected_seq`), by column id: the old image
    /// applying reports when that version is in the cold tier, which apply never reads.
    pub old: Vec<(u32, Value)>,
    /// The whole new row (every column of the expected schema version), by column id.
    pub cells: Vec<(u32, Value)>,
}

/// A delete of a row that exists, applied only if its `_seq` is still `expected_seq`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RowDelete {
    pub pk: Value,
    pub expected_seq: i64,
    /// The row as the proposer read it, as in [`RowChange::old`].
    pub old: Vec<(u32, Value)>,
}

/// [`RowChange`] as codec 1 entries before key-index builds carry it: no old image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RowChangeV1 {
    pub pk: Value,
    pub expected_seq: i64,
    pub cells: Vec<(u32, Value)>,
}

/// One change to the catalog or the rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Op {
    CreateNamespace {
        name: String,
        description: Option<String>,
        if_not_exists: bool,
    },
    /// Drops the namespace and every table in it.
    DropNamespace { name: String, if_exists: bool },
    AlterNamespace {
        name: String,
        description: Option<String>,
    },
    /// `table.id` and `table.schema_version` are assigned at apply.
    CreateTable {
        table: TableDef,
        if_not_exists: bool,
    },
    /// Replaces the definition, which must still be at `expected_version`; the new one gets
    /// the next version.
    AlterTable {
        table: TableDef,
        expected_version: u32,
    },
    DropTable {
        namespace: String,
        name: String,
        if_exists: bool,
    },
    /// New rows (every column of schema version `schema_version`, by id); each key must be
    /// absent or a tombstone.
    Insert {
        table: TableId,
        schema_version: u32,
        scope: String,
        rows: Vec<Vec<(u32, Value)>>,
    },
    /// [`Op::Update`] as earlier builds proposed it, without old images: folded the same,
    /// except that a row whose version is in the cold tier is read from its segments.
    UpdateV1 {
        table: TableId,
        schema_version: u32,
        scope: String,
        rows: Vec<RowChangeV1>,
    },
    /// [`Op::Delete`] as earlier builds proposed it: `(primary key, expected _seq)`, without
    /// old images (see [`Op::UpdateV1`]).
    DeleteV1 {
        table: TableId,
        scope: String,
        rows: Vec<(Value, i64)>,
    },
    /// Creates (`create`: must not exist) or replaces a user.
    PutUser { user: UserDef, create: bool },
    /// Appends to `system.audit_log`; its id is a `_seq`, its time the command's stamp.
    Audit {
        actor: String,
        action: String,
        target: String,
        details: Option<String>,
        ip: Option<String>,
        subject: Option<String>,
    },
    /// Codec 1's flush, which wrote the segments inside apply. Builds since manifest format
    /// 2 propose [`Op::CommitFlush`] instead and fold this one as a no-op that records the
    /// job (its rows stay hot; answers are the same).
    Flush { table: TableId, job: String },
    /// Codec 1's compaction, folded as a no-op that records the job since manifest format
    /// 2 ([`Op::CommitCompact`] replaced it).
    Compact { table: TableId, job: String },
    /// STREAM tables: physically removes the rows past `TTL_SECONDS` at the command's stamp.
    EvictStream { table: TableId, job: String },
    /// A new storage (`created_at_ms`/`updated_at_ms` are set at apply).
    CreateStorage {
        storage: StorageDef,
        if_not_exists: bool,
    },
    /// Replaces storage `storage.id`, which must exist; its templates may change only while
    /// no table uses it.
    AlterStorage { storage: StorageDef },
    /// Removes a storage no table uses.
    DropStorage { id: String, if_exists: bool },
    /// First-run setup (API.md 1.3): root's password and the first DBA, only while root
    /// has no password, so that of two concurrent setups exactly one takes effect; the
    /// other is rejected with [`SETUP_ALREADY_DONE`].
    Setup { root: UserDef, dba: UserDef },
    /// A flush job's commit as builds before hot-tier trims proposed it: [`Op::CommitFlush`]
    /// that also drops, in the same entry, the table's hot versions with a `_seq` up to
    /// `through_seq` (the ones the segments hold, or versions they hold newer ones of), each
    /// becoming its key's `cold_keys` entry. One entry for the whole table: it stalled every
    /// write behind it for as long as a million-row flush took to apply.
    CommitFlushInline {
        table: TableId,
        job: String,
        as_of: u64,
        through_seq: i64,
        segments: Vec<ScopeSegment>,
    },
    /// A compaction job's commit: the job read the state at applied index `as_of` and, per
    /// scope, merged the segments `replaced` (the oldest ones of its manifest, in order) into
    /// `segment`. Applying it switches the manifests; rejected when one no longer starts with
    /// them.
    CommitCompact {
        table: TableId,
        job: String,
        as_of: u64,
        /// Tombstones with a `_seq` below it were dropped.
        horizon: i64,
        scopes: Vec<CompactedScope>,
    },
    /// Changes rows that exist (each expected at its `_seq`) to new cells of schema version
    /// `schema_version`.
    Update {
        table: TableId,
        schema_version: u32,
        scope: String,
        rows: Vec<RowChange>,
    },
    /// Soft delete (a tombstone version) on USER and SHARED tables, physical on STREAM.
    Delete {
        table: TableId,
        scope: String,
        rows: Vec<RowDelete>,
    },
    /// A flush job's commit (`materializer/FORMAT.md`, "Cold tier"): the job read the state
    /// at applied index `as_of`, whose last `_seq` was `through_seq`, and wrote each
    /// scope's hot versions of the table as `segments`. Applying it appends them to the
    /// scopes' manifests and sets the table's flush mark to `through_seq`; rejected when a
    /// flush of a later state committed first. The hot versions the segments now hold stay
    /// until [`Op::TrimHot`] entries move them out, a bounded number each.
    CommitFlush {
        table: TableId,
        job: String,
        as_of: u64,
        through_seq: i64,
        segments: Vec<ScopeSegment>,
    },
    /// Moves out of the hot tier the versions of table `table` whose keys fall in
    /// `[prefix + from, prefix + to)` (`prefix` the table's key prefix; `to` `None`: its last
    /// key) and whose `_seq` is at or below the table's flush mark: the segments hold them.
    /// Each becomes its key's `cold_keys` entry (a tombstone removes the entry). A table
    /// with no mark (never flushed, or dropped) has nothing to trim.
    TrimHot {
        table: TableId,
        from: Vec<u8>,
        to: Option<Vec<u8>>,
    },
    /// CREATE TOPIC (API.md 3.12): `partitions` of at least 1. With `max_deliveries`, a
    /// dead-letter topic (`dead_letter`, else `<id>.dlq`) is created too when missing.
    CreateTopic {
        id: String,
        partitions: u32,
        if_not_exists: bool,
        max_deliveries: Option<u32>,
        dead_letter: Option<String>,
        /// How long messages are kept (default 7 days).
        retention_seconds: Option<u64>,
    },
    /// DROP TOPIC: its routes, messages and consumer groups' offsets.
    DropTopic { id: String, if_exists: bool },
    /// CLEAR TOPIC: its messages; offsets go on from where they were.
    ClearTopic { id: String },
    /// ALTER TOPIC … ADD SOURCE: one route per (table, operation).
    AddTopicRoute {
        topic: String,
        route: crate::topics::Route,
    },
    /// ACK … UPTO OFFSET: group `group`'s acknowledged offset of `partition` becomes `upto`,
    /// unless it is past it already (acks never regress).
    AckTopic {
        topic: String,
        group: String,
        partition: u32,
        upto: u64,
    },
    /// A consumer of group `group` claims up to `limit` messages of `partition`: the first
    /// that are neither acknowledged nor claimed by another consumer whose claim is live,
    /// from the group's next offset (`start` when the group has none yet), for
    /// `visibility_ms` from the command's time. `claim` names the claim, so that the
    /// consumer finds its range.
    ClaimTopic {
        topic: String,
        group: String,
        partition: u32,
        claim: String,
        start: u64,
        limit: u64,
        visibility_ms: u64,
    },
    /// ACK of offsets `from..=to` alone (a consumer's own claim): the group's offset moves
    /// over them once every earlier one is acknowledged.
    AckTopicRange {
        topic: String,
        group: String,
        partition: u32,
        from: u64,
        to: u64,
    },
    /// RELEASE (`reject` false) of offsets `from..=to`: they can be claimed again at once;
    /// REJECT: they are acknowledged, and go to the topic's dead-letter topic if it has one.
    SettleTopic {
        topic: String,
        group: String,
        partition: u32,
        from: u64,
        to: u64,
        reject: bool,
    },
    /// Retention: removes the messages of `partition` below offset `before` (at most the
    /// partition's next offset); offsets go on.
    TrimTopic {
        topic: String,
        partition: u32,
        before: u64,
    },
    /// ALTER TOPIC … SET (…): the retention limits given; the others stay.
    SetTopicRetention {
        topic: String,
        seconds: Option<u64>,
        max_bytes: Option<u64>,
    },
    /// `ALTER TABLE … CREATE [VECTOR] INDEX column USING metric`: the column must be an
    /// EMBEDDING of a USER or SHARED table with no index yet.
    CreateVectorIndex {
        namespace: String,
        table: String,
        column: String,
        metric: crate::catalog::VectorMetric,
    },
    /// `ALTER TABLE … DROP [VECTOR] INDEX column`.
    DropVectorIndex {
        namespace: String,
        table: String,
        column: String,
    },
}

impl Command {
    /// The rows the command writes (an op that writes none counts as one): roughly what
    /// applying it costs, which the proposer weighs against an entry's fixed cost.
    pub fn rows(&self) -> usize {
        self.ops.iter().map(Op::rows).sum()
    }
}

impl Op {
    /// The rows this op writes, at least 1.
    pub fn rows(&self) -> usize {
        let n = match self {
            Op::Insert { rows, .. } => rows.len(),
            Op::UpdateV1 { rows, .. } => rows.len(),
            Op::DeleteV1 { rows, .. } => rows.len(),
            Op::Update { rows, .. } => rows.len(),
            Op::Delete { rows, .. } => rows.len(),
            _ => 1,
        };
        n.max(1)
    }
}

/// A segment a flush job wrote for one scope of a table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScopeSegment {
    /// The owner of a USER table's rows; empty for SHARED tables.
    pub scope: String,
    pub segment: SegmentMeta,
}

/// What a compaction job wrote for one scope of a table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompactedScope {
    pub scope: String,
    /// The files of the segments merged, oldest first.
    pub replaced: Vec<String>,
    /// The merged segment; `None` when nothing is left.
    pub segment: Option<SegmentMeta>,
}

/// The rejection of an [`Op::Setup`] when the server is already configured.
pub const SETUP_ALREADY_DONE: &str = "Server is already configured";

/// What one op did.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct OpResult {
    /// Rows inserted, updated or deleted; 1 or 0 for catalog ops (0: `IF [NOT] EXISTS` hit).
    pub affected: u64,
    /// The `_seq` of every row version written, in row order.
    pub seqs: Vec<i64>,
    /// The schema version a table op left.
    pub schema_version: Option<u32>,
}

/// What applying a command reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Applied(Vec<OpResult>),
    /// A precondition failed at op `op` (0-based): nothing of the command was applied.
    Rejected {
        op: u32,
        error: String,
        kind: RejectKind,
    },
}

/// Which kind of precondition a rejected command failed: what decides how its client is
/// answered (which callers may read the message), never the message's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RejectKind {
    /// Something the command names is not there (a namespace, table, storage).
    NotFound,
    /// A name the command would create is taken.
    AlreadyExists,
    /// A row breaks its table's primary key.
    Constraint,
    /// The state changed since the command was planned (a row's `_seq`, a table's schema
    /// version, a job overtaken): planning it again may succeed.
    Conflict,
    /// The command is not allowed on this state (a storage in use, a built-in object, a
    /// template that does not parse).
    Invalid,
}

/// A raft entry's payload: the commands it carries, in order.
pub fn encode_entry(commands: &[Command]) -> Vec<u8> {
    codec::encode(&commands)
}

pub fn decode_entry(bytes: &[u8]) -> Result<Vec<Command>> {
    codec::decode(bytes, "a log entry's commands")
}

/// What applying an entry reported: one outcome per command.
pub fn encode_outcomes(outcomes: &[Outcome]) -> Vec<u8> {
    codec::encode(&outcomes)
}

pub fn decode_outcomes(bytes: &[u8]) -> Result<Vec<Outcome>> {
    codec::decode(bytes, "an entry's outcomes")
}

/// Why a proposal has no outcome.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    /// Not appended: nothing changed (no leader, shutting down, too large).
    #[error("the write was not accepted: {0}")]
    NotAccepted(String),
    /// Proposed, but its fate is not known (the node failed while waiting): it may or may not
    /// have been committed.
    #[error("the write's outcome is unknown: {0}")]
    Unknown(String),
}

/// The boxed future a [`Propose`] returns.
pub type ProposeFuture<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Outcome, ProposeError>> + Send + 'a>>;

/// How `query` writes: through the log, and nowhere else. `cluster`'s node implements it.
///
/// # Correctness
///
/// The returned future resolves with an outcome only once the command is committed (durable
/// on a quorum) and applied on this node, so that the caller reads its own write.
pub trait Propose: Send + Sync + 'static {
    fn propose(&self, command: Command) -> ProposeFuture<'_>;
}

#[cfg(test)]
#[path = "event_golden_test.rs"]
pub(crate) mod golden;
