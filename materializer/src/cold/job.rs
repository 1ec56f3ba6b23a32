//! Flush and compaction jobs, outside apply (`materializer/FORMAT.md`, "Cold tier"): each
//! reads one consistent snapshot of the node's state, writes its segments durably, and
//! returns the commit op to propose. Once that op's outcome is known (applied or rejected,
//! never while unknown), [`settle`] publishes the manifests and removes the files no
//! manifest lists.

use std::collections::BTreeMap;

use super::backend::join;
use super::store::scope_dir;
use super::{ColdStore, LocalFile, SegmentMeta};
use crate::catalog::{self, StateRead, StorageDef, TableDef, TableId, TableKind};
use crate::codec;
use crate::event::Op;
use crate::hot::{Family, HotStore};
use crate::row::{RowVersion, table_prefix};
use crate::seq::Seq;

/// Tombstones are kept this long by default (`DELETED_RETENTION_HOURS`).
pub const DEFAULT_DELETED_RETENTION_HOURS: u64 = 168;

/// Meta key of the last `_seq` assigned (as the fold writes it).
const LAST_SEQ_KEY: &[u8] = b"last_seq";
/// Meta key of the applied index (index then term, u64 BE each).
const APPLIED_KEY: &[u8] = b"applied";

/// The current definition of table `id` and its storage, as `state` holds them.
pub fn table_and_storage(
    state: &dyn StateRead,
    id: TableId,
) -> Result<(TableDef, StorageDef), String> {
    let def = catalog::table_history(state, id)
        .map_err(|e| e.to_string())?
        .pop()
        .ok_or("the table was dropped")?;
    let storage = catalog::storage(state, &def.options.storage_id)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| {
            format!(
                "Storage '{}' of table {} does not exist",
                def.options.storage_id,
                def.qualified_name()
            )
        })?;
    Ok((def, storage))
}

/// The owner part of a row key (see [`crate::row::scope_prefix`]).
pub(crate) fn scope_of(key: &[u8]) -> Option<&str> {
    let len = u16::from_be_bytes(key.get(8..10)?.try_into().ok()?) as usize;
    std::str::from_utf8(key.get(10..10 + len)?).ok()
}

/// The applied index and the last `_seq` of `state`.
fn position(state: &dyn StateRead) -> Result<(u64, i64), String> {
    let read = |key: &[u8]| -> Result<Option<u64>, String> {
        Ok(state
            .get(Family::Meta, key)
            .map_err(|e| e.to_string())?
            .and_then(|b| Some(u64::from_be_bytes(b.get(..8)?.try_into().ok()?))))
    };
    Ok((
        read(APPLIED_KEY)?.unwrap_or(0),
        read(LAST_SEQ_KEY)?.unwrap_or(0) as i64,
    ))
}

/// Table `id` and its storage, unless it is a STREAM table (refused with `why`).
fn cold_table(
    state: &dyn StateRead,
    id: TableId,
    why: &str,
) -> Result<(TableDef, StorageDef), String> {
    let (def, storage) = table_and_storage(state, id)?;
    if def.kind == TableKind::Stream {
        return Err(format!(
            "Table {} is a STREAM table: {why}",
            def.qualified_name()
        ));
    }
    Ok((def, storage))
}

/// Writes every hot version of table `id` (all owners) in `state` as the segments of job
/// `job`: the `CommitFlush` that commits them.
fn write_flush(
    state: &dyn StateRead,
    cold: &ColdStore,
    id: TableId,
    job: &str,
) -> Result<Op, String> {
    let (def, storage) = cold_table(state, id, "STREAM tables are never flushed")?;
    let (as_of, through_seq) = position(state)?;
    // Versions at or below the last flush's mark are in its segments already, waiting for
    // their trim (one a crash or a lost leadership left): not written twice.
    let flushed = catalog::flushed_through(state, id)
        .map_err(|e| e.to_string())?
        .unwrap_or(i64::MIN);
    let mut scopes: BTreeMap<String, Vec<RowVersion>> = BTreeMap::new();
    for (key, bytes) in state
        .scan_prefix(Family::Rows, &table_prefix(def.id))
        .map_err(|e| e.to_string())?
    {
        let scope = scope_of(&key).ok_or("a row key has no owner part")?;
        let version: RowVersion =
            codec::decode(&bytes, "a row version").map_err(|e| e.to_string())?;
        if version.seq > flushed {
            scopes.entry(scope.to_owned()).or_default().push(version);
        }
    }
    let segments = cold
        .write_flush(&storage, &def, job, as_of, scopes)
        .map_err(|e| format!("Storage flush of {} failed: {e}", def.qualified_name()))?;
    Ok(Op::CommitFlush {
        table: id,
        job: job.to_owned(),
        as_of,
        through_seq,
        segments,
    })
}

/// Merges the segments of every scope of table `id` as `state` lists them, as job `job`,
/// dropping tombstones with a `_seq` below `horizon`: the `CommitCompact` that commits them.
fn write_compaction(
    state: &dyn StateRead,
    cold: &ColdStore,
    id: TableId,
    job: &str,
    horizon: i64,
) -> Result<Op, String> {
    let (def, storage) = cold_table(state, id, "it has no cold segments to compact")?;
    let (as_of, _) = position(state)?;
    let manifests = catalog::manifests(state, id).map_err(|e| e.to_string())?;
    let scopes = cold
        .write_compaction(&storage, &def, job, as_of, manifests, horizon)
        .map_err(|e| format!("Storage compaction of {} failed: {e}", def.qualified_name()))?;
    Ok(Op::CommitCompact {
        table: id,
        job: job.to_owned(),
        as_of,
        horizon,
        scopes,
    })
}

/// Writes every hot version of table `id` (all owners) as segments of job `job`, from one
/// snapshot of `store`, and returns the [`Op::CommitFlush`] that commits them.
pub fn prepare_flush(
    store: &HotStore,
    cold: &ColdStore,
    id: TableId,
    job: &str,
) -> Result<Op, String> {
    write_flush(&store.snapshot(), cold, id, job)
}

/// Merges the segments of every scope of table `id` as job `job`, from one snapshot of
/// `store`, dropping tombstones older than the table's `DELETED_RETENTION_HOURS` at
/// `now_ms`, and returns the [`Op::CommitCompact`] that commits them.
pub fn prepare_compact(
    store: &HotStore,
    cold: &ColdStore,
    id: TableId,
    job: &str,
    now_ms: u64,
) -> Result<Op, String> {
    let snap = store.snapshot();
    let (def, _) = table_and_storage(&snap, id)?;
    let hours = def
        .options
        .deleted_retention_hours
        .unwrap_or(DEFAULT_DELETED_RETENTION_HOURS);
    let horizon = Seq::at_unix_ms(now_ms.saturating_sub(hours * 3_600_000)).0;
    write_compaction(&snap, cold, id, job, horizon)
}

/// Versions of a table's hot tier one [`Op::TrimHot`] moves out at most: its apply costs
/// about a millisecond per thousand, which is how long the writes behind it wait.
pub const TRIM_KEYS: usize = 4096;

/// The [`Op::TrimHot`] entries that move table `id`'s hot versions up to its flush mark out
/// of the hot tier, as `store` holds it now: the table's keys cut into ranges of `per_trim`
/// keys, first to last, so that each entry's apply is short. None when the table has no
/// mark or no hot version at or below it. Proposed by a flush job once its commit applied
/// (they also finish a trim an earlier job could not).
pub fn trims(store: &HotStore, id: TableId, per_trim: usize) -> Result<Vec<Op>, String> {
    let snapshot = store.snapshot();
    let Some(mark) = catalog::flushed_through(&snapshot, id).map_err(|e| e.to_string())? else {
        return Ok(Vec::new());
    };
    let prefix = table_prefix(id);
    let mut cursor = snapshot
        .cursor(Family::Rows, &prefix)
        .map_err(|e| e.to_string())?;
    let (mut bounds, mut in_range, mut due) = (Vec::new(), 0usize, false);
    while let (Some(key), Some(value)) = (cursor.key(), cursor.value()) {
        if in_range == per_trim.max(1) {
            bounds.push(key[prefix.len()..].to_vec());
            in_range = 0;
        }
        in_range += 1;
        due |= RowVersion::head_of(value).map_err(|e| e.to_string())?.seq <= mark;
        cursor.advance().map_err(|e| e.to_string())?;
    }
    if !due {
        return Ok(Vec::new());
    }
    let starts: Vec<Vec<u8>> = std::iter::once(Vec::new())
        .chain(bounds.iter().cloned())
        .collect();
    let ends = bounds.into_iter().map(Some).chain(std::iter::once(None));
    Ok(starts
        .into_iter()
        .zip(ends)
        .map(|(from, to)| Op::TrimHot {
            table: id,
            from,
            to,
        })
        .collect())
}

/// The applied index a commit op's job read its state at.
pub fn as_of(op: &Op) -> Option<u64> {
    match op {
        Op::CommitFlush { as_of, .. }
        | Op::CommitFlushInline { as_of, .. }
        | Op::CommitCompact { as_of, .. } => Some(*as_of),
        _ => None,
    }
}

/// Writes again the files of the job that `op` commits, from `store`, which must be at the
/// op's `as_of` (a replay of the log, which does not carry the files): the same state gives
/// the same segments. Errs when what it writes is not what the op lists.
pub fn rewrite(store: &HotStore, cold: &ColdStore, op: &Op) -> Result<(), String> {
    let again = match op {
        Op::CommitFlush { table, job, .. } => write_flush(store, cold, *table, job)?,
        // An earlier build's commit: the same files, committed with their trim.
        Op::CommitFlushInline { table, job, .. } => match write_flush(store, cold, *table, job)? {
            Op::CommitFlush {
                table,
                job,
                as_of,
                through_seq,
                segments,
            } => Op::CommitFlushInline {
                table,
                job,
                as_of,
                through_seq,
                segments,
            },
            other => other,
        },
        Op::CommitCompact {
            table,
            job,
            horizon,
            ..
        } => write_compaction(store, cold, *table, job, *horizon)?,
        _ => return Ok(()),
    };
    if again != *op {
        return Err(format!(
            "job {} wrote other files from the same state: {again:?}",
            match op {
                Op::CommitFlush { job, .. }
                | Op::CommitFlushInline { job, .. }
                | Op::CommitCompact { job, .. } => job.as_str(),
                _ => "",
            }
        ));
    }
    Ok(())
}

/// The scopes a commit op names.
pub fn scopes_of(op: &Op) -> Vec<String> {
    match op {
        Op::CommitFlush { segments, .. } | Op::CommitFlushInline { segments, .. } => {
            segments.iter().map(|s| s.scope.clone()).collect()
        }
        Op::CommitCompact { scopes, .. } => scopes.iter().map(|s| s.scope.clone()).collect(),
        _ => Vec::new(),
    }
}

/// In a cluster, after the outcome of job `job`'s commit `op` is known (`applied`, or
/// rejected; `op` is `None` when the job failed before its commit): publishes the manifests
/// of the scopes it names when it applied, else removes the files it wrote, and only those.
/// Other members' jobs may be writing files beside them meanwhile, which [`settle`] and
/// [`sweep`] would take for leftovers.
pub fn settle_in_cluster(
    store: &HotStore,
    cold: &ColdStore,
    table: TableId,
    job: &str,
    op: Option<&Op>,
    applied: bool,
) -> Result<(), String> {
    let Ok((def, storage)) = table_and_storage(store, table) else {
        return Ok(());
    };
    let done = match op {
        Some(op) if applied => cold.publish(store, &storage, &def, &scopes_of(op)),
        _ => cold.remove_job_files(&storage, &def, job),
    };
    done.map_err(|e| e.to_string())
}

/// In a cluster, once no member can still be reading them: removes the segments that the
/// applied compaction commit `op` replaced (see [`ColdStore::remove_replaced`]).
pub fn remove_replaced(
    store: &HotStore,
    cold: &ColdStore,
    table: TableId,
    op: &Op,
) -> Result<(), String> {
    let Op::CommitCompact { scopes, .. } = op else {
        return Ok(());
    };
    let Ok((def, storage)) = table_and_storage(store, table) else {
        return Ok(());
    };
    for s in scopes {
        cold.remove_replaced(store, &storage, &def, &s.scope, &s.replaced)
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// After the outcome of a job's commit `op` is known: publishes the manifests of the scopes
/// it names and removes their unlisted files (see [`ColdStore::settle`]). A table dropped
/// meanwhile has nothing to settle.
pub fn settle(store: &HotStore, cold: &ColdStore, table: TableId, op: &Op) -> Result<(), String> {
    let Ok((def, storage)) = table_and_storage(store, table) else {
        return Ok(());
    };
    cold.settle(store, &storage, &def, &scopes_of(op))
        .map_err(|e| e.to_string())
}

/// Removes the segment files of table `table` that no manifest lists (a job that failed
/// half-way through its writing); best effort.
pub fn sweep_one(store: &HotStore, cold: &ColdStore, table: TableId) {
    if let Ok((def, storage)) = table_and_storage(store, table)
        && let Err(e) = cold.sweep_table(store, &storage, &def)
    {
        tracing::warn!(error = %e, "could not sweep a failed job's files");
    }
}

/// Removes, from every table's cold directories, the segment files no manifest lists: what
/// jobs that crashed before their commit left. Run only while no job is running and once
/// the node has applied every entry it had (a commit still in the log would otherwise lose
/// its files). Returns the problems met, one per table.
pub fn sweep(store: &HotStore, cold: &ColdStore) -> Vec<String> {
    let tables = match catalog::tables(store, None) {
        Ok(t) => t,
        Err(e) => return vec![e.to_string()],
    };
    let mut problems = Vec::new();
    for def in tables.into_iter().filter(|t| t.kind != TableKind::Stream) {
        let result = table_and_storage(store, def.id).and_then(|(def, storage)| {
            cold.sweep_table(store, &storage, &def)
                .map_err(|e| e.to_string())
        });
        if let Err(e) = result {
            problems.push(format!("{}: {e}", def.qualified_name()));
        }
    }
    problems
}

/// Meta key: set once the manifests of manifest format 1 (which lived only in the storages)
/// were imported into the node's state.
const MANIFESTS_IMPORTED_KEY: &[u8] = b"cold_manifests_v2";

/// Imports, once, the format-1 manifests an earlier build left in the storages into the
/// node's state (the catalog family), so that their segments stay part of the cold tier.
/// Outside the log: an upgrade step, like the hot tier's layout upgrades. A storage that
/// cannot be reached fails the start, naming it, rather than forgetting its segments.
pub fn import_v1_manifests(store: &HotStore, cold: &ColdStore) -> Result<usize, String> {
    if store
        .get(Family::Meta, MANIFESTS_IMPORTED_KEY)
        .map_err(|e| e.to_string())?
        .is_some()
    {
        return Ok(0);
    }
    let mut batch = crate::hot::HotBatch::default();
    let mut imported = 0;
    for def in catalog::tables(store, None).map_err(|e| e.to_string())? {
        if def.kind == TableKind::Stream {
            continue;
        }
        let (def, storage) = table_and_storage(store, def.id)?;
        let mut through = None;
        for m in cold
            .load_v1_manifests(&storage, &def)
            .map_err(|e| format!("importing the cold tier of {}: {e}", def.qualified_name()))?
        {
            through = through.max(m.max_seq());
            batch.put(
                Family::Catalog,
                catalog::manifest_key(def.id, &m.scope),
                codec::encode(&m),
            );
            imported += 1;
        }
        if let Some(seq) = through {
            batch.put(
                Family::Catalog,
                catalog::flushed_key(def.id),
                codec::encode(&seq),
            );
        }
    }
    batch.put(Family::Meta, MANIFESTS_IMPORTED_KEY, vec![1]);
    store.upgrade(batch).map_err(|e| e.to_string())?;
    Ok(imported)
}

/// Builds, once, the cold tier's key index of a store that an earlier build left without one
/// (`meta` mark [`crate::hot::KEY_INDEX_PENDING_KEY`]), from the segments its manifests
/// list: before the node applies anything, since apply checks primary keys against the
/// index alone. Outside the log, like [`import_v1_manifests`] (run it after that). A storage
/// that cannot be read fails the start, naming the table. Returns the keys indexed.
pub fn build_key_index(store: &HotStore, cold: &ColdStore) -> Result<usize, String> {
    if store
        .get(Family::Meta, crate::hot::KEY_INDEX_PENDING_KEY)
        .map_err(|e| e.to_string())?
        .is_none()
    {
        return Ok(0);
    }
    let mut batch = crate::hot::HotBatch::default();
    let mut indexed = 0;
    for def in catalog::tables(store, None).map_err(|e| e.to_string())? {
        if def.kind == TableKind::Stream {
            continue;
        }
        let (def, storage) = table_and_storage(store, def.id)?;
        let entries = cold.key_index(store, &storage, &def).map_err(|e| {
            format!(
                "building the key index of {}'s cold tier: {e}",
                def.qualified_name()
            )
        })?;
        for (key, seq) in entries {
            batch.put(Family::ColdKeys, key, crate::row::encode_indexed_seq(seq));
            indexed += 1;
        }
    }
    batch.delete(Family::Meta, crate::hot::KEY_INDEX_PENDING_KEY.to_vec());
    store.upgrade(batch).map_err(|e| e.to_string())?;
    Ok(indexed)
}

/// Whether `storage` is a directory of each node (`filesystem`): in a cluster, every member
/// keeps its own copy of the files its manifests list.
pub fn node_local(storage: &StorageDef) -> bool {
    storage.kind == crate::catalog::StorageKind::Filesystem
}

/// The files commit `op` adds to table `def`'s manifests in `storage`: the new segments of a
/// flush or a compaction (paths relative to the storage's base).
pub fn files_of(storage: &StorageDef, def: &TableDef, op: &Op) -> Vec<LocalFile> {
    match op {
        Op::CommitFlush { segments, .. } | Op::CommitFlushInline { segments, .. } => {
            let segments = segments.iter().map(|s| (s.scope.as_str(), &s.segment));
            segment_files(storage, def, segments)
        }
        Op::CommitCompact { scopes, .. } => {
            let segments = scopes
                .iter()
                .filter_map(|s| Some((s.scope.as_str(), s.segment.as_ref()?)));
            segment_files(storage, def, segments)
        }
        _ => Vec::new(),
    }
}

/// The files of `segments` (each with its scope) of table `def` in `storage`.
pub fn segment_files<'a>(
    storage: &StorageDef,
    def: &TableDef,
    segments: impl IntoIterator<Item = (&'a str, &'a SegmentMeta)>,
) -> Vec<LocalFile> {
    segments
        .into_iter()
        .map(|(scope, segment)| LocalFile {
            path: join(&scope_dir(storage, def, scope), &segment.file),
            bytes: segment.bytes,
        })
        .collect()
}

/// The storage and files of commit `op` (of a job on table `table`) that every member of a
/// cluster must hold, when the table's storage is a directory of each node; `None` otherwise.
pub fn node_local_files(
    state: &dyn StateRead,
    table: TableId,
    op: &Op,
) -> Result<Option<(StorageDef, Vec<LocalFile>)>, String> {
    let (def, storage) = table_and_storage(state, table)?;
    Ok(node_local(&storage).then(|| {
        let files = files_of(&storage, &def, op);
        (storage, files)
    }))
}

/// The tables of `state` with a cold tier on a storage that is a directory of each node
/// (`local`), or on one every member shares (object storage).
fn tables_on(state: &dyn StateRead, local: bool) -> Result<Vec<(TableDef, StorageDef)>, String> {
    let mut out = Vec::new();
    for def in catalog::tables(state, None).map_err(|e| e.to_string())? {
        if def.kind == TableKind::Stream {
            continue;
        }
        let (def, storage) = table_and_storage(state, def.id)?;
        if node_local(&storage) == local {
            out.push((def, storage));
        }
    }
    Ok(out)
}

/// Every file the manifests of `state` list in storages that are directories of each node,
/// by storage: what a member brought up from a snapshot must fetch.
pub fn listed_node_local_files(
    state: &dyn StateRead,
) -> Result<Vec<(StorageDef, Vec<LocalFile>)>, String> {
    let mut out: Vec<(StorageDef, Vec<LocalFile>)> = Vec::new();
    for (def, storage) in tables_on(state, true)? {
        let mut files = Vec::new();
        for m in catalog::manifests(state, def.id).map_err(|e| e.to_string())? {
            let dir = scope_dir(&storage, &def, &m.scope);
            files.extend(m.segments.iter().map(|s| LocalFile {
                path: join(&dir, &s.file),
                bytes: s.bytes,
            }));
        }
        match out.iter_mut().find(|(s, _)| s.id == storage.id) {
            Some((_, all)) => all.extend(files),
            None => out.push((storage, files)),
        }
    }
    Ok(out)
}

/// The segment files in the cold directories of every table on a storage that is a
/// directory of each node (`local`), or on one every member shares, that no manifest of
/// `state` lists, as (storage, path): what failed or replaced jobs left, files of a job
/// still in flight, and the files of dropped tables (whose directories no live table uses;
/// the fold records those of directories of each node).
pub fn unlisted_files(
    state: &dyn StateRead,
    cold: &ColdStore,
    local: bool,
) -> Result<Vec<(StorageDef, String)>, String> {
    let mut out = Vec::new();
    let live = tables_on(state, local)?;
    for (def, storage) in &live {
        for path in cold
            .unlisted(state, storage, def)
            .map_err(|e| e.to_string())?
        {
            out.push((storage.clone(), path));
        }
    }
    // The directories of dropped tables that no live table uses: every segment file in them.
    for (id, dir) in catalog::dropped_dirs(state).map_err(|e| e.to_string())? {
        let Some(storage) = catalog::storage(state, &id)
            .map_err(|e| e.to_string())?
            .filter(|s| node_local(s) == local)
        else {
            continue;
        };
        let reused = live
            .iter()
            .any(|(d, s)| s.id == id && super::store::table_dir(s, d) == dir);
        if !reused {
            for path in cold
                .segment_files_under(&storage, &dir)
                .map_err(|e| e.to_string())?
            {
                out.push((storage.clone(), path));
            }
        }
    }
    Ok(out)
}

/// The job whose segment file (or leftover temporary file) `path` is: `batch-<job>.parquet…`.
pub fn job_of_file(path: &str) -> Option<&str> {
    let name = path.rsplit('/').next()?;
    let rest = name.strip_prefix("batch-")?;
    let job = &rest[..rest.find(".parquet")?];
    (!job.is_empty()).then_some(job)
}

/// Of `found`, unlisted files of storages every member shares, those that no job of
/// `running` (queued or running on some member) wrote: files whose name names no job are
/// never taken for a job's.
pub fn not_in_flight(
    found: Vec<(StorageDef, String)>,
    running: &std::collections::HashSet<String>,
) -> Vec<(StorageDef, String)> {
    found
        .into_iter()
        .filter(|(_, path)| job_of_file(path).is_some_and(|job| !running.contains(job)))
        .collect()
}

#[cfg(test)]
mod file_name_tests {
    use super::{StorageDef, job_of_file, not_in_flight};

    #[test]
    fn files_of_a_job_in_flight_are_spared() {
        let s = StorageDef::local();
        let found = [
            "t/batch-FL-1.parquet",
            "t/u/batch-FL-2.parquet",
            "t/batch-CO-3.parquet.tmp",
            "t/notes.parquet",
        ]
        .map(|p| (s.clone(), p.to_owned()))
        .to_vec();
        let running = ["FL-2".to_owned(), "CO-3".to_owned()].into_iter().collect();
        let left: Vec<String> = not_in_flight(found, &running)
            .into_iter()
            .map(|(_, p)| p)
            .collect();
        assert_eq!(left, ["t/batch-FL-1.parquet"]);
    }

    #[test]
    fn a_segment_files_job_is_read_from_its_name() {
        assert_eq!(job_of_file("app/t/batch-FL-01ab.parquet"), Some("FL-01ab"));
        assert_eq!(job_of_file("app/t/u/batch-CO-9.parquet.tmp"), Some("CO-9"));
        assert_eq!(job_of_file("batch-FL-1.parquet"), Some("FL-1"));
        for other in [
            "app/t/manifest.json",
            "app/t/batch-.parquet",
            "app/t/FL-1.parquet",
            "app/t/batch-FL-1",
        ] {
            assert_eq!(job_of_file(other), None, "{other}");
        }
    }
}
