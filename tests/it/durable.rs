//! Durable execution in-process: resume after a restart without repeating
//! work, operator decisions for unsafe jobs, the e-stop at resume, and
//! idempotent Submit.

use interlock_jobs::EraseTarget;
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

/// A job that finishes while the server drains for shutdown is recorded
/// as done (even the last of its block, whose end otherwise waits for the
/// block's): the next start does not take it for interrupted.
#[tokio::test]
async fn a_job_that_ends_during_the_shutdown_drain_is_recorded_done() {
    let mut s = TestServer::start().await;
    let id = restarted_while_running(&mut s, vec![unsafe_probe(100)]).await;
    let c = s.client().await;
    let st = wait_final(&c, &id).await;
    assert_eq!(st.status, Status::Completed as i32, "{}", st.reason);
    assert_eq!(st.blocks[0].jobs[0].status, Status::Completed as i32);
    assert_eq!(s.unsafe_probe.starts_of(&id).len(), 1, "ran once");
}

/// Runs one block of `jobs` (the first an unsafe probe) and restarts the
/// server (a graceful stop) once that probe has started; the workflow's id.
async fn restarted_while_running(s: &mut TestServer, jobs: Vec<v1::Job>) -> String {
    let c = s.client().await;
    let id = c
        .submit(req::work("x", vec![req::block(1, jobs)]))
        .await
        .unwrap();
    c.exec(&id).await.unwrap();
    eventually("unsafe job running", || async {
        !s.unsafe_probe.starts_of(&id).is_empty()
    })
    .await;
    s.restart().await;
    id
}

async fn interrupted(s: &mut TestServer) -> String {
    let id = restarted_while_running(s, vec![unsafe_probe(60_000), req::probe(0)]).await;
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
async fn a_workflow_whose_name_is_stopped_or_drained_stays_stopped_at_resume() {
    // A drain ends it too: resuming would start its jobs again.
    for mode in [v1::EsMode::Stop, v1::EsMode::Drain] {
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
        let word = if mode == v1::EsMode::Stop {
            "stop"
        } else {
            "drain"
        };
        write_config(
            &s.config_path("es.json"),
            &format!(r#"[{{"Name": "x", "Status": "{word}", "Reason": "maintenance window"}}]"#),
        );
        s.boot_again().await;
        let st = s.client().await.status(&id).await.unwrap();
        assert_eq!(st.status, Status::Stopped as i32, "{word}");
        assert!(st.was_es_stopped);
        assert_eq!(st.halted_by, mode as i32, "{word}: {}", st.reason);
        assert!(st.reason.contains("maintenance window"), "{}", st.reason);
        assert!(
            st.reason.contains(&format!("emergency {word}")),
            "{}",
            st.reason
        );
        assert_eq!(st.blocks[0].jobs[0].status, Status::Stopped as i32);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(s.probe.starts_of(&id).len(), 1, "{word}: nothing resumed");
    }
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

/// A TCP proxy that forwards everything, except that on its first
/// connection it closes both sides as soon as the server starts a response
/// (the first HTTP/2 HEADERS frame on a stream): the request arrived and was
/// handled, the answer never reaches the client.
async fn lose_first_reply(upstream: std::net::SocketAddr) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut first = true;
        loop {
            let Ok((client, _)) = listener.accept().await else {
                return;
            };
            let server = tokio::net::TcpStream::connect(upstream).await.unwrap();
            let drop_reply = std::mem::replace(&mut first, false);
            tokio::spawn(async move {
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let up = tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut cr, &mut sw).await;
                });
                // Server → client, frame by frame (9-byte header, then payload).
                loop {
                    let mut head = [0u8; 9];
                    if sr.read_exact(&mut head).await.is_err() {
                        break;
                    }
                    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
                    let stream =
                        u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
                    if drop_reply && head[3] == 0x1 && stream != 0 {
                        break; // the reply's HEADERS: lose it and the connection
                    }
                    let mut payload = vec![0u8; len];
                    if sr.read_exact(&mut payload).await.is_err()
                        || cw.write_all(&head).await.is_err()
                        || cw.write_all(&payload).await.is_err()
                    {
                        break;
                    }
                }
                up.abort();
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_submit_whose_reply_is_lost_is_retried_into_the_same_workflow() {
    let s = TestServer::start().await;
    let proxy = lose_first_reply(s.socket()).await;
    let c = interlock_client::Client::connect(
        &proxy.to_string(),
        interlock_client::Options {
            max_attempts: 3,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let mut r = req::work("x", vec![req::block(1, vec![req::probe(1)])]);
    r.labels.insert("lost-reply".into(), "1".into());
    let id = c.submit(r).await.expect("the client retries a lost reply");
    let listed = s
        .raw()
        .await
        .list(v1::ListReq {
            labels: [("lost-reply".to_string(), "1".to_string())].into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .workflows;
    assert_eq!(listed.len(), 1, "one workflow, not one per attempt");
    assert_eq!(
        listed[0].id, id,
        "the retry answered with the first attempt's id"
    );
    // The server saw both attempts: the first created it, the retry was
    // answered from the request id.
    let submits: Vec<String> = s
        .audit_log()
        .await
        .into_iter()
        .filter(|e| e.action == "submit" && e.target == id)
        .map(|e| e.detail)
        .collect();
    assert_eq!(submits.len(), 2, "{submits:?}");
    assert!(
        submits.iter().any(|d| d.contains("already used")),
        "{submits:?}"
    );
}

/// A workflow that outlives its job type (accepted by a server that knew
/// `unsafeProbe`, resumed by one that does not): the job fails saying why,
/// and the workflow does not end Completed as if it had run.
#[tokio::test]
async fn a_job_whose_type_is_gone_fails_instead_of_completing() {
    let mut s = TestServer::start().await;
    let c = s.client().await;
    let id = c
        .submit(req::work(
            "x",
            vec![
                req::block(1, vec![req::probe(1_500)]),
                req::block(1, vec![unsafe_probe(0)]),
            ],
        ))
        .await
        .unwrap();
    c.exec(&id).await.unwrap();
    eventually("block 0 running", || async {
        s.probe.starts_of(&id).contains(&(0, 0))
    })
    .await;
    s.stop().await;
    // The same files, but only `probe` is registered.
    let running = interlock_server::ServerBuilder::new(s.config.clone())
        .job(s.probe.clone())
        .start()
        .await
        .expect("server starts");
    let c = interlock_client::Client::connect(&running.addr.to_string(), Default::default())
        .await
        .unwrap();
    let st = wait_final(&c, &id).await;
    assert_eq!(st.status, Status::Failed as i32, "{st:?}");
    let job = &st.blocks[1].jobs[0];
    assert_eq!(job.status, Status::Failed as i32, "{job:?}");
    assert!(
        job.error.contains("\"unsafeProbe\" is not registered"),
        "{job:?}"
    );
    assert_eq!(s.unsafe_probe.starts_of(&id), vec![], "it never ran");
    running.shutdown().await.unwrap();
}
