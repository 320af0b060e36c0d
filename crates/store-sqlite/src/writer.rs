//! The single writer and its group commit.
//!
//! One thread owns the only write connection. Callers send it [`WriteOp`]s
//! over a bounded channel (backpressure); it takes everything queued, up to
//! a batch limit, applies it in one transaction, commits, and only then
//! answers each caller and publishes the batch's events. Many concurrent
//! callers share one fsync, so durability does not cap throughput.
//!
//! Lease checks are remembered. This thread is the database's only writer
//! (the one-owner lock keeps other processes out), so a lease it found
//! valid stays valid until one of its own writes moves ownership. Only a
//! fenced write keeps the memory: every other op may move ownership and
//! empties it first, a fenced write that records the workflow's own row
//! forgets that lease (a terminal status ends ownership), and a transaction
//! that fails empties it (what it checked may have been rolled back).
//!
//! If a batch fails, it is rolled back and retried op by op, so one failing
//! op (a write out of range, or a disk that filled up meanwhile) fails alone
//! and everything else still commits. An op's events are published only
//! after the transaction holding it committed.

use crate::lock::DbLock;
use interlock_core::{Clock, Micros};
use interlock_store::{FeedItem, Result, StoreError};
use rusqlite::{Connection, Transaction};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{broadcast, mpsc, oneshot};

/// What an op sees while it runs inside the batch transaction.
pub struct Ctx<'a> {
    /// The store's clock at the start of the batch.
    pub now: Micros,
    /// Feed items to publish if (and once) the op's transaction commits.
    pub events: &'a mut Vec<FeedItem>,
    /// Leases found valid and not moved since.
    pub leases: &'a mut Checked,
}

/// Leases found valid and not moved since: workflow id → (owner, epoch).
#[derive(Default)]
pub struct Checked(HashMap<String, (String, i64)>);

impl Checked {
    /// Whether `lease` was found valid and has not moved since.
    pub fn holds(&self, lease: &interlock_store::Lease) -> bool {
        self.0
            .get(&lease.workflow_id)
            .is_some_and(|(o, e)| *o == lease.owner && *e == lease.epoch)
    }

    pub fn remember(&mut self, lease: &interlock_store::Lease) {
        self.0.insert(
            lease.workflow_id.clone(),
            (lease.owner.clone(), lease.epoch),
        );
    }

    pub fn forget(&mut self, workflow_id: &str) {
        self.0.remove(workflow_id);
    }

    fn clear(&mut self) {
        self.0.clear();
    }
}

/// One queued write.
pub trait WriteOp: Send {
    /// Applies the op inside `tx`. An `Err` fails the whole transaction.
    fn apply(&mut self, tx: &Transaction<'_>, ctx: &mut Ctx<'_>) -> rusqlite::Result<()>;
    /// Answers the caller once the op's transaction committed (`Ok`) or
    /// failed.
    fn finish(self: Box<Self>, committed: Result<()>);
    /// Feed items the last `apply` produced.
    fn take_events(&mut self) -> Vec<FeedItem>;
    /// Whether the op only writes under a lease and never moves ownership,
    /// so the leases the writer remembers stay valid across it.
    fn keeps_leases(&self) -> bool;
}

/// What a write op answers: its outcome, and the op itself, so that the
/// caller's thread frees what the op captured. This thread is every write's
/// bottleneck; freeing memory another thread allocated is not cheap.
pub type Reply<T> = (Result<T>, Box<dyn Send>);

/// A write op from a closure; `T` is what the caller gets back.
pub struct Pending<T, F> {
    f: F,
    out: Option<T>,
    events: Vec<FeedItem>,
    reply: Option<oneshot::Sender<Reply<T>>>,
    fenced: bool,
}

impl<T, F> Pending<T, F>
where
    T: Send + 'static,
    F: FnMut(&Transaction<'_>, &mut Ctx<'_>) -> rusqlite::Result<T> + Send + 'static,
{
    /// An op that may do anything, ownership changes included.
    pub fn boxed(f: F) -> (Box<dyn WriteOp>, oneshot::Receiver<Reply<T>>) {
        Self::queued(f, false)
    }

    /// An op that only writes under a lease and never moves ownership
    /// (see [`WriteOp::keeps_leases`]).
    pub fn fenced(f: F) -> (Box<dyn WriteOp>, oneshot::Receiver<Reply<T>>) {
        Self::queued(f, true)
    }

    fn queued(f: F, fenced: bool) -> (Box<dyn WriteOp>, oneshot::Receiver<Reply<T>>) {
        let (reply, rx) = oneshot::channel();
        let op = Box::new(Self {
            f,
            out: None,
            events: Vec::new(),
            reply: Some(reply),
            fenced,
        });
        (op, rx)
    }
}

impl<T, F> WriteOp for Pending<T, F>
where
    T: Send + 'static,
    F: FnMut(&Transaction<'_>, &mut Ctx<'_>) -> rusqlite::Result<T> + Send + 'static,
{
    fn apply(&mut self, tx: &Transaction<'_>, ctx: &mut Ctx<'_>) -> rusqlite::Result<()> {
        self.events.clear();
        let mut c = Ctx {
            now: ctx.now,
            events: &mut self.events,
            leases: ctx.leases,
        };
        self.out = Some((self.f)(tx, &mut c)?);
        Ok(())
    }

    fn finish(mut self: Box<Self>, committed: Result<()>) {
        let out = self.out.take();
        let reply = self.reply.take().expect("an op is finished once");
        let outcome = committed.and_then(|()| {
            out.ok_or_else(|| StoreError::Backend("write op produced no outcome".into()))
        });
        // A caller that went away no longer wants the answer; the write stands.
        let _ = reply.send((outcome, self));
    }

    fn take_events(&mut self) -> Vec<FeedItem> {
        std::mem::take(&mut self.events)
    }

    fn keeps_leases(&self) -> bool {
        self.fenced
    }
}

/// A message to the writer thread.
pub enum Msg {
    Op(Box<dyn WriteOp>),
    /// Commit what is queued, release the lock, stop, then answer.
    Close(oneshot::Sender<()>),
}

/// What the writer thread owns.
pub struct Writer {
    pub conn: Connection,
    pub clock: Arc<dyn Clock>,
    pub events: broadcast::Sender<FeedItem>,
    pub max_batch: usize,
    /// The most recent write failure, cleared by the next success.
    pub last_error: Arc<Mutex<Option<String>>>,
    /// Held until the writer stops: the database's one-owner lock.
    pub lock: Option<DbLock>,
    pub leases: Checked,
}

impl Writer {
    /// Runs until every sender is gone or [`Msg::Close`] arrives, then
    /// releases the lock. Ops queued behind a Close are dropped: their
    /// callers see [`StoreError::Closed`].
    pub fn run(mut self, mut rx: mpsc::Receiver<Msg>) {
        let mut batch = Vec::with_capacity(self.max_batch);
        let mut closing = None;
        'serve: while let Some(msg) = rx.blocking_recv() {
            match msg {
                Msg::Op(op) => batch.push(op),
                Msg::Close(done) => {
                    closing = Some(done);
                    break;
                }
            }
            while batch.len() < self.max_batch {
                match rx.try_recv() {
                    Ok(Msg::Op(op)) => batch.push(op),
                    Ok(Msg::Close(done)) => {
                        closing = Some(done);
                        self.commit_batch(&mut batch);
                        break 'serve;
                    }
                    Err(_) => break,
                }
            }
            self.commit_batch(&mut batch);
        }
        drop(rx);
        drop(self.lock.take());
        tracing::debug!("store writer stopped");
        if let Some(done) = closing {
            let _ = done.send(());
        }
    }

    fn commit_batch(&mut self, batch: &mut Vec<Box<dyn WriteOp>>) {
        let mut ops = std::mem::take(batch);
        let started = std::time::Instant::now();
        metrics::histogram!("interlock_store_batch_ops").record(ops.len() as f64);
        if ops.len() > 1 {
            match self.run_tx(&mut ops) {
                Ok(()) => {
                    self.answer(ops, Ok(()));
                    record(started);
                    return;
                }
                // One transaction per op so each caller gets its own verdict.
                Err(e) => {
                    tracing::warn!(error = %e, "batch commit failed; retrying ops one by one")
                }
            }
        }
        for op in ops {
            let mut one = vec![op];
            let r = self
                .run_tx(&mut one)
                .map_err(|e| StoreError::Backend(e.to_string()));
            self.answer(one, r);
        }
        record(started);
    }

    fn run_tx(&mut self, ops: &mut [Box<dyn WriteOp>]) -> rusqlite::Result<()> {
        let now = self.clock.now();
        let leases = &mut self.leases;
        let result = (|| {
            let tx = self.conn.transaction()?;
            let mut scratch = Vec::new();
            for op in ops.iter_mut() {
                if !op.keeps_leases() {
                    leases.clear();
                }
                op.apply(
                    &tx,
                    &mut Ctx {
                        now,
                        events: &mut scratch,
                        leases,
                    },
                )?;
            }
            tx.commit()
        })();
        if result.is_err() {
            leases.clear();
        }
        *self.last_error.lock().expect("last error lock") =
            result.as_ref().err().map(|e| e.to_string());
        result
    }

    fn answer(&self, ops: Vec<Box<dyn WriteOp>>, r: Result<()>) {
        let publish = r.is_ok() && self.events.receiver_count() > 0;
        for mut op in ops {
            if publish {
                for e in op.take_events() {
                    let _ = self.events.send(e);
                }
            }
            op.finish(r.clone());
        }
    }
}

fn record(started: std::time::Instant) {
    metrics::histogram!("interlock_store_commit_seconds").record(started.elapsed().as_secs_f64());
}
