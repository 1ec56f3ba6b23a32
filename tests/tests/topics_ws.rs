//! Topic streams over `/v1/ws` (`realtime/PROTOCOL.md` §3), against the real binary: a
//! group's consumers are pushed claims of the group within the credit they grant, never the
//! same messages before the visibility timeout, acknowledge them with `topic_ack`, and get
//! what another consumer left unacknowledged once its claim expires; a stream without a
//! group reads from its position and follows new messages; bad requests are refused with
//! the connection carrying on.

use std::collections::BTreeSet;
use std::time::Duration;

use base64::Engine as _;
use folddb_tests::Server;
use folddb_tests::ws::{Ws, connect, next, next_within, quiet, send};
use serde_json::{Value, json};

/// Opens a connection as `token` and topic stream `consume` on it: the connection and the
/// server's answer.
async fn open(s: &Server, token: &str, consume: Value) -> (Ws, Value) {
    let mut ws = connect(s.port, Some(token)).await;
    assert_eq!(next(&mut ws).await.expect("auth")["type"], "auth_success");
    send(
        &mut ws,
        json!({"type": "topic_consume", "consume": consume}),
    )
    .await;
    let answer = next(&mut ws).await.expect("an answer");
    (ws, answer)
}

/// The next `topic_messages` of stream `id`: (offset, delivery count, the payload's `id`).
async fn batch(ws: &mut Ws, id: &str) -> Vec<(u64, u64, i64)> {
    let m = next_within(ws, Duration::from_secs(10))
        .await
        .expect("the connection stays open");
    assert_eq!(m["type"], "topic_messages", "{m}");
    assert_eq!(m["id"], id, "{m}");
    let msgs = m["messages"].as_array().expect("messages");
    assert!(!msgs.is_empty(), "an empty batch: {m}");
    let last = msgs.last().expect("a message")["offset"].as_u64();
    assert_eq!(m["next_offset"].as_u64(), last.map(|o| o + 1), "{m}");
    msgs.iter()
        .map(|x| {
            assert_eq!(x["topic_id"], "app.feed");
            assert_eq!(x["op"], "Insert");
            let payload = base64::engine::general_purpose::STANDARD
                .decode(x["payload"].as_str().expect("base64"))
                .expect("base64");
            let row: Value = serde_json::from_slice(&payload).expect("a JSON payload");
            let id: i64 = row["id"]
                .as_str()
                .expect("id as a string")
                .parse()
                .expect("id");
            assert_eq!(x["key"], id.to_string());
            (
                x["offset"].as_u64().expect("offset"),
                x["delivery_count"].as_u64().expect("delivery_count"),
                id,
            )
        })
        .collect()
}

/// Reads batches of stream `id` until `n` messages came.
async fn read(ws: &mut Ws, id: &str, n: usize) -> Vec<(u64, u64, i64)> {
    let mut got = Vec::new();
    while got.len() < n {
        got.extend(batch(ws, id).await);
    }
    assert_eq!(got.len(), n, "more than asked for: {got:?}");
    got
}

async fn insert(s: &Server, token: &str, ids: std::ops::Range<i64>) {
    let values: Vec<String> = ids.map(|i| format!("({i}, 'v{i}')")).collect();
    s.ok(
        token,
        &format!(
            "INSERT INTO app.events (id, v) VALUES {}",
            values.join(", ")
        ),
    )
    .await;
}

/// A server started with `env`, set up, with table `app.events` routed on INSERT into topic
/// `app.feed` of `partitions`: the data directory (kept while it runs), the server and a
/// DBA's token.
async fn with_feed(env: &[(&str, &str)], partitions: u32) -> (tempfile::TempDir, Server, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Server::start_with(&dir.path().join("data"), env).await;
    let admin = s.setup_and_login().await;
    s.ok_all(
        &admin,
        &[
            "CREATE NAMESPACE app",
            "CREATE SHARED TABLE app.events (id BIGINT PRIMARY KEY, v TEXT)",
            &format!("CREATE TOPIC app.feed PARTITIONS {partitions}"),
            "ALTER TOPIC app.feed ADD SOURCE app.events ON INSERT",
        ],
    )
    .await;
    (dir, s, admin)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_streams_are_pushed_claims_within_their_credit_and_ack_them() {
    let (_dir, s, admin) = with_feed(&[("FOLDDB_TOPIC_VISIBILITY_TIMEOUT_SECS", "2")], 1).await;
    let worker = s.user(&admin, "worker", "pw-worker-1", "service").await;
    insert(&s, &admin, 0..12).await;

    // Consumer A of group g: 5 of credit, so 5 messages, and nothing more until it grants.
    let (mut a, ready) = open(
        &s,
        &worker,
        json!({"id": "a", "topic_id": "app.feed", "group_id": "g", "start": "Earliest",
               "credit": 5}),
    )
    .await;
    assert_eq!(
        ready,
        json!({"type": "topic_ready", "id": "a", "topic_id": "app.feed", "group_id": "g",
               "partition_id": 0, "next_offset": 0, "credit": 5})
    );
    let got_a = read(&mut a, "a", 5).await;
    assert_eq!(
        got_a,
        (0..5).map(|i| (i as u64, 1, i)).collect::<Vec<_>>(),
        "in offset order, first deliveries"
    );
    quiet(&mut a).await;

    // Consumer B of the same group: the rest, never A's claim.
    let (mut b, ready) = open(
        &s,
        &worker,
        json!({"id": "b", "topic_id": "app.feed", "group_id": "g", "credit": 100}),
    )
    .await;
    assert_eq!(ready["type"], "topic_ready", "{ready}");
    let got_b = read(&mut b, "b", 7).await;
    assert_eq!(got_b, (5..12).map(|i| (i as u64, 1, i)).collect::<Vec<_>>());

    // New rows are pushed to whichever consumer has credit: B.
    insert(&s, &admin, 12..15).await;
    let live = read(&mut b, "b", 3).await;
    assert_eq!(live, (12..15).map(|i| (i as u64, 1, i)).collect::<Vec<_>>());
    quiet(&mut a).await;

    // A acknowledges its claim; B processes nothing and goes away.
    send(
        &mut a,
        json!({"type": "topic_ack", "id": "a", "from_offset": 0, "upto_offset": 4}),
    )
    .await;
    let acked = next(&mut a).await.expect("topic_acked");
    assert_eq!(
        acked,
        json!({"type": "topic_acked", "id": "a", "success": true, "acknowledged_offset": 4})
    );
    drop(b);

    // Once B's claims expire, A (granted credit) gets them again, counted as second
    // deliveries, and nothing it acknowledged.
    send(
        &mut a,
        json!({"type": "topic_credit", "id": "a", "credit": 100}),
    )
    .await;
    let mut again = Vec::new();
    while again.len() < 10 {
        let m = next_within(&mut a, Duration::from_secs(15))
            .await
            .expect("open");
        assert_eq!(m["type"], "topic_messages", "{m}");
        for x in m["messages"].as_array().expect("messages") {
            again.push((
                x["offset"].as_u64().expect("offset"),
                x["delivery_count"].clone(),
            ));
        }
    }
    assert_eq!(
        again,
        (5..15).map(|o| (o, json!(2))).collect::<Vec<_>>(),
        "redelivered after the visibility timeout"
    );
    // A cumulative ack of everything: the group's offset moves to the end.
    send(
        &mut a,
        json!({"type": "topic_ack", "id": "a", "upto_offset": 14}),
    )
    .await;
    let acked = next(&mut a).await.expect("topic_acked");
    assert_eq!(acked["acknowledged_offset"], 14, "{acked}");
    let offsets = s
        .ok(
            &admin,
            "SELECT last_acked_offset FROM system.topic_offsets WHERE topic_id = 'app.feed' \
             AND group_id = 'g'",
        )
        .await;
    assert_eq!(folddb_tests::rows(&offsets)[0][0], json!("14"), "{offsets}");

    // A stream without a group reads everything from where it starts, and follows.
    let (mut c, ready) = open(
        &s,
        &worker,
        json!({"id": "c", "topic_id": "app.feed", "start": {"Offset": 10}, "credit": 3}),
    )
    .await;
    assert_eq!(ready["next_offset"], 10, "{ready}");
    assert_eq!(ready["group_id"], Value::Null, "{ready}");
    let first: Vec<u64> = read(&mut c, "c", 3).await.iter().map(|m| m.0).collect();
    assert_eq!(first, vec![10, 11, 12]);
    quiet(&mut c).await;
    send(
        &mut c,
        json!({"type": "topic_credit", "id": "c", "credit": 1000}),
    )
    .await;
    let rest: Vec<u64> = read(&mut c, "c", 2).await.iter().map(|m| m.0).collect();
    assert_eq!(rest, vec![13, 14]);
    insert(&s, &admin, 15..16).await;
    assert_eq!(read(&mut c, "c", 1).await, vec![(15, 1, 15)]);
    // It claims nothing: the group's consumer A gets offset 15 too.
    assert_eq!(read(&mut a, "a", 1).await, vec![(15, 1, 15)]);

    // Dropping the topic ends its streams with an error; the connection carries on.
    s.ok(&admin, "DROP TOPIC app.feed").await;
    let m = next_within(&mut c, Duration::from_secs(10))
        .await
        .expect("open");
    assert_eq!(m["type"], "error", "{m}");
    assert_eq!(m["subscription_id"], "c");
    assert_eq!(m["code"], "TOPIC_NOT_FOUND", "{m}");
    send(
        &mut c,
        json!({"type": "topic_credit", "id": "c", "credit": 1}),
    )
    .await;
    let m = next(&mut c).await.expect("open");
    assert_eq!(m["code"], "STREAM_NOT_FOUND", "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_topic_streams_are_refused_and_the_connection_carries_on() {
    let (_dir, s, admin) = with_feed(&[], 2).await;
    let user = s.user(&admin, "alice", "pw-alice-1", "user").await;
    let (_ws, refused) = open(&s, &user, json!({"id": "x", "topic_id": "app.feed"})).await;
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(refused["code"], "PERMISSION_DENIED", "{refused}");

    let mut ws = connect(s.port, Some(&admin)).await;
    next(&mut ws).await.expect("auth");
    for (consume, code) in [
        (
            json!({"id": "x", "topic_id": "app.nope"}),
            "TOPIC_NOT_FOUND",
        ),
        (
            json!({"id": "x", "topic_id": "app.feed", "partition_id": 2}),
            "INVALID_CONSUME",
        ),
        (
            json!({"id": "x", "topic_id": "app.feed", "partition_id": -1}),
            "INVALID_CONSUME",
        ),
        (
            json!({"id": "x", "topic_id": "app.feed", "start": {"Offset": 99}}),
            "INVALID_CONSUME",
        ),
        (
            json!({"id": "x", "topic_id": "app.feed", "start": "soon"}),
            "INVALID_CONSUME",
        ),
        (
            json!({"id": "x", "topic_id": "app.feed", "group_id": ""}),
            "INVALID_CONSUME",
        ),
        (
            json!({"id": " ", "topic_id": "app.feed"}),
            "INVALID_CONSUME",
        ),
    ] {
        send(
            &mut ws,
            json!({"type": "topic_consume", "consume": consume}),
        )
        .await;
        let m = next(&mut ws).await.expect("the connection stays open");
        assert_eq!(m["type"], "error", "{consume}: {m}");
        assert_eq!(m["code"], code, "{consume}: {m}");
    }
    // One that opens; the same id again is refused.
    send(
        &mut ws,
        json!({"type": "topic_consume", "consume": {"id": "ok", "topic_id": "app.feed",
               "partition_id": 1}}),
    )
    .await;
    assert_eq!(next(&mut ws).await.expect("open")["type"], "topic_ready");
    send(
        &mut ws,
        json!({"type": "topic_consume", "consume": {"id": "ok", "topic_id": "app.feed"}}),
    )
    .await;
    assert_eq!(
        next(&mut ws).await.expect("open")["code"],
        "INVALID_CONSUME"
    );
    // A stream without a group has nothing to acknowledge; bad actions and offsets.
    send(
        &mut ws,
        json!({"type": "topic_ack", "id": "ok", "upto_offset": 0}),
    )
    .await;
    let m = next(&mut ws).await.expect("open");
    assert_eq!(
        (m["type"].clone(), m["success"].clone(), m["code"].clone()),
        (json!("topic_acked"), json!(false), json!("INVALID_ACK")),
        "{m}"
    );
    send(
        &mut ws,
        json!({"type": "topic_consume", "consume": {"id": "g", "topic_id": "app.feed",
               "group_id": "g"}}),
    )
    .await;
    assert_eq!(next(&mut ws).await.expect("open")["type"], "topic_ready");
    for ack in [
        json!({"type": "topic_ack", "id": "g", "upto_offset": -1}),
        json!({"type": "topic_ack", "id": "g", "upto_offset": 0, "action": "later"}),
    ] {
        send(&mut ws, ack.clone()).await;
        let m = next(&mut ws).await.expect("open");
        assert_eq!(m["success"], false, "{ack}: {m}");
        assert_eq!(m["code"], "INVALID_ACK", "{ack}: {m}");
    }
    send(
        &mut ws,
        json!({"type": "topic_ack", "id": "nope", "upto_offset": 0}),
    )
    .await;
    assert_eq!(
        next(&mut ws).await.expect("open")["code"],
        "STREAM_NOT_FOUND"
    );
    // Nothing was consumed or acknowledged by any of it.
    let offsets = s.ok(&admin, "SELECT * FROM system.topic_offsets").await;
    assert!(folddb_tests::rows(&offsets).is_empty(), "{offsets}");
    // Still serving: a message routed to partition 1 or 0 reaches the open streams.
    let ids: BTreeSet<i64> = (0..20).collect();
    let values: Vec<String> = ids.iter().map(|i| format!("({i}, 'v')")).collect();
    s.ok(
        &admin,
        &format!(
            "INSERT INTO app.events (id, v) VALUES {}",
            values.join(", ")
        ),
    )
    .await;
    let m = next_within(&mut ws, Duration::from_secs(10))
        .await
        .expect("open");
    assert_eq!(m["type"], "topic_messages", "{m}");
}

/// `folddb consume`: a worker of a group prints each message with its payload decoded, and
/// acknowledges what it printed, within the connection's message rate even when messages
/// come one at a time; a second run goes on after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folddb_consume_prints_messages_and_acknowledges_them() {
    let (dir, s, admin) = with_feed(&[], 1).await;
    insert(&s, &admin, 0..3).await;
    let errors = dir.path().join("consume.err");
    let worker = |from: &str, window: &str| {
        let mut child = std::process::Command::new(folddb_tests::folddb_bin())
            .args(["consume", "--url", &s.url(""), "--topic", "app.feed"])
            .args(["--group", "workers", "--from", from, "--window", window])
            .args([
                "--user",
                folddb_tests::DBA.0,
                "--password",
                folddb_tests::DBA.1,
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::fs::File::create(&errors).expect("stderr file"))
            .spawn()
            .expect("folddb consume starts");
        let lines = folddb_tests::JsonLines::of(&mut child);
        (child, lines)
    };
    let acked = "SELECT last_acked_offset FROM system.topic_offsets WHERE group_id = 'workers'";
    let acked_to = |offset: u64| {
        let (s, admin) = (&s, &admin);
        async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while folddb_tests::rows(&s.ok(admin, acked).await) != vec![json!([offset.to_string()])]
            {
                assert!(
                    std::time::Instant::now() < deadline,
                    "{offset} not acknowledged"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let (mut child, lines) = worker("earliest", "4");
    let line = |lines: &folddb_tests::JsonLines| lines.next(Duration::from_secs(30));
    for i in 0..3 {
        let m = line(&lines);
        assert_eq!(m["offset"], i, "{m}");
        assert_eq!(m["payload"]["id"], i.to_string(), "decoded: {m}");
        assert_eq!(m["payload"]["v"], format!("v{i}"), "{m}");
    }
    // New rows reach it as they are written, past its window of 4.
    insert(&s, &admin, 3..10).await;
    for i in 3..10 {
        assert_eq!(line(&lines)["offset"], i);
    }
    // What it printed is acknowledged.
    acked_to(9).await;
    child.kill().expect("kill");
    let _ = child.wait();
    // The next worker of the group goes on after it, whatever --from says; messages that
    // come one at a time are acknowledged together, never past the message rate limit.
    insert(&s, &admin, 10..11).await;
    let (mut child, lines) = worker("earliest", "100");
    assert_eq!(line(&lines)["offset"], 10);
    for i in 11..161 {
        insert(&s, &admin, i..i + 1).await;
    }
    for i in 11..161 {
        assert_eq!(line(&lines)["offset"], i);
    }
    acked_to(160).await;
    child.kill().expect("kill");
    let _ = child.wait();
    let stderr = std::fs::read_to_string(&errors).expect("stderr");
    assert!(!stderr.contains("RATE_LIMIT"), "{stderr}");
}
