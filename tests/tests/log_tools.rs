//! `folddb log inspect | verify | dump` on real log directories: the committed format-v1
//! fixtures (clean, torn, corrupt) and a log written through `folddb-log`. Runs the built
//! binary and checks exit status and output, as an operator would read them.

use folddb_log::{Log, LogConfig, LogIndex, Term};
use folddb_tests::{log_fixture, run_folddb, text};

#[test]
fn verify_passes_a_clean_log() {
    let dir = log_fixture("clean");
    let out = run_folddb(["log", "verify", dir.path().to_str().unwrap()]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {stderr}");
    assert!(
        stdout.contains("ok: 2 segments, 5 frames verified"),
        "{stdout}"
    );
}

#[test]
fn verify_fails_on_corruption_naming_segment_and_offset() {
    let dir = log_fixture("corrupt");
    let out = run_folddb(["log", "verify", dir.path().to_str().unwrap()]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("00000000000000000001.seg"), "{stderr}");
    assert!(stderr.contains("byte offset 63"), "{stderr}");
    assert!(stderr.contains("checksum mismatch"), "{stderr}");
    let (stdout, _) = text(&out);
    assert!(
        stdout.contains("CORRUPT at byte offset 63: checksum mismatch: stored 0x"),
        "{stdout}"
    );
}

#[test]
fn verify_reports_a_torn_tail_as_such() {
    let dir = log_fixture("torn");
    let out = run_folddb(["log", "verify", dir.path().to_str().unwrap()]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("torn tail"), "{stdout}");
    assert!(stdout.contains("00000000000000000004.seg"), "{stdout}");
    assert!(
        stdout.contains("ok: 2 segments, 4 frames verified"),
        "{stdout}"
    );
    // Verifying changed nothing: the torn bytes are still there for the next open to judge.
    let again = run_folddb(["log", "verify", dir.path().to_str().unwrap()]);
    assert!(text(&again).0.contains("torn tail"));
}

#[test]
fn inspect_shows_segments_ranges_terms_and_purge_marker() {
    let dir = log_fixture("clean");
    let out = run_folddb(["log", "inspect", dir.path().to_str().unwrap()]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let seg1 = stdout
        .lines()
        .find(|l| l.starts_with("00000000000000000001.seg"))
        .unwrap_or_else(|| panic!("no segment line in {stdout}"));
    let cols: Vec<&str> = seg1.split_whitespace().collect();
    assert_eq!(&cols[1..6], ["1..=3", "3", "125", "125", "1..=2"], "{seg1}");
    assert!(stdout.contains("entries: 5 (indices 1..=5)"), "{stdout}");
    assert!(
        stdout.contains("purged through: index 1 (term 1)"),
        "{stdout}"
    );
}

#[test]
fn dump_prints_one_json_line_per_entry() {
    let dir = log_fixture("clean");
    let out = run_folddb([
        "log",
        "dump",
        dir.path().to_str().unwrap(),
        "--from",
        "2",
        "--limit",
        "3",
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    let got: Vec<(u64, u64, u64)> = lines
        .iter()
        .map(|v| {
            (
                v["index"].as_u64().unwrap(),
                v["term"].as_u64().unwrap(),
                v["payload_len"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, [(2, 1, 7), (3, 2, 7), (4, 2, 7)]);
}

#[test]
fn tools_work_on_a_log_written_by_the_engine() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_size_bytes: 64 << 10,
        ..LogConfig::default()
    };
    {
        let log = Log::open(dir.path(), config).unwrap();
        for i in 0..2_000u64 {
            log.append_next(Term(1 + i / 1000), &[&[7u8; 100]]).unwrap();
        }
        log.purge(LogIndex(10), Term(1)).unwrap();
    }
    let path = dir.path().to_str().unwrap();
    let out = run_folddb(["log", "verify", path]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("2000 frames verified"), "{stdout}");
    let out = run_folddb(["log", "inspect", path]);
    let (stdout, _) = text(&out);
    assert!(
        stdout.contains("entries: 2000 (indices 1..=2000)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("purged through: index 10 (term 1)"),
        "{stdout}"
    );
    let out = run_folddb(["log", "dump", path, "--from", "1999"]);
    let (stdout, _) = text(&out);
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
    assert!(
        stdout.contains(r#""index":2000"#) && stdout.contains(r#""term":2"#),
        "{stdout}"
    );
}

#[test]
fn bad_arguments_get_clear_errors() {
    let missing = run_folddb(["log", "verify", "/nonexistent/folddb-log"]);
    assert!(!missing.status.success());
    let not_a_dir = tempfile::NamedTempFile::new().unwrap();
    let out = run_folddb(["log", "inspect", not_a_dir.path().to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        text(&out).1.contains("is not a directory"),
        "{}",
        text(&out).1
    );
    let out = run_folddb(["log", "dump"]);
    assert_eq!(out.status.code(), Some(2), "clap's usage error");
}
