//! Durable storage of workflows, their progress and bucket spends.
//!
//! [`Store`] is the only way the rest of Interlock persists anything. The
//! embedded implementation, [`SqliteStore`], keeps one SQLite file in WAL mode
//! with a single writer thread that commits queued writes in groups: many
//! concurrent callers share one fsync, so durability does not cap throughput.
//!
//! Invariants:
//! - A write's future resolves only after its transaction committed; callers
//!   make a state change visible only after that.
//! - [`Store::start`] is a compare-and-set: of any number of racing Exec
//!   calls for one workflow, exactly one sees [`StartOutcome::Started`].
//! - [`Store::submit`] stores a request and its idempotency key atomically.
//!
//! The trait is async and object-safe so a networked implementation (e.g.
//! PostgreSQL for multi-replica deployments) can follow without touching
//! callers; everything SQLite-specific stays in [`sqlite`].
#![forbid(unsafe_code)]

pub mod sqlite;

pub use sqlite::{SqliteOptions, SqliteStore, Synchronous};

use async_trait::async_trait;
use interlock_core::{BlockRecord, JobRecord, Micros, Status, WorkflowRecord};

/// Errors from a store. Every variant means the operation did not happen.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database failed (disk full, corruption, I/O). Callers should fail
    /// the request as unavailable and must not assume anything was written.
    #[error("store failure: {0}")]
    Backend(String),
    /// The store is shutting down; retry against the next instance.
    #[error("store is closed")]
    Closed,
    /// Stored data could not be decoded: a bug or a corrupted row.
    #[error("corrupt record {id}: {message}")]
    Corrupt { id: String, message: String },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Outcome of storing a new workflow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubmitOutcome {
    Inserted,
    /// The request_id was already used; the existing workflow and the content
    /// hash it was stored with.
    Existing {
        id: String,
        content_hash: String,
    },
}

/// Outcome of [`Store::start`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartOutcome {
    Started,
    NotFound,
    /// Already started (or finished): the current status.
    AlreadyStarted(Status),
}

/// One persisted state change.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Workflow {
        id: String,
        status: Status,
        reason: String,
        had_errors: bool,
        es_stopped: bool,
        ended: Option<Micros>,
    },
    /// Sets the workflow's had_errors flag (a job failed).
    WorkflowErrors { id: String },
    /// Status and reason only (pause, resume), leaving the other fields.
    WorkflowStatus {
        id: String,
        status: Status,
        reason: String,
    },
    /// Block-level fields only; job fields in `rec.jobs` are ignored.
    Block {
        id: String,
        block: usize,
        rec: BlockRecord,
    },
    /// Job fields except the checkpoint, which only [`Change::Checkpoint`] sets.
    Job {
        id: String,
        block: usize,
        job: usize,
        rec: JobRecord,
    },
    /// A running job's saved state.
    Checkpoint {
        id: String,
        block: usize,
        job: usize,
        state: String,
    },
}

/// One token taken from a bucket, and by whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Take {
    pub bucket: String,
    pub at: Micros,
    pub workflow_id: String,
    pub block: usize,
    pub job: usize,
}

/// Which workflows [`Store::list`] returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListFilter {
    pub name: Option<String>,
    pub statuses: Vec<Status>,
    /// Created at or after.
    pub created_from: Option<Micros>,
    /// Created before.
    pub created_to: Option<Micros>,
    /// Every (key, value) must match.
    pub labels: Vec<(String, String)>,
    /// Continue after this (created, id), exclusive; newest first.
    pub after: Option<(Micros, String)>,
    pub limit: usize,
}

/// One row of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub id: String,
    pub name: String,
    pub desc: String,
    pub status: Status,
    pub reason: String,
    pub had_errors: bool,
    pub created: Micros,
    pub started: Option<Micros>,
    pub ended: Option<Micros>,
    pub labels: std::collections::BTreeMap<String, String>,
    pub trace_id: String,
}

/// One audited call or event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditEntry {
    /// Assigned by the store, increasing.
    pub id: i64,
    pub at: Micros,
    /// Who: an authenticated identity, or `anonymous@<peer>`.
    pub identity: String,
    /// What: e.g. `submit`, `exec`, `cancel`, `estop.set`, `config.reload`.
    pub action: String,
    /// On what: a workflow id or name, a file, an e-stop entry.
    pub target: String,
    /// The caller's request id (x-request-id), or one minted for the call.
    pub request_id: String,
    /// `ok`, or the refusal's gRPC code.
    pub outcome: String,
    pub detail: String,
    /// The caller's network address (empty for the server's own entries).
    pub peer: String,
}

/// Durable storage for workflows. See the module docs for the invariants.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Stores a new workflow. With a non-empty `req.request_id`, returns
    /// [`SubmitOutcome::Existing`] instead if that key was already used.
    /// `audit`, if given, is appended in the same transaction (its target
    /// set to the workflow's id), so the log has an entry exactly when the
    /// submission happened. `rec.submitted_by` is stored with the row.
    async fn submit(
        &self,
        rec: &WorkflowRecord,
        content_hash: &str,
        audit: Option<AuditEntry>,
    ) -> Result<SubmitOutcome>;
    /// The workflow with this id, with every recorded change applied.
    async fn get(&self, id: &str) -> Result<Option<WorkflowRecord>>;
    /// Moves a NotStarted workflow to Running, once. `audit`, if given, is
    /// appended in the same transaction when the start happens, and its
    /// identity is recorded as the workflow's executor.
    async fn start(&self, id: &str, at: Micros, audit: Option<AuditEntry>) -> Result<StartOutcome>;
    /// Compare-and-set of a workflow's status: `from` → `to` with a reason
    /// (and `ended` when given). `AlreadyStarted(current)` when it was not
    /// in `from`.
    async fn transition(
        &self,
        id: &str,
        from: Status,
        to: Status,
        reason: &str,
        ended: Option<Micros>,
    ) -> Result<StartOutcome>;
    /// Applies changes atomically, in order.
    async fn write(&self, changes: Vec<Change>) -> Result<()>;
    /// Workflows that are neither finished nor unstarted (Running, Paused).
    async fn unfinished(&self) -> Result<Vec<WorkflowRecord>>;
    /// Records a bucket take; returns once durable.
    async fn record_take(&self, take: Take) -> Result<()>;
    /// Takes from `bucket` at or after `since`, oldest first.
    async fn takes_since(&self, bucket: &str, since: Micros) -> Result<Vec<Take>>;
    /// The take recorded for one job, if any (to reconcile after a crash).
    async fn take_of(&self, workflow_id: &str, block: usize, job: usize) -> Result<Option<Take>>;
    /// Forgets idempotency keys created before `before`; returns how many.
    async fn expire_request_ids(&self, before: Micros) -> Result<usize>;
    /// Workflows matching `filter`, newest first, at most `filter.limit`.
    async fn list(&self, filter: ListFilter) -> Result<Vec<Summary>>;
    /// Appends to the audit log; returns once durable.
    async fn audit(&self, entry: AuditEntry) -> Result<()>;
    /// Audit entries with id below `before` (all when `None`), newest first.
    async fn audit_log(&self, before: Option<i64>, limit: usize) -> Result<Vec<AuditEntry>>;
    /// Writes queued and not yet committed (for monitoring).
    fn queue_depth(&self) -> usize {
        0
    }
    /// Checks the store answers (reads the schema version); for health checks.
    async fn ping(&self) -> Result<()>;
}
