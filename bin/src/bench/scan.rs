//! `folddb bench scan --dir DIR`: table scans in process, on one machine.
//!
//! Table `bench.t` (id, g int, v double, t text of ~30 bytes) gets `--rows` rows: the first
//! half is flushed to Parquet, the second half stays hot. Table `bench.h` gets the same rows,
//! all hot (no flush). Each query runs through the engine and, in the same run, through
//! DataFusion over a plain Parquet table provider on one file holding the same rows: the
//! median of each, and the ratio.

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

/// Every row as one Parquet file: what plain DataFusion reads.
fn write_direct(path: &Path, def: &TableDef, rows: u64) -> anyhow::Result<()> {
    let schema = folddb_query::provider::table_schema(def);
    let file = std::fs::File::create(path)?;
    let mut w = parquet::arrow::ArrowWriter::try_new(file, schema.clone(), None)?;
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

    let engine = Engine::new(store.clone(), Arc::new(NoWrites), 1).with_cold(cold.clone(), fold);
    let caller = Caller {
        user: "bench".into(),
        role: Role::System,
    };
    let direct_file = root.join("direct.parquet");
    write_direct(&direct_file, &table("t", 1), args.rows)?;
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
    // Each query runs with the scan cache (the first run of a full scan fills it), then
    // without it: every run reads the hot tier from RocksDB.
    let cache = store.scan_cache();
    for (uncached, (table, queries)) in [false, true]
        .into_iter()
        .flat_map(|u| [("bench.t", HALF_FLUSHED), ("bench.h", ALL_HOT)].map(|q| (u, q)))
    {
        cache.set_budget(if uncached { 0 } else { args.scan_cache_bytes });
        for (name, q, target) in queries {
            let name = format!("{table} {name}{}", if uncached { ", uncached" } else { "" });
            if args
                .only
                .as_ref()
                .is_some_and(|o| !name.contains(o.as_str()))
            {
                continue;
            }
            let sql = (q.replace("{t}", table), q.replace("{t}", "t"));
            let (o, d) = compare(&engine, &caller, &direct, (&sql.0, &sql.1), args.runs).await?;
            report(&name, o, d, target);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn report(name: &str, o: Duration, d: Duration, target: &str) {
    let ratio = o.as_secs_f64() / d.as_secs_f64().max(1e-9);
    println!(
        "{name:<30} {:>10.2} {:>10.2} {ratio:>7.2}  {target}",
        o.as_secs_f64() * 1e3,
        d.as_secs_f64() * 1e3
    );
}
