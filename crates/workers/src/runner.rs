//! The job runner a server uses: its built-in jobs, and beside them the
//! remote types declared in jobs.json, run by workers. A built-in job
//! that jobs.json declares runs on workers but keeps the server's schema,
//! Submit checks and bucket.

use crate::dispatch::Dispatcher;
use async_trait::async_trait;
use interlock_core::{Catalog, JobSchema, WorkReq};
use interlock_engine::{JobCtx, JobError, JobRunner, Outputs, Reconciled, Registry};
use std::sync::Arc;

/// Schemas, checks and buckets: the built-in's if there is one, else the
/// declaration's. Where it runs: workers if declared, else the server.
pub struct Runners {
    builtin: Registry,
    remote: Arc<Dispatcher>,
}

impl Runners {
    pub fn new(builtin: Registry, remote: Arc<Dispatcher>) -> Self {
        Self { builtin, remote }
    }

    pub fn builtin(&self) -> &Registry {
        &self.builtin
    }

    pub fn dispatcher(&self) -> &Arc<Dispatcher> {
        &self.remote
    }
}

impl Catalog for Runners {
    fn schema(&self, job: &str) -> Option<&JobSchema> {
        self.builtin
            .schema(job)
            .or_else(|| self.remote.declarations().get(job).map(|d| d.schema))
    }

    fn schemas(&self) -> Vec<&JobSchema> {
        let mut v = self.builtin.schemas();
        v.extend(self.remote.declarations().iter().map(|(_, d)| d.schema));
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
        if self.builtin.get(&job.name).is_some() {
            return self.builtin.check(req, job);
        }
        match self.remote.declarations().get(&job.name) {
            Some(_) => Ok(()),
            None => Err(format!("unknown job {:?}", job.name)),
        }
    }

    fn bucket_take(&self, job: &interlock_core::Job) -> Option<(String, String)> {
        self.builtin.bucket_take(job)
    }

    async fn run(&self, ctx: &JobCtx, job: &interlock_core::Job) -> Result<Outputs, JobError> {
        let decl = self.remote.declarations().get(&job.name).cloned();
        match decl {
            Some(d) => self.remote.run(ctx, &d, job).await,
            None if self.builtin.get(&job.name).is_some() => self.builtin.run(ctx, job).await,
            None => Err(JobError::new(format!(
                "job type {:?} is not registered on this server (neither built in nor declared in \
                 jobs.json), so the job cannot run",
                job.name
            ))),
        }
    }

    fn waiting(&self, id: &str) -> Vec<(usize, usize, String)> {
        self.remote
            .waiting()
            .into_iter()
            .filter(|w| w.workflow_id == id)
            .map(|w| {
                let why = format!(
                    "a worker serving {} ({} online), since {}",
                    w.job_type,
                    self.remote.online(&w.job_type),
                    humantime::format_rfc3339_seconds(w.since)
                );
                (w.block, w.job, why)
            })
            .collect()
    }

    async fn reconcile(&self, ctx: &JobCtx, job: &interlock_core::Job) -> Reconciled {
        let decl = self.remote.declarations().get(&job.name).cloned();
        match decl {
            // Asking a worker now would hold recovery until one connects.
            // A reconcilable type saves a checkpoint before it acts, so
            // running it again is safe: an attempt that starts with a
            // checkpoint goes to a worker as a reconcile request first.
            Some(d) if d.schema.reconcilable => Reconciled::NotDone,
            Some(_) => Reconciled::Unknown(
                "it ran on a worker, is not safe to run twice, and cannot be reconciled".into(),
            ),
            None => self.builtin.reconcile(ctx, job).await,
        }
    }
}
