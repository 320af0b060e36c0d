//! Templates end to end over gRPC: revisions, instantiation through the one
//! Submit path (policies, e-stop, idempotency), parameter errors, fan-out
//! over the inventory, values treated as data, disabling, dry runs, the
//! provenance labels, and who may do what.
//!
//! Why one file over 600 lines: one feature's black-box tests, each test
//! independent and named for what it checks; they share the fixtures at
//! the top.

use interlock_client::Transport;
use interlock_proto::v1;
use interlock_tests::{TestServer, bearer, enable_auth, repo, wait_final, write_config};
use std::collections::BTreeMap;
use tonic::Code;

type Tpl = v1::templates_client::TemplatesClient<Transport>;

/// A template of workflow "x" (no policies) over probes, one per item.
const PROBES: &str = r#"
name: probes
desc: one probe per item
params:
  items: {type: list, items: {type: string, pattern: '[a-z0-9]+'}}
  ms: {type: int, min: 0, max: 1000, default: 5}
  note: {type: string, default: none}
workflow:
  name: x
  desc: "probes: {{note}}"
  blocks:
    - rateLimit: 2
      forEach: {items: "{{items}}", as: it}
      jobs:
        - name: probe
          desc: "{{it}}: {{note}}"
          args: {ms: "{{ms}}"}
"#;

fn shipped(name: &str) -> String {
    std::fs::read_to_string(repo().join("configs/templates").join(name)).unwrap()
}

async fn templates(s: &TestServer) -> Tpl {
    s.client().await.templates()
}

async fn apply(t: &mut Tpl, text: &str) -> v1::ApplyTemplateResp {
    t.apply_template(v1::ApplyTemplateReq { text: text.into() })
        .await
        .expect("template applies")
        .into_inner()
}

fn call(template: &str, params: &[(&str, &str)]) -> v1::InstantiateReq {
    v1::InstantiateReq {
        template: template.into(),
        params: params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    }
}

#[tokio::test]
async fn revisions_are_numbered_kept_and_pinned_by_workflows() {
    let s = TestServer::start().await;
    let mut t = templates(&s).await;
    let first = apply(&mut t, PROBES).await;
    assert_eq!(
        (first.name.as_str(), first.revision, first.created),
        ("probes", 1, true)
    );
    // The same content again (reformatted) adds nothing.
    let again = apply(&mut t, &format!("# a comment\n{PROBES}")).await;
    assert_eq!((again.revision, again.created), (1, false));

    let c = s.client().await;
    let one = c
        .instantiate(call("probes", &[("items", "a,b")]))
        .await
        .unwrap();
    assert_eq!(one.revision, 1);

    let second = apply(&mut t, &PROBES.replace("default: 5", "default: 7")).await;
    assert_eq!((second.revision, second.created), (2, true));
    let two = c
        .instantiate(call("probes", &[("items", "a")]))
        .await
        .unwrap();
    assert_eq!(two.revision, 2);
    assert_eq!(two.values["ms"], "7");
    // Revision 1 stays readable, and can still be instantiated by number.
    let old = t
        .get_template(v1::GetTemplateReq {
            name: "probes".into(),
            revision: 1,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((old.revision, old.latest), (1, 2));
    assert!(old.text.contains("default: '5'"), "{}", old.text);
    let pinned = c
        .instantiate(v1::InstantiateReq {
            revision: 1,
            ..call("probes", &[("items", "a")])
        })
        .await
        .unwrap();
    assert_eq!((pinned.revision, pinned.values["ms"].as_str()), (1, "5"));
    let missing = t
        .get_template(v1::GetTemplateReq {
            name: "probes".into(),
            revision: 9,
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    assert!(
        missing.message().contains("revisions are 1 to 2"),
        "{}",
        missing.message()
    );

    let revs = t
        .template_revisions(v1::TemplateRevisionsReq {
            name: "probes".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let numbers: Vec<u32> = revs.templates.iter().map(|r| r.revision).collect();
    assert_eq!(numbers, [1, 2]);
    assert_ne!(
        revs.templates[0].content_hash,
        revs.templates[1].content_hash
    );

    // Each workflow says which revision it came from: Status, List, audit.
    let st = c.status(&one.id).await.unwrap();
    assert_eq!(st.labels["interlock.template"], "probes");
    assert_eq!(st.labels["interlock.templateRevision"], "1");
    let listed = s
        .raw()
        .await
        .list(v1::ListReq {
            labels: [("interlock.templateRevision".to_string(), "1".to_string())].into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut ids: Vec<&str> = listed.workflows.iter().map(|w| w.id.as_str()).collect();
    ids.sort();
    let mut want = vec![one.id.as_str(), pinned.id.as_str()];
    want.sort();
    assert_eq!(ids, want);
    let audit = s.audit_log().await;
    let entry = audit
        .iter()
        .find(|e| e.action == "instantiate" && e.target == one.id)
        .expect("instantiation audited");
    assert_eq!(entry.detail, "template probes revision 1");
    assert!(
        audit.iter().any(|e| e.action == "template.apply"
            && e.target == "probes"
            && e.detail == "revision 2")
    );
}

#[tokio::test]
async fn an_instance_runs_like_any_workflow_with_its_fan_out() {
    let s = TestServer::start().await;
    let mut t = templates(&s).await;
    apply(&mut t, PROBES).await;
    let c = s.client().await;
    let r = c
        .instantiate(call("probes", &[("items", "a,b,c"), ("note", "n1")]))
        .await
        .unwrap();
    assert_eq!(r.fanouts.len(), 1);
    assert_eq!((r.fanouts[0].items, r.fanouts[0].blocks), (3, 1));
    assert_eq!(r.fanouts[0].source, "items of parameter items");
    let req = r.request.as_ref().unwrap();
    assert_eq!(req.desc, "probes: n1");
    c.exec(&r.id).await.unwrap();
    let st = wait_final(&c, &r.id).await;
    assert_eq!(st.status, v1::Status::Completed as i32, "{st:?}");
    let items: Vec<&str> = st.blocks[0].jobs.iter().map(|j| j.desc.as_str()).collect();
    assert_eq!(items, ["a: n1", "b: n1", "c: n1"]);
    assert_eq!(s.probe.starts_of(&r.id).len(), 3);

    // A retried call with the same request id is the same workflow.
    let keyed = v1::InstantiateReq {
        request_id: "k-1".into(),
        ..call("probes", &[("items", "a")])
    };
    let a = c.instantiate(keyed.clone()).await.unwrap();
    let b = c.instantiate(keyed.clone()).await.unwrap();
    assert_eq!(a.id, b.id);
    // ... and the same key with other values is refused, as for Submit.
    let other = c
        .instantiate(v1::InstantiateReq {
            params: [("items".into(), "z".into())].into(),
            ..keyed
        })
        .await
        .unwrap_err();
    assert_eq!(other.code(), Some(Code::AlreadyExists), "{other}");
}

#[tokio::test]
async fn bad_values_name_the_parameter_and_the_rule() {
    let s = TestServer::start().await;
    let mut t = templates(&s).await;
    apply(&mut t, PROBES).await;
    apply(&mut t, &shipped("erase-satellite.yaml")).await;
    let c = s.client().await;
    let e = c
        .instantiate(call(
            "probes",
            &[("items", "a,B!"), ("ms", "5000"), ("itemz", "q")],
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(Code::InvalidArgument));
    let msg = e.to_string();
    for want in [
        "parameter \"items[1]\": \"B!\" does not match the pattern \"[a-z0-9]+\"",
        "parameter \"ms\": 5000 is above the maximum 1000",
        "parameter \"itemz\" is not a parameter of template \"probes\" (did you mean \"items\"?)",
    ] {
        assert!(msg.contains(want), "missing {want:?} in {msg}");
    }
    let e = c
        .instantiate(call(
            "erase-satellite",
            &[("site", "zzz"), ("ticket", "CHG-1")],
        ))
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("parameter \"site\": \"zzz\" is not a site in the inventory"),
        "{e}"
    );
    let e = c
        .instantiate(call("erase-satellite", &[("site", "aab")]))
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("parameter \"ticket\" is required"),
        "{e}"
    );
    let e = c
        .instantiate(call("erase-satelite", &[]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(Code::NotFound));
    assert!(
        e.to_string().contains("did you mean \"erase-satellite\""),
        "{e}"
    );

    // A template that does not parse is refused with every problem.
    let e = t
        .apply_template(v1::ApplyTemplateReq {
            text: "name: bad\nworkflow: {name: \"{{nope}}\", blocks: [{jobs: [{name: probe, argz: {}}]}]}".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("argz"), "{}", e.message());
    let e = t
        .apply_template(v1::ApplyTemplateReq {
            text: "name: bad\nworkflow: {name: \"{{nope}}\", blocks: [{jobs: [{name: probe}]}]}"
                .into(),
        })
        .await
        .unwrap_err();
    assert!(
        e.message()
            .contains("workflow.name: unknown parameter \"nope\""),
        "{}",
        e.message()
    );
}

#[tokio::test]
async fn values_are_data_never_template_text() {
    let s = TestServer::start().await;
    let mut t = templates(&s).await;
    apply(&mut t, PROBES).await;
    let c = s.client().await;
    for note in [
        "{{ms}}",
        "{\"ms\": \"999999\", \"fail\": \"true\"}",
        "}}{{items}}",
        "x\", \"fail\": \"true",
    ] {
        let r = c
            .instantiate(call("probes", &[("items", "a"), ("note", note)]))
            .await
            .unwrap();
        let req = r.request.as_ref().unwrap();
        let job = &req.blocks[0].jobs[0];
        assert_eq!(job.desc, format!("a: {note}"));
        assert_eq!(req.desc, format!("probes: {note}"));
        assert_eq!(
            job.args,
            BTreeMap::from([("ms".to_string(), "5".to_string())])
        );
        let st = c.status(&r.id).await.unwrap();
        assert_eq!(st.desc, format!("probes: {note}"));
    }
}

#[tokio::test]
async fn an_instance_meets_the_policies_and_the_estop_a_hand_written_request_meets() {
    let s = TestServer::start().await;
    let mut t = templates(&s).await;
    // SatelliteDiskErase demands validateDecom first; this one erases
    // straight away.
    let reckless = r#"
name: reckless
params: {site: {type: site}}
workflow:
  name: SatelliteDiskErase
  blocks:
    - forEach: {machinesOf: "{{site}}"}
      jobs: [{name: diskErase, args: {site: "{{site}}", machine: "{{machine}}"}}]
"#;
    apply(&mut t, reckless).await;
    let c = s.client().await;
    let dry = c
        .instantiate(v1::InstantiateReq {
            dry_run: true,
            ..call("reckless", &[("site", "aab")])
        })
        .await
        .unwrap();
    let by_template = c
        .instantiate(call("reckless", &[("site", "aab")]))
        .await
        .unwrap_err();
    let mut hand_written = dry.request.clone().unwrap();
    hand_written.labels.clear();
    let by_hand = c.submit(hand_written).await.unwrap_err();
    assert_eq!(by_template.code(), by_hand.code());
    assert_eq!(by_template.code(), Some(Code::FailedPrecondition));
    assert_eq!(by_template.to_string(), by_hand.to_string());
    let v = dry.validation.unwrap();
    assert!(!v.ok);
    assert!(
        v.violations.iter().any(|v| v.policy == "startOrEnd"),
        "{v:?}"
    );

    // The shipped template passes them, and stops when the e-stop says so.
    apply(&mut t, &shipped("erase-satellite.yaml")).await;
    let ok = c
        .instantiate(v1::InstantiateReq {
            dry_run: true,
            ..call("erase-satellite", &[("site", "aab"), ("ticket", "CHG-7")])
        })
        .await
        .unwrap();
    assert!(ok.validation.as_ref().unwrap().ok, "{:?}", ok.validation);
    assert_eq!(ok.request.as_ref().unwrap().blocks[1].jobs.len(), 8);
    write_config(
        &s.config_path("es.json"),
        r#"[{"Name": "SatelliteDiskErase", "Status": "stop", "Reason": "freeze"}]"#,
    );
    interlock_tests::eventually("the stop is in force", || async {
        let e = c
            .instantiate(call(
                "erase-satellite",
                &[("site", "aab"), ("ticket", "CHG-7")],
            ))
            .await;
        matches!(e, Err(e) if e.to_string().contains("emergency-stopped"))
    })
    .await;
}

#[tokio::test]
async fn dry_runs_store_nothing_and_disabled_templates_refuse() {
    let s = TestServer::start().await;
    let mut t = templates(&s).await;
    apply(&mut t, PROBES).await;
    let c = s.client().await;
    let dry = c
        .instantiate(v1::InstantiateReq {
            dry_run: true,
            ..call("probes", &[("items", "a,b")])
        })
        .await
        .unwrap();
    assert!(dry.id.is_empty());
    assert_eq!(dry.request.as_ref().unwrap().blocks[0].jobs.len(), 2);
    assert!(dry.validation.as_ref().unwrap().ok);
    let listed = s
        .raw()
        .await
        .list(v1::ListReq::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.workflows.is_empty(), "a dry run stored {listed:?}");

    let off = t
        .set_template_disabled(v1::SetTemplateDisabledReq {
            name: "probes".into(),
            disabled: true,
            reason: "being rewritten".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(off.disabled);
    let e = c
        .instantiate(call("probes", &[("items", "a")]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(Code::FailedPrecondition));
    assert!(e.to_string().contains("being rewritten"), "{e}");
    // A new revision does not enable it.
    let newer = apply(&mut t, &PROBES.replace("default: 5", "default: 6")).await;
    assert!(newer.disabled);
    t.set_template_disabled(v1::SetTemplateDisabledReq {
        name: "probes".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    c.instantiate(call("probes", &[("items", "a")]))
        .await
        .unwrap();
    let e = t
        .set_template_disabled(v1::SetTemplateDisabledReq {
            name: "probes".into(),
            disabled: true,
            reason: " ".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn only_the_server_sets_provenance_labels() {
    let s = TestServer::start().await;
    let c = s.client().await;
    let mut forged = interlock_tests::req::work(
        "x",
        vec![interlock_tests::req::block(
            1,
            vec![interlock_tests::req::probe(1)],
        )],
    );
    forged
        .labels
        .insert("interlock.template".into(), "erase-satellite".into());
    let e = c.submit(forged).await.unwrap_err();
    assert_eq!(e.code(), Some(Code::InvalidArgument));
    assert!(e.to_string().contains("set by the server"), "{e}");

    let mut t = templates(&s).await;
    apply(&mut t, PROBES).await;
    let e = c
        .instantiate(v1::InstantiateReq {
            labels: [("interlock.templateRevision".to_string(), "99".to_string())].into(),
            ..call("probes", &[("items", "a")])
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(Code::InvalidArgument));
    // A clone keeps its original's provenance but takes no forged label.
    let r = c
        .instantiate(call("probes", &[("items", "a")]))
        .await
        .unwrap();
    let mut raw = s.raw().await;
    let copy = v1::workflow_client::WorkflowClient::clone(
        &mut raw,
        v1::CloneReq {
            id: r.id.clone(),
            ..Default::default()
        },
    )
    .await
    .unwrap()
    .into_inner();
    assert_eq!(
        c.status(&copy.id).await.unwrap().labels["interlock.template"],
        "probes"
    );
    let e = v1::workflow_client::WorkflowClient::clone(
        &mut raw,
        v1::CloneReq {
            id: r.id,
            labels: [("interlock.template".to_string(), "other".to_string())].into(),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
}

const RBAC: &str = r#"{
  "roles": {
    "author": [{"actions": ["template"], "workflows": ["probe*"]}],
    "operator": [{"actions": ["read", "submit", "exec"], "workflows": ["x"]}],
    "viewer": [{"actions": ["read"], "workflows": ["*"]}]
  },
  "bindings": [
    {"identity": "token:author", "roles": ["author"]},
    {"identity": "token:operator", "roles": ["operator"]},
    {"identity": "token:viewer", "roles": ["viewer"]}
  ]
}"#;

#[tokio::test]
async fn managing_needs_the_template_grant_and_running_needs_submit_on_the_result() {
    let tokens = [
        ("author", "author-token-123456"),
        ("operator", "operator-token-123456"),
        ("viewer", "viewer-token-123456"),
    ];
    let s = TestServer::start_with(|c| enable_auth(c, &tokens, RBAC)).await;
    let channel = s.transport_with(Default::default()).await.unwrap();
    let mut t = v1::templates_client::TemplatesClient::new(channel);
    let text = |name: &str| PROBES.replace("name: probes", &format!("name: {name}"));

    // Only an author, and only for names its grant covers.
    let e = t
        .apply_template(bearer(
            "operator-token-123456",
            v1::ApplyTemplateReq {
                text: text("probes"),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = t
        .apply_template(bearer(
            "author-token-123456",
            v1::ApplyTemplateReq {
                text: text("other"),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    t.apply_template(bearer(
        "author-token-123456",
        v1::ApplyTemplateReq {
            text: text("probes"),
        },
    ))
    .await
    .unwrap();
    // An erase template outside the author's names is refused too.
    let e = t
        .apply_template(bearer(
            "author-token-123456",
            v1::ApplyTemplateReq {
                text: shipped("erase-satellite.yaml"),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);

    // The author may not run what it wrote: running needs submit on "x".
    let run = || call("probes", &[("items", "a")]);
    let e = t
        .instantiate(bearer("author-token-123456", run()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = t
        .instantiate(bearer("viewer-token-123456", run()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    // A viewer may dry-run it (as Validate), an operator may run it.
    t.instantiate(bearer(
        "viewer-token-123456",
        v1::InstantiateReq {
            dry_run: true,
            ..run()
        },
    ))
    .await
    .unwrap();
    let r = t
        .instantiate(bearer("operator-token-123456", run()))
        .await
        .unwrap()
        .into_inner();
    assert!(!r.id.is_empty());
    // The operator may not disable it.
    let e = t
        .set_template_disabled(bearer(
            "operator-token-123456",
            v1::SetTemplateDisabledReq {
                name: "probes".into(),
                disabled: true,
                reason: "no".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    // Listing shows what the caller may read: the viewer reads everything.
    let all = t
        .list_templates(bearer("viewer-token-123456", v1::ListTemplatesReq {}))
        .await
        .unwrap()
        .into_inner();
    let names: Vec<&str> = all.templates.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["erase-cluster", "erase-satellite", "probes"]);
    let params: BTreeMap<&str, &str> = all.templates[2]
        .params
        .iter()
        .map(|p| (p.name.as_str(), p.r#type.as_str()))
        .collect();
    assert_eq!(
        params,
        BTreeMap::from([("items", "list"), ("ms", "int"), ("note", "string")])
    );
}

#[tokio::test]
async fn template_files_are_stored_at_start_and_when_they_change() {
    let s = TestServer::start().await;
    let mut t = templates(&s).await;
    // The shipped files were stored before the first call was served.
    let all = t
        .list_templates(v1::ListTemplatesReq {})
        .await
        .unwrap()
        .into_inner();
    let loaded: Vec<(&str, &str)> = all
        .templates
        .iter()
        .map(|t| (t.name.as_str(), t.created_by.as_str()))
        .collect();
    assert_eq!(
        loaded,
        [
            ("erase-cluster", "file:templates/erase-cluster.yaml"),
            ("erase-satellite", "file:templates/erase-satellite.yaml")
        ]
    );

    let dir = s.config.configs.join("templates");
    let latest = |t: Tpl| async move {
        let mut t = t;
        t.get_template(v1::GetTemplateReq {
            name: "probes".into(),
            revision: 0,
        })
        .await
        .map(|r| r.into_inner())
    };
    write_config(&dir.join("probes.yaml"), PROBES);
    interlock_tests::eventually("the new file is stored", || {
        let t = t.clone();
        async move { latest(t).await.is_ok_and(|r| r.revision == 1) }
    })
    .await;
    write_config(
        &dir.join("probes.yaml"),
        &PROBES.replace("default: 5", "default: 9"),
    );
    interlock_tests::eventually("the change is the next revision", || {
        let t = t.clone();
        async move { latest(t).await.is_ok_and(|r| r.revision == 2) }
    })
    .await;

    // A broken file changes nothing and is reported.
    write_config(
        &dir.join("probes.yaml"),
        "name: probes\nworkflow: {name: x, blocks: []}",
    );
    interlock_tests::eventually("the broken file is reported", || async {
        s.audit_log().await.iter().any(|e| {
            e.action == "config.reload"
                && e.target == "templates/probes.yaml"
                && e.outcome == "invalid"
                && e.detail.contains("a template needs at least one block")
        })
    })
    .await;
    assert_eq!(latest(t.clone()).await.unwrap().revision, 2);

    // Two files for one name: neither applies, and both are named.
    write_config(
        &dir.join("probes.yaml"),
        &PROBES.replace("default: 5", "default: 11"),
    );
    write_config(
        &dir.join("probes-copy.yaml"),
        &PROBES.replace("default: 5", "default: 12"),
    );
    interlock_tests::eventually("the conflict is reported", || async {
        s.audit_log().await.iter().any(|e| {
            e.outcome == "invalid"
                && e.detail.contains(
                    "template \"probes\" is defined by templates/probes-copy.yaml and templates/probes.yaml",
                )
        })
    })
    .await;
    assert_eq!(latest(t.clone()).await.unwrap().revision, 2);
    std::fs::remove_file(dir.join("probes-copy.yaml")).unwrap();
    interlock_tests::eventually("the remaining file applies", || {
        let t = t.clone();
        async move {
            latest(t)
                .await
                .is_ok_and(|r| r.revision == 3 && r.text.contains("'11'"))
        }
    })
    .await;
    // A removed file removes no revision.
    std::fs::remove_file(dir.join("probes.yaml")).unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let revs = t
        .template_revisions(v1::TemplateRevisionsReq {
            name: "probes".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(revs.templates.len(), 3);
}

#[tokio::test]
async fn later_jobs_take_earlier_outputs_when_their_block_starts() {
    let s = TestServer::start().await;
    let c = s.client().await;
    // The shipped erase: each verify takes its own machine's erase request.
    let r = c
        .instantiate(call(
            "erase-satellite",
            &[("site", "aab"), ("ticket", "CHG-3")],
        ))
        .await
        .unwrap();
    let req = r.request.as_ref().unwrap();
    assert_eq!(req.blocks.len(), 3);
    let input = &req.blocks[2].jobs[3].inputs["eraseRequest"];
    assert_eq!(
        (input.block, input.job, input.output.as_str()),
        (1, 3, "eraseRequest")
    );
    c.exec(&r.id).await.unwrap();
    let st = wait_final(&c, &r.id).await;
    assert_eq!(st.status, v1::Status::Completed as i32, "{st:#?}");
    for (erase, verify) in st.blocks[1].jobs.iter().zip(&st.blocks[2].jobs) {
        assert_eq!(erase.args["machine"], verify.args["machine"]);
        // Status shows the value the input resolved to, and where from.
        assert_eq!(verify.args["eraseRequest"], erase.outputs["eraseRequest"]);
        assert_eq!(verify.inputs["eraseRequest"].output, "eraseRequest");
        assert_eq!(verify.outputs["verified"], "true");
    }

    // An input naming an output that is not there fails its job, saying so.
    let mut t = templates(&s).await;
    apply(
        &mut t,
        r#"
name: chained
workflow:
  name: x
  blocks:
    - jobs: [{id: first, name: probe, args: {ms: 1}}]
    - jobs:
        - {name: probe, inputs: {ms: {job: first, output: waitedMs}}}
        - {name: probe, inputs: {ms: {job: first, output: nope}}}
"#,
    )
    .await;
    let r = c.instantiate(call("chained", &[])).await.unwrap();
    c.exec(&r.id).await.unwrap();
    let st = wait_final(&c, &r.id).await;
    assert_eq!(st.status, v1::Status::Failed as i32);
    let (ok, bad) = (&st.blocks[1].jobs[0], &st.blocks[1].jobs[1]);
    assert_eq!(ok.status, v1::Status::Completed as i32, "{ok:?}");
    assert_eq!(ok.args["ms"], "1");
    assert_eq!(bad.status, v1::Status::Failed as i32);
    assert!(
        bad.error.contains(
            "input \"ms\": job 0 of block 0 has no output \"nope\" (its outputs: waitedMs)"
        ),
        "{}",
        bad.error
    );
    assert!(!bad.args.contains_key("ms"));

    // By hand: an input must come from an earlier block.
    let mut wrong = interlock_tests::req::work(
        "x",
        vec![interlock_tests::req::block(
            1,
            vec![interlock_tests::req::probe(1)],
        )],
    );
    wrong.blocks[0].jobs[0].args.clear();
    wrong.blocks[0].jobs[0].inputs.insert(
        "ms".into(),
        v1::OutputRef {
            block: 0,
            job: 0,
            output: "waitedMs".into(),
        },
    );
    let e = c.submit(wrong).await.unwrap_err();
    assert!(
        e.to_string()
            .contains("an input must come from an earlier block"),
        "{e}"
    );
}

#[tokio::test]
async fn inputs_cannot_slip_a_request_past_an_approval_rule() {
    // Waits of 8 seconds need an approval. A wait whose length is an
    // input (the machine count of a site, 8) is not matched at Submit, so
    // its block is refused once the value is known, before it starts.
    let s = TestServer::start_with(|c| {
        interlock_tests::append_entry(
            &c.configs.join("policies.json"),
            serde_json::json!({"Name": "sneaky", "Policies": [{"Name": "requireApproval",
                "Settings": {"Role": "approver", "When": {"Args": {"seconds": "8"}}}}]}),
        );
        interlock_tests::append_entry(
            &c.configs.join("es.json"),
            serde_json::json!({"Name": "sneaky", "Status": "go"}),
        );
    })
    .await;
    let mut t = templates(&s).await;
    apply(
        &mut t,
        r#"
name: sneaky
workflow:
  name: sneaky
  blocks:
    - jobs: [{id: count, name: validateDecom, args: {site: aab, type: satellite}}]
    - jobs:
        - name: sleep
          inputs: {seconds: {job: count, output: machines}}
"#,
    )
    .await;
    let c = s.client().await;
    let r = c.instantiate(call("sneaky", &[])).await.unwrap();
    assert_eq!(
        c.status(&r.id).await.unwrap().status,
        v1::Status::NotStarted as i32
    );
    c.exec(&r.id).await.unwrap();
    let st = wait_final(&c, &r.id).await;
    assert_eq!(st.status, v1::Status::Failed as i32, "{st:#?}");
    let wait = &st.blocks[1].jobs[0];
    assert!(
        wait.error
            .contains("falls under approval rules it was not approved for"),
        "{}",
        wait.error
    );
    assert!(wait.attempts.is_empty(), "it never ran");
}
