//! `BACKUP DATABASE`, `RESTORE DATABASE` and `SHOW BACKUPS` (API.md 3.13).
//!
//! A backup (`BK-…`) reads one snapshot of the state — the catalog, every table scope's
//! rows, hot and cold, and the stored files their FILE cells name — as of one applied log
//! entry, while writes go on, and writes it as a directory ([`crate::backup`]). Cold-tier
//! jobs wait meanwhile (they hold the same lock), so no segment the snapshot names is
//! removed under it. Its audit entry records it: `SHOW BACKUPS` lists those.
//!
//! A restore (`RS-…`) first reads every byte of the backup against its checksums; then it
//! writes through the log like any client — the storages, users, namespaces and tables in
//! one command, the stored files, the rows, the vector indexes — so replicas, the change
//! journal and live queries see it. Before its first command it leaves a mark in the data
//! directory's `restores/`: a restore cut off by a crash is undone when the server starts
//! again ([`Engine::recover_restores`]), one that fails undoes itself.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringArray};
use arrow::datatypes::{Field, Schema};
use folddb_materializer::catalog::{self, StorageDef, TableDef, TableKind};
use folddb_materializer::cold::ColdStore;
use folddb_materializer::cold::store::scope_dir;
use folddb_materializer::scan::{ScanSpec, scan_scope_in, table_scopes};
use folddb_materializer::{
    Command, DataType, HotStore, JobKind, LOCAL_STORAGE, Op, OpResult, Outcome, Propose, Value,
    convert,
};
use futures::StreamExt;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};

use super::{Engine, Out, StmtResult, msg, now_ms};
use crate::backup::{self, Manifest, Partial, SCOPE_COLUMN, StoredFile};
use crate::dialect::BackupCommand;
use crate::error::Error;
use crate::jobs::Jobs;
use crate::provider::Caller;
use crate::system::{Rows, ms_to_ts, text};

/// Rows of one insert a restore proposes (fewer when they are large).
const RESTORE_ROWS: usize = 4096;
/// About this many bytes of rows per insert.
const RESTORE_BYTES: usize = 4 << 20;
/// Inserts a restore keeps in flight.
const RESTORE_IN_FLIGHT: usize = 4;
/// The audit action of a backup; its details are a [`BackupRecord`].
const BACKUP_ACTION: &str = "BACKUP DATABASE";
const RESTORE_ACTION: &str = "RESTORE DATABASE";
/// The audit action the restore's catalog command carries (details: the job id): whether
/// that command applied, which a restore cut off must know to undo it.
const RESTORE_STARTED: &str = "restore_started";

/// What a backup's audit entry says of it (JSON).
#[derive(Debug, Serialize, Deserialize)]
struct BackupRecord {
    job_id: String,
    path: String,
    log_index: u64,
    namespaces: Vec<String>,
    tables: u64,
    rows: u64,
    files: u64,
    bytes: u64,
}

/// A restore under way, as its mark in `restores/<job id>.json` says.
#[derive(Debug, Serialize, Deserialize)]
struct RestoreMark {
    started_ms: u64,
    namespaces: Vec<String>,
    users: Vec<String>,
    storages: Vec<String>,
}

/// Proposes commands as one user, from a job's task.
#[derive(Clone)]
struct Proposing {
    proposer: Arc<dyn Propose>,
    actor: String,
    skew: i64,
}

impl Proposing {
    async fn ops(&self, ops: Vec<Op>) -> Result<Vec<OpResult>, String> {
        let cmd = Command {
            stamp_ms: now_ms().saturating_add_signed(self.skew),
            actor: self.actor.clone(),
            ops,
        };
        match self.proposer.propose(cmd).await {
            Ok(Outcome::Applied(results)) => Ok(results),
            Ok(Outcome::Rejected { error, .. }) => Err(error),
            Err(e) => Err(e.to_string()),
        }
    }
}

fn blocking_failed(e: tokio::task::JoinError) -> String {
    format!("the job's task failed: {e}")
}

impl Engine {
    /// Where relative backup paths go, restores leave their marks and exports are kept:
    /// under the server's data directory `dir`.
    pub fn with_data_dir(mut self, dir: impl Into<PathBuf>) -> Engine {
        let dir = dir.into();
        self.data_dir = Some(std::path::absolute(&dir).unwrap_or(dir));
        self
    }

    /// A restore waits `pause` after each table it restores: a seam for tests of a crash
    /// during a restore (`FOLDDB_TEST_RESTORE_PAUSE_MS`).
    pub fn with_restore_pause(mut self, pause: std::time::Duration) -> Engine {
        self.restore_pause = pause;
        self
    }

    pub(super) fn data_path(&self, name: &str) -> Option<PathBuf> {
        self.data_dir.as_ref().map(|d| d.join(name))
    }

    fn proposing(&self, caller: &Caller) -> Proposing {
        Proposing {
            proposer: self.proposer.clone(),
            actor: caller.user.clone(),
            skew: self.clock_skew_ms,
        }
    }

    pub(super) async fn backup_command(
        &self,
        caller: &Caller,
        command: &BackupCommand,
    ) -> StmtResult<Out> {
        match command {
            BackupCommand::Backup {
                namespace,
                if_exists,
                path,
            } => self.backup(caller, namespace.as_deref(), *if_exists, path),
            BackupCommand::Restore {
                namespace,
                if_not_exists,
                path,
            } => self.restore(caller, namespace.as_deref(), *if_not_exists, path),
            BackupCommand::ShowBackups { namespace } => self.show_backups(caller, namespace),
            BackupCommand::ExportUserData => self.export_user_data(caller),
            BackupCommand::ShowExport => self.show_export(caller),
        }
    }

    fn backup_path(&self, text: &str) -> StmtResult<PathBuf> {
        let backups = self.data_path("backups");
        if let Some(b) = &backups {
            std::fs::create_dir_all(b)
                .map_err(|e| Error::Internal(format!("{}: {e}", b.display())))?;
        }
        backup::resolve(text, self.data_dir.as_deref(), backups.as_deref())
            .map_err(Error::InvalidInput)
    }

    fn backup(
        &self,
        caller: &Caller,
        namespace: Option<&str>,
        if_exists: bool,
        path: &str,
    ) -> StmtResult<Out> {
        let target = self.backup_path(path)?;
        if let Some(ns) = namespace
            && catalog::namespace(self.store.as_ref(), ns)?.is_none()
        {
            if if_exists {
                return msg(
                    caller,
                    format!("Namespace '{ns}' does not exist: nothing backed up"),
                );
            }
            return Err(Error::NotFound(format!("Namespace '{ns}' does not exist")));
        }
        let Some(cold) = self.cold.clone() else {
            return Err(Error::Internal(
                "this server has no cold tier to back up".into(),
            ));
        };
        let what = namespace.unwrap_or("*").to_owned();
        let id = self
            .jobs
            .queue(JobKind::Backup, &what)
            .ok_or_else(|| Error::NotAllowed(format!("A backup of '{what}' is already running")))?;
        let partial = match Partial::create(&target, &id.to_ascii_lowercase()) {
            Ok(p) => p,
            Err(e) => {
                // The statement fails; no job was started.
                self.jobs.forget(&id);
                return Err(if target.exists() {
                    Error::AlreadyExists(e)
                } else {
                    Error::InvalidInput(e)
                });
            }
        };
        let (store, jobs, lock, proposing) = (
            self.store.clone(),
            self.jobs.clone(),
            self.cold_jobs.clone(),
            self.proposing(caller),
        );
        let (job, ns) = (id.clone(), namespace.map(str::to_owned));
        let shown = target.display().to_string();
        tokio::spawn(async move {
            if !jobs.start(&job) {
                return;
            }
            // No cold-tier job removes a segment while the snapshot may still read it.
            let _cold_jobs = lock.lock().await;
            let (j, jb) = (jobs.clone(), job.clone());
            let written = tokio::task::spawn_blocking(move || {
                write_backup(&store, &cold, &j, &jb, ns.as_deref(), partial)
            })
            .await
            .unwrap_or_else(|e| Err(blocking_failed(e)));
            let result = match written {
                Ok(mut record) => {
                    record.job_id = job.clone();
                    record.path = shown.clone();
                    let details = serde_json::to_string(&record).unwrap_or_default();
                    let entry = Op::Audit {
                        actor: proposing.actor.clone(),
                        action: BACKUP_ACTION.into(),
                        target: what,
                        details: Some(details),
                        ip: None,
                        subject: None,
                    };
                    // The backup is whole on disk whether or not its record lands.
                    if let Err(e) = proposing.ops(vec![entry]).await {
                        tracing::warn!(job = %job, error = %e, "a backup's audit entry failed");
                    }
                    Ok(format!(
                        "backed up {} tables, {} rows, {} files ({} bytes) as of log index {} \
                         to '{shown}'",
                        record.tables, record.rows, record.files, record.bytes, record.log_index
                    ))
                }
                Err(e) => Err(e),
            };
            jobs.finish(&job, result);
        });
        msg(
            caller,
            format!(
                "Database backup started to '{}'. Job ID: {id}",
                target.display()
            ),
        )
    }

    fn restore(
        &self,
        caller: &Caller,
        namespace: Option<&str>,
        if_not_exists: bool,
        path: &str,
    ) -> StmtResult<Out> {
        let dir = self.backup_path(path)?;
        if !dir.is_dir() {
            return Err(Error::NotFound(format!(
                "Backup directory '{}' not found",
                dir.display()
            )));
        }
        let manifest = backup::open(&dir).map_err(Error::InvalidInput)?;
        let wanted: Vec<String> = match namespace {
            Some(ns) => {
                if !manifest.namespaces.iter().any(|n| n.name == ns) {
                    return Err(Error::NotFound(format!(
                        "The backup at '{}' holds no namespace '{ns}'",
                        dir.display()
                    )));
                }
                vec![ns.to_owned()]
            }
            None => manifest.namespaces.iter().map(|n| n.name.clone()).collect(),
        };
        // A whole-database restore passes over a namespace this server has and the backup
        // holds no table of (`default`, which every server has); any other is refused.
        let (mut existing, mut restored) = (Vec::new(), Vec::new());
        for ns in wanted {
            let holds_tables = manifest.tables.iter().any(|t| t.def.namespace == ns);
            if catalog::namespace(self.store.as_ref(), &ns)?.is_none() {
                restored.push(ns);
            } else if namespace.is_some() || holds_tables {
                existing.push(ns);
            }
        }
        let wanted = restored;
        if !existing.is_empty() {
            let names = existing.join("', '");
            if if_not_exists {
                return msg(
                    caller,
                    format!("Namespace '{names}' already exists: nothing restored"),
                );
            }
            return Err(Error::AlreadyExists(format!(
                "Namespace '{names}' already exists: a restore never replaces one (drop it \
                 first, or RESTORE DATABASE IF NOT EXISTS to skip it)"
            )));
        }
        let plan = plan_restore(self.store.as_ref(), &manifest, &wanted, namespace.is_none())?;
        let Some(cold) = self.cold.clone() else {
            return Err(Error::Internal(
                "this server has no cold tier to restore into".into(),
            ));
        };
        let Some(marks) = self.data_path("restores") else {
            return Err(Error::Internal("this server has no data directory".into()));
        };
        let what = namespace.unwrap_or("*").to_owned();
        let id = self.jobs.queue(JobKind::Restore, &what).ok_or_else(|| {
            Error::NotAllowed(format!("A restore of '{what}' is already running"))
        })?;
        let restore = Restore {
            dir: dir.clone(),
            manifest: Arc::new(manifest),
            plan,
            store: self.store.clone(),
            cold,
            jobs: self.jobs.clone(),
            job: id.clone(),
            proposing: self.proposing(caller),
            mark: marks.join(format!("{id}.json")),
            pause: self.restore_pause,
        };
        let jobs = self.jobs.clone();
        tokio::spawn(async move {
            if !jobs.start(&restore.job) {
                return;
            }
            let job = restore.job.clone();
            let result = restore.run().await;
            jobs.finish(&job, result);
        });
        msg(
            caller,
            format!(
                "Database restore started from '{}'. Job ID: {id}",
                dir.display()
            ),
        )
    }

    fn show_backups(&self, caller: &Caller, namespace: &str) -> StmtResult<Out> {
        let mut out = Rows::new(&[
            ("backup_id", DataType::Text),
            ("namespace", DataType::Text),
            ("path", DataType::Text),
            ("log_index", DataType::BigInt),
            ("tables", DataType::BigInt),
            ("rows", DataType::BigInt),
            ("files", DataType::BigInt),
            ("bytes", DataType::BigInt),
            ("created_at", DataType::Timestamp),
            ("created_by", DataType::Text),
            ("present", DataType::Boolean),
        ]);
        for entry in catalog::audit_log(self.store.as_ref())? {
            if entry.action != BACKUP_ACTION {
                continue;
            }
            let Some(r) = entry
                .details
                .as_deref()
                .and_then(|d| serde_json::from_str::<BackupRecord>(d).ok())
            else {
                continue;
            };
            if !r.namespaces.iter().any(|n| n == namespace) {
                continue;
            }
            let present = Path::new(&r.path).join(backup::MANIFEST).is_file();
            let n = |v: u64| Value::BigInt(i64::try_from(v).unwrap_or(i64::MAX));
            out.rows.push(vec![
                text(&r.job_id),
                text(&entry.target),
                text(&r.path),
                n(r.log_index),
                n(r.tables),
                n(r.rows),
                n(r.files),
                n(r.bytes),
                ms_to_ts(entry.at_ms),
                text(&entry.actor),
                Value::Boolean(present),
            ]);
        }
        Ok(Out::Result(super::results::table_result(caller, &out)?))
    }

    /// Undoes the restores a crash cut off (their marks in `restores/`): drops what each
    /// created. The problems met, as text; a mark whose undoing failed stays for the next
    /// start.
    pub async fn recover_restores(&self) -> Vec<String> {
        let Some(dir) = self.data_path("restores") else {
            return Vec::new();
        };
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        let mut problems = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let job = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let mark = std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<RestoreMark>(&b).map_err(|e| e.to_string()));
            let undone = match mark {
                Ok(mark) => {
                    let proposing = Proposing {
                        proposer: self.proposer.clone(),
                        actor: "system".into(),
                        skew: self.clock_skew_ms,
                    };
                    undo_restore(&self.store, &proposing, &job, &mark).await
                }
                // A mark cut off as it was written: nothing was proposed after it.
                Err(_) => Ok(()),
            };
            match undone {
                Ok(()) => {
                    tracing::warn!(job = %job, "a restore cut off by a crash was undone");
                    let _ = std::fs::remove_file(&path);
                }
                Err(e) => problems.push(format!("undoing restore {job}: {e}")),
            }
        }
        problems
    }
}

/// Writes the backup of `namespace` (`None`: every namespace) into `partial`, as of one
/// snapshot: its record (without job and path).
fn write_backup(
    store: &HotStore,
    cold: &ColdStore,
    jobs: &Jobs,
    job: &str,
    namespace: Option<&str>,
    mut partial: Partial,
) -> Result<BackupRecord, String> {
    let snap = store.snapshot();
    let err = |e: folddb_materializer::Error| e.to_string();
    let log_index = snap.applied_index().map_err(err)?.map_or(0, |i| i.0);
    let namespaces: Vec<_> = catalog::namespaces(&snap)
        .map_err(err)?
        .into_iter()
        .filter(|n| namespace.is_none_or(|ns| n.name == ns))
        .collect();
    if let Some(ns) = namespace
        && namespaces.is_empty()
    {
        return Err(format!(
            "namespace '{ns}' was dropped before the backup began"
        ));
    }
    let defs = catalog::tables(&snap, namespace).map_err(err)?;
    let storages: Vec<StorageDef> = catalog::storages(&snap)
        .map_err(err)?
        .into_iter()
        .filter(|s| {
            s.id != LOCAL_STORAGE
                && (namespace.is_none() || defs.iter().any(|d| d.options.storage_id == s.id))
        })
        .collect();
    let users = match namespace {
        Some(_) => Vec::new(),
        None => catalog::users(&snap)
            .map_err(err)?
            .into_iter()
            .filter(|u| u.deleted_at_ms.is_none())
            .collect(),
    };
    let mut record = BackupRecord {
        job_id: String::new(),
        path: String::new(),
        log_index,
        namespaces: namespaces.iter().map(|n| n.name.clone()).collect(),
        tables: 0,
        rows: 0,
        files: 0,
        bytes: 0,
    };
    let mut tables = Vec::new();
    let total = defs.len();
    for (i, def) in defs.into_iter().enumerate() {
        jobs.progress(
            job,
            format!(
                "table {} of {total} ({}): {} rows, {} bytes so far",
                i + 1,
                def.qualified_name(),
                record.rows,
                partial.files.iter().map(|f| f.bytes).sum::<u64>()
            ),
        );
        let table = backup_table(&snap, cold, &mut partial, def)?;
        record.tables += 1;
        record.rows += table.rows;
        record.files += table.stored.len() as u64;
        tables.push(table);
    }
    let manifest = Manifest {
        format: backup::FORMAT,
        kind: backup::KIND.into(),
        created_at_ms: now_ms(),
        log_index,
        namespace: namespace.map(str::to_owned),
        namespaces,
        storages,
        users,
        tables,
        files: Vec::new(),
    };
    record.bytes = partial.finish(manifest)?;
    Ok(record)
}

/// The part-file schema of `def`: its columns, then `_scope`.
fn part_schema(def: &TableDef) -> Arc<Schema> {
    let full = convert::table_schema(def);
    let mut fields: Vec<Field> = full.fields()[..def.columns.len()]
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new(
        SCOPE_COLUMN,
        arrow::datatypes::DataType::Utf8,
        false,
    ));
    Arc::new(Schema::new(fields))
}

/// A part file being written.
struct Part {
    rel: String,
    writer: ArrowWriter<backup::Hashing<std::fs::File>>,
}

fn backup_table(
    snap: &folddb_materializer::hot::HotSnapshot<'_>,
    cold: &ColdStore,
    partial: &mut Partial,
    def: TableDef,
) -> Result<backup::Table, String> {
    let vector_indexes = catalog::vector_indexes(snap, def.id).map_err(|e| e.to_string())?;
    let mut table = backup::Table {
        def,
        vector_indexes,
        rows: 0,
        parts: Vec::new(),
        stored: Vec::new(),
    };
    // A STREAM table's rows are transient: its definition only.
    if table.def.kind == TableKind::Stream {
        return Ok(table);
    }
    let def = table.def.clone();
    let schema = part_schema(&def);
    let projection: Vec<usize> = (0..def.columns.len()).collect();
    let spec = ScanSpec::visible(&def, &projection);
    let file_columns: Vec<usize> = def
        .columns
        .iter()
        .enumerate()
        .filter(|(_, c)| c.data_type == DataType::File)
        .map(|(i, _)| i)
        .collect();
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();
    let dir = format!("tables/{}/{}", def.namespace, def.name);
    let mut part: Option<Part> = None;
    let mut refs: Vec<(String, String)> = Vec::new();
    let scopes = table_scopes(snap, &def).map_err(|e| e.to_string())?;
    for scope in scopes {
        let scope_values: ArrayRef = Arc::new(StringArray::from(vec![scope.as_str()]));
        let mut each = |batch: RecordBatch| -> Result<(), String> {
            let n = batch.num_rows();
            if n == 0 {
                return Ok(());
            }
            for &c in &file_columns {
                if let Some(texts) = batch.column(c).as_string_opt::<i32>() {
                    for r in 0..n {
                        if texts.is_valid(r) {
                            refs.push((scope.clone(), texts.value(r).to_owned()));
                        }
                    }
                }
            }
            let scopes = arrow::compute::kernels::take::take(
                &scope_values,
                &arrow::array::UInt32Array::from(vec![0u32; n]),
                None,
            )
            .map_err(|e| e.to_string())?;
            let mut columns = batch.columns().to_vec();
            columns.push(scopes);
            let out = RecordBatch::try_new(schema.clone(), columns).map_err(|e| e.to_string())?;
            if part.is_none() {
                let rel = format!("{dir}/part-{:05}.parquet", table.parts.len());
                let file = partial.file(&rel)?;
                let writer = ArrowWriter::try_new(file, schema.clone(), Some(props.clone()))
                    .map_err(|e| e.to_string())?;
                table.parts.push(rel.clone());
                part = Some(Part { rel, writer });
            }
            if let Some(p) = part.as_mut() {
                p.writer.write(&out).map_err(|e| e.to_string())?;
                if p.writer.bytes_written() as u64 >= backup::PART_BYTES
                    && let Some(done) = part.take()
                {
                    close_part(partial, done)?;
                }
            }
            table.rows += n as u64;
            Ok(())
        };
        let what = format!(
            "{} (a compaction or DROP while the backup ran?)",
            def.qualified_name()
        );
        try_scan(snap, Some(cold), &scope, &spec, &what, &mut each)?;
    }
    if let Some(done) = part.take() {
        close_part(partial, done)?;
    }
    if !refs.is_empty() {
        table.stored = backup_files(snap, cold, partial, &def, refs)?;
    }
    Ok(table)
}

/// [`scan_scope_in`] with a step that can fail: the first error stops the scan and is its
/// result (`what` names the table in the scan's own errors).
pub(super) fn try_scan(
    snap: &folddb_materializer::hot::HotSnapshot<'_>,
    cold: Option<&ColdStore>,
    scope: &str,
    spec: &ScanSpec<'_>,
    what: &str,
    each: &mut dyn FnMut(RecordBatch) -> Result<(), String>,
) -> Result<(), String> {
    let mut failed = None;
    let mut sink = |batch: RecordBatch| match each(batch) {
        Ok(()) => true,
        Err(e) => {
            failed = Some(e);
            false
        }
    };
    scan_scope_in(snap, cold, scope, spec, &mut sink)
        .map_err(|e| format!("reading {what}: {e}"))?;
    failed.map_or(Ok(()), Err)
}

fn close_part(partial: &mut Partial, part: Part) -> Result<(), String> {
    let file = part.writer.into_inner().map_err(|e| e.to_string())?;
    partial.close(&part.rel, file).map(drop)
}

/// Copies the stored files `refs` name ((scope, `FileRef` JSON) each) into the backup,
/// checking each against the SHA-256 its reference records.
fn backup_files(
    snap: &folddb_materializer::hot::HotSnapshot<'_>,
    cold: &ColdStore,
    partial: &mut Partial,
    def: &TableDef,
    refs: Vec<(String, String)>,
) -> Result<Vec<StoredFile>, String> {
    let storage = catalog::storage(snap, &def.options.storage_id)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("the storage of {} does not exist", def.qualified_name()))?;
    let backend = cold.backend(&storage).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (scope, json) in refs {
        let Ok(file) = serde_json::from_str::<super::files::FileRef>(&json) else {
            continue;
        };
        let rel = format!("{}/{}", file.sub, file.stored_name());
        if !crate::engine::files::valid_download_path(&file.sub, &file.stored_name())
            || !seen.insert((scope.clone(), rel.clone()))
        {
            continue;
        }
        let from = format!("{}/{rel}", scope_dir(&storage, def, &scope));
        let backup_path = format!(
            "files/{}/{}/s{}/{rel}",
            def.namespace,
            def.name,
            backup::hex(scope.as_bytes())
        );
        let mut source = match backend.open(&from)? {
            Some(s) => s,
            None => {
                return Err(format!(
                    "file '{rel}' of {} (scope '{scope}') is missing from its storage",
                    def.qualified_name()
                ));
            }
        };
        let mut to = partial.file(&backup_path)?;
        let copied = match &mut source {
            folddb_materializer::cold::backend::Source::File(f) => std::io::copy(f, &mut to),
            folddb_materializer::cold::backend::Source::Bytes(b) => {
                std::io::copy(&mut b.as_ref(), &mut to)
            }
        };
        copied.map_err(|e| format!("copying '{from}': {e}"))?;
        let (_, sha) = to.sum_so_far();
        if !file.sha256.is_empty() && sha != file.sha256 {
            return Err(format!(
                "file '{rel}' of {} (scope '{scope}') is damaged: its SHA-256 is not the one \
                 its row records",
                def.qualified_name()
            ));
        }
        partial.close(&backup_path, to)?;
        out.push(StoredFile {
            scope,
            path: rel,
            backup_path,
        });
    }
    Ok(out)
}

/// What a restore creates, checked before it starts.
#[derive(Debug)]
struct RestorePlan {
    namespaces: Vec<String>,
    /// Storages the tables name that this server lacks.
    storages: Vec<StorageDef>,
    /// A whole-database restore: the users this server lacks.
    users: Vec<folddb_materializer::UserDef>,
}

/// `whole`: a whole-database restore of a whole-database backup also restores its users.
fn plan_restore(
    store: &HotStore,
    manifest: &Manifest,
    namespaces: &[String],
    whole: bool,
) -> StmtResult<RestorePlan> {
    let mut storages: Vec<StorageDef> = Vec::new();
    for t in manifest
        .tables
        .iter()
        .filter(|t| namespaces.contains(&t.def.namespace))
    {
        let id = &t.def.options.storage_id;
        if catalog::storage(store, id)?.is_some() || storages.iter().any(|s| &s.id == id) {
            continue;
        }
        match manifest.storages.iter().find(|s| &s.id == id) {
            Some(s) => storages.push(s.clone()),
            None => {
                return Err(Error::NotFound(format!(
                    "Storage '{id}' of table {} does not exist here, and the backup does not \
                     hold it: create it first",
                    t.def.qualified_name()
                )));
            }
        }
    }
    let mut users = Vec::new();
    if whole && manifest.namespace.is_none() {
        for u in &manifest.users {
            if catalog::user(store, &u.id)?.is_none() {
                users.push(u.clone());
            }
        }
    }
    Ok(RestorePlan {
        namespaces: namespaces.to_vec(),
        storages,
        users,
    })
}

/// A restore job.
struct Restore {
    dir: PathBuf,
    manifest: Arc<Manifest>,
    plan: RestorePlan,
    store: Arc<HotStore>,
    cold: Arc<ColdStore>,
    jobs: Arc<Jobs>,
    job: String,
    proposing: Proposing,
    mark: PathBuf,
    pause: std::time::Duration,
}

impl Restore {
    async fn run(self) -> Result<String, String> {
        // Every byte checked before anything changes.
        let (dir, manifest, jobs, job) = (
            self.dir.clone(),
            self.manifest.clone(),
            self.jobs.clone(),
            self.job.clone(),
        );
        let total: u64 = manifest.files.iter().map(|f| f.bytes).sum();
        tokio::task::spawn_blocking(move || {
            backup::verify(&dir, &manifest, &|done| {
                jobs.progress(&job, format!("checked {done} of {total} bytes"));
            })
        })
        .await
        .map_err(blocking_failed)??;
        let mark = RestoreMark {
            started_ms: now_ms(),
            namespaces: self.plan.namespaces.clone(),
            users: self.plan.users.iter().map(|u| u.id.clone()).collect(),
            storages: self.plan.storages.iter().map(|s| s.id.clone()).collect(),
        };
        write_mark(&self.mark, &mark)?;
        match self.write().await {
            Ok(summary) => {
                let _ = std::fs::remove_file(&self.mark);
                Ok(summary)
            }
            Err(e) => {
                // Undone now; were the undoing cut off, the mark undoes it at the next start.
                match undo_restore(&self.store, &self.proposing, &self.job, &mark).await {
                    Ok(()) => {
                        let _ = std::fs::remove_file(&self.mark);
                        Err(format!("{e}; nothing of it was kept"))
                    }
                    Err(u) => Err(format!("{e}; undoing it failed too ({u})")),
                }
            }
        }
    }

    async fn write(&self) -> Result<String, String> {
        let m = &self.manifest;
        let tables: Vec<&backup::Table> = m
            .tables
            .iter()
            .filter(|t| self.plan.namespaces.contains(&t.def.namespace))
            .collect();
        // The catalog in one command: it appears whole or not at all.
        let mut ops = Vec::new();
        for s in &self.plan.storages {
            ops.push(Op::CreateStorage {
                storage: s.clone(),
                if_not_exists: true,
            });
        }
        for u in &self.plan.users {
            ops.push(Op::PutUser {
                user: u.clone(),
                create: true,
            });
        }
        for n in m
            .namespaces
            .iter()
            .filter(|n| self.plan.namespaces.contains(&n.name))
        {
            ops.push(Op::CreateNamespace {
                name: n.name.clone(),
                description: n.description.clone(),
                if_not_exists: false,
            });
        }
        for t in &tables {
            ops.push(Op::CreateTable {
                table: t.def.clone(),
                if_not_exists: false,
            });
        }
        ops.push(Op::Audit {
            actor: self.proposing.actor.clone(),
            action: RESTORE_STARTED.into(),
            target: m.namespace.clone().unwrap_or_else(|| "*".into()),
            details: Some(self.job.clone()),
            ip: None,
            subject: None,
        });
        self.jobs.progress(&self.job, "creating the catalog".into());
        self.proposing.ops(ops).await?;
        let (mut rows, mut files) = (0u64, 0u64);
        for (i, t) in tables.iter().enumerate() {
            let def = catalog::table(self.store.as_ref(), &t.def.namespace, &t.def.name)
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("table {} vanished", t.def.qualified_name()))?;
            self.jobs.progress(
                &self.job,
                format!(
                    "table {} of {} ({}): {rows} rows so far",
                    i + 1,
                    tables.len(),
                    def.qualified_name()
                ),
            );
            // Files before the rows that name them.
            files += self.restore_files(&def, t).await?;
            rows += self.restore_rows(&def, t).await?;
            if !self.pause.is_zero() {
                self.jobs.progress(
                    &self.job,
                    format!("restored {}: {rows} rows so far", def.qualified_name()),
                );
                tokio::time::sleep(self.pause).await;
            }
            for index in &t.vector_indexes {
                if let Some(column) = def.column_by_id(index.column) {
                    self.proposing
                        .ops(vec![Op::CreateVectorIndex {
                            namespace: def.namespace.clone(),
                            table: def.name.clone(),
                            column: column.name.clone(),
                            metric: index.metric,
                        }])
                        .await?;
                }
            }
        }
        let details = serde_json::json!({
            "job_id": self.job,
            "path": self.dir.display().to_string(),
            "log_index": m.log_index,
            "namespaces": self.plan.namespaces,
            "rows": rows,
        })
        .to_string();
        let target = m.namespace.clone().unwrap_or_else(|| "*".into());
        let entry = Op::Audit {
            actor: self.proposing.actor.clone(),
            action: RESTORE_ACTION.into(),
            target,
            details: Some(details),
            ip: None,
            subject: None,
        };
        self.proposing.ops(vec![entry]).await?;
        Ok(format!(
            "restored {} namespaces, {} tables, {rows} rows, {files} files as of log index {} \
             from '{}'",
            self.plan.namespaces.len(),
            tables.len(),
            m.log_index,
            self.dir.display()
        ))
    }

    /// Copies the table's stored files into its storage, durably.
    async fn restore_files(&self, def: &TableDef, t: &backup::Table) -> Result<u64, String> {
        if t.stored.is_empty() {
            return Ok(0);
        }
        let storage = catalog::storage(self.store.as_ref(), &def.options.storage_id)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("storage '{}' does not exist", def.options.storage_id))?;
        let backend = self.cold.backend(&storage).map_err(|e| e.to_string())?;
        let (dir, def, stored) = (self.dir.clone(), def.clone(), t.stored.clone());
        tokio::task::spawn_blocking(move || {
            for s in &stored {
                backup::check_relative(&s.path)?;
                let to = format!("{}/{}", scope_dir(&storage, &def, &s.scope), s.path);
                let mut from = std::fs::File::open(dir.join(&s.backup_path))
                    .map_err(|e| format!("{}: {e}", s.backup_path))?;
                backend.write_from(&to, &mut from)?;
            }
            Ok(stored.len() as u64)
        })
        .await
        .map_err(blocking_failed)?
    }

    /// Inserts the table's rows through the log, a few commands in flight.
    async fn restore_rows(&self, def: &TableDef, t: &backup::Table) -> Result<u64, String> {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Op, String>>(RESTORE_IN_FLIGHT * 2);
        let (dir, parts, reader_def) = (self.dir.clone(), t.parts.clone(), def.clone());
        let reader = tokio::task::spawn_blocking(move || {
            let sent = read_parts(&dir, &parts, &reader_def, &mut |op| {
                tx.blocking_send(Ok(op)).is_ok()
            });
            if let Err(e) = sent {
                let _ = tx.blocking_send(Err(e));
            }
        });
        let proposing = self.proposing.clone();
        let mut results = tokio_stream_of(rx)
            .map(|op| {
                let p = proposing.clone();
                async move {
                    let op = op?;
                    let n = match &op {
                        Op::Insert { rows, .. } => rows.len() as u64,
                        _ => 0,
                    };
                    p.ops(vec![op]).await.map(|_| n)
                }
            })
            .buffer_unordered(RESTORE_IN_FLIGHT);
        let mut rows = 0;
        let mut failed = None;
        while let Some(r) = results.next().await {
            match r {
                Ok(n) => rows += n,
                Err(e) => {
                    failed.get_or_insert(e);
                }
            }
        }
        drop(results);
        let _ = reader.await;
        match failed {
            Some(e) => Err(format!("restoring {}: {e}", def.qualified_name())),
            None if rows != t.rows => Err(format!(
                "restoring {}: the backup lists {} rows, its parts hold {rows}",
                def.qualified_name(),
                t.rows
            )),
            None => Ok(rows),
        }
    }
}

fn tokio_stream_of<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// Reads the part files `parts` of a backup of `def` (restored as `def`: its id and schema
/// version) and hands out inserts of their rows, scope by scope; stops when `send` answers
/// `false`.
fn read_parts(
    dir: &Path,
    parts: &[String],
    def: &TableDef,
    send: &mut dyn FnMut(Op) -> bool,
) -> Result<(), String> {
    let mut pending: Vec<Vec<(u32, Value)>> = Vec::new();
    let mut pending_scope = String::new();
    let mut pending_bytes = 0usize;
    let mut flush = |scope: &str, rows: &mut Vec<Vec<(u32, Value)>>, bytes: &mut usize| -> bool {
        *bytes = 0;
        if rows.is_empty() {
            return true;
        }
        send(Op::Insert {
            table: def.id,
            schema_version: def.schema_version,
            scope: scope.to_owned(),
            rows: std::mem::take(rows),
        })
    };
    for rel in parts {
        backup::check_relative(rel)?;
        let file = std::fs::File::open(dir.join(rel)).map_err(|e| format!("{rel}: {e}"))?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .and_then(|b| b.with_batch_size(RESTORE_ROWS).build())
            .map_err(|e| format!("{rel}: {e}"))?;
        for batch in reader {
            let batch = batch.map_err(|e| format!("{rel}: {e}"))?;
            if batch.num_columns() != def.columns.len() + 1 {
                return Err(format!(
                    "{rel}: its columns are not those of {}",
                    def.qualified_name()
                ));
            }
            let row_bytes = batch.get_array_memory_size() / batch.num_rows().max(1);
            let scopes = batch
                .column(def.columns.len())
                .as_string_opt::<i32>()
                .ok_or_else(|| format!("{rel}: its {SCOPE_COLUMN} is not text"))?;
            for r in 0..batch.num_rows() {
                let scope = scopes.value(r);
                if scope != pending_scope
                    || pending.len() >= RESTORE_ROWS
                    || pending_bytes >= RESTORE_BYTES
                {
                    if !flush(&pending_scope, &mut pending, &mut pending_bytes) {
                        return Ok(());
                    }
                    pending_scope = scope.to_owned();
                }
                let mut cells = Vec::with_capacity(def.columns.len());
                for (i, c) in def.columns.iter().enumerate() {
                    let v = convert::arrow_to_value(batch.column(i).as_ref(), r, c.data_type)
                        .map_err(|e| format!("{rel}: column {}: {e}", c.name))?;
                    cells.push((c.id, v));
                }
                pending.push(cells);
                pending_bytes += row_bytes;
            }
        }
    }
    flush(&pending_scope, &mut pending, &mut pending_bytes);
    Ok(())
}

fn write_mark(path: &Path, mark: &RestoreMark) -> Result<(), String> {
    use std::io::Write;
    let dir = path.parent().ok_or("a restore mark needs a directory")?;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let tmp = path.with_extension("tmp");
    let bytes = serde_json::to_vec(mark).map_err(|e| e.to_string())?;
    let mut f = std::fs::File::create(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
    f.write_all(&bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| format!("{}: {e}", dir.display()))
}

/// Drops what restore `job` (its mark `mark`) created, if its catalog command applied (its
/// audit entry says so): its namespaces, then its users and storages.
async fn undo_restore(
    store: &HotStore,
    proposing: &Proposing,
    job: &str,
    mark: &RestoreMark,
) -> Result<(), String> {
    let log = catalog::audit_log(store).map_err(|e| e.to_string())?;
    let started = log
        .iter()
        .any(|a| a.action == RESTORE_STARTED && a.details.as_deref() == Some(job));
    // Cut off after its last command: it is whole.
    let finished = log.iter().any(|a| {
        a.action == RESTORE_ACTION
            && a.details
                .as_deref()
                .and_then(|d| serde_json::from_str::<serde_json::Value>(d).ok())
                .is_some_and(|d| d["job_id"] == job)
    });
    if !started || finished {
        return Ok(());
    }
    for ns in &mark.namespaces {
        proposing
            .ops(vec![Op::DropNamespace {
                name: ns.clone(),
                if_exists: true,
            }])
            .await?;
    }
    let mut ops = Vec::new();
    let now = now_ms();
    for id in &mark.users {
        if let Some(mut u) = catalog::user(store, id).map_err(|e| e.to_string())?
            && u.deleted_at_ms.is_none()
        {
            u.deleted_at_ms = Some(now);
            u.updated_at_ms = now;
            ops.push(Op::PutUser {
                user: u,
                create: false,
            });
        }
    }
    for id in &mark.storages {
        ops.push(Op::DropStorage {
            id: id.clone(),
            if_exists: true,
        });
    }
    if !ops.is_empty() {
        proposing.ops(ops).await?;
    }
    Ok(())
}
