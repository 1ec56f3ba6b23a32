//! Durability: eight clients insert concurrently; the server is killed with SIGKILL in the
//! middle; after a restart every acknowledged row is present exactly once (and nothing is
//! there that was never sent), and a second restart replays to the very same state.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use folddb_tests::{Server, rows};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_loses_no_acknowledged_insert() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let s = Server::start(&data).await;
    let t = s.setup_and_login().await;
    s.ok(&t, "CREATE NAMESPACE app; CREATE TABLE app.events (id BIGINT PRIMARY KEY, client INT NOT NULL)").await;

    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let mut clients = Vec::new();
    for c in 0..8i64 {
        let (url, token, acked) = (s.url("/v1/api/sql"), t.clone(), acked.clone());
        let http = s.client.clone();
        clients.push(tokio::spawn(async move {
            for n in 0..100_000i64 {
                let id = c * 1_000_000 + n;
                let sql = format!("INSERT INTO app.events (id, client) VALUES ({id}, {c})");
                let r = http
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&serde_json::json!({ "sql": sql }))
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status().is_success() => {
                        acked.lock().expect("lock").insert(id);
                    }
                    // The server died: this write is "unknown", and we stop.
                    _ => return,
                }
            }
        }));
    }
    // Let them write for a while, then pull the plug.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    s.kill();
    for c in clients {
        c.await.expect("client task");
    }
    let acked = acked.lock().expect("lock").clone();
    assert!(
        acked.len() > 100,
        "too few writes before the kill: {}",
        acked.len()
    );

    let s = Server::start(&data).await;
    let t = s.login("admin", "kalamdb123").await;
    let r = s.ok(&t, "SELECT id FROM app.events ORDER BY id").await;
    let ids: Vec<i64> = rows(&r)
        .iter()
        .map(|row| row[0].as_str().expect("id").parse().expect("number"))
        .collect();
    let present: BTreeSet<i64> = ids.iter().copied().collect();
    assert_eq!(present.len(), ids.len(), "a row is present twice");
    let missing: Vec<&i64> = acked.difference(&present).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged rows lost, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    // Unacknowledged rows may be present (they were in flight), but each was sent by a client.
    assert!(
        present
            .iter()
            .all(|id| id % 1_000_000 < 100_000 && id / 1_000_000 < 8)
    );
    let before = s
        .ok(&t, "SELECT id, client, _seq FROM app.events ORDER BY id")
        .await;
    s.stop();

    // Restart again: the log replays to the same state, `_seq` included.
    let s = Server::start(&data).await;
    let t = s.login("admin", "kalamdb123").await;
    let after = s
        .ok(&t, "SELECT id, client, _seq FROM app.events ORDER BY id")
        .await;
    assert_eq!(rows(&before), rows(&after));
}
