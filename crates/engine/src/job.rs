//! What a job is, what it gets while running, and the seam between the
//! executor and whatever runs job attempts.
//!
//! The executor decides *what* runs and records every transition; a
//! [`JobRunner`] runs one attempt and reports back through the attempt's
//! [`JobCtx`] (checkpoints) and its result (outputs or an error). The
//! in-process runner is the [`Registry`](crate::Registry) of [`Job`]s; a
//! remote runner hands attempts to workers in other processes.

use async_trait::async_trait;
use interlock_core::{JobSchema, LogStream};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Key/value results a job reports; stored and shown in Status.
pub type Outputs = BTreeMap<String, String>;

/// A kind of work that runs in this process.
///
/// Implementations must honour `ctx.cancel` promptly: when it fires, stop and
/// return [`JobError::cancelled`]. Args have already been checked against
/// [`Job::schema`] (and [`Job::check`]) when `run` is called.
#[async_trait]
pub trait Job: Send + Sync + 'static {
    fn schema(&self) -> &JobSchema;

    async fn run(&self, ctx: &JobCtx, args: &interlock_core::Args) -> Result<Outputs, JobError>;

    /// Checks arguments against what the server knows now (the inventory,
    /// configured buckets) and against the rest of the request they are
    /// part of, at Submit and Validate. The schema's format checks have
    /// passed already. `Err` says what to fix.
    fn check(
        &self,
        _args: &interlock_core::Args,
        _req: &interlock_core::WorkReq,
    ) -> Result<(), String> {
        Ok(())
    }

    /// The bucket (and key) a run of this job takes a token from, if it
    /// takes one: what a dry run counts against the bucket's level.
    fn bucket_take(&self, _args: &interlock_core::Args) -> Option<(String, String)> {
        None
    }

    /// Whether running it again with these arguments is harmless (retries,
    /// re-running after a crash): the schema's idempotency, unless the
    /// arguments decide (an HTTP GET is, a POST is not).
    fn safe_to_repeat(&self, _args: &interlock_core::Args) -> bool {
        self.schema().idempotency == interlock_core::Idempotency::Safe
    }

    /// Stops whatever a run found in flight at recovery left behind in
    /// this machine (a process it started), before the job is re-run,
    /// reconciled or interrupted: a run the restarted server does not
    /// continue must not go on unsupervised. The context carries the
    /// run's checkpoint. Best effort; the default does nothing.
    async fn abandon(&self, _ctx: &JobCtx, _args: &interlock_core::Args) {}

    /// Ends what a run found in flight at recovery started elsewhere (on
    /// a target, through an API), when that run is not to go on: an
    /// emergency stop was found in force. What a live stop would have
    /// ended must not go on after a crash either. The context carries the
    /// run's checkpoint; called after [`Job::abandon`]. Best effort; the
    /// default does nothing.
    async fn halt(&self, _ctx: &JobCtx, _args: &interlock_core::Args) {}

    /// After a crash, finds out whether a run that was in flight had its
    /// effect. Only called for jobs whose schema says `reconcilable`; the
    /// context carries the checkpoint the run saved, if any.
    async fn reconcile(&self, _ctx: &JobCtx, _args: &interlock_core::Args) -> Reconciled {
        Reconciled::Unknown("this job cannot tell whether its effect happened".into())
    }
}

/// What reconciling an interrupted run found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reconciled {
    /// The effect happened: the job is complete with these outputs.
    Done(Outputs),
    /// The effect did not happen (or can be re-attached to): run the job
    /// again; it gets its checkpoint back.
    NotDone,
    /// Cannot tell: an operator must decide.
    Unknown(String),
}

/// Where a running attempt reports what it must not lose.
#[async_trait]
pub trait JobSink: Send + Sync {
    /// Durably records the job's checkpoint (fenced by the workflow's
    /// lease: a process that lost the workflow cannot write it).
    async fn checkpoint(&self, state: String) -> Result<(), JobError>;

    /// Whether this process still holds the workflow's lease, by its own
    /// clock. A job asks right before acting on the outside world, so a
    /// process that was paused past its lease (and may have been replaced)
    /// acts on nothing.
    fn holds_lease(&self) -> bool;

    /// The workflow lease the attempt runs under, when it runs in the
    /// server that owns the workflow (a remote runner fences its own
    /// writes with it).
    fn lease(&self) -> Option<interlock_store::Lease> {
        None
    }

    /// Records one log line of the attempt, without waiting (a line that
    /// cannot be kept up with is dropped).
    fn log(&self, _stream: LogStream, _text: &str) {}

    /// Resolves once the lines logged so far are recorded (or given up).
    async fn flush_logs(&self) {}
}

/// Where a job runs and how it is told to stop.
#[derive(Clone)]
pub struct JobCtx {
    pub workflow_id: String,
    pub workflow_name: String,
    pub block: usize,
    pub job: usize,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// Fires when the job must stop (cancel, emergency stop, fatal sibling,
    /// timeout, lost lease, shutdown). A job only waits on it: it may be
    /// the whole run's token, so cancelling it could stop the workflow.
    pub cancel: CancellationToken,
    /// Fires when the workflow stops here without being finished here: the
    /// server is shutting down or lost its lease. A job cancelled while this
    /// is set should detach from external work (it is re-attached by
    /// whichever process resumes the workflow) rather than abort it.
    pub detaching: CancellationToken,
    /// State saved by an earlier run of this job (see [`JobCtx::save_checkpoint`]).
    pub checkpoint: Option<String>,
    /// The W3C `traceparent` to hand on to whatever the job calls (a
    /// worker, an HTTP API), so the work joins the workflow's trace.
    pub traceparent: Option<String>,
    /// An operator decided, with ResolveJob, that the job runs again
    /// whatever an earlier run did: a job that would first find out
    /// whether an earlier run took effect (from its checkpoint) must not
    /// ask again.
    pub operator_retry: bool,
    pub(crate) sink: Option<Arc<dyn JobSink>>,
}

impl fmt::Debug for JobCtx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobCtx")
            .field("workflow_id", &self.workflow_id)
            .field("block", &self.block)
            .field("job", &self.job)
            .field("attempt", &self.attempt)
            .field("checkpoint", &self.checkpoint)
            .finish()
    }
}

impl JobCtx {
    /// A context for running a job outside the engine (tests, tools):
    /// checkpoints are kept nowhere.
    pub fn detached(workflow_id: &str, block: usize, job: usize) -> Self {
        Self {
            workflow_id: workflow_id.into(),
            workflow_name: String::new(),
            block,
            job,
            attempt: 1,
            cancel: CancellationToken::new(),
            detaching: CancellationToken::new(),
            checkpoint: None,
            traceparent: None,
            operator_retry: false,
            sink: None,
        }
    }

    /// A context whose checkpoints and lease answers come from `sink`: for
    /// running a job's code outside the server (a worker process), where
    /// the sink forwards checkpoints to the server.
    pub fn with_sink(mut self, sink: Arc<dyn JobSink>) -> Self {
        self.sink = Some(sink);
        self
    }

    /// False once this process may no longer act for the workflow (its
    /// lease lapsed): stop without touching anything outside.
    pub fn holds_lease(&self) -> bool {
        self.sink.as_ref().is_none_or(|s| s.holds_lease())
    }

    /// The workflow lease this attempt runs under (see [`JobSink::lease`]).
    pub fn lease(&self) -> Option<interlock_store::Lease> {
        self.sink.as_ref().and_then(|s| s.lease())
    }

    /// Adds a line to the attempt's log (shown by Watch, the Logs call
    /// and `interlock logs`). Never waits; one line per call (line ends
    /// inside are shown escaped).
    pub fn log(&self, text: impl AsRef<str>) {
        self.log_to(LogStream::Log, text);
    }

    /// [`JobCtx::log`] for a line of a command's stdout or stderr.
    pub fn log_to(&self, stream: LogStream, text: impl AsRef<str>) {
        if let Some(sink) = &self.sink {
            sink.log(stream, text.as_ref());
        }
    }

    /// Waits until the lines logged so far are recorded: the executor does
    /// this before it records the attempt's end.
    pub async fn flush_logs(&self) {
        if let Some(sink) = &self.sink {
            sink.flush_logs().await;
        }
    }

    /// Durably saves small state (e.g. an external request id) before the
    /// job acts on it. After a restart the job gets it back in
    /// `checkpoint`, so it can re-attach instead of redoing external work.
    pub async fn save_checkpoint(&self, state: impl Into<String>) -> Result<(), JobError> {
        match &self.sink {
            Some(sink) => sink.checkpoint(state.into()).await,
            None => Ok(()),
        }
    }
}

/// A failed job run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobError {
    pub message: String,
    /// Cancels the rest of the workflow at once.
    pub fatal: bool,
    /// Worth another attempt if the job's retry policy allows it.
    pub retryable: bool,
    /// Nobody can tell whether the attempt took effect (the worker running
    /// it was lost and the job is not safe to re-run): the job becomes
    /// Interrupted and the workflow waits for an operator's ResolveJob, as
    /// after a server crash.
    pub interrupted: bool,
}

impl JobError {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            fatal: false,
            retryable: false,
            interrupted: false,
        }
    }

    pub fn fatal(mut self, fatal: bool) -> Self {
        self.fatal = fatal;
        self
    }

    pub fn retryable(mut self) -> Self {
        self.retryable = true;
        self
    }

    /// The attempt's effect is unknown (see the `interrupted` field).
    pub fn interrupted(message: impl Into<String>) -> Self {
        Self {
            interrupted: true,
            ..Self::new(message)
        }
    }

    /// The job stopped because its context was cancelled.
    pub fn cancelled() -> Self {
        Self::new("cancelled")
    }
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// A traceparent in `trace_id`'s trace for job `job` of block `block` of
/// `workflow` (a span id derived from them), or none when `trace_id` is not
/// a W3C trace id.
pub fn traceparent_in(trace_id: &str, workflow: &str, block: usize, job: usize) -> Option<String> {
    let ok = trace_id.len() == 32
        && trace_id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && trace_id.bytes().any(|b| b != b'0');
    if !ok {
        return None;
    }
    // FNV-1a: the same span id from every build and process.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in format!("{workflow}/{block}/{job}").bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    Some(format!("00-{trace_id}-{:016x}-01", h.max(1)))
}

/// Sleeps for `d` unless `cancel` fires first.
pub async fn sleep_or_cancel(
    d: std::time::Duration,
    cancel: &CancellationToken,
) -> Result<(), JobError> {
    tokio::select! {
        _ = tokio::time::sleep(d) => Ok(()),
        _ = cancel.cancelled() => Err(JobError::cancelled()),
    }
}

/// Runs job attempts for the executor: the seam between deciding what runs
/// (the engine) and running it (in this process, or on a worker).
#[async_trait]
pub trait JobRunner: Send + Sync + 'static {
    /// The job types this runner can run, with their schemas.
    fn catalog(&self) -> &dyn interlock_core::Catalog;

    /// Checks a job of `req` against live state at Submit (after its
    /// schema's format checks passed).
    fn check(&self, req: &interlock_core::WorkReq, job: &interlock_core::Job)
    -> Result<(), String>;

    /// The bucket (and key) a run of `job` takes a token from, if any.
    fn bucket_take(&self, _job: &interlock_core::Job) -> Option<(String, String)> {
        None
    }

    /// Whether `job` may run again (a retry, a re-run after a crash);
    /// false for a type this runner does not know.
    fn safe_to_repeat(&self, job: &interlock_core::Job) -> bool {
        self.catalog()
            .schema(&job.name)
            .is_some_and(|s| s.idempotency == interlock_core::Idempotency::Safe)
    }

    /// Runs one attempt. A type this runner does not know fails the job
    /// (non-retryable): it must never count as done.
    async fn run(&self, ctx: &JobCtx, job: &interlock_core::Job) -> Result<Outputs, JobError>;

    /// After a crash: did the attempt that was in flight take effect?
    async fn reconcile(&self, ctx: &JobCtx, job: &interlock_core::Job) -> Reconciled;

    /// After a crash: stop what the attempt in flight left running here
    /// (see [`Job::abandon`]).
    async fn abandon(&self, _ctx: &JobCtx, _job: &interlock_core::Job) {}

    /// After a crash, under an emergency stop: end what the attempt in
    /// flight started elsewhere (see [`Job::halt`]).
    async fn halt(&self, _ctx: &JobCtx, _job: &interlock_core::Job) {}

    /// Jobs of workflow `id` whose attempt waits to be picked up (for a
    /// worker), as (block, job, what it waits for and since when).
    fn waiting(&self, _id: &str) -> Vec<(usize, usize, String)> {
        Vec::new()
    }
}
