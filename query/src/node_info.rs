//! What the `system` views say about the serving node beyond its catalog: its settings,
//! its recent log lines and its identity (`system.settings`, `system.server_logs`,
//! `system.cluster`, `system.cluster_groups`, `system.stats`). The server fills it in;
//! a bare engine (tests, tools) has the defaults.

use std::fmt::Debug;
use std::sync::Arc;

/// One configuration setting as `system.settings` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// Dotted, as in the config file: `limits.max_result_bytes`.
    pub name: String,
    pub value: String,
    pub description: String,
    /// The config file's section: `server`, `limits`, …
    pub category: String,
}

/// One line of the server's log, as `system.server_logs` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// RFC 3339, UTC.
    pub timestamp: String,
    pub level: String,
    pub thread: Option<String>,
    pub target: Option<String>,
    pub line: Option<u32>,
    pub message: String,
}

/// The server's most recent log lines, oldest first.
pub trait RecentLogs: Send + Sync + Debug {
    fn recent(&self) -> Vec<LogLine>;
}

/// One member of the node's cluster, as `system.cluster` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub node_id: u64,
    pub api_addr: String,
    pub is_leader: bool,
    /// A voter, or a learner (a joining node catching up with the log).
    pub voter: bool,
    /// Entries behind the leader's log, as the leader tracks it (none elsewhere).
    pub lag: Option<u64>,
}

/// The node's raft state, read when `system.cluster` is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterState {
    pub members: Vec<Member>,
    pub current_term: u64,
    pub last_applied: u64,
    pub last_log_index: u64,
}

/// What running a `CLUSTER …` statement returns: its message, or why it failed.
pub type ClusterFuture<'a> = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<String, crate::error::Error>> + Send + 'a>,
>;

/// The server's raft node, as `system.cluster` reads it and `CLUSTER …` statements drive it.
pub trait ClusterView: Send + Sync + Debug {
    fn state(&self) -> ClusterState;

    /// Runs a `CLUSTER …` statement (PURGE, CLEAR and REBALANCE never reach it).
    fn command<'a>(&'a self, command: &'a crate::dialect::ClusterCommand) -> ClusterFuture<'a>;
}

#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub node_id: u16,
    pub cluster_id: String,
    /// The address clients reach the HTTP API on.
    pub api_addr: String,
    /// When the server started, ms since the epoch.
    pub started_ms: u64,
    /// Threads serving requests.
    pub workers: usize,
    /// Connections one client address may hold open (0: unlimited).
    pub max_connections: usize,
    pub settings: Vec<Setting>,
    pub logs: Option<Arc<dyn RecentLogs>>,
    /// The cluster's members; none: this node alone, its own leader.
    pub cluster: Option<Arc<dyn ClusterView>>,
}

impl Default for NodeInfo {
    fn default() -> NodeInfo {
        NodeInfo {
            node_id: 1,
            cluster_id: "folddb".into(),
            api_addr: String::new(),
            started_ms: crate::engine::now_ms(),
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            max_connections: 0,
            settings: Vec::new(),
            logs: None,
            cluster: None,
        }
    }
}

/// This build's version, as the views and `/health` report it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
