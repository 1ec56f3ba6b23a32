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

/// The rows of `batch` as positional JSON arrays (API.md 1.7.3's cell encoding).
fn batch_rows(batch: &RecordBatch, rows: &mut Vec<Vec<Json>>) -> StmtResult<()> {
    for r in 0..batch.num_rows() {
        let row = batch
            .columns()
            .iter()
            .map(|c| cell_json(c.as_ref(), r))
            .collect::<Result<Vec<_>, _>>()?;
        rows.push(row);
    }
    Ok(())
}

pub(super) fn rows_result(
    caller: &Caller,
    schema: &Arc<Schema>,
    batches: &[RecordBatch],
) -> StmtResult<QueryResult> {
    let mut rows = Vec::new();
    for b in batches {
        batch_rows(b, &mut rows)?;
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

/// `batch` in buffers of its own rows' size: an operator's output batch may hold buffers
/// made for a whole batch (DataFusion fills them up to its batch size), or be a slice of a
/// larger one, and that memory would be held, and counted, for a few rows.
fn tight(batch: RecordBatch) -> StmtResult<RecordBatch> {
    let held = batch.get_array_memory_size();
    if held < 64 * 1024 {
        return Ok(batch);
    }
    let rows = u32::try_from(batch.num_rows()).unwrap_or(u32::MAX);
    let all = arrow::array::UInt32Array::from_iter_values(0..rows);
    let copy = arrow::compute::take_record_batch(&batch, &all)
        .map_err(|e| Error::Internal(format!("copying a result batch: {e}")))?;
    Ok(if copy.get_array_memory_size() < held {
        copy
    } else {
        batch
    })
}

/// `first`, then the rest of `stream`, held in memory: refused once past `max_bytes` of Arrow
/// data (the query stops there).
pub(super) async fn collect_capped(
    mut stream: SendableRecordBatchStream,
    first: Option<RecordBatch>,
    max_bytes: Option<usize>,
) -> StmtResult<Vec<RecordBatch>> {
    let mut batches = Vec::new();
    let mut bytes = 0usize;
    let mut next = first.map(Ok);
    if next.is_none() {
        next = futures::StreamExt::next(&mut stream).await;
    }
    while let Some(batch) = next {
        let batch = tight(batch?)?;
        bytes = bytes.saturating_add(batch.get_array_memory_size());
        if let Some(cap) = max_bytes
            && bytes > cap
        {
            return Err(Error::Limit {
                code: ErrorCode::ResultTooLarge,
                message: format!(
                    "The result is larger than the limit of {cap} bytes; add a LIMIT or \
                     narrow the query"
                ),
            });
        }
        batches.push(batch);
        next = futures::StreamExt::next(&mut stream).await;
    }
    Ok(batches)
}

/// Why a statement was cancelled at the statement timeout (`timeout`). A write may already
/// have been proposed: its outcome is unknown, never "failed".
pub(super) fn timed_out(timeout: std::time::Duration, writes: bool) -> Error {
    let secs = timeout.as_secs_f64();
    let message = if writes {
        format!(
            "The request ran past the statement timeout ({secs} s) and was cancelled; if the \
             statement had been proposed, its outcome is unknown: read before retrying"
        )
    } else {
        format!("The request ran past the statement timeout ({secs} s) and was cancelled")
    };
    Error::Limit {
        code: ErrorCode::StatementTimeout,
        message,
    }
}

/// What a request answers: whole, or the rows of its one query as they are produced.
#[derive(Debug)]
pub enum Answer {
    Whole(SqlResponse),
    Rows(RowStream),
}

/// The rows of a request's single query, pulled batch by batch (API.md 1.7.3, "the response
/// is streamed"): a full scan is written to the client while it runs, in memory bounded by a
/// batch rather than by the result. The first batch has been produced already, so a query
/// that fails early is answered as an error instead.
pub struct RowStream {
    pub schema: Vec<ColumnInfo>,
    pub as_user: String,
    role: Role,
    first: Option<RecordBatch>,
    rest: SendableRecordBatchStream,
    deadline: tokio::time::Instant,
    timeout: std::time::Duration,
}

impl std::fmt::Debug for RowStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RowStream")
            .field("schema", &self.schema)
            .field("as_user", &self.as_user)
            .finish_non_exhaustive()
    }
}

impl RowStream {
    pub(super) async fn start(
        caller: &Caller,
        schema: &Schema,
        mut rest: SendableRecordBatchStream,
        deadline: tokio::time::Instant,
        timeout: std::time::Duration,
    ) -> StmtResult<RowStream> {
        let first = futures::StreamExt::next(&mut rest).await.transpose()?;
        Ok(RowStream {
            schema: schema_info(schema),
            as_user: caller.user.clone(),
            role: caller.role,
            first,
            rest,
            deadline,
            timeout,
        })
    }

    /// The rows of the next batch with any (an empty batch gives an empty vector), `None`
    /// at the end. Past the statement timeout the query is cancelled with an error.
    pub async fn next_rows(&mut self) -> Option<Result<Vec<Vec<Json>>, SqlError>> {
        let batch = match self.first.take() {
            Some(b) => Ok(b),
            // A batch that is always ready at once would never let the timer fire.
            None if tokio::time::Instant::now() >= self.deadline => {
                Err(timed_out(self.timeout, false))
            }
            None => {
                let next = futures::StreamExt::next(&mut self.rest);
                match tokio::time::timeout_at(self.deadline, next).await {
                    Ok(None) => return None,
                    Ok(Some(b)) => b.map_err(Error::from),
                    Err(_) => Err(timed_out(self.timeout, false)),
                }
            }
        };
        let mut rows = Vec::new();
        Some(
            batch
                .and_then(|b| batch_rows(&b, &mut rows))
                .map(|()| rows)
                .map_err(|e| SqlError::from(e).for_role(self.role)),
        )
    }

    /// All the rows, held in memory: at most `max_bytes` of Arrow data.
    pub(super) async fn collect(self, max_bytes: usize) -> Result<QueryResult, SqlError> {
        let role = self.role;
        let deadline = self.deadline;
        let schema = self.rest.schema();
        let caller = Caller {
            user: self.as_user,
            role,
        };
        let collected = tokio::time::timeout_at(
            deadline,
            collect_capped(self.rest, self.first, Some(max_bytes)),
        )
        .await;
        let batches = match collected {
            Ok(b) => b,
            Err(_) => Err(timed_out(self.timeout, false)),
        };
        batches
            .and_then(|b| rows_result(&caller, &schema, &b))
            .map_err(|e| SqlError::from(e).for_role(role))
    }
}
