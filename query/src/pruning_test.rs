//! Pruning against real segments: the cold tier skips what the statistics rule out, and
//! never a segment that could hold a matching row (or that hides an older version of one).

use super::*;
use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::Int64Type;
use folddb_materializer::cold::ColdStore;
use folddb_materializer::cold::Manifest;
use folddb_materializer::convert::table_schema;
use folddb_materializer::{
    Family, RowVersion, StateRead, StorageDef, TableKind, Value, catalog, codec,
};

/// Node state that holds one manifest and nothing else.
struct OneManifest(Vec<u8>, Vec<u8>);

impl StateRead for OneManifest {
    fn get(&self, family: Family, key: &[u8]) -> folddb_materializer::Result<Option<Vec<u8>>> {
        Ok((family == Family::Catalog && key == self.0).then(|| self.1.clone()))
    }
    fn scan_prefix(
        &self,
        family: Family,
        prefix: &[u8],
    ) -> folddb_materializer::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        Ok(if family == Family::Catalog && self.0.starts_with(prefix) {
            vec![(self.0.clone(), self.1.clone())]
        } else {
            vec![]
        })
    }
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
fn statistics_skip_segments_without_hiding_less_than_they_should() {
    use datafusion::prelude::{col, lit};
    let tmp = tempfile::tempdir().expect("tmp");
    let def = TableDef::example("app", "t", TableKind::Shared);
    let cold = ColdStore::new(tmp.path());
    let local = StorageDef::local();
    let all: Vec<usize> = (0..table_schema(&def).fields().len()).collect();
    let first: Vec<RowVersion> = (1..=3).map(|i| version(i, i, Some("a"), false)).collect();
    let second = vec![
        version(10, 2, Some("zzz"), false),
        version(11, 10, Some("zzz"), false),
    ];
    let mut manifest = Manifest::new(&def, "");
    for (job, versions) in [("FL-5", first), ("FL-6", second)] {
        let written = cold
            .write_flush(&local, &def, job, 5, [(String::new(), versions)].into())
            .expect("flush");
        for w in written {
            manifest = manifest.flushed(w.segment);
        }
    }
    let state = OneManifest(catalog::manifest_key(def.id, ""), codec::encode(&manifest));
    let read = |filters: &[Expr]| {
        let mut got = ids(&cold
            .visible(&state, &local, &def, "", &[], false, &all, &|m| {
                may_match_all(&def, m, filters)
            })
            .expect("read"));
        got.sort();
        got
    };
    assert_eq!(read(&[]), [1, 2, 3, 10]);
    // Only the second segment can hold id > 5; the first is skipped.
    assert_eq!(read(&[col("id").gt(lit(5i64))]), [2, 10]);
    assert_eq!(read(&[lit(4i64).lt_eq(col("id"))]), [2, 10]);
    assert_eq!(read(&[col("id").gt_eq(lit(3i64))]), [1, 2, 3, 10]);
    // The newer segment is skipped (no 'a' in it), yet its key 2 still hides the
    // older version of 2, which would match.
    assert_eq!(read(&[col("v").eq(lit("a"))]), [1, 3]);
    assert_eq!(read(&[col("id").lt(lit(1i64))]), Vec::<i64>::new());
    // What statistics cannot decide keeps the segment.
    assert_eq!(read(&[col("v").like(lit("z%"))]), [1, 2, 3, 10]);
}

/// Segment statistics of dates and times are written by the materializer without
/// DataFusion (`cold::store::stat_text`); pruning parses them back as DataFusion scalars,
/// and manifest format 1 holds them as those scalars display. The two agree.
#[test]
fn statistics_text_is_spelled_as_datafusion_scalars_are() {
    use arrow::array::{ArrayRef, Date32Array, Time64MicrosecondArray, TimestampMicrosecondArray};
    use folddb_materializer::cold::store::stat_text;
    use std::sync::Arc;
    let arrays: Vec<ArrayRef> = vec![
        Arc::new(Date32Array::from(vec![0, 20_454, -1])),
        Arc::new(TimestampMicrosecondArray::from(vec![
            0,
            1_767_225_600_123_456,
            -1,
        ])),
        Arc::new(
            TimestampMicrosecondArray::from(vec![0, 1_767_225_600_000_001]).with_timezone("UTC"),
        ),
        Arc::new(Time64MicrosecondArray::from(vec![0, 86_399_999_999])),
    ];
    for array in arrays {
        for r in 0..array.len() {
            let text = stat_text(array.as_ref(), r).expect("a statistic");
            let scalar = ScalarValue::try_from_array(array.as_ref(), r).expect("a scalar");
            assert_eq!(text, scalar.to_string(), "{:?}", array.data_type());
        }
    }
}
