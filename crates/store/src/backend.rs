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

/// The job records a new workflow starts with (a clone carries over those
/// that finished), as changes to apply with its insert.
pub fn carried_jobs(rec: &WorkflowRecord) -> impl Iterator<Item = Change> + '_ {
    rec.blocks.iter().enumerate().flat_map(move |(bi, b)| {
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
    })
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
