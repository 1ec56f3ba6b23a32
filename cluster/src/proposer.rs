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

use folddb_materializer::event::{decode_outcomes, encode_entry};
use folddb_materializer::{Command as Event, Outcome, Propose, ProposeError, ProposeFuture};
use openraft::Raft;
use openraft::error::{ClientWriteError, RaftError};
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::{Command, TypeConfig};

/// Most commands packed into one entry.
const MAX_COMMANDS_PER_ENTRY: usize = 512;
/// Most entries being proposed at once; while they are in flight, new commands queue and
/// form the next, larger entry. Fewer, larger entries win on one node: with 64 clients
/// inserting one row each (`folddb bench sql`, 2 cores) 16 in flight gave 9.3k rows/s, 4
/// gave 17k, 2 gave 24k and 1 gave 25k; 2 keeps a pipeline for replication round trips.
const MAX_ENTRIES_IN_FLIGHT: usize = 2;

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
    pub(crate) fn start(raft: Raft<TypeConfig>) -> Proposer {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(pack(raft, rx));
        Proposer { tx }
    }
}

async fn pack(raft: Raft<TypeConfig>, mut rx: mpsc::UnboundedReceiver<(Event, Reply)>) {
    let slots = Arc::new(Semaphore::new(MAX_ENTRIES_IN_FLIGHT));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = rx.recv().await else {
            return;
        };
        let mut commands = vec![first.0];
        let mut replies = vec![first.1];
        while commands.len() < MAX_COMMANDS_PER_ENTRY {
            match rx.try_recv() {
                Ok((c, r)) => {
                    commands.push(c);
                    replies.push(r);
                }
                Err(_) => break,
            }
        }
        // A node whose raft core quit (a storage write failed) accepts nothing until it is
        // restarted: say so, rather than hand the client openraft's fatal error.
        if raft.metrics().borrow().running_state.is_err() {
            for reply in replies {
                let _ = reply.send(Err(ProposeError::NotAccepted(STOPPED.to_owned())));
            }
            continue;
        }
        let raft = raft.clone();
        tokio::spawn(async move {
            let entry = Command(encode_entry(&commands));
            drop(commands);
            let outcome = raft.client_write(entry).await;
            drop(slot);
            match outcome {
                Ok(response) => match decode_outcomes(&response.data.0) {
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
                Err(e) => {
                    let err = match &e {
                        RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => {
                            ProposeError::NotAccepted(format!("this node is not the leader: {e}"))
                        }
                        RaftError::Fatal(fatal) => {
                            tracing::error!(error = %fatal, "raft's core stopped");
                            ProposeError::Unknown(format!(
                                "{STOPPED}; this write's outcome is unknown until then"
                            ))
                        }
                        _ => ProposeError::Unknown(e.to_string()),
                    };
                    for reply in replies {
                        let _ = reply.send(Err(err.clone()));
                    }
                }
            }
        });
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
