//! A seeded fault schedule against a three-node cluster of real processes (#18): while six
//! clients write through every node, nodes are killed (SIGKILL), paused (SIGSTOP) and
//! brought back at random points. At the end every node must hold every acknowledged write,
//! exactly once, nothing that was never sent, and the same rows as the others.
//!
//! The schedule follows `FOLDDB_FAULT_SEED` (default 18) and runs for `FOLDDB_FAULT_SECONDS`
//! (default 30); the seed is printed so that a failing schedule can be run again.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use folddb_tests::Server;
use folddb_tests::cluster::{Cluster, Load, Sent, with_tables};

/// splitmix64: a small, seeded source of the schedule's choices.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn millis(&mut self, from: u64, to: u64) -> Duration {
        Duration::from_millis(from + self.below(to - from))
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `n` of every row of app.e through `s`, duplicates kept, when the node answers.
async fn values(s: &Server, token: &str) -> Option<Vec<i64>> {
    let (status, body) = s.sql(token, "SELECT n FROM app.e ORDER BY n").await;
    if status != 200 {
        return None;
    }
    Some(
        folddb_tests::rows(&body)
            .iter()
            .map(|row| {
                row[0]
                    .as_i64()
                    .or_else(|| row[0].as_str().and_then(|t| t.parse().ok()))
                    .expect("a number")
            })
            .collect(),
    )
}

/// Waits until every node answers with the same rows, each write at most once and passing
/// `sent.check`: those rows.
async fn settled(c: &Cluster, token: &str, sent: &Sent) -> BTreeSet<i64> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut views = Vec::new();
        for (i, s) in c.nodes.iter().enumerate() {
            let Some(rows) = values(s.as_ref().expect("running"), token).await else {
                continue;
            };
            let once: BTreeSet<i64> = rows.iter().copied().collect();
            assert_eq!(
                once.len(),
                rows.len(),
                "node {}: a write applied twice",
                i + 1
            );
            views.push(sent.check(rows, i));
        }
        if views.len() == c.nodes.len() && views.windows(2).all(|w| w[0] == w[1]) {
            return views.pop().unwrap_or_default();
        }
        assert!(Instant::now() < deadline, "the nodes do not converge");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_seeded_schedule_of_kills_and_pauses_loses_and_repeats_no_write() {
    let seed = env_u64("FOLDDB_FAULT_SEED", 18);
    let seconds = env_u64("FOLDDB_FAULT_SECONDS", 30);
    eprintln!("fault schedule: FOLDDB_FAULT_SEED={seed} FOLDDB_FAULT_SECONDS={seconds}");
    let mut rng = Rng(seed);
    // Rows keyed by the server (a Snowflake id), so that a write applied twice would show
    // as two rows rather than fail on its key.
    let (mut c, _, token) = with_tables(
        3,
        "CREATE NAMESPACE app; \
         CREATE SHARED TABLE app.e (id BIGINT PRIMARY KEY DEFAULT SNOWFLAKE_ID(), n BIGINT)",
    )
    .await;
    let load = Load::start_with(&c, &token, 6, |n, _| {
        format!("INSERT INTO app.e (n) VALUES ({n})")
    });

    // At most one node down and one paused at a time: the cluster keeps or regains a quorum.
    let mut killed: Option<usize> = None;
    let mut paused: Option<(usize, Instant)> = None;
    let mut events = Vec::new();
    let end = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < end {
        tokio::time::sleep(rng.millis(200, 1200)).await;
        if let Some((i, until)) = paused
            && Instant::now() >= until
        {
            c.node(i).signal("CONT");
            paused = None;
            events.push(format!("resume {}", i + 1));
        }
        let up: Vec<usize> = (0..3)
            .filter(|i| killed != Some(*i) && paused.map(|(p, _)| p) != Some(*i))
            .collect();
        match rng.below(3) {
            0 if killed.is_none() && up.len() == 3 => {
                let i = up[rng.below(up.len() as u64) as usize];
                c.nodes[i].as_ref().expect("running").sigkill();
                c.nodes[i] = None;
                killed = Some(i);
                events.push(format!("kill {}", i + 1));
            }
            1 if paused.is_none() && !up.is_empty() => {
                let i = up[rng.below(up.len() as u64) as usize];
                c.node(i).signal("STOP");
                paused = Some((i, Instant::now() + rng.millis(300, 2500)));
                events.push(format!("pause {}", i + 1));
            }
            2 if killed.is_some() => {
                let i = killed.take().expect("a killed node");
                c.start_node(i).await;
                events.push(format!("restart {}", i + 1));
            }
            _ => {}
        }
    }
    if let Some((i, _)) = paused {
        c.node(i).signal("CONT");
        events.push(format!("resume {}", i + 1));
    }
    if let Some(i) = killed {
        c.start_node(i).await;
        events.push(format!("restart {}", i + 1));
    }
    let started = Instant::now();
    eprintln!("schedule: {}", events.join(", "));
    // A little more load on the healed cluster, then the checks.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let sent = load.stop().await;
    eprintln!(
        "{} writes acknowledged, {} with an unknown outcome ({:?} after the schedule)",
        sent.acknowledged.len(),
        sent.unknown.len(),
        started.elapsed()
    );
    assert!(events.len() >= 4, "too few faults: {events:?}");
    assert!(sent.acknowledged.len() > 100, "too few writes");
    settled(&c, &token, &sent).await;
    eprintln!("settled {:?} after the schedule", started.elapsed());
}
