//! The claimer's side of the board: takes posted attempts for this
//! replica's free workers, runs each through the local [`Dispatcher`](crate::dispatch::Dispatcher) with
//! a context whose checkpoints and log lines go to the task's row (fenced
//! by the claim), and reports how it ended.
//!
//! A task is claimed only when a local worker has room for it, so tasks
//! wait on the board (where any replica can take them) rather than in one
//! replica's queue. The worker gets the claim's lease id: when its replica
//! goes away (a rolling restart, a crash) it re-attaches the tasks it
//! still runs to whichever replica it reconnects to, which takes the
//! claims over ([`Board::reattach`]). A relayed task whose worker is lost
//! goes back to its owner as lost, after a claim ttl in which the worker
//! may still re-attach; one this replica lets go of (shutdown, or the
//! owner took it back) is not reported at all: its claim lapses unless
//! the worker re-attaches elsewhere.

use super::{Board, Outcome, Side, Spec};
use crate::dispatch::{Relay, Relayed};
use async_trait::async_trait;
use interlock_core::{LogLine, LogStream};
use interlock_engine::{JobCtx, JobError, JobSink};
use interlock_store::{BoardReport, BoardTask, TaskKey};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Lines a relayed attempt buffers before the oldest are dropped.
const MAX_BUFFERED_LINES: usize = 1024;

/// What this replica holds for its workers.
#[derive(Default)]
pub(super) struct Claims {
    /// By task and claim: a newer claim of a task (a re-attach, a retry)
    /// may start here before an older one has wound down.
    held: Mutex<HashMap<(TaskKey, i64), Held>>,
    /// A local worker may have room again.
    kick: Notify,
    /// Everything held is done reporting (shutdown waits for it).
    drained: Notify,
    /// When this replica last renewed its claims (or had none to renew).
    renewed: Mutex<Option<tokio::time::Instant>>,
}

struct Held {
    /// Stops the worker's run (it is told why by the dispatcher).
    cancel: CancellationToken,
    /// Set with `cancel` when this replica lets go of the task (shutdown,
    /// or its claim moved): the run's end is not reported.
    let_go: CancellationToken,
    /// Set with `cancel` when the worker should leave external work under
    /// way for whoever goes on with the task (shutdown).
    detach: CancellationToken,
}

impl Claims {
    pub async fn kicked(&self) {
        self.kick.notified().await
    }

    /// Have posted tasks claimed (once, however often this is called
    /// before the claim runs).
    pub fn kick(&self) {
        self.kick.notify_one();
    }

    fn keys(&self) -> Vec<TaskKey> {
        let held = self.held.lock().expect("held lock");
        let keys: std::collections::BTreeSet<TaskKey> =
            held.keys().map(|(k, _)| k.clone()).collect();
        keys.into_iter().collect()
    }

    /// Stops the workers of every task of workflow `id` (it ended).
    pub fn workflow_ended(&self, id: &str) {
        for (_, h) in self
            .held
            .lock()
            .expect("held lock")
            .iter()
            .filter(|((k, _), _)| k.workflow_id == id)
        {
            h.cancel.cancel();
        }
    }
}

impl Board {
    fn replica(&self) -> &str {
        self.replica.get().map(String::as_str).unwrap_or("")
    }

    /// Claims as many posted tasks as local workers have room for, and
    /// waits until each is in the dispatcher's tables (so the next look
    /// at the room counts them).
    pub(super) async fn claim(self: &Arc<Self>) {
        self.release_stranded();
        let room = self.dispatcher.room();
        if room.is_empty() || self.replica().is_empty() {
            return;
        }
        let mut registered = Vec::new();
        // Per type, as many as its workers have room for: a task waits on
        // the board (where any replica can take it), not in a queue here.
        for (job_type, n) in room {
            // Unguessable: the lease ids of this claim start with it.
            let prefix = uuid::Uuid::now_v7().simple().to_string();
            let tasks = match self
                .store
                .board_claim(
                    self.replica(),
                    std::slice::from_ref(&job_type),
                    n,
                    self.opts.claim_ttl,
                    &prefix,
                )
                .await
            {
                Ok(tasks) => tasks,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot claim tasks from the board");
                    return;
                }
            };
            for t in tasks {
                let (tx, rx) = tokio::sync::oneshot::channel();
                tokio::spawn(self.clone().relay(t, None, tx));
                registered.push(rx);
            }
        }
        // In the tables before the room is looked at again.
        for r in registered {
            let _ = r.await;
        }
    }

    /// Gives back the claimed tasks that wait here for a worker no longer
    /// connected here.
    fn release_stranded(&self) {
        let n = self.dispatcher.release_stranded();
        if n > 0 {
            tracing::info!(
                tasks = n,
                "tasks no worker here can take go back on the board"
            );
        }
    }

    /// A worker that just opened `session` here still runs the tasks under
    /// `leases` (its replica went away, or its connection broke): each
    /// claim whose task is still wanted moves here and goes on. Returns
    /// the leases it cannot keep: why, and whether the worker should only
    /// let go (`true`: someone else decides) or stop (cancelled).
    pub async fn reattach(
        self: &Arc<Self>,
        session: u64,
        leases: &[String],
    ) -> Vec<(String, String, bool)> {
        let mut refused = Vec::new();
        for lease in leases {
            let (why, detach) = match self
                .store
                .board_reattach(lease, self.replica(), self.opts.claim_ttl)
                .await
            {
                Ok(Some(t)) if t.cancel.is_some() => {
                    let why = t.cancel.unwrap_or_default();
                    (format!("the attempt was cancelled: {why}"), false)
                }
                Ok(Some(t)) => {
                    tracing::info!(workflow = %t.key.workflow_id, block = t.key.block,
                        job = t.key.job, session, "a worker re-attached a task it runs");
                    let (tx, registered) = tokio::sync::oneshot::channel();
                    tokio::spawn(self.clone().relay(t, Some(session), tx));
                    // Its lease is known here before the worker is welcomed
                    // (and sends a checkpoint or result under it).
                    if registered.await.unwrap_or(false) {
                        continue;
                    }
                    (
                        "it cannot go on here (see the server's log)".to_string(),
                        true,
                    )
                }
                Ok(None) => (
                    "the task ended, went to another worker, or its claim lapsed".to_string(),
                    true,
                ),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot re-attach a task");
                    ("the task board cannot be read".to_string(), true)
                }
            };
            refused.push((lease.clone(), why, detach));
        }
        refused
    }

    /// Renews the claims held here. A replica that could not renew them
    /// for a claim ttl stops its workers' tasks: their owners have decided
    /// them (posted again, or Interrupted) by now.
    pub(super) async fn renew(&self) {
        let keys = self.claims.keys();
        let began = tokio::time::Instant::now();
        let renewing = self
            .store
            .board_renew(self.replica(), &keys, self.opts.claim_ttl);
        let ok = keys.is_empty()
            || match tokio::time::timeout(self.opts.claim_ttl / 3, renewing).await {
                Ok(Ok(())) => true,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "cannot renew this replica's claims on the board");
                    false
                }
                Err(_) => {
                    tracing::warn!("renewing this replica's claims on the board timed out");
                    false
                }
            };
        let mut renewed = self.claims.renewed.lock().expect("renewed lock");
        let now = tokio::time::Instant::now();
        if ok {
            // Good from when the renewal was asked for.
            *renewed = Some(began);
            return;
        }
        let last = *renewed.get_or_insert(now);
        if now.duration_since(last) >= self.opts.claim_ttl {
            tracing::warn!(
                tasks = keys.len(),
                "claims lapsed unrenewed: stopping their workers"
            );
            for h in self.claims.held.lock().expect("held lock").values() {
                h.let_go.cancel();
                h.cancel.cancel();
            }
        }
    }

    /// Lets go of every task held here (shutting down) without deciding
    /// anything: workers reconnect elsewhere and re-attach their tasks, and
    /// a claim nobody re-attaches lapses for its owner to decide. Sessions
    /// end first, so no worker is told to stop.
    pub async fn close(&self) {
        self.dispatcher.close();
        // A full ttl from now for the workers to re-attach elsewhere.
        self.renew().await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        loop {
            let drained = self.claims.drained.notified();
            {
                let held = self.claims.held.lock().expect("held lock");
                if held.is_empty() {
                    return;
                }
                for h in held.values() {
                    h.let_go.cancel();
                    h.detach.cancel();
                    h.cancel.cancel();
                }
            }
            if tokio::time::timeout_at(deadline, drained).await.is_err() {
                return;
            }
        }
    }

    /// Runs one claimed task on a local worker (or goes on with the one a
    /// worker re-attached on session `attached`) and reports how it ended.
    /// `registered` is told once the task is in the dispatcher's tables.
    async fn relay(
        self: Arc<Self>,
        t: BoardTask,
        attached: Option<u64>,
        registered: tokio::sync::oneshot::Sender<bool>,
    ) {
        let key = t.key.clone();
        let claim = t.claim;
        let (report, ack) = match self.relay_run(&t, attached, registered).await {
            Ok(outcome) => outcome,
            Err(why) => (
                Some(BoardReport::Lost {
                    why,
                    grace: self.opts.claim_ttl,
                }),
                None,
            ),
        };
        let mut recorded = false;
        if let Some(report) = report {
            for _ in 0..3 {
                match self
                    .store
                    .board_report(&key, claim, report.clone(), Self::now())
                    .await
                {
                    Ok(held) => {
                        recorded = held;
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot report a relayed task; trying again");
                        tokio::time::sleep(self.opts.poll).await;
                    }
                }
            }
        }
        // The worker's Complete call waits for this: a result this claim
        // could not record goes again to wherever the task is now.
        if let Some(ack) = ack {
            let _ = ack.send(recorded);
        }
        // No longer renewed: unreported, the claim lapses for the owner.
        let mut held = self.claims.held.lock().expect("held lock");
        held.remove(&(key, claim));
        if held.is_empty() {
            self.claims.drained.notify_waiters();
        }
        drop(held);
        self.claims.kick.notify_one();
    }

    /// How the relayed run ended, to report (none when this replica let
    /// go of it), and who waits to hear the worker's result was recorded;
    /// `Err` when it could not run here at all.
    async fn relay_run(
        self: &Arc<Self>,
        t: &BoardTask,
        attached: Option<u64>,
        registered: tokio::sync::oneshot::Sender<bool>,
    ) -> Result<
        (
            Option<BoardReport>,
            Option<tokio::sync::oneshot::Sender<bool>>,
        ),
        String,
    > {
        let here = self.replica().to_string();
        if let Some(session) = attached
            && !self.dispatcher.serves(session, &t.job_type)
        {
            return Err(format!(
                "the worker that re-attached it does not serve {:?}",
                t.job_type
            ));
        }
        let spec: Spec = serde_json::from_str(&t.spec)
            .map_err(|e| format!("replica {here} cannot read the task ({e})"))?;
        let decl = self
            .dispatcher
            .declarations()
            .get(&t.job_type)
            .cloned()
            .ok_or_else(|| {
                format!(
                    "job type {:?} is not declared on replica {here}",
                    t.job_type
                )
            })?;
        let (cancel, let_go, detach) = (
            CancellationToken::new(),
            CancellationToken::new(),
            CancellationToken::new(),
        );
        self.claims.held.lock().expect("held lock").insert(
            (t.key.clone(), t.claim),
            Held {
                cancel: cancel.clone(),
                let_go: let_go.clone(),
                detach: detach.clone(),
            },
        );
        let watching = self.watching(&t.key, Side::Claimer);
        // What changed between the claim and now (a cancel committed then
        // woke nobody).
        let still = |row: &Option<BoardTask>| {
            row.as_ref().is_some_and(|r| {
                r.claim == t.claim && r.claimed_by.as_deref() == Some(here.as_str())
            })
        };
        match self.store.board_task(&t.key).await {
            Ok(row) if !still(&row) => return Ok((None, None)),
            Ok(Some(row)) if row.cancel.is_some() => cancel.cancel(),
            _ => {}
        }
        let sink = Arc::new(ClaimSink {
            board: self.clone(),
            key: t.key.clone(),
            claim: t.claim,
            let_go: let_go.clone(),
            lines: Mutex::default(),
            pending: Notify::new(),
            shipping: tokio::sync::Mutex::new(()),
        });
        let mut ctx = JobCtx::detached(&t.key.workflow_id, t.key.block, t.key.job);
        ctx.workflow_name = spec.name.clone();
        ctx.attempt = t.attempt;
        ctx.cancel = cancel.clone();
        ctx.detaching = detach.clone();
        ctx.checkpoint = t.checkpoint.clone();
        ctx.traceparent = spec.traceparent.clone();
        let ctx = ctx.with_sink(sink.clone());
        let job = interlock_core::Job {
            name: t.job_type.clone(),
            args: spec.args.clone(),
            ..Default::default()
        };
        let relay = Relay {
            reconcile: spec.reconcile,
            lease: t
                .lease
                .clone()
                .unwrap_or_else(|| uuid::Uuid::now_v7().to_string()),
            attached,
            registered: Some(registered),
        };
        let run = self.dispatcher.run_relayed(&ctx, &decl, &job, relay);
        tokio::pin!(run);
        let ended = loop {
            tokio::select! {
                r = &mut run => break r,
                _ = sink.pending.notified() => sink.ship().await,
                _ = watching.notify.notified() => {
                    match self.store.board_task(&t.key).await {
                        Ok(row) if !still(&row) => {
                            // The owner took it back or ended the attempt:
                            // the worker stops, and nothing more lands.
                            let_go.cancel();
                            cancel.cancel();
                        }
                        Ok(Some(row)) if row.cancel.is_some() => cancel.cancel(),
                        _ => {}
                    }
                }
            }
        };
        sink.ship().await;
        let (report, ack) = match ended {
            Relayed::Ended(r, ack) => (
                BoardReport::Result(
                    serde_json::to_string(&Outcome::of(&r)).expect("plain data serializes"),
                ),
                ack,
            ),
            Relayed::Lost(why) => (
                BoardReport::Lost {
                    why,
                    grace: self.opts.claim_ttl,
                },
                None,
            ),
            Relayed::Released => (BoardReport::Release, None),
        };
        // Let go of: a result from the worker is still worth trying (the
        // claim decides whether it lands), nothing else is.
        if let_go.is_cancelled() && ack.is_none() {
            return Ok((None, None));
        }
        Ok((Some(report), ack))
    }
}

/// Where a relayed attempt's checkpoints and lines go: its row.
struct ClaimSink {
    board: Arc<Board>,
    key: TaskKey,
    claim: i64,
    let_go: CancellationToken,
    lines: Mutex<Vec<LogLine>>,
    /// Lines wait to be shipped.
    pending: Notify,
    /// One shipment at a time, so lines stay in order.
    shipping: tokio::sync::Mutex<()>,
}

impl ClaimSink {
    async fn ship(&self) {
        let _one = self.shipping.lock().await;
        let lines = std::mem::take(&mut *self.lines.lock().expect("lines lock"));
        if lines.is_empty() {
            return;
        }
        let report = BoardReport::Lines {
            lines,
            keep: self.board.opts.keep_lines,
        };
        if let Err(e) = self
            .board
            .store
            .board_report(&self.key, self.claim, report, Board::now())
            .await
        {
            tracing::warn!(error = %e, "cannot record a relayed task's log lines");
        }
    }
}

#[async_trait]
impl JobSink for ClaimSink {
    async fn checkpoint(&self, state: String) -> Result<(), JobError> {
        match self
            .board
            .store
            .board_report(
                &self.key,
                self.claim,
                BoardReport::Checkpoint(state),
                Board::now(),
            )
            .await
        {
            Ok(true) => Ok(()),
            Ok(false) => Err(JobError::new(
                "cannot save checkpoint: this replica no longer holds the task",
            )),
            Err(e) => Err(JobError::new(format!("cannot save checkpoint: {e}"))),
        }
    }

    fn holds_lease(&self) -> bool {
        !self.let_go.is_cancelled()
    }

    fn log(&self, stream: LogStream, text: &str) {
        if self.board.opts.keep_lines == 0 {
            return;
        }
        let mut lines = self.lines.lock().expect("lines lock");
        if lines.len() >= MAX_BUFFERED_LINES {
            lines.remove(0);
            metrics::counter!("interlock_job_log_lines_dropped_total").increment(1);
        }
        lines.push(LogLine {
            seq: 0,
            block: self.key.block,
            job: self.key.job,
            attempt: 0,
            n: 0,
            at: Board::now(),
            stream,
            text: interlock_core::log::clean_line(text),
        });
        drop(lines);
        self.pending.notify_one();
    }

    async fn flush_logs(&self) {
        self.ship().await;
    }
}
