//! The one test suite every [`Store`] backend must pass.
//!
//! Each backend's tests implement [`Harness`] (how to get a fresh, empty
//! store and how to move its lease clock) and call [`run_all`]. A backend
//! that passes holds the contract in the crate docs: atomic writes,
//! compare-and-set, fencing, orphan claims, atomic bucket takes, listing and
//! audit queries, and the change feed.

use crate::{
    CasOutcome, Change, FeedItem, Gcra, IdMatch, InstanceInfo, Lease, RequestKind, SharedStop,
    Store, StoreError, SubmitOutcome, TakeOutcome, TakeRequest,
};
use async_trait::async_trait;
use interlock_core::{
    AuditEntry, AuditQuery, Block, Job, JobRecord, ListFilter, Micros, Status, WorkReq,
    WorkflowRecord,
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
        fencing_refuses_a_superseded_lease,
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

fn id(n: u32) -> String {
    format!("0190a000-0000-7000-8000-{n:012}")
}

async fn submitted(s: &dyn Store, n: u32, created: Micros) -> WorkflowRecord {
    let rec = WorkflowRecord::submitted(id(n), request("wf", 2), "v1".into(), created);
    assert_eq!(
        s.submit(&rec, "hash", None).await.unwrap(),
        SubmitOutcome::Inserted
    );
    rec
}

async fn instance(s: &dyn Store, name: &str) -> String {
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

async fn running(s: &dyn Store, n: u32, owner: &str) -> Lease {
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

fn job(id: &str, block: usize, job: usize, status: Status) -> Change {
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

fn entry(action: &str, identity: &str, target: &str, at: Micros) -> AuditEntry {
    AuditEntry {
        at,
        identity: identity.into(),
        action: action.into(),
        target: target.into(),
        outcome: "ok".into(),
        ..Default::default()
    }
}

/// Submit stores everything; a reused request id answers with the first
/// workflow and its hash; expired keys are forgotten.
pub async fn submit_get_and_idempotency(h: &dyn Harness) {
    let s = h.store().await;
    let mut req = request("wf", 1);
    req.request_id = "key-1".into();
    req.labels.insert("team".into(), "sre".into());
    let mut rec = WorkflowRecord::submitted(id(1), req.clone(), "v1".into(), 100);
    rec.submitted_by = "token:bot".into();
    let audit = entry("submit", "token:bot", "", 100);
    assert_eq!(
        s.submit(&rec, "h1", Some(audit)).await.unwrap(),
        SubmitOutcome::Inserted
    );
    assert_eq!(s.get(&id(1)).await.unwrap().unwrap(), rec);
    assert_eq!(s.get(&id(99)).await.unwrap(), None);
    let log = s
        .audit_log(AuditQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(log[0].target, id(1), "the audit entry names the new id");

    let again = WorkflowRecord::submitted(id(2), req, "v1".into(), 200);
    assert_eq!(
        s.submit(&again, "h1", None).await.unwrap(),
        SubmitOutcome::Existing {
            id: id(1),
            content_hash: "h1".into()
        }
    );
    assert_eq!(s.get(&id(2)).await.unwrap(), None, "nothing new stored");
    assert_eq!(s.expire_request_ids(100).await.unwrap(), 0);
    assert_eq!(s.expire_request_ids(101).await.unwrap(), 1);
    assert_eq!(
        s.submit(&again, "h1", None).await.unwrap(),
        SubmitOutcome::Inserted
    );
}

/// Job records a clone carries over are stored with the new workflow.
pub async fn carried_job_records_are_stored(h: &dyn Harness) {
    let s = h.store().await;
    let mut rec = WorkflowRecord::submitted(id(1), request("wf", 2), "v1".into(), 100);
    rec.blocks[0].jobs[0].status = Status::Skipped;
    rec.blocks[0].jobs[0].error = "completed in workflow x".into();
    s.submit(&rec, "h", None).await.unwrap();
    let got = s.get(&id(1)).await.unwrap().unwrap();
    assert_eq!(got.blocks[0].jobs[0].status, Status::Skipped);
    assert_eq!(got.blocks[0].jobs[0].error, "completed in workflow x");
    assert_eq!(got.blocks[0].jobs[1].status, Status::NotStarted);
}

/// Of many racing acquires exactly one wins; the winner's audit entry and
/// executor are recorded with it.
pub async fn acquire_is_a_compare_and_set(h: &dyn Harness) {
    let s = h.store().await;
    let me = instance(s.as_ref(), "i-a").await;
    submitted(s.as_ref(), 1, 100).await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let (s, me) = (s.clone(), me.clone());
        tasks.push(tokio::spawn(async move {
            let audit = entry("exec", &format!("caller-{i}"), "", 150);
            s.acquire(&id(1), Status::NotStarted, &me, 150, Some(audit))
                .await
                .unwrap()
        }));
    }
    let mut won = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            CasOutcome::Done(l) => won.push(l),
            CasOutcome::WrongStatus(Status::Running) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(won.len(), 1, "exactly one start");
    assert_eq!(won[0].epoch, 1);
    let rec = s.get(&id(1)).await.unwrap().unwrap();
    assert_eq!(rec.status, Status::Running);
    assert_eq!(rec.started, Some(150));
    assert!(rec.executed_by.starts_with("caller-"));
    assert_eq!(
        rec.owner.as_deref(),
        Some(me.as_str()),
        "the owner is shown"
    );
    let log = s
        .audit_log(AuditQuery {
            limit: 100,
            action: Some("exec".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(log.len(), 1, "only the winner is audited");
    assert_eq!(log[0].identity, rec.executed_by);
    assert_eq!(
        s.acquire(&id(7), Status::NotStarted, &me, 1, None)
            .await
            .unwrap(),
        CasOutcome::NotFound
    );
}

/// A write applies every change or none, in order; checkpoints survive
/// job updates.
pub async fn writes_are_atomic_and_ordered(h: &dyn Harness) {
    let s = h.store().await;
    let me = instance(s.as_ref(), "i-a").await;
    let lease = running(s.as_ref(), 1, &me).await;
    let w = id(1);
    s.write(
        Some(&lease),
        vec![
            job(&w, 0, 0, Status::Running),
            Change::Checkpoint {
                id: w.clone(),
                block: 0,
                job: 0,
                state: "req-1".into(),
            },
            job(&w, 0, 0, Status::Completed),
        ],
    )
    .await
    .unwrap();
    let rec = s.get(&w).await.unwrap().unwrap();
    assert_eq!(rec.blocks[0].jobs[0].status, Status::Completed);
    assert_eq!(rec.blocks[0].jobs[0].checkpoint.as_deref(), Some("req-1"));

    let bad = s
        .write(
            None,
            vec![
                job(&w, 0, 1, Status::Failed),
                Change::WorkflowErrors { id: id(404) },
            ],
        )
        .await;
    assert!(
        bad.is_err(),
        "a change to a missing workflow fails the write"
    );
    let rec = s.get(&w).await.unwrap().unwrap();
    assert_eq!(
        rec.blocks[0].jobs[1].status,
        Status::NotStarted,
        "nothing of a failed write is applied"
    );
    s.write(
        Some(&lease),
        vec![
            Change::WorkflowErrors { id: w.clone() },
            Change::Workflow {
                id: w.clone(),
                status: Status::Failed,
                reason: "r".into(),
                had_errors: true,
                es_stopped: false,
                ended: Some(9),
            },
        ],
    )
    .await
    .unwrap();
    let rec = s.get(&w).await.unwrap().unwrap();
    assert_eq!(
        (rec.status, rec.reason.as_str(), rec.had_errors, rec.ended),
        (Status::Failed, "r", true, Some(9))
    );
}

/// Once another instance claims a workflow, the old lease is refused, and a
/// released workflow takes no leased writes at all.
pub async fn fencing_refuses_a_superseded_lease(h: &dyn Harness) {
    let s = h.store().await;
    let a = instance(s.as_ref(), "i-a").await;
    let old = running(s.as_ref(), 1, &a).await;
    h.advance(TTL * 2).await;
    let b = instance(s.as_ref(), "i-b").await;
    let claimed = s.claim_orphans(&b, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let new = claimed[0].1.clone();
    assert_eq!(new.epoch, old.epoch + 1);
    let w = id(1);
    match s
        .write(Some(&old), vec![job(&w, 0, 0, Status::Completed)])
        .await
    {
        Err(StoreError::Fenced { id, epoch }) => assert_eq!((id, epoch), (w.clone(), old.epoch)),
        other => panic!("stale write not fenced: {other:?}"),
    }
    assert!(matches!(
        s.release(&old).await,
        Err(StoreError::Fenced { .. })
    ));
    s.write(Some(&new), vec![job(&w, 0, 0, Status::Running)])
        .await
        .unwrap();
    assert_eq!(
        s.get(&w).await.unwrap().unwrap().blocks[0].jobs[0].status,
        Status::Running
    );
    s.release(&new).await.unwrap();
    assert!(matches!(
        s.write(Some(&new), vec![job(&w, 0, 0, Status::Completed)])
            .await,
        Err(StoreError::Fenced { .. })
    ));
}

/// A lapsed instance cannot renew (it must register anew); live instances
/// are listed with what they own; a retired one is gone at once.
pub async fn instances_lapse_and_cannot_come_back(h: &dyn Harness) {
    let s = h.store().await;
    let a = instance(s.as_ref(), "i-a").await;
    running(s.as_ref(), 1, &a).await;
    running(s.as_ref(), 2, &a).await;
    s.heartbeat(&a, TTL).await.unwrap();
    let b = instance(s.as_ref(), "i-b").await;
    let live = s.instances().await.unwrap();
    let owned: Vec<_> = live.iter().map(|i| (i.id.as_str(), i.owned)).collect();
    if h.exclusive() {
        // Only one process can hold the database: the newcomer's
        // registration proves the first is gone.
        assert_eq!(owned, [("i-b", 0)]);
        assert_eq!(
            s.heartbeat(&a, TTL).await,
            Err(StoreError::LeaseLost(a.clone()))
        );
    } else {
        assert_eq!(owned, [("i-a", 2), ("i-b", 0)]);
    }
    let me = live.iter().find(|i| i.id == b).expect("listed");
    assert!(me.expires > me.heartbeat);
    assert_eq!(me.addr, "127.0.0.1:1");

    h.advance(TTL * 2).await;
    assert_eq!(
        s.heartbeat(&b, TTL).await,
        Err(StoreError::LeaseLost(b.clone()))
    );
    assert!(s.instances().await.unwrap().is_empty());
    let c = instance(s.as_ref(), "i-c").await;
    s.retire_instance(&c).await.unwrap();
    assert!(s.instances().await.unwrap().is_empty());
    assert_eq!(
        s.heartbeat(&c, TTL).await,
        Err(StoreError::LeaseLost(c.clone()))
    );
    assert_eq!(
        s.heartbeat("never", TTL).await,
        Err(StoreError::LeaseLost("never".into()))
    );
}

/// Running workflows of dead owners are claimed, each by one caller, at
/// most `limit` at a time; those of live owners and paused ones are not.
pub async fn orphans_are_claimed_once(h: &dyn Harness) {
    let s = h.store().await;
    let a = instance(s.as_ref(), "i-a").await;
    for n in 1..=6 {
        running(s.as_ref(), n, &a).await;
    }
    let paused = running(s.as_ref(), 7, &a).await;
    s.write(
        Some(&paused),
        vec![Change::WorkflowStatus {
            id: id(7),
            status: Status::Paused,
            reason: "p".into(),
        }],
    )
    .await
    .unwrap();
    if !h.exclusive() {
        let b = instance(s.as_ref(), "i-b").await;
        assert!(
            s.claim_orphans(&b, 100).await.unwrap().is_empty(),
            "a live owner keeps its workflows"
        );
    }
    h.advance(TTL * 2).await;
    let b = instance(s.as_ref(), "i-b2").await;
    // Two live claimants racing; an exclusive backend has only one live
    // instance, so it races with itself.
    let c = if h.exclusive() {
        b.clone()
    } else {
        instance(s.as_ref(), "i-c").await
    };
    let first = s.claim_orphans(&b, 4).await.unwrap();
    assert_eq!(first.len(), 4);
    let (sb, sc, bb, cc) = (s.clone(), s.clone(), b.clone(), c.clone());
    let (x, y) = tokio::join!(
        async move { sb.claim_orphans(&bb, 100).await.unwrap() },
        async move { sc.claim_orphans(&cc, 100).await.unwrap() }
    );
    let mut all: Vec<String> = first
        .iter()
        .chain(&x)
        .chain(&y)
        .map(|(r, _)| r.id.clone())
        .collect();
    all.sort();
    assert_eq!(all, (1..=6).map(id).collect::<Vec<_>>(), "each once");
    for (rec, lease) in first.iter().chain(&x).chain(&y) {
        assert_eq!(rec.status, Status::Running);
        assert_eq!(lease.epoch, 2);
    }
}

/// A non-owner's compare-and-set is refused while a live instance runs the
/// workflow, and allowed (with its changes) once it is released or dead.
pub async fn transition_refuses_a_workflow_a_live_owner_runs(h: &dyn Harness) {
    let s = h.store().await;
    let a = instance(s.as_ref(), "i-a").await;
    let lease = running(s.as_ref(), 1, &a).await;
    let w = id(1);
    s.write(
        Some(&lease),
        vec![Change::WorkflowStatus {
            id: w.clone(),
            status: Status::Paused,
            reason: "p".into(),
        }],
    )
    .await
    .unwrap();
    let cut = vec![job(&w, 0, 0, Status::Cancelled)];
    assert_eq!(
        s.transition(
            &w,
            Status::Paused,
            Status::Cancelled,
            "c",
            Some(7),
            cut.clone()
        )
        .await
        .unwrap(),
        CasOutcome::OwnedBy(a.clone())
    );
    s.release(&lease).await.unwrap();
    assert_eq!(
        s.transition(&w, Status::Running, Status::Cancelled, "c", None, vec![])
            .await
            .unwrap(),
        CasOutcome::WrongStatus(Status::Paused)
    );
    assert_eq!(
        s.transition(&w, Status::Paused, Status::Cancelled, "c", Some(7), cut)
            .await
            .unwrap(),
        CasOutcome::Done(())
    );
    let rec = s.get(&w).await.unwrap().unwrap();
    assert_eq!(
        (rec.status, rec.reason.as_str(), rec.ended),
        (Status::Cancelled, "c", Some(7))
    );
    assert_eq!(rec.blocks[0].jobs[0].status, Status::Cancelled);
    // Not started yet: nobody owns it.
    submitted(s.as_ref(), 2, 5).await;
    assert_eq!(
        s.transition(
            &id(2),
            Status::NotStarted,
            Status::Cancelled,
            "c",
            Some(8),
            vec![]
        )
        .await
        .unwrap(),
        CasOutcome::Done(())
    );
}

fn take(bucket: &str, key: &str, rule: Gcra, at: Micros, job: usize) -> TakeRequest {
    TakeRequest {
        bucket: bucket.into(),
        key: key.into(),
        rule,
        at,
        workflow_id: id(1),
        block: 0,
        job,
    }
}

/// Takes never exceed the rule, even when racing; buckets refill; keys are
/// independent; a changed rule is applied to the recorded takes.
pub async fn takes_are_atomic_and_refill(h: &dyn Harness) {
    let s = h.store().await;
    let t0: Micros = 1_700_000_000_000_000;
    let one = Gcra::new(1, 1, Duration::from_secs(1800));
    let mut tasks = Vec::new();
    for i in 0..50 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.take(take("b", "", one, t0, i)).await.unwrap()
        }));
    }
    let mut taken = 0;
    for t in tasks {
        if t.await.unwrap() == TakeOutcome::Taken {
            taken += 1;
        }
    }
    assert_eq!(taken, 1, "a capacity-1 bucket gives one token to 50 racers");
    assert_eq!(
        s.take(take("b", "", one, t0 + 600_000_000, 99))
            .await
            .unwrap(),
        TakeOutcome::Empty {
            retry_after: Duration::from_secs(1200)
        }
    );
    assert_eq!(
        s.take(take("b", "", one, t0 + 1_800_000_000, 100))
            .await
            .unwrap(),
        TakeOutcome::Taken,
        "refilled after the period"
    );
    assert_eq!(
        s.take(take("b", "site-a", one, t0, 101)).await.unwrap(),
        TakeOutcome::Taken,
        "another key has its own tokens"
    );
    let states = s.bucket_states("b").await.unwrap();
    let keys: Vec<_> = states.iter().map(|b| b.key.as_str()).collect();
    assert_eq!(keys, ["", "site-a"]);
    assert_eq!(states[0].tat, t0 + 3_600_000_000);
    // A stricter rule (1 per 2 h) is applied to the takes already recorded.
    let strict = Gcra::new(1, 1, Duration::from_secs(7200));
    assert!(matches!(
        s.take(take("b", "", strict, t0 + 3_600_000_000, 102))
            .await
            .unwrap(),
        TakeOutcome::Empty { .. }
    ));
    let recorded = s.take_of(&id(1), 0, 100).await.unwrap().unwrap();
    assert_eq!(
        (recorded.bucket.as_str(), recorded.at),
        ("b", t0 + 1_800_000_000)
    );
    assert_eq!(s.take_of(&id(1), 0, 99).await.unwrap(), None);
}

/// Listing filters by name, status, time and labels, newest first, and
/// pages by an exclusive (created, id) cursor.
pub async fn list_filters_and_pages(h: &dyn Harness) {
    let s = h.store().await;
    for n in 1..=5u32 {
        let mut req = request(if n % 2 == 0 { "even" } else { "odd" }, 1);
        req.labels.insert("n".into(), n.to_string());
        req.labels.insert("team".into(), "sre".into());
        let rec = WorkflowRecord::submitted(id(n), req, "v".into(), Micros::from(n) * 10);
        s.submit(&rec, "h", None).await.unwrap();
    }
    let ids = |v: Vec<interlock_core::Summary>| v.into_iter().map(|s| s.id).collect::<Vec<_>>();
    let all = ListFilter {
        limit: 100,
        ..Default::default()
    };
    assert_eq!(
        ids(s.list(all.clone()).await.unwrap()),
        [5, 4, 3, 2, 1].map(id)
    );
    let odd = ListFilter {
        name: Some("odd".into()),
        ..all.clone()
    };
    assert_eq!(ids(s.list(odd).await.unwrap()), [5, 3, 1].map(id));
    let window = ListFilter {
        created_from: Some(20),
        created_to: Some(40),
        ..all.clone()
    };
    assert_eq!(ids(s.list(window).await.unwrap()), [3, 2].map(id));
    let labels = ListFilter {
        labels: vec![("team".into(), "sre".into()), ("n".into(), "4".into())],
        ..all.clone()
    };
    let got = s.list(labels).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].labels["n"], "4");
    assert_eq!(got[0].name, "even");
    let page = ListFilter {
        limit: 2,
        after: Some((40, id(4))),
        ..all.clone()
    };
    assert_eq!(ids(s.list(page).await.unwrap()), [3, 2].map(id));
    let status = ListFilter {
        statuses: vec![Status::Running],
        ..all
    };
    assert!(s.list(status).await.unwrap().is_empty());
}

/// The audit log reads newest first, filtered by time, actor, action and
/// target, with an id cursor.
pub async fn audit_queries(h: &dyn Harness) {
    let s = h.store().await;
    for (i, (action, who)) in [
        ("submit", "token:a"),
        ("exec", "token:a"),
        ("cancel", "token:b"),
        ("submit", "token:b"),
    ]
    .into_iter()
    .enumerate()
    {
        s.audit(entry(action, who, &format!("w{i}"), i as Micros * 10))
            .await
            .unwrap();
    }
    let q = |f: fn(&mut AuditQuery)| {
        let mut q = AuditQuery {
            limit: 100,
            ..Default::default()
        };
        f(&mut q);
        q
    };
    let targets = |v: Vec<AuditEntry>| v.into_iter().map(|e| e.target).collect::<Vec<_>>();
    assert_eq!(
        targets(s.audit_log(q(|_| {})).await.unwrap()),
        ["w3", "w2", "w1", "w0"]
    );
    assert_eq!(
        targets(
            s.audit_log(q(|q| q.action = Some("submit".into())))
                .await
                .unwrap()
        ),
        ["w3", "w0"]
    );
    assert_eq!(
        targets(
            s.audit_log(q(|q| q.identity = Some("token:a".into())))
                .await
                .unwrap()
        ),
        ["w1", "w0"]
    );
    assert_eq!(
        targets(
            s.audit_log(q(|q| {
                q.from = Some(10);
                q.to = Some(30);
            }))
            .await
            .unwrap()
        ),
        ["w2", "w1"]
    );
    assert_eq!(
        targets(
            s.audit_log(q(|q| q.target = Some("w2".into())))
                .await
                .unwrap()
        ),
        ["w2"]
    );
    let newest = s.audit_log(q(|q| q.limit = 1)).await.unwrap();
    let older = s
        .audit_log(AuditQuery {
            limit: 100,
            before: Some(newest[0].id),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(targets(older), ["w2", "w1", "w0"]);
}

/// A unique prefix names one workflow; an ambiguous one says so.
pub async fn short_ids_resolve(h: &dyn Harness) {
    let s = h.store().await;
    submitted(s.as_ref(), 11, 1).await;
    submitted(s.as_ref(), 12, 2).await;
    submitted(s.as_ref(), 20, 3).await;
    let full = id(20);
    let prefix = &full[..full.len() - 1];
    assert_eq!(
        s.resolve_id(prefix).await.unwrap(),
        IdMatch::One(full.clone())
    );
    let prefix = &full[..full.len() - 2];
    match s.resolve_id(prefix).await.unwrap() {
        IdMatch::Many(v) => assert!(v.len() >= 2 && v.iter().all(|i| i.starts_with(prefix))),
        other => panic!("{other:?}"),
    }
    assert_eq!(s.resolve_id("ffff").await.unwrap(), IdMatch::None);
}

/// Committed transitions reach subscribers in commit order; a refused
/// write publishes nothing.
pub async fn feed_publishes_commits_in_order(h: &dyn Harness) {
    let s = h.store().await;
    let mut feed = s.subscribe();
    let a = instance(s.as_ref(), "i-a").await;
    let lease = running(s.as_ref(), 1, &a).await;
    let w = id(1);
    s.write(
        Some(&lease),
        vec![
            job(&w, 0, 0, Status::Running),
            job(&w, 0, 0, Status::Completed),
        ],
    )
    .await
    .unwrap();
    let stale = Lease {
        epoch: lease.epoch - 1,
        ..lease.clone()
    };
    assert!(
        s.write(Some(&stale), vec![job(&w, 0, 1, Status::Failed)])
            .await
            .is_err()
    );
    s.write(
        Some(&lease),
        vec![
            Change::Checkpoint {
                id: w.clone(),
                block: 0,
                job: 1,
                state: "x".into(),
            },
            Change::Workflow {
                id: w.clone(),
                status: Status::Completed,
                reason: String::new(),
                had_errors: false,
                es_stopped: false,
                ended: Some(3),
            },
        ],
    )
    .await
    .unwrap();
    let mut seen = Vec::new();
    while seen.len() < 4 {
        let item = tokio::time::timeout(Duration::from_secs(5), feed.recv())
            .await
            .expect("event within 5 s")
            .expect("feed open");
        if let FeedItem::Event(e) = item
            && e.workflow_id == w
        {
            seen.push((e.block, e.job, e.status));
        }
    }
    assert_eq!(
        seen,
        [
            (None, None, Status::Running),
            (Some(0), Some(0), Status::Running),
            (Some(0), Some(0), Status::Completed),
            (None, None, Status::Completed),
        ]
    );
}

/// A request reaches the owner twice over: on the feed at once, and in
/// `requests_for` until it is finished.
pub async fn requests_reach_the_owner(h: &dyn Harness) {
    let s = h.store().await;
    let mut feed = s.subscribe();
    let a = instance(s.as_ref(), "i-a").await;
    running(s.as_ref(), 1, &a).await;
    submitted(s.as_ref(), 2, 7).await;
    let r = s
        .request(&id(1), RequestKind::Pause, "maintenance", 42)
        .await
        .unwrap();
    assert_eq!(
        (r.kind, r.reason.as_str(), r.at),
        (RequestKind::Pause, "maintenance", 42)
    );
    loop {
        let item = tokio::time::timeout(Duration::from_secs(5), feed.recv())
            .await
            .expect("published within 5 s")
            .expect("feed open");
        if let FeedItem::Request(got) = item {
            assert_eq!(got, r);
            break;
        }
    }
    s.request(&id(2), RequestKind::Cancel, "", 43)
        .await
        .unwrap();
    let pending = s.requests_for(&a).await.unwrap();
    assert_eq!(
        pending.iter().map(|p| p.id).collect::<Vec<_>>(),
        [r.id],
        "only requests for workflows the owner runs"
    );
    assert!(s.requests_for("i-nobody").await.unwrap().is_empty());
    s.finish_request(r.id).await.unwrap();
    assert!(s.requests_for(&a).await.unwrap().is_empty());
}

/// Shared e-stop entries are replaced by name and announced on the feed.
pub async fn shared_stops_are_kept_and_announced(h: &dyn Harness) {
    let s = h.store().await;
    let mut feed = s.subscribe();
    let stop = |name: &str, stop: bool| SharedStop {
        name: name.into(),
        stop,
        reason: format!("{name} {stop}"),
        by: "token:sre".into(),
        at: 9,
    };
    s.set_stop(stop("wf", true)).await.unwrap();
    s.set_stop(stop("*", false)).await.unwrap();
    s.set_stop(stop("wf", false)).await.unwrap();
    assert_eq!(
        s.stops().await.unwrap(),
        [stop("*", false), stop("wf", false)]
    );
    let mut announced = 0;
    while announced < 3 {
        let item = tokio::time::timeout(Duration::from_secs(5), feed.recv())
            .await
            .expect("announced within 5 s")
            .expect("feed open");
        if item == FeedItem::Stops {
            announced += 1;
        }
    }
}
