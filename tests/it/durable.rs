//! Durable execution in-process: resume after a restart without repeating
//! work, operator decisions for unsafe jobs, the e-stop at resume, and
//! idempotent Submit.

use interlock_engine::jobs::EraseTarget;
use interlock_proto::v1::{self, Status, resolve_job_req::Action};
use interlock_tests::{TestServer, eventually, req, wait_final, write_config};
use std::time::Duration;
use tonic::Code;

fn unsafe_probe(ms: u64) -> v1::Job {
    req::job("unsafeProbe", &[("ms", &ms.to_string())])
}

#[tokio::test]
async fn a_restart_resumes_without_rerunning_completed_jobs() {
    let mut s = TestServer::start().await;
    let c = s.client().await;
    let id = c
        .submit(req::work(
            "x",
            vec![
                req::block(2, vec![req::probe(0), req::probe(0)]),
                req::block(1, vec![req::probe(1_500), req::probe(0)]),
            ],
        ))
        .await
        .unwrap();
    c.exec(&id).await.unwrap();
    eventually("block 1 running", || async {
        s.probe.starts_of(&id).contains(&(1, 0))
    })
    .await;
    s.restart().await;
    let c = s.client().await;
    let st = wait_final(&c, &id).await;
    assert_eq!(st.status, Status::Completed as i32, "{}", st.reason);
    let starts = s.probe.starts_of(&id);
    let count = |k| starts.iter().filter(|s| **s == k).count();
    assert_eq!(
        (count((0, 0)), count((0, 1))),
        (1, 1),
        "completed jobs not re-run: {starts:?}"
    );
    assert_eq!(count((1, 0)), 2, "the interrupted safe job ran again");
    assert_eq!(count((1, 1)), 1);
    let attempts = &st.blocks[1].jobs[0].attempts;
    assert!(
        attempts[0]
            .error
            .contains("interrupted by a server restart"),
        "{attempts:?}"
    );
}

async fn interrupted(s: &mut TestServer) -> String {
    let c = s.client().await;
    let id = c
        .submit(req::work(
            "x",
            vec![req::block(1, vec![unsafe_probe(60_000), req::probe(0)])],
        ))
        .await
        .unwrap();
    c.exec(&id).await.unwrap();
    eventually("unsafe job running", || async {
        !s.unsafe_probe.starts_of(&id).is_empty()
    })
    .await;
    s.restart().await;
    let st = s.client().await.status(&id).await.unwrap();
    assert_eq!(st.status, Status::Paused as i32);
    assert!(
        st.reason.contains("awaiting an operator decision"),
        "{}",
        st.reason
    );
    assert_eq!(st.blocks[0].jobs[0].status, Status::Interrupted as i32);
    assert_eq!(s.unsafe_probe.starts_of(&id).len(), 1, "not re-run blindly");
    id
}

async fn resolve(s: &TestServer, id: &str, job: i32, action: Action) -> Result<(), tonic::Status> {
    s.raw()
        .await
        .resolve_job(v1::ResolveJobReq {
            id: id.into(),
            block: 0,
            job,
            action: action as i32,
            reason: "operator checked the target".into(),
        })
        .await
        .map(|_| ())
}

#[tokio::test]
async fn an_interrupted_unsafe_job_waits_for_an_operator_decision() {
    let mut s = TestServer::start().await;
    // Skip: counted as done, the rest runs.
    let id = interrupted(&mut s).await;
    assert_eq!(
        resolve(&s, &id, 1, Action::Skip).await.unwrap_err().code(),
        Code::FailedPrecondition
    );
    assert_eq!(
        resolve(&s, &id, 7, Action::Skip).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    resolve(&s, &id, 0, Action::Skip).await.unwrap();
    let st = wait_final(&s.client().await, &id).await;
    assert_eq!(st.status, Status::Completed as i32, "{}", st.reason);
    assert_eq!(st.blocks[0].jobs[0].status, Status::Skipped as i32);
    assert_eq!(s.unsafe_probe.starts_of(&id).len(), 1);
    assert_eq!(
        resolve(&s, &id, 0, Action::Retry).await.unwrap_err().code(),
        Code::FailedPrecondition
    );

    // Cancel: the workflow ends Cancelled, nothing else runs.
    let id = interrupted(&mut s).await;
    resolve(&s, &id, 0, Action::Cancel).await.unwrap();
    let st = s.client().await.status(&id).await.unwrap();
    assert_eq!(st.status, Status::Cancelled as i32);
    assert!(st.reason.contains("operator checked the target"));
    assert!(s.probe.starts_of(&id).is_empty());
}

#[tokio::test]
async fn retry_runs_an_interrupted_job_again() {
    let mut s = TestServer::start().await;
    let c = s.client().await;
    let id = c
        .submit(req::work(
            "x",
            vec![req::block(1, vec![unsafe_probe(1_500)])],
        ))
        .await
        .unwrap();
    c.exec(&id).await.unwrap();
    eventually("running", || async {
        !s.unsafe_probe.starts_of(&id).is_empty()
    })
    .await;
    s.restart().await;
    resolve(&s, &id, 0, Action::Retry).await.unwrap();
    let st = wait_final(&s.client().await, &id).await;
    assert_eq!(st.status, Status::Completed as i32, "{}", st.reason);
    assert_eq!(s.unsafe_probe.starts_of(&id).len(), 2);
}

#[tokio::test]
async fn a_workflow_whose_name_is_stopped_stays_stopped_at_resume() {
    let mut s = TestServer::start().await;
    let c = s.client().await;
    let id = c
        .submit(req::work(
            "x",
            vec![req::block(1, vec![req::probe(60_000), req::probe(0)])],
        ))
        .await
        .unwrap();
    c.exec(&id).await.unwrap();
    eventually("running", || async { !s.probe.starts_of(&id).is_empty() }).await;
    s.stop().await;
    write_config(
        &s.config_path("es.json"),
        r#"[{"Name": "x", "Status": "stop", "Reason": "maintenance window"}]"#,
    );
    s.boot_again().await;
    let st = s.client().await.status(&id).await.unwrap();
    assert_eq!(st.status, Status::Stopped as i32);
    assert!(st.was_es_stopped);
    assert!(st.reason.contains("maintenance window"), "{}", st.reason);
    assert_eq!(st.blocks[0].jobs[0].status, Status::Stopped as i32);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(s.probe.starts_of(&id).len(), 1, "nothing resumed");
}

#[tokio::test]
async fn a_disk_erase_reattaches_after_a_restart_instead_of_erasing_twice() {
    let mut s = TestServer::start_with(|c| c.erase_duration = Duration::from_millis(1_500)).await;
    let c = s.client().await;
    let id = c
        .submit(req::work(
            "x",
            vec![req::block(
                1,
                vec![req::job(
                    "diskErase",
                    &[("machine", "aab00"), ("site", "aab")],
                )],
            )],
        ))
        .await
        .unwrap();
    c.exec(&id).await.unwrap();
    let log = s.config.erase_target_path();
    eventually("erase started on the target", || async {
        !EraseTarget::events(&log).is_empty()
    })
    .await;
    s.restart().await;
    let st = wait_final(&s.client().await, &id).await;
    assert_eq!(st.status, Status::Completed as i32, "{}", st.reason);
    let events: Vec<_> = EraseTarget::events(&log)
        .into_iter()
        .map(|e| e.event)
        .collect();
    assert_eq!(events, vec!["start", "done"], "one erase, re-attached");
    let job = &st.blocks[0].jobs[0];
    assert_eq!(job.outputs["machine"], "aab00");
}

#[tokio::test]
async fn submit_with_a_request_id_is_idempotent() {
    let s = TestServer::start().await;
    let mut raw = s.raw().await;
    let mut r = req::work("x", vec![req::block(1, vec![req::probe(0)])]);
    r.request_id = "deploy-42".into();
    let a = raw.submit(r.clone()).await.unwrap().into_inner().id;
    let b = raw.submit(r.clone()).await.unwrap().into_inner().id;
    assert_eq!(a, b, "a retried Submit returns the original id");
    r.desc = "something else".into();
    let e = raw.submit(r).await.unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists);
    assert!(
        e.message().contains("deploy-42") && e.message().contains(&a),
        "{}",
        e.message()
    );
}

#[tokio::test]
async fn request_ids_are_forgotten_after_the_window() {
    let s = TestServer::start_with(|c| c.request_id_window = Duration::from_millis(300)).await;
    let mut raw = s.raw().await;
    let mut r = req::work("x", vec![req::block(1, vec![req::probe(0)])]);
    r.request_id = "k".into();
    let first = raw.submit(r.clone()).await.unwrap().into_inner().id;
    eventually("key expired", || {
        let (mut raw, r, first) = (raw.clone(), r.clone(), first.clone());
        async move { raw.submit(r).await.unwrap().into_inner().id != first }
    })
    .await;
}
