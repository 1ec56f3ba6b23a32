//! [`ScanExec`]: DataFusion's plan node for reading one table scope. Its rows come from
//! [`folddb_materializer::scan::scan_scope_parts`] (hot rows through a RocksDB snapshot
//! merged with the cold segments, in key order) on blocking threads, a batch at a time,
//! through a channel of two batches per partition: a query that stops early (`LIMIT`) stops
//! the scan, and a slow reader holds at most those batches in memory. A scan without a
//! `LIMIT` has one partition per core, each a range of the scope's keys, all read through
//! one snapshot. RocksDB and file reads never run on the server's async threads.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use arrow::array::{AsArray, BooleanArray, RecordBatch, RecordBatchOptions};
use arrow::compute::BatchCoalescer;
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

/// The query's filters a scan applies to each row itself (all it can evaluate), so that a
/// `LIMIT` reaches it and the rows it drops never leave its threads.
#[derive(Debug, Clone)]
pub struct RowFilter {
    /// The conjunction of the filters, on the columns `read`.
    pub predicate: Arc<dyn PhysicalExpr>,
    /// The table's columns the scan reads: the query's projection, then the other columns
    /// the filters read.
    pub read: Vec<usize>,
    /// How many of `read` the query asked for (the first ones).
    pub width: usize,
}

impl RowFilter {
    /// Which rows of `batch` (columns `read`) the filters keep.
    fn mask(&self, batch: &RecordBatch) -> DfResult<BooleanArray> {
        let value = self.predicate.evaluate(batch)?;
        let array = value.into_array(batch.num_rows())?;
        array
            .as_boolean_opt()
            .cloned()
            .ok_or_else(|| DataFusionError::Internal("a filter that is not boolean".into()))
    }

    /// The rows of `batch` (columns `read`) the filters keep, in the query's columns.
    pub fn apply(&self, batch: &RecordBatch) -> DfResult<RecordBatch> {
        let mask = self.mask(batch)?;
        let kept = arrow::compute::filter_record_batch(batch, &mask)?;
        Ok(kept.project(&(0..self.width).collect::<Vec<_>>())?)
    }
}

/// What one partition's scan hands its reader: every batch, or with a filter, the rows it
/// keeps gathered into batches of [`FILTERED_BATCH_ROWS`], up to the query's `LIMIT`.
struct PartOut<'a> {
    tx: &'a tokio::sync::mpsc::Sender<DfResult<RecordBatch>>,
    filter: Option<&'a RowFilter>,
    /// Rows the query still takes.
    remaining: Option<usize>,
    gather: Option<BatchCoalescer>,
}

/// Hands `batch` on (an empty one is not): false when its reader is gone.
fn send(tx: &tokio::sync::mpsc::Sender<DfResult<RecordBatch>>, batch: RecordBatch) -> bool {
    batch.num_rows() == 0 || tx.blocking_send(Ok(batch)).is_ok()
}

/// Rows a filtered scan gathers before handing them on.
const FILTERED_BATCH_ROWS: usize = 8 * 1024;

impl PartOut<'_> {
    /// Hands on what the query keeps of `batch`; false when the query wants no more.
    fn push(&mut self, batch: RecordBatch) -> bool {
        match self.filtered(batch) {
            Ok(more) => more,
            Err(e) => {
                self.gather = None;
                let _ = self.tx.blocking_send(Err(e));
                false
            }
        }
    }

    fn filtered(&mut self, batch: RecordBatch) -> DfResult<bool> {
        let Some(filter) = self.filter else {
            let batch = match self.remaining {
                Some(n) if batch.num_rows() > n => batch.slice(0, n),
                _ => batch,
            };
            let rows = batch.num_rows();
            return Ok(send(self.tx, batch) && self.take(rows));
        };
        let mut mask = filter.mask(&batch)?;
        let mut kept = mask.true_count();
        if let Some(n) = self.remaining
            && kept > n
        {
            // The first n rows kept.
            let mut seen = 0;
            let cut: BooleanArray = mask
                .iter()
                .map(|m| {
                    let keep = m == Some(true) && seen < n;
                    seen += usize::from(keep);
                    Some(keep)
                })
                .collect();
            mask = cut;
            kept = n;
        }
        let columns = (0..filter.width).collect::<Vec<_>>();
        let batch = batch.project(&columns)?;
        match &mut self.gather {
            Some(gather) => {
                gather.push_batch_with_filter(batch, &mask)?;
                while let Some(b) = gather.next_completed_batch() {
                    if !send(self.tx, b) {
                        return Ok(false);
                    }
                }
            }
            // No columns to gather: only how many rows.
            None if kept > 0 => {
                let options = RecordBatchOptions::new().with_row_count(Some(kept));
                let b = RecordBatch::try_new_with_options(batch.schema(), vec![], &options)?;
                if !send(self.tx, b) {
                    return Ok(false);
                }
            }
            None => {}
        }
        if !self.take(kept) {
            self.finish();
            return Ok(false);
        }
        Ok(true)
    }

    /// Counts `n` rows against the limit: false once it is reached.
    fn take(&mut self, n: usize) -> bool {
        match &mut self.remaining {
            Some(r) => {
                *r = r.saturating_sub(n);
                *r > 0
            }
            None => true,
        }
    }

    /// Hands on the rows still gathered.
    fn finish(&mut self) {
        let Some(mut gather) = self.gather.take() else {
            return;
        };
        match gather.finish_buffered_batch() {
            Ok(()) => {
                while let Some(b) = gather.next_completed_batch() {
                    if !send(self.tx, b) {
                        return;
                    }
                }
            }
            Err(e) => {
                let _ = self.tx.blocking_send(Err(e.into()));
            }
        }
    }
}

/// Reads one table scope as streams of batches: one partition per range of its keys, each in
/// primary-key order.
#[derive(Debug)]
pub struct ScanExec {
    request: Arc<ScanRequest>,
    properties: Arc<PlanProperties>,
    partitions: usize,
    /// The partitions' batches of a scan started and not yet taken by their `execute`.
    started: Mutex<Vec<Option<Batches>>>,
    filter: Option<Arc<RowFilter>>,
    /// The query's `LIMIT`, applied after `filter`.
    fetch: Option<usize>,
}

impl ScanExec {
    /// `schema` is the table's schema projected to the query's columns: `request.projection`
    /// or, with a `filter`, its first `width`; `partitions`, how many ranges of keys to read
    /// at once (one with a `LIMIT` or a transaction's writes); `fetch`, the query's `LIMIT`.
    pub fn new(
        request: ScanRequest,
        schema: SchemaRef,
        partitions: usize,
        filter: Option<RowFilter>,
        fetch: Option<usize>,
    ) -> ScanExec {
        let partitions = if request.limit.is_some() || fetch.is_some() || request.overlay.is_some()
        {
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
            filter: filter.map(Arc::new),
            fetch,
        }
    }

    /// Starts the scan of every partition on a blocking thread (which reads the key ranges
    /// on threads of its own), each partition's batches into its channel.
    fn start(&self) -> Vec<Option<Batches>> {
        let (senders, receivers): (Vec<_>, Vec<_>) = (0..self.partitions)
            .map(|_| tokio::sync::mpsc::channel(AHEAD))
            .unzip();
        let r = self.request.clone();
        let filter = self.filter.clone();
        let (fetch, schema) = (self.fetch, self.schema());
        tokio::task::spawn_blocking(move || {
            let may_match = |meta: &folddb_materializer::cold::SegmentMeta| {
                crate::pruning::may_match_all(&r.def, meta, &r.filters)
            };
            let spec = r.spec(&may_match);
            let mut outs: Vec<PartOut<'_>> = senders
                .iter()
                .map(|tx| PartOut {
                    tx,
                    filter: filter.as_deref(),
                    remaining: fetch,
                    gather: (filter.is_some() && !schema.fields().is_empty())
                        .then(|| BatchCoalescer::new(schema.clone(), FILTERED_BATCH_ROWS)),
                })
                .collect();
            let mut sinks: Vec<Box<dyn FnMut(RecordBatch) -> bool + Send + '_>> = outs
                .iter_mut()
                .map(|out| {
                    Box::new(move |b: RecordBatch| out.push(b))
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
            for out in &mut outs {
                out.finish();
            }
            drop(outs);
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
            "ScanExec: table={}, projection={:?}",
            self.request.def.qualified_name(),
            self.request.projection,
        )?;
        if let Some(filter) = &self.filter {
            write!(f, ", filter={}", filter.predicate)?;
        }
        write!(f, ", limit={:?}", self.fetch)
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
            let limit = self.fetch.or(self.request.limit);
            stats.num_rows = Precision::Exact(limit.map_or(rows, |l| rows.min(l)));
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
