//! A worker: serves job types declared in the server's jobs.json with
//! async handlers, one task per handler call.
//!
//! The worker keeps one session open (reconnecting with backoff when it
//! drops, to the next address given with [`Worker::also`]), sends
//! heartbeats at the interval the server asks for, runs each task it is
//! handed in its own tokio task, and reports the handler's result. A
//! task's [`TaskCtx::cancel`] fires when the server cancels it (Cancel,
//! emergency stop, deadline) or gives it up. Replicas sharing a store keep
//! tasks across sessions (their welcome says so): when a session ends, the
//! tasks in hand go on, the next session's hello names them, and the
//! server keeps each one still wanted; one it refuses, or a session not
//! re-opened within the server's ttl, ends them as given up (the server
//! then re-dispatches, reconciles or interrupts them). A single server
//! gives a session's tasks up when it ends.
//!
//! ```no_run
//! # async fn demo() -> Result<(), interlock_client::Error> {
//! use interlock_client::worker::{Worker, TaskError};
//! let worker = Worker::new("http://127.0.0.1:8080", Default::default(), "host-1")
//!     .handle("rebootHost", |task| async move {
//!         let host = task.arg("host").unwrap_or_default().to_string();
//!         task.checkpoint(format!("rebooting {host}")).await.map_err(TaskError::from)?;
//!         Ok([("host".to_string(), host)].into())
//!     });
//! worker.run(tokio_util::sync::CancellationToken::new()).await
//! # }
//! ```

use crate::{Error, Options, Transport, transport};
use interlock_proto::v1::{self, worker_client::WorkerClient};
use rand::Rng;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::Code;

/// What a handler returns on success: the job's outputs.
pub type Outputs = BTreeMap<String, String>;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type RunFn = Arc<dyn Fn(TaskCtx) -> BoxFuture<Result<Outputs, TaskError>> + Send + Sync>;
type ReconcileFn = Arc<dyn Fn(TaskCtx) -> BoxFuture<Reconciled> + Send + Sync>;

/// A failed task.
#[derive(Debug, Clone, Default)]
pub struct TaskError {
    pub message: String,
    /// Worth another attempt, if the job's retry policy allows one.
    pub retryable: bool,
    /// Cancels the rest of the workflow.
    pub fatal: bool,
}

impl TaskError {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            ..Self::default()
        }
    }

    pub fn retryable(mut self) -> Self {
        self.retryable = true;
        self
    }

    /// The task stopped because it was cancelled.
    pub fn cancelled() -> Self {
        Self::new("cancelled")
    }
}

impl From<Error> for TaskError {
    fn from(e: Error) -> Self {
        Self::new(e.to_string())
    }
}

/// What reconciling a task that ran on a lost worker found.
#[derive(Debug, Clone)]
pub enum Reconciled {
    /// It took effect: the job is done with these outputs.
    Done(Outputs),
    /// It did not: the job runs again (with its checkpoint).
    NotDone,
    /// Cannot tell: an operator decides.
    Unknown(String),
}

/// One task handed to this worker.
#[derive(Clone)]
pub struct TaskCtx {
    pub task: v1::Task,
    /// Fires when the task must stop.
    pub cancel: CancellationToken,
    /// Fires (with `cancel`) when the server let go of the task rather than
    /// cancelling it: this worker's session ended and the task could not be
    /// kept (the server re-dispatches, reconciles or interrupts it), or the
    /// server is shutting down or lost the workflow. External work under
    /// way may be left running, to be re-attached by the next run (it gets
    /// the checkpoint), rather than undone.
    pub detached: CancellationToken,
    hand: Arc<Hand>,
    /// Log lines sent for this task (the result tells the server).
    lines: Arc<AtomicU64>,
}

impl TaskCtx {
    pub fn arg(&self, name: &str) -> Option<&str> {
        self.task.args.get(name).map(String::as_str)
    }

    /// The state the task saved last (on this or an earlier worker).
    pub fn saved(&self) -> Option<&str> {
        self.task.checkpoint.as_deref()
    }

    /// Adds a line to the job attempt's log on the server (shown by Watch,
    /// Logs and `interlock logs`). Never waits: a line that finds the
    /// session's stream full (or no session) is dropped (the server's line
    /// numbers show the gap).
    pub fn log(&self, text: impl Into<String>) {
        self.log_to("log", text);
    }

    /// [`TaskCtx::log`] for a line of a command's output: `stream` is
    /// "stdout" or "stderr".
    pub fn log_to(&self, stream: &str, text: impl Into<String>) {
        let Some(link) = self.hand.link() else {
            return;
        };
        let sent = link.upward.try_send(v1::WorkerMsg {
            msg: Some(v1::worker_msg::Msg::Log(v1::TaskLog {
                lease_id: self.task.lease_id.clone(),
                stream: stream.to_string(),
                lines: vec![text.into()],
            })),
        });
        if sent.is_ok() {
            self.lines.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Durably saves `state` before acting on it; fails when this worker no
    /// longer holds the task (then stop without acting). Between sessions
    /// it waits for the next one (the task is re-attached there).
    pub async fn checkpoint(&self, state: impl Into<String>) -> Result<(), Error> {
        let req = v1::TaskCheckpoint {
            lease_id: self.task.lease_id.clone(),
            state: state.into(),
        };
        let deadline = std::time::Instant::now() + RESULT_RETRY;
        loop {
            let link = self.hand.await_link(&self.detached, deadline).await?;
            match link.client.clone().checkpoint(req.clone()).await {
                Err(s)
                    if (transient(&s) || self.hand.moved_on(&link))
                        && std::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                r => return r.map(|_| ()).map_err(Error::Rpc),
            }
        }
    }
}

/// A task in hand: how to stop it, and its line count.
struct Held {
    cancel: CancellationToken,
    detached: CancellationToken,
    lines: Arc<AtomicU64>,
}

/// The way to the server while a session is open.
#[derive(Clone)]
struct Link {
    client: WorkerClient<Transport>,
    /// The session's upward stream, for log lines.
    upward: mpsc::Sender<v1::WorkerMsg>,
    /// Ends the session (a result could not be delivered).
    give_up: CancellationToken,
    /// Which session it is (counted from 1).
    session: u64,
}

/// What outlives a session: the tasks in hand (a server that re-attaches
/// keeps them across sessions, on any replica) and the current link.
#[derive(Default)]
struct Hand {
    running: Mutex<HashMap<String, Held>>,
    link: std::sync::RwLock<Option<Link>>,
    /// Sessions the server welcomed so far.
    sessions: AtomicU64,
    /// A session is being opened: the tasks its hello named are the
    /// server's to keep or refuse, so nothing gives them up meanwhile.
    /// Written under the `running` lock.
    connecting: std::sync::atomic::AtomicBool,
}

impl Hand {
    fn link(&self) -> Option<Link> {
        self.link.read().expect("link lock").clone()
    }

    /// The session `link` belonged to is over: a call that failed on it
    /// may succeed on the next (the task is re-attached there).
    fn moved_on(&self, link: &Link) -> bool {
        self.link().is_none_or(|l| l.session != link.session)
    }

    /// The open session's link, waiting for one until `deadline`.
    async fn await_link(
        &self,
        detached: &CancellationToken,
        deadline: std::time::Instant,
    ) -> Result<Link, Error> {
        loop {
            if let Some(l) = self.link() {
                return Ok(l);
            }
            if detached.is_cancelled() || std::time::Instant::now() >= deadline {
                return Err(Error::Rpc(tonic::Status::unavailable(
                    "no session with the server to send it on",
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The server has given every task in hand up.
    fn detach_all(&self) {
        for h in self.running.lock().expect("running lock").values() {
            h.detached.cancel();
        }
    }
}

/// Marks the end of an attempt to open a session, however it ends.
struct Connecting<'a>(&'a Hand);

impl Drop for Connecting<'_> {
    fn drop(&mut self) {
        self.0.connecting.store(false, Ordering::SeqCst);
    }
}

/// A worker process's connection to Interlock.
pub struct Worker {
    addrs: Vec<String>,
    opts: Options,
    name: String,
    capacity: u32,
    run: HashMap<String, RunFn>,
    reconcile: HashMap<String, ReconcileFn>,
}

impl Worker {
    /// A worker named `name` (shown to operators) for the server at `addr`.
    pub fn new(addr: &str, opts: Options, name: &str) -> Self {
        Self {
            addrs: vec![addr.to_string()],
            opts,
            name: name.to_string(),
            capacity: 1,
            run: HashMap::new(),
            reconcile: HashMap::new(),
        }
    }

    /// Another replica of the same service: when a session cannot be
    /// opened or ends, the next address is tried (the tasks in hand are
    /// re-attached there).
    pub fn also(mut self, addr: &str) -> Self {
        self.addrs.push(addr.to_string());
        self
    }

    /// Tasks run at once (default 1).
    pub fn capacity(mut self, n: u32) -> Self {
        self.capacity = n.max(1);
        self
    }

    /// Serves `job_type` with `f`.
    pub fn handle<F, Fut>(mut self, job_type: &str, f: F) -> Self
    where
        F: Fn(TaskCtx) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Outputs, TaskError>> + Send + 'static,
    {
        self.run
            .insert(job_type.to_string(), Arc::new(move |t| Box::pin(f(t))));
        self
    }

    /// Answers reconcile requests for `job_type` (a reconcilable type whose
    /// earlier run was on a worker that was lost). Without one, the answer
    /// is "cannot tell" and an operator decides.
    pub fn reconcile<F, Fut>(mut self, job_type: &str, f: F) -> Self
    where
        F: Fn(TaskCtx) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Reconciled> + Send + 'static,
    {
        self.reconcile
            .insert(job_type.to_string(), Arc::new(move |t| Box::pin(f(t))));
        self
    }

    /// Serves until `stop` fires, reconnecting whenever the session drops
    /// (to the next address given, if several). Returns an error only when
    /// the server refuses the worker itself (undeclared type, missing
    /// grant, bad credentials): retrying cannot fix that.
    pub async fn run(self, stop: CancellationToken) -> Result<(), Error> {
        let this = Arc::new(self);
        let hand = Arc::new(Hand::default());
        let mut failures = 0u32;
        let mut next = 0usize;
        while !stop.is_cancelled() {
            let began = std::time::Instant::now();
            let addr = this.addrs[next % this.addrs.len()].clone();
            match this.clone().session(&addr, &hand, &stop).await {
                Ok(()) => failures = 0,
                Err(e) if refused(&e) => {
                    hand.detach_all();
                    return Err(e);
                }
                Err(e) => {
                    // A session that lasted a while was a success that ended.
                    if began.elapsed() > Duration::from_secs(30) {
                        failures = 0;
                    }
                    failures += 1;
                    next += 1;
                    eprintln!(
                        "worker {}: session with {addr} lost: {e}; reconnecting",
                        this.name
                    );
                }
            }
            let cap =
                Duration::from_secs(5).min(Duration::from_millis(100) * 2u32.pow(failures.min(6)));
            let wait = cap.mul_f64(rand::rng().random::<f64>());
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
        hand.detach_all();
        Ok(())
    }

    /// One session: hello (naming the tasks still in hand), then tasks
    /// until the stream ends or `stop`.
    async fn session(
        self: Arc<Self>,
        addr: &str,
        hand: &Arc<Hand>,
        stop: &CancellationToken,
    ) -> Result<(), Error> {
        let mut client = WorkerClient::new(transport(addr, &self.opts).await?);
        // Room for bursts of log lines beside the heartbeats.
        let (tx, rx) = mpsc::channel(1_024);
        let mut types: Vec<String> = self.run.keys().cloned().collect();
        types.sort();
        // Not one the server already gave up (it would be kept there while
        // this worker stops it).
        let held_leases: Vec<String> = {
            let running = hand.running.lock().expect("running lock");
            hand.connecting.store(true, Ordering::SeqCst);
            running
                .iter()
                .filter(|(_, h)| !h.detached.is_cancelled())
                .map(|(l, _)| l.clone())
                .collect()
        };
        let _connected = Connecting(hand);
        let hello = v1::WorkerMsg {
            msg: Some(v1::worker_msg::Msg::Hello(v1::WorkerHello {
                name: self.name.clone(),
                job_types: types,
                capacity: self.capacity,
                held_leases,
            })),
        };
        tx.send(hello).await.expect("receiver held below");
        let mut inbound = client
            .session(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await?
            .into_inner();
        let welcome = match inbound.message().await? {
            Some(v1::ServerMsg {
                msg: Some(v1::server_msg::Msg::Welcome(w)),
            }) => w,
            _ => {
                return Err(Error::Rpc(tonic::Status::internal(
                    "no welcome from the server",
                )));
            }
        };
        let heartbeat = Duration::from_millis(u64::from(welcome.heartbeat_ms.max(10)));
        // Lines of the tasks it kept count from here (a result says how
        // many this session carried).
        for h in hand.running.lock().expect("running lock").values() {
            h.lines.store(0, Ordering::Relaxed);
        }
        let ended = CancellationToken::new();
        let _end = ended.clone().drop_guard();
        let give_up = CancellationToken::new();
        let number = hand.sessions.fetch_add(1, Ordering::SeqCst) + 1;
        hand.connecting.store(false, Ordering::SeqCst);
        *hand.link.write().expect("link lock") = Some(Link {
            client: client.clone(),
            upward: tx.clone(),
            give_up: give_up.clone(),
            session: number,
        });
        {
            let ended = ended.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = ended.cancelled() => return,
                        _ = tokio::time::sleep(heartbeat) => {}
                    }
                    let beat = v1::WorkerMsg {
                        msg: Some(v1::worker_msg::Msg::Heartbeat(v1::Heartbeat {})),
                    };
                    if tx.send(beat).await.is_err() {
                        return;
                    }
                }
            });
        }
        let result = loop {
            let msg = tokio::select! {
                _ = stop.cancelled() => break Ok(()),
                _ = give_up.cancelled() => break Err(Error::Rpc(tonic::Status::unavailable(
                    "a task's result could not be delivered",
                ))),
                m = inbound.message() => m,
            };
            match msg {
                Ok(Some(v1::ServerMsg { msg: Some(m) })) => match m {
                    v1::server_msg::Msg::Task(task) => {
                        // A detach stops the task too; a cancel only stops it.
                        let detached = CancellationToken::new();
                        let cancel = detached.child_token();
                        let lines = Arc::new(AtomicU64::new(0));
                        hand.running.lock().expect("running lock").insert(
                            task.lease_id.clone(),
                            Held {
                                cancel: cancel.clone(),
                                detached: detached.clone(),
                                lines: lines.clone(),
                            },
                        );
                        let ctx = TaskCtx {
                            task,
                            cancel,
                            detached,
                            hand: hand.clone(),
                            lines,
                        };
                        tokio::spawn(self.clone().serve(ctx));
                    }
                    v1::server_msg::Msg::Cancel(c) => {
                        if let Some(h) = hand.running.lock().expect("running lock").get(&c.lease_id)
                        {
                            if c.detach {
                                h.detached.cancel();
                            } else {
                                h.cancel.cancel();
                            }
                        }
                    }
                    v1::server_msg::Msg::Welcome(_) => {}
                },
                Ok(Some(_)) => {}
                Ok(None) => {
                    break Err(Error::Rpc(tonic::Status::unavailable(
                        "the server closed the session",
                    )));
                }
                Err(e) => break Err(Error::Rpc(e)),
            }
        };
        *hand.link.write().expect("link lock") = None;
        if welcome.reattach_ms > 0 && !stop.is_cancelled() {
            // The tasks go on, and the next session (to this replica or
            // another) names them; without one within the server's window,
            // the server has given them up.
            let window = Duration::from_millis(u64::from(welcome.reattach_ms));
            let seen = hand.sessions.load(Ordering::SeqCst);
            let hand = hand.clone();
            tokio::spawn(async move {
                tokio::time::sleep(window).await;
                loop {
                    {
                        let running = hand.running.lock().expect("running lock");
                        if hand.sessions.load(Ordering::SeqCst) != seen {
                            return;
                        }
                        if !hand.connecting.load(Ordering::SeqCst) {
                            for h in running.values() {
                                h.detached.cancel();
                            }
                            return;
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            });
        } else {
            // The server has given them up: they stop.
            hand.detach_all();
        }
        result
    }

    /// Runs one task and reports its end (on whichever session is open
    /// then), unless the server let go of it first: it has then
    /// re-dispatched, reconciled or interrupted the task, and a result of
    /// this run would only be refused.
    async fn serve(self: Arc<Self>, ctx: TaskCtx) {
        use v1::task_result::Outcome;
        let lease_id = ctx.task.lease_id.clone();
        let outcome = if ctx.task.reconcile {
            match self.reconcile.get(&ctx.task.job_type) {
                None => {
                    Outcome::Unknown("this worker has no reconcile handler for the type".into())
                }
                Some(f) => match tokio::spawn(f(ctx.clone()))
                    .await
                    .unwrap_or_else(|e| Reconciled::Unknown(format!("the handler failed: {e}")))
                {
                    Reconciled::Done(outputs) => Outcome::Done(v1::TaskDone { outputs }),
                    Reconciled::NotDone => Outcome::NotDone(v1::TaskNotDone {}),
                    Reconciled::Unknown(why) => Outcome::Unknown(why),
                },
            }
        } else {
            let r = match self.run.get(&ctx.task.job_type) {
                // In a task of its own, so a handler that panics still ends
                // its task with a result instead of holding it forever.
                Some(f) => match tokio::spawn(f(ctx.clone())).await {
                    Ok(r) => r,
                    Err(e) => Err(TaskError::new(format!("the handler failed: {e}"))),
                },
                None => Err(TaskError::new(format!(
                    "this worker does not serve {:?}",
                    ctx.task.job_type
                ))),
            };
            match r {
                Ok(outputs) => Outcome::Done(v1::TaskDone { outputs }),
                Err(e) => Outcome::Failed(v1::TaskFailed {
                    message: e.message,
                    retryable: e.retryable,
                    fatal: e.fatal,
                }),
            }
        };
        self.deliver(&ctx, outcome).await;
        // In hand until delivered: a session that ends meanwhile names it
        // to the next one, where the result is then accepted.
        ctx.hand
            .running
            .lock()
            .expect("running lock")
            .remove(&lease_id);
    }

    async fn deliver(&self, ctx: &TaskCtx, outcome: v1::task_result::Outcome) {
        // A result is worth retrying for a while: the lease holds meanwhile.
        // Past that, or refused, the session is given up, so the server
        // treats the task as a lost worker's instead of waiting on it.
        let mut wait = Duration::from_millis(50);
        let deadline = std::time::Instant::now() + RESULT_RETRY;
        loop {
            if ctx.detached.is_cancelled() {
                return;
            }
            let Ok(link) = ctx.hand.await_link(&ctx.detached, deadline).await else {
                return;
            };
            let result = v1::TaskResult {
                lease_id: ctx.task.lease_id.clone(),
                outcome: Some(outcome.clone()),
                log_lines: ctx.lines.load(Ordering::Relaxed),
            };
            match link.client.clone().complete(result).await {
                Ok(_) => return,
                Err(s)
                    if (transient(&s) || ctx.hand.moved_on(&link))
                        && std::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(2));
                }
                // Given up meanwhile: the server refused it, as it said.
                Err(_) if ctx.detached.is_cancelled() => return,
                Err(s) => {
                    eprintln!(
                        "worker {}: result of {} not delivered ({}); ending the session",
                        self.name,
                        ctx.task.lease_id,
                        s.message()
                    );
                    link.give_up.cancel();
                    return;
                }
            }
        }
    }
}

/// How long a task's result is retried before the session is given up.
const RESULT_RETRY: Duration = Duration::from_secs(60);

/// A call that may succeed if made again.
fn transient(s: &tonic::Status) -> bool {
    matches!(
        s.code(),
        // Unknown: how a connection that broke under a call shows.
        Code::Unavailable | Code::ResourceExhausted | Code::DeadlineExceeded | Code::Unknown
    )
}

/// The server refused the worker itself; reconnecting cannot help.
fn refused(e: &Error) -> bool {
    matches!(
        e.code(),
        Some(
            Code::PermissionDenied
                | Code::FailedPrecondition
                | Code::InvalidArgument
                | Code::Unauthenticated
        )
    )
}
