//! Arrow columns straight from encoded row versions, for scans of the hot tier.
//!
//! A row version is one codec version byte, then bincode (`materializer/FORMAT.md`, "rows"):
//! `_seq` (zigzag varint), `_deleted` (one byte), the number of cells (varint), then per cell
//! the column id (varint) and the [`Value`] (variant index as a varint, then its payload).
//! [`decode_cells`] reads that layout in place: text and bytes are borrowed, nothing is
//! allocated per cell. [`columns`] builds the projected columns from it, and falls back to
//! the serde decoder (and [`crate::convert::rows_columns`]) for anything it does not expect,
//! so both always agree.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryBuilder, BooleanArray, BooleanBuilder, Date32Builder, Float32Builder,
    Float64Builder, Int16Builder, Int32Builder, Int64Array, Int64Builder, StringBuilder,
    Time64MicrosecondBuilder, TimestampMicrosecondBuilder,
};

use crate::catalog::TableDef;
use crate::row::RowVersion;
use crate::value::{DataType, Value};

/// One cell, borrowed from the encoded row version. Kinds without a fast path are `Other`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CellRef<'a> {
    /// The row has no cell for the column (it was added later).
    Missing,
    Null,
    Boolean(bool),
    SmallInt(i16),
    Int(i32),
    BigInt(i64),
    Float(f32),
    Double(f64),
    /// TEXT, JSON and FILE.
    Text(&'a str),
    Bytes(&'a [u8]),
    Timestamp(i64),
    DateTime(i64),
    Date(i32),
    Time(i64),
    Other,
}

/// The encoded form could not be read by the fast path.
#[derive(Debug)]
pub struct Unreadable;

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Unreadable> {
        if self.bytes.len() < n {
            return Err(Unreadable);
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn byte(&mut self) -> Result<u8, Unreadable> {
        Ok(self.take(1)?[0])
    }

    /// bincode's varint: one byte below 251, else a marker and 2, 4 or 8 bytes LE.
    fn varint(&mut self) -> Result<u64, Unreadable> {
        let b = self.byte()?;
        let fixed = |s: &mut Self, n: usize| -> Result<u64, Unreadable> {
            let mut buf = [0u8; 8];
            buf[..n].copy_from_slice(s.take(n)?);
            Ok(u64::from_le_bytes(buf))
        };
        match b {
            0..=250 => Ok(u64::from(b)),
            251 => fixed(self, 2),
            252 => fixed(self, 4),
            253 => fixed(self, 8),
            _ => Err(Unreadable),
        }
    }

    fn zigzag(&mut self) -> Result<i64, Unreadable> {
        let u = self.varint()?;
        Ok(((u >> 1) as i64) ^ -((u & 1) as i64))
    }

    fn len(&mut self) -> Result<usize, Unreadable> {
        usize::try_from(self.varint()?).map_err(|_| Unreadable)
    }

    fn cell(&mut self) -> Result<CellRef<'a>, Unreadable> {
        let narrow = |v: i64| i32::try_from(v).map_err(|_| Unreadable);
        Ok(match self.varint()? {
            0 => CellRef::Null,
            1 => match self.byte()? {
                0 => CellRef::Boolean(false),
                1 => CellRef::Boolean(true),
                _ => return Err(Unreadable),
            },
            2 => CellRef::SmallInt(i16::try_from(self.zigzag()?).map_err(|_| Unreadable)?),
            3 => CellRef::Int(narrow(self.zigzag()?)?),
            4 => CellRef::BigInt(self.zigzag()?),
            5 => CellRef::Float(f32::from_le_bytes(
                self.take(4)?.try_into().map_err(|_| Unreadable)?,
            )),
            6 => CellRef::Double(f64::from_le_bytes(
                self.take(8)?.try_into().map_err(|_| Unreadable)?,
            )),
            8 | 10 | 17 => {
                let n = self.len()?;
                CellRef::Text(std::str::from_utf8(self.take(n)?).map_err(|_| Unreadable)?)
            }
            9 => {
                let n = self.len()?;
                CellRef::Bytes(self.take(n)?)
            }
            11 => CellRef::Timestamp(self.zigzag()?),
            12 => CellRef::DateTime(self.zigzag()?),
            13 => CellRef::Date(narrow(self.zigzag()?)?),
            14 => CellRef::Time(self.zigzag()?),
            // DECIMAL, UUID, EMBEDDING: the serde decoder reads them.
            _ => return Err(Unreadable),
        })
    }
}

/// `_seq` and `_deleted` of an encoded row version.
pub fn head(bytes: &[u8]) -> crate::Result<(i64, bool)> {
    let mut r = Reader { bytes };
    let fast = (|| {
        if r.byte()? != crate::codec::VERSION {
            return Err(Unreadable);
        }
        let seq = r.zigzag()?;
        match r.byte()? {
            0 => Ok((seq, false)),
            1 => Ok((seq, true)),
            _ => Err(Unreadable),
        }
    })();
    match fast {
        Ok(head) => Ok(head),
        Err(Unreadable) => RowVersion::head_of(bytes).map(|h| (h.seq, h.deleted)),
    }
}

/// `_seq`, `_deleted` and the cells of an encoded row version, each cell given to `cell`
/// with its column id.
pub fn decode_cells<'a>(
    bytes: &'a [u8],
    mut cell: impl FnMut(u32, CellRef<'a>),
) -> Result<(i64, bool), Unreadable> {
    let mut r = Reader { bytes };
    if r.byte()? != crate::codec::VERSION {
        return Err(Unreadable);
    }
    let seq = r.zigzag()?;
    let deleted = match r.byte()? {
        0 => false,
        1 => true,
        _ => return Err(Unreadable),
    };
    for _ in 0..r.len()? {
        let id = u32::try_from(r.varint()?).map_err(|_| Unreadable)?;
        cell(id, r.cell()?);
    }
    if !r.bytes.is_empty() {
        return Err(Unreadable);
    }
    Ok((seq, deleted))
}

/// Columns `projection` (positions in the table's schema) of the encoded row versions
/// `rows` of `def`, as [`crate::convert::rows_columns`] gives them.
pub fn columns(
    def: &TableDef,
    projection: &[usize],
    rows: &[Box<[u8]>],
) -> crate::Result<Vec<ArrayRef>> {
    match fast_columns(def, projection, rows) {
        Ok(columns) => Ok(columns),
        Err(Unreadable) => {
            let versions: Vec<RowVersion> = rows
                .iter()
                .map(|b| crate::codec::decode(b, "a row version"))
                .collect::<crate::Result<_>>()?;
            Ok(crate::convert::rows_columns(def, projection, &versions))
        }
    }
}

fn fast_columns(
    def: &TableDef,
    projection: &[usize],
    rows: &[Box<[u8]>],
) -> Result<Vec<ArrayRef>, Unreadable> {
    let n = def.columns.len();
    // Output slot of each column id the projection names.
    let mut slot_of: Vec<Option<usize>> = Vec::new();
    for (slot, &p) in projection.iter().enumerate() {
        if let Some(c) = def.columns.get(p) {
            let id = c.id as usize;
            if slot_of.len() <= id {
                slot_of.resize(id + 1, None);
            }
            slot_of[id] = Some(slot);
        }
    }
    let mut cells: Vec<Vec<CellRef<'_>>> = projection
        .iter()
        .map(|_| Vec::with_capacity(rows.len()))
        .collect();
    let mut seqs = Vec::with_capacity(rows.len());
    let mut deleted = Vec::with_capacity(rows.len());
    for (r, bytes) in rows.iter().enumerate() {
        let (seq, del) = decode_cells(bytes, |id, cell| {
            if let Some(Some(slot)) = slot_of.get(id as usize)
                && cells[*slot].len() == r
            {
                cells[*slot].push(cell);
            }
        })?;
        for column in &mut cells {
            if column.len() == r {
                column.push(CellRef::Missing);
            }
        }
        seqs.push(seq);
        deleted.push(Some(del));
    }
    projection
        .iter()
        .zip(cells)
        .map(|(&p, cells)| match def.columns.get(p) {
            Some(c) => build(c.data_type, &cells, &crate::convert::backfill(c)),
            None if p == n => Ok(Arc::new(Int64Array::from(seqs.clone())) as ArrayRef),
            None => Ok(Arc::new(BooleanArray::from(deleted.clone())) as ArrayRef),
        })
        .collect()
}

/// One column of type `t` from `cells`; `Unreadable` when a cell is not of that type as it is
/// (a column whose type changed, or one added with a default), which the slow path handles.
fn build(t: DataType, cells: &[CellRef<'_>], fallback: &Value) -> Result<ArrayRef, Unreadable> {
    macro_rules! prim {
        ($builder:expr, $($variant:ident)|+) => {{
            let mut b = $builder;
            for c in cells {
                match c {
                    $(CellRef::$variant(x))|+ => b.append_value(*x),
                    CellRef::Null => b.append_null(),
                    CellRef::Missing if fallback.is_null() => b.append_null(),
                    _ => return Err(Unreadable),
                }
            }
            Arc::new(b.finish()) as ArrayRef
        }};
    }
    Ok(match t {
        DataType::Boolean => prim!(BooleanBuilder::with_capacity(cells.len()), Boolean),
        DataType::SmallInt => prim!(Int16Builder::with_capacity(cells.len()), SmallInt),
        DataType::Int => prim!(Int32Builder::with_capacity(cells.len()), Int),
        DataType::BigInt => prim!(Int64Builder::with_capacity(cells.len()), BigInt),
        DataType::Float => prim!(Float32Builder::with_capacity(cells.len()), Float),
        DataType::Double => prim!(Float64Builder::with_capacity(cells.len()), Double),
        DataType::Date => prim!(Date32Builder::with_capacity(cells.len()), Date),
        DataType::Time => prim!(Time64MicrosecondBuilder::with_capacity(cells.len()), Time),
        DataType::Timestamp => prim!(
            TimestampMicrosecondBuilder::with_capacity(cells.len()),
            Timestamp
        ),
        DataType::DateTime => prim!(
            TimestampMicrosecondBuilder::with_capacity(cells.len()).with_timezone("UTC"),
            DateTime
        ),
        DataType::Text | DataType::Json | DataType::File => {
            let bytes = cells
                .iter()
                .map(|c| match c {
                    CellRef::Text(s) => s.len(),
                    _ => 0,
                })
                .sum();
            prim!(StringBuilder::with_capacity(cells.len(), bytes), Text)
        }
        DataType::Bytes => prim!(BinaryBuilder::with_capacity(cells.len(), 0), Bytes),
        DataType::Decimal { .. } | DataType::Uuid | DataType::Embedding(_) => {
            return Err(Unreadable);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{ColumnDef, TableKind};
    use proptest::prelude::*;

    fn value() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Boolean),
            any::<i16>().prop_map(Value::SmallInt),
            any::<i32>().prop_map(Value::Int),
            any::<i64>().prop_map(Value::BigInt),
            any::<f32>().prop_map(Value::Float),
            any::<f64>().prop_map(Value::Double),
            ".{0,300}".prop_map(Value::Text),
            proptest::collection::vec(any::<u8>(), 0..300).prop_map(Value::Bytes),
            ".{0,20}".prop_map(Value::Json),
            any::<i64>().prop_map(Value::Timestamp),
            any::<i64>().prop_map(Value::DateTime),
            any::<i32>().prop_map(Value::Date),
            any::<i64>().prop_map(Value::Time),
            ".{0,20}".prop_map(Value::File),
            (any::<i128>(), 0..10u8)
                .prop_map(|(unscaled, scale)| Value::Decimal { unscaled, scale }),
            any::<[u8; 16]>().prop_map(Value::Uuid),
        ]
    }

    fn data_type(v: &Value) -> DataType {
        match v {
            Value::Null | Value::Text(_) => DataType::Text,
            Value::Boolean(_) => DataType::Boolean,
            Value::SmallInt(_) => DataType::SmallInt,
            Value::Int(_) => DataType::Int,
            Value::BigInt(_) => DataType::BigInt,
            Value::Float(_) => DataType::Float,
            Value::Double(_) => DataType::Double,
            Value::Bytes(_) => DataType::Bytes,
            Value::Json(_) => DataType::Json,
            Value::Timestamp(_) => DataType::Timestamp,
            Value::DateTime(_) => DataType::DateTime,
            Value::Date(_) => DataType::Date,
            Value::Time(_) => DataType::Time,
            Value::File(_) => DataType::File,
            Value::Uuid(_) => DataType::Uuid,
            Value::Decimal { .. } => DataType::Decimal {
                precision: 38,
                scale: 2,
            },
            Value::Embedding(v) => DataType::Embedding(v.len() as u16),
        }
    }

    proptest! {
        /// Whatever the cells, the fast path and the serde decoder give the same columns.
        #[test]
        fn columns_equal_the_serde_decoders(
            kinds in proptest::collection::vec(value(), 1..6),
            rows in proptest::collection::vec(
                (any::<i64>(), any::<bool>(), proptest::collection::vec(value(), 6)), 1..20),
            projection_seed in any::<u64>(),
        ) {
            let mut def = TableDef::example("app", "t", TableKind::Shared);
            def.columns = kinds
                .iter()
                .enumerate()
                .map(|(i, v)| ColumnDef {
                    id: i as u32 + 1,
                    name: format!("c{i}"),
                    data_type: data_type(v),
                    nullable: true,
                    default: None,
                    unique: false,
                })
                .collect();
            let width = def.columns.len() + 2;
            let projection: Vec<usize> =
                (0..width).filter(|i| projection_seed >> i & 1 == 1).collect();
            // Cells of a row: some of each column's kind, some of another (a changed type),
            // some missing (a column added later).
            let versions: Vec<RowVersion> = rows
                .into_iter()
                .map(|(seq, deleted, vals)| RowVersion {
                    seq,
                    deleted,
                    cells: vals
                        .into_iter()
                        .zip(1..=kinds.len() as u32)
                        .filter(|(v, _)| !matches!(v, Value::Int(i) if i % 7 == 0))
                        .map(|(v, id)| (id, v))
                        .collect(),
                })
                .collect();
            let encoded: Vec<Box<[u8]>> = versions
                .iter()
                .map(|v| crate::codec::encode(v).into_boxed_slice())
                .collect();
            let ours = columns(&def, &projection, &encoded).expect("columns");
            let theirs = crate::convert::rows_columns(&def, &projection, &versions);
            prop_assert_eq!(ours, theirs);
            // Rows whose cells are of their columns' kinds (some NULL, some missing) take the
            // fast path, unless a kind has none.
            let matching: Vec<RowVersion> = versions
                .iter()
                .enumerate()
                .map(|(r, v)| RowVersion {
                    seq: v.seq,
                    deleted: v.deleted,
                    cells: kinds
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| (r + i) % 5 != 0)
                        .map(|(i, k)| {
                            let cell = if (r + i) % 3 == 0 { Value::Null } else { k.clone() };
                            (i as u32 + 1, cell)
                        })
                        .collect(),
                })
                .collect();
            let encoded_matching: Vec<Box<[u8]>> = matching
                .iter()
                .map(|v| crate::codec::encode(v).into_boxed_slice())
                .collect();
            let slow = kinds
                .iter()
                .any(|k| matches!(k, Value::Decimal { .. } | Value::Uuid(_) | Value::Embedding(_)));
            let fast = fast_columns(&def, &projection, &encoded_matching);
            prop_assert!(slow || fast.is_ok(), "cells of fast kinds are read in place");
            if let Ok(fast) = fast {
                prop_assert_eq!(fast, crate::convert::rows_columns(&def, &projection, &matching));
            }
            for (bytes, v) in encoded.iter().zip(&versions) {
                let mut ids = Vec::new();
                match decode_cells(bytes, |id, _| ids.push(id)) {
                    Ok(head) => {
                        prop_assert_eq!(head, (v.seq, v.deleted));
                        prop_assert_eq!(ids, v.cells.iter().map(|c| c.0).collect::<Vec<_>>());
                    }
                    Err(Unreadable) => {
                        let slow_kind = v.cells.iter().any(|(_, c)| {
                            matches!(c, Value::Decimal { .. } | Value::Uuid(_) | Value::Embedding(_))
                        });
                        prop_assert!(slow_kind, "only DECIMAL, UUID and EMBEDDING cells are slow");
                    }
                }
            }
        }
    }
}
