//! Operating a cluster: the `CLUSTER …` statements (API.md 3.13). Membership changes go
//! through the log like any write (openraft's joint consensus); leadership moves by letting
//! the chosen node win an election while the others hold back.
//!
//! Which node acts:
//! - `JOIN`, `REMOVE`, `TRANSFER LEADER` and `STEPDOWN` are the leader's: a node that is not
//!   the leader hands them to it ([`Rpc::Admin`]) and answers with its outcome.
//! - `SNAPSHOT` and `TRIGGER ELECTION` act on the node asked.

use std::collections::BTreeSet;
use std::time::Duration;

use openraft::error::{ChangeMembershipError, ClientWriteError, RaftError};
use openraft::{BasicNode, ChangeMembers};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::network::Rpc;
use crate::node::Node;
use folddb_materializer::Fold;

/// How long a joining node has to catch up with the leader's log before it is made a voter.
const JOIN_CATCH_UP: Duration = Duration::from_secs(60);
/// How long a leadership transfer may take; the other voters hold back from elections this
/// long at most, so a target that never campaigns delays the next election by no more.
const TRANSFER_WINDOW: Duration = Duration::from_secs(3);
/// How long a forwarded operation may take at the leader.
const FORWARD_WAIT: Duration = Duration::from_secs(75);
/// How long a snapshot may take to build.
const SNAPSHOT_WAIT: Duration = Duration::from_secs(300);

/// A cluster operation the leader performs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Admin {
    /// Adds node `id` at `addr` (its API address): first as a learner, which receives the
    /// log; once it has caught up, as a voter.
    Join { id: u64, addr: String },
    /// Removes node `id` from the cluster.
    Remove { id: u64 },
    /// Moves leadership to node `to`, or to the most caught-up other voter.
    Transfer { to: Option<u64> },
    /// To a voter, from the leader moving leadership: do not campaign for `millis` ms
    /// (0: campaign again as usual).
    Hold { millis: u64 },
}

/// What a node answers an [`Admin`] request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum AdminAnswer {
    Done(String),
    /// The node is not the leader; the leader's address, when it knows one.
    NotLeader(Option<String>),
    /// The request cannot be done as asked (an unknown node, the last voter); nothing changed.
    Invalid(String),
    /// It failed; the message says what was changed, if anything.
    Failed(String),
}

impl AdminAnswer {
    fn of(result: Result<String>) -> AdminAnswer {
        match result {
            Ok(message) => AdminAnswer::Done(message),
            Err(Error::Invalid(m)) => AdminAnswer::Invalid(m),
            Err(e) => AdminAnswer::Failed(e.to_string()),
        }
    }
}

fn failed(op: &'static str) -> impl Fn(String) -> Error {
    move |reason| Error::Raft { op, reason }
}

impl<F: Fold> Node<F> {
    /// Runs `op` on the leader: here if this node leads, else handed to the leader.
    pub async fn administer(&self, op: Admin) -> Result<String> {
        if let Admin::Hold { millis } = op {
            self.hold(millis);
            return Ok(format!("holding back from elections for {millis} ms"));
        }
        let Some(peers) = &self.peers else {
            return Err(Error::Invalid(
                "this node runs alone: CLUSTER commands need a cluster (start the node with \
                 --cluster-secret, and --peers to name the others)"
                    .to_owned(),
            ));
        };
        match self.leader() {
            Some((leader, _)) if leader == self.id => self.lead(op).await,
            Some((_, addr)) => {
                let answer: AdminAnswer = peers
                    .call(&addr, Rpc::Admin, &op, FORWARD_WAIT)
                    .await
                    .map_err(|e| Error::Unavailable(format!("LEADER_NOT_AVAILABLE: {e}")))?;
                match answer {
                    AdminAnswer::Done(m) => Ok(m),
                    AdminAnswer::Invalid(m) => Err(Error::Invalid(m)),
                    AdminAnswer::Failed(m) => Err(failed("run the operation at the leader")(m)),
                    AdminAnswer::NotLeader(_) => Err(Error::Unavailable(
                        "NOT_LEADER: leadership moved while the operation was forwarded; \
                         nothing was done, retry"
                            .to_owned(),
                    )),
                }
            }
            None => Err(Error::Unavailable(
                "LEADER_NOT_AVAILABLE: the cluster has no leader at the moment".to_owned(),
            )),
        }
    }

    /// Answers an [`Admin`] request a peer forwarded.
    pub(crate) async fn answer_admin(&self, op: Admin) -> AdminAnswer {
        if let Admin::Hold { millis } = op {
            self.hold(millis);
            return AdminAnswer::Done(String::new());
        }
        if self.leader().map(|(l, _)| l) != Some(self.id) {
            return AdminAnswer::NotLeader(self.leader().map(|(_, a)| a));
        }
        AdminAnswer::of(self.lead(op).await)
    }

    async fn lead(&self, op: Admin) -> Result<String> {
        match op {
            Admin::Join { id, addr } => self.join(id, addr).await,
            Admin::Remove { id } => self.remove(id).await,
            Admin::Transfer { to } => self.transfer(to).await,
            Admin::Hold { millis } => {
                self.hold(millis);
                Ok(String::new())
            }
        }
    }

    fn voters(&self) -> BTreeSet<u64> {
        let m = self.raft.metrics().borrow().clone();
        m.membership_config.membership().voter_ids().collect()
    }

    async fn join(&self, id: u64, addr: String) -> Result<String> {
        if self.voters().contains(&id) {
            return Err(Error::Invalid(format!(
                "node {id} is already a voting member of the cluster"
            )));
        }
        let learner = self.raft.add_learner(id, BasicNode::new(&addr), true);
        match tokio::time::timeout(JOIN_CATCH_UP, learner).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(membership_error(e)),
            Err(_) => {
                return Err(failed("add the node")(format!(
                    "node {id} at {addr} is a learner, but did not catch up with the log \
                     within {} s (is it running, with this cluster's id and secret?); run \
                     CLUSTER JOIN again once it is reachable to make it a voter",
                    JOIN_CATCH_UP.as_secs()
                )));
            }
        }
        let voters = ChangeMembers::AddVoterIds(BTreeSet::from([id]));
        self.raft
            .change_membership(voters, false)
            .await
            .map_err(membership_error)?;
        Ok(format!(
            "Node {id} at {addr} joined the cluster as a voter: it caught up with the log as a \
             learner first"
        ))
    }

    async fn remove(&self, id: u64) -> Result<String> {
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership().clone();
        if membership.get_node(&id).is_none() {
            return Err(Error::Invalid(format!(
                "node {id} is not a member of the cluster"
            )));
        }
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        let change = if voters.contains(&id) {
            if voters.len() == 1 {
                return Err(Error::Invalid(format!(
                    "node {id} is the cluster's last voter and cannot be removed"
                )));
            }
            ChangeMembers::RemoveVoters(BTreeSet::from([id]))
        } else {
            ChangeMembers::RemoveNodes(BTreeSet::from([id]))
        };
        self.raft
            .change_membership(change, false)
            .await
            .map_err(membership_error)?;
        Ok(format!("Node {id} was removed from the cluster"))
    }

    /// Moves leadership to `to` (or the most caught-up other voter): the other voters hold
    /// back from elections, this node stops its heartbeats, and `to` campaigns once its
    /// election timer fires and wins, its log being as long as any. The window is bounded:
    /// past it everyone campaigns as usual again.
    async fn transfer(&self, to: Option<u64>) -> Result<String> {
        let m = self.raft.metrics().borrow().clone();
        let voters = self.voters();
        let last = m.last_log_index.unwrap_or(0);
        let matched = |id: &u64| {
            m.replication
                .as_ref()
                .and_then(|r| r.get(id).copied().flatten())
                .map_or(0, |l| l.index)
        };
        let target = match to {
            Some(t) if t == self.id => {
                return Ok(format!("Node {t} already leads the cluster"));
            }
            Some(t) if !voters.contains(&t) => {
                return Err(Error::Invalid(format!(
                    "node {t} is not a voting member of the cluster"
                )));
            }
            Some(t) => t,
            None => voters
                .iter()
                .filter(|v| **v != self.id)
                .max_by_key(|v| matched(v))
                .copied()
                .ok_or_else(|| {
                    Error::Invalid("this node is the cluster's only voter".to_owned())
                })?,
        };
        if matched(&target) < last {
            // A follower a few entries behind catches up within a heartbeat or two.
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let peers = self.peers.as_ref().ok_or_else(|| {
            Error::Invalid("this node runs alone: there is no one to lead instead".to_owned())
        })?;
        let hold = Admin::Hold {
            millis: TRANSFER_WINDOW.as_millis() as u64,
        };
        let others: Vec<(u64, String)> = m
            .membership_config
            .membership()
            .nodes()
            .filter(|(id, _)| voters.contains(id) && **id != target && **id != self.id)
            .map(|(id, n)| (*id, n.addr.clone()))
            .collect();
        for (_, addr) in &others {
            // A voter out of reach cannot campaign either.
            let _ = peers
                .call::<_, AdminAnswer>(addr, Rpc::Admin, &hold, Duration::from_secs(1))
                .await;
        }
        let runtime = self.raft.runtime_config();
        runtime.elect(false);
        runtime.heartbeat(false);
        let moved = self
            .raft
            .wait(Some(TRANSFER_WINDOW))
            .metrics(
                |m| m.current_leader.is_some_and(|l| l != self.id),
                "leadership moves",
            )
            .await;
        runtime.heartbeat(true);
        runtime.elect(true);
        let release = Admin::Hold { millis: 0 };
        for (_, addr) in &others {
            let _ = peers
                .call::<_, AdminAnswer>(addr, Rpc::Admin, &release, Duration::from_secs(1))
                .await;
        }
        let leader = self.raft.metrics().borrow().current_leader;
        match (moved, leader) {
            (_, Some(l)) if l == target => Ok(format!("Leadership moved to node {target}")),
            (Ok(_), Some(l)) => Ok(format!(
                "Leadership moved to node {l}: node {target} did not win the election"
            )),
            _ => Err(failed("move leadership")(format!(
                "node {target} did not win an election within {} s (under heavy writes the \
                 leader's appends keep the others from voting); this node still leads",
                TRANSFER_WINDOW.as_secs()
            ))),
        }
    }

    /// Holds this node back from campaigning for `millis` ms (0: releases it now).
    fn hold(&self, millis: u64) {
        let runtime = self.raft.runtime_config();
        if millis == 0 {
            runtime.elect(true);
            return;
        }
        runtime.elect(false);
        let raft = self.raft.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(millis)).await;
            raft.runtime_config().elect(true);
        });
    }

    /// Builds a snapshot of this node's state (`CLUSTER SNAPSHOT`). In a cluster raft then
    /// forgets the log up to `snapshot_keep_entries` before it (a purge marker: the segments
    /// stay per the log's retention); a single node purges nothing.
    pub async fn snapshot(&self) -> Result<String> {
        let applied = self.raft.metrics().borrow().last_applied;
        self.raft
            .trigger()
            .snapshot()
            .await
            .map_err(|e| failed("build a snapshot")(e.to_string()))?;
        let built = self
            .raft
            .wait(Some(SNAPSHOT_WAIT))
            .metrics(|m| m.snapshot >= applied, "build a snapshot")
            .await
            .map_err(|e| failed("build a snapshot")(e.to_string()))?;
        let at = built.snapshot.map_or(0, |l| l.index);
        Ok(format!(
            "Snapshot built on node {} at log index {at}",
            self.id
        ))
    }

    /// Makes this node campaign now (`CLUSTER TRIGGER ELECTION`). While a leader is alive
    /// and heard from, the others refuse to vote, and the leader stays.
    pub async fn trigger_election(&self) -> Result<String> {
        self.raft
            .trigger()
            .elect()
            .await
            .map_err(|e| failed("start an election")(e.to_string()))?;
        Ok(format!("Node {} started an election", self.id))
    }
}

fn membership_error(e: RaftError<u64, ClientWriteError<u64, BasicNode>>) -> Error {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => Error::Unavailable(
            "NOT_LEADER: leadership moved during the change; retry it".to_owned(),
        ),
        RaftError::APIError(ClientWriteError::ChangeMembershipError(
            ChangeMembershipError::InProgress(_),
        )) => Error::Invalid(
            "another membership change is under way; retry once it is done".to_owned(),
        ),
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
            Error::Invalid(e.to_string())
        }
        e => failed("change the membership")(e.to_string()),
    }
}
