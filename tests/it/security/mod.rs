//! TLS, mutual TLS, bearer tokens and role-based authorization, end to end:
//! certificates minted at test time, tokens.json and rbac.json written into
//! the server's config directory, every RPC called over the real listener.

use interlock_auth::tokens;
use interlock_client::{Credentials, Transport};
use interlock_proto::v1;
use interlock_tests::pki::{Ca, Leaf};
use interlock_tests::{TestServer, ancestor, eventually, req, write_config};
use std::collections::BTreeMap;
use std::time::Duration;
use tonic::{Code, Status};

mod tls;

type Wf = v1::workflow_client::WorkflowClient<Transport>;
type Ctl = v1::control_client::ControlClient<Transport>;

const RBAC: &str = r#"{
  "roles": {
    "operator": [{"actions": ["read", "submit", "exec", "cancel", "pause"], "workflows": ["x"]}],
    "viewer": [{"actions": ["read"], "workflows": ["*"]}],
    "stopper": [{"actions": ["estop", "read"], "workflows": ["x"]}],
    "admin": [{"actions": ["admin"], "workflows": ["*"]}]
  },
  "bindings": [
    {"identity": "token:operator", "roles": ["operator"]},
    {"identity": "token:viewer", "roles": ["viewer"]},
    {"identity": "token:stopper", "roles": ["stopper"]},
    {"identity": "token:admin", "roles": ["admin"]},
    {"identity": "cert:alice", "roles": ["operator"]},
    {"identity": "cert:*.sre.example.com", "roles": ["viewer"]}
  ]
}"#;

/// A server with TLS, a client CA, tokens and rbac.json.
struct Secure {
    s: TestServer,
    pki: tempfile::TempDir,
    ca: Ca,
    server_cert: Leaf,
    /// Role name → that role's token.
    tokens: BTreeMap<&'static str, String>,
}

fn tokens_json(tokens: &BTreeMap<&'static str, String>) -> String {
    let entries: Vec<_> = tokens
        .iter()
        .map(|(n, t)| serde_json::json!({"name": n, "sha256": tokens::hash(t)}))
        .collect();
    serde_json::json!({ "tokens": entries }).to_string()
}

async fn secure() -> Secure {
    secure_with(|_, _, _| {}).await
}

/// `secure()`, with `tweak(config, ca, pki dir)` run before the start.
async fn secure_with(
    tweak: impl FnOnce(&mut interlock_server::Config, &Ca, &std::path::Path),
) -> Secure {
    let pki = tempfile::tempdir().unwrap();
    let ca = Ca::new(pki.path(), "main");
    let server_cert = ca.server(pki.path(), "server");
    let tokens: BTreeMap<_, _> = ["operator", "viewer", "stopper", "admin"]
        .into_iter()
        .map(|n| (n, tokens::mint()))
        .collect();
    let s = TestServer::start_with(|c| {
        c.tls_cert = Some(server_cert.cert.clone());
        c.tls_key = Some(server_cert.key.clone());
        c.tls_client_ca = Some(ca.path.clone());
        c.auth = true;
        c.reload_interval = Duration::from_millis(50);
        std::fs::write(c.configs.join("tokens.json"), tokens_json(&tokens)).unwrap();
        std::fs::write(c.configs.join("rbac.json"), RBAC).unwrap();
        tweak(c, &ca, pki.path());
    })
    .await;
    Secure {
        s,
        pki,
        ca,
        server_cert,
        tokens,
    }
}

impl Secure {
    fn creds(&self, token: Option<&str>) -> Credentials {
        Credentials {
            ca_pem: Some(self.ca.pem.clone().into_bytes()),
            token: token.map(|role| self.tokens.get(role).cloned().unwrap_or(role.into())),
            ..Credentials::default()
        }
    }

    fn cert_creds(&self, leaf: &Leaf) -> Credentials {
        Credentials {
            cert_key_pem: Some((
                leaf.cert_pem.clone().into_bytes(),
                leaf.key_pem.clone().into_bytes(),
            )),
            ..self.creds(None)
        }
    }

    async fn transport(&self, c: Credentials) -> Transport {
        self.s.transport_with(c).await.expect("connect over TLS")
    }

    /// Workflow and Control clients calling with `role`'s token (or the
    /// literal token given, or none).
    async fn as_role(&self, role: Option<&str>) -> (Wf, Ctl) {
        let t = self.transport(self.creds(role)).await;
        (Wf::new(t.clone()), Ctl::new(t))
    }

    /// A workflow "x" submitted (not started) by the operator.
    async fn submitted(&self) -> String {
        let (mut wf, _) = self.as_role(Some("operator")).await;
        wf.submit(req::work(
            "x",
            vec![req::block(1, vec![req::probe(30_000)])],
        ))
        .await
        .unwrap()
        .into_inner()
        .id
    }
}

/// The newest 1,000 audit entries, read with `ctl`'s credentials.
async fn audit_log(mut ctl: Ctl) -> Vec<v1::AuditEntry> {
    ctl.audit(v1::AuditReq {
        limit: 1000,
        before_id: 0,
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner()
    .entries
}

fn code<T>(r: Result<tonic::Response<T>, Status>) -> (Code, String) {
    match r {
        Ok(_) => (Code::Ok, String::new()),
        Err(s) => (s.code(), s.message().to_string()),
    }
}

/// Calls every RPC of every service once; returns (rpc, code, message).
async fn call_everything(t: Transport, id: &str) -> Vec<(&'static str, Code, String)> {
    let mut wf = Wf::new(t.clone());
    let mut ctl = Ctl::new(t.clone());
    let mut old = ancestor::workflow_client::WorkflowClient::new(t.clone());
    let id = || id.to_string();
    let work = || req::work("x", vec![req::block(1, vec![req::probe(1)])]);
    let mut out = vec![
        ("Submit", code(wf.submit(work()).await)),
        ("Exec", code(wf.exec(v1::ExecReq { id: id() }).await)),
        ("Status", code(wf.status(v1::StatusReq { id: id() }).await)),
        ("Validate", code(wf.validate(work()).await)),
        (
            "JobCatalog",
            code(wf.job_catalog(v1::JobCatalogReq {}).await),
        ),
        (
            "ResolveJob",
            code(
                wf.resolve_job(v1::ResolveJobReq {
                    id: id(),
                    block: 0,
                    job: 0,
                    action: v1::resolve_job_req::Action::Skip as i32,
                    reason: String::new(),
                })
                .await,
            ),
        ),
        (
            "Pause",
            code(
                wf.pause(v1::PauseReq {
                    id: id(),
                    reason: String::new(),
                })
                .await,
            ),
        ),
        ("Resume", code(wf.resume(v1::ResumeReq { id: id() }).await)),
        (
            "Cancel",
            code(
                wf.cancel(v1::CancelReq {
                    id: id(),
                    reason: String::new(),
                })
                .await,
            ),
        ),
        ("List", code(wf.list(v1::ListReq::default()).await)),
        ("Watch", code(wf.watch(v1::WatchReq { id: id() }).await)),
        (
            "Clone",
            code(
                Wf::clone(
                    &mut wf,
                    v1::CloneReq {
                        id: id(),
                        ..Default::default()
                    },
                )
                .await,
            ),
        ),
        (
            "PolicyState",
            code(ctl.policy_state(v1::PolicyStateReq {}).await),
        ),
        (
            "EmergencyStopState",
            code(ctl.emergency_stop_state(v1::EmergencyStopStateReq {}).await),
        ),
        (
            "SetEmergencyStop",
            code(
                ctl.set_emergency_stop(v1::SetEmergencyStopReq {
                    name: "x".into(),
                    stop: false,
                    reason: "test".into(),
                })
                .await,
            ),
        ),
        ("Buckets", code(ctl.buckets(v1::BucketsReq {}).await)),
        (
            "Audit",
            code(
                ctl.audit(v1::AuditReq {
                    limit: 1,
                    before_id: 0,
                    ..Default::default()
                })
                .await,
            ),
        ),
        ("WhoAmI", code(ctl.who_am_i(v1::WhoAmIReq {}).await)),
        ("diskerase.Submit", code(old.submit(ancestor_work()).await)),
        (
            "diskerase.Exec",
            code(old.exec(ancestor::ExecReq { id: id() }).await),
        ),
        (
            "diskerase.Status",
            code(old.status(ancestor::StatusReq { id: id() }).await),
        ),
    ];
    let mut reflection =
        tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient::new(t);
    let list = tonic_reflection::pb::v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            tonic_reflection::pb::v1::server_reflection_request::MessageRequest::ListServices(
                String::new(),
            ),
        ),
    };
    out.push((
        "Reflection",
        code(
            reflection
                .server_reflection_info(tokio_stream::once(list))
                .await,
        ),
    ));
    out.into_iter().map(|(n, (c, m))| (n, c, m)).collect()
}

fn ancestor_work() -> ancestor::WorkReq {
    ancestor::WorkReq {
        name: "x".into(),
        desc: String::new(),
        blocks: vec![],
    }
}

#[tokio::test]
async fn without_credentials_every_rpc_is_unauthenticated_but_health_answers() {
    let sec = secure().await;
    let id = sec.submitted().await;
    for creds in [sec.creds(None), sec.creds(Some("ilk_not-a-real-token"))] {
        let bad_token = creds.token.is_some();
        let results = call_everything(sec.transport(creds).await, &id).await;
        assert_eq!(results.len(), 22);
        for (rpc, code, msg) in results {
            assert_eq!(code, Code::Unauthenticated, "{rpc}: {msg}");
            let want = if bad_token {
                "bearer token not recognized"
            } else {
                "no credentials"
            };
            assert!(msg.contains(want), "{rpc}: {msg}");
        }
    }
    let metrics = sec.s.scrape().await;
    for series in [
        "interlock_auth_failures_total{reason=\"none\"}",
        "interlock_auth_failures_total{reason=\"bad_token\"}",
    ] {
        assert!(metrics.contains(series), "{series} missing");
    }
    // Load balancers probe health without credentials.
    let mut health =
        tonic_health::pb::health_client::HealthClient::new(sec.transport(sec.creds(None)).await);
    let st = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health answers without credentials")
        .into_inner();
    assert_eq!(
        st.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
}

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
        let want_denied = matches!(*rpc, "SetEmergencyStop" | "Audit");
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
        })
        .await,
    );
    assert_eq!(c, Code::PermissionDenied, "{m}");
    assert!(m.contains("\"estop\" on workflow \"*\""), "{m}");
    stop.set_emergency_stop(v1::SetEmergencyStopReq {
        name: "x".into(),
        stop: true,
        reason: "drill".into(),
    })
    .await
    .expect("stopper stops x");
    let (c, _) = code(op.exec(v1::ExecReq { id: id.clone() }).await);
    assert_eq!(c, Code::FailedPrecondition, "stopped by the stopper");
    stop.set_emergency_stop(v1::SetEmergencyStopReq {
        name: "x".into(),
        stop: false,
        reason: "drill over".into(),
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
async fn tokens_and_grants_reload_live_and_bad_edits_keep_the_last_good() {
    let mut sec = secure().await;
    let tokens_path = sec.s.config_path("tokens.json");
    let rbac_path = sec.s.config_path("rbac.json");
    // An expired token is refused with the reason.
    let old = tokens::mint();
    let mut entries: serde_json::Value = serde_json::from_str(&tokens_json(&sec.tokens)).unwrap();
    entries["tokens"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!(
            {"name": "old", "sha256": tokens::hash(&old), "expires": "2020-01-01T00:00:00Z"}
        ));
    write_config(&tokens_path, &entries.to_string());
    let t = sec.transport(sec.creds(Some(&old))).await;
    eventually("the expired token is refused as expired", || {
        let t = t.clone();
        async move {
            Wf::new(t)
                .job_catalog(v1::JobCatalogReq {})
                .await
                .is_err_and(|s| {
                    s.message()
                        .contains("\"old\" expired at 2020-01-01T00:00:00Z")
                })
        }
    })
    .await;
    // A new token works once it is in the file.
    let fresh = tokens::mint();
    sec.tokens.insert("viewer2", fresh.clone());
    let mut rbac: serde_json::Value = serde_json::from_str(RBAC).unwrap();
    rbac["bindings"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"identity": "token:viewer2", "roles": ["viewer"]}));
    write_config(&rbac_path, &rbac.to_string());
    write_config(&tokens_path, &tokens_json(&sec.tokens));
    let t = sec.transport(sec.creds(Some(&fresh))).await;
    eventually("the new token is accepted", || {
        let t = t.clone();
        async move { Wf::new(t).job_catalog(v1::JobCatalogReq {}).await.is_ok() }
    })
    .await;

    // A malformed edit keeps what is in force.
    write_config(&tokens_path, "{\"tokens\": [");
    write_config(
        &rbac_path,
        "{\"roles\": {\"viewer\": [{\"actions\": [\"peek\"]}]}}",
    );
    let (_, mut admin) = sec.as_role(Some("admin")).await;
    eventually("both bad edits are logged", || {
        let admin = admin.clone();
        async move {
            let log = audit_log(admin).await;
            ["tokens.json", "rbac.json"].iter().all(|f| {
                log.iter().any(|e| {
                    e.action == "config.reload" && e.target == *f && e.outcome == "invalid"
                })
            })
        }
    })
    .await;
    Wf::new(t.clone())
        .job_catalog(v1::JobCatalogReq {})
        .await
        .expect("last good tokens and grants still in force");

    // Revoking: the token leaves the file, its calls are refused.
    sec.tokens.remove("viewer2");
    write_config(&tokens_path, &tokens_json(&sec.tokens));
    eventually("the removed token is refused", || {
        let t = t.clone();
        async move {
            Wf::new(t)
                .job_catalog(v1::JobCatalogReq {})
                .await
                .is_err_and(|s| s.code() == Code::Unauthenticated)
        }
    })
    .await;
    admin
        .audit(v1::AuditReq::default())
        .await
        .expect("other tokens unaffected");
    // Both files survive a restart (rbac.json is still the bad edit: the
    // restarted server has no last good, so it denies everything).
    sec.s.restart().await;
    let (c, m) = code(
        sec.as_role(Some("admin"))
            .await
            .1
            .audit(v1::AuditReq::default())
            .await,
    );
    assert_eq!(c, Code::PermissionDenied);
    assert!(m.contains("no valid rbac.json is loaded"), "{m}");
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

#[test]
fn exposed_addresses_need_tls_and_auth_or_an_explicit_insecure() {
    use interlock_server::Config;
    let base = Config {
        listen: "0.0.0.0:8443".parse().unwrap(),
        metrics_listen: None,
        ..Config::default()
    };
    let check = |f: &dyn Fn(&mut Config)| {
        let mut c = base.clone();
        f(&mut c);
        c.validate()
    };
    let tls = |c: &mut Config| {
        c.tls_cert = Some("s.pem".into());
        c.tls_key = Some("s.key".into());
    };
    let err = check(&|_| {}).unwrap_err();
    assert!(err.contains("without TLS and authentication"), "{err}");
    let err = check(&tls).unwrap_err();
    assert!(err.contains("without authentication"), "{err}");
    let err = check(&|c| c.auth = true).unwrap_err();
    assert!(err.contains("without TLS"), "{err}");
    check(&|c| {
        tls(c);
        c.auth = true;
    })
    .expect("TLS and tokens");
    check(&|c| {
        tls(c);
        c.tls_client_ca = Some("ca.pem".into());
    })
    .expect("mTLS implies auth");
    check(&|c| c.insecure = true).expect("explicitly insecure");
    let err = check(&|c| {
        tls(c);
        c.auth = true;
        c.metrics_listen = Some("0.0.0.0:9464".parse().unwrap());
    })
    .unwrap_err();
    assert!(err.contains("/metrics"), "{err}");
    let err = check(&|c| c.tls_cert = Some("s.pem".into())).unwrap_err();
    assert!(err.contains("go together"), "{err}");
    let err = check(&|c| {
        tls(c);
        c.auth = true;
        c.tls_client_crl = Some("crl.pem".into());
    })
    .unwrap_err();
    assert!(err.contains("tls_client_crl needs tls_client_ca"), "{err}");
}
