//! The read side: queries on pooled connections, seeing what has committed.

use crate::sql;
use deadpool_postgres::GenericClient;
use interlock_core::{
    Approval, AuditEntry, AuditQuery, BlockRecord, EsMode, JobRecord, ListFilter, LogLine,
    LogQuery, LogStream, Micros, Status, Summary, WorkflowRecord,
};
use interlock_store::{
    BucketState, ControlRequest, Gcra, IdMatch, InstanceInfo, RequestKind, Result, SharedStop,
    SlotRow, Take,
};
use tokio_postgres::types::ToSql;

pub use interlock_store::backend::{attempts_of, backend, corrupt, head_of, request_of, status_of};

/// One workflow with every recorded block and job change applied.
pub async fn load(c: &impl GenericClient, id: &str) -> Result<Option<WorkflowRecord>> {
    let (workflow, blocks, jobs) = futures::try_join!(
        c.prepare_cached(
            "SELECT request, status, reason, had_errors, es_stopped, created, started, ended,
                 policy_version, submitted_by, executed_by, owner FROM workflows WHERE id = $1",
        ),
        c.prepare_cached(
            "SELECT idx, status, has_error, failures, started, ended FROM blocks
                 WHERE workflow_id = $1",
        ),
        c.prepare_cached(
            "SELECT block_idx, idx, status, error, outputs, started, ended, fatal, attempts,
                 checkpoint FROM jobs WHERE workflow_id = $1",
        ),
    )
    .map_err(backend)?;
    // One snapshot for the three reads (outside a transaction each would
    // see the commits made before it began, so a workflow's status could
    // be older than its jobs'), still in one round trip: each request is
    // sent when first polled, in this order, the statements being
    // prepared above.
    let params: sql::Params<'_> = &[&id];
    let (_, row, blocks, jobs, _) = futures::try_join!(
        c.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"),
        c.query_opt(&workflow, params),
        c.query(&blocks, params),
        c.query(&jobs, params),
        c.batch_execute("COMMIT"),
    )
    .map_err(backend)?;
    let Some(row) = row else {
        return Ok(None);
    };
    let req = request_of(id, row.get::<_, &str>(0))?;
    let mut rec = WorkflowRecord::submitted(id.to_string(), req, row.get(8), row.get(5));
    rec.status = status_of(id, row.get(1))?;
    rec.reason = row.get(2);
    rec.had_errors = row.get(3);
    rec.es_halt = EsMode::from_code(row.get::<_, i16>(4).into());
    rec.started = row.get(6);
    rec.ended = row.get(7);
    rec.submitted_by = row.get(9);
    rec.executed_by = row.get(10);
    rec.owner = row.get(11);
    for row in blocks {
        let idx: i32 = row.get(0);
        let b: &mut BlockRecord = rec
            .blocks
            .get_mut(idx as usize)
            .ok_or_else(|| corrupt(id, format!("block {idx} out of range")))?;
        b.status = status_of(id, row.get(1))?;
        b.has_error = row.get(2);
        b.failures = row.get::<_, i32>(3) as u32;
        b.started = row.get(4);
        b.ended = row.get(5);
    }
    for row in jobs {
        let (bi, ji): (i32, i32) = (row.get(0), row.get(1));
        let j: &mut JobRecord = rec
            .blocks
            .get_mut(bi as usize)
            .and_then(|b| b.jobs.get_mut(ji as usize))
            .ok_or_else(|| corrupt(id, format!("job {bi}/{ji} out of range")))?;
        j.status = status_of(id, row.get(2))?;
        j.error = row.get(3);
        j.outputs = serde_json::from_str(row.get::<_, &str>(4)).map_err(|e| corrupt(id, e))?;
        j.started = row.get(5);
        j.ended = row.get(6);
        j.fatal = row.get(7);
        j.attempts = attempts_of(id, row.get::<_, &str>(8))?;
        j.checkpoint = row.get(9);
    }
    Ok(Some(rec))
}

pub async fn resolve_id(c: &impl GenericClient, prefix: &str) -> Result<IdMatch> {
    // Ids are lowercase hex and dashes, all below '~': the range is exactly
    // the ids with this prefix, served by the primary key.
    let upper = format!("{prefix}~");
    let ids: Vec<String> = sql::query(
        c,
        "SELECT id FROM workflows WHERE id >= $1 AND id < $2 ORDER BY id LIMIT 5",
        &[&prefix, &upper],
    )
    .await
    .map_err(backend)?
    .iter()
    .map(|r| r.get(0))
    .collect();
    Ok(match ids.len() {
        0 => IdMatch::None,
        1 => IdMatch::One(ids.into_iter().next().expect("one")),
        _ => IdMatch::Many(ids),
    })
}

/// Builds `$n` placeholders while collecting their values.
#[derive(Default)]
struct Args(Vec<Box<dyn ToSql + Sync + Send>>);

impl Args {
    fn add(&mut self, v: impl ToSql + Sync + Send + 'static) -> String {
        self.0.push(Box::new(v));
        format!("${}", self.0.len())
    }

    fn refs(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.0
            .iter()
            .map(|b| b.as_ref() as &(dyn ToSql + Sync))
            .collect()
    }
}

pub async fn list(c: &impl GenericClient, f: &ListFilter) -> Result<Vec<Summary>> {
    let mut a = Args::default();
    // Driven by the labels index with a label filter, else by (created, id)
    // or (status, created, id): rows come out newest first and the cursor
    // is a row comparison the index can seek to.
    let (mut sql, order) = match f.labels.first() {
        Some((k, v)) => {
            let (k, v) = (a.add(k.clone()), a.add(v.clone()));
            (
                format!(
                    "SELECT w.id, w.request, w.status, w.reason, w.had_errors, w.created, w.started, w.ended
                     FROM labels d JOIN workflows w ON w.id = d.workflow_id
                     WHERE d.key = {k} AND d.value = {v}"
                ),
                ("d.created", "d.workflow_id"),
            )
        }
        None => (
            "SELECT w.id, w.request, w.status, w.reason, w.had_errors, w.created, w.started, w.ended
             FROM workflows w WHERE true"
                .to_string(),
            ("w.created", "w.id"),
        ),
    };
    if let Some(n) = &f.name {
        sql += &format!(" AND w.name = {}", a.add(n.clone()));
    }
    if !f.statuses.is_empty() {
        let list: Vec<i32> = f.statuses.iter().map(|s| *s as i32).collect();
        sql += &format!(" AND w.status = ANY({})", a.add(list));
    }
    if let Some(t) = f.created_from {
        sql += &format!(" AND {} >= {}", order.0, a.add(t));
    }
    if let Some(t) = f.created_to {
        sql += &format!(" AND {} < {}", order.0, a.add(t));
    }
    for (k, v) in f.labels.iter().skip(1) {
        let (k, v) = (a.add(k.clone()), a.add(v.clone()));
        sql += &format!(
            " AND EXISTS (SELECT 1 FROM labels l WHERE l.key = {k} AND l.value = {v} AND l.workflow_id = w.id)"
        );
    }
    if let Some((created, id)) = &f.after {
        let (c1, i1) = (a.add(*created), a.add(id.clone()));
        sql += &format!(" AND ({}, {}) < ({c1}, {i1})", order.0, order.1);
    }
    sql += &format!(
        " ORDER BY {} DESC, {} DESC LIMIT {}",
        order.0,
        order.1,
        a.add(f.limit as i64)
    );
    let rows = sql::query(c, &sql, &a.refs()).await.map_err(backend)?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let id: String = row.get(0);
        let req = head_of(&id, row.get::<_, &str>(1))?;
        out.push(Summary {
            status: status_of(&id, row.get(2))?,
            name: req.name,
            desc: req.desc,
            labels: req.labels,
            trace_id: req.trace_id,
            reason: row.get(3),
            had_errors: row.get(4),
            created: row.get(5),
            started: row.get(6),
            ended: row.get(7),
            id,
        });
    }
    Ok(out)
}

pub async fn audit_log(c: &impl GenericClient, q: &AuditQuery) -> Result<Vec<AuditEntry>> {
    let mut a = Args::default();
    let mut sql = "SELECT id, at, identity, action, target, request_id, outcome, detail, peer
                   FROM audit WHERE true"
        .to_string();
    if let Some(b) = q.before {
        sql += &format!(" AND id < {}", a.add(b));
    }
    if let Some(t) = q.from {
        sql += &format!(" AND at >= {}", a.add(t));
    }
    if let Some(t) = q.to {
        sql += &format!(" AND at < {}", a.add(t));
    }
    for (col, v) in [
        ("identity", &q.identity),
        ("action", &q.action),
        ("target", &q.target),
    ] {
        if let Some(v) = v {
            sql += &format!(" AND {col} = {}", a.add(v.clone()));
        }
    }
    sql += &format!(" ORDER BY id DESC LIMIT {}", a.add(q.limit as i64));
    Ok(sql::query(c, &sql, &a.refs())
        .await
        .map_err(backend)?
        .iter()
        .map(|r| AuditEntry {
            id: r.get(0),
            at: r.get(1),
            identity: r.get(2),
            action: r.get(3),
            target: r.get(4),
            request_id: r.get(5),
            outcome: r.get(6),
            detail: r.get(7),
            peer: r.get(8),
        })
        .collect())
}

pub async fn instances(c: &impl GenericClient, now: Micros) -> Result<Vec<InstanceInfo>> {
    Ok(sql::query(
        c,
        "SELECT i.id, i.pid, i.host, i.addr, i.version, i.started, i.heartbeat, i.expires,
         (SELECT count(*) FROM workflows w WHERE w.owner = i.id AND w.status = $2)
         FROM instances i WHERE i.expires >= $1 ORDER BY i.id",
        &[&now, &(Status::Running as i32)],
    )
    .await
    .map_err(backend)?
    .iter()
    .map(|r| InstanceInfo {
        id: r.get(0),
        pid: r.get::<_, i64>(1) as u32,
        host: r.get(2),
        addr: r.get(3),
        version: r.get(4),
        started: r.get(5),
        heartbeat: r.get(6),
        expires: r.get(7),
        owned: r.get::<_, i64>(8) as usize,
    })
    .collect())
}

pub async fn bucket_states(c: &impl GenericClient, bucket: &str) -> Result<Vec<BucketState>> {
    Ok(sql::query(
        c,
        "SELECT key, tat, per_token, burst FROM bucket_state WHERE bucket = $1 AND burst > 0
         ORDER BY key",
        &[&bucket],
    )
    .await
    .map_err(backend)?
    .iter()
    .map(|r| BucketState {
        bucket: bucket.to_string(),
        key: r.get(0),
        tat: r.get(1),
        rule: Gcra {
            per_token: r.get(2),
            burst: r.get::<_, i32>(3) as u32,
        },
    })
    .collect())
}

pub async fn take_of(
    c: &impl GenericClient,
    workflow_id: &str,
    block: usize,
    job: usize,
) -> Result<Option<Take>> {
    Ok(sql::query_opt(
        c,
        "SELECT bucket, key, taken_at FROM bucket_takes
             WHERE workflow_id = $1 AND block_idx = $2 AND job_idx = $3",
        &[&workflow_id, &(block as i32), &(job as i32)],
    )
    .await
    .map_err(backend)?
    .map(|r| Take {
        bucket: r.get(0),
        key: r.get(1),
        at: r.get(2),
        workflow_id: workflow_id.to_string(),
        block,
        job,
    }))
}

/// Pending requests for the workflows `$1` owns. Driven from the requests
/// (few: they are deleted once carried out), each one's workflow looked up
/// by id; a join may instead walk every workflow the owner holds.
pub(crate) const REQUESTS_FOR: &str = "SELECT r.id, r.workflow_id, r.kind, r.reason, r.at
     FROM requests r
     WHERE (SELECT w.owner FROM workflows w WHERE w.id = r.workflow_id) = $1 ORDER BY r.id";

pub async fn requests_for(c: &impl GenericClient, owner: &str) -> Result<Vec<ControlRequest>> {
    Ok(sql::query(c, REQUESTS_FOR, &[&owner])
        .await
        .map_err(backend)?
        .iter()
        .map(|r| ControlRequest {
            id: r.get(0),
            workflow_id: r.get(1),
            kind: RequestKind::parse(r.get(2)).unwrap_or(RequestKind::Pause),
            reason: r.get(3),
            at: r.get(4),
        })
        .collect())
}

pub async fn stops(c: &impl GenericClient) -> Result<Vec<SharedStop>> {
    Ok(sql::query(
        c,
        "SELECT name, stop, reason, set_by, at FROM shared_stops ORDER BY name",
        &[],
    )
    .await
    .map_err(backend)?
    .iter()
    .map(|r| SharedStop {
        name: r.get(0),
        mode: EsMode::from_code(r.get::<_, i16>(1).into()),
        reason: r.get(2),
        by: r.get(3),
        at: r.get(4),
    })
    .collect())
}

/// Slot rows matching `filter` (an SQL condition on `limit_slots`), in
/// limit, partition and job order.
pub async fn slot_rows(
    c: &impl GenericClient,
    filter: &str,
    params: sql::Params<'_>,
) -> Result<Vec<SlotRow>, tokio_postgres::Error> {
    Ok(sql::query(
        c,
        &format!(
            "SELECT limit_name, part, holder, workflow_id, block_idx, job_idx, granted, since,
             seen, position, held, max FROM limit_slots WHERE {filter}
             ORDER BY limit_name, part, workflow_id, block_idx, job_idx"
        ),
        params,
    )
    .await?
    .iter()
    .map(|r| SlotRow {
        limit: r.get(0),
        part: r.get(1),
        holder: r.get(2),
        workflow_id: r.get(3),
        block: r.get::<_, i32>(4) as usize,
        job: r.get::<_, i32>(5) as usize,
        granted: r.get(6),
        since: r.get(7),
        seen: r.get(8),
        position: r.get::<_, i64>(9) as u32,
        held: r.get::<_, i64>(10) as u32,
        max: r.get::<_, i64>(11) as u32,
    })
    .collect())
}

/// Approvers' decisions on a workflow, oldest first.
/// A workflow's log lines after a cursor (see [`interlock_store::Store::logs`]).
pub async fn logs(c: &impl GenericClient, q: &LogQuery) -> Result<Vec<LogLine>> {
    let after = q.after.min(i64::MAX as u64) as i64;
    let limit = q.limit.min(i64::MAX as usize) as i64;
    let rows = match q.job {
        Some((b, j)) => {
            sql::query(
                c,
                "SELECT seq, block_idx, job_idx, attempt, n, at, stream, line FROM job_logs
                 WHERE workflow_id = $1 AND block_idx = $2 AND job_idx = $3 AND seq > $4
                 ORDER BY seq LIMIT $5",
                &[&q.workflow_id, &(b as i32), &(j as i32), &after, &limit],
            )
            .await
        }
        None => {
            sql::query(
                c,
                "SELECT seq, block_idx, job_idx, attempt, n, at, stream, line FROM job_logs
                 WHERE workflow_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
                &[&q.workflow_id, &after, &limit],
            )
            .await
        }
    }
    .map_err(backend)?;
    Ok(rows
        .iter()
        .map(|r| LogLine {
            seq: r.get::<_, i64>(0) as u64,
            block: r.get::<_, i32>(1) as usize,
            job: r.get::<_, i32>(2) as usize,
            attempt: r.get::<_, i32>(3) as u32,
            n: r.get::<_, i64>(4) as u64,
            at: r.get(5),
            stream: LogStream::parse(r.get::<_, &str>(6)).unwrap_or(LogStream::Log),
            text: r.get(7),
        })
        .collect())
}

pub async fn approvals(c: &impl GenericClient, workflow_id: &str) -> Result<Vec<Approval>> {
    Ok(sql::query(
        c,
        "SELECT identity, approve, comment, content_hash, at, roles FROM approvals
         WHERE workflow_id = $1 ORDER BY at, identity",
        &[&workflow_id],
    )
    .await
    .map_err(backend)?
    .iter()
    .map(|r| Approval {
        workflow_id: workflow_id.to_string(),
        identity: r.get(0),
        approve: r.get(1),
        comment: r.get(2),
        content_hash: r.get(3),
        at: r.get(4),
        // Unreadable roles count for no rule.
        roles: serde_json::from_str(r.get::<_, &str>(5)).unwrap_or_default(),
    })
    .collect())
}
