//! [`Node`]: one FoldDB raft node. Today a single-member cluster, initialised on first start
//! and re-elected at every start after; every write goes through raft, the log and the state
//! machine, exactly as it will with peers (there is no second, direct write path).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use folddb_log::LogConfig;
use folddb_materializer::{ChangeSet, Fold, HotStore};
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, Raft, ServerState};

use crate::error::{Error, Result};
use crate::{Command, CommandResult, LogStore, StateMachine, TypeConfig};

/// How long a starting node waits to become leader of its one-member cluster.
const LEADER_WAIT: Duration = Duration::from_secs(10);
/// How long shutdown waits for openraft's tasks to release the state machine.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(10);

/// The network of a cluster with no other members: any RPC is a peer that cannot be reached.
/// A one-member cluster never sends one; peer RPC over HTTP arrives with clustering.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoPeers;

fn unreachable<E: std::error::Error>() -> RPCError<u64, BasicNode, E> {
    let e = std::io::Error::new(std::io::ErrorKind::NotConnected, "this node has no peers");
    RPCError::Network(NetworkError::new(&e))
}

impl RaftNetworkFactory<TypeConfig> for NoPeers {
    type Network = NoPeers;

    async fn new_client(&mut self, _target: u64, _node: &BasicNode) -> Self::Network {
        NoPeers
    }
}

impl RaftNetwork<TypeConfig> for NoPeers {
    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        Err(unreachable())
    }

    async fn install_snapshot(
        &mut self,
        _rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>,
    > {
        Err(unreachable())
    }

    async fn vote(
        &mut self,
        _rpc: VoteRequest<u64>,
        _option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        Err(unreachable())
    }
}

/// The state machine must never be ahead of the durable log: were it, openraft would take
/// the missing entries for purged ones and mark the whole log purged. That happens only when
/// the log lost entries it had made durable (a damaged disk, a truncated file); the node
/// refuses to start and says how to recover, and nothing is written.
fn check_not_ahead(log: &LogStore, hot: &HotStore) -> Result<()> {
    let Some(applied) = hot.applied_index()? else {
        return Ok(());
    };
    let log = log.log();
    let covered = log.last_index().is_some_and(|l| l.0 >= applied.0)
        || log.purged().is_some_and(|(p, _)| p.0 >= applied.0);
    if covered {
        return Ok(());
    }
    Err(Error::AheadOfLog {
        applied: applied.0,
        log_last: log.last_index().map_or_else(
            || "before its first entry".to_owned(),
            |l| format!("index {}", l.0),
        ),
    })
}

/// A node's raft state, as health endpoints report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    pub node_id: u64,
    pub is_leader: bool,
    pub current_term: u64,
    pub last_applied: u64,
    pub last_log_index: u64,
    /// Why the node stopped serving writes, if it did: raft's core quit after a storage
    /// failure (a full disk, say). Writes are refused until the node is restarted.
    pub stopped: Option<String>,
}

/// A running raft node with its log and hot tier.
pub struct Node<F: Fold> {
    id: u64,
    raft: Raft<TypeConfig>,
    log: LogStore,
    hot: Arc<HotStore>,
    feed: crate::state_machine::ChangeFeed,
    _fold: std::marker::PhantomData<F>,
}

impl<F: Fold> std::fmt::Debug for Node<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("id", &self.id).finish()
    }
}

fn raft_err(op: &'static str) -> impl Fn(String) -> Error {
    move |reason| Error::Raft { op, reason }
}

/// Why raft's core quit, if it did: applying stops at an entry it cannot fold (the store
/// failing, an entry that does not decode), and a start says which rather than that a wait
/// ended.
fn stopped_core(raft: &Raft<TypeConfig>, what: &'static str) -> Result<()> {
    match &raft.metrics().borrow().running_state {
        Err(fatal) => Err(raft_err(what)(fatal.to_string())),
        Ok(()) => Ok(()),
    }
}

impl<F: Fold> Node<F> {
    /// Starts node `id` over `data_dir` (`log/`, `rocksdb/` and `streams/` inside it) as the only member
    /// of its cluster: initialises the cluster on first start, and waits until it leads.
    pub async fn start_single(
        id: u64,
        address: &str,
        data_dir: &Path,
        log_config: LogConfig,
        fold: Arc<F>,
    ) -> Result<Node<F>> {
        let log = LogStore::open(data_dir.join("log"), log_config).await?;
        let hot_dir = data_dir.to_path_buf();
        let hot = tokio::task::spawn_blocking(move || HotStore::open_data_dir(&hot_dir))
            .await
            .map_err(|e| Error::Task(e.to_string()))??;
        let hot = Arc::new(hot);
        check_not_ahead(&log, &hot)?;
        let sm = StateMachine::new(hot.clone(), fold);
        let feed = sm.feed().clone();
        let config = openraft::Config {
            cluster_name: "folddb".into(),
            heartbeat_interval: 100,
            election_timeout_min: 200,
            election_timeout_max: 400,
            // The log is the source of truth and is kept whole: no snapshot, so openraft never
            // purges entries a rebuild of the hot tier would need. Snapshots for lagging
            // followers arrive with clustering, built without purging.
            snapshot_policy: openraft::SnapshotPolicy::Never,
            ..Default::default()
        }
        .validate()
        .map_err(|e| raft_err("configure raft")(e.to_string()))?;
        let raft = Raft::new(id, Arc::new(config), NoPeers, log.clone(), sm)
            .await
            .map_err(|e| raft_err("start raft")(e.to_string()))?;
        let initialized = raft
            .is_initialized()
            .await
            .map_err(|e| raft_err("read raft state")(e.to_string()))?;
        if !initialized {
            let members = BTreeMap::from([(id, BasicNode::new(address))]);
            raft.initialize(members)
                .await
                .map_err(|e| raft_err("initialise the cluster")(e.to_string()))?;
        }
        let led = raft
            .wait(Some(LEADER_WAIT))
            .state(ServerState::Leader, "become leader of a one-member cluster")
            .await;
        stopped_core(&raft, "become leader")?;
        led.map_err(|e| raft_err("become leader")(e.to_string()))?;
        // Read barrier: serve nothing until every entry in the log is applied (after a crash,
        // or after the hot tier was deleted, this replays the log).
        let last = raft.metrics().borrow().last_log_index;
        let replayed = raft
            .wait(None)
            .applied_index_at_least(last, "apply the whole log")
            .await;
        stopped_core(&raft, "replay the log")?;
        replayed.map_err(|e| raft_err("replay the log")(e.to_string()))?;
        Ok(Node {
            id,
            raft,
            log,
            hot,
            feed,
            _fold: std::marker::PhantomData,
        })
    }

    /// Proposes `command` and returns what applying it reported, once it is committed
    /// (durable in the log) and applied on this node.
    pub async fn propose(&self, command: Command) -> Result<CommandResult> {
        let response = self
            .raft
            .client_write(command)
            .await
            .map_err(|e| raft_err("propose")(e.to_string()))?;
        Ok(response.data)
    }

    /// A handle that packs concurrent commands into entries and proposes them (the
    /// materializer's `Propose`). Must be called inside the tokio runtime.
    pub fn proposer(&self) -> crate::Proposer {
        crate::Proposer::start(self.raft.clone())
    }

    /// Raft's view of this node, for health endpoints.
    pub fn status(&self) -> NodeStatus {
        let m = self.raft.metrics().borrow().clone();
        NodeStatus {
            node_id: self.id,
            is_leader: m.current_leader == Some(self.id),
            current_term: m.current_term,
            last_applied: m.last_applied.map_or(0, |l| l.index),
            last_log_index: m.last_log_index.unwrap_or(0),
            stopped: m.running_state.as_ref().err().map(|fatal| match fatal {
                openraft::error::Fatal::StorageError(e) => {
                    let e = e.to_string();
                    let hint = if e.contains("No space left on device") {
                        "disk full: free space on it, then restart"
                    } else {
                        "a restart retries the entry that failed"
                    };
                    format!(
                        "a storage failure stopped the node ({e}); it accepts no writes until \
                         it is restarted ({hint})"
                    )
                }
                openraft::error::Fatal::Panicked => {
                    "raft's core panicked; the node accepts no writes until it is restarted"
                        .to_owned()
                }
                openraft::error::Fatal::Stopped => "the node is shutting down".to_owned(),
            }),
        }
    }

    /// The hot tier, for reads (served locally; the leader has applied its own writes).
    /// Row changes from now on, in log order, each once its entry is applied to the hot
    /// tier: subscribe, then read the hot tier, then apply changes with a larger index.
    pub fn changes(&self) -> tokio::sync::broadcast::Receiver<std::sync::Arc<ChangeSet>> {
        self.feed.subscribe()
    }

    pub fn hot(&self) -> &Arc<HotStore> {
        &self.hot
    }

    /// The raft log, for tailing and tooling.
    pub fn log(&self) -> &LogStore {
        &self.log
    }

    /// Stops raft and closes the hot tier (flushing it) and the log. openraft's tasks let go
    /// of the state machine shortly after `shutdown` returns; this waits for that, so that a
    /// node can be started again on the same directory in the same process.
    pub async fn shutdown(self) -> Result<()> {
        self.raft
            .shutdown()
            .await
            .map_err(|e| raft_err("shut down")(e.to_string()))?;
        drop(self.raft);
        let deadline = tokio::time::Instant::now() + SHUTDOWN_WAIT;
        while Arc::strong_count(&self.hot) > 1 {
            if tokio::time::Instant::now() > deadline {
                return Err(raft_err("shut down")(
                    "the state machine is still in use".to_owned(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let hot = self.hot;
        tokio::task::spawn_blocking(move || {
            hot.flush()?;
            drop(hot);
            Ok(())
        })
        .await
        .map_err(|e| Error::Task(e.to_string()))?
    }
}
