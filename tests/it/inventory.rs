//! The inventory in the store: imported from the data files, changed while
//! running (a site's status takes effect at once and survives a restart),
//! refused when malformed, and admins only.

use interlock_proto::v1;
use interlock_tests::{TestServer, enable_auth, repo, wait_final};
use tonic::Code;

type Inv = v1::inventory_client::InventoryClient<tonic::transport::Channel>;

async fn inventory(s: &TestServer) -> Inv {
    Inv::connect(format!("http://{}", s.socket()))
        .await
        .unwrap()
}

fn files() -> v1::ImportInventoryReq {
    let read = |f: &str| std::fs::read_to_string(repo().join("data").join(f)).unwrap();
    v1::ImportInventoryReq {
        sites_json: read("sites.json"),
        machines_json: read("machines.json"),
    }
}

fn erase(site: &str, ticket: &str) -> v1::InstantiateReq {
    v1::InstantiateReq {
        template: "erase-satellite".into(),
        params: [
            ("site".to_string(), site.to_string()),
            ("ticket".to_string(), ticket.to_string()),
        ]
        .into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_site_status_changed_in_the_store_applies_at_once_and_survives_a_restart() {
    let mut s = TestServer::start().await;
    let mut inv = inventory(&s).await;
    let listed = inv
        .list_inventory(v1::ListInventoryReq::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.source, "files");
    assert_eq!(listed.sites.len(), 48);
    let e = inv
        .set_site_status(v1::SetSiteStatusReq {
            site: "aab".into(),
            status: "inService".into(),
            reason: "r".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");

    let imported = inv.import_inventory(files()).await.unwrap().into_inner();
    assert_eq!(
        (imported.source.as_str(), imported.sites.len()),
        ("store", 48)
    );
    let v1_ = imported.version;

    // aab back in service: its erase is refused by validateDecom at once.
    let changed = inv
        .set_site_status(v1::SetSiteStatusReq {
            site: "aab".into(),
            status: "inService".into(),
            reason: "decommission postponed".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(changed.version > v1_);
    assert_eq!(changed.sites[0].status, "inService");
    let c = s.client().await;
    let r = c.instantiate(erase("aab", "CHG-1")).await.unwrap();
    c.exec(&r.id).await.unwrap();
    let st = wait_final(&c, &r.id).await;
    assert_eq!(st.status, v1::Status::Failed as i32);
    assert!(
        st.blocks[0].jobs[0]
            .error
            .contains("in status \"inService\", not \"decom\""),
        "{st:?}"
    );
    assert_eq!(
        st.blocks[0].jobs[1].status,
        v1::Status::NotStarted as i32,
        "token not spent"
    );

    // The change outlives a restart; putting it back lets the erase run.
    s.restart().await;
    let mut inv = inventory(&s).await;
    let one = inv
        .list_inventory(v1::ListInventoryReq { site: "aab".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (one.source.as_str(), one.sites[0].status.as_str()),
        ("store", "inService")
    );
    assert_eq!(one.machines.len(), 8);
    inv.set_site_status(v1::SetSiteStatusReq {
        site: "aab".into(),
        status: "decom".into(),
        reason: "go".into(),
    })
    .await
    .unwrap();
    let c = s.client().await;
    let r = c.instantiate(erase("aab", "CHG-2")).await.unwrap();
    c.exec(&r.id).await.unwrap();
    assert_eq!(
        wait_final(&c, &r.id).await.status,
        v1::Status::Completed as i32
    );

    let audit = s.audit_log().await;
    assert!(audit.iter().any(|e| e.action == "inventory.set_status"
        && e.target == "aab"
        && e.detail == "status inService: decommission postponed"));
}

#[tokio::test]
async fn an_import_is_checked_whole_and_templates_follow_it() {
    let s = TestServer::start().await;
    let mut inv = inventory(&s).await;
    let mut bad = files();
    bad.sites_json = bad.sites_json.replace("\"decom\"", "\"Decom\"");
    let e = inv.import_inventory(bad).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message()
            .contains("has status \"Decom\"; the statuses are decom, inService, removed"),
        "{}",
        e.message()
    );
    let mut orphan = files();
    orphan
        .machines_json
        .push_str("{\"Name\":\"zz00\",\"Site\":\"zzz\"}\n");
    let e = inv.import_inventory(orphan).await.unwrap_err();
    assert!(
        e.message()
            .contains("machine \"zz00\" is at site \"zzz\", which is not listed"),
        "{}",
        e.message()
    );
    assert_eq!(
        inv.list_inventory(v1::ListInventoryReq::default())
            .await
            .unwrap()
            .into_inner()
            .source,
        "files"
    );

    // An inventory without aag: the template refuses the site, and fans
    // out over what the store lists for aab.
    let mut fewer = files();
    fewer.sites_json = fewer
        .sites_json
        .lines()
        .filter(|l| !l.contains("\"aag\""))
        .collect::<Vec<_>>()
        .join("\n");
    fewer.machines_json = fewer
        .machines_json
        .lines()
        .filter(|l| !l.contains("\"aag\"") && !l.contains("aab07"))
        .collect::<Vec<_>>()
        .join("\n");
    inv.import_inventory(fewer).await.unwrap();
    let c = s.client().await;
    let e = c.instantiate(erase("aag", "CHG-1")).await.unwrap_err();
    assert!(
        e.to_string()
            .contains("parameter \"site\": \"aag\" is not a site in the inventory"),
        "{e}"
    );
    let dry = c
        .instantiate(v1::InstantiateReq {
            dry_run: true,
            ..erase("aab", "CHG-1")
        })
        .await
        .unwrap();
    assert_eq!(dry.fanouts[0].items, 7);
}

#[tokio::test]
async fn only_admins_change_the_inventory() {
    let rbac = r#"{"roles": {"sre": [{"actions": ["read", "submit", "exec", "estop"], "workflows": ["*"]}],
                             "admin": [{"actions": ["admin"], "workflows": ["*"]}]},
                   "bindings": [{"identity": "token:sre", "roles": ["sre"]},
                                {"identity": "token:admin", "roles": ["admin"]}]}"#;
    let s = TestServer::start_with(|c| {
        enable_auth(
            c,
            &[
                ("sre", "sre-token-12345678"),
                ("admin", "admin-token-12345678"),
            ],
            rbac,
        )
    })
    .await;
    let mut inv = inventory(&s).await;
    let with = |t: &str, m: v1::ImportInventoryReq| {
        let mut r = tonic::Request::new(m);
        r.metadata_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
        r
    };
    let e = inv
        .import_inventory(with("sre-token-12345678", files()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    inv.import_inventory(with("admin-token-12345678", files()))
        .await
        .unwrap();
    let mut r = tonic::Request::new(v1::ListInventoryReq::default());
    r.metadata_mut().insert(
        "authorization",
        "Bearer sre-token-12345678".parse().unwrap(),
    );
    assert_eq!(
        inv.list_inventory(r).await.unwrap().into_inner().source,
        "store"
    );
}
