//! The vector scenario of `folddb bench sql` (#20): similarity queries over a table of
//! 128-dimensional embeddings, `ORDER BY COSINE_DISTANCE(e, '[…]') LIMIT 10` over HTTP, from
//! a few concurrent clients: queries/s and latency of exact search (the baseline an ANN
//! index is to beat), and the INSERT rate of the embeddings that fill the table.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Latency;
use super::sql::{Client, Outcome, load};

/// Dimensions of the benchmark's embeddings.
const DIM: usize = 128;
/// Rows per INSERT statement (a statement's text stays under the 1 MiB limit).
const ROWS_PER_INSERT: u64 = 400;

/// The `i`-th deterministic vector, components in [-1, 1), as a literal.
fn vector(i: u64) -> String {
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let parts: Vec<String> = (0..DIM)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            format!("{:.4}", (x >> 40) as f64 / (1u64 << 24) as f64 * 2.0 - 1.0)
        })
        .collect();
    format!("[{}]", parts.join(","))
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
    client.exec("CREATE NAMESPACE IF NOT EXISTS bench").await?;
    client
        .exec(&format!(
            "CREATE SHARED TABLE {table} (id BIGINT PRIMARY KEY, e EMBEDDING({DIM}))"
        ))
        .await?;
    let started = Instant::now();
    let mut samples = Vec::new();
    for start in (0..rows).step_by(ROWS_PER_INSERT as usize) {
        let values: Vec<String> = (start..(start + ROWS_PER_INSERT).min(rows))
            .map(|i| format!("({i}, '{}')", vector(i)))
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
    let fill = Outcome {
        name: format!("INSERT {DIM}-dim embeddings"),
        rows,
        elapsed: started.elapsed(),
        latency: Latency::of(samples),
        note: format!("{ROWS_PER_INSERT} rows per statement (latency: per statement)"),
        server_cpu_us: None,
    };
    let queries = Arc::new(std::sync::atomic::AtomicU64::new(1 << 32));
    let mut search = load(
        std::slice::from_ref(client),
        &format!("exact top-10 cosine, {clients} clients"),
        clients,
        duration,
        move |c| {
            let (table, queries) = (table.clone(), queries.clone());
            async move {
                let q = vector(queries.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
                let answer = c
                    .sql(&format!(
                        "SELECT id FROM {table} ORDER BY COSINE_DISTANCE(e, '{q}') LIMIT 10"
                    ))
                    .await?;
                let got = answer["results"][0]["rows"].as_array().map_or(0, Vec::len);
                anyhow::ensure!(got == 10, "a search returned {got} rows: {answer}");
                Ok(1)
            }
        },
    )
    .await?;
    search.note = format!("over {rows} rows (rows/s: queries/s)");
    Ok(vec![fill, search])
}
