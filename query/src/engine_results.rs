//! How statements answer (API.md 1.7.3): messages, rows as JSON with their schema, and
//! the rows of RETURNING.

use super::*;

pub(super) fn message(caller: &Caller, row_count: u64, text: String) -> QueryResult {
    QueryResult {
        schema: Vec::new(),
        rows: None,
        row_count,
        message: Some(text),
        as_user: caller.user.clone(),
    }
}

pub(super) fn schema_info(schema: &Schema) -> Vec<ColumnInfo> {
    schema
        .fields()
        .iter()
        .enumerate()
        .map(|(index, f)| ColumnInfo {
            name: f.name().clone(),
            data_type: convert::api_type(f),
            index,
            flags: convert::flags(f),
        })
        .collect()
}

pub(super) fn rows_result(
    caller: &Caller,
    schema: &Arc<Schema>,
    batches: &[RecordBatch],
) -> StmtResult<QueryResult> {
    let mut rows = Vec::new();
    for b in batches {
        for r in 0..b.num_rows() {
            let row = b
                .columns()
                .iter()
                .map(|c| cell_json(c.as_ref(), r))
                .collect::<Result<Vec<_>, _>>()?;
            rows.push(row);
        }
    }
    if schema.fields().is_empty() && rows.is_empty() {
        return Ok(message(caller, 0, "Query executed successfully".into()));
    }
    Ok(QueryResult {
        schema: schema_info(schema),
        row_count: rows.len() as u64,
        rows: Some(rows),
        message: None,
        as_user: caller.user.clone(),
    })
}

pub(super) fn table_result(caller: &Caller, rows: &Rows) -> StmtResult<QueryResult> {
    let batch = rows.batch();
    rows_result(caller, &batch.schema(), &[batch])
}

/// `RETURNING` for the written rows, when the statement has one.
pub(super) fn returning_of(
    def: &TableDef,
    items: &Option<Vec<sql::SelectItem>>,
    rows: &[Vec<(u32, Value)>],
) -> StmtResult<Option<Returning>> {
    items
        .as_ref()
        .map(|items| returning_rows(def, items, rows.iter().map(|r| r.as_slice())))
        .transpose()
}

/// The `_seq` cell of row `r` of `column`.
pub(super) fn seq_at(column: &dyn arrow::array::Array, r: usize) -> StmtResult<i64> {
    match arrow_to_value(column, r, DataType::BigInt)? {
        Value::BigInt(s) => Ok(s),
        _ => Err("a row has no _seq".into()),
    }
}

/// The rows `RETURNING items` shows for the written rows (`_seq` filled in after apply).
pub(super) fn returning_rows<'a>(
    def: &TableDef,
    items: &[sql::SelectItem],
    rows: impl Iterator<Item = &'a [(u32, Value)]>,
) -> StmtResult<Returning> {
    let schema = crate::provider::table_schema(def);
    // Which table columns to show: by index into the table schema.
    let mut picks: Vec<usize> = Vec::new();
    for item in items {
        match item {
            sql::SelectItem::Wildcard(_) => {
                picks.extend(0..=def.columns.len());
            }
            sql::SelectItem::UnnamedExpr(Expr::Identifier(id)) => {
                let n = id.value.to_ascii_lowercase();
                let idx = schema.index_of(&n).map_err(|_| {
                    Error::NotFound(format!(
                        "Column '{n}' not found in table {}",
                        def.qualified_name()
                    ))
                })?;
                picks.push(idx);
            }
            other => {
                return Err(Error::InvalidSql(format!(
                    "RETURNING supports column names and * only, not {other}"
                )));
            }
        }
    }
    let seq_index = picks.iter().position(|i| *i == def.columns.len());
    let info = schema_info(&Schema::new(
        picks
            .iter()
            .map(|i| schema.field(*i).clone())
            .collect::<Vec<_>>(),
    ));
    let out_rows = rows
        .map(|cells| {
            picks
                .iter()
                .map(|i| match def.columns.get(*i) {
                    Some(c) => cells
                        .iter()
                        .find(|(id, _)| *id == c.id)
                        .map_or(Json::Null, |(_, v)| v.to_json()),
                    None => Json::Null,
                })
                .collect()
        })
        .collect();
    Ok(Returning {
        schema: info,
        rows: out_rows,
        seq_index,
    })
}

pub(super) fn returning_result(caller: &Caller, r: Returning, results: &[OpResult]) -> QueryResult {
    let seqs: Vec<i64> = results
        .iter()
        .flat_map(|o| o.seqs.iter().copied())
        .collect();
    let mut rows = r.rows;
    if let Some(i) = r.seq_index {
        for (row, seq) in rows.iter_mut().zip(&seqs) {
            row[i] = Json::String(seq.to_string());
        }
    }
    QueryResult {
        schema: r.schema,
        row_count: rows.len() as u64,
        rows: Some(rows),
        message: None,
        as_user: caller.user.clone(),
    }
}
