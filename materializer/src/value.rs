//! Column types and cell values (API.md 3.5): the type names SQL accepts, the type's wire form
//! (`KalamDataType`), and each value's JSON cell encoding in query results.

use serde::{Deserialize, Serialize};

/// A column's type. Serialized, it is the wire form of API.md 3.5: `"BigInt"`,
/// `{"Decimal":{"precision":10,"scale":2}}`, `{"Embedding":384}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DataType {
    Boolean,
    SmallInt,
    Int,
    BigInt,
    Float,
    Double,
    Decimal { precision: u8, scale: u8 },
    Text,
    Bytes,
    Json,
    Timestamp,
    DateTime,
    Date,
    Time,
    Uuid,
    Embedding(u16),
    File,
}

/// Why a type name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TypeError {
    #[error("unknown data type {0}")]
    Unknown(String),
    #[error(
        "DECIMAL({precision},{scale}) is out of range: 1 <= precision <= 38, scale <= precision"
    )]
    DecimalRange { precision: u32, scale: u32 },
    #[error("EMBEDDING({0}) is out of range: 1 <= n <= 8192")]
    EmbeddingRange(u32),
    #[error("{name} takes {expected}")]
    Arguments {
        name: String,
        expected: &'static str,
    },
}

impl DataType {
    /// The type a SQL type name denotes (case-insensitive, aliases included), with its
    /// arguments: `DECIMAL(10, 2)` is `("DECIMAL", &[10, 2])`.
    pub fn from_sql(name: &str, args: &[u32]) -> Result<DataType, TypeError> {
        let upper = name.trim().to_ascii_uppercase();
        let no_args = |t: DataType| {
            if args.is_empty() || matches!(upper.as_str(), "VARCHAR" | "CHAR" | "NVARCHAR") {
                Ok(t)
            } else {
                Err(TypeError::Arguments {
                    name: upper.clone(),
                    expected: "no arguments",
                })
            }
        };
        match upper.as_str() {
            "BOOLEAN" | "BOOL" => no_args(DataType::Boolean),
            "SMALLINT" | "INT2" => no_args(DataType::SmallInt),
            "INT" | "INTEGER" | "INT4" | "MEDIUMINT" => no_args(DataType::Int),
            "BIGINT" | "INT8" => no_args(DataType::BigInt),
            "FLOAT" | "REAL" | "FLOAT4" => no_args(DataType::Float),
            "DOUBLE" | "DOUBLE PRECISION" | "FLOAT8" => no_args(DataType::Double),
            "TEXT" | "VARCHAR" | "CHAR" | "STRING" | "NVARCHAR" => no_args(DataType::Text),
            "BYTES" | "BINARY" | "VARBINARY" | "BLOB" | "BYTEA" => no_args(DataType::Bytes),
            "JSON" | "JSONB" => no_args(DataType::Json),
            "TIMESTAMP" => no_args(DataType::Timestamp),
            "DATETIME" => no_args(DataType::DateTime),
            "DATE" => no_args(DataType::Date),
            "TIME" => no_args(DataType::Time),
            "UUID" => no_args(DataType::Uuid),
            "FILE" => no_args(DataType::File),
            "DECIMAL" | "NUMERIC" => {
                let (precision, scale) = match args {
                    [p] => (*p, 0),
                    [p, s] => (*p, *s),
                    _ => {
                        return Err(TypeError::Arguments {
                            name: upper,
                            expected: "(precision) or (precision, scale)",
                        });
                    }
                };
                if !(1..=38).contains(&precision) || scale > precision {
                    return Err(TypeError::DecimalRange { precision, scale });
                }
                Ok(DataType::Decimal {
                    precision: precision as u8,
                    scale: scale as u8,
                })
            }
            "EMBEDDING" => match args {
                [n] if (1..=8192).contains(n) => Ok(DataType::Embedding(*n as u16)),
                [n] => Err(TypeError::EmbeddingRange(*n)),
                _ => Err(TypeError::Arguments {
                    name: upper,
                    expected: "(dimensions)",
                }),
            },
            _ => Err(TypeError::Unknown(name.trim().to_owned())),
        }
    }
}

/// One cell. Timestamps, datetimes and times are microseconds (since the epoch, or since
/// midnight); dates are days since the epoch; decimals are an unscaled integer and a scale.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Value {
    Null,
    Boolean(bool),
    SmallInt(i16),
    Int(i32),
    BigInt(i64),
    Float(f32),
    Double(f64),
    Decimal { unscaled: i128, scale: u8 },
    Text(String),
    Bytes(Vec<u8>),
    Json(String),
    Timestamp(i64),
    DateTime(i64),
    Date(i32),
    Time(i64),
    Uuid([u8; 16]),
    Embedding(Vec<f32>),
    File(String),
}

impl Value {
    /// The JSON cell of API.md 3.5. BIGINT and DECIMAL are strings (a JSON number would lose
    /// precision in JavaScript clients); JSON and FILE are strings holding JSON text; bytes
    /// and embeddings are arrays. JSON has no NaN or infinity: such floats become `null`.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        let float = |f: f64| serde_json::Number::from_f64(f).map_or(J::Null, J::Number);
        match self {
            Value::Null => J::Null,
            Value::Boolean(b) => J::Bool(*b),
            Value::SmallInt(v) => J::from(*v),
            Value::Int(v) => J::from(*v),
            Value::BigInt(v) => J::String(v.to_string()),
            Value::Float(v) => float(f64::from(*v)),
            Value::Double(v) => float(*v),
            Value::Decimal { unscaled, scale } => J::String(decimal_text(*unscaled, *scale)),
            Value::Text(s) | Value::Json(s) | Value::File(s) => J::String(s.clone()),
            Value::Bytes(b) => J::Array(b.iter().map(|x| J::from(*x)).collect()),
            Value::Timestamp(us) | Value::DateTime(us) | Value::Time(us) => J::from(*us),
            Value::Date(days) => J::from(*days),
            Value::Uuid(b) => J::String(uuid_text(b)),
            Value::Embedding(v) => J::Array(v.iter().map(|f| float(f64::from(*f))).collect()),
        }
    }

    /// The value as plain text, for messages: `42`, `hello` (no quotes), `NULL`.
    pub fn plain(&self) -> String {
        match self.to_json() {
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        }
    }

    /// The value as a SQL literal, for DESCRIBE: `42`, `'it''s'`, `NULL`, `TRUE`.
    pub fn sql_literal(&self) -> String {
        match self {
            Value::Null => "NULL".into(),
            Value::Boolean(b) => if *b { "TRUE" } else { "FALSE" }.into(),
            Value::SmallInt(_)
            | Value::Int(_)
            | Value::BigInt(_)
            | Value::Float(_)
            | Value::Double(_)
            | Value::Decimal { .. }
            | Value::Timestamp(_)
            | Value::DateTime(_)
            | Value::Date(_)
            | Value::Time(_) => self.plain(),
            _ => format!("'{}'", self.plain().replace('\'', "''")),
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }
}

/// `unscaled / 10^scale` in plain decimal notation, every scale digit kept: `1230, 2` is
/// `"12.30"`.
fn decimal_text(unscaled: i128, scale: u8) -> String {
    let digits = unscaled.unsigned_abs().to_string();
    let sign = if unscaled < 0 { "-" } else { "" };
    let scale = usize::from(scale);
    if scale == 0 {
        return format!("{sign}{digits}");
    }
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (int, frac) = padded.split_at(padded.len() - scale);
    format!("{sign}{int}.{frac}")
}

/// The canonical hyphenated lowercase form.
fn uuid_text(b: &[u8; 16]) -> String {
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_sql_name_and_alias_maps_to_its_type() {
        let table: &[(&str, &[u32], DataType)] = &[
            ("BOOLEAN", &[], DataType::Boolean),
            ("bool", &[], DataType::Boolean),
            ("SMALLINT", &[], DataType::SmallInt),
            ("int2", &[], DataType::SmallInt),
            ("INT", &[], DataType::Int),
            ("integer", &[], DataType::Int),
            ("INT4", &[], DataType::Int),
            ("MEDIUMINT", &[], DataType::Int),
            ("BIGINT", &[], DataType::BigInt),
            ("int8", &[], DataType::BigInt),
            ("FLOAT", &[], DataType::Float),
            ("REAL", &[], DataType::Float),
            ("FLOAT4", &[], DataType::Float),
            ("DOUBLE", &[], DataType::Double),
            ("double precision", &[], DataType::Double),
            ("FLOAT8", &[], DataType::Double),
            ("TEXT", &[], DataType::Text),
            ("VARCHAR", &[255], DataType::Text),
            ("CHAR", &[], DataType::Text),
            ("STRING", &[], DataType::Text),
            ("NVARCHAR", &[10], DataType::Text),
            ("BYTES", &[], DataType::Bytes),
            ("BINARY", &[], DataType::Bytes),
            ("VARBINARY", &[], DataType::Bytes),
            ("BLOB", &[], DataType::Bytes),
            ("BYTEA", &[], DataType::Bytes),
            ("JSON", &[], DataType::Json),
            ("JSONB", &[], DataType::Json),
            ("TIMESTAMP", &[], DataType::Timestamp),
            ("DATETIME", &[], DataType::DateTime),
            ("DATE", &[], DataType::Date),
            ("TIME", &[], DataType::Time),
            ("UUID", &[], DataType::Uuid),
            ("FILE", &[], DataType::File),
            (
                "DECIMAL",
                &[10, 2],
                DataType::Decimal {
                    precision: 10,
                    scale: 2,
                },
            ),
            (
                "decimal",
                &[38],
                DataType::Decimal {
                    precision: 38,
                    scale: 0,
                },
            ),
            ("EMBEDDING", &[384], DataType::Embedding(384)),
        ];
        for (name, args, expected) in table {
            assert_eq!(
                DataType::from_sql(name, args),
                Ok(*expected),
                "{name}{args:?}"
            );
        }
    }

    #[test]
    fn bad_type_names_and_arguments_are_refused() {
        assert!(matches!(
            DataType::from_sql("GEOMETRY", &[]),
            Err(TypeError::Unknown(_))
        ));
        assert!(matches!(
            DataType::from_sql("DECIMAL", &[0, 0]),
            Err(TypeError::DecimalRange { .. })
        ));
        assert!(matches!(
            DataType::from_sql("DECIMAL", &[39, 2]),
            Err(TypeError::DecimalRange { .. })
        ));
        assert!(matches!(
            DataType::from_sql("DECIMAL", &[5, 6]),
            Err(TypeError::DecimalRange { .. })
        ));
        assert!(matches!(
            DataType::from_sql("DECIMAL", &[]),
            Err(TypeError::Arguments { .. })
        ));
        assert!(matches!(
            DataType::from_sql("EMBEDDING", &[0]),
            Err(TypeError::EmbeddingRange(0))
        ));
        assert!(matches!(
            DataType::from_sql("EMBEDDING", &[8193]),
            Err(TypeError::EmbeddingRange(_))
        ));
        assert!(matches!(
            DataType::from_sql("EMBEDDING", &[]),
            Err(TypeError::Arguments { .. })
        ));
        assert!(matches!(
            DataType::from_sql("INT", &[4]),
            Err(TypeError::Arguments { .. })
        ));
    }

    #[test]
    fn wire_form_of_types_matches_the_api() {
        let wire = |t: DataType| serde_json::to_value(t).unwrap();
        assert_eq!(wire(DataType::BigInt), json!("BigInt"));
        assert_eq!(wire(DataType::Boolean), json!("Boolean"));
        assert_eq!(
            wire(DataType::Decimal {
                precision: 10,
                scale: 2
            }),
            json!({"Decimal": {"precision": 10, "scale": 2}})
        );
        assert_eq!(wire(DataType::Embedding(3)), json!({"Embedding": 3}));
        let back: DataType = serde_json::from_value(json!({"Embedding": 3})).unwrap();
        assert_eq!(back, DataType::Embedding(3));
    }

    #[test]
    fn json_cells_match_the_api() {
        let uuid = [
            0x01, 0x8f, 0x3a, 0x2b, 0x4c, 0x5d, 0x7e, 0x6f, 0x80, 0x91, 0xa2, 0xb3, 0xc4, 0xd5,
            0xe6, 0xf7,
        ];
        let cases: Vec<(Value, serde_json::Value)> = vec![
            (Value::Null, json!(null)),
            (Value::Boolean(true), json!(true)),
            (Value::SmallInt(-3), json!(-3)),
            (Value::Int(42), json!(42)),
            (
                Value::BigInt(9_007_199_254_740_993),
                json!("9007199254740993"),
            ),
            (Value::Float(1.5), json!(1.5)),
            (Value::Double(-0.25), json!(-0.25)),
            (Value::Double(f64::NAN), json!(null)),
            (
                Value::Decimal {
                    unscaled: 1230,
                    scale: 2,
                },
                json!("12.30"),
            ),
            (
                Value::Decimal {
                    unscaled: -5,
                    scale: 3,
                },
                json!("-0.005"),
            ),
            (
                Value::Decimal {
                    unscaled: 7,
                    scale: 0,
                },
                json!("7"),
            ),
            (Value::Text("hi".into()), json!("hi")),
            (Value::Bytes(vec![0, 255]), json!([0, 255])),
            (Value::Json(r#"{"a":1}"#.into()), json!(r#"{"a":1}"#)),
            (
                Value::Timestamp(1_700_000_000_000_000),
                json!(1_700_000_000_000_000i64),
            ),
            (Value::DateTime(5), json!(5)),
            (Value::Date(19_000), json!(19_000)),
            (Value::Time(3_600_000_000), json!(3_600_000_000i64)),
            (
                Value::Uuid(uuid),
                json!("018f3a2b-4c5d-7e6f-8091-a2b3c4d5e6f7"),
            ),
            (Value::Embedding(vec![0.5, -1.0]), json!([0.5, -1.0])),
            (Value::File(r#"{"id":"1"}"#.into()), json!(r#"{"id":"1"}"#)),
        ];
        for (value, expected) in cases {
            assert_eq!(value.to_json(), expected, "{value:?}");
        }
    }
}
