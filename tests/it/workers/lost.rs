//! Lost workers, late results, and server restarts under running workers.

use super::*;

#[tokio::test]
async fn a_lost_worker_s_safe_task_runs_on_another() {
    let s = server().await;
    let runs = Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    let first = spawn(
        Worker::new(&s.addr(), opts(), "doomed").handle("hang", move |t| {
            r.fetch_add(1, Ordering::SeqCst);
            async move {
                t.cancel.cancelled().await;
                Err(TaskError::cancelled())
            }
        }),
    );
    online(&s, 1).await;
    let id = run(&s, vec![req::job("hang", &[])]).await;
    runs_reach(&runs, 1, "the first worker has the task").await;
    // The second worker joins, then the first dies: the task moves.
    let second = spawn(
        Worker::new(&s.addr(), opts(), "healthy")
            .handle("hang", |_| async { Ok(Default::default()) }),
    );
    online(&s, 2).await;
    first.cancel();
    let done = wait_final(&s.client().await, &id).await;
    assert_eq!(done.status, v1::Status::Completed as i32, "{done:?}");
    second.cancel();
}

#[tokio::test]
async fn a_lost_worker_s_unsafe_task_is_interrupted_until_an_operator_decides() {
    let mut s = TestServer::start_with(|c| {
        write_config(&c.configs.join("jobs.json"), JOBS);
        c.worker_ttl = Duration::from_millis(500);
        enable_auth(
            c,
            &[("wiper", "wiper-secret"), ("ops", "ops-secret")],
            r#"{"roles": {"worker": [{"actions": ["work"], "workflows": ["wipe"]}],
                          "ops": [{"actions": ["admin"], "workflows": ["*"]}]},
                "bindings": [{"identity": "token:wiper", "roles": ["worker"]},
                             {"identity": "token:ops", "roles": ["ops"]}]}"#,
        );
    })
    .await;
    let wiper = || {
        let mut o = opts();
        o.credentials.token = Some("wiper-secret".into());
        o
    };
    let mut ops = opts();
    ops.credentials.token = Some("ops-secret".into());
    let runs = Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    let doomed = spawn(
        Worker::new(&s.addr(), wiper(), "doomed").handle("wipe", move |t| {
            r.fetch_add(1, Ordering::SeqCst);
            async move {
                t.cancel.cancelled().await;
                Err(TaskError::cancelled())
            }
        }),
    );
    let c = interlock_client::Client::connect(&s.addr(), ops.clone())
        .await
        .unwrap();
    let id = c
        .submit(req::work(
            "x",
            vec![req::block(1, vec![req::job("wipe", &[])])],
        ))
        .await
        .unwrap();
    c.exec(&id).await.unwrap();
    runs_reach(&runs, 1, "the worker has the task").await;
    doomed.cancel();
    eventually("the workflow waits for an operator", || {
        let (c, id) = (c.clone(), id.clone());
        async move { c.status(&id).await.unwrap().status == v1::Status::Paused as i32 }
    })
    .await;
    let st = c.status(&id).await.unwrap();
    let job = &st.blocks[0].jobs[0];
    assert_eq!(job.status, v1::Status::Interrupted as i32, "{st:?}");
    assert!(job.error.contains("not safe to run twice"), "{}", job.error);
    assert!(st.reason.contains("ResolveJob"), "{}", st.reason);
    // A new worker is not handed the task on its own...
    let done_runs = Arc::new(AtomicUsize::new(0));
    let d = done_runs.clone();
    let healthy = spawn(
        Worker::new(&s.addr(), wiper(), "healthy").handle("wipe", move |_| {
            d.fetch_add(1, Ordering::SeqCst);
            async { Ok(Default::default()) }
        }),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(done_runs.load(Ordering::SeqCst), 0);
    // ...only after an operator says run it again.
    c.raw()
        .resolve_job(v1::ResolveJobReq {
            id: id.clone(),
            block: 0,
            job: 0,
            action: v1::resolve_job_req::Action::Retry as i32,
            ..Default::default()
        })
        .await
        .unwrap();
    let done = wait_final(&c, &id).await;
    assert_eq!(done.status, v1::Status::Completed as i32, "{done:?}");
    assert_eq!(done_runs.load(Ordering::SeqCst), 1);
    healthy.cancel();
    s.stop().await;
}

#[tokio::test]
async fn a_result_sent_after_the_lease_moved_is_refused() {
    let s = server().await;
    // A worker that takes the task and then says nothing (paused, cut off).
    let (mut silent, _keep_open) = raw_session(&s, None, &["hang"]).await.unwrap();
    let id = run(&s, vec![req::job("hang", &[])]).await;
    let task = match silent.message().await.unwrap() {
        Some(v1::ServerMsg {
            msg: Some(v1::server_msg::Msg::Task(t)),
        }) => t,
        other => panic!("expected a task, got {other:?}"),
    };
    assert_eq!(task.workflow_id, id);
    // Past the ttl another worker gets it and finishes it.
    let stop = spawn(
        Worker::new(&s.addr(), opts(), "healthy")
            .handle("hang", |_| async { Ok(Default::default()) }),
    );
    let done = wait_final(&s.client().await, &id).await;
    assert_eq!(done.status, v1::Status::Completed as i32, "{done:?}");
    // The silent worker wakes up and reports: refused, nothing recorded.
    let mut wc = WorkerClient::connect(s.addr()).await.unwrap();
    let late = wc
        .complete(v1::TaskResult {
            lease_id: task.lease_id.clone(),
            outcome: Some(v1::task_result::Outcome::Failed(v1::TaskFailed {
                message: "late".into(),
                ..Default::default()
            })),
            log_lines: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(late.code(), Code::FailedPrecondition, "{late:?}");
    assert!(late.message().contains("not held"), "{late:?}");
    let e = wc
        .checkpoint(v1::TaskCheckpoint {
            lease_id: task.lease_id,
            state: "late".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    let after = s.client().await.status(&id).await.unwrap();
    assert_eq!(after.status, v1::Status::Completed as i32);
    stop.cancel();
}

#[tokio::test]
async fn workers_reconnect_after_a_server_restart_and_the_work_resumes() {
    let mut s = server().await;
    let runs = Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    let stop = spawn(
        Worker::new(&s.addr(), opts(), "w1").handle("hang", move |t| {
            let n = r.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 0 {
                    // The first run never ends by itself: the server goes away.
                    t.cancel.cancelled().await;
                    return Err(TaskError::cancelled());
                }
                Ok(Default::default())
            }
        }),
    );
    online(&s, 1).await;
    let id = run(&s, vec![req::job("hang", &[])]).await;
    runs_reach(&runs, 1, "the worker has the task").await;
    s.restart().await;
    let done = wait_final(&s.client().await, &id).await;
    assert_eq!(done.status, v1::Status::Completed as i32, "{done:?}");
    assert_eq!(
        runs.load(Ordering::SeqCst),
        2,
        "safe: run again after the restart"
    );
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_server_is_sigkilled_workers_reconnect_and_its_work_resumes() {
    use interlock_tests::daemon::DaemonSpec;
    let dir = tempfile::tempdir().unwrap();
    let spec = DaemonSpec::new(interlock_tests::interlockd!(), dir.path());
    let configs = dir.path().join("configs");
    interlock_tests::admit_x(&configs);
    write_config(
        &configs.join("jobs.json"),
        r#"{"jobs": [{"name": "hang", "idempotency": "safe"},
                     {"name": "wipe", "idempotency": "unsafe"}]}"#,
    );
    let mut d = spec.clone().spawn().expect("interlockd starts");
    let addr = d.url();
    let runs = Arc::new(AtomicUsize::new(0));
    let (r, w) = (runs.clone(), Arc::new(AtomicUsize::new(0)));
    let wipes = w.clone();
    let stop = spawn(
        Worker::new(&addr, opts(), "survivor")
            .capacity(2)
            .handle("hang", move |t| {
                let n = r.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n == 0 {
                        t.cancel.cancelled().await; // its server dies under it
                        return Err(TaskError::cancelled());
                    }
                    Ok(Default::default())
                }
            })
            .handle("wipe", move |t| {
                w.fetch_add(1, Ordering::SeqCst);
                async move {
                    t.cancel.cancelled().await;
                    Err(TaskError::cancelled())
                }
            }),
    );
    let c = interlock_client::Client::connect(&addr, opts())
        .await
        .unwrap();
    let submit = |job: &str| {
        let (c, job) = (c.clone(), job.to_string());
        async move {
            let id = c
                .submit(req::work(
                    "x",
                    vec![req::block(1, vec![req::job(&job, &[])])],
                ))
                .await
                .unwrap();
            c.exec(&id).await.unwrap();
            id
        }
    };
    let safe = submit("hang").await;
    let unsafe_ = submit("wipe").await;
    eventually("the worker runs both", || {
        let (a, b) = (runs.clone(), wipes.clone());
        async move { a.load(Ordering::SeqCst) == 1 && b.load(Ordering::SeqCst) == 1 }
    })
    .await;
    d.kill();
    let d = spec
        .listen(d.addr.clone())
        .spawn()
        .expect("interlockd restarts");
    let c = d.client().await;
    let st = wait_final(&c, &safe).await;
    assert_eq!(st.status, v1::Status::Completed as i32, "{st:?}");
    assert_eq!(runs.load(Ordering::SeqCst), 2, "the safe job ran again");
    // The unsafe one is not run again behind anyone's back.
    let st = c.status(&unsafe_).await.unwrap();
    assert_eq!(st.status, v1::Status::Paused as i32, "{st:?}");
    assert_eq!(st.blocks[0].jobs[0].status, v1::Status::Interrupted as i32);
    assert_eq!(wipes.load(Ordering::SeqCst), 1);
    stop.cancel();
}
