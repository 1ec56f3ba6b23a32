//! Live queries (API.md 2.5, DESIGN.md "Live path"): a subscription's SQL planned once into
//! a table, a scope, a projection and a compiled filter, then used two ways — the initial
//! rows, read through DataFusion as the subscriber, and the evaluation of the filter and
//! the projection over row images, with which `folddb-realtime` decides what each change
//! means to the subscriber (its `notify` module).

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch};
use arrow::datatypes::SchemaRef;
use datafusion::common::DFSchema;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{self as sql, Expr, SelectItem, SetExpr, TableFactor};
use datafusion::sql::sqlparser::parser::Parser;
use folddb_materializer::{DataType, RowEvent, RowVersion, TableDef, TableKind, Value, catalog};
use serde_json::{Map, Value as Json};

use crate::convert::{arrow_to_value, cell_json};
use crate::engine::{ColumnInfo, Engine, now_ms};
use crate::provider::{Caller, HotTable, rows_batch, shared_access, table_schema};

/// One open subscription, as `system.live` shows it (API.md 3.7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveInfo {
    /// `<user>-<connection>-<subscription>`.
    pub live_id: String,
    pub connection_id: String,
    pub subscription_id: String,
    pub namespace: String,
    pub table: String,
    pub user_id: String,
    pub query: String,
    /// The subscribe options, as JSON text.
    pub options: String,
    pub created_at_ms: u64,
    pub last_update_ms: u64,
    /// Change messages delivered so far.
    pub changes: u64,
    pub node_id: u64,
}

/// The node's open subscriptions: listed by `system.live`, closed by `KILL LIVE QUERY`.
pub trait LiveSource: Send + Sync + std::fmt::Debug {
    fn list(&self) -> Vec<LiveInfo>;
    /// Closes the subscription (its client is told); false when there is none.
    fn kill(&self, live_id: &str) -> bool;
}

/// Why a subscription was refused: an API.md 2.4 error code and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveError {
    pub code: &'static str,
    pub message: String,
}

fn invalid(m: impl Into<String>) -> LiveError {
    LiveError {
        code: "INVALID_SQL",
        message: m.into(),
    }
}

/// The [`LiveError::code`] with which [`Engine::plan_live`] declines a query over a system
/// table: those are served by [`Engine::plan_system_live`] instead.
pub const SYSTEM_TABLE: &str = "SYSTEM_TABLE";

/// A subscription over a system table (dba and system only): its rows are views of the
/// catalog and of runtime state, not row versions with a `_seq`, so it is served by
/// re-reading the query and diffing by its first column.
#[derive(Debug, Clone)]
pub struct SystemLive {
    pub namespace: String,
    pub table: String,
    pub sql: String,
}

/// A row as a subscriber sees it: an object keyed by column name, `_seq` always included.
pub type RowObject = Map<String, Json>;

/// A row of a subscription's initial data to read: its primary key and the `_seq` of the
/// version to send (see [`Engine::live_keys`]).
pub type RowAt = (Value, i64);

/// A row of a subscription's initial data, with what the hand-off to live changes needs.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotRow {
    pub row: RowObject,
    /// The primary key as [`Value::plain`] spells it (`_seq` for tables without one).
    pub key: String,
    pub seq: i64,
}

/// A planned subscription.
#[derive(Debug)]
pub struct LiveQuery {
    pub def: TableDef,
    /// The owner whose rows it sees (USER and STREAM tables); empty for SHARED.
    pub scope: String,
    schema: SchemaRef,
    /// The subscriber's columns, in order, then `_seq`.
    projection: Vec<Projected>,
    where_sql: Option<String>,
    filter: Option<Arc<dyn PhysicalExpr>>,
    pk_index: Option<usize>,
    guard: Option<Guard>,
}

/// One column of a subscription's rows: a table column (by index into the table's schema),
/// or an aliased expression over the row (API.md 2.5: "aliases become the key").
#[derive(Debug)]
struct Projected {
    name: String,
    source: Source,
}

#[derive(Debug)]
enum Source {
    Column(usize),
    Expr(Arc<dyn PhysicalExpr>),
}

/// A necessary condition of a subscription's filter: `column = value` is one of the
/// top-level conjuncts of its WHERE, so a row image can only pass the filter when that
/// column holds that value. Fan-out indexes subscriptions by it; a change whose images
/// hold another value cannot concern the subscription.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Guard {
    pub column: u32,
    /// The value as [`Value::plain`] spells it.
    pub value: String,
}

impl Guard {
    /// The guarded column's value in `image` (`None`: the image has no cell for it, such as
    /// a row written before the column was added, so it cannot be ruled out).
    pub fn key_in(&self, image: &RowVersion) -> Option<String> {
        image.cell(self.column).map(Value::plain)
    }
}

/// The first top-level `column = literal` conjunct of `w` whose equality [`Value::plain`]
/// decides exactly: integer, text and boolean columns compared with a literal of their own
/// kind. Anything else (casts, floats, NULL, other operators) gives no guard.
fn guard_of(def: &TableDef, w: &Expr) -> Option<Guard> {
    use datafusion::sql::sqlparser::ast::{BinaryOperator, Value as Lit};
    match w {
        Expr::Nested(e) => guard_of(def, e),
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => guard_of(def, left).or_else(|| guard_of(def, right)),
        Expr::BinaryOp {
            left,
            op: BinaryOperator::Eq,
            right,
        } => {
            let (id, lit) = match (left.as_ref(), right.as_ref()) {
                (Expr::Identifier(id), Expr::Value(v)) | (Expr::Value(v), Expr::Identifier(id)) => {
                    (id, &v.value)
                }
                _ => return None,
            };
            let name = id.value.to_ascii_lowercase();
            let col = def.columns.iter().find(|c| c.name == name)?;
            let value = match (col.data_type, lit) {
                (DataType::SmallInt | DataType::Int | DataType::BigInt, Lit::Number(n, _)) => {
                    let n: i64 = n.parse().ok()?;
                    Value::BigInt(n).plain()
                }
                (DataType::Text, Lit::SingleQuotedString(t)) => t.clone(),
                (DataType::Boolean, Lit::Boolean(b)) => Value::Boolean(*b).plain(),
                _ => return None,
            };
            Some(Guard {
                column: col.id,
                value,
            })
        }
        _ => None,
    }
}

impl Engine {
    /// Plans a subscription (API.md 2.5) for `caller`: one `SELECT <columns | *> FROM
    /// namespace.table [WHERE …]`, with the caller's right to read that table.
    pub fn plan_live(&self, caller: &Caller, sql_text: &str) -> Result<LiveQuery, LiveError> {
        let sql_text = crate::dialect::normalize_keyword_calls(sql_text);
        let tokens = crate::sql_dialect::tokenize(&sql_text)
            .map_err(|e| invalid(format!("SQL parse error: {e}")))?;
        let plain: Vec<_> = tokens.iter().map(|t| t.token.clone()).collect();
        crate::nesting::check(&plain).map_err(invalid)?;
        let stmts = Parser::new(&crate::sql_dialect::FoldDialect)
            .with_tokens_with_locations(tokens)
            .parse_statements()
            .map_err(|e| invalid(format!("SQL parse error: {e}")))?;
        let [sql::Statement::Query(q)] = stmts.as_slice() else {
            return Err(invalid("A subscription is exactly one SELECT"));
        };
        if q.with.is_some() || q.order_by.is_some() || q.limit_clause.is_some() || q.fetch.is_some()
        {
            return Err(invalid(
                "Subscription queries cannot use WITH, ORDER BY, LIMIT, OFFSET or FETCH",
            ));
        }
        let SetExpr::Select(sel) = q.body.as_ref() else {
            return Err(invalid("A subscription is exactly one SELECT"));
        };
        let [from] = sel.from.as_slice() else {
            return Err(invalid("A subscription reads exactly one table"));
        };
        let TableFactor::Table { name, .. } = &from.relation else {
            return Err(invalid("A subscription reads a table, not a subquery"));
        };
        if !from.joins.is_empty()
            || sel.distinct.is_some()
            || sel.having.is_some()
            || !matches!(&sel.group_by, sql::GroupByExpr::Expressions(e, _) if e.is_empty())
            || !sel.named_window.is_empty()
        {
            return Err(invalid(
                "Subscription queries cannot use JOIN, DISTINCT, GROUP BY, HAVING or windows",
            ));
        }
        let parts: Vec<String> = name
            .0
            .iter()
            .filter_map(|p| p.as_ident())
            .map(|i| i.value.to_ascii_lowercase())
            .collect();
        let [ns, table] = parts.as_slice() else {
            return Err(invalid("Query must use namespace.table format"));
        };
        if ns == "system" || ns == "information_schema" {
            return Err(LiveError {
                code: SYSTEM_TABLE,
                message: format!("{ns}.{table} is a system table"),
            });
        }
        let def = catalog::table(self.store().as_ref(), ns, table)
            .map_err(|e| LiveError {
                code: "SUBSCRIPTION_FAILED",
                message: e.to_string(),
            })?
            .ok_or_else(|| LiveError {
                code: "NOT_FOUND",
                message: format!("Table '{ns}.{table}' not found"),
            })?;
        if def.kind == TableKind::Shared && !shared_access(&def, caller.role, false) {
            return Err(LiveError {
                code: "UNAUTHORIZED",
                message: format!(
                    "Permission denied: role {} may not read SHARED table {}",
                    caller.role.name(),
                    def.qualified_name()
                ),
            });
        }
        let schema = table_schema(&def);
        let seq_index = def.columns.len();
        let column = |name: &str, key: String| -> Result<Projected, LiveError> {
            let n = name.to_ascii_lowercase();
            if n == "_seq" || n == "_deleted" {
                return Err(invalid(
                    "Subscription query cannot project system columns '_seq' or '_deleted'",
                ));
            }
            let i = schema
                .index_of(&n)
                .map_err(|_| invalid(format!("Column '{n}' not found")))?;
            Ok(Projected {
                name: key,
                source: Source::Column(i),
            })
        };
        let mut projection = Vec::new();
        for item in &sel.projection {
            match item {
                SelectItem::Wildcard(_) => {
                    projection.extend(schema.fields().iter().enumerate().map(|(i, f)| Projected {
                        name: f.name().clone(),
                        source: Source::Column(i),
                    }))
                }
                SelectItem::UnnamedExpr(Expr::Identifier(id)) => {
                    projection.push(column(&id.value, id.value.to_ascii_lowercase())?);
                }
                SelectItem::UnnamedExpr(Expr::CompoundIdentifier(parts)) => {
                    let last = parts.last().map_or("", |p| p.value.as_str());
                    projection.push(column(last, last.to_ascii_lowercase())?);
                }
                SelectItem::ExprWithAlias { expr, alias } => {
                    let key = alias.value.clone();
                    match expr {
                        Expr::Identifier(id) => projection.push(column(&id.value, key)?),
                        other => projection.push(Projected {
                            name: key,
                            source: Source::Expr(compile_expr(
                                caller,
                                &schema,
                                &other.to_string(),
                            )?),
                        }),
                    }
                }
                other => {
                    return Err(invalid(format!(
                        "Subscriptions project columns, aliased expressions or *; not supported: {other}"
                    )));
                }
            }
        }
        if !projection
            .iter()
            .any(|p| matches!(p.source, Source::Column(i) if i == seq_index))
        {
            projection.push(Projected {
                name: "_seq".into(),
                source: Source::Column(seq_index),
            });
        }
        let where_sql = sel.selection.as_ref().map(|w| w.to_string());
        let guard = sel.selection.as_ref().and_then(|w| guard_of(&def, w));
        let filter = match &where_sql {
            None => None,
            Some(w) => Some(compile_expr(caller, &schema, w)?),
        };
        let scope = if def.kind.is_per_user() {
            caller.user.clone()
        } else {
            String::new()
        };
        let pk_index = def
            .primary_key
            .and_then(|id| def.columns.iter().position(|c| c.id == id));
        Ok(LiveQuery {
            def,
            scope,
            schema,
            projection,
            where_sql,
            filter,
            pk_index,
            guard,
        })
    }

    /// Plans a subscription that [`Engine::plan_live`] declined with [`SYSTEM_TABLE`]: only
    /// dba and system may watch system tables (API.md 2.5).
    pub fn plan_system_live(
        &self,
        caller: &Caller,
        sql_text: &str,
        message: &str,
    ) -> Result<SystemLive, LiveError> {
        if !caller.role.is_admin() {
            return Err(LiveError {
                code: "UNAUTHORIZED",
                message: format!(
                    "Permission denied: only dba and system may subscribe to {message}"
                ),
            });
        }
        let (namespace, table) = message
            .strip_suffix(" is a system table")
            .and_then(|t| t.split_once('.'))
            .map(|(n, t)| (n.to_owned(), t.to_owned()))
            .unwrap_or_default();
        Ok(SystemLive {
            namespace,
            table,
            sql: crate::dialect::normalize_keyword_calls(sql_text).into_owned(),
        })
    }

    /// A system subscription's column names and rows now, keyed by their first column.
    pub async fn system_rows(
        &self,
        caller: &Caller,
        q: &SystemLive,
    ) -> Result<(Vec<String>, Vec<(String, RowObject)>), LiveError> {
        let batches = self.read_typed(caller, &q.sql).await.map_err(|e| {
            let code = match &e {
                crate::error::Error::NotFound(_) => "NOT_FOUND",
                crate::error::Error::Rejected {
                    kind: folddb_materializer::RejectKind::NotFound,
                    ..
                } => "NOT_FOUND",
                _ => "SUBSCRIPTION_FAILED",
            };
            LiveError {
                code,
                message: crate::request::SqlError::from(e)
                    .for_role(caller.role)
                    .message,
            }
        })?;
        let mut out = Vec::new();
        let mut names = Vec::new();
        for b in &batches {
            let schema = b.schema();
            names = schema.fields().iter().map(|f| f.name().clone()).collect();
            for r in 0..b.num_rows() {
                let mut row = Map::new();
                for (i, f) in schema.fields().iter().enumerate() {
                    row.insert(
                        f.name().clone(),
                        cell_json(b.column(i).as_ref(), r).map_err(conversion)?,
                    );
                }
                let key = match names.first().and_then(|n| row.get(n)) {
                    Some(Json::String(s)) => s.clone(),
                    Some(other) => other.to_string(),
                    None => String::new(),
                };
                out.push((key, row));
            }
        }
        Ok((names, out))
    }

    /// One page of the subscription's initial data (API.md 2.6): at most `limit` rows in
    /// its view whose current version's `_seq` is in `(after, until]`, ascending by `_seq`;
    /// with `newest`, the newest `limit` of them (still ascending). Only the page is held in
    /// memory: the scan streams, and DataFusion keeps the top `limit` rows.
    pub async fn live_page(
        &self,
        caller: &Caller,
        q: &LiveQuery,
        after: Option<i64>,
        until: i64,
        limit: usize,
        newest: bool,
    ) -> Result<Vec<SnapshotRow>, LiveError> {
        let conditions = window(q, after, until);
        let mut rows = self
            .live_rows(caller, q, &conditions, Some((limit, newest)))
            .await?;
        if newest {
            rows.reverse();
        }
        Ok(rows)
    }

    /// What a subscription's initial data pages through (API.md 2.6), when its table has a
    /// primary key: the key and `_seq` of the first `limit` rows in its view whose current
    /// version's `_seq` is in `(after, until]`, ascending by `_seq`. Tens of bytes a row;
    /// the rows themselves are read a page at a time, by key ([`Engine::live_rows_at`]), so
    /// a page costs its rows rather than a scan of the table. `None` for a table without a
    /// primary key.
    pub async fn live_keys(
        &self,
        caller: &Caller,
        q: &LiveQuery,
        after: Option<i64>,
        until: i64,
        limit: usize,
    ) -> Result<Option<Vec<RowAt>>, LiveError> {
        let Some(pk) = q.pk_index.map(|i| &q.def.columns[i]) else {
            return Ok(None);
        };
        let conditions = window(q, after, until);
        let sql_text = format!(
            "SELECT \"{}\", _seq FROM \"{}\".\"{}\" WHERE {} ORDER BY _seq LIMIT {limit}",
            pk.name,
            q.def.namespace,
            q.def.name,
            conditions.join(" AND ")
        );
        let batches = self.live_read(caller, &sql_text).await?;
        let mut out = Vec::with_capacity(batches.iter().map(|b| b.num_rows()).sum());
        for b in &batches {
            for r in 0..b.num_rows() {
                let key =
                    arrow_to_value(b.column(0).as_ref(), r, pk.data_type).map_err(conversion)?;
                out.push((key, seq_at(b, 1, r)?));
            }
        }
        Ok(Some(out))
    }

    /// The rows `at` lists ([`Engine::live_keys`]) whose current version is still the one
    /// listed, in its order. A row changed since has a `_seq` above the boundary the list
    /// was read under, and reaches the subscriber as a change instead.
    pub async fn live_rows_at(
        &self,
        caller: &Caller,
        q: &LiveQuery,
        at: &[RowAt],
    ) -> Result<Vec<SnapshotRow>, LiveError> {
        let table = HotTable::new(self.committed(), q.def.clone(), caller, now_ms());
        let keys: Vec<Value> = at.iter().map(|(k, _)| k.clone()).collect();
        let schema = q.schema.clone();
        // Point reads of hot and cold rows: blocking work, off the async threads.
        let read = tokio::task::spawn_blocking(move || {
            let mut found = Vec::with_capacity(keys.len());
            for (i, k) in keys.iter().enumerate() {
                let b = table.point(k)?;
                if b.num_rows() == 1 {
                    found.push((i, b));
                }
            }
            let batches: Vec<&RecordBatch> = found.iter().map(|(_, b)| b).collect();
            let batch = arrow::compute::concat_batches(&schema, batches)?;
            Ok::<_, datafusion::error::DataFusionError>((
                found.into_iter().map(|(i, _)| i).collect::<Vec<_>>(),
                batch,
            ))
        });
        let failed = |m: String| LiveError {
            code: "SUBSCRIPTION_FAILED",
            message: m,
        };
        let (found, batch) = read
            .await
            .map_err(|e| failed(e.to_string()))?
            .map_err(|e| failed(e.to_string()))?;
        let seq_index = q.def.columns.len();
        let cols = q.project(&batch).map_err(conversion)?;
        let mut out = Vec::with_capacity(found.len());
        for (r, i) in found.into_iter().enumerate() {
            let (key, listed) = &at[i];
            let seq = seq_at(&batch, seq_index, r)?;
            if seq != *listed {
                continue;
            }
            out.push(SnapshotRow {
                row: q.object(&cols, r).map_err(conversion)?,
                key: key.plain(),
                seq,
            });
        }
        Ok(out)
    }

    /// The first `limit` rows whose current version is in the subscription's view and
    /// newer than `from`, ascending by `_seq`.
    async fn live_since(
        &self,
        caller: &Caller,
        q: &LiveQuery,
        from: i64,
        limit: usize,
    ) -> Result<Vec<SnapshotRow>, LiveError> {
        let mut conditions = vec![format!("_seq > {from}")];
        if let Some(w) = &q.where_sql {
            conditions.push(format!("({w})"));
        }
        self.live_rows(caller, q, &conditions, Some((limit, false)))
            .await
    }

    /// The first `limit` rows that left the subscription after `from` (and, with `until`,
    /// at or before it), ascending by `_seq`: deleted since (the tombstone, which keeps the row's last
    /// cells), or changed since so that they no longer match the filter. A resuming client
    /// removes them by key; a key it never held is a no-op for it, which is why a row that
    /// changed without ever matching is listed too: the current version alone cannot tell
    /// the two apart.
    pub async fn live_departures(
        &self,
        caller: &Caller,
        q: &LiveQuery,
        from: i64,
        until: Option<i64>,
        limit: usize,
    ) -> Result<Vec<SnapshotRow>, LiveError> {
        let mut left = Vec::new();
        if q.def.has_soft_delete() {
            left.push("_deleted = true".to_owned());
        }
        if let Some(w) = &q.where_sql {
            left.push(format!("({w}) IS NOT TRUE"));
        }
        if left.is_empty() {
            return Ok(Vec::new());
        }
        let mut conditions = vec![format!("_seq > {from}"), format!("({})", left.join(" OR "))];
        if let Some(until) = until {
            conditions.push(format!("_seq <= {until}"));
        }
        self.live_rows(caller, q, &conditions, Some((limit, false)))
            .await
    }

    /// Everything that changed for the subscription after `from`, ascending by `_seq`:
    /// `(row, true)` for a row that is in its view now (at its newest version), `(row,
    /// false)` for one that left it (see [`Engine::live_departures`]). At most `limit` rows
    /// of each kind are read: more than `limit` in all means more changed than that.
    pub async fn live_changes_since(
        &self,
        caller: &Caller,
        q: &LiveQuery,
        from: i64,
        limit: usize,
    ) -> Result<Vec<(SnapshotRow, bool)>, LiveError> {
        let present = self.live_since(caller, q, from, limit).await?;
        let gone = self.live_departures(caller, q, from, None, limit).await?;
        let mut all: Vec<(SnapshotRow, bool)> = present
            .into_iter()
            .map(|r| (r, true))
            .chain(gone.into_iter().map(|r| (r, false)))
            .collect();
        all.sort_by_key(|(r, _)| r.seq);
        Ok(all)
    }

    /// One of a subscription's internal queries, as `caller`.
    async fn live_read(
        &self,
        caller: &Caller,
        sql_text: &str,
    ) -> Result<Vec<RecordBatch>, LiveError> {
        self.read_as(caller, sql_text).await.map_err(|e| LiveError {
            code: "SUBSCRIPTION_FAILED",
            message: e.message,
        })
    }

    /// The subscription's rows under `conditions` (ANDed), ascending by `_seq`; with
    /// `top = (n, newest)`, only the first n (the last n when `newest`, then descending).
    async fn live_rows(
        &self,
        caller: &Caller,
        q: &LiveQuery,
        conditions: &[String],
        top: Option<(usize, bool)>,
    ) -> Result<Vec<SnapshotRow>, LiveError> {
        let mut sql_text = format!("SELECT * FROM \"{}\".\"{}\"", q.def.namespace, q.def.name);
        if !conditions.is_empty() {
            sql_text.push_str(" WHERE ");
            sql_text.push_str(&conditions.join(" AND "));
        }
        match top {
            Some((n, true)) => sql_text.push_str(&format!(" ORDER BY _seq DESC LIMIT {n}")),
            Some((n, false)) => sql_text.push_str(&format!(" ORDER BY _seq LIMIT {n}")),
            None => sql_text.push_str(" ORDER BY _seq"),
        }
        let batches = self.live_read(caller, &sql_text).await?;
        let seq_index = q.def.columns.len();
        let mut out = Vec::new();
        for b in &batches {
            let cols = q.project(b).map_err(conversion)?;
            for r in 0..b.num_rows() {
                let seq = seq_at(b, seq_index, r)?;
                let key = match q.pk_index {
                    Some(i) => {
                        let t = q.def.columns[i].data_type;
                        arrow_to_value(b.column(i).as_ref(), r, t)
                            .map_err(conversion)?
                            .plain()
                    }
                    None => seq.to_string(),
                };
                out.push(SnapshotRow {
                    row: q.object(&cols, r).map_err(conversion)?,
                    key,
                    seq,
                });
            }
        }
        Ok(out)
    }
}

/// The conditions of a subscription's rows whose current version's `_seq` is in `(after,
/// until]`.
fn window(q: &LiveQuery, after: Option<i64>, until: i64) -> Vec<String> {
    let mut conditions = vec![format!("_seq <= {until}")];
    if let Some(w) = &q.where_sql {
        conditions.push(format!("({w})"));
    }
    if let Some(after) = after {
        conditions.push(format!("_seq > {after}"));
    }
    conditions
}

/// The `_seq` in column `c`, row `r`, of `b`.
fn seq_at(b: &RecordBatch, c: usize, r: usize) -> Result<i64, LiveError> {
    match arrow_to_value(b.column(c).as_ref(), r, DataType::BigInt) {
        Ok(Value::BigInt(s)) => Ok(s),
        _ => Err(conversion("a row without _seq".into())),
    }
}

fn conversion(m: String) -> LiveError {
    LiveError {
        code: "CONVERSION_ERROR",
        message: m,
    }
}

/// An expression of the subscription (its WHERE clause, or a projected expression) as one
/// DataFusion evaluates over batches of row images in the table's schema, with
/// `CURRENT_USER()` and `CURRENT_ROLE()` bound to the subscriber.
fn compile_expr(
    caller: &Caller,
    schema: &SchemaRef,
    where_sql: &str,
) -> Result<Arc<dyn PhysicalExpr>, LiveError> {
    let ctx = SessionContext::new();
    for f in crate::functions::identity(&caller.user, caller.role.name()) {
        ctx.register_udf(f);
    }
    let df_schema =
        DFSchema::try_from(schema.as_ref().clone()).map_err(|e| invalid(format!("filter: {e}")))?;
    let expr = ctx
        .parse_sql_expr(where_sql, &df_schema)
        .map_err(|e| invalid(format!("filter: {e}")))?;
    ctx.create_physical_expr(expr, &df_schema)
        .map_err(|e| invalid(format!("filter: {e}")))
}

impl LiveQuery {
    /// The columns of the subscription's rows, for `subscription_ack`.
    pub fn schema_info(&self) -> Vec<ColumnInfo> {
        self.projection
            .iter()
            .enumerate()
            .map(|(index, p)| match &p.source {
                Source::Column(i) => {
                    let f = self.schema.field(*i);
                    ColumnInfo {
                        name: p.name.clone(),
                        data_type: crate::convert::api_type(f),
                        index,
                        flags: crate::convert::flags(f),
                    }
                }
                Source::Expr(e) => {
                    let t = e
                        .data_type(&self.schema)
                        .unwrap_or(arrow::datatypes::DataType::Null);
                    let f = arrow::datatypes::Field::new(&p.name, t, true);
                    ColumnInfo {
                        name: p.name.clone(),
                        data_type: crate::convert::api_type(&f),
                        index,
                        flags: Vec::new(),
                    }
                }
            })
            .collect()
    }

    /// Row images of the table as one batch in its schema, for [`LiveQuery::passes`] and
    /// [`LiveQuery::project`].
    pub fn images(&self, images: &[RowVersion]) -> Result<RecordBatch, String> {
        rows_batch(&self.def, &self.schema, images).map_err(|e| e.to_string())
    }

    /// The subscriber's columns of `batch` (in the table's schema), in projection order.
    pub fn project(&self, batch: &RecordBatch) -> Result<Vec<ArrayRef>, String> {
        self.projection
            .iter()
            .map(|p| match &p.source {
                Source::Column(i) => Ok(batch.column(*i).clone()),
                Source::Expr(e) => e
                    .evaluate(batch)
                    .and_then(|v| v.into_array(batch.num_rows()))
                    .map_err(|e| e.to_string()),
            })
            .collect()
    }

    /// Row `r` of projected columns `cols` as the subscriber sees it.
    pub fn object(&self, cols: &[ArrayRef], r: usize) -> Result<RowObject, String> {
        let mut row = Map::new();
        for (p, col) in self.projection.iter().zip(cols) {
            row.insert(p.name.clone(), cell_json(col.as_ref(), r)?);
        }
        Ok(row)
    }

    /// The subscriber's column names, in projection order, each with whether it identifies
    /// the row version (the primary key or `_seq`).
    pub fn columns(&self) -> impl Iterator<Item = (&str, bool)> {
        let seq_index = self.def.columns.len();
        self.projection.iter().map(move |p| {
            let identifies = match p.source {
                Source::Column(i) => i == seq_index || Some(i) == self.pk_index,
                Source::Expr(_) => false,
            };
            (p.name.as_str(), identifies)
        })
    }

    /// The subscriber's names of the primary key column (none for tables without one).
    pub fn key_columns(&self) -> impl Iterator<Item = &str> {
        self.projection.iter().filter_map(move |p| match p.source {
            Source::Column(c) if Some(c) == self.pk_index => Some(p.name.as_str()),
            _ => None,
        })
    }

    /// Which rows of `batch` pass the filter.
    pub fn passes(&self, batch: &RecordBatch) -> Result<Vec<bool>, String> {
        let Some(filter) = &self.filter else {
            return Ok(vec![true; batch.num_rows()]);
        };
        let value = filter.evaluate(batch).map_err(|e| e.to_string())?;
        let array = value
            .into_array(batch.num_rows())
            .map_err(|e| e.to_string())?;
        let bools = array
            .as_any()
            .downcast_ref::<BooleanArray>()
            .ok_or("the filter is not a boolean expression")?;
        Ok((0..bools.len())
            .map(|i| bools.is_valid(i) && bools.value(i))
            .collect())
    }

    /// The necessary `column = value` condition of the filter, if it has one.
    pub fn guard(&self) -> Option<&Guard> {
        self.guard.as_ref()
    }

    /// An event's row key as [`SnapshotRow::key`] spells it.
    pub fn key_of(&self, e: &RowEvent) -> String {
        match self.pk_index {
            Some(_) => e.pk.plain(),
            None => e
                .new
                .as_ref()
                .or(e.old.as_ref())
                .map_or_else(String::new, |v| v.seq.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(w: &str) -> Option<(u32, String)> {
        let def = TableDef::example("app", "t", TableKind::Shared);
        let expr = Parser::new(&datafusion::sql::sqlparser::dialect::GenericDialect {})
            .try_with_sql(w)
            .and_then(|mut p| p.parse_expr())
            .expect("an expression");
        guard_of(&def, &expr).map(|g| (g.column, g.value))
    }

    #[test]
    fn a_guard_is_an_exact_top_level_equality() {
        assert_eq!(guard("v = 'room-1'"), Some((2, "room-1".into())));
        assert_eq!(guard("7 = id"), Some((1, "7".into())));
        assert_eq!(
            guard("(id > 3 AND (v = 'a')) AND id < 9"),
            Some((2, "a".into()))
        );
        // Not a necessary condition, or not decided by the spelling of the value.
        assert_eq!(guard("v = 'a' OR id = 1"), None);
        assert_eq!(guard("NOT (v = 'a')"), None);
        assert_eq!(guard("id = '7'"), None);
        assert_eq!(guard("id = 7.0"), None);
        assert_eq!(guard("v = NULL"), None);
        assert_eq!(guard("missing = 1"), None);
    }
}
