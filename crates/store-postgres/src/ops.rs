//! The write-side SQL: what each write op does inside the writer's
//! transaction, with the database's row locks making each read-then-write
//! atomic against other replicas:
//! - Exec's compare-and-set (`acquire`) is one conditional `UPDATE` of the
//!   workflow row (which locks it); only when it misses is the row read,
//!   `FOR UPDATE`, to say why; the other compare-and-sets (`transition`)
//!   read it `FOR UPDATE` first;
//! - a fenced write holds the row too (see [`changes`]), so a takeover (an
//!   update of the same row) waits until the write committed, or the write
//!   waits for the takeover and then finds its lease gone;
//! - a bucket take locks the bucket's row;
//! - claims skip rows other replicas are claiming (`SKIP LOCKED`).
//!
//! Statements of one op that do not depend on each other's results go out
//! together ([`sql::in_order`]): one round trip instead of one each.
//!
//! Why one file over 600 lines: one function per write op, each a few
//! statements; the locking rules above apply to all of them and read best
//! in one place (the changes under a lease are in [`changes`]).

use crate::sql;
use crate::sql::Tx;
use deadpool_postgres::GenericClient;
use interlock_core::{AuditEntry, Micros, Status};
use interlock_store::backend::NewWorkflow;
use interlock_store::{
    CasOutcome, Change, ControlRequest, FeedItem, Gcra, InstanceInfo, Lease, RequestKind,
    SharedStop, SlotOutcome, SlotRequest, StoreError, SubmitOutcome, TakeOutcome, TakeRequest,
    workflow_event,
};

mod changes;
pub use changes::{Abort, apply_change, check_lease, write};
use changes::{Applied, Row, apply_one, distinct_rows, row_of, terminal_cleanup};
#[cfg(test)]
pub(crate) use changes::{CHECK_LEASE, UPDATE_WORKFLOW};

pub type PgResult<T> = Result<T, tokio_postgres::Error>;

/// What an op sees inside the batch transaction.
pub struct Ctx {
    /// The database's clock at the start of the batch, in microseconds.
    pub now: Micros,
    /// Feed items to announce with the commit.
    pub items: Vec<FeedItem>,
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("plain data serializes")
}

fn status_of(v: i32) -> Status {
    Status::from_i32(v).unwrap_or(Status::Failed)
}

pub async fn insert_audit(tx: &Tx, e: &AuditEntry, target: &str) -> PgResult<()> {
    sql::execute(
        tx,
        "INSERT INTO audit (at, identity, action, target, request_id, outcome, detail, peer)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        &[
            &e.at,
            &e.identity,
            &e.action,
            &target,
            &e.request_id,
            &e.outcome,
            &e.detail,
            &e.peer,
        ],
    )
    .await?;
    Ok(())
}

pub async fn submit(
    tx: &Tx,
    new: &NewWorkflow,
    hash: &str,
    audit: Option<&AuditEntry>,
) -> PgResult<SubmitOutcome> {
    let key = &new.request_id;
    if !key.is_empty() {
        // Claim the key first: of racing submits with one key, one inserts.
        let n = sql::execute(
            tx,
            "INSERT INTO idempotency (request_id, content_hash, workflow_id, created)
                 VALUES ($1, $2, $3, $4) ON CONFLICT (request_id) DO NOTHING",
            &[key, &hash, &new.id, &new.created],
        )
        .await?;
        if n == 0 {
            let row = sql::query_one(
                tx,
                "SELECT workflow_id, content_hash FROM idempotency WHERE request_id = $1",
                &[key],
            )
            .await?;
            let (id, content_hash): (String, String) = (row.get(0), row.get(1));
            if let Some(a) = audit {
                let mut a = a.clone();
                a.detail =
                    format!("request_id {key:?} already used: answered with the existing workflow");
                insert_audit(tx, &a, &id).await?;
            }
            return Ok(SubmitOutcome::Existing { id, content_hash });
        }
    }
    // The rest touches distinct rows: one round trip.
    let status = new.status as i32;
    let mut futs: Vec<sql::Pending<'_, ()>> = vec![Box::pin(async move {
        sql::execute(
            tx,
            "INSERT INTO workflows (id, name, request, status, created, policy_version, submitted_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &new.id,
                &new.name,
                &new.request,
                &status,
                &new.created,
                &new.policy_version,
                &new.submitted_by,
            ],
        )
        .await
        .map(drop)
    })];
    for (k, v) in &new.labels {
        futs.push(Box::pin(async move {
            sql::execute(
                tx,
                "INSERT INTO labels (workflow_id, key, value, created) VALUES ($1, $2, $3, $4)",
                &[&new.id, k, v, &new.created],
            )
            .await
            .map(drop)
        }));
    }
    for c in &new.carried {
        futs.push(Box::pin(async move { apply_change(tx, c).await.map(drop) }));
    }
    if let Some(a) = audit {
        futs.push(Box::pin(insert_audit(tx, a, &new.id)));
    }
    sql::all_in_order(futs).await?;
    Ok(SubmitOutcome::Inserted)
}

/// The compare-and-set preamble: the epoch, when `id` is in `from` and no
/// live instance other than `me` owns it. Locks the row.
async fn check_cas(
    tx: &Tx,
    id: &str,
    from: Status,
    me: Option<&str>,
    now: Micros,
) -> PgResult<Result<i64, CasOutcome<()>>> {
    let Some(row) = sql::query_opt(
        tx,
        "SELECT w.status, w.owner, w.epoch, i.expires FROM workflows w
             LEFT JOIN instances i ON i.id = w.owner WHERE w.id = $1 FOR UPDATE OF w",
        &[&id],
    )
    .await?
    else {
        return Ok(Err(CasOutcome::NotFound));
    };
    let (status, owner, epoch, expires): (i32, Option<String>, i64, Option<i64>) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    if status != from as i32 {
        return Ok(Err(CasOutcome::WrongStatus(status_of(status))));
    }
    if let Some(o) = owner.filter(|o| Some(o.as_str()) != me)
        && expires.is_some_and(|e| e >= now)
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

#[allow(clippy::too_many_arguments)]
pub async fn acquire(
    tx: &Tx,
    ctx: &mut Ctx,
    id: &str,
    from: Status,
    owner: &str,
    at: Micros,
    audit: Option<&AuditEntry>,
) -> PgResult<CasOutcome<Lease>> {
    // The compare-and-set in one statement; only when it misses is the row
    // read (and locked) to say why. It misses again only if the row moved
    // on in between: that answer stands, as on any later read.
    let epoch = match take_over(tx, id, from, owner, at, audit, ctx.now).await? {
        Some(e) => e,
        None => match check_cas(tx, id, from, Some(owner), ctx.now).await? {
            Err(o) => return Ok(relabel(o)),
            // The read found it takeable and holds the row locked: the
            // update, on the same conditions and clock, matches now.
            Ok(_) => match take_over(tx, id, from, owner, at, audit, ctx.now).await? {
                Some(e) => e,
                None => return Ok(CasOutcome::NotFound),
            },
        },
    };
    if let Some(a) = audit {
        insert_audit(tx, a, id).await?;
    }
    let (item, lease) = interlock_store::backend::acquired(id, owner, epoch, ctx.now);
    ctx.items.push(item);
    Ok(CasOutcome::Done(lease))
}

/// Exec's compare-and-set. The status is compared with `IS NOT DISTINCT
/// FROM` so that the row is found by its id whatever plan the statement
/// gets: with `=`, a generic plan may walk the (status, created) index
/// through every workflow in that status (see [`crate::plans`]).
pub(crate) const TAKE_OVER: &str =
    "UPDATE workflows w SET status = $1, owner = $2, epoch = w.epoch + 1,
         started = CASE WHEN $3 THEN $4 ELSE w.started END,
         executed_by = CASE WHEN $3 THEN $5 ELSE w.executed_by END,
         reason = CASE WHEN $3 THEN w.reason ELSE '' END
     WHERE w.id = $6 AND w.status IS NOT DISTINCT FROM $7
       AND (w.owner IS NULL OR w.owner = $2 OR NOT EXISTS
            (SELECT 1 FROM instances i WHERE i.id = w.owner AND i.expires >= $8))
     RETURNING w.epoch";

/// Makes `owner` the owner of `id` (Running, next epoch) if it is in
/// `from` and no other live instance owns it; the new epoch, or `None`.
#[allow(clippy::too_many_arguments)]
async fn take_over(
    tx: &Tx,
    id: &str,
    from: Status,
    owner: &str,
    at: Micros,
    audit: Option<&AuditEntry>,
    now: Micros,
) -> PgResult<Option<i64>> {
    let first_start = from == Status::NotStarted;
    let by = audit.map_or("", |a| a.identity.as_str());
    let row = sql::query_opt(
        tx,
        TAKE_OVER,
        &[
            &(Status::Running as i32),
            &owner,
            &first_start,
            &at,
            &by,
            &id,
            &(from as i32),
            &now,
        ],
    )
    .await?;
    Ok(row.map(|r| r.get(0)))
}

#[allow(clippy::too_many_arguments)]
pub async fn transition(
    tx: &Tx,
    ctx: &mut Ctx,
    id: &str,
    from: Status,
    to: Status,
    reason: &str,
    ended: Option<Micros>,
    changes: &[Change],
) -> PgResult<CasOutcome> {
    if let Err(o) = check_cas(tx, id, from, None, ctx.now).await? {
        return Ok(o);
    }
    // The row is locked: the rest in one round trip, or one statement at
    // a time when a change writes the workflow's row too (its order with
    // the status update must hold).
    let status = to as i32;
    let terminal = to.is_terminal();
    let mut futs: Vec<sql::Pending<'_, Applied>> = changes
        .iter()
        .map(|c| Box::pin(apply_one(tx, c, None)) as sql::Pending<'_, Applied>)
        .collect();
    futs.push(Box::pin(async move {
        sql::execute(
            tx,
            "UPDATE workflows SET status = $1, reason = $2, ended = COALESCE($3, ended),
             owner = CASE WHEN $5 THEN NULL ELSE owner END WHERE id = $4",
            &[&status, &reason, &ended, &id, &terminal],
        )
        .await
        .map(|n| (n > 0, Vec::new()))
    }));
    if terminal {
        futs.push(terminal_cleanup(tx, id));
    }
    let together = distinct_rows(changes) && changes.iter().all(|c| row_of(c).0 != Row::Workflow);
    for (i, r) in sql::run(futs, together).await.into_iter().enumerate() {
        let (_, items) = r?;
        if let Some(c) = changes.get(i) {
            ctx.items.extend(c.feed_item(ctx.now));
        }
        ctx.items.extend(items);
    }
    ctx.items
        .push(FeedItem::Event(workflow_event(id, ctx.now, to, reason)));
    Ok(CasOutcome::Done(()))
}

/// Decides a request for limit slots; see [`interlock_store::slots`].
/// Requests on the same partitions serialize on transaction-scoped
/// advisory locks, taken in one order within a request; the writer runs
/// this op alone in its segment, so two requests of one batch never read
/// before each other's rows are written. Two batches on two replicas can
/// still lock partitions in opposite orders: PostgreSQL then aborts one
/// (deadlock detected) and the writer retries its ops one by one, so the
/// cost is a delay, never a double grant.
pub async fn acquire_slots(
    tx: &Tx,
    lease: &Lease,
    req: &SlotRequest,
) -> PgResult<Result<SlotOutcome, StoreError>> {
    if let Err(e) = check_lease(tx, lease).await? {
        return Ok(Err(e));
    }
    let mut parts: Vec<(&str, &str)> = req
        .slots
        .iter()
        .map(|s| (s.limit.as_str(), s.part.as_str()))
        .collect();
    parts.sort_unstable();
    parts.dedup();
    let mut rows = Vec::new();
    for (limit, part) in parts {
        sql::execute(
            tx,
            "SELECT pg_advisory_xact_lock(hashtextextended($1 || chr(31) || $2, 1229737803))",
            &[&limit, &part],
        )
        .await?;
        rows.extend(
            crate::read::slot_rows(tx, "limit_name = $1 AND part = $2", &[&limit, &part]).await?,
        );
    }
    let (out, write) = interlock_store::slots::decide(req, &rows);
    sql::execute(
        tx,
        "DELETE FROM limit_slots WHERE workflow_id = $1 AND block_idx = $2 AND job_idx = $3",
        &[&req.workflow_id, &(req.block as i32), &(req.job as i32)],
    )
    .await?;
    for r in &write {
        sql::execute(
            tx,
            "INSERT INTO limit_slots (limit_name, part, holder, workflow_id, block_idx, job_idx,
             granted, since, seen, position, held, max)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            &[
                &r.limit,
                &r.part,
                &r.holder,
                &r.workflow_id,
                &(r.block as i32),
                &(r.job as i32),
                &r.granted,
                &r.since,
                &r.seen,
                &i64::from(r.position),
                &i64::from(r.held),
                &i64::from(r.max),
            ],
        )
        .await?;
    }
    Ok(Ok(out))
}

/// Gives the workflow up, if `lease` is still its own (found by id
/// whatever the plan, see [`crate::plans`]).
pub(crate) const RELEASE: &str = "UPDATE workflows SET owner = NULL
     WHERE id = $1 AND owner IS NOT DISTINCT FROM $2 AND epoch = $3";

/// Gives the workflow up, if `lease` is still its own.
pub async fn release(tx: &Tx, lease: &Lease) -> PgResult<Result<(), StoreError>> {
    let n = sql::execute(
        tx,
        RELEASE,
        &[&lease.workflow_id, &lease.owner, &lease.epoch],
    )
    .await?;
    Ok(if n == 1 {
        Ok(())
    } else {
        Err(StoreError::fenced(lease))
    })
}

/// The owners of running workflows that have no live instance, each once:
/// a walk that jumps from one owner to the next in
/// `workflows_running_owner`, a few index seeks per owner however many
/// workflows each runs. (`status = 2` is written out: a partial index
/// serves only a condition that names its literal.)
pub(crate) const GONE_OWNERS: &str = "WITH RECURSIVE owners(o) AS (
         SELECT (SELECT owner FROM workflows WHERE status = 2 AND owner IS NOT NULL
                 ORDER BY owner LIMIT 1)
         UNION ALL
         SELECT (SELECT owner FROM workflows WHERE status = 2 AND owner > o
                 ORDER BY owner LIMIT 1)
         FROM owners WHERE o IS NOT NULL
     )
     SELECT o FROM owners WHERE o IS NOT NULL AND NOT EXISTS
         (SELECT 1 FROM instances i WHERE i.id = o AND i.expires >= $1)";

/// The oldest running workflows of one owner, locked, skipping rows
/// another replica is claiming right now.
pub(crate) const RUNNING_OF: &str = "SELECT id, created FROM workflows
     WHERE status = 2 AND owner = $1 ORDER BY created LIMIT $2 FOR UPDATE SKIP LOCKED";

/// The same for running workflows that have no owner. Ordered by `owner`
/// too (all NULL here) so that the plan takes the same index: finished
/// workflows have no owner either, and by the statistics a walk of the
/// status index, filtered, looked cheaper (it read every running one).
pub(crate) const RUNNING_UNOWNED: &str = "SELECT id, created FROM workflows
     WHERE status = 2 AND owner IS NULL ORDER BY owner, created LIMIT $1
     FOR UPDATE SKIP LOCKED";

const _: () = assert!(Status::Running as i32 == 2, "the statements above name it");

/// Claims up to `limit` running workflows without a live owner, oldest
/// first, skipping rows other replicas are claiming right now.
///
/// Looked up by owner, not by walking every running workflow in created
/// order: each replica claims every third of the lease ttl, and the walk
/// read every workflow its live peers run; a takeover (claims of 64 in a
/// loop) walked past the ones claimed before it each time, quadratic in
/// the orphans. An owner's rows beyond the `limit` oldest of all stay
/// locked until this batch commits: other replicas skip them meanwhile and
/// find them on their next claim.
pub async fn claim_orphans(
    tx: &Tx,
    ctx: &mut Ctx,
    owner: &str,
    limit: usize,
) -> PgResult<Vec<Lease>> {
    let n = limit as i64;
    let gone: Vec<String> = sql::query(tx, GONE_OWNERS, &[&ctx.now])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut found: Vec<(i64, String)> = sql::query(tx, RUNNING_UNOWNED, &[&n])
        .await?
        .iter()
        .map(|r| (r.get(1), r.get(0)))
        .collect();
    for o in &gone {
        found.extend(
            sql::query(tx, RUNNING_OF, &[o, &n])
                .await?
                .iter()
                .map(|r| (r.get(1), r.get(0))),
        );
    }
    found.sort_unstable();
    found.truncate(limit);
    let mut out = Vec::with_capacity(found.len());
    for (_, id) in found {
        let epoch: i64 = sql::query_one(
            tx,
            "UPDATE workflows SET owner = $1, epoch = epoch + 1 WHERE id = $2 RETURNING epoch",
            &[&owner, &id],
        )
        .await?
        .get(0);
        out.push(Lease {
            workflow_id: id,
            owner: owner.to_string(),
            epoch,
        });
    }
    Ok(out)
}

pub async fn register_instance(
    tx: &Tx,
    ctx: &mut Ctx,
    info: &InstanceInfo,
    ttl: Micros,
) -> PgResult<()> {
    // Long-gone instances owning nothing are history, not state.
    sql::execute(
        tx,
        "DELETE FROM instances WHERE expires < $1 AND NOT EXISTS
         (SELECT 1 FROM workflows w WHERE w.owner = instances.id)",
        &[&(ctx.now - 7 * 24 * 3_600_000_000)],
    )
    .await?;
    sql::execute(
        tx,
        "INSERT INTO instances (id, pid, host, addr, version, started, heartbeat, expires)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (id) DO UPDATE SET pid = excluded.pid, host = excluded.host,
         addr = excluded.addr, version = excluded.version, heartbeat = excluded.heartbeat,
         expires = excluded.expires",
        &[
            &info.id,
            &(info.pid as i64),
            &info.host,
            &info.addr,
            &info.version,
            &info.started,
            &ctx.now,
            &(ctx.now + ttl),
        ],
    )
    .await?;
    Ok(())
}

pub async fn heartbeat(
    tx: &Tx,
    ctx: &mut Ctx,
    id: &str,
    ttl: Micros,
) -> PgResult<Result<(), StoreError>> {
    let n = sql::execute(
        tx,
        "UPDATE instances SET heartbeat = $1, expires = $2 WHERE id = $3 AND expires >= $1",
        &[&ctx.now, &(ctx.now + ttl), &id],
    )
    .await?;
    Ok(if n == 1 {
        Ok(())
    } else {
        Err(StoreError::LeaseLost(id.to_string()))
    })
}

pub async fn take(tx: &Tx, req: &TakeRequest) -> PgResult<TakeOutcome> {
    // The row exists before it is locked, so racing first takes serialize.
    sql::execute(
        tx,
        "INSERT INTO bucket_state (bucket, key, tat, per_token, burst) VALUES ($1, $2, 0, 0, 0)
         ON CONFLICT (bucket, key) DO NOTHING",
        &[&req.bucket, &req.key],
    )
    .await?;
    let row = sql::query_one(
        tx,
        "SELECT tat, per_token, burst FROM bucket_state WHERE bucket = $1 AND key = $2
             FOR UPDATE",
        &[&req.bucket, &req.key],
    )
    .await?;
    let (tat, per_token, burst): (i64, i64, i32) = (row.get(0), row.get(1), row.get(2));
    let tat = if (Gcra {
        per_token,
        burst: burst as u32,
    }) == req.rule
    {
        tat
    } else {
        // New bucket, or its rule changed: replay what the recorded takes
        // mean under the rule in force.
        let takes: Vec<i64> = sql::query(
            tx,
            "SELECT taken_at FROM bucket_takes WHERE bucket = $1 AND key = $2
                 AND taken_at >= $3 ORDER BY taken_at",
            &[&req.bucket, &req.key, &(req.at - req.rule.window())],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
        req.rule.replay(takes)
    };
    match req.rule.take(tat, req.at) {
        Err(retry_after) => Ok(TakeOutcome::Empty { retry_after }),
        Ok(tat) => {
            sql::execute(
                tx,
                "UPDATE bucket_state SET tat = $3, per_token = $4, burst = $5
                 WHERE bucket = $1 AND key = $2",
                &[
                    &req.bucket,
                    &req.key,
                    &tat,
                    &req.rule.per_token,
                    &(req.rule.burst as i32),
                ],
            )
            .await?;
            sql::execute(
                tx,
                "INSERT INTO bucket_takes (bucket, key, taken_at, workflow_id, block_idx, job_idx)
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[
                    &req.bucket,
                    &req.key,
                    &req.at,
                    &req.workflow_id,
                    &(req.block as i32),
                    &(req.job as i32),
                ],
            )
            .await?;
            Ok(TakeOutcome::Taken)
        }
    }
}

pub async fn request(
    tx: &Tx,
    ctx: &mut Ctx,
    workflow_id: &str,
    kind: RequestKind,
    reason: &str,
    at: Micros,
) -> PgResult<ControlRequest> {
    let id: i64 = sql::query_one(
        tx,
        "INSERT INTO requests (workflow_id, kind, reason, at) VALUES ($1, $2, $3, $4)
             RETURNING id",
        &[&workflow_id, &kind.as_str(), &reason, &at],
    )
    .await?
    .get(0);
    let r = ControlRequest {
        id,
        workflow_id: workflow_id.to_string(),
        kind,
        reason: reason.to_string(),
        at,
    };
    ctx.items.push(FeedItem::Request(r.clone()));
    Ok(r)
}

pub async fn set_stop(tx: &Tx, ctx: &mut Ctx, e: &SharedStop) -> PgResult<()> {
    sql::execute(
        tx,
        "INSERT INTO shared_stops (name, stop, reason, set_by, at) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (name) DO UPDATE SET stop = excluded.stop, reason = excluded.reason,
         set_by = excluded.set_by, at = excluded.at",
        &[&e.name, &(e.mode.code() as i16), &e.reason, &e.by, &e.at],
    )
    .await?;
    ctx.items.push(FeedItem::Stops);
    Ok(())
}

/// Records an approver's decision, replacing that identity's earlier one;
/// `Err` when the workflow does not exist.
pub async fn add_approval(
    tx: &Tx,
    a: &interlock_core::Approval,
) -> PgResult<Result<(), StoreError>> {
    if sql::query_opt(
        tx,
        "SELECT 1 FROM workflows WHERE id = $1",
        &[&a.workflow_id],
    )
    .await?
    .is_none()
    {
        return Ok(Err(StoreError::Backend(format!(
            "no workflow {}",
            a.workflow_id
        ))));
    }
    sql::execute(
        tx,
        "INSERT INTO approvals (workflow_id, identity, roles, approve, comment, content_hash, at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (workflow_id, identity) DO UPDATE SET roles = excluded.roles,
         approve = excluded.approve, comment = excluded.comment,
         content_hash = excluded.content_hash, at = excluded.at",
        &[
            &a.workflow_id,
            &a.identity,
            &json(&a.roles),
            &a.approve,
            &a.comment,
            &a.content_hash,
            &a.at,
        ],
    )
    .await?;
    Ok(Ok(()))
}

/// Inserts an attempt's `lines` (each with its number) in one statement,
/// then trims the attempt to the lines numbered above `floor`.
pub async fn put_lines(
    tx: &impl GenericClient,
    workflow_id: &str,
    (block, job, attempt): (usize, usize, u32),
    lines: &[(i64, &interlock_core::LogLine)],
    floor: i64,
) -> PgResult<()> {
    let (b, j, a) = (block as i32, job as i32, attempt as i32);
    let ns: Vec<i64> = lines.iter().map(|(n, _)| *n).collect();
    let ats: Vec<i64> = lines.iter().map(|(_, l)| l.at).collect();
    let streams: Vec<&str> = lines.iter().map(|(_, l)| l.stream.as_str()).collect();
    let texts: Vec<&str> = lines.iter().map(|(_, l)| l.text.as_str()).collect();
    // One statement for the whole batch: lines come in bursts.
    sql::execute(
        tx,
        "INSERT INTO job_logs (workflow_id, block_idx, job_idx, attempt, n, at, stream, line)
         SELECT $1, $2, $3, $4, t.n, t.at, t.stream, t.line
         FROM UNNEST($5::bigint[], $6::bigint[], $7::text[], $8::text[])
         WITH ORDINALITY AS t(n, at, stream, line, ord) ORDER BY t.ord",
        &[&workflow_id, &b, &j, &a, &ns, &ats, &streams, &texts],
    )
    .await?;
    sql::execute(
        tx,
        "DELETE FROM job_logs WHERE workflow_id = $1 AND block_idx = $2 AND job_idx = $3
         AND attempt = $4 AND n <= $5",
        &[&workflow_id, &b, &j, &a, &floor],
    )
    .await?;
    Ok(())
}
