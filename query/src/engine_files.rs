//! FILE columns (API.md 1.7.1, 1.8, 3.5): the bytes of an upload are written to the table
//! scope's storage, in `fNNNN` subfolders beside its cold data, **before** the statement that
//! references them is proposed, so an acknowledged row never points at a missing file. The
//! row — and so the log — holds only the file's [`FileRef`] (its id, name, size, type and
//! SHA-256), never its bytes. A statement that fails before it could be committed removes
//! its files again; one whose outcome is unknown (a timeout, the leader lost) leaves them:
//! at worst a file nothing references.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use folddb_materializer::JobKind;
use folddb_materializer::catalog::{self, StorageDef, TableDef, TableKind};
use folddb_materializer::cold::backend::{Backend, Source};
use folddb_materializer::cold::store::scope_dir;
use serde::{Deserialize, Serialize};

use super::authz::{named_tables, shared_allowed};
use super::{Answer, Engine, StmtResult};
use crate::dialect::{self, Statement};
use crate::error::Error;
use crate::prepared::Prepared;
use crate::provider::Caller;
use crate::request::{ErrorCode, SqlError, SqlRequest};

/// Files a subfolder holds before the next one is started (API.md 3.5).
pub const FILES_PER_SUBFOLDER: u64 = 5000;
/// Longest part of a client's file name kept in the stored name.
const NAME_CHARS: usize = 50;

/// By (table id, scope): the number of the subfolder uploads go to, and the files in it.
pub(super) type FileCounts = std::collections::HashMap<(u64, String), (u32, u64)>;

/// One uploaded file, on the server's disk until the engine stores it.
#[derive(Debug, Clone)]
pub struct Upload {
    /// The placeholder the SQL names it by: the part `file:<placeholder>`.
    pub placeholder: String,
    /// The file name the client gave (else the placeholder).
    pub name: String,
    pub mime: String,
    /// Where its bytes are: a file the engine takes over (moved into a storage on the same
    /// filesystem, else copied).
    pub path: PathBuf,
    pub size: u64,
    /// Hex SHA-256 of its bytes.
    pub sha256: String,
}

/// What a FILE cell holds, as JSON text (API.md 3.5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRef {
    pub id: String,
    pub sub: String,
    pub name: String,
    pub size: u64,
    pub mime: String,
    pub sha256: String,
}

impl FileRef {
    /// The name the file is stored under in its subfolder:
    /// `<id>-<sanitized name>.<ext>`, or `<id>.<ext>` (API.md 3.5).
    pub fn stored_name(&self) -> String {
        stored_name(&self.id, &self.name)
    }
}

fn sanitized(text: &str, max: usize) -> String {
    let mut out = String::new();
    for c in text.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
        if out.len() >= max {
            break;
        }
    }
    out.trim_matches('-').to_owned()
}

/// `<id>-<sanitized lowercase name without its extension, ≤ 50 characters>.<ext>`.
pub fn stored_name(id: &str, name: &str) -> String {
    // The name's last path component; its extension only if it is a plain one.
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let (stem, ext) = match base.rsplit_once('.') {
        Some((stem, ext))
            if !stem.is_empty()
                && (1..=16).contains(&ext.len())
                && ext.bytes().all(|b| b.is_ascii_alphanumeric()) =>
        {
            (stem, ext.to_ascii_lowercase())
        }
        _ => (base, String::new()),
    };
    let stem = sanitized(stem, NAME_CHARS);
    let mut out = id.to_owned();
    if !stem.is_empty() {
        out.push('-');
        out.push_str(&stem);
    }
    if !ext.is_empty() {
        out.push('.');
        out.push_str(&ext);
    }
    out
}

/// Whether `sub` names a subfolder (`f` and 4 digits) and `file` a stored file name: no
/// path separators, `..` or NUL (API.md 1.8).
pub fn valid_download_path(sub: &str, file: &str) -> bool {
    let sub_ok =
        sub.len() == 5 && sub.starts_with('f') && sub[1..].bytes().all(|b| b.is_ascii_digit());
    let file_ok = !file.is_empty()
        && file.len() <= 255
        && !file.contains("..")
        && !file.contains(['/', '\\', '\0'])
        && file.bytes().all(|b| b.is_ascii_graphic());
    sub_ok && file_ok
}

/// One `FILE("name")` / `FILE('name')` call in a statement: its byte range and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placeholder {
    pub start: usize,
    pub end: usize,
    pub name: String,
}

/// The `FILE(…)` placeholders of `sql`, outside string literals and comments; a malformed
/// one is an error.
pub fn placeholders(sql: &str) -> Result<Vec<Placeholder>, String> {
    let b = sql.as_bytes();
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let skip_ws = |mut i: usize| {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        i
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\'' | b'"' => {
                // A string literal or a quoted identifier ('' and "" escape their quote).
                let q = b[i];
                i += 1;
                while i < b.len() {
                    if b[i] == q {
                        if b.get(i + 1) == Some(&q) {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
                i += 1;
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i = sql[i + 2..].find("*/").map_or(b.len(), |at| i + 2 + at + 2);
            }
            c if ident(c) => {
                let start = i;
                while i < b.len() && ident(b[i]) {
                    i += 1;
                }
                if !sql[start..i].eq_ignore_ascii_case("file") {
                    continue;
                }
                let open = skip_ws(i);
                if b.get(open) != Some(&b'(') {
                    continue; // FILE as a word (a type, a column name)
                }
                let q_at = skip_ws(open + 1);
                let quote = match b.get(q_at) {
                    Some(&q @ (b'\'' | b'"')) => q,
                    _ => {
                        return Err(
                            "FILE(…) takes the name of an uploaded file part, quoted: FILE(\"name\")"
                                .into(),
                        );
                    }
                };
                let name_end = sql[q_at + 1..]
                    .find(quote as char)
                    .map(|at| q_at + 1 + at)
                    .ok_or("an unterminated FILE(…) placeholder")?;
                let name = &sql[q_at + 1..name_end];
                let close = skip_ws(name_end + 1);
                if b.get(close) != Some(&b')') {
                    return Err(format!("FILE(\"{name}\" is not closed with ')'"));
                }
                if name.is_empty() || name.len() > 128 {
                    return Err("a FILE(…) placeholder needs a name of 1 to 128 bytes".into());
                }
                out.push(Placeholder {
                    start,
                    end: close + 1,
                    name: name.to_owned(),
                });
                i = close + 1;
            }
            _ => i += 1,
        }
    }
    Ok(out)
}

/// `sql` with each placeholder replaced by `with(name)`.
fn substitute(sql: &str, found: &[Placeholder], with: impl Fn(&str) -> String) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut at = 0;
    for p in found {
        out.push_str(&sql[at..p.start]);
        out.push_str(&with(&p.name));
        at = p.end;
    }
    out.push_str(&sql[at..]);
    out
}

fn sql_string(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

fn file_error(code: ErrorCode, message: impl Into<String>) -> SqlError {
    SqlError::new(code, message)
}

/// Where an upload's files go: the table, its storage and the scope's directory in it.
struct Target {
    def: TableDef,
    backend: Arc<dyn Backend>,
    dir: String,
}

/// A file a download reads: its bytes, length and stored name.
pub struct Download {
    pub source: Source,
    pub len: u64,
    pub name: String,
}

impl std::fmt::Debug for Download {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Download")
            .field("len", &self.len)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Why a download is refused.
#[derive(Debug)]
pub enum DownloadError {
    /// 400: a malformed path, a STREAM or system table, `user_id` on a SHARED table.
    BadRequest(String),
    /// 403: the caller may not read it.
    Denied(String),
    /// 404 `{"error":"Table 'ns.t' not found"}`.
    TableNotFound(String),
    /// 404 `FILE_NOT_FOUND`.
    FileNotFound,
    /// 500: the storage failed.
    Storage(String),
}

impl Engine {
    /// Runs a multipart request (API.md 1.7.1): exactly one INSERT or UPDATE of a USER or
    /// SHARED table, authorized first; each of `uploads` stored in the table scope's
    /// storage; then the statement with each `FILE("…")` replaced by its file's [`FileRef`].
    pub async fn execute_with_files(
        &self,
        caller: &Caller,
        request: &SqlRequest,
        uploads: Vec<Upload>,
    ) -> Result<Answer, SqlError> {
        let found =
            placeholders(&request.sql).map_err(|m| file_error(ErrorCode::InvalidInput, m))?;
        let mut by_name: BTreeMap<&str, &Upload> = BTreeMap::new();
        for u in &uploads {
            by_name.insert(&u.placeholder, u);
        }
        for p in &found {
            if !by_name.contains_key(p.name.as_str()) {
                return Err(file_error(
                    ErrorCode::MissingFile,
                    format!("FILE(\"{}\") has no part 'file:{}'", p.name, p.name),
                ));
            }
        }
        if let Some(extra) = uploads
            .iter()
            .find(|u| !found.iter().any(|p| p.name == u.placeholder))
        {
            return Err(file_error(
                ErrorCode::ExtraFile,
                format!(
                    "part 'file:{}' is not referenced by a FILE(\"{}\") placeholder",
                    extra.placeholder, extra.placeholder
                ),
            ));
        }
        let (target, scope) = self
            .upload_target(caller, request, &found)
            .map_err(|e| SqlError::from(e).for_role(caller.role))?;
        let stored = self.store_uploads(&target, &scope, &uploads).await?;
        let json: BTreeMap<&str, String> = stored
            .iter()
            .map(|(placeholder, r, _)| {
                (
                    placeholder.as_str(),
                    serde_json::to_string(r).unwrap_or_default(),
                )
            })
            .collect();
        let sql = substitute(&request.sql, &found, |name| {
            sql_string(json.get(name).map_or("", String::as_str))
        });
        let rewritten = SqlRequest {
            sql,
            params: request.params.clone(),
            namespace: request.namespace.clone(),
        };
        let answer = self.execute_streamed(caller, &rewritten).await;
        if let Err(e) = &answer
            && !matches!(
                e.code,
                ErrorCode::InternalError
                    | ErrorCode::ClusterUnavailable
                    | ErrorCode::StatementTimeout
            )
        {
            // Refused before it could commit: nothing references the files.
            let paths: Vec<String> = stored.into_iter().map(|(_, _, path)| path).collect();
            let backend = target.backend.clone();
            let _ = tokio::task::spawn_blocking(move || {
                for path in paths {
                    if let Err(e) = backend.remove(&path) {
                        tracing::warn!(error = %e, "removing an upload of a failed statement");
                    }
                }
            })
            .await;
        }
        answer
    }

    /// The table a multipart request writes and the scope its files belong to, with the
    /// caller's right to write it checked (the statement is checked again when it runs).
    fn upload_target(
        &self,
        caller: &Caller,
        request: &SqlRequest,
        found: &[Placeholder],
    ) -> StmtResult<(Target, String)> {
        let namespace = request
            .namespace
            .clone()
            .filter(|n| !n.is_empty())
            .map(|n| n.to_ascii_lowercase())
            .unwrap_or_else(|| "default".to_owned());
        // Placeholders stand for string literals: the statement is checked with empty ones.
        let probe = substitute(&request.sql, found, |_| "''".to_owned());
        let statements = crate::split::split_statements(&probe)
            .map_err(|e| Error::InvalidInput(e.to_string()))?;
        let [stmt] = statements.as_slice() else {
            return Err(Error::InvalidInput(
                "a request with files holds exactly one statement".into(),
            ));
        };
        let p = Prepared::new(stmt).map_err(Error::InvalidSql)?;
        let c = dialect::classify_typed(&p)?;
        self.authorize(caller, &namespace, &c, &p)?;
        let (writer, statement, p) = match c {
            Statement::ExecuteAs { user, sql } => self.impersonate(caller, &user, &sql)?,
            other => (caller.clone(), other, p),
        };
        if !matches!(statement, Statement::Insert | Statement::Update) {
            return Err(Error::InvalidInput(
                "FILE placeholders go in an INSERT or UPDATE".into(),
            ));
        }
        let Some((ns, t, _)) = named_tables(&namespace, &p).into_iter().find(|n| n.2) else {
            return Err(Error::InvalidInput(
                "the statement names no table to write".into(),
            ));
        };
        let def = catalog::table(self.store.as_ref(), &ns, &t)?
            .ok_or_else(|| Error::NotFound(format!("Table {ns}.{t} does not exist")))?;
        let scope = match def.kind {
            TableKind::User => writer.user.clone(),
            TableKind::Shared => String::new(),
            _ => {
                return Err(Error::InvalidInput(format!(
                    "files go in USER and SHARED tables; {} is a {} table",
                    def.qualified_name(),
                    def.kind.name()
                )));
            }
        };
        shared_allowed(&writer, &def, true)?;
        let (storage, backend) = self.storage_of(&def)?;
        if self.cold_in_cluster.is_some()
            && storage.kind == folddb_materializer::catalog::StorageKind::Filesystem
        {
            return Err(Error::InvalidInput(format!(
                "table {} is on storage '{}', a directory of each node: in a cluster, files \
                 are stored only on object storage every member reads",
                def.qualified_name(),
                storage.id
            )));
        }
        let dir = scope_dir(&storage, &def, &scope);
        Ok((Target { def, backend, dir }, scope))
    }

    fn storage_of(&self, def: &TableDef) -> StmtResult<(StorageDef, Arc<dyn Backend>)> {
        let storage =
            catalog::storage(self.store.as_ref(), &def.options.storage_id)?.ok_or_else(|| {
                Error::Internal(format!(
                    "table {} is on storage '{}', which does not exist",
                    def.qualified_name(),
                    def.options.storage_id
                ))
            })?;
        let cold = self
            .cold()
            .ok_or_else(|| Error::Internal("this server has no cold tier for files".into()))?;
        let backend = cold
            .backend(&storage)
            .map_err(|e| Error::Internal(e.to_string()))?;
        Ok((storage, backend))
    }

    /// Writes each upload durably to the target's storage: (placeholder, reference, path
    /// in the storage) of each.
    async fn store_uploads(
        &self,
        target: &Target,
        scope: &str,
        uploads: &[Upload],
    ) -> Result<Vec<(String, FileRef, String)>, SqlError> {
        let mut stored = Vec::with_capacity(uploads.len());
        for u in uploads {
            let id = self.ids.next(super::now_ms()).to_string();
            let sub = self.subfolder(target, scope).await?;
            let r = FileRef {
                id,
                sub,
                name: u.name.clone(),
                size: u.size,
                mime: u.mime.clone(),
                sha256: u.sha256.clone(),
            };
            let path = format!("{}/{}/{}", target.dir, r.sub, r.stored_name());
            let (backend, from, to) = (target.backend.clone(), u.path.clone(), path.clone());
            let written = tokio::task::spawn_blocking(move || backend.adopt(&to, &from))
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r);
            if let Err(e) = written {
                return Err(SqlError::from(Error::Internal(format!(
                    "storing file '{}': {e}",
                    u.name
                ))));
            }
            stored.push((u.placeholder.clone(), r, path));
        }
        Ok(stored)
    }

    /// The subfolder the next file of `scope` goes to: the last one, until it holds
    /// [`FILES_PER_SUBFOLDER`] files (counted from the storage the first time, then here).
    async fn subfolder(&self, target: &Target, scope: &str) -> Result<String, SqlError> {
        let key = (target.def.id.0, scope.to_owned());
        let known = self
            .file_counts
            .lock()
            .ok()
            .and_then(|m| m.get(&key).copied());
        let (n, count) = match known {
            Some(k) => k,
            None => {
                let (backend, dir) = (target.backend.clone(), target.dir.clone());
                tokio::task::spawn_blocking(move || -> Result<(u32, u64), String> {
                    let listing = backend.list(&dir)?;
                    let last = listing
                        .dirs
                        .iter()
                        .filter(|d| d.len() == 5 && d.starts_with('f'))
                        .filter_map(|d| d[1..].parse::<u32>().ok())
                        .max();
                    match last {
                        None => Ok((1, 0)),
                        Some(n) => {
                            let files = backend.list(&format!("{dir}/f{n:04}"))?.files;
                            Ok((n, files.len() as u64))
                        }
                    }
                })
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r)
                .map_err(|e| SqlError::from(Error::Internal(format!("listing files: {e}"))))?
            }
        };
        let (n, count) = if count >= FILES_PER_SUBFOLDER {
            (n + 1, 0)
        } else {
            (n, count)
        };
        if let Ok(mut m) = self.file_counts.lock() {
            m.insert(key, (n, count + 1));
        }
        Ok(format!("f{n:04}"))
    }

    /// The file `sub/file` of table `namespace.table`, for `caller` (API.md 1.8): of the
    /// caller's own scope of a USER table, or of `user_id`'s if the caller may act as that
    /// user; of a SHARED table if the caller may read it.
    pub async fn download(
        &self,
        caller: &Caller,
        namespace: &str,
        table: &str,
        sub: &str,
        file: &str,
        user_id: Option<&str>,
    ) -> Result<Download, DownloadError> {
        if !valid_download_path(sub, file) {
            return Err(DownloadError::BadRequest(
                "a file path is f<4 digits>/<stored name>, without '..', '/', '\\' or NUL".into(),
            ));
        }
        let (ns, t) = (namespace.to_ascii_lowercase(), table.to_ascii_lowercase());
        let def = match catalog::table(self.store.as_ref(), &ns, &t) {
            Ok(Some(def)) => def,
            Ok(None) => return Err(DownloadError::TableNotFound(format!("{ns}.{t}"))),
            Err(e) => return Err(DownloadError::Storage(e.to_string())),
        };
        let scope = match (def.kind, user_id) {
            (TableKind::User, None) => caller.user.clone(),
            (TableKind::User, Some(user)) => {
                self.may_act_as(caller, user)
                    .map_err(|e| DownloadError::Denied(e.to_string()))?;
                user.to_owned()
            }
            (TableKind::Shared, None) => {
                shared_allowed(caller, &def, false)
                    .map_err(|e| DownloadError::Denied(e.to_string()))?;
                String::new()
            }
            (TableKind::Shared, Some(_)) => {
                return Err(DownloadError::BadRequest(
                    "user_id applies to USER tables only".into(),
                ));
            }
            (kind, _) => {
                return Err(DownloadError::BadRequest(format!(
                    "{} tables hold no files",
                    kind.name()
                )));
            }
        };
        let (storage, backend) = self
            .storage_of(&def)
            .map_err(|e| DownloadError::Storage(e.to_string()))?;
        let path = format!("{}/{sub}/{file}", scope_dir(&storage, &def, &scope));
        let name = file.to_owned();
        tokio::task::spawn_blocking(move || {
            let source = backend
                .open(&path)
                .map_err(DownloadError::Storage)?
                .ok_or(DownloadError::FileNotFound)?;
            let len = match &source {
                Source::Bytes(b) => b.len() as u64,
                Source::File(f) => f
                    .metadata()
                    .map_err(|e| DownloadError::Storage(format!("{path}: {e}")))?
                    .len(),
            };
            Ok(Download { source, len, name })
        })
        .await
        .map_err(|e| DownloadError::Storage(e.to_string()))?
    }
}

/// The stored files of one table scope: (path in the storage, file id) of each.
fn stored_files(backend: &dyn Backend, dir: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for sub in backend.list(dir)?.dirs {
        if !valid_download_path(&sub, "x") {
            continue;
        }
        let sub_dir = format!("{dir}/{sub}");
        for name in backend.list(&sub_dir)?.files {
            let id: String = name.chars().take_while(char::is_ascii_digit).collect();
            if !id.is_empty() {
                out.push((format!("{sub_dir}/{name}"), id));
            }
        }
    }
    Ok(out)
}

/// When the file of snowflake id `id` was stored (ms since the Unix epoch).
fn stored_at_ms(id: &str) -> Option<u64> {
    let id: u64 = id.parse().ok()?;
    Some((id >> 22) + folddb_materializer::seq::SEQ_EPOCH_UNIX_MS)
}

impl Engine {
    /// Removes the stored files no row of their table scope references any more and the
    /// change journal no longer holds (a file replaced or deleted past the journal's reach,
    /// or stored for a statement that never committed), once they are older than `grace`
    /// (an upload stores its files before its statement is proposed). Each table it removes
    /// files of is a `CL-…` job; the problems met, as text.
    pub async fn sweep_files(&self, grace: std::time::Duration) -> Vec<String> {
        let tables = match catalog::tables(self.store.as_ref(), None) {
            Ok(t) => t,
            Err(e) => return vec![e.to_string()],
        };
        let mut problems = Vec::new();
        for def in tables.into_iter().filter(|d| {
            matches!(d.kind, TableKind::User | TableKind::Shared)
                && d.columns
                    .iter()
                    .any(|c| c.data_type == folddb_materializer::DataType::File)
        }) {
            let (storage, backend) = match self.storage_of(&def) {
                Ok(s) => s,
                Err(e) => {
                    problems.push(e.to_string());
                    continue;
                }
            };
            let (store, cold) = (self.store.clone(), self.cold().cloned());
            let cutoff = super::now_ms().saturating_sub(grace.as_millis() as u64);
            let target = def.qualified_name();
            let swept = tokio::task::spawn_blocking(move || {
                sweep_table(
                    &store,
                    cold.as_deref(),
                    &def,
                    &storage,
                    backend.as_ref(),
                    cutoff,
                )
            })
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r);
            match swept {
                Ok((0, _)) => {}
                Ok((removed, bytes)) => {
                    if let Some(id) = self.jobs.queue(JobKind::FileCleanup, &target) {
                        self.jobs.start(&id);
                        self.jobs.finish(
                            &id,
                            Ok(format!(
                                "removed {removed} files ({bytes} bytes) no row of {target} references"
                            )),
                        );
                    }
                }
                Err(e) => problems.push(format!("{target}: {e}")),
            }
        }
        problems
    }
}

/// [`Engine::sweep_files`] of one table: the files removed and their bytes.
fn sweep_table(
    store: &folddb_materializer::HotStore,
    cold: Option<&folddb_materializer::cold::ColdStore>,
    def: &TableDef,
    storage: &StorageDef,
    backend: &dyn Backend,
    cutoff_ms: u64,
) -> Result<(u64, u64), String> {
    let scopes: Vec<String> = match def.kind {
        TableKind::Shared => vec![String::new()],
        _ => {
            let dir = folddb_materializer::cold::store::table_dir(storage, def);
            backend
                .list(&dir)?
                .dirs
                .into_iter()
                .filter(|user| {
                    scope_dir(storage, def, user)
                        == folddb_materializer::cold::backend::join(&dir, user)
                })
                .collect()
        }
    };
    let (mut removed, mut bytes) = (0, 0);
    for scope in scopes {
        let files = stored_files(backend, &scope_dir(storage, def, &scope))?;
        let old: Vec<_> = files
            .into_iter()
            .filter(|(_, id)| stored_at_ms(id).is_some_and(|ms| ms < cutoff_ms))
            .collect();
        if old.is_empty() {
            continue;
        }
        let referenced = folddb_materializer::files::referenced(store, cold, def, &scope)
            .map_err(|e| e.to_string())?;
        for (path, id) in old {
            if referenced.contains(&id) {
                continue;
            }
            let size = match backend.open(&path)? {
                Some(Source::File(f)) => f.metadata().map_or(0, |m| m.len()),
                Some(Source::Bytes(b)) => b.len() as u64,
                None => continue,
            };
            backend.remove(&path)?;
            removed += 1;
            bytes += size;
        }
    }
    Ok((removed, bytes))
}

#[cfg(test)]
#[path = "engine_files_test.rs"]
mod tests;
