//! Planning INSERT, UPDATE and DELETE into ops (DESIGN.md "Write path", step 2):
//! defaults and generated values resolved, rows typed and checked, UPDATE / DELETE targets
//! read with their current `_seq` as the precondition.

use super::*;
use crate::prepared::Prepared;

impl Engine {
    pub(super) fn default_value(
        &self,
        d: &DefaultExpr,
        t: DataType,
        caller: &Caller,
        now: u64,
    ) -> StmtResult<Value> {
        let lit = match d {
            DefaultExpr::Literal(v) => return Ok(v.clone()),
            DefaultExpr::Now => {
                let us = now as i64 * 1000;
                return Ok(match t {
                    DataType::Timestamp => Value::Timestamp(us),
                    DataType::DateTime => Value::DateTime(us),
                    DataType::Date => Value::Date((now / 86_400_000) as i32),
                    DataType::Time => Value::Time(us % 86_400_000_000),
                    DataType::BigInt => Value::BigInt(now as i64),
                    _ => coerce(
                        &Literal::Str(
                            chrono::DateTime::from_timestamp_millis(now as i64)
                                .map(|d| d.to_rfc3339())
                                .unwrap_or_default(),
                        ),
                        t,
                    )?,
                });
            }
            DefaultExpr::SnowflakeId => Literal::Number(self.ids.next(now).to_string()),
            DefaultExpr::UuidV7 => Literal::Str(ids::uuid_v7()),
            DefaultExpr::Ulid => Literal::Str(ids::ulid()),
            DefaultExpr::CurrentUser => Literal::Str(caller.user.clone()),
        };
        Ok(coerce(&lit, t)?)
    }

    /// Evaluates expressions DataFusion-side (for VALUES entries that are not plain literals).
    pub(super) async fn eval_exprs(
        &self,
        at: &At<'_>,
        exprs: &[&Expr],
        params: &[Literal],
    ) -> StmtResult<RecordBatch> {
        let list: Vec<String> = exprs.iter().map(|e| e.to_string()).collect();
        let sql_text = format!("SELECT {}", list.join(", "));
        let cap = Some(self.limits.max_result_bytes);
        let (_, batches) = self.query(at, &sql_text, params, false, cap).await?;
        batches
            .into_iter()
            .next()
            .ok_or_else(|| "expression evaluation returned nothing".into())
    }

    pub(super) async fn plan_insert(
        &self,
        at: &At<'_>,
        p: &Prepared,
        params: &[Literal],
    ) -> StmtResult<Planned> {
        let At {
            caller, namespace, ..
        } = *at;
        let stmt = p.ast().map_err(|e| Error::InvalidSql(e.to_owned()))?;
        let sql::Statement::Insert(ins) = stmt else {
            return Err(Error::InvalidSql("expected an INSERT statement".into()));
        };
        let TableObject::TableName(name) = &ins.table else {
            return Err(Error::InvalidSql("INSERT needs a table name".into()));
        };
        if ins.on.is_some() {
            return Err(Error::InvalidSql(
                "Upsert (ON CONFLICT / ON DUPLICATE KEY) is not supported".into(),
            ));
        }
        let def = self.table_of_object(namespace, name)?;
        let scope = self.scope(&def, caller)?;
        let columns: Vec<&ColumnDef> = if ins.columns.is_empty() {
            def.columns.iter().collect()
        } else {
            ins.columns
                .iter()
                .map(|c| {
                    let n = c.to_string().trim_matches('"').to_ascii_lowercase();
                    if RESERVED_COLUMNS.contains(&n.as_str()) {
                        return Err(Error::from(format!("Cannot write system column '{n}'")));
                    }
                    def.column(&n).ok_or_else(|| {
                        Error::NotFound(format!(
                            "Column '{n}' not found in table {}",
                            def.qualified_name()
                        ))
                    })
                })
                .collect::<StmtResult<_>>()?
        };
        let Some(source) = &ins.source else {
            return Err(Error::InvalidSql("INSERT needs VALUES or a SELECT".into()));
        };
        // Each source row's values for `columns`, in order.
        let mut given: Vec<Vec<Value>> = Vec::new();
        match source.body.as_ref() {
            SetExpr::Values(values) => {
                for row in &values.rows {
                    let exprs: &Vec<Expr> = row;
                    if exprs.len() != columns.len() {
                        return Err(format!(
                            "INSERT has {} values for {} columns",
                            exprs.len(),
                            columns.len()
                        )
                        .into());
                    }
                    let mut out = Vec::with_capacity(columns.len());
                    let mut fallback = Vec::new();
                    for (e, c) in exprs.iter().zip(&columns) {
                        match eval_literal(e, params) {
                            Ok(Evaluated::Literal(lit)) => out.push(
                                coerce(&lit, c.data_type)
                                    .map_err(|m| format!("column '{}': {m}", c.name))?,
                            ),
                            Ok(Evaluated::Default(d)) => {
                                out.push(self.default_value(&d, c.data_type, caller, now_ms())?)
                            }
                            Err(()) => {
                                fallback.push((out.len(), e));
                                out.push(Value::Null);
                            }
                        }
                    }
                    if !fallback.is_empty() {
                        let exprs: Vec<&Expr> = fallback.iter().map(|(_, e)| *e).collect();
                        let batch = self.eval_exprs(at, &exprs, params).await?;
                        for (j, (pos, _)) in fallback.iter().enumerate() {
                            let c = columns[*pos];
                            out[*pos] = arrow_to_value(batch.column(j).as_ref(), 0, c.data_type)
                                .map_err(|m| format!("column '{}': {m}", c.name))?;
                        }
                    }
                    given.push(out);
                }
            }
            _ => {
                // INSERT … SELECT: run the query, take its columns positionally.
                let cap = Some(self.limits.max_result_bytes);
                let (_, batches) = self
                    .query(at, &source.to_string(), params, false, cap)
                    .await?;
                for b in &batches {
                    if b.num_columns() != columns.len() {
                        return Err(format!(
                            "INSERT … SELECT returns {} columns for {} target columns",
                            b.num_columns(),
                            columns.len()
                        )
                        .into());
                    }
                    for r in 0..b.num_rows() {
                        let mut out = Vec::with_capacity(columns.len());
                        for (j, c) in columns.iter().enumerate() {
                            out.push(
                                arrow_to_value(b.column(j).as_ref(), r, c.data_type)
                                    .map_err(|m| format!("column '{}': {m}", c.name))?,
                            );
                        }
                        given.push(out);
                    }
                }
            }
        }
        let now = now_ms();
        let mut rows = Vec::with_capacity(given.len());
        for values in given {
            let mut cells = Vec::with_capacity(def.columns.len());
            for c in &def.columns {
                let v = match columns.iter().position(|g| g.id == c.id) {
                    Some(p) => values[p].clone(),
                    None => match &c.default {
                        Some(d) => self.default_value(d, c.data_type, caller, now)?,
                        None => Value::Null,
                    },
                };
                check_not_null(&def, c, &v)?;
                cells.push((c.id, v));
            }
            rows.push(cells);
        }
        let returning = returning_of(&def, &ins.returning, &rows)?;
        let ops = if rows.is_empty() {
            Vec::new()
        } else {
            vec![Op::Insert {
                table: def.id,
                schema_version: def.schema_version,
                scope,
                rows,
            }]
        };
        Ok(Planned {
            ops,
            kind: WriteKind::Insert,
            returning,
        })
    }

    /// Runs `SELECT <pk>, _seq, <extra> FROM table WHERE <selection>` as the caller.
    pub(super) async fn select_targets(
        &self,
        at: &At<'_>,
        def: &TableDef,
        extra: &[String],
        selection: Option<&Expr>,
        params: &[Literal],
    ) -> StmtResult<Vec<RecordBatch>> {
        let mut list = vec!["*".to_owned()];
        list.extend(
            extra
                .iter()
                .enumerate()
                .map(|(i, e)| format!("({e}) AS \"__set_{i}\"")),
        );
        let mut q = format!(
            "SELECT {} FROM \"{}\".\"{}\"",
            list.join(", "),
            def.namespace,
            def.name
        );
        if let Some(w) = selection {
            q.push_str(&format!(" WHERE {w}"));
        }
        let cap = Some(self.limits.max_result_bytes);
        Ok(self.query(at, &q, params, false, cap).await?.1)
    }

    pub(super) async fn plan_update(
        &self,
        at: &At<'_>,
        p: &Prepared,
        params: &[Literal],
    ) -> StmtResult<Planned> {
        let At {
            caller, namespace, ..
        } = *at;
        let stmt = p.ast().map_err(|e| Error::InvalidSql(e.to_owned()))?;
        let sql::Statement::Update(up) = stmt else {
            return Err(Error::InvalidSql("expected an UPDATE statement".into()));
        };
        let TableFactor::Table { name, .. } = &up.table.relation else {
            return Err(Error::InvalidSql("UPDATE needs a table name".into()));
        };
        if up.from.is_some() || !up.table.joins.is_empty() {
            return Err(Error::InvalidSql(
                "UPDATE … FROM and joins are not supported".into(),
            ));
        }
        let def = self.table_of_object(namespace, name)?;
        let scope = self.scope(&def, caller)?;
        let mut targets: Vec<(&ColumnDef, String)> = Vec::new();
        for a in &up.assignments {
            let AssignmentTarget::ColumnName(col) = &a.target else {
                return Err(Error::InvalidSql(
                    "tuple assignments are not supported".into(),
                ));
            };
            let n = col
                .0
                .last()
                .and_then(|p| p.as_ident())
                .map(|i| i.value.to_ascii_lowercase())
                .unwrap_or_default();
            if RESERVED_COLUMNS.contains(&n.as_str()) {
                return Err(Error::NotAllowed(format!(
                    "Cannot update system column '{n}'"
                )));
            }
            let c = def.column(&n).ok_or_else(|| {
                Error::NotFound(format!(
                    "Column '{n}' not found in table {}",
                    def.qualified_name()
                ))
            })?;
            if def.primary_key == Some(c.id) {
                return Err(Error::NotAllowed(format!(
                    "Cannot update primary key column '{n}'"
                )));
            }
            targets.push((c, a.value.to_string()));
        }
        let extra: Vec<String> = targets.iter().map(|(_, e)| e.clone()).collect();
        let batches = self
            .select_targets(at, &def, &extra, up.selection.as_ref(), params)
            .await?;
        let user_cols = def.columns.len();
        let seq_col = user_cols;
        let set_base = user_cols + if def.has_soft_delete() { 2 } else { 1 };
        let mut changes = Vec::new();
        let mut full_rows = Vec::new();
        for b in &batches {
            for r in 0..b.num_rows() {
                let mut old = Vec::with_capacity(user_cols);
                let mut cells = Vec::with_capacity(user_cols);
                for (j, c) in def.columns.iter().enumerate() {
                    let was = arrow_to_value(b.column(j).as_ref(), r, c.data_type)?;
                    let v = match targets.iter().position(|(t, _)| t.id == c.id) {
                        Some(k) => arrow_to_value(b.column(set_base + k).as_ref(), r, c.data_type)
                            .map_err(|m| format!("column '{}': {m}", c.name))?,
                        None => was.clone(),
                    };
                    check_not_null(&def, c, &v)?;
                    old.push((c.id, was));
                    cells.push((c.id, v));
                }
                let seq = seq_at(b.column(seq_col).as_ref(), r)?;
                let pk = row_pk(&def, &cells, seq);
                full_rows.push(cells.clone());
                changes.push(RowChange {
                    pk,
                    expected_seq: seq,
                    old,
                    cells,
                });
            }
        }
        let returning = returning_of(&def, &up.returning, &full_rows)?;
        let ops = if changes.is_empty() {
            Vec::new()
        } else {
            vec![Op::Update {
                table: def.id,
                schema_version: def.schema_version,
                scope,
                rows: changes,
            }]
        };
        Ok(Planned {
            ops,
            kind: WriteKind::Update,
            returning,
        })
    }

    pub(super) async fn plan_delete(
        &self,
        at: &At<'_>,
        p: &Prepared,
        params: &[Literal],
    ) -> StmtResult<Planned> {
        let At {
            caller, namespace, ..
        } = *at;
        let stmt = p.ast().map_err(|e| Error::InvalidSql(e.to_owned()))?;
        let sql::Statement::Delete(del) = stmt else {
            return Err(Error::InvalidSql("expected a DELETE statement".into()));
        };
        let from = match &del.from {
            FromTable::WithFromKeyword(t) | FromTable::WithoutKeyword(t) => t,
        };
        let [twj] = from.as_slice() else {
            return Err(Error::InvalidSql("DELETE from exactly one table".into()));
        };
        let TableFactor::Table { name, .. } = &twj.relation else {
            return Err(Error::InvalidSql("DELETE needs a table name".into()));
        };
        if del.using.is_some() || !twj.joins.is_empty() {
            return Err(Error::InvalidSql(
                "DELETE … USING and joins are not supported".into(),
            ));
        }
        let def = self.table_of_object(namespace, name)?;
        let scope = self.scope(&def, caller)?;
        let batches = self
            .select_targets(at, &def, &[], del.selection.as_ref(), params)
            .await?;
        let user_cols = def.columns.len();
        let mut rows = Vec::new();
        let mut full_rows = Vec::new();
        for b in &batches {
            for r in 0..b.num_rows() {
                let mut cells = Vec::with_capacity(user_cols);
                for (j, c) in def.columns.iter().enumerate() {
                    cells.push((c.id, arrow_to_value(b.column(j).as_ref(), r, c.data_type)?));
                }
                let seq = seq_at(b.column(user_cols).as_ref(), r)?;
                // Already-deleted rows (visible with WHERE _deleted = true) stay deleted.
                if def.has_soft_delete()
                    && let Ok(Value::Boolean(true)) =
                        arrow_to_value(b.column(user_cols + 1).as_ref(), r, DataType::Boolean)
                {
                    continue;
                }
                rows.push(RowDelete {
                    pk: row_pk(&def, &cells, seq),
                    expected_seq: seq,
                    old: cells.clone(),
                });
                full_rows.push(cells);
            }
        }
        let returning = returning_of(&def, &del.returning, &full_rows)?;
        let ops = if rows.is_empty() {
            Vec::new()
        } else {
            vec![Op::Delete {
                table: def.id,
                scope,
                rows,
            }]
        };
        Ok(Planned {
            ops,
            kind: WriteKind::Delete,
            returning,
        })
    }
}

impl Engine {
    /// INSERT / UPDATE / DELETE: planned into ops, then staged in the open transaction or
    /// proposed.
    pub(super) async fn write(
        &self,
        at: &At<'_>,
        stmt: &Statement,
        tx: &mut Option<Staged>,
        p: &Prepared,
        params: &[Literal],
    ) -> StmtResult<Out> {
        let planned = match stmt {
            Statement::Insert => self.plan_insert(at, p, params).await?,
            Statement::Update => self.plan_update(at, p, params).await?,
            _ => self.plan_delete(at, p, params).await?,
        };
        let n = planned
            .ops
            .iter()
            .map(|op| match op {
                Op::Insert { rows, .. } => rows.len(),
                Op::Update { rows, .. } => rows.len(),
                Op::Delete { rows, .. } => rows.len(),
                _ => 0,
            })
            .sum::<usize>() as u64;
        if let Some(staged) = tx {
            if planned.returning.is_some() {
                return Err("RETURNING is not supported inside an explicit transaction".into());
            }
            staged.stage(&self.store, &at.caller.user, planned.ops)?;
            staged.counts[planned.kind as usize] += n;
            return Ok(count(planned.kind, n));
        }
        if planned.ops.is_empty() {
            return Ok(match planned.returning {
                Some(r) => Out::Result(returning_result(at.caller, r, &[])),
                None => count(planned.kind, 0),
            });
        }
        let results = self.propose(&at.caller.user, planned.ops).await?;
        let affected: u64 = results.iter().map(|r| r.affected).sum();
        Ok(match planned.returning {
            Some(r) => Out::Result(returning_result(at.caller, r, &results)),
            None => count(planned.kind, affected),
        })
    }

    /// BEGIN: opens the request's transaction.
    pub(super) fn begin(&self, caller: &Caller, tx: &mut Option<Staged>) -> StmtResult<Out> {
        if tx.is_some() {
            return Err("A transaction is already open in this request".into());
        }
        *tx = Some(Staged {
            ops: Vec::new(),
            counts: [0; 3],
            preview: Preview::new(&self.store, &self.fold)?,
        });
        msg(caller, "Transaction started".into())
    }

    /// COMMIT: proposes the transaction's ops as one command.
    pub(super) async fn commit(&self, caller: &Caller, tx: &mut Option<Staged>) -> StmtResult<Out> {
        let Some(staged) = tx.take() else {
            return Err("COMMIT without an open transaction".into());
        };
        if !staged.ops.is_empty() {
            self.propose(&caller.user, staged.ops).await?;
        }
        // The committed rows were counted as their statements ran.
        Ok(Out::Result(message(
            caller,
            0,
            "Transaction committed".to_owned(),
        )))
    }

    /// ROLLBACK: forgets the transaction.
    pub(super) fn rollback(&self, caller: &Caller, tx: &mut Option<Staged>) -> StmtResult<Out> {
        let Some(staged) = tx.take() else {
            return Err("ROLLBACK without an open transaction".into());
        };
        Ok(Out::RolledBack(
            staged.counts,
            message(caller, 0, "Transaction rolled back".to_owned()),
        ))
    }
}

/// A row's key: its primary key, or `_seq` for a table without one (STREAM).
pub(super) fn row_pk(def: &TableDef, cells: &[(u32, Value)], seq: i64) -> Value {
    def.primary_key
        .and_then(|id| cells.iter().find(|(c, _)| *c == id).map(|(_, v)| v.clone()))
        .unwrap_or(Value::BigInt(seq))
}

pub(super) fn check_not_null(def: &TableDef, c: &ColumnDef, v: &Value) -> StmtResult<()> {
    if v.is_null() && (!c.nullable || def.primary_key == Some(c.id)) {
        return Err(Error::Constraint(format!(
            "NOT NULL constraint violation: column '{}' cannot be NULL",
            c.name
        )));
    }
    Ok(())
}

pub(super) enum Evaluated {
    Literal(Literal),
    Default(DefaultExpr),
}

/// A VALUES entry that needs no evaluation engine: a literal, a parameter, or one of the
/// generating functions. `Err` means: evaluate it with DataFusion.
pub(super) fn eval_literal(e: &Expr, params: &[Literal]) -> Result<Evaluated, ()> {
    use sql::Value as V;
    match e {
        Expr::Value(v) => Ok(Evaluated::Literal(match &v.value {
            V::Number(n, _) => Literal::Number(n.clone()),
            V::SingleQuotedString(s) | V::EscapedStringLiteral(s) | V::NationalStringLiteral(s) => {
                Literal::Str(s.clone())
            }
            V::Boolean(b) => Literal::Bool(*b),
            V::Null => Literal::Null,
            V::Placeholder(p) => {
                let i: usize = p.trim_start_matches('$').parse().map_err(|_| ())?;
                params.get(i.wrapping_sub(1)).cloned().ok_or(())?
            }
            _ => return Err(()),
        })),
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => match eval_literal(expr, params)? {
            Evaluated::Literal(Literal::Number(n)) => Ok(Evaluated::Literal(Literal::Number(
                match n.strip_prefix('-') {
                    Some(pos) => pos.to_owned(),
                    None => format!("-{n}"),
                },
            ))),
            _ => Err(()),
        },
        Expr::Nested(inner) => eval_literal(inner, params),
        Expr::TypedString(ts) => match &ts.value.value {
            V::SingleQuotedString(s) => Ok(Evaluated::Literal(Literal::Str(s.clone()))),
            _ => Err(()),
        },
        Expr::Function(f) => {
            let no_args = match &f.args {
                sql::FunctionArguments::None => true,
                sql::FunctionArguments::List(l) => l.args.is_empty(),
                _ => false,
            };
            if !no_args {
                return Err(());
            }
            let name = f.name.to_string().to_ascii_lowercase();
            Ok(Evaluated::Default(match name.as_str() {
                "now" | "current_timestamp" => DefaultExpr::Now,
                "snowflake_id" => DefaultExpr::SnowflakeId,
                "uuid_v7" => DefaultExpr::UuidV7,
                "ulid" => DefaultExpr::Ulid,
                "current_user" | "kdb_current_user" => DefaultExpr::CurrentUser,
                _ => return Err(()),
            }))
        }
        _ => Err(()),
    }
}

/// A parameter as DataFusion sees it (API.md 1.7.1: NULL is a typed Utf8 null, integers are
/// BIGINT, other numbers DOUBLE, strings TEXT).
pub(super) fn scalar(p: &Literal) -> ScalarValue {
    match p {
        Literal::Null => ScalarValue::Utf8(None),
        Literal::Bool(b) => ScalarValue::Boolean(Some(*b)),
        Literal::Number(n) => match n.parse::<i64>() {
            Ok(i) => ScalarValue::Int64(Some(i)),
            Err(_) => ScalarValue::Float64(n.parse::<f64>().ok()),
        },
        Literal::Str(s) => ScalarValue::Utf8(Some(s.clone())),
    }
}
