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
