//! Live queries over `/v1/ws` (API.md 2) against the real binary, with a WebSocket client:
//! authentication both ways, the initial data in batches, then every change as it is
//! applied — inserts, updates, rows leaving the filter, deletes — only the subscriber's own
//! rows, and resume with `from`.

use std::time::Duration;

use folddb_tests::Server;
use folddb_tests::ws::{View, connect, next, quiet, read_views_until, send, seq};
use futures::SinkExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// A fresh server, set up, with namespace `app` and one table made by `ddl`: the data
/// directory (keep it alive), the server and the admin's token.
async fn app_with(ddl: &str) -> (tempfile::TempDir, Server, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Server::start(dir.path()).await;
    let admin = s.setup_and_login().await;
    s.ok(&admin, "CREATE NAMESPACE app").await;
    s.ok(&admin, ddl).await;
    (dir, s, admin)
}

#[tokio::test]
async fn a_subscriber_sees_its_rows_then_every_change_in_order() {
    let (_dir, s, admin) = app_with("CREATE USER TABLE app.todos (id BIGINT PRIMARY KEY, title TEXT, done BOOLEAN NOT NULL DEFAULT false)").await;
    for u in ["alice", "bob"] {
        s.ok(
            &admin,
            &format!("CREATE USER {u} WITH PASSWORD '{u}-pass-1' ROLE user"),
        )
        .await;
    }
    let alice = s.login("alice", "alice-pass-1").await;
    let bob = s.login("bob", "bob-pass-1").await;
    s.ok(
        &alice,
        "INSERT INTO app.todos (id, title) VALUES (1, 'a'), (2, 'b'), (3, 'c')",
    )
    .await;
    s.ok(&bob, "INSERT INTO app.todos (id, title) VALUES (9, 'bob')")
        .await;

    // Header authentication: auth_success arrives unsolicited.
    let mut ws = connect(s.port, Some(&alice)).await;
    let m = next(&mut ws).await.expect("auth_success");
    assert_eq!(
        (m["type"].as_str(), m["user"].as_str(), m["role"].as_str()),
        (Some("auth_success"), Some("alice"), Some("user"))
    );
    send(
        &mut ws,
        json!({"type": "subscribe", "subscription": {"id": "s1",
            "sql": "SELECT id, title FROM app.todos WHERE done = false", "options": {"batch_size": 2}}}),
    )
    .await;
    let ack = next(&mut ws).await.expect("ack");
    assert_eq!(ack["type"], "subscription_ack");
    assert_eq!(ack["batch_control"]["status"], "loading");
    let names: Vec<&str> = ack["schema"]
        .as_array()
        .map(|a| a.iter().filter_map(|c| c["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(names, ["id", "title", "_seq"]);
    let b0 = next(&mut ws).await.expect("batch 0");
    assert_eq!(b0["type"], "initial_data_batch");
    assert_eq!(
        (
            b0["batch_control"]["batch_num"].as_u64(),
            b0["batch_control"]["has_more"].as_bool()
        ),
        (Some(0), Some(true))
    );
    let mut rows: Vec<Value> = b0["rows"].as_array().cloned().unwrap_or_default();
    send(
        &mut ws,
        json!({"type": "next_batch", "subscription_id": "s1",
                     "last_seq_id": b0["batch_control"]["last_seq_id"]}),
    )
    .await;
    let b1 = next(&mut ws).await.expect("batch 1");
    assert_eq!(b1["batch_control"]["status"], "ready");
    rows.extend(b1["rows"].as_array().cloned().unwrap_or_default());
    let ids: Vec<&str> = rows.iter().filter_map(|r| r["id"].as_str()).collect();
    assert_eq!(ids, ["1", "2", "3"], "only alice's rows, ascending _seq");
    let mut last = rows.iter().map(seq).max().unwrap_or(0);

    // Live: bob's writes never arrive; alice's do, in order, each with a larger _seq.
    s.ok(
        &bob,
        "INSERT INTO app.todos (id, title) VALUES (10, 'bob2')",
    )
    .await;
    s.ok(&alice, "INSERT INTO app.todos (id, title) VALUES (4, 'd')")
        .await;
    let m = next(&mut ws).await.expect("insert");
    assert_eq!(
        (m["change_type"].as_str(), &m["rows"][0]["id"]),
        (Some("insert"), &json!("4"))
    );
    assert!(seq(&m["rows"][0]) > last);
    last = seq(&m["rows"][0]);
    s.ok(&alice, "UPDATE app.todos SET title = 'A' WHERE id = 1")
        .await;
    let m = next(&mut ws).await.expect("update");
    assert_eq!(m["change_type"], "update");
    assert_eq!(m["rows"][0]["title"], "A");
    assert_eq!(m["old_values"][0]["title"], "a");
    assert!(seq(&m["rows"][0]) > last);
    // Leaving the filter is a delete for this subscriber; a real delete too.
    s.ok(&alice, "UPDATE app.todos SET done = true WHERE id = 2")
        .await;
    let m = next(&mut ws).await.expect("left the filter");
    assert_eq!(
        (m["change_type"].as_str(), &m["old_values"][0]["id"]),
        (Some("delete"), &json!("2"))
    );
    s.ok(&alice, "DELETE FROM app.todos WHERE id = 3").await;
    let m = next(&mut ws).await.expect("delete");
    assert_eq!(
        (m["change_type"].as_str(), &m["old_values"][0]["id"]),
        (Some("delete"), &json!("3"))
    );
    // A row changed while outside the filter gives nothing; entering it is an insert.
    s.ok(&alice, "UPDATE app.todos SET title = 'B' WHERE id = 2")
        .await;
    quiet(&mut ws).await;
    s.ok(&alice, "UPDATE app.todos SET done = false WHERE id = 2")
        .await;
    let m = next(&mut ws).await.expect("entered the filter");
    assert_eq!(m["change_type"], "insert");
    assert_eq!(m["rows"][0]["title"], "B");
    let resume_from = seq(&m["rows"][0]);

    // Unsubscribe: nothing more.
    send(
        &mut ws,
        json!({"type": "unsubscribe", "subscription_id": "s1"}),
    )
    .await;
    s.ok(&alice, "INSERT INTO app.todos (id, title) VALUES (5, 'e')")
        .await;
    quiet(&mut ws).await;

    // Resume with `from`: only versions newer than the cursor.
    send(
        &mut ws,
        json!({"type": "subscribe", "subscription": {"id": "s2",
            "sql": "SELECT * FROM app.todos", "options": {"from": resume_from}}}),
    )
    .await;
    let ack = next(&mut ws).await.expect("ack");
    assert_eq!(ack["type"], "subscription_ack");
    let b = next(&mut ws).await.expect("batch");
    let ids: Vec<&str> = b["rows"]
        .as_array()
        .map(|a| a.iter().filter_map(|r| r["id"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(ids, ["5"]);
}

#[tokio::test]
async fn message_authentication_and_bad_frames() {
    let (_dir, s, admin) =
        app_with("CREATE USER TABLE app.t (id BIGINT PRIMARY KEY, v TEXT)").await;

    // Subscribing before authenticating is refused; authenticate then works.
    let mut ws = connect(s.port, None).await;
    send(
        &mut ws,
        json!({"type": "subscribe", "subscription": {"id": "x", "sql": "SELECT * FROM app.t"}}),
    )
    .await;
    let m = next(&mut ws).await.expect("error");
    assert_eq!(
        (m["code"].as_str(), m["subscription_id"].as_str()),
        (Some("AUTH_REQUIRED"), Some("subscribe"))
    );
    send(
        &mut ws,
        json!({"type": "authenticate", "method": "jwt", "token": admin,
                     "protocol": {"serialization": "json", "compression": "gzip"}}),
    )
    .await;
    assert_eq!(next(&mut ws).await.expect("auth")["type"], "auth_success");
    // Bad subscription SQL gets its code; the connection carries on.
    for (sql, code) in [
        ("SELECT * FROM t", "INVALID_SQL"),
        ("SELECT * FROM app.t ORDER BY id", "INVALID_SQL"),
        ("SELECT _seq FROM app.t", "INVALID_SQL"),
        ("SELECT * FROM app.missing", "NOT_FOUND"),
    ] {
        send(
            &mut ws,
            json!({"type": "subscribe", "subscription": {"id": "q", "sql": sql}}),
        )
        .await;
        let m = next(&mut ws).await.expect("error");
        assert_eq!(
            (m["type"].as_str(), m["code"].as_str()),
            (Some("error"), Some(code)),
            "{sql}"
        );
    }
    // Without options: an ack that is ready, then live changes only.
    send(
        &mut ws,
        json!({"type": "subscribe", "subscription": {"id": "live", "sql": "SELECT * FROM app.t"}}),
    )
    .await;
    let ack = next(&mut ws).await.expect("ack");
    assert_eq!(ack["batch_control"]["status"], "ready");
    s.ok(&admin, "INSERT INTO app.t (id, v) VALUES (1, 'x')")
        .await;
    let m = next(&mut ws).await.expect("change");
    assert_eq!(m["rows"][0]["_deleted"], false);
    // An invalid frame closes the socket (API.md 2.2).
    ws.send(Message::text("{not json")).await.expect("sent");
    assert!(next(&mut ws).await.is_none());

    // A bad token in the header: auth_error, then close.
    let mut ws = connect(s.port, Some("not.a.token")).await;
    let m = next(&mut ws).await.expect("auth_error");
    assert_eq!(m["type"], "auth_error");
    assert!(next(&mut ws).await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_subscribers_converge_on_what_eight_writers_wrote() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = std::sync::Arc::new(
        Server::start_with(dir.path(), &[("FOLDDB_MAX_SUBSCRIPTIONS_PER_USER", "100")]).await,
    );
    let admin = s.setup_and_login().await;
    s.ok(&admin, "CREATE NAMESPACE app").await;
    s.ok(
        &admin,
        "CREATE SHARED TABLE app.t (id BIGINT PRIMARY KEY, n INT NOT NULL, v TEXT NOT NULL) WITH (ACCESS_LEVEL = 'PUBLIC')",
    )
    .await;
    s.ok(
        &admin,
        "INSERT INTO app.t (id, n, v) VALUES (1000, 1, 'seed'), (1001, 2, 'seed')",
    )
    .await;
    // Writers start first, so subscriptions are made (and their initial data read) while
    // changes are being applied: the hand-off is under test.
    let mut writers = Vec::new();
    for w in 0..8i64 {
        let (s, token) = (s.clone(), admin.clone());
        writers.push(tokio::spawn(async move {
            for i in 0..60i64 {
                let id = w * 100 + i % 20;
                let sql = match i % 3 {
                    0 => format!(
                        "INSERT INTO app.t (id, n, v) VALUES ({id}, {}, 'w{w}')",
                        i % 7
                    ),
                    1 => format!(
                        "UPDATE app.t SET n = n + 1, v = 'u{i}' WHERE id = {}",
                        w * 100 + (i + 3) % 20
                    ),
                    _ => format!("DELETE FROM app.t WHERE id = {}", w * 100 + (i + 7) % 20),
                };
                // Duplicate inserts of a live key fail; that is part of the load.
                let _ = s.sql(&token, &sql).await;
            }
        }));
    }
    let filters = [
        "",
        " WHERE n % 2 = 0",
        " WHERE n % 2 = 1",
        " WHERE n > 3",
        " WHERE v LIKE 'u%'",
        // Guarded (indexed by n = 3 in the fan-out): rows enter and leave it as n changes.
        " WHERE n = 3 AND id >= 0",
    ];
    let mut conns = Vec::new();
    for c in 0..10 {
        let mut ws = connect(s.port, Some(&admin)).await;
        assert_eq!(next(&mut ws).await.expect("auth")["type"], "auth_success");
        let mut subs = Vec::new();
        for (k, f) in filters.iter().enumerate() {
            // The same SQL on every connection, under the same id on half of them: those
            // with the same filter get the same rows, encoded once per change set and
            // shared, each message carrying its own subscription's id.
            let id = if c % 2 == 0 {
                format!("s{k}")
            } else {
                format!("c{c}-s{k}")
            };
            send(
                &mut ws,
                json!({"type": "subscribe", "subscription": {"id": id,
                    "sql": format!("SELECT id, n, v FROM app.t{f}"), "options": {"batch_size": 10000}}}),
            )
            .await;
            subs.push((id, k));
        }
        conns.push((ws, subs));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for w in writers {
        w.await.expect("writer");
    }
    let mut want = std::collections::HashMap::new();
    for (k, filter) in filters.iter().enumerate() {
        let r = s
            .ok(
                &admin,
                &format!("SELECT id, n, v FROM app.t{filter} ORDER BY id"),
            )
            .await;
        want.insert(k, folddb_tests::rows(&r));
    }
    for (ws, subs) in &mut conns {
        let filter_of: std::collections::HashMap<String, usize> = subs.iter().cloned().collect();
        let converged = |views: &std::collections::HashMap<String, View>, others: &[Value]| {
            !others.is_empty()
                || views
                    .iter()
                    .all(|(id, v)| v.table(&["id", "n", "v"]) == want[&filter_of[id]])
        };
        let mut views: std::collections::HashMap<String, View> = subs
            .iter()
            .map(|(id, _)| (id.clone(), View::strict()))
            .collect();
        // Until every view is its SELECT (or, failing that, a minute has passed).
        let others = read_views_until(ws, &mut views, Duration::from_secs(60), converged).await;
        assert!(others.is_empty(), "{others:?}");
    }
}

#[tokio::test]
async fn the_cli_prints_a_live_query_as_it_changes() {
    let (_dir, s, admin) =
        app_with("CREATE USER TABLE app.todos (id BIGINT PRIMARY KEY, title TEXT)").await;
    s.ok(
        &admin,
        "INSERT INTO app.todos (id, title) VALUES (1, 'first')",
    )
    .await;
    let mut child = std::process::Command::new(folddb_tests::folddb_bin())
        .args(["subscribe", "--url", &s.url(""), "SELECT * FROM app.todos"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("folddb subscribe starts");
    let lines = folddb_tests::JsonLines::of(&mut child);
    let line = |lines: &folddb_tests::JsonLines| lines.next(Duration::from_secs(10));
    assert_eq!(line(&lines)["type"], "auth_success");
    assert_eq!(line(&lines)["type"], "subscription_ack");
    let batch = line(&lines);
    assert_eq!(batch["rows"][0]["title"], "first");
    s.ok(
        &admin,
        "INSERT INTO app.todos (id, title) VALUES (2, 'second')",
    )
    .await;
    let change = line(&lines);
    assert_eq!(
        (change["change_type"].as_str(), &change["rows"][0]["title"]),
        (Some("insert"), &json!("second"))
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test]
async fn system_live_lists_subscriptions_and_kill_closes_one() {
    let (_dir, s, admin) =
        app_with("CREATE USER TABLE app.t (id BIGINT PRIMARY KEY, v TEXT)").await;
    s.ok(&admin, "CREATE USER alice WITH PASSWORD 'alice-pass-1'")
        .await;
    let alice = s.login("alice", "alice-pass-1").await;
    let mut ws = connect(s.port, Some(&alice)).await;
    next(&mut ws).await.expect("auth");
    // Ten subscriptions per user; the eleventh is refused.
    for i in 0..11 {
        send(
            &mut ws,
            json!({"type": "subscribe", "subscription": {"id": format!("s{i}"), "sql": "SELECT * FROM app.t"}}),
        )
        .await;
        let m = next(&mut ws).await.expect("reply");
        if i < 10 {
            assert_eq!(m["type"], "subscription_ack", "{m}");
        } else {
            assert_eq!(m["code"], "SUBSCRIPTION_LIMIT_EXCEEDED", "{m}");
        }
    }
    for i in 1..10 {
        send(
            &mut ws,
            json!({"type": "unsubscribe", "subscription_id": format!("s{i}")}),
        )
        .await;
    }
    // A round trip: the server has handled the unsubscribes once this error is back.
    send(
        &mut ws,
        json!({"type": "subscribe", "subscription": {"id": "sync", "sql": "nonsense"}}),
    )
    .await;
    assert_eq!(next(&mut ws).await.expect("error")["code"], "INVALID_SQL");
    s.ok(&alice, "INSERT INTO app.t (id, v) VALUES (1, 'x')")
        .await;
    let m = next(&mut ws).await.expect("change");
    assert_eq!(
        (m["type"].as_str(), m["subscription_id"].as_str()),
        (Some("change"), Some("s0"))
    );
    let r = s
        .ok(
            &admin,
            "SELECT live_id, user_id, table_name, changes FROM system.live",
        )
        .await;
    let rows = folddb_tests::rows(&r);
    assert_eq!(rows.len(), 1, "{r}");
    assert_eq!(rows[0][1], "alice");
    assert_eq!(rows[0][2], "t");
    assert_eq!(rows[0][3], "1");
    let live_id = rows[0][0].as_str().unwrap_or("").to_owned();
    // Only dba and system may kill; the kill reaches the client.
    assert_eq!(
        s.fails(&alice, &format!("KILL LIVE QUERY '{live_id}'"))
            .await
            .0,
        403
    );
    let r = s.ok(&admin, &format!("KILL LIVE QUERY '{live_id}'")).await;
    assert_eq!(
        r["results"][0]["message"],
        format!("Live query killed: {live_id}")
    );
    let m = next(&mut ws).await.expect("told");
    assert_eq!(
        (m["type"].as_str(), m["subscription_id"].as_str()),
        (Some("error"), Some("s0"))
    );
    s.ok(&alice, "INSERT INTO app.t (id, v) VALUES (2, 'y')")
        .await;
    quiet(&mut ws).await;
    let r = s.ok(&admin, "SELECT COUNT(*) FROM system.live").await;
    assert_eq!(folddb_tests::rows(&r), vec![json!(["0"])]);
    assert_eq!(s.fails(&admin, "KILL LIVE QUERY 'nope'").await.0, 400);
}

#[tokio::test]
async fn subscribe_to_over_http_says_how_to_subscribe_over_the_socket() {
    let (_dir, s, admin) =
        app_with("CREATE USER TABLE app.t (id BIGINT PRIMARY KEY, v TEXT)").await;
    s.ok(
        &admin,
        "INSERT INTO app.t (id, v) VALUES (1, 'a'), (2, 'b')",
    )
    .await;
    let r = s
        .ok(
            &admin,
            "SUBSCRIBE TO app.t WHERE id > 1 OPTIONS (last_rows=5, batch_size=10)",
        )
        .await;
    let names: Vec<&str> = r["results"][0]["schema"]
        .as_array()
        .map(|a| a.iter().filter_map(|c| c["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(names, ["status", "ws_url", "subscription", "message"]);
    let row = &folddb_tests::rows(&r)[0];
    assert_eq!(row[0], "active");
    assert_eq!(row[1], json!(format!("ws://127.0.0.1:{}/v1/ws", s.port)));
    let sub: Value = serde_json::from_str(row[2].as_str().expect("json text")).expect("json");
    assert_eq!(sub["sql"], "SELECT * FROM app.t WHERE id > 1");
    assert_eq!(sub["options"], json!({"last_rows": 5, "batch_size": 10}));
    // The client then subscribes over /v1/ws with exactly that.
    let mut ws = connect(s.port, Some(&admin)).await;
    next(&mut ws).await.expect("auth");
    send(&mut ws, json!({"type": "subscribe", "subscription": sub})).await;
    assert_eq!(
        next(&mut ws).await.expect("ack")["type"],
        "subscription_ack"
    );
    let batch = next(&mut ws).await.expect("batch");
    let ids: Vec<&str> = batch["rows"]
        .as_array()
        .map(|a| a.iter().filter_map(|r| r["id"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(ids, ["2"]);
    // A subscription the socket would refuse is refused here too, and nothing changes.
    assert_eq!(
        s.fails(&admin, "SUBSCRIBE TO app.t ORDER BY id").await.0,
        400
    );
    assert_eq!(s.fails(&admin, "SUBSCRIBE TO app.missing").await.0, 400);
    assert_eq!(s.fails(&admin, "SUBSCRIBE TO t").await.0, 400);
}

#[tokio::test]
async fn projections_may_alias_columns_and_expressions() {
    let (_dir, s, admin) =
        app_with("CREATE USER TABLE app.t (id BIGINT PRIMARY KEY, n INT, v TEXT)").await;
    s.ok(&admin, "INSERT INTO app.t (id, n, v) VALUES (1, 2, 'a')")
        .await;
    let mut ws = connect(s.port, Some(&admin)).await;
    next(&mut ws).await.expect("auth");
    send(
        &mut ws,
        json!({"type": "subscribe", "subscription": {"id": "p",
            "sql": "SELECT app.t.id, v AS label, UPPER(v) AS shout, n * 10 AS tens FROM app.t WHERE n > 0",
            "options": {}}}),
    )
    .await;
    let ack = next(&mut ws).await.expect("ack");
    let names: Vec<&str> = ack["schema"]
        .as_array()
        .map(|a| a.iter().filter_map(|c| c["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(names, ["id", "label", "shout", "tens", "_seq"], "{ack}");
    let batch = next(&mut ws).await.expect("batch");
    let row = &batch["rows"][0];
    assert_eq!(
        (&row["id"], &row["label"], &row["shout"], &row["tens"]),
        (&json!("1"), &json!("a"), &json!("A"), &json!("20"))
    );
    s.ok(&admin, "UPDATE app.t SET v = 'b' WHERE id = 1").await;
    let m = next(&mut ws).await.expect("update");
    assert_eq!(m["change_type"], "update");
    assert_eq!(
        (&m["rows"][0]["shout"], &m["old_values"][0]["shout"]),
        (&json!("B"), &json!("A"))
    );
    s.ok(&admin, "INSERT INTO app.t (id, n, v) VALUES (2, 3, 'c')")
        .await;
    let m = next(&mut ws).await.expect("insert");
    assert_eq!(
        (&m["rows"][0]["tens"], &m["rows"][0]["label"]),
        (&json!("30"), &json!("c"))
    );
    // An unaliased expression has no name to key the rows by.
    send(
        &mut ws,
        json!({"type": "subscribe", "subscription": {"id": "q", "sql": "SELECT UPPER(v) FROM app.t"}}),
    )
    .await;
    assert_eq!(next(&mut ws).await.expect("error")["code"], "INVALID_SQL");
}

#[tokio::test]
async fn admins_watch_system_tables_and_users_may_not() {
    let (_dir, s, admin) =
        app_with("CREATE USER TABLE app.t (id BIGINT PRIMARY KEY, v TEXT)").await;
    s.ok(&admin, "CREATE USER carol WITH PASSWORD 'carol-pass-1'")
        .await;
    let carol = s.login("carol", "carol-pass-1").await;
    let sub = json!({"type": "subscribe", "subscription": {"id": "u",
        "sql": "SELECT user_id, role FROM system.users WHERE user_id LIKE 'c%'", "options": {}}});

    let mut ws = connect(s.port, Some(&carol)).await;
    next(&mut ws).await.expect("auth");
    send(&mut ws, sub.clone()).await;
    assert_eq!(next(&mut ws).await.expect("error")["code"], "UNAUTHORIZED");

    let mut ws = connect(s.port, Some(&admin)).await;
    next(&mut ws).await.expect("auth");
    send(&mut ws, sub).await;
    assert_eq!(
        next(&mut ws).await.expect("ack")["type"],
        "subscription_ack"
    );
    let batch = next(&mut ws).await.expect("batch");
    assert_eq!(batch["rows"], json!([{"user_id": "carol", "role": "user"}]));
    s.ok(&admin, "CREATE USER cid WITH PASSWORD 'cid-pass-1'")
        .await;
    let m = next(&mut ws).await.expect("insert");
    assert_eq!(
        (m["change_type"].as_str(), &m["rows"][0]["user_id"]),
        (Some("insert"), &json!("cid"))
    );
    s.ok(&admin, "ALTER USER carol SET ROLE service").await;
    let m = next(&mut ws).await.expect("update");
    assert_eq!(
        (
            m["change_type"].as_str(),
            &m["rows"][0]["role"],
            &m["old_values"][0]["role"]
        ),
        (Some("update"), &json!("service"), &json!("user"))
    );
}
