//! What the change journal serves, measured over the public API against a running server
//! (`--url`):
//!
//! - `folddb bench tail`: records/s a log tail delivers to one client (with a credit
//!   window), against the raw read rate of the same entries from the log files
//!   (`--log-dir`, read in this process: what reading the log alone costs);
//! - `folddb bench resume`: time to `ready` for a live query resuming with `from` after
//!   many offline changes to a large table, against a fresh subscription's whole initial
//!   load of the same table.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use futures::{SinkExt, StreamExt};
use serde_json::{Value as Json, json};
use tokio_tungstenite::tungstenite::Message;

use super::sql::Client;
use crate::client::Ws;

#[derive(Debug, Args)]
pub struct TailBenchArgs {
    #[command(flatten)]
    server: crate::client::ServerArgs,
    /// Rows written, 1,000 per INSERT, then tailed.
    #[arg(long, default_value_t = 200_000)]
    rows: u64,
    /// Bytes of text per row.
    #[arg(long, default_value_t = 100)]
    row_bytes: usize,
    /// Records the client grants ahead of what it has read.
    #[arg(long, default_value_t = 10_000)]
    window: u64,
    /// The server's log directory (`data/log`), to read the same entries raw.
    #[arg(long)]
    log_dir: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
pub struct ResumeBenchArgs {
    #[command(flatten)]
    server: crate::client::ServerArgs,
    /// Rows in the table.
    #[arg(long, default_value_t = 1_000_000)]
    rows: u64,
    /// Rows updated while the subscriber is away (1,000 per UPDATE).
    #[arg(long, default_value_t = 100_000)]
    changes: u64,
    /// `options.batch_size` of both subscriptions.
    #[arg(long, default_value_t = 10_000)]
    batch_size: usize,
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

pub fn run_tail(args: TailBenchArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.rows > 0 && args.window > 0,
        "rows and window must be positive"
    );
    runtime()?.block_on(tail(args))
}

pub fn run_resume(args: ResumeBenchArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.rows > 0 && args.batch_size > 0,
        "rows and batch size must be positive"
    );
    runtime()?.block_on(resume(args))
}

/// The next message (and its size on the wire); an `error` fails the benchmark. Pings
/// while it waits, as client libraries do (API.md 2.7).
async fn next_json(ws: &mut Ws) -> anyhow::Result<(Json, usize)> {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let frame = match tokio::time::timeout(Duration::from_secs(3), ws.next()).await {
            Ok(f) => f.context("connection closed")??,
            Err(_) if Instant::now() < deadline => {
                ws.send(Message::text(r#"{"type":"ping"}"#)).await?;
                continue;
            }
            Err(_) => bail!("no message within 10 minutes"),
        };
        let len = frame.len();
        if let Some(m) = crate::client::server_message(frame) {
            let m = m?;
            if m["type"] == "error" {
                bail!("the server says: {m}");
            }
            return Ok((m, len));
        }
    }
}

/// Logs in, and creates `bench.<prefix><now>` (SHARED, `id BIGINT` key, `v TEXT`).
async fn table(
    server: &crate::client::ServerArgs,
    prefix: &str,
) -> anyhow::Result<(Client, String)> {
    let base = server.url.trim_end_matches('/').to_owned();
    let http = reqwest::Client::new();
    let token = super::sql::login(&http, server).await?;
    let client = Client {
        http,
        url: base,
        token,
    };
    let table = format!("bench.{prefix}{}", crate::auth::now_s());
    client.sql("CREATE NAMESPACE IF NOT EXISTS bench").await?;
    client
        .sql(&format!(
            "CREATE SHARED TABLE {table} (id BIGINT PRIMARY KEY, v TEXT) WITH (ACCESS_LEVEL = 'PUBLIC')"
        ))
        .await?;
    Ok((client, table))
}

/// Inserts rows `0..rows` of `row_bytes` bytes, 1,000 per statement.
pub(super) async fn load(
    client: &Client,
    table: &str,
    rows: u64,
    row_bytes: usize,
) -> anyhow::Result<Duration> {
    let pad = "x".repeat(row_bytes);
    let t = Instant::now();
    let mut id = 0;
    while id < rows {
        let end = (id + 1000).min(rows);
        let values: Vec<String> = (id..end).map(|i| format!("({i}, '{pad}')")).collect();
        client
            .sql(&format!(
                "INSERT INTO {table} (id, v) VALUES {}",
                values.join(", ")
            ))
            .await?;
        id = end;
    }
    Ok(t.elapsed())
}

async fn open(client: &Client) -> anyhow::Result<Ws> {
    let mut ws = crate::client::open_ws(&client.url, &client.token).await?;
    let (auth, _) = next_json(&mut ws).await?;
    anyhow::ensure!(auth["type"] == "auth_success", "no auth_success: {auth}");
    Ok(ws)
}

async fn send(ws: &mut Ws, m: Json) -> anyhow::Result<()> {
    ws.send(Message::text(m.to_string())).await?;
    Ok(())
}

async fn tail(args: TailBenchArgs) -> anyhow::Result<ExitCode> {
    let (client, table) = table(&args.server, "tail").await?;
    let mut ws = open(&client).await?;
    // A tail from now without credit: it starts before the load and reads after it.
    send(
        &mut ws,
        json!({"type": "tail", "tail": {"id": "b", "from": "now", "tables": [table], "credit": 0}}),
    )
    .await?;
    let (ack, _) = next_json(&mut ws).await?;
    let start = ack["start"].as_u64().context("tail_ack without start")?;
    eprint!("loading {} rows…", args.rows);
    let loaded = load(&client, &table, args.rows, args.row_bytes).await?;
    eprintln!(" {:.1} s", loaded.as_secs_f64());

    let t = Instant::now();
    send(
        &mut ws,
        json!({"type": "tail_credit", "id": "b", "credit": args.window}),
    )
    .await?;
    let (mut records, mut bytes, mut batches) = (0u64, 0usize, 0usize);
    // Credit goes back in steps of half the window: each message counts toward the
    // connection's message rate limit.
    let mut used = 0;
    while records < args.rows {
        let (m, len) = next_json(&mut ws).await?;
        anyhow::ensure!(m["type"] == "tail_batch", "not a batch: {m}");
        let n = m["records"].as_array().map_or(0, Vec::len);
        records += n as u64;
        bytes += len;
        batches += 1;
        used += n as u64;
        if used * 2 >= args.window {
            send(
                &mut ws,
                json!({"type": "tail_credit", "id": "b", "credit": used}),
            )
            .await?;
            used = 0;
        }
    }
    let tailed = t.elapsed();
    let rate = records as f64 / tailed.as_secs_f64();

    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "folddb bench tail against {} ({cores} cores on this machine)",
        client.url
    );
    println!(
        "tail: {records} records ({} bytes of row text each) in {batches} batches, {:.0} ms: {rate:.0} records/s, {:.1} MB/s on the wire (window {})",
        args.row_bytes,
        tailed.as_secs_f64() * 1e3,
        bytes as f64 / 1e6 / tailed.as_secs_f64(),
        args.window
    );
    if let Some(dir) = &args.log_dir {
        let t = Instant::now();
        let found = crate::log_cmd::scan(dir)?;
        let entries = found.read_entries(Some(folddb_log::LogIndex(start)), usize::MAX)?;
        let raw = t.elapsed();
        let payload: usize = entries.iter().map(|e| e.payload.len()).sum();
        let raw_rate = args.rows as f64 / raw.as_secs_f64();
        println!(
            "raw log read of the same entries: {} entries, {:.1} MB in {:.0} ms: {raw_rate:.0} row changes/s",
            entries.len(),
            payload as f64 / 1e6,
            raw.as_secs_f64() * 1e3
        );
        println!("tail / raw log read: {:.3}", rate / raw_rate);
    }
    Ok(ExitCode::SUCCESS)
}

/// Subscribes `sql` with `options` and reads to the `ready` batch: the time it took, the
/// rows of initial data and the change messages.
async fn to_ready(
    ws: &mut Ws,
    id: &str,
    sql: &str,
    options: Json,
) -> anyhow::Result<(Duration, usize, usize)> {
    let t = Instant::now();
    send(
        ws,
        json!({"type": "subscribe", "subscription": {"id": id, "sql": sql, "options": options}}),
    )
    .await?;
    let (mut rows, mut changes) = (0, 0);
    loop {
        let (m, _) = next_json(ws).await?;
        match m["type"].as_str() {
            Some("change") => changes += 1,
            Some("initial_data_batch") => {
                rows += m["rows"].as_array().map_or(0, Vec::len);
                if m["batch_control"]["status"] == "ready" {
                    return Ok((t.elapsed(), rows, changes));
                }
                send(ws, json!({"type": "next_batch", "subscription_id": id})).await?;
            }
            _ => {}
        }
    }
}

async fn resume(args: ResumeBenchArgs) -> anyhow::Result<ExitCode> {
    let (client, table) = table(&args.server, "resume").await?;
    eprint!("loading {} rows…", args.rows);
    let loaded = load(&client, &table, args.rows, 100).await?;
    eprintln!(" {:.1} s", loaded.as_secs_f64());
    let r = client
        .sql(&format!("SELECT MAX(_seq) FROM {table}"))
        .await?;
    let from = match &r["results"][0]["rows"][0][0] {
        Json::String(s) => s.parse::<i64>()?,
        other => other.as_i64().context("a _seq")?,
    };
    eprint!("updating {} rows…", args.changes);
    let mut id = 0;
    while id < args.changes.min(args.rows) {
        let end = (id + 1000).min(args.changes);
        client
            .sql(&format!(
                "UPDATE {table} SET v = 'offline' WHERE id >= {id} AND id < {end}"
            ))
            .await?;
        id = end;
    }
    eprintln!(" done");
    let sql = format!("SELECT * FROM {table}");
    let mut ws = open(&client).await?;
    let (resumed, _, changes) = to_ready(
        &mut ws,
        "r",
        &sql,
        json!({"from": from, "batch_size": args.batch_size}),
    )
    .await?;
    anyhow::ensure!(
        changes as u64 == args.changes.min(args.rows),
        "{changes} changes resumed"
    );
    let (fresh, rows, _) =
        to_ready(&mut ws, "f", &sql, json!({"batch_size": args.batch_size})).await?;
    anyhow::ensure!(rows as u64 == args.rows, "{rows} rows of initial data");

    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "folddb bench resume against {} ({cores} cores on this machine)",
        client.url
    );
    println!(
        "resume after {changes} offline changes to a {}-row table: ready in {:.0} ms ({:.0} changes/s)",
        args.rows,
        resumed.as_secs_f64() * 1e3,
        changes as f64 / resumed.as_secs_f64()
    );
    println!(
        "fresh subscription, whole initial load of {rows} rows: ready in {:.0} ms; resume / fresh: {:.3}",
        fresh.as_secs_f64() * 1e3,
        resumed.as_secs_f64() / fresh.as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}
