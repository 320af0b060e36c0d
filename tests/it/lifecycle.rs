//! Cancel, Pause/Resume, List and Clone over the real server (Watch is in
//! `watch.rs`).

use interlock_proto::v1::{self, Status};
use interlock_tests::{TestServer, eventually, req, wait_final, write_config};
use std::time::Duration;
use tonic::Code;

type Raw = v1::workflow_client::WorkflowClient<tonic::transport::Channel>;

/// The generated `clone` RPC method shares its name with `Clone::clone`;
/// the path form picks the RPC.
async fn clone_wf(
    raw: &mut Raw,
    r: v1::CloneReq,
) -> Result<tonic::Response<v1::WorkResp>, tonic::Status> {
    Raw::clone(raw, r).await
}

pub(crate) async fn started(s: &TestServer, blocks: Vec<v1::Block>) -> String {
    let c = s.client().await;
    let id = c.submit(req::work("x", blocks)).await.unwrap();
    c.exec(&id).await.unwrap();
    id
}

pub(crate) fn six(ms: u64) -> Vec<v1::Block> {
    vec![req::block(2, (0..6).map(|_| req::probe(ms)).collect())]
}

#[tokio::test]
async fn cancel_while_running_stops_jobs_and_starts_nothing_after_the_reply() {
    let s = TestServer::start().await;
    let id = started(&s, six(30_000)).await;
    eventually("two running", || async {
        s.probe.starts_of(&id).len() == 2
    })
    .await;
    let mut raw = s.raw().await;
    let r = raw
        .cancel(v1::CancelReq {
            id: id.clone(),
            reason: "wrong site".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.status, Status::Cancelled as i32);
    let st = s.client().await.status(&id).await.unwrap();
    assert_eq!(
        st.status,
        Status::Cancelled as i32,
        "recorded before the reply"
    );
    assert!(st.reason.contains("wrong site"));
    let jobs = &st.blocks[0].jobs;
    assert!(
        jobs[..2]
            .iter()
            .all(|j| j.status == Status::Cancelled as i32)
    );
    // The job's own "cancelled" and the cause's "cancelled: <reason>" say
    // it once.
    assert_eq!(jobs[0].error, "cancelled: wrong site", "{st:?}");
    assert!(
        jobs[2..]
            .iter()
            .all(|j| j.status == Status::NotStarted as i32)
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(s.probe.starts_of(&id).len(), 2);
    assert_eq!(s.probe.cancelled(), 2);
    // Cancelling again says what it is.
    let e = raw
        .cancel(v1::CancelReq {
            id,
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(e.message().contains("Cancelled"), "{}", e.message());
}

#[tokio::test]
async fn cancel_before_exec_and_exec_after_cancel() {
    let s = TestServer::start().await;
    let c = s.client().await;
    let id = c.submit(req::work("x", six(0))).await.unwrap();
    let mut raw = s.raw().await;
    raw.cancel(v1::CancelReq {
        id: id.clone(),
        reason: "not needed".into(),
    })
    .await
    .unwrap();
    assert_eq!(
        c.status(&id).await.unwrap().status,
        Status::Cancelled as i32
    );
    let e = c.exec(&id).await.unwrap_err();
    assert_eq!(e.code(), Some(Code::AlreadyExists));
    assert!(s.probe.starts_of(&id).is_empty());
}

#[tokio::test]
async fn pause_lets_jobs_in_flight_finish_and_resume_continues() {
    let s = TestServer::start().await;
    let id = started(&s, six(300)).await;
    eventually("two running", || async {
        s.probe.starts_of(&id).len() == 2
    })
    .await;
    let mut raw = s.raw().await;
    raw.pause(v1::PauseReq {
        id: id.clone(),
        reason: "look first".into(),
    })
    .await
    .unwrap();
    let c = s.client().await;
    eventually("in-flight jobs done", || async {
        let st = c.status(&id).await.unwrap();
        st.blocks[0].jobs[..2]
            .iter()
            .all(|j| j.status == Status::Completed as i32)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let st = c.status(&id).await.unwrap();
    assert_eq!(st.status, Status::Paused as i32);
    assert!(st.reason.contains("look first"));
    assert_eq!(s.probe.starts_of(&id).len(), 2, "nothing new while paused");
    raw.pause(v1::PauseReq {
        id: id.clone(),
        reason: String::new(),
    })
    .await
    .unwrap();

    raw.resume(v1::ResumeReq { id: id.clone() }).await.unwrap();
    let st = wait_final(&c, &id).await;
    assert_eq!(st.status, Status::Completed as i32, "{}", st.reason);
    assert_eq!(s.probe.starts_of(&id).len(), 6);
    assert!(s.probe.max_concurrent() <= 2);
    let e = raw.resume(v1::ResumeReq { id }).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
}

#[tokio::test]
async fn resume_rechecks_the_emergency_stop_and_cancel_works_while_paused() {
    let s = TestServer::start().await;
    let id = started(&s, six(100)).await;
    eventually("two running", || async {
        s.probe.starts_of(&id).len() == 2
    })
    .await;
    let mut raw = s.raw().await;
    raw.pause(v1::PauseReq {
        id: id.clone(),
        reason: String::new(),
    })
    .await
    .unwrap();
    write_config(
        &s.config_path("es.json"),
        r#"[{"Name": "x", "Status": "stop", "Reason": "freeze"}]"#,
    );
    // The stop ends the paused run too.
    let st = wait_final(&s.client().await, &id).await;
    assert_eq!(st.status, Status::Stopped as i32);

    write_config(
        &s.config_path("es.json"),
        r#"[{"Name": "x", "Status": "go"}]"#,
    );
    eventually("go", || async {
        let r = s
            .control()
            .await
            .emergency_stop_state(v1::EmergencyStopStateReq {})
            .await
            .unwrap();
        r.into_inner()
            .entries
            .iter()
            .any(|e| e.name == "x" && !e.stop)
    })
    .await;
    let id = started(&s, six(100)).await;
    eventually("running", || async { !s.probe.starts_of(&id).is_empty() }).await;
    raw.pause(v1::PauseReq {
        id: id.clone(),
        reason: String::new(),
    })
    .await
    .unwrap();
    let r = raw
        .cancel(v1::CancelReq {
            id: id.clone(),
            reason: "abandon".into(),
        })
        .await
        .unwrap();
    assert_eq!(r.into_inner().status, Status::Cancelled as i32);
    let n = s.probe.starts_of(&id).len();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(s.probe.starts_of(&id).len(), n);
}

#[tokio::test]
async fn list_filters_and_pages_newest_first() {
    let s = TestServer::start().await;
    let c = s.client().await;
    let mut ids = Vec::new();
    for i in 0..25 {
        let mut r = req::work("x", vec![req::block(1, vec![req::probe(0)])]);
        r.labels
            .insert("team".into(), if i % 2 == 0 { "a" } else { "b" }.into());
        ids.push(c.submit(r).await.unwrap());
    }
    c.exec(&ids[0]).await.unwrap();
    wait_final(&c, &ids[0]).await;
    let mut raw = s.raw().await;
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = raw
            .list(v1::ListReq {
                name: "x".into(),
                page_size: 10,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        seen.extend(page.workflows.iter().map(|w| w.id.clone()));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(seen, newest_first, "every workflow once, newest first");

    let by_label = raw
        .list(v1::ListReq {
            labels: [("team".to_string(), "a".to_string())].into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_label.workflows.len(), 13);
    assert!(by_label.workflows.iter().all(|w| w.labels["team"] == "a"));
    let completed = raw
        .list(v1::ListReq {
            statuses: vec![Status::Completed as i32],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        completed
            .workflows
            .iter()
            .map(|w| &w.id)
            .collect::<Vec<_>>(),
        vec![&ids[0]]
    );
    let none = raw
        .list(v1::ListReq {
            name: "other".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(none.workflows.is_empty());
    let first = c.status(&ids[0]).await.unwrap().created.unwrap();
    let before_first = raw
        .list(v1::ListReq {
            created_to: Some(first),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(before_first.workflows.is_empty());
    let e = raw
        .list(v1::ListReq {
            page_token: "garbage".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn clone_of_a_failed_workflow_reruns_only_what_did_not_complete() {
    let s = TestServer::start().await;
    let c = s.client().await;
    let failing = req::job("probe", &[("ms", "1"), ("fail", "true")]);
    let id = c
        .submit(req::work(
            "x",
            vec![
                req::block(1, vec![req::probe(1)]),
                req::block(1, vec![req::probe(1), failing, req::probe(1)]),
            ],
        ))
        .await
        .unwrap();
    c.exec(&id).await.unwrap();
    assert_eq!(wait_final(&c, &id).await.status, Status::Failed as i32);
    let mut raw = s.raw().await;
    let clone = clone_wf(
        &mut raw,
        v1::CloneReq {
            id: id.clone(),
            only_unfinished: true,
            trace_id: "0af7651916cd43dd8448eb211c80319c".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap()
    .into_inner()
    .id;
    let st = c.status(&clone).await.unwrap();
    assert_eq!(st.status, Status::NotStarted as i32);
    // The clone keeps the original's shape (so policies that require a
    // pre-check still hold); completed jobs are carried over, not re-run.
    assert_eq!(st.blocks.len(), 2);
    let statuses: Vec<Vec<i32>> = st
        .blocks
        .iter()
        .map(|b| b.jobs.iter().map(|j| j.status).collect())
        .collect();
    let (skip, new) = (Status::Skipped as i32, Status::NotStarted as i32);
    assert_eq!(statuses, [vec![skip], vec![skip, new, new]]);
    assert!(
        st.blocks[0].jobs[0]
            .error
            .contains(&format!("carried over: Completed in workflow {id}")),
        "{}",
        st.blocks[0].jobs[0].error
    );
    assert_eq!(st.labels["interlock.clonedFrom"], id);
    assert_eq!(st.trace_id, "0af7651916cd43dd8448eb211c80319c");
    c.exec(&clone).await.unwrap();
    assert_eq!(wait_final(&c, &clone).await.status, Status::Failed as i32);
    assert_eq!(
        s.probe.starts_of(&clone),
        [(1, 1)],
        "only the failed job ran again (and failed again, halting the block)"
    );
    // A full clone keeps everything; clones go through the policies again.
    let full = clone_wf(
        &mut raw,
        v1::CloneReq {
            id: id.clone(),
            ..Default::default()
        },
    )
    .await
    .unwrap()
    .into_inner()
    .id;
    assert_eq!(c.status(&full).await.unwrap().blocks.len(), 2);
    write_config(
        &s.config_path("policies.json"),
        r#"[{"Name": "x", "Policies": [{"Name": "restrictJobTypes", "Settings": {"AllowedJobs": ["sleep"]}}]}]"#,
    );
    eventually("tight policy", || async {
        clone_wf(
            &mut raw.clone(),
            v1::CloneReq {
                id: id.clone(),
                ..Default::default()
            },
        )
        .await
        .is_err()
    })
    .await;
    let e = clone_wf(
        &mut raw,
        v1::CloneReq {
            id: id.clone(),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
}

#[tokio::test]
async fn bad_ids_and_wrong_states_get_the_right_codes() {
    let s = TestServer::start().await;
    let mut raw = s.raw().await;
    let missing = "0190a5f0-0000-7000-8000-000000000000".to_string();
    let e = raw
        .cancel(v1::CancelReq {
            id: missing.clone(),
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = raw
        .pause(v1::PauseReq {
            id: missing.clone(),
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = raw
        .resume(v1::ResumeReq {
            id: missing.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = raw
        .watch(v1::WatchReq {
            id: missing.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = clone_wf(
        &mut raw,
        v1::CloneReq {
            id: missing,
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = raw
        .cancel(v1::CancelReq {
            id: "nope".into(),
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);

    let c = s.client().await;
    let id = c.submit(req::work("x", six(0))).await.unwrap();
    let e = raw
        .pause(v1::PauseReq {
            id: id.clone(),
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    let e = raw
        .resume(v1::ResumeReq { id: id.clone() })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    c.exec(&id).await.unwrap();
    wait_final(&c, &id).await;
    let e = raw
        .pause(v1::PauseReq {
            id,
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
}

/// The largest page still says when more rows exist (page sizes above the
/// maximum are clamped to it, not taken as "everything").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_largest_page_has_a_next_page_token() {
    let s = TestServer::start().await;
    let c = s.client().await;
    for chunk in 0..21 {
        let subs: Vec<_> = (0..50)
            .map(|i| {
                let c = c.clone();
                let mut r = req::work("x", vec![req::block(1, vec![req::probe(0)])]);
                r.desc = format!("{}", chunk * 50 + i);
                async move { c.submit(r).await.unwrap() }
            })
            .collect();
        futures::future::join_all(subs).await;
    }
    let mut raw = s.raw().await;
    for page_size in [1000, 5000] {
        let page = raw
            .list(v1::ListReq {
                page_size,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(page.workflows.len(), 1000, "page_size {page_size}");
        assert!(!page.next_page_token.is_empty(), "page_size {page_size}");
        let rest = raw
            .list(v1::ListReq {
                page_size,
                page_token: page.next_page_token,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(rest.workflows.len(), 50);
        assert!(rest.next_page_token.is_empty());
    }
}
