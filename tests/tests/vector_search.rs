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
    // Each user's rows have their own index.
    s.ok(
        &admin,
        "ALTER TABLE app.memory CREATE VECTOR INDEX e USING COSINE",
    )
    .await;
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

/// The whole answer of a statement as text (EXPLAIN's plan lines among it).
async fn explain(s: &Server, token: &str, sql: &str) -> String {
    s.ok(token, &format!("EXPLAIN {sql}")).await.to_string()
}

/// The ids of the `k` rows nearest to `q` by cosine distance, over `where_` and in order.
async fn ranked(s: &Server, token: &str, q: &[f32], where_: &str, k: usize) -> Vec<i64> {
    let sql = format!(
        "SELECT id FROM app.docs {where_} ORDER BY COSINE_DISTANCE(e, '{}') LIMIT {k}",
        literal(q)
    );
    ids(&s.ok(token, &sql).await)
}

/// The files of the vector index snapshots in data directory `data`, sorted.
fn snapshot_files(data: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(data.join("vectors"))
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The status of each index build this node ran (`system.jobs`).
async fn vector_jobs(s: &Server, token: &str) -> Vec<String> {
    let jobs = s
        .ok(
            token,
            "SELECT status FROM system.jobs WHERE job_type = 'vector_index'",
        )
        .await;
    rows(&jobs)
        .iter()
        .map(|j| j[0].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn overlap(a: &[i64], b: &[i64]) -> usize {
    a.iter().filter(|x| b.contains(x)).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vector_index_answers_nearest_queries_and_follows_every_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let s = Server::start(&data).await;
    let admin = s.setup_and_login().await;
    s.ok_all(
        &admin,
        &[
            "CREATE NAMESPACE app",
            &format!(
                "CREATE SHARED TABLE app.docs (id BIGINT PRIMARY KEY, e EMBEDDING({DIM}), tag TEXT)"
            ),
        ],
    )
    .await;
    let table: Vec<(i64, Vec<f32>)> = vectors(11, 2000)
        .into_iter()
        .enumerate()
        .map(|(i, v)| (i as i64, v))
        .collect();
    let rare = |id: i64| id % 20 == 0;
    for (n, chunk) in table.chunks(250).enumerate() {
        let values: Vec<String> = chunk
            .iter()
            .map(|(id, v)| {
                let tag = if rare(*id) { "rare" } else { "common" };
                format!("({id}, '{}', '{tag}')", literal(v))
            })
            .collect();
        s.ok(
            &admin,
            &format!(
                "INSERT INTO app.docs (id, e, tag) VALUES {}",
                values.join(", ")
            ),
        )
        .await;
        if n == 3 {
            // Half the rows go to Parquet.
            s.run_job(&admin, "STORAGE FLUSH TABLE app.docs").await;
        }
    }

    // Index statements that are wrong: a clear error each, and no index.
    for (sql, needle) in [
        (
            "ALTER TABLE app.docs CREATE VECTOR INDEX tag USING COSINE",
            "not an EMBEDDING",
        ),
        (
            "ALTER TABLE app.docs CREATE VECTOR INDEX nope",
            "does not exist",
        ),
        (
            "ALTER TABLE app.docs CREATE VECTOR INDEX e USING HAMMING",
            "COSINE, L2 or DOT",
        ),
        (
            "ALTER TABLE app.docs DROP VECTOR INDEX e",
            "no vector index",
        ),
    ] {
        let (status, body) = s.sql(&admin, sql).await;
        assert!((400..500).contains(&status), "{sql}: {status} {body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(needle), "{sql}: {message}");
    }
    let q0 = vectors(500, 1).remove(0);
    let by_cosine = format!(
        "SELECT id FROM app.docs ORDER BY COSINE_DISTANCE(e, '{}') LIMIT 10",
        literal(&q0)
    );
    assert!(
        !explain(&s, &admin, &by_cosine)
            .await
            .contains("VectorIndexScan")
    );

    let created = s
        .ok(&admin, "ALTER TABLE app.docs CREATE INDEX e USING COSINE")
        .await;
    assert!(created.to_string().contains("Vector index"), "{created}");
    let (status, body) = s
        .sql(&admin, "ALTER TABLE app.docs CREATE VECTOR INDEX e")
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.to_string().contains("already has a vector index"),
        "{body}"
    );
    // EXPLAIN shows which plan answers: the index for cosine, an exact scan for L2.
    assert!(
        explain(&s, &admin, &by_cosine)
            .await
            .contains("VectorIndexScan")
    );
    let by_l2 = by_cosine.replace("COSINE_DISTANCE", "L2_DISTANCE");
    assert!(
        !explain(&s, &admin, &by_l2)
            .await
            .contains("VectorIndexScan")
    );
    let described = s.ok(&admin, "DESCRIBE TABLE app.docs").await.to_string();
    assert!(
        described.contains("vector index USING COSINE"),
        "{described}"
    );
    let listed = s
        .ok(
            &admin,
            "SELECT options FROM system.tables WHERE table_name = 'docs'",
        )
        .await
        .to_string();
    assert!(
        listed.contains(r#"\"vector_indexes\":{\"e\":\"COSINE\"}"#),
        "{listed}"
    );

    // Recall against brute force, without and with a filter.
    let (mut found, mut found_rare) = (0, 0);
    let rare_rows: Vec<(i64, Vec<f32>)> =
        table.iter().filter(|(id, _)| rare(*id)).cloned().collect();
    let queries = vectors(77, 20);
    for q in &queries {
        found += overlap(
            &ranked(&s, &admin, q, "", 10).await,
            &nearest(&table, q, 10, cosine),
        );
        let only_rare = ranked(&s, &admin, q, "WHERE tag = 'rare'", 10).await;
        assert_eq!(only_rare.len(), 10, "k rows pass the filter");
        assert!(only_rare.iter().all(|id| rare(*id)), "{only_rare:?}");
        found_rare += overlap(&only_rare, &nearest(&rare_rows, q, 10, cosine));
    }
    assert!(found >= 190, "recall@10 {found}/200");
    assert!(found_rare >= 180, "filtered recall@10 {found_rare}/200");
    let filtered = format!(
        "SELECT id FROM app.docs WHERE tag = 'rare' ORDER BY COSINE_DISTANCE(e, '{}') LIMIT 10",
        literal(&q0)
    );
    assert!(
        explain(&s, &admin, &filtered)
            .await
            .contains("VectorIndexScan")
    );
    // A filter fewer than k rows pass: all of them, ranked (the index runs out, an exact
    // search answers).
    let few = ranked(&s, &admin, &q0, "WHERE id < 3", 10).await;
    let first3: Vec<(i64, Vec<f32>)> = table[..3].to_vec();
    assert_eq!(few, nearest(&first3, &q0, 3, cosine));
    // vector_search reads the index too, with the same answers.
    let search = format!(
        "SELECT row_id FROM vector_search('app.docs', 'e', '{}', 10)",
        literal(&q0)
    );
    assert!(
        explain(&s, &admin, &search)
            .await
            .contains("VectorIndexScan")
    );
    assert!(
        overlap(
            &ids(&s.ok(&admin, &search).await),
            &nearest(&table, &q0, 10, cosine)
        ) >= 9
    );

    // Updates, deletes and inserts count at once.
    let q = vectors(123, 1).remove(0);
    s.ok(
        &admin,
        &format!("UPDATE app.docs SET e = '{}' WHERE id = 5", literal(&q)),
    )
    .await;
    assert_eq!(ranked(&s, &admin, &q, "", 1).await, [5]);
    s.ok(&admin, "DELETE FROM app.docs WHERE id = 5").await;
    assert_ne!(ranked(&s, &admin, &q, "", 1).await, [5]);
    let mut close = q.clone();
    close[0] += 0.001;
    s.ok(
        &admin,
        &format!(
            "INSERT INTO app.docs (id, e, tag) VALUES (9000, '{}', 'new')",
            literal(&close)
        ),
    )
    .await;
    assert_eq!(ranked(&s, &admin, &q, "", 1).await, [9000]);
    let before: Vec<Vec<i64>> = {
        let mut out = Vec::new();
        for q in queries.iter().take(5) {
            out.push(ranked(&s, &admin, q, "", 10).await);
        }
        out
    };

    // Each build is a VI- job of system.jobs.
    let jobs = s
        .ok(
            &admin,
            "SELECT job_id, status, message FROM system.jobs WHERE job_type = 'vector_index'",
        )
        .await;
    let jobs = rows(&jobs);
    assert!(!jobs.is_empty());
    for j in &jobs {
        assert!(j[0].as_str().unwrap_or_default().starts_with("VI-"), "{j}");
        assert_eq!(j[1], "completed", "{j}");
    }

    // After a SIGKILL, the restarted node loads the index it saved after building it and
    // catches it up from the journal; it builds nothing. The changes are folded into the
    // loaded graph afresh: its answers are checked against brute force, as the first were.
    let mut current: Vec<(i64, Vec<f32>)> = table.into_iter().filter(|(id, _)| *id != 5).collect();
    current.push((9000, close));
    let truth: Vec<Vec<i64>> = queries
        .iter()
        .take(5)
        .map(|q| nearest(&current, q, 10, cosine))
        .collect();
    let matched = |answers: &[Vec<i64>]| -> usize {
        answers.iter().zip(&truth).map(|(a, t)| overlap(a, t)).sum()
    };
    assert!(matched(&before) >= 48, "{before:?} {truth:?}");
    s.kill();
    let saved = snapshot_files(&data);
    assert_eq!(saved.len(), 2, "{saved:?}");
    assert!(
        saved
            .iter()
            .all(|f| f.ends_with(".meta") || f.ends_with(".vix")),
        "{saved:?}"
    );
    let s = Server::start(&data).await;
    let admin = s.login("admin", "kalamdb123").await;
    let mut after = Vec::new();
    for q in queries.iter().take(5) {
        after.push(ranked(&s, &admin, q, "", 10).await);
    }
    assert!(matched(&after) >= 48, "{after:?} {truth:?}");
    assert!(
        vector_jobs(&s, &admin).await.is_empty(),
        "loaded, not built"
    );
    // So does a node replayed from the log.
    let last = s.last_applied().await;
    s.stop();
    let replayed = dir.path().join("replayed");
    folddb_tests::replay(&data.join("log"), &replayed, Some(last));
    let r = Server::start(&replayed).await;
    let admin = r.login("admin", "kalamdb123").await;
    let mut replayed_answers = Vec::new();
    for q in queries.iter().take(5) {
        replayed_answers.push(ranked(&r, &admin, q, "", 10).await);
    }
    assert!(
        matched(&replayed_answers) >= 48,
        "{replayed_answers:?} {truth:?}"
    );

    // Dropped, the index no longer answers; exact search does, as before.
    r.ok(&admin, "ALTER TABLE app.docs DROP VECTOR INDEX e")
        .await;
    assert!(
        !explain(&r, &admin, &by_cosine)
            .await
            .contains("VectorIndexScan")
    );
    assert_eq!(
        ranked(&r, &admin, &queries[0], "", 10).await,
        nearest(&current, &queries[0], 10, cosine)
    );
}

/// The index dropped and created again while searches run: every search answers its k rows
/// (from the index, or exactly while there is none or it is being built), as brute force
/// ranks them, and the server carries on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn searches_carry_on_while_the_index_is_dropped_and_created() {
    let (_dir, s, admin) = with_table("SHARED", "docs").await;
    let table: Vec<(i64, Vec<f32>)> = vectors(5, 400)
        .into_iter()
        .enumerate()
        .map(|(i, v)| (i as i64, v))
        .collect();
    for chunk in table.chunks(200) {
        insert(&s, &admin, "app.docs", chunk).await;
    }
    let create = "ALTER TABLE app.docs CREATE VECTOR INDEX e USING COSINE";
    s.ok(&admin, create).await;
    let queries = vectors(6, 16);
    let searches = async {
        let mut answers = Vec::new();
        for q in &queries {
            answers.push(ranked(&s, &admin, q, "", 10).await);
        }
        answers
    };
    let ddl = async {
        for _ in 0..3 {
            s.ok(&admin, "ALTER TABLE app.docs DROP VECTOR INDEX e")
                .await;
            s.ok(&admin, create).await;
        }
    };
    let (answers, ()) = tokio::join!(searches, ddl);
    for (q, got) in queries.iter().zip(&answers) {
        let truth = nearest(&table, q, 10, cosine);
        assert_eq!(got.len(), 10, "{got:?}");
        // Served by whichever graph was there (old, rebuilt, or the exact scan between):
        // an HNSW graph built anew may miss one or two of the ten (seen on a loaded CI run).
        assert!(overlap(got, &truth) >= 8, "{got:?} {truth:?}");
    }
    let by_cosine = format!(
        "SELECT id FROM app.docs ORDER BY COSINE_DISTANCE(e, '{}') LIMIT 10",
        literal(&queries[0])
    );
    assert!(
        explain(&s, &admin, &by_cosine)
            .await
            .contains("VectorIndexScan")
    );
    let truth = nearest(&table, &queries[0], 10, cosine);
    let after = ranked(&s, &admin, &queries[0], "", 10).await;
    assert!(overlap(&after, &truth) >= 9, "{after:?} {truth:?}");
}

/// A node killed (SIGKILL) in the middle of an index build: nothing of the build was kept,
/// and restarted, the node searches exactly until it has built the index again, then
/// answers from it as brute force ranks the rows, and saves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_during_an_index_build_builds_it_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    // Every build of this node pauses for a minute before it starts: long enough to kill it.
    let s = Server::start_with(&data, &[("FOLDDB_TEST_VECTOR_BUILD_DELAY_MS", "60000")]).await;
    let admin = s.setup_and_login().await;
    s.ok_all(
        &admin,
        &[
            "CREATE NAMESPACE app",
            &format!("CREATE SHARED TABLE app.docs (id BIGINT PRIMARY KEY, e EMBEDDING({DIM}))"),
        ],
    )
    .await;
    let table: Vec<(i64, Vec<f32>)> = vectors(21, 600)
        .into_iter()
        .enumerate()
        .map(|(i, v)| (i as i64, v))
        .collect();
    for chunk in table.chunks(200) {
        insert(&s, &admin, "app.docs", chunk).await;
    }
    s.ok(
        &admin,
        "ALTER TABLE app.docs CREATE VECTOR INDEX e USING COSINE",
    )
    .await;
    let queries = vectors(22, 5);
    // The build starts with the first search, which is answered exactly meanwhile.
    assert_eq!(
        ranked(&s, &admin, &queries[0], "", 10).await,
        nearest(&table, &queries[0], 10, cosine)
    );
    assert_eq!(vector_jobs(&s, &admin).await, ["running"]);
    s.kill();
    assert!(
        snapshot_files(&data).is_empty(),
        "{:?}",
        snapshot_files(&data)
    );

    let s = Server::start(&data).await;
    let admin = s.login("admin", "kalamdb123").await;
    // The first search builds it again (answered exactly, or by the index if it is built
    // within the search's wait).
    let first = ranked(&s, &admin, &queries[0], "", 10).await;
    let truth = nearest(&table, &queries[0], 10, cosine);
    assert!(overlap(&first, &truth) >= 9, "{first:?} {truth:?}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while vector_jobs(&s, &admin).await != ["completed"] || snapshot_files(&data).len() != 2 {
        assert!(std::time::Instant::now() < deadline, "never built again");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let by_cosine = format!(
        "SELECT id FROM app.docs ORDER BY COSINE_DISTANCE(e, '{}') LIMIT 10",
        literal(&queries[1])
    );
    assert!(
        explain(&s, &admin, &by_cosine)
            .await
            .contains("VectorIndexScan")
    );
    for q in &queries {
        let got = ranked(&s, &admin, q, "", 10).await;
        let truth = nearest(&table, q, 10, cosine);
        assert!(overlap(&got, &truth) >= 9, "{got:?} {truth:?}");
    }
}
