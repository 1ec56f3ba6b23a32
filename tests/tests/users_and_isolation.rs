//! Users, roles and isolation (API.md 1.3–1.6, 3.3, 3.7–3.9), against the real binary: users
//! created in SQL log in and see only their own rows of USER tables, however they ask; the
//! role matrix is enforced before any statement of a batch runs; EXECUTE AS; tokens that
//! must be refused are; logins are protected; changes are audited.

use folddb_tests::{JWT_SECRET, Server, rows};
use serde_json::{Value, json};

/// An admin and the users `alice` and `bob` (role user) on a fresh server, with a USER table
/// `app.notes` whose `owner` column records who wrote each row.
async fn two_users(s: &Server) -> (String, String, String) {
    let admin = s.setup_and_login().await;
    s.ok(&admin, "CREATE NAMESPACE app").await;
    s.ok(
        &admin,
        "CREATE USER TABLE app.notes (id BIGINT PRIMARY KEY, owner TEXT DEFAULT CURRENT_USER(), body TEXT)",
    )
    .await;
    for u in ["alice", "bob"] {
        let r = s
            .ok(
                &admin,
                &format!("CREATE USER {u} WITH PASSWORD '{u}-pass-1' ROLE user EMAIL '{u}@x.io'"),
            )
            .await;
        assert_eq!(r["results"][0]["message"], format!("User '{u}' created"));
    }
    let alice = s.login("alice", "alice-pass-1").await;
    let bob = s.login("bob", "bob-pass-1").await;
    (admin, alice, bob)
}

fn ids_and_owners(r: &Value) -> Vec<Value> {
    rows(r)
}

#[tokio::test]
async fn users_never_see_or_change_each_others_rows() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Server::start(dir.path()).await;
    let (admin, alice, bob) = two_users(&s).await;
    s.ok(
        &admin,
        "CREATE SHARED TABLE app.tags (id BIGINT PRIMARY KEY, label TEXT) WITH (ACCESS_LEVEL = 'PUBLIC')",
    )
    .await;
    s.ok(
        &admin,
        "INSERT INTO app.tags (id, label) VALUES (1, 'red'), (3, 'blue')",
    )
    .await;
    // The same primary keys in three scopes: PK uniqueness is per user.
    s.ok(
        &alice,
        "INSERT INTO app.notes (id, body) VALUES (1, 'a1'), (2, 'a2')",
    )
    .await;
    s.ok(
        &bob,
        "INSERT INTO app.notes (id, body) VALUES (1, 'b1'), (3, 'b3')",
    )
    .await;
    s.ok(&admin, "INSERT INTO app.notes (id, body) VALUES (1, 'd1')")
        .await;

    let all = "SELECT id, owner, body FROM app.notes ORDER BY id";
    assert_eq!(
        ids_and_owners(&s.ok(&alice, all).await),
        vec![json!(["1", "alice", "a1"]), json!(["2", "alice", "a2"])]
    );
    assert_eq!(
        ids_and_owners(&s.ok(&bob, all).await),
        vec![json!(["1", "bob", "b1"]), json!(["3", "bob", "b3"])]
    );
    // Owner-scoped even for a dba.
    assert_eq!(
        ids_and_owners(&s.ok(&admin, all).await),
        vec![json!(["1", "admin", "d1"])]
    );
    // Aggregates, joins with a SHARED table, subqueries, point reads of another's key.
    let r = s
        .ok(&alice, "SELECT COUNT(*), MAX(id) FROM app.notes")
        .await;
    assert_eq!(rows(&r), vec![json!(["2", "2"])]);
    let r = s
        .ok(
            &alice,
            "SELECT n.id, t.label FROM app.notes n JOIN app.tags t ON n.id = t.id ORDER BY n.id",
        )
        .await;
    assert_eq!(rows(&r), vec![json!(["1", "red"])]);
    let r = s
        .ok(
            &alice,
            "SELECT id FROM app.notes WHERE id IN (SELECT id FROM app.notes WHERE owner <> 'alice')",
        )
        .await;
    assert_eq!(rows(&r), Vec::<Value>::new());
    let r = s.ok(&alice, "SELECT * FROM app.notes WHERE id = 3").await;
    assert_eq!(rows(&r), Vec::<Value>::new());
    let r = s
        .ok(
            &alice,
            "WITH x AS (SELECT owner FROM app.notes) SELECT DISTINCT owner FROM x UNION SELECT owner FROM app.notes",
        )
        .await;
    assert_eq!(rows(&r), vec![json!(["alice"])]);

    // Writes to another user's key change nothing of theirs.
    let r = s
        .ok(&alice, "UPDATE app.notes SET body = 'hacked' WHERE id = 3")
        .await;
    assert_eq!(r["results"][0]["message"], "Updated 0 row(s)");
    let r = s
        .ok(&alice, "UPDATE app.notes SET body = 'mine' WHERE id >= 0")
        .await;
    assert_eq!(r["results"][0]["message"], "Updated 2 row(s)");
    let r = s.ok(&alice, "DELETE FROM app.notes WHERE id = 1").await;
    assert_eq!(r["results"][0]["message"], "Deleted 1 row(s)");
    assert_eq!(
        ids_and_owners(&s.ok(&bob, all).await),
        vec![json!(["1", "bob", "b1"]), json!(["3", "bob", "b3"])]
    );
    assert_eq!(
        ids_and_owners(&s.ok(&admin, all).await),
        vec![json!(["1", "admin", "d1"])]
    );
    let r = s
        .ok(
            &alice,
            "SELECT id, owner FROM app.notes WHERE _deleted = true",
        )
        .await;
    assert_eq!(rows(&r), vec![json!(["1", "alice"])]);

    // Injection through parameters and identifiers finds nothing and changes nothing.
    let (code, r) = s
        .post(
            "/v1/api/sql",
            Some(&alice),
            &json!({"sql": "SELECT id FROM app.notes WHERE body = $1", "params": ["' OR 1=1 --"]}),
        )
        .await;
    assert_eq!((code, rows(&r)), (200, Vec::<Value>::new()), "{r}");
    assert_eq!(
        s.fails(&alice, "SELECT * FROM app.\"notes; DROP TABLE app.notes\"")
            .await
            .0,
        400
    );
    assert_eq!(
        s.fails(
            &alice,
            "SELECT * FROM app.notes WHERE id = 1 OR 1=1; DROP TABLE app.notes"
        )
        .await,
        (403, "PERMISSION_DENIED".into())
    );
    assert_eq!(
        ids_and_owners(&s.ok(&bob, all).await).len(),
        2,
        "bob's rows are intact"
    );

    // EXECUTE AS USER: the dba acts in bob's scope, and the result says so.
    let r = s
        .ok(
            &admin,
            "EXECUTE AS USER 'bob' (SELECT id, owner FROM app.notes ORDER BY id)",
        )
        .await;
    assert_eq!(rows(&r), vec![json!(["1", "bob"]), json!(["3", "bob"])]);
    assert_eq!(r["results"][0]["as_user"], "bob");
    let r = s
        .ok(
            &admin,
            "EXECUTE AS USER bob (INSERT INTO app.notes (id, body) VALUES (4, 'for bob'))",
        )
        .await;
    assert_eq!(r["results"][0]["as_user"], "bob");
    assert_eq!(r["results"][0]["message"], "Inserted 1 row(s)");
    let r = s
        .ok(&bob, "SELECT id, owner, body FROM app.notes WHERE id = 4")
        .await;
    assert_eq!(rows(&r), vec![json!(["4", "bob", "for bob"])]);
    // A regular user may only name itself.
    assert_eq!(
        s.fails(&alice, "EXECUTE AS USER 'bob' (SELECT * FROM app.notes)")
            .await,
        (403, "PERMISSION_DENIED".into())
    );
    let r = s
        .ok(&alice, "EXECUTE AS USER 'alice' (SELECT id FROM app.notes)")
        .await;
    assert_eq!(rows(&r), vec![json!(["2"])]);
    // One statement only, not nested, not on SHARED tables.
    assert_eq!(
        s.fails(&admin, "EXECUTE AS USER 'bob' (SELECT 1; SELECT 2)")
            .await,
        (400, "INVALID_INPUT".into())
    );
    assert_eq!(
        s.fails(
            &admin,
            "EXECUTE AS USER 'bob' (EXECUTE AS USER 'alice' (SELECT 1))"
        )
        .await,
        (400, "INVALID_INPUT".into())
    );
    assert_eq!(
        s.fails(&admin, "EXECUTE AS USER 'bob' (SELECT * FROM app.tags)")
            .await,
        (400, "SQL_EXECUTION_ERROR".into())
    );
    assert_eq!(
        s.fails(&admin, "EXECUTE AS USER 'b''; DROP' (SELECT 1)")
            .await
            .0,
        400
    );
}

#[tokio::test]
async fn the_role_matrix_is_enforced_before_anything_runs() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Server::start(dir.path()).await;
    let (admin, alice, _bob) = two_users(&s).await;
    s.ok(
        &admin,
        "CREATE USER svc WITH PASSWORD 'svc-pass-123' ROLE developer",
    )
    .await;
    let svc = s.login("svc", "svc-pass-123").await;
    for (level, name) in [
        ("PUBLIC", "pub"),
        ("PRIVATE", "priv"),
        ("RESTRICTED", "restr"),
        ("DBA", "dbaonly"),
    ] {
        s.ok(
            &admin,
            &format!("CREATE SHARED TABLE app.{name} (id BIGINT PRIMARY KEY, v TEXT) WITH (ACCESS_LEVEL = '{level}')"),
        )
        .await;
        s.ok(
            &admin,
            &format!("INSERT INTO app.{name} (id, v) VALUES (1, 'x')"),
        )
        .await;
    }
    let denied = (403, "PERMISSION_DENIED".to_owned());
    let read = |t: &str| format!("SELECT * FROM app.{t}");
    let write = |t: &str| format!("INSERT INTO app.{t} (id, v) VALUES (2, 'y')");

    // SHARED access levels: (table, user may read, user may write, service may read/write).
    for (t, user_reads, service_ok) in [
        ("pub", true, true),
        ("priv", false, true),
        ("restr", false, true),
        ("dbaonly", false, false),
    ] {
        let got = s.sql(&alice, &read(t)).await.0;
        assert_eq!(got == 200, user_reads, "user reading {t}: {got}");
        assert_eq!(s.fails(&alice, &write(t)).await, denied, "user writing {t}");
        let got = s.sql(&svc, &read(t)).await.0;
        assert_eq!(got == 200, service_ok, "service reading {t}: {got}");
        let got = s.sql(&svc, &write(t)).await.0;
        assert_eq!(got == 200, service_ok, "service writing {t}: {got}");
        s.ok(&admin, &read(t)).await;
    }
    // A private table in disguise: join, subquery, CTE, UNION, INSERT … SELECT.
    for sql in [
        "SELECT * FROM app.pub p JOIN app.priv q ON p.id = q.id",
        "SELECT * FROM app.pub WHERE id IN (SELECT id FROM app.priv)",
        "WITH x AS (SELECT * FROM app.priv) SELECT * FROM x",
        "SELECT id FROM app.pub UNION ALL SELECT id FROM app.priv",
        "INSERT INTO app.notes (id, body) SELECT id, v FROM app.priv",
    ] {
        assert_eq!(s.fails(&alice, sql).await, denied, "{sql}");
    }

    // System tables: dba/system only, in every disguise; never writable.
    for sql in [
        "SELECT * FROM system.users",
        "SELECT * FROM app.notes WHERE owner IN (SELECT user_id FROM system.users)",
        "WITH u AS (SELECT * FROM system.users) SELECT * FROM u",
        "SELECT id FROM app.notes UNION SELECT 1 FROM system.tables",
        "EXPLAIN SELECT * FROM system.users",
        "SELECT * FROM \"system\".\"users\"",
    ] {
        assert_eq!(s.fails(&alice, sql).await, denied, "{sql}");
        assert_eq!(s.fails(&svc, sql).await, denied, "{sql}");
    }
    // information_schema is everyone's, and lists only what the caller may read.
    let listed = s
        .ok(
            &alice,
            "SELECT table_schema || '.' || table_name FROM information_schema.tables \
             WHERE table_schema <> 'information_schema'",
        )
        .await;
    let listed: Vec<String> = rows(&listed)
        .iter()
        .map(|r| r[0].as_str().unwrap_or("").to_owned())
        .collect();
    assert!(listed.contains(&"app.pub".to_owned()), "{listed:?}");
    assert!(
        !listed
            .iter()
            .any(|t| t == "app.priv" || t.starts_with("system.")),
        "{listed:?}"
    );
    s.ok(&admin, "SELECT user_id FROM system.users").await;
    assert_eq!(
        s.fails(&admin, "INSERT INTO system.users (user_id) VALUES ('x')")
            .await,
        denied
    );
    assert_eq!(
        s.fails(&admin, "DELETE FROM system.users WHERE user_id = 'alice'")
            .await,
        denied
    );

    // DDL by role.
    assert_eq!(
        s.fails(&alice, "CREATE SHARED TABLE app.s1 (id BIGINT PRIMARY KEY)")
            .await,
        denied
    );
    assert_eq!(
        s.fails(&alice, "CREATE TABLE app.s2 (id BIGINT PRIMARY KEY)")
            .await,
        denied,
        "the default type is SHARED"
    );
    s.ok(&alice, "CREATE USER TABLE app.mine (id BIGINT PRIMARY KEY)")
        .await;
    s.ok(&svc, "CREATE SHARED TABLE app.s3 (id BIGINT PRIMARY KEY)")
        .await;
    assert_eq!(
        s.fails(&alice, "ALTER TABLE app.pub ADD COLUMN extra TEXT")
            .await,
        denied
    );
    // A table's schema is every user's: role user alters no table (FoldDB is stricter than
    // the reference here), service does.
    assert_eq!(
        s.fails(&alice, "ALTER TABLE app.mine ADD COLUMN extra TEXT")
            .await,
        denied
    );
    s.ok(&svc, "ALTER TABLE app.mine ADD COLUMN extra TEXT")
        .await;
    s.ok(&svc, "ALTER TABLE app.priv SET ACCESS LEVEL PUBLIC")
        .await;
    s.ok(&alice, "SELECT * FROM app.priv").await;
    for sql in [
        "DROP TABLE app.mine",
        "CREATE NAMESPACE other",
        "DROP NAMESPACE app",
        "CREATE USER eve WITH PASSWORD 'eve-pass-1' ROLE dba",
        "ALTER USER alice SET ROLE dba",
        "DROP USER bob",
    ] {
        assert_eq!(s.fails(&alice, sql).await, denied, "{sql}");
        assert_eq!(s.fails(&svc, sql).await, denied, "{sql}");
    }
    // Only system manages system users.
    assert_eq!(
        s.fails(
            &admin,
            "CREATE USER sys2 WITH PASSWORD 'sys2-pass-1' ROLE system"
        )
        .await,
        denied
    );

    // The whole batch is checked first: the INSERT before the forbidden read never runs.
    assert_eq!(
        s.fails(
            &alice,
            "INSERT INTO app.notes (id, body) VALUES (77, 'x'); SELECT * FROM system.users"
        )
        .await,
        denied
    );
    assert_eq!(
        s.fails(
            &alice,
            "INSERT INTO app.notes (id, body) VALUES (78, 'x'); DROP TABLE app.mine"
        )
        .await,
        denied
    );
    let r = s
        .ok(&alice, "SELECT COUNT(*) FROM app.notes WHERE id >= 77")
        .await;
    assert_eq!(rows(&r), vec![json!(["0"])]);
}

#[tokio::test]
async fn users_are_created_altered_dropped_and_audited() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Server::start(dir.path()).await;
    let (admin, alice, _bob) = two_users(&s).await;
    // Duplicates, bad ids and oversized passwords are refused and change nothing.
    assert_eq!(
        s.fails(&admin, "CREATE USER alice WITH PASSWORD 'another-1'")
            .await
            .0,
        400
    );
    assert_eq!(
        s.fails(&admin, "CREATE USER 'a b' WITH PASSWORD 'another-1'")
            .await
            .0,
        400
    );
    let long = "x".repeat(200);
    assert_eq!(
        s.fails(&admin, &format!("CREATE USER carol WITH PASSWORD '{long}'"))
            .await
            .0,
        400
    );
    let r = s
        .ok(
            &admin,
            "SELECT user_id, role, email, password_hash FROM system.users WHERE user_id IN ('alice', 'carol')",
        )
        .await;
    assert_eq!(
        rows(&r),
        vec![json!(["alice", "user", "alice@x.io", "***"])],
        "the hash is masked"
    );

    // A role change invalidates tokens that carry the old role; a new login works.
    let r = s.ok(&admin, "ALTER USER alice SET ROLE 'service'").await;
    assert_eq!(r["results"][0]["message"], "User 'alice' updated");
    assert_eq!(
        s.fails(&alice, "SELECT 1").await,
        (401, "INVALID_CREDENTIALS".into())
    );
    let alice = s.login("alice", "alice-pass-1").await;
    s.ok(&alice, "SELECT 1").await;
    s.ok(&admin, "ALTER USER alice SET PASSWORD 'alice-pass-2'")
        .await;
    let (code, _) = s
        .post(
            "/v1/api/auth/login",
            None,
            &json!({"user": "alice", "password": "alice-pass-1"}),
        )
        .await;
    assert_eq!(code, 401);
    let alice = s.login("alice", "alice-pass-2").await;

    // DROP USER: soft delete; its tokens and its password stop working.
    let r = s.ok(&admin, "DROP USER alice").await;
    assert_eq!(
        r["results"][0]["message"],
        "User 'alice' dropped (soft delete)"
    );
    assert_eq!(
        s.fails(&alice, "SELECT 1").await,
        (401, "INVALID_CREDENTIALS".into())
    );
    let (code, _) = s
        .post(
            "/v1/api/auth/login",
            None,
            &json!({"user": "alice", "password": "alice-pass-2"}),
        )
        .await;
    assert_eq!(code, 401);
    let r = s
        .ok(
            &admin,
            "SELECT deleted_at IS NOT NULL FROM system.users WHERE user_id = 'alice'",
        )
        .await;
    assert_eq!(rows(&r), vec![json!([true])]);
    s.ok(&admin, "DROP USER IF EXISTS alice").await;
    assert_eq!(s.fails(&admin, "DROP USER root").await.0, 403);

    // The audit log holds the user changes and the logins, with who and from where. Failed
    // logins are written aggregated, every few seconds: wait for them.
    let failed =
        "SELECT COUNT(*) FROM system.audit_log WHERE action = 'login_failed' AND target = 'alice'";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while rows(&s.ok(&admin, failed).await) == vec![json!(["0"])] {
        assert!(
            std::time::Instant::now() < deadline,
            "the failed login was audited"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let r = s
        .ok(
            &admin,
            "SELECT actor_user_id, action, target FROM system.audit_log WHERE action <> 'login' ORDER BY audit_id",
        )
        .await;
    let got = rows(&r);
    for want in [
        json!(["admin", "create_user", "alice"]),
        json!(["admin", "create_user", "bob"]),
        json!(["admin", "alter_user", "alice"]),
        json!(["admin", "drop_user", "alice"]),
        json!(["alice", "login_failed", "alice"]),
    ] {
        assert!(got.contains(&want), "{want} missing from {got:?}");
    }
    let r = s
        .ok(
            &admin,
            "SELECT COUNT(*) FROM system.audit_log WHERE action = 'login' AND target = 'bob' AND ip_address = '127.0.0.1'",
        )
        .await;
    assert_eq!(rows(&r), vec![json!(["1"])]);
}

/// Base64url without padding, for hand-made tokens.
fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn sign(claims: &Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("signed")
}

#[tokio::test]
async fn tokens_that_must_be_refused_are() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Server::start(dir.path()).await;
    let admin = s.setup_and_login().await;
    let claims = |sub: &str, role: &str, token_type: &str, exp: u64| {
        json!({"sub": sub, "iss": "kalamdb", "iat": now_s(), "exp": exp,
               "email": null, "role": role, "token_type": token_type})
    };
    let later = now_s() + 3600;
    // A well-formed token we signed ourselves works: the matrix below differs in one thing.
    let good = sign(&claims("admin", "dba", "access", later), JWT_SECRET);
    s.ok(&good, "SELECT 1").await;

    let refresh = {
        let (_, body) = s
            .post(
                "/v1/api/auth/login",
                None,
                &json!({"user": "admin", "password": "kalamdb123"}),
            )
            .await;
        body["refresh_token"].as_str().unwrap_or("").to_owned()
    };
    let none = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(claims("admin", "dba", "access", later)
            .to_string()
            .as_bytes())
    );
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "forged signature",
            sign(&claims("admin", "dba", "access", later), "not-the-secret"),
            "INVALID_CREDENTIALS",
        ),
        ("alg none", none, "INVALID_CREDENTIALS"),
        (
            "expired",
            sign(
                &claims("admin", "dba", "access", now_s() - 3600),
                JWT_SECRET,
            ),
            "TOKEN_EXPIRED",
        ),
        (
            "refresh token as a credential",
            refresh,
            "INVALID_CREDENTIALS",
        ),
        (
            "role differs from the stored one",
            sign(&claims("admin", "system", "access", later), JWT_SECRET),
            "INVALID_CREDENTIALS",
        ),
        (
            "unknown user",
            sign(&claims("mallory", "dba", "access", later), JWT_SECRET),
            "INVALID_CREDENTIALS",
        ),
        (
            "another issuer",
            sign(
                &json!({"sub": "admin", "iss": "evil", "iat": now_s(), "exp": later,
                        "email": null, "role": "dba", "token_type": "access"}),
                JWT_SECRET,
            ),
            "INVALID_CREDENTIALS",
        ),
        (
            "truncated",
            admin[..admin.len() - 5].to_owned(),
            "INVALID_CREDENTIALS",
        ),
        ("garbage", "not.a.jwt".to_owned(), "INVALID_CREDENTIALS"),
    ];
    for (what, token, code) in cases {
        let (status, got) = s.fails(&token, "SELECT 1").await;
        assert_eq!((status, got.as_str()), (401, code), "{what}");
    }
    // No header and Basic auth: tests/auth_setup_login.rs.
}

#[tokio::test]
async fn logins_are_protected() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Server::start(dir.path()).await;
    let admin = s.setup_and_login().await;
    s.ok(&admin, "CREATE USER alice WITH PASSWORD 'alice-pass-1'")
        .await;
    let login = |user: &'static str, password: &'static str| {
        let s = &s;
        async move {
            s.post(
                "/v1/api/auth/login",
                None,
                &json!({"user": user, "password": password}),
            )
            .await
        }
    };
    // An unknown user and a wrong password get the same answer.
    let unknown = login("nobody", "whatever-1").await;
    let wrong = login("alice", "wrong-pass-1").await;
    assert_eq!(unknown, wrong);
    assert_eq!(
        unknown,
        (
            401,
            json!({"error": "unauthorized", "message": "Invalid credentials"})
        )
    );
    // Five failures in a row (the one above and four more) lock the account, even against
    // the right password.
    for _ in 0..4 {
        assert_eq!(login("alice", "wrong-pass-1").await.0, 401);
    }
    let (code, body) = login("alice", "alice-pass-1").await;
    assert_eq!(
        (code, body["error"].as_str()),
        (401, Some("account_locked"))
    );
    // Others are not affected.
    assert_eq!(login("admin", "kalamdb123").await.0, 200);
}

#[tokio::test]
async fn auth_endpoints_are_rate_limited_per_ip() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Server::start_with(
        dir.path(),
        &[("FOLDDB_RATE_LIMIT_AUTH_REQUESTS_PER_IP_PER_SEC", "3")],
    )
    .await;
    let mut codes = Vec::new();
    for _ in 0..12 {
        let (code, body) = s
            .post(
                "/v1/api/auth/login",
                None,
                &json!({"user": "x", "password": "y"}),
            )
            .await;
        if code == 429 {
            assert_eq!(body["error"], "rate_limited");
        }
        codes.push(code);
    }
    assert!(codes.contains(&429), "{codes:?}");
    assert!(codes.contains(&401), "{codes:?}");
    // SQL is not an auth endpoint.
    let (code, _) = s.sql("no-token", "SELECT 1").await;
    assert_eq!(code, 401);
}
