//! `folddb log …`: read-only tools over a log directory. None of them writes to the
//! directory: they scan it with `folddb_log::DirScan`, which is what `Log::open` builds on,
//! so they report exactly what opening the log would find.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use folddb_log::dir::ScannedSegment;
use folddb_log::scan::Tail;
use folddb_log::{DirScan, LogIndex};

/// Payloads larger than this are refused when scanning; the log's own limit is lower.
const SCAN_MAX_PAYLOAD_BYTES: u32 = 1 << 30;

#[derive(Debug, Subcommand)]
pub enum LogCommand {
    /// Segments, index range, sizes, term ranges.
    Inspect {
        /// The log directory (e.g. `data/log`).
        dir: PathBuf,
    },
    /// Check every frame. Exits 1 on corruption, naming segment and byte offset; a torn tail
    /// (what a crash leaves, discarded on the next open) is reported and exits 0.
    Verify { dir: PathBuf },
    /// Rebuild a data directory from a log alone: copy the log (up to `--to-index`) into
    /// `INTO/log`, and fold it into a new hot tier (`INTO/rocksdb`) and cold tier
    /// (`INTO/storage`; the files of storages other than `local` under
    /// `INTO/storage/.relocated/<id>`, never where the original keeps them).
    /// `folddb serve --data-dir INTO` then answers as the original did at that index.
    Replay {
        /// The log directory (`data/log`), or the data directory holding it.
        dir: PathBuf,
        /// The new data directory: must not exist, or be empty.
        #[arg(long)]
        into: PathBuf,
        /// The last entry to replay (default: the whole log).
        #[arg(long)]
        to_index: Option<u64>,
    },
    /// One JSON line per entry: index, term, payload length.
    Dump {
        dir: PathBuf,
        /// First index to print.
        #[arg(long)]
        from: Option<u64>,
        /// Most entries to print.
        #[arg(long)]
        limit: Option<usize>,
    },
}

pub fn run(cmd: LogCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        LogCommand::Inspect { dir } => inspect(&dir),
        LogCommand::Verify { dir } => verify(&dir),
        LogCommand::Dump { dir, from, limit } => dump(&dir, from, limit),
        LogCommand::Replay {
            dir,
            into,
            to_index,
        } => replay(&dir, &into, to_index),
    }
}

pub(crate) fn scan(dir: &Path) -> anyhow::Result<DirScan> {
    anyhow::ensure!(dir.is_dir(), "{} is not a directory", dir.display());
    DirScan::read(dir, SCAN_MAX_PAYLOAD_BYTES).with_context(|| format!("reading {}", dir.display()))
}

fn name(s: &ScannedSegment) -> String {
    s.path.file_name().map_or_else(
        || s.path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

fn range(s: &ScannedSegment) -> String {
    match s.scan.last_index() {
        Some(last) => format!("{}..={}", s.scan.first_index, last),
        None => format!("(empty, starts at {})", s.scan.first_index),
    }
}

fn tail_text(tail: &Tail) -> String {
    match tail {
        Tail::Clean => "clean".to_owned(),
        Tail::Torn {
            offset,
            dirty_end,
            reason,
        } => format!(
            "torn tail at byte offset {offset} ({} bytes to discard on open: {reason})",
            dirty_end - offset
        ),
        Tail::Corrupt { offset, problem } => {
            format!("CORRUPT at byte offset {offset}: {problem}")
        }
    }
}

fn inspect(dir: &Path) -> anyhow::Result<ExitCode> {
    let found = scan(dir)?;
    println!("log directory: {}", dir.display());
    println!(
        "{:<26} {:>24} {:>9} {:>12} {:>12} {:>13}  tail",
        "segment", "indices", "entries", "data bytes", "file bytes", "terms"
    );
    let mut entries = 0u64;
    for s in &found.segments {
        let terms = match (s.scan.first_term, s.scan.last_term) {
            (Some(a), Some(b)) => format!("{a}..={b}"),
            _ => "-".to_owned(),
        };
        entries += s.scan.offsets.len() as u64;
        println!(
            "{:<26} {:>24} {:>9} {:>12} {:>12} {:>13}  {}",
            name(s),
            range(s),
            s.scan.offsets.len(),
            s.scan.end,
            s.file_len,
            terms,
            tail_text(&s.scan.tail)
        );
    }
    let first = found.segments.iter().find(|s| !s.scan.offsets.is_empty());
    let last = found
        .segments
        .iter()
        .rev()
        .find_map(|s| s.scan.last_index());
    println!("segments: {}", found.segments.len());
    match (first, last) {
        (Some(f), Some(l)) => println!("entries: {entries} (indices {}..={l})", f.scan.first_index),
        _ => println!("entries: 0"),
    }
    match found.purged {
        Some((index, term)) => println!("purged through: index {index} (term {term})"),
        None => println!("purged through: nothing"),
    }
    if !found.tmp_files.is_empty() {
        println!(
            "leftover temporary files (removed on open): {}",
            found.tmp_files.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn verify(dir: &Path) -> anyhow::Result<ExitCode> {
    let found = match DirScan::read(dir, SCAN_MAX_PAYLOAD_BYTES) {
        Ok(found) => found,
        Err(e) => {
            eprintln!("CORRUPT: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let mut frames = 0u64;
    for s in &found.segments {
        frames += s.scan.offsets.len() as u64;
        println!(
            "{}: {} frames, {}",
            name(s),
            s.scan.offsets.len(),
            tail_text(&s.scan.tail)
        );
    }
    if let Some(err) = found.corruption() {
        eprintln!("CORRUPT: {err}");
        return Ok(ExitCode::FAILURE);
    }
    if let Some((segment, offset, dirty_end, _)) = found.torn_tail() {
        println!(
            "torn tail: {} at byte offset {offset}: {} bytes of an unfinished write; opening \
             the log discards them",
            segment.display(),
            dirty_end - offset
        );
    }
    println!(
        "ok: {} segments, {frames} frames verified",
        found.segments.len()
    );
    Ok(ExitCode::SUCCESS)
}

fn dump(dir: &Path, from: Option<u64>, limit: Option<usize>) -> anyhow::Result<ExitCode> {
    use std::io::Write;
    let found = scan(dir)?;
    let entries = found.read_entries(from.map(LogIndex), limit.unwrap_or(usize::MAX))?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for e in entries {
        let line = serde_json::json!({
            "index": e.index.0,
            "term": e.term.0,
            "payload_len": e.payload.len(),
        });
        writeln!(out, "{line}")?;
    }
    out.flush()?;
    if let Some(err) = found.corruption() {
        eprintln!("CORRUPT: {err} (frames from that offset on were not printed)");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// Draws `done` of `total` as a bar on stderr, in place.
fn progress_bar(done: u64, total: u64, started: std::time::Instant) {
    use std::io::Write;
    const WIDTH: u64 = 40;
    let filled = (done * WIDTH).checked_div(total).unwrap_or(WIDTH) as usize;
    let rate = done as f64 / started.elapsed().as_secs_f64().max(1e-9);
    let mut err = std::io::stderr().lock();
    let _ = write!(
        err,
        "\r[{}{}] {done}/{total} entries ({rate:.0}/s)",
        "#".repeat(filled),
        "-".repeat(WIDTH as usize - filled),
    );
    let _ = err.flush();
}

fn replay(dir: &Path, into: &Path, to_index: Option<u64>) -> anyhow::Result<ExitCode> {
    use folddb_materializer::cold::{ColdStore, job};
    use folddb_materializer::{EventFold, HotStore};
    let source = if dir.join("log").is_dir() {
        dir.join("log")
    } else {
        dir.to_path_buf()
    };
    anyhow::ensure!(
        source.is_dir(),
        "{} is not a log directory",
        source.display()
    );
    if into.exists() {
        let empty = std::fs::read_dir(into)
            .with_context(|| format!("reading {}", into.display()))?
            .next()
            .is_none();
        anyhow::ensure!(empty, "{} exists and is not empty", into.display());
    }
    let log_dir = into.join("log");
    std::fs::create_dir_all(&log_dir).with_context(|| format!("creating {}", log_dir.display()))?;
    for entry in
        std::fs::read_dir(&source).with_context(|| format!("reading {}", source.display()))?
    {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            std::fs::copy(entry.path(), log_dir.join(entry.file_name()))
                .with_context(|| format!("copying {}", entry.path().display()))?;
        }
    }
    if let Some(n) = to_index {
        let log = folddb_log::Log::open(&log_dir, folddb_log::LogConfig::default())
            .with_context(|| format!("opening {}", log_dir.display()))?;
        if log.last_index().is_some_and(|last| last.0 > n) {
            log.truncate(LogIndex(n + 1))
                .with_context(|| format!("cutting the copy after index {n}"))?;
        }
    }
    let store = HotStore::open_data_dir(into)?;
    // Storages other than `local` are rebuilt under INTO too: a replay never writes where the
    // original keeps its files.
    let cold_root = into.join("storage");
    ColdStore::relocate(&cold_root)
        .with_context(|| format!("marking {} as rebuilt", cold_root.display()))?;
    let cold = std::sync::Arc::new(ColdStore::new(cold_root));
    let fold = EventFold::new(cold.clone());
    let started = std::time::Instant::now();
    // The log does not carry the cold tier's files: each job's are written again when the
    // replay reaches the state the job read, before the entry that commits them.
    let mut jobs = folddb_cluster::replay::job_commits(&log_dir, to_index)?;
    jobs.sort_by_key(|op| job::as_of(op).unwrap_or(0));
    let mut applied = 0;
    for op in &jobs {
        let at = job::as_of(op).unwrap_or(0);
        applied =
            folddb_cluster::replay::replay(&log_dir, Some(at), &store, &fold, |done, total| {
                progress_bar(done, total, started)
            })?
            .max(applied);
        if store.applied_index()?.map_or(0, |i| i.0) == at {
            job::rewrite(&store, &cold, op).map_err(anyhow::Error::msg)?;
        }
    }
    applied = folddb_cluster::replay::replay(&log_dir, to_index, &store, &fold, |done, total| {
        progress_bar(done, total, started)
    })?
    .max(applied);
    let secs = started.elapsed().as_secs_f64();
    eprintln!();
    println!(
        "replayed {applied} entries into {} in {secs:.2} s ({:.0} entries/s)",
        into.display(),
        applied as f64 / secs.max(1e-9)
    );
    // The log holds FILE cells' references, not the files: each is copied from where the
    // original keeps it, checked against its SHA-256; what is not there is named.
    let original = if dir.join("log").is_dir() {
        dir.to_path_buf()
    } else {
        dir.parent()
            .map_or_else(|| dir.to_path_buf(), Path::to_path_buf)
    };
    let (copied, missing) = crate::replay_files::copy(&original.join("storage"), &store, &cold)?;
    if copied > 0 {
        println!("copied {copied} files the rows reference");
    }
    if !missing.is_empty() {
        println!(
            "{} files the rows reference are missing or damaged:",
            missing.len()
        );
        for m in &missing {
            println!("  {m}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
