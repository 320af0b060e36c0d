//! The Worker service: a worker's session stream, its checkpoints and
//! results, and the list of connected workers, over the dispatcher.
//!
//! One stream per worker in both directions, rather than long polls: the
//! server must push a cancellation the moment an attempt is cancelled (an
//! emergency stop), and the inbound half doubles as the worker's liveness
//! (any message renews its leases; a closed stream loses them at once).
//! Checkpoints and results are unary calls, so each gets its own status
//! code: a worker that lost its lease is told FAILED_PRECONDITION.

use crate::audit::{Auditor, Caller};
use crate::auth::{Guard, identity};
use crate::error::{bad_request, dispatch_status};
use interlock_auth::Action;
use interlock_proto::v1::{self, worker_server::Worker};
use interlock_workers::{Board, Dispatcher, TaskResult, ToWorker};
use std::pin::Pin;
use std::sync::Arc;
use tokio_stream::{Stream, StreamExt};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

/// How often sessions are checked again when no config file changed (a
/// token past its expiry).
const RECHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

pub struct WorkerApi {
    dispatcher: Arc<Dispatcher>,
    /// Tasks between replicas (a shared store): where a worker's tasks
    /// from an earlier session are re-attached.
    board: Option<Arc<Board>>,
    audit: Auditor,
    guard: Guard,
    stop: CancellationToken,
    /// Who opened each session, with what: checked again whenever
    /// tokens.json or rbac.json changes.
    sessions: Arc<std::sync::Mutex<std::collections::HashMap<u64, SessionAuth>>>,
}

struct SessionAuth {
    who: interlock_auth::Identity,
    bearer: Option<String>,
    types: Vec<String>,
}

/// Longest a relayed task's result waits to be recorded on the board.
const RESULT_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Longest a result waits for the log lines it follows.
const LINES_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

impl WorkerApi {
    /// The service, and (with authentication on) the task that ends a
    /// session once its token is revoked or expires, or its `work` grant is
    /// gone.
    pub fn start(
        dispatcher: Arc<Dispatcher>,
        board: Option<Arc<Board>>,
        audit: Auditor,
        guard: Guard,
        stop: CancellationToken,
    ) -> Arc<Self> {
        let api = Arc::new(Self {
            dispatcher,
            board,
            audit,
            guard,
            stop,
            sessions: Default::default(),
        });
        if let Some(mut changes) = api.guard.subscribe() {
            let (this, stop) = (Arc::downgrade(&api), api.stop.clone());
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        r = changes.changed() => if r.is_err() { return },
                        // Tokens also expire without any file changing.
                        _ = tokio::time::sleep(RECHECK_EVERY) => {}
                    }
                    match this.upgrade() {
                        Some(api) => api.recheck(),
                        None => return,
                    }
                }
            });
        }
        api
    }

    /// Ends every session whose credentials or grants no longer hold.
    fn recheck(&self) {
        let mut sessions = self.sessions.lock().expect("sessions lock");
        sessions.retain(|id, a| {
            let why = if !self.guard.still_valid(a.bearer.as_deref()) {
                Some(format!("{}'s token is no longer valid", a.who))
            } else if let Some(Err(e)) = a
                .types
                .iter()
                .map(|t| self.guard.check_work(&a.who, t))
                .find(Result::is_err)
            {
                Some(e.message().to_string())
            } else {
                self.dispatcher.recheck(*id, &self.guard.roles_of(&a.who))
            };
            match why {
                Some(why) => {
                    tracing::warn!(session = id, who = %a.who, %why, "worker session ended");
                    self.dispatcher.disconnect(*id, &why);
                    false
                }
                None => true,
            }
        });
    }
}

fn to_proto(m: ToWorker) -> v1::ServerMsg {
    use v1::server_msg::Msg;
    let msg = match m {
        ToWorker::Task(t) => Msg::Task(v1::Task {
            lease_id: t.lease_id,
            workflow_id: t.workflow_id,
            workflow_name: t.workflow_name,
            block: t.block as u32,
            job: t.job as u32,
            attempt: t.attempt,
            job_type: t.job_type,
            args: t.args.into(),
            checkpoint: t.checkpoint,
            reconcile: t.reconcile,
            dispatch: t.dispatch,
            traceparent: t.traceparent.unwrap_or_default(),
        }),
        ToWorker::Cancel {
            lease_id,
            reason,
            detach,
        } => Msg::Cancel(v1::CancelTask {
            lease_id,
            reason,
            detach,
        }),
    };
    v1::ServerMsg { msg: Some(msg) }
}

fn millis(d: std::time::Duration) -> u32 {
    d.as_millis().min(u32::MAX as u128) as u32
}

type ServerStream = Pin<Box<dyn Stream<Item = Result<v1::ServerMsg, Status>> + Send>>;

#[tonic::async_trait]
impl Worker for WorkerApi {
    type SessionStream = ServerStream;

    async fn session(
        &self,
        r: Request<Streaming<v1::WorkerMsg>>,
    ) -> Result<Response<ServerStream>, Status> {
        let who = Caller::of(&r);
        let bearer = Guard::bearer(r.metadata());
        let mut inbound = r.into_inner();
        let first = tokio::time::timeout(self.dispatcher.opts().lease_ttl, inbound.message())
            .await
            .map_err(|_| {
                Status::deadline_exceeded("no hello within the worker ttl; connect again")
            })?;
        let hello = match first? {
            Some(v1::WorkerMsg {
                msg: Some(v1::worker_msg::Msg::Hello(h)),
            }) => h,
            _ => {
                return Err(bad_request(
                    "a worker's first message must be a hello naming the job types it serves",
                ));
            }
        };
        let reattaching = self.board.is_some() && !hello.held_leases.is_empty();
        let result = async {
            for t in &hello.job_types {
                self.guard.check_work(&who.who, t)?;
            }
            let roles = self.guard.roles_of(&who.who);
            // Tasks it re-attaches count against its capacity before any
            // new one is handed to it.
            let connect = if reattaching {
                Dispatcher::connect_holding
            } else {
                Dispatcher::connect
            };
            connect(
                &self.dispatcher,
                &who.identity,
                &roles,
                &hello.name,
                &hello.job_types,
                hello.capacity as usize,
            )
            .map_err(dispatch_status)
        }
        .await;
        let detail = format!(
            "worker {:?} serving {} (capacity {})",
            hello.name,
            hello.job_types.join(", "),
            hello.capacity
        );
        self.audit
            .record(who.outcome("worker.connect", &hello.name, &detail, &result))
            .await;
        let (session, rx) = result?;
        self.sessions.lock().expect("sessions lock").insert(
            session,
            SessionAuth {
                who: who.who.clone(),
                bearer,
                types: hello.job_types.clone(),
            },
        );
        // A revocation between the checks above and now is seen too.
        self.recheck();
        let d = self.dispatcher.clone();
        let stop = self.stop.clone();
        let sessions = self.sessions.clone();
        tokio::spawn(async move {
            let why = loop {
                tokio::select! {
                    m = inbound.message() => match m {
                        Ok(Some(v1::WorkerMsg { msg: Some(v1::worker_msg::Msg::Log(l)) })) => {
                            // An unknown stream name is kept as a plain log line.
                            let stream = interlock_core::LogStream::parse(&l.stream)
                                .unwrap_or(interlock_core::LogStream::Log);
                            d.log(session, &l.lease_id, stream, &l.lines);
                        }
                        Ok(Some(_)) => d.touch(session),
                        Ok(None) => break "its stream was closed".to_string(),
                        Err(e) => break format!("its stream failed: {}", e.message()),
                    },
                    _ = stop.cancelled() => {
                        // Shutting down is not losing the worker: its
                        // tasks are left for whoever resumes the workflow.
                        d.close();
                        return;
                    }
                }
            };
            d.disconnect(session, &why);
            sessions.lock().expect("sessions lock").remove(&session);
        });
        let opts = self.dispatcher.opts();
        let welcome = v1::ServerMsg {
            msg: Some(v1::server_msg::Msg::Welcome(v1::Welcome {
                session,
                heartbeat_ms: millis(opts.heartbeat),
                lease_ttl_ms: millis(opts.lease_ttl),
                // Well within both the worker's own ttl and the claim's
                // (which may have run a third of its ttl since renewed).
                reattach_ms: self
                    .board
                    .as_ref()
                    .map_or(0, |b| millis(b.claim_ttl().min(opts.lease_ttl) / 3)),
            })),
        };
        // Tasks the worker still runs from an earlier session: kept where
        // they are still wanted (before the welcome, so their leases are
        // known here when it sends their checkpoints and results); the
        // others are stopped.
        let refused = match (&self.board, hello.held_leases.is_empty()) {
            (_, true) => Vec::new(),
            (Some(b), false) => b.reattach(session, &hello.held_leases).await,
            (None, false) => hello
                .held_leases
                .iter()
                .map(|l| {
                    let why = "this server keeps no task across worker sessions: it gave the \
                               task up when the earlier session ended";
                    (l.clone(), why.to_string(), true)
                })
                .collect(),
        };
        if reattaching {
            self.dispatcher.hand_out(session);
        }
        let refused: Vec<v1::ServerMsg> = refused
            .into_iter()
            .map(|(lease_id, reason, detach)| {
                to_proto(ToWorker::Cancel {
                    lease_id,
                    reason,
                    detach,
                })
            })
            .collect();
        let tasks =
            tokio_stream::wrappers::UnboundedReceiverStream::new(rx).map(|m| Ok(to_proto(m)));
        // Ends when the session does (its sender is dropped with it), on
        // shutdown included.
        let out = tokio_stream::once(Ok(welcome))
            .chain(tokio_stream::iter(refused.into_iter().map(Ok)))
            .chain(tasks);
        Ok(Response::new(Box::pin(out)))
    }

    async fn checkpoint(
        &self,
        r: Request<v1::TaskCheckpoint>,
    ) -> Result<Response<v1::TaskAck>, Status> {
        let who = identity(&r);
        let c = r.into_inner();
        self.dispatcher
            .checkpoint(&who.to_string(), &c.lease_id, c.state)
            .await
            .map_err(dispatch_status)?;
        Ok(Response::new(v1::TaskAck {}))
    }

    async fn complete(&self, r: Request<v1::TaskResult>) -> Result<Response<v1::TaskAck>, Status> {
        let who = Caller::of(&r);
        let t = r.into_inner();
        use v1::task_result::Outcome;
        let (result, summary) = match t.outcome {
            Some(Outcome::Done(d)) => (TaskResult::Done(d.outputs), "done".to_string()),
            Some(Outcome::Failed(f)) => {
                let s = format!("failed: {}", f.message);
                (
                    TaskResult::Failed {
                        message: f.message,
                        retryable: f.retryable,
                        fatal: f.fatal,
                    },
                    s,
                )
            }
            Some(Outcome::NotDone(_)) => (TaskResult::NotDone, "reconciled: not done".into()),
            Some(Outcome::Unknown(why)) => {
                let s = format!("reconciled: unknown: {why}");
                (TaskResult::Unknown(why), s)
            }
            None => return Err(bad_request("a task result needs an outcome")),
        };
        // The task's log lines first, so they are recorded before its end.
        self.dispatcher
            .await_lines(&t.lease_id, t.log_lines, LINES_WAIT)
            .await;
        let mut result = self
            .dispatcher
            .complete(&who.identity, &t.lease_id, result)
            .map_err(dispatch_status);
        // A relayed task's result is acknowledged once its owner can read
        // it: if the task moved to another replica meanwhile (the worker
        // re-attached it there), the worker sends it again there.
        if let Ok((_, _, delivered)) = &mut result
            && let Some(d) = delivered.take()
            && !d.recorded(RESULT_WAIT).await
        {
            result = Err(Status::unavailable(
                "the result could not be recorded here (the task moved to another replica, or \
                 the store did not answer); send it again on the next session",
            ));
        }
        let target = match &result {
            Ok((spec, _, _)) => spec.workflow_id.clone(),
            Err(_) => String::new(),
        };
        let detail = match &result {
            Ok((spec, worker, _)) => format!(
                "worker {worker:?}: block {} job {} ({}) attempt {}: {summary} (lease {})",
                spec.block, spec.job, spec.job_type, spec.attempt, t.lease_id
            ),
            Err(_) => format!("lease {}: {summary}", t.lease_id),
        };
        self.audit
            .record(who.outcome("task.complete", &target, &detail, &result))
            .await;
        result.map(|_| Response::new(v1::TaskAck {}))
    }

    async fn list_workers(
        &self,
        r: Request<v1::ListWorkersReq>,
    ) -> Result<Response<v1::ListWorkersResp>, Status> {
        self.guard.check_any(&identity(&r), Action::Read)?;
        let ts = |t: std::time::SystemTime| {
            let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            crate::convert::ts(Some(d.as_micros() as i64))
        };
        let workers = self
            .dispatcher
            .sessions()
            .into_iter()
            .map(|s| v1::WorkerInfo {
                session: s.id,
                identity: s.identity,
                name: s.name,
                job_types: s.types,
                capacity: s.capacity as u32,
                leased: s.leased as u32,
                connected: ts(s.connected),
                idle_ms: millis(s.idle_for),
            })
            .collect();
        let waiting = self
            .dispatcher
            .waiting()
            .into_iter()
            .map(|w| v1::WaitingTask {
                workflow_id: w.workflow_id,
                block: w.block as u32,
                job: w.job as u32,
                job_type: w.job_type,
                since: ts(w.since),
            })
            .collect();
        Ok(Response::new(v1::ListWorkersResp { workers, waiting }))
    }
}
