//! `folddb serve`: the HTTP API (API.md 1) over warp. One catch-all filter hands every
//! request to [`handle`], which routes by method and path, so that every error — bad JSON,
//! missing auth, unknown route — is answered in the exact envelope the API documents
//! rather than warp's defaults.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes_util::collect_limited;
use folddb_cluster::Node;
use folddb_materializer::cold::ColdStore;
use folddb_materializer::{EventFold, Op, Role, UserDef, catalog};
use folddb_query::{Answer, Caller, Engine, ErrorCode, RowStream, SqlError, SqlRequest};
use serde::Deserialize;
use serde_json::{Value as Json, json};
use warp::Filter;
use warp::http::{HeaderMap, Method, Response, StatusCode};

use crate::auth::{self, Auth, TokenError};

mod auth_http;
mod files_http;
mod topics_http;
use crate::config::{Config, DEFAULT_JWT_SECRET, ServeArgs};
use crate::guard::Guard;
use auth_http::{audit_failed_logins, login, logout, me, refresh, setup, setup_status};

/// Where in the data directory a node keeps its vector index snapshots (its own: each
/// node builds its indexes itself).
const VECTORS_DIR: &str = "vectors";
/// Where in the data directory uploaded files wait until they are stored.
const UPLOADS_DIR: &str = "tmp/uploads";
/// How long shutdown lets open requests finish.
const SHUTDOWN_DRAIN: Duration = Duration::from_secs(10);

/// Largest request body (API.md 6).
const MAX_BODY_BYTES: usize = 10 << 20;
/// Largest raft RPC body (a batch of entries from the leader).
const MAX_RAFT_BODY_BYTES: usize = 512 << 20;

pub(crate) struct State {
    pub(crate) engine: Engine,
    pub(crate) live: Arc<folddb_realtime::Registry>,
    pub(crate) hub: Arc<folddb_realtime::Hub>,
    /// Subscription plans, shared by the connections that subscribe with the same SQL.
    pub(crate) plans: Arc<folddb_realtime::Plans>,
    pub(crate) auth: Auth,
    guard: Guard,
    /// SQL requests per user and second (API.md 1.2).
    sql_per_user: crate::guard::RatePerSecond<String>,
    pub(crate) node: Arc<Node<EventFold>>,
    pub(crate) live_config: crate::config::LiveConfig,
    /// Renders `/metrics`.
    pub(crate) metrics: metrics_exporter_prometheus::PrometheusHandle,
    /// Where uploaded files wait until they are stored (emptied at each start).
    pub(crate) uploads: std::path::PathBuf,
}

type Reply = Response<Vec<u8>>;

pub(crate) fn reply(status: StatusCode, body: &Json) -> Reply {
    let mut r = Response::new(serde_json::to_vec(body).unwrap_or_default());
    *r.status_mut() = status;
    r.headers_mut().insert(
        "content-type",
        warp::http::HeaderValue::from_static("application/json"),
    );
    r
}

fn auth_error(status: StatusCode, code: &str, message: &str) -> Reply {
    reply(status, &json!({"error": code, "message": message}))
}

fn took_ms(start: Instant) -> f64 {
    (start.elapsed().as_secs_f64() * 1e6).round() / 1e3
}

fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::PermissionDenied => StatusCode::FORBIDDEN,
        ErrorCode::ClusterUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::InternalError => StatusCode::INTERNAL_SERVER_ERROR,
        ErrorCode::StatementTimeout => StatusCode::REQUEST_TIMEOUT,
        _ => StatusCode::BAD_REQUEST,
    }
}

fn sql_error(
    status: StatusCode,
    code: &str,
    message: &str,
    details: Option<&str>,
    start: Instant,
) -> Reply {
    let mut error = json!({"code": code, "message": message});
    if let Some(d) = details {
        error["details"] = Json::String(d.to_owned());
    }
    reply(
        status,
        &json!({"status": "error", "results": [], "took": took_ms(start), "error": error}),
    )
}

pub(crate) fn is_local(peer: Option<SocketAddr>) -> bool {
    peer.is_some_and(|p| match p.ip() {
        IpAddr::V4(ip) => ip.is_loopback(),
        IpAddr::V6(ip) => {
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    })
}

/// `FOLDDB_TEST_VECTOR_BUILD_DELAY_MS`: a test seam, not a setting. A pause at the start of
/// each vector index build, so tests can crash a node during one.
fn test_vector_build_delay() -> Duration {
    test_pause("FOLDDB_TEST_VECTOR_BUILD_DELAY_MS")
}

/// A test seam's pause, in milliseconds from environment variable `name` (0 when unset).
fn test_pause(name: &str) -> Duration {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(Duration::ZERO, Duration::from_millis)
}

/// `FOLDDB_TEST_CLOCK_SKEW_MS`: a test seam, not a setting. Skews the clock this node
/// stamps its proposals with, so tests can run nodes whose clocks disagree.
fn test_clock_skew_ms() -> i64 {
    std::env::var("FOLDDB_TEST_CLOCK_SKEW_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// `system.cluster`'s view of the raft node.
struct RaftView(Arc<Node<EventFold>>);

impl std::fmt::Debug for RaftView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RaftView")
    }
}

impl folddb_query::node_info::ClusterView for RaftView {
    fn state(&self) -> folddb_query::node_info::ClusterState {
        let s = self.0.status();
        folddb_query::node_info::ClusterState {
            members: self
                .0
                .members()
                .into_iter()
                .map(|m| folddb_query::node_info::Member {
                    node_id: m.node_id,
                    api_addr: m.address,
                    is_leader: m.is_leader,
                    voter: m.voter,
                    lag: m.lag,
                })
                .collect(),
            current_term: s.current_term,
            last_applied: s.last_applied,
            last_log_index: s.last_log_index,
        }
    }

    fn command<'a>(
        &'a self,
        command: &'a folddb_query::dialect::ClusterCommand,
    ) -> folddb_query::node_info::ClusterFuture<'a> {
        use folddb_cluster::Admin;
        use folddb_query::dialect::ClusterCommand as C;
        Box::pin(async move {
            let node = &self.0;
            let done = match command {
                C::Snapshot => node.snapshot().await,
                C::TriggerElection => node.trigger_election().await,
                C::TransferLeader(to) => node.administer(Admin::Transfer { to: Some(*to) }).await,
                C::Stepdown => node.administer(Admin::Transfer { to: None }).await,
                C::Join { id, addr } => {
                    let (id, addr) = (*id, addr.clone());
                    node.administer(Admin::Join { id, addr }).await
                }
                C::Remove(id) => node.administer(Admin::Remove { id: *id }).await,
                C::Purge | C::Clear | C::Rebalance => {
                    return Err(folddb_query::error::Error::Internal(
                        "the engine answers CLUSTER PURGE, CLEAR and REBALANCE".into(),
                    ));
                }
            };
            done.map_err(|e| match e {
                folddb_cluster::Error::Invalid(m) => folddb_query::error::Error::InvalidInput(m),
                folddb_cluster::Error::Unavailable(m) => folddb_query::error::Error::Unavailable(m),
                e => folddb_query::error::Error::Execution(e.to_string()),
            })
        })
    }
}

/// In a cluster: root and the `default` namespace are created by whichever member leads
/// first (each member reads the outcome from the log). Returns once this node has them.
async fn bootstrap_in_cluster(state: Arc<State>) {
    if !state.node.is_cluster() {
        return;
    }
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tick.tick().await;
        let store = state.engine.store().clone();
        let done = catalog::user(store.as_ref(), auth::ROOT).is_ok_and(|u| u.is_some())
            && catalog::namespace(store.as_ref(), "default").is_ok_and(|n| n.is_some());
        if done {
            return;
        }
        if state.node.status().is_leader
            && let Err(e) = auth::bootstrap(&state.engine, &state.auth).await
        {
            tracing::warn!(error = %e, "bootstrapping the cluster failed; retrying");
        }
    }
}

/// Queues the background jobs that come due: flushes by FLUSH_POLICY, STREAM evictions.
async fn run_scheduler(state: Arc<State>, config: crate::config::StorageConfig) {
    let flush_every = config.flush_check_interval_seconds.max(1);
    let evict_every = config.stream_eviction_interval_seconds.max(1);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seconds = 0u64;
    loop {
        tick.tick().await;
        seconds += 1;
        let (flush, evict) = (
            seconds.is_multiple_of(flush_every),
            seconds.is_multiple_of(evict_every),
        );
        // In a cluster the leader schedules, once for all.
        if !(flush || evict) || !state.node.status().is_leader {
            continue;
        }
        if let Err(e) = state.engine.schedule_due_jobs(flush, evict) {
            tracing::warn!(error = %e.message, "scheduling background jobs failed");
        }
    }
}

/// Removes topic messages older than their topic's retention, every `every`, on the leader
/// (through the log, so on every member).
async fn trim_topics(state: Arc<State>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if !state.node.status().is_leader {
            continue;
        }
        if let Err(e) = state
            .engine
            .trim_topics(folddb_query::engine::now_ms())
            .await
        {
            tracing::warn!(error = %e, "trimming topics past their retention failed");
        }
    }
}

/// Removes the journal's changes older than its retention, and the oldest ones past its
/// byte limit, every `journal.trim_interval_seconds`.
async fn trim_journal(state: Arc<State>, config: crate::config::JournalConfig) {
    let keep = config.retention();
    if keep.is_none() && config.retention_bytes == 0 {
        return;
    }
    let every = Duration::from_secs(config.trim_interval_seconds.max(1));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let cutoff =
            keep.map(|k| u64::try_from(now.saturating_sub(k).as_millis()).unwrap_or(u64::MAX));
        let store = state.engine.store().clone();
        let max_bytes = config.retention_bytes;
        let trimmed = tokio::task::spawn_blocking(move || {
            let mut n = match cutoff {
                Some(c) => folddb_materializer::journal::trim(&store, c)?,
                None => 0,
            };
            if max_bytes > 0 {
                n += folddb_materializer::journal::trim_to_bytes(&store, max_bytes)?;
            }
            Ok::<usize, folddb_materializer::Error>(n)
        })
        .await;
        match trimmed {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::info!(changes = n, "trimmed the journal"),
            Ok(Err(e)) => tracing::warn!(error = %e, "trimming the journal failed"),
            Err(e) => tracing::warn!(error = %e, "trimming the journal failed"),
        }
    }
}

/// Before the node applies anything: the cold-tier manifests an earlier build kept only in
/// the storages move into the node's state, and the cold tier's key index is built for a
/// store that has none, once each (`materializer/FORMAT.md`, "Versions").
async fn upgrade_cold_tier(
    data_dir: &std::path::Path,
    cold: &Arc<ColdStore>,
) -> anyhow::Result<()> {
    let (dir, cold) = (data_dir.to_path_buf(), cold.clone());
    let (imported, indexed) = tokio::task::spawn_blocking(move || {
        let store = folddb_materializer::HotStore::open_data_dir(&dir)?;
        let imported = folddb_materializer::cold::job::import_v1_manifests(&store, &cold)
            .map_err(anyhow::Error::msg)?;
        let indexed = folddb_materializer::cold::job::build_key_index(&store, &cold)
            .map_err(anyhow::Error::msg)?;
        anyhow::Ok((imported, indexed))
    })
    .await
    .context("upgrading the cold tier")??;
    if imported > 0 {
        tracing::info!(manifests = imported, "imported the cold tier's manifests");
    }
    if indexed > 0 {
        tracing::info!(keys = indexed, "built the cold tier's key index");
    }
    Ok(())
}

/// Removes the cold files that jobs interrupted by a crash left (see `Engine::sweep_cold`).
async fn sweep_cold(state: Arc<State>, grace: Duration) {
    for problem in state.engine.sweep_cold().await {
        tracing::warn!(%problem, "sweeping the cold tier");
    }
    // A cluster member's copies of `filesystem` storages, and on the leader the shared
    // storages: what no manifest lists any more goes once it has been unlisted for `grace`.
    if !state.node.is_cluster() {
        return;
    }
    let every = (grace / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
    loop {
        tokio::time::sleep(every).await;
        // The leader sweeps the storages every member shares too.
        let shared = state.node.status().is_leader;
        for problem in state.engine.sweep_in_cluster(grace, shared).await {
            tracing::warn!(%problem, "sweeping this member's cold files");
        }
    }
}

/// Runs the server until SIGINT / SIGTERM.
/// The runtime object storage requests run on: its own, since the cold tier waits for them
/// synchronously from the fold's and the query's threads, which may be this program's
/// runtime workers (see `folddb_materializer::cold::backend::IoRuntime`). Never dropped.
fn object_io() -> anyhow::Result<&'static tokio::runtime::Runtime> {
    static IO: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    if let Some(io) = IO.get() {
        return Ok(io);
    }
    let io = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("folddb-object-io")
        .enable_all()
        .build()
        .context("starting the object storage runtime")?;
    Ok(IO.get_or_init(|| io))
}

/// The runtime queries are planned and run on, one worker per core, at a lower CPU priority
/// (`nice`) than the threads that serve requests, with its own blocking threads (the scans'
/// RocksDB and Parquet reads): under full scans, a point read or a write on another
/// connection still gets a core when it needs one. Never dropped.
fn query_runtime(nice: i32) -> anyhow::Result<&'static tokio::runtime::Runtime> {
    static QUERIES: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    if let Some(q) = QUERIES.get() {
        return Ok(q);
    }
    let q = tokio::runtime::Builder::new_multi_thread()
        .thread_name("folddb-query")
        .on_thread_start(move || {
            let me = rustix::thread::gettid();
            if let Err(e) = rustix::process::setpriority_process(Some(me), nice) {
                tracing::debug!(error = %e, "a query thread keeps the default priority");
            }
        })
        .enable_all()
        .build()
        .context("starting the query runtime")?;
    Ok(QUERIES.get_or_init(|| q))
}

pub async fn serve(args: ServeArgs, logs: Arc<crate::server_logs::LogRing>) -> anyhow::Result<()> {
    let config = Config::load(&args)?;
    if config.auth.jwt_secret == DEFAULT_JWT_SECRET {
        tracing::warn!("auth.jwt_secret is the default; set FOLDDB_JWT_SECRET in production");
    }
    std::fs::create_dir_all(&config.server.data_dir)
        .with_context(|| format!("creating {}", config.server.data_dir.display()))?;
    let listen = config.server.listen;
    let cold = Arc::new(
        ColdStore::new(config.server.data_dir.join("storage"))
            .with_io(object_io()?.handle().clone()),
    );
    upgrade_cold_tier(&config.server.data_dir, &cold).await?;
    let members = config.cluster.members()?;
    let (membership, fold, files) = if members.is_empty() {
        let membership = folddb_cluster::Membership::Single {
            address: listen.to_string(),
        };
        (membership, EventFold::new(cold.clone()), None)
    } else {
        let auth = folddb_cluster::ClusterAuth {
            cluster_id: config.cluster.id.clone(),
            secret: config.cluster.secret.clone().unwrap_or_default(),
        };
        let id = config.server.node_id;
        if !members.contains_key(&u64::from(id)) {
            tracing::warn!(
                "node {id} is not on the peer list: it waits to join the cluster; on any member \
                 run CLUSTER JOIN {id} '{listen}'"
            );
        }
        let peers = folddb_cluster::Peers::new(auth)?;
        // Each member keeps its own copy of the cold files of `filesystem` storages.
        let files = Arc::new(folddb_cluster::ColdFiles::new(
            u64::from(id),
            cold.clone(),
            peers.clone(),
        ));
        let fold = EventFold::new(Arc::new(folddb_cluster::ClusterCold {
            cold: cold.clone(),
            files: files.clone(),
        }));
        let membership = folddb_cluster::Membership::Static {
            members,
            peers,
            snapshots: folddb_cluster::SnapshotPolicy {
                every_entries: config.cluster.snapshot_every_entries,
                keep_entries: config.cluster.snapshot_keep_entries,
            },
            files: Some(files.clone()),
        };
        (membership, fold, Some(files))
    };
    let node = Node::start(
        u64::from(config.server.node_id),
        membership,
        &config.server.data_dir,
        config.log.clone(),
        Arc::new(fold.clone()),
    )
    .await
    .context("starting the raft node")?;
    let node = Arc::new(node);
    let live = Arc::new(folddb_realtime::Registry::new(
        u64::from(config.server.node_id),
        config.live.max_subscriptions_per_user,
    ));
    node.hot()
        .scan_cache()
        .set_budget(config.limits.scan_cache_bytes);
    let engine = Engine::new(
        node.hot().clone(),
        Arc::new(node.proposer()),
        config.server.node_id,
    )
    .with_limits(folddb_query::Limits {
        bcrypt_cost: config.auth.bcrypt_cost,
        max_statements: config.limits.max_statements_per_request,
        statement_timeout: Duration::from_secs(config.limits.statement_timeout_seconds),
        max_result_bytes: config.limits.max_result_bytes,
        query_memory_bytes: config.limits.query_memory_bytes,
        max_value_bytes: config.limits.max_value_bytes,
        ..Default::default()
    })
    .with_live(live.clone())
    .with_executor(query_runtime(config.limits.query_nice)?.handle().clone())
    .with_cold(cold, fold)
    .with_vector_snapshots(
        config.server.data_dir.join(VECTORS_DIR),
        test_vector_build_delay(),
    )
    .with_data_dir(&config.server.data_dir)
    .with_restore_pause(test_pause("FOLDDB_TEST_RESTORE_PAUSE_MS"))
    .with_default_flush_policy(config.storage.default_flush_policy()?)
    .with_ws_url(format!("ws://{listen}/v1/ws"))
    .with_clock_skew_ms(test_clock_skew_ms())
    .with_node_info(folddb_query::node_info::NodeInfo {
        node_id: config.server.node_id,
        cluster_id: "folddb".into(),
        api_addr: listen.to_string(),
        started_ms: folddb_query::engine::now_ms(),
        workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
        max_connections: config.limits.max_connections_per_ip,
        settings: config.settings(),
        logs: Some(logs),
        cluster: node.is_cluster().then(|| {
            Arc::new(RaftView(node.clone())) as Arc<dyn folddb_query::node_info::ClusterView>
        }),
    });
    // Every member folds the same commits: in a cluster the cold tier is one set of files
    // on object storage that all of them read, or a copy on each member of the files of a
    // `filesystem` storage (`Engine::in_cluster`, `Engine::with_replicas`).
    let engine =
        engine.with_topic_visibility(Duration::from_secs(config.topics.visibility_timeout_secs));
    let engine = match files {
        Some(files) => {
            let registry = engine.jobs().clone();
            files.set_pending_jobs(Arc::new(move || registry.pending_ids()));
            engine
                .in_cluster(Duration::from_secs(
                    config.cluster.replaced_segments_grace_seconds,
                ))
                .with_replicas(files)
        }
        None => engine,
    };
    let auth = Auth::new(config.auth.clone());
    // A cluster has no leader until its members serve each other's RPCs: its leader
    // bootstraps, once the server is up (`bootstrap_in_cluster`).
    if !node.is_cluster() {
        auth::bootstrap(&engine, &auth).await?;
    }
    let guard = Guard::new(
        config.auth.rate_limit_auth_requests_per_ip_per_sec,
        config.auth.max_failed_logins,
        config.auth.lockout_minutes,
    );
    let metrics = crate::metrics::install().context("installing the metrics recorder")?;
    let uploads = config.server.data_dir.join(UPLOADS_DIR);
    // What a crash left of requests that were being received.
    let _ = std::fs::remove_dir_all(&uploads);
    std::fs::create_dir_all(&uploads).with_context(|| format!("creating {}", uploads.display()))?;
    let hub = Arc::new(folddb_realtime::Hub::new(config.live.connection_queue));
    tokio::spawn(hub.clone().run(node.changes()));
    let state = Arc::new(State {
        engine,
        live,
        hub,
        plans: Arc::new(folddb_realtime::Plans::new()),
        auth,
        guard,
        sql_per_user: crate::guard::RatePerSecond::new(config.limits.sql_per_user_per_sec),
        node: node.clone(),
        live_config: config.live.clone(),
        metrics,
        uploads,
    });
    // Background tasks hold the state; they end before the node is shut down.
    let background = [
        tokio::spawn(bootstrap_in_cluster(state.clone())),
        tokio::spawn(run_scheduler(state.clone(), config.storage.clone())),
        tokio::spawn(audit_failed_logins(state.clone())),
        tokio::spawn(sweep_cold(
            state.clone(),
            Duration::from_secs(config.cluster.replaced_segments_grace_seconds),
        )),
        tokio::spawn(trim_journal(state.clone(), config.journal.clone())),
        tokio::spawn(files_http::sweep_files(
            state.clone(),
            Duration::from_secs(config.storage.file_cleanup_interval_seconds),
            Duration::from_secs(config.storage.file_cleanup_grace_seconds),
        )),
        tokio::spawn(files_http::recover_restores(state.clone())),
        tokio::spawn(trim_topics(
            state.clone(),
            Duration::from_secs(config.topics.retention_check_interval_secs.max(1)),
        )),
    ];
    let routes = warp::any()
        .and(warp::method())
        .and(warp::path::full())
        .and(warp::header::headers_cloned())
        .and(warp::ext::optional::<crate::http::Peer>())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::body::stream())
        .then({
            let state = state.clone();
            let body_timeout = Duration::from_secs(config.limits.body_read_timeout_seconds);
            move |method,
                  path: warp::path::FullPath,
                  headers,
                  peer: Option<crate::http::Peer>,
                  query: String,
                  body| {
                let state = state.clone();
                async move {
                    if files_http::streams(&method, path.as_str(), &headers) {
                        // Uploads are read as they stream, past the body limit; downloads
                        // have no body.
                        let started = Instant::now();
                        let endpoint = crate::metrics::endpoint(path.as_str());
                        let r = files_http::handle(
                            &state,
                            path.as_str(),
                            &query,
                            &headers,
                            body,
                            body_timeout,
                        )
                        .await;
                        crate::metrics::record_request(
                            endpoint,
                            r.status().as_u16(),
                            started.elapsed(),
                        );
                        return Ok::<_, Infallible>(r);
                    }
                    // A body sent slowly enough holds a connection for ever otherwise.
                    let limit = if path.as_str().starts_with("/v1/raft/") {
                        MAX_RAFT_BODY_BYTES
                    } else {
                        MAX_BODY_BYTES
                    };
                    let Ok(body) =
                        tokio::time::timeout(body_timeout, collect_limited(body, limit)).await
                    else {
                        return Ok::<_, Infallible>(crate::http::request_timeout());
                    };
                    let peer = peer.map(|p| p.0);
                    let started = Instant::now();
                    let endpoint = crate::metrics::endpoint(path.as_str());
                    let r = handle(&state, method, path.as_str(), &headers, peer, body).await;
                    crate::metrics::record_request(
                        endpoint,
                        r.status().as_u16(),
                        started.elapsed(),
                    );
                    Ok::<_, Infallible>(r)
                }
            }
        })
        .map(|r: Result<Reply, Infallible>| match r {
            Ok(r) => r,
            Err(never) => match never {},
        });
    let ws = warp::path!("v1" / "ws")
        .and(crate::ws::handshake())
        .and(warp::header::optional::<String>("authorization"))
        .and(warp::query::<std::collections::HashMap<String, String>>())
        .map({
            let state = state.clone();
            move |ws: crate::ws::Handshake,
                  authorization: Option<String>,
                  query: std::collections::HashMap<String, String>| {
                let state = state.clone();
                let params = crate::live::Params::from_query(&query);
                metrics::counter!("folddb_ws_upgrades_total").increment(1);
                ws.accept(crate::live::MAX_FRAME_BYTES * 2, move |socket| {
                    crate::live::connection(state, socket, authorization, params)
                })
            }
        });
    let filter = ws.or(routes).map(warp::Reply::into_response).boxed();
    let limits = crate::http::HttpLimits {
        header_read_timeout: Duration::from_secs(config.limits.header_read_timeout_seconds),
        max_connections_per_ip: config.limits.max_connections_per_ip,
        requests_per_ip_per_sec: config.limits.requests_per_ip_per_sec,
    };
    let listener = listener(listen)?;
    eprintln!(
        "folddb listening on http://{listen} (data in {})",
        config.server.data_dir.display()
    );
    tracing::info!(%listen, node_id = config.server.node_id, "serving");
    crate::http::serve(listener, filter, limits, shutdown_signal(), SHUTDOWN_DRAIN).await;
    for task in background {
        task.abort();
        let _ = task.await;
    }
    drop(state);
    match Arc::try_unwrap(node) {
        Ok(node) => node.shutdown().await.context("shutting down the node")?,
        Err(_) => tracing::warn!("requests still hold the node; exiting without a clean shutdown"),
    }
    Ok(())
}

/// The listening socket. TCP_NODELAY is set on it, and Linux hands it down to every
/// accepted connection: small responses and WebSocket frames go out at once instead of
/// waiting for the peer's delayed ACK (40 ms) behind an earlier write.
fn listener(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.set_nodelay(true)?;
    socket
        .bind(addr)
        .with_context(|| format!("binding {addr}"))?;
    Ok(socket.listen(1024)?)
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = ctrl_c.await;
            return;
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term.recv() => {},
    }
}

mod bytes_util {
    use futures::{Stream, StreamExt};
    use warp::Buf;

    /// The body, or its size once it passes `limit`.
    pub async fn collect_limited<S, B>(body: S, limit: usize) -> Result<Vec<u8>, usize>
    where
        S: Stream<Item = Result<B, warp::Error>>,
        B: Buf,
    {
        let mut out = Vec::new();
        let mut body = std::pin::pin!(body);
        while let Some(chunk) = body.next().await {
            let Ok(mut chunk) = chunk else {
                return Err(out.len());
            };
            while chunk.has_remaining() {
                let part = chunk.chunk();
                out.extend_from_slice(part);
                let n = part.len();
                chunk.advance(n);
            }
            if out.len() > limit {
                return Err(out.len());
            }
        }
        Ok(out)
    }
}

async fn handle(
    state: &State,
    method: Method,
    path: &str,
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
    body: Result<Vec<u8>, usize>,
) -> Reply {
    let body = match body {
        Ok(b) => b,
        Err(size) => {
            return reply(
                StatusCode::PAYLOAD_TOO_LARGE,
                &json!({"error": "BODY_TOO_LARGE", "message": "Request body is too large",
                        "size_bytes": size, "max_bytes": MAX_BODY_BYTES}),
            );
        }
    };
    let is_auth = matches!(
        (method.as_str(), path),
        (
            "POST",
            "/v1/api/auth/login" | "/v1/api/auth/refresh" | "/v1/api/auth/setup"
        )
    );
    let ip = peer.map_or(IpAddr::from([0, 0, 0, 0]), |p| p.ip());
    if is_auth && !state.guard.admit(ip, auth::now_s()) {
        let mut r = auth_error(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "Too many authentication attempts. Please retry shortly.",
        );
        r.headers_mut()
            .insert("retry-after", warp::http::HeaderValue::from_static("1"));
        return r;
    }
    if let Some(rpc) = folddb_cluster::Rpc::from_path(path).filter(|_| method == Method::POST) {
        return raft_rpc(state, rpc, headers, &body).await;
    }
    let needs_barrier = matches!(
        (method.as_str(), path),
        (
            "POST",
            "/v1/api/sql"
                | "/v1/api/auth/login"
                | "/v1/api/auth/setup"
                | "/v1/api/topics/consume"
                | "/v1/api/topics/ack"
        )
    );
    if needs_barrier && let Some(r) = read_barrier(state).await {
        return r;
    }
    match (method.as_str(), path) {
        ("GET", "/health") | ("GET", "/v1/api/healthcheck") => health(state, peer),
        ("GET", "/v1/api/cluster/health") => cluster_health(state, peer),
        ("POST", "/v1/api/sql") => sql(state, headers, &body).await,
        ("GET", "/v1/api/auth/status") => setup_status(state, peer),
        ("POST", "/v1/api/auth/setup") => setup(state, peer, &body).await,
        ("POST", "/v1/api/auth/login") => login(state, ip, &body).await,
        ("POST", "/v1/api/auth/refresh") => refresh(state, headers).await,
        ("POST", "/v1/api/auth/logout") => logout(),
        ("GET", "/v1/api/auth/me") => me(state, headers),
        ("POST", "/v1/api/topics/consume") => topics_http::consume(state, headers, &body).await,
        ("POST", "/v1/api/topics/ack") => topics_http::ack(state, headers, &body).await,
        ("GET", "/metrics") => crate::metrics::scrape(state, headers, peer),
        _ => reply(
            StatusCode::NOT_FOUND,
            &json!({"error": "not_found", "message": format!("No route for {method} {path}")}),
        ),
    }
}

/// Waits until this node has applied everything committed before the request (a leader's
/// read barrier); the error reply when it cannot.
async fn read_barrier(state: &State) -> Option<Reply> {
    let e = state.node.read_barrier().await.err()?;
    let message = e.to_string();
    let code = if message.starts_with("NOT_LEADER") {
        "NOT_LEADER"
    } else {
        "LEADER_NOT_AVAILABLE"
    };
    Some(sql_error(
        StatusCode::SERVICE_UNAVAILABLE,
        code,
        &message,
        None,
        Instant::now(),
    ))
}

/// A peer's raft RPC: refused (401) unless it names this node's cluster and carries its
/// secret, before its body is read; a body that does not decode is a 400.
async fn raft_rpc(
    state: &State,
    rpc: folddb_cluster::Rpc,
    headers: &HeaderMap,
    body: &[u8],
) -> Reply {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let admitted = state.node.cluster_auth().is_some_and(|auth| {
        auth.admits(
            header(folddb_cluster::network::CLUSTER_HEADER),
            header(folddb_cluster::network::SECRET_HEADER),
        )
    });
    if !admitted {
        return reply(
            StatusCode::UNAUTHORIZED,
            &json!({"error": "UNAUTHORIZED",
                    "message": "raft RPCs need this cluster's id and secret"}),
        );
    }
    match state.node.answer_rpc(rpc, body).await {
        Ok(bytes) => {
            let mut r = Response::new(bytes);
            r.headers_mut().insert(
                "content-type",
                warp::http::HeaderValue::from_static("application/octet-stream"),
            );
            r
        }
        Err(why) => reply(
            StatusCode::BAD_REQUEST,
            &json!({"error": "INVALID_INPUT", "message": format!("not a raft RPC: {why}")}),
        ),
    }
}

fn health(state: &State, peer: Option<SocketAddr>) -> Reply {
    if !is_local(peer) {
        return reply(
            StatusCode::FORBIDDEN,
            &json!({"error": "Access denied. Health endpoint is localhost-only."}),
        );
    }
    if let Some(reason) = state.node.status().stopped {
        return unhealthy(&reason);
    }
    reply(
        StatusCode::OK,
        &json!({"status": "healthy", "version": env!("CARGO_PKG_VERSION"), "api_version": "v1",
                "build_date": "unknown"}),
    )
}

/// `503` with why the node does not serve writes.
fn unhealthy(reason: &str) -> Reply {
    reply(
        StatusCode::SERVICE_UNAVAILABLE,
        &json!({"status": "unhealthy", "reason": reason, "version": env!("CARGO_PKG_VERSION")}),
    )
}

fn cluster_health(state: &State, peer: Option<SocketAddr>) -> Reply {
    if !is_local(peer) {
        return reply(
            StatusCode::FORBIDDEN,
            &json!({"error": "Access denied. Health endpoint is localhost-only."}),
        );
    }
    let s = state.node.status();
    if let Some(reason) = &s.stopped {
        return unhealthy(reason);
    }
    let nodes: Vec<Json> = state
        .node
        .members()
        .into_iter()
        .map(|m| {
            let role = match (m.is_leader, m.voter) {
                (true, _) => "Leader",
                (false, true) => "Follower",
                (false, false) => "Learner",
            };
            json!({"node_id": m.node_id, "role": role,
                   "status": "Active", "api_addr": m.address, "is_self": m.node_id == s.node_id,
                   "is_leader": m.is_leader, "replication_lag": m.lag.unwrap_or(0),
                   "catchup_progress_pct": null})
        })
        .collect();
    let cluster_id = state
        .node
        .cluster_auth()
        .map_or("folddb", |a| a.cluster_id.as_str());
    reply(
        StatusCode::OK,
        &json!({
            "status": "healthy", "version": env!("CARGO_PKG_VERSION"), "build_date": "unknown",
            "is_cluster_mode": state.node.is_cluster(), "cluster_id": cluster_id,
            "node_id": s.node_id, "is_leader": s.is_leader, "total_groups": 1,
            "groups_leading": u8::from(s.is_leader), "current_term": s.current_term,
            "last_applied": s.last_applied, "millis_since_quorum_ack": 0, "nodes": nodes
        }),
    )
}

fn rfc3339(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(ms as i64)
        .map(|d| d.to_rfc3339())
        .unwrap_or_default()
}

fn user_info(u: &UserDef) -> Json {
    json!({"id": u.id, "role": u.role.name(), "email": u.email,
           "created_at": rfc3339(u.created_at_ms), "updated_at": rfc3339(u.updated_at_ms)})
}

pub(crate) fn bearer(headers: &HeaderMap) -> Result<Option<&str>, ()> {
    let Some(v) = headers.get("authorization") else {
        return Ok(None);
    };
    let v = v.to_str().map_err(|_| ())?;
    match v.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => Ok(Some(token.trim())),
        _ => Err(()),
    }
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The caller an access token names (API.md 1.4, 1.6), or the error code to refuse it with.
pub(crate) fn caller_of(state: &State, token: &str) -> Result<Caller, &'static str> {
    let claims = match state.auth.verify(token) {
        Ok(c) if c.token_type == "access" => c,
        Ok(_) | Err(TokenError::Invalid) => return Err("INVALID_CREDENTIALS"),
        Err(TokenError::Expired) => return Err("TOKEN_EXPIRED"),
    };
    let user = state
        .auth
        .user_of(&state.engine, &claims)
        .ok_or("INVALID_CREDENTIALS")?;
    Ok(Caller {
        user: user.id,
        role: user.role,
    })
}

/// Whether `caller`'s account still exists with the role it authenticated with: an open
/// WebSocket of a dropped or demoted user is closed.
pub(crate) fn account_unchanged(state: &State, caller: &Caller) -> bool {
    catalog::user(state.engine.store().as_ref(), &caller.user)
        .ok()
        .flatten()
        .is_some_and(|u| u.deleted_at_ms.is_none() && u.role == caller.role)
}

/// The caller of a SQL request (API.md 1.7.2 steps 1 and 2: authenticated, within its
/// rate), or the error reply.
fn sql_caller(state: &State, headers: &HeaderMap, start: Instant) -> Result<Caller, Box<Reply>> {
    let unauthorized = |code: &str, message: &str| {
        Box::new(sql_error(
            StatusCode::UNAUTHORIZED,
            code,
            message,
            None,
            start,
        ))
    };
    let token = match bearer(headers) {
        Ok(Some(t)) => t,
        Ok(None) => {
            return Err(unauthorized(
                "MISSING_AUTHORIZATION",
                "Authentication required",
            ));
        }
        Err(()) => return Err(unauthorized("INVALID_CREDENTIALS", "Invalid credentials")),
    };
    let caller =
        caller_of(state, token).map_err(|code| unauthorized(code, "Invalid credentials"))?;
    if !state.sql_per_user.admit(&caller.user, auth::now_s()) {
        let mut r = sql_error(
            StatusCode::TOO_MANY_REQUESTS,
            "RATE_LIMIT_EXCEEDED",
            "Too many SQL requests for this user; retry shortly",
            None,
            start,
        );
        r.headers_mut()
            .insert("retry-after", warp::http::HeaderValue::from_static("1"));
        return Err(Box::new(r));
    }
    Ok(caller)
}

async fn sql(state: &State, headers: &HeaderMap, body: &[u8]) -> Reply {
    let start = Instant::now();
    let caller = match sql_caller(state, headers, start) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    #[derive(Deserialize)]
    struct Body {
        sql: String,
        #[serde(default)]
        params: Option<Vec<Json>>,
        #[serde(default)]
        namespace_id: Option<String>,
    }
    let parsed: Body = match serde_json::from_slice(body) {
        Ok(b) => b,
        Err(e) => {
            return sql_error(
                StatusCode::BAD_REQUEST,
                "INVALID_INPUT",
                &format!("Invalid JSON payload: {e}"),
                None,
                start,
            );
        }
    };
    let has_files =
        folddb_query::engine::files::placeholders(&parsed.sql).is_ok_and(|found| !found.is_empty());
    if has_files {
        return sql_error(
            StatusCode::BAD_REQUEST,
            "INVALID_INPUT",
            "FILE placeholders require multipart/form-data",
            None,
            start,
        );
    }
    let request = SqlRequest {
        sql: parsed.sql,
        params: parsed.params,
        namespace: parsed.namespace_id,
    };
    sql_reply(
        state.engine.execute_streamed(&caller, &request).await,
        start,
    )
}

/// The reply to a SQL request's answer (API.md 1.7.3, 1.7.4).
fn sql_reply(answer: Result<Answer, SqlError>, start: Instant) -> Reply {
    match answer {
        Ok(Answer::Rows(rows)) => streamed(rows, start),
        Ok(Answer::Whole(r)) => {
            let mut out =
                json!({"status": "success", "results": r.results, "took": took_ms(start)});
            if r.single_query {
                out["error"] = Json::Null;
            }
            reply(StatusCode::OK, &out)
        }
        Err(SqlError {
            code,
            message,
            details,
            ..
        }) => sql_error(
            status_of(code),
            code.as_str(),
            &message,
            details.as_deref(),
            start,
        ),
    }
}

/// The answer of a request's single query, written as its rows are produced (API.md 1.7.3's
/// streamed shape): `{"status":"success","results":[{"schema":…,"rows":[` first, then the
/// rows batch by batch, then `],"row_count":N,"as_user":…}],"took":T,"error":null}`. The
/// server holds a batch at a time, whatever the size of the result. A failure after the
/// first bytes (the statement timeout, a storage error) cuts the body short.
fn streamed(rows: RowStream, start: Instant) -> Reply {
    enum Part {
        Head(RowStream),
        Rows(RowStream, u64),
        End,
    }
    let body = futures::stream::unfold(Part::Head(rows), move |part| async move {
        let (mut out, mut rows, mut n) = match part {
            Part::Head(rows) => {
                let schema = match serde_json::to_string(&rows.schema) {
                    Ok(s) => s,
                    Err(e) => return Some((Err(std::io::Error::other(e)), Part::End)),
                };
                let head =
                    format!(r#"{{"status":"success","results":[{{"schema":{schema},"rows":["#);
                (head.into_bytes(), rows, 0)
            }
            Part::Rows(rows, n) => (Vec::new(), rows, n),
            Part::End => return None,
        };
        loop {
            match rows.next_rows().await {
                Some(Ok(batch)) => {
                    for row in &batch {
                        if n > 0 {
                            out.push(b',');
                        }
                        if let Err(e) = serde_json::to_writer(&mut out, row) {
                            return Some((Err(std::io::Error::other(e)), Part::End));
                        }
                        n += 1;
                    }
                    // An empty chunk would end a chunked body: wait for rows.
                    if !out.is_empty() {
                        return Some((Ok(out.into()), Part::Rows(rows, n)));
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!(code = e.code.as_str(), message = %e.message, "a streamed query failed after its first rows; the response is cut short");
                    return Some((Err(std::io::Error::other(e.message)), Part::End));
                }
                None => {
                    let tail = format!(
                        r#"],"row_count":{n},"as_user":{}}}],"took":{},"error":null}}"#,
                        Json::from(rows.as_user.as_str()),
                        Json::from(took_ms(start))
                    );
                    out.extend_from_slice(tail.as_bytes());
                    return Some((Ok(out.into()), Part::End));
                }
            }
        }
    });
    let mut r = Response::new(Vec::new());
    r.headers_mut().insert(
        "content-type",
        warp::http::HeaderValue::from_static("application/json"),
    );
    r.extensions_mut()
        .insert(crate::http::Streamed::new(Box::pin(body)));
    r
}
