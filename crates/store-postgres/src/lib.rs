//! The shared store: PostgreSQL, for several interlockd replicas on one
//! database. Selected by a `postgres://` URL.
//!
//! Layout:
//! - [`schema`]: numbered migrations, taken by one replica under an
//!   advisory lock while the others wait; a newer database is refused.
//! - `writer`: one task per replica commits queued writes in batches.
//! - `ops`: the SQL of each write, with the row locks that make it atomic
//!   against other replicas (compare-and-set, fencing, takes, claims).
//! - `read`: queries on a connection pool.
//! - `feed`: the change feed over LISTEN/NOTIFY.
//!
//! Driver: tokio-postgres with a deadpool pool — async, with LISTEN/NOTIFY
//! through the connection's message stream, and no database needed at
//! build time (unlike sqlx's checked queries). Lease times come from the
//! database's clock, so replicas on machines whose clocks differ agree on
//! who is alive. Connections are plaintext (`NoTls`): run the database on
//! the same host or a trusted network.
//!
//! Why one file over 600 lines: `impl Store for PgStore` is one block (a
//! trait's impl cannot span files), short methods that hand each call to
//! the writer task or the pool; the SQL itself is in `ops` and `read`.
#![forbid(unsafe_code)]

mod board;
mod feed;
mod inventory;
mod ops;
mod plans;
mod read;
mod retention;
mod schedules;
pub mod schema;
mod sql;
mod templates;
pub mod testing;
mod writer;

use async_trait::async_trait;
use interlock_core::{
    Approval, AuditEntry, AuditQuery, ListFilter, LogLine, LogQuery, Micros, Status, Summary,
    WorkflowRecord,
};
use interlock_store::backend::{NewWorkflow, micros};
use interlock_store::{
    BoardReport, BoardTask, BucketState, CasOutcome, Change, ControlRequest, FeedItem, IdMatch,
    InstanceInfo, InventoryMachine, InventorySite, Lease, Notice, OwnerAct, Pruned, RequestKind,
    Result, ScheduleRow, SharedStop, SlotOutcome, SlotRequest, SlotRow, Store, StoreError,
    StoredInventory, StoredTemplate, SubmitOutcome, Take, TakeOutcome, TakeRequest, TaskKey,
    TemplateDisabled, TemplatePut, TemplateRevision,
};
use read::backend;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot};
use writer::{NOW_US, Op, Outcome, Queued};

/// How to reach and use the database.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// `postgres://user@host:port/database` (libpq URL or key=value form).
    pub url: String,
    /// Pooled connections for reads and the writer.
    pub pool_size: usize,
    /// Most ops committed in one transaction.
    pub max_batch: usize,
    /// Ops queued before callers wait (backpressure).
    pub queue: usize,
}

impl PgOptions {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            pool_size: 12,
            max_batch: 512,
            queue: 65_536,
        }
    }
}

/// Why the database could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    #[error("database URL {url:?} is not valid: {message}")]
    BadUrl { url: String, message: String },
    #[error("cannot reach the database at {url}: {message}")]
    Unreachable { url: String, message: String },
    #[error("database at {url}: {source}")]
    Schema {
        url: String,
        source: schema::SchemaError,
    },
}

/// The PostgreSQL store. Cheap to clone; clones share the pool and writer.
#[derive(Clone)]
pub struct PgStore {
    pool: deadpool_postgres::Pool,
    tx: mpsc::Sender<Queued>,
    events: broadcast::Sender<FeedItem>,
    tasks: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    /// The URL without its password, for messages.
    shown: String,
}

/// A URL with any password replaced, fit for logs and errors.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

impl PgStore {
    /// Connects, migrates (one replica at a time), and starts the writer and
    /// the change feed.
    pub async fn open(opts: PgOptions) -> Result<Self, OpenError> {
        let shown = redact(&opts.url);
        let config: tokio_postgres::Config =
            opts.url
                .parse()
                .map_err(|e: tokio_postgres::Error| OpenError::BadUrl {
                    url: shown.clone(),
                    message: e.to_string(),
                })?;
        let unreachable = |message: String| OpenError::Unreachable {
            url: shown.clone(),
            message,
        };
        let (mut client, conn) = config
            .connect(tokio_postgres::NoTls)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let driver = tokio::spawn(async move {
            let _ = conn.await;
        });
        schema::migrate(&mut client)
            .await
            .map_err(|source| OpenError::Schema {
                url: shown.clone(),
                source,
            })?;
        drop(client);
        driver.abort();

        let manager = deadpool_postgres::Manager::from_config(
            config.clone(),
            tokio_postgres::NoTls,
            deadpool_postgres::ManagerConfig {
                recycling_method: deadpool_postgres::RecyclingMethod::Fast,
            },
        );
        let pool = deadpool_postgres::Pool::builder(manager)
            .max_size(opts.pool_size.max(2))
            .wait_timeout(Some(Duration::from_secs(10)))
            .create_timeout(Some(Duration::from_secs(5)))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| unreachable(e.to_string()))?;
        let (tx, rx) = mpsc::channel(opts.queue.max(1));
        let events = broadcast::Sender::new(4096);
        let tasks = vec![
            tokio::spawn(writer::run(pool.clone(), rx, opts.max_batch.max(1))),
            tokio::spawn(feed::listen(config, events.clone())),
        ];
        Ok(Self {
            pool,
            tx,
            events,
            tasks: Arc::new(Mutex::new(tasks)),
            shown,
        })
    }

    /// The database URL, password hidden.
    pub fn url(&self) -> &str {
        &self.shown
    }

    async fn send(&self, op: Op) -> Result<Outcome> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Queued { op, reply })
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    async fn client(&self) -> Result<deadpool_postgres::Client> {
        if self.tx.is_closed() {
            return Err(StoreError::Closed);
        }
        self.pool
            .get()
            .await
            .map_err(|e| backend(format!("no database connection: {e}")))
    }
}

/// The outcome an op of this kind gives; anything else is a bug.
fn unexpected<T>() -> Result<T> {
    Err(StoreError::Backend(
        "the writer answered with the wrong outcome".into(),
    ))
}

#[async_trait]
impl Store for PgStore {
    async fn submit_rows(
        &self,
        new: NewWorkflow,
        content_hash: &str,
        audit: Option<AuditEntry>,
    ) -> Result<SubmitOutcome> {
        match self
            .send(Op::Submit {
                new: Box::new(new),
                hash: content_hash.to_string(),
                audit,
            })
            .await?
        {
            Outcome::Submit(s) => Ok(s),
            _ => unexpected(),
        }
    }

    async fn get(&self, id: &str) -> Result<Option<WorkflowRecord>> {
        read::load(&self.client().await?, id).await
    }

    async fn resolve_id(&self, prefix: &str) -> Result<IdMatch> {
        read::resolve_id(&self.client().await?, prefix).await
    }

    async fn acquire(
        &self,
        id: &str,
        from: Status,
        owner: &str,
        at: Micros,
        audit: Option<AuditEntry>,
    ) -> Result<CasOutcome<Lease>> {
        match self
            .send(Op::Acquire {
                id: id.to_string(),
                from,
                owner: owner.to_string(),
                at,
                audit,
            })
            .await?
        {
            Outcome::Acquired(o) => Ok(o),
            _ => unexpected(),
        }
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
        match self
            .send(Op::Transition {
                id: id.to_string(),
                from,
                to,
                reason: reason.to_string(),
                ended,
                changes,
            })
            .await?
        {
            Outcome::Cas(o) => Ok(o),
            _ => unexpected(),
        }
    }

    async fn write(&self, lease: Option<&Lease>, changes: Vec<Change>) -> Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        interlock_store::backend::under_its_lease(lease, &changes)?;
        match self
            .send(Op::Write {
                lease: lease.cloned(),
                changes,
            })
            .await?
        {
            Outcome::Refusable(r) => r,
            _ => unexpected(),
        }
    }

    async fn release(&self, lease: &Lease) -> Result<()> {
        match self.send(Op::Release(lease.clone())).await? {
            Outcome::Refusable(r) => r,
            _ => unexpected(),
        }
    }

    async fn claim_orphans(
        &self,
        owner: &str,
        limit: usize,
    ) -> Result<Vec<(WorkflowRecord, Lease)>> {
        let leases = match self
            .send(Op::Claim {
                owner: owner.to_string(),
                limit,
            })
            .await?
        {
            Outcome::Leases(l) => l,
            _ => return unexpected(),
        };
        let c = self.client().await?;
        let mut out = Vec::with_capacity(leases.len());
        for lease in leases {
            let rec = read::load(&c, &lease.workflow_id).await?.ok_or_else(|| {
                StoreError::Backend(format!("claimed workflow {} vanished", lease.workflow_id))
            })?;
            out.push((rec, lease));
        }
        Ok(out)
    }

    async fn list(&self, filter: ListFilter) -> Result<Vec<Summary>> {
        read::list(&self.client().await?, &filter).await
    }

    async fn expire_request_ids(&self, before: Micros) -> Result<usize> {
        match self.send(Op::Expire(before)).await? {
            Outcome::Count(n) => Ok(n as usize),
            _ => unexpected(),
        }
    }

    async fn prune_workflows(
        &self,
        before: Micros,
        now: Micros,
        kept_days: u32,
        limit: usize,
    ) -> Result<usize> {
        let mut c = self.client().await?;
        retention::prune_workflows(&mut c, before, now, kept_days, limit)
            .await
            .map_err(backend)
    }

    async fn prune_audit(&self, before: Micros, limit: usize) -> Result<usize> {
        let mut c = self.client().await?;
        retention::prune_audit(&mut c, before, limit)
            .await
            .map_err(backend)
    }

    async fn pruned(&self, id: &str) -> Result<Option<Pruned>> {
        retention::pruned(&self.client().await?, id)
            .await
            .map_err(backend)
    }

    async fn size_bytes(&self) -> Result<Option<u64>> {
        retention::size_bytes(&self.client().await?)
            .await
            .map(Some)
            .map_err(backend)
    }

    async fn register_instance(&self, info: &InstanceInfo, ttl: Duration) -> Result<()> {
        self.send(Op::Register {
            info: info.clone(),
            ttl: micros(ttl),
        })
        .await
        .map(|_| ())
    }

    async fn heartbeat(&self, id: &str, ttl: Duration) -> Result<()> {
        match self
            .send(Op::Heartbeat {
                id: id.to_string(),
                ttl: micros(ttl),
            })
            .await?
        {
            Outcome::Refusable(r) => r,
            _ => unexpected(),
        }
    }

    async fn retire_instance(&self, id: &str) -> Result<()> {
        self.send(Op::Retire(id.to_string())).await.map(|_| ())
    }

    async fn instances(&self) -> Result<Vec<InstanceInfo>> {
        let c = self.client().await?;
        let now: i64 = sql::query_one(&c, &format!("SELECT {NOW_US}"), &[])
            .await
            .map_err(backend)?
            .get(0);
        read::instances(&c, now).await
    }

    async fn take(&self, req: TakeRequest) -> Result<TakeOutcome> {
        match self.send(Op::Take(req)).await? {
            Outcome::Take(t) => Ok(t),
            _ => unexpected(),
        }
    }

    async fn bucket_states(&self, bucket: &str) -> Result<Vec<BucketState>> {
        read::bucket_states(&self.client().await?, bucket).await
    }

    async fn add_approval(&self, a: &Approval) -> Result<()> {
        match self.send(Op::Approval(a.clone())).await? {
            Outcome::Refusable(r) => r,
            _ => unexpected(),
        }
    }

    async fn logs(&self, query: &LogQuery) -> Result<Vec<LogLine>> {
        read::logs(&self.client().await?, query).await
    }

    async fn approvals(&self, workflow_id: &str) -> Result<Vec<Approval>> {
        read::approvals(&self.client().await?, workflow_id).await
    }

    async fn backup(&self, _dest: &std::path::Path) -> Result<u64> {
        Err(StoreError::Backend(
            "a PostgreSQL store is backed up with PostgreSQL's own tools (pg_dump, or base \
             backups with WAL archiving for point-in-time recovery); see the README"
                .into(),
        ))
    }

    async fn enqueue_notices(&self, notices: Vec<Notice>, cap: usize) -> Result<usize> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(backend)?;
        for n in &notices {
            sql::execute(
                &tx,
                "INSERT INTO notices (key, hook, event, body, attempts, next_at, created,
                 last_error) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (key) DO NOTHING",
                &[
                    &n.key,
                    &n.hook,
                    &n.event,
                    &n.body,
                    &i64::from(n.attempts),
                    &n.next_at,
                    &n.created,
                    &n.last_error,
                ],
            )
            .await
            .map_err(backend)?;
        }
        let dropped = sql::execute(
            &tx,
            "DELETE FROM notices WHERE id IN (SELECT id FROM notices ORDER BY id DESC OFFSET $1)",
            &[&(cap as i64)],
        )
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(dropped as usize)
    }

    async fn due_notices(&self, now: Micros, limit: usize) -> Result<Vec<Notice>> {
        let rows = sql::query(
            &self.client().await?,
            "SELECT id, key, hook, event, body, attempts, next_at, created, last_error
             FROM notices WHERE next_at <= $1 ORDER BY id LIMIT $2",
            &[&now, &(limit as i64)],
        )
        .await
        .map_err(backend)?;
        Ok(rows
            .iter()
            .map(|r| Notice {
                id: r.get(0),
                key: r.get(1),
                hook: r.get(2),
                event: r.get(3),
                body: r.get(4),
                attempts: r.get::<_, i64>(5) as u32,
                next_at: r.get(6),
                created: r.get(7),
                last_error: r.get(8),
            })
            .collect())
    }

    async fn notice_done(&self, id: i64) -> Result<()> {
        sql::execute(
            &self.client().await?,
            "DELETE FROM notices WHERE id = $1",
            &[&id],
        )
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn notice_failed(
        &self,
        id: i64,
        attempts: u32,
        next_at: Micros,
        error: &str,
    ) -> Result<()> {
        sql::execute(
            &self.client().await?,
            "UPDATE notices SET attempts = $2, next_at = $3, last_error = $4 WHERE id = $1",
            &[&id, &i64::from(attempts), &next_at, &error],
        )
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn acquire_slots(&self, lease: &Lease, req: SlotRequest) -> Result<SlotOutcome> {
        match self
            .send(Op::AcquireSlots {
                lease: lease.clone(),
                req,
            })
            .await?
        {
            Outcome::Slots(r) => r,
            _ => unexpected(),
        }
    }

    async fn slots(&self, workflow_id: Option<&str>) -> Result<Vec<SlotRow>> {
        let c = self.client().await?;
        match workflow_id {
            Some(w) => read::slot_rows(&c, "workflow_id = $1", &[&w]).await,
            None => read::slot_rows(&c, "true", &[]).await,
        }
        .map_err(backend)
    }

    async fn take_of(&self, workflow_id: &str, block: usize, job: usize) -> Result<Option<Take>> {
        read::take_of(&self.client().await?, workflow_id, block, job).await
    }

    async fn audit(&self, entry: AuditEntry) -> Result<()> {
        self.send(Op::Audit(entry)).await.map(|_| ())
    }

    async fn audit_log(&self, query: AuditQuery) -> Result<Vec<AuditEntry>> {
        read::audit_log(&self.client().await?, &query).await
    }

    async fn request(
        &self,
        workflow_id: &str,
        kind: RequestKind,
        reason: &str,
        at: Micros,
    ) -> Result<ControlRequest> {
        match self
            .send(Op::Request {
                workflow_id: workflow_id.to_string(),
                kind,
                reason: reason.to_string(),
                at,
            })
            .await?
        {
            Outcome::Request(r) => Ok(r),
            _ => unexpected(),
        }
    }

    async fn requests_for(&self, owner: &str) -> Result<Vec<ControlRequest>> {
        read::requests_for(&self.client().await?, owner).await
    }

    async fn finish_request(&self, id: i64) -> Result<()> {
        self.send(Op::FinishRequest(id)).await.map(|_| ())
    }

    async fn set_stop(&self, entry: SharedStop) -> Result<()> {
        self.send(Op::SetStop(entry)).await.map(|_| ())
    }

    async fn stops(&self) -> Result<Vec<SharedStop>> {
        read::stops(&self.client().await?).await
    }

    fn shares_tasks(&self) -> bool {
        true
    }

    async fn board_post(&self, lease: &Lease, task: BoardTask) -> Result<()> {
        board::post(&mut self.client().await?, lease, &task).await
    }

    async fn board_claim(
        &self,
        replica: &str,
        types: &[String],
        limit: usize,
        ttl: Duration,
        lease_prefix: &str,
    ) -> Result<Vec<BoardTask>> {
        let mut c = self.client().await?;
        board::claim(&mut c, replica, types, limit, ttl, lease_prefix).await
    }

    async fn board_reattach(
        &self,
        lease: &str,
        replica: &str,
        ttl: Duration,
    ) -> Result<Option<BoardTask>> {
        board::reattach(&mut self.client().await?, lease, replica, ttl).await
    }

    async fn board_renew(&self, replica: &str, keys: &[TaskKey], ttl: Duration) -> Result<()> {
        board::renew(&self.client().await?, replica, keys, ttl).await
    }

    async fn board_report(
        &self,
        key: &TaskKey,
        claim: i64,
        report: BoardReport,
        at: Micros,
    ) -> Result<bool> {
        board::report(&mut self.client().await?, key, claim, report, at).await
    }

    async fn board_act(
        &self,
        lease: &Lease,
        key: &TaskKey,
        act: OwnerAct,
    ) -> Result<Option<BoardTask>> {
        board::act(&mut self.client().await?, lease, key, act).await
    }

    async fn board_task(&self, key: &TaskKey) -> Result<Option<BoardTask>> {
        board::get(&self.client().await?, key).await
    }

    async fn put_template(&self, rev: TemplateRevision) -> Result<TemplatePut> {
        templates::put(&mut self.client().await?, &rev).await
    }

    async fn template(&self, name: &str, revision: Option<u32>) -> Result<Option<StoredTemplate>> {
        templates::get(&self.client().await?, name, revision).await
    }

    async fn templates(&self) -> Result<Vec<StoredTemplate>> {
        templates::all(&self.client().await?).await
    }

    async fn template_revisions(&self, name: &str) -> Result<Vec<TemplateRevision>> {
        templates::revisions(&self.client().await?, name).await
    }

    async fn set_template_disabled(
        &self,
        name: &str,
        disabled: Option<TemplateDisabled>,
    ) -> Result<bool> {
        templates::set_disabled(&self.client().await?, name, disabled.as_ref()).await
    }

    async fn create_schedule(&self, row: ScheduleRow) -> Result<bool> {
        schedules::create(&self.client().await?, &row).await
    }

    async fn schedules(&self) -> Result<Vec<ScheduleRow>> {
        schedules::all(&self.client().await?).await
    }

    async fn schedule(&self, name: &str) -> Result<Option<ScheduleRow>> {
        schedules::get(&self.client().await?, name).await
    }

    async fn delete_schedule(&self, name: &str) -> Result<bool> {
        schedules::delete(&self.client().await?, name).await
    }

    async fn set_schedule_paused(
        &self,
        name: &str,
        paused: bool,
        next_fire: Option<Micros>,
    ) -> Result<bool> {
        schedules::set_paused(&self.client().await?, name, paused, next_fire).await
    }

    async fn claim_fire(
        &self,
        name: &str,
        due: Micros,
        next: Option<Micros>,
        by: &str,
        key: Option<Micros>,
    ) -> Result<bool> {
        schedules::claim(&self.client().await?, name, due, next, by, key).await
    }

    async fn finish_fire(
        &self,
        name: &str,
        due: Micros,
        outcome: &str,
        workflow: &str,
    ) -> Result<bool> {
        schedules::finish(&self.client().await?, name, due, outcome, workflow).await
    }

    async fn replace_inventory(
        &self,
        sites: Vec<InventorySite>,
        machines: Vec<InventoryMachine>,
        by: &str,
        at: Micros,
    ) -> Result<i64> {
        inventory::replace(&mut self.client().await?, &sites, &machines, by, at).await
    }

    async fn inventory(&self) -> Result<Option<StoredInventory>> {
        inventory::get(&mut self.client().await?).await
    }

    async fn inventory_version(&self) -> Result<Option<i64>> {
        inventory::version(&self.client().await?).await
    }

    async fn set_site_status(
        &self,
        site: &str,
        status: &str,
        by: &str,
        at: Micros,
    ) -> Result<Option<i64>> {
        inventory::set_status(&mut self.client().await?, site, status, by, at).await
    }

    fn subscribe(&self) -> broadcast::Receiver<FeedItem> {
        self.events.subscribe()
    }

    fn queue_depth(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    async fn ping(&self) -> Result<()> {
        self.client()
            .await?
            .query_one("SELECT 1", &[])
            .await
            .map(|_| ())
            .map_err(backend)
    }

    async fn close(&self) {
        // Let what is queued commit first (bounded: a database that does
        // not answer must not hold a shutdown).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while self.queue_depth() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        for t in self.tasks.lock().expect("tasks lock").drain(..) {
            t.abort();
        }
        self.pool.close();
    }
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").field("url", &self.shown).finish()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            super::redact("postgres://app:s3cret@db:5432/interlock"),
            "postgres://app:***@db:5432/interlock"
        );
        assert_eq!(
            super::redact("postgres://postgres@127.0.0.1/x"),
            "postgres://postgres@127.0.0.1/x"
        );
    }
}
