//! What a subscription reads from the change journal (DESIGN.md, "Live path"): the changes
//! after a cursor, for a resume and for a catch-up; and whether a cursor is one it can serve.

use folddb_materializer::{RowEvent, journal};
use folddb_query::Engine;
use folddb_query::live::{LiveError, LiveQuery};

use super::{Outgoing, Sub};

/// A resume cursor is usable: not newer than `newest` (the newest `_seq` applied), and
/// not older than the journal's horizon (changes after it may have been trimmed).
pub(super) fn check_cursor(engine: &Engine, from: i64, newest: i64) -> Result<(), LiveError> {
    if from > newest {
        return Err(LiveError {
            code: "INVALID_CURSOR",
            message: format!(
                "options.from {from} is newer than anything this server has applied (newest _seq {newest})"
            ),
        });
    }
    let horizon = journal::horizon_seq(engine.store()).map_err(store_error)?;
    match horizon {
        Some(h) if from < h => Err(LiveError {
            code: CURSOR_EXPIRED,
            message: format!(
                "options.from {from} is older than the change journal's horizon (_seq {h}): the changes after it are no longer kept; subscribe without from for a fresh snapshot"
            ),
        }),
        _ => Ok(()),
    }
}

/// The code of the error a cursor older than the journal's horizon gets.
pub const CURSOR_EXPIRED: &str = "CURSOR_EXPIRED";

pub(super) fn store_error(e: folddb_materializer::Error) -> LiveError {
    LiveError {
        code: "SUBSCRIPTION_FAILED",
        message: format!("reading the change journal: {e}"),
    }
}

/// Changes a catch-up reads from the journal at a time.
const CATCH_UP_CHUNK: usize = 10_000;

/// The change messages that catch `sub` up from its cursor: every change of its table and
/// owner after it, from the journal, each as it means to the filter. `Err(None)`: more than
/// `most` changes.
pub(super) fn journal_catch_up(
    engine: &Engine,
    id: &str,
    sub: &mut Sub,
    most: usize,
) -> Result<Vec<Outgoing>, Option<LiveError>> {
    check_cursor(engine, sub.cursor, i64::MAX).map_err(Some)?;
    let mut msgs = Vec::new();
    let mut read_so_far = 0usize;
    loop {
        let limit = CATCH_UP_CHUNK.min(most.saturating_add(1) - read_so_far);
        let read = journal_read(engine, &sub.query, sub.cursor, None, limit).map_err(Some)?;
        read_so_far += read.events.len();
        if read_so_far > most {
            return Err(None);
        }
        msgs.extend(sub.told(id, &read.events).map_err(Some)?);
        if let (Some(seq), Some(index)) = (read.last, read.last_index) {
            // Change sets up to this one are in the read.
            sub.cursor = seq;
            sub.read_at = sub.read_at.max(index);
        }
        if read.complete {
            return Ok(msgs);
        }
    }
}

/// A read of the journal for one subscription.
pub(super) struct JournalRead {
    /// The changes, as the fold reported them, in `_seq` order.
    pub(super) events: Vec<RowEvent>,
    /// The `_seq` and log index of the last one.
    pub(super) last: Option<i64>,
    pub(super) last_index: Option<u64>,
    /// Whether the read holds every change of the window (it stopped short of its limit).
    pub(super) complete: bool,
}

/// Up to `limit` journal changes of `q`'s table and owner with a `_seq` after `after` (and
/// at or below `until`).
pub(super) fn journal_read(
    engine: &Engine,
    q: &LiveQuery,
    after: i64,
    until: Option<i64>,
    limit: usize,
) -> Result<JournalRead, LiveError> {
    let changes = journal::after_seq(engine.store(), q.def.id, &q.scope, after, limit)
        .map_err(store_error)?;
    let mut read = JournalRead {
        complete: changes.len() < limit,
        events: Vec::with_capacity(changes.len()),
        last: None,
        last_index: None,
    };
    for c in changes {
        if until.is_some_and(|u| c.seq > u) {
            read.complete = true;
            break;
        }
        read.last = Some(c.seq);
        read.last_index = Some(c.index);
        read.events.push(c.into_event());
    }
    Ok(read)
}
