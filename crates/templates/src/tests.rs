use super::*;
use std::collections::BTreeMap;

struct Inv;

impl Inventory for Inv {
    fn site_exists(&self, site: &str) -> bool {
        matches!(site, "aab" | "aad" | "empty")
    }
    fn machine_exists(&self, m: &str) -> bool {
        m.starts_with("aab0")
    }
    fn machines_of(&self, site: &str) -> Option<Vec<String>> {
        match site {
            "aab" => Some((0..5).map(|i| format!("aab0{i}")).collect()),
            "aad" => Some(vec!["aad00".into()]),
            "empty" => Some(vec![]),
            _ => None,
        }
    }
    fn site_names(&self) -> Vec<String> {
        vec!["aab".into(), "aad".into(), "empty".into()]
    }
}

const ERASE: &str = r#"
name: erase-satellite
desc: Erase every machine of one satellite site
params:
  site: {type: site, desc: the satellite}
  rate: {type: int, min: 1, max: 20, default: 2}
  wave: {type: int, min: 1, default: 100}
  ticket: {type: string, pattern: 'CHG[0-9]+'}
  wait: {type: duration, default: 10m}
workflow:
  name: SatelliteDiskErase
  desc: erase satellite {{site}} for {{ticket}}
  labels: {ticket: "{{ticket}}"}
  blocks:
    - desc: pre-checks
      jobs:
        - {name: validateDecom, args: {site: "{{site}}", type: satellite}}
        - {name: tokenBucket, args: {bucket: diskEraseSatellite, fatal: true}}
    - desc: erase {{site}}
      rateLimit: "{{rate}}"
      forEach: {machinesOf: "{{site}}", wave: "{{wave}}"}
      jobs:
        - name: diskErase
          args: {site: "{{site}}", machine: "{{machine}}"}
          timeout: "{{wait}}"
"#;

fn params(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
    kv.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn fans_out_over_a_sites_machines() {
    let t = Template::parse(ERASE).unwrap();
    let x = t
        .expand(&params(&[("site", "aab"), ("ticket", "CHG1")]), &Inv)
        .unwrap();
    assert_eq!(x.req.name, "SatelliteDiskErase");
    assert_eq!(x.req.desc, "erase satellite aab for CHG1");
    assert_eq!(x.req.labels["ticket"], "CHG1");
    assert_eq!(x.req.blocks.len(), 2);
    let erase = &x.req.blocks[1];
    assert_eq!(erase.rate_limit, 2);
    let machines: Vec<&str> = erase
        .jobs
        .iter()
        .map(|j| j.args["machine"].as_str())
        .collect();
    assert_eq!(machines, ["aab00", "aab01", "aab02", "aab03", "aab04"]);
    assert_eq!(
        erase.jobs[0].timeout,
        Some(std::time::Duration::from_secs(600))
    );
    assert_eq!(x.req.blocks[0].jobs[1].args["fatal"], "true");
    assert_eq!(
        x.fanouts,
        [FanOut {
            template_block: 1,
            source: "machines of site aab".into(),
            items: 5,
            blocks: 1
        }]
    );
    assert_eq!(x.values["rate"], "2");
}

#[test]
fn waves_split_a_fan_out_into_blocks() {
    let t = Template::parse(ERASE).unwrap();
    let x = t
        .expand(
            &params(&[("site", "aab"), ("ticket", "CHG1"), ("wave", "2")]),
            &Inv,
        )
        .unwrap();
    let sizes: Vec<usize> = x.req.blocks.iter().map(|b| b.jobs.len()).collect();
    assert_eq!(sizes, [2, 2, 2, 1]);
    assert_eq!(x.req.blocks[1].desc, "erase aab (wave 1 of 3)");
    assert_eq!(x.fanouts[0].blocks, 3);
}

#[test]
fn every_bad_value_is_reported_with_its_parameter_and_rule() {
    let t = Template::parse(ERASE).unwrap();
    let e = t
        .expand(
            &params(&[("site", "aax"), ("rate", "50"), ("sitee", "x")]),
            &Inv,
        )
        .unwrap_err();
    let all = e.join("\n");
    assert!(all.contains("parameter \"sitee\" is not a parameter of template \"erase-satellite\" (did you mean \"site\"?)"), "{all}");
    assert!(
        all.contains(
            "parameter \"site\": \"aax\" is not a site in the inventory (did you mean \"aab\"?)"
        ),
        "{all}"
    );
    assert!(
        all.contains("parameter \"rate\": 50 is above the maximum 20"),
        "{all}"
    );
    assert!(all.contains("parameter \"ticket\" is required"), "{all}");
    assert_eq!(e.len(), 4, "{all}");
}

#[test]
fn an_empty_fan_out_is_an_error() {
    let t = Template::parse(ERASE).unwrap();
    let e = t
        .expand(&params(&[("site", "empty"), ("ticket", "CHG1")]), &Inv)
        .unwrap_err();
    assert!(
        e[0].contains("workflow.blocks[1]") && e[0].contains("empty fan-out is an error"),
        "{e:?}"
    );
}

#[test]
fn values_are_data_not_template_text() {
    let t = Template::parse(
        r#"
name: t
params: {a: {type: string}, b: {type: string, default: secret}}
workflow:
  name: W
  blocks: [{jobs: [{name: sleep, args: {x: "{{a}}"}}]}]
"#,
    )
    .unwrap();
    for v in [
        "{{b}}",
        "{\"seconds\": \"1\", \"x\": \"{{b}}\"}",
        "}}{{",
        "a\",\"b",
    ] {
        let x = t.expand(&params(&[("a", v)]), &Inv).unwrap();
        assert_eq!(x.req.blocks[0].jobs[0].args["x"], v);
        assert_eq!(x.req.blocks[0].jobs[0].args.len(), 1);
    }
}

#[test]
fn list_parameters_fan_out_and_are_refused_elsewhere() {
    let t = Template::parse(
        r#"
name: some-machines
params: {hosts: {type: list, items: {type: machine}}}
workflow:
  name: W
  blocks:
    - forEach: {items: "{{hosts}}", as: host}
      jobs: [{name: diskErase, args: {site: aab, machine: "{{host}}"}}]
"#,
    )
    .unwrap();
    let x = t
        .expand(&params(&[("hosts", "aab01,aab03")]), &Inv)
        .unwrap();
    assert_eq!(x.req.blocks[0].jobs.len(), 2);
    assert_eq!(x.req.blocks[0].jobs[1].args["machine"], "aab03");
    let e = t
        .expand(&params(&[("hosts", "aab01,zzz")]), &Inv)
        .unwrap_err();
    assert_eq!(
        e,
        ["parameter \"hosts[1]\": \"zzz\" is not a machine in the inventory"]
    );

    let e = Template::parse(
        r#"
name: bad
params: {hosts: {type: list, items: {type: machine}}}
workflow: {name: "W {{hosts}}", blocks: [{jobs: [{name: sleep}]}]}
"#,
    )
    .unwrap_err();
    assert!(
        e.0[0].contains("workflow.name: parameter \"hosts\" is a list"),
        "{e}"
    );
}

#[test]
fn template_problems_are_found_at_creation() {
    let e = Template::parse(
        r#"
name: bad one
params:
  site: {type: site}
  n: {type: int, default: x}
workflow:
  name: "{{sit}}"
  blocks:
    - rateLimit: fast
      forEach: {machinesOf: "{{site}}", as: site}
      jobs: [{name: "{{site}}", args: {m: "{{machine}}"}}]
    - jobs: []
"#,
    )
    .unwrap_err();
    let all = e.0.join("\n");
    for want in [
        "name \"bad one\" is not a template name",
        "default of parameter \"n\": \"x\" is not an integer",
        "workflow.name: unknown parameter \"sit\" (did you mean \"site\"?)",
        "workflow.blocks[0].rateLimit: \"fast\" is not an integer",
        "would hide the parameter",
        "workflow.blocks[0].jobs[0].name: the job type",
        "workflow.blocks[0].jobs[0].args.m: unknown parameter \"machine\"",
        "workflow.blocks[1].jobs: a block needs at least one job",
    ] {
        assert!(all.contains(want), "missing {want:?} in\n{all}");
    }
    let e =
        Template::parse("name: x\nworkflow: {name: W, blocks: [{jobs: [{name: a, argz: {}}]}]}")
            .unwrap_err();
    assert!(
        e.0[0].contains("workflow.blocks[0].jobs[0]") && e.0[0].contains("argz"),
        "{e}"
    );
    assert!(Template::parse("  ").is_err());
}

#[test]
fn the_stored_form_is_canonical() {
    let a = Template::parse(ERASE).unwrap();
    let b = Template::from_document(serde_json::from_str(a.canonical()).unwrap()).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.content_hash(), b.content_hash());
    let c = Template::parse(&a.to_yaml()).unwrap();
    assert_eq!(a.content_hash(), c.content_hash());
}

const VERIFIED: &str = r#"
name: verified
params: {site: {type: site}, wave: {type: int, default: 2}}
workflow:
  name: W
  blocks:
    - jobs: [{id: check, name: validateDecom, args: {site: "{{site}}", type: satellite}}]
    - forEach: {machinesOf: "{{site}}", wave: "{{wave}}"}
      jobs: [{id: erase, name: diskErase, args: {site: "{{site}}", machine: "{{machine}}"}}]
    - forEach: {machinesOf: "{{site}}"}
      jobs:
        - name: verifyErase
          args: {site: "{{site}}", machine: "{{machine}}"}
          inputs:
            eraseRequest: {job: erase, output: eraseRequest}
            checked: {job: check, output: status}
"#;

#[test]
fn inputs_pair_each_item_with_its_own_earlier_job() {
    let t = Template::parse(VERIFIED).unwrap();
    let x = t.expand(&params(&[("site", "aab")]), &Inv).unwrap();
    // Blocks: check, three waves of erases (2, 2, 1), verify.
    assert_eq!(x.req.blocks.len(), 5);
    let verify = &x.req.blocks[4];
    let at: Vec<(usize, usize)> = verify
        .jobs
        .iter()
        .map(|j| (j.inputs["eraseRequest"].block, j.inputs["eraseRequest"].job))
        .collect();
    assert_eq!(at, [(1, 0), (1, 1), (2, 0), (2, 1), (3, 0)]);
    for (j, m) in verify
        .jobs
        .iter()
        .zip(["aab00", "aab01", "aab02", "aab03", "aab04"])
    {
        assert_eq!(j.args["machine"], m);
        let src = &j.inputs["eraseRequest"];
        assert_eq!(x.req.blocks[src.block].jobs[src.job].args["machine"], m);
        assert_eq!(src.output, "eraseRequest");
        // A job that ran once is the input of every item.
        assert_eq!((j.inputs["checked"].block, j.inputs["checked"].job), (0, 0));
    }
}

#[test]
fn inputs_are_checked_when_the_template_is_stored() {
    let bad = |jobs: &str| {
        Template::parse(&format!(
            "name: t\nworkflow:\n  name: W\n  blocks:\n    - jobs: [{{id: a, name: sleep}}]\n    - jobs: {jobs}\n"
        ))
        .unwrap_err()
        .0
        .join("\n")
    };
    let e = bad("[{name: sleep, inputs: {seconds: {job: b, output: x}}}]");
    assert!(
        e.contains("no job with id \"b\" in an earlier block"),
        "{e}"
    );
    let e = bad("[{name: sleep, args: {seconds: 1}, inputs: {seconds: {job: a, output: x}}}]");
    assert!(e.contains("also in args"), "{e}");
    let e = bad("[{id: a, name: sleep}]");
    assert!(e.contains("already the id of another job"), "{e}");
    let e = bad("[{id: c, name: sleep, inputs: {seconds: {job: c, output: x}}}]");
    assert!(
        e.contains("no job with id \"c\" in an earlier block"),
        "{e}"
    );
}

#[test]
fn an_input_naming_a_fan_out_from_outside_it_is_refused() {
    let t = Template::parse(
        r#"
name: t
params: {site: {type: site}}
workflow:
  name: W
  blocks:
    - forEach: {machinesOf: "{{site}}"}
      jobs: [{id: erase, name: diskErase, args: {site: "{{site}}", machine: "{{machine}}"}}]
    - jobs: [{name: sleep, inputs: {seconds: {job: erase, output: x}}}]
"#,
    )
    .unwrap();
    let e = t.expand(&params(&[("site", "aab")]), &Inv).unwrap_err();
    assert!(e[0].contains("job \"erase\" has 5 instance(s)"), "{e:?}");
}

#[test]
fn an_input_never_takes_another_items_output() {
    // One machine erased, another verified: no pairing, an error.
    let t = Template::parse(
        r#"
name: t
params: {m: {type: list, items: {type: string}}, v: {type: list, items: {type: string}}}
workflow:
  name: W
  blocks:
    - forEach: {items: "{{m}}", as: x}
      jobs: [{id: erase, name: diskErase, args: {site: aab, machine: "{{x}}"}}]
    - forEach: {items: "{{v}}", as: x}
      jobs: [{name: verifyErase, args: {site: aab, machine: "{{x}}"}, inputs: {eraseRequest: {job: erase, output: eraseRequest}}}]
"#,
    )
    .unwrap();
    let e = t
        .expand(&params(&[("m", "aab01"), ("v", "aab02")]), &Inv)
        .unwrap_err();
    assert!(e[0].contains("none of them for \"aab02\""), "{e:?}");
    assert!(
        t.expand(&params(&[("m", "aab01"), ("v", "aab01")]), &Inv)
            .is_ok()
    );
}

#[test]
fn templates_cannot_claim_the_servers_labels() {
    let e = Template::parse(
        "name: t\nworkflow: {name: W, labels: {interlock.template: other}, blocks: [{jobs: [{name: sleep}]}]}",
    )
    .unwrap_err();
    assert!(e.0[0].contains("set by the server"), "{e}");
}
