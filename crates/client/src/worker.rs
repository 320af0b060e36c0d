//! A worker: serves job types declared in the server's jobs.json with
//! async handlers, one task per handler call.
//!
//! The worker keeps one session open (reconnecting with backoff when it
//! drops), sends heartbeats at the interval the server asks for, runs each
//! task it is handed in its own tokio task, and reports the handler's
//! result. A task's [`TaskCtx::cancel`] fires when the server cancels it
//! (Cancel, emergency stop, deadline) or the session is lost (the server
//! then re-dispatches, reconciles or interrupts it: the result of this run
//! would be refused anyway).
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
/// Tasks in hand by lease id: their cancel and detach tokens.
type Running = HashMap<String, (CancellationToken, CancellationToken)>;

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
    /// cancelling it: this worker's session ended (the server re-dispatches,
    /// reconciles or interrupts the task), or the server is shutting down
    /// or lost the workflow. External work under way may be left running,
    /// to be re-attached by the next run (it gets the checkpoint), rather
    /// than undone.
    pub detached: CancellationToken,
    client: WorkerClient<Transport>,
    /// The session's upward stream, for log lines.
    session: mpsc::Sender<v1::WorkerMsg>,
    /// Log lines sent for this task (the result tells the server).
    lines: Arc<std::sync::atomic::AtomicU64>,
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
    /// session's stream full is dropped (the server's line numbers show
    /// the gap).
    pub fn log(&self, text: impl Into<String>) {
        self.log_to("log", text);
    }

    /// [`TaskCtx::log`] for a line of a command's output: `stream` is
    /// "stdout" or "stderr".
    pub fn log_to(&self, stream: &str, text: impl Into<String>) {
        let sent = self.session.try_send(v1::WorkerMsg {
            msg: Some(v1::worker_msg::Msg::Log(v1::TaskLog {
                lease_id: self.task.lease_id.clone(),
                stream: stream.to_string(),
                lines: vec![text.into()],
            })),
        });
        if sent.is_ok() {
            self.lines
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Durably saves `state` before acting on it; fails when this worker no
    /// longer holds the task (then stop without acting).
    pub async fn checkpoint(&self, state: impl Into<String>) -> Result<(), Error> {
        self.client
            .clone()
            .checkpoint(v1::TaskCheckpoint {
                lease_id: self.task.lease_id.clone(),
                state: state.into(),
            })
            .await?;
        Ok(())
    }
}

/// A worker process's connection to Interlock.
pub struct Worker {
    addr: String,
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
            addr: addr.to_string(),
            opts,
            name: name.to_string(),
            capacity: 1,
            run: HashMap::new(),
            reconcile: HashMap::new(),
        }
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

    /// Serves until `stop` fires, reconnecting whenever the session drops.
    /// Returns an error only when the server refuses the worker itself
    /// (undeclared type, missing grant, bad credentials): retrying cannot
    /// fix that.
    pub async fn run(self, stop: CancellationToken) -> Result<(), Error> {
        let this = Arc::new(self);
        let mut failures = 0u32;
        while !stop.is_cancelled() {
            let began = std::time::Instant::now();
            match this.clone().session(&stop).await {
                Ok(()) => failures = 0,
                Err(e) if refused(&e) => return Err(e),
                Err(e) => {
                    // A session that lasted a while was a success that ended.
                    if began.elapsed() > Duration::from_secs(30) {
                        failures = 0;
                    }
                    failures += 1;
                    eprintln!("worker {}: session lost: {e}; reconnecting", this.name);
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
        Ok(())
    }

    /// One session: hello, then tasks until the stream ends or `stop`.
    async fn session(self: Arc<Self>, stop: &CancellationToken) -> Result<(), Error> {
        let mut client = WorkerClient::new(transport(&self.addr, &self.opts).await?);
        // Room for bursts of log lines beside the heartbeats.
        let (tx, rx) = mpsc::channel(1_024);
        let mut types: Vec<String> = self.run.keys().cloned().collect();
        types.sort();
        let hello = v1::WorkerMsg {
            msg: Some(v1::worker_msg::Msg::Hello(v1::WorkerHello {
                name: self.name.clone(),
                job_types: types,
                capacity: self.capacity,
            })),
        };
        tx.send(hello).await.expect("receiver held below");
        let mut inbound = client
            .session(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await?
            .into_inner();
        let heartbeat = match inbound.message().await? {
            Some(v1::ServerMsg {
                msg: Some(v1::server_msg::Msg::Welcome(w)),
            }) => Duration::from_millis(u64::from(w.heartbeat_ms.max(10))),
            _ => {
                return Err(Error::Rpc(tonic::Status::internal(
                    "no welcome from the server",
                )));
            }
        };
        let ended = CancellationToken::new();
        let _end = ended.clone().drop_guard();
        let upward = tx.clone();
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
        let running: Arc<Mutex<Running>> = Arc::default();
        let give_up = CancellationToken::new();
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
                        let detached = ended.child_token();
                        let cancel = detached.child_token();
                        running
                            .lock()
                            .expect("running lock")
                            .insert(task.lease_id.clone(), (cancel.clone(), detached.clone()));
                        let ctx = TaskCtx {
                            task,
                            cancel,
                            detached,
                            client: client.clone(),
                            session: upward.clone(),
                            lines: Arc::default(),
                        };
                        tokio::spawn(self.clone().serve(
                            ctx,
                            running.clone(),
                            ended.clone(),
                            give_up.clone(),
                        ));
                    }
                    v1::server_msg::Msg::Cancel(c) => {
                        if let Some((cancel, detached)) =
                            running.lock().expect("running lock").get(&c.lease_id)
                        {
                            if c.detach {
                                detached.cancel();
                            } else {
                                cancel.cancel();
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
        // Tasks of a lost session stop: the server has given them up.
        ended.cancel();
        result
    }

    /// Runs one task and reports its end, unless the session ended first:
    /// the server has then given the task up (re-dispatched, reconciled or
    /// interrupted it), and a "cancelled" result would only be refused.
    async fn serve(
        self: Arc<Self>,
        ctx: TaskCtx,
        running: Arc<Mutex<Running>>,
        ended: CancellationToken,
        give_up: CancellationToken,
    ) {
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
        running.lock().expect("running lock").remove(&lease_id);
        if ended.is_cancelled() {
            return;
        }
        let result = v1::TaskResult {
            lease_id,
            outcome: Some(outcome),
            log_lines: ctx.lines.load(std::sync::atomic::Ordering::Relaxed),
        };
        // A result is worth retrying for a while: the lease holds meanwhile.
        // Past that, or refused, the session is given up, so the server
        // treats the task as a lost worker's instead of waiting on it.
        let mut wait = Duration::from_millis(50);
        let deadline = std::time::Instant::now() + RESULT_RETRY;
        loop {
            match ctx.client.clone().complete(result.clone()).await {
                Ok(_) => return,
                Err(s) if transient(&s) && std::time::Instant::now() < deadline => {
                    tokio::select! {
                        _ = ended.cancelled() => return,
                        _ = tokio::time::sleep(wait) => {}
                    }
                    wait = (wait * 2).min(Duration::from_secs(2));
                }
                Err(s) => {
                    eprintln!(
                        "worker {}: result of {} not delivered ({}); ending the session",
                        self.name,
                        result.lease_id,
                        s.message()
                    );
                    give_up.cancel();
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
        Code::Unavailable | Code::ResourceExhausted | Code::DeadlineExceeded
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
