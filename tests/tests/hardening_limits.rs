//! No client can exhaust the server (#14, items 2, 3 and 5): functions whose output size
//! the caller picks are refused past a bound, results past their limit are refused while
//! they stream, a request past its statement timeout is cancelled and stops using CPU, too
//! many statements or query blocks are refused before planning, each user's SQL and each
//! address's requests and connections are rate-limited, and a connection that sends its
//! request head or body too slowly, or sits idle, is closed. The server still answers and
//! its memory stays bounded.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use folddb_tests::{Server, rows};
use serde_json::json;

async fn server(env: &[(&str, &str)]) -> (tempfile::TempDir, Server, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Server::start_with(dir.path(), env).await;
    let admin = s.setup_and_login().await;
    s.ok_all(
        &admin,
        &[
            "CREATE NAMESPACE app",
            "CREATE SHARED TABLE app.t (id BIGINT PRIMARY KEY, v TEXT)",
            "INSERT INTO app.t (id, v) VALUES (1, 'sentinel')",
        ],
    )
    .await;
    (dir, s, admin)
}

async fn still_standing(s: &Server, token: &str) {
    let r = s.ok(token, "SELECT id, v FROM app.t").await;
    assert_eq!(rows(&r), vec![json!(["1", "sentinel"])]);
}

/// Waits until the server's CPU use levels off: at most `budget` of CPU in one second.
async fn goes_quiet(s: &Server, budget: Duration) -> bool {
    for _ in 0..20 {
        let before = s.cpu_time();
        tokio::time::sleep(Duration::from_secs(1)).await;
        if s.cpu_time().saturating_sub(before) <= budget {
            return true;
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_hungry_queries_are_refused_and_timeouts_cancel_the_work() {
    let (_dir, s, admin) = server(&[("FOLDDB_STATEMENT_TIMEOUT_SECONDS", "3")]).await;
    let user = s.user(&admin, "eve", "eve-pass-123", "user").await;
    for (sql, code) in [
        ("SELECT array_repeat(1, 100000000)", "SQL_EXECUTION_ERROR"),
        ("SELECT repeat('x', 2147483647)", "SQL_EXECUTION_ERROR"),
        ("SELECT lpad('x', 1000000000)", "SQL_EXECUTION_ERROR"),
        ("SELECT rpad('x', 1000000000, 'yz')", "SQL_EXECUTION_ERROR"),
        // A result held in memory (one of a batch of statements) is refused past its limit.
        (
            "SELECT 1; SELECT * FROM generate_series(1, 100000000000)",
            "RESULT_TOO_LARGE",
        ),
    ] {
        let started = Instant::now();
        let (status, body) = s.sql(&user, sql).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (400, Some(code)),
            "{sql}: {body}"
        );
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("limit of")),
            "{sql}: the reason is shown: {body}"
        );
        eprintln!("{sql}: refused in {:?}", started.elapsed());
    }
    // A request's single query streams its rows instead, in memory bounded by a batch: past
    // the statement timeout the body is cut short, so it cannot be taken for a whole answer.
    let started = Instant::now();
    let mut r = reqwest::Client::new()
        .post(s.url("/v1/api/sql"))
        .bearer_auth(&user)
        .json(&json!({"sql": "SELECT * FROM generate_series(1, 100000000000)"}))
        .send()
        .await
        .expect("request sent");
    assert_eq!(r.status(), 200);
    let (mut received, mut cut) = (0usize, false);
    loop {
        match r.chunk().await {
            Ok(Some(chunk)) => received += chunk.len(),
            Ok(None) => break,
            Err(_) => {
                cut = true;
                break;
            }
        }
    }
    eprintln!(
        "streamed {} MiB in {:?} before the statement timeout",
        received >> 20,
        started.elapsed()
    );
    assert!(
        cut,
        "the streamed body is cut short at the statement timeout"
    );
    assert!(received > 1 << 20, "rows were streamed: {received} bytes");
    assert!(started.elapsed() < Duration::from_secs(30));
    // CPU-bound work past the statement timeout is cancelled, and stops using CPU.
    let (status, body) = s
        .sql(
            &user,
            "SELECT COUNT(*) FROM generate_series(1, 100000000000) a",
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (408, Some("STATEMENT_TIMEOUT")),
        "{body}"
    );
    assert!(
        goes_quiet(&s, Duration::from_millis(300)).await,
        "the cancelled query stopped using CPU"
    );
    still_standing(&s, &admin).await;
    let peak = s.peak_rss_bytes();
    eprintln!("peak RSS: {} MiB", peak >> 20);
    assert!(peak < 2 << 30, "peak RSS {} MiB", peak >> 20);
}

#[tokio::test]
async fn too_many_statements_or_query_blocks_are_refused_before_planning() {
    let (_dir, s, admin) = server(&[]).await;
    let batch = vec!["SELECT 1"; 1001].join("; ");
    let (status, body) = s.sql(&admin, &batch).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("INVALID_SQL")),
        "{body}"
    );
    let ctes: Vec<String> = (0..20_000)
        .map(|i| format!("c{i} AS (SELECT {i})"))
        .collect();
    let started = Instant::now();
    let (status, body) = s
        .sql(&admin, &format!("WITH {} SELECT 1", ctes.join(", ")))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("INVALID_SQL")),
        "{body}"
    );
    eprintln!("20,000 CTEs refused in {:?}", started.elapsed());
    // Within the limits, both work.
    let r = s.ok(&admin, &vec!["SELECT 1"; 1000].join("; ")).await;
    assert_eq!(r["results"].as_array().map(Vec::len), Some(1000));
    let ctes: Vec<String> = (0..200)
        .map(|i| format!("c{i} AS (SELECT {i} AS x)"))
        .collect();
    let r = s
        .ok(
            &admin,
            &format!("WITH {} SELECT x FROM c199", ctes.join(", ")),
        )
        .await;
    assert_eq!(rows(&r), vec![json!(["199"])]);
    still_standing(&s, &admin).await;
}

#[tokio::test]
async fn sql_per_user_and_requests_per_address_are_rate_limited() {
    let (_dir, s, admin) = server(&[
        ("FOLDDB_RATE_LIMIT_SQL_PER_USER_PER_SEC", "5"),
        ("FOLDDB_RATE_LIMIT_REQUESTS_PER_IP_PER_SEC", "40"),
    ])
    .await;
    // Per user: past 5 statements a second, 429 in the SQL error envelope. (Sent at once:
    // however slow the machine, they land within a second or two.)
    let answers = futures::future::join_all((0..20).map(|_| s.sql(&admin, "SELECT 1"))).await;
    let limited: Vec<_> = answers
        .iter()
        .filter(|(status, _)| *status == 429)
        .collect();
    assert!(
        !limited.is_empty(),
        "the per-user SQL limit applied: {answers:?}"
    );
    for (_, body) in limited {
        assert_eq!(body["error"]["code"], "RATE_LIMIT_EXCEEDED", "{body}");
    }
    // Per address: past 40 requests a second, 429 with Retry-After.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let health = |_| async {
        let r = s.client.get(s.url("/health")).send().await.expect("sent");
        let status = r.status().as_u16();
        let retry = r
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body: serde_json::Value = r.json().await.expect("json");
        (status, retry, body)
    };
    let answers = futures::future::join_all((0..120).map(health)).await;
    let limited: Vec<_> = answers
        .iter()
        .filter(|(status, ..)| *status == 429)
        .collect();
    assert!(!limited.is_empty(), "the per-address limit applied");
    for (_, retry, body) in limited {
        assert_eq!(retry.as_deref(), Some("1"));
        assert_eq!(body["error"], "RATE_LIMIT_EXCEEDED");
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    still_standing(&s, &admin).await;
}

/// Reads from `stream` until the server closes it (or `within` passes): whether it did, and
/// what it sent.
fn closed_by_server(stream: &mut TcpStream, within: Duration) -> (bool, String) {
    stream.set_read_timeout(Some(within)).expect("read timeout");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return (true, String::from_utf8_lossy(&got).into_owned()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return (true, String::from_utf8_lossy(&got).into_owned());
            }
            Err(_) => return (false, String::from_utf8_lossy(&got).into_owned()),
        }
    }
}

#[tokio::test]
async fn slow_idle_and_surplus_connections_are_closed() {
    let (_dir, s, admin) = server(&[
        ("FOLDDB_HEADER_READ_TIMEOUT_SECONDS", "1"),
        ("FOLDDB_BODY_READ_TIMEOUT_SECONDS", "1"),
        ("FOLDDB_MAX_CONNECTIONS_PER_IP", "8"),
    ])
    .await;
    let addr = format!("127.0.0.1:{}", s.port);
    // Half a request head, then nothing: closed.
    let mut half = TcpStream::connect(&addr).expect("connect");
    half.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .expect("write");
    let (closed, _) = closed_by_server(&mut half, Duration::from_secs(10));
    assert!(closed, "a half-sent head is not kept open");
    // A finished request, then an idle keep-alive connection: closed.
    let mut idle = TcpStream::connect(&addr).expect("connect");
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    let (closed, answer) = closed_by_server(&mut idle, Duration::from_secs(10));
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(closed, "an idle keep-alive connection is closed");
    // A body sent too slowly: 408.
    let mut slow = TcpStream::connect(&addr).expect("connect");
    slow.write_all(
        b"POST /v1/api/sql HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"sql\"",
    )
    .expect("write");
    let (_, answer) = closed_by_server(&mut slow, Duration::from_secs(10));
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    // Past 8 connections from one address: 503 TOO_MANY_CONNECTIONS.
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(TcpStream::connect(&addr).expect("connect"));
    }
    let mut extra = TcpStream::connect(&addr).expect("connect");
    let (closed, answer) = closed_by_server(&mut extra, Duration::from_secs(10));
    assert!(closed, "{answer}");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("TOO_MANY_CONNECTIONS"), "{answer}");
    drop(held);
    // Once they are gone, new connections are served. (A fresh client: the shared one's
    // pooled connections were closed by the 1 s idle timeout meanwhile.)
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let sent = client
            .post(s.url("/v1/api/sql"))
            .bearer_auth(&admin)
            .json(&json!({"sql": "SELECT id, v FROM app.t"}))
            .send()
            .await;
        if let Ok(r) = sent
            && r.status().as_u16() == 200
        {
            let body: serde_json::Value = r.json().await.expect("json");
            assert_eq!(rows(&body), vec![json!(["1", "sentinel"])]);
            break;
        }
        assert!(Instant::now() < deadline, "served again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Queries are planned and run on threads of their own at a lower CPU priority (nice 19 by
/// default, `FOLDDB_QUERY_NICE`), so that a full scan cannot hold up the point reads and
/// writes the request threads serve; those keep the default priority.
#[tokio::test]
async fn queries_run_on_threads_of_lower_priority_than_requests() {
    for (env, nice) in [(None, 19), (Some("7"), 7)] {
        let env: Vec<(&str, &str)> = env.map(|n| ("FOLDDB_QUERY_NICE", n)).into_iter().collect();
        let (_dir, s, admin) = server(&env).await;
        let r = s
            .ok(&admin, "SELECT COUNT(*), MAX(v) FROM app.t GROUP BY id % 3")
            .await;
        assert_eq!(rows(&r), vec![json!(["1", "sentinel"])]);
        let threads = s.thread_priorities();
        let queries: Vec<_> = threads
            .iter()
            .filter(|(name, _)| name.starts_with("folddb-query"))
            .collect();
        assert!(!queries.is_empty(), "query threads: {threads:?}");
        assert!(queries.iter().all(|(_, n)| *n == nice), "{threads:?}");
        let others: Vec<_> = threads
            .iter()
            .filter(|(name, _)| !name.starts_with("folddb-query"))
            .collect();
        assert!(others.iter().all(|(_, n)| *n == 0), "{threads:?}");
    }
    // Out of range: refused at startup.
    let dir = tempfile::tempdir().expect("temp dir");
    let out = std::process::Command::new(folddb_tests::folddb_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("FOLDDB_QUERY_NICE", "20")
        .output()
        .expect("folddb runs");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("query_nice"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
