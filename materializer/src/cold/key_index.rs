//! A segment's primary keys, sorted, with the row each is at: how a point read finds its
//! row, and how a scan merges segments in key order.

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType as ArrowType, Int32Type, Int64Type};

use super::{ColdError, Loc, Segment, fail, read_batches, scan};
use crate::convert::arrow_to_value;
use crate::row::encode_key_part;
use crate::value::Value;

/// The keys of one segment (or of a scope's cached hot rows), sorted, with the row each is
/// at.
#[derive(Debug, Default)]
pub(crate) struct KeyIndex {
    pub(super) keys: Vec<u8>,
    /// End offset in `keys` of each row's key.
    pub(super) ends: Vec<u32>,
    /// Rows, by key.
    pub(super) order: Vec<u32>,
    /// Whether the rows are in key order (`order` is `0, 1, 2, …`).
    pub(super) sorted: bool,
}

impl KeyIndex {
    /// Keys already in order: `ends[r]` is the end offset in `keys` of row `r`'s.
    pub(crate) fn in_order(keys: Vec<u8>, ends: Vec<u32>) -> KeyIndex {
        KeyIndex {
            order: (0..ends.len() as u32).collect(),
            keys,
            ends,
            sorted: true,
        }
    }

    /// Bytes held.
    pub(crate) fn size(&self) -> usize {
        self.keys.capacity() + 4 * (self.ends.capacity() + self.order.capacity())
    }

    /// The positions in key order where `range` starts and ends.
    pub(crate) fn bounds(&self, range: &scan::KeyRange) -> (usize, usize) {
        let position = |bound: &Option<Vec<u8>>, none: usize| match bound {
            Some(b) => self
                .order
                .partition_point(|&r| self.key(r as usize) < b.as_slice()),
            None => none,
        };
        let (start, end) = (position(&range.from, 0), position(&range.to, self.rows()));
        (start, end.max(start))
    }

    /// The key at `position` in key order.
    pub(crate) fn key_at(&self, position: usize) -> &[u8] {
        self.key(self.order[position] as usize)
    }

    pub(crate) fn key(&self, row: usize) -> &[u8] {
        let start = if row == 0 {
            0
        } else {
            self.ends[row - 1] as usize
        };
        &self.keys[start..self.ends[row] as usize]
    }

    /// The row holding `key`.
    pub(super) fn find(&self, key: &[u8]) -> Option<usize> {
        self.order
            .binary_search_by(|&r| self.key(r as usize).cmp(key))
            .ok()
            .map(|i| self.order[i] as usize)
    }

    pub(crate) fn rows(&self) -> usize {
        self.ends.len()
    }

    pub(super) fn sorted(&self) -> bool {
        self.sorted
    }

    pub(super) fn build(dir: &Loc, seg: &Segment, pk: Option<u32>) -> Result<KeyIndex, ColdError> {
        let meta = &seg.meta;
        let path = dir.locate(&meta.file);
        let (pos, column) = meta
            .columns
            .iter()
            .enumerate()
            .find(|(_, c)| Some(c.id) == pk)
            .ok_or_else(|| fail(&path)("holds no primary-key column".into()))?;
        let mut index = KeyIndex::default();
        for batch in read_batches(dir, seg, Some(&[pos]), None)? {
            let col = batch.column(0);
            for r in 0..col.len() {
                match col.data_type() {
                    ArrowType::Int64 if col.is_valid(r) => encode_key_part(
                        &Value::BigInt(col.as_primitive::<Int64Type>().value(r)),
                        &mut index.keys,
                    ),
                    ArrowType::Int32 if col.is_valid(r) => encode_key_part(
                        &Value::Int(col.as_primitive::<Int32Type>().value(r)),
                        &mut index.keys,
                    ),
                    ArrowType::Utf8 if col.is_valid(r) => index
                        .keys
                        .extend_from_slice(col.as_string::<i32>().value(r).as_bytes()),
                    _ => {
                        let v = arrow_to_value(col.as_ref(), r, column.data_type)
                            .map_err(fail(&path))?;
                        encode_key_part(&v, &mut index.keys);
                    }
                }
                index.ends.push(index.keys.len() as u32);
            }
        }
        let mut order: Vec<u32> = (0..index.ends.len() as u32).collect();
        index.sorted = order
            .windows(2)
            .all(|w| index.key(w[0] as usize) <= index.key(w[1] as usize));
        if !index.sorted {
            order.sort_by(|a, b| index.key(*a as usize).cmp(index.key(*b as usize)));
        }
        index.order = order;
        Ok(index)
    }
}
