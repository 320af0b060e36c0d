//! tokens.json and rbac.json change while the server runs.

use super::*;

#[tokio::test]
async fn tokens_and_grants_reload_live_and_bad_edits_keep_the_last_good() {
    let mut sec = secure().await;
    let tokens_path = sec.s.config_path("tokens.json");
    let rbac_path = sec.s.config_path("rbac.json");
    // An expired token is refused with the reason.
    let old = tokens::mint();
    let mut entries: serde_json::Value = serde_json::from_str(&tokens_json(&sec.tokens)).unwrap();
    entries["tokens"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!(
            {"name": "old", "sha256": tokens::hash(&old), "expires": "2020-01-01T00:00:00Z"}
        ));
    write_config(&tokens_path, &entries.to_string());
    let t = sec.transport(sec.creds(Some(&old))).await;
    eventually("the expired token is refused as expired", || {
        let t = t.clone();
        async move {
            Wf::new(t)
                .job_catalog(v1::JobCatalogReq {})
                .await
                .is_err_and(|s| {
                    s.message()
                        .contains("\"old\" expired at 2020-01-01T00:00:00Z")
                })
        }
    })
    .await;
    // A new token works once it is in the file.
    let fresh = tokens::mint();
    sec.tokens.insert("viewer2", fresh.clone());
    let mut rbac: serde_json::Value = serde_json::from_str(RBAC).unwrap();
    rbac["bindings"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"identity": "token:viewer2", "roles": ["viewer"]}));
    write_config(&rbac_path, &rbac.to_string());
    write_config(&tokens_path, &tokens_json(&sec.tokens));
    let t = sec.transport(sec.creds(Some(&fresh))).await;
    eventually("the new token is accepted", || {
        let t = t.clone();
        async move { Wf::new(t).job_catalog(v1::JobCatalogReq {}).await.is_ok() }
    })
    .await;

    // A malformed edit keeps what is in force.
    write_config(&tokens_path, "{\"tokens\": [");
    write_config(
        &rbac_path,
        "{\"roles\": {\"viewer\": [{\"actions\": [\"peek\"]}]}}",
    );
    let (_, mut admin) = sec.as_role(Some("admin")).await;
    eventually("both bad edits are logged", || {
        let admin = admin.clone();
        async move {
            let log = audit_log(admin).await;
            ["tokens.json", "rbac.json"].iter().all(|f| {
                log.iter().any(|e| {
                    e.action == "config.reload" && e.target == *f && e.outcome == "invalid"
                })
            })
        }
    })
    .await;
    Wf::new(t.clone())
        .job_catalog(v1::JobCatalogReq {})
        .await
        .expect("last good tokens and grants still in force");

    // Revoking: the token leaves the file, its calls are refused.
    sec.tokens.remove("viewer2");
    write_config(&tokens_path, &tokens_json(&sec.tokens));
    eventually("the removed token is refused", || {
        let t = t.clone();
        async move {
            Wf::new(t)
                .job_catalog(v1::JobCatalogReq {})
                .await
                .is_err_and(|s| s.code() == Code::Unauthenticated)
        }
    })
    .await;
    admin
        .audit(v1::AuditReq::default())
        .await
        .expect("other tokens unaffected");
    // Both files survive a restart (rbac.json is still the bad edit: the
    // restarted server has no last good, so it denies everything).
    sec.s.restart().await;
    let (c, m) = code(
        sec.as_role(Some("admin"))
            .await
            .1
            .audit(v1::AuditReq::default())
            .await,
    );
    assert_eq!(c, Code::PermissionDenied);
    assert!(m.contains("no valid rbac.json is loaded"), "{m}");
}

/// One fail-closed rule for removed files: removing rbac.json takes every
/// grant away (and health says so), removing tokens.json revokes every
/// token. A broken tokens.json is the operators' problem: its error is
/// never told to a caller.
#[tokio::test]
async fn removing_rbac_or_tokens_json_denies_and_errors_stay_private() {
    let sec = secure().await;
    let tokens_path = sec.s.config_path("tokens.json");
    let rbac_path = sec.s.config_path("rbac.json");
    let (_, admin) = sec.as_role(Some("admin")).await;
    let audit_ok = |mut c: Ctl| async move { c.audit(v1::AuditReq::default()).await };
    audit_ok(admin.clone()).await.expect("admin reads the log");

    std::fs::remove_file(&rbac_path).unwrap();
    eventually("no grants without rbac.json", || {
        let a = admin.clone();
        async move {
            audit_ok(a)
                .await
                .is_err_and(|s| s.code() == Code::PermissionDenied)
        }
    })
    .await;
    write_config(&rbac_path, RBAC);
    eventually("grants back with the file", || {
        let a = admin.clone();
        async move { audit_ok(a).await.is_ok() }
    })
    .await;

    write_config(&tokens_path, "{\"tokens\": [");
    let stranger = sec.transport(sec.creds(Some(&tokens::mint()))).await;
    let e = Wf::new(stranger.clone())
        .job_catalog(v1::JobCatalogReq {})
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    assert!(
        !e.message().contains("tokens.json") && !e.message().contains("EOF"),
        "a server-side error leaked: {}",
        e.message()
    );
    std::fs::remove_file(&tokens_path).unwrap();
    eventually("no token is valid without tokens.json", || {
        let a = admin.clone();
        async move {
            audit_ok(a)
                .await
                .is_err_and(|s| s.code() == Code::Unauthenticated)
        }
    })
    .await;
}

/// An empty tokens.json or rbac.json (truncated by an editor, and left so)
/// is a mistake, not "no tokens" or "no grants": the last good version
/// stays in force, and the empty file is audited as invalid.
#[tokio::test]
async fn an_empty_tokens_or_rbac_json_keeps_the_last_good() {
    let sec = secure().await;
    let (mut viewer, _) = sec.as_role(Some("viewer")).await;
    let (_, admin) = sec.as_role(Some("admin")).await;
    for file in ["tokens.json", "rbac.json"] {
        std::fs::File::create(sec.s.config_path(file)).unwrap();
        eventually("the empty file is audited as invalid", || {
            let mut admin = admin.clone();
            async move {
                let log = admin
                    .audit(v1::AuditReq {
                        action: "config.reload".into(),
                        target: file.into(),
                        ..Default::default()
                    })
                    .await;
                log.is_ok_and(|r| {
                    r.into_inner()
                        .entries
                        .iter()
                        .any(|e| e.outcome == "invalid" && e.detail.contains("the file is empty"))
                })
            }
        })
        .await;
        viewer
            .job_catalog(v1::JobCatalogReq {})
            .await
            .unwrap_or_else(|e| panic!("after an empty {file}: {e}"));
    }
}
