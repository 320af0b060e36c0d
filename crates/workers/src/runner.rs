//! The job runner a server uses: its built-in jobs, the jobs a config file
//! defines (commands.json's `exec.*`), and the remote types declared in
//! jobs.json, run by workers. A built-in job that jobs.json declares runs
//! on workers but keeps the server's schema, Submit checks and bucket.

use crate::board::Board;
use crate::dispatch::Dispatcher;
use async_trait::async_trait;
use interlock_core::{Catalog, JobSchema, WorkReq};
use interlock_engine::registry::reconcile;
use interlock_engine::{Job, JobCtx, JobError, JobRunner, LiveJobs, Outputs, Reconciled, Registry};
use std::sync::Arc;

/// Schemas, checks and buckets: the built-in's if there is one, else the
/// config-defined job's, else the declaration's. Where it runs: workers if
/// declared, else the server.
pub struct Runners {
    builtin: Registry,
    live: Arc<LiveJobs>,
    remote: Arc<Dispatcher>,
    /// Remote attempts go through the store's task board (several
    /// replicas share the store; a worker may be on any of them).
    board: Option<Arc<Board>>,
}

impl Runners {
    pub fn new(builtin: Registry, live: Arc<LiveJobs>, remote: Arc<Dispatcher>) -> Self {
        Self {
            builtin,
            live,
            remote,
            board: None,
        }
    }

    /// Hands remote attempts to workers through `board` rather than only
    /// to this process's own workers.
    pub fn with_board(mut self, board: Arc<Board>) -> Self {
        self.board = Some(board);
        self
    }

    async fn in_flight(&self, ctx: &JobCtx) -> bool {
        match &self.board {
            Some(b) => b.in_flight(ctx).await,
            None => false,
        }
    }

    /// A job that runs in this process: built in or config-defined.
    fn local(&self, name: &str) -> Option<Arc<dyn Job>> {
        self.builtin
            .get(name)
            .cloned()
            .or_else(|| self.live.get(name))
    }

    /// The local job whose runs of `name` are this process's to stop after
    /// a crash: none when workers declare the type (a worker's run is its
    /// own to stop, and its task ends with the workflow).
    fn run_here(&self, name: &str) -> Option<Arc<dyn Job>> {
        if self.remote.declarations().get(name).is_some() {
            return None;
        }
        self.local(name)
    }
}

impl Catalog for Runners {
    fn schema(&self, job: &str) -> Option<&JobSchema> {
        self.builtin
            .schema(job)
            .or_else(|| self.live.schema(job))
            .or_else(|| self.remote.declarations().get(job).map(|d| d.schema))
    }

    fn schemas(&self) -> Vec<&JobSchema> {
        let mut v = self.builtin.schemas();
        v.extend(self.live.schemas());
        let decls = self.remote.declarations();
        v.extend(
            decls
                .iter()
                .filter(|(_, d)| !d.moved)
                .map(|(_, d)| d.schema),
        );
        v.sort_by_key(|s| s.name);
        v
    }

    fn location(&self, job: &str) -> Option<String> {
        let decls = self.remote.declarations();
        let d = decls.get(job)?;
        let online = self.remote.online(job);
        let who = match d.served_by() {
            [] => String::new(),
            s => format!("; served by {}", s.join(", ")),
        };
        Some(format!(
            "workers ({online} online{who}{})",
            d.timeout
                .map(|t| format!("; timeout {}", humantime::format_duration(t)))
                .unwrap_or_default()
        ))
    }
}

#[async_trait]
impl JobRunner for Runners {
    fn catalog(&self) -> &dyn Catalog {
        self
    }

    fn check(&self, req: &WorkReq, job: &interlock_core::Job) -> Result<(), String> {
        if let Some(j) = self.local(&job.name) {
            return j.check(&job.args, req);
        }
        match self.remote.declarations().get(&job.name) {
            Some(_) => Ok(()),
            None => Err(format!("unknown job {:?}", job.name)),
        }
    }

    fn bucket_take(&self, job: &interlock_core::Job) -> Option<(String, String)> {
        self.local(&job.name)?.bucket_take(&job.args)
    }

    fn safe_to_repeat(&self, job: &interlock_core::Job) -> bool {
        match self.remote.declarations().get(&job.name) {
            Some(d) => d.schema.idempotency == interlock_core::Idempotency::Safe,
            None => self
                .local(&job.name)
                .is_some_and(|j| j.safe_to_repeat(&job.args)),
        }
    }

    async fn run(&self, ctx: &JobCtx, job: &interlock_core::Job) -> Result<Outputs, JobError> {
        let decl = self.remote.declarations().get(&job.name).cloned();
        // Boxed: this future lives as long as the job runs, and unboxed the
        // remote paths' state would size it for in-process jobs too (about
        // 2 KB per running job).
        if let Some(d) = decl {
            return match &self.board {
                Some(b) => Box::pin(b.run(ctx, &d, job)).await,
                None => Box::pin(self.remote.run(ctx, &d, job)).await,
            };
        }
        match self.local(&job.name) {
            Some(j) => j.run(ctx, &job.args).await,
            None => Err(JobError::new(format!(
                "job type {:?} is not registered on this server (neither built in nor declared in \
                 jobs.json), so the job cannot run",
                job.name
            ))),
        }
    }

    fn waiting(&self, id: &str) -> Vec<(usize, usize, String)> {
        let why = |job_type: &str, since| {
            format!(
                "a worker serving {job_type} ({} online{}), since {}",
                self.remote.online(job_type),
                if self.board.is_some() {
                    " here; any replica's may take it"
                } else {
                    ""
                },
                humantime::format_rfc3339_seconds(since)
            )
        };
        let mut v: Vec<_> = self
            .remote
            .waiting()
            .into_iter()
            .filter(|w| w.workflow_id == id)
            .map(|w| (w.block, w.job, why(&w.job_type, w.since)))
            .collect();
        if let Some(b) = &self.board {
            v.extend(
                b.waiting(id)
                    .into_iter()
                    .map(|(block, job, t, since)| (block, job, why(&t, since))),
            );
        }
        v
    }

    async fn abandon(&self, ctx: &JobCtx, job: &interlock_core::Job) {
        if let Some(j) = self.run_here(&job.name) {
            j.abandon(ctx, &job.args).await;
        }
    }

    async fn halt(&self, ctx: &JobCtx, job: &interlock_core::Job) {
        if let Some(j) = self.run_here(&job.name) {
            j.halt(ctx, &job.args).await;
        }
    }

    async fn reconcile(&self, ctx: &JobCtx, job: &interlock_core::Job) -> Reconciled {
        let decl = self.remote.declarations().get(&job.name).cloned();
        match decl {
            // Asking a worker now would hold recovery until one connects.
            // A reconcilable type saves a checkpoint before it acts, so
            // running it again is safe: an attempt that starts with a
            // checkpoint goes to a worker as a reconcile request first.
            Some(d) if d.schema.reconcilable => Reconciled::NotDone,
            // Its worker (on any replica) may still run it, or be done:
            // the next run takes it over rather than doing it again.
            Some(_) if self.board.as_ref().is_some() && self.in_flight(ctx).await => {
                Reconciled::NotDone
            }
            Some(_) => Reconciled::Unknown(
                "it ran on a worker, is not safe to run twice, and cannot be reconciled".into(),
            ),
            None => match self.local(&job.name) {
                Some(j) => reconcile(j.as_ref(), ctx, &job.args).await,
                None => self.builtin.reconcile(ctx, job).await,
            },
        }
    }
}
