//! The SQL of API.md 3.2–3.6 over `POST /v1/api/sql` against the real binary: namespaces,
//! tables with options, every data type and its JSON cell, INSERT / UPDATE / DELETE with soft
//! delete, queries, parameters, batches and transactions, and the error envelopes of bad
//! input (each of which must change nothing).

use folddb_tests::{Server, rows};
use serde_json::json;

#[tokio::test]
async fn ddl_dml_types_and_queries_round_trip() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Server::start(dir.path()).await;
    let t = s.setup_and_login().await;

    // Namespaces.
    let r = s.ok(&t, "CREATE NAMESPACE app").await;
    assert_eq!(
        r["results"][0]["message"],
        "Namespace 'app' created successfully"
    );
    let (code, r) = s.sql(&t, "CREATE NAMESPACE app").await;
    assert_eq!(
        (code, r["error"]["code"].as_str()),
        (400, Some("SQL_EXECUTION_ERROR"))
    );
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("already exists")
    );
    s.ok(&t, "CREATE NAMESPACE IF NOT EXISTS app").await;
    s.ok(&t, "ALTER NAMESPACE app SET DESCRIPTION 'the app'")
        .await;
    let r = s.ok(&t, "SHOW NAMESPACES").await;
    assert!(
        rows(&r)
            .iter()
            .any(|row| row[0] == "app" && row[2] == "the app"),
        "{r}"
    );

    // A table with every type.
    let r = s
        .ok(
            &t,
            "CREATE TABLE app.items (
                id BIGINT PRIMARY KEY,
                name TEXT NOT NULL,
                small SMALLINT, i INT, f FLOAT, d DOUBLE, dec DECIMAL(10,2),
                b BOOLEAN DEFAULT true, bytes BYTES, j JSON, ts TIMESTAMP, dt DATETIME,
                day DATE, tm TIME, u UUID, emb EMBEDDING(3), file FILE,
                made TIMESTAMP DEFAULT NOW(), sid BIGINT DEFAULT SNOWFLAKE_ID(), who TEXT DEFAULT CURRENT_USER()
             ) WITH (TYPE = 'SHARED', FLUSH_POLICY = 'rows:1000', ACCESS_LEVEL = 'PUBLIC')",
        )
        .await;
    assert_eq!(
        r["results"][0]["message"],
        "CREATE TABLE via Raft consensus: Shared table app.items created successfully"
    );
    s.ok(
        &t,
        "INSERT INTO app.items (id, name, small, i, f, d, dec, bytes, j, ts, dt, day, tm, u, emb, file)
         VALUES (1, 'one', 7, -3, 1.5, 2.25, 12.3, 'ab', '{\"k\": [1, 2]}', '2024-01-01T00:00:00Z',
                 '2024-01-01 00:00:01', '2024-01-02', '01:02:03', '0190b3a0-0000-7000-8000-000000000001',
                 '[0.5, 1, -2]', '{\"id\":\"1\",\"sub\":\"f0001\",\"name\":\"a.txt\",\"size\":1,\"mime\":\"text/plain\",\"sha256\":\"00\"}')",
    )
    .await;
    let r = s.ok(&t, "SELECT * FROM app.items").await;
    let schema = r["results"][0]["schema"]
        .as_array()
        .expect("schema")
        .clone();
    let types: Vec<serde_json::Value> = schema.iter().map(|c| c["data_type"].clone()).collect();
    assert_eq!(types[0], "BigInt");
    assert_eq!(schema[0]["flags"], json!(["pk", "nn", "uq"]));
    assert_eq!(schema[1]["flags"], json!(["nn"]));
    assert_eq!(types[6], json!({"Decimal": {"precision": 10, "scale": 2}}));
    assert_eq!(types[15], json!({"Embedding": 3}));
    assert_eq!(schema[schema.len() - 2]["name"], "_seq");
    assert_eq!(schema[schema.len() - 1]["name"], "_deleted");
    let row = rows(&r)[0].as_array().expect("row").clone();
    assert_eq!(row[0], "1"); // BIGINT as a string
    assert_eq!(row[1], "one");
    assert_eq!(row[2], 7);
    assert_eq!(row[3], -3);
    assert_eq!(row[4], 1.5);
    assert_eq!(row[5], 2.25);
    assert_eq!(row[6], "12.30");
    assert_eq!(row[7], true); // DEFAULT true
    assert_eq!(row[8], json!([97, 98]));
    assert_eq!(row[9], "{\"k\": [1, 2]}");
    assert_eq!(row[10], 1_704_067_200_000_000i64);
    assert_eq!(row[11], 1_704_067_201_000_000i64);
    assert_eq!(row[12], 19724);
    assert_eq!(row[13], 3_723_000_000i64);
    assert_eq!(row[14], "0190b3a0-0000-7000-8000-000000000001");
    assert_eq!(row[15], json!([0.5, 1.0, -2.0]));
    assert!(
        row[17]
            .as_i64()
            .is_some_and(|us| us > 1_704_067_200_000_000)
    ); // NOW()
    assert!(row[18].as_str().is_some_and(|s| s.parse::<i64>().is_ok())); // SNOWFLAKE_ID()
    assert_eq!(row[19], "admin"); // CURRENT_USER()
    let seq: i64 = row[20]
        .as_str()
        .expect("_seq string")
        .parse()
        .expect("number");
    assert!((seq >> 22) + 1_704_067_200_000 > 1_704_067_200_000);
    assert_eq!(row[21], false);

    // A user table, DML, soft delete, RETURNING, parameters.
    s.ok(
        &t,
        "CREATE USER TABLE app.todos (id BIGINT PRIMARY KEY DEFAULT SNOWFLAKE_ID(), title TEXT NOT NULL, done BOOLEAN DEFAULT false)",
    )
    .await;
    let r = s
        .ok(
            &t,
            "INSERT INTO app.todos (id, title) VALUES (1, 'a'), (2, 'b'), (3, 'c')",
        )
        .await;
    assert_eq!(r["results"][0]["message"], "Inserted 3 row(s)");
    assert_eq!(r["results"][0]["row_count"], 3);
    let r = s
        .ok(
            &t,
            "INSERT INTO app.todos (title) VALUES ('gen') RETURNING id, _seq",
        )
        .await;
    assert_eq!(r["results"][0]["row_count"], 1);
    assert!(
        rows(&r)[0][1]
            .as_str()
            .is_some_and(|s| s.parse::<i64>().is_ok())
    );
    let r = s
        .ok(
            &t,
            "UPDATE app.todos SET done = true, title = title || '!' WHERE id <= 2",
        )
        .await;
    assert_eq!(r["results"][0]["message"], "Updated 2 row(s)");
    let r = s.ok(&t, "DELETE FROM app.todos WHERE id = 3").await;
    assert_eq!(r["results"][0]["message"], "Deleted 1 row(s)");
    let r = s
        .ok(
            &t,
            "SELECT id, title, done FROM app.todos WHERE id < 100 ORDER BY id",
        )
        .await;
    assert_eq!(
        rows(&r),
        vec![json!(["1", "a!", true]), json!(["2", "b!", true])]
    );
    assert_eq!(r["error"], serde_json::Value::Null);
    let r = s
        .ok(&t, "SELECT id FROM app.todos WHERE _deleted = true")
        .await;
    assert_eq!(rows(&r), vec![json!(["3"])]);
    // Point reads by primary key take a fast path; it answers exactly what the planner does.
    for (fast, planned) in [
        (
            "SELECT * FROM app.todos WHERE id = 1",
            "SELECT * FROM app.todos WHERE id = 1 AND TRUE",
        ),
        (
            "SELECT title, _seq FROM app.todos WHERE id = 2",
            "SELECT title, _seq FROM app.todos WHERE id = 2 AND TRUE",
        ),
        (
            "SELECT * FROM app.todos WHERE id = 3",
            "SELECT * FROM app.todos WHERE id = 3 AND TRUE",
        ),
        (
            "SELECT * FROM app.items WHERE id = '1'",
            "SELECT * FROM app.items WHERE id = 1 AND TRUE",
        ),
    ] {
        let (a, b) = (s.ok(&t, fast).await, s.ok(&t, planned).await);
        assert_eq!(
            a["results"][0]["schema"], b["results"][0]["schema"],
            "{fast}"
        );
        assert_eq!(rows(&a), rows(&b), "{fast}");
    }
    let r = s.ok(&t, "SELECT * FROM app.todos WHERE id = 3").await;
    assert_eq!(
        rows(&r).len(),
        0,
        "a soft-deleted row is hidden from point reads"
    );
    let (code, r) = s
        .post(
            "/v1/api/sql",
            Some(&t),
            &json!({"sql": "SELECT title FROM todos WHERE id = $1 AND done = $2", "params": [1, true], "namespace_id": "app"}),
        )
        .await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(rows(&r), vec![json!(["a!"])]);
    // Aggregates, joins, subqueries, JSON functions.
    let r = s.ok(&t, "SELECT COUNT(*), SUM(i) FROM app.items").await;
    assert_eq!(rows(&r), vec![json!(["1", "-3"])]);
    let r = s
        .ok(&t, "SELECT t.id, i.name FROM app.todos t JOIN app.items i ON i.id = t.id WHERE t.id IN (SELECT id FROM app.todos)")
        .await;
    assert_eq!(rows(&r), vec![json!(["1", "one"])]);
    let r = s
        .ok(&t, "SELECT json_get_int(j, 'k', 1) FROM app.items")
        .await;
    assert_eq!(rows(&r), vec![json!(["2"])]);

    // Batches: DML counts are summed and moved to the end.
    let r = s
        .ok(&t, "USE app; INSERT INTO todos (id, title) VALUES (10, 'x'); INSERT INTO todos (id, title) VALUES (11, 'y'); SELECT COUNT(*) FROM todos")
        .await;
    let results = r["results"].as_array().expect("results");
    assert_eq!(results.len(), 3, "{r}");
    assert_eq!(results[1]["rows"], json!([["5"]])); // 1, 2, the generated one, 10, 11
    assert_eq!(results[2]["message"], "Inserted 2 row(s)");

    // Transactions: commit is atomic, rollback discards, an open one is an error.
    s.ok(&t, "BEGIN; INSERT INTO app.todos (id, title) VALUES (20, 't'); INSERT INTO app.todos (id, title) VALUES (21, 't'); COMMIT").await;
    s.ok(
        &t,
        "BEGIN; INSERT INTO app.todos (id, title) VALUES (22, 't'); ROLLBACK",
    )
    .await;
    let (code, r) = s
        .sql(
            &t,
            "BEGIN; INSERT INTO app.todos (id, title) VALUES (23, 't')",
        )
        .await;
    assert_eq!(code, 400);
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("open explicit transaction")
    );
    // A failing statement inside a transaction commits nothing of it.
    let (code, _) = s
        .sql(&t, "BEGIN; INSERT INTO app.todos (id, title) VALUES (24, 't'); INSERT INTO app.todos (id, title) VALUES (1, 'dup'); COMMIT")
        .await;
    assert_eq!(code, 400);
    let r = s
        .ok(
            &t,
            "SELECT id FROM app.todos WHERE id >= 20 AND id < 100 ORDER BY id",
        )
        .await;
    assert_eq!(rows(&r), vec![json!(["20"]), json!(["21"])]);

    // Read-your-writes inside a transaction: later statements see earlier ones, a row the
    // transaction inserted can be updated and deleted before COMMIT, and nothing is visible
    // to other requests until then.
    let r = s
        .ok(
            &t,
            "BEGIN; \
             INSERT INTO app.todos (id, title) VALUES (30, 'draft'), (31, 'gone'); \
             SELECT id, title FROM app.todos WHERE id >= 30 AND id < 40 ORDER BY id; \
             UPDATE app.todos SET title = title || '+' WHERE id = 30; \
             UPDATE app.todos SET title = title || '+' WHERE id = 30; \
             DELETE FROM app.todos WHERE id = 31; \
             SELECT id, title FROM app.todos WHERE id = 30; \
             COMMIT",
        )
        .await;
    let results = r["results"].as_array().cloned().unwrap_or_default();
    assert_eq!(
        results[1]["rows"],
        json!([["30", "draft"], ["31", "gone"]]),
        "{r}"
    );
    assert_eq!(results[2]["rows"], json!([["30", "draft++"]]), "{r}");
    let r = s
        .ok(
            &t,
            "SELECT id, title FROM app.todos WHERE id >= 30 AND id < 40 ORDER BY id",
        )
        .await;
    assert_eq!(rows(&r), vec![json!(["30", "draft++"])]);
    // A duplicate key inside the transaction fails at its statement; nothing commits.
    let (code, r) = s
        .sql(&t, "BEGIN; INSERT INTO app.todos (id, title) VALUES (32, 'x'); INSERT INTO app.todos (id, title) VALUES (32, 'y'); COMMIT")
        .await;
    assert_eq!(code, 400);
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap_or("")
            .starts_with("Statement 3 failed"),
        "{r}"
    );
    let r = s
        .ok(&t, "SELECT COUNT(*) FROM app.todos WHERE id = 32")
        .await;
    assert_eq!(rows(&r), vec![json!(["0"])]);

    // ALTER TABLE with schema versions, DESCRIBE, SHOW TABLES, system tables.
    let r = s
        .ok(
            &t,
            "ALTER TABLE app.todos ADD COLUMN prio INT NOT NULL DEFAULT 5",
        )
        .await;
    assert!(
        r["results"][0]["message"]
            .as_str()
            .unwrap_or("")
            .contains("(version 2)"),
        "{r}"
    );
    s.ok(&t, "ALTER TABLE app.todos RENAME COLUMN title TO label")
        .await;
    let r = s
        .ok(&t, "SELECT label, prio FROM app.todos WHERE id = 1")
        .await;
    assert_eq!(rows(&r), vec![json!(["a!", 5])]);
    let r = s.ok(&t, "DESCRIBE TABLE app.todos").await;
    let names: Vec<&str> = rows(&r)
        .iter()
        .filter_map(|r| r[0].as_str())
        .map(|_| "")
        .collect();
    assert_eq!(names.len(), 6); // id, label, done, prio, _seq, _deleted
    let r = s.ok(&t, "DESCRIBE TABLE app.todos HISTORY").await;
    assert_eq!(rows(&r).len(), 3);
    let r = s.ok(&t, "SHOW TABLES IN app").await;
    assert_eq!(rows(&r).len(), 2);
    let r = s
        .ok(
            &t,
            "SELECT table_name, table_type FROM system.tables ORDER BY table_name",
        )
        .await;
    assert_eq!(
        rows(&r),
        vec![json!(["items", "SHARED"]), json!(["todos", "USER"])]
    );
    s.ok(&t, "SELECT * FROM system.columns").await;
    // The server's CPU time so far: it has at least hashed the admin's password.
    let cpu = |r: &serde_json::Value| -> u64 {
        rows(r)
            .iter()
            .find(|m| m[0] == "process_cpu_ms")
            .and_then(|m| m[1].as_str()?.parse().ok())
            .expect("system.stats has process_cpu_ms")
    };
    let first = cpu(&s.ok(&t, "SELECT * FROM system.stats").await);
    assert!(first > 0, "CPU spent so far: {first} ms");
    s.ok(&t, "SELECT * FROM system.namespaces").await;

    // STREAM tables need a TTL.
    let (code, _) = s
        .sql(
            &t,
            "CREATE STREAM TABLE app.ev (id BIGINT PRIMARY KEY, x TEXT)",
        )
        .await;
    assert_eq!(code, 400);
    s.ok(
        &t,
        "CREATE STREAM TABLE app.ev (id BIGINT PRIMARY KEY, x TEXT) WITH (TTL_SECONDS = 60)",
    )
    .await;
    s.ok(&t, "INSERT INTO app.ev (id, x) VALUES (1, 'typing')")
        .await;
    let r = s.ok(&t, "SELECT * FROM app.ev").await;
    assert_eq!(r["results"][0]["schema"].as_array().map(Vec::len), Some(3)); // no _deleted

    // DROP TABLE / NAMESPACE.
    s.ok(&t, "DROP TABLE app.ev").await;
    let (code, _) = s.sql(&t, "SELECT * FROM app.ev").await;
    assert_eq!(code, 400);
}

#[tokio::test]
async fn bad_input_gets_its_error_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Server::start(dir.path()).await;
    let t = s.setup_and_login().await;
    s.ok(
        &t,
        "CREATE NAMESPACE app; CREATE TABLE app.t (id INT PRIMARY KEY, v TEXT NOT NULL)",
    )
    .await;
    s.ok(&t, "INSERT INTO app.t (id, v) VALUES (1, 'one')")
        .await;

    let cases: Vec<(serde_json::Value, u16, &str)> = vec![
        (json!({"sql": ""}), 400, "EMPTY_SQL"),
        (json!({"sql": " ; ;"}), 400, "EMPTY_SQL"),
        (json!({"nosql": 1}), 400, "INVALID_INPUT"),
        (json!({"sql": "SELEC 1"}), 400, "INVALID_SQL"),
        (
            json!({"sql": "SELECT * FROM app.nope"}),
            400,
            "SQL_EXECUTION_ERROR",
        ),
        (
            json!({"sql": "SELECT * FROM nons.t"}),
            400,
            "SQL_EXECUTION_ERROR",
        ),
        (
            json!({"sql": "INSERT INTO app.t (id, v) VALUES ('x', 'a')"}),
            400,
            "SQL_EXECUTION_ERROR",
        ),
        (
            json!({"sql": "INSERT INTO app.t (id, v) VALUES (2, NULL)"}),
            400,
            "SQL_EXECUTION_ERROR",
        ),
        (
            json!({"sql": "INSERT INTO app.t (id, v) VALUES (1, 'dup')"}),
            400,
            "SQL_EXECUTION_ERROR",
        ),
        (
            json!({"sql": "INSERT INTO app.t (id, nope) VALUES (3, 'a')"}),
            400,
            "SQL_EXECUTION_ERROR",
        ),
        (
            json!({"sql": "SELECT $1; SELECT 2", "params": [1]}),
            400,
            "PARAMS_WITH_BATCH",
        ),
        (
            json!({"sql": "SELECT $1", "params": [[1, 2]]}),
            400,
            "INVALID_PARAMETER",
        ),
        (
            json!({"sql": "SELECT 1", "params": vec![1; 51]}),
            400,
            "SQL_EXECUTION_ERROR",
        ),
        (json!({"sql": "SELECT 'x"}), 400, "BATCH_PARSE_ERROR"),
        (
            json!({"sql": "INSERT INTO app.t (id, v) VALUES (5, 'ok'); INSERT INTO app.t (id, v) VALUES (1, 'dup')"}),
            400,
            "SQL_EXECUTION_ERROR",
        ),
        (
            json!({"sql": "CREATE TABLE app.nopk (x INT)"}),
            400,
            "INVALID_SQL",
        ),
        (
            json!({"sql": "CREATE TABLE app.bad (id INT PRIMARY KEY) WITH (NOPE = 1)"}),
            400,
            "INVALID_SQL",
        ),
    ];
    for (body, status, code) in cases {
        let (got, answer) = s.post("/v1/api/sql", Some(&t), &body).await;
        assert_eq!(
            (got, answer["error"]["code"].as_str()),
            (status, Some(code)),
            "{body}: {answer}"
        );
        assert_eq!(answer["status"], "error");
    }
    // The messages clients match on.
    let (_, r) = s
        .sql(&t, "INSERT INTO app.t (id, v) VALUES (1, 'dup')")
        .await;
    assert_eq!(
        r["error"]["message"],
        "Statement 1 failed: Primary key violation: value '1' already exists in column 'id'"
    );
    let (_, r) = s
        .sql(&t, "INSERT INTO app.t (id, v) VALUES (9, NULL)")
        .await;
    assert_eq!(
        r["error"]["message"],
        "Statement 1 failed: NOT NULL constraint violation: column 'v' cannot be NULL"
    );
    // Oversize SQL.
    let big = format!("SELECT '{}'", "x".repeat(1 << 20));
    let (code, r) = s.sql(&t, &big).await;
    assert_eq!(
        (code, r["error"]["code"].as_str()),
        (400, Some("INVALID_SQL"))
    );
    // Malformed JSON bodies.
    let resp = s
        .client
        .post(s.url("/v1/api/sql"))
        .bearer_auth(&t)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status().as_u16(), 400);

    // Nothing changed: statement 1 of the failed batch ran (execution stops at the first
    // failure, as documented), the rest did not.
    let r = s.ok(&t, "SELECT id, v FROM app.t ORDER BY id").await;
    assert_eq!(rows(&r), vec![json!([1, "one"]), json!([5, "ok"])]);
}

/// Names the reference accepts (`key`, `value`, `default`, …) make columns that every path
/// reads and writes; its reserved words are refused by name.
#[tokio::test]
async fn keywords_the_reference_accepts_are_column_names() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Server::start(dir.path()).await;
    let t = s.setup_and_login().await;
    s.ok_all(
        &t,
        &[
            "CREATE NAMESPACE app",
            "CREATE SHARED TABLE app.kv (id BIGINT PRIMARY KEY, key TEXT, value TEXT, status TEXT) WITH (ACCESS_LEVEL = 'PUBLIC')",
            "INSERT INTO app.kv (id, key, value, status) VALUES (1, 'a', 'x', 'on'), (2, 'b', 'y', 'off')",
            "UPDATE app.kv SET value = 'z' WHERE key = 'a'",
        ],
    )
    .await;
    let r = s
        .ok(&t, "SELECT key, value FROM app.kv WHERE key = 'a'")
        .await;
    assert_eq!(rows(&r), [json!(["a", "z"])]);
    let r = s
        .ok(&t, "SELECT key FROM app.kv WHERE status = 'off'")
        .await;
    assert_eq!(rows(&r), [json!(["b"])]);
    let (status, body) = s
        .sql(
            &t,
            "CREATE SHARED TABLE app.bad (id BIGINT PRIMARY KEY, select TEXT)",
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = s
        .sql(
            &t,
            "CREATE SHARED TABLE app.bad (id BIGINT PRIMARY KEY, \"from\" TEXT)",
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("reserved word"),
        "{body}"
    );
}

/// JSON operators read as PostgreSQL reads them (#17 item 5): `->>` binds tighter than a
/// comparison, and `?` asks whether a key exists.
#[tokio::test]
async fn json_operators_bind_and_test_keys_as_postgres_does() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Server::start(dir.path()).await;
    let t = s.setup_and_login().await;
    s.ok_all(
        &t,
        &[
            "CREATE NAMESPACE app",
            "CREATE TABLE app.docs (id INT PRIMARY KEY, doc JSON) WITH (TYPE = 'SHARED')",
            r#"INSERT INTO app.docs (id, doc) VALUES
                (1, '{"status": "active", "tag": "x", "n": {"k": 1}}'),
                (2, '{"status": "closed"}'),
                (3, '{"status": "active", "n": {"k": 2}}')"#,
        ],
    )
    .await;
    let ids = |r: &serde_json::Value| -> Vec<i64> {
        rows(r).iter().filter_map(|r| r[0].as_i64()).collect()
    };
    let q = |w: &str| format!("SELECT id FROM app.docs WHERE {w} ORDER BY id");
    let r = s.ok(&t, &q("doc->>'status' = 'active'")).await;
    assert_eq!(ids(&r), [1, 3], "{r}");
    let r = s.ok(&t, &q("doc ? 'tag'")).await;
    assert_eq!(ids(&r), [1], "{r}");
    let r = s.ok(&t, &q("doc ? 'n' AND doc->'n'->>'k' = '2'")).await;
    assert_eq!(ids(&r), [3], "{r}");
    let r = s
        .ok(
            &t,
            &q("doc->>'status' <> 'active' OR doc->>'tag' IS NOT NULL"),
        )
        .await;
    assert_eq!(ids(&r), [1, 2], "{r}");
    // `$1` stays a parameter beside `?`.
    let (code, r) = s
        .post(
            "/v1/api/sql",
            Some(&t),
            &json!({"sql": "SELECT id FROM app.docs WHERE doc ? 'status' AND id > $1 ORDER BY id", "params": [1]}),
        )
        .await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(ids(&r), [2, 3], "{r}");
}
