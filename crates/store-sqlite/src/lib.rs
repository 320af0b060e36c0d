//! The embedded store: one SQLite file in WAL mode, owned by one process.
//!
//! Layout:
//! - [`lock`]: the exclusive OS lock on `<db>.lock`, taken before anything
//!   else touches the database, so two servers never share one.
//! - [`schema`]: numbered migrations; a newer database is refused.
//! - `writer`: the single writer thread and its group commit.
//! - `ops`: the SQL of each write, run inside the writer's transaction.
//! - `read`: queries on a pool of read-only connections.
//! - `retention`: pruning finished workflows and old audit entries.
//!
//! Every write resolves only after its transaction committed with
//! `synchronous=FULL` (survives power loss) unless [`Synchronous::Normal`]
//! is chosen. Start-up refuses a database it cannot write (read-only file or
//! mount) with a message saying so, instead of answering every call with
//! UNAVAILABLE later.
//!
//! Why one file over 600 lines: `impl Store for SqliteStore` is one block
//! (a trait's impl cannot span files), short methods that hand each call to
//! the writer thread or the read pool; the SQL itself is in `ops` and
//! `read`.
#![forbid(unsafe_code)]

mod backup;
mod inventory;
pub mod lock;
mod ops;
mod read;
mod retention;
mod schedules;
pub mod schema;
mod templates;
mod writer;

#[cfg(test)]
mod tests;

use async_trait::async_trait;
use interlock_core::{
    Approval, AuditEntry, AuditQuery, Clock, ListFilter, LogLine, LogQuery, Micros, Status,
    Summary, WorkflowRecord,
};
use interlock_store::backend::{NewWorkflow, micros};
use interlock_store::{
    BucketState, CasOutcome, Change, ControlRequest, FeedItem, IdMatch, InstanceInfo,
    InventoryMachine, InventorySite, Lease, Notice, Pruned, RequestKind, Result, ScheduleRow,
    SharedStop, SlotOutcome, SlotRequest, SlotRow, Store, StoreError, StoredInventory,
    StoredTemplate, SubmitOutcome, Take, TakeOutcome, TakeRequest, TemplateDisabled, TemplatePut,
    TemplateRevision,
};
use lock::{DbLock, LockError};
use read::backend;
use rusqlite::{Connection, OpenFlags, Transaction};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Semaphore, broadcast, mpsc, oneshot};
use writer::{Ctx, Msg, Pending, Writer};

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

#[derive(Clone)]
pub struct SqliteOptions {
    pub path: PathBuf,
    pub synchronous: Synchronous,
    /// Most ops committed in one transaction.
    pub max_batch: usize,
    /// Ops queued before callers wait (backpressure).
    pub queue: usize,
    /// The clock leases and event times are read from.
    pub clock: Arc<dyn Clock>,
}

impl SqliteOptions {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            synchronous: Synchronous::Full,
            max_batch: 4096,
            queue: 65_536,
            clock: interlock_core::clock::system(),
        }
    }
}

/// Why the database could not be opened. Each variant says what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// Another interlockd holds the database: stop it, or use another
    /// `--db`.
    #[error(transparent)]
    Locked(LockError),
    /// The file or its directory cannot be written: fix permissions or the
    /// mount.
    #[error(
        "database {path} cannot be written ({reason}); interlockd records every change before \
         acting on it, so it will not start on a read-only database: fix the file's \
         permissions or mount, or give another --db"
    )]
    ReadOnly { path: String, reason: String },
    /// Schema too new, a failed migration, or a damaged file.
    #[error("database {path}: {source}")]
    Schema {
        path: String,
        source: schema::SchemaError,
    },
    #[error("database {path}: {message}")]
    Other { path: String, message: String },
}

/// The embedded store. Cheap to clone; all clones share one writer.
#[derive(Clone)]
pub struct SqliteStore {
    tx: mpsc::Sender<Msg>,
    readers: Arc<ReadPool>,
    clock: Arc<dyn Clock>,
    events: broadcast::Sender<FeedItem>,
    last_error: Arc<Mutex<Option<String>>>,
    lock_path: PathBuf,
}

/// Read-only connections, at most [`readers`] of them, each kept once
/// opened. A read waits for a permit before it takes a blocking thread, so
/// a burst of reads (every client's Status or Watch at once) queues here
/// instead of starting a thread and opening a connection per read: dozens
/// of SQLite readers on a few cores only switch between one another, and a
/// connection opened for a burst and then dropped costs a schema parse.
struct ReadPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
}

/// How many reads run at once: two per core, and at least eight. Reads
/// are short (an indexed lookup or one page of a list), so more than a few
/// per core only wait on one another; the one long read, a backup, holds
/// one permit.
fn readers() -> usize {
    std::thread::available_parallelism().map_or(8, |n| (2 * n.get()).max(8))
}

fn other(path: &Path, e: impl std::fmt::Display) -> OpenError {
    OpenError::Other {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

impl SqliteStore {
    /// Takes the database's lock, opens (creating if needed) and migrates
    /// it, checks it can be written, and starts the writer thread.
    pub fn open(opts: SqliteOptions) -> Result<Self, OpenError> {
        let path = opts.path.clone();
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)
                .map_err(|e| other(&path, format!("cannot create {}: {e}", dir.display())))?;
        }
        // Before the database is even opened: a second server must not
        // touch it (not even to migrate it).
        let lock = DbLock::acquire(&path).map_err(|e| match e {
            LockError::Io { path: lock, source }
                if matches!(
                    source.kind(),
                    std::io::ErrorKind::ReadOnlyFilesystem | std::io::ErrorKind::PermissionDenied
                ) =>
            {
                OpenError::ReadOnly {
                    path: path.display().to_string(),
                    reason: format!("its lock file {lock} cannot be created: {source}"),
                }
            }
            e @ LockError::Io { .. } => other(&path, e),
            e => OpenError::Locked(e),
        })?;
        let lock_path = lock.path().to_path_buf();
        let mut conn = Connection::open(&path).map_err(|e| read_only_or(&path, e))?;
        let setup = |conn: &Connection| -> rusqlite::Result<()> {
            conn.pragma_update(None, "journal_mode", "WAL")?;
            let sync = match opts.synchronous {
                Synchronous::Full => "FULL",
                Synchronous::Normal => "NORMAL",
            };
            conn.pragma_update(None, "synchronous", sync)?;
            conn.busy_timeout(Duration::from_secs(5))
        };
        setup(&conn).map_err(|e| read_only_or(&path, e))?;
        if conn
            .is_readonly(rusqlite::MAIN_DB)
            .map_err(|e| other(&path, e))?
        {
            return Err(OpenError::ReadOnly {
                path: path.display().to_string(),
                reason: "SQLite opened it read-only".into(),
            });
        }
        schema::migrate(&mut conn).map_err(|source| match source {
            schema::SchemaError::Migration { source: e, .. } if is_read_only(&e) => {
                read_only_or(&path, e)
            }
            source => OpenError::Schema {
                path: path.display().to_string(),
                source,
            },
        })?;
        // A real write now, so a read-only mount or a full disk is reported
        // at start-up rather than on the first Submit.
        conn.execute(
            "INSERT INTO meta (key, value) VALUES ('opened', ?1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [opts.clock.now().to_string()],
        )
        .map_err(|e| read_only_or(&path, e))?;

        let (tx, rx) = mpsc::channel(opts.queue.max(1));
        let events = broadcast::Sender::new(4096);
        let last_error = Arc::new(Mutex::new(None));
        let writer = Writer {
            conn,
            clock: opts.clock.clone(),
            events: events.clone(),
            max_batch: opts.max_batch.max(1),
            last_error: last_error.clone(),
            lock: Some(lock),
            leases: Default::default(),
        };
        std::thread::Builder::new()
            .name("interlock-store-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| other(&path, e))?;
        let readers = readers();
        Ok(Self {
            tx,
            readers: Arc::new(ReadPool {
                path,
                idle: Mutex::new(Vec::with_capacity(readers)),
                permits: Arc::new(Semaphore::new(readers)),
            }),
            clock: opts.clock,
            events,
            last_error,
            lock_path,
        })
    }

    /// Records who holds the database (shown to a second server that is
    /// refused), e.g. once the listening address is known.
    pub async fn describe_holder(&self, holder: String) -> Result<()> {
        // The lock file belongs to the writer thread; rewriting its text
        // from here is safe (advisory content) and keeps the lock itself
        // untouched.
        let path = self.lock_path.clone();
        tokio::task::spawn_blocking(move || {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new().write(true).open(&path)?;
            f.set_len(0)?;
            writeln!(f, "{holder}")?;
            f.sync_data()
        })
        .await
        .map_err(backend)?
        .map_err(backend)
    }

    /// The most recent write failure, if the last write failed.
    pub fn last_write_error(&self) -> Option<String> {
        self.last_error.lock().expect("last error lock").clone()
    }

    async fn op<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnMut(&Transaction<'_>, &mut Ctx<'_>) -> rusqlite::Result<T> + Send + 'static,
    {
        self.queue(Pending::boxed(f)).await
    }

    async fn queue<T>(
        &self,
        (op, rx): (
            Box<dyn writer::WriteOp>,
            oneshot::Receiver<writer::Reply<T>>,
        ),
    ) -> Result<T> {
        self.tx
            .send(Msg::Op(op))
            .await
            .map_err(|_| StoreError::Closed)?;
        let (outcome, _op) = rx.await.map_err(|_| StoreError::Closed)?;
        outcome
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        if self.tx.is_closed() {
            return Err(StoreError::Closed);
        }
        let pool = self.readers.clone();
        // Owned, and moved into the blocking task: a caller that gives up
        // waiting does not free the permit while its read still runs.
        let permit = pool
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Closed)?;
        tokio::task::spawn_blocking(move || {
            let conn = pool.take()?;
            let out = f(&conn);
            pool.put(conn);
            drop(permit);
            out
        })
        .await
        .map_err(backend)?
    }
}

fn is_read_only(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::ReadOnly | rusqlite::ErrorCode::CannotOpen)
    )
}

fn read_only_or(path: &Path, e: rusqlite::Error) -> OpenError {
    if is_read_only(&e) {
        OpenError::ReadOnly {
            path: path.display().to_string(),
            reason: e.to_string(),
        }
    } else {
        other(path, e)
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
        c.busy_timeout(Duration::from_secs(5)).map_err(backend)?;
        Ok(c)
    }

    fn put(&self, c: Connection) {
        // Never more than `readers()` at once (one per permit), so every
        // connection is kept.
        self.idle.lock().expect("pool lock").push(c);
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn submit_rows(
        &self,
        new: NewWorkflow,
        content_hash: &str,
        audit: Option<AuditEntry>,
    ) -> Result<SubmitOutcome> {
        let hash = content_hash.to_string();
        self.op(move |tx, _| ops::submit(tx, &new, &hash, audit.as_ref()))
            .await
    }

    async fn get(&self, id: &str) -> Result<Option<WorkflowRecord>> {
        let id = id.to_string();
        self.read(move |c| read::load(c, &id)).await
    }

    async fn resolve_id(&self, prefix: &str) -> Result<IdMatch> {
        let prefix = prefix.to_string();
        self.read(move |c| read::resolve_id(c, &prefix)).await
    }

    async fn acquire(
        &self,
        id: &str,
        from: Status,
        owner: &str,
        at: Micros,
        audit: Option<AuditEntry>,
    ) -> Result<CasOutcome<Lease>> {
        let (id, owner) = (id.to_string(), owner.to_string());
        self.op(move |tx, ctx| ops::acquire(tx, ctx, &id, from, &owner, at, audit.as_ref()))
            .await
    }

    async fn transition(
        &self,
        id: &str,
        from: Status,
        to: Status,
        reason: &str,
        ended: Option<Micros>,
        changes: Vec<Change>,
    ) -> Result<CasOutcome> {
        let (id, reason) = (id.to_string(), reason.to_string());
        self.op(move |tx, ctx| ops::transition(tx, ctx, &id, from, to, &reason, ended, &changes))
            .await
    }

    async fn write(&self, lease: Option<&Lease>, changes: Vec<Change>) -> Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        interlock_store::backend::under_its_lease(lease, &changes)?;
        let Some(lease) = lease.cloned() else {
            return self
                .op(move |tx, ctx| ops::write(tx, ctx, None, &changes))
                .await?;
        };
        self.queue(Pending::fenced(move |tx, ctx| {
            ops::write(tx, ctx, Some(&lease), &changes)
        }))
        .await?
    }

    async fn release(&self, lease: &Lease) -> Result<()> {
        let lease = lease.clone();
        self.op(move |tx, _| ops::release(tx, &lease)).await?
    }

    async fn claim_orphans(
        &self,
        owner: &str,
        limit: usize,
    ) -> Result<Vec<(WorkflowRecord, Lease)>> {
        let owner = owner.to_string();
        let leases = self
            .op(move |tx, ctx| ops::claim_orphans(tx, ctx, &owner, limit))
            .await?;
        let mut out = Vec::with_capacity(leases.len());
        for lease in leases {
            let rec = self.get(&lease.workflow_id).await?.ok_or_else(|| {
                StoreError::Backend(format!("claimed workflow {} vanished", lease.workflow_id))
            })?;
            out.push((rec, lease));
        }
        Ok(out)
    }

    async fn list(&self, filter: ListFilter) -> Result<Vec<Summary>> {
        self.read(move |c| read::list(c, &filter)).await
    }

    async fn expire_request_ids(&self, before: Micros) -> Result<usize> {
        self.op(move |tx, _| {
            tx.prepare_cached("DELETE FROM idempotency WHERE created < ?1")?
                .execute([before])
        })
        .await
    }

    async fn prune_workflows(
        &self,
        before: Micros,
        now: Micros,
        kept_days: u32,
        limit: usize,
    ) -> Result<usize> {
        self.op(move |tx, _| retention::prune_workflows(tx, now, before, kept_days, limit))
            .await
    }

    async fn prune_audit(&self, before: Micros, limit: usize) -> Result<usize> {
        self.op(move |tx, _| retention::prune_audit(tx, before, limit))
            .await
    }

    async fn pruned(&self, id: &str) -> Result<Option<Pruned>> {
        let id = id.to_string();
        self.read(move |c| retention::pruned(c, &id).map_err(backend))
            .await
    }

    async fn size_bytes(&self) -> Result<Option<u64>> {
        self.read(|c| retention::size_bytes(c).map(Some).map_err(backend))
            .await
    }

    async fn register_instance(&self, info: &InstanceInfo, ttl: Duration) -> Result<()> {
        let info = info.clone();
        self.op(move |tx, ctx| ops::register_instance(tx, ctx, &info, micros(ttl)))
            .await
    }

    async fn heartbeat(&self, id: &str, ttl: Duration) -> Result<()> {
        let id = id.to_string();
        self.op(move |tx, ctx| ops::heartbeat(tx, ctx, &id, micros(ttl)))
            .await?
    }

    async fn retire_instance(&self, id: &str) -> Result<()> {
        let id = id.to_string();
        self.op(move |tx, ctx| {
            tx.prepare_cached("UPDATE instances SET expires = ?1 WHERE id = ?2 AND expires > ?1")?
                .execute(rusqlite::params![ctx.now - 1, id])
                .map(|_| ())
        })
        .await
    }

    async fn instances(&self) -> Result<Vec<InstanceInfo>> {
        let now = self.clock.now();
        self.read(move |c| read::instances(c, now)).await
    }

    async fn take(&self, req: TakeRequest) -> Result<TakeOutcome> {
        self.op(move |tx, _| ops::take(tx, &req)).await
    }

    async fn bucket_states(&self, bucket: &str) -> Result<Vec<BucketState>> {
        let bucket = bucket.to_string();
        self.read(move |c| read::bucket_states(c, &bucket)).await
    }

    async fn add_approval(&self, a: &Approval) -> Result<()> {
        let a = a.clone();
        self.op(move |tx, _| {
            if ops::ownership(tx, &a.workflow_id)?.is_none() {
                return Ok(Err(backend(format!("no workflow {}", a.workflow_id))));
            }
            tx.prepare_cached(
                "INSERT INTO approvals (workflow_id, identity, roles, approve, comment,
                 content_hash, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (workflow_id, identity) DO UPDATE SET roles = excluded.roles,
                 approve = excluded.approve, comment = excluded.comment,
                 content_hash = excluded.content_hash, at = excluded.at",
            )?
            .execute(rusqlite::params![
                a.workflow_id,
                a.identity,
                serde_json::to_string(&a.roles).expect("strings serialize"),
                a.approve,
                a.comment,
                a.content_hash,
                a.at
            ])?;
            Ok(Ok(()))
        })
        .await?
    }

    async fn logs(&self, query: &LogQuery) -> Result<Vec<LogLine>> {
        let q = query.clone();
        self.read(move |c| read::logs(c, &q)).await
    }

    async fn approvals(&self, workflow_id: &str) -> Result<Vec<Approval>> {
        let w = workflow_id.to_string();
        self.read(move |c| read::approvals(c, &w)).await
    }

    async fn backup(&self, dest: &std::path::Path) -> Result<u64> {
        let dest = dest.to_path_buf();
        self.read(move |c| backup::write(c, &dest)).await
    }

    async fn enqueue_notices(&self, notices: Vec<Notice>, cap: usize) -> Result<usize> {
        self.op(move |tx, _| {
            let mut insert = tx.prepare_cached(
                "INSERT INTO notices (key, hook, event, body, attempts, next_at, created,
                 last_error) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (key) DO NOTHING",
            )?;
            for n in &notices {
                insert.execute(rusqlite::params![
                    n.key,
                    n.hook,
                    n.event,
                    n.body,
                    n.attempts,
                    n.next_at,
                    n.created,
                    n.last_error
                ])?;
            }
            let dropped = tx
                .prepare_cached(
                    "DELETE FROM notices WHERE id IN (SELECT id FROM notices ORDER BY id DESC
                     LIMIT -1 OFFSET ?1)",
                )?
                .execute([cap as i64])?;
            Ok(dropped)
        })
        .await
    }

    async fn due_notices(&self, now: Micros, limit: usize) -> Result<Vec<Notice>> {
        self.read(move |c| read::due_notices(c, now, limit)).await
    }

    async fn notice_done(&self, id: i64) -> Result<()> {
        self.op(move |tx, _| {
            tx.prepare_cached("DELETE FROM notices WHERE id = ?1")?
                .execute([id])?;
            Ok(())
        })
        .await
    }

    async fn notice_failed(
        &self,
        id: i64,
        attempts: u32,
        next_at: Micros,
        error: &str,
    ) -> Result<()> {
        let error = error.to_string();
        self.op(move |tx, _| {
            tx.prepare_cached(
                "UPDATE notices SET attempts = ?2, next_at = ?3, last_error = ?4 WHERE id = ?1",
            )?
            .execute(rusqlite::params![id, attempts, next_at, error])?;
            Ok(())
        })
        .await
    }

    async fn acquire_slots(&self, lease: &Lease, req: SlotRequest) -> Result<SlotOutcome> {
        let lease = lease.clone();
        self.queue(Pending::fenced(move |tx, ctx| {
            ops::acquire_slots(tx, ctx, &lease, &req)
        }))
        .await?
    }

    async fn slots(&self, workflow_id: Option<&str>) -> Result<Vec<SlotRow>> {
        let w = workflow_id.map(str::to_string);
        self.read(move |c| {
            match &w {
                Some(w) => read::slot_rows(c, "workflow_id = ?1", [w]),
                None => read::slot_rows(c, "1 = 1", []),
            }
            .map_err(backend)
        })
        .await
    }

    async fn take_of(&self, workflow_id: &str, block: usize, job: usize) -> Result<Option<Take>> {
        let workflow_id = workflow_id.to_string();
        self.read(move |c| read::take_of(c, &workflow_id, block, job))
            .await
    }

    async fn audit(&self, entry: AuditEntry) -> Result<()> {
        self.op(move |tx, _| ops::insert_audit(tx, &entry, &entry.target))
            .await
    }

    async fn audit_log(&self, query: AuditQuery) -> Result<Vec<AuditEntry>> {
        self.read(move |c| read::audit_log(c, &query)).await
    }

    async fn request(
        &self,
        workflow_id: &str,
        kind: RequestKind,
        reason: &str,
        at: Micros,
    ) -> Result<ControlRequest> {
        let (workflow_id, reason) = (workflow_id.to_string(), reason.to_string());
        self.op(move |tx, ctx| ops::request(tx, ctx, &workflow_id, kind, &reason, at))
            .await
    }

    async fn requests_for(&self, owner: &str) -> Result<Vec<ControlRequest>> {
        let owner = owner.to_string();
        self.read(move |c| read::requests_for(c, &owner)).await
    }

    async fn finish_request(&self, id: i64) -> Result<()> {
        self.op(move |tx, _| {
            tx.prepare_cached("DELETE FROM requests WHERE id = ?1")?
                .execute([id])
                .map(|_| ())
        })
        .await
    }

    async fn set_stop(&self, entry: SharedStop) -> Result<()> {
        self.op(move |tx, ctx| ops::set_stop(tx, ctx, &entry)).await
    }

    async fn stops(&self) -> Result<Vec<SharedStop>> {
        self.read(read::stops).await
    }

    async fn put_template(&self, rev: TemplateRevision) -> Result<TemplatePut> {
        self.op(move |tx, _| templates::put(tx, &rev)).await
    }

    async fn template(&self, name: &str, revision: Option<u32>) -> Result<Option<StoredTemplate>> {
        let name = name.to_string();
        self.read(move |c| templates::get(c, &name, revision)).await
    }

    async fn templates(&self) -> Result<Vec<StoredTemplate>> {
        self.read(templates::all).await
    }

    async fn template_revisions(&self, name: &str) -> Result<Vec<TemplateRevision>> {
        let name = name.to_string();
        self.read(move |c| templates::revisions(c, &name)).await
    }

    async fn set_template_disabled(
        &self,
        name: &str,
        disabled: Option<TemplateDisabled>,
    ) -> Result<bool> {
        let name = name.to_string();
        self.op(move |tx, _| templates::set_disabled(tx, &name, disabled.as_ref()))
            .await
    }

    async fn create_schedule(&self, row: ScheduleRow) -> Result<bool> {
        self.op(move |tx, _| schedules::create(tx, &row)).await
    }

    async fn schedules(&self) -> Result<Vec<ScheduleRow>> {
        self.read(schedules::all).await
    }

    async fn schedule(&self, name: &str) -> Result<Option<ScheduleRow>> {
        let name = name.to_string();
        self.read(move |c| schedules::get(c, &name)).await
    }

    async fn delete_schedule(&self, name: &str) -> Result<bool> {
        let name = name.to_string();
        self.op(move |tx, _| schedules::delete(tx, &name)).await
    }

    async fn set_schedule_paused(
        &self,
        name: &str,
        paused: bool,
        next_fire: Option<Micros>,
    ) -> Result<bool> {
        let name = name.to_string();
        self.op(move |tx, _| schedules::set_paused(tx, &name, paused, next_fire))
            .await
    }

    async fn claim_fire(
        &self,
        name: &str,
        due: Micros,
        next: Option<Micros>,
        by: &str,
        key: Option<Micros>,
    ) -> Result<bool> {
        let (name, by) = (name.to_string(), by.to_string());
        self.op(move |tx, _| schedules::claim(tx, &name, due, next, &by, key))
            .await
    }

    async fn finish_fire(
        &self,
        name: &str,
        due: Micros,
        outcome: &str,
        workflow: &str,
    ) -> Result<bool> {
        let (name, outcome, workflow) =
            (name.to_string(), outcome.to_string(), workflow.to_string());
        self.op(move |tx, _| schedules::finish(tx, &name, due, &outcome, &workflow))
            .await
    }

    async fn replace_inventory(
        &self,
        sites: Vec<InventorySite>,
        machines: Vec<InventoryMachine>,
        by: &str,
        at: Micros,
    ) -> Result<i64> {
        let by = by.to_string();
        self.op(move |tx, _| inventory::replace(tx, &sites, &machines, &by, at))
            .await
    }

    async fn inventory(&self) -> Result<Option<StoredInventory>> {
        self.read(inventory::get).await
    }

    async fn inventory_version(&self) -> Result<Option<i64>> {
        self.read(inventory::version).await
    }

    async fn set_site_status(
        &self,
        site: &str,
        status: &str,
        by: &str,
        at: Micros,
    ) -> Result<Option<i64>> {
        let (site, status, by) = (site.to_string(), status.to_string(), by.to_string());
        self.op(move |tx, _| inventory::set_status(tx, &site, &status, &by, at))
            .await
    }

    fn subscribe(&self) -> broadcast::Receiver<FeedItem> {
        self.events.subscribe()
    }

    fn queue_depth(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    async fn ping(&self) -> Result<()> {
        self.read(|c| schema::version(c).map(|_| ()).map_err(backend))
            .await
    }

    fn exclusive(&self) -> bool {
        true
    }

    async fn close(&self) {
        let (done, rx) = tokio::sync::oneshot::channel();
        if self.tx.send(Msg::Close(done)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.readers.path)
            .finish()
    }
}
