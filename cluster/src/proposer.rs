//! [`Proposer`]: the node's implementation of the materializer's `Propose`. Concurrent
//! commands are packed into one raft entry (group proposal) so they share one append, one
//! fsync and one apply; each command is still applied atomically and on its own, and gets
//! its own outcome back.
//!
//! openraft 0.9 appends and applies one entry per `client_write`, at ~180 µs each on this
//! hardware, so without packing the whole node tops out near 5,700 writes/s however many
//! clients there are (`folddb bench raft`). Packing keeps the entry count proportional to
//! the number of batches in flight, not to the number of clients.

use std::sync::Arc;

use std::time::Duration;

use folddb_materializer::event::{decode_outcomes, encode_entry};
use folddb_materializer::{Command as Event, Outcome, Propose, ProposeError, ProposeFuture};
use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, Raft};
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::network::{CallError, Peers, Proposed, Rpc};
use crate::{Command, CommandResult, TypeConfig};

/// Most commands packed into one entry.
const MAX_COMMANDS_PER_ENTRY: usize = 512;
/// Most entries being proposed at once. Each entry costs about 130 µs of CPU beyond its
/// commands (raft's bookkeeping, the append, the fsync, the apply hand-off, the wake-ups), so
/// a second entry is proposed while one is in flight only when it carries at least
/// [`PIPELINED_ROWS`] rows; smaller ones wait, gathering the commands that arrive meanwhile,
/// until the entry in flight is done. Measured with `folddb bench sql` on 2 cores, runs
/// interleaved: with 64 clients inserting one row each, 1 entry in flight gave 22.1k / 22.9k
/// rows/s at 55 µs of server CPU per row, 2 gave 20.6k / 20.8k at 59 µs, 3 gave 17.8k at
/// 65 µs; with 4 clients inserting 1,000 rows each, 2 in flight gave 238k / 225k / 243k rows/s
/// and 1 gave 207k / 218k / 210k, since the append of one entry then overlaps the apply of
/// the other.
const MAX_ENTRIES_IN_FLIGHT: usize = 2;
/// Rows from which an entry is worth proposing beside one in flight (see
/// [`MAX_ENTRIES_IN_FLIGHT`]): a few milliseconds of apply, against its fixed 130 µs.
const PIPELINED_ROWS: usize = 256;

type Reply = oneshot::Sender<Result<Outcome, ProposeError>>;

/// Why a stopped node accepts no writes.
const STOPPED: &str = "this node stopped after a storage failure (is the disk full? /health says \
     why) and accepts no writes until it is restarted";

/// Packs concurrent commands into raft entries. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Proposer {
    tx: mpsc::UnboundedSender<(Event, Reply)>,
}

impl Proposer {
    /// Proposes through `raft`; on a member of a cluster (`peers`), a node that is not the
    /// leader hands each entry to the leader instead.
    pub(crate) fn start(raft: Raft<TypeConfig>, id: u64, peers: Option<Peers>) -> Proposer {
        let (tx, rx) = mpsc::unbounded_channel();
        let forward = peers.map(|peers| Forward { id, peers });
        tokio::spawn(pack(raft, forward, rx));
        Proposer { tx }
    }
}

/// How long a follower waits for the leader to commit a forwarded entry.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(30);

/// A follower's way to the leader.
#[derive(Clone, Debug)]
struct Forward {
    id: u64,
    peers: Peers,
}

impl Forward {
    /// The leader's address, when the leader is another node.
    fn leader_elsewhere(
        &self,
        raft: &Raft<TypeConfig>,
    ) -> Option<Result<(u64, String), ProposeError>> {
        let m = raft.metrics().borrow().clone();
        let leader = match m.current_leader {
            Some(l) if l == self.id => return None,
            Some(l) => l,
            None => return Some(Err(ProposeError::NotAccepted(NO_LEADER.to_owned()))),
        };
        Some(
            m.membership_config
                .membership()
                .get_node(&leader)
                .map(|n| (leader, n.addr.clone()))
                .ok_or_else(|| ProposeError::NotAccepted(NO_LEADER.to_owned())),
        )
    }

    /// Hands `entry` to the leader (`leader` at `addr`) and waits for it to be committed and
    /// applied, or for another leader to be elected: a leader cut off (paused, partitioned)
    /// may hold the request until the timeout, and the node must not wait that long.
    async fn propose(
        &self,
        raft: &Raft<TypeConfig>,
        (leader, addr): (u64, &str),
        entry: Command,
    ) -> Result<CommandResult, ProposeError> {
        let call = self
            .peers
            .call::<_, Proposed>(addr, Rpc::Propose, &entry, FORWARD_TIMEOUT);
        let answer = tokio::select! {
            answer = call => answer,
            () = crate::node::leader_changes(raft, leader) => {
                return Err(ProposeError::Unknown(format!(
                    "the leader at {addr} was replaced while this write was forwarded to it; \
                     its outcome is unknown"
                )));
            }
        };
        match answer {
            Ok(Proposed::Applied(result)) => Ok(result),
            Ok(Proposed::NotLeader(leader)) => Err(ProposeError::NotAccepted(format!(
                "NOT_LEADER: the leader changed while this write was forwarded; nothing was \
                 written, retry{}",
                leader.map_or_else(String::new, |l| format!(" (the leader is now at {l})"))
            ))),
            Ok(Proposed::Failed(why)) => Err(ProposeError::Unknown(format!(
                "the leader failed to commit this write, whose outcome is unknown: {why}"
            ))),
            Err(CallError::Unreachable(why)) => Err(ProposeError::NotAccepted(format!(
                "LEADER_NOT_AVAILABLE: the leader at {addr} cannot be reached ({why}); nothing \
                 was written"
            ))),
            Err(e) => Err(ProposeError::Unknown(format!(
                "the leader at {addr} was lost while committing this write, whose outcome is \
                 unknown: {e}"
            ))),
        }
    }
}

/// Why a node without a known leader takes no writes.
const NO_LEADER: &str = "LEADER_NOT_AVAILABLE: the cluster has no leader at the moment (an \
     election is under way, or too few nodes are up); nothing was written";

async fn pack(
    raft: Raft<TypeConfig>,
    forward: Option<Forward>,
    mut rx: mpsc::UnboundedReceiver<(Event, Reply)>,
) {
    let slots = Arc::new(Semaphore::new(MAX_ENTRIES_IN_FLIGHT));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = rx.recv().await else {
            return;
        };
        let mut batch = Batch::default();
        let mut open = batch.take(first);
        open = open && batch.drain(&mut rx);
        // Another entry is in flight (this one holds a slot too): unless this one is large,
        // let that one finish first and take the commands that arrived meanwhile.
        let others_in_flight = MAX_ENTRIES_IN_FLIGHT - 1 - slots.available_permits();
        if open && batch.rows < PIPELINED_ROWS && others_in_flight > 0 {
            drop(slots.clone().acquire_owned().await);
            batch.drain(&mut rx);
        }
        let Batch {
            commands, replies, ..
        } = batch;
        // A node whose raft core quit (a storage write failed) accepts nothing until it is
        // restarted: say so, rather than hand the client openraft's fatal error.
        if raft.metrics().borrow().running_state.is_err() {
            for reply in replies {
                let _ = reply.send(Err(ProposeError::NotAccepted(STOPPED.to_owned())));
            }
            continue;
        }
        let raft = raft.clone();
        let forward = forward.clone();
        tokio::spawn(async move {
            let entry = Command(encode_entry(&commands));
            drop(commands);
            let elsewhere = forward
                .as_ref()
                .and_then(|f| f.leader_elsewhere(&raft).map(|leader| (f, leader)));
            let outcome = match elsewhere {
                Some((f, Ok((leader, addr)))) => f.propose(&raft, (leader, &addr), entry).await,
                Some((_, Err(no_leader))) => Err(no_leader),
                None => raft
                    .client_write(entry)
                    .await
                    .map(|response| response.data)
                    .map_err(refusal),
            };
            drop(slot);
            match outcome {
                Ok(result) => match decode_outcomes(&result.0) {
                    Ok(outcomes) if outcomes.len() == replies.len() => {
                        for (reply, o) in replies.into_iter().zip(outcomes) {
                            let _ = reply.send(Ok(o));
                        }
                    }
                    other => {
                        let why = match other {
                            Ok(o) => format!("{} outcomes for {} commands", o.len(), replies.len()),
                            Err(e) => e.to_string(),
                        };
                        tracing::error!(%why, "an applied entry reported unreadable outcomes");
                        for reply in replies {
                            let _ = reply.send(Err(ProposeError::Unknown(why.clone())));
                        }
                    }
                },
                Err(err) => {
                    for reply in replies {
                        let _ = reply.send(Err(err.clone()));
                    }
                }
            }
        });
    }
}

/// What a client is told of a `client_write` that failed.
fn refusal(e: RaftError<u64, ClientWriteError<u64, BasicNode>>) -> ProposeError {
    match &e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
            ProposeError::NotAccepted(format!(
                "NOT_LEADER: this node is not the leader; nothing was written{}",
                f.leader_node
                    .as_ref()
                    .map_or_else(String::new, |n| format!(" (the leader is at {})", n.addr))
            ))
        }
        RaftError::Fatal(fatal) => {
            tracing::error!(error = %fatal, "raft's core stopped");
            ProposeError::Unknown(format!(
                "{STOPPED}; this write's outcome is unknown until then"
            ))
        }
        _ => ProposeError::Unknown(e.to_string()),
    }
}

/// The commands gathered for one entry.
#[derive(Default)]
struct Batch {
    commands: Vec<Event>,
    replies: Vec<Reply>,
    rows: usize,
}

impl Batch {
    /// Adds a command; whether the entry has room for more.
    fn take(&mut self, (command, reply): (Event, Reply)) -> bool {
        self.rows += command.rows();
        self.commands.push(command);
        self.replies.push(reply);
        self.commands.len() < MAX_COMMANDS_PER_ENTRY
    }

    /// Takes the commands already waiting, while there is room; whether room is left.
    fn drain(&mut self, rx: &mut mpsc::UnboundedReceiver<(Event, Reply)>) -> bool {
        while let Ok(next) = rx.try_recv() {
            if !self.take(next) {
                return false;
            }
        }
        true
    }
}

impl Propose for Proposer {
    fn propose(&self, command: Event) -> ProposeFuture<'_> {
        Box::pin(async move {
            let (tx, rx) = oneshot::channel();
            self.tx
                .send((command, tx))
                .map_err(|_| ProposeError::NotAccepted("the node is shutting down".into()))?;
            rx.await
                .map_err(|_| ProposeError::Unknown("the node stopped while proposing".into()))?
        })
    }
}
