//! Row versions in the hot tier's `rows` family: the key layout (table, owner, primary key,
//! all order-preserving) and the stored version (`_seq`, `_deleted`, cells by column id).
//! Normative: `materializer/FORMAT.md`, "rows".

use serde::{Deserialize, Serialize};

use crate::catalog::TableId;
use crate::value::Value;

/// The newest version of one row. Cells are keyed by column id, so a row written under an
/// older schema version reads correctly under a newer one (renamed columns keep their id;
/// dropped ones are ignored; added ones read as their literal default or NULL).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RowVersion {
    pub seq: i64,
    pub deleted: bool,
    pub cells: Vec<(u32, Value)>,
}

impl RowVersion {
    /// The `_seq` and `_deleted` of the encoded row version `bytes` (its first two fields),
    /// without decoding its cells.
    pub fn head_of(bytes: &[u8]) -> crate::Result<VersionHead> {
        crate::codec::decode_head::<VersionHead>(bytes, "a row version's _seq and _deleted")
    }

    pub fn cell(&self, column_id: u32) -> Option<&Value> {
        self.cells
            .iter()
            .find(|(id, _)| *id == column_id)
            .map(|(_, v)| v)
    }
}

/// The first fields of a [`RowVersion`], read without its cells ([`RowVersion::head_of`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct VersionHead {
    pub seq: i64,
    pub deleted: bool,
}

/// A value of the cold tier's key index (`cold_keys`): the `_seq` of the key's newest flushed
/// version, i64 big-endian.
pub fn encode_indexed_seq(seq: i64) -> Vec<u8> {
    seq.to_be_bytes().to_vec()
}

/// The `_seq` a value of the cold tier's key index holds.
pub fn decode_indexed_seq(bytes: &[u8]) -> crate::Result<i64> {
    <[u8; 8]>::try_from(bytes)
        .map(i64::from_be_bytes)
        .map_err(|_| crate::Error::Decode {
            what: "a cold key index entry",
            reason: format!("{} bytes, expected 8", bytes.len()),
        })
}

/// Meta key: `table` keeps counts of its visible rows (set at CREATE TABLE by builds that
/// count; a table without it, created earlier, has no counts).
pub fn counted_key(table: TableId) -> Vec<u8> {
    [&b"counted/"[..], &table.0.to_be_bytes()].concat()
}

/// Meta key: the number of visible rows (live keys, hot or cold) of `table` owned by `scope`,
/// u64 big-endian; absent is 0.
pub fn count_key(table: TableId, scope: &str) -> Vec<u8> {
    [&count_prefix(table)[..], scope.as_bytes()].concat()
}

/// The prefix of every count key of `table`.
pub fn count_prefix(table: TableId) -> Vec<u8> {
    [&b"count/"[..], &table.0.to_be_bytes()].concat()
}

/// The number of visible rows of `table` owned by `scope`, when the table keeps counts.
pub fn visible_rows(
    state: &dyn crate::catalog::StateRead,
    table: TableId,
    scope: &str,
) -> crate::Result<Option<u64>> {
    if state
        .get(crate::hot::Family::Meta, &counted_key(table))?
        .is_none()
    {
        return Ok(None);
    }
    let count = state.get(crate::hot::Family::Meta, &count_key(table, scope))?;
    Ok(Some(count.map_or(Ok(0), |b| decode_count(&b))?))
}

/// A count key's value.
pub fn decode_count(bytes: &[u8]) -> crate::Result<u64> {
    <[u8; 8]>::try_from(bytes)
        .map(u64::from_be_bytes)
        .map_err(|_| crate::Error::Decode {
            what: "a row count",
            reason: format!("{} bytes, expected 8", bytes.len()),
        })
}

/// The prefix of every row of `table` (all owners).
pub fn table_prefix(table: TableId) -> Vec<u8> {
    table.0.to_be_bytes().to_vec()
}

/// The prefix of the rows of `table` owned by `scope` (the owner's user id for USER and
/// STREAM tables, empty for SHARED tables).
pub fn scope_prefix(table: TableId, scope: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(10 + scope.len() + 16);
    key.extend_from_slice(&table.0.to_be_bytes());
    // Scopes are user ids (at most 128 bytes, API.md 1.3); the length keeps one owner's
    // prefix from being a prefix of another's.
    key.extend_from_slice(&(scope.len() as u16).to_be_bytes());
    key.extend_from_slice(scope.as_bytes());
    key
}

/// The key of the row of `table`, owned by `scope`, with primary key `pk`.
pub fn row_key(table: TableId, scope: &str, pk: &Value) -> Vec<u8> {
    let mut key = scope_prefix(table, scope);
    encode_key_part(pk, &mut key);
    key
}

/// Appends `value` so that byte order is value order within one type: integers big-endian
/// with the sign bit flipped, floats by their total order, text and bytes as they are (the
/// primary key is the key's last part, so it needs no terminator).
pub fn encode_key_part(value: &Value, out: &mut Vec<u8>) {
    const I16: u16 = 1 << 15;
    const I32: u32 = 1 << 31;
    const I64: u64 = 1 << 63;
    match value {
        Value::Null => {}
        Value::Boolean(b) => out.push(u8::from(*b)),
        Value::SmallInt(v) => out.extend_from_slice(&((*v as u16) ^ I16).to_be_bytes()),
        Value::Int(v) | Value::Date(v) => out.extend_from_slice(&((*v as u32) ^ I32).to_be_bytes()),
        Value::BigInt(v) | Value::Timestamp(v) | Value::DateTime(v) | Value::Time(v) => {
            out.extend_from_slice(&((*v as u64) ^ I64).to_be_bytes())
        }
        Value::Float(f) => {
            let bits = f.to_bits();
            let ordered = if bits >> 31 == 1 {
                !bits
            } else {
                bits | (1 << 31)
            };
            out.extend_from_slice(&ordered.to_be_bytes())
        }
        Value::Double(f) => {
            let bits = f.to_bits();
            let ordered = if bits >> 63 == 1 { !bits } else { bits | I64 };
            out.extend_from_slice(&ordered.to_be_bytes())
        }
        Value::Decimal { unscaled, .. } => {
            out.extend_from_slice(&((*unscaled as u128) ^ (1u128 << 127)).to_be_bytes())
        }
        Value::Text(s) | Value::Json(s) | Value::File(s) => out.extend_from_slice(s.as_bytes()),
        Value::Bytes(b) => out.extend_from_slice(b),
        Value::Uuid(u) => out.extend_from_slice(u),
        Value::Embedding(v) => {
            for f in v {
                out.extend_from_slice(&f.to_be_bytes());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(v: Value) -> Vec<u8> {
        let mut out = Vec::new();
        encode_key_part(&v, &mut out);
        out
    }

    proptest! {
        #[test]
        fn bigint_keys_sort_like_values(a: i64, b: i64) {
            prop_assert_eq!(a.cmp(&b), key(Value::BigInt(a)).cmp(&key(Value::BigInt(b))));
        }

        #[test]
        fn int_keys_sort_like_values(a: i32, b: i32) {
            prop_assert_eq!(a.cmp(&b), key(Value::Int(a)).cmp(&key(Value::Int(b))));
        }

        #[test]
        fn double_keys_sort_like_values(a in -1e300f64..1e300, b in -1e300f64..1e300) {
            prop_assert_eq!(
                a.partial_cmp(&b).expect("finite"),
                key(Value::Double(a)).cmp(&key(Value::Double(b)))
            );
        }
    }

    #[test]
    fn one_owner_prefix_is_not_a_prefix_of_another() {
        let a = scope_prefix(TableId(1), "al");
        let b = row_key(TableId(1), "alice", &Value::BigInt(1));
        assert!(!b.starts_with(&a));
        assert!(b.starts_with(&scope_prefix(TableId(1), "alice")));
    }
}

/// One row changed by an applied command, with its images before and after: what live
/// queries evaluate their filters on (DESIGN.md "Live path"). `old` is `None` for a fresh
/// insert (or over a tombstone, it is the tombstone); `new` is `None` for a physical delete;
/// a soft delete's `new` is the tombstone version.
#[derive(Debug, Clone, PartialEq)]
pub struct RowEvent {
    pub table: crate::catalog::TableId,
    /// The owner of a USER or STREAM row; empty for SHARED tables.
    pub scope: String,
    pub pk: Value,
    pub old: Option<RowVersion>,
    pub new: Option<RowVersion>,
}

/// The row changes of one applied log entry, in the order they were made.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeSet {
    pub index: folddb_log::LogIndex,
    pub events: Vec<RowEvent>,
    /// The whole state was replaced, applied through `index` (a raft snapshot installed):
    /// the changes are not listed, and every receiver catches up from the journal.
    pub replaced: bool,
}
