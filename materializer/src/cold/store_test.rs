//! Tests of `cold`, kept beside it (STYLE.md: a sibling `*_test.rs` once they grow).
use super::*;
use crate::catalog::{StorageKind, TableId};
use crate::hot::{Family, HotBatch, HotStore};
use crate::{LogIndex, Term, codec};
use std::fs;
use std::sync::atomic::{AtomicU64, Ordering};

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

/// A cold tier with the node state its manifests live in. Jobs write through the store's
/// job API; their commits switch the manifests as the fold does (`Manifest::flushed`,
/// `Manifest::compacted`), at the next index.
struct Tier {
    store: HotStore,
    cold: ColdStore,
    next: AtomicU64,
}

impl Tier {
    fn new(root: &Path) -> Tier {
        Tier {
            store: HotStore::open(root.join("state")).expect("state"),
            cold: ColdStore::new(root),
            next: AtomicU64::new(1),
        }
    }

    fn commit(&self, manifests: Vec<Manifest>, table: &TableDef) -> u64 {
        let index = self.next.fetch_add(1, Ordering::SeqCst);
        let mut batch = HotBatch::default();
        for mut m in manifests {
            let key = catalog::manifest_key(table.id, &m.scope);
            m.log_index = index;
            if m.segments.is_empty() {
                batch.delete(Family::Catalog, key);
            } else {
                batch.put(Family::Catalog, key, codec::encode(&m));
            }
        }
        self.store
            .apply(LogIndex(index), Term(1), batch)
            .expect("apply");
        index
    }

    fn manifest(&self, def: &TableDef, scope: &str) -> Option<Manifest> {
        catalog::manifest(&self.store, def.id, scope).expect("state")
    }

    /// A flush job of `versions` into `scope`, committed and settled; its file.
    fn flush(
        &self,
        storage: &StorageDef,
        def: &TableDef,
        scope: &str,
        versions: Vec<RowVersion>,
    ) -> String {
        let as_of = self.next.load(Ordering::SeqCst);
        let job = format!("FL-{as_of}");
        let written = self
            .cold
            .write_flush(
                storage,
                def,
                &job,
                as_of,
                BTreeMap::from([(scope.to_owned(), versions)]),
            )
            .expect("write");
        let manifests = written
            .into_iter()
            .map(|w| {
                self.manifest(def, &w.scope)
                    .unwrap_or_else(|| Manifest::new(def, &w.scope))
                    .flushed(w.segment)
            })
            .collect();
        self.commit(manifests, def);
        self.cold
            .settle(&self.store, storage, def, &[scope.to_owned()])
            .expect("settle");
        segment_file(&job)
    }

    /// A compaction job over every scope of `def`, committed and settled: (segments before,
    /// rows before, segments after, rows after).
    fn compact(&self, storage: &StorageDef, def: &TableDef, horizon: i64) -> (u64, u64, u64, u64) {
        let as_of = self.next.load(Ordering::SeqCst);
        let manifests = catalog::manifests(&self.store, def.id).expect("state");
        let written = self
            .cold
            .write_compaction(
                storage,
                def,
                &format!("CO-{as_of}"),
                as_of,
                manifests,
                horizon,
            )
            .expect("write");
        let mut report = (0, 0, 0, 0);
        let mut switched = Vec::new();
        for w in &written {
            let (m, merged) = self
                .manifest(def, &w.scope)
                .and_then(|m| m.compacted(&w.replaced, w.segment.clone()))
                .expect("not overtaken");
            report.0 += merged.len() as u64;
            report.1 += merged.iter().map(|s| s.rows).sum::<u64>();
            report.2 += u64::from(w.segment.is_some());
            report.3 += w.segment.as_ref().map_or(0, |s| s.rows);
            switched.push(m);
        }
        self.commit(switched, def);
        let scopes: Vec<String> = written.into_iter().map(|w| w.scope).collect();
        self.cold
            .settle(&self.store, storage, def, &scopes)
            .expect("settle");
        report
    }
}

#[test]
fn a_flush_segment_is_listed_by_the_state_and_published() {
    let tmp = tempfile::tempdir().expect("tmp");
    let def = TableDef::example("app", "t", TableKind::Shared);
    let tier = Tier::new(tmp.path());
    let local = StorageDef::local();
    assert_eq!(scope_dir(&local, &def, ""), "app/t");
    let rows = vec![
        version(12, 2, Some("b"), false),
        version(10, 1, Some("a"), false),
        version(11, 3, None, true),
    ];
    let file = tier.flush(&local, &def, "", rows);
    assert_eq!(file, "batch-FL-1.parquet");
    let m = tier.manifest(&def, "").expect("a manifest");
    assert_eq!((m.format, m.log_index, m.segments.len()), (2, 1, 1));
    let seg = &m.segments[0];
    assert_eq!(
        (seg.file.as_str(), seg.index, seg.rows, seg.tombstones),
        ("batch-FL-1.parquet", 1, 3, 1)
    );
    assert_eq!((seg.min_seq, seg.max_seq), (10, 12));
    assert_eq!(seg.stats[0].min.as_deref(), Some("1"));
    assert_eq!(seg.stats[0].max.as_deref(), Some("3"));
    assert_eq!(seg.stats[1].nulls, 1);
    assert!(!tmp.path().join("app/t/manifest.json.tmp").exists());
    assert!(tmp.path().join("app/t/batch-FL-1.parquet").exists());
    // The key and `_seq` are deltas, the other columns dictionaries (FORMAT.md).
    let file = fs::File::open(tmp.path().join("app/t/batch-FL-1.parquet")).expect("segment");
    let footer = ParquetRecordBatchReaderBuilder::try_new(file).expect("footer");
    let encodings: Vec<(String, Vec<parquet::basic::Encoding>)> = footer.metadata().row_groups()[0]
        .columns()
        .iter()
        .map(|c| (c.column_path().string(), c.encodings().collect()))
        .collect();
    use parquet::basic::Encoding::{DELTA_BINARY_PACKED, RLE_DICTIONARY};
    for (column, used) in &encodings {
        let delta = column == "id" || column == "_seq";
        assert_eq!(
            used.contains(&DELTA_BINARY_PACKED),
            delta,
            "{column}: {used:?}"
        );
        assert_eq!(
            used.contains(&RLE_DICTIONARY),
            column == "v",
            "{column}: {used:?}"
        );
    }
    // The published copy is the state's manifest, and is never imported as format 1.
    let published: Manifest =
        serde_json::from_slice(&fs::read(tmp.path().join("app/t/manifest.json")).expect("copy"))
            .expect("json");
    assert_eq!(published, m);
    let dir = Loc::new(tier.cold.backend(&local).expect("backend"), "app/t".into());
    assert_eq!(Manifest::load_v1(&dir).expect("load"), None);
    // A fresh cold store (a restart) reads the same.
    let cold = ColdStore::new(tmp.path());
    let all: Vec<usize> = (0..table_schema(&def).fields().len()).collect();
    let read = |deleted| {
        ids(&cold
            .visible(&tier.store, &local, &def, "", &[], deleted, &all, &|_| true)
            .expect("read"))
    };
    assert_eq!(read(false), [1, 2]);
    assert_eq!(read(true), [1, 2, 3]);
    let got = cold
        .lookup(&tier.store, &local, &def, "", &Value::BigInt(3))
        .expect("lookup");
    assert_eq!(got, Some(version(11, 3, None, true)));
    assert_eq!(
        cold.lookup(&tier.store, &local, &def, "", &Value::BigInt(9))
            .expect("lookup"),
        None
    );
}

#[test]
fn files_no_manifest_lists_are_swept_and_listed_ones_stay() {
    let tmp = tempfile::tempdir().expect("tmp");
    let def = TableDef::example("app", "t", TableKind::User);
    let tier = Tier::new(tmp.path());
    let local = StorageDef::local();
    tier.flush(&local, &def, "alice", vec![version(1, 1, Some("a"), false)]);
    // A job that crashed before its commit: its segment is on disk, listed nowhere.
    tier.cold
        .write_flush(
            &local,
            &def,
            "FL-lost",
            9,
            BTreeMap::from([
                ("alice".to_owned(), vec![version(2, 2, None, false)]),
                ("bob".to_owned(), vec![version(3, 3, None, false)]),
            ]),
        )
        .expect("write");
    assert!(tmp.path().join("app/t/bob/batch-FL-lost.parquet").exists());
    tier.cold
        .sweep_table(&tier.store, &local, &def)
        .expect("sweep");
    assert!(
        !tmp.path()
            .join("app/t/alice/batch-FL-lost.parquet")
            .exists()
    );
    assert!(!tmp.path().join("app/t/bob/batch-FL-lost.parquet").exists());
    assert!(tmp.path().join("app/t/alice/batch-FL-1.parquet").exists());
}

#[test]
fn format_1_manifests_load_as_format_2() {
    let tmp = tempfile::tempdir().expect("tmp");
    let def = TableDef::example("app", "t", TableKind::User);
    let tier = Tier::new(tmp.path());
    let local = StorageDef::local();
    tier.flush(&local, &def, "alice", vec![version(1, 1, Some("a"), false)]);
    let mut m = tier.manifest(&def, "alice").expect("manifest");
    // What a build before format 2 left: the same JSON, format 1.
    m.format = 1;
    fs::write(
        tmp.path().join("app/t/alice/manifest.json"),
        serde_json::to_vec(&m).expect("json"),
    )
    .expect("write");
    let loaded = tier.cold.load_v1_manifests(&local, &def).expect("load");
    m.format = 2;
    assert_eq!(loaded, [m]);
    // Another table's manifest under the same name is not this table's.
    let mut other = def.clone();
    other.id = TableId(99);
    assert!(
        tier.cold
            .load_v1_manifests(&local, &other)
            .expect("load")
            .is_empty()
    );
}

#[test]
fn newer_segments_and_hot_keys_hide_older_versions_and_compaction_keeps_the_newest() {
    let tmp = tempfile::tempdir().expect("tmp");
    let def = TableDef::example("app", "t", TableKind::User);
    let tier = Tier::new(tmp.path());
    let local = StorageDef::local();
    let first: Vec<RowVersion> = (1..=5).map(|i| version(i, i, Some("old"), false)).collect();
    let first = tier.flush(&local, &def, "alice", first);
    tier.flush(
        &local,
        &def,
        "alice",
        vec![
            version(6, 2, Some("new"), false),
            version(7, 3, Some("gone"), true),
        ],
    );
    let all: Vec<usize> = (0..table_schema(&def).fields().len()).collect();
    let cold = &tier.cold;
    let visible = |scope: &str, hot: &[Vec<u8>], deleted| {
        let mut got = ids(&cold
            .visible(
                &tier.store,
                &local,
                &def,
                scope,
                hot,
                deleted,
                &all,
                &|_| true,
            )
            .expect("read"));
        got.sort();
        got
    };
    assert_eq!(
        visible("alice", &[], false),
        [1, 2, 4, 5],
        "3 is deleted; 2 once"
    );
    assert_eq!(
        cold.lookup(&tier.store, &local, &def, "alice", &Value::BigInt(2))
            .expect("lookup"),
        Some(version(6, 2, Some("new"), false))
    );
    // Key 4 has a newer hot version: the cold one is hidden.
    assert_eq!(
        visible("alice", &[key_of(&Value::BigInt(4))], false),
        [1, 2, 5]
    );
    // Another owner sees nothing.
    assert!(visible("bob", &[], false).is_empty());
    // Compaction with a horizon past the tombstone drops it and the superseded versions.
    assert_eq!(tier.compact(&local, &def, 100), (2, 7, 1, 4));
    let m = tier.manifest(&def, "alice").expect("m");
    assert_eq!(m.segments.len(), 1);
    assert_eq!(m.segments[0].file, "batch-CO-3.parquet");
    let files: Vec<String> = fs::read_dir(tmp.path().join("app/t/alice"))
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!files.contains(&first), "{files:?}");
    assert_eq!(visible("alice", &[], true), [1, 2, 4, 5]);
    // A second compaction has nothing to merge: the segment stays as it is.
    assert_eq!(tier.compact(&local, &def, 100), (1, 4, 1, 4));
    assert_eq!(
        tier.manifest(&def, "alice").expect("m").segments[0].file,
        "batch-CO-3.parquet"
    );
    // The directory of a dropped table goes whole.
    cold.remove_dir(&local, &table_dir(&local, &def))
        .expect("drop");
    assert!(!tmp.path().join("app/t").exists());
}

#[test]
fn a_compaction_overtaken_by_another_change_is_refused() {
    let tmp = tempfile::tempdir().expect("tmp");
    let def = TableDef::example("app", "t", TableKind::Shared);
    let tier = Tier::new(tmp.path());
    let local = StorageDef::local();
    tier.flush(&local, &def, "", vec![version(1, 1, None, false)]);
    tier.flush(&local, &def, "", vec![version(2, 1, None, false)]);
    let stale = tier.manifest(&def, "").expect("m");
    let replaced: Vec<String> = stale.segments.iter().map(|s| s.file.clone()).collect();
    tier.compact(&local, &def, 0);
    let now = tier.manifest(&def, "").expect("m");
    assert!(now.clone().compacted(&replaced, None).is_none());
    // A flush appended meanwhile does not overtake it: the merged ones are a prefix.
    let (m, merged) = stale
        .clone()
        .flushed(now.segments[0].clone())
        .compacted(&replaced, None)
        .expect("a prefix");
    assert_eq!((merged.len(), m.segments.len()), (2, 1));
}

#[test]
fn damaged_files_are_errors_that_name_them() {
    let tmp = tempfile::tempdir().expect("tmp");
    let def = TableDef::example("app", "t", TableKind::User);
    let local = StorageDef::local();
    assert_eq!(scope_dir(&local, &def, "al/../ice"), "app/t/al%2F..%2Fice");
    let path_of = tmp.path().join("app/t/al%2F..%2Fice");
    let tier = Tier::new(tmp.path());
    let file = tier.flush(
        &local,
        &def,
        "al/../ice",
        vec![version(1, 1, Some("a"), false)],
    );
    let path = path_of.join(&file);
    let bytes = fs::read(&path).expect("read");
    fs::write(&path, &bytes[..bytes.len() / 2]).expect("truncate");
    let all: Vec<usize> = (0..table_schema(&def).fields().len()).collect();
    let e = tier
        .cold
        .visible(
            &tier.store,
            &local,
            &def,
            "al/../ice",
            &[],
            false,
            &all,
            &|_| true,
        )
        .expect_err("damaged");
    assert_eq!(e.location, path.display().to_string());
    assert!(e.to_string().contains(&file), "{e}");
    assert_eq!(tier.cold.check(&tier.store, &local, &def, false).len(), 1);
    let dir = Loc::new(
        tier.cold.backend(&local).expect("backend"),
        scope_dir(&local, &def, "al/../ice"),
    );
    fs::write(path_of.join(MANIFEST_FILE), b"{not json").expect("damage");
    let e = Manifest::load_v1(&dir).expect_err("damaged manifest");
    assert!(e.to_string().contains("manifest.json"), "{e}");
    let mut m = Manifest::new(&def, "x");
    m.format = 99;
    m.publish(&dir).expect("stored");
    assert!(
        Manifest::load_v1(&dir).is_err(),
        "an unknown format is refused"
    );
}

#[test]
fn object_storage_with_custom_templates_holds_the_same_tier() {
    let tmp = tempfile::tempdir().expect("tmp");
    let tier = Tier::new(tmp.path());
    let mut storage = StorageDef::local();
    storage.id = "objects".into();
    storage.kind = StorageKind::S3;
    storage.user_tables_template = "tenants/{namespace}-{tableName}/{userId}".into();
    let memory = Arc::new(object_store::memory::InMemory::new());
    let io = super::super::backend::tests::io();
    let on_io = |b: super::super::backend::ObjectBackend| b.with_io(Some(io.handle().clone()));
    tier.cold.install_backend(
        &storage,
        Arc::new(on_io(super::super::backend::ObjectBackend::new(
            memory.clone(),
            "memory://bucket",
            "base",
        ))),
    );
    let def = TableDef::example("app", "t", TableKind::User);
    let first = tier.flush(
        &storage,
        &def,
        "alice",
        (1..=3).map(|i| version(i, i, Some("a"), false)).collect(),
    );
    tier.flush(&storage, &def, "alice", vec![version(9, 2, None, true)]);
    let all: Vec<usize> = (0..table_schema(&def).fields().len()).collect();
    let mut got = ids(&tier
        .cold
        .visible(
            &tier.store,
            &storage,
            &def,
            "alice",
            &[],
            false,
            &all,
            &|_| true,
        )
        .expect("read"));
    got.sort();
    assert_eq!(got, [1, 3]);
    assert_eq!(
        tier.cold
            .scopes_of(&tier.store, &storage, &def)
            .expect("scopes")
            .len(),
        1
    );
    let state = tier
        .cold
        .scope(&tier.store, &storage, &def, "alice")
        .expect("scope");
    assert_eq!(
        state.locate(&first),
        format!("memory://bucket/tenants/app-t/alice/{first}")
    );
    tier.compact(&storage, &def, 100);
    let listing = super::super::backend::Backend::list(
        &on_io(super::super::backend::ObjectBackend::new(
            memory.clone(),
            "m",
            "base",
        )),
        "tenants/app-t/alice",
    )
    .expect("list");
    assert_eq!(listing.files, ["batch-CO-3.parquet", "manifest.json"]);
    assert!(
        !tmp.path().join("tenants").exists(),
        "nothing written locally"
    );
    tier.cold
        .remove_dir(&storage, &table_dir(&storage, &def))
        .expect("drop");
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
    tier: OnceLock<std::sync::Weak<Tier>>,
    storage: StorageDef,
    def: TableDef,
    fired: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Tier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tier").finish_non_exhaustive()
    }
}

impl Backend for Racing {
    fn locate(&self, path: &str) -> String {
        self.inner.locate(path)
    }
    fn open(&self, path: &str) -> super::super::backend::BackendResult<Option<Source>> {
        if path.ends_with(".parquet")
            && !self.fired.swap(true, std::sync::atomic::Ordering::SeqCst)
            && let Some(tier) = self.tier.get().and_then(std::sync::Weak::upgrade)
        {
            tier.compact(&self.storage, &self.def, 0);
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
    let tier = Arc::new(Tier::new(tmp.path()));
    let racing = Arc::new(Racing {
        inner: super::super::backend::LocalBackend::new(tmp.path().join("racing")),
        tier: OnceLock::new(),
        storage: storage.clone(),
        def: def.clone(),
        fired: std::sync::atomic::AtomicBool::new(true),
    });
    let _ = racing.tier.set(Arc::downgrade(&tier));
    tier.cold.install_backend(&storage, racing.clone());
    let all: Vec<usize> = (0..table_schema(&def).fields().len()).collect();
    tier.flush(
        &storage,
        &def,
        "",
        (1..=4).map(|i| version(i, i, Some("a"), false)).collect(),
    );
    tier.flush(&storage, &def, "", vec![version(9, 2, Some("b"), false)]);
    // The read starts on both segments; the compaction replaces them with batch-CO-3
    // (and removes their files) before the first file is opened.
    racing
        .fired
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let mut got = ids(&tier
        .cold
        .visible(&tier.store, &storage, &def, "", &[], false, &all, &|_| true)
        .expect("read"));
    got.sort();
    assert_eq!(got, [1, 2, 3, 4]);
    assert!(racing.fired.load(std::sync::atomic::Ordering::SeqCst));
    let files = super::super::backend::Backend::list(racing.as_ref(), "app/t").expect("list");
    assert_eq!(files.files, ["batch-CO-3.parquet", "manifest.json"]);
    // A key lookup overtaken the same way.
    tier.flush(&storage, &def, "", vec![version(12, 3, Some("c"), false)]);
    racing
        .fired
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let got = tier
        .cold
        .lookup(&tier.store, &storage, &def, "", &Value::BigInt(1))
        .expect("lookup");
    assert_eq!(got, Some(version(1, 1, Some("a"), false)));
    assert!(racing.fired.load(std::sync::atomic::Ordering::SeqCst));
    let files = super::super::backend::Backend::list(racing.as_ref(), "app/t").expect("list");
    assert_eq!(files.files, ["batch-CO-5.parquet", "manifest.json"]);
}

/// `fixtures/cold-v1`: a SHARED table's scope as a build before manifest format 2 left it
/// (its `manifest.json` in the storage, format 1, and segment `batch-7.parquet` written by
/// the entry at index 7). It is imported into the node's state once, then reads as before.
#[test]
fn a_format_1_fixture_is_imported_once_and_reads_back() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/cold-v1/app/t");
    let tmp = tempfile::tempdir().expect("tmp");
    fs::create_dir_all(tmp.path().join("app/t")).expect("dir");
    for name in ["manifest.json", "batch-7.parquet"] {
        fs::copy(fixture.join(name), tmp.path().join("app/t").join(name)).expect("copy");
    }
    let tier = Tier::new(tmp.path());
    let def = TableDef::example("app", "t", TableKind::Shared);
    let mut batch = HotBatch::default();
    batch.put(
        Family::Catalog,
        catalog::table_key(&def.namespace, &def.name),
        codec::encode(&def),
    );
    batch.put(
        Family::Catalog,
        catalog::history_key(def.id, def.schema_version),
        codec::encode(&def),
    );
    tier.store.upgrade(batch).expect("catalog");
    assert_eq!(
        super::super::job::import_v1_manifests(&tier.store, &tier.cold),
        Ok(1)
    );
    let m = tier.manifest(&def, "").expect("imported");
    assert_eq!((m.format, m.log_index, m.segments.len()), (2, 7, 1));
    assert_eq!(m.segments[0].file, "batch-7.parquet");
    let all: Vec<usize> = (0..table_schema(&def).fields().len()).collect();
    let local = StorageDef::local();
    let read = |deleted| {
        ids(&tier
            .cold
            .visible(&tier.store, &local, &def, "", &[], deleted, &all, &|_| true)
            .expect("read"))
    };
    assert_eq!(read(false), [1, 2]);
    assert_eq!(read(true), [1, 2, 3]);
    // Once only: a later start imports nothing, whatever the storage holds.
    assert_eq!(
        super::super::job::import_v1_manifests(&tier.store, &tier.cold),
        Ok(0)
    );
    // Such a store is marked for a key index build (no earlier build kept one): it indexes
    // the live keys with their newest `_seq`, once.
    let mut mark = HotBatch::default();
    mark.put(Family::Meta, crate::hot::KEY_INDEX_PENDING_KEY, vec![1]);
    tier.store.upgrade(mark).expect("mark");
    assert_eq!(
        super::super::job::build_key_index(&tier.store, &tier.cold),
        Ok(2)
    );
    let seq = |id| {
        tier.cold
            .lookup(&tier.store, &local, &def, "", &Value::BigInt(id))
            .expect("lookup")
            .map(|v| v.seq)
    };
    let indexed: Vec<(Vec<u8>, Option<i64>)> = tier
        .store
        .scan_prefix(Family::ColdKeys, &[])
        .expect("index")
        .into_iter()
        .map(|(k, v)| (k, crate::row::decode_indexed_seq(&v).ok()))
        .collect();
    let key = |id| crate::row::row_key(def.id, "", &Value::BigInt(id));
    assert_eq!(indexed, [(key(1), seq(1)), (key(2), seq(2))]);
    assert_eq!(
        tier.store
            .get(Family::Meta, crate::hot::KEY_INDEX_PENDING_KEY)
            .expect("meta"),
        None
    );
    assert_eq!(
        super::super::job::build_key_index(&tier.store, &tier.cold),
        Ok(0)
    );
}

/// Rows read together by key are each key's newest cold version, whatever segment, row
/// group or page it is in; a key asked twice gets its row twice; a key no segment holds,
/// `None`. They are the rows a full read finds.
#[test]
fn rows_read_together_by_key_are_their_newest_versions() {
    let tmp = tempfile::tempdir().expect("tmp");
    let def = TableDef::example("app", "t", TableKind::Shared);
    let tier = Tier::new(tmp.path());
    let local = StorageDef::local();
    let text = |id: i64, round: i64| format!("{id}-{round}");
    let first: Vec<RowVersion> = (0..300)
        .map(|id| version(id + 1, id, Some(&text(id, 1)), false))
        .collect();
    tier.flush(&local, &def, "", first);
    // A later segment rewrites every tenth row, and deletes row 5.
    let second: Vec<RowVersion> = (0..300)
        .step_by(10)
        .map(|id| version(1000 + id, id, Some(&text(id, 2)), false))
        .chain([version(2000, 5, None, true)])
        .collect();
    tier.flush(&local, &def, "", second);
    let asked: Vec<i64> = vec![299, 20, 7, 5, 1000, 20, 0, 131, -1];
    let pks: Vec<Value> = asked.iter().map(|&id| Value::BigInt(id)).collect();
    let cold = ColdStore::new(tmp.path());
    let got = cold
        .lookup_many(&tier.store, &local, &def, "", &pks)
        .expect("lookup");
    let want: Vec<Option<RowVersion>> = asked
        .iter()
        .map(|&id| match id {
            5 => Some(version(2000, 5, None, true)),
            0..300 if id % 10 == 0 => Some(version(1000 + id, id, Some(&text(id, 2)), false)),
            0..300 => Some(version(id + 1, id, Some(&text(id, 1)), false)),
            _ => None,
        })
        .collect();
    assert_eq!(got, want);
    for (pk, want) in pks.iter().zip(&want) {
        assert_eq!(
            &cold.lookup(&tier.store, &local, &def, "", pk).expect("one"),
            want
        );
    }
}
