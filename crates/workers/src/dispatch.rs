//! Handing job attempts to workers: sessions, the queue, leases.
//!
//! A worker opens a session (declaring the types it serves and how many
//! tasks it takes at once) and receives [`ToWorker`] messages on a channel
//! the gRPC layer streams to it. Each dispatch of a task is a **lease**: a
//! fresh, unguessable lease id that the worker quotes with every
//! checkpoint and result. The lease lives as long as the worker's session
//! is heard from (any message counts; idle workers send heartbeats).
//!
//! Invariants:
//! - A task is leased to at most one session at a time; a result or
//!   checkpoint quoting any other lease id (an earlier lease of the same
//!   task, a cancelled task, another identity) is refused: a worker that
//!   lost its lease cannot record anything.
//! - A session that is closed or silent for longer than the ttl is lost.
//!   Its tasks are re-queued only when their type is safe to re-run; a
//!   reconcilable task goes back out as a reconcile request carrying its
//!   last checkpoint; any other ends Interrupted for an operator.
//! - Cancellation is pushed to the worker holding the lease the moment the
//!   attempt is cancelled (Cancel, emergency stop, deadline, fatal sibling).
//! - Queues are per job type and FIFO; a free slot goes to the session of
//!   that type with the fewest tasks in hand.

use crate::decl::{Declarations, RemoteType};
use interlock_engine::{JobCtx, JobError, Outputs};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

mod types;
pub use types::{
    DispatchError, DispatchOpts, SessionView, TaskResult, TaskSpec, ToWorker, WaitingView,
};

mod state;
use state::{Ended, Session, State, Task};

/// Resolves once a relayed task's result is recorded where its owner
/// reads it: true, or false when it could not be (the task moved to
/// another replica meanwhile): the worker should send it again there.
#[derive(Debug)]
pub struct Delivered(oneshot::Receiver<bool>);

impl Delivered {
    pub async fn recorded(self, limit: Duration) -> bool {
        matches!(tokio::time::timeout(limit, self.0).await, Ok(Ok(true)))
    }
}

/// An attempt claimed from the task board for a workflow that may be
/// another replica's.
#[derive(Debug)]
pub struct Relay {
    /// Its owner asks for a reconcile answer rather than a run.
    pub reconcile: bool,
    /// The claim's lease id: its dispatch gets it, so the worker can
    /// re-attach with it to any replica.
    pub lease: String,
    /// The session of a worker that re-attached it (holds it already).
    pub attached: Option<u64>,
    /// Told once the attempt is in the tables (its lease is known here),
    /// or that it could not be.
    pub registered: Option<oneshot::Sender<bool>>,
}

/// How a relayed attempt ended here (see [`Dispatcher::run_relayed`]).
#[derive(Debug)]
pub enum Relayed {
    /// With the worker's own result, whom to tell once it is recorded on
    /// the board (true) or could not be (false).
    Ended(Result<Outputs, JobError>, Option<oneshot::Sender<bool>>),
    /// Its worker was lost: why.
    Lost(String),
    /// It never reached a worker, and none here serves its type now.
    Released,
}

/// The remote half of job execution. One per server process.
pub struct Dispatcher {
    state: Mutex<State>,
    /// Woken whenever log lines arrive (results wait for theirs).
    lines: tokio::sync::Notify,
    decls: RwLock<Arc<Declarations>>,
    opts: DispatchOpts,
}

/// Pumps a type's queue when dropped (a checkpoint write held it back).
struct PumpOnDrop<'a> {
    d: &'a Dispatcher,
    job_type: String,
}

impl Drop for PumpOnDrop<'_> {
    fn drop(&mut self) {
        self.d
            .state
            .lock()
            .expect("dispatch lock")
            .pump(&self.job_type);
    }
}

/// Says, when dropped, whether the attempt made it into the tables.
struct Registered(Option<oneshot::Sender<bool>>, bool);

impl Drop for Registered {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(self.1);
        }
    }
}

/// A task handed to [`Dispatcher::run`], removed when its attempt ends.
struct Enqueued<'a> {
    d: &'a Dispatcher,
    id: u64,
}

impl Drop for Enqueued<'_> {
    fn drop(&mut self) {
        self.d.forget(self.id);
    }
}

impl Dispatcher {
    pub fn new(opts: DispatchOpts) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::default(),
            lines: tokio::sync::Notify::new(),
            decls: RwLock::default(),
            opts,
        })
    }

    pub fn opts(&self) -> DispatchOpts {
        self.opts
    }

    /// Puts a newly loaded jobs.json in force. A session offering a type
    /// it no longer declares, or no longer lets that worker serve, ends
    /// (its tasks are handled as a lost worker's); it may reconnect with
    /// what it may still serve.
    pub fn declare(&self, decls: Declarations) {
        *self.decls.write().expect("decls lock") = Arc::new(decls);
        let sessions: Vec<(u64, Vec<String>)> = {
            let st = self.state.lock().expect("dispatch lock");
            st.sessions
                .iter()
                .map(|(id, s)| (*id, s.roles.clone()))
                .collect()
        };
        for (id, roles) in sessions {
            self.recheck(id, &roles);
        }
    }

    /// Checks session `session` again with the identity's current roles:
    /// every type it offers must still be declared and allowed to it.
    /// If not, the session ends and this says why.
    pub fn recheck(&self, session: u64, roles: &[String]) -> Option<String> {
        let decls = self.declarations();
        let mut st = self.state.lock().expect("dispatch lock");
        let s = st.sessions.get_mut(&session)?;
        s.roles = roles.to_vec();
        let why = s.types.iter().find_map(|t| match decls.get(t) {
            None => Some(format!("job type {t:?} is no longer declared in jobs.json")),
            Some(d) if !d.may_serve(&s.identity, roles) => Some(format!(
                "jobs.json no longer lets {} serve job type {t:?}",
                s.identity
            )),
            Some(_) => None,
        })?;
        st.lose(session, &why);
        metrics::gauge!("interlock_workers_connected").set(st.sessions.len() as f64);
        Some(why)
    }

    pub fn declarations(&self) -> Arc<Declarations> {
        self.decls.read().expect("decls lock").clone()
    }

    /// Opens a session for `identity` (bound to `roles`) serving `types`.
    /// Every type must be declared and allowed to this identity.
    pub fn connect(
        &self,
        identity: &str,
        roles: &[String],
        name: &str,
        types: &[String],
        capacity: usize,
    ) -> Result<(u64, mpsc::UnboundedReceiver<ToWorker>), DispatchError> {
        self.open_session(identity, roles, name, types, capacity, false)
    }

    /// As [`Dispatcher::connect`], but nothing new is handed to the session
    /// until [`Dispatcher::hand_out`]: the tasks its worker re-attaches
    /// come first, so they count against its capacity.
    pub fn connect_holding(
        &self,
        identity: &str,
        roles: &[String],
        name: &str,
        types: &[String],
        capacity: usize,
    ) -> Result<(u64, mpsc::UnboundedReceiver<ToWorker>), DispatchError> {
        self.open_session(identity, roles, name, types, capacity, true)
    }

    /// Starts handing tasks to a session opened with
    /// [`Dispatcher::connect_holding`].
    pub fn hand_out(&self, session: u64) {
        let mut st = self.state.lock().expect("dispatch lock");
        if let Some(s) = st.sessions.get_mut(&session) {
            s.holding = false;
        }
        st.pump_session(session);
    }

    fn open_session(
        &self,
        identity: &str,
        roles: &[String],
        name: &str,
        types: &[String],
        capacity: usize,
        holding: bool,
    ) -> Result<(u64, mpsc::UnboundedReceiver<ToWorker>), DispatchError> {
        if types.is_empty() {
            return Err(DispatchError::Invalid(
                "a worker must offer at least one job type".into(),
            ));
        }
        if capacity == 0 {
            return Err(DispatchError::Invalid(
                "a worker must take at least one task at a time (capacity ≥ 1)".into(),
            ));
        }
        let decls = self.declarations();
        for t in types {
            let Some(decl) = decls.get(t) else {
                let known: Vec<_> = decls.iter().map(|(n, _)| n.as_str()).collect();
                return Err(DispatchError::Undeclared(format!(
                    "job type {t:?} is not declared in jobs.json (declared: {}); \
                     an operator declares the types workers may serve",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                )));
            };
            if !decl.may_serve(identity, roles) {
                return Err(DispatchError::NotAllowed(format!(
                    "{identity} may not serve job type {t:?}: jobs.json lets only {} serve it",
                    decl.served_by().join(", ")
                )));
            }
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let mut st = self.state.lock().expect("dispatch lock");
        st.next += 1;
        let id = st.next;
        st.sessions.insert(
            id,
            Session {
                identity: identity.to_string(),
                roles: roles.to_vec(),
                name: name.to_string(),
                types: types.iter().cloned().collect(),
                capacity,
                leased: BTreeSet::new(),
                tx,
                last_seen: Instant::now(),
                connected: SystemTime::now(),
                holding,
            },
        );
        for t in types {
            st.pump(t);
        }
        metrics::gauge!("interlock_workers_connected").set(st.sessions.len() as f64);
        drop(st);
        // A jobs.json loaded meanwhile is checked against this session too.
        if !Arc::ptr_eq(&decls, &self.declarations())
            && let Some(why) = self.recheck(id, roles)
        {
            return Err(DispatchError::NotAllowed(why));
        }
        tracing::info!(session = id, %identity, %name, ?types, capacity, "worker connected");
        Ok((id, rx))
    }

    /// The worker was heard from.
    pub fn touch(&self, session: u64) {
        if let Some(s) = self
            .state
            .lock()
            .expect("dispatch lock")
            .sessions
            .get_mut(&session)
        {
            s.last_seen = Instant::now();
        }
    }

    /// Log lines a worker sent on its session for the task under
    /// `lease_id`: kept with the job's attempt. Lines for a lease the
    /// session does not hold (any more) are dropped; the answer says
    /// whether they were kept.
    pub fn log(
        &self,
        session: u64,
        lease_id: &str,
        stream: interlock_core::LogStream,
        lines: &[String],
    ) -> bool {
        let ctx = {
            let mut st = self.state.lock().expect("dispatch lock");
            if let Some(s) = st.sessions.get_mut(&session) {
                s.last_seen = Instant::now();
            }
            let Some(&id) = st.leases.get(lease_id) else {
                return false;
            };
            match st.tasks.get_mut(&id) {
                Some(t)
                    if t.lease
                        .as_ref()
                        .is_some_and(|(s, l)| *s == session && l == lease_id) =>
                {
                    t.lines += lines.len() as u64;
                    t.ctx.clone()
                }
                _ => return false,
            }
        };
        for l in lines {
            ctx.log_to(stream, l);
        }
        self.lines.notify_waiters();
        true
    }

    /// Waits (at most `limit`) until `count` log lines arrived under
    /// `lease_id`: they travel on the session stream, the result on a call
    /// of its own, so the result may overtake the last of them. Gives up
    /// at once when the lease is not held (the result is refused anyway).
    pub async fn await_lines(&self, lease_id: &str, count: u64, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let arrived = self.lines.notified();
            {
                let st = self.state.lock().expect("dispatch lock");
                let seen = st
                    .leases
                    .get(lease_id)
                    .and_then(|id| st.tasks.get(id))
                    .map(|t| t.lines);
                match seen {
                    Some(n) if n < count => {}
                    _ => return,
                }
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                return;
            }
        }
    }

    /// The session's stream ended: its worker is gone.
    pub fn disconnect(&self, session: u64, why: &str) {
        let mut st = self.state.lock().expect("dispatch lock");
        st.lose(session, why);
        metrics::gauge!("interlock_workers_connected").set(st.sessions.len() as f64);
    }

    /// The server is shutting down: every session ends (workers reconnect
    /// to the next server), nothing more is handed out, and the tasks in
    /// hand are not decided here: their runs stop detached and whoever
    /// resumes the workflow re-runs, reconciles or interrupts them.
    pub fn close(&self) {
        let mut st = self.state.lock().expect("dispatch lock");
        st.closing = true;
        let ids: Vec<u64> = st.sessions.keys().copied().collect();
        for id in ids {
            st.lose(id, "the server is shutting down");
        }
        metrics::gauge!("interlock_workers_connected").set(0.0);
    }

    /// Loses every session silent for longer than the lease ttl.
    pub fn expire(&self) {
        let ttl = self.opts.lease_ttl;
        let mut st = self.state.lock().expect("dispatch lock");
        let silent: Vec<u64> = st
            .sessions
            .iter()
            .filter(|(_, s)| s.last_seen.elapsed() > ttl)
            .map(|(id, _)| *id)
            .collect();
        for id in silent {
            st.lose(
                id,
                &format!(
                    "not heard from for more than {}",
                    humantime::format_duration(ttl)
                ),
            );
        }
        metrics::gauge!("interlock_workers_connected").set(st.sessions.len() as f64);
    }

    /// Expires silent sessions until `stop` fires.
    pub async fn run_expiry(self: Arc<Self>, stop: tokio_util::sync::CancellationToken) {
        let period = (self.opts.lease_ttl / 4).max(Duration::from_millis(10));
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(period) => self.expire(),
            }
        }
    }

    /// Runs one attempt of a remote job: queues it, waits for a worker's
    /// result, pushes cancellation when `ctx.cancel` fires.
    pub async fn run(
        &self,
        ctx: &JobCtx,
        decl: &RemoteType,
        job: &interlock_core::Job,
    ) -> Result<Outputs, JobError> {
        // An earlier attempt may have acted: ask first (unless an
        // operator said run it, whatever it did).
        let reconcile = decl.schema.reconcilable && ctx.checkpoint.is_some() && !ctx.operator_retry;
        let limit = match job.timeout {
            Some(t) if !t.is_zero() => None, // the executor enforces it
            _ => decl.timeout,
        };
        match self.queue(ctx, decl, job, reconcile, limit, None).await {
            Ended::Result(r) | Ended::Delivered(r, _) => r,
            // Only relayed tasks end these ways.
            Ended::Lost(why) => Err(JobError::interrupted(why)),
            Ended::Released => Err(JobError::new("the task was given back").retryable()),
        }
    }

    /// Runs an attempt claimed from the task board (see [`Relay`]): as
    /// [`Dispatcher::run`], but its owner decided whether it is a
    /// reconcile request and enforces its timeout, and a lost worker ends
    /// it with [`Relayed::Lost`] (the owner decides what then).
    pub async fn run_relayed(
        &self,
        ctx: &JobCtx,
        decl: &RemoteType,
        job: &interlock_core::Job,
        relay: Relay,
    ) -> Relayed {
        match self
            .queue(ctx, decl, job, relay.reconcile, None, Some(relay))
            .await
        {
            Ended::Result(r) => Relayed::Ended(r, None),
            Ended::Delivered(r, ack) => Relayed::Ended(r, Some(ack)),
            Ended::Lost(why) => Relayed::Lost(why),
            Ended::Released => Relayed::Released,
        }
    }

    async fn queue(
        &self,
        ctx: &JobCtx,
        decl: &RemoteType,
        job: &interlock_core::Job,
        reconcile: bool,
        limit: Option<Duration>,
        relay: Option<Relay>,
    ) -> Ended {
        let (done, mut rx) = oneshot::channel();
        let id = {
            let mut st = self.state.lock().expect("dispatch lock");
            st.next += 1;
            let id = st.next;
            let relayed = relay.is_some();
            let (lease, attached, registered) = relay.map_or((None, None, None), |r| {
                (Some(r.lease), r.attached, r.registered)
            });
            // Sent as the lock is let go, with the attempt in the tables.
            let mut registered = Registered(registered, false);
            let writer = st.writer((ctx.workflow_id.clone(), ctx.block, ctx.job));
            st.tasks.insert(
                id,
                Task {
                    spec: TaskSpec {
                        lease_id: String::new(),
                        workflow_id: ctx.workflow_id.clone(),
                        workflow_name: ctx.workflow_name.clone(),
                        block: ctx.block,
                        job: ctx.job,
                        attempt: ctx.attempt,
                        job_type: job.name.clone(),
                        args: job.args.clone(),
                        checkpoint: ctx.checkpoint.clone(),
                        reconcile,
                        dispatch: 0,
                        traceparent: ctx.traceparent.clone(),
                    },
                    safe: decl.schema.idempotency == interlock_core::Idempotency::Safe,
                    reconcilable: decl.schema.reconcilable,
                    lease: None,
                    queued_since: SystemTime::now(),
                    ctx: ctx.clone(),
                    done: Some(done),
                    relayed,
                    next_lease: None,
                    writing: writer,
                    lines: 0,
                },
            );
            match (lease, attached) {
                // The worker has it already (it re-attached): leased to its
                // session as it is, nothing sent.
                (Some(lease), Some(session)) if st.sessions.contains_key(&session) => {
                    let t = st.tasks.get_mut(&id).expect("just inserted");
                    t.spec.lease_id = lease.clone();
                    t.spec.dispatch = 1;
                    t.lease = Some((session, lease.clone()));
                    st.leases.insert(lease, id);
                    st.sessions
                        .get_mut(&session)
                        .expect("checked")
                        .leased
                        .insert(id);
                    registered.1 = true;
                }
                (lease, attached) => {
                    if attached.is_some() {
                        // Its session ended meanwhile: lost again.
                        let why = "the worker's session ended as it re-attached".to_string();
                        st.remove_task(id);
                        return Ended::Lost(why);
                    }
                    st.tasks.get_mut(&id).expect("just inserted").next_lease = lease;
                    st.queues.entry(job.name.clone()).or_default().push_back(id);
                    st.pump(&job.name);
                    registered.1 = true;
                }
            }
            id
        };
        let guard = Enqueued { d: self, id };
        let timeout = async {
            match limit {
                Some(t) => tokio::time::sleep(t).await,
                None => std::future::pending().await,
            }
        };
        let stopped = tokio::select! {
            r = &mut rx => {
                return r.unwrap_or_else(|_| {
                    Ended::Result(Err(JobError::new("the task was dropped")))
                })
            }
            _ = ctx.cancel.cancelled() => None,
            _ = timeout => Some(limit.expect("a timeout fired")),
        };
        let detach = stopped.is_none() && ctx.detaching.is_cancelled();
        let reason = match stopped {
            None if detach => "the server stopped running this workflow here".to_string(),
            None => "the attempt was cancelled".to_string(),
            Some(t) => format!("timed out after {}", humantime::format_duration(t)),
        };
        // Push the cancel; give the worker a moment to confirm it stopped.
        if self.cancel(id, &reason, detach) {
            let _ = tokio::time::timeout(self.opts.cancel_grace, &mut rx).await;
        }
        drop(guard);
        Ended::Result(match stopped {
            None => Err(JobError::cancelled()),
            Some(_) => Err(JobError::new(reason).retryable()),
        })
    }

    /// Free room for more tasks, per type: the free slots of the workers
    /// serving it, less the tasks of that type already queued here.
    pub fn room(&self) -> Vec<(String, usize)> {
        let st = self.state.lock().expect("dispatch lock");
        if st.closing {
            return Vec::new();
        }
        let mut free: std::collections::BTreeMap<&String, usize> = Default::default();
        for s in st.sessions.values().filter(|s| !s.holding) {
            for t in &s.types {
                *free.entry(t).or_default() += s.capacity.saturating_sub(s.leased.len());
            }
        }
        free.into_iter()
            .map(|(t, n)| {
                let queued = st.queues.get(t).map_or(0, |q| q.len());
                (t.clone(), n.saturating_sub(queued))
            })
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// Ends the relayed attempts queued here that no connected worker
    /// serves any more ([`Relayed::Released`]: they go back on the board);
    /// how many. Decided under the lock, so none of them reached a worker.
    pub fn release_stranded(&self) -> usize {
        let mut st = self.state.lock().expect("dispatch lock");
        let st = &mut *st;
        let mut released = 0;
        for (t, q) in st.queues.iter_mut() {
            if q.is_empty() || st.sessions.values().any(|s| s.types.contains(t)) {
                continue;
            }
            q.retain(|id| {
                let Some(task) = st.tasks.get_mut(id) else {
                    return true;
                };
                if !task.relayed || task.lease.is_some() {
                    return true;
                }
                if let Some(tx) = task.done.take() {
                    let _ = tx.send(Ended::Released);
                }
                released += 1;
                false
            });
        }
        released
    }

    /// Tells the worker holding task `id` to stop; false when none holds it.
    fn cancel(&self, id: u64, reason: &str, detach: bool) -> bool {
        self.state
            .lock()
            .expect("dispatch lock")
            .push_cancel(id, reason, detach)
    }

    /// Drops task `id` from every table (its attempt is over); a worker
    /// still holding it is told to stop (an attempt the executor gave up on,
    /// e.g. at its timeout, must not go on out there).
    fn forget(&self, id: u64) {
        let mut st = self.state.lock().expect("dispatch lock");
        st.unlease(id, Some("the attempt ended on the server"));
        st.remove_task(id);
    }

    /// Durably saves a task's checkpoint (fenced twice: by the lease here,
    /// by the workflow's lease in the store). While it is written the task
    /// is not handed to another worker, and no other attempt of the job
    /// writes, so a write of a worker that is being lost cannot land after
    /// its successor's.
    pub async fn checkpoint(
        &self,
        identity: &str,
        lease_id: &str,
        state: String,
    ) -> Result<(), DispatchError> {
        let (writing, job_type) = {
            let st = self.state.lock().expect("dispatch lock");
            let (id, _) = st.lease_of(identity, lease_id)?;
            let t = &st.tasks[&id];
            (t.writing.clone(), t.spec.job_type.clone())
        };
        // Declared first, dropped last: once the write is over (or this
        // call is dropped half way) the task may go out again.
        let _pump = PumpOnDrop { d: self, job_type };
        let guard = writing.lock().await;
        let (id, ctx) = {
            let mut st = self.state.lock().expect("dispatch lock");
            let (id, session) = st.lease_of(identity, lease_id)?;
            if let Some(s) = st.sessions.get_mut(&session) {
                s.last_seen = Instant::now();
            }
            (id, st.tasks[&id].ctx.clone())
        };
        let written = ctx.save_checkpoint(state.clone()).await;
        let held = {
            let mut st = self.state.lock().expect("dispatch lock");
            if written.is_ok()
                && let Some(t) = st.tasks.get_mut(&id)
            {
                // In the store now: whoever gets the task next gets it.
                t.spec.checkpoint = Some(state);
            }
            st.lease_of(identity, lease_id).map(|_| ())
        };
        drop(guard);
        written.map_err(|e| DispatchError::Checkpoint(e.message))?;
        held
    }

    /// A worker's result for the task under `lease_id`; returns the task
    /// it was for and the worker's name (the audit log records both).
    pub fn complete(
        &self,
        identity: &str,
        lease_id: &str,
        result: TaskResult,
    ) -> Result<(TaskSpec, String, Option<Delivered>), DispatchError> {
        let mut st = self.state.lock().expect("dispatch lock");
        let (id, session) = st.lease_of(identity, lease_id)?;
        let asked_to_reconcile = st.tasks.get(&id).is_some_and(|t| t.spec.reconcile);
        if matches!(result, TaskResult::NotDone | TaskResult::Unknown(_)) && !asked_to_reconcile {
            return Err(DispatchError::Invalid(
                "a reconcile answer was sent for a task that was asked to run".into(),
            ));
        }
        if let Some(s) = st.sessions.get_mut(&session) {
            s.last_seen = Instant::now();
            s.leased.remove(&id);
        }
        st.leases.remove(lease_id);
        let who = st
            .sessions
            .get(&session)
            .map(|s| s.name.clone())
            .unwrap_or_default();
        let Some(task) = st.tasks.get_mut(&id) else {
            return Err(DispatchError::LeaseLost(lease_id.to_string()));
        };
        task.lease = None;
        let spec = task.spec.clone();
        let outcome = match result {
            TaskResult::Done(out) => Some(Ok(out)),
            TaskResult::Failed {
                message,
                retryable,
                fatal,
            } => {
                let mut e = JobError::new(message).fatal(fatal);
                e.retryable = retryable;
                Some(Err(e))
            }
            // Reconcile answers (refused above unless asked for).
            TaskResult::NotDone => {
                // Not done: run it again, with its checkpoint (a relayed one
                // under the board's lease, which its worker re-attaches with).
                task.spec.reconcile = false;
                if task.relayed {
                    task.next_lease = Some(lease_id.to_string());
                }
                None
            }
            TaskResult::Unknown(why) => Some(Err(JobError::interrupted(format!(
                "worker {who:?} cannot tell whether an earlier run took effect: {why}"
            )))),
        };
        let mut delivered = None;
        match outcome {
            Some(r) => {
                if let Some(tx) = task.done.take() {
                    if task.relayed {
                        let (ack, rx) = oneshot::channel();
                        delivered = Some(Delivered(rx));
                        let _ = tx.send(Ended::Delivered(r, ack));
                    } else {
                        let _ = tx.send(Ended::Result(r));
                    }
                }
            }
            None => {
                let t = task.spec.job_type.clone();
                st.queues.entry(t).or_default().push_front(id);
            }
        }
        st.pump_session(session);
        let t = st.tasks.get(&id).map(|t| t.spec.job_type.clone());
        if let Some(t) = t {
            st.pump(&t);
        }
        Ok((spec, who, delivered))
    }

    /// Connected workers.
    pub fn sessions(&self) -> Vec<SessionView> {
        let st = self.state.lock().expect("dispatch lock");
        let mut v: Vec<_> = st
            .sessions
            .iter()
            .map(|(id, s)| SessionView {
                id: *id,
                identity: s.identity.clone(),
                name: s.name.clone(),
                types: s.types.iter().cloned().collect(),
                capacity: s.capacity,
                leased: s.leased.len(),
                connected: s.connected,
                idle_for: s.last_seen.elapsed(),
            })
            .collect();
        v.sort_by_key(|s| s.id);
        v
    }

    /// Tasks waiting for a worker, oldest first.
    pub fn waiting(&self) -> Vec<WaitingView> {
        let st = self.state.lock().expect("dispatch lock");
        let mut v: Vec<_> = st
            .queues
            .values()
            .flatten()
            .filter_map(|id| st.tasks.get(id))
            .map(|t| WaitingView {
                workflow_id: t.spec.workflow_id.clone(),
                block: t.spec.block,
                job: t.spec.job,
                job_type: t.spec.job_type.clone(),
                since: t.queued_since,
            })
            .collect();
        v.sort_by_key(|w| w.since);
        v
    }

    /// Whether session `session` offers `job_type`.
    pub fn serves(&self, session: u64, job_type: &str) -> bool {
        self.state
            .lock()
            .expect("dispatch lock")
            .sessions
            .get(&session)
            .is_some_and(|s| s.types.contains(job_type))
    }

    /// How many sessions serve `job_type`.
    pub fn online(&self, job_type: &str) -> usize {
        let st = self.state.lock().expect("dispatch lock");
        st.sessions
            .values()
            .filter(|s| s.types.contains(job_type))
            .count()
    }
}

#[cfg(test)]
mod tests;
