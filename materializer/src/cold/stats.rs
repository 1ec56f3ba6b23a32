//! A segment's per-column statistics, as manifest format 1 records them: null counts, and
//! the minimum and maximum of the types that order simply, as text.

use super::*;

/// Null counts, minimum and maximum of every column (minimum and maximum of the types that
/// order simply: numbers, text, booleans, dates and times).
pub(super) fn stats(batch: &RecordBatch) -> Result<Vec<ColumnStats>, String> {
    use arrow::compute::kernels::aggregate as agg;
    use arrow::datatypes as t;
    let schema = batch.schema();
    let mut out = Vec::with_capacity(batch.num_columns());
    for (i, field) in schema.fields().iter().enumerate() {
        let col = batch.column(i);
        macro_rules! prim {
            ($ty:ty) => {{
                let a = col.as_primitive::<$ty>();
                (agg::min(a), agg::max(a))
            }};
        }
        let (min, max): (Option<String>, Option<String>) = match col.data_type() {
            ArrowType::Int16 => {
                let (a, b) = prim!(t::Int16Type);
                (a.map(|v| v.to_string()), b.map(|v| v.to_string()))
            }
            ArrowType::Int32 => {
                let (a, b) = prim!(t::Int32Type);
                (a.map(|v| v.to_string()), b.map(|v| v.to_string()))
            }
            ArrowType::Int64 => {
                let (a, b) = prim!(t::Int64Type);
                (a.map(|v| v.to_string()), b.map(|v| v.to_string()))
            }
            ArrowType::Float32 => {
                let (a, b) = prim!(t::Float32Type);
                (a.map(|v| v.to_string()), b.map(|v| v.to_string()))
            }
            ArrowType::Float64 => {
                let (a, b) = prim!(t::Float64Type);
                (a.map(|v| v.to_string()), b.map(|v| v.to_string()))
            }
            ArrowType::Utf8 => {
                let a = col.as_string::<i32>();
                (
                    agg::min_string(a).map(str::to_owned),
                    agg::max_string(a).map(str::to_owned),
                )
            }
            ArrowType::Boolean => {
                let a = col.as_boolean();
                (
                    agg::min_boolean(a).map(|v| v.to_string()),
                    agg::max_boolean(a).map(|v| v.to_string()),
                )
            }
            ArrowType::Date32 | ArrowType::Timestamp(..) | ArrowType::Time64(_) => {
                // At the two extreme positions, spelled as manifest format 1 has them.
                let ints =
                    arrow::compute::cast(col, &ArrowType::Int64).map_err(|e| e.to_string())?;
                let ints = ints.as_primitive::<t::Int64Type>();
                let pos = |want: Option<i64>| {
                    want.and_then(|w| {
                        (0..ints.len()).find(|r| ints.is_valid(*r) && ints.value(*r) == w)
                    })
                };
                let at = |r: Option<usize>| r.and_then(|r| stat_text(col.as_ref(), r));
                (at(pos(agg::min(ints))), at(pos(agg::max(ints))))
            }
            _ => (None, None),
        };
        out.push(ColumnStats {
            name: field.name().clone(),
            nulls: col.null_count() as u64,
            min,
            max,
        });
    }
    Ok(out)
}

/// A date or time statistic as manifest format 1 spells it (as DataFusion's scalars display
/// them, which pruning parses back): a date as `YYYY-MM-DD`, a timestamp or a time of day as
/// its integer count of its unit.
pub fn stat_text(col: &dyn Array, r: usize) -> Option<String> {
    if col.is_null(r) {
        return None;
    }
    match col.data_type() {
        ArrowType::Date32 => arrow::util::display::array_value_to_string(col, r).ok(),
        ArrowType::Timestamp(..) | ArrowType::Time64(_) => {
            let ints = arrow::compute::cast(&col.slice(r, 1), &ArrowType::Int64).ok()?;
            Some(ints.as_primitive::<Int64Type>().value(0).to_string())
        }
        _ => None,
    }
}
