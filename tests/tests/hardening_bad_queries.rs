//! No statement of a logged-in user can take the server down or store what cannot be read
//! back (#14, items 1, 6 and 7): long operator chains over HTTP and in a subscription
//! filter are refused with `INVALID_SQL` before anything recurses over them, overflowing
//! DECIMALs are errors rather than wrapped values, and NaN / infinities are refused on every
//! write. After each attack the server still answers `/health` and a sentinel table is
//! unchanged.

use folddb_tests::ws::{connect, next, send};
use folddb_tests::{Server, rows};
use serde_json::{Value, json};

async fn server() -> (tempfile::TempDir, Server, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Server::start(dir.path()).await;
    let admin = s.setup_and_login().await;
    s.ok_all(
        &admin,
        &[
            "CREATE NAMESPACE app",
            "CREATE SHARED TABLE app.t (id BIGINT PRIMARY KEY, n BIGINT, v TEXT) WITH (ACCESS_LEVEL = 'PUBLIC')",
            "INSERT INTO app.t (id, n, v) VALUES (1, 10, 'sentinel'), (2, 20, 'sentinel')",
        ],
    )
    .await;
    (dir, s, admin)
}

/// The server answers, and the sentinel rows are as they were.
async fn still_standing(s: &Server, token: &str) {
    assert_eq!(s.health_status().await, 200);
    let r = s.ok(token, "SELECT id, n, v FROM app.t ORDER BY id").await;
    assert_eq!(
        rows(&r),
        vec![
            json!(["1", "10", "sentinel"]),
            json!(["2", "20", "sentinel"])
        ]
    );
}

fn chain(term: &str, op: &str, n: usize) -> String {
    vec![term; n].join(op)
}

#[tokio::test]
async fn deep_operator_chains_are_refused_and_the_server_stays_up() {
    let (_dir, s, admin) = server().await;
    let user = s.user(&admin, "eve", "eve-pass-123", "user").await;
    let n = 2_000;
    let attacks = [
        format!("SELECT {}", chain("1", "+", n)),
        format!("SELECT * FROM app.t WHERE {}", chain("n = 1", " OR ", n)),
        format!("SELECT * FROM app.t WHERE {}", chain("n > 1", " AND ", n)),
        format!("SELECT {}", chain("'x'", " || ", n)),
        chain("SELECT 1", " UNION ALL ", n),
        format!(
            "INSERT INTO app.t (id, n, v) VALUES (3, {}, 'x')",
            chain("1", "+", n)
        ),
        format!("UPDATE app.t SET n = {} WHERE id = 1", chain("1", "+", n)),
        format!("DELETE FROM app.t WHERE id = {}", chain("1", "+", n)),
        format!("SELECT * FROM app.t WHERE id = {}", chain("1", "+", n)),
        format!("SELECT {}1", "- ".repeat(n)),
        format!("SELECT {}1{}", "(".repeat(n), ")".repeat(n)),
        format!("SELECT {}TRUE", "NOT ".repeat(n)),
    ];
    for sql in &attacks {
        let (status, body) = s.sql(&user, sql).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (400, Some("INVALID_SQL")),
            "{}…: {body}",
            &sql[..60]
        );
    }
    still_standing(&s, &admin).await;

    // The same chain in a subscription's filter.
    let mut ws = connect(s.port, Some(&user)).await;
    next(&mut ws).await.expect("auth");
    let sql = format!("SELECT * FROM app.t WHERE {}", chain("n = 1", " OR ", n));
    send(
        &mut ws,
        json!({"type": "subscribe", "subscription": {"id": "deep", "sql": sql}}),
    )
    .await;
    let m = next(&mut ws).await.expect("an answer");
    assert_eq!(
        (m["type"].as_str(), m["code"].as_str()),
        (Some("error"), Some("INVALID_SQL")),
        "{m}"
    );
    still_standing(&s, &admin).await;

    // Within the limit, a long chain is planned and answered.
    let r = s
        .ok(&user, &format!("SELECT {}", chain("1", "+", 400)))
        .await;
    assert_eq!(rows(&r), vec![json!(["400"])]);
    let r = s
        .ok(
            &user,
            &format!(
                "SELECT id FROM app.t WHERE {} ORDER BY id",
                chain("n = 20", " OR ", 200)
            ),
        )
        .await;
    assert_eq!(rows(&r), vec![json!(["2"])]);
}

#[tokio::test]
async fn decimal_overflow_and_non_finite_floats_are_refused_on_every_write() {
    let (_dir, s, admin) = server().await;
    s.ok(
        &admin,
        "CREATE SHARED TABLE app.num (id BIGINT PRIMARY KEY, d DECIMAL(38, 0), f DOUBLE, r FLOAT)",
    )
    .await;
    s.ok(
        &admin,
        "INSERT INTO app.num (id, d, f, r) VALUES (1, 5, 1.5, 2.5)",
    )
    .await;
    let refused = [
        "INSERT INTO app.num (id, d) VALUES (2, 170141183460469231731687303715884105727.5)",
        "INSERT INTO app.num (id, d) VALUES (2, -170141183460469231731687303715884105727.5)",
        "INSERT INTO app.num (id, d) VALUES (2, 100000000000000000000000000000000000000)",
        "UPDATE app.num SET d = 99999999999999999999999999999999999999.5 WHERE id = 1",
        "INSERT INTO app.num (id, f) VALUES (2, 'NaN')",
        "INSERT INTO app.num (id, f) VALUES (2, CAST('NaN' AS DOUBLE))",
        "INSERT INTO app.num (id, f) VALUES (2, 'Infinity')",
        "INSERT INTO app.num (id, r) VALUES (2, '-inf')",
        "INSERT INTO app.num (id, f) VALUES (2, 1e308 * 10)",
        "UPDATE app.num SET f = 'NaN' WHERE id = 1",
        "UPDATE app.num SET f = f / 0.0 WHERE id = 1",
        "UPDATE app.num SET r = 1e300 WHERE id = 1",
    ];
    for sql in refused {
        let (status, body) = s.sql(&admin, sql).await;
        assert_eq!(
            (status, body["status"].as_str()),
            (400, Some("error")),
            "{sql}: {body}"
        );
    }
    // Parameters take the same path.
    let (status, body) = s
        .post(
            "/v1/api/sql",
            Some(&admin),
            &json!({"sql": "INSERT INTO app.num (id, f) VALUES (3, $1)", "params": ["NaN"]}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    // Nothing was written, and every reader can still read the table.
    let r = s
        .ok(&admin, "SELECT id, d, f, r FROM app.num ORDER BY id")
        .await;
    assert_eq!(rows(&r), vec![json!(["1", "5", 1.5, 2.5])]);
    let check: Value = s.ok(&admin, "STORAGE CHECK local").await;
    assert_eq!(check["status"], "success");
    still_standing(&s, &admin).await;
}
