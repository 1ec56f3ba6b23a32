//! Tests of the [`Log`] handle: round trips across segment rolls and reopen, truncation,
//! purge and retention, fsync failure, crash images, corruption reports, and concurrent
//! appenders with tailers.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use proptest::prelude::*;

use crate::{Entry, Error, ErrorKind, Log, LogConfig, LogIndex, MemStorage, Retention, Term};

fn small() -> LogConfig {
    LogConfig {
        segment_size_bytes: 4096,
        max_payload_bytes: 64 << 10,
        retention: Retention::KeepAll,
    }
}

fn payload(i: u64, len: usize) -> Vec<u8> {
    (0..len).map(|j| (i as usize * 31 + j) as u8).collect()
}

fn entry(i: u64, term: u64, len: usize) -> Entry {
    Entry {
        index: LogIndex(i),
        term: Term(term),
        payload: payload(i, len),
    }
}

/// The segment files in `dir`, sorted.
fn segment_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".seg"))
        .collect();
    names.sort();
    names
}

fn mem_log(storage: &MemStorage, config: LogConfig) -> crate::Result<Log> {
    Log::open_with(Arc::new(storage.clone()), "/log", config)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn round_trip_across_rolls_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let entries: Vec<Entry> = (1..=200)
        .map(|i| entry(i, 1 + i / 50, (i % 97) as usize))
        .collect();
    {
        let log = Log::open(dir.path(), small()).unwrap();
        for chunk in entries.chunks(7) {
            log.append(chunk).unwrap();
        }
        assert_eq!(log.read(LogIndex(1)..LogIndex(201)).unwrap(), entries);
        assert_eq!(log.last_term(), Some(Term(5)));
    }
    let segs = segment_names(dir.path()).len();
    assert!(segs > 3, "expected several segments, found {segs}");
    let log = Log::open(dir.path(), small()).unwrap();
    assert_eq!(log.first_index(), Some(LogIndex(1)));
    assert_eq!(log.last_index(), Some(LogIndex(200)));
    assert_eq!(log.durable_index(), Some(LogIndex(200)));
    assert_eq!(log.last_term(), Some(Term(5)));
    assert_eq!(
        log.read(LogIndex(50)..LogIndex(151)).unwrap(),
        entries[49..150]
    );
    log.append(&[entry(201, 5, 10)]).unwrap();
    assert_eq!(
        log.read(LogIndex(201)..LogIndex(202)).unwrap()[0],
        entry(201, 5, 10)
    );
}

#[test]
fn appends_must_continue_the_log() {
    let s = MemStorage::new();
    let log = mem_log(&s, small()).unwrap();
    // An empty log accepts any first index (raft starts at 0, a snapshot may start later).
    log.append(&[entry(0, 1, 3)]).unwrap();
    let err = log.append(&[entry(2, 1, 3)]).unwrap_err();
    assert!(matches!(
        err,
        Error::NonContiguous {
            expected: LogIndex(1),
            got: LogIndex(2)
        }
    ));
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    let err = log.append(&[entry(1, 1, 3), entry(3, 1, 3)]).unwrap_err();
    assert!(matches!(err, Error::NonContiguous { .. }));
    assert_eq!(
        log.last_index(),
        Some(LogIndex(0)),
        "a refused batch writes nothing"
    );
    let big = vec![0u8; (64 << 10) + 1];
    assert!(matches!(
        log.append_next(Term(1), &[&big]),
        Err(Error::PayloadTooLarge { .. })
    ));
    assert_eq!(
        log.append_next(Term(1), &[b"a", b"b"]).unwrap(),
        LogIndex(1)..=LogIndex(2)
    );
}

#[test]
fn reads_outside_the_log_are_refused() {
    let s = MemStorage::new();
    let log = mem_log(&s, small()).unwrap();
    assert!(matches!(
        log.read(LogIndex(1)..LogIndex(2)),
        Err(Error::OutOfRange { .. })
    ));
    log.append(&[entry(5, 1, 1), entry(6, 1, 1)]).unwrap();
    assert!(matches!(
        log.read(LogIndex(4)..LogIndex(6)),
        Err(Error::OutOfRange { .. })
    ));
    assert!(matches!(
        log.read(LogIndex(5)..LogIndex(8)),
        Err(Error::OutOfRange { .. })
    ));
    assert_eq!(log.read(LogIndex(5)..LogIndex(7)).unwrap().len(), 2);
    assert!(log.read(LogIndex(6)..LogIndex(6)).unwrap().is_empty());
}

#[test]
fn truncate_removes_the_suffix_durably_across_segments() {
    let s = MemStorage::new();
    {
        let log = mem_log(&s, small()).unwrap();
        let entries: Vec<Entry> = (1..=100).map(|i| entry(i, 1, 100)).collect();
        log.append(&entries).unwrap();
        log.truncate(LogIndex(30)).unwrap();
        assert_eq!(log.last_index(), Some(LogIndex(29)));
        assert!(log.durable_index() <= Some(LogIndex(29)));
        log.append(&[entry(30, 2, 5), entry(31, 2, 5)]).unwrap();
        assert_eq!(log.last_term(), Some(Term(2)));
        log.truncate(LogIndex(31)).unwrap();
        assert_eq!(log.last_term(), Some(Term(2)));
        log.truncate(LogIndex(500)).unwrap(); // past the end: nothing to do
    }
    // Only what survived truncation comes back, even from a crash image right after.
    for seed in 0..20 {
        let log = mem_log(&s.crash_image(seed), small()).unwrap();
        assert_eq!(log.last_index(), Some(LogIndex(30)));
        let got = log.read(LogIndex(1)..LogIndex(31)).unwrap();
        assert_eq!(got[29], entry(30, 2, 5));
        assert_eq!(
            got[..29],
            (1..30).map(|i| entry(i, 1, 100)).collect::<Vec<_>>()[..]
        );
    }
}

#[test]
fn purge_marks_and_retention_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        retention: Retention::DeletePurged,
        ..small()
    };
    let count_segments = || segment_names(dir.path()).len();
    {
        let log = Log::open(dir.path(), config.clone()).unwrap();
        log.append(&(1..=100).map(|i| entry(i, 3, 100)).collect::<Vec<_>>())
            .unwrap();
        let before = count_segments();
        log.purge(LogIndex(60), Term(3)).unwrap();
        assert_eq!(log.first_index(), Some(LogIndex(61)));
        assert!(matches!(
            log.read(LogIndex(60)..LogIndex(61)),
            Err(Error::OutOfRange { .. })
        ));
        assert!(count_segments() < before, "purged segments are deleted");
        // Purging past the end (a snapshot install) leaves an empty log that resumes after it.
        log.purge(LogIndex(150), Term(4)).unwrap();
        assert_eq!(log.first_index(), None);
        assert_eq!(log.last_term(), Some(Term(4)));
        assert!(matches!(
            log.append(&[entry(101, 4, 1)]),
            Err(Error::NonContiguous { .. })
        ));
        log.append(&[entry(151, 4, 1)]).unwrap();
    }
    let log = Log::open(dir.path(), config).unwrap();
    assert_eq!(log.purged(), Some((LogIndex(150), Term(4))));
    assert_eq!(log.first_index(), Some(LogIndex(151)));
    assert_eq!(log.last_index(), Some(LogIndex(151)));

    // The default keeps every segment: the log is the event history.
    let dir2 = tempfile::tempdir().unwrap();
    let log = Log::open(dir2.path(), small()).unwrap();
    log.append(&(1..=100).map(|i| entry(i, 3, 100)).collect::<Vec<_>>())
        .unwrap();
    log.purge(LogIndex(60), Term(3)).unwrap();
    // Raft reads nothing purged; a replay of the history reads what is retained.
    assert!(log.read(LogIndex(60)..LogIndex(61)).is_err());
    assert_eq!(log.first_retained_index(), Some(LogIndex(1)));
    let retained = log.read_retained(LogIndex(1)..LogIndex(101)).unwrap();
    assert_eq!(
        retained,
        (1..=100).map(|i| entry(i, 3, 100)).collect::<Vec<_>>()
    );
    // A snapshot installed past the end leaves a gap: what is retained starts after it.
    log.purge(LogIndex(150), Term(4)).unwrap();
    log.append(&[entry(151, 4, 1)]).unwrap();
    assert_eq!(log.first_retained_index(), Some(LogIndex(151)));
    assert!(log.read_retained(LogIndex(100)..LogIndex(152)).is_err());
    drop(log);
    let scan = crate::DirScan::read(dir2.path(), 1 << 20).unwrap();
    assert_eq!(scan.read_entries(None, 1).unwrap()[0].index, LogIndex(1));
}

#[test]
fn failed_fsync_poisons_the_log() {
    let s = MemStorage::new();
    let log = mem_log(&s, small()).unwrap();
    let rt = runtime();
    log.append(&[entry(1, 1, 10)]).unwrap();
    rt.block_on(log.wait_durable(LogIndex(1))).unwrap();
    s.fail_syncs_after(0);
    log.append(&[entry(2, 1, 10)]).unwrap();
    let err = rt.block_on(log.wait_durable(LogIndex(2))).unwrap_err();
    assert!(matches!(err, Error::Poisoned { .. }), "{err}");
    assert!(err.to_string().contains("injected fsync failure"), "{err}");
    let err = log.append(&[entry(3, 1, 10)]).unwrap_err();
    assert!(matches!(err, Error::Poisoned { .. }));
    assert_eq!(log.durable_index(), Some(LogIndex(1)));
}

#[test]
fn torn_tail_on_disk_is_discarded_and_writing_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = Log::open(dir.path(), LogConfig::default()).unwrap();
        log.append(&(1..=10).map(|i| entry(i, 1, 50)).collect::<Vec<_>>())
            .unwrap();
    }
    let seg = dir.path().join("00000000000000000001.seg");
    let mut bytes = std::fs::read(&seg).unwrap();
    // Frames are 74 bytes from offset 32; cut the 10th in half, as an interrupted write would.
    let tenth = 32 + 9 * 74;
    bytes.truncate(tenth + 30);
    std::fs::write(&seg, &bytes).unwrap();
    let scan = crate::DirScan::read(dir.path(), 1 << 20).unwrap();
    assert!(scan.torn_tail().is_some() && scan.corruption().is_none());
    {
        let log = Log::open(dir.path(), LogConfig::default()).unwrap();
        assert_eq!(log.last_index(), Some(LogIndex(9)));
        log.append(&[entry(10, 2, 5), entry(11, 2, 5)]).unwrap();
    }
    let log = Log::open(dir.path(), LogConfig::default()).unwrap();
    assert_eq!(log.last_index(), Some(LogIndex(11)));
    assert_eq!(
        log.read(LogIndex(10)..LogIndex(11)).unwrap()[0],
        entry(10, 2, 5)
    );
}

#[test]
fn corruption_refuses_to_open_and_names_segment_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = Log::open(dir.path(), small()).unwrap();
        log.append(&(1..=100).map(|i| entry(i, 1, 100)).collect::<Vec<_>>())
            .unwrap();
    }
    let seg = dir.path().join("00000000000000000001.seg");
    let mut bytes = std::fs::read(&seg).unwrap();
    let third = 32 + 2 * 124; // frames of 100-byte payloads are 124 bytes
    bytes[third + 40] ^= 0x08;
    std::fs::write(&seg, &bytes).unwrap();
    let err = Log::open(dir.path(), small()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corruption);
    match &err {
        Error::ChecksumMismatch {
            segment, offset, ..
        } => {
            assert_eq!(segment, &seg);
            assert_eq!(*offset, third as u64);
        }
        other => panic!("unexpected {other}"),
    }
    assert!(
        err.to_string().contains("00000000000000000001.seg"),
        "{err}"
    );
}

#[test]
fn a_missing_segment_is_a_gap() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = Log::open(dir.path(), small()).unwrap();
        log.append(&(1..=100).map(|i| entry(i, 1, 100)).collect::<Vec<_>>())
            .unwrap();
    }
    let names = segment_names(dir.path());
    std::fs::remove_file(dir.path().join(&names[1])).unwrap();
    assert!(matches!(
        Log::open(dir.path(), small()),
        Err(Error::Gap { .. })
    ));
}

#[test]
fn invalid_config_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        segment_size_bytes: 100,
        ..LogConfig::default()
    };
    assert!(matches!(
        Log::open(dir.path(), cfg),
        Err(Error::InvalidConfig(_))
    ));
}

/// What a test did to a log, and what it was promised.
#[derive(Debug, Clone)]
enum Op {
    Append(Vec<usize>),
    Sync,
    Truncate(u64),
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    let op = prop_oneof![
        6 => proptest::collection::vec(0usize..900, 1..6).prop_map(Op::Append),
        2 => Just(Op::Sync),
        1 => (1u64..8).prop_map(Op::Truncate),
    ];
    proptest::collection::vec(op, 1..25)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(64), ..ProptestConfig::default() })]

    /// Whatever a power loss leaves of unsynced writes (any subset of sectors), the log
    /// reopens without reporting corruption, keeps every entry that was durable, and holds a
    /// prefix of what was written.
    #[test]
    fn crash_images_keep_every_durable_entry(ops in ops(), seed in any::<u64>()) {
        let s = MemStorage::new();
        let rt = runtime();
        let mut model: BTreeMap<u64, Entry> = BTreeMap::new();
        let mut durable = 0u64;
        {
            let log = mem_log(&s, small()).unwrap();
            let mut term = 1;
            for op in &ops {
                match op {
                    Op::Append(sizes) => {
                        let next = model.keys().last().map_or(1, |l| l + 1);
                        let batch: Vec<Entry> = sizes.iter().enumerate()
                            .map(|(k, len)| entry(next + k as u64, term, *len)).collect();
                        log.append(&batch).unwrap();
                        for e in batch { model.insert(e.index.0, e); }
                    }
                    Op::Sync => {
                        if let Some(&last) = model.keys().last() {
                            let wait = log.wait_durable(LogIndex(last));
                            let waited = rt.block_on(async {
                                tokio::time::timeout(std::time::Duration::from_secs(5), wait).await
                            });
                            prop_assert!(waited.is_ok(), "index {} never became durable", last);
                            waited.unwrap().unwrap();
                            durable = durable.max(last);
                        }
                    }
                    Op::Truncate(back) => {
                        let Some(&last) = model.keys().last() else { continue };
                        let from = last.saturating_sub(*back).max(1);
                        log.truncate(LogIndex(from)).unwrap();
                        model.retain(|i, _| *i < from);
                        durable = durable.min(from - 1);
                        term += 1;
                    }
                }
            }
            // The log is dropped without a final sync being awaited by anyone; the image is
            // taken of the storage as the crash found it.
            std::mem::forget(log);
        }
        let image = s.crash_image(seed);
        let log = mem_log(&image, small());
        prop_assert!(log.is_ok(), "reopen failed: {:?}", log.err());
        let log = log.unwrap();
        let last = log.last_index().map_or(0, |l| l.0);
        prop_assert!(last >= durable, "lost durable entries: last {} < durable {}", last, durable);
        if last > 0 {
            let got = log.read(LogIndex(1)..LogIndex(last + 1)).unwrap();
            for e in got {
                prop_assert_eq!(Some(&e), model.get(&e.index.0));
            }
        }
    }
}

#[test]
fn concurrent_appenders_and_tailers_see_every_index_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(
        dir.path(),
        LogConfig {
            segment_size_bytes: 64 << 10,
            ..small()
        },
    )
    .unwrap();
    let rt = runtime();
    const WRITERS: u64 = 16;
    const PER_WRITER: u64 = 300;
    let total = WRITERS * PER_WRITER;
    rt.block_on(async {
        let mut tailers = Vec::new();
        for _ in 0..3 {
            let mut t = log.tail(LogIndex(1));
            tailers.push(tokio::spawn(async move {
                let mut seen = Vec::new();
                while (seen.len() as u64) < total {
                    let batch = t.next_batch(97).await.unwrap();
                    assert!(!batch.is_empty());
                    seen.extend(batch);
                }
                seen
            }));
        }
        let mut writers = Vec::new();
        for w in 0..WRITERS {
            let log = log.clone();
            writers.push(tokio::spawn(async move {
                for k in 0..PER_WRITER {
                    let p = format!("{w}:{k}");
                    let idx = {
                        let log = log.clone();
                        tokio::task::spawn_blocking(move || {
                            log.append_next(Term(1), &[p.as_bytes()])
                        })
                        .await
                        .unwrap()
                        .unwrap()
                    };
                    log.wait_durable(*idx.end()).await.unwrap();
                }
            }));
        }
        for w in writers {
            w.await.unwrap();
        }
        for t in tailers {
            let seen = t.await.unwrap();
            let indices: Vec<u64> = seen.iter().map(|e| e.index.0).collect();
            assert_eq!(indices, (1..=total).collect::<Vec<_>>());
            // Each writer's own entries appear in the order it wrote them.
            let mut next_k = vec![0u64; WRITERS as usize];
            for e in &seen {
                let text = String::from_utf8(e.payload.clone()).unwrap();
                let (w, k) = text.split_once(':').unwrap();
                let (w, k): (usize, u64) = (w.parse().unwrap(), k.parse().unwrap());
                assert_eq!(k, next_k[w]);
                next_k[w] += 1;
            }
        }
    });
    assert_eq!(log.durable_index(), Some(LogIndex(total)));
    drop(log);
    let reopened = Log::open(dir.path(), small()).unwrap();
    assert_eq!(reopened.last_index(), Some(LogIndex(total)));
}

#[test]
fn dropping_the_log_syncs_what_was_written() {
    let s = MemStorage::new();
    {
        let log = mem_log(&s, small()).unwrap();
        log.append(&(1..=20).map(|i| entry(i, 1, 300)).collect::<Vec<_>>())
            .unwrap();
    }
    // After a clean close, even the harshest crash image keeps everything.
    for seed in 0..10 {
        let log = mem_log(&s.crash_image(seed), small()).unwrap();
        assert_eq!(log.last_index(), Some(LogIndex(20)));
    }
}
