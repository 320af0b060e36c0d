//! Authorization: every RPC asks for its grant; no rbac.json, no calls.

use super::*;

#[tokio::test]
async fn a_role_without_the_grant_is_denied_naming_it_and_one_with_it_works() {
    let sec = secure().await;
    let id = sec.submitted().await;

    // The viewer reads everything and changes nothing.
    let viewer = call_everything(sec.transport(sec.creds(Some("viewer"))).await, &id).await;
    let want_denied: BTreeMap<&str, &str> = [
        ("Submit", "\"submit\" on workflow \"x\""),
        ("Exec", "\"exec\" on workflow \"x\""),
        ("ResolveJob", "\"exec\" on workflow \"x\""),
        ("Pause", "\"pause\" on workflow \"x\""),
        ("Resume", "\"pause\" on workflow \"x\""),
        ("Cancel", "\"cancel\" on workflow \"x\""),
        ("Clone", "\"submit\" on workflow \"x\""),
        ("SetEmergencyStop", "\"estop\" on workflow \"x\""),
        ("Audit", "\"admin\" on workflow \"*\""),
        ("Backup", "\"admin\" on workflow \"*\""),
        ("diskerase.Submit", "\"submit\" on workflow \"x\""),
        ("diskerase.Exec", "\"exec\" on workflow \"x\""),
    ]
    .into();
    for (rpc, code, msg) in &viewer {
        match want_denied.get(rpc) {
            Some(grant) => {
                assert_eq!(*code, Code::PermissionDenied, "{rpc}: {msg}");
                assert!(
                    msg.starts_with("token:viewer lacks the grant ") && msg.contains(grant),
                    "{rpc}: {msg}"
                );
                assert!(msg.contains("(its roles: viewer)"), "{msg}");
            }
            // Authorized (read), refused on its merits: no policy asks
            // for approval of "x" here.
            None if matches!(*rpc, "Approve" | "Reject") => {
                assert_eq!(*code, Code::FailedPrecondition, "viewer {rpc}: {msg}");
                assert!(msg.contains("needs no approval"), "{msg}");
            }
            None => assert_eq!(*code, Code::Ok, "viewer {rpc}: {msg}"),
        }
    }
    assert!(
        sec.s
            .scrape()
            .await
            .contains("interlock_auth_denials_total{action=\"exec\"}")
    );
    let st = Wf::new(sec.transport(sec.creds(Some("viewer"))).await)
        .status(v1::StatusReq { id: id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        st.status,
        v1::Status::NotStarted as i32,
        "denials changed nothing"
    );

    // The operator holds every grant on "x" but estop and admin: each call
    // passes authorization (it may still fail on its merits, e.g. Resume of
    // a workflow that is not paused).
    let other = sec.submitted().await;
    let operator = call_everything(sec.transport(sec.creds(Some("operator"))).await, &other).await;
    for (rpc, code, msg) in &operator {
        let denied = *code == Code::PermissionDenied;
        let want_denied = matches!(*rpc, "SetEmergencyStop" | "Audit" | "Backup");
        assert_eq!(denied, want_denied, "operator {rpc}: {code:?} {msg}");
        assert_ne!(*code, Code::Unauthenticated, "operator {rpc}: {msg}");
    }
    let ok: Vec<_> = operator
        .iter()
        .filter(|(_, c, _)| *c == Code::Ok)
        .map(|(r, _, _)| *r)
        .collect();
    for rpc in [
        "Submit", "Exec", "Status", "Clone", "List", "Watch", "Validate", "Cancel",
    ] {
        assert!(
            ok.contains(&rpc),
            "operator {rpc} did not work: {operator:?}"
        );
    }

    // The operator's grants stop at workflow "x", and exclude e-stop and audit.
    let (mut op, mut op_ctl) = sec.as_role(Some("operator")).await;
    let (c, m) = code(
        op.submit(req::satellite_erase("AAB", &["aab-sat-01"]))
            .await,
    );
    assert_eq!(c, Code::PermissionDenied);
    assert!(
        m.contains("\"submit\" on workflow \"SatelliteDiskErase\""),
        "{m}"
    );
    for (rpc, (c, m)) in [
        (
            "SetEmergencyStop",
            code(
                op_ctl
                    .set_emergency_stop(v1::SetEmergencyStopReq {
                        name: "x".into(),
                        stop: true,
                        reason: "no".into(),
                        ..Default::default()
                    })
                    .await,
            ),
        ),
        ("Audit", code(op_ctl.audit(v1::AuditReq::default()).await)),
    ] {
        assert_eq!(c, Code::PermissionDenied, "{rpc}: {m}");
    }

    // The stopper may stop "x" but not everything.
    let (_, mut stop) = sec.as_role(Some("stopper")).await;
    let (c, m) = code(
        stop.set_emergency_stop(v1::SetEmergencyStopReq {
            name: "*".into(),
            stop: true,
            reason: "all".into(),
            ..Default::default()
        })
        .await,
    );
    assert_eq!(c, Code::PermissionDenied, "{m}");
    assert!(m.contains("\"estop\" on workflow \"*\""), "{m}");
    stop.set_emergency_stop(v1::SetEmergencyStopReq {
        name: "x".into(),
        stop: true,
        reason: "drill".into(),
        ..Default::default()
    })
    .await
    .expect("stopper stops x");
    let (c, _) = code(op.exec(v1::ExecReq { id: id.clone() }).await);
    assert_eq!(c, Code::FailedPrecondition, "stopped by the stopper");
    stop.set_emergency_stop(v1::SetEmergencyStopReq {
        name: "x".into(),
        stop: false,
        reason: "drill over".into(),
        ..Default::default()
    })
    .await
    .unwrap();

    // With the right grants, everything works; Status names who did what.
    op.exec(v1::ExecReq { id: id.clone() }).await.unwrap();
    eventually("running", || async {
        !sec.s.probe.starts_of(&id).is_empty()
    })
    .await;
    op.pause(v1::PauseReq {
        id: id.clone(),
        reason: "look".into(),
    })
    .await
    .unwrap();
    op.resume(v1::ResumeReq { id: id.clone() }).await.unwrap();
    op.cancel(v1::CancelReq {
        id: id.clone(),
        reason: "done looking".into(),
    })
    .await
    .unwrap();
    let st = op
        .status(v1::StatusReq { id: id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(st.status, v1::Status::Cancelled as i32);
    assert_eq!(st.submitted_by, "token:operator");
    assert_eq!(st.executed_by, "token:operator");

    // Admin reads the audit log: each mutating call, by whom, refusals included.
    let log = audit_log(sec.as_role(Some("admin")).await.1).await;
    let seen = |identity: &str, action: &str, outcome: &str| {
        log.iter().any(|e| {
            e.peer.starts_with("127.0.0.1:")
                && e.identity == identity
                && e.action == action
                && e.outcome == outcome
                && (e.target.starts_with(&id) || action == "estop.set")
        })
    };
    for (who, action, outcome) in [
        ("token:operator", "submit", "ok"),
        ("token:operator", "exec", "ok"),
        ("token:operator", "pause", "ok"),
        ("token:operator", "resume", "ok"),
        ("token:operator", "cancel", "ok"),
        ("token:stopper", "estop.set", "ok"),
        ("token:stopper", "estop.set", "PermissionDenied"),
        ("token:viewer", "exec", "PermissionDenied"),
        ("token:viewer", "cancel", "PermissionDenied"),
        ("token:operator", "estop.set", "PermissionDenied"),
    ] {
        assert!(
            seen(who, action, outcome),
            "no entry {who} {action} {outcome}"
        );
    }
}

#[tokio::test]
async fn a_server_without_rbac_json_denies_every_call() {
    let token = tokens::mint();
    let t = token.clone();
    let s = TestServer::start_with(move |c| {
        c.auth = true;
        let entry = serde_json::json!({"tokens": [{"name": "ops", "sha256": tokens::hash(&t)}]});
        std::fs::write(c.configs.join("tokens.json"), entry.to_string()).unwrap();
        std::fs::remove_file(c.configs.join("rbac.json")).unwrap();
    })
    .await;
    // Plaintext with auth on loopback: tokens work without TLS.
    let tr = s
        .transport_with(Credentials {
            token: Some(token),
            ..Credentials::default()
        })
        .await
        .unwrap();
    let err = Wf::new(tr)
        .job_catalog(v1::JobCatalogReq {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(
        err.message().contains("no valid rbac.json is loaded"),
        "{}",
        err.message()
    );
    // A server that would deny everything says so to load balancers, until
    // a valid rbac.json arrives.
    use tonic_health::pb::health_check_response::ServingStatus;
    let health = || async {
        let t = s.transport_with(Credentials::default()).await.unwrap();
        tonic_health::pb::health_client::HealthClient::new(t)
            .check(tonic_health::pb::HealthCheckRequest {
                service: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .status
    };
    assert_eq!(health().await, ServingStatus::NotServing as i32);
    write_config(&s.config_path("rbac.json"), RBAC);
    eventually("SERVING once rbac.json loads", || async {
        health().await == ServingStatus::Serving as i32
    })
    .await;
}

/// A caller who may not read a workflow cannot tell it from a missing one:
/// Status, Watch, Cancel and the ancestor's Status answer both alike.
#[tokio::test]
async fn ids_cannot_be_probed_by_callers_without_read() {
    let sec = secure().await;
    let (mut admin, _) = sec.as_role(Some("admin")).await;
    let hidden = admin
        .submit(req::satellite_erase("aab", &["aab00"]))
        .await
        .unwrap()
        .into_inner()
        .id;
    // The stopper role reads only workflows named "x".
    let (stopper, _) = sec.as_role(Some("stopper")).await;
    let random = "0190a5f0-0000-7000-8000-000000000000".to_string();
    let answers = |id: String| {
        let mut w = stopper.clone();
        async move {
            let status = code(w.status(v1::StatusReq { id: id.clone() }).await);
            let cancel = code(
                w.cancel(v1::CancelReq {
                    id: id.clone(),
                    reason: String::new(),
                })
                .await,
            );
            let watch = code(
                w.watch(v1::WatchReq {
                    id: id.clone(),
                    ..Default::default()
                })
                .await,
            );
            [status, cancel, watch]
                .map(|(c, m)| (c, m.replace(&id, "<id>")))
                .to_vec()
        }
    };
    let (a, b) = (answers(hidden.clone()).await, answers(random).await);
    assert_eq!(
        a, b,
        "an existing but unreadable id answers like a missing one"
    );
    assert!(a.iter().all(|(c, _)| *c == Code::NotFound), "{a:?}");
    // A caller who may read it gets the real answer.
    admin
        .status(v1::StatusReq { id: hidden })
        .await
        .expect("admin reads it");
}
