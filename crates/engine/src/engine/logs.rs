//! Job logs: carrying the lines running attempts emit into the store, and
//! reading them back.
//!
//! A job logs without waiting: its line goes into a bounded queue that one
//! task per engine drains into the store, a batch at a time (one write per
//! workflow, under that workflow's lease, so a process that lost the
//! workflow records nothing). Lines that would overflow the queue, or an
//! attempt's share of it, are dropped, and the gap in the attempt's line
//! numbers shows it. An attempt's log is closed and flushed before its end
//! is recorded, so a reader that sees the job end has seen all its lines
//! (anything the job left behind writes later is not its log).
//!
//! Invariants: for one workflow, writes are made one after another (the
//! store numbers lines in commit order); logs never hold up a job or a
//! transition longer than one flush.

use super::Engine;
use crate::error::{EngineError, Result};
use interlock_core::{Clock, LogLine, LogQuery, LogStream, log::clean_line};
use interlock_store::{Change, Lease, Store, StoreError};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Lines waiting for the store, across all attempts of this process.
const QUEUE: usize = 16_384;
/// Lines one attempt may have waiting: a chatty job loses its own lines,
/// not everyone else's.
const PER_ATTEMPT: usize = 2_048;
/// Most lines, and bytes, one batch takes from the queue.
const BATCH: usize = 2_048;
const BATCH_BYTES: usize = 1 << 20;
/// How long a batch waits for more lines after its first one.
const LINGER: Duration = Duration::from_millis(20);
/// Longest an attempt's end waits for its lines to be written.
const FLUSH_WAIT: Duration = Duration::from_secs(5);
/// Most lines one read returns.
pub const MAX_READ: usize = 5_000;

enum Msg {
    Line {
        lease: Lease,
        line: LogLine,
        /// The attempt's count of lines waiting, given back once written.
        waiting: Arc<AtomicUsize>,
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
            state: Mutex::new(Numbering {
                next: 1,
                closed: false,
            }),
            waiting: Arc::default(),
        }
    }
}

struct Numbering {
    next: u64,
    /// The attempt's end is being recorded: later lines (a process the
    /// job left behind, still writing to its pipe) are not its log.
    closed: bool,
}

/// Where one attempt's lines go.
pub(crate) struct AttemptLog {
    shipper: Shipper,
    lease: Lease,
    block: usize,
    job: usize,
    attempt: u32,
    state: Mutex<Numbering>,
    waiting: Arc<AtomicUsize>,
}

impl AttemptLog {
    pub(crate) fn line(&self, clock: &dyn Clock, stream: LogStream, text: &str) {
        let text = clean_line(text);
        let dropped = || metrics::counter!("interlock_job_log_lines_dropped_total").increment(1);
        // Numbered and queued under one lock, so the queue holds an
        // attempt's lines in number order (stdout and stderr are read by
        // two tasks); numbered even when dropped, so the gap shows.
        let mut st = self.state.lock().expect("log numbering lock");
        if st.closed {
            return;
        }
        let n = st.next;
        st.next += 1;
        if self.shipper.keep == 0 {
            return;
        }
        if self.waiting.fetch_add(1, Ordering::Relaxed) >= PER_ATTEMPT {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            return dropped();
        }
        let msg = Msg::Line {
            lease: self.lease.clone(),
            line: LogLine {
                seq: 0,
                block: self.block,
                job: self.job,
                attempt: self.attempt,
                n,
                at: clock.now(),
                stream,
                text,
            },
            waiting: self.waiting.clone(),
        };
        if self.shipper.tx.try_send(msg).is_err() {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            dropped();
        }
    }

    /// Ends the attempt's log: lines logged after this are dropped, and
    /// this resolves once every line before it is written (or given up,
    /// after at most [`FLUSH_WAIT`]: logs never hold up a job's end long).
    pub(crate) async fn flush(&self) {
        let sent = {
            let mut st = self.state.lock().expect("log numbering lock");
            st.closed = true;
            st.next > 1
        };
        if self.shipper.keep == 0 || !sent {
            return;
        }
        let (tx, rx) = oneshot::channel();
        let _ = tokio::time::timeout(FLUSH_WAIT, async {
            if self.shipper.tx.send(Msg::Flush(tx)).await.is_ok() {
                let _ = rx.await;
            }
        })
        .await;
    }
}

async fn ship(store: Arc<dyn Store>, mut rx: mpsc::Receiver<Msg>, keep: u32) {
    let mut batch = Vec::with_capacity(BATCH);
    while let Some(first) = rx.recv().await {
        let mut bytes = size(&first);
        batch.push(first);
        let linger = tokio::time::sleep(LINGER);
        tokio::pin!(linger);
        while batch.len() < BATCH && bytes < BATCH_BYTES {
            if matches!(batch.last(), Some(Msg::Flush(_))) {
                break;
            }
            tokio::select! {
                m = rx.recv() => match m {
                    Some(m) => {
                        bytes += size(&m);
                        batch.push(m);
                    }
                    None => break,
                },
                _ = &mut linger => break,
            }
        }
        write_batch(store.as_ref(), std::mem::take(&mut batch), keep).await;
    }
}

fn size(m: &Msg) -> usize {
    match m {
        Msg::Line { line, .. } => line.text.len() + 64,
        Msg::Flush(_) => 0,
    }
}

/// Writes a batch: one write per workflow (one change per attempt, cut to
/// the lines the attempt keeps), concurrently, then answers the flushes in
/// it.
async fn write_batch(store: &dyn Store, batch: Vec<Msg>, keep: u32) {
    type Attempts = BTreeMap<(usize, usize, u32), Vec<LogLine>>;
    let mut per_workflow: HashMap<Lease, Attempts> = HashMap::new();
    let mut flushes = Vec::new();
    for m in batch {
        match m {
            Msg::Flush(done) => flushes.push(done),
            Msg::Line {
                lease,
                line,
                waiting,
            } => {
                waiting.fetch_sub(1, Ordering::Relaxed);
                per_workflow
                    .entry(lease)
                    .or_default()
                    .entry((line.block, line.job, line.attempt))
                    .or_default()
                    .push(line);
            }
        }
    }
    let writes = per_workflow.into_iter().map(|(lease, attempts)| async move {
        let changes: Vec<Change> = attempts
            .into_iter()
            .map(|((block, job, attempt), mut lines)| {
                // Lines the attempt would drop at once need not be written.
                let over = lines.len().saturating_sub(keep as usize);
                lines.drain(..over);
                Change::Log {
                    id: lease.workflow_id.clone(),
                    block,
                    job,
                    attempt,
                    lines,
                    keep,
                }
            })
            .collect();
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

#[cfg(test)]
mod tests {
    use super::*;
    use interlock_core::{Block, Job, Status, WorkReq, WorkflowRecord};
    use interlock_store::memory::MemStore;
    use interlock_store::{CasOutcome, InstanceInfo};

    async fn running(store: &Arc<dyn Store>) -> Lease {
        let clock = interlock_core::clock::system();
        let req = WorkReq {
            name: "wf".into(),
            blocks: vec![Block {
                jobs: vec![Job {
                    name: "sleep".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        let rec = WorkflowRecord::submitted("w1".into(), req, "v".into(), clock.now());
        store.submit(&rec, "h", None).await.unwrap();
        let me = InstanceInfo {
            id: "i1".into(),
            ..Default::default()
        };
        store
            .register_instance(&me, Duration::from_secs(60))
            .await
            .unwrap();
        match store
            .acquire("w1", Status::NotStarted, "i1", clock.now(), None)
            .await
            .unwrap()
        {
            CasOutcome::Done(l) => l,
            other => panic!("{other:?}"),
        }
    }

    async fn lines(store: &Arc<dyn Store>) -> Vec<LogLine> {
        store
            .logs(&LogQuery {
                workflow_id: "w1".into(),
                job: None,
                after: 0,
                limit: 100_000,
            })
            .await
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lines_from_several_threads_are_numbered_in_the_order_they_are_kept() {
        let clock = interlock_core::clock::system();
        let store: Arc<dyn Store> = Arc::new(MemStore::new(clock.clone()));
        let lease = running(&store).await;
        let log = Arc::new(Shipper::start(store.clone(), 10_000).attempt(lease, 0, 0, 1));
        let writers: Vec<_> = ["stdout", "stderr"]
            .into_iter()
            .map(|name| {
                let (log, clock) = (log.clone(), clock.clone());
                tokio::task::spawn_blocking(move || {
                    let stream = LogStream::parse(name).unwrap();
                    for i in 0..500 {
                        log.line(clock.as_ref(), stream, &format!("{name} {i}"));
                    }
                })
            })
            .collect();
        for w in writers {
            w.await.unwrap();
        }
        log.flush().await;
        let got = lines(&store).await;
        // In store order, the numbers run 1, 2, 3 ... with no gap: a
        // reader never sees a line "dropped" that is only late.
        let ns: Vec<u64> = got.iter().map(|l| l.n).collect();
        assert_eq!(ns, (1..=1000).collect::<Vec<_>>());
        // Each stream's lines in the order they were written.
        for name in ["stdout", "stderr"] {
            let mine: Vec<&str> = got
                .iter()
                .filter(|l| l.stream.as_str() == name)
                .map(|l| l.text.as_str())
                .collect();
            let want: Vec<String> = (0..500).map(|i| format!("{name} {i}")).collect();
            assert_eq!(mine, want);
        }
    }

    #[tokio::test]
    async fn a_flushed_attempt_logs_nothing_more_and_keeps_its_newest_lines() {
        let clock = interlock_core::clock::system();
        let store: Arc<dyn Store> = Arc::new(MemStore::new(clock.clone()));
        let lease = running(&store).await;
        let log = Shipper::start(store.clone(), 3).attempt(lease, 0, 0, 1);
        for i in 1..=10 {
            log.line(clock.as_ref(), LogStream::Log, &format!("line {i}"));
        }
        log.flush().await;
        // A process the job left behind, still writing: not its log.
        log.line(clock.as_ref(), LogStream::Stdout, "late");
        log.flush().await;
        let got = lines(&store).await;
        let texts: Vec<&str> = got.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts, ["line 8", "line 9", "line 10"]);
    }
}
