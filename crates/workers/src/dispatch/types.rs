//! What the dispatcher and a worker say to each other, and what operators
//! see of it: the messages, the errors, the views and the timing.

use interlock_engine::Outputs;
use std::time::{Duration, SystemTime};

/// What a worker is told.
#[derive(Debug, Clone, PartialEq)]
pub enum ToWorker {
    Task(TaskSpec),
    /// Stop the task under this lease: its attempt was cancelled, or (with
    /// `detach`) the server let go of it, so external work under way is to
    /// be re-attached by the next run, not undone.
    Cancel {
        lease_id: String,
        reason: String,
        detach: bool,
    },
}

/// One leased task, as the worker sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskSpec {
    pub lease_id: String,
    pub workflow_id: String,
    pub workflow_name: String,
    pub block: usize,
    pub job: usize,
    pub attempt: u32,
    pub job_type: String,
    pub args: interlock_core::Args,
    pub checkpoint: Option<String>,
    /// Find out whether an earlier run (on a lost worker) took effect,
    /// instead of running the job.
    pub reconcile: bool,
    /// How many times this attempt was handed out (1 for the first).
    pub dispatch: u32,
    /// The W3C traceparent the worker's work continues.
    pub traceparent: Option<String>,
}

/// How a worker says a task ended.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskResult {
    Done(Outputs),
    Failed {
        message: String,
        retryable: bool,
        fatal: bool,
    },
    /// Answer to a reconcile request: the effect did not happen; run it.
    NotDone,
    /// Answer to a reconcile request: cannot tell.
    Unknown(String),
}

/// Why a worker's call was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DispatchError {
    /// The request itself is wrong (no types, capacity 0).
    #[error("{0}")]
    Invalid(String),
    /// A type jobs.json does not declare.
    #[error("{0}")]
    Undeclared(String),
    /// jobs.json does not let this identity serve the type.
    #[error("{0}")]
    NotAllowed(String),
    #[error(
        "lease {0} is not held by this worker (the task was cancelled, finished, or handed to \
         another worker after this one was lost); its result is discarded"
    )]
    LeaseLost(String),
    #[error("{0}")]
    Checkpoint(String),
    /// The server is shutting down: the worker's next session (here or on
    /// another replica) takes the call.
    #[error("the server is shutting down; send it again on the next session")]
    Closing,
}

/// A session as shown to operators.
#[derive(Debug, Clone)]
pub struct SessionView {
    pub id: u64,
    pub identity: String,
    pub name: String,
    pub types: Vec<String>,
    pub capacity: usize,
    pub leased: usize,
    pub connected: SystemTime,
    pub idle_for: Duration,
}

/// A task no worker has taken yet.
#[derive(Debug, Clone)]
pub struct WaitingView {
    pub workflow_id: String,
    pub block: usize,
    pub job: usize,
    pub job_type: String,
    pub since: SystemTime,
}

/// Timing of sessions and leases.
#[derive(Debug, Clone, Copy)]
pub struct DispatchOpts {
    /// A session not heard from for this long is lost.
    pub lease_ttl: Duration,
    /// How often a worker should send a heartbeat (told to it at connect).
    pub heartbeat: Duration,
    /// How long a cancelled attempt waits for its worker to confirm.
    pub cancel_grace: Duration,
}

impl Default for DispatchOpts {
    fn default() -> Self {
        Self {
            lease_ttl: Duration::from_secs(10),
            heartbeat: Duration::from_secs(2),
            cancel_grace: Duration::from_secs(2),
        }
    }
}
