//! Operating a cluster with `CLUSTER …` statements (#18, API.md 3.13), real processes on
//! loopback ports: a fourth node started outside the peer list joins with `CLUSTER JOIN`
//! (a learner, then a voter) and is sent the whole log; leadership moves on `CLUSTER
//! TRANSFER LEADER` and `CLUSTER STEPDOWN`; `CLUSTER REMOVE` takes a node out and the others
//! carry on; statements FoldDB does not do, or cannot do as asked, say why. A live query on
//! a follower hears every change across a leader's death, and resumes with `from`.

use std::time::{Duration, Instant};

use folddb_tests::Server;
use folddb_tests::cluster::{Cluster, TABLE_T, converges, ids, setup, with_tables, write};
use folddb_tests::ws::{View, hear};

/// Runs a CLUSTER statement through `s`: its message, once the cluster has a leader.
async fn cluster_ok(s: &Server, token: &str, sql: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = s.sql(token, sql).await;
        if status == 200 {
            return body["results"][0]["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
        }
        assert_eq!(status, 503, "{sql}: {body}");
        assert!(Instant::now() < deadline, "{sql}: still {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The error message of a statement that must fail with `status`.
async fn refused(s: &Server, token: &str, sql: &str, status: u16) -> String {
    let (got, body) = s.sql(token, sql).await;
    assert_eq!(got, status, "{sql}: {body}");
    body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// `(node_id, role)` of every member, as `system.cluster` on `s` lists them.
async fn members(s: &Server, token: &str) -> Vec<(u64, String)> {
    let r = s
        .ok(
            token,
            "SELECT node_id, role FROM system.cluster ORDER BY node_id",
        )
        .await;
    folddb_tests::rows(&r)
        .iter()
        .map(|row| {
            let id = row[0]
                .as_u64()
                .or_else(|| row[0].as_str().and_then(|t| t.parse().ok()))
                .expect("a node id");
            (id, row[1].as_str().unwrap_or_default().to_owned())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_join_lead_and_leave_on_cluster_statements() {
    let (mut c, first, token) = with_tables(3, TABLE_T).await;
    for id in 0..5 {
        let sql = format!("INSERT INTO app.t (id, v) VALUES ({id}, 'before the join')");
        write(c.node(id as usize % 3), &token, &sql).await;
    }

    // A fourth node, not on the peer list, waits: it serves no read before it is a member.
    let fourth = c.start_joiner().await;
    assert_eq!(fourth, 3);
    let h = Cluster::health(c.node(fourth)).await;
    assert_eq!(h["is_cluster_mode"], true, "{h}");
    let (status, body) = c.node(fourth).sql(&token, "SELECT id FROM app.t").await;
    assert_ne!(
        status, 200,
        "a node outside the cluster answered a read: {body}"
    );

    // Joined through a follower (forwarded to the leader): a learner that catches up, then
    // a voter; it reads everything written before, and takes writes.
    let follower = (first + 1) % 3;
    let join = format!("CLUSTER JOIN 4 '127.0.0.1:{}'", c.ports[fourth]);
    let said = cluster_ok(c.node(follower), &token, &join).await;
    assert!(said.contains("joined the cluster as a voter"), "{said}");
    converges(c.node(fourth), &token, &[0, 1, 2, 3, 4], "the joined node").await;
    let roles = members(c.node(fourth), &token).await;
    assert_eq!(roles.len(), 4, "{roles:?}");
    assert!(
        roles.iter().all(|(_, r)| r == "leader" || r == "follower"),
        "{roles:?}"
    );
    write(
        c.node(fourth),
        &token,
        "INSERT INTO app.t (id, v) VALUES (5, 'through node 4')",
    )
    .await;
    for i in 0..4 {
        converges(c.node(i), &token, &[0, 1, 2, 3, 4, 5], "a member").await;
    }
    // Replication lag, per member, in the leader's metrics; a follower says it follows.
    let leader = c.leader().await;
    let scrape = |i: usize| {
        let url = c.node(i).url("/metrics");
        async move {
            reqwest::get(url)
                .await
                .expect("scrape")
                .text()
                .await
                .expect("text")
        }
    };
    let text = scrape(leader).await;
    assert!(
        text.lines().any(|l| l == "folddb_raft_is_leader 1"),
        "{text}"
    );
    for id in 1..=4 {
        let gauge = format!("folddb_raft_replication_lag_entries{{node=\"{id}\"}}");
        assert!(
            text.lines().any(|l| l.starts_with(&gauge)),
            "{gauge}: {text}"
        );
    }
    let text = scrape((leader + 1) % 4).await;
    assert!(
        text.lines().any(|l| l == "folddb_raft_is_leader 0"),
        "{text}"
    );
    let again = refused(c.node(first), &token, &join, 400).await;
    assert!(again.contains("already a voting member"), "{again}");

    // Leadership moves to the named node, then away from it on STEPDOWN.
    let said = cluster_ok(c.node(first), &token, "CLUSTER TRANSFER LEADER 4").await;
    assert!(said.contains("moved to node 4"), "{said}");
    assert_eq!(c.leader().await, fourth);
    let said = cluster_ok(c.node(follower), &token, "CLUSTER STEPDOWN").await;
    assert!(said.contains("moved to node"), "{said}");
    let leader = c.leader().await;
    assert_ne!(leader, fourth);
    let unknown = refused(c.node(leader), &token, "CLUSTER TRANSFER LEADER 9", 400).await;
    assert!(unknown.contains("not a voting member"), "{unknown}");

    // A founder is removed; it is stopped, and the three others carry on.
    let gone = (0..3)
        .find(|i| *i != leader)
        .expect("a founder that does not lead");
    let remove = format!("CLUSTER REMOVE {}", gone + 1);
    let said = cluster_ok(c.node(leader), &token, &remove).await;
    assert!(said.contains("was removed"), "{said}");
    c.nodes[gone].take().expect("running").stop();
    let leader = c.leader().await;
    let roles = members(c.node(leader), &token).await;
    assert_eq!(roles.len(), 3, "{roles:?}");
    assert!(
        !roles.iter().any(|(id, _)| *id == gone as u64 + 1),
        "{roles:?}"
    );
    write(
        c.node(leader),
        &token,
        "INSERT INTO app.t (id, v) VALUES (6, 'after the removal')",
    )
    .await;
    for i in (0..4).filter(|i| *i != gone) {
        converges(
            c.node(i),
            &token,
            &[0, 1, 2, 3, 4, 5, 6],
            "a remaining member",
        )
        .await;
    }

    // A snapshot of a node's state; statements FoldDB does not do say why.
    let said = cluster_ok(c.node(leader), &token, "CLUSTER SNAPSHOT").await;
    assert!(said.contains("Snapshot built"), "{said}");
    let purge = refused(c.node(leader), &token, "CLUSTER PURGE --UPTO 3", 400).await;
    assert!(purge.contains("retention"), "{purge}");
    let list = refused(c.node(leader), &token, "CLUSTER LIST", 400).await;
    assert!(list.contains("system.cluster"), "{list}");
    // The joined node holds everything, as the others do.
    let after = ids(c.node(fourth), &token).await;
    assert_eq!(after, [0, 1, 2, 3, 4, 5, 6]);
}

#[tokio::test]
async fn a_single_node_says_cluster_statements_need_a_cluster() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = Server::start(dir.path()).await;
    let token = s.setup_and_login().await;
    for sql in [
        "CLUSTER STEPDOWN",
        "CLUSTER JOIN 2 '127.0.0.1:1'",
        "CLUSTER SNAPSHOT",
    ] {
        let said = refused(&s, &token, sql, 400).await;
        assert!(said.contains("runs alone"), "{sql}: {said}");
    }
}

async fn subscribe(port: u16, token: &str, options: serde_json::Value) -> folddb_tests::ws::Ws {
    let mut ws = folddb_tests::ws::connect(port, Some(token)).await;
    let auth = folddb_tests::ws::next(&mut ws).await.expect("auth");
    assert_eq!(auth["type"], "auth_success", "{auth}");
    let sub = serde_json::json!({"type": "subscribe", "subscription":
        {"id": "s", "sql": "SELECT * FROM app.t", "options": options}});
    folddb_tests::ws::send(&mut ws, sub).await;
    ws
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_query_on_a_follower_hears_every_change_across_a_leader_change() {
    let (mut c, first, token) = with_tables(3, TABLE_T).await;
    let (follower, other) = ((first + 1) % 3, (first + 2) % 3);
    let mut ws = subscribe(c.ports[follower], &token, serde_json::json!({})).await;
    let mut view = View::strict();
    for id in 0..5 {
        let sql = format!("INSERT INTO app.t (id, v) VALUES ({id}, 'through the first leader')");
        write(c.node(first), &token, &sql).await;
    }
    hear(&mut ws, &mut view, 5).await;

    // The leader dies; the subscription on the follower stays open and hears the writes
    // the new leader commits, in order after the first ones.
    c.nodes[first].as_ref().expect("running").sigkill();
    c.nodes[first] = None;
    let second = c.leader().await;
    assert_ne!(second, first);
    for id in 5..10 {
        let sql = format!("INSERT INTO app.t (id, v) VALUES ({id}, 'after the leader died')");
        write(c.node(other), &token, &sql).await;
    }
    hear(&mut ws, &mut view, 10).await;

    // Its connection drops; writes go on; it resumes from the last _seq it holds and is
    // told exactly what it missed.
    let from = view.last_seq;
    drop(ws);
    for id in 10..15 {
        let sql = format!("INSERT INTO app.t (id, v) VALUES ({id}, 'while it was away')");
        write(c.node(other), &token, &sql).await;
    }
    let mut ws = subscribe(c.ports[follower], &token, serde_json::json!({"from": from})).await;
    hear(&mut ws, &mut view, 15).await;
    let held: Vec<i64> = view
        .rows
        .keys()
        .map(|k| k.parse().expect("an id"))
        .collect::<std::collections::BTreeSet<i64>>()
        .into_iter()
        .collect();
    assert_eq!(held, (0..15).collect::<Vec<_>>());
    assert_eq!(ids(c.node(follower), &token).await, held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clocks_an_hour_apart_change_no_seq_order() {
    // Node 2's clock an hour behind, node 3's an hour ahead: each stamps the writes it takes
    // with its own time, and leads for a while.
    let skew = |ms: &str| vec![("FOLDDB_TEST_CLOCK_SKEW_MS".to_owned(), ms.to_owned())];
    let c = Cluster::start_with_env(3, vec![vec![], skew("-3600000"), skew("3600000")]).await;
    let first = c.leader().await;
    let token = setup(c.node((first + 1) % 3)).await;
    write(c.node(first), &token, TABLE_T).await;
    for id in 0..30i64 {
        if id == 10 || id == 20 {
            let to = if id == 10 { 3 } else { 2 };
            let said =
                cluster_ok(c.node(0), &token, &format!("CLUSTER TRANSFER LEADER {to}")).await;
            assert!(said.contains("moved to node"), "{said}");
        }
        let sql = format!("INSERT INTO app.t (id, v) VALUES ({id}, 'skewed')");
        write(c.node(id as usize % 3), &token, &sql).await;
    }
    // On every node: `_seq` order is the order the writes were acknowledged in, strictly
    // increasing, whatever clock stamped them.
    let mut seen = Vec::new();
    for i in 0..3 {
        converges(c.node(i), &token, &(0..30).collect::<Vec<_>>(), "a node").await;
        let r = c
            .node(i)
            .ok(&token, "SELECT id, _seq FROM app.t ORDER BY _seq")
            .await;
        let rows: Vec<(i64, i64)> = folddb_tests::rows(&r)
            .iter()
            .map(|row| {
                let n = |v: &serde_json::Value| {
                    v.as_i64()
                        .or_else(|| v.as_str().and_then(|t| t.parse().ok()))
                        .expect("a number")
                };
                (n(&row[0]), n(&row[1]))
            })
            .collect();
        let ids: Vec<i64> = rows.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids, (0..30).collect::<Vec<_>>(), "node {}", i + 1);
        assert!(rows.windows(2).all(|w| w[0].1 < w[1].1), "{rows:?}");
        seen.push(rows);
    }
    assert_eq!(seen[0], seen[1]);
    assert_eq!(seen[0], seen[2]);
}
