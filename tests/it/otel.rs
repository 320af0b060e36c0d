//! OpenTelemetry end to end: the real binary exports its spans over OTLP to
//! an in-process collector (a tonic server of the OTLP trace service), and
//! a client's `traceparent` continues into the workflow.

use interlock_proto::v1;
use interlock_tests::daemon::DaemonSpec;
use interlock_tests::{interlockd, req, wait_final};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::trace::v1::Span;
use std::sync::{Arc, Mutex};

#[derive(Clone, Default)]
struct Collector(Arc<Mutex<Vec<Span>>>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        r: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let spans = r
            .into_inner()
            .resource_spans
            .into_iter()
            .flat_map(|rs| rs.scope_spans)
            .flat_map(|ss| ss.spans);
        self.0.lock().unwrap().extend(spans);
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

fn traced<T>(msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut().insert(
        "traceparent",
        format!("00-{TRACE}-{CLIENT_SPAN}-01").parse().unwrap(),
    );
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_is_one_trace_continuing_the_callers() {
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let at = listener.local_addr().unwrap();
    let serve = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );

    let dir = tempfile::tempdir().unwrap();
    let mut d = DaemonSpec::new(interlockd!(), dir.path())
        .args(["--erase-duration", "50ms", "--otlp-endpoint"])
        .arg(format!("http://{at}"))
        .spawn()
        .expect("starts");
    let mut raw = v1::workflow_client::WorkflowClient::connect(d.url())
        .await
        .unwrap();
    let id = raw
        .submit(traced(req::satellite_erase("aab", &["aab00"])))
        .await
        .unwrap()
        .into_inner()
        .id;
    raw.exec(traced(v1::ExecReq { id: id.clone() }))
        .await
        .unwrap();
    let st = wait_final(&d.client().await, &id).await;
    assert_eq!(st.status, v1::Status::Completed as i32, "{}", st.reason);
    assert_eq!(
        st.trace_id, TRACE,
        "the caller's trace is stored with the workflow"
    );

    // A clean stop flushes the batched spans.
    d.signal("TERM");
    d.wait_exit(std::time::Duration::from_secs(30))
        .expect("exits after TERM");
    serve.abort();

    let spans = collector.0.lock().unwrap().clone();
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let ours: Vec<&Span> = spans.iter().filter(|s| hex(&s.trace_id) == TRACE).collect();
    let named =
        |name: &str| -> Vec<&Span> { ours.iter().copied().filter(|s| s.name == name).collect() };
    let one = |name: &str| -> &Span {
        let v = named(name);
        assert_eq!(
            v.len(),
            1,
            "one {name} span in the trace: {:?}",
            names(&ours)
        );
        v[0]
    };
    let submit = one("interlock.v1.Workflow/Submit");
    let exec = one("interlock.v1.Workflow/Exec");
    assert_eq!(
        hex(&submit.parent_span_id),
        CLIENT_SPAN,
        "Submit continues the caller's span"
    );
    assert_eq!(hex(&exec.parent_span_id), CLIENT_SPAN);
    assert!(
        !named("admission").is_empty() && !named("store.submit").is_empty(),
        "admission steps and the store commit are spans: {:?}",
        names(&ours)
    );
    let workflow = one("workflow");
    assert_eq!(
        workflow.parent_span_id, exec.span_id,
        "Exec started the workflow"
    );
    let blocks = named("block");
    assert_eq!(blocks.len(), 2, "{:?}", names(&ours));
    assert!(blocks.iter().all(|b| b.parent_span_id == workflow.span_id));
    let jobs = named("job");
    assert_eq!(
        jobs.len(),
        3,
        "validateDecom, tokenBucket, diskErase: {:?}",
        names(&ours)
    );
    assert!(
        jobs.iter()
            .all(|j| blocks.iter().any(|b| b.span_id == j.parent_span_id))
    );
}

fn names(spans: &[&Span]) -> Vec<String> {
    spans.iter().map(|s| s.name.clone()).collect()
}
