//! Format v1 fixtures under `log/fixtures/v1/`: their bytes are rebuilt here from the codec
//! and must match the committed files exactly (set `FOLDDB_WRITE_FIXTURES=1` to write them
//! once, for a new format version only). Then the log must read the clean fixture, discard
//! the torn one's tail, and refuse the corrupt one naming segment and offset.

use std::path::PathBuf;

use crate::frame::{encode_frame, encode_header};
use crate::meta::{PURGE_MARKER, encode_meta, encode_purge};
use crate::{DirScan, Entry, Error, Log, LogConfig, LogIndex, Term};

const TERMS: [u64; 5] = [1, 1, 2, 2, 3];

/// Under this checkout: the run-time `CARGO_MANIFEST_DIR` (see `folddb-tests`'
/// `workspace_root`), else where the test was built.
fn fixture_root() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
        .join("fixtures/v1")
}

fn expected_entries() -> Vec<Entry> {
    (1..=5u64)
        .map(|i| Entry {
            index: LogIndex(i),
            term: Term(TERMS[i as usize - 1]),
            payload: format!("entry-{i}").into_bytes(),
        })
        .collect()
}

fn segment(entries: &[Entry]) -> Vec<u8> {
    let mut b = encode_header(entries[0].index).to_vec();
    for e in entries {
        encode_frame(&mut b, e.term, e.index, &e.payload);
    }
    b
}

/// A fixture's files: name and bytes.
type Files = Vec<(&'static str, Vec<u8>)>;

/// The files of each fixture, by fixture name.
fn fixtures() -> Vec<(&'static str, Files)> {
    let e = expected_entries();
    let seg1 = segment(&e[0..3]);
    let seg4 = segment(&e[3..5]);
    let purge = encode_meta(&encode_purge(LogIndex(1), Term(1)));
    let mut corrupt1 = seg1.clone();
    corrupt1[63 + 24 + 2] ^= 0x04; // a payload byte of frame 2, which starts at offset 63
    let torn4 = seg4[..seg4.len() - 4].to_vec();
    vec![
        (
            "clean",
            vec![
                ("00000000000000000001.seg", seg1.clone()),
                ("00000000000000000004.seg", seg4.clone()),
                (PURGE_MARKER, purge),
            ],
        ),
        (
            "corrupt",
            vec![
                ("00000000000000000001.seg", corrupt1),
                ("00000000000000000004.seg", seg4),
            ],
        ),
        (
            "torn",
            vec![
                ("00000000000000000001.seg", seg1),
                ("00000000000000000004.seg", torn4),
            ],
        ),
    ]
}

#[test]
fn fixtures_match_the_codec_byte_for_byte() {
    let write = std::env::var_os("FOLDDB_WRITE_FIXTURES").is_some();
    for (name, files) in fixtures() {
        let dir = fixture_root().join(name);
        for (file, bytes) in files {
            let path = dir.join(file);
            if write {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(&path, &bytes).unwrap();
            }
            let committed = std::fs::read(&path)
                .unwrap_or_else(|e| panic!("fixture {} missing: {e}", path.display()));
            assert_eq!(
                committed,
                bytes,
                "{} differs from format v1",
                path.display()
            );
        }
    }
}

fn copy_fixture(name: &str) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(fixture_root().join(name)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), tmp.path().join(entry.file_name())).unwrap();
    }
    tmp
}

#[test]
fn clean_fixture_reads_back() {
    let dir = copy_fixture("clean");
    let log = Log::open(dir.path(), LogConfig::default()).unwrap();
    assert_eq!(log.purged(), Some((LogIndex(1), Term(1))));
    assert_eq!(log.first_index(), Some(LogIndex(2)));
    assert_eq!(log.last_index(), Some(LogIndex(5)));
    assert_eq!(log.last_term(), Some(Term(3)));
    assert_eq!(
        log.read(LogIndex(2)..LogIndex(6)).unwrap(),
        expected_entries()[1..]
    );
}

#[test]
fn torn_fixture_loses_only_its_unfinished_frame() {
    let dir = copy_fixture("torn");
    let scan = DirScan::read(dir.path(), 1 << 20).unwrap();
    assert!(scan.corruption().is_none());
    assert!(scan.torn_tail().is_some());
    let log = Log::open(dir.path(), LogConfig::default()).unwrap();
    assert_eq!(log.last_index(), Some(LogIndex(4)));
    assert_eq!(
        log.read(LogIndex(1)..LogIndex(5)).unwrap(),
        expected_entries()[..4]
    );
}

#[test]
fn corrupt_fixture_is_refused_with_segment_and_offset() {
    let dir = copy_fixture("corrupt");
    match Log::open(dir.path(), LogConfig::default()) {
        Err(Error::ChecksumMismatch {
            segment, offset, ..
        }) => {
            assert!(segment.ends_with("00000000000000000001.seg"));
            assert_eq!(offset, 63);
        }
        other => panic!("expected a checksum mismatch, got {other:?}"),
    }
}
