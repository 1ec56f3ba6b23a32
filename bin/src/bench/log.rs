//! `folddb bench log`: in one run, the raw disk (`write + fdatasync`, single thread) and the
//! log's durable appends with 1, 8 and 64 concurrent appenders and with 1 MiB batches, so the
//! two can be compared on the same machine at the same time.
//!
//! Two raw baselines for large writes: into space zero-filled before the timer starts (the
//! disk's ceiling, which only overwriting pre-zeroed space reaches) and into freshly
//! allocated space (what a log that keeps every segment meets once it must create new space
//! faster than it can zero it ahead of time).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use folddb_log::{FsStorage, Log, LogConfig, Storage, StorageFile, Term};
use serde::Serialize;

use super::Latency;

const MIB: usize = 1 << 20;

#[derive(Debug, Args)]
pub struct LogBenchArgs {
    /// Scratch directory (created, and removed afterwards). Put it on the disk under test.
    #[arg(long, default_value = "folddb-bench-log")]
    dir: PathBuf,
    /// Seconds per small-entry scenario.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Payload size of small entries, in bytes.
    #[arg(long, default_value_t = 128)]
    entry_bytes: usize,
    /// Number of 1 MiB batches per large-batch scenario.
    #[arg(long, default_value_t = 256)]
    batches: usize,
    /// Concurrent appender counts to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,8,64")]
    appenders: Vec<usize>,
    /// Print one JSON document instead of the table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct Report {
    entry_bytes: usize,
    raw_small: SmallResult,
    /// 1 MiB writes into space that was zero-filled before timing: the disk's ceiling.
    raw_batch: BatchResult,
    /// 1 MiB writes into freshly `fallocate`d space: what any log creating new space meets.
    raw_batch_fresh: BatchResult,
    log_small: Vec<SmallResult>,
    log_batch: BatchResult,
    /// Sequential reads of durable entries: what a reader of the raw log gets (compare
    /// `folddb bench sql --scenario topic-consume`).
    log_read: ReadResult,
}

#[derive(Debug, Serialize)]
struct ReadResult {
    entries: usize,
    entries_per_sec: f64,
    mb_per_sec: f64,
}

#[derive(Debug, Serialize)]
struct SmallResult {
    appenders: usize,
    ops_per_sec: f64,
    latency: Latency,
}

#[derive(Debug, Serialize)]
struct BatchResult {
    batches: usize,
    mb_per_sec: f64,
    latency: Latency,
}

impl BatchResult {
    /// The result of 1 MiB batches that took `lat` each and `elapsed` in all.
    fn of(lat: Vec<Duration>, elapsed: Duration) -> BatchResult {
        let batches = lat.len();
        BatchResult {
            batches,
            mb_per_sec: (batches * MIB) as f64 / 1e6 / elapsed.as_secs_f64(),
            latency: Latency::of(lat),
        }
    }
}

pub fn run(args: LogBenchArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.seconds > 0.0, "--seconds must be positive");
    anyhow::ensure!(args.batches > 0, "--batches must be positive");
    anyhow::ensure!(
        !args.appenders.is_empty(),
        "--appenders needs at least one count"
    );
    anyhow::ensure!(
        !args.dir.exists(),
        "{} exists; give a fresh scratch directory",
        args.dir.display()
    );
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    let result = measure(&args);
    let _ = std::fs::remove_dir_all(&args.dir);
    let report = result?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    Ok(ExitCode::SUCCESS)
}

fn measure(args: &LogBenchArgs) -> anyhow::Result<Report> {
    let duration = Duration::from_secs_f64(args.seconds);
    let raw_small = raw_small(&args.dir, args.entry_bytes, duration)?;
    let raw_batch = raw_batches(&args.dir, args.batches, Space::ZeroFilled)?;
    let raw_batch_fresh = raw_batches(&args.dir, args.batches, Space::Allocated)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut log_small = Vec::new();
    for (i, &n) in args.appenders.iter().enumerate() {
        let dir = args.dir.join(format!("log-{i}"));
        log_small.push(rt.block_on(log_appenders(&dir, n, args.entry_bytes, duration))?);
    }
    let log_batch = rt.block_on(log_batches(&args.dir.join("log-batches"), args.batches))?;
    let log_read = rt.block_on(log_reads(&args.dir.join("log-reads"), args.entry_bytes))?;
    Ok(Report {
        entry_bytes: args.entry_bytes,
        raw_small,
        raw_batch,
        raw_batch_fresh,
        log_small,
        log_batch,
        log_read,
    })
}

/// A file of `len` bytes, durably zero-filled or allocated before any timing starts.
fn prepared(path: &Path, len: usize, space: Space) -> anyhow::Result<Arc<dyn StorageFile>> {
    let f = FsStorage.create(path)?;
    match space {
        Space::ZeroFilled => {
            let zeros = vec![0u8; MIB];
            for at in (0..len).step_by(MIB) {
                f.write_all_at(&zeros[..MIB.min(len - at)], at as u64)?;
            }
        }
        Space::Allocated => f.allocate(len as u64)?,
    }
    f.sync_data()?;
    Ok(f)
}

fn raw_small(dir: &Path, entry_bytes: usize, duration: Duration) -> anyhow::Result<SmallResult> {
    let f = prepared(&dir.join("raw-small"), 256 * MIB, Space::ZeroFilled)?;
    let buf = vec![0x5au8; entry_bytes];
    let mut lat = Vec::new();
    let start = Instant::now();
    let mut offset = 0u64;
    while start.elapsed() < duration && offset + (entry_bytes as u64) < 256 * MIB as u64 {
        let t = Instant::now();
        f.write_all_at(&buf, offset)?;
        f.sync_data()?;
        lat.push(t.elapsed());
        offset += entry_bytes as u64;
    }
    let elapsed = start.elapsed().as_secs_f64();
    Ok(SmallResult {
        appenders: 1,
        ops_per_sec: lat.len() as f64 / elapsed,
        latency: Latency::of(lat),
    })
}

#[derive(Debug, Clone, Copy)]
enum Space {
    ZeroFilled,
    Allocated,
}

/// 1 MiB `write + fdatasync`s laid out as the log lays out batches (from offset 32, back to
/// back), into zero-filled or freshly allocated space.
fn raw_batches(dir: &Path, batches: usize, space: Space) -> anyhow::Result<BatchResult> {
    let len = (batches + 1) * MIB;
    let path = dir.join(format!("raw-batch-{space:?}"));
    let f = prepared(&path, len, space)?;
    let buf: Vec<u8> = (0..MIB).map(|i| (i * 7) as u8).collect();
    let mut lat = Vec::with_capacity(batches);
    let start = Instant::now();
    for i in 0..batches {
        let t = Instant::now();
        f.write_all_at(&buf, (32 + i * MIB) as u64)?;
        f.sync_data()?;
        lat.push(t.elapsed());
    }
    Ok(BatchResult::of(lat, start.elapsed()))
}

/// Opens a fresh log and gives its background segment preparation a moment, so the figures
/// measure steady-state appends rather than the first segment's creation.
async fn fresh_log(dir: &Path) -> anyhow::Result<Log> {
    let log = Log::open(dir, LogConfig::default())?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    Ok(log)
}

async fn log_appenders(
    dir: &Path,
    appenders: usize,
    entry_bytes: usize,
    duration: Duration,
) -> anyhow::Result<SmallResult> {
    let log = fresh_log(dir).await?;
    let payload: Arc<[u8]> = vec![0x5au8; entry_bytes].into();
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::with_capacity(appenders);
    for _ in 0..appenders {
        let log = log.clone();
        let payload = payload.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                // A page-cache write of a few hundred bytes: cheaper than a hop to a
                // blocking thread, so the benchmark calls it in place.
                let indices = log.append_next(Term(1), &[&payload])?;
                log.wait_durable(*indices.end()).await?;
                lat.push(t.elapsed());
            }
            anyhow::Ok(lat)
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await??);
    }
    let elapsed = start.elapsed().as_secs_f64();
    Ok(SmallResult {
        appenders,
        ops_per_sec: lat.len() as f64 / elapsed,
        latency: Latency::of(lat),
    })
}

async fn log_batches(dir: &Path, batches: usize) -> anyhow::Result<BatchResult> {
    let log = fresh_log(dir).await?;
    // A 1 MiB batch: 16 entries of 64 KiB, appended together.
    let chunk: Vec<u8> = (0..MIB / 16).map(|i| (i * 7) as u8).collect();
    let payloads: Vec<&[u8]> = (0..16).map(|_| chunk.as_slice()).collect();
    let mut lat = Vec::with_capacity(batches);
    let start = Instant::now();
    for _ in 0..batches {
        let t = Instant::now();
        let indices = log.append_next(Term(1), &payloads)?;
        log.wait_durable(*indices.end()).await?;
        lat.push(t.elapsed());
    }
    Ok(BatchResult::of(lat, start.elapsed()))
}

/// Entries a read scenario writes, then reads back in order.
const READ_ENTRIES: usize = 200_000;

/// Writes [`READ_ENTRIES`] entries of `entry_bytes` (in batches of 1,000), then times
/// reading them back in order, 1,000 at a time, as a consumer of the log would.
async fn log_reads(dir: &Path, entry_bytes: usize) -> anyhow::Result<ReadResult> {
    let log = fresh_log(dir).await?;
    let payload = vec![0x5au8; entry_bytes];
    let payloads: Vec<&[u8]> = (0..1000).map(|_| payload.as_slice()).collect();
    let mut last = None;
    for _ in 0..READ_ENTRIES / 1000 {
        last = Some(*log.append_next(Term(1), &payloads)?.end());
    }
    let last = last.context("nothing appended")?;
    log.wait_durable(last).await?;
    let first = log.first_index().context("an empty log")?;
    let start = Instant::now();
    let (mut at, mut entries, mut bytes) = (first, 0usize, 0usize);
    while at <= last {
        let end = folddb_log::LogIndex((at.0 + 1000).min(last.0 + 1));
        for e in log.read(at..end)? {
            entries += 1;
            bytes += e.payload.len();
        }
        at = end;
    }
    let elapsed = start.elapsed().as_secs_f64();
    Ok(ReadResult {
        entries,
        entries_per_sec: entries as f64 / elapsed,
        mb_per_sec: bytes as f64 / 1e6 / elapsed,
    })
}

fn print_table(r: &Report) {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "folddb bench log ({cores} cores; {} B entries)",
        r.entry_bytes
    );
    println!(
        "{:<34} {:>12} {:>10} {:>10} {:>10}",
        "scenario", "rate", "p50 µs", "p99 µs", "p99.9 µs"
    );
    let row = |name: String, rate: String, l: &Latency| {
        println!(
            "{name:<34} {rate:>12} {:>10.1} {:>10.1} {:>10.1}",
            l.p50_us, l.p99_us, l.p999_us
        );
    };
    row(
        "raw write+fdatasync, 1 thread".into(),
        format!("{:.0}/s", r.raw_small.ops_per_sec),
        &r.raw_small.latency,
    );
    for s in &r.log_small {
        row(
            format!("log durable append, {} appenders", s.appenders),
            format!("{:.0}/s", s.ops_per_sec),
            &s.latency,
        );
    }
    row(
        "raw 1 MiB, zero-filled space".into(),
        format!("{:.0} MB/s", r.raw_batch.mb_per_sec),
        &r.raw_batch.latency,
    );
    row(
        "raw 1 MiB, fresh allocated space".into(),
        format!("{:.0} MB/s", r.raw_batch_fresh.mb_per_sec),
        &r.raw_batch_fresh.latency,
    );
    row(
        "log 1 MiB batches".into(),
        format!("{:.0} MB/s", r.log_batch.mb_per_sec),
        &r.log_batch.latency,
    );
    println!(
        "{:<34} {:>12} ({:.0} MB/s; {} entries)",
        "log sequential read",
        format!("{:.0}/s", r.log_read.entries_per_sec),
        r.log_read.mb_per_sec,
        r.log_read.entries
    );
    if let Some(one) = r.log_small.iter().find(|s| s.appenders == 1) {
        println!(
            "single appender p50 / raw p50: {:.2}x",
            one.latency.p50_us / r.raw_small.latency.p50_us
        );
    }
    println!(
        "1 MiB batches, log / raw zero-filled: {:.0}%; log / raw fresh space: {:.0}%",
        100.0 * r.log_batch.mb_per_sec / r.raw_batch.mb_per_sec,
        100.0 * r.log_batch.mb_per_sec / r.raw_batch_fresh.mb_per_sec
    );
}
