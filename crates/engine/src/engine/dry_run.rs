//! A dry run that tells the whole truth: Validate's every Submit check,
//! plus what Submit and Exec would meet now besides: the emergency stop of
//! the name, each bucket's level against the takes the request needs, the
//! approvals and limits that apply, and the sites and machines it touches.
//! Nothing is stored or taken.

use super::Engine;
use crate::Verdict;
use crate::estop::Halt;
use interlock_core::{ApprovalRule, WorkReq};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// One bucket (and key) the request takes from, against its level now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketNeed {
    pub bucket: String,
    pub key: String,
    /// Takes the request would make.
    pub needed: u32,
    /// Tokens available now (`None`: no such bucket is configured).
    pub available: Option<u32>,
    pub capacity: u32,
    /// When the next token comes, if the bucket is not full.
    pub next_token_in: Option<Duration>,
}

/// Everything a dry run finds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DryRun {
    /// Every violation Submit would answer with.
    pub verdict: Verdict,
    /// The emergency stop of the name (drain or stop), if any.
    pub halt: Option<Halt>,
    /// The approval rules Exec would need met.
    pub approvals: Vec<ApprovalRule>,
    pub buckets: Vec<BucketNeed>,
    /// Blast-radius limits some job of the request falls under.
    pub limits: Vec<String>,
    /// Values of the `site` and `machine` arguments across the request.
    pub sites: Vec<String>,
    pub machines: Vec<String>,
}

impl Engine {
    /// Runs every check of Submit on `req` and reports what it would meet.
    pub async fn dry_run(&self, req: &WorkReq) -> DryRun {
        self.dry_run_as(req, false).await
    }

    /// [`Engine::dry_run`]; `trusted` for a request the server built.
    pub(super) async fn dry_run_as(&self, req: &WorkReq, trusted: bool) -> DryRun {
        let inner = &self.inner;
        let jobs = || req.blocks.iter().flat_map(|b| &b.jobs);
        let mut takes: BTreeMap<(String, String), u32> = BTreeMap::new();
        for j in jobs() {
            if let Some(k) = inner.runner.bucket_take(j) {
                *takes.entry(k).or_default() += 1;
            }
        }
        let levels = match &inner.opts.buckets {
            Some(b) if !takes.is_empty() => b.levels().await.unwrap_or_default(),
            _ => Vec::new(),
        };
        let buckets = takes
            .into_iter()
            .map(|((bucket, key), needed)| {
                let of_bucket: Vec<_> = levels.iter().filter(|l| l.def.name == bucket).collect();
                let level = of_bucket.iter().find(|l| l.key == key);
                BucketNeed {
                    needed,
                    capacity: of_bucket.first().map_or(0, |l| l.def.capacity),
                    // A key never taken from is full.
                    available: match level {
                        Some(l) => Some(l.available),
                        None => of_bucket.first().map(|l| l.def.capacity),
                    },
                    next_token_in: level.and_then(|l| l.next_token_in),
                    bucket,
                    key,
                }
            })
            .collect();
        let defs = inner.opts.concurrency.defs();
        let limits = defs
            .iter()
            .filter(|d| jobs().any(|j| d.applies_to(&j.name)))
            .map(|d| d.name.clone())
            .collect();
        let values = |arg: &str| -> Vec<String> {
            jobs()
                .filter_map(|j| j.args.get(arg).cloned())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect()
        };
        DryRun {
            verdict: self.verdict(req, trusted),
            halt: inner.estop.borrow().halted(&req.name),
            approvals: inner.admission.approvals(req),
            buckets,
            limits,
            sites: values("site"),
            machines: values("machine"),
        }
    }
}
