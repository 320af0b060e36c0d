//! Test helpers: a catalog with the built-in jobs' schemas and request builders.

use crate::{Check, KINDS};
use interlock_core::{
    ArgFormat, ArgSpec, Block, Idempotency, Job, JobSchema, StaticCatalog, Violation, WorkReq,
};

pub fn schema(name: &'static str, args: &[&'static str]) -> JobSchema {
    JobSchema {
        name,
        description: "",
        args: args
            .iter()
            .map(|a| ArgSpec::required(a, ArgFormat::Text, ""))
            .collect(),
        idempotency: Idempotency::Safe,
        reconcilable: false,
    }
}

pub fn catalog() -> StaticCatalog {
    StaticCatalog(vec![
        schema("diskErase", &["machine", "site"]),
        schema("sleep", &["seconds"]),
        schema("tokenBucket", &["bucket", "fatal"]),
        schema("validateDecom", &["site", "type"]),
        schema("verifyErase", &["machine", "site", "eraseRequest"]),
    ])
}

pub fn try_build(kind: &str, settings: &str) -> Result<Box<dyn Check>, String> {
    let k = KINDS.iter().find(|k| k.name() == kind).expect("kind");
    k.build(serde_json::from_str(settings).unwrap(), &catalog())
}

pub fn build(kind: &str, settings: &str) -> Box<dyn Check> {
    try_build(kind, settings).unwrap()
}

fn job(name: &str, args: &[(&str, &str)]) -> Job {
    Job::with_args(name, args)
}

pub fn sleep() -> Job {
    job("sleep", &[("seconds", "0")])
}
pub fn erase(machine: &str, site: &str) -> Job {
    job("diskErase", &[("machine", machine), ("site", site)])
}
pub fn validate(site: &str) -> Job {
    job("validateDecom", &[("site", site), ("type", "satellite")])
}
pub fn bucket() -> Job {
    job(
        "tokenBucket",
        &[("bucket", "diskEraseSatellite"), ("fatal", "true")],
    )
}

pub fn request(blocks: &[&[Job]]) -> WorkReq {
    WorkReq {
        name: "w".into(),
        blocks: blocks
            .iter()
            .map(|jobs| Block {
                rate_limit: 1,
                jobs: jobs.to_vec(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

// Tests hold the Box that a Kind builds; a blanket `impl Check for P: Policy`
// rules out coercing it to `&dyn Check` at the call sites.
#[allow(clippy::borrowed_box)]
pub fn check(p: &Box<dyn Check>, blocks: &[&[Job]]) -> Vec<Violation> {
    let mut out = Vec::new();
    p.check(&request(blocks), &crate::Ctx { now: 0 }, &mut out);
    out
}

/// Locations of the violations, in order.
#[allow(clippy::borrowed_box)]
pub fn violations(p: &Box<dyn Check>, blocks: &[&[Job]]) -> Vec<(Option<usize>, Option<usize>)> {
    check(p, blocks).iter().map(|v| (v.block, v.job)).collect()
}
