//! The executor: one tokio task per executing workflow runs its blocks
//! strictly in order; within a block at most `rate_limit` jobs are in
//! flight, started in list order. Each job runs in its own task holding a
//! semaphore permit, except the last one a block starts, which runs in the
//! workflow's task (the block has nothing else to do meanwhile, and a
//! one-job workflow then costs one task, not two); a job records its result
//! and updates the block's failure count *before* releasing the permit, so
//! the next job's start always sees every earlier verdict (a failing
//! pre-check with rate_limit 1 stops the jobs after it).
//!
//! A block's end is committed with whatever comes next: the next block's
//! start, or the workflow's end. Nothing happens in between, and one commit
//! fewer per block is what a stop of thousands of runs waits for. Two more
//! folds of the same kind: the end of the job that ends a block last goes
//! with the block's end (not in a block where a job holds limit slots: such
//! jobs record their ends at once, so that whoever waits for the slots
//! hears, and the count of jobs left then never reaches the last one; nor
//! once the run is stopping for a cause that records nothing, and even
//! then what ended is recorded while the lease holds), and the first
//! block's start goes with its first job's start (unless limits are
//! configured: the job may wait for slots); the next job starts only once
//! that is committed. A block whose jobs take inputs commits what came
//! before it first, because the inputs are read from what is committed. A
//! one-job workflow is so recorded in four commits: submit, start, job
//! start, end; stopped while its job runs, in the same four.
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
use interlock_core::{BlockRecord, EsMode, Status, WorkflowRecord};
use interlock_store::{Change, Lease, StoreError};
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

/// Longest wait between retries of a failed write.
const MAX_WRITE_BACKOFF: Duration = Duration::from_secs(5);

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
                tracing::warn!(workflow = %active.lease().workflow_id, error = %e,
                    "workflow progress can no longer be recorded here; stopping it");
                active.stop(Cause::Unrecorded(format!("not recorded: {e}")));
                false
            }
        }
    }

    /// Runs the workflow to its end. Its future lives as long as the run,
    /// once per running workflow, so awaits that are rare or brief next to
    /// the block's (a commit between blocks, inputs, a hold, the end) are
    /// boxed: a future is as large as its largest await.
    ///
    /// An `async` block that uses what it captures in place: an `async fn`
    /// would keep each argument twice (as passed, and moved into its body).
    #[expect(
        clippy::manual_async_fn,
        reason = "an async fn keeps its arguments twice in its future"
    )]
    pub(super) fn run(
        self: Arc<Self>,
        rec: Arc<WorkflowRecord>,
        active: Arc<Active>,
    ) -> impl Future<Output = ()> + Send + 'static {
        async move {
            // Borrowed: a copy would be one more allocation per running workflow.
            let id = rec.id.as_str();
            let deadline = rec.req.deadline.map(|d| {
                let a = active.clone();
                let started = rec.started.unwrap_or_else(|| self.opts.clock.now());
                let elapsed =
                    Duration::from_micros((self.opts.clock.now() - started).max(0) as u64);
                let left = d.saturating_sub(elapsed);
                tokio::spawn(async move {
                    tokio::time::sleep(left).await;
                    a.stop(Cause::Deadline(d));
                })
            });
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
                // itself all see the values. They are read from what is
                // committed: the last block's end goes first.
                let takes_inputs = rec.req.blocks[bi].jobs.iter().any(|j| !j.inputs.is_empty());
                if takes_inputs
                    && !ended.is_empty()
                    && !Box::pin(self.persist(&active, std::mem::take(&mut ended))).await
                {
                    break;
                }
                let (block_rec, unresolved) = match takes_inputs {
                    true => {
                        let (r, u) = Box::pin(self.with_inputs(&rec, bi)).await;
                        (r, Some(u))
                    }
                    false => (rec.clone(), None),
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
                    // Debug, as the job's: at the default log level a span
                    // is held by the log layer for as long as it lives (about
                    // 0.4 KB each, per running workflow); the workflow's span
                    // gives the logs their context, events in a job name their
                    // block and job, and traces take debug spans.
                    .instrument(tracing::debug_span!(
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
                    Box::pin(self.record_ended(&active, ended)).await;
                    self.retire(id, &active);
                    return;
                }
                (Some(c @ (Cause::EmergencyStop(_) | Cause::Drained(_))), _) => {
                    (Status::Stopped, c.describe())
                }
                (Some(c @ Cause::Cancelled(_)), _) => (Status::Cancelled, c.describe()),
                (Some(c), _) => (Status::Failed, c.describe()),
                (None, _) if !held.is_empty() => {
                    Box::pin(self.hold(id, &active, had_errors, &held, ended)).await;
                    return;
                }
                (None, Some(reason)) => (Status::Failed, reason),
                (None, None) => (Status::Completed, String::new()),
            };
            // No Pause/Resume write may land after the final state.
            let mut finishing = active.finishing.lock().await;
            *finishing = true;
            let change = Change::Workflow {
                id: id.to_string(),
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
            if Box::pin(self.persist(&active, ended)).await {
                // Its limit slots went with the final write.
                self.opts.concurrency.freed();
                metrics::counter!("interlock_workflows_finished_total", "status" => status.as_str())
                .increment(1);
                // Recording the end released the lease in the same commit.
                tracing::info!(workflow = %id, %status, reason = %interlock_core::Escaped(&reason), "workflow ended");
            }
            drop(finishing);
            self.retire(id, &active);
        }
    }

    /// Pauses a run whose jobs came back Interrupted and gives up its
    /// lease, so an operator's ResolveJob can resume it from any instance
    /// (what recovery does for jobs a crash interrupted).
    async fn hold(
        &self,
        id: &str,
        active: &Active,
        had_errors: bool,
        held: &[String],
        mut ended: Vec<Change>,
    ) {
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
        ended.push(change);
        if self.persist(active, ended).await
            && let Err(e) = self.store.release(active.lease()).await
        {
            tracing::warn!(workflow = %id, error = %e, "cannot release the lease of a held workflow; it lapses");
        }
        drop(finishing);
        self.retire(id, active);
    }

    /// Records what ended but was left for a later commit (a block's end,
    /// its last job's) when the run stops unrecorded, as long as this
    /// process still holds the lease: a job that completed must not look
    /// interrupted to the next owner (who would re-run or hold it). With
    /// the lease gone, it is the next owner's to find out, as for any job.
    pub(super) async fn record_ended(&self, active: &Active, ended: Vec<Change>) {
        if !ended.is_empty() && self.instance.holds(active.lease()).is_ok() {
            self.persist(active, ended).await;
        }
    }

    /// The run is over: forget it and wake whoever waits for its end.
    pub(super) fn retire(&self, id: &str, active: &Active) {
        self.active.lock().expect("active lock").remove(id);
        active.done.set(true);
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
pub(super) fn recorded_failures(br: &BlockRecord) -> u32 {
    br.jobs
        .iter()
        .filter(|j| j.status == Status::Failed)
        .count() as u32
}
