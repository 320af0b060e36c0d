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
    /// Longest name, description, label key or value, or request id, in
    /// bytes.
    pub max_text_bytes: usize,
    pub max_labels: usize,
    /// Largest request in all (names, arguments, labels...), in bytes.
    pub max_request_bytes: usize,
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
            max_request_bytes: 8 << 20,
        }
    }
}

/// Most problems reported for one request: past this, a request is
/// broken wholesale and listing more would only cost memory.
pub const MAX_VIOLATIONS: usize = 1_000;

/// Every structural problem with `req` (at most [`MAX_VIOLATIONS`], then a
/// note that there are more). Empty means well-formed.
pub fn validate_structure(req: &WorkReq, catalog: &dyn Catalog, limits: &Limits) -> Vec<Violation> {
    let mut out = Vec::new();
    let v = |m: String| Violation::new(Violation::STRUCTURE, m);
    if req.name.is_empty() {
        out.push(v(
            "the request has no name: set WorkReq.name to the workflow's name".into(),
        ));
    }
    let size = request_bytes(req);
    if size > limits.max_request_bytes {
        out.push(v(format!(
            "the request is {size} bytes in all; the limit is {} (split the work into several workflows)",
            limits.max_request_bytes
        )));
        return out; // do not walk an oversized request
    }
    for (field, text) in [
        ("name", &req.name),
        ("desc", &req.desc),
        ("request_id", &req.request_id),
    ] {
        if text.len() > limits.max_text_bytes {
            out.push(v(format!(
                "WorkReq.{field} is {} bytes; the limit is {}",
                text.len(),
                limits.max_text_bytes
            )));
        }
    }
    if !req.trace_id.is_empty() && !is_w3c_trace_id(&req.trace_id) {
        out.push(v(format!(
            "WorkReq.trace_id {:?} is not a W3C trace id (32 lowercase hex digits, not all zero); \
             leave it empty to have one assigned",
            truncate(&req.trace_id, 40)
        )));
    }
    if req.labels.len() > limits.max_labels {
        out.push(v(format!(
            "{} labels; the limit is {}",
            req.labels.len(),
            limits.max_labels
        )));
    }
    for (k, val) in req.labels.iter().take(limits.max_labels) {
        if k.is_empty() {
            out.push(v("a label has an empty key".into()));
        }
        if k.len() > limits.max_text_bytes || val.len() > limits.max_text_bytes {
            out.push(v(format!(
                "label {:?} is too large (key {} bytes, value {} bytes; the limit is {} each)",
                truncate(k, 32),
                k.len(),
                val.len(),
                limits.max_text_bytes
            )));
        }
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
        if out.len() >= MAX_VIOLATIONS {
            out.push(v(format!(
                "more than {MAX_VIOLATIONS} problems; fix these and check again"
            )));
            return out;
        }
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
            if out.len() >= MAX_VIOLATIONS {
                out.push(v(format!(
                    "more than {MAX_VIOLATIONS} problems; fix these and check again"
                )));
                return out;
            }
            let vj = |m: String| v(m).at_job(bi, ji);
            if job.args.len() + job.inputs.len() > limits.max_args_per_job {
                out.push(vj(format!(
                    "{} args; the limit is {}",
                    job.args.len() + job.inputs.len(),
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
                    let mut known: Vec<_> = catalog.schemas().iter().map(|s| s.name).collect();
                    known.sort_unstable();
                    out.push(vj(format!(
                        "unknown job {:?}{}; registered jobs are {}",
                        truncate(&job.name, 64),
                        crate::suggestion(truncate(&job.name, 64), known.iter().copied()),
                        known.join(", ")
                    )))
                }
                Some(schema) => {
                    let pending = |k: &str| job.inputs.contains_key(k);
                    for problem in schema.check_args_pending(&job.args, pending) {
                        out.push(vj(problem));
                    }
                    for (k, r) in &job.inputs {
                        if !schema.args.iter().any(|a| a.name == k) {
                            let known: Vec<_> = schema.args.iter().map(|a| a.name).collect();
                            out.push(vj(format!(
                                "input {:?}: {} has no argument {:?} (it takes {})",
                                truncate(k, 32),
                                job.name,
                                truncate(k, 32),
                                known.join(", ")
                            )));
                        }
                        if job.args.contains_key(k) {
                            out.push(vj(format!(
                                "argument {:?} is given both as a value and as an input; keep one",
                                truncate(k, 32)
                            )));
                        }
                        if r.block >= bi {
                            out.push(vj(format!(
                                "input {:?} names block {}: an input must come from an earlier \
                                 block (this is block {bi})",
                                truncate(k, 32),
                                r.block
                            )));
                        } else if r.job >= req.blocks[r.block].jobs.len() {
                            out.push(vj(format!(
                                "input {:?} names job {} of block {}, which has {} jobs",
                                truncate(k, 32),
                                r.job,
                                r.block,
                                req.blocks[r.block].jobs.len()
                            )));
                        }
                        if r.output.is_empty() || r.output.len() > limits.max_arg_key_bytes {
                            out.push(vj(format!(
                                "input {:?} must name an output (1 to {} bytes)",
                                truncate(k, 32),
                                limits.max_arg_key_bytes
                            )));
                        }
                    }
                }
            }
        }
    }
    out
}

/// A W3C Trace Context trace id: 32 lowercase hex digits, not all zero.
pub fn is_w3c_trace_id(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && s.bytes().any(|b| b != b'0')
}

/// The bytes of every text in the request: what it costs to hold and store.
pub fn request_bytes(req: &WorkReq) -> usize {
    let labels: usize = req.labels.iter().map(|(k, v)| k.len() + v.len()).sum();
    let jobs: usize = req
        .blocks
        .iter()
        .flat_map(|b| &b.jobs)
        .map(|j| {
            j.name.len()
                + j.desc.len()
                + j.args.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>()
                + j.inputs
                    .iter()
                    .map(|(k, r)| k.len() + r.output.len() + 16)
                    .sum::<usize>()
        })
        .sum();
    let blocks: usize = req.blocks.iter().map(|b| b.desc.len()).sum();
    req.name.len()
        + req.desc.len()
        + req.request_id.len()
        + req.trace_id.len()
        + labels
        + jobs
        + blocks
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
        Job::with_args(name, args)
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
    fn labels_ids_and_size_are_bounded() {
        let ok = Block {
            jobs: vec![job("sleep", &[("seconds", "0")])],
            ..Default::default()
        };
        let mut req = WorkReq {
            name: "x".into(),
            blocks: vec![ok.clone()],
            ..Default::default()
        };
        assert!(validate_structure(&req, &cat(), &Limits::default()).is_empty());
        req.request_id = "r".repeat(1025);
        req.labels.insert("k".into(), "v".repeat(2000));
        req.trace_id = "trace\nINFO forged".into();
        let v = validate_structure(&req, &cat(), &Limits::default());
        let all: String = v.iter().map(|v| v.message.clone() + "\n").collect();
        assert!(all.contains("request_id is 1025 bytes"), "{all}");
        assert!(all.contains("label \"k\" is too large"), "{all}");
        assert!(all.contains("not a W3C trace id"), "{all}");
        req.trace_id = "4bf92f3577b34da6a3ce929d0e0e4736".into();
        req.request_id.clear();
        req.labels.clear();
        assert!(validate_structure(&req, &cat(), &Limits::default()).is_empty());
        let tiny = Limits {
            max_request_bytes: 10,
            ..Default::default()
        };
        let v = validate_structure(&req, &cat(), &tiny);
        assert!(v[0].message.contains("the limit is 10"), "{v:?}");
        assert!(!is_w3c_trace_id("00000000000000000000000000000000"));
        assert!(!is_w3c_trace_id("4BF92F3577B34DA6A3CE929D0E0E4736"));
    }

    #[test]
    fn a_broken_request_costs_bounded_work() {
        let bad = Block {
            jobs: vec![job("sleep", &[("nope", "1"), ("also", "2")]); 20_000],
            ..Default::default()
        };
        let req = WorkReq {
            name: "x".into(),
            blocks: vec![bad],
            ..Default::default()
        };
        let v = validate_structure(&req, &cat(), &Limits::default());
        assert!(v.len() <= MAX_VIOLATIONS + 3, "{}", v.len());
        assert!(
            v.last()
                .unwrap()
                .message
                .contains("more than 1000 problems")
        );
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
