//! The single writer and its group commit.
//!
//! One thread owns the only write connection. Callers send it [`WriteOp`]s
//! over a bounded channel (backpressure); it takes everything queued, up to
//! a batch limit, applies it in one transaction, commits, and only then
//! answers each caller and publishes the batch's events. Many concurrent
//! callers share one fsync, so durability does not cap throughput.
//!
//! If a batch fails, it is rolled back and retried op by op, so one failing
//! op (a write out of range, or a disk that filled up meanwhile) fails alone
//! and everything else still commits. An op's events are published only
//! after the transaction holding it committed.

use crate::lock::DbLock;
use interlock_core::{Clock, Micros};
use interlock_store::{FeedItem, Result, StoreError};
use rusqlite::{Connection, Transaction};
use std::sync::{Arc, Mutex};
use tokio::sync::{broadcast, mpsc, oneshot};

/// What an op sees while it runs inside the batch transaction.
pub struct Ctx<'a> {
    /// The store's clock at the start of the batch.
    pub now: Micros,
    /// Feed items to publish if (and once) the op's transaction commits.
    pub events: &'a mut Vec<FeedItem>,
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
}

/// A write op from a closure; `T` is what the caller gets back.
pub struct Pending<T, F> {
    f: F,
    out: Option<T>,
    events: Vec<FeedItem>,
    reply: oneshot::Sender<Result<T>>,
}

impl<T, F> Pending<T, F>
where
    T: Send + 'static,
    F: FnMut(&Transaction<'_>, &mut Ctx<'_>) -> rusqlite::Result<T> + Send + 'static,
{
    pub fn boxed(f: F) -> (Box<dyn WriteOp>, oneshot::Receiver<Result<T>>) {
        let (reply, rx) = oneshot::channel();
        let op = Box::new(Self {
            f,
            out: None,
            events: Vec::new(),
            reply,
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
        };
        self.out = Some((self.f)(tx, &mut c)?);
        Ok(())
    }

    fn finish(self: Box<Self>, committed: Result<()>) {
        // A caller that went away no longer wants the answer; the write stands.
        let Self { out, reply, .. } = *self;
        let _ = reply.send(committed.and_then(|()| {
            out.ok_or_else(|| StoreError::Backend("write op produced no outcome".into()))
        }));
    }

    fn take_events(&mut self) -> Vec<FeedItem> {
        std::mem::take(&mut self.events)
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
        let result = (|| {
            let tx = self.conn.transaction()?;
            let mut scratch = Vec::new();
            for op in ops.iter_mut() {
                op.apply(
                    &tx,
                    &mut Ctx {
                        now,
                        events: &mut scratch,
                    },
                )?;
            }
            tx.commit()
        })();
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
