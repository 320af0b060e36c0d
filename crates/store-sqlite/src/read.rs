//! The read side: queries on a pooled read-only connection. WAL lets them
//! run while the writer commits; they see the last committed state.

use interlock_core::{
    Approval, AuditEntry, AuditQuery, BlockRecord, EsMode, JobRecord, ListFilter, LogLine,
    LogQuery, LogStream, Micros, Status, Summary, WorkflowRecord,
};
use interlock_store::{
    BucketState, ControlRequest, Gcra, IdMatch, InstanceInfo, Notice, RequestKind, Result,
    SharedStop, SlotRow, Take,
};
use rusqlite::{Connection, OptionalExtension, params};

pub use interlock_store::backend::{attempts_of, backend, corrupt, head_of, request_of, status_of};

/// What a summary is read from. The request is in `workflow_requests` for
/// workflows submitted since schema 19, in `workflows.request` before.
const SUMMARY_COLUMNS: &str = "w.id, COALESCE(q.request, w.request), w.status, w.reason,
    w.had_errors, w.created, w.started, w.ended";

/// Loads one workflow and overlays its block and job rows, all read in
/// one transaction: one snapshot, so the workflow's status and its jobs'
/// are of the same commit (outside a transaction each query would see the
/// commits made before it began).
pub fn load(conn: &Connection, id: &str) -> Result<Option<WorkflowRecord>> {
    // Cached statements: a Watch's first snapshot and every Status pass
    // here, and BEGIN and COMMIT would otherwise be parsed each time.
    conn.prepare_cached("BEGIN")
        .and_then(|mut s| s.execute([]))
        .map_err(backend)?;
    let loaded = load_in(conn, id);
    let ended = conn
        .prepare_cached("COMMIT")
        .and_then(|mut s| s.execute([]));
    if !conn.is_autocommit() {
        // The connection goes back to the pool: never inside a transaction.
        let _ = conn.execute_batch("ROLLBACK");
    }
    let rec = loaded?;
    ended.map_err(backend)?;
    Ok(rec)
}

fn load_in(conn: &Connection, id: &str) -> Result<Option<WorkflowRecord>> {
    let row = conn
        .prepare_cached(
            "SELECT COALESCE(q.request, w.request), status, reason, had_errors, es_stopped,
             created, started, ended, policy_version, submitted_by, executed_by, owner
             FROM workflows w LEFT JOIN workflow_requests q ON q.workflow_id = w.id
             WHERE w.id = ?1",
        )
        .map_err(backend)?
        .query_row([id], |r| {
            // Decoded where SQLite holds it: no copy of the text.
            Ok((
                request_of(id, r.get_ref(0)?.as_str()?),
                r.get::<_, i32>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, bool>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, i64>(5)?,
                r.get::<_, Option<i64>>(6)?,
                r.get::<_, Option<i64>>(7)?,
                r.get::<_, String>(8)?,
                (
                    r.get::<_, String>(9)?,
                    r.get::<_, String>(10)?,
                    r.get::<_, Option<String>>(11)?,
                ),
            ))
        })
        .optional()
        .map_err(backend)?;
    let Some((request, status, reason, had_errors, es_stopped, created, started, ended, pv, who)) =
        row
    else {
        return Ok(None);
    };
    let mut rec = WorkflowRecord::submitted(id.to_string(), request?, pv, created);
    rec.status = status_of(id, status)?;
    rec.reason = reason;
    rec.had_errors = had_errors;
    // The column predates drain: 0 and 1 are go and stop, 2 is drain.
    rec.es_halt = EsMode::from_code(es_stopped);
    rec.started = started;
    rec.ended = ended;
    (rec.submitted_by, rec.executed_by, rec.owner) = who;

    let mut stmt = conn
        .prepare_cached(
            "SELECT idx, status, has_error, failures, started, ended FROM blocks
             WHERE workflow_id = ?1",
        )
        .map_err(backend)?;
    let rows = stmt
        .query_map([id], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i32>(1)?,
                r.get::<_, bool>(2)?,
                r.get::<_, u32>(3)?,
                r.get::<_, Option<i64>>(4)?,
                r.get::<_, Option<i64>>(5)?,
            ))
        })
        .map_err(backend)?;
    for row in rows {
        let (idx, st, has_error, failures, started, ended) = row.map_err(backend)?;
        let b: &mut BlockRecord = rec
            .blocks
            .get_mut(idx as usize)
            .ok_or_else(|| corrupt(id, format!("block {idx} out of range")))?;
        b.status = status_of(id, st)?;
        b.has_error = has_error;
        b.failures = failures;
        b.started = started;
        b.ended = ended;
    }

    let mut stmt = conn
        .prepare_cached(
            "SELECT block_idx, idx, status, error, outputs, started, ended, fatal, attempts,
             checkpoint FROM jobs WHERE workflow_id = ?1",
        )
        .map_err(backend)?;
    let rows = stmt
        .query_map([id], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i32>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, Option<i64>>(5)?,
                r.get::<_, Option<i64>>(6)?,
                r.get::<_, bool>(7)?,
                r.get::<_, String>(8)?,
                r.get::<_, Option<String>>(9)?,
            ))
        })
        .map_err(backend)?;
    for row in rows {
        let (bi, ji, st, error, outputs, started, ended, fatal, attempts, checkpoint) =
            row.map_err(backend)?;
        let j: &mut JobRecord = rec
            .blocks
            .get_mut(bi as usize)
            .and_then(|b| b.jobs.get_mut(ji as usize))
            .ok_or_else(|| corrupt(id, format!("job {bi}/{ji} out of range")))?;
        j.status = status_of(id, st)?;
        j.error = error;
        j.outputs = serde_json::from_str(&outputs).map_err(|e| corrupt(id, e))?;
        j.started = started;
        j.ended = ended;
        j.fatal = fatal;
        j.attempts = attempts_of(id, &attempts)?;
        j.checkpoint = checkpoint;
    }
    Ok(Some(rec))
}

pub fn list(c: &Connection, f: &ListFilter) -> Result<Vec<Summary>> {
    let mut args: Vec<rusqlite::types::Value> = Vec::new();
    let mut arg = |v: rusqlite::types::Value| {
        args.push(v);
        format!("?{}", args.len())
    };
    // With a label filter the scan is driven by the labels index (key,
    // value, created, id), otherwise by (created, id) or (status, created,
    // id). Either way rows come out already in newest-first order and the
    // cursor is a row-value comparison the index can seek to.
    let (mut sql, order) = match f.labels.first() {
        Some((k, v)) => {
            let (k, v) = (arg(k.clone().into()), arg(v.clone().into()));
            (
                format!(
                    "SELECT {SUMMARY_COLUMNS}
                     FROM labels d JOIN workflows w ON w.id = d.workflow_id
                     LEFT JOIN workflow_requests q ON q.workflow_id = w.id
                     WHERE d.key = {k} AND d.value = {v}"
                ),
                ("d.created", "d.workflow_id"),
            )
        }
        None => (
            format!(
                "SELECT {SUMMARY_COLUMNS} FROM workflows w
                 LEFT JOIN workflow_requests q ON q.workflow_id = w.id WHERE 1 = 1"
            ),
            ("w.created", "w.id"),
        ),
    };
    if let Some(n) = &f.name {
        sql += &format!(" AND w.name = {}", arg(n.clone().into()));
    }
    if !f.statuses.is_empty() {
        let list: Vec<_> = f.statuses.iter().map(|s| arg((*s as i64).into())).collect();
        sql += &format!(" AND w.status IN ({})", list.join(", "));
    }
    if let Some(t) = f.created_from {
        sql += &format!(" AND {} >= {}", order.0, arg(t.into()));
    }
    if let Some(t) = f.created_to {
        sql += &format!(" AND {} < {}", order.0, arg(t.into()));
    }
    for (k, v) in f.labels.iter().skip(1) {
        let (k, v) = (arg(k.clone().into()), arg(v.clone().into()));
        sql += &format!(
            " AND EXISTS (SELECT 1 FROM labels l WHERE l.key = {k} AND l.value = {v} AND l.workflow_id = w.id)"
        );
    }
    if let Some((created, id)) = &f.after {
        let (c1, i1) = (arg((*created).into()), arg(id.clone().into()));
        sql += &format!(" AND ({}, {}) < ({c1}, {i1})", order.0, order.1);
    }
    sql += &format!(
        " ORDER BY {} DESC, {} DESC LIMIT {}",
        order.0,
        order.1,
        arg((f.limit as i64).into())
    );
    let mut stmt = c.prepare_cached(&sql).map_err(backend)?;
    let rows = stmt
        .query_map(rusqlite::params_from_iter(args), |r| {
            let id = r.get::<_, String>(0)?;
            // Decoded where SQLite holds it: no copy of the text.
            let head = head_of(&id, r.get_ref(1)?.as_str()?);
            Ok((
                id,
                head,
                r.get::<_, i32>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, bool>(4)?,
                r.get::<_, i64>(5)?,
                r.get::<_, Option<i64>>(6)?,
                r.get::<_, Option<i64>>(7)?,
            ))
        })
        .map_err(backend)?;
    let mut out = Vec::new();
    for row in rows {
        let (id, head, status, reason, had_errors, created, started, ended) =
            row.map_err(backend)?;
        let req = head?;
        out.push(Summary {
            status: status_of(&id, status)?,
            name: req.name,
            desc: req.desc,
            labels: req.labels,
            trace_id: req.trace_id,
            id,
            reason,
            had_errors,
            created,
            started,
            ended,
        });
    }
    Ok(out)
}

/// Workflow ids starting with `prefix`, at most five.
pub fn resolve_id(c: &Connection, prefix: &str) -> Result<IdMatch> {
    // Ids are lowercase hex and dashes, all below '~': the range is exactly
    // the ids with this prefix, and the primary key index serves it.
    let ids: Vec<String> = c
        .prepare_cached(
            "SELECT id FROM workflows WHERE id >= ?1 AND id < ?1 || '~' ORDER BY id LIMIT 5",
        )
        .map_err(backend)?
        .query_map([prefix], |r| r.get(0))
        .map_err(backend)?
        .collect::<rusqlite::Result<_>>()
        .map_err(backend)?;
    Ok(match ids.len() {
        0 => IdMatch::None,
        1 => IdMatch::One(ids.into_iter().next().expect("one")),
        _ => IdMatch::Many(ids),
    })
}

pub fn audit_log(c: &Connection, q: &AuditQuery) -> Result<Vec<AuditEntry>> {
    let mut args: Vec<rusqlite::types::Value> = Vec::new();
    let mut arg = |v: rusqlite::types::Value| {
        args.push(v);
        format!("?{}", args.len())
    };
    let mut sql = "SELECT id, at, identity, action, target, request_id, outcome, detail, peer
                   FROM audit WHERE 1 = 1"
        .to_string();
    if let Some(b) = q.before {
        sql += &format!(" AND id < {}", arg(b.into()));
    }
    if let Some(t) = q.from {
        sql += &format!(" AND at >= {}", arg(t.into()));
    }
    if let Some(t) = q.to {
        sql += &format!(" AND at < {}", arg(t.into()));
    }
    for (col, v) in [
        ("identity", &q.identity),
        ("action", &q.action),
        ("target", &q.target),
    ] {
        if let Some(v) = v {
            sql += &format!(" AND {col} = {}", arg(v.clone().into()));
        }
    }
    sql += &format!(" ORDER BY id DESC LIMIT {}", arg((q.limit as i64).into()));
    c.prepare_cached(&sql)
        .map_err(backend)?
        .query_map(rusqlite::params_from_iter(args), |r| {
            Ok(AuditEntry {
                id: r.get(0)?,
                at: r.get(1)?,
                identity: r.get(2)?,
                action: r.get(3)?,
                target: r.get(4)?,
                request_id: r.get(5)?,
                outcome: r.get(6)?,
                detail: r.get(7)?,
                peer: r.get(8)?,
            })
        })
        .map_err(backend)?
        .collect::<rusqlite::Result<_>>()
        .map_err(backend)
}

pub fn instances(c: &Connection, now: Micros) -> Result<Vec<InstanceInfo>> {
    c.prepare_cached(
        "SELECT i.id, i.pid, i.host, i.addr, i.version, i.started, i.heartbeat, i.expires,
         (SELECT count(*) FROM workflows w WHERE w.owner = i.id AND w.status = ?2)
         FROM instances i WHERE i.expires >= ?1 ORDER BY i.id",
    )
    .map_err(backend)?
    .query_map(params![now, Status::Running as i32], |r| {
        Ok(InstanceInfo {
            id: r.get(0)?,
            pid: r.get(1)?,
            host: r.get(2)?,
            addr: r.get(3)?,
            version: r.get(4)?,
            started: r.get(5)?,
            heartbeat: r.get(6)?,
            expires: r.get(7)?,
            owned: r.get::<_, i64>(8)? as usize,
        })
    })
    .map_err(backend)?
    .collect::<rusqlite::Result<_>>()
    .map_err(backend)
}

pub fn bucket_states(c: &Connection, bucket: &str) -> Result<Vec<BucketState>> {
    c.prepare_cached(
        "SELECT key, tat, per_token, burst FROM bucket_state WHERE bucket = ?1 ORDER BY key",
    )
    .map_err(backend)?
    .query_map([bucket], |r| {
        Ok(BucketState {
            bucket: bucket.to_string(),
            key: r.get(0)?,
            tat: r.get(1)?,
            rule: Gcra {
                per_token: r.get(2)?,
                burst: r.get(3)?,
            },
        })
    })
    .map_err(backend)?
    .collect::<rusqlite::Result<_>>()
    .map_err(backend)
}

pub fn take_of(
    c: &Connection,
    workflow_id: &str,
    block: usize,
    job: usize,
) -> Result<Option<Take>> {
    c.prepare_cached(
        "SELECT bucket, key, taken_at FROM bucket_takes
         WHERE workflow_id = ?1 AND block_idx = ?2 AND job_idx = ?3",
    )
    .map_err(backend)?
    .query_row(params![workflow_id, block as i64, job as i64], |r| {
        Ok(Take {
            bucket: r.get(0)?,
            key: r.get(1)?,
            at: r.get(2)?,
            workflow_id: workflow_id.to_string(),
            block,
            job,
        })
    })
    .optional()
    .map_err(backend)
}

pub fn requests_for(c: &Connection, owner: &str) -> Result<Vec<ControlRequest>> {
    c.prepare_cached(
        "SELECT r.id, r.workflow_id, r.kind, r.reason, r.at FROM requests r
         JOIN workflows w ON w.id = r.workflow_id WHERE w.owner = ?1 ORDER BY r.id",
    )
    .map_err(backend)?
    .query_map([owner], |r| {
        Ok(ControlRequest {
            id: r.get(0)?,
            workflow_id: r.get(1)?,
            kind: RequestKind::parse(&r.get::<_, String>(2)?).unwrap_or(RequestKind::Pause),
            reason: r.get(3)?,
            at: r.get(4)?,
        })
    })
    .map_err(backend)?
    .collect::<rusqlite::Result<_>>()
    .map_err(backend)
}

pub fn stops(c: &Connection) -> Result<Vec<SharedStop>> {
    c.prepare_cached("SELECT name, stop, reason, set_by, at FROM shared_stops ORDER BY name")
        .map_err(backend)?
        .query_map([], |r| {
            Ok(SharedStop {
                name: r.get(0)?,
                // 0/1 from before drain existed read as go/stop.
                mode: EsMode::from_code(r.get(1)?),
                reason: r.get(2)?,
                by: r.get(3)?,
                at: r.get(4)?,
            })
        })
        .map_err(backend)?
        .collect::<rusqlite::Result<_>>()
        .map_err(backend)
}

/// Slot rows matching `filter` (an SQL condition on `limit_slots`), in
/// limit, partition and job order.
pub fn slot_rows(
    c: &Connection,
    filter: &str,
    params: impl rusqlite::Params,
) -> rusqlite::Result<Vec<SlotRow>> {
    c.prepare_cached(&format!(
        "SELECT limit_name, part, holder, workflow_id, block_idx, job_idx, granted, since, seen,
         position, held, max FROM limit_slots WHERE {filter}
         ORDER BY limit_name, part, workflow_id, block_idx, job_idx"
    ))?
    .query_map(params, |r| {
        Ok(SlotRow {
            limit: r.get(0)?,
            part: r.get(1)?,
            holder: r.get(2)?,
            workflow_id: r.get(3)?,
            block: r.get::<_, i64>(4)? as usize,
            job: r.get::<_, i64>(5)? as usize,
            granted: r.get(6)?,
            since: r.get(7)?,
            seen: r.get(8)?,
            position: r.get(9)?,
            held: r.get(10)?,
            max: r.get(11)?,
        })
    })?
    .collect()
}

/// Approvers' decisions on a workflow, oldest first.
pub fn approvals(c: &Connection, workflow_id: &str) -> Result<Vec<Approval>> {
    c.prepare_cached(
        "SELECT identity, approve, comment, content_hash, at, roles FROM approvals
         WHERE workflow_id = ?1 ORDER BY at, identity",
    )
    .map_err(backend)?
    .query_map([workflow_id], |r| {
        Ok(Approval {
            workflow_id: workflow_id.to_string(),
            identity: r.get(0)?,
            approve: r.get(1)?,
            comment: r.get(2)?,
            content_hash: r.get(3)?,
            at: r.get(4)?,
            // Unreadable roles count for no rule.
            roles: serde_json::from_str(&r.get::<_, String>(5)?).unwrap_or_default(),
        })
    })
    .map_err(backend)?
    .collect::<rusqlite::Result<_>>()
    .map_err(backend)
}

/// A workflow's log lines after a cursor (see [`interlock_store::Store::logs`]).
pub fn logs(c: &Connection, q: &LogQuery) -> Result<Vec<LogLine>> {
    let (block, job) = match q.job {
        Some((b, j)) => (Some(b as i64), Some(j as i64)),
        None => (None, None),
    };
    let sql = if q.job.is_some() {
        "SELECT seq, block_idx, job_idx, attempt, n, at, stream, line FROM job_logs
         WHERE workflow_id = ?1 AND block_idx = ?3 AND job_idx = ?4 AND seq > ?2
         ORDER BY seq LIMIT ?5"
    } else {
        "SELECT seq, block_idx, job_idx, attempt, n, at, stream, line FROM job_logs
         WHERE workflow_id = ?1 AND seq > ?2 AND ?3 IS NULL AND ?4 IS NULL
         ORDER BY seq LIMIT ?5"
    };
    c.prepare_cached(sql)
        .map_err(backend)?
        .query_map(
            params![
                q.workflow_id,
                q.after as i64,
                block,
                job,
                q.limit.min(i64::MAX as usize) as i64
            ],
            |r| {
                Ok(LogLine {
                    seq: r.get::<_, i64>(0)? as u64,
                    block: r.get::<_, i64>(1)? as usize,
                    job: r.get::<_, i64>(2)? as usize,
                    attempt: r.get(3)?,
                    n: r.get::<_, i64>(4)? as u64,
                    at: r.get(5)?,
                    stream: LogStream::parse(&r.get::<_, String>(6)?).unwrap_or(LogStream::Log),
                    text: r.get(7)?,
                })
            },
        )
        .map_err(backend)?
        .collect::<rusqlite::Result<_>>()
        .map_err(backend)
}

/// Queued notifications due at `now`, oldest first.
pub fn due_notices(c: &Connection, now: Micros, limit: usize) -> Result<Vec<Notice>> {
    c.prepare_cached(
        "SELECT id, key, hook, event, body, attempts, next_at, created, last_error FROM notices
         WHERE next_at <= ?1 ORDER BY id LIMIT ?2",
    )
    .map_err(backend)?
    .query_map(params![now, limit as i64], |r| {
        Ok(Notice {
            id: r.get(0)?,
            key: r.get(1)?,
            hook: r.get(2)?,
            event: r.get(3)?,
            body: r.get(4)?,
            attempts: r.get(5)?,
            next_at: r.get(6)?,
            created: r.get(7)?,
            last_error: r.get(8)?,
        })
    })
    .map_err(backend)?
    .collect::<rusqlite::Result<_>>()
    .map_err(backend)
}
