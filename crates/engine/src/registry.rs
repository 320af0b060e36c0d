//! The in-process job runner: registered [`Job`]s looked up by name.

use crate::job::{Job, JobCtx, JobError, JobRunner, Outputs, Reconciled};
use async_trait::async_trait;
use interlock_core::{Catalog, JobSchema};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Registered jobs by name. Built once at start-up; read-only afterwards.
#[derive(Default, Clone)]
pub struct Registry {
    jobs: BTreeMap<&'static str, Arc<dyn Job>>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a job under its schema's name.
    ///
    /// # Panics
    /// If the name is already registered: two jobs under one name is a
    /// programming error that must not reach production.
    pub fn register(&mut self, job: Arc<dyn Job>) -> &mut Self {
        let name = job.schema().name;
        assert!(
            self.jobs.insert(name, job).is_none(),
            "job {name:?} registered twice"
        );
        self
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn Job>> {
        self.jobs.get(name)
    }

    fn job(&self, name: &str) -> Result<&Arc<dyn Job>, JobError> {
        self.get(name).ok_or_else(|| {
            JobError::new(format!(
                "job type {name:?} is not registered on this server, so the job cannot run"
            ))
        })
    }
}

impl Catalog for Registry {
    fn schema(&self, job: &str) -> Option<&JobSchema> {
        self.jobs.get(job).map(|j| j.schema())
    }

    fn schemas(&self) -> Vec<&JobSchema> {
        self.jobs.values().map(|j| j.schema()).collect()
    }
}

#[async_trait]
impl JobRunner for Registry {
    fn catalog(&self) -> &dyn Catalog {
        self
    }

    fn check(
        &self,
        req: &interlock_core::WorkReq,
        job: &interlock_core::Job,
    ) -> Result<(), String> {
        match self.get(&job.name) {
            Some(j) => j.check(&job.args, req),
            None => Err(format!("unknown job {:?}", job.name)),
        }
    }

    fn bucket_take(&self, job: &interlock_core::Job) -> Option<(String, String)> {
        self.get(&job.name)?.bucket_take(&job.args)
    }

    async fn run(&self, ctx: &JobCtx, job: &interlock_core::Job) -> Result<Outputs, JobError> {
        self.job(&job.name)?.run(ctx, &job.args).await
    }

    async fn reconcile(&self, ctx: &JobCtx, job: &interlock_core::Job) -> Reconciled {
        match self.job(&job.name) {
            Ok(j) if j.schema().reconcilable => j.reconcile(ctx, &job.args).await,
            Ok(_) => Reconciled::Unknown(
                "it is not safe to run twice and cannot tell whether it took effect".into(),
            ),
            Err(e) => Reconciled::Unknown(e.message),
        }
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.jobs.keys()).finish()
    }
}
