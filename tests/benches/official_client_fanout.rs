//! Subscriber scale through KalamDB's official Rust SDK (#17), in the shape of the reference's
//! own `subscriber_scale` benchmark: one user, one USER table, subscriptions added in tiers
//! (10, 100, 500, 1,000, 2,000, 5,000, 10,000 by default) over shared WebSockets of 100
//! subscriptions each, all on `SELECT * FROM bench.scale_sub` without initial data; after
//! each tier one INSERT must reach every subscription. Starts a release-or-debug `folddb`
//! (whichever `folddb_tests` finds) on a loopback port with a temporary data directory and
//! prints, per tier, the time to subscribe and the time from the INSERT's acknowledgement
//! to its last notification, then the whole run's time.
//!
//! Times are taken when the last event arrives (a `Notify`), not by polling.
//!
//! `cargo bench -p folddb-tests --bench official_client_fanout [-- MAX [PER_CONNECTION]]`

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use folddb_tests::Server;
use kalam_client::{AuthProvider, ChangeEvent, KalamLinkClient, SubscriptionConfig};
use tokio::sync::{Notify, Semaphore};

const TIERS: &[usize] = &[10, 100, 500, 1_000, 2_000, 5_000, 10_000, 25_000, 50_000];

/// Subscriptions set up at once (the reference's connect batch).
const CONNECT_BATCH: usize = 1_000;

fn link(s: &Server, token: &str) -> KalamLinkClient {
    KalamLinkClient::builder()
        .base_url(s.url(""))
        .auth(AuthProvider::jwt_token(token.to_owned()))
        .timeout(Duration::from_secs(60))
        .build()
        .expect("the SDK's client builds")
}

async fn sql(c: &KalamLinkClient, sql: &str) {
    let r = c.execute_query(sql, None, None, None).await.expect(sql);
    assert!(r.success(), "{sql}: {r:?}");
}

/// A count that wakes a waiter when it reaches a target.
#[derive(Default)]
struct Counter {
    n: AtomicUsize,
    changed: Notify,
}

impl Counter {
    fn add(&self) {
        self.n.fetch_add(1, Ordering::SeqCst);
        self.changed.notify_waiters();
    }

    async fn reach(&self, target: usize, within: Duration) -> Result<(), usize> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let changed = self.changed.notified();
            let n = self.n.load(Ordering::SeqCst);
            if n >= target {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return Err(self.n.load(Ordering::SeqCst));
            }
        }
    }
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse::<usize>().ok());
    let max = args.next().unwrap_or(10_000);
    let per_connection = args.next().unwrap_or(100).max(1);
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Server::start_with(
        dir.path(),
        &[
            ("FOLDDB_MAX_SUBSCRIPTIONS_PER_USER", "1000000"),
            ("FOLDDB_LIVE_MAX_MESSAGES_PER_SEC", "1000000"),
        ],
    )
    .await;
    let token = s.setup_and_login().await;
    let admin = link(&s, &token);
    sql(&admin, "CREATE NAMESPACE bench").await;
    sql(
        &admin,
        "CREATE USER TABLE bench.scale_sub (id INT PRIMARY KEY, payload TEXT)",
    )
    .await;

    let links: Arc<Vec<KalamLinkClient>> = Arc::new(
        (0..max.div_ceil(per_connection))
            .map(|_| link(&s, &token))
            .collect(),
    );
    let subscribed = Arc::new(Counter::default());
    let inserts = Arc::new(Counter::default());
    let batch = Arc::new(Semaphore::new(CONNECT_BATCH));
    println!(
        "{max} subscriptions over {} connections ({per_connection} each)",
        links.len()
    );
    println!(
        "{:>8} {:>14} {:>16} {:>12}",
        "subs", "subscribe ms", "fan-out ms", "delivered"
    );
    let start = Instant::now();
    let mut have = 0;
    let mut tasks = Vec::new();
    for &tier in TIERS.iter().filter(|&&t| t < max).chain([&max]) {
        let t = Instant::now();
        for id in have..tier {
            let (links, subscribed, inserts, batch) = (
                links.clone(),
                subscribed.clone(),
                inserts.clone(),
                batch.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let permit = batch.acquire().await.expect("open");
                let config = SubscriptionConfig::without_initial_data(
                    format!("scale_{id}"),
                    "SELECT * FROM bench.scale_sub",
                );
                let mut sub = links[id / per_connection]
                    .live_events_with_config(config)
                    .await
                    .unwrap_or_else(|e| panic!("subscription {id}: {e}"));
                drop(permit);
                subscribed.add();
                while let Some(event) = sub.next().await {
                    match event {
                        Ok(ChangeEvent::Insert { .. }) => inserts.add(),
                        Ok(ChangeEvent::Error { code, message, .. }) => {
                            panic!("subscription {id}: {code}: {message}")
                        }
                        Ok(_) => {}
                        Err(_) => return,
                    }
                }
            }));
        }
        if let Err(n) = subscribed.reach(tier, Duration::from_secs(60)).await {
            panic!("only {n} of {tier} subscriptions set up within 60 s");
        }
        let subscribe = t.elapsed();
        have = tier;

        let before = inserts.n.load(Ordering::SeqCst);
        sql(
            &admin,
            &format!("INSERT INTO bench.scale_sub (id, payload) VALUES ({tier}, 'tier {tier}')"),
        )
        .await;
        let acked = Instant::now();
        let delivered = match inserts.reach(before + tier, Duration::from_secs(30)).await {
            Ok(()) => tier,
            Err(n) => n - before,
        };
        println!(
            "{tier:>8} {:>14.1} {:>16.1} {:>12}",
            subscribe.as_secs_f64() * 1e3,
            acked.elapsed().as_secs_f64() * 1e3,
            format!("{delivered}/{tier}"),
        );
        assert_eq!(delivered, tier, "the INSERT reached every subscription");
    }
    println!(
        "whole run: {:.2} s (subscribe every tier + verify each fan-out)",
        start.elapsed().as_secs_f64()
    );
    for l in links.iter() {
        l.disconnect().await;
    }
    for t in tasks {
        t.abort();
    }
    s.stop();
}
