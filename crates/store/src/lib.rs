//! The storage contract: what Interlock needs from a database, without any
//! database in it.
//!
//! [`Store`] is the only way the rest of Interlock persists anything. Its
//! backends live in their own crates (`interlock-store-sqlite`, the embedded
//! default; `interlock-store-postgres` for several replicas) and must all
//! pass the one [`conformance`] suite. [`memory::MemStore`] is a complete
//! in-memory backend for tests and embedders; it passes the suite too.
//!
//! # The contract
//!
//! - **Commit before visible.** Every write resolves only after its
//!   transaction committed. Callers make a state change observable (answer
//!   an RPC, start the next job) only after that.
//! - **Atomic writes.** One [`Store::write`] applies all its changes or none.
//!   [`Store::submit`] stores a request, its idempotency key, any pre-set job
//!   records and its audit entry in one transaction.
//! - **Compare-and-set.** [`Store::acquire`] and [`Store::transition`] change
//!   a workflow's status only from the expected one: of any number of racing
//!   callers, exactly one succeeds.
//! - **Run ownership.** A running workflow is executed by one process, its
//!   *owner*: a registered [instance](InstanceInfo) whose heartbeat keeps it
//!   alive. Acquiring or claiming a workflow bumps its *epoch* and returns a
//!   [`Lease`]; every progress write carries the lease, and the store refuses
//!   it with [`StoreError::Fenced`] once the workflow's owner or epoch moved.
//!   An instance whose heartbeat lapsed is dead for good
//!   ([`StoreError::LeaseLost`] on its next heartbeat): it must stop what it
//!   runs and register again. Its running workflows are orphans that any
//!   live instance may [claim](Store::claim_orphans). A backend that can
//!   prove it has a single process (an exclusive lock on its file) declares
//!   every other instance dead when one registers.
//! - **Change feed.** Every committed transition (workflow, block, job) is
//!   published on [`Store::subscribe`] in commit order, whichever process
//!   wrote it. The feed is bounded: a subscriber that falls behind is told it
//!   lagged and must re-read what it follows. Log lines are announced, not
//!   carried ([`FeedItem::Logs`]): followers read them after their cursor.
//! - **Job logs.** Lines are appended under the workflow's lease, like any
//!   progress; each gets a `seq` that grows in commit order within its
//!   workflow, and an attempt keeps only its newest lines.
//! - **Atomic takes.** [`Store::take`] decides and records a bucket take in
//!   one transaction (GCRA on the stored theoretical arrival time), so any
//!   number of processes together never take more than the bucket allows.
//! - **Times.** Leases and heartbeats are compared on the store's clock;
//!   everything else records the times callers give.
//!
//! Why one file over 600 lines: it is the contract. The [`Store`] trait,
//! with what each call guarantees in its docs (a third of the file), and
//! the types its calls take and return read best beside each other; the
//! conformance suite and the in-memory backend are modules of their own.
#![forbid(unsafe_code)]

pub mod backend;
pub mod board;
pub mod conformance;
pub mod gcra;
pub mod memory;
pub mod slots;

use async_trait::async_trait;
use interlock_core::{
    Approval, AuditEntry, AuditQuery, BlockRecord, EsMode, Event, JobRecord, ListFilter, LogLine,
    LogQuery, Micros, Status, Summary, WorkflowRecord,
};
use std::time::Duration;

pub use backend::NewWorkflow;
pub use board::{BoardReport, BoardTask, OwnerAct, TaskKey};
pub use gcra::Gcra;
pub use slots::{Slot, SlotOutcome, SlotRequest, SlotRow};

/// Errors from a store. Every variant means the operation did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database failed (disk full, I/O, connection lost). Callers should
    /// retry later and must not assume anything was written.
    #[error("store failure: {0}")]
    Backend(String),
    /// The store is shutting down; retry against the next instance.
    #[error("store is closed")]
    Closed,
    /// Stored data could not be decoded: a bug or a corrupted row.
    #[error("corrupt record {id}: {message}")]
    Corrupt { id: String, message: String },
    /// The write carried a lease that is no longer the workflow's: another
    /// process owns it now. Stop running it here; record nothing more.
    #[error(
        "workflow {id} is no longer owned by this process (lease epoch {epoch} was superseded)"
    )]
    Fenced { id: String, epoch: i64 },
    /// This instance's heartbeat lapsed and it was declared dead: stop every
    /// workflow it runs and register again.
    #[error("instance {0} was declared dead (its heartbeat lapsed)")]
    LeaseLost(String),
}

impl StoreError {
    /// True when retrying the same operation later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Backend(_))
    }

    /// The refusal of a write under `lease`, which is no longer the
    /// workflow's.
    pub fn fenced(lease: &Lease) -> Self {
        StoreError::Fenced {
            id: lease.workflow_id.clone(),
            epoch: lease.epoch,
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

fn no_board() -> StoreError {
    StoreError::Backend(
        "this store keeps no task board (it is not shared between processes)".into(),
    )
}

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

/// The right to write a workflow's progress: its owner and epoch.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Lease {
    pub workflow_id: String,
    /// The owning instance's id.
    pub owner: String,
    pub epoch: i64,
}

/// Outcome of a compare-and-set on a workflow's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CasOutcome<T = ()> {
    Done(T),
    NotFound,
    /// The workflow was not in the expected status: its current one.
    WrongStatus(Status),
    /// A live instance other than the caller owns it.
    OwnedBy(String),
}

/// One persisted state change.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Workflow {
        id: String,
        status: Status,
        reason: String,
        had_errors: bool,
        /// The emergency control that ended it, if one did.
        es_halt: EsMode,
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
    /// The job gives up its limit slots (granted or waiting). A workflow's
    /// terminal status gives up all of its own in the same commit.
    ReleaseSlots {
        id: String,
        block: usize,
        job: usize,
    },
    /// Log lines of one job attempt, appended in order (their `seq` is
    /// ignored: the store assigns it). Afterwards the attempt keeps only
    /// its `keep` newest lines (by `n`); older ones are dropped.
    Log {
        id: String,
        block: usize,
        job: usize,
        attempt: u32,
        lines: Vec<LogLine>,
        keep: u32,
    },
}

impl Change {
    /// The workflow this change is about.
    pub fn workflow_id(&self) -> &str {
        match self {
            Change::Workflow { id, .. }
            | Change::WorkflowErrors { id }
            | Change::WorkflowStatus { id, .. }
            | Change::Block { id, .. }
            | Change::Job { id, .. }
            | Change::Checkpoint { id, .. }
            | Change::ReleaseSlots { id, .. }
            | Change::Log { id, .. } => id,
        }
    }

    /// The feed event this change publishes once committed at `at`, if any.
    pub fn event(&self, at: Micros) -> Option<Event> {
        let (workflow_id, block, job, status, message) = match self {
            Change::Workflow {
                id, status, reason, ..
            }
            | Change::WorkflowStatus { id, status, reason } => {
                (id, None, None, *status, reason.clone())
            }
            Change::Block { id, block, rec } => (id, Some(*block), None, rec.status, String::new()),
            Change::Job {
                id,
                block,
                job,
                rec,
            } => (id, Some(*block), Some(*job), rec.status, rec.error.clone()),
            Change::WorkflowErrors { .. }
            | Change::Checkpoint { .. }
            | Change::ReleaseSlots { .. }
            | Change::Log { .. } => return None,
        };
        Some(Event {
            workflow_id: workflow_id.clone(),
            at,
            block,
            job,
            status,
            message,
        })
    }

    /// What the change feed carries once this change is committed at `at`.
    pub fn feed_item(&self, at: Micros) -> Option<FeedItem> {
        match self {
            Change::Log { id, .. } => Some(FeedItem::Logs(id.clone())),
            c => c.event(at).map(FeedItem::Event),
        }
    }
}

/// The workflow-level event of a status change.
pub fn workflow_event(id: &str, at: Micros, status: Status, message: &str) -> Event {
    Event {
        workflow_id: id.to_string(),
        at,
        block: None,
        job: None,
        status,
        message: message.to_string(),
    }
}

/// A bucket take to decide and record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TakeRequest {
    pub bucket: String,
    /// The bucket's key for keyed buckets (e.g. a site); empty otherwise.
    pub key: String,
    pub rule: Gcra,
    pub at: Micros,
    pub workflow_id: String,
    pub block: usize,
    pub job: usize,
}

/// What a take decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TakeOutcome {
    Taken,
    /// No token: the next comes after this long.
    Empty {
        retry_after: Duration,
    },
}

/// One token taken from a bucket, and by whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Take {
    pub bucket: String,
    pub key: String,
    pub at: Micros,
    pub workflow_id: String,
    pub block: usize,
    pub job: usize,
}

/// A bucket's stored state: the theoretical arrival time of its next token
/// (GCRA) and the rule it was computed with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketState {
    pub bucket: String,
    pub key: String,
    pub tat: Micros,
    pub rule: Gcra,
}

/// What the change feed carries, in commit order.
#[derive(Debug, Clone, PartialEq)]
pub enum FeedItem {
    /// A committed transition.
    Event(Event),
    /// Items may have been lost (the feed's link to the database was
    /// reset): re-read whatever you follow.
    Resync,
    /// A process asks the owner of a workflow to act on it.
    Request(ControlRequest),
    /// The shared emergency stop changed: re-read it.
    Stops,
    /// Log lines of this workflow were recorded: read them after your
    /// cursor ([`Store::logs`]).
    Logs(String),
    /// A task on the board was posted or changed: re-read it
    /// ([`Store::board_task`]). `open` when it waits for a claim.
    Task {
        key: TaskKey,
        job_type: String,
        open: bool,
    },
}

/// What a process that does not run a workflow asks its owner to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    Cancel,
    Pause,
    Resume,
}

impl RequestKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestKind::Cancel => "cancel",
            RequestKind::Pause => "pause",
            RequestKind::Resume => "resume",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "cancel" => RequestKind::Cancel,
            "pause" => RequestKind::Pause,
            "resume" => RequestKind::Resume,
            _ => return None,
        })
    }
}

/// A request to a workflow's owner, kept until the owner acts on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlRequest {
    /// Assigned by the store.
    pub id: i64,
    pub workflow_id: String,
    pub kind: RequestKind,
    pub reason: String,
    pub at: Micros,
}

/// What is left of a workflow retention deleted: enough to answer "it
/// existed, and was pruned" instead of a bare NotFound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pruned {
    pub id: String,
    /// When it ended.
    pub ended: Micros,
    /// When it was deleted.
    pub pruned_at: Micros,
    /// The retention in force then, in days.
    pub kept_days: u32,
}

/// A notification waiting to be delivered to a webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// Assigned by the store (0 before it is queued).
    pub id: i64,
    /// What it is about, unique among queued notices (e.g.
    /// `workflow/<id>/Failed`); also sent as the delivery id.
    pub key: String,
    /// The webhook's name in notify.json.
    pub hook: String,
    /// The event kind, e.g. "workflow.failed".
    pub event: String,
    /// The JSON body to send.
    pub body: String,
    pub attempts: u32,
    pub next_at: Micros,
    pub created: Micros,
    pub last_error: String,
}

/// One entry of the emergency stop shared by every instance on the store
/// (beside each instance's own es.json; the stop in force is the union).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedStop {
    /// A workflow name, or "*" for every workflow.
    pub name: String,
    /// `Go` lifts the shared entry; the file may still halt the name.
    pub mode: EsMode,
    pub reason: String,
    /// Who set it (an identity) and when.
    pub by: String,
    pub at: Micros,
}

/// One revision of a workflow template. Revisions are never changed or
/// deleted: a template's history is its revisions, 1, 2, 3, ...
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TemplateRevision {
    pub name: String,
    /// Assigned by the store (ignored by [`Store::put_template`]).
    pub revision: u32,
    /// The template, as its layer stores it (opaque here).
    pub body: String,
    /// Identifies equal content: putting the latest revision's hash again
    /// adds nothing.
    pub content_hash: String,
    pub created_by: String,
    pub created_at: Micros,
}

/// Why a template is disabled, and by whom.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TemplateDisabled {
    pub by: String,
    pub reason: String,
    pub at: Micros,
}

/// A template revision and the state of its template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTemplate {
    pub revision: TemplateRevision,
    /// The template's newest revision.
    pub latest: u32,
    /// Set while the template may not be instantiated.
    pub disabled: Option<TemplateDisabled>,
}

/// What [`Store::put_template`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplatePut {
    /// A new revision with this number.
    Created(u32),
    /// The latest revision already has this content.
    Unchanged(u32),
}

/// A schedule and its firing state. The body is opaque here (the
/// schedule's layer reads it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScheduleRow {
    pub name: String,
    pub body: String,
    /// The workflow name its template produced when it was created (whose
    /// grants manage it).
    pub workflow: String,
    pub paused: bool,
    /// The next fire (`None`: none is left).
    pub next_fire: Option<Micros>,
    /// A fire claimed and not yet finished: its due time, who claimed it,
    /// and the time it instantiates for (`None`: it only records missed
    /// fires), so whoever finishes it does exactly that.
    pub firing_due: Option<Micros>,
    pub firing_by: String,
    pub firing_key: Option<Micros>,
    /// The last finished fire: its due time and what came of it; the
    /// workflow of the last fire that made one.
    pub last_due: Option<Micros>,
    pub last_outcome: String,
    pub last_workflow: String,
    pub created_by: String,
    pub created_at: Micros,
}

/// A site of the inventory kept in the store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InventorySite {
    pub name: String,
    /// `satellite` or `cluster`.
    pub kind: String,
    /// `decom`, `inService` or `removed`.
    pub status: String,
}

/// A machine of the inventory kept in the store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InventoryMachine {
    pub site: String,
    pub name: String,
}

/// The inventory kept in the store, with its version (bumped by every
/// change, so replicas notice one by reading a number).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredInventory {
    pub version: i64,
    /// Sites by name; machines by site, then name.
    pub sites: Vec<InventorySite>,
    pub machines: Vec<InventoryMachine>,
    pub updated_by: String,
    pub updated_at: Micros,
}

/// A server process registered with the store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstanceInfo {
    /// Unique per process start (an incarnation), e.g. a UUIDv7.
    pub id: String,
    pub pid: u32,
    pub host: String,
    /// The address it serves gRPC on.
    pub addr: String,
    pub version: String,
    pub started: Micros,
    /// Last successful heartbeat, on the store's clock.
    pub heartbeat: Micros,
    /// Dead after this (on the store's clock) unless renewed.
    pub expires: Micros,
    /// Running workflows it owns (filled by [`Store::instances`]).
    pub owned: usize,
}

/// What a short id matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdMatch {
    None,
    One(String),
    /// More than one workflow starts with the prefix (a few of them).
    Many(Vec<String>),
}

/// Durable storage for workflows. See the crate docs for the contract.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    // ---- workflows

    /// Stores a new workflow from its rows. With a non-empty
    /// `new.request_id`, returns [`SubmitOutcome::Existing`] instead if that
    /// key was already used. `new.carried` (job records carried over by a
    /// clone) is stored with it. `audit`, if given, is appended in the same
    /// transaction (its target set to the workflow's id).
    ///
    /// Rows, not a record: the caller can let go of the record (for a
    /// 50,000-job workflow, its request and a job record per job, 16 MB)
    /// before the database copies the request.
    async fn submit_rows(
        &self,
        new: NewWorkflow,
        content_hash: &str,
        audit: Option<AuditEntry>,
    ) -> Result<SubmitOutcome>;

    /// [`Store::submit_rows`] with the rows of `rec`; `rec.submitted_by` is
    /// stored with the row.
    async fn submit(
        &self,
        rec: &WorkflowRecord,
        content_hash: &str,
        audit: Option<AuditEntry>,
    ) -> Result<SubmitOutcome> {
        self.submit_rows(NewWorkflow::of(rec), content_hash, audit)
            .await
    }

    /// The workflow with this id, with every recorded change applied.
    async fn get(&self, id: &str) -> Result<Option<WorkflowRecord>>;

    /// The workflows whose id starts with `prefix` (at most a few).
    async fn resolve_id(&self, prefix: &str) -> Result<IdMatch>;

    /// Compare-and-set `from` → Running, taking ownership for `owner`: the
    /// epoch goes up and the lease is returned. Refused with
    /// [`CasOutcome::OwnedBy`] while another live instance owns the
    /// workflow. From NotStarted it records `at` as the start time and the
    /// audit identity as the executor. `audit`, if given, is appended in the
    /// same transaction when it succeeds. Publishes the Running event.
    async fn acquire(
        &self,
        id: &str,
        from: Status,
        owner: &str,
        at: Micros,
        audit: Option<AuditEntry>,
    ) -> Result<CasOutcome<Lease>>;

    /// Compare-and-set of a workflow nobody runs: `from` → `to` with a reason
    /// (and `ended` when given), plus `changes` in the same transaction.
    /// Refused with [`CasOutcome::OwnedBy`] while a live instance owns it.
    /// Publishes the events.
    async fn transition(
        &self,
        id: &str,
        from: Status,
        to: Status,
        reason: &str,
        ended: Option<Micros>,
        changes: Vec<Change>,
    ) -> Result<CasOutcome>;

    /// Applies changes atomically, in order, and publishes their events.
    /// With a lease, the write is refused ([`StoreError::Fenced`]) unless
    /// every change concerns the lease's workflow and the lease is still
    /// that workflow's. Without one, the caller must have won a
    /// compare-and-set that makes it the only writer. A change naming a
    /// workflow that does not exist fails the whole write.
    async fn write(&self, lease: Option<&Lease>, changes: Vec<Change>) -> Result<()>;

    /// Gives a workflow up: no owner, so any instance may act on it (a
    /// Paused workflow awaiting an operator). A workflow that reaches a
    /// terminal status (a `Change::Workflow` or a `transition` to it) has
    /// no owner from that commit on, without a release. Refused
    /// ([`StoreError::Fenced`]) if the lease moved.
    async fn release(&self, lease: &Lease) -> Result<()>;

    /// Running workflows without a live owner (none, or one whose heartbeat
    /// lapsed), at most `limit`, now owned by `owner` with a new epoch.
    /// Concurrent callers never get the same workflow.
    async fn claim_orphans(
        &self,
        owner: &str,
        limit: usize,
    ) -> Result<Vec<(WorkflowRecord, Lease)>>;

    /// Workflows matching `filter`, newest first, at most `filter.limit`.
    async fn list(&self, filter: ListFilter) -> Result<Vec<Summary>>;

    /// Forgets idempotency keys created before `before`; returns how many.
    async fn expire_request_ids(&self, before: Micros) -> Result<usize>;

    // ---- retention

    /// Deletes at most `limit` workflows with a terminal status that ended
    /// before `before`, oldest first (by end, or by creation then end, as the
    /// backend's indexes allow), with everything kept for them (blocks,
    /// jobs, labels, checkpoints, slots, approvals, requests), and leaves a
    /// [`Pruned`] tombstone per id, pruned at `now`, saying `kept_days`.
    /// Audit entries are not touched, nor are bucket takes (a bucket whose
    /// rule changes rebuilds its level from the takes in its window, whatever
    /// became of the workflows that took them). A workflow that is not terminal (running,
    /// paused, interrupted, waiting) is never deleted. One transaction per
    /// call, so a caller bounds how long it holds the writer with `limit`.
    /// Returns how many workflows it deleted.
    async fn prune_workflows(
        &self,
        before: Micros,
        now: Micros,
        kept_days: u32,
        limit: usize,
    ) -> Result<usize>;

    /// Deletes at most `limit` audit entries recorded before `before`
    /// (oldest first), and at most `limit` tombstones of workflows that
    /// ended before it (their audit entries are gone by then). Returns how
    /// many rows it deleted, entries and tombstones together.
    async fn prune_audit(&self, before: Micros, limit: usize) -> Result<usize>;

    /// The tombstone of a pruned workflow, if `id` was pruned.
    async fn pruned(&self, id: &str) -> Result<Option<Pruned>>;

    /// How much space the database takes, in bytes, where the backend can
    /// tell (for monitoring).
    async fn size_bytes(&self) -> Result<Option<u64>> {
        Ok(None)
    }

    // ---- instances

    /// Registers a starting process, alive for `ttl` unless renewed. The
    /// store fills in `heartbeat` and `expires`.
    async fn register_instance(&self, info: &InstanceInfo, ttl: Duration) -> Result<()>;

    /// Renews `id` for `ttl` more. [`StoreError::LeaseLost`] when it had
    /// already lapsed (or was removed): the caller must stop everything it
    /// runs and register again.
    async fn heartbeat(&self, id: &str, ttl: Duration) -> Result<()>;

    /// Marks `id` as gone now (a clean shutdown), so its orphans can be
    /// claimed without waiting for the heartbeat to lapse.
    async fn retire_instance(&self, id: &str) -> Result<()>;

    /// Instances whose heartbeat has not lapsed, with the number of running
    /// workflows each owns.
    async fn instances(&self) -> Result<Vec<InstanceInfo>>;

    // ---- buckets

    /// Decides a take by `req.rule` against the stored state and, if taken,
    /// records it and the new state in one transaction. If the stored state
    /// was computed with another rule, it is first recomputed from the
    /// recorded takes.
    async fn take(&self, req: TakeRequest) -> Result<TakeOutcome>;

    /// The stored states of `bucket` (one per key in use).
    async fn bucket_states(&self, bucket: &str) -> Result<Vec<BucketState>>;

    /// The take recorded for one job, if any (to reconcile after a crash).
    async fn take_of(&self, workflow_id: &str, block: usize, job: usize) -> Result<Option<Take>>;

    // ---- job logs

    /// A workflow's recorded log lines after `query.after`, oldest first
    /// (those of one job with `query.job`), at most `query.limit`. A
    /// workflow that does not exist (or was pruned) has none.
    async fn logs(&self, query: &LogQuery) -> Result<Vec<LogLine>>;

    // ---- approvals

    /// Records an approver's decision on a workflow, replacing that
    /// identity's earlier one. Fails if the workflow does not exist.
    async fn add_approval(&self, approval: &Approval) -> Result<()>;

    /// Decisions on a workflow, oldest first.
    async fn approvals(&self, workflow_id: &str) -> Result<Vec<Approval>>;

    // ---- backup

    /// Writes a consistent copy of the whole store to `dest`, a file that
    /// must not exist yet, while the store keeps serving; returns its size
    /// in bytes. A backend whose database has its own tools for this
    /// refuses, naming them.
    async fn backup(&self, dest: &std::path::Path) -> Result<u64> {
        Err(StoreError::Backend(format!(
            "this store cannot write a backup to {}",
            dest.display()
        )))
    }

    // ---- notifications

    /// Queues notifications; one whose `key` is already queued is ignored
    /// (replicas that see the same transition queue it once). Keeps at
    /// most `cap` queued, dropping the oldest; returns how many it dropped.
    async fn enqueue_notices(&self, notices: Vec<Notice>, cap: usize) -> Result<usize>;

    /// Queued notifications due at `now`, oldest first, at most `limit`.
    async fn due_notices(&self, now: Micros, limit: usize) -> Result<Vec<Notice>>;

    /// Removes a notification: delivered, or given up.
    async fn notice_done(&self, id: i64) -> Result<()>;

    /// Records a failed delivery: tried `attempts` times, next at `next_at`.
    async fn notice_failed(
        &self,
        id: i64,
        attempts: u32,
        next_at: Micros,
        error: &str,
    ) -> Result<()>;

    // ---- limits

    /// Decides a job's request for limit slots with [`slots::decide`] and
    /// records the answer (granted rows, or its place in the queues), in one
    /// transaction that serializes requests on the same partitions across
    /// processes. Refused ([`StoreError::Fenced`]) if the lease moved.
    async fn acquire_slots(&self, lease: &Lease, req: SlotRequest) -> Result<SlotOutcome>;

    /// Slot rows, of one workflow or of all, by limit, partition and job.
    async fn slots(&self, workflow_id: Option<&str>) -> Result<Vec<SlotRow>>;

    // ---- audit

    /// Appends to the audit log; returns once durable.
    async fn audit(&self, entry: AuditEntry) -> Result<()>;

    /// Audit entries matching `query`, newest first.
    async fn audit_log(&self, query: AuditQuery) -> Result<Vec<AuditEntry>>;

    // ---- templates

    /// Adds the next revision of `rev.name` (1 for a new name), unless its
    /// latest revision has the same `content_hash`. Concurrent puts of one
    /// name get distinct, consecutive revisions. A disabled template stays
    /// disabled.
    async fn put_template(&self, rev: TemplateRevision) -> Result<TemplatePut>;

    /// One revision of a template (its latest when `revision` is `None`).
    async fn template(&self, name: &str, revision: Option<u32>) -> Result<Option<StoredTemplate>>;

    /// Every template at its latest revision, by name.
    async fn templates(&self) -> Result<Vec<StoredTemplate>>;

    /// Every revision of a template, oldest first (empty if none).
    async fn template_revisions(&self, name: &str) -> Result<Vec<TemplateRevision>>;

    /// Disables a template (`Some`) or enables it again (`None`); `false`
    /// when no template has that name.
    async fn set_template_disabled(
        &self,
        name: &str,
        disabled: Option<TemplateDisabled>,
    ) -> Result<bool>;

    // ---- schedules

    /// Stores a new schedule; `false` when the name is taken.
    async fn create_schedule(&self, row: ScheduleRow) -> Result<bool>;

    /// Every schedule, by name.
    async fn schedules(&self) -> Result<Vec<ScheduleRow>>;

    async fn schedule(&self, name: &str) -> Result<Option<ScheduleRow>>;

    /// `false` when there is no such schedule.
    async fn delete_schedule(&self, name: &str) -> Result<bool>;

    /// Pauses or resumes a schedule, setting its next fire; `false` when
    /// there is no such schedule.
    async fn set_schedule_paused(
        &self,
        name: &str,
        paused: bool,
        next_fire: Option<Micros>,
    ) -> Result<bool>;

    /// Compare-and-set: claims the fire due at `due` for `by` if it is
    /// still the schedule's next fire, the schedule is not paused and no
    /// fire is in progress; moves the next fire to `next` and records
    /// `key` (the time the fire instantiates for; `None`: it only records
    /// missed fires). Of any number of callers (replicas), exactly one gets
    /// `true`.
    async fn claim_fire(
        &self,
        name: &str,
        due: Micros,
        next: Option<Micros>,
        by: &str,
        key: Option<Micros>,
    ) -> Result<bool>;

    /// Records the end of the fire claimed for `due`: its outcome and its
    /// workflow (empty for none: the last workflow recorded stays);
    /// `false` if that fire is not in progress.
    async fn finish_fire(
        &self,
        name: &str,
        due: Micros,
        outcome: &str,
        workflow: &str,
    ) -> Result<bool>;

    // ---- inventory

    /// Replaces the whole inventory in one transaction; returns its new
    /// version.
    async fn replace_inventory(
        &self,
        sites: Vec<InventorySite>,
        machines: Vec<InventoryMachine>,
        by: &str,
        at: Micros,
    ) -> Result<i64>;

    /// The inventory, or `None` when none was ever stored.
    async fn inventory(&self) -> Result<Option<StoredInventory>>;

    /// The inventory's version (`None`: none was ever stored).
    async fn inventory_version(&self) -> Result<Option<i64>>;

    /// Sets a site's status; the new version, or `None` when there is no
    /// such site (or no inventory).
    async fn set_site_status(
        &self,
        site: &str,
        status: &str,
        by: &str,
        at: Micros,
    ) -> Result<Option<i64>>;

    // ---- feed and health

    // ---- requests between instances, and the shared emergency stop

    /// Records a request to the owner of `workflow_id` and publishes it on
    /// the feed (the owner also finds it with [`Store::requests_for`]).
    async fn request(
        &self,
        workflow_id: &str,
        kind: RequestKind,
        reason: &str,
        at: Micros,
    ) -> Result<ControlRequest>;

    /// Pending requests for workflows `owner` runs, oldest first.
    async fn requests_for(&self, owner: &str) -> Result<Vec<ControlRequest>>;

    /// Removes a request once acted on (or found moot).
    async fn finish_request(&self, id: i64) -> Result<()>;

    /// Sets one shared e-stop entry (replacing the one of that name) and
    /// publishes [`FeedItem::Stops`].
    async fn set_stop(&self, entry: SharedStop) -> Result<()>;

    /// Every shared e-stop entry, by name.
    async fn stops(&self) -> Result<Vec<SharedStop>>;

    // ---- the task board (see [`board`]); only stores replicas share
    // keep one. A backend without one answers every call with
    // `StoreError::Backend`.

    /// True when several processes may run workflows on this store, so a
    /// remote job's attempt goes through the board (to whichever replica
    /// its worker is connected to).
    fn shares_tasks(&self) -> bool {
        false
    }

    /// Posts `task` (replacing any row of its job), under `lease`.
    async fn board_post(&self, _lease: &Lease, _task: BoardTask) -> Result<()> {
        Err(no_board())
    }

    /// Claims up to `limit` posted tasks of `types` for `replica`, oldest
    /// first, for `ttl` (on the store's clock); never a task another call
    /// claims meanwhile, nor one of a workflow that ended. Each claim's
    /// lease id is [`BoardTask::lease_for`] `lease_prefix`.
    async fn board_claim(
        &self,
        _replica: &str,
        _types: &[String],
        _limit: usize,
        _ttl: Duration,
        _lease_prefix: &str,
    ) -> Result<Vec<BoardTask>> {
        Err(no_board())
    }

    /// A worker re-attaches the task whose claim gave it `lease`: the
    /// claim moves to `replica` (a new claim number, for `ttl`) unless the
    /// task has a result or was taken back, or the claim lapsed (its owner
    /// decides it then): `None`. A cancelled task comes back as it is,
    /// claim unmoved, for its worker to be told to stop.
    async fn board_reattach(
        &self,
        _lease: &str,
        _replica: &str,
        _ttl: Duration,
    ) -> Result<Option<BoardTask>> {
        Err(no_board())
    }

    /// Extends the claims `replica` holds on `keys` by `ttl` from now.
    async fn board_renew(&self, _replica: &str, _keys: &[TaskKey], _ttl: Duration) -> Result<()> {
        Err(no_board())
    }

    /// A claimer's report for the task it holds under claim `claim`; false
    /// (and nothing recorded) when that claim is no longer the task's.
    async fn board_report(
        &self,
        _key: &TaskKey,
        _claim: i64,
        _report: BoardReport,
        _at: Micros,
    ) -> Result<bool> {
        Err(no_board())
    }

    /// An owner's act on a task of its workflow, under `lease`; the row as
    /// it is afterwards (none when removed or not there).
    async fn board_act(
        &self,
        _lease: &Lease,
        _key: &TaskKey,
        _act: OwnerAct,
    ) -> Result<Option<BoardTask>> {
        Err(no_board())
    }

    /// One task, if posted.
    async fn board_task(&self, _key: &TaskKey) -> Result<Option<BoardTask>> {
        Err(no_board())
    }

    // ---- feed and health

    /// Every committed transition (and request, and shared e-stop change)
    /// from now on, in commit order.
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<FeedItem>;

    /// Writes queued and not yet committed (for monitoring).
    fn queue_depth(&self) -> usize {
        0
    }

    /// Checks the store answers a read; for health checks.
    async fn ping(&self) -> Result<()>;

    /// True when the backend proves a single process uses the database (an
    /// exclusive lock): then no other instance can take a workflow over,
    /// and a lapsed heartbeat may simply be renewed.
    fn exclusive(&self) -> bool {
        false
    }

    /// Commits what is queued, then stops taking work and releases the
    /// database (its lock, for an exclusive backend). Later calls fail with
    /// [`StoreError::Closed`].
    async fn close(&self) {}
}
