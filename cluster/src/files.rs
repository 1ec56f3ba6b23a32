//! The cold tier of storages that are a directory of each node (`filesystem`), in a
//! cluster (DESIGN.md "Cluster", `cluster/FORMAT.md` "Cold files between members").
//!
//! Every member keeps its own copy of every segment its manifests list. The member that runs
//! a flush or a compaction writes the segments, then has the other voters copy them
//! ([`ColdFiles::replicate`], a `Pull` RPC each) and proposes the commit only once a majority
//! holds them: whichever minority fails next, a member that holds each file stays. Before a
//! member records a commit that lists files it lacks (it was down, or slow), it fetches them
//! from the members that hold them ([`ColdFiles::hold`], called by the fold): applying never
//! records a manifest whose files are not on the node. A member brought up from a snapshot
//! fetches every file the snapshot's manifests list ([`ColdFiles::hold_listed`]). A member
//! far behind may find a file gone from every member: one that has applied past the commit
//! and no longer lists the file (a later compaction replaced it) says so, and the file is
//! not needed, since this member applies that later commit before it serves a read of the
//! state after it.
//!
//! Files travel in chunks ([`CHUNK`]) of a `Read` RPC and are written whole, atomically and
//! durably; a copy must have the length the commit lists. Only segment files
//! (`….parquet`) of `filesystem` storages are served, by relative paths without `..`.

use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use folddb_materializer::cold::backend::Source;
use folddb_materializer::cold::job::{listed_node_local_files, node_local};
use folddb_materializer::cold::{ColdResult, ColdStore, LocalFile, Replicas};
use folddb_materializer::{ColdTier, Family, HotStore, StateRead, StorageDef, TableDef, Value};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use crate::codec::{decode_message, encode_message};
use crate::network::{Peers, Rpc};
use crate::state_machine::MEMBERSHIP_KEY;

/// The most bytes one `Read` answers.
pub const CHUNK: u64 = 8 << 20;

/// How long one chunk may take to arrive.
const CHUNK_WAIT: Duration = Duration::from_secs(30);

/// How long a member may take to list its jobs.
const JOBS_WAIT: Duration = Duration::from_secs(5);

/// How often a member retries fetching the files of a commit it is applying, one second
/// apart, before it gives up: the node then stops applying (and reports why) until a restart.
const HOLD_ATTEMPTS: u32 = 120;

/// A member's file RPC (`/v1/raft/file`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum FileRequest {
    /// Up to [`CHUNK`] bytes of file `path` of storage `storage` (its id) from `offset`,
    /// which the state at applied index `listed_at` lists (`u64::MAX`: a job's file not
    /// committed yet).
    Read {
        storage: String,
        path: String,
        offset: u64,
        listed_at: u64,
    },
    /// Copy `files` of storage `storage` (its id) from the member at `from` (the others when
    /// it does not hold one), and answer once they are durable here.
    Pull {
        from: String,
        storage: String,
        files: Vec<LocalFile>,
    },
    /// The ids of the jobs queued or running on this member.
    Jobs,
}

/// The answer to a [`FileRequest`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum FileAnswer {
    /// Bytes from the asked offset; `total` is the file's length.
    Chunk {
        total: u64,
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
    },
    /// This member does not hold the file.
    Missing,
    /// This member does not hold the file, and its state, applied past the asked
    /// `listed_at`, no longer lists it: a later commit replaced it (a compaction) or its table
    /// was dropped, and it may be gone from every member.
    Gone,
    /// The pulled files are durable on this member.
    Held,
    /// The request could not be served.
    Failed(String),
    /// The ids of the jobs queued or running on this member.
    Jobs(Vec<String>),
}

/// A member's copies of the files of node-local storages. Cheap to share.
pub struct ColdFiles {
    id: u64,
    cold: Arc<ColdStore>,
    peers: Peers,
    /// Held weakly: the node owns its store, and closes it at shutdown whatever a file
    /// fetch is doing.
    hot: OnceLock<Weak<HotStore>>,
    /// This member's queued or running jobs, once its engine is up.
    jobs: OnceLock<PendingJobs>,
    runtime: tokio::runtime::Handle,
}

/// Lists a member's queued or running jobs.
pub type PendingJobs = Arc<dyn Fn() -> Vec<String> + Send + Sync>;

impl std::fmt::Debug for ColdFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ColdFiles").field("id", &self.id).finish()
    }
}

/// Whether `path` names a segment file inside a storage: relative, no `.` or `..` parts.
fn safe_path(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with('/')
        && !path.contains('\\')
        && path.ends_with(".parquet")
        && path
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
}

impl ColdFiles {
    /// Node `id`'s files, in `cold`, reaching the others with `peers`. Must be created on the
    /// runtime the node's RPCs run on.
    pub fn new(id: u64, cold: Arc<ColdStore>, peers: Peers) -> ColdFiles {
        ColdFiles {
            id,
            cold,
            peers,
            hot: OnceLock::new(),
            jobs: OnceLock::new(),
            runtime: tokio::runtime::Handle::current(),
        }
    }

    /// The node's store, once it is open (the members are read from it).
    pub(crate) fn set_store(&self, hot: &Arc<HotStore>) {
        let _ = self.hot.set(Arc::downgrade(hot));
    }

    /// The node's store, while the node is open.
    fn hot(&self) -> Option<Arc<HotStore>> {
        self.hot.get().and_then(Weak::upgrade)
    }

    /// How this member lists its queued or running jobs (its engine's registry), for the
    /// members that sweep shared storages.
    pub fn set_pending_jobs(&self, jobs: PendingJobs) {
        let _ = self.jobs.set(jobs);
    }

    /// This node's address and the other members' (`voters` only, or every member), as the
    /// applied membership lists them.
    fn members(&self, voters: bool) -> (Option<String>, Vec<String>) {
        let Some(bytes) = self
            .hot()
            .and_then(|h| h.get(Family::Meta, MEMBERSHIP_KEY).ok().flatten())
        else {
            return (None, Vec::new());
        };
        let Ok(stored) = crate::codec::decode_membership(&bytes) else {
            return (None, Vec::new());
        };
        let config = stored.membership();
        let voter_ids: BTreeSet<u64> = config.voter_ids().collect();
        let (mut me, mut others) = (None, Vec::new());
        for (id, node) in config.nodes() {
            if *id == self.id {
                me = Some(node.addr.clone());
            } else if !voters || voter_ids.contains(id) {
                others.push(node.addr.clone());
            }
        }
        (me, others)
    }

    /// Whether this node holds `file` of `storage` at its listed length.
    fn has(&self, storage: &StorageDef, file: &LocalFile) -> Result<bool, String> {
        let backend = self.cold.backend(storage).map_err(|e| e.to_string())?;
        Ok(match backend.open(&file.path)? {
            Some(Source::File(f)) => f.metadata().is_ok_and(|m| m.len() == file.bytes),
            Some(Source::Bytes(b)) => b.len() as u64 == file.bytes,
            None => false,
        })
    }

    /// Copies `file` of `storage` (listed at `listed_at`) from the member at `addr`.
    async fn fetch_from(
        &self,
        addr: &str,
        storage: &StorageDef,
        file: &LocalFile,
        listed_at: u64,
    ) -> Result<Fetched, String> {
        // Staged in an anonymous file of the node's data directory (nothing is left if the
        // node dies meanwhile), never whole in memory: a compaction's segment can be large.
        let root = self.cold.root().to_path_buf();
        let staged = tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&root)?;
            tempfile::tempfile_in(&root)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("staging a fetched file: {e}"))?;
        let mut staged = tokio::fs::File::from_std(staged);
        let mut got: u64 = 0;
        loop {
            let ask = FileRequest::Read {
                storage: storage.id.clone(),
                path: file.path.clone(),
                offset: got,
                listed_at,
            };
            let answer: FileAnswer = self
                .peers
                .call(addr, Rpc::File, &ask, CHUNK_WAIT)
                .await
                .map_err(|e| e.to_string())?;
            match answer {
                FileAnswer::Chunk { total, bytes: part } => {
                    if total != file.bytes {
                        return Err(format!(
                            "node {addr} holds {total} bytes of {}, the commit lists {}",
                            file.path, file.bytes
                        ));
                    }
                    if part.is_empty() && got < total {
                        return Err(format!("node {addr} sent {} cut short", file.path));
                    }
                    staged
                        .write_all(&part)
                        .await
                        .map_err(|e| format!("staging a fetched file: {e}"))?;
                    got += part.len() as u64;
                    if got >= total {
                        break;
                    }
                }
                FileAnswer::Missing => return Ok(Fetched::Missing),
                FileAnswer::Gone => return Ok(Fetched::Gone),
                FileAnswer::Failed(why) => return Err(format!("node {addr}: {why}")),
                FileAnswer::Held | FileAnswer::Jobs(_) => {
                    return Err(format!("node {addr} answered out of turn"));
                }
            }
        }
        if got != file.bytes {
            return Err(format!(
                "node {addr} sent more of {} than it has",
                file.path
            ));
        }
        staged
            .flush()
            .await
            .map_err(|e| format!("staging a fetched file: {e}"))?;
        let mut staged = staged.into_std().await;
        let backend = self.cold.backend(storage).map_err(|e| e.to_string())?;
        let path = file.path.clone();
        tokio::task::spawn_blocking(move || {
            use std::io::Seek;
            staged
                .rewind()
                .map_err(|e| format!("reading a staged file: {e}"))?;
            backend.write_from(&path, &mut staged)
        })
        .await
        .map_err(|e| e.to_string())??;
        Ok(Fetched::Copied)
    }

    /// Makes sure this node holds `files` of `storage`, copying each it lacks from `first`
    /// (when given), else from the first other member that holds it. `listed_at`: the
    /// applied index whose state lists them; a file that a member applied past it has
    /// dropped since (replaced by a later commit) is not needed (`None`: every file is).
    async fn ensure(
        &self,
        storage: &StorageDef,
        files: &[LocalFile],
        first: Option<&str>,
        listed_at: Option<u64>,
    ) -> Result<(), String> {
        if !node_local(storage) {
            return Err(format!(
                "storage '{}' is not a directory of each node",
                storage.id
            ));
        }
        for file in files {
            if !safe_path(&file.path) {
                return Err(format!("'{}' is not a segment file's path", file.path));
            }
            if self.has(storage, file)? {
                continue;
            }
            let (_, others) = self.members(false);
            let sources = first.map(str::to_owned).into_iter().chain(others);
            let mut problems = Vec::new();
            let mut done = None;
            for addr in sources {
                match self
                    .fetch_from(&addr, storage, file, listed_at.unwrap_or(u64::MAX))
                    .await
                {
                    Ok(Fetched::Missing) => problems.push(format!("node {addr} does not hold it")),
                    Ok(got) => {
                        done = Some(got);
                        break;
                    }
                    Err(e) => problems.push(e),
                }
            }
            match done {
                Some(Fetched::Copied) => {
                    tracing::info!(path = %file.path, bytes = file.bytes, "fetched a cold file from a member");
                }
                Some(_) => {
                    tracing::info!(path = %file.path, "not fetched: a later commit replaced it");
                }
                None => {
                    return Err(format!(
                        "no member could send {} of storage '{}' ({})",
                        file.path,
                        storage.id,
                        problems.join("; ")
                    ));
                }
            }
        }
        Ok(())
    }

    /// The fold's [`ColdTier::hold`]: makes sure this node holds `files` before the commit
    /// listing them is recorded, retrying once a second while no member can send them
    /// (the members that hold them restarting, say), up to [`HOLD_ATTEMPTS`] times.
    pub fn hold(&self, index: u64, storage: &StorageDef, files: &[LocalFile]) -> ColdResult<()> {
        let mut missing = Vec::new();
        for f in files {
            if !self.has(storage, f)? {
                missing.push(f.clone());
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        let mut attempt = 0;
        loop {
            // On a thread of its own: the fold may run on a runtime's thread, where blocking
            // on a future is not allowed.
            let fetched = std::thread::scope(|scope| {
                scope
                    .spawn(|| {
                        self.runtime
                            .block_on(self.ensure(storage, &missing, None, Some(index)))
                    })
                    .join()
                    .unwrap_or_else(|_| Err("fetching cold files panicked".to_owned()))
            });
            match fetched {
                Ok(()) => return Ok(()),
                Err(e) if attempt + 1 >= HOLD_ATTEMPTS => return Err(e),
                Err(e) => {
                    tracing::warn!(error = %e, attempt, "waiting for a member to send a commit's cold files");
                    std::thread::sleep(Duration::from_secs(1));
                    attempt += 1;
                }
            }
        }
    }

    /// Fetches every file the manifests of this node's state list in node-local storages
    /// that it lacks (after a snapshot brought them, or a restart cut such a fetch off).
    /// Retries, backing off from one second to thirty, until every file is here.
    pub async fn hold_listed(self: Arc<Self>) {
        let mut waited = 0;
        loop {
            // Once the node has closed its store, there is nothing left to fetch for.
            let Some(hot) = self.hot() else {
                return;
            };
            let listed = {
                tokio::task::spawn_blocking(move || {
                    let at = hot.applied_index().map_err(|e| e.to_string())?;
                    let listed = listed_node_local_files(hot.as_ref())?;
                    Ok::<_, String>((at.map_or(0, |i| i.0), listed))
                })
                .await
            };
            let (at, listed) = match listed {
                Ok(Ok(listed)) => listed,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "could not list the cold files to fetch");
                    return;
                }
                Err(_) => return,
            };
            let mut problems = Vec::new();
            for (storage, files) in &listed {
                if let Err(e) = self.ensure(storage, files, None, Some(at)).await {
                    problems.push(e);
                }
            }
            if problems.is_empty() {
                return;
            }
            tracing::warn!(problems = %problems.join("; "), "fetching the cold files the manifests list");
            // Backing off up to half a minute while the members that hold them are away.
            waited = (waited * 2).clamp(1, 30);
            tokio::time::sleep(Duration::from_secs(waited)).await;
        }
    }

    /// Answers a member's [`FileRequest`] (the HTTP layer has checked its cluster id and
    /// secret).
    pub async fn answer(&self, body: &[u8]) -> Result<Vec<u8>, String> {
        let request: FileRequest = decode_message(body)?;
        // A storage as this member's own state defines it: where its files are is never
        // the caller's to say.
        let own = |id: &str| -> Option<StorageDef> {
            let hot = self.hot()?;
            folddb_materializer::catalog::storage(hot.as_ref(), id)
                .ok()
                .flatten()
                .filter(node_local)
        };
        let answer = match request {
            FileRequest::Read {
                storage,
                path,
                offset,
                listed_at,
            } => match own(&storage) {
                _ if !safe_path(&path) => {
                    FileAnswer::Failed(format!("'{path}' is not a segment file's path"))
                }
                // Not (yet) a storage of this member: it holds none of its files.
                None => FileAnswer::Missing,
                Some(storage) => {
                    let (cold, hot) = (self.cold.clone(), self.hot());
                    tokio::task::spawn_blocking(move || {
                        match read_chunk(&cold, &storage, &path, offset) {
                            FileAnswer::Missing => match hot {
                                Some(hot) if dropped_since(&hot, &storage, &path, listed_at) => {
                                    FileAnswer::Gone
                                }
                                _ => FileAnswer::Missing,
                            },
                            answer => answer,
                        }
                    })
                    .await
                    .unwrap_or_else(|e| FileAnswer::Failed(e.to_string()))
                }
            },
            FileRequest::Pull {
                from,
                storage,
                files,
            } => match own(&storage) {
                None => FileAnswer::Failed(format!(
                    "storage '{storage}' is not a directory of each node in this member's state"
                )),
                Some(storage) => match self.ensure(&storage, &files, Some(&from), None).await {
                    Ok(()) => FileAnswer::Held,
                    Err(e) => FileAnswer::Failed(e),
                },
            },
            FileRequest::Jobs => match self.jobs.get() {
                Some(jobs) => FileAnswer::Jobs(jobs()),
                None => FileAnswer::Failed("this member is still starting".to_owned()),
            },
        };
        Ok(encode_message(&answer))
    }
}

/// What asking a member for a file got.
enum Fetched {
    Copied,
    Missing,
    Gone,
}

/// Whether `hot`, applied past `listed_at`, no longer lists `path` of `storage`.
fn dropped_since(hot: &HotStore, storage: &StorageDef, path: &str, listed_at: u64) -> bool {
    let past = hot
        .applied_index()
        .is_ok_and(|a| a.is_some_and(|a| a.0 > listed_at));
    past && listed_node_local_files(hot).is_ok_and(|listed| {
        !listed
            .iter()
            .filter(|(s, _)| s.id == storage.id)
            .any(|(_, files)| files.iter().any(|f| f.path == path))
    })
}

/// Up to [`CHUNK`] bytes of `path` of `storage` from `offset`.
fn read_chunk(cold: &ColdStore, storage: &StorageDef, path: &str, offset: u64) -> FileAnswer {
    use std::io::{Read, Seek, SeekFrom};
    let read = || -> Result<FileAnswer, String> {
        let backend = cold.backend(storage).map_err(|e| e.to_string())?;
        let Some(source) = backend.open(path)? else {
            return Ok(FileAnswer::Missing);
        };
        let bytes = match source {
            Source::Bytes(b) => b.to_vec(),
            Source::File(mut f) => {
                let total = f.metadata().map_err(|e| e.to_string())?.len();
                f.seek(SeekFrom::Start(offset.min(total)))
                    .map_err(|e| e.to_string())?;
                let mut part = Vec::new();
                f.take(CHUNK)
                    .read_to_end(&mut part)
                    .map_err(|e| e.to_string())?;
                return Ok(FileAnswer::Chunk { total, bytes: part });
            }
        };
        let total = bytes.len() as u64;
        let start = offset.min(total) as usize;
        let end = (offset.saturating_add(CHUNK)).min(total) as usize;
        Ok(FileAnswer::Chunk {
            total,
            bytes: bytes[start..end].to_vec(),
        })
    };
    read().unwrap_or_else(FileAnswer::Failed)
}

impl Replicas for ColdFiles {
    fn replicate<'a>(
        &'a self,
        storage: &'a StorageDef,
        files: &'a [LocalFile],
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ColdResult<()>> + Send + 'a>> {
        Box::pin(async move {
            let (me, others) = self.members(true);
            let Some(me) = me else {
                return Err("this node is not a member of the cluster it applied".to_owned());
            };
            // A majority of the voters, this one counted (a learner's job counts only others).
            let voters = others.len() + 1;
            let need = (voters / 2 + 1).saturating_sub(1);
            if need == 0 || files.is_empty() {
                return Ok(());
            }
            let bytes: u64 = files.iter().map(|f| f.bytes).sum();
            // Generous: a copy at 10 MB/s, plus a start.
            let wait = Duration::from_secs(10 + bytes / 10_000_000);
            let mut asks = tokio::task::JoinSet::new();
            for addr in others {
                let (peers, request) = (
                    self.peers.clone(),
                    FileRequest::Pull {
                        from: me.clone(),
                        storage: storage.id.clone(),
                        files: files.to_vec(),
                    },
                );
                asks.spawn(async move {
                    let answer = peers
                        .call::<_, FileAnswer>(&addr, Rpc::File, &request, wait)
                        .await;
                    (addr, answer)
                });
            }
            let (mut held, mut problems) = (0, Vec::new());
            while let Some(done) = asks.join_next().await {
                match done {
                    Ok((_, Ok(FileAnswer::Held))) => {
                        held += 1;
                        if held >= need {
                            // The others finish their copies on their own.
                            asks.detach_all();
                            return Ok(());
                        }
                    }
                    Ok((addr, Ok(FileAnswer::Failed(why)))) => {
                        problems.push(format!("node {addr}: {why}"))
                    }
                    Ok((addr, Ok(other))) => {
                        problems.push(format!("node {addr} answered {other:?}"))
                    }
                    Ok((_, Err(e))) => problems.push(e.to_string()),
                    Err(e) => problems.push(e.to_string()),
                }
            }
            Err(format!(
                "the job's files reached {held} other member(s), a majority needs {need}: {}",
                problems.join("; ")
            ))
        })
    }

    fn jobs_elsewhere(
        &self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ColdResult<Vec<String>>> + Send + '_>>
    {
        Box::pin(async move {
            let (_, others) = self.members(false);
            let mut asks = tokio::task::JoinSet::new();
            for addr in others {
                let peers = self.peers.clone();
                asks.spawn(async move {
                    let answer = peers
                        .call::<_, FileAnswer>(&addr, Rpc::File, &FileRequest::Jobs, JOBS_WAIT)
                        .await;
                    (addr, answer)
                });
            }
            let mut jobs = Vec::new();
            while let Some(done) = asks.join_next().await {
                match done {
                    Ok((_, Ok(FileAnswer::Jobs(theirs)))) => jobs.extend(theirs),
                    Ok((addr, Ok(FileAnswer::Failed(why)))) => {
                        return Err(format!("node {addr}: {why}"));
                    }
                    Ok((addr, Ok(other))) => {
                        return Err(format!("node {addr} answered {other:?}"));
                    }
                    Ok((addr, Err(e))) => return Err(format!("node {addr}: {e}")),
                    Err(e) => return Err(e.to_string()),
                }
            }
            Ok(jobs)
        })
    }
}

/// The cold tier as a cluster member's fold reads it: the node's [`ColdStore`], with commits
/// of node-local storages held through [`ColdFiles`].
#[derive(Debug)]
pub struct ClusterCold {
    pub cold: Arc<ColdStore>,
    pub files: Arc<ColdFiles>,
}

impl ColdTier for ClusterCold {
    fn get(
        &self,
        state: &dyn StateRead,
        storage: &StorageDef,
        def: &TableDef,
        scope: &str,
        pk: &Value,
    ) -> ColdResult<Option<folddb_materializer::RowVersion>> {
        self.cold.get(state, storage, def, scope, pk)
    }

    fn hold(&self, index: u64, storage: &StorageDef, files: &[LocalFile]) -> ColdResult<()> {
        self.files.hold(index, storage, files)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_segment_paths_inside_a_storage_are_served() {
        assert!(safe_path("ns/t/batch-FL-1.parquet"));
        assert!(safe_path("ns/t/u1/batch-FL-1.parquet"));
        for bad in [
            "",
            "/etc/passwd.parquet",
            "../x.parquet",
            "ns/../../x.parquet",
            "ns/./x.parquet",
            "ns//x.parquet",
            "ns\\x.parquet",
            "ns/t/manifest.json",
        ] {
            assert!(!safe_path(bad), "{bad}");
        }
    }

    #[test]
    fn golden_file_rpc_bytes() {
        // cluster/FORMAT.md, "Cold files between members".
        assert_eq!(encode_message(&FileAnswer::Missing), [1, 1]);
        assert_eq!(encode_message(&FileAnswer::Gone), [1, 2]);
        assert_eq!(encode_message(&FileAnswer::Held), [1, 3]);
        assert_eq!(
            encode_message(&FileAnswer::Chunk {
                total: 3,
                bytes: vec![7, 8]
            }),
            [1, 0, 3, 2, 7, 8]
        );
        let read = FileRequest::Read {
            storage: "s".into(),
            path: "a.parquet".into(),
            offset: 1,
            listed_at: 2,
        };
        let mut want = vec![1, 0, 1, b's', 9];
        want.extend_from_slice(b"a.parquet");
        want.extend_from_slice(&[1, 2]);
        assert_eq!(encode_message(&read), want);
        assert_eq!(encode_message(&FileRequest::Jobs), [1, 2]);
        assert_eq!(
            encode_message(&FileAnswer::Jobs(vec!["FL-1".into()])),
            [1, 5, 1, 4, b'F', b'L', b'-', b'1']
        );
        let back: FileAnswer = decode_message(&[1, 4, 2, b'n', b'o']).expect("decodes");
        assert!(matches!(back, FileAnswer::Failed(m) if m == "no"));
    }
}
