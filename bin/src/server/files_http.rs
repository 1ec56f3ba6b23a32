//! FILE uploads and downloads over HTTP (API.md 1.7.1, 1.8).
//!
//! - `POST /v1/api/sql` as `multipart/form-data`: parts `sql`, optional `params` (a JSON
//!   array as text) and `namespace_id`, and one `file:<placeholder>` part per file. The body
//!   is read as it streams: each file goes to a temporary file of the data directory,
//!   hashed on the way, and is refused as soon as it passes [`MAX_FILE_BYTES`]; then the
//!   engine stores the files in the table's storage and runs the statement
//!   ([`folddb_query::Engine::execute_with_files`]).
//! - `GET /v1/files/{namespace}/{table}/{subfolder}/{file}[?user_id=…]`: the file's bytes,
//!   typed by its extension, with `Range` requests (one range) answered `206`.
//! - `GET /v1/exports/{user_id}/{export_id}`: a user's export zip (`EXPORT USER DATA`), for
//!   its owner or dba/system, served the same way.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use futures::{Stream, StreamExt};
use serde_json::{Value as Json, json};
use sha2::{Digest, Sha256};
use warp::http::{HeaderMap, HeaderValue, Response, StatusCode};

use folddb_materializer::cold::backend::Source;
use folddb_query::SqlRequest;
use folddb_query::engine::export::ExportError;
use folddb_query::engine::files::{Download, DownloadError, Upload};

use super::{Reply, State, read_barrier, reply, sql_caller, sql_error, sql_reply};

/// Largest file of an upload (API.md 1.7.1).
pub(crate) const MAX_FILE_BYTES: u64 = 25 << 20;
/// Most files in one request.
pub(crate) const MAX_FILES: usize = 20;
/// Largest `sql`, `params` or `namespace_id` part.
const MAX_TEXT_PART_BYTES: usize = 1 << 20;
/// Bytes read from a stored file at a time while it is sent.
const SEND_CHUNK: usize = 256 << 10;

/// Whether a request is one this module reads the body of itself, as it streams.
pub(crate) fn streams(method: &warp::http::Method, path: &str, headers: &HeaderMap) -> bool {
    (method == warp::http::Method::POST && path == "/v1/api/sql" && is_multipart(headers))
        || (method == warp::http::Method::GET
            && (path.starts_with("/v1/files/") || path.starts_with("/v1/exports/")))
}

fn is_multipart(headers: &HeaderMap) -> bool {
    headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("multipart/form-data"))
}

/// Serves a request [`streams`] said is this module's.
pub(crate) async fn handle<S, B>(
    state: &State,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: S,
    idle: Duration,
) -> Reply
where
    S: Stream<Item = Result<B, warp::Error>> + Send + 'static,
    B: Buf + Send + 'static,
{
    if let Some(rest) = path.strip_prefix("/v1/exports/") {
        return export_download(state, rest, headers);
    }
    match path.strip_prefix("/v1/files/") {
        Some(rest) => download(state, rest, query, headers).await,
        None => upload(state, headers, body, idle).await,
    }
}

/// A part of an upload request that is wrong: the reply's code and message.
struct Refused(&'static str, String);

fn invalid(message: impl Into<String>) -> Refused {
    Refused("INVALID_INPUT", message.into())
}

/// What a multipart request carries, its files in temporary files (removed when dropped).
#[derive(Default)]
struct Parts {
    sql: Option<String>,
    params: Option<String>,
    namespace: Option<String>,
    files: Vec<(Upload, tempfile::NamedTempFile)>,
}

async fn upload<S, B>(state: &State, headers: &HeaderMap, body: S, idle: Duration) -> Reply
where
    S: Stream<Item = Result<B, warp::Error>> + Send + 'static,
    B: Buf + Send + 'static,
{
    let start = Instant::now();
    let caller = match sql_caller(state, headers, start) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    if let Some(r) = read_barrier(state).await {
        return r;
    }
    let refused = |Refused(code, message): Refused| {
        let status = if code == "REQUEST_TIMEOUT" {
            StatusCode::REQUEST_TIMEOUT
        } else {
            StatusCode::BAD_REQUEST
        };
        sql_error(status, code, &message, None, start)
    };
    let boundary = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| multer::parse_boundary(v).ok());
    let Some(boundary) = boundary else {
        return refused(invalid("multipart/form-data without a boundary"));
    };
    let body = body.map(|chunk| chunk.map(|mut b| b.copy_to_bytes(b.remaining())));
    let parts = match read_parts(state, body, boundary, idle).await {
        Ok(p) => p,
        Err(r) => return refused(r),
    };
    let Some(sql) = parts.sql else {
        return refused(invalid("a multipart request needs a 'sql' part"));
    };
    let params = match parts
        .params
        .as_deref()
        .map(serde_json::from_str::<Vec<Json>>)
    {
        None => None,
        Some(Ok(p)) => Some(p),
        Some(Err(e)) => {
            return refused(invalid(format!("'params' is not a JSON array: {e}")));
        }
    };
    let request = SqlRequest {
        sql,
        params,
        namespace: parts.namespace,
    };
    let (uploads, _held): (Vec<Upload>, Vec<tempfile::NamedTempFile>) =
        parts.files.into_iter().unzip();
    let answer = state
        .engine
        .execute_with_files(&caller, &request, uploads)
        .await;
    sql_reply(answer, start)
}

/// Reads every part of a multipart body, each file into a temporary file.
async fn read_parts(
    state: &State,
    body: impl Stream<Item = Result<Bytes, warp::Error>> + Send + 'static,
    boundary: String,
    idle: Duration,
) -> Result<Parts, Refused> {
    let limits = multer::Constraints::new().size_limit(
        multer::SizeLimit::new()
            .whole_stream(MAX_FILE_BYTES * MAX_FILES as u64 + 4 * MAX_TEXT_PART_BYTES as u64),
    );
    let mut multipart = multer::Multipart::with_constraints(body, boundary, limits);
    let mut parts = Parts::default();
    loop {
        let field = tokio::time::timeout(idle, multipart.next_field())
            .await
            .map_err(|_| timed_out(idle))?
            .map_err(malformed)?;
        let Some(mut field) = field else {
            return Ok(parts);
        };
        let name = field.name().unwrap_or_default().to_owned();
        if let Some(placeholder) = name.strip_prefix("file:") {
            if parts.files.len() == MAX_FILES {
                return Err(Refused(
                    "TOO_MANY_FILES",
                    format!("a request carries at most {MAX_FILES} files"),
                ));
            }
            if placeholder.is_empty()
                || parts
                    .files
                    .iter()
                    .any(|(u, _)| u.placeholder == placeholder)
            {
                return Err(invalid(format!(
                    "part '{name}': each file part names a placeholder of its own"
                )));
            }
            let file_name = field
                .file_name()
                .filter(|n| !n.is_empty())
                .unwrap_or(placeholder)
                .to_owned();
            let mime = field
                .content_type()
                .map(ToString::to_string)
                .filter(|m| m != "application/octet-stream")
                .or_else(|| {
                    mime_guess::from_path(&file_name)
                        .first()
                        .map(|m| m.to_string())
                })
                .unwrap_or_else(|| "application/octet-stream".to_owned());
            let mut temp = tempfile::NamedTempFile::new_in(uploads_dir(state))
                .map_err(|e| Refused("INTERNAL_ERROR", format!("a temporary file: {e}")))?;
            let mut hasher = Sha256::new();
            let mut size = 0u64;
            while let Some(chunk) = next_chunk(&mut field, idle).await? {
                size += chunk.len() as u64;
                if size > MAX_FILE_BYTES {
                    return Err(Refused(
                        "FILE_TOO_LARGE",
                        format!(
                            "file '{file_name}' is larger than the limit of {MAX_FILE_BYTES} bytes"
                        ),
                    ));
                }
                hasher.update(&chunk);
                tokio::task::block_in_place(|| temp.write_all(&chunk))
                    .map_err(|e| Refused("INTERNAL_ERROR", format!("a temporary file: {e}")))?;
            }
            let upload = Upload {
                placeholder: placeholder.to_owned(),
                name: file_name,
                mime,
                path: temp.path().to_path_buf(),
                size,
                sha256: hasher
                    .finalize()
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect(),
            };
            parts.files.push((upload, temp));
            continue;
        }
        let slot = match name.as_str() {
            "sql" => &mut parts.sql,
            "params" => &mut parts.params,
            "namespace_id" => &mut parts.namespace,
            other => {
                return Err(invalid(format!(
                    "unknown part '{other}': parts are sql, params, namespace_id and \
                     file:<placeholder>"
                )));
            }
        };
        let mut text = Vec::new();
        while let Some(chunk) = next_chunk(&mut field, idle).await? {
            text.extend_from_slice(&chunk);
            if text.len() > MAX_TEXT_PART_BYTES {
                return Err(invalid(format!(
                    "part '{name}' is larger than {MAX_TEXT_PART_BYTES} bytes"
                )));
            }
        }
        let text =
            String::from_utf8(text).map_err(|_| invalid(format!("part '{name}' is not UTF-8")))?;
        if slot.replace(text).is_some() {
            return Err(invalid(format!("part '{name}' is sent twice")));
        }
    }
}

fn timed_out(idle: Duration) -> Refused {
    Refused(
        "REQUEST_TIMEOUT",
        format!("no part of the body arrived for {} s", idle.as_secs()),
    )
}

fn malformed(e: multer::Error) -> Refused {
    invalid(format!("malformed multipart body: {e}"))
}

/// The next chunk of a part, waiting at most `idle` for it.
async fn next_chunk(
    field: &mut multer::Field<'static>,
    idle: Duration,
) -> Result<Option<Bytes>, Refused> {
    tokio::time::timeout(idle, field.chunk())
        .await
        .map_err(|_| timed_out(idle))?
        .map_err(malformed)
}

/// Where uploads wait for the engine (`tmp/uploads/` of the data directory).
fn uploads_dir(state: &State) -> &Path {
    &state.uploads
}

async fn download(state: &State, rest: &str, query: &str, headers: &HeaderMap) -> Reply {
    let error = |status: StatusCode, body: Json| reply(status, &body);
    let start = Instant::now();
    let caller = match sql_caller(state, headers, start) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let segments = decoded_segments(rest);
    let [namespace, table, sub, file] = segments.as_slice() else {
        return error(
            StatusCode::BAD_REQUEST,
            json!({"error": "A file path is /v1/files/{namespace}/{table}/{subfolder}/{file}",
                   "code": "INVALID_INPUT"}),
        );
    };
    let query: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap_or_default();
    let user_id = query
        .iter()
        .find(|(k, _)| k == "user_id")
        .map(|(_, v)| v.as_str());
    let found = state
        .engine
        .download(&caller, namespace, table, sub, file, user_id)
        .await;
    let download = match found {
        Ok(d) => d,
        Err(DownloadError::BadRequest(m)) => {
            return error(
                StatusCode::BAD_REQUEST,
                json!({"error": m, "code": "INVALID_INPUT"}),
            );
        }
        Err(DownloadError::Denied(m)) => {
            return error(
                StatusCode::FORBIDDEN,
                json!({"error": m, "code": "PERMISSION_DENIED"}),
            );
        }
        Err(DownloadError::TableNotFound(t)) => {
            return error(
                StatusCode::NOT_FOUND,
                json!({"error": format!("Table '{t}' not found")}),
            );
        }
        Err(DownloadError::FileNotFound) => {
            return error(
                StatusCode::NOT_FOUND,
                json!({"error": "File not found", "code": "FILE_NOT_FOUND"}),
            );
        }
        Err(DownloadError::Storage(m)) => {
            tracing::warn!(error = %m, "reading a file for a download");
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"error": "The file could not be read", "code": "INTERNAL_ERROR"}),
            );
        }
    };
    let range = headers
        .get("range")
        .and_then(|v| v.to_str().ok())
        .map(|v| byte_range(v, download.len));
    send(download, range)
}

/// Removes, every `every`, the stored files no row references any more, once older than
/// `grace` (on the leader only: a follower may not have applied the row that references a
/// new file yet).
pub(crate) async fn sweep_files(state: std::sync::Arc<State>, every: Duration, grace: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if state.node.is_cluster() && !state.node.status().is_leader {
            continue;
        }
        for problem in state.engine.sweep_files(grace).await {
            tracing::warn!(%problem, "removing files no row references");
        }
    }
}

/// The `/`-separated segments of a path, each percent-decoded (an encoded `..`, `/` or
/// `\\` stays inside its segment, for the caller to check).
fn decoded_segments(rest: &str) -> Vec<String> {
    rest.split('/')
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect()
}

/// At start: undoes the restores a crash cut off, retrying until it can (a cluster's node
/// proposes once there is a leader).
pub(crate) async fn recover_restores(state: std::sync::Arc<State>) {
    loop {
        let problems = state.engine.recover_restores().await;
        if problems.is_empty() {
            return;
        }
        for problem in problems {
            tracing::warn!(%problem, "undoing an interrupted restore");
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// `GET /v1/exports/{user_id}/{export_id}` (API.md 1.8).
fn export_download(state: &State, rest: &str, headers: &HeaderMap) -> Reply {
    let caller = match sql_caller(state, headers, Instant::now()) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let not_found = || {
        reply(
            StatusCode::NOT_FOUND,
            &json!({"error": "Export not found", "code": "EXPORT_NOT_FOUND"}),
        )
    };
    let segments = decoded_segments(rest);
    let [user, export] = segments.as_slice() else {
        return not_found();
    };
    let path = match state.engine.export_file(&caller, user, export) {
        Ok(p) => p,
        Err(ExportError::Denied) => {
            return reply(
                StatusCode::FORBIDDEN,
                &json!({"error": "Permission denied: only the export's owner, dba or system may \
                                   download it",
                        "code": "PERMISSION_DENIED"}),
            );
        }
        Err(ExportError::NotFound) => return not_found(),
    };
    let opened = std::fs::File::open(&path).and_then(|f| f.metadata().map(|m| (f, m.len())));
    let Ok((file, len)) = opened else {
        return not_found();
    };
    let download = Download {
        source: Source::File(file),
        len,
        name: format!("{export}.zip"),
    };
    let range = headers
        .get("range")
        .and_then(|v| v.to_str().ok())
        .map(|v| byte_range(v, len));
    send(download, range)
}

/// A `Range` header's one byte range of a file of `len` bytes: `Some((first, last))`
/// inclusive; `None` when it cannot be satisfied. A header this server does not take (not
/// `bytes=`, several ranges) counts as absent: `Some((0, len - 1))`.
pub(crate) fn byte_range(header: &str, len: u64) -> Option<(u64, u64)> {
    let whole = Some((0, len.saturating_sub(1)));
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        return whole;
    };
    if spec.contains(',') {
        return whole;
    }
    let Some((from, to)) = spec.trim().split_once('-') else {
        return whole;
    };
    let (from, to) = (from.trim(), to.trim());
    let parse = |s: &str| s.parse::<u64>().ok();
    match (from.is_empty(), to.is_empty()) {
        // The last `to` bytes.
        (true, false) => {
            let n = parse(to)?;
            if n == 0 || len == 0 {
                return None;
            }
            Some((len.saturating_sub(n), len - 1))
        }
        (false, _) => {
            let first = parse(from)?;
            let last = if to.is_empty() {
                len.checked_sub(1)?
            } else {
                parse(to)?.min(len.checked_sub(1)?)
            };
            (first <= last && first < len).then_some((first, last))
        }
        (true, true) => whole,
    }
}

/// The reply carrying `download` (`range`: the header's, if it had one).
fn send(download: Download, range: Option<Option<(u64, u64)>>) -> Reply {
    let Download { source, len, name } = download;
    let mut r = Response::new(Vec::new());
    let headers = r.headers_mut();
    let mime = mime_guess::from_path(&name)
        .first()
        .map_or_else(|| "application/octet-stream".to_owned(), |m| m.to_string());
    let header = |v: String| HeaderValue::from_str(&v).ok();
    if let Some(v) = header(mime) {
        headers.insert("content-type", v);
    }
    if let Some(v) = header(format!("inline; filename=\"{name}\"")) {
        headers.insert("content-disposition", v);
    }
    headers.insert("accept-ranges", HeaderValue::from_static("bytes"));
    let (first, last) = match range {
        None => (0, len.saturating_sub(1)),
        Some(Some((first, last))) => {
            *r.status_mut() = StatusCode::PARTIAL_CONTENT;
            if let Some(v) = header(format!("bytes {first}-{last}/{len}")) {
                r.headers_mut().insert("content-range", v);
            }
            (first, last)
        }
        Some(None) => {
            *r.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
            if let Some(v) = header(format!("bytes */{len}")) {
                r.headers_mut().insert("content-range", v);
            }
            return r;
        }
    };
    let count = if len == 0 { 0 } else { last - first + 1 };
    if let Some(v) = header(count.to_string()) {
        r.headers_mut().insert("content-length", v);
    }
    let body: crate::http::BodyStream = match source {
        Source::Bytes(b) => {
            let part = b.slice(first as usize..(first + count) as usize);
            Box::pin(futures::stream::once(async move { Ok(part) }))
        }
        Source::File(mut f) => {
            if let Err(e) = f.seek(SeekFrom::Start(first)) {
                return reply(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &json!({"error": format!("The file could not be read: {e}"),
                            "code": "INTERNAL_ERROR"}),
                );
            }
            Box::pin(futures::stream::unfold(
                (Some(f), count),
                |(file, left)| async move {
                    let mut f = file.filter(|_| left > 0)?;
                    let want = left.min(SEND_CHUNK as u64) as usize;
                    let read = tokio::task::spawn_blocking(move || {
                        let mut buf = vec![0; want];
                        f.read_exact(&mut buf).map(|()| (f, buf))
                    })
                    .await
                    .map_err(std::io::Error::other)
                    .and_then(|r| r);
                    Some(match read {
                        Ok((f, buf)) => (Ok(Bytes::from(buf)), (Some(f), left - want as u64)),
                        // The body is cut short: the client sees fewer bytes than announced.
                        Err(e) => (Err(e), (None, 0)),
                    })
                },
            ))
        }
    };
    r.extensions_mut().insert(crate::http::Streamed::new(body));
    r
}

#[cfg(test)]
mod tests {
    use super::byte_range;

    #[test]
    fn byte_ranges_are_read_as_rfc_9110_says() {
        let len = 100;
        assert_eq!(byte_range("bytes=0-9", len), Some((0, 9)));
        assert_eq!(byte_range("bytes=90-", len), Some((90, 99)));
        assert_eq!(byte_range("bytes=-10", len), Some((90, 99)));
        assert_eq!(byte_range("bytes=-1000", len), Some((0, 99)));
        assert_eq!(byte_range("bytes=50-1000", len), Some((50, 99)));
        assert_eq!(byte_range("bytes=99-99", len), Some((99, 99)));
        // Unsatisfiable.
        assert_eq!(byte_range("bytes=100-", len), None);
        assert_eq!(byte_range("bytes=10-5", len), None);
        assert_eq!(byte_range("bytes=-0", len), None);
        assert_eq!(byte_range("bytes=0-0", 0), None);
        // Not taken: the whole file.
        assert_eq!(byte_range("items=0-9", len), Some((0, 99)));
        assert_eq!(byte_range("bytes=0-1,5-6", len), Some((0, 99)));
        assert_eq!(byte_range("bytes=x-9", len), None);
    }
}
