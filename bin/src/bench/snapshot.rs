//! `folddb bench snapshot --url …`: live-query initial data over the public API (API.md
//! 2.6). Loads a SHARED table of `--rows` rows of `--row-bytes` bytes, opens `--subs`
//! subscriptions on one WebSocket that each read their first page and stop, and reports
//! what they cost the server in resident memory (`system.stats`); then pages one
//! subscription to the end and reports how long the whole initial load took.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use futures::{SinkExt, StreamExt};
use serde_json::{Value as Json, json};
use tokio_tungstenite::tungstenite::Message;

use super::Latency;
use super::sql::Client;
use crate::client::Ws;

#[derive(Debug, Args)]
pub struct SnapshotBenchArgs {
    #[command(flatten)]
    server: crate::client::ServerArgs,
    /// Rows in the table.
    #[arg(long, default_value_t = 20_000)]
    rows: u64,
    /// Bytes of text per row.
    #[arg(long, default_value_t = 1000)]
    row_bytes: usize,
    /// Subscriptions that read their first page and stop.
    #[arg(long, default_value_t = 10)]
    subs: usize,
    /// Rows per initial batch (`options.batch_size`).
    #[arg(long, default_value_t = 1000)]
    batch_size: usize,
}

pub fn run(args: SnapshotBenchArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.rows > 0 && args.subs > 0 && args.batch_size > 0,
        "rows, subs and batch size must be positive"
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(measure(args))
}

async fn next_json(ws: &mut Ws) -> anyhow::Result<Json> {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(600), ws.next())
            .await
            .context("no message within 10 minutes")?
            .context("connection closed")??;
        if let Some(m) = crate::client::server_message(frame) {
            let m = m?;
            if m["type"] == "error" {
                bail!("the server says: {m}");
            }
            return Ok(m);
        }
    }
}

/// `system.stats`' resident memory now and at peak, bytes (`None`: the server does not say).
async fn server_memory(client: &Client) -> Option<(u64, u64)> {
    let r = client
        .sql("SELECT metric_name, metric_value FROM system.stats WHERE metric_name LIKE 'process_%rss_bytes'")
        .await
        .ok()?;
    let rows = r["results"][0]["rows"].as_array()?;
    let get = |name: &str| -> Option<u64> {
        rows.iter()
            .find(|m| m[0] == name)
            .and_then(|m| m[1].as_str()?.parse().ok())
    };
    Some((get("process_rss_bytes")?, get("process_peak_rss_bytes")?))
}

fn mib(b: u64) -> f64 {
    b as f64 / (1u64 << 20) as f64
}

async fn subscribe(ws: &mut Ws, id: &str, sql: &str, batch_size: usize) -> anyhow::Result<Json> {
    let sub = json!({"type": "subscribe", "subscription": {"id": id, "sql": sql,
        "options": {"batch_size": batch_size}}});
    ws.send(Message::text(sub.to_string())).await?;
    let ack = next_json(ws).await?;
    anyhow::ensure!(ack["type"] == "subscription_ack", "no ack: {ack}");
    next_json(ws).await
}

fn rows_of(m: &Json) -> usize {
    m["rows"].as_array().map_or(0, Vec::len)
}

async fn measure(args: SnapshotBenchArgs) -> anyhow::Result<ExitCode> {
    let base = args.server.url.trim_end_matches('/').to_owned();
    let http = reqwest::Client::new();
    let token = super::sql::login(&http, &args.server).await?;
    let client = Client {
        http,
        url: base.clone(),
        token: token.clone(),
    };
    let table = format!("bench.snap{}", crate::auth::now_s());
    client.sql("CREATE NAMESPACE IF NOT EXISTS bench").await?;
    client
        .sql(&format!(
            "CREATE SHARED TABLE {table} (id BIGINT PRIMARY KEY, v TEXT) WITH (ACCESS_LEVEL = 'PUBLIC')"
        ))
        .await?;
    eprint!("loading {} rows…", args.rows);
    super::journal::load(&client, &table, args.rows, args.row_bytes).await?;
    eprintln!(" done");
    let sql = format!("SELECT * FROM {table}");
    let before = server_memory(&client).await;
    let mut ws = crate::client::open_ws(&base, &token).await?;
    let auth = next_json(&mut ws).await?;
    anyhow::ensure!(auth["type"] == "auth_success", "no auth_success: {auth}");
    let mut firsts = Vec::new();
    for k in 0..args.subs {
        let t = Instant::now();
        let first = subscribe(&mut ws, &format!("held{k}"), &sql, args.batch_size).await?;
        firsts.push(t.elapsed());
        anyhow::ensure!(
            rows_of(&first) == args.batch_size.min(args.rows as usize),
            "a first page of {} rows",
            rows_of(&first)
        );
    }
    let held = server_memory(&client).await;

    // One more subscription (in place of the first: a user holds 10 by default), paged
    // to the end.
    let unsub = json!({"type": "unsubscribe", "subscription_id": "held0"});
    ws.send(Message::text(unsub.to_string())).await?;
    let t = Instant::now();
    let mut m = subscribe(&mut ws, "all", &sql, args.batch_size).await?;
    let mut rows = rows_of(&m);
    let mut pages = vec![t.elapsed()];
    while m["batch_control"]["has_more"] == true {
        let p = Instant::now();
        let next = json!({"type": "next_batch", "subscription_id": "all"});
        ws.send(Message::text(next.to_string())).await?;
        m = next_json(&mut ws).await?;
        rows += rows_of(&m);
        pages.push(p.elapsed());
    }
    let all = t.elapsed();
    anyhow::ensure!(rows as u64 == args.rows, "paged {rows} rows");
    let after = server_memory(&client).await;

    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("folddb bench snapshot against {base} ({cores} cores on this machine)");
    println!(
        "table: {} rows of {} bytes; {} subscriptions holding their first page of {}",
        args.rows, args.row_bytes, args.subs, args.batch_size
    );
    match (before, held, after) {
        (Some((rss0, _)), Some((rss1, peak1)), Some((rss2, peak2))) => {
            println!(
                "server RSS: {:.0} MiB before, {:.0} MiB with the subscriptions (peak {:.0}), {:.0} MiB after paging one to the end (peak {:.0})",
                mib(rss0),
                mib(rss1),
                mib(peak1),
                mib(rss2),
                mib(peak2)
            );
        }
        _ => println!("server RSS: not reported by this server (system.stats)"),
    }
    let f = Latency::of(firsts);
    let p = Latency::of(pages.clone());
    println!(
        "subscribe → first page: p50 {:.1} ms, p99 {:.1} ms",
        f.p50_us / 1e3,
        f.p99_us / 1e3
    );
    println!(
        "whole initial load: {rows} rows in {} pages, {:.0} ms ({:.0} rows/s); a page p50 {:.1} ms, p99 {:.1} ms",
        pages.len(),
        all.as_secs_f64() * 1e3,
        rows as f64 / all.as_secs_f64(),
        p.p50_us / 1e3,
        p.p99_us / 1e3
    );
    Ok(ExitCode::SUCCESS)
}
