//! Segment pruning by statistics: a segment is skipped only when its per-column minimum
//! and maximum prove that no row of it can match a query's filter.

use arrow::datatypes::DataType as ArrowType;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::Expr;
use folddb_materializer::TableDef;
use folddb_materializer::cold::SegmentMeta;

/// Whether a segment of `def` may hold rows matching every one of `filters` (see
/// [`may_match`]).
pub fn may_match_all(def: &TableDef, meta: &SegmentMeta, filters: &[Expr]) -> bool {
    filters.iter().all(|f| may_match(def, meta, f))
}

/// Whether a segment of `def` (in its current columns) may hold rows matching `filter`, by
/// its statistics: `false` only when they prove none does. Understands
/// `column <op> literal` (either way round; `=`, `<`, `<=`, `>`, `>=`) and `AND`.
pub fn may_match(def: &TableDef, meta: &SegmentMeta, filter: &Expr) -> bool {
    use datafusion::logical_expr::{BinaryExpr, Operator};
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = filter else {
        return true;
    };
    if *op == Operator::And {
        return may_match(def, meta, left) && may_match(def, meta, right);
    }
    let (column, op, literal) = match (left.as_ref(), right.as_ref()) {
        (Expr::Column(c), Expr::Literal(v, _)) => (c, *op, v),
        (Expr::Literal(v, _), Expr::Column(c)) => match op.swap() {
            Some(op) => (c, op, v),
            None => return true,
        },
        _ => return true,
    };
    let Some(col) = def.column(&column.name) else {
        return true;
    };
    let Some(stats) = meta.stats.iter().find(|s| s.name == col.name) else {
        return true;
    };
    let data_type = crate::convert::arrow_type(col.data_type);
    // Types whose statistics' text reads back exactly (times are not pruned by).
    if !matches!(
        data_type,
        ArrowType::Int16
            | ArrowType::Int32
            | ArrowType::Int64
            | ArrowType::Float32
            | ArrowType::Float64
            | ArrowType::Utf8
            | ArrowType::Boolean
            | ArrowType::Date32
    ) {
        return true;
    }
    let parse = |text: &Option<String>| {
        text.as_deref()
            .and_then(|t| ScalarValue::try_from_string(t.to_owned(), &data_type).ok())
    };
    let (Some(min), Some(max)) = (parse(&stats.min), parse(&stats.max)) else {
        return true;
    };
    let Ok(value) = literal.cast_to(&data_type) else {
        return true;
    };
    if value.is_null() {
        return true;
    }
    use std::cmp::Ordering::{Greater, Less};
    let (lo, hi) = (min.partial_cmp(&value), max.partial_cmp(&value));
    match op {
        Operator::Eq => !(lo == Some(Greater) || hi == Some(Less)),
        Operator::Lt => lo != Some(Greater) && min != value,
        Operator::LtEq => lo != Some(Greater),
        Operator::Gt => hi != Some(Less) && max != value,
        Operator::GtEq => hi != Some(Less),
        _ => true,
    }
}

#[cfg(test)]
#[path = "pruning_test.rs"]
mod tests;
