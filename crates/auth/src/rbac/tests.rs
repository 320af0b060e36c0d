use super::*;

const FILE: &str = r#"{
  "roles": {
    "operator": [{"actions": ["read", "submit", "exec", "cancel", "pause"], "workflows": ["SatelliteDiskErase", "Drain-*"]}],
    "viewer": [{"actions": ["read"], "workflows": ["*"]}],
    "stopper": [{"actions": ["estop"], "workflows": ["SatelliteDiskErase"]}],
    "admin": [{"actions": ["admin"], "workflows": ["*"]}]
  },
  "bindings": [
    {"identity": "token:ci-bot", "roles": ["operator"]},
    {"identity": "token:ci-bot", "roles": ["viewer", "operator"]},
    {"identity": "cert:*.sre.example.com", "roles": ["stopper", "viewer"]},
    {"identity": "cert:root", "roles": ["admin"]}
  ]
}"#;

fn rbac() -> Rbac {
    Rbac::parse(FILE).unwrap()
}

#[test]
fn grants_cover_exact_and_glob_workflow_names() {
    let r = rbac();
    let bot = Identity::token("ci-bot");
    for (action, workflow, ok) in [
        (Action::Exec, "SatelliteDiskErase", true),
        (Action::Exec, "Drain-eu1", true),
        (Action::Exec, "Drain", false),
        (Action::Exec, "SatelliteDiskErase2", false),
        (Action::Read, "Anything", true),
        (Action::Estop, "SatelliteDiskErase", false),
        (Action::Admin, "SatelliteDiskErase", false),
    ] {
        assert_eq!(
            r.check(&bot, action, workflow).is_ok(),
            ok,
            "{action} on {workflow}"
        );
    }
    assert_eq!(r.roles_of(&bot), ["operator", "viewer"]);
}

#[test]
fn bindings_match_certificate_aliases_and_globs() {
    let r = rbac();
    let sre = Identity::certificate("Jo Smith", vec!["jo.sre.example.com".into()]);
    assert!(r.check(&sre, Action::Estop, "SatelliteDiskErase").is_ok());
    assert!(
        r.check(&sre, Action::Estop, "*").is_err(),
        "stopping all needs a grant on *"
    );
    // A token with the same name as a certificate is a different caller.
    let imposter = Identity::token("jo.sre.example.com");
    assert!(r.check(&imposter, Action::Read, "x").is_err());
}

#[test]
fn admin_includes_every_action_even_on_star() {
    let r = rbac();
    let root = Identity::certificate("root", vec![]);
    for a in Action::ALL {
        assert!(r.check(&root, a, "*").is_ok(), "{a}");
        assert!(r.check(&root, a, "Whatever").is_ok(), "{a}");
    }
}

#[test]
fn denial_names_the_missing_grant_and_the_roles_held() {
    let r = rbac();
    let e = r
        .check(
            &Identity::token("ci-bot"),
            Action::Estop,
            "SatelliteDiskErase",
        )
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "token:ci-bot lacks the grant \"estop\" on workflow \"SatelliteDiskErase\" \
         (its roles: operator, viewer); bind it to a role granting that in rbac.json"
    );
    let e = r
        .check_any(&Identity::token("stranger"), Action::Read)
        .unwrap_err();
    assert!(
        e.to_string().contains("on any workflow (its roles: none)"),
        "{e}"
    );
    assert!(
        r.check_any(&Identity::token("ci-bot"), Action::Exec)
            .is_ok()
    );
}

#[test]
fn bad_files_are_refused_with_the_fault_located() {
    let cases = [
        (
            r#"{"roles": {"r": [{"actions": ["launch"], "workflows": ["*"]}]}}"#,
            "roles.r[0].actions[0]: unknown action \"launch\"; expected one of submit, exec",
        ),
        (
            r#"{"roles": {"r": [{"actions": ["read"], "workflows": ["[x"]}]}}"#,
            "roles.r[0]: glob \"[x\"",
        ),
        (
            r#"{"roles": {"r": [{"actions": [], "workflows": ["*"]}]}}"#,
            "at least one action",
        ),
        (
            r#"{"roles": {}, "bindings": [{"identity": "token:a", "roles": ["ghost"]}]}"#,
            "bindings[0]: unknown role \"ghost\"",
        ),
        (
            r#"{"roles": {"r": []}, "bindings": [{"identity": "alice", "roles": ["r"]}]}"#,
            "must say its kind",
        ),
        (r#"{"roles": {}, "extra": 1}"#, "unknown field `extra`"),
    ];
    for (text, want) in cases {
        let err = Rbac::parse(text).unwrap_err().0;
        assert!(err.contains(want), "{text}\n  got: {err}");
    }
}

#[test]
fn nothing_is_allowed_without_a_binding() {
    let r = Rbac::parse(r#"{"roles": {"viewer": [{"actions": ["read"], "workflows": ["*"]}]}}"#)
        .unwrap();
    for a in Action::ALL {
        assert!(r.check(&Identity::token("x"), a, "w").is_err());
        assert!(r.check(&Identity::anonymous("1.2.3.4:5"), a, "w").is_err());
    }
}

#[test]
fn the_shipped_files_load() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
    let rbac = Rbac::parse(&std::fs::read_to_string(dir.join("rbac.json")).unwrap()).unwrap();
    let bot = Identity::token("diskerase-bot");
    assert!(rbac.check(&bot, Action::Exec, "SatelliteDiskErase").is_ok());
    assert!(
        rbac.check(&bot, Action::Estop, "SatelliteDiskErase")
            .is_err()
    );
    let sre = Identity::certificate("Kim", vec!["kim.sre.example.com".into()]);
    assert!(rbac.check(&sre, Action::Estop, "*").is_ok());
    assert!(
        rbac.check(&sre, Action::Submit, "SatelliteDiskErase")
            .is_err()
    );
    let tokens =
        crate::Tokens::parse(&std::fs::read_to_string(dir.join("tokens.json")).unwrap()).unwrap();
    assert!(tokens.is_empty(), "no token ships with the repository");
}
