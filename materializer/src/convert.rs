//! Conversions between our values and Arrow: column types to Arrow fields (with the API type
//! in the field metadata), a table's schema, row versions to record batches (what the hot
//! tier's scans and the cold tier's segments hold), Arrow cells to JSON (API.md 1.7.3), and
//! SQL literals, JSON parameters and Arrow cells to a column's [`Value`].

use std::borrow::Cow;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{Schema, SchemaRef};

use crate::catalog::{ColumnDef, TableDef};
use crate::row::RowVersion;
use crate::value::{DataType, Value};
use arrow::array::{
    Array, ArrayRef, AsArray, BinaryBuilder, BooleanArray, BooleanBuilder, Date32Builder,
    Decimal128Builder, FixedSizeBinaryBuilder, FixedSizeListBuilder, Float32Builder,
    Float64Builder, Int16Builder, Int32Builder, Int64Array, Int64Builder, StringBuilder,
    Time64MicrosecondBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{
    DataType as ArrowType, Date32Type, Decimal128Type, Field, Float32Type, Float64Type, Int8Type,
    Int16Type, Int32Type, Int64Type, Time64MicrosecondType, TimeUnit, UInt8Type, UInt16Type,
    UInt32Type, UInt64Type,
};
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Timelike};
use serde_json::Value as Json;

/// Field metadata key holding the column's API type (its JSON wire form).
pub const TYPE_META: &str = "folddb.type";
/// Field metadata key holding the column's flags (`pk`, `nn`, `uq`), comma-separated.
pub const FLAGS_META: &str = "folddb.flags";

/// The Arrow type a column type is stored as (API.md 3.5).
pub fn arrow_type(t: DataType) -> ArrowType {
    match t {
        DataType::Boolean => ArrowType::Boolean,
        DataType::SmallInt => ArrowType::Int16,
        DataType::Int => ArrowType::Int32,
        DataType::BigInt => ArrowType::Int64,
        DataType::Float => ArrowType::Float32,
        DataType::Double => ArrowType::Float64,
        DataType::Decimal { precision, scale } => ArrowType::Decimal128(precision, scale as i8),
        DataType::Text | DataType::Json | DataType::File => ArrowType::Utf8,
        DataType::Bytes => ArrowType::Binary,
        DataType::Timestamp => ArrowType::Timestamp(TimeUnit::Microsecond, None),
        DataType::DateTime => ArrowType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        DataType::Date => ArrowType::Date32,
        DataType::Time => ArrowType::Time64(TimeUnit::Microsecond),
        DataType::Uuid => ArrowType::FixedSizeBinary(16),
        DataType::Embedding(n) => ArrowType::FixedSizeList(
            Arc::new(Field::new("item", ArrowType::Float32, true)),
            i32::from(n),
        ),
    }
}

/// The Arrow field of a column, carrying its API type and flags in metadata.
pub fn field(name: &str, t: DataType, nullable: bool, flags: &[&str]) -> Field {
    let mut meta = std::collections::HashMap::new();
    meta.insert(
        TYPE_META.to_owned(),
        serde_json::to_string(&t).expect("a DataType always serializes"),
    );
    if !flags.is_empty() {
        meta.insert(FLAGS_META.to_owned(), flags.join(","));
    }
    Field::new(name, arrow_type(t), nullable).with_metadata(meta)
}

/// The API type of a result column: from our metadata when the column is a stored one, else
/// mapped from its Arrow type (unknown types read as `Text`).
pub fn api_type(f: &Field) -> Json {
    if let Some(t) = f.metadata().get(TYPE_META)
        && let Ok(v) = serde_json::from_str::<Json>(t)
    {
        return v;
    }
    let name = match f.data_type() {
        ArrowType::Boolean => "Boolean",
        ArrowType::Int8 | ArrowType::Int16 | ArrowType::UInt8 => "SmallInt",
        ArrowType::Int32 | ArrowType::UInt16 => "Int",
        ArrowType::Int64 | ArrowType::UInt32 | ArrowType::UInt64 => "BigInt",
        ArrowType::Float16 | ArrowType::Float32 => "Float",
        ArrowType::Float64 => "Double",
        ArrowType::Binary | ArrowType::LargeBinary | ArrowType::BinaryView => "Bytes",
        ArrowType::Timestamp(_, Some(_)) => "DateTime",
        ArrowType::Timestamp(_, None) => "Timestamp",
        ArrowType::Date32 | ArrowType::Date64 => "Date",
        ArrowType::Time32(_) | ArrowType::Time64(_) => "Time",
        ArrowType::FixedSizeBinary(16) => "Uuid",
        ArrowType::Decimal128(p, s) => {
            return serde_json::json!({"Decimal": {"precision": p, "scale": s}});
        }
        ArrowType::FixedSizeList(_, n) => return serde_json::json!({ "Embedding": n }),
        _ => "Text",
    };
    Json::String(name.to_owned())
}

/// The flags of a result column (`pk`, `nn`, `uq`), from our metadata.
pub fn flags(f: &Field) -> Vec<String> {
    f.metadata()
        .get(FLAGS_META)
        .map(|s| s.split(',').map(str::to_owned).collect())
        .unwrap_or_default()
}

/// Builds one Arrow column of type `t` from `values` (which the caller has already coerced
/// to `t`; anything else becomes NULL).
pub fn build_column<'a>(t: DataType, values: impl Iterator<Item = &'a Value>) -> ArrayRef {
    macro_rules! prim {
        ($builder:ty, $variant:ident) => {{
            let mut b = <$builder>::new();
            for v in values {
                match v {
                    Value::$variant(x) => b.append_value(*x),
                    _ => b.append_null(),
                }
            }
            Arc::new(b.finish()) as ArrayRef
        }};
    }
    match t {
        DataType::Boolean => prim!(BooleanBuilder, Boolean),
        DataType::SmallInt => prim!(Int16Builder, SmallInt),
        DataType::Int => prim!(Int32Builder, Int),
        DataType::BigInt => prim!(Int64Builder, BigInt),
        DataType::Float => prim!(Float32Builder, Float),
        DataType::Double => prim!(Float64Builder, Double),
        DataType::Date => prim!(Date32Builder, Date),
        DataType::Time => prim!(Time64MicrosecondBuilder, Time),
        DataType::Timestamp => prim!(TimestampMicrosecondBuilder, Timestamp),
        DataType::DateTime => {
            let mut b = TimestampMicrosecondBuilder::new().with_timezone("UTC");
            for v in values {
                match v {
                    Value::DateTime(x) => b.append_value(*x),
                    _ => b.append_null(),
                }
            }
            Arc::new(b.finish())
        }
        DataType::Decimal { precision, scale } => {
            let mut b = Decimal128Builder::new();
            for v in values {
                match v {
                    Value::Decimal { unscaled, .. } => b.append_value(*unscaled),
                    _ => b.append_null(),
                }
            }
            Arc::new(
                b.finish()
                    .with_precision_and_scale(precision, scale as i8)
                    .expect("precision and scale were validated at CREATE TABLE"),
            )
        }
        DataType::Text | DataType::Json | DataType::File => {
            let mut b = StringBuilder::new();
            for v in values {
                match v {
                    Value::Text(s) | Value::Json(s) | Value::File(s) => b.append_value(s),
                    _ => b.append_null(),
                }
            }
            Arc::new(b.finish())
        }
        DataType::Bytes => {
            let mut b = BinaryBuilder::new();
            for v in values {
                match v {
                    Value::Bytes(x) => b.append_value(x),
                    _ => b.append_null(),
                }
            }
            Arc::new(b.finish())
        }
        DataType::Uuid => {
            let mut b = FixedSizeBinaryBuilder::new(16);
            for v in values {
                match v {
                    Value::Uuid(x) => b.append_value(x).expect("16 bytes"),
                    _ => b.append_null(),
                }
            }
            Arc::new(b.finish())
        }
        DataType::Embedding(n) => {
            let mut b = FixedSizeListBuilder::new(Float32Builder::new(), i32::from(n))
                .with_field(Arc::new(Field::new("item", ArrowType::Float32, true)));
            for v in values {
                match v {
                    Value::Embedding(x) if x.len() == usize::from(n) => {
                        b.values().append_slice(x);
                        b.append(true);
                    }
                    _ => {
                        for _ in 0..n {
                            b.values().append_null();
                        }
                        b.append(false);
                    }
                }
            }
            Arc::new(b.finish())
        }
    }
}

/// The JSON cell of row `row` of `array` (API.md 1.7.3: 64-bit integers and decimals as
/// strings, timestamps as numbers of their unit, UUIDs canonical, embeddings as arrays).
pub fn cell_json(array: &dyn Array, row: usize) -> Result<Json, String> {
    if array.is_null(row) {
        return Ok(Json::Null);
    }
    let float = |f: f64| {
        serde_json::Number::from_f64(f)
            .map(Json::Number)
            .ok_or_else(|| format!("cannot encode {f} as JSON"))
    };
    Ok(match array.data_type() {
        ArrowType::Null => Json::Null,
        ArrowType::Boolean => Json::Bool(array.as_boolean().value(row)),
        ArrowType::Int8 => Json::from(array.as_primitive::<Int8Type>().value(row)),
        ArrowType::Int16 => Json::from(array.as_primitive::<Int16Type>().value(row)),
        ArrowType::Int32 => Json::from(array.as_primitive::<Int32Type>().value(row)),
        ArrowType::UInt8 => Json::from(array.as_primitive::<UInt8Type>().value(row)),
        ArrowType::UInt16 => Json::from(array.as_primitive::<UInt16Type>().value(row)),
        ArrowType::UInt32 => Json::from(array.as_primitive::<UInt32Type>().value(row)),
        ArrowType::Int64 => Json::String(array.as_primitive::<Int64Type>().value(row).to_string()),
        ArrowType::UInt64 => {
            Json::String(array.as_primitive::<UInt64Type>().value(row).to_string())
        }
        ArrowType::Float32 => float(f64::from(array.as_primitive::<Float32Type>().value(row)))?,
        ArrowType::Float64 => float(array.as_primitive::<Float64Type>().value(row))?,
        ArrowType::Utf8 => Json::String(array.as_string::<i32>().value(row).to_owned()),
        ArrowType::LargeUtf8 => Json::String(array.as_string::<i64>().value(row).to_owned()),
        ArrowType::Utf8View => Json::String(array.as_string_view().value(row).to_owned()),
        ArrowType::Date32 => Json::from(array.as_primitive::<Date32Type>().value(row)),
        ArrowType::Time64(TimeUnit::Microsecond) => {
            Json::from(array.as_primitive::<Time64MicrosecondType>().value(row))
        }
        ArrowType::Timestamp(_, _) => {
            // Every timestamp unit is an i64 underneath.
            let data = array.to_data();
            let values: &[i64] = data.buffer(0);
            Json::from(values[data.offset() + row])
        }
        ArrowType::Decimal128(_, scale) => {
            let v = Value::Decimal {
                unscaled: array.as_primitive::<Decimal128Type>().value(row),
                scale: (*scale).max(0) as u8,
            };
            v.to_json()
        }
        ArrowType::FixedSizeBinary(16) => {
            let b = array.as_fixed_size_binary().value(row);
            let mut u = [0u8; 16];
            u.copy_from_slice(b);
            Value::Uuid(u).to_json()
        }
        ArrowType::FixedSizeBinary(_) => bytes_json(array.as_fixed_size_binary().value(row)),
        ArrowType::Binary => bytes_json(array.as_binary::<i32>().value(row)),
        ArrowType::LargeBinary => bytes_json(array.as_binary::<i64>().value(row)),
        ArrowType::BinaryView => bytes_json(array.as_binary_view().value(row)),
        ArrowType::FixedSizeList(_, _) => list_json(&array.as_fixed_size_list().value(row))?,
        ArrowType::List(_) => list_json(&array.as_list::<i32>().value(row))?,
        ArrowType::LargeList(_) => list_json(&array.as_list::<i64>().value(row))?,
        _ => {
            // Anything else is shown as Arrow prints it.
            let formatter = arrow::util::display::ArrayFormatter::try_new(
                array,
                &arrow::util::display::FormatOptions::default(),
            )
            .map_err(|e| e.to_string())?;
            Json::String(formatter.value(row).to_string())
        }
    })
}

fn bytes_json(b: &[u8]) -> Json {
    Json::Array(b.iter().map(|x| Json::from(*x)).collect())
}

fn list_json(values: &ArrayRef) -> Result<Json, String> {
    (0..values.len())
        .map(|i| cell_json(values.as_ref(), i))
        .collect::<Result<Vec<_>, _>>()
        .map(Json::Array)
}

/// A literal as written in SQL or sent as a JSON parameter, before it meets a column type.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Null,
    Bool(bool),
    /// A number's text, as written (so that decimals and big integers keep every digit).
    Number(String),
    Str(String),
}

impl Literal {
    /// A JSON parameter (API.md 1.7.1). Arrays and objects are refused.
    pub fn from_param(v: &Json) -> Result<Literal, String> {
        match v {
            Json::Null => Ok(Literal::Null),
            Json::Bool(b) => Ok(Literal::Bool(*b)),
            Json::Number(n) => Ok(Literal::Number(n.to_string())),
            Json::String(s) => Ok(Literal::Str(s.clone())),
            Json::Array(_) | Json::Object(_) => {
                Err("Array parameters not yet supported".to_owned())
            }
        }
    }
}

fn parse_int<T: std::str::FromStr>(s: &str, t: &str) -> Result<T, String> {
    let s = s.trim();
    s.parse::<T>().or_else(|_| {
        // `1.0` or `1e3` into an integer column: only when the value is integral.
        match s.parse::<f64>() {
            Ok(f) if f.fract() == 0.0 => f
                .to_string()
                .parse::<T>()
                .map_err(|_| format!("value {s} is out of range for {t}")),
            _ => Err(format!("cannot convert '{s}' to {t}")),
        }
    })
}

fn parse_decimal(s: &str, precision: u8, scale: u8) -> Result<Value, String> {
    let s = s.trim();
    let err = || format!("cannot convert '{s}' to DECIMAL({precision},{scale})");
    let (neg, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if int.is_empty() && frac.is_empty()
        || !int.chars().all(|c| c.is_ascii_digit())
        || !frac.chars().all(|c| c.is_ascii_digit())
    {
        return Err(err());
    }
    let scale_us = usize::from(scale);
    // Round half away from zero when there are more fractional digits than the scale.
    let (kept, rest) = if frac.len() > scale_us {
        frac.split_at(scale_us)
    } else {
        (frac, "")
    };
    let text = format!("{int}{kept:0<scale_us$}");
    let mut unscaled: i128 = if text.is_empty() {
        0
    } else {
        text.parse().map_err(|_| err())?
    };
    let too_big = || format!("value {s} does not fit DECIMAL({precision},{scale})");
    if rest.starts_with(['5', '6', '7', '8', '9']) {
        unscaled = unscaled.checked_add(1).ok_or_else(too_big)?;
    }
    // Past 38 digits (more than i128 holds) nothing fits.
    let limit = 10i128
        .checked_pow(u32::from(precision))
        .unwrap_or(i128::MAX);
    if unscaled >= limit {
        return Err(too_big());
    }
    Ok(Value::Decimal {
        unscaled: if neg { -unscaled } else { unscaled },
        scale,
    })
}

/// Microseconds since the epoch from an RFC 3339 or `YYYY-MM-DD[ HH:MM:SS[.f]]` text.
fn parse_timestamp_us(s: &str) -> Result<i64, String> {
    let s = s.trim();
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        return Ok(dt.timestamp_micros());
    }
    for fmt in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(dt) = NaiveDateTime::parse_from_str(s, fmt) {
            return Ok(dt.and_utc().timestamp_micros());
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d
            .and_hms_opt(0, 0, 0)
            .expect("midnight exists")
            .and_utc()
            .timestamp_micros());
    }
    Err(format!("cannot parse '{s}' as a timestamp"))
}

fn parse_date(s: &str) -> Result<i32, String> {
    let d = NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
        .map_err(|_| format!("cannot parse '{s}' as a date (YYYY-MM-DD)"))?;
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("the epoch exists");
    i32::try_from((d - epoch).num_days()).map_err(|_| format!("date '{s}' is out of range"))
}

fn parse_time_us(s: &str) -> Result<i64, String> {
    let t = NaiveTime::parse_from_str(s.trim(), "%H:%M:%S%.f")
        .or_else(|_| NaiveTime::parse_from_str(s.trim(), "%H:%M"))
        .map_err(|_| format!("cannot parse '{s}' as a time (HH:MM:SS)"))?;
    Ok(i64::from(t.num_seconds_from_midnight()) * 1_000_000 + i64::from(t.nanosecond() / 1000))
}

fn parse_uuid(s: &str) -> Result<[u8; 16], String> {
    uuid::Uuid::parse_str(s.trim())
        .map(|u| *u.as_bytes())
        .map_err(|_| format!("cannot parse '{s}' as a UUID"))
}

fn parse_embedding(s: &str, n: u16) -> Result<Vec<f32>, String> {
    let v: Vec<f32> = serde_json::from_str(s.trim())
        .map_err(|_| format!("cannot parse '{s}' as EMBEDDING({n}): expected '[x, y, …]'"))?;
    if v.len() != usize::from(n) {
        return Err(format!("EMBEDDING({n}) needs {n} values, got {}", v.len()));
    }
    for x in &v {
        finite(*x, f64::from(*x), "EMBEDDING")?;
    }
    Ok(v)
}

/// The one rule for NaN and infinities: they are refused on every write. API.md 1.7.3
/// encodes floats as JSON numbers, which have neither, so a stored one would make its table
/// unreadable for every reader.
fn finite<T>(v: T, as_f64: f64, type_name: &str) -> Result<T, String> {
    if as_f64.is_finite() {
        Ok(v)
    } else {
        Err(format!(
            "{type_name} value {as_f64} is not allowed: only finite numbers are stored (JSON \
             has no NaN or infinity)"
        ))
    }
}

/// `lit` as a value of type `t`, or why not.
pub fn coerce(lit: &Literal, t: DataType) -> Result<Value, String> {
    let text = match lit {
        Literal::Null => return Ok(Value::Null),
        Literal::Bool(b) => {
            return match t {
                DataType::Boolean => Ok(Value::Boolean(*b)),
                DataType::Text => Ok(Value::Text(b.to_string())),
                DataType::Json => Ok(Value::Json(b.to_string())),
                _ => Err(format!("cannot convert boolean {b} to {t:?}")),
            };
        }
        Literal::Number(s) | Literal::Str(s) => s.as_str(),
    };
    let is_str = matches!(lit, Literal::Str(_));
    Ok(match t {
        DataType::Boolean => match text.to_ascii_lowercase().as_str() {
            "true" | "t" | "1" => Value::Boolean(true),
            "false" | "f" | "0" => Value::Boolean(false),
            _ => return Err(format!("cannot convert '{text}' to BOOLEAN")),
        },
        DataType::SmallInt => Value::SmallInt(parse_int(text, "SMALLINT")?),
        DataType::Int => Value::Int(parse_int(text, "INT")?),
        DataType::BigInt => Value::BigInt(parse_int(text, "BIGINT")?),
        DataType::Float => {
            let v: f32 = text
                .trim()
                .parse()
                .map_err(|_| format!("cannot convert '{text}' to FLOAT"))?;
            Value::Float(finite(v, f64::from(v), "FLOAT")?)
        }
        DataType::Double => {
            let v: f64 = text
                .trim()
                .parse()
                .map_err(|_| format!("cannot convert '{text}' to DOUBLE"))?;
            Value::Double(finite(v, v, "DOUBLE")?)
        }
        DataType::Decimal { precision, scale } => parse_decimal(text, precision, scale)?,
        DataType::Text => Value::Text(text.to_owned()),
        DataType::File => Value::File(text.to_owned()),
        DataType::Json => {
            if is_str {
                serde_json::from_str::<Json>(text)
                    .map_err(|e| format!("invalid JSON value '{text}': {e}"))?;
            }
            Value::Json(text.to_owned())
        }
        DataType::Bytes => Value::Bytes(text.as_bytes().to_vec()),
        DataType::Timestamp | DataType::DateTime => {
            let us = if is_str {
                parse_timestamp_us(text)?
            } else {
                parse_int(text, "TIMESTAMP")?
            };
            if t == DataType::Timestamp {
                Value::Timestamp(us)
            } else {
                Value::DateTime(us)
            }
        }
        DataType::Date => Value::Date(if is_str {
            parse_date(text)?
        } else {
            parse_int(text, "DATE")?
        }),
        DataType::Time => Value::Time(if is_str {
            parse_time_us(text)?
        } else {
            parse_int(text, "TIME")?
        }),
        DataType::Uuid => Value::Uuid(parse_uuid(text)?),
        DataType::Embedding(n) => Value::Embedding(parse_embedding(text, n)?),
    })
}

/// The cell at `row` of `array` as a value of column type `t` (for UPDATE … SET and
/// INSERT … SELECT results).
pub fn arrow_to_value(array: &dyn Array, row: usize, t: DataType) -> Result<Value, String> {
    if array.is_null(row) {
        return Ok(Value::Null);
    }
    let json = cell_json(array, row)?;
    // Timestamps arrive in their own unit; bring them to microseconds first.
    if let ArrowType::Timestamp(unit, _) = array.data_type()
        && let Some(v) = json.as_i64()
    {
        let us = match unit {
            TimeUnit::Second => v.saturating_mul(1_000_000),
            TimeUnit::Millisecond => v.saturating_mul(1_000),
            TimeUnit::Microsecond => v,
            TimeUnit::Nanosecond => v / 1_000,
        };
        return coerce(&Literal::Number(us.to_string()), t);
    }
    let lit = match json {
        Json::Null => Literal::Null,
        Json::Bool(b) => Literal::Bool(b),
        Json::Number(n) => Literal::Number(n.to_string()),
        Json::String(s) if matches!(array.data_type(), ArrowType::Int64 | ArrowType::UInt64) => {
            Literal::Number(s)
        }
        Json::String(s) => Literal::Str(s),
        arr @ Json::Array(_) => match t {
            DataType::Bytes => {
                let bytes: Vec<u8> = serde_json::from_value(arr)
                    .map_err(|e| format!("cannot convert to BYTES: {e}"))?;
                return Ok(Value::Bytes(bytes));
            }
            _ => Literal::Str(arr.to_string()),
        },
        obj @ Json::Object(_) => Literal::Str(obj.to_string()),
    };
    coerce(&lit, t)
}

/// The default value of an added column for rows written before it existed.
pub fn backfill(column: &ColumnDef) -> Value {
    match &column.default {
        Some(crate::catalog::DefaultExpr::Literal(v)) => v.clone(),
        _ => Value::Null,
    }
}

/// The Arrow schema of a table: its columns in order, then `_seq` and (USER / SHARED)
/// `_deleted`.
pub fn table_schema(def: &TableDef) -> SchemaRef {
    let mut fields = Vec::with_capacity(def.columns.len() + 2);
    for c in &def.columns {
        let flags: &[&str] = if def.primary_key == Some(c.id) {
            &["pk", "nn", "uq"]
        } else if !c.nullable && c.unique {
            &["nn", "uq"]
        } else if !c.nullable {
            &["nn"]
        } else if c.unique {
            &["uq"]
        } else {
            &[]
        };
        fields.push(field(&c.name, c.data_type, c.nullable, flags));
    }
    fields.push(field("_seq", DataType::BigInt, false, &["nn"]));
    if def.has_soft_delete() {
        fields.push(field("_deleted", DataType::Boolean, false, &["nn"]));
    }
    Arc::new(Schema::new(fields))
}

/// Row versions of `def` as one record batch in its schema ([`table_schema`]): every
/// column, then `_seq` and (with soft delete) `_deleted`.
pub fn rows_batch(
    def: &TableDef,
    schema: &SchemaRef,
    rows: &[RowVersion],
) -> Result<RecordBatch, arrow::error::ArrowError> {
    let all: Vec<usize> = (0..schema.fields().len()).collect();
    RecordBatch::try_new(schema.clone(), rows_columns(def, &all, rows))
}

/// Columns `projection` (positions in [`table_schema`]) of row versions of `def`, as Arrow
/// arrays: the cells of each column read under its current type, then `_seq` and
/// `_deleted`.
pub fn rows_columns(def: &TableDef, projection: &[usize], rows: &[RowVersion]) -> Vec<ArrayRef> {
    let n = def.columns.len();
    projection
        .iter()
        .map(|&p| match def.columns.get(p) {
            Some(c) => {
                let fallback = backfill(c);
                let values: Vec<Cow<'_, Value>> = rows
                    .iter()
                    .map(|r| match r.cell(c.id) {
                        Some(v) if v.is_null() || builds_as(v, c.data_type) => Cow::Borrowed(v),
                        Some(v) => Cow::Owned(fit(v, c.data_type)),
                        None => Cow::Borrowed(&fallback),
                    })
                    .collect();
                build_column(c.data_type, values.iter().map(|v| v.as_ref()))
            }
            None if p == n => {
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.seq))) as ArrayRef
            }
            None => Arc::new(BooleanArray::from_iter(
                rows.iter().map(|r| Some(r.deleted)),
            )),
        })
        .collect()
}

/// Whether [`build_column`] takes `v` as a value of type `t` as it is.
fn builds_as(v: &Value, t: DataType) -> bool {
    match (t, v) {
        (DataType::Embedding(n), Value::Embedding(x)) => x.len() == usize::from(n),
        (DataType::Text | DataType::Json | DataType::File, v) => {
            matches!(v, Value::Text(_) | Value::Json(_) | Value::File(_))
        }
        (DataType::Boolean, Value::Boolean(_))
        | (DataType::SmallInt, Value::SmallInt(_))
        | (DataType::Int, Value::Int(_))
        | (DataType::BigInt, Value::BigInt(_))
        | (DataType::Float, Value::Float(_))
        | (DataType::Double, Value::Double(_))
        | (DataType::Date, Value::Date(_))
        | (DataType::Time, Value::Time(_))
        | (DataType::Timestamp, Value::Timestamp(_))
        | (DataType::DateTime, Value::DateTime(_))
        | (DataType::Decimal { .. }, Value::Decimal { .. })
        | (DataType::Bytes, Value::Bytes(_))
        | (DataType::Uuid, Value::Uuid(_)) => true,
        _ => false,
    }
}

/// A stored value read under a column type it was not written with (after MODIFY COLUMN):
/// converted when it can be, NULL when it cannot.
fn fit(v: &Value, t: DataType) -> Value {
    if builds_as(v, t) || v.is_null() {
        return v.clone();
    }
    let lit = match v.to_json() {
        serde_json::Value::Bool(b) => Literal::Bool(b),
        serde_json::Value::Number(n) => Literal::Number(n.to_string()),
        _ => Literal::Str(v.plain()),
    };
    coerce(&lit, t).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_coerce_to_column_types() {
        let n = |s: &str| Literal::Number(s.into());
        let s = |s: &str| Literal::Str(s.into());
        let cases: Vec<(Literal, DataType, Value)> = vec![
            (n("42"), DataType::BigInt, Value::BigInt(42)),
            (n("-7"), DataType::Int, Value::Int(-7)),
            (n("1.5"), DataType::Double, Value::Double(1.5)),
            (
                n("12.3"),
                DataType::Decimal {
                    precision: 10,
                    scale: 2,
                },
                Value::Decimal {
                    unscaled: 1230,
                    scale: 2,
                },
            ),
            (
                s("2024-01-01T00:00:01Z"),
                DataType::Timestamp,
                Value::Timestamp(1_704_067_201_000_000),
            ),
            (s("1970-01-02"), DataType::Date, Value::Date(1)),
            (s("00:00:01"), DataType::Time, Value::Time(1_000_000)),
            (
                s("[1,2]"),
                DataType::Embedding(2),
                Value::Embedding(vec![1.0, 2.0]),
            ),
            (Literal::Bool(true), DataType::Boolean, Value::Boolean(true)),
            (Literal::Null, DataType::Int, Value::Null),
        ];
        for (lit, t, want) in cases {
            assert_eq!(coerce(&lit, t), Ok(want), "{lit:?} as {t:?}");
        }
    }

    #[test]
    fn bad_literals_are_refused() {
        assert!(coerce(&Literal::Str("abc".into()), DataType::Int).is_err());
        assert!(coerce(&Literal::Number("70000".into()), DataType::SmallInt).is_err());
        assert!(coerce(&Literal::Str("{bad".into()), DataType::Json).is_err());
        assert!(coerce(&Literal::Str("[1]".into()), DataType::Embedding(2)).is_err());
        assert!(
            coerce(
                &Literal::Number("12345".into()),
                DataType::Decimal {
                    precision: 4,
                    scale: 0
                }
            )
            .is_err()
        );
        for v in ["NaN", "nan", "inf", "-Infinity", "1e999"] {
            for t in [DataType::Double, DataType::Float] {
                let got = coerce(&Literal::Str(v.into()), t);
                assert!(got.is_err(), "{v} as {t:?}: {got:?}");
            }
        }
        assert!(coerce(&Literal::Number("1e300".into()), DataType::Float).is_err());
        assert!(coerce(&Literal::Str("[1, 1e300]".into()), DataType::Embedding(2)).is_err());
        // Rounding up past i128::MAX, or past 38 digits, is an error, never a wrap.
        let d38 = DataType::Decimal {
            precision: 38,
            scale: 0,
        };
        for v in [
            "170141183460469231731687303715884105727.5",
            "-170141183460469231731687303715884105727.5",
            "99999999999999999999999999999999999999.5",
            "100000000000000000000000000000000000000",
            "1701411834604692317316873037158841057270",
        ] {
            let got = coerce(&Literal::Number(v.into()), d38);
            assert!(got.is_err(), "{v}: {got:?}");
        }
        assert_eq!(
            coerce(
                &Literal::Number("-99999999999999999999999999999999999999".into()),
                d38
            ),
            Ok(Value::Decimal {
                unscaled: -99_999_999_999_999_999_999_999_999_999_999_999_999,
                scale: 0
            })
        );
    }

    #[test]
    fn columns_round_trip_through_arrow_to_json() {
        let values = [Value::BigInt(42), Value::Null];
        let col = build_column(DataType::BigInt, values.iter());
        assert_eq!(cell_json(col.as_ref(), 0), Ok(Json::String("42".into())));
        assert_eq!(cell_json(col.as_ref(), 1), Ok(Json::Null));
        let emb = [Value::Embedding(vec![0.5, 1.0])];
        let col = build_column(DataType::Embedding(2), emb.iter());
        assert_eq!(
            cell_json(col.as_ref(), 0),
            Ok(serde_json::json!([0.5, 1.0]))
        );
        assert_eq!(
            arrow_to_value(col.as_ref(), 0, DataType::Embedding(2)),
            Ok(Value::Embedding(vec![0.5, 1.0]))
        );
    }
}
