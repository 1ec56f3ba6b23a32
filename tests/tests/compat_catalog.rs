//! What KalamDB's clients ask the catalog (#17 items 2 and 3): `information_schema` as its
//! CLI's `\d` and completion query it, and the `system` tables with the reference's columns
//! (API.md 3.7).

use folddb_tests::{Server, rows};
use serde_json::{Value, json};

/// The column names of a statement's result.
fn names(answer: &Value) -> Vec<String> {
    answer["results"][0]["schema"]
        .as_array()
        .map(|s| {
            s.iter()
                .filter_map(|f| f["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

async fn schema_fixture(s: &Server, t: &str) {
    s.ok_all(
        t,
        &[
            "CREATE NAMESPACE app",
            "CREATE TABLE app.todos (id BIGINT PRIMARY KEY, title TEXT NOT NULL, done BOOLEAN DEFAULT false) WITH (TYPE = 'USER')",
            "CREATE TABLE app.board (id INT PRIMARY KEY, note TEXT) WITH (TYPE = 'SHARED', ACCESS_LEVEL = 'PUBLIC')",
            "CREATE TABLE app.vault (id INT PRIMARY KEY, secret TEXT) WITH (TYPE = 'SHARED', ACCESS_LEVEL = 'PRIVATE')",
        ],
    )
    .await;
}

#[tokio::test]
async fn information_schema_answers_the_reference_cli_and_shows_each_caller_what_it_may_read() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Server::start(dir.path()).await;
    let admin = s.setup_and_login().await;
    schema_fixture(&s, &admin).await;

    // `\d app.todos` in the reference's CLI.
    let describe = "SELECT table_schema AS namespace, table_name, column_name, data_type, \
                    is_nullable, column_default, ordinal_position AS position \
                    FROM information_schema.columns WHERE table_schema = 'app' \
                    AND table_name = 'todos' ORDER BY ordinal_position";
    let r = s.ok(&admin, describe).await;
    let got = rows(&r);
    assert!(got.len() >= 3, "{r}");
    assert_eq!(got[0][2], "id");
    assert_eq!(got[0][3], "Int64");
    assert_eq!(got[0][4], "NO");
    assert_eq!(got[1][2], "title");
    assert_eq!(got[1][3], "Utf8");
    assert_eq!(got[2][2], "done");
    assert_eq!(got[2][4], "YES");

    // Its completion list, and the reference's own check of system tables by catalog.
    let r = s
        .ok(
            &admin,
            "SELECT table_schema, table_name FROM information_schema.tables WHERE \
             table_schema IN ('system', 'information_schema') ORDER BY table_schema, table_name",
        )
        .await;
    let listed: Vec<(String, String)> = rows(&r)
        .iter()
        .map(|r| {
            (
                r[0].as_str().unwrap_or("").into(),
                r[1].as_str().unwrap_or("").into(),
            )
        })
        .collect();
    for (schema, table) in [
        ("information_schema", "columns"),
        ("information_schema", "tables"),
        ("system", "settings"),
        ("system", "datatypes"),
        ("system", "cluster"),
        ("system", "users"),
    ] {
        assert!(
            listed.contains(&(schema.into(), table.into())),
            "{schema}.{table} missing: {listed:?}"
        );
    }
    let r = s
        .ok(
            &admin,
            "SELECT DISTINCT table_name FROM information_schema.columns WHERE table_catalog = 'kalam' \
             AND table_schema = 'system' AND table_name IN ('users', 'jobs') ORDER BY table_name",
        )
        .await;
    assert_eq!(rows(&r), vec![json!(["jobs"]), json!(["users"])]);

    // A regular user reads it too, and sees only what it may read: not the PRIVATE table,
    // not the system schema.
    let alice = s.user(&admin, "alice", "Secret123!", "user").await;
    let r = s
        .ok(
            &alice,
            "SELECT table_catalog, table_schema, table_name FROM information_schema.tables \
             WHERE table_schema NOT IN ('information_schema') ORDER BY table_schema, table_name",
        )
        .await;
    assert_eq!(
        rows(&r),
        vec![
            json!(["kalam", "app", "board"]),
            json!(["kalam", "app", "todos"])
        ]
    );
    let r = s
        .ok(
            &alice,
            "SELECT DISTINCT table_name FROM information_schema.columns WHERE table_schema = 'app' ORDER BY table_name",
        )
        .await;
    assert_eq!(rows(&r), vec![json!(["board"]), json!(["todos"])]);

    // It is read-only, for every role.
    for t in [&admin, &alice] {
        let (code, body) = s
            .sql(
                t,
                "INSERT INTO information_schema.tables VALUES ('kalam', 'x', 'y', 'BASE TABLE')",
            )
            .await;
        assert_eq!(code, 403, "{body}");
    }
    // Three-part names use the same catalog.
    s.ok(&admin, "INSERT INTO app.todos (id, title) VALUES (1, 'a')")
        .await;
    let r = s.ok(&admin, "SELECT title FROM kalam.app.todos").await;
    assert_eq!(rows(&r), vec![json!(["a"])]);
}

#[tokio::test]
async fn system_tables_have_the_reference_columns_and_describe_this_node() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Server::start_with(dir.path(), &[("FOLDDB_LOG", "info")]).await;
    let admin = s.setup_and_login().await;
    schema_fixture(&s, &admin).await;
    s.ok(&admin, "ALTER TABLE app.todos ADD COLUMN prio INT")
        .await;

    // Every system table the reference's smoke test reads answers, with its columns first.
    let expect: &[(&str, &[&str])] = &[
        (
            "schemas",
            &[
                "table_id",
                "table_name",
                "namespace_id",
                "table_type",
                "created_at",
                "schema_version",
                "columns",
                "table_comment",
                "updated_at",
                "options",
                "access_level",
                "is_latest",
                "storage_id",
                "use_user_storage",
            ],
        ),
        (
            "tables",
            &[
                "namespace_id",
                "table_name",
                "table_type",
                "storage_id",
                "version",
                "options",
                "comment",
                "updated_at",
                "created_at",
            ],
        ),
        (
            "columns",
            &[
                "namespace_id",
                "table_name",
                "version",
                "column_id",
                "column_name",
                "comment",
                "data_type",
                "default_value",
                "ordinal",
                "nullable",
                "primary_key",
                "primary_key_pos",
            ],
        ),
        (
            "job_nodes",
            &[
                "job_id",
                "node_id",
                "status",
                "error_message",
                "created_at",
                "started_at",
                "finished_at",
                "updated_at",
            ],
        ),
        ("settings", &["name", "value", "description", "category"]),
        (
            "server_logs",
            &["timestamp", "level", "thread", "target", "line", "message"],
        ),
        (
            "cluster",
            &[
                "cluster_id",
                "node_id",
                "role",
                "status",
                "rpc_addr",
                "api_addr",
                "is_self",
                "is_leader",
            ],
        ),
        (
            "cluster_groups",
            &[
                "group_id",
                "cluster_id",
                "node_id",
                "group_type",
                "current_term",
                "vote",
                "last_log_index",
                "last_applied",
            ],
        ),
        (
            "datatypes",
            &["arrow_type", "kalam_type", "sql_name", "description"],
        ),
        ("stats", &["metric_name", "metric_value"]),
    ];
    for (table, columns) in expect {
        let r = s
            .ok(&admin, &format!("SELECT * FROM system.{table} LIMIT 5"))
            .await;
        let got = names(&r);
        assert!(
            got.len() >= columns.len() && got[..columns.len()] == columns[..],
            "system.{table}: {got:?}"
        );
    }
    for table in [
        "users",
        "namespaces",
        "storages",
        "jobs",
        "audit_log",
        "manifest",
        "live",
    ] {
        s.ok(&admin, &format!("SELECT * FROM system.{table} LIMIT 5"))
            .await;
    }

    // system.schemas holds every version; only the current one is latest.
    let r = s
        .ok(
            &admin,
            "SELECT schema_version, is_latest, columns FROM system.schemas \
             WHERE table_id = 'app.todos' ORDER BY schema_version",
        )
        .await;
    let versions = rows(&r);
    assert_eq!(versions.len(), 2, "{r}");
    assert_eq!(
        (&versions[0][0], &versions[0][1]),
        (&json!(1), &json!(false))
    );
    assert_eq!(
        (&versions[1][0], &versions[1][1]),
        (&json!(2), &json!(true))
    );
    let cols = |v: &Value| -> Vec<String> {
        let parsed: Value = serde_json::from_str(v.as_str().unwrap_or("null")).unwrap_or_default();
        parsed
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|c| c["column_name"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(cols(&versions[0][2]), ["id", "title", "done"]);
    assert_eq!(cols(&versions[1][2]), ["id", "title", "done", "prio"]);
    let r = s
        .ok(
            &admin,
            "SELECT options FROM system.schemas WHERE table_id = 'app.board' AND is_latest",
        )
        .await;
    let options: Value =
        serde_json::from_str(rows(&r)[0][0].as_str().unwrap_or("")).unwrap_or_default();
    assert_eq!(options["access_level"], "PUBLIC", "{options}");
    // SHOW TABLES answers rows of that shape, current versions only.
    let r = s.ok(&admin, "SHOW TABLES IN app").await;
    assert_eq!(names(&r)[..3], ["table_id", "table_name", "namespace_id"]);
    assert_eq!(rows(&r).len(), 3);

    // Settings, without secrets.
    let r = s
        .ok(
            &admin,
            "SELECT value, category, description FROM system.settings WHERE name = 'limits.max_result_bytes'",
        )
        .await;
    let got = rows(&r);
    assert_eq!(
        (&got[0][0], &got[0][1]),
        (&json!("67108864"), &json!("limits"))
    );
    assert!(!got[0][2].as_str().unwrap_or("").is_empty());
    let r = s
        .ok(
            &admin,
            "SELECT count(*) FROM system.settings WHERE name LIKE '%secret%' OR name LIKE '%password%'",
        )
        .await;
    assert_eq!(rows(&r), vec![json!(["0"])]);

    // The server's own log lines.
    let r = s
        .ok(
            &admin,
            "SELECT level, message FROM system.server_logs WHERE message LIKE 'serving%'",
        )
        .await;
    assert_eq!(
        rows(&r).first().map(|r| r[0].clone()),
        Some(json!("INFO")),
        "{r}"
    );

    // This node, leading its one log, applied up to where the server says.
    let applied = s.last_applied().await;
    let r = s
        .ok(
            &admin,
            "SELECT node_id, is_self, is_leader, status, last_applied_log >= 1, os FROM system.cluster",
        )
        .await;
    assert_eq!(rows(&r).len(), 1, "{r}");
    assert_eq!(
        rows(&r)[0].as_array().map(|a| a[..5].to_vec()),
        Some(vec![
            json!("1"),
            json!(true),
            json!(true),
            json!("active"),
            json!(true)
        ])
    );
    assert!(applied >= 1);
    let r = s
        .ok(&admin, "SELECT count(*) FROM system.cluster_groups")
        .await;
    assert_eq!(rows(&r), vec![json!(["1"])]);

    // Data types.
    let r = s
        .ok(
            &admin,
            "SELECT arrow_type, kalam_type FROM system.datatypes WHERE sql_name = 'BIGINT'",
        )
        .await;
    assert_eq!(rows(&r), vec![json!(["Int64", "BigInt"])]);

    // The stats the reference's health monitor reads.
    let r = s
        .ok(
            &admin,
            "SELECT metric_name, metric_value FROM system.stats WHERE metric_name IN \
             ('schema_cache_size', 'server_workers_effective', 'max_connections', 'total_tables') \
             ORDER BY metric_name",
        )
        .await;
    let stats = rows(&r);
    assert_eq!(stats.len(), 4, "{r}");
    assert_eq!(stats[0], json!(["max_connections", "100000"]));
    assert_eq!(stats[1], json!(["schema_cache_size", "3"]));
    assert!(
        stats[2][1]
            .as_str()
            .unwrap_or("0")
            .parse::<u64>()
            .unwrap_or(0)
            >= 1
    );
    assert_eq!(stats[3], json!(["total_tables", "3"]));

    // A flush job, and where it ran.
    s.ok(&admin, "INSERT INTO app.todos (id, title) VALUES (1, 'a')")
        .await;
    let (job, _, _) = s.run_job(&admin, "STORAGE FLUSH TABLE app.todos").await;
    let r = s
        .ok(
            &admin,
            &format!("SELECT node_id, status FROM system.job_nodes WHERE job_id = '{job}'"),
        )
        .await;
    assert_eq!(rows(&r), vec![json!(["1", "completed"])]);

    // System tables stay the dba's.
    let alice = s.user(&admin, "alice", "Secret123!", "user").await;
    let (code, body) = s.sql(&alice, "SELECT * FROM system.settings").await;
    assert_eq!(code, 403, "{body}");
}
