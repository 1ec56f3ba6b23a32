//! The vector scenarios of `folddb bench sql` (#20): similarity queries over a table of
//! 128-dimensional embeddings, `ORDER BY COSINE_DISTANCE(e, '[…]') LIMIT 10` over HTTP.
//!
//! - `vector-exact`: queries/s and latency of exact search from 4 clients, and the INSERT
//!   rate of the embeddings that fill the table.
//! - `vector-index`: the same table searched exactly, then through a cosine vector index:
//!   the index's build time (vectors/s) and memory (from its `VI-…` job), recall@10 against
//!   a brute-force search the bench runs itself, queries/s from 4 clients and the latency
//!   of one client, and the INSERT rate into the indexed table against an unindexed one.
//!
//! The embeddings are generated deterministically with the shape real ones have: each is a
//! mix of 16 fixed directions plus a little noise (a low intrinsic dimension). Uniformly
//! random vectors, whose nearest neighbours are all about as far as any other vector, are
//! not what a similarity search is for, and an approximate index ranks them poorly.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::Latency;
use super::sql::{Client, Outcome, load};

/// Dimensions of the benchmark's embeddings.
const DIM: usize = 128;
/// The directions every embedding mixes.
const BASIS: usize = 16;
/// Rows per INSERT statement (a statement's text stays under the 1 MiB limit).
const ROWS_PER_INSERT: u64 = 400;
/// Queries whose answers are checked against brute force.
const RECALL_QUERIES: u64 = 100;
/// The first id of the query vectors (never a row of the table).
const QUERIES_FROM: u64 = 1 << 40;

fn xorshift(x: &mut u64) -> f32 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    ((*x >> 40) as f64 / (1u64 << 24) as f64 * 2.0 - 1.0) as f32
}

/// The `i`-th embedding, as its literal and as the numbers the server parses from it.
fn embedding(i: u64) -> (String, Vec<f32>) {
    let mut basis_seed = 0x5eed_u64;
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let weights: Vec<f32> = (0..BASIS).map(|_| xorshift(&mut x)).collect();
    let mut v = vec![0f32; DIM];
    for w in &weights {
        for c in v.iter_mut() {
            *c += w * xorshift(&mut basis_seed);
        }
    }
    let parts: Vec<String> = v
        .iter()
        .map(|c| format!("{:.4}", c / 4.0 + 0.05 * xorshift(&mut x)))
        .collect();
    let parsed = parts.iter().filter_map(|p| p.parse().ok()).collect();
    (format!("[{}]", parts.join(",")), parsed)
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let (mut ab, mut aa, mut bb) = (0f32, 0f32, 0f32);
    for (x, y) in a.iter().zip(b) {
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    1.0 - ab / (aa * bb).sqrt()
}

/// Fills `table` with embeddings `from..to`, `ROWS_PER_INSERT` to a statement: the outcome.
async fn fill(
    client: &Client,
    table: &str,
    from: u64,
    to: u64,
    name: String,
) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let mut samples = Vec::new();
    for start in (from..to).step_by(ROWS_PER_INSERT as usize) {
        let values: Vec<String> = (start..(start + ROWS_PER_INSERT).min(to))
            .map(|i| format!("({i}, '{}')", embedding(i).0))
            .collect();
        let t = Instant::now();
        client
            .exec(&format!(
                "INSERT INTO {table} (id, e) VALUES {}",
                values.join(", ")
            ))
            .await?;
        samples.push(t.elapsed());
    }
    Ok(Outcome {
        name,
        rows: to - from,
        elapsed: started.elapsed(),
        latency: Latency::of(samples),
        note: format!("{ROWS_PER_INSERT} rows per statement (latency: per statement)"),
        server_cpu_us: None,
    })
}

async fn create(client: &Client, table: &str) -> anyhow::Result<()> {
    client.exec("CREATE NAMESPACE IF NOT EXISTS bench").await?;
    client
        .exec(&format!(
            "CREATE SHARED TABLE {table} (id BIGINT PRIMARY KEY, e EMBEDDING({DIM}))"
        ))
        .await
}

/// The ids of the ten rows nearest to query `q` (an id from [`QUERIES_FROM`] on).
async fn top10(client: &Client, table: &str, q: u64) -> anyhow::Result<Vec<u64>> {
    let answer = client
        .sql(&format!(
            "SELECT id FROM {table} ORDER BY COSINE_DISTANCE(e, '{}') LIMIT 10",
            embedding(q).0
        ))
        .await?;
    let ids: Vec<u64> = answer["results"][0]["rows"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .filter_map(|r| r[0].as_str().and_then(|s| s.parse().ok()))
                .collect()
        })
        .unwrap_or_default();
    anyhow::ensure!(ids.len() == 10, "a search returned {}: {answer}", ids.len());
    Ok(ids)
}

/// How many searches the server's vector indexes have answered (`/metrics`).
async fn index_answers(client: &Client) -> anyhow::Result<u64> {
    let text = client
        .http
        .get(format!("{}/metrics", client.url))
        .send()
        .await?
        .text()
        .await?;
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix("folddb_vector_index_searches_total{answer=\"index\"} "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64))
}

/// Searches `table` until its index answers (a search does not wait for a long build or
/// catch-up: it is answered exactly meanwhile): how long that took. Between searches it
/// waits for the table's running `VI-…` job, then longer each time (an exact search of a
/// million rows would take the cores the build needs).
async fn until_the_index_answers(client: &Client, table: &str, q: u64) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(250);
    loop {
        let before = index_answers(client).await?;
        top10(client, table, q).await?;
        if index_answers(client).await? > before {
            return Ok(started.elapsed());
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(3600),
            "the index did not answer within an hour"
        );
        loop {
            let running = client
                .sql(&format!(
                    "SELECT count(*) FROM system.jobs WHERE job_type = 'vector_index' \
                     AND status = 'running' AND CAST(parameters AS TEXT) LIKE '%{table}.%'"
                ))
                .await?;
            if running["results"][0]["rows"][0][0].as_str() == Some("0") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(8));
    }
}

/// Searches of `table` from `clients` clients for `duration`.
async fn searches(
    client: &Arc<Client>,
    table: &str,
    name: String,
    clients: usize,
    duration: Duration,
) -> anyhow::Result<Outcome> {
    let queries = Arc::new(AtomicU64::new(QUERIES_FROM + RECALL_QUERIES));
    let table = table.to_owned();
    load(
        std::slice::from_ref(client),
        &name,
        clients,
        duration,
        move |c| {
            let (table, queries) = (table.clone(), queries.clone());
            async move {
                top10(&c, &table, queries.fetch_add(1, Ordering::Relaxed)).await?;
                Ok(1)
            }
        },
    )
    .await
}

/// Creates `table`, fills it with `rows` embeddings, then queries it exactly with `clients`
/// clients for `duration`: the fill and the query outcomes.
async fn filled_and_searched(
    client: &Arc<Client>,
    table: &str,
    rows: u64,
    clients: usize,
    duration: Duration,
) -> anyhow::Result<[Outcome; 2]> {
    create(client, table).await?;
    let filled = fill(
        client,
        table,
        0,
        rows,
        format!("INSERT {DIM}-dim embeddings"),
    )
    .await?;
    let mut search = searches(
        client,
        table,
        format!("exact top-10 cosine, {clients} clients"),
        clients,
        duration,
    )
    .await?;
    search.note = format!("over {rows} rows, no index (rows/s: queries/s)");
    Ok([filled, search])
}

/// Fills `bench.v<run>` with `rows` embeddings, then queries it with `clients` clients for
/// `duration`: the fill and the query outcomes.
pub(super) async fn exact(
    client: &Arc<Client>,
    run_id: u64,
    rows: u64,
    clients: usize,
    duration: Duration,
) -> anyhow::Result<Vec<Outcome>> {
    let table = format!("bench.v{run_id}");
    Ok(filled_and_searched(client, &table, rows, clients, duration)
        .await?
        .into())
}

/// The `vector-index` scenario (see the module's documentation).
pub(super) async fn indexed(
    client: &Arc<Client>,
    run_id: u64,
    rows: u64,
    clients: usize,
    duration: Duration,
) -> anyhow::Result<Vec<Outcome>> {
    let table = format!("bench.vi{run_id}");
    let mut out: Vec<Outcome> = filled_and_searched(client, &table, rows, clients, duration)
        .await?
        .into();
    let exact_qps = out[1].rate();

    // The index is built by the first search after its creation.
    client
        .exec(&format!(
            "ALTER TABLE {table} CREATE VECTOR INDEX e USING COSINE"
        ))
        .await?;
    let built = until_the_index_answers(client, &table, QUERIES_FROM).await?;
    let job = client
        .sql(&format!(
            "SELECT message FROM system.jobs WHERE job_type = 'vector_index' \
             AND message LIKE '%{table}%' ORDER BY created_at DESC LIMIT 1"
        ))
        .await?;
    out.push(Outcome {
        name: "index build (until it answers)".into(),
        rows,
        elapsed: built,
        latency: Latency::of(vec![built]),
        note: format!(
            "rows/s: vectors indexed/s; job: {}",
            job["results"][0]["rows"][0][0].as_str().unwrap_or("?")
        ),
        server_cpu_us: None,
    });

    // Recall@10 against brute force over the same numbers the server parsed.
    let vectors: Vec<Vec<f32>> = (0..rows).map(|i| embedding(i).1).collect();
    let mut found = 0usize;
    for q in QUERIES_FROM..QUERIES_FROM + RECALL_QUERIES {
        let query = embedding(q).1;
        let mut scored: Vec<(f32, u64)> = vectors
            .iter()
            .enumerate()
            .map(|(i, v)| (cosine(v, &query), i as u64))
            .collect();
        scored.select_nth_unstable_by(9, |a, b| a.0.total_cmp(&b.0));
        let truth: Vec<u64> = scored[..10].iter().map(|(_, i)| *i).collect();
        let got = top10(client, &table, q).await?;
        found += got.iter().filter(|i| truth.contains(i)).count();
    }
    let recall = found as f64 / (RECALL_QUERIES * 10) as f64;

    let mut search = searches(
        client,
        &table,
        format!("indexed top-10 cosine, {clients} clients"),
        clients,
        duration,
    )
    .await?;
    search.note = format!(
        "recall@10 {recall:.3} over {RECALL_QUERIES} queries; {:.1}x the exact queries/s",
        search.rate() / exact_qps
    );
    out.push(search);
    let mut single = searches(
        client,
        &table,
        "indexed top-10 cosine, 1 client".into(),
        1,
        duration,
    )
    .await?;
    single.note = "latency of one query over HTTP".into();
    out.push(single);

    // INSERTs into the indexed table and into an unindexed one; then the first search,
    // which folds the new rows into the index.
    let more = (rows / 10).clamp(ROWS_PER_INSERT, 100_000);
    out.push(
        fill(
            client,
            &table,
            rows,
            rows + more,
            "INSERT into the indexed table".into(),
        )
        .await?,
    );
    let caught_up = until_the_index_answers(client, &table, QUERIES_FROM + 1).await?;
    out.push(Outcome {
        name: "catch-up after the INSERTs".into(),
        rows: more,
        elapsed: caught_up,
        latency: Latency::of(vec![caught_up]),
        note: "rows/s: new rows folded into the index per second".into(),
        server_cpu_us: None,
    });
    let plain = format!("bench.vn{run_id}");
    create(client, &plain).await?;
    out.push(
        fill(
            client,
            &plain,
            rows,
            rows + more,
            "INSERT into an unindexed table".into(),
        )
        .await?,
    );
    Ok(out)
}
