//! Table scans: one table scope's visible rows, hot and cold, as Arrow batches produced as
//! the reader pulls them ([`scan_scope`]). The hot tier is read through a RocksDB snapshot,
//! and the scope's manifest from the same snapshot, so a flush or compaction committed
//! meanwhile changes nothing of what the scan sees. Blocking: callers run it off their async
//! threads.

use crate::catalog;
use crate::cold::ColdStore;
pub use crate::cold::store::scan::{HotItem, ScanError, ScanSpec};
use crate::hot::{Family, HotBatch, HotStore};
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
    let mut committed = snapshot.iter_prefix(family, &prefix).map(|item| {
        item.map(|(key, value)| HotItem {
            key,
            value: Some(value),
        })
    });
    match overlay.filter(|o| o.touches(family, &prefix)) {
        None => crate::cold::store::scan::merge(
            cold_scope.as_deref(),
            &mut committed,
            prefix.len(),
            spec,
            sink,
        ),
        Some(overlay) => {
            let mut seen = Overlaid {
                committed: committed.peekable(),
                ours: overlay
                    .changes_under(family, &prefix)
                    .into_iter()
                    .peekable(),
                overlay,
                family,
            };
            crate::cold::store::scan::merge(
                cold_scope.as_deref(),
                &mut seen,
                prefix.len(),
                spec,
                sink,
            )
        }
    }
}

/// A key a batch writes, with its new value (`None`: deleted).
type Change = (Vec<u8>, Option<Vec<u8>>);

/// The committed keys of a prefix as a batch of writes changes them, in key order.
struct Overlaid<'a, I: Iterator<Item = crate::Result<HotItem>>> {
    committed: std::iter::Peekable<I>,
    ours: std::iter::Peekable<std::vec::IntoIter<Change>>,
    overlay: &'a HotBatch,
    family: Family,
}

impl<I: Iterator<Item = crate::Result<HotItem>>> Iterator for Overlaid<'_, I> {
    type Item = crate::Result<HotItem>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let ours_first = match (self.committed.peek(), self.ours.peek()) {
                (None, None) => return None,
                (Some(Err(_)), _) => return self.committed.next(),
                (None, Some(_)) => true,
                (Some(_), None) => false,
                (Some(Ok(c)), Some((k, _))) => {
                    if k.as_slice() == &*c.key {
                        self.committed.next();
                        true
                    } else {
                        k.as_slice() < &*c.key
                    }
                }
            };
            if ours_first {
                let (key, value) = self.ours.next()?;
                if let Some(value) = value {
                    return Some(Ok(HotItem {
                        key: key.into_boxed_slice(),
                        value: Some(value.into_boxed_slice()),
                    }));
                }
                continue;
            }
            let item = self.committed.next()?;
            // A committed key the batch does not write may still fall in a range it deletes.
            if let Ok(c) = &item
                && matches!(self.overlay.newest(self.family, &c.key), Some(None))
            {
                continue;
            }
            return Some(item);
        }
    }
}

#[cfg(test)]
#[path = "scan_test.rs"]
mod tests;
