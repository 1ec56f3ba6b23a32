//! Table scans: one table scope's visible rows, hot and cold, as Arrow batches produced as
//! the reader pulls them ([`scan_scope`]). The hot tier is read through a RocksDB snapshot,
//! and the scope's manifest from the same snapshot, so a flush or compaction committed
//! meanwhile changes nothing of what the scan sees. Blocking: callers run it off their async
//! threads.

use crate::catalog;
use crate::cold::ColdStore;
pub use crate::cold::store::scan::{HotItem, HotSource, KeyRange, ScanError, ScanSpec};
use crate::cold::store::scan::{Items, merge};
use crate::hot::{Family, HotBatch, HotStore, PrefixCursor};
use crate::row::scope_prefix;
use arrow::array::RecordBatch;
use std::sync::atomic::{AtomicBool, Ordering};

/// The rows of `scope` of `spec.def` that `spec` asks for, in primary-key order, each batch
/// given to `sink` until it answers `false`: the committed state (with `overlay`, a
/// transaction's own writes, over it), and the cold tier under it when `cold` is given.
pub fn scan_scope(
    store: &HotStore,
    overlay: Option<&HotBatch>,
    cold: Option<&ColdStore>,
    scope: &str,
    spec: &ScanSpec<'_>,
    sink: &mut dyn FnMut(RecordBatch) -> bool,
) -> Result<(), ScanError> {
    retried(|given| {
        let mut counted = |b: RecordBatch| {
            given.store(true, Ordering::Relaxed);
            sink(b)
        };
        scan_once(store, overlay, cold, scope, spec, &mut counted)
    })
}

/// [`scan_scope`] through `snapshot`, once: what a backup reads, every table and scope as
/// of the same applied entry. A segment removed meanwhile (a compaction settled) fails it.
pub fn scan_scope_in(
    snapshot: &crate::hot::HotSnapshot<'_>,
    cold: Option<&ColdStore>,
    scope: &str,
    spec: &ScanSpec<'_>,
    sink: &mut dyn FnMut(RecordBatch) -> bool,
) -> Result<(), ScanError> {
    let cold_scope = cold_scope(snapshot, cold, spec.def, scope)?;
    let prefix = scope_prefix(spec.def.id, scope);
    scan_range(snapshot, cold_scope.as_deref(), None, &prefix, spec, sink)
}

/// Every scope of `def` that `snapshot` holds rows of, hot or cold, in order (a SHARED
/// table's one scope is the empty one).
pub fn table_scopes(
    snapshot: &crate::hot::HotSnapshot<'_>,
    def: &crate::TableDef,
) -> crate::Result<Vec<String>> {
    let table = def.id.0.to_be_bytes();
    let mut scopes = std::collections::BTreeSet::new();
    let mut from: Option<Vec<u8>> = None;
    loop {
        let cursor = snapshot.cursor_range(def.family(), &table, from.as_deref(), None)?;
        let Some(key) = cursor.key() else { break };
        let rest = &key[table.len()..];
        let Some(len) = rest
            .get(..2)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
        else {
            break;
        };
        let Some(scope) = rest.get(2..2 + len) else {
            break;
        };
        scopes.insert(String::from_utf8_lossy(scope).into_owned());
        // Past every key of this scope.
        match crate::hot::prefix_end(&rest[..2 + len]) {
            Some(end) => from = Some(end),
            None => break,
        }
    }
    for m in catalog::manifests(snapshot, def.id)? {
        if !m.segments.is_empty() {
            scopes.insert(m.scope.clone());
        }
    }
    Ok(scopes.into_iter().collect())
}

/// Runs `scan` until it succeeds, fails with anything but a cold-tier error, or has given a
/// batch out (it sets the flag it is handed): a compaction removes the files it replaced
/// once committed, so a scan that started on the manifest before it may find them gone; it
/// starts again, twice at most.
fn retried(mut scan: impl FnMut(&AtomicBool) -> Result<(), ScanError>) -> Result<(), ScanError> {
    let mut attempts = 0;
    loop {
        let given = AtomicBool::new(false);
        match scan(&given) {
            Err(ScanError::Cold(e)) if !given.load(Ordering::Relaxed) && attempts < 2 => {
                tracing::debug!(error = %e, "a scan found its segments replaced; reading again");
                attempts += 1;
            }
            done => return done,
        }
    }
}

/// A batch sink that another thread may call.
pub type PartSink<'a> = &'a mut (dyn FnMut(RecordBatch) -> bool + Send);

/// [`scan_scope`] on as many threads as `sinks`, through one snapshot: the scope's keys are
/// cut into that many ranges (at keys of its cached hot rows and its segments, or halfway
/// between its first and last hot key), and
/// sink `i` gets the rows of range `i`, in key order. A scan with a `LIMIT` or a batch of
/// writes over the committed state, or a scope with no key to cut at, gives every row to the
/// first sink.
pub fn scan_scope_parts(
    store: &HotStore,
    overlay: Option<&HotBatch>,
    cold: Option<&ColdStore>,
    scope: &str,
    spec: &ScanSpec<'_>,
    sinks: &mut [PartSink<'_>],
) -> Result<(), ScanError> {
    let family = spec.def.family();
    let prefix = scope_prefix(spec.def.id, scope);
    let whole = overlay.is_some_and(|o| o.touches(family, &prefix)) || spec.limit.is_some();
    if sinks.len() < 2 || whole {
        let Some(first) = sinks.first_mut() else {
            return Ok(());
        };
        return scan_scope(store, overlay, cold, scope, spec, &mut **first);
    }
    retried(|given| scan_parts_once(store, cold, scope, spec, sinks, given))
}

fn scan_parts_once(
    store: &HotStore,
    cold: Option<&ColdStore>,
    scope: &str,
    spec: &ScanSpec<'_>,
    sinks: &mut [PartSink<'_>],
    given: &AtomicBool,
) -> Result<(), ScanError> {
    let def = spec.def;
    let snapshot = store.snapshot();
    let cold_scope = cold_scope(&snapshot, cold, def, scope)?;
    let prefix = scope_prefix(def.id, scope);
    let cached = store.scan_cache().rows(&snapshot, scope, &prefix, spec)?;
    // Where to cut: keys of the cached hot rows and of the segments, so that each range
    // holds about as many of their rows.
    let cuts: Vec<Vec<u8>> = {
        let mut indexes = Vec::new();
        if let Some(c) = &cached {
            indexes.push(c.rows.keys.clone());
        }
        if let Some(s) = cold_scope.as_deref() {
            indexes.extend(s.segment_keys(def.primary_key)?);
        }
        if indexes.is_empty() {
            // Only hot rows, not decoded: cut once, halfway between the first and last key.
            hot_midpoint(&snapshot, &prefix, spec).into_iter().collect()
        } else {
            balanced_cuts(&indexes, spec.keys, sinks.len())
        }
    };
    if cuts.is_empty() {
        let sink = &mut *sinks[0];
        let mut counted = |b: RecordBatch| {
            given.store(true, Ordering::Relaxed);
            sink(b)
        };
        return scan_range(
            &snapshot,
            cold_scope.as_deref(),
            cached.as_ref(),
            &prefix,
            spec,
            &mut counted,
        );
    }
    let mut ranges = Vec::with_capacity(cuts.len() + 1);
    let mut from = spec.keys.from.clone();
    for cut in cuts {
        ranges.push(KeyRange {
            from: from.clone(),
            to: Some(cut.clone()),
        });
        from = Some(cut);
    }
    ranges.push(KeyRange {
        from,
        to: spec.keys.to.clone(),
    });
    std::thread::scope(|s| {
        let mut running = Vec::new();
        let (snapshot, cold_scope, cached, prefix) =
            (&snapshot, cold_scope.as_deref(), cached.as_ref(), &prefix);
        for (range, sink) in ranges.iter().zip(sinks.iter_mut()) {
            let part = ScanSpec {
                keys: range,
                ..*spec
            };
            let mut counted = move |b: RecordBatch| {
                given.store(true, Ordering::Relaxed);
                sink(b)
            };
            // Each thread takes its creator's priority (a query's, lowered).
            running.push(s.spawn(move || {
                scan_range(snapshot, cold_scope, cached, prefix, &part, &mut counted)
            }));
        }
        let mut result = Ok(());
        for r in running {
            let done = r.join().unwrap_or_else(|_| {
                Err(ScanError::State(crate::Error::Decode {
                    what: "a table scan",
                    reason: "the thread reading part of it failed".into(),
                }))
            });
            if result.is_ok() {
                result = done;
            }
        }
        result
    })
}

/// A key (after `prefix`) halfway between the first and the last hot key of `spec.keys`.
fn hot_midpoint(
    snapshot: &crate::hot::HotSnapshot<'_>,
    prefix: &[u8],
    spec: &ScanSpec<'_>,
) -> Option<Vec<u8>> {
    let family = spec.def.family();
    let (from, to) = (spec.keys.from.as_deref(), spec.keys.to.as_deref());
    let first = snapshot
        .cursor_range(family, prefix, from, to)
        .ok()?
        .key()?
        .to_vec();
    let last = snapshot.last_key(family, prefix).ok()??;
    let mid = crate::scan_cache::midpoint(&first[prefix.len()..], &last[prefix.len()..])?;
    // Within the range: a cut at its edge would leave a range empty.
    let inside = from.is_none_or(|f| f < mid.as_slice()) && to.is_none_or(|t| mid.as_slice() < t);
    inside.then_some(mid)
}

/// Up to `n - 1` keys cutting `range` of the keys `indexes` hold into `n` ranges of about
/// as many of them (keys held twice count twice), in order.
fn balanced_cuts(
    indexes: &[std::sync::Arc<crate::cold::store::KeyIndex>],
    range: &KeyRange,
    n: usize,
) -> Vec<Vec<u8>> {
    /// Candidate keys taken from each index.
    const STEPS: usize = 32;
    let bounds: Vec<(usize, usize)> = indexes.iter().map(|k| k.bounds(range)).collect();
    let total: usize = bounds.iter().map(|(s, e)| e - s).sum();
    if total < 2 * n {
        return Vec::new();
    }
    let below = |key: &[u8]| -> usize {
        indexes
            .iter()
            .zip(&bounds)
            .map(|(k, &(s, e))| {
                let to = KeyRange {
                    from: range.from.clone(),
                    to: Some(key.to_vec()),
                };
                k.bounds(&to).1.clamp(s, e) - s
            })
            .sum()
    };
    let mut candidates: Vec<(Vec<u8>, usize)> = Vec::new();
    for (k, &(s, e)) in indexes.iter().zip(&bounds) {
        for step in 1..STEPS {
            let at = s + (e - s) * step / STEPS;
            if at > s && at < e {
                let key = k.key_at(at).to_vec();
                let count = below(&key);
                candidates.push((key, count));
            }
        }
    }
    let mut cuts: Vec<Vec<u8>> = Vec::new();
    for i in 1..n {
        let target = total * i / n;
        if let Some((key, _)) = candidates
            .iter()
            .min_by_key(|(_, count)| count.abs_diff(target))
            && cuts.last().is_none_or(|last| last < key)
        {
            cuts.push(key.clone());
        }
    }
    cuts
}

/// The cold scope of `scope` as `snapshot` holds it, when `cold` is given and it has
/// segments.
fn cold_scope(
    snapshot: &crate::hot::HotSnapshot<'_>,
    cold: Option<&ColdStore>,
    def: &crate::TableDef,
    scope: &str,
) -> Result<Option<std::sync::Arc<crate::cold::store::ScopeState>>, ScanError> {
    let Some(cold) = cold else {
        return Ok(None);
    };
    match catalog::manifest(snapshot, def.id, scope)? {
        Some(manifest) if !manifest.segments.is_empty() => {
            let storage =
                catalog::storage(snapshot, &def.options.storage_id)?.ok_or_else(|| {
                    crate::cold::ColdError {
                        location: format!("storage '{}'", def.options.storage_id),
                        message: format!(
                            "the storage of table {} does not exist",
                            def.qualified_name()
                        ),
                    }
                })?;
            Ok(Some(cold.scope_at(&storage, def, manifest)?))
        }
        _ => Ok(None),
    }
}

/// One key range of a scope (`spec.keys`): the cached hot rows with their changes when
/// given, else the hot tier read through `snapshot`, merged with the segments.
fn scan_range(
    snapshot: &crate::hot::HotSnapshot<'_>,
    cold_scope: Option<&crate::cold::store::ScopeState>,
    cached: Option<&crate::scan_cache::Cached>,
    prefix: &[u8],
    spec: &ScanSpec<'_>,
    sink: &mut dyn FnMut(RecordBatch) -> bool,
) -> Result<(), ScanError> {
    if let Some(cached) = cached {
        // The changes since the cached columns are the newest source; their keys come
        // without the scope prefix.
        let mut delta = cached.delta.source(spec.keys);
        return merge(
            cold_scope,
            &mut delta,
            0,
            Some(cached.rows.clone()),
            spec,
            sink,
        );
    }
    let (from, to) = (spec.keys.from.as_deref(), spec.keys.to.as_deref());
    let family = spec.def.family();
    let mut committed = Committed(snapshot.cursor_range(family, prefix, from, to)?);
    merge(cold_scope, &mut committed, prefix.len(), None, spec, sink)
}

fn scan_once(
    store: &HotStore,
    overlay: Option<&HotBatch>,
    cold: Option<&ColdStore>,
    scope: &str,
    spec: &ScanSpec<'_>,
    sink: &mut dyn FnMut(RecordBatch) -> bool,
) -> Result<(), ScanError> {
    let def = spec.def;
    let snapshot = store.snapshot();
    let cold_scope = cold_scope(&snapshot, cold, def, scope)?;
    let family = def.family();
    let prefix = scope_prefix(def.id, scope);
    match overlay.filter(|o| o.touches(family, &prefix)) {
        None => {
            let cached = store.scan_cache().rows(&snapshot, scope, &prefix, spec)?;
            scan_range(
                &snapshot,
                cold_scope.as_deref(),
                cached.as_ref(),
                &prefix,
                spec,
                sink,
            )
        }
        Some(overlay) => {
            // The whole scope: the batch's own writes are few, and a query filters what falls
            // outside its key range.
            let mut seen = Items::new(Overlaid {
                committed: Committed(snapshot.cursor(family, &prefix)?),
                ours: overlay
                    .changes_under(family, &prefix)
                    .into_iter()
                    .peekable(),
                overlay,
                family,
            })?;
            merge(
                cold_scope.as_deref(),
                &mut seen,
                prefix.len(),
                None,
                spec,
                sink,
            )
        }
    }
}

/// The committed keys of a scope, read in place.
struct Committed<'a>(PrefixCursor<'a>);

impl HotSource for Committed<'_> {
    fn key(&self) -> Option<&[u8]> {
        self.0.key()
    }

    fn value(&self) -> Option<&[u8]> {
        self.0.value()
    }

    fn advance(&mut self) -> crate::Result<()> {
        self.0.advance()
    }
}

/// A key a batch writes, with its new value (`None`: deleted).
type Change = (Vec<u8>, Option<Vec<u8>>);

/// The committed keys of a prefix as a batch of writes changes them, in key order.
struct Overlaid<'a> {
    committed: Committed<'a>,
    ours: std::iter::Peekable<std::vec::IntoIter<Change>>,
    overlay: &'a HotBatch,
    family: Family,
}

impl Iterator for Overlaid<'_> {
    type Item = crate::Result<HotItem>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let ours_first = match (self.committed.key(), self.ours.peek()) {
                (None, None) => return None,
                (None, Some(_)) => true,
                (Some(_), None) => false,
                (Some(c), Some((k, _))) => k.as_slice() <= c,
            };
            if ours_first {
                let (key, value) = self.ours.next()?;
                if self.committed.key() == Some(key.as_slice())
                    && let Err(e) = self.committed.advance()
                {
                    return Some(Err(e));
                }
                if let Some(value) = value {
                    return Some(Ok(HotItem {
                        key: key.into_boxed_slice(),
                        value: Some(value.into_boxed_slice()),
                    }));
                }
                continue;
            }
            let key: Box<[u8]> = self.committed.key()?.into();
            let value: Option<Box<[u8]>> = self.committed.value().map(Into::into);
            if let Err(e) = self.committed.advance() {
                return Some(Err(e));
            }
            // A committed key the batch does not write may still fall in a range it deletes.
            if matches!(self.overlay.newest(self.family, &key), Some(None)) {
                continue;
            }
            return Some(Ok(HotItem { key, value }));
        }
    }
}

#[cfg(test)]
#[path = "scan_test.rs"]
mod tests;
