//! The cold tier in a cluster (#18), real processes on loopback ports and an S3 endpoint:
//! a flush run on any member writes its segment once, to object storage every member reads,
//! and its commit moves the rows out of every member's hot tier; each member then answers
//! from the same segments, across updates, deletes, a leader's death and a restart. A
//! compaction on any member merges them; the segments it replaced are removed only after a
//! grace period. On a storage that is a directory of each node (`filesystem`), every member
//! keeps its own copy of each segment: a member that was down, or wiped and brought up from a
//! snapshot, fetches the ones it lacks from the others, and a DROP through any member
//! removes them on every member.

use std::time::{Duration, Instant};

use folddb_tests::Server;
use folddb_tests::cluster::{Cluster, setup, snapshots_every, write};
use folddb_tests::s3::S3;
use serde_json::{Value, json};

/// Every row of `app.c` through `s`, once it has `n` of them (the member has caught up).
async fn rows_of(s: &Server, token: &str, n: usize) -> Vec<Value> {
    rows_in(s, token, "app.c", n).await
}

/// Every row of `table` through `s`, once it has `n` of them.
async fn rows_in(s: &Server, token: &str, table: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let sql = format!("SELECT id, v FROM {table} ORDER BY id");
    loop {
        let (status, body) = s.sql(token, &sql).await;
        if status == 200 {
            let rows = folddb_tests::rows(&body);
            if rows.len() == n {
                return rows;
            }
        }
        assert!(Instant::now() < deadline, "{n} rows never seen: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until member `s` holds no hot version of `app.c` (the flush's trims are applied
/// there too), as SHOW STATS counts them.
async fn nothing_hot(s: &Server, token: &str) {
    nothing_hot_in(s, token, "app.c").await
}

/// Waits until member `s` holds no hot version of `table`.
async fn nothing_hot_in(s: &Server, token: &str, table: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let sql = format!("SHOW STATS FOR TABLE {table}");
    loop {
        let (_, body) = s.sql(token, &sql).await;
        let hot = &folddb_tests::rows(&body)[0][1];
        if hot == &json!(0) || hot == &json!("0") {
            return;
        }
        assert!(Instant::now() < deadline, "still hot rows: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn flush_through(s: &Server, token: &str) {
    let (id, status, message) = s.run_job(token, "STORAGE FLUSH TABLE app.c").await;
    assert!(id.starts_with("FL-"), "{id}");
    assert_eq!(status, "completed", "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flush_on_any_member_writes_one_segment_that_every_member_reads() {
    let s3 = S3::start().await;
    let grace = vec![(
        "FOLDDB_CLUSTER_REPLACED_SEGMENTS_GRACE_SECONDS".to_owned(),
        "3".to_owned(),
    )];
    let mut c = Cluster::start_with_env(3, vec![grace; 3]).await;
    let leader = c.leader().await;
    let token = setup(c.node(leader)).await;
    let storage = s3.storage_sql("lake", "lake/folddb", &s3.secret_key);
    write(c.node(leader), &token, &storage).await;
    write(
        c.node(leader),
        &token,
        "CREATE NAMESPACE app; \
         CREATE SHARED TABLE app.c (id BIGINT PRIMARY KEY, v TEXT) WITH (STORAGE_ID = 'lake'); \
         CREATE USER TABLE app.u (id BIGINT PRIMARY KEY, v TEXT) WITH (STORAGE_ID = 'lake')",
    )
    .await;
    for id in 0..40 {
        let sql = format!("INSERT INTO app.c (id, v) VALUES ({id}, 'v{id}')");
        write(c.node(id as usize % 3), &token, &sql).await;
    }

    // A flush through the leader: one segment, read by every member, none of which keeps
    // the rows in its hot tier.
    flush_through(c.node(leader), &token).await;
    let segments = || s3.keys("lake/folddb/app/c/batch-");
    assert_eq!(segments().await.len(), 1, "{:?}", segments().await);
    let want: Vec<Value> = (0..40)
        .map(|i| json!([i.to_string(), format!("v{i}")]))
        .collect();
    for i in 0..3 {
        assert_eq!(rows_of(c.node(i), &token, 40).await, want, "node {}", i + 1);
        nothing_hot(c.node(i), &token).await;
    }

    // A USER table: the flush through a follower writes the caller's own directory, and
    // every member serves the caller's rows from it.
    write(
        c.node(leader),
        &token,
        "INSERT INTO app.u (id, v) VALUES (1, 'mine'), (2, 'also mine')",
    )
    .await;
    let follower = (leader + 1) % 3;
    let (id, status, message) = c
        .node(follower)
        .run_job(&token, "STORAGE FLUSH TABLE app.u")
        .await;
    assert_eq!(status, "completed", "{id}: {message}");
    let user_segments = s3.keys("lake/folddb/app/u/admin/batch-").await;
    assert_eq!(user_segments.len(), 1, "{user_segments:?}");
    for i in 0..3 {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (_, body) = c
                .node(i)
                .sql(&token, "SELECT id, v FROM app.u ORDER BY id")
                .await;
            let (_, stats) = c.node(i).sql(&token, "SHOW STATS FOR TABLE app.u").await;
            let hot = &folddb_tests::rows(&stats)[0][1];
            if folddb_tests::rows(&body) == vec![json!(["1", "mine"]), json!(["2", "also mine"])]
                && (hot == &json!(0) || hot == &json!("0"))
            {
                break;
            }
            assert!(Instant::now() < deadline, "node {}: {body} {stats}", i + 1);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    // Flushed rows change through a follower; the leader dies; a flush through a surviving
    // follower (its commit forwarded to the new leader) writes the second segment.
    write(
        c.node(follower),
        &token,
        "UPDATE app.c SET v = 'changed' WHERE id = 7",
    )
    .await;
    write(c.node(follower), &token, "DELETE FROM app.c WHERE id >= 30").await;
    for id in 40..45 {
        let sql = format!("INSERT INTO app.c (id, v) VALUES ({id}, 'v{id}')");
        write(c.node(follower), &token, &sql).await;
    }
    c.nodes[leader].as_ref().expect("running").sigkill();
    c.nodes[leader] = None;
    let second = c.leader().await;
    let other = (0..3)
        .find(|i| *i != leader && *i != second)
        .expect("a follower");
    flush_through(c.node(other), &token).await;
    assert_eq!(segments().await.len(), 2, "{:?}", segments().await);
    let want: Vec<Value> = (0..30)
        .chain(40..45)
        .map(|i| {
            let v = if i == 7 {
                "changed".to_owned()
            } else {
                format!("v{i}")
            };
            json!([i.to_string(), v])
        })
        .collect();
    for i in [second, other] {
        assert_eq!(rows_of(c.node(i), &token, 35).await, want, "node {}", i + 1);
        nothing_hot(c.node(i), &token).await;
    }
    // The old leader restarts and catches up with the commit it missed.
    c.start_node(leader).await;
    assert_eq!(
        rows_of(c.node(leader), &token, 35).await,
        want,
        "the old leader"
    );
    nothing_hot(c.node(leader), &token).await;

    // A compaction through a follower merges the two segments into one; the two it
    // replaced stay for the grace period (a member behind may still read them), then go.
    // The follower is killed at once: the removal it scheduled dies with it, and the
    // leader's sweep removes them (once every member, the follower back, says it runs no
    // job that wrote them).
    let (id, status, message) = c
        .node(other)
        .run_job(&token, "STORAGE COMPACT TABLE app.c")
        .await;
    assert!(id.starts_with("CO-"), "{id}");
    assert_eq!(status, "completed", "{message}");
    c.nodes[other].as_ref().expect("running").sigkill();
    c.nodes[other] = None;
    assert_eq!(segments().await.len(), 3, "{:?}", segments().await);
    // What a job that crashed mid-write leaves: a segment no manifest lists.
    let crashed = "lake/folddb/app/c/batch-FL-0000deadbeef.parquet";
    s3.put(crashed, b"PAR1 half a segment".to_vec()).await;
    assert_eq!(segments().await.len(), 4, "{:?}", segments().await);
    for i in [leader, second] {
        assert_eq!(rows_of(c.node(i), &token, 35).await, want, "node {}", i + 1);
    }
    // With a member away, the leader cannot know which files are a job in flight there.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(segments().await.len(), 4, "{:?}", segments().await);
    c.start_node(other).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while segments().await.len() != 1 {
        assert!(Instant::now() < deadline, "{:?}", segments().await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        segments().await[0].contains("batch-CO-"),
        "{:?}",
        segments().await
    );
    for i in 0..3 {
        assert_eq!(rows_of(c.node(i), &token, 35).await, want, "node {}", i + 1);
    }
}

/// The segment files of `app.l` in member data directory `dir` (default storage `local`):
/// name → bytes.
fn local_segments(dir: &std::path::Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    segments_of(dir, "/app/l/")
}

/// The segment files under `table` (`/ns/t/`) in member data directory `dir`.
fn segments_of(dir: &std::path::Path, table: &str) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut todo = vec![dir.join("storage")];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                todo.push(path);
            } else if name.starts_with("batch-")
                && name.ends_with(".parquet")
                && path.to_string_lossy().contains(table)
            {
                out.insert(name, std::fs::read(&path).expect("readable"));
            }
        }
    }
    out
}

/// Waits until member data directory `dir` holds exactly the segment files `want` (by name,
/// byte for byte).
async fn holds(dir: &std::path::Path, want: &std::collections::BTreeMap<String, Vec<u8>>) {
    holds_of(dir, "/app/l/", want).await
}

/// [`holds`], for the segment files of `table`.
async fn holds_of(
    dir: &std::path::Path,
    table: &str,
    want: &std::collections::BTreeMap<String, Vec<u8>>,
) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let have = segments_of(dir, table);
        if &have == want {
            return;
        }
        let names: Vec<&String> = have.keys().collect();
        assert!(
            Instant::now() < deadline,
            "{} holds {names:?}, not {:?}",
            dir.display(),
            want.keys().collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_directory_of_each_node_every_member_holds_its_own_copy_of_each_segment() {
    let mut env = vec![(
        "FOLDDB_CLUSTER_REPLACED_SEGMENTS_GRACE_SECONDS".to_owned(),
        "2".to_owned(),
    )];
    env.extend(snapshots_every(40, 10));
    let mut c = Cluster::start_with_env(3, vec![env; 3]).await;
    let leader = c.leader().await;
    let token = setup(c.node(leader)).await;
    write(
        c.node(leader),
        &token,
        "CREATE NAMESPACE app; CREATE SHARED TABLE app.l (id BIGINT PRIMARY KEY, v TEXT); \
         CREATE SHARED TABLE app.big (id BIGINT PRIMARY KEY, v TEXT)",
    )
    .await;
    let insert = |id: i64| format!("INSERT INTO app.l (id, v) VALUES ({id}, 'v{id}')");
    for id in 0..30 {
        write(c.node(id as usize % 3), &token, &insert(id)).await;
    }
    let want = |n: i64| -> Vec<Value> {
        (0..n)
            .map(|i| json!([i.to_string(), format!("v{i}")]))
            .collect()
    };

    // Members' file RPC: the cluster's secret, and only segment files inside a storage. A
    // `Read` (codec byte 1, variant 0) of `local` at a path that climbs out is refused with
    // `Failed` (variant 4). A segment the member does not hold is `Missing` (1) while the
    // asked index is ahead of the member, `Gone` (2) once it is applied past it and lists no
    // such file. Without the secret, 401.
    let file_rpc = |path: &str, listed_at: u8, secret: bool| {
        let mut body = vec![1u8, 0, 5];
        body.extend_from_slice(b"local");
        body.push(path.len() as u8);
        body.extend_from_slice(path.as_bytes());
        body.extend_from_slice(&[0, listed_at]);
        let s = c.node(leader);
        let mut req = s
            .client
            .post(s.url("/v1/raft/file"))
            .header("x-folddb-cluster-id", "folddb")
            .body(body);
        if secret {
            req = req.header("x-folddb-cluster-secret", folddb_tests::cluster::SECRET);
        }
        req.send()
    };
    let refused = file_rpc("../../../etc/passwd.parquet", 0, true)
        .await
        .expect("answers");
    assert_eq!(refused.status(), 200);
    let answer = refused.bytes().await.expect("body");
    assert_eq!(answer[..2], [1, 4], "Failed: {answer:?}");
    let unknown = file_rpc("app/l/batch-none.parquet", 250, true)
        .await
        .expect("answers");
    let answer = unknown.bytes().await.expect("body");
    assert_eq!(answer[..], [1, 1], "Missing");
    let unknown = file_rpc("app/l/batch-none.parquet", 1, true)
        .await
        .expect("answers");
    let answer = unknown.bytes().await.expect("body");
    assert_eq!(answer[..], [1, 2], "Gone");
    let anonymous = file_rpc("app/l/batch-none.parquet", 1, false)
        .await
        .expect("answers");
    assert_eq!(anonymous.status(), 401);

    // A flush through a follower: its segment is on every member, byte for byte, and every
    // member serves the rows from it, none of them hot.
    let follower = (leader + 1) % 3;
    let (id, status, message) = c
        .node(follower)
        .run_job(&token, "STORAGE FLUSH TABLE app.l")
        .await;
    assert_eq!(status, "completed", "{id}: {message}");
    let first = local_segments(c.dirs[follower].path());
    assert_eq!(first.len(), 1, "{:?}", first.keys());
    for i in 0..3 {
        holds(c.dirs[i].path(), &first).await;
        assert_eq!(rows_in(c.node(i), &token, "app.l", 30).await, want(30));
        nothing_hot_in(c.node(i), &token, "app.l").await;
    }

    // A member that is down while a flush and a compaction commit fetches their segments
    // before it records them; the segment the compaction replaced goes after the grace
    // period, on every member.
    let down = (leader + 2) % 3;
    c.nodes[down].take().expect("running").stop();
    for id in 30..40 {
        write(c.node(leader), &token, &insert(id)).await;
    }
    let (_, status, message) = c
        .node(leader)
        .run_job(&token, "STORAGE FLUSH TABLE app.l")
        .await;
    assert_eq!(status, "completed", "{message}");
    let (id, status, message) = c
        .node(leader)
        .run_job(&token, "STORAGE COMPACT TABLE app.l")
        .await;
    assert_eq!(status, "completed", "{id}: {message}");
    let compacted: std::collections::BTreeMap<String, Vec<u8>> =
        local_segments(c.dirs[leader].path())
            .into_iter()
            .filter(|(name, _)| name.contains("batch-CO-"))
            .collect();
    assert_eq!(compacted.len(), 1, "{:?}", compacted.keys());
    // A segment of several chunks (`Read` answers 8 MiB at most): 26 values of 512 KiB that
    // hardly compress.
    let mut noise = 0x9e37_79b9_7f4a_7c15_u64;
    for id in 0..26 {
        let value: String = (0..1 << 19)
            .map(|_| {
                noise ^= noise << 13;
                noise ^= noise >> 7;
                noise ^= noise << 17;
                char::from(
                    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
                        [(noise % 64) as usize],
                )
            })
            .collect();
        let sql = format!("INSERT INTO app.big (id, v) VALUES ({id}, '{value}')");
        write(c.node(leader), &token, &sql).await;
    }
    let (_, status, message) = c
        .node(leader)
        .run_job(&token, "STORAGE FLUSH TABLE app.big")
        .await;
    assert_eq!(status, "completed", "{message}");
    let big = segments_of(c.dirs[leader].path(), "/app/big/");
    assert_eq!(big.len(), 1, "{:?}", big.keys());
    let bytes = big.values().next().map_or(0, Vec::len);
    assert!(bytes > 8 << 20, "{bytes} bytes");
    c.start_node(down).await;
    for i in 0..3 {
        assert_eq!(rows_in(c.node(i), &token, "app.l", 40).await, want(40));
        holds(c.dirs[i].path(), &compacted).await;
        holds_of(c.dirs[i].path(), "/app/big/", &big).await;
    }

    // A member wiped while the others write on past a snapshot is sent the snapshot, then
    // fetches every segment its manifests list.
    let wiped = follower;
    c.nodes[wiped].take().expect("running").stop();
    std::fs::remove_dir_all(c.dirs[wiped].path()).expect("wiped");
    std::fs::create_dir_all(c.dirs[wiped].path()).expect("recreated");
    for id in 40..100 {
        write(c.node(leader), &token, &insert(id)).await;
    }
    c.start_node(wiped).await;
    assert_eq!(
        rows_in(c.node(wiped), &token, "app.l", 100).await,
        want(100)
    );
    holds(c.dirs[wiped].path(), &compacted).await;

    // A flush through the member brought up from the snapshot reaches every member.
    let (_, status, message) = c
        .node(wiped)
        .run_job(&token, "STORAGE FLUSH TABLE app.l")
        .await;
    assert_eq!(status, "completed", "{message}");
    let now = local_segments(c.dirs[wiped].path());
    assert_eq!(now.len(), 2, "{:?}", now.keys());
    for i in 0..3 {
        holds(c.dirs[i].path(), &now).await;
        assert_eq!(rows_in(c.node(i), &token, "app.l", 100).await, want(100));
    }

    // A DROP through one member: every member removes its own copy's files.
    write(c.node(leader), &token, "DROP TABLE app.l").await;
    for i in 0..3 {
        holds(c.dirs[i].path(), &Default::default()).await;
    }
}
