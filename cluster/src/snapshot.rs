//! Snapshot files: a node's whole materialized state as one file, streamed out of the store
//! and into another without holding it in memory (`cluster/FORMAT.md`, "Snapshot data").
//!
//! A [`SnapshotDir`] keeps the current snapshot of a node (the last one built or installed)
//! under `data/snapshots/`; openraft sends it to a follower in chunks, which the follower
//! writes to a file of its own before installing it.
//!
//! # Correctness
//!
//! - A file is written under a temporary name, made durable, then renamed (after its
//!   description, `snapshot-<n>.meta`): a crash leaves no file that looks whole and is not.
//!   A start keeps the newest whole snapshot and removes the rest; with none, openraft
//!   builds one when the log is purged.
//! - A file received is checked from end to end (structure, family codes, record count and
//!   CRC-32) before the store is touched: a damaged one changes nothing.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use folddb_materializer::{Family, HotBatch, HotStore};
use openraft::{BasicNode, SnapshotMeta};

use crate::codec;
use crate::error::{Error, Result};
use crate::state_machine::MEMBERSHIP_KEY;

/// The first bytes of a snapshot file.
pub const MAGIC: &[u8; 8] = b"FOLDSNAP";
/// The snapshot file format's version.
pub const VERSION: u32 = 1;
/// The tag that ends the records.
const END: u8 = 0xFF;
/// Bytes of records an install writes to the store per batch.
const IMPORT_BATCH_BYTES: usize = 8 << 20;

/// The column family code of `family` in a snapshot file.
pub fn family_code(family: Family) -> u8 {
    match family {
        Family::Rows => 0,
        Family::Catalog => 1,
        Family::Meta => 2,
        Family::Streams => 3,
        Family::ColdKeys => 4,
        Family::Journal => 5,
        Family::Topics => 6,
    }
}

fn family_of(code: u8) -> Option<Family> {
    Family::ALL.into_iter().find(|f| family_code(*f) == code)
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

fn bad(reason: impl Into<String>) -> Error {
    Error::BadSnapshot {
        reason: reason.into(),
    }
}

/// Writes the records of a snapshot file, counting them and summing their CRC.
struct SnapshotWriter<W: Write> {
    out: W,
    crc: crc32fast::Hasher,
    records: u64,
}

impl<W: Write> SnapshotWriter<W> {
    fn new(out: W) -> std::io::Result<Self> {
        let mut w = SnapshotWriter {
            out,
            crc: crc32fast::Hasher::new(),
            records: 0,
        };
        w.put(MAGIC)?;
        w.put(&VERSION.to_be_bytes())?;
        Ok(w)
    }

    fn put(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.crc.update(bytes);
        self.out.write_all(bytes)
    }

    fn record(&mut self, family: Family, key: &[u8], value: &[u8]) -> std::io::Result<()> {
        let too_long = |_| std::io::Error::other("a key or value longer than 4 GiB");
        let klen = u32::try_from(key.len()).map_err(too_long)?;
        let vlen = u32::try_from(value.len()).map_err(too_long)?;
        self.put(&[family_code(family)])?;
        self.put(&klen.to_be_bytes())?;
        self.put(&vlen.to_be_bytes())?;
        self.put(key)?;
        self.put(value)?;
        self.records += 1;
        Ok(())
    }

    /// Writes the end (tag, record count, CRC-32 of every byte before the CRC).
    fn finish(mut self) -> std::io::Result<W> {
        self.put(&[END])?;
        self.put(&self.records.to_be_bytes())?;
        let crc = self.crc.clone().finalize();
        self.out.write_all(&crc.to_be_bytes())?;
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Reads a snapshot file's records, calling `each` with every one, then checks its end.
/// Every error is [`Error::BadSnapshot`] except those of `each` and of reading.
pub fn read_records(
    input: impl Read,
    mut each: impl FnMut(Family, Vec<u8>, Vec<u8>) -> Result<()>,
) -> Result<()> {
    struct Summed<R> {
        input: R,
        crc: crc32fast::Hasher,
    }
    impl<R: Read> Summed<R> {
        fn take(&mut self, n: usize, what: &str) -> Result<Vec<u8>> {
            let mut buf = Vec::new();
            let got = (&mut self.input)
                .take(n as u64)
                .read_to_end(&mut buf)
                .map_err(|e| bad(format!("reading {what}: {e}")))?;
            if got != n {
                return Err(bad(format!("the file ends inside {what}")));
            }
            self.crc.update(&buf);
            Ok(buf)
        }
        fn u32(&mut self, what: &str) -> Result<u32> {
            let b = self.take(4, what)?;
            Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        }
    }
    let mut r = Summed {
        input,
        crc: crc32fast::Hasher::new(),
    };
    if r.take(8, "the magic bytes")? != MAGIC {
        return Err(bad("not a snapshot file (wrong magic bytes)"));
    }
    let version = r.u32("the version")?;
    if version != VERSION {
        return Err(bad(format!(
            "format version {version}; this build reads version {VERSION}"
        )));
    }
    let mut records = 0u64;
    loop {
        let tag = r.take(1, "a record's family")?[0];
        if tag == END {
            break;
        }
        let family = family_of(tag).ok_or_else(|| bad(format!("unknown family code {tag}")))?;
        let klen = r.u32("a key's length")? as usize;
        let vlen = r.u32("a value's length")? as usize;
        let key = r.take(klen, "a key")?;
        let value = r.take(vlen, "a value")?;
        each(family, key, value)?;
        records += 1;
    }
    let count = r.take(8, "the record count")?;
    let count = u64::from_be_bytes(count.try_into().expect("8 bytes"));
    if count != records {
        return Err(bad(format!(
            "the file says {count} records and holds {records}"
        )));
    }
    let expected = r.crc.clone().finalize();
    let crc = r.take(4, "the checksum")?;
    if u32::from_be_bytes([crc[0], crc[1], crc[2], crc[3]]) != expected {
        return Err(bad("the checksum does not match (a damaged file)"));
    }
    let mut rest = [0u8; 1];
    match r.input.read(&mut rest) {
        Ok(0) => Ok(()),
        Ok(_) => Err(bad("bytes after the checksum")),
        Err(e) => Err(bad(format!("reading past the end: {e}"))),
    }
}

/// What an export read besides the records: the applied mark and the stored membership
/// (`meta` key [`MEMBERSHIP_KEY`]) as of the same moment.
pub type Exported = (
    Option<(folddb_log::LogIndex, folddb_log::Term)>,
    Option<Vec<u8>>,
);

/// Writes every key of `store` to `out` as a snapshot file.
pub fn export(store: &HotStore, out: impl Write) -> Result<Exported> {
    let mut w = SnapshotWriter::new(out).map_err(|e| bad(format!("writing: {e}")))?;
    let mut membership = None;
    let applied = store.export(|family, k, v| {
        if family == Family::Meta && k == MEMBERSHIP_KEY {
            membership = Some(v.to_vec());
        }
        w.record(family, k, v)
            .map_err(|e| folddb_materializer::Error::Decode {
                what: "a snapshot record",
                reason: e.to_string(),
            })
    })?;
    w.finish().map_err(|e| bad(format!("writing: {e}")))?;
    Ok((applied, membership))
}

/// Checks the snapshot file `file` whole, then replaces `store` with it, applied through
/// `applied`.
pub fn install(
    store: &HotStore,
    mut file: File,
    path: &Path,
    applied: Option<(folddb_log::LogIndex, folddb_log::Term)>,
) -> Result<()> {
    file.seek(SeekFrom::Start(0))
        .map_err(io("read the snapshot", path))?;
    read_records(BufReader::new(&file), |_, _, _| Ok(()))?;
    file.seek(SeekFrom::Start(0))
        .map_err(io("read the snapshot", path))?;
    store.import_begin()?;
    let mut batch = HotBatch::default();
    let mut bytes = 0usize;
    read_records(BufReader::new(&file), |family, k, v| {
        bytes += k.len() + v.len();
        batch.put(family, k, v);
        if bytes >= IMPORT_BATCH_BYTES {
            store.import_chunk(std::mem::take(&mut batch))?;
            bytes = 0;
        }
        Ok(())
    })?;
    store.import_chunk(batch)?;
    store.import_finish(applied)?;
    Ok(())
}

/// A snapshot's description, as openraft keeps it.
pub type Meta = SnapshotMeta<u64, BasicNode>;

/// Where a node keeps its snapshot files, and which one is current.
#[derive(Debug)]
pub struct SnapshotDir {
    dir: PathBuf,
    current: Mutex<Option<(PathBuf, Meta)>>,
    /// The file a snapshot being received is written to.
    receiving: Mutex<Option<PathBuf>>,
    next: AtomicU64,
}

impl SnapshotDir {
    /// Opens `dir`, creating it: the newest whole snapshot an earlier run left there (its
    /// file and its `.meta`) is current again if it covers no entry past `applied` (the
    /// store's applied index); everything else there is removed.
    pub fn open(dir: PathBuf, applied: Option<u64>) -> Result<SnapshotDir> {
        std::fs::create_dir_all(&dir).map_err(io("create", &dir))?;
        let mut files = Vec::new();
        for e in std::fs::read_dir(&dir).map_err(io("list", &dir))? {
            files.push(e.map_err(io("list", &dir))?.path());
        }
        let number = |p: &Path| -> Option<u64> {
            let name = p.file_name()?.to_str()?;
            let (_, rest) = name.split_once('-')?;
            rest.split('.').next()?.parse().ok()
        };
        let next = files.iter().filter_map(|p| number(p)).max().unwrap_or(0) + 1;
        let kept = files
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "snap"))
            .filter_map(|p| {
                let meta = std::fs::read(p.with_extension("meta")).ok()?;
                Some((
                    number(p)?,
                    p.clone(),
                    codec::decode_snapshot_meta(&meta).ok()?,
                ))
            })
            .max_by_key(|(n, _, _)| *n)
            .filter(|(_, _, meta)| meta.last_log_id.map(|l| l.index) <= applied);
        for path in &files {
            let keep = kept
                .as_ref()
                .is_some_and(|(_, snap, _)| path == snap || *path == snap.with_extension("meta"));
            if !keep {
                std::fs::remove_file(path).map_err(io("remove a stale snapshot", path))?;
            }
        }
        Ok(SnapshotDir {
            dir,
            current: Mutex::new(kept.map(|(_, path, meta)| (path, meta))),
            receiving: Mutex::new(None),
            next: AtomicU64::new(next),
        })
    }

    /// A new file name in the directory, not yet used.
    fn scratch(&self, what: &str) -> PathBuf {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        self.dir.join(format!("{what}-{n}.part"))
    }

    /// A new, empty file to receive a snapshot into (read and write).
    pub fn receive(&self) -> Result<File> {
        let path = self.scratch("receive");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io("create", &path))?;
        let old = self
            .receiving
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .replace(path);
        if let Some(old) = old {
            // A transfer that started over: the first file is not needed.
            let _ = std::fs::remove_file(old);
        }
        Ok(file)
    }

    /// Installs the snapshot received into `file` (from [`SnapshotDir::receive`]) over
    /// `store`, then keeps it as the current snapshot.
    pub fn install(&self, store: &HotStore, file: File, meta: Meta) -> Result<()> {
        let path = self
            .receiving
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .ok_or_else(|| bad("no snapshot is being received"))?;
        file.sync_all().map_err(io("sync", &path))?;
        let applied = meta.last_log_id.map(|id| {
            (
                folddb_log::LogIndex(id.index),
                folddb_log::Term(id.leader_id.term),
            )
        });
        let installed = install(store, file, &path, applied);
        match installed {
            Ok(()) => self.make_current(&path, meta),
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                Err(e)
            }
        }
    }

    /// Writes a snapshot of `store` to a new file and makes it current, described by what
    /// `meta` makes of what the export read: the description and the file, opened.
    pub fn build(
        &self,
        store: &HotStore,
        meta: impl FnOnce(Exported) -> Result<Meta>,
    ) -> Result<(Meta, File)> {
        let part = self.scratch("build");
        let built = File::create(&part)
            .map_err(io("create", &part))
            .and_then(|file| export(store, BufWriter::with_capacity(1 << 20, file)))
            .and_then(|exported| {
                let file = File::open(&part).map_err(io("open", &part))?;
                file.sync_all().map_err(io("sync", &part))?;
                // Raft purges the log up to the snapshot once it is built: the store must
                // hold at least that much durably (its writes skip RocksDB's WAL), or a crash
                // could leave it behind entries the log no longer holds.
                store.flush()?;
                let meta = meta(exported)?;
                self.make_current(&part, meta.clone())?;
                // Still this snapshot's file, whatever replaces it as current meanwhile.
                Ok((meta, file))
            });
        if built.is_err() {
            let _ = std::fs::remove_file(&part);
        }
        built
    }

    /// Makes the whole, durable file `part` the current snapshot, replacing the last one.
    fn make_current(&self, part: &Path, meta: Meta) -> Result<()> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let path = self.dir.join(format!("snapshot-{n}.snap"));
        // The description first: a `.snap` is never without its `.meta`.
        let described = path.with_extension("meta");
        let mut file = File::create(&described).map_err(io("create", &described))?;
        file.write_all(&codec::encode_snapshot_meta(&meta))
            .and_then(|()| file.sync_all())
            .map_err(io("write", &described))?;
        std::fs::rename(part, &path).map_err(io("rename", part))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io("sync", &self.dir))?;
        let old = self
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .replace((path, meta));
        if let Some((old, _)) = old {
            // A reader that opened it keeps it until it is done.
            let _ = std::fs::remove_file(old.with_extension("meta"));
            let _ = std::fs::remove_file(old);
        }
        Ok(())
    }

    /// The current snapshot file, opened, and its description.
    pub fn open_current(&self) -> Result<Option<(File, Meta)>> {
        let current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        match current.as_ref() {
            Some((path, meta)) => Ok(Some((
                File::open(path).map_err(io("open", path))?,
                meta.clone(),
            ))),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_of(records: &[(Family, &[u8], &[u8])]) -> Vec<u8> {
        let mut w = SnapshotWriter::new(Vec::new()).unwrap();
        for (f, k, v) in records {
            w.record(*f, k, v).unwrap();
        }
        w.finish().unwrap()
    }

    /// `cluster/FORMAT.md`, "Snapshot data": the bytes of a one-record file.
    #[test]
    fn golden_snapshot_file() {
        let bytes = file_of(&[(Family::Catalog, b"k", b"vv")]);
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            concat!(
                "464f4c44534e4150", // FOLDSNAP
                "00000001",         // version 1
                "01",               // catalog
                "00000001",         // key length
                "00000002",         // value length
                "6b7676",           // k vv
                "ff",               // end
                "0000000000000001", // one record
                "ee79955a",         // CRC-32 (IEEE) of all of the above
            )
        );
        let mut got = Vec::new();
        read_records(bytes.as_slice(), |f, k, v| {
            got.push((f, k, v));
            Ok(())
        })
        .unwrap();
        assert_eq!(got, vec![(Family::Catalog, b"k".to_vec(), b"vv".to_vec())]);
    }

    #[test]
    fn every_damaged_byte_is_refused() {
        let bytes = file_of(&[(Family::Rows, b"a", b"1"), (Family::Journal, b"b", b"")]);
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x01;
            let read = read_records(b.as_slice(), |_, _, _| Ok(()));
            assert!(
                matches!(read, Err(Error::BadSnapshot { .. })),
                "byte {i}: {read:?}"
            );
        }
        for n in 0..bytes.len() {
            assert!(
                read_records(&bytes[..n], |_, _, _| Ok(())).is_err(),
                "cut at {n}"
            );
        }
    }

    #[test]
    fn the_newest_whole_snapshot_survives_a_restart_and_the_rest_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = HotStore::open(dir.path().join("rocksdb")).unwrap();
        let mut batch = HotBatch::default();
        batch.put(Family::Rows, b"k".to_vec(), b"v".to_vec());
        store
            .apply(folddb_log::LogIndex(5), folddb_log::Term(2), batch)
            .unwrap();
        let snaps = dir.path().join("snapshots");
        let meta = |id: &str| Meta {
            last_log_id: Some(codec::log_id(2, 5)),
            last_membership: Default::default(),
            snapshot_id: id.to_owned(),
        };
        let bytes = {
            let d = SnapshotDir::open(snaps.clone(), Some(5)).unwrap();
            d.build(&store, |_| Ok(meta("first"))).unwrap();
            d.build(&store, |_| Ok(meta("second"))).unwrap();
            // A transfer cut off, and a build cut off before its rename.
            d.receive().unwrap();
            std::fs::write(snaps.join("build-99.part"), b"half").unwrap();
            let (mut f, _) = d.open_current().unwrap().unwrap();
            let mut b = Vec::new();
            f.read_to_end(&mut b).unwrap();
            b
        };
        let d = SnapshotDir::open(snaps.clone(), Some(5)).unwrap();
        let (mut f, got) = d.open_current().unwrap().unwrap();
        assert_eq!(got.snapshot_id, "second");
        let mut again = Vec::new();
        f.read_to_end(&mut again).unwrap();
        assert_eq!(again, bytes);
        let mut left: Vec<String> = std::fs::read_dir(&snaps)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left.len(), 2, "{left:?}");
        assert!(
            left[0].ends_with(".meta") && left[1].ends_with(".snap"),
            "{left:?}"
        );
        // The next file gets a number no earlier one had.
        d.build(&store, |_| Ok(meta("third"))).unwrap();
        assert_eq!(d.open_current().unwrap().unwrap().1.snapshot_id, "third");
        // A snapshot ahead of the store is not kept (raft refuses one past its commit).
        drop(d);
        let d = SnapshotDir::open(snaps.clone(), Some(4)).unwrap();
        assert!(d.open_current().unwrap().is_none());
        assert_eq!(std::fs::read_dir(&snaps).unwrap().count(), 0);
        d.build(&store, |_| Ok(meta("fourth"))).unwrap();
        // A snapshot whose description is missing is not trusted.
        drop(d);
        for e in std::fs::read_dir(&snaps).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "meta") {
                std::fs::remove_file(p).unwrap();
            }
        }
        let d = SnapshotDir::open(snaps.clone(), Some(5)).unwrap();
        assert!(d.open_current().unwrap().is_none());
        assert_eq!(std::fs::read_dir(&snaps).unwrap().count(), 0);
    }
}
