//! Changes under a lease: how a write op applies a list of [`Change`]s.
//!
//! The fencing rule: a write under a lease lands only while the lease is
//! the workflow's, and a takeover cannot slip in between the check and the
//! commit. Either the write carries the check (`FOR SHARE` on the workflow
//! row) or, when it updates that row itself, the update carries the lease
//! in its condition; both hold the row until commit, so a takeover (which
//! updates the row) waits, or the write finds the lease gone. The check and
//! the changes go out together, in one round trip: a refused write may
//! already have run its changes, so it aborts the transaction
//! ([`Abort::Refused`]) and the writer rolls back and runs its ops again
//! one by one.

use super::{Ctx, PgResult, json, put_lines};
use crate::sql;
use crate::sql::Tx;
use interlock_core::Status;
use interlock_store::{Change, FeedItem, Lease, StoreError};

/// The lease check of every fenced write: holds the row shared until
/// commit, so a takeover cannot slip in between. `IS NOT DISTINCT FROM`
/// where `=` would do, so that the row is found by its id whatever plan the
/// statement gets (see [`crate::plans`]).
pub(crate) const CHECK_LEASE: &str = "SELECT 1 FROM workflows
     WHERE id = $1 AND owner IS NOT DISTINCT FROM $2 AND epoch = $3 FOR SHARE";

/// `Err(Fenced)` unless `lease` is still the workflow's; holds the row
/// shared until commit, so a takeover cannot slip in between.
pub async fn check_lease(
    tx: &impl deadpool_postgres::GenericClient,
    lease: &Lease,
) -> PgResult<Result<(), StoreError>> {
    let ok = sql::query_opt(
        tx,
        CHECK_LEASE,
        &[&lease.workflow_id, &lease.owner, &lease.epoch],
    )
    .await?
    .is_some();
    Ok(if ok {
        Ok(())
    } else {
        Err(StoreError::fenced(lease))
    })
}

/// Why an op's statements must not commit: the writer rolls the batch
/// back and runs its ops again one by one, so that this one fails alone.
#[derive(Debug)]
pub enum Abort {
    /// A change names a workflow that does not exist.
    Missing,
    /// The lease moved; the changes may have run already (they went out
    /// with the check) and must be undone.
    Refused(StoreError),
}

/// A change's outcome: whether it matched its row, and the board tasks it
/// cancelled.
pub(super) type Applied = (bool, Vec<FeedItem>);

/// Which row a change writes, to tell when two changes of one write touch
/// the same one (and so must be applied in order).
#[derive(PartialEq, Eq, Hash)]
pub(super) enum Row {
    Workflow,
    Block(usize),
    Job(usize, usize),
    Other(usize),
}

pub(super) fn row_of(c: &Change) -> (Row, &str) {
    let row = match c {
        Change::Workflow { .. } | Change::WorkflowStatus { .. } | Change::WorkflowErrors { .. } => {
            Row::Workflow
        }
        Change::Block { block, .. } => Row::Block(*block),
        Change::Job { block, job, .. } | Change::Checkpoint { block, job, .. } => {
            Row::Job(*block, *job)
        }
        // Deletes, and log lines that carry their own numbers: any order.
        Change::ReleaseSlots { .. } | Change::Log { .. } => Row::Other(c as *const Change as usize),
    };
    (row, c.workflow_id())
}

/// Whether no two of `changes` write the same row (so they may go out
/// together in any order).
pub(super) fn distinct_rows(changes: &[Change]) -> bool {
    let mut rows = std::collections::HashSet::new();
    changes.iter().all(|c| rows.insert(row_of(c)))
}

/// Applies `changes` under `lease` (or, without one, to workflows that
/// must exist). Under a lease the check goes out first and every change
/// right behind it, in one round trip: when the check fails, the changes
/// ran too and the caller must roll back ([`Abort::Refused`]). A write that
/// sets the workflow's row needs no separate check: that update carries the
/// lease in its condition, and the row lock it takes holds a takeover off
/// just as the check's would. Changes to one row go one at a time, so their
/// order holds.
pub async fn write(
    tx: &Tx,
    ctx: &mut Ctx,
    lease: Option<&Lease>,
    changes: &[Change],
) -> PgResult<Result<(), Abort>> {
    let Some(lease) = lease else {
        return write_unleased(tx, ctx, changes).await;
    };
    let fencing = changes
        .iter()
        .position(|c| matches!(c, Change::Workflow { id, .. } if *id == lease.workflow_id));
    let mut futs: Vec<sql::Pending<'_, Applied>> = Vec::with_capacity(changes.len() + 1);
    if fencing.is_none() {
        // Prepared before anything is sent, so it is sure to go out first.
        let check = tx.prepare_cached(CHECK_LEASE).await?;
        futs.push(Box::pin(async move {
            let row = tx
                .query_opt(&check, &[&lease.workflow_id, &lease.owner, &lease.epoch])
                .await?;
            Ok((row.is_some(), Vec::new()))
        }));
    }
    let together = distinct_rows(changes);
    // The lease goes first: the check above, or the update that carries
    // it (first in line when the changes go together, its statement
    // prepared beforehand), so a stale write locks nothing else before it
    // finds out.
    let mut order: Vec<usize> = (0..changes.len()).collect();
    if let Some(i) = fencing
        && together
    {
        tx.prepare_cached(UPDATE_WORKFLOW).await?;
        order.remove(i);
        order.insert(0, i);
    }
    futs.extend(order.iter().map(|&i| {
        let fence = (Some(i) == fencing).then_some(lease);
        Box::pin(apply_one(tx, &changes[i], fence)) as sql::Pending<'_, Applied>
    }));
    let mut results = sql::run(futs, together).await.into_iter();
    if fencing.is_none() {
        match results.next().expect("the check ran") {
            Ok((true, _)) => {}
            Ok((false, _)) => return Ok(Err(Abort::Refused(StoreError::fenced(lease)))),
            Err(e) => return Err(e),
        }
    }
    let mut outcomes: Vec<Option<PgResult<Applied>>> = changes.iter().map(|_| None).collect();
    for (k, r) in results.enumerate() {
        outcomes[order[k]] = Some(r);
    }
    // The lease is judged first: a refused write may fail in other ways
    // too, and it is the refusal that matters.
    if let Some(i) = fencing
        && matches!(outcomes[i], Some(Ok((false, _))))
    {
        return Ok(Err(Abort::Refused(StoreError::fenced(lease))));
    }
    for (c, r) in changes.iter().zip(outcomes) {
        // Missing only after an error (one by one stops there): abort.
        let Some(r) = r else {
            return Ok(Err(Abort::Missing));
        };
        let (matched, cancelled) = r?;
        if !matched {
            return Ok(Err(Abort::Missing));
        }
        ctx.items.extend(c.feed_item(ctx.now));
        ctx.items.extend(cancelled);
    }
    Ok(Ok(()))
}

/// A write without a lease: row inserts (blocks, jobs) would not notice a
/// missing workflow, so its existence is checked first.
async fn write_unleased(tx: &Tx, ctx: &mut Ctx, changes: &[Change]) -> PgResult<Result<(), Abort>> {
    for id in interlock_store::backend::workflows_named(changes) {
        if sql::query_opt(tx, "SELECT 1 FROM workflows WHERE id = $1", &[&id])
            .await?
            .is_none()
        {
            return Ok(Err(Abort::Missing));
        }
    }
    for c in changes {
        let (matched, cancelled) = apply_one(tx, c, None).await?;
        if !matched {
            return Ok(Err(Abort::Missing));
        }
        ctx.items.extend(c.feed_item(ctx.now));
        ctx.items.extend(cancelled);
    }
    Ok(Ok(()))
}

/// Applies one change; a workflow's end takes its limit slots and board
/// tasks with it (in the same round trip). With `fence`, a workflow change
/// matches only while that lease holds.
pub(super) async fn apply_one(tx: &Tx, c: &Change, fence: Option<&Lease>) -> PgResult<Applied> {
    match c {
        Change::Workflow { id, status, .. } if status.is_terminal() => {
            let futs: Vec<sql::Pending<'_, Applied>> = vec![
                Box::pin(
                    async move { update_workflow(tx, c, fence).await.map(|m| (m, Vec::new())) },
                ),
                terminal_cleanup(tx, id),
            ];
            let mut matched = true;
            let mut items = Vec::new();
            for r in sql::all_in_order(futs).await? {
                matched &= r.0;
                items.extend(r.1);
            }
            Ok((matched, items))
        }
        Change::Workflow { .. } => Ok((update_workflow(tx, c, fence).await?, Vec::new())),
        _ => Ok((apply_change(tx, c).await?, Vec::new())),
    }
}

/// A [`Change::Workflow`]: with an owner and epoch, it matches only while
/// that lease holds.
pub(crate) const UPDATE_WORKFLOW: &str =
    "UPDATE workflows SET status = $1, reason = $2, had_errors = $3,
     es_stopped = $4, ended = $5, owner = CASE WHEN $7 THEN NULL ELSE owner END
     WHERE id = $6 AND ($8::text IS NULL OR (owner = $8 AND epoch = $9))";

/// A [`Change::Workflow`]; with `lease`, it matches only while that lease
/// holds.
async fn update_workflow(tx: &Tx, c: &Change, lease: Option<&Lease>) -> PgResult<bool> {
    let Change::Workflow {
        id,
        status,
        reason,
        had_errors,
        es_halt,
        ended,
    } = c
    else {
        // Only ever called for one; matching nothing refuses, the safe way.
        debug_assert!(false, "not a workflow change: {c:?}");
        return Ok(false);
    };
    let (owner, epoch) = lease.map(|l| (l.owner.as_str(), l.epoch)).unzip();
    let n = sql::execute(
        tx,
        UPDATE_WORKFLOW,
        &[
            &(*status as i32),
            reason,
            had_errors,
            &(es_halt.code() as i16),
            ended,
            id,
            &status.is_terminal(),
            &owner,
            &epoch,
        ],
    )
    .await?;
    Ok(n > 0)
}

/// What goes with a workflow's end: its limit slots are freed and its
/// board tasks cancelled ([`end_tasks`]).
pub(super) fn terminal_cleanup<'a>(tx: &'a Tx, id: &'a str) -> sql::Pending<'a, Applied> {
    Box::pin(async move { end_tasks(tx, id).await.map(|items| (true, items)) })
}

/// A workflow that ended frees its limit slots and cancels whatever of it
/// is still on the task board, in the same commit, so no replica runs on
/// for it: a claimer stops its worker, a worker re-attaching is told to
/// stop. One statement for both (the delete runs whether or not the update
/// finds anything).
async fn end_tasks(tx: &Tx, id: &str) -> PgResult<Vec<FeedItem>> {
    let rows = sql::query(
        tx,
        "WITH freed AS (DELETE FROM limit_slots WHERE workflow_id = $1)
         UPDATE board SET cancel = 'the workflow ended'
         WHERE workflow_id = $1 AND cancel IS NULL AND result IS NULL
         RETURNING block_idx, job_idx, job_type",
        &[&id],
    )
    .await?;
    Ok(rows
        .iter()
        .map(|r| FeedItem::Task {
            key: interlock_store::TaskKey {
                workflow_id: id.to_string(),
                block: r.get::<_, i32>(0) as usize,
                job: r.get::<_, i32>(1) as usize,
            },
            job_type: r.get(2),
            open: false,
        })
        .collect())
}

/// Applies one change; false when it matched no row.
pub async fn apply_change(tx: &Tx, c: &Change) -> PgResult<bool> {
    let n = match c {
        Change::Workflow { .. } => return update_workflow(tx, c, None).await,
        Change::WorkflowStatus { id, status, reason } => {
            sql::execute(tx,
                "UPDATE workflows SET status = $1, reason = $2 WHERE id = $3",
                &[&(*status as i32), reason, id],
            )
            .await?
        }
        Change::WorkflowErrors { id } => {
            sql::execute(tx, "UPDATE workflows SET had_errors = true WHERE id = $1", &[id])
                .await?
        }
        Change::Checkpoint {
            id,
            block,
            job,
            state,
        } => {
            sql::execute(tx,
                "INSERT INTO jobs (workflow_id, block_idx, idx, status, error, outputs, fatal,
                 attempts, checkpoint) VALUES ($1, $2, $3, $4, '', '{}', false, '[]', $5)
                 ON CONFLICT (workflow_id, block_idx, idx) DO UPDATE SET checkpoint = excluded.checkpoint",
                &[
                    id,
                    &(*block as i32),
                    &(*job as i32),
                    &(Status::Running as i32),
                    state,
                ],
            )
            .await?
        }
        Change::Block { id, block, rec } => {
            sql::execute(tx,
                "INSERT INTO blocks (workflow_id, idx, status, has_error, failures, started, ended)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (workflow_id, idx) DO UPDATE SET status = excluded.status,
                 has_error = excluded.has_error, failures = excluded.failures,
                 started = excluded.started, ended = excluded.ended",
                &[
                    id,
                    &(*block as i32),
                    &(rec.status as i32),
                    &rec.has_error,
                    &(rec.failures as i32),
                    &rec.started,
                    &rec.ended,
                ],
            )
            .await?
        }
        Change::Job {
            id,
            block,
            job,
            rec,
        } => {
            sql::execute(tx,
                "INSERT INTO jobs (workflow_id, block_idx, idx, status, error, outputs, started,
                 ended, fatal, attempts) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                 ON CONFLICT (workflow_id, block_idx, idx) DO UPDATE SET status = excluded.status,
                 error = excluded.error, outputs = excluded.outputs, started = excluded.started,
                 ended = excluded.ended, fatal = excluded.fatal, attempts = excluded.attempts",
                &[
                    id,
                    &(*block as i32),
                    &(*job as i32),
                    &(rec.status as i32),
                    &rec.error,
                    &json(&rec.outputs),
                    &rec.started,
                    &rec.ended,
                    &rec.fatal,
                    &json(&rec.attempts),
                ],
            )
            .await?
        }
        Change::ReleaseSlots { id, block, job } => {
            sql::execute(
                tx,
                "DELETE FROM limit_slots WHERE workflow_id = $1 AND block_idx = $2 AND job_idx = $3",
                &[id, &(*block as i32), &(*job as i32)],
            )
            .await?;
            // Matching no row is fine: the job held none.
            return Ok(true);
        }
        Change::Log {
            id,
            block,
            job,
            attempt,
            lines,
            keep,
        } => {
            let lines: Vec<_> = lines.iter().map(|l| (l.n as i64, l)).collect();
            let last = lines.iter().map(|(n, _)| *n).max().unwrap_or(0);
            let floor = (last - i64::from(*keep)).max(0);
            put_lines(tx, id, (*block, *job, *attempt), &lines, floor).await?;
            return Ok(true);
        }
    };
    Ok(n > 0)
}
