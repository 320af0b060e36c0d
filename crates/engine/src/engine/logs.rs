//! Job logs: carrying the lines running attempts emit into the store, and
//! reading them back.
//!
//! A job logs without waiting: its line goes into a bounded queue that one
//! task per engine drains into the store, a batch at a time (one write per
//! workflow, under that workflow's lease, so a process that lost the
//! workflow records nothing). Lines that would overflow the queue are
//! dropped, and the gap in the attempt's line numbers shows it. An attempt
//! flushes its lines before its end is recorded, so a reader that sees the
//! job end has seen its lines.
//!
//! Invariants: for one workflow, writes are made one after another (the
//! store numbers lines in commit order); logs never hold up a job or a
//! transition longer than one flush.

use super::Engine;
use crate::error::{EngineError, Result};
use interlock_core::{Clock, LogLine, LogQuery, LogStream, log::clean_line};
use interlock_store::{Change, Lease, Store, StoreError};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Lines waiting for the store, across all attempts of this process.
const QUEUE: usize = 16_384;
/// Most lines one batch takes from the queue.
const BATCH: usize = 4_096;
/// How long a batch waits for more lines after its first one.
const LINGER: Duration = Duration::from_millis(20);
/// Most lines one read returns.
pub const MAX_READ: usize = 5_000;

enum Msg {
    Line {
        lease: Lease,
        attempt: u32,
        line: LogLine,
    },
    Flush(oneshot::Sender<()>),
}

/// The sending side of the engine's log queue.
#[derive(Clone)]
pub(crate) struct Shipper {
    tx: mpsc::Sender<Msg>,
    /// Lines an attempt keeps (from the options; 0 keeps none).
    keep: u32,
}

impl Shipper {
    /// Starts the task that writes queued lines to `store`; it ends when
    /// the last sender is gone.
    pub(crate) fn start(store: Arc<dyn Store>, keep: u32) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        if keep > 0 {
            tokio::spawn(ship(store, rx, keep));
        }
        Self { tx, keep }
    }

    /// The log of one attempt.
    pub(crate) fn attempt(
        &self,
        lease: Lease,
        block: usize,
        job: usize,
        attempt: u32,
    ) -> AttemptLog {
        AttemptLog {
            shipper: self.clone(),
            lease,
            block,
            job,
            attempt,
            next: AtomicU64::new(1),
        }
    }
}

/// Where one attempt's lines go.
pub(crate) struct AttemptLog {
    shipper: Shipper,
    lease: Lease,
    block: usize,
    job: usize,
    attempt: u32,
    next: AtomicU64,
}

impl AttemptLog {
    pub(crate) fn line(&self, clock: &dyn Clock, stream: LogStream, text: &str) {
        // Numbered even when dropped: the gap tells readers lines are missing.
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        if self.shipper.keep == 0 {
            return;
        }
        let line = LogLine {
            seq: 0,
            block: self.block,
            job: self.job,
            attempt: self.attempt,
            n,
            at: clock.now(),
            stream,
            text: clean_line(text),
        };
        let msg = Msg::Line {
            lease: self.lease.clone(),
            attempt: self.attempt,
            line,
        };
        if self.shipper.tx.try_send(msg).is_err() {
            metrics::counter!("interlock_job_log_lines_dropped_total").increment(1);
        }
    }

    /// Resolves once every line sent before it is written (or given up).
    pub(crate) async fn flush(&self) {
        if self.shipper.keep == 0 || self.next.load(Ordering::Relaxed) == 1 {
            return;
        }
        let (tx, rx) = oneshot::channel();
        if self.shipper.tx.send(Msg::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

async fn ship(store: Arc<dyn Store>, mut rx: mpsc::Receiver<Msg>, keep: u32) {
    let mut batch = Vec::with_capacity(BATCH);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        let linger = tokio::time::sleep(LINGER);
        tokio::pin!(linger);
        while batch.len() < BATCH {
            tokio::select! {
                m = rx.recv() => match m {
                    Some(m) => batch.push(m),
                    None => break,
                },
                _ = &mut linger => break,
            }
            if matches!(batch.last(), Some(Msg::Flush(_))) {
                break;
            }
        }
        write_batch(store.as_ref(), std::mem::take(&mut batch), keep).await;
    }
}

/// Writes a batch: one write per workflow, concurrently, then answers the
/// flushes in it.
async fn write_batch(store: &dyn Store, batch: Vec<Msg>, keep: u32) {
    let mut per_workflow: HashMap<Lease, Vec<Change>> = HashMap::new();
    let mut flushes = Vec::new();
    for m in batch {
        match m {
            Msg::Flush(done) => flushes.push(done),
            Msg::Line {
                lease,
                attempt,
                line,
            } => {
                let changes = per_workflow.entry(lease.clone()).or_default();
                match changes.last_mut() {
                    Some(Change::Log {
                        block,
                        job,
                        attempt: a,
                        lines,
                        ..
                    }) if *block == line.block && *job == line.job && *a == attempt => {
                        lines.push(line)
                    }
                    _ => changes.push(Change::Log {
                        id: lease.workflow_id.clone(),
                        block: line.block,
                        job: line.job,
                        attempt,
                        keep,
                        lines: vec![line],
                    }),
                }
            }
        }
    }
    let writes = per_workflow.into_iter().map(|(lease, changes)| async move {
        match store.write(Some(&lease), changes).await {
            Ok(()) => {}
            // The workflow moved on (another owner, or it ended): its
            // lines are no longer this process's to record.
            Err(StoreError::Fenced { .. }) => {}
            Err(e) => {
                metrics::counter!("interlock_job_log_lines_dropped_total").increment(1);
                tracing::warn!(workflow = %lease.workflow_id, "job log lines not recorded: {e}");
            }
        }
    });
    futures::future::join_all(writes).await;
    for f in flushes {
        let _ = f.send(());
    }
}

/// One page of a workflow's log.
#[derive(Debug, Clone, Default)]
pub struct LogPage {
    pub lines: Vec<LogLine>,
    /// The cursor to read on from (the last line's `seq`, or the one given
    /// when there were none).
    pub next: u64,
    /// More lines were recorded after this page.
    pub more: bool,
}

impl Engine {
    /// Lines of workflow `id` (or a unique prefix) after `after`, oldest
    /// first; one job's with `job`. At most `limit` (clamped to
    /// [`MAX_READ`]; 0 means the most).
    pub async fn logs(
        &self,
        id: &str,
        job: Option<(usize, usize)>,
        after: u64,
        limit: usize,
    ) -> Result<LogPage> {
        let rec = self.status(id).await?;
        if let Some((b, j)) = job
            && rec.blocks.get(b).is_none_or(|bl| bl.jobs.get(j).is_none())
        {
            return Err(EngineError::NoSuchJob {
                id: rec.id,
                block: b,
                job: j,
            });
        }
        self.read_logs(&rec.id, job, after, limit).await
    }

    pub(crate) async fn read_logs(
        &self,
        id: &str,
        job: Option<(usize, usize)>,
        after: u64,
        limit: usize,
    ) -> Result<LogPage> {
        let limit = if limit == 0 {
            MAX_READ
        } else {
            limit.min(MAX_READ)
        };
        let mut lines = self
            .inner
            .store
            .logs(&LogQuery {
                workflow_id: id.to_string(),
                job,
                after,
                limit: limit + 1,
            })
            .await?;
        let more = lines.len() > limit;
        lines.truncate(limit);
        let next = lines.last().map_or(after, |l| l.seq);
        Ok(LogPage { lines, next, more })
    }
}
