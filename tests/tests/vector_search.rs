//! Vector search (#20, API.md 3.6), against the real binary: `COSINE_DISTANCE`,
//! `L2_DISTANCE` and `DOT_PRODUCT` over `EMBEDDING(n)` columns rank rows exactly as a
//! brute-force computation does, hot or flushed to Parquet, with a literal or a `$1`
//! parameter; `vector_search(…)` returns the same candidates; a USER table's search never
//! sees another user's rows; updates and deletes count at once; bad vectors are refused.

use std::collections::BTreeSet;

use folddb_tests::{Server, rows};
use serde_json::{Value, json};

const DIM: usize = 8;

/// Deterministic pseudo-random vectors (an LCG), components in [-1, 1).
fn vectors(seed: u64, n: usize) -> Vec<Vec<f32>> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            (0..DIM)
                .map(|_| {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    ((x >> 40) as f64 / (1u64 << 24) as f64 * 2.0 - 1.0) as f32
                })
                .collect()
        })
        .collect()
}

fn literal(v: &[f32]) -> String {
    serde_json::to_string(v).expect("json")
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot = |x: &[f32], y: &[f32]| -> f64 {
        x.iter()
            .zip(y)
            .map(|(p, q)| f64::from(*p) * f64::from(*q))
            .sum()
    };
    1.0 - dot(a, b) / (dot(a, a).sqrt() * dot(b, b).sqrt())
}

fn l2(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(p, q)| (f64::from(*p) - f64::from(*q)).powi(2))
        .sum::<f64>()
        .sqrt()
}

/// The ids of the `k` rows of `table` nearest to `q`, by brute force.
fn nearest(
    table: &[(i64, Vec<f32>)],
    q: &[f32],
    k: usize,
    metric: fn(&[f32], &[f32]) -> f64,
) -> Vec<i64> {
    let mut scored: Vec<(f64, i64)> = table.iter().map(|(id, v)| (metric(v, q), *id)).collect();
    scored.sort_by(|a, b| a.partial_cmp(b).expect("finite"));
    scored.into_iter().take(k).map(|(_, id)| id).collect()
}

fn ids(answer: &Value) -> Vec<i64> {
    rows(answer)
        .iter()
        .map(|r| r[0].as_str().expect("id text").parse().expect("id"))
        .collect()
}

async fn insert(s: &Server, token: &str, table: &str, rows: &[(i64, Vec<f32>)]) {
    let values: Vec<String> = rows
        .iter()
        .map(|(id, v)| format!("({id}, '{}')", literal(v)))
        .collect();
    s.ok(
        token,
        &format!("INSERT INTO {table} (id, e) VALUES {}", values.join(", ")),
    )
    .await;
}

/// A server with table `app.<name>` of kind `kind` (`id`, `e EMBEDDING(8)`): the data
/// directory (kept while it runs), the server and a DBA's token.
async fn with_table(kind: &str, name: &str) -> (tempfile::TempDir, Server, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Server::start(&dir.path().join("data")).await;
    let admin = s.setup_and_login().await;
    s.ok_all(
        &admin,
        &[
            "CREATE NAMESPACE app",
            &format!("CREATE {kind} TABLE app.{name} (id BIGINT PRIMARY KEY, e EMBEDDING({DIM}))"),
        ],
    )
    .await;
    (dir, s, admin)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn similarity_ranks_rows_as_brute_force_does_hot_and_cold() {
    let (_dir, s, admin) = with_table("SHARED", "docs").await;
    let table: Vec<(i64, Vec<f32>)> = vectors(7, 300)
        .into_iter()
        .enumerate()
        .map(|(i, v)| (i as i64, v))
        .collect();
    insert(&s, &admin, "app.docs", &table[..150]).await;
    // Half of the rows go to Parquet; the rest stay hot.
    s.run_job(&admin, "STORAGE FLUSH TABLE app.docs").await;
    insert(&s, &admin, "app.docs", &table[150..]).await;
    s.ok(&admin, "INSERT INTO app.docs (id, e) VALUES (1000, NULL)")
        .await;

    for (i, q) in vectors(99, 5).iter().enumerate() {
        let q_text = literal(q);
        let by = |f: &str| format!("SELECT id FROM app.docs ORDER BY {f}(e, '{q_text}') LIMIT 10");
        assert_eq!(
            ids(&s.ok(&admin, &by("COSINE_DISTANCE")).await),
            nearest(&table, q, 10, cosine),
            "query {i}: cosine"
        );
        assert_eq!(
            ids(&s.ok(&admin, &by("L2_DISTANCE")).await),
            nearest(&table, q, 10, l2),
            "query {i}: l2"
        );
        let by_dot = format!(
            "SELECT id FROM app.docs ORDER BY DOT_PRODUCT(e, '{q_text}') DESC NULLS LAST LIMIT 10"
        );
        let neg_dot = |a: &[f32], b: &[f32]| -> f64 {
            -a.iter()
                .zip(b)
                .map(|(p, q)| f64::from(*p) * f64::from(*q))
                .sum::<f64>()
        };
        assert_eq!(
            ids(&s.ok(&admin, &by_dot).await),
            nearest(&table, q, 10, neg_dot),
            "query {i}: dot"
        );
        // A parameter, and the table function: the same candidates, with their distances.
        let (status, answer) = s
            .post(
                "/v1/api/sql",
                Some(&admin),
                &json!({"sql": "SELECT id FROM app.docs ORDER BY COSINE_DISTANCE(e, $1) LIMIT 10",
                        "params": [q_text]}),
            )
            .await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(
            ids(&answer),
            nearest(&table, q, 10, cosine),
            "query {i}: $1"
        );
        let found = s
            .ok(
                &admin,
                &format!(
                    "SELECT row_id, score FROM vector_search('app.docs', 'e', '{q_text}', 10)"
                ),
            )
            .await;
        assert_eq!(
            ids(&found),
            nearest(&table, q, 10, cosine),
            "query {i}: vector_search"
        );
        for r in rows(&found) {
            let id: usize = r[0].as_str().expect("id").parse().expect("id");
            let score = r[1].as_f64().expect("score");
            assert!((score - cosine(&table[id].1, q)).abs() < 1e-5, "{r}");
        }
    }

    // An update is searched at once: row 5 becomes the query itself; a delete removes it.
    let q = &vectors(123, 1)[0];
    s.ok(
        &admin,
        &format!("UPDATE app.docs SET e = '{}' WHERE id = 5", literal(q)),
    )
    .await;
    let top = format!(
        "SELECT id FROM app.docs ORDER BY COSINE_DISTANCE(e, '{}') LIMIT 1",
        literal(q)
    );
    assert_eq!(ids(&s.ok(&admin, &top).await), [5]);
    s.ok(&admin, "DELETE FROM app.docs WHERE id = 5").await;
    assert_ne!(ids(&s.ok(&admin, &top).await), [5]);

    // Bad vectors and arguments: a clear error each, and the server carries on.
    for (sql, needle) in [
        (
            "SELECT COSINE_DISTANCE(e, '[1, 2]') FROM app.docs",
            "different dimensions",
        ),
        (
            "SELECT L2_DISTANCE(e, '[1, 2') FROM app.docs",
            "expected '[x, y, …]'",
        ),
        (
            "SELECT DOT_PRODUCT(e, '[1e39, 0, 0, 0, 0, 0, 0, 0]') FROM app.docs",
            "finite",
        ),
        (
            "SELECT COSINE_DISTANCE(id, '[1]') FROM app.docs",
            "not Int64",
        ),
        (
            "SELECT * FROM vector_search('app.docs', 'id', '[1]')",
            "not an EMBEDDING",
        ),
        (
            "SELECT * FROM vector_search('app.docs', 'e', '[1, 2]')",
            "EMBEDDING(8)",
        ),
        (
            "SELECT * FROM vector_search('app.docs', 'e', '[1, 0, 0, 0, 0, 0, 0, 0]', 0)",
            "top_k",
        ),
        (
            "SELECT * FROM vector_search('app.docs', 'e', '[1, 0, 0, 0, 0, 0, 0, 0]', 100000)",
            "top_k",
        ),
        (
            "SELECT * FROM vector_search('app.nope', 'e', '[1]')",
            "not found",
        ),
    ] {
        let (status, body) = s.sql(&admin, sql).await;
        assert_eq!(status, 400, "{sql}: {body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(needle), "{sql}: {message}");
    }
    let count = s.ok(&admin, "SELECT COUNT(*) FROM app.docs").await;
    assert_eq!(
        rows(&count),
        vec![json!(["300"])],
        "300 rows, a NULL one, one deleted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_tables_search_never_returns_another_users_rows() {
    let (_dir, s, admin) = with_table("USER", "memory").await;
    let alice = s.user(&admin, "alice", "pw-alice-1", "user").await;
    let bob = s.user(&admin, "bob", "pw-bob-1", "user").await;
    let mine: Vec<(i64, Vec<f32>)> = vectors(1, 40)
        .into_iter()
        .enumerate()
        .map(|(i, v)| (i as i64, v))
        .collect();
    let theirs: Vec<(i64, Vec<f32>)> = vectors(2, 40)
        .into_iter()
        .enumerate()
        .map(|(i, v)| (1000 + i as i64, v))
        .collect();
    insert(&s, &alice, "app.memory", &mine).await;
    insert(&s, &bob, "app.memory", &theirs).await;
    let alice_ids: BTreeSet<i64> = mine.iter().map(|r| r.0).collect();
    // Queries right on top of bob's vectors still find only alice's rows.
    for (_, q) in theirs.iter().take(10) {
        let q = literal(q);
        let ranked = ids(&s
            .ok(
                &alice,
                &format!("SELECT id FROM app.memory ORDER BY COSINE_DISTANCE(e, '{q}') LIMIT 5"),
            )
            .await);
        let searched = ids(&s
            .ok(
                &alice,
                &format!("SELECT row_id FROM vector_search('app.memory', 'e', '{q}', 50)"),
            )
            .await);
        assert_eq!(searched.len(), 40, "all of alice's rows and no more");
        for id in ranked.iter().chain(&searched) {
            assert!(alice_ids.contains(id), "alice was shown row {id}");
        }
    }
}
