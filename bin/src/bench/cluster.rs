//! `folddb bench cluster`: a three-node cluster against one node, on this machine. It starts
//! its own servers (this binary, on loopback ports, in a scratch directory it removes) and
//! measures, in one run:
//! - single-row INSERT throughput and latency with N clients: one node, then three nodes with
//!   the clients on the leader, then with the clients spread over the three nodes (followers
//!   hand writes to the leader);
//! - follower read-after-write: a row inserted through the leader, then read by primary key
//!   through a follower (the read barrier included), and whether the read saw it;
//! - failover: the leader killed with SIGKILL, the time until a write through a surviving
//!   node is acknowledged; the killed node restarted and caught up before the next kill.
//!
//! The three nodes share the machine's cores with each other and with the clients, so the
//! ratio is a floor of what three machines would show.

use std::path::{Path, PathBuf};
use std::process::{Child, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use serde_json::Value as Json;

use super::Latency;
use super::sql::{Client, Outcome, load};

#[derive(Debug, Args)]
pub struct ClusterBenchArgs {
    /// Scratch directory (created, and removed afterwards).
    #[arg(long, default_value = "folddb-bench-cluster")]
    dir: PathBuf,
    /// Seconds per throughput scenario.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Concurrent clients of the INSERT scenarios.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Leader kills in the failover scenario.
    #[arg(long, default_value_t = 10)]
    kills: usize,
    /// Writes read back through a follower in the read-after-write scenario.
    #[arg(long, default_value_t = 500)]
    reads: usize,
    /// The members' `cluster.snapshot_every_entries` (0: never; default: the server's):
    /// whether the wiped member of the last scenario is sent a snapshot or the whole log.
    #[arg(long)]
    snapshot_every: Option<u64>,
    /// The members' `cluster.snapshot_keep_entries` (default: the server's).
    #[arg(long)]
    snapshot_keep: Option<u64>,
    /// The first of the loopback ports the servers listen on (four are used).
    #[arg(long, default_value_t = 18601)]
    base_port: u16,
}

const USER: &str = "admin";
const PASSWORD: &str = "kalamdb123";
const SECRET: &str = "bench-cluster-secret";

/// One server process of this binary.
struct Proc {
    child: Child,
    url: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `folddb serve` as node `id` on `port` over `dir`, in the cluster of `peers` when
/// given, and waits until it answers `/health`.
async fn spawn(
    id: u16,
    port: u16,
    dir: &Path,
    peers: Option<&str>,
    snapshots: (Option<u64>, Option<u64>),
) -> anyhow::Result<Proc> {
    std::fs::create_dir_all(dir)?;
    let log = std::fs::File::create(dir.with_extension("log"))?;
    let mut cmd = std::process::Command::new(std::env::current_exe()?);
    cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(dir)
        .args(["--node-id", &id.to_string()])
        .env("FOLDDB_JWT_SECRET", "bench-cluster-jwt-secret-0123456789")
        .env("FOLDDB_RATE_LIMIT_REQUESTS_PER_IP_PER_SEC", "0")
        .env("FOLDDB_RATE_LIMIT_SQL_PER_USER_PER_SEC", "0")
        .env("FOLDDB_RATE_LIMIT_AUTH_REQUESTS_PER_IP_PER_SEC", "100000")
        .env("FOLDDB_MAX_CONNECTIONS_PER_IP", "100000")
        .stdout(Stdio::null())
        .stderr(log);
    if let Some(peers) = peers {
        cmd.args(["--peers", peers, "--cluster-secret", SECRET]);
    }
    if let Some(every) = snapshots.0 {
        cmd.env("FOLDDB_CLUSTER_SNAPSHOT_EVERY_ENTRIES", every.to_string());
    }
    if let Some(keep) = snapshots.1 {
        cmd.env("FOLDDB_CLUSTER_SNAPSHOT_KEEP_ENTRIES", keep.to_string());
    }
    let proc = Proc {
        child: cmd.spawn().context("starting folddb serve")?,
        url: format!("http://127.0.0.1:{port}"),
    };
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(r) = http.get(format!("{}/health", proc.url)).send().await
            && r.status().is_success()
        {
            return Ok(proc);
        }
        if Instant::now() > deadline {
            bail!(
                "node {id} did not start (its log: {})",
                dir.with_extension("log").display()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The leader's node id, as `url`'s cluster health reports it.
async fn leader_at(http: &reqwest::Client, url: &str) -> Option<u16> {
    let h: Json = http
        .get(format!("{url}/v1/api/cluster/health"))
        .timeout(Duration::from_secs(1))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    h["nodes"]
        .as_array()?
        .iter()
        .find(|n| n["is_leader"] == true)
        .and_then(|n| n["node_id"].as_u64())
        .and_then(|id| u16::try_from(id).ok())
}

/// Waits until every node in `urls` names the same leader: its id.
async fn agreed_leader(http: &reqwest::Client, urls: &[String]) -> anyhow::Result<u16> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut seen = Vec::new();
        for u in urls {
            seen.push(leader_at(http, u).await);
        }
        if let Some(Some(l)) = seen.first().copied()
            && seen.iter().all(|s| *s == Some(l))
        {
            return Ok(l);
        }
        if Instant::now() > deadline {
            bail!("the nodes agree on no leader: {seen:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sets the server at `url` up (retrying while the cluster elects a leader) and logs in.
async fn client(http: &reqwest::Client, url: &str) -> anyhow::Result<Arc<Client>> {
    let server = crate::client::ServerArgs {
        url: url.to_owned(),
        user: USER.into(),
        password: PASSWORD.into(),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let token = loop {
        match super::sql::login(http, &server).await {
            Ok(t) => break t,
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    Ok(Arc::new(Client {
        http: http.clone(),
        url: url.to_owned(),
        token,
    }))
}

/// Single-row INSERTs into `table` with `clients` tasks spread over `over`.
async fn inserts(
    over: &[Arc<Client>],
    name: &str,
    clients: usize,
    seconds: f64,
    table: &str,
    next: &Arc<AtomicU64>,
) -> anyhow::Result<Outcome> {
    let (table, next) = (table.to_owned(), next.clone());
    load(
        over,
        name,
        clients,
        Duration::from_secs_f64(seconds),
        move |c| {
            let (table, next) = (table.clone(), next.clone());
            async move {
                let id = next.fetch_add(1, Ordering::Relaxed);
                c.exec(&format!(
                    "INSERT INTO {table} (id, v) VALUES ({id}, 'row {id}')"
                ))
                .await
                .map(|()| 1)
            }
        },
    )
    .await
}

pub fn run(args: ClusterBenchArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.seconds > 0.0, "--seconds must be positive");
    anyhow::ensure!(
        !args.dir.exists(),
        "{} exists; give a new --dir",
        args.dir.display()
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = rt.block_on(measure(&args));
    drop(rt);
    let _ = std::fs::remove_dir_all(&args.dir);
    result.map(|()| ExitCode::SUCCESS)
}

fn row(name: &str, o: &Outcome, note: &str) {
    println!(
        "{name:<46} {:>10.0} {:>9.2} {:>9.2}  {note}",
        o.rate(),
        o.latency.p50_us / 1e3,
        o.latency.p99_us / 1e3
    );
}

async fn measure(args: &ClusterBenchArgs) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;
    let next = Arc::new(AtomicU64::new(1));
    let table = "bench.t";
    let ddl = "CREATE NAMESPACE IF NOT EXISTS bench; \
               CREATE SHARED TABLE IF NOT EXISTS bench.t (id BIGINT PRIMARY KEY, v TEXT)";

    // One node.
    let single = {
        let node = spawn(
            1,
            args.base_port + 3,
            &args.dir.join("single"),
            None,
            (None, None),
        )
        .await?;
        let c = client(&http, &node.url).await?;
        c.sql(ddl).await?;
        let name = format!("one node, {} clients", args.clients);
        inserts(&[c], &name, args.clients, args.seconds, table, &next).await?
    };

    // Three nodes.
    let ports: Vec<u16> = (0..3).map(|i| args.base_port + i).collect();
    let peers = ports
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{}@127.0.0.1:{p}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    let dirs: Vec<PathBuf> = (1..=3).map(|i| args.dir.join(format!("n{i}"))).collect();
    let mut nodes = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        nodes.push(Some(
            spawn(
                i as u16 + 1,
                *port,
                &dirs[i],
                Some(&peers),
                (args.snapshot_every, args.snapshot_keep),
            )
            .await?,
        ));
    }
    let urls: Vec<String> = ports
        .iter()
        .map(|p| format!("http://127.0.0.1:{p}"))
        .collect();
    let leader = usize::from(agreed_leader(&http, &urls).await?) - 1;
    let lead = client(&http, &urls[leader]).await?;
    lead.sql(ddl).await?;
    let mut all = Vec::new();
    for u in &urls {
        all.push(client(&http, u).await?);
    }
    let name = format!("three nodes, {} clients on the leader", args.clients);
    let on_leader = inserts(
        std::slice::from_ref(&lead),
        &name,
        args.clients,
        args.seconds,
        table,
        &next,
    )
    .await?;
    let name = format!("three nodes, {} clients over all three", args.clients);
    let spread = inserts(&all, &name, args.clients, args.seconds, table, &next).await?;

    // Read-after-write through a follower.
    let follower = all[(leader + 1) % 3].clone();
    let mut reads = Vec::with_capacity(args.reads);
    let mut missed = 0;
    for _ in 0..args.reads {
        let id = next.fetch_add(1, Ordering::Relaxed);
        lead.exec(&format!("INSERT INTO {table} (id, v) VALUES ({id}, 'raw')"))
            .await?;
        let t = Instant::now();
        let r = follower
            .sql(&format!("SELECT id FROM {table} WHERE id = {id}"))
            .await?;
        reads.push(t.elapsed());
        if r["results"][0]["row_count"] != 1 {
            missed += 1;
        }
    }
    let reads = Latency::of(reads);

    // Starts node `i` again over its data directory and waits until it has caught up.
    let restart = |i: usize| {
        let (http, all, urls, next) = (&http, &all, &urls, &next);
        let (port, dir, peers) = (ports[i], dirs[i].clone(), peers.clone());
        async move {
            let id = u16::try_from(i + 1)?;
            let snapshots = (args.snapshot_every, args.snapshot_keep);
            let node = spawn(id, port, &dir, Some(&peers), snapshots).await?;
            let leader = lead_of(all, urls, http).await?;
            caught_up(&all[i], table, next, &leader).await?;
            anyhow::Ok(node)
        }
    };

    // Failover.
    let mut failovers = Vec::new();
    for k in 0..args.kills {
        let leader = usize::from(agreed_leader(&http, &urls).await?) - 1;
        let survivors: Vec<Arc<Client>> = (0..3)
            .filter(|i| *i != leader)
            .map(|i| all[i].clone())
            .collect();
        let killed = Instant::now();
        if let Some(mut p) = nodes[leader].take() {
            p.child.kill()?;
            p.child.wait()?;
        }
        let took = first_ack_after(&survivors, table, &next, killed).await?;
        failovers.push(took);
        eprintln!(
            "kill {}: a write acknowledged {:.0} ms after",
            k + 1,
            took.as_secs_f64() * 1e3
        );
        nodes[leader] = Some(restart(leader).await?);
    }
    let failover = Latency::of(failovers.clone());

    // A follower loses its data directory and comes back empty under its id.
    let leader = usize::from(agreed_leader(&http, &urls).await?) - 1;
    let wiped = (leader + 1) % 3;
    let rows = lead
        .sql(&format!("SELECT COUNT(*) AS n FROM {table}"))
        .await?["results"][0]["rows"][0][0]
        .to_string();
    if let Some(mut p) = nodes[wiped].take() {
        p.child.kill()?;
        p.child.wait()?;
    }
    std::fs::remove_dir_all(&dirs[wiped])?;
    let purged = gauge(&http, &urls[leader], "folddb_raft_purged_index").await;
    let started = Instant::now();
    nodes[wiped] = Some(restart(wiped).await?);
    let rejoined = started.elapsed();

    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("folddb bench cluster ({cores} cores on this machine, all nodes on it)");
    println!(
        "{:<46} {:>10} {:>9} {:>9}  notes",
        "scenario", "rows/s", "p50 ms", "p99 ms"
    );
    row(&single.name, &single, "");
    let ratio = |o: &Outcome| format!("{:.0}% of one node", 100.0 * o.rate() / single.rate());
    row(&on_leader.name, &on_leader, &ratio(&on_leader));
    row(&spread.name, &spread, &ratio(&spread));
    println!(
        "follower read-after-write, {} reads: p50 {:.2} ms, p99 {:.2} ms, {missed} missed the write",
        reads.samples,
        reads.p50_us / 1e3,
        reads.p99_us / 1e3
    );
    let max = failovers.iter().max().copied().unwrap_or_default();
    println!(
        "failover, {} leader kills: first acknowledged write after p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        failover.samples,
        failover.p50_us / 1e3,
        failover.p99_us / 1e3,
        max.as_secs_f64() * 1e3
    );
    let policy = match purged {
        0 => "the leader held its whole log: sent the log".to_owned(),
        p => format!("the leader had forgotten the log up to index {p}: sent a snapshot"),
    };
    println!(
        "a wiped member restarted empty: serving all {} rows again after {:.2} s ({policy})",
        rows.trim_matches('"'),
        rejoined.as_secs_f64(),
    );
    Ok(())
}

/// The value of gauge `name` in `url`'s `/metrics` (0 when absent).
async fn gauge(http: &reqwest::Client, url: &str, name: &str) -> u64 {
    let text = match http.get(format!("{url}/metrics")).send().await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    };
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// The client of the node that leads now.
async fn lead_of(
    all: &[Arc<Client>],
    urls: &[String],
    http: &reqwest::Client,
) -> anyhow::Result<Arc<Client>> {
    let leader = usize::from(agreed_leader(http, urls).await?) - 1;
    Ok(all[leader].clone())
}

/// Writes through `survivors` (4 writers, each retrying at once) until one is acknowledged:
/// the time from `killed` until then. Only writes sent after the kill count.
async fn first_ack_after(
    survivors: &[Arc<Client>],
    table: &str,
    next: &Arc<AtomicU64>,
    killed: Instant,
) -> anyhow::Result<Duration> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Duration>(4);
    let mut writers = Vec::new();
    for w in 0..4 {
        let (c, next, tx, table) = (
            survivors[w % survivors.len()].clone(),
            next.clone(),
            tx.clone(),
            table.to_owned(),
        );
        writers.push(tokio::spawn(async move {
            loop {
                let id = next.fetch_add(1, Ordering::Relaxed);
                let sql = format!("INSERT INTO {table} (id, v) VALUES ({id}, 'failover')");
                let sent = tokio::time::timeout(Duration::from_secs(5), c.exec(&sql)).await;
                if matches!(sent, Ok(Ok(()))) {
                    let _ = tx.send(killed.elapsed()).await;
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    drop(tx);
    let took = tokio::time::timeout(Duration::from_secs(60), rx.recv())
        .await
        .context("no write was acknowledged within 60 s of the kill")?
        .context("the writers stopped")?;
    for w in writers {
        w.abort();
    }
    Ok(took)
}

/// Waits until the restarted node `node` reads a row written through the leader after it
/// came back: it has caught up.
async fn caught_up(
    node: &Arc<Client>,
    table: &str,
    next: &Arc<AtomicU64>,
    leader: &Arc<Client>,
) -> anyhow::Result<()> {
    let id = next.fetch_add(1, Ordering::Relaxed);
    leader
        .exec(&format!(
            "INSERT INTO {table} (id, v) VALUES ({id}, 'marker')"
        ))
        .await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(r) = node
            .sql(&format!("SELECT id FROM {table} WHERE id = {id}"))
            .await
            && r["results"][0]["row_count"] == 1
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the restarted node did not catch up within 120 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
