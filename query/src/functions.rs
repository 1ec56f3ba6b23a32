//! FoldDB's SQL functions for queries (API.md 3.6): `SNOWFLAKE_ID()`, `UUID_V7()`, `ULID()`,
//! `CURRENT_USER()` / `KDB_CURRENT_USER()`, `CURRENT_ROLE()` / `KDB_CURRENT_ROLE()`. (In
//! INSERT values and defaults the planner resolves them itself, before proposing.)

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Int64Array, StringArray};
use arrow::datatypes::DataType as ArrowType;
use datafusion::common::{Result as DfResult, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use crate::ids::{self, SnowflakeIds};

#[derive(Debug)]
enum Kind {
    Snowflake(Arc<SnowflakeIds>),
    UuidV7,
    Ulid,
    /// The same text on every row (the caller's id or role).
    Constant(String),
}

#[derive(Debug)]
struct Udf {
    name: &'static str,
    aliases: Vec<String>,
    kind: Kind,
    signature: Signature,
}

impl PartialEq for Udf {
    fn eq(&self, other: &Udf) -> bool {
        self.name == other.name
    }
}

impl Eq for Udf {}

impl Hash for Udf {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl ScalarUDFImpl for Udf {
    fn name(&self) -> &str {
        self.name
    }

    fn aliases(&self) -> &[String] {
        &self.aliases
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[ArrowType]) -> DfResult<ArrowType> {
        Ok(match self.kind {
            Kind::Snowflake(_) => ArrowType::Int64,
            _ => ArrowType::Utf8,
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let n = args.number_rows.max(1);
        let now = crate::engine::now_ms();
        Ok(match &self.kind {
            Kind::Constant(s) => ColumnarValue::Scalar(ScalarValue::Utf8(Some(s.clone()))),
            Kind::Snowflake(g) => ColumnarValue::Array(Arc::new(Int64Array::from_iter_values(
                (0..n).map(|_| g.next(now)),
            )) as ArrayRef),
            Kind::UuidV7 => ColumnarValue::Array(Arc::new(StringArray::from_iter_values(
                (0..n).map(|_| ids::uuid_v7()),
            ))),
            Kind::Ulid => ColumnarValue::Array(Arc::new(StringArray::from_iter_values(
                (0..n).map(|_| ids::ulid()),
            ))),
        })
    }
}

fn udf(name: &'static str, aliases: &[&str], kind: Kind) -> ScalarUDF {
    let volatility = match kind {
        Kind::Constant(_) => Volatility::Stable,
        _ => Volatility::Volatile,
    };
    ScalarUDF::new_from_impl(Udf {
        name,
        aliases: aliases.iter().map(|a| (*a).to_owned()).collect(),
        kind,
        signature: Signature::exact(vec![], volatility),
    })
}

/// The generators, shared by every session.
pub fn generators(snowflakes: Arc<SnowflakeIds>) -> Vec<ScalarUDF> {
    vec![
        udf("snowflake_id", &[], Kind::Snowflake(snowflakes)),
        udf("uuid_v7", &[], Kind::UuidV7),
        udf("ulid", &[], Kind::Ulid),
    ]
}

/// The caller's identity functions, registered per request.
pub fn identity(user: &str, role: &str) -> Vec<ScalarUDF> {
    vec![
        udf(
            "kdb_current_user",
            &["current_user"],
            Kind::Constant(user.to_owned()),
        ),
        udf(
            "kdb_current_role",
            &["current_role"],
            Kind::Constant(role.to_owned()),
        ),
    ]
}

/// What a size-guarded function builds from its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Builds {
    /// `repeat(text, n)`: the text `n` times.
    Repeat,
    /// `lpad` / `rpad(text, n[, fill])`: `n` characters (up to 4 bytes each).
    Pad,
    /// `array_repeat(element, n)`: `n` elements.
    ArrayRepeat,
}

/// A built-in function whose output size its arguments choose (`repeat('x', 2147483647)`),
/// refused before it allocates more than `max_bytes` for one batch: a single such call
/// could otherwise exhaust the server's memory, which aborts the process.
#[derive(Debug)]
struct SizeGuard {
    inner: Arc<ScalarUDF>,
    builds: Builds,
    max_bytes: u64,
}

impl PartialEq for SizeGuard {
    fn eq(&self, other: &SizeGuard) -> bool {
        self.inner.name() == other.inner.name()
    }
}

impl Eq for SizeGuard {}

impl Hash for SizeGuard {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.inner.name().hash(state);
    }
}

/// The values of argument `arg` as i64s (nulls as 0), for `rows` rows.
fn counts(arg: &ColumnarValue, rows: usize) -> DfResult<Vec<i64>> {
    let array = arg.to_array(rows)?;
    let ints = arrow::compute::cast(&array, &ArrowType::Int64)?;
    let ints = ints
        .as_any()
        .downcast_ref::<Int64Array>()
        .ok_or_else(|| datafusion::common::DataFusionError::Internal("not Int64".into()))?;
    Ok((0..ints.len())
        .map(|i| if ints.is_valid(i) { ints.value(i) } else { 0 })
        .collect())
}

impl SizeGuard {
    /// The bytes the call would build, summed over the batch.
    fn requested_bytes(&self, args: &ScalarFunctionArgs) -> DfResult<u64> {
        let rows = args.number_rows.max(1);
        let Some(n) = args.args.get(1) else {
            return Ok(0);
        };
        let n = counts(n, rows)?;
        let per_row: Vec<u64> = match self.builds {
            Builds::Repeat => {
                let text = args.args[0].to_array(rows)?;
                let lengths = arrow::compute::kernels::length::length(&text)?;
                let lengths = counts(&ColumnarValue::Array(lengths), rows)?;
                lengths
                    .iter()
                    .zip(&n)
                    .map(|(l, n)| {
                        l.max(&0)
                            .unsigned_abs()
                            .saturating_mul(n.max(&0).unsigned_abs())
                    })
                    .collect()
            }
            Builds::Pad => n
                .iter()
                .map(|n| n.max(&0).unsigned_abs().saturating_mul(4))
                .collect(),
            Builds::ArrayRepeat => n
                .iter()
                .map(|n| n.max(&0).unsigned_abs().saturating_mul(8))
                .collect(),
        };
        Ok(per_row.iter().fold(0u64, |a, b| a.saturating_add(*b)))
    }
}

impl ScalarUDFImpl for SizeGuard {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, args: &[ArrowType]) -> DfResult<ArrowType> {
        self.inner.return_type(args)
    }

    fn return_field_from_args(
        &self,
        args: datafusion::logical_expr::ReturnFieldArgs,
    ) -> DfResult<arrow::datatypes::FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn coerce_types(&self, arg_types: &[ArrowType]) -> DfResult<Vec<ArrowType>> {
        self.inner.coerce_types(arg_types)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let bytes = self.requested_bytes(&args)?;
        if bytes > self.max_bytes {
            return Err(datafusion::common::DataFusionError::ResourcesExhausted(
                format!(
                    "{}() would build {bytes} bytes, more than the limit of {} bytes per call",
                    self.inner.name(),
                    self.max_bytes
                ),
            ));
        }
        self.inner.invoke_with_args(args)
    }
}

/// The built-in functions whose output size their arguments choose, wrapped so that one
/// call builds at most `max_bytes` (replacing them in `state`'s registry by name).
pub fn size_guarded(state: &datafusion::execution::SessionState, max_bytes: u64) -> Vec<ScalarUDF> {
    let guarded = [
        ("repeat", Builds::Repeat),
        ("lpad", Builds::Pad),
        ("rpad", Builds::Pad),
        ("array_repeat", Builds::ArrayRepeat),
    ];
    guarded
        .into_iter()
        .filter_map(|(name, builds)| {
            let inner = state.scalar_functions().get(name)?.clone();
            Some(ScalarUDF::new_from_impl(SizeGuard {
                inner,
                builds,
                max_bytes,
            }))
        })
        .collect()
}
