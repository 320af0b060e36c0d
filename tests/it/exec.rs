//! Exec and Status error codes.

use interlock_core::clock::ManualClock;
use interlock_proto::v1;
use interlock_tests::{TestServer, req, wait_final};
use std::time::Duration;
use tonic::Code;

#[tokio::test]
async fn exec_and_status_of_unknown_ids_are_not_found() {
    // The ancestor answered InvalidArgument here.
    let s = TestServer::start().await;
    let mut c = s.raw().await;
    let id = uuid_like();
    let e = c.exec(v1::ExecReq { id: id.clone() }).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert!(e.message().contains(&id));
    let e = c.status(v1::StatusReq { id }).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = c
        .status(v1::StatusReq {
            id: "not-an-id".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
}

fn uuid_like() -> String {
    "0190a5f0-0000-7000-8000-000000000000".into()
}

#[tokio::test]
async fn exec_twice_is_already_exists_even_when_racing() {
    let s = TestServer::start().await;
    let c = s.client().await;
    let id = c
        .submit(req::work("x", vec![req::block(1, vec![req::probe(20)])]))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let mut raw = s.raw().await;
        let id = id.clone();
        tasks.push(tokio::spawn(
            async move { raw.exec(v1::ExecReq { id }).await },
        ));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(e) => assert_eq!(e.code(), Code::AlreadyExists, "{e:?}"),
        }
    }
    assert_eq!(ok, 1, "exactly one Exec starts the workflow");
    let done = wait_final(&c, &id).await;
    assert_eq!(done.status, v1::Status::Completed as i32);
    assert_eq!(s.probe.starts_of(&id).len(), 1, "the job ran once");
    let e = s.raw().await.exec(v1::ExecReq { id }).await.unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists);
    assert!(e.message().contains("Completed"), "{}", e.message());
}

#[tokio::test]
async fn stale_submission_is_failed_precondition() {
    // The engine's clock is pinned: the submission ages by an hour and a
    // minute without the test waiting for it.
    let clock = ManualClock::new(interlock_core::now_micros());
    let s = TestServer::start_with_clock(clock.clone(), |_| {}).await;
    let c = s.client().await;
    let id = c
        .submit(req::work("x", vec![req::block(1, vec![req::probe(0)])]))
        .await
        .unwrap();
    clock.advance(Duration::from_secs(3_660));
    let e = c.exec(&id).await.unwrap_err();
    assert_eq!(e.code(), Some(Code::FailedPrecondition));
    assert!(
        e.to_string()
            .contains("more than the 3600s allowed before Exec; submit it again"),
        "{e}"
    );
    assert!(s.probe.starts_of(&id).is_empty());
}

#[tokio::test]
async fn status_has_ids_timestamps_and_outputs() {
    let s = TestServer::start().await;
    let c = s.client().await;
    let mut r = req::work("x", vec![req::block(1, vec![req::probe(5)])]);
    r.labels.insert("team".into(), "sre".into());
    r.trace_id = "4bf92f3577b34da6a3ce929d0e0e4736".into();
    let id = c.submit(r).await.unwrap();
    let before = c.status(&id).await.unwrap();
    assert_eq!(before.status, v1::Status::NotStarted as i32);
    assert!(before.created.is_some() && before.started.is_none());
    c.exec(&id).await.unwrap();
    let st = wait_final(&c, &id).await;
    assert_eq!(st.id, id);
    assert_eq!(st.labels["team"], "sre");
    assert_eq!(st.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    let (created, started, ended) = (st.created.unwrap(), st.started.unwrap(), st.ended.unwrap());
    assert!(created.seconds <= started.seconds && started.seconds <= ended.seconds);
    let job = &st.blocks[0].jobs[0];
    assert_eq!(job.status, v1::Status::Completed as i32);
    assert_eq!(job.outputs["waitedMs"], "5");
    assert!(job.started.is_some() && job.ended.is_some());
    assert_eq!(job.attempts.len(), 1);
    assert!(st.blocks[0].started.is_some() && st.blocks[0].ended.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_rpcs_are_bounded_with_resource_exhausted() {
    let s = TestServer::start_with(|c| c.max_in_flight = 2).await;
    // Large submits keep the server busy; with a limit of 2, some of 64
    // calls released together must be refused at once, and the rest pass.
    // (The layer's exact behaviour is unit-tested in crates/server/src/limit.rs.)
    let big = req::work(
        "x",
        vec![req::block(1, (0..5000).map(|_| req::probe(0)).collect())],
    );
    let mut clients = Vec::new();
    for _ in 0..64 {
        clients.push(s.raw().await);
    }
    let go = std::sync::Arc::new(tokio::sync::Barrier::new(64));
    let mut tasks = Vec::new();
    for mut c in clients {
        let (big, go) = (big.clone(), go.clone());
        tasks.push(tokio::spawn(async move {
            go.wait().await;
            c.submit(big).await.map(|_| ())
        }));
    }
    let (mut ok, mut exhausted) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => ok += 1,
            Err(e) if e.code() == Code::ResourceExhausted => {
                assert!(e.message().contains("limit of 2"));
                exhausted += 1
            }
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert!(ok >= 1 && exhausted >= 1, "ok={ok} exhausted={exhausted}");
}
