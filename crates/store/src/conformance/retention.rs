//! Conformance: retention — only terminal workflows that ended before the
//! cutoff are pruned, oldest first, a batch at a time, with everything kept
//! for them; each leaves a tombstone; audit entries wait for their own,
//! separate pruning.

use super::*;

/// A workflow moved from NotStarted to `to`, recording `ended`.
async fn moved(s: &dyn Store, n: u32, to: Status, ended: Micros) -> String {
    let mut req = request("wf", 2);
    req.labels.insert("team".into(), format!("t{n}"));
    let rec = WorkflowRecord::submitted(id(n), req, "v1".into(), 10);
    s.submit(&rec, "hash", Some(entry("submit", "token:a", "", 10)))
        .await
        .unwrap();
    let done = s
        .transition(
            &rec.id,
            Status::NotStarted,
            to,
            "test",
            Some(ended),
            vec![job(&rec.id, 0, 0, Status::Skipped)],
        )
        .await
        .unwrap();
    assert_eq!(done, CasOutcome::Done(()), "{to:?}");
    rec.id
}

pub async fn retention_prunes_only_finished_old_workflows(h: &dyn Harness) {
    let s = h.store().await;
    let s = s.as_ref();
    let completed = moved(s, 1, Status::Completed, 100).await;
    let failed = moved(s, 2, Status::Failed, 200).await;
    let cancelled = moved(s, 3, Status::Cancelled, 300).await;
    let recent = moved(s, 4, Status::Completed, 5_000).await;
    // Old end times on statuses that are not final: never pruned.
    let paused = moved(s, 5, Status::Paused, 50).await;
    let interrupted = moved(s, 6, Status::Interrupted, 60).await;
    let waiting = moved(s, 7, Status::AwaitingApproval, 70).await;
    let never_run = submitted(s, 8, 1).await.id;
    let lease = running(s, 9, &instance(s, "a").await).await;
    s.add_approval(&Approval {
        workflow_id: completed.clone(),
        identity: "token:b".into(),
        roles: vec![],
        approve: true,
        comment: String::new(),
        content_hash: "hash".into(),
        at: 20,
    })
    .await
    .unwrap();
    s.request(&completed, RequestKind::Cancel, "late", 30)
        .await
        .unwrap();
    // A token the workflow took: the bucket's history, which outlives it.
    let rule = Gcra::new(1, 1, Duration::from_secs(7 * 86_400));
    let take = |job: usize, at: Micros| TakeRequest {
        bucket: "b".into(),
        key: String::new(),
        rule,
        at,
        workflow_id: completed.clone(),
        block: 0,
        job,
    };
    assert_eq!(s.take(take(0, 40)).await.unwrap(), TakeOutcome::Taken);

    assert_eq!(
        s.prune_workflows(1_000, 7_000, 90, 2).await.unwrap(),
        2,
        "a batch"
    );
    assert_eq!(s.get(&completed).await.unwrap(), None, "oldest first");
    assert_eq!(s.get(&failed).await.unwrap(), None);
    assert!(s.get(&cancelled).await.unwrap().is_some(), "batch bounded");
    let tomb = s.pruned(&completed).await.unwrap().expect("a tombstone");
    assert_eq!(
        (tomb.id.as_str(), tomb.ended, tomb.kept_days),
        (completed.as_str(), 100, 90)
    );
    assert_eq!(tomb.pruned_at, 7_000, "pruned at the caller's now");
    assert_eq!(s.prune_workflows(1_000, 7_000, 90, 10).await.unwrap(), 1);
    assert_eq!(s.prune_workflows(1_000, 7_000, 90, 10).await.unwrap(), 0);
    // The take stays: a second take inside the bucket's window is refused,
    // under the same rule and under a changed one (rebuilt from the takes).
    let tighter = Gcra::new(1, 1, Duration::from_secs(8 * 86_400));
    for rule in [rule, tighter] {
        let mut again = take(1, 3 * 86_400_000_000);
        again.rule = rule;
        assert!(
            matches!(s.take(again).await.unwrap(), TakeOutcome::Empty { .. }),
            "a pruned workflow's take still counts"
        );
    }
    assert_eq!(s.get(&cancelled).await.unwrap(), None);

    for kept in [
        &recent,
        &paused,
        &interrupted,
        &waiting,
        &never_run,
        &lease.workflow_id,
    ] {
        assert!(s.get(kept).await.unwrap().is_some(), "{kept} kept");
        assert_eq!(s.pruned(kept).await.unwrap(), None);
    }
    assert!(s.approvals(&completed).await.unwrap().is_empty());
    let labelled = s
        .list(ListFilter {
            labels: [("team".to_string(), "t1".to_string())].into(),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(labelled.is_empty(), "labels went with it");
    let audit = s
        .audit_log(AuditQuery {
            target: Some(completed.clone()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(audit.len(), 1, "audit entries stay");
}

pub async fn audit_retention_is_separate_and_batched(h: &dyn Harness) {
    let s = h.store().await;
    for at in [10, 20, 30, 40] {
        s.audit(entry("submit", "token:a", &format!("w{at}"), at))
            .await
            .unwrap();
    }
    assert_eq!(s.prune_audit(25, 1).await.unwrap(), 1, "a batch");
    assert_eq!(s.prune_audit(25, 10).await.unwrap(), 1);
    assert_eq!(s.prune_audit(25, 10).await.unwrap(), 0);
    let left: Vec<String> = s
        .audit_log(AuditQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.target)
        .collect();
    assert_eq!(left, ["w40", "w30"]);
    s.audit(entry("submit", "token:a", "w50", 50))
        .await
        .unwrap();
    let ids: Vec<i64> = s
        .audit_log(AuditQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert!(ids[0] > ids[1], "ids keep growing after a prune: {ids:?}");

    // Tombstones go when the audit retention passes the workflow's end
    // (its entries, recorded before it ended, are gone by then).
    let w = moved(s.as_ref(), 1, Status::Completed, 100).await;
    assert_eq!(s.prune_workflows(1_000, 5_000, 1, 10).await.unwrap(), 1);
    s.prune_audit(100, 100).await.unwrap();
    assert!(s.pruned(&w).await.unwrap().is_some(), "ended at 100: kept");
    s.prune_audit(101, 100).await.unwrap();
    assert_eq!(s.pruned(&w).await.unwrap(), None);
}
