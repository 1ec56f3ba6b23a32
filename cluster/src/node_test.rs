//! A single-member node end to end: proposals go through raft, the durable log and the state
//! machine; a restart re-elects the node and replays nothing twice.

use std::sync::Arc;

use folddb_log::LogConfig;
use folddb_materializer::Family;

use crate::{Command, CommandResult, Node};
use folddb_materializer::StoreCommands as RecordFold;

fn config() -> LogConfig {
    LogConfig {
        segment_size_bytes: 64 << 10,
        ..LogConfig::default()
    }
}

async fn start(dir: &std::path::Path) -> Node<RecordFold> {
    Node::start_single(1, "127.0.0.1:0", dir, config(), Arc::new(RecordFold))
        .await
        .unwrap()
}

/// The commands the hot tier holds, in log order.
fn applied_commands(node: &Node<RecordFold>) -> Vec<Vec<u8>> {
    node.hot()
        .scan_prefix(Family::Rows, &[])
        .unwrap()
        .into_iter()
        .map(|(_, v)| v)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proposals_commit_apply_and_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let node = start(dir.path()).await;
        for cmd in [&b"one"[..], b"three", b"seventeen"] {
            let result = node.propose(Command(cmd.to_vec())).await.unwrap();
            assert_eq!(
                result,
                CommandResult((cmd.len() as u64).to_be_bytes().to_vec())
            );
        }
        assert_eq!(
            applied_commands(&node),
            [&b"one"[..], b"three", b"seventeen"]
        );
        // Every proposal is in the durable log.
        let durable = node.log().log().durable_index().unwrap();
        assert!(durable >= node.log().log().last_index().unwrap());
        node.shutdown().await.unwrap();
    }
    let node = start(dir.path()).await;
    node.propose(Command(b"four".to_vec())).await.unwrap();
    assert_eq!(
        applied_commands(&node),
        [&b"one"[..], b"three", b"seventeen", b"four"],
        "nothing lost, nothing applied twice across the restart"
    );
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_proposals_are_all_applied_once() {
    let dir = tempfile::tempdir().unwrap();
    let node = Arc::new(start(dir.path()).await);
    let mut tasks = Vec::new();
    for w in 0..8u8 {
        let node = node.clone();
        tasks.push(tokio::spawn(async move {
            for k in 0..25u8 {
                node.propose(Command(vec![w, k])).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut got = applied_commands(&node);
    assert_eq!(got.len(), 200);
    got.sort();
    got.dedup();
    assert_eq!(got.len(), 200, "each proposal applied exactly once");
    let node = Arc::into_inner(node).expect("the tasks are done");
    node.shutdown().await.unwrap();
}

/// The change feed: every applied entry's row changes arrive once, in log order, after the
/// hot tier holds them; rejected commands publish nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applied_row_changes_are_published_in_log_order() {
    use folddb_materializer::event::{decode_outcomes, encode_entry};
    use folddb_materializer::{
        Command as Event, EventFold, Op, Outcome, TableDef, TableId, TableKind, Value,
    };

    let dir = tempfile::tempdir().unwrap();
    let node = Node::start_single(
        1,
        "127.0.0.1:0",
        dir.path(),
        config(),
        Arc::new(EventFold::default()),
    )
    .await
    .unwrap();
    let mut feed = node.changes();
    let propose = |ops: Vec<Op>| {
        let entry = encode_entry(&[Event {
            stamp_ms: 1,
            actor: "t".into(),
            ops,
        }]);
        let node = &node;
        async move {
            let r = node.propose(Command(entry)).await.unwrap();
            decode_outcomes(&r.0).unwrap().remove(0)
        }
    };
    let insert = |ids: &[i64]| Op::Insert {
        table: TableId(1),
        schema_version: 1,
        scope: "alice".into(),
        rows: ids
            .iter()
            .map(|i| vec![(1, Value::BigInt(*i)), (2, Value::Null)])
            .collect(),
    };
    let setup = vec![
        Op::CreateNamespace {
            name: "app".into(),
            description: None,
            if_not_exists: false,
        },
        Op::CreateTable {
            table: TableDef::example("app", "t", TableKind::User),
            if_not_exists: false,
        },
    ];
    assert!(matches!(propose(setup).await, Outcome::Applied(_)));
    for ids in [&[1, 2][..], &[3], &[1]] {
        propose(vec![insert(ids)]).await;
    }
    let mut seen = Vec::new();
    let mut last_index = 0;
    while seen.len() < 3 {
        let set = tokio::time::timeout(std::time::Duration::from_secs(5), feed.recv())
            .await
            .expect("a change set in time")
            .expect("not lagged");
        assert!(set.index.0 > last_index, "log order");
        last_index = set.index.0;
        // Published after the hot tier holds it.
        assert!(node.hot().applied_index().unwrap().unwrap().0 >= set.index.0);
        for e in &set.events {
            assert_eq!((e.table, e.scope.as_str()), (TableId(1), "alice"));
            seen.push(e.pk.clone());
        }
    }
    assert_eq!(seen, [Value::BigInt(1), Value::BigInt(2), Value::BigInt(3)]);
    // The duplicate insert of 1 was rejected: its entry's set, if any comes, changes nothing.
    while let Ok(set) =
        tokio::time::timeout(std::time::Duration::from_millis(200), feed.recv()).await
    {
        assert!(set.expect("not lagged").events.is_empty());
    }
    node.shutdown().await.unwrap();
}

/// A fold whose store "fails" (an I/O error, as RocksDB or a full disk gives) while folding
/// the next `failures` entries: the seam the apply-fault tests inject through.
struct FailingFold {
    failures: std::sync::atomic::AtomicU32,
}

impl folddb_materializer::Fold for FailingFold {
    fn fold(
        &self,
        store: &folddb_materializer::HotStore,
        index: folddb_log::LogIndex,
        command: &[u8],
        changes: &mut folddb_materializer::HotBatch,
    ) -> folddb_materializer::Result<Vec<u8>> {
        use std::sync::atomic::Ordering;
        let left = self.failures.load(Ordering::SeqCst);
        if left > 0 && !command.is_empty() {
            self.failures.store(left - 1, Ordering::SeqCst);
            return Err(folddb_materializer::Error::Io {
                op: "read",
                path: "rocksdb/000042.sst".into(),
                source: std::io::Error::other("injected I/O error"),
            });
        }
        RecordFold.fold(store, index, command, changes)
    }
}

/// An environment failure while applying is not an outcome: the proposal gets no result
/// (never "rejected"), the node says why it stopped, the entry stays unapplied, and a
/// restart applies it with the outcome a fault-free run gives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_failure_while_applying_stops_the_node_and_a_restart_applies_the_entry() {
    let dir = tempfile::tempdir().unwrap();
    {
        let fold = Arc::new(FailingFold {
            failures: std::sync::atomic::AtomicU32::new(0),
        });
        let node = Node::start_single(1, "127.0.0.1:0", dir.path(), config(), fold.clone())
            .await
            .unwrap();
        node.propose(Command(b"before".to_vec())).await.unwrap();
        fold.failures.store(1, std::sync::atomic::Ordering::SeqCst);
        let err = node
            .propose(Command(b"faulted".to_vec()))
            .await
            .expect_err("a failed apply has no result");
        assert!(err.to_string().contains("injected I/O error"), "{err}");
        let reason = node
            .status()
            .stopped
            .expect("the node reports itself stopped");
        assert!(reason.contains("injected I/O error"), "{reason}");
        let status = node.status();
        assert!(
            status.last_applied < status.last_log_index,
            "the applied mark did not move past the failed entry: {status:?}"
        );
        let rows: Vec<Vec<u8>> = node
            .hot()
            .scan_prefix(Family::Rows, &[])
            .unwrap()
            .into_iter()
            .map(|(_, v)| v)
            .collect();
        assert_eq!(
            rows,
            [b"before".to_vec()],
            "nothing of the failed entry applied"
        );
        // Further writes are refused until a restart.
        assert!(node.propose(Command(b"after".to_vec())).await.is_err());
        let _ = node.shutdown().await;
    }
    let node = start(dir.path()).await;
    assert_eq!(
        applied_commands(&node),
        [&b"before"[..], b"faulted"],
        "the restart applied the entry that failed, once"
    );
    assert!(node.status().stopped.is_none());
    node.shutdown().await.unwrap();
}

/// An entry that does not decode is corruption, not a command to skip: applying stops and
/// names the entry; a restart refuses to serve rather than skip it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_that_does_not_decode_stops_the_node_and_names_its_index() {
    use folddb_materializer::EventFold;

    let dir = tempfile::tempdir().unwrap();
    let start_events = || {
        Node::start_single(
            1,
            "127.0.0.1:0",
            dir.path(),
            config(),
            Arc::new(EventFold::default()),
        )
    };
    let index = {
        let node = start_events().await.unwrap();
        assert!(
            node.propose(Command(b"\xff\xff not an entry".to_vec()))
                .await
                .is_err()
        );
        let status = node.status();
        let reason = status.stopped.expect("stopped");
        let index = status.last_log_index;
        assert!(
            reason.contains(&format!("log entry {index} does not decode")),
            "{reason}"
        );
        assert!(status.last_applied < index);
        let _ = node.shutdown().await;
        index
    };
    let restarted = tokio::time::timeout(std::time::Duration::from_secs(20), start_events())
        .await
        .expect("a node that cannot apply its log says so instead of hanging");
    let err = restarted.expect_err("the node refuses to start");
    assert!(
        err.to_string()
            .contains(&format!("log entry {index} does not decode")),
        "{err}"
    );
}

/// A fold that records how many commands (and rows) each entry carries, and holds the entry
/// whose first command's actor is `"hold"` until the test lets it go.
struct GateFold {
    entries: std::sync::Mutex<Vec<(usize, usize)>>,
    release: std::sync::Mutex<std::sync::mpsc::Receiver<()>>,
}

impl folddb_materializer::Fold for GateFold {
    fn fold(
        &self,
        _: &folddb_materializer::HotStore,
        _: folddb_log::LogIndex,
        command: &[u8],
        _: &mut folddb_materializer::HotBatch,
    ) -> folddb_materializer::Result<Vec<u8>> {
        use folddb_materializer::event::{decode_entry, encode_outcomes};
        let Ok(commands) = decode_entry(command) else {
            return Ok(Vec::new()); // the blank entry a new node starts with
        };
        let rows = commands.iter().map(|c| c.rows()).sum();
        self.entries.lock().unwrap().push((commands.len(), rows));
        if commands.first().is_some_and(|c| c.actor == "hold") {
            // Bounded, so that a failing test ends rather than hangs.
            let _ = self
                .release
                .lock()
                .unwrap()
                .recv_timeout(std::time::Duration::from_secs(20));
        }
        Ok(encode_outcomes(&vec![
            folddb_materializer::Outcome::Applied(
                Vec::new()
            );
            commands.len()
        ]))
    }
}

/// The proposer packs what arrives while an entry is in flight into the next entry; a small
/// one waits for the entry in flight (an entry has a fixed cost), a large one is proposed
/// beside it at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_commands_wait_for_the_entry_in_flight_and_large_ones_do_not() {
    use folddb_materializer::{Command as Event, Op, Propose, TableId, Value};
    let event = |actor: &str, rows: usize| Event {
        stamp_ms: 1,
        actor: actor.into(),
        ops: vec![Op::Insert {
            table: TableId(1),
            schema_version: 1,
            scope: String::new(),
            rows: (0..rows)
                .map(|i| vec![(1, Value::BigInt(i as i64))])
                .collect(),
        }],
    };
    let dir = tempfile::tempdir().unwrap();
    let (release, gate) = std::sync::mpsc::channel();
    let fold = Arc::new(GateFold {
        entries: Default::default(),
        release: std::sync::Mutex::new(gate),
    });
    let node = Node::start_single(1, "127.0.0.1:0", dir.path(), config(), fold.clone())
        .await
        .unwrap();
    let proposer = Arc::new(node.proposer());
    let last_index = || node.log().log().last_index().unwrap();
    let propose = |actor: &'static str, rows: usize| {
        let p = proposer.clone();
        tokio::spawn(async move { p.propose(event(actor, rows)).await })
    };
    // Proposes an entry that its fold holds, and waits until it is being applied.
    let hold = || {
        let entries = fold.entries.lock().unwrap().len();
        let held = propose("hold", 1);
        let fold = &fold;
        let started = async move {
            while fold.entries.lock().unwrap().len() == entries {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        };
        (held, started)
    };

    // Round 1: an entry held in apply, then 63 single-row commands.
    let (held, started) = hold();
    started.await;
    let appended = last_index();
    let small: Vec<_> = (0..63).map(|_| propose("small", 1)).collect();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let proposed_beside = last_index() != appended;
    // Asserted once the held entry is let go, so that a failure ends the test.
    release.send(()).unwrap();
    assert!(
        !proposed_beside,
        "small commands are not proposed beside an entry in flight"
    );
    held.await.unwrap().unwrap();
    for s in small {
        s.await.unwrap().unwrap();
    }
    assert_eq!(
        fold.entries.lock().unwrap()[..],
        [(1, 1), (63, 63)],
        "the 63 commands that waited form one entry"
    );

    // Round 2: a large command does not wait for the held entry.
    let (held, started) = hold();
    started.await;
    let appended = last_index();
    let large = propose("large", 1_000);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while last_index() == appended && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let proposed_beside = last_index() != appended;
    release.send(()).unwrap();
    assert!(
        proposed_beside,
        "a large command is proposed while another entry is in flight"
    );
    held.await.unwrap().unwrap();
    large.await.unwrap().unwrap();
    assert_eq!(fold.entries.lock().unwrap()[2..], [(1, 1), (1, 1_000)]);
    drop(proposer);
    node.shutdown().await.unwrap();
}
