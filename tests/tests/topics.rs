//! Topics (#19, API.md 1.10, 3.12, 4.5), against the real binary: routes from table changes
//! to gap-free partition offsets, folded with the change itself; SQL `CONSUME` / `ACK` and
//! the HTTP consume / ack API; consumer groups' offsets; a long-poll; what survives a
//! SIGKILL and a replay of the log; bad input refused with nothing changed.

use std::time::{Duration, Instant};

use base64::Engine as _;
use folddb_tests::{Server, rows};
use serde_json::{Value, json};

/// The topic messages of an HTTP consume, as (offset, op, key, payload JSON, user).
fn messages(answer: &Value) -> Vec<(u64, String, String, Value, Option<String>)> {
    answer["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| {
            let payload = base64::engine::general_purpose::STANDARD
                .decode(m["payload"].as_str().expect("base64 payload"))
                .expect("base64");
            (
                m["offset"].as_u64().expect("offset"),
                m["op"].as_str().expect("op").to_owned(),
                m["key"].as_str().expect("key").to_owned(),
                serde_json::from_slice(&payload).expect("a JSON payload"),
                m["user"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

async fn consume(s: &Server, token: &str, body: Value) -> (u16, Value) {
    s.post("/v1/api/topics/consume", Some(token), &body).await
}

/// A server started with `env` on a fresh data directory, set up, with `sqls` run: the
/// directory (kept while it runs), the server and a DBA's token.
async fn started(env: &[(&str, &str)], sqls: &[&str]) -> (tempfile::TempDir, Server, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Server::start_with(&dir.path().join("data"), env).await;
    let token = s.setup_and_login().await;
    s.ok_all(&token, sqls).await;
    (dir, s, token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_fold_messages_with_their_changes_and_groups_consume_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let s = Server::start(&data).await;
    let token = s.setup_and_login().await;
    s.ok_all(
        &token,
        &[
            "CREATE NAMESPACE app",
            "CREATE SHARED TABLE app.messages (id BIGINT PRIMARY KEY, body TEXT, n INT)",
            "CREATE USER TABLE app.notes (id BIGINT PRIMARY KEY, v TEXT)",
            "CREATE TOPIC app.new_messages",
            "ALTER TOPIC app.new_messages ADD SOURCE app.messages ON INSERT",
            "ALTER TOPIC app.new_messages ADD SOURCE app.messages ON UPDATE WITH (payload = 'diff')",
            "ALTER TOPIC app.new_messages ADD SOURCE app.messages ON DELETE WITH (payload = 'key')",
            "CREATE TOPIC app.filtered",
            "ALTER TOPIC app.filtered ADD SOURCE app.messages ON INSERT \
             WHERE (n > 1 AND body <> 'skip') OR body IN ('always')",
            "CREATE TOPIC app.notes_feed PARTITIONS 4",
            "ALTER TOPIC app.notes_feed ADD SOURCE app.notes ON INSERT",
        ],
    )
    .await;

    // Bad input: each refused, and nothing changes.
    for (sql, needle) in [
        (
            "ALTER TOPIC app.new_messages ADD SOURCE app.messages ON INSERT",
            "already exists",
        ),
        (
            "ALTER TOPIC app.nope ADD SOURCE app.messages ON INSERT",
            "not found",
        ),
        (
            "ALTER TOPIC app.new_messages ADD SOURCE app.missing ON INSERT",
            "does not exist",
        ),
        (
            "ALTER TOPIC app.filtered ADD SOURCE app.messages ON INSERT WHERE nope > 1",
            "does not exist",
        ),
        (
            "ALTER TOPIC app.filtered ADD SOURCE app.messages ON INSERT WHERE upper(body) = 'A'",
            "Route filters",
        ),
        (
            "ALTER TOPIC app.filtered ADD SOURCE app.messages ON INSERT WHERE n > 'many'",
            "Route filter on column 'n'",
        ),
        ("CREATE TOPIC app.new_messages", "already exists"),
        ("CREATE TOPIC app.t0 PARTITIONS 0", "PARTITIONS"),
        ("CONSUME FROM app.new_messages LIMIT -1", "negative"),
        ("CONSUME FROM app.new_messages LIMIT 0", "LIMIT"),
        ("CONSUME FROM app.nope", "not found"),
        (
            "ACK app.new_messages GROUP 'g' UPTO OFFSET 0",
            "out of range",
        ),
    ] {
        let (_, body) = s.sql(&token, sql).await;
        assert_eq!(body["status"], "error", "{sql}: {body}");
        let message = body["error"]["message"].as_str().unwrap_or("");
        assert!(message.contains(needle), "{sql}: {body}");
    }

    // Writes: three inserts, an update, a delete, and a change no route takes.
    s.ok_all(
        &token,
        &[
            "INSERT INTO app.messages (id, body, n) VALUES (1, 'hello', 1), (2, 'world', 2)",
            "INSERT INTO app.messages (id, body, n) VALUES (3, 'again', 3)",
            "UPDATE app.messages SET n = 20 WHERE id = 2",
            "DELETE FROM app.messages WHERE id = 1",
            "INSERT INTO app.notes (id, v) VALUES (1, 'mine'), (2, 'also'), (3, 'more')",
        ],
    )
    .await;

    // SQL CONSUME from the first offset: each change once, in log order, offsets 0..5.
    let answer = s
        .ok(&token, "CONSUME FROM app.new_messages FROM EARLIEST")
        .await;
    let got: Vec<(String, String, String)> = rows(&answer)
        .iter()
        .map(|r| {
            (
                r[2].as_str().expect("offset").to_owned(),
                r[3].as_str().expect("key").to_owned(),
                r[7].as_str().expect("op").to_owned(),
            )
        })
        .collect();
    let want = [
        ("0", "1", "insert"),
        ("1", "2", "insert"),
        ("2", "3", "insert"),
        ("3", "2", "update"),
        ("4", "1", "delete"),
    ]
    .map(|(a, b, c)| (a.to_owned(), b.to_owned(), c.to_owned()));
    assert_eq!(got, want, "{answer}");

    // A route's WHERE: only the rows it holds for.
    let filtered = s
        .ok(&token, "CONSUME FROM app.filtered FROM EARLIEST")
        .await;
    let keys: Vec<Value> = rows(&filtered).iter().map(|r| r[3].clone()).collect();
    assert_eq!(keys, [json!("2"), json!("3")], "{filtered}");

    // HTTP: a group reads two at a time; payloads as the routes say.
    let (status, first) = consume(
        &s,
        &token,
        json!({"topic_id": "app.new_messages", "group_id": "workers", "start": "Earliest",
               "limit": 2}),
    )
    .await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["has_more"], true);
    assert_eq!(first["next_offset"], 2);
    let got = messages(&first);
    assert_eq!(got.len(), 2);
    let seq0 = got[0].3["_seq"].as_str().expect("_seq").to_owned();
    assert_eq!(
        got[0].3,
        json!({"id": "1", "body": "hello", "n": 1, "_seq": seq0, "_table": "app.messages"})
    );
    assert_eq!(
        (got[0].0, got[0].1.as_str(), got[0].4.clone()),
        (0, "Insert", None)
    );
    // Another consumer of the group gets the next messages: the first two are claimed.
    let (_, second) = consume(
        &s,
        &token,
        json!({"topic_id": "app.new_messages", "group_id": "workers", "start": "Earliest",
               "limit": 2}),
    )
    .await;
    let got = messages(&second);
    let offsets: Vec<u64> = got.iter().map(|m| m.0).collect();
    assert_eq!(offsets, [2, 3], "{second}");
    let seq3 = got[1].3["_seq"].as_str().expect("_seq").to_owned();
    assert_eq!(
        got[1].3,
        json!({"id": "2", "n": 20, "_seq": seq3, "_table": "app.messages"}),
        "an update's diff: the key and what changed"
    );
    assert_eq!(second["messages"][0]["delivery_count"], 1);
    let (status, acked) = s
        .post(
            "/v1/api/topics/ack",
            Some(&token),
            &json!({"topic_id": "app.new_messages", "group_id": "workers", "upto_offset": 1}),
        )
        .await;
    assert_eq!(status, 200, "{acked}");
    assert_eq!(acked, json!({"success": true, "acknowledged_offset": 1}));
    // Acks never regress.
    let (_, lower) = s
        .post(
            "/v1/api/topics/ack",
            Some(&token),
            &json!({"topic_id": "app.new_messages", "group_id": "workers", "upto_offset": 0}),
        )
        .await;
    assert_eq!(lower["acknowledged_offset"], 1, "{lower}");
    let (_, rest) = consume(
        &s,
        &token,
        json!({"topic_id": "app.new_messages", "group_id": "workers", "limit": 10}),
    )
    .await;
    assert_eq!(rest["has_more"], false);
    assert_eq!(rest["next_offset"], 5);
    let got = messages(&rest);
    let offsets: Vec<u64> = got.iter().map(|m| m.0).collect();
    assert_eq!(offsets, [4], "2 and 3 are another consumer's claim: {rest}");
    assert_eq!(got[0].3, json!({"id": "1"}), "a delete's key payload");
    assert_eq!(got[0].1, "Delete");

    // A USER table's messages name their owner; keys spread over the partitions, each
    // partition's offsets gap-free from 0.
    let mut seen = Vec::new();
    for partition in 0..4 {
        let (status, answer) = consume(
            &s,
            &token,
            json!({"topic_id": "app.notes_feed", "group_id": "g", "start": "Earliest",
                   "partition_id": partition}),
        )
        .await;
        assert_eq!(status, 200, "{answer}");
        for (i, m) in messages(&answer).into_iter().enumerate() {
            assert_eq!(m.0, i as u64, "partition {partition}: {answer}");
            assert_eq!(m.4.as_deref(), Some("admin"));
            seen.push(m.2);
        }
    }
    seen.sort();
    assert_eq!(seen, ["1", "2", "3"]);

    // The HTTP API's bad input.
    let service = s.user(&token, "svc", "pw-svc-123", "service").await;
    let plain = s.user(&token, "alice", "pw-alice-123", "user").await;
    for (who, body, status, code) in [
        (
            &plain,
            json!({"topic_id": "app.new_messages", "group_id": "g"}),
            403,
            "FORBIDDEN",
        ),
        (
            &service,
            json!({"topic_id": "app.nope", "group_id": "g"}),
            404,
            "NOT_FOUND",
        ),
        (
            &service,
            json!({"topic_id": "app.new_messages", "group_id": "g", "limit": -5}),
            400,
            "INVALID_INPUT",
        ),
        (
            &service,
            json!({"topic_id": "app.new_messages", "group_id": "g", "start": {"Offset": 99}}),
            400,
            "INVALID_INPUT",
        ),
        (
            &service,
            json!({"topic_id": "app.new_messages", "group_id": "g", "partition_id": 3}),
            400,
            "INVALID_INPUT",
        ),
        (
            &service,
            json!({"topic_id": "app.new_messages"}),
            400,
            "INVALID_INPUT",
        ),
    ] {
        let (got, answer) = consume(&s, who, body.clone()).await;
        assert_eq!(
            (got, answer["code"].as_str()),
            (status, Some(code)),
            "{body}: {answer}"
        );
    }
    let (status, answer) = s
        .post(
            "/v1/api/topics/ack",
            Some(&service),
            &json!({"topic_id": "app.new_messages", "group_id": "workers", "upto_offset": 5}),
        )
        .await;
    assert_eq!(status, 400, "an ack past the last offset: {answer}");
    // A plain user may not create topics either.
    let (status, _) = s.sql(&plain, "CREATE TOPIC app.mine").await;
    assert_ne!(status, 200);
    // The service account consumes; the group's offset is in system.topic_offsets.
    let (status, _) = consume(
        &s,
        &service,
        json!({"topic_id": "app.new_messages", "group_id": "workers"}),
    )
    .await;
    assert_eq!(status, 200);
    let offsets = s
        .ok(
            &token,
            "SELECT topic_id, group_id, partition_id, last_acked_offset, lag \
             FROM system.topic_offsets ORDER BY topic_id, group_id",
        )
        .await;
    assert_eq!(
        rows(&offsets),
        vec![json!(["app.new_messages", "workers", 0, "1", "3"])],
        "{offsets}"
    );
    // The same lag, and each partition's messages, as metrics.
    let metrics = s
        .client
        .get(s.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("folddb_topic_group_lag{")
                && l.contains("group=\"workers\"")
                && l.ends_with(" 3")),
        "{metrics}"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("folddb_topic_messages{")
                && l.contains("topic=\"app.new_messages\"")
                && l.ends_with(" 5")),
        "{metrics}"
    );
    let topics = s
        .ok(
            &token,
            "SELECT topic_id, partitions, routes FROM system.topics ORDER BY topic_id",
        )
        .await;
    let listed = rows(&topics);
    assert_eq!(listed.len(), 3, "{topics}");
    assert_eq!(listed[2][1], json!(4));
    assert!(
        listed[0][2]
            .as_str()
            .is_some_and(|r| r
                .contains("\"where\":\"( n > 1 AND body <> 'skip' ) OR body IN ( 'always' )\"")),
        "{topics}"
    );
    assert!(
        listed[1][2]
            .as_str()
            .is_some_and(|r| r.contains("\"payload\":\"diff\"")),
        "{topics}"
    );

    // A long-poll returns as soon as a message arrives.
    let poll = {
        let (url, token) = (s.url("/v1/api/topics/consume"), token.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            let answer: Value = reqwest::Client::new()
                .post(url)
                .bearer_auth(token)
                .json(
                    &json!({"topic_id": "app.new_messages", "group_id": "poller",
                              "timeout_seconds": 30}),
                )
                .send()
                .await
                .expect("sent")
                .json()
                .await
                .expect("JSON");
            (answer, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    s.ok(
        &token,
        "INSERT INTO app.messages (id, body, n) VALUES (4, 'late', 4)",
    )
    .await;
    let (answer, waited) = poll.await.expect("the poll");
    let got = messages(&answer);
    assert_eq!(got.len(), 1, "{answer}");
    assert_eq!((got[0].0, got[0].2.as_str()), (5, "4"));
    assert!(waited < Duration::from_secs(20), "{waited:?}");

    // SIGKILL: every message is there after the restart, at the same offsets.
    let before = s
        .ok(&token, "CONSUME FROM app.new_messages FROM EARLIEST")
        .await;
    s.sigkill();
    drop(s);
    let s = Server::start(&data).await;
    let token = s.setup_and_login().await;
    let after = s
        .ok(&token, "CONSUME FROM app.new_messages FROM EARLIEST")
        .await;
    assert_eq!(rows(&after), rows(&before));
    assert_eq!(rows(&after).len(), 6);

    // SQL CONSUME with a group acknowledges what it returned.
    let first = s
        .ok(
            &token,
            "CONSUME FROM app.new_messages GROUP 'sql' FROM EARLIEST LIMIT 4",
        )
        .await;
    assert_eq!(rows(&first).len(), 4);
    let next = s
        .ok(
            &token,
            "CONSUME FROM app.new_messages GROUP 'sql' FROM EARLIEST",
        )
        .await;
    let offsets: Vec<Value> = rows(&next).iter().map(|r| r[2].clone()).collect();
    assert_eq!(offsets, [json!("4"), json!("5")]);

    // CLEAR TOPIC drops the messages; offsets go on. DROP TOPIC removes it.
    s.ok(&token, "CLEAR TOPIC app.new_messages").await;
    assert!(
        rows(
            &s.ok(&token, "CONSUME FROM app.new_messages FROM EARLIEST")
                .await
        )
        .is_empty()
    );
    s.ok(
        &token,
        "INSERT INTO app.messages (id, body, n) VALUES (5, 'after', 5)",
    )
    .await;
    let cleared = s
        .ok(&token, "CONSUME FROM app.new_messages FROM EARLIEST")
        .await;
    assert_eq!(rows(&cleared)[0][2], json!("6"));
    s.ok(&token, "DROP TOPIC app.notes_feed").await;
    let (_, body) = s.sql(&token, "CONSUME FROM app.notes_feed").await;
    assert_eq!(body["status"], "error");

    // A replay of the log rebuilds the same topic, offset for offset.
    let want = s
        .ok(&token, "CONSUME FROM app.new_messages FROM EARLIEST")
        .await;
    s.stop();
    let into = dir.path().join("replayed");
    folddb_tests::replay(&data.join("log"), &into, None);
    let s = Server::start(&into).await;
    let token = s.setup_and_login().await;
    let got = s
        .ok(&token, "CONSUME FROM app.new_messages FROM EARLIEST")
        .await;
    assert_eq!(rows(&got), rows(&want));
}

/// Eight clients insert into a routed table while the server is SIGKILLed: after the
/// restart every row has its message and every message its row, each acknowledged insert
/// among them, at offsets 0, 1, 2, … with no gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sigkill_under_load_loses_no_message_and_leaves_no_gap() {
    use std::collections::BTreeSet;
    use std::sync::{Arc, Mutex};

    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let s = Server::start(&data).await;
    let token = s.setup_and_login().await;
    s.ok_all(
        &token,
        &[
            "CREATE NAMESPACE app",
            "CREATE SHARED TABLE app.events (id BIGINT PRIMARY KEY, client INT)",
            "CREATE TOPIC app.events_feed",
            "ALTER TOPIC app.events_feed ADD SOURCE app.events ON INSERT",
        ],
    )
    .await;
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let mut clients = Vec::new();
    for c in 0..8i64 {
        let (url, token, acked, http) = (
            s.url("/v1/api/sql"),
            token.clone(),
            acked.clone(),
            s.client.clone(),
        );
        clients.push(tokio::spawn(async move {
            for n in 0..100_000i64 {
                let id = c * 1_000_000 + n;
                let sql = format!("INSERT INTO app.events (id, client) VALUES ({id}, {c})");
                match http
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&json!({ "sql": sql }))
                    .send()
                    .await
                {
                    Ok(r) if r.status().is_success() => {
                        acked.lock().expect("lock").insert(id.to_string());
                    }
                    _ => return,
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    s.kill();
    for c in clients {
        c.await.expect("client");
    }
    let acked = acked.lock().expect("lock").clone();
    assert!(acked.len() > 50, "too few writes: {}", acked.len());

    let s = Server::start(&data).await;
    let token = s.setup_and_login().await;
    let mut keys = Vec::new();
    let mut next = 0u64;
    loop {
        let (status, answer) = consume(
            &s,
            &token,
            json!({"topic_id": "app.events_feed", "group_id": "check",
                   "start": {"Offset": next}, "limit": 10000}),
        )
        .await;
        assert_eq!(status, 200, "{answer}");
        let got = messages(&answer);
        for m in &got {
            assert_eq!(
                m.0,
                next + (keys.len() as u64 - next),
                "a gap before {}",
                m.0
            );
            keys.push(m.2.clone());
        }
        next = answer["next_offset"].as_u64().expect("next_offset");
        assert_eq!(next, keys.len() as u64);
        if got.is_empty() {
            break;
        }
    }
    let unique: BTreeSet<String> = keys.iter().cloned().collect();
    assert_eq!(unique.len(), keys.len(), "a row routed twice");
    let stored: BTreeSet<String> = rows(&s.ok(&token, "SELECT id FROM app.events").await)
        .iter()
        .map(|r| r[0].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(
        unique, stored,
        "every row has its message, every message its row"
    );
    let lost: Vec<&String> = acked.difference(&unique).collect();
    assert!(
        lost.is_empty(),
        "acknowledged inserts without a message: {lost:?}"
    );
}

/// Four consumers share a group; one takes a batch and dies without acknowledging it. Each
/// of the others acknowledges exactly the messages it was sent. Once the visibility timeout
/// passes, the dead consumer's messages go to the others, as second deliveries: every
/// message is processed at least once, and the group's offset reaches the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_group_redelivers_what_a_dead_consumer_held_once_its_claim_expires() {
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::{Arc, Mutex};

    let (_dir, s, token) = started(
        &[("FOLDDB_TOPIC_VISIBILITY_TIMEOUT_SECS", "2")],
        &[
            "CREATE NAMESPACE app",
            "CREATE SHARED TABLE app.jobs (id BIGINT PRIMARY KEY, what TEXT)",
            "CREATE TOPIC app.work",
            "ALTER TOPIC app.work ADD SOURCE app.jobs ON INSERT WITH (payload = 'key')",
        ],
    )
    .await;
    for batch in 0..10 {
        let values: Vec<String> = (0..10)
            .map(|i| format!("({}, 'job')", batch * 10 + i))
            .collect();
        s.ok(
            &token,
            &format!(
                "INSERT INTO app.jobs (id, what) VALUES {}",
                values.join(", ")
            ),
        )
        .await;
    }
    let body = |extra: Value| {
        let mut b = json!({"topic_id": "app.work", "group_id": "workers", "start": "Earliest",
                           "limit": 5});
        if let (Some(b), Some(e)) = (b.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        b
    };

    // The consumer that dies: it takes a batch and never acknowledges it.
    let (_, taken) = consume(&s, &token, body(json!({}))).await;
    let dead: BTreeSet<String> = messages(&taken).into_iter().map(|m| m.2).collect();
    assert_eq!(dead.len(), 5, "{taken}");

    let processed: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let mut consumers = Vec::new();
    for _ in 0..3 {
        let (url, ack_url, token, http, processed) = (
            s.url("/v1/api/topics/consume"),
            s.url("/v1/api/topics/ack"),
            token.clone(),
            s.client.clone(),
            processed.clone(),
        );
        let request = body(json!({"timeout_seconds": 1}));
        consumers.push(tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            while processed.lock().expect("lock").len() < 100 && Instant::now() < deadline {
                let answer: Value = http
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&request)
                    .send()
                    .await
                    .expect("sent")
                    .json()
                    .await
                    .expect("JSON");
                let got = messages(&answer);
                let (Some(first), Some(last)) = (got.first(), got.last()) else {
                    continue;
                };
                for (m, raw) in got.iter().zip(answer["messages"].as_array().expect("list")) {
                    let count = raw["delivery_count"].as_u64().expect("delivery_count");
                    *processed
                        .lock()
                        .expect("lock")
                        .entry(m.2.clone())
                        .or_default() += count;
                }
                let acked = http
                    .post(&ack_url)
                    .bearer_auth(&token)
                    .json(&json!({"topic_id": "app.work", "group_id": "workers",
                                  "from_offset": first.0, "upto_offset": last.0}))
                    .send()
                    .await
                    .expect("sent");
                assert_eq!(acked.status(), 200);
            }
        }));
    }
    for c in consumers {
        c.await.expect("consumer");
    }
    let processed = processed.lock().expect("lock").clone();
    let all: BTreeSet<String> = (0..100).map(|i: i32| i.to_string()).collect();
    assert_eq!(
        processed.keys().cloned().collect::<BTreeSet<_>>(),
        all,
        "every message processed"
    );
    for key in &dead {
        assert_eq!(
            processed.get(key),
            Some(&2),
            "{key}: the dead consumer's messages come again, as second deliveries"
        );
    }
    let offsets = s
        .ok(
            &token,
            "SELECT last_acked_offset, lag FROM system.topic_offsets WHERE group_id = 'workers'",
        )
        .await;
    assert_eq!(rows(&offsets), vec![json!(["99", "0"])]);
}

/// A message sent `max_deliveries` times without an ack goes to the dead-letter topic
/// instead of a further delivery; REJECT sends one there at once; RELEASE makes one
/// available again at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_max_deliveries_or_rejected_a_message_goes_to_the_dead_letter_topic() {
    let (_dir, s, token) = started(
        &[("FOLDDB_TOPIC_VISIBILITY_TIMEOUT_SECS", "1")],
        &[
            "CREATE NAMESPACE app",
            "CREATE SHARED TABLE app.jobs (id BIGINT PRIMARY KEY, what TEXT)",
            "CREATE TOPIC app.q WITH (max_deliveries = 2)",
            "ALTER TOPIC app.q ADD SOURCE app.jobs ON INSERT WITH (payload = 'key')",
            "INSERT INTO app.jobs (id, what) VALUES (1, 'a'), (2, 'b'), (3, 'c'), (4, 'd')",
        ],
    )
    .await;
    let one = json!({"topic_id": "app.q", "group_id": "g", "start": "Earliest", "limit": 1});
    let take = || async {
        let (status, answer) = consume(&s, &token, one.clone()).await;
        assert_eq!(status, 200, "{answer}");
        answer["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .map(|m| {
                (
                    m["offset"].as_u64().expect("offset"),
                    m["delivery_count"].as_u64().expect("count"),
                )
            })
            .collect::<Vec<_>>()
    };
    // Offset 0 is sent twice (its claim expiring in between), then no more.
    assert_eq!(take().await, [(0, 1)]);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(take().await, [(0, 2)]);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(
        take().await,
        [(1, 1)],
        "offset 0 went to the dead-letter topic"
    );
    // REJECT offset 1; RELEASE offset 2 and it comes again at once.
    s.ok(&token, "REJECT app.q GROUP 'g' OFFSET 1").await;
    assert_eq!(take().await, [(2, 1)]);
    s.ok(&token, "RELEASE app.q GROUP 'g' OFFSET 2").await;
    assert_eq!(take().await, [(2, 2)]);
    let (status, acked) = s
        .post(
            "/v1/api/topics/ack",
            Some(&token),
            &json!({"topic_id": "app.q", "group_id": "g", "upto_offset": 2, "action": "accept"}),
        )
        .await;
    assert_eq!(
        (status, &acked["acknowledged_offset"]),
        (200, &json!(2)),
        "{acked}"
    );
    let (status, bad) = s
        .post(
            "/v1/api/topics/ack",
            Some(&token),
            &json!({"topic_id": "app.q", "group_id": "g", "upto_offset": 3, "action": "drop"}),
        )
        .await;
    assert_eq!(status, 400, "{bad}");
    // Offset 3 was never sent to the group: it cannot be settled, and nothing changes.
    let (status, bad) = s.sql(&token, "REJECT app.q GROUP 'g' OFFSET 3").await;
    assert_eq!(status, 400, "{bad}");
    assert!(
        bad["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("not all sent to group 'g'")),
        "{bad}"
    );
    let (status, bad) = s
        .post(
            "/v1/api/topics/ack",
            Some(&token),
            &json!({"topic_id": "app.q", "group_id": "g", "from_offset": 2,
                    "upto_offset": 3}),
        )
        .await;
    assert_eq!(
        (status, &bad["code"]),
        (400, &json!("INVALID_INPUT")),
        "{bad}"
    );
    assert_eq!(take().await, [(3, 1)], "offset 3 is still to be sent");

    // The dead-letter topic holds offsets 0 (too many deliveries) and 1 (rejected).
    let dead = s.ok(&token, "CONSUME FROM app.q.dlq FROM EARLIEST").await;
    let keys: Vec<Value> = rows(&dead).iter().map(|r| r[3].clone()).collect();
    assert_eq!(keys, [json!("1"), json!("2")], "{dead}");
    let listed = s
        .ok(
            &token,
            "SELECT topic_id FROM system.topics ORDER BY topic_id",
        )
        .await;
    assert_eq!(rows(&listed), vec![json!(["app.q"]), json!(["app.q.dlq"])]);
}

/// Messages older than their topic's retention are removed by the leader; offsets go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_past_their_retention_are_removed_and_offsets_go_on() {
    let (_dir, s, token) = started(
        &[("FOLDDB_TOPIC_RETENTION_CHECK_SECS", "1")],
        &[
            "CREATE NAMESPACE app",
            "CREATE SHARED TABLE app.ev (id BIGINT PRIMARY KEY)",
            "CREATE TOPIC app.short WITH (retention_seconds = 2)",
            "CREATE TOPIC app.long",
            "ALTER TOPIC app.short ADD SOURCE app.ev ON INSERT",
            "ALTER TOPIC app.long ADD SOURCE app.ev ON INSERT",
            "INSERT INTO app.ev (id) VALUES (1), (2), (3)",
        ],
    )
    .await;
    let offsets =
        |answer: &Value| -> Vec<Value> { rows(answer).iter().map(|r| r[2].clone()).collect() };
    let earliest = |topic: &str| format!("CONSUME FROM {topic} FROM EARLIEST");
    assert_eq!(
        offsets(&s.ok(&token, &earliest("app.short")).await).len(),
        3
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !offsets(&s.ok(&token, &earliest("app.short")).await).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the messages outlived their retention"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The default retention (7 days) keeps the other topic's.
    assert_eq!(offsets(&s.ok(&token, &earliest("app.long")).await).len(), 3);
    s.ok(&token, "INSERT INTO app.ev (id) VALUES (4)").await;
    assert_eq!(
        offsets(&s.ok(&token, &earliest("app.short")).await),
        [json!("3")]
    );
}

/// A topic past its byte limit loses its oldest messages, down to what fits (each message
/// counted as stored); `ALTER TOPIC … SET` changes the limit of an existing topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_past_the_byte_limit_are_removed_oldest_first() {
    let (_dir, s, token) = started(
        &[("FOLDDB_TOPIC_RETENTION_CHECK_SECS", "1")],
        &[
            "CREATE NAMESPACE app",
            "CREATE SHARED TABLE app.ev (id BIGINT PRIMARY KEY, body TEXT)",
            "CREATE TOPIC app.small WITH (retention_max_bytes = 20000)",
            "CREATE TOPIC app.big",
            "ALTER TOPIC app.small ADD SOURCE app.ev ON INSERT",
            "ALTER TOPIC app.big ADD SOURCE app.ev ON INSERT",
        ],
    )
    .await;
    let limits = s
        .ok(
            &token,
            "SELECT topic_id, retention_max_bytes FROM system.topics ORDER BY topic_id",
        )
        .await;
    assert_eq!(
        rows(&limits),
        vec![
            json!(["app.big", (1u64 << 30).to_string()]),
            json!(["app.small", "20000"])
        ]
    );
    let body = "x".repeat(1000);
    let values: Vec<String> = (0..100).map(|i| format!("({i}, '{body}')")).collect();
    s.ok(
        &token,
        &format!("INSERT INTO app.ev (id, body) VALUES {}", values.join(", ")),
    )
    .await;
    let offsets = |answer: &Value| -> Vec<u64> {
        rows(answer)
            .iter()
            .map(|r| r[2].as_str().expect("offset").parse().expect("offset"))
            .collect()
    };
    let earliest = |topic: &str| format!("CONSUME FROM {topic} FROM EARLIEST LIMIT 1000");
    // Each message is a little over 1,000 bytes: at most 19 fit in 20,000, and at least 15
    // (the cut is exact, not a rough one).
    let settles = |topic: &'static str, most: usize, least: usize| {
        let (s, token) = (&s, &token);
        async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let left = offsets(&s.ok(token, &earliest(topic)).await);
                if left.len() <= most {
                    assert!(left.len() >= least, "{topic}: cut too far: {left:?}");
                    let want: Vec<u64> = (100 - left.len() as u64..100).collect();
                    assert_eq!(left, want, "{topic}: the newest, gap-free");
                    return;
                }
                assert!(Instant::now() < deadline, "{topic} kept {}", left.len());
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    settles("app.small", 19, 15).await;
    // The default limit (1 GiB) keeps the other topic's; a lower one applies at once.
    assert_eq!(
        offsets(&s.ok(&token, &earliest("app.big")).await).len(),
        100
    );
    s.ok(
        &token,
        "ALTER TOPIC app.big SET (retention_max_bytes = 5000)",
    )
    .await;
    settles("app.big", 4, 3).await;
    // Refused, and nothing changes.
    for sql in [
        "ALTER TOPIC app.big SET (retention_max_bytes = 0)",
        "ALTER TOPIC app.nope SET (retention_max_bytes = 10)",
        "ALTER TOPIC app.big SET (partitions = 3)",
    ] {
        let (status, _) = s.fails(&token, sql).await;
        assert_eq!(status, 400, "{sql}");
    }
    let limits = s
        .ok(
            &token,
            "SELECT retention_max_bytes FROM system.topics WHERE topic_id = 'app.big'",
        )
        .await;
    assert_eq!(rows(&limits), vec![json!(["5000"])]);

    // Dropping the source table removes its routes: a table created again under its name
    // is another table, and feeds no topic.
    let routes = "SELECT routes FROM system.topics WHERE topic_id = 'app.small'";
    let listed = s.ok(&token, routes).await;
    assert!(
        rows(&listed)[0][0]
            .as_str()
            .expect("routes json")
            .contains("app.ev")
    );
    s.ok_all(
        &token,
        &[
            "DROP TABLE app.ev",
            "CREATE SHARED TABLE app.ev (id BIGINT PRIMARY KEY, body TEXT)",
            "INSERT INTO app.ev (id, body) VALUES (500, 'new')",
        ],
    )
    .await;
    let listed = s.ok(&token, routes).await;
    assert_eq!(rows(&listed), vec![json!(["[]"])]);
    let newest = offsets(&s.ok(&token, &earliest("app.small")).await);
    assert_eq!(newest.last(), Some(&99), "no message from the new table");
}
