//! The audit log records every mutating call and config reload.

use interlock_proto::v1;
use interlock_tests::{TestServer, eventually, req, wait_final, write_config};
use tonic::Request;

#[tokio::test]
async fn every_mutating_call_is_audited_with_identity_request_id_and_outcome() {
    let s = TestServer::start().await;
    let mut raw = s.raw().await;
    let mut r = Request::new(req::work(
        "x",
        vec![req::block(1, vec![req::probe(30_000)])],
    ));
    r.metadata_mut()
        .insert("x-request-id", "change-1234".parse().unwrap());
    let id = raw.submit(r).await.unwrap().into_inner().id;
    raw.exec(v1::ExecReq { id: id.clone() }).await.unwrap();
    eventually("running", || async { !s.probe.starts_of(&id).is_empty() }).await;
    raw.pause(v1::PauseReq {
        id: id.clone(),
        reason: String::new(),
    })
    .await
    .unwrap();
    raw.resume(v1::ResumeReq { id: id.clone() }).await.unwrap();
    raw.cancel(v1::CancelReq {
        id: id.clone(),
        reason: "audit test".into(),
    })
    .await
    .unwrap();
    wait_final(&s.client().await, &id).await;
    let _ = raw.exec(v1::ExecReq { id: id.clone() }).await; // refused: audited too
    v1::workflow_client::WorkflowClient::clone(
        &mut raw,
        v1::CloneReq {
            id: id.clone(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let _ = raw
        .resolve_job(v1::ResolveJobReq {
            id: id.clone(),
            block: 0,
            job: 0,
            action: 1,
            reason: String::new(),
        })
        .await;
    s.control()
        .await
        .set_emergency_stop(v1::SetEmergencyStopReq {
            name: "y".into(),
            stop: true,
            reason: "audit".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    break_policies_and_wait_for_the_audit(&s).await;

    let entries = s.audit_log().await;
    let find = |action: &str, outcome: &str| {
        entries
            .iter()
            .find(|e| e.action == action && e.outcome == outcome)
            .unwrap_or_else(|| panic!("no {action} {outcome} in {entries:#?}"))
    };
    let submit = find("submit", "ok");
    assert_eq!(submit.target, id);
    assert_eq!(submit.request_id, "change-1234");
    assert_eq!(submit.identity, "anonymous@127.0.0.1", "no source port");
    assert!(submit.peer.starts_with("127.0.0.1:"), "{}", submit.peer);
    for action in ["exec", "pause", "resume", "cancel", "clone", "estop.set"] {
        find(action, "ok");
    }
    let refused = find("exec", "AlreadyExists");
    assert!(
        refused.detail.contains("already started"),
        "{}",
        refused.detail
    );
    find("resolve", "FailedPrecondition");
    assert!(
        entries.windows(2).all(|w| w[0].id > w[1].id),
        "newest first"
    );
}

/// Why a workflow was cancelled or an e-stop set is the first thing an
/// operator asks afterwards: the reason given is in the entry's detail.
#[tokio::test]
async fn the_reason_for_a_cancel_or_an_emergency_stop_is_in_the_audit_detail() {
    let s = TestServer::start().await;
    let mut raw = s.raw().await;
    let id = raw
        .submit(req::work("x", vec![req::block(1, vec![req::probe(0)])]))
        .await
        .unwrap()
        .into_inner()
        .id;
    raw.cancel(v1::CancelReq {
        id: id.clone(),
        reason: "vendor recall RMA-7".into(),
    })
    .await
    .unwrap();
    s.control()
        .await
        .set_emergency_stop(v1::SetEmergencyStopReq {
            name: "y".into(),
            stop: true,
            reason: "rack 12 power work".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let entries = s.audit_log().await;
    let detail = |action: &str| {
        let e = entries
            .iter()
            .find(|e| e.action == action)
            .unwrap_or_else(|| panic!("no {action} in {entries:#?}"));
        (e.target.clone(), e.outcome.clone(), e.detail.clone())
    };
    assert_eq!(
        detail("cancel"),
        (id, "ok".into(), "reason: vendor recall RMA-7".into())
    );
    assert_eq!(
        detail("estop.set"),
        (
            "y stop".into(),
            "ok".into(),
            "reason: rack 12 power work".into()
        )
    );
}

/// Audit filters by time, identity, action and target: each returns
/// exactly the entries that match, and no other.
#[tokio::test]
async fn audit_filters_return_only_matching_entries() {
    let s = TestServer::start().await;
    let mut raw = s.raw().await;
    let work = || req::work("x", vec![req::block(1, vec![req::probe(0)])]);
    let a = raw.submit(work()).await.unwrap().into_inner().id;
    let b = raw.submit(work()).await.unwrap().into_inner().id;
    raw.cancel(v1::CancelReq {
        id: a.clone(),
        reason: "filters".into(),
    })
    .await
    .unwrap();
    // The server's own entry, under its own identity.
    break_policies_and_wait_for_the_audit(&s).await;
    raw.exec(v1::ExecReq { id: b.clone() }).await.unwrap();

    let all = s.audit_log().await;
    let ids = |entries: &[v1::AuditEntry]| entries.iter().map(|e| e.id).collect::<Vec<_>>();
    let server = &s;
    let query = |q: v1::AuditReq| async move {
        let entries = server
            .control()
            .await
            .audit(v1::AuditReq { limit: 1000, ..q })
            .await
            .unwrap()
            .into_inner()
            .entries;
        ids(&entries)
    };
    let expect = |keep: &dyn Fn(&v1::AuditEntry) -> bool| {
        let kept: Vec<_> = all.iter().filter(|e| keep(e)).cloned().collect();
        assert!(
            !kept.is_empty() && kept.len() < all.len(),
            "the filter must split the log: {all:#?}"
        );
        ids(&kept)
    };
    let at = |e: &v1::AuditEntry| {
        let t = e.at.unwrap();
        (t.seconds, t.nanos)
    };
    // `all` is newest first: the cancel is neither the first nor the last.
    let middle = all.iter().find(|e| e.action == "cancel").unwrap().clone();
    assert_eq!(
        query(v1::AuditReq {
            from: middle.at,
            ..Default::default()
        })
        .await,
        expect(&|e| at(e) >= at(&middle)),
        "since: at or after"
    );
    assert_eq!(
        query(v1::AuditReq {
            to: middle.at,
            ..Default::default()
        })
        .await,
        expect(&|e| at(e) < at(&middle)),
        "until: before"
    );
    for identity in ["interlockd", "anonymous@127.0.0.1"] {
        assert_eq!(
            query(v1::AuditReq {
                identity: identity.into(),
                ..Default::default()
            })
            .await,
            expect(&|e| e.identity == identity),
            "identity {identity}"
        );
    }
    for action in ["submit", "cancel", "exec", "config.reload"] {
        assert_eq!(
            query(v1::AuditReq {
                action: action.into(),
                ..Default::default()
            })
            .await,
            expect(&|e| e.action == action),
            "action {action}"
        );
    }
    for target in [&a, &b] {
        assert_eq!(
            query(v1::AuditReq {
                target: target.clone(),
                ..Default::default()
            })
            .await,
            expect(&|e| e.target == *target),
            "target {target}"
        );
    }
    assert_eq!(
        query(v1::AuditReq {
            identity: "anonymous@127.0.0.1".into(),
            action: "submit".into(),
            target: b.clone(),
            ..Default::default()
        })
        .await,
        expect(&|e| e.action == "submit" && e.target == b),
        "filters combine"
    );
}

/// An action taken through a short id is audited under the workflow's
/// full id, so filtering by the id finds it (a prefix may later become
/// ambiguous, and would not match the filter).
#[tokio::test]
async fn an_action_by_id_prefix_is_audited_under_the_full_id() {
    let s = TestServer::start().await;
    let mut raw = s.raw().await;
    let id = raw
        .submit(req::work("x", vec![req::block(1, vec![req::probe(0)])]))
        .await
        .unwrap()
        .into_inner()
        .id;
    let prefix = id[..13].to_string();
    raw.cancel(v1::CancelReq {
        id: prefix,
        reason: "short id".into(),
    })
    .await
    .unwrap();
    let entries = s
        .control()
        .await
        .audit(v1::AuditReq {
            target: id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries;
    let actions: Vec<_> = entries.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["cancel", "submit"], "{entries:#?}");
}

/// Writes a broken policies.json and waits for the server's own audit
/// entry refusing it.
async fn break_policies_and_wait_for_the_audit(s: &TestServer) {
    write_config(&s.config_path("policies.json"), "not json");
    eventually("reload audited", || async {
        s.audit_log()
            .await
            .iter()
            .any(|e| e.action == "config.reload" && e.outcome == "invalid")
    })
    .await;
}
