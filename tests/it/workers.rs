//! Remote job types served by workers: declared in jobs.json, leased to
//! workers over the Worker service, cancelled by pushing, re-dispatched or
//! interrupted when a worker is lost, fenced when a lease moved.

use interlock_client::worker::{TaskError, Worker};
use interlock_proto::v1::{self, worker_client::WorkerClient};
use interlock_tests::{TestServer, enable_auth, eventually, req, wait_final, write_config};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tonic::Code;

const JOBS: &str = r#"{"jobs": [
  {"name": "ping", "description": "Answers with the host it was given", "idempotency": "safe",
   "args": [{"name": "host", "required": true, "format": "name", "description": "a host"}]},
  {"name": "wipe", "idempotency": "unsafe", "served_by": ["token:wiper"]},
  {"name": "hang", "idempotency": "safe"}
]}"#;

async fn server() -> TestServer {
    TestServer::start_with(|c| {
        write_config(&c.configs.join("jobs.json"), JOBS);
        c.worker_ttl = Duration::from_millis(500);
    })
    .await
}

fn opts() -> interlock_client::Options {
    interlock_client::Options::default()
}

/// Runs `w` until the returned token is cancelled (which closes its
/// session, as a killed worker's would be).
fn spawn(w: Worker) -> CancellationToken {
    let stop = CancellationToken::new();
    let s = stop.clone();
    tokio::spawn(async move { w.run(s).await });
    stop
}

async fn online(s: &TestServer, n: usize) {
    eventually("workers online", || async {
        let mut c = WorkerClient::connect(s.addr()).await.unwrap();
        let r = c.list_workers(v1::ListWorkersReq {}).await.unwrap();
        r.into_inner().workers.len() == n
    })
    .await;
}

/// Waits until `runs` reaches `n`.
async fn runs_reach(runs: &Arc<AtomicUsize>, n: usize, what: &str) {
    eventually(what, || {
        let r = runs.clone();
        async move { r.load(Ordering::SeqCst) == n }
    })
    .await;
}

async fn run(s: &TestServer, jobs: Vec<v1::Job>) -> String {
    let c = s.client().await;
    let id = c
        .submit(req::work("x", vec![req::block(4, jobs)]))
        .await
        .unwrap();
    c.exec(&id).await.unwrap();
    id
}

#[tokio::test]
async fn a_worker_runs_a_declared_job_and_its_outputs_and_identity_are_recorded() {
    let s = server().await;
    let stop = spawn(
        Worker::new(&s.addr(), opts(), "w1").handle("ping", |t| async move {
            let host = t.arg("host").unwrap_or_default().to_string();
            Ok([("pong".to_string(), host)].into())
        }),
    );
    online(&s, 1).await;
    let cat = s.client().await.job_catalog().await.unwrap();
    let ping = cat.jobs.iter().find(|j| j.name == "ping").unwrap();
    assert!(ping.runs_on.starts_with("workers (1 online"), "{ping:?}");
    assert!(ping.idempotent);
    let sleep = cat.jobs.iter().find(|j| j.name == "sleep").unwrap();
    assert_eq!(sleep.runs_on, "");

    let id = run(&s, vec![req::job("ping", &[("host", "h1")])]).await;
    let done = wait_final(&s.client().await, &id).await;
    assert_eq!(done.status, v1::Status::Completed as i32, "{done:?}");
    let job = &done.blocks[0].jobs[0];
    assert_eq!(job.outputs.get("pong").map(String::as_str), Some("h1"));
    let audit = s.audit_log().await;
    let e = audit
        .iter()
        .find(|e| e.action == "task.complete" && e.target == id)
        .expect("the completion is audited");
    assert!(e.identity.starts_with("anonymous"), "{e:?}");
    assert!(
        e.detail.contains("ping") && e.detail.contains("done"),
        "{e:?}"
    );
    stop.cancel();
}

#[tokio::test]
async fn submit_checks_a_remote_job_s_arguments_like_any_job() {
    let s = server().await;
    let e = s
        .client()
        .await
        .submit(req::work(
            "x",
            vec![req::block(1, vec![req::job("ping", &[])])],
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(Code::InvalidArgument), "{e}");
    assert!(e.to_string().contains("needs argument \"host\""), "{e}");
}

#[tokio::test]
async fn a_job_waits_for_a_worker_and_is_listed_as_waiting() {
    let s = server().await;
    let id = run(&s, vec![req::job("ping", &[("host", "h1")])]).await;
    let mut wc = WorkerClient::connect(s.addr()).await.unwrap();
    eventually("the task waits", || {
        let mut wc = wc.clone();
        let id = id.clone();
        async move {
            let r = wc
                .list_workers(v1::ListWorkersReq {})
                .await
                .unwrap()
                .into_inner();
            r.waiting
                .iter()
                .any(|w| w.workflow_id == id && w.since.is_some())
        }
    })
    .await;
    let st = s.client().await.status(&id).await.unwrap();
    let w = &st.blocks[0].jobs[0].waiting_for;
    assert!(
        w.starts_with("a worker serving ping (0 online), since 20"),
        "{w}"
    );
    let stop = spawn(
        Worker::new(&s.addr(), opts(), "late").handle("ping", |_| async { Ok(Default::default()) }),
    );
    let done = wait_final(&s.client().await, &id).await;
    assert_eq!(done.status, v1::Status::Completed as i32);
    let r = wc
        .list_workers(v1::ListWorkersReq {})
        .await
        .unwrap()
        .into_inner();
    assert!(r.waiting.is_empty());
    stop.cancel();
}

#[tokio::test]
async fn the_emergency_stop_cancels_a_task_on_its_worker() {
    let s = server().await;
    let started = Arc::new(tokio::sync::Notify::new());
    let saw_cancel = Arc::new(tokio::sync::Notify::new());
    let (st, sc) = (started.clone(), saw_cancel.clone());
    let stop = spawn(
        Worker::new(&s.addr(), opts(), "w1").handle("hang", move |t| {
            let (st, sc) = (st.clone(), sc.clone());
            async move {
                st.notify_one();
                t.cancel.cancelled().await;
                sc.notify_one();
                Err(TaskError::cancelled())
            }
        }),
    );
    online(&s, 1).await;
    let id = run(&s, vec![req::job("hang", &[])]).await;
    tokio::time::timeout(Duration::from_secs(10), started.notified())
        .await
        .expect("the worker starts the task");
    write_config(
        &s.config_path("es.json"),
        r#"[{"Name": "x", "Status": "stop", "Reason": "incident 7"}]"#,
    );
    tokio::time::timeout(Duration::from_secs(10), saw_cancel.notified())
        .await
        .expect("the handler's token fires");
    let done = wait_final(&s.client().await, &id).await;
    assert_eq!(done.status, v1::Status::Stopped as i32, "{done:?}");
    assert!(
        done.blocks[0].jobs[0].error.contains("incident 7"),
        "{done:?}"
    );
    stop.cancel();
}

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

/// A raw session: the hello is sent; returns the server's messages and the
/// sender that keeps the session open (drop it to close).
async fn raw_session(
    s: &TestServer,
    token: Option<&str>,
    types: &[&str],
) -> Result<
    (
        tonic::Streaming<v1::ServerMsg>,
        tokio::sync::mpsc::Sender<v1::WorkerMsg>,
    ),
    tonic::Status,
> {
    let mut wc = WorkerClient::connect(s.addr()).await.unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(v1::WorkerMsg {
        msg: Some(v1::worker_msg::Msg::Hello(v1::WorkerHello {
            name: "raw".into(),
            job_types: types.iter().map(|t| t.to_string()).collect(),
            capacity: 1,
        })),
    })
    .await
    .unwrap();
    let mut r = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    if let Some(t) = token {
        r.metadata_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    let mut inbound = wc.session(r).await?.into_inner();
    match inbound.message().await? {
        Some(v1::ServerMsg {
            msg: Some(v1::server_msg::Msg::Welcome(_)),
        }) => Ok((inbound, tx)),
        other => panic!("expected a welcome, got {other:?}"),
    }
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
async fn workers_offering_undeclared_types_or_lacking_the_grant_are_refused() {
    let s = TestServer::start_with(|c| {
        write_config(&c.configs.join("jobs.json"), JOBS);
        enable_auth(
            c,
            &[("pinger", "pinger-secret"), ("reader", "reader-secret")],
            r#"{"roles": {"pinger": [{"actions": ["work"], "workflows": ["ping", "wipe"]}],
                          "reader": [{"actions": ["read"], "workflows": ["*"]}]},
                "bindings": [{"identity": "token:pinger", "roles": ["pinger"]},
                             {"identity": "token:reader", "roles": ["reader"]}]}"#,
        );
    })
    .await;
    let code = |r: Result<_, tonic::Status>| r.map(|_| ()).unwrap_err();
    let e = code(raw_session(&s, Some("pinger-secret"), &["ping", "nuke"]).await);
    assert_eq!(e.code(), Code::PermissionDenied, "no grant on nuke: {e:?}");
    let e = code(raw_session(&s, Some("reader-secret"), &["ping"]).await);
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(
        e.message().contains("\"work\" on job type \"ping\""),
        "{e:?}"
    );
    // Granted, but jobs.json lets only token:wiper serve wipe.
    let e = code(raw_session(&s, Some("pinger-secret"), &["wipe"]).await);
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("token:wiper"), "{e:?}");
    assert!(
        raw_session(&s, Some("pinger-secret"), &["ping"])
            .await
            .is_ok()
    );
    // Undeclared, with authentication off.
    let open = server().await;
    let e = code(raw_session(&open, None, &["nuke"]).await);
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("not declared in jobs.json"), "{e:?}");
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

#[tokio::test]
async fn a_bad_jobs_json_keeps_the_last_good_declarations() {
    let s = server().await;
    write_config(
        &s.config_path("jobs.json"),
        r#"{"jobs": [{"name": "ping"}]}"#,
    );
    eventually("the bad file is reported", || async {
        s.audit_log()
            .await
            .iter()
            .any(|e| e.target == "jobs.json" && e.outcome == "invalid")
    })
    .await;
    let cat = s.client().await.job_catalog().await.unwrap();
    assert!(cat.jobs.iter().any(|j| j.name == "ping"));
    assert!(cat.jobs.iter().any(|j| j.name == "wipe"));
    write_config(
        &s.config_path("jobs.json"),
        r#"{"jobs": [{"name": "pong", "idempotency": "safe"}]}"#,
    );
    eventually("the good file is in force", || async {
        let cat = s.client().await.job_catalog().await.unwrap();
        cat.jobs.iter().any(|j| j.name == "pong") && !cat.jobs.iter().any(|j| j.name == "ping")
    })
    .await;
}

/// `python3` with grpcio and grpcio-tools, or why not. Under CI they are
/// installed by `.ci/run`, so a missing one fails the test there.
fn python_with_grpc() -> Result<(), String> {
    let out = std::process::Command::new("python3")
        .args(["-c", "import grpc, grpc_tools"])
        .output()
        .map_err(|e| format!("no python3: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_worker_serves_a_declared_type_and_is_cancelled_by_push() {
    if let Err(why) = python_with_grpc() {
        assert!(
            std::env::var_os("CI").is_none(),
            "python3 with grpcio and grpcio-tools is needed: {why}"
        );
        eprintln!("skipped: python3 with grpcio and grpcio-tools is not available: {why}");
        return;
    }
    let s = TestServer::start_with(|c| {
        write_config(
            &c.configs.join("jobs.json"),
            r#"{"jobs": [{"name": "pyEcho", "idempotency": "safe",
                "args": [{"name": "text", "required": true, "format": "text"},
                         {"name": "seconds", "format": "seconds"}]}]}"#,
        );
    })
    .await;
    let script = interlock_tests::repo().join("samples/python-worker/worker.py");
    let mut child = std::process::Command::new("python3")
        .arg(&script)
        .args(["--addr", &s.addr(), "--type", "pyEcho", "--name", "py-1"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 starts");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stderr = child.stderr.take();
    let _child = Kill(child);
    let mut wc = WorkerClient::connect(s.addr()).await.unwrap();
    for _ in 0..3000 {
        let r = wc
            .list_workers(v1::ListWorkersReq {})
            .await
            .unwrap()
            .into_inner();
        if r.workers.iter().any(|w| w.name == "py-1") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let r = wc
        .list_workers(v1::ListWorkersReq {})
        .await
        .unwrap()
        .into_inner();
    assert!(
        r.workers
            .iter()
            .any(|w| w.name == "py-1" && w.job_types == ["pyEcho"]),
        "the python worker never connected: {r:?} {:?}",
        stderr.map(|mut e| {
            let mut s = String::new();
            let _ = std::io::Read::read_to_string(&mut e, &mut s);
            s
        })
    );
    let c = s.client().await;
    let id = run(&s, vec![req::job("pyEcho", &[("text", "hello")])]).await;
    let done = wait_final(&c, &id).await;
    assert_eq!(done.status, v1::Status::Completed as i32, "{done:?}");
    let out = &done.blocks[0].jobs[0].outputs;
    assert_eq!(out.get("echo").map(String::as_str), Some("hello"));
    assert_eq!(out.get("worker").map(String::as_str), Some("python"));

    // A long task is cancelled by a push, not by waiting it out.
    let id = run(
        &s,
        vec![req::job("pyEcho", &[("text", "x"), ("seconds", "600")])],
    )
    .await;
    eventually("the python worker holds the task", || {
        let mut wc = wc.clone();
        async move {
            let r = wc
                .list_workers(v1::ListWorkersReq {})
                .await
                .unwrap()
                .into_inner();
            r.workers.iter().any(|w| w.leased == 1)
        }
    })
    .await;
    c.raw()
        .cancel(v1::CancelReq {
            id: id.clone(),
            reason: "not today".into(),
        })
        .await
        .unwrap();
    let done = wait_final(&c, &id).await;
    assert_eq!(done.status, v1::Status::Cancelled as i32, "{done:?}");
    let audit = s.audit_log().await;
    assert!(
        audit.iter().any(|e| e.action == "task.complete"
            && e.target == id
            && e.detail.contains("failed: cancelled")),
        "the worker confirmed the cancel: {audit:?}"
    );
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

#[tokio::test]
async fn a_task_carries_its_workflow_s_trace_to_the_worker() {
    let s = server().await;
    let seen = Arc::new(std::sync::Mutex::new(String::new()));
    let got = seen.clone();
    let stop = spawn(
        Worker::new(&s.addr(), opts(), "w1").handle("ping", move |t| {
            *got.lock().unwrap() = t.task.traceparent.clone();
            async { Ok(Default::default()) }
        }),
    );
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let mut w = req::work(
        "x",
        vec![req::block(1, vec![req::job("ping", &[("host", "h")])])],
    );
    w.trace_id = trace.into();
    let c = s.client().await;
    let id = c.submit(w).await.unwrap();
    c.exec(&id).await.unwrap();
    assert_eq!(
        wait_final(&c, &id).await.status,
        v1::Status::Completed as i32
    );
    let tp = seen.lock().unwrap().clone();
    assert!(
        tp.starts_with(&format!("00-{trace}-")) && tp.len() == 55,
        "{tp}"
    );
    stop.cancel();
}

/// Workers on `s` as `token` sees them.
async fn workers_seen(s: &TestServer, token: &str) -> usize {
    let mut c = WorkerClient::connect(s.addr()).await.unwrap();
    let r = c
        .list_workers(interlock_tests::bearer(token, v1::ListWorkersReq {}))
        .await
        .unwrap();
    r.into_inner().workers.len()
}

#[tokio::test]
async fn revoking_a_worker_s_grant_or_token_ends_its_session() {
    const RBAC: &str = r#"{"roles": {"worker": [{"actions": ["work"], "workflows": ["wipe"]}],
                          "ops": [{"actions": ["admin"], "workflows": ["*"]}]},
                "bindings": [{"identity": "token:wiper", "roles": ["worker"]},
                             {"identity": "token:ops", "roles": ["ops"]}]}"#;
    let tokens = [("wiper", "wiper-secret"), ("ops", "ops-secret")];
    let s = TestServer::start_with(|c| {
        write_config(&c.configs.join("jobs.json"), JOBS);
        enable_auth(c, &tokens, RBAC);
    })
    .await;
    let start = || {
        let mut o = opts();
        o.credentials.token = Some("wiper-secret".into());
        let w =
            Worker::new(&s.addr(), o, "wiper").handle("wipe", |_| async { Ok(Default::default()) });
        tokio::spawn(async move { w.run(CancellationToken::new()).await })
    };
    // The grant goes: the session ends, and the worker is refused when it
    // comes back.
    let worker = start();
    eventually("the worker connects", || async {
        workers_seen(&s, "ops-secret").await == 1
    })
    .await;
    write_config(
        &s.config_path("rbac.json"),
        &RBAC.replace(r#"["work"]"#, r#"["read"]"#),
    );
    eventually("its session ends", || async {
        workers_seen(&s, "ops-secret").await == 0
    })
    .await;
    let e = tokio::time::timeout(Duration::from_secs(20), worker)
        .await
        .expect("the worker gives up")
        .unwrap()
        .unwrap_err();
    assert_eq!(e.code(), Some(Code::PermissionDenied), "{e}");

    // The token goes: the same. (Until the restored grant is in force a
    // new worker is refused and stops: start it again until it stays.)
    write_config(&s.config_path("rbac.json"), RBAC);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut worker = start();
    while workers_seen(&s, "ops-secret").await != 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the worker never came back"
        );
        if worker.is_finished() {
            worker = start();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let only_ops = serde_json::json!({"tokens": [
        {"name": "ops", "sha256": interlock_auth::tokens::hash("ops-secret")}]});
    write_config(&s.config_path("tokens.json"), &only_ops.to_string());
    eventually("its session ends", || async {
        workers_seen(&s, "ops-secret").await == 0
    })
    .await;
    let e = tokio::time::timeout(Duration::from_secs(20), worker)
        .await
        .expect("the worker gives up")
        .unwrap()
        .unwrap_err();
    assert_eq!(e.code(), Some(Code::Unauthenticated), "{e}");
}

#[tokio::test]
async fn a_type_taken_out_of_jobs_json_ends_the_sessions_offering_it() {
    let s = server().await;
    let stop = spawn(
        Worker::new(&s.addr(), opts(), "w1").handle("hang", |_| async { Ok(Default::default()) }),
    );
    online(&s, 1).await;
    write_config(
        &s.config_path("jobs.json"),
        r#"{"jobs": [{"name": "ping", "idempotency": "safe"}]}"#,
    );
    online(&s, 0).await;
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_token_expires_loses_its_session() {
    // Three seconds from now, as tokens.json writes it.
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3;
    let out = std::process::Command::new("date")
        .args(["-u", "-d", &format!("@{secs}"), "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .unwrap();
    let expires = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let s = TestServer::start_with(|c| {
        write_config(&c.configs.join("jobs.json"), JOBS);
        enable_auth(
            c,
            &[("pinger", "pinger-secret"), ("ops", "ops-secret")],
            r#"{"roles": {"w": [{"actions": ["work"], "workflows": ["ping"]}],
                          "ops": [{"actions": ["admin"], "workflows": ["*"]}]},
                "bindings": [{"identity": "token:pinger", "roles": ["w"]},
                             {"identity": "token:ops", "roles": ["ops"]}]}"#,
        );
        let tokens = serde_json::json!({"tokens": [
            {"name": "pinger", "sha256": interlock_auth::tokens::hash("pinger-secret"), "expires": expires},
            {"name": "ops", "sha256": interlock_auth::tokens::hash("ops-secret")}]});
        write_config(&c.configs.join("tokens.json"), &tokens.to_string());
    })
    .await;
    let mut o = opts();
    o.credentials.token = Some("pinger-secret".into());
    let w =
        Worker::new(&s.addr(), o, "pinger").handle("ping", |_| async { Ok(Default::default()) });
    let worker = tokio::spawn(async move { w.run(CancellationToken::new()).await });
    eventually("the worker connects", || async {
        workers_seen(&s, "ops-secret").await == 1
    })
    .await;
    // No file changes: the expiry alone ends the session.
    let e = tokio::time::timeout(Duration::from_secs(20), worker)
        .await
        .expect("the worker is turned away")
        .unwrap()
        .unwrap_err();
    assert_eq!(e.code(), Some(Code::Unauthenticated), "{e}");
    assert_eq!(workers_seen(&s, "ops-secret").await, 0);
}
