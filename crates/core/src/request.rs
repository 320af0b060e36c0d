//! A work request as the engine sees it: the protocol's WorkReq without the
//! wire details. Maps use `BTreeMap` so a request has one canonical encoding,
//! which makes content hashes (idempotency keys) stable.

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
    pub args: BTreeMap<String, String>,
    #[serde(default)]
    pub timeout: Option<Duration>,
    #[serde(default)]
    pub retry: Option<RetryPolicy>,
}

impl Job {
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

impl WorkReq {
    /// SHA-256 of the request's content, excluding `request_id`: two submits
    /// with the same key must carry the same content.
    pub fn content_hash(&self) -> String {
        let mut canonical = self.clone();
        canonical.request_id.clear();
        let bytes = serde_json::to_vec(&canonical).unwrap_or_default();
        hex::encode(Sha256::digest(&bytes))
    }

    /// Number of jobs across all blocks.
    pub fn job_count(&self) -> usize {
        self.blocks.iter().map(|b| b.jobs.len()).sum()
    }
}
