//! The `system` views that describe schemas, settings and the node (API.md 3.7), in the
//! reference's column order: `system.schemas` (every schema version), `system.tables`,
//! `system.columns`, `system.job_nodes`, `system.settings`, `system.server_logs`,
//! `system.cluster`, `system.cluster_groups` and `system.datatypes`.

use folddb_materializer::{DataType, HotStore, TableDef, Value, catalog};
use serde_json::json;

use crate::node_info::{NodeInfo, VERSION};
use crate::system::{Cols, Res, Rows, data_type_text, ms_to_ts, opt_text, text};

pub const SCHEMAS: Cols = &[
    ("table_id", DataType::Text),
    ("table_name", DataType::Text),
    ("namespace_id", DataType::Text),
    ("table_type", DataType::Text),
    ("created_at", DataType::Timestamp),
    ("schema_version", DataType::Int),
    ("columns", DataType::Json),
    ("table_comment", DataType::Text),
    ("updated_at", DataType::Timestamp),
    ("options", DataType::Json),
    ("access_level", DataType::Text),
    ("is_latest", DataType::Boolean),
    ("storage_id", DataType::Text),
    ("use_user_storage", DataType::Boolean),
];

/// A table's options as JSON (`system.schemas.options`, `system.tables.options`).
fn options_json(t: &TableDef) -> String {
    let o = &t.options;
    json!({
        "storage_id": o.storage_id,
        "use_user_storage": o.use_user_storage,
        "flush_policy": o.flush_policy,
        "deleted_retention_hours": o.deleted_retention_hours,
        "ttl_seconds": o.ttl_seconds,
        "access_level": o.access_level.map(|a| a.name()),
    })
    .to_string()
}

/// A version's columns as JSON (`system.schemas.columns`).
fn columns_json(t: &TableDef) -> String {
    let cols: Vec<_> = t
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            json!({
                "column_id": c.id,
                "column_name": c.name,
                "column_comment": null,
                "data_type": c.data_type,
                "default_value": c.default.as_ref().map(|d| d.sql()),
                "ordinal_position": i + 1,
                "is_nullable": c.nullable,
                "is_primary_key": t.primary_key == Some(c.id),
                "is_unique": c.unique,
            })
        })
        .collect();
    serde_json::Value::Array(cols).to_string()
}

/// `system.schemas` (every schema version of every table, `is_latest` on the current
/// one) and SHOW TABLES (`latest_only`, of one namespace or all).
pub fn schemas(store: &HotStore, namespace: Option<&str>, latest_only: bool) -> Res<Rows> {
    let mut out = Rows::new(SCHEMAS);
    for t in catalog::tables(store, namespace)? {
        let mut versions = if latest_only {
            Vec::new()
        } else {
            catalog::table_history(store, t.id)?
        };
        versions.retain(|v| v.schema_version != t.schema_version);
        versions.push(t.clone());
        for v in &versions {
            out.rows.push(vec![
                text(t.qualified_name()),
                text(&t.name),
                text(&t.namespace),
                text(t.kind.name()),
                ms_to_ts(t.created_at_ms),
                Value::Int(v.schema_version as i32),
                Value::Json(columns_json(v)),
                Value::Null,
                ms_to_ts(v.updated_at_ms),
                Value::Json(options_json(v)),
                opt_text(v.options.access_level.map(|a| a.name())),
                Value::Boolean(v.schema_version == t.schema_version),
                text(&v.options.storage_id),
                Value::Boolean(v.options.use_user_storage),
            ]);
        }
    }
    Ok(out)
}

pub const TABLES: Cols = &[
    ("namespace_id", DataType::Text),
    ("table_name", DataType::Text),
    ("table_type", DataType::Text),
    ("storage_id", DataType::Text),
    ("version", DataType::BigInt),
    ("options", DataType::Text),
    ("comment", DataType::Text),
    ("updated_at", DataType::Timestamp),
    ("created_at", DataType::Timestamp),
];

/// `system.tables`: the current version of every table.
pub fn tables(store: &HotStore) -> Res<Rows> {
    let mut out = Rows::new(TABLES);
    for t in catalog::tables(store, None)? {
        // The table's options, and its vector indexes: `{"column": "COSINE", …}`.
        let mut options: serde_json::Value =
            serde_json::from_str(&options_json(&t)).unwrap_or_default();
        let indexes: serde_json::Map<String, serde_json::Value> =
            catalog::vector_indexes(store, t.id)?
                .into_iter()
                .filter_map(|i| {
                    let column = t.column_by_id(i.column)?;
                    Some((column.name.clone(), json!(i.metric.name())))
                })
                .collect();
        if let Some(o) = options.as_object_mut() {
            o.insert("vector_indexes".into(), serde_json::Value::Object(indexes));
        }
        out.rows.push(vec![
            text(&t.namespace),
            text(&t.name),
            text(t.kind.name()),
            text(&t.options.storage_id),
            Value::BigInt(i64::from(t.schema_version)),
            text(options.to_string()),
            Value::Null,
            ms_to_ts(t.updated_at_ms),
            ms_to_ts(t.created_at_ms),
        ]);
    }
    Ok(out)
}

pub const COLUMNS: Cols = &[
    ("namespace_id", DataType::Text),
    ("table_name", DataType::Text),
    ("version", DataType::BigInt),
    ("column_id", DataType::BigInt),
    ("column_name", DataType::Text),
    ("comment", DataType::Text),
    ("data_type", DataType::Text),
    ("default_value", DataType::Text),
    ("ordinal", DataType::BigInt),
    ("nullable", DataType::Boolean),
    ("primary_key", DataType::Boolean),
    ("primary_key_pos", DataType::BigInt),
];

/// `system.columns`: the columns of every table's current version.
pub fn columns(store: &HotStore) -> Res<Rows> {
    let mut out = Rows::new(COLUMNS);
    for t in catalog::tables(store, None)? {
        for (i, c) in t.columns.iter().enumerate() {
            let pk = t.primary_key == Some(c.id);
            out.rows.push(vec![
                text(&t.namespace),
                text(&t.name),
                Value::BigInt(i64::from(t.schema_version)),
                Value::BigInt(i64::from(c.id)),
                text(&c.name),
                Value::Null,
                text(data_type_text(c.data_type)),
                c.default.as_ref().map_or(Value::Null, |d| text(d.sql())),
                Value::BigInt(i as i64 + 1),
                Value::Boolean(c.nullable),
                Value::Boolean(pk),
                if pk { Value::BigInt(1) } else { Value::Null },
            ]);
        }
    }
    Ok(out)
}

pub const JOB_NODES: Cols = &[
    ("job_id", DataType::Text),
    ("node_id", DataType::BigInt),
    ("status", DataType::Text),
    ("error_message", DataType::Text),
    ("created_at", DataType::Timestamp),
    ("started_at", DataType::Timestamp),
    ("finished_at", DataType::Timestamp),
    ("updated_at", DataType::Timestamp),
];

/// `system.job_nodes`: where each job of `system.jobs` ran (a single node runs them all).
pub fn job_nodes(jobs: &Rows, node: &NodeInfo) -> Rows {
    let mut out = Rows::new(JOB_NODES);
    let col = |name: &str| jobs.columns.iter().position(|(n, _)| *n == name);
    let (Some(id), Some(status), Some(message), Some(created), Some(started), Some(finished)) = (
        col("job_id"),
        col("status"),
        col("message"),
        col("created_at"),
        col("started_at"),
        col("finished_at"),
    ) else {
        return out;
    };
    for r in &jobs.rows {
        let failed = matches!(&r[status], Value::Text(s) if s == "failed");
        let updated = [&r[finished], &r[started], &r[created]]
            .into_iter()
            .find(|v| !v.is_null())
            .cloned()
            .unwrap_or(Value::Null);
        out.rows.push(vec![
            r[id].clone(),
            Value::BigInt(i64::from(node.node_id)),
            r[status].clone(),
            if failed {
                r[message].clone()
            } else {
                Value::Null
            },
            r[created].clone(),
            r[started].clone(),
            r[finished].clone(),
            updated,
        ]);
    }
    out
}

pub const SETTINGS: Cols = &[
    ("name", DataType::Text),
    ("value", DataType::Text),
    ("description", DataType::Text),
    ("category", DataType::Text),
];

/// `system.settings`: the configuration the server runs with (secrets left out).
pub fn settings(node: &NodeInfo) -> Rows {
    let mut out = Rows::new(SETTINGS);
    for s in &node.settings {
        out.rows.push(vec![
            text(&s.name),
            text(&s.value),
            text(&s.description),
            text(&s.category),
        ]);
    }
    out
}

pub const SERVER_LOGS: Cols = &[
    ("timestamp", DataType::Text),
    ("level", DataType::Text),
    ("thread", DataType::Text),
    ("target", DataType::Text),
    ("line", DataType::BigInt),
    ("message", DataType::Text),
];

/// `system.server_logs`: the server's most recent log lines, oldest first.
pub fn server_logs(node: &NodeInfo) -> Rows {
    let mut out = Rows::new(SERVER_LOGS);
    for l in node.logs.as_ref().map(|l| l.recent()).unwrap_or_default() {
        out.rows.push(vec![
            text(l.timestamp),
            text(l.level),
            opt_text(l.thread.as_deref()),
            opt_text(l.target.as_deref()),
            l.line.map_or(Value::Null, |n| Value::BigInt(i64::from(n))),
            text(l.message),
        ]);
    }
    out
}

pub const CLUSTER: Cols = &[
    ("cluster_id", DataType::Text),
    ("node_id", DataType::BigInt),
    ("role", DataType::Text),
    ("status", DataType::Text),
    ("rpc_addr", DataType::Text),
    ("api_addr", DataType::Text),
    ("is_self", DataType::Boolean),
    ("is_leader", DataType::Boolean),
    ("groups_leading", DataType::Int),
    ("total_groups", DataType::Int),
    ("current_term", DataType::BigInt),
    ("last_applied_log", DataType::BigInt),
    ("leader_last_log_index", DataType::BigInt),
    ("snapshot_index", DataType::BigInt),
    ("catchup_progress_pct", DataType::SmallInt),
    ("replication_lag", DataType::BigInt),
    ("hostname", DataType::Text),
    ("version", DataType::Text),
    ("memory_mb", DataType::BigInt),
    ("memory_usage_mb", DataType::BigInt),
    ("cpu_usage_percent", DataType::Float),
    ("uptime_seconds", DataType::BigInt),
    ("uptime_human", DataType::Text),
    ("os", DataType::Text),
    ("arch", DataType::Text),
];

fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
}

fn total_memory_mb() -> Option<i64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: i64 = info
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024)
}

fn human_duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

/// `system.cluster`: one row per member. A single node is its own leader, never lagging;
/// in a cluster the roles come from raft, the lag from the leader's replication state, and
/// a member's host, memory and CPU are known only on its own row.
pub fn cluster(store: &HotStore, node: &NodeInfo) -> Res<Rows> {
    let mut out = Rows::new(CLUSTER);
    let applied = store.applied_index()?.map_or(0, |i| i.0);
    let self_id = u64::from(node.node_id);
    let state = match &node.cluster {
        Some(view) => view.state(),
        None => crate::node_info::ClusterState {
            members: vec![crate::node_info::Member {
                node_id: self_id,
                api_addr: node.api_addr.clone(),
                is_leader: true,
                voter: true,
                lag: Some(0),
            }],
            current_term: 1,
            last_applied: applied,
            last_log_index: applied,
        },
    };
    let uptime_ms = crate::engine::now_ms().saturating_sub(node.started_ms);
    let (rss, _) = crate::system::process_memory();
    let cpu_pct = if uptime_ms == 0 {
        0.0
    } else {
        crate::system::process_cpu_ms() as f32 * 100.0 / uptime_ms as f32
    };
    let leader_last = state
        .members
        .iter()
        .any(|m| m.is_leader && m.node_id == self_id)
        .then_some(state.last_log_index as i64);
    let single = node.cluster.is_none();
    for m in &state.members {
        let is_self = m.node_id == self_id;
        let mine = |v: Value| if is_self { v } else { Value::Null };
        out.rows.push(vec![
            text(&node.cluster_id),
            Value::BigInt(m.node_id as i64),
            text(match (m.is_leader, m.voter) {
                (true, _) => "leader",
                (false, true) => "follower",
                (false, false) => "learner",
            }),
            text("active"),
            // Peers call each other on the API port; a single node takes no RPCs.
            text(if single { "" } else { m.api_addr.as_str() }),
            text(&m.api_addr),
            Value::Boolean(is_self),
            Value::Boolean(m.is_leader),
            Value::Int(i32::from(m.is_leader)),
            Value::Int(1),
            if single {
                Value::Null
            } else {
                Value::BigInt(state.current_term as i64)
            },
            mine(Value::BigInt(state.last_applied as i64)),
            leader_last.map_or(Value::Null, Value::BigInt),
            Value::Null,
            m.lag.map_or(Value::Null, |l| {
                Value::SmallInt(if l == 0 { 100 } else { 0 })
            }),
            m.lag.map_or(Value::Null, |l| Value::BigInt(l as i64)),
            mine(opt_text(hostname().as_deref())),
            text(VERSION),
            mine(total_memory_mb().map_or(Value::Null, Value::BigInt)),
            mine(Value::BigInt((rss / (1024 * 1024)) as i64)),
            mine(Value::Float(cpu_pct)),
            mine(Value::BigInt((uptime_ms / 1000) as i64)),
            mine(text(human_duration(uptime_ms / 1000))),
            mine(text(std::env::consts::OS)),
            mine(text(std::env::consts::ARCH)),
        ]);
    }
    Ok(out)
}

pub const CLUSTER_GROUPS: Cols = &[
    ("group_id", DataType::BigInt),
    ("cluster_id", DataType::Text),
    ("node_id", DataType::BigInt),
    ("group_type", DataType::Text),
    ("current_term", DataType::BigInt),
    ("vote", DataType::Json),
    ("last_log_index", DataType::BigInt),
    ("last_applied", DataType::BigInt),
    ("snapshot", DataType::BigInt),
    ("purged", DataType::BigInt),
    ("committed", DataType::BigInt),
    ("state", DataType::Text),
    ("current_leader", DataType::BigInt),
    ("millis_since_quorum_ack", DataType::BigInt),
];

/// `system.cluster_groups`: FoldDB has one log, so one group, which a single node leads.
pub fn cluster_groups(store: &HotStore, node: &NodeInfo) -> Res<Rows> {
    let mut out = Rows::new(CLUSTER_GROUPS);
    let applied = store.applied_index()?.map_or(0, |i| i.0) as i64;
    let id = i64::from(node.node_id);
    out.rows.push(vec![
        Value::BigInt(0),
        text(&node.cluster_id),
        Value::BigInt(id),
        text("log"),
        Value::Null,
        Value::Null,
        Value::BigInt(applied),
        Value::BigInt(applied),
        Value::Null,
        Value::Null,
        Value::BigInt(applied),
        text("Leader"),
        Value::BigInt(id),
        Value::BigInt(0),
    ]);
    Ok(out)
}

pub const DATATYPES: Cols = &[
    ("arrow_type", DataType::Text),
    ("kalam_type", DataType::Text),
    ("sql_name", DataType::Text),
    ("description", DataType::Text),
];

/// Every column type: the SQL name it is declared with, how it is stored (Arrow) and named
/// in system tables and DESCRIBE.
const TYPES: &[(DataType, &str, &str)] = &[
    (DataType::Boolean, "BOOLEAN", "true or false"),
    (DataType::SmallInt, "SMALLINT", "16-bit signed integer"),
    (DataType::Int, "INT", "32-bit signed integer"),
    (
        DataType::BigInt,
        "BIGINT",
        "64-bit signed integer (a string in JSON results)",
    ),
    (DataType::Float, "FLOAT", "32-bit floating point"),
    (DataType::Double, "DOUBLE", "64-bit floating point"),
    (
        DataType::Decimal {
            precision: 38,
            scale: 10,
        },
        "DECIMAL(p, s)",
        "exact decimal, 1 <= p <= 38 digits, s after the point",
    ),
    (DataType::Text, "TEXT", "UTF-8 text (VARCHAR, STRING)"),
    (DataType::Bytes, "BYTES", "binary data (BYTEA, BLOB)"),
    (DataType::Json, "JSON", "a JSON document, stored as text"),
    (
        DataType::Timestamp,
        "TIMESTAMP",
        "microseconds since the epoch, no time zone",
    ),
    (
        DataType::DateTime,
        "DATETIME",
        "microseconds since the epoch, UTC",
    ),
    (DataType::Date, "DATE", "days since the epoch"),
    (DataType::Time, "TIME", "microseconds since midnight"),
    (DataType::Uuid, "UUID", "128-bit UUID"),
    (
        DataType::Embedding(1),
        "EMBEDDING(n)",
        "a vector of n 32-bit floats, 1 <= n <= 8192",
    ),
    (
        DataType::File,
        "FILE",
        "a reference to an uploaded file, stored as JSON text",
    ),
];

/// `system.datatypes`.
pub fn datatypes() -> Rows {
    let mut out = Rows::new(DATATYPES);
    for (t, sql, description) in TYPES {
        let kalam = match t {
            DataType::Decimal { .. } => "Decimal".to_owned(),
            DataType::Embedding(_) => "Embedding".to_owned(),
            _ => data_type_text(*t),
        };
        out.rows.push(vec![
            text(folddb_materializer::convert::arrow_type(*t).to_string()),
            text(kalam),
            text(*sql),
            text(*description),
        ]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uptime_reads_like_a_person_would_say_it() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(125), "2m 5s");
        assert_eq!(human_duration(3 * 3600 + 120), "3h 2m");
        assert_eq!(human_duration(2 * 86_400 + 3600), "2d 1h");
    }

    #[test]
    fn every_column_type_is_listed_once() {
        let rows = datatypes().rows;
        let kinds: std::collections::HashSet<String> = rows.iter().map(|r| r[1].plain()).collect();
        assert_eq!(kinds.len(), rows.len());
        // A type that `from_sql` knows is listed.
        for name in ["BOOLEAN", "INT", "TEXT", "JSON", "UUID", "FILE", "DATE"] {
            let t = DataType::from_sql(name, &[]).expect(name);
            assert!(kinds.contains(&data_type_text(t)), "{name}");
        }
    }
}
