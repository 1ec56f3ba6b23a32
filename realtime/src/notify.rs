//! What a batch of row changes means to one subscriber (API.md 2.4, DESIGN.md "Live path"):
//! the filter is evaluated on each change's old and new image (by the planned
//! [`LiveQuery`]); a row entering the filter is an insert, one leaving it a delete, one
//! staying in an update, told as a delta. Events of other tables and other owners mean
//! nothing to it.

use std::collections::HashMap;

use folddb_materializer::{RowEvent, RowVersion};
use folddb_query::live::{LiveQuery, RowObject};
use serde_json::Map;

/// What one row change means to one subscriber.
#[derive(Debug, Clone, PartialEq)]
pub enum Notification {
    Insert(RowObject),
    /// The delta form of API.md 2.4: `new` holds `_seq`, the key and every non-null column
    /// of the new version; `old` the old `_seq`, the key and the previous values of the
    /// columns that changed.
    Update {
        new: RowObject,
        old: RowObject,
    },
    Delete(RowObject),
}

/// The notifications `events` give `q`'s subscriber, in order.
pub fn notify(q: &LiveQuery, events: &[RowEvent]) -> crate::Result<Vec<Notification>> {
    let notes = notify_unseen(q, events, |_, _| false)?;
    Ok(notes.into_iter().map(|(_, _, n)| n).collect())
}

/// Like [`notify`], skipping events `seen(key, new _seq)` says the initial data already
/// reflects (the hand-off from snapshot to live changes); each notification comes with its
/// row's key, as `SnapshotRow::key` spells it, and the `_seq` of the version it tells of.
pub fn notify_unseen(
    q: &LiveQuery,
    events: &[RowEvent],
    seen: impl Fn(&str, i64) -> bool,
) -> crate::Result<Vec<(String, i64, Notification)>> {
    let mine: Vec<&RowEvent> = events
        .iter()
        .filter(|e| e.table == q.def.id && e.scope == q.scope)
        .filter(|e| match &e.new {
            Some(v) => !seen(&q.key_of(e), v.seq),
            None => true,
        })
        .collect();
    if mine.is_empty() {
        return Ok(Vec::new());
    }
    // Live images (not tombstones), old ones first, in one batch for one evaluation.
    let live = |v: &Option<RowVersion>| v.as_ref().filter(|v| !v.deleted).cloned();
    let olds: Vec<Option<RowVersion>> = mine.iter().map(|e| live(&e.old)).collect();
    let news: Vec<Option<RowVersion>> = mine.iter().map(|e| live(&e.new)).collect();
    let images: Vec<RowVersion> = olds.iter().chain(&news).flatten().cloned().collect();
    let batch = q.images(&images).map_err(conversion)?;
    let pass = q.passes(&batch).map_err(conversion)?;
    let cols = q.project(&batch).map_err(conversion)?;
    let object = |r| q.object(&cols, r).map_err(conversion);
    let mut at = HashMap::new();
    let mut next = 0;
    for (k, img) in olds.iter().chain(&news).enumerate() {
        if img.is_some() {
            at.insert(k, next);
            next += 1;
        }
    }
    let n = mine.len();
    let mut out = Vec::new();
    for (k, event) in mine.iter().enumerate() {
        let old = at.get(&k).copied().filter(|&r| pass[r]);
        let new = at.get(&(n + k)).copied().filter(|&r| pass[r]);
        let note = match (old, new) {
            (None, Some(r)) => Notification::Insert(object(r)?),
            (Some(r), None) => {
                let mut row = object(r)?;
                if let Some(v) = &event.new {
                    stamp(&mut row, v);
                }
                Notification::Delete(row)
            }
            (Some(o), Some(r)) => delta(q, &object(o)?, &object(r)?),
            (None, None) => continue,
        };
        let seq = event
            .new
            .as_ref()
            .or(event.old.as_ref())
            .map_or(0, |v| v.seq);
        out.push((q.key_of(event), seq, note));
    }
    Ok(out)
}

/// A delete's row as API.md 2.4 tells it: the old values, stamped with the `_seq` of the
/// version that removed the row from the view (newer than any the subscriber has seen of
/// it: clients drop a change that is not) and, for a tombstone, `_deleted: true`.
fn stamp(row: &mut RowObject, removed_by: &RowVersion) {
    if let Some(seq) = row.get_mut("_seq") {
        *seq = serde_json::Value::String(removed_by.seq.to_string());
    }
    if let Some(deleted) = row.get_mut("_deleted") {
        *deleted = serde_json::Value::Bool(removed_by.deleted);
    }
}

fn conversion(reason: String) -> crate::Error {
    crate::Error::Conversion { reason }
}

/// An update as a delta: the new image's key, `_seq` and non-null columns; the old image's
/// key, `_seq` and the columns whose value changed. Columns starting with `_` are told only
/// when they identify the row.
fn delta(q: &LiveQuery, before: &RowObject, after: &RowObject) -> Notification {
    let mut new = Map::new();
    let mut old = Map::new();
    for (name, identifies) in q.columns() {
        let (b, a) = (&before[name], &after[name]);
        if identifies || (!a.is_null() && !name.starts_with('_')) {
            new.insert(name.to_owned(), a.clone());
        }
        if identifies || (b != a && !name.starts_with('_')) {
            old.insert(name.to_owned(), b.clone());
        }
    }
    Notification::Update { new, old }
}

/// A row the subscriber holds, changed while it was not being told (catch-up after lag):
/// an update whose new image is the whole row and whose old image only names it, since the
/// versions in between were not kept.
pub fn whole_update(q: &LiveQuery, row: RowObject) -> Notification {
    let mut old = Map::new();
    for name in q.key_columns() {
        if let Some(v) = row.get(name) {
            old.insert(name.to_owned(), v.clone());
        }
    }
    Notification::Update { new: row, old }
}

/// The newest `_seq` among `events` of `q`'s table and owner.
pub fn newest_seq(q: &LiveQuery, events: &[RowEvent]) -> Option<i64> {
    events
        .iter()
        .filter(|e| e.table == q.def.id && e.scope == q.scope)
        .filter_map(|e| e.new.as_ref().or(e.old.as_ref()).map(|v| v.seq))
        .max()
}

#[cfg(test)]
#[path = "notify_test.rs"]
mod tests;
