//! Remote job attempts between replicas, through the store's task board.
//!
//! On a store several replicas share, the replica that owns a workflow is
//! not necessarily the one a worker of the right type is connected to.
//! The owner posts the attempt on the board ([`Board::run`], this file);
//! any replica with a free worker claims it and hands it to that worker
//! through its own [`Dispatcher`] (`claim.rs`). The worker's checkpoints,
//! log lines and result travel back through the task's row; the owner
//! copies checkpoints and the result into the workflow under its lease.
//!
//! Invariants (beside the board's own, in `interlock_store::board`):
//! - Policies, buckets, limits, approvals and the e-stop act on the owner
//!   before an attempt is posted; a cancel (Cancel, e-stop, timeout, fatal
//!   sibling) is written to the row and pushed to the worker by its
//!   claimer at once (the feed carries it).
//! - An owner that lets go of a workflow (shutdown, lost lease) leaves
//!   its tasks alone: the next owner adopts the task of the attempt that
//!   was in flight, and the worker goes on without noticing.
//! - A claim that was given back (its worker lost) or lapsed (its replica
//!   gone) is decided by the owner as for a lost worker: posted again if
//!   the type is safe to re-run, posted as a reconcile request if it is
//!   reconcilable, otherwise the job is Interrupted for an operator.
//! - A claimer whose task's workflow ended (it learns it from the feed)
//!   stops the worker.

use crate::decl::RemoteType;
use crate::dispatch::Dispatcher;
use interlock_core::Micros;
use interlock_engine::{JobCtx, JobError, Outputs};
use interlock_store::{BoardTask, FeedItem, Lease, OwnerAct, Store, StoreError, TaskKey};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};
use tokio::sync::Notify;

mod claim;

/// Timing of the board.
#[derive(Debug, Clone, Copy)]
pub struct BoardOpts {
    /// A claim not renewed for this long has lapsed (its replica is gone).
    pub claim_ttl: Duration,
    /// How often a replica with idle workers looks for posted tasks
    /// beside the feed's news (owners look for lapsed claims every half
    /// `claim_ttl`).
    pub poll: Duration,
    /// How long a cancelled attempt waits for its worker to confirm.
    pub cancel_grace: Duration,
    /// An attempt keeps its newest this many log lines.
    pub keep_lines: u32,
}

/// What a worker needs to run a posted attempt (the row's `spec`).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Spec {
    /// The workflow's name.
    name: String,
    args: interlock_core::Args,
    /// Find out whether an earlier run took effect instead of running.
    reconcile: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    traceparent: Option<String>,
}

/// How an attempt ended (the row's `result`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Outcome {
    Done(Outputs),
    Failed {
        message: String,
        fatal: bool,
        retryable: bool,
        interrupted: bool,
    },
}

impl Outcome {
    fn of(r: &Result<Outputs, JobError>) -> Self {
        match r {
            Ok(o) => Outcome::Done(o.clone()),
            Err(e) => Outcome::Failed {
                message: e.message.clone(),
                fatal: e.fatal,
                retryable: e.retryable,
                interrupted: e.interrupted,
            },
        }
    }

    fn into_result(self) -> Result<Outputs, JobError> {
        match self {
            Outcome::Done(o) => Ok(o),
            Outcome::Failed {
                message,
                fatal,
                retryable,
                interrupted,
            } => Err(JobError {
                message,
                fatal,
                retryable,
                interrupted,
            }),
        }
    }
}

fn decode_result(raw: &str) -> Result<Outputs, JobError> {
    serde_json::from_str::<Outcome>(raw)
        .map_err(|e| JobError::interrupted(format!("the worker's result cannot be read ({e})")))?
        .into_result()
}

fn store_error(e: StoreError) -> JobError {
    match e {
        // The workflow moved to another owner: this run detaches.
        StoreError::Fenced { .. } => JobError::cancelled(),
        e => JobError::new(format!("the task board failed: {e}")).retryable(),
    }
}

/// The board as one replica uses it: the owner's side (posting, waiting,
/// deciding) and the claimer's (claiming for local workers, relaying).
pub struct Board {
    store: Arc<dyn Store>,
    dispatcher: Arc<Dispatcher>,
    opts: BoardOpts,
    /// This replica's instance id, known once it registered.
    replica: OnceLock<String>,
    /// Who waits for which row to change: its owner, its claimer (one
    /// replica may be both).
    watch: Mutex<Watchers>,
    /// Tasks this replica posted that no worker took yet.
    waiting: Mutex<HashMap<TaskKey, (String, SystemTime)>>,
    claims: claim::Claims,
}

/// Who waits for each row, by side.
type Watchers = HashMap<(TaskKey, Side), Vec<Arc<Notify>>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Side {
    Owner,
    Claimer,
}

/// Stops a task whose attempt was dropped undecided (not let go).
struct Abandon {
    board: Arc<Board>,
    lease: Lease,
    key: TaskKey,
    attempt: u32,
    detaching: tokio_util::sync::CancellationToken,
    armed: bool,
}

impl Drop for Abandon {
    fn drop(&mut self) {
        if !self.armed || self.detaching.is_cancelled() {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (board, lease, key) = (self.board.clone(), self.lease.clone(), self.key.clone());
        let attempt = self.attempt;
        rt.spawn(async move {
            // Only this attempt's task (a retry may have posted its own).
            match board.store.board_task(&key).await {
                Ok(Some(t)) if t.attempt == attempt => {}
                _ => return,
            }
            // Cancelled, and left for a re-attaching worker to be told so.
            let why = OwnerAct::Cancel("the attempt ended on the server".into());
            let _ = board.store.board_act(&lease, &key, why).await;
        });
    }
}

/// Stops watching a row when dropped.
struct Watching<'a> {
    board: &'a Board,
    key: TaskKey,
    side: Side,
    notify: Arc<Notify>,
}

impl Drop for Watching<'_> {
    fn drop(&mut self) {
        let k = (self.key.clone(), self.side);
        {
            let mut w = self.board.watch.lock().expect("watch lock");
            if let Some(v) = w.get_mut(&k) {
                v.retain(|n| !Arc::ptr_eq(n, &self.notify));
                if v.is_empty() {
                    w.remove(&k);
                }
            }
        }
        if self.side == Side::Owner {
            self.board
                .waiting
                .lock()
                .expect("waiting lock")
                .remove(&self.key);
        }
    }
}

impl Board {
    pub fn new(store: Arc<dyn Store>, dispatcher: Arc<Dispatcher>, opts: BoardOpts) -> Arc<Self> {
        Arc::new(Self {
            store,
            dispatcher,
            opts,
            replica: OnceLock::new(),
            watch: Mutex::default(),
            waiting: Mutex::default(),
            claims: claim::Claims::default(),
        })
    }

    /// How long a claim lives unrenewed.
    pub fn claim_ttl(&self) -> Duration {
        self.opts.claim_ttl
    }

    fn now() -> Micros {
        interlock_core::now_micros()
    }

    fn watching(&self, key: &TaskKey, side: Side) -> Watching<'_> {
        // One per watcher: two runs of one key (an old claim winding down
        // beside a new one) each get woken.
        let notify = Arc::new(Notify::new());
        self.watch
            .lock()
            .expect("watch lock")
            .entry((key.clone(), side))
            .or_default()
            .push(notify.clone());
        Watching {
            board: self,
            key: key.clone(),
            side,
            notify,
        }
    }

    /// Wakes whoever waits for `key` (or everyone, after a feed gap).
    fn wake(&self, key: Option<&TaskKey>) {
        let w = self.watch.lock().expect("watch lock");
        match key {
            Some(k) => {
                for side in [Side::Owner, Side::Claimer] {
                    for n in w.get(&(k.clone(), side)).into_iter().flatten() {
                        n.notify_one();
                    }
                }
            }
            None => w.values().flatten().for_each(|n| n.notify_one()),
        }
    }

    /// Posted tasks of workflow `id` no worker took yet: (block, job,
    /// type, since).
    pub fn waiting(&self, id: &str) -> Vec<(usize, usize, String, SystemTime)> {
        self.waiting
            .lock()
            .expect("waiting lock")
            .iter()
            .filter(|(k, _)| k.workflow_id == id)
            .map(|(k, (t, since))| (k.block, k.job, t.clone(), *since))
            .collect()
    }

    /// Whether the attempt in flight of `ctx`'s job is still on the board
    /// for a new owner to take over: done, waiting for a worker, or held
    /// by a live claim (recovery then runs the job again, and that run
    /// adopts it instead of doing it twice).
    pub async fn in_flight(&self, ctx: &JobCtx) -> bool {
        match self.store.board_task(&key_of(ctx)).await {
            Ok(Some(t)) => t.attempt <= ctx.attempt && t.in_flight(),
            _ => false,
        }
    }

    /// Runs one attempt of a remote job through the board: posts it (or
    /// adopts the one an earlier owner posted and a worker may still run),
    /// copies the worker's checkpoints into the job, decides a lost claim,
    /// pushes a cancel, and returns the worker's result.
    pub async fn run(
        self: &Arc<Self>,
        ctx: &JobCtx,
        decl: &RemoteType,
        job: &interlock_core::Job,
    ) -> Result<Outputs, JobError> {
        let Some(lease) = ctx.lease() else {
            // Not run by a workflow's owner (a context outside the
            // engine): nothing to fence with, so it stays here.
            return self.dispatcher.run(ctx, decl, job).await;
        };
        let key = key_of(ctx);
        let watching = self.watching(&key, Side::Owner);
        // Dropped undecided (the executor's own timeout), the task stops.
        let mut abandon = Abandon {
            board: self.clone(),
            lease: lease.clone(),
            key: key.clone(),
            attempt: ctx.attempt,
            detaching: ctx.detaching.clone(),
            armed: true,
        };
        let r = self.attempt(ctx, decl, job, &lease, &watching).await;
        abandon.armed = false;
        r
    }

    async fn attempt(
        &self,
        ctx: &JobCtx,
        decl: &RemoteType,
        job: &interlock_core::Job,
        lease: &Lease,
        watching: &Watching<'_>,
    ) -> Result<Outputs, JobError> {
        let key = &watching.key;
        // A first attempt has no earlier one on the board (a takeover or a
        // retry counts one more attempt before the job runs again).
        let found = match ctx.attempt {
            1 => None,
            _ => self.store.board_task(key).await.map_err(store_error)?,
        };
        // A task an earlier owner posted, not cancelled: this attempt is its
        // continuation (a worker may still run it, or have finished it; a
        // lapsed claim is decided below as for a lost worker), unless an
        // operator said to run the job again.
        let adopt = found.as_ref().is_some_and(|t| {
            t.owner_epoch < lease.epoch
                && t.attempt < ctx.attempt
                && t.job_type == job.name
                && !ctx.operator_retry
                && t.cancel.is_none()
        });
        let mut spec = Spec {
            name: ctx.workflow_name.clone(),
            args: job.args.clone(),
            reconcile: false,
            traceparent: ctx.traceparent.clone(),
        };
        let mut row = if adopt {
            tracing::info!(workflow = %key.workflow_id, block = key.block, job = key.job,
                attempt = ctx.attempt, "a task an earlier owner posted goes on: taken over");
            self.store
                .board_act(
                    lease,
                    key,
                    OwnerAct::Adopt {
                        attempt: ctx.attempt,
                    },
                )
                .await
                .map_err(store_error)?
        } else {
            if let Some(t) = &found
                && t.result.is_none()
                && t.cancel.is_none()
                && t.claimed_by.is_some()
            {
                // An earlier attempt may still run on a worker: it stops
                // before another starts.
                self.stop_task(lease, watching, "another attempt of the job starts")
                    .await;
            }
            // The newest checkpoint, wherever it was saved last.
            let checkpoint = found
                .and_then(|t| t.checkpoint)
                .or_else(|| ctx.checkpoint.clone());
            spec.reconcile =
                decl.schema.reconcilable && checkpoint.is_some() && !ctx.operator_retry;
            let mut t = BoardTask::posted(
                key.clone(),
                ctx.attempt,
                &job.name,
                encode(&spec),
                lease.epoch,
                Self::now(),
            );
            t.checkpoint = checkpoint;
            self.store
                .board_post(lease, t.clone())
                .await
                .map_err(store_error)?;
            Some(t)
        };
        let limit = match job.timeout {
            Some(t) if !t.is_zero() => None, // the executor enforces it
            _ => decl.timeout,
        };
        let deadline = limit.map(|t| tokio::time::Instant::now() + t);
        let safe = decl.schema.idempotency == interlock_core::Idempotency::Safe;
        // A lapsed claim announces nothing: look now and then.
        let lapse_check = (self.opts.claim_ttl / 2).max(self.opts.poll);
        // What the job's record has: a checkpoint newer than it is copied.
        let mut copied = ctx.checkpoint.clone();
        loop {
            let Some(t) = row.take() else {
                // Removed under us: only a newer owner can (it finished the
                // attempt, or gave it up); this run detaches.
                return Err(JobError::cancelled());
            };
            if t.owner_epoch != lease.epoch {
                return Err(JobError::cancelled());
            }
            if t.checkpoint != copied
                && let Some(cp) = &t.checkpoint
            {
                ctx.save_checkpoint(cp.clone()).await?;
                copied = t.checkpoint.clone();
            }
            if let Some(raw) = &t.result {
                self.finish(lease, key).await;
                return decode_result(raw);
            }
            {
                let mut w = self.waiting.lock().expect("waiting lock");
                if t.claimed_by.is_some() {
                    w.remove(key);
                } else {
                    w.entry(key.clone())
                        .or_insert_with(|| (job.name.clone(), SystemTime::now()));
                }
            }
            if t.claimed_by.is_some() && !t.held() {
                let why = t.lost.clone().unwrap_or_else(|| {
                    format!(
                        "replica {} holding it was not heard from for {}",
                        t.claimed_by.as_deref().unwrap_or("?"),
                        humantime::format_duration(self.opts.claim_ttl)
                    )
                });
                if !safe && !decl.schema.reconcilable {
                    self.finish(lease, key).await;
                    return Err(JobError::interrupted(format!(
                        "{why}, while running it; it is not safe to run twice and cannot tell \
                         whether it took effect"
                    )));
                }
                // A reconcilable type without a checkpoint never acted
                // (its promise): it simply runs again.
                spec.reconcile = decl.schema.reconcilable && t.checkpoint.is_some();
                tracing::info!(workflow = %key.workflow_id, block = key.block, job = key.job,
                    reconcile = spec.reconcile, "{why}; the task is posted again");
                row = self
                    .store
                    .board_act(lease, key, OwnerAct::Repost(encode(&spec)))
                    .await
                    .map_err(store_error)?;
                continue;
            }
            tokio::select! {
                _ = watching.notify.notified() => {}
                _ = tokio::time::sleep(lapse_check) => {}
                _ = ctx.cancel.cancelled() => return self.stop(ctx, lease, watching, None).await,
                _ = sleep_until(deadline) => {
                    return self.stop(ctx, lease, watching, limit).await;
                }
            }
            row = match self.store.board_task(key).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the task board; trying again");
                    Some(t)
                }
            };
        }
    }

    /// The attempt stops before its worker said it ended.
    async fn stop(
        &self,
        ctx: &JobCtx,
        lease: &Lease,
        watching: &Watching<'_>,
        timed_out: Option<Duration>,
    ) -> Result<Outputs, JobError> {
        if timed_out.is_none() && ctx.detaching.is_cancelled() {
            // Let go, not cancelled: whoever resumes the workflow adopts
            // the task and its worker goes on.
            return Err(JobError::cancelled());
        }
        let reason = match timed_out {
            Some(t) => format!("timed out after {}", humantime::format_duration(t)),
            None => "the attempt was cancelled".to_string(),
        };
        // The row stays, cancelled: a worker that re-attaches it later is
        // told to stop (not merely let go); the next attempt replaces it.
        self.stop_task(lease, watching, &reason).await;
        match timed_out {
            None => Err(JobError::cancelled()),
            Some(_) => Err(JobError::new(reason).retryable()),
        }
    }

    /// Asks the worker of a task to stop, and gives it a moment to say it
    /// did (or to deliver the result it had).
    async fn stop_task(&self, lease: &Lease, watching: &Watching<'_>, reason: &str) {
        let key = &watching.key;
        let asked = self
            .store
            .board_act(lease, key, OwnerAct::Cancel(reason.to_string()))
            .await;
        if asked.is_err() {
            return;
        }
        let grace = tokio::time::Instant::now() + self.opts.cancel_grace;
        loop {
            match self.store.board_task(key).await {
                Ok(Some(t)) if t.result.is_none() && t.held() => {}
                _ => return,
            }
            if tokio::time::timeout_at(grace, watching.notify.notified())
                .await
                .is_err()
            {
                return;
            }
        }
    }

    /// The attempt is over: its row goes (a failure only leaves it for
    /// retention; nothing claims a task that has a result or a cancel).
    async fn finish(&self, lease: &Lease, key: &TaskKey) {
        if let Err(e) = self.store.board_act(lease, key, OwnerAct::Remove).await {
            tracing::debug!(error = %e, "task left on the board");
        }
    }

    /// Follows the feed for both sides until `stop`: wakes owners and
    /// claimers whose rows changed, has tasks claimed for free local
    /// workers, and stops tasks of workflows that ended. Claims and
    /// renewals run in tasks of their own, so the feed is never held up
    /// behind the database (a burst of posts coalesces into one claim).
    pub async fn serve(
        self: Arc<Self>,
        replica: String,
        stop: tokio_util::sync::CancellationToken,
    ) {
        let _ = self.replica.set(replica);
        tokio::spawn(self.clone().claim_loop(stop.clone()));
        tokio::spawn(self.clone().renew_loop(stop.clone()));
        let mut feed = self.store.subscribe();
        loop {
            let item = tokio::select! {
                _ = stop.cancelled() => return,
                item = feed.recv() => item,
            };
            match item {
                Ok(FeedItem::Task {
                    key,
                    job_type,
                    open,
                }) => {
                    self.wake(Some(&key));
                    if open && self.dispatcher.online(&job_type) > 0 {
                        self.claims.kick();
                    }
                }
                Ok(FeedItem::Event(e)) if e.block.is_none() && e.status.is_terminal() => {
                    self.claims.workflow_ended(&e.workflow_id);
                }
                Ok(FeedItem::Resync) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    self.wake(None);
                    self.claims.kick();
                }
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    }

    /// Claims whenever kicked (a post, a relayed task ending here), and
    /// every poll (a worker that connected, room nothing announced).
    async fn claim_loop(self: Arc<Self>, stop: tokio_util::sync::CancellationToken) {
        let mut poll = tokio::time::interval(self.opts.poll);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = self.claims.kicked() => {}
                _ = poll.tick() => {}
            }
            self.claim().await;
        }
    }

    async fn renew_loop(self: Arc<Self>, stop: tokio_util::sync::CancellationToken) {
        let mut renew = tokio::time::interval(self.opts.claim_ttl / 3);
        renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = renew.tick() => self.renew().await,
            }
        }
    }
}

fn key_of(ctx: &JobCtx) -> TaskKey {
    TaskKey {
        workflow_id: ctx.workflow_id.clone(),
        block: ctx.block,
        job: ctx.job,
    }
}

fn encode(spec: &Spec) -> String {
    serde_json::to_string(spec).expect("plain data serializes")
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
