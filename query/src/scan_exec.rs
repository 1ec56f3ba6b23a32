//! [`ScanExec`]: DataFusion's plan node for reading one table scope. Its rows come from
//! [`folddb_materializer::scan::scan_scope`] (hot rows through a RocksDB snapshot merged
//! with the cold segments, in key order) on a blocking thread, a batch at a time, through a
//! channel of two batches: a query that stops early (`LIMIT`) stops the scan, and a slow
//! reader holds at most those batches in memory. RocksDB and file reads never run on the
//! server's async threads.

use std::fmt;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use datafusion::common::stats::Precision;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DataFusionError, Result as DfResult, Statistics};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{
    Boundedness, ChildrenPropertiesMode, EmissionType, ReplaceChildrenOptions,
};
use datafusion::physical_plan::statistics::StatisticsArgs;
use datafusion::physical_plan::stream::RecordBatchReceiverStreamBuilder;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
    SendableRecordBatchStream,
};
use folddb_materializer::cold::ColdStore;
use folddb_materializer::scan::{KeyRange, ScanSpec, scan_scope};
use folddb_materializer::{HotBatch, HotStore, TableDef};

/// Batches the scan may produce ahead of its reader.
const AHEAD: usize = 2;

/// What one scan of a table scope reads.
#[derive(Debug, Clone)]
pub struct ScanRequest {
    pub store: Arc<HotStore>,
    pub overlay: Option<Arc<HotBatch>>,
    pub cold: Option<Arc<ColdStore>>,
    pub def: TableDef,
    pub scope: String,
    pub projection: Vec<usize>,
    pub show_deleted: bool,
    pub min_seq: Option<i64>,
    /// The filters keep no version with a `_seq` below this (see [`ScanSpec::seq_floor`]).
    pub seq_floor: Option<i64>,
    pub limit: Option<usize>,
    /// The query's filters: segments whose statistics rule them out are not read.
    pub filters: Vec<Expr>,
    /// The primary keys the filters can keep.
    pub keys: KeyRange,
    /// How many rows the scan gives, when known exactly as the plan is made (the table's
    /// count of visible rows): DataFusion answers `COUNT(*)` from it.
    pub rows: Option<u64>,
}

/// Reads one table scope as a stream of batches (one partition, in primary-key order).
#[derive(Debug)]
pub struct ScanExec {
    request: Arc<ScanRequest>,
    properties: Arc<PlanProperties>,
}

impl ScanExec {
    /// `schema` is the table's schema projected to `request.projection`.
    pub fn new(request: ScanRequest, schema: SchemaRef) -> ScanExec {
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        ScanExec {
            request: Arc::new(request),
            properties: Arc::new(properties),
        }
    }
}

impl DisplayAs for ScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "ScanExec: table={}, projection={:?}, limit={:?}",
            self.request.def.qualified_name(),
            self.request.projection,
            self.request.limit
        )
    }
}

impl ExecutionPlan for ScanExec {
    fn name(&self) -> &str {
        "ScanExec"
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
        let mut stats = Statistics::new_unknown(&self.schema());
        if let Some(rows) = self.request.rows {
            let rows = usize::try_from(rows).unwrap_or(usize::MAX);
            stats.num_rows = Precision::Exact(self.request.limit.map_or(rows, |l| rows.min(l)));
        }
        Ok(Arc::new(stats))
    }

    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        if partition != 0 {
            return Err(DataFusionError::Internal(format!(
                "ScanExec has one partition, not {partition}"
            )));
        }
        let mut builder = RecordBatchReceiverStreamBuilder::new(self.schema(), AHEAD);
        let tx = builder.tx();
        let r = self.request.clone();
        builder.spawn_blocking(move || {
            let may_match = |meta: &folddb_materializer::cold::SegmentMeta| {
                crate::pruning::may_match_all(&r.def, meta, &r.filters)
            };
            let spec = ScanSpec {
                def: &r.def,
                projection: &r.projection,
                show_deleted: r.show_deleted,
                min_seq: r.min_seq,
                seq_floor: r.seq_floor,
                limit: r.limit,
                may_match: &may_match,
                keys: &r.keys,
            };
            let done = scan_scope(
                &r.store,
                r.overlay.as_deref(),
                r.cold.as_deref(),
                &r.scope,
                &spec,
                &mut |batch| tx.blocking_send(Ok(batch)).is_ok(),
            );
            // The reader sees the failure as the stream's error.
            done.map_err(|e| DataFusionError::Execution(e.to_string()))
        });
        Ok(builder.build())
    }
}
