//! The `vector_search('ns.table', 'column', '[…]'[, top_k])` table function (API.md 3.6): the
//! `top_k` (default 10, at most [`MAX_TOP_K`]) rows of a table nearest to a query vector
//! by cosine distance, as `(row_id, score)`: the row's primary key and its distance, nearest
//! first. It reads the table as the caller may (a USER table: the caller's own rows), as a
//! `SELECT` would; rows whose embedding is NULL are not candidates. The search is exact.

use std::sync::Arc;

use arrow::datatypes::{Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, Session, TableFunctionImpl, TableProvider};
use datafusion::common::{Column, DataFusionError, Result as DfResult, ScalarValue};
use datafusion::datasource::{TableType, provider_as_source};
use datafusion::logical_expr::{Expr, LogicalPlanBuilder};
use datafusion::physical_plan::ExecutionPlan;
use folddb_materializer::{DataType, catalog, convert};

use crate::provider::FoldCatalog;
use crate::vector::{Metric, parse_vector};

/// Most rows one call returns.
pub const MAX_TOP_K: i64 = 10_000;
/// Rows a call without `top_k` returns.
pub const DEFAULT_TOP_K: i64 = 10;

/// `vector_search` for one caller's session, over its catalog.
#[derive(Debug)]
pub struct VectorSearch {
    pub catalog: Arc<FoldCatalog>,
}

fn plan_error(message: impl Into<String>) -> DataFusionError {
    DataFusionError::Plan(format!("vector_search: {}", message.into()))
}

/// A literal text argument.
fn text_arg(e: &Expr, what: &str) -> DfResult<String> {
    match e {
        Expr::Literal(
            ScalarValue::Utf8(Some(s))
            | ScalarValue::LargeUtf8(Some(s))
            | ScalarValue::Utf8View(Some(s)),
            _,
        ) => Ok(s.clone()),
        _ => Err(plan_error(format!(
            "the {what} must be a text literal (parameters are not supported here; \
             ORDER BY COSINE_DISTANCE(col, $1) LIMIT k takes one)"
        ))),
    }
}

impl TableFunctionImpl for VectorSearch {
    fn call_with_args(
        &self,
        args: datafusion::catalog::TableFunctionArgs,
    ) -> DfResult<Arc<dyn TableProvider>> {
        let exprs = args.exprs();
        if !(3..=4).contains(&exprs.len()) {
            return Err(plan_error(
                "takes ('namespace.table', 'column', '[x, y, …]'[, top_k])",
            ));
        }
        let table = text_arg(&exprs[0], "table")?.to_ascii_lowercase();
        let column = text_arg(&exprs[1], "column")?;
        let query = text_arg(&exprs[2], "query vector")?;
        let top_k = match exprs.get(3) {
            None => DEFAULT_TOP_K,
            Some(Expr::Literal(v, _)) => match v {
                ScalarValue::Int64(Some(k)) => *k,
                ScalarValue::Int32(Some(k)) => i64::from(*k),
                _ => return Err(plan_error("top_k must be a whole number")),
            },
            Some(_) => return Err(plan_error("top_k must be a literal whole number")),
        };
        if !(1..=MAX_TOP_K).contains(&top_k) {
            return Err(plan_error(format!(
                "top_k must be from 1 to {MAX_TOP_K}, not {top_k}"
            )));
        }
        let (namespace, name) = table.split_once('.').unwrap_or(("default", table.as_str()));
        let def = catalog::table(&self.catalog.view, namespace, name)
            .map_err(|e| DataFusionError::Execution(e.to_string()))?
            .ok_or_else(|| plan_error(format!("table {namespace}.{name} not found")))?;
        let col = def
            .column(&column)
            .ok_or_else(|| plan_error(format!("{namespace}.{name} has no column {column}")))?;
        let DataType::Embedding(n) = col.data_type else {
            return Err(plan_error(format!(
                "column {column} is {:?}, not an EMBEDDING",
                col.data_type
            )));
        };
        let vector = parse_vector(&query).map_err(plan_error)?;
        if vector.len() != usize::from(n) {
            return Err(plan_error(format!(
                "the query vector has {} components; {column} is EMBEDDING({n})",
                vector.len()
            )));
        }
        let pk = def
            .pk_column()
            .ok_or_else(|| plan_error(format!("{namespace}.{name} has no primary key")))?;
        let schema = Arc::new(Schema::new(vec![
            convert::field("row_id", pk.data_type, false, &[]),
            convert::field("score", DataType::Float, false, &[]),
        ]));
        Ok(Arc::new(SearchTable {
            catalog: self.catalog.clone(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            pk: pk.name.clone(),
            column,
            query,
            top_k: top_k as usize,
            schema,
        }))
    }
}

/// One call's answer, planned when it is scanned.
#[derive(Debug)]
struct SearchTable {
    catalog: Arc<FoldCatalog>,
    namespace: String,
    name: String,
    pk: String,
    column: String,
    query: String,
    top_k: usize,
    schema: SchemaRef,
}

#[async_trait]
impl TableProvider for SearchTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let gone = || plan_error(format!("table {}.{} not found", self.namespace, self.name));
        let table = self
            .catalog
            .schema(&self.namespace)
            .ok_or_else(gone)?
            .table(&self.name)
            .await?
            .ok_or_else(gone)?;
        let distance = crate::vector::functions()
            .into_iter()
            .find(|f| f.name() == Metric::Cosine.function_name())
            .ok_or_else(|| DataFusionError::Internal("no cosine distance function".into()))?;
        let column = |name: &str| Expr::Column(Column::from_name(name));
        let score = distance.call(vec![
            column(&self.column),
            Expr::Literal(ScalarValue::Utf8(Some(self.query.clone())), None),
        ]);
        let mut plan =
            LogicalPlanBuilder::scan(self.name.as_str(), provider_as_source(table), None)?
                .project(vec![column(&self.pk).alias("row_id"), score.alias("score")])?
                .filter(column("score").is_not_null())?
                .sort(vec![
                    column("score").sort(true, false),
                    column("row_id").sort(true, false),
                ])?
                .limit(0, Some(self.top_k))?;
        if let Some(p) = projection {
            plan = plan.project(p.iter().map(|i| column(self.schema.field(*i).name())))?;
        }
        state.create_physical_plan(&plan.build()?).await
    }
}
