//! `folddb bench sql --url …`: end-to-end load against any server that speaks this API
//! (API.md 1.5, 1.7), using nothing but HTTP: log in, create a scratch table, and run the
//! scenarios — single-row INSERT with N clients, 1,000-row INSERTs, point SELECT by primary
//! key, SELECT with a filter over 10,000 rows, and a mix — reporting rows/s and
//! p50/p99/p99.9 latency, with a progress line while each runs. After the INSERT scenarios
//! it counts the rows the server holds against the rows it acknowledged.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use serde_json::{Value as Json, json};

use super::Latency;

#[derive(Debug, Args)]
pub struct SqlBenchArgs {
    #[command(flatten)]
    pub(super) server: crate::client::ServerArgs,
    /// Seconds per scenario.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Concurrent clients of the single-row INSERT scenario.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Concurrent clients of the 1,000-row INSERT scenario.
    #[arg(long, default_value_t = 4)]
    batch_clients: usize,
    /// Scenarios to run (insert, batch, point, filter, mixed; on request: isolation, login,
    /// scans — point reads while 4 clients scan 200,000 rows —, select-all — `SELECT *` of a
    /// million rows streamed, with the server's memory growth —, flush-insert — INSERT
    /// latency while a million hot rows are flushed, with the server's default flush policy
    /// off —, topic-insert — single-row INSERTs into a table with one topic route —,
    /// topic-latency — publish → consume latency at 1,000 rows/s —, topic-consume — one
    /// group draining 100,000 messages —, vector-exact — exact top-10 cosine searches
    /// over `--vectors` 128-dimensional embeddings, 4 clients — and vector-index — the
    /// same through a vector index: build rate, memory, recall@10, queries/s, INSERT cost —
    /// and files — 10 MiB FILE uploads and downloads against writing and reading the same
    /// bytes directly — and backup — BACKUP and RESTORE DATABASE of `--backup-mb` MiB of
    /// rows, against copying the backup's files directly; the server must run on this
    /// machine).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "insert,batch,point,filter,mixed"
    )]
    scenarios: Vec<String>,
    /// isolation: distinct users in the many-users run (each also a concurrent client).
    #[arg(long, default_value_t = 16)]
    pub(super) users: usize,
    /// login: concurrent clients logging in.
    #[arg(long, default_value_t = 4)]
    pub(super) login_clients: usize,
    /// vector-exact, vector-index: embeddings in the searched table.
    #[arg(long, default_value_t = 100_000)]
    vectors: u64,
    /// backup: MiB of row payload in the namespace backed up and restored.
    #[arg(long, default_value_t = 1024)]
    backup_mb: u64,
}

pub(super) struct Client {
    pub(super) http: reqwest::Client,
    pub(super) url: String,
    pub(super) token: String,
}

impl Client {
    /// Runs one statement; `Ok(rows)` on success.
    pub(super) async fn sql(&self, sql: &str) -> anyhow::Result<Json> {
        let r = self
            .http
            .post(format!("{}/v1/api/sql", self.url))
            .bearer_auth(&self.token)
            .json(&json!({ "sql": sql }))
            .send()
            .await?;
        let status = r.status();
        let body: Json = r.json().await?;
        if !status.is_success() {
            bail!("{status}: {body}");
        }
        Ok(body)
    }

    /// Runs one statement whose answer the caller does not read: the body is parsed only to
    /// report an error, so the load generator spends less of the CPU it shares with the server.
    pub(super) async fn exec(&self, sql: &str) -> anyhow::Result<()> {
        #[derive(serde::Serialize)]
        struct Request<'a> {
            sql: &'a str,
        }
        let r = self
            .http
            .post(format!("{}/v1/api/sql", self.url))
            .bearer_auth(&self.token)
            .json(&Request { sql })
            .send()
            .await?;
        let status = r.status();
        let body = r.bytes().await?;
        if !status.is_success() {
            bail!("{status}: {}", String::from_utf8_lossy(&body));
        }
        Ok(())
    }
}

pub(super) struct Outcome {
    pub(super) name: String,
    pub(super) rows: u64,
    pub(super) elapsed: Duration,
    pub(super) latency: Latency,
    pub(super) note: String,
    /// The server's CPU time per row over the scenario, µs (from `system.stats`), when the
    /// server reports it: steadier than rows/s on a machine the bench shares with it.
    pub(super) server_cpu_us: Option<f64>,
}

impl Outcome {
    pub(super) fn rate(&self) -> f64 {
        self.rows as f64 / self.elapsed.as_secs_f64()
    }
}

pub fn run(args: SqlBenchArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.seconds > 0.0, "--seconds must be positive");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let outcomes = rt.block_on(measure(&args))?;
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "folddb bench sql against {} ({cores} cores on this machine)",
        args.server.url
    );
    println!(
        "{:<34} {:>12} {:>10} {:>10} {:>10} {:>14}  notes",
        "scenario", "rows/s", "p50 ms", "p99 ms", "p99.9 ms", "server µs/row"
    );
    for o in &outcomes {
        let cpu = o
            .server_cpu_us
            .map_or("-".to_owned(), |c| format!("{c:.1}"));
        println!(
            "{:<34} {:>12.0} {:>10.3} {:>10.3} {:>10.3} {:>14}  {}",
            o.name,
            o.rows as f64 / o.elapsed.as_secs_f64(),
            o.latency.p50_us / 1e3,
            o.latency.p99_us / 1e3,
            o.latency.p999_us / 1e3,
            cpu,
            o.note
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Logs in as the given user, first setting a fresh server up with these credentials.
pub(super) async fn login(
    http: &reqwest::Client,
    server: &crate::client::ServerArgs,
) -> anyhow::Result<String> {
    let body = json!({"user": server.user, "password": server.password});
    let r = http
        .post(format!("{}/v1/api/auth/login", server.url))
        .json(&body)
        .send()
        .await
        .context("connecting to the server")?;
    if r.status().is_success() {
        let j: Json = r.json().await?;
        return j["access_token"]
            .as_str()
            .map(str::to_owned)
            .context("login answer without access_token");
    }
    // A fresh server: set it up with these credentials, then log in.
    let setup =
        json!({"user": server.user, "password": server.password, "root_password": server.password});
    let s = http
        .post(format!("{}/v1/api/auth/setup", server.url))
        .json(&setup)
        .send()
        .await?;
    if !s.status().is_success() {
        bail!(
            "cannot log in as {} nor set the server up: {}",
            server.user,
            s.text().await?
        );
    }
    Box::pin(login(http, server)).await
}

async fn measure(args: &SqlBenchArgs) -> anyhow::Result<Vec<Outcome>> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;
    let token = login(&http, &args.server).await?;
    let client = Arc::new(Client {
        http,
        url: args.server.url.trim_end_matches('/').to_owned(),
        token,
    });
    let run_id = crate::auth::now_s();
    let table = format!("bench.t{run_id}");
    client.sql("CREATE NAMESPACE IF NOT EXISTS bench").await?;
    client
        .sql(&format!(
            "CREATE SHARED TABLE {table} (id BIGINT PRIMARY KEY, n INT NOT NULL, v TEXT)"
        ))
        .await?;
    let next_id = Arc::new(AtomicU64::new(1));
    let duration = Duration::from_secs_f64(args.seconds);
    let mut out = Vec::new();
    let mut acked_total = 0u64;
    for scenario in &args.scenarios {
        match scenario.as_str() {
            "insert" => {
                let (table, next_id) = (table.clone(), next_id.clone());
                let o = load(
                    std::slice::from_ref(&client),
                    &format!("single-row INSERT, {} clients", args.clients),
                    args.clients,
                    duration,
                    move |c| {
                        let (table, next_id) = (table.clone(), next_id.clone());
                        async move {
                            let id = next_id.fetch_add(1, Ordering::Relaxed);
                            c.exec(&format!(
                                "INSERT INTO {table} (id, n, v) VALUES ({id}, {}, 'row {id}')",
                                id % 10_000
                            ))
                            .await
                            .map(|()| 1)
                        }
                    },
                )
                .await?;
                acked_total += o.rows;
                out.push(o);
            }
            "batch" => {
                let (table, next_id) = (table.clone(), next_id.clone());
                let o = load(
                    std::slice::from_ref(&client),
                    &format!("1,000-row INSERT, {} clients", args.batch_clients),
                    args.batch_clients,
                    duration,
                    move |c| {
                        let (table, next_id) = (table.clone(), next_id.clone());
                        async move {
                            let first = next_id.fetch_add(1000, Ordering::Relaxed);
                            let values: Vec<String> = (first..first + 1000)
                                .map(|id| format!("({id}, {}, 'row {id}')", id % 10_000))
                                .collect();
                            c.exec(&format!(
                                "INSERT INTO {table} (id, n, v) VALUES {}",
                                values.join(", ")
                            ))
                            .await
                            .map(|()| 1000)
                        }
                    },
                )
                .await?;
                acked_total += o.rows;
                out.push(o);
            }
            "point" => {
                ensure_rows(&client, &table, &next_id, &mut acked_total, 10_000).await?;
                let (table, max) = (table.clone(), next_id.load(Ordering::Relaxed) - 1);
                out.push(
                    load(
                        std::slice::from_ref(&client),
                        "point SELECT by PK, 1 client",
                        1,
                        duration,
                        point_reads(table, max),
                    )
                    .await?,
                );
            }
            "scans" => {
                // Point reads on an idle server, then while 4 clients scan the whole table:
                // scans run off the server's async threads, so the point reads barely notice.
                ensure_rows(&client, &table, &next_id, &mut acked_total, 200_000).await?;
                let max = next_id.load(Ordering::Relaxed) - 1;
                let point = |table: String| point_reads(table, max);
                let clients = std::slice::from_ref(&client);
                let idle = load(
                    clients,
                    "point SELECT, idle",
                    1,
                    duration,
                    point(table.clone()),
                )
                .await?;
                let stop = Arc::new(AtomicBool::new(false));
                let scanners: Vec<_> = (0..4)
                    .map(|_| {
                        let (c, stop, table) = (client.clone(), stop.clone(), table.clone());
                        tokio::spawn(async move {
                            let mut scans = 0u64;
                            while !stop.load(Ordering::Relaxed) {
                                c.sql(&format!(
                                    "SELECT n % 100 AS g, COUNT(*), MAX(v) FROM {table} GROUP BY n % 100"
                                ))
                                .await?;
                                scans += 1;
                            }
                            anyhow::Ok(scans)
                        })
                    })
                    .collect();
                let mut busy = load(
                    clients,
                    "point SELECT, 4 clients scanning",
                    1,
                    duration,
                    point(table.clone()),
                )
                .await?;
                stop.store(true, Ordering::Relaxed);
                let mut scans = 0;
                for h in scanners {
                    scans += h.await??;
                }
                busy.note = format!(
                    "p99 {:.2}x the idle server's; {scans} full scans of {max} rows meanwhile",
                    busy.latency.p99_us / idle.latency.p99_us.max(1.0)
                );
                out.push(idle);
                out.push(busy);
            }
            "filter" => {
                let small = format!("bench.f{run_id}");
                client
                    .sql(&format!(
                        "CREATE SHARED TABLE IF NOT EXISTS {small} (id BIGINT PRIMARY KEY, n INT NOT NULL, v TEXT)"
                    ))
                    .await?;
                for chunk in 0..10 {
                    let values: Vec<String> = (chunk * 1000..(chunk + 1) * 1000)
                        .map(|id| format!("({id}, {}, 'row {id}')", id % 100))
                        .collect();
                    client
                        .sql(&format!(
                            "INSERT INTO {small} (id, n, v) VALUES {}",
                            values.join(", ")
                        ))
                        .await?;
                }
                out.push(
                    load(
                        std::slice::from_ref(&client),
                        "SELECT filter over 10k rows, 1 client",
                        1,
                        duration,
                        move |c| {
                            let small = small.clone();
                            async move {
                                let r = c
                                    .sql(&format!(
                                        "SELECT id, v FROM {small} WHERE n = 7 AND v LIKE 'row %'"
                                    ))
                                    .await?;
                                Ok(r["results"][0]["row_count"].as_u64().unwrap_or(0))
                            }
                        },
                    )
                    .await?,
                );
            }
            "mixed" => {
                ensure_rows(&client, &table, &next_id, &mut acked_total, 10_000).await?;
                let (table, next_id) = (table.clone(), next_id.clone());
                let o = load(
                    std::slice::from_ref(&client),
                    "mixed 80% point / 20% insert, 16 clients",
                    16,
                    duration,
                    move |c| {
                        let (table, next_id) = (table.clone(), next_id.clone());
                        async move {
                            if fastrand(10) < 2 {
                                let id = next_id.fetch_add(1, Ordering::Relaxed);
                                c.sql(&format!(
                                    "INSERT INTO {table} (id, n, v) VALUES ({id}, 1, 'm')"
                                ))
                                .await
                                .map(|_| 1)
                            } else {
                                let id = 1 + fastrand(next_id.load(Ordering::Relaxed) - 1);
                                c.sql(&format!("SELECT * FROM {table} WHERE id = {id}"))
                                    .await
                                    .map(|_| 1)
                            }
                        }
                    },
                )
                .await?;
                out.push(o);
            }
            "isolation" => {
                out.extend(super::users::isolation(&client, args, duration).await?);
            }
            "login" => out.push(super::users::logins(&client, args, duration).await?),
            "select-all" => {
                let big = format!("bench.s{run_id}");
                out.push(super::big::select_all(&client, &big).await?);
            }
            "flush-insert" => {
                let big = format!("bench.w{run_id}");
                out.extend(super::big::insert_during_flush(&client, &big, duration).await?);
            }
            "topic-insert" => out.push(
                super::topics::routed_insert(
                    &client,
                    run_id,
                    args.clients,
                    duration,
                    next_id.clone(),
                )
                .await?,
            ),
            "topic-latency" => {
                out.push(super::topics::latency(&client, run_id, 1000, duration).await?)
            }
            "topic-consume" => {
                out.push(super::topics::consume_rate(&client, run_id, 100_000).await?)
            }
            "vector-exact" => {
                out.extend(super::vector::exact(&client, run_id, args.vectors, 4, duration).await?)
            }
            "vector-index" => out
                .extend(super::vector::indexed(&client, run_id, args.vectors, 4, duration).await?),
            "files" => out.extend(super::files::upload_download(&client, run_id, duration).await?),
            "backup" => {
                out.extend(super::backup::backup_restore(&client, run_id, args.backup_mb).await?)
            }
            other => bail!("unknown scenario {other}"),
        }
    }
    // Every acknowledged row is there (the mixed scenario's inserts are counted separately).
    let r = client.sql(&format!("SELECT COUNT(*) FROM {table}")).await?;
    let held: u64 = r["results"][0]["rows"][0][0]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    if let Some(o) = out.iter_mut().find(|o| o.name.starts_with("single-row")) {
        o.note = format!("server holds {held} rows; INSERT scenarios acknowledged {acked_total}");
    }
    if !args.scenarios.iter().any(|s| s == "mixed") && held != acked_total {
        bail!("the server holds {held} rows but acknowledged {acked_total}");
    }
    Ok(out)
}

/// The CPU time the server has spent, ms (`system.stats`' `process_cpu_ms`), if it says.
async fn server_cpu_ms(client: &Client) -> Option<u64> {
    let r = client
        .sql("SELECT metric_value FROM system.stats WHERE metric_name = 'process_cpu_ms'")
        .await
        .ok()?;
    r["results"][0]["rows"][0][0].as_str()?.parse().ok()
}

/// A point read of a random row of `table` (ids 1..=`max`) by primary key; the rows it read.
fn point_reads(
    table: String,
    max: u64,
) -> impl Fn(
    Arc<Client>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<u64>> + Send>>
+ Send
+ Sync
+ Clone
+ 'static {
    move |c: Arc<Client>| {
        let table = table.clone();
        Box::pin(async move {
            let id = 1 + fastrand(max);
            let r = c
                .sql(&format!("SELECT * FROM {table} WHERE id = {id}"))
                .await?;
            Ok(r["results"][0]["row_count"].as_u64().unwrap_or(0))
        })
    }
}

/// Makes sure the table has at least `n` rows (for the read scenarios).
async fn ensure_rows(
    client: &Client,
    table: &str,
    next_id: &AtomicU64,
    acked: &mut u64,
    n: u64,
) -> anyhow::Result<()> {
    while next_id.load(Ordering::Relaxed) <= n {
        let first = next_id.fetch_add(1000, Ordering::Relaxed);
        let values: Vec<String> = (first..first + 1000)
            .map(|id| format!("({id}, {}, 'row {id}')", id % 10_000))
            .collect();
        client
            .sql(&format!(
                "INSERT INTO {table} (id, n, v) VALUES {}",
                values.join(", ")
            ))
            .await?;
        *acked += 1000;
    }
    Ok(())
}

/// A cheap, good-enough random number below `n` (xorshift on a thread-local state).
fn fastrand(n: u64) -> u64 {
    use std::cell::Cell;
    thread_local!(static STATE: Cell<u64> = Cell::new(0x9E37_79B9_7F4A_7C15 ^ std::process::id() as u64));
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        if n == 0 { 0 } else { x % n }
    })
}

/// Runs `op` in a loop on `tasks` tasks for `duration` (task `i` speaks as
/// `clients[i % clients.len()]`); each call returns the rows it did.
pub(super) async fn load<F, Fut>(
    clients: &[Arc<Client>],
    name: &str,
    tasks: usize,
    duration: Duration,
    op: F,
) -> anyhow::Result<Outcome>
where
    F: Fn(Arc<Client>) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = anyhow::Result<u64>> + Send,
{
    let never = Arc::new(AtomicBool::new(false));
    load_until(clients, name, tasks, duration, &never, op).await
}

/// [`load`], ending early once `done` is set.
pub(super) async fn load_until<F, Fut>(
    clients: &[Arc<Client>],
    name: &str,
    tasks: usize,
    duration: Duration,
    done: &AtomicBool,
    op: F,
) -> anyhow::Result<Outcome>
where
    F: Fn(Arc<Client>) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = anyhow::Result<u64>> + Send,
{
    let cpu_before = server_cpu_ms(&clients[0]).await;
    let rows = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let mut handles = Vec::new();
    for i in 0..tasks {
        let client = clients[i % clients.len()].clone();
        let (rows, stop, op) = (rows.clone(), stop.clone(), op.clone());
        handles.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let n = op(client.clone()).await?;
                samples.push(t.elapsed());
                rows.fetch_add(n, Ordering::Relaxed);
            }
            anyhow::Ok(samples)
        }));
    }
    while start.elapsed() < duration && !done.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let done = start.elapsed().as_secs_f64() / duration.as_secs_f64();
        let bar = "#".repeat((done.min(1.0) * 30.0) as usize);
        eprint!(
            "\r{name:<40} [{bar:<30}] {:>10.0} rows/s",
            rows.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
        );
        let _ = std::io::stderr().flush();
    }
    stop.store(true, Ordering::Relaxed);
    let mut samples = Vec::new();
    for t in handles {
        samples.extend(t.await??);
    }
    let elapsed = start.elapsed();
    eprintln!();
    let rows = rows.load(Ordering::Relaxed);
    let server_cpu_us = match (cpu_before, server_cpu_ms(&clients[0]).await) {
        (Some(before), Some(after)) if rows > 0 => {
            Some(after.saturating_sub(before) as f64 * 1e3 / rows as f64)
        }
        _ => None,
    };
    Ok(Outcome {
        name: name.to_owned(),
        rows,
        elapsed,
        latency: Latency::of(samples),
        note: String::new(),
        server_cpu_us,
    })
}
