//! The fold of the vector index ops (API.md 3.3): which EMBEDDING columns have an index.
//! The indexes themselves are built by each node from the rows and kept up to date from the
//! change journal (`crate::vector_index`); the catalog only says which exist.

use super::*;
use crate::catalog::VectorIndexDef;
use crate::value::DataType;

/// `CreateVectorIndex` and `DropVectorIndex`.
pub(super) fn vector_index_op(ctx: &mut Ctx<'_>, op: &Op) -> Result<OpResult, OpError> {
    let (namespace, table, column) = match op {
        Op::CreateVectorIndex {
            namespace,
            table,
            column,
            ..
        }
        | Op::DropVectorIndex {
            namespace,
            table,
            column,
        } => (namespace, table, column),
        _ => return Err(invalid("not a vector index op")),
    };
    let def = catalog::table(&ctx.state(), namespace, table)?
        .ok_or_else(|| not_found(format!("Table {namespace}.{table} does not exist")))?;
    let col = def.column(column).ok_or_else(|| {
        not_found(format!(
            "Column '{column}' does not exist in table {}",
            def.qualified_name()
        ))
    })?;
    let key = catalog::vector_index_key(def.id, col.id);
    let existing = ctx.state().get(Family::Catalog, &key)?;
    match op {
        Op::CreateVectorIndex { metric, .. } => {
            if def.kind == TableKind::Stream {
                return Err(invalid(format!(
                    "Vector indexes are for USER and SHARED tables; {} is a STREAM table",
                    def.qualified_name()
                )));
            }
            if !matches!(col.data_type, DataType::Embedding(_)) {
                return Err(invalid(format!(
                    "Column '{column}' of {} is not an EMBEDDING column: only EMBEDDING(n) \
                     columns take a vector index",
                    def.qualified_name()
                )));
            }
            if existing.is_some() {
                return Err(exists(format!(
                    "Column '{column}' of {} already has a vector index",
                    def.qualified_name()
                )));
            }
            let index = VectorIndexDef {
                table: def.id,
                column: col.id,
                metric: *metric,
                created_at_ms: ctx.stamp_ms,
                created_index: ctx.index.0,
            };
            ctx.batch.put(Family::Catalog, key, codec::encode(&index));
        }
        _ => {
            if existing.is_none() {
                return Err(not_found(format!(
                    "Column '{column}' of {} has no vector index",
                    def.qualified_name()
                )));
            }
            ctx.batch.delete(Family::Catalog, key);
        }
    }
    Ok(done(1))
}

/// Removes the vector indexes of table `id` whose column `keep` (the table's new
/// definition; `None`: the table is dropped) no longer has as an EMBEDDING.
pub(super) fn drop_stale_indexes(
    ctx: &mut Ctx<'_>,
    id: TableId,
    keep: Option<&TableDef>,
) -> Result<(), OpError> {
    for index in catalog::vector_indexes(&ctx.state(), id)? {
        let kept = keep
            .and_then(|def| def.column_by_id(index.column))
            .is_some_and(|c| matches!(c.data_type, DataType::Embedding(_)));
        if !kept {
            ctx.batch
                .delete(Family::Catalog, catalog::vector_index_key(id, index.column));
        }
    }
    Ok(())
}
