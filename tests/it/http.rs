//! The HTTP/JSON API: the same answers, refusals, authorization and audit
//! as gRPC, because it calls the same service methods.

use interlock_proto::v1;
use interlock_tests::{TestServer, req};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One HTTP/1.1 exchange (connection closed after it): status and body.
async fn call(
    s: &TestServer,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let (code, text) = raw(s, method, path, token, body.map(|b| b.to_string())).await;
    let v = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
    };
    (code, v)
}

async fn raw(
    s: &TestServer,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<String>,
) -> (u16, String) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("x-request-id", "http-test")];
    if let Some(a) = &auth {
        headers.push(("authorization", a));
    }
    let (code, _, body) = exchange(&s.http_url(), method, path, &headers, body).await;
    (code, body)
}

/// One HTTP/1.1 exchange with the given headers (Host is localhost unless
/// given): status, response head, body.
pub async fn exchange(
    url: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<String>,
) -> (u16, String, String) {
    let addr = url.trim_start_matches("http://").to_string();
    let conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    exchange_on(conn, method, path, headers, body).await
}

/// [`exchange`] over an open connection (plain or TLS).
pub async fn exchange_on(
    mut conn: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<String>,
) -> (u16, String, String) {
    let body = body.unwrap_or_default();
    let mut head = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        head.push_str("Host: localhost\r\n");
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!(
        "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    ));
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(body.as_bytes()).await.unwrap();
    let mut resp = Vec::new();
    // A TLS peer may close without close_notify; what was read counts.
    let _ = conn.read_to_end(&mut resp).await;
    let resp = String::from_utf8_lossy(&resp).to_string();
    let (head, body) = resp.split_once("\r\n\r\n").expect("a response");
    let code = head.split(' ').nth(1).unwrap().parse().unwrap();
    (code, head.to_string(), body.to_string())
}

fn one() -> Value {
    json!({"name": "x", "blocks": [{"rateLimit": 1, "jobs": [{"name": "probe", "args": {"ms": "5"}}]}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_runs_over_http_and_reads_as_grpc_reads_it() {
    let s = TestServer::start().await;
    let (code, v) = call(&s, "POST", "/api/v1/workflows", None, Some(one())).await;
    assert_eq!(code, 200, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    let (code, _) = call(
        &s,
        "POST",
        &format!("/api/v1/workflows/{id}/exec"),
        None,
        None,
    )
    .await;
    assert_eq!(code, 200);
    let c = s.client().await;
    let st = interlock_tests::wait_final(&c, &id).await;
    assert_eq!(st.status, v1::Status::Completed as i32);
    let (code, v) = call(&s, "GET", &format!("/api/v1/workflows/{id}"), None, None).await;
    assert_eq!(code, 200);
    assert_eq!(
        v,
        serde_json::to_value(&st).unwrap(),
        "the gRPC answer, as JSON"
    );

    let (code, v) = call(
        &s,
        "GET",
        "/api/v1/workflows?name=x&status=StatusCompleted&page_size=10",
        None,
        None,
    )
    .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["workflows"][0]["id"], id.as_str());
    let (code, v) = call(
        &s,
        "GET",
        "/api/v1/workflows?status=StatusRunning",
        None,
        None,
    )
    .await;
    assert_eq!(
        (code, v["workflows"].as_array().map(Vec::len)),
        (200, Some(0))
    );

    // The audit entry is the gRPC one, with the request id.
    let audit = s.audit_log().await;
    let submit = audit
        .iter()
        .find(|e| e.target == id && e.action == "submit")
        .expect("audited");
    assert_eq!(submit.request_id, "http-test");
    assert!(
        submit.identity.starts_with("anonymous@127.0.0.1"),
        "{}",
        submit.identity
    );
}

#[tokio::test]
async fn refusals_carry_the_grpc_code_and_message() {
    let s = TestServer::start().await;
    let missing = "0190a000-0000-7000-8000-000000000001";
    let grpc = s
        .client()
        .await
        .status(missing)
        .await
        .unwrap_err()
        .to_string();
    let (code, v) = call(
        &s,
        "GET",
        &format!("/api/v1/workflows/{missing}"),
        None,
        None,
    )
    .await;
    assert_eq!((code, v["code"].as_str()), (404, Some("NOT_FOUND")));
    assert!(
        grpc.contains(v["message"].as_str().unwrap()),
        "{grpc} vs {v}"
    );

    let mut bad = one();
    bad["name"] = json!("nobody-has-a-policy-for-this");
    let (code, v) = call(&s, "POST", "/api/v1/workflows", None, Some(bad)).await;
    assert_eq!(
        (code, v["code"].as_str()),
        (400, Some("FAILED_PRECONDITION")),
        "{v}"
    );

    let (code, v) = raw(
        &s,
        "POST",
        "/api/v1/workflows",
        None,
        Some("{not json".into()),
    )
    .await;
    assert_eq!(code, 400, "{v}");
    assert!(
        v.contains("INVALID_ARGUMENT") && v.contains("not JSON"),
        "{v}"
    );
    let (code, v) = call(&s, "POST", "/api/v1/workflows/x/explode", None, None).await;
    assert_eq!((code, v["code"].as_str()), (404, Some("NOT_FOUND")));
}

#[tokio::test]
async fn nothing_changes_state_on_get() {
    let s = TestServer::start().await;
    let c = s.client().await;
    let id = c
        .submit(req::work("x", vec![req::block(1, vec![req::probe(0)])]))
        .await
        .unwrap();
    for action in ["exec", "cancel"] {
        let (code, _) = raw(
            &s,
            "GET",
            &format!("/api/v1/workflows/{id}/{action}"),
            None,
            None,
        )
        .await;
        assert_eq!(code, 405, "GET {action}");
    }
    assert_eq!(
        c.status(&id).await.unwrap().status,
        v1::Status::NotStarted as i32
    );
}

#[tokio::test]
async fn the_emergency_stop_over_http_stops_submits() {
    let s = TestServer::start().await;
    let (code, v) = call(
        &s,
        "POST",
        "/api/v1/estop",
        None,
        Some(json!({"name": "x", "mode": "EsModeStop", "reason": "incident 42"})),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    let (_, v) = call(&s, "GET", "/api/v1/estop", None, None).await;
    assert!(v.to_string().contains("incident 42"), "{v}");
    let (code, v) = call(&s, "POST", "/api/v1/workflows", None, Some(one())).await;
    assert_eq!(
        (code, v["code"].as_str()),
        (400, Some("FAILED_PRECONDITION")),
        "{v}"
    );
    assert!(
        v["message"].as_str().unwrap().contains("incident 42"),
        "{v}"
    );
}

#[tokio::test]
async fn watch_is_server_sent_events() {
    let s = TestServer::start().await;
    let c = s.client().await;
    let id = c
        .submit(req::work("x", vec![req::block(1, vec![req::probe(20)])]))
        .await
        .unwrap();
    c.exec(&id).await.unwrap();
    let (code, body) = raw(
        &s,
        "GET",
        &format!("/api/v1/workflows/{id}/watch"),
        None,
        None,
    )
    .await;
    assert_eq!(code, 200);
    assert!(body.contains("event: watch"), "{body}");
    assert!(
        body.contains("StatusCompleted"),
        "the stream runs to the end: {body}"
    );
}

#[tokio::test]
async fn authorization_is_the_grpc_one() {
    let tokens = [
        ("operator", interlock_auth::tokens::mint()),
        ("viewer", interlock_auth::tokens::mint()),
        ("admin", interlock_auth::tokens::mint()),
    ];
    let s = TestServer::start_with(|c| {
        let named: Vec<_> = tokens.iter().map(|(n, t)| (*n, t.as_str())).collect();
        interlock_tests::enable_auth(
            c,
            &named,
            r#"{"roles": {"op": [{"actions": ["read", "submit", "exec"], "workflows": ["x"]}],
                          "ro": [{"actions": ["read"], "workflows": ["*"]}],
                          "all": [{"actions": ["admin"], "workflows": ["*"]}]},
                "bindings": [{"identity": "token:operator", "roles": ["op"]},
                             {"identity": "token:admin", "roles": ["all"]},
                             {"identity": "token:viewer", "roles": ["ro"]}]}"#,
        );
    })
    .await;
    let (op, viewer) = (tokens[0].1.as_str(), tokens[1].1.as_str());
    let (code, v) = call(&s, "POST", "/api/v1/workflows", None, Some(one())).await;
    assert_eq!((code, v["code"].as_str()), (401, Some("UNAUTHENTICATED")));
    let (code, v) = call(
        &s,
        "POST",
        "/api/v1/workflows",
        Some("not-a-token"),
        Some(one()),
    )
    .await;
    assert_eq!((code, v["code"].as_str()), (401, Some("UNAUTHENTICATED")));
    let (code, v) = call(&s, "POST", "/api/v1/workflows", Some(viewer), Some(one())).await;
    assert_eq!(
        (code, v["code"].as_str()),
        (403, Some("PERMISSION_DENIED")),
        "{v}"
    );
    let (code, v) = call(&s, "POST", "/api/v1/workflows", Some(op), Some(one())).await;
    assert_eq!(code, 200, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    let (code, v) = call(&s, "GET", "/api/v1/whoami", Some(viewer), None).await;
    assert_eq!((code, v["identity"].as_str()), (200, Some("token:viewer")));
    let (code, _) = call(
        &s,
        "GET",
        &format!("/api/v1/workflows/{id}"),
        Some(viewer),
        None,
    )
    .await;
    assert_eq!(code, 200);
    let (code, v) = call(
        &s,
        "POST",
        "/api/v1/estop",
        Some(op),
        Some(json!({"name": "x", "mode": "EsModeStop"})),
    )
    .await;
    assert_eq!(
        (code, v["code"].as_str()),
        (403, Some("PERMISSION_DENIED")),
        "{v}"
    );
    let (code, v) = call(
        &s,
        "GET",
        &format!("/api/v1/audit?target={id}&action=submit"),
        Some(tokens[2].1.as_str()),
        None,
    )
    .await;
    assert_eq!(code, 200, "{v}");
    let e = &v["entries"][0];
    assert_eq!(e["identity"], "token:operator", "{v}");
    assert!(e["peer"].as_str().unwrap().starts_with("127.0.0.1"), "{v}");
}

#[test]
fn an_exposed_http_api_is_refused_without_insecure() {
    use interlock_server::Config;
    let mut c = Config {
        http_listen: Some("0.0.0.0:8081".parse().unwrap()),
        ..Config::default()
    };
    let e = c.validate().unwrap_err();
    assert!(
        e.contains("refusing to serve the HTTP API and dashboard on 0.0.0.0:8081"),
        "{e}"
    );
    // With TLS and authentication, as for the gRPC listener, it may.
    c.tls_cert = Some("/etc/interlock/cert.pem".into());
    c.tls_key = Some("/etc/interlock/key.pem".into());
    let e = c.validate().unwrap_err();
    assert!(e.contains("without authentication"), "{e}");
    c.auth = true;
    c.listen = "0.0.0.0:50051".parse().unwrap();
    c.validate().unwrap();
    c.tls_cert = None;
    c.tls_key = None;
    c.insecure = true;
    c.validate().unwrap();
}

#[tokio::test]
async fn calls_are_counted_by_route_template_not_by_id() {
    let s = TestServer::start().await;
    let missing = "0190a000-0000-7000-8000-000000000042";
    let (code, _) = call(
        &s,
        "GET",
        &format!("/api/v1/workflows/{missing}"),
        None,
        None,
    )
    .await;
    assert_eq!(code, 404);
    let m = s.scrape().await;
    let line = m
        .lines()
        .find(|l| {
            l.starts_with("interlock_http_requests_total{")
                && l.contains(r#"route="/api/v1/workflows/{id}""#)
                && l.contains(r#"status="404""#)
        })
        .unwrap_or_else(|| panic!("no series for the route: {m}"));
    assert!(line.contains(r#"method="GET""#), "{line}");
    assert!(!m.contains(missing), "ids never become labels");
}

#[tokio::test]
async fn templates_over_http_take_the_grpc_path() {
    let s = TestServer::start().await;
    let text = std::fs::read_to_string(
        interlock_tests::repo().join("configs/templates/erase-satellite.yaml"),
    )
    .unwrap();
    let (code, applied) = call(
        &s,
        "POST",
        "/api/v1/templates",
        None,
        Some(json!({"text": text})),
    )
    .await;
    assert_eq!(code, 200, "{applied}");
    // Stored from configs/templates at start; the same content adds nothing.
    assert_eq!(
        (applied["revision"].as_u64(), applied["created"].as_bool()),
        (Some(1), Some(false))
    );
    let (code, listed) = call(&s, "GET", "/api/v1/templates", None, None).await;
    assert_eq!(code, 200);
    assert_eq!(listed["templates"][1]["name"], "erase-satellite");
    let (code, one) = call(
        &s,
        "GET",
        "/api/v1/templates/erase-satellite?revision=1",
        None,
        None,
    )
    .await;
    assert_eq!((code, one["latest"].as_u64()), (200, Some(1)), "{one}");

    let params = json!({"site": "aab", "ticket": "CHG-1"});
    let (code, dry) = call(
        &s,
        "POST",
        "/api/v1/templates/erase-satellite/instantiate",
        None,
        Some(json!({"params": params, "dryRun": true})),
    )
    .await;
    assert_eq!(code, 200, "{dry}");
    assert_eq!(dry["id"], "");
    assert_eq!(dry["validation"]["ok"], true, "{dry}");
    assert_eq!(
        dry["request"]["blocks"][1]["jobs"]
            .as_array()
            .unwrap()
            .len(),
        8
    );

    let (code, bad) = call(
        &s,
        "POST",
        "/api/v1/templates/erase-satellite/instantiate",
        None,
        Some(json!({"params": {"site": "aab", "ticket": "nope"}})),
    )
    .await;
    assert_eq!(
        (code, bad["code"].as_str()),
        (400, Some("INVALID_ARGUMENT")),
        "{bad}"
    );
    assert!(
        bad["message"]
            .as_str()
            .unwrap()
            .contains("parameter \"ticket\""),
        "{bad}"
    );

    let (code, made) = call(
        &s,
        "POST",
        "/api/v1/templates/erase-satellite/instantiate",
        None,
        Some(json!({"params": params})),
    )
    .await;
    assert_eq!(code, 200, "{made}");
    let id = made["id"].as_str().unwrap().to_string();
    let st = s.client().await.status(&id).await.unwrap();
    assert_eq!(st.labels["interlock.template"], "erase-satellite");

    let (code, off) = call(
        &s,
        "POST",
        "/api/v1/templates/erase-satellite/disable",
        None,
        Some(json!({"reason": "freeze"})),
    )
    .await;
    assert_eq!(
        (code, off["disabled"].as_bool()),
        (200, Some(true)),
        "{off}"
    );
    let (code, refused) = call(
        &s,
        "POST",
        "/api/v1/templates/erase-satellite/instantiate",
        None,
        Some(json!({"params": params})),
    )
    .await;
    assert_eq!(
        (code, refused["code"].as_str()),
        (400, Some("FAILED_PRECONDITION")),
        "{refused}"
    );
    let (code, _) = call(
        &s,
        "GET",
        "/api/v1/templates/erase-satellite/disable",
        None,
        None,
    )
    .await;
    assert_eq!(code, 405, "no state change on GET");
}

#[tokio::test]
async fn schedules_and_inventory_over_http() {
    let s = TestServer::start().await;
    let (code, made) = call(
        &s,
        "POST",
        "/api/v1/schedules",
        None,
        Some(json!({
            "name": "nightly", "template": "erase-satellite",
            "params": {"site": "aab", "ticket": "CHG-1"},
            "cron": "0 3 * * *", "timeZone": "Europe/Berlin"
        })),
    )
    .await;
    assert_eq!(code, 200, "{made}");
    assert_eq!(made["workflow"], "SatelliteDiskErase");
    assert!(made["nextFire"].is_string(), "{made}");
    let (code, listed) = call(&s, "GET", "/api/v1/schedules", None, None).await;
    assert_eq!(
        (code, listed["schedules"][0]["name"].as_str()),
        (200, Some("nightly"))
    );
    let (code, paused) = call(&s, "POST", "/api/v1/schedules/nightly/pause", None, None).await;
    assert_eq!((code, paused["paused"].as_bool()), (200, Some(true)));
    let (code, _) = call(&s, "POST", "/api/v1/schedules/nightly/delete", None, None).await;
    assert_eq!(code, 200);
    let (code, gone) = call(&s, "GET", "/api/v1/schedules/nightly", None, None).await;
    assert_eq!((code, gone["code"].as_str()), (404, Some("NOT_FOUND")));

    let (code, inv) = call(&s, "GET", "/api/v1/inventory?site=aab", None, None).await;
    assert_eq!(
        (code, inv["source"].as_str()),
        (200, Some("files")),
        "{inv}"
    );
    assert_eq!(inv["machines"].as_array().unwrap().len(), 8);
    let read =
        |f: &str| std::fs::read_to_string(interlock_tests::repo().join("data").join(f)).unwrap();
    let (code, imported) = call(
        &s,
        "POST",
        "/api/v1/inventory/import",
        None,
        Some(json!({"sitesJson": read("sites.json"), "machinesJson": read("machines.json")})),
    )
    .await;
    assert_eq!(
        (code, imported["source"].as_str()),
        (200, Some("store")),
        "{imported}"
    );
    let (code, changed) = call(
        &s,
        "POST",
        "/api/v1/inventory/sites/aab/status",
        None,
        Some(json!({"status": "removed", "reason": "gone"})),
    )
    .await;
    assert_eq!(
        (code, changed["sites"][0]["status"].as_str()),
        (200, Some("removed")),
        "{changed}"
    );
}

#[tokio::test]
async fn workers_are_listed_as_over_grpc() {
    let s = TestServer::start_with(|c| {
        interlock_tests::write_config(
            &c.configs.join("jobs.json"),
            r#"{"jobs": [{"name": "ping", "idempotency": "safe"}]}"#,
        )
    })
    .await;
    let stop = tokio_util::sync::CancellationToken::new();
    let w = interlock_client::worker::Worker::new(&s.addr(), Default::default(), "w1")
        .handle("ping", |_| async { Ok(Default::default()) });
    let run = tokio::spawn(w.run(stop.clone()));
    interlock_tests::eventually("the worker is listed", || async {
        let (code, v) = call(&s, "GET", "/api/v1/workers", None, None).await;
        code == 200 && v["workers"].as_array().is_some_and(|w| w.len() == 1)
    })
    .await;
    let (_, v) = call(&s, "GET", "/api/v1/workers", None, None).await;
    assert_eq!(v["workers"][0]["name"], "w1", "{v}");
    assert_eq!(v["workers"][0]["jobTypes"], json!(["ping"]), "{v}");
    assert_eq!(v["waiting"], json!([]));
    stop.cancel();
    let _ = run.await;
}
