//! Webhook notifications over the real server and a loopback receiver:
//! signed, retried until a dead receiver comes up, kept across a restart,
//! and never in the way of execution.

use axum::extract::State;
use axum::http::HeaderMap;
use interlock_proto::v1::Status;
use interlock_tests::{TestServer, eventually, req, wait_final};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const SECRET: &str = "correct horse battery staple";

/// What the receiver got: (event, delivery id, signature, body).
#[derive(Default)]
pub(crate) struct Received {
    pub(crate) posts: Mutex<Vec<(String, String, String, String)>>,
    slow: AtomicBool,
}

async fn hook(State(r): State<Arc<Received>>, headers: HeaderMap, body: String) -> &'static str {
    if r.slow.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
    let h = |k: &str| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    r.posts.lock().unwrap().push((
        h("x-interlock-event"),
        h("x-interlock-delivery"),
        h("x-interlock-signature"),
        body,
    ));
    "ok"
}

/// Serves the receiver on `port` (127.0.0.1) until the test ends.
pub(crate) async fn receive_on(port: u16, r: Arc<Received>) {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("the receiver's port is free again");
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(hook))
        .with_state(r);
    tokio::spawn(async move { axum::serve(listener, app).await });
}

/// A port with nothing listening on it (yet).
pub(crate) fn dead_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn server_notifying(port: u16) -> TestServer {
    TestServer::start_with(move |c| {
        std::fs::write(
            c.configs.join("notify.json"),
            format!(
                r#"{{"AllowedHosts": ["127.0.0.1"], "Webhooks": [{{"Name": "sre",
                "Url": "http://127.0.0.1:{port}/hook", "Secret": "{SECRET}",
                "Events": ["workflow.failed", "estop.changed", "job.interrupted"]}}]}}"#
            ),
        )
        .unwrap();
    })
    .await
}

async fn failing(s: &TestServer) -> String {
    let c = s.client().await;
    let id = c
        .submit(req::work(
            "x",
            vec![req::block(
                1,
                vec![req::job("probe", &[("ms", "0"), ("fail", "true")])],
            )],
        ))
        .await
        .unwrap();
    c.exec(&id).await.unwrap();
    assert_eq!(wait_final(&c, &id).await.status, Status::Failed as i32);
    id
}

fn failures_of(r: &Received, id: &str) -> Vec<(String, String, String, String)> {
    r.posts
        .lock()
        .unwrap()
        .iter()
        .filter(|p| p.0 == "workflow.failed" && p.3.contains(id))
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_is_posted_signed_once_a_dead_receiver_comes_up() {
    let port = dead_port();
    let s = server_notifying(port).await;
    let id = failing(&s).await;
    // The first tries meet a closed port; the receiver comes up later.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let r = Arc::new(Received::default());
    receive_on(port, r.clone()).await;
    eventually("the failure is delivered", || async {
        !failures_of(&r, &id).is_empty()
    })
    .await;
    let (_, delivery, sig, body) = failures_of(&r, &id).remove(0);
    assert_eq!(delivery, format!("sre/workflow/{id}/Failed"));
    assert_eq!(
        sig,
        interlock_server::notify::signature(SECRET, body.as_bytes()),
        "signed with the webhook's secret over the exact body"
    );
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["event"], "workflow.failed");
    assert_eq!(v["data"]["workflow"], id.as_str());

    // The e-stop changing is told too.
    interlock_tests::write_config(
        &s.config_path("es.json"),
        r#"[{"Name": "x", "Status": "stop", "Reason": "rack fire"}]"#,
    );
    eventually("the e-stop change is delivered", || async {
        r.posts
            .lock()
            .unwrap()
            .iter()
            .any(|p| p.0 == "estop.changed" && p.3.contains("rack fire"))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_notifications_survive_a_restart_and_a_slow_receiver_slows_nothing() {
    let port = dead_port();
    let mut s = server_notifying(port).await;
    let first = failing(&s).await;
    s.stop().await;
    // Queued while nobody listened, before the restart.
    let r = Arc::new(Received::default());
    receive_on(port, r.clone()).await;
    s.boot_again().await;
    eventually(
        "the failure queued before the restart is delivered",
        || async { !failures_of(&r, &first).is_empty() },
    )
    .await;

    // A receiver that holds every request for a minute: work goes on.
    r.slow.store(true, Ordering::SeqCst);
    for _ in 0..3 {
        failing(&s).await;
    }
    let c = s.client().await;
    let id = c
        .submit(req::work("x", vec![req::block(1, vec![req::probe(0)])]))
        .await
        .unwrap();
    c.exec(&id).await.unwrap();
    assert_eq!(wait_final(&c, &id).await.status, Status::Completed as i32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_interrupted_by_a_restart_is_told() {
    let port = dead_port();
    let r = Arc::new(Received::default());
    receive_on(port, r.clone()).await;
    let mut s = server_notifying(port).await;
    let c = s.client().await;
    let id = c
        .submit(req::work(
            "x",
            vec![req::block(
                1,
                vec![req::job("unsafeProbe", &[("ms", "60000")])],
            )],
        ))
        .await
        .unwrap();
    c.exec(&id).await.unwrap();
    eventually("the unsafe job runs", || async {
        !s.unsafe_probe.starts_of(&id).is_empty()
    })
    .await;
    s.restart().await;
    eventually("the interruption is delivered", || async {
        r.posts
            .lock()
            .unwrap()
            .iter()
            .any(|p| p.0 == "job.interrupted" && p.3.contains(&id))
    })
    .await;
    let posts = r.posts.lock().unwrap().clone();
    let (_, delivery, _, body) = posts.iter().find(|p| p.0 == "job.interrupted").unwrap();
    assert!(
        delivery.starts_with(&format!("sre/job/{id}/0/0/Interrupted/")),
        "{delivery}"
    );
    assert!(body.contains(r#""status":"Interrupted""#), "{body}");
}
