//! A backup directory (`query/FORMAT.md`, "Backups"): what `BACKUP DATABASE` writes and
//! `RESTORE DATABASE` reads. Every file it holds is listed in `backup.json` with its length
//! and SHA-256, and `backup.json` itself is checked by the SHA-256 in `backup.sha256`: a
//! restore reads every byte and compares before it changes anything.
//!
//! A backup is written to a hidden sibling directory (`.<name>.partial-<job>`) and renamed
//! into place once whole and synced: a directory at the backup's path is a whole backup.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};

use folddb_materializer::{NamespaceDef, StorageDef, TableDef, UserDef, VectorIndexDef};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The version of the backup format this build writes and reads.
pub const FORMAT: u32 = 1;
/// What `backup.json`'s `kind` says.
pub const KIND: &str = "folddb-backup";
pub const MANIFEST: &str = "backup.json";
pub const MANIFEST_SUM: &str = "backup.sha256";
/// Each table's rows: Parquet files of its columns and `_scope` (the owner of a USER
/// table's row; empty for SHARED tables), started anew past this many bytes.
pub const PART_BYTES: u64 = 128 << 20;
/// The column a part file adds to the table's own.
pub const SCOPE_COLUMN: &str = "_scope";

/// `backup.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub kind: String,
    pub created_at_ms: u64,
    /// The state backed up is the state after this log entry applied.
    pub log_index: u64,
    /// The namespace backed up; `None`: the whole database.
    pub namespace: Option<String>,
    pub namespaces: Vec<NamespaceDef>,
    /// The storages the tables name, but `local` (every server has it).
    pub storages: Vec<StorageDef>,
    /// A whole-database backup: every user but the deleted ones.
    pub users: Vec<UserDef>,
    pub tables: Vec<Table>,
    /// Every file of the backup but `backup.json` and `backup.sha256`.
    pub files: Vec<FileSum>,
}

/// One table of a backup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Table {
    /// Its definition at its current schema version.
    pub def: TableDef,
    pub vector_indexes: Vec<VectorIndexDef>,
    pub rows: u64,
    /// Its rows' part files, in order (paths relative to the backup).
    pub parts: Vec<String>,
    /// The stored files its FILE cells name: (scope, path in its scope's directory of the
    /// storage, path in the backup).
    pub stored: Vec<StoredFile>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredFile {
    pub scope: String,
    /// `fNNNN/<stored name>`.
    pub path: String,
    pub backup_path: String,
}

/// A file of the backup: its path relative to the backup, length and SHA-256 (hex).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileSum {
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Where `text` (a `BACKUP … TO` / `RESTORE … FROM` path) is: an absolute path as given, a
/// relative one under `backups` (the data directory's `backups/`). Refused: a path with a
/// `..` part or a NUL, one relative with no `backups` directory configured, and one inside
/// the data directory `data` but outside `backups`.
pub fn resolve(text: &str, data: Option<&Path>, backups: Option<&Path>) -> Result<PathBuf, String> {
    if text.trim().is_empty() || text.contains('\0') {
        return Err("A backup path must be a directory path, without NUL".into());
    }
    let given = Path::new(text);
    if given
        .components()
        .any(|c| matches!(c, Component::ParentDir))
    {
        return Err(format!("Backup path '{text}' must not contain '..'"));
    }
    let path = if given.is_absolute() {
        given.to_path_buf()
    } else {
        match backups {
            Some(b) => b.join(given),
            None => return Err(format!("Backup path '{text}' must be absolute")),
        }
    };
    if let Some(data) = data
        && path.starts_with(data)
        && !backups.is_some_and(|b| path.starts_with(b) && path != b)
    {
        return Err(format!(
            "Backup path '{text}' is inside the server's data directory: only its backups/ \
             may hold backups"
        ));
    }
    if path.parent().is_none() {
        return Err(format!("Backup path '{text}' must name a directory"));
    }
    Ok(path)
}

/// A relative path of a backup's file, checked: plain names of letters, digits, `.`, `-`,
/// `_`, none starting with `.`, separated by `/`.
pub fn check_relative(path: &str) -> Result<(), String> {
    let ok = !path.is_empty()
        && path.split('/').all(|part| {
            !part.is_empty()
                && !part.starts_with('.')
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        });
    if ok {
        Ok(())
    } else {
        Err(format!("the backup names a file '{path}' outside it"))
    }
}

/// Writes into `inner`, hashing and counting what passes.
pub struct Hashing<W> {
    inner: W,
    hash: Sha256,
    bytes: u64,
}

impl<W> std::fmt::Debug for Hashing<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hashing")
            .field("bytes", &self.bytes)
            .finish_non_exhaustive()
    }
}

impl<W: Write> Hashing<W> {
    pub fn new(inner: W) -> Hashing<W> {
        Hashing {
            inner,
            hash: Sha256::new(),
            bytes: 0,
        }
    }

    /// The length and SHA-256 of what passed so far.
    pub fn sum_so_far(&self) -> (u64, String) {
        (self.bytes, hex(&self.hash.clone().finalize()))
    }

    /// What passed: its length and SHA-256, and the writer.
    pub fn finish(self) -> (u64, String, W) {
        (self.bytes, hex(&self.hash.finalize()), self.inner)
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The length and SHA-256 of everything `from` reads.
pub fn sum(mut from: impl Read) -> io::Result<(u64, String)> {
    let mut out = Hashing::new(io::sink());
    io::copy(&mut from, &mut out)?;
    let (bytes, sha, _) = out.finish();
    Ok((bytes, sha))
}

/// A backup being written: a hidden directory beside its final path.
#[derive(Debug)]
pub struct Partial {
    pub dir: PathBuf,
    pub target: PathBuf,
    pub files: Vec<FileSum>,
}

fn io_err(what: &str, path: &Path) -> impl FnOnce(io::Error) -> String {
    let (what, path) = (what.to_owned(), path.display().to_string());
    move |e| format!("could not {what} '{path}': {e}")
}

impl Partial {
    /// Creates the hidden directory of a backup to `target`, which must not exist, in a
    /// directory that does.
    pub fn create(target: &Path, job: &str) -> Result<Partial, String> {
        if target.exists() {
            return Err(format!(
                "Backup directory '{}' already exists",
                target.display()
            ));
        }
        let (Some(parent), Some(name)) = (target.parent(), target.file_name()) else {
            return Err(format!("'{}' is not a directory path", target.display()));
        };
        if !parent.is_dir() {
            return Err(format!(
                "Backup directory '{}' cannot be created: '{}' is not a directory",
                target.display(),
                parent.display()
            ));
        }
        let dir = parent.join(format!(".{}.partial-{job}", name.to_string_lossy()));
        std::fs::create_dir(&dir).map_err(|e| {
            format!(
                "Backup directory '{}' cannot be written: {e}",
                target.display()
            )
        })?;
        Ok(Partial {
            dir,
            target: target.to_path_buf(),
            files: Vec::new(),
        })
    }

    /// A new file of the backup at `rel` (its directories created), hashing what is
    /// written; hand it to [`Partial::close`].
    pub fn file(&self, rel: &str) -> Result<Hashing<File>, String> {
        check_relative(rel)?;
        let path = self.dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io_err("create", parent))?;
        }
        let file = File::create(&path).map_err(io_err("create", &path))?;
        Ok(Hashing::new(file))
    }

    /// Syncs a file written through [`Partial::file`] and lists it.
    pub fn close(&mut self, rel: &str, file: Hashing<File>) -> Result<u64, String> {
        let (bytes, sha256, file) = file.finish();
        file.sync_all()
            .map_err(io_err("sync", &self.dir.join(rel)))?;
        self.files.push(FileSum {
            path: rel.to_owned(),
            bytes,
            sha256,
        });
        Ok(bytes)
    }

    /// Writes `backup.json` (listing every file written) and its checksum, syncs the
    /// directories and renames the backup into place: the total bytes.
    pub fn finish(mut self, mut manifest: Manifest) -> Result<u64, String> {
        manifest.files = std::mem::take(&mut self.files);
        let json = serde_json::to_vec_pretty(&manifest).map_err(|e| e.to_string())?;
        for (name, bytes) in [
            (MANIFEST, json.as_slice()),
            (MANIFEST_SUM, sum_line(&json).as_bytes()),
        ] {
            let path = self.dir.join(name);
            let mut f = File::create(&path).map_err(io_err("create", &path))?;
            f.write_all(bytes).map_err(io_err("write", &path))?;
            f.sync_all().map_err(io_err("sync", &path))?;
        }
        let mut dirs: Vec<PathBuf> = manifest
            .files
            .iter()
            .filter_map(|f| self.dir.join(&f.path).parent().map(Path::to_path_buf))
            .collect();
        dirs.sort();
        dirs.dedup();
        dirs.push(self.dir.clone());
        for d in &dirs {
            sync_dir(d)?;
        }
        if self.target.exists() {
            return Err(format!(
                "Backup directory '{}' appeared while the backup ran",
                self.target.display()
            ));
        }
        std::fs::rename(&self.dir, &self.target).map_err(io_err("rename into", &self.target))?;
        if let Some(parent) = self.target.parent() {
            sync_dir(parent)?;
        }
        let total = manifest.files.iter().map(|f| f.bytes).sum::<u64>();
        // Renamed: nothing is left to remove.
        self.dir = PathBuf::new();
        Ok(total)
    }
}

impl Drop for Partial {
    /// A backup that did not finish leaves nothing.
    fn drop(&mut self) {
        if !self.dir.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// `backup.sha256`: the manifest's SHA-256 as `sha256sum` prints it (`sha256sum -c` checks
/// it too).
fn sum_line(manifest: &[u8]) -> String {
    format!("{}  {MANIFEST}\n", hex(&Sha256::digest(manifest)))
}

fn sync_dir(dir: &Path) -> Result<(), String> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("sync", dir))
}

/// Reads `backup.json` of the backup at `dir` and checks it against `backup.sha256`: the
/// manifest, not yet the files it lists (see [`verify`]).
pub fn open(dir: &Path) -> Result<Manifest, String> {
    let path = dir.join(MANIFEST);
    let json = std::fs::read(&path).map_err(|e| {
        format!(
            "'{}' is not a FoldDB backup: {} cannot be read ({e})",
            dir.display(),
            MANIFEST
        )
    })?;
    let sum_path = dir.join(MANIFEST_SUM);
    let sum = std::fs::read_to_string(&sum_path)
        .map_err(|e| format!("the backup's {MANIFEST_SUM} cannot be read: {e}"))?;
    if sum != sum_line(&json) {
        return Err(format!(
            "the backup is damaged: {MANIFEST} does not match its checksum in {MANIFEST_SUM}"
        ));
    }
    let manifest: Manifest = serde_json::from_slice(&json)
        .map_err(|e| format!("the backup's {MANIFEST} is malformed: {e}"))?;
    if manifest.kind != KIND {
        return Err(format!("'{}' is not a FoldDB backup", dir.display()));
    }
    if manifest.format != FORMAT {
        return Err(format!(
            "the backup is of format {}; this server reads format {FORMAT}",
            manifest.format
        ));
    }
    for f in &manifest.files {
        check_relative(&f.path)?;
    }
    let listed: std::collections::HashSet<&str> =
        manifest.files.iter().map(|f| f.path.as_str()).collect();
    for t in &manifest.tables {
        let named = t
            .parts
            .iter()
            .chain(t.stored.iter().map(|s| &s.backup_path));
        for path in named {
            if !listed.contains(path.as_str()) {
                return Err(format!("the backup names a file '{path}' it does not list"));
            }
        }
    }
    Ok(manifest)
}

/// Reads every file `manifest` lists and compares its length and SHA-256; `progress` hears
/// the bytes checked so far.
pub fn verify(dir: &Path, manifest: &Manifest, progress: &dyn Fn(u64)) -> Result<(), String> {
    let mut done = 0;
    for f in &manifest.files {
        let path = dir.join(&f.path);
        let file = File::open(&path)
            .map_err(|e| format!("the backup is damaged: '{}' cannot be read ({e})", f.path))?;
        let (bytes, sha) = sum(file).map_err(io_err("read", &path))?;
        if bytes != f.bytes || sha != f.sha256 {
            return Err(format!(
                "the backup is damaged: '{}' does not match its checksum",
                f.path
            ));
        }
        done += bytes;
        progress(done);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_paths_are_resolved_and_checked() {
        let data = Path::new("/srv/data");
        let backups = data.join("backups");
        let r = |t: &str| resolve(t, Some(data), Some(&backups));
        assert_eq!(r("/b/app"), Ok(PathBuf::from("/b/app")));
        assert_eq!(r("nightly"), Ok(backups.join("nightly")));
        assert_eq!(r("/srv/data/backups/x"), Ok(backups.join("x")));
        for bad in [
            "",
            "../x",
            "/b/../etc",
            "a/../../x",
            "/srv/data/log",
            "/srv/data",
            "/srv/data/backups",
            "a\0b",
            "/",
        ] {
            assert!(r(bad).is_err(), "{bad:?} accepted");
        }
        assert!(resolve("rel", Some(data), None).is_err());
    }

    #[test]
    fn relative_paths_of_a_manifest_stay_inside_the_backup() {
        for ok in [
            "tables/app/t/part-00000.parquet",
            "files/app/t/s75/f0001/1-a.txt",
        ] {
            assert_eq!(check_relative(ok), Ok(()));
        }
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../b",
            "a//b",
            ".hidden",
            "a/.b",
            "a\\b",
            "a b",
        ] {
            assert!(check_relative(bad).is_err(), "{bad:?} accepted");
        }
    }

    fn manifest() -> Manifest {
        Manifest {
            format: FORMAT,
            kind: KIND.into(),
            created_at_ms: 1,
            log_index: 7,
            namespace: Some("app".into()),
            namespaces: Vec::new(),
            storages: Vec::new(),
            users: Vec::new(),
            tables: Vec::new(),
            files: Vec::new(),
        }
    }

    #[test]
    fn a_written_backup_verifies_and_any_flipped_byte_is_found() {
        let root = tempfile::tempdir().unwrap();
        let target = root.path().join("b");
        let mut partial = Partial::create(&target, "bk-1").unwrap();
        let mut f = partial.file("tables/app/t/part-00000.parquet").unwrap();
        f.write_all(b"some rows").unwrap();
        partial.close("tables/app/t/part-00000.parquet", f).unwrap();
        let total = partial.finish(manifest()).unwrap();
        assert_eq!(total, 9);
        assert!(Partial::create(&target, "bk-2").is_err(), "exists");
        let m = open(&target).unwrap();
        assert_eq!(m.files.len(), 1);
        verify(&target, &m, &|_| {}).unwrap();
        // Nothing hidden is left beside it.
        let names: Vec<_> = std::fs::read_dir(root.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("b")]);

        for name in ["tables/app/t/part-00000.parquet", MANIFEST, MANIFEST_SUM] {
            let path = target.join(name);
            let good = std::fs::read(&path).unwrap();
            for at in [0, good.len() / 2, good.len() - 1] {
                let mut bad = good.clone();
                bad[at] ^= 0x20;
                std::fs::write(&path, &bad).unwrap();
                let found = open(&target).and_then(|m| verify(&target, &m, &|_| {}));
                assert!(found.is_err(), "{name} byte {at} flipped, not found");
            }
            std::fs::write(&path, &good).unwrap();
        }
        verify(&target, &open(&target).unwrap(), &|_| {}).unwrap();
    }

    #[test]
    fn an_unfinished_backup_leaves_nothing() {
        let root = tempfile::tempdir().unwrap();
        let target = root.path().join("b");
        {
            let partial = Partial::create(&target, "bk-1").unwrap();
            let mut f = partial.file("x").unwrap();
            f.write_all(b"x").unwrap();
        }
        assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0);
        assert!(Partial::create(&root.path().join("no/such"), "bk").is_err());
    }
}
