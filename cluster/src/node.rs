//! [`Node`]: one FoldDB raft node. Today a single-member cluster, initialised on first start
//! and re-elected at every start after; every write goes through raft, the log and the state
//! machine, exactly as it will with peers (there is no second, direct write path).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use folddb_log::{LogConfig, LogIndex};
use folddb_materializer::{ChangeSet, Fold, HotStore};
use openraft::error::{
    ClientWriteError, InitializeError, InstallSnapshotError, NetworkError, RPCError, RaftError,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, Raft, ServerState};

use crate::codec::{self, decode_message, encode_message};
use crate::error::{Error, Result};
use crate::network::{ClusterAuth, HttpNetwork, Peers, Proposed, ReadIndex, Rpc};
use crate::{Command, CommandResult, LogStore, StateMachine, TypeConfig};

/// How long a starting node waits to become leader of its one-member cluster.
const LEADER_WAIT: Duration = Duration::from_secs(10);
/// How long a read waits for this node to catch up with the leader.
const READ_BARRIER_WAIT: Duration = Duration::from_secs(5);
/// How long after a quorum confirmed this node's leadership it serves reads without asking
/// again: well inside the 200 ms minimum election timeout, and the followers' lease on the
/// leader (the 400 ms maximum), so that clocks running apart by far more than any real drift
/// still leave no room for a second leader.
const READ_LEASE: Duration = Duration::from_millis(150);
/// How long a read waits for a leader to be known (an election under way).
const LEADER_KNOWN_WAIT: Duration = Duration::from_secs(2);
/// Why a node without a known leader serves no read that must see every write.
const NO_LEADER: &str = "LEADER_NOT_AVAILABLE: the cluster has no leader at the moment (an \
     election is under way, or too few nodes are up)";
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

/// A store behind the log's purge marker (its hot tier deleted, say) cannot be brought up by
/// raft, which reads nothing purged: it is brought up to the marker here from the entries
/// the log still retains, exactly as `folddb log replay` does. When they are gone too, the
/// node refuses to start and says how to bring it back.
fn catch_up_to_purge<F: Fold>(log: &LogStore, hot: &HotStore, fold: &F) -> Result<()> {
    let log = log.log();
    let Some((purged, _)) = log.purged() else {
        return Ok(());
    };
    let applied = hot.applied_index()?;
    if applied.is_some_and(|a| a >= purged) {
        return Ok(());
    }
    let from = applied.map_or(0, |a| a.0 + 1);
    if log.first_retained_index().is_none_or(|f| f.0 > from) {
        return Err(Error::Incomplete {
            reason: format!(
                "the hot tier has applied {}, and the log no longer holds the entries from \
                 index {from} up to its purge marker ({}): bring this node back from a \
                 snapshot by emptying its data directory (it rejoins and is sent one), or \
                 restore the hot tier",
                applied.map_or_else(|| "nothing".to_owned(), |a| format!("up to index {}", a.0)),
                purged.0
            ),
        });
    }
    tracing::info!(
        from,
        to = purged.0,
        "applying retained entries up to the purge marker"
    );
    let mut next = from;
    while next <= purged.0 {
        let stop = (next + 4096).min(purged.0 + 1);
        for e in log.read_retained(LogIndex(next)..LogIndex(stop))? {
            let entry = codec::decode_entry(e.term.0, e.index.0, &e.payload)?;
            crate::state_machine::apply_entry(hot, fold, &entry)?;
        }
        next = stop;
    }
    hot.flush()?;
    Ok(())
}

/// Returns once this node no longer takes `leader` for the leader (another was elected, or
/// an election is under way).
pub(crate) async fn leader_changes(raft: &Raft<TypeConfig>, leader: u64) {
    let _ = raft
        .wait(None)
        .metrics(|m| m.current_leader != Some(leader), "the leader changes")
        .await;
}

/// A node's raft state, as health endpoints report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    pub node_id: u64,
    pub is_leader: bool,
    pub current_term: u64,
    pub last_applied: u64,
    pub last_log_index: u64,
    /// The last entry its current snapshot covers (0: none).
    pub snapshot_index: u64,
    /// The last entry raft has forgotten (its purge marker; 0: none).
    pub purged_index: u64,
    /// Why the node stopped serving writes, if it did: raft's core quit after a storage
    /// failure (a full disk, say). Writes are refused until the node is restarted.
    pub stopped: Option<String>,
}

/// Who a node's cluster is.
#[derive(Debug, Clone)]
pub enum Membership {
    /// This node alone, at `address` (the default: no peers, nothing to configure).
    Single { address: String },
    /// A static cluster, etcd's initial cluster: nodes started fresh with the same members
    /// (id → API address) form one cluster. `peers` reaches them.
    Static {
        members: BTreeMap<u64, String>,
        peers: Peers,
        snapshots: SnapshotPolicy,
        /// The member's copies of node-local storages' cold files, when it has a cold tier.
        files: Option<Arc<crate::files::ColdFiles>>,
    },
}

/// When a cluster member snapshots its state, and how much of the log raft keeps sending
/// after one. A member brought up from a snapshot receives it, then the log from there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotPolicy {
    /// Every this many applied entries (0: only on request, `CLUSTER SNAPSHOT`).
    pub every_entries: u64,
    /// Entries before the snapshot raft still reads and sends; it forgets those before them
    /// (a purge marker: the segments stay while the log's retention keeps them).
    pub keep_entries: u64,
}

/// One member of the cluster, as health endpoints and `system.cluster` report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberStatus {
    pub node_id: u64,
    pub address: String,
    pub is_leader: bool,
    /// A voter, or a learner (a joining node catching up with the log).
    pub voter: bool,
    /// On the leader: how many entries this member's log is behind the leader's (none when
    /// unknown, or on a follower, which does not track the others).
    pub lag: Option<u64>,
}

/// A running raft node with its log and hot tier.
pub struct Node<F: Fold> {
    pub(crate) id: u64,
    pub(crate) peers: Option<Peers>,
    pub(crate) raft: Raft<TypeConfig>,
    /// When a quorum last confirmed this node's leadership (measured from before it was
    /// asked), and in which term: reads within [`READ_LEASE`] of it need not ask again.
    lease: std::sync::Mutex<Option<(std::time::Instant, u64)>>,
    /// Read barriers' questions, one in flight at a time, shared.
    rounds: crate::rounds::Rounds,
    log: LogStore,
    hot: Arc<HotStore>,
    feed: crate::state_machine::ChangeFeed,
    files: Option<Arc<crate::files::ColdFiles>>,
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

/// A one-member cluster's start: waits until the node leads, then until every entry in its
/// log is applied (after a crash, or after the hot tier was deleted, this replays the log):
/// it serves nothing before.
async fn lead_alone(raft: &Raft<TypeConfig>) -> Result<()> {
    // Each wait also ends as soon as the core has quit: a replay can stop at a bad entry
    // before the election is won, and then no leader ever comes.
    let led = raft
        .wait(Some(LEADER_WAIT))
        .metrics(
            |m| m.state == ServerState::Leader || m.running_state.is_err(),
            "become leader of a one-member cluster",
        )
        .await;
    stopped_core(raft, "become leader")?;
    led.map_err(|e| raft_err("become leader")(e.to_string()))?;
    let last = raft.metrics().borrow().last_log_index;
    let replayed = raft
        .wait(None)
        .metrics(
            |m| m.last_applied.map(|l| l.index) >= last || m.running_state.is_err(),
            "apply the whole log",
        )
        .await;
    stopped_core(raft, "replay the log")?;
    replayed.map_err(|e| raft_err("replay the log")(e.to_string()))?;
    Ok(())
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
        let membership = Membership::Single {
            address: address.to_owned(),
        };
        Node::start(id, membership, data_dir, log_config, fold).await
    }

    /// Starts node `id` of `membership` over `data_dir`. A single node initialises its
    /// cluster on first start, waits until it leads and has applied its whole log. A member
    /// of a static cluster initialises it with every member on first start (whichever member
    /// is first, the others' attempts are refused and change nothing) and returns at once:
    /// a leader is elected once the members serve each other's RPCs.
    pub async fn start(
        id: u64,
        membership: Membership,
        data_dir: &Path,
        log_config: LogConfig,
        fold: Arc<F>,
    ) -> Result<Node<F>> {
        let (members, peers, snapshots, files) = match membership {
            Membership::Single { address } => (BTreeMap::from([(id, address)]), None, None, None),
            Membership::Static {
                members,
                peers,
                snapshots,
                files,
            } => (members, Some(peers), Some(snapshots), files),
        };
        let log = LogStore::open(data_dir.join("log"), log_config).await?;
        let hot_dir = data_dir.to_path_buf();
        let hot = tokio::task::spawn_blocking(move || HotStore::open_data_dir(&hot_dir))
            .await
            .map_err(|e| Error::Task(e.to_string()))??;
        let hot = Arc::new(hot);
        check_not_ahead(&log, &hot)?;
        catch_up_to_purge(&log, &hot, fold.as_ref())?;
        let mut sm = StateMachine::new(hot.clone(), fold, data_dir.join("snapshots"))?;
        if let Some(files) = &files {
            files.set_store(&hot);
            sm = sm.with_files(files.clone());
            // Files a snapshot's manifests listed, if a restart cut their fetch off.
            tokio::spawn(files.clone().hold_listed());
        }
        let feed = sm.feed().clone();
        let config = openraft::Config {
            cluster_name: "folddb".into(),
            heartbeat_interval: 100,
            election_timeout_min: 200,
            election_timeout_max: 400,
            // A single node keeps the whole log in raft's hands: no snapshot is needed to
            // bring anyone up, and deleting the hot tier rebuilds it from the log. A cluster
            // member snapshots per its policy, so that a member far behind (or wiped) is
            // brought up from a snapshot; raft's purge only moves a marker, and the segments
            // stay per the log's retention.
            snapshot_policy: match snapshots {
                Some(p) if p.every_entries > 0 => {
                    openraft::SnapshotPolicy::LogsSinceLast(p.every_entries)
                }
                _ => openraft::SnapshotPolicy::Never,
            },
            max_in_snapshot_log_to_keep: snapshots.map_or(u64::MAX, |p| p.keep_entries),
            // A snapshot travels in chunks of this size, each answered within the timeout.
            snapshot_max_chunk_size: 4 << 20,
            install_snapshot_timeout: 10_000,
            ..Default::default()
        }
        .validate()
        .map_err(|e| raft_err("configure raft")(e.to_string()))?;
        let config = Arc::new(config);
        let raft = match &peers {
            None => Raft::new(id, config, NoPeers, log.clone(), sm).await,
            Some(p) => Raft::new(id, config, HttpNetwork::new(p.clone()), log.clone(), sm).await,
        }
        .map_err(|e| raft_err("start raft")(e.to_string()))?;
        let initialized = raft
            .is_initialized()
            .await
            .map_err(|e| raft_err("read raft state")(e.to_string()))?;
        // A node not among the members joins a running cluster (CLUSTER JOIN on one of them):
        // it waits to be sent the log, and initialises nothing.
        if !initialized && members.contains_key(&id) {
            let nodes: BTreeMap<u64, BasicNode> = members
                .iter()
                .map(|(i, a)| (*i, BasicNode::new(a)))
                .collect();
            match raft.initialize(nodes).await {
                Ok(()) => {}
                // Another member initialised the cluster first and reached this one.
                Err(RaftError::APIError(InitializeError::NotAllowed(_))) if peers.is_some() => {}
                Err(e) => return Err(raft_err("initialise the cluster")(e.to_string())),
            }
        }
        if peers.is_some() {
            // No waiting for a leader: there is none until the members answer each other's
            // RPCs, which they do once the node is serving. Writes before then are refused
            // with LEADER_NOT_AVAILABLE, and reads wait for the leader's commit.
            stopped_core(&raft, "join the cluster")?;
        } else {
            // A data directory a cluster wrote (a member's, or a replay of its log) names the
            // cluster's members: alone, this node would wait forever for their votes.
            let others: Vec<u64> = raft
                .metrics()
                .borrow()
                .membership_config
                .membership()
                .voter_ids()
                .filter(|v| *v != id)
                .collect();
            if !others.is_empty() {
                return Err(Error::Invalid(format!(
                    "this data directory belongs to a cluster whose voters include nodes \
                     {others:?}: start it as node {id} of that cluster, with its peers \
                     (--peers, FOLDDB_PEERS) and secret"
                )));
            }
            lead_alone(&raft).await?;
        }
        Ok(Node {
            id,
            peers,
            raft,
            lease: std::sync::Mutex::new(None),
            rounds: crate::rounds::Rounds::default(),
            log,
            hot,
            feed,
            files,
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
        crate::Proposer::start(self.raft.clone(), self.id, self.peers.clone())
    }

    /// Whether this node has peers.
    pub fn is_cluster(&self) -> bool {
        self.peers.is_some()
    }

    /// Who may send this node RPCs: none for a single node (it answers none).
    pub fn cluster_auth(&self) -> Option<&ClusterAuth> {
        self.peers.as_ref().map(Peers::auth)
    }

    /// The leader's id and API address, when one is known.
    pub fn leader(&self) -> Option<(u64, String)> {
        let m = self.raft.metrics().borrow().clone();
        let id = m.current_leader?;
        let node = m.membership_config.membership().get_node(&id)?;
        Some((id, node.addr.clone()))
    }

    /// The members of the cluster, with the leader's view of their lag.
    pub fn members(&self) -> Vec<MemberStatus> {
        let m = self.raft.metrics().borrow().clone();
        let last = m.last_log_index.unwrap_or(0);
        let membership = m.membership_config.membership();
        let voters: std::collections::BTreeSet<u64> = membership.voter_ids().collect();
        membership
            .nodes()
            .map(|(id, node)| MemberStatus {
                node_id: *id,
                address: node.addr.clone(),
                is_leader: m.current_leader == Some(*id),
                voter: voters.contains(id),
                lag: m.replication.as_ref().and_then(|r| {
                    r.get(id)
                        .map(|matched| last.saturating_sub(matched.map_or(0, |l| l.index)))
                }),
            })
            .collect()
    }

    /// Waits until this node has applied every write acknowledged before the call, so that
    /// a client reads its own writes whichever node it asks: the leader confirms it still
    /// leads (a quorum answers; within a lease after that, no question is needed) and has
    /// applied up to its commit; a follower asks the leader how far that is and waits until
    /// it has applied as far. Concurrent reads share one question ([`crate::rounds`]). A
    /// single node has nothing to wait for: it acknowledges a write only once applied.
    pub async fn read_barrier(&self) -> Result<()> {
        let Some(peers) = &self.peers else {
            return Ok(());
        };
        let unavailable = |why: String| Error::Unavailable(why);
        if self.leader().is_none() {
            // An election under way, or a node that just joined and has not yet heard from
            // the leader: worth a short wait rather than a refusal.
            let _ = self
                .raft
                .wait(Some(LEADER_KNOWN_WAIT))
                .metrics(|m| m.current_leader.is_some(), "a known leader")
                .await;
        }
        if self.leased().is_some() {
            return Ok(());
        }
        let index = self
            .rounds
            .answer(|| self.ask_read_index(peers))
            .await
            .map_err(unavailable)?;
        self.raft
            .wait(Some(READ_BARRIER_WAIT))
            .applied_index_at_least(Some(index), "apply up to the leader's commit")
            .await
            .map(|_| ())
            .map_err(|e| unavailable(format!("this node is behind the leader: {e}")))
    }

    /// One round of a read barrier: how far this node must have applied. The leader
    /// confirms its leadership with a quorum; a follower asks the leader.
    async fn ask_read_index(&self, peers: &Peers) -> Result<u64, String> {
        let Some((leader, addr)) = self.leader() else {
            return Err(NO_LEADER.to_owned());
        };
        if leader == self.id {
            return self
                .confirm_leadership()
                .await
                .map_err(|e| format!("NOT_LEADER: {e}"));
        }
        let ask = peers.call::<_, ReadIndex>(&addr, Rpc::ReadIndex, &(), READ_BARRIER_WAIT);
        let at = tokio::select! {
            at = ask => at.map_err(|e| format!("LEADER_NOT_AVAILABLE: {e}"))?,
            () = leader_changes(&self.raft, leader) => {
                return Err("NOT_LEADER: the leader was replaced during this read; retry".to_owned());
            }
        };
        match at {
            ReadIndex::At(i) => Ok(i),
            ReadIndex::NotLeader(_) => Err(NO_LEADER.to_owned()),
        }
    }

    /// On the leader, within [`READ_LEASE`] of a quorum confirming its leadership: its
    /// applied index, which every acknowledged write is at or below. No other leader can be
    /// elected before the followers' lease on this one (the election timeout) runs out; the
    /// leader acknowledges a write only once applied; and having applied an entry of its own
    /// term, it has applied everything earlier leaders committed.
    fn leased(&self) -> Option<u64> {
        let m = self.raft.metrics().borrow().clone();
        let (since, term) = (*self.lease.lock().unwrap_or_else(|e| e.into_inner()))?;
        let applied = m.last_applied?;
        (since.elapsed() < READ_LEASE
            && term == m.current_term
            && m.current_leader == Some(self.id)
            && applied.leader_id.term == m.current_term)
            .then_some(applied.index)
    }

    /// Has a quorum confirm this node leads (openraft's `ensure_linearizable`, which also
    /// waits until this node has applied its commit): the index every write acknowledged
    /// before the call is at or below. Starts a [`READ_LEASE`] from before the question.
    async fn confirm_leadership(&self) -> Result<u64, String> {
        let (asked, term) = (
            std::time::Instant::now(),
            self.raft.metrics().borrow().current_term,
        );
        // openraft leaves the question pending while no quorum answers (a peer down and
        // another paused, say) and may never answer it: bounded, or every read sharing the
        // round would wait forever.
        let at = tokio::time::timeout(READ_BARRIER_WAIT, self.raft.ensure_linearizable())
            .await
            .map_err(|_| {
                format!(
                    "no quorum confirmed this node's leadership within {} s",
                    READ_BARRIER_WAIT.as_secs()
                )
            })?
            .map_err(|e| e.to_string())?;
        *self.lease.lock().unwrap_or_else(|e| e.into_inner()) = Some((asked, term));
        Ok(at.map_or(0, |l| l.index))
    }

    /// A follower's read index question, at the leader: leased, or one shared round.
    async fn read_index(&self) -> Result<u64, String> {
        if let Some(at) = self.leased() {
            return Ok(at);
        }
        self.rounds.answer(|| self.confirm_leadership()).await
    }

    /// Answers a peer's RPC (the HTTP layer has checked the caller's cluster id and secret):
    /// `body` is the request as [`Peers::call`] encoded it; the answer is encoded the same
    /// way. A body that does not decode is the error.
    pub async fn answer_rpc(&self, rpc: Rpc, body: &[u8]) -> Result<Vec<u8>, String> {
        Ok(match rpc {
            Rpc::Append => {
                let req: AppendEntriesRequest<TypeConfig> = decode_message(body)?;
                encode_message(&self.raft.append_entries(req).await)
            }
            Rpc::Vote => {
                let req: VoteRequest<u64> = decode_message(body)?;
                encode_message(&self.raft.vote(req).await)
            }
            Rpc::Snapshot => {
                let req: crate::network::SnapshotChunk = decode_message(body)?;
                encode_message(&self.raft.install_snapshot(req.into()).await)
            }
            Rpc::Propose => {
                let entry: Command = decode_message(body)?;
                let answer = match self.raft.client_write(entry).await {
                    Ok(r) => Proposed::Applied(r.data),
                    Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                        Proposed::NotLeader(f.leader_node.map(|n| n.addr))
                    }
                    Err(e) => Proposed::Failed(e.to_string()),
                };
                encode_message(&answer)
            }
            Rpc::ReadIndex => {
                let () = decode_message(body)?;
                let answer = match self.read_index().await {
                    Ok(at) => ReadIndex::At(at),
                    Err(_) => ReadIndex::NotLeader(self.leader().map(|(_, a)| a)),
                };
                encode_message(&answer)
            }
            Rpc::Admin => {
                let op: crate::Admin = decode_message(body)?;
                encode_message(&self.answer_admin(op).await)
            }
            Rpc::File => match &self.files {
                Some(files) => files.answer(body).await?,
                None => return Err("this node has no cold tier".to_owned()),
            },
        })
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
            snapshot_index: m.snapshot.map_or(0, |l| l.index),
            purged_index: m.purged.map_or(0, |l| l.index),
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
