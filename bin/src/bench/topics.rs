//! The topic scenarios of `folddb bench sql` (#19): the cost of one route on single-row
//! INSERTs, publish → consume latency of a long-polling consumer while rows are written at a
//! steady rate, and how fast one group consumes (claim, read, ack) a backlog.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value as Json, json};

use super::Latency;
use super::sql::{Client, Outcome, load};

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// A routed table and its topic: `bench.r<run>` into `bench.topic<run>`, on INSERT.
async fn routed(client: &Client, run_id: u64) -> anyhow::Result<(String, String)> {
    let (table, topic) = (format!("bench.r{run_id}"), format!("bench.topic{run_id}"));
    client
        .sql(&format!(
            "CREATE SHARED TABLE IF NOT EXISTS {table} (id BIGINT PRIMARY KEY, n INT NOT NULL, v TEXT)"
        ))
        .await?;
    client
        .sql(&format!("CREATE TOPIC IF NOT EXISTS {topic}"))
        .await?;
    let added = client
        .sql(&format!("ALTER TOPIC {topic} ADD SOURCE {table} ON INSERT"))
        .await;
    if let Err(e) = added
        && !e.to_string().contains("already exists")
    {
        return Err(e);
    }
    Ok((table, topic))
}

/// Single-row INSERTs with `clients` clients into a table with one route.
pub(super) async fn routed_insert(
    client: &Arc<Client>,
    run_id: u64,
    clients: usize,
    duration: Duration,
    next: Arc<AtomicU64>,
) -> anyhow::Result<Outcome> {
    let (table, _) = routed(client, run_id).await?;
    load(
        std::slice::from_ref(client),
        &format!("routed INSERT, {clients} clients"),
        clients,
        duration,
        move |c| {
            let (table, next) = (table.clone(), next.clone());
            async move {
                let id = next.fetch_add(1, Ordering::Relaxed);
                c.exec(&format!(
                    "INSERT INTO {table} (id, n, v) VALUES ({id}, {}, 'row {id}')",
                    id % 10_000
                ))
                .await
                .map(|()| 1)
            }
        },
    )
    .await
}

/// One consume of `group` over HTTP: the answer.
async fn consume(client: &Client, body: &Json) -> anyhow::Result<Json> {
    let r = client
        .http
        .post(format!("{}/v1/api/topics/consume", client.url))
        .bearer_auth(&client.token)
        .json(body)
        .send()
        .await?;
    let status = r.status();
    let answer: Json = r.json().await?;
    anyhow::ensure!(status.is_success(), "consume: {status} {answer}");
    Ok(answer)
}

async fn ack(client: &Client, topic: &str, group: &str, from: u64, to: u64) -> anyhow::Result<()> {
    let r = client
        .http
        .post(format!("{}/v1/api/topics/ack", client.url))
        .bearer_auth(&client.token)
        .json(
            &json!({"topic_id": topic, "group_id": group, "from_offset": from,
                      "upto_offset": to}),
        )
        .send()
        .await?;
    anyhow::ensure!(r.status().is_success(), "ack: {}", r.text().await?);
    Ok(())
}

/// Publish → consume: one writer inserts `rate` rows a second (each row carries its send
/// time), one consumer long-polls and acks; the latency of each message from its INSERT
/// being sent to its arrival.
pub(super) async fn latency(
    client: &Arc<Client>,
    run_id: u64,
    rate: u64,
    duration: Duration,
) -> anyhow::Result<Outcome> {
    let (table, topic) = routed(client, run_id).await?;
    let group = format!("latency{run_id}");
    // The group begins at the end of the topic.
    consume(
        client,
        &json!({"topic_id": topic, "group_id": group, "start": "Latest", "limit": 1}),
    )
    .await?;
    let writer = {
        let (client, table) = (client.clone(), table.clone());
        tokio::spawn(async move {
            let start = Instant::now();
            let mut sent = 0u64;
            let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate.max(1)));
            while start.elapsed() < duration {
                tick.tick().await;
                let id = 2_000_000_000 + sent;
                client
                    .exec(&format!(
                        "INSERT INTO {table} (id, n, v) VALUES ({id}, 0, '{}')",
                        now_us()
                    ))
                    .await?;
                sent += 1;
            }
            anyhow::Ok(sent)
        })
    };
    let started = Instant::now();
    let mut samples = Vec::new();
    while started.elapsed() < duration + Duration::from_secs(2) {
        let answer = consume(
            client,
            &json!({"topic_id": topic, "group_id": group, "limit": 1000, "timeout_seconds": 1}),
        )
        .await?;
        let arrived = now_us();
        let messages = answer["messages"].as_array().cloned().unwrap_or_default();
        for m in &messages {
            use base64::Engine as _;
            let payload = base64::engine::general_purpose::STANDARD
                .decode(m["payload"].as_str().unwrap_or(""))
                .unwrap_or_default();
            let row: Json = serde_json::from_slice(&payload).unwrap_or(Json::Null);
            if let Some(sent) = row["v"].as_str().and_then(|v| v.parse::<u64>().ok()) {
                samples.push(Duration::from_micros(arrived.saturating_sub(sent)));
            }
        }
        if let (Some(first), Some(last)) = (messages.first(), messages.last()) {
            let offset = |m: &Json| m["offset"].as_u64().unwrap_or(0);
            ack(client, &topic, &group, offset(first), offset(last)).await?;
        }
        if writer.is_finished() && messages.is_empty() {
            break;
        }
    }
    let sent = writer.await??;
    let received = samples.len() as u64;
    Ok(Outcome {
        name: format!("publish → consume, {rate} rows/s"),
        rows: received,
        elapsed: started.elapsed(),
        latency: Latency::of(samples),
        note: format!("{received} of {sent} messages received"),
        server_cpu_us: None,
    })
}

/// One group consumes a backlog of `backlog` messages: claims of 1,000, each acked.
pub(super) async fn consume_rate(
    client: &Arc<Client>,
    run_id: u64,
    backlog: u64,
) -> anyhow::Result<Outcome> {
    let (table, topic) = routed(client, run_id).await?;
    let base = 3_000_000_000u64;
    for start in (0..backlog).step_by(1000) {
        let values: Vec<String> = (start..(start + 1000).min(backlog))
            .map(|i| format!("({}, 0, 'x')", base + i))
            .collect();
        client
            .exec(&format!(
                "INSERT INTO {table} (id, n, v) VALUES {}",
                values.join(", ")
            ))
            .await?;
    }
    let group = format!("drain{run_id}");
    let started = Instant::now();
    let (mut got, mut samples) = (0u64, Vec::new());
    let mut start = "Earliest";
    loop {
        let t = Instant::now();
        let answer = consume(
            client,
            &json!({"topic_id": topic, "group_id": group, "start": start, "limit": 1000}),
        )
        .await?;
        start = "Latest";
        let messages = answer["messages"].as_array().cloned().unwrap_or_default();
        let (Some(first), Some(last)) = (messages.first(), messages.last()) else {
            break;
        };
        let offset = |m: &Json| m["offset"].as_u64().unwrap_or(0);
        ack(client, &topic, &group, offset(first), offset(last)).await?;
        samples.push(t.elapsed());
        got += messages.len() as u64;
    }
    Ok(Outcome {
        name: "consume a backlog, 1 group".into(),
        rows: got,
        elapsed: started.elapsed(),
        latency: Latency::of(samples),
        note: format!("{got} messages in claims of 1,000 (latency: per claim + ack)"),
        server_cpu_us: None,
    })
}
