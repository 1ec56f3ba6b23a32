//! `folddb log replay`'s files (#21): the log holds each FILE cell's reference (`FileRef`,
//! API.md 3.5), never the file. After a replay, every file a row (or a version the journal
//! holds) references is copied from where the original data directory's storages keep it
//! into the replayed ones, and checked against its SHA-256; a file that is not there, or
//! whose bytes do not match, is named.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::Context;
use folddb_materializer::catalog::{self, TableKind};
use folddb_materializer::cold::ColdStore;
use folddb_materializer::cold::store::{scope_dir, table_dir};
use folddb_materializer::{DataType, HotStore};
use folddb_query::engine::files::FileRef;
use sha2::{Digest, Sha256};

/// Copies the referenced files from the storages under `original` (its `local` directory;
/// object storages as they are) into `replayed`'s: the files copied, and those missing.
pub fn copy(
    original: &Path,
    store: &HotStore,
    replayed: &ColdStore,
) -> anyhow::Result<(u64, Vec<String>)> {
    let tables: Vec<_> = catalog::tables(store, None)?
        .into_iter()
        .filter(|d| matches!(d.kind, TableKind::User | TableKind::Shared))
        .filter(|d| d.columns.iter().any(|c| c.data_type == DataType::File))
        .collect();
    if tables.is_empty() {
        return Ok((0, Vec::new()));
    }
    let io = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("starting the object storage runtime")?;
    let source = ColdStore::new(original).with_io(io.handle().clone());
    let users: Vec<String> = catalog::users(store)?.into_iter().map(|u| u.id).collect();
    let (mut copied, mut missing) = (0, Vec::new());
    for def in tables {
        let Some(storage) = catalog::storage(store, &def.options.storage_id)? else {
            missing.push(format!(
                "{}: storage '{}' does not exist",
                def.qualified_name(),
                def.options.storage_id
            ));
            continue;
        };
        let from = source.backend(&storage)?;
        let to = replayed.backend(&storage)?;
        // The scopes: every user's (and any other the original storage has files of) for a
        // USER table, the one scope of a SHARED table.
        let scopes: BTreeSet<String> = match def.kind {
            TableKind::Shared => [String::new()].into(),
            _ => {
                let dir = table_dir(&storage, &def);
                let listed = from.list(&dir).map(|l| l.dirs).unwrap_or_default();
                users.iter().cloned().chain(listed).collect()
            }
        };
        for scope in scopes {
            let refs = folddb_materializer::files::references(store, Some(replayed), &def, &scope)?;
            for text in refs.into_values() {
                let Ok(r) = serde_json::from_str::<FileRef>(&text) else {
                    missing.push(format!(
                        "{}: an unreadable FileRef {text}",
                        def.qualified_name()
                    ));
                    continue;
                };
                let path = format!(
                    "{}/{}/{}",
                    scope_dir(&storage, &def, &scope),
                    r.sub,
                    r.stored_name()
                );
                if to.open(&path).map_err(anyhow::Error::msg)?.is_some() {
                    continue;
                }
                let bytes = match from.read(&path) {
                    Ok(Some(b)) => b,
                    Ok(None) => {
                        missing.push(format!("{} (not found)", from.locate(&path)));
                        continue;
                    }
                    Err(e) => {
                        missing.push(format!("{} ({e})", from.locate(&path)));
                        continue;
                    }
                };
                let sha: String = Sha256::digest(&bytes)
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                if sha != r.sha256 {
                    missing.push(format!(
                        "{} (its SHA-256 is {sha}, the row's {})",
                        from.locate(&path),
                        r.sha256
                    ));
                    continue;
                }
                to.write(&path, bytes.to_vec())
                    .map_err(anyhow::Error::msg)?;
                copied += 1;
            }
        }
    }
    Ok((copied, missing))
}
