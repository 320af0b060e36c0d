//! The Schedules service: create, read, pause and delete schedules.
//!
//! A schedule is a deferred Instantiate, so creating one needs what
//! running its template now needs: `submit` (and `exec`, unless it only
//! submits) on the workflow name the template produces, decided on a dry
//! expansion before anything is stored. Pausing, resuming and deleting need
//! `submit` on that name; reading needs `read`. Every fire still goes
//! through every check (see the engine's schedules module).

use crate::audit::{Auditor, Caller};
use crate::auth::{Guard, identity};
use crate::convert::{micros, ts};
use crate::error::engine_status;
use interlock_auth::{Action, Identity};
use interlock_engine::{Engine, EngineError, ScheduleView};
use interlock_proto::v1::{self, schedules_server::Schedules};
use interlock_schedules::{Missed, Overlap, ScheduleSpec, When};
use tonic::{Request, Response, Status};

pub struct SchedulesApi {
    engine: Engine,
    audit: Auditor,
    guard: Guard,
}

impl SchedulesApi {
    pub fn new(engine: Engine, audit: Auditor, guard: Guard) -> Self {
        Self {
            engine,
            audit,
            guard,
        }
    }

    /// The schedule, if `who` may `action` on it; a schedule the caller may
    /// not read is answered as a missing one.
    async fn guarded(
        &self,
        who: &Identity,
        name: &str,
        action: Action,
    ) -> Result<ScheduleView, Status> {
        let v = self.engine.schedule(name).await.map_err(engine_status)?;
        if self.guard.check(who, Action::Read, &v.workflow).is_err() {
            return Err(engine_status(EngineError::NoSchedule(name.into())));
        }
        self.guard.check(who, action, &v.workflow)?;
        Ok(v)
    }
}

/// The access rules, asked at every fire for the schedule's creator.
pub struct CreatorGrants(pub Guard);

impl interlock_engine::FireAuthorizer for CreatorGrants {
    fn may_fire(&self, creator: &str, workflow: &str, exec: bool) -> Result<(), String> {
        if !self.0.enabled() {
            return Ok(());
        }
        // A certificate's other names are not kept with the schedule: only
        // bindings of its common name count here (fail closed).
        let who = match creator.split_once(':') {
            Some(("token", name)) => Identity::token(name),
            Some(("cert", name)) => Identity::certificate(name, Vec::new()),
            _ => {
                return Err(format!(
                    "{creator:?} is not an identity that grants can name"
                ));
            }
        };
        self.0
            .check(&who, Action::Submit, workflow)
            .map_err(|s| s.message().to_string())?;
        if exec {
            self.0
                .check(&who, Action::Exec, workflow)
                .map_err(|s| s.message().to_string())?;
        }
        Ok(())
    }
}

fn spec(q: v1::CreateScheduleReq) -> Result<ScheduleSpec, Status> {
    let when = match (q.at, q.cron.trim()) {
        (Some(at), "") => When::Once {
            at: micros(Some(at)).unwrap_or_default(),
        },
        (None, cron) if !cron.is_empty() => When::Cron {
            expr: cron.to_string(),
            time_zone: if q.time_zone.is_empty() {
                "UTC".into()
            } else {
                q.time_zone.clone()
            },
        },
        _ => {
            return Err(Status::invalid_argument(
                "give exactly one of at (a time to fire once) and cron (a cron expression)",
            ));
        }
    };
    if matches!(when, When::Once { .. }) && !q.time_zone.is_empty() {
        return Err(Status::invalid_argument(
            "time_zone applies to cron schedules; at is an instant",
        ));
    }
    let missed = match q.missed.as_str() {
        "" | "skip" => Missed::Skip,
        "runOnce" | "run-once" => Missed::RunOnce,
        other => {
            return Err(Status::invalid_argument(format!(
                "missed {other:?}: \"skip\" or \"runOnce\""
            )));
        }
    };
    let overlap = match q.overlap.as_str() {
        "" | "skip" => Overlap::Skip,
        "allow" => Overlap::Allow,
        other => {
            return Err(Status::invalid_argument(format!(
                "overlap {other:?}: \"skip\" or \"allow\""
            )));
        }
    };
    Ok(ScheduleSpec {
        name: q.name,
        template: q.template,
        revision: (q.revision > 0).then_some(q.revision),
        params: q.params,
        labels: q.labels,
        when,
        missed,
        overlap,
        exec: !q.no_exec,
    })
}

fn info(v: ScheduleView) -> v1::ScheduleInfo {
    let s = v.spec;
    let (at, cron, time_zone) = match s.when {
        When::Once { at } => (ts(Some(at)), String::new(), String::new()),
        When::Cron { expr, time_zone } => (None, expr, time_zone),
    };
    v1::ScheduleInfo {
        name: s.name,
        template: s.template,
        revision: s.revision.unwrap_or(0),
        params: s.params,
        labels: s.labels,
        at,
        cron,
        time_zone,
        missed: match s.missed {
            Missed::Skip => "skip",
            Missed::RunOnce => "runOnce",
        }
        .into(),
        overlap: match s.overlap {
            Overlap::Skip => "skip",
            Overlap::Allow => "allow",
        }
        .into(),
        exec: s.exec,
        workflow: v.workflow,
        paused: v.paused,
        next_fire: ts(v.next_fire),
        last_due: ts(v.last_due),
        last_outcome: v.last_outcome,
        last_workflow: v.last_workflow,
        created_by: v.created_by,
        created_at: ts(Some(v.created_at)),
        firing: v.firing.is_some(),
    }
}

#[tonic::async_trait]
impl Schedules for SchedulesApi {
    async fn create_schedule(
        &self,
        r: Request<v1::CreateScheduleReq>,
    ) -> Result<Response<v1::ScheduleInfo>, Status> {
        let who = Caller::of(&r);
        let q = r.into_inner();
        let name = q.name.clone();
        let result = async {
            self.guard.check_any(&who.who, Action::Submit)?;
            let spec = spec(q)?;
            let preview = self
                .engine
                .schedule_preview(&spec)
                .await
                .map_err(engine_status)?;
            let workflow = preview.req().name.clone();
            self.guard.check(&who.who, Action::Submit, &workflow)?;
            if spec.exec {
                self.guard.check(&who.who, Action::Exec, &workflow)?;
            }
            self.engine
                .create_schedule(spec, &who.identity, &workflow)
                .await
                .map_err(engine_status)
        }
        .await;
        let detail = match &result {
            Ok(v) => format!("template {}, workflow {}", v.spec.template, v.workflow),
            Err(_) => String::new(),
        };
        self.audit
            .record(who.outcome("schedule.create", &name, &detail, &result))
            .await;
        Ok(Response::new(info(result?)))
    }

    async fn get_schedule(
        &self,
        r: Request<v1::GetScheduleReq>,
    ) -> Result<Response<v1::ScheduleInfo>, Status> {
        let who = identity(&r);
        let v = self
            .guarded(&who, &r.into_inner().name, Action::Read)
            .await?;
        Ok(Response::new(info(v)))
    }

    async fn list_schedules(
        &self,
        r: Request<v1::ListSchedulesReq>,
    ) -> Result<Response<v1::ListSchedulesResp>, Status> {
        let who = identity(&r);
        let all = self.engine.schedules().await.map_err(engine_status)?;
        Ok(Response::new(v1::ListSchedulesResp {
            schedules: all
                .into_iter()
                .filter(|v| self.guard.check(&who, Action::Read, &v.workflow).is_ok())
                .map(info)
                .collect(),
        }))
    }

    async fn pause_schedule(
        &self,
        r: Request<v1::PauseScheduleReq>,
    ) -> Result<Response<v1::ScheduleInfo>, Status> {
        let who = Caller::of(&r);
        let q = r.into_inner();
        let action = if q.paused {
            "schedule.pause"
        } else {
            "schedule.resume"
        };
        let result = async {
            self.guarded(&who.who, &q.name, Action::Submit).await?;
            self.engine
                .pause_schedule(&q.name, q.paused)
                .await
                .map_err(engine_status)
        }
        .await;
        self.audit
            .record(who.outcome(action, &q.name, "", &result))
            .await;
        Ok(Response::new(info(result?)))
    }

    async fn delete_schedule(
        &self,
        r: Request<v1::DeleteScheduleReq>,
    ) -> Result<Response<v1::DeleteScheduleResp>, Status> {
        let who = Caller::of(&r);
        let name = r.into_inner().name;
        let result = async {
            self.guarded(&who.who, &name, Action::Submit).await?;
            self.engine
                .delete_schedule(&name)
                .await
                .map_err(engine_status)
        }
        .await;
        self.audit
            .record(who.outcome("schedule.delete", &name, "", &result))
            .await;
        result.map(|()| Response::new(v1::DeleteScheduleResp {}))
    }
}
