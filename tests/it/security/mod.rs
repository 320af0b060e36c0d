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

mod approvals;
mod authn;
mod authz;
mod reload;
mod tls;

type Wf = v1::workflow_client::WorkflowClient<Transport>;
type Ctl = v1::control_client::ControlClient<Transport>;

const RBAC: &str = r#"{
  "roles": {
    "operator": [{"actions": ["read", "submit", "exec", "cancel", "pause"], "workflows": ["x"]}],
    "viewer": [{"actions": ["read"], "workflows": ["*"]}],
    "stopper": [{"actions": ["estop", "read"], "workflows": ["x"]}],
    "admin": [{"actions": ["admin"], "workflows": ["*"]}],
    "approver": [{"actions": ["read"], "workflows": ["x"]}]
  },
  "bindings": [
    {"identity": "token:operator", "roles": ["operator"]},
    {"identity": "token:viewer", "roles": ["viewer"]},
    {"identity": "token:stopper", "roles": ["stopper"]},
    {"identity": "token:admin", "roles": ["admin"]},
    {"identity": "token:lead", "roles": ["operator", "approver"]},
    {"identity": "token:approver-a", "roles": ["approver"]},
    {"identity": "token:approver-b", "roles": ["approver"]},
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
    let tokens: BTreeMap<_, _> = [
        "operator",
        "viewer",
        "stopper",
        "admin",
        "lead",
        "approver-a",
        "approver-b",
    ]
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
        (
            "Watch",
            code(
                wf.watch(v1::WatchReq {
                    id: id(),
                    ..Default::default()
                })
                .await,
            ),
        ),
        (
            "Approve",
            code(
                wf.approve(v1::ApproveReq {
                    id: id(),
                    comment: String::new(),
                })
                .await,
            ),
        ),
        (
            "Reject",
            code(
                wf.reject(v1::ApproveReq {
                    id: id(),
                    comment: String::new(),
                })
                .await,
            ),
        ),
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
                    ..Default::default()
                })
                .await,
            ),
        ),
        ("Buckets", code(ctl.buckets(v1::BucketsReq {}).await)),
        ("Limits", code(ctl.limits(v1::LimitsReq {}).await)),
        (
            "Backup",
            code(
                ctl.backup(v1::BackupReq {
                    path: "/nonexistent/backup.db".into(),
                })
                .await,
            ),
        ),
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
        ("WhoAmI", code(ctl.who_am_i(v1::WhoAmIReq::default()).await)),
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
