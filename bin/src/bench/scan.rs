//! `folddb bench scan --dir DIR`: table scans in process, on one machine.
//!
//! Table `bench.t` (id, g int, v double, t text of ~30 bytes) gets `--rows` rows: the first
//! half is flushed to Parquet, the second half stays hot. Table `bench.h` gets the same rows,
//! all hot (no flush). Each query runs through the engine and, in the same run, through
//! DataFusion over a plain Parquet table provider on one file holding the same rows
//! (compressed as DataFusion writes Parquet, zstd(3), unless `--direct-compression` says): the
//! median of each, and the ratio. Each query runs with the scan cache, then after a write
//! to its table before each run (the cache follows writes), then with the cache emptied
//! before each run (a first scan fills it), then without the cache.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use datafusion::prelude::SessionContext;
use folddb_materializer::{
    DataType, EventFold, HotStore, Op, Role, RowVersion, TableDef, TableId, Value,
};
use folddb_query::{Caller, Engine};

use super::cold::{
    NoWrites, PlainParquet, compare, fold_one, in_scratch, open_bench, shared_table,
};

#[derive(Debug, Args)]
pub struct ScanBenchArgs {
    /// Scratch directory (created; what the bench writes is removed at the end).
    #[arg(long)]
    dir: std::path::PathBuf,
    /// Rows of each table.
    #[arg(long, default_value_t = 1_000_000)]
    rows: u64,
    /// Runs of each query (the median is reported).
    #[arg(long, default_value_t = 7)]
    runs: usize,
    /// Only the queries whose name (e.g. "bench.t limit") contains this.
    #[arg(long)]
    only: Option<String>,
    /// Which runs: `cached` (the scan cache filled by a first run), `written` (a write to
    /// the table before each run), `first` (the cache emptied before each run: each full
    /// scan fills it), `uncached` (no scan cache).
    #[arg(long, value_delimiter = ',', default_values_t = [Mode::Cached, Mode::Written, Mode::First, Mode::Uncached])]
    modes: Vec<Mode>,
    /// Compression of the Parquet file plain DataFusion reads: by default what DataFusion
    /// writes Parquet with (`datafusion.execution.parquet.compression`); `uncompressed` is
    /// the parquet crate's writer default.
    #[arg(long, default_value = "zstd(3)")]
    direct_compression: String,
    /// Prints each query's plan with its metrics (`EXPLAIN ANALYZE`), ours and plain
    /// DataFusion's, after its runs.
    #[arg(long)]
    explain: bool,
    /// Budget of the scan cache (as `limits.scan_cache_bytes`) for the cached runs.
    #[arg(long, default_value_t = folddb_materializer::scan_cache::DEFAULT_BUDGET)]
    scan_cache_bytes: usize,
}

/// (name, query, target): the target is a ratio against plain DataFusion ("x") or a median
/// in milliseconds ("ms").
const HALF_FLUSHED: &[(&str, &str, &str)] = &[
    ("limit", "SELECT * FROM {t} WHERE g = 5 LIMIT 10", "<= 5 ms"),
    ("count", "SELECT COUNT(*) FROM {t}", "<= 1.3x"),
    (
        "group by",
        "SELECT g, COUNT(*), AVG(v) FROM {t} GROUP BY g",
        "<= 1.3x",
    ),
    (
        "filter+agg",
        "SELECT COUNT(*), AVG(v) FROM {t} WHERE g = 5",
        "<= 1.3x",
    ),
    (
        "time range",
        "SELECT COUNT(*), AVG(v) FROM {t} WHERE at >= 1700001000000 AND at < 1700001100000",
        "(10,000 flushed rows; row groups pruned)",
    ),
    (
        "key range",
        "SELECT * FROM {t} WHERE id >= 600000 AND id < 600100",
        "(narrowed to 100 keys)",
    ),
];

const ALL_HOT: &[(&str, &str, &str)] = &[
    ("count", "SELECT COUNT(*) FROM {t}", "<= 100 ms"),
    (
        "group by",
        "SELECT g, COUNT(*), AVG(v) FROM {t} GROUP BY g",
        "<= 250 ms",
    ),
];

fn table(name: &str, id: u64) -> TableDef {
    shared_table(
        name,
        id,
        &[
            ("id", DataType::BigInt),
            ("g", DataType::Int),
            ("v", DataType::Double),
            ("t", DataType::Text),
            ("at", DataType::BigInt),
        ],
    )
}

fn row(i: u64) -> Vec<(u32, Value)> {
    vec![
        (1, Value::BigInt(i as i64)),
        (2, Value::Int((i % 100) as i32)),
        (3, Value::Double((i % 9973) as f64 / 3.0)),
        (4, Value::Text(format!("text-{i:025}"))),
        // Grows with the key, as a creation time does.
        (5, Value::BigInt(1_700_000_000_000 + i as i64 * 10)),
    ]
}

pub fn run(args: ScanBenchArgs) -> anyhow::Result<ExitCode> {
    let dir = args.dir.clone();
    in_scratch(&dir, "scan-bench", |root| async move {
        bench(&root, &args).await
    })
}

/// Folds `rows` rows (ids `from..to`) into table `table`, 10,000 per entry.
fn load(
    store: &HotStore,
    fold: &EventFold,
    index: &mut u64,
    table: u64,
    from: u64,
    to: u64,
) -> anyhow::Result<()> {
    let mut next = from;
    while next < to {
        let end = (next + 10_000).min(to);
        *index += 1;
        fold_one(
            store,
            fold,
            *index,
            vec![Op::Insert {
                table: TableId(table),
                schema_version: 1,
                scope: String::new(),
                rows: (next..end).map(row).collect(),
            }],
        )?;
        next = end;
    }
    Ok(())
}

/// Every row as one Parquet file compressed with `compression`: what plain DataFusion reads.
fn write_direct(path: &Path, def: &TableDef, rows: u64, compression: &str) -> anyhow::Result<()> {
    let schema = folddb_query::provider::table_schema(def);
    let file = std::fs::File::create(path)?;
    let props = parquet::file::properties::WriterProperties::builder()
        .set_compression(compression.parse()?)
        .build();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, schema.clone(), Some(props))?;
    let mut next = 0;
    while next < rows {
        let end = (next + 65_536).min(rows);
        let versions: Vec<RowVersion> = (next..end)
            .map(|i| RowVersion {
                seq: i as i64,
                deleted: false,
                cells: row(i),
            })
            .collect();
        w.write(&folddb_materializer::convert::rows_batch(
            def, &schema, &versions,
        )?)?;
        next = end;
    }
    w.close()?;
    Ok(())
}

async fn bench(root: &Path, args: &ScanBenchArgs) -> anyhow::Result<ExitCode> {
    println!(
        "machine: {} cores; {} rows per table, {} runs per query",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        args.rows,
        args.runs
    );
    let (store, cold, fold, mut index) = open_bench(root, vec![table("t", 1), table("h", 2)])?;
    let started = Instant::now();
    let half = args.rows / 2;
    load(&store, &fold, &mut index, 1, 0, half)?;
    super::cold::flush_as_server(&store, &cold, &fold, &mut index, TableId(1), "FL-1")?;
    store.compact_prefix(
        folddb_materializer::Family::Rows,
        &folddb_materializer::row::table_prefix(TableId(1)),
    );
    load(&store, &fold, &mut index, 1, half, args.rows)?;
    load(&store, &fold, &mut index, 2, 0, args.rows)?;
    store.flush()?;
    println!(
        "load: bench.t ({half} rows flushed, {} hot) and bench.h ({} rows hot) in {:.1} s",
        args.rows - half,
        args.rows,
        started.elapsed().as_secs_f64()
    );

    let engine =
        Engine::new(store.clone(), Arc::new(NoWrites), 1).with_cold(cold.clone(), fold.clone());
    let caller = Caller {
        user: "bench".into(),
        role: Role::System,
    };
    let direct_file = root.join("direct.parquet");
    write_direct(
        &direct_file,
        &table("t", 1),
        args.rows,
        &args.direct_compression,
    )?;
    println!(
        "plain DataFusion reads one Parquet file of the same rows, {}",
        args.direct_compression
    );
    let direct = SessionContext::new();
    direct.register_table(
        "t",
        Arc::new(PlainParquet {
            files: vec![direct_file],
            schema: folddb_query::provider::table_schema(&table("t", 1)),
        }),
    )?;
    println!(
        "{:<30} {:>10} {:>10} {:>7}  target",
        "query", "folddb ms", "direct ms", "ratio"
    );
    // Each query runs with the scan cache (the first run of a full scan fills it); then, for
    // the full scans, with a write of 10 new rows to the table before each run; then
    // without the cache: every run reads the hot tier from RocksDB.
    let cache = store.scan_cache();
    let mut next_id = args.rows;
    for (mode, (table, queries)) in args
        .modes
        .iter()
        .copied()
        .flat_map(|m| [("bench.t", HALF_FLUSHED), ("bench.h", ALL_HOT)].map(|q| (m, q)))
    {
        let uncached = mode == Mode::Uncached;
        cache.set_budget(if uncached { 0 } else { args.scan_cache_bytes });
        for (name, q, target) in queries {
            let suffix = match mode {
                Mode::Cached => "",
                Mode::Written => ", written",
                Mode::First => ", first",
                Mode::Uncached => ", uncached",
            };
            let name = format!("{table} {name}{suffix}");
            let full = !q.contains("LIMIT") && !q.contains("id >=") && !q.contains("at >=");
            if args
                .only
                .as_ref()
                .is_some_and(|o| !name.contains(o.as_str()))
                || (matches!(mode, Mode::Written | Mode::First) && !full)
            {
                continue;
            }
            let sql = (q.replace("{t}", table), q.replace("{t}", "t"));
            let (o, d) = if matches!(mode, Mode::Written | Mode::First) {
                let id = if table == "bench.t" { 1 } else { 2 };
                let (mut ours, mut theirs) = (Vec::new(), Vec::new());
                // A first run fills the cache; then each run follows a write, or an emptied
                // cache.
                compare(&engine, &caller, &direct, (&sql.0, &sql.1), 1).await?;
                for _ in 0..args.runs {
                    if mode == Mode::First {
                        cache.clear();
                    } else {
                        load(&store, &fold, &mut index, id, next_id, next_id + 10)?;
                        next_id += 10;
                    }
                    let (o, d) = compare(&engine, &caller, &direct, (&sql.0, &sql.1), 1).await?;
                    ours.push(o);
                    theirs.push(d);
                }
                (super::cold::median(ours), super::cold::median(theirs))
            } else {
                compare(&engine, &caller, &direct, (&sql.0, &sql.1), args.runs).await?
            };
            report(&name, o, d, target);
            if args.explain {
                let plans = engine
                    .read_as(&caller, &format!("EXPLAIN ANALYZE {}", sql.0))
                    .await
                    .map_err(|e| anyhow::anyhow!("{}", e.message))?;
                println!(
                    "{}",
                    datafusion::arrow::util::pretty::pretty_format_batches(&plans)?
                );
                let plans = direct
                    .sql(&format!("EXPLAIN ANALYZE {}", sql.1))
                    .await?
                    .collect()
                    .await?;
                println!(
                    "{}",
                    datafusion::arrow::util::pretty::pretty_format_batches(&plans)?
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Mode {
    Cached,
    Written,
    First,
    Uncached,
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Cached => "cached",
            Mode::Written => "written",
            Mode::First => "first",
            Mode::Uncached => "uncached",
        })
    }
}

fn report(name: &str, o: Duration, d: Duration, target: &str) {
    let ratio = o.as_secs_f64() / d.as_secs_f64().max(1e-9);
    println!(
        "{name:<30} {:>10.2} {:>10.2} {ratio:>7.2}  {target}",
        o.as_secs_f64() * 1e3,
        d.as_secs_f64() * 1e3
    );
}
