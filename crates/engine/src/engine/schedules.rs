//! Schedules: a template instantiated with fixed values, once or on a
//! cron expression, by whichever server instance claims each fire.
//!
//! A fire is claimed with a compare-and-set on the schedule's next fire
//! (`Store::claim_fire`), so of several replicas exactly one fires. The
//! fire then takes the same path as a person's Instantiate: expansion,
//! then Submit (structure, arguments, policies, the e-stop, idempotency),
//! then Exec (the e-stop again, change windows, approvals) — a refused
//! fire is recorded with its reason and not retried. Its request id is
//! `schedule/NAME/DUE`, so a fire that is redone after its instance died
//! mid-fire is the same submission, not a second one. Time comes from the
//! engine's clock, so tests move it instead of waiting.

use super::Engine;
use super::templates::Instantiate;
use crate::EngineError;
use crate::error::Result;
use interlock_core::{AuditEntry, Micros, Violation};
use interlock_schedules::{Due, Overlap, ScheduleSpec};
use interlock_store::ScheduleRow;
use std::time::Duration;

/// The schedule a workflow was fired by (set by the server only).
pub const SCHEDULE_LABEL: &str = "interlock.schedule";

/// Whether a schedule's creator may still do what its fires do: submit
/// (and exec) the workflow name. Asked at every fire, so revoking the
/// creator's grants stops their schedules; the server answers from its
/// access rules.
pub trait FireAuthorizer: Send + Sync {
    fn may_fire(
        &self,
        creator: &str,
        workflow: &str,
        exec: bool,
    ) -> std::result::Result<(), String>;
}

/// How often due schedules are looked for.
const TICK: Duration = Duration::from_millis(250);

/// A schedule and its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleView {
    pub spec: ScheduleSpec,
    /// The workflow name its template produced when it was created.
    pub workflow: String,
    pub paused: bool,
    pub next_fire: Option<Micros>,
    /// A fire in progress (its due time).
    pub firing: Option<Micros>,
    pub last_due: Option<Micros>,
    pub last_outcome: String,
    pub last_workflow: String,
    pub created_by: String,
    pub created_at: Micros,
}

fn view(row: ScheduleRow) -> Result<ScheduleView> {
    let spec: ScheduleSpec = serde_json::from_str(&row.body).map_err(|e| {
        EngineError::Store(interlock_store::StoreError::Backend(format!(
            "stored schedule {} does not parse: {e}",
            row.name
        )))
    })?;
    Ok(ScheduleView {
        spec,
        workflow: row.workflow,
        paused: row.paused,
        next_fire: row.next_fire,
        firing: row.firing_due,
        last_due: row.last_due,
        last_outcome: row.last_outcome,
        last_workflow: row.last_workflow,
        created_by: row.created_by,
        created_at: row.created_at,
    })
}

fn when(t: Micros) -> String {
    crate::error::when(t)
}

/// How a fire went: its audit outcome, what to record, its workflow.
struct Fired {
    outcome: &'static str,
    detail: String,
    workflow: String,
}

impl Engine {
    /// The request a schedule's template makes now, as a dry run (the
    /// server authorizes on its workflow name before creating).
    pub async fn schedule_preview(&self, spec: &ScheduleSpec) -> Result<super::Instantiated> {
        self.instantiate_dry(&Instantiate {
            template: spec.template.clone(),
            revision: spec.revision,
            params: spec.params.clone(),
            labels: spec.labels.clone(),
            ..Default::default()
        })
        .await
    }

    /// Stores a new schedule. Its template must instantiate with its values
    /// now into a well-formed request for the workflow name `authorized`
    /// (the one the caller was authorized on), and it must have a fire to
    /// come.
    pub async fn create_schedule(
        &self,
        spec: ScheduleSpec,
        by: &str,
        authorized: &str,
    ) -> Result<ScheduleView> {
        spec.check().map_err(|e| {
            EngineError::Invalid(
                e.into_iter()
                    .map(|m| Violation::new("schedule", m))
                    .collect(),
            )
        })?;
        let inst = self.schedule_preview(&spec).await?;
        if inst.req().name != authorized {
            return Err(EngineError::WrongState(format!(
                "template {:?} changed while the schedule was created (it now makes workflow {:?}); \
                 try again",
                spec.template,
                inst.req().name
            )));
        }
        let invalid = self.verdict(inst.req(), true).invalid;
        if !invalid.is_empty() {
            return Err(EngineError::Invalid(invalid));
        }
        let now = self.now();
        let Some(next) = spec.next_after(now) else {
            return Err(EngineError::BadArgument(match &spec.when {
                interlock_schedules::When::Once { at } => format!(
                    "schedule {:?} would never fire: {} is not after now ({})",
                    spec.name,
                    when(*at),
                    when(now)
                ),
                interlock_schedules::When::Cron { expr, .. } => format!(
                    "schedule {:?} would never fire: {expr:?} matches no time in the next eight years",
                    spec.name
                ),
            }));
        };
        let row = ScheduleRow {
            name: spec.name.clone(),
            body: serde_json::to_string(&spec).expect("a schedule serializes"),
            workflow: inst.req().name.clone(),
            next_fire: Some(next),
            created_by: by.to_string(),
            created_at: now,
            ..Default::default()
        };
        if !self.inner.store.create_schedule(row).await? {
            return Err(EngineError::ScheduleExists(spec.name));
        }
        self.schedule(&spec.name).await
    }

    pub async fn schedules(&self) -> Result<Vec<ScheduleView>> {
        self.inner
            .store
            .schedules()
            .await?
            .into_iter()
            .map(view)
            .collect()
    }

    pub async fn schedule(&self, name: &str) -> Result<ScheduleView> {
        match self.inner.store.schedule(name).await? {
            Some(row) => view(row),
            None => Err(EngineError::NoSchedule(name.chars().take(128).collect())),
        }
    }

    /// Pauses a schedule (no fire until resumed) or resumes it: the fires
    /// it would have made meanwhile are not made up for; the next fire is
    /// the first one after now.
    pub async fn pause_schedule(&self, name: &str, paused: bool) -> Result<ScheduleView> {
        let v = self.schedule(name).await?;
        let next = match paused {
            true => v.next_fire,
            false => v.spec.next_after(self.now()),
        };
        if !self
            .inner
            .store
            .set_schedule_paused(name, paused, next)
            .await?
        {
            return Err(EngineError::NoSchedule(name.into()));
        }
        self.schedule(name).await
    }

    pub async fn delete_schedule(&self, name: &str) -> Result<()> {
        match self.inner.store.delete_schedule(name).await? {
            true => Ok(()),
            false => Err(EngineError::NoSchedule(name.into())),
        }
    }

    /// Fires due schedules until the engine drains.
    pub(super) async fn scheduler_loop(self) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.inner.draining.cancelled() => return,
                _ = tick.tick() => {}
            }
            if let Err(e) = self.fire_due().await {
                tracing::warn!(error = %e, "cannot look for due schedules; trying again");
            }
        }
    }

    /// Fires every schedule that is due now, and finishes fires left half
    /// done (by a dead instance, or by this one when recording failed).
    pub async fn fire_due(&self) -> Result<()> {
        let rows = self.inner.store.schedules().await?;
        if rows.is_empty() {
            return Ok(());
        }
        let me = self.instance_id();
        let live: Vec<String> = match self.inner.store.exclusive() {
            true => vec![me.clone()],
            false => self.instances().await?.into_iter().map(|i| i.id).collect(),
        };
        for row in rows {
            if self.inner.draining.is_cancelled() {
                break;
            }
            if let Some(due) = row.firing_due {
                // This loop is the only one firing here, so a fire of ours
                // still open at the top of a pass failed to finish; one of
                // a dead instance never will. Redo exactly what was claimed
                // (the same request id: at most one workflow).
                if row.firing_by == me || !live.contains(&row.firing_by) {
                    let key = row.firing_key;
                    self.redo(row, due, key).await;
                }
                continue;
            }
            let Some(due) = row.next_fire.filter(|d| *d <= self.now()) else {
                continue;
            };
            if row.paused {
                continue;
            }
            let name = row.name.clone();
            let v = match view(row.clone()) {
                Ok(v) => v,
                Err(e) => {
                    tracing::error!(schedule = %interlock_core::Escaped(&name), error = %e, "schedule not fired");
                    continue;
                }
            };
            let (what, next) = v.spec.due(due, self.now());
            let key = match what {
                Due::Fire(at) => Some(at),
                Due::CatchUp { latest, .. } => Some(latest),
                Due::Missed { .. } => None,
            };
            if !self
                .inner
                .store
                .claim_fire(&name, due, next, &me, key)
                .await?
            {
                continue; // another instance fired it
            }
            let fired = match what {
                Due::Fire(at) => self.fire(&v, at).await,
                Due::Missed { count, latest } => Some(Fired {
                    outcome: "missed",
                    detail: format!(
                        "missed {count} fire(s), the last due {}: no server was running; \
                         skipped (missed: skip)",
                        when(latest)
                    ),
                    workflow: String::new(),
                }),
                Due::CatchUp { count, latest } => self.fire(&v, latest).await.map(|f| Fired {
                    detail: format!(
                        "missed {count} fire(s), the last due {}; ran once (missed: runOnce): {}",
                        when(latest),
                        f.detail
                    ),
                    ..f
                }),
            };
            if let Some(f) = fired {
                self.finish(&name, due, f).await;
            }
        }
        Ok(())
    }

    async fn redo(&self, row: ScheduleRow, due: Micros, key: Option<Micros>) {
        let name = row.name.clone();
        let Ok(v) = view(row) else { return };
        tracing::warn!(schedule = %interlock_core::Escaped(&name), due = %when(due),
            "finishing a fire left half done");
        let fired = match key {
            Some(at) => self.fire(&v, at).await,
            None => Some(Fired {
                outcome: "missed",
                detail: "missed fire(s) while no server was running; skipped (missed: skip)".into(),
                workflow: String::new(),
            }),
        };
        if let Some(f) = fired {
            self.finish(&name, due, f).await;
        }
    }

    async fn finish(&self, name: &str, due: Micros, f: Fired) {
        tracing::info!(schedule = %interlock_core::Escaped(name), due = %when(due),
            outcome = f.outcome, detail = %interlock_core::Escaped(&f.detail), "schedule fired");
        if let Err(e) = self
            .inner
            .store
            .finish_fire(name, due, &f.detail, &f.workflow)
            .await
        {
            tracing::error!(schedule = %interlock_core::Escaped(name), error = %e,
                "cannot record a fire's outcome; it is redone (same request id) at the next look");
            return;
        }
        // The outcome has its own column: the detail says the rest.
        let prefix = format!("{}: ", f.outcome);
        let detail = f.detail.strip_prefix(&prefix).unwrap_or(&f.detail);
        let entry = self.schedule_entry(name, "schedule.fire", f.outcome, detail);
        if let Err(e) = self.inner.store.audit(entry).await {
            tracing::warn!(error = %e, "cannot audit a schedule's fire");
        }
    }

    fn schedule_entry(&self, name: &str, action: &str, outcome: &str, detail: &str) -> AuditEntry {
        AuditEntry {
            id: 0,
            at: self.now(),
            identity: format!("schedule:{name}"),
            action: action.into(),
            target: name.into(),
            request_id: String::new(),
            outcome: outcome.into(),
            detail: detail.into(),
            peer: String::new(),
        }
    }

    /// One fire of `v` for `due`: through Instantiate's checks, Submit and
    /// (unless the schedule only submits) Exec. `None` when it met a
    /// passing failure (the store, a shutdown): it stays claimed, to be
    /// redone.
    async fn fire(&self, v: &ScheduleView, due: Micros) -> Option<Fired> {
        let name = &v.spec.name;
        if v.spec.overlap == Overlap::Skip && !v.last_workflow.is_empty() {
            match self.status(&v.last_workflow).await {
                Ok(prev) if !prev.status.is_terminal() => {
                    return Some(Fired {
                        outcome: "skipped",
                        detail: format!(
                            "skipped: workflow {} of an earlier fire is still {} (overlap: skip)",
                            prev.id, prev.status
                        ),
                        workflow: String::new(),
                    });
                }
                Err(e) if transient(&e) => return None,
                _ => {}
            }
        }
        let refused = |e: EngineError| {
            (!transient(&e)).then(|| Fired {
                outcome: "refused",
                detail: format!("refused: {e}"),
                workflow: String::new(),
            })
        };
        let mut inst = match self
            .instantiate_dry(&Instantiate {
                template: v.spec.template.clone(),
                revision: v.spec.revision,
                params: v.spec.params.clone(),
                labels: v.spec.labels.clone(),
                request_id: format!("schedule/{name}/{due}"),
                trace_id: String::new(),
            })
            .await
        {
            Ok(i) => i,
            Err(e) => return refused(e),
        };
        // The schedule was authorized for one workflow name; a newer
        // revision of its template that makes another is not run.
        if inst.req().name != v.workflow {
            return Some(Fired {
                outcome: "refused",
                detail: format!(
                    "refused: template {} revision {} now makes workflow {:?}, not {:?} that the \
                     schedule was created for; create the schedule again",
                    inst.template,
                    inst.revision,
                    inst.req().name,
                    v.workflow
                ),
                workflow: String::new(),
            });
        }
        if let Some(a) = &self.inner.opts.fire_authorizer
            && let Err(why) = a.may_fire(&v.created_by, &v.workflow, v.spec.exec)
        {
            return Some(Fired {
                outcome: "refused",
                detail: format!(
                    "refused: the schedule's creator {} may no longer run it: {why}",
                    v.created_by
                ),
                workflow: String::new(),
            });
        }
        inst.expansion
            .req
            .labels
            .insert(SCHEDULE_LABEL.into(), name.clone());
        // The schedule's creator is its workflows' submitter: the one who
        // may not approve them under the two-person rule.
        let detail = format!(
            "schedule {name} due {}: template {} revision {}",
            when(due),
            inst.template,
            inst.revision
        );
        let as_creator = |action: &str| AuditEntry {
            identity: v.created_by.clone(),
            detail: detail.clone(),
            ..self.schedule_entry(name, action, "ok", "")
        };
        let id = match self
            .submit_instantiated(&inst, Some(as_creator("instantiate")))
            .await
        {
            Ok(id) => id,
            Err(e) => return refused(e),
        };
        if !v.spec.exec {
            return Some(Fired {
                outcome: "ok",
                detail: format!("submitted {id} (not started: the schedule only submits)"),
                workflow: id,
            });
        }
        Some(match self.exec(&id, Some(as_creator("exec"))).await {
            Ok(()) | Err(EngineError::AlreadyStarted { .. }) => Fired {
                outcome: "ok",
                detail: format!("started {id}"),
                workflow: id,
            },
            Err(e) if transient(&e) => return None,
            Err(e) => Fired {
                outcome: "refused",
                detail: format!("submitted {id} but not started: {e}"),
                workflow: id,
            },
        })
    }
}

/// A failure that says nothing about the fire itself: it is redone.
fn transient(e: &EngineError) -> bool {
    matches!(e, EngineError::Store(_) | EngineError::ShuttingDown)
}
