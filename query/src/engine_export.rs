//! `EXPORT USER DATA` and `SHOW EXPORT` (API.md 3.13), and the export a download serves
//! (API.md 1.8, `GET /v1/exports/{user_id}/{export_id}`).
//!
//! An export (`UE-…`) is a zip of everything the caller owns: the caller's rows of every
//! USER table as of one snapshot, a JSON array per table (`<namespace>.<table>.json`, cells
//! as the SQL API encodes them), the stored files those rows' FILE cells name
//! (`files/<namespace>.<table>/<subfolder>/<stored name>`), and `export.json` describing it.
//! It is built on the node the statement reached, in the data directory's
//! `exports/<user>/<export id>.zip` (written aside, synced, renamed: a zip there is whole).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use folddb_materializer::catalog::{self, TableDef, TableKind, escape_path_component};
use folddb_materializer::cold::ColdStore;
use folddb_materializer::cold::backend::Source;
use folddb_materializer::cold::store::scope_dir;
use folddb_materializer::scan::ScanSpec;
use folddb_materializer::{DataType, HotStore, JobKind, Value, convert};
use zip::write::SimpleFileOptions;

use super::{Engine, Out, StmtResult, msg, now_ms};
use crate::error::Error;
use crate::jobs::{JobStatus, Jobs};
use crate::provider::Caller;
use crate::system::{Rows, ms_to_ts, opt_text, text};

/// Why an export cannot be downloaded.
#[derive(Debug, PartialEq, Eq)]
pub enum ExportError {
    /// Neither its owner nor dba/system (403).
    Denied,
    /// No such export (404 `EXPORT_NOT_FOUND`).
    NotFound,
}

/// An export id as this server makes them (`UE-` and a lowercase ULID tail).
fn valid_export_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

impl Engine {
    fn exports_of(&self, user: &str) -> Option<PathBuf> {
        self.data_path("exports")
            .map(|d| d.join(escape_path_component(user)))
    }

    pub(super) fn export_user_data(&self, caller: &Caller) -> StmtResult<Out> {
        let Some(dir) = self.exports_of(&caller.user) else {
            return Err(Error::Internal("this server has no data directory".into()));
        };
        let id = self
            .jobs
            .queue(JobKind::UserExport, &caller.user)
            .ok_or_else(|| {
                Error::NotAllowed(
                    "An export of your data is already running: SHOW EXPORT follows it".into(),
                )
            })?;
        let (store, cold, jobs) = (self.store.clone(), self.cold.clone(), self.jobs.clone());
        let (job, user) = (id.clone(), caller.user.clone());
        tokio::spawn(async move {
            if !jobs.start(&job) {
                return;
            }
            let (j, jb) = (jobs.clone(), job.clone());
            let result = tokio::task::spawn_blocking(move || {
                write_export(&store, cold.as_deref(), &j, &jb, &user, &dir)
            })
            .await
            .unwrap_or_else(|e| Err(format!("the job's task failed: {e}")));
            jobs.finish(&job, result);
        });
        msg(
            caller,
            format!(
                "User data export started. Job ID: {id}. Use SHOW EXPORT to check status and \
                 get the download link."
            ),
        )
    }

    pub(super) fn show_export(&self, caller: &Caller) -> StmtResult<Out> {
        let mut out = Rows::new(&[
            ("job_id", DataType::Text),
            ("status", DataType::Text),
            ("created_at", DataType::Timestamp),
            ("message", DataType::Text),
            ("download_url", DataType::Text),
        ]);
        let base = self
            .ws_url
            .replacen("wss://", "https://", 1)
            .replacen("ws://", "http://", 1);
        let base = base.strip_suffix("/v1/ws").unwrap_or(&base).to_owned();
        let url = |id: &str| format!("{base}/v1/exports/{}/{id}", caller.user);
        let mut listed = std::collections::HashSet::new();
        for j in self
            .jobs
            .list()
            .into_iter()
            .rev()
            .filter(|j| j.kind == JobKind::UserExport && j.target == caller.user)
        {
            listed.insert(j.id.clone());
            let done = j.status == JobStatus::Completed;
            out.rows.push(vec![
                text(&j.id),
                text(j.status.name()),
                ms_to_ts(j.created_ms),
                text(&j.message),
                opt_text(done.then(|| url(&j.id)).as_deref()),
            ]);
        }
        // Exports built before this server last started.
        if let Some(dir) = self.exports_of(&caller.user)
            && let Ok(entries) = std::fs::read_dir(dir)
        {
            let mut older: Vec<(u64, String)> = entries
                .flatten()
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let id = name.strip_suffix(".zip")?.to_owned();
                    let ms = e
                        .metadata()
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                        .map_or(0, |d| d.as_millis() as u64);
                    (!listed.contains(&id)).then_some((ms, id))
                })
                .collect();
            older.sort();
            for (ms, id) in older.into_iter().rev() {
                out.rows.push(vec![
                    text(&id),
                    text(JobStatus::Completed.name()),
                    ms_to_ts(ms),
                    Value::Null,
                    text(url(&id)),
                ]);
            }
        }
        Ok(Out::Result(super::results::table_result(caller, &out)?))
    }

    /// The zip of export `export_id` of `user_id`, for its owner or dba/system.
    pub fn export_file(
        &self,
        caller: &Caller,
        user_id: &str,
        export_id: &str,
    ) -> Result<PathBuf, ExportError> {
        if caller.user != user_id && !caller.role.is_admin() {
            return Err(ExportError::Denied);
        }
        if !valid_export_id(export_id) {
            return Err(ExportError::NotFound);
        }
        let path = self
            .exports_of(user_id)
            .ok_or(ExportError::NotFound)?
            .join(format!("{export_id}.zip"));
        if path.is_file() {
            Ok(path)
        } else {
            Err(ExportError::NotFound)
        }
    }
}

/// Builds the export `job` of `user` into `dir`: a message saying what it holds.
fn write_export(
    store: &HotStore,
    cold: Option<&ColdStore>,
    jobs: &Jobs,
    job: &str,
    user: &str,
    dir: &Path,
) -> Result<String, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = dir.join(format!("{job}.zip"));
    let tmp = dir.join(format!(".{job}.zip.tmp"));
    let written = (|| {
        let file = std::fs::File::create(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
        let mut zip = zip::ZipWriter::new(file);
        let summary = export_into(store, cold, jobs, job, user, &mut zip)?;
        let file = zip.finish().map_err(|e| e.to_string())?;
        file.sync_all().map_err(|e| e.to_string())?;
        std::fs::rename(&tmp, &path).map_err(|e| e.to_string())?;
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| e.to_string())?;
        Ok(summary)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

fn zip_err(e: impl std::fmt::Display) -> String {
    format!("writing the export: {e}")
}

fn export_into(
    store: &HotStore,
    cold: Option<&ColdStore>,
    jobs: &Jobs,
    job: &str,
    user: &str,
    zip: &mut zip::ZipWriter<std::fs::File>,
) -> Result<String, String> {
    let snap = store.snapshot();
    let log_index = snap
        .applied_index()
        .map_err(|e| e.to_string())?
        .map_or(0, |i| i.0);
    let options = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    let defs: Vec<TableDef> = catalog::tables(&snap, None)
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|d| d.kind == TableKind::User)
        .collect();
    let (mut total_rows, mut total_files) = (0u64, 0u64);
    let mut described = Vec::new();
    for (i, def) in defs.iter().enumerate() {
        jobs.progress(
            job,
            format!(
                "table {} of {} ({})",
                i + 1,
                defs.len(),
                def.qualified_name()
            ),
        );
        let name = format!("{}.{}", def.namespace, def.name);
        zip.start_file(format!("{name}.json"), options)
            .map_err(zip_err)?;
        let (rows, refs) = export_rows(&snap, cold, def, user, zip)?;
        let files = export_files(&snap, cold, def, user, &name, refs, zip, options)?;
        total_rows += rows;
        total_files += files;
        described.push(serde_json::json!({"table": name, "rows": rows, "files": files}));
    }
    let about = serde_json::json!({
        "format": 1,
        "user_id": user,
        "export_id": job,
        "created_at_ms": now_ms(),
        "log_index": log_index,
        "tables": described,
    });
    zip.start_file("export.json", options).map_err(zip_err)?;
    zip.write_all(&serde_json::to_vec_pretty(&about).map_err(zip_err)?)
        .map_err(zip_err)?;
    Ok(format!(
        "exported {total_rows} rows of {} tables and {total_files} files as of log index \
         {log_index}",
        defs.len()
    ))
}

/// Writes the rows `user` owns of `def` as a JSON array: their count, and the `FileRef`s
/// their FILE cells hold.
fn export_rows(
    snap: &folddb_materializer::hot::HotSnapshot<'_>,
    cold: Option<&ColdStore>,
    def: &TableDef,
    user: &str,
    zip: &mut zip::ZipWriter<std::fs::File>,
) -> Result<(u64, Vec<String>), String> {
    let projection: Vec<usize> = (0..def.columns.len()).collect();
    let spec = ScanSpec::visible(def, &projection);
    let mut rows = 0u64;
    let mut refs = Vec::new();
    zip.write_all(b"[").map_err(zip_err)?;
    let mut each = |batch: RecordBatch| -> Result<(), String> {
        for r in 0..batch.num_rows() {
            let mut object = serde_json::Map::new();
            for (i, c) in def.columns.iter().enumerate() {
                let column = batch.column(i);
                object.insert(c.name.clone(), convert::cell_json(column.as_ref(), r)?);
                if c.data_type == DataType::File
                    && let Some(t) = column.as_string_opt::<i32>()
                    && t.is_valid(r)
                {
                    refs.push(t.value(r).to_owned());
                }
            }
            if rows > 0 {
                zip.write_all(b",").map_err(zip_err)?;
            }
            zip.write_all(b"\n").map_err(zip_err)?;
            serde_json::to_writer(&mut *zip, &object).map_err(zip_err)?;
            rows += 1;
        }
        Ok(())
    };
    super::backup_exec::try_scan(snap, cold, user, &spec, &def.qualified_name(), &mut each)?;
    zip.write_all(b"\n]\n").map_err(zip_err)?;
    Ok((rows, refs))
}

#[allow(clippy::too_many_arguments)]
fn export_files(
    snap: &folddb_materializer::hot::HotSnapshot<'_>,
    cold: Option<&ColdStore>,
    def: &TableDef,
    user: &str,
    name: &str,
    refs: Vec<String>,
    zip: &mut zip::ZipWriter<std::fs::File>,
    options: SimpleFileOptions,
) -> Result<u64, String> {
    let Some(cold) = cold.filter(|_| !refs.is_empty()) else {
        return Ok(0);
    };
    let storage = catalog::storage(snap, &def.options.storage_id)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("the storage of {} does not exist", def.qualified_name()))?;
    let backend: Arc<dyn folddb_materializer::cold::backend::Backend> =
        cold.backend(&storage).map_err(|e| e.to_string())?;
    let mut seen = std::collections::HashSet::new();
    for json in refs {
        let Ok(file) = serde_json::from_str::<super::files::FileRef>(&json) else {
            continue;
        };
        let stored = file.stored_name();
        if !super::files::valid_download_path(&file.sub, &stored)
            || !seen.insert((file.sub.clone(), stored.clone()))
        {
            continue;
        }
        let rel = format!("{}/{stored}", file.sub);
        let from = format!("{}/{rel}", scope_dir(&storage, def, user));
        let Some(mut source) = backend.open(&from)? else {
            return Err(format!(
                "file '{rel}' of {} is missing from its storage",
                def.qualified_name()
            ));
        };
        zip.start_file(format!("files/{name}/{rel}"), options)
            .map_err(zip_err)?;
        match &mut source {
            Source::File(f) => std::io::copy(f, zip),
            Source::Bytes(b) => std::io::copy(&mut b.as_ref(), zip),
        }
        .map_err(zip_err)?;
    }
    Ok(seen.len() as u64)
}

#[cfg(test)]
mod tests {
    #[test]
    fn export_ids_are_plain() {
        assert!(super::valid_export_id("UE-01jd5kq2x3ab"));
        for bad in ["", "../x", "a/b", "a.zip", "a b", &"x".repeat(65)] {
            assert!(!super::valid_export_id(bad), "{bad:?}");
        }
    }
}
