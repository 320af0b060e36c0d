//! Inputs: job arguments that are outputs of jobs in earlier blocks.
//!
//! They are resolved when their block starts, from the outputs committed by
//! then (every earlier block has ended, and a job's outputs are committed
//! with its end), into a copy of the record the block runs on. So limit
//! slots, bucket keys, the job's own check and the job itself all see the
//! values, never the references. The stored request keeps the references;
//! Status shows what they resolve to.

use super::Inner;
use interlock_core::{BlockRecord, WorkflowRecord};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

impl Inner {
    /// `rec` with the inputs of block `bi`'s jobs filled in from the
    /// outputs committed so far (every earlier block has ended, so they are
    /// all there), each checked as Submit would have checked it had the
    /// values been there: argument formats and the job's own check against
    /// live state. Jobs whose inputs cannot be resolved are returned with
    /// why; they fail when they start (not retried: the outputs will not
    /// change).
    pub(super) async fn with_inputs(
        &self,
        rec: &Arc<WorkflowRecord>,
        bi: usize,
    ) -> (Arc<WorkflowRecord>, Arc<HashMap<usize, String>>) {
        let mut unresolved = HashMap::new();
        let blocks = match self.committed_blocks(&rec.id).await {
            Ok(b) => b,
            Err(why) => {
                for (ji, j) in rec.req.blocks[bi].jobs.iter().enumerate() {
                    if !j.inputs.is_empty() {
                        unresolved.insert(ji, why.clone());
                    }
                }
                return (rec.clone(), Arc::new(unresolved));
            }
        };
        let mut out = (**rec).clone();
        for (ji, spec) in rec.req.blocks[bi].jobs.iter().enumerate() {
            if spec.inputs.is_empty() {
                continue;
            }
            match self.resolve(&rec.req, spec, &blocks) {
                Ok(job) => out.req.blocks[bi].jobs[ji] = job,
                Err(why) => {
                    unresolved.insert(ji, why);
                }
            }
        }
        // What looks at the whole request (policies, approvals, keyed
        // bucket takes) saw the inputs as absent at Submit; it sees the
        // values now. Anything they refuse now that they did not refuse
        // without the values fails the whole block before any job of it
        // starts.
        if let Some(why) = self.refused_with_values(&rec.req, &out.req) {
            for ji in 0..rec.req.blocks[bi].jobs.len() {
                unresolved.insert(ji, why.clone());
            }
        }
        if let Some(buckets) = &self.opts.buckets {
            for v in super::keyed_takes(&out.req, self.runner.as_ref(), buckets) {
                if v.block == Some(bi)
                    && let Some(ji) = v.job
                {
                    unresolved
                        .entry(ji)
                        .or_insert(format!("after its inputs were filled in: {}", v.message));
                }
            }
        }
        (Arc::new(out), Arc::new(unresolved))
    }

    /// Why the request with its inputs filled in is refused where the
    /// request as submitted is not: new policy violations, or approval
    /// rules that now apply.
    fn refused_with_values(
        &self,
        submitted: &interlock_core::WorkReq,
        filled: &interlock_core::WorkReq,
    ) -> Option<String> {
        use crate::admission::Refusal;
        let now = self.opts.clock.now();
        let violations = |r: Result<String, Refusal>| match r {
            Ok(_) => Vec::new(),
            Err(Refusal::Violations { violations, .. }) => violations,
            Err(Refusal::Unavailable(m)) => vec![interlock_core::Violation::new("policy", m)],
        };
        let before = violations(self.admission.admit(submitted, now));
        let new: Vec<String> = violations(self.admission.admit(filled, now))
            .into_iter()
            .filter(|v| !before.contains(v))
            .map(|v| format!("{}: {}", v.policy, v.message))
            .collect();
        if !new.is_empty() {
            return Some(format!(
                "with its inputs filled in, the request breaks its policies: {}",
                new.join("; ")
            ));
        }
        if self.admission.approvals(filled) != self.admission.approvals(submitted) {
            return Some(
                "with its inputs filled in, the request falls under approval rules it was not \
                 approved for; write those arguments out and submit it again"
                    .into(),
            );
        }
        None
    }

    /// The workflow's block records as committed now.
    async fn committed_blocks(&self, id: &str) -> Result<Vec<BlockRecord>, String> {
        let mut wait = Duration::from_millis(50);
        for _ in 0..5 {
            match self.store.get(id).await {
                Ok(Some(rec)) => return Ok(rec.blocks),
                Ok(None) => break,
                Err(e) if e.is_transient() => {
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
                Err(e) => return Err(format!("cannot read the outputs of earlier jobs: {e}")),
            }
        }
        Err("cannot read the outputs of earlier jobs: the store does not answer".into())
    }

    fn resolve(
        &self,
        req: &interlock_core::WorkReq,
        spec: &interlock_core::Job,
        blocks: &[BlockRecord],
    ) -> Result<interlock_core::Job, String> {
        let job = spec.resolved(blocks)?;
        if let Some(schema) = self.runner.catalog().schema(&job.name) {
            let problems = schema.check_args(&job.args);
            if !problems.is_empty() {
                return Err(format!(
                    "after its inputs were filled in: {}",
                    problems.join("; ")
                ));
            }
        }
        self.runner
            .check(req, &job)
            .map_err(|m| format!("after its inputs were filled in: {m}"))?;
        Ok(job)
    }
}
