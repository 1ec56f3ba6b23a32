//! [`NearestRule`]: the optimizer rule that answers "the k rows nearest to a vector" from the
//! column's vector index. It finds
//!
//! ```text
//! Sort: <distance>(col, '[…]') [ASC|DESC], … fetch=k
//!   [Projection | SubqueryAlias | Filter: … IS NOT NULL]*
//!     TableScan: t (filters the scan applies itself)
//! ```
//!
//! where `<distance>` is the metric of an index on `col` (`COSINE_DISTANCE` or `L2_DISTANCE`
//! ascending, `DOT_PRODUCT` descending, NULLs last or impossible), and has the scan read the
//! index's candidates instead ([`crate::vector_exec::NearestExec`]). The sort stays: it
//! ranks the candidates by their exact distance. Anything else (a join, an aggregate, a
//! filter the scan cannot apply, a transaction's own writes) keeps the exact plan.
//! `EXPLAIN` shows `VectorIndexScan` where the index answers.

use std::sync::Arc;

use datafusion::common::Result as DfResult;
use datafusion::common::ScalarValue;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::datasource::provider_as_source;
use datafusion::datasource::source_as_provider;
use datafusion::logical_expr::{Expr, LogicalPlan, Projection, Sort, TableScan};
use datafusion::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule};
use folddb_materializer::{DataType, VectorMetric};

use crate::provider::{HotTable, Nearest};
use crate::vector::{Metric, metric_of, parse_vector};

/// The largest k an index answers (larger ones are exact searches).
const MAX_K: usize = 10_000;

#[derive(Debug)]
pub struct NearestRule;

impl OptimizerRule for NearestRule {
    fn name(&self) -> &str {
        "folddb_nearest_from_vector_index"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::TopDown)
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> DfResult<Transformed<LogicalPlan>> {
        let LogicalPlan::Sort(sort) = &plan else {
            return Ok(Transformed::no(plan));
        };
        let Some(scan) = nearest_scan(sort) else {
            return Ok(Transformed::no(plan));
        };
        let input = Arc::unwrap_or_clone(sort.input.clone())
            .transform_up(|p| match p {
                LogicalPlan::TableScan(_) => {
                    Ok(Transformed::yes(LogicalPlan::TableScan(scan.clone())))
                }
                other => Ok(Transformed::no(other)),
            })?
            .data;
        Ok(Transformed::yes(LogicalPlan::Sort(Sort {
            expr: sort.expr.clone(),
            input: Arc::new(input),
            fetch: sort.fetch,
        })))
    }
}

/// `e` with the columns `p` outputs replaced by the expressions that make them.
fn through(e: Expr, p: &Projection) -> Expr {
    e.transform(|e| match &e {
        Expr::Column(c) => match p.schema.maybe_index_of_column(c) {
            Some(i) => Ok(Transformed::yes(p.expr[i].clone().unalias())),
            None => Ok(Transformed::no(e)),
        },
        _ => Ok(Transformed::no(e)),
    })
    .map(|t| t.data)
    .unwrap_or_else(|_| Expr::Literal(ScalarValue::Null, None))
}

/// The table scan under `sort`, reading the index's candidates, when the index answers it.
fn nearest_scan(sort: &Sort) -> Option<TableScan> {
    let k = sort.fetch.filter(|k| (1..=MAX_K).contains(k))?;
    let first = sort.expr.first()?;
    let mut target = first.expr.clone();
    let mut filters: Vec<Expr> = Vec::new();
    let mut node = sort.input.as_ref();
    let scan = loop {
        match node {
            LogicalPlan::Projection(p) => {
                target = through(target, p);
                filters = filters.into_iter().map(|f| through(f, p)).collect();
                node = p.input.as_ref();
            }
            LogicalPlan::Filter(f) => {
                filters.push(f.predicate.clone());
                node = f.input.as_ref();
            }
            LogicalPlan::SubqueryAlias(a) => node = a.input.as_ref(),
            LogicalPlan::TableScan(scan) => break scan,
            _ => return None,
        }
    };
    if scan.fetch.is_some() {
        return None;
    }
    // The sort key: a distance function of the column and a vector literal.
    let Expr::ScalarFunction(f) = target.clone().unalias() else {
        return None;
    };
    let metric = metric_of(&f.func)?;
    let (column, text) = match f.args.as_slice() {
        [Expr::Column(c), Expr::Literal(v, _)] | [Expr::Literal(v, _), Expr::Column(c)] => {
            match v {
                ScalarValue::Utf8(Some(s))
                | ScalarValue::LargeUtf8(Some(s))
                | ScalarValue::Utf8View(Some(s)) => (c.name.clone(), s.clone()),
                _ => return None,
            }
        }
        _ => return None,
    };
    // Filters above the scan: only "not NULL" of the column or the distance, which every
    // candidate passes.
    let kept = |e: &Expr| match e {
        Expr::IsNotNull(inner) => {
            inner.as_ref() == &target.clone().unalias()
                || matches!(inner.as_ref(), Expr::Column(c) if c.name == column)
        }
        _ => false,
    };
    if !filters.iter().all(kept) {
        return None;
    }
    let provider = source_as_provider(&scan.source).ok()?;
    let table = provider.downcast_ref::<HotTable>()?;
    if table.nearest().is_some() {
        return None;
    }
    let index = table.vector_index(&column)?;
    let col = table.def().column(&column)?;
    let DataType::Embedding(dims) = col.data_type else {
        return None;
    };
    let direction_ok = match (metric, index.metric) {
        (Metric::Cosine, VectorMetric::Cosine) | (Metric::L2, VectorMetric::L2) => first.asc,
        // The dot product of a NULL vector is NULL: with NULLs first, such rows lead.
        (Metric::Dot, VectorMetric::Dot) => !first.asc && (!first.nulls_first || !col.nullable),
        _ => false,
    };
    // Cosine and L2 distances ascending put NULLs (no vector) last unless asked otherwise.
    if !direction_ok || (first.asc && first.nulls_first) {
        return None;
    }
    let query = parse_vector(&text).ok()?;
    if query.len() != usize::from(dims) {
        return None;
    }
    let nearest = Nearest {
        index,
        column,
        query,
        k,
    };
    Some(TableScan {
        source: provider_as_source(Arc::new(table.with_nearest(nearest))),
        ..scan.clone()
    })
}
