//! The change journal (DESIGN.md "Journal"): every row change the fold applies — table,
//! owner, log index, `_seq`, operation, old and new image — recorded in column family
//! `journal`, in the same batch as the entry's applied mark, so the journal holds exactly the
//! changes of the entries applied. Two orders are range reads:
//!
//! - log order, from any log index: key `e` + index (u64 BE) + ordinal (u32 BE) → the change;
//! - one table (and owner) from any `_seq`: key `t` + table id (u64 BE) + owner length
//!   (u16 BE) + owner (UTF-8) + position (u64 BE `_seq`, then u32 BE) → the change's `e` key.
//!   A change that writes a version is at (its `_seq`, 0); a physical delete, which writes
//!   none, follows the last `_seq` assigned before it: (that `_seq`, 1 + its ordinal). So
//!   "the changes after `_seq` s" start at (s, 1): a version at s is the cursor's own, a
//!   delete after it is not.
//!
//! `materializer/FORMAT.md` ("`journal`") is normative.

use serde::{Deserialize, Serialize};

use crate::catalog::TableId;
use crate::error::Result;
use crate::hot::{Family, HotBatch, HotStore};
use crate::row::{RowEvent, RowVersion};
use crate::seq::Seq;
use crate::value::Value;
use crate::{LogIndex, codec};

/// Meta key: the first log index the journal holds changes of (u64 BE). Absent: 1, every
/// entry. A store upgraded to layout 4 starts its journal after the entries it had applied.
pub const HORIZON_KEY: &[u8] = b"journal_horizon";
/// Meta key: the newest `_seq` of a change before the horizon (u64 BE): a cursor at or
/// after it misses nothing the journal removed. Absent: no change was ever removed.
pub const HORIZON_SEQ_KEY: &[u8] = b"journal_horizon_seq";

const BY_INDEX: u8 = b'e';
const BY_TABLE: u8 = b't';
const CATALOG: u8 = b'd';

/// The ordinal of an entry's first catalog change: after any row change's.
pub const CATALOG_ORDINAL: u32 = 1 << 31;

/// What a change did to its row, as a reader of the table sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChangeOp {
    /// The key had no visible version (none, or a tombstone) and now has one.
    Insert,
    /// A visible version replaced by another.
    Update,
    /// The key's visible version removed: a tombstone written, or the key deleted.
    Delete,
}

/// One row change of the journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub index: u64,
    /// Its place among the changes of its entry, from 0.
    pub ordinal: u32,
    pub table: TableId,
    /// The owner of a USER or STREAM row; empty for SHARED tables.
    pub scope: String,
    pub pk: Value,
    pub op: ChangeOp,
    /// The `_seq` of the version written; for a physical delete, the last `_seq` assigned
    /// before it.
    pub seq: i64,
    pub old: Option<RowVersion>,
    pub new: Option<RowVersion>,
}

impl Change {
    /// The change as the fold reported it.
    pub fn into_event(self) -> RowEvent {
        RowEvent {
            table: self.table,
            scope: self.scope,
            pk: self.pk,
            old: self.old,
            new: self.new,
        }
    }

    /// Its place among its table scope's changes: `(_seq, 0)` for a change that writes a
    /// version, `(the last _seq before it, 1 + ordinal)` for a physical delete.
    pub fn scope_position(&self) -> (i64, u32) {
        match self.new {
            Some(_) => (self.seq, 0),
            None => (self.seq, self.ordinal.saturating_add(1)),
        }
    }

    /// When the change was written: the time its `_seq` encodes (milliseconds since the Unix
    /// epoch).
    pub fn unix_ms(&self) -> u64 {
        Seq(self.seq).unix_ms()
    }
}

/// A change to the catalog or to the users, as privileged tails see it (no secrets: a user
/// change names the user and its role, never its password hash).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CatalogChange {
    pub index: u64,
    /// From [`CATALOG_ORDINAL`] on, in the order made within the entry.
    pub ordinal: u32,
    /// The last `_seq` assigned when it was made.
    pub seq: i64,
    /// Who made it, and when (Unix milliseconds, the command's stamp).
    pub actor: String,
    pub stamp_ms: u64,
    /// `create_namespace`, `alter_namespace`, `drop_namespace`, `create_table`,
    /// `alter_table`, `drop_table`, `create_user`, `alter_user`, `drop_user`, `setup`,
    /// `create_storage`, `alter_storage`, `drop_storage`.
    pub kind: String,
    /// What it changed: `namespace`, `namespace.table`, a user or storage id.
    pub target: String,
    pub detail: Option<String>,
}

/// One record of the journal in log order.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Row(Change),
    Catalog(CatalogChange),
}

impl Record {
    pub fn position(&self) -> (u64, u32) {
        match self {
            Record::Row(c) => (c.index, c.ordinal),
            Record::Catalog(c) => (c.index, c.ordinal),
        }
    }
}

/// What catalog or user change `op` of an applied command is (`None`: a row op, or one
/// that changed nothing); its kind, target and detail.
pub(crate) fn catalog_change(op: &crate::Op) -> Option<(&'static str, String, Option<String>)> {
    use crate::Op;
    Some(match op {
        Op::CreateNamespace { name, .. } => ("create_namespace", name.clone(), None),
        Op::AlterNamespace { name, .. } => ("alter_namespace", name.clone(), None),
        Op::DropNamespace { name, .. } => ("drop_namespace", name.clone(), None),
        Op::CreateTable { table, .. } => (
            "create_table",
            table.qualified_name(),
            Some(table.kind.name().to_owned()),
        ),
        Op::AlterTable { table, .. } => (
            "alter_table",
            table.qualified_name(),
            Some(table.change.clone()),
        ),
        Op::DropTable {
            namespace, name, ..
        } => ("drop_table", format!("{namespace}.{name}"), None),
        Op::PutUser { user, create } => (
            match (create, user.deleted_at_ms.is_some()) {
                (true, _) => "create_user",
                (false, true) => "drop_user",
                (false, false) => "alter_user",
            },
            user.id.clone(),
            Some(user.role.name().to_owned()),
        ),
        Op::Setup { dba, .. } => ("setup", dba.id.clone(), None),
        Op::CreateStorage { storage, .. } => ("create_storage", storage.id.clone(), None),
        Op::AlterStorage { storage } => ("alter_storage", storage.id.clone(), None),
        Op::DropStorage { id, .. } => ("drop_storage", id.clone(), None),
        Op::CreateVectorIndex {
            namespace,
            table,
            column,
            metric,
        } => (
            "create_vector_index",
            format!("{namespace}.{table}"),
            Some(format!("{column} USING {}", metric.name())),
        ),
        Op::DropVectorIndex {
            namespace,
            table,
            column,
        } => (
            "drop_vector_index",
            format!("{namespace}.{table}"),
            Some(column.clone()),
        ),
        _ => return None,
    })
}

/// Records the catalog changes of entry `index` into `batch`.
pub(crate) fn record_catalog(batch: &mut HotBatch, changes: &[CatalogChange]) {
    for c in changes {
        batch.append(
            Family::Journal,
            catalog_key(c.index, c.ordinal),
            codec::encode(c),
        );
    }
}

fn catalog_key(index: u64, ordinal: u32) -> Vec<u8> {
    let mut k = index_key(index, ordinal);
    k[0] = CATALOG;
    k
}

/// A [`Change`] as written, borrowing the event's images (the same encoding).
#[derive(Serialize)]
struct ChangeRef<'a> {
    index: u64,
    ordinal: u32,
    table: TableId,
    scope: &'a str,
    pk: &'a Value,
    op: ChangeOp,
    seq: i64,
    old: &'a Option<RowVersion>,
    new: &'a Option<RowVersion>,
}

fn visible(v: &Option<RowVersion>) -> bool {
    v.as_ref().is_some_and(|v| !v.deleted)
}

fn op_of(event: &RowEvent) -> ChangeOp {
    match (visible(&event.old), visible(&event.new)) {
        (false, true) => ChangeOp::Insert,
        (true, true) => ChangeOp::Update,
        _ => ChangeOp::Delete,
    }
}

fn index_key(index: u64, ordinal: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(13);
    k.push(BY_INDEX);
    k.extend_from_slice(&index.to_be_bytes());
    k.extend_from_slice(&ordinal.to_be_bytes());
    k
}

/// `t` + table + owner: the prefix of one table scope's changes.
fn scope_prefix(table: TableId, scope: &str) -> Vec<u8> {
    let owner = scope.as_bytes();
    let len = u16::try_from(owner.len()).unwrap_or(u16::MAX);
    let mut k = Vec::with_capacity(11 + owner.len() + 12);
    k.push(BY_TABLE);
    k.extend_from_slice(&table.0.to_be_bytes());
    k.extend_from_slice(&len.to_be_bytes());
    k.extend_from_slice(&owner[..usize::from(len)]);
    k
}

fn scope_key(table: TableId, scope: &str, seq: i64, sub: u32) -> Vec<u8> {
    let mut k = scope_prefix(table, scope);
    k.extend_from_slice(&(seq.max(0) as u64).to_be_bytes());
    k.extend_from_slice(&sub.to_be_bytes());
    k
}

/// Records `events`, the row changes of entry `index` in the order made, into `batch`.
/// `last_seq` is the last `_seq` assigned before the entry.
pub(crate) fn record<'e>(
    batch: &mut HotBatch,
    index: LogIndex,
    last_seq: Option<i64>,
    events: impl IntoIterator<Item = &'e RowEvent>,
) {
    let mut last = last_seq.unwrap_or(0);
    for (ordinal, event) in events.into_iter().enumerate() {
        let ordinal = u32::try_from(ordinal).unwrap_or(u32::MAX);
        let (seq, sub) = match &event.new {
            Some(v) => {
                last = last.max(v.seq);
                (v.seq, 0)
            }
            None => (last, ordinal.saturating_add(1)),
        };
        let change = ChangeRef {
            index: index.0,
            ordinal,
            table: event.table,
            scope: &event.scope,
            pk: &event.pk,
            op: op_of(event),
            seq,
            old: &event.old,
            new: &event.new,
        };
        let key = index_key(index.0, ordinal);
        batch.append(
            Family::Journal,
            scope_key(event.table, &event.scope, seq, sub),
            key.clone(),
        );
        batch.append(Family::Journal, key, codec::encode(&change));
    }
}

/// The first log index whose changes the journal holds.
pub fn horizon(store: &HotStore) -> Result<u64> {
    Ok(store
        .get(Family::Meta, HORIZON_KEY)?
        .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
        .map_or(1, u64::from_be_bytes))
}

/// The newest `_seq` of a change the journal no longer holds (see [`HORIZON_SEQ_KEY`]):
/// reading the changes after a cursor older than it would leave a gap.
pub fn horizon_seq(store: &HotStore) -> Result<Option<i64>> {
    Ok(store
        .get(Family::Meta, HORIZON_SEQ_KEY)?
        .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
        .map(|b| u64::from_be_bytes(b) as i64))
}

fn decode(bytes: &[u8]) -> Result<Change> {
    codec::decode(bytes, "a journal change")
}

/// Up to `limit` changes of entries after log index `after`, in log order.
pub fn after_index(store: &HotStore, after: u64, limit: usize) -> Result<Vec<Change>> {
    from_position(store, after.saturating_add(1), 0, limit)
}

/// Up to `limit` changes from change `ordinal` of entry `index` on, in log order.
pub fn from_position(
    store: &HotStore,
    index: u64,
    ordinal: u32,
    limit: usize,
) -> Result<Vec<Change>> {
    let start = index_key(index, ordinal);
    store
        .scan_range(Family::Journal, &start, &[BY_INDEX], limit)?
        .iter()
        .map(|(_, v)| decode(v))
        .collect()
}

/// Up to `limit` records — row changes and catalog changes — from position (`index`,
/// `ordinal`) on, in log order.
pub fn records_from(
    store: &HotStore,
    index: u64,
    ordinal: u32,
    limit: usize,
) -> Result<Vec<Record>> {
    let rows = from_position(store, index, ordinal, limit)?;
    let catalog = store.scan_range(
        Family::Journal,
        &catalog_key(index, ordinal),
        &[CATALOG],
        limit,
    )?;
    let mut catalog = catalog
        .iter()
        .map(|(_, v)| codec::decode::<CatalogChange>(v, "a journal catalog change"))
        .peekable();
    let mut rows = rows.into_iter().peekable();
    let mut out = Vec::with_capacity(limit.min(rows.len() + 16));
    while out.len() < limit {
        let row_first = match (rows.peek(), catalog.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(r), Some(Ok(c))) => (r.index, r.ordinal) < (c.index, c.ordinal),
            (Some(_), Some(Err(_))) => false,
        };
        match row_first {
            true => out.extend(rows.next().map(Record::Row)),
            false => {
                if let Some(c) = catalog.next() {
                    out.push(Record::Catalog(c?));
                }
            }
        }
    }
    Ok(out)
}

/// The first log index, at or after the horizon and at most `end`, from which every change
/// the journal holds with a `_seq` above `seq` is read (earlier entries' are all at or below
/// it; the entry at it may hold some of both). A binary search: `_seq`s grow with the index.
pub fn index_for_seq(store: &HotStore, seq: i64, end: u64) -> Result<u64> {
    let (mut lo, mut hi) = (horizon(store)?, end.max(1));
    // The smallest index whose first change from it on is above `seq` (or has none).
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match from_position(store, mid, 0, 1)?.first() {
            Some(c) if c.seq <= seq => lo = mid + 1,
            _ => hi = mid,
        }
    }
    // The entry before it may have changes above `seq` after one at or below it.
    Ok(lo.saturating_sub(1).max(horizon(store)?))
}

/// Up to `limit` changes of `table`'s `scope` after `_seq` `after`, in log order.
pub fn after_seq(
    store: &HotStore,
    table: TableId,
    scope: &str,
    after: i64,
    limit: usize,
) -> Result<Vec<Change>> {
    after_position(store, table, scope, (after, 0), limit)
}

/// Up to `limit` changes of `table`'s `scope` after the change at `position` (what
/// [`Change::scope_position`] gives; `(s, 0)`: after `_seq` `s`), in log order.
pub fn after_position(
    store: &HotStore,
    table: TableId,
    scope: &str,
    position: (i64, u32),
    limit: usize,
) -> Result<Vec<Change>> {
    let prefix = scope_prefix(table, scope);
    let start = scope_key(table, scope, position.0, position.1.saturating_add(1));
    let mut out = Vec::new();
    for (_, at) in store.scan_range(Family::Journal, &start, &prefix, limit)? {
        // A pointer without its change is a damaged store, not an empty answer.
        let bytes = store
            .get(Family::Journal, &at)?
            .ok_or_else(|| crate::Error::Decode {
                what: "a journal change",
                reason: "a table's change points at no change".into(),
            })?;
        out.push(decode(&bytes)?);
    }
    Ok(out)
}

/// Changes one trim reads at a time (an entry with more is read whole).
#[cfg(not(test))]
const TRIM_BATCH: usize = 10_000;
#[cfg(test)]
const TRIM_BATCH: usize = 3;

/// Removes the changes of the entries written before `cutoff_unix_ms`, whole entries at a
/// time, and moves the horizon past them: what the retention job runs. Returns how many
/// changes it removed.
///
/// Not an entry of the log: the journal is a window of it, and each node keeps its own.
/// Each write deletes its changes and sets the horizon together, so a reader sees a
/// horizon and the changes after it, never a gap.
pub fn trim(store: &HotStore, cutoff_unix_ms: u64) -> Result<usize> {
    trim_entries(store, |first| first.unix_ms() >= cutoff_unix_ms)
}

/// Removes the oldest entries' changes until the journal holds about `max_bytes` (RocksDB's
/// estimate of the family's size; the entries removed are the oldest share of the window as
/// large as the share of bytes over the limit). Returns how many changes it removed.
pub fn trim_to_bytes(store: &HotStore, max_bytes: u64) -> Result<usize> {
    let size = store.family_bytes(Family::Journal)?;
    if size <= max_bytes {
        return Ok(0);
    }
    let first = horizon(store)?;
    let Some(last) = store.applied_index()?.map(|i| i.0) else {
        return Ok(0);
    };
    if last < first {
        return Ok(0);
    }
    let span = last + 1 - first;
    let over = (size - max_bytes) as f64 / size as f64;
    let through = first + ((span as f64 * over).ceil() as u64).clamp(1, span) - 1;
    trim_entries(store, |c| c.index > through)
}

/// Removes whole entries' changes from the horizon on, while `keep` says no of the first
/// change of the next entry, and moves the horizon past them.
fn trim_entries(store: &HotStore, keep: impl Fn(&Change) -> bool) -> Result<usize> {
    let mut removed = 0;
    let mut newest = horizon_seq(store)?;
    loop {
        let start = index_key(horizon(store)?, 0);
        let rows = store.scan_range(Family::Journal, &start, &[BY_INDEX], TRIM_BATCH)?;
        let mut batch = HotBatch::default();
        let mut last: Option<u64> = None;
        let mut done = rows.len() < TRIM_BATCH;
        let mut at = 0;
        while at < rows.len() {
            let first = decode(&rows[at].1)?;
            if keep(&first) {
                done = true;
                break;
            }
            let index = first.index;
            let end = rows[at..]
                .iter()
                .position(|(k, _)| !k.starts_with(&index_key(index, 0)[..9]))
                .map_or(rows.len(), |n| at + n);
            // An entry the read may have cut is read whole.
            let whole;
            let entry = if end == rows.len() && !done {
                whole = store.scan_range(
                    Family::Journal,
                    &index_key(index, 0),
                    &index_key(index, 0)[..9],
                    usize::MAX,
                )?;
                &whole[..]
            } else {
                &rows[at..end]
            };
            for (key, value) in entry {
                let change = decode(value)?;
                batch.delete(
                    Family::Journal,
                    scope_key(change.table, &change.scope, change.seq, sub_of(&change)),
                );
                batch.delete(Family::Journal, key.clone());
                newest = newest.max(Some(change.seq));
                removed += 1;
            }
            last = Some(index);
            at = end;
        }
        let Some(last) = last else {
            return Ok(removed);
        };
        // The catalog changes of the entries before the new horizon go with them.
        for (key, _) in
            store.scan_range(Family::Journal, &catalog_key(0, 0), &[CATALOG], usize::MAX)?
        {
            if key
                .get(1..9)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_be_bytes)
                > Some(last)
            {
                break;
            }
            batch.delete(Family::Journal, key);
        }
        batch.put(Family::Meta, HORIZON_KEY, (last + 1).to_be_bytes());
        if let Some(seq) = newest {
            batch.put(
                Family::Meta,
                HORIZON_SEQ_KEY,
                (seq.max(0) as u64).to_be_bytes(),
            );
        }
        store.write_window(batch)?;
        if done {
            return Ok(removed);
        }
    }
}

/// The `sub` of a change's position (see the module's doc).
fn sub_of(change: &Change) -> u32 {
    match change.new {
        Some(_) => 0,
        None => change.ordinal.saturating_add(1),
    }
}

#[cfg(test)]
#[path = "journal_test.rs"]
mod tests;
