//! Policy check of a request with 1,000 blocks × 10 jobs under all three
//! policies (target: < 1 ms). Run: `cargo bench -p interlock-policy`.
use criterion::{Criterion, criterion_group, criterion_main};
use interlock_core::{
    ArgFormat, ArgSpec, Block, Idempotency, Job, JobSchema, StaticCatalog, WorkReq,
};
use interlock_policy::{PolicySet, Verdict};
use std::hint::black_box;

fn schema(name: &'static str, args: &[&'static str]) -> JobSchema {
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

fn job(name: &str, args: &[(&str, &str)]) -> Job {
    Job::with_args(name, args)
}

fn bench(c: &mut Criterion) {
    let cat = StaticCatalog(vec![
        schema("diskErase", &["machine", "site"]),
        schema("sleep", &["seconds"]),
        schema("tokenBucket", &["bucket", "fatal"]),
        schema("validateDecom", &["site", "type"]),
        schema("verifyErase", &["machine", "site", "eraseRequest"]),
    ]);
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../configs/policies.json"
    ))
    .unwrap();
    let set = PolicySet::parse(&text, "policies.json", &cat).unwrap();
    let mut blocks = vec![Block {
        rate_limit: 1,
        jobs: vec![
            job("validateDecom", &[("site", "aab"), ("type", "satellite")]),
            job(
                "tokenBucket",
                &[("bucket", "diskEraseSatellite"), ("fatal", "true")],
            ),
        ],
        ..Default::default()
    }];
    for b in 1..1000 {
        blocks.push(Block {
            rate_limit: 10,
            jobs: (0..10)
                .map(|j| {
                    job(
                        "diskErase",
                        &[("machine", &format!("m{b}-{j}")), ("site", "aab")],
                    )
                })
                .collect(),
            ..Default::default()
        });
    }
    let req = WorkReq {
        name: "SatelliteDiskErase".into(),
        blocks,
        ..Default::default()
    };
    assert_eq!(req.job_count(), 9992);
    assert_eq!(set.check(&req), Verdict::Allowed);
    c.bench_function("policy check 1000 blocks x 10 jobs, 3 policy kinds", |b| {
        b.iter(|| set.check(black_box(&req)))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
