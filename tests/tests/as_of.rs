//! `SELECT … FROM ns.t AS OF <_seq>` (and `AS OF TIMESTAMP '…'`): the table as it was at a
//! past point, on random histories of inserts, updates, deletes and flushes, for SHARED and
//! USER tables; equal to what the table held then, and to what `folddb log replay
//! --to-index` rebuilds; bad points refused by name.

use std::time::Duration;

use folddb_tests::{Server, rows};
use serde_json::Value;

/// A small deterministic generator (xorshift64*): reproducible random histories.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A point of the history: its `_seq`, log index and what each table held.
struct Point {
    seq: i64,
    index: u64,
    shared: Vec<Value>,
    user: Vec<Value>,
}

async fn select(s: &Server, token: &str, table: &str, as_of: &str) -> Vec<Value> {
    rows(
        &s.ok(
            token,
            &format!("SELECT id, v FROM app.{table}{as_of} ORDER BY id"),
        )
        .await,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn as_of_answers_as_the_table_was_and_as_a_replay_to_that_index_does() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let s = Server::start(&data).await;
    let admin = s.setup_and_login().await;
    s.ok_all(
        &admin,
        &[
            "CREATE NAMESPACE app",
            "CREATE SHARED TABLE app.s (id BIGINT PRIMARY KEY, v INT) WITH (ACCESS_LEVEL = 'PUBLIC')",
            "CREATE USER TABLE app.u (id BIGINT PRIMARY KEY, v INT)",
            "CREATE SHARED TABLE app.mark (id BIGINT PRIMARY KEY) WITH (ACCESS_LEVEL = 'PUBLIC')",
        ],
    )
    .await;
    let alice = s.user(&admin, "alice", "alice-pass-1", "user").await;
    let mut points = Vec::new();
    for seed in [0x9e37_79b9_7f4a_7c15u64, 42] {
        let mut rng = Rng(seed);
        let mut ids: [Vec<u64>; 2] = [Vec::new(), Vec::new()];
        for step in 0..50u64 {
            let t = usize::from(rng.below(2) == 1);
            let (table, token) = [("s", &admin), ("u", &alice)][t];
            let v = rng.below(100);
            let sql = match rng.below(10) {
                0..=3 => {
                    let id = seed % 1000 * 1000 + step;
                    ids[t].push(id);
                    format!("INSERT INTO app.{table} (id, v) VALUES ({id}, {v})")
                }
                4..=6 if !ids[t].is_empty() => {
                    let id = ids[t][rng.below(ids[t].len() as u64) as usize];
                    format!("UPDATE app.{table} SET v = {v} WHERE id = {id}")
                }
                7 if !ids[t].is_empty() => {
                    let id = ids[t].swap_remove(rng.below(ids[t].len() as u64) as usize);
                    format!("DELETE FROM app.{table} WHERE id = {id}")
                }
                8 => {
                    let m = s
                        .ok(&admin, &format!("STORAGE FLUSH TABLE app.{table}"))
                        .await;
                    let msg = m["results"][0]["message"].as_str().unwrap_or_default();
                    if let Some(job) = msg.rsplit_once("Job ID: ").map(|(_, j)| j) {
                        s.wait_job(&admin, job).await;
                    }
                    continue;
                }
                _ => {
                    // A point: a marker row's _seq parts what came before from what after.
                    let mark = points.len();
                    s.ok(
                        &admin,
                        &format!("INSERT INTO app.mark (id) VALUES ({mark})"),
                    )
                    .await;
                    let r = s
                        .ok(
                            &admin,
                            &format!("SELECT _seq FROM app.mark WHERE id = {mark}"),
                        )
                        .await;
                    let seq = folddb_tests::ws::seq_of(&rows(&r)[0][0]);
                    points.push(Point {
                        seq,
                        index: s.last_applied().await,
                        shared: select(&s, &admin, "s", "").await,
                        user: select(&s, &alice, "u", "").await,
                    });
                    continue;
                }
            };
            s.ok(token, &sql).await;
        }
    }
    assert!(points.len() >= 4, "{} points", points.len());
    let now_shared = select(&s, &admin, "s", "").await;
    for p in &points {
        let at = format!(" AS OF {}", p.seq);
        assert_eq!(select(&s, &admin, "s", &at).await, p.shared, "app.s{at}");
        assert_eq!(
            select(&s, &alice, "u", &at).await,
            p.user,
            "app.u{at} as alice"
        );
        // Another user's view of the USER table then: their own rows, none.
        assert!(select(&s, &admin, "u", &at).await.is_empty());
        // Filters and aggregates read the same past.
        let big = p.shared.iter().filter(|r| r[1].as_i64() > Some(50)).count();
        let r = s
            .ok(
                &admin,
                &format!("SELECT COUNT(*) FROM app.s{at} WHERE v > 50"),
            )
            .await;
        let count = folddb_tests::ws::seq_of(&rows(&r)[0][0]);
        assert_eq!(count, big as i64, "count{at}");
    }
    // A time still to come is now.
    assert_eq!(
        select(&s, &admin, "s", " AS OF TIMESTAMP '2200-01-01T00:00:00Z'").await,
        now_shared
    );
    // Bad points: refused by name, nothing else changes.
    for (sql, says) in [
        (
            "SELECT * FROM app.s AS OF 999999999999999999",
            "newer than anything applied",
        ),
        ("SELECT * FROM app.s AS OF TIMESTAMP 'soon'", "not a time"),
        ("SELECT * FROM app.nope AS OF 1", "nope"),
    ] {
        let (status, body) = s.sql(&admin, sql).await;
        assert_eq!(status, 400, "{sql}: {body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{sql}: {message}");
    }
    // A replay of the log to a point's index answers as AS OF that point does.
    s.stop();
    for (n, p) in points.iter().rev().take(2).enumerate() {
        let into = dir.path().join(format!("replay-{n}"));
        folddb_tests::replay(&data.join("log"), &into, Some(p.index));
        let r = Server::start(&into).await;
        let admin = r.login("admin", "kalamdb123").await;
        let alice = r.login("alice", "alice-pass-1").await;
        assert_eq!(
            select(&r, &admin, "s", "").await,
            p.shared,
            "replay to {}",
            p.index
        );
        assert_eq!(
            select(&r, &alice, "u", "").await,
            p.user,
            "replay to {}",
            p.index
        );
        r.stop();
    }
}

#[tokio::test]
async fn as_of_before_the_journal_horizon_is_refused_naming_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Server::start_with(
        dir.path(),
        &[
            ("FOLDDB_JOURNAL_RETENTION_SECONDS", "1"),
            ("FOLDDB_JOURNAL_TRIM_INTERVAL_SECONDS", "1"),
        ],
    )
    .await;
    let admin = s.setup_and_login().await;
    s.ok_all(
        &admin,
        &[
            "CREATE NAMESPACE app",
            "CREATE SHARED TABLE app.s (id BIGINT PRIMARY KEY, v INT) WITH (ACCESS_LEVEL = 'PUBLIC')",
            "INSERT INTO app.s (id, v) VALUES (1, 1)",
        ],
    )
    .await;
    let r = s.ok(&admin, "SELECT _seq FROM app.s WHERE id = 1").await;
    let first = folddb_tests::ws::seq_of(&rows(&r)[0][0]);
    s.ok(&admin, "UPDATE app.s SET v = 2 WHERE id = 1").await;
    let sql = format!("SELECT v FROM app.s AS OF {first}");
    assert_eq!(rows(&s.ok(&admin, &sql).await), [serde_json::json!([1])]);
    // Once the update's change is trimmed, that point is past the horizon.
    let mut refused = None;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let (status, body) = s.sql(&admin, &sql).await;
        if status == 400 {
            refused = Some(body);
            break;
        }
    }
    let body = refused.expect("refused once trimmed");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("horizon (_seq "), "{message}");
}
