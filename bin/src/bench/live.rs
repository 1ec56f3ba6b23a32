//! `folddb bench live --url …`: live-query delivery over the public API. Opens
//! `--connections` WebSockets with `--subs` subscriptions each (every subscription on its own
//! slice of the keys), inserts rows at a steady `--rate` over HTTP, and measures, for every
//! row, the time from the INSERT being acknowledged to its change arriving at the
//! subscriber that owns its key. Also reports how long a 1,000-row initial load takes.
//!
//! The server must allow this many subscriptions for one user
//! (`FOLDDB_MAX_SUBSCRIPTIONS_PER_USER`).

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
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
pub struct LiveBenchArgs {
    #[command(flatten)]
    server: crate::client::ServerArgs,
    /// WebSocket connections.
    #[arg(long, default_value_t = 100)]
    connections: usize,
    /// Subscriptions per connection.
    #[arg(long, default_value_t = 10)]
    subs: usize,
    /// Inserts per second.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Seconds of writing.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// One user per connection, each subscribed to its own rows of a USER table and writing
    /// them (the common shape: a write reaches one user's connection). Without it, one user
    /// holds every subscription on one SHARED table, each on its own room (`WHERE room =
    /// k`), and each write goes to one room.
    #[arg(long)]
    per_user: bool,
}

/// Per row id: when its INSERT was sent, when it was acknowledged, and when its change
/// arrived.
#[derive(Debug, Clone, Copy, Default)]
struct Row {
    sent: Option<Instant>,
    acked: Option<Instant>,
    received: Option<Instant>,
}

type Times = Arc<Mutex<HashMap<u64, Row>>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn run(args: LiveBenchArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.connections > 0 && args.subs > 0 && args.rate > 0,
        "connections, subs and rate must be positive"
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(measure(args))
}

async fn open(base: &str, token: &str) -> anyhow::Result<Ws> {
    let mut ws = crate::client::open_ws(base, token).await?;
    let m = next_json(&mut ws).await?;
    if m["type"] != "auth_success" {
        bail!("no auth_success: {m}");
    }
    Ok(ws)
}

/// The next message.
async fn next_json(ws: &mut Ws) -> anyhow::Result<Json> {
    loop {
        let frame = ws.next().await.context("connection closed")??;
        if let Some(m) = crate::client::server_message(frame) {
            return m;
        }
    }
}

async fn measure(args: LiveBenchArgs) -> anyhow::Result<ExitCode> {
    let base = args.server.url.trim_end_matches('/').to_owned();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()?;
    let token =
        crate::client::login(&http, &base, &args.server.user, &args.server.password).await?;
    let client = Arc::new(Client {
        http: http.clone(),
        url: base.clone(),
        token: token.clone(),
    });
    let run_id = crate::auth::now_s();
    let table = format!("bench.live{run_id}");
    client.sql("CREATE NAMESPACE IF NOT EXISTS bench").await?;
    client.sql(&format!("CREATE SHARED TABLE {table} (id BIGINT PRIMARY KEY, room BIGINT, v TEXT) WITH (ACCESS_LEVEL = 'PUBLIC')"),
    )
    .await?;

    // Initial load: 1,000 rows, then time subscribe → ready.
    let values: Vec<String> = (0..1000u64)
        .map(|i| format!("({}, 'seed')", 1_000_000_000 + i))
        .collect();
    client
        .sql(&format!(
            "INSERT INTO {table} (id, v) VALUES {}",
            values.join(", ")
        ))
        .await?;
    let mut loads = Vec::new();
    let mut ws = open(&base, &token).await?;
    for i in 0..20 {
        let t = Instant::now();
        let sub = json!({"type": "subscribe", "subscription": {"id": format!("load{i}"),
            "sql": format!("SELECT * FROM {table} WHERE id >= 1000000000"), "options": {}}});
        ws.send(Message::text(sub.to_string())).await?;
        let mut rows = 0;
        loop {
            let m = next_json(&mut ws).await?;
            if m["type"] == "error" {
                bail!("subscribe failed: {m}");
            }
            if m["type"] == "initial_data_batch" {
                rows += m["rows"].as_array().map_or(0, Vec::len);
                if m["batch_control"]["status"] == "ready" {
                    break;
                }
            }
        }
        anyhow::ensure!(rows == 1000, "initial load gave {rows} rows");
        loads.push(t.elapsed());
        let unsub = json!({"type": "unsubscribe", "subscription_id": format!("load{i}")});
        ws.send(Message::text(unsub.to_string())).await?;
    }
    drop(ws);

    // Who each connection is, what it subscribes, and who writes which row.
    let total = (args.connections * args.subs) as u64;
    let (subs_table, conn_clients) = if args.per_user {
        let utable = format!("bench.ulive{run_id}");
        client
            .sql(&format!(
                "CREATE USER TABLE {utable} (id BIGINT PRIMARY KEY, v TEXT)"
            ))
            .await?;
        let mut clients = Vec::with_capacity(args.connections);
        for c in 0..args.connections {
            let name = format!("live_u{c}");
            if let Err(e) = client
                .sql(&format!("CREATE USER {name} WITH PASSWORD 'live-pass-1'"))
                .await
                && !e.to_string().contains("already exists")
            {
                return Err(e);
            }
            let token = crate::client::login(&http, &base, &name, "live-pass-1").await?;
            clients.push(Arc::new(Client {
                http: http.clone(),
                url: base.clone(),
                token,
            }));
        }
        (utable, clients)
    } else {
        (table.clone(), vec![client.clone(); args.connections])
    };
    let sub_sql = |c: usize, s: usize| {
        if args.per_user {
            format!("SELECT id FROM {subs_table} WHERE id % {} = {s}", args.subs)
        } else {
            // One room per subscription, as a chat app subscribes: `room = k` is a guard the
            // fan-out indexes, so a write wakes only its room's connection.
            let k = c * args.subs + s;
            format!("SELECT id FROM {subs_table} WHERE room = {k}")
        }
    };
    let times: Times = Arc::new(Mutex::new(HashMap::new()));
    let mut readers = Vec::new();
    eprint!(
        "opening {} connections × {} subscriptions…",
        args.connections, args.subs
    );
    for (c, owner) in conn_clients.iter().enumerate() {
        let mut ws = open(&base, &owner.token).await?;
        for s in 0..args.subs {
            let sub = json!({"type": "subscribe", "subscription": {"id": format!("k{s}"),
                "sql": sub_sql(c, s)}});
            ws.send(Message::text(sub.to_string())).await?;
            let ack = next_json(&mut ws).await?;
            if ack["type"] != "subscription_ack" {
                bail!("subscribe failed (raise FOLDDB_MAX_SUBSCRIPTIONS_PER_USER?): {ack}");
            }
        }
        let times = times.clone();
        readers.push(tokio::spawn(async move {
            // Pings keep the connection alive while the others subscribe (idle > 10 s closes).
            let mut ping = tokio::time::interval(Duration::from_secs(4));
            loop {
                tokio::select! {
                    m = next_json(&mut ws) => {
                        let Ok(m) = m else { break };
                        if m["change_type"] == "insert"
                            && let Some(id) = m["rows"][0]["id"].as_str().and_then(|s| s.parse().ok())
                        {
                            lock(&times).entry(id).or_default().received = Some(Instant::now());
                        }
                    }
                    _ = ping.tick() => {
                        if ws.send(Message::text(r#"{"type":"ping"}"#)).await.is_err() {
                            break;
                        }
                    }
                }
            }
        }));
    }
    eprintln!(" done");

    // Writers: a steady rate, spread over a few concurrent clients.
    let duration = Duration::from_secs_f64(args.seconds);
    let writers = 32u64;
    let per_writer = Duration::from_secs_f64(writers as f64 / args.rate as f64);
    let mut handles = Vec::new();
    for w in 0..writers {
        let (clients, table, times) = (conn_clients.clone(), subs_table.clone(), times.clone());
        let per_user = args.per_user;
        handles.push(tokio::spawn(async move {
            let start = Instant::now();
            let mut tick = tokio::time::interval(per_writer);
            let mut id = w;
            while start.elapsed() < duration {
                tick.tick().await;
                lock(&times).entry(id).or_default().sent = Some(Instant::now());
                // The owner of the row's key writes it (in per-user mode, into its scope).
                let sql = if per_user {
                    format!("INSERT INTO {table} (id, v) VALUES ({id}, 'x')")
                } else {
                    format!(
                        "INSERT INTO {table} (id, room, v) VALUES ({id}, {}, 'x')",
                        id % total
                    )
                };
                clients[id as usize % clients.len()].sql(&sql).await?;
                lock(&times).entry(id).or_default().acked = Some(Instant::now());
                id += writers;
            }
            anyhow::Ok(())
        }));
    }
    for h in handles {
        h.await??;
    }
    // Let the last changes arrive.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for r in readers {
        r.abort();
    }
    let times = lock(&times).clone();
    let written = times.values().filter(|r| r.acked.is_some()).count();
    let (mut from_ack, mut from_send) = (Vec::new(), Vec::new());
    let mut lost = 0;
    for r in times.values() {
        match (r.sent, r.acked, r.received) {
            (Some(s), Some(a), Some(g)) => {
                from_ack.push(g.saturating_duration_since(a));
                from_send.push(g.saturating_duration_since(s));
            }
            (_, Some(_), None) => lost += 1,
            _ => {}
        }
    }
    let early = from_ack.iter().filter(|d| d.is_zero()).count();
    let l = Latency::of(from_ack);
    let s = Latency::of(from_send);
    let load = Latency::of(loads);
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("folddb bench live against {base} ({cores} cores on this machine)");
    println!(
        "{} subscriptions over {} connections, {} inserts/s for {:.0} s: {written} written, {lost} not delivered",
        total, args.connections, args.rate, args.seconds
    );
    println!(
        "ack → received: p50 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms ({early} changes arrived before their ack, counted as 0)",
        l.p50_us / 1e3,
        l.p99_us / 1e3,
        l.p999_us / 1e3
    );
    println!(
        "INSERT sent → received: p50 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms",
        s.p50_us / 1e3,
        s.p99_us / 1e3,
        s.p999_us / 1e3
    );
    println!(
        "1,000-row initial load (subscribe → ready): p50 {:.3} ms, p99 {:.3} ms",
        load.p50_us / 1e3,
        load.p99_us / 1e3
    );
    Ok(if lost == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
