//! [`NearestExec`]: the read of "the k rows nearest to a vector" from the column's vector
//! index ([`crate::vector_plan`] puts it in place of a table scan). It asks the index for
//! candidates, reads their rows by primary key (hot, else cold), applies the query's
//! filters, and hands on the rows that pass; the sort above it ranks them by their exact
//! distance. While fewer than k pass, it asks for four times as many; once it has asked for
//! every vector the index holds, it reads the table scope as an exact search would (rows
//! with no vector, or one the index cannot rank, are then still found).

use std::fmt;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DataFusionError, Result as DfResult, Statistics};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{
    Boundedness, ChildrenPropertiesMode, EmissionType, ReplaceChildrenOptions,
};
use datafusion::physical_plan::statistics::StatisticsArgs;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
    SendableRecordBatchStream,
};
use futures::{StreamExt, TryStreamExt};

use folddb_materializer::vector_index::Target;

use crate::provider::{HotTable, Nearest};
use crate::scan_exec::RowFilter;

/// Candidates asked for first: a few times k, so that the exact ranking above sees the
/// true nearest rows the approximate search may order a little wrong.
fn first_ask(k: usize, filtered: bool) -> usize {
    if filtered {
        k.saturating_mul(10).max(100)
    } else {
        k.saturating_mul(2).max(40)
    }
}

#[derive(Debug)]
pub struct NearestExec {
    table: HotTable,
    nearest: Nearest,
    filters: Vec<Expr>,
    projection: Vec<usize>,
    filter: Option<RowFilter>,
    properties: Arc<PlanProperties>,
}

impl NearestExec {
    pub fn new(
        table: HotTable,
        nearest: Nearest,
        filters: Vec<Expr>,
        projection: Vec<usize>,
        filter: Option<RowFilter>,
        schema: SchemaRef,
    ) -> NearestExec {
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Final,
            Boundedness::Bounded,
        );
        NearestExec {
            table,
            nearest,
            filters,
            projection,
            filter,
            properties: Arc::new(properties),
        }
    }
}

/// The candidates' rows that pass `filter` (in the query's columns), at least `k` of them;
/// `None` when the index ran out first (an exact search answers instead).
fn candidates(
    table: &HotTable,
    nearest: &Nearest,
    projection: &[usize],
    filter: Option<&RowFilter>,
) -> DfResult<Option<arrow::array::RecordBatch>> {
    let Some(vectors) = table.view.vectors() else {
        return Ok(None);
    };
    let store = table.view.store();
    let cold = table.cold();
    let mut ask = first_ask(nearest.k, filter.is_some());
    loop {
        let found = vectors
            .search(
                store,
                cold,
                Target {
                    def: table.def(),
                    index: &nearest.index,
                    scope: table.scope(),
                },
                &nearest.query,
                ask,
            )
            .map_err(|e| DataFusionError::Execution(e.to_string()))?;
        // The index is being built or caught up (in the background): an exact search.
        let Some(hits) = found else {
            metrics::counter!("folddb_vector_index_searches_total", "answer" => "exact")
                .increment(1);
            return Ok(None);
        };
        let pks: Vec<_> = hits.hits.iter().map(|(pk, _)| pk.clone()).collect();
        let rows: Vec<_> = table
            .versions_of(&pks)?
            .into_iter()
            .flatten()
            .filter(|v| table.shows(v, false))
            .collect();
        let batch = table.batch(&rows)?;
        let batch = match filter {
            Some(f) => f.apply(&batch.project(&f.read)?)?,
            None => batch.project(projection)?,
        };
        if batch.num_rows() >= nearest.k {
            metrics::counter!("folddb_vector_index_searches_total", "answer" => "index")
                .increment(1);
            return Ok(Some(batch));
        }
        if ask >= hits.indexed {
            metrics::counter!("folddb_vector_index_searches_total", "answer" => "exact")
                .increment(1);
            return Ok(None);
        }
        ask = ask.saturating_mul(4).min(hits.indexed);
    }
}

impl DisplayAs for NearestExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "VectorIndexScan: table={}, column={}, metric={}, k={}, projection={:?}",
            self.table.def().qualified_name(),
            self.nearest.column,
            self.nearest.index.metric.name(),
            self.nearest.k,
            self.projection,
        )?;
        if let Some(filter) = &self.filter {
            write!(f, ", filter={}", filter.predicate)?;
        }
        Ok(())
    }
}

impl ExecutionPlan for NearestExec {
    fn name(&self) -> &str {
        "VectorIndexScan"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        _: Vec<Arc<dyn ExecutionPlan>>,
        _: ReplaceChildrenOptions,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        self.replace_children(
            children,
            ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
        )
    }

    fn statistics_from_inputs(
        &self,
        _input_stats: &[Arc<Statistics>],
        _args: &StatisticsArgs,
    ) -> DfResult<Arc<Statistics>> {
        Ok(Arc::new(Statistics::new_unknown(&self.schema())))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        if partition != 0 {
            return Err(DataFusionError::Internal(format!(
                "VectorIndexScan has one partition, not {partition}"
            )));
        }
        let (table, nearest) = (self.table.clone(), self.nearest.clone());
        let (filters, projection) = (self.filters.clone(), self.projection.clone());
        let filter = self.filter.clone();
        let answer = async move {
            let found = {
                let (table, projection, filter) =
                    (table.clone(), projection.clone(), filter.clone());
                // The first search of a scope builds its index: a scan, off the async threads.
                tokio::task::spawn_blocking(move || {
                    candidates(&table, &nearest, &projection, filter.as_ref())
                })
                .await
                .map_err(|e| DataFusionError::Execution(format!("vector search: {e}")))??
            };
            let stream: SendableRecordBatchStream = match found {
                Some(batch) => Box::pin(RecordBatchStreamAdapter::new(
                    batch.schema(),
                    futures::stream::iter([Ok(batch)]),
                )),
                None => table
                    .plan(&filters, None, &projection, 1, filter)?
                    .execute(0, context)?,
            };
            Ok::<_, DataFusionError>(stream)
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema(),
            futures::stream::once(answer).try_flatten().boxed(),
        )))
    }
}
