//! Submit, Exec and Status semantics, and the executor that runs workflows.
//! Operator actions on running workflows live in `lifecycle`; picking work
//! up after a restart lives in `recovery`.
//!
//! One tokio task runs each executing workflow: blocks strictly in order, and
//! within a block at most `rate_limit` jobs in flight, started in list order.
//! Each job runs in its own task holding a semaphore permit; it records its
//! result and updates the block's failure count *before* releasing the
//! permit, so the next job's start always sees every earlier verdict (a
//! failing pre-check with rate_limit 1 stops the jobs after it).
//!
//! Stopping: every executing workflow has an `Active` entry with a
//! cancellation token and a first-wins `Cause`. Cancel, the emergency stop,
//! a fatal job failure, the workflow deadline and shutdown all go through it.
//! The emergency-stop monitor walks the active set on every change of the
//! stop switch; Exec registers the entry *before* reading the switch, so a
//! flip can never slip between the two.

mod lifecycle;
mod recovery;

pub use lifecycle::CloneOptions;

use crate::estop::EsState;
use crate::gate::{Admission, Refusal};
use crate::job::{JobCtx, JobError};
use crate::registry::Registry;
use interlock_core::{
    Attempt, Catalog, Idempotency, JobRecord, Limits, Status, Violation, WorkReq, WorkflowRecord,
    describe_violations, now_micros, validate_structure,
};
use interlock_store::{AuditEntry, Change, StartOutcome, Store, StoreError, SubmitOutcome};
use rand::Rng;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

/// Engine settings.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Longest time between Submit and Exec (the ancestor's 1 h).
    pub exec_ttl: Duration,
    /// Size limits on requests.
    pub limits: Limits,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            exec_ttl: Duration::from_secs(3600),
            limits: Limits::default(),
        }
    }
}

/// Why an engine operation was refused. Each variant says what the caller
/// should do; the server maps each to one gRPC code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// Malformed request: fix every listed problem and resend.
    #[error("invalid request: {}", describe_violations(.0))]
    Invalid(Vec<Violation>),
    /// Policies refuse the request: change it as the violations say.
    #[error("refused by policy version {version}: {}", describe_violations(.violations))]
    Denied {
        version: String,
        violations: Vec<Violation>,
    },
    /// No admission decision is possible (e.g. no valid policy): fix the
    /// server's configuration.
    #[error("{0}")]
    NoDecision(String),
    /// No such workflow: check the id.
    #[error("no workflow with id {0:?}")]
    NotFound(String),
    /// The id is not a workflow id at all.
    #[error("{0:?} is not a workflow id (expected a UUID)")]
    BadId(String),
    /// Exec of a workflow that already started: use Status to follow it.
    #[error("workflow {id} was already started; it is {status}")]
    AlreadyStarted { id: String, status: Status },
    /// A request_id reused with different content: pick a new key.
    #[error(
        "request_id {key:?} was already used for workflow {id} with different content; \
         use a new request_id for a different request"
    )]
    KeyReused { key: String, id: String },
    /// Too long between Submit and Exec: submit again.
    #[error(
        "workflow {id} was submitted {}s ago, more than the {}s allowed before Exec; submit it again",
        .age.as_secs(), .ttl.as_secs()
    )]
    Stale {
        id: String,
        age: Duration,
        ttl: Duration,
    },
    /// The emergency stop is on for this workflow name: wait for "go".
    #[error("workflow {name:?} is emergency-stopped: {reason}")]
    EmergencyStopped { name: String, reason: String },
    /// The store failed: retry later.
    #[error("store unavailable: {0}")]
    Store(#[from] StoreError),
    /// The server is shutting down: retry against the next instance.
    #[error("the server is shutting down")]
    ShuttingDown,
    /// The workflow is not in a state that allows this: check Status.
    #[error("{0}")]
    WrongState(String),
    /// The block/job index does not exist in this workflow.
    #[error("workflow {id} has no job {job} in block {block}")]
    NoSuchJob {
        id: String,
        block: usize,
        job: usize,
    },
}

fn refused(r: Refusal) -> EngineError {
    match r {
        Refusal::Violations {
            version,
            violations,
        } => EngineError::Denied {
            version,
            violations,
        },
        Refusal::Unavailable(m) => EngineError::NoDecision(m),
    }
}

/// Why an executing workflow is stopping. The first cause wins.
#[derive(Debug, Clone, PartialEq)]
enum Cause {
    EmergencyStop(String),
    /// A Cancel request, with its reason.
    Cancelled(String),
    Fatal(String),
    Deadline(Duration),
    /// Server shutdown or a store failure: nothing more is recorded, so the
    /// record stays truthful ("was running") for the next start.
    Unrecorded(String),
}

impl Cause {
    /// Status for jobs and blocks cut short by this cause; `None` when
    /// nothing is to be recorded.
    fn cut_status(&self) -> Option<Status> {
        match self {
            Cause::EmergencyStop(_) => Some(Status::Stopped),
            Cause::Cancelled(_) => Some(Status::Cancelled),
            Cause::Fatal(_) | Cause::Deadline(_) => Some(Status::Cancelled),
            Cause::Unrecorded(_) => None,
        }
    }

    fn describe(&self) -> String {
        match self {
            Cause::EmergencyStop(r) => format!("emergency stop: {r}"),
            Cause::Cancelled(r) => format!("cancelled: {r}"),
            Cause::Fatal(r) => r.clone(),
            Cause::Deadline(d) => format!("workflow deadline of {}s exceeded", d.as_secs_f64()),
            Cause::Unrecorded(r) => r.clone(),
        }
    }
}

/// An executing workflow's stop handle.
struct Active {
    name: String,
    token: CancellationToken,
    cause: Mutex<Option<Cause>>,
    /// True while paused: no new job starts.
    paused: watch::Sender<bool>,
    /// Serializes Pause/Resume with the workflow's final write; `true` once
    /// the run is finishing (Pause is then refused).
    finishing: tokio::sync::Mutex<bool>,
    /// Set when the run has ended (its final state is recorded).
    done: watch::Sender<bool>,
}

impl Active {
    fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            token: CancellationToken::new(),
            cause: Mutex::new(None),
            paused: watch::Sender::new(false),
            finishing: tokio::sync::Mutex::new(false),
            done: watch::Sender::new(false),
        }
    }

    /// Records the cause (if first) and cancels running jobs.
    fn stop(&self, cause: Cause) {
        self.set_cause(cause);
        self.token.cancel();
    }

    /// Records the cause (if first) without cancelling: no new job starts,
    /// running ones finish.
    fn set_cause(&self, cause: Cause) {
        let mut c = self.cause.lock().expect("cause lock");
        if c.is_none() {
            *c = Some(cause);
        }
    }

    fn cause(&self) -> Option<Cause> {
        self.cause.lock().expect("cause lock").clone()
    }

    /// Waits while paused; returns false if the workflow was cancelled meanwhile.
    async fn wait_unpaused(&self) -> bool {
        let mut rx = self.paused.subscribe();
        tokio::select! {
            r = rx.wait_for(|p| !*p) => r.is_ok(),
            _ = self.token.cancelled() => false,
        }
    }
}

struct Inner {
    store: Arc<dyn Store>,
    registry: Arc<Registry>,
    admission: Arc<dyn Admission>,
    estop: watch::Receiver<Arc<EsState>>,
    opts: EngineOptions,
    active: Mutex<HashMap<String, Arc<Active>>>,
    draining: CancellationToken,
    tasks: TaskTracker,
    /// Every committed transition, for watchers. Bounded: a watcher that
    /// falls behind is told it lagged and resyncs from a snapshot; the
    /// executor never waits for watchers.
    events: tokio::sync::broadcast::Sender<Event>,
}

/// One committed transition of a workflow, its block, or one of its jobs.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub workflow_id: String,
    pub at: interlock_core::Micros,
    pub block: Option<usize>,
    pub job: Option<usize>,
    pub status: Status,
    /// Error or reason, if any.
    pub message: String,
}

impl Event {
    fn of(change: &Change, at: interlock_core::Micros) -> Option<Event> {
        let (workflow_id, block, job, status, message) = match change {
            Change::Workflow {
                id, status, reason, ..
            } => (id, None, None, *status, reason.clone()),
            Change::Block { id, block, rec } => (id, Some(*block), None, rec.status, String::new()),
            Change::Job {
                id,
                block,
                job,
                rec,
            } => (id, Some(*block), Some(*job), rec.status, rec.error.clone()),
            Change::WorkflowStatus { id, status, reason } => {
                (id, None, None, *status, reason.clone())
            }
            Change::WorkflowErrors { .. } | Change::Checkpoint { .. } => return None,
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
}

/// The engine. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl Engine {
    /// Creates the engine and starts its emergency-stop monitor. Must be
    /// called inside a tokio runtime.
    pub fn new(
        store: Arc<dyn Store>,
        registry: Arc<Registry>,
        admission: Arc<dyn Admission>,
        estop: watch::Receiver<Arc<EsState>>,
        opts: EngineOptions,
    ) -> Self {
        let inner = Arc::new(Inner {
            store,
            registry,
            admission,
            estop,
            opts,
            active: Mutex::new(HashMap::new()),
            draining: CancellationToken::new(),
            tasks: TaskTracker::new(),
            events: tokio::sync::broadcast::Sender::new(4096),
        });
        tokio::spawn(estop_monitor(Arc::downgrade(&inner), inner.estop.clone()));
        Self { inner }
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.inner.registry
    }

    /// Structural checks and admission, without side effects: every
    /// violation found, and the policy version consulted.
    pub fn validate(&self, req: &WorkReq) -> Result<String, EngineError> {
        let inner = &self.inner;
        let mut violations = validate_structure(
            req,
            inner.registry.as_ref() as &dyn Catalog,
            &inner.opts.limits,
        );
        match inner.admission.admit(req) {
            Ok(version) if violations.is_empty() => Ok(version),
            Ok(_) => Err(EngineError::Invalid(violations)),
            Err(Refusal::Violations {
                version,
                violations: policy,
            }) => {
                if violations.is_empty() {
                    Err(EngineError::Denied {
                        version,
                        violations: policy,
                    })
                } else {
                    // Report structure problems first; they usually explain
                    // the policy ones.
                    violations.extend(policy);
                    Err(EngineError::Invalid(violations))
                }
            }
            Err(r @ Refusal::Unavailable(_)) if violations.is_empty() => Err(refused(r)),
            Err(_) => Err(EngineError::Invalid(violations)),
        }
    }

    /// Validates, admits and stores a request; returns its id. `audit`, if
    /// given, is committed with the submission.
    pub async fn submit(
        &self,
        req: WorkReq,
        audit: Option<AuditEntry>,
    ) -> Result<String, EngineError> {
        let inner = &self.inner;
        if inner.draining.is_cancelled() {
            return Err(EngineError::ShuttingDown);
        }
        let version = self.validate(&req)?;
        if let Some(reason) = inner.estop.borrow().stopped(&req.name) {
            return Err(EngineError::EmergencyStopped {
                name: req.name.clone(),
                reason,
            });
        }
        let id = uuid::Uuid::now_v7().to_string();
        let hash = req.content_hash();
        let key = req.request_id.clone();
        let mut rec = WorkflowRecord::submitted(id.clone(), req, version, now_micros());
        // The audited caller is the submitter.
        rec.submitted_by = audit
            .as_ref()
            .map(|a| a.identity.clone())
            .unwrap_or_default();
        match inner.store.submit(&rec, &hash, audit).await? {
            SubmitOutcome::Inserted => {
                tracing::info!(workflow = %id, name = %rec.req.name, trace_id = %rec.req.trace_id, "submitted");
                Ok(id)
            }
            SubmitOutcome::Existing { id, content_hash } if content_hash == hash => Ok(id),
            SubmitOutcome::Existing { id, .. } => Err(EngineError::KeyReused { key, id }),
        }
    }

    /// The workflow's record as stored.
    pub async fn status(&self, id: &str) -> Result<WorkflowRecord, EngineError> {
        check_id(id)?;
        self.inner
            .store
            .get(id)
            .await?
            .ok_or_else(|| EngineError::NotFound(id.to_string()))
    }

    /// Starts a submitted workflow; returns once it is recorded as Running.
    /// `audit`, if given, is committed with the start.
    pub async fn exec(&self, id: &str, audit: Option<AuditEntry>) -> Result<(), EngineError> {
        let inner = &self.inner;
        if inner.draining.is_cancelled() {
            return Err(EngineError::ShuttingDown);
        }
        let mut rec = self.status(id).await?;
        if rec.status != Status::NotStarted {
            return Err(EngineError::AlreadyStarted {
                id: id.to_string(),
                status: rec.status,
            });
        }
        let now = now_micros();
        let age = Duration::from_micros((now - rec.created).max(0) as u64);
        if age > inner.opts.exec_ttl {
            return Err(EngineError::Stale {
                id: id.to_string(),
                age,
                ttl: inner.opts.exec_ttl,
            });
        }
        // Policies may have tightened since Submit: check against those in force now.
        let version = inner.admission.admit(&rec.req).map_err(refused)?;
        if version != rec.policy_version {
            tracing::info!(workflow = %id, submitted = %rec.policy_version, now = %version, "re-checked against newer policies");
        }
        let executed_by = audit
            .as_ref()
            .map(|a| a.identity.clone())
            .unwrap_or_default();
        let active = self.register(id, &rec.req.name)?;
        // Read the switch only after registering (see module docs).
        let stopped = inner.estop.borrow().stopped(&rec.req.name);
        let outcome = match stopped {
            Some(reason) => Err(EngineError::EmergencyStopped {
                name: rec.req.name.clone(),
                reason,
            }),
            None => match inner.store.start(id, now, audit).await {
                Ok(StartOutcome::Started) => Ok(()),
                Ok(StartOutcome::NotFound) => Err(EngineError::NotFound(id.to_string())),
                Ok(StartOutcome::AlreadyStarted(status)) => Err(EngineError::AlreadyStarted {
                    id: id.to_string(),
                    status,
                }),
                Err(e) => Err(e.into()),
            },
        };
        if let Err(e) = outcome {
            self.unregister(id);
            return Err(e);
        }
        rec.status = Status::Running;
        rec.started = Some(now);
        rec.executed_by = executed_by;
        let _ = inner.events.send(Event {
            workflow_id: id.to_string(),
            at: now,
            block: None,
            job: None,
            status: Status::Running,
            message: String::new(),
        });
        tracing::info!(workflow = %id, name = %rec.req.name, trace_id = %rec.req.trace_id, "executing");
        self.launch(rec, active);
        Ok(())
    }

    fn launch(&self, rec: WorkflowRecord, active: Arc<Active>) {
        let span = tracing::info_span!("workflow", id = %rec.id, name = %rec.req.name, trace_id = %rec.req.trace_id);
        let runner = self.inner.clone();
        self.inner
            .tasks
            .spawn(async move { runner.run(rec, active).await }.instrument(span));
    }

    /// Registers `id` as active, or says it already is.
    fn register(&self, id: &str, name: &str) -> Result<Arc<Active>, EngineError> {
        let mut map = self.inner.active.lock().expect("active lock");
        if map.contains_key(id) {
            return Err(EngineError::AlreadyStarted {
                id: id.to_string(),
                status: Status::Running,
            });
        }
        let a = Arc::new(Active::new(name));
        map.insert(id.to_string(), a.clone());
        Ok(a)
    }

    fn unregister(&self, id: &str) {
        self.inner.active.lock().expect("active lock").remove(id);
    }

    /// Stops starting jobs, lets running ones finish for up to `drain`, then
    /// cancels them. Records of interrupted work stay "Running": truthful,
    /// and what a later start needs to pick them up.
    pub async fn shutdown(&self, drain: Duration) {
        let inner = &self.inner;
        inner.draining.cancel();
        let actives: Vec<_> = inner
            .active
            .lock()
            .expect("active lock")
            .values()
            .cloned()
            .collect();
        for a in &actives {
            a.set_cause(Cause::Unrecorded("server shutting down".into()));
        }
        inner.tasks.close();
        if tokio::time::timeout(drain, inner.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                workflows = actives.len(),
                "drain deadline passed; cancelling running jobs"
            );
            for a in &actives {
                a.token.cancel();
            }
            let _ = tokio::time::timeout(Duration::from_secs(5), inner.tasks.wait()).await;
        }
    }

    /// Writes waiting for the store's writer (for monitoring).
    pub fn store_queue_depth(&self) -> usize {
        self.inner.store.queue_depth()
    }

    /// Number of workflows executing in this process.
    pub fn active_count(&self) -> usize {
        self.inner.active.lock().expect("active lock").len()
    }
}

/// An operator's decision about an interrupted job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// Run the job again.
    Retry,
    /// Count the job as done without running it.
    Skip,
    /// Cancel the whole workflow, with a reason.
    Cancel(String),
}

/// Records jobs that were in flight (Running or Interrupted) as `status`.
fn cut_in_flight(rec: &WorkflowRecord, status: Status, why: &str) -> Vec<Change> {
    let now = now_micros();
    let mut out = Vec::new();
    for (bi, b) in rec.blocks.iter().enumerate() {
        for (ji, j) in b.jobs.iter().enumerate() {
            if matches!(j.status, Status::Running | Status::Interrupted) {
                let mut j = j.clone();
                j.status = status;
                j.error = why.to_string();
                j.ended = Some(now);
                out.push(Change::Job {
                    id: rec.id.clone(),
                    block: bi,
                    job: ji,
                    rec: j,
                });
            }
        }
    }
    out
}

/// Ends a workflow that is not running here: its in-flight jobs and the
/// workflow itself are recorded as `status`.
fn end_unrun(rec: &WorkflowRecord, status: Status, job_why: &str, reason: String) -> Vec<Change> {
    let mut changes = cut_in_flight(rec, status, job_why);
    changes.push(Change::Workflow {
        id: rec.id.clone(),
        status,
        reason,
        had_errors: rec.had_errors,
        es_stopped: status == Status::Stopped,
        ended: Some(now_micros()),
    });
    changes
}

/// The reason block `bi` halts the workflow, judging from its record: more
/// failures than it tolerates, or a fatal failure.
fn halt_reason(rec: &WorkflowRecord, bi: usize) -> Option<String> {
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
fn recorded_failures(br: &interlock_core::BlockRecord) -> u32 {
    br.jobs
        .iter()
        .filter(|j| j.status == Status::Failed)
        .count() as u32
}

fn check_id(id: &str) -> Result<(), EngineError> {
    uuid::Uuid::parse_str(id)
        .map(|_| ())
        .map_err(|_| EngineError::BadId(id.chars().take(64).collect()))
}

async fn estop_monitor(inner: std::sync::Weak<Inner>, mut rx: watch::Receiver<Arc<EsState>>) {
    while rx.changed().await.is_ok() {
        let Some(inner) = inner.upgrade() else { return };
        let switch = rx.borrow_and_update().clone();
        let actives: Vec<_> = inner
            .active
            .lock()
            .expect("active lock")
            .values()
            .cloned()
            .collect();
        for a in actives {
            if let Some(reason) = switch.stopped(&a.name) {
                a.stop(Cause::EmergencyStop(reason));
            }
        }
    }
}

/// Mutable state of the block being run, shared with its job tasks.
struct BlockRun {
    failures: u32,
    has_error: bool,
    halted: Option<String>,
}

impl Inner {
    /// Persists `changes`; on failure stops the workflow without recording
    /// more (the store cannot be trusted to take it) and returns false.
    /// Commits `changes`, then tells watchers.
    async fn commit(&self, changes: Vec<Change>) -> Result<(), StoreError> {
        let events: Vec<_> = if self.events.receiver_count() > 0 {
            let now = now_micros();
            changes.iter().filter_map(|c| Event::of(c, now)).collect()
        } else {
            Vec::new()
        };
        self.store.write(changes).await?;
        for e in events {
            let _ = self.events.send(e);
        }
        Ok(())
    }

    async fn persist(&self, active: &Active, changes: Vec<Change>) -> bool {
        match self.commit(changes).await {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(error = %e, "cannot record workflow progress; stopping it");
                active.stop(Cause::Unrecorded(format!("store failure: {e}")));
                false
            }
        }
    }

    async fn run(self: Arc<Self>, rec: WorkflowRecord, active: Arc<Active>) {
        let id = rec.id.clone();
        let deadline = rec.req.deadline.map(|d| {
            let a = active.clone();
            let started = rec.started.unwrap_or_else(now_micros);
            let left =
                d.saturating_sub(Duration::from_micros((now_micros() - started).max(0) as u64));
            tokio::spawn(async move {
                tokio::time::sleep(left).await;
                a.stop(Cause::Deadline(d));
            })
        });
        let rec = Arc::new(rec);
        let mut halted = None;
        let mut had_errors = rec.had_errors;
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
            let run = self.clone().run_block(&rec, bi, &active).await;
            had_errors |= run.has_error;
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
                tracing::warn!(workflow = %id, %why, "workflow left unfinished");
                self.retire(&id, &active);
                return;
            }
            (Some(c @ Cause::EmergencyStop(_)), _) => (Status::Stopped, c.describe()),
            (Some(c @ Cause::Cancelled(_)), _) => (Status::Cancelled, c.describe()),
            (Some(c), _) => (Status::Failed, c.describe()),
            (None, Some(reason)) => (Status::Failed, reason),
            (None, None) => (Status::Completed, String::new()),
        };
        let es_stopped = status == Status::Stopped;
        // No Pause/Resume write may land after the final state.
        let mut finishing = active.finishing.lock().await;
        *finishing = true;
        let change = Change::Workflow {
            id: id.clone(),
            status,
            reason: reason.clone(),
            had_errors,
            es_stopped,
            ended: Some(now_micros()),
        };
        if self.persist(&active, vec![change]).await {
            metrics::counter!("interlock_workflows_finished_total", "status" => status.as_str())
                .increment(1);
            tracing::info!(workflow = %id, %status, %reason, "workflow ended");
        }
        drop(finishing);
        self.retire(&id, &active);
    }

    /// The run is over: forget it and wake whoever waits for its end.
    fn retire(&self, id: &str, active: &Active) {
        self.active.lock().expect("active lock").remove(id);
        active.done.send_replace(true);
    }

    async fn run_block(
        self: Arc<Self>,
        rec: &Arc<WorkflowRecord>,
        bi: usize,
        active: &Arc<Active>,
    ) -> BlockRun {
        let block = &rec.req.blocks[bi];
        let mut brec = rec.blocks[bi].clone();
        brec.status = Status::Running;
        brec.started = brec.started.or(Some(now_micros()));
        let failures = recorded_failures(&brec);
        let shared = Arc::new(Mutex::new(BlockRun {
            failures,
            has_error: failures > 0,
            halted: halt_reason(rec, bi),
        }));
        if !self
            .persist(
                active,
                vec![Change::Block {
                    id: rec.id.clone(),
                    block: bi,
                    rec: brec.clone(),
                }],
            )
            .await
        {
            return BlockRun {
                failures: 0,
                has_error: false,
                halted: None,
            };
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
            if active.cause().is_some() || shared.lock().expect("block lock").halted.is_some() {
                break;
            }
            if let Some(reason) = self.estop.borrow().stopped(&active.name) {
                active.stop(Cause::EmergencyStop(reason));
                break;
            }
            let (this, rec, active, shared) =
                (self.clone(), rec.clone(), active.clone(), shared.clone());
            let prior = brec.jobs[ji].clone();
            let span =
                tracing::info_span!("job", block = bi, job = ji, name = %block.jobs[ji].name);
            tasks.spawn(
                async move {
                    this.run_job(&rec, bi, ji, prior, &active, &shared).await;
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
            }
        };
        let status = match active.cause().map(|c| c.cut_status()) {
            Some(None) => return run, // unrecorded: leave the block as it was
            Some(Some(cut)) if !run.has_error => cut,
            _ if run.has_error => Status::Failed,
            _ => Status::Completed,
        };
        brec.status = status;
        brec.failures = run.failures;
        brec.has_error = run.has_error;
        brec.ended = Some(now_micros());
        self.persist(
            active,
            vec![Change::Block {
                id: rec.id.clone(),
                block: bi,
                rec: brec,
            }],
        )
        .await;
        run
    }

    async fn run_job(
        &self,
        rec: &WorkflowRecord,
        bi: usize,
        ji: usize,
        prior: JobRecord,
        active: &Active,
        shared: &Mutex<BlockRun>,
    ) {
        let spec = &rec.req.blocks[bi].jobs[ji];
        let Some(job) = self.registry.get(&spec.name).cloned() else {
            // Submit validated the name; a registry without it (a job
            // removed between restarts) fails the job, loudly.
            tracing::error!(job = %spec.name, "job no longer registered");
            return;
        };
        let key = |jr: JobRecord| Change::Job {
            id: rec.id.clone(),
            block: bi,
            job: ji,
            rec: jr,
        };
        // A pause or stop that landed after this task was spawned means the
        // job never starts: it stays NotStarted.
        if !active.wait_unpaused().await || active.token.is_cancelled() {
            return;
        }
        let mut jr = JobRecord {
            status: Status::Running,
            started: prior.started.or(Some(now_micros())),
            ..prior
        };
        if !self.persist(active, vec![key(jr.clone())]).await {
            return;
        }
        metrics::counter!("interlock_jobs_started_total", "job" => spec.name.clone()).increment(1);
        let idempotent = job.schema().idempotency == Idempotency::Safe;
        let max_attempts = spec.retry.as_ref().map_or(1, |r| r.max_attempts.max(1));
        let result = loop {
            if active.token.is_cancelled() {
                break Err(JobError::cancelled());
            }
            let number = jr.attempts.len() as u32 + 1;
            let started = now_micros();
            let ctx = JobCtx {
                workflow_id: rec.id.clone(),
                workflow_name: rec.req.name.clone(),
                block: bi,
                job: ji,
                cancel: active.token.child_token(),
                detaching: self.draining.clone(),
                checkpoint: jr.checkpoint.clone(),
                store: Some(self.store.clone()),
            };
            let run = job.run(&ctx, &spec.args);
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
            jr.attempts.push(Attempt {
                number,
                started,
                ended: Some(now_micros()),
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

        let now = now_micros();
        jr.ended = Some(now);
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
        self.persist(active, changes).await;
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
