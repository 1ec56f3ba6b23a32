//! [`EventFold`]: how a committed entry of [`Command`]s changes the catalog and the rows.
//!
//! Pure: the result depends only on the state and the entry (the `_seq` clock runs on the
//! leader's stamps, stored with the state). Every command is checked against the state its
//! predecessors in the entry left; a command whose precondition fails is rolled back to
//! nothing and reported as [`Outcome::Rejected`], identically on every replica and replay.
//! The store failing underneath, or state that does not decode, is never an outcome: the
//! fold returns the error and the entry is not applied (see [`Fold`]).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use folddb_log::LogIndex;

use crate::catalog::{self, NamespaceDef, Pending, StateRead, TableDef, TableId, TableKind};
use crate::codec;
use crate::cold::{ColdTier, JobKind, JobRecord, Manifest};
use crate::event::{
    Command, CompactedScope, Op, OpResult, Outcome, RejectKind, ScopeSegment, decode_entry,
    encode_entry, encode_outcomes,
};
use crate::fold::Fold;
use crate::hot::{Family, HotBatch, HotStore};
use crate::row::{RowEvent, RowVersion, row_key, table_prefix};
use crate::seq::{Seq, SeqClock};
use crate::value::Value;

#[path = "event_fold_jobs.rs"]
mod jobs;
use jobs::{Trim, commit_compact, commit_flush, evict_stream, legacy_job, trim_hot};
#[path = "event_fold_topics.rs"]
mod topic_ops;
use topic_ops::topic_op;
#[path = "event_fold_vector.rs"]
mod vector_ops;
use vector_ops::{drop_stale_indexes, vector_index_op};

/// Meta key: the last `_seq` assigned (i64 BE), written with the entry that assigned it.
pub(crate) const LAST_SEQ_KEY: &[u8] = b"last_seq";
/// Meta key: the next table id to assign (u64 BE).
const NEXT_TABLE_ID_KEY: &[u8] = b"next_table_id";

/// An `expected_seq` (of [`crate::RowChange`] or a delete) that means "the version this same command
/// wrote earlier": a transaction that inserts or changes a row and then changes it again
/// cannot know the `_seq` its first write will get, only that it made it.
pub const SEQ_OWN_WRITE: i64 = -1;

/// The materializer's fold of event entries, with the cold tier it flushes to (none: flush
/// and compaction are refused, and rows are only ever hot).
#[derive(Clone, Default)]
pub struct EventFold {
    cold: Option<Arc<dyn ColdTier>>,
}

impl std::fmt::Debug for EventFold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventFold")
            .field("cold", &self.cold.is_some())
            .finish()
    }
}

/// Why one op could not be applied.
#[derive(Debug)]
enum OpError {
    /// A precondition failed: the command is rejected, with this kind and message,
    /// identically on every replica and replay.
    Reject(RejectKind, String),
    /// The node's own state could not be read, or holds bytes that do not decode: not an
    /// outcome of the command. Folding stops; the entry stays unapplied.
    Env(crate::Error),
}

/// A precondition's own message (a storage template that does not parse, say): the command
/// asks for something this state does not allow.
impl From<String> for OpError {
    fn from(message: String) -> OpError {
        OpError::Reject(RejectKind::Invalid, message)
    }
}

impl From<crate::Error> for OpError {
    fn from(e: crate::Error) -> OpError {
        OpError::Env(e)
    }
}

fn not_found(message: impl Into<String>) -> OpError {
    OpError::Reject(RejectKind::NotFound, message.into())
}

fn exists(message: impl Into<String>) -> OpError {
    OpError::Reject(RejectKind::AlreadyExists, message.into())
}

fn constraint(message: impl Into<String>) -> OpError {
    OpError::Reject(RejectKind::Constraint, message.into())
}

fn conflict(message: impl Into<String>) -> OpError {
    OpError::Reject(RejectKind::Conflict, message.into())
}

fn invalid(message: impl Into<String>) -> OpError {
    OpError::Reject(RejectKind::Invalid, message.into())
}

struct Ctx<'a> {
    store: &'a HotStore,
    cold: Option<&'a dyn ColdTier>,
    /// The entry being folded; 0 for a transaction's preview, which never touches the cold
    /// tier.
    index: LogIndex,
    batch: &'a mut HotBatch,
    clock: SeqClock,
    stamp_ms: u64,
    /// Row keys the current command has written: what [`SEQ_OWN_WRITE`] refers to.
    written: &'a mut HashSet<Vec<u8>>,
}

impl Ctx<'_> {
    fn state(&self) -> Pending<'_> {
        Pending {
            store: self.store,
            batch: self.batch,
        }
    }

    fn next_seq(&mut self) -> i64 {
        self.clock.next(self.stamp_ms).0
    }
}

fn read_u64(bytes: Option<Vec<u8>>) -> Option<u64> {
    bytes.and_then(|b| {
        <[u8; 8]>::try_from(b.as_slice())
            .ok()
            .map(u64::from_be_bytes)
    })
}

impl EventFold {
    /// The fold with cold tier `cold`.
    pub fn new(cold: Arc<dyn ColdTier>) -> EventFold {
        EventFold { cold: Some(cold) }
    }

    /// The cold tier this fold flushes to.
    pub fn cold(&self) -> Option<&Arc<dyn ColdTier>> {
        self.cold.as_ref()
    }

    /// The last `_seq` assigned by the entries `store` has applied: every row version it
    /// holds has this `_seq` or a lower one.
    pub fn last_seq(store: &HotStore) -> crate::Result<Option<i64>> {
        Ok(read_u64(store.get(Family::Meta, LAST_SEQ_KEY)?).map(|s| s as i64))
    }
}

impl Fold for EventFold {
    fn fold(
        &self,
        store: &HotStore,
        index: LogIndex,
        command: &[u8],
        changes: &mut HotBatch,
    ) -> crate::Result<Vec<u8>> {
        let commands = decode_entry(command).map_err(|e| crate::Error::UndecodableEntry {
            index: index.0,
            reason: e.to_string(),
        })?;
        let last = read_u64(changes.get(store, Family::Meta, LAST_SEQ_KEY)?).map(|s| Seq(s as i64));
        let mut written = HashSet::new();
        let recorded = changes.events().len();
        let mut ctx = Ctx {
            store,
            cold: self.cold.as_deref(),
            index,
            batch: changes,
            clock: SeqClock::resume(last),
            stamp_ms: 0,
            written: &mut written,
        };
        let mut outcomes = Vec::with_capacity(commands.len());
        for cmd in &commands {
            ctx.written.clear();
            outcomes.push(apply_command(&mut ctx, cmd)?);
        }
        if ctx.clock.last() != last
            && let Some(seq) = ctx.clock.last()
        {
            ctx.batch
                .put(Family::Meta, LAST_SEQ_KEY, (seq.0 as u64).to_be_bytes());
        }
        // STREAM rows expire by their TTL and live apart (`data/streams/`): the journal
        // keeps the changes of USER and SHARED tables.
        let mut kinds: HashMap<TableId, bool> = HashMap::new();
        let events = ctx.batch.take_events();
        for e in &events[recorded..] {
            if let std::collections::hash_map::Entry::Vacant(slot) = kinds.entry(e.table) {
                let history = catalog::table_history(&ctx.state(), e.table)?;
                slot.insert(history.last().is_some_and(|d| d.kind != TableKind::Stream));
            }
        }
        let journaled = events[recorded..]
            .iter()
            .filter(|e| kinds.get(&e.table).copied().unwrap_or(false));
        crate::journal::record(ctx.batch, index, last.map(|s| s.0), journaled);
        // Topic routes: their messages in the same batch as the changes.
        let stamp_ms = commands.iter().map(|c| c.stamp_ms).max().unwrap_or(0);
        let messages = crate::topics::route(&ctx.state(), &events[recorded..], index.0, stamp_ms)?;
        for (key, value) in messages {
            ctx.batch.put(Family::Topics, key, value);
        }
        // Catalog and user changes, for privileged tails.
        let seq_now = ctx.clock.last().or(last).map_or(0, |s| s.0);
        let mut catalog = Vec::new();
        for (cmd, outcome) in commands.iter().zip(&outcomes) {
            let Outcome::Applied(results) = outcome else {
                continue;
            };
            for (op, r) in cmd.ops.iter().zip(results) {
                if r.affected == 0 {
                    continue;
                }
                if let Some((kind, target, detail)) = crate::journal::catalog_change(op) {
                    catalog.push(crate::journal::CatalogChange {
                        index: index.0,
                        ordinal: crate::journal::CATALOG_ORDINAL + catalog.len() as u32,
                        seq: seq_now,
                        actor: cmd.actor.clone(),
                        stamp_ms: cmd.stamp_ms,
                        kind: kind.to_owned(),
                        target,
                        detail,
                    });
                }
            }
        }
        crate::journal::record_catalog(ctx.batch, &catalog);
        for event in events {
            ctx.batch.record(event);
        }
        Ok(encode_outcomes(&outcomes))
    }
}

/// A [`crate::Propose`] without a log: each command is folded straight into `store` at the
/// next index, one at a time, as the apply loop would. For tools and tests that exercise
/// the engine alone (fuzzing, unit tests); a server proposes through `cluster`.
#[derive(Debug)]
pub struct FoldInPlace {
    store: Arc<HotStore>,
    fold: EventFold,
    next: std::sync::Mutex<u64>,
}

impl FoldInPlace {
    /// Folds into `store` (whose entries so far came through this type, or none) with `fold`.
    pub fn new(store: Arc<HotStore>, fold: EventFold) -> crate::Result<FoldInPlace> {
        let next = store.applied()?.map_or(1, |(i, _)| i.0 + 1);
        Ok(FoldInPlace {
            store,
            fold,
            next: std::sync::Mutex::new(next),
        })
    }
}

impl crate::Propose for FoldInPlace {
    fn propose(&self, command: Command) -> crate::ProposeFuture<'_> {
        Box::pin(async move {
            let unknown = |e: crate::Error| crate::ProposeError::Unknown(e.to_string());
            let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
            let index = LogIndex(*next);
            let mut batch = HotBatch::default();
            let out = self
                .fold
                .fold(&self.store, index, &encode_entry(&[command]), &mut batch)
                .map_err(unknown)?;
            self.store
                .apply(index, folddb_log::Term(1), batch)
                .map_err(unknown)?;
            *next += 1;
            let mut outcomes = crate::event::decode_outcomes(&out).map_err(unknown)?;
            outcomes
                .pop()
                .ok_or_else(|| crate::ProposeError::Unknown("the entry reported no outcome".into()))
        })
    }
}

/// A transaction being built (API.md 1.7.5): its statements are folded, one after the other,
/// into a batch that is never applied, so that the transaction's later statements read its
/// earlier ones' writes and a failing precondition surfaces at the statement that caused it.
/// On COMMIT the statements' ops go to the log as one command, where the fold checks them
/// again against the state of that moment; rows the transaction wrote twice are matched by
/// [`SEQ_OWN_WRITE`], since the `_seq`s the preview assigned are not the ones the log will.
#[derive(Debug, Clone)]
pub struct Preview {
    cold: Option<Arc<dyn ColdTier>>,
    batch: HotBatch,
    clock: SeqClock,
    written: HashSet<Vec<u8>>,
}

impl Preview {
    pub fn new(store: &HotStore, fold: &EventFold) -> crate::Result<Preview> {
        let last = read_u64(store.get(Family::Meta, LAST_SEQ_KEY)?).map(|s| Seq(s as i64));
        Ok(Preview {
            cold: fold.cold.clone(),
            batch: HotBatch::default(),
            clock: SeqClock::resume(last),
            written: HashSet::new(),
        })
    }

    /// Folds one statement's ops on top of the transaction so far; nothing of them when
    /// they are rejected. An error is the store failing, not an outcome.
    pub fn apply(&mut self, store: &HotStore, cmd: &Command) -> crate::Result<Outcome> {
        let mut ctx = Ctx {
            store,
            cold: self.cold.as_deref(),
            index: LogIndex(0),
            batch: &mut self.batch,
            clock: self.clock,
            stamp_ms: 0,
            written: &mut self.written,
        };
        let outcome = apply_command(&mut ctx, cmd);
        self.clock = ctx.clock;
        outcome
    }

    /// Whether the transaction has written the row at `key`: a change to it must then
    /// expect [`SEQ_OWN_WRITE`].
    pub fn wrote(&self, key: &[u8]) -> bool {
        self.written.contains(key)
    }

    /// The transaction's writes so far, to read through.
    pub fn batch(&self) -> &HotBatch {
        &self.batch
    }
}

/// Applies `cmd` on top of what the batch holds, or nothing of it. `ctx.written` is left as
/// the caller set it up, plus the keys this command wrote. An error is the store failing
/// underneath: not an outcome, and the batch is then to be thrown away.
fn apply_command(ctx: &mut Ctx<'_>, cmd: &Command) -> crate::Result<Outcome> {
    let mark = ctx.batch.mark();
    let clock = ctx.clock;
    let written_before = ctx.written.len();
    ctx.stamp_ms = cmd.stamp_ms;
    let mut results = Vec::with_capacity(cmd.ops.len());
    for (i, op) in cmd.ops.iter().enumerate() {
        match apply_op(ctx, op) {
            Ok(r) => results.push(r),
            Err(OpError::Env(e)) => return Err(e),
            Err(OpError::Reject(kind, error)) => {
                ctx.batch.rollback_to(mark);
                ctx.clock = clock;
                if ctx.written.len() != written_before {
                    // Forget the keys only this command wrote (a preview carries keys over
                    // from the commands before it, whose writes the batch still holds).
                    let batch = &*ctx.batch;
                    ctx.written.retain(|k| {
                        batch.holds(Family::Rows, k) || batch.holds(Family::Streams, k)
                    });
                }
                return Ok(Outcome::Rejected {
                    op: i as u32,
                    error,
                    kind,
                });
            }
        }
    }
    Ok(Outcome::Applied(results))
}

fn done(affected: u64) -> OpResult {
    OpResult {
        affected,
        ..OpResult::default()
    }
}

fn apply_op(ctx: &mut Ctx<'_>, op: &Op) -> Result<OpResult, OpError> {
    match op {
        Op::CreateNamespace {
            name,
            description,
            if_not_exists,
        } => {
            if catalog::namespace(&ctx.state(), name)?.is_some() {
                return if *if_not_exists {
                    Ok(done(0))
                } else {
                    Err(exists(format!("Namespace '{name}' already exists")))
                };
            }
            let def = NamespaceDef {
                name: name.clone(),
                description: description.clone(),
                created_at_ms: ctx.stamp_ms,
            };
            ctx.batch.put(
                Family::Catalog,
                catalog::namespace_key(name),
                codec::encode(&def),
            );
            Ok(done(1))
        }
        Op::DropNamespace { name, if_exists } => {
            if catalog::namespace(&ctx.state(), name)?.is_none() {
                return if *if_exists {
                    Ok(done(0))
                } else {
                    Err(not_found(format!("Namespace '{name}' does not exist")))
                };
            }
            for table in catalog::tables(&ctx.state(), Some(name))? {
                drop_table(ctx, &table)?;
            }
            ctx.batch
                .delete(Family::Catalog, catalog::namespace_key(name));
            Ok(done(1))
        }
        Op::AlterNamespace { name, description } => {
            let Some(mut def) = catalog::namespace(&ctx.state(), name)? else {
                return Err(not_found(format!("Namespace '{name}' does not exist")));
            };
            def.description = description.clone();
            ctx.batch.put(
                Family::Catalog,
                catalog::namespace_key(name),
                codec::encode(&def),
            );
            Ok(done(1))
        }
        Op::CreateTable {
            table,
            if_not_exists,
        } => {
            let state = ctx.state();
            if catalog::namespace(&state, &table.namespace)?.is_none() {
                return Err(not_found(format!(
                    "Namespace '{ns}' does not exist. Create it first with CREATE NAMESPACE {ns}",
                    ns = table.namespace
                )));
            }
            if catalog::storage(&state, &table.options.storage_id)?.is_none() {
                return Err(not_found(format!(
                    "Storage '{}' not found (SHOW STORAGES lists them)",
                    table.options.storage_id
                )));
            }
            if catalog::table(&state, &table.namespace, &table.name)?.is_some() {
                return if *if_not_exists {
                    Ok(done(0))
                } else {
                    Err(exists(format!(
                        "Table {} already exists",
                        table.qualified_name()
                    )))
                };
            }
            let next =
                read_u64(ctx.batch.get(ctx.store, Family::Meta, NEXT_TABLE_ID_KEY)?).unwrap_or(1);
            ctx.batch
                .put(Family::Meta, NEXT_TABLE_ID_KEY, (next + 1).to_be_bytes());
            let mut def = table.clone();
            def.id = TableId(next);
            def.schema_version = 1;
            def.created_at_ms = ctx.stamp_ms;
            def.updated_at_ms = ctx.stamp_ms;
            put_table(ctx, &def);
            if def.kind != TableKind::Stream {
                ctx.batch
                    .put(Family::Meta, crate::row::counted_key(def.id), [1]);
            }
            Ok(OpResult {
                affected: 1,
                seqs: Vec::new(),
                schema_version: Some(1),
            })
        }
        Op::AlterTable {
            table,
            expected_version,
        } => {
            let current = live_table(ctx, &table.namespace, &table.name, table.id)?;
            if current.schema_version != *expected_version {
                return Err(conflict(format!(
                    "Table {} was altered concurrently (now version {}); retry",
                    current.qualified_name(),
                    current.schema_version
                )));
            }
            let mut def = table.clone();
            def.schema_version = expected_version + 1;
            def.created_at_ms = current.created_at_ms;
            def.updated_at_ms = ctx.stamp_ms;
            put_table(ctx, &def);
            drop_stale_indexes(ctx, def.id, Some(&def))?;
            if def.kind != TableKind::Stream {
                ctx.batch
                    .put(Family::Meta, crate::row::counted_key(def.id), [1]);
            }
            Ok(OpResult {
                affected: 1,
                seqs: Vec::new(),
                schema_version: Some(def.schema_version),
            })
        }
        Op::DropTable {
            namespace,
            name,
            if_exists,
        } => {
            let Some(def) = catalog::table(&ctx.state(), namespace, name)? else {
                return if *if_exists {
                    Ok(done(0))
                } else {
                    Err(not_found(format!(
                        "Table {namespace}.{name} does not exist"
                    )))
                };
            };
            drop_table(ctx, &def)?;
            Ok(done(1))
        }
        Op::Insert {
            table,
            schema_version,
            scope,
            rows,
        } => {
            let def = table_by_id(ctx, *table, *schema_version)?;
            let mut result = OpResult::default();
            for cells in rows {
                let seq = ctx.next_seq();
                let pk = match def.primary_key {
                    Some(id) => cells
                        .iter()
                        .find(|(c, _)| *c == id)
                        .map(|(_, v)| v.clone())
                        .ok_or_else(|| constraint("a row has no primary key value"))?,
                    // A table without a primary key (STREAM) is keyed by `_seq`.
                    None => Value::BigInt(seq),
                };
                let key = row_key(def.id, scope, &pk);
                let existing_tombstone = match find_row(ctx, &def, scope, &key)? {
                    Found::Absent => None,
                    Found::Hot(existing) if existing.deleted => Some(existing),
                    Found::Hot(_) | Found::Cold(_) => {
                        let column = def.pk_column().map_or("_seq", |c| c.name.as_str());
                        return Err(constraint(format!(
                            "Primary key violation: value '{}' already exists in column '{column}'",
                            pk.plain()
                        )));
                    }
                };
                let row = RowRef {
                    table: def.id,
                    family: def.family(),
                    scope,
                    pk: &pk,
                    key,
                };
                put_version(
                    ctx,
                    row,
                    existing_tombstone,
                    seq,
                    false,
                    cells.clone(),
                    &mut result,
                )?;
            }
            Ok(result)
        }
        Op::Update {
            table,
            schema_version,
            scope,
            rows,
        } => {
            let def = table_by_id(ctx, *table, *schema_version)?;
            let rows = rows.iter().map(|r| {
                let old = Image::Carried(&r.old);
                (&r.pk, r.expected_seq, old, &r.cells)
            });
            update_rows(ctx, &def, scope, rows)
        }
        Op::UpdateV1 {
            table,
            schema_version,
            scope,
            rows,
        } => {
            let def = table_by_id(ctx, *table, *schema_version)?;
            let rows = rows
                .iter()
                .map(|r| (&r.pk, r.expected_seq, Image::ReadCold, &r.cells));
            update_rows(ctx, &def, scope, rows)
        }
        Op::Delete { table, scope, rows } => {
            let def = table_by_id(ctx, *table, 0)?;
            let rows = rows
                .iter()
                .map(|r| (&r.pk, r.expected_seq, Image::Carried(&r.old)));
            delete_rows(ctx, &def, scope, rows)
        }
        Op::DeleteV1 { table, scope, rows } => {
            let def = table_by_id(ctx, *table, 0)?;
            let rows = rows.iter().map(|(pk, seq)| (pk, *seq, Image::ReadCold));
            delete_rows(ctx, &def, scope, rows)
        }
        Op::PutUser { user, create } => {
            if *create {
                name_free(ctx, &user.id)?;
            }
            ctx.batch.put(
                Family::Catalog,
                catalog::user_key(&user.id),
                codec::encode(user),
            );
            Ok(done(1))
        }
        Op::Audit {
            actor,
            action,
            target,
            details,
            ip,
            subject,
        } => {
            let id = ctx.next_seq();
            let entry = catalog::AuditEntry {
                id,
                at_ms: ctx.stamp_ms,
                actor: actor.clone(),
                action: action.clone(),
                target: target.clone(),
                details: details.clone(),
                ip: ip.clone(),
                subject: subject.clone(),
            };
            ctx.batch.put(
                Family::Catalog,
                catalog::audit_key(id),
                codec::encode(&entry),
            );
            Ok(done(1))
        }
        Op::Flush { table, job } => legacy_job(ctx, *table, job, JobKind::Flush),
        Op::Compact { table, job } => legacy_job(ctx, *table, job, JobKind::Compact),
        Op::CommitFlushInline {
            table,
            job,
            through_seq,
            segments,
            ..
        } => commit_flush(ctx, *table, job, *through_seq, segments, Trim::Inline),
        Op::CommitFlush {
            table,
            job,
            through_seq,
            segments,
            ..
        } => commit_flush(ctx, *table, job, *through_seq, segments, Trim::Later),
        Op::TrimHot { table, from, to } => trim_hot(ctx, *table, from, to.as_deref()),
        Op::CommitCompact {
            table, job, scopes, ..
        } => commit_compact(ctx, *table, job, scopes),
        Op::EvictStream { table, job } => evict_stream(ctx, *table, job),
        Op::CreateTopic { .. }
        | Op::DropTopic { .. }
        | Op::ClearTopic { .. }
        | Op::AddTopicRoute { .. }
        | Op::AckTopic { .. }
        | Op::ClaimTopic { .. }
        | Op::AckTopicRange { .. }
        | Op::SettleTopic { .. }
        | Op::TrimTopic { .. }
        | Op::SetTopicRetention { .. } => topic_op(ctx, op),
        Op::CreateVectorIndex { .. } | Op::DropVectorIndex { .. } => vector_index_op(ctx, op),
        Op::CreateStorage {
            storage,
            if_not_exists,
        } => {
            if catalog::storage(&ctx.state(), &storage.id)?.is_some() {
                return if *if_not_exists {
                    Ok(done(0))
                } else {
                    Err(exists(format!("Storage '{}' already exists", storage.id)))
                };
            }
            catalog::check_template(&storage.shared_tables_template, false)?;
            catalog::check_template(&storage.user_tables_template, true)?;
            let mut def = storage.clone();
            def.created_at_ms = ctx.stamp_ms;
            def.updated_at_ms = ctx.stamp_ms;
            put_storage(ctx, &def);
            Ok(done(1))
        }
        Op::AlterStorage { storage } => {
            let current = existing_storage(ctx, &storage.id)?;
            if current.shared_tables_template != storage.shared_tables_template
                || current.user_tables_template != storage.user_tables_template
            {
                catalog::check_template(&storage.shared_tables_template, false)?;
                catalog::check_template(&storage.user_tables_template, true)?;
                let users = tables_using(ctx, &storage.id)?;
                if !users.is_empty() {
                    return Err(invalid(format!(
                        "Storage '{}' is used by {}: its templates can change only while no table uses it",
                        storage.id,
                        users.join(", ")
                    )));
                }
            }
            let mut def = storage.clone();
            def.created_at_ms = current.created_at_ms;
            def.updated_at_ms = ctx.stamp_ms;
            put_storage(ctx, &def);
            Ok(done(1))
        }
        Op::DropStorage { id, if_exists } => {
            if catalog::storage(&ctx.state(), id)?.is_none() {
                return if *if_exists {
                    Ok(done(0))
                } else {
                    Err(not_found(format!("Storage '{id}' not found")))
                };
            }
            if id == catalog::LOCAL_STORAGE {
                return Err(invalid("The built-in storage 'local' cannot be dropped"));
            }
            let users = tables_using(ctx, id)?;
            if !users.is_empty() {
                return Err(invalid(format!(
                    "Storage '{id}' is used by {}: drop those tables first",
                    users.join(", ")
                )));
            }
            ctx.batch.delete(Family::Catalog, catalog::storage_key(id));
            Ok(done(1))
        }
        Op::Setup { root, dba } => {
            let configured =
                catalog::user(&ctx.state(), &root.id)?.is_some_and(|u| !u.password_hash.is_empty());
            if configured {
                return Err(invalid(crate::event::SETUP_ALREADY_DONE));
            }
            name_free(ctx, &dba.id)?;
            for user in [root, dba] {
                ctx.batch.put(
                    Family::Catalog,
                    catalog::user_key(&user.id),
                    codec::encode(user),
                );
            }
            Ok(done(2))
        }
    }
}

/// A new account may take `id` only if no account ever had it: a dropped account's rows
/// (USER tables are keyed by the user id) and tokens must never pass to a stranger.
fn name_free(ctx: &Ctx<'_>, id: &str) -> Result<(), OpError> {
    match catalog::user(&ctx.state(), id)? {
        None => Ok(()),
        Some(u) if u.deleted_at_ms.is_some() => Err(exists(format!(
            "User '{id}' already exists (dropped): a dropped account's name is not reused, so \
             that its rows never pass to a new account; choose another name"
        ))),
        Some(_) => Err(exists(format!("User '{id}' already exists"))),
    }
}

fn put_storage(ctx: &mut Ctx<'_>, def: &catalog::StorageDef) {
    ctx.batch.put(
        Family::Catalog,
        catalog::storage_key(&def.id),
        codec::encode(def),
    );
}

/// Storage `id`, which must exist (`local` is built in and cannot change).
fn existing_storage(ctx: &Ctx<'_>, id: &str) -> Result<catalog::StorageDef, OpError> {
    if id == catalog::LOCAL_STORAGE {
        return Err(invalid("The built-in storage 'local' cannot be altered"));
    }
    catalog::storage(&ctx.state(), id)?
        .ok_or_else(|| not_found(format!("Storage '{id}' not found")))
}

/// The tables (`ns.t`) whose STORAGE_ID is `id`.
fn tables_using(ctx: &Ctx<'_>, id: &str) -> Result<Vec<String>, OpError> {
    Ok(catalog::tables(&ctx.state(), None)?
        .into_iter()
        .filter(|t| t.options.storage_id == id)
        .map(|t| t.qualified_name())
        .collect())
}

/// The storage a table's cold tier lives in.
fn storage_of(ctx: &Ctx<'_>, def: &TableDef) -> Result<catalog::StorageDef, OpError> {
    catalog::storage(&ctx.state(), &def.options.storage_id)?.ok_or_else(|| {
        not_found(format!(
            "Storage '{}' of table {} does not exist",
            def.options.storage_id,
            def.qualified_name()
        ))
    })
}

/// Jobs are committed by their own entries, never inside a transaction.
fn not_in_transaction(ctx: &Ctx<'_>, what: &str) -> Result<(), OpError> {
    if ctx.index.0 == 0 {
        return Err(invalid(format!("{what} cannot run inside a transaction")));
    }
    Ok(())
}

/// Which row a version is written to.
struct RowRef<'a> {
    table: TableId,
    /// Where the table's rows live.
    family: Family,
    scope: &'a str,
    pk: &'a Value,
    key: Vec<u8>,
}

/// Writes a row's new version, records the change (with the version it replaces) and
/// counts it.
fn put_version(
    ctx: &mut Ctx<'_>,
    row: RowRef<'_>,
    old: Option<RowVersion>,
    seq: i64,
    deleted: bool,
    cells: Vec<(u32, Value)>,
    result: &mut OpResult,
) -> Result<(), OpError> {
    let was_visible = old.as_ref().is_some_and(|o| !o.deleted);
    if row.family == Family::Rows && was_visible == deleted {
        count_visible(ctx, row.table, row.scope, !deleted)?;
    }
    let version = RowVersion {
        seq,
        deleted,
        cells,
    };
    ctx.written.insert(row.key.clone());
    ctx.batch.put(row.family, row.key, codec::encode(&version));
    ctx.batch.record(RowEvent {
        table: row.table,
        scope: row.scope.to_owned(),
        pk: row.pk.clone(),
        old,
        new: Some(version),
    });
    result.affected += 1;
    result.seqs.push(seq);
    Ok(())
}

/// One more (`up`) or one fewer visible row in `table`'s `scope`, in a table that keeps
/// counts.
fn count_visible(ctx: &mut Ctx<'_>, table: TableId, scope: &str, up: bool) -> Result<(), OpError> {
    let counted = ctx
        .batch
        .get(ctx.store, Family::Meta, &crate::row::counted_key(table))?;
    if counted.is_none() {
        return Ok(());
    }
    let key = crate::row::count_key(table, scope);
    let now = match ctx.batch.get(ctx.store, Family::Meta, &key)? {
        Some(b) => crate::row::decode_count(&b)?,
        None => 0,
    };
    let next = if up { now + 1 } else { now.saturating_sub(1) };
    if next == 0 {
        ctx.batch.delete(Family::Meta, key);
    } else {
        ctx.batch.put(Family::Meta, key, next.to_be_bytes());
    }
    Ok(())
}

fn put_table(ctx: &mut Ctx<'_>, def: &TableDef) {
    let bytes = codec::encode(def);
    ctx.batch.put(
        Family::Catalog,
        catalog::table_key(&def.namespace, &def.name),
        bytes.clone(),
    );
    ctx.batch.put(
        Family::Catalog,
        catalog::history_key(def.id, def.schema_version),
        bytes,
    );
}

fn drop_table(ctx: &mut Ctx<'_>, def: &TableDef) -> Result<(), OpError> {
    drop_stale_indexes(ctx, def.id, None)?;
    // The files go after the outcome, outside apply (the engine removes the table's
    // directory); the manifests go with the table. On a directory of each node, a record
    // of the directory tells every member to remove its own copy's files.
    let manifests = ctx
        .state()
        .scan_prefix(Family::Catalog, &catalog::manifest_prefix(def.id))?;
    if !manifests.is_empty()
        && let Some(storage) = catalog::storage(&ctx.state(), &def.options.storage_id)?
        && crate::cold::job::node_local(&storage)
    {
        let dir = crate::cold::store::table_dir(&storage, def);
        ctx.batch.put(
            Family::Catalog,
            catalog::dropped_dir_key(&storage.id, &dir),
            Vec::new(),
        );
    }
    for (key, _) in manifests {
        ctx.batch.delete(Family::Catalog, key);
    }
    ctx.batch
        .delete(Family::Catalog, catalog::flushed_key(def.id));
    ctx.batch
        .delete(Family::Meta, crate::row::counted_key(def.id));
    if !ctx
        .batch
        .delete_prefix(Family::Meta, &crate::row::count_prefix(def.id))
    {
        for (key, _) in ctx
            .state()
            .scan_prefix(Family::Meta, &crate::row::count_prefix(def.id))?
        {
            ctx.batch.delete(Family::Meta, key);
        }
    }
    let state = ctx.state();
    let rows = state.scan_prefix(def.family(), &table_prefix(def.id))?;
    let indexed = state.scan_prefix(Family::ColdKeys, &table_prefix(def.id))?;
    let history = catalog::table_history(&state, def.id)?;
    for (key, _) in rows {
        ctx.batch.delete(def.family(), key);
    }
    for (key, _) in indexed {
        ctx.batch.delete(Family::ColdKeys, key);
    }
    for version in history {
        ctx.batch.delete(
            Family::Catalog,
            catalog::history_key(def.id, version.schema_version),
        );
    }
    ctx.batch.delete(
        Family::Catalog,
        catalog::table_key(&def.namespace, &def.name),
    );
    topic_ops::drop_routes_of(ctx, def.id)
}

/// The current definition of `namespace.name`, which must still be table `id`.
fn live_table(
    ctx: &Ctx<'_>,
    namespace: &str,
    name: &str,
    id: TableId,
) -> Result<TableDef, OpError> {
    match catalog::table(&ctx.state(), namespace, name)? {
        Some(def) if def.id == id => Ok(def),
        _ => Err(not_found(format!(
            "Table {namespace}.{name} does not exist"
        ))),
    }
}

/// The current definition of table `id`, which must be at `schema_version` (0: any).
fn table_by_id(ctx: &Ctx<'_>, id: TableId, schema_version: u32) -> Result<TableDef, OpError> {
    let history = catalog::table_history(&ctx.state(), id)?;
    let Some(def) = history.into_iter().last() else {
        return Err(conflict("the table was dropped; retry"));
    };
    // Dropped tables lose their history; a live table's newest version is its current one.
    if schema_version != 0 && def.schema_version != schema_version {
        return Err(conflict(format!(
            "Table {} was altered concurrently (now version {}); retry",
            def.qualified_name(),
            def.schema_version
        )));
    }
    Ok(def)
}

/// What the state holds for a row key.
enum Found {
    /// A version in the hot tier (or one this entry wrote).
    Hot(RowVersion),
    /// No hot version; the newest flushed one is live and has this `_seq` (the key index).
    Cold(i64),
    Absent,
}

/// The newest version of the row at `key`: the hot one, else what the cold tier's key index
/// says (a hot version is always newer than any cold version of its key: flushing moves a
/// key's newest version out of the hot tier, and every later write is newer still). Reads
/// the node's own state only.
fn find_row(ctx: &Ctx<'_>, def: &TableDef, scope: &str, key: &[u8]) -> Result<Found, OpError> {
    if let Some(bytes) = ctx.batch.get(ctx.store, def.family(), key)? {
        return codec::decode::<RowVersion>(&bytes, "a row version")
            .map(Found::Hot)
            .map_err(OpError::Env);
    }
    // Only a scope whose manifest lists segments has cold rows (the catalog is cached: a
    // table never flushed costs no read of the index).
    if def.kind == TableKind::Stream
        || ctx
            .state()
            .get(Family::Catalog, &catalog::manifest_key(def.id, scope))?
            .is_none()
    {
        return Ok(Found::Absent);
    }
    match ctx.batch.get(ctx.store, Family::ColdKeys, key)? {
        Some(bytes) => crate::row::decode_indexed_seq(&bytes)
            .map(Found::Cold)
            .map_err(OpError::Env),
        None => Ok(Found::Absent),
    }
}

/// Where the old image of a row whose version is cold comes from.
#[derive(Clone, Copy)]
enum Image<'o> {
    /// The op carries it ([`Op::Update`], [`Op::Delete`]).
    Carried(&'o [(u32, Value)]),
    /// The op predates old images ([`Op::UpdateV1`], [`Op::DeleteV1`]): the segments are
    /// read, and a failure to read them is the environment's, not an outcome.
    ReadCold,
}

/// The row at `key` as it stands, provided it is live and its version is `expected_seq`
/// (or, with [`SEQ_OWN_WRITE`], one this command wrote).
fn expect_current(
    ctx: &Ctx<'_>,
    def: &TableDef,
    scope: &str,
    key: &[u8],
    pk: &Value,
    expected_seq: i64,
    image: Image<'_>,
) -> Result<RowVersion, OpError> {
    let changed = || {
        conflict(format!(
            "Row with primary key '{}' was changed concurrently; retry",
            pk.plain()
        ))
    };
    match find_row(ctx, def, scope, key)? {
        Found::Hot(row)
            if !row.deleted
                && (row.seq == expected_seq
                    || (expected_seq == SEQ_OWN_WRITE && ctx.written.contains(key))) =>
        {
            Ok(row)
        }
        Found::Cold(seq) if seq == expected_seq => match image {
            Image::Carried(cells) => Ok(RowVersion {
                seq,
                deleted: false,
                cells: cells.to_vec(),
            }),
            Image::ReadCold => {
                let Some(cold) = ctx.cold else {
                    return Err(OpError::Env(crate::Error::ColdRead {
                        reason: "the node has no cold tier to read an old image from".into(),
                    }));
                };
                let row = cold
                    .get(&ctx.state(), &storage_of(ctx, def)?, def, scope, pk)
                    .map_err(|reason| OpError::Env(crate::Error::ColdRead { reason }))?;
                row.filter(|r| r.seq == seq && !r.deleted)
                    .ok_or_else(changed)
            }
        },
        _ => Err(changed()),
    }
}

/// [`Op::Update`] and [`Op::UpdateV1`]: each row `(pk, expected _seq, old image, new cells)`.
fn update_rows<'o>(
    ctx: &mut Ctx<'_>,
    def: &TableDef,
    scope: &str,
    rows: impl Iterator<Item = (&'o Value, i64, Image<'o>, &'o Vec<(u32, Value)>)>,
) -> Result<OpResult, OpError> {
    let mut result = OpResult::default();
    for (pk, expected_seq, image, cells) in rows {
        let key = row_key(def.id, scope, pk);
        let current = expect_current(ctx, def, scope, &key, pk, expected_seq, image)?;
        let seq = ctx.next_seq();
        let row = RowRef {
            table: def.id,
            family: def.family(),
            scope,
            pk,
            key,
        };
        put_version(
            ctx,
            row,
            Some(current),
            seq,
            false,
            cells.clone(),
            &mut result,
        )?;
    }
    Ok(result)
}

/// [`Op::Delete`] and [`Op::DeleteV1`]: each row `(pk, expected _seq, old image)`.
fn delete_rows<'o>(
    ctx: &mut Ctx<'_>,
    def: &TableDef,
    scope: &str,
    rows: impl Iterator<Item = (&'o Value, i64, Image<'o>)>,
) -> Result<OpResult, OpError> {
    let mut result = OpResult::default();
    for (pk, expected_seq, image) in rows {
        let key = row_key(def.id, scope, pk);
        let current = expect_current(ctx, def, scope, &key, pk, expected_seq, image)?;
        if def.has_soft_delete() {
            let seq = ctx.next_seq();
            let cells = current.cells.clone();
            let row = RowRef {
                table: def.id,
                family: def.family(),
                scope,
                pk,
                key,
            };
            put_version(ctx, row, Some(current), seq, true, cells, &mut result)?;
        } else {
            ctx.written.insert(key.clone());
            ctx.batch.delete(def.family(), key);
            ctx.batch.record(RowEvent {
                table: def.id,
                scope: scope.to_owned(),
                pk: pk.clone(),
                old: Some(current),
                new: None,
            });
            result.affected += 1;
        }
    }
    Ok(result)
}

#[cfg(test)]
#[path = "event_fold_test.rs"]
mod tests;
