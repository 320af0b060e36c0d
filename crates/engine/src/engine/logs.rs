//! Job logs: carrying the lines running attempts emit into the store, and
//! reading them back.
//!
//! A job logs without waiting: its line goes into its attempt's buffer,
//! and one task per engine drains the buffers into the store, a batch at a
//! time (one write per workflow, under that workflow's lease, so a process
//! that lost the workflow records nothing). A buffer that fills up (a job
//! writing faster than the store takes lines) drops its *oldest* lines, as
//! the store does beyond the per-attempt limit: the end of a flood of
//! output, where the error usually is, is what stays. The gap in the
//! attempt's line numbers shows what was dropped. An attempt's log is
//! closed and flushed before its end is recorded, so a reader that sees
//! the job end has seen all its lines (anything the job left behind writes
//! later is not its log).
//!
//! Buffers are bounded in lines and bytes, each and all together, so a
//! stalled store or a flood costs a bounded amount of memory.
//!
//! Invariants: an attempt's lines are numbered and buffered under one lock,
//! so they reach the store in number order; for one workflow, writes are
//! made one after another (the store numbers lines in commit order); the
//! queue holds at most one wake-up per attempt, so it is bounded by the
//! attempts running; logs never hold up a job's end longer than
//! [`FLUSH_WAIT`].

use super::Engine;
use crate::error::{EngineError, Result};
use interlock_core::{Clock, LogLine, LogQuery, LogStream, log::clean_line};
use interlock_store::{Change, Lease, Store, StoreError};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Lines, and bytes, an attempt's buffer holds before it drops its oldest.
const BUFFER: usize = 1_024;
const BUFFER_BYTES: usize = 256 << 10;
/// Bytes all buffers together hold before new lines are dropped (the store
/// stalled, or every job floods at once).
const ALL_BUFFERS_BYTES: usize = 64 << 20;
/// Most lines, and bytes, one batch writes.
const BATCH: usize = 4_096;
const BATCH_BYTES: usize = 2 << 20;
/// How long a batch waits for more after its first wake-up.
const LINGER: Duration = Duration::from_millis(20);
/// Longest an attempt's end waits for its lines to be written.
const FLUSH_WAIT: Duration = Duration::from_secs(5);
/// Most lines one read returns.
pub const MAX_READ: usize = 5_000;

enum Msg {
    /// This attempt has buffered lines.
    Ready(Arc<Attempt>),
    /// Answer once this (closed) attempt's buffer is written.
    Flush(Arc<Attempt>, oneshot::Sender<()>),
}

/// The sending side of the engine's log queue.
#[derive(Clone)]
pub(crate) struct Shipper {
    tx: mpsc::UnboundedSender<Msg>,
    /// Lines an attempt keeps (from the options; 0 keeps none).
    keep: u32,
    /// Bytes in all attempts' buffers.
    buffered: Arc<AtomicUsize>,
}

impl Shipper {
    /// Starts the task that writes buffered lines to `store`; it ends when
    /// the last sender is gone.
    pub(crate) fn start(store: Arc<dyn Store>, keep: u32) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        if keep > 0 {
            // Weak: the task ends once the engine (every sender) is gone.
            tokio::spawn(ship(store, rx, tx.downgrade(), keep));
        }
        Self {
            tx,
            keep,
            buffered: Arc::default(),
        }
    }

    /// The log of one attempt.
    pub(crate) fn attempt(
        &self,
        lease: impl Into<Arc<Lease>>,
        block: usize,
        job: usize,
        attempt: u32,
    ) -> AttemptLog {
        AttemptLog {
            shipper: self.clone(),
            attempt: Arc::new(Attempt {
                lease: lease.into(),
                block,
                job,
                attempt,
                buffered: self.buffered.clone(),
                buffer: Mutex::new(Buffer {
                    next: 1,
                    closed: false,
                    woken: false,
                    lines: VecDeque::new(),
                    bytes: 0,
                }),
            }),
        }
    }
}

struct Buffer {
    next: u64,
    /// The attempt's end is being recorded: later lines (a process the
    /// job left behind, still writing to its pipe) are not its log.
    closed: bool,
    /// A wake-up for these lines is in the queue.
    woken: bool,
    lines: VecDeque<LogLine>,
    /// Bytes of `lines` (as counted by [`cost`]).
    bytes: usize,
}

/// What a buffered line counts for against the byte limits.
fn cost(l: &LogLine) -> usize {
    l.text.len() + 64
}

impl Buffer {
    fn pop(&mut self, all: &AtomicUsize) -> Option<LogLine> {
        let l = self.lines.pop_front()?;
        self.bytes -= cost(&l);
        all.fetch_sub(cost(&l), Ordering::Relaxed);
        Some(l)
    }
}

struct Attempt {
    lease: Arc<Lease>,
    block: usize,
    job: usize,
    attempt: u32,
    /// The shipper's count of bytes in all buffers.
    buffered: Arc<AtomicUsize>,
    buffer: Mutex<Buffer>,
}

/// Where one attempt's lines go.
pub(crate) struct AttemptLog {
    shipper: Shipper,
    attempt: Arc<Attempt>,
}

fn dropped(n: usize) {
    metrics::counter!("interlock_job_log_lines_dropped_total").increment(n as u64);
}

impl AttemptLog {
    /// The lease the attempt's lines are written under: the run's.
    pub(crate) fn lease(&self) -> &Lease {
        &self.attempt.lease
    }

    pub(crate) fn line(&self, clock: &dyn Clock, stream: LogStream, text: &str) {
        let text = clean_line(text);
        let a = &self.attempt;
        let mut b = a.buffer.lock().expect("log buffer lock");
        if b.closed {
            return;
        }
        // Numbered even when not kept: the gap shows.
        let n = b.next;
        b.next += 1;
        if self.shipper.keep == 0 {
            return;
        }
        let line = LogLine {
            seq: 0,
            block: a.block,
            job: a.job,
            attempt: a.attempt,
            n,
            at: clock.now(),
            stream,
            text,
        };
        let size = cost(&line);
        let room = BUFFER.min(self.shipper.keep as usize);
        while !b.lines.is_empty()
            && (b.lines.len() >= room
                || b.bytes + size > BUFFER_BYTES
                || a.buffered.load(Ordering::Relaxed) + size > ALL_BUFFERS_BYTES)
        {
            b.pop(&a.buffered);
            dropped(1);
        }
        if a.buffered.load(Ordering::Relaxed) + size > ALL_BUFFERS_BYTES {
            return dropped(1);
        }
        b.bytes += size;
        a.buffered.fetch_add(size, Ordering::Relaxed);
        b.lines.push_back(line);
        if !b.woken {
            b.woken = true;
            let _ = self.shipper.tx.send(Msg::Ready(a.clone()));
        }
    }

    /// Ends the attempt's log: lines logged after this are dropped, and
    /// this resolves once every line before it is written (or given up,
    /// after at most [`FLUSH_WAIT`]: logs never hold up a job's end long).
    pub(crate) async fn flush(&self) {
        let sent = {
            let mut b = self.attempt.buffer.lock().expect("log buffer lock");
            b.closed = true;
            b.next > 1
        };
        if self.shipper.keep == 0 || !sent {
            return;
        }
        let (tx, rx) = oneshot::channel();
        let flush = Msg::Flush(self.attempt.clone(), tx);
        if self.shipper.tx.send(flush).is_ok() {
            let _ = tokio::time::timeout(FLUSH_WAIT, rx).await;
        }
    }
}

async fn ship(
    store: Arc<dyn Store>,
    mut rx: mpsc::UnboundedReceiver<Msg>,
    again: mpsc::WeakUnboundedSender<Msg>,
    keep: u32,
) {
    let mut batch = Vec::new();
    while let Some(first) = rx.recv().await {
        batch.push(first);
        let linger = tokio::time::sleep(LINGER);
        tokio::pin!(linger);
        while !matches!(batch.last(), Some(Msg::Flush(..))) && batch.len() < BATCH {
            tokio::select! {
                m = rx.recv() => match m {
                    Some(m) => batch.push(m),
                    None => break,
                },
                _ = &mut linger => break,
            }
        }
        write_batch(store.as_ref(), std::mem::take(&mut batch), &again, keep).await;
    }
}

/// Writes a batch: the buffered lines of each attempt woken or flushed in
/// it (up to [`BATCH`] lines and [`BATCH_BYTES`]; an attempt with more
/// left is woken again), one write per workflow, concurrently; then answers
/// each flush whose attempt has nothing left (the others go round again).
async fn write_batch(
    store: &dyn Store,
    batch: Vec<Msg>,
    again: &mpsc::WeakUnboundedSender<Msg>,
    keep: u32,
) {
    type Attempts = BTreeMap<(usize, usize, u32), Vec<LogLine>>;
    let mut per_workflow: HashMap<Arc<Lease>, Attempts> = HashMap::new();
    let mut flushes = Vec::new();
    let (mut lines, mut bytes) = (0, 0);
    let again = again.upgrade();
    for m in batch {
        let a = match m {
            Msg::Flush(a, done) => {
                flushes.push((a.clone(), done));
                a
            }
            Msg::Ready(a) => a,
        };
        let mut taken = Vec::new();
        {
            let mut b = a.buffer.lock().expect("log buffer lock");
            while lines < BATCH && bytes < BATCH_BYTES {
                let Some(l) = b.pop(&a.buffered) else { break };
                lines += 1;
                bytes += cost(&l);
                taken.push(l);
            }
            if b.lines.is_empty() {
                b.woken = false;
            } else if let Some(q) = &again {
                // The rest goes in a later batch, still in order.
                let _ = q.send(Msg::Ready(a.clone()));
            }
        }
        if !taken.is_empty() {
            per_workflow
                .entry(a.lease.clone())
                .or_default()
                .entry((a.block, a.job, a.attempt))
                .or_default()
                .extend(taken);
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
        let count: usize = changes
            .iter()
            .map(|c| match c {
                Change::Log { lines, .. } => lines.len(),
                _ => 0,
            })
            .sum();
        match store.write(Some(&lease), changes).await {
            Ok(()) => {}
            // The workflow moved on (another owner, or it ended): its
            // lines are no longer this process's to record.
            Err(StoreError::Fenced { .. }) => {}
            Err(e) => {
                dropped(count);
                tracing::warn!(workflow = %lease.workflow_id, "job log lines not recorded: {e}");
            }
        }
    });
    futures::future::join_all(writes).await;
    for (a, done) in flushes {
        let left = !a.buffer.lock().expect("log buffer lock").lines.is_empty();
        match &again {
            // Lines of its attempt wait for a later batch: so does it.
            Some(q) if left => {
                let _ = q.send(Msg::Flush(a, done));
            }
            _ => {
                let _ = done.send(());
            }
        }
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
    /// 5,000; 0 means the most).
    pub async fn logs(
        &self,
        id: &str,
        job: Option<(usize, usize)>,
        after: u64,
        limit: usize,
    ) -> Result<LogPage> {
        let rec = self.status(id).await?;
        if let Some((b, j)) = job {
            let Some(block) = rec.blocks.get(b) else {
                return Err(EngineError::BadArgument(format!(
                    "workflow {} has no block {b}: it has {} (counting from 0)",
                    rec.id,
                    rec.blocks.len()
                )));
            };
            if block.jobs.get(j).is_none() {
                return Err(EngineError::NoSuchJob {
                    id: rec.id,
                    block: b,
                    job: j,
                });
            }
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

    /// A clock, a store, and the lease of workflow "w1" running in it.
    async fn running() -> (Arc<dyn Clock>, Arc<dyn Store>, Lease) {
        let clock = interlock_core::clock::system();
        let store: Arc<dyn Store> = Arc::new(MemStore::new(clock.clone()));
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
            CasOutcome::Done(l) => (clock, store, l),
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
        let (clock, store, lease) = running().await;
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_flood_of_lines_keeps_its_end() {
        let (clock, store, lease) = running().await;
        let log = Shipper::start(store.clone(), 100).attempt(lease, 0, 0, 1);
        // Far faster than batches are written: the buffer drops its oldest.
        for i in 1..=20_000 {
            log.line(clock.as_ref(), LogStream::Stdout, &format!("line {i}"));
        }
        log.line(clock.as_ref(), LogStream::Stderr, "the error at the end");
        log.flush().await;
        let got = lines(&store).await;
        assert_eq!(got.len(), 100);
        assert_eq!(got.last().unwrap().text, "the error at the end");
        assert_eq!(got.last().unwrap().n, 20_001);
        assert_eq!(got[0].text, "line 19902");
        assert!(got.windows(2).all(|w| w[0].n + 1 == w[1].n));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_flush_returns_once_its_own_lines_are_written_even_over_several_batches() {
        let (clock, store, lease) = running().await;
        let shipper = Shipper::start(store.clone(), 1_000);
        // Twenty attempts with close to a full buffer each: more bytes than
        // one batch takes, so some are written a batch later than others.
        let logs: Vec<_> = (0..20)
            .map(|job| Arc::new(shipper.attempt(lease.clone(), 0, job, 1)))
            .collect();
        let long = "x".repeat(2_500);
        for log in &logs {
            for _ in 0..100 {
                log.line(clock.as_ref(), LogStream::Stdout, &long);
            }
        }
        let flushes = logs.iter().enumerate().map(|(job, log)| {
            let (log, store) = (log.clone(), store.clone());
            async move {
                log.flush().await;
                let mine = store
                    .logs(&LogQuery {
                        workflow_id: "w1".into(),
                        job: Some((0, job)),
                        after: 0,
                        limit: 1_000,
                    })
                    .await
                    .unwrap();
                assert_eq!(mine.len(), 100, "job {job}: its flush returned early");
            }
        });
        futures::future::join_all(flushes).await;
        assert_eq!(shipper.buffered.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn a_flushed_attempt_logs_nothing_more_and_keeps_its_newest_lines() {
        let (clock, store, lease) = running().await;
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
