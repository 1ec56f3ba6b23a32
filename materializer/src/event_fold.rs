//! [`EventFold`]: how a committed entry of [`Command`]s changes the catalog and the rows.
//!
//! Pure: the result depends only on the state and the entry (the `_seq` clock runs on the
//! leader's stamps, stored with the state). Every command is checked against the state its
//! predecessors in the entry left; a command whose precondition fails is rolled back to
//! nothing and reported as [`Outcome::Rejected`], identically on every replica and replay.

use folddb_log::LogIndex;

use crate::catalog::{self, NamespaceDef, Pending, StateRead, TableDef, TableId};
use crate::codec;
use crate::event::{Command, Op, OpResult, Outcome, RowChange, decode_entry, encode_outcomes};
use crate::fold::Fold;
use crate::hot::{Family, HotBatch, HotStore};
use crate::row::{RowVersion, row_key, table_prefix};
use crate::seq::{Seq, SeqClock};
use crate::value::Value;

/// Meta key: the last `_seq` assigned (i64 BE), written with the entry that assigned it.
const LAST_SEQ_KEY: &[u8] = b"last_seq";
/// Meta key: the next table id to assign (u64 BE).
const NEXT_TABLE_ID_KEY: &[u8] = b"next_table_id";

/// The materializer's fold of event entries.
#[derive(Debug, Clone, Copy, Default)]
pub struct EventFold;

/// Why one op could not be applied: a precondition (reported to the client) or the store
/// failing underneath (reported too; the entry is then a no-op on this replica).
type OpError = String;

struct Ctx<'a> {
    store: &'a HotStore,
    batch: &'a mut HotBatch,
    clock: SeqClock,
    stamp_ms: u64,
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

fn store_err(e: crate::Error) -> OpError {
    tracing::error!(error = %e, "the hot tier failed while folding an entry");
    format!("storage error: {e}")
}

fn read_u64(bytes: Option<Vec<u8>>) -> Option<u64> {
    bytes.and_then(|b| {
        <[u8; 8]>::try_from(b.as_slice())
            .ok()
            .map(u64::from_be_bytes)
    })
}

impl Fold for EventFold {
    fn fold(
        &self,
        store: &HotStore,
        index: LogIndex,
        command: &[u8],
        changes: &mut HotBatch,
    ) -> Vec<u8> {
        let commands = match decode_entry(command) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(index = index.0, error = %e, "skipping an entry that does not decode");
                return encode_outcomes(&[]);
            }
        };
        let last = match changes.get(store, Family::Meta, LAST_SEQ_KEY) {
            Ok(v) => read_u64(v).map(|s| Seq(s as i64)),
            Err(e) => {
                store_err(e);
                None
            }
        };
        let mut ctx = Ctx {
            store,
            batch: changes,
            clock: SeqClock::resume(last),
            stamp_ms: 0,
        };
        let mut outcomes = Vec::with_capacity(commands.len());
        for cmd in &commands {
            outcomes.push(apply_command(&mut ctx, cmd));
        }
        if ctx.clock.last() != last
            && let Some(seq) = ctx.clock.last()
        {
            ctx.batch
                .put(Family::Meta, LAST_SEQ_KEY, (seq.0 as u64).to_be_bytes());
        }
        encode_outcomes(&outcomes)
    }
}

fn apply_command(ctx: &mut Ctx<'_>, cmd: &Command) -> Outcome {
    let mark = ctx.batch.mark();
    let clock = ctx.clock;
    ctx.stamp_ms = cmd.stamp_ms;
    let mut results = Vec::with_capacity(cmd.ops.len());
    for (i, op) in cmd.ops.iter().enumerate() {
        match apply_op(ctx, op) {
            Ok(r) => results.push(r),
            Err(error) => {
                ctx.batch.rollback_to(mark);
                ctx.clock = clock;
                return Outcome::Rejected {
                    op: i as u32,
                    error,
                };
            }
        }
    }
    Outcome::Applied(results)
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
            if catalog::namespace(&ctx.state(), name)
                .map_err(store_err)?
                .is_some()
            {
                return if *if_not_exists {
                    Ok(done(0))
                } else {
                    Err(format!("Namespace '{name}' already exists"))
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
            if catalog::namespace(&ctx.state(), name)
                .map_err(store_err)?
                .is_none()
            {
                return if *if_exists {
                    Ok(done(0))
                } else {
                    Err(format!("Namespace '{name}' does not exist"))
                };
            }
            for table in catalog::tables(&ctx.state(), Some(name)).map_err(store_err)? {
                drop_table(ctx, &table)?;
            }
            ctx.batch
                .delete(Family::Catalog, catalog::namespace_key(name));
            Ok(done(1))
        }
        Op::AlterNamespace { name, description } => {
            let Some(mut def) = catalog::namespace(&ctx.state(), name).map_err(store_err)? else {
                return Err(format!("Namespace '{name}' does not exist"));
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
            if catalog::namespace(&state, &table.namespace)
                .map_err(store_err)?
                .is_none()
            {
                return Err(format!(
                    "Namespace '{ns}' does not exist. Create it first with CREATE NAMESPACE {ns}",
                    ns = table.namespace
                ));
            }
            if catalog::table(&state, &table.namespace, &table.name)
                .map_err(store_err)?
                .is_some()
            {
                return if *if_not_exists {
                    Ok(done(0))
                } else {
                    Err(format!("Table {} already exists", table.qualified_name()))
                };
            }
            let next = read_u64(
                ctx.batch
                    .get(ctx.store, Family::Meta, NEXT_TABLE_ID_KEY)
                    .map_err(store_err)?,
            )
            .unwrap_or(1);
            ctx.batch
                .put(Family::Meta, NEXT_TABLE_ID_KEY, (next + 1).to_be_bytes());
            let mut def = table.clone();
            def.id = TableId(next);
            def.schema_version = 1;
            def.created_at_ms = ctx.stamp_ms;
            def.updated_at_ms = ctx.stamp_ms;
            put_table(ctx, &def);
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
                return Err(format!(
                    "Table {} was altered concurrently (now version {}); retry",
                    current.qualified_name(),
                    current.schema_version
                ));
            }
            let mut def = table.clone();
            def.schema_version = expected_version + 1;
            def.created_at_ms = current.created_at_ms;
            def.updated_at_ms = ctx.stamp_ms;
            put_table(ctx, &def);
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
            let Some(def) = catalog::table(&ctx.state(), namespace, name).map_err(store_err)?
            else {
                return if *if_exists {
                    Ok(done(0))
                } else {
                    Err(format!("Table {namespace}.{name} does not exist"))
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
                        .ok_or("a row has no primary key value")?,
                    // A table without a primary key (STREAM) is keyed by `_seq`.
                    None => Value::BigInt(seq),
                };
                let key = row_key(def.id, scope, &pk);
                if let Some(existing) = read_row(ctx, &key)?
                    && !existing.deleted
                {
                    let column = def.pk_column().map_or("_seq", |c| c.name.as_str());
                    return Err(format!(
                        "Primary key violation: value '{}' already exists in column '{column}'",
                        pk.plain()
                    ));
                }
                let version = RowVersion {
                    seq,
                    deleted: false,
                    cells: cells.clone(),
                };
                ctx.batch.put(Family::Rows, key, codec::encode(&version));
                result.affected += 1;
                result.seqs.push(seq);
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
            let mut result = OpResult::default();
            for RowChange {
                pk,
                expected_seq,
                cells,
            } in rows
            {
                let key = row_key(def.id, scope, pk);
                expect_current(ctx, &key, pk, *expected_seq)?;
                let seq = ctx.next_seq();
                let version = RowVersion {
                    seq,
                    deleted: false,
                    cells: cells.clone(),
                };
                ctx.batch.put(Family::Rows, key, codec::encode(&version));
                result.affected += 1;
                result.seqs.push(seq);
            }
            Ok(result)
        }
        Op::Delete { table, scope, rows } => {
            let def = table_by_id(ctx, *table, 0)?;
            let mut result = OpResult::default();
            for (pk, expected_seq) in rows {
                let key = row_key(def.id, scope, pk);
                let current = expect_current(ctx, &key, pk, *expected_seq)?;
                if def.has_soft_delete() {
                    let seq = ctx.next_seq();
                    let version = RowVersion {
                        seq,
                        deleted: true,
                        cells: current.cells,
                    };
                    ctx.batch.put(Family::Rows, key, codec::encode(&version));
                    result.seqs.push(seq);
                } else {
                    ctx.batch.delete(Family::Rows, key);
                }
                result.affected += 1;
            }
            Ok(result)
        }
        Op::PutUser { user, create } => {
            if *create
                && catalog::user(&ctx.state(), &user.id)
                    .map_err(store_err)?
                    .is_some_and(|u| u.deleted_at_ms.is_none())
            {
                return Err(format!("User '{}' already exists", user.id));
            }
            ctx.batch.put(
                Family::Catalog,
                catalog::user_key(&user.id),
                codec::encode(user),
            );
            Ok(done(1))
        }
    }
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
    let state = ctx.state();
    let rows = state
        .scan_prefix(Family::Rows, &table_prefix(def.id))
        .map_err(store_err)?;
    let history = catalog::table_history(&state, def.id).map_err(store_err)?;
    for (key, _) in rows {
        ctx.batch.delete(Family::Rows, key);
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
    Ok(())
}

/// The current definition of `namespace.name`, which must still be table `id`.
fn live_table(
    ctx: &Ctx<'_>,
    namespace: &str,
    name: &str,
    id: TableId,
) -> Result<TableDef, OpError> {
    match catalog::table(&ctx.state(), namespace, name).map_err(store_err)? {
        Some(def) if def.id == id => Ok(def),
        _ => Err(format!("Table {namespace}.{name} does not exist")),
    }
}

/// The current definition of table `id`, which must be at `schema_version` (0: any).
fn table_by_id(ctx: &Ctx<'_>, id: TableId, schema_version: u32) -> Result<TableDef, OpError> {
    let history = catalog::table_history(&ctx.state(), id).map_err(store_err)?;
    let Some(def) = history.into_iter().last() else {
        return Err("the table was dropped; retry".to_owned());
    };
    // Dropped tables lose their history; a live table's newest version is its current one.
    if schema_version != 0 && def.schema_version != schema_version {
        return Err(format!(
            "Table {} was altered concurrently (now version {}); retry",
            def.qualified_name(),
            def.schema_version
        ));
    }
    Ok(def)
}

fn read_row(ctx: &Ctx<'_>, key: &[u8]) -> Result<Option<RowVersion>, OpError> {
    ctx.batch
        .get(ctx.store, Family::Rows, key)
        .map_err(store_err)?
        .map(|b| codec::decode::<RowVersion>(&b, "a row version").map_err(store_err))
        .transpose()
}

fn expect_current(
    ctx: &Ctx<'_>,
    key: &[u8],
    pk: &Value,
    expected_seq: i64,
) -> Result<RowVersion, OpError> {
    match read_row(ctx, key)? {
        Some(row) if !row.deleted && row.seq == expected_seq => Ok(row),
        _ => Err(format!(
            "Row with primary key '{}' was changed concurrently; retry",
            pk.plain()
        )),
    }
}
