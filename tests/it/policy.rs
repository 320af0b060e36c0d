//! Policies over the real server: admission, Validate, hot reload with
//! last-known-good, and the re-check at Exec.

use interlock_proto::v1::{self, Status};
use interlock_tests::{TestServer, eventually, req, wait_final, write_config};
use tonic::Code;
use tonic_types::StatusExt;

fn sample(site: &str) -> v1::WorkReq {
    req::satellite_erase(site, &[&format!("{site}00"), &format!("{site}01")])
}

async fn policy_version(s: &TestServer) -> String {
    s.control()
        .await
        .policy_state(v1::PolicyStateReq {})
        .await
        .unwrap()
        .into_inner()
        .version
}

#[tokio::test]
async fn the_shipped_policy_admits_the_sample_and_refuses_bypasses() {
    let s = TestServer::start().await;
    let c = s.client().await;
    let id = c.submit(sample("aab")).await.unwrap();
    let st = c.status(&id).await.unwrap();
    assert_eq!(st.policy_version, policy_version(&s).await);

    // Erasing a machine of another site in the same workflow.
    let mut bad = sample("aab");
    bad.blocks[1].jobs[1]
        .args
        .insert("site".into(), "aae".into());
    bad.blocks[1].jobs[1]
        .args
        .insert("machine".into(), "aae01".into());
    // Dropping the pre-checks.
    let mut no_checks = sample("aab");
    no_checks.blocks.remove(0);
    // A non-fatal token take.
    let mut soft = sample("aab");
    soft.blocks[0].jobs[1]
        .args
        .insert("fatal".into(), "false".into());
    for (what, r, policy) in [
        ("other site", bad, "sameArgs"),
        ("no pre-checks", no_checks, "startOrEnd"),
        ("non-fatal bucket", soft, "startOrEnd"),
    ] {
        let e = s.raw().await.submit(r).await.unwrap_err();
        assert_eq!(e.code(), Code::FailedPrecondition, "{what}: {e:?}");
        assert!(e.message().contains(policy), "{what}: {}", e.message());
        let details = e.get_error_details();
        let pf = details
            .precondition_failure()
            .expect("PreconditionFailure details");
        assert!(
            pf.violations.iter().any(|v| v.r#type == policy),
            "{what}: {pf:?}"
        );
    }
}

#[tokio::test]
async fn a_name_without_an_entry_is_refused_with_a_clear_error() {
    let s = TestServer::start().await;
    let e = s
        .raw()
        .await
        .submit(req::work(
            "Unconfigured",
            vec![req::block(1, vec![req::probe(0)])],
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(
        e.message()
            .contains("no policy configured for workflow \"Unconfigured\""),
        "{}",
        e.message()
    );
}

#[tokio::test]
async fn validate_returns_every_violation_and_the_version_without_side_effects() {
    let s = TestServer::start().await;
    let c = s.client().await;
    let mut r = sample("aab");
    r.blocks[0].jobs.swap(0, 1); // tokenBucket before validateDecom
    r.blocks[1].jobs[0].args.insert("site".into(), "aae".into());
    let v = c.validate(r.clone()).await.unwrap();
    assert!(!v.ok);
    assert_eq!(v.policy_version, policy_version(&s).await);
    let policies: Vec<_> = v.violations.iter().map(|v| v.policy.as_str()).collect();
    assert!(
        policies.contains(&"startOrEnd") && policies.contains(&"sameArgs"),
        "{policies:?}"
    );
    // Submit agrees, and Validate stored nothing.
    let e = c.submit(r).await.unwrap_err();
    assert_eq!(e.code(), Some(Code::FailedPrecondition));
    assert!(c.validate(sample("aab")).await.unwrap().ok);
}

const TIGHT: &str = r#"[
  {"Name": "x", "Policies": [{"Name": "restrictJobTypes", "Settings": {"AllowedJobs": ["sleep"]}}]}
]"#;
const OPEN: &str = r#"[{"Name": "x", "Policies": []}]"#;

#[tokio::test]
async fn reload_applies_valid_changes_and_keeps_the_last_good_set() {
    let s = TestServer::start().await;
    let c = s.client().await;
    let path = s.config_path("policies.json");
    let probe_req = || req::work("x", vec![req::block(1, vec![req::probe(0)])]);
    assert!(c.validate(probe_req()).await.unwrap().ok);

    // A valid tightening applies.
    write_config(&path, TIGHT);
    eventually("tight policy in force", || async {
        !c.validate(probe_req()).await.unwrap().ok
    })
    .await;
    let tight_version = policy_version(&s).await;

    // Broken JSON keeps the tight set and reports the error.
    std::fs::write(&path, "[{\"Name\": ").unwrap();
    eventually("reload error reported", || async {
        let st = s
            .control()
            .await
            .policy_state(v1::PolicyStateReq {})
            .await
            .unwrap()
            .into_inner();
        !st.last_error.is_empty()
    })
    .await;
    let st = s
        .control()
        .await
        .policy_state(v1::PolicyStateReq {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(st.version, tight_version, "last good set kept");
    assert!(st.last_error.contains("policies.json"), "{}", st.last_error);
    assert!(!c.validate(probe_req()).await.unwrap().ok, "still tight");

    // Unknown settings fields are errors too, not ignored.
    std::fs::write(&path, r#"[{"Name": "x", "Policies": [{"Name": "restrictJobTypes", "Settings": {"Allowed": []}}]}]"#).unwrap();
    eventually("settings error reported", || async {
        let st = s
            .control()
            .await
            .policy_state(v1::PolicyStateReq {})
            .await
            .unwrap()
            .into_inner();
        st.last_error.contains("unknown field `Allowed`")
    })
    .await;

    // Fixing it (in place this time) applies.
    std::fs::write(&path, OPEN).unwrap();
    eventually("open policy in force", || async {
        c.validate(probe_req()).await.unwrap().ok
    })
    .await;
    let st = s
        .control()
        .await
        .policy_state(v1::PolicyStateReq {})
        .await
        .unwrap()
        .into_inner();
    assert!(st.last_error.is_empty());
    assert_ne!(st.version, tight_version);
}

#[tokio::test]
async fn a_symlink_swap_like_a_configmap_update_is_detected() {
    // Kubernetes mounts ConfigMaps as configs/policies.json -> ..data/policies.json,
    // ..data -> ..<timestamp>/, and updates by swapping the ..data link.
    let s = TestServer::start().await;
    let dir = &s.config.configs;
    let v1dir = dir.join("..2026_01");
    std::fs::create_dir(&v1dir).unwrap();
    std::fs::write(v1dir.join("policies.json"), OPEN).unwrap();
    std::os::unix::fs::symlink("..2026_01", dir.join("..data")).unwrap();
    let tmp = dir.join("policies.json.link");
    std::os::unix::fs::symlink("..data/policies.json", &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("policies.json")).unwrap();
    let c = s.client().await;
    let r = || req::work("x", vec![req::block(1, vec![req::probe(0)])]);
    eventually("linked open policy", || async {
        c.validate(r()).await.unwrap().ok
    })
    .await;

    let v2dir = dir.join("..2026_02");
    std::fs::create_dir(&v2dir).unwrap();
    std::fs::write(v2dir.join("policies.json"), TIGHT).unwrap();
    std::os::unix::fs::symlink("..2026_02", dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    eventually("swapped tight policy", || async {
        !c.validate(r()).await.unwrap().ok
    })
    .await;
}

#[tokio::test]
async fn exec_rechecks_against_the_policies_in_force_now() {
    let s = TestServer::start().await;
    let c = s.client().await;
    let id = c
        .submit(req::work("x", vec![req::block(1, vec![req::probe(0)])]))
        .await
        .unwrap();
    write_config(&s.config_path("policies.json"), TIGHT);
    let probe = || req::work("x", vec![req::block(1, vec![req::probe(0)])]);
    eventually("tight policy in force", || async {
        !c.validate(probe()).await.unwrap().ok
    })
    .await;
    let e = s
        .raw()
        .await
        .exec(v1::ExecReq { id: id.clone() })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(e.message().contains("restrictJobTypes"), "{}", e.message());
    assert!(s.probe.starts_of(&id).is_empty());
    assert_eq!(
        c.status(&id).await.unwrap().status,
        Status::NotStarted as i32
    );
    // Loosen again: it can run.
    write_config(&s.config_path("policies.json"), OPEN);
    eventually("open policy", || async {
        c.validate(probe()).await.unwrap().ok
    })
    .await;
    c.exec(&id).await.unwrap();
    assert_eq!(wait_final(&c, &id).await.status, Status::Completed as i32);
}

#[tokio::test]
async fn a_server_started_without_valid_policies_refuses_until_one_appears() {
    let s = TestServer::start_with(|c| {
        std::fs::write(c.configs.join("policies.json"), "not json").unwrap();
    })
    .await;
    let c = s.client().await;
    let r = || req::work("x", vec![req::block(1, vec![req::probe(0)])]);
    let e = c.submit(r()).await.unwrap_err();
    assert_eq!(e.code(), Some(Code::FailedPrecondition));
    assert!(
        e.to_string().contains("no valid policy file is loaded"),
        "{e}"
    );
    // Nothing was loaded before: no "last good" set stays in force.
    assert!(!e.to_string().contains("last good"), "{e}");
    write_config(&s.config_path("policies.json"), OPEN);
    eventually("policies loaded", || async {
        c.validate(r()).await.unwrap().ok
    })
    .await;
    c.submit(r()).await.unwrap();
}

/// Validate runs every check Submit runs: over a table of requests, its
/// verdict and Submit's agree, and Validate stores nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_and_submit_agree_on_every_kind_of_refusal() {
    let s = TestServer::start_with(|c| {
        interlock_tests::append_entry(
            &c.configs.join("policies.json"),
            serde_json::json!({"Name": "Halted", "Policies": []}),
        );
        interlock_tests::append_entry(
            &c.configs.join("es.json"),
            serde_json::json!({"Name": "Halted", "Status": "stop", "Reason": "drill"}),
        );
    })
    .await;
    let c = s.client().await;
    let probe = || req::block(1, vec![req::probe(0)]);
    let with = |f: &dyn Fn(&mut v1::WorkReq)| {
        let mut r = sample("aab");
        f(&mut r);
        r
    };
    let table: Vec<(&str, v1::WorkReq, Option<Code>)> = vec![
        ("a good erase", sample("aab"), None),
        ("a good test workflow", req::work("x", vec![probe()]), None),
        (
            "an unknown job",
            req::work("x", vec![req::block(1, vec![req::job("nope", &[])])]),
            Some(Code::InvalidArgument),
        ),
        (
            "a malformed argument",
            req::work(
                "x",
                vec![req::block(1, vec![req::job("sleep", &[("seconds", "-1")])])],
            ),
            Some(Code::InvalidArgument),
        ),
        (
            "a bucket that does not exist",
            with(&|r| {
                r.blocks[0].jobs[1]
                    .args
                    .insert("bucket".into(), "noSuchBucket".into());
            }),
            Some(Code::FailedPrecondition),
        ),
        (
            "a machine of another site",
            with(&|r| {
                r.blocks[1].jobs[0]
                    .args
                    .insert("machine".into(), "aae00".into());
            }),
            Some(Code::FailedPrecondition),
        ),
        (
            "a site not in the inventory",
            req::work(
                "x",
                vec![req::block(
                    1,
                    vec![req::job(
                        "validateDecom",
                        &[("site", "zzz"), ("type", "satellite")],
                    )],
                )],
            ),
            Some(Code::FailedPrecondition),
        ),
        (
            "a policy violation",
            with(&|r| r.blocks[0].jobs.swap(0, 1)),
            Some(Code::FailedPrecondition),
        ),
        (
            "a name without a policy entry",
            req::work("Unconfigured", vec![probe()]),
            Some(Code::FailedPrecondition),
        ),
        (
            "an emergency-stopped name",
            req::work("Halted", vec![probe()]),
            Some(Code::FailedPrecondition),
        ),
        (
            "an oversized label",
            with(&|r| {
                r.labels.insert("k".into(), "v".repeat(5000));
            }),
            Some(Code::InvalidArgument),
        ),
        (
            "a forged trace id",
            with(&|r| r.trace_id = "x\nINFO forged".into()),
            Some(Code::InvalidArgument),
        ),
    ];
    let listed = |c: interlock_client::Client| async move {
        c.raw()
            .list(v1::ListReq {
                page_size: 1000,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .workflows
            .len()
    };
    for (what, r, want) in table {
        let before = listed(c.clone()).await;
        let v = c.validate(r.clone()).await.unwrap();
        assert_eq!(
            listed(c.clone()).await,
            before,
            "{what}: Validate stored nothing"
        );
        let got = c
            .submit(r)
            .await
            .err()
            .map(|e| e.code().expect("a server refusal"));
        assert_eq!(got, want, "{what}: Submit's verdict");
        assert_eq!(
            v.ok,
            want.is_none(),
            "{what}: Validate agrees ({:?})",
            v.violations
        );
        if let Some(Code::FailedPrecondition) = want
            && what.contains("stopped")
        {
            assert!(
                v.violations
                    .iter()
                    .any(|x| x.policy == "emergencyStop" && x.message.contains("drill")),
                "{what}: {:?}",
                v.violations
            );
        }
    }
}
