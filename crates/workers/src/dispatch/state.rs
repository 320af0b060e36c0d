//! The dispatcher's tables and the moves between them, all made under the
//! dispatcher's one lock: sessions, tasks, leases and per-type queues.

use super::{DispatchError, ToWorker};
use interlock_engine::{JobCtx, JobError, Outputs};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::SystemTime;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

pub(super) struct Session {
    pub identity: String,
    /// The roles bound to the identity when last checked.
    pub roles: Vec<String>,
    pub name: String,
    pub types: BTreeSet<String>,
    pub capacity: usize,
    pub leased: BTreeSet<u64>,
    pub tx: mpsc::UnboundedSender<ToWorker>,
    pub last_seen: Instant,
    pub connected: SystemTime,
    /// Nothing new is handed out yet (its re-attached tasks come first).
    pub holding: bool,
}

pub(super) struct Task {
    pub spec: super::TaskSpec,
    pub safe: bool,
    pub reconcilable: bool,
    /// The lease in force: (session, lease id).
    pub lease: Option<(u64, String)>,
    pub queued_since: SystemTime,
    /// Where checkpoints go (the attempt's own context).
    pub ctx: JobCtx,
    pub done: Option<oneshot::Sender<Ended>>,
    /// Claimed from the task board for another replica's workflow: a lost
    /// worker hands it back to that workflow's owner, who decides.
    pub relayed: bool,
    /// The lease id its next dispatch gets (the board's, which the worker
    /// can re-attach with) instead of a fresh one.
    pub next_lease: Option<String>,
    /// Held while a checkpoint of the task is being written: the task is
    /// not handed to another worker meanwhile, so a lost worker's last
    /// write cannot land over its successor's.
    pub writing: Arc<tokio::sync::Mutex<()>>,
    /// Log lines received under the current lease (a result says how many
    /// it follows, and waits for them).
    pub lines: u64,
}

/// How a task left the dispatcher.
#[derive(Debug)]
pub enum Ended {
    /// Its worker's result (or the server's verdict when the worker was
    /// lost: interrupted).
    Result(Result<Outputs, JobError>),
    /// Its worker was lost, and the task was relayed: why.
    Lost(String),
    /// Relayed, and given back before any worker had it.
    Released,
    /// A relayed task's worker result; the sender hears whether it was
    /// recorded on the board.
    Delivered(Result<Outputs, JobError>, oneshot::Sender<bool>),
}

#[derive(Default)]
pub(super) struct State {
    pub sessions: HashMap<u64, Session>,
    pub tasks: HashMap<u64, Task>,
    /// Lease id → task.
    pub leases: HashMap<String, u64>,
    pub queues: HashMap<String, VecDeque<u64>>,
    /// One checkpoint writer lock per job (workflow, block, job), shared by
    /// its attempts: an abandoned attempt's last write and the next
    /// attempt's writes are ordered.
    pub writers: HashMap<(String, usize, usize), std::sync::Weak<tokio::sync::Mutex<()>>>,
    pub next: u64,
    /// The server is shutting down: nothing is handed out, and a closed
    /// session's tasks are left for recovery rather than decided here.
    pub closing: bool,
}

impl State {
    /// The checkpoint writer lock of a job, shared while anyone holds it.
    pub fn writer(&mut self, key: (String, usize, usize)) -> Arc<tokio::sync::Mutex<()>> {
        if let Some(w) = self.writers.get(&key).and_then(std::sync::Weak::upgrade) {
            return w;
        }
        let w = Arc::new(tokio::sync::Mutex::new(()));
        self.writers.insert(key, Arc::downgrade(&w));
        w
    }

    /// The task (and session) under `lease_id`, if `identity` holds it now.
    pub fn lease_of(&self, identity: &str, lease_id: &str) -> Result<(u64, u64), DispatchError> {
        if self.closing {
            return Err(DispatchError::Closing);
        }
        let lost = || DispatchError::LeaseLost(lease_id.to_string());
        let id = *self.leases.get(lease_id).ok_or_else(lost)?;
        let (session, held) = self
            .tasks
            .get(&id)
            .and_then(|t| t.lease.clone())
            .ok_or_else(lost)?;
        match self.sessions.get(&session) {
            Some(s) if s.identity == identity && held == lease_id => Ok((id, session)),
            _ => Err(lost()),
        }
    }

    /// Hands queued tasks of `job_type` to sessions with room.
    pub fn pump(&mut self, job_type: &str) {
        while !self.closing {
            let Some(&id) = self.queues.get(job_type).and_then(|q| q.front()) else {
                return;
            };
            // A checkpoint of it is being written: it goes out once the
            // write is over (the writer pumps again).
            if self
                .tasks
                .get(&id)
                .is_some_and(|t| t.writing.try_lock().is_err())
            {
                return;
            }
            let Some(session) = self
                .sessions
                .iter()
                .filter(|(_, s)| {
                    s.types.contains(job_type) && !s.holding && s.leased.len() < s.capacity
                })
                .min_by_key(|(sid, s)| (s.leased.len(), **sid))
                .map(|(sid, _)| *sid)
            else {
                return;
            };
            self.queues.get_mut(job_type).expect("queue").pop_front();
            let Some(task) = self.tasks.get_mut(&id) else {
                continue;
            };
            let lease_id = task
                .next_lease
                .take()
                .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
            task.spec.lease_id = lease_id.clone();
            task.spec.dispatch += 1;
            task.lease = Some((session, lease_id.clone()));
            task.lines = 0;
            let spec = task.spec.clone();
            self.leases.insert(lease_id, id);
            let s = self.sessions.get_mut(&session).expect("session");
            s.leased.insert(id);
            metrics::counter!("interlock_worker_dispatches_total").increment(1);
            if s.tx.send(ToWorker::Task(spec)).is_err() {
                // The stream is gone; the session is lost when its end is
                // seen. Until then the lease stands, as for a silent worker.
                tracing::debug!(session, "task sent to a closed worker stream");
            }
        }
    }

    /// Pumps every type `session` serves (it has room again).
    pub fn pump_session(&mut self, session: u64) {
        let types: Vec<String> = match self.sessions.get(&session) {
            Some(s) => s.types.iter().cloned().collect(),
            None => return,
        };
        for t in types {
            self.pump(&t);
        }
    }

    /// Removes task `id` (its attempt is over), and its job's writer lock
    /// once nothing else holds it.
    pub fn remove_task(&mut self, id: u64) -> Option<Task> {
        let t = self.tasks.remove(&id)?;
        if let Some(q) = self.queues.get_mut(&t.spec.job_type) {
            q.retain(|x| *x != id);
        }
        if Arc::strong_count(&t.writing) == 1 {
            self.writers
                .remove(&(t.spec.workflow_id.clone(), t.spec.block, t.spec.job));
        }
        Some(t)
    }

    /// Forgets lease id `lease` if it still names task `id` (a board's
    /// lease id can name a newer relay of the same task by now).
    fn drop_lease(&mut self, lease: &str, id: u64) {
        if self.leases.get(lease) == Some(&id) {
            self.leases.remove(lease);
        }
    }

    /// Ends task `id`'s lease; tells its worker to stop (with `reason`) if
    /// the worker still holds it.
    pub fn unlease(&mut self, id: u64, reason: Option<&str>) {
        if let Some(reason) = reason {
            self.push_cancel(id, reason, false);
        }
        let Some((session, lease_id)) = self.tasks.get_mut(&id).and_then(|t| t.lease.take()) else {
            return;
        };
        self.drop_lease(&lease_id, id);
        if let Some(s) = self.sessions.get_mut(&session) {
            s.leased.remove(&id);
        }
        self.pump_session(session);
    }

    /// Tells the worker holding task `id` to stop; false when none holds it.
    pub fn push_cancel(&self, id: u64, reason: &str, detach: bool) -> bool {
        let Some((session, lease_id)) = self.tasks.get(&id).and_then(|t| t.lease.clone()) else {
            return false;
        };
        self.sessions.get(&session).is_some_and(|s| {
            s.tx.send(ToWorker::Cancel {
                lease_id,
                reason: reason.to_string(),
                detach,
            })
            .is_ok()
        })
    }

    /// Removes a lost session and decides the fate of each task it held.
    pub fn lose(&mut self, session: u64, why: &str) {
        let Some(s) = self.sessions.remove(&session) else {
            return;
        };
        if self.closing {
            // Left as they are (their runs stop detached, and whoever
            // resumes the workflow decides).
            for id in s.leased {
                if let Some((_, lease_id)) = self.tasks.get_mut(&id).and_then(|t| t.lease.take()) {
                    self.drop_lease(&lease_id, id);
                }
            }
            return;
        }
        tracing::warn!(session, identity = %s.identity, name = %s.name, %why, tasks = s.leased.len(), "worker lost");
        metrics::counter!("interlock_workers_lost_total").increment(1);
        let mut requeue: Vec<(String, u64)> = Vec::new();
        // In the order they were handed out, so they go back in that order.
        let mut held: Vec<u64> = s.leased.into_iter().collect();
        held.sort_unstable();
        for id in held {
            let Some(lease_id) = self.tasks.get_mut(&id).and_then(|t| t.lease.take()) else {
                continue;
            };
            self.drop_lease(&lease_id.1, id);
            let task = self.tasks.get_mut(&id).expect("looked up above");
            let what = format!("worker {:?} ({}) was lost: {why}", s.name, s.identity);
            if task.relayed {
                if let Some(tx) = task.done.take() {
                    let _ = tx.send(Ended::Lost(what));
                }
                continue;
            }
            if task.safe {
                tracing::info!(workflow = %task.spec.workflow_id, block = task.spec.block,
                    job = task.spec.job, "{what}; the task is safe to re-run and is queued again");
            } else if task.reconcilable {
                // Without a checkpoint it never acted (the promise of a
                // reconcilable type): it simply runs again.
                task.spec.reconcile = task.spec.checkpoint.is_some();
            } else {
                if let Some(tx) = task.done.take() {
                    let _ = tx.send(Ended::Result(Err(JobError::interrupted(format!(
                        "{what}, while running it; it is not safe to run twice and cannot \
                         tell whether it took effect"
                    )))));
                }
                continue;
            }
            requeue.push((task.spec.job_type.clone(), id));
        }
        // Ahead of newer work, in their own order.
        for (t, id) in requeue.iter().rev() {
            self.queues.entry(t.clone()).or_default().push_front(*id);
        }
        let types: BTreeSet<String> = requeue.into_iter().map(|(t, _)| t).collect();
        for t in types {
            self.pump(&t);
        }
    }
}
