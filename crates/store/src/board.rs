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
//! - Every change to a row is announced on the feed ([`FeedItem::Task`]),
//!   so owners and claimers need not poll (they still do, slowly, as a
//!   backstop).

use interlock_core::{LogLine, Micros};

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
    /// The worker's newest checkpoint.
    pub checkpoint: Option<String>,
    /// The worker's result, once it sent one (encoded by the claimer).
    pub result: Option<String>,
    /// Why the claimer gave it back (its worker was lost).
    pub lost: Option<String>,
    /// Why the owner wants it stopped.
    pub cancel: Option<String>,
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
            checkpoint: None,
            result: None,
            lost: None,
            cancel: None,
        }
    }

    /// Claimed, not given back, and the claim had not lapsed at `now`.
    pub fn held(&self, now: Micros) -> bool {
        self.claimed_by.is_some() && self.lost.is_none() && self.claim_expires >= now
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
    /// Its worker was lost: the owner decides what happens next.
    Lost(String),
}

/// The board of [`crate::memory::MemStore`]: the same rules, in a map.
#[derive(Default)]
pub(crate) struct MemBoard {
    rows: std::collections::BTreeMap<TaskKey, BoardTask>,
}

impl MemBoard {
    pub fn post(&mut self, task: BoardTask) {
        self.rows.insert(task.key.clone(), task);
    }

    pub fn claim(
        &mut self,
        replica: &str,
        types: &[String],
        limit: usize,
        until: Micros,
    ) -> Vec<BoardTask> {
        let mut open: Vec<&mut BoardTask> = self
            .rows
            .values_mut()
            .filter(|t| {
                t.claimed_by.is_none()
                    && t.result.is_none()
                    && t.cancel.is_none()
                    && types.contains(&t.job_type)
            })
            .collect();
        open.sort_by_key(|t| t.posted_at);
        open.into_iter()
            .take(limit)
            .map(|t| {
                t.claimed_by = Some(replica.to_string());
                t.claim += 1;
                t.claim_expires = until;
                t.clone()
            })
            .collect()
    }

    pub fn renew(&mut self, replica: &str, until: Micros) {
        for t in self.rows.values_mut() {
            if t.claimed_by.as_deref() == Some(replica) && t.lost.is_none() {
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
            t.lost = None;
        }
        OwnerAct::Adopt { attempt } => {
            t.attempt = attempt;
            t.owner_epoch = epoch;
        }
        OwnerAct::Remove => {}
    }
}
