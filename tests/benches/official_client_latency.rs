//! Latency seen through KalamDB's official Rust SDK (#17): a subscribe → initial rows →
//! close cycle, an INSERT's round trip, and INSERT → notification. Starts a release-or-debug
//! `folddb` (whichever `folddb_tests` finds) on a loopback port with a temporary data
//! directory and prints medians and p90s of one run.
//!
//! `cargo bench -p folddb-tests --bench official_client_latency [-- ROUNDS]`

use std::time::{Duration, Instant};

use folddb_tests::{DBA, Server};
use kalam_client::{AuthProvider, ChangeEvent, KalamLinkClient, SubscriptionManager};

fn client(s: &Server) -> KalamLinkClient {
    KalamLinkClient::builder()
        .base_url(s.url(""))
        .auth(AuthProvider::BasicAuth(DBA.0.into(), DBA.1.into()))
        .timeout(Duration::from_secs(30))
        .build()
        .expect("the SDK's client builds")
}

async fn sql(c: &KalamLinkClient, sql: &str) {
    let r = c.execute_query(sql, None, None, None).await.expect(sql);
    assert!(r.success(), "{sql}: {r:?}");
}

/// Until the subscription's initial data is complete.
async fn ready(sub: &mut SubscriptionManager) {
    loop {
        match sub.next().await.expect("open").expect("no error") {
            ChangeEvent::Ack { batch_control, .. }
            | ChangeEvent::InitialDataBatch { batch_control, .. }
                if !batch_control.has_more
                    && batch_control.status == kalam_client::models::BatchStatus::Ready =>
            {
                return;
            }
            ChangeEvent::Error { code, message, .. } => panic!("{code}: {message}"),
            _ => {}
        }
    }
}

async fn next_insert(sub: &mut SubscriptionManager) {
    loop {
        match sub.next().await.expect("open").expect("no error") {
            ChangeEvent::Insert { .. } => return,
            ChangeEvent::Error { code, message, .. } => panic!("{code}: {message}"),
            _ => {}
        }
    }
}

fn report(what: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    println!(
        "{what:<40} median {:>8.2} ms   p90 {:>8.2} ms   ({} samples)",
        at(0.5).as_secs_f64() * 1e3,
        at(0.9).as_secs_f64() * 1e3,
        samples.len()
    );
}

#[tokio::main]
async fn main() {
    let rounds: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(50);
    let dir = tempfile::tempdir().expect("temp dir");
    // The per-connection message limit (50/s) would throttle back-to-back subscribe cycles.
    let s = Server::start_with(
        dir.path(),
        &[("FOLDDB_LIVE_MAX_MESSAGES_PER_SEC", "100000")],
    )
    .await;
    s.setup_and_login().await;
    let c = client(&s);
    sql(&c, "CREATE NAMESPACE app").await;
    sql(
        &c,
        "CREATE TABLE app.t (id BIGINT PRIMARY KEY, v TEXT) WITH (TYPE = 'SHARED', ACCESS_LEVEL = 'PUBLIC')",
    )
    .await;
    sql(&c, "INSERT INTO app.t (id, v) VALUES (0, 'seed')").await;

    // Warm the connection.
    let mut sub = c.live_events("SELECT * FROM app.t").await.expect("sub");
    ready(&mut sub).await;
    sub.close().await.expect("close");

    let mut cycles = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        let mut sub = c.live_events("SELECT * FROM app.t").await.expect("sub");
        ready(&mut sub).await;
        sub.close().await.expect("close");
        cycles.push(t.elapsed());
    }
    report("subscribe -> initial rows -> close", cycles);

    let writer = client(&s);
    let mut inserts = Vec::new();
    for i in 0..rounds {
        let t = Instant::now();
        sql(
            &writer,
            &format!("INSERT INTO app.t (id, v) VALUES ({}, 'x')", 1_000 + i),
        )
        .await;
        inserts.push(t.elapsed());
    }
    report("INSERT round trip (HTTP)", inserts);

    let mut sub = c.live_events("SELECT * FROM app.t").await.expect("sub");
    ready(&mut sub).await;
    let mut notified = Vec::new();
    for i in 0..rounds {
        let t = Instant::now();
        sql(
            &writer,
            &format!("INSERT INTO app.t (id, v) VALUES ({}, 'y')", 10_000 + i),
        )
        .await;
        next_insert(&mut sub).await;
        notified.push(t.elapsed());
    }
    report("INSERT -> notification", notified);
    sub.close().await.expect("close");
    s.stop();
}
