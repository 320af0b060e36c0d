//! grpc.health.v1, server reflection and /metrics, as grpcurl, load
//! balancers and Prometheus use them.

use interlock_tests::{TestServer, eventually, write_config};
use std::collections::{BTreeMap, BTreeSet};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

async fn channel(s: &TestServer) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(s.addr())
        .unwrap()
        .connect()
        .await
        .unwrap()
}

async fn health(s: &TestServer) -> i32 {
    let mut c = HealthClient::new(channel(s).await);
    c.check(HealthCheckRequest {
        service: "interlock.v1.Workflow".into(),
    })
    .await
    .unwrap()
    .into_inner()
    .status
}

#[tokio::test]
async fn health_is_not_serving_while_configs_are_unusable() {
    let s = TestServer::start().await;
    assert_eq!(health(&s).await, ServingStatus::Serving as i32);
    std::fs::write(s.config_path("es.json"), "{broken").unwrap();
    eventually("not serving", || async {
        health(&s).await == ServingStatus::NotServing as i32
    })
    .await;
    write_config(
        &s.config_path("es.json"),
        r#"[{"Name": "x", "Status": "go"}]"#,
    );
    eventually("serving again", || async {
        health(&s).await == ServingStatus::Serving as i32
    })
    .await;
}

/// Asks reflection `$v` (a module of `tonic_reflection::pb`: both versions
/// have the same shape) to list the services and to describe
/// `interlock.v1.Workflow`, as `grpcurl list` and `grpcurl describe` do;
/// returns the service names and the size of the descriptor answer.
macro_rules! reflect {
    ($v:ident, $channel:expr) => {{
        use tonic_reflection::pb::$v::ServerReflectionRequest;
        use tonic_reflection::pb::$v::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::$v::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::$v::server_reflection_response::MessageResponse;
        let mut c = ServerReflectionClient::new($channel);
        let ask = |m| ServerReflectionRequest {
            host: String::new(),
            message_request: Some(m),
        };
        let reqs = vec![
            ask(MessageRequest::ListServices(String::new())),
            ask(MessageRequest::FileContainingSymbol(
                "interlock.v1.Workflow".into(),
            )),
        ];
        let mut stream = c
            .server_reflection_info(tokio_stream::iter(reqs))
            .await
            .unwrap()
            .into_inner();
        let resp = stream.message().await.unwrap().unwrap();
        let Some(MessageResponse::ListServicesResponse(list)) = resp.message_response else {
            panic!("unexpected {resp:?}")
        };
        let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
        let resp = stream.message().await.unwrap().unwrap();
        let Some(MessageResponse::FileDescriptorResponse(files)) = resp.message_response else {
            panic!("unexpected {resp:?}")
        };
        (names, files.file_descriptor_proto.len())
    }};
}

#[tokio::test]
async fn reflection_lists_the_services_over_v1_and_v1alpha() {
    let s = TestServer::start().await;
    let v1 = reflect!(v1, channel(&s).await);
    let v1alpha = reflect!(v1alpha, channel(&s).await);
    for (version, (names, files)) in [("v1", v1), ("v1alpha", v1alpha)] {
        for want in [
            "interlock.v1.Workflow",
            "interlock.v1.Control",
            "diskerase.Workflow",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
        ] {
            assert!(names.iter().any(|n| n == want), "{version}: {names:?}");
        }
        assert!(
            files > 0,
            "{version}: no descriptor for interlock.v1.Workflow"
        );
    }
    // Counted under its own method, not lumped into "other".
    let text = s.scrape().await;
    let series = r#"interlock_rpc_requests_total{method="/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",code="Ok"}"#;
    assert!(text.contains(series), "missing {series} in\n{text}");
}

#[tokio::test]
async fn metrics_show_rpcs_jobs_workflows_store_and_configs() {
    let s = TestServer::start().await;
    let c = s.client().await;
    let id = c
        .submit(interlock_tests::req::work(
            "x",
            vec![interlock_tests::req::block(
                1,
                vec![interlock_tests::req::probe(1)],
            )],
        ))
        .await
        .unwrap();
    c.exec(&id).await.unwrap();
    interlock_tests::wait_final(&c, &id).await;
    let _ = s
        .raw()
        .await
        .exec(interlock_proto::v1::ExecReq { id })
        .await; // one AlreadyExists
    let text = s.scrape().await;
    for series in [
        r#"interlock_rpc_requests_total{method="/interlock.v1.Workflow/Submit",code="Ok"}"#,
        r#"interlock_rpc_requests_total{method="/interlock.v1.Workflow/Exec",code="AlreadyExists"}"#,
        "interlock_rpc_duration_seconds_bucket",
        r#"interlock_jobs_started_total{job="probe"}"#,
        r#"interlock_jobs_finished_total{job="probe",status="Completed"}"#,
        r#"interlock_workflows_finished_total{status="Completed"}"#,
        "interlock_workflows_running",
        "interlock_store_queue_depth",
        "interlock_store_commit_seconds_bucket",
        r#"interlock_bucket_tokens_available{bucket="diskEraseSatellite"}"#,
        r#"interlock_config_reloads_total{file="policies.json",outcome="ok"}"#,
        "interlock_estop_file_unusable 0",
        "interlock_policies_loaded 1",
    ] {
        assert!(text.contains(series), "missing {series} in\n{text}");
    }
}

/// The body of a whole HTTP/1.1 response (as `TestServer::scrape` returns).
pub(crate) fn http_body(resp: &str) -> &str {
    let (head, body) = resp.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{head}"
    );
    body
}

/// GET /metrics from `addr`; the body.
pub(crate) async fn scrape(addr: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut resp = String::new();
    conn.read_to_string(&mut resp).await.unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    http_body(&resp).to_string()
}

/// The `interlock_*` and `process_*` families with samples in a scrape,
/// each with whether it has a `# HELP` line and its `# TYPE`.
pub(crate) fn families(text: &str) -> BTreeMap<String, (bool, Option<String>)> {
    let mut help = BTreeSet::new();
    let mut types = BTreeMap::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match (words.next(), words.next(), words.next()) {
            (Some("#"), Some("HELP"), Some(name)) => {
                help.insert(name.to_string());
            }
            (Some("#"), Some("TYPE"), Some(name)) => {
                types.insert(name.to_string(), words.next().unwrap_or("").to_string());
            }
            _ => {}
        }
    }
    let mut out = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let name = line.split(['{', ' ']).next().unwrap();
        if !(name.starts_with("interlock_") || name.starts_with("process_")) {
            continue;
        }
        // A histogram's samples are named <family>_bucket, _sum and _count.
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .filter_map(|s| name.strip_suffix(s))
            .find(|f| {
                types
                    .get(*f)
                    .is_some_and(|t| t == "histogram" || t == "summary")
            })
            .unwrap_or(name);
        out.insert(
            family.to_string(),
            (help.contains(family), types.get(family).cloned()),
        );
    }
    out
}

/// Some traffic, so that RPC, job, workflow and store metrics have samples.
async fn traffic(s: &TestServer) {
    let c = s.client().await;
    let id = c
        .submit(interlock_tests::req::work(
            "x",
            vec![interlock_tests::req::block(
                1,
                vec![interlock_tests::req::probe(1)],
            )],
        ))
        .await
        .unwrap();
    c.exec(&id).await.unwrap();
    interlock_tests::wait_final(&c, &id).await;
}

#[tokio::test]
async fn every_metric_family_has_help_and_type_and_the_build_is_named() {
    let s = TestServer::start().await;
    traffic(&s).await;
    let text = http_body(&s.scrape().await).to_string();
    let found = families(&text);
    for want in [
        "interlock_build_info",
        "interlock_rpc_requests_total",
        "interlock_rpc_duration_seconds",
        "interlock_jobs_started_total",
        "interlock_jobs_finished_total",
        "interlock_workflows_finished_total",
        "interlock_workflows_running",
        "interlock_store_commit_seconds",
        "interlock_store_batch_ops",
        "interlock_config_reloads_total",
        "interlock_policies_loaded",
        "process_cpu_seconds_total",
        "process_open_fds",
        "process_max_fds",
        "process_virtual_memory_bytes",
        "process_resident_memory_bytes",
        "process_start_time_seconds",
    ] {
        assert!(found.contains_key(want), "no {want} in\n{text}");
    }
    let bad: Vec<_> = found
        .iter()
        .filter(|(_, (help, ty))| !help || ty.is_none())
        .collect();
    assert!(bad.is_empty(), "without HELP or TYPE: {bad:?} in\n{text}");
    assert_eq!(
        found["interlock_rpc_duration_seconds"].1.as_deref(),
        Some("histogram")
    );
    assert_eq!(
        found["process_cpu_seconds_total"].1.as_deref(),
        Some("counter")
    );

    let info = build_info(&text);
    assert_eq!(info["version"], env!("CARGO_PKG_VERSION"), "{info:?}");
    let commit = &info["commit"];
    assert!(
        commit == "unknown" || (commit.len() >= 4 && commit.chars().all(|c| c.is_ascii_hexdigit())),
        "{info:?}"
    );
}

/// The labels of the one `interlock_build_info` sample, whose value is 1.
pub(crate) fn build_info(text: &str) -> BTreeMap<String, String> {
    let lines: Vec<_> = text
        .lines()
        .filter(|l| l.starts_with("interlock_build_info{"))
        .collect();
    let [line] = lines[..] else {
        panic!("want one interlock_build_info sample: {lines:?}")
    };
    let (labels, value) = line["interlock_build_info{".len()..]
        .rsplit_once("} ")
        .unwrap();
    assert_eq!(value, "1", "{line}");
    labels
        .split(',')
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_string(), v.trim_matches('"').to_string())
        })
        .collect()
}

/// Runs `promtool check metrics` over `text` and asserts it finds nothing to
/// say. Without promtool this fails under CI (.ci/run installs it), and
/// elsewhere skips with one line.
pub(crate) fn assert_promtool_passes(text: &str) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "promtool is not installed, and CI=true: .ci/run installs it (Debian package prometheus)"
            );
            eprintln!("skipped: promtool not installed (apt-get install prometheus provides it)");
            return;
        }
        Err(e) => panic!("cannot run promtool: {e}"),
    };
    // promtool reads all of stdin before it answers, so writing first
    // cannot deadlock on its output.
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics: {}\n{said}\nscrape:\n{text}",
        out.status
    );
}

#[tokio::test]
async fn a_scrape_passes_promtool_check_metrics() {
    let s = TestServer::start().await;
    traffic(&s).await;
    // A refused call too, so an error code's series is checked.
    let _ = s
        .raw()
        .await
        .status(interlock_proto::v1::StatusReq {
            id: "no-such-id".into(),
        })
        .await;
    assert_promtool_passes(http_body(&s.scrape().await));
}
