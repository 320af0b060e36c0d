//! Structural validation: is this a well-formed request for jobs we have?
//!
//! Runs before any policy. Returns every problem found, each located by block
//! and job index, so a client can fix them all in one round trip.

use crate::{Catalog, Violation, WorkReq};
use serde::{Deserialize, Serialize};

/// Size limits on a request. Defaults leave room for large real workflows
/// (e.g. one block of 10,000 jobs) while bounding what one request can cost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    pub max_blocks: usize,
    pub max_jobs_per_block: usize,
    pub max_jobs_total: usize,
    pub max_args_per_job: usize,
    pub max_arg_key_bytes: usize,
    pub max_arg_value_bytes: usize,
    /// Longest name, description, label or trace id, in bytes.
    pub max_text_bytes: usize,
    pub max_labels: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_blocks: 2_000,
            max_jobs_per_block: 20_000,
            max_jobs_total: 50_000,
            max_args_per_job: 64,
            max_arg_key_bytes: 128,
            max_arg_value_bytes: 4_096,
            max_text_bytes: 1_024,
            max_labels: 64,
        }
    }
}

/// Every structural problem with `req`. Empty means well-formed.
pub fn validate_structure(req: &WorkReq, catalog: &dyn Catalog, limits: &Limits) -> Vec<Violation> {
    let mut out = Vec::new();
    let v = |m: String| Violation::new(Violation::STRUCTURE, m);
    if req.name.is_empty() {
        out.push(v(
            "the request has no name: set WorkReq.name to the workflow's name".into(),
        ));
    }
    for (field, text) in [
        ("name", &req.name),
        ("desc", &req.desc),
        ("trace_id", &req.trace_id),
    ] {
        if text.len() > limits.max_text_bytes {
            out.push(v(format!(
                "WorkReq.{field} is {} bytes; the limit is {}",
                text.len(),
                limits.max_text_bytes
            )));
        }
    }
    if req.labels.len() > limits.max_labels {
        out.push(v(format!(
            "{} labels; the limit is {}",
            req.labels.len(),
            limits.max_labels
        )));
    }
    if req.blocks.is_empty() {
        out.push(v(
            "the request has no blocks: add at least one block with one job".into(),
        ));
    }
    if req.blocks.len() > limits.max_blocks {
        out.push(v(format!(
            "{} blocks; the limit is {}",
            req.blocks.len(),
            limits.max_blocks
        )));
        return out; // do not walk an oversized request
    }
    let total = req.job_count();
    if total > limits.max_jobs_total {
        out.push(v(format!(
            "{total} jobs in all; the limit is {}",
            limits.max_jobs_total
        )));
        return out;
    }
    for (bi, block) in req.blocks.iter().enumerate() {
        let vb = |m: String| v(m).at_block(bi);
        if block.jobs.is_empty() {
            out.push(vb(
                "the block has no jobs: add at least one job or remove the block".into(),
            ));
        }
        if block.jobs.len() > limits.max_jobs_per_block {
            out.push(vb(format!(
                "{} jobs in the block; the limit is {}",
                block.jobs.len(),
                limits.max_jobs_per_block
            )));
            continue;
        }
        if block.max_failures < 0 {
            out.push(vb(format!(
                "max_failures is {}; it must be 0 or more",
                block.max_failures
            )));
        }
        for (ji, job) in block.jobs.iter().enumerate() {
            let vj = |m: String| v(m).at_job(bi, ji);
            if job.args.len() > limits.max_args_per_job {
                out.push(vj(format!(
                    "{} args; the limit is {}",
                    job.args.len(),
                    limits.max_args_per_job
                )));
                continue;
            }
            for (k, val) in &job.args {
                if k.len() > limits.max_arg_key_bytes || val.len() > limits.max_arg_value_bytes {
                    out.push(vj(format!(
                        "argument {:?} is too large (key {} bytes, value {} bytes; limits {} and {})",
                        truncate(k, 32),
                        k.len(),
                        val.len(),
                        limits.max_arg_key_bytes,
                        limits.max_arg_value_bytes
                    )));
                }
            }
            if let Some(r) = &job.retry
                && r.max_attempts > 1
                && r.initial_backoff > r.max_backoff
                && !r.max_backoff.is_zero()
            {
                out.push(vj(
                    "retry.initial_backoff is larger than retry.max_backoff".into()
                ));
            }
            match catalog.schema(&job.name) {
                None if job.name.is_empty() => out.push(vj(
                    "the job has no name: set Job.name to a registered job".into(),
                )),
                None => {
                    let known: Vec<_> = catalog.schemas().iter().map(|s| s.name).collect();
                    out.push(vj(format!(
                        "unknown job {:?}; registered jobs are {}",
                        truncate(&job.name, 64),
                        known.join(", ")
                    )))
                }
                Some(schema) => {
                    for problem in schema.check_args(&job.args) {
                        out.push(vj(problem));
                    }
                }
            }
        }
    }
    out
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ArgFormat, ArgSpec, Block, Idempotency, Job, JobSchema, StaticCatalog};

    fn cat() -> StaticCatalog {
        StaticCatalog(vec![JobSchema {
            name: "sleep",
            description: "sleeps",
            args: vec![ArgSpec::required("seconds", ArgFormat::Seconds, "how long")],
            idempotency: Idempotency::Safe,
            reconcilable: false,
        }])
    }

    fn job(name: &str, args: &[(&str, &str)]) -> Job {
        Job {
            name: name.into(),
            args: args
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn zero_blocks_is_a_violation_not_a_crash() {
        let req = WorkReq {
            name: "x".into(),
            ..Default::default()
        };
        let v = validate_structure(&req, &cat(), &Limits::default());
        assert_eq!(v.len(), 1);
        assert!(v[0].message.contains("no blocks"));
    }

    #[test]
    fn every_problem_is_reported_with_its_location() {
        let req = WorkReq {
            name: "x".into(),
            blocks: vec![
                Block {
                    jobs: vec![job("sleep", &[("seconds", "1")])],
                    ..Default::default()
                },
                Block {
                    jobs: vec![
                        job("nope", &[]),
                        job("sleep", &[("seconds", "-1"), ("extra", "1")]),
                        job("sleep", &[]),
                    ],
                    ..Default::default()
                },
                Block::default(),
            ],
            ..Default::default()
        };
        let v = validate_structure(&req, &cat(), &Limits::default());
        let locs: Vec<_> = v.iter().map(|v| (v.block, v.job)).collect();
        assert_eq!(
            locs,
            vec![
                (Some(1), Some(0)),
                (Some(1), Some(1)),
                (Some(1), Some(1)),
                (Some(1), Some(2)),
                (Some(2), None)
            ],
            "{v:#?}"
        );
        assert!(v[0].message.contains("unknown job \"nope\""));
        assert!(v[3].message.contains("needs argument \"seconds\""));
    }

    #[test]
    fn limits_are_enforced() {
        let limits = Limits {
            max_blocks: 1,
            ..Default::default()
        };
        let b = Block {
            jobs: vec![job("sleep", &[("seconds", "0")])],
            ..Default::default()
        };
        let req = WorkReq {
            name: "x".into(),
            blocks: vec![b.clone(), b],
            ..Default::default()
        };
        let v = validate_structure(&req, &cat(), &limits);
        assert!(v[0].message.contains("2 blocks; the limit is 1"));
    }
}
