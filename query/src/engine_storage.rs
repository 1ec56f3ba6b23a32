//! The storage and job statements of the engine (API.md 3.10, 4.3): STORAGE FLUSH /
//! COMPACT / CHECK, and starting and scheduling the flush, compaction and eviction jobs.

use super::*;
use crate::dialect::{StorageField, StorageSpec};

impl Engine {
    /// STORAGE FLUSH / COMPACT (API.md 3.10): queues one job per table and returns at once.
    pub(super) fn storage_command(
        &self,
        caller: &Caller,
        namespace: &str,
        compact: bool,
        target: &StorageTarget,
    ) -> StmtResult<String> {
        let (kind, verb, noun) = if compact {
            (JobKind::Compact, "COMPACT", "compaction")
        } else {
            (JobKind::Flush, "FLUSH", "flush")
        };
        if self.cold.is_none() {
            return Err(format!("STORAGE {verb}: this node has no cold storage").into());
        }
        let (defs, scope) = match target {
            StorageTarget::Table(t) => {
                let def = self.table(namespace, t)?;
                if def.kind == TableKind::Stream {
                    return Err(format!(
                        "STORAGE {verb} TABLE {}: STREAM tables are never flushed to cold storage",
                        def.qualified_name()
                    )
                    .into());
                }
                if let Some(why) = self.node_local(&def)? {
                    return Err(Error::NotAllowed(format!("STORAGE {verb}: {why}")));
                }
                if !compact && self.pending_rows(&def)? == 0 {
                    return Ok(format!(
                        "Storage flush skipped: no pending writes for table '{}'",
                        def.qualified_name()
                    ));
                }
                (vec![def], None)
            }
            StorageTarget::All(ns) => {
                if let Some(ns) = ns
                    && catalog::namespace(self.store.as_ref(), ns)?.is_none()
                {
                    return Err(Error::NotFound(format!("Namespace '{ns}' does not exist")));
                }
                let mut defs = Vec::new();
                for def in catalog::tables(self.store.as_ref(), ns.as_deref())? {
                    if def.kind != TableKind::Stream && self.node_local(&def)?.is_none() {
                        defs.push(def);
                    }
                }
                (defs, Some(ns.clone()))
            }
        };
        let mut queued = Vec::new();
        for def in &defs {
            if let Some(id) = self.jobs.queue(kind, &def.qualified_name()) {
                queued.push((id, def.id));
            }
        }
        let ids: Vec<String> = queued.iter().map(|(id, _)| id.to_owned()).collect();
        self.start_jobs(&caller.user, kind, queued);
        Ok(match (scope, ids.as_slice()) {
            (None, []) => format!(
                "Storage {noun} skipped: a {noun} is already queued or running for table '{}'",
                defs[0].qualified_name()
            ),
            (None, [id]) => format!(
                "Storage {noun} started for table '{}'. Job ID: {id}",
                defs[0].qualified_name()
            ),
            (scope, _) => format!(
                "Storage {noun} started for {} table(s) in {}. Job IDs: [{}]",
                ids.len(),
                match scope.flatten() {
                    Some(ns) => format!("namespace '{ns}'"),
                    None => "all namespaces".to_owned(),
                },
                ids.join(", ")
            ),
        })
    }

    /// In a cluster, why `def` is not flushed: its storage is a directory of each node (see
    /// [`Engine::in_cluster`]).
    fn node_local(&self, def: &TableDef) -> StmtResult<Option<String>> {
        if self.cold_in_cluster.is_none() || self.replicas.is_some() {
            return Ok(None);
        }
        let storage = catalog::storage(self.store.as_ref(), &def.options.storage_id)?;
        Ok(storage
            .filter(|s| s.kind == folddb_materializer::catalog::StorageKind::Filesystem)
            .map(|s| {
                format!(
                    "table '{}' is on storage '{}', a directory of each node: in a cluster the \
                     cold tier is written only to object storage every member reads (CREATE \
                     STORAGE … TYPE 's3', then a table WITH (STORAGE_ID = …)); its rows stay \
                     in the replicated hot tier",
                    def.qualified_name(),
                    s.id
                )
            }))
    }

    /// Hot row versions of `def` (all owners): what a flush would move.
    pub(super) fn pending_rows(&self, def: &TableDef) -> StmtResult<u64> {
        Ok(self.store.count_prefix(
            def.family(),
            &folddb_materializer::row::table_prefix(def.id),
        )?)
    }

    /// Runs queued jobs one after the other in the background: each is one log entry, whose
    /// outcome ends the job. A flush or a compaction first writes its segments (outside
    /// apply, from one snapshot of the state), then proposes the entry that commits them,
    /// then settles the files once that entry's outcome is known; one such job at a time.
    pub fn start_jobs(&self, actor: &str, kind: JobKind, jobs: Vec<(String, TableId)>) {
        if jobs.is_empty() {
            return;
        }
        let (proposer, registry, store, cold, lock, in_cluster, replicas) = (
            self.proposer.clone(),
            self.jobs.clone(),
            self.store.clone(),
            self.cold.clone(),
            self.cold_jobs.clone(),
            self.cold_in_cluster,
            self.replicas.clone(),
        );
        let actor = actor.to_owned();
        tokio::spawn(async move {
            for (id, table) in jobs {
                if !registry.start(&id) {
                    continue;
                }
                let job = id.to_owned();
                let _serial = match kind {
                    JobKind::StreamEviction => None,
                    _ => Some(lock.lock().await),
                };
                let op = match (kind, &cold) {
                    (JobKind::StreamEviction, _) => Ok(Op::EvictStream { table, job }),
                    (_, None) => Err("this node has no cold tier".to_owned()),
                    (_, Some(cold)) => {
                        let (store, cold, now) = (store.clone(), cold.clone(), now_ms());
                        tokio::task::spawn_blocking(move || match kind {
                            JobKind::Flush => cold_job::prepare_flush(&store, &cold, table, &job),
                            _ => cold_job::prepare_compact(&store, &cold, table, &job, now),
                        })
                        .await
                        .unwrap_or_else(|e| Err(format!("the job's task failed: {e}")))
                    }
                };
                // A directory of each node: a majority of the members copies the files
                // before the commit naming them can apply anywhere.
                let op = match (op, &replicas) {
                    (Ok(op), Some(replicas)) if kind != JobKind::StreamEviction => {
                        match cold_job::node_local_files(store.as_ref(), table, &op) {
                            Ok(Some((storage, files))) => replicas
                                .replicate(&storage, &files)
                                .await
                                .map(|()| op)
                                .map_err(|e| format!("the job's files could not be copied: {e}")),
                            Ok(None) => Ok(op),
                            Err(e) => Err(e),
                        }
                    }
                    (op, _) => op,
                };
                let op = match op {
                    Ok(op) => op,
                    Err(e) => {
                        tracing::warn!(job = %id, error = %e, "a job failed");
                        if let Some(cold) = cold.clone() {
                            // What it wrote before failing is listed nowhere.
                            let (store, job) = (store.clone(), id.clone());
                            let _ = tokio::task::spawn_blocking(move || {
                                if in_cluster.is_some() {
                                    let _ = cold_job::settle_in_cluster(
                                        &store, &cold, table, &job, None, false,
                                    );
                                } else {
                                    cold_job::sweep_one(&store, &cold, table)
                                }
                            })
                            .await;
                        }
                        registry.finish(&id, Err(e));
                        continue;
                    }
                };
                let cmd = Command {
                    stamp_ms: now_ms(),
                    actor: actor.clone(),
                    ops: vec![op.clone()],
                };
                let outcome = proposer.propose(cmd).await;
                if let (Ok(_), Some(cold)) = (&outcome, &cold)
                    && kind != JobKind::StreamEviction
                {
                    // Known outcome: the files of the scopes it names can be settled. (With an
                    // unknown one, the entry may still apply: its files must stay.)
                    let (store, cold, job) = (store.clone(), cold.clone(), id.clone());
                    let applied = matches!(outcome, Ok(Outcome::Applied(_)));
                    if let (Some(grace), true) = (in_cluster, applied) {
                        let (store, cold, op) = (store.clone(), cold.clone(), op.clone());
                        tokio::spawn(async move {
                            tokio::time::sleep(grace).await;
                            let removed = tokio::task::spawn_blocking(move || {
                                cold_job::remove_replaced(&store, &cold, table, &op)
                            })
                            .await;
                            if let Ok(Err(e)) = removed {
                                tracing::warn!(error = %e, "removing replaced segments failed");
                            }
                        });
                    }
                    let settled = tokio::task::spawn_blocking(move || {
                        if in_cluster.is_some() {
                            cold_job::settle_in_cluster(
                                &store,
                                &cold,
                                table,
                                &job,
                                Some(&op),
                                applied,
                            )
                        } else {
                            cold_job::settle(&store, &cold, table, &op)
                        }
                    })
                    .await;
                    if let Ok(Err(e)) = settled {
                        tracing::warn!(job = %id, error = %e, "settling a job's files failed");
                    }
                }
                let result = match outcome {
                    Ok(Outcome::Applied(_)) => {
                        // A write forwarded to the leader comes back once the leader applied
                        // it: the trims are planned from this node's state, which must hold
                        // the commit too.
                        applied_here(&store, &id).await;
                        if kind == JobKind::Flush {
                            trim_hot(&proposer, &store, table, &actor, &id).await;
                        }
                        if kind != JobKind::Compact {
                            // The rows left the hot tier: drop their deletion markers too.
                            let store = store.clone();
                            let prefix = folddb_materializer::row::table_prefix(table);
                            let family = if kind == JobKind::StreamEviction {
                                Family::Streams
                            } else {
                                Family::Rows
                            };
                            let _ = tokio::task::spawn_blocking(move || {
                                store.compact_prefix(family, &prefix)
                            })
                            .await;
                        }
                        match catalog::job(store.as_ref(), &id) {
                            Ok(Some(record)) => Ok(record.message),
                            Ok(None) => Ok("completed".to_owned()),
                            Err(e) => Err(e.to_string()),
                        }
                    }
                    Ok(Outcome::Rejected { error, .. }) => Err(error),
                    Err(e) => Err(e.to_string()),
                };
                if let Err(e) = &result {
                    tracing::warn!(job = %id, error = %e, "a job failed");
                }
                registry.finish(&id, result);
            }
        });
    }

    /// Removes the segment files no manifest lists, left by jobs that crashed before their
    /// commit (see [`cold_job::sweep`]); for startup. It first proposes an empty command: once
    /// that is applied, so is every commit the log held, and none can name a file the sweep
    /// removes. Returns the problems met.
    pub async fn sweep_cold(&self) -> Vec<String> {
        let Some(cold) = self.cold.clone() else {
            return Vec::new();
        };
        if self.cold_in_cluster.is_some() {
            // Files no manifest lists may be another member's job in flight: each job
            // removes its own (a crashed job's files stay, as unread disk space).
            return Vec::new();
        }
        let _serial = self.cold_jobs.lock().await;
        let barrier = Command {
            stamp_ms: now_ms(),
            actor: "system".into(),
            ops: Vec::new(),
        };
        if let Err(e) = self.proposer.propose(barrier).await {
            return vec![format!("not swept: {e}")];
        }
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || cold_job::sweep(&store, &cold))
            .await
            .unwrap_or_else(|e| vec![format!("the sweep's task failed: {e}")])
    }

    /// In a cluster, removes the segment files no manifest has listed for `grace`, as seen by
    /// repeated calls (a file goes once it was unlisted at a call at least `grace` before
    /// this one): the segments a compaction replaced, once no scan or lagging member can
    /// still read them, and the files of jobs that failed or crashed. Every member sweeps its
    /// own copies of storages that are directories of each node; with `shared` (the leader),
    /// the storages every member shares too, sparing the files of every job still queued or
    /// running on any member (all must answer). Returns the problems met.
    pub async fn sweep_in_cluster(&self, grace: std::time::Duration, shared: bool) -> Vec<String> {
        let Some(cold) = self.cold.clone().filter(|_| self.cold_in_cluster.is_some()) else {
            return Vec::new();
        };
        // No job of this node writes meanwhile.
        let _serial = self.cold_jobs.lock().await;
        let mut problems = Vec::new();
        // Asked before the state is read: a job in no list had its commit applied, or never
        // will (its outcome unknown, it had `grace` to apply), before the barrier below.
        let running = match (&self.replicas, shared) {
            (Some(replicas), true) => match replicas.jobs_elsewhere().await {
                Ok(mut running) => {
                    running.extend(self.jobs.pending_ids());
                    Some(running.into_iter().collect::<HashSet<String>>())
                }
                Err(e) => {
                    problems.push(format!("shared storages not swept: {e}"));
                    None
                }
            },
            _ => None,
        };
        if running.is_some() {
            let barrier = Command {
                stamp_ms: now_ms(),
                actor: "system".into(),
                ops: Vec::new(),
            };
            if let Err(e) = self.proposer.propose(barrier).await {
                problems.push(format!("not swept: {e}"));
                return problems;
            }
        }
        let (store, seen) = (self.store.clone(), self.unlisted_since.clone());
        let swept = tokio::task::spawn_blocking(move || {
            let mut found = match cold_job::unlisted_files(store.as_ref(), &cold, true) {
                Ok(found) => found,
                Err(e) => return vec![e],
            };
            if let Some(running) = running {
                match cold_job::unlisted_files(store.as_ref(), &cold, false) {
                    Ok(shared) => found.extend(cold_job::not_in_flight(shared, &running)),
                    Err(e) => return vec![e],
                }
            }
            remove_unlisted_for(&cold, found, &seen, grace)
        })
        .await;
        problems.extend(swept.unwrap_or_else(|e| vec![format!("the sweep's task failed: {e}")]));
        problems
    }

    /// Removes the cold files of tables a DROP just removed (outside apply, after its
    /// outcome), unless a live table now uses the same directory.
    pub(super) fn remove_dropped(&self, dropped: Vec<TableDef>) {
        let Some(cold) = self.cold.clone() else {
            return;
        };
        let (store, lock) = (self.store.clone(), self.cold_jobs.clone());
        tokio::spawn(async move {
            let _serial = lock.lock().await;
            let _ = tokio::task::spawn_blocking(move || {
                for def in dropped.iter().filter(|d| d.kind != TableKind::Stream) {
                    let Ok(Some(storage)) =
                        catalog::storage(store.as_ref(), &def.options.storage_id)
                    else {
                        continue;
                    };
                    let dir = folddb_materializer::cold::store::table_dir(&storage, def);
                    let reused = catalog::tables(store.as_ref(), None).is_ok_and(|live| {
                        live.iter().any(|t| {
                            t.kind != TableKind::Stream
                                && t.options.storage_id == storage.id
                                && folddb_materializer::cold::store::table_dir(&storage, t) == dir
                        })
                    });
                    if reused {
                        continue;
                    }
                    if let Err(e) = cold.remove_dir(&storage, &dir) {
                        tracing::warn!(error = %e, table = %def.qualified_name(),
                            "could not remove a dropped table's cold files");
                    }
                }
            })
            .await;
        });
    }

    /// Queues the jobs that are due (called by the node's scheduler): a flush for every table
    /// whose FLUSH_POLICY (else the default policy) is met (`rows:N` pending row versions, or `interval:S` seconds
    /// since its last flush with writes pending), and an eviction for every STREAM table
    /// holding rows past its TTL. Returns how many were queued.
    pub fn schedule_due_jobs(&self, flush: bool, evict: bool) -> Result<usize, SqlError> {
        let internal =
            |e: folddb_materializer::Error| SqlError::new(ErrorCode::InternalError, e.to_string());

        if self.cold.is_none() {
            return Ok(0);
        }
        let now = now_ms();
        let records = catalog::jobs(self.store.as_ref()).map_err(internal)?;
        let last_flush = |target: &str| {
            records
                .iter()
                .filter(|r| r.kind == JobKind::Flush && r.target == target)
                .map(|r| r.at_ms)
                .max()
        };
        let mut flushes = Vec::new();
        let mut evictions = Vec::new();
        for def in catalog::tables(self.store.as_ref(), None).map_err(internal)? {
            let prefix = folddb_materializer::row::table_prefix(def.id);
            if def.kind != TableKind::Stream
                && flush
                && self
                    .node_local(&def)
                    .map_err(|e| SqlError::new(ErrorCode::InternalError, e.to_string()))?
                    .is_some()
            {
                continue;
            }
            match def.kind {
                TableKind::Stream if !evict => {}
                _ if def.kind != TableKind::Stream && !flush => {}
                TableKind::Stream => {
                    let Some(ttl) = def.options.ttl_seconds else {
                        continue;
                    };
                    let cutoff =
                        folddb_materializer::Seq::at_unix_ms(now.saturating_sub(ttl * 1000)).0;
                    let expired = self
                        .store
                        .scan_prefix(Family::Streams, &prefix)
                        .map_err(internal)?
                        .iter()
                        .any(|(_, v)| {
                            folddb_materializer::codec::decode::<folddb_materializer::RowVersion>(
                                v,
                                "a row version",
                            )
                            .is_ok_and(|r| r.seq < cutoff)
                        });
                    if expired {
                        evictions.push(def);
                    }
                }
                _ => {
                    let (rows, interval) = match def.options.flush_policy.as_deref() {
                        Some(policy) => flush_policy(policy)
                            .map_err(|e| SqlError::new(ErrorCode::InternalError, e))?,
                        None => match self.default_flush_policy {
                            Some(policy) => policy,
                            None => continue,
                        },
                    };
                    let pending = self
                        .store
                        .count_prefix(Family::Rows, &prefix)
                        .map_err(internal)?;
                    if pending == 0 {
                        continue;
                    }
                    let since = last_flush(&def.qualified_name()).unwrap_or(def.created_at_ms);
                    let due = rows.is_some_and(|n| pending >= n)
                        || interval.is_some_and(|s| now.saturating_sub(since) >= s * 1000);
                    if due {
                        flushes.push(def);
                    }
                }
            }
        }
        let mut queued = 0;
        for (kind, defs) in [
            (JobKind::Flush, flushes),
            (JobKind::StreamEviction, evictions),
        ] {
            let jobs: Vec<(String, TableId)> = defs
                .iter()
                .filter_map(|d| {
                    self.jobs
                        .queue(kind, &d.qualified_name())
                        .map(|id| (id, d.id))
                })
                .collect();
            queued += jobs.len();
            self.start_jobs("system", kind, jobs);
        }
        Ok(queued)
    }

    /// STORAGE CHECK (API.md 3.10), as the reference answers it: one row for the storage,
    /// its `status` (`healthy`, `degraded`, `unreachable`) from writing, reading, listing
    /// and removing a probe file, then checking the manifests and segments of every table
    /// stored there (a table's problems, each naming its file, make it `degraded`).
    /// EXTENDED reads every segment's footer, fills `used_bytes` and adds FoldDB's per-table
    /// detail as JSON (`tables`).
    pub(super) fn storage_check(&self, storage: &str, extended: bool) -> StmtResult<Rows> {
        let Some(cold) = &self.cold else {
            return Err("STORAGE CHECK: this node has no cold storage".into());
        };
        let Some(storage) = catalog::storage(self.store.as_ref(), storage)? else {
            return Err(Error::NotFound(format!("Storage '{storage}' not found")));
        };
        let mut columns = vec![
            ("storage_id", DataType::Text),
            ("status", DataType::Text),
            ("readable", DataType::Boolean),
            ("writable", DataType::Boolean),
            ("listable", DataType::Boolean),
            ("deletable", DataType::Boolean),
            ("latency_ms", DataType::BigInt),
            ("total_bytes", DataType::BigInt),
            ("used_bytes", DataType::BigInt),
            ("error", DataType::Text),
            ("tested_at", DataType::Timestamp),
        ];
        if extended {
            columns.push(("tables", DataType::Json));
        }
        let mut rows = Rows::new(&columns);
        let health = match cold.backend(&storage) {
            Ok(b) => folddb_materializer::cold::backend::health(b.as_ref()),
            Err(e) => folddb_materializer::cold::backend::Health {
                readable: false,
                writable: false,
                listable: false,
                deletable: false,
                latency_ms: 0,
                error: Some(e.to_string()),
            },
        };
        let mut status = health.status();
        let mut error = health.error.clone();
        let (mut used, mut tables) = (0u64, Vec::new());
        if status != "unreachable" {
            for def in catalog::tables(self.store.as_ref(), None)? {
                if def.kind == TableKind::Stream || def.options.storage_id != storage.id {
                    continue;
                }
                let (mut segments, mut count) = (0u64, 0u64);
                let mut problems: Vec<String> = Vec::new();
                match cold.scopes_of(self.store.as_ref(), &storage, &def) {
                    Ok(scopes) => {
                        for s in scopes {
                            let listed = &s.manifest().segments;
                            segments += listed.len() as u64;
                            count += listed.iter().map(|g| g.rows).sum::<u64>();
                            used += listed.iter().map(|g| g.bytes).sum::<u64>();
                        }
                        problems.extend(
                            cold.check(self.store.as_ref(), &storage, &def, extended)
                                .iter()
                                .map(ToString::to_string),
                        );
                    }
                    Err(e) => problems.push(e.to_string()),
                }
                if !problems.is_empty() {
                    status = "degraded";
                    error.get_or_insert_with(|| {
                        format!("table {}: {}", def.qualified_name(), problems.join("; "))
                    });
                }
                tables.push(serde_json::json!({
                    "table_name": def.qualified_name(),
                    "segments": segments,
                    "rows": count,
                    "status": if problems.is_empty() { "ok" } else { "damaged" },
                    "problems": problems,
                }));
            }
        }
        let mut row = vec![
            Value::Text(storage.id.clone()),
            Value::Text(status.into()),
            Value::Boolean(health.readable),
            Value::Boolean(health.writable),
            Value::Boolean(health.listable),
            Value::Boolean(health.deletable),
            Value::BigInt(health.latency_ms as i64),
            Value::Null,
            if extended {
                Value::BigInt(used as i64)
            } else {
                Value::Null
            },
            error.map_or(Value::Null, Value::Text),
            Value::Timestamp(now_ms() as i64 * 1000),
        ];
        if extended {
            row.push(Value::Json(serde_json::Value::Array(tables).to_string()));
        }
        rows.rows.push(row);
        Ok(rows)
    }
}

impl Engine {
    /// CREATE STORAGE (API.md 3.10).
    pub(super) async fn create_storage(
        &self,
        caller: &Caller,
        id: &str,
        if_not_exists: bool,
        spec: &StorageSpec,
    ) -> StmtResult<Out> {
        let storage = crate::storage::define(id, spec)?;
        let op = Op::CreateStorage {
            storage,
            if_not_exists,
        };
        msg(
            caller,
            self.propose_catalog(
                caller,
                op,
                format!("Storage '{id}' already exists"),
                format!("Storage '{id}' created successfully"),
            )
            .await?,
        )
    }

    /// ALTER STORAGE (API.md 3.10).
    pub(super) async fn alter_storage(
        &self,
        caller: &Caller,
        id: &str,
        changes: &[(StorageField, String)],
    ) -> StmtResult<Out> {
        if id == folddb_materializer::LOCAL_STORAGE {
            return Err("The built-in storage 'local' cannot be altered".into());
        }
        let current = catalog::storage(self.store.as_ref(), id)?
            .ok_or_else(|| Error::NotFound(format!("Storage '{id}' not found")))?;
        let storage = crate::storage::alter(&current, changes)?;
        self.propose(&caller.user, vec![Op::AlterStorage { storage }])
            .await?;
        msg(caller, format!("Storage '{id}' altered successfully"))
    }

    /// DROP STORAGE (API.md 3.10).
    pub(super) async fn drop_storage(
        &self,
        caller: &Caller,
        id: &str,
        if_exists: bool,
    ) -> StmtResult<Out> {
        let op = Op::DropStorage {
            id: id.to_owned(),
            if_exists,
        };
        msg(
            caller,
            self.propose_catalog(
                caller,
                op,
                format!("Storage '{id}' does not exist (skipped)"),
                format!("Storage '{id}' dropped successfully"),
            )
            .await?,
        )
    }
}

/// After a flush of `table` committed: proposes, one after the other, the entries that move
/// the versions its segments hold out of the hot tier (each one short, so that the writes
/// between them wait little). One that fails stops the trim; the table's next flush finishes
/// it (until then the versions are read from both tiers, with the same answers).
/// Waits (up to ten seconds) until this node has applied the commit of job `id`: its record
/// is in the node's catalog.
async fn applied_here(store: &Arc<HotStore>, id: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        if !matches!(catalog::job(store.as_ref(), id), Ok(None)) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

async fn trim_hot(
    proposer: &Arc<dyn Propose>,
    store: &Arc<HotStore>,
    table: TableId,
    actor: &str,
    job: &str,
) {
    let planned = {
        let store = store.clone();
        tokio::task::spawn_blocking(move || cold_job::trims(&store, table, cold_job::TRIM_KEYS))
            .await
            .unwrap_or_else(|e| Err(format!("the trim's task failed: {e}")))
    };
    let trims = match planned {
        Ok(trims) => trims,
        Err(e) => {
            tracing::warn!(job = %job, error = %e, "could not plan a flush's trim");
            return;
        }
    };
    for op in trims {
        let cmd = Command {
            stamp_ms: now_ms(),
            actor: actor.to_owned(),
            ops: vec![op],
        };
        let failure = match proposer.propose(cmd).await {
            Ok(Outcome::Applied(_)) => continue,
            Ok(Outcome::Rejected { error, .. }) => error,
            Err(e) => e.to_string(),
        };
        tracing::warn!(job = %job, error = %failure, "a flush's trim stopped");
        return;
    }
}

/// Removes the files of `found` that `seen` (when each was first found unlisted) has known
/// for `grace`, and forgets the files no longer found. Returns the problems met.
fn remove_unlisted_for(
    cold: &folddb_materializer::cold::ColdStore,
    found: Vec<(folddb_materializer::StorageDef, String)>,
    seen: &std::sync::Mutex<HashMap<String, std::time::Instant>>,
    grace: std::time::Duration,
) -> Vec<String> {
    let now = std::time::Instant::now();
    let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
    let key =
        |storage: &folddb_materializer::StorageDef, path: &str| format!("{}/{path}", storage.id);
    let keys: HashSet<String> = found.iter().map(|(s, p)| key(s, p)).collect();
    seen.retain(|k, _| keys.contains(k));
    let mut problems = Vec::new();
    for (storage, path) in found {
        let since = *seen.entry(key(&storage, &path)).or_insert(now);
        if now.duration_since(since) < grace {
            continue;
        }
        let removed = cold
            .backend(&storage)
            .map_err(|e| e.to_string())
            .and_then(|b| b.remove(&path));
        match removed {
            Ok(()) => {
                seen.remove(&key(&storage, &path));
            }
            Err(e) => problems.push(e),
        }
    }
    problems
}
