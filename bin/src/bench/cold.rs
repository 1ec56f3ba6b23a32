//! `folddb bench cold --dir DIR`: the cold tier in process, on one machine's disk.
//!
//! 1. Folds `--rows` rows into a fresh hot tier, then times the flush that moves them to
//!    Parquet (rows/s).
//! 2. Runs a query set through the engine (hot + cold merge) and, in the same run, through
//!    DataFusion over a plain Parquet table provider on the same files (projection pushed
//!    down, nothing merged): the median of each query and the ratio.
//! 3. Writes a log of `--entries` one-row INSERT entries and times `log replay` of it into
//!    a fresh data directory (entries/s).

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use async_trait::async_trait;
use clap::Args;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;
use folddb_log::{LogIndex, Term};
use folddb_materializer::cold::ColdStore;
use folddb_materializer::{
    ColumnDef, Command, DataType, EventFold, Fold, HotBatch, HotStore, Op, Propose, ProposeError,
    ProposeFuture, Role, TableDef, TableId, TableKind, Value,
};
use folddb_query::{Caller, Engine};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

#[derive(Debug, Args)]
pub struct ColdBenchArgs {
    /// Scratch directory (created; what the bench writes is removed at the end).
    #[arg(long)]
    dir: std::path::PathBuf,
    /// Rows flushed and queried.
    #[arg(long, default_value_t = 1_000_000)]
    rows: u64,
    /// Runs of each query (the median is reported).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Entries in the replayed log (0: skip the replay scenario).
    #[arg(long, default_value_t = 1_000_000)]
    entries: u64,
}

/// Reads only: a proposal is refused.
pub(super) struct NoWrites;

impl Propose for NoWrites {
    fn propose(&self, _: Command) -> ProposeFuture<'_> {
        Box::pin(async {
            Err(ProposeError::NotAccepted(
                "the cold bench only reads".into(),
            ))
        })
    }
}

const QUERIES: &[(&str, &str)] = &[
    ("count", "SELECT COUNT(*) FROM {t}"),
    ("filter+agg", "SELECT SUM(n), AVG(x) FROM {t} WHERE n > 500"),
    (
        "group by",
        "SELECT n % 10 AS g, COUNT(*), MAX(x) FROM {t} GROUP BY n % 10",
    ),
    (
        "text filter",
        "SELECT id, v FROM {t} WHERE v LIKE 'v12345%'",
    ),
    ("top-k", "SELECT id, x FROM {t} ORDER BY x DESC LIMIT 10"),
];

fn table() -> TableDef {
    shared_table(
        "t",
        1,
        &[
            ("id", DataType::BigInt),
            ("n", DataType::Int),
            ("v", DataType::Text),
            ("x", DataType::Double),
        ],
    )
}

/// SHARED table `bench.<name>` with id `id` and `columns` (ids 1, 2, …): the first is the
/// primary key, the others are nullable.
pub(super) fn shared_table(name: &str, id: u64, columns: &[(&str, DataType)]) -> TableDef {
    let mut def = TableDef::example("bench", name, TableKind::Shared);
    def.id = TableId(id);
    def.columns = columns
        .iter()
        .zip(1u32..)
        .map(|((name, data_type), id)| ColumnDef {
            id,
            name: (*name).into(),
            data_type: *data_type,
            nullable: id != 1,
            unique: false,
            default: None,
        })
        .collect();
    def.primary_key = Some(1);
    def.next_column_id = columns.len() as u32 + 1;
    def
}

pub(super) fn fold_one(
    store: &HotStore,
    fold: &EventFold,
    index: u64,
    ops: Vec<Op>,
) -> anyhow::Result<()> {
    let cmd = Command {
        stamp_ms: folddb_query::engine::now_ms(),
        actor: "bench".into(),
        ops,
    };
    let mut batch = HotBatch::default();
    let out = fold.fold(
        store,
        LogIndex(index),
        &folddb_materializer::event::encode_entry(&[cmd]),
        &mut batch,
    )?;
    let outcomes = folddb_materializer::event::decode_outcomes(&out)?;
    if let Some(folddb_materializer::Outcome::Rejected { error, .. }) = outcomes.first() {
        anyhow::bail!("entry {index} was rejected: {error}");
    }
    store.apply(LogIndex(index), Term(1), batch)?;
    Ok(())
}

/// What [`flush_as_server`] took: the job writing its segments, the commit entry's apply,
/// and the trim entries' applies.
pub(super) struct FlushTimes {
    pub written: std::time::Duration,
    pub committed: std::time::Duration,
    pub trimmed: std::time::Duration,
    pub trims: usize,
}

/// Flushes table `id` as the server runs it: the job writes the segments from a snapshot,
/// its commit entry is folded, then one trim entry per [`TRIM_KEYS`] hot keys moves the
/// flushed versions out of the hot tier. `index` is the last folded entry, and is advanced.
///
/// [`TRIM_KEYS`]: folddb_materializer::cold::job::TRIM_KEYS
pub(super) fn flush_as_server(
    store: &HotStore,
    cold: &folddb_materializer::cold::ColdStore,
    fold: &EventFold,
    index: &mut u64,
    id: TableId,
    job: &str,
) -> anyhow::Result<FlushTimes> {
    use folddb_materializer::cold::job;
    let started = Instant::now();
    let commit = job::prepare_flush(store, cold, id, job).map_err(anyhow::Error::msg)?;
    let written = started.elapsed();
    *index += 1;
    fold_one(store, fold, *index, vec![commit])?;
    let committed = started.elapsed() - written;
    let trimming = Instant::now();
    let trims = job::trims(store, id, job::TRIM_KEYS).map_err(anyhow::Error::msg)?;
    let count = trims.len();
    for trim in trims {
        *index += 1;
        fold_one(store, fold, *index, vec![trim])?;
    }
    Ok(FlushTimes {
        written,
        committed,
        trimmed: trimming.elapsed(),
        trims: count,
    })
}

fn row(i: u64) -> Vec<(u32, Value)> {
    vec![
        (1, Value::BigInt(i as i64)),
        (2, Value::Int((i * 7919 % 1000) as i32)),
        (3, Value::Text(format!("v{i}"))),
        (4, Value::Double((i % 9973) as f64 / 3.0)),
    ]
}

/// A table over Parquet files read with the parquet crate: the requested columns, no merge.
#[derive(Debug)]
pub(super) struct PlainParquet {
    pub(super) files: Vec<std::path::PathBuf>,
    pub(super) schema: SchemaRef,
}

#[async_trait]
impl TableProvider for PlainParquet {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
    fn table_type(&self) -> TableType {
        TableType::Base
    }
    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let all: Vec<usize> = (0..self.schema.fields().len()).collect();
        let projection = projection.unwrap_or(&all);
        let mut batches: Vec<RecordBatch> = Vec::new();
        for f in &self.files {
            let file = std::fs::File::open(f)?;
            let pq = |e: parquet::errors::ParquetError| {
                datafusion::error::DataFusionError::External(Box::new(e))
            };
            let builder = ParquetRecordBatchReaderBuilder::try_new(file)
                .map_err(pq)?
                .with_batch_size(64 * 1024);
            let mask = ProjectionMask::roots(builder.parquet_schema(), projection.iter().copied());
            for b in builder.with_projection(mask).build().map_err(pq)? {
                batches.push(b?);
            }
        }
        let schema = Arc::new(self.schema.project(projection)?);
        Ok(MemorySourceConfig::try_new_exec(&[batches], schema, None)?)
    }
}

/// A fresh node state under `root`: namespace `bench` and `tables`, folded at indexes 1, 2,
/// …; returns the state, its cold tier, the fold, and the last index folded.
pub(super) fn open_bench(
    root: &Path,
    tables: Vec<TableDef>,
) -> anyhow::Result<(Arc<HotStore>, Arc<ColdStore>, EventFold, u64)> {
    let store = Arc::new(HotStore::open_data_dir(root)?);
    let cold = Arc::new(ColdStore::new(root.join("storage")));
    let fold = EventFold::new(cold.clone());
    let mut index = 1;
    fold_one(
        &store,
        &fold,
        index,
        vec![Op::CreateNamespace {
            name: "bench".into(),
            description: None,
            if_not_exists: false,
        }],
    )?;
    for table in tables {
        index += 1;
        fold_one(
            &store,
            &fold,
            index,
            vec![Op::CreateTable {
                table,
                if_not_exists: false,
            }],
        )?;
    }
    Ok((store, cold, fold, index))
}

/// Runs `bench` on a runtime of its own, in a scratch directory `dir/<name>-<pid>` removed
/// afterwards.
pub(super) fn in_scratch<F: std::future::Future<Output = anyhow::Result<ExitCode>>>(
    dir: &Path,
    name: &str,
    bench: impl FnOnce(std::path::PathBuf) -> F,
) -> anyhow::Result<ExitCode> {
    let root = dir.join(format!("{name}-{}", std::process::id()));
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(bench(root.clone()));
    let _ = std::fs::remove_dir_all(&root);
    result
}

/// `ours` through the engine and `theirs` through plain DataFusion, `runs` times each,
/// interleaved: the median of each. Both must answer the same number of rows.
pub(super) async fn compare(
    engine: &Engine,
    caller: &Caller,
    direct: &SessionContext,
    (ours, theirs): (&str, &str),
    runs: usize,
) -> anyhow::Result<(Duration, Duration)> {
    let (mut a_times, mut b_times) = (Vec::new(), Vec::new());
    let (mut a, mut b) = (0usize, 0usize);
    for _ in 0..runs {
        let t = Instant::now();
        let batches = engine
            .read_as(caller, ours)
            .await
            .map_err(|e| anyhow::anyhow!("{}", e.message))?;
        a_times.push(t.elapsed());
        a = batches.iter().map(RecordBatch::num_rows).sum();
        let t = Instant::now();
        let batches = direct.sql(theirs).await?.collect().await?;
        b_times.push(t.elapsed());
        b = batches.iter().map(RecordBatch::num_rows).sum();
    }
    anyhow::ensure!(a == b, "{ours}: {a} rows against {b}");
    Ok((median(a_times), median(b_times)))
}

pub(super) fn median(mut v: Vec<Duration>) -> Duration {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

pub fn run(args: ColdBenchArgs) -> anyhow::Result<ExitCode> {
    let dir = args.dir.clone();
    in_scratch(&dir, "cold-bench", |root| async move {
        bench(&root, &args).await
    })
}

async fn bench(root: &Path, args: &ColdBenchArgs) -> anyhow::Result<ExitCode> {
    println!(
        "machine: {} cores; {} rows, {} runs per query",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        args.rows,
        args.runs
    );
    let (store, cold, fold, mut index) = open_bench(root, vec![table()])?;
    let started = Instant::now();
    let mut next = 0u64;
    while next < args.rows {
        let end = (next + 10_000).min(args.rows);
        index += 1;
        fold_one(
            &store,
            &fold,
            index,
            vec![Op::Insert {
                table: TableId(1),
                schema_version: 1,
                scope: String::new(),
                rows: (next..end).map(row).collect(),
            }],
        )?;
        next = end;
    }
    println!(
        "load: {} rows into the hot tier in {:.2} s",
        args.rows,
        started.elapsed().as_secs_f64()
    );
    // A flush as the server runs it: the job writes the segments from a snapshot, its
    // commit entry is folded, then its trim entries.
    let times = flush_as_server(&store, &cold, &fold, &mut index, TableId(1), "FL-bench")?;
    let took = times.written + times.committed + times.trimmed;
    println!(
        "flush job wrote its segments in {:.2} s; its commit applied in {:.3} s; its {} trims in {:.2} s",
        times.written.as_secs_f64(),
        times.committed.as_secs_f64(),
        times.trims,
        times.trimmed.as_secs_f64()
    );
    let compacted = Instant::now();
    store.compact_prefix(
        folddb_materializer::Family::Rows,
        &folddb_materializer::row::table_prefix(TableId(1)),
    );
    println!(
        "hot tier compacted after the flush in {:.2} s",
        compacted.elapsed().as_secs_f64()
    );
    println!(
        "flush: {} rows in {:.2} s = {:.0} rows/s",
        args.rows,
        took.as_secs_f64(),
        args.rows as f64 / took.as_secs_f64()
    );

    let engine = Engine::new(store.clone(), Arc::new(NoWrites), 1).with_cold(cold.clone(), fold);
    let caller = Caller {
        user: "bench".into(),
        role: Role::System,
    };
    let dir = root.join("storage/bench/t");
    let files: Vec<std::path::PathBuf> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    let direct = SessionContext::new();
    direct.register_table(
        "t",
        Arc::new(PlainParquet {
            files,
            schema: folddb_query::provider::table_schema(&table()),
        }),
    )?;
    println!(
        "{:<12} {:>12} {:>12} {:>7}",
        "query", "folddb ms", "direct ms", "ratio"
    );
    let mut ratios = Vec::new();
    for (name, q) in QUERIES {
        let (o, d) = compare(
            &engine,
            &caller,
            &direct,
            (&q.replace("{t}", "bench.t"), &q.replace("{t}", "t")),
            args.runs,
        )
        .await?;
        let ratio = o.as_secs_f64() / d.as_secs_f64().max(1e-9);
        ratios.push(ratio);
        println!(
            "{name:<12} {:>12.2} {:>12.2} {ratio:>7.2}",
            o.as_secs_f64() * 1e3,
            d.as_secs_f64() * 1e3
        );
    }
    let worst = ratios.iter().copied().fold(0.0, f64::max);
    println!("worst ratio: {worst:.2} (target <= 1.3)");
    drop(engine);
    drop(store);

    if args.entries > 0 {
        replay_bench(root, args.entries)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes a log of `entries` one-row INSERT entries (after the two that create the table)
/// and replays it into a fresh directory.
fn replay_bench(root: &Path, entries: u64) -> anyhow::Result<()> {
    use folddb_cluster::codec;
    let log_dir = root.join("replay-src/log");
    let log = folddb_log::Log::open(&log_dir, folddb_log::LogConfig::default())?;
    let cmd = |ops: Vec<Op>| {
        let c = Command {
            stamp_ms: folddb_query::engine::now_ms(),
            actor: "bench".into(),
            ops,
        };
        codec::encode_command(folddb_materializer::event::encode_entry(&[c]))
    };
    let head = [
        cmd(vec![Op::CreateNamespace {
            name: "bench".into(),
            description: None,
            if_not_exists: false,
        }]),
        cmd(vec![Op::CreateTable {
            table: table(),
            if_not_exists: false,
        }]),
    ];
    // Raft's log starts at index 0 (a node's first entry is openraft's own): replay refuses
    // a log without it as one whose head is missing.
    log.append(&[folddb_log::Entry {
        index: folddb_log::LogIndex(0),
        term: Term(0),
        payload: codec::encode_blank(),
    }])?;
    log.append_next(Term(1), &[&head[0], &head[1]])?;
    let started = Instant::now();
    let mut i = 0u64;
    while i < entries {
        let chunk: Vec<Vec<u8>> = (i..(i + 4096).min(entries))
            .map(|k| {
                cmd(vec![Op::Insert {
                    table: TableId(1),
                    schema_version: 1,
                    scope: String::new(),
                    rows: vec![row(k)],
                }])
            })
            .collect();
        let refs: Vec<&[u8]> = chunk.iter().map(Vec::as_slice).collect();
        log.append_next(Term(1), &refs)?;
        i += chunk.len() as u64;
    }
    drop(log);
    println!(
        "replay: wrote a log of {} entries in {:.1} s",
        entries + 3,
        started.elapsed().as_secs_f64()
    );
    let into = root.join("replay-dst");
    let store = HotStore::open_data_dir(&into)?;
    let fold = EventFold::new(Arc::new(ColdStore::new(into.join("storage"))));
    let started = Instant::now();
    let applied = folddb_cluster::replay::replay(&log_dir, None, &store, &fold, |_, _| {})?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "replay: {applied} entries in {secs:.2} s = {:.0} entries/s",
        applied as f64 / secs.max(1e-9)
    );
    Ok(())
}
