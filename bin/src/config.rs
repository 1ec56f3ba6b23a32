//! Server configuration: defaults, then `folddb.toml` (or `--config FILE`), then `FOLDDB_*`
//! environment variables, then command-line flags — each overriding the one before. Every
//! setting is documented in README.md ("Configuration").

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

/// Everything `folddb serve` reads.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub auth: AuthConfig,
    pub live: LiveConfig,
    pub storage: StorageConfig,
    pub journal: JournalConfig,
    /// The log's segment files (`folddb_log::LogConfig`; its fields document themselves).
    pub log: folddb_log::LogConfig,
    pub limits: LimitsConfig,
    pub cluster: ClusterConfig,
    pub topics: TopicsConfig,
}

/// Topics and consumer groups (#19, API.md 4.5).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TopicsConfig {
    /// How long a group's consumer holds the messages it was sent before the group's other
    /// consumers are sent them again, unless it acknowledges them. Default 60. Env
    /// `FOLDDB_TOPIC_VISIBILITY_TIMEOUT_SECS` (the reference's name).
    pub visibility_timeout_secs: u64,
    /// How often the leader removes the messages past their topic's retention. Default 60.
    /// Env `FOLDDB_TOPIC_RETENTION_CHECK_SECS`.
    pub retention_check_interval_secs: u64,
}

impl Default for TopicsConfig {
    fn default() -> TopicsConfig {
        TopicsConfig {
            visibility_timeout_secs: 60,
            retention_check_interval_secs: 60,
        }
    }
}

/// The cluster this node belongs to (#18; DESIGN.md "Cluster"). With no peers, the node is
/// a cluster of one: nothing to configure.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// Every member, this node included, as `id@host:port` (its API address, which peers
    /// call): etcd's initial cluster. Nodes started fresh with the same list form one
    /// cluster; a node whose id is not on it waits to be added with `CLUSTER JOIN`. Empty
    /// (the default): a single node.
    pub peers: Vec<String>,
    /// The secret every member shares; a raft RPC without it is refused (401). Required
    /// with peers.
    pub secret: Option<String>,
    /// The cluster's id: a node of another cluster is refused. Default `folddb`.
    pub id: String,
    /// A member snapshots its state every this many applied entries (0: only on
    /// `CLUSTER SNAPSHOT`); a node too far behind, or wiped, is brought up from one. Default
    /// 100000. Env `FOLDDB_CLUSTER_SNAPSHOT_EVERY_ENTRIES`.
    pub snapshot_every_entries: u64,
    /// Entries raft keeps sending from the log after a snapshot, for members a little behind;
    /// raft forgets the ones before (the files stay: `log.retention`). Default 10000. Env
    /// `FOLDDB_CLUSTER_SNAPSHOT_KEEP_ENTRIES`.
    pub snapshot_keep_entries: u64,
    /// How long after a compaction's commit its node removes the segments it replaced
    /// (a member still behind, or a scan that started before, may read them). Default 300.
    /// Env `FOLDDB_CLUSTER_REPLACED_SEGMENTS_GRACE_SECONDS`.
    pub replaced_segments_grace_seconds: u64,
}

impl Default for ClusterConfig {
    fn default() -> ClusterConfig {
        ClusterConfig {
            peers: Vec::new(),
            secret: None,
            id: "folddb".to_owned(),
            snapshot_every_entries: 100_000,
            snapshot_keep_entries: 10_000,
            replaced_segments_grace_seconds: 300,
        }
    }
}

impl ClusterConfig {
    /// The members, by node id: each `id@host:port` of `peers`.
    pub fn members(&self) -> anyhow::Result<std::collections::BTreeMap<u64, String>> {
        let mut members = std::collections::BTreeMap::new();
        for peer in &self.peers {
            let (id, addr) = peer
                .split_once('@')
                .with_context(|| format!("cluster peer {peer:?} is not id@host:port"))?;
            let id: u16 = id
                .trim()
                .parse()
                .with_context(|| format!("cluster peer {peer:?}: the id is not a number"))?;
            let addr = addr.trim();
            let port_ok = addr
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if !port_ok {
                bail!("cluster peer {peer:?}: the address is not host:port");
            }
            if id > 1023 {
                bail!("cluster peer {peer:?}: node ids are 0..=1023");
            }
            if members.insert(u64::from(id), addr.to_owned()).is_some() {
                bail!("cluster peers name node {id} twice");
            }
        }
        Ok(members)
    }
}

/// What one client may cost the node (API.md 1.2; #14). Every limit is documented in
/// README's configuration table.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Time a connection has to send a request head, and the longest an idle keep-alive
    /// connection stays open, in seconds. Default 30.
    pub header_read_timeout_seconds: u64,
    /// Time a request has to send its body, in seconds. Default 30.
    pub body_read_timeout_seconds: u64,
    /// Open connections per client address (then 503 `TOO_MANY_CONNECTIONS`). Default 100.
    pub max_connections_per_ip: usize,
    /// Requests per client address and second (then 429 `RATE_LIMIT_EXCEEDED`); 0 is
    /// unlimited. Default 200.
    pub requests_per_ip_per_sec: u32,
    /// SQL requests per user and second (then 429 `RATE_LIMIT_EXCEEDED`); 0 is unlimited.
    /// Default 100.
    pub sql_per_user_per_sec: u32,
    /// Statements in one SQL request. Default 1,000.
    pub max_statements_per_request: usize,
    /// How long one SQL request's statements may run, seconds (then 408
    /// `STATEMENT_TIMEOUT`, and the work is cancelled). Default 30.
    pub statement_timeout_seconds: u64,
    /// Largest query result held in memory (one of a batch of statements), bytes of Arrow
    /// data (then `RESULT_TOO_LARGE`). Default 64 MiB.
    pub max_result_bytes: usize,
    /// Memory all running queries share for sorts, aggregations and joins, bytes. Default
    /// 2 GiB.
    pub query_memory_bytes: usize,
    /// Largest value one call of `repeat`, `lpad`, `rpad` or `array_repeat` builds, bytes.
    /// Default 64 MiB.
    pub max_value_bytes: u64,
    /// The nice value (0..=19) of the threads queries are planned and run on; the threads
    /// that serve requests keep 0. Default 19: a full scan cannot hold up point reads and
    /// writes, and gets the cores they leave.
    pub query_nice: i32,
    /// Memory the hot rows of tables take, kept as columns between full scans, bytes; 0
    /// keeps none. Default 64 MiB.
    pub scan_cache_bytes: usize,
}

impl Default for LimitsConfig {
    fn default() -> LimitsConfig {
        LimitsConfig {
            header_read_timeout_seconds: 30,
            body_read_timeout_seconds: 30,
            max_connections_per_ip: 100,
            requests_per_ip_per_sec: 200,
            sql_per_user_per_sec: 100,
            max_statements_per_request: 1000,
            statement_timeout_seconds: 30,
            max_result_bytes: 64 << 20,
            query_memory_bytes: 2 << 30,
            max_value_bytes: 64 << 20,
            query_nice: 19,
            scan_cache_bytes: folddb_materializer::scan_cache::DEFAULT_BUDGET,
        }
    }
}

/// The flush policy of tables created without one.
pub const DEFAULT_FLUSH_POLICY: &str = "rows:50000,interval:3600";

impl StorageConfig {
    /// The default flush policy, parsed (`None`: off).
    pub fn default_flush_policy(
        &self,
    ) -> anyhow::Result<Option<folddb_query::engine::FlushPolicy>> {
        let text = self.default_flush_policy.trim();
        if text.eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        folddb_query::engine::parse_flush_policy(text)
            .map(Some)
            .map_err(|e| anyhow::anyhow!("storage.default_flush_policy: {e}"))
    }
}

/// The cold tier and its background jobs.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// How often tables' FLUSH_POLICY is checked, in seconds. Default 60.
    pub flush_check_interval_seconds: u64,
    /// How often STREAM tables are checked for rows past their TTL, in seconds. Default 60.
    pub stream_eviction_interval_seconds: u64,
    /// The FLUSH_POLICY of USER and SHARED tables created without one: `rows:N`,
    /// `interval:S` or both; `off` flushes them only when asked. Default
    /// `rows:50000,interval:3600`.
    pub default_flush_policy: String,
    /// How often stored files (FILE columns) that no row references any more are looked
    /// for and removed, in seconds. Default 3600.
    pub file_cleanup_interval_seconds: u64,
    /// How old such a file must be before it is removed, in seconds: an upload stores its
    /// files before its statement commits. Default 3600.
    pub file_cleanup_grace_seconds: u64,
}

impl Default for StorageConfig {
    fn default() -> StorageConfig {
        StorageConfig {
            flush_check_interval_seconds: 60,
            stream_eviction_interval_seconds: 60,
            default_flush_policy: DEFAULT_FLUSH_POLICY.into(),
            file_cleanup_interval_seconds: 3600,
            file_cleanup_grace_seconds: 3600,
        }
    }
}

/// The change journal (`materializer/FORMAT.md`, "`journal`").
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct JournalConfig {
    /// How long the journal keeps each change, in hours; older ones are removed once a
    /// minute (the log still holds them: `folddb log replay` rebuilds any point). `0` keeps
    /// every change. Default 168 (7 days).
    pub retention_hours: u64,
    /// The retention in seconds, for windows shorter than an hour; when set it replaces
    /// `retention_hours` (`0` keeps every change).
    pub retention_seconds: Option<u64>,
    /// Most bytes the journal keeps (RocksDB's estimate); past it the oldest entries'
    /// changes are removed, whatever their age. `0` (the default): no limit.
    pub retention_bytes: u64,
    /// How often the changes past their retention are removed. Default 60.
    pub trim_interval_seconds: u64,
}

impl JournalConfig {
    /// How long each change is kept; `None`: for ever.
    pub fn retention(&self) -> Option<std::time::Duration> {
        let secs = self
            .retention_seconds
            .unwrap_or(self.retention_hours.saturating_mul(3600));
        (secs > 0).then(|| std::time::Duration::from_secs(secs))
    }
}

impl Default for JournalConfig {
    fn default() -> JournalConfig {
        JournalConfig {
            retention_hours: 168,
            retention_seconds: None,
            retention_bytes: 0,
            trim_interval_seconds: 60,
        }
    }
}

/// Live queries over `/v1/ws`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LiveConfig {
    /// Subscriptions one user may hold across connections. Default 10.
    pub max_subscriptions_per_user: usize,
    /// Change sets queued per connection before it counts as lagging. Default 4096.
    pub connection_queue: usize,
    /// Changed rows per subscription a lagging connection is caught up with; past that it
    /// gets an explicit error. 0: always the error. Default 1,000,000.
    pub max_catch_up_rows: usize,
    /// Client messages per second per connection (then `RATE_LIMIT_EXCEEDED`). Default 50.
    pub max_messages_per_sec: u32,
    /// Most rows in one initial-data batch: a larger `batch_size` is lowered to it, and a
    /// larger `last_rows` refused. Default 10,000.
    pub max_batch_size: usize,
    /// Rows a subscription lists at a time to page its initial data by key (tens of bytes
    /// each while it pages; each list is one query). Default 100,000.
    pub listed_rows: usize,
}

impl Default for LiveConfig {
    fn default() -> LiveConfig {
        LiveConfig {
            max_subscriptions_per_user: 10,
            connection_queue: folddb_realtime::hub::CONNECTION_QUEUE,
            max_catch_up_rows: folddb_realtime::session::DEFAULT_MAX_CATCH_UP,
            max_messages_per_sec: 50,
            max_batch_size: folddb_realtime::session::DEFAULT_MAX_BATCH_SIZE,
            listed_rows: folddb_realtime::session::DEFAULT_LISTED_ROWS,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on. Default `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// Data directory (log, hot tier). Default `./data`.
    pub data_dir: PathBuf,
    /// This node's raft id (and the node bits of `SNOWFLAKE_ID()`, 0..=1023). Default 1.
    pub node_id: u16,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// root's password, set on first start when non-empty (else root needs setup).
    pub root_password: Option<String>,
    /// HS256 secret for JWTs. Default `CHANGE_ME_IN_PRODUCTION` (a warning is logged).
    pub jwt_secret: String,
    /// Access token lifetime, hours. Default 24; refresh tokens live 7 times as long.
    pub jwt_expiry_hours: u64,
    /// bcrypt cost for stored passwords. Default 12 (4..=31).
    pub bcrypt_cost: u32,
    /// Allow `/v1/api/auth/status` and `/setup` from non-loopback peers. Default false.
    pub allow_remote_setup: bool,
    /// Requests per second one IP may make to login, refresh and setup. Default 20.
    pub rate_limit_auth_requests_per_ip_per_sec: u32,
    /// Consecutive failed logins that lock an account. Default 5.
    pub max_failed_logins: u32,
    /// How long a locked account stays locked, minutes. Default 15.
    pub lockout_minutes: u64,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./data"),
            node_id: 1,
        }
    }
}

pub const DEFAULT_JWT_SECRET: &str = "CHANGE_ME_IN_PRODUCTION";

impl Default for AuthConfig {
    fn default() -> AuthConfig {
        AuthConfig {
            root_password: None,
            jwt_secret: DEFAULT_JWT_SECRET.to_owned(),
            jwt_expiry_hours: 24,
            bcrypt_cost: 12,
            allow_remote_setup: false,
            rate_limit_auth_requests_per_ip_per_sec: 20,
            max_failed_logins: 5,
            lockout_minutes: 15,
        }
    }
}

/// Flags of `folddb serve` that override the file and the environment.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Configuration file (default: `./folddb.toml` if it exists).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Data directory (FOLDDB_DATA_DIR; default ./data).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Listen address (FOLDDB_LISTEN; default 127.0.0.1:8080).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// This node's id in its cluster, 0..=1023 (FOLDDB_NODE_ID; default 1).
    #[arg(long)]
    pub node_id: Option<u16>,
    /// Every member of the cluster, this node included: `id@host:port,...` (FOLDDB_PEERS).
    /// A node whose id is not on the list joins the running cluster they form, once added
    /// with `CLUSTER JOIN <id> '<its address>'`.
    #[arg(long)]
    pub peers: Option<String>,
    /// The secret the cluster's members share (FOLDDB_CLUSTER_SECRET).
    #[arg(long)]
    pub cluster_secret: Option<String>,
}

/// A comma-separated peer list as its entries.
fn peer_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn parse_env<T: std::str::FromStr>(name: &str) -> anyhow::Result<Option<T>>
where
    T::Err: std::fmt::Display,
{
    env(name)
        .map(|v| {
            v.parse::<T>()
                .map_err(|e| anyhow::anyhow!("{name}={v}: {e}"))
        })
        .transpose()
}

impl Config {
    pub fn load(args: &ServeArgs) -> anyhow::Result<Config> {
        let file = match &args.config {
            Some(p) => Some(p.clone()),
            None => Some(PathBuf::from("folddb.toml")).filter(|p| p.exists()),
        };
        let mut config = match file {
            Some(path) => Config::from_file(&path)?,
            None => Config::default(),
        };
        if let Some(v) = parse_env("FOLDDB_LISTEN")? {
            config.server.listen = v;
        }
        if let Some(v) = env("FOLDDB_DATA_DIR") {
            config.server.data_dir = PathBuf::from(v);
        }
        if let Some(v) = parse_env("FOLDDB_NODE_ID")? {
            config.server.node_id = v;
        }
        if let Some(v) = env("FOLDDB_ROOT_PASSWORD") {
            config.auth.root_password = Some(v);
        }
        if let Some(v) = env("FOLDDB_JWT_SECRET") {
            config.auth.jwt_secret = v;
        }
        if let Some(v) = parse_env("FOLDDB_JWT_EXPIRY_HOURS")? {
            config.auth.jwt_expiry_hours = v;
        }
        if let Some(v) = parse_env("FOLDDB_BCRYPT_COST")? {
            config.auth.bcrypt_cost = v;
        }
        if let Some(v) = parse_env("FOLDDB_RATE_LIMIT_AUTH_REQUESTS_PER_IP_PER_SEC")? {
            config.auth.rate_limit_auth_requests_per_ip_per_sec = v;
        }
        if let Some(v) = parse_env("FOLDDB_MAX_FAILED_LOGINS")? {
            config.auth.max_failed_logins = v;
        }
        if let Some(v) = parse_env("FOLDDB_LOCKOUT_MINUTES")? {
            config.auth.lockout_minutes = v;
        }
        if let Some(v) = parse_env("FOLDDB_MAX_SUBSCRIPTIONS_PER_USER")? {
            config.live.max_subscriptions_per_user = v;
        }
        if let Some(v) = parse_env("FOLDDB_LIVE_CONNECTION_QUEUE")? {
            config.live.connection_queue = v;
        }
        if let Some(v) = parse_env("FOLDDB_LIVE_MAX_CATCH_UP_ROWS")? {
            config.live.max_catch_up_rows = v;
        }
        if let Some(v) = parse_env("FOLDDB_LIVE_LISTED_ROWS")? {
            config.live.listed_rows = v;
        }
        if let Some(v) = parse_env("FOLDDB_LIVE_MAX_BATCH_SIZE")? {
            config.live.max_batch_size = v;
        }
        if let Some(v) = parse_env("FOLDDB_LIVE_MAX_MESSAGES_PER_SEC")? {
            config.live.max_messages_per_sec = v;
        }
        if let Some(v) = parse_env("FOLDDB_FLUSH_CHECK_INTERVAL_SECONDS")? {
            config.storage.flush_check_interval_seconds = v;
        }
        if let Some(v) = env("FOLDDB_DEFAULT_FLUSH_POLICY") {
            config.storage.default_flush_policy = v;
        }
        if let Some(v) = parse_env("FOLDDB_TOPIC_VISIBILITY_TIMEOUT_SECS")? {
            config.topics.visibility_timeout_secs = v;
        }
        if let Some(v) = parse_env("FOLDDB_TOPIC_RETENTION_CHECK_SECS")? {
            config.topics.retention_check_interval_secs = v;
        }
        if let Some(v) = parse_env("FOLDDB_JOURNAL_RETENTION_HOURS")? {
            config.journal.retention_hours = v;
        }
        if let Some(v) = parse_env("FOLDDB_JOURNAL_RETENTION_SECONDS")? {
            config.journal.retention_seconds = Some(v);
        }
        if let Some(v) = parse_env("FOLDDB_JOURNAL_RETENTION_BYTES")? {
            config.journal.retention_bytes = v;
        }
        if let Some(v) = parse_env("FOLDDB_JOURNAL_TRIM_INTERVAL_SECONDS")? {
            config.journal.trim_interval_seconds = v;
        }
        if let Some(v) = parse_env("FOLDDB_STREAM_EVICTION_INTERVAL_SECONDS")? {
            config.storage.stream_eviction_interval_seconds = v;
        }
        if let Some(v) = parse_env("FOLDDB_FILE_CLEANUP_INTERVAL_SECONDS")? {
            config.storage.file_cleanup_interval_seconds = v;
        }
        if let Some(v) = parse_env("FOLDDB_FILE_CLEANUP_GRACE_SECONDS")? {
            config.storage.file_cleanup_grace_seconds = v;
        }
        if let Some(v) = parse_env("FOLDDB_HEADER_READ_TIMEOUT_SECONDS")? {
            config.limits.header_read_timeout_seconds = v;
        }
        if let Some(v) = parse_env("FOLDDB_BODY_READ_TIMEOUT_SECONDS")? {
            config.limits.body_read_timeout_seconds = v;
        }
        if let Some(v) = parse_env("FOLDDB_MAX_CONNECTIONS_PER_IP")? {
            config.limits.max_connections_per_ip = v;
        }
        if let Some(v) = parse_env("FOLDDB_RATE_LIMIT_REQUESTS_PER_IP_PER_SEC")? {
            config.limits.requests_per_ip_per_sec = v;
        }
        if let Some(v) = parse_env("FOLDDB_RATE_LIMIT_SQL_PER_USER_PER_SEC")? {
            config.limits.sql_per_user_per_sec = v;
        }
        if let Some(v) = parse_env("FOLDDB_MAX_STATEMENTS_PER_REQUEST")? {
            config.limits.max_statements_per_request = v;
        }
        if let Some(v) = parse_env("FOLDDB_STATEMENT_TIMEOUT_SECONDS")? {
            config.limits.statement_timeout_seconds = v;
        }
        if let Some(v) = parse_env("FOLDDB_MAX_RESULT_BYTES")? {
            config.limits.max_result_bytes = v;
        }
        if let Some(v) = parse_env("FOLDDB_QUERY_MEMORY_BYTES")? {
            config.limits.query_memory_bytes = v;
        }
        if let Some(v) = parse_env("FOLDDB_MAX_VALUE_BYTES")? {
            config.limits.max_value_bytes = v;
        }
        if let Some(v) = parse_env("FOLDDB_QUERY_NICE")? {
            config.limits.query_nice = v;
        }
        if let Some(v) = parse_env("FOLDDB_SCAN_CACHE_BYTES")? {
            config.limits.scan_cache_bytes = v;
        }
        if let Some(v) = parse_env("FOLDDB_LOG_SEGMENT_SIZE_BYTES")? {
            config.log.segment_size_bytes = v;
        }
        if let Some(v) = parse_env("FOLDDB_ALLOW_REMOTE_SETUP")? {
            config.auth.allow_remote_setup = v;
        }
        if let Some(v) = env("FOLDDB_PEERS") {
            config.cluster.peers = peer_list(&v);
        }
        if let Some(v) = env("FOLDDB_CLUSTER_SECRET") {
            config.cluster.secret = Some(v);
        }
        if let Some(v) = env("FOLDDB_CLUSTER_ID") {
            config.cluster.id = v;
        }
        if let Some(v) = parse_env("FOLDDB_CLUSTER_SNAPSHOT_EVERY_ENTRIES")? {
            config.cluster.snapshot_every_entries = v;
        }
        if let Some(v) = parse_env("FOLDDB_CLUSTER_SNAPSHOT_KEEP_ENTRIES")? {
            config.cluster.snapshot_keep_entries = v;
        }
        if let Some(v) = parse_env("FOLDDB_CLUSTER_REPLACED_SEGMENTS_GRACE_SECONDS")? {
            config.cluster.replaced_segments_grace_seconds = v;
        }
        if let Some(v) = &args.data_dir {
            config.server.data_dir = v.clone();
        }
        if let Some(v) = args.node_id {
            config.server.node_id = v;
        }
        if let Some(v) = &args.peers {
            config.cluster.peers = peer_list(v);
        }
        if let Some(v) = &args.cluster_secret {
            config.cluster.secret = Some(v.clone());
        }
        if let Some(v) = args.listen {
            config.server.listen = v;
        }
        config.validate()?;
        Ok(config)
    }

    fn from_file(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))
    }

    fn validate(&self) -> anyhow::Result<()> {
        let members = self.cluster.members()?;
        if !members.is_empty() {
            if self.cluster.secret.as_deref().is_none_or(str::is_empty) {
                bail!("a cluster needs cluster.secret (FOLDDB_CLUSTER_SECRET, --cluster-secret)");
            }
            if self.cluster.id.is_empty() {
                bail!("cluster.id must not be empty");
            }
        }
        if !(4..=31).contains(&self.auth.bcrypt_cost) {
            bail!(
                "auth.bcrypt_cost must be 4..=31, got {}",
                self.auth.bcrypt_cost
            );
        }
        if self.storage.flush_check_interval_seconds == 0
            || self.storage.stream_eviction_interval_seconds == 0
            || self.storage.file_cleanup_interval_seconds == 0
        {
            bail!("storage intervals must be at least 1 second");
        }
        self.storage.default_flush_policy()?;
        if self.live.connection_queue == 0 {
            bail!("live.connection_queue must be at least 1");
        }
        if self.auth.jwt_expiry_hours == 0 {
            bail!("auth.jwt_expiry_hours must be at least 1");
        }
        if self.auth.jwt_secret.is_empty() {
            bail!("auth.jwt_secret must not be empty");
        }
        if self.auth.jwt_secret == DEFAULT_JWT_SECRET && !self.server.listen.ip().is_loopback() {
            bail!(
                "refusing to listen on {} with the default auth.jwt_secret: anyone could forge \
                 tokens; set FOLDDB_JWT_SECRET (or auth.jwt_secret) to a long random secret",
                self.server.listen
            );
        }
        if self.auth.rate_limit_auth_requests_per_ip_per_sec == 0
            || self.auth.max_failed_logins == 0
        {
            bail!(
                "auth.rate_limit_auth_requests_per_ip_per_sec and auth.max_failed_logins must be at least 1"
            );
        }
        self.log.validate().context("log")?;
        let l = &self.limits;
        let zero = [
            (
                "header_read_timeout_seconds",
                l.header_read_timeout_seconds == 0,
            ),
            (
                "body_read_timeout_seconds",
                l.body_read_timeout_seconds == 0,
            ),
            ("max_connections_per_ip", l.max_connections_per_ip == 0),
            (
                "max_statements_per_request",
                l.max_statements_per_request == 0,
            ),
            (
                "statement_timeout_seconds",
                l.statement_timeout_seconds == 0,
            ),
            ("max_result_bytes", l.max_result_bytes == 0),
            ("query_memory_bytes", l.query_memory_bytes == 0),
            ("max_value_bytes", l.max_value_bytes == 0),
        ];
        if let Some((name, _)) = zero.iter().find(|(_, z)| *z) {
            bail!("limits.{name} must be at least 1");
        }
        if !(0..=19).contains(&l.query_nice) {
            bail!("limits.query_nice must be 0..=19, got {}", l.query_nice);
        }
        if self.server.node_id > 1023 {
            bail!(
                "server.node_id must be 0..=1023, got {}",
                self.server.node_id
            );
        }
        Ok(())
    }
}

/// Settings that are secrets: `system.settings` leaves them out.
const SECRET_SETTINGS: &[&str] = &["auth.root_password", "auth.jwt_secret", "cluster.secret"];

/// README's configuration table: each setting's meaning.
fn documented_settings() -> std::collections::HashMap<&'static str, &'static str> {
    include_str!("../../README.md")
        .lines()
        .filter_map(|l| {
            // | `key` | environment | flag | default | meaning |
            let cells: Vec<&str> = l.strip_prefix("| `")?.splitn(5, '|').collect();
            let [key, _env, _flag, _default, meaning] = cells.as_slice() else {
                return None;
            };
            let key = key.trim().strip_suffix('`')?;
            Some((key, meaning.trim().trim_end_matches('|').trim()))
        })
        .collect()
}

impl Config {
    /// Every setting this server runs with, as `system.settings` shows it: dotted names in
    /// order, values as the file would spell them (unset ones empty), secrets left
    /// out, meanings from README's configuration table.
    pub fn settings(&self) -> Vec<folddb_query::node_info::Setting> {
        let docs = documented_settings();
        let mut out = Vec::new();
        let Ok(serde_json::Value::Object(sections)) = serde_json::to_value(self) else {
            return out;
        };
        for (category, fields) in sections {
            let serde_json::Value::Object(fields) = fields else {
                continue;
            };
            for (field, value) in fields {
                let name = format!("{category}.{field}");
                if SECRET_SETTINGS.contains(&name.as_str()) {
                    continue;
                }
                let value = match value {
                    serde_json::Value::String(s) => s,
                    serde_json::Value::Null => String::new(),
                    other => other.to_string(),
                };
                out.push(folddb_query::node_info::Setting {
                    description: docs
                        .get(name.as_str())
                        .copied()
                        .unwrap_or_default()
                        .to_owned(),
                    name,
                    value,
                    category: category.clone(),
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_setting_is_shown_with_its_readme_meaning_and_no_secret_is() {
        let mut config = Config::default();
        config.auth.jwt_secret = "s3cret-value".into();
        config.auth.root_password = Some("hunter2-root".into());
        config.limits.max_result_bytes = 1234;
        let settings = config.settings();
        let undocumented: Vec<&str> = settings
            .iter()
            .filter(|s| s.description.is_empty())
            .map(|s| s.name.as_str())
            .collect();
        assert!(undocumented.is_empty(), "not in README: {undocumented:?}");
        let value = |name: &str| {
            settings
                .iter()
                .find(|s| s.name == name)
                .map(|s| (s.value.as_str(), s.category.as_str()))
        };
        assert_eq!(value("limits.max_result_bytes"), Some(("1234", "limits")));
        assert_eq!(value("server.listen"), Some(("127.0.0.1:8080", "server")));
        assert_eq!(value("journal.retention_seconds"), Some(("", "journal")));
        for s in &settings {
            assert!(!s.name.starts_with("auth.jwt_secret") && !s.name.contains("root_password"));
            assert!(
                !s.value.contains("s3cret") && !s.value.contains("hunter2"),
                "{s:?}"
            );
        }
    }

    #[test]
    fn the_default_flush_policy_parses_turns_off_and_refuses_nonsense() {
        let mut storage = StorageConfig::default();
        assert_eq!(
            storage.default_flush_policy().expect("the default"),
            Some((Some(50_000), Some(3600)))
        );
        storage.default_flush_policy = "OFF".into();
        assert_eq!(storage.default_flush_policy().expect("off"), None);
        for bad in ["rows:0", "often", "", "interval:86400"] {
            storage.default_flush_policy = bad.into();
            assert!(storage.default_flush_policy().is_err(), "{bad}");
        }
    }

    #[test]
    fn file_values_override_defaults_and_unknown_keys_are_refused() {
        let c: Config =
            toml::from_str("[server]\nlisten = \"127.0.0.1:9999\"\n[auth]\njwt_expiry_hours = 2\n")
                .expect("valid");
        assert_eq!(c.server.listen.port(), 9999);
        assert_eq!(c.auth.jwt_expiry_hours, 2);
        assert_eq!(c.auth.bcrypt_cost, 12);
        assert!(toml::from_str::<Config>("[server]\nlisen = 1\n").is_err());
        assert_eq!(Config::default().journal.retention_hours, 168);
        let c: Config = toml::from_str("[journal]\nretention_hours = 0\n").expect("valid");
        assert_eq!(c.journal.retention_hours, 0);
        assert_eq!(c.journal.retention(), None);
        assert_eq!(
            Config::default().journal.retention(),
            Some(std::time::Duration::from_secs(168 * 3600))
        );
        let c: Config = toml::from_str(
            "[journal]\nretention_seconds = 5\ntrim_interval_seconds = 1\nretention_bytes = 1000\n",
        )
        .expect("valid");
        assert_eq!(
            (c.journal.retention(), c.journal.trim_interval_seconds),
            (Some(std::time::Duration::from_secs(5)), 1)
        );
        assert_eq!(c.journal.retention_bytes, 1000);
        assert!(toml::from_str::<Config>("[journal]\nretention = 1\n").is_err());
    }

    #[test]
    fn a_cluster_names_this_node_and_has_a_secret() {
        let mut c = Config::default();
        assert!(c.cluster.members().expect("no peers").is_empty());
        c.cluster.peers = peer_list(" 1@127.0.0.1:8081, 2@127.0.0.1:8082 ,3@localhost:8083,");
        let members = c.cluster.members().expect("parses");
        assert_eq!(members.len(), 3);
        assert_eq!(members[&3], "localhost:8083");
        // No secret: refused; with one: accepted; a node not on the list is one that joins.
        assert!(c.validate().is_err());
        c.cluster.secret = Some("S".into());
        c.validate().expect("a valid cluster");
        c.server.node_id = 4;
        c.validate().expect("a node that joins");
        c.server.node_id = 1;
        for bad in [
            "1",
            "x@127.0.0.1:1",
            "1@127.0.0.1",
            "1@:80",
            "1@h:99999",
            "1024@h:1",
        ] {
            c.cluster.peers = vec![bad.into()];
            assert!(c.cluster.members().is_err(), "{bad}");
        }
        c.cluster.peers = vec!["1@h:1".into(), "1@h:2".into()];
        assert!(c.cluster.members().is_err(), "a node named twice");
        // The secret is never shown.
        c.cluster.peers = vec!["1@h:1".into()];
        c.cluster.secret = Some("cluster-s3cret".into());
        assert!(
            c.settings()
                .iter()
                .all(|s| !s.value.contains("cluster-s3cret"))
        );
    }

    #[test]
    fn query_nice_is_a_nice_value() {
        let mut c = Config::default();
        assert_eq!(c.limits.query_nice, 19);
        for (nice, ok) in [(0, true), (19, true), (20, false), (-1, false)] {
            c.limits.query_nice = nice;
            assert_eq!(c.validate().is_ok(), ok, "{nice}");
        }
    }

    #[test]
    fn the_default_jwt_secret_is_refused_off_loopback() {
        let mut c = Config::default();
        assert!(
            c.validate().is_ok(),
            "loopback with the default secret is allowed"
        );
        c.server.listen = "0.0.0.0:8080".parse().expect("address");
        let err = c.validate().expect_err("refused").to_string();
        assert!(err.contains("default auth.jwt_secret"), "{err}");
        c.auth.jwt_secret = "a-long-random-secret".into();
        assert!(c.validate().is_ok());
    }
}
