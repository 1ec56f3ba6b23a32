//! Where a storage's files live (API.md 3.10): the cold tier reads and writes through a
//! [`Backend`], one per storage. `filesystem` storages (the built-in `local` among them) are
//! directories of the node; `s3` storages are S3-compatible object stores reached through
//! the `object_store` crate.
//!
//! Paths handed to a backend are relative to the storage's base and use `/`. A write is
//! atomic and durable when it returns: a reader sees the old contents or the new ones,
//! never part of them, and a crash after the return keeps the new ones.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::catalog::{self, StorageDef, StorageKind};
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};

/// A storage failure: what failed, where.
pub type BackendResult<T> = Result<T, String>;

/// A file to read: an open file of the node, or an object's bytes.
#[derive(Debug)]
pub enum Source {
    File(File),
    Bytes(Bytes),
}

/// What a directory holds, by name.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Listing {
    pub files: Vec<String>,
    pub dirs: Vec<String>,
}

/// The files of one storage.
pub trait Backend: Send + Sync + std::fmt::Debug {
    /// Where `path` is, for messages and `system.manifest`: a filesystem path or a URL.
    fn locate(&self, path: &str) -> String;
    /// The file at `path`; `None` when there is none.
    fn open(&self, path: &str) -> BackendResult<Option<Source>>;
    /// Replaces `path` with `bytes`, atomically and durably.
    fn write(&self, path: &str, bytes: Vec<u8>) -> BackendResult<()>;
    /// Replaces `path` with what `from` holds, atomically and durably. The default reads it
    /// all into memory first; a backend that can stream does.
    fn write_from(&self, path: &str, from: &mut dyn std::io::Read) -> BackendResult<()> {
        let mut bytes = Vec::new();
        from.read_to_end(&mut bytes)
            .map_err(|e| format!("{}: {e}", self.locate(path)))?;
        self.write(path, bytes)
    }
    /// Replaces `path` with the file at `file`, which the caller gives up, atomically and
    /// durably. The default copies it; a directory on the same filesystem moves it.
    fn adopt(&self, path: &str, file: &Path) -> BackendResult<()> {
        let mut from = File::open(file).map_err(io_err(file))?;
        self.write_from(path, &mut from)
    }
    /// The files and directories directly inside `dir` (none when it does not exist).
    fn list(&self, dir: &str) -> BackendResult<Listing>;
    /// Removes the file at `path` (absent: nothing to do).
    fn remove(&self, path: &str) -> BackendResult<()>;
    /// Removes `dir` and everything under it (absent: nothing to do).
    fn remove_all(&self, dir: &str) -> BackendResult<()>;

    /// The whole file at `path`; `None` when there is none.
    fn read(&self, path: &str) -> BackendResult<Option<Bytes>> {
        match self.open(path)? {
            None => Ok(None),
            Some(Source::Bytes(b)) => Ok(Some(b)),
            Some(Source::File(mut f)) => {
                let mut buf = Vec::new();
                std::io::Read::read_to_end(&mut f, &mut buf)
                    .map_err(|e| format!("{}: {e}", self.locate(path)))?;
                Ok(Some(Bytes::from(buf)))
            }
        }
    }
}

/// Joins relative `/` paths, skipping empty parts.
pub fn join(dir: &str, name: &str) -> String {
    match (dir.is_empty(), name.is_empty()) {
        (true, _) => name.to_owned(),
        (_, true) => dir.to_owned(),
        _ => format!("{dir}/{name}"),
    }
}

/// A directory of the node's filesystem.
#[derive(Debug, Clone)]
pub struct LocalBackend {
    root: PathBuf,
}

impl LocalBackend {
    pub fn new(root: impl Into<PathBuf>) -> LocalBackend {
        LocalBackend { root: root.into() }
    }

    fn path(&self, path: &str) -> PathBuf {
        path.split('/')
            .filter(|c| !c.is_empty())
            .fold(self.root.clone(), |p, c| p.join(c))
    }
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> String + '_ {
    move |e| format!("{}: {e}", path.display())
}

impl Backend for LocalBackend {
    fn locate(&self, path: &str) -> String {
        self.path(path).display().to_string()
    }

    fn open(&self, path: &str) -> BackendResult<Option<Source>> {
        let full = self.path(path);
        match File::open(&full) {
            Ok(f) => Ok(Some(Source::File(f))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&full)(e)),
        }
    }

    /// Through a temporary file: write, fsync, rename, fsync the directory.
    fn write(&self, path: &str, bytes: Vec<u8>) -> BackendResult<()> {
        self.write_from(path, &mut bytes.as_slice())
    }

    /// [`LocalBackend::write`], copying from `from` a buffer at a time.
    fn write_from(&self, path: &str, from: &mut dyn std::io::Read) -> BackendResult<()> {
        let full = self.path(path);
        let dir = full.parent().unwrap_or(&self.root).to_path_buf();
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let name = full.file_name().map(|n| n.to_string_lossy().into_owned());
        let tmp = dir.join(format!("{}.tmp", name.unwrap_or_default()));
        let mut file = File::create(&tmp).map_err(io_err(&tmp))?;
        std::io::copy(from, &mut file).map_err(io_err(&tmp))?;
        file.sync_all().map_err(io_err(&tmp))?;
        drop(file);
        fs::rename(&tmp, &full).map_err(io_err(&full))?;
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(&dir))
    }

    /// Synced and renamed into place (then the directory synced); copied when `file` is on
    /// another filesystem.
    fn adopt(&self, path: &str, file: &Path) -> BackendResult<()> {
        let full = self.path(path);
        let dir = full.parent().unwrap_or(&self.root).to_path_buf();
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        File::open(file)
            .and_then(|f| f.sync_all())
            .map_err(io_err(file))?;
        match fs::rename(file, &full) {
            Ok(()) => File::open(&dir)
                .and_then(|d| d.sync_all())
                .map_err(io_err(&dir)),
            Err(e) if e.kind() == std::io::ErrorKind::CrossesDevices => {
                let mut from = File::open(file).map_err(io_err(file))?;
                self.write_from(path, &mut from)
            }
            Err(e) => Err(io_err(&full)(e)),
        }
    }

    fn list(&self, dir: &str) -> BackendResult<Listing> {
        let full = self.path(dir);
        let entries = match fs::read_dir(&full) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Listing::default()),
            Err(e) => return Err(io_err(&full)(e)),
        };
        let mut out = Listing::default();
        for entry in entries {
            let entry = entry.map_err(io_err(&full))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.path().is_dir() {
                out.dirs.push(name);
            } else {
                out.files.push(name);
            }
        }
        out.files.sort();
        out.dirs.sort();
        Ok(out)
    }

    fn remove(&self, path: &str) -> BackendResult<()> {
        let full = self.path(path);
        match fs::remove_file(&full) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err(&full)(e)),
            _ => Ok(()),
        }
    }

    fn remove_all(&self, dir: &str) -> BackendResult<()> {
        let full = self.path(dir);
        match fs::remove_dir_all(&full) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err(&full)(e)),
            _ => Ok(()),
        }
    }
}

/// The runtime object stores' requests run on, handed in by the program (a library builds
/// none): the cold tier is called synchronously, from the fold and from query threads, and
/// waits for the requests there. It must not be the runtime whose workers make those calls
/// (a worker waiting on its own runtime can starve it): `bin` gives a small runtime of its
/// own.
pub type IoRuntime = tokio::runtime::Handle;

/// Runs `work` on `io` and waits for it.
fn block<T: Send + 'static>(
    io: Option<&IoRuntime>,
    work: impl std::future::Future<Output = BackendResult<T>> + Send + 'static,
) -> BackendResult<T> {
    let io = io.ok_or("object storage needs an I/O runtime, and this process gave none")?;
    let (tx, rx) = std::sync::mpsc::channel();
    io.spawn(async move {
        let _ = tx.send(work.await);
    });
    rx.recv()
        .map_err(|_| "the object store request was abandoned".to_owned())?
}

/// An object store (S3-compatible; in tests, any [`ObjectStore`]) under a prefix.
#[derive(Debug, Clone)]
pub struct ObjectBackend {
    store: Arc<dyn ObjectStore>,
    /// Where its requests run (none: every request fails, saying so).
    io: Option<IoRuntime>,
    /// `s3://bucket/prefix`, for messages.
    url: String,
    prefix: String,
    /// A file larger than this is uploaded in parts of this size (S3 takes at most 5 GiB in
    /// one PUT, and a part of at least 5 MiB but the last).
    part_bytes: usize,
}

/// The default part size of a multipart upload: files up to it take one PUT.
pub const DEFAULT_PART_BYTES: usize = 16 << 20;

impl ObjectBackend {
    pub fn new(store: Arc<dyn ObjectStore>, url: &str, prefix: &str) -> ObjectBackend {
        ObjectBackend {
            store,
            io: None,
            url: url.trim_end_matches('/').to_owned(),
            prefix: prefix.trim_matches('/').to_owned(),
            part_bytes: DEFAULT_PART_BYTES,
        }
    }

    /// The S3 storage `def`: `base_directory` `s3://bucket[/prefix]`, region, credentials and
    /// config keys as `object_store`'s S3 builder names them (`access_key_id`,
    /// `secret_access_key`, `endpoint`, `allow_http`, …), `max_retries`, and
    /// `multipart_part_bytes` (files larger than it are uploaded in parts of that size).
    pub fn s3(def: &StorageDef) -> BackendResult<ObjectBackend> {
        let (bucket, prefix) = parse_s3_url(&def.base_directory)?;
        let mut builder = object_store::aws::AmazonS3Builder::new().with_bucket_name(bucket);
        let mut part_bytes = DEFAULT_PART_BYTES;
        if let Some(region) = &def.region {
            builder = builder.with_region(region);
        }
        for (what, json) in [
            ("CREDENTIALS", def.credentials.as_deref().unwrap_or("{}")),
            ("CONFIG", def.config.as_str()),
        ] {
            for (key, value) in settings(what, json)? {
                if key == "max_retries" {
                    let max = value
                        .parse()
                        .map_err(|_| format!("{what}: max_retries must be a whole number"))?;
                    builder = builder.with_retry(object_store::RetryConfig {
                        max_retries: max,
                        ..object_store::RetryConfig::default()
                    });
                    continue;
                }
                if key == "multipart_part_bytes" {
                    part_bytes =
                        value
                            .parse()
                            .ok()
                            .filter(|&n: &usize| n > 0)
                            .ok_or_else(|| {
                                format!(
                                    "{what}: multipart_part_bytes must be a positive whole number"
                                )
                            })?;
                    continue;
                }
                let parsed = key
                    .parse::<object_store::aws::AmazonS3ConfigKey>()
                    .map_err(|_| format!("{what} has an unknown S3 setting '{key}'"))?;
                builder = builder.with_config(parsed, value);
            }
        }
        let store = builder
            .build()
            .map_err(|e| format!("storage '{}': {e}", def.id))?;
        let mut backend = ObjectBackend::new(Arc::new(store), &def.base_directory, prefix);
        backend.part_bytes = part_bytes;
        Ok(backend)
    }

    /// This backend, its requests running on `io`.
    pub fn with_io(mut self, io: Option<IoRuntime>) -> ObjectBackend {
        self.io = io;
        self
    }

    fn path(&self, path: &str) -> ObjectPath {
        ObjectPath::from(join(&self.prefix, path))
    }
}

/// `s3://bucket[/prefix]` → (bucket, prefix).
pub fn parse_s3_url(url: &str) -> BackendResult<(&str, &str)> {
    let rest = url.strip_prefix("s3://").ok_or_else(|| {
        format!("an s3 storage's location must be 's3://bucket[/prefix]', not '{url}'")
    })?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(format!("'{url}' names no bucket"));
    }
    Ok((bucket, prefix))
}

/// The settings of a `CREDENTIALS` / `CONFIG` JSON object, as text.
pub fn settings(what: &str, json: &str) -> BackendResult<Vec<(String, String)>> {
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("{what} is not JSON: {e}"))?;
    let serde_json::Value::Object(map) = value else {
        return Err(format!("{what} must be a JSON object"));
    };
    map.into_iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => Ok((k, s)),
            serde_json::Value::Bool(_) | serde_json::Value::Number(_) => Ok((k, v.to_string())),
            _ => Err(format!("{what}: '{k}' must be a string, number or boolean")),
        })
        .collect()
}

impl Backend for ObjectBackend {
    fn locate(&self, path: &str) -> String {
        join(&self.url, path)
    }

    fn open(&self, path: &str) -> BackendResult<Option<Source>> {
        let (store, at, url) = (self.store.clone(), self.path(path), self.locate(path));
        block(self.io.as_ref(), async move {
            match store.get(&at).await {
                Ok(r) => r
                    .bytes()
                    .await
                    .map(|b| Some(Source::Bytes(b)))
                    .map_err(|e| format!("{url}: {e}")),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(format!("{url}: {e}")),
            }
        })
    }

    /// One PUT up to the part size, else a multipart upload (aborted if a part fails, so
    /// no half-written object appears).
    fn write(&self, path: &str, bytes: Vec<u8>) -> BackendResult<()> {
        let (store, at, url) = (self.store.clone(), self.path(path), self.locate(path));
        let part_bytes = self.part_bytes;
        block(self.io.as_ref(), async move {
            let written = if bytes.len() <= part_bytes {
                store.put(&at, PutPayload::from(bytes)).await.map(|_| ())
            } else {
                match store.put_multipart(&at).await {
                    Ok(upload) => {
                        let mut parts = WriteMultipart::new_with_chunk_size(upload, part_bytes);
                        parts.put(Bytes::from(bytes));
                        parts.finish().await.map(|_| ())
                    }
                    Err(e) => Err(e),
                }
            };
            written.map_err(|e| format!("{url}: {e}"))
        })
    }

    fn list(&self, dir: &str) -> BackendResult<Listing> {
        let (store, at, url) = (self.store.clone(), self.path(dir), self.locate(dir));
        block(self.io.as_ref(), async move {
            let prefix = (!at.as_ref().is_empty()).then_some(&at);
            let result = store
                .list_with_delimiter(prefix)
                .await
                .map_err(|e| format!("{url}: {e}"))?;
            let name = |p: &ObjectPath| p.filename().unwrap_or_default().to_owned();
            let mut out = Listing {
                files: result.objects.iter().map(|o| name(&o.location)).collect(),
                dirs: result.common_prefixes.iter().map(name).collect(),
            };
            out.files.sort();
            out.dirs.sort();
            Ok(out)
        })
    }

    fn remove(&self, path: &str) -> BackendResult<()> {
        let (store, at, url) = (self.store.clone(), self.path(path), self.locate(path));
        block(self.io.as_ref(), async move {
            match store.delete(&at).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(format!("{url}: {e}")),
            }
        })
    }

    fn remove_all(&self, dir: &str) -> BackendResult<()> {
        let (store, at, url) = (self.store.clone(), self.path(dir), self.locate(dir));
        block(self.io.as_ref(), async move {
            let objects: Vec<_> = store
                .list(Some(&at))
                .try_collect()
                .await
                .map_err(|e| format!("{url}: {e}"))?;
            for object in objects {
                match store.delete(&object.location).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(format!("{url}: {e}")),
                }
            }
            Ok(())
        })
    }
}

/// The backend of `def`. `local_root` is the node's `data/storage`: the `local` storage, and
/// — when `relocated` (a rebuild by `folddb log replay`) — the home of every other storage's
/// files too, under `.relocated/<id>/`, so a rebuild never writes where the original does.
pub fn backend_for(
    def: &StorageDef,
    local_root: &Path,
    relocated: bool,
    io: Option<&IoRuntime>,
) -> BackendResult<Arc<dyn Backend>> {
    if def.id == crate::catalog::LOCAL_STORAGE {
        return Ok(Arc::new(LocalBackend::new(local_root)));
    }
    if relocated {
        return Ok(Arc::new(LocalBackend::new(
            local_root.join(RELOCATED_DIR).join(&def.id),
        )));
    }
    match def.kind {
        StorageKind::Filesystem => Ok(Arc::new(LocalBackend::new(&def.base_directory))),
        StorageKind::S3 => Ok(Arc::new(ObjectBackend::s3(def)?.with_io(io.cloned()))),
    }
}

/// Under `data/storage`: the files of storages other than `local` in a rebuilt data
/// directory (not an identifier, so no namespace can collide with it).
pub const RELOCATED_DIR: &str = ".relocated";

/// Checks a storage definition: valid templates, JSON settings the backend accepts, the
/// location and settings its type needs.
pub fn check(def: &StorageDef) -> BackendResult<()> {
    catalog::check_template(&def.shared_tables_template, false)?;
    catalog::check_template(&def.user_tables_template, true)?;
    settings("CONFIG", &def.config)?;
    if let Some(c) = &def.credentials {
        settings("CREDENTIALS", c)?;
    }
    match def.kind {
        StorageKind::Filesystem if def.credentials.is_some() => {
            Err("A filesystem storage takes no CREDENTIALS".into())
        }
        StorageKind::Filesystem if def.config.trim() != "{}" => {
            Err("A filesystem storage takes no CONFIG".into())
        }
        StorageKind::Filesystem => Ok(()),
        // Builds the client: unknown settings and a bad location fail here, not at flush.
        StorageKind::S3 => ObjectBackend::s3(def).map(|_| ()),
    }
}

/// What a storage could do when it was last tried ([`health`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub readable: bool,
    pub writable: bool,
    pub listable: bool,
    pub deletable: bool,
    /// How long the whole probe took, ms.
    pub latency_ms: u64,
    /// The first problem met, naming the operation.
    pub error: Option<String>,
}

impl Health {
    /// `healthy` (everything worked), `unreachable` (nothing did) or `degraded`.
    pub fn status(&self) -> &'static str {
        let ok = [self.readable, self.writable, self.listable, self.deletable];
        if ok.iter().all(|b| *b) {
            "healthy"
        } else if ok.iter().any(|b| *b) {
            "degraded"
        } else {
            "unreachable"
        }
    }
}

/// Where [`health`] writes its probe file (removed again at once).
pub const HEALTH_DIR: &str = ".folddb-health";

/// Tries each thing a storage must do: write a small file, read it back, list it, remove it.
pub fn health(backend: &dyn Backend) -> Health {
    let started = std::time::Instant::now();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let name = format!("probe-{nanos:x}-{}", std::process::id());
    let path = join(HEALTH_DIR, &name);
    let body = name.as_bytes().to_vec();
    let mut error: Option<String> = None;
    let mut note = |what: &str, e: String| {
        error.get_or_insert_with(|| format!("{what}: {e}"));
    };
    let writable = backend
        .write(&path, body.clone())
        .map_err(|e| note("write", e))
        .is_ok();
    let readable = match backend.read(&path) {
        Ok(Some(b)) if b[..] == body[..] || !writable => true,
        Ok(Some(_)) => {
            note("read", "the probe file read back different bytes".into());
            false
        }
        // Nothing to read back when the write failed: listing the base shows reads work.
        Ok(None) if !writable => backend.list("").is_ok(),
        Ok(None) => {
            note("read", "the probe file just written is missing".into());
            false
        }
        Err(e) => {
            note("read", e);
            false
        }
    };
    let listable = match backend.list(HEALTH_DIR) {
        Ok(l) if !writable || l.files.contains(&name) => true,
        Ok(_) => {
            note("list", "the probe file just written is not listed".into());
            false
        }
        Err(e) => {
            note("list", e);
            false
        }
    };
    let deletable = writable
        && backend
            .remove(&path)
            .and_then(|()| match backend.open(&path)? {
                None => Ok(()),
                Some(_) => Err("the probe file is still there after its removal".into()),
            })
            .map_err(|e| note("remove", e))
            .is_ok();
    Health {
        readable,
        writable,
        listable,
        deletable,
        latency_ms: started.elapsed().as_millis() as u64,
        error,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The runtime a program would hand in.
    pub(crate) fn io() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime")
    }

    #[test]
    fn object_storage_without_a_runtime_says_so() {
        let memory = Arc::new(object_store::memory::InMemory::new());
        let err = ObjectBackend::new(memory, "memory://", "")
            .read("x")
            .expect_err("no runtime");
        assert!(err.contains("I/O runtime"), "{err}");
    }

    fn exercise(backend: &dyn Backend) {
        assert!(backend.open("a/b/x.bin").expect("open").is_none());
        assert_eq!(backend.list("a").expect("list"), Listing::default());
        backend.write("a/b/x.bin", b"one".to_vec()).expect("write");
        backend
            .write("a/b/x.bin", b"two".to_vec())
            .expect("rewrite");
        backend.write("a/y.bin", b"y".to_vec()).expect("write");
        assert_eq!(
            backend.read("a/b/x.bin").expect("read").as_deref(),
            Some(&b"two"[..])
        );
        // Larger than an object backend's part size below: uploaded in parts, read whole.
        let big: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
        backend
            .write("a/b/big.bin", big.clone())
            .expect("write big");
        assert_eq!(
            backend.read("a/b/big.bin").expect("read").as_deref(),
            Some(&big[..])
        );
        backend.remove("a/b/big.bin").expect("remove big");
        let listing = backend.list("a").expect("list");
        assert_eq!(listing.files, vec!["y.bin".to_owned()]);
        assert_eq!(listing.dirs, vec!["b".to_owned()]);
        backend.remove("a/y.bin").expect("remove");
        backend.remove("a/y.bin").expect("remove twice");
        assert!(backend.read("a/y.bin").expect("read").is_none());
        backend.remove_all("a").expect("remove all");
        assert!(backend.read("a/b/x.bin").expect("read").is_none());
        assert_eq!(backend.list("a").expect("list"), Listing::default());
    }

    #[test]
    fn local_and_object_backends_behave_alike() {
        let tmp = tempfile::tempdir().expect("tmp");
        exercise(&LocalBackend::new(tmp.path()));
        let memory = Arc::new(object_store::memory::InMemory::new());
        let io = io();
        let mut object =
            ObjectBackend::new(memory, "memory://", "pre/fix").with_io(Some(io.handle().clone()));
        object.part_bytes = 64;
        exercise(&object);
    }

    #[test]
    fn s3_settings_are_checked() {
        let mut def = StorageDef::local();
        def.id = "s3".into();
        def.kind = StorageKind::S3;
        def.base_directory = "bucket-only".into();
        assert!(ObjectBackend::s3(&def).is_err_and(|e| e.contains("s3://bucket")));
        def.base_directory = "s3://b/p".into();
        def.config = r#"{"no_such_key": "1"}"#.into();
        assert!(ObjectBackend::s3(&def).is_err_and(|e| e.contains("no_such_key")));
        def.config = "[1]".into();
        assert!(ObjectBackend::s3(&def).is_err_and(|e| e.contains("JSON object")));
        def.config = r#"{"multipart_part_bytes": 0}"#.into();
        assert!(ObjectBackend::s3(&def).is_err_and(|e| e.contains("multipart_part_bytes")));
        def.config =
            r#"{"endpoint": "http://127.0.0.1:9", "allow_http": true, "max_retries": 0}"#.into();
        def.credentials = Some(r#"{"access_key_id": "k", "secret_access_key": "s"}"#.into());
        def.region = Some("us-east-1".into());
        let io = io();
        let backend = ObjectBackend::s3(&def)
            .expect("valid settings build")
            .with_io(Some(io.handle().clone()));
        assert_eq!(backend.locate("x/y"), "s3://b/p/x/y");
        // Nothing listens there: a clear error naming the location, not a panic.
        let err = backend.read("x/y").expect_err("unreachable");
        assert!(err.contains("s3://b/p/x/y"), "{err}");
    }

    /// A backend whose writes fail (a full or read-only disk), through the trait.
    #[derive(Debug)]
    struct NoWrites(LocalBackend);

    impl Backend for NoWrites {
        fn locate(&self, path: &str) -> String {
            self.0.locate(path)
        }
        fn open(&self, path: &str) -> BackendResult<Option<Source>> {
            self.0.open(path)
        }
        fn write(&self, _path: &str, _bytes: Vec<u8>) -> BackendResult<()> {
            Err("no space left on device".into())
        }
        fn list(&self, dir: &str) -> BackendResult<Listing> {
            self.0.list(dir)
        }
        fn remove(&self, path: &str) -> BackendResult<()> {
            self.0.remove(path)
        }
        fn remove_all(&self, dir: &str) -> BackendResult<()> {
            self.0.remove_all(dir)
        }
    }

    #[test]
    fn health_tries_every_operation_and_leaves_nothing_behind() {
        let tmp = tempfile::tempdir().expect("tmp");
        let h = health(&LocalBackend::new(tmp.path()));
        assert_eq!((h.status(), h.error.as_deref()), ("healthy", None));
        let left = LocalBackend::new(tmp.path())
            .list(HEALTH_DIR)
            .expect("list");
        assert!(left.files.is_empty(), "{left:?}");
        let memory = Arc::new(object_store::memory::InMemory::new());
        let io = io();
        let object =
            ObjectBackend::new(memory, "memory://", "p").with_io(Some(io.handle().clone()));
        assert_eq!(health(&object).status(), "healthy");

        let h = health(&NoWrites(LocalBackend::new(tmp.path())));
        assert_eq!(h.status(), "degraded");
        assert!((h.readable, h.listable) == (true, true) && !h.writable && !h.deletable);
        assert_eq!(h.error.as_deref(), Some("write: no space left on device"));

        // A base that is a file, not a directory: nothing works.
        let file = tmp.path().join("plain");
        std::fs::write(&file, b"x").expect("write");
        let h = health(&LocalBackend::new(&file));
        assert_eq!(h.status(), "unreachable", "{h:?}");
        assert!(h.error.is_some_and(|e| e.starts_with("write: ")));
    }
}
