//! The set of jobs a server can run, looked up by name.

use crate::Job;
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
}

impl Catalog for Registry {
    fn schema(&self, job: &str) -> Option<&JobSchema> {
        self.jobs.get(job).map(|j| j.schema())
    }

    fn schemas(&self) -> Vec<&JobSchema> {
        self.jobs.values().map(|j| j.schema()).collect()
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.jobs.keys()).finish()
    }
}
