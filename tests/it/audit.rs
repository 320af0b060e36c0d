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
        })
        .await
        .unwrap();
    write_config(&s.config_path("policies.json"), "not json");
    eventually("reload audited", || async {
        s.audit_log()
            .await
            .iter()
            .any(|e| e.action == "config.reload" && e.outcome == "invalid")
    })
    .await;

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
