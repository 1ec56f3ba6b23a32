//! An in-memory [`Storage`] that models what a disk may keep after a power loss, for tests
//! that inject torn writes, crash images and fsync failures.
//!
//! Each file keeps what reads see now and what was durable at its last successful
//! `sync_data`, plus the operations since. [`MemStorage::crash_image`] builds the storage a
//! machine could reboot into: every file holds its durable bytes with a random subset of the
//! later operations applied, each write persisted or lost sector by sector (512 bytes), in
//! any combination. Directory operations (create, rename, remove) are modelled as durable at
//! once; the real filesystem code still syncs directories.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::storage::{Storage, StorageFile};

/// Granularity at which the model persists or loses unsynced writes.
pub const SECTOR_BYTES: usize = 512;

/// An in-memory filesystem with crash images and fault injection. Clones share state.
#[derive(Debug, Clone, Default)]
pub struct MemStorage {
    inner: Arc<Mutex<MemState>>,
}

#[derive(Debug, Default)]
struct MemState {
    files: BTreeMap<PathBuf, Arc<MemFile>>,
    /// Successful syncs left before every sync fails; `None` never fails.
    syncs_before_failure: Option<u64>,
}

#[derive(Debug)]
struct MemFile {
    owner: Arc<Mutex<MemState>>,
    data: Mutex<FileData>,
}

#[derive(Debug, Default, Clone)]
struct FileData {
    current: Vec<u8>,
    durable: Vec<u8>,
    since_sync: Vec<Op>,
}

#[derive(Debug, Clone)]
enum Op {
    Write { offset: u64, bytes: Vec<u8> },
    SetLen(u64),
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks is a test failure already; keep going.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{} not found", path.display()),
    )
}

impl MemStorage {
    pub fn new() -> Self {
        Self::default()
    }

    /// After `n` more successful `sync_data` calls, every later one fails with `EIO`.
    pub fn fail_syncs_after(&self, n: u64) {
        lock(&self.inner).syncs_before_failure = Some(n);
    }

    /// A storage holding what a power loss now could leave on disk, chosen by `seed`.
    pub fn crash_image(&self, seed: u64) -> MemStorage {
        let mut rng = XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let image = MemStorage::default();
        let files: Vec<(PathBuf, FileData)> = lock(&self.inner)
            .files
            .iter()
            .map(|(p, f)| (p.clone(), lock(&f.data).clone()))
            .collect();
        for (path, data) in files {
            let mut bytes = data.durable.clone();
            for op in &data.since_sync {
                match op {
                    Op::SetLen(len) => {
                        if rng.coin() {
                            bytes.resize(*len as usize, 0);
                        }
                    }
                    Op::Write { offset, bytes: w } => {
                        let mut at = 0usize;
                        while at < w.len() {
                            let abs = *offset as usize + at;
                            let sector_end = (abs / SECTOR_BYTES + 1) * SECTOR_BYTES;
                            let n = (sector_end - abs).min(w.len() - at);
                            if rng.coin() {
                                if bytes.len() < abs + n {
                                    bytes.resize(abs + n, 0);
                                }
                                bytes[abs..abs + n].copy_from_slice(&w[at..at + n]);
                            }
                            at += n;
                        }
                    }
                }
            }
            image.insert(path, bytes);
        }
        image
    }

    /// The current bytes of a file, as reads see them.
    pub fn file_bytes(&self, path: &Path) -> Option<Vec<u8>> {
        let f = lock(&self.inner).files.get(path).cloned()?;
        let data = lock(&f.data);
        Some(data.current.clone())
    }

    /// Replaces a file's bytes, durably (for tests that damage files).
    pub fn put_file(&self, path: &Path, bytes: Vec<u8>) {
        self.insert(path.to_path_buf(), bytes);
    }

    fn insert(&self, path: PathBuf, bytes: Vec<u8>) {
        let file = Arc::new(MemFile {
            owner: self.inner.clone(),
            data: Mutex::new(FileData {
                current: bytes.clone(),
                durable: bytes,
                since_sync: Vec::new(),
            }),
        });
        lock(&self.inner).files.insert(path, file);
    }
}

impl Storage for MemStorage {
    fn create_dir_all(&self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        Ok(lock(&self.inner)
            .files
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
            .collect())
    }

    fn open(&self, path: &Path) -> io::Result<Arc<dyn StorageFile>> {
        let f = lock(&self.inner)
            .files
            .get(path)
            .cloned()
            .ok_or_else(|| not_found(path))?;
        Ok(f)
    }

    fn create(&self, path: &Path) -> io::Result<Arc<dyn StorageFile>> {
        self.insert(path.to_path_buf(), Vec::new());
        self.open(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut st = lock(&self.inner);
        let f = st.files.remove(from).ok_or_else(|| not_found(from))?;
        st.files.insert(to.to_path_buf(), f);
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        lock(&self.inner)
            .files
            .remove(path)
            .map(|_| ())
            .ok_or_else(|| not_found(path))
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        Ok(lock(&self.inner).files.contains_key(path))
    }

    fn sync_dir(&self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }
}

impl StorageFile for MemFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let d = lock(&self.data);
        let start = offset as usize;
        let end = start + buf.len();
        if end > d.current.len() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "read past end",
            ));
        }
        buf.copy_from_slice(&d.current[start..end]);
        Ok(())
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut d = lock(&self.data);
        let start = offset as usize;
        if d.current.len() < start + buf.len() {
            d.current.resize(start + buf.len(), 0);
        }
        d.current[start..start + buf.len()].copy_from_slice(buf);
        d.since_sync.push(Op::Write {
            offset,
            bytes: buf.to_vec(),
        });
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        {
            let mut st = lock(&self.owner);
            match st.syncs_before_failure {
                Some(0) => return Err(io::Error::other("injected fsync failure (EIO)")),
                Some(n) => st.syncs_before_failure = Some(n - 1),
                None => {}
            }
        }
        let mut d = lock(&self.data);
        d.durable = d.current.clone();
        d.since_sync.clear();
        Ok(())
    }

    fn size(&self) -> io::Result<u64> {
        Ok(lock(&self.data).current.len() as u64)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut d = lock(&self.data);
        d.current.resize(len as usize, 0);
        d.since_sync.push(Op::SetLen(len));
        Ok(())
    }

    fn allocate(&self, len: u64) -> io::Result<()> {
        let mut d = lock(&self.data);
        if (d.current.len() as u64) < len {
            d.current.resize(len as usize, 0);
            d.since_sync.push(Op::SetLen(len));
        }
        Ok(())
    }
}

/// A tiny deterministic generator; crash images must be reproducible from a seed.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn coin(&mut self) -> bool {
        self.next() & 1 == 1
    }
}
