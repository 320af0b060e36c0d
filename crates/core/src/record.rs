//! The durable record of a workflow: what happened to it, its blocks and its
//! jobs. The store persists these; Status is rendered from them. A record is
//! only ever changed by writing the change to the store first.

use crate::{Micros, WorkReq};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Lifecycle state of a workflow, block or job. Numbering matches the wire enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[repr(i32)]
pub enum Status {
    NotStarted = 1,
    Running = 2,
    Failed = 3,
    Completed = 4,
    Cancelled = 5,
    Paused = 6,
    Stopped = 7,
    Interrupted = 8,
    Skipped = 9,
    /// Submitted, and needs approvals (a requireApproval policy) before
    /// Exec can start it.
    AwaitingApproval = 10,
}

impl Status {
    /// True for states nothing will move out of.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Status::Failed
                | Status::Completed
                | Status::Cancelled
                | Status::Stopped
                | Status::Skipped
        )
    }

    pub fn from_i32(v: i32) -> Option<Status> {
        Some(match v {
            1 => Status::NotStarted,
            2 => Status::Running,
            3 => Status::Failed,
            4 => Status::Completed,
            5 => Status::Cancelled,
            6 => Status::Paused,
            7 => Status::Stopped,
            8 => Status::Interrupted,
            9 => Status::Skipped,
            10 => Status::AwaitingApproval,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::NotStarted => "NotStarted",
            Status::Running => "Running",
            Status::Failed => "Failed",
            Status::Completed => "Completed",
            Status::Cancelled => "Cancelled",
            Status::Paused => "Paused",
            Status::Stopped => "Stopped",
            Status::Interrupted => "Interrupted",
            Status::Skipped => "Skipped",
            Status::AwaitingApproval => "AwaitingApproval",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the emergency stop says about a workflow name, from least to most
/// severe (the order is the precedence when several entries apply).
///
/// `Drain` refuses new work and starts no new job but lets jobs in flight
/// finish, for work more dangerous to interrupt than to complete; `Stop`
/// also cancels jobs in flight.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum EsMode {
    #[default]
    Go,
    Drain,
    Stop,
}

impl EsMode {
    /// The word used in es.json, the CLI and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            EsMode::Go => "go",
            EsMode::Drain => "drain",
            EsMode::Stop => "stop",
        }
    }

    /// Parses the es.json word (exactly, lower case).
    pub fn parse(s: &str) -> Option<EsMode> {
        Some(match s {
            "go" => EsMode::Go,
            "drain" => EsMode::Drain,
            "stop" => EsMode::Stop,
            _ => return None,
        })
    }

    /// The stored code. 0 and 1 are what older schemas wrote for "not
    /// halted" and "stopped", so their rows keep their meaning.
    pub fn code(self) -> i32 {
        match self {
            EsMode::Go => 0,
            EsMode::Stop => 1,
            EsMode::Drain => 2,
        }
    }

    /// The mode a stored code means; an unknown code means `Stop` (fail
    /// closed: a newer writer's mode is at least a halt).
    pub fn from_code(v: i64) -> EsMode {
        match v {
            0 => EsMode::Go,
            2 => EsMode::Drain,
            _ => EsMode::Stop,
        }
    }

    /// True for `Drain` and `Stop`: new work is refused.
    pub fn halts(self) -> bool {
        self != EsMode::Go
    }
}

impl std::fmt::Display for EsMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything known about one workflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowRecord {
    pub id: String,
    pub req: WorkReq,
    pub status: Status,
    /// Why the workflow failed, stopped or was cancelled; empty otherwise.
    pub reason: String,
    pub had_errors: bool,
    /// The emergency control that ended the workflow (`Go` when none did).
    #[serde(default)]
    pub es_halt: EsMode,
    pub created: Micros,
    /// Set when Exec was accepted.
    pub started: Option<Micros>,
    pub ended: Option<Micros>,
    /// Version of the policy set the request was admitted with.
    pub policy_version: String,
    /// One entry per block of `req`, in order.
    pub blocks: Vec<BlockRecord>,
    /// The identity that submitted the workflow (empty if unknown).
    pub submitted_by: String,
    /// The identity whose Exec started it (empty until then).
    pub executed_by: String,
    /// The server instance that runs it now, if one does (a store detail,
    /// shown to operators; not stored by `submit`).
    #[serde(default)]
    pub owner: Option<String>,
    /// Approvals and rejections given (read from the store when shown,
    /// never stored with the workflow row).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvals: Vec<Approval>,
}

/// One approver's decision on a workflow (the two-person rule).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    pub workflow_id: String,
    /// The approver, as the audit log names identities.
    pub identity: String,
    /// The roles the approver held when deciding (rbac.json): a rule counts
    /// the approvals of holders of its role.
    #[serde(default)]
    pub roles: Vec<String>,
    /// True to approve, false to reject.
    pub approve: bool,
    pub comment: String,
    /// The request content it was given for: an approval applies to that
    /// exact content only.
    pub content_hash: String,
    pub at: Micros,
}

/// What a requireApproval policy asks of a request before Exec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalRule {
    /// Distinct approvers needed, none of them the submitter.
    pub approvals: u32,
    /// The role each approver must hold.
    pub role: String,
    /// An approval older than this no longer counts.
    pub expires_after: std::time::Duration,
}

impl WorkflowRecord {
    /// A freshly submitted workflow: nothing started.
    pub fn submitted(id: String, req: WorkReq, policy_version: String, created: Micros) -> Self {
        let mut rec = Self::submitted_bare(id, req, policy_version, created);
        rec.fill_blocks();
        rec
    }

    /// A new record without its blocks' and jobs' records (`blocks` is
    /// empty) until [`WorkflowRecord::fill_blocks`]: the rows Submit
    /// stores need none, and a 50,000-job request's take 8 MB.
    pub fn submitted_bare(
        id: String,
        req: WorkReq,
        policy_version: String,
        created: Micros,
    ) -> Self {
        Self {
            id,
            req,
            status: Status::NotStarted,
            reason: String::new(),
            had_errors: false,
            es_halt: EsMode::Go,
            created,
            started: None,
            ended: None,
            policy_version,
            blocks: Vec::new(),
            submitted_by: String::new(),
            executed_by: String::new(),
            owner: None,
            approvals: Vec::new(),
        }
    }

    /// Gives a record from [`WorkflowRecord::submitted_bare`] a fresh
    /// record per block and job; a record that has them keeps them.
    pub fn fill_blocks(&mut self) {
        if self.blocks.len() != self.req.blocks.len() {
            self.blocks = (self.req.blocks.iter())
                .map(|b| BlockRecord::new(b.jobs.len()))
                .collect();
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlockRecord {
    pub status: Status,
    pub has_error: bool,
    pub failures: u32,
    pub started: Option<Micros>,
    pub ended: Option<Micros>,
    pub jobs: Vec<JobRecord>,
}

impl BlockRecord {
    pub fn new(jobs: usize) -> Self {
        Self {
            status: Status::NotStarted,
            has_error: false,
            failures: 0,
            started: None,
            ended: None,
            jobs: vec![JobRecord::default(); jobs],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    pub status: Status,
    pub error: String,
    pub outputs: BTreeMap<String, String>,
    pub started: Option<Micros>,
    pub ended: Option<Micros>,
    /// The failure was fatal and cancelled the rest of the workflow.
    pub fatal: bool,
    pub attempts: Vec<Attempt>,
    /// Small state the job saved while running (e.g. an external request
    /// id), handed back to it after a restart so it can re-attach.
    #[serde(default)]
    pub checkpoint: Option<String>,
    /// While the job waits for a blast-radius limit: which, and its place.
    /// Read from the store's limit slots when shown, never stored with the
    /// job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<String>,
}

impl Default for JobRecord {
    fn default() -> Self {
        Self {
            status: Status::NotStarted,
            error: String::new(),
            outputs: BTreeMap::new(),
            started: None,
            ended: None,
            fatal: false,
            attempts: Vec::new(),
            checkpoint: None,
            waiting: None,
        }
    }
}

/// One try of a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    pub number: u32,
    pub started: Micros,
    pub ended: Option<Micros>,
    pub error: String,
}

/// One committed transition of a workflow, one of its blocks, or one of its
/// jobs: what the change feed carries to watchers, in commit order.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub workflow_id: String,
    /// When it was committed.
    pub at: Micros,
    pub block: Option<usize>,
    pub job: Option<usize>,
    pub status: Status,
    /// Error or reason, if any.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Block, Job};

    fn req() -> WorkReq {
        let block = |n: usize| Block {
            jobs: vec![Job::default(); n],
            ..Default::default()
        };
        WorkReq {
            name: "w".into(),
            blocks: vec![block(2), block(3)],
            ..Default::default()
        }
    }

    #[test]
    fn a_bare_record_gets_its_job_records_once() {
        let mut rec = WorkflowRecord::submitted_bare("id".into(), req(), "v1".into(), 7);
        assert!(rec.blocks.is_empty());
        rec.fill_blocks();
        let shape = |r: &WorkflowRecord| r.blocks.iter().map(|b| b.jobs.len()).collect::<Vec<_>>();
        assert_eq!(shape(&rec), [2, 3]);
        assert_eq!(
            rec,
            WorkflowRecord::submitted("id".into(), req(), "v1".into(), 7)
        );
        // What a caller already changed stays.
        rec.blocks[1].jobs[2].status = Status::Completed;
        rec.fill_blocks();
        assert_eq!(rec.blocks[1].jobs[2].status, Status::Completed);
    }
}
