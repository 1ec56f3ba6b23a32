//! The cold store's side of the flush and compaction jobs (`super::super::job` drives
//! them): writing their segments outside apply, and settling a scope's files once a
//! commit's outcome is known.

use super::*;

impl ColdStore {
    /// A flush job's writing (outside apply): the versions of each scope, read from the
    /// state at applied index `as_of`, as segment `batch-<job>.parquet` of the scope, made
    /// durable. Nothing lists them until the job's `CommitFlush` entry applies.
    pub fn write_flush(
        &self,
        storage: &StorageDef,
        def: &TableDef,
        job: &str,
        as_of: u64,
        scopes: BTreeMap<String, Vec<RowVersion>>,
    ) -> Result<Vec<ScopeSegment>, ColdError> {
        let backend = self.backend(storage)?;
        let file = segment_file(job);
        scopes
            .into_iter()
            .map(|(scope, versions)| {
                let dir = Loc::new(backend.clone(), scope_dir(storage, def, &scope));
                let segment = write_segment(&dir, def, &file, as_of, &versions)?;
                Ok(ScopeSegment { scope, segment })
            })
            .collect()
    }

    /// A compaction job's writing (outside apply): per scope of `manifests` (the state's at
    /// applied index `as_of`), its segments merged into one `batch-<job>.parquet` keeping
    /// each key's newest version and dropping tombstones older than `horizon` (a `_seq`).
    /// A scope with one segment and nothing to drop is listed as replaced by itself.
    pub fn write_compaction(
        &self,
        storage: &StorageDef,
        def: &TableDef,
        job: &str,
        as_of: u64,
        manifests: Vec<Manifest>,
        horizon: i64,
    ) -> Result<Vec<CompactedScope>, ColdError> {
        let file = segment_file(job);
        let mut out = Vec::new();
        for manifest in manifests {
            if manifest.segments.is_empty() {
                continue;
            }
            let at = self.scope_at(storage, def, manifest)?;
            let mut seen = std::collections::HashSet::new();
            let mut kept = Vec::new();
            let mut dropped = 0u64;
            for seg in at.segments.iter().rev() {
                for v in read_versions(&at.dir, seg, None)? {
                    let key = pk_of(def, &v).map(key_of).unwrap_or_default();
                    if !seen.insert(key) || (v.deleted && v.seq < horizon) {
                        dropped += 1;
                        continue;
                    }
                    kept.push(v);
                }
            }
            let replaced = at.segments.iter().map(|s| s.meta.file.clone()).collect();
            let segment = if at.segments.len() <= 1 && dropped == 0 {
                at.segments.first().map(|s| s.meta.clone())
            } else if kept.is_empty() {
                None
            } else {
                Some(write_segment(&at.dir, def, &file, as_of, &kept)?)
            };
            out.push(CompactedScope {
                scope: at.manifest.scope.clone(),
                replaced,
                segment,
            });
        }
        Ok(out)
    }

    /// The cold tier's key index for `def` as `state` lists its segments: for each key whose
    /// newest cold version is live, its row key and that version's `_seq`. Reads every
    /// segment: for building the index once, when a store of an earlier build is upgraded.
    pub fn key_index(
        &self,
        state: &dyn StateRead,
        storage: &StorageDef,
        def: &TableDef,
    ) -> Result<Vec<(Vec<u8>, i64)>, ColdError> {
        let mut out = Vec::new();
        for at in self.scopes_of(state, storage, def)? {
            let mut seen = std::collections::HashSet::new();
            for seg in at.segments.iter().rev() {
                for v in read_versions(&at.dir, seg, None)? {
                    let Some(pk) = pk_of(def, &v) else {
                        continue;
                    };
                    let key = crate::row::row_key(def.id, &at.manifest.scope, pk);
                    if !seen.insert(key.clone()) || v.deleted {
                        continue;
                    }
                    out.push((key, v.seq));
                }
            }
        }
        Ok(out)
    }

    /// After a job's entry applied (or was rejected): publishes the manifests of `scopes`
    /// as `state` now lists them, and removes the segment files of those scopes that no
    /// manifest lists (replaced by a compaction, or written by a job whose commit lost).
    /// Best effort: a file that stays is only disk space, never read.
    ///
    /// # Correctness
    ///
    /// Only when no job of this table is between writing and the outcome of its commit: a
    /// file written for a commit still to come would be removed.
    pub fn settle(
        &self,
        state: &dyn StateRead,
        storage: &StorageDef,
        def: &TableDef,
        scopes: &[String],
    ) -> Result<(), ColdError> {
        self.each_published(state, storage, def, scopes, |at| {
            remove_unlisted(&at.dir, &at.manifest)
        })
    }

    /// Publishes the manifests of `scopes` as `state` now lists them, and removes nothing:
    /// what settles a job in a cluster, where other members' jobs may be writing files
    /// beside them (see [`ColdStore::remove_job_files`]).
    pub fn publish(
        &self,
        state: &dyn StateRead,
        storage: &StorageDef,
        def: &TableDef,
        scopes: &[String],
    ) -> Result<(), ColdError> {
        self.each_published(state, storage, def, scopes, |_| ())
    }

    /// Publishes the manifest of each of `scopes` as `state` lists it, then calls `then`.
    fn each_published(
        &self,
        state: &dyn StateRead,
        storage: &StorageDef,
        def: &TableDef,
        scopes: &[String],
        then: impl Fn(&ScopeState),
    ) -> Result<(), ColdError> {
        for scope in scopes {
            let at = self.scope(state, storage, def, scope)?;
            if let Err(e) = at.manifest.publish(&at.dir) {
                tracing::warn!(error = %e, "could not publish a manifest");
            }
            then(&at);
        }
        Ok(())
    }

    /// Removes the segment files `replaced` of `scope` that the manifest of `state` no
    /// longer lists (those a compaction merged), and no other.
    pub fn remove_replaced(
        &self,
        state: &dyn StateRead,
        storage: &StorageDef,
        def: &TableDef,
        scope: &str,
        replaced: &[String],
    ) -> Result<(), ColdError> {
        let at = self.scope(state, storage, def, scope)?;
        for file in replaced {
            if at.manifest.segments.iter().any(|s| &s.file == file) {
                continue;
            }
            if let Err(e) = at.dir.backend.remove(&at.dir.file(file)) {
                tracing::warn!(error = %e, "could not remove a replaced segment");
            }
        }
        Ok(())
    }

    /// Removes the files job `job` wrote in any directory of `def`'s cold tier, and no
    /// other: after its commit was rejected or it failed, in a cluster. Best effort.
    pub fn remove_job_files(
        &self,
        storage: &StorageDef,
        def: &TableDef,
        job: &str,
    ) -> Result<(), ColdError> {
        let backend = self.backend(storage)?;
        let dirs = table_dirs(&backend, storage, def)?;
        let own = segment_file(job);
        for dir in dirs {
            let loc = Loc::new(backend.clone(), dir);
            let files = loc.backend.list(&loc.dir).map_err(backend_err)?.files;
            for name in files.iter().filter(|n| n.starts_with(own.as_str())) {
                if let Err(e) = loc.backend.remove(&loc.file(name)) {
                    tracing::warn!(error = %e, "could not remove a failed job's file");
                }
            }
        }
        Ok(())
    }

    /// [`ColdStore::settle`] over every directory of `def`'s cold tier, listed from the
    /// storage (after a restart: files of jobs that crashed before their commit).
    pub fn sweep_table(
        &self,
        state: &dyn StateRead,
        storage: &StorageDef,
        def: &TableDef,
    ) -> Result<(), ColdError> {
        let backend = self.backend(storage)?;
        for (dir, manifest) in self.listed_dirs(state, &backend, storage, def)? {
            remove_unlisted(&Loc::new(backend.clone(), dir), &manifest);
        }
        Ok(())
    }

    /// The paths (relative to the storage's base) of the segment files in every directory
    /// of `def`'s cold tier that no manifest of `state` lists.
    pub fn unlisted(
        &self,
        state: &dyn StateRead,
        storage: &StorageDef,
        def: &TableDef,
    ) -> Result<Vec<String>, ColdError> {
        let backend = self.backend(storage)?;
        let mut out = Vec::new();
        for (dir, manifest) in self.listed_dirs(state, &backend, storage, def)? {
            let loc = Loc::new(backend.clone(), dir);
            for name in unlisted_in(&loc, &manifest).map_err(backend_err)? {
                out.push(loc.file(&name));
            }
        }
        Ok(out)
    }

    /// The segment files (and leftover temporary files) in directory `dir` of `storage` and
    /// in the directories directly inside it (a USER table's scopes), as paths relative to
    /// the storage's base.
    pub fn segment_files_under(
        &self,
        storage: &StorageDef,
        dir: &str,
    ) -> Result<Vec<String>, ColdError> {
        let backend = self.backend(storage)?;
        let top = backend.list(dir).map_err(backend_err)?;
        let mut dirs = vec![dir.to_owned()];
        dirs.extend(top.dirs.iter().map(|d| join(dir, d)));
        let empty = Manifest {
            format: 0,
            table_id: 0,
            namespace: String::new(),
            table: String::new(),
            scope: String::new(),
            log_index: 0,
            segments: Vec::new(),
        };
        let mut out = Vec::new();
        for d in dirs {
            let loc = Loc::new(backend.clone(), d);
            for name in unlisted_in(&loc, &empty).map_err(backend_err)? {
                out.push(loc.file(&name));
            }
        }
        Ok(out)
    }

    /// Every directory of `def`'s cold tier in `storage`, with the manifest `state` holds
    /// for it (an empty one when it has none).
    fn listed_dirs(
        &self,
        state: &dyn StateRead,
        backend: &Arc<dyn Backend>,
        storage: &StorageDef,
        def: &TableDef,
    ) -> Result<Vec<(String, Manifest)>, ColdError> {
        let listed: HashMap<String, Manifest> = catalog::manifests(state, def.id)
            .map_err(state_err)?
            .into_iter()
            .map(|m| (scope_dir(storage, def, &m.scope), m))
            .collect();
        Ok(table_dirs(backend, storage, def)?
            .into_iter()
            .map(|dir| {
                let manifest = listed
                    .get(&dir)
                    .cloned()
                    .unwrap_or_else(|| Manifest::new(def, ""));
                (dir, manifest)
            })
            .collect())
    }

    /// Removes the whole cold tier of a dropped table, `dir` in `storage` (its
    /// `table_dir`), outside apply.
    pub fn remove_dir(&self, storage: &StorageDef, dir: &str) -> Result<(), ColdError> {
        self.backend(storage)?.remove_all(dir).map_err(backend_err)
    }

    /// The format-1 manifests of `def` in `storage` (before manifest format 2 they lived
    /// only there), to import into the node's state once.
    pub fn load_v1_manifests(
        &self,
        storage: &StorageDef,
        def: &TableDef,
    ) -> Result<Vec<Manifest>, ColdError> {
        let backend = self.backend(storage)?;
        let dir = table_dir(storage, def);
        let dirs = if def.kind == TableKind::Shared {
            vec![dir]
        } else {
            backend
                .list(&dir)
                .map_err(backend_err)?
                .dirs
                .iter()
                .map(|d| join(&dir, d))
                .collect()
        };
        let mut out = Vec::new();
        for d in dirs {
            if let Some(m) = Manifest::load_v1(&Loc::new(backend.clone(), d))?
                && m.table_id == def.id.0
            {
                out.push(m);
            }
        }
        Ok(out)
    }
}

/// The directories of `def`'s cold tier, as the storage lists them: the table's for a
/// SHARED table, one per owner for a USER table.
fn table_dirs(
    backend: &Arc<dyn Backend>,
    storage: &StorageDef,
    def: &TableDef,
) -> Result<Vec<String>, ColdError> {
    let base = table_dir(storage, def);
    if def.kind == TableKind::Shared {
        return Ok(vec![base]);
    }
    Ok(backend
        .list(&base)
        .map_err(backend_err)?
        .dirs
        .iter()
        .map(|d| join(&base, d))
        .collect())
}
