//! Helpers every backend shares: its errors as [`StoreError`]s, stored
//! values read back, and the result of acquiring a run.

use crate::{Change, FeedItem, Lease, Result, StoreError, workflow_event};
use interlock_core::{Micros, Status, WorkflowRecord};

/// Tables with rows per workflow, each with an index starting at
/// `workflow_id`: what retention deletes along with the `workflows` row.
/// Not `bucket_takes`: a bucket rebuilds its level from the takes in its
/// window, so they outlive the workflows that took them.
pub const WORKFLOW_ROWS: &[&str] = &[
    "blocks",
    "jobs",
    "labels",
    "requests",
    "limit_slots",
    "job_logs",
    "approvals",
];

/// The stored codes of the statuses a workflow never leaves: only these
/// are ever pruned.
pub fn terminal_codes() -> Vec<i32> {
    (1..=16)
        .filter_map(Status::from_i32)
        .filter(|s| s.is_terminal())
        .map(|s| s as i32)
        .collect()
}

/// The database failed (connection, I/O, SQL): the caller may retry.
pub fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// A stored value of workflow `id` cannot be read back.
pub fn corrupt(id: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        id: id.to_string(),
        message: e.to_string(),
    }
}

/// A stored status code of workflow `id`.
pub fn status_of(id: &str, v: i32) -> Result<Status> {
    Status::from_i32(v).ok_or_else(|| corrupt(id, format!("unknown status {v}")))
}

/// What a backend publishes and returns once `owner` acquired workflow `id`
/// at `epoch`: the Running event and the lease.
pub fn acquired(id: &str, owner: &str, epoch: i64, now: Micros) -> (FeedItem, Lease) {
    (
        FeedItem::Event(workflow_event(id, now, Status::Running, "")),
        Lease {
            workflow_id: id.to_string(),
            owner: owner.to_string(),
            epoch,
        },
    )
}

/// A new workflow's rows, as Submit writes them. Taken from the record on
/// the submitting task, before it is handed to a backend's writer: the
/// writer gets the request already encoded, so it neither copies a record
/// (tens of MB for a 50,000-job workflow) nor spends its own time, which
/// every writer of the database waits on, encoding one.
#[derive(Debug, Clone)]
pub struct NewWorkflow {
    pub id: String,
    pub name: String,
    /// The request as stored: JSON.
    pub request: String,
    /// The client's idempotency key; empty when it sent none.
    pub request_id: String,
    pub status: Status,
    pub created: Micros,
    pub policy_version: String,
    pub submitted_by: String,
    pub labels: Vec<(String, String)>,
    /// The job records it starts with, as changes to apply with its
    /// insert: those a clone carried over finished.
    pub carried: Vec<Change>,
}

impl NewWorkflow {
    pub fn of(rec: &WorkflowRecord) -> Self {
        let carried = rec.blocks.iter().enumerate().flat_map(|(bi, b)| {
            b.jobs
                .iter()
                .enumerate()
                .filter(|(_, j)| j.status != Status::NotStarted)
                .map(move |(ji, j)| Change::Job {
                    id: rec.id.clone(),
                    block: bi,
                    job: ji,
                    rec: j.clone(),
                })
        });
        Self {
            id: rec.id.clone(),
            name: rec.req.name.clone(),
            request: serde_json::to_string(&rec.req).expect("plain data serializes"),
            request_id: rec.req.request_id.clone(),
            status: rec.status,
            created: rec.created,
            policy_version: rec.policy_version.clone(),
            submitted_by: rec.submitted_by.clone(),
            labels: rec
                .req
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            carried: carried.collect(),
        }
    }
}

/// Refuses ([`StoreError::Fenced`]) a write under a lease that names
/// another workflow than the lease's: a lease fences its own workflow only.
pub fn under_its_lease(lease: Option<&Lease>, changes: &[Change]) -> Result<()> {
    let Some(l) = lease else { return Ok(()) };
    match changes.iter().find(|c| c.workflow_id() != l.workflow_id) {
        Some(c) => Err(StoreError::Fenced {
            id: c.workflow_id().to_string(),
            epoch: l.epoch,
        }),
        None => Ok(()),
    }
}

/// The distinct workflows `changes` name, in first-seen order.
pub fn workflows_named(changes: &[Change]) -> Vec<&str> {
    let mut ids: Vec<&str> = Vec::new();
    for c in changes {
        if !ids.contains(&c.workflow_id()) {
            ids.push(c.workflow_id());
        }
    }
    ids
}

/// `d` in the store's microseconds (saturating).
pub fn micros(d: std::time::Duration) -> interlock_core::Micros {
    d.as_micros().min(i64::MAX as u128) as interlock_core::Micros
}
