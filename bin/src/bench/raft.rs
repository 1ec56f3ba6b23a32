//! `folddb bench raft`: proposals through a single-member raft node — append to the durable
//! log (group commit), commit, apply into the RocksDB hot tier, answer — with N concurrent
//! proposers. It bounds what any write over SQL can reach, before parsing and HTTP.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use folddb_cluster::{Command, Node};
use folddb_log::LogConfig;
use folddb_materializer::StoreCommands;

use super::Latency;

#[derive(Debug, Args)]
pub struct RaftBenchArgs {
    /// Scratch directory (created, and removed afterwards).
    #[arg(long, default_value = "folddb-bench-raft")]
    dir: PathBuf,
    /// Seconds per scenario.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Command size in bytes.
    #[arg(long, default_value_t = 128)]
    command_bytes: usize,
    /// Concurrent proposer counts to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,8,64")]
    proposers: Vec<usize>,
}

pub fn run(args: RaftBenchArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.seconds > 0.0, "--seconds must be positive");
    anyhow::ensure!(
        !args.dir.exists(),
        "{} exists; give a fresh scratch directory",
        args.dir.display()
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = rt.block_on(measure(&args));
    let _ = std::fs::remove_dir_all(&args.dir);
    let rows = result?;
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "folddb bench raft ({cores} cores; {} B commands)",
        args.command_bytes
    );
    println!(
        "{:<28} {:>12} {:>10} {:>10} {:>10}",
        "scenario", "rate", "p50 µs", "p99 µs", "p99.9 µs"
    );
    for (n, rate, l) in rows {
        println!(
            "{:<28} {:>12} {:>10.1} {:>10.1} {:>10.1}",
            format!("{n} proposers"),
            format!("{rate:.0}/s"),
            l.p50_us,
            l.p99_us,
            l.p999_us
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn measure(args: &RaftBenchArgs) -> anyhow::Result<Vec<(usize, f64, Latency)>> {
    let mut out = Vec::new();
    for (i, &n) in args.proposers.iter().enumerate() {
        let dir = args.dir.join(format!("node-{i}"));
        let node = Node::start_single(
            1,
            "127.0.0.1:0",
            &dir,
            LogConfig::default(),
            Arc::new(StoreCommands),
        )
        .await
        .context("starting the node")?;
        let node = Arc::new(node);
        let deadline = Instant::now() + Duration::from_secs_f64(args.seconds);
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..n {
            let node = node.clone();
            let command = vec![0x5a; args.command_bytes];
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                while Instant::now() < deadline {
                    let t = Instant::now();
                    node.propose(Command(command.clone())).await?;
                    lat.push(t.elapsed());
                }
                anyhow::Ok(lat)
            }));
        }
        let mut lat = Vec::new();
        for t in tasks {
            lat.extend(t.await??);
        }
        let rate = lat.len() as f64 / start.elapsed().as_secs_f64();
        out.push((n, rate, Latency::of(lat)));
        let node = Arc::into_inner(node).context("proposers finished")?;
        node.shutdown().await?;
    }
    Ok(out)
}
