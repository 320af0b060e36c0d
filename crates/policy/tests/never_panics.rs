//! Property: for arbitrary requests and arbitrary settings, building and
//! checking policies never panics, and a built policy set is deterministic.

use interlock_core::{
    ArgFormat, ArgSpec, Block, Idempotency, Job, JobSchema, StaticCatalog, WorkReq,
};
use interlock_policy::PolicySet;
use proptest::prelude::*;

fn cat() -> StaticCatalog {
    let s = |name, args: &[&'static str]| JobSchema {
        name,
        description: "",
        args: args
            .iter()
            .map(|a| ArgSpec::required(a, ArgFormat::Text, ""))
            .collect(),
        idempotency: Idempotency::Safe,
        reconcilable: false,
    };
    StaticCatalog(vec![s("a", &["k", "v"]), s("b", &["k"]), s("c", &[])])
}

const NAMES: &[&str] = &["a", "b", "c", "zz", ""];
const KEYS: &[&str] = &["k", "v", "K", ""];

fn job() -> impl Strategy<Value = Job> {
    (
        prop::sample::select(NAMES),
        prop::collection::btree_map(prop::sample::select(KEYS), "[xy]{0,2}", 0..3),
    )
        .prop_map(|(n, args)| Job {
            name: n.into(),
            args: args.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            ..Default::default()
        })
}

fn request() -> impl Strategy<Value = WorkReq> {
    prop::collection::vec(prop::collection::vec(job(), 0..4), 0..4).prop_map(|blocks| WorkReq {
        name: "w".into(),
        blocks: blocks
            .into_iter()
            .map(|jobs| Block {
                jobs,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    })
}

fn names() -> impl Strategy<Value = Vec<&'static str>> {
    prop::collection::vec(prop::sample::select(NAMES), 0..3)
}

fn settings() -> impl Strategy<Value = String> {
    let restrict = names().prop_map(|n| {
        format!(r#"{{"Name": "restrictJobTypes", "Settings": {{"AllowedJobs": {n:?}}}}}"#)
    });
    let same = (
        prop::sample::select(NAMES),
        prop::collection::vec(prop::sample::select(KEYS), 0..3),
    )
        .prop_map(|(j, k)| {
            format!(r#"{{"Name": "sameArgs", "Settings": {{"Jobs": {{"{j}": {k:?}}}}}}}"#)
        });
    let soe = (
        prop::sample::select(NAMES),
        any::<bool>(),
        any::<bool>(),
        names(),
        prop::sample::select(KEYS),
    )
        .prop_map(|(j, start, end, allowed, key)| {
            format!(
                r#"{{"Name": "startOrEnd", "Settings": {{"JobName": "{j}", "Start": {start}, "End": {end},
                   "AllowedBeforeOrAfter": {allowed:?}, "MustArgs": {{"{key}": "x"}}}}}}"#
            )
        });
    prop::collection::vec(prop_oneof![restrict, same, soe], 0..4)
        .prop_map(|ps| format!(r#"[{{"Name": "w", "Policies": [{}]}}]"#, ps.join(",")))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    #[test]
    fn building_and_checking_never_panics(text in settings(), req in request()) {
        if let Ok(set) = PolicySet::parse(&text, "policies.json", &cat()) {
            let a = set.check(&req);
            let b = set.check(&req);
            prop_assert_eq!(a, b);
        }
    }
}
