//! Resuming work whose owner is gone (this server restarted, or another
//! replica died), and operator decisions about jobs that were interrupted.
//!
//! Invariants: nothing resumes before the emergency stop and the policies in
//! force have been consulted; a completed job never runs again; a job that
//! was in flight runs again only if it is safe to repeat or reconciliation
//! says its effect did not happen; anything else waits for an operator.

use super::active::Active;
use super::{Engine, refused};
use crate::error::{EngineError, Result};
use crate::job::Reconciled;
use interlock_core::{Attempt, JobRecord, Status, WorkflowRecord};
use interlock_store::{CasOutcome, Change, Lease};
use std::sync::Arc;
use std::time::Duration;

/// The error a job carries between an operator's Retry and its next run.
pub(super) const RETRIED_BY_OPERATOR: &str = "retried by an operator";

/// What becomes of the work a run left in flight when its server went away.
#[derive(Clone, Copy)]
enum Ending {
    /// What it left running in this machine stops ([`crate::job::Job::abandon`]).
    Abandon,
    /// What it started elsewhere ends too: an e-stop ([`crate::job::Job::halt`]).
    Halt,
}

/// An operator's decision about an interrupted job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// Run the job again.
    Retry,
    /// Count the job as done without running it.
    Skip,
    /// Cancel the whole workflow, with a reason.
    Cancel(String),
}

/// Records jobs that were in flight (Running or Interrupted), and the
/// blocks still Running, as `status`: the workflow is ending, and a block
/// left Running in an ended workflow would say work goes on.
pub(super) fn cut_in_flight(
    rec: &WorkflowRecord,
    status: Status,
    why: &str,
    now: interlock_core::Micros,
) -> Vec<Change> {
    let mut out = Vec::new();
    for (bi, b) in rec.blocks.iter().enumerate() {
        if b.status == Status::Running {
            let mut block = interlock_core::BlockRecord::new(0);
            block.status = status;
            block.has_error = b.has_error;
            block.failures = b.failures;
            block.started = b.started;
            block.ended = Some(now);
            out.push(Change::Block {
                id: rec.id.clone(),
                block: bi,
                rec: block,
            });
        }
        for (ji, j) in b.jobs.iter().enumerate() {
            if matches!(j.status, Status::Running | Status::Interrupted) {
                let mut j = j.clone();
                j.status = status;
                j.error = why.to_string();
                j.ended = Some(now);
                out.push(Change::Job {
                    id: rec.id.clone(),
                    block: bi,
                    job: ji,
                    rec: j,
                });
            }
        }
    }
    out
}

impl Engine {
    /// Resumes a workflow this process just claimed (its previous owner is
    /// gone). Before anything resumes, the emergency stop and the policies
    /// in force are consulted: a stopped name is recorded Stopped; a request
    /// the policies no longer admit is Paused with the reason. Jobs that were
    /// in flight are re-run when safe to repeat, reconciled when the job can
    /// tell whether its effect happened, and otherwise marked Interrupted —
    /// which pauses the workflow until an operator decides (see
    /// [`Engine::resolve`]). Returns whether it runs again.
    pub(super) async fn resume_claimed(&self, rec: WorkflowRecord, lease: Lease) -> Result<bool> {
        let id = rec.id.clone();
        // A run of ours that lost its lease may still be winding down.
        if let Some(old) = self.active(&id) {
            old.wait_done(Duration::from_secs(10)).await;
        }
        let active = self.register(&id, &rec.req.name)?;
        active.set_lease(lease);
        match self.prepare_resume(rec, &active).await {
            Ok(Some(rec)) => {
                tracing::info!(workflow = %id, "resuming a workflow whose owner is gone");
                self.launch(rec, active);
                Ok(true)
            }
            Ok(None) => {
                self.unregister(&id);
                Ok(false)
            }
            Err(e) => {
                self.unregister(&id);
                Err(e)
            }
        }
    }

    /// What a run must settle before it goes on from a record whose
    /// owner is gone (see [`Engine::resume_claimed`]): the record to run,
    /// or `None` when it ended (an e-stop) or waits for an operator.
    pub(super) async fn prepare_resume(
        &self,
        mut rec: WorkflowRecord,
        active: &Arc<Active>,
    ) -> Result<Option<WorkflowRecord>> {
        let inner = &self.inner;
        let lease = active.lease();
        let now = self.now();
        // First, whatever runs in flight left going here stops: nothing
        // below continues them (a re-run starts afresh, a reconcile only
        // looks, an interrupted job waits for an operator).
        self.end_in_flight(&rec, active, Ending::Abandon).await;
        let halted = inner.estop.borrow().halted(&rec.req.name);
        if let Some(h) = halted {
            // What they started elsewhere ends, as a live stop ends it.
            self.end_in_flight(&rec, active, Ending::Halt).await;
            // A drain ends the run too: resuming would start its jobs
            // again, and a drain starts nothing.
            let mut changes = cut_in_flight(
                &rec,
                Status::Stopped,
                &format!(
                    "the workflow's server went away under an emergency {}",
                    h.mode
                ),
                now,
            );
            changes.push(Change::Workflow {
                id: rec.id.clone(),
                status: Status::Stopped,
                reason: format!("emergency {} (found when resuming): {h}", h.mode),
                had_errors: rec.had_errors,
                es_halt: h.mode,
                ended: Some(now),
            });
            // The terminal write releases the lease with it.
            inner.commit(lease, changes).await?;
            return Ok(None);
        }
        // The jobs in flight are settled before anything else may hold the
        // workflow: one left recorded Running in a paused workflow would
        // look, to the Resume that follows, like one never started.
        let interrupted = self.settle_in_flight(&mut rec, active).await?;
        if let Err(r) = inner.admission.admit(&rec.req, now) {
            let why = refused(r).to_string();
            self.hold_for_operator(&rec, lease, format!("not resumed: {why}"))
                .await?;
            return Ok(None);
        }
        if !interrupted.is_empty() {
            self.hold_for_operator(
                &rec,
                lease,
                format!(
                    "awaiting an operator decision: {} interrupted; \
                     use ResolveJob to retry, skip or cancel",
                    interrupted.join(", ")
                ),
            )
            .await?;
            return Ok(None);
        }
        Ok(Some(rec))
    }

    /// Calls the runner's [`Ending`] for each job recorded Running.
    async fn end_in_flight(&self, rec: &WorkflowRecord, active: &Arc<Active>, how: Ending) {
        let inner = &self.inner;
        for (bi, block) in rec.blocks.iter().enumerate() {
            for (ji, jr) in block.jobs.iter().enumerate() {
                if jr.status == Status::Running {
                    let ctx = inner.job_ctx(rec, bi, ji, active, jr);
                    let spec = &rec.req.blocks[bi].jobs[ji];
                    match how {
                        Ending::Abandon => inner.runner.abandon(&ctx, spec).await,
                        Ending::Halt => inner.runner.halt(&ctx, spec).await,
                    }
                }
            }
        }
    }

    /// Settles the jobs a run left in flight (recorded Running) when its
    /// server went away, and commits their new state: run again when safe
    /// to repeat or reconciled as not done, Completed when reconciled as
    /// done, otherwise Interrupted. Returns the interrupted ones, named.
    async fn settle_in_flight(
        &self,
        rec: &mut WorkflowRecord,
        active: &Arc<Active>,
    ) -> Result<Vec<String>> {
        let inner = &self.inner;
        let lease = active.lease();
        let now = self.now();
        let mut changes = Vec::new();
        let mut interrupted = Vec::new();
        for bi in 0..rec.blocks.len() {
            for ji in 0..rec.blocks[bi].jobs.len() {
                if rec.blocks[bi].jobs[ji].status != Status::Running {
                    continue;
                }
                let spec = &rec.req.blocks[bi].jobs[ji];
                let mut jr = rec.blocks[bi].jobs[ji].clone();
                let schema = inner.runner.catalog().schema(&spec.name).cloned();
                let next = match schema {
                    None => Err(format!("job type {:?} is no longer registered", spec.name)),
                    Some(_) if inner.runner.safe_to_repeat(spec) => Ok(None),
                    // Reconciled with the arguments it ran with: its inputs
                    // resolve from the record, as when it started.
                    Some(_) => match spec.resolved(&rec.blocks) {
                        Err(why) => Err(why),
                        Ok(spec) => {
                            let ctx = inner.job_ctx(rec, bi, ji, active, &jr);
                            let found = inner.runner.reconcile(&ctx, &spec).await;
                            // What it logged, before the job's new state.
                            ctx.flush_logs().await;
                            match found {
                                Reconciled::Done(outputs) => Ok(Some(outputs)),
                                Reconciled::NotDone => Ok(None),
                                Reconciled::Unknown(why) => Err(why),
                            }
                        }
                    },
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
                            "interrupted by a server restart or takeover; will run again",
                        ));
                        jr.status = Status::NotStarted;
                        // An operator's earlier Retry is spent: this run
                        // finds out first, like any resumed one.
                        jr.error.clear();
                    }
                    Err(why) => {
                        // The run that was lost is an attempt of its own, so
                        // an operator's Retry runs (and logs) as the next.
                        jr.attempts.push(attempt(
                            &jr,
                            "interrupted by a server restart or takeover; waits for an operator",
                        ));
                        jr.status = Status::Interrupted;
                        jr.error = format!("was running when its server went away; {why}");
                        interrupted.push(format!("block {bi} job {ji} ({})", spec.name));
                    }
                }
                rec.blocks[bi].jobs[ji] = jr.clone();
                let ended = jr.status.is_terminal();
                changes.push(Change::Job {
                    id: rec.id.clone(),
                    block: bi,
                    job: ji,
                    rec: jr,
                });
                if ended {
                    // A reconciled job is done with its limit slots.
                    changes.push(Change::ReleaseSlots {
                        id: rec.id.clone(),
                        block: bi,
                        job: ji,
                    });
                }
            }
        }
        inner.commit(lease, changes).await?;
        Ok(interrupted)
    }

    /// Pauses a workflow this process owns and gives it up, so an
    /// operator's decision can resume it from any instance.
    async fn hold_for_operator(
        &self,
        rec: &WorkflowRecord,
        lease: &Lease,
        reason: String,
    ) -> Result<()> {
        tracing::warn!(workflow = %rec.id, reason = %interlock_core::Escaped(&reason), "workflow paused");
        let inner = &self.inner;
        inner
            .commit(
                lease,
                vec![Change::Workflow {
                    id: rec.id.clone(),
                    status: Status::Paused,
                    reason,
                    had_errors: rec.had_errors,
                    es_halt: interlock_core::EsMode::Go,
                    ended: None,
                }],
            )
            .await?;
        inner.store.release(lease).await?;
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
    ) -> Result<()> {
        let mut rec = self.status(id).await?;
        let id = rec.id.clone();
        if rec.status != Status::Paused {
            return Err(EngineError::WrongState(format!(
                "workflow {id} is {}, not Paused awaiting a decision",
                rec.status
            )));
        }
        let Some(mut jr) = rec.blocks.get(block).and_then(|b| b.jobs.get(job)).cloned() else {
            return Err(EngineError::NoSuchJob { id, block, job });
        };
        if jr.status != Status::Interrupted {
            return Err(EngineError::WrongState(format!(
                "block {block} job {job} of workflow {id} is {}, not Interrupted",
                jr.status
            )));
        }
        let now = self.now();
        let reason = match action {
            Resolution::Cancel(reason) => {
                let why = "cancelled by an operator";
                let changes = cut_in_flight(&rec, Status::Cancelled, why, now);
                let reason = if reason.is_empty() {
                    why.to_string()
                } else {
                    format!("{why}: {reason}")
                };
                return self
                    .paused_cas(&id, Status::Cancelled, &reason, Some(now), changes)
                    .await;
            }
            Resolution::Skip => {
                jr.status = Status::Skipped;
                jr.ended = Some(now);
                "skipped by an operator"
            }
            Resolution::Retry => {
                jr.status = Status::NotStarted;
                RETRIED_BY_OPERATOR
            }
        };
        jr.error = reason.to_string();
        rec.blocks[block].jobs[job] = jr.clone();
        let skipped = jr.status == Status::Skipped;
        let mut changes = vec![Change::Job {
            id: id.clone(),
            block,
            job,
            rec: jr,
        }];
        if skipped {
            // A skipped job gives up its limit slots; a retried one keeps them.
            changes.push(Change::ReleaseSlots {
                id: id.clone(),
                block,
                job,
            });
        }
        // Recorded only while still Paused and run by nobody.
        let still = rec.reason.clone();
        self.paused_cas(&id, Status::Paused, &still, None, changes)
            .await?;
        // Resume only when nothing else waits for a decision.
        let waiting = rec
            .blocks
            .iter()
            .flat_map(|b| &b.jobs)
            .any(|j| j.status == Status::Interrupted);
        if waiting {
            return Ok(());
        }
        self.start_run(rec, Status::Paused, None).await
    }

    /// A compare-and-set on a Paused workflow no live instance runs.
    pub(super) async fn paused_cas(
        &self,
        id: &str,
        to: Status,
        reason: &str,
        ended: Option<interlock_core::Micros>,
        changes: Vec<Change>,
    ) -> Result<()> {
        match self
            .inner
            .store
            .transition(id, Status::Paused, to, reason, ended, changes)
            .await?
        {
            CasOutcome::Done(()) => Ok(()),
            CasOutcome::NotFound => Err(EngineError::NotFound(id.to_string())),
            CasOutcome::WrongStatus(s) => Err(EngineError::WrongState(format!(
                "workflow {id} changed meanwhile: it is {s} now; check Status and retry"
            ))),
            CasOutcome::OwnedBy(owner) => Err(EngineError::Elsewhere {
                id: id.to_string(),
                owner,
            }),
        }
    }
}
