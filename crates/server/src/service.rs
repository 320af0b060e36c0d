//! gRPC handlers: thin adapters from wire messages to the engine.
//!
//! One implementation serves both `interlock.v1.Workflow` and the ancestor's
//! `diskerase.Workflow`; the compat service differs only in how it renders
//! statuses the ancestor did not know.

use crate::audit::{Auditor, Caller};
use crate::auth::{Guard, identity};
use crate::convert;
use crate::error::{bad_request, engine_status};
use crate::lifecycle;
use crate::status::{self, View};
use interlock_auth::{Action, Identity};
use interlock_core::Violation;
use interlock_engine::{Engine, EngineError};
use interlock_proto::reply::StatusReply;
use interlock_proto::{server, v1};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

/// The workflow API over one engine.
#[derive(Clone)]
pub struct Api {
    engine: Engine,
    audit: Auditor,
    guard: Guard,
    stop: CancellationToken,
}

impl Api {
    /// `stop` ends open Watch streams when the server shuts down (else a
    /// graceful shutdown would wait for workflows that may never end).
    pub fn new(engine: Engine, audit: Auditor, guard: Guard, stop: CancellationToken) -> Self {
        Self {
            engine,
            audit,
            guard,
            stop,
        }
    }

    /// Authorizes `action` on the workflow `id` names. With authentication
    /// off this reads nothing. A caller who may not read the workflow gets
    /// exactly the answer a missing id gets, so ids cannot be probed.
    async fn check_id(&self, who: &Identity, action: Action, id: &str) -> Result<(), Status> {
        if !self.guard.enabled() {
            return Ok(());
        }
        let rec = self.readable(who, id).await?;
        self.guard.check(who, action, &rec.req.name)
    }

    /// The workflow, if `who` may read it; NotFound otherwise.
    async fn readable(
        &self,
        who: &Identity,
        id: &str,
    ) -> Result<interlock_core::WorkflowRecord, Status> {
        let hidden = || engine_status(EngineError::NotFound(id.chars().take(64).collect()));
        let rec = match self.engine.status(id).await {
            Ok(rec) => rec,
            Err(EngineError::NotFound(_)) => return Err(hidden()),
            // Which ids share a prefix is not for callers with grants to see.
            Err(EngineError::AmbiguousId { prefix, .. }) if self.guard.enabled() => {
                return Err(engine_status(EngineError::AmbiguousId {
                    prefix,
                    matches: vec!["more than one workflow".into()],
                }));
            }
            Err(e) => return Err(engine_status(e)),
        };
        match self.guard.check(who, Action::Read, &rec.req.name) {
            Ok(()) => Ok(rec),
            Err(_) => Err(hidden()),
        }
    }

    async fn submit(&self, r: Request<server::v1::WorkReq>) -> Result<v1::WorkResp, Status> {
        let who = Caller::of(&r);
        // A caller's W3C trace continues into the workflow when the request
        // names no trace of its own.
        let traced = r
            .metadata()
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .and_then(crate::telemetry::trace_id_of)
            .map(str::to_string);
        let mut req = r.into_inner();
        if req.trace_id.is_empty()
            && let Some(t) = traced
        {
            req.trace_id = t;
        }
        let name = req.name.clone();
        let result = async {
            self.guard.check(&who.who, Action::Submit, &name)?;
            let req = convert::work_req(req).map_err(bad_request)?;
            // A successful submission and its audit entry commit together.
            self.engine
                .submit(req, Some(who.entry("submit")))
                .await
                .map_err(engine_status)
                .map(|id| v1::WorkResp { id })
        }
        .await;
        if result.is_err() {
            self.audit
                .record(who.outcome("submit", &name, "", &result))
                .await;
        }
        result
    }

    async fn exec(&self, r: Request<v1::ExecReq>) -> Result<v1::ExecResp, Status> {
        let who = Caller::of(&r);
        let id = r.into_inner().id;
        let result = async {
            self.check_id(&who.who, Action::Exec, &id).await?;
            self.engine
                .exec(&id, Some(who.entry("exec")))
                .await
                .map_err(engine_status)
                .map(|_| v1::ExecResp {})
        }
        .await;
        if result.is_err() {
            self.audit
                .record(who.outcome("exec", &id, "", &result))
                .await;
        }
        result
    }

    /// Authorizes and runs a mutating lifecycle call on the workflow
    /// `need(req)` names, and audits it (refusals included) with the
    /// call's stated reason as the detail.
    async fn audited<T, R>(
        &self,
        r: Request<T>,
        action: &str,
        target: impl Fn(&T) -> String,
        need: impl Fn(&T) -> (Action, String, String),
        call: impl AsyncFnOnce(&Engine, T) -> Result<R, Status>,
    ) -> Result<Response<R>, Status> {
        let who = Caller::of(&r);
        let req = r.into_inner();
        let (grant, id, reason) = need(&req);
        // Audited under the full id when called with a unique prefix, so
        // the entry names the workflow and a filter by its id finds it.
        let t = match self.engine.resolve_id(&id).await {
            Ok(full) if full != id => target(&req).replacen(&id, &full, 1),
            _ => target(&req),
        };
        let result = match self.check_id(&who.who, grant, &id).await {
            Ok(()) => call(&self.engine, req).await,
            Err(e) => Err(e),
        };
        let detail = if reason.is_empty() {
            String::new()
        } else {
            format!("reason: {reason}")
        };
        self.audit
            .record(who.outcome(action, &t, &detail, &result))
            .await;
        result.map(Response::new)
    }

    /// The workflow's status as `view`'s clients read it, with its
    /// approval counts.
    pub(crate) async fn status_reply(
        &self,
        r: Request<v1::StatusReq>,
        view: View,
    ) -> Result<StatusReply, Status> {
        let who = identity(&r);
        let rec = self.readable(&who, &r.into_inner().id).await?;
        let tally = self.engine.approval_tally(&rec);
        let mut reply = status::reply(rec, view);
        (reply.head.approvals_needed, reply.head.approvals_valid) = tally;
        Ok(reply)
    }

    /// Approve or Reject: the caller must be able to read the workflow; the
    /// engine checks the policy's role (from rbac.json) and the two-person
    /// rule. Audited with the comment.
    async fn decide(
        &self,
        r: Request<v1::ApproveReq>,
        approve: bool,
    ) -> Result<Response<v1::ApproveResp>, Status> {
        let caller = Caller::of(&r);
        let roles = self.guard.roles_of(&caller.who);
        let identity = caller.identity;
        let need = |q: &v1::ApproveReq| (Action::Read, q.id.clone(), q.comment.clone());
        let action = if approve { "approve" } else { "reject" };
        self.audited(
            r,
            action,
            |q| q.id.clone(),
            need,
            async move |e: &Engine, q: v1::ApproveReq| {
                let t = e
                    .decide_approval(&q.id, &identity, &roles, &q.comment, approve)
                    .await
                    .map_err(engine_status)?;
                Ok(v1::ApproveResp {
                    id: t.id,
                    status: t.status as i32,
                    approvals_needed: t.needed,
                    approvals_valid: t.valid,
                })
            },
        )
        .await
    }
}

/// Validate's answer: a dry run's verdict and what the request would meet.
pub(crate) fn validate_resp(dry: interlock_engine::DryRun) -> v1::ValidateResp {
    let (estop_mode, estop_reason) = match dry.halt {
        Some(h) => (convert::es_mode(h.mode), h.reason),
        None => (v1::EsMode::Go, String::new()),
    };
    v1::ValidateResp {
        ok: dry.verdict.ok(),
        violations: dry
            .verdict
            .violations()
            .into_iter()
            .map(wire_violation)
            .collect(),
        policy_version: dry.verdict.policy_version,
        estop_mode: estop_mode as i32,
        estop_reason,
        buckets: dry
            .buckets
            .into_iter()
            .map(|b| v1::BucketNeed {
                bucket: b.bucket,
                key: b.key,
                needed: b.needed,
                available: b.available.unwrap_or(0),
                capacity: b.capacity,
                next_token_in: b.next_token_in.map(convert::pdur),
            })
            .collect(),
        approvals_needed: dry.approvals.iter().map(|a| a.approvals).sum(),
        approval_role: dry
            .approvals
            .iter()
            .map(|a| a.role.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        limits: dry.limits,
        sites: dry.sites,
        machines: dry.machines,
    }
}

fn wire_violation(v: Violation) -> v1::Violation {
    v1::Violation {
        policy: v.policy,
        block: v.block.map_or(-1, |b| b as i32),
        job: v.job.map_or(-1, |j| j as i32),
        message: v.message,
    }
}

#[tonic::async_trait]
impl server::v1::workflow_server::Workflow for Api {
    type WatchStream = tokio_stream::wrappers::ReceiverStream<Result<v1::WatchEvent, Status>>;

    async fn cancel(&self, r: Request<v1::CancelReq>) -> Result<Response<v1::CancelResp>, Status> {
        let need = |q: &v1::CancelReq| (Action::Cancel, q.id.clone(), q.reason.clone());
        self.audited(r, "cancel", |q| q.id.clone(), need, lifecycle::cancel)
            .await
    }

    async fn pause(&self, r: Request<v1::PauseReq>) -> Result<Response<v1::PauseResp>, Status> {
        let need = |q: &v1::PauseReq| (Action::Pause, q.id.clone(), q.reason.clone());
        self.audited(r, "pause", |q| q.id.clone(), need, lifecycle::pause)
            .await
    }

    async fn resume(&self, r: Request<v1::ResumeReq>) -> Result<Response<v1::ResumeResp>, Status> {
        let need = |q: &v1::ResumeReq| (Action::Pause, q.id.clone(), String::new());
        self.audited(r, "resume", |q| q.id.clone(), need, lifecycle::resume)
            .await
    }

    async fn list(&self, r: Request<v1::ListReq>) -> Result<Response<v1::ListResp>, Status> {
        let who = identity(&r);
        let req = r.into_inner();
        if !req.name.is_empty() {
            self.guard.check(&who, Action::Read, &req.name)?;
        }
        let mut resp = lifecycle::list(&self.engine, req).await?;
        if self.guard.enabled() {
            // Pages stay cursor-aligned, so a page may come back short.
            resp.workflows
                .retain(|w| self.guard.check(&who, Action::Read, &w.name).is_ok());
        }
        Ok(Response::new(resp))
    }

    async fn watch(&self, r: Request<v1::WatchReq>) -> Result<Response<Self::WatchStream>, Status> {
        let who = identity(&r);
        let req = r.into_inner();
        self.check_id(&who, Action::Read, &req.id).await?;
        let rx = lifecycle::watch(&self.engine, req, self.stop.clone()).await?;
        Ok(Response::new(tokio_stream::wrappers::ReceiverStream::new(
            rx,
        )))
    }

    async fn logs(&self, r: Request<v1::LogsReq>) -> Result<Response<v1::LogsResp>, Status> {
        let who = identity(&r);
        let req = r.into_inner();
        self.check_id(&who, Action::Read, &req.id).await?;
        lifecycle::logs(&self.engine, req).await.map(Response::new)
    }

    async fn clone(&self, r: Request<v1::CloneReq>) -> Result<Response<v1::WorkResp>, Status> {
        let who = Caller::of(&r);
        let req = r.into_inner();
        let source = req.id.clone();
        let result = async {
            self.check_id(&who.who, Action::Submit, &source).await?;
            let mut entry = who.entry("clone");
            entry.detail = format!("cloned from {source}");
            lifecycle::clone(&self.engine, req, entry).await
        }
        .await;
        if result.is_err() {
            self.audit
                .record(who.outcome("clone", &source, "", &result))
                .await;
        }
        result.map(Response::new)
    }

    async fn submit(
        &self,
        r: Request<server::v1::WorkReq>,
    ) -> Result<Response<v1::WorkResp>, Status> {
        Api::submit(self, r).await.map(Response::new)
    }

    async fn exec(&self, r: Request<v1::ExecReq>) -> Result<Response<v1::ExecResp>, Status> {
        Api::exec(self, r).await.map(Response::new)
    }

    async fn status(&self, r: Request<v1::StatusReq>) -> Result<Response<StatusReply>, Status> {
        self.status_reply(r, View::Full).await.map(Response::new)
    }

    async fn approve(
        &self,
        r: Request<v1::ApproveReq>,
    ) -> Result<Response<v1::ApproveResp>, Status> {
        self.decide(r, true).await
    }

    async fn reject(
        &self,
        r: Request<v1::ApproveReq>,
    ) -> Result<Response<v1::ApproveResp>, Status> {
        self.decide(r, false).await
    }

    async fn validate(
        &self,
        r: Request<server::v1::WorkReq>,
    ) -> Result<Response<v1::ValidateResp>, Status> {
        let who = identity(&r);
        let req = r.into_inner();
        self.guard.check(&who, Action::Read, &req.name)?;
        let req = convert::work_req(req).map_err(bad_request)?;
        // Every check Submit makes, and what it would meet; nothing stored.
        Ok(Response::new(validate_resp(
            self.engine.dry_run(&req).await,
        )))
    }

    async fn resolve_job(
        &self,
        r: Request<v1::ResolveJobReq>,
    ) -> Result<Response<v1::ResolveJobResp>, Status> {
        let target = |q: &v1::ResolveJobReq| format!("{} block {} job {}", q.id, q.block, q.job);
        let need = |q: &v1::ResolveJobReq| {
            let cancel = q.action == v1::resolve_job_req::Action::Cancel as i32;
            let grant = if cancel { Action::Cancel } else { Action::Exec };
            (grant, q.id.clone(), q.reason.clone())
        };
        self.audited(r, "resolve", target, need, lifecycle::resolve)
            .await
    }

    async fn job_catalog(
        &self,
        r: Request<v1::JobCatalogReq>,
    ) -> Result<Response<v1::JobCatalogResp>, Status> {
        self.guard.check_any(&identity(&r), Action::Read)?;
        use interlock_core::Idempotency;
        let catalog = self.engine.catalog();
        let jobs = catalog
            .schemas()
            .into_iter()
            .map(|s| v1::JobInfo {
                name: s.name.into(),
                description: s.description.into(),
                idempotent: s.idempotency == Idempotency::Safe,
                reconcilable: s.reconcilable,
                runs_on: catalog.location(s.name).unwrap_or_default(),
                args: s
                    .args
                    .iter()
                    .map(|a| v1::ArgInfo {
                        name: a.name.into(),
                        required: a.required,
                        description: a.description.into(),
                        format: a.format.describe().into(),
                    })
                    .collect(),
            })
            .collect();
        Ok(Response::new(v1::JobCatalogResp { jobs }))
    }
}

/// The ancestor's service path, over the same implementation.
#[derive(Clone)]
pub struct CompatApi(pub Api);

#[tonic::async_trait]
impl server::diskerase::workflow_server::Workflow for CompatApi {
    async fn submit(
        &self,
        r: Request<server::v1::WorkReq>,
    ) -> Result<Response<v1::WorkResp>, Status> {
        self.0.submit(r).await.map(Response::new)
    }

    async fn exec(&self, r: Request<v1::ExecReq>) -> Result<Response<v1::ExecResp>, Status> {
        self.0.exec(r).await.map(Response::new)
    }

    async fn status(&self, r: Request<v1::StatusReq>) -> Result<Response<StatusReply>, Status> {
        self.0
            .status_reply(r, View::Ancestor)
            .await
            .map(Response::new)
    }
}
