//! The Control service: inspect and change the live configuration.
//!
//! Reading any of it needs `read` on some workflow; setting an e-stop needs
//! `estop` on the workflow named (on `*` for the wildcard entry); the audit
//! log needs `admin` on `*`.

use crate::audit::{Auditor, Caller};
use crate::auth::{Guard, identity};
use crate::convert::ts;
use crate::live::{ESTOP, Live};
use interlock_auth::Action;
use interlock_engine::estop::WILDCARD;
use interlock_proto::pbjson_types::Duration as PDuration;
use interlock_proto::v1::{self, control_server::Control};
use serde::Serialize;
use std::io::Write;
use tonic::{Request, Response, Status};

pub struct ControlApi {
    live: Live,
    audit: Auditor,
    guard: Guard,
    /// Serializes read-modify-write of es.json.
    es_write: tokio::sync::Mutex<()>,
}

impl ControlApi {
    pub fn new(live: Live, audit: Auditor, guard: Guard) -> Self {
        Self {
            live,
            audit,
            guard,
            es_write: tokio::sync::Mutex::new(()),
        }
    }

    fn es_state(&self) -> v1::EmergencyStopStateResp {
        let st = self.live.estop.borrow().clone();
        v1::EmergencyStopStateResp {
            error: st.error.clone().unwrap_or_default(),
            entries: st
                .entries()
                .into_iter()
                .map(|(name, e)| v1::EmergencyStopEntry {
                    name: name.to_string(),
                    stop: e.stop,
                    reason: e.reason.clone(),
                })
                .collect(),
            loaded_at: ts(Some(st.loaded_at)),
            path: self.live.dir.join(ESTOP).display().to_string(),
        }
    }
}

#[derive(Serialize)]
struct EsFileEntry {
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "Status")]
    status: &'static str,
    #[serde(rename = "Reason", skip_serializing_if = "String::is_empty")]
    reason: String,
}

fn pdur(d: std::time::Duration) -> PDuration {
    PDuration {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
}

/// Writes `bytes` to `path` atomically: temp file in the same directory,
/// fsync, rename.
fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    let tmp = dir.join(format!(".es.json.{}.tmp", uuid::Uuid::now_v7()));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
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
        let target = format!("{} {}", r.name, if r.stop { "stop" } else { "go" });
        let result = match self.guard.check(&who.who, Action::Estop, &r.name) {
            Ok(()) => self.set_es(r).await,
            Err(e) => Err(e),
        };
        self.audit.call(&who, "estop.set", &target, &result).await;
        result.map(Response::new)
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
            .into_iter()
            .map(|l| v1::BucketLevel {
                name: l.def.name.clone(),
                capacity: l.def.capacity,
                refill: l.def.refill,
                period: Some(pdur(l.def.period)),
                available: l.available,
                next_token_in: l.next_token_in.map(pdur),
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
        Ok(Response::new(v1::WhoAmIResp {
            identity: who.to_string(),
            aliases: who.written_forms().skip(1).collect(),
            roles: self.guard.roles_of(&who),
            auth_enabled: self.guard.enabled(),
        }))
    }

    async fn audit(&self, r: Request<v1::AuditReq>) -> Result<Response<v1::AuditResp>, Status> {
        self.guard.check(&identity(&r), Action::Admin, WILDCARD)?;
        let r = r.into_inner();
        let limit = match r.limit {
            n if n <= 0 => 100,
            n => (n as usize).min(1000),
        };
        let before = (r.before_id > 0).then_some(r.before_id);
        let entries = self
            .audit
            .log(before, limit)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let next_before_id = if entries.len() == limit {
            entries.last().map_or(0, |e| e.id)
        } else {
            0
        };
        Ok(Response::new(v1::AuditResp {
            entries: entries
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
            next_before_id,
        }))
    }
}

impl ControlApi {
    async fn set_es(
        &self,
        r: v1::SetEmergencyStopReq,
    ) -> Result<v1::EmergencyStopStateResp, Status> {
        if r.name.is_empty() {
            return Err(Status::invalid_argument(format!(
                "name is empty: give a workflow name, or {WILDCARD:?} for every workflow"
            )));
        }
        let _guard = self.es_write.lock().await;
        let path = self.live.dir.join(ESTOP);
        // Start from the file on disk, not the state in force, so entries
        // written by hand since the last reload are kept.
        let mut entries: Vec<EsFileEntry> = match std::fs::read_to_string(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                return Err(Status::unavailable(format!(
                    "cannot read {}: {e}",
                    path.display()
                )));
            }
            Ok(text) => {
                interlock_engine::EsState::parse(&text).map_err(|e| {
                    Status::failed_precondition(format!(
                        "{} is malformed ({e}), so everything is already stopped; fix the file by hand",
                        path.display()
                    ))
                })?;
                interlock_core::parse_records::<serde_json::Value>(&text)
                    .map_err(|e| Status::internal(e.to_string()))?
                    .into_iter()
                    .map(|v| EsFileEntry {
                        name: v["Name"].as_str().unwrap_or_default().to_string(),
                        status: if v["Status"] == "stop" { "stop" } else { "go" },
                        reason: v["Reason"].as_str().unwrap_or_default().to_string(),
                    })
                    .collect()
            }
        };
        let status = if r.stop { "stop" } else { "go" };
        match entries.iter_mut().find(|e| e.name == r.name) {
            Some(e) => {
                e.status = status;
                e.reason = r.reason.clone();
            }
            None => entries.push(EsFileEntry {
                name: r.name.clone(),
                status,
                reason: r.reason.clone(),
            }),
        }
        let mut bytes =
            serde_json::to_vec_pretty(&entries).map_err(|e| Status::internal(e.to_string()))?;
        bytes.push(b'\n');
        write_atomically(&path, &bytes)
            .map_err(|e| Status::unavailable(format!("cannot write {}: {e}", path.display())))?;
        tracing::warn!(name = %r.name, stop = r.stop, reason = %r.reason, "emergency stop changed through the API");
        self.live.reload_now().await;
        Ok(self.es_state())
    }
}
