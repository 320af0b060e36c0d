//! Operator actions on workflows: Cancel, Pause, Resume, Clone, List, and
//! the event stream behind Watch.
//!
//! Invariants:
//! - Every status change of a workflow that another call could race (Exec,
//!   Cancel, Resume) is a compare-and-set in the store.
//! - Pause and the executor's final write are serialized (`Active::finishing`),
//!   so a finished workflow is never recorded Paused afterwards.
//! - Cancel of a running workflow returns once its end is recorded (or after
//!   a bounded wait), so no job starts after the reply.

use super::{Active, Cause, Engine, EngineError, Event, cut_in_flight, refused};
use interlock_core::{Status, WorkflowRecord, now_micros};
use interlock_store::{AuditEntry, Change, ListFilter, StartOutcome, Summary};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// How long Cancel waits for running jobs to observe cancellation.
const CANCEL_WAIT: Duration = Duration::from_secs(10);

/// Options of [`Engine::clone_workflow`].
#[derive(Debug, Clone, Default)]
pub struct CloneOptions {
    /// Keep only jobs that did not complete (failed, cancelled, unstarted…).
    pub only_unfinished: bool,
    /// Labels added to (or replacing) the original's.
    pub labels: BTreeMap<String, String>,
    /// Replaces the trace id when set.
    pub trace_id: String,
    /// Idempotency key for the new submission.
    pub request_id: String,
}

impl Engine {
    fn active(&self, id: &str) -> Option<Arc<Active>> {
        self.inner
            .active
            .lock()
            .expect("active lock")
            .get(id)
            .cloned()
    }

    /// Cancels a workflow that has not finished. Running jobs are cancelled;
    /// no job starts after this returns. Returns the final status.
    pub async fn cancel(&self, id: &str, reason: &str) -> Result<Status, EngineError> {
        let reason = if reason.is_empty() {
            "no reason given"
        } else {
            reason
        };
        // A racing Exec may start it between our checks; a few rounds settle it.
        for _ in 0..3 {
            if let Some(a) = self.active(id) {
                a.stop(Cause::Cancelled(reason.to_string()));
                let mut done = a.done.subscribe();
                let _ = tokio::time::timeout(CANCEL_WAIT, done.wait_for(|d| *d)).await;
                return Ok(self.status(id).await?.status);
            }
            let rec = self.status(id).await?;
            if rec.status.is_terminal() {
                return Err(EngineError::WrongState(format!(
                    "workflow {id} already ended: it is {}{}",
                    rec.status,
                    if rec.reason.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", rec.reason)
                    }
                )));
            }
            let why = format!("cancelled: {reason}");
            match self
                .inner
                .store
                .transition(id, rec.status, Status::Cancelled, &why, Some(now_micros()))
                .await?
            {
                StartOutcome::Started => {
                    self.inner
                        .commit(cut_in_flight(&rec, Status::Cancelled, &why))
                        .await?;
                    self.publish(id, Status::Cancelled, &why);
                    return Ok(Status::Cancelled);
                }
                StartOutcome::NotFound => return Err(EngineError::NotFound(id.into())),
                StartOutcome::AlreadyStarted(_) => continue,
            }
        }
        Err(EngineError::WrongState(format!(
            "workflow {id} changed state while being cancelled; try again"
        )))
    }

    fn publish(&self, id: &str, status: Status, message: &str) {
        let _ = self.inner.events.send(Event {
            workflow_id: id.into(),
            at: now_micros(),
            block: None,
            job: None,
            status,
            message: message.into(),
        });
    }

    /// Pauses a running workflow: jobs in flight finish, no new job starts.
    pub async fn pause(&self, id: &str, reason: &str) -> Result<(), EngineError> {
        let Some(a) = self.active(id) else {
            let rec = self.status(id).await?;
            return match rec.status {
                Status::Paused => Ok(()),
                s => Err(EngineError::WrongState(format!(
                    "workflow {id} is {s}; only a running workflow can be paused"
                ))),
            };
        };
        let finishing = a.finishing.lock().await;
        if *finishing || a.cause().is_some() {
            return Err(EngineError::WrongState(format!(
                "workflow {id} is already ending"
            )));
        }
        if *a.paused.borrow() {
            return Ok(());
        }
        a.paused.send_replace(true);
        let why = if reason.is_empty() {
            "paused".to_string()
        } else {
            format!("paused: {reason}")
        };
        let change = Change::WorkflowStatus {
            id: id.into(),
            status: Status::Paused,
            reason: why,
        };
        if let Err(e) = self.inner.commit(vec![change]).await {
            a.paused.send_replace(false);
            return Err(e.into());
        }
        Ok(())
    }

    /// Resumes a paused workflow after checking the policies in force and
    /// the emergency stop again.
    pub async fn resume(&self, id: &str) -> Result<(), EngineError> {
        let rec = self.status(id).await?;
        if rec.status != Status::Paused {
            return Err(EngineError::WrongState(format!(
                "workflow {id} is {}, not Paused",
                rec.status
            )));
        }
        let inner = &self.inner;
        let Some(a) = self.active(id) else {
            // Paused across a restart, or after an interruption was resolved.
            if let Some((bi, ji)) = rec.blocks.iter().enumerate().find_map(|(bi, b)| {
                b.jobs
                    .iter()
                    .position(|j| j.status == Status::Interrupted)
                    .map(|ji| (bi, ji))
            }) {
                return Err(EngineError::WrongState(format!(
                    "block {bi} job {ji} of workflow {id} is Interrupted; decide with ResolveJob first"
                )));
            }
            return self.relaunch_paused(rec).await;
        };
        let _finishing = a.finishing.lock().await;
        inner.admission.admit(&rec.req).map_err(refused)?;
        if let Some(reason) = inner.estop.borrow().stopped(&rec.req.name) {
            return Err(EngineError::EmergencyStopped {
                name: rec.req.name.clone(),
                reason,
            });
        }
        let change = Change::WorkflowStatus {
            id: id.into(),
            status: Status::Running,
            reason: String::new(),
        };
        inner.commit(vec![change]).await?;
        a.paused.send_replace(false);
        Ok(())
    }

    /// Starts executing a Paused workflow that has no run in this process:
    /// the same checks as Exec, then a compare-and-set Paused → Running.
    pub(super) async fn relaunch_paused(&self, mut rec: WorkflowRecord) -> Result<(), EngineError> {
        let inner = &self.inner;
        let id = rec.id.clone();
        inner.admission.admit(&rec.req).map_err(refused)?;
        let active = self.register(&id, &rec.req.name)?;
        let outcome = match inner.estop.borrow().stopped(&rec.req.name) {
            Some(reason) => Err(EngineError::EmergencyStopped {
                name: rec.req.name.clone(),
                reason,
            }),
            None => Ok(()),
        };
        let outcome = match outcome {
            Ok(()) => match inner
                .store
                .transition(&id, Status::Paused, Status::Running, "", None)
                .await
            {
                Ok(StartOutcome::Started) => Ok(()),
                Ok(StartOutcome::NotFound) => Err(EngineError::NotFound(id.clone())),
                Ok(StartOutcome::AlreadyStarted(status)) => Err(EngineError::WrongState(format!(
                    "workflow {id} is {status}, not Paused"
                ))),
                Err(e) => Err(e.into()),
            },
            Err(e) => Err(e),
        };
        if let Err(e) = outcome {
            self.unregister(&id);
            return Err(e);
        }
        self.publish(&id, Status::Running, "");
        rec.status = Status::Running;
        rec.reason.clear();
        self.launch(rec, active);
        Ok(())
    }

    /// Submits an existing workflow's request again as a new workflow,
    /// through every check a Submit goes through. `audit` is committed with
    /// the new workflow, as for [`Engine::submit`].
    pub async fn clone_workflow(
        &self,
        id: &str,
        opts: CloneOptions,
        audit: Option<AuditEntry>,
    ) -> Result<String, EngineError> {
        let rec = self.status(id).await?;
        let mut req = rec.req.clone();
        if opts.only_unfinished {
            let done = |s: Status| matches!(s, Status::Completed | Status::Skipped);
            req.blocks = rec
                .req
                .blocks
                .iter()
                .zip(&rec.blocks)
                .filter_map(|(b, br)| {
                    let mut b = b.clone();
                    b.jobs = b
                        .jobs
                        .into_iter()
                        .zip(&br.jobs)
                        .filter(|(_, j)| !done(j.status))
                        .map(|(j, _)| j)
                        .collect();
                    (!b.jobs.is_empty()).then_some(b)
                })
                .collect();
            if req.blocks.is_empty() {
                return Err(EngineError::WrongState(format!(
                    "every job of workflow {id} completed; there is nothing left to clone"
                )));
            }
        }
        req.labels.extend(opts.labels);
        req.labels.insert("interlock.clonedFrom".into(), id.into());
        if !opts.trace_id.is_empty() {
            req.trace_id = opts.trace_id;
        }
        req.request_id = opts.request_id;
        self.submit(req, audit).await
    }

    /// Workflows matching `filter`, newest first. The limit is clamped to
    /// 1..=1000 (0 means 100).
    pub async fn list(&self, mut filter: ListFilter) -> Result<Vec<Summary>, EngineError> {
        filter.limit = match filter.limit {
            0 => 100,
            n => n.min(1000),
        };
        Ok(self.inner.store.list(filter).await?)
    }

    /// Every committed transition from now on (see [`Event`]).
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }
}
