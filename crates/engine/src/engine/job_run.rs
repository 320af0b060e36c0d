//! Running one job of a block: its start (see `job_start`), its attempts
//! (retried with backoff while it is safe to repeat), and the record of its
//! end, under the run's lease. A job records its end and the block's
//! failure count before its permit is released (see `executor`); the
//! block's last job leaves its end to be committed with the block's.

use super::Inner;
use super::active::{Active, Cause};
use super::block::BlockRun;
use crate::job::{JobCtx, JobError, JobSink};
use async_trait::async_trait;
use interlock_core::{Attempt, JobRecord, Status, WorkflowRecord};
use interlock_store::{Change, Store};
use rand::Rng;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::Instrument;

/// Changes to commit with a job's start, and where to hand them back if
/// the job never starts.
pub(super) struct StartWith {
    pub(super) changes: Vec<Change>,
    pub(super) back: tokio::sync::oneshot::Sender<Option<Vec<Change>>>,
}

/// Checkpoints and log lines of one job attempt, written under the run's
/// lease. One per attempt, so per running job: the lease is held once, by
/// the attempt's log.
struct Sink {
    store: Arc<dyn Store>,
    block: usize,
    job: usize,
    instance: Arc<super::instance::Instance>,
    log: super::logs::AttemptLog,
    clock: Arc<dyn interlock_core::Clock>,
}

#[async_trait]
impl JobSink for Sink {
    async fn checkpoint(&self, state: String) -> Result<(), JobError> {
        let lease = self.log.lease();
        self.store
            .write(
                Some(lease),
                vec![Change::Checkpoint {
                    id: lease.workflow_id.clone(),
                    block: self.block,
                    job: self.job,
                    state,
                }],
            )
            .await
            .map_err(|e| JobError::new(format!("cannot save checkpoint: {e}")))
    }

    fn holds_lease(&self) -> bool {
        self.instance.holds(self.log.lease()).is_ok()
    }

    fn lease(&self) -> Option<interlock_store::Lease> {
        Some(self.log.lease().clone())
    }

    fn log(&self, stream: interlock_core::LogStream, text: &str) {
        self.log.line(self.clock.as_ref(), stream, text);
    }

    async fn flush_logs(&self) {
        self.log.flush().await;
    }
}

impl Inner {
    pub(super) fn job_ctx(
        &self,
        rec: &WorkflowRecord,
        bi: usize,
        ji: usize,
        active: &Active,
        jr: &JobRecord,
    ) -> JobCtx {
        let attempt = jr.attempts.len() as u32 + 1;
        JobCtx {
            workflow_id: rec.id.clone(),
            workflow_name: rec.req.name.clone(),
            block: bi,
            job: ji,
            attempt,
            // A token of its own only for a timeout to cancel (the one rule,
            // `attempt_timeout`, decides both): the run's token is what else
            // stops a job, and a child per running job would cost memory
            // and make the run's cancel walk them all.
            cancel: match rec.req.blocks[bi].jobs[ji].attempt_timeout() {
                Some(_) => active.token.child_token(),
                None => active.token.clone(),
            },
            detaching: active.detach.clone(),
            checkpoint: jr.checkpoint.clone(),
            traceparent: self
                .opts
                .job_traceparent
                .as_ref()
                .and_then(|hook| hook())
                .or_else(|| crate::job::traceparent_in(&rec.req.trace_id, &rec.id, bi, ji)),
            operator_retry: jr.error == super::recovery::RETRIED_BY_OPERATOR,
            sink: Some(Arc::new(Sink {
                store: self.store.clone(),
                block: bi,
                job: ji,
                instance: self.instance.clone(),
                log: self
                    .logs
                    .attempt(active.shared_lease().clone(), bi, ji, attempt),
                clock: self.opts.clock.clone(),
            })),
        }
    }

    /// One attempt of a job, in its span when something takes it (traces
    /// are exported): a disabled span held across the attempt would still
    /// take room in the future of every running job.
    fn attempt<'a>(
        &'a self,
        ctx: &'a JobCtx,
        spec: &'a interlock_core::Job,
    ) -> futures::future::BoxFuture<'a, Result<crate::job::Outputs, JobError>> {
        let span = tracing::debug_span!("attempt", number = ctx.attempt);
        match span.is_disabled() {
            true => self.runner.run(ctx, spec),
            false => Box::pin(self.runner.run(ctx, spec).instrument(span)),
        }
    }

    /// Runs job `ji` of block `bi` from its record in `rec`; `unresolved`
    /// says why its inputs could not be filled in (it then fails); `with`
    /// is committed with its start. `permit` is released when the job is
    /// over, after its end is recorded.
    ///
    /// Its future lives as long as the job runs, once per running job, so
    /// it is kept small: an `async` block that uses what it captures in
    /// place (an `async fn` would keep each argument twice, as passed and
    /// moved into its body), the prior record read from the shared `rec`
    /// (a copy would live as long as the job), and every await but the
    /// attempt's boxed.
    #[expect(
        clippy::manual_async_fn,
        reason = "an async fn keeps its arguments twice in its future"
    )]
    pub(super) fn run_job(
        self: Arc<Self>,
        (rec, bi, ji): (Arc<WorkflowRecord>, usize, usize),
        unresolved: Option<String>,
        with: Option<Box<StartWith>>,
        (active, shared): (Arc<Active>, Arc<Mutex<BlockRun>>),
        permit: tokio::sync::OwnedSemaphorePermit,
    ) -> impl Future<Output = ()> + Send + 'static {
        async move {
            // Captured, so held by the future until it ends.
            let _permit = &permit;
            let spec = &rec.req.blocks[bi].jobs[ji];
            // In a scope of its own, so its locals take no room in the
            // future once the job runs.
            let (holds_slots, mut jr) = {
                let (mut extra, back) = match with {
                    Some(w) => (Some(w.changes), Some(w.back)),
                    None => (None, None),
                };
                let prior = &rec.blocks[bi].jobs[ji];
                let started =
                    Box::pin(self.start_job(&rec, (bi, ji), prior, &active, &mut extra)).await;
                if let Some(back) = back {
                    let _ = back.send(extra);
                }
                match started {
                    Some(s) => s,
                    None => return,
                }
            };
            metrics::counter!("interlock_jobs_started_total", "job" => spec.name.clone())
                .increment(1);
            // Only a job known to be safe to repeat is retried; an unknown
            // type is not.
            let idempotent = self.runner.safe_to_repeat(spec);
            let max_attempts = spec.retry.as_ref().map_or(1, |r| r.max_attempts.max(1));
            let result = loop {
                if active.token.is_cancelled() {
                    break Err(JobError::cancelled());
                }
                let ctx = self.job_ctx(&rec, bi, ji, &active, &jr);
                let number = ctx.attempt;
                let started = self.opts.clock.now();
                if let Some(why) = &unresolved {
                    break Err(JobError::new(why.clone()));
                }
                let run = self.attempt(&ctx, spec);
                // With a timeout, boxed: its timer would otherwise take room
                // in every job's future.
                let r = match spec.attempt_timeout() {
                Some(t) => {
                    Box::pin(async {
                        tokio::select! {
                            r = run => r,
                            _ = tokio::time::sleep(t) => {
                                ctx.cancel.cancel();
                                Err(JobError::new(format!("timed out after {}s", t.as_secs_f64())).retryable())
                            }
                        }
                    })
                    .await
                }
                None => run.await,
            };
                // A stop wakes every job of every run it stops at once. Each
                // steps back once before recording its end, so the stop reaches
                // all of them before any spends time on its record (otherwise
                // the last job hears of an e-stop only after every other run's
                // end was built: tokio runs the task a finishing job wakes next).
                // Then its lines before its end: a reader that sees the job end
                // has seen everything it logged. Boxed, with the attempt's
                // context, which nothing after needs: the future then holds
                // the context only while the attempt runs.
                let stopping = active.token.is_cancelled();
                Box::pin(async move {
                    if stopping {
                        tokio::task::yield_now().await;
                    }
                    ctx.flush_logs().await
                })
                .await;
                jr.attempts.push(Attempt {
                    number,
                    started,
                    ended: Some(self.opts.clock.now()),
                    error: r
                        .as_ref()
                        .err()
                        .map(|e| e.message.clone())
                        .unwrap_or_default(),
                });
                match r {
                    Err(e)
                        if e.retryable
                            && idempotent
                            && number < max_attempts
                            && !active.token.is_cancelled() =>
                    {
                        if !Box::pin(
                            self.persist(&active, vec![job_change(&rec.id, bi, ji, jr.clone())]),
                        )
                        .await
                        {
                            return;
                        }
                        let wait = backoff(spec.retry.as_ref().expect("max_attempts > 1"), number);
                        Box::pin(async {
                            tokio::select! {
                                _ = tokio::time::sleep(wait) => {}
                                _ = active.token.cancelled() => {}
                            }
                        })
                        .await;
                    }
                    other => break other,
                }
            };

            // A job that ended after this process's lease lapsed (a pause, a
            // partition) may already run elsewhere: its outcome is the new
            // owner's to find out (recovery), not ours to record.
            if let Err(why) = self.instance.holds(active.lease()) {
                active.stop(Cause::Unrecorded(why));
                return;
            }
            jr.ended = Some(self.opts.clock.now());
            let mut changes = Vec::with_capacity(3);
            match result {
                Ok(outputs) => {
                    jr.status = Status::Completed;
                    jr.outputs = outputs;
                }
                Err(e) if active.token.is_cancelled() => {
                    let cause = active.cause();
                    match cause.as_ref().and_then(|c| c.cut_status()) {
                        None => return, // unrecorded stop: leave the job "Running"
                        Some(cut) => {
                            jr.status = cut;
                            let why = cause.map(|c| c.describe()).unwrap_or_default();
                            // "cancelled" then "cancelled: <reason>" says it twice.
                            jr.error = if why.starts_with(&e.message) {
                                why
                            } else {
                                format!("{}: {why}", e.message)
                            };
                        }
                    }
                }
                Err(e) if e.interrupted => {
                    jr.status = Status::Interrupted;
                    jr.error = e.message.clone();
                    shared
                        .lock()
                        .expect("block lock")
                        .held
                        .push(format!("block {bi} job {ji} ({})", spec.name));
                    // Its limit slots stay taken until an operator decides, as
                    // after a crash: the effect may still be under way.
                    Box::pin(self.persist(&active, vec![job_change(&rec.id, bi, ji, jr)])).await;
                    return;
                }
                Err(e) => {
                    jr.status = Status::Failed;
                    jr.error = e.message.clone();
                    jr.fatal = e.fatal;
                    let mut s = shared.lock().expect("block lock");
                    s.failures += 1;
                    s.has_error = true;
                    let block = &rec.req.blocks[bi];
                    let what = format!("block {bi} job {ji} ({}) failed: {}", spec.name, e.message);
                    if e.fatal {
                        drop(s);
                        active.stop(Cause::Fatal(format!(
                            "{what} (fatal; the rest of the workflow was cancelled)"
                        )));
                    } else if s.failures > block.tolerated_failures() && s.halted.is_none() {
                        s.halted = Some(format!(
                            "{what}; block {bi} allows {} failure(s) and had {}, so the workflow halted",
                            block.tolerated_failures(),
                            s.failures
                        ));
                    }
                    changes.push(Change::WorkflowErrors { id: rec.id.clone() });
                }
            }
            metrics::counter!("interlock_jobs_finished_total", "job" => spec.name.clone(), "status" => jr.status.as_str())
            .increment(1);
            changes.insert(0, job_change(&rec.id, bi, ji, jr));
            if holds_slots {
                changes.push(Change::ReleaseSlots {
                    id: rec.id.clone(),
                    block: bi,
                    job: ji,
                });
            } else {
                // The block's last job: its end goes with the block's, one
                // commit fewer (a job with limit slots records its end at once,
                // so that whoever waits for a slot is told). Also when the run
                // is stopping for a cause that is recorded: the block's end and
                // the workflow's then follow at once, so a mass stop costs one
                // commit per run, not two. Not for a stop that records nothing
                // (the block's end is never written; `record_ended` would still
                // write this one, but only while the lease holds).
                let mut s = shared.lock().expect("block lock");
                s.unended -= 1;
                let recorded = active.cause().is_none_or(|c| c.cut_status().is_some());
                if s.unended == 0 && recorded {
                    s.last_end = changes;
                    return;
                }
            }
            Box::pin(self.persist(&active, changes)).await;
            if holds_slots {
                self.opts.concurrency.freed();
            }
        }
    }
}

/// The record of job `ji` of block `bi` of workflow `id`, as a change.
pub(super) fn job_change(id: &str, bi: usize, ji: usize, rec: JobRecord) -> Change {
    Change::Job {
        id: id.to_string(),
        block: bi,
        job: ji,
        rec,
    }
}

/// Exponential backoff with equal jitter: half fixed, half random.
fn backoff(r: &interlock_core::RetryPolicy, attempt: u32) -> Duration {
    let base = if r.initial_backoff.is_zero() {
        Duration::from_millis(100)
    } else {
        r.initial_backoff
    };
    let cap = if r.max_backoff.is_zero() {
        Duration::from_secs(60)
    } else {
        r.max_backoff
    };
    let exp = base.saturating_mul(1u32 << (attempt - 1).min(20)).min(cap);
    let half = exp / 2;
    half + half.mul_f64(rand::rng().random::<f64>())
}
