//! The built-in `http` job against a loopback axum server: statuses, the
//! body's first bytes, timeouts, Cancel dropping the request, the allow
//! list of http.json, and retries only for idempotent methods.

use axum::http::HeaderMap;
use interlock_proto::v1;
use interlock_tests::{TestServer, eventually, req, run_one, wait_final, write_config};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use tonic::Code;

#[derive(Default)]
struct Seen {
    fails: AtomicUsize,
    slow_dropped: AtomicBool,
    slow_started: AtomicBool,
}

/// Sets `slow_dropped` when the slow handler's future is dropped (the
/// client went away).
struct OnDrop(Arc<Seen>);

impl Drop for OnDrop {
    fn drop(&mut self) {
        self.0.slow_dropped.store(true, Ordering::SeqCst);
    }
}

async fn target() -> (u16, Arc<Seen>) {
    use axum::routing::{get, post};
    let seen = Arc::new(Seen::default());
    let (s1, s2) = (seen.clone(), seen.clone());
    let app = axum::Router::new()
        .route("/v1/ok", get(|| async { "hello" }))
        .route(
            "/v1/fail",
            get(move || {
                s1.fails.fetch_add(1, Ordering::SeqCst);
                async { (axum::http::StatusCode::SERVICE_UNAVAILABLE, "down") }
            })
            .post(|| async { (axum::http::StatusCode::SERVICE_UNAVAILABLE, "down") }),
        )
        .route("/v1/big", get(|| async { "x".repeat(10_000) }))
        .route(
            "/v1/echo",
            post(|h: HeaderMap, body: String| async move {
                let t = h.get("x-test").and_then(|v| v.to_str().ok()).unwrap_or("");
                format!("{t}:{body}")
            }),
        )
        .route(
            "/v1/slow",
            get(move || {
                let s = s2.clone();
                async move {
                    s.slow_started.store(true, Ordering::SeqCst);
                    let _guard = OnDrop(s);
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    "late"
                }
            }),
        )
        .route(
            "/v1/trace",
            get(|h: HeaderMap| async move {
                h.get("traceparent")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("none")
                    .to_string()
            }),
        )
        .route("/admin", get(|| async { "secret" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (port, seen)
}

async fn server(port: u16) -> TestServer {
    TestServer::start_with(move |c| {
        write_config(
            &c.configs.join("http.json"),
            &format!(r#"{{"allow": ["http://127.0.0.1:{port}/v1/"]}}"#),
        )
    })
    .await
}

fn call(method: &str, url: &str, more: &[(&str, &str)]) -> v1::Job {
    let mut args = vec![("method", method), ("url", url)];
    args.extend_from_slice(more);
    req::job("http", &args)
}

#[tokio::test]
async fn statuses_bodies_and_headers() {
    let (port, _) = target().await;
    let s = server(port).await;
    let u = |p: &str| format!("http://127.0.0.1:{port}{p}");
    let st = run_one(&s, call("GET", &u("/v1/ok"), &[])).await;
    assert_eq!(st.status, v1::Status::Completed as i32, "{st:?}");
    let out = &st.blocks[0].jobs[0].outputs;
    assert_eq!(
        (out["status"].as_str(), out["body"].as_str()),
        ("200", "hello")
    );
    assert_eq!(out["bodyTruncated"], "false");
    // The job's log says what it asked and what came back.
    let logs = s
        .raw()
        .await
        .logs(v1::LogsReq {
            id: st.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let texts: Vec<&str> = logs.lines.iter().map(|l| l.text.as_str()).collect();
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert_eq!(texts[0], format!("GET {}", u("/v1/ok")));
    assert!(
        texts[1].starts_with(&format!("GET {} answered 200 in ", u("/v1/ok"))),
        "{texts:?}"
    );

    let st = run_one(&s, call("GET", &u("/v1/fail"), &[])).await;
    assert_eq!(st.status, v1::Status::Failed as i32);
    assert!(
        st.blocks[0].jobs[0]
            .error
            .contains("answered 503, expected 200-299"),
        "{st:?}"
    );
    let st = run_one(&s, call("GET", &u("/v1/fail"), &[("expect", "200,503")])).await;
    assert_eq!(st.status, v1::Status::Completed as i32, "{st:?}");

    let st = run_one(&s, call("GET", &u("/v1/big"), &[])).await;
    let out = &st.blocks[0].jobs[0].outputs;
    assert_eq!(
        (out["body"].len(), out["bodyTruncated"].as_str()),
        (4096, "true")
    );

    let st = run_one(
        &s,
        call(
            "POST",
            &u("/v1/echo"),
            &[("headers", r#"{"X-Test": "t1"}"#), ("body", "payload")],
        ),
    )
    .await;
    assert_eq!(st.blocks[0].jobs[0].outputs["body"], "t1:payload", "{st:?}");
}

#[tokio::test]
async fn the_request_carries_the_workflow_s_trace() {
    let (port, _) = target().await;
    let s = server(port).await;
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let job = call("GET", &format!("http://127.0.0.1:{port}/v1/trace"), &[]);
    let mut w = req::work("x", vec![req::block(1, vec![job])]);
    w.trace_id = trace.into();
    let c = s.client().await;
    let id = c.submit(w).await.unwrap();
    c.exec(&id).await.unwrap();
    let st = wait_final(&c, &id).await;
    let body = &st.blocks[0].jobs[0].outputs["body"];
    assert!(body.starts_with(&format!("00-{trace}-")), "{body}");
}

#[tokio::test]
async fn urls_outside_the_allow_list_are_refused_at_submit() {
    let (port, _) = target().await;
    let s = server(port).await;
    let c = s.client().await;
    for url in [
        format!("http://127.0.0.1:{port}/admin"),
        format!("http://127.0.0.1:{port}/v1/../admin"),
        format!("http://localhost:{port}/v1/ok"),
        format!("http://127.0.0.1:{}/v1/ok", port.wrapping_add(1)),
        format!("https://127.0.0.1:{port}/v1/ok"),
    ] {
        let e = c
            .submit(req::work(
                "x",
                vec![req::block(1, vec![call("GET", &url, &[])])],
            ))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some(Code::FailedPrecondition), "{url}: {e}");
        assert!(e.to_string().contains(&url), "{e}");
    }
    let e = c
        .submit(req::work(
            "x",
            vec![req::block(
                1,
                vec![call(
                    "GET",
                    &format!("http://127.0.0.1:{port}/v1/ok"),
                    &[("headers", r#"{"Host": "x"}"#)],
                )],
            )],
        ))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("set by the client"), "{e}");
}

#[tokio::test]
async fn a_timeout_fails_the_job_and_cancel_drops_the_request() {
    let (port, seen) = target().await;
    let s = server(port).await;
    let slow = format!("http://127.0.0.1:{port}/v1/slow");
    let st = run_one(&s, call("GET", &slow, &[("timeoutSeconds", "0.3")])).await;
    assert_eq!(st.status, v1::Status::Failed as i32, "{st:?}");
    assert!(
        st.blocks[0].jobs[0].error.contains("within 300ms"),
        "{st:?}"
    );
    eventually("the timed-out request is dropped", || async {
        seen.slow_dropped.swap(false, Ordering::SeqCst)
    })
    .await;

    seen.slow_started.store(false, Ordering::SeqCst);
    let c = s.client().await;
    let id = c
        .submit(req::work(
            "x",
            vec![req::block(1, vec![call("GET", &slow, &[])])],
        ))
        .await
        .unwrap();
    c.exec(&id).await.unwrap();
    eventually("the request arrives", || async {
        seen.slow_started.load(Ordering::SeqCst)
    })
    .await;
    s.raw()
        .await
        .cancel(v1::CancelReq {
            id: id.clone(),
            reason: "enough".into(),
        })
        .await
        .unwrap();
    assert_eq!(
        wait_final(&c, &id).await.status,
        v1::Status::Cancelled as i32
    );
    eventually("the cancelled request is dropped", || async {
        seen.slow_dropped.load(Ordering::SeqCst)
    })
    .await;
}

#[tokio::test]
async fn only_idempotent_methods_are_retried() {
    let (port, seen) = target().await;
    let s = server(port).await;
    let fail = format!("http://127.0.0.1:{port}/v1/fail");
    let retry = |mut j: v1::Job| {
        j.retry = Some(v1::RetryPolicy {
            max_attempts: 3,
            initial_backoff: Some(pbjson_duration(10)),
            max_backoff: Some(pbjson_duration(20)),
        });
        j
    };
    let st = run_one(&s, retry(call("GET", &fail, &[]))).await;
    assert_eq!(st.blocks[0].jobs[0].attempts.len(), 3, "{st:?}");
    assert_eq!(seen.fails.load(Ordering::SeqCst), 3);
    let st = run_one(&s, retry(call("POST", &fail, &[]))).await;
    assert_eq!(st.status, v1::Status::Failed as i32);
    assert_eq!(
        st.blocks[0].jobs[0].attempts.len(),
        1,
        "a POST is not repeated: {st:?}"
    );
}

fn pbjson_duration(ms: i32) -> interlock_proto::pbjson_types::Duration {
    interlock_proto::pbjson_types::Duration {
        seconds: 0,
        nanos: ms * 1_000_000,
    }
}

#[tokio::test]
async fn https_trusts_the_system_and_the_ca_file_and_nothing_else() {
    // The target: an interlockd whose HTTP API speaks TLS with a
    // certificate of an internal CA.
    let pki = tempfile::tempdir().unwrap();
    let ca = interlock_tests::pki::Ca::new(pki.path(), "internal");
    let cert = ca.server(pki.path(), "target");
    let target = TestServer::start_with(|c| {
        c.tls_cert = Some(cert.cert.clone());
        c.tls_key = Some(cert.key.clone());
    })
    .await;
    let port = target.http_url().rsplit(':').next().unwrap().to_string();
    let prefix = format!("https://localhost:{port}/api/v1/");
    let url = format!("{prefix}jobs");
    let with = |ca_file: Option<&std::path::Path>| {
        let mut v = serde_json::json!({ "allow": [prefix] });
        if let Some(f) = ca_file {
            v["ca_file"] = f.display().to_string().into();
        }
        let text = v.to_string();
        move |c: &mut interlock_server::Config| write_config(&c.configs.join("http.json"), &text)
    };
    // The internal CA is not trusted unless http.json names it.
    let s = TestServer::start_with(with(None)).await;
    let st = run_one(&s, call("GET", &url, &[])).await;
    assert_eq!(st.status, v1::Status::Failed as i32, "{st:?}");
    let e = &st.blocks[0].jobs[0].error;
    assert!(e.contains("certificate") || e.contains("Unknown"), "{e}");
    let s = TestServer::start_with(with(Some(&ca.path))).await;
    let st = run_one(&s, call("GET", &url, &[])).await;
    assert_eq!(st.status, v1::Status::Completed as i32, "{st:?}");
    let out = &st.blocks[0].jobs[0].outputs;
    assert_eq!(out["status"], "200");
    assert!(out["body"].contains("sleep"), "{out:?}");
}
