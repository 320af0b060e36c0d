//! One block of a run: its jobs started in list order, at most
//! `rate_limit` in flight, each as a task of the block holding a semaphore
//! permit, except the last one the block starts, which runs in the
//! workflow's own task (see `executor` for what is committed when).

use super::Inner;
use super::active::{Active, Cause};
use super::executor::{halt_reason, recorded_failures};
use super::job_run::StartWith;
use futures::FutureExt;
use interlock_core::{BlockRecord, Status, WorkflowRecord};
use interlock_store::Change;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::Instrument;

/// A job run in its block's task rather than a task of its own.
type InlineJob = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Mutable state of the block being run, shared with its job tasks.
#[derive(Default)]
pub(super) struct BlockRun {
    pub(super) failures: u32,
    pub(super) has_error: bool,
    pub(super) halted: Option<String>,
    /// Jobs that came back Interrupted (their worker was lost and they are
    /// not safe to re-run): the workflow waits for an operator.
    pub(super) held: Vec<String>,
    /// Jobs of the block not run yet, nor ended; the one that brings it to
    /// 0 ended last, and its end is committed with the block's.
    pub(super) unended: usize,
    /// That last job's end.
    pub(super) last_end: Vec<Change>,
}

impl Inner {
    /// Job `ji` of block `bi`, ready to run: as a task of the block
    /// (`tasks`), or boxed, for the block to run in its own task (`None`).
    /// Not async: the job's future is built here, so it takes no room in
    /// the block's.
    fn start_job_run(
        self: &Arc<Self>,
        tasks: Option<&mut JoinSet<()>>,
        (rec, bi, ji): (&Arc<WorkflowRecord>, usize, usize),
        unresolved: Option<String>,
        with: Option<Box<StartWith>>,
        (active, shared): (&Arc<Active>, &Arc<Mutex<BlockRun>>),
        permit: tokio::sync::OwnedSemaphorePermit,
    ) -> Option<InlineJob> {
        let span = tracing::debug_span!("job", block = bi, job = ji,
            name = %interlock_core::Escaped(&rec.req.blocks[bi].jobs[ji].name));
        let fut = self.clone().run_job(
            (rec.clone(), bi, ji),
            unresolved,
            with,
            (active.clone(), shared.clone()),
            permit,
        );
        // The span only when something takes it (traces are exported): a
        // disabled one still takes room in the future of every running job.
        match span.is_disabled() {
            true => place(tasks, fut),
            false => place(tasks, fut.instrument(span)),
        }
    }

    /// Runs block `bi`, committing `before` with its start. Returns how it
    /// went and the block's end, with the end of the job that ended last,
    /// which the caller commits with whatever comes next (nothing happens
    /// in between; none when the run can no longer record here).
    ///
    /// An `async` block for the reason `run` is one.
    #[expect(
        clippy::manual_async_fn,
        reason = "an async fn keeps its arguments twice in its future"
    )]
    pub(super) fn run_block(
        self: Arc<Self>,
        rec: &Arc<WorkflowRecord>,
        bi: usize,
        active: &Arc<Active>,
        mut before: Vec<Change>,
        unresolved: Option<Arc<HashMap<usize, String>>>,
    ) -> impl Future<Output = (BlockRun, Vec<Change>)> + Send {
        async move {
            let block = &rec.req.blocks[bi];
            // The block's own fields: a block change carries no jobs (the
            // store ignores them), and the jobs' records are in `rec`.
            let b = &rec.blocks[bi];
            let jobs = &b.jobs;
            let mut brec = BlockRecord {
                status: Status::Running,
                has_error: b.has_error,
                failures: b.failures,
                started: b.started.or(Some(self.opts.clock.now())),
                ended: b.ended,
                jobs: Vec::new(),
            };
            let failures = recorded_failures(b);
            let shared = Arc::new(Mutex::new(BlockRun {
                failures,
                has_error: failures > 0,
                halted: halt_reason(rec, bi),
                unended: jobs.iter().filter(|j| !j.status.is_terminal()).count(),
                ..BlockRun::default()
            }));
            let block_change = |brec: &BlockRecord| Change::Block {
                id: rec.id.clone(),
                block: bi,
                rec: brec.clone(),
            };
            before.push(block_change(&brec));
            // A block with nothing to commit before it (the first) records its
            // start with its first job's, one commit fewer, unless a limit may
            // hold that job back (the block would look not started meanwhile).
            let mut start = None;
            if before.len() == 1 && self.opts.concurrency.defs().is_empty() {
                start = Some(before);
            } else if !Box::pin(self.persist(active, before)).await {
                return (BlockRun::default(), Vec::new());
            }
            let sem = Arc::new(Semaphore::new(block.concurrency()));
            // Made with the first job that needs a task: a one-job block has none.
            let mut tasks: Option<JoinSet<()>> = None;
            let last = jobs.iter().rposition(|j| !j.status.is_terminal());
            let mut inline = None;
            for (ji, prior) in jobs.iter().enumerate() {
                if prior.status.is_terminal() {
                    continue;
                }
                // The waits for a permit and for a resume are boxed, and only
                // entered when there is something to wait for: their futures
                // would otherwise take room in the run's for as long as it runs.
                if active.token.is_cancelled() {
                    break;
                }
                let permit = match sem.clone().try_acquire_owned() {
                    Ok(p) => p,
                    Err(_) => {
                        let acquired = Box::pin(async {
                            tokio::select! {
                                biased;
                                _ = active.token.cancelled() => None,
                                p = sem.clone().acquire_owned() => Some(p.expect("semaphore never closed")),
                            }
                        });
                        match acquired.await {
                            Some(p) => p,
                            None => break,
                        }
                    }
                };
                // Finished jobs' tasks are freed as the block goes, not at its
                // end: a block of 20,000 jobs run 100 at a time would otherwise
                // hold 20,000 task allocations until its last job ends.
                if let Some(tasks) = tasks.as_mut() {
                    while tasks.try_join_next().is_some() {}
                }
                if active.paused.get() && !Box::pin(active.wait_unpaused()).await {
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
                // The block's start rides with this job's; the next job waits
                // until it is recorded, so no job shows Running in a block
                // that does not. Handed back unwritten if the job never starts.
                let (with, back) = match start.take() {
                    Some(changes) => {
                        let (tx, rx) = tokio::sync::oneshot::channel();
                        (Some(Box::new(StartWith { changes, back: tx })), Some(rx))
                    }
                    None => (None, None),
                };
                let why_unresolved = unresolved.as_ref().and_then(|u| u.get(&ji).cloned());
                // The block's last job to start runs in the workflow's task,
                // after this loop: the block only waits for its jobs from then
                // on, and a task of its own would cost a running one-job
                // workflow one more task. Nothing starts after it, so what it
                // hands back of the block's start is not waited for.
                let is_last = Some(ji) == last;
                let placed = self.start_job_run(
                    (!is_last).then(|| tasks.get_or_insert_with(JoinSet::new)),
                    (rec, bi, ji),
                    why_unresolved,
                    with,
                    (active, &shared),
                    permit,
                );
                if is_last {
                    inline = placed;
                    break;
                }
                if let Some(rx) = back {
                    start = rx.await.ok().flatten();
                }
            }
            // Never written (no job started): the block's end, which carries
            // its start time, says it all.
            drop(start);
            if let Some(job) = inline {
                job.await;
            }
            if let Some(mut tasks) = tasks {
                while tasks.join_next().await.is_some() {}
            }

            // Every job task has ended: the state is the block's alone now.
            let mut run = std::mem::take(&mut *shared.lock().expect("block lock"));
            let mut end = std::mem::take(&mut run.last_end);
            let status = match active.cause().map(|c| c.cut_status()) {
                // Unrecorded (shutdown, lease lost): leave the block as it was,
                // but a job that ended did end.
                Some(None) => {
                    Box::pin(self.record_ended(active, end)).await;
                    return (run, Vec::new());
                }
                // Held for an operator: the block resumes after ResolveJob.
                None if !run.held.is_empty() => return (run, end),
                Some(Some(cut)) if !run.has_error => cut,
                _ if run.has_error => Status::Failed,
                _ => Status::Completed,
            };
            brec.status = status;
            brec.failures = run.failures;
            brec.has_error = run.has_error;
            brec.ended = Some(self.opts.clock.now());
            end.push(block_change(&brec));
            (run, end)
        }
    }
}

/// A job's future as a task of its block (`tasks`), or boxed for the block
/// to run in its own task (`None`, handed back).
fn place(
    tasks: Option<&mut JoinSet<()>>,
    job: impl Future<Output = ()> + Send + 'static,
) -> Option<InlineJob> {
    match tasks {
        Some(tasks) => {
            tasks.spawn(job);
            None
        }
        // A panic ends the job alone, as it would a task of its own.
        None => Some(Box::pin(
            std::panic::AssertUnwindSafe(job).catch_unwind().map(drop),
        )),
    }
}
