//! Tests of `cold`, kept beside it (STYLE.md: a sibling `*_test.rs` once they grow).
use super::*;
use crate::catalog::StorageKind;
use std::fs;

fn loc(cold: &ColdStore, storage: &StorageDef, dir: String) -> Loc {
    Loc::new(cold.backend(storage).expect("backend"), dir)
}

fn version(seq: i64, id: i64, v: Option<&str>, deleted: bool) -> RowVersion {
    RowVersion {
        seq,
        deleted,
        cells: vec![
            (1, Value::BigInt(id)),
            (2, v.map_or(Value::Null, |s| Value::Text(s.into()))),
        ],
    }
}

fn ids(batches: &[RecordBatch]) -> Vec<i64> {
    batches
        .iter()
        .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
        .collect()
}

#[test]
fn flushes_write_segments_named_by_entry_and_are_idempotent() {
    let tmp = tempfile::tempdir().expect("tmp");
    let def = TableDef::example("app", "t", TableKind::Shared);
    let cold = ColdStore::new(tmp.path());
    let local = StorageDef::local();
    assert_eq!(scope_dir(&local, &def, ""), "app/t");
    let dir = loc(&cold, &local, scope_dir(&local, &def, ""));
    let rows = vec![
        version(12, 2, Some("b"), false),
        version(10, 1, Some("a"), false),
        version(11, 3, None, true),
    ];
    let r = cold
        .flush(&local, &def, "", LogIndex(7), rows.clone())
        .expect("flush");
    assert_eq!((r.rows, r.already), (3, false));
    let again = cold
        .flush(&local, &def, "", LogIndex(7), rows)
        .expect("flush");
    assert!(again.already, "a re-applied entry writes nothing");
    let m = Manifest::load(&dir).expect("load").expect("a manifest");
    assert_eq!(m.log_index, 7);
    assert_eq!(m.segments.len(), 1);
    let seg = &m.segments[0];
    assert_eq!(
        (seg.file.as_str(), seg.rows, seg.tombstones),
        ("batch-7.parquet", 3, 1)
    );
    assert_eq!((seg.min_seq, seg.max_seq), (10, 12));
    assert_eq!(seg.stats[0].min.as_deref(), Some("1"));
    assert_eq!(seg.stats[0].max.as_deref(), Some("3"));
    assert_eq!(seg.stats[1].nulls, 1);
    assert!(!tmp.path().join("app/t/manifest.json.tmp").exists());
    assert!(tmp.path().join("app/t/batch-7.parquet").exists());
    // A fresh store (a restart) reads the same.
    let cold = ColdStore::new(tmp.path());
    let all: Vec<usize> = (0..table_schema(&def).fields().len()).collect();
    assert_eq!(
        ids(&cold
            .visible(&local, &def, "", &[], false, &all, &|_| true)
            .expect("read")),
        [1, 2]
    );
    assert_eq!(
        ids(&cold
            .visible(&local, &def, "", &[], true, &all, &|_| true)
            .expect("read")),
        [1, 2, 3]
    );
    let got = cold
        .lookup(&local, &def, "", &Value::BigInt(3))
        .expect("lookup");
    assert_eq!(got, Some(version(11, 3, None, true)));
    assert_eq!(
        cold.lookup(&local, &def, "", &Value::BigInt(9))
            .expect("lookup"),
        None
    );
}

#[test]
fn newer_segments_and_hot_keys_hide_older_versions_and_compaction_keeps_the_newest() {
    let tmp = tempfile::tempdir().expect("tmp");
    let def = TableDef::example("app", "t", TableKind::User);
    let cold = ColdStore::new(tmp.path());
    let local = StorageDef::local();
    let first: Vec<RowVersion> = (1..=5).map(|i| version(i, i, Some("old"), false)).collect();
    cold.flush(&local, &def, "alice", LogIndex(10), first)
        .expect("flush");
    cold.flush(
        &local,
        &def,
        "alice",
        LogIndex(20),
        vec![
            version(6, 2, Some("new"), false),
            version(7, 3, Some("gone"), true),
        ],
    )
    .expect("flush");
    let all: Vec<usize> = (0..table_schema(&def).fields().len()).collect();
    let seen = cold
        .visible(&local, &def, "alice", &[], false, &all, &|_| true)
        .expect("read");
    let mut got = ids(&seen);
    got.sort();
    assert_eq!(got, [1, 2, 4, 5], "3 is deleted; 2 once");
    assert_eq!(
        cold.lookup(&local, &def, "alice", &Value::BigInt(2))
            .expect("lookup"),
        Some(version(6, 2, Some("new"), false))
    );
    // Key 4 has a newer hot version: the cold one is hidden.
    let hot = vec![key_of(&Value::BigInt(4))];
    let mut got = ids(&cold
        .visible(&local, &def, "alice", &hot, false, &all, &|_| true)
        .expect("read"));
    got.sort();
    assert_eq!(got, [1, 2, 5]);
    // Another owner sees nothing.
    assert!(
        cold.visible(&local, &def, "bob", &[], false, &all, &|_| true)
            .expect("read")
            .is_empty()
    );
    // Compaction with a horizon past the tombstone drops it and the superseded versions.
    let report = cold
        .compact(&local, &def, LogIndex(30), 100)
        .expect("compact");
    assert_eq!(
        (
            report.segments_before,
            report.rows_before,
            report.segments_after,
            report.rows_after
        ),
        (2, 7, 1, 4)
    );
    let m = Manifest::load(&loc(&cold, &local, scope_dir(&local, &def, "alice")))
        .expect("load")
        .expect("m");
    assert_eq!(m.segments.len(), 1);
    assert_eq!(m.segments[0].file, "batch-30.parquet");
    let files: Vec<String> = fs::read_dir(tmp.path().join("app/t/alice"))
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!files.contains(&"batch-10.parquet".to_owned()), "{files:?}");
    let cold = ColdStore::new(tmp.path());
    let mut got = ids(&cold
        .visible(&local, &def, "alice", &[], true, &all, &|_| true)
        .expect("read"));
    got.sort();
    assert_eq!(got, [1, 2, 4, 5]);
    // Drop removes everything.
    cold.drop_table(&local, &def).expect("drop");
    assert!(!tmp.path().join("app/t").exists());
}

#[test]
fn damaged_files_are_errors_that_name_them() {
    let tmp = tempfile::tempdir().expect("tmp");
    let def = TableDef::example("app", "t", TableKind::User);
    let local = StorageDef::local();
    assert_eq!(scope_dir(&local, &def, "al/../ice"), "app/t/al%2F..%2Fice");
    let path_of = tmp.path().join("app/t/al%2F..%2Fice");
    let cold = ColdStore::new(tmp.path());
    let dir = loc(&cold, &local, scope_dir(&local, &def, "al/../ice"));
    cold.flush(
        &local,
        &def,
        "al/../ice",
        LogIndex(3),
        vec![version(1, 1, Some("a"), false)],
    )
    .expect("flush");
    let path = path_of.join("batch-3.parquet");
    let bytes = fs::read(&path).expect("read");
    fs::write(&path, &bytes[..bytes.len() / 2]).expect("truncate");
    let all: Vec<usize> = (0..table_schema(&def).fields().len()).collect();
    let e = cold
        .visible(&local, &def, "al/../ice", &[], false, &all, &|_| true)
        .expect_err("damaged");
    assert_eq!(e.location, path.display().to_string());
    assert!(e.to_string().contains("batch-3.parquet"), "{e}");
    assert_eq!(cold.check(&local, &def, false).len(), 1);
    fs::write(path_of.join(MANIFEST_FILE), b"{not json").expect("damage");
    let e = Manifest::load(&dir).expect_err("damaged manifest");
    assert!(e.to_string().contains("manifest.json"), "{e}");
    let mut m = Manifest::new(&def, "x");
    m.format = 99;
    m.store(&dir).expect("stored");
    assert!(
        Manifest::load(&dir).is_err(),
        "an unknown format is refused"
    );
}

#[test]
fn object_storage_with_custom_templates_holds_the_same_tier() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cold = ColdStore::new(tmp.path());
    let mut storage = StorageDef::local();
    storage.id = "objects".into();
    storage.kind = StorageKind::S3;
    storage.user_tables_template = "tenants/{namespace}-{tableName}/{userId}".into();
    let memory = Arc::new(object_store::memory::InMemory::new());
    let io = super::super::backend::tests::io();
    let on_io = |b: super::super::backend::ObjectBackend| b.with_io(Some(io.handle().clone()));
    cold.install_backend(
        &storage,
        Arc::new(on_io(super::super::backend::ObjectBackend::new(
            memory.clone(),
            "memory://bucket",
            "base",
        ))),
    );
    let def = TableDef::example("app", "t", TableKind::User);
    cold.flush(
        &storage,
        &def,
        "alice",
        LogIndex(4),
        (1..=3).map(|i| version(i, i, Some("a"), false)).collect(),
    )
    .expect("flush");
    cold.flush(
        &storage,
        &def,
        "alice",
        LogIndex(8),
        vec![version(9, 2, None, true)],
    )
    .expect("flush");
    let all: Vec<usize> = (0..table_schema(&def).fields().len()).collect();
    let mut got = ids(&cold
        .visible(&storage, &def, "alice", &[], false, &all, &|_| true)
        .expect("read"));
    got.sort();
    assert_eq!(got, [1, 3]);
    assert_eq!(cold.scopes_of(&storage, &def).expect("scopes").len(), 1);
    let state = cold.scope(&storage, &def, "alice").expect("scope");
    assert_eq!(
        state.locate("batch-4.parquet"),
        "memory://bucket/tenants/app-t/alice/batch-4.parquet"
    );
    cold.compact(&storage, &def, LogIndex(12), 100)
        .expect("compact");
    let listing = super::super::backend::Backend::list(
        &on_io(super::super::backend::ObjectBackend::new(
            memory.clone(),
            "m",
            "base",
        )),
        "tenants/app-t/alice",
    )
    .expect("list");
    assert_eq!(listing.files, ["batch-12.parquet", "manifest.json"]);
    assert!(
        !tmp.path().join("tenants").exists(),
        "nothing written locally"
    );
    cold.drop_table(&storage, &def).expect("drop");
    let listing = super::super::backend::Backend::list(
        &on_io(super::super::backend::ObjectBackend::new(
            memory, "m", "base",
        )),
        "tenants",
    )
    .expect("list");
    assert!(listing.dirs.is_empty(), "{listing:?}");
}

/// A storage whose first segment read first compacts the table: a compaction landing
/// in the middle of a read.
#[derive(Debug)]
struct Racing {
    inner: super::super::backend::LocalBackend,
    cold: OnceLock<std::sync::Weak<ColdStore>>,
    storage: StorageDef,
    def: TableDef,
    fired: std::sync::atomic::AtomicBool,
    index: std::sync::atomic::AtomicU64,
}

impl Backend for Racing {
    fn locate(&self, path: &str) -> String {
        self.inner.locate(path)
    }
    fn open(&self, path: &str) -> super::super::backend::BackendResult<Option<Source>> {
        if path.ends_with(".parquet")
            && !self.fired.swap(true, std::sync::atomic::Ordering::SeqCst)
            && let Some(cold) = self.cold.get().and_then(std::sync::Weak::upgrade)
        {
            let index = self.index.load(std::sync::atomic::Ordering::SeqCst);
            cold.compact(&self.storage, &self.def, LogIndex(index), 0)
                .expect("compact");
        }
        self.inner.open(path)
    }
    fn write(&self, path: &str, bytes: Vec<u8>) -> super::super::backend::BackendResult<()> {
        self.inner.write(path, bytes)
    }
    fn list(
        &self,
        dir: &str,
    ) -> super::super::backend::BackendResult<super::super::backend::Listing> {
        self.inner.list(dir)
    }
    fn remove(&self, path: &str) -> super::super::backend::BackendResult<()> {
        self.inner.remove(path)
    }
    fn remove_all(&self, dir: &str) -> super::super::backend::BackendResult<()> {
        self.inner.remove_all(dir)
    }
}

#[test]
fn a_read_that_a_compaction_overtakes_reads_the_new_segments() {
    let tmp = tempfile::tempdir().expect("tmp");
    let def = TableDef::example("app", "t", TableKind::Shared);
    let mut storage = StorageDef::local();
    storage.id = "racing".into();
    let cold = Arc::new(ColdStore::new(tmp.path()));
    let racing = Arc::new(Racing {
        inner: super::super::backend::LocalBackend::new(tmp.path().join("racing")),
        cold: OnceLock::new(),
        storage: storage.clone(),
        def: def.clone(),
        fired: std::sync::atomic::AtomicBool::new(true),
        index: std::sync::atomic::AtomicU64::new(30),
    });
    let _ = racing.cold.set(Arc::downgrade(&cold));
    cold.install_backend(&storage, racing.clone());
    let all: Vec<usize> = (0..table_schema(&def).fields().len()).collect();
    cold.flush(
        &storage,
        &def,
        "",
        LogIndex(10),
        (1..=4).map(|i| version(i, i, Some("a"), false)).collect(),
    )
    .expect("flush");
    cold.flush(
        &storage,
        &def,
        "",
        LogIndex(20),
        vec![version(9, 2, Some("b"), false)],
    )
    .expect("flush");
    // The read starts on batch-10 and batch-20; the compaction replaces both with
    // batch-30 before the first file is opened.
    racing
        .fired
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let mut got = ids(&cold
        .visible(&storage, &def, "", &[], false, &all, &|_| true)
        .expect("read"));
    got.sort();
    assert_eq!(got, [1, 2, 3, 4]);
    assert!(racing.fired.load(std::sync::atomic::Ordering::SeqCst));
    let files = super::super::backend::Backend::list(racing.as_ref(), "app/t").expect("list");
    assert_eq!(files.files, ["batch-30.parquet", "manifest.json"]);
    // A key lookup overtaken the same way.
    cold.flush(
        &storage,
        &def,
        "",
        LogIndex(40),
        vec![version(12, 3, Some("c"), false)],
    )
    .expect("flush");
    racing.index.store(50, std::sync::atomic::Ordering::SeqCst);
    racing
        .fired
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let got = cold
        .lookup(&storage, &def, "", &Value::BigInt(1))
        .expect("lookup");
    assert_eq!(got, Some(version(1, 1, Some("a"), false)));
    assert!(racing.fired.load(std::sync::atomic::Ordering::SeqCst));
    let files = super::super::backend::Backend::list(racing.as_ref(), "app/t").expect("list");
    assert_eq!(files.files, ["batch-50.parquet", "manifest.json"]);
}
