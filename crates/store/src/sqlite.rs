//! The embedded SQLite store.
//!
//! One writer thread owns the only write connection. Callers send it `Op`s
//! over a bounded channel; it takes everything queued (up to a batch limit),
//! applies it in one transaction, commits, and only then answers each caller.
//! If a batch fails, it is retried op by op so one bad op fails alone.
//! Reads use a small pool of read-only connections on the blocking pool; WAL
//! lets them run while the writer commits.

use crate::{
    AuditEntry, Change, ListFilter, Result, StartOutcome, Store, StoreError, SubmitOutcome,
    Summary, Take,
};
use async_trait::async_trait;
use interlock_core::{BlockRecord, JobRecord, Micros, Status, WorkReq, WorkflowRecord};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot};

/// SQLite's `synchronous` setting for the write connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Synchronous {
    /// fsync on every commit: survives power loss. The default.
    #[default]
    Full,
    /// fsync at checkpoints only: survives a process crash, may lose the last
    /// commits on power loss.
    Normal,
}

#[derive(Debug, Clone)]
pub struct SqliteOptions {
    pub path: PathBuf,
    pub synchronous: Synchronous,
    /// Most ops committed in one transaction.
    pub max_batch: usize,
    /// Ops queued before callers wait (backpressure).
    pub queue: usize,
}

impl SqliteOptions {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            synchronous: Synchronous::Full,
            max_batch: 4096,
            queue: 65_536,
        }
    }
}

type Reply<T> = oneshot::Sender<Result<T>>;

enum Op {
    Submit {
        rec: Box<WorkflowRecord>,
        hash: String,
        audit: Option<AuditEntry>,
        reply: Reply<SubmitOutcome>,
    },
    Start {
        id: String,
        at: Micros,
        audit: Option<AuditEntry>,
        reply: Reply<StartOutcome>,
    },
    Transition {
        id: String,
        from: Status,
        to: Status,
        reason: String,
        ended: Option<Micros>,
        reply: Reply<StartOutcome>,
    },
    Write {
        changes: Vec<Change>,
        reply: Reply<()>,
    },
    Take {
        take: Take,
        reply: Reply<()>,
    },
    Audit {
        entry: AuditEntry,
        reply: Reply<()>,
    },
    Expire {
        before: Micros,
        reply: Reply<usize>,
    },
}

/// The embedded store. Cheap to clone; all clones share one writer.
#[derive(Clone)]
pub struct SqliteStore {
    tx: mpsc::Sender<Op>,
    readers: Arc<ReadPool>,
}

struct ReadPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

const MIGRATIONS: &[&str] = &[
    // 1: initial schema. Blocks and jobs get rows only once something happens
    // to them; until then the stored request is their truth.
    "CREATE TABLE workflows (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        request TEXT NOT NULL,
        status INTEGER NOT NULL,
        reason TEXT NOT NULL DEFAULT '',
        had_errors INTEGER NOT NULL DEFAULT 0,
        es_stopped INTEGER NOT NULL DEFAULT 0,
        created INTEGER NOT NULL,
        started INTEGER,
        ended INTEGER,
        policy_version TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX workflows_status ON workflows(status);
    CREATE INDEX workflows_name_created ON workflows(name, created);
    CREATE TABLE blocks (
        workflow_id TEXT NOT NULL,
        idx INTEGER NOT NULL,
        status INTEGER NOT NULL,
        has_error INTEGER NOT NULL,
        failures INTEGER NOT NULL,
        started INTEGER,
        ended INTEGER,
        PRIMARY KEY (workflow_id, idx)
    ) WITHOUT ROWID;
    CREATE TABLE jobs (
        workflow_id TEXT NOT NULL,
        block_idx INTEGER NOT NULL,
        idx INTEGER NOT NULL,
        status INTEGER NOT NULL,
        error TEXT NOT NULL,
        outputs TEXT NOT NULL,
        started INTEGER,
        ended INTEGER,
        fatal INTEGER NOT NULL,
        attempts TEXT NOT NULL,
        PRIMARY KEY (workflow_id, block_idx, idx)
    ) WITHOUT ROWID;
    CREATE TABLE idempotency (
        request_id TEXT PRIMARY KEY,
        content_hash TEXT NOT NULL,
        workflow_id TEXT NOT NULL,
        created INTEGER NOT NULL
    );
    CREATE TABLE bucket_takes (
        bucket TEXT NOT NULL,
        taken_at INTEGER NOT NULL,
        workflow_id TEXT NOT NULL,
        block_idx INTEGER NOT NULL,
        job_idx INTEGER NOT NULL
    );
    CREATE INDEX bucket_takes_by_bucket ON bucket_takes(bucket, taken_at);",
    // 2: job checkpoints (durable execution); lookups for reconcile and expiry.
    "ALTER TABLE jobs ADD COLUMN checkpoint TEXT;
    CREATE INDEX bucket_takes_by_job ON bucket_takes(workflow_id, block_idx, job_idx);
    CREATE INDEX idempotency_created ON idempotency(created);",
    // 3: listing: newest-first scans by status and by label.
    "CREATE INDEX workflows_created ON workflows(created, id);
    CREATE INDEX workflows_status_created ON workflows(status, created, id);
    CREATE TABLE labels (
        workflow_id TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        created INTEGER NOT NULL,
        PRIMARY KEY (key, value, created, workflow_id)
    ) WITHOUT ROWID;",
    // 4: the audit log.
    "CREATE TABLE audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at INTEGER NOT NULL,
        identity TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        request_id TEXT NOT NULL,
        outcome TEXT NOT NULL,
        detail TEXT NOT NULL
    );",
    // 5: who submitted and who executed each workflow.
    "ALTER TABLE workflows ADD COLUMN submitted_by TEXT NOT NULL DEFAULT '';
    ALTER TABLE workflows ADD COLUMN executed_by TEXT NOT NULL DEFAULT '';",
    // 6: where each audited call came from.
    "ALTER TABLE audit ADD COLUMN peer TEXT NOT NULL DEFAULT '';",
];

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

impl SqliteStore {
    /// Opens (creating if needed) the database, applies migrations and starts
    /// the writer thread. Fails if the file cannot be opened or migrated.
    pub fn open(opts: SqliteOptions) -> Result<Self> {
        if let Some(dir) = opts.path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)
                .map_err(|e| backend(format!("cannot create {}: {e}", dir.display())))?;
        }
        let mut conn = Connection::open(&opts.path)
            .map_err(|e| backend(format!("cannot open {}: {e}", opts.path.display())))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(backend)?;
        let sync = match opts.synchronous {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        };
        conn.pragma_update(None, "synchronous", sync)
            .map_err(backend)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(backend)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(backend)?;
        migrate(&mut conn)?;

        let (tx, rx) = mpsc::channel(opts.queue.max(1));
        let max_batch = opts.max_batch.max(1);
        std::thread::Builder::new()
            .name("interlock-store-writer".into())
            .spawn(move || writer_loop(conn, rx, max_batch))
            .map_err(backend)?;
        Ok(Self {
            tx,
            readers: Arc::new(ReadPool {
                path: opts.path,
                idle: Mutex::new(Vec::new()),
            }),
        })
    }

    async fn send<T>(&self, make: impl FnOnce(Reply<T>) -> Op) -> Result<T> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let pool = self.readers.clone();
        tokio::task::spawn_blocking(move || {
            let conn = pool.take()?;
            let out = f(&conn);
            pool.put(conn);
            out
        })
        .await
        .map_err(backend)?
    }
}

impl ReadPool {
    fn take(&self) -> Result<Connection> {
        if let Some(c) = self.idle.lock().expect("pool lock").pop() {
            return Ok(c);
        }
        let c = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(backend)?;
        c.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(backend)?;
        Ok(c)
    }

    fn put(&self, c: Connection) {
        let mut idle = self.idle.lock().expect("pool lock");
        if idle.len() < 16 {
            idle.push(c);
        }
    }
}

fn migrate(conn: &mut Connection) -> Result<()> {
    let version: usize = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(backend)?;
    if version > MIGRATIONS.len() {
        return Err(backend(format!(
            "database schema version {version} is newer than this interlockd ({}); upgrade interlockd",
            MIGRATIONS.len()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        let tx = conn.transaction().map_err(backend)?;
        tx.execute_batch(sql).map_err(backend)?;
        tx.pragma_update(None, "user_version", i + 1)
            .map_err(backend)?;
        tx.commit().map_err(backend)?;
    }
    Ok(())
}

fn writer_loop(mut conn: Connection, mut rx: mpsc::Receiver<Op>, max_batch: usize) {
    let mut batch = Vec::with_capacity(max_batch);
    while let Some(op) = rx.blocking_recv() {
        batch.push(op);
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        commit_batch(&mut conn, &mut batch);
    }
    tracing::debug!("store writer stopped");
}

/// What an applied op reports back once its transaction has committed.
enum Outcome {
    Submit(SubmitOutcome),
    Start(StartOutcome),
    Count(usize),
    Unit,
}

fn commit_batch(conn: &mut Connection, batch: &mut Vec<Op>) {
    let ops = std::mem::take(batch);
    let started = std::time::Instant::now();
    metrics::histogram!("interlock_store_batch_ops").record(ops.len() as f64);
    let _record = Defer(move || {
        metrics::histogram!("interlock_store_commit_seconds")
            .record(started.elapsed().as_secs_f64());
    });
    if ops.len() > 1 {
        match run_tx(conn, &ops) {
            Ok(outcomes) => {
                for (op, out) in ops.into_iter().zip(outcomes) {
                    reply(op, Ok(out));
                }
                return;
            }
            // One transaction per op so each caller gets its own verdict.
            Err(e) => tracing::warn!(error = %e, "batch commit failed; retrying ops one by one"),
        }
    }
    for op in ops {
        let r = run_tx(conn, std::slice::from_ref(&op))
            .map(|mut v| v.pop().unwrap_or(Outcome::Unit))
            .map_err(backend);
        reply(op, r);
    }
}

/// Runs a closure when dropped (records the commit time on every path).
struct Defer<F: FnMut()>(F);

impl<F: FnMut()> Drop for Defer<F> {
    fn drop(&mut self) {
        (self.0)()
    }
}

fn run_tx(conn: &mut Connection, ops: &[Op]) -> rusqlite::Result<Vec<Outcome>> {
    let tx = conn.transaction()?;
    let mut out = Vec::with_capacity(ops.len());
    for op in ops {
        out.push(apply(&tx, op)?);
    }
    tx.commit()?;
    Ok(out)
}

fn reply(op: Op, r: Result<Outcome>) {
    // A caller that went away no longer wants the answer; the write stands.
    match op {
        Op::Submit { reply, .. } => {
            let _ = reply.send(r.map(|o| match o {
                Outcome::Submit(s) => s,
                _ => SubmitOutcome::Inserted,
            }));
        }
        Op::Start { reply, .. } | Op::Transition { reply, .. } => {
            let _ = reply.send(r.and_then(|o| match o {
                Outcome::Start(s) => Ok(s),
                _ => Err(backend("start produced no outcome")),
            }));
        }
        Op::Write { reply, .. } | Op::Take { reply, .. } | Op::Audit { reply, .. } => {
            let _ = reply.send(r.map(|_| ()));
        }
        Op::Expire { reply, .. } => {
            let _ = reply.send(r.map(|o| match o {
                Outcome::Count(n) => n,
                _ => 0,
            }));
        }
    }
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("plain data serializes")
}

fn insert_audit(
    tx: &rusqlite::Transaction<'_>,
    e: &AuditEntry,
    target: &str,
) -> rusqlite::Result<()> {
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

/// Why a compare-and-set on a workflow's status did not apply.
fn refused_transition(tx: &rusqlite::Transaction<'_>, id: &str) -> rusqlite::Result<StartOutcome> {
    let current: Option<i32> = tx
        .query_row("SELECT status FROM workflows WHERE id = ?1", [id], |r| {
            r.get(0)
        })
        .optional()?;
    Ok(match current {
        None => StartOutcome::NotFound,
        Some(s) => StartOutcome::AlreadyStarted(Status::from_i32(s).unwrap_or(Status::Failed)),
    })
}

fn apply(tx: &rusqlite::Transaction<'_>, op: &Op) -> rusqlite::Result<Outcome> {
    match op {
        Op::Submit {
            rec, hash, audit, ..
        } => {
            let key = &rec.req.request_id;
            if !key.is_empty()
                && let Some((id, content_hash)) = tx
                    .query_row(
                        "SELECT workflow_id, content_hash FROM idempotency WHERE request_id = ?1",
                        [key],
                        |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)),
                    )
                    .optional()?
            {
                if let Some(a) = audit {
                    let mut a = a.clone();
                    a.detail = format!(
                        "request_id {key:?} already used: answered with the existing workflow"
                    );
                    insert_audit(tx, &a, &id)?;
                }
                return Ok(Outcome::Submit(SubmitOutcome::Existing {
                    id,
                    content_hash,
                }));
            }
            tx.prepare_cached(
                "INSERT INTO workflows (id, name, request, status, created, policy_version, submitted_by)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                rec.id,
                rec.req.name,
                json(&rec.req),
                rec.status as i32,
                rec.created,
                rec.policy_version,
                rec.submitted_by
            ])?;
            for (k, v) in &rec.req.labels {
                tx.prepare_cached(
                    "INSERT INTO labels (workflow_id, key, value, created) VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![rec.id, k, v, rec.created])?;
            }
            if !key.is_empty() {
                tx.prepare_cached(
                    "INSERT INTO idempotency (request_id, content_hash, workflow_id, created)
                     VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![key, hash, rec.id, rec.created])?;
            }
            if let Some(a) = audit {
                insert_audit(tx, a, &rec.id)?;
            }
            Ok(Outcome::Submit(SubmitOutcome::Inserted))
        }
        Op::Start { id, at, audit, .. } => {
            let n = tx
                .prepare_cached(
                    "UPDATE workflows SET status = ?1, started = ?2, executed_by = ?5
                     WHERE id = ?3 AND status = ?4",
                )?
                .execute(params![
                    Status::Running as i32,
                    at,
                    id,
                    Status::NotStarted as i32,
                    audit.as_ref().map_or("", |a| a.identity.as_str())
                ])?;
            if n == 1 {
                if let Some(a) = audit {
                    insert_audit(tx, a, id)?;
                }
                return Ok(Outcome::Start(StartOutcome::Started));
            }
            Ok(Outcome::Start(refused_transition(tx, id)?))
        }
        Op::Transition {
            id,
            from,
            to,
            reason,
            ended,
            ..
        } => {
            let n = tx
                .prepare_cached(
                    "UPDATE workflows SET status = ?1, reason = ?2, ended = COALESCE(?3, ended)
                     WHERE id = ?4 AND status = ?5",
                )?
                .execute(params![*to as i32, reason, ended, id, *from as i32])?;
            if n == 1 {
                return Ok(Outcome::Start(StartOutcome::Started));
            }
            Ok(Outcome::Start(refused_transition(tx, id)?))
        }
        Op::Write { changes, .. } => {
            for c in changes {
                apply_change(tx, c)?;
            }
            Ok(Outcome::Unit)
        }
        Op::Expire { before, .. } => {
            let n = tx
                .prepare_cached("DELETE FROM idempotency WHERE created < ?1")?
                .execute([before])?;
            Ok(Outcome::Count(n))
        }
        Op::Audit { entry: e, .. } => {
            insert_audit(tx, e, &e.target)?;
            Ok(Outcome::Unit)
        }
        Op::Take { take, .. } => {
            tx.prepare_cached(
                "INSERT INTO bucket_takes (bucket, taken_at, workflow_id, block_idx, job_idx)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                take.bucket,
                take.at,
                take.workflow_id,
                take.block as i64,
                take.job as i64
            ])?;
            Ok(Outcome::Unit)
        }
    }
}

fn apply_change(tx: &rusqlite::Transaction<'_>, c: &Change) -> rusqlite::Result<()> {
    match c {
        Change::Workflow {
            id,
            status,
            reason,
            had_errors,
            es_stopped,
            ended,
        } => {
            tx.prepare_cached(
                "UPDATE workflows SET status = ?1, reason = ?2, had_errors = ?3, es_stopped = ?4,
                 ended = ?5 WHERE id = ?6",
            )?
            .execute(params![
                *status as i32,
                reason,
                had_errors,
                es_stopped,
                ended,
                id
            ])?;
        }
        Change::WorkflowStatus { id, status, reason } => {
            tx.prepare_cached("UPDATE workflows SET status = ?1, reason = ?2 WHERE id = ?3")?
                .execute(params![*status as i32, reason, id])?;
        }
        Change::WorkflowErrors { id } => {
            tx.prepare_cached("UPDATE workflows SET had_errors = 1 WHERE id = ?1")?
                .execute([id])?;
        }
        Change::Checkpoint {
            id,
            block,
            job,
            state,
        } => {
            tx.prepare_cached(
                "UPDATE jobs SET checkpoint = ?1 WHERE workflow_id = ?2 AND block_idx = ?3 AND idx = ?4",
            )?
            .execute(params![state, id, *block as i64, *job as i64])?;
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
            ])?;
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
            ])?;
        }
    }
    Ok(())
}

fn corrupt(id: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        id: id.to_string(),
        message: e.to_string(),
    }
}

fn status_of(id: &str, v: i32) -> Result<Status> {
    Status::from_i32(v).ok_or_else(|| corrupt(id, format!("unknown status {v}")))
}

/// Loads one workflow and overlays its block and job rows.
fn load(conn: &Connection, id: &str) -> Result<Option<WorkflowRecord>> {
    let row = conn
        .prepare_cached(
            "SELECT request, status, reason, had_errors, es_stopped, created, started, ended,
             policy_version, submitted_by, executed_by FROM workflows WHERE id = ?1",
        )
        .map_err(backend)?
        .query_row([id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i32>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, bool>(3)?,
                r.get::<_, bool>(4)?,
                r.get::<_, i64>(5)?,
                r.get::<_, Option<i64>>(6)?,
                r.get::<_, Option<i64>>(7)?,
                r.get::<_, String>(8)?,
                (r.get::<_, String>(9)?, r.get::<_, String>(10)?),
            ))
        })
        .optional()
        .map_err(backend)?;
    let Some((request, status, reason, had_errors, es_stopped, created, started, ended, pv, who)) =
        row
    else {
        return Ok(None);
    };
    let req: WorkReq = serde_json::from_str(&request).map_err(|e| corrupt(id, e))?;
    let mut rec = WorkflowRecord::submitted(id.to_string(), req, pv, created);
    rec.status = status_of(id, status)?;
    rec.reason = reason;
    rec.had_errors = had_errors;
    rec.es_stopped = es_stopped;
    rec.started = started;
    rec.ended = ended;
    (rec.submitted_by, rec.executed_by) = who;

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
        j.attempts = serde_json::from_str(&attempts).map_err(|e| corrupt(id, e))?;
        j.checkpoint = checkpoint;
    }
    Ok(Some(rec))
}

#[async_trait]
impl Store for SqliteStore {
    async fn submit(
        &self,
        rec: &WorkflowRecord,
        content_hash: &str,
        audit: Option<AuditEntry>,
    ) -> Result<SubmitOutcome> {
        let rec = Box::new(rec.clone());
        let hash = content_hash.to_string();
        self.send(|reply| Op::Submit {
            rec,
            hash,
            audit,
            reply,
        })
        .await
    }

    async fn get(&self, id: &str) -> Result<Option<WorkflowRecord>> {
        let id = id.to_string();
        self.read(move |c| load(c, &id)).await
    }

    async fn start(&self, id: &str, at: Micros, audit: Option<AuditEntry>) -> Result<StartOutcome> {
        let id = id.to_string();
        self.send(|reply| Op::Start {
            id,
            at,
            audit,
            reply,
        })
        .await
    }

    async fn transition(
        &self,
        id: &str,
        from: Status,
        to: Status,
        reason: &str,
        ended: Option<Micros>,
    ) -> Result<StartOutcome> {
        let (id, reason) = (id.to_string(), reason.to_string());
        self.send(|reply| Op::Transition {
            id,
            from,
            to,
            reason,
            ended,
            reply,
        })
        .await
    }

    async fn write(&self, changes: Vec<Change>) -> Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        self.send(|reply| Op::Write { changes, reply }).await
    }

    async fn unfinished(&self) -> Result<Vec<WorkflowRecord>> {
        self.read(|c| {
            let ids: Vec<String> = c
                .prepare("SELECT id FROM workflows WHERE status IN (?1, ?2) ORDER BY created")
                .map_err(backend)?
                .query_map(
                    params![Status::Running as i32, Status::Paused as i32],
                    |r| r.get(0),
                )
                .map_err(backend)?
                .collect::<rusqlite::Result<_>>()
                .map_err(backend)?;
            ids.iter()
                .filter_map(|id| load(c, id).transpose())
                .collect()
        })
        .await
    }

    async fn record_take(&self, take: Take) -> Result<()> {
        self.send(|reply| Op::Take { take, reply }).await
    }

    async fn takes_since(&self, bucket: &str, since: Micros) -> Result<Vec<Take>> {
        let bucket = bucket.to_string();
        self.read(move |c| {
            c.prepare_cached(
                "SELECT taken_at, workflow_id, block_idx, job_idx FROM bucket_takes
                 WHERE bucket = ?1 AND taken_at >= ?2 ORDER BY taken_at",
            )
            .map_err(backend)?
            .query_map(params![bucket, since], |r| {
                Self::take_row(bucket.clone(), r)
            })
            .map_err(backend)?
            .collect::<rusqlite::Result<_>>()
            .map_err(backend)
        })
        .await
    }

    async fn take_of(&self, workflow_id: &str, block: usize, job: usize) -> Result<Option<Take>> {
        let workflow_id = workflow_id.to_string();
        self.read(move |c| {
            c.prepare_cached(
                "SELECT taken_at, workflow_id, block_idx, job_idx, bucket FROM bucket_takes
                 WHERE workflow_id = ?1 AND block_idx = ?2 AND job_idx = ?3",
            )
            .map_err(backend)?
            .query_row(params![workflow_id, block as i64, job as i64], |r| {
                Self::take_row(r.get(4)?, r)
            })
            .optional()
            .map_err(backend)
        })
        .await
    }

    fn queue_depth(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    async fn ping(&self) -> Result<()> {
        if self.tx.is_closed() {
            return Err(StoreError::Closed);
        }
        self.read(|c| {
            c.pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0))
                .map(|_| ())
                .map_err(backend)
        })
        .await
    }

    async fn audit(&self, entry: AuditEntry) -> Result<()> {
        self.send(|reply| Op::Audit { entry, reply }).await
    }

    async fn audit_log(&self, before: Option<i64>, limit: usize) -> Result<Vec<AuditEntry>> {
        self.read(move |c| {
            c.prepare_cached(
                "SELECT id, at, identity, action, target, request_id, outcome, detail, peer FROM audit
                 WHERE id < ?1 ORDER BY id DESC LIMIT ?2",
            )
            .map_err(backend)?
            .query_map(params![before.unwrap_or(i64::MAX), limit as i64], |r| {
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
        })
        .await
    }

    async fn list(&self, filter: ListFilter) -> Result<Vec<Summary>> {
        self.read(move |c| list(c, &filter)).await
    }

    async fn expire_request_ids(&self, before: Micros) -> Result<usize> {
        self.send(|reply| Op::Expire { before, reply }).await
    }
}

fn list(c: &Connection, f: &ListFilter) -> Result<Vec<Summary>> {
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
                    "SELECT w.id, w.request, w.status, w.reason, w.had_errors, w.created, w.started, w.ended
                     FROM labels d JOIN workflows w ON w.id = d.workflow_id
                     WHERE d.key = {k} AND d.value = {v}"
                ),
                ("d.created", "d.workflow_id"),
            )
        }
        None => (
            "SELECT w.id, w.request, w.status, w.reason, w.had_errors, w.created, w.started, w.ended
             FROM workflows w WHERE 1 = 1"
                .to_string(),
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
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
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
        let (id, request, status, reason, had_errors, created, started, ended) =
            row.map_err(backend)?;
        let req: WorkReq = serde_json::from_str(&request).map_err(|e| corrupt(&id, e))?;
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

impl SqliteStore {
    fn take_row(bucket: String, r: &rusqlite::Row<'_>) -> rusqlite::Result<Take> {
        Ok(Take {
            bucket,
            at: r.get(0)?,
            workflow_id: r.get(1)?,
            block: r.get::<_, i64>(2)? as usize,
            job: r.get::<_, i64>(3)? as usize,
        })
    }
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.readers.path)
            .finish()
    }
}

#[cfg(test)]
mod tests;
