//! The one test suite every [`Store`] backend must pass.
//!
//! Each backend's tests implement [`Harness`] (how to get a fresh, empty
//! store and how to move its lease clock) and call [`run_all`]. A backend
//! that passes holds the contract in the crate docs: atomic writes,
//! compare-and-set, fencing, orphan claims, atomic bucket takes, listing and
//! audit queries, and the change feed.

//!
//! The tests, by concern: `records` (submit, compare-and-set, writes,
//! listing, audit, ids), `ownership` (instances, leases, fencing, orphan
//! claims), `shared` (buckets, the feed, requests, shared stops) and
//! `retention` (pruning and tombstones), `templates` (revisions), `schedules` (fire claims), `inventory`, `logs`
//! (job log lines), `board` (remote tasks between replicas).

mod board;
mod inventory;
mod logs;
mod ownership;
mod records;
mod retention;
mod schedules;
mod shared;
mod templates;

pub use board::*;
pub use inventory::*;
pub use logs::*;
pub use ownership::*;
pub use records::*;
pub use retention::*;
pub use schedules::*;
pub use shared::*;
pub use templates::*;

use crate::{
    CasOutcome, Change, FeedItem, Gcra, IdMatch, InstanceInfo, Lease, Notice, RequestKind,
    SharedStop, Slot, SlotOutcome, SlotRequest, Store, StoreError, SubmitOutcome, TakeOutcome,
    TakeRequest,
};
use async_trait::async_trait;
use interlock_core::{
    Approval, AuditEntry, AuditQuery, Block, EsMode, Job, JobRecord, ListFilter, Micros, Status,
    WorkReq, WorkflowRecord,
};
use std::sync::Arc;
use std::time::Duration;

/// What the suite needs from a backend under test.
#[async_trait]
pub trait Harness: Send + Sync {
    /// A fresh, empty store.
    async fn store(&self) -> Arc<dyn Store>;
    /// Moves the store's lease clock forward by `by` (a backend on the
    /// database's real clock waits instead).
    async fn advance(&self, by: Duration);
    /// True for a backend that proves a single process (an exclusive
    /// lock): registering an instance declares every other one dead.
    fn exclusive(&self) -> bool {
        false
    }
}

/// Lease time-to-live used by the suite: short, so real-clock backends
/// wait little.
pub const TTL: Duration = Duration::from_millis(300);

/// Runs every conformance test; panics on the first failure, naming it.
pub async fn run_all(h: &dyn Harness) {
    macro_rules! run {
        ($($t:ident),* $(,)?) => {$(
            $t(h).await;
        )*};
    }
    run!(
        submit_get_and_idempotency,
        carried_job_records_are_stored,
        acquire_is_a_compare_and_set,
        writes_are_atomic_and_ordered,
        writes_touch_only_what_they_may,
        fencing_refuses_a_superseded_lease,
        a_refused_write_lands_nothing,
        a_terminal_status_ends_ownership,
        instances_lapse_and_cannot_come_back,
        orphans_are_claimed_once,
        transition_refuses_a_workflow_a_live_owner_runs,
        takes_are_atomic_and_refill,
        list_filters_and_pages,
        audit_queries,
        short_ids_resolve,
        feed_publishes_commits_in_order,
        requests_reach_the_owner,
        shared_stops_are_kept_and_announced,
        limit_slots_are_decided_atomically_and_released,
        approvals_are_kept_per_identity,
        notices_queue_once_per_key_and_stay_bounded,
        retention_prunes_only_finished_old_workflows,
        audit_retention_is_separate_and_batched,
        template_revisions_are_kept_and_never_changed,
        templates_are_disabled_until_enabled,
        concurrent_template_puts_get_distinct_revisions,
        schedules_are_kept_by_name,
        a_fire_is_claimed_once_and_finished_once,
        the_inventory_is_replaced_whole_and_versioned,
        job_logs_append_read_and_trim,
        the_board_hands_each_task_to_one_claim_and_fences_both_sides,
    );
}

pub fn request(name: &str, jobs: usize) -> WorkReq {
    WorkReq {
        name: name.into(),
        blocks: vec![Block {
            rate_limit: 1,
            jobs: (0..jobs)
                .map(|i| Job {
                    name: "sleep".into(),
                    args: [("seconds".to_string(), i.to_string())].into(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

pub(crate) fn id(n: u32) -> String {
    format!("0190a000-0000-7000-8000-{n:012}")
}

pub(crate) async fn submitted(s: &dyn Store, n: u32, created: Micros) -> WorkflowRecord {
    let rec = WorkflowRecord::submitted(id(n), request("wf", 2), "v1".into(), created);
    assert_eq!(
        s.submit(&rec, "hash", None).await.unwrap(),
        SubmitOutcome::Inserted
    );
    rec
}

pub(crate) async fn instance(s: &dyn Store, name: &str) -> String {
    let info = InstanceInfo {
        id: name.into(),
        pid: 1,
        host: "test".into(),
        addr: "127.0.0.1:1".into(),
        version: "0".into(),
        ..Default::default()
    };
    s.register_instance(&info, TTL).await.unwrap();
    info.id
}

pub(crate) async fn running(s: &dyn Store, n: u32, owner: &str) -> Lease {
    submitted(s, n, 1_000 + Micros::from(n)).await;
    match s
        .acquire(&id(n), Status::NotStarted, owner, 5, None)
        .await
        .unwrap()
    {
        CasOutcome::Done(l) => l,
        other => panic!("acquire: {other:?}"),
    }
}

pub(crate) fn job(id: &str, block: usize, job: usize, status: Status) -> Change {
    Change::Job {
        id: id.into(),
        block,
        job,
        rec: JobRecord {
            status,
            ..Default::default()
        },
    }
}

pub(crate) fn entry(action: &str, identity: &str, target: &str, at: Micros) -> AuditEntry {
    AuditEntry {
        at,
        identity: identity.into(),
        action: action.into(),
        target: target.into(),
        outcome: "ok".into(),
        ..Default::default()
    }
}
