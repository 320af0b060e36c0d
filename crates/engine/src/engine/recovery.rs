//! Picking work up after a restart, and operator decisions about jobs a
//! restart interrupted.
//!
//! Invariants: nothing resumes before the emergency stop and the policies in
//! force have been consulted; a completed job never runs again; a job that
//! was in flight runs again only if it is safe to repeat or reconciliation
//! says its effect did not happen; anything else waits for an operator.

use super::{Active, Engine, EngineError, Resolution, end_unrun, refused};
use crate::job::{JobCtx, Reconciled};
use interlock_core::{Attempt, Idempotency, JobRecord, Status, WorkflowRecord, now_micros};
use interlock_store::Change;

impl Engine {
    /// Picks up, after a restart, every workflow that was executing.
    ///
    /// Before anything resumes, the emergency stop and the policies in force
    /// are consulted: a stopped name is recorded Stopped; a request the
    /// policies no longer admit is Paused with the reason. Jobs that were in
    /// flight are re-run when safe to repeat, reconciled when the job can
    /// tell whether its effect happened, and otherwise marked Interrupted —
    /// which pauses the workflow until an operator decides (see
    /// [`Engine::resolve`]). Returns how many workflows resumed.
    pub async fn recover(&self) -> Result<usize, EngineError> {
        let mut resumed = 0;
        for rec in self.inner.store.unfinished().await? {
            if rec.status != Status::Running {
                continue; // Paused: waits for an operator
            }
            let id = rec.id.clone();
            let active = self.register(&id, &rec.req.name)?;
            match self.prepare_resume(rec, &active).await {
                Ok(Some(rec)) => {
                    tracing::info!(workflow = %id, "resuming after restart");
                    self.launch(rec, active);
                    resumed += 1;
                }
                Ok(None) => self.unregister(&id),
                Err(e) => {
                    self.unregister(&id);
                    return Err(e);
                }
            }
        }
        Ok(resumed)
    }

    /// Decides what happens to a workflow found Running at start-up; returns
    /// the record to run, or `None` when it must not run now.
    async fn prepare_resume(
        &self,
        mut rec: WorkflowRecord,
        active: &Active,
    ) -> Result<Option<WorkflowRecord>, EngineError> {
        let inner = &self.inner;
        let now = now_micros();
        let stopped = inner.estop.borrow().stopped(&rec.req.name);
        if let Some(reason) = stopped {
            inner
                .commit(end_unrun(
                    &rec,
                    Status::Stopped,
                    "the server restarted under an emergency stop",
                    format!("emergency stop (found at restart): {reason}"),
                ))
                .await?;
            return Ok(None);
        }
        if let Err(r) = inner.admission.admit(&rec.req) {
            let why = refused(r).to_string();
            self.hold_for_operator(&rec, format!("not resumed after restart: {why}"))
                .await?;
            return Ok(None);
        }
        let mut changes = Vec::new();
        let mut interrupted = Vec::new();
        for bi in 0..rec.blocks.len() {
            for ji in 0..rec.blocks[bi].jobs.len() {
                if rec.blocks[bi].jobs[ji].status != Status::Running {
                    continue;
                }
                let spec = &rec.req.blocks[bi].jobs[ji];
                let mut jr = rec.blocks[bi].jobs[ji].clone();
                let next = match inner.registry.get(&spec.name) {
                    None => Err("its job type is no longer registered".to_string()),
                    Some(job) if job.schema().idempotency == Idempotency::Safe => Ok(None),
                    Some(job) if job.schema().reconcilable => {
                        let ctx = JobCtx {
                            workflow_id: rec.id.clone(),
                            workflow_name: rec.req.name.clone(),
                            block: bi,
                            job: ji,
                            cancel: active.token.child_token(),
                            detaching: inner.draining.clone(),
                            checkpoint: jr.checkpoint.clone(),
                            store: Some(inner.store.clone()),
                        };
                        match job.reconcile(&ctx, &spec.args).await {
                            Reconciled::Done(outputs) => Ok(Some(outputs)),
                            Reconciled::NotDone => Ok(None),
                            Reconciled::Unknown(why) => Err(why),
                        }
                    }
                    Some(_) => Err(
                        "it is not safe to run twice and cannot tell whether it took effect".into(),
                    ),
                };
                let attempt = |jr: &JobRecord, error: &str| Attempt {
                    number: jr.attempts.len() as u32 + 1,
                    started: jr.started.unwrap_or(now),
                    ended: Some(now),
                    error: error.to_string(),
                };
                match next {
                    Ok(Some(outputs)) => {
                        jr.attempts.push(attempt(&jr, ""));
                        jr.status = Status::Completed;
                        jr.outputs = outputs;
                        jr.ended = Some(now);
                    }
                    Ok(None) => {
                        jr.attempts.push(attempt(
                            &jr,
                            "interrupted by a server restart; will run again",
                        ));
                        jr.status = Status::NotStarted;
                    }
                    Err(why) => {
                        jr.status = Status::Interrupted;
                        jr.error = format!("was running when the server stopped; {why}");
                        interrupted.push(format!("block {bi} job {ji} ({})", spec.name));
                    }
                }
                rec.blocks[bi].jobs[ji] = jr.clone();
                changes.push(Change::Job {
                    id: rec.id.clone(),
                    block: bi,
                    job: ji,
                    rec: jr,
                });
            }
        }
        inner.commit(changes).await?;
        if !interrupted.is_empty() {
            self.hold_for_operator(
                &rec,
                format!(
                    "awaiting an operator decision after a restart: {} interrupted; \
                     use ResolveJob to retry, skip or cancel",
                    interrupted.join(", ")
                ),
            )
            .await?;
            return Ok(None);
        }
        Ok(Some(rec))
    }

    async fn hold_for_operator(
        &self,
        rec: &WorkflowRecord,
        reason: String,
    ) -> Result<(), EngineError> {
        tracing::warn!(workflow = %rec.id, %reason, "workflow paused");
        self.inner
            .commit(vec![Change::Workflow {
                id: rec.id.clone(),
                status: Status::Paused,
                reason,
                had_errors: rec.had_errors,
                es_stopped: false,
                ended: None,
            }])
            .await?;
        Ok(())
    }

    /// An operator's decision about an Interrupted job of a Paused workflow:
    /// run it again, count it as done (skip), or cancel the workflow.
    /// Retry and skip resume the workflow after the same checks as Exec.
    pub async fn resolve(
        &self,
        id: &str,
        block: usize,
        job: usize,
        action: Resolution,
    ) -> Result<(), EngineError> {
        let inner = &self.inner;
        let mut rec = self.status(id).await?;
        if rec.status != Status::Paused {
            return Err(EngineError::WrongState(format!(
                "workflow {id} is {}, not Paused awaiting a decision",
                rec.status
            )));
        }
        let Some(mut jr) = rec.blocks.get(block).and_then(|b| b.jobs.get(job)).cloned() else {
            return Err(EngineError::NoSuchJob {
                id: id.into(),
                block,
                job,
            });
        };
        if jr.status != Status::Interrupted {
            return Err(EngineError::WrongState(format!(
                "block {block} job {job} of workflow {id} is {}, not Interrupted",
                jr.status
            )));
        }
        let now = now_micros();
        let reason = match action {
            Resolution::Cancel(reason) => {
                inner
                    .commit(end_unrun(
                        &rec,
                        Status::Cancelled,
                        "cancelled by an operator",
                        format!("cancelled by an operator: {reason}"),
                    ))
                    .await?;
                return Ok(());
            }
            Resolution::Skip => {
                jr.status = Status::Skipped;
                jr.ended = Some(now);
                "skipped by an operator"
            }
            Resolution::Retry => {
                jr.status = Status::NotStarted;
                "retried by an operator"
            }
        };
        jr.error = reason.to_string();
        rec.blocks[block].jobs[job] = jr.clone();
        let change = Change::Job {
            id: id.into(),
            block,
            job,
            rec: jr,
        };
        // Resume only when nothing else waits for a decision.
        let waiting = rec
            .blocks
            .iter()
            .flat_map(|b| &b.jobs)
            .any(|j| j.status == Status::Interrupted);
        inner.commit(vec![change]).await?;
        if waiting {
            return Ok(());
        }
        self.relaunch_paused(rec).await
    }
}
