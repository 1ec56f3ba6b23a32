//! The cold tier (issue #6), driven as a client would: flushes move rows to Parquet and
//! queries see one table; updates, deletes and primary keys work across both tiers;
//! compaction; crashes at each step of a flush; FLUSH_POLICY; STREAM TTL and eviction; and
//! `folddb log replay` rebuilding the state at chosen log indices.
//!
//! Every data-changing statement runs against two identical tables, `app.items` (flushed
//! and compacted along the way) and `app.control` (never flushed): every query must answer
//! the same on both, at every stage.

use std::path::Path;
use std::time::Duration;

use folddb_tests::{Server, rows, run_folddb};
use serde_json::Value;

const SCHEMA: &str = "(id BIGINT PRIMARY KEY, n INT NOT NULL, v TEXT, at TIMESTAMP DEFAULT NOW())";

/// Queries over `{t}` (items or control): counts, filters, aggregates, joins, PK lookups,
/// `_deleted`.
const QUERIES: &[&str] = &[
    "SELECT id, n, v FROM app.{t} ORDER BY id",
    "SELECT COUNT(*) AS c FROM app.{t}",
    "SELECT id, v FROM app.{t} WHERE n > 50 AND v LIKE 'v%' ORDER BY id",
    "SELECT n % 7 AS g, COUNT(*) AS c, SUM(n) AS s, MAX(v) AS m FROM app.{t} GROUP BY n % 7 ORDER BY g",
    "SELECT a.id, o.qty FROM app.{t} a JOIN app.orders o ON o.item = a.id ORDER BY a.id, o.qty",
    "SELECT id, n, v FROM app.{t} WHERE id = 17",
    "SELECT id, n, v FROM app.{t} WHERE id IN (3, 42, 150, 999)",
    "SELECT id FROM app.{t} WHERE _deleted = true ORDER BY id",
    "SELECT id, COUNT(*) FROM app.{t} GROUP BY id HAVING COUNT(*) > 1",
];

/// Primary-key ranges the scan narrows to, each with the same filter on `abs(id)` (ids are
/// positive), which no scan narrows.
const RANGES: &[(&str, &str)] = &[
    ("id > 40 AND id <= 120", "abs(id) > 40 AND abs(id) <= 120"),
    ("id BETWEEN 10 AND 20", "abs(id) BETWEEN 10 AND 20"),
    ("150 > id AND n > 10", "150 > abs(id) AND n > 10"),
    ("id >= 7 AND id < 7", "abs(id) >= 7 AND abs(id) < 7"),
];

/// Runs `sql` (with `{t}` in it) against both tables.
async fn both(s: &Server, token: &str, sql: &str) {
    for t in ["items", "control"] {
        s.ok(token, &sql.replace("{t}", t)).await;
    }
}

/// Every query answers the same on both tables; returns the answers (of `items`).
async fn same(s: &Server, token: &str, stage: &str) -> Vec<Vec<Value>> {
    let mut out = Vec::new();
    for q in QUERIES {
        let a = rows(&s.ok(token, &q.replace("{t}", "items")).await);
        let b = rows(&s.ok(token, &q.replace("{t}", "control")).await);
        assert_eq!(a, b, "{stage}: {q}");
        out.push(a);
    }
    for (narrowed, whole) in RANGES {
        let q = |cond: &str| format!("SELECT id, n, v FROM app.items WHERE {cond} ORDER BY id");
        let a = rows(&s.ok(token, &q(narrowed)).await);
        let b = rows(&s.ok(token, &q(whole)).await);
        assert_eq!(a, b, "{stage}: {narrowed}");
        out.push(a);
    }
    out
}

/// The job id at the end of a STORAGE message.
fn job_id(answer: &Value) -> String {
    let m = answer["results"][0]["message"].as_str().unwrap_or_default();
    let id = m.rsplit("Job ID: ").next().unwrap_or_default();
    assert!(
        id.starts_with("FL-") || id.starts_with("CO-"),
        "no job id in {m:?}"
    );
    id.to_owned()
}

async fn flush(s: &Server, token: &str, table: &str) -> String {
    let id = job_id(
        &s.ok(token, &format!("STORAGE FLUSH TABLE app.{table}"))
            .await,
    );
    let (status, message) = s.wait_job(token, &id).await;
    assert_eq!(status, "completed", "{message}");
    message
}

async fn hot_rows(s: &Server, token: &str, table: &str) -> i64 {
    let r = rows(
        &s.ok(token, &format!("SHOW STATS FOR TABLE app.{table}"))
            .await,
    );
    match &r[0][1] {
        Value::String(n) => n.parse().expect("a count"),
        other => other.as_i64().expect("a count"),
    }
}

/// The files under `dir` (recursively) whose bytes contain `needle`.
fn files_holding(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_holding(&p, needle));
        } else if std::fs::read(&p).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle)) {
            out.push(p.display().to_string());
        }
    }
    out
}

fn parquet_files(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".parquet"))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

async fn setup(s: &Server) -> String {
    let t = s.setup_and_login().await;
    s.ok(&t, "CREATE NAMESPACE app").await;
    for name in ["items", "control"] {
        s.ok(&t, &format!("CREATE SHARED TABLE app.{name} {SCHEMA}"))
            .await;
    }
    s.ok(
        &t,
        "CREATE SHARED TABLE app.orders (id BIGINT PRIMARY KEY, item BIGINT NOT NULL, qty INT NOT NULL)",
    )
    .await;
    let values: Vec<String> = (1..=200)
        .map(|i| format!("({i}, {}, 'v{i}')", i * 37 % 101))
        .collect();
    both(
        s,
        &t,
        &format!(
            "INSERT INTO app.{{t}} (id, n, v) VALUES {}",
            values.join(", ")
        ),
    )
    .await;
    let orders: Vec<String> = (1..=60)
        .map(|i| format!("({i}, {}, {})", i * 3 % 210, i % 5))
        .collect();
    s.ok(
        &t,
        &format!(
            "INSERT INTO app.orders (id, item, qty) VALUES {}",
            orders.join(", ")
        ),
    )
    .await;
    both(s, &t, "UPDATE app.{t} SET v = 'changed' WHERE id % 10 = 3").await;
    both(s, &t, "DELETE FROM app.{t} WHERE id % 25 = 0").await;
    t
}

#[tokio::test]
async fn queries_answer_the_same_before_and_after_flush_updates_deletes_and_compaction() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Server::start(dir.path()).await;
    let t = setup(&s).await;
    let before = same(&s, &t, "before any flush").await;
    assert_eq!(before[1][0][0], "192", "200 rows less 8 deleted");

    let message = flush(&s, &t, "items").await;
    assert!(message.contains("Flushed 200 row(s)"), "{message}");
    assert_eq!(
        hot_rows(&s, &t, "items").await,
        0,
        "the hot tier gave its rows up"
    );
    let seg_dir = dir.path().join("storage/app/items");
    let files = parquet_files(&seg_dir);
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(seg_dir.join("manifest.json").is_file());
    let manifest = rows(&s.ok(&t, "SHOW MANIFEST").await);
    assert_eq!(manifest.len(), 1, "{manifest:?}");
    assert_eq!(manifest[0][1], "items");
    assert_eq!(manifest[0][5], "200", "row_count: tombstones included");
    assert_eq!(manifest[0][6], "8");
    assert_eq!(same(&s, &t, "after the flush").await, before);

    // Nothing pending: skipped, with the documented message.
    let again = s.ok(&t, "STORAGE FLUSH TABLE app.items").await;
    assert_eq!(
        again["results"][0]["message"],
        "Storage flush skipped: no pending writes for table 'app.items'"
    );

    // Writes to flushed rows: updates, deletes, re-inserting a deleted key, and a duplicate
    // of a flushed key refused on both tables.
    both(
        &s,
        &t,
        "UPDATE app.{t} SET n = n + 1000, v = 'hot' WHERE id BETWEEN 10 AND 30",
    )
    .await;
    both(&s, &t, "DELETE FROM app.{t} WHERE id IN (40, 41, 42)").await;
    both(
        &s,
        &t,
        "INSERT INTO app.{t} (id, n, v) VALUES (25, 5, 'reborn'), (500, 1, 'new')",
    )
    .await;
    for table in ["items", "control"] {
        let (_, code) = s
            .fails(
                &t,
                &format!("INSERT INTO app.{table} (id, n) VALUES (7, 1)"),
            )
            .await;
        assert_eq!(code, "SQL_EXECUTION_ERROR");
        let (_, body) = s
            .sql(
                &t,
                &format!("INSERT INTO app.{table} (id, n) VALUES (7, 1)"),
            )
            .await;
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains("Primary key violation"),
            "{body}"
        );
    }
    let mid = same(&s, &t, "after writes over flushed rows").await;
    assert_ne!(mid, before);

    // A second segment, more writes, then compaction into one.
    flush(&s, &t, "items").await;
    assert_eq!(parquet_files(&seg_dir).len(), 2);
    both(&s, &t, "UPDATE app.{t} SET v = 'third' WHERE n < 20").await;
    both(&s, &t, "DELETE FROM app.{t} WHERE id BETWEEN 100 AND 110").await;
    let pre_compact = same(&s, &t, "two segments and hot rows").await;
    let id = job_id(&s.ok(&t, "STORAGE COMPACT TABLE app.items").await);
    let (status, message) = s.wait_job(&t, &id).await;
    assert_eq!(status, "completed", "{message}");
    assert!(
        message.contains("2 segment(s)") && message.contains("into 1"),
        "{message}"
    );
    assert_eq!(
        parquet_files(&seg_dir).len(),
        1,
        "the old segments are gone"
    );
    assert_eq!(same(&s, &t, "after compaction").await, pre_compact);
    flush(&s, &t, "items").await;
    assert_eq!(same(&s, &t, "after the third flush").await, pre_compact);

    // The job history, and a restart: the same answers from the files.
    let jobs = rows(
        &s.ok(
            &t,
            "SELECT job_type, status FROM system.jobs ORDER BY created_at",
        )
        .await,
    );
    assert_eq!(
        jobs.iter()
            .filter(|j| j[0] == "flush" && j[1] == "completed")
            .count(),
        3,
        "{jobs:?}"
    );
    s.stop();
    // What a job that died before its commit leaves: a segment no manifest lists, and a
    // torn write. The restart sweeps them once it has applied its log.
    let listed = parquet_files(&seg_dir);
    std::fs::copy(
        seg_dir.join(&listed[0]),
        seg_dir.join("batch-FL-orphan.parquet"),
    )
    .expect("an orphan");
    std::fs::write(seg_dir.join("batch-FL-torn.parquet.tmp"), b"torn").expect("a torn file");
    let s = Server::start(dir.path()).await;
    let t = s.login("admin", "kalamdb123").await;
    for _ in 0..300 {
        if parquet_files(&seg_dir) == listed && !seg_dir.join("batch-FL-torn.parquet.tmp").exists()
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(parquet_files(&seg_dir), listed, "the orphan is swept");
    assert!(!seg_dir.join("batch-FL-torn.parquet.tmp").exists());
    assert_eq!(same(&s, &t, "after a restart").await, pre_compact);
    let check = rows(&s.ok(&t, "STORAGE CHECK local EXTENDED").await);
    assert_eq!(check[0][1], "healthy", "{check:?}");
    assert!(
        check[0][11]
            .as_str()
            .is_some_and(|t| t.contains("\"ok\"") && !t.contains("damaged")),
        "{check:?}"
    );
}

#[tokio::test]
async fn user_tables_flush_per_owner_and_stay_private() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Server::start(dir.path()).await;
    let admin = s.setup_and_login().await;
    s.ok(&admin, "CREATE NAMESPACE app").await;
    s.ok(
        &admin,
        "CREATE USER TABLE app.notes (id BIGINT PRIMARY KEY, body TEXT)",
    )
    .await;
    let mut tokens = Vec::new();
    for u in ["alice", "bob"] {
        s.ok(
            &admin,
            &format!("CREATE USER {u} WITH PASSWORD 'secret123' ROLE user"),
        )
        .await;
        let tk = s.login(u, "secret123").await;
        s.ok(
            &tk,
            &format!("INSERT INTO app.notes (id, body) VALUES (1, '{u} one'), (2, '{u} two')"),
        )
        .await;
        tokens.push(tk);
    }
    let answer = |tk: &str| {
        let tk = tk.to_owned();
        let s = &s;
        async move {
            rows(
                &s.ok(&tk, "SELECT id, body FROM app.notes ORDER BY id")
                    .await,
            )
        }
    };
    let before = [answer(&tokens[0]).await, answer(&tokens[1]).await];
    assert_eq!(before[0][0][1], "alice one");
    let (status, _) = s.fails(&tokens[0], "STORAGE FLUSH TABLE app.notes").await;
    assert_eq!(status, 403, "users may not flush");
    let message = flush(&s, &admin, "notes").await;
    assert!(message.contains("for 2 owner(s)"), "{message}");
    for u in ["alice", "bob"] {
        let files = parquet_files(&dir.path().join("storage/app/notes").join(u));
        assert_eq!(files.len(), 1, "{u}: {files:?}");
    }
    assert_eq!([answer(&tokens[0]).await, answer(&tokens[1]).await], before);
    // Bob's flushed key is his own: alice may insert the same id only where hers is free.
    s.ok(&tokens[1], "DELETE FROM app.notes WHERE id = 1").await;
    s.ok(
        &tokens[1],
        "UPDATE app.notes SET body = 'bob edited' WHERE id = 2",
    )
    .await;
    let (_, code) = s
        .fails(
            &tokens[0],
            "INSERT INTO app.notes (id, body) VALUES (1, 'dup')",
        )
        .await;
    assert_eq!(code, "SQL_EXECUTION_ERROR");
    assert_eq!(answer(&tokens[0]).await, before[0]);
    assert_eq!(
        answer(&tokens[1]).await,
        vec![serde_json::json!(["2", "bob edited"])]
    );
}

#[tokio::test]
async fn tables_without_a_policy_follow_the_default_one_and_off_keeps_them_hot() {
    // A server whose default policy is `policy`, checked every second, with 30 rows written
    // to a table created without one.
    async fn thirty_rows(dir: &Path, policy: &str) -> (Server, String) {
        let s = Server::start_with(
            dir,
            &[
                ("FOLDDB_FLUSH_CHECK_INTERVAL_SECONDS", "1"),
                ("FOLDDB_DEFAULT_FLUSH_POLICY", policy),
            ],
        )
        .await;
        let t = s.setup_and_login().await;
        s.ok(&t, "CREATE NAMESPACE app").await;
        s.ok(&t, "CREATE SHARED TABLE app.d (id INT PRIMARY KEY, v TEXT)")
            .await;
        let values: Vec<String> = (1..=30).map(|i| format!("({i}, 'x')")).collect();
        s.ok(
            &t,
            &format!("INSERT INTO app.d VALUES {}", values.join(", ")),
        )
        .await;
        (s, t)
    }
    // The default policy flushes a table created without one once its rows are pending.
    let dir = tempfile::tempdir().expect("temp dir");
    let (s, t) = thirty_rows(dir.path(), "rows:20").await;
    let mut flushed = false;
    for _ in 0..100 {
        if hot_rows(&s, &t, "d").await == 0 {
            flushed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(flushed, "the default policy flushed app.d");
    let c = rows(&s.ok(&t, "SELECT COUNT(*), MAX(id) FROM app.d").await);
    assert_eq!((&c[0][0], &c[0][1]), (&Value::from("30"), &Value::from(30)));
    drop(s);
    // `off`: nothing is flushed unless asked.
    let dir = tempfile::tempdir().expect("temp dir");
    let (s, t) = thirty_rows(dir.path(), "off").await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(hot_rows(&s, &t, "d").await, 30, "off: the rows stay hot");
}

#[tokio::test]
async fn flush_policy_schedules_flushes_and_bad_values_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Server::start_with(dir.path(), &[("FOLDDB_FLUSH_CHECK_INTERVAL_SECONDS", "1")]).await;
    let t = s.setup_and_login().await;
    s.ok(&t, "CREATE NAMESPACE app").await;
    for bad in [
        "rows:0",
        "rows:abc",
        "interval:86400",
        "often",
        "rows:5,bytes:9",
    ] {
        s.fails(
            &t,
            &format!(
                "CREATE SHARED TABLE app.b (id INT PRIMARY KEY) WITH (FLUSH_POLICY = '{bad}')"
            ),
        )
        .await;
    }
    s.fails(&t, "STORAGE FLUSH TABLE app.nothing").await;
    s.fails(&t, "STORAGE FLUSH TABLE items").await;
    s.fails(&t, "STORAGE CHECK s3_nowhere").await;
    s.fails(&t, "KILL JOB 'FL-000000000000'").await;
    s.ok(
        &t,
        "CREATE SHARED TABLE app.p (id INT PRIMARY KEY, v TEXT) WITH (FLUSH_POLICY = 'rows:50')",
    )
    .await;
    let values: Vec<String> = (1..=40).map(|i| format!("({i}, 'x')")).collect();
    s.ok(
        &t,
        &format!("INSERT INTO app.p VALUES {}", values.join(", ")),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        hot_rows(&s, &t, "p").await,
        40,
        "below the threshold: not flushed"
    );
    let values: Vec<String> = (41..=60).map(|i| format!("({i}, 'x')")).collect();
    s.ok(
        &t,
        &format!("INSERT INTO app.p VALUES {}", values.join(", ")),
    )
    .await;
    let mut flushed = false;
    for _ in 0..100 {
        if hot_rows(&s, &t, "p").await == 0 {
            flushed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(flushed, "the scheduler flushed app.p");
    let c = rows(&s.ok(&t, "SELECT COUNT(*) FROM app.p").await);
    assert_eq!(c[0][0], "60");
    let jobs = rows(
        &s.ok(
            &t,
            "SELECT job_id, status FROM system.jobs WHERE job_type = 'flush'",
        )
        .await,
    );
    assert_eq!(jobs.len(), 1, "{jobs:?}");
}

#[tokio::test]
async fn stream_rows_vanish_after_their_ttl_and_are_evicted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Server::start_with(
        dir.path(),
        &[("FOLDDB_STREAM_EVICTION_INTERVAL_SECONDS", "1")],
    )
    .await;
    let t = s.setup_and_login().await;
    s.ok(&t, "CREATE NAMESPACE app").await;
    s.fails(
        &t,
        "CREATE STREAM TABLE app.bad (id BIGINT, v TEXT) WITH (TTL_SECONDS = -1)",
    )
    .await;
    s.ok(
        &t,
        "CREATE STREAM TABLE app.ev (kind TEXT, v INT) WITH (TTL_SECONDS = 2)",
    )
    .await;
    s.ok(
        &t,
        "INSERT INTO app.ev (kind, v) VALUES ('typing', 1), ('typing', 2), ('presence-4f1e', 3)",
    )
    .await;
    // Any flush makes the hot tier durable: the stream's rows are then in files under
    // data/streams/, and in no file of data/rocksdb/.
    s.ok(&t, "CREATE TABLE app.other (id BIGINT PRIMARY KEY)")
        .await;
    s.ok(&t, "INSERT INTO app.other (id) VALUES (1)").await;
    let m = s.ok(&t, "STORAGE FLUSH TABLE app.other").await;
    let flush_id = m["results"][0]["message"]
        .as_str()
        .unwrap_or_default()
        .rsplit("Job ID: ")
        .next()
        .unwrap_or_default()
        .to_owned();
    s.wait_job(&t, &flush_id).await;
    let holding = |sub: &str| files_holding(&dir.path().join(sub), b"presence-4f1e");
    assert!(
        !holding("streams").is_empty(),
        "the rows are in data/streams"
    );
    assert!(holding("rocksdb").is_empty(), "{:?}", holding("rocksdb"));
    let (_, code) = s.fails(&t, "STORAGE FLUSH TABLE app.ev").await;
    assert_eq!(code, "SQL_EXECUTION_ERROR");
    assert_eq!(
        rows(&s.ok(&t, "SELECT COUNT(*) FROM app.ev").await)[0][0],
        "3"
    );
    tokio::time::sleep(Duration::from_millis(2300)).await;
    assert_eq!(
        rows(&s.ok(&t, "SELECT COUNT(*) FROM app.ev").await)[0][0],
        "0",
        "hidden once past the TTL"
    );
    let mut evicted = false;
    for _ in 0..60 {
        if hot_rows(&s, &t, "ev").await == 0 {
            evicted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(evicted, "the eviction job removed them");
    let mut gone = false;
    for _ in 0..50 {
        if holding("streams").is_empty() {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        gone,
        "no file of data/streams holds them: {:?}",
        holding("streams")
    );
    let jobs = rows(
        &s.ok(
            &t,
            "SELECT status, rows_affected FROM system.jobs WHERE job_type = 'stream_eviction'",
        )
        .await,
    );
    assert_eq!(jobs, vec![serde_json::json!(["completed", "3"])]);
}

#[tokio::test]
async fn log_replay_rebuilds_the_answers_at_chosen_indices() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let s = Server::start(&data).await;
    let t = setup(&s).await;
    let mut points = vec![(s.last_applied().await, same(&s, &t, "stage 0").await)];
    flush(&s, &t, "items").await;
    both(&s, &t, "UPDATE app.{t} SET v = 'later' WHERE id < 60").await;
    points.push((s.last_applied().await, same(&s, &t, "stage 1").await));
    both(&s, &t, "DELETE FROM app.{t} WHERE id > 150").await;
    let id = job_id(&s.ok(&t, "STORAGE COMPACT TABLE app.items").await);
    s.wait_job(&t, &id).await;
    flush(&s, &t, "items").await;
    points.push((s.last_applied().await, same(&s, &t, "stage 2").await));
    s.stop();

    for (n, (index, want)) in points.iter().enumerate() {
        let into = dir.path().join(format!("replay-{n}"));
        let stdout = folddb_tests::replay(&data.join("log"), &into, Some(*index));
        assert!(
            stdout.contains(&format!("replayed {index} entries")),
            "{stdout}"
        );
        let r = Server::start(&into).await;
        let rt = r.login("admin", "kalamdb123").await;
        assert_eq!(
            &same(&r, &rt, &format!("replay to {index}")).await,
            want,
            "index {index}"
        );
        r.stop();
    }
    // Into a directory that holds something: refused, nothing written.
    let busy = dir.path().join("replay-0");
    let out = run_folddb([
        "log".as_ref(),
        "replay".as_ref(),
        data.join("log").as_os_str(),
        "--into".as_ref(),
        busy.as_os_str(),
    ]);
    assert!(!out.status.success());
}

/// A request's single query is answered as its rows are produced (API.md 1.7.3, "streamed"):
/// a chunked body, complete and the same rows as the in-memory answer of a batch, and not
/// held to `max_result_bytes`, which a batch's results still are.
#[tokio::test]
async fn a_single_query_streams_its_rows_across_both_tiers() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Server::start_with(dir.path(), &[("FOLDDB_MAX_RESULT_BYTES", "200000")]).await;
    let t = s.setup_and_login().await;
    s.ok_all(
        &t,
        &[
            "CREATE NAMESPACE app",
            "CREATE SHARED TABLE app.big (id BIGINT PRIMARY KEY, v TEXT)",
        ],
    )
    .await;
    let insert = |from: u64| {
        let values: Vec<String> = (from..from + 1000)
            .map(|id| format!("({id}, 'value {id}')"))
            .collect();
        format!("INSERT INTO app.big (id, v) VALUES {}", values.join(", "))
    };
    // 30,000 rows: 20,000 flushed to Parquet, 10,000 hot, and updates over both.
    for chunk in 0..20 {
        s.ok(&t, &insert(chunk * 1000)).await;
    }
    flush(&s, &t, "big").await;
    for chunk in 20..30 {
        s.ok(&t, &insert(chunk * 1000)).await;
    }
    s.ok(&t, "UPDATE app.big SET v = 'changed' WHERE id % 1000 = 7")
        .await;

    let sql = "SELECT id, v FROM app.big ORDER BY id";
    let r = reqwest::Client::new()
        .post(s.url("/v1/api/sql"))
        .bearer_auth(&t)
        .json(&serde_json::json!({ "sql": sql }))
        .send()
        .await
        .expect("request sent");
    assert_eq!(r.status(), 200);
    assert!(r.content_length().is_none(), "the body is streamed");
    let body: Value = r.json().await.expect("a whole JSON answer");
    assert_eq!(body["status"], "success");
    assert_eq!(body["error"], Value::Null);
    assert!(body["took"].as_f64().is_some(), "{}", body["took"]);
    let result = &body["results"][0];
    assert_eq!(result["row_count"], 30_000);
    assert_eq!(result["schema"][0]["name"], "id");
    assert_eq!(result["schema"][1]["data_type"], "Text");
    let streamed = rows(&body);
    assert_eq!(streamed.len(), 30_000);
    for (i, row) in streamed.iter().enumerate() {
        let v = if i % 1000 == 7 {
            "changed".to_owned()
        } else {
            format!("value {i}")
        };
        assert_eq!(row, &serde_json::json!([i.to_string(), v]));
    }
    // The same rows, held in memory as one of a batch's results, pass the limit.
    let (status, refused) = s.sql(&t, &format!("SELECT 1; {sql}")).await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (400, Some("RESULT_TOO_LARGE")),
        "{refused}"
    );
    let held = s.ok(&t, &format!("SELECT 1; {sql} LIMIT 2000")).await;
    assert_eq!(
        held["results"][1]["rows"].as_array().map(Vec::len),
        Some(2000)
    );
    assert_eq!(held["results"][1]["rows"][1999], streamed[1999]);
    // A query that fails before its first row is an error answer, not a stream.
    let (status, failed) = s.sql(&t, "SELECT id / (id - id) FROM app.big").await;
    assert_eq!(status, 400, "{failed}");
    assert_eq!(failed["status"], "error");
}

/// Full scans keep a table's hot rows as columns (`limits.scan_cache_bytes`): every write,
/// schema change, flush and trim after one shows in the next, for each owner of a USER table
/// and for a SHARED one. Each answer is checked against a model kept here.
#[tokio::test]
async fn full_scans_read_again_see_every_change_since() {
    use std::collections::BTreeMap;
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Server::start(dir.path()).await;
    let admin = s.setup_and_login().await;
    s.ok_all(
        &admin,
        &[
            "CREATE NAMESPACE app",
            "CREATE SHARED TABLE app.s (id BIGINT PRIMARY KEY, g INT NOT NULL, v DOUBLE)",
            "CREATE USER TABLE app.u (id BIGINT PRIMARY KEY, g INT NOT NULL, v DOUBLE)",
        ],
    )
    .await;
    let ann = s.user(&admin, "ann", "ann-password-1", "user").await;
    let bob = s.user(&admin, "bob", "bob-password-1", "user").await;
    // Per table (and owner): id -> (g, v).
    let mut model: BTreeMap<&str, BTreeMap<i64, (i64, f64)>> = BTreeMap::new();
    let check = |model: &BTreeMap<&str, BTreeMap<i64, (i64, f64)>>, stage: &str| {
        let mut want: Vec<(String, &str, Vec<Value>)> = Vec::new();
        for (who, table) in [("admin", "s"), ("ann", "u"), ("bob", "u")] {
            let rows = model.get(who).cloned().unwrap_or_default();
            let mut groups: BTreeMap<i64, (i64, f64)> = BTreeMap::new();
            for (g, v) in rows.values() {
                let e = groups.entry(*g).or_default();
                e.0 += 1;
                e.1 += v;
            }
            let expected = groups
                .iter()
                .map(|(g, (c, sum))| serde_json::json!([g, c, sum]))
                .collect();
            want.push((stage.to_owned(), table, expected));
        }
        want
    };
    let ask = |token: String, table: &'static str| {
        let s = &s;
        async move {
            rows(
                &s.ok(
                    &token,
                    &format!(
                        "SELECT g, COUNT(*) AS c, SUM(v) AS total FROM app.{table} GROUP BY g ORDER BY g"
                    ),
                )
                .await,
            )
        }
    };
    let tokens = [
        ("admin", admin.clone()),
        ("ann", ann.clone()),
        ("bob", bob.clone()),
    ];
    let verify = async |model: &BTreeMap<&str, BTreeMap<i64, (i64, f64)>>, stage: &str| {
        for ((who, token), (stage, table, want)) in tokens.iter().zip(check(model, stage)) {
            // Twice: the first may fill the cache, the second reads it.
            for _ in 0..2 {
                let got: Vec<Value> = ask(token.clone(), table)
                    .await
                    .into_iter()
                    .map(|r| {
                        let n = |v: &Value| v.as_i64().or_else(|| v.as_str()?.parse().ok());
                        let f = |v: &Value| v.as_f64().or_else(|| v.as_str()?.parse().ok());
                        serde_json::json!([n(&r[0]), n(&r[1]), f(&r[2])])
                    })
                    .collect();
                assert_eq!(got, want, "{stage}: {who} over app.{table}");
            }
        }
    };
    verify(&model, "empty").await;
    for (who, token, table) in [
        ("admin", &admin, "s"),
        ("ann", &ann, "u"),
        ("bob", &bob, "u"),
    ] {
        let values: Vec<String> = (1..=300)
            .map(|i| format!("({i}, {}, {}.5)", i % 7, i % 11))
            .collect();
        s.ok(
            token,
            &format!(
                "INSERT INTO app.{table} (id, g, v) VALUES {}",
                values.join(", ")
            ),
        )
        .await;
        let rows = model.entry(who).or_default();
        for i in 1..=300i64 {
            rows.insert(i, (i % 7, (i % 11) as f64 + 0.5));
        }
    }
    verify(&model, "inserted").await;
    // One owner's write changes only what that owner sees.
    s.ok(&ann, "UPDATE app.u SET g = 9 WHERE id % 5 = 0").await;
    for (id, row) in model.get_mut("ann").expect("ann's rows") {
        if id % 5 == 0 {
            row.0 = 9;
        }
    }
    verify(&model, "ann updated").await;
    s.ok(&admin, "DELETE FROM app.s WHERE id > 250").await;
    model
        .get_mut("admin")
        .expect("rows")
        .retain(|id, _| *id <= 250);
    s.ok(&admin, "INSERT INTO app.s (id, g, v) VALUES (1000, 3, 2.0)")
        .await;
    model.get_mut("admin").expect("rows").insert(1000, (3, 2.0));
    verify(&model, "shared deleted and inserted").await;
    // A flush and its trims move rows out of the hot tier; the answers stay.
    flush(&s, &admin, "s").await;
    verify(&model, "flushed").await;
    s.ok(&admin, "UPDATE app.s SET v = 1.0 WHERE id <= 10")
        .await;
    for (id, row) in model.get_mut("admin").expect("rows") {
        if *id <= 10 {
            row.1 = 1.0;
        }
    }
    verify(&model, "updated over the cold tier").await;
    // A new column: the cached columns are of the old schema.
    s.ok(&admin, "ALTER TABLE app.s ADD COLUMN w INT DEFAULT 4")
        .await;
    let sum = rows(&s.ok(&admin, "SELECT SUM(w) AS w FROM app.s").await);
    let n = model.get("admin").expect("rows").len() as i64;
    let w = &sum[0][0];
    assert_eq!(
        w.as_i64().or_else(|| w.as_str()?.parse().ok()),
        Some(4 * n),
        "{sum:?}"
    );
    verify(&model, "altered").await;
}

/// The filters a scan applies itself (and the `LIMIT` that then reaches it) keep exactly the
/// rows a plain evaluation of them keeps, over hot and flushed rows, updates and deletes:
/// with the filtered columns outside the projection, NULLs, no columns at all (`COUNT(*)`),
/// a pinned key, and a filter that fails on some row, which fails the query.
#[tokio::test]
async fn the_filters_a_scan_applies_keep_what_a_plain_evaluation_keeps() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Server::start(dir.path()).await;
    let t = s.setup_and_login().await;
    s.ok_all(
        &t,
        &[
            "CREATE NAMESPACE app",
            "CREATE SHARED TABLE app.f (id BIGINT PRIMARY KEY, g INT, v DOUBLE, s TEXT)",
        ],
    )
    .await;
    // Deterministic pseudo-random cells, NULL now and then.
    let mut x: u64 = 0x9e37_79b9;
    let mut next = move || {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        x >> 33
    };
    let mut insert = |ids: Vec<u64>| {
        let values: Vec<String> = ids
            .into_iter()
            .map(|id| {
                let g = next() % 7;
                let v = match next() % 5 {
                    0 => "NULL".to_owned(),
                    n => format!("{}.5", (n * 31 + next() % 40) % 100),
                };
                let s = if next() % 4 == 0 {
                    "NULL".to_owned()
                } else {
                    format!("'s{}'", next() % 9)
                };
                format!("({id}, {g}, {v}, {s})")
            })
            .collect();
        format!(
            "INSERT INTO app.f (id, g, v, s) VALUES {}",
            values.join(", ")
        )
    };
    // Even ids flushed, odd ids hot, then changes over both tiers.
    s.ok(&t, &insert((0..400).step_by(2).collect())).await;
    flush(&s, &t, "f").await;
    s.ok(&t, &insert((1..400).step_by(2).collect())).await;
    s.ok_all(
        &t,
        &[
            "UPDATE app.f SET g = 3 WHERE id % 9 = 4",
            "UPDATE app.f SET v = NULL WHERE id % 13 = 0",
            "DELETE FROM app.f WHERE id % 11 = 5",
        ],
    )
    .await;

    // The reference: every visible row, read without a filter.
    type Row = (i64, Option<i64>, Option<f64>, Option<String>);
    let all: Vec<Row> = rows(&s.ok(&t, "SELECT id, g, v, s FROM app.f ORDER BY id").await)
        .iter()
        .map(|r| {
            (
                int(&r[0]).expect("an id"),
                int(&r[1]),
                r[2].as_f64(),
                r[3].as_str().map(str::to_owned),
            )
        })
        .collect();
    assert_eq!(all.len(), 400 - (0..400).filter(|i| i % 11 == 5).count());
    let ids = |keep: &dyn Fn(&Row) -> bool| -> Vec<i64> {
        all.iter().filter(|r| keep(r)).map(|r| r.0).collect()
    };
    let answer = |v: Value| -> Vec<i64> {
        rows(&v)
            .iter()
            .map(|r| int(&r[0]).expect("an id"))
            .collect()
    };
    let cases: Vec<(&str, Vec<i64>)> = vec![
        (
            "SELECT id FROM app.f WHERE g = 3 ORDER BY id",
            ids(&|r| r.1 == Some(3)),
        ),
        (
            "SELECT id, s FROM app.f WHERE g > 4 AND v < 50 ORDER BY id",
            ids(&|r| r.1.is_some_and(|g| g > 4) && r.2.is_some_and(|v| v < 50.0)),
        ),
        (
            "SELECT id FROM app.f WHERE s IS NULL OR g = 0 ORDER BY id",
            ids(&|r| r.3.is_none() || r.1 == Some(0)),
        ),
        (
            "SELECT id FROM app.f WHERE v IS NULL AND id > 100 ORDER BY id",
            ids(&|r| r.2.is_none() && r.0 > 100),
        ),
    ];
    for (sql, expected) in cases {
        assert!(!expected.is_empty(), "{sql} keeps some rows");
        assert_eq!(answer(s.ok(&t, sql).await), expected, "{sql}");
    }

    // COUNT(*) under a filter reads no column of the answer.
    let threes = ids(&|r| r.1 == Some(3));
    let count = s.ok(&t, "SELECT COUNT(*) FROM app.f WHERE g = 3").await;
    assert_eq!(int(&rows(&count)[0][0]), Some(threes.len() as i64));

    // A LIMIT under a filter: that many rows, each one the filter keeps, none twice.
    for limit in [1, 5, threes.len() + 3] {
        let got = answer(
            s.ok(
                &t,
                &format!("SELECT id, g FROM app.f WHERE g = 3 LIMIT {limit}"),
            )
            .await,
        );
        assert_eq!(got.len(), limit.min(threes.len()), "LIMIT {limit}");
        let mut unique = got.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), got.len(), "LIMIT {limit}: {got:?}");
        assert!(
            got.iter().all(|id| threes.contains(id)),
            "LIMIT {limit}: {got:?}"
        );
    }

    // A pinned key, and the filter's other conjunct still applies to it.
    let three = threes[0];
    let other = all
        .iter()
        .find(|r| r.1 != Some(3))
        .expect("a row with g <> 3")
        .0;
    for (id, expected) in [(three, vec![three]), (other, vec![])] {
        let sql = format!("SELECT id FROM app.f WHERE id = {id} AND g = 3");
        assert_eq!(answer(s.ok(&t, &sql).await), expected, "{sql}");
    }

    // A filter that fails on a row fails the query, and the next query answers.
    let (status, body) = s
        .sql(&t, "SELECT id FROM app.f WHERE 10 / (g - g) > 1")
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "SQL_EXECUTION_ERROR", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.to_lowercase().contains("divide by zero"), "{body}");
    assert_eq!(
        answer(
            s.ok(&t, "SELECT id FROM app.f WHERE g = 3 ORDER BY id")
                .await
        ),
        threes
    );
}

/// An integer of an answer, which BIGINT gives as a string.
fn int(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| v.as_str()?.parse().ok())
}
