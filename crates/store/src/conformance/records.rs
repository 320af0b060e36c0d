//! Conformance: records — submit and idempotency, compare-and-set, atomic
//! writes, listing, the audit log and short ids.

use super::*;

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
    let audit_log = || async {
        let q = AuditQuery {
            limit: 10,
            ..Default::default()
        };
        s.audit_log(q).await.unwrap()
    };
    assert_eq!(
        audit_log().await[0].target,
        id(1),
        "the audit entry names the new id"
    );

    let labelled = || async {
        let filter = ListFilter {
            labels: vec![("team".into(), "sre".into())],
            limit: 10,
            ..Default::default()
        };
        let found = s.list(filter).await.unwrap();
        found.into_iter().map(|w| w.id).collect::<Vec<_>>()
    };
    assert_eq!(labelled().await, [id(1)]);

    let again = WorkflowRecord::submitted(id(2), req, "v1".into(), 200);
    let retry = entry("submit", "token:bot", "", 200);
    assert_eq!(
        s.submit(&again, "h1", Some(retry)).await.unwrap(),
        SubmitOutcome::Existing {
            id: id(1),
            content_hash: "h1".into()
        }
    );
    assert_eq!(s.get(&id(2)).await.unwrap(), None, "nothing new stored");
    assert_eq!(labelled().await, [id(1)], "no labels of the refused one");
    let log = audit_log().await;
    assert_eq!(log.len(), 2, "the answered retry is audited: {log:?}");
    assert!(
        log.iter()
            .all(|e| e.target == id(1) && e.action == "submit"),
        "{log:?}"
    );
    assert!(
        log.iter().any(|e| e.detail.contains("already used")),
        "{log:?}"
    );
    assert_eq!(s.expire_request_ids(100).await.unwrap(), 0);
    assert_eq!(s.expire_request_ids(101).await.unwrap(), 1);
    assert_eq!(
        s.submit(&again, "h1", None).await.unwrap(),
        SubmitOutcome::Inserted
    );
    assert_eq!(labelled().await, [id(2), id(1)]);
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
                status: Status::Stopped,
                reason: "r".into(),
                had_errors: true,
                es_halt: interlock_core::EsMode::Drain,
                ended: Some(9),
            },
        ],
    )
    .await
    .unwrap();
    let rec = s.get(&w).await.unwrap().unwrap();
    assert_eq!(
        (
            rec.status,
            rec.reason.as_str(),
            rec.had_errors,
            rec.es_halt,
            rec.ended
        ),
        (
            Status::Stopped,
            "r",
            true,
            interlock_core::EsMode::Drain,
            Some(9)
        )
    );
}

/// A write names existing workflows only, and a leased write only its
/// lease's workflow: job and block rows are never created for a workflow
/// that does not exist, nor changed under another workflow's lease.
pub async fn writes_touch_only_what_they_may(h: &dyn Harness) {
    let s = h.store().await;
    let me = instance(s.as_ref(), "i-a").await;
    let one = running(s.as_ref(), 1, &me).await;
    let two = running(s.as_ref(), 2, &me).await;
    let missing = id(405);
    let bad = s
        .write(None, vec![job(&missing, 0, 0, Status::Completed)])
        .await;
    assert!(bad.is_err(), "a job row for a missing workflow: {bad:?}");
    assert_eq!(s.get(&missing).await.unwrap(), None);

    match s
        .write(
            Some(&one),
            vec![job(&two.workflow_id, 0, 0, Status::Failed)],
        )
        .await
    {
        Err(StoreError::Fenced { id, .. }) => assert_eq!(id, two.workflow_id),
        other => panic!("a write under another workflow's lease: {other:?}"),
    }
    let rec = s.get(&two.workflow_id).await.unwrap().unwrap();
    assert_eq!(rec.blocks[0].jobs[0].status, Status::NotStarted);
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
