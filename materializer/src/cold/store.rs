//! The cold tier's files (DESIGN.md "Storage layout", `materializer/FORMAT.md` "Cold tier"):
//! per table — per user for USER tables — a directory of Parquet segments
//! (`batch-<job id>.parquet`, zstd) holding row versions in the table's schema (`_seq` and
//! `_deleted` included, so tombstones hide older cold versions) sorted by primary key. The
//! [`Manifest`] that lists them (row counts, `_seq` and key ranges, per-column statistics)
//! lives in the node's state, written only by apply; `manifest.json` in the directory is a
//! published copy. Files are written to a temporary name, synced, renamed and the directory
//! synced.
//!
//! Jobs write segments outside apply ([`ColdStore::write_flush`],
//! [`ColdStore::write_compaction`]) and settle the directory once their commit entry's
//! outcome is known ([`ColdStore::settle`]). [`ColdStore`] is also the fold's [`ColdTier`]
//! (the old image of a flushed row that an entry of an earlier build changes). Table scans
//! read a scope's segments in key order, merged with the hot tier, through [`scan::merge`]
//! (`crate::scan::scan_scope`), skipping the segments the query's pruning (by each
//! segment's statistics) rules out.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use arrow::array::{Array, AsArray, RecordBatch, RecordBatchOptions};
use arrow::datatypes::{DataType as ArrowType, Int64Type, SchemaRef};
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReader,
    ParquetRecordBatchReaderBuilder, RowSelection, RowSelector,
};
use parquet::arrow::{ArrowWriter, ProjectionMask};
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;
use serde::{Deserialize, Serialize};

use super::backend::{Backend, IoRuntime, Source, backend_for, join};
use super::{ColdResult, ColdTier};
use crate::catalog::{self, StateRead, StorageDef, TableDef, TableKind};
use crate::convert::{arrow_to_value, rows_batch, table_schema};
use crate::event::{CompactedScope, ScopeSegment};
use crate::row::{RowVersion, encode_key_part};
use crate::value::{DataType, Value};

/// The manifest format this build writes: manifests live in the node's state (the catalog
/// family), and `manifest.json` in a scope's directory is a published copy.
pub const MANIFEST_FORMAT: u32 = 2;
/// The format of manifests that lived only in the storage, imported once on upgrade.
pub const MANIFEST_FORMAT_V1: u32 = 1;
pub const MANIFEST_FILE: &str = "manifest.json";
/// Where segments are read in batches of this many rows.
const READ_BATCH_ROWS: usize = 64 * 1024;

/// A cold-tier failure, naming the file it concerns (a path, or a URL for object storage).
#[derive(Debug, thiserror::Error)]
#[error("{}{message}", if location.is_empty() { String::new() } else { format!("{location}: ") })]
pub struct ColdError {
    pub location: String,
    pub message: String,
}

fn fail(location: &str) -> impl Fn(String) -> ColdError + '_ {
    move |message| ColdError {
        location: location.to_owned(),
        message,
    }
}

/// A backend failure: its message already names the file.
fn backend_err(message: String) -> ColdError {
    ColdError {
        location: String::new(),
        message,
    }
}

/// A directory of one storage.
#[derive(Debug, Clone)]
pub struct Loc {
    backend: Arc<dyn Backend>,
    dir: String,
}

impl Loc {
    pub fn new(backend: Arc<dyn Backend>, dir: String) -> Loc {
        Loc { backend, dir }
    }

    /// `name` inside this directory, relative to the storage's base.
    fn file(&self, name: &str) -> String {
        join(&self.dir, name)
    }

    /// Where `name` inside this directory is: a path or a URL.
    pub fn locate(&self, name: &str) -> String {
        self.backend.locate(&self.file(name))
    }
}

/// One table scope's cold tier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub table_id: u64,
    pub namespace: String,
    pub table: String,
    /// The owner of a USER table's rows; empty for SHARED tables.
    pub scope: String,
    /// The log entry that last changed this manifest (a flush's or a compaction's commit).
    pub log_index: u64,
    /// Oldest first: a key's version in a later segment supersedes its versions in earlier
    /// ones.
    pub segments: Vec<SegmentMeta>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentMeta {
    /// File name inside the scope's directory: `batch-<job id>.parquet` (`batch-<log
    /// index>.parquet` for segments written before manifest format 2).
    pub file: String,
    /// The applied index of the state its rows were read from.
    pub index: u64,
    pub rows: u64,
    /// Rows that are tombstones (`_deleted = true`).
    pub tombstones: u64,
    pub bytes: u64,
    pub min_seq: i64,
    pub max_seq: i64,
    /// The smallest and largest primary key in key encoding (`materializer/FORMAT.md`,
    /// "rows"), hex: the range a key lookup prunes by.
    pub min_key: String,
    pub max_key: String,
    /// The table's schema version, and its columns in file order (then `_seq`,
    /// `_deleted`), when the segment was written.
    pub schema_version: u32,
    pub columns: Vec<SegmentColumn>,
    pub stats: Vec<ColumnStats>,
}

/// A column of a segment: which table column (by id) it holds, and as what type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentColumn {
    pub id: u32,
    pub name: String,
    pub data_type: DataType,
}

/// Per-column statistics of a segment: values as SQL text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnStats {
    pub name: String,
    pub nulls: u64,
    pub min: Option<String>,
    pub max: Option<String>,
}

/// The directory of all of a table's cold data in `storage`, relative to its base: the
/// shared template, or the user template up to its `{userId}` directory.
pub fn table_dir(storage: &StorageDef, def: &TableDef) -> String {
    if def.kind == TableKind::Shared {
        storage.table_path(&def.namespace, &def.name, None)
    } else {
        storage.user_tables_dir(&def.namespace, &def.name)
    }
}

/// The directory of a table scope in `storage`, from its templates: `{namespace}/{tableName}`
/// for SHARED tables, `{namespace}/{tableName}/{userId}` for USER tables (the `local`
/// storage's).
pub fn scope_dir(storage: &StorageDef, def: &TableDef, scope: &str) -> String {
    let user = (def.kind != TableKind::Shared).then_some(scope);
    storage.table_path(&def.namespace, &def.name, user)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// A primary key in key encoding.
pub fn key_of(pk: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    encode_key_part(pk, &mut out);
    out
}

impl Manifest {
    /// An empty manifest for `def`'s `scope`.
    pub fn new(def: &TableDef, scope: &str) -> Manifest {
        Manifest {
            format: MANIFEST_FORMAT,
            table_id: def.id.0,
            namespace: def.namespace.clone(),
            table: def.name.clone(),
            scope: scope.to_owned(),
            log_index: 0,
            segments: Vec::new(),
        }
    }

    /// The format-1 manifest in `dir` (written by builds before manifest format 2), as a
    /// format-2 one; `None` when there is none.
    pub fn load_v1(dir: &Loc) -> Result<Option<Manifest>, ColdError> {
        let path = dir.locate(MANIFEST_FILE);
        let Some(bytes) = dir
            .backend
            .read(&dir.file(MANIFEST_FILE))
            .map_err(backend_err)?
        else {
            return Ok(None);
        };
        let mut m: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| fail(&path)(format!("damaged manifest: {e}")))?;
        match m.format {
            MANIFEST_FORMAT_V1 => {
                m.format = MANIFEST_FORMAT;
                Ok(Some(m))
            }
            // A copy this build published: the node's state holds the manifest.
            MANIFEST_FORMAT => Ok(None),
            other => Err(fail(&path)(format!(
                "manifest format {other} is not {MANIFEST_FORMAT_V1}"
            ))),
        }
    }

    /// Publishes the manifest into `dir` as `manifest.json`, atomically: a copy for people
    /// and tools (the node reads its own state's).
    pub fn publish(&self, dir: &Loc) -> Result<(), ColdError> {
        let bytes = serde_json::to_vec_pretty(self)
            .map_err(|e| fail(&dir.locate(MANIFEST_FILE))(e.to_string()))?;
        dir.backend
            .write(&dir.file(MANIFEST_FILE), bytes)
            .map_err(backend_err)
    }

    /// This manifest with `segment` (newer than every segment it lists) appended.
    pub fn flushed(mut self, segment: SegmentMeta) -> Manifest {
        self.segments.push(segment);
        self
    }

    /// This manifest with its oldest segments, which must be the files `replaced` in order,
    /// given way to `segment`, and the segments merged; `None` when it does not start with
    /// them (another change overtook the compaction).
    pub fn compacted(
        mut self,
        replaced: &[String],
        segment: Option<SegmentMeta>,
    ) -> Option<(Manifest, Vec<SegmentMeta>)> {
        let prefix = self.segments.len() >= replaced.len()
            && self
                .segments
                .iter()
                .zip(replaced)
                .all(|(s, file)| s.file == *file);
        if !prefix {
            return None;
        }
        let merged: Vec<SegmentMeta> = self.segments.drain(..replaced.len()).collect();
        self.segments.splice(0..0, segment);
        Some((self, merged))
    }

    /// The newest `_seq` the tier holds for this scope.
    pub fn max_seq(&self) -> Option<i64> {
        self.segments.iter().map(|s| s.max_seq).max()
    }
}

/// The primary key of a row version.
fn pk_of<'a>(def: &TableDef, v: &'a RowVersion) -> Option<&'a Value> {
    def.primary_key.and_then(|id| v.cell(id))
}

/// Rows of a segment's row groups: a scan skips the groups whose statistics rule out its
/// filter (small in tests, so that their segments have several).
#[cfg(not(test))]
const ROW_GROUP_ROWS: usize = 64 * 1024;
#[cfg(test)]
const ROW_GROUP_ROWS: usize = 4;

/// A column's dictionary stops growing here (and its later pages are plain): a read that
/// starts at a row decodes the dictionary page first, so a column whose values are all
/// distinct would otherwise make every `LIMIT` unpack a megabyte of dictionary (Parquet's
/// default) per column before its first row. 128 KiB holds 16K distinct 8-byte values: a
/// measure with a few thousand values stays a dictionary, which a full scan decompresses
/// far faster than plain pages.
const DICTIONARY_PAGE_BYTES: usize = 128 << 10;

/// Rows of a data page, at most (Parquet checks it every 1,024 values, so a scalar
/// column's pages hold 1,024 rows or more). A read of a few rows skips the pages without
/// them (the offset index) and decodes its way through the rest: an EMBEDDING(128) page of
/// a megabyte would be 2,000 rows and 256K list levels to decode per row read; 128 rows
/// keep a point read of a vector index's candidate to about 16K.
const PAGE_ROWS: usize = 128;

/// The columns of `def`'s segments written as deltas (Parquet's `DELTA_BINARY_PACKED`, no
/// dictionary): `_seq` and an integer primary key. Their values are all distinct and, sorted
/// by key, mostly ascending, so a dictionary never pays and plain pages are eight bytes a
/// row to decompress on every scan, where deltas take a few bits.
fn delta_columns(def: &TableDef) -> impl Iterator<Item = String> + '_ {
    let key = def
        .primary_key
        .and_then(|id| def.columns.iter().find(|c| c.id == id))
        .filter(|c| {
            matches!(
                c.data_type,
                DataType::SmallInt
                    | DataType::Int
                    | DataType::BigInt
                    | DataType::Timestamp
                    | DataType::DateTime
                    | DataType::Date
            )
        })
        .map(|c| c.name.clone());
    key.into_iter().chain(["_seq".to_owned()])
}

/// Writes `versions` (of `def`'s `scope`, any order, one per key) as segment `file` in `dir`,
/// read from the state at applied index `index`. The manifest is not touched: the caller
/// lists the segment.
pub fn write_segment(
    dir: &Loc,
    def: &TableDef,
    file: &str,
    index: u64,
    versions: &[RowVersion],
) -> Result<SegmentMeta, ColdError> {
    let mut keyed: Vec<(Vec<u8>, &RowVersion)> = versions
        .iter()
        .map(|v| (pk_of(def, v).map(key_of).unwrap_or_default(), v))
        .collect();
    keyed.sort_by(|a, b| a.0.cmp(&b.0));
    let sorted: Vec<RowVersion> = keyed.iter().map(|(_, v)| (*v).clone()).collect();
    let schema = table_schema(def);
    let file = file.to_owned();
    let location = dir.locate(&file);
    let batch = rows_batch(def, &schema, &sorted).map_err(|e| fail(&location)(e.to_string()))?;
    let mut props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_dictionary_page_size_limit(DICTIONARY_PAGE_BYTES)
        .set_data_page_row_count_limit(PAGE_ROWS)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS));
    for column in delta_columns(def) {
        let path = ColumnPath::from(column);
        props = props
            .set_column_dictionary_enabled(path.clone(), false)
            .set_column_encoding(path, Encoding::DELTA_BINARY_PACKED);
    }
    let props = props.build();
    let mut out = Vec::new();
    let mut w = ArrowWriter::try_new(&mut out, schema.clone(), Some(props))
        .map_err(|e| fail(&location)(e.to_string()))?;
    w.write(&batch)
        .map_err(|e| fail(&location)(e.to_string()))?;
    w.close().map_err(|e| fail(&location)(e.to_string()))?;
    let bytes = out.len() as u64;
    dir.backend
        .write(&dir.file(&file), out)
        .map_err(backend_err)?;
    Ok(SegmentMeta {
        file,
        index,
        rows: sorted.len() as u64,
        tombstones: sorted.iter().filter(|v| v.deleted).count() as u64,
        bytes,
        min_seq: sorted.iter().map(|v| v.seq).min().unwrap_or(0),
        max_seq: sorted.iter().map(|v| v.seq).max().unwrap_or(0),
        min_key: keyed.first().map(|(k, _)| hex(k)).unwrap_or_default(),
        max_key: keyed.last().map(|(k, _)| hex(k)).unwrap_or_default(),
        schema_version: def.schema_version,
        columns: def
            .columns
            .iter()
            .map(|c| SegmentColumn {
                id: c.id,
                name: c.name.clone(),
                data_type: c.data_type,
            })
            .collect(),
        stats: stats(&batch).map_err(fail(&location))?,
    })
}

#[path = "stats.rs"]
mod stats;
// What the flush and compaction jobs write, and the settling of a scope's files.
#[path = "store_jobs.rs"]
mod jobs;
// Reading a scope in key order, merged with the hot tier.
#[path = "store_scan.rs"]
pub mod scan;

#[path = "key_index.rs"]
mod key_index;
pub(crate) use key_index::KeyIndex;
pub use stats::stat_text;
use stats::stats;

/// A segment's reader, over columns `roots` (every column: `None`) and rows `rows` (sorted;
/// every row: `None`). A damaged file is an error naming it.
fn read_batches(
    dir: &Loc,
    seg: &Segment,
    roots: Option<&[usize]>,
    rows: Option<&[usize]>,
) -> Result<Vec<RecordBatch>, ColdError> {
    let path = dir.locate(&seg.meta.file);
    let reader = open_rows(dir, seg, roots, rows, READ_BATCH_ROWS)?;
    let batches: Result<Vec<RecordBatch>, _> = reader.collect();
    batches.map_err(|e| fail(&path)(format!("damaged segment: {e}")))
}

/// A reader of rows `range` of `seg` (every row: `None`), columns `roots` (every column:
/// `None`), in batches of `batch_rows`.
fn open_range(
    dir: &Loc,
    seg: &Segment,
    roots: Option<&[usize]>,
    range: Option<std::ops::Range<usize>>,
    batch_rows: usize,
) -> Result<ParquetRecordBatchReader, ColdError> {
    let selection = range.map(|r| {
        RowSelection::from(vec![
            RowSelector::skip(r.start),
            RowSelector::select(r.end - r.start),
        ])
    });
    open_selected(dir, seg, roots, selection, batch_rows)
}

fn open_rows(
    dir: &Loc,
    seg: &Segment,
    roots: Option<&[usize]>,
    rows: Option<&[usize]>,
    batch_rows: usize,
) -> Result<ParquetRecordBatchReader, ColdError> {
    let selection = rows.map(|rows| {
        let mut selectors = Vec::with_capacity(rows.len() * 2);
        let mut at = 0usize;
        for &r in rows {
            if r > at {
                selectors.push(RowSelector::skip(r - at));
            }
            selectors.push(RowSelector::select(1));
            at = r + 1;
        }
        RowSelection::from(selectors)
    });
    open_selected(dir, seg, roots, selection, batch_rows)
}

fn open_selected(
    dir: &Loc,
    seg: &Segment,
    roots: Option<&[usize]>,
    selection: Option<RowSelection>,
    batch_rows: usize,
) -> Result<ParquetRecordBatchReader, ColdError> {
    let meta = &seg.meta;
    let path = dir.locate(&meta.file);
    match dir
        .backend
        .open(&dir.file(&meta.file))
        .map_err(backend_err)?
    {
        None => Err(fail(&path)("the segment is missing".into())),
        Some(Source::File(f)) => segment_reader(f, &path, seg, roots, selection, batch_rows),
        Some(Source::Bytes(b)) => segment_reader(b, &path, seg, roots, selection, batch_rows),
    }
}

/// A reader of `source`, the file of `seg`. The file's footer is read once per segment and
/// kept (segments never change once written).
fn segment_reader<T: parquet::file::reader::ChunkReader + 'static>(
    source: T,
    path: &str,
    seg: &Segment,
    roots: Option<&[usize]>,
    selection: Option<RowSelection>,
    batch_rows: usize,
) -> Result<ParquetRecordBatchReader, ColdError> {
    let damaged = |e: parquet::errors::ParquetError| fail(path)(format!("damaged segment: {e}"));
    let metadata = footer_of(&source, path, seg)?;
    let mut builder = ParquetRecordBatchReaderBuilder::new_with_metadata(source, metadata)
        .with_batch_size(batch_rows);
    if let Some(roots) = roots {
        let mask = ProjectionMask::roots(builder.parquet_schema(), roots.iter().copied());
        builder = builder.with_projection(mask);
    }
    if let Some(selection) = selection {
        builder = builder.with_row_selection(selection);
    }
    builder.build().map_err(damaged)
}

/// The footer of `seg`, read from `source` (its file) the first time and kept (segments
/// never change once written).
fn footer_of<T: parquet::file::reader::ChunkReader + 'static>(
    source: &T,
    path: &str,
    seg: &Segment,
) -> Result<ArrowReaderMetadata, ColdError> {
    if let Some(m) = seg.footer.get() {
        return Ok(m.clone());
    }
    // With the page index (the offset index every segment carries), a read of a few rows
    // skips the pages without them instead of decoding its way past them: a point read
    // of an EMBEDDING column would otherwise decode every list level before the row.
    let options = ArrowReaderOptions::new()
        .with_page_index_policy(parquet::file::metadata::PageIndexPolicy::Optional);
    let loaded = ArrowReaderMetadata::load(source, options)
        .map_err(|e| fail(path)(format!("damaged segment: {e}")))?;
    let total = loaded.metadata().file_metadata().num_rows();
    if total < 0 || total as u64 != seg.meta.rows {
        return Err(fail(path)(format!(
            "holds {total} rows, the manifest says {}",
            seg.meta.rows
        )));
    }
    Ok(seg.footer.get_or_init(|| loaded).clone())
}

/// The row groups of `seg`, in file order: each one's rows and its statistics, spelled as a
/// manifest's ([`ColumnStats`]) for the types whose Parquet statistics read back exactly
/// (integers, text, booleans; floats are left out, as Parquet's leave out NaN). A column of
/// another type has none, and rules nothing out.
fn row_groups(dir: &Loc, seg: &Segment) -> Result<Vec<(usize, Vec<ColumnStats>)>, ColdError> {
    use parquet::file::statistics::Statistics as S;
    let path = dir.locate(&seg.meta.file);
    let footer = match seg.footer.get() {
        Some(m) => m.clone(),
        None => match dir
            .backend
            .open(&dir.file(&seg.meta.file))
            .map_err(backend_err)?
        {
            None => return Err(fail(&path)("the segment is missing".into())),
            Some(Source::File(f)) => footer_of(&f, &path, seg)?,
            Some(Source::Bytes(b)) => footer_of(&b, &path, seg)?,
        },
    };
    let groups = footer.metadata().row_groups();
    Ok(groups
        .iter()
        .map(|rg| {
            let stats = rg
                .columns()
                .iter()
                .filter_map(|c| {
                    let [name] = c.column_descr().path().parts() else {
                        return None;
                    };
                    let text = |s: &S| -> Option<(String, String)> {
                        match s {
                            S::Int32(v) => {
                                Some((v.min_opt()?.to_string(), v.max_opt()?.to_string()))
                            }
                            S::Int64(v) => {
                                Some((v.min_opt()?.to_string(), v.max_opt()?.to_string()))
                            }
                            S::Boolean(v) => {
                                Some((v.min_opt()?.to_string(), v.max_opt()?.to_string()))
                            }
                            S::ByteArray(v) => Some((
                                v.min_opt()?.as_utf8().ok()?.to_owned(),
                                v.max_opt()?.as_utf8().ok()?.to_owned(),
                            )),
                            _ => None,
                        }
                    };
                    let stats = c.statistics();
                    let (min, max) = stats.and_then(text).unzip();
                    Some(ColumnStats {
                        name: name.clone(),
                        nulls: stats.and_then(S::null_count_opt).unwrap_or(0),
                        min,
                        max,
                    })
                })
                .collect();
            (rg.num_rows().max(0) as usize, stats)
        })
        .collect())
}

/// The row versions of `batch` (every column of a segment described by `meta`).
fn versions_in(meta: &SegmentMeta, batch: &RecordBatch) -> Result<Vec<RowVersion>, String> {
    let n = meta.columns.len();
    if batch.num_columns() != n + 2 {
        return Err(format!(
            "has {} columns, the manifest says {}",
            batch.num_columns(),
            n + 2
        ));
    }
    let seqs = batch
        .column(n)
        .as_primitive_opt::<Int64Type>()
        .ok_or("_seq is not BIGINT")?;
    let deleted = batch
        .column(n + 1)
        .as_boolean_opt()
        .ok_or("_deleted is not BOOLEAN")?;
    let mut out = Vec::with_capacity(batch.num_rows());
    for r in 0..batch.num_rows() {
        let mut cells = Vec::with_capacity(n);
        for (i, c) in meta.columns.iter().enumerate() {
            cells.push((
                c.id,
                arrow_to_value(batch.column(i).as_ref(), r, c.data_type)?,
            ));
        }
        out.push(RowVersion {
            seq: seqs.value(r),
            deleted: deleted.value(r),
            cells,
        });
    }
    Ok(out)
}

/// Every version a segment holds, in file (key) order.
fn read_versions(
    dir: &Loc,
    seg: &Segment,
    rows: Option<&[usize]>,
) -> Result<Vec<RowVersion>, ColdError> {
    let meta = &seg.meta;
    let mut out = Vec::new();
    for batch in read_batches(dir, seg, None, rows)? {
        out.extend(versions_in(meta, &batch).map_err(fail(&dir.locate(&meta.file)))?);
    }
    Ok(out)
}

/// One segment with its key index, built on first use.
#[derive(Debug)]
struct Segment {
    meta: SegmentMeta,
    keys: OnceLock<Arc<KeyIndex>>,
    /// The file's footer, once read.
    footer: OnceLock<ArrowReaderMetadata>,
}

impl Segment {
    fn new(meta: SegmentMeta) -> Arc<Segment> {
        Arc::new(Segment {
            meta,
            keys: OnceLock::new(),
            footer: OnceLock::new(),
        })
    }

    fn keys(&self, dir: &Loc, pk: Option<u32>) -> Result<Arc<KeyIndex>, ColdError> {
        if let Some(k) = self.keys.get() {
            return Ok(k.clone());
        }
        let built = Arc::new(KeyIndex::build(dir, self, pk)?);
        Ok(self.keys.get_or_init(|| built).clone())
    }

    /// Whether `key` is inside the segment's key range.
    fn may_hold(&self, key: &[u8]) -> bool {
        match (unhex(&self.meta.min_key), unhex(&self.meta.max_key)) {
            (Some(min), Some(max)) => min.as_slice() <= key && key <= max.as_slice(),
            _ => true,
        }
    }

    /// Whether the segment's columns are `def`'s current ones (same ids and types, in
    /// order): its batches are then the table's, as they are.
    fn matches(&self, def: &TableDef) -> bool {
        self.meta.columns.len() == def.columns.len()
            && self
                .meta
                .columns
                .iter()
                .zip(&def.columns)
                .all(|(s, c)| s.id == c.id && s.data_type == c.data_type)
    }
}

/// A table scope's cold tier as of one manifest.
#[derive(Debug)]
pub struct ScopeState {
    dir: Loc,
    manifest: Manifest,
    segments: Vec<Arc<Segment>>,
}

impl ScopeState {
    /// The keys of each segment.
    pub(crate) fn segment_keys(&self, pk: Option<u32>) -> Result<Vec<Arc<KeyIndex>>, ColdError> {
        self.segments
            .iter()
            .map(|seg| seg.keys(&self.dir, pk))
            .collect()
    }

    fn new(dir: Loc, manifest: Manifest, reuse: &[Arc<Segment>]) -> Arc<ScopeState> {
        let segments = manifest
            .segments
            .iter()
            .map(|m| {
                reuse
                    .iter()
                    .find(|s| s.meta == *m)
                    .cloned()
                    .unwrap_or_else(|| Segment::new(m.clone()))
            })
            .collect();
        Arc::new(ScopeState {
            dir,
            manifest,
            segments,
        })
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Where file `name` of this scope is: a path or a URL.
    pub fn locate(&self, name: &str) -> String {
        self.dir.locate(name)
    }

    /// The newest cold version of each of `keys` (in their order): one read per segment
    /// that holds any of them, of just their rows.
    fn lookup_many(
        &self,
        pk: Option<u32>,
        keys: &[Vec<u8>],
    ) -> Result<Vec<Option<RowVersion>>, ColdError> {
        let mut found: Vec<Option<RowVersion>> = vec![None; keys.len()];
        for seg in self.segments.iter().rev() {
            let mut wanted: Vec<(usize, usize)> = Vec::new();
            let mut index = None;
            for (i, key) in keys.iter().enumerate() {
                if found[i].is_some() || !seg.may_hold(key) {
                    continue;
                }
                let index = match &index {
                    Some(index) => index,
                    None => index.insert(seg.keys(&self.dir, pk)?),
                };
                if let Some(row) = index.find(key) {
                    wanted.push((row, i));
                }
            }
            if wanted.is_empty() {
                continue;
            }
            wanted.sort_unstable();
            let mut rows: Vec<usize> = wanted.iter().map(|w| w.0).collect();
            rows.dedup();
            let versions = read_versions(&self.dir, seg, Some(&rows))?;
            if versions.len() != rows.len() {
                return Err(fail(&self.dir.locate(&seg.meta.file))(format!(
                    "{} rows asked, {} read",
                    rows.len(),
                    versions.len()
                )));
            }
            // `wanted` is in row order, as `versions` is (a key asked twice: the same row).
            let mut read = rows.iter().zip(versions).peekable();
            for (row, i) in wanted {
                while read.peek().is_some_and(|(r, _)| **r < row) {
                    read.next();
                }
                if let Some((_, v)) = read.peek() {
                    found[i] = Some(v.clone());
                }
            }
        }
        Ok(found)
    }
}

/// The cold tier of every table, in every storage. `root` is the node's `data/storage`: the
/// built-in `local` storage.
#[derive(Debug)]
pub struct ColdStore {
    root: PathBuf,
    /// A rebuilt data directory (`folddb log replay`): every storage's files live under
    /// `root` (see [`backend_for`]).
    relocated: bool,
    /// Where object storage requests run (see [`IoRuntime`]).
    io: Option<IoRuntime>,
    backends: Mutex<HashMap<String, Built>>,
    scopes: Mutex<HashMap<(u64, String), Arc<ScopeState>>>,
}

/// A storage's backend, with the definition it was built from.
type Built = (StorageDef, Arc<dyn Backend>);

/// In `data/storage`, the mark of a rebuilt data directory: its storages' files are all
/// under it.
pub const RELOCATED_MARK: &str = "RELOCATED";

impl ColdStore {
    /// The cold tier of the node whose `data/storage` is `root`.
    pub fn new(root: impl Into<PathBuf>) -> ColdStore {
        let root = root.into();
        ColdStore {
            relocated: root.join(RELOCATED_MARK).exists(),
            root,
            io: None,
            backends: Mutex::new(HashMap::new()),
            scopes: Mutex::new(HashMap::new()),
        }
    }

    /// This cold tier, its object storage requests running on `io`.
    pub fn with_io(mut self, io: IoRuntime) -> ColdStore {
        self.io = Some(io);
        self
    }

    /// Marks `root` as a rebuilt data directory's: from now on (and after restarts) storages
    /// other than `local` are kept under it, never where the original's are.
    pub fn relocate(root: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(root)?;
        std::fs::write(
            root.join(RELOCATED_MARK),
            "Rebuilt by folddb log replay: every storage's files are under this directory.\n",
        )
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn relocated(&self) -> bool {
        self.relocated
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<(u64, String), Arc<ScopeState>>> {
        self.scopes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The backend of `storage`, built on first use and again when the storage changes.
    pub fn backend(&self, storage: &StorageDef) -> Result<Arc<dyn Backend>, ColdError> {
        let mut backends = self.backends.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((def, backend)) = backends.get(&storage.id)
            && def == storage
        {
            return Ok(backend.clone());
        }
        let backend = backend_for(storage, &self.root, self.relocated, self.io.as_ref()).map_err(
            |message| ColdError {
                location: format!("storage '{}'", storage.id),
                message,
            },
        )?;
        backends.insert(storage.id.clone(), (storage.clone(), backend.clone()));
        Ok(backend)
    }

    /// Serves `storage` from `backend` (until the storage changes): an object store the
    /// caller built, e.g. an in-memory one in tests.
    pub fn install_backend(&self, storage: &StorageDef, backend: Arc<dyn Backend>) {
        let mut backends = self.backends.lock().unwrap_or_else(|p| p.into_inner());
        backends.insert(storage.id.clone(), (storage.clone(), backend));
    }

    /// `def`'s scope as `manifest` lists it (cached while the manifest stays the same).
    pub fn scope_at(
        &self,
        storage: &StorageDef,
        def: &TableDef,
        manifest: Manifest,
    ) -> Result<Arc<ScopeState>, ColdError> {
        let backend = self.backend(storage)?;
        let id = (def.id.0, manifest.scope.clone());
        let cached = self.cache().get(&id).cloned();
        if let Some(s) = &cached
            && Arc::ptr_eq(&s.dir.backend, &backend)
            && s.manifest == manifest
        {
            return Ok(s.clone());
        }
        let dir = Loc::new(backend, scope_dir(storage, def, &manifest.scope));
        let reuse = cached.map(|s| s.segments.clone()).unwrap_or_default();
        let scope = ScopeState::new(dir, manifest, &reuse);
        self.cache().insert(id, scope.clone());
        Ok(scope)
    }

    /// `def`'s `scope` as `state` lists it (empty when nothing of it was flushed).
    pub fn scope(
        &self,
        state: &dyn StateRead,
        storage: &StorageDef,
        def: &TableDef,
        scope: &str,
    ) -> Result<Arc<ScopeState>, ColdError> {
        let manifest = catalog::manifest(state, def.id, scope)
            .map_err(state_err)?
            .unwrap_or_else(|| Manifest::new(def, scope));
        self.scope_at(storage, def, manifest)
    }

    /// Every scope of `def` that holds segments, as `state` lists them, by scope.
    pub fn scopes_of(
        &self,
        state: &dyn StateRead,
        storage: &StorageDef,
        def: &TableDef,
    ) -> Result<Vec<Arc<ScopeState>>, ColdError> {
        catalog::manifests(state, def.id)
            .map_err(state_err)?
            .into_iter()
            .filter(|m| !m.segments.is_empty())
            .map(|m| self.scope_at(storage, def, m))
            .collect()
    }

    /// The newest cold version of the row with primary key `pk`.
    pub fn lookup(
        &self,
        state: &dyn StateRead,
        storage: &StorageDef,
        def: &TableDef,
        scope: &str,
        pk: &Value,
    ) -> Result<Option<RowVersion>, ColdError> {
        let mut found = self.lookup_many(state, storage, def, scope, std::slice::from_ref(pk))?;
        Ok(found.pop().flatten())
    }

    /// The newest cold version of each row of `pks` (in their order), read together: one
    /// read per segment that holds any of them.
    pub fn lookup_many(
        &self,
        state: &dyn StateRead,
        storage: &StorageDef,
        def: &TableDef,
        scope: &str,
        pks: &[Value],
    ) -> Result<Vec<Option<RowVersion>>, ColdError> {
        let at = self.scope(state, storage, def, scope)?;
        let keys: Vec<Vec<u8>> = pks.iter().map(key_of).collect();
        match at.lookup_many(def.primary_key, &keys) {
            // As in `lookup`: the segments may have been compacted away meanwhile.
            Err(e) => {
                let now = self.scope(state, storage, def, scope)?;
                if Arc::ptr_eq(&now, &at) {
                    return Err(e);
                }
                now.lookup_many(def.primary_key, &keys)
            }
            done => done,
        }
    }

    /// The cold rows of `def`'s `scope` a query sees, as batches of the table's schema
    /// projected to `projection`: each key's newest cold version, unless the hot tier holds
    /// a version of it (`hot_keys`, in key encoding); tombstones only with `show_deleted`.
    #[allow(clippy::too_many_arguments)]
    pub fn visible(
        &self,
        state: &dyn StateRead,
        storage: &StorageDef,
        def: &TableDef,
        scope: &str,
        hot_keys: &[Vec<u8>],
        show_deleted: bool,
        projection: &[usize],
        may_match: &(dyn Fn(&SegmentMeta) -> bool + Sync),
    ) -> Result<Vec<RecordBatch>, ColdError> {
        let mut hidden: Vec<&Vec<u8>> = hot_keys.iter().collect();
        hidden.sort_unstable();
        hidden.dedup();
        let spec = scan::ScanSpec {
            def,
            projection,
            show_deleted,
            min_seq: None,
            seq_floor: None,
            limit: None,
            may_match,
            keys: &scan::KeyRange::default(),
        };
        let read = |at: &ScopeState| {
            let mut hot = scan::Items::new(hidden.iter().map(|k| {
                Ok(scan::HotItem {
                    key: k.as_slice().into(),
                    value: None,
                })
            }))
            .map_err(state_err)?;
            let mut out = Vec::new();
            scan::merge(Some(at), &mut hot, 0, None, &spec, &mut |b| {
                out.push(b);
                true
            })
            .map_err(|e| match e {
                scan::ScanError::Cold(e) => e,
                scan::ScanError::State(e) => state_err(e),
            })?;
            Ok(out)
        };
        let at = self.scope(state, storage, def, scope)?;
        match read(&at) {
            Err(e) => {
                // A compaction may have replaced the segments this read started on (and
                // removed their files): read again from the manifest that replaced them.
                let now = self.scope(state, storage, def, scope)?;
                if Arc::ptr_eq(&now, &at) {
                    return Err(e);
                }
                read(&now)
            }
            done => done,
        }
    }

    /// Checks every segment of every scope of `def`: its manifest parses, its files exist
    /// with the row counts listed, and (with `extended`) every row decodes. Returns the
    /// problems found, each naming its file.
    pub fn check(
        &self,
        state: &dyn StateRead,
        storage: &StorageDef,
        def: &TableDef,
        extended: bool,
    ) -> Vec<ColdError> {
        let mut problems = Vec::new();
        let states = match self.scopes_of(state, storage, def) {
            Ok(s) => s,
            Err(e) => return vec![e],
        };
        for state in states {
            for seg in &state.segments {
                // Read afresh: a file damaged since it was last read is found.
                let seg = Segment::new(seg.meta.clone());
                let result = if extended {
                    read_versions(&state.dir, &seg, None).map(|_| ())
                } else {
                    read_batches(&state.dir, &seg, Some(&[]), None).map(|_| ())
                };
                if let Err(e) = result {
                    problems.push(e);
                }
            }
        }
        problems
    }
}

/// Removes the segment files of `dir` that `manifest` does not list (left by a compaction,
/// or by a flush that crashed before its manifest). Best effort: a file that stays is only
/// disk space, never read.
fn remove_unlisted(dir: &Loc, manifest: &Manifest) {
    let files = match unlisted_in(dir, manifest) {
        Ok(files) => files,
        Err(e) => {
            tracing::warn!(error = %e, "could not list a scope to remove unlisted segments");
            return;
        }
    };
    for name in files {
        if let Err(e) = dir.backend.remove(&dir.file(&name)) {
            tracing::warn!(error = %e, "could not remove an unlisted segment");
        }
    }
}

/// The names of the segment files (and leftover temporary files) in `dir` that `manifest`
/// does not list.
pub(crate) fn unlisted_in(dir: &Loc, manifest: &Manifest) -> Result<Vec<String>, String> {
    Ok(dir
        .backend
        .list(&dir.dir)?
        .files
        .into_iter()
        .filter(|name| {
            let segment = name.starts_with("batch-") && name.ends_with(".parquet");
            (segment || name.ends_with(".tmp"))
                && !manifest.segments.iter().any(|s| &s.file == name)
        })
        .collect())
}

impl ColdTier for ColdStore {
    fn get(
        &self,
        state: &dyn StateRead,
        storage: &StorageDef,
        def: &TableDef,
        scope: &str,
        pk: &Value,
    ) -> ColdResult<Option<RowVersion>> {
        self.lookup(state, storage, def, scope, pk)
            .map_err(|e| e.to_string())
    }
}

/// The file a job writes in each scope it touches.
pub fn segment_file(job: &str) -> String {
    format!("batch-{job}.parquet")
}

/// A failure to read the node's own state.
fn state_err(e: crate::Error) -> ColdError {
    ColdError {
        location: "the node's state".into(),
        message: e.to_string(),
    }
}

#[cfg(test)]
#[path = "store_test.rs"]
mod tests;
