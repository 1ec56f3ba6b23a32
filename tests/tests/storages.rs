//! Storages (issue #6, API.md 3.10), driven as a client would: CREATE / ALTER / DROP
//! STORAGE, SHOW STORAGES, STORAGE CHECK, tables placed in a storage with STORAGE_ID and
//! their cold files laid out by its templates, restarts, `folddb log replay` of such
//! tables, and bad input refused with nothing changed.

use std::path::Path;
use std::time::Duration;

use folddb_tests::s3::S3;
use folddb_tests::{Server, free_port, rows, run_folddb, text};
use serde_json::Value;

/// Runs `sql`, expecting it to fail; returns the error message.
async fn error(s: &Server, token: &str, sql: &str) -> String {
    let (_, body) = s.sql(token, sql).await;
    assert_eq!(body["status"], "error", "{sql} should fail: {body}");
    body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn message(answer: &Value) -> String {
    answer["results"][0]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// `STORAGE CHECK <storage> EXTENDED`: its one row's status and error, and its per-table
/// detail (`tables`, JSON).
async fn check(s: &Server, token: &str, storage: &str) -> (String, String, Vec<Value>) {
    let answer = s
        .ok(token, &format!("STORAGE CHECK {storage} EXTENDED"))
        .await;
    let r = rows(&answer);
    assert_eq!(r.len(), 1, "one row per storage: {answer}");
    assert_eq!(r[0][0], storage, "{answer}");
    let tables: Value =
        serde_json::from_str(r[0][11].as_str().unwrap_or("null")).unwrap_or_default();
    (
        r[0][1].as_str().unwrap_or_default().to_owned(),
        r[0][9].as_str().unwrap_or_default().to_owned(),
        tables.as_array().cloned().unwrap_or_default(),
    )
}

/// Waits (up to 15 s) until `done` holds.
async fn eventually(what: &str, done: impl AsyncFn() -> bool) {
    for _ in 0..300 {
        if done().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("not done after 15 s: {what}");
}

/// Runs STORAGE FLUSH on `table` and waits for its job; returns its status and message.
async fn flush(s: &Server, token: &str, table: &str) -> (String, String) {
    let (id, status, m) = s
        .run_job(token, &format!("STORAGE FLUSH TABLE {table}"))
        .await;
    assert!(id.starts_with("FL-"), "{id}");
    (status, m)
}

/// Creates `app.s` (SHARED, 40 rows) and `app.u` (USER, 2 rows of the caller) in storage
/// `storage` (named as written, any case).
async fn create_tables(s: &Server, token: &str, storage: &str) {
    s.ok(token, "CREATE NAMESPACE app").await;
    for (kind, name) in [("SHARED", "s"), ("USER", "u")] {
        s.ok(
            token,
            &format!(
                "CREATE {kind} TABLE app.{name} (id BIGINT PRIMARY KEY, v TEXT) WITH (STORAGE_ID = '{storage}')"
            ),
        )
        .await;
    }
    let values: Vec<String> = (1..=40).map(|i| format!("({i}, 'v{i}')")).collect();
    s.ok(
        token,
        &format!("INSERT INTO app.s (id, v) VALUES {}", values.join(", ")),
    )
    .await;
    s.ok(
        token,
        "INSERT INTO app.u (id, v) VALUES (1, 'mine'), (2, 'also')",
    )
    .await;
}

/// Creates storage `lake` in `s3`'s bucket, under prefix `folddb`, with `s3`'s credentials
/// (or `secret`) and moto's smallest part size, so segments are uploaded in parts.
async fn create_lake(s: &Server, token: &str, s3: &S3) {
    s.ok(token, &lake_sql("lake", "lake/folddb", s3, &s3.secret_key))
        .await;
}

/// CREATE STORAGE `id` in `bucket` (`bucket[/prefix]`) of `s3`, signing with `secret`.
fn lake_sql(id: &str, bucket: &str, s3: &S3, secret: &str) -> String {
    s3.storage_sql(id, bucket, secret)
}

/// Updates and deletes rows of `app.s` (flushed or not); returns the answers after, checked.
async fn change_s(s: &Server, token: &str) -> Vec<Vec<Value>> {
    s.ok(token, "UPDATE app.s SET v = 'changed' WHERE id = 7")
        .await;
    s.ok(token, "DELETE FROM app.s WHERE id > 30").await;
    let changed = answers(s, token).await;
    assert_eq!(changed[3], vec![serde_json::json!(["7", "changed"])]);
    assert_eq!(changed[0].len(), 30);
    changed
}

/// Every file under `dir`, relative, sorted.
fn files(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else if let Ok(rel) = p.strip_prefix(root) {
                out.push(rel.display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

const QUERIES: &[&str] = &[
    "SELECT id, v FROM app.s ORDER BY id",
    "SELECT COUNT(*), SUM(id) FROM app.s WHERE v LIKE 'v1%'",
    "SELECT id, v FROM app.u ORDER BY id",
    "SELECT id, v FROM app.s WHERE id = 7",
];

async fn answers(s: &Server, token: &str) -> Vec<Vec<Value>> {
    let mut out = Vec::new();
    for q in QUERIES {
        out.push(rows(&s.ok(token, q).await));
    }
    out
}

#[tokio::test]
async fn tables_in_a_filesystem_storage_live_where_its_templates_say() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let ext = dir.path().join("archive");
    let s = Server::start(&data).await;
    let t = s.setup_and_login().await;
    let create = format!(
        "CREATE STORAGE archive TYPE 'filesystem' NAME 'Archive' DESCRIPTION 'cold archive' \
         PATH '{}' SHARED_TABLES_TEMPLATE 'shared/{{namespace}}/{{tableName}}' \
         USER_TABLES_TEMPLATE 'users/{{namespace}}/{{tableName}}/{{userId}}'",
        ext.display()
    );
    assert_eq!(
        message(&s.ok(&t, &create).await),
        "Storage 'archive' created successfully"
    );
    let storages = rows(
        &s.ok(
            &t,
            "SELECT storage_id, storage_type, base_directory, description, shared_tables_template \
             FROM system.storages ORDER BY storage_id",
        )
        .await,
    );
    assert_eq!(storages.len(), 2, "{storages:?}");
    assert_eq!(storages[0][0], "archive");
    assert_eq!(storages[0][1], "filesystem");
    assert_eq!(storages[0][2], ext.display().to_string());
    assert_eq!(storages[0][3], "cold archive");
    assert_eq!(storages[0][4], "shared/{namespace}/{tableName}");
    assert_eq!(storages[1][0], "local");
    assert_eq!(rows(&s.ok(&t, "SHOW STORAGES").await).len(), 2);

    create_tables(&s, &t, "ARCHIVE").await;
    let before = answers(&s, &t).await;
    for table in ["app.s", "app.u"] {
        let (status, m) = flush(&s, &t, table).await;
        assert_eq!(status, "completed", "{m}");
    }
    // Where the templates say, under the storage's PATH; nothing in the node's own storage.
    let placed = files(&ext);
    assert!(
        placed.iter().any(|f| f.starts_with("shared/app/s/batch-")),
        "{placed:?}"
    );
    assert!(placed.contains(&"shared/app/s/manifest.json".to_owned()));
    assert!(
        placed
            .iter()
            .any(|f| f.starts_with("users/app/u/admin/batch-")),
        "{placed:?}"
    );
    assert!(!data.join("storage/app").exists());
    assert_eq!(
        answers(&s, &t).await,
        before,
        "the same answers after flush"
    );
    let paths = rows(
        &s.ok(&t, "SELECT path FROM system.manifest ORDER BY path")
            .await,
    );
    assert_eq!(paths.len(), 2, "{paths:?}");
    for p in &paths {
        assert!(
            p[0].as_str()
                .unwrap_or_default()
                .starts_with(&ext.display().to_string()),
            "{p:?}"
        );
    }

    // Updates and deletes across the tiers, in the other storage.
    let changed = change_s(&s, &t).await;

    // STORAGE CHECK names the storage's tables only.
    let (status, _, tables) = check(&s, &t, "archive").await;
    assert_eq!(status, "healthy");
    let names: Vec<&str> = tables
        .iter()
        .filter_map(|r| r["table_name"].as_str())
        .collect();
    assert_eq!(names, ["app.s", "app.u"], "{tables:?}");
    assert!(tables.iter().all(|r| r["status"] == "ok"), "{tables:?}");
    let (status, _, local) = check(&s, &t, "local").await;
    assert_eq!(status, "healthy");
    assert!(local.is_empty(), "{local:?}");
    // Without EXTENDED: the reference's row (no per-table detail).
    let plain = s.ok(&t, "STORAGE CHECK archive").await;
    let plain_row = rows(&plain);
    assert_eq!(plain_row.len(), 1);
    assert_eq!(
        (
            &plain_row[0][0],
            &plain_row[0][1],
            &plain_row[0][2],
            &plain_row[0][3]
        ),
        (
            &Value::from("archive"),
            &Value::from("healthy"),
            &Value::from(true),
            &Value::from(true)
        )
    );
    assert_eq!(plain["results"][0]["schema"][10]["name"], "tested_at");
    assert!(plain["results"][0]["schema"][11].is_null(), "{plain}");

    // In use: not dropped, templates frozen; other settings change.
    let e = error(&s, &t, "DROP STORAGE archive").await;
    assert!(e.contains("app.s") && e.contains("app.u"), "{e}");
    let e = error(
        &s,
        &t,
        "ALTER STORAGE archive SET SHARED_TABLES_TEMPLATE 'x/{namespace}/{tableName}'",
    )
    .await;
    assert!(
        e.contains("templates can change only while no table uses it"),
        "{e}"
    );
    s.ok(
        &t,
        "ALTER STORAGE archive SET DESCRIPTION 'renamed', SET NAME 'Archive 2'",
    )
    .await;
    let r = rows(
        &s.ok(
            &t,
            "SELECT storage_name, description FROM system.storages WHERE storage_id = 'archive'",
        )
        .await,
    );
    assert_eq!(r, vec![serde_json::json!(["Archive 2", "renamed"])]);

    // A restart reads the storage's definition and files back.
    s.stop();
    let s = Server::start(&data).await;
    let t = s.login("admin", "kalamdb123").await;
    assert_eq!(
        answers(&s, &t).await,
        changed,
        "the same answers after a restart"
    );
    s.stop();

    // A replay rebuilds the archive's tables under the new directory, never in the
    // original's storage.
    let original = files(&ext);
    let into = dir.path().join("rebuilt");
    let out = run_folddb([
        "log".as_ref(),
        "replay".as_ref(),
        data.join("log").as_os_str(),
        "--into".as_ref(),
        into.as_os_str(),
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert_eq!(
        files(&ext),
        original,
        "the replay left the original storage alone"
    );
    let rebuilt = files(&into.join("storage/.relocated/archive"));
    assert!(
        rebuilt.iter().any(|f| f.starts_with("shared/app/s/batch-")),
        "{rebuilt:?}"
    );
    let s = Server::start(&into).await;
    let t = s.login("admin", "kalamdb123").await;
    assert_eq!(
        answers(&s, &t).await,
        changed,
        "the rebuild answers the same"
    );
    s.stop();

    // Damage on disk: the query and STORAGE CHECK name the file; nothing panics.
    let s = Server::start(&data).await;
    let t = s.login("admin", "kalamdb123").await;
    let victim = original
        .iter()
        .find(|f| f.starts_with("shared/app/s/batch-"))
        .expect("a segment");
    std::fs::write(ext.join(victim), b"not parquet").expect("damage");
    let (status, error, tables) = check(&s, &t, "archive").await;
    assert_eq!(status, "degraded");
    let s_row = tables
        .iter()
        .find(|r| r["table_name"] == "app.s")
        .expect("app.s");
    assert_eq!(s_row["status"], "damaged");
    let file_name = Path::new(victim)
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    assert!(
        s_row["problems"].to_string().contains(&file_name),
        "{s_row:?}"
    );
    assert!(error.contains(&file_name), "{error}");

    // Dropping the tables removes their files; then the storage can go.
    s.ok(&t, "DROP TABLE app.s").await;
    s.ok(&t, "DROP TABLE app.u").await;
    // The files go once the drop is applied, outside apply.
    eventually("the dropped tables' files are removed", async || {
        !ext.join("shared/app/s").exists() && !ext.join("users/app/u").exists()
    })
    .await;
    assert_eq!(
        message(&s.ok(&t, "DROP STORAGE archive").await),
        "Storage 'archive' dropped successfully"
    );
    let ids = rows(&s.ok(&t, "SELECT storage_id FROM system.storages").await);
    assert_eq!(ids, vec![serde_json::json!(["local"])]);
}

#[tokio::test]
async fn bad_storage_input_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ext = dir.path().join("ext");
    let s = Server::start(&dir.path().join("data")).await;
    let t = s.setup_and_login().await;
    s.ok(&t, "CREATE NAMESPACE app").await;
    let path = ext.display().to_string();
    let cases = [
        (
            format!("CREATE STORAGE g TYPE 'gcs' PATH '{path}'"),
            "not supported",
        ),
        (
            format!("CREATE STORAGE g TYPE 'tape' PATH '{path}'"),
            "Unknown storage type",
        ),
        (
            "CREATE STORAGE g TYPE 'filesystem' PATH 'relative/dir'".to_owned(),
            "absolute",
        ),
        (
            "CREATE STORAGE g TYPE 'filesystem'".to_owned(),
            "needs PATH",
        ),
        (format!("CREATE STORAGE g PATH '{path}'"), "needs a TYPE"),
        (
            format!(
                "CREATE STORAGE g TYPE 'filesystem' PATH '{path}' SHARED_TABLES_TEMPLATE '{{namespace}}/{{bogus}}'"
            ),
            "unknown placeholder '{bogus}'",
        ),
        (
            format!(
                "CREATE STORAGE g TYPE 'filesystem' PATH '{path}' USER_TABLES_TEMPLATE '{{userId}}/{{namespace}}/{{tableName}}'"
            ),
            "must end with the user's directory",
        ),
        (
            format!(
                "CREATE STORAGE g TYPE 'filesystem' PATH '{path}' SHARED_TABLES_TEMPLATE '../{{namespace}}/{{tableName}}'"
            ),
            "relative path",
        ),
        (
            "CREATE STORAGE g TYPE 's3' BUCKET 'b' CONFIG '{\"no_such_setting\": 1}'".to_owned(),
            "unknown S3 setting 'no_such_setting'",
        ),
        (
            "CREATE STORAGE g TYPE 's3' BUCKET 'b' CREDENTIALS 'not json'".to_owned(),
            "CREDENTIALS is not JSON",
        ),
        (
            "CREATE STORAGE g TYPE 's3' PATH 'b/prefix'".to_owned(),
            "s3://bucket",
        ),
        (
            format!("CREATE STORAGE G-1 TYPE 'filesystem' PATH '{path}'"),
            "",
        ),
        (
            format!("CREATE STORAGE g TYPE 'filesystem' PATH '{path}' PATH '{path}'"),
            "twice",
        ),
        (
            format!("CREATE STORAGE g TYPE 'filesystem' PATH '{path}' COLOR 'red'"),
            "does not know 'COLOR'",
        ),
        (
            "CREATE TABLE app.t (id BIGINT PRIMARY KEY) WITH (STORAGE_ID = 'nope')".to_owned(),
            "Storage 'nope' not found",
        ),
        ("DROP STORAGE local".to_owned(), "cannot be dropped"),
        (
            "ALTER STORAGE local SET DESCRIPTION 'x'".to_owned(),
            "cannot be altered",
        ),
        ("DROP STORAGE nope".to_owned(), "Storage 'nope' not found"),
        ("STORAGE CHECK nope".to_owned(), "Storage 'nope' not found"),
        (
            "ALTER STORAGE nope SET NAME 'x'".to_owned(),
            "Storage 'nope' not found",
        ),
        ("ALTER STORAGE local".to_owned(), "SET"),
    ];
    for (sql, want) in &cases {
        let e = error(&s, &t, sql).await;
        assert!(e.contains(want), "{sql}: {e}");
    }
    let ids = rows(&s.ok(&t, "SELECT storage_id FROM system.storages").await);
    assert_eq!(
        ids,
        vec![serde_json::json!(["local"])],
        "nothing was created"
    );
    assert!(!ext.exists());
    let tables = rows(&s.ok(&t, "SHOW TABLES IN app").await);
    assert!(tables.is_empty(), "{tables:?}");
    assert_eq!(
        message(&s.ok(&t, "DROP STORAGE IF EXISTS nope").await),
        "Storage 'nope' does not exist (skipped)"
    );

    // Created once; again is an error, or a no-op with IF NOT EXISTS.
    let create = format!("CREATE STORAGE ext TYPE 'filesystem' PATH '{path}'");
    s.ok(&t, &create).await;
    assert!(error(&s, &t, &create).await.contains("already exists"));
    assert_eq!(
        message(
            &s.ok(
                &t,
                &format!("CREATE STORAGE IF NOT EXISTS ext TYPE 'filesystem' PATH '{path}'")
            )
            .await
        ),
        "Storage 'ext' already exists"
    );
    let e = error(
        &s,
        &t,
        "ALTER STORAGE ext SET USER_TABLES_TEMPLATE '{namespace}/{tableName}'",
    )
    .await;
    assert!(e.contains("{userId}"), "{e}");

    // Only administrators manage storages.
    s.ok(&t, "CREATE USER bob WITH PASSWORD 'secret123' ROLE user")
        .await;
    let bob = s.login("bob", "secret123").await;
    for sql in [
        format!("CREATE STORAGE b TYPE 'filesystem' PATH '{path}'"),
        "DROP STORAGE ext".to_owned(),
        "ALTER STORAGE ext SET NAME 'b'".to_owned(),
    ] {
        let (status, _) = s.fails(&bob, &sql).await;
        assert_eq!(status, 403, "{sql}");
    }
}

/// An S3 storage whose endpoint does not answer: created (its settings are valid), reported
/// unreachable by STORAGE CHECK; writes (whose keys must be checked against the cold tier)
/// and queries fail loudly, naming the object, rather than answer without the cold tier.
#[tokio::test]
async fn an_unreachable_object_storage_fails_loudly_and_loses_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Server::start(&dir.path().join("data")).await;
    let t = s.setup_and_login().await;
    let port = free_port();
    s.ok(
        &t,
        &format!(
            "CREATE STORAGE lake TYPE 's3' BUCKET 'lake/folddb' REGION 'us-east-1' \
             CREDENTIALS '{{\"access_key_id\": \"key\", \"secret_access_key\": \"secret\"}}' \
             CONFIG '{{\"endpoint\": \"http://127.0.0.1:{port}\", \"allow_http\": true, \"max_retries\": 0}}'"
        ),
    )
    .await;
    let r = rows(
        &s.ok(
            &t,
            "SELECT storage_type, base_directory, credentials FROM system.storages WHERE storage_id = 'lake'",
        )
        .await,
    );
    assert_eq!(r[0][0], "s3");
    assert_eq!(r[0][1], "s3://lake/folddb");
    let (status, error, _) = check(&s, &t, "lake").await;
    assert_eq!(status, "unreachable");
    assert!(error.contains("s3://lake/folddb"), "{error}");

    s.ok(&t, "CREATE NAMESPACE app").await;
    s.ok(
        &t,
        "CREATE TABLE app.t (id BIGINT PRIMARY KEY, v TEXT) WITH (STORAGE_ID = 'lake')",
    )
    .await;
    // Writes never wait for the storage: nothing of the table was flushed, so the node's
    // own state says there is nothing cold to check, and apply reads no object storage.
    s.ok(&t, "INSERT INTO app.t (id, v) VALUES (1, 'a'), (2, 'b')")
        .await;
    let answers = rows(&s.ok(&t, "SELECT id, v FROM app.t ORDER BY id").await);
    assert_eq!(answers.len(), 2, "{answers:?}");
    // A flush must write there: its job fails, naming where, and the rows stay hot.
    let (status, message) = flush(&s, &t, "app.t").await;
    assert_eq!(status, "failed", "{message}");
    assert!(message.contains("s3://lake/folddb/app/t"), "{message}");
    assert_eq!(
        rows(&s.ok(&t, "SELECT id, v FROM app.t ORDER BY id").await),
        answers
    );
    let stats = rows(&s.ok(&t, "SHOW STATS FOR TABLE app.t").await);
    assert_eq!(
        stats[0][1].to_string().trim_matches('"'),
        "2",
        "the rows are still hot: {stats:?}"
    );
    // A job's failure is not the node's: it stays healthy and keeps taking writes.
    let health = s.health_status().await;
    assert_eq!(health, 200, "{health}");
    s.ok(&t, "INSERT INTO app.t (id, v) VALUES (3, 'c')").await;
}

/// An S3 storage end to end, against an S3-compatible endpoint on a loopback port: flushed
/// segments and manifests are objects under the bucket's prefix laid out by the templates;
/// queries, updates across tiers, compaction, STORAGE CHECK and DROP TABLE work on them.
#[tokio::test]
async fn tables_in_an_s3_storage_are_objects_in_its_bucket() {
    let s3 = S3::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Server::start(&dir.path().join("data")).await;
    let t = s.setup_and_login().await;
    create_lake(&s, &t, &s3).await;
    let (status, error, tables) = check(&s, &t, "lake").await;
    assert_eq!(status, "healthy", "{error}");
    assert!(tables.is_empty(), "reachable, no tables yet: {tables:?}");
    create_tables(&s, &t, "lake").await;
    let before = answers(&s, &t).await;
    for table in ["app.s", "app.u"] {
        let (status, m) = flush(&s, &t, table).await;
        assert_eq!(status, "completed", "{m}");
    }
    let keys = s3.keys("lake/folddb/").await;
    assert!(
        keys.contains(&"lake/folddb/app/s/manifest.json".to_owned()),
        "{keys:?}"
    );
    assert!(
        keys.iter()
            .any(|k| k.starts_with("lake/folddb/app/u/admin/batch-")),
        "{keys:?}"
    );
    // A segment larger than the storage's part size went up as a multipart upload, in
    // parts moto checked (each but the last at least its minimum).
    let segments = s3.objects("lake/folddb/app/s/batch-").await;
    assert!(
        segments.iter().any(|(_, n)| *n > S3::MIN_PART_BYTES as u64),
        "{segments:?}"
    );
    assert!(!dir.path().join("data/storage/app").exists());
    assert_eq!(
        answers(&s, &t).await,
        before,
        "the same answers from the bucket"
    );
    let paths = rows(
        &s.ok(&t, "SELECT path FROM system.manifest ORDER BY path")
            .await,
    );
    assert!(
        paths[0][0]
            .as_str()
            .unwrap_or_default()
            .starts_with("s3://lake/folddb/app/"),
        "{paths:?}"
    );

    change_s(&s, &t).await;
    let (status, m) = flush(&s, &t, "app.s").await;
    assert_eq!(status, "completed", "{m}");
    let changed = answers(&s, &t).await;
    let m = message(&s.ok(&t, "STORAGE COMPACT TABLE app.s").await);
    assert!(m.contains("CO-"), "{m}");
    for _ in 0..100 {
        if s3.keys("lake/folddb/app/s/batch-").await.len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        s3.keys("lake/folddb/app/s/batch-").await.len(),
        1,
        "{:?}",
        s3.keys("").await
    );
    assert_eq!(
        answers(&s, &t).await,
        changed,
        "the same answers after compaction"
    );
    let (status, error, tables) = check(&s, &t, "lake").await;
    assert_eq!(status, "healthy", "{error}");
    assert!(tables.iter().all(|r| r["status"] == "ok"), "{tables:?}");

    s.ok(&t, "DROP TABLE app.s").await;
    eventually("the dropped table's objects are removed", async || {
        s3.keys("lake/folddb/app/s/").await.is_empty()
    })
    .await;
}

/// Apply checks primary keys against the node's own key index, never the bucket (DESIGN.md
/// "Stores, jobs and apply"): with the S3 service out of reach, an INSERT of a flushed key is
/// a plain duplicate-key error, a new key is written, the node stays healthy, and no request
/// reaches the service.
#[tokio::test]
async fn flushed_keys_are_checked_without_reaching_the_object_storage() {
    let s3 = S3::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Server::start(&dir.path().join("data")).await;
    let t = s.setup_and_login().await;
    create_lake(&s, &t, &s3).await;
    create_tables(&s, &t, "lake").await;
    s.ok(&t, "DELETE FROM app.s WHERE id = 40").await;
    let (status, m) = flush(&s, &t, "app.s").await;
    assert_eq!(status, "completed", "{m}");
    assert!(m.starts_with("Flushed "), "{m}");

    s3.set_down(true);
    let before = s3.connections();
    let e = error(&s, &t, "INSERT INTO app.s (id, v) VALUES (7, 'again')").await;
    assert!(
        e.contains("Primary key violation: value '7' already exists"),
        "{e}"
    );
    // The deleted row's key is free again; a new key is free.
    s.ok(
        &t,
        "INSERT INTO app.s (id, v) VALUES (40, 'back'), (41, 'new')",
    )
    .await;
    assert_eq!(s3.connections(), before, "apply asked the bucket");
    assert_eq!(s.health_status().await, 200);

    s3.set_down(false);
    let r = rows(
        &s.ok(&t, "SELECT id, v FROM app.s WHERE id >= 39 ORDER BY id")
            .await,
    );
    assert_eq!(
        r,
        vec![
            serde_json::json!(["39", "v39"]),
            serde_json::json!(["40", "back"]),
            serde_json::json!(["41", "new"]),
        ]
    );
    let r = rows(&s.ok(&t, "SELECT v FROM app.s WHERE id = 7").await);
    assert_eq!(r, vec![serde_json::json!(["v7"])]);
}

/// What an S3 service answers reaches the user as it said it: a wrong secret fails moto's
/// signature check and a missing bucket is named, in STORAGE CHECK and in a flush job's
/// failure, and neither harms the node or its rows; listings come in pages (2 keys here),
/// and a table with more objects than a page is read and removed whole.
#[tokio::test]
async fn an_s3_services_refusals_are_reported_and_its_listings_paged() {
    let s3 = S3::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Server::start(&dir.path().join("data")).await;
    let t = s.setup_and_login().await;
    s.ok(
        &t,
        &lake_sql("forged", "lake/forged", &s3, "not-the-secret"),
    )
    .await;
    s.ok(
        &t,
        &lake_sql("nowhere", "no-such-bucket/x", &s3, &s3.secret_key),
    )
    .await;
    s.ok(&t, "CREATE NAMESPACE app").await;
    for (storage, said) in [
        ("forged", "SignatureDoesNotMatch"),
        ("nowhere", "NoSuchBucket"),
    ] {
        let (status, error, _) = check(&s, &t, storage).await;
        assert_ne!(status, "healthy", "{storage}: {error}");
        assert!(error.contains(said), "{storage}: {error}");
        s.ok(
            &t,
            &format!(
                "CREATE SHARED TABLE app.{storage} (id BIGINT PRIMARY KEY, v TEXT) \
                 WITH (STORAGE_ID = '{storage}')"
            ),
        )
        .await;
        s.ok(
            &t,
            &format!("INSERT INTO app.{storage} (id, v) VALUES (1, 'kept')"),
        )
        .await;
        let (status, m) = flush(&s, &t, &format!("app.{storage}")).await;
        assert_eq!(status, "failed", "{m}");
        assert!(m.contains(said), "{storage}: {m}");
        assert_eq!(s.health_status().await, 200);
        let r = rows(&s.ok(&t, &format!("SELECT id, v FROM app.{storage}")).await);
        assert_eq!(r, vec![serde_json::json!(["1", "kept"])], "{storage}");
    }
    assert!(s3.keys("lake/forged/").await.is_empty());

    create_lake(&s, &t, &s3).await;
    s.ok(
        &t,
        "CREATE SHARED TABLE app.p (id BIGINT PRIMARY KEY, v TEXT) WITH (STORAGE_ID = 'lake')",
    )
    .await;
    for i in 1..=3 {
        s.ok(
            &t,
            &format!("INSERT INTO app.p (id, v) VALUES ({i}, 'p{i}')"),
        )
        .await;
        let (status, m) = flush(&s, &t, "app.p").await;
        assert_eq!(status, "completed", "{m}");
    }
    let keys = s3.keys("lake/folddb/app/p/").await;
    assert_eq!(keys.len(), 4, "3 segments and a manifest: {keys:?}");
    let r = rows(&s.ok(&t, "SELECT id, v FROM app.p ORDER BY id").await);
    assert_eq!(r.len(), 3, "{r:?}");
    let (status, error, tables) = check(&s, &t, "lake").await;
    assert_eq!(status, "healthy", "{error}");
    assert!(tables.iter().all(|r| r["status"] == "ok"), "{tables:?}");
    s.ok(&t, "DROP TABLE app.p").await;
    eventually("the dropped table's objects are removed", async || {
        s3.keys("lake/folddb/app/p/").await.is_empty()
    })
    .await;
}

/// The storage answers KalamDB's clients expect (#17 item 4): SHOW STORAGES for every role
/// (credentials masked) with timestamps, the reference's templates accepted (kept safe),
/// and a compaction job's message.
#[tokio::test]
async fn storage_answers_match_the_reference() {
    let s3 = S3::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let ext = dir.path().join("tenants");
    let s = Server::start(&dir.path().join("data")).await;
    let t = s.setup_and_login().await;
    create_lake(&s, &t, &s3).await;
    let path = ext.display().to_string();
    s.ok(
        &t,
        &format!(
            "CREATE STORAGE tenants TYPE 'filesystem' PATH '{path}' \
             USER_TABLES_TEMPLATE 'ns_{{namespace}}/tbl_{{table_name}}/usr_{{userId}}'"
        ),
    )
    .await;
    // The reference accepts a template without the table; FoldDB keeps tables apart.
    s.ok(
        &t,
        &format!(
            "CREATE STORAGE flat TYPE 'filesystem' PATH '{path}/flat' USER_TABLES_TEMPLATE 'users/{{user_id}}'"
        ),
    )
    .await;
    for bad in [
        "../{namespace}/{tableName}/{userId}",
        "/abs/{namespace}/{tableName}/{userId}",
        "{namespace}/{tableName}/all",
    ] {
        let e = error(
            &s,
            &t,
            &format!("ALTER STORAGE flat SET USER_TABLES_TEMPLATE '{bad}'"),
        )
        .await;
        assert!(e.contains("USER_TABLES_TEMPLATE"), "{bad}: {e}");
    }

    // Every role lists storages; only admins see credentials; every row has its times.
    let alice = s.user(&t, "alice", "Secret123!", "user").await;
    for (token, secret_shown) in [(&t, true), (&alice, false)] {
        let answer = s.ok(token, "SHOW STORAGES").await;
        let listed = rows(&answer);
        assert_eq!(listed.len(), 4, "{answer}");
        for r in &listed {
            assert!(!r[9].is_null() && !r[10].is_null(), "timestamps: {r}");
        }
        let lake = listed.iter().find(|r| r[0] == "lake").expect("lake");
        assert!(lake[5].is_string(), "{lake}");
        assert_eq!(lake[5] != "***", secret_shown, "{lake}");
        let tenants = listed.iter().find(|r| r[0] == "tenants").expect("tenants");
        assert_eq!(tenants[8], "ns_{namespace}/tbl_{tableName}/usr_{userId}");
        let flat = listed.iter().find(|r| r[0] == "flat").expect("flat");
        assert_eq!(flat[8], "users/{namespace}/{tableName}/{userId}");
    }

    // Rows land where the template says, per owner, and read back.
    s.ok(&t, "CREATE NAMESPACE app").await;
    for (table, storage) in [("u", "tenants"), ("f", "flat"), ("g", "flat")] {
        s.ok(
            &t,
            &format!("CREATE USER TABLE app.{table} (id BIGINT PRIMARY KEY, v TEXT) WITH (STORAGE_ID = '{storage}')"),
        )
        .await;
        s.ok(
            &alice,
            &format!("INSERT INTO app.{table} (id, v) VALUES (1, '{table}')"),
        )
        .await;
        let (status, m) = flush(&s, &t, &format!("app.{table}")).await;
        assert_eq!(status, "completed", "{m}");
    }
    let on_disk = files(&ext);
    for dir in [
        "ns_app/tbl_u/usr_alice/",
        "flat/users/app/f/alice/",
        "flat/users/app/g/alice/",
    ] {
        assert!(
            on_disk
                .iter()
                .any(|f| f.starts_with(dir) && f.ends_with(".parquet")),
            "{dir}: {on_disk:?}"
        );
    }
    for table in ["u", "f", "g"] {
        let r = rows(&s.ok(&alice, &format!("SELECT v FROM app.{table}")).await);
        assert_eq!(r, vec![serde_json::json!([table])]);
    }
    // Dropping one table leaves the other's files.
    s.ok(&t, "DROP TABLE app.f").await;
    eventually("the dropped table's files are removed", async || {
        !files(&ext)
            .iter()
            .any(|f| f.starts_with("flat/users/app/f/"))
    })
    .await;
    assert!(
        files(&ext)
            .iter()
            .any(|f| f.starts_with("flat/users/app/g/alice/"))
    );
    assert_eq!(
        rows(&s.ok(&alice, "SELECT v FROM app.g").await),
        vec![serde_json::json!(["g"])]
    );

    // A finished compaction says so as the reference does.
    s.ok(&alice, "INSERT INTO app.u (id, v) VALUES (2, 'more')")
        .await;
    flush(&s, &t, "app.u").await;
    let (id, status, m) = s.run_job(&t, "STORAGE COMPACT TABLE app.u").await;
    assert!(id.starts_with("CO-"), "{id}");
    assert_eq!(status, "completed", "{m}");
    assert!(m.starts_with("Compaction completed for app.u"), "{m}");
}
