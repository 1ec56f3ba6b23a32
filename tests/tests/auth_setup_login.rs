//! First-run setup, login, tokens and bearer checks, driven over HTTP against the real
//! binary: the flows and error envelopes of API.md 1.3–1.6.

use folddb_tests::{DBA, Server};
use serde_json::json;

#[tokio::test]
async fn setup_then_login_then_tokens_work_and_bad_credentials_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Server::start(dir.path()).await;

    let status: serde_json::Value = s
        .client
        .get(s.url("/v1/api/auth/status"))
        .send()
        .await
        .expect("status")
        .json()
        .await
        .expect("json");
    assert_eq!(status["needs_setup"], true);

    // Root cannot log in before setup.
    let (code, body) = s
        .post(
            "/v1/api/auth/login",
            None,
            &json!({"user": "root", "password": ""}),
        )
        .await;
    assert_eq!(
        (code, body["error"].as_str()),
        (428, Some("setup_required"))
    );

    // Weak passwords and unknown fields are refused; nothing changes.
    let (code, body) = s
        .post(
            "/v1/api/auth/setup",
            None,
            &json!({"user": "admin", "password": "short", "root_password": "rootpass123"}),
        )
        .await;
    assert_eq!((code, body["error"].as_str()), (400, Some("weak_password")));
    let (code, _) = s
        .post(
            "/v1/api/auth/setup",
            None,
            &json!({"user": "admin", "password": "kalamdb123", "root_password": "rootpass123", "x": 1}),
        )
        .await;
    assert_eq!(code, 400);

    let token = s.setup_and_login().await;
    let (code, body) = s
        .post(
            "/v1/api/auth/setup",
            None,
            &json!({"user": "other", "password": "kalamdb123", "root_password": "rootpass123"}),
        )
        .await;
    assert_eq!(
        (code, body["error"].as_str()),
        (409, Some("already_configured"))
    );

    // Login answer shape.
    let (code, login) = s
        .post(
            "/v1/api/auth/login",
            None,
            &json!({"username": DBA.0, "password": DBA.1}),
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(login["user"]["role"], "dba");
    assert_eq!(login["admin_ui_access"], true);
    assert!(login["refresh_token"].is_string() && login["expires_at"].is_string());

    // Wrong password, unknown user: the same 401.
    for (u, p) in [(DBA.0, "wrongpass1"), ("nobody", "kalamdb123")] {
        let (code, body) = s
            .post(
                "/v1/api/auth/login",
                None,
                &json!({"user": u, "password": p}),
            )
            .await;
        assert_eq!((code, body["error"].as_str()), (401, Some("unauthorized")));
    }
    // Root logs in with the password setup gave it.
    let root = s.login("root", "rootpass123").await;
    assert!(!root.is_empty());

    // /me with the access token.
    let me: serde_json::Value = s
        .client
        .get(s.url("/v1/api/auth/me"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("me")
        .json()
        .await
        .expect("json");
    assert_eq!(me["user"]["id"], "admin");

    // The refresh token refreshes, and is refused as an API credential.
    let refresh = login["refresh_token"].as_str().expect("refresh token");
    let (code, fresh) = s
        .post("/v1/api/auth/refresh", Some(refresh), &json!({}))
        .await;
    assert_eq!(code, 200, "{fresh}");
    assert!(fresh["access_token"].is_string());
    let (code, body) = s.sql(refresh, "SELECT 1").await;
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (401, Some("INVALID_CREDENTIALS"))
    );
    // An access token is refused by the refresh endpoint.
    let (code, _) = s
        .post("/v1/api/auth/refresh", Some(&token), &json!({}))
        .await;
    assert_eq!(code, 401);

    // No token, a forged token, Basic auth.
    let r = s
        .client
        .post(s.url("/v1/api/sql"))
        .json(&json!({"sql": "SELECT 1"}))
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status().as_u16(), 401);
    let body: serde_json::Value = r.json().await.expect("json");
    assert_eq!(body["error"]["code"], "MISSING_AUTHORIZATION");
    let (code, body) = s.sql("not.a.jwt", "SELECT 1").await;
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (401, Some("INVALID_CREDENTIALS"))
    );
    let r = s
        .client
        .post(s.url("/v1/api/sql"))
        .basic_auth("admin", Some("kalamdb123"))
        .json(&json!({"sql": "SELECT 1"}))
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status().as_u16(), 401);

    let (code, body) = s.post("/v1/api/auth/logout", None, &json!({})).await;
    assert_eq!(
        (code, body["message"].as_str()),
        (200, Some("Logged out successfully"))
    );

    // Health endpoints.
    for path in ["/health", "/v1/api/healthcheck"] {
        let h: serde_json::Value = s
            .client
            .get(s.url(path))
            .send()
            .await
            .expect("health")
            .json()
            .await
            .expect("json");
        assert_eq!(h["status"], "healthy");
    }
    let h: serde_json::Value = s
        .client
        .get(s.url("/v1/api/cluster/health"))
        .send()
        .await
        .expect("cluster health")
        .json()
        .await
        .expect("json");
    assert_eq!(
        (h["is_leader"].as_bool(), h["is_cluster_mode"].as_bool()),
        (Some(true), Some(false))
    );
}
