//! [`ScanExec`]: DataFusion's plan node for reading one table scope. Its rows come from
//! [`folddb_materializer::scan::scan_scope_parts`] (hot rows through a RocksDB snapshot
//! merged with the cold segments, in key order) on blocking threads, a batch at a time,
//! through a channel of two batches per partition: a query that stops early (`LIMIT`) stops
//! the scan, and a slow reader holds at most those batches in memory. A scan without a
//! `LIMIT` has one partition per core, each a range of the scope's keys, all read through
//! one snapshot. RocksDB and file reads never run on the server's async threads.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use arrow::array::RecordBatch;
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
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
    SendableRecordBatchStream,
};
use folddb_materializer::cold::ColdStore;
use folddb_materializer::scan::{KeyRange, PartSink, ScanSpec, scan_scope_parts};
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

type Batches = tokio::sync::mpsc::Receiver<DfResult<RecordBatch>>;

/// Reads one table scope as streams of batches: one partition per range of its keys, each in
/// primary-key order.
#[derive(Debug)]
pub struct ScanExec {
    request: Arc<ScanRequest>,
    properties: Arc<PlanProperties>,
    partitions: usize,
    /// The partitions' batches of a scan started and not yet taken by their `execute`.
    started: Mutex<Vec<Option<Batches>>>,
}

impl ScanExec {
    /// `schema` is the table's schema projected to `request.projection`; `partitions`, how
    /// many ranges of keys to read at once (one with a `LIMIT` or a transaction's writes).
    pub fn new(request: ScanRequest, schema: SchemaRef, partitions: usize) -> ScanExec {
        let partitions = if request.limit.is_some() || request.overlay.is_some() {
            1
        } else {
            partitions.max(1)
        };
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema),
            Partitioning::UnknownPartitioning(partitions),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        ScanExec {
            request: Arc::new(request),
            properties: Arc::new(properties),
            partitions,
            started: Mutex::new(Vec::new()),
        }
    }

    /// Starts the scan of every partition on a blocking thread (which reads the key ranges
    /// on threads of its own), each partition's batches into its channel.
    fn start(&self) -> Vec<Option<Batches>> {
        let (senders, receivers): (Vec<_>, Vec<_>) = (0..self.partitions)
            .map(|_| tokio::sync::mpsc::channel(AHEAD))
            .unzip();
        let r = self.request.clone();
        tokio::task::spawn_blocking(move || {
            let may_match = |meta: &folddb_materializer::cold::SegmentMeta| {
                crate::pruning::may_match_all(&r.def, meta, &r.filters)
            };
            let spec = r.spec(&may_match);
            let mut sinks: Vec<Box<dyn FnMut(RecordBatch) -> bool + Send + '_>> = senders
                .iter()
                .map(|tx| {
                    Box::new(move |b: RecordBatch| tx.blocking_send(Ok(b)).is_ok())
                        as Box<dyn FnMut(RecordBatch) -> bool + Send + '_>
                })
                .collect();
            let mut refs: Vec<PartSink<'_>> =
                sinks.iter_mut().map(|s| &mut **s as PartSink<'_>).collect();
            // A panic is this scan's failure, not a stream that ends early as if complete.
            let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                scan_scope_parts(
                    &r.store,
                    r.overlay.as_deref(),
                    r.cold.as_deref(),
                    &r.scope,
                    &spec,
                    &mut refs,
                )
                .map_err(|e| e.to_string())
            }))
            .unwrap_or_else(|_| Err("the scan failed unexpectedly".to_owned()));
            drop(refs);
            drop(sinks);
            // Each reader sees the failure as its stream's error.
            if let Err(e) = done {
                for tx in &senders {
                    let _ = tx.blocking_send(Err(DataFusionError::Execution(e.clone())));
                }
            }
        });
        receivers.into_iter().map(Some).collect()
    }
}

impl ScanRequest {
    fn spec<'a>(
        &'a self,
        may_match: &'a (dyn Fn(&folddb_materializer::cold::SegmentMeta) -> bool + Sync),
    ) -> ScanSpec<'a> {
        ScanSpec {
            def: &self.def,
            projection: &self.projection,
            show_deleted: self.show_deleted,
            min_seq: self.min_seq,
            seq_floor: self.seq_floor,
            limit: self.limit,
            may_match,
            keys: &self.keys,
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
        if partition >= self.partitions {
            return Err(DataFusionError::Internal(format!(
                "ScanExec has {} partitions, not {partition}",
                self.partitions
            )));
        }
        let batches = {
            // The list holds no invariant a panicking reader could break.
            let mut started = self.started.lock().unwrap_or_else(PoisonError::into_inner);
            // A new execution once every partition of the last one was taken.
            if started.iter().all(Option::is_none) {
                *started = self.start();
            }
            started[partition].take()
        };
        let Some(batches) = batches else {
            return Err(DataFusionError::Internal(format!(
                "ScanExec partition {partition} executed twice"
            )));
        };
        let stream =
            futures::stream::unfold(
                batches,
                |mut rx| async move { rx.recv().await.map(|b| (b, rx)) },
            );
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema(),
            stream,
        )))
    }
}
