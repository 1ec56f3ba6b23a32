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
    // A compaction removes the files it replaced once committed: a scan that started on the
    // manifest before it may find them gone before it gave anything out; it starts again.
    let mut attempts = 0;
    loop {
        let mut given = false;
        let mut counted = |b: RecordBatch| {
            given = true;
            sink(b)
        };
        match scan_once(store, overlay, cold, scope, spec, &mut counted) {
            Err(ScanError::Cold(e)) if !given && attempts < 2 => {
                tracing::debug!(error = %e, "a scan found its segments replaced; reading again");
                attempts += 1;
            }
            done => return done,
        }
    }
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
    let cold_scope =
        match cold {
            Some(cold) => match catalog::manifest(&snapshot, def.id, scope)? {
                Some(manifest) if !manifest.segments.is_empty() => {
                    let storage = catalog::storage(&snapshot, &def.options.storage_id)?
                        .ok_or_else(|| crate::cold::ColdError {
                            location: format!("storage '{}'", def.options.storage_id),
                            message: format!(
                                "the storage of table {} does not exist",
                                def.qualified_name()
                            ),
                        })?;
                    Some(cold.scope_at(&storage, def, manifest)?)
                }
                _ => None,
            },
            None => None,
        };
    let family = def.family();
    let prefix = scope_prefix(def.id, scope);
    match overlay.filter(|o| o.touches(family, &prefix)) {
        None => {
            if let Some(cached) = store.scan_cache().rows(&snapshot, scope, &prefix, spec)? {
                // The changes since the cached columns are the newest source; their keys
                // come without the scope prefix.
                let mut delta = cached.delta.source(spec.keys);
                return merge(
                    cold_scope.as_deref(),
                    &mut delta,
                    0,
                    Some(cached.rows),
                    spec,
                    sink,
                );
            }
            let (from, to) = (spec.keys.from.as_deref(), spec.keys.to.as_deref());
            let mut committed = Committed(snapshot.cursor_range(family, &prefix, from, to)?);
            merge(
                cold_scope.as_deref(),
                &mut committed,
                prefix.len(),
                None,
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
