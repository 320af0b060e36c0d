//! Property: Validate and Submit agree on arbitrary requests — Validate says
//! ok exactly when Submit accepts, and otherwise Submit refuses with the
//! code matching the kind of violation.

use interlock_proto::v1;
use interlock_tests::TestServer;
use proptest::prelude::*;
use tonic::Code;

const NAMES: &[&str] = &["SatelliteDiskErase", "x", "nope"];
const JOBS: &[&str] = &[
    "validateDecom",
    "tokenBucket",
    "diskErase",
    "sleep",
    "probe",
    "bogus",
];

fn job() -> impl Strategy<Value = v1::Job> {
    let arg = prop_oneof![
        Just(("site", "aab")),
        Just(("site", "aae")),
        Just(("type", "satellite")),
        Just(("machine", "aab00")),
        Just(("bucket", "diskEraseSatellite")),
        Just(("fatal", "true")),
        Just(("fatal", "maybe")),
        Just(("seconds", "0")),
        Just(("ms", "0")),
    ];
    (prop::sample::select(JOBS), prop::collection::vec(arg, 0..4)).prop_map(|(n, args)| v1::Job {
        name: n.into(),
        args: args
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    })
}

fn request() -> impl Strategy<Value = v1::WorkReq> {
    (
        prop::sample::select(NAMES),
        prop::collection::vec((0i32..3, prop::collection::vec(job(), 0..3)), 0..3),
    )
        .prop_map(|(name, blocks)| v1::WorkReq {
            name: name.into(),
            blocks: blocks
                .into_iter()
                .map(|(rate_limit, jobs)| v1::Block {
                    rate_limit,
                    jobs,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
}

#[test]
fn validate_and_submit_agree() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let s = rt.block_on(TestServer::start());
    let c = rt.block_on(s.raw());
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(96));
    runner
        .run(&request(), |req| {
            let mut c = c.clone();
            let (verdict, submitted) = rt.block_on(async {
                let v = c.validate(req.clone()).await.unwrap().into_inner();
                (v, c.submit(req.clone()).await)
            });
            match submitted {
                Ok(_) => prop_assert!(
                    verdict.ok,
                    "Submit accepted what Validate refused: {verdict:?}"
                ),
                Err(e) => {
                    prop_assert!(!verdict.ok, "Validate ok but Submit said {e:?}");
                    let structural = verdict.violations.iter().any(|v| v.policy == "structure");
                    let want = if structural {
                        Code::InvalidArgument
                    } else {
                        Code::FailedPrecondition
                    };
                    prop_assert_eq!(e.code(), want, "{:?}", verdict);
                }
            }
            Ok(())
        })
        .unwrap();
}
