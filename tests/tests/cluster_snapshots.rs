//! Snapshots in a cluster (#18), real processes on loopback ports: members snapshot their
//! state every few entries and raft forgets the log before (a purge marker; the segments
//! stay). A member wiped while the others wrote on is sent a snapshot, then the log from
//! there, and serves every row; its log starts after the snapshot. The other members' logs
//! still hold the whole history: `folddb log replay` reads it from one of them, a member
//! whose hot tier is deleted is rebuilt from its own log, and the wiped member's log is
//! refused by a replay, which says why. A live query on a member paused past several
//! snapshots hears every change once the member is sent a snapshot.

use folddb_log::{Log, LogConfig};
use folddb_tests::cluster::{Cluster, TABLE_T, converges, setup, snapshots_every, write};
use folddb_tests::ws::{View, hear};
use folddb_tests::{run_folddb, text};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_member_is_brought_up_from_a_snapshot_and_the_others_keep_the_history() {
    let mut c = Cluster::start_with_env(3, vec![snapshots_every(40, 10); 3]).await;
    let leader = c.leader().await;
    let token = setup(c.node(leader)).await;
    write(
        c.node(leader),
        &token,
        "CREATE NAMESPACE app; CREATE SHARED TABLE app.t (id BIGINT PRIMARY KEY, v TEXT)",
    )
    .await;
    let insert = |id: i64| format!("INSERT INTO app.t (id, v) VALUES ({id}, 'row {id}')");
    for id in 0..60 {
        write(c.node(leader), &token, &insert(id)).await;
    }

    // A follower is stopped and wiped; the others write on, past several snapshots.
    let wiped = (leader + 1) % 3;
    c.nodes[wiped].take().expect("running").stop();
    std::fs::remove_dir_all(c.dirs[wiped].path()).expect("wiped");
    std::fs::create_dir_all(c.dirs[wiped].path()).expect("recreated");
    for id in 60..200 {
        write(c.node(leader), &token, &insert(id)).await;
    }
    let want: Vec<i64> = (0..200).collect();

    // It comes back empty and is brought up: every row, and it takes part in what follows.
    c.start_node(wiped).await;
    converges(c.node(wiped), &token, &want, "the wiped node").await;
    let gauge = |text: &str, name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map_or(0, |v| v as u64)
    };
    let metrics = c
        .node(wiped)
        .client
        .get(c.node(wiped).url("/metrics"))
        .send()
        .await;
    let page = metrics.expect("metrics answer").text().await.expect("text");
    let snapshot = gauge(&page, "folddb_raft_snapshot_index");
    assert!(
        snapshot >= 60,
        "its snapshot covers the rows it missed:\n{page}"
    );
    assert!(
        gauge(&page, "folddb_raft_purged_index") >= snapshot - 10,
        "{page}"
    );
    write(c.node(wiped), &token, &insert(200)).await;
    let want: Vec<i64> = (0..=200).collect();
    for i in 0..3 {
        converges(c.node(i), &token, &want, "a member").await;
    }

    // Its log starts after the snapshot it was sent: it never received the head.
    let wiped_server = c.nodes[wiped].take().expect("running");
    wiped_server.stop();
    {
        let log = Log::open(c.dirs[wiped].path().join("log"), LogConfig::default())
            .expect("its log opens");
        let (purged, _) = log.purged().expect("a purge marker: the snapshot's index");
        assert!(
            purged.0 >= 60,
            "the snapshot covers the rows written before: {purged:?}"
        );
        assert!(
            log.first_retained_index().expect("entries").0 > 0,
            "no entry before the snapshot"
        );
    }
    // It restarts from its snapshot and its log.
    c.start_node(wiped).await;
    converges(c.node(wiped), &token, &want, "the restarted wiped node").await;

    // Another member's log was purged by raft too, but keeps every segment: a replay reads
    // the whole history from it, and the member itself, its hot tier deleted, is brought up
    // from its own log alone (up to the purge marker), then by raft.
    let other = (wiped + 1) % 3;
    c.nodes[other].take().expect("running").stop();
    {
        let log = Log::open(c.dirs[other].path().join("log"), LogConfig::default())
            .expect("its log opens");
        assert!(log.purged().is_some(), "raft purged this member's log too");
        assert_eq!(log.first_retained_index().map(|i| i.0), Some(0));
    }
    let rebuilt = tempfile::tempdir().expect("tmp");
    let replay = |from: &std::path::Path, into: &std::path::Path| {
        run_folddb([
            "log",
            "replay",
            from.to_str().expect("path"),
            "--into",
            into.to_str().expect("path"),
        ])
    };
    let out = replay(c.dirs[other].path(), &rebuilt.path().join("data"));
    assert!(out.status.success(), "{:?}", text(&out));
    // A cluster's data directory does not start as a single node: it says why.
    let alone = run_folddb_serve_alone(&rebuilt.path().join("data"));
    assert!(alone.contains("belongs to a cluster"), "{alone}");

    std::fs::remove_dir_all(c.dirs[other].path().join("rocksdb")).expect("hot tier deleted");
    c.start_node(other).await;
    converges(
        c.node(other),
        &token,
        &want,
        "the member rebuilt from its log",
    )
    .await;

    c.nodes[wiped].take().expect("running").stop();
    let out = replay(c.dirs[wiped].path(), &rebuilt.path().join("again"));
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("brought up from a snapshot"), "{stderr}");
}

/// Runs `folddb serve` on `data_dir` with no peers, expecting it to exit: its stderr.
fn run_folddb_serve_alone(data_dir: &std::path::Path) -> String {
    let out = std::process::Command::new(folddb_tests::folddb_bin())
        .args(["serve", "--listen"])
        .arg(format!("127.0.0.1:{}", folddb_tests::free_port()))
        .arg("--data-dir")
        .arg(data_dir)
        .env("FOLDDB_JWT_SECRET", folddb_tests::JWT_SECRET)
        .output()
        .expect("folddb serve runs");
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_query_on_a_member_brought_up_from_a_snapshot_hears_every_change() {
    let mut c = Cluster::start_with_env(3, vec![snapshots_every(20, 5); 3]).await;
    let leader = c.leader().await;
    let token = setup(c.node(leader)).await;
    write(c.node(leader), &token, TABLE_T).await;
    let insert = |id: i64| format!("INSERT INTO app.t (id, v) VALUES ({id}, 'row {id}')");
    let follower = (leader + 1) % 3;
    let mut ws = folddb_tests::ws::connect(c.ports[follower], Some(&token)).await;
    let auth = folddb_tests::ws::next(&mut ws).await.expect("auth");
    assert_eq!(auth["type"], "auth_success", "{auth}");
    folddb_tests::ws::send(
        &mut ws,
        json!({"type": "subscribe", "subscription": {"id": "s", "sql": "SELECT * FROM app.t"}}),
    )
    .await;
    let mut view = View::strict();
    for id in 0..3 {
        write(c.node(leader), &token, &insert(id)).await;
    }
    hear(&mut ws, &mut view, 3).await;

    // The follower is paused while the others write past several snapshots; resumed, it
    // is sent a snapshot, and its subscriber is told of every row, in order.
    c.node(follower).signal("STOP");
    for id in 3..80 {
        write(c.node(leader), &token, &insert(id)).await;
    }
    c.node(follower).signal("CONT");
    hear(&mut ws, &mut view, 80).await;
    let held: std::collections::BTreeSet<i64> = view
        .rows
        .keys()
        .map(|k| k.parse().expect("an id"))
        .collect();
    assert_eq!(held, (0..80).collect());

    // It was brought up from a snapshot: its log has a gap before the snapshot's index.
    drop(ws);
    c.nodes[follower].take().expect("running").stop();
    let log = Log::open(c.dirs[follower].path().join("log"), LogConfig::default())
        .expect("its log opens");
    assert!(log.first_retained_index().expect("entries").0 > 0);
}
