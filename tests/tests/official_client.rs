//! FoldDB driven by KalamDB's official Rust SDK (`kalam-client`), unchanged (#17): login,
//! SQL with parameters, a live query seeing inserts, updates and deletes, and a reconnect
//! after a server restart that resumes exactly where the client left off.

use std::collections::HashMap;
use std::time::Duration;

use folddb_tests::{DBA as ADMIN, Server, free_port};
use kalam_client::{
    AuthProvider, ChangeEvent, ConnectionOptions, KalamCellValue, KalamLinkClient, QueryParam,
};

fn client(s: &Server, user: &str, password: &str) -> KalamLinkClient {
    KalamLinkClient::builder()
        .base_url(s.url(""))
        .auth(AuthProvider::BasicAuth(user.into(), password.into()))
        .timeout(Duration::from_secs(30))
        .connection_options(
            ConnectionOptions::default()
                // Long enough for the writes after the restart to land before the client
                // is back: it then resumes from the journal, not from live changes.
                .with_reconnect_delay_ms(3_000)
                .with_max_reconnect_delay_ms(3_000),
        )
        .build()
        .expect("the SDK's client builds")
}

/// A change the subscription saw: its kind and the ids of its rows (old rows for deletes).
type Seen = (&'static str, Vec<i64>);

fn ids(rows: &[HashMap<String, KalamCellValue>]) -> Vec<i64> {
    rows.iter()
        .filter_map(|r| {
            let v = r.get("id")?;
            v.as_big_int().or_else(|| v.as_text()?.parse().ok())
        })
        .collect()
}

/// The next insert, update or delete (snapshot and control messages skipped), within 30 s.
async fn next_change(sub: &mut kalam_client::SubscriptionManager) -> Seen {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let event = tokio::time::timeout_at(deadline, sub.next())
            .await
            .expect("a change within 30 s")
            .expect("the subscription is open")
            .expect("no error");
        match event {
            ChangeEvent::Insert { rows, .. } => return ("insert", ids(&rows)),
            // (The SDK keeps only the rows whose `_seq` is newer than the last it saw: an
            // update's old values, stamped with the version they replace, are dropped by
            // it, from the reference's server as from FoldDB.)
            ChangeEvent::Update { rows, .. } => return ("update", ids(&rows)),
            ChangeEvent::Delete { old_rows, .. } => return ("delete", ids(&old_rows)),
            ChangeEvent::Error { code, message, .. } => panic!("{code}: {message}"),
            _ => {}
        }
    }
}

fn text_cell(row: &[KalamCellValue], i: usize) -> String {
    row.get(i)
        .and_then(|c| c.as_text().map(str::to_owned))
        .unwrap_or_default()
}

#[tokio::test]
async fn the_official_client_logs_in_queries_with_parameters_and_follows_changes_across_a_restart()
{
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let s = Server::start_on(dir.path(), port, &[]).await;
    s.setup_and_login().await;
    let admin = client(&s, ADMIN.0, ADMIN.1);

    // Login as the SDK does it.
    let login = admin.login(ADMIN.0, ADMIN.1).await.expect("login");
    assert!(!login.access_token.is_empty());
    assert!(login.admin_ui_access);

    // SQL with parameters.
    for sql in [
        "CREATE NAMESPACE app",
        "CREATE TABLE app.todos (id BIGINT PRIMARY KEY, title TEXT NOT NULL, done BOOLEAN DEFAULT false) WITH (TYPE = 'SHARED', ACCESS_LEVEL = 'PUBLIC')",
    ] {
        let r = admin.execute_query(sql, None, None, None).await.expect(sql);
        assert!(r.success(), "{sql}: {r:?}");
    }
    let insert = "INSERT INTO app.todos (id, title) VALUES ($1, $2)";
    for (id, title) in [(1_i64, "one"), (2, "two")] {
        let params = vec![QueryParam::from(id), QueryParam::from(title)];
        let r = admin
            .execute_query(insert, None, Some(params), None)
            .await
            .expect("insert");
        assert!(r.success(), "{r:?}");
    }
    let r = admin
        .execute_query(
            "SELECT id, title FROM todos WHERE id >= $1 ORDER BY id",
            None,
            Some(vec![QueryParam::from(2_i64)]),
            Some("app"),
        )
        .await
        .expect("select");
    let rows = r.results[0].rows.clone().unwrap_or_default();
    assert_eq!(rows.len(), 1, "{r:?}");
    assert_eq!(text_cell(&rows[0], 1), "two");

    // A live query: its initial rows, then every change, deletes included.
    let mut sub = admin
        .live_events("SELECT * FROM app.todos")
        .await
        .expect("subscribe");
    let write = |sql: &'static str| {
        let admin = &admin;
        async move {
            let r = admin.execute_query(sql, None, None, None).await.expect(sql);
            assert!(r.success(), "{sql}: {r:?}");
        }
    };
    write("INSERT INTO app.todos (id, title) VALUES (5, 'five')").await;
    write("UPDATE app.todos SET done = true WHERE id = 5").await;
    write("DELETE FROM app.todos WHERE id = 5").await;
    write("INSERT INTO app.todos (id, title) VALUES (6, 'six')").await;
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(next_change(&mut sub).await);
    }
    assert_eq!(
        seen,
        [
            ("insert", vec![5]),
            ("update", vec![5]),
            ("delete", vec![5]),
            ("insert", vec![6]),
        ]
    );

    // The server restarts; the client reconnects by itself and resumes from the last
    // change it saw: the changes made meanwhile arrive once, nothing it had is repeated.
    s.stop();
    let s = Server::start_on(dir.path(), port, &[]).await;
    let writer = client(&s, ADMIN.0, ADMIN.1);
    for sql in [
        "INSERT INTO app.todos (id, title) VALUES (7, 'seven')",
        "UPDATE app.todos SET title = 'uno' WHERE id = 1",
        "DELETE FROM app.todos WHERE id = 2",
        "INSERT INTO app.todos (id, title) VALUES (99, 'last')",
    ] {
        let r = writer
            .execute_query(sql, None, None, None)
            .await
            .expect(sql);
        assert!(r.success(), "{sql}: {r:?}");
    }
    let mut after = Vec::new();
    while after.last() != Some(&("insert", vec![99])) {
        after.push(next_change(&mut sub).await);
        assert!(after.len() <= 4, "more than the four changes: {after:?}");
    }
    assert_eq!(
        after,
        [
            ("insert", vec![7]),
            ("update", vec![1]),
            ("delete", vec![2]),
            ("insert", vec![99]),
        ]
    );
    sub.close().await.expect("close");
    admin.disconnect().await;
}
