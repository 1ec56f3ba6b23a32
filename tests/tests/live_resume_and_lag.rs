//! The guarantees FoldDB adds to the reference's live queries (API.md, top): gapless resume
//! with `from` (deletions and rows leaving the filter included), a slow consumer caught up
//! instead of dropped (or told explicitly, past the configured limit), resume across a
//! SIGKILL of the server; and the framing options of API.md 2.1–2.2.

use std::collections::HashSet;
use std::time::Duration;

use folddb_tests::Server;
use folddb_tests::ws::{
    View, Ws, connect, connect_with, next, next_within, quiet, read_until, read_views_to_end,
    read_views_until, send, seq, seq_of,
};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const TABLE: &str = "CREATE SHARED TABLE app.t (id BIGINT PRIMARY KEY, n INT NOT NULL, v TEXT NOT NULL) WITH (ACCESS_LEVEL = 'PUBLIC')";

/// Asserts a view equals the table, naming the first rows that differ (not all of them).
fn same_rows(got: &[Value], want: &[Value], what: &str) {
    if got != want {
        let first = got.iter().zip(want).position(|(g, w)| g != w);
        let at = first.unwrap_or(got.len().min(want.len()));
        panic!(
            "{what}: {} rows vs {} in the table; first difference at {at}: {:?} vs {:?}",
            got.len(),
            want.len(),
            got.get(at).map(|r| (&r[0], &r[1])),
            want.get(at).map(|r| (&r[0], &r[1])),
        );
    }
}

/// The next frame, whatever it is.
async fn frame(ws: &mut Ws) -> Message {
    tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("in time")
        .expect("open")
        .expect("frame")
}

async fn server(env: &[(&str, &str)]) -> (tempfile::TempDir, Server, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Server::start_with(dir.path(), env).await;
    let admin = s.setup_and_login().await;
    s.ok(&admin, "CREATE NAMESPACE app").await;
    s.ok(&admin, TABLE).await;
    (dir, s, admin)
}

async fn subscribe(ws: &mut Ws, id: &str, sql: &str, options: Option<Value>) {
    let mut sub = json!({"id": id, "sql": sql});
    if let Some(o) = options {
        sub["options"] = o;
    }
    send(ws, json!({"type": "subscribe", "subscription": sub})).await;
}

/// How long a test waits for a view to catch up (a debug build on a loaded machine).
const CATCH_UP: Duration = Duration::from_secs(240);

type Views = std::collections::HashMap<String, View>;

/// Reads until the acks and initial data of `ids` arrived (each view says `ready`).
async fn initial(ws: &mut Ws, views: &mut Views, ids: &[&str]) {
    let mut ready = HashSet::new();
    read_until(ws, Duration::from_secs(30), |m| {
        let id = m["subscription_id"].as_str().unwrap_or("").to_owned();
        assert_ne!(m["type"], "error", "{m}");
        views.get_mut(&id).expect("a known subscription").apply(m);
        if m["type"] == "initial_data_batch" && m["batch_control"]["status"] == "ready" {
            ready.insert(id);
        }
        ids.iter().all(|i| ready.contains(*i))
    })
    .await;
}

/// Whether each view `(id, rows, newest _seq)` names has been told of every version up to
/// that `_seq` and holds that many rows.
fn caught_up(want: &[(&str, usize, i64)]) -> impl Fn(&Views, &[Value]) -> bool {
    let want: Vec<(String, usize, i64)> = want
        .iter()
        .map(|(id, n, q)| ((*id).to_owned(), *n, *q))
        .collect();
    move |views, others| {
        !others.is_empty()
            || want
                .iter()
                .all(|(id, n, q)| views.get(id).is_some_and(|v| v.caught_up(*n, *q)))
    }
}

/// The newest `_seq` among the rows of `app.t` that `filter` selects.
async fn newest_seq(s: &Server, token: &str, filter: &str) -> i64 {
    let r = s
        .ok(token, &format!("SELECT MAX(_seq) FROM app.t{filter}"))
        .await;
    seq_of(&folddb_tests::rows(&r)[0][0])
}

/// `SELECT id, n, v` with `filter`, as `[id, n, v]` rows ascending by id.
async fn select(s: &Server, token: &str, filter: &str) -> Vec<Value> {
    let r = s
        .ok(
            token,
            &format!("SELECT id, n, v FROM app.t{filter} ORDER BY id"),
        )
        .await;
    folddb_tests::rows(&r)
}

#[tokio::test]
async fn resume_with_from_delivers_what_changed_deletions_and_departures_included() {
    let (_dir, s, admin) = server(&[]).await;
    s.ok(
        &admin,
        "INSERT INTO app.t (id, n, v) VALUES (1, 1, 'a'), (2, 2, 'b'), (3, 3, 'c'), (4, 40, 'd'), (5, 5, 'e')",
    )
    .await;
    let filter = " WHERE n < 10";
    let mut ws = connect(s.port, Some(&admin)).await;
    next(&mut ws).await.expect("auth");
    subscribe(
        &mut ws,
        "s",
        &format!("SELECT * FROM app.t{filter}"),
        Some(json!({})),
    )
    .await;
    let mut view = View::strict();
    view.apply(&next(&mut ws).await.expect("ack"));
    view.apply(&next(&mut ws).await.expect("initial data"));
    s.ok(&admin, "UPDATE app.t SET v = 'A' WHERE id = 1").await;
    view.apply(&next(&mut ws).await.expect("update"));
    assert_eq!(
        view.table(&["id", "n", "v"]),
        select(&s, &admin, filter).await
    );
    let from = view.last_seq;
    drop(ws);

    // While it is away: an insert in and one out of the filter, an update staying in, one
    // leaving, one entering, a delete, and a row inserted and deleted again.
    for sql in [
        "INSERT INTO app.t (id, n, v) VALUES (6, 6, 'f'), (7, 70, 'g')",
        "UPDATE app.t SET v = 'B' WHERE id = 2",
        "UPDATE app.t SET n = 30 WHERE id = 3",
        "UPDATE app.t SET n = 4 WHERE id = 4",
        "DELETE FROM app.t WHERE id = 5",
        "INSERT INTO app.t (id, n, v) VALUES (8, 8, 'h')",
        "DELETE FROM app.t WHERE id = 8",
    ] {
        s.ok(&admin, sql).await;
    }

    let mut ws = connect(s.port, Some(&admin)).await;
    next(&mut ws).await.expect("auth");
    subscribe(
        &mut ws,
        "s",
        &format!("SELECT * FROM app.t{filter}"),
        Some(json!({"from": from})),
    )
    .await;
    // The changes after `from`, in `_seq` order, then an empty last batch.
    let mut seqs = Vec::new();
    let mut deleted = HashSet::new();
    let mut touched = HashSet::new();
    let want = select(&s, &admin, filter).await;
    read_until(&mut ws, Duration::from_secs(30), |m| {
        assert_ne!(m["type"], "error", "{m}");
        for r in m["rows"].as_array().into_iter().flatten() {
            seqs.push(seq(r));
        }
        for r in m["rows"]
            .as_array()
            .into_iter()
            .chain(m["old_values"].as_array())
            .flatten()
        {
            touched.insert(r["id"].as_str().unwrap_or("").to_owned());
        }
        if m["change_type"] == "delete" {
            deleted.insert(m["old_values"][0]["id"].as_str().unwrap_or("").to_owned());
        }
        view.apply(m);
        m["type"] == "initial_data_batch" && m["batch_control"]["status"] == "ready"
    })
    .await;
    quiet(&mut ws).await;
    assert_eq!(view.table(&["id", "n", "v"]), want);
    // Exactly what changed after `from`: each version once, all newer than the cursor.
    assert!(seqs.iter().all(|&q| q > from), "{seqs:?} vs {from}");
    // Row 7 never matched the filter: nothing tells of it.
    assert!(!touched.contains("7"), "{touched:?}");
    let unique: HashSet<i64> = seqs.iter().copied().collect();
    assert_eq!(unique.len(), seqs.len(), "duplicate _seq in {seqs:?}");
    for id in ["3", "5", "8"] {
        assert!(deleted.contains(id), "row {id} left the view: {deleted:?}");
    }
    assert!(
        !deleted.contains("1"),
        "row 1 did not change after the cursor"
    );
}

/// Writes 100 INSERTs of 1,000 wide rows (100k rows, ~35 MB of change messages, far more
/// than socket buffers hold), then updates and deletes some. The connection does not read
/// meanwhile, but pings every two seconds, as a client library does (API.md 2.7: the server
/// closes a connection silent for 10 s, however long the writes take).
async fn write_a_lot(s: &Server, token: &str, ws: &mut Ws) {
    let pad = "x".repeat(200);
    let mut pinged = std::time::Instant::now();
    for b in 0..100i64 {
        if pinged.elapsed() >= Duration::from_secs(2) {
            ws.send(Message::text(r#"{"type":"ping"}"#))
                .await
                .expect("ping");
            pinged = std::time::Instant::now();
        }
        let values: Vec<String> = (0..1000i64)
            .map(|i| {
                let id = b * 1000 + i;
                format!("({id}, {}, '{pad}')", id % 7)
            })
            .collect();
        s.ok(
            token,
            &format!("INSERT INTO app.t (id, n, v) VALUES {}", values.join(", ")),
        )
        .await;
    }
    s.ok(token, "UPDATE app.t SET v = 'u', n = n + 1 WHERE id < 500")
        .await;
    s.ok(token, "DELETE FROM app.t WHERE id >= 99500").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_is_caught_up_with_every_change_in_order() {
    let (_dir, s, admin) = server(&[
        ("FOLDDB_LIVE_CONNECTION_QUEUE", "4"),
        ("FOLDDB_LOG", "info"),
    ])
    .await;
    s.ok(
        &admin,
        "INSERT INTO app.t (id, n, v) VALUES (-1, 0, 'seed')",
    )
    .await;
    let mut ws = connect(s.port, Some(&admin)).await;
    next(&mut ws).await.expect("auth");
    let subs = [("all", ""), ("even", " WHERE n % 2 = 0")];
    let mut views = Views::new();
    for (id, filter) in subs {
        subscribe(
            &mut ws,
            id,
            &format!("SELECT * FROM app.t{filter}"),
            Some(json!({})),
        )
        .await;
        views.insert(id.to_owned(), View::strict());
    }
    // The acks and initial data, then the client stops reading while 100k rows change.
    initial(&mut ws, &mut views, &["all", "even"]).await;
    write_a_lot(&s, &admin, &mut ws).await;
    let mut want = Vec::new();
    let mut until = Vec::new();
    for (id, filter) in subs {
        let rows = select(&s, &admin, filter).await;
        until.push((id, rows.len(), newest_seq(&s, &admin, filter).await));
        want.push(rows);
    }
    // Reading again: everything arrives, in order, nothing is refused. Done once each view
    // has the newest version its filter selects and as many rows as the table: the deletes
    // that follow that version can only bring the count down to the table's.
    let others = read_views_until(&mut ws, &mut views, CATCH_UP, caught_up(&until)).await;
    assert!(others.is_empty(), "no errors: {others:?}");
    for ((id, _), want) in subs.iter().zip(&want) {
        same_rows(
            &views[*id].table(&["id", "n", "v"]),
            want,
            &format!("subscription {id} caught up"),
        );
    }
    let all = &views["all"].counts;
    assert!(
        all.get("insert").copied().unwrap_or(0) >= 99_500,
        "every surviving insert arrived: {all:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_catch_up_limit_the_subscriber_is_told_and_resumes_with_from() {
    let (_dir, s, admin) = server(&[
        ("FOLDDB_LIVE_CONNECTION_QUEUE", "1"),
        ("FOLDDB_LIVE_MAX_CATCH_UP_ROWS", "0"),
    ])
    .await;
    let mut ws = connect(s.port, Some(&admin)).await;
    next(&mut ws).await.expect("auth");
    subscribe(&mut ws, "all", "SELECT * FROM app.t", Some(json!({}))).await;
    let mut views = Views::from([("all".to_owned(), View::strict())]);
    initial(&mut ws, &mut views, &["all"]).await;
    write_a_lot(&s, &admin, &mut ws).await;
    let others = read_views_until(&mut ws, &mut views, CATCH_UP, |_, others| {
        !others.is_empty()
    })
    .await;
    let [err] = others.as_slice() else {
        panic!("one explicit error, not a silent drop: {others:?}")
    };
    assert_eq!(
        (err["code"].as_str(), err["subscription_id"].as_str()),
        (Some("SUBSCRIPTION_FAILED"), Some("all"))
    );
    // The client resumes from the last _seq it has: its view becomes the table.
    let from = views["all"].last_seq;
    // Large batches: paging 100k rows 1,000 at a time would pass the 50 messages/s limit.
    subscribe(
        &mut ws,
        "all",
        "SELECT * FROM app.t",
        Some(json!({"from": from, "batch_size": 10000})),
    )
    .await;
    views.get_mut("all").expect("view").strict = false;
    let want = select(&s, &admin, "").await;
    let until = [("all", want.len(), newest_seq(&s, &admin, "").await)];
    let others = read_views_until(&mut ws, &mut views, CATCH_UP, caught_up(&until)).await;
    assert!(others.is_empty(), "{others:?}");
    same_rows(
        &views["all"].table(&["id", "n", "v"]),
        &want,
        "resumed after the error",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_sigkill_subscribers_resume_and_lose_nothing_acknowledged() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Server::start(dir.path()).await;
    let admin = s.setup_and_login().await;
    s.ok(&admin, "CREATE NAMESPACE app").await;
    s.ok(&admin, TABLE).await;
    let mut ws = connect(s.port, Some(&admin)).await;
    next(&mut ws).await.expect("auth");
    subscribe(&mut ws, "all", "SELECT * FROM app.t", Some(json!({}))).await;
    let mut views = Views::from([("all".to_owned(), View::strict())]);
    initial(&mut ws, &mut views, &["all"]).await;

    // Four writers; the server is killed while they write and the subscriber streams.
    let s = std::sync::Arc::new(s);
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut writers = Vec::new();
    for w in 0..4i64 {
        let (s, token, acked) = (s.clone(), admin.clone(), acked.clone());
        writers.push(tokio::spawn(async move {
            for i in 0.. {
                let id = w * 1_000_000 + i;
                let sql = format!("INSERT INTO app.t (id, n, v) VALUES ({id}, 1, 'w')");
                let sent = s
                    .client
                    .post(s.url("/v1/api/sql"))
                    .bearer_auth(&token)
                    .json(&json!({ "sql": sql }))
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status().as_u16() == 200 => acked.lock().expect("lock").push(id),
                    _ => return,
                }
            }
        }));
    }
    let reader = tokio::spawn(async move {
        let _ = read_views_to_end(&mut ws, &mut views, CATCH_UP).await;
        views
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    s.sigkill();
    for w in writers {
        w.await.expect("writer");
    }
    drop(s);
    let mut views = reader.await.expect("reader");
    let acked: Vec<i64> = acked.lock().expect("lock").clone();
    assert!(acked.len() > 20, "writes before the kill: {}", acked.len());

    let s = Server::start(dir.path()).await;
    let admin = s.login("admin", "kalamdb123").await;
    let from = views["all"].last_seq;
    let mut ws = connect(s.port, Some(&admin)).await;
    next(&mut ws).await.expect("auth");
    subscribe(
        &mut ws,
        "all",
        "SELECT * FROM app.t",
        Some(json!({"from": from})),
    )
    .await;
    views.get_mut("all").expect("view").strict = false;
    let want = select(&s, &admin, "").await;
    let until = [("all", want.len(), newest_seq(&s, &admin, "").await)];
    let others = read_views_until(&mut ws, &mut views, CATCH_UP, caught_up(&until)).await;
    assert!(others.is_empty(), "{others:?}");
    let view = &views["all"];
    for id in &acked {
        assert!(
            view.rows.contains_key(&id.to_string()),
            "acknowledged row {id} is in the resumed view"
        );
    }
    same_rows(
        &view.table(&["id", "n", "v"]),
        &want,
        "resumed after the crash",
    );
}

#[tokio::test]
async fn framing_gzip_compress_false_msgpack_and_the_rate_limit() {
    let (_dir, s, admin) = server(&[]).await;
    let values: Vec<String> = (0..50)
        .map(|i| format!("({i}, {i}, 'the same words again and again')"))
        .collect();
    s.ok(
        &admin,
        &format!("INSERT INTO app.t (id, n, v) VALUES {}", values.join(", ")),
    )
    .await;
    let sub = |id: &str| json!({"type": "subscribe", "subscription": {"id": id, "sql": "SELECT * FROM app.t", "options": {}}});

    // Default: compression on; the large initial batch is a gzip'ed binary frame.
    let mut ws = connect(s.port, Some(&admin)).await;
    let auth = next(&mut ws).await.expect("auth");
    assert_eq!(auth["protocol"]["compression"], "gzip");
    send(&mut ws, sub("s")).await;
    assert!(frame(&mut ws).await.is_text(), "the small ack is text");
    let batch = frame(&mut ws).await;
    assert!(batch.is_binary(), "the large batch is gzip'ed");
    let m = folddb_tests::ws::message(batch).expect("json");
    assert_eq!(m["rows"].as_array().map(Vec::len), Some(50));

    // compress=false: text frames only.
    let mut ws = connect_with(s.port, Some(&admin), "compress=false").await;
    let auth = next(&mut ws).await.expect("auth");
    assert_eq!(auth["protocol"]["compression"], "none");
    send(&mut ws, sub("s")).await;
    assert!(frame(&mut ws).await.is_text());
    assert!(
        frame(&mut ws).await.is_text(),
        "no gzip when compress=false"
    );

    // MessagePack: auth_success is JSON text, then everything is binary msgpack, both ways.
    let mut ws = connect_with(s.port, Some(&admin), "serialization=msgpack&compress=false").await;
    let auth = next(&mut ws).await.expect("auth");
    assert_eq!(auth["protocol"]["serialization"], "msgpack");
    let bytes = rmp_serde::to_vec_named(&sub("m")).expect("msgpack");
    ws.send(Message::binary(bytes)).await.expect("sent");
    let Message::Binary(ack) = frame(&mut ws).await else {
        panic!("a msgpack frame")
    };
    let ack: Value = rmp_serde::from_slice(&ack).expect("msgpack ack");
    assert_eq!(ack["type"], "subscription_ack");
    let Message::Binary(b) = frame(&mut ws).await else {
        panic!("a msgpack frame")
    };
    let b: Value = rmp_serde::from_slice(&b).expect("msgpack batch");
    assert_eq!(b["rows"].as_array().map(Vec::len), Some(50));

    // A binary frame on a JSON connection: UNSUPPORTED_DATA, and the socket stays open.
    let mut ws = connect_with(s.port, Some(&admin), "compress=false").await;
    next(&mut ws).await.expect("auth");
    ws.send(Message::binary(vec![1, 2, 3])).await.expect("sent");
    let m = next(&mut ws).await.expect("error");
    assert_eq!(m["code"], "UNSUPPORTED_DATA");

    // More than 50 messages in a second: RATE_LIMIT_EXCEEDED; the connection carries on.
    for _ in 0..60 {
        send(&mut ws, json!({"type": "ping"})).await;
    }
    let m = next(&mut ws).await.expect("rate limited");
    assert_eq!(
        (m["code"].as_str(), m["subscription_id"].as_str()),
        (Some("RATE_LIMIT_EXCEEDED"), Some("rate_limit"))
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    while let Ok(Some(Ok(_))) = tokio::time::timeout(Duration::from_millis(100), ws.next()).await {}
    send(&mut ws, sub("after")).await;
    let m = next_within(&mut ws, Duration::from_secs(5))
        .await
        .expect("ack");
    assert_eq!(m["type"], "subscription_ack");
}

/// The `id`s of a message's rows.
fn ids(m: &Value) -> Vec<String> {
    m["rows"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| r["id"].as_str().unwrap_or("").to_owned())
        .collect()
}

/// Writes `rows` (`(…)` tuples of `columns`) into `table`, then subscribes a new
/// connection to `sql` as `s` with batches of 10: the connection, once the ack is read.
async fn paging(
    s: &Server,
    token: &str,
    table: &str,
    columns: &str,
    rows: &[String],
    sql: &str,
) -> (Ws, Value) {
    s.ok(
        token,
        &format!("INSERT INTO {table} ({columns}) VALUES {}", rows.join(", ")),
    )
    .await;
    let mut ws = connect(s.port, Some(token)).await;
    next(&mut ws).await.expect("auth");
    subscribe(&mut ws, "s", sql, Some(json!({"batch_size": 10}))).await;
    let ack = next(&mut ws).await.expect("ack");
    assert_eq!(ack["type"], "subscription_ack", "{ack}");
    (ws, ack)
}

/// [`paging`] of `SELECT * FROM app.t` once it holds rows 1..=`n`.
async fn paging_all(s: &Server, token: &str, n: i64) -> (Ws, Value) {
    let values: Vec<String> = (1..=n).map(|i| format!("({i}, {i}, 'v{i}')")).collect();
    paging(
        s,
        token,
        "app.t",
        "id, n, v",
        &values,
        "SELECT * FROM app.t",
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_initial_data_is_paged_from_storage_and_hands_off_to_what_changed_meanwhile() {
    // Lists of 16 keys: the 50 rows take four.
    let (_dir, s, admin) = server(&[("FOLDDB_LIVE_LISTED_ROWS", "16")]).await;
    let values: Vec<String> = (1..=50).map(|i| format!("({i}, {i}, 'v{i}')")).collect();
    let filter = " WHERE n < 1000";
    let sql = format!("SELECT * FROM app.t{filter}");
    let (mut ws, ack) = paging(&s, &admin, "app.t", "id, n, v", &values, &sql).await;
    let mut view = View::strict();
    assert_eq!(ack["batch_control"]["status"], "loading", "{ack}");
    view.apply(&ack);
    let first = next(&mut ws).await.expect("first batch");
    assert_eq!(first["batch_control"]["has_more"], true, "{first}");
    let sent = ids(&first);
    assert_eq!(sent.len(), 10, "{first}");
    view.apply(&first);

    // While the client pages: a row it has is updated and one deleted; of the rows it has
    // not had yet, one is updated, one deleted, one leaves the filter; a row is inserted.
    let unsent: Vec<&str> = ["50", "49", "48"]
        .into_iter()
        .filter(|i| !sent.iter().any(|s| s == i))
        .collect();
    assert_eq!(
        unsent.len(),
        3,
        "the first batch is the oldest rows: {sent:?}"
    );
    for sql in [
        format!("UPDATE app.t SET v = 'u' WHERE id = {}", sent[0]),
        format!("DELETE FROM app.t WHERE id = {}", sent[1]),
        "UPDATE app.t SET v = 'u' WHERE id = 50".to_owned(),
        "DELETE FROM app.t WHERE id = 49".to_owned(),
        "UPDATE app.t SET n = 5000 WHERE id = 48".to_owned(),
        "INSERT INTO app.t (id, n, v) VALUES (100, 100, 'new')".to_owned(),
    ] {
        s.ok(&admin, &sql).await;
    }
    let want = select(&s, &admin, filter).await;
    send(
        &mut ws,
        json!({"type": "next_batch", "subscription_id": "s"}),
    )
    .await;
    let mut initial = sent.clone();
    let mut batches = vec![first["batch_control"].clone()];
    let mut inserts = Vec::new();
    // `read_until` asks for each next batch; the view panics on an update of a row it does
    // not hold, and on a `_seq` that is not newer than the one before.
    read_until(&mut ws, CATCH_UP, |m| {
        assert_ne!(m["type"], "error", "{m}");
        if m["type"] == "initial_data_batch" {
            initial.extend(ids(m));
            batches.push(m["batch_control"].clone());
        }
        if m["change_type"] == "insert" {
            inserts.push(m["rows"][0].clone());
        }
        view.apply(m);
        batches.last().is_some_and(|b| b["status"] == "ready")
            && view.table(&["id", "n", "v"]) == want
    })
    .await;
    quiet(&mut ws).await;

    // Pages of at most 10 rows, numbered, loading until the last; each row once.
    for (i, b) in batches.iter().enumerate() {
        let last = i + 1 == batches.len();
        assert_eq!(b["batch_num"], i, "{batches:?}");
        assert_eq!(b["has_more"], !last, "{batches:?}");
        let status = match (i, last) {
            (_, true) => "ready",
            (0, false) => "loading",
            _ => "loading_batch",
        };
        assert_eq!(b["status"], status, "{batches:?}");
    }
    let unique: HashSet<&String> = initial.iter().collect();
    assert_eq!(unique.len(), initial.len(), "a row twice: {initial:?}");
    assert!(initial.len() <= 50, "{initial:?}");
    // What changed after the subscription started is not in the initial data, but follows
    // it: the row updated before its page as an insert with every column.
    for id in ["50", "49", "48", "100"] {
        assert!(!initial.iter().any(|i| i == id), "{id} in {initial:?}");
    }
    let fifty = inserts
        .iter()
        .find(|r| r["id"] == "50")
        .unwrap_or_else(|| panic!("row 50 as an insert: {inserts:?}"));
    assert_eq!((&fifty["n"], &fifty["v"]), (&json!(50), &json!("u")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_to_a_large_table_hold_a_page_each_not_the_table() {
    let (_dir, s, admin) = server(&[]).await;
    // 20,000 rows of 1 KB: 20 MB.
    let pad = "x".repeat(1000);
    for b in 0..20i64 {
        let values: Vec<String> = (0..1000i64)
            .map(|i| format!("({}, {i}, '{pad}')", b * 1000 + i))
            .collect();
        s.ok(
            &admin,
            &format!("INSERT INTO app.t (id, n, v) VALUES {}", values.join(", ")),
        )
        .await;
    }
    let before = s.peak_rss_bytes();
    let mut ws = connect(s.port, Some(&admin)).await;
    next(&mut ws).await.expect("auth");
    // Ten subscribers that read their first page and no more; the last pages to the end.
    for k in 0..10 {
        let batch_size = if k == 9 { 5000 } else { 100 };
        subscribe(
            &mut ws,
            &format!("s{k}"),
            "SELECT * FROM app.t",
            Some(json!({"batch_size": batch_size})),
        )
        .await;
        let ack = next(&mut ws).await.expect("ack");
        assert_eq!(ack["type"], "subscription_ack", "{ack}");
        let first = next(&mut ws).await.expect("first batch");
        assert_eq!(ids(&first).len(), batch_size, "{}", first["batch_control"]);
        assert_eq!(first["batch_control"]["has_more"], true);
    }
    let held = s.peak_rss_bytes().saturating_sub(before);
    eprintln!(
        "peak RSS {} MiB before the subscriptions, +{} MiB with them",
        before >> 20,
        held >> 20
    );
    // Held whole, as JSON, the table took more than a gigabyte for ten subscribers.
    assert!(held < 200 << 20, "+{} MiB", held >> 20);

    send(
        &mut ws,
        json!({"type": "next_batch", "subscription_id": "s9"}),
    )
    .await;
    let mut rows: HashSet<String> = HashSet::new();
    let mut pages = 1;
    read_until(&mut ws, CATCH_UP, |m| {
        assert_ne!(m["type"], "error", "{m}");
        if m["subscription_id"] == "s9" {
            rows.extend(ids(m));
            pages += 1;
        }
        m["batch_control"]["status"] == "ready"
    })
    .await;
    // The first page's 5,000 rows were read above; the other three pages hold the rest.
    assert_eq!((rows.len(), pages), (15_000, 4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_table_without_a_key_pages_by_seq() {
    let (_dir, s, admin) = server(&[]).await;
    s.ok(
        &admin,
        "CREATE STREAM TABLE app.ev (id BIGINT, v TEXT) WITH (TTL_SECONDS = 3600)",
    )
    .await;
    let values: Vec<String> = (1..=25).map(|i| format!("({i}, 'e{i}')")).collect();
    let (mut ws, ack) = paging(
        &s,
        &admin,
        "app.ev",
        "id, v",
        &values,
        "SELECT * FROM app.ev",
    )
    .await;
    assert_eq!(ack["batch_control"]["has_more"], true, "{ack}");
    // An event written while the client pages follows the initial data.
    s.ok(&admin, "INSERT INTO app.ev (id, v) VALUES (26, 'late')")
        .await;
    let mut view = View::strict();
    let mut pages = Vec::new();
    let mut late = false;
    read_until(&mut ws, CATCH_UP, |m| {
        assert_ne!(m["type"], "error", "{m}");
        if m["type"] == "initial_data_batch" {
            pages.push(ids(m));
        }
        late |= m["change_type"] == "insert" && m["rows"][0]["id"] == "26";
        view.apply(m);
        late
    })
    .await;
    let sizes: Vec<usize> = pages.iter().map(Vec::len).collect();
    assert_eq!(sizes, [10, 10, 5]);
    let all: Vec<String> = pages.concat();
    let want: Vec<String> = (1..=25).map(|i| i.to_string()).collect();
    assert_eq!(all, want, "each event once, oldest first");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_changes_made_while_the_initial_data_pages_follow_its_last_page() {
    let (_dir, s, admin) = server(&[("FOLDDB_LIVE_MAX_CATCH_UP_ROWS", "40")]).await;
    let (mut ws, ack) = paging_all(&s, &admin, 30).await;
    let mut view = View::strict();
    view.apply(&ack);
    let first = next(&mut ws).await.expect("first batch");
    let sent = ids(&first);
    view.apply(&first);
    let (a, c) = (sent[0].clone(), sent[1].clone());
    // 27 changes to 5 rows while the client sits on its first page: read from the journal
    // after its last one.
    let mut writes = Vec::new();
    for k in 0..8 {
        writes.push(format!("UPDATE app.t SET v = 'a{k}' WHERE id = {a}"));
        writes.push(format!("UPDATE app.t SET v = 'b{k}' WHERE id = 30"));
    }
    writes.push(format!("DELETE FROM app.t WHERE id = {c}"));
    writes.push("INSERT INTO app.t (id, n, v) VALUES (100, 100, 'new')".to_owned());
    for k in 0..8 {
        writes.push(format!("UPDATE app.t SET n = {k} WHERE id = 100"));
    }
    writes.push("DELETE FROM app.t WHERE id = 29".to_owned());
    for w in &writes {
        s.ok(&admin, w).await;
    }
    let want = select(&s, &admin, "").await;
    send(
        &mut ws,
        json!({"type": "next_batch", "subscription_id": "s"}),
    )
    .await;
    let mut ready = false;
    let mut told_of_a = 0;
    read_until(&mut ws, CATCH_UP, |m| {
        assert_ne!(m["type"], "error", "{m}");
        ready |= m["batch_control"]["status"] == "ready";
        if m["type"] == "change" && m["rows"][0]["id"] == a.as_str() {
            told_of_a += 1;
        }
        view.apply(m);
        ready && view.table(&["id", "n", "v"]) == want
    })
    .await;
    quiet(&mut ws).await;
    // Row `a` changed 8 times: the client is told of each version.
    assert_eq!(told_of_a, 8);
    assert_eq!(view.rows[&a]["v"], "a7");
}

#[tokio::test]
async fn a_batch_is_no_larger_than_the_server_allows() {
    let (_dir, s, admin) = server(&[("FOLDDB_LIVE_MAX_BATCH_SIZE", "4")]).await;
    let (mut ws, _) = paging_all(&s, &admin, 10).await;
    let first = next(&mut ws).await.expect("first batch");
    assert_eq!(ids(&first).len(), 4, "{first}");
    assert_eq!(first["batch_control"]["has_more"], true);
    // Only the newest rows, more of them than a batch holds: refused.
    subscribe(
        &mut ws,
        "last",
        "SELECT * FROM app.t",
        Some(json!({"batch_size": 100, "last_rows": 5})),
    )
    .await;
    let e = next(&mut ws).await.expect("an error");
    assert_eq!(
        (&e["type"], &e["code"]),
        (&json!("error"), &json!("UNSUPPORTED")),
        "{e}"
    );
}

/// A resume's changes in message order: `(change_type, id, new row, old values)`.
type Told = Vec<(String, String, Value, Value)>;

/// Subscribes `sql` resuming from `from` with batches of `batch`, and reads until the last
/// batch: what was told, applied to `view` (strictly: `_seq`s only increase).
async fn resume(
    s: &Server,
    token: &str,
    sql: &str,
    from: i64,
    batch: usize,
    mut view: View,
) -> (View, Told) {
    let mut ws = connect(s.port, Some(token)).await;
    next(&mut ws).await.expect("auth");
    subscribe(
        &mut ws,
        "r",
        sql,
        Some(json!({"from": from, "batch_size": batch})),
    )
    .await;
    let mut told = Vec::new();
    read_until(&mut ws, Duration::from_secs(60), |m| {
        assert_ne!(m["type"], "error", "{m}");
        if m["type"] == "change" {
            let row = m["rows"][0].clone();
            let old = m["old_values"][0].clone();
            let id = row["id"].as_str().or(old["id"].as_str()).unwrap_or("");
            told.push((
                m["change_type"].as_str().unwrap_or("").to_owned(),
                id.to_owned(),
                row,
                old,
            ));
        }
        view.apply(m);
        m["type"] == "initial_data_batch" && m["batch_control"]["status"] == "ready"
    })
    .await;
    quiet(&mut ws).await;
    (view, told)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_is_exactly_the_changes_after_its_cursor_through_flushes_and_compaction() {
    let (_dir, s, admin) = server(&[]).await;
    s.ok(
        &admin,
        "CREATE SHARED TABLE app.m (id BIGINT PRIMARY KEY, room TEXT NOT NULL, body TEXT NOT NULL) WITH (ACCESS_LEVEL = 'PUBLIC')",
    )
    .await;
    s.ok(
        &admin,
        "INSERT INTO app.m (id, room, body) VALUES (1, 'r1', 'a'), (2, 'r1', 'b'), (3, 'r2', 'c')",
    )
    .await;
    let sql = "SELECT * FROM app.m WHERE room = 'r1'";
    let select_r1 = || async {
        let r = s
            .ok(
                &admin,
                "SELECT id, room, body FROM app.m WHERE room = 'r1' ORDER BY id",
            )
            .await;
        folddb_tests::rows(&r)
    };
    let from = {
        let r = s.ok(&admin, "SELECT MAX(_seq) FROM app.m").await;
        seq_of(&folddb_tests::rows(&r)[0][0])
    };
    // Offline: inserts in and out of the room, several updates of one row, a row leaving
    // and one entering, deletes in and out; a flush and a compaction in between.
    for sql in [
        "INSERT INTO app.m (id, room, body) VALUES (10, 'r1', 'x0'), (11, 'r1', 'y'), (20, 'r2', 'p'), (21, 'r2', 'q')",
        "UPDATE app.m SET body = 'x1' WHERE id = 10",
        "UPDATE app.m SET body = 'x2' WHERE id = 10",
        "STORAGE FLUSH TABLE app.m",
        "UPDATE app.m SET body = 'x3' WHERE id = 10",
        "UPDATE app.m SET room = 'r2' WHERE id = 1",
        "UPDATE app.m SET room = 'r1' WHERE id = 20",
        "UPDATE app.m SET body = 'q2' WHERE id = 21",
        "DELETE FROM app.m WHERE id = 2",
        "DELETE FROM app.m WHERE id = 21",
        "STORAGE FLUSH TABLE app.m",
        "STORAGE COMPACT TABLE app.m",
        "UPDATE app.m SET body = 'p2' WHERE id = 20",
        "UPDATE app.m SET body = 'c2' WHERE id = 3",
    ] {
        let answer = s.ok(&admin, sql).await;
        if sql.starts_with("STORAGE") {
            let m = answer["results"][0]["message"].as_str().unwrap_or_default();
            let id = m.rsplit("Job ID: ").next().unwrap_or_default();
            let (status, message) = s.wait_job(&admin, id).await;
            assert_eq!(status, "completed", "{sql}: {message}");
        }
    }
    // Pages of two changes: the resume spans several batches.
    let (view, told) = resume(&s, &admin, sql, from, 2, View::strict()).await;
    assert_eq!(view.table(&["id", "room", "body"]), select_r1().await);
    let kinds: Vec<(&str, &str)> = told
        .iter()
        .map(|(k, id, _, _)| (k.as_str(), id.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("insert", "10"),
            ("insert", "11"),
            ("update", "10"),
            ("update", "10"),
            ("update", "10"),
            ("delete", "1"),
            ("insert", "20"),
            ("delete", "2"),
            ("update", "20"),
        ],
        "each change once, in _seq order; none of rows 3 and 21, never in the room"
    );
    // Every intermediate update, with its true old values.
    let bodies: Vec<(&Value, &Value)> = told
        .iter()
        .filter(|(k, id, _, _)| k == "update" && id == "10")
        .map(|(_, _, new, old)| (&old["body"], &new["body"]))
        .collect();
    assert_eq!(
        bodies,
        [
            (&json!("x0"), &json!("x1")),
            (&json!("x1"), &json!("x2")),
            (&json!("x2"), &json!("x3"))
        ]
    );
    // The row that entered arrives whole, as it was when it entered.
    let entered = &told[6].2;
    assert_eq!(
        (&entered["room"], &entered["body"]),
        (&json!("r1"), &json!("p"))
    );
    // Resuming from the middle (with the rows then in the room): only what came after.
    let mut then = View::strict();
    for (kind, id, row, _) in &told[..4] {
        if kind == "insert" {
            then.rows.insert(id.clone(), row.clone());
        }
    }
    let mid = seq(&told[3].2);
    let (_, later) = resume(&s, &admin, sql, mid, 1000, then).await;
    assert_eq!(later.len(), told.len() - 4);
    assert_eq!(later.first().map(|t| &t.2), Some(&told[4].2));
}

#[tokio::test]
async fn a_cursor_older_than_the_journal_or_from_the_future_is_refused_by_name() {
    let (_dir, s, admin) = server(&[
        ("FOLDDB_JOURNAL_RETENTION_SECONDS", "1"),
        ("FOLDDB_JOURNAL_TRIM_INTERVAL_SECONDS", "1"),
    ])
    .await;
    s.ok(&admin, "INSERT INTO app.t (id, n, v) VALUES (1, 1, 'a')")
        .await;
    let old = newest_seq(&s, &admin, "").await;
    s.ok(&admin, "INSERT INTO app.t (id, n, v) VALUES (2, 2, 'b')")
        .await;
    let mut ws = connect(s.port, Some(&admin)).await;
    next(&mut ws).await.expect("auth");
    // Once the trim has removed the change after `old`, a resume from it would miss it.
    let mut refused = None;
    for attempt in 0..40 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let id = format!("s{attempt}");
        subscribe(
            &mut ws,
            &id,
            "SELECT * FROM app.t",
            Some(json!({"from": old})),
        )
        .await;
        let m = next(&mut ws).await.expect("an answer");
        if m["type"] == "error" {
            refused = Some(m);
            break;
        }
        // Not trimmed yet: the resume, then its end.
        read_until(&mut ws, Duration::from_secs(10), |m| {
            m["type"] == "initial_data_batch" && m["batch_control"]["status"] == "ready"
        })
        .await;
        send(
            &mut ws,
            json!({"type": "unsubscribe", "subscription_id": id}),
        )
        .await;
    }
    let e = refused.expect("the cursor passed the horizon");
    assert_eq!(e["code"], "CURSOR_EXPIRED", "{e}");
    let message = e["message"].as_str().unwrap_or_default();
    assert!(message.contains("horizon (_seq "), "{message}");
    // A cursor at the newest version is within it; one past anything applied is not.
    let newest = newest_seq(&s, &admin, "").await;
    let (view, told) = resume(
        &s,
        &admin,
        "SELECT * FROM app.t",
        newest,
        10,
        View::strict(),
    )
    .await;
    assert!(told.is_empty() && view.rows.is_empty(), "{told:?}");
    subscribe(
        &mut ws,
        "future",
        "SELECT * FROM app.t",
        Some(json!({"from": newest + (1 << 30)})),
    )
    .await;
    let e = next(&mut ws).await.expect("an error");
    assert_eq!(
        (&e["subscription_id"], &e["code"]),
        (&json!("future"), &json!("INVALID_CURSOR")),
        "{e}"
    );
    // The connection carries on.
    subscribe(&mut ws, "fresh", "SELECT * FROM app.t", Some(json!({}))).await;
    let mut view = View::strict();
    read_until(&mut ws, Duration::from_secs(10), |m| {
        view.apply(m);
        m["type"] == "initial_data_batch" && m["batch_control"]["status"] == "ready"
    })
    .await;
    assert_eq!(view.rows.len(), 2);
}
