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

    fn safe_to_repeat(&self, job: &interlock_core::Job) -> bool {
        self.get(&job.name)
            .is_some_and(|j| j.safe_to_repeat(&job.args))
    }

    async fn run(&self, ctx: &JobCtx, job: &interlock_core::Job) -> Result<Outputs, JobError> {
        self.job(&job.name)?.run(ctx, &job.args).await
    }

    async fn abandon(&self, ctx: &JobCtx, job: &interlock_core::Job) {
        if let Some(j) = self.get(&job.name) {
            j.abandon(ctx, &job.args).await;
        }
    }

    async fn halt(&self, ctx: &JobCtx, job: &interlock_core::Job) {
        if let Some(j) = self.get(&job.name) {
            j.halt(ctx, &job.args).await;
        }
    }

    async fn reconcile(&self, ctx: &JobCtx, job: &interlock_core::Job) -> Reconciled {
        match self.job(&job.name) {
            Ok(j) => reconcile(j.as_ref(), ctx, &job.args).await,
            Err(e) => Reconciled::Unknown(e.message),
        }
    }
}

/// Asks `job` whether its interrupted run took effect, if it can tell.
pub async fn reconcile(job: &dyn Job, ctx: &JobCtx, args: &interlock_core::Args) -> Reconciled {
    if job.schema().reconcilable {
        job.reconcile(ctx, args).await
    } else {
        Reconciled::Unknown(
            "it is not safe to run twice and cannot tell whether it took effect".into(),
        )
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.jobs.keys()).finish()
    }
}

/// Jobs defined by a config file (commands.json's `exec.*` types), swapped
/// whole when the file is reloaded. Their schemas are interned
/// (`interlock_core::schema::intern`), so a lookup can hand one out while a
/// reload replaces the set.
#[derive(Default)]
pub struct LiveJobs {
    set: std::sync::RwLock<Arc<LiveSet>>,
}

/// Config-defined jobs by type name, with their interned schemas.
type LiveSet = BTreeMap<String, (Arc<dyn Job>, &'static JobSchema)>;

impl LiveJobs {
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// Puts `jobs` in force in place of the last set.
    pub fn replace(&self, jobs: Vec<(Arc<dyn Job>, &'static JobSchema)>) {
        let set = jobs
            .into_iter()
            .map(|(j, s)| (s.name.to_string(), (j, s)))
            .collect();
        *self.set.write().expect("live jobs lock") = Arc::new(set);
    }

    fn current(&self) -> Arc<LiveSet> {
        self.set.read().expect("live jobs lock").clone()
    }

    pub fn get(&self, name: &str) -> Option<Arc<dyn Job>> {
        self.current().get(name).map(|(j, _)| j.clone())
    }

    pub fn schema(&self, name: &str) -> Option<&'static JobSchema> {
        self.current().get(name).map(|(_, s)| *s)
    }

    pub fn schemas(&self) -> Vec<&'static JobSchema> {
        self.current().values().map(|(_, s)| *s).collect()
    }
}
