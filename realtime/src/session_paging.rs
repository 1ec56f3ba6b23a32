//! A subscription's initial data, a page at a time (see `session`): listed by key and read
//! by key, read by `_seq` for tables without a key, or, for a resume, the journal's changes
//! after its cursor.

use folddb_query::live::{LiveError, LiveQuery, RowAt, RowObject, SnapshotRow};
use folddb_query::{Caller, Engine};
use serde_json::{Value as Json, json};

use super::from_journal::journal_read;
use super::{Outgoing, Paging, Sub, applied};
use crate::message::{BatchControl, BatchStatus, ServerMessage};

/// Lists what `sub`'s initial data holds (rows newer than `after`) and sends its first
/// page.
pub(super) async fn start_paging(
    engine: &Engine,
    caller: &Caller,
    id: &str,
    sub: &mut Sub,
    after: Option<i64>,
) -> Result<(BatchControl, Vec<Outgoing>), LiveError> {
    sub.paging = Some(
        listing(engine, caller, sub, after)
            .await?
            .unwrap_or(Paging::Scan { after }),
    );
    page(engine, caller, id, sub).await
}

/// The next rows of `sub`'s initial data newer than `after` (at most its `listed_rows`), to
/// page by key (`None`: its table has no primary key).
pub(super) async fn listing(
    engine: &Engine,
    caller: &Caller,
    sub: &Sub,
    after: Option<i64>,
) -> Result<Option<Paging>, LiveError> {
    let listed = engine
        .live_keys(caller, &sub.query, after, sub.floor, sub.listed_rows + 1)
        .await?;
    Ok(listed.map(|mut keys| {
        let more = if keys.len() > sub.listed_rows {
            keys.truncate(sub.listed_rows);
            keys.last().map(|(_, seq)| *seq)
        } else {
            None
        };
        Paging::Keys {
            keys: keys.into(),
            more,
        }
    }))
}

/// Reads the next page of `sub`'s initial data and makes it the next
/// `initial_data_batch`.
pub(super) async fn page(
    engine: &Engine,
    caller: &Caller,
    id: &str,
    sub: &mut Sub,
) -> Result<(BatchControl, Vec<Outgoing>), LiveError> {
    let size = sub.batch_size;
    let rows = match sub.paging.take() {
        Some(Paging::Keys { mut keys, mut more }) => {
            // Rows changed since they were listed are skipped: read on until the page is
            // full or the list ends.
            let mut rows = Vec::new();
            while rows.len() < size {
                if keys.is_empty() {
                    let Some(after) = more else { break };
                    match listing(engine, caller, sub, Some(after)).await? {
                        Some(Paging::Keys { keys: k, more: m }) => (keys, more) = (k, m),
                        _ => break,
                    }
                    if keys.is_empty() {
                        break;
                    }
                }
                let n = (size - rows.len()).min(keys.len());
                let at: Vec<RowAt> = keys.drain(..n).collect();
                rows.extend(engine.live_rows_at(caller, &sub.query, &at).await?);
            }
            sub.paging =
                (!keys.is_empty() || more.is_some()).then_some(Paging::Keys { keys, more });
            rows
        }
        Some(Paging::Scan { after }) => {
            // One row more than a batch, to know if more follow.
            let mut rows = engine
                .live_page(
                    caller,
                    &sub.query,
                    after,
                    sub.floor,
                    size.saturating_add(1),
                    false,
                )
                .await?;
            if rows.len() > size {
                rows.truncate(size);
                let after = rows.last().map(|r| r.seq);
                sub.paging = Some(Paging::Scan { after });
            }
            rows
        }
        Some(Paging::Journal { after }) => {
            let read = journal_read(engine, &sub.query, after, Some(sub.floor), size)?;
            let told = sub.told(id, &read.events)?;
            // The last page's cursor is the boundary.
            let cursor = match read.last {
                Some(last) if !read.complete => {
                    sub.paging = Some(Paging::Journal { after: last });
                    last
                }
                _ => sub.floor,
            };
            return Ok(changes_batch(id, sub, told, cursor));
        }
        None => Vec::new(),
    };
    if sub.paging.is_none() && sub.tracks {
        sub.settle = Some(applied(engine));
    }
    Ok(batch(id, sub, rows))
}

/// An (empty) `initial_data_batch` after the change messages `told` of a resume's page,
/// with `cursor` as its `last_seq_id`: every change up to it has been sent.
pub(super) fn changes_batch(
    id: &str,
    sub: &mut Sub,
    told: Vec<Outgoing>,
    cursor: i64,
) -> (BatchControl, Vec<Outgoing>) {
    let (mut control, rest) = batch(id, sub, Vec::new());
    control.last_seq_id = Some(cursor);
    let mut out = told;
    for (k, m) in rest.into_iter().enumerate() {
        match m {
            Outgoing::Json(mut j) if k == 0 => {
                j["batch_control"]["last_seq_id"] = json!(cursor);
                out.push(Outgoing::Json(j));
            }
            m => out.push(m),
        }
    }
    (control, out)
}

/// The `initial_data_batch` of `rows` (and, after the last one, the deletes of a resume
/// and the changes held meanwhile), with its batch control: more follow while `sub` is
/// paging.
pub(super) fn batch(
    id: &str,
    sub: &mut Sub,
    rows: Vec<SnapshotRow>,
) -> (BatchControl, Vec<Outgoing>) {
    let has_more = sub.paging.is_some();
    let status = match (has_more, sub.batch_num) {
        (false, _) => BatchStatus::Ready,
        (true, 0) => BatchStatus::Loading,
        (true, _) => BatchStatus::LoadingBatch,
    };
    let last_seq_id = rows.iter().map(|r| r.seq).max();
    let control = BatchControl {
        batch_num: sub.batch_num,
        has_more,
        status,
        last_seq_id,
    };
    let mut objects = Vec::with_capacity(rows.len());
    for r in rows {
        sub.held.insert(r.key, r.seq);
        objects.push(r.row);
    }
    let msg = ServerMessage::InitialDataBatch {
        subscription_id: id.to_owned(),
        rows: objects,
        batch_control: control,
    };
    sub.batch_num += 1;
    let mut out = vec![Outgoing::Json(msg.into())];
    if !has_more {
        out.append(&mut sub.departed);
    }
    (control, out)
}

/// The whole row an update's delta form `new` tells of (it omits only null columns).
pub(super) fn whole(q: &LiveQuery, mut new: RowObject) -> RowObject {
    q.columns()
        .map(|(name, _)| {
            let v = new.remove(name).unwrap_or(Json::Null);
            (name.to_owned(), v)
        })
        .collect()
}
