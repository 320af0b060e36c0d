//! What a job is and what it gets while running.

use async_trait::async_trait;
use interlock_core::JobSchema;
use interlock_store::{Change, Store};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Key/value results a job reports; stored and shown in Status.
pub type Outputs = BTreeMap<String, String>;

/// A registered kind of work.
///
/// Implementations must honour `ctx.cancel` promptly: when it fires, stop and
/// return [`JobError::cancelled`]. Args have already been checked against
/// [`Job::schema`] when `run` is called.
#[async_trait]
pub trait Job: Send + Sync + 'static {
    fn schema(&self) -> &JobSchema;
    async fn run(&self, ctx: &JobCtx, args: &BTreeMap<String, String>)
    -> Result<Outputs, JobError>;

    /// After a crash, finds out whether a run that was in flight had its
    /// effect. Only called for jobs whose schema says `reconcilable`; the
    /// context carries the checkpoint the run saved, if any.
    async fn reconcile(&self, _ctx: &JobCtx, _args: &BTreeMap<String, String>) -> Reconciled {
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

/// Where a job runs and how it is told to stop.
#[derive(Clone)]
pub struct JobCtx {
    pub workflow_id: String,
    pub workflow_name: String,
    pub block: usize,
    pub job: usize,
    /// Fires when the job must stop (cancel, emergency stop, fatal sibling,
    /// timeout, shutdown).
    pub cancel: CancellationToken,
    /// Fires when the server is shutting down. A job cancelled while this
    /// is set should detach from external work (it will be re-attached after
    /// the restart) rather than abort it.
    pub detaching: CancellationToken,
    /// State saved by an earlier run of this job (see [`JobCtx::save_checkpoint`]).
    pub checkpoint: Option<String>,
    pub(crate) store: Option<Arc<dyn Store>>,
}

impl fmt::Debug for JobCtx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobCtx")
            .field("workflow_id", &self.workflow_id)
            .field("block", &self.block)
            .field("job", &self.job)
            .field("checkpoint", &self.checkpoint)
            .finish()
    }
}

impl JobCtx {
    /// A context for running a job outside the engine (tests, tools):
    /// checkpoints are kept only in memory.
    pub fn detached(workflow_id: &str, block: usize, job: usize) -> Self {
        Self {
            workflow_id: workflow_id.into(),
            workflow_name: String::new(),
            block,
            job,
            cancel: CancellationToken::new(),
            detaching: CancellationToken::new(),
            checkpoint: None,
            store: None,
        }
    }

    /// Durably saves small state (e.g. an external request id) before the
    /// job acts on it. After a restart the job gets it back in
    /// `checkpoint`, so it can re-attach instead of redoing external work.
    pub async fn save_checkpoint(&self, state: impl Into<String>) -> Result<(), JobError> {
        let state = state.into();
        if let Some(store) = &self.store {
            store
                .write(vec![Change::Checkpoint {
                    id: self.workflow_id.clone(),
                    block: self.block,
                    job: self.job,
                    state: state.clone(),
                }])
                .await
                .map_err(|e| JobError::new(format!("cannot save checkpoint: {e}")))?;
        }
        Ok(())
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
}

impl JobError {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            fatal: false,
            retryable: false,
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
