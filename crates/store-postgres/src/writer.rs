//! The writer: write ops are queued, and one task commits everything queued
//! in one transaction, announcing the batch's feed items with
//! `pg_notify` in the same transaction (so they are delivered exactly when,
//! and only if, it commits).
//!
//! Batching matters twice over on PostgreSQL: many callers share one commit
//! (one WAL flush), and notifying transactions serialize their commits on a
//! global lock, so the fewer of them the better. If a batch fails, it is
//! rolled back and its ops are retried one by one, so one failing op fails
//! alone.

use crate::feed;
use crate::ops::{self, Abort, Ctx};
use crate::sql;
use crate::sql::{PgResult, Tx};
use interlock_core::{Approval, AuditEntry, Micros, Status};
use interlock_store::backend::{NewWorkflow, backend};
use interlock_store::{
    CasOutcome, Change, ControlRequest, FeedItem, InstanceInfo, Lease, RequestKind, Result,
    SharedStop, SlotOutcome, SlotRequest, StoreError, SubmitOutcome, TakeOutcome, TakeRequest,
};
use tokio::sync::{mpsc, oneshot};

/// One write, as the writer runs it.
pub enum Op {
    Submit {
        new: Box<NewWorkflow>,
        hash: String,
        audit: Option<AuditEntry>,
    },
    Acquire {
        id: String,
        from: Status,
        owner: String,
        at: Micros,
        audit: Option<AuditEntry>,
    },
    Transition {
        id: String,
        from: Status,
        to: Status,
        reason: String,
        ended: Option<Micros>,
        changes: Vec<Change>,
    },
    Write {
        lease: Option<Lease>,
        changes: Vec<Change>,
    },
    Release(Lease),
    Claim {
        owner: String,
        limit: usize,
    },
    Expire(Micros),
    Register {
        info: InstanceInfo,
        ttl: Micros,
    },
    Heartbeat {
        id: String,
        ttl: Micros,
    },
    Retire(String),
    Take(TakeRequest),
    Audit(AuditEntry),
    Request {
        workflow_id: String,
        kind: RequestKind,
        reason: String,
        at: Micros,
    },
    FinishRequest(i64),
    SetStop(SharedStop),
    AcquireSlots {
        lease: Lease,
        req: SlotRequest,
    },
    Approval(Approval),
}

/// What an op gives back once committed.
pub enum Outcome {
    Submit(SubmitOutcome),
    Acquired(CasOutcome<Lease>),
    Cas(CasOutcome),
    Refusable(std::result::Result<(), StoreError>),
    Leases(Vec<Lease>),
    Count(u64),
    Take(TakeOutcome),
    Request(ControlRequest),
    Slots(std::result::Result<SlotOutcome, StoreError>),
    Unit,
}

/// Why an op cannot be part of a committed transaction.
enum OpError {
    Pg(tokio_postgres::Error),
    /// No connection to run it on.
    Pool(String),
    /// COMMIT failed or went unanswered: the op may have committed.
    Commit(tokio_postgres::Error),
    Missing,
    /// Refused, after its statements ran: rolled back, then answered.
    Refused(StoreError),
}

impl From<tokio_postgres::Error> for OpError {
    fn from(e: tokio_postgres::Error) -> Self {
        OpError::Pg(e)
    }
}

impl From<Abort> for OpError {
    fn from(a: Abort) -> Self {
        match a {
            Abort::Missing => OpError::Missing,
            Abort::Refused(e) => OpError::Refused(e),
        }
    }
}

impl Op {
    async fn apply(&self, tx: &Tx, ctx: &mut Ctx) -> std::result::Result<Outcome, OpError> {
        Ok(match self {
            Op::Submit { new, hash, audit } => {
                Outcome::Submit(ops::submit(tx, new, hash, audit.as_ref()).await?)
            }
            Op::Acquire {
                id,
                from,
                owner,
                at,
                audit,
            } => Outcome::Acquired(
                ops::acquire(tx, ctx, id, *from, owner, *at, audit.as_ref()).await?,
            ),
            Op::Transition {
                id,
                from,
                to,
                reason,
                ended,
                changes,
            } => Outcome::Cas(
                ops::transition(tx, ctx, id, *from, *to, reason, *ended, changes).await?,
            ),
            Op::Write { lease, changes } => {
                ops::write(tx, ctx, lease.as_ref(), changes).await??;
                Outcome::Refusable(Ok(()))
            }
            Op::Release(lease) => Outcome::Refusable(ops::release(tx, lease).await?),
            Op::Claim { owner, limit } => {
                Outcome::Leases(ops::claim_orphans(tx, ctx, owner, *limit).await?)
            }
            Op::Expire(before) => Outcome::Count(
                sql::execute(tx, "DELETE FROM idempotency WHERE created < $1", &[before]).await?,
            ),
            Op::Register { info, ttl } => {
                ops::register_instance(tx, ctx, info, *ttl).await?;
                Outcome::Unit
            }
            Op::Heartbeat { id, ttl } => {
                Outcome::Refusable(ops::heartbeat(tx, ctx, id, *ttl).await?)
            }
            Op::Retire(id) => {
                sql::execute(
                    tx,
                    "UPDATE instances SET expires = $1 WHERE id = $2 AND expires > $1",
                    &[&(ctx.now - 1), id],
                )
                .await?;
                Outcome::Unit
            }
            Op::Take(req) => Outcome::Take(ops::take(tx, req).await?),
            Op::Audit(e) => {
                ops::insert_audit(tx, e, &e.target).await?;
                Outcome::Unit
            }
            Op::Request {
                workflow_id,
                kind,
                reason,
                at,
            } => Outcome::Request(ops::request(tx, ctx, workflow_id, *kind, reason, *at).await?),
            Op::FinishRequest(id) => {
                sql::execute(tx, "DELETE FROM requests WHERE id = $1", &[id]).await?;
                Outcome::Unit
            }
            Op::SetStop(e) => {
                ops::set_stop(tx, ctx, e).await?;
                Outcome::Unit
            }
            Op::AcquireSlots { lease, req } => {
                Outcome::Slots(ops::acquire_slots(tx, lease, req).await?)
            }
            Op::Approval(a) => Outcome::Refusable(ops::add_approval(tx, a).await?),
        })
    }
}

pub struct Queued {
    pub op: Op,
    pub reply: oneshot::Sender<Result<Outcome>>,
}

/// The database's clock, in microseconds since the Unix epoch.
pub const NOW_US: &str = "(extract(epoch from clock_timestamp()) * 1000000)::bigint";

/// Commits queued ops in batches until every sender is gone.
pub async fn run(pool: deadpool_postgres::Pool, mut rx: mpsc::Receiver<Queued>, max_batch: usize) {
    let mut batch = Vec::with_capacity(max_batch);
    while let Some(q) = rx.recv().await {
        batch.push(q);
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(q) => batch.push(q),
                Err(_) => break,
            }
        }
        let started = std::time::Instant::now();
        metrics::histogram!("interlock_store_batch_ops").record(batch.len() as f64);
        commit_batch(&pool, std::mem::take(&mut batch)).await;
        metrics::histogram!("interlock_store_commit_seconds")
            .record(started.elapsed().as_secs_f64());
    }
}

async fn commit_batch(pool: &deadpool_postgres::Pool, batch: Vec<Queued>) {
    let mut conn = match pool.get().await {
        Ok(c) => Conn {
            pool,
            client: Some(c),
            in_tx: false,
        },
        Err(e) => {
            for q in batch {
                let _ = q
                    .reply
                    .send(Err(backend(format!("no database connection: {e}"))));
            }
            return;
        }
    };
    if batch.len() > 1 {
        let ops: Vec<&Op> = batch.iter().map(|q| &q.op).collect();
        match run_tx(&mut conn, &ops).await {
            Ok(outcomes) => {
                for (q, out) in batch.into_iter().zip(outcomes) {
                    let _ = q.reply.send(Ok(out));
                }
                return;
            }
            // Nothing committed for sure: each op runs again alone, so
            // that one failing op fails alone.
            Err(e @ (OpError::Pg(_) | OpError::Missing | OpError::Refused(_))) => {
                tracing::debug!(error = %describe(&e), "batch commit failed; retrying ops one by one")
            }
            // The batch may have committed (running it again could apply
            // it twice), or there is no connection to run it on.
            Err(e) => {
                let why = describe(&e);
                for q in batch {
                    let _ = q.reply.send(Err(backend(why.clone())));
                }
                return;
            }
        }
    }
    let mut unreachable: Option<String> = None;
    for q in batch {
        let ran = match &unreachable {
            Some(why) => Err(OpError::Pool(why.clone())),
            None => run_tx(&mut conn, &[&q.op]).await,
        };
        let r = match ran {
            Ok(mut v) => Ok(v.pop().unwrap_or(Outcome::Unit)),
            Err(OpError::Refused(e)) => Ok(Outcome::Refusable(Err(e))),
            Err(e) => {
                if let OpError::Pool(why) = &e {
                    // One wait for a connection per batch, not one per op.
                    unreachable = Some(why.clone());
                }
                Err(backend(describe(&e)))
            }
        };
        let _ = q.reply.send(r);
    }
}

fn describe(e: &OpError) -> String {
    match e {
        OpError::Pg(e) => e.to_string(),
        OpError::Missing => "a change names a workflow that does not exist".into(),
        OpError::Refused(e) => e.to_string(),
        OpError::Pool(e) => format!("no database connection: {e}"),
        OpError::Commit(e) => format!("the commit's outcome is unknown: {e}"),
    }
}

/// The writer's connection, and whether a transaction may be open on it.
/// The writer opens and ends its transactions itself (not through
/// tokio-postgres' `Transaction`), so that `BEGIN` goes out with the read
/// of the clock and `COMMIT` with the notifications: two round trips fewer
/// per batch. What `Transaction` did on drop is done here: a connection
/// left in a transaction of unknown state (the batch was abandoned, or its
/// end failed) is closed, never returned to the pool, and the database
/// rolls the transaction back.
struct Conn<'p> {
    pool: &'p deadpool_postgres::Pool,
    client: Option<deadpool_postgres::Client>,
    in_tx: bool,
}

impl Conn<'_> {
    /// The connection, about to open a transaction: a fresh one if the
    /// last transaction on this one did not end cleanly.
    async fn begin(&mut self) -> std::result::Result<&Tx, OpError> {
        if self.in_tx {
            self.discard();
            self.client = Some(
                self.pool
                    .get()
                    .await
                    .map_err(|e| OpError::Pool(e.to_string()))?,
            );
        }
        self.in_tx = true;
        Ok(self.client.as_ref().expect("just set"))
    }

    /// Closes the connection (the database rolls back whatever is open).
    fn discard(&mut self) {
        if let Some(c) = self.client.take() {
            drop(deadpool_postgres::Client::take(c));
        }
    }
}

impl Drop for Conn<'_> {
    fn drop(&mut self) {
        if self.in_tx {
            self.discard();
        }
    }
}

async fn run_tx(conn: &mut Conn<'_>, ops: &[&Op]) -> std::result::Result<Vec<Outcome>, OpError> {
    let client = conn.begin().await?;
    let clock = format!("SELECT {NOW_US}");
    // Sent together: BEGIN is polled, so sent, first.
    let (begun, now) = futures::join!(
        client.batch_execute("BEGIN"),
        sql::query_one(client, &clock, &[])
    );
    let body = async {
        begun?;
        let now: i64 = now?.get(0);
        run_ops(client, ops, now).await
    };
    match body.await {
        Ok((out, items)) => {
            // On failure the connection stays marked and is closed: the
            // transaction's state is not known (COMMIT may have gone out).
            commit(client, &items).await.map_err(OpError::Commit)?;
            conn.in_tx = false;
            Ok(out)
        }
        Err(e) => {
            // Nothing committed either way; if the ROLLBACK fails too, the
            // connection stays marked and is closed, and `e` is the answer.
            if client.batch_execute("ROLLBACK").await.is_ok() {
                conn.in_tx = false;
            }
            Err(e)
        }
    }
}

/// Announces `items` and commits, in one round trip.
async fn commit(client: &Tx, items: &[FeedItem]) -> PgResult<()> {
    let chunks = feed::encode(items);
    if !chunks.is_empty() {
        // Cached first, so that each notification is sent on its first
        // poll: before the COMMIT behind it.
        client.prepare_cached(feed::NOTIFY).await?;
    }
    let notify: Vec<sql::Pending<'_, u64>> = chunks
        .iter()
        .map(|chunk| {
            Box::pin(
                async move { sql::execute(client, feed::NOTIFY, &[&feed::CHANNEL, chunk]).await },
            ) as sql::Pending<'_, u64>
        })
        .collect();
    let (notified, committed) =
        futures::join!(sql::all_in_order(notify), client.batch_execute("COMMIT"));
    // After a failed statement COMMIT rolls back, and answers as if it
    // committed: the notifications are judged first.
    notified?;
    committed
}

/// Runs `ops` inside the open transaction: their outcomes, and the feed
/// items to announce with the commit.
async fn run_ops(
    tx: &Tx,
    ops: &[&Op],
    now: Micros,
) -> std::result::Result<(Vec<Outcome>, Vec<FeedItem>), OpError> {
    let mut out: Vec<Option<Outcome>> = (0..ops.len()).map(|_| None).collect();
    let mut items = Vec::new();
    for segment in plan(ops) {
        // The chains of one segment touch disjoint workflows, so running
        // them at once gives the result of some serial order; tokio-postgres
        // pipelines their statements on the one connection.
        let chains = segment.into_iter().map(|chain| async move {
            let mut ctx = Ctx {
                now,
                items: Vec::new(),
            };
            let mut done = Vec::with_capacity(chain.len());
            for i in chain {
                done.push((i, ops[i].apply(tx, &mut ctx).await?));
            }
            Ok::<_, OpError>((done, ctx.items))
        });
        for (done, chain_items) in futures::future::try_join_all(chains).await? {
            for (i, o) in done {
                out[i] = Some(o);
            }
            items.extend(chain_items);
        }
    }
    let out = out
        .into_iter()
        .map(|o| o.expect("every op of the batch ran"))
        .collect();
    Ok((out, items))
}

/// The workflow an op reads and writes, when it touches only that one's
/// rows (plus append-only audit rows); `None` for ops that lock or write
/// rows shared across workflows (buckets, instances, stops, claims, limit
/// slots).
fn workflow_key(op: &Op) -> Option<&str> {
    match op {
        Op::Submit { new, .. } => Some(&new.id),
        Op::Acquire { id, .. } | Op::Transition { id, .. } => Some(id),
        Op::Write { lease, changes } => {
            let id = match lease {
                Some(l) => l.workflow_id.as_str(),
                None => changes.first()?.workflow_id(),
            };
            changes.iter().all(|c| c.workflow_id() == id).then_some(id)
        }
        Op::Release(lease) => Some(&lease.workflow_id),
        Op::Approval(a) => Some(&a.workflow_id),
        Op::Request { workflow_id, .. } => Some(workflow_id),
        _ => None,
    }
}

/// Splits a batch into segments run one after another; a segment is a set
/// of chains run concurrently, a chain being one workflow's ops in queue
/// order. An op without a workflow key is a segment of its own, so it sees
/// everything queued before it and nothing queued after.
fn plan(ops: &[&Op]) -> Vec<Vec<Vec<usize>>> {
    let mut segments = Vec::new();
    let mut chains: Vec<Vec<usize>> = Vec::new();
    let mut by_key: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for (i, op) in ops.iter().enumerate() {
        match workflow_key(op) {
            Some(k) => {
                let c = *by_key.entry(k).or_insert_with(|| {
                    chains.push(Vec::new());
                    chains.len() - 1
                });
                chains[c].push(i);
            }
            None => {
                if !chains.is_empty() {
                    segments.push(std::mem::take(&mut chains));
                    by_key.clear();
                }
                segments.push(vec![vec![i]]);
            }
        }
    }
    if !chains.is_empty() {
        segments.push(chains);
    }
    segments
}

#[cfg(test)]
mod tests {
    use super::*;

    fn audit() -> Op {
        Op::Audit(AuditEntry::default())
    }

    fn request(w: &str) -> Op {
        Op::Request {
            workflow_id: w.into(),
            kind: RequestKind::Cancel,
            reason: String::new(),
            at: 0,
        }
    }

    #[test]
    fn a_plan_keeps_each_workflows_order_and_fences_shared_ops() {
        let ops = [
            request("a"),
            request("b"),
            request("a"),
            audit(),
            request("b"),
            request("c"),
        ];
        let refs: Vec<&Op> = ops.iter().collect();
        assert_eq!(
            plan(&refs),
            vec![
                vec![vec![0, 2], vec![1]],
                vec![vec![3]],
                vec![vec![4], vec![5]],
            ]
        );
    }
}
