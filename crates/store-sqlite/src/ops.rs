//! The write-side SQL: what each write op does inside the writer's
//! transaction. Every function here runs on the writer thread, so
//! read-then-write sequences in one function are atomic.
//!
//! Why one file over 600 lines: one function per write op, each a few
//! statements, all running on the writer thread under the same rule
//! (read-then-write is atomic); the changes under a lease are in
//! `apply_change` and `write`.

use crate::writer::Ctx;
use interlock_core::{AuditEntry, Micros, Status};
use interlock_store::backend::NewWorkflow;
use interlock_store::{
    CasOutcome, Change, ControlRequest, FeedItem, Gcra, Lease, RequestKind, SharedStop,
    SlotOutcome, SlotRequest, StoreError, SubmitOutcome, TakeOutcome, TakeRequest, workflow_event,
};
use rusqlite::{OptionalExtension, Transaction, params};

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("plain data serializes")
}

pub fn insert_audit(tx: &Transaction<'_>, e: &AuditEntry, target: &str) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO audit (at, identity, action, target, request_id, outcome, detail, peer)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        e.at,
        e.identity,
        e.action,
        target,
        e.request_id,
        e.outcome,
        e.detail,
        e.peer
    ])?;
    Ok(())
}

pub fn submit(
    tx: &Transaction<'_>,
    new: &NewWorkflow,
    hash: &str,
    audit: Option<&AuditEntry>,
) -> rusqlite::Result<SubmitOutcome> {
    let key = &new.request_id;
    if !key.is_empty()
        && let Some((id, content_hash)) = tx
            .prepare_cached(
                "SELECT workflow_id, content_hash FROM idempotency WHERE request_id = ?1",
            )?
            .query_row([key], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })
            .optional()?
    {
        if let Some(a) = audit {
            let mut a = a.clone();
            a.detail =
                format!("request_id {key:?} already used: answered with the existing workflow");
            insert_audit(tx, &a, &id)?;
        }
        return Ok(SubmitOutcome::Existing { id, content_hash });
    }
    // The request goes in its own table (see schema migration 19): the
    // workflow's row, rewritten at every status change, stays small.
    tx.prepare_cached(
        "INSERT INTO workflows (id, name, request, status, created, policy_version, submitted_by)
         VALUES (?1, ?2, '', ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        new.id,
        new.name,
        new.status as i32,
        new.created,
        new.policy_version,
        new.submitted_by
    ])?;
    tx.prepare_cached("INSERT INTO workflow_requests (workflow_id, request) VALUES (?1, ?2)")?
        .execute(params![new.id, new.request])?;
    for (k, v) in &new.labels {
        tx.prepare_cached(
            "INSERT INTO labels (workflow_id, key, value, created) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![new.id, k, v, new.created])?;
    }
    for c in &new.carried {
        apply_change(tx, c)?;
    }
    if !key.is_empty() {
        tx.prepare_cached(
            "INSERT INTO idempotency (request_id, content_hash, workflow_id, created)
             VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![key, hash, new.id, new.created])?;
    }
    if let Some(a) = audit {
        insert_audit(tx, a, &new.id)?;
    }
    Ok(SubmitOutcome::Inserted)
}

/// The workflow's status, owner and epoch.
pub fn ownership(
    tx: &Transaction<'_>,
    id: &str,
) -> rusqlite::Result<Option<(i32, Option<String>, i64)>> {
    tx.prepare_cached("SELECT status, owner, epoch FROM workflows WHERE id = ?1")?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()
}

fn alive(tx: &Transaction<'_>, instance: &str, now: Micros) -> rusqlite::Result<bool> {
    Ok(tx
        .prepare_cached("SELECT 1 FROM instances WHERE id = ?1 AND expires >= ?2")?
        .query_row(params![instance, now], |_| Ok(()))
        .optional()?
        .is_some())
}

fn status_of(v: i32) -> Status {
    Status::from_i32(v).unwrap_or(Status::Failed)
}

/// The compare-and-set preamble shared by acquire and transition: the
/// current epoch if `id` is in `from` and no live instance other than `me`
/// owns it.
fn check_cas(
    tx: &Transaction<'_>,
    id: &str,
    from: Status,
    me: Option<&str>,
    now: Micros,
) -> rusqlite::Result<Result<i64, CasOutcome<()>>> {
    let Some((status, owner, epoch)) = ownership(tx, id)? else {
        return Ok(Err(CasOutcome::NotFound));
    };
    if status != from as i32 {
        return Ok(Err(CasOutcome::WrongStatus(status_of(status))));
    }
    if let Some(o) = owner.filter(|o| Some(o.as_str()) != me)
        && alive(tx, &o, now)?
    {
        return Ok(Err(CasOutcome::OwnedBy(o)));
    }
    Ok(Ok(epoch))
}

fn relabel<T>(o: CasOutcome<()>) -> CasOutcome<T> {
    match o {
        CasOutcome::Done(()) | CasOutcome::NotFound => CasOutcome::NotFound,
        CasOutcome::WrongStatus(s) => CasOutcome::WrongStatus(s),
        CasOutcome::OwnedBy(o) => CasOutcome::OwnedBy(o),
    }
}

pub fn acquire(
    tx: &Transaction<'_>,
    ctx: &mut Ctx<'_>,
    id: &str,
    from: Status,
    owner: &str,
    at: Micros,
    audit: Option<&AuditEntry>,
) -> rusqlite::Result<CasOutcome<Lease>> {
    let epoch = match check_cas(tx, id, from, Some(owner), ctx.now)? {
        Ok(e) => e + 1,
        Err(o) => return Ok(relabel(o)),
    };
    if from == Status::NotStarted {
        tx.prepare_cached(
            "UPDATE workflows SET status = ?1, started = ?2, executed_by = ?3, owner = ?4,
             epoch = ?5 WHERE id = ?6",
        )?
        .execute(params![
            Status::Running as i32,
            at,
            audit.map_or("", |a| a.identity.as_str()),
            owner,
            epoch,
            id
        ])?;
    } else {
        tx.prepare_cached(
            "UPDATE workflows SET status = ?1, reason = '', owner = ?2, epoch = ?3 WHERE id = ?4",
        )?
        .execute(params![Status::Running as i32, owner, epoch, id])?;
    }
    if let Some(a) = audit {
        insert_audit(tx, a, id)?;
    }
    let (item, lease) = interlock_store::backend::acquired(id, owner, epoch, ctx.now);
    ctx.events.push(item);
    Ok(CasOutcome::Done(lease))
}

#[allow(clippy::too_many_arguments)]
pub fn transition(
    tx: &Transaction<'_>,
    ctx: &mut Ctx<'_>,
    id: &str,
    from: Status,
    to: Status,
    reason: &str,
    ended: Option<Micros>,
    changes: &[Change],
) -> rusqlite::Result<CasOutcome> {
    if let Err(o) = check_cas(tx, id, from, None, ctx.now)? {
        return Ok(o);
    }
    for c in changes {
        apply_change(tx, c)?;
        ctx.events.extend(c.feed_item(ctx.now));
    }
    tx.prepare_cached(
        "UPDATE workflows SET status = ?1, reason = ?2, ended = COALESCE(?3, ended),
         owner = CASE WHEN ?5 THEN NULL ELSE owner END WHERE id = ?4",
    )?
    .execute(params![to as i32, reason, ended, id, to.is_terminal()])?;
    if to.is_terminal() {
        drop_slots(tx, id)?;
    }
    ctx.events
        .push(FeedItem::Event(workflow_event(id, ctx.now, to, reason)));
    Ok(CasOutcome::Done(()))
}

/// `Err(Fenced)` unless `lease` is still the workflow's.
pub fn check_lease(
    tx: &Transaction<'_>,
    lease: &Lease,
) -> rusqlite::Result<Result<(), StoreError>> {
    let ok = tx
        .prepare_cached("SELECT 1 FROM workflows WHERE id = ?1 AND owner = ?2 AND epoch = ?3")?
        .query_row(params![lease.workflow_id, lease.owner, lease.epoch], |_| {
            Ok(())
        })
        .optional()?
        .is_some();
    Ok(if ok {
        Ok(())
    } else {
        Err(StoreError::fenced(lease))
    })
}

pub fn write(
    tx: &Transaction<'_>,
    ctx: &mut Ctx<'_>,
    lease: Option<&Lease>,
    changes: &[Change],
) -> rusqlite::Result<Result<(), StoreError>> {
    // The change to the workflow's own row, when there is one, goes first
    // with the lease as its condition: one statement instead of a lease
    // check and an update (the end of every run, and of each of the
    // thousands an e-stop ends at once). Nothing precedes it, so a refusal
    // lands nothing.
    let mut fenced_row = None;
    if let Some(l) = lease
        && !ctx.leases.holds(l)
    {
        match changes
            .iter()
            .position(|c| matches!(c, Change::Workflow { id, .. } if *id == l.workflow_id))
        {
            Some(i) => {
                if !apply(tx, &changes[i], Some(l))? {
                    return Ok(Err(StoreError::fenced(l)));
                }
                fenced_row = Some(i);
            }
            None => {
                if let Err(e) = check_lease(tx, l)? {
                    return Ok(Err(e));
                }
                ctx.leases.remember(l);
            }
        }
    }
    if lease.is_none() {
        // Row inserts (blocks, jobs) would not notice a missing workflow;
        // under a lease, its check already proved the workflow exists.
        for id in interlock_store::backend::workflows_named(changes) {
            if ownership(tx, id)?.is_none() {
                return Err(rusqlite::Error::QueryReturnedNoRows);
            }
        }
    }
    for (i, c) in changes.iter().enumerate() {
        if fenced_row != Some(i) && !apply_change(tx, c)? {
            // Nothing matched: the workflow does not exist.
            return Err(rusqlite::Error::QueryReturnedNoRows);
        }
        if let Change::Workflow { id, .. } = c {
            // A terminal status ends ownership.
            ctx.leases.forget(id);
        }
        ctx.events.extend(c.feed_item(ctx.now));
    }
    Ok(Ok(()))
}

/// A [`Change::Workflow`]: with an owner and epoch, it matches only while
/// that lease holds. The `WHERE` reads the row as it was before the `SET`,
/// so the owner it compares is the lease's, not the NULL a terminal status
/// writes.
const UPDATE_WORKFLOW: &str = "UPDATE workflows SET status = ?1, reason = ?2, had_errors = ?3,
     es_stopped = ?4, ended = ?5, owner = CASE WHEN ?7 THEN NULL ELSE owner END
     WHERE id = ?6 AND (?8 IS NULL OR (owner = ?8 AND epoch = ?9))";

/// Applies one change; false when it matched no row.
pub fn apply_change(tx: &Transaction<'_>, c: &Change) -> rusqlite::Result<bool> {
    apply(tx, c, None)
}

/// [`apply_change`]; with `fence`, a [`Change::Workflow`] is written only
/// while that lease is still the workflow's (other changes are not fenced
/// here). A terminal status ends ownership and drops the workflow's limit
/// slots.
fn apply(tx: &Transaction<'_>, c: &Change, fence: Option<&Lease>) -> rusqlite::Result<bool> {
    let n = match c {
        Change::Workflow {
            id,
            status,
            reason,
            had_errors,
            es_halt,
            ended,
        } => {
            let (owner, epoch) = fence.map(|l| (l.owner.as_str(), l.epoch)).unzip();
            let n = tx.prepare_cached(UPDATE_WORKFLOW)?.execute(params![
                *status as i32,
                reason,
                had_errors,
                es_halt.code(),
                ended,
                id,
                status.is_terminal(),
                owner,
                epoch
            ])?;
            if n > 0 && status.is_terminal() {
                drop_slots(tx, id)?;
            }
            n
        }
        Change::WorkflowStatus { id, status, reason } => tx
            .prepare_cached("UPDATE workflows SET status = ?1, reason = ?2 WHERE id = ?3")?
            .execute(params![*status as i32, reason, id])?,
        Change::WorkflowErrors { id } => tx
            .prepare_cached("UPDATE workflows SET had_errors = 1 WHERE id = ?1")?
            .execute([id])?,
        Change::Checkpoint {
            id,
            block,
            job,
            state,
        } => {
            tx.prepare_cached(
                "INSERT INTO jobs (workflow_id, block_idx, idx, status, error, outputs, fatal,
                 attempts, checkpoint) VALUES (?1, ?2, ?3, ?4, '', '{}', 0, '[]', ?5)
                 ON CONFLICT (workflow_id, block_idx, idx) DO UPDATE SET checkpoint = excluded.checkpoint",
            )?
            .execute(params![
                id,
                *block as i64,
                *job as i64,
                Status::Running as i32,
                state
            ])?
        }
        Change::Block { id, block, rec } => {
            tx.prepare_cached(
                "INSERT INTO blocks (workflow_id, idx, status, has_error, failures, started, ended)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (workflow_id, idx) DO UPDATE SET status = excluded.status,
                 has_error = excluded.has_error, failures = excluded.failures,
                 started = excluded.started, ended = excluded.ended",
            )?
            .execute(params![
                id,
                *block as i64,
                rec.status as i32,
                rec.has_error,
                rec.failures,
                rec.started,
                rec.ended
            ])?
        }
        Change::Job {
            id,
            block,
            job,
            rec,
        } => {
            tx.prepare_cached(
                "INSERT INTO jobs (workflow_id, block_idx, idx, status, error, outputs, started,
                 ended, fatal, attempts) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                 ON CONFLICT (workflow_id, block_idx, idx) DO UPDATE SET status = excluded.status,
                 error = excluded.error, outputs = excluded.outputs, started = excluded.started,
                 ended = excluded.ended, fatal = excluded.fatal, attempts = excluded.attempts",
            )?
            .execute(params![
                id,
                *block as i64,
                *job as i64,
                rec.status as i32,
                rec.error,
                json(&rec.outputs),
                rec.started,
                rec.ended,
                rec.fatal,
                json(&rec.attempts)
            ])?
        }
        Change::ReleaseSlots { id, block, job } => {
            tx.prepare_cached(
                "DELETE FROM limit_slots WHERE workflow_id = ?1 AND block_idx = ?2 AND job_idx = ?3",
            )?
            .execute(params![id, *block as i64, *job as i64])?;
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
            let mut insert = tx.prepare_cached(
                "INSERT INTO job_logs (workflow_id, block_idx, job_idx, attempt, n, at, stream, line)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            for l in lines {
                insert.execute(params![
                    id,
                    *block as i64,
                    *job as i64,
                    attempt,
                    l.n as i64,
                    l.at,
                    l.stream.as_str(),
                    l.text
                ])?;
            }
            let last = lines.iter().map(|l| l.n).max().unwrap_or(0);
            tx.prepare_cached(
                "DELETE FROM job_logs WHERE workflow_id = ?1 AND block_idx = ?2 AND job_idx = ?3
                 AND attempt = ?4 AND n <= ?5",
            )?
            .execute(params![
                id,
                *block as i64,
                *job as i64,
                attempt,
                last.saturating_sub(u64::from(*keep)) as i64
            ])?;
            // Under a lease the workflow exists; without one the caller
            // checked it (see `write`).
            return Ok(true);
        }
    };
    Ok(n > 0)
}

/// Drops every slot row of a workflow that ended.
fn drop_slots(tx: &Transaction<'_>, id: &str) -> rusqlite::Result<()> {
    tx.prepare_cached("DELETE FROM limit_slots WHERE workflow_id = ?1")?
        .execute([id])?;
    Ok(())
}

/// Decides a request for limit slots; see [`interlock_store::slots`]. The
/// single writer serializes it with every other request.
pub fn acquire_slots(
    tx: &Transaction<'_>,
    ctx: &mut Ctx<'_>,
    lease: &Lease,
    req: &SlotRequest,
) -> rusqlite::Result<Result<SlotOutcome, StoreError>> {
    if !ctx.leases.holds(lease) {
        if let Err(e) = check_lease(tx, lease)? {
            return Ok(Err(e));
        }
        ctx.leases.remember(lease);
    }
    let mut rows = Vec::new();
    for s in &req.slots {
        rows.extend(crate::read::slot_rows(
            tx,
            "limit_name = ?1 AND part = ?2",
            params![s.limit, s.part],
        )?);
    }
    let (out, write) = interlock_store::slots::decide(req, &rows);
    tx.prepare_cached(
        "DELETE FROM limit_slots WHERE workflow_id = ?1 AND block_idx = ?2 AND job_idx = ?3",
    )?
    .execute(params![req.workflow_id, req.block as i64, req.job as i64])?;
    let mut insert = tx.prepare_cached(
        "INSERT INTO limit_slots (limit_name, part, holder, workflow_id, block_idx, job_idx,
         granted, since, seen, position, held, max)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )?;
    for r in &write {
        insert.execute(params![
            r.limit,
            r.part,
            r.holder,
            r.workflow_id,
            r.block as i64,
            r.job as i64,
            r.granted,
            r.since,
            r.seen,
            r.position,
            r.held,
            r.max
        ])?;
    }
    Ok(Ok(out))
}

pub fn release(tx: &Transaction<'_>, lease: &Lease) -> rusqlite::Result<Result<(), StoreError>> {
    if let Err(e) = check_lease(tx, lease)? {
        return Ok(Err(e));
    }
    tx.prepare_cached("UPDATE workflows SET owner = NULL WHERE id = ?1")?
        .execute([&lease.workflow_id])?;
    Ok(Ok(()))
}

/// The owners of running workflows that have no live instance, each once:
/// a walk that jumps from one owner to the next in
/// `workflows_running_owner`, so it costs a few index seeks per owner,
/// however many workflows each runs. The index is named:
/// without statistics SQLite's planner preferred `workflows_status_created`
/// and a sort, a walk of every running workflow again. (`status = 2` is
/// written out: a partial index serves only a query whose condition names
/// its literal.)
pub(crate) const GONE_OWNERS: &str = "WITH RECURSIVE owners(o) AS (
         SELECT (SELECT owner FROM workflows INDEXED BY workflows_running_owner
                 WHERE status = 2 AND owner IS NOT NULL ORDER BY owner LIMIT 1)
         UNION ALL
         SELECT (SELECT owner FROM workflows INDEXED BY workflows_running_owner
                 WHERE status = 2 AND owner > o ORDER BY owner LIMIT 1)
         FROM owners WHERE o IS NOT NULL
     )
     SELECT o FROM owners WHERE o IS NOT NULL AND NOT EXISTS
         (SELECT 1 FROM instances i WHERE i.id = o AND i.expires >= ?1)";

/// The oldest running workflows of one owner (NULL: of none), from the
/// same index.
pub(crate) const RUNNING_OF: &str = "SELECT id, created FROM workflows
     INDEXED BY workflows_running_owner WHERE status = 2 AND owner IS ?1
     ORDER BY created LIMIT ?2";

const _: () = assert!(Status::Running as i32 == 2, "the statements above name it");

/// Claims up to `limit` running workflows without a live owner, oldest
/// first; returns their ids and new leases (the caller loads the records).
///
/// Looked up by owner, not by walking every running workflow: the claim
/// runs every third of the lease ttl, and with 100,000 running that walk
/// held the writer about 50 ms each time (0.03 ms by owner); and a
/// takeover of them all, claims of 64 in a loop, was quadratic, each claim
/// walking past the ones claimed before it (41 s for 100,000; 1.7 s by
/// owner; `scripts/measure-orphan-claim`).
pub fn claim_orphans(
    tx: &Transaction<'_>,
    ctx: &mut Ctx<'_>,
    owner: &str,
    limit: usize,
) -> rusqlite::Result<Vec<Lease>> {
    // The unowned first (NULL), then each gone owner.
    let mut gone: Vec<Option<String>> = vec![None];
    for o in tx
        .prepare_cached(GONE_OWNERS)?
        .query_map(params![ctx.now], |r| r.get(0))?
    {
        gone.push(Some(o?));
    }
    let mut found: Vec<(i64, String)> = Vec::new();
    let mut of = tx.prepare_cached(RUNNING_OF)?;
    for o in &gone {
        for row in of.query_map(params![o, limit as i64], |r| Ok((r.get(1)?, r.get(0)?)))? {
            found.push(row?);
        }
    }
    found.sort_unstable();
    found.truncate(limit);
    let mut out = Vec::with_capacity(found.len());
    for (_, id) in found {
        let epoch: i64 = tx
            .prepare_cached(
                "UPDATE workflows SET owner = ?1, epoch = epoch + 1 WHERE id = ?2 RETURNING epoch",
            )?
            .query_row(params![owner, id], |r| r.get(0))?;
        out.push(Lease {
            workflow_id: id,
            owner: owner.to_string(),
            epoch,
        });
    }
    Ok(out)
}

pub fn register_instance(
    tx: &Transaction<'_>,
    ctx: &mut Ctx<'_>,
    info: &interlock_store::InstanceInfo,
    ttl: Micros,
) -> rusqlite::Result<()> {
    // The OS lock proves no other process uses this database: every other
    // instance is gone, whatever its heartbeat says, and its workflows are
    // orphans now rather than after the ttl.
    tx.prepare_cached("UPDATE instances SET expires = ?1 WHERE id != ?2 AND expires >= ?1")?
        .execute(params![ctx.now - 1, info.id])?;
    // Long-gone instances owning nothing are history, not state.
    tx.prepare_cached(
        "DELETE FROM instances WHERE expires < ?1 AND NOT EXISTS
         (SELECT 1 FROM workflows w WHERE w.owner = instances.id)",
    )?
    .execute([ctx.now - 7 * 24 * 3_600_000_000])?;
    tx.prepare_cached(
        "INSERT INTO instances (id, pid, host, addr, version, started, heartbeat, expires)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (id) DO UPDATE SET pid = excluded.pid, host = excluded.host,
         addr = excluded.addr, version = excluded.version, heartbeat = excluded.heartbeat,
         expires = excluded.expires",
    )?
    .execute(params![
        info.id,
        info.pid,
        info.host,
        info.addr,
        info.version,
        info.started,
        ctx.now,
        ctx.now + ttl
    ])?;
    Ok(())
}

pub fn heartbeat(
    tx: &Transaction<'_>,
    ctx: &mut Ctx<'_>,
    id: &str,
    ttl: Micros,
) -> rusqlite::Result<Result<(), StoreError>> {
    let n = tx
        .prepare_cached(
            "UPDATE instances SET heartbeat = ?1, expires = ?2 WHERE id = ?3 AND expires >= ?1",
        )?
        .execute(params![ctx.now, ctx.now + ttl, id])?;
    Ok(if n == 1 {
        Ok(())
    } else {
        Err(StoreError::LeaseLost(id.to_string()))
    })
}

pub fn take(tx: &Transaction<'_>, req: &TakeRequest) -> rusqlite::Result<TakeOutcome> {
    let stored: Option<(Micros, Micros, u32)> = tx
        .prepare_cached(
            "SELECT tat, per_token, burst FROM bucket_state WHERE bucket = ?1 AND key = ?2",
        )?
        .query_row(params![req.bucket, req.key], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?;
    let tat = match stored {
        Some((tat, per_token, burst)) if (Gcra { per_token, burst }) == req.rule => tat,
        // New bucket, or its rule changed: replay what the recorded takes
        // mean under the rule in force.
        _ => {
            let takes: Vec<Micros> = tx
                .prepare_cached(
                    "SELECT taken_at FROM bucket_takes WHERE bucket = ?1 AND key = ?2
                     AND taken_at >= ?3 ORDER BY taken_at",
                )?
                .query_map(
                    params![req.bucket, req.key, req.at - req.rule.window()],
                    |r| r.get(0),
                )?
                .collect::<rusqlite::Result<_>>()?;
            req.rule.replay(takes)
        }
    };
    match req.rule.take(tat, req.at) {
        Err(retry_after) => Ok(TakeOutcome::Empty { retry_after }),
        Ok(tat) => {
            tx.prepare_cached(
                "INSERT INTO bucket_state (bucket, key, tat, per_token, burst)
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (bucket, key) DO UPDATE SET
                 tat = excluded.tat, per_token = excluded.per_token, burst = excluded.burst",
            )?
            .execute(params![
                req.bucket,
                req.key,
                tat,
                req.rule.per_token,
                req.rule.burst
            ])?;
            tx.prepare_cached(
                "INSERT INTO bucket_takes (bucket, key, taken_at, workflow_id, block_idx, job_idx)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                req.bucket,
                req.key,
                req.at,
                req.workflow_id,
                req.block as i64,
                req.job as i64
            ])?;
            Ok(TakeOutcome::Taken)
        }
    }
}

pub fn request(
    tx: &Transaction<'_>,
    ctx: &mut Ctx<'_>,
    workflow_id: &str,
    kind: RequestKind,
    reason: &str,
    at: Micros,
) -> rusqlite::Result<ControlRequest> {
    let id: i64 = tx
        .prepare_cached(
            "INSERT INTO requests (workflow_id, kind, reason, at) VALUES (?1, ?2, ?3, ?4)
             RETURNING id",
        )?
        .query_row(params![workflow_id, kind.as_str(), reason, at], |r| {
            r.get(0)
        })?;
    let r = ControlRequest {
        id,
        workflow_id: workflow_id.to_string(),
        kind,
        reason: reason.to_string(),
        at,
    };
    ctx.events.push(FeedItem::Request(r.clone()));
    Ok(r)
}

pub fn set_stop(tx: &Transaction<'_>, ctx: &mut Ctx<'_>, e: &SharedStop) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO shared_stops (name, stop, reason, set_by, at) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (name) DO UPDATE SET stop = excluded.stop, reason = excluded.reason,
         set_by = excluded.set_by, at = excluded.at",
    )?
    .execute(params![e.name, e.mode.code(), e.reason, e.by, e.at])?;
    ctx.events.push(FeedItem::Stops);
    Ok(())
}
