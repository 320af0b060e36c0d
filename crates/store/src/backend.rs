//! Helpers every backend shares: its errors as [`StoreError`]s, stored
//! values read back, and the result of acquiring a run.

use crate::{Change, FeedItem, Lease, Result, StoreError, workflow_event};
use interlock_core::{Attempt, Micros, Status, WorkReq, WorkflowRecord};
use serde::Deserialize;
use std::collections::BTreeMap;

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

/// Workflow `id`'s stored request, read back for a run or a Status. Its
/// lists keep no spare room: JSON gives no lengths, so a list grows as it
/// is read, a block of 20,000 jobs to room for 32,768 (1.8 MB more), and a
/// running workflow keeps its request for the whole run.
pub fn request_of(id: &str, json: &str) -> Result<WorkReq> {
    let mut req: WorkReq = serde_json::from_str(json).map_err(|e| corrupt(id, e))?;
    req.shrink_to_fit();
    Ok(req)
}

/// What a summary shows of a stored request: everything but its blocks,
/// which are parsed past (so a request missing them is still refused as
/// corrupt) but never built. A List of a 50,000-job workflow would
/// otherwise build all its jobs, about 20 MB, to show its name.
#[derive(Debug, Deserialize)]
pub struct RequestHead {
    pub name: String,
    pub desc: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub trace_id: String,
    #[allow(dead_code)]
    blocks: serde::de::IgnoredAny,
}

/// Workflow `id`'s stored request, read for a summary.
pub fn head_of(id: &str, json: &str) -> Result<RequestHead> {
    serde_json::from_str(json).map_err(|e| corrupt(id, e))
}

/// A job's stored attempts (of workflow `id`), in exactly the room they
/// take: grown as read, one attempt would get room for four, 168 bytes
/// more per job of a record read back (8 MB in the Status of a
/// 50,000-job workflow).
pub fn attempts_of(id: &str, json: &str) -> Result<Vec<Attempt>> {
    let mut attempts: Vec<Attempt> = serde_json::from_str(json).map_err(|e| corrupt(id, e))?;
    attempts.shrink_to_fit();
    Ok(attempts)
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

/// Spare room an encoded request keeps rather than be reallocated.
const SPARE_KEPT: usize = 64 * 1024;

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
        let mut request = serde_json::to_string(&rec.req).expect("plain data serializes");
        // The text doubled its room as it grew, and is held while the
        // database copies it (2.2 MB with 2 MB spare for 50,000 jobs). A
        // small request's spare room is not worth a reallocation.
        if request.capacity() - request.len() > SPARE_KEPT {
            request.shrink_to_fit();
        }
        Self {
            id: rec.id.clone(),
            name: rec.req.name.clone(),
            request,
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

#[cfg(test)]
mod tests {
    use super::*;
    use interlock_core::{Block, Job};

    fn stored(jobs: usize) -> (WorkReq, String) {
        let req = WorkReq {
            name: "erase".into(),
            desc: "rack 7".into(),
            blocks: vec![Block {
                rate_limit: 2,
                jobs: vec![Job::with_args("sleep", &[("seconds", "0")]); jobs],
                ..Default::default()
            }],
            labels: [("run".to_string(), "a".to_string())].into(),
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
            ..Default::default()
        };
        let json = serde_json::to_string(&req).unwrap();
        (req, json)
    }

    #[test]
    fn a_request_read_back_keeps_no_spare_room() {
        let (req, json) = stored(5);
        let back = request_of("w", &json).unwrap();
        assert_eq!(back, req);
        assert_eq!(back.blocks.capacity(), 1);
        assert_eq!(back.blocks[0].jobs.capacity(), 5, "grown to 8 as read");
        assert!(matches!(
            request_of("w", "{\"name\":"),
            Err(StoreError::Corrupt { id, .. }) if id == "w"
        ));
    }

    #[test]
    fn a_summary_reads_the_head_and_still_needs_the_blocks() {
        let (req, json) = stored(3);
        let head = head_of("w", &json).unwrap();
        assert_eq!(
            (head.name, head.desc, head.labels, head.trace_id),
            (req.name, req.desc, req.labels, req.trace_id)
        );
        // Stored before labels and trace ids existed: their defaults.
        let old = head_of("w", r#"{"name":"n","desc":"","blocks":[]}"#).unwrap();
        assert!(old.labels.is_empty() && old.trace_id.is_empty());
        for bad in [
            r#"{"name":"n","desc":""}"#,
            r#"{"name":"n","desc":"","blocks":[{"jobs":[}]}"#,
        ] {
            assert!(
                matches!(head_of("w", bad), Err(StoreError::Corrupt { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_large_request_is_handed_over_without_spare_room() {
        let (req, json) = stored(20_000);
        let rec = WorkflowRecord::submitted("w".into(), req, "v1".into(), 7);
        let new = NewWorkflow::of(&rec);
        assert_eq!(new.request, json);
        assert!(
            new.request.capacity() - new.request.len() <= SPARE_KEPT,
            "{} bytes of room for {}",
            new.request.capacity(),
            new.request.len()
        );
    }

    #[test]
    fn attempts_read_back_take_their_own_room() {
        let one = r#"[{"number":1,"started":5,"ended":9,"error":""}]"#;
        let attempts = attempts_of("w", one).unwrap();
        assert_eq!(attempts.len(), 1);
        assert_eq!(attempts.capacity(), 1, "grown to 4 as read");
        assert_eq!(attempts[0].ended, Some(9));
        assert!(attempts_of("w", "[]").unwrap().is_empty());
        assert!(matches!(
            attempts_of("w", "{}"),
            Err(StoreError::Corrupt { .. })
        ));
    }
}
