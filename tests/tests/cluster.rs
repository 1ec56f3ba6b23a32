//! A three-node cluster of real processes on loopback ports (#18): nodes started with the
//! same peer list form one cluster; a write through any node is durable on a quorum and read
//! back through every node; raft RPCs without the cluster's secret are refused; the leader
//! killed with SIGKILL, the others elect a new one and keep taking writes, and the old leader
//! restarted catches up with everything acknowledged meanwhile; a follower whose data
//! directory is wiped is brought back from the leader's log. Under 8 writers, ten leader
//! kills in a row lose no acknowledged write, and the three journals and logs end identical.
//! A leader paused (SIGSTOP) while clients write on both sides acknowledges nothing the
//! majority lacks, and catches up once resumed.

use std::time::{Duration, Instant};

use folddb_tests::cluster::{
    Cluster, Load, SECRET, Sent, TABLE_T, converges, ids, setup, with_tables, write,
};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_replicate_every_write_and_survive_the_leaders_death() {
    let mut c = Cluster::start(3).await;
    let first = c.leader().await;
    let h = Cluster::health(c.node(0)).await;
    assert_eq!(h["is_cluster_mode"], true, "{h}");
    assert_eq!(h["nodes"].as_array().map(Vec::len), Some(3), "{h}");

    // Setup and DDL through a follower: forwarded to the leader.
    let follower = (first + 1) % 3;
    let token = setup(c.node(follower)).await;
    write(
        c.node(follower),
        &token,
        "CREATE NAMESPACE app; CREATE SHARED TABLE app.t (id BIGINT PRIMARY KEY, v TEXT)",
    )
    .await;
    // A live query on a follower hears of the writes made through any node.
    let mut live = folddb_tests::ws::connect(c.ports[follower], Some(&token)).await;
    assert_eq!(
        folddb_tests::ws::next(&mut live).await.expect("auth")["type"],
        "auth_success"
    );
    folddb_tests::ws::send(
        &mut live,
        json!({"type": "subscribe", "subscription": {"id": "s", "sql": "SELECT id, v FROM app.t"}}),
    )
    .await;
    let ack = folddb_tests::ws::next(&mut live).await.expect("ack");
    assert_eq!(ack["type"], "subscription_ack", "{ack}");
    // A write through each node, read back through every node at once.
    for i in 0..3 {
        let sql = format!(
            "INSERT INTO app.t (id, v) VALUES ({i}, 'through node {}')",
            i + 1
        );
        c.node(i).ok(&token, &sql).await;
        for j in 0..3 {
            let seen = ids(c.node(j), &token).await;
            assert_eq!(seen, (0..=i as i64).collect::<Vec<_>>(), "node {}", j + 1);
        }
    }

    let mut heard = Vec::new();
    folddb_tests::ws::read_until(&mut live, Duration::from_secs(10), |m| {
        if m["type"] == "change" && m["change_type"] == "insert" {
            heard.push(m["rows"][0]["id"].clone());
        }
        heard.len() == 3
    })
    .await;
    assert_eq!(heard, [json!("0"), json!("1"), json!("2")], "in log order");

    // system.cluster, on any node: three members, one leader, this node marked.
    let r = c
        .node(follower)
        .ok(
            &token,
            "SELECT node_id, role, is_self, is_leader FROM system.cluster ORDER BY node_id",
        )
        .await;
    let rows = folddb_tests::rows(&r);
    assert_eq!(rows.len(), 3, "{r}");
    let leaders: Vec<_> = rows.iter().filter(|r| r[3] == true).collect();
    assert_eq!(leaders.len(), 1, "{r}");
    assert_eq!(leaders[0][1], "leader", "{r}");
    let selves: Vec<_> = rows.iter().filter(|r| r[2] == true).collect();
    assert_eq!(selves.len(), 1, "{r}");
    assert_eq!(selves[0][1], "follower", "{r}");

    // Raft RPCs need the cluster's id and secret; a garbage body is refused; nothing moves.
    let before = c.node(first).last_applied().await;
    let rpc = |secret: Option<&str>, id: &str| {
        let mut req = c
            .node(first)
            .client
            .post(c.node(first).url("/v1/raft/append"))
            .header("x-folddb-cluster-id", id)
            .body(vec![1u8, 2, 3]);
        if let Some(s) = secret {
            req = req.header("x-folddb-cluster-secret", s);
        }
        req.send()
    };
    for (secret, id) in [
        (None, "folddb"),
        (Some("wrong"), "folddb"),
        (Some(SECRET), "other"),
    ] {
        let r = rpc(secret, id).await.expect("answered");
        assert_eq!(r.status().as_u16(), 401, "{secret:?} {id}");
    }
    let r = rpc(Some(SECRET), "folddb").await.expect("answered");
    assert_eq!(r.status().as_u16(), 400);
    assert_eq!(c.node(first).last_applied().await, before);

    // The leader dies; the two others elect a leader and keep taking writes.
    c.nodes[first].as_ref().expect("running").sigkill();
    c.nodes[first] = None;
    let second = c.leader().await;
    assert_ne!(second, first);
    let survivor = (0..3)
        .find(|i| *i != first && *i != second)
        .expect("a third node");
    for id in 10..20 {
        let sql = format!("INSERT INTO app.t (id, v) VALUES ({id}, 'after the leader died')");
        write(c.node(survivor), &token, &sql).await;
    }
    let want: Vec<i64> = (0..3).chain(10..20).collect();
    assert_eq!(ids(c.node(second), &token).await, want);
    assert_eq!(ids(c.node(survivor), &token).await, want);

    // The old leader restarts on its data directory and catches up.
    c.start_node(first).await;
    converges(c.node(first), &token, &want, "the restarted node").await;

    // A follower whose data directory is lost comes back empty and is brought up from the
    // leader (its log, or a snapshot then the log after it).
    c.nodes[survivor].take().expect("running").stop();
    std::fs::remove_dir_all(c.dirs[survivor].path()).expect("wiped");
    std::fs::create_dir_all(c.dirs[survivor].path()).expect("recreated");
    c.start_node(survivor).await;
    converges(c.node(survivor), &token, &want, "the wiped node").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_acknowledged_write_is_lost_over_ten_leader_kills_under_load() {
    let (mut c, first, token) = with_tables(3, TABLE_T).await;
    let load = Load::start(&c, &token, 8);
    // Ten leader kills; each killed leader is restarted before the next kill, but the last.
    let mut killed = first;
    for round in 0..10 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let leader = c.leader().await;
        c.nodes[leader].as_ref().expect("running").sigkill();
        c.nodes[leader] = None;
        assert_ne!(c.leader().await, leader, "round {round}");
        killed = leader;
        if round < 9 {
            c.start_node(leader).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let first = killed;
    let sent = load.stop().await;
    eprintln!(
        "{} writes acknowledged, {} with an unknown outcome",
        sent.acknowledged.len(),
        sent.unknown.len()
    );
    assert!(
        sent.acknowledged.len() > 50,
        "too few writes: {}",
        sent.acknowledged.len()
    );
    let check = |seen: Vec<i64>, node: usize| sent.check(seen, node);
    let survivors: Vec<usize> = (0..3).filter(|i| *i != first).collect();
    let mut views = Vec::new();
    for &i in &survivors {
        views.push(check(ids(c.node(i), &token).await, i));
    }
    assert_eq!(views[0], views[1], "the surviving nodes disagree");
    // The old leader restarts and comes to hold exactly the same rows.
    c.start_node(first).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, _) = c.node(first).sql(&token, "SELECT 1").await;
        if status == 200 {
            let seen = check(ids(c.node(first), &token).await, first);
            if seen == views[0] {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the restarted node did not catch up"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Each node's journal tells the same changes in the same order: a tail of app.t from
    // the earliest change kept, through each node.
    let journals: Vec<Vec<serde_json::Value>> = (0..3)
        .map(|i| {
            let mut child = std::process::Command::new(folddb_tests::folddb_bin())
                .args(["tail", "--url", &c.node(i).url(""), "--from", "earliest"])
                .args(["--table", "app.t"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("folddb tail starts");
            let lines = folddb_tests::JsonLines::of(&mut child);
            let changes = lines.until_quiet(Duration::from_secs(3));
            let _ = child.kill();
            let _ = child.wait();
            changes
        })
        .collect();
    assert_eq!(journals[0].len(), views[0].len(), "one insert per row");
    assert_eq!(
        journals[0], journals[1],
        "nodes 1 and 2 tell different changes"
    );
    assert_eq!(
        journals[0], journals[2],
        "nodes 1 and 3 tell different changes"
    );
    // Stopped, the three nodes hold the same log: every entry at the same index and term,
    // of the same length. The leader goes last: stopped first, the others would elect one
    // of them, whose first entry only it and the last one would hold.
    let leader = c.leader().await;
    for i in (0..3).filter(|i| *i != leader).chain([leader]) {
        c.nodes[i].take().expect("running").stop();
    }
    let dumps: Vec<String> = c
        .dirs
        .iter()
        .map(|d| {
            let out = folddb_tests::run_folddb([
                std::ffi::OsStr::new("log"),
                std::ffi::OsStr::new("dump"),
                d.path().join("log").as_os_str(),
            ]);
            assert!(out.status.success(), "{out:?}");
            String::from_utf8_lossy(&out.stdout).into_owned()
        })
        .collect();
    assert!(dumps[0].lines().count() > 50, "{}", dumps[0]);
    assert_eq!(dumps[0], dumps[1], "nodes 1 and 2 hold different logs");
    assert_eq!(dumps[0], dumps[2], "nodes 1 and 3 hold different logs");
}

/// Waits until every running node reads the same ids, each passing `sent.check`: those ids.
async fn converged(c: &Cluster, token: &str, sent: &Sent) -> std::collections::BTreeSet<i64> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut views = Vec::new();
        for (i, s) in c.nodes.iter().enumerate() {
            let Some(s) = s else { continue };
            let (status, _) = s.sql(token, "SELECT 1").await;
            if status == 200 {
                views.push(sent.check(ids(s, token).await, i));
            }
        }
        let running = c.nodes.iter().flatten().count();
        if views.len() == running && views.windows(2).all(|w| w[0] == w[1]) {
            return views.pop().unwrap_or_default();
        }
        assert!(Instant::now() < deadline, "the nodes do not converge");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paused_leader_acknowledges_nothing_and_catches_up_once_resumed() {
    let (mut c, first, token) = with_tables(3, TABLE_T).await;
    // Writers on both sides: each sends through every node in turn, the paused one too.
    let load = Load::start(&c, &token, 6);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let paused = c.nodes[first].take().expect("running");
    paused.signal("STOP");
    // The majority elects a leader of its own and takes writes meanwhile.
    let second = c.leader().await;
    assert_ne!(second, first);
    write(
        c.node(second),
        &token,
        "INSERT INTO app.t (id, v) VALUES (-1, 'while the old leader is paused')",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // The old leader wakes up still believing it leads: whatever it takes then must not be
    // acknowledged unless the majority has it.
    paused.signal("CONT");
    c.nodes[first] = Some(paused);
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let mut sent = load.stop().await;
    sent.acknowledged.insert(-1);
    eprintln!(
        "{} writes acknowledged, {} with an unknown outcome",
        sent.acknowledged.len(),
        sent.unknown.len()
    );
    assert!(sent.acknowledged.len() > 50, "too few writes");
    let rows = converged(&c, &token, &sent).await;
    assert!(rows.contains(&-1));
}
