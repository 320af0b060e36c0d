//! Conformance: run ownership — instances, leases, fencing and orphan
//! claims.

use super::*;

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

/// A refused write lands nothing of what it carried, whether it ends the
/// workflow or not, and whatever it shares a commit with: writes racing it
/// under live leases all land.
pub async fn a_refused_write_lands_nothing(h: &dyn Harness) {
    let s = h.store().await;
    let a = instance(s.as_ref(), "i-a").await;
    let stale = running(s.as_ref(), 1, &a).await;
    let w = id(1);
    s.write(Some(&stale), vec![job(&w, 0, 0, Status::Running)])
        .await
        .unwrap();
    h.advance(TTL * 2).await;
    let b = instance(s.as_ref(), "i-b").await;
    assert_eq!(s.claim_orphans(&b, 10).await.unwrap().len(), 1);
    let mut live = Vec::new();
    for n in 2..12 {
        live.push(running(s.as_ref(), n, &b).await);
    }
    let end = |w: &str| Change::Workflow {
        id: w.to_string(),
        status: Status::Completed,
        reason: String::new(),
        had_errors: false,
        es_halt: interlock_core::EsMode::Go,
        ended: Some(9),
    };
    let block = |w: &str| Change::Block {
        id: w.to_string(),
        block: 0,
        rec: interlock_core::BlockRecord {
            status: Status::Completed,
            ..interlock_core::BlockRecord::new(2)
        },
    };
    // Both shapes of a stale write (with and without the workflow's own
    // row), each racing ten good ones, several rounds.
    for round in 0..3 {
        let stale_changes = if round % 2 == 0 {
            vec![job(&w, 0, 0, Status::Completed), block(&w), end(&w)]
        } else {
            vec![job(&w, 0, 0, Status::Failed), block(&w)]
        };
        let mut writes = tokio::task::JoinSet::new();
        let (st, stale) = (s.clone(), stale.clone());
        writes.spawn(async move { (true, st.write(Some(&stale), stale_changes).await) });
        for l in &live {
            let (st, l) = (s.clone(), l.clone());
            let change = job(&l.workflow_id, 0, round % 2, Status::Running);
            writes.spawn(async move { (false, st.write(Some(&l), vec![change]).await) });
        }
        while let Some(done) = writes.join_next().await {
            match done.unwrap() {
                (true, r) => assert!(matches!(r, Err(StoreError::Fenced { .. })), "{r:?}"),
                (false, r) => r.unwrap(),
            }
        }
    }
    let rec = s.get(&w).await.unwrap().unwrap();
    assert_eq!(rec.status, Status::Running, "the stale end did not land");
    assert_eq!(rec.owner.as_deref(), Some(b.as_str()));
    assert_eq!(rec.blocks[0].status, Status::NotStarted);
    assert_eq!(rec.blocks[0].jobs[0].status, Status::Running);
    for l in &live {
        let rec = s.get(&l.workflow_id).await.unwrap().unwrap();
        let jobs: Vec<Status> = rec.blocks[0].jobs.iter().map(|j| j.status).collect();
        assert_eq!(jobs, [Status::Running, Status::Running]);
    }
}

/// Recording a terminal status ends ownership in the same commit, whether
/// the owner wrote it or a compare-and-set did: no release is needed and a
/// later write under the old lease is refused.
pub async fn a_terminal_status_ends_ownership(h: &dyn Harness) {
    let s = h.store().await;
    let a = instance(s.as_ref(), "i-a").await;
    let lease = running(s.as_ref(), 1, &a).await;
    let w = id(1);
    let pause = Change::Workflow {
        id: w.clone(),
        status: Status::Paused,
        reason: "held".into(),
        had_errors: false,
        es_halt: interlock_core::EsMode::Go,
        ended: None,
    };
    s.write(Some(&lease), vec![pause]).await.unwrap();
    let rec = s.get(&w).await.unwrap().unwrap();
    assert_eq!(
        rec.owner.as_deref(),
        Some(a.as_str()),
        "Paused keeps its owner"
    );
    let end = Change::Workflow {
        id: w.clone(),
        status: Status::Completed,
        reason: String::new(),
        had_errors: false,
        es_halt: interlock_core::EsMode::Go,
        ended: Some(1),
    };
    // All or nothing: a failing change undoes the end and its release.
    let failing = vec![end.clone(), Change::WorkflowErrors { id: id(99) }];
    assert!(s.write(Some(&lease), failing).await.is_err());
    let rec = s.get(&w).await.unwrap().unwrap();
    assert_eq!(
        (rec.status, rec.owner.as_deref()),
        (Status::Paused, Some(a.as_str()))
    );
    s.write(Some(&lease), vec![end]).await.unwrap();
    assert_eq!(s.get(&w).await.unwrap().unwrap().owner, None);
    assert!(matches!(
        s.write(Some(&lease), vec![job(&w, 0, 0, Status::Completed)])
            .await,
        Err(StoreError::Fenced { .. })
    ));
    // A compare-and-set to a terminal status clears a dead owner too.
    let lease = running(s.as_ref(), 2, &a).await;
    h.advance(TTL * 2).await;
    let w = id(2);
    let out = s
        .transition(
            &w,
            Status::Running,
            Status::Cancelled,
            "cancelled",
            Some(2),
            vec![],
        )
        .await
        .unwrap();
    assert!(matches!(out, CasOutcome::Done(())), "{out:?}");
    assert_eq!(s.get(&w).await.unwrap().unwrap().owner, None);
    assert!(matches!(
        s.release(&lease).await,
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
