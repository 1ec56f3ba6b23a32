//! Vector index snapshots (`materializer/FORMAT.md`, "Vector index snapshots"): a node's copy
//! of a scope's built index on its own disk, so that a restart loads it and catches up from
//! the journal instead of building it again from every row.
//!
//! A snapshot is two files in the node's `vectors/` directory, named by the index and the
//! scope (`t<table>-c<column>-i<created index>-s<hex scope>`): `<name>.vix`, the graph and
//! vectors as usearch saves them, and `<name>.meta`: the row key of each vector, the
//! journal position the index holds every change through, and the length and CRC-32 of
//! the `.vix`. Both are written to temporary names, synced and renamed, `.vix` first: a
//! crash leaves the old pair, a new pair, or a `.meta` whose checksum the `.vix` does not
//! match — which is discarded, and the index built again. A snapshot is only ever a
//! shortcut: one that cannot be read, belongs to another index, or is older than the
//! journal reaches back is deleted and the index built from the rows.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Built, EXPANSION_SEARCH, ScopeKey, THREADS, index_error, pk_bytes};
use crate::catalog::VectorMetric;
use crate::codec;
use crate::error::Result;
use crate::value::Value;

/// The snapshot format this build writes and reads.
pub const FORMAT: u32 = 1;
/// The first bytes of a `.meta` file.
pub const MAGIC: &[u8; 8] = b"FOLDVIX\n";

/// What a `.meta` file holds (after [`MAGIC`] and [`FORMAT`]; a CRC-32 follows).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Meta {
    pub table: u64,
    pub column: u32,
    pub created_index: u64,
    pub scope: String,
    pub dims: u32,
    pub metric: VectorMetric,
    /// The journal position of the last change the index holds.
    pub through: (i64, u32),
    /// The last `_seq` assigned when it was saved.
    pub seen_seq: i64,
    pub next_key: u64,
    /// The `.vix` file's length and CRC-32.
    pub graph_bytes: u64,
    pub graph_crc: u32,
    /// Each vector's key in the index and its row's primary key.
    pub rows: Vec<(u64, Value)>,
}

/// The bytes of a `.meta` file.
pub(super) fn encode_meta(meta: &Meta) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&FORMAT.to_le_bytes());
    out.extend_from_slice(&codec::encode(meta));
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// The meta a `.meta` file's bytes hold, or why they hold none.
pub(super) fn decode_meta(bytes: &[u8]) -> std::result::Result<Meta, String> {
    let header = MAGIC.len() + 4;
    if bytes.len() < header + 4 || !bytes.starts_with(MAGIC) {
        return Err("not a vector index snapshot".into());
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    let crc = u32::from_le_bytes(crc.try_into().map_err(|_| "truncated")?);
    if crc32fast::hash(body) != crc {
        return Err("checksum mismatch".into());
    }
    let format = u32::from_le_bytes(
        body[MAGIC.len()..header]
            .try_into()
            .map_err(|_| "truncated")?,
    );
    if format != FORMAT {
        return Err(format!(
            "snapshot format {format}, this build reads {FORMAT}"
        ));
    }
    codec::decode(&body[header..], "a vector index snapshot").map_err(|e| e.to_string())
}

/// The file name stem of `key`'s snapshot.
fn stem(key: &ScopeKey) -> String {
    let scope: String = key.scope.bytes().map(|b| format!("{b:02x}")).collect();
    format!(
        "t{}-c{}-i{}-s{scope}",
        key.table.0, key.column, key.created_index
    )
}

/// The index a stem names: table, column, created index.
fn parse_stem(stem: &str) -> Option<(u64, u32, u64)> {
    let mut parts = stem.splitn(4, '-');
    let table = parts.next()?.strip_prefix('t')?.parse().ok()?;
    let column = parts.next()?.strip_prefix('c')?.parse().ok()?;
    let created = parts.next()?.strip_prefix('i')?.parse().ok()?;
    parts.next()?.strip_prefix('s')?;
    Some((table, column, created))
}

/// The length and CRC-32 of the file at `path`, once it is on the disk.
fn synced_checksum(path: &Path) -> std::io::Result<(u64, u32)> {
    let mut file = std::fs::File::open(path)?;
    file.sync_all()?;
    let mut hasher = crc32fast::Hasher::new();
    let mut buffer = vec![0; 1 << 20];
    let mut length = 0u64;
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            return Ok((length, hasher.finalize()));
        }
        length += n as u64;
        hasher.update(&buffer[..n]);
    }
}

fn utf8(path: &Path) -> Result<&str> {
    path.to_str()
        .ok_or_else(|| index_error(format!("{} is not a UTF-8 path", path.display())))
}

/// The snapshots of a node's vector indexes, in one directory.
#[derive(Debug)]
pub(super) struct Snapshots {
    dir: PathBuf,
}

impl Snapshots {
    pub fn new(dir: PathBuf) -> Snapshots {
        Snapshots { dir }
    }

    fn paths(&self, key: &ScopeKey) -> (PathBuf, PathBuf) {
        let stem = stem(key);
        (
            self.dir.join(format!("{stem}.vix")),
            self.dir.join(format!("{stem}.meta")),
        )
    }

    /// Writes `built` as `key`'s snapshot, in place of any earlier one.
    pub fn save(&self, key: &ScopeKey, built: &Built) -> Result<()> {
        let io = |what: &str, path: &Path| {
            let what = format!("{what} {}", path.display());
            move |e: std::io::Error| index_error(format!("{what}: {e}"))
        };
        std::fs::create_dir_all(&self.dir).map_err(io("creating", &self.dir))?;
        let (graph, meta_path) = self.paths(key);
        let graph_tmp = graph.with_extension("vix.tmp");
        let meta_tmp = meta_path.with_extension("meta.tmp");
        built
            .index
            .save(utf8(&graph_tmp)?)
            .map_err(|e| index_error(format!("saving {}: {e}", graph_tmp.display())))?;
        let (graph_bytes, graph_crc) =
            synced_checksum(&graph_tmp).map_err(io("syncing", &graph_tmp))?;
        let mut rows: Vec<(u64, Value)> =
            built.rows.iter().map(|(k, pk)| (*k, pk.clone())).collect();
        rows.sort_by_key(|(k, _)| *k);
        let meta = Meta {
            table: key.table.0,
            column: key.column,
            created_index: key.created_index,
            scope: key.scope.clone(),
            dims: built.dims as u32,
            metric: built.metric,
            through: built.through,
            seen_seq: built.seen_seq,
            next_key: built.next_key,
            graph_bytes,
            graph_crc,
            rows,
        };
        let mut file = std::fs::File::create(&meta_tmp).map_err(io("creating", &meta_tmp))?;
        file.write_all(&encode_meta(&meta))
            .and_then(|()| file.sync_all())
            .map_err(io("writing", &meta_tmp))?;
        std::fs::rename(&graph_tmp, &graph).map_err(io("renaming", &graph_tmp))?;
        std::fs::rename(&meta_tmp, &meta_path).map_err(io("renaming", &meta_tmp))?;
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io("syncing", &self.dir))
    }

    /// `key`'s snapshot, if this node has a readable one of an index of `dims` dimensions
    /// and `metric`. One that is not is deleted (and said so in the server's log).
    pub fn load(&self, key: &ScopeKey, dims: usize, metric: VectorMetric) -> Option<Built> {
        let (graph, meta) = self.paths(key);
        if !meta.exists() {
            return None;
        }
        match self.read(key, dims, metric, &graph, &meta) {
            Ok(built) => Some(built),
            Err(e) => {
                tracing::warn!(error = %e, file = %meta.display(),
                    "a vector index snapshot is unusable: building the index again");
                self.remove(key);
                None
            }
        }
    }

    fn read(
        &self,
        key: &ScopeKey,
        dims: usize,
        metric: VectorMetric,
        graph: &Path,
        meta: &Path,
    ) -> Result<Built> {
        let bytes = std::fs::read(meta)
            .map_err(|e| index_error(format!("reading {}: {e}", meta.display())))?;
        let meta = decode_meta(&bytes).map_err(index_error)?;
        if (
            meta.table,
            meta.column,
            meta.created_index,
            meta.scope.as_str(),
        ) != (
            key.table.0,
            key.column,
            key.created_index,
            key.scope.as_str(),
        ) || meta.dims as usize != dims
            || meta.metric != metric
        {
            return Err(index_error("the snapshot is of another index"));
        }
        let found = synced_checksum(graph)
            .map_err(|e| index_error(format!("reading {}: {e}", graph.display())))?;
        if found != (meta.graph_bytes, meta.graph_crc) {
            return Err(index_error(format!(
                "{} does not match its .meta (length or checksum)",
                graph.display()
            )));
        }
        let mut built = Built::new(dims, metric, meta.rows.len())?;
        built.index.load(utf8(graph)?).map_err(index_error)?;
        built.index.change_expansion_search(EXPANSION_SEARCH);
        built
            .index
            .reserve_capacity_and_threads(built.index.size().max(64), THREADS)
            .map_err(index_error)?;
        if built.index.dimensions() != dims || built.index.size() != meta.rows.len() {
            return Err(index_error(format!(
                "the graph holds {} vectors of {} dimensions, its .meta {} of {dims}",
                built.index.size(),
                built.index.dimensions(),
                meta.rows.len()
            )));
        }
        for (k, pk) in meta.rows {
            built.keys.insert(pk_bytes(&pk), k);
            built.rows.insert(k, pk);
        }
        built.next_key = meta.next_key;
        built.through = meta.through;
        built.seen_seq = meta.seen_seq;
        built.unsaved = 0;
        Ok(built)
    }

    /// Deletes `key`'s snapshot.
    pub fn remove(&self, key: &ScopeKey) {
        let (graph, meta) = self.paths(key);
        for path in [meta, graph] {
            if let Err(e) = std::fs::remove_file(&path)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(error = %e, file = %path.display(), "removing a vector index snapshot");
            }
        }
    }

    /// Deletes the snapshots of indexes `live` says no longer exist (given table, column
    /// and created index), and, with `temporary`, the temporary files of saves a crash
    /// interrupted (only while no save can be under way).
    pub fn sweep(&self, live: &dyn Fn(u64, u32, u64) -> bool, temporary: bool) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let (stem, tmp) = match name.strip_suffix(".tmp") {
                Some(rest) => (rest, true),
                None => (name, false),
            };
            let Some(stem) = stem
                .strip_suffix(".vix")
                .or_else(|| stem.strip_suffix(".meta"))
            else {
                continue;
            };
            let dead = parse_stem(stem).is_none_or(|(t, c, i)| !live(t, c, i));
            if (tmp && temporary) || dead {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}
