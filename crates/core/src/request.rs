//! A work request as the engine sees it: the protocol's WorkReq without the
//! wire details. Maps are ordered (`BTreeMap`, and [`Args`](crate::Args)
//! for a job's arguments) so a request has one canonical encoding, which
//! makes content hashes (idempotency keys) stable.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::time::Duration;

/// A named workflow: blocks run one after another.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkReq {
    pub name: String,
    pub desc: String,
    pub blocks: Vec<Block>,
    /// Client-chosen idempotency key; empty when the client sent none.
    #[serde(default)]
    pub request_id: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub trace_id: String,
    /// Overall deadline counted from Exec.
    #[serde(default)]
    pub deadline: Option<Duration>,
}

/// Jobs that run concurrently, at most `rate_limit` at a time.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    pub desc: String,
    /// As sent; use [`Block::concurrency`] for the effective value.
    pub rate_limit: i32,
    /// Failures tolerated before the block halts the workflow.
    #[serde(default)]
    pub max_failures: i32,
    pub jobs: Vec<Job>,
}

impl WorkReq {
    /// Frees the spare capacity of its lists. A request decoded from JSON
    /// grows them as it reads (room for four blocks, four jobs, when there
    /// is one), and a running workflow keeps its request for the whole run.
    pub fn shrink_to_fit(&mut self) {
        self.blocks.shrink_to_fit();
        for b in &mut self.blocks {
            b.jobs.shrink_to_fit();
        }
    }
}

impl Block {
    /// Jobs allowed in flight at once: `rate_limit`, and at least 1.
    pub fn concurrency(&self) -> usize {
        self.rate_limit.max(1) as usize
    }

    /// Failures tolerated: `max_failures`, and at least 0.
    pub fn tolerated_failures(&self) -> u32 {
        self.max_failures.max(0) as u32
    }
}

/// One unit of work, naming a registered job.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    pub name: String,
    pub desc: String,
    pub args: crate::Args,
    #[serde(default)]
    pub timeout: Option<Duration>,
    /// Boxed: few jobs retry, and every job of a running workflow is kept
    /// in memory: 8 bytes here instead of 40, a job 120 bytes, not 152.
    #[serde(default)]
    pub retry: Option<Box<RetryPolicy>>,
    /// Arguments whose values are outputs of jobs in earlier blocks,
    /// resolved when this job starts. (Omitted from the stored form when
    /// empty, so requests without inputs keep their content hash.)
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub inputs: BTreeMap<String, OutputRef>,
}

/// An output of a job in an earlier block: `blocks[block].jobs[job]`'s
/// output named `output`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputRef {
    pub block: usize,
    pub job: usize,
    pub output: String,
}

impl Job {
    /// How long one attempt may run: `timeout`, where zero means none.
    pub fn attempt_timeout(&self) -> Option<Duration> {
        self.timeout.filter(|t| !t.is_zero())
    }

    /// A job of type `name` with `args` and every other field default.
    pub fn with_args(name: &str, args: &[(&str, &str)]) -> Self {
        Job {
            name: name.into(),
            args: args
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        }
    }
}

/// How a job's retryable failures are retried.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Total attempts including the first; 0 or 1 means no retry.
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Job {
    /// This job with each input replaced by the output it names, taken
    /// from `blocks` (the workflow's records). An input that cannot be
    /// resolved is an error saying which, and why.
    pub fn resolved(&self, blocks: &[crate::BlockRecord]) -> Result<Job, String> {
        if self.inputs.is_empty() {
            return Ok(self.clone());
        }
        let mut out = self.clone();
        out.inputs.clear();
        for (arg, r) in &self.inputs {
            let Some(src) = blocks.get(r.block).and_then(|b| b.jobs.get(r.job)) else {
                return Err(format!(
                    "input {arg:?}: block {} has no job {}",
                    r.block, r.job
                ));
            };
            match src.outputs.get(&r.output) {
                Some(v) => {
                    out.args.insert(arg.clone(), v.clone());
                }
                None if src.status != crate::Status::Completed => {
                    return Err(format!(
                        "input {arg:?}: job {} of block {} ended {} without output {:?}",
                        r.job, r.block, src.status, r.output
                    ));
                }
                None => {
                    let has: Vec<&str> = src.outputs.keys().map(String::as_str).collect();
                    return Err(format!(
                        "input {arg:?}: job {} of block {} has no output {:?} (its outputs: {})",
                        r.job,
                        r.block,
                        r.output,
                        if has.is_empty() {
                            "none".into()
                        } else {
                            has.join(", ")
                        }
                    ));
                }
            }
        }
        Ok(out)
    }
}

impl WorkReq {
    /// SHA-256 of the request's content, excluding `request_id`: two submits
    /// with the same key must carry the same content.
    pub fn content_hash(&self) -> String {
        // The request's own JSON with an empty `request_id`, written
        // straight into the digest: no copy of the request, no buffer of
        // its text (a 50,000-job request is 8 MB and 2 MB of them). Stored
        // hashes are compared with new ones, so the bytes must stay those
        // of `WorkReq`'s own form: the fields, in order, as derived.
        #[derive(Serialize)]
        struct Canonical<'a> {
            name: &'a str,
            desc: &'a str,
            blocks: &'a [Block],
            request_id: &'a str,
            labels: &'a BTreeMap<String, String>,
            trace_id: &'a str,
            deadline: &'a Option<Duration>,
        }
        let canonical = Canonical {
            name: &self.name,
            desc: &self.desc,
            blocks: &self.blocks,
            request_id: "",
            labels: &self.labels,
            trace_id: &self.trace_id,
            deadline: &self.deadline,
        };
        let mut digest = Hashing(Sha256::new());
        serde_json::to_writer(&mut digest, &canonical).expect("plain data serializes");
        hex::encode(digest.0.finalize())
    }

    /// Number of jobs across all blocks.
    pub fn job_count(&self) -> usize {
        self.blocks.iter().map(|b| b.jobs.len()).sum()
    }
}

/// Bytes written into a SHA-256 digest.
struct Hashing(Sha256);

impl std::io::Write for Hashing {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        sha2::Digest::update(&mut self.0, buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BlockRecord, JobRecord, Status};

    /// Hashes stored by earlier versions are compared with new ones: the
    /// hash is that of the request's JSON with `request_id` cleared.
    #[test]
    fn the_content_hash_is_that_of_the_request_without_its_key() {
        let mut job = Job::with_args("sleep", &[("seconds", "1")]);
        job.timeout = Some(Duration::from_millis(1500));
        job.retry = Some(Box::new(RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(4),
        }));
        job.inputs.insert(
            "serial".into(),
            OutputRef {
                block: 0,
                job: 0,
                output: "serial".into(),
            },
        );
        let full = WorkReq {
            name: "erase \"rack\" 7\n".into(),
            desc: "é".into(),
            blocks: vec![
                Block {
                    desc: "first".into(),
                    rate_limit: 2,
                    max_failures: 1,
                    jobs: vec![Job::with_args("validateDecom", &[("site", "a")])],
                },
                Block {
                    jobs: vec![job],
                    ..Default::default()
                },
            ],
            request_id: "key-1".into(),
            labels: [("run".to_string(), "a".to_string())].into(),
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
            deadline: Some(Duration::from_secs(60)),
        };
        for req in [full, WorkReq::default()] {
            let mut keyless = req.clone();
            keyless.request_id.clear();
            let json = serde_json::to_vec(&keyless).unwrap();
            assert_eq!(req.content_hash(), hex::encode(Sha256::digest(&json)));
            assert_eq!(req.content_hash(), keyless.content_hash());
        }
    }

    /// A running workflow keeps every job in memory: a field added to
    /// `Job` costs 50,000 of it in a 50,000-job workflow (see BENCHMARKS.md,
    /// "A large workflow's memory, again").
    #[test]
    fn a_job_stays_small() {
        assert!(
            std::mem::size_of::<Job>() <= 120,
            "{} bytes",
            std::mem::size_of::<Job>()
        );
        let retried: Job = serde_json::from_str(
            r#"{"name":"n","desc":"","args":{},"retry":{"max_attempts":3,"initial_backoff":{"secs":1,"nanos":0},"max_backoff":{"secs":4,"nanos":0}}}"#,
        )
        .unwrap();
        assert_eq!(retried.retry.map(|r| r.max_attempts), Some(3));
    }

    #[test]
    fn inputs_resolve_from_earlier_outputs_or_say_why_not() {
        let mut job = Job::with_args("verifyErase", &[("machine", "m1")]);
        job.inputs.insert(
            "eraseRequest".into(),
            OutputRef {
                block: 0,
                job: 1,
                output: "eraseRequest".into(),
            },
        );
        let done = JobRecord {
            status: Status::Completed,
            outputs: [("eraseRequest".to_string(), "r-1".to_string())].into(),
            ..Default::default()
        };
        let mut block = BlockRecord::new(2);
        block.jobs[1] = done;
        let blocks = vec![block];
        let r = job.resolved(&blocks).unwrap();
        assert_eq!(r.args["eraseRequest"], "r-1");
        assert!(r.inputs.is_empty());

        let mut failed = blocks.clone();
        failed[0].jobs[1] = JobRecord {
            status: Status::Failed,
            ..Default::default()
        };
        let e = job.resolved(&failed).unwrap_err();
        assert!(
            e.contains("ended Failed without output \"eraseRequest\""),
            "{e}"
        );
        let mut other = blocks.clone();
        other[0].jobs[1].outputs = [("machine".to_string(), "m1".to_string())].into();
        let e = job.resolved(&other).unwrap_err();
        assert!(
            e.contains("has no output \"eraseRequest\" (its outputs: machine)"),
            "{e}"
        );
        // A request without inputs serializes as before (same content hash).
        let plain = Job::with_args("sleep", &[]);
        assert!(!serde_json::to_string(&plain).unwrap().contains("inputs"));
    }
}
