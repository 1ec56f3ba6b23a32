//! `GET /metrics` (#17): Prometheus text of what the server did and holds.

use folddb_tests::Server;

/// The value of the sample `series` (name and labels, exactly as rendered).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn metrics_count_requests_statements_log_syncs_and_report_state() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Server::start(dir.path()).await;
    let t = s.setup_and_login().await;
    s.ok_all(
        &t,
        &[
            "CREATE NAMESPACE app",
            "CREATE TABLE app.t (id BIGINT PRIMARY KEY, v TEXT) WITH (TYPE = 'SHARED')",
            "INSERT INTO app.t (id, v) VALUES (1, 'a')",
            "INSERT INTO app.t (id, v) VALUES (2, 'b')",
            "SELECT * FROM app.t",
        ],
    )
    .await;
    let (code, _) = s.sql(&t, "SELECT * FROM nowhere.t").await;
    assert_eq!(code, 400);

    let r = reqwest::get(s.url("/metrics")).await.expect("scrape");
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap_or("")
            .starts_with("text/plain; version=0.0.4")
    );
    let text = r.text().await.expect("text");
    let get = |series: &str| sample(&text, series).unwrap_or_else(|| panic!("{series}:\n{text}"));

    assert!(get(r#"folddb_http_requests_total{endpoint="/v1/api/sql",status="200"}"#) >= 5.0);
    assert_eq!(
        get(r#"folddb_http_requests_total{endpoint="/v1/api/sql",status="400"}"#),
        1.0
    );
    assert!(get(r#"folddb_http_request_duration_seconds_count{endpoint="/v1/api/sql"}"#) >= 6.0);
    assert_eq!(get(r#"folddb_sql_statements_total{kind="insert"}"#), 2.0);
    assert!(get(r#"folddb_sql_statements_total{kind="select"}"#) >= 1.0);
    assert!(get(r#"folddb_sql_statements_total{kind="ddl"}"#) >= 2.0);
    assert!(get("folddb_log_fsync_seconds_count") >= 1.0);
    assert!(get("folddb_log_group_commit_entries_count") >= 1.0);
    assert!(get("folddb_log_appended_entries_total") >= 4.0);
    let applied = get("folddb_applied_index");
    assert!(applied >= 4.0 && applied <= get("folddb_log_last_index"));
    assert!(get("folddb_apply_lag_entries") >= 0.0);
    assert_eq!(get("folddb_live_subscriptions"), 0.0);
    assert!(get(r#"folddb_rocksdb_bytes{family="catalog"}"#) >= 0.0);
    assert_eq!(get("folddb_cold_tier_segments"), 0.0);
    assert!(get("folddb_process_resident_bytes") > 0.0);
    assert!(
        text.contains("# HELP folddb_http_requests_total "),
        "{text}"
    );

    // A flush job, and the cold tier it fills.
    let (_, status, m) = s.run_job(&t, "STORAGE FLUSH TABLE app.t").await;
    assert_eq!(status, "completed", "{m}");
    let text = reqwest::get(s.url("/metrics"))
        .await
        .expect("scrape")
        .text()
        .await
        .expect("text");
    let get = |series: &str| sample(&text, series).unwrap_or_else(|| panic!("{series}:\n{text}"));
    assert_eq!(
        get(r#"folddb_jobs_finished_total{kind="flush",status="completed"}"#),
        1.0
    );
    assert_eq!(get("folddb_cold_tier_segments"), 1.0);
    assert!(get("folddb_cold_tier_bytes") > 0.0);
    assert!(get(r#"folddb_http_requests_total{endpoint="/metrics",status="200"}"#) >= 1.0);
}
