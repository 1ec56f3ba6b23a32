//! The cold tier's files (DESIGN.md "Storage layout", `materializer/FORMAT.md` "Cold tier"):
//! per table — per user for USER tables — a directory of Parquet segments (`batch-N.parquet`,
//! zstd) holding row versions in the table's schema (`_seq` and `_deleted` included, so
//! tombstones can hide older cold versions), and a `manifest.json` that lists them with row
//! counts, `_seq` ranges and per-column statistics. A file becomes part of the tier only
//! when a manifest naming it is durable: segments and manifests are written to a temporary
//! name, synced, renamed and the directory synced.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use arrow::array::{Array, RecordBatch};
use datafusion::common::ScalarValue;
use folddb_materializer::{RowVersion, TableDef, TableKind};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};

use crate::provider::{rows_batch, table_schema};

/// The manifest format this build writes and reads.
pub const MANIFEST_FORMAT: u32 = 1;
pub const MANIFEST_FILE: &str = "manifest.json";

/// A cold-tier failure, naming the file it concerns.
#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", path.display())]
pub struct ColdError {
    pub path: PathBuf,
    pub message: String,
}

fn fail(path: &Path) -> impl Fn(String) -> ColdError + '_ {
    move |message| ColdError {
        path: path.to_path_buf(),
        message,
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
    /// The table's schema version when the newest segment was written.
    pub schema_version: u32,
    /// The number of the next segment file.
    pub next_segment: u64,
    pub segments: Vec<SegmentMeta>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentMeta {
    /// File name inside the scope's directory.
    pub file: String,
    pub rows: u64,
    pub bytes: u64,
    pub min_seq: i64,
    pub max_seq: i64,
    pub columns: Vec<ColumnStats>,
}

/// Per-column statistics of a segment, for pruning: values as SQL text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnStats {
    pub name: String,
    pub nulls: u64,
    pub min: Option<String>,
    pub max: Option<String>,
}

/// The directory of a table scope under the storage root: `{namespace}/{table}` for SHARED
/// tables, `{namespace}/{table}/{user_id}` for USER tables (the default templates).
/// Bytes outside `[A-Za-z0-9_.-]` of a user id are written `%XX`, so no id leaves its
/// directory.
pub fn scope_dir(root: &Path, def: &TableDef, scope: &str) -> PathBuf {
    let dir = root.join(&def.namespace).join(&def.name);
    if def.kind == TableKind::Shared {
        return dir;
    }
    let mut safe = String::new();
    for b in scope.bytes() {
        if b.is_ascii_alphanumeric() || b"_.-".contains(&b) && !(safe.is_empty() && b == b'.') {
            safe.push(b as char);
        } else {
            safe.push_str(&format!("%{b:02X}"));
        }
    }
    dir.join(safe)
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
            schema_version: def.schema_version,
            next_segment: 0,
            segments: Vec::new(),
        }
    }

    /// The manifest in `dir`; `None` when there is none yet.
    pub fn load(dir: &Path) -> Result<Option<Manifest>, ColdError> {
        let path = dir.join(MANIFEST_FILE);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(fail(&path)(e.to_string())),
        };
        let m: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| fail(&path)(format!("damaged manifest: {e}")))?;
        if m.format != MANIFEST_FORMAT {
            return Err(fail(&path)(format!(
                "manifest format {} is not {MANIFEST_FORMAT}",
                m.format
            )));
        }
        Ok(Some(m))
    }

    /// Writes the manifest into `dir` atomically: a reader sees the old one or this one.
    pub fn store(&self, dir: &Path) -> Result<(), ColdError> {
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| fail(dir)(e.to_string()))?;
        write_atomically(dir, MANIFEST_FILE, |f| {
            f.write_all(&bytes).map_err(|e| e.to_string())
        })
    }

    /// The newest `_seq` the tier holds for this scope.
    pub fn max_seq(&self) -> Option<i64> {
        self.segments.iter().map(|s| s.max_seq).max()
    }
}

/// Creates `dir/name` through a temporary file: write, fsync, rename, fsync the directory.
fn write_atomically(
    dir: &Path,
    name: &str,
    write: impl FnOnce(&mut File) -> Result<(), String>,
) -> Result<(), ColdError> {
    fs::create_dir_all(dir).map_err(|e| fail(dir)(e.to_string()))?;
    let tmp = dir.join(format!("{name}.tmp"));
    let path = dir.join(name);
    let mut file = File::create(&tmp).map_err(|e| fail(&tmp)(e.to_string()))?;
    write(&mut file).map_err(fail(&tmp))?;
    file.sync_all().map_err(|e| fail(&tmp)(e.to_string()))?;
    drop(file);
    fs::rename(&tmp, &path).map_err(|e| fail(&path)(e.to_string()))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| fail(dir)(e.to_string()))
}

/// Writes `versions` (of `def`'s `scope`, any order) as the manifest's next segment in
/// `dir`, then the manifest listing it. Returns the new segment; nothing is written for no
/// versions.
pub fn write_segment(
    dir: &Path,
    def: &TableDef,
    manifest: &mut Manifest,
    versions: &[RowVersion],
) -> Result<Option<SegmentMeta>, ColdError> {
    if versions.is_empty() {
        return Ok(None);
    }
    let mut sorted: Vec<RowVersion> = versions.to_vec();
    sorted.sort_by_key(|v| v.seq);
    let schema = table_schema(def);
    let batch = rows_batch(def, &schema, &sorted).map_err(|e| fail(dir)(e.to_string()))?;
    let file = format!("batch-{}.parquet", manifest.next_segment);
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();
    write_atomically(dir, &file, |f| {
        let mut w = ArrowWriter::try_new(&mut *f, schema.clone(), Some(props))
            .map_err(|e| e.to_string())?;
        w.write(&batch).map_err(|e| e.to_string())?;
        w.close().map(|_| ()).map_err(|e| e.to_string())
    })?;
    let bytes = fs::metadata(dir.join(&file))
        .map(|m| m.len())
        .map_err(|e| fail(&dir.join(&file))(e.to_string()))?;
    let segment = SegmentMeta {
        file,
        rows: sorted.len() as u64,
        bytes,
        min_seq: sorted.first().map_or(0, |v| v.seq),
        max_seq: sorted.last().map_or(0, |v| v.seq),
        columns: stats(&batch).map_err(fail(dir))?,
    };
    manifest.segments.push(segment.clone());
    manifest.next_segment += 1;
    manifest.schema_version = def.schema_version;
    manifest.store(dir)?;
    Ok(Some(segment))
}

/// Null counts, minimum and maximum of every column.
fn stats(batch: &RecordBatch) -> Result<Vec<ColumnStats>, String> {
    let schema = batch.schema();
    let mut out = Vec::with_capacity(batch.num_columns());
    for (i, field) in schema.fields().iter().enumerate() {
        let col = batch.column(i);
        let mut min: Option<ScalarValue> = None;
        let mut max: Option<ScalarValue> = None;
        for r in 0..col.len() {
            if col.is_null(r) {
                continue;
            }
            let v = ScalarValue::try_from_array(col.as_ref(), r).map_err(|e| e.to_string())?;
            if min.as_ref().is_none_or(|m| v < *m) {
                min = Some(v.clone());
            }
            if max.as_ref().is_none_or(|m| v > *m) {
                max = Some(v);
            }
        }
        out.push(ColumnStats {
            name: field.name().clone(),
            nulls: col.null_count() as u64,
            min: min.map(|v| v.to_string()),
            max: max.map(|v| v.to_string()),
        });
    }
    Ok(out)
}

/// The row versions of one segment, as record batches in the table's schema at the time it
/// was written. A damaged file is an error naming it.
pub fn read_segment(dir: &Path, segment: &SegmentMeta) -> Result<Vec<RecordBatch>, ColdError> {
    let path = dir.join(&segment.file);
    let file = File::open(&path).map_err(|e| fail(&path)(e.to_string()))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.build())
        .map_err(|e| fail(&path)(format!("damaged segment: {e}")))?;
    let batches: Result<Vec<RecordBatch>, _> = reader.collect();
    let batches = batches.map_err(|e| fail(&path)(format!("damaged segment: {e}")))?;
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    if rows as u64 != segment.rows {
        return Err(fail(&path)(format!(
            "holds {rows} rows, the manifest says {}",
            segment.rows
        )));
    }
    Ok(batches)
}

#[cfg(test)]
mod tests {
    use super::*;
    use folddb_materializer::{TableKind, Value};

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

    #[test]
    fn segments_and_manifests_round_trip() {
        let tmp = tempfile::tempdir().expect("tmp");
        let def = TableDef::example("app", "t", TableKind::Shared);
        let dir = scope_dir(tmp.path(), &def, "");
        assert_eq!(dir, tmp.path().join("app").join("t"));
        assert_eq!(Manifest::load(&dir).expect("load"), None);
        let mut m = Manifest::new(&def, "");
        let rows = [
            version(12, 2, Some("b"), false),
            version(10, 1, Some("a"), false),
            version(11, 3, None, true),
        ];
        let seg = write_segment(&dir, &def, &mut m, &rows)
            .expect("written")
            .expect("a segment");
        assert_eq!((seg.file.as_str(), seg.rows), ("batch-0.parquet", 3));
        assert_eq!((seg.min_seq, seg.max_seq), (10, 12));
        let id = &seg.columns[0];
        assert_eq!(
            (id.min.as_deref(), id.max.as_deref()),
            (Some("1"), Some("3"))
        );
        assert_eq!(seg.columns[1].nulls, 1);
        assert_eq!(Manifest::load(&dir).expect("load"), Some(m.clone()));
        assert!(!dir.join("manifest.json.tmp").exists());
        // Read back: the same rows, ascending by _seq, tombstone included.
        let batches = read_segment(&dir, &seg).expect("read");
        let mut sorted = rows.to_vec();
        sorted.sort_by_key(|v| v.seq);
        let want = rows_batch(&def, &table_schema(&def), &sorted).expect("batch");
        assert_eq!(batches, vec![want]);
        // The next flush is the next segment.
        let seg1 = write_segment(&dir, &def, &mut m, &[version(13, 4, Some("d"), false)])
            .expect("written")
            .expect("a segment");
        assert_eq!(seg1.file, "batch-1.parquet");
        assert_eq!(m.max_seq(), Some(13));
        assert_eq!(
            write_segment(&dir, &def, &mut m, &[]).expect("nothing"),
            None
        );
    }

    #[test]
    fn damaged_files_are_errors_that_name_them() {
        let tmp = tempfile::tempdir().expect("tmp");
        let def = TableDef::example("app", "t", TableKind::User);
        let dir = scope_dir(tmp.path(), &def, "al/../ice");
        assert_eq!(dir, tmp.path().join("app/t/al%2F..%2Fice"));
        let mut m = Manifest::new(&def, "al/../ice");
        let seg = write_segment(&dir, &def, &mut m, &[version(1, 1, Some("a"), false)])
            .expect("written")
            .expect("a segment");
        let path = dir.join(&seg.file);
        let bytes = fs::read(&path).expect("read");
        fs::write(&path, &bytes[..bytes.len() / 2]).expect("truncate");
        let e = read_segment(&dir, &seg).expect_err("damaged");
        assert_eq!(e.path, path);
        assert!(e.to_string().contains("batch-0.parquet"), "{e}");
        fs::write(dir.join(MANIFEST_FILE), b"{not json").expect("damage");
        let e = Manifest::load(&dir).expect_err("damaged manifest");
        assert!(e.to_string().contains("manifest.json"), "{e}");
        m.format = 99;
        m.store(&dir).expect("stored");
        assert!(
            Manifest::load(&dir).is_err(),
            "an unknown format is refused"
        );
    }
}
