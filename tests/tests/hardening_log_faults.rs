//! A damaged log is named, never papered over (#14, items 8 and 9). When the log lost an
//! entry the hot tier had already applied (a truncated tail), the server refuses to start
//! and writes nothing — in particular no purge marker that would hide the whole history —
//! and `folddb log replay` rebuilds a data directory that starts. A missing sealed segment
//! is named, at the head of the log or between two others. A replay reads purged entries
//! the log still retains, and refuses a log whose purge deleted entries it would need.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use folddb_log::{Log, LogConfig, LogIndex, Term};
use folddb_tests::{Server, folddb_bin, free_port, rows, run_folddb, text};
use serde_json::json;

/// Runs `folddb serve` over `data_dir`, expecting it to refuse to start: its stderr.
fn refuses_to_start(data_dir: &Path, env: &[(&str, &str)]) -> String {
    let mut child = Command::new(folddb_bin())
        .args(["serve", "--listen"])
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--data-dir")
        .arg(data_dir)
        .env("FOLDDB_JWT_SECRET", folddb_tests::JWT_SECRET)
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("folddb serve starts");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let out = child.wait_with_output().expect("output");
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            assert!(!status.success(), "the server must refuse: {stderr}");
            return stderr;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the server started over a damaged log");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A server with table `app.t` and `n` single-row INSERTs (ids 1..=n), stopped cleanly (so
/// that the hot tier holds every applied entry on disk): its data dir.
async fn written(n: i64, env: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Server::start_with(dir.path(), env).await;
    let admin = s.setup_and_login().await;
    s.ok_all(
        &admin,
        &[
            "CREATE NAMESPACE app",
            "CREATE SHARED TABLE app.t (id BIGINT PRIMARY KEY, v TEXT)",
        ],
    )
    .await;
    for id in 1..=n {
        s.ok(
            &admin,
            &format!(
                "INSERT INTO app.t (id, v) VALUES ({id}, '{}')",
                "x".repeat(200)
            ),
        )
        .await;
    }
    s.stop();
    dir
}

/// `folddb log replay DATA --into <fresh dir>`: the temp dir (keep it), the target, the run.
fn replay(data: &Path) -> (tempfile::TempDir, std::path::PathBuf, std::process::Output) {
    let rebuilt = tempfile::tempdir().expect("temp dir");
    let into = rebuilt.path().join("data");
    let out = run_folddb([
        "log",
        "replay",
        data.to_str().expect("path"),
        "--into",
        into.to_str().expect("path"),
    ]);
    (rebuilt, into, out)
}

fn segments(log_dir: &Path) -> Vec<std::path::PathBuf> {
    let mut segs: Vec<_> = std::fs::read_dir(log_dir)
        .expect("log dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    segs.sort();
    segs
}

#[tokio::test]
async fn a_log_that_lost_an_applied_entry_is_refused_and_replay_recovers() {
    let dir = written(5, &[]).await;
    let log_dir = dir.path().join("log");
    // The last entry (the fifth INSERT, applied to the hot tier) is cut off the log.
    let last = {
        let log = Log::open(&log_dir, LogConfig::default()).expect("log opens");
        let last = log.last_index().expect("entries");
        log.truncate(last).expect("truncate");
        last
    };
    let before: Vec<_> = segments(&log_dir);
    let stderr = refuses_to_start(dir.path(), &[]);
    assert!(
        stderr.contains(&format!("has applied entry {}", last.0))
            && stderr.contains("missing from the log"),
        "{stderr}"
    );
    // Nothing was written: no purge marker hides the history, the segments are as they were.
    assert!(!log_dir.join("purged.meta").exists());
    assert_eq!(segments(&log_dir), before);

    // The log rebuilds a data directory that starts, with every entry the log still holds.
    let (_rebuilt, into, out) = replay(dir.path());
    assert!(out.status.success(), "{:?}", text(&out));
    let s = Server::start(&into).await;
    let admin = s.login("admin", "kalamdb123").await;
    let r = s.ok(&admin, "SELECT id FROM app.t ORDER BY id").await;
    assert_eq!(
        rows(&r),
        vec![json!(["1"]), json!(["2"]), json!(["3"]), json!(["4"])]
    );
}

#[tokio::test]
async fn a_missing_sealed_segment_is_named() {
    let env = [("FOLDDB_LOG_SEGMENT_SIZE_BYTES", "4096")];
    let dir = written(60, &env).await;
    let log_dir = dir.path().join("log");
    let segs = segments(&log_dir);
    assert!(segs.len() >= 4, "several segments: {segs:?}");

    // A segment between two others: the gap is named.
    let copy = tempfile::tempdir().expect("temp dir");
    copy_dir(dir.path(), copy.path());
    let middle = segs[1].file_name().expect("name").to_owned();
    std::fs::remove_file(copy.path().join("log").join(&middle)).expect("remove");
    let stderr = refuses_to_start(copy.path(), &env);
    assert!(stderr.contains("entries are missing"), "{stderr}");
    assert!(
        stderr.contains(segs[0].file_name().and_then(|n| n.to_str()).expect("name")),
        "{stderr}"
    );

    // The first segment: the log's head is named, not "log at index 0 … got None".
    let head = segs[0].file_name().expect("name").to_owned();
    std::fs::remove_file(log_dir.join(&head)).expect("remove");
    let stderr = refuses_to_start(dir.path(), &env);
    assert!(stderr.contains("entries are missing"), "{stderr}");
    assert!(
        stderr.contains(segs[1].file_name().and_then(|n| n.to_str()).expect("name")),
        "{stderr}"
    );
    assert!(!stderr.contains("violates"), "{stderr}");
    // Replay says the same, and builds nothing.
    let (_rebuilt, _, out) = replay(dir.path());
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("entries are missing"), "{stderr}");
}

#[tokio::test]
async fn replay_reads_purged_entries_the_log_retains_and_refuses_a_purge_that_deleted_them() {
    let env = [("FOLDDB_LOG_SEGMENT_SIZE_BYTES", "4096")];
    let dir = written(30, &env).await;
    let log_dir = dir.path().join("log");
    let segs = segments(&log_dir);
    assert!(segs.len() >= 2, "several segments: {segs:?}");
    let second = {
        let log = Log::open(&log_dir, LogConfig::default()).expect("log opens");
        let term = Term(log.last_term().expect("a term").0);
        // Raft's purge (a snapshot) moves the marker; the default retention keeps the files.
        let second = log.first_retained_index().expect("entries");
        let purged_to = LogIndex(log.last_index().expect("entries").0 - 1);
        log.purge(purged_to, term).expect("purge");
        let first_of_second: u64 = segs[1]
            .file_stem()
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse().ok())
            .expect("a segment is named by its first index");
        assert_eq!(second, LogIndex(0));
        first_of_second
    };
    let (_rebuilt, into, out) = replay(dir.path());
    assert!(out.status.success(), "{:?}", text(&out));
    let s = Server::start_with(&into, &env).await;
    let admin = s.login("admin", "kalamdb123").await;
    let r = s.ok(&admin, "SELECT COUNT(*) AS n FROM app.t").await;
    assert_eq!(rows(&r), vec![json!(["30"])]);
    s.stop();

    // Purged entries whose segment is gone: a replay would miss the head of the history.
    std::fs::remove_file(&segs[0]).expect("remove");
    let (_rebuilt, _, out) = replay(dir.path());
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stderr.contains("were purged") && stderr.contains(&format!("index {second}")),
        "{stderr}"
    );
}

fn copy_dir(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).expect("dir") {
        let e = e.expect("entry");
        let dest = to.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            std::fs::create_dir_all(&dest).expect("mkdir");
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), &dest).expect("copy");
        }
    }
}
