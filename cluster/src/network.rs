//! Raft RPC between the nodes of a cluster: HTTP on each node's API port under `/v1/raft/*`
//! (DESIGN.md "Cluster"). Bodies are [`encode_message`] bytes, the format the log already
//! uses for entries. Every request carries the cluster's id and secret; a node answers
//! nothing to a caller of another cluster or without the secret (the HTTP layer refuses it
//! with 401 before a byte of the body is decoded).
//!
//! Besides openraft's three RPCs (append entries, vote, install snapshot) two are ours: a
//! follower hands a write to the leader (`propose`), and asks it how far it must have applied
//! before it may serve a read (`read-index`); any node hands a cluster operation to the
//! leader, and the leader asks voters to hold back from elections while it hands over
//! (`admin`); members copy each other's cold files of node-local storages (`file`).

use std::time::Duration;

use openraft::BasicNode;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::codec::{decode_message, encode_message};
use crate::error::{Error, Result};
use crate::{CommandResult, TypeConfig};

/// The header naming the caller's cluster.
pub const CLUSTER_HEADER: &str = "x-folddb-cluster-id";
/// The header carrying the cluster's shared secret.
pub const SECRET_HEADER: &str = "x-folddb-cluster-secret";

/// How long a connection to a peer may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// The RPCs a node answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rpc {
    Append,
    Vote,
    Snapshot,
    Propose,
    ReadIndex,
    /// A cluster operation for the leader (`CLUSTER JOIN`, …), or a hold on elections.
    Admin,
    /// A cold file of a node-local storage: read a chunk, or pull a job's files
    /// ([`crate::files`]).
    File,
}

impl Rpc {
    pub const ALL: [Rpc; 7] = [
        Rpc::Append,
        Rpc::Vote,
        Rpc::Snapshot,
        Rpc::Propose,
        Rpc::ReadIndex,
        Rpc::Admin,
        Rpc::File,
    ];

    pub fn path(self) -> &'static str {
        match self {
            Rpc::Append => "/v1/raft/append",
            Rpc::Vote => "/v1/raft/vote",
            Rpc::Snapshot => "/v1/raft/snapshot",
            Rpc::Propose => "/v1/raft/propose",
            Rpc::ReadIndex => "/v1/raft/read-index",
            Rpc::Admin => "/v1/raft/admin",
            Rpc::File => "/v1/raft/file",
        }
    }

    pub fn from_path(path: &str) -> Option<Rpc> {
        Rpc::ALL.into_iter().find(|r| r.path() == path)
    }
}

/// What identifies the members of one cluster to each other: its id and shared secret.
#[derive(Clone)]
pub struct ClusterAuth {
    pub cluster_id: String,
    pub secret: String,
}

impl std::fmt::Debug for ClusterAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterAuth")
            .field("cluster_id", &self.cluster_id)
            .field("secret", &"<hidden>")
            .finish()
    }
}

impl ClusterAuth {
    /// Whether a request's headers name this cluster and carry its secret (compared in
    /// constant time).
    pub fn admits(&self, cluster_id: Option<&str>, secret: Option<&str>) -> bool {
        let same_secret =
            secret.is_some_and(|s| constant_time_eq(s.as_bytes(), self.secret.as_bytes()));
        same_secret && cluster_id == Some(self.cluster_id.as_str())
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Why an RPC got no answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// No connection could be opened: the request was never sent.
    #[error("{0}")]
    Unreachable(String),
    /// The peer answered with an error status (a wrong secret, a request it could not
    /// decode, a node shutting down).
    #[error("{0}")]
    Refused(String),
    /// The request may have been sent, but no answer came back (a timeout, a reset, an answer
    /// that does not decode).
    #[error("{0}")]
    Lost(String),
}

/// The HTTP client of a node's RPCs to its peers. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Peers {
    client: reqwest::Client,
    auth: ClusterAuth,
}

impl Peers {
    pub fn new(auth: ClusterAuth) -> Result<Peers> {
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .build()
            .map_err(|e| Error::Raft {
                op: "build the peer client",
                reason: e.to_string(),
            })?;
        Ok(Peers { client, auth })
    }

    pub fn auth(&self) -> &ClusterAuth {
        &self.auth
    }

    /// Sends `req` to the node at `addr` (`host:port`) and decodes its answer.
    pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        addr: &str,
        rpc: Rpc,
        req: &Req,
        timeout: Duration,
    ) -> std::result::Result<Resp, CallError> {
        let sent = self
            .client
            .post(format!("http://{addr}{}", rpc.path()))
            .header(CLUSTER_HEADER, &self.auth.cluster_id)
            .header(SECRET_HEADER, &self.auth.secret)
            .timeout(timeout)
            .body(encode_message(req))
            .send()
            .await;
        let response = match sent {
            Ok(r) => r,
            Err(e) if e.is_connect() => {
                return Err(CallError::Unreachable(format!("node {addr}: {e}")));
            }
            Err(e) => return Err(CallError::Lost(format!("node {addr}: {e}"))),
        };
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| CallError::Lost(format!("node {addr}: {e}")))?;
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
            return Err(CallError::Refused(format!(
                "node {addr} answered {status}: {text}"
            )));
        }
        decode_message(&body).map_err(|e| {
            CallError::Lost(format!(
                "node {addr} sent an answer that does not decode: {e}"
            ))
        })
    }
}

/// What the leader answers a forwarded write.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Proposed {
    /// Committed and applied: what applying it reported.
    Applied(CommandResult),
    /// The node is not the leader (any more): nothing was proposed. The leader's address,
    /// when it knows one.
    NotLeader(Option<String>),
    /// Proposing failed; whether the entry was committed is unknown.
    Failed(String),
}

/// What the leader answers a read barrier's question.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ReadIndex {
    /// Everything committed before the question has an index at most this.
    At(u64),
    /// The node is not the leader (any more); the leader's address, when it knows one.
    NotLeader(Option<String>),
}

/// openraft's `InstallSnapshotRequest` as it travels: the same fields in the same order, so
/// the same bytes, with the chunk encoded as one run (openraft's own derive writes it byte by
/// byte, which costs seconds per 4 MiB chunk in a debug build).
#[derive(Debug, Serialize, Deserialize)]
pub struct SnapshotChunk {
    vote: openraft::Vote<u64>,
    meta: openraft::SnapshotMeta<u64, BasicNode>,
    offset: u64,
    #[serde(with = "serde_bytes")]
    data: Vec<u8>,
    done: bool,
}

impl From<InstallSnapshotRequest<TypeConfig>> for SnapshotChunk {
    fn from(r: InstallSnapshotRequest<TypeConfig>) -> SnapshotChunk {
        SnapshotChunk {
            vote: r.vote,
            meta: r.meta,
            offset: r.offset,
            data: r.data,
            done: r.done,
        }
    }
}

impl From<SnapshotChunk> for InstallSnapshotRequest<TypeConfig> {
    fn from(c: SnapshotChunk) -> InstallSnapshotRequest<TypeConfig> {
        InstallSnapshotRequest {
            vote: c.vote,
            meta: c.meta,
            offset: c.offset,
            data: c.data,
            done: c.done,
        }
    }
}

/// openraft's network over [`Peers`].
#[derive(Clone, Debug)]
pub struct HttpNetwork {
    peers: Peers,
}

impl HttpNetwork {
    pub fn new(peers: Peers) -> HttpNetwork {
        HttpNetwork { peers }
    }
}

impl RaftNetworkFactory<TypeConfig> for HttpNetwork {
    type Network = PeerClient;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> PeerClient {
        PeerClient {
            peers: self.peers.clone(),
            target,
            addr: node.addr.clone(),
        }
    }
}

/// One peer, as openraft sends it RPCs.
#[derive(Debug)]
pub struct PeerClient {
    peers: Peers,
    target: u64,
    addr: String,
}

fn io_error(message: String) -> std::io::Error {
    std::io::Error::other(message)
}

impl PeerClient {
    async fn rpc<Req, Resp, E>(
        &self,
        rpc: Rpc,
        req: &Req,
        option: &RPCOption,
    ) -> std::result::Result<Resp, RPCError<u64, BasicNode, RaftError<u64, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let answer: std::result::Result<Resp, RaftError<u64, E>> = self
            .peers
            .call(&self.addr, rpc, req, option.soft_ttl())
            .await
            .map_err(|e| match e {
                CallError::Unreachable(m) => RPCError::Unreachable(Unreachable::new(&io_error(m))),
                other => RPCError::Network(NetworkError::new(&io_error(other.to_string()))),
            })?;
        answer.map_err(|e| {
            RPCError::RemoteError(RemoteError::new_with_node(
                self.target,
                BasicNode::new(&self.addr),
                e,
            ))
        })
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> std::result::Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>>
    {
        self.rpc(Rpc::Append, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> std::result::Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>,
    > {
        self.rpc(Rpc::Snapshot, &SnapshotChunk::from(rpc), &option)
            .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> std::result::Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        self.rpc(Rpc::Vote, &rpc, &option).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The wire bytes of the messages that carry byte strings are those of openraft's and
    /// serde's own encodings (a `Vec<u8>` as a sequence), so members of either build agree.
    #[test]
    fn byte_strings_travel_as_before() {
        let bytes: Vec<u8> = (0..=255u8).chain(0..44).collect();
        // The codec's version byte, then the length (a varint: 251, u16 LE), then the bytes.
        let mut want = vec![1, 251, 44, 1];
        want.extend_from_slice(&bytes);
        assert_eq!(encode_message(&crate::Command(bytes.clone())), want);
        assert_eq!(encode_message(&bytes), want);
        assert_eq!(encode_message(&CommandResult(bytes.clone())), want);
        let back: crate::Command = decode_message(&want).expect("decodes");
        assert_eq!(back.0, bytes);

        let req = InstallSnapshotRequest::<TypeConfig> {
            vote: openraft::Vote::new_committed(3, 2),
            meta: openraft::SnapshotMeta {
                last_log_id: Some(openraft::LogId::new(
                    openraft::CommittedLeaderId::new(3, 2),
                    41,
                )),
                last_membership: Default::default(),
                snapshot_id: "3-41".into(),
            },
            offset: 4 << 20,
            data: bytes.clone(),
            done: true,
        };
        let wire = encode_message(&SnapshotChunk::from(req.clone()));
        assert_eq!(wire, encode_message(&req));
        let chunk: SnapshotChunk = decode_message(&wire).expect("decodes");
        assert_eq!(InstallSnapshotRequest::from(chunk), req);

        let answer = crate::files::FileAnswer::Chunk {
            total: 9,
            bytes: bytes.clone(),
        };
        let mut want = vec![1, 0, 9, 251, 44, 1];
        want.extend_from_slice(&bytes);
        assert_eq!(encode_message(&answer), want);
    }

    #[test]
    fn only_the_clusters_id_and_secret_are_admitted() {
        let auth = ClusterAuth {
            cluster_id: "c1".into(),
            secret: "s3cret".into(),
        };
        assert!(auth.admits(Some("c1"), Some("s3cret")));
        assert!(!auth.admits(Some("c1"), Some("s3cre")));
        assert!(!auth.admits(Some("c1"), Some("s3cret!")));
        assert!(!auth.admits(Some("c2"), Some("s3cret")));
        assert!(!auth.admits(None, Some("s3cret")));
        assert!(!auth.admits(Some("c1"), None));
        assert!(!format!("{auth:?}").contains("s3cret"));
    }

    #[test]
    fn golden_rpc_bytes() {
        // cluster/FORMAT.md, "Raft RPC between nodes".
        assert_eq!(encode_message(&()), [1]);
        assert_eq!(encode_message(&ReadIndex::At(7)), [1, 0, 7]);
        assert_eq!(
            encode_message(&ReadIndex::NotLeader(Some("h:1".into()))),
            [1, 1, 1, 3, b'h', b':', b'1']
        );
        assert_eq!(
            encode_message(&Proposed::Applied(CommandResult(vec![9]))),
            [1, 0, 1, 9]
        );
        assert_eq!(encode_message(&crate::Admin::Remove { id: 4 }), [1, 1, 4]);
        assert_eq!(
            encode_message(&crate::Admin::Join {
                id: 4,
                addr: "h:1".into()
            }),
            [1, 0, 4, 3, b'h', b':', b'1']
        );
        let ok: std::result::Result<u8, String> = Ok(5);
        assert_eq!(encode_message(&ok), [1, 0, 5]);
        let back: ReadIndex = decode_message(&[1, 0, 7]).expect("decodes");
        assert!(matches!(back, ReadIndex::At(7)));
        assert!(decode_message::<ReadIndex>(&[1, 2]).is_err());
        assert!(decode_message::<ReadIndex>(&[2, 0, 7]).is_err());
    }

    #[test]
    fn every_rpc_has_its_own_path() {
        for rpc in Rpc::ALL {
            assert_eq!(Rpc::from_path(rpc.path()), Some(rpc));
        }
        assert_eq!(Rpc::from_path("/v1/raft/"), None);
        assert_eq!(Rpc::from_path("/v1/raft/append/x"), None);
    }
}
