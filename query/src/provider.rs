//! DataFusion's view of FoldDB: a catalog whose schemas are namespaces (plus `system`), and a
//! table provider over the hot rows of one table, scoped to the caller for USER and STREAM
//! tables. Projection and filters are pushed down: an equality (or IN list) on the primary
//! key reads those keys only, tombstones are hidden unless the query filters on `_deleted`.
//! Every other read streams ([`ScanExec`]): hot and cold rows merged by primary key as
//! DataFusion pulls them, segments ruled out by their statistics skipped.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, SchemaProvider, Session, TableProvider};
use datafusion::common::tree_node::TreeNode;
use datafusion::common::{DFSchema, DataFusionError, Result as DfResult, ScalarValue};
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use folddb_materializer::catalog::StateRead;
use folddb_materializer::cold::store::key_of;
use folddb_materializer::row::row_key;
use folddb_materializer::scan::KeyRange;
use folddb_materializer::{
    AccessLevel, DataType, Family, HotBatch, HotStore, Role, RowVersion, StorageDef, TableDef,
    TableKind, Value, catalog, codec,
};

use crate::convert::arrow_to_value;
pub use crate::convert::{rows_batch, table_schema};
use crate::scan_exec::{RowFilter, ScanExec, ScanRequest};
use crate::system;
use folddb_materializer::VectorIndexDef;
use folddb_materializer::cold::ColdStore;
use folddb_materializer::vector_index::VectorIndexes;

/// Who is asking: reads of USER and STREAM tables are scoped to `user`.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: String,
    pub role: folddb_materializer::Role,
}

/// What a statement reads: the hot tier, seen through the writes of the transaction its
/// request has open (read-your-writes, API.md 1.7.5).
#[derive(Debug, Clone)]
pub struct View {
    store: Arc<HotStore>,
    cold: Option<Arc<ColdStore>>,
    overlay: Option<Arc<HotBatch>>,
    /// The node's vector indexes, which answer nearest-row queries of the committed state.
    vectors: Option<Arc<VectorIndexes>>,
}

impl View {
    /// The committed state.
    pub fn committed(store: Arc<HotStore>) -> View {
        View {
            store,
            cold: None,
            overlay: None,
            vectors: None,
        }
    }

    /// The committed state as `writes` would change it.
    pub fn with_writes(store: Arc<HotStore>, writes: Arc<HotBatch>) -> View {
        View {
            store,
            cold: None,
            overlay: Some(writes),
            vectors: None,
        }
    }

    /// The same view, with the cold tier under the hot one.
    pub fn with_cold(mut self, cold: Option<Arc<ColdStore>>) -> View {
        self.cold = cold;
        self
    }

    /// The same view, with the node's vector indexes (used only without a transaction's
    /// writes: an index holds committed rows).
    pub fn with_vectors(mut self, vectors: Arc<VectorIndexes>) -> View {
        self.vectors = Some(vectors);
        self
    }

    pub fn store(&self) -> &Arc<HotStore> {
        &self.store
    }

    pub fn cold(&self) -> Option<&Arc<ColdStore>> {
        self.cold.as_ref()
    }

    pub fn vectors(&self) -> Option<&Arc<VectorIndexes>> {
        self.vectors.as_ref()
    }
}

impl StateRead for View {
    fn get(&self, family: Family, key: &[u8]) -> folddb_materializer::Result<Option<Vec<u8>>> {
        match &self.overlay {
            Some(b) => b.get(&self.store, family, key),
            None => self.store.get(family, key),
        }
    }

    fn scan_prefix(
        &self,
        family: Family,
        prefix: &[u8],
    ) -> folddb_materializer::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        match &self.overlay {
            Some(b) => b.scan_prefix(&self.store, family, prefix),
            None => self.store.scan_prefix(family, prefix),
        }
    }
}

/// Whether `role` may read (or write) SHARED table `def` (API.md 3.8): PUBLIC is readable
/// by all and writable from service up; PRIVATE and RESTRICTED need service or more; DBA
/// needs dba or system.
pub fn shared_access(def: &TableDef, role: Role, write: bool) -> bool {
    match def.options.access_level.unwrap_or(AccessLevel::Private) {
        AccessLevel::Public => !write || role != Role::User,
        AccessLevel::Private | AccessLevel::Restricted => role != Role::User,
        AccessLevel::Dba => role.is_admin(),
    }
}

fn df_err(e: impl std::fmt::Display) -> DataFusionError {
    DataFusionError::Execution(e.to_string())
}

/// A query's "the `k` rows whose `column` is nearest to `query`", which the column's vector
/// index answers ([`crate::vector_plan`]).
#[derive(Debug, Clone)]
pub struct Nearest {
    pub index: VectorIndexDef,
    pub column: String,
    pub query: Vec<f32>,
    pub k: usize,
}

/// The hot rows of one table as one owner sees them.
#[derive(Debug, Clone)]
pub struct HotTable {
    pub(crate) view: View,
    def: TableDef,
    scope: String,
    schema: SchemaRef,
    /// STREAM tables: versions with a `_seq` below this are past their TTL and hidden.
    min_seq: Option<i64>,
    /// Set when the plan asks for the rows nearest to a vector ([`Nearest`]).
    nearest: Option<Nearest>,
}

impl HotTable {
    pub fn new(view: View, def: TableDef, caller: &Caller, now_ms: u64) -> HotTable {
        let scope = if def.kind.is_per_user() {
            caller.user.clone()
        } else {
            String::new()
        };
        let min_seq = match (def.kind, def.options.ttl_seconds) {
            (TableKind::Stream, Some(ttl)) => {
                Some(folddb_materializer::Seq::at_unix_ms(now_ms.saturating_sub(ttl * 1000)).0)
            }
            _ => None,
        };
        HotTable {
            schema: table_schema(&def),
            view,
            def,
            scope,
            min_seq,
            nearest: None,
        }
    }

    /// The vector index on `column`, when this read can use one: the committed state (no
    /// transaction's writes) of a node with vector indexes.
    pub fn vector_index(&self, column: &str) -> Option<VectorIndexDef> {
        if self.view.overlay.is_some() || self.view.vectors.is_none() {
            return None;
        }
        let col = self.def.column(column)?;
        catalog::vector_index(&self.view, self.def.id, col.id)
            .ok()
            .flatten()
    }

    /// The same table, read for the rows nearest to a vector.
    pub fn with_nearest(&self, nearest: Nearest) -> HotTable {
        HotTable {
            nearest: Some(nearest),
            ..self.clone()
        }
    }

    pub fn nearest(&self) -> Option<&Nearest> {
        self.nearest.as_ref()
    }

    /// The primary-key values an equality or IN filter pins, if any.
    fn pinned_keys(&self, filters: &[Expr]) -> Option<Vec<Value>> {
        let pk = self.def.pk_column()?;
        let literal = |e: &Expr| match e {
            Expr::Literal(v, _) => scalar_value(v, pk.data_type),
            _ => None,
        };
        let is_pk = |e: &Expr| matches!(e, Expr::Column(c) if c.name == pk.name);
        for f in filters {
            match f {
                Expr::BinaryExpr(BinaryExpr {
                    left,
                    op: Operator::Eq,
                    right,
                }) => {
                    if is_pk(left)
                        && let Some(v) = literal(right)
                    {
                        return Some(vec![v]);
                    }
                    if is_pk(right)
                        && let Some(v) = literal(left)
                    {
                        return Some(vec![v]);
                    }
                }
                Expr::InList(list) if !list.negated && is_pk(&list.expr) => {
                    return list.list.iter().map(literal).collect();
                }
                _ => {}
            }
        }
        None
    }

    /// The primary-key range `filters` bound (`pk` against a literal with `<`, `<=`, `>`,
    /// `>=`, either way round, or `BETWEEN`, under `AND`), for keys whose key order is SQL's
    /// order (integers, dates and times, text). DataFusion still applies the filters: the
    /// range only has to hold every row they keep.
    fn key_range(&self, filters: &[Expr]) -> KeyRange {
        let mut range = KeyRange::default();
        let Some(pk) = self.def.pk_column() else {
            return range;
        };
        if !matches!(
            pk.data_type,
            DataType::SmallInt
                | DataType::Int
                | DataType::BigInt
                | DataType::Text
                | DataType::Date
                | DataType::Time
                | DataType::Timestamp
                | DataType::DateTime
        ) {
            return range;
        }
        let key = |e: &Expr| match e {
            Expr::Literal(v, _) => scalar_value(v, pk.data_type).map(|v| key_of(&v)),
            _ => None,
        };
        // Just past `k` in key order: the key is the row key's last part, so nothing sorts
        // between `k` and `k + [0]`.
        let after = |mut k: Vec<u8>| {
            k.push(0);
            k
        };
        let mut from = |k: Vec<u8>| {
            if range.from.as_ref().is_none_or(|f| k > *f) {
                range.from = Some(k);
            }
        };
        let mut bounds = Vec::new();
        for c in comparisons(filters, &pk.name) {
            match c {
                Comparison::Op(op, other) => {
                    let Some(k) = key(other) else { continue };
                    match op {
                        Operator::GtEq => bounds.push((Some(k), None)),
                        Operator::Gt => bounds.push((Some(after(k)), None)),
                        Operator::Lt => bounds.push((None, Some(k))),
                        Operator::LtEq => bounds.push((None, Some(after(k)))),
                        _ => {}
                    }
                }
                Comparison::Between(low, high) => {
                    if let (Some(lo), Some(hi)) = (key(low), key(high)) {
                        bounds.push((Some(lo), Some(after(hi))));
                    }
                }
            }
        }
        let mut to: Option<Vec<u8>> = None;
        for (lo, hi) in bounds {
            if let Some(lo) = lo {
                from(lo);
            }
            if let Some(hi) = hi
                && to.as_ref().is_none_or(|t| hi < *t)
            {
                to = Some(hi);
            }
        }
        range.to = to;
        range
    }

    /// Whether `row` is shown: tombstones only when asked for, STREAM rows only within
    /// their TTL.
    pub(crate) fn shows(&self, row: &RowVersion, show_deleted: bool) -> bool {
        (show_deleted || !row.deleted) && self.min_seq.is_none_or(|min| row.seq >= min)
    }

    /// The cold tier under this table (never for STREAM tables).
    pub(crate) fn cold(&self) -> Option<&Arc<ColdStore>> {
        self.view
            .cold()
            .filter(|_| self.def.kind != TableKind::Stream)
    }

    /// The table's storage (`STORAGE_ID`), as the view's catalog says.
    fn storage(&self) -> DfResult<StorageDef> {
        catalog::storage(&self.view, &self.def.options.storage_id)
            .map_err(df_err)?
            .ok_or_else(|| {
                DataFusionError::External(Box::new(crate::error::Error::NotFound(format!(
                    "Storage '{}' of table {} does not exist",
                    self.def.options.storage_id,
                    self.def.qualified_name()
                ))))
            })
    }

    /// The newest version of the row with primary key `pk`: hot, else cold.
    /// The newest version of each row of `pks` (in their order): hot, else cold, the cold
    /// ones read together (one read per segment that holds any).
    pub(crate) fn versions_of(&self, pks: &[Value]) -> DfResult<Vec<Option<RowVersion>>> {
        let mut found = Vec::with_capacity(pks.len());
        let mut cold_asks = Vec::new();
        for (i, pk) in pks.iter().enumerate() {
            let key = row_key(self.def.id, &self.scope, pk);
            match self.view.get(self.def.family(), &key).map_err(df_err)? {
                Some(bytes) => found.push(Some(
                    codec::decode(&bytes, "a row version").map_err(df_err)?,
                )),
                None => {
                    found.push(None);
                    cold_asks.push(i);
                }
            }
        }
        if let (Some(cold), false) = (self.cold(), cold_asks.is_empty()) {
            let asked: Vec<Value> = cold_asks.iter().map(|&i| pks[i].clone()).collect();
            let read = cold
                .lookup_many(&self.view, &self.storage()?, &self.def, &self.scope, &asked)
                .map_err(df_err)?;
            for (i, v) in cold_asks.into_iter().zip(read) {
                found[i] = v;
            }
        }
        Ok(found)
    }

    pub(crate) fn version_of(&self, pk: &Value) -> DfResult<Option<RowVersion>> {
        Ok(self.versions_of(std::slice::from_ref(pk))?.pop().flatten())
    }

    /// The plan that reads the visible rows, projected: a few rows read now when the
    /// filters pin primary keys, else a [`ScanExec`] streaming the scope's hot and cold rows
    /// in key order.
    pub(crate) fn plan(
        &self,
        filters: &[Expr],
        limit: Option<usize>,
        projection: &[usize],
        partitions: usize,
        filter: Option<RowFilter>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let show_deleted = filters
            .iter()
            .any(|f| f.column_refs().iter().any(|c| c.name == "_deleted"));
        let schema = Arc::new(self.schema.project(projection)?);
        if let Some(keys) = self.pinned_keys(filters) {
            let rows: Vec<RowVersion> = self
                .versions_of(&keys)?
                .into_iter()
                .flatten()
                .filter(|v| self.shows(v, show_deleted))
                .collect();
            let batch = self.batch(&rows)?;
            let mut batch = match &filter {
                Some(f) => f.apply(&batch.project(&f.read)?)?,
                None => batch.project(projection)?,
            };
            if let Some(limit) = limit {
                batch = batch.slice(0, batch.num_rows().min(limit));
            }
            return Ok(MemorySourceConfig::try_new_exec(
                &[vec![batch]],
                schema,
                None,
            )?);
        }
        // The table's count of visible rows answers COUNT(*) without a scan, when the
        // scan would give every visible row as committed.
        let rows = if filters.is_empty()
            && !show_deleted
            && self.min_seq.is_none()
            && self.view.overlay.is_none()
            && self.cold().is_some()
        {
            folddb_materializer::row::visible_rows(&self.view, self.def.id, &self.scope)
                .map_err(df_err)?
        } else {
            None
        };
        let request = ScanRequest {
            rows,
            store: self.view.store.clone(),
            overlay: self.view.overlay.clone(),
            cold: self.cold().cloned(),
            def: self.def.clone(),
            scope: self.scope.clone(),
            projection: filter
                .as_ref()
                .map_or_else(|| projection.to_vec(), |f| f.read.clone()),
            show_deleted,
            min_seq: self.min_seq,
            seq_floor: seq_floor(filters),
            limit: limit.filter(|_| filters.is_empty()),
            keys: self.key_range(filters),
            filters: filters.to_vec(),
        };
        // A query with a LIMIT reads from the first keys on; the others read the scope's
        // key ranges on as many threads.
        let partitions = if limit.is_none() { partitions } else { 1 };
        Ok(Arc::new(ScanExec::new(
            request, schema, partitions, filter, limit,
        )))
    }

    /// The visible row with primary key `pk`, as a batch of zero or one row in the table's
    /// schema (the point-read fast path: no planner).
    pub fn point(&self, pk: &Value) -> DfResult<RecordBatch> {
        let mut rows = Vec::with_capacity(1);
        if let Some(row) = self.version_of(pk)?
            && self.shows(&row, false)
        {
            rows.push(row);
        }
        self.batch(&rows)
    }

    /// Whose rows it reads: the caller's for a per-user table, else none.
    pub fn scope(&self) -> &str {
        &self.scope
    }

    pub fn def(&self) -> &TableDef {
        &self.def
    }

    /// The rows as one record batch in the table's schema.
    pub(crate) fn batch(&self, rows: &[RowVersion]) -> DfResult<RecordBatch> {
        Ok(rows_batch(&self.def, &self.schema, rows)?)
    }
}

/// How one conjunct of a query's filters compares a column.
enum Comparison<'a> {
    /// `column <op> other`, turned round if the filter was written the other way.
    Op(Operator, &'a Expr),
    /// `column BETWEEN low AND high`.
    Between(&'a Expr, &'a Expr),
}

/// The comparisons of column `name` among the top-level conjuncts (under `AND`) of
/// `filters`.
fn comparisons<'a>(filters: &'a [Expr], name: &str) -> Vec<Comparison<'a>> {
    let is_column = |e: &Expr| matches!(e, Expr::Column(c) if c.name == name);
    let mut out = Vec::new();
    let mut pending: Vec<&Expr> = filters.iter().collect();
    while let Some(f) = pending.pop() {
        match f {
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                if *op == Operator::And {
                    pending.push(left);
                    pending.push(right);
                } else if is_column(left) {
                    out.push(Comparison::Op(*op, right));
                } else if is_column(right)
                    && let Some(op) = op.swap()
                {
                    out.push(Comparison::Op(op, left));
                }
            }
            Expr::Between(b) if !b.negated && is_column(&b.expr) => {
                out.push(Comparison::Between(&b.low, &b.high));
            }
            _ => {}
        }
    }
    out
}

/// The lowest `_seq` the filters keep (`_seq > n`, `_seq >= n`, either way round, under
/// `AND`), if they bound it: the scan skips what lies below (see
/// `ScanSpec::seq_floor`).
fn seq_floor(filters: &[Expr]) -> Option<i64> {
    let literal = |e: &Expr| match e {
        Expr::Literal(v, _) if v.data_type().is_integer() => {
            match v.cast_to(&arrow::datatypes::DataType::Int64) {
                Ok(ScalarValue::Int64(Some(n))) => Some(n),
                _ => None,
            }
        }
        _ => None,
    };
    comparisons(filters, "_seq")
        .into_iter()
        .filter_map(|c| match c {
            Comparison::Op(Operator::Gt, e) => literal(e).map(|n| n.saturating_add(1)),
            Comparison::Op(Operator::GtEq, e) => literal(e),
            _ => None,
        })
        .max()
}

/// A filter literal as a value of the key's type.
fn scalar_value(v: &ScalarValue, t: DataType) -> Option<Value> {
    let array = v.to_array().ok()?;
    match arrow_to_value(array.as_ref(), 0, t) {
        Ok(Value::Null) | Err(_) => None,
        Ok(v) => Some(v),
    }
}

#[async_trait]
impl TableProvider for HotTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        // We pick keys, segments and tombstones by them, and the scan applies those it can
        // evaluate on each row itself: DataFusion then hands it the query's LIMIT.
        Ok(filters
            .iter()
            .map(|f| {
                if evaluable(f) {
                    TableProviderFilterPushDown::Exact
                } else {
                    TableProviderFilterPushDown::Inexact
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let all: Vec<usize>;
        let projection = match projection {
            Some(p) => p.as_slice(),
            None => {
                all = (0..self.schema.fields().len()).collect();
                &all
            }
        };
        let partitions = state.config().target_partitions();
        // The filters the scan applies, on the projected columns and those they read.
        let exact: Vec<Expr> = filters.iter().filter(|f| evaluable(f)).cloned().collect();
        let filter = match conjunction(exact) {
            None => None,
            Some(predicate) => {
                let mut read = projection.to_vec();
                for c in predicate.column_refs() {
                    let i = self.schema.index_of(&c.name)?;
                    if !read.contains(&i) {
                        read.push(i);
                    }
                }
                let read_schema = DFSchema::try_from(self.schema.project(&read)?)?;
                let predicate = state.create_physical_expr(predicate, &read_schema)?;
                Some(RowFilter {
                    predicate,
                    read,
                    width: projection.len(),
                })
            }
        };
        let show_deleted = filters
            .iter()
            .any(|f| f.column_refs().iter().any(|c| c.name == "_deleted"));
        if let Some(nearest) = &self.nearest
            && !show_deleted
            && filters.iter().all(evaluable)
        {
            return Ok(Arc::new(crate::vector_exec::NearestExec::new(
                self.clone(),
                nearest.clone(),
                filters.to_vec(),
                projection.to_vec(),
                filter,
                Arc::new(self.schema.project(projection)?),
            )));
        }
        self.plan(filters, limit, projection, partitions, filter)
    }
}

/// Whether the scan can evaluate `filter` on each row as DataFusion would: neither volatile
/// nor in need of anything but the row (subqueries, parameters not yet bound).
fn evaluable(filter: &Expr) -> bool {
    !filter.is_volatile()
        && !filter
            .exists(|e| {
                Ok(matches!(
                    e,
                    Expr::ScalarSubquery(_)
                        | Expr::Exists(_)
                        | Expr::InSubquery(_)
                        | Expr::OuterReferenceColumn(..)
                        | Expr::Placeholder(_)
                ))
            })
            .unwrap_or(true)
}

/// One namespace as a DataFusion schema.
#[derive(Debug)]
pub struct NamespaceSchema {
    view: View,
    namespace: String,
    caller: Caller,
    now_ms: u64,
}

#[async_trait]
impl SchemaProvider for NamespaceSchema {
    /// The tables the caller may read (what `information_schema` lists): a SHARED table
    /// its access level keeps from the caller is left out.
    fn table_names(&self) -> Vec<String> {
        catalog::tables(&self.view, Some(&self.namespace))
            .map(|ts| {
                ts.into_iter()
                    .filter(|t| {
                        t.kind != TableKind::Shared || shared_access(t, self.caller.role, false)
                    })
                    .map(|t| t.name)
                    .collect()
            })
            .unwrap_or_default()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        // `t AS OF <point>`, rewritten by `dialect::rewrite_as_of`.
        let (name, point) = match name.split_once(crate::dialect::AS_OF_MARK) {
            Some((base, point)) => match crate::as_of::Point::parse(point) {
                Some(p) => (base, Some(p)),
                None => return Ok(None),
            },
            None => (name, None),
        };
        let def = catalog::table(&self.view, &self.namespace, name).map_err(df_err)?;
        if let Some(def) = &def
            && def.kind == TableKind::Shared
            && !shared_access(def, self.caller.role, false)
        {
            return Err(DataFusionError::External(Box::new(
                crate::error::Error::PermissionDenied(format!(
                    "Permission denied: reading SHARED table {} is not allowed for role {}",
                    def.qualified_name(),
                    self.caller.role.name()
                )),
            )));
        }
        let Some(def) = def else {
            return Ok(None);
        };
        Ok(Some(match point {
            Some(point) => Arc::new(
                crate::as_of::AsOfTable::new(
                    self.view.clone(),
                    def,
                    &self.caller,
                    self.now_ms,
                    point,
                )
                .map_err(|e| DataFusionError::External(Box::new(e)))?,
            ) as Arc<dyn TableProvider>,
            None => Arc::new(HotTable::new(
                self.view.clone(),
                def,
                &self.caller,
                self.now_ms,
            )) as Arc<dyn TableProvider>,
        }))
    }

    fn table_exist(&self, name: &str) -> bool {
        catalog::table(&self.view, &self.namespace, name)
            .ok()
            .flatten()
            .is_some()
    }
}

/// The whole database as one DataFusion catalog (`kalam`), for one caller.
#[derive(Debug)]
pub struct FoldCatalog {
    pub live: Option<Arc<dyn crate::live::LiveSource>>,
    pub node: Arc<crate::node_info::NodeInfo>,
    pub jobs: Option<Arc<crate::jobs::Jobs>>,
    pub view: View,
    pub caller: Caller,
    pub now_ms: u64,
}

impl CatalogProvider for FoldCatalog {
    fn schema_names(&self) -> Vec<String> {
        let mut names: Vec<String> = catalog::namespaces(&self.view)
            .map(|ns| ns.into_iter().map(|n| n.name).collect())
            .unwrap_or_default();
        if self.caller.role.is_admin() {
            names.push("system".into());
        }
        names
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        if name == "system" {
            return self.caller.role.is_admin().then(|| {
                Arc::new(system::SystemSchema::new(
                    self.view.clone(),
                    self.live.clone(),
                    self.jobs.clone(),
                    self.node.clone(),
                    self.caller.clone(),
                )) as Arc<dyn SchemaProvider>
            });
        }
        catalog::namespace(&self.view, name)
            .ok()
            .flatten()
            .map(|_| {
                Arc::new(NamespaceSchema {
                    view: self.view.clone(),
                    namespace: name.to_owned(),
                    caller: self.caller.clone(),
                    now_ms: self.now_ms,
                }) as Arc<dyn SchemaProvider>
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::{col, lit};

    #[test]
    fn a_seq_floor_is_the_highest_lower_bound_of_the_top_level_conjuncts() {
        let seq = || col("_seq");
        assert_eq!(seq_floor(&[seq().gt(lit(5i64))]), Some(6));
        assert_eq!(seq_floor(&[lit(5i64).lt_eq(seq())]), Some(5));
        assert_eq!(
            seq_floor(&[
                seq().gt_eq(lit(3i64)).and(col("id").gt(lit(1i64))),
                seq().gt(lit(8i32))
            ]),
            Some(9)
        );
        // Not a lower bound of `_seq`, or not one an integer spells exactly.
        assert_eq!(seq_floor(&[seq().lt(lit(5i64))]), None);
        assert_eq!(
            seq_floor(&[seq().gt(lit(5i64)).or(col("id").gt(lit(1i64)))]),
            None
        );
        assert_eq!(seq_floor(&[seq().gt(lit(-1.5f64))]), None);
        assert_eq!(seq_floor(&[col("id").gt(lit(5i64))]), None);
        assert_eq!(seq_floor(&[seq().gt(lit(i64::MAX))]), Some(i64::MAX));
    }
}
