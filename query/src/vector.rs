//! Vector distance functions (API.md 3.6): `COSINE_DISTANCE(a, b)`, `L2_DISTANCE(a, b)` and
//! `DOT_PRODUCT(a, b)`, each → FLOAT. Either side is an `EMBEDDING(n)` column
//! (`FixedSizeList<Float32, n>`), any list of numbers, or text `'[x, y, …]'` (a literal or a
//! `$n` parameter). A column of embeddings against one query vector — the shape of
//! `ORDER BY COSINE_DISTANCE(col, '[…]') LIMIT k` — runs over the column's contiguous
//! values without copying them. NULL on either side gives NULL; so does the cosine distance
//! of a zero vector, which has no direction. Vectors of different dimensions, and text that
//! is not an array of finite numbers, are errors.

use std::borrow::Cow;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float32Array};
use arrow::datatypes::{DataType as ArrowType, Float32Type};
use datafusion::common::{DataFusionError, Result as DfResult, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

/// Which distance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    /// 1 − cos θ: 0 for the same direction, 2 for the opposite one.
    Cosine,
    /// Euclidean distance.
    L2,
    /// The dot product (a similarity: larger is closer).
    Dot,
}

impl Metric {
    pub fn function_name(self) -> &'static str {
        match self {
            Metric::Cosine => "cosine_distance",
            Metric::L2 => "l2_distance",
            Metric::Dot => "dot_product",
        }
    }

    /// The metric of `a` and `b`, of one dimension; `None` where it is undefined.
    pub fn eval(self, a: &[f32], b: &[f32]) -> Option<f32> {
        match self {
            Metric::Dot => Some(sums(a, b).0),
            Metric::L2 => Some(lanes(a, b, |x, y| (x - y) * (x - y)).max(0.0).sqrt()),
            Metric::Cosine => {
                let (ab, aa, bb) = sums(a, b);
                let norms = (aa * bb).sqrt();
                (norms > 0.0).then(|| 1.0 - ab / norms)
            }
        }
    }
}

/// Σ f(aᵢ, bᵢ), in 8 lanes that the compiler keeps in vector registers.
fn lanes(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += f(x[i], y[i]);
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(x, y)| f(*x, *y)).sum();
    acc.iter().sum::<f32>() + tail
}

/// a·b, a·a and b·b in one pass, in 8 lanes.
fn sums(a: &[f32], b: &[f32]) -> (f32, f32, f32) {
    let (mut ab, mut aa, mut bb) = ([0f32; 8], [0f32; 8], [0f32; 8]);
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            ab[i] += x[i] * y[i];
            aa[i] += x[i] * x[i];
            bb[i] += y[i] * y[i];
        }
    }
    let mut out: (f32, f32, f32) = (ab.iter().sum(), aa.iter().sum(), bb.iter().sum());
    for (x, y) in ra.iter().zip(rb) {
        out.0 += x * y;
        out.1 += x * x;
        out.2 += y * y;
    }
    out
}

/// A vector written as text: a JSON array of finite numbers.
pub fn parse_vector(text: &str) -> Result<Vec<f32>, String> {
    let v: Vec<f64> = serde_json::from_str(text.trim())
        .map_err(|_| format!("cannot read '{text}' as a vector: expected '[x, y, …]'"))?;
    if v.is_empty() {
        return Err("a vector needs at least one component".into());
    }
    v.into_iter()
        .map(|x| {
            let f = x as f32;
            if f.is_finite() {
                Ok(f)
            } else {
                Err(format!("vector component {x} is not a finite 32-bit float"))
            }
        })
        .collect()
}

/// One side of a call: vectors of one dimension, row after row in `values` (one row when
/// it is a constant).
struct Side<'a> {
    dim: usize,
    values: Cow<'a, [f32]>,
    /// Which rows are NULL (`None` for a constant NULL: every row).
    nulls: Option<Vec<bool>>,
    constant: bool,
}

impl Side<'_> {
    fn row(&self, r: usize) -> Option<&[f32]> {
        let r = if self.constant { 0 } else { r };
        match &self.nulls {
            None => None,
            Some(n) if n.get(r).copied().unwrap_or(true) => None,
            Some(_) => self.values.get(r * self.dim..(r + 1) * self.dim),
        }
    }
}

fn error(name: &str, message: impl std::fmt::Display) -> DataFusionError {
    DataFusionError::Execution(format!("{}: {message}", name.to_ascii_uppercase()))
}

/// The vectors of `array`'s rows: a list column of numbers, or text.
fn side_of<'a>(name: &str, array: &'a ArrayRef, constant: bool) -> DfResult<Side<'a>> {
    let rows = array.len();
    let nulls: Vec<bool> = (0..rows).map(|r| array.is_null(r)).collect();
    // The common case: an EMBEDDING column, read in place as one slice.
    if let ArrowType::FixedSizeList(field, n) = array.data_type()
        && field.data_type() == &ArrowType::Float32
    {
        let list = array.as_fixed_size_list();
        let dim = usize::try_from(*n).unwrap_or(0);
        let start = list.value_offset(0).max(0) as usize;
        let child = list.values().as_primitive::<Float32Type>();
        let all = child.values();
        let values = all
            .get(start..start + rows * dim)
            .ok_or_else(|| error(name, "a damaged embedding column"))?;
        return Ok(Side {
            dim,
            values: Cow::Borrowed(values),
            nulls: Some(nulls),
            constant,
        });
    }
    let mut dim = None;
    let mut values = Vec::new();
    for r in 0..rows {
        let v = if array.is_null(r) {
            None
        } else {
            Some(row_vector(name, array, r)?)
        };
        match (v, dim) {
            (None, _) => {}
            (Some(v), Some(d)) if v.len() != d => {
                return Err(error(
                    name,
                    format!("vectors of dimensions {d} and {} in one argument", v.len()),
                ));
            }
            (Some(v), _) => {
                dim = Some(v.len());
                values.resize(r * v.len(), 0.0);
                values.extend(v);
            }
        }
    }
    let dim = dim.unwrap_or(0);
    values.resize(rows * dim, 0.0);
    Ok(Side {
        dim,
        values: Cow::Owned(values),
        nulls: Some(nulls),
        constant,
    })
}

/// Row `r` of `array` (not NULL) as a vector.
fn row_vector(name: &str, array: &ArrayRef, r: usize) -> DfResult<Vec<f32>> {
    let floats = |child: ArrayRef| -> DfResult<Vec<f32>> {
        let as_f32 = arrow::compute::cast(&child, &ArrowType::Float32)
            .map_err(|e| error(name, format!("a vector of numbers is needed: {e}")))?;
        let prim = as_f32.as_primitive::<Float32Type>();
        if prim.null_count() > 0 {
            return Err(error(name, "a vector cannot hold NULL components"));
        }
        let v = prim.values().to_vec();
        if v.iter().any(|x| !x.is_finite()) {
            return Err(error(name, "vector components must be finite"));
        }
        Ok(v)
    };
    match array.data_type() {
        ArrowType::Utf8 => {
            parse_vector(array.as_string::<i32>().value(r)).map_err(|m| error(name, m))
        }
        ArrowType::LargeUtf8 => {
            parse_vector(array.as_string::<i64>().value(r)).map_err(|m| error(name, m))
        }
        ArrowType::Utf8View => {
            parse_vector(array.as_string_view().value(r)).map_err(|m| error(name, m))
        }
        ArrowType::FixedSizeList(_, _) => floats(array.as_fixed_size_list().value(r)),
        ArrowType::List(_) => floats(array.as_list::<i32>().value(r)),
        ArrowType::LargeList(_) => floats(array.as_list::<i64>().value(r)),
        other => Err(error(
            name,
            format!("expects an EMBEDDING, a list of numbers or text '[x, y, …]', not {other}"),
        )),
    }
}

fn side<'a>(name: &str, arg: &'a ColumnarValue) -> DfResult<Side<'a>> {
    match arg {
        ColumnarValue::Array(a) => side_of(name, a, false),
        ColumnarValue::Scalar(s) if s.is_null() => Ok(Side {
            dim: 0,
            values: Cow::Owned(Vec::new()),
            nulls: None,
            constant: true,
        }),
        ColumnarValue::Scalar(s) => {
            let one = s.to_array_of_size(1)?;
            let side = side_of(name, &one, true)?;
            Ok(Side {
                values: Cow::Owned(side.values.into_owned()),
                ..side
            })
        }
    }
}

/// The metric `f` computes, when it is one of these functions.
pub fn metric_of(f: &ScalarUDF) -> Option<Metric> {
    f.inner().downcast_ref::<Distance>().map(|d| d.metric)
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Distance {
    metric: Metric,
    signature: Signature,
}

impl ScalarUDFImpl for Distance {
    fn name(&self) -> &str {
        self.metric.function_name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[ArrowType]) -> DfResult<ArrowType> {
        Ok(ArrowType::Float32)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let name = self.name();
        let [a, b] = args.args.as_slice() else {
            return Err(error(name, "takes two vectors"));
        };
        let (a, b) = (side(name, a)?, side(name, b)?);
        if a.nulls.is_some() && b.nulls.is_some() && a.dim != b.dim && a.dim > 0 && b.dim > 0 {
            return Err(error(
                name,
                format!(
                    "the vectors have different dimensions: {} and {}",
                    a.dim, b.dim
                ),
            ));
        }
        let constant = a.constant && b.constant;
        let rows = if constant { 1 } else { args.number_rows };
        let out: Float32Array = (0..rows)
            .map(|r| match (a.row(r), b.row(r)) {
                (Some(x), Some(y)) => self.metric.eval(x, y),
                _ => None,
            })
            .collect();
        Ok(if constant {
            ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?)
        } else {
            ColumnarValue::Array(Arc::new(out))
        })
    }
}

/// The distance functions, shared by every session.
pub fn functions() -> Vec<ScalarUDF> {
    [Metric::Cosine, Metric::L2, Metric::Dot]
        .into_iter()
        .map(|metric| {
            ScalarUDF::new_from_impl(Distance {
                metric,
                signature: Signature::any(2, Volatility::Immutable),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::FixedSizeListArray;
    use arrow::datatypes::Field;
    use proptest::prelude::*;

    fn embeddings(rows: &[Option<Vec<f32>>], dim: i32) -> ArrayRef {
        let field = Arc::new(Field::new("item", ArrowType::Float32, false));
        let values: Vec<f32> = rows
            .iter()
            .flat_map(|r| r.clone().unwrap_or_else(|| vec![0.0; dim as usize]))
            .collect();
        let nulls =
            arrow::buffer::NullBuffer::from(rows.iter().map(Option::is_some).collect::<Vec<_>>());
        Arc::new(FixedSizeListArray::new(
            field,
            dim,
            Arc::new(Float32Array::from(values)),
            Some(nulls),
        ))
    }

    fn call(
        metric: Metric,
        a: ColumnarValue,
        b: ColumnarValue,
        rows: usize,
    ) -> DfResult<ColumnarValue> {
        let udf = Distance {
            metric,
            signature: Signature::any(2, Volatility::Immutable),
        };
        let arg_fields = vec![
            Arc::new(Field::new("a", a.data_type(), true)),
            Arc::new(Field::new("b", b.data_type(), true)),
        ];
        udf.invoke_with_args(ScalarFunctionArgs {
            args: vec![a, b],
            arg_fields,
            number_rows: rows,
            return_field: Arc::new(Field::new("d", ArrowType::Float32, true)),
            config_options: Arc::new(Default::default()),
        })
    }

    fn text(s: &str) -> ColumnarValue {
        ColumnarValue::Scalar(ScalarValue::Utf8(Some(s.into())))
    }

    fn floats(v: ColumnarValue) -> Vec<Option<f32>> {
        let array = v.into_array(1).expect("array");
        let f = array.as_primitive::<Float32Type>();
        (0..f.len())
            .map(|i| f.is_valid(i).then(|| f.value(i)))
            .collect()
    }

    #[test]
    fn a_column_against_a_literal_gives_each_rows_distance() {
        let col = embeddings(
            &[
                Some(vec![1.0, 0.0]),
                Some(vec![0.0, 2.0]),
                None,
                Some(vec![0.0, 0.0]),
            ],
            2,
        );
        let got =
            |m| floats(call(m, ColumnarValue::Array(col.clone()), text("[1, 0]"), 4).expect("ok"));
        assert_eq!(got(Metric::Cosine), [Some(0.0), Some(1.0), None, None]);
        assert_eq!(got(Metric::Dot), [Some(1.0), Some(0.0), None, Some(0.0)]);
        let l2 = got(Metric::L2);
        assert_eq!(l2[0], Some(0.0));
        assert!((l2[1].expect("l2") - 5f32.sqrt()).abs() < 1e-6);
        assert_eq!(l2[2], None);
    }

    #[test]
    fn bad_vectors_are_errors_that_name_the_function() {
        let col = ColumnarValue::Array(embeddings(&[Some(vec![1.0, 0.0])], 2));
        for (other, needle) in [
            (text("[1, 0, 0]"), "different dimensions"),
            (text("[1, 'a']"), "expected '[x, y, …]'"),
            (text("[]"), "at least one"),
            (text("[1e39, 0]"), "finite"),
            (text("oops"), "expected"),
            (
                ColumnarValue::Scalar(ScalarValue::Int64(Some(3))),
                "not Int64",
            ),
        ] {
            let e = call(Metric::Cosine, col.clone(), other, 1).expect_err(needle);
            let m = e.to_string();
            assert!(m.contains("COSINE_DISTANCE") && m.contains(needle), "{m}");
        }
        let null = ColumnarValue::Scalar(ScalarValue::Utf8(None));
        assert_eq!(
            floats(call(Metric::L2, col, null, 1).expect("null")),
            [None]
        );
    }

    proptest! {
        /// Over a column, each row's answer is the metric of that row and the query,
        /// computed one pair at a time.
        #[test]
        fn a_column_agrees_with_pairwise_computation(
            rows in proptest::collection::vec(proptest::collection::vec(-100f32..100.0, 4), 1..40),
            q in proptest::collection::vec(-100f32..100.0, 4),
        ) {
            let col = embeddings(&rows.iter().cloned().map(Some).collect::<Vec<_>>(), 4);
            let literal = serde_json::to_string(&q).expect("json");
            for m in [Metric::Cosine, Metric::L2, Metric::Dot] {
                let got = floats(call(m, ColumnarValue::Array(col.clone()), text(&literal), rows.len()).expect("ok"));
                let want: Vec<Option<f32>> = rows.iter().map(|r| m.eval(r, &q)).collect();
                prop_assert_eq!(got, want);
            }
        }
    }
}
