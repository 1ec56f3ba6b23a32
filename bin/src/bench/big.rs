//! `bench sql` scenarios over one table of a million rows (#15), on request:
//!
//! - `select-all`: the table, half flushed and half hot, read whole with `SELECT *` and
//!   streamed to this client, which keeps none of it; the server's resident memory is sampled
//!   (`system.stats`) while it answers, and its growth reported.
//! - `flush-insert`: single-row INSERT latency into the table, all hot, before and while a
//!   flush of its million rows runs. Run the server with `FOLDDB_DEFAULT_FLUSH_POLICY=off`,
//!   so that the rows are still hot when the flush is asked for.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};

use super::Latency;
use super::sql::{Client, Outcome, load, load_until};

/// Rows of the scenarios' table.
const ROWS: u64 = 1_000_000;

/// Creates `table` as #15's benchmark describes it (id, an int group, a double, text of about
/// 30 bytes).
pub(super) async fn create(client: &Client, table: &str) -> anyhow::Result<()> {
    client
        .sql(&format!(
            "CREATE SHARED TABLE {table} (id BIGINT PRIMARY KEY, g INT NOT NULL, x DOUBLE, \
             t TEXT)"
        ))
        .await
        .map(drop)
}

/// Inserts rows `from..to` into `table` in 1,000-row INSERTs from 4 clients.
pub(super) async fn fill(
    client: &Arc<Client>,
    table: &str,
    from: u64,
    to: u64,
) -> anyhow::Result<()> {
    let next = Arc::new(AtomicU64::new(from));
    let writers: Vec<_> = (0..4)
        .map(|_| {
            let (client, next, table) = (client.clone(), next.clone(), table.to_owned());
            tokio::spawn(async move {
                loop {
                    let first = next.fetch_add(1000, Ordering::Relaxed);
                    if first >= to {
                        return anyhow::Ok(());
                    }
                    let values: Vec<String> = (first..(first + 1000).min(to))
                        .map(|id| {
                            format!(
                                "({id}, {}, {}.5, 'text of row {id:>12} padded')",
                                id % 100,
                                id % 997
                            )
                        })
                        .collect();
                    client
                        .exec(&format!(
                            "INSERT INTO {table} (id, g, x, t) VALUES {}",
                            values.join(", ")
                        ))
                        .await?;
                }
            })
        })
        .collect();
    for w in writers {
        w.await??;
    }
    Ok(())
}

/// Asks for a flush of `table` and waits for its job to end; how long the job took.
pub(super) async fn flush(client: &Client, table: &str) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let r = client.sql(&format!("STORAGE FLUSH TABLE {table}")).await?;
    let message = r["results"][0]["message"].as_str().unwrap_or_default();
    let Some((_, id)) = message.rsplit_once("Job ID: ") else {
        bail!("no flush job: {message}");
    };
    loop {
        let r = client
            .sql(&format!(
                "SELECT status, message FROM system.jobs WHERE job_id = '{id}'"
            ))
            .await?;
        let status = r["results"][0]["rows"][0][0].as_str().unwrap_or("queued");
        match status {
            "queued" | "running" => tokio::time::sleep(Duration::from_millis(50)).await,
            "completed" => return Ok(start.elapsed()),
            other => bail!("flush job {id} {other}: {}", r["results"][0]["rows"][0][1]),
        }
    }
}

/// The server's resident memory now, bytes (`system.stats`).
async fn server_rss(client: &Client) -> anyhow::Result<u64> {
    let r = client
        .sql("SELECT metric_value FROM system.stats WHERE metric_name = 'process_rss_bytes'")
        .await?;
    r["results"][0]["rows"][0][0]
        .as_str()
        .and_then(|s| s.parse().ok())
        .context("system.stats has no process_rss_bytes")
}

/// The `select-all` scenario on a new table `table`.
pub(super) async fn select_all(client: &Arc<Client>, table: &str) -> anyhow::Result<Outcome> {
    create(client, table).await?;
    eprintln!("select-all: loading {ROWS} rows, the first half flushed");
    fill(client, table, 0, ROWS / 2).await?;
    flush(client, table).await?;
    fill(client, table, ROWS / 2, ROWS).await?;
    let baseline = server_rss(client).await?;
    // Sample the server's memory while it answers.
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (client, stop) = (client.clone(), stop.clone());
        tokio::spawn(async move {
            let mut peak = 0u64;
            while !stop.load(Ordering::Relaxed) {
                peak = peak.max(server_rss(&client).await?);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            anyhow::Ok(peak)
        })
    };
    let start = Instant::now();
    let mut r = client
        .http
        .post(format!("{}/v1/api/sql", client.url))
        .bearer_auth(&client.token)
        .json(&serde_json::json!({ "sql": format!("SELECT * FROM {table}") }))
        .send()
        .await?;
    ensure!(r.status().is_success(), "SELECT * answered {}", r.status());
    let first_byte = start.elapsed();
    // The answer's first and last bytes: its status and row count (in any key order).
    let (mut bytes, mut head, mut tail) = (0usize, Vec::new(), Vec::new());
    while let Some(chunk) = r.chunk().await? {
        bytes += chunk.len();
        if head.len() < 256 {
            head.extend_from_slice(&chunk[..chunk.len().min(256)]);
        }
        tail.extend_from_slice(&chunk);
        let keep = tail.len().saturating_sub(256);
        tail.drain(..keep);
    }
    let elapsed = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    let peak = sampler.await??.max(server_rss(client).await?);
    let ends = format!(
        "{} … {}",
        String::from_utf8_lossy(&head),
        String::from_utf8_lossy(&tail)
    );
    ensure!(
        ends.contains(r#""status":"success""#),
        "unexpected answer: {ends}"
    );
    let rows: u64 = ends
        .split_once(r#""row_count":"#)
        .and_then(|(_, rest)| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no row_count in the answer: {ends}"))?;
    ensure!(rows == ROWS, "SELECT * returned {rows} rows, not {ROWS}");
    Ok(Outcome {
        name: "SELECT * of 1M rows, streamed".into(),
        rows,
        elapsed,
        latency: Latency::of(vec![elapsed]),
        note: format!(
            "server RSS +{} MiB while answering ({} -> {} MiB); first byte after {:.1} ms; {} MiB of JSON",
            peak.saturating_sub(baseline) >> 20,
            baseline >> 20,
            peak >> 20,
            first_byte.as_secs_f64() * 1e3,
            bytes >> 20
        ),
        server_cpu_us: None,
    })
}

/// The `flush-insert` scenario on a new table `table`: INSERT latency before and during a
/// flush of its million hot rows.
pub(super) async fn insert_during_flush(
    client: &Arc<Client>,
    table: &str,
    duration: Duration,
) -> anyhow::Result<Vec<Outcome>> {
    create(client, table).await?;
    eprintln!("flush-insert: loading {ROWS} hot rows");
    fill(client, table, 0, ROWS).await?;
    let next = Arc::new(AtomicU64::new(ROWS));
    let insert = {
        let table = table.to_owned();
        move |c: Arc<Client>| {
            let (table, next) = (table.clone(), next.clone());
            async move {
                let id = next.fetch_add(1, Ordering::Relaxed);
                c.exec(&format!(
                    "INSERT INTO {table} (id, g, x, t) VALUES ({id}, 1, 0.5, 'during')"
                ))
                .await
                .map(|()| 1)
            }
        }
    };
    let clients = std::slice::from_ref(client);
    let idle = load(
        clients,
        "single-row INSERT, 16 clients, idle",
        16,
        duration,
        insert.clone(),
    )
    .await?;
    // The load runs while the flush does, and stops when it ends.
    let flushed = Arc::new(AtomicBool::new(false));
    let flusher = {
        let (client, table, flushed) = (client.clone(), table.to_owned(), flushed.clone());
        tokio::spawn(async move {
            let took = flush(&client, &table).await;
            flushed.store(true, Ordering::Relaxed);
            took
        })
    };
    let mut busy = load_until(
        clients,
        "single-row INSERT, 16 clients, flushing",
        16,
        Duration::from_secs(600),
        &flushed,
        insert,
    )
    .await?;
    let took = flusher.await??;
    busy.note = format!(
        "p99 {:.2}x idle's; the flush of {ROWS} rows took {:.1} s",
        busy.latency.p99_us / idle.latency.p99_us.max(1.0),
        took.as_secs_f64(),
    );
    Ok(vec![idle, busy])
}
