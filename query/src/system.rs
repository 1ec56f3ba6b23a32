//! `system.*`: read-only views of the catalog and runtime state (API.md 3.7), for dba and
//! system callers. The same builders answer SHOW NAMESPACES, SHOW TABLES and DESCRIBE TABLE.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{SchemaProvider, Session, TableProvider};
use datafusion::common::{DataFusionError, Result as DfResult};
use datafusion::datasource::MemTable;
use datafusion::datasource::TableType;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use folddb_materializer::row::{scope_prefix, table_prefix};
use folddb_materializer::{DataType, HotStore, TableDef, Value, catalog};

use crate::convert::{build_column, field};
use crate::jobs::Jobs;
use crate::live::LiveSource;
use crate::node_info::{NodeInfo, VERSION};
use crate::provider::{Caller, View};
use crate::system_views as views;
pub use crate::system_views::schemas;
use folddb_materializer::cold::ColdStore;

/// Rows with named, typed columns: a small in-memory result.
#[derive(Debug, Default)]
pub struct Rows {
    pub columns: Vec<(&'static str, DataType)>,
    pub rows: Vec<Vec<Value>>,
}

impl Rows {
    pub fn new(columns: &[(&'static str, DataType)]) -> Rows {
        Rows {
            columns: columns.to_vec(),
            rows: Vec::new(),
        }
    }

    pub fn batch(&self) -> RecordBatch {
        let schema = Arc::new(Schema::new(
            self.columns
                .iter()
                .map(|(n, t)| field(n, *t, true, &[]))
                .collect::<Vec<_>>(),
        ));
        let arrays = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, (_, t))| build_column(*t, self.rows.iter().map(|r| &r[i])))
            .collect();
        RecordBatch::try_new(schema, arrays).expect("columns are built to the schema")
    }
}

pub(crate) fn text(s: impl Into<String>) -> Value {
    Value::Text(s.into())
}

pub(crate) fn opt_text(s: Option<&str>) -> Value {
    s.map_or(Value::Null, text)
}

pub(crate) fn ms_to_ts(ms: u64) -> Value {
    Value::Timestamp(ms as i64 * 1000)
}

pub(crate) fn data_type_text(t: DataType) -> String {
    match serde_json::to_value(t) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => format!("{t:?}"),
    }
}

pub(crate) type Res<T> = Result<T, folddb_materializer::Error>;

/// A system table's columns, in order.
pub type Cols = &'static [(&'static str, DataType)];

pub const NAMESPACES_COLS: Cols = &[
    ("namespace_id", DataType::Text),
    ("name", DataType::Text),
    ("description", DataType::Text),
    ("table_count", DataType::Int),
    ("created_at", DataType::Timestamp),
];

pub fn namespaces(store: &HotStore) -> Res<Rows> {
    let mut out = Rows::new(NAMESPACES_COLS);
    for ns in catalog::namespaces(store)? {
        let count = catalog::tables(store, Some(&ns.name))?.len();
        out.rows.push(vec![
            text(&ns.name),
            text(&ns.name),
            opt_text(ns.description.as_deref()),
            Value::Int(count as i32),
            ms_to_ts(ns.created_at_ms),
        ]);
    }
    Ok(out)
}

/// DESCRIBE TABLE: one row per column (API.md 3.3). DESCRIBE: the columns of `def`'s current version; a column with a vector index (among
/// `indexes`) says so in its comment (`vector index USING COSINE`).
pub fn describe(def: &TableDef, indexes: &[folddb_materializer::VectorIndexDef]) -> Rows {
    let mut out = Rows::new(&[
        ("column_name", DataType::Text),
        ("ordinal_position", DataType::Int),
        ("column_id", DataType::Int),
        ("data_type", DataType::Text),
        ("is_nullable", DataType::Boolean),
        ("is_primary_key", DataType::Boolean),
        ("column_default", DataType::Text),
        ("column_comment", DataType::Text),
        ("schema_version", DataType::Int),
    ]);
    for (i, c) in def.columns.iter().enumerate() {
        out.rows.push(vec![
            text(&c.name),
            Value::Int(i as i32 + 1),
            Value::Int(c.id as i32),
            text(data_type_text(c.data_type)),
            Value::Boolean(c.nullable),
            Value::Boolean(def.primary_key == Some(c.id)),
            c.default.as_ref().map_or(Value::Null, |d| text(d.sql())),
            indexes
                .iter()
                .find(|i| i.column == c.id)
                .map_or(Value::Null, |i| {
                    text(format!("vector index USING {}", i.metric.name()))
                }),
            Value::Int(def.schema_version as i32),
        ]);
    }
    let n = def.columns.len() as i32;
    let system_cols: &[(&str, DataType)] = if def.has_soft_delete() {
        &[("_seq", DataType::BigInt), ("_deleted", DataType::Boolean)]
    } else {
        &[("_seq", DataType::BigInt)]
    };
    for (i, (name, t)) in system_cols.iter().enumerate() {
        out.rows.push(vec![
            text(*name),
            Value::Int(n + i as i32 + 1),
            Value::Null,
            text(data_type_text(*t)),
            Value::Boolean(false),
            Value::Boolean(false),
            if *name == "_deleted" {
                text("FALSE")
            } else {
                Value::Null
            },
            text("system column"),
            Value::Int(def.schema_version as i32),
        ]);
    }
    out
}

/// DESCRIBE TABLE … HISTORY: one row per schema version.
pub fn history(store: &HotStore, def: &TableDef) -> Res<Rows> {
    let mut out = Rows::new(&[
        ("schema_version", DataType::Int),
        ("changed_at", DataType::Timestamp),
        ("change", DataType::Text),
        ("columns", DataType::Json),
    ]);
    for v in catalog::table_history(store, def.id)? {
        let cols: Vec<serde_json::Value> = v
            .columns
            .iter()
            .map(|c| serde_json::json!({"name": c.name, "data_type": c.data_type, "nullable": c.nullable}))
            .collect();
        out.rows.push(vec![
            Value::Int(v.schema_version as i32),
            ms_to_ts(v.updated_at_ms),
            text(&v.change),
            Value::Json(serde_json::Value::Array(cols).to_string()),
        ]);
    }
    Ok(out)
}

/// Hot row versions of a table (all owners), tombstones included.
pub fn table_row_count(store: &HotStore, def: &TableDef) -> Res<u64> {
    store.count_prefix(def.family(), &table_prefix(def.id))
}

/// The hot row versions of `def` that `scope` owns (a user's, for USER and STREAM tables),
/// counted without reading them into memory.
pub fn scope_row_count(store: &HotStore, def: &TableDef, scope: &str) -> Res<u64> {
    store.count_prefix(def.family(), &scope_prefix(def.id, scope))
}

pub const STATS_COLS: Cols = &[
    ("metric_name", DataType::Text),
    ("metric_value", DataType::Text),
];

/// `system.stats`: FoldDB's own figures, then the reference's names for what FoldDB also
/// knows (`total_tables`, `schema_cache_size`: the table definitions a query resolves
/// against, `server_workers_effective`, `max_connections`: per client address, 0 when
/// unlimited, …).
pub fn stats(store: &HotStore, node: &NodeInfo, live: Option<&dyn LiveSource>) -> Res<Rows> {
    // First, so that what this statement spends counting rows is after the reading: a
    // benchmark reading it before and after a load measures the load and one count.
    let cpu_ms = process_cpu_ms();
    let mut out = Rows::new(STATS_COLS);
    let tables = catalog::tables(store, None)?;
    let mut rows = 0;
    for t in &tables {
        rows += table_row_count(store, t)?;
    }
    let applied = store.applied_index()?.map_or(0, |i| i.0);
    let (rss, peak) = process_memory();
    for (k, v) in [
        ("namespaces", catalog::namespaces(store)?.len() as u64),
        ("tables", tables.len() as u64),
        ("users", catalog::users(store)?.len() as u64),
        ("hot_row_versions", rows),
        ("applied_index", applied),
        ("process_cpu_ms", cpu_ms),
        ("process_rss_bytes", rss),
        ("process_peak_rss_bytes", peak),
    ] {
        out.rows.push(vec![text(k), text(v.to_string())]);
    }
    let namespaces = catalog::namespaces(store)?.len();
    let users = catalog::users(store)?.len();
    let storages = catalog::storages(store)?.len();
    let subscriptions = live.map_or(0, |l| l.list().len());
    let uptime_s = crate::engine::now_ms().saturating_sub(node.started_ms) / 1000;
    for (k, v) in [
        ("total_namespaces", namespaces.to_string()),
        ("total_tables", tables.len().to_string()),
        ("total_users", users.to_string()),
        ("total_storages", storages.to_string()),
        ("total_live_queries", subscriptions.to_string()),
        ("active_subscriptions", subscriptions.to_string()),
        ("schema_cache_size", tables.len().to_string()),
        ("server_workers_effective", node.workers.to_string()),
        ("max_connections", node.max_connections.to_string()),
        ("server_uptime_seconds", uptime_s.to_string()),
        ("node_id", node.node_id.to_string()),
        ("server_version", VERSION.to_owned()),
        ("cluster_mode", "false".to_owned()),
        ("cluster_id", node.cluster_id.clone()),
    ] {
        out.rows.push(vec![text(k), text(v)]);
    }
    Ok(out)
}

/// CPU time this server process has spent (every thread, user and system), ms.
pub fn process_cpu_ms() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    let ms = i128::from(t.tv_sec) * 1000 + i128::from(t.tv_nsec) / 1_000_000;
    u64::try_from(ms).unwrap_or(0)
}

/// This server process's resident memory now and at its peak, bytes (`VmRSS` and `VmHWM`
/// of `/proc/self/status`; 0 where the system does not say).
pub fn process_memory() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = |field: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .map_or(0, |k| k * 1024)
    };
    (kib("VmRSS:"), kib("VmHWM:"))
}

/// `system.users`, in API.md 3.7's column order. The hash is a credential: it is shown to
/// nobody, only whether there is one. Lockout counters live in the serving node's memory,
/// so the persisted columns for them are NULL.
pub const USERS_COLS: Cols = &[
    ("user_id", DataType::Text),
    ("password_hash", DataType::Text),
    ("role", DataType::Text),
    ("email", DataType::Text),
    ("auth_type", DataType::Text),
    ("auth_data", DataType::Json),
    ("storage_mode", DataType::Text),
    ("storage_id", DataType::Text),
    ("failed_login_attempts", DataType::Int),
    ("locked_until", DataType::Timestamp),
    ("last_login_at", DataType::Timestamp),
    ("created_at", DataType::Timestamp),
    ("updated_at", DataType::Timestamp),
    ("last_seen", DataType::Timestamp),
    ("deleted_at", DataType::Timestamp),
];

/// `system.users`, in API.md 3.7's column order. The hash is a credential: it is shown to
/// nobody, only whether there is one. Lockout counters live in the serving node's memory,
/// so the persisted columns for them are NULL.
pub fn users(store: &HotStore) -> Res<Rows> {
    let mut out = Rows::new(USERS_COLS);
    for u in catalog::users(store)? {
        out.rows.push(vec![
            text(&u.id),
            if u.password_hash.is_empty() {
                Value::Null
            } else {
                text("***")
            },
            text(u.role.name()),
            opt_text(u.email.as_deref()),
            text(&u.auth_type),
            Value::Null,
            text("table"),
            text("local"),
            Value::Null,
            Value::Null,
            Value::Null,
            ms_to_ts(u.created_at_ms),
            ms_to_ts(u.updated_at_ms),
            Value::Null,
            u.deleted_at_ms.map_or(Value::Null, ms_to_ts),
        ]);
    }
    Ok(out)
}

/// `system.audit_log` (API.md 3.7), oldest first.
pub const AUDIT_LOG_COLS: Cols = &[
    ("audit_id", DataType::Text),
    ("timestamp", DataType::Timestamp),
    ("actor_user_id", DataType::Text),
    ("action", DataType::Text),
    ("target", DataType::Text),
    ("details", DataType::Text),
    ("ip_address", DataType::Text),
    ("subject_user_id", DataType::Text),
];

/// `system.audit_log` (API.md 3.7), oldest first.
pub fn audit_log(store: &HotStore) -> Res<Rows> {
    let mut out = Rows::new(AUDIT_LOG_COLS);
    for a in catalog::audit_log(store)? {
        out.rows.push(vec![
            text(a.id.to_string()),
            ms_to_ts(a.at_ms),
            text(&a.actor),
            text(&a.action),
            text(&a.target),
            opt_text(a.details.as_deref()),
            opt_text(a.ip.as_deref()),
            opt_text(a.subject.as_deref()),
        ]);
    }
    Ok(out)
}

pub const TOPICS_COLS: Cols = &[
    ("topic_id", DataType::Text),
    ("name", DataType::Text),
    ("alias", DataType::Text),
    ("partitions", DataType::Int),
    ("retention_seconds", DataType::BigInt),
    ("retention_max_bytes", DataType::BigInt),
    ("routes", DataType::Json),
    ("created_at", DataType::Timestamp),
    ("updated_at", DataType::Timestamp),
];

/// `system.topics` (API.md 3.7): every topic with its routes as JSON.
pub fn topics(store: &HotStore) -> Res<Rows> {
    let mut out = Rows::new(TOPICS_COLS);
    for t in folddb_materializer::topics::topics(store)? {
        let routes: Vec<serde_json::Value> = t
            .routes
            .iter()
            .map(|r| {
                serde_json::json!({
                    "table": r.table_name,
                    "op": r.op.name(),
                    "payload": r.payload.name(),
                    "where": r.filter_sql,
                })
            })
            .collect();
        out.rows.push(vec![
            text(&t.id),
            text(&t.id),
            Value::Null,
            Value::Int(t.partitions as i32),
            Value::BigInt(t.retention_seconds as i64),
            Value::BigInt(t.retention_max_bytes as i64),
            Value::Json(serde_json::Value::Array(routes).to_string()),
            ms_to_ts(t.created_at_ms),
            ms_to_ts(t.updated_at_ms),
        ]);
    }
    Ok(out)
}

pub const TOPIC_OFFSETS_COLS: Cols = &[
    ("topic_id", DataType::Text),
    ("group_id", DataType::Text),
    ("partition_id", DataType::Int),
    ("last_acked_offset", DataType::BigInt),
    ("updated_at", DataType::Timestamp),
    ("lag", DataType::BigInt),
];

/// `system.topic_offsets` (API.md 3.7): each group's acknowledged offset per partition,
/// with its lag (messages after it).
pub fn topic_offsets(store: &HotStore) -> Res<Rows> {
    use folddb_materializer::topics;
    let mut out = Rows::new(TOPIC_OFFSETS_COLS);
    for t in topics::topics(store)? {
        for (group, partition, offset) in topics::group_offsets(store, &t.id)? {
            let head = topics::head(store, &t.id, partition)?;
            out.rows.push(vec![
                text(&t.id),
                text(group),
                Value::Int(partition as i32),
                Value::BigInt(offset.last_acked as i64),
                ms_to_ts(offset.updated_at_ms),
                Value::BigInt(head.saturating_sub(offset.last_acked + 1) as i64),
            ]);
        }
    }
    Ok(out)
}

/// Every `system` table and its columns.
const SYSTEM_TABLES: &[(&str, Cols)] = &[
    ("namespaces", NAMESPACES_COLS),
    ("schemas", views::SCHEMAS),
    ("tables", views::TABLES),
    ("columns", views::COLUMNS),
    ("stats", STATS_COLS),
    ("users", USERS_COLS),
    ("audit_log", AUDIT_LOG_COLS),
    ("live", LIVE_COLS),
    ("jobs", JOBS_COLS),
    ("job_nodes", views::JOB_NODES),
    ("storages", STORAGES_COLS),
    ("manifest", MANIFEST_COLS),
    ("settings", views::SETTINGS),
    ("server_logs", views::SERVER_LOGS),
    ("cluster", views::CLUSTER),
    ("cluster_groups", views::CLUSTER_GROUPS),
    ("datatypes", views::DATATYPES),
    ("topics", TOPICS_COLS),
    ("topic_offsets", TOPIC_OFFSETS_COLS),
];

/// What the `system` tables are read from, for one caller.
#[derive(Debug)]
struct Sources {
    view: View,
    live: Option<Arc<dyn LiveSource>>,
    jobs: Option<Arc<Jobs>>,
    node: Arc<NodeInfo>,
    caller: Caller,
}

impl Sources {
    fn rows(&self, name: &str) -> Result<Rows, String> {
        let store = self.view.store().as_ref();
        let cold = self.view.cold().map(Arc::as_ref);
        let node = self.node.as_ref();
        let text_err = |e: folddb_materializer::Error| e.to_string();
        match name {
            "namespaces" => namespaces(store).map_err(text_err),
            "schemas" => views::schemas(store, None, false).map_err(text_err),
            "tables" => views::tables(store).map_err(text_err),
            "columns" => views::columns(store).map_err(text_err),
            "stats" => stats(store, node, self.live.as_deref()).map_err(text_err),
            "users" => users(store).map_err(text_err),
            "audit_log" => audit_log(store).map_err(text_err),
            "live" => Ok(live(self.live.as_deref())),
            "jobs" => jobs(store, self.jobs.as_deref()).map_err(text_err),
            "job_nodes" => jobs(store, self.jobs.as_deref())
                .map(|j| views::job_nodes(&j, node))
                .map_err(text_err),
            "storages" => storages(store, cold, self.caller.role.is_admin()),
            "manifest" => manifest(store, cold),
            "settings" => Ok(views::settings(node)),
            "server_logs" => Ok(views::server_logs(node)),
            "cluster" => views::cluster(store, node).map_err(text_err),
            "cluster_groups" => views::cluster_groups(store, node).map_err(text_err),
            "datatypes" => Ok(views::datatypes()),
            "topics" => topics(store).map_err(text_err),
            "topic_offsets" => topic_offsets(store).map_err(text_err),
            other => Err(format!("system.{other} does not exist")),
        }
    }
}

/// The `system` schema.
#[derive(Debug)]
pub struct SystemSchema {
    sources: Arc<Sources>,
}

impl SystemSchema {
    pub fn new(
        view: View,
        live: Option<Arc<dyn LiveSource>>,
        jobs: Option<Arc<Jobs>>,
        node: Arc<NodeInfo>,
        caller: Caller,
    ) -> SystemSchema {
        SystemSchema {
            sources: Arc::new(Sources {
                view,
                live,
                jobs,
                node,
                caller,
            }),
        }
    }
}

/// One `system` table: its columns are known up front (listing `information_schema`
/// computes nothing); its rows are read when a query scans it.
#[derive(Debug)]
struct SystemTable {
    name: &'static str,
    schema: SchemaRef,
    sources: Arc<Sources>,
}

#[async_trait]
impl TableProvider for SystemTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let rows = self
            .sources
            .rows(self.name)
            .map_err(DataFusionError::Execution)?;
        let table = MemTable::try_new(self.schema.clone(), vec![vec![rows.batch()]])?;
        table.scan(state, projection, filters, limit).await
    }
}

/// `system.jobs` (API.md 3.7): the jobs applied (from the catalog: the same on every node
/// and after restarts) and the ones this node has queued, running, failed or cancelled.
pub const JOBS_COLS: Cols = &[
    ("job_id", DataType::Text),
    ("job_type", DataType::Text),
    ("status", DataType::Text),
    ("parameters", DataType::Json),
    ("message", DataType::Text),
    ("rows_affected", DataType::BigInt),
    ("log_index", DataType::BigInt),
    ("created_at", DataType::Timestamp),
    ("started_at", DataType::Timestamp),
    ("finished_at", DataType::Timestamp),
];

/// `system.jobs` (API.md 3.7): the jobs applied (from the catalog: the same on every node
/// and after restarts) and the ones this node has queued, running, failed or cancelled.
pub fn jobs(store: &HotStore, pending: Option<&Jobs>) -> Res<Rows> {
    let mut out = Rows::new(JOBS_COLS);
    let local = pending.map(Jobs::list).unwrap_or_default();
    let params = |target: &str| Value::Json(serde_json::json!({ "table": target }).to_string());
    let opt_ts = |ms: Option<u64>| ms.map_or(Value::Null, ms_to_ts);
    for r in catalog::jobs(store)? {
        let seen = local.iter().find(|j| j.id == r.id);
        // Committed, but this node may still be finishing it (a flush's trim of the hot
        // tier): completed once the whole job is.
        let status = seen
            .filter(|j| j.finished_ms.is_none())
            .map_or("completed", |j| j.status.name());
        out.rows.push(vec![
            text(&r.id),
            text(r.kind.name()),
            text(status),
            params(&r.target),
            text(&r.message),
            Value::BigInt(r.rows as i64),
            Value::BigInt(r.index as i64),
            ms_to_ts(seen.map_or(r.at_ms, |j| j.created_ms)),
            opt_ts(seen.and_then(|j| j.started_ms).or(Some(r.at_ms))),
            opt_ts(seen.and_then(|j| j.finished_ms).or(Some(r.at_ms))),
        ]);
    }
    let applied: std::collections::HashSet<String> =
        out.rows.iter().map(|r| r[0].plain()).collect();
    for j in local.iter().filter(|j| !applied.contains(&j.id)) {
        out.rows.push(vec![
            text(&j.id),
            text(j.kind.name()),
            text(j.status.name()),
            params(&j.target),
            text(&j.message),
            Value::Null,
            Value::Null,
            ms_to_ts(j.created_ms),
            opt_ts(j.started_ms),
            opt_ts(j.finished_ms),
        ]);
    }
    Ok(out)
}

/// `system.storages` / SHOW STORAGES: `local`, then the created storages. Credentials show
/// only to `admin` callers, and as `***` otherwise.
pub const STORAGES_COLS: Cols = &[
    ("storage_id", DataType::Text),
    ("storage_name", DataType::Text),
    ("description", DataType::Text),
    ("storage_type", DataType::Text),
    ("base_directory", DataType::Text),
    ("credentials", DataType::Text),
    ("config_json", DataType::Json),
    ("shared_tables_template", DataType::Text),
    ("user_tables_template", DataType::Text),
    ("created_at", DataType::Timestamp),
    ("updated_at", DataType::Timestamp),
];

/// `system.storages` / SHOW STORAGES: `local`, then the created storages. Credentials show
/// only to `admin` callers, and as `***` otherwise.
pub fn storages(store: &HotStore, cold: Option<&ColdStore>, admin: bool) -> Result<Rows, String> {
    let mut out = Rows::new(STORAGES_COLS);
    // The built-in storage is as old as the database: its first user.
    let first_user_ms = catalog::users(store)
        .map_err(|e| e.to_string())?
        .iter()
        .map(|u| u.created_at_ms)
        .min();
    for mut def in catalog::storages(store).map_err(|e| e.to_string())? {
        if def.id == folddb_materializer::LOCAL_STORAGE && def.created_at_ms == 0 {
            def.created_at_ms = first_user_ms.unwrap_or(0);
            def.updated_at_ms = def.created_at_ms;
        }
        let base = if def.id == folddb_materializer::LOCAL_STORAGE {
            cold.map(|c| c.root().display().to_string())
                .unwrap_or_default()
        } else {
            def.base_directory.clone()
        };
        let credentials = match &def.credentials {
            Some(c) if admin => text(c),
            Some(_) => text("***"),
            None => Value::Null,
        };
        let at = |ms: u64| if ms == 0 { Value::Null } else { ms_to_ts(ms) };
        out.rows.push(vec![
            text(&def.id),
            text(&def.name),
            def.description.as_deref().map_or(Value::Null, text),
            text(def.kind.name()),
            text(base),
            credentials,
            Value::Json(def.config.clone()),
            text(&def.shared_tables_template),
            text(&def.user_tables_template),
            at(def.created_at_ms),
            at(def.updated_at_ms),
        ]);
    }
    Ok(out)
}

/// `system.manifest` / SHOW MANIFEST: one row per cold segment of every table scope.
pub const MANIFEST_COLS: Cols = &[
    ("namespace_id", DataType::Text),
    ("table_name", DataType::Text),
    ("user_id", DataType::Text),
    ("segment", DataType::Text),
    ("path", DataType::Text),
    ("row_count", DataType::BigInt),
    ("tombstones", DataType::BigInt),
    ("size_bytes", DataType::BigInt),
    ("min_seq", DataType::BigInt),
    ("max_seq", DataType::BigInt),
    ("schema_version", DataType::Int),
    ("log_index", DataType::BigInt),
    ("column_stats", DataType::Json),
];

/// `system.manifest` / SHOW MANIFEST: one row per cold segment of every table scope.
pub fn manifest(store: &HotStore, cold: Option<&ColdStore>) -> Result<Rows, String> {
    let mut out = Rows::new(MANIFEST_COLS);
    let Some(cold) = cold else {
        return Ok(out);
    };
    for def in catalog::tables(store, None).map_err(|e| e.to_string())? {
        if def.kind == folddb_materializer::TableKind::Stream {
            continue;
        }
        let Some(storage) =
            catalog::storage(store, &def.options.storage_id).map_err(|e| e.to_string())?
        else {
            continue;
        };
        for scope in cold
            .scopes_of(store, &storage, &def)
            .map_err(|e| e.to_string())?
        {
            let m = scope.manifest();
            for seg in &m.segments {
                out.rows.push(vec![
                    text(&def.namespace),
                    text(&def.name),
                    if m.scope.is_empty() {
                        Value::Null
                    } else {
                        text(&m.scope)
                    },
                    text(&seg.file),
                    text(scope.locate(&seg.file)),
                    Value::BigInt(seg.rows as i64),
                    Value::BigInt(seg.tombstones as i64),
                    Value::BigInt(seg.bytes as i64),
                    Value::BigInt(seg.min_seq),
                    Value::BigInt(seg.max_seq),
                    Value::Int(seg.schema_version as i32),
                    Value::BigInt(seg.index as i64),
                    Value::Json(serde_json::to_string(&seg.stats).unwrap_or_default()),
                ]);
            }
        }
    }
    Ok(out)
}

/// `system.live` (API.md 3.7): one row per open subscription on this node.
pub const LIVE_COLS: Cols = &[
    ("live_id", DataType::Text),
    ("connection_id", DataType::Text),
    ("subscription_id", DataType::Text),
    ("namespace_id", DataType::Text),
    ("table_name", DataType::Text),
    ("user_id", DataType::Text),
    ("query", DataType::Text),
    ("options", DataType::Json),
    ("status", DataType::Text),
    ("created_at", DataType::Timestamp),
    ("last_update", DataType::Timestamp),
    ("changes", DataType::BigInt),
    ("node_id", DataType::BigInt),
    ("last_ping_at", DataType::Timestamp),
];

/// `system.live` (API.md 3.7): one row per open subscription on this node.
pub fn live(source: Option<&dyn LiveSource>) -> Rows {
    let mut out = Rows::new(LIVE_COLS);
    for l in source.map(|s| s.list()).unwrap_or_default() {
        out.rows.push(vec![
            text(&l.live_id),
            text(&l.connection_id),
            text(&l.subscription_id),
            text(&l.namespace),
            text(&l.table),
            text(&l.user_id),
            text(&l.query),
            Value::Json(l.options),
            text("active"),
            ms_to_ts(l.created_at_ms),
            ms_to_ts(l.last_update_ms),
            Value::BigInt(l.changes as i64),
            Value::BigInt(l.node_id as i64),
            Value::Null,
        ]);
    }
    out
}

#[async_trait]
impl SchemaProvider for SystemSchema {
    fn table_names(&self) -> Vec<String> {
        SYSTEM_TABLES.iter().map(|(n, _)| (*n).to_owned()).collect()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let Some((name, cols)) = SYSTEM_TABLES.iter().find(|(n, _)| *n == name) else {
            return Ok(None);
        };
        Ok(Some(Arc::new(SystemTable {
            name,
            schema: Rows::new(cols).batch().schema(),
            sources: self.sources.clone(),
        })))
    }

    fn table_exist(&self, name: &str) -> bool {
        SYSTEM_TABLES.iter().any(|(n, _)| *n == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_cpu_time_and_memory_are_read() {
        let before = process_cpu_ms();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let mut x = 0u64;
        // Work until the clock has moved 20 ms past `before`: it never does if the reading
        // is broken, and the deadline then fails the test.
        while process_cpu_ms() < before + 20 {
            assert!(std::time::Instant::now() < deadline, "CPU time never moved");
            for i in 0..10_000u64 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
            }
        }
        assert!(process_cpu_ms() >= before + 20);
        let (rss, peak) = process_memory();
        if cfg!(target_os = "linux") {
            assert!(rss > 0 && peak >= rss, "{rss} {peak}");
        }
    }
}
