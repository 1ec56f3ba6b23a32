//! Log tails over `/v1/ws` (`realtime/PROTOCOL.md`): every committed row change once, in
//! log order, within the credit the client grants; resumable from any batch's cursor,
//! across a dropped connection and a SIGKILL of the server; what each role may tail; bad
//! cursors and requests; and `folddb tail`.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use folddb_tests::Server;
use folddb_tests::ws::{Ws, connect, next, next_within, quiet, send};
use serde_json::{Value, json};

const TABLES: usize = 4;

async fn server(env: &[(&str, &str)]) -> (tempfile::TempDir, Server, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Server::start_with(dir.path(), env).await;
    let admin = s.setup_and_login().await;
    setup_tables(&s, &admin).await;
    (dir, s, admin)
}

async fn setup_tables(s: &Server, admin: &str) {
    s.ok(admin, "CREATE NAMESPACE app").await;
    for t in 0..TABLES {
        s.ok(
            admin,
            &format!("CREATE SHARED TABLE app.t{t} (id BIGINT PRIMARY KEY, k INT NOT NULL) WITH (ACCESS_LEVEL = 'PUBLIC')"),
        )
        .await;
    }
}

/// Opens a connection and tail `tail`: the connection and its `tail_ack`.
async fn open(s: &Server, token: &str, tail: Value) -> (Ws, Value) {
    let mut ws = connect(s.port, Some(token)).await;
    next(&mut ws).await.expect("auth");
    send(&mut ws, json!({"type": "tail", "tail": tail})).await;
    let ack = next(&mut ws).await.expect("an answer");
    (ws, ack)
}

/// A tailing client: what it received, and the credit it has granted and not used.
struct Client {
    records: Vec<Value>,
    cursor: Option<String>,
    outstanding: u64,
    window: u64,
}

impl Client {
    fn new(window: u64) -> Client {
        Client {
            records: Vec::new(),
            cursor: None,
            outstanding: window,
            window,
        }
    }

    /// Reads batches (granting as much credit as each used) until `done` holds of what
    /// was received. The server never sends more than was granted.
    async fn read_until(&mut self, ws: &mut Ws, done: impl Fn(&[Value]) -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        while !done(&self.records) {
            assert!(
                std::time::Instant::now() < deadline,
                "{} records so far",
                self.records.len()
            );
            let m = next_within(ws, Duration::from_secs(30))
                .await
                .expect("the connection stays open");
            assert_eq!(m["type"], "tail_batch", "{m}");
            let batch = m["records"].as_array().expect("records");
            assert!(!batch.is_empty(), "an empty batch: {m}");
            let n = batch.len() as u64;
            assert!(
                n <= self.outstanding,
                "{n} records with {} granted",
                self.outstanding
            );
            self.outstanding -= n;
            self.records.extend(batch.iter().cloned());
            self.cursor = m["cursor"].as_str().map(str::to_owned);
            let last = batch.last().expect("a record");
            assert_eq!(
                self.cursor.as_deref(),
                Some(format!("{}:{}", last["index"], last["ordinal"]).as_str())
            );
            send(
                ws,
                json!({"type": "tail_credit", "id": m["id"], "credit": n}),
            )
            .await;
            self.outstanding += n;
            assert!(self.outstanding <= self.window);
        }
    }
}

fn position(r: &Value) -> (u64, u64) {
    (
        r["index"].as_u64().expect("index"),
        r["ordinal"].as_u64().expect("ordinal"),
    )
}

/// Every record once, in log order (positions and `_seq`s strictly increasing).
fn in_log_order(records: &[Value]) {
    for w in records.windows(2) {
        assert!(
            position(&w[0]) < position(&w[1]),
            "out of order or repeated: {} then {}",
            w[0],
            w[1]
        );
        let seq = |r: &Value| r["seq"].as_str().and_then(|s| s.parse::<i64>().ok());
        assert!(seq(&w[0]) < seq(&w[1]), "{} then {}", w[0], w[1]);
    }
}

/// The rows the records leave in each table: `(id, k)` by table.
fn fold(records: &[Value]) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut tables: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for r in records {
        let table = tables
            .entry(r["table"].as_str().expect("table").to_owned())
            .or_default();
        match r["op"].as_str() {
            Some("insert" | "update") => {
                let new = &r["new"];
                table.insert(new["id"].to_string(), new["k"].to_string());
            }
            Some("delete") => {
                table.remove(&r["old"]["id"].to_string());
            }
            other => panic!("op {other:?}: {r}"),
        }
    }
    tables
}

/// The rows of each table, as [`fold`] gives them.
async fn tables(s: &Server, token: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for t in 0..TABLES {
        let r = s
            .ok(token, &format!("SELECT id, k FROM app.t{t} ORDER BY id"))
            .await;
        let rows: BTreeMap<String, String> = folddb_tests::rows(&r)
            .iter()
            .map(|row| (row[0].to_string(), row[1].to_string()))
            .collect();
        if !rows.is_empty() {
            out.insert(format!("app.t{t}"), rows);
        }
    }
    out
}

/// Writer `w`'s statements on its table: inserts, updates of the row before, deletes; the
/// rows they changed (each statement changes one).
async fn write(s: &Server, token: &str, w: usize, n: i64) -> u64 {
    let table = format!("app.t{}", w % TABLES);
    let base = w as i64 * 1000;
    let mut changed = 0;
    for i in 0..n {
        let mut sqls = vec![format!(
            "INSERT INTO {table} (id, k) VALUES ({}, {i})",
            base + i
        )];
        if i % 3 == 2 {
            sqls.push(format!(
                "UPDATE {table} SET k = k + 100 WHERE id = {}",
                base + i - 1
            ));
        }
        if i % 4 == 3 {
            sqls.push(format!("DELETE FROM {table} WHERE id = {}", base + i - 3));
        }
        for sql in sqls {
            let answer = s.ok(token, &sql).await;
            changed += answer["results"][0]["row_count"].as_u64().unwrap_or(0);
        }
    }
    changed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tail_gets_every_change_once_in_log_order_within_its_credit_and_resumes() {
    let (_dir, s, admin) = server(&[]).await;
    let s = Arc::new(s);
    let (mut ws, ack) = open(&s, &admin, json!({"id": "t", "from": "now", "credit": 7})).await;
    assert_eq!(ack["type"], "tail_ack", "{ack}");
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let (s, admin) = (s.clone(), admin.clone());
            tokio::spawn(async move { write(&s, &admin, w, 12).await })
        })
        .collect();
    let mut client = Client::new(7);
    client.read_until(&mut ws, |r| r.len() >= 40).await;
    // The client goes away mid-stream and comes back from its last cursor.
    drop(ws);
    let mut changed = 0;
    for w in writers {
        changed += w.await.expect("writer");
    }
    let from = client.cursor.clone().expect("a cursor");
    let (mut ws, ack) = open(&s, &admin, json!({"id": "t2", "from": from, "credit": 7})).await;
    assert_eq!(ack["type"], "tail_ack", "{ack}");
    let want = usize::try_from(changed).expect("count");
    client.read_until(&mut ws, |r| r.len() >= want).await;
    quiet(&mut ws).await;
    assert_eq!(client.records.len(), want, "every change, once");
    in_log_order(&client.records);
    assert_eq!(fold(&client.records), tables(&s, &admin).await);
    // The same changes from the start of the journal, in one window: the same records.
    let (mut ws, _) = open(
        &s,
        &admin,
        json!({"id": "all", "from": "earliest", "credit": 100_000, "ops": ["insert", "update", "delete"]}),
    )
    .await;
    let mut again = Client::new(100_000);
    again.read_until(&mut ws, |r| r.len() >= want).await;
    quiet(&mut ws).await;
    assert_eq!(again.records, client.records);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_sigkill_a_tail_resumes_and_misses_nothing_acknowledged() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Arc::new(Server::start(dir.path()).await);
    let admin = s.setup_and_login().await;
    setup_tables(&s, &admin).await;
    let (mut ws, _) = open(&s, &admin, json!({"id": "t", "from": "now", "credit": 5})).await;
    let writer = {
        let (url, http, admin) = (s.url("/v1/api/sql"), s.client.clone(), admin.clone());
        tokio::spawn(async move {
            let mut acked = Vec::new();
            for id in 0..100_000i64 {
                let sql = format!("INSERT INTO app.t0 (id, k) VALUES ({id}, 1)");
                let r = http
                    .post(&url)
                    .bearer_auth(&admin)
                    .json(&json!({ "sql": sql }))
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status().is_success() => acked.push(id),
                    // The server died: this write's outcome is unknown.
                    _ => break,
                }
            }
            acked
        })
    };
    let mut client = Client::new(5);
    client.read_until(&mut ws, |r| r.len() >= 20).await;
    s.sigkill();
    let acked = writer.await.expect("writer");
    drop(ws);
    drop(s);
    let s = Server::start(dir.path()).await;
    let admin = s.login(folddb_tests::DBA.0, folddb_tests::DBA.1).await;
    let from = client.cursor.clone().expect("a cursor");
    let (mut ws, ack) = open(&s, &admin, json!({"id": "t", "from": from, "credit": 5})).await;
    assert_eq!(ack["type"], "tail_ack", "{ack}");
    let want: HashSet<String> = acked.iter().map(|id| format!("\"{id}\"")).collect();
    client
        .read_until(&mut ws, |r| {
            let got: HashSet<String> = r.iter().map(|r| r["new"]["id"].to_string()).collect();
            want.is_subset(&got)
        })
        .await;
    in_log_order(&client.records);
    assert!(client.records.iter().all(|r| r["op"] == "insert"));
}

#[tokio::test]
async fn each_role_tails_what_it_may_read() {
    let (_dir, s, admin) = server(&[]).await;
    s.ok_all(
        &admin,
        &[
            "CREATE USER TABLE app.u (id BIGINT PRIMARY KEY, v TEXT)",
            "CREATE SHARED TABLE app.private (id BIGINT PRIMARY KEY, v TEXT) WITH (ACCESS_LEVEL = 'PRIVATE')",
        ],
    )
    .await;
    let alice = s.user(&admin, "alice", "alice-pass-1", "user").await;
    let bob = s.user(&admin, "bob", "bob-pass-1", "user").await;
    let svc = s.user(&admin, "svc", "svc-pass-1", "service").await;
    s.ok(&alice, "INSERT INTO app.u (id, v) VALUES (1, 'alice')")
        .await;
    s.ok(&bob, "INSERT INTO app.u (id, v) VALUES (1, 'bob')")
        .await;
    s.ok(&admin, "INSERT INTO app.t0 (id, k) VALUES (1, 1)")
        .await;
    s.ok(&admin, "INSERT INTO app.private (id, v) VALUES (1, 'p')")
        .await;
    // What each sees of the whole journal: (table, owner) of each record.
    let seen = |token: String, extra: Value| {
        let s = &s;
        async move {
            let mut tail = json!({"id": "t", "from": "earliest"});
            for (k, v) in extra.as_object().into_iter().flatten() {
                tail[k] = v.clone();
            }
            let (mut ws, ack) = open(s, &token, tail).await;
            assert_eq!(ack["type"], "tail_ack", "{ack}");
            let mut got = Vec::new();
            while let Some(m) = tokio::time::timeout(Duration::from_millis(500), next(&mut ws))
                .await
                .ok()
                .flatten()
            {
                for r in m["records"].as_array().into_iter().flatten() {
                    got.push(match r["op"].as_str() {
                        Some("ddl") => format!(
                            "ddl {} {}",
                            r["kind"].as_str().unwrap_or(""),
                            r["target"].as_str().unwrap_or("")
                        ),
                        _ => format!("{} {}", r["table"].as_str().unwrap_or(""), r["owner"]),
                    });
                }
            }
            got
        }
    };
    assert_eq!(
        seen(alice.clone(), json!({})).await,
        ["app.u \"alice\"", "app.t0 null"]
    );
    assert_eq!(
        seen(svc.clone(), json!({})).await,
        ["app.t0 null", "app.private null"]
    );
    // An administrator also sees the catalog and user changes, in log order, no secrets.
    let all = seen(admin.clone(), json!({})).await;
    let rows: Vec<&String> = all.iter().filter(|r| !r.starts_with("ddl")).collect();
    assert_eq!(
        rows,
        [
            "app.u \"alice\"",
            "app.u \"bob\"",
            "app.t0 null",
            "app.private null"
        ]
    );
    let at = |r: &str| {
        all.iter()
            .position(|x| x == r)
            .unwrap_or_else(|| panic!("{r} in {all:?}"))
    };
    assert!(at("ddl create_user root") < at("ddl setup admin"));
    assert!(at("ddl setup admin") < at("ddl create_namespace app"));
    assert!(at("ddl create_namespace app") < at("ddl create_table app.t0"));
    assert!(at("ddl create_user alice") < at("app.u \"alice\""));
    assert_eq!(
        seen(admin.clone(), json!({"ops": ["ddl"], "namespace": "app"}))
            .await
            .len(),
        7,
        "the namespace and its six tables"
    );
    assert_eq!(
        seen(admin.clone(), json!({"owner": "bob"})).await,
        ["app.u \"bob\""]
    );
    assert_eq!(
        seen(
            admin.clone(),
            json!({"tables": ["app.private"], "ops": ["insert"]})
        )
        .await,
        ["app.private null"]
    );
    assert!(
        seen(admin.clone(), json!({"ops": ["delete"]}))
            .await
            .is_empty()
    );
    // Refused, by name: another user's rows, a table the role may not read, unknown names.
    for (token, tail, code) in [
        (
            &alice,
            json!({"id": "x", "owner": "bob"}),
            "PERMISSION_DENIED",
        ),
        (
            &alice,
            json!({"id": "x", "tables": ["app.private"]}),
            "PERMISSION_DENIED",
        ),
        (
            &admin,
            json!({"id": "x", "tables": ["app.nope"]}),
            "TABLE_NOT_FOUND",
        ),
        (
            &admin,
            json!({"id": "x", "namespace": "nope"}),
            "NAMESPACE_NOT_FOUND",
        ),
        (
            &admin,
            json!({"id": "x", "ops": ["upsert"]}),
            "INVALID_TAIL",
        ),
        (&admin, json!({"id": "x", "from": true}), "INVALID_CURSOR"),
        (&admin, json!({"id": "x", "from": "1:x"}), "INVALID_CURSOR"),
        (
            &admin,
            json!({"id": "x", "from": 1_000_000}),
            "INVALID_CURSOR",
        ),
        (&admin, json!({"id": " "}), "INVALID_TAIL"),
    ] {
        let (mut ws, e) = open(&s, token, tail.clone()).await;
        assert_eq!(
            (&e["type"], &e["code"]),
            (&json!("error"), &json!(code)),
            "{tail}: {e}"
        );
        // The connection carries on.
        send(
            &mut ws,
            json!({"type": "tail", "tail": {"id": "ok", "from": "now"}}),
        )
        .await;
        assert_eq!(next(&mut ws).await.expect("ack")["type"], "tail_ack");
    }
    // A malformed tail message closes that connection with a reason; others carry on.
    let (mut ok, _) = open(&s, &admin, json!({"id": "t", "from": "now"})).await;
    let mut ws = connect(s.port, Some(&admin)).await;
    next(&mut ws).await.expect("auth");
    send(&mut ws, json!({"type": "tail", "tail": {"from": "now"}})).await;
    assert!(next(&mut ws).await.is_none(), "closed");
    s.ok(&admin, "INSERT INTO app.t0 (id, k) VALUES (2, 2)")
        .await;
    let m = next(&mut ok).await.expect("a batch");
    assert_eq!(m["records"][0]["new"]["id"], "2", "{m}");
}

#[tokio::test]
async fn without_credit_nothing_is_sent_and_a_trimmed_position_is_refused() {
    let (_dir, s, admin) = server(&[
        ("FOLDDB_JOURNAL_RETENTION_SECONDS", "2"),
        ("FOLDDB_JOURNAL_TRIM_INTERVAL_SECONDS", "1"),
    ])
    .await;
    let (mut ws, ack) = open(&s, &admin, json!({"id": "t", "from": "now", "credit": 0})).await;
    let start = ack["start"].as_u64().expect("start");
    s.ok(&admin, "INSERT INTO app.t0 (id, k) VALUES (1, 1), (2, 2)")
        .await;
    quiet(&mut ws).await;
    send(
        &mut ws,
        json!({"type": "tail_credit", "id": "t", "credit": 1}),
    )
    .await;
    let m = next(&mut ws).await.expect("a batch");
    assert_eq!(m["records"].as_array().map(Vec::len), Some(1), "{m}");
    quiet(&mut ws).await;
    send(
        &mut ws,
        json!({"type": "tail_credit", "id": "nope", "credit": 1}),
    )
    .await;
    assert_eq!(
        next(&mut ws).await.expect("error")["code"],
        "TAIL_NOT_FOUND"
    );
    // Once the trim has passed the tail's position, its next read tells it, by name, and
    // closes it.
    tokio::time::sleep(Duration::from_millis(4000)).await;
    send(
        &mut ws,
        json!({"type": "tail_credit", "id": "t", "credit": 1}),
    )
    .await;
    let m = next_within(&mut ws, Duration::from_secs(10))
        .await
        .expect("an error");
    assert_eq!(m["code"], "CURSOR_EXPIRED", "{m}");
    assert!(
        m["message"]
            .as_str()
            .unwrap_or("")
            .contains("horizon (log index "),
        "{m}"
    );
    let (_, e) = open(&s, &admin, json!({"id": "t", "from": start - 1})).await;
    assert_eq!(e["code"], "CURSOR_EXPIRED", "{e}");
    // From the earliest kept: nothing is left of those two.
    let (mut ws, ack) = open(&s, &admin, json!({"id": "t", "from": "earliest"})).await;
    assert!(ack["horizon"].as_u64() > Some(start), "{ack}");
    quiet(&mut ws).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folddb_tail_prints_each_change_resumes_after_a_restart_and_stops_on_ctrl_c() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = folddb_tests::free_port();
    let s = Server::start_on(dir.path(), port, &[]).await;
    let admin = s.setup_and_login().await;
    setup_tables(&s, &admin).await;
    s.ok(&admin, "INSERT INTO app.t0 (id, k) VALUES (1, 1)")
        .await;
    s.ok(&admin, "INSERT INTO app.t1 (id, k) VALUES (1, 1)")
        .await;
    let mut child = std::process::Command::new(folddb_tests::folddb_bin())
        .args(["tail", "--url", &s.url(""), "--from", "earliest"])
        .args(["--table", "app.t0", "--window", "2"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("folddb tail starts");
    let lines = folddb_tests::JsonLines::of(&mut child);
    let line = |lines: &folddb_tests::JsonLines| lines.next(Duration::from_secs(30));
    let first = line(&lines);
    assert_eq!(
        (&first["op"], &first["table"], &first["new"]["id"]),
        (&json!("insert"), &json!("app.t0"), &json!("1"))
    );
    s.ok(&admin, "UPDATE app.t0 SET k = 2 WHERE id = 1").await;
    assert_eq!(line(&lines)["op"], "update");
    // The server dies and comes back on the same address: the tail resumes where it was.
    s.sigkill();
    drop(s);
    let s = Server::start_on(dir.path(), port, &[]).await;
    let admin = s.login(folddb_tests::DBA.0, folddb_tests::DBA.1).await;
    s.ok(&admin, "DELETE FROM app.t0 WHERE id = 1").await;
    s.ok(&admin, "INSERT INTO app.t0 (id, k) VALUES (3, 3)")
        .await;
    let ops: Vec<Value> = (0..2).map(|_| line(&lines)["op"].clone()).collect();
    assert_eq!(ops, [json!("delete"), json!("insert")]);
    assert!(lines.quiet(Duration::from_millis(500)), "nothing twice");
    // Ctrl-C: a clean exit.
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let exit = child.wait().expect("exits");
    assert!(exit.success(), "{exit:?}");
}
