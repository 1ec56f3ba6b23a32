//! Identity and authorization hold under attack (#14, items 12–15): concurrent first-run
//! setups configure the server exactly once; `SHOW STATS` and `DESCRIBE` follow SELECT's
//! rules (a user counts only their own rows and sees no DBA-level table); role `user` alters
//! no table's schema; failed logins cost no log entry each (they are written aggregated);
//! what a caller below dba reads of an error is decided by its kind (API.md 1.7.4).

use folddb_tests::{Server, rows};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_run_setups_configure_the_server_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = std::sync::Arc::new(Server::start(dir.path()).await);
    let mut tasks = Vec::new();
    for i in 0..12 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let body = json!({"user": format!("dba{i}"), "password": "dba-pass-123",
                              "root_password": format!("root-pass-{i}")});
            s.post("/v1/api/auth/setup", None, &body).await
        }));
    }
    let mut winners = Vec::new();
    for (i, t) in tasks.into_iter().enumerate() {
        let (status, body) = t.await.expect("setup task");
        match status {
            200 => winners.push(i),
            409 => assert!(
                matches!(
                    body["error"].as_str(),
                    Some("already_configured" | "user_exists")
                ),
                "{body}"
            ),
            other => panic!("setup {i}: {other} {body}"),
        }
    }
    let [winner] = winners.as_slice() else {
        panic!("exactly one setup succeeds: {winners:?}")
    };
    // Only the winner's DBA exists, and root has the winner's password.
    let admin = s.login(&format!("dba{winner}"), "dba-pass-123").await;
    let r = s
        .ok(
            &admin,
            "SELECT user_id FROM system.users WHERE role = 'dba' ORDER BY user_id",
        )
        .await;
    assert_eq!(rows(&r), vec![json!([format!("dba{winner}")])]);
    s.login("root", &format!("root-pass-{winner}")).await;
}

async fn server_with_users() -> (tempfile::TempDir, Server, String, String, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Server::start(dir.path()).await;
    let admin = s.setup_and_login().await;
    for sql in [
        "CREATE NAMESPACE app",
        "CREATE USER TABLE app.notes (id BIGINT PRIMARY KEY, body TEXT)",
        "CREATE SHARED TABLE app.secret (id BIGINT PRIMARY KEY, pin TEXT) WITH (ACCESS_LEVEL = 'DBA')",
        "CREATE USER alice WITH PASSWORD 'alice-pass-1' ROLE user",
        "CREATE USER bob WITH PASSWORD 'bob-pass-12' ROLE user",
    ] {
        s.ok(&admin, sql).await;
    }
    let alice = s.login("alice", "alice-pass-1").await;
    let bob = s.login("bob", "bob-pass-12").await;
    (dir, s, admin, alice, bob)
}

#[tokio::test]
async fn show_stats_and_describe_follow_the_rules_of_select() {
    let (_dir, s, admin, alice, bob) = server_with_users().await;
    s.ok(
        &bob,
        "INSERT INTO app.notes (id, body) VALUES (1, 'b1'), (2, 'b2'), (3, 'b3')",
    )
    .await;
    s.ok(&alice, "INSERT INTO app.notes (id, body) VALUES (1, 'a1')")
        .await;
    let count = |r: &serde_json::Value| rows(r)[0][1].clone();
    // Each counts their own rows: alice cannot watch bob's writes.
    let r = s.ok(&alice, "SHOW STATS FOR TABLE app.notes").await;
    assert_eq!(count(&r), json!("1"));
    let r = s.ok(&bob, "SHOW STATS FOR TABLE app.notes").await;
    assert_eq!(count(&r), json!("3"));
    s.ok(&bob, "INSERT INTO app.notes (id, body) VALUES (4, 'b4')")
        .await;
    let r = s.ok(&alice, "SHOW STATS FOR TABLE app.notes").await;
    assert_eq!(count(&r), json!("1"), "bob's write is not alice's to see");
    // A DBA-level table: neither its stats nor its schema for role user.
    let denied = (403, "PERMISSION_DENIED".to_owned());
    for sql in [
        "SHOW STATS FOR TABLE app.secret",
        "DESCRIBE TABLE app.secret",
        "DESCRIBE TABLE app.secret HISTORY",
    ] {
        assert_eq!(s.fails(&alice, sql).await, denied, "{sql}");
        s.ok(&admin, sql).await;
    }
    s.ok(&alice, "DESCRIBE TABLE app.notes").await;
}

#[tokio::test]
async fn role_user_alters_no_table_schema() {
    let (_dir, s, admin, alice, bob) = server_with_users().await;
    s.ok(
        &bob,
        "INSERT INTO app.notes (id, body) VALUES (1, 'keep me')",
    )
    .await;
    let denied = (403, "PERMISSION_DENIED".to_owned());
    for sql in [
        "ALTER TABLE app.notes DROP COLUMN body",
        "ALTER TABLE app.notes ADD COLUMN extra TEXT",
        "ALTER TABLE app.notes RENAME COLUMN body TO text",
        "DROP TABLE app.notes",
    ] {
        assert_eq!(s.fails(&alice, sql).await, denied, "{sql}");
    }
    let r = s.ok(&bob, "SELECT id, body FROM app.notes").await;
    assert_eq!(rows(&r), vec![json!(["1", "keep me"])]);
    // Service and up may.
    s.ok(
        &admin,
        "CREATE USER svc WITH PASSWORD 'svc-pass-123' ROLE service",
    )
    .await;
    let svc = s.login("svc", "svc-pass-123").await;
    s.ok(&svc, "ALTER TABLE app.notes ADD COLUMN extra TEXT")
        .await;
}

/// Entries in the log so far (`system.stats`' applied index).
async fn applied(s: &Server, admin: &str) -> u64 {
    let r = s
        .ok(
            admin,
            "SELECT metric_value FROM system.stats WHERE metric_name = 'applied_index'",
        )
        .await;
    rows(&r)[0][0]
        .as_str()
        .and_then(|v| v.parse().ok())
        .expect("a number")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_are_aggregated_before_they_reach_the_log() {
    let (_dir, s, admin, _alice, _bob) = server_with_users().await;
    let before = applied(&s, &admin).await;
    // 300 failed logins under 60 names: far fewer log entries than attempts.
    let s = std::sync::Arc::new(s);
    let mut tasks = Vec::new();
    for w in 0..4 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..75 {
                let body = json!({"user": format!("nobody{}", (w * 75 + i) % 60),
                                  "password": "wrong-password"});
                let (status, _) = s.post("/v1/api/auth/login", None, &body).await;
                assert!(status == 401, "{status}");
            }
        }));
    }
    for t in tasks {
        t.await.expect("login task");
    }
    // They are audited, aggregated (waiting for the next write of them).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let audited = loop {
        let r = s
            .ok(
                &admin,
                "SELECT target, details FROM system.audit_log WHERE action = 'login_failed'",
            )
            .await;
        let got = rows(&r);
        if got.len() >= 60 {
            break got;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "failed logins audited: {got:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let total: u64 = audited
        .iter()
        .filter_map(|r| r[1].as_str())
        .filter_map(|d| d.split(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(total, 300, "every attempt is counted: {audited:?}");
    let entries = applied(&s, &admin).await - before;
    assert!(entries < 30, "300 failed logins cost {entries} log entries");
    // The lockout still works for a name under attack.
    let (status, body) = s
        .post(
            "/v1/api/auth/login",
            None,
            &json!({"user": "nobody0", "password": "wrong-password"}),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("account_locked"))
    );
}

/// Reads (pinging, so that the connection is never idle) until the server closes the
/// connection; the close frame's reason.
async fn close_reason(ws: &mut folddb_tests::ws::Ws) -> String {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let wait = tokio::time::Instant::now() + std::time::Duration::from_secs(2);
        match tokio::time::timeout_at(wait.min(deadline), ws.next()).await {
            Err(_) => {
                assert!(tokio::time::Instant::now() < deadline, "not closed in 30 s");
                let _ = ws.send(Message::text(r#"{"type":"ping"}"#)).await;
            }
            Ok(Some(Ok(Message::Close(c)))) => {
                return c.map(|c| c.reason.to_string()).unwrap_or_default();
            }
            Ok(None | Some(Err(_))) => return String::new(),
            Ok(Some(Ok(_))) => {}
        }
    }
}

#[tokio::test]
async fn a_dropped_account_passes_nothing_to_a_new_one_of_the_same_name() {
    let (_dir, s, admin, _alice, _bob) = server_with_users().await;
    s.ok(
        &admin,
        "CREATE USER dave WITH PASSWORD 'dave-pass-1' ROLE user",
    )
    .await;
    let dave = s.login("dave", "dave-pass-1").await;
    s.ok(
        &dave,
        "INSERT INTO app.notes (id, body) VALUES (1, 'dave private')",
    )
    .await;
    let mut ws = folddb_tests::ws::connect(s.port, Some(&dave)).await;
    folddb_tests::ws::next(&mut ws).await.expect("auth");

    s.ok(&admin, "DROP USER dave").await;
    assert_eq!(close_reason(&mut ws).await, "Account dropped or changed");
    assert_eq!(
        s.fails(&dave, "SELECT * FROM app.notes").await,
        (401, "INVALID_CREDENTIALS".into())
    );
    // The name is not handed to a new account: its rows and tokens stay the old one's.
    let (status, body) = s
        .sql(
            &admin,
            "CREATE USER dave WITH PASSWORD 'dave-pass-2' ROLE user",
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("dropped")),
        "{body}"
    );
    assert_eq!(
        s.fails(&dave, "SELECT * FROM app.notes").await,
        (401, "INVALID_CREDENTIALS".into())
    );

    // A demoted user's WebSocket is closed too.
    s.ok(
        &admin,
        "CREATE USER carol WITH PASSWORD 'carol-pass-1' ROLE service",
    )
    .await;
    let carol = s.login("carol", "carol-pass-1").await;
    let mut ws = folddb_tests::ws::connect(s.port, Some(&carol)).await;
    folddb_tests::ws::next(&mut ws).await.expect("auth");
    s.ok(&admin, "ALTER USER carol SET ROLE user").await;
    assert_eq!(close_reason(&mut ws).await, "Account dropped or changed");
}

/// API.md 1.7.4: a caller below dba reads the messages about their own statement that
/// clients rely on (a duplicate key, a missing column, a permission, NOT NULL), gets fixed
/// texts for the rest (DataFusion's own messages, invalid SQL), and never the statement's
/// SQL; dba reads everything.
#[tokio::test]
async fn a_user_reads_only_the_errors_meant_for_them() {
    let (_dir, s, admin, alice, _bob) = server_with_users().await;
    s.ok(&alice, "INSERT INTO app.notes (id, body) VALUES (1, 'a')")
        .await;
    let error = |body: &serde_json::Value| {
        (
            body["error"]["code"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            body["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            body["error"]["details"].clone(),
        )
    };
    let shown = [
        (
            "INSERT INTO app.notes (id, body) VALUES (1, 'again')",
            "SQL_EXECUTION_ERROR",
            "Primary key violation: value '1' already exists in column 'id'",
        ),
        (
            "UPDATE app.notes SET nope = 1 WHERE id = 1",
            "SQL_EXECUTION_ERROR",
            "Column 'nope' not found in table app.notes",
        ),
        (
            "INSERT INTO app.notes (id, body) VALUES (NULL, 'x')",
            "SQL_EXECUTION_ERROR",
            "NOT NULL constraint violation",
        ),
        (
            "SELECT * FROM app.secret",
            "PERMISSION_DENIED",
            "Permission denied",
        ),
    ];
    for (sql, code, text) in shown {
        let (_, body) = s.sql(&alice, sql).await;
        let (c, message, details) = error(&body);
        assert_eq!(c, code, "{sql}: {body}");
        assert!(message.starts_with("Statement 1 failed: "), "{sql}: {body}");
        assert!(message.contains(text), "{sql}: {body}");
        assert!(details.is_null(), "{sql}: the SQL is for dba only: {body}");
    }
    let hidden = [
        (
            "SELECT nosuchfn(1)",
            "SQL_EXECUTION_ERROR",
            "SQL statement failed",
        ),
        (
            "SELEKT 1",
            "INVALID_SQL",
            "SQL statement is invalid or not allowed",
        ),
    ];
    for (sql, code, text) in hidden {
        let (_, body) = s.sql(&alice, sql).await;
        assert_eq!(
            error(&body),
            (code.to_owned(), text.to_owned(), serde_json::Value::Null),
            "{sql}: {body}"
        );
        let (_, body) = s.sql(&admin, sql).await;
        let (c, message, details) = error(&body);
        assert_eq!(c, code, "{sql}: {body}");
        assert_ne!(message, text, "dba reads the reason: {body}");
        assert_eq!(details, json!(sql), "{body}");
    }
}
