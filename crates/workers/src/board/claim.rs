//! The claimer's side of the board: takes posted attempts for this
//! replica's free workers, runs each through the local [`Dispatcher`] with
//! a context whose checkpoints and log lines go to the task's row (fenced
//! by the claim), and reports how it ended.
//!
//! A task is claimed only when a local worker has room for it, so tasks
//! wait on the board (where any replica can take them) rather than in one
//! replica's queue. A relayed task whose worker is lost goes back to its
//! owner as lost; one this replica lets go of (shutdown, or the owner took
//! it back) is reported lost too, never as an outcome.

use super::{Board, Outcome, Side, Spec};
use crate::dispatch::{Dispatcher, Relayed};
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
    held: Mutex<HashMap<TaskKey, Held>>,
    /// A local worker may have room again.
    kick: Notify,
    /// Everything held is done reporting (shutdown waits for it).
    drained: Notify,
}

struct Held {
    /// Stops the worker's run (it is told why by the dispatcher).
    cancel: CancellationToken,
    /// Set with `cancel` when this replica lets go rather than cancels.
    detach: CancellationToken,
}

impl Claims {
    pub fn serves(&self, d: &Dispatcher, job_type: &str) -> bool {
        d.online(job_type) > 0
    }

    pub async fn kicked(&self) {
        self.kick.notified().await
    }

    /// Stops the workers of every task of workflow `id` (it ended).
    pub fn workflow_ended(&self, id: &str) {
        for (_, h) in self
            .held
            .lock()
            .expect("held lock")
            .iter()
            .filter(|(k, _)| k.workflow_id == id)
        {
            h.cancel.cancel();
        }
    }
}

impl Board {
    fn replica(&self) -> &str {
        self.replica.get().map(String::as_str).unwrap_or("")
    }

    /// Claims as many posted tasks as local workers have room for.
    pub(super) async fn claim(self: &Arc<Self>) {
        let (room, types) = self.dispatcher.room();
        if room == 0 || types.is_empty() || self.replica().is_empty() {
            return;
        }
        let until = Self::now() + self.opts.claim_ttl.as_micros() as i64;
        match self
            .store
            .board_claim(self.replica(), &types, room, until)
            .await
        {
            Ok(tasks) => {
                for t in tasks {
                    tokio::spawn(self.clone().relay(t));
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot claim tasks from the board"),
        }
    }

    pub(super) async fn renew(&self) {
        if self.claims.held.lock().expect("held lock").is_empty() {
            return;
        }
        let until = Self::now() + self.opts.claim_ttl.as_micros() as i64;
        if let Err(e) = self.store.board_renew(self.replica(), until).await {
            tracing::warn!(error = %e, "cannot renew this replica's claims on the board");
        }
    }

    /// Lets go of every task held here (shutting down): each is reported
    /// lost, so its owner hands it on at once rather than after the claim
    /// lapses. Waits (a little) until they are reported.
    pub async fn close(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        loop {
            let drained = self.claims.drained.notified();
            {
                let held = self.claims.held.lock().expect("held lock");
                if held.is_empty() {
                    return;
                }
                for h in held.values() {
                    h.detach.cancel();
                    h.cancel.cancel();
                }
            }
            if tokio::time::timeout_at(deadline, drained).await.is_err() {
                return;
            }
        }
    }

    /// Runs one claimed task on a local worker and reports how it ended.
    async fn relay(self: Arc<Self>, t: BoardTask) {
        let key = t.key.clone();
        let claim = t.claim;
        let report = match self.relay_run(&t).await {
            Ok(outcome) => outcome,
            Err(why) => BoardReport::Lost(why),
        };
        for _ in 0..3 {
            match self
                .store
                .board_report(&key, claim, report.clone(), Self::now())
                .await
            {
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot report a relayed task; trying again");
                    tokio::time::sleep(self.opts.poll).await;
                }
            }
        }
        let mut held = self.claims.held.lock().expect("held lock");
        held.remove(&key);
        if held.is_empty() {
            self.claims.drained.notify_waiters();
        }
        drop(held);
        self.claims.kick.notify_one();
    }

    async fn relay_run(self: &Arc<Self>, t: &BoardTask) -> Result<BoardReport, String> {
        let here = self.replica().to_string();
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
        let (cancel, detach) = (CancellationToken::new(), CancellationToken::new());
        self.claims.held.lock().expect("held lock").insert(
            t.key.clone(),
            Held {
                cancel: cancel.clone(),
                detach: detach.clone(),
            },
        );
        let sink = Arc::new(ClaimSink {
            board: self.clone(),
            key: t.key.clone(),
            claim: t.claim,
            detach: detach.clone(),
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
        let watching = self.watching(&t.key, Side::Claimer);
        let run = self
            .dispatcher
            .run_relayed(&ctx, &decl, &job, spec.reconcile);
        tokio::pin!(run);
        let ended = loop {
            tokio::select! {
                r = &mut run => break r,
                _ = sink.pending.notified() => sink.ship().await,
                _ = watching.notify.notified() => {
                    match self.store.board_task(&t.key).await {
                        Ok(Some(row)) if row.claim == t.claim
                            && row.claimed_by.as_deref() == Some(here.as_str()) =>
                        {
                            if row.cancel.is_some() {
                                cancel.cancel();
                            }
                        }
                        // The owner took it back: nothing more lands.
                        Ok(_) => {
                            detach.cancel();
                            cancel.cancel();
                        }
                        Err(_) => {}
                    }
                }
            }
        };
        sink.ship().await;
        if detach.is_cancelled() {
            return Err(format!("replica {here} let go of it"));
        }
        Ok(match ended {
            Relayed::Ended(r) => BoardReport::Result(
                serde_json::to_string(&Outcome::of(&r)).expect("plain data serializes"),
            ),
            Relayed::Lost(why) => BoardReport::Lost(why),
        })
    }
}

/// Where a relayed attempt's checkpoints and lines go: its row.
struct ClaimSink {
    board: Arc<Board>,
    key: TaskKey,
    claim: i64,
    detach: CancellationToken,
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
        !self.detach.is_cancelled()
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
