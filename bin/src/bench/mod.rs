//! `folddb bench …`: benchmarks that report medians and tail latencies from one run.
//! They write only under the directory they are given and remove what they wrote.

mod backup;
mod big;
mod cluster;
mod cold;
mod files;
mod journal;
mod live;
mod log;
mod raft;
mod scan;
mod snapshot;
mod sql;
mod topics;
mod users;
mod vector;

use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// The raw disk (write + fdatasync) against the log's durable appends.
    Log(log::LogBenchArgs),
    /// Proposals through a single-member raft node: log, commit, apply into RocksDB.
    Raft(raft::RaftBenchArgs),
    /// A three-node cluster against one node, started on loopback ports: INSERT throughput,
    /// follower read-after-write, and failover time over repeated leader kills.
    Cluster(cluster::ClusterBenchArgs),
    /// End-to-end SQL load over HTTP against a running server (`--url`).
    Sql(sql::SqlBenchArgs),
    /// The cold tier in process: flush rows/s, queries against DataFusion over the same
    /// Parquet files, and log replay entries/s.
    Cold(cold::ColdBenchArgs),
    /// Table scans in process: a table half flushed, half hot, and one all hot, against
    /// DataFusion over the same rows as Parquet.
    Scan(scan::ScanBenchArgs),
    /// Live-query delivery latency over WebSockets against a running server (`--url`).
    Live(live::LiveBenchArgs),
    /// Live-query initial data against a running server (`--url`): the server memory
    /// subscriptions holding a page cost, and how long a whole initial load takes.
    Snapshot(snapshot::SnapshotBenchArgs),
    /// A log tail's delivery rate against a running server (`--url`), and the raw read
    /// rate of the same entries from its log files (`--log-dir`).
    Tail(journal::TailBenchArgs),
    /// Time to `ready` of a live query resuming after many offline changes to a large
    /// table (`--url`), against a fresh subscription's whole initial load.
    Resume(journal::ResumeBenchArgs),
}

pub fn run(cmd: BenchCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        BenchCommand::Log(args) => log::run(args),
        BenchCommand::Raft(args) => raft::run(args),
        BenchCommand::Cluster(args) => cluster::run(args),
        BenchCommand::Sql(args) => sql::run(args),
        BenchCommand::Live(args) => live::run(args),
        BenchCommand::Cold(args) => cold::run(args),
        BenchCommand::Scan(args) => scan::run(args),
        BenchCommand::Snapshot(args) => snapshot::run(args),
        BenchCommand::Tail(args) => journal::run_tail(args),
        BenchCommand::Resume(args) => journal::run_resume(args),
    }
}

/// Latency percentiles of one scenario.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Latency {
    pub samples: usize,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
}

impl Latency {
    pub fn of(mut samples: Vec<Duration>) -> Latency {
        samples.sort_unstable();
        let pick = |q: f64| -> f64 {
            if samples.is_empty() {
                return 0.0;
            }
            let i = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
            samples[i].as_secs_f64() * 1e6
        };
        Latency {
            samples: samples.len(),
            p50_us: pick(0.50),
            p99_us: pick(0.99),
            p999_us: pick(0.999),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_the_right_samples() {
        let l = Latency::of((1..=1000).rev().map(Duration::from_micros).collect());
        let close = |a: f64, b: f64| (a - b).abs() < 1e-6;
        assert_eq!(l.samples, 1000);
        assert!(close(l.p50_us, 500.0), "{l:?}");
        assert!(close(l.p99_us, 990.0), "{l:?}");
        assert!(close(l.p999_us, 999.0), "{l:?}");
        assert!(close(Latency::of(vec![]).p50_us, 0.0));
    }
}
