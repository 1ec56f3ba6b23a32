//! `GET /metrics`: the server's figures in Prometheus text format (README, "Metrics").
//! Counters and histograms are recorded where things happen, through the `metrics` facade
//! (HTTP requests here, statements in `folddb-query`, log appends and fsyncs in
//! `folddb-log`, queue drops in `folddb-realtime`); gauges of state (applied index, lag,
//! subscriptions, queues, store sizes) are read when the endpoint is scraped.

use std::time::Duration;

use folddb_materializer::{Family, catalog};
use metrics::{describe_counter, describe_gauge, describe_histogram, gauge};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Bucket bounds of every `*_seconds` histogram.
const LATENCY_BUCKETS: &[f64] = &[
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];

/// Bucket bounds of the group-commit size (entries per fsync).
const GROUP_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1024.0];

/// Installs the process's recorder (once, by `folddb serve`) and describes every metric.
pub fn install() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)?
        .set_buckets_for_metric(
            Matcher::Full("folddb_log_group_commit_entries".into()),
            GROUP_BUCKETS,
        )?
        .install_recorder()?;
    describe();
    Ok(handle)
}

fn describe() {
    describe_counter!(
        "folddb_http_requests_total",
        "HTTP requests answered, by endpoint and status code"
    );
    describe_histogram!(
        "folddb_http_request_duration_seconds",
        "Time to answer an HTTP request (to the response head), by endpoint"
    );
    describe_counter!(
        "folddb_ws_upgrades_total",
        "WebSocket connections opened on /v1/ws"
    );
    describe_counter!(
        "folddb_sql_statements_total",
        "SQL statements run, by kind (select, insert, update, delete, ddl, …)"
    );
    describe_histogram!(
        "folddb_log_append_seconds",
        "Time to write one batch of entries to the log (before fsync)"
    );
    describe_counter!(
        "folddb_log_appended_entries_total",
        "Entries appended to the log"
    );
    describe_histogram!(
        "folddb_log_fsync_seconds",
        "Time of one fdatasync of the log"
    );
    describe_histogram!(
        "folddb_log_group_commit_entries",
        "Entries one fdatasync made durable (group commit size)"
    );
    describe_gauge!("folddb_applied_index", "Last log index applied to state");
    describe_gauge!("folddb_log_last_index", "Last log index written");
    describe_gauge!(
        "folddb_apply_lag_entries",
        "Entries written to the log and not yet applied"
    );
    describe_gauge!(
        "folddb_raft_term",
        "The raft term this node is in (a cluster only)"
    );
    describe_gauge!(
        "folddb_raft_is_leader",
        "1 while this node leads its cluster, else 0 (a cluster only)"
    );
    describe_gauge!(
        "folddb_raft_snapshot_index",
        "The last log entry this node's current snapshot covers (a cluster only)"
    );
    describe_gauge!(
        "folddb_raft_purged_index",
        "The last log entry raft has forgotten on this node: its purge marker (a cluster only)"
    );
    describe_gauge!(
        "folddb_raft_replication_lag_entries",
        "On the leader: entries each member's log is behind the leader's, by node id"
    );
    describe_gauge!("folddb_live_subscriptions", "Live queries open");
    describe_gauge!("folddb_live_connections", "WebSocket connections open");
    describe_gauge!(
        "folddb_live_queued_change_sets",
        "Change sets queued for WebSocket connections, in all"
    );
    describe_gauge!(
        "folddb_live_max_connection_queue",
        "Change sets queued for the most behind connection"
    );
    describe_counter!(
        "folddb_live_queue_drops_total",
        "Change sets a connection's full queue could not take (it is caught up from the journal)"
    );
    describe_counter!(
        "folddb_jobs_finished_total",
        "Flush, compaction and eviction jobs finished, by kind and status"
    );
    describe_histogram!("folddb_job_seconds", "Time a job ran, by kind");
    describe_gauge!(
        "folddb_rocksdb_bytes",
        "Hot tier size by column family (live data estimate plus memtables)"
    );
    describe_gauge!(
        "folddb_cold_tier_bytes",
        "Bytes of Parquet segments listed by the cold tier's manifests"
    );
    describe_gauge!(
        "folddb_cold_tier_segments",
        "Parquet segments listed by the cold tier's manifests"
    );
    describe_gauge!(
        "folddb_process_resident_bytes",
        "Resident memory of the server process"
    );
    describe_gauge!(
        "folddb_process_cpu_seconds",
        "CPU time the server process has spent"
    );
}

/// The `endpoint` label of a request: its route, or `other` (a label per unknown path
/// would let clients grow the series without bound).
pub fn endpoint(path: &str) -> &'static str {
    match path {
        "/v1/api/sql" => "/v1/api/sql",
        "/health" => "/health",
        "/v1/api/healthcheck" => "/v1/api/healthcheck",
        "/v1/api/cluster/health" => "/v1/api/cluster/health",
        "/v1/api/auth/status" => "/v1/api/auth/status",
        "/v1/api/auth/setup" => "/v1/api/auth/setup",
        "/v1/api/auth/login" => "/v1/api/auth/login",
        "/v1/api/auth/refresh" => "/v1/api/auth/refresh",
        "/v1/api/auth/logout" => "/v1/api/auth/logout",
        "/v1/api/auth/me" => "/v1/api/auth/me",
        "/metrics" => "/metrics",
        _ => "other",
    }
}

/// Counts one answered request.
pub fn record_request(endpoint: &'static str, status: u16, took: Duration) {
    metrics::counter!("folddb_http_requests_total", "endpoint" => endpoint, "status" => status.to_string())
        .increment(1);
    metrics::histogram!("folddb_http_request_duration_seconds", "endpoint" => endpoint)
        .record(took.as_secs_f64());
}

/// The node's state as gauges.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Snapshot {
    pub applied_index: u64,
    pub last_log_index: u64,
    pub subscriptions: usize,
    /// Connections, change sets queued in all, at most for one connection.
    pub queues: (usize, usize, usize),
    pub family_bytes: Vec<(&'static str, u64)>,
    pub cold_bytes: u64,
    pub cold_segments: u64,
    /// In a cluster: the raft term, whether this node leads, and (on the leader) how many
    /// entries each member's log is behind.
    pub raft: Option<Raft>,
    /// Each topic partition's next offset: (topic, partition, offset).
    pub topic_heads: Vec<(String, u32, u64)>,
    /// Each consumer group's messages after its acknowledged offset: (topic, group,
    /// partition, lag).
    pub topic_lags: Vec<(String, String, u32, u64)>,
}

/// The node's place in its cluster, as gauges.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Raft {
    pub term: u64,
    pub is_leader: bool,
    pub lag: Vec<(u64, u64)>,
    /// The last entry the node's current snapshot covers, and the last one raft forgot.
    pub snapshot_index: u64,
    pub purged_index: u64,
}

impl Snapshot {
    /// Reads the sizes of the hot and cold tiers from `store` (the rest is the caller's).
    pub fn sizes(&mut self, store: &folddb_materializer::HotStore) {
        self.family_bytes = Family::ALL
            .iter()
            .map(|f| (f.name(), store.family_bytes(*f).unwrap_or(0)))
            .collect();
        use folddb_materializer::topics;
        for t in topics::topics(store).unwrap_or_default() {
            for p in 0..t.partitions {
                let head = topics::head(store, &t.id, p).unwrap_or(0);
                self.topic_heads.push((t.id.clone(), p, head));
            }
            for (group, p, o) in topics::group_offsets(store, &t.id).unwrap_or_default() {
                let head = topics::head(store, &t.id, p).unwrap_or(0);
                let lag = head.saturating_sub(o.last_acked + 1);
                self.topic_lags.push((t.id.clone(), group, p, lag));
            }
        }
        let tables = catalog::tables(store, None).unwrap_or_default();
        for t in tables {
            for m in catalog::manifests(store, t.id).unwrap_or_default() {
                self.cold_segments += m.segments.len() as u64;
                self.cold_bytes += m.segments.iter().map(|s| s.bytes).sum::<u64>();
            }
        }
    }

    /// Sets the gauges.
    pub fn publish(&self) {
        gauge!("folddb_applied_index").set(self.applied_index as f64);
        gauge!("folddb_log_last_index").set(self.last_log_index as f64);
        gauge!("folddb_apply_lag_entries")
            .set(self.last_log_index.saturating_sub(self.applied_index) as f64);
        gauge!("folddb_live_subscriptions").set(self.subscriptions as f64);
        gauge!("folddb_live_connections").set(self.queues.0 as f64);
        gauge!("folddb_live_queued_change_sets").set(self.queues.1 as f64);
        gauge!("folddb_live_max_connection_queue").set(self.queues.2 as f64);
        for (family, bytes) in &self.family_bytes {
            gauge!("folddb_rocksdb_bytes", "family" => *family).set(*bytes as f64);
        }
        gauge!("folddb_cold_tier_bytes").set(self.cold_bytes as f64);
        gauge!("folddb_cold_tier_segments").set(self.cold_segments as f64);
        if let Some(raft) = &self.raft {
            gauge!("folddb_raft_term").set(raft.term as f64);
            gauge!("folddb_raft_is_leader").set(f64::from(u8::from(raft.is_leader)));
            gauge!("folddb_raft_snapshot_index").set(raft.snapshot_index as f64);
            gauge!("folddb_raft_purged_index").set(raft.purged_index as f64);
            for (node, lag) in &raft.lag {
                gauge!("folddb_raft_replication_lag_entries", "node" => node.to_string())
                    .set(*lag as f64);
            }
        }
        for (topic, partition, head) in &self.topic_heads {
            gauge!("folddb_topic_messages", "topic" => topic.clone(),
                   "partition" => partition.to_string())
            .set(*head as f64);
        }
        for (topic, group, partition, lag) in &self.topic_lags {
            gauge!("folddb_topic_group_lag", "topic" => topic.clone(), "group" => group.clone(),
                   "partition" => partition.to_string())
            .set(*lag as f64);
        }
        let (rss, _) = folddb_query::system::process_memory();
        gauge!("folddb_process_resident_bytes").set(rss as f64);
        gauge!("folddb_process_cpu_seconds")
            .set(folddb_query::system::process_cpu_ms() as f64 / 1000.0);
    }
}

/// `GET /metrics` (README, "Metrics"): from loopback, or with a dba's or system's token.
pub(crate) fn scrape(
    state: &crate::server::State,
    headers: &warp::http::HeaderMap,
    peer: Option<std::net::SocketAddr>,
) -> warp::http::Response<Vec<u8>> {
    if !crate::server::is_local(peer) {
        let admin = match crate::server::bearer(headers) {
            Ok(Some(token)) => {
                crate::server::caller_of(state, token).is_ok_and(|c| c.role.is_admin())
            }
            _ => false,
        };
        if !admin {
            return crate::server::reply(
                warp::http::StatusCode::FORBIDDEN,
                &serde_json::json!({"error": "Access denied. /metrics is for localhost or a dba's token."}),
            );
        }
    }
    let status = state.node.status();
    let mut snapshot = crate::metrics::Snapshot {
        applied_index: status.last_applied,
        last_log_index: status.last_log_index,
        subscriptions: folddb_query::live::LiveSource::list(state.live.as_ref()).len(),
        queues: state.hub.queues(),
        raft: state.node.is_cluster().then(|| crate::metrics::Raft {
            term: status.current_term,
            is_leader: status.is_leader,
            lag: state
                .node
                .members()
                .iter()
                .filter_map(|m| Some((m.node_id, m.lag?)))
                .collect(),
            snapshot_index: status.snapshot_index,
            purged_index: status.purged_index,
        }),
        ..Default::default()
    };
    snapshot.sizes(state.engine.store());
    snapshot.publish();
    let mut r = warp::http::Response::new(state.metrics.render().into_bytes());
    *r.status_mut() = warp::http::StatusCode::OK;
    r.headers_mut().insert(
        "content-type",
        warp::http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scrape_renders_what_was_recorded_in_prometheus_text() {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
            .expect("buckets")
            .build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            describe();
            record_request(endpoint("/v1/api/sql"), 200, Duration::from_millis(3));
            record_request(endpoint("/no/such/path"), 404, Duration::from_millis(1));
            Snapshot {
                applied_index: 7,
                last_log_index: 9,
                queues: (2, 5, 4),
                family_bytes: vec![("rows", 100)],
                raft: Some(Raft {
                    term: 3,
                    is_leader: true,
                    lag: vec![(1, 0), (2, 12)],
                    snapshot_index: 40,
                    purged_index: 30,
                }),
                ..Snapshot::default()
            }
            .publish();
        });
        let text = handle.render();
        for line in [
            "# TYPE folddb_http_requests_total counter",
            "folddb_http_requests_total{endpoint=\"/v1/api/sql\",status=\"200\"} 1",
            "folddb_http_requests_total{endpoint=\"other\",status=\"404\"} 1",
            "# TYPE folddb_http_request_duration_seconds histogram",
            "folddb_http_request_duration_seconds_bucket{endpoint=\"/v1/api/sql\",le=\"0.005\"} 1",
            "folddb_apply_lag_entries 2",
            "folddb_live_max_connection_queue 4",
            "folddb_rocksdb_bytes{family=\"rows\"} 100",
            "folddb_raft_term 3",
            "folddb_raft_is_leader 1",
            "folddb_raft_replication_lag_entries{node=\"2\"} 12",
            "folddb_raft_snapshot_index 40",
            "folddb_raft_purged_index 30",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from:\n{text}"
            );
        }
    }
}
