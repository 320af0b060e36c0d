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

impl Collector {
    /// A collector serving on 127.0.0.1: it, its address, its task.
    async fn serve() -> (Self, std::net::SocketAddr, tokio::task::JoinHandle<()>) {
        let collector = Collector::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let at = listener.local_addr().unwrap();
        let service = TraceServiceServer::new(collector.clone());
        let serve = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await;
        });
        (collector, at, serve)
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
    let (collector, at, serve) = Collector::serve().await;

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
    let stored = one("store.submit");
    // Steps of the Submit: its children, inside its time.
    for step in [one("admission"), stored] {
        assert_eq!(
            step.parent_span_id, submit.span_id,
            "{} is a step of the Submit",
            step.name
        );
        assert!(
            submit.start_time_unix_nano <= step.start_time_unix_nano
                && step.start_time_unix_nano <= step.end_time_unix_nano
                && step.end_time_unix_nano <= submit.end_time_unix_nano,
            "{} lies inside the Submit: {step:?} in {submit:?}",
            step.name
        );
    }
    let named_id = stored
        .attributes
        .iter()
        .find(|kv| kv.key == "workflow")
        .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
            opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(s) => {
                Some(s.clone())
            }
            _ => None,
        });
    assert_eq!(
        named_id.as_deref(),
        Some(id.as_str()),
        "the store commit names the workflow Submit made"
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_resumed_after_a_crash_stays_in_its_trace() {
    let (collector, at, serve) = Collector::serve().await;
    let dir = tempfile::tempdir().unwrap();
    let spec = DaemonSpec::new(interlockd!(), dir.path())
        .args(["--erase-duration", "2s", "--otlp-endpoint"])
        .arg(format!("http://{at}"));
    let mut d = spec.spawn().expect("starts");
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
    // Killed while the erase runs; the next process resumes it.
    let c = d.client().await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let st = c.status(&id).await.unwrap();
        if st.blocks[1].jobs[0].status == v1::Status::Running as i32 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the erase never started: {st:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    d.kill();
    let mut d = spec.spawn().expect("starts again");
    let st = wait_final(&d.client().await, &id).await;
    assert_eq!(st.status, v1::Status::Completed as i32, "{}", st.reason);
    d.signal("TERM");
    d.wait_exit(std::time::Duration::from_secs(30))
        .expect("exits after TERM");
    serve.abort();

    let spans = collector.0.lock().unwrap().clone();
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let ours: Vec<&Span> = spans.iter().filter(|s| hex(&s.trace_id) == TRACE).collect();
    // The killed process never ended (nor exported) its workflow span;
    // the resumed run's is in the same trace, under the workflow's parent.
    let workflows: Vec<&&Span> = ours.iter().filter(|s| s.name == "workflow").collect();
    assert_eq!(workflows.len(), 1, "{:?}", names(&ours));
    let resumed = workflows[0];
    // The parent id is the low 64 bits of the workflow id.
    let parent = id.replace('-', "")[16..].to_string();
    assert_eq!(hex(&resumed.parent_span_id), parent);
    assert!(
        ours.iter()
            .any(|s| s.name == "block" && s.parent_span_id == resumed.span_id),
        "its blocks are under it: {:?}",
        names(&ours)
    );
}
