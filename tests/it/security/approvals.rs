//! The two-person rule over the real server with authentication: a
//! requireApproval policy holds a workflow AwaitingApproval until enough
//! distinct approvers holding the role, not the submitter, approve it.

use super::*;
use interlock_proto::v1::Status as S;

const POLICY: &str = r#"[{"Name": "x", "Policies": [{"Name": "requireApproval",
    "Settings": {"Approvals": 2, "Role": "approver", "ExpiresAfter": "3s"}}]}]"#;

async fn approval_server() -> Secure {
    approval_server_notifying(None).await
}

/// With `port`, approval requests are posted to a webhook there.
async fn approval_server_notifying(port: Option<u16>) -> Secure {
    secure_with(move |c, _, _| {
        std::fs::write(c.configs.join("policies.json"), POLICY).unwrap();
        if let Some(port) = port {
            std::fs::write(
                c.configs.join("notify.json"),
                format!(
                    r#"{{"AllowedHosts": ["127.0.0.1"], "Webhooks": [{{"Name": "approvers",
                    "Url": "http://127.0.0.1:{port}/hook", "Secret": "0123456789abcdef",
                    "Events": ["approval.requested"]}}]}}"#
                ),
            )
            .unwrap();
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvers_are_told_of_a_request() {
    use crate::notify::{Received, dead_port, receive_on};
    let port = dead_port();
    let received = std::sync::Arc::new(Received::default());
    receive_on(port, received.clone()).await;
    let sec = approval_server_notifying(Some(port)).await;
    let (mut lead, _) = sec.as_role(Some("lead")).await;
    let id = lead.submit(quick()).await.unwrap().into_inner().id;
    eventually("the approvers' webhook is told", || async {
        received
            .posts
            .lock()
            .unwrap()
            .iter()
            .any(|p| p.0 == "approval.requested" && p.3.contains(&id))
    })
    .await;
}

fn quick() -> v1::WorkReq {
    req::work("x", vec![req::block(1, vec![req::probe(0)])])
}

async fn decide(
    sec: &Secure,
    role: &str,
    id: &str,
    approve: bool,
) -> Result<v1::ApproveResp, tonic::Status> {
    let (mut wf, _) = sec.as_role(Some(role)).await;
    let q = v1::ApproveReq {
        id: id.into(),
        comment: format!("{role} says {approve}"),
    };
    if approve {
        wf.approve(q).await
    } else {
        wf.reject(q).await
    }
    .map(|r| r.into_inner())
}

#[tokio::test]
async fn two_distinct_approvers_other_than_the_submitter_let_it_run() {
    let sec = approval_server().await;
    let (mut lead, _) = sec.as_role(Some("lead")).await;
    let dry = lead.validate(quick()).await.unwrap().into_inner();
    assert_eq!(
        (dry.approvals_needed, dry.approval_role.as_str()),
        (2, "approver")
    );
    let id = lead.submit(quick()).await.unwrap().into_inner().id;
    let reader = lead.clone();
    let status = |id: String| {
        let mut reader = reader.clone();
        async move {
            reader
                .status(v1::StatusReq { id })
                .await
                .unwrap()
                .into_inner()
        }
    };
    assert_eq!(status(id.clone()).await.status, S::AwaitingApproval as i32);

    let refused = lead.exec(v1::ExecReq { id: id.clone() }).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        refused.message().contains("needs 2 approval(s)"),
        "{}",
        refused.message()
    );

    let own = decide(&sec, "lead", &id, true).await.unwrap_err();
    assert_eq!(own.code(), Code::PermissionDenied);
    assert!(
        own.message().contains("cannot approve"),
        "{}",
        own.message()
    );
    let viewer = decide(&sec, "viewer", &id, true).await.unwrap_err();
    assert_eq!(
        viewer.code(),
        Code::PermissionDenied,
        "{}",
        viewer.message()
    );
    assert!(
        viewer.message().contains("holds none of the roles")
            && viewer.message().contains("approver"),
        "{}",
        viewer.message()
    );

    let one = decide(&sec, "approver-a", &id, true).await.unwrap();
    assert_eq!((one.approvals_valid, one.approvals_needed), (1, 2));
    let again = decide(&sec, "approver-a", &id, true).await.unwrap();
    assert_eq!(again.approvals_valid, 1, "the same approver counts once");
    assert_eq!(again.status, S::AwaitingApproval as i32);
    let st = status(id.clone()).await;
    assert_eq!((st.approvals_needed, st.approvals_valid), (2, 1));
    assert_eq!(st.approvals.len(), 1);
    assert_eq!(st.approvals[0].identity, "token:approver-a");

    let two = decide(&sec, "approver-b", &id, true).await.unwrap();
    assert_eq!((two.status, two.approvals_valid), (S::NotStarted as i32, 2));
    lead.exec(v1::ExecReq { id: id.clone() }).await.unwrap();
    eventually("it completes", || async {
        status(id.clone()).await.status == S::Completed as i32
    })
    .await;

    // A clone is new content for the rule: it waits for fresh approvals.
    let clone = v1::workflow_client::WorkflowClient::clone(
        &mut lead,
        v1::CloneReq {
            id: id.clone(),
            ..Default::default()
        },
    )
    .await
    .unwrap()
    .into_inner()
    .id;
    let st = status(clone).await;
    assert_eq!(st.status, S::AwaitingApproval as i32);
    assert_eq!(st.approvals_valid, 0);

    // Each decision is in the audit log, with its comment.
    let (_, mut admin) = sec.as_role(Some("admin")).await;
    let audit = admin
        .audit(v1::AuditReq {
            limit: 100,
            action: "approve".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        audit
            .entries
            .iter()
            .any(|e| e.identity == "token:approver-b" && e.detail.contains("approver-b says true")),
        "{audit:?}"
    );
}

#[tokio::test]
async fn a_rejection_ends_it_and_approvals_expire() {
    let sec = approval_server().await;
    let (mut lead, _) = sec.as_role(Some("lead")).await;
    let rejected = lead.submit(quick()).await.unwrap().into_inner().id;
    decide(&sec, "approver-a", &rejected, true).await.unwrap();
    let r = decide(&sec, "approver-b", &rejected, false).await.unwrap();
    assert_eq!(r.status, S::Cancelled as i32);
    let st = lead
        .status(v1::StatusReq {
            id: rejected.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        st.reason
            .contains("rejected by token:approver-b: approver-b says false"),
        "{}",
        st.reason
    );
    assert!(lead.exec(v1::ExecReq { id: rejected }).await.is_err());

    // Approved, then left longer than ExpiresAfter: Exec counts again.
    let id = lead.submit(quick()).await.unwrap().into_inner().id;
    decide(&sec, "approver-a", &id, true).await.unwrap();
    let ready = decide(&sec, "approver-b", &id, true).await.unwrap();
    assert_eq!(ready.status, S::NotStarted as i32);
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    let e = lead.exec(v1::ExecReq { id: id.clone() }).await.unwrap_err();
    assert!(e.message().contains("has 0 that count"), "{}", e.message());
}

#[tokio::test]
async fn every_approval_policy_that_applies_must_be_met() {
    let sec = secure_with(|c, _, _| {
        std::fs::write(
            c.configs.join("policies.json"),
            r#"[{"Name": "x", "Policies": [
                {"Name": "requireApproval", "Settings": {"Role": "approver"}},
                {"Name": "requireApproval", "Settings": {"Role": "operator"}}]}]"#,
        )
        .unwrap();
    })
    .await;
    let (mut lead, _) = sec.as_role(Some("lead")).await;
    let id = lead.submit(quick()).await.unwrap().into_inner().id;
    let one = decide(&sec, "approver-a", &id, true).await.unwrap();
    assert_eq!(
        (one.status, one.approvals_valid, one.approvals_needed),
        (S::AwaitingApproval as i32, 1, 2),
        "the approver role is met, the operator role is not"
    );
    let e = lead.exec(v1::ExecReq { id: id.clone() }).await.unwrap_err();
    assert!(e.message().contains("role \"operator\""), "{}", e.message());
    let two = decide(&sec, "operator", &id, true).await.unwrap();
    assert_eq!((two.status, two.approvals_valid), (S::NotStarted as i32, 2));
}
