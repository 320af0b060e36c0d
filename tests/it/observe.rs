//! grpc.health.v1 and server reflection, as grpcurl and load balancers use them.

use interlock_tests::{TestServer, eventually, write_config};
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
