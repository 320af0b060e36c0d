//! The executor: one tokio task per executing workflow runs its blocks
//! strictly in order; within a block at most `rate_limit` jobs are in
//! flight, started in list order. Each job runs in its own task holding a
//! semaphore permit; it records its result and updates the block's failure
//! count *before* releasing the permit, so the next job's start always sees
//! every earlier verdict (a failing pre-check with rate_limit 1 stops the
//! jobs after it).
//!
//! A block's end is committed with whatever comes next: the next block's
//! start, or the workflow's end. Nothing happens in between, and one commit
//! fewer per block is what a stop of thousands of runs waits for.
//!
//! Recording: every transition is committed with the run's lease. A write
//! the store refuses because the lease moved stops the run without
//! recording more (another process owns it now). A write that fails because
//! the store is unwell (disk full, database unreachable) is retried with
//! backoff until it lands: nothing new starts meanwhile, because the job
//! that wants to record holds its permit, and the health check reports the
//! failure.

use super::active::{Active, Cause};
use super::{Inner, StoreHealth};
use crate::job::{JobCtx, JobError, JobSink};
use async_trait::async_trait;
use interlock_core::{Attempt, BlockRecord, EsMode, JobRecord, Status, WorkflowRecord};
use interlock_store::{Change, Lease, Store, StoreError};
use rand::Rng;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::Instrument;

/// Longest wait between retries of a failed write.
const MAX_WRITE_BACKOFF: Duration = Duration::from_secs(5);

/// Mutable state of the block being run, shared with its job tasks.
struct BlockRun {
    failures: u32,
    has_error: bool,
    halted: Option<String>,
    /// Jobs that came back Interrupted (their worker was lost and they are
    /// not safe to re-run): the workflow waits for an operator.
    held: Vec<String>,
}

/// Checkpoints and log lines of one job attempt, written under the run's
/// lease.
struct Sink {
    store: Arc<dyn Store>,
    lease: Lease,
    block: usize,
    job: usize,
    instance: Arc<super::instance::Instance>,
    log: super::logs::AttemptLog,
    clock: Arc<dyn interlock_core::Clock>,
}

#[async_trait]
impl JobSink for Sink {
    async fn checkpoint(&self, state: String) -> Result<(), JobError> {
        self.store
            .write(
                Some(&self.lease),
                vec![Change::Checkpoint {
                    id: self.lease.workflow_id.clone(),
                    block: self.block,
                    job: self.job,
                    state,
                }],
            )
            .await
            .map_err(|e| JobError::new(format!("cannot save checkpoint: {e}")))
    }

    fn holds_lease(&self) -> bool {
        self.instance.holds(&self.lease).is_ok()
    }

    fn lease(&self) -> Option<interlock_store::Lease> {
        Some(self.lease.clone())
    }

    fn log(&self, stream: interlock_core::LogStream, text: &str) {
        self.log.line(self.clock.as_ref(), stream, text);
    }

    async fn flush_logs(&self) {
        self.log.flush().await;
    }
}

impl Inner {
    fn set_write_error(&self, e: Option<String>) {
        let mut h = self.health.lock().expect("health lock");
        if h.write_error != e {
            h.write_error = e;
        }
    }

    pub(super) fn health(&self) -> StoreHealth {
        self.health.lock().expect("health lock").clone()
    }

    /// Commits `changes` under `lease`, retrying while the store is unwell.
    /// Errors only when the changes must not be recorded at all: the lease
    /// moved, the store closed, or the server is shutting down.
    pub(super) async fn commit(
        &self,
        lease: &Lease,
        changes: Vec<Change>,
    ) -> Result<(), StoreError> {
        let mut wait = Duration::from_millis(50);
        let mut retried = false;
        loop {
            match self.store.write(Some(lease), changes.clone()).await {
                Ok(()) => {
                    if self.health().write_error.is_some() {
                        tracing::info!("store writes succeed again");
                        self.set_write_error(None);
                    }
                    return Ok(());
                }
                Err(e) if e.is_transient() && !self.draining.is_cancelled() => {
                    tracing::error!(error = %e, workflow = %lease.workflow_id, retry_in = ?wait,
                        "cannot record workflow progress; retrying");
                    self.set_write_error(Some(e.to_string()));
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = self.draining.cancelled() => {}
                    }
                    wait = (wait * 2).min(MAX_WRITE_BACKOFF);
                    retried = true;
                }
                // A failure can hide a commit (the connection dropped after
                // COMMIT). A terminal write that did land has already ended
                // the lease, so its retry is fenced: that is success.
                Err(StoreError::Fenced { .. })
                    if retried && self.landed_terminal(&lease.workflow_id, &changes).await =>
                {
                    return Ok(());
                }
                Err(e) => {
                    if matches!(e, StoreError::Fenced { .. }) {
                        metrics::counter!("interlock_fenced_writes_total").increment(1);
                    }
                    return Err(e);
                }
            }
        }
    }

    /// Whether `changes` end the workflow in a terminal status that the
    /// store already shows.
    async fn landed_terminal(&self, id: &str, changes: &[Change]) -> bool {
        let Some(want) = changes.iter().find_map(|c| match c {
            Change::Workflow { status, .. } if status.is_terminal() => Some(*status),
            _ => None,
        }) else {
            return false;
        };
        matches!(self.store.get(id).await, Ok(Some(rec)) if rec.status == want)
    }

    /// Commits for a running workflow; on failure stops it without
    /// recording more and returns false.
    pub(super) async fn persist(&self, active: &Active, changes: Vec<Change>) -> bool {
        match self.commit(active.lease(), changes).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "workflow progress can no longer be recorded here; stopping it");
                active.stop(Cause::Unrecorded(format!("not recorded: {e}")));
                false
            }
        }
    }

    pub(super) async fn run(self: Arc<Self>, rec: WorkflowRecord, active: Arc<Active>) {
        let id = rec.id.clone();
        let deadline = rec.req.deadline.map(|d| {
            let a = active.clone();
            let started = rec.started.unwrap_or_else(|| self.opts.clock.now());
            let elapsed = Duration::from_micros((self.opts.clock.now() - started).max(0) as u64);
            let left = d.saturating_sub(elapsed);
            tokio::spawn(async move {
                tokio::time::sleep(left).await;
                a.stop(Cause::Deadline(d));
            })
        });
        let rec = Arc::new(rec);
        let mut halted = None;
        let mut held = Vec::new();
        let mut had_errors = rec.had_errors;
        // The end of the last block run, committed with what comes next.
        let mut ended = Vec::new();
        for bi in 0..rec.blocks.len() {
            if rec.blocks[bi].status.is_terminal() {
                // Recorded before a restart: a block that halted the workflow
                // still halts it.
                if let Some(reason) = halt_reason(&rec, bi) {
                    halted = Some(reason);
                    break;
                }
                continue;
            }
            if active.cause().is_some() {
                break;
            }
            // A block whose jobs take inputs runs on a copy of the record
            // with them filled in, so limits, buckets, checks and the job
            // itself all see the values.
            let (block_rec, unresolved) =
                match rec.req.blocks[bi].jobs.iter().any(|j| !j.inputs.is_empty()) {
                    true => self.with_inputs(&rec, bi).await,
                    false => (rec.clone(), Arc::default()),
                };
            let (run, end) = self
                .clone()
                .run_block(
                    &block_rec,
                    bi,
                    &active,
                    std::mem::take(&mut ended),
                    unresolved,
                )
                .instrument(tracing::info_span!(
                    "block",
                    block = bi,
                    jobs = rec.blocks[bi].jobs.len()
                ))
                .await;
            ended.extend(end);
            had_errors |= run.has_error;
            if !run.held.is_empty() {
                held = run.held;
                break;
            }
            if let Some(reason) = run.halted {
                halted = Some(reason);
                break;
            }
        }
        if let Some(d) = deadline {
            d.abort();
        }
        let (status, reason) = match (active.cause(), halted) {
            (Some(Cause::Unrecorded(why)), _) => {
                tracing::warn!(workflow = %id, why = %interlock_core::Escaped(&why), "workflow left unfinished here");
                self.retire(&id, &active);
                return;
            }
            (Some(c @ (Cause::EmergencyStop(_) | Cause::Drained(_))), _) => {
                (Status::Stopped, c.describe())
            }
            (Some(c @ Cause::Cancelled(_)), _) => (Status::Cancelled, c.describe()),
            (Some(c), _) => (Status::Failed, c.describe()),
            (None, _) if !held.is_empty() => {
                self.hold(&id, &active, had_errors, &held).await;
                return;
            }
            (None, Some(reason)) => (Status::Failed, reason),
            (None, None) => (Status::Completed, String::new()),
        };
        // No Pause/Resume write may land after the final state.
        let mut finishing = active.finishing.lock().await;
        *finishing = true;
        let change = Change::Workflow {
            id: id.clone(),
            status,
            reason: reason.clone(),
            had_errors,
            es_halt: match active.cause() {
                Some(Cause::EmergencyStop(_)) => EsMode::Stop,
                Some(Cause::Drained(_)) => EsMode::Drain,
                _ => EsMode::Go,
            },
            ended: Some(self.opts.clock.now()),
        };
        ended.push(change);
        if self.persist(&active, ended).await {
            // Its limit slots went with the final write.
            self.opts.concurrency.freed();
            metrics::counter!("interlock_workflows_finished_total", "status" => status.as_str())
                .increment(1);
            // Recording the end released the lease in the same commit.
            tracing::info!(workflow = %id, %status, reason = %interlock_core::Escaped(&reason), "workflow ended");
        }
        drop(finishing);
        self.retire(&id, &active);
    }

    /// Pauses a run whose jobs came back Interrupted and gives up its
    /// lease, so an operator's ResolveJob can resume it from any instance
    /// (what recovery does for jobs a crash interrupted).
    async fn hold(&self, id: &str, active: &Active, had_errors: bool, held: &[String]) {
        let reason = format!(
            "awaiting an operator decision: {} interrupted; use ResolveJob to retry, skip or cancel",
            held.join(", ")
        );
        tracing::warn!(workflow = %id, reason = %interlock_core::Escaped(&reason), "workflow paused");
        let mut finishing = active.finishing.lock().await;
        *finishing = true;
        let change = Change::Workflow {
            id: id.to_string(),
            status: Status::Paused,
            reason,
            had_errors,
            es_halt: EsMode::Go,
            ended: None,
        };
        if self.persist(active, vec![change]).await
            && let Err(e) = self.store.release(active.lease()).await
        {
            tracing::warn!(workflow = %id, error = %e, "cannot release the lease of a held workflow; it lapses");
        }
        drop(finishing);
        self.retire(id, active);
    }

    /// The run is over: forget it and wake whoever waits for its end.
    pub(super) fn retire(&self, id: &str, active: &Active) {
        self.active.lock().expect("active lock").remove(id);
        active.done.set(true);
    }

    /// Runs block `bi`, committing `before` with its start. Returns how it
    /// went and the block's end, which the caller commits (none when the
    /// run can no longer record here).
    async fn run_block(
        self: Arc<Self>,
        rec: &Arc<WorkflowRecord>,
        bi: usize,
        active: &Arc<Active>,
        mut before: Vec<Change>,
        unresolved: Arc<HashMap<usize, String>>,
    ) -> (BlockRun, Option<Change>) {
        let block = &rec.req.blocks[bi];
        let mut brec = rec.blocks[bi].clone();
        brec.status = Status::Running;
        brec.started = brec.started.or(Some(self.opts.clock.now()));
        let failures = recorded_failures(&brec);
        let shared = Arc::new(Mutex::new(BlockRun {
            failures,
            has_error: failures > 0,
            halted: halt_reason(rec, bi),
            held: Vec::new(),
        }));
        let block_change = |brec: &BlockRecord| Change::Block {
            id: rec.id.clone(),
            block: bi,
            rec: brec.clone(),
        };
        before.push(block_change(&brec));
        if !self.persist(active, before).await {
            let run = BlockRun {
                failures: 0,
                has_error: false,
                halted: None,
                held: Vec::new(),
            };
            return (run, None);
        }
        let sem = Arc::new(Semaphore::new(block.concurrency()));
        let mut tasks = JoinSet::new();
        for ji in 0..block.jobs.len() {
            if brec.jobs[ji].status.is_terminal() {
                continue;
            }
            let permit = tokio::select! {
                biased;
                _ = active.token.cancelled() => break,
                p = sem.clone().acquire_owned() => p.expect("semaphore never closed"),
            };
            if !active.wait_unpaused().await {
                break;
            }
            {
                let s = shared.lock().expect("block lock");
                if active.cause().is_some() || s.halted.is_some() || !s.held.is_empty() {
                    break;
                }
            }
            // A drain lands here: no new job, and the cause ends the block
            // once the jobs in flight have finished.
            if let Some(h) = self.estop.borrow().halted(&active.name) {
                active.halt(h);
                break;
            }
            if let Err(why) = self.instance.holds(active.lease()) {
                active.stop(Cause::Unrecorded(why));
                break;
            }
            let (this, rec, active, shared) =
                (self.clone(), rec.clone(), active.clone(), shared.clone());
            let unresolved = unresolved.get(&ji).cloned();
            let prior = brec.jobs[ji].clone();
            let span = tracing::info_span!("job", block = bi, job = ji,
                name = %interlock_core::Escaped(&block.jobs[ji].name));
            tasks.spawn(
                async move {
                    this.run_job(&rec, (bi, ji), (prior, unresolved), &active, &shared)
                        .await;
                    drop(permit);
                }
                .instrument(span),
            );
        }
        while tasks.join_next().await.is_some() {}

        let run = {
            let s = shared.lock().expect("block lock");
            BlockRun {
                failures: s.failures,
                has_error: s.has_error,
                halted: s.halted.clone(),
                held: s.held.clone(),
            }
        };
        let status = match active.cause().map(|c| c.cut_status()) {
            Some(None) => return (run, None), // unrecorded: leave the block as it was
            // Held for an operator: the block resumes after ResolveJob.
            None if !run.held.is_empty() => return (run, None),
            Some(Some(cut)) if !run.has_error => cut,
            _ if run.has_error => Status::Failed,
            _ => Status::Completed,
        };
        brec.status = status;
        brec.failures = run.failures;
        brec.has_error = run.has_error;
        brec.ended = Some(self.opts.clock.now());
        (run, Some(block_change(&brec)))
    }

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
            cancel: active.token.child_token(),
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
                lease: active.lease().clone(),
                block: bi,
                job: ji,
                instance: self.instance.clone(),
                log: self.logs.attempt(active.lease().clone(), bi, ji, attempt),
                clock: self.opts.clock.clone(),
            })),
        }
    }

    /// Runs job `ji` of block `bi` from its `prior` record; `unresolved`
    /// says why its inputs could not be filled in (it then fails).
    async fn run_job(
        &self,
        rec: &WorkflowRecord,
        (bi, ji): (usize, usize),
        (prior, unresolved): (JobRecord, Option<String>),
        active: &Active,
        shared: &Mutex<BlockRun>,
    ) {
        let spec = &rec.req.blocks[bi].jobs[ji];
        let key = |jr: JobRecord| Change::Job {
            id: rec.id.clone(),
            block: bi,
            job: ji,
            rec: jr,
        };
        let Some((holds_slots, mut jr)) = self.start_job(rec, bi, ji, &prior, active).await else {
            return;
        };
        metrics::counter!("interlock_jobs_started_total", "job" => spec.name.clone()).increment(1);
        // Only a job known to be safe to repeat is retried; an unknown
        // type is not.
        let idempotent = self.runner.safe_to_repeat(spec);
        let max_attempts = spec.retry.as_ref().map_or(1, |r| r.max_attempts.max(1));
        let result = loop {
            if active.token.is_cancelled() {
                break Err(JobError::cancelled());
            }
            let ctx = self.job_ctx(rec, bi, ji, active, &jr);
            let number = ctx.attempt;
            let started = self.opts.clock.now();
            if let Some(why) = &unresolved {
                break Err(JobError::new(why.clone()));
            }
            let run = self
                .runner
                .run(&ctx, spec)
                .instrument(tracing::debug_span!("attempt", number));
            let r = match spec.timeout {
                Some(t) if !t.is_zero() => tokio::select! {
                    r = run => r,
                    _ = tokio::time::sleep(t) => {
                        ctx.cancel.cancel();
                        Err(JobError::new(format!("timed out after {}s", t.as_secs_f64())).retryable())
                    }
                },
                _ => run.await,
            };
            // Its lines before its end: a reader that sees the job end has
            // seen everything it logged.
            ctx.flush_logs().await;
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
                    if !self.persist(active, vec![key(jr.clone())]).await {
                        return;
                    }
                    let wait = backoff(spec.retry.as_ref().expect("max_attempts > 1"), number);
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = active.token.cancelled() => {}
                    }
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
                        jr.error = format!(
                            "{}: {}",
                            e.message,
                            cause.map(|c| c.describe()).unwrap_or_default()
                        );
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
                self.persist(active, vec![key(jr)]).await;
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
        changes.insert(0, key(jr));
        if holds_slots {
            changes.push(Change::ReleaseSlots {
                id: rec.id.clone(),
                block: bi,
                job: ji,
            });
        }
        self.persist(active, changes).await;
        if holds_slots {
            self.opts.concurrency.freed();
        }
    }
}

/// The reason block `bi` halts the workflow, judging from its record: more
/// failures than it tolerates, or a fatal failure.
pub(super) fn halt_reason(rec: &WorkflowRecord, bi: usize) -> Option<String> {
    let (b, br) = (&rec.req.blocks[bi], &rec.blocks[bi]);
    let failures = recorded_failures(br);
    if let Some((ji, j)) = br.jobs.iter().enumerate().find(|(_, j)| j.fatal) {
        return Some(format!(
            "block {bi} job {ji} ({}) failed fatally: {}",
            b.jobs[ji].name, j.error
        ));
    }
    (failures > b.tolerated_failures()).then(|| {
        format!(
            "block {bi} allows {} failure(s) and had {failures}, so the workflow halted",
            b.tolerated_failures()
        )
    })
}

/// Failed jobs of a block, counted from the job records: each failure is
/// committed with its job, while the block's own counter is only written
/// when the block ends, so after a crash the jobs are the truth.
fn recorded_failures(br: &BlockRecord) -> u32 {
    br.jobs
        .iter()
        .filter(|j| j.status == Status::Failed)
        .count() as u32
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
