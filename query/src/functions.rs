//! FoldDB's SQL functions for queries (API.md 3.6): `SNOWFLAKE_ID()`, `UUID_V7()`, `ULID()`,
//! `CURRENT_USER()` / `KDB_CURRENT_USER()`, `CURRENT_ROLE()` / `KDB_CURRENT_ROLE()`. (In
//! INSERT values and defaults the planner resolves them itself, before proposing.)

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, StringArray};
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
