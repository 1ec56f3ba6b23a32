//! The fold of the cold tier's job commits (`materializer/FORMAT.md`, "Cold tier"): a flush
//! or compaction commit switches manifests, trims move the versions a flush wrote out of the
//! hot tier, a STREAM eviction removes expired rows; every job is recorded.

use super::*;

pub(super) fn record_job(ctx: &mut Ctx<'_>, job: JobRecord) -> OpResult {
    let rows = job.rows;
    ctx.batch.put(
        Family::Catalog,
        catalog::job_key(&job.id),
        codec::encode(&job),
    );
    done(rows)
}

pub(super) fn job(
    ctx: &Ctx<'_>,
    id: &str,
    kind: JobKind,
    def: &TableDef,
    rows: u64,
    message: String,
) -> JobRecord {
    JobRecord {
        id: id.to_owned(),
        kind,
        target: def.qualified_name(),
        completed: true,
        message,
        rows,
        at_ms: ctx.stamp_ms,
        index: ctx.index.0,
    }
}

/// Codec 1's `Flush` / `Compact`, which wrote files inside apply: folded since manifest
/// format 2 as a no-op that records the job (the rows stay where they are; answers are the
/// same).
pub(super) fn legacy_job(
    ctx: &mut Ctx<'_>,
    table: TableId,
    id: &str,
    kind: JobKind,
) -> Result<OpResult, OpError> {
    let def = table_by_id(ctx, table, 0)?;
    let message = format!(
        "A {} entry of log codec 1 for table '{}', folded as a no-op: this build writes the \
         cold tier outside apply",
        kind.name(),
        def.qualified_name()
    );
    let record = job(ctx, id, kind, &def, 0, message);
    Ok(record_job(ctx, record))
}

pub(super) fn cold_table(ctx: &Ctx<'_>, table: TableId, what: &str) -> Result<TableDef, OpError> {
    not_in_transaction(ctx, what)?;
    let def = table_by_id(ctx, table, 0)?;
    if def.kind == TableKind::Stream {
        return Err(invalid(format!(
            "Table {} is a STREAM table: it has no cold tier",
            def.qualified_name()
        )));
    }
    Ok(def)
}

pub(super) fn put_manifest(ctx: &mut Ctx<'_>, table: TableId, mut manifest: Manifest) {
    let key = catalog::manifest_key(table, &manifest.scope);
    if manifest.segments.is_empty() {
        ctx.batch.delete(Family::Catalog, key);
    } else {
        manifest.log_index = ctx.index.0;
        ctx.batch
            .put(Family::Catalog, key, codec::encode(&manifest));
    }
}

/// Before a commit that will be recorded: when `def`'s storage is a directory of each node,
/// has the cold tier make sure this node holds the files `files` names (a cluster member
/// fetches the ones it lacks; see [`crate::ColdTier::hold`]).
fn hold_files(
    ctx: &Ctx<'_>,
    def: &TableDef,
    files: impl FnOnce(&catalog::StorageDef) -> Vec<crate::cold::LocalFile>,
) -> Result<(), OpError> {
    let Some(cold) = ctx.cold.filter(|_| ctx.index.0 > 0) else {
        return Ok(());
    };
    let Some(storage) = catalog::storage(&ctx.state(), &def.options.storage_id)? else {
        return Ok(());
    };
    if !crate::cold::job::node_local(&storage) {
        return Ok(());
    }
    cold.hold(ctx.index.0, &storage, &files(&storage))
        .map_err(|reason| OpError::Env(crate::Error::ColdHold { reason }))
}

/// Where a flush commit's hot versions go.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Trim {
    /// Out of the hot tier in the commit itself ([`Op::CommitFlushInline`]).
    Inline,
    /// Out of the hot tier by the [`Op::TrimHot`] entries the job proposes next.
    Later,
}

pub(super) fn commit_flush(
    ctx: &mut Ctx<'_>,
    table: TableId,
    id: &str,
    through_seq: i64,
    segments: &[ScopeSegment],
    trim: Trim,
) -> Result<OpResult, OpError> {
    let def = cold_table(ctx, table, "STORAGE FLUSH")?;
    if segments.is_empty() {
        // The job's state held no hot version of the table: every one now is newer.
        let message = format!(
            "Storage flush skipped: no pending writes for table '{}'",
            def.qualified_name()
        );
        let record = job(ctx, id, JobKind::Flush, &def, 0, message);
        return Ok(record_job(ctx, record));
    }
    if let Some(mark) = catalog::flushed_through(&ctx.state(), table)?
        && mark >= through_seq
    {
        return Err(conflict(format!(
            "Storage flush {id} of {} was overtaken by a flush of a later state",
            def.qualified_name()
        )));
    }
    hold_files(ctx, &def, |storage| {
        let segments = segments.iter().map(|s| (s.scope.as_str(), &s.segment));
        crate::cold::job::segment_files(storage, &def, segments)
    })?;
    let (mut rows, mut bytes) = (0u64, 0u64);
    for ScopeSegment { scope, segment } in segments {
        let manifest = catalog::manifest(&ctx.state(), table, scope)?
            .unwrap_or_else(|| Manifest::new(&def, scope));
        rows += segment.rows;
        bytes += segment.bytes;
        put_manifest(ctx, table, manifest.flushed(segment.clone()));
    }
    if trim == Trim::Inline {
        trim_inline(ctx, def.id, through_seq)?;
    }
    ctx.batch.put(
        Family::Catalog,
        catalog::flushed_key(table),
        codec::encode(&through_seq),
    );
    let message = format!(
        "Flushed {rows} row(s) of {} for {} owner(s) ({bytes} bytes of Parquet)",
        def.qualified_name(),
        segments.len()
    );
    let record = job(ctx, id, JobKind::Flush, &def, rows, message);
    Ok(record_job(ctx, record))
}

/// Moves a hot version the segments hold (`_seq` at or below the flush mark) out of the hot
/// tier: it becomes its key's newest cold version, which the key index keeps when it is
/// live.
fn index_cold(ctx: &mut Ctx<'_>, key: &[u8], head: &crate::row::VersionHead) {
    if head.deleted {
        ctx.batch.delete(Family::ColdKeys, key.to_vec());
    } else {
        let seq = crate::row::encode_indexed_seq(head.seq);
        ctx.batch.put(Family::ColdKeys, key.to_vec(), seq);
    }
}

/// [`Op::CommitFlushInline`]'s trim: every hot version of the table up to `through_seq`, as
/// one range deletion of the table's rows with the later versions written back.
fn trim_inline(ctx: &mut Ctx<'_>, table: TableId, through_seq: i64) -> Result<(), OpError> {
    // The versions the segments hold are the table's hot versions up to `through_seq`: every
    // later version has a greater `_seq`, and an earlier one still hot was in the job's
    // snapshot. (One overwritten since is in a segment and superseded by its hot version.)
    let prefix = table_prefix(table);
    let hot = ctx.state().scan_prefix(Family::Rows, &prefix)?;
    let (mut dropped, mut kept) = (Vec::new(), Vec::new());
    for (key, bytes) in hot {
        let head = RowVersion::head_of(&bytes)?;
        if head.seq > through_seq {
            kept.push((key, bytes));
            continue;
        }
        index_cold(ctx, &key, &head);
        dropped.push(key);
    }
    if ctx.batch.delete_prefix(Family::Rows, &prefix) {
        for (key, bytes) in kept {
            ctx.batch.put(Family::Rows, key, bytes);
        }
    } else {
        for key in dropped {
            ctx.batch.delete(Family::Rows, key);
        }
    }
    Ok(())
}

/// [`Op::TrimHot`]: the hot versions of `table` in `[prefix + from, prefix + to)` that the
/// segments hold (a `_seq` at or below the flush mark) leave the hot tier. Later versions,
/// and every key of a table with no mark, stay. Returns the versions moved as `affected`.
pub(super) fn trim_hot(
    ctx: &mut Ctx<'_>,
    table: TableId,
    from: &[u8],
    to: Option<&[u8]>,
) -> Result<OpResult, OpError> {
    not_in_transaction(ctx, "a hot-tier trim")?;
    let Some(mark) = catalog::flushed_through(&ctx.state(), table)? else {
        return Ok(done(0));
    };
    let prefix = table_prefix(table);
    let mut moved = Vec::new();
    {
        let snapshot = ctx.store.snapshot();
        let mut cursor = snapshot.cursor_range(Family::Rows, &prefix, Some(from), to)?;
        while let Some(key) = cursor.key() {
            // The command's own earlier ops come first (a key they wrote is newer).
            let value = match ctx.batch.newest(Family::Rows, key) {
                Some(ours) => ours.map(Vec::as_slice),
                None => cursor.value(),
            };
            if let Some(value) = value {
                let head = RowVersion::head_of(value)?;
                if head.seq <= mark {
                    moved.push((key.to_vec(), head));
                }
            }
            cursor.advance()?;
        }
    }
    for (key, head) in &moved {
        index_cold(ctx, key, head);
        ctx.batch.delete(Family::Rows, key.clone());
    }
    Ok(done(moved.len() as u64))
}

pub(super) fn commit_compact(
    ctx: &mut Ctx<'_>,
    table: TableId,
    id: &str,
    scopes: &[CompactedScope],
) -> Result<OpResult, OpError> {
    let def = cold_table(ctx, table, "STORAGE COMPACT")?;
    let overtaken = || {
        conflict(format!(
            "Storage compaction {id} of {} was overtaken by another change of its segments",
            def.qualified_name()
        ))
    };
    let (mut segments_before, mut rows_before, mut segments_after, mut rows_after) =
        (0u64, 0u64, 0u64, 0u64);
    for CompactedScope {
        scope,
        replaced,
        segment,
    } in scopes
    {
        let (manifest, merged) = catalog::manifest(&ctx.state(), table, scope)?
            .and_then(|m| m.compacted(replaced, segment.clone()))
            .ok_or_else(overtaken)?;
        segments_before += merged.len() as u64;
        rows_before += merged.iter().map(|s| s.rows).sum::<u64>();
        segments_after += u64::from(segment.is_some());
        rows_after += segment.as_ref().map_or(0, |s| s.rows);
        put_manifest(ctx, table, manifest);
    }
    hold_files(ctx, &def, |storage| {
        let segments = scopes
            .iter()
            .filter_map(|s| Some((s.scope.as_str(), s.segment.as_ref()?)));
        crate::cold::job::segment_files(storage, &def, segments)
    })?;
    let message = format!(
        "Compaction completed for {}: {segments_before} segment(s) of {rows_before} row \
         version(s) into {segments_after} of {rows_after}",
        def.qualified_name(),
    );
    let record = job(ctx, id, JobKind::Compact, &def, rows_after, message);
    Ok(record_job(ctx, record))
}

pub(super) fn evict_stream(
    ctx: &mut Ctx<'_>,
    table: TableId,
    id: &str,
) -> Result<OpResult, OpError> {
    let def = table_by_id(ctx, table, 0)?;
    let Some(ttl) = def
        .options
        .ttl_seconds
        .filter(|_| def.kind == TableKind::Stream)
    else {
        return Err(invalid(format!(
            "Table {} is not a STREAM table with a TTL",
            def.qualified_name()
        )));
    };
    let cutoff = crate::seq::Seq::at_unix_ms(ctx.stamp_ms.saturating_sub(ttl * 1000)).0;
    let rows = ctx
        .state()
        .scan_prefix(Family::Streams, &table_prefix(def.id))?;
    let mut evicted = 0u64;
    for (key, bytes) in rows {
        let version = codec::decode::<RowVersion>(&bytes, "a row version")?;
        if version.seq < cutoff {
            ctx.batch.delete(Family::Streams, key);
            evicted += 1;
        }
    }
    let message = format!(
        "Evicted {evicted} expired row(s) of {}",
        def.qualified_name()
    );
    let record = job(ctx, id, JobKind::StreamEviction, &def, evicted, message);
    Ok(record_job(ctx, record))
}
