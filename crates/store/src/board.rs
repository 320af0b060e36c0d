//! The task board: remote job attempts handed between replicas.
//!
//! On a store several replicas share, a worker may be connected to any of
//! them, not necessarily to the one that owns the workflow. The owner
//! *posts* an attempt of a remote job on the board (under its workflow
//! lease); a replica with a free worker *claims* it (first come, skipping
//! rows another replica is claiming) and hands it to that worker; the
//! worker's checkpoints, log lines and result come back through the row,
//! and the owner records them in the workflow under its lease.
//!
//! Invariants:
//! - At most one row per job (workflow, block, job); posting replaces it.
//! - Owner acts ([`OwnerAct`]) are fenced by the workflow's lease, so an
//!   owner that lost the workflow can neither cancel, take back nor remove
//!   a task; a new owner *adopts* it instead, and the worker goes on.
//! - A claimer's reports ([`BoardReport`]) are fenced by its claim number:
//!   once the owner took the task back (or gave it to another claim), a
//!   late checkpoint, line or result of the old claim is refused.
//! - A claim lives while its replica renews it; one that lapsed counts as
//!   lost, and the owner decides as for a lost worker (safe: post again;
//!   reconcilable: post as a reconcile request; otherwise Interrupted).
//!   A claimer whose worker was lost says so, and the claim lapses a
//!   little later, so the worker can re-attach meanwhile: each claim
//!   carries a lease id the worker holds, and whoever presents it takes
//!   the claim over (on any replica), unless the task ended or the owner
//!   cancelled it or took it back.
//! - Every change to a row is announced on the feed ([`FeedItem::Task`](crate::FeedItem::Task)),
//!   so owners and claimers need not poll (they still do, slowly, as a
//!   backstop).

use interlock_core::{LogLine, Micros};
use std::time::Duration;

/// Which job a task is an attempt of.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskKey {
    pub workflow_id: String,
    pub block: usize,
    pub job: usize,
}

/// One row of the board.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoardTask {
    pub key: TaskKey,
    /// The attempt of the job it runs (its log lines are kept under it).
    pub attempt: u32,
    pub job_type: String,
    /// What a worker needs to run it, encoded by whoever posts it.
    pub spec: String,
    /// The lease epoch of the owner that posted (or adopted) it.
    pub owner_epoch: i64,
    pub posted_at: Micros,
    /// The replica holding it for one of its workers, if claimed.
    pub claimed_by: Option<String>,
    /// Bumped by every claim: fences the claimer's reports.
    pub claim: i64,
    /// When the claim lapses unless renewed.
    pub claim_expires: Micros,
    /// The lease id the claim's worker holds (it re-attaches with it).
    pub lease: Option<String>,
    /// The worker's newest checkpoint.
    pub checkpoint: Option<String>,
    /// The worker's result, once it sent one (encoded by the claimer).
    pub result: Option<String>,
    /// Why the claimer gave it back (its worker was lost).
    pub lost: Option<String>,
    /// Why the owner wants it stopped.
    pub cancel: Option<String>,
    /// The store's clock when the row was read: claims are judged by it.
    pub now: Micros,
}

impl BoardTask {
    /// A task as posted: not claimed, nothing reported.
    pub fn posted(
        key: TaskKey,
        attempt: u32,
        job_type: &str,
        spec: String,
        owner_epoch: i64,
        at: Micros,
    ) -> Self {
        Self {
            key,
            attempt,
            job_type: job_type.to_string(),
            spec,
            owner_epoch,
            posted_at: at,
            claimed_by: None,
            claim: 0,
            claim_expires: 0,
            lease: None,
            checkpoint: None,
            result: None,
            lost: None,
            cancel: None,
            now: at,
        }
    }

    /// Claimed, and the claim had not lapsed when the row was read (one
    /// given back lapses soon after, unless its worker re-attaches).
    pub fn held(&self) -> bool {
        self.claimed_by.is_some() && self.claim_expires >= self.now
    }

    /// Still wanted and not decided: waiting for a claim, held by a live
    /// one, or done with a result not yet recorded.
    pub fn in_flight(&self) -> bool {
        self.cancel.is_none() && (self.result.is_some() || self.claimed_by.is_none() || self.held())
    }

    /// The lease id a claim under `prefix` gives this task: unguessable
    /// when the prefix is, and distinct per task.
    pub fn lease_for(prefix: &str, key: &TaskKey) -> String {
        format!("{prefix}.{}.{}.{}", key.workflow_id, key.block, key.job)
    }
}

/// What the owner of a task's workflow does to it; each is fenced by the
/// workflow's lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnerAct {
    /// Ask the worker to stop (Cancel, e-stop, timeout, fatal sibling).
    Cancel(String),
    /// Take it back from its claim (lost, or lapsed) and post it again
    /// with this spec; its checkpoint stays.
    Repost(String),
    /// This owner runs the workflow now: the task counts as its attempt
    /// `attempt` (the worker goes on; its reports still land).
    Adopt { attempt: u32 },
    /// The attempt is over: drop the row.
    Remove,
}

/// What a claimer reports for a task it holds; each is fenced by its claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BoardReport {
    /// The worker's checkpoint (it is durable once this returns).
    Checkpoint(String),
    /// Log lines of the attempt, numbered after the ones it has; keeps
    /// the attempt's newest `keep`.
    Lines { lines: Vec<LogLine>, keep: u32 },
    /// The worker's result.
    Result(String),
    /// It never reached a worker here, and none here can take it now:
    /// posted again as it was, for any replica to claim.
    Release,
    /// Its worker was lost: unless the worker re-attaches within `grace`
    /// from now (the claim then lapses), the owner decides what happens
    /// next.
    Lost { why: String, grace: Duration },
}

/// The board of [`crate::memory::MemStore`]: the same rules, in a map.
#[derive(Default)]
pub(crate) struct MemBoard {
    rows: std::collections::BTreeMap<TaskKey, BoardTask>,
}

impl MemBoard {
    pub fn post(&mut self, mut task: BoardTask) {
        // Claim numbers only grow: a stale claim never matches again.
        if let Some(old) = self.rows.get(&task.key) {
            task.claim = task.claim.max(old.claim);
        }
        self.rows.insert(task.key.clone(), task);
    }

    /// `ended`: whether a workflow has ended (its tasks are not claimed).
    pub fn claim(
        &mut self,
        replica: &str,
        types: &[String],
        limit: usize,
        until: Micros,
        lease_prefix: &str,
        ended: impl Fn(&str) -> bool,
    ) -> Vec<BoardTask> {
        let mut open: Vec<&mut BoardTask> = self
            .rows
            .values_mut()
            .filter(|t| {
                t.claimed_by.is_none()
                    && t.result.is_none()
                    && t.cancel.is_none()
                    && types.contains(&t.job_type)
                    && !ended(&t.key.workflow_id)
            })
            .collect();
        open.sort_by_key(|t| t.posted_at);
        open.into_iter()
            .take(limit)
            .map(|t| {
                t.claimed_by = Some(replica.to_string());
                t.claim += 1;
                t.claim_expires = until;
                t.lease = Some(BoardTask::lease_for(lease_prefix, &t.key));
                t.clone()
            })
            .collect()
    }

    pub fn renew(&mut self, replica: &str, keys: &[TaskKey], now: Micros, until: Micros) {
        for k in keys {
            if let Some(t) = self.rows.get_mut(k)
                && t.claimed_by.as_deref() == Some(replica)
                && t.lost.is_none()
                && t.claim_expires >= now
            {
                t.claim_expires = t.claim_expires.max(until);
            }
        }
    }

    /// The row a report under `claim` may change, if that claim holds it.
    pub fn claimed(&mut self, key: &TaskKey, claim: i64) -> Option<&mut BoardTask> {
        self.rows
            .get_mut(key)
            .filter(|t| t.claimed_by.is_some() && t.claim == claim && t.lost.is_none())
    }

    /// `now`: a claim that lapsed by then was (or is being) decided by
    /// the owner, and is not re-attached.
    pub fn reattach(
        &mut self,
        lease: &str,
        replica: &str,
        now: Micros,
        until: Micros,
    ) -> Option<BoardTask> {
        let t = self.rows.values_mut().find(|t| {
            t.lease.as_deref() == Some(lease) && t.claimed_by.is_some() && t.result.is_none()
        })?;
        if t.cancel.is_some() {
            // Its worker must stop, and is told why.
            return Some(t.clone());
        }
        if t.claim_expires < now {
            return None;
        }
        reattach(t, replica, until);
        Some(t.clone())
    }

    pub fn act(&mut self, key: &TaskKey, act: OwnerAct, epoch: i64) -> Option<BoardTask> {
        if act == OwnerAct::Remove {
            self.rows.remove(key);
            return None;
        }
        let t = self.rows.get_mut(key)?;
        apply(t, act, epoch);
        Some(t.clone())
    }

    pub fn get(&self, key: &TaskKey) -> Option<BoardTask> {
        self.rows.get(key).cloned()
    }

    /// Cancels what of workflow `id` is still on the board (it ended);
    /// the feed items that announce it.
    pub fn workflow_ended(&mut self, id: &str) -> Vec<crate::FeedItem> {
        self.rows
            .values_mut()
            .filter(|t| t.key.workflow_id == id && t.cancel.is_none() && t.result.is_none())
            .map(|t| {
                t.cancel = Some("the workflow ended".into());
                crate::FeedItem::Task {
                    key: t.key.clone(),
                    job_type: t.job_type.clone(),
                    open: false,
                }
            })
            .collect()
    }

    pub fn drop_workflow(&mut self, id: &str) {
        self.rows.retain(|k, _| k.workflow_id != id);
    }
}

/// What an owner's act does to a row (other than [`OwnerAct::Remove`]).
pub fn apply(t: &mut BoardTask, act: OwnerAct, epoch: i64) {
    match act {
        OwnerAct::Cancel(why) => t.cancel = Some(why),
        OwnerAct::Repost(spec) => {
            t.spec = spec;
            t.claimed_by = None;
            t.claim_expires = 0;
            t.lease = None;
            t.lost = None;
        }
        OwnerAct::Adopt { attempt } => {
            t.attempt = attempt;
            t.owner_epoch = epoch;
        }
        OwnerAct::Remove => {}
    }
}

/// A worker presented the claim's lease on `replica`: the claim is its now.
pub fn reattach(t: &mut BoardTask, replica: &str, until: Micros) {
    t.claimed_by = Some(replica.to_string());
    t.claim += 1;
    t.claim_expires = until;
    t.lost = None;
}

/// The claim gives the task back untouched (see [`BoardReport::Release`]).
pub fn release(t: &mut BoardTask) {
    t.claimed_by = None;
    t.claim_expires = 0;
    t.lease = None;
    t.lost = None;
}
