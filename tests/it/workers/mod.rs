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

mod access;
mod lost;
mod python;

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
        listing(s).await.workers.len() == n
    })
    .await;
}

/// Every log line recorded for workflow `id`.
async fn log_lines(s: &TestServer, id: &str) -> Vec<v1::LogLine> {
    s.raw()
        .await
        .logs(v1::LogsReq {
            id: id.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .lines
}

/// Workers connected and tasks waiting, as ListWorkers says (no token).
async fn listing(s: &TestServer) -> v1::ListWorkersResp {
    let mut c = WorkerClient::connect(s.addr()).await.unwrap();
    c.list_workers(v1::ListWorkersReq {})
        .await
        .unwrap()
        .into_inner()
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
            for i in 0..20 {
                t.log(format!("pinging {host} ({i})"));
            }
            t.log_to("stderr", "no route to the backup address");
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
    // Its log lines came on the session stream, the result on a call of
    // its own: the result waited for them, so all are there, in order.
    let lines: Vec<(String, String)> = log_lines(&s, &id)
        .await
        .iter()
        .map(|l| (l.stream.clone(), l.text.clone()))
        .collect();
    let mut want: Vec<(String, String)> = (0..20)
        .map(|i| ("log".to_string(), format!("pinging h1 ({i})")))
        .collect();
    want.push(("stderr".into(), "no route to the backup address".into()));
    assert_eq!(lines, want);
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
    eventually("the task waits", || {
        let id = id.clone();
        let s = &s;
        async move {
            let r = listing(s).await;
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
    assert!(listing(&s).await.waiting.is_empty());
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
            ..Default::default()
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
