//! The SQL of the task board (see `interlock_store::board`). Each call is
//! one short transaction of its own, outside the writer's batches: a
//! board change is rare next to workflow progress, and a claim must see
//! the rows other replicas claim meanwhile (`FOR UPDATE SKIP LOCKED`).
//! Owner acts hold the workflow row shared (the lease check), claimer
//! reports lock the task row, so each is fenced until it commits.

use crate::feed;
use crate::ops::{check_lease, put_lines};
use crate::read::backend;
use crate::sql::{self, PgResult};
use crate::writer::NOW_US;
use deadpool_postgres::Transaction;
use interlock_core::{LogLine, Micros};
use interlock_store::backend::micros;
use interlock_store::board::{apply, reattach as reattach_row, release as release_row};
use interlock_store::{BoardReport, BoardTask, FeedItem, Lease, OwnerAct, Result, TaskKey};
use std::time::Duration;
use tokio_postgres::Row;

const COLUMNS: &str = "workflow_id, block_idx, job_idx, attempt, job_type, spec, owner_epoch, \
                       posted_at, claimed_by, claim, claim_expires, checkpoint, result, lost, cancel, \
                       lease";

fn row(r: &Row) -> BoardTask {
    BoardTask {
        key: TaskKey {
            workflow_id: r.get(0),
            block: r.get::<_, i32>(1) as usize,
            job: r.get::<_, i32>(2) as usize,
        },
        attempt: r.get::<_, i32>(3) as u32,
        job_type: r.get(4),
        spec: r.get(5),
        owner_epoch: r.get(6),
        posted_at: r.get(7),
        claimed_by: r.get(8),
        claim: r.get(9),
        claim_expires: r.get(10),
        checkpoint: r.get(11),
        result: r.get(12),
        lost: r.get(13),
        cancel: r.get(14),
        lease: r.get(15),
        now: r.get(16),
    }
}

fn item(t: &BoardTask) -> FeedItem {
    FeedItem::Task {
        key: t.key.clone(),
        job_type: t.job_type.clone(),
        open: t.claimed_by.is_none() && t.result.is_none() && t.cancel.is_none(),
    }
}

fn ids(k: &TaskKey) -> (i32, i32) {
    (k.block as i32, k.job as i32)
}

/// Announces `items` in `tx` (delivered when, and only if, it commits).
async fn announce(tx: &Transaction<'_>, items: &[FeedItem]) -> PgResult<()> {
    for chunk in feed::encode(items) {
        sql::execute(tx, feed::NOTIFY, &[&feed::CHANNEL, &chunk]).await?;
    }
    Ok(())
}

async fn select_for_update(tx: &Transaction<'_>, k: &TaskKey) -> PgResult<Option<BoardTask>> {
    let (b, j) = ids(k);
    let sql = format!(
        "SELECT {COLUMNS}, {NOW_US} FROM board WHERE workflow_id = $1 AND block_idx = $2 \
         AND job_idx = $3 FOR UPDATE"
    );
    Ok(sql::query_opt(tx, &sql, &[&k.workflow_id, &b, &j])
        .await?
        .as_ref()
        .map(row))
}

async fn store_row(tx: &Transaction<'_>, t: &BoardTask) -> PgResult<()> {
    let (b, j) = ids(&t.key);
    let sql = format!(
        "INSERT INTO board ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, \
         $13, $14, $15, $16)
         ON CONFLICT (workflow_id, block_idx, job_idx) DO UPDATE SET attempt = excluded.attempt,
         job_type = excluded.job_type, spec = excluded.spec, owner_epoch = excluded.owner_epoch,
         posted_at = excluded.posted_at, claimed_by = excluded.claimed_by,
         claim = GREATEST(board.claim, excluded.claim), claim_expires = excluded.claim_expires,
         checkpoint = excluded.checkpoint, result = excluded.result, lost = excluded.lost,
         cancel = excluded.cancel, lease = excluded.lease"
    );
    sql::execute(
        tx,
        &sql,
        &[
            &t.key.workflow_id,
            &b,
            &j,
            &(t.attempt as i32),
            &t.job_type,
            &t.spec,
            &t.owner_epoch,
            &t.posted_at,
            &t.claimed_by,
            &t.claim,
            &t.claim_expires,
            &t.checkpoint,
            &t.result,
            &t.lost,
            &t.cancel,
            &t.lease,
        ],
    )
    .await
    .map(|_| ())
}

pub async fn post(c: &mut deadpool_postgres::Client, lease: &Lease, t: &BoardTask) -> Result<()> {
    let tx = c.transaction().await.map_err(backend)?;
    check_lease(&tx, lease).await.map_err(backend)??;
    store_row(&tx, t).await.map_err(backend)?;
    announce(&tx, &[item(t)]).await.map_err(backend)?;
    tx.commit().await.map_err(backend)
}

pub async fn claim(
    c: &mut deadpool_postgres::Client,
    replica: &str,
    types: &[String],
    limit: usize,
    ttl: Duration,
    lease_prefix: &str,
) -> Result<Vec<BoardTask>> {
    let tx = c.transaction().await.map_err(backend)?;
    // The lease id as `BoardTask::lease_for` makes it; never a task of a
    // workflow that ended (its owner is gone with it).
    let sql = format!(
        "UPDATE board SET claimed_by = $1, claim = claim + 1, claim_expires = {NOW_US} + $4,
         lease = $5 || '.' || workflow_id || '.' || block_idx || '.' || job_idx
         WHERE (workflow_id, block_idx, job_idx) IN (
             SELECT b.workflow_id, b.block_idx, b.job_idx FROM board b
             JOIN workflows w ON w.id = b.workflow_id AND w.ended IS NULL
             WHERE b.claimed_by IS NULL AND b.result IS NULL AND b.cancel IS NULL
             AND b.job_type = ANY($2)
             ORDER BY b.posted_at LIMIT $3 FOR UPDATE OF b SKIP LOCKED)
         RETURNING {COLUMNS}, {NOW_US}"
    );
    let mut got: Vec<BoardTask> = sql::query(
        &tx,
        &sql,
        &[
            &replica,
            &types,
            &(limit as i64),
            &micros(ttl),
            &lease_prefix,
        ],
    )
    .await
    .map_err(backend)?
    .iter()
    .map(row)
    .collect();
    got.sort_by_key(|t| t.posted_at);
    if !got.is_empty() {
        let items: Vec<FeedItem> = got.iter().map(item).collect();
        announce(&tx, &items).await.map_err(backend)?;
    }
    tx.commit().await.map_err(backend)?;
    Ok(got)
}

/// Extends the claims of the given tasks. The claimer is compared with
/// `IS NOT DISTINCT FROM` so that each task is found by its key whatever
/// the plan: with `=`, a plan may walk every task the replica holds for
/// each key (see [`crate::plans`]).
pub(crate) fn renew_sql() -> String {
    format!(
        "UPDATE board SET claim_expires = GREATEST(claim_expires, {NOW_US} + $2)
         FROM UNNEST($3::text[], $4::int[], $5::int[]) AS k(w, b, j)
         WHERE board.workflow_id = k.w AND board.block_idx = k.b AND board.job_idx = k.j
         AND claimed_by IS NOT DISTINCT FROM $1 AND lost IS NULL AND claim_expires >= {NOW_US}"
    )
}

pub async fn renew(
    c: &deadpool_postgres::Client,
    replica: &str,
    keys: &[TaskKey],
    ttl: Duration,
) -> Result<()> {
    let ws: Vec<&str> = keys.iter().map(|k| k.workflow_id.as_str()).collect();
    let bs: Vec<i32> = keys.iter().map(|k| k.block as i32).collect();
    let js: Vec<i32> = keys.iter().map(|k| k.job as i32).collect();
    sql::execute(c, &renew_sql(), &[&replica, &micros(ttl), &ws, &bs, &js])
        .await
        .map_err(backend)
        .map(|_| ())
}

pub async fn report(
    c: &mut deadpool_postgres::Client,
    key: &TaskKey,
    claim: i64,
    report: BoardReport,
    at: Micros,
) -> Result<bool> {
    let tx = c.transaction().await.map_err(backend)?;
    let held = select_for_update(&tx, key)
        .await
        .map_err(backend)?
        .filter(|t| t.claimed_by.is_some() && t.claim == claim && t.lost.is_none());
    let Some(mut t) = held else {
        return Ok(false);
    };
    let items = match report {
        BoardReport::Lines { lines, keep } => {
            append_lines(&tx, &t, lines, keep, at)
                .await
                .map_err(backend)?;
            vec![FeedItem::Logs(key.workflow_id.clone())]
        }
        BoardReport::Result(_) if t.result.is_some() => return Ok(false),
        BoardReport::Result(r) => {
            t.result = Some(r);
            vec![item(&t)]
        }
        BoardReport::Checkpoint(cp) => {
            t.checkpoint = Some(cp);
            vec![item(&t)]
        }
        BoardReport::Release => {
            release_row(&mut t);
            vec![item(&t)]
        }
        BoardReport::Lost { why, grace } => {
            t.lost = Some(why);
            // As long as a worker has to come back, from now.
            t.claim_expires = t.now + micros(grace);
            vec![item(&t)]
        }
    };
    if !matches!(items.first(), Some(FeedItem::Logs(_))) {
        store_row(&tx, &t).await.map_err(backend)?;
    }
    announce(&tx, &items).await.map_err(backend)?;
    tx.commit().await.map_err(backend)?;
    Ok(true)
}

/// Appends a worker's lines to the task's attempt, numbered after the
/// ones it has, and trims the attempt to its newest `keep`.
async fn append_lines(
    tx: &Transaction<'_>,
    t: &BoardTask,
    lines: Vec<LogLine>,
    keep: u32,
    at: Micros,
) -> PgResult<()> {
    let (b, j) = ids(&t.key);
    let a = t.attempt as i32;
    let base: i64 = sql::query_one(
        tx,
        "SELECT COALESCE(MAX(n), 0) FROM job_logs WHERE workflow_id = $1 AND block_idx = $2
         AND job_idx = $3 AND attempt = $4",
        &[&t.key.workflow_id, &b, &j, &a],
    )
    .await?
    .get(0);
    // A line keeps its own time, or takes the report's.
    let lines: Vec<LogLine> = lines
        .into_iter()
        .map(|l| LogLine {
            at: if l.at == 0 { at } else { l.at },
            ..l
        })
        .collect();
    let count = lines.len() as i64;
    let numbered: Vec<(i64, &LogLine)> = (base + 1..).zip(&lines).collect();
    let floor = (base + count - i64::from(keep)).max(0);
    put_lines(
        tx,
        &t.key.workflow_id,
        (t.key.block, t.key.job, t.attempt),
        &numbered,
        floor,
    )
    .await
}

pub async fn reattach(
    c: &mut deadpool_postgres::Client,
    lease: &str,
    replica: &str,
    ttl: Duration,
) -> Result<Option<BoardTask>> {
    let tx = c.transaction().await.map_err(backend)?;
    let sql = format!(
        "SELECT {COLUMNS}, {NOW_US} FROM board WHERE lease = $1 AND claimed_by IS NOT NULL
         AND result IS NULL FOR UPDATE"
    );
    let found = sql::query_opt(&tx, &sql, &[&lease])
        .await
        .map_err(backend)?
        .as_ref()
        .map(row);
    let Some(mut t) = found else {
        return Ok(None);
    };
    if t.cancel.is_some() {
        // Its worker must stop, and is told why.
        return Ok(Some(t));
    }
    if t.claim_expires < t.now {
        return Ok(None);
    }
    let until = t.now + micros(ttl);
    reattach_row(&mut t, replica, until);
    store_row(&tx, &t).await.map_err(backend)?;
    announce(&tx, &[item(&t)]).await.map_err(backend)?;
    tx.commit().await.map_err(backend)?;
    Ok(Some(t))
}

pub async fn act(
    c: &mut deadpool_postgres::Client,
    lease: &Lease,
    key: &TaskKey,
    act: OwnerAct,
) -> Result<Option<BoardTask>> {
    let tx = c.transaction().await.map_err(backend)?;
    check_lease(&tx, lease).await.map_err(backend)??;
    let Some(mut t) = select_for_update(&tx, key).await.map_err(backend)? else {
        return Ok(None);
    };
    let after = if act == OwnerAct::Remove {
        let (b, j) = ids(key);
        sql::execute(
            &tx,
            "DELETE FROM board WHERE workflow_id = $1 AND block_idx = $2 AND job_idx = $3",
            &[&key.workflow_id, &b, &j],
        )
        .await
        .map_err(backend)?;
        None
    } else {
        apply(&mut t, act, lease.epoch);
        store_row(&tx, &t).await.map_err(backend)?;
        Some(t.clone())
    };
    announce(&tx, &[item(&t)]).await.map_err(backend)?;
    tx.commit().await.map_err(backend)?;
    Ok(after)
}

pub async fn get(c: &deadpool_postgres::Client, key: &TaskKey) -> Result<Option<BoardTask>> {
    let (b, j) = ids(key);
    let sql = format!(
        "SELECT {COLUMNS}, {NOW_US} FROM board WHERE workflow_id = $1 AND block_idx = $2 \
         AND job_idx = $3"
    );
    Ok(sql::query_opt(c, &sql, &[&key.workflow_id, &b, &j])
        .await
        .map_err(backend)?
        .as_ref()
        .map(row))
}
