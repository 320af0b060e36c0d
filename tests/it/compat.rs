//! The ancestor's protocol (/diskerase.Workflow/*), spoken by a client
//! generated from the ancestor's own proto.

use interlock_tests::TestServer;
use interlock_tests::ancestor as a;
use std::time::Duration;
use tonic::Code;

fn job(name: &str, args: &[(&str, &str)]) -> a::Job {
    a::Job {
        name: name.into(),
        desc: String::new(),
        args: args
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

async fn wait(
    c: &mut a::workflow_client::WorkflowClient<tonic::transport::Channel>,
    id: &str,
) -> a::StatusResp {
    for _ in 0..3000 {
        let st = c
            .status(a::StatusReq { id: id.into() })
            .await
            .unwrap()
            .into_inner();
        if st.status == a::Status::Completed as i32 || st.status == a::Status::Failed as i32 {
            return st;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("workflow {id} did not finish");
}

#[tokio::test]
async fn ancestor_client_submits_executes_and_reads_status() {
    let s = TestServer::start().await;
    let mut c = s.ancestor().await;
    let req = a::WorkReq {
        name: "SatelliteDiskErase".into(),
        desc: "erase aab".into(),
        blocks: vec![
            a::Block {
                desc: "checks".into(),
                rate_limit: 1,
                jobs: vec![
                    job("validateDecom", &[("site", "aab"), ("type", "satellite")]),
                    job(
                        "tokenBucket",
                        &[("bucket", "diskEraseSatellite"), ("fatal", "true")],
                    ),
                ],
            },
            a::Block {
                desc: "erase".into(),
                rate_limit: 5,
                jobs: (0..3)
                    .map(|i| {
                        job(
                            "diskErase",
                            &[("machine", &format!("aab{i:02}")), ("site", "aab")],
                        )
                    })
                    .collect(),
            },
        ],
    };
    let id = c.submit(req).await.unwrap().into_inner().id;
    c.exec(a::ExecReq { id: id.clone() }).await.unwrap();
    let st = wait(&mut c, &id).await;
    assert_eq!(st.status, a::Status::Completed as i32);
    assert_eq!(st.name, "SatelliteDiskErase");
    assert_eq!(st.desc, "erase aab");
    assert_eq!(st.blocks.len(), 2);
    assert_eq!(st.blocks[1].jobs[2].args["machine"], "aab02");
    assert!(
        st.blocks
            .iter()
            .flat_map(|b| &b.jobs)
            .all(|j| j.status == a::Status::Completed as i32)
    );
}

#[tokio::test]
async fn ancestor_errors_use_the_right_codes() {
    let s = TestServer::start().await;
    let mut c = s.ancestor().await;
    let e = c
        .submit(a::WorkReq {
            name: "x".into(),
            desc: String::new(),
            blocks: vec![],
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let missing = "0190a5f0-0000-7000-8000-000000000000".to_string();
    let e = c
        .status(a::StatusReq {
            id: missing.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = c.exec(a::ExecReq { id: missing }).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
}

#[tokio::test]
async fn statuses_the_ancestor_never_knew_are_shown_as_ones_it_did() {
    // A fatally failed workflow has Cancelled jobs; the ancestor's client
    // must see Failed, a value it knows, never 5.
    let s = TestServer::start().await;
    let mut c = s.ancestor().await;
    let req = a::WorkReq {
        name: "x".into(),
        desc: String::new(),
        blocks: vec![a::Block {
            desc: String::new(),
            rate_limit: 2,
            jobs: vec![
                job("probe", &[("ms", "5000")]),
                job("probe", &[("ms", "10"), ("fatal", "true")]),
            ],
        }],
    };
    let id = c.submit(req).await.unwrap().into_inner().id;
    c.exec(a::ExecReq { id: id.clone() }).await.unwrap();
    let st = wait(&mut c, &id).await;
    assert_eq!(st.status, a::Status::Failed as i32);
    for j in &st.blocks[0].jobs {
        assert!(
            j.status <= a::Status::Completed as i32,
            "unknown status {}",
            j.status
        );
    }
    // The v1 service shows the precise state of the same workflow.
    let v1 = s.client().await.status(&id).await.unwrap();
    assert_eq!(
        v1.blocks[0].jobs[0].status,
        interlock_proto::v1::Status::Cancelled as i32
    );
}

/// The ancestor's data files name machines per site: `aa00`…`ae09` repeat
/// in every site. Its client, run unchanged against Interlock with those
/// files, must erase a decom satellite's own machines.
#[tokio::test]
async fn ancestor_shaped_inventory_erases_the_right_site() {
    let data = tempfile::tempdir().unwrap();
    let sites = [
        ("aap", "satellite", "decom"),
        ("adv", "satellite", "inService"),
    ];
    let mut sites_json = String::new();
    let mut machines_json = String::new();
    for (name, kind, status) in sites {
        sites_json +=
            &format!("{{\"Name\":\"{name}\",\"Type\":\"{kind}\",\"Status\":\"{status}\"}}\n");
        for row in ["aa", "ab", "ac", "ad", "ae"] {
            for i in 0..10 {
                machines_json += &format!("{{\"Name\":\"{row}{i:02}\",\"Site\":\"{name}\"}}\n");
            }
        }
    }
    std::fs::write(data.path().join("sites.json"), sites_json).unwrap();
    std::fs::write(data.path().join("machines.json"), machines_json).unwrap();
    let data_dir = data.path().to_path_buf();
    let s = TestServer::start_with(|c| c.data = data_dir).await;
    let mut c = s.ancestor().await;
    let req = a::WorkReq {
        name: "SatelliteDiskErase".into(),
        desc: "erase aap".into(),
        blocks: vec![
            a::Block {
                desc: "checks".into(),
                rate_limit: 1,
                jobs: vec![
                    job("validateDecom", &[("site", "aap"), ("type", "satellite")]),
                    job(
                        "tokenBucket",
                        &[("bucket", "diskEraseSatellite"), ("fatal", "true")],
                    ),
                ],
            },
            a::Block {
                desc: "erase".into(),
                rate_limit: 5,
                jobs: ["aa00", "aa01", "ae09"]
                    .iter()
                    .map(|m| job("diskErase", &[("machine", m), ("site", "aap")]))
                    .collect(),
            },
        ],
    };
    let id = c.submit(req).await.unwrap().into_inner().id;
    c.exec(a::ExecReq { id: id.clone() }).await.unwrap();
    let st = wait(&mut c, &id).await;
    let errors: Vec<_> = st
        .blocks
        .iter()
        .flat_map(|b| &b.jobs)
        .map(|j| j.error.as_str())
        .filter(|e| !e.is_empty())
        .collect();
    assert_eq!(st.status, a::Status::Completed as i32, "{errors:?}");
}
