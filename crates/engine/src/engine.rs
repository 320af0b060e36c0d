//! The engine's API in domain terms: Submit, Validate, Exec and Status, and
//! the one sequence that starts a run. Submodules:
//! - `active`: the stop handle of an executing workflow.
//! - `executor`: running a workflow's blocks in order, recording every
//!   transition.
//! - `block`: one block's jobs under its rate limit.
//! - `lifecycle`: Cancel, Pause, Resume, Clone, List and the event feed.
//! - `follow`: following one workflow (a snapshot, then its transitions).
//! - `logs`: job log lines, from running attempts to the store and back.
//! - `recovery`: resuming orphaned work (after a restart or a takeover) and
//!   ResolveJob.
//! - `instance`: this process's registration, heartbeat and takeovers.
//! - `peers`: requests to the instance that runs a workflow, and the
//!   emergency stop shared through the store.
//! - `retention`: pruning finished workflows and old audit entries.
//!
//! Invariants:
//! - Every path that starts a run (Exec, Resume of a paused workflow,
//!   ResolveJob, recovery) goes through `Engine::start_run` or recovery's
//!   equivalent: admission by the policies in force, registration in the
//!   active set, *then* the e-stop (so a flip can never slip between the
//!   two), then a compare-and-set in the store that makes this process the
//!   owner.
//! - A transition is committed (with the run's lease) before anything can
//!   observe it or act on it; a write refused because the lease moved stops
//!   the run here at once.
//!
//! Why one file over 600 lines: the engine's options and state, and the
//! calls that are no submodule's (Submit, Validate, Exec, Status and the
//! one sequence that starts a run), each with its contract in its docs;
//! splitting them would part each call from the sequence it shares.

mod active;
mod approvals;
mod dry_run;
pub use approvals::ApprovalTally;
pub use dry_run::{BucketNeed, DryRun};
mod block;
mod executor;
mod follow;
mod fresh;
mod inputs;
mod instance;
mod job_run;
mod job_start;
mod lifecycle;
mod logs;
pub use logs::LogPage;
mod limits;
pub use limits::{LimitUsage, PartUsage};
mod peers;
mod recovery;
mod retention;
pub use retention::{Retention, Swept};
mod schedules;
pub use schedules::{FireAuthorizer, SCHEDULE_LABEL, ScheduleView};
mod templates;
pub use templates::{
    Instantiate, Instantiated, RESERVED_LABEL_PREFIX, TEMPLATE_LABEL, TEMPLATE_REVISION_LABEL,
    TemplateApplied, TemplateView,
};

pub use follow::{Follower, Watched};
pub(crate) use lifecycle::clamp_page;
pub use lifecycle::{CloneOptions, Page};
pub use recovery::Resolution;

use crate::admission::{Admission, Refusal};
use crate::error::{EngineError, Result};
use crate::estop::EsState;
use crate::job::JobRunner;
use active::{Active, Cause};
use interlock_core::{
    AuditEntry, Catalog, Clock, EsMode, Limits, Status, Violation, WorkReq, WorkflowRecord,
    validate_structure,
};
use interlock_store::{CasOutcome, IdMatch, InstanceInfo, NewWorkflow, Store, SubmitOutcome};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

/// How long Pause and Resume wait for a run's start in progress (one
/// compare-and-set through the store's queue) before asking to try again.
const START_WAIT: Duration = Duration::from_secs(10);

/// What Submit lets a caller change in the new record before it is
/// stored; the record then has its job records.
type Prepare<'a> = Option<Box<dyn FnOnce(&mut WorkflowRecord) + Send + 'a>>;

/// Engine settings.
#[derive(Clone)]
pub struct EngineOptions {
    /// Longest time between Submit and Exec (the ancestor's 1 h).
    pub exec_ttl: Duration,
    /// Size limits on requests.
    pub limits: Limits,
    /// How long this process's ownership of its workflows lasts without a
    /// heartbeat; another instance may take them over after that.
    pub lease_ttl: Duration,
    /// How this process describes itself to the store (address, version).
    pub instance: InstanceInfo,
    /// Wall-clock time for everything recorded.
    pub clock: Arc<dyn Clock>,
    /// How long a Submit `request_id` is remembered.
    pub request_id_window: Duration,
    /// Blast-radius limits in force (from limits.json).
    pub concurrency: Arc<crate::ConcurrencyLimits>,
    /// How long finished workflows and audit entries are kept.
    pub retention: Retention,
    /// The token buckets, for dry runs to report levels.
    pub buckets: Option<Arc<crate::Buckets>>,
    /// The sites and machines templates check values against and fan out
    /// over (empty by default: every site value is refused).
    pub inventory: Arc<dyn interlock_templates::Inventory>,
    /// Asked at every schedule fire whether its creator may still run it
    /// (none: every creator may, for embedders without access rules).
    pub fire_authorizer: Option<Arc<dyn schedules::FireAuthorizer>>,
    /// Called with each run's `workflow` span, the workflow's id and its
    /// stored trace id before the run starts (the server puts the span in
    /// that trace, so a run resumed after a restart stays in it).
    pub workflow_span: Option<WorkflowSpanHook>,
    /// The W3C `traceparent` of the current span, when traces are exported
    /// (the server's telemetry); a job hands it on to a worker or an HTTP
    /// API. Without one, a job whose workflow has a trace id passes that
    /// trace on with a span id of its own.
    pub job_traceparent: Option<TraceparentHook>,
    /// Log lines each job attempt keeps (its newest); 0 keeps none.
    pub job_log_lines: u32,
}

/// See [`EngineOptions::workflow_span`].
pub type WorkflowSpanHook = Arc<dyn Fn(&tracing::Span, &str, &str) + Send + Sync>;
/// See [`EngineOptions::job_traceparent`].
pub type TraceparentHook = Arc<dyn Fn() -> Option<String> + Send + Sync>;

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            exec_ttl: Duration::from_secs(3600),
            limits: Limits::default(),
            lease_ttl: Duration::from_secs(10),
            instance: InstanceInfo::default(),
            clock: interlock_core::clock::system(),
            request_id_window: Duration::from_secs(24 * 3600),
            concurrency: Arc::default(),
            retention: Retention::default(),
            buckets: None,
            inventory: Arc::new(NoInventory),
            fire_authorizer: None,
            workflow_span: None,
            job_traceparent: None,
            job_log_lines: 1_000,
        }
    }
}

/// An inventory with nothing in it.
struct NoInventory;

impl interlock_templates::Inventory for NoInventory {
    fn site_exists(&self, _: &str) -> bool {
        false
    }
    fn machine_exists(&self, _: &str) -> bool {
        false
    }
    fn machines_of(&self, _: &str) -> Option<Vec<String>> {
        None
    }
    fn site_names(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Every reason Submit would refuse a request now, found without side
/// effects.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// The policy set consulted (empty when none is loaded).
    pub policy_version: String,
    /// Malformed requests, whatever the server's state.
    pub invalid: Vec<Violation>,
    /// Refusals given the server's state now: arguments it cannot act on
    /// (a machine not at its site, a bucket not configured) and policy
    /// violations.
    pub denied: Vec<Violation>,
    /// No policy decision was possible (no valid policy file).
    pub no_decision: Option<String>,
    /// The emergency stop's reason, when the name is stopped.
    pub stopped: Option<String>,
}

impl Verdict {
    pub fn ok(&self) -> bool {
        self.invalid.is_empty()
            && self.denied.is_empty()
            && self.no_decision.is_none()
            && self.stopped.is_none()
    }

    /// Every violation, in the order Submit reports them.
    pub fn violations(&self) -> Vec<Violation> {
        let mut v = self.invalid.clone();
        if let Some(m) = &self.no_decision {
            v.push(Violation::new("admission", m.clone()));
        }
        v.extend(self.denied.iter().cloned());
        if let Some(r) = &self.stopped {
            v.push(Violation::new("emergencyStop", r.clone()));
        }
        v
    }

    /// The error Submit answers with, if any.
    fn into_error(self, name: &str) -> Option<EngineError> {
        if !self.invalid.is_empty() {
            // Structure first: it usually explains the policy violations.
            let mut v = self.invalid;
            v.extend(self.denied);
            return Some(EngineError::Invalid(v));
        }
        if let Some(m) = self.no_decision {
            return Some(EngineError::NoDecision(m));
        }
        if !self.denied.is_empty() {
            return Some(EngineError::Denied {
                version: self.policy_version,
                violations: self.denied,
            });
        }
        self.stopped.map(|reason| EngineError::EmergencyStopped {
            name: name.to_string(),
            reason,
        })
    }
}

/// Keyed takes name their work: the key of each take from a keyed bucket
/// must be the value of the bucket's key argument in every other job of
/// the request that carries it, and at least one must (else the key
/// guards nothing). Values are collected once per key argument, so the
/// cost is linear in the request.
fn keyed_takes(req: &WorkReq, runner: &dyn JobRunner, buckets: &crate::Buckets) -> Vec<Violation> {
    let jobs = || {
        req.blocks
            .iter()
            .enumerate()
            .flat_map(|(bi, b)| b.jobs.iter().enumerate().map(move |(ji, j)| (bi, ji, j)))
    };
    let takes: Vec<_> = jobs()
        .filter_map(|(bi, ji, j)| runner.bucket_take(j).map(|t| (bi, ji, t)))
        .collect();
    let mut values: HashMap<String, Vec<(usize, usize, &str, &str)>> = HashMap::new();
    let mut out = Vec::new();
    for (bi, ji, (bucket, key)) in takes {
        let Some(key_arg) = buckets.def(&bucket).and_then(|d| d.key_arg) else {
            continue;
        };
        if key.is_empty() {
            continue; // the job's own check names the missing key
        }
        // The takes themselves are not the work (a take's own arguments
        // never vouch for its key).
        let carriers = values.entry(key_arg.clone()).or_insert_with(|| {
            jobs()
                .filter(|(_, _, j)| runner.bucket_take(j).is_none())
                .filter_map(|(b, i, j)| {
                    j.args
                        .get(&key_arg)
                        .map(|v| (b, i, j.name.as_str(), v.as_str()))
                })
                .collect()
        });
        let at = |m: String| Violation::new("arguments", m).at_job(bi, ji);
        match carriers.iter().find(|c| c.3 != key) {
            Some((b, i, name, val)) => out.push(at(format!(
                "key {key:?} of bucket {bucket:?} does not match block {b} job {i} ({name}), \
                 whose {key_arg} is {val:?}; a keyed take must be for the {key_arg} the \
                 workflow works on"
            ))),
            None if carriers.is_empty() => out.push(at(format!(
                "bucket {bucket:?} is keyed by argument {key_arg:?}, but no job of this \
                 workflow has one, so key {key:?} guards nothing; key the bucket by an \
                 argument the work carries"
            ))),
            None => {}
        }
    }
    out
}

pub(crate) fn refused(r: Refusal) -> EngineError {
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

/// Health of the engine's link to the store, for health checks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreHealth {
    /// Why the last write failed, while writes fail.
    pub write_error: Option<String>,
    /// Why this process may not run workflows now (lease lost or lapsed).
    pub lease_error: Option<String>,
}

struct Inner {
    store: Arc<dyn Store>,
    runner: Arc<dyn JobRunner>,
    admission: Arc<dyn Admission>,
    /// This instance's es.json, as the live config publishes it.
    file_estop: watch::Receiver<Arc<EsState>>,
    /// The state in force: es.json united with the shared stops.
    estop_tx: watch::Sender<Arc<EsState>>,
    estop: watch::Receiver<Arc<EsState>>,
    shared_stops: Mutex<Vec<interlock_store::SharedStop>>,
    opts: EngineOptions,
    /// The runs executing here, by id. Ordered: ids are time-ordered and
    /// rows lie in submission order, so a walk of this map that ends runs
    /// (the e-stop) sends their final writes to the store about in the
    /// order of their rows, and a mass stop's group commits touch
    /// neighbouring pages, not pages all over every table and index (in a
    /// hash map's order, 100,000 runs took 14 s to stop instead of 3.5).
    active: Mutex<BTreeMap<String, Arc<Active>>>,
    draining: CancellationToken,
    tasks: TaskTracker,
    instance: Arc<instance::Instance>,
    health: Mutex<StoreHealth>,
    /// (id, name) of each workflow submitted AwaitingApproval, for
    /// whoever tells approvers (the notifier).
    approval_requests: tokio::sync::broadcast::Sender<(String, String)>,
    logs: logs::Shipper,
    /// Records just submitted here, for the Exec that follows.
    fresh: fresh::Fresh,
}

/// The engine. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl Engine {
    /// Creates the engine and starts its emergency-stop tasks. Nothing is
    /// written until [`Engine::start`]. Must be called inside a tokio
    /// runtime.
    pub fn new(
        store: Arc<dyn Store>,
        runner: Arc<dyn JobRunner>,
        admission: Arc<dyn Admission>,
        estop: watch::Receiver<Arc<EsState>>,
        opts: EngineOptions,
    ) -> Self {
        let instance = Arc::new(instance::Instance::new(&opts.instance, !store.exclusive()));
        let fresh = fresh::Fresh::for_store(store.exclusive());
        let (estop_tx, merged) = watch::channel(estop.borrow().clone());
        let logs = logs::Shipper::start(store.clone(), opts.job_log_lines);
        let inner = Arc::new(Inner {
            logs,
            store,
            runner,
            admission,
            file_estop: estop.clone(),
            estop_tx,
            estop: merged,
            shared_stops: Mutex::new(Vec::new()),
            opts,
            active: Mutex::new(BTreeMap::new()),
            draining: CancellationToken::new(),
            tasks: TaskTracker::new(),
            instance,
            health: Mutex::new(StoreHealth::default()),
            approval_requests: tokio::sync::broadcast::Sender::new(1024),
            fresh,
        });
        let engine = Self { inner };
        engine.spawn_peer_tasks(estop);
        engine
    }

    /// The job types this server can run.
    pub fn catalog(&self) -> &dyn Catalog {
        self.inner.runner.catalog()
    }

    fn now(&self) -> interlock_core::Micros {
        self.inner.opts.clock.now()
    }

    /// Every check Submit makes, without side effects: structure and
    /// limits, each job's arguments against live state (inventory, bucket
    /// names), the policies in force, and the emergency stop.
    pub fn check(&self, req: &WorkReq) -> Verdict {
        self.verdict(req, false)
    }

    /// [`Engine::check`]; `trusted` for a request the server built (a clone,
    /// an instantiation), which may carry the server's own labels.
    fn verdict(&self, req: &WorkReq, trusted: bool) -> Verdict {
        let inner = &self.inner;
        let mut v = Verdict {
            invalid: validate_structure(req, self.catalog(), &inner.opts.limits),
            ..Verdict::default()
        };
        if !trusted {
            v.invalid
                .extend(templates::reserved_labels(req.labels.keys()));
        }
        // Only jobs that passed their schema: one problem, one message.
        // (A set, so the cost stays linear in jobs plus violations.)
        let flagged: std::collections::HashSet<(usize, usize)> = v
            .invalid
            .iter()
            .filter_map(|x| Some((x.block?, x.job?)))
            .collect();
        for (bi, block) in req.blocks.iter().enumerate() {
            for (ji, job) in block.jobs.iter().enumerate() {
                // A job with inputs is checked when they are known, at its
                // start: its arguments are not all here yet.
                if !flagged.contains(&(bi, ji))
                    && job.inputs.is_empty()
                    && let Err(m) = inner.runner.check(req, job)
                {
                    v.denied.push(Violation::new("arguments", m).at_job(bi, ji));
                }
            }
        }
        if let Some(buckets) = &inner.opts.buckets {
            v.denied
                .extend(keyed_takes(req, inner.runner.as_ref(), buckets));
        }
        match inner.admission.admit(req, self.now()) {
            Ok(version) => v.policy_version = version,
            Err(Refusal::Violations {
                version,
                violations,
            }) => {
                v.policy_version = version;
                v.denied.extend(violations);
            }
            Err(Refusal::Unavailable(m)) => v.no_decision = Some(m),
        }
        v.stopped = inner.estop.borrow().stopped(&req.name);
        v
    }

    /// Checks, admits and stores a request; returns its id. `audit`, if
    /// given, is committed with the submission.
    pub async fn submit(&self, req: WorkReq, audit: Option<AuditEntry>) -> Result<String> {
        self.submit_record(req, audit, false, None).await
    }

    /// Submit, with `prepare` adjusting the new record before it is stored
    /// (Clone carries completed jobs over); `trusted` as for `verdict`.
    async fn submit_record(
        &self,
        req: WorkReq,
        audit: Option<AuditEntry>,
        trusted: bool,
        prepare: Prepare<'_>,
    ) -> Result<String> {
        let inner = &self.inner;
        if inner.draining.is_cancelled() {
            return Err(EngineError::ShuttingDown);
        }
        // Debug spans: free unless a trace exporter asks for them.
        let verdict = tracing::debug_span!("admission").in_scope(|| self.verdict(&req, trusted));
        let version = verdict.policy_version.clone();
        if let Some(e) = verdict.into_error(&req.name) {
            return Err(e);
        }
        let id = uuid::Uuid::now_v7().to_string();
        let hash = req.content_hash();
        let key = req.request_id.clone();
        // Its job records are made only for whoever needs them (`prepare`,
        // `keep`): the rows stored hold none.
        let mut rec = WorkflowRecord::submitted_bare(id.clone(), req, version, self.now());
        // The audited caller is the submitter.
        rec.submitted_by = audit
            .as_ref()
            .map(|a| a.identity.clone())
            .unwrap_or_default();
        if let Some(prepare) = prepare {
            rec.fill_blocks();
            prepare(&mut rec);
        }
        if !inner.admission.approvals(&rec.req).is_empty() {
            rec.status = Status::AwaitingApproval;
        }
        let rows = NewWorkflow::of(&rec);
        let (status, name, trace_id) = (rec.status, rec.req.name.clone(), rec.req.trace_id.clone());
        // Kept for the Exec that usually follows (see fresh.rs for how
        // many). A large record is not kept: it goes now, before the
        // database copies its request (16 MB of a 50,000-job workflow's
        // record, beside 2.2 MB of rows).
        let kept = inner.fresh.wants(&rec).then(|| {
            rec.fill_blocks();
            rec
        });
        // The trace names the workflow its Submit made (its events below
        // are not exported). The span is open from the call to its answer
        // but never entered: each enter and exit is a lookup in every layer,
        // on every Submit, and the store opens no spans of its own (what it
        // logs has the call's span as its context).
        let span = tracing::debug_span!("store.submit", workflow = %id);
        let stored = inner.store.submit_rows(rows, &hash, audit).await;
        drop(span);
        match stored? {
            SubmitOutcome::Inserted => {
                // Debug, not info: a line per Submit costs a formatted write
                // at thousands a second, and the audit log records each one.
                tracing::debug!(workflow = %id, name = %interlock_core::Escaped(&name),
                    trace_id = %trace_id, "submitted");
                if status == Status::AwaitingApproval {
                    let _ = inner.approval_requests.send((id.clone(), name));
                }
                if let Some(rec) = kept {
                    inner.fresh.keep(rec);
                }
                Ok(id)
            }
            SubmitOutcome::Existing { id, content_hash } if content_hash == hash => Ok(id),
            SubmitOutcome::Existing { id, .. } => Err(EngineError::KeyReused { key, id }),
        }
    }

    /// The full id a workflow id or unique prefix (8+ characters) names.
    pub async fn resolve_id(&self, id: &str) -> Result<String> {
        if uuid::Uuid::parse_str(id).is_ok() {
            return Ok(id.to_string());
        }
        let prefix_like = id.len() >= 8
            && id.len() < 36
            && id
                .chars()
                .all(|c| (c.is_ascii_hexdigit() && !c.is_ascii_uppercase()) || c == '-');
        if !prefix_like {
            return Err(EngineError::BadId(id.chars().take(64).collect()));
        }
        match self.inner.store.resolve_id(id).await? {
            IdMatch::One(full) => Ok(full),
            IdMatch::None => Err(EngineError::NotFound(id.to_string())),
            IdMatch::Many(matches) => Err(EngineError::AmbiguousId {
                prefix: id.to_string(),
                matches,
            }),
        }
    }

    /// The workflow's record as stored.
    pub async fn status(&self, id: &str) -> Result<WorkflowRecord> {
        let id = self.resolve_id(id).await?;
        let rec = self.inner.store.get(&id).await?;
        let Some(mut rec) = rec else {
            return Err(self.missing(id).await);
        };
        if rec.status == Status::Running && !self.inner.opts.concurrency.defs().is_empty() {
            self.show_waits(&mut rec).await?;
        }
        if rec.status == Status::Running {
            for (bi, ji, why) in self.inner.runner.waiting(&rec.id) {
                if let Some(j) = rec.blocks.get_mut(bi).and_then(|b| b.jobs.get_mut(ji))
                    && j.waiting.is_none()
                {
                    j.waiting = Some(why);
                }
            }
        }
        self.load_approvals(&mut rec).await?;
        Ok(rec)
    }

    /// Starts a submitted workflow; returns once it is recorded as Running.
    /// `audit`, if given, is committed with the start.
    pub async fn exec(&self, id: &str, audit: Option<AuditEntry>) -> Result<()> {
        let inner = &self.inner;
        if inner.draining.is_cancelled() {
            return Err(EngineError::ShuttingDown);
        }
        let mut rec = match inner.fresh.take(id) {
            // No approval asked for now: nothing more to read (see fresh.rs).
            Some(rec) if self.approval_rules(&rec).is_empty() => rec,
            _ => self.status(id).await?,
        };
        if !matches!(rec.status, Status::NotStarted | Status::AwaitingApproval) {
            return Err(EngineError::AlreadyStarted {
                id: rec.id,
                status: rec.status,
            });
        }
        self.check_approved(&rec)?;
        if rec.status == Status::AwaitingApproval {
            // Approved meanwhile, or the policy no longer asks: ready.
            match inner
                .store
                .transition(
                    &rec.id,
                    Status::AwaitingApproval,
                    Status::NotStarted,
                    "",
                    None,
                    Vec::new(),
                )
                .await?
            {
                CasOutcome::Done(()) | CasOutcome::WrongStatus(Status::NotStarted) => {
                    rec.status = Status::NotStarted;
                }
                CasOutcome::NotFound => return Err(EngineError::NotFound(rec.id)),
                CasOutcome::WrongStatus(status) => {
                    return Err(EngineError::AlreadyStarted { id: rec.id, status });
                }
                CasOutcome::OwnedBy(owner) => {
                    return Err(EngineError::AlreadyStarted {
                        id: format!("{} (run by {owner})", rec.id),
                        status: Status::Running,
                    });
                }
            }
        }
        // Approval takes time: the Exec deadline runs from the last approval.
        let since = rec
            .approvals
            .iter()
            .map(|a| a.at)
            .fold(rec.created, i64::max);
        let age = Duration::from_micros((self.now() - since).max(0) as u64);
        if age > inner.opts.exec_ttl {
            return Err(EngineError::Stale {
                id: rec.id,
                age,
                ttl: inner.opts.exec_ttl,
            });
        }
        self.start_run(rec, Status::NotStarted, audit).await
    }

    /// The one sequence that starts a run of `rec` from status `from`
    /// (NotStarted for Exec, Paused to resume one nobody runs): the policies
    /// in force now, registration, the e-stop, then the store's
    /// compare-and-set that makes this process the owner.
    async fn start_run(
        &self,
        mut rec: WorkflowRecord,
        from: Status,
        audit: Option<AuditEntry>,
    ) -> Result<()> {
        let inner = &self.inner;
        // Policies may have tightened since Submit: the ones in force now.
        let version = inner
            .admission
            .admit(&rec.req, self.now())
            .map_err(refused)?;
        if version != rec.policy_version {
            tracing::info!(workflow = %rec.id, submitted = %rec.policy_version, now = %version,
                "re-checked against newer policies");
        }
        let id = rec.id.clone();
        let active = self.register(&id, &rec.req.name)?;
        // Read the switch only after registering (see module docs).
        let stopped = inner.estop.borrow().stopped(&rec.req.name);
        let outcome = match stopped {
            Some(reason) => Err(EngineError::EmergencyStopped {
                name: rec.req.name.clone(),
                reason,
            }),
            None => {
                let executor = audit.as_ref().map(|a| a.identity.clone());
                let at = self.now();
                match inner
                    .store
                    .acquire(&id, from, &inner.instance.id(), at, audit)
                    .await
                {
                    Ok(CasOutcome::Done(lease)) => {
                        active.set_lease(lease);
                        rec.status = Status::Running;
                        if from == Status::NotStarted {
                            rec.started = Some(at);
                            rec.executed_by = executor.unwrap_or_default();
                        } else {
                            rec.reason.clear();
                        }
                        Ok(())
                    }
                    Ok(CasOutcome::NotFound) => Err(EngineError::NotFound(id.clone())),
                    Ok(CasOutcome::WrongStatus(status)) if from == Status::NotStarted => {
                        Err(EngineError::AlreadyStarted {
                            id: id.clone(),
                            status,
                        })
                    }
                    Ok(CasOutcome::WrongStatus(status)) => Err(EngineError::WrongState(format!(
                        "workflow {id} is {status}, not {from}"
                    ))),
                    Ok(CasOutcome::OwnedBy(owner)) => Err(EngineError::Elsewhere {
                        id: id.clone(),
                        owner,
                    }),
                    Err(e) => Err(e.into()),
                }
            }
        };
        if let Err(e) = outcome {
            self.unregister(&id);
            // Whoever found it registered meanwhile (a Cancel waiting for
            // the run to end, a Pause waiting for it to start) stops waiting.
            active.done.set(true);
            return Err(e);
        }
        let in_flight = |rec: &WorkflowRecord| {
            rec.blocks
                .iter()
                .flat_map(|b| &b.jobs)
                .any(|j| j.status == Status::Running)
        };
        if from == Status::Paused && in_flight(&rec) {
            // Jobs recorded Running in a paused workflow that no live
            // process ran (this one just became its owner) were in flight
            // when their server went away: settled as after a restart
            // (abandoned, re-run only if safe or reconciled, otherwise
            // Interrupted for an operator), never simply started again.
            return match self.prepare_resume(rec, &active).await {
                Ok(Some(rec)) => {
                    tracing::info!(workflow = %id, "resuming; jobs in flight when its server went away were settled");
                    self.launch(rec, active);
                    Ok(())
                }
                outcome => {
                    self.unregister(&id);
                    active.done.set(true);
                    outcome?;
                    let now = self.inner.store.get(&id).await?;
                    let state = now.map_or_else(String::new, |r| {
                        format!("; it is {} now: {}", r.status, r.reason)
                    });
                    Err(EngineError::WrongState(format!(
                        "workflow {id} had jobs in flight when its server went away{state}"
                    )))
                }
            };
        }
        tracing::info!(workflow = %id, name = %interlock_core::Escaped(&rec.req.name),
            trace_id = %rec.req.trace_id, "executing");
        self.launch(rec, active);
        Ok(())
    }

    fn launch(&self, mut rec: WorkflowRecord, active: Arc<Active>) {
        rec.req.shrink_to_fit();
        let span = tracing::info_span!("workflow", id = %rec.id,
            name = %interlock_core::Escaped(&rec.req.name), trace_id = %rec.req.trace_id);
        if let Some(hook) = &self.inner.opts.workflow_span {
            hook(&span, &rec.id, &rec.req.trace_id);
        }
        let runner = self.inner.clone();
        // Shared from here: an argument held by value would keep its bytes
        // in the task for the whole run (a future keeps its arguments).
        let rec = Arc::new(rec);
        self.inner
            .tasks
            .spawn(runner.run(rec, active).instrument(span));
    }

    /// Registers `id` as active here, or says it already is.
    fn register(&self, id: &str, name: &str) -> Result<Arc<Active>> {
        let mut map = self.inner.active.lock().expect("active lock");
        if map.contains_key(id) {
            return Err(EngineError::AlreadyStarted {
                id: id.to_string(),
                status: Status::Running,
            });
        }
        let a = Arc::new(Active::new(name, &self.inner.draining));
        map.insert(id.to_string(), a.clone());
        Ok(a)
    }

    fn unregister(&self, id: &str) {
        self.inner.active.lock().expect("active lock").remove(id);
    }

    /// The run of `id` in this process once it has started (see
    /// [`Active::has_lease`]): waits for a start in progress to end, then
    /// answers the run, or `None` when there is none or its start failed.
    async fn started(&self, id: &str) -> Result<Option<Arc<Active>>> {
        let deadline = tokio::time::Instant::now() + START_WAIT;
        loop {
            let Some(a) = self.active(id) else {
                return Ok(None);
            };
            if a.has_lease() {
                return Ok(Some(a));
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(EngineError::WrongState(format!(
                    "workflow {id} is still being started; try again"
                )));
            }
            // One trip through the store's queue: no signal is kept for
            // it, as every running workflow would carry one.
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    fn active(&self, id: &str) -> Option<Arc<Active>> {
        self.inner
            .active
            .lock()
            .expect("active lock")
            .get(id)
            .cloned()
    }

    /// Stops starting jobs, lets running ones finish for up to `drain`, then
    /// cancels them. Records of interrupted work stay "Running": truthful,
    /// and what the next owner needs to pick them up. Finally retires this
    /// instance, so another can claim the work at once.
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
        if let Err(e) = inner.store.retire_instance(&inner.instance.id()).await {
            tracing::warn!(error = %e, "cannot retire this instance; its work is claimable once its heartbeat lapses");
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

    /// Whether the store answers and takes writes, and this process holds
    /// its lease.
    pub async fn store_health(&self) -> StoreHealth {
        let mut h = self.inner.health.lock().expect("health lock").clone();
        if h.write_error.is_none()
            && let Err(e) = self.inner.store.ping().await
        {
            h.write_error = Some(e.to_string());
        }
        h
    }

    /// Every committed transition from now on, whichever process wrote it
    /// (and the other items of the store's feed).
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<interlock_store::FeedItem> {
        self.inner.store.subscribe()
    }

    /// This process's instance id (changes if it ever re-registers).
    pub fn instance_id(&self) -> String {
        self.inner.instance.id()
    }

    /// Live server instances sharing the store.
    pub async fn instances(&self) -> Result<Vec<InstanceInfo>> {
        Ok(self.inner.store.instances().await?)
    }
}

impl Inner {
    /// Stops every local run that `switch` stops. Called by whoever put
    /// `switch` in force, right after: a run registered later reads the
    /// e-stop itself after registering, so none is missed. A drain cancels
    /// nothing: each run meets it at its next job start (so a `go` before
    /// then leaves the run untouched). Runs are stopped in id order (see
    /// `Inner::active`).
    fn stop_halted(&self, switch: &EsState) {
        let actives: Vec<_> = self
            .active
            .lock()
            .expect("active lock")
            .values()
            .cloned()
            .collect();
        for a in actives {
            if let Some(h) = switch.halted(&a.name).filter(|h| h.mode == EsMode::Stop) {
                a.halt(h);
            }
        }
    }
}
