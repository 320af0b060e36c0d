//! What exporting traces costs Submit: two interlockd children, one
//! exporting every span over OTLP to a collector in this process (which
//! accepts and drops them), one not, pinned and driven as `compare` does,
//! runs alternating. The ratio traced / plain is the figure of merit.

use crate::Row;
use crate::harness::{pct, sorted};
use crate::scenarios::compare::{
    confine_children, drive_from_core_1, load, pin, start_interlockd_with,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counts the spans it receives, keeps none.
#[derive(Clone, Default)]
struct Sink(Arc<AtomicU64>);

#[tonic::async_trait]
impl TraceService for Sink {
    async fn export(
        &self,
        r: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let n: usize = r
            .get_ref()
            .resource_spans
            .iter()
            .flat_map(|rs| &rs.scope_spans)
            .map(|ss| ss.spans.len())
            .sum();
        self.0.fetch_add(n as u64, Ordering::Relaxed);
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

pub async fn traced(bin: &Path, seconds: u64, runs: usize) -> anyhow::Result<Vec<Row>> {
    let sink = Sink::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let at = listener.local_addr()?;
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(sink.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let (plain_dir, traced_dir) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let confined = confine_children();
    let plain = start_interlockd_with(bin, plain_dir.path(), &[])?;
    let traced = start_interlockd_with(
        bin,
        traced_dir.path(),
        &["--otlp-endpoint".into(), format!("http://{at}")],
    )?;
    let pinned = confined && pin(plain.pid(), 0) && pin(traced.pid(), 0) && drive_from_core_1();
    let mut rows = Vec::new();
    for conc in [1usize, 8, 32] {
        let (mut p_rates, mut t_rates, mut p99s) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..runs {
            for (is_traced, rates, addr) in [
                (false, &mut p_rates, &plain.addr),
                (true, &mut t_rates, &traced.addr),
            ] {
                let (lat, _) = load(addr, conc, seconds).await?;
                rates.push(lat.len() as f64 / seconds as f64);
                if is_traced {
                    p99s.push(pct(&sorted(lat), 99.0));
                }
            }
        }
        let (p, t) = (pct(&sorted(p_rates), 50.0), pct(&sorted(t_rates), 50.0));
        rows.push(Row {
            scenario: format!(
                "traces exported over OTLP vs not, Submit c={conc}{}",
                if pinned { ", pinned" } else { ", not pinned" }
            ),
            result: format!(
                "{:.2}× — traced {t:.0}/s (p99 {:.2} ms), plain {p:.0}/s; median of {runs} runs of {seconds} s",
                t / p,
                pct(&sorted(p99s), 50.0)
            ),
            target: "overhead < 10 % (≥ 0.90×)".into(),
            values: BTreeMap::from([("ratio".into(), t / p)]),
        });
    }
    drop(traced);
    // The traced server flushes on exit; let the last batch land.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let spans = sink.0.load(Ordering::Relaxed);
    if let Some(last) = rows.last_mut() {
        last.result
            .push_str(&format!("; the collector received {spans} spans"));
    }
    Ok(rows)
}
