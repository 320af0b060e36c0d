//! What a job is and what it gets while running.

use async_trait::async_trait;
use interlock_core::JobSchema;
use std::collections::BTreeMap;
use std::fmt;
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
}

/// Where a job runs and how it is told to stop.
#[derive(Debug, Clone)]
pub struct JobCtx {
    pub workflow_id: String,
    pub workflow_name: String,
    pub block: usize,
    pub job: usize,
    /// Fires when the job must stop (cancel, emergency stop, fatal sibling,
    /// timeout, shutdown).
    pub cancel: CancellationToken,
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
