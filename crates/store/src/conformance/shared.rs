//! Conformance: what replicas share — bucket takes, the change feed,
//! requests to an owner and shared e-stop entries.

use super::*;

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
                es_halt: interlock_core::EsMode::Go,
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

/// Shared e-stop entries keep their mode, are replaced by name and are
/// announced on the feed.
pub async fn shared_stops_are_kept_and_announced(h: &dyn Harness) {
    let s = h.store().await;
    let mut feed = s.subscribe();
    let stop = |name: &str, mode: EsMode| SharedStop {
        name: name.into(),
        mode,
        reason: format!("{name} {mode}"),
        by: "token:sre".into(),
        at: 9,
    };
    s.set_stop(stop("wf", EsMode::Stop)).await.unwrap();
    s.set_stop(stop("*", EsMode::Drain)).await.unwrap();
    s.set_stop(stop("wf", EsMode::Go)).await.unwrap();
    assert_eq!(
        s.stops().await.unwrap(),
        [stop("*", EsMode::Drain), stop("wf", EsMode::Go)]
    );
    s.set_stop(stop("*", EsMode::Stop)).await.unwrap();
    assert_eq!(
        s.stops().await.unwrap(),
        [stop("*", EsMode::Stop), stop("wf", EsMode::Go)]
    );
    let mut announced = 0;
    while announced < 4 {
        let item = tokio::time::timeout(Duration::from_secs(5), feed.recv())
            .await
            .expect("announced within 5 s")
            .expect("feed open");
        match item {
            FeedItem::Stops => announced += 1,
            // The feed's promise when it cannot tell what was missed (a
            // listener still connecting under load): re-read everything,
            // which covers every stop written so far.
            FeedItem::Resync => break,
            _ => {}
        }
    }
}

/// Limit slots: at most `max` holders even under concurrent requests, a
/// queue in order of asking, and rows that go with the job's release or
/// the workflow's end.
pub async fn limit_slots_are_decided_atomically_and_released(h: &dyn Harness) {
    let s = h.store().await;
    let me = instance(s.as_ref(), "i-a").await;
    let ask = |lease: &Lease, max: u32, at: Micros| {
        let (s, lease) = (s.clone(), lease.clone());
        async move {
            s.acquire_slots(
                &lease,
                SlotRequest {
                    workflow_id: lease.workflow_id.clone(),
                    block: 0,
                    job: 0,
                    slots: vec![Slot {
                        limit: "two".into(),
                        part: "wf".into(),
                        holder: lease.workflow_id.clone(),
                        max,
                    }],
                    at,
                    fresh_after: at - 1_000_000,
                },
            )
            .await
            .unwrap()
        }
    };
    let mut leases = Vec::new();
    for n in 0..24 {
        leases.push(running(s.as_ref(), 700 + n, &me).await);
    }
    assert_eq!(ask(&leases[0], 2, 10).await, SlotOutcome::Granted);
    assert_eq!(ask(&leases[1], 2, 11).await, SlotOutcome::Granted);
    match ask(&leases[2], 2, 12).await {
        SlotOutcome::Waiting(w) => {
            assert_eq!((w.position, w.held, w.max, w.granted), (1, 2, 2, false))
        }
        other => panic!("{other:?}"),
    }
    let rows = s.slots(Some(&leases[2].workflow_id)).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert!(!rows[0].granted && rows[0].position == 1 && rows[0].since == 12);
    assert_eq!(
        ask(&leases[0], 2, 13).await,
        SlotOutcome::Granted,
        "asking again"
    );

    // Twenty at once for a limit of one, in another partition: one gets it.
    let many: Vec<_> = leases[4..]
        .iter()
        .map(|l| {
            let (s, l) = (s.clone(), l.clone());
            tokio::spawn(async move {
                s.acquire_slots(
                    &l,
                    SlotRequest {
                        workflow_id: l.workflow_id.clone(),
                        block: 0,
                        job: 1,
                        slots: vec![Slot {
                            limit: "one".into(),
                            part: String::new(),
                            holder: l.workflow_id.clone(),
                            max: 1,
                        }],
                        at: 20,
                        fresh_after: 0,
                    },
                )
                .await
                .unwrap()
            })
        })
        .collect();
    let mut granted = 0;
    for t in many {
        if t.await.unwrap() == SlotOutcome::Granted {
            granted += 1;
        }
    }
    assert_eq!(granted, 1, "concurrent requests never exceed the limit");

    // A job's release lets the first waiter in; a workflow's end drops all
    // of its rows.
    s.write(
        Some(&leases[0]),
        vec![Change::ReleaseSlots {
            id: leases[0].workflow_id.clone(),
            block: 0,
            job: 0,
        }],
    )
    .await
    .unwrap();
    assert!(
        matches!(ask(&leases[3], 2, 14).await, SlotOutcome::Waiting(_)),
        "behind the first waiter"
    );
    assert_eq!(ask(&leases[2], 2, 15).await, SlotOutcome::Granted);
    s.write(
        Some(&leases[1]),
        vec![Change::Workflow {
            id: leases[1].workflow_id.clone(),
            status: Status::Completed,
            reason: String::new(),
            had_errors: false,
            es_halt: EsMode::Go,
            ended: Some(16),
        }],
    )
    .await
    .unwrap();
    assert!(
        s.slots(Some(&leases[1].workflow_id))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(ask(&leases[3], 2, 17).await, SlotOutcome::Granted);
    let all = s.slots(None).await.unwrap();
    assert_eq!(
        all.iter().filter(|r| r.limit == "two" && r.granted).count(),
        2
    );

    // A lease that moved asks for nothing.
    let mut stale = leases[5].clone();
    stale.epoch -= 1;
    let e = s
        .acquire_slots(
            &stale,
            SlotRequest {
                workflow_id: stale.workflow_id.clone(),
                block: 0,
                job: 0,
                slots: vec![],
                at: 18,
                fresh_after: 0,
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Fenced { .. }), "{e:?}");
}

/// Approvals are kept per workflow and identity (a second decision by the
/// same identity replaces the first), oldest first, and only for workflows
/// that exist.
pub async fn approvals_are_kept_per_identity(h: &dyn Harness) {
    let s = h.store().await;
    let w = submitted(s.as_ref(), 800, 1).await.id;
    let a = |who: &str, approve: bool, at: Micros| Approval {
        workflow_id: w.clone(),
        identity: who.into(),
        roles: vec!["approver".into(), format!("{who}-team")],
        approve,
        comment: format!("{who} at {at}"),
        content_hash: "hash".into(),
        at,
    };
    s.add_approval(&a("token:alice", true, 10)).await.unwrap();
    s.add_approval(&a("token:bob", false, 11)).await.unwrap();
    s.add_approval(&a("token:alice", true, 12)).await.unwrap();
    assert_eq!(
        s.approvals(&w).await.unwrap(),
        [a("token:bob", false, 11), a("token:alice", true, 12)]
    );
    assert!(s.approvals(&id(801)).await.unwrap().is_empty());
    let mut stray = a("token:alice", true, 13);
    stray.workflow_id = id(802);
    assert!(s.add_approval(&stray).await.is_err(), "no such workflow");
}

/// The notification queue: one per key, oldest first, bounded (the oldest
/// go), retried later, removed when done.
pub async fn notices_queue_once_per_key_and_stay_bounded(h: &dyn Harness) {
    let s = h.store().await;
    let n = |key: &str, created: Micros| Notice {
        id: 0,
        key: key.into(),
        hook: "sre".into(),
        event: "workflow.failed".into(),
        body: format!("{{\"key\": \"{key}\"}}"),
        attempts: 0,
        next_at: created,
        created,
        last_error: String::new(),
    };
    let dropped = s
        .enqueue_notices(vec![n("a", 1), n("b", 2), n("a", 3)], 10)
        .await
        .unwrap();
    assert_eq!(dropped, 0);
    let due = s.due_notices(5, 10).await.unwrap();
    assert_eq!(
        due.iter().map(|d| d.key.as_str()).collect::<Vec<_>>(),
        ["a", "b"],
        "a key already queued is queued once"
    );
    assert!(
        s.due_notices(0, 10).await.unwrap().is_empty(),
        "not due yet"
    );
    s.notice_failed(due[0].id, 1, 100, "connection refused")
        .await
        .unwrap();
    let later = s.due_notices(5, 10).await.unwrap();
    assert_eq!(
        later.iter().map(|d| d.key.as_str()).collect::<Vec<_>>(),
        ["b"]
    );
    let retried = s.due_notices(100, 10).await.unwrap();
    let a = retried.iter().find(|d| d.key == "a").unwrap();
    assert_eq!(
        (a.attempts, a.last_error.as_str()),
        (1, "connection refused")
    );
    s.notice_done(a.id).await.unwrap();
    // Bounded: past the cap, the oldest go.
    let dropped = s
        .enqueue_notices(vec![n("c", 6), n("d", 7), n("e", 8)], 2)
        .await
        .unwrap();
    assert_eq!(dropped, 2);
    let left = s.due_notices(100, 10).await.unwrap();
    assert_eq!(
        left.iter().map(|d| d.key.as_str()).collect::<Vec<_>>(),
        ["d", "e"]
    );
}
