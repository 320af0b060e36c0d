//! The Control service: inspect and change the live configuration.
//!
//! Reading any of it needs `read` on some workflow; setting an e-stop needs
//! `estop` on the workflow named (on `*` for the wildcard entry); the audit
//! log needs `admin` on `*`.

use crate::audit::{Auditor, Caller};
use crate::auth::{Guard, identity};
use crate::convert::pdur;
use crate::convert::{micros, ts};
use crate::error::{engine_status, store_unavailable};
use crate::live::{ESTOP, Live};
use interlock_auth::Action;
use interlock_core::AuditQuery;
use interlock_engine::estop::WILDCARD;
use interlock_proto::v1::{self, control_server::Control};
use tonic::{Request, Response, Status};

pub struct ControlApi {
    engine: interlock_engine::Engine,
    live: Live,
    audit: Auditor,
    guard: Guard,
    /// Serializes read-modify-write of es.json.
    es_write: tokio::sync::Mutex<()>,
}

impl ControlApi {
    pub fn new(engine: interlock_engine::Engine, live: Live, audit: Auditor, guard: Guard) -> Self {
        Self {
            engine,
            live,
            audit,
            guard,
            es_write: tokio::sync::Mutex::new(()),
        }
    }

    fn es_state(&self) -> v1::EmergencyStopStateResp {
        let st = self.engine.estop_state();
        let wire = |v: Vec<(&str, &interlock_engine::estop::EsEntry)>| {
            v.into_iter()
                .map(|(name, e)| v1::EmergencyStopEntry {
                    name: name.to_string(),
                    stop: e.mode.halts(),
                    reason: e.reason.clone(),
                    mode: crate::convert::es_mode(e.mode) as i32,
                })
                .collect()
        };
        let path = self.live.dir.join(ESTOP).display().to_string();
        v1::EmergencyStopStateResp {
            error: st.error.clone().unwrap_or_default(),
            entries: wire(st.entries()),
            loaded_at: ts(Some(st.loaded_at)),
            shared: wire(st.shared()),
            written_to: if self.engine.stops_are_shared() {
                "store".into()
            } else {
                path.clone()
            },
            path,
        }
    }
}

#[tonic::async_trait]
impl Control for ControlApi {
    async fn policy_state(
        &self,
        r: Request<v1::PolicyStateReq>,
    ) -> Result<Response<v1::PolicyStateResp>, Status> {
        self.guard.check_any(&identity(&r), Action::Read)?;
        let st = self.live.policies.borrow().clone();
        Ok(Response::new(v1::PolicyStateResp {
            loaded: st.set.is_some(),
            version: st
                .set
                .as_ref()
                .map(|s| s.version().to_string())
                .unwrap_or_default(),
            loaded_at: ts(st.loaded_at),
            last_error: st.last_error.clone().unwrap_or_default(),
            last_error_at: ts(st.last_error_at),
            workflows: st
                .set
                .as_ref()
                .map(|s| s.workflow_names().into_iter().map(String::from).collect())
                .unwrap_or_default(),
            path: st.path.display().to_string(),
            rules: st
                .set
                .as_ref()
                .map(|s| {
                    s.rules()
                        .iter()
                        .map(|r| v1::WorkflowPolicies {
                            workflow: r.workflow.clone(),
                            policies: r
                                .policies
                                .iter()
                                .map(|(name, settings)| v1::PolicyRule {
                                    name: name.clone(),
                                    settings_json: settings.clone(),
                                })
                                .collect(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
        }))
    }

    async fn emergency_stop_state(
        &self,
        r: Request<v1::EmergencyStopStateReq>,
    ) -> Result<Response<v1::EmergencyStopStateResp>, Status> {
        self.guard.check_any(&identity(&r), Action::Read)?;
        Ok(Response::new(self.es_state()))
    }

    async fn set_emergency_stop(
        &self,
        r: Request<v1::SetEmergencyStopReq>,
    ) -> Result<Response<v1::EmergencyStopStateResp>, Status> {
        let who = Caller::of(&r);
        let r = r.into_inner();
        let mode = crate::convert::requested_es_mode(r.stop, r.mode);
        let target = match &mode {
            Ok(m) => format!("{} {m}", r.name),
            Err(_) => r.name.clone(),
        };
        let detail = if r.reason.is_empty() {
            String::new()
        } else {
            format!("reason: {}", r.reason)
        };
        let result = match (self.guard.check(&who.who, Action::Estop, &r.name), mode) {
            (Err(e), _) => Err(e),
            (Ok(()), Err(m)) => Err(Status::invalid_argument(m)),
            (Ok(()), Ok(mode)) => self.set_es(&r.name, mode, &r.reason, &who.identity).await,
        };
        self.audit
            .record(who.outcome("estop.set", &target, &detail, &result))
            .await;
        result.map(Response::new)
    }

    async fn limits(&self, r: Request<v1::LimitsReq>) -> Result<Response<v1::LimitsResp>, Status> {
        self.guard.check_any(&identity(&r), Action::Read)?;
        let limits = self
            .engine
            .limits()
            .await
            .map_err(engine_status)?
            .into_iter()
            .map(|l| v1::Limit {
                name: l.def.name,
                max: l.def.max,
                count: l.def.count_text,
                per: l.def.per_text,
                jobs: l.def.jobs,
                parts: l
                    .parts
                    .into_iter()
                    .map(|p| v1::LimitPart {
                        part: p.part,
                        holders: p.holders,
                        waiting: p.waiting,
                    })
                    .collect(),
            })
            .collect();
        Ok(Response::new(v1::LimitsResp {
            limits,
            last_error: self
                .live
                .limit_error
                .lock()
                .expect("lock")
                .clone()
                .unwrap_or_default(),
        }))
    }

    async fn buckets(
        &self,
        r: Request<v1::BucketsReq>,
    ) -> Result<Response<v1::BucketsResp>, Status> {
        self.guard.check_any(&identity(&r), Action::Read)?;
        let buckets = self
            .live
            .buckets
            .levels()
            .await
            .map_err(store_unavailable)?
            .into_iter()
            .map(|l| v1::BucketLevel {
                name: l.def.name.clone(),
                capacity: l.def.capacity,
                refill: l.def.refill,
                period: Some(pdur(l.def.period)),
                available: l.available,
                next_token_in: l.next_token_in.map(pdur),
                key_arg: l.def.key_arg.clone().unwrap_or_default(),
                key: l.key,
            })
            .collect();
        Ok(Response::new(v1::BucketsResp {
            buckets,
            last_error: self
                .live
                .bucket_error
                .lock()
                .expect("lock")
                .clone()
                .unwrap_or_default(),
        }))
    }

    async fn who_am_i(
        &self,
        r: Request<v1::WhoAmIReq>,
    ) -> Result<Response<v1::WhoAmIResp>, Status> {
        // Any authenticated caller may ask; it is how one debugs a denial.
        let who = identity(&r);
        let workflow = &r.get_ref().workflow;
        let grants = Action::ALL
            .into_iter()
            .filter(|&a| {
                if workflow.is_empty() {
                    self.guard.check_any(&who, a).is_ok()
                } else {
                    self.guard.check(&who, a, workflow).is_ok()
                }
            })
            .map(|a| a.as_str().to_string())
            .collect();
        Ok(Response::new(v1::WhoAmIResp {
            identity: who.to_string(),
            aliases: who.written_forms().skip(1).collect(),
            roles: self.guard.roles_of(&who),
            auth_enabled: self.guard.enabled(),
            grants,
        }))
    }

    async fn backup(&self, r: Request<v1::BackupReq>) -> Result<Response<v1::BackupResp>, Status> {
        let who = Caller::of(&r);
        let path = r.into_inner().path;
        let result = match self.guard.check(&who.who, Action::Admin, WILDCARD) {
            Err(e) => Err(e),
            Ok(()) if !std::path::Path::new(&path).is_absolute() => Err(Status::invalid_argument(
                format!("path {path:?} must be absolute: it is a file on the server's machine"),
            )),
            Ok(()) => match self.engine.backup(std::path::Path::new(&path)).await {
                Ok(bytes) => Ok(v1::BackupResp {
                    path: path.clone(),
                    bytes,
                }),
                Err(e) => Err(Status::failed_precondition(e.to_string())),
            },
        };
        self.audit
            .record(who.outcome("backup", &path, "", &result))
            .await;
        result.map(Response::new)
    }

    async fn cluster(
        &self,
        r: Request<v1::ClusterReq>,
    ) -> Result<Response<v1::ClusterResp>, Status> {
        self.guard.check_any(&identity(&r), Action::Read)?;
        let instances = self
            .engine
            .instances()
            .await
            .map_err(engine_status)?
            .into_iter()
            .map(|i| v1::Instance {
                id: i.id,
                addr: i.addr,
                host: i.host,
                pid: i.pid,
                version: i.version,
                started: ts(Some(i.started)),
                heartbeat: ts(Some(i.heartbeat)),
                expires: ts(Some(i.expires)),
                workflows: i.owned as u32,
            })
            .collect();
        Ok(Response::new(v1::ClusterResp {
            instances,
            this_instance: self.engine.instance_id(),
            shared_store: self.engine.stops_are_shared(),
        }))
    }

    async fn audit(&self, r: Request<v1::AuditReq>) -> Result<Response<v1::AuditResp>, Status> {
        self.guard.check(&identity(&r), Action::Admin, WILDCARD)?;
        let r = r.into_inner();
        let some = |s: String| (!s.is_empty()).then_some(s);
        let page = self
            .audit
            .log(AuditQuery {
                before: (r.before_id > 0).then_some(r.before_id),
                limit: r.limit.max(0) as usize,
                from: micros(r.from),
                to: micros(r.to),
                identity: some(r.identity),
                action: some(r.action),
                target: some(r.target),
            })
            .await
            .map_err(engine_status)?;
        Ok(Response::new(v1::AuditResp {
            entries: page
                .entries
                .into_iter()
                .map(|e| v1::AuditEntry {
                    id: e.id,
                    at: ts(Some(e.at)),
                    identity: e.identity,
                    action: e.action,
                    target: e.target,
                    request_id: e.request_id,
                    outcome: e.outcome,
                    detail: e.detail,
                    peer: e.peer,
                })
                .collect(),
            next_before_id: page.next_before_id,
        }))
    }
}

impl ControlApi {
    async fn set_es(
        &self,
        name: &str,
        mode: interlock_core::EsMode,
        reason: &str,
        by: &str,
    ) -> Result<v1::EmergencyStopStateResp, Status> {
        let _guard = self.es_write.lock().await;
        let path = self.live.dir.join(ESTOP);
        self.engine
            .set_stop(&path, name, mode, reason, by)
            .await
            .map_err(engine_status)?;
        tracing::warn!(name = %interlock_core::Escaped(name), %mode,
            reason = %interlock_core::Escaped(reason), shared = self.engine.stops_are_shared(),
            "emergency stop changed through the API");
        // A file change is in force once the reloader has read it and the
        // engine has merged it with the shared stops.
        self.live.reload_now().await;
        self.engine.apply_file_stops();
        Ok(self.es_state())
    }
}
