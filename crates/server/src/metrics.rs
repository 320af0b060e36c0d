//! Prometheus metrics on a separate HTTP port (`/metrics`).
//!
//! Counters and histograms are recorded where things happen (RPC layer,
//! engine, store writer, config reloader) through the `metrics` facade;
//! gauges of current state (running workflows, bucket levels, e-stop) are
//! refreshed at each scrape. The recorder is process-wide (one per process,
//! shared by every server in it, as in tests).

use crate::live::Live;
use interlock_engine::Engine;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Instant;
use tower::{Layer, Service};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process-wide recorder, installed on first use.
pub fn handle() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let b = PrometheusBuilder::new()
                .set_buckets(&[
                    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                    0.5, 1.0, 2.5,
                ])
                .expect("static buckets are valid");
            match b.install_recorder() {
                Ok(h) => h,
                // Another recorder owns the process (an embedder's): keep a
                // private one so /metrics still answers.
                Err(_) => PrometheusBuilder::new().build_recorder().handle(),
            }
        })
        .clone()
}

async fn refresh(engine: &Engine, live: &Live) {
    metrics::gauge!("interlock_workflows_running").set(engine.active_count() as f64);
    metrics::gauge!("interlock_store_queue_depth").set(engine.store_queue_depth() as f64);
    // Keyed buckets would mint a series per key: only unkeyed levels here.
    for b in live.buckets.levels().await.unwrap_or_default() {
        if b.key.is_empty() {
            metrics::gauge!("interlock_bucket_tokens_available", "bucket" => b.def.name.clone())
                .set(f64::from(b.available));
        }
    }
    let es = live.estop.borrow().clone();
    metrics::gauge!("interlock_estop_file_unusable").set(if es.error.is_some() {
        1.0
    } else {
        0.0
    });
    let stopped = es.entries().iter().filter(|(_, e)| e.stop).count();
    metrics::gauge!("interlock_estop_stopped_entries").set(stopped as f64);
    let loaded = live.policies.borrow().set.is_some();
    metrics::gauge!("interlock_policies_loaded").set(if loaded { 1.0 } else { 0.0 });
}

/// Serves `/metrics` on `addr`; returns the bound address.
pub async fn serve(
    addr: SocketAddr,
    engine: Engine,
    live: Live,
    stop: tokio_util::sync::CancellationToken,
) -> Result<SocketAddr, String> {
    let handle = handle();
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let (handle, engine, live) = (handle.clone(), engine.clone(), live.clone());
            async move {
                refresh(&engine, &live).await;
                handle.render()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen for metrics on {addr}: {e}"))?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await;
    });
    Ok(bound)
}

/// The path as a label when it belongs to a service this server runs;
/// anything else is "other", so arbitrary paths cannot mint new series.
fn method_label(path: &str) -> String {
    const SERVICES: [&str; 6] = [
        "/interlock.v1.Workflow/",
        "/interlock.v1.Control/",
        "/diskerase.Workflow/",
        "/grpc.health.v1.Health/",
        "/grpc.reflection.v1.ServerReflection/",
        "/grpc.reflection.v1alpha.ServerReflection/",
    ];
    let known = SERVICES.iter().any(|s| {
        path.strip_prefix(s).is_some_and(|m| {
            !m.is_empty() && m.len() <= 64 && m.chars().all(|c| c.is_ascii_alphanumeric())
        })
    });
    if known {
        path.to_string()
    } else {
        "other".to_string()
    }
}

/// Records `interlock_rpc_requests_total{method,code}` and
/// `interlock_rpc_duration_seconds{method}` for every gRPC call. The code is
/// read from the response headers, where tonic puts it for errors; a
/// response without one is counted as OK (success statuses travel in
/// trailers).
#[derive(Clone, Default)]
pub struct RpcMetricsLayer;

impl<S> Layer<S> for RpcMetricsLayer {
    type Service = RpcMetrics<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RpcMetrics { inner }
    }
}

#[derive(Clone)]
pub struct RpcMetrics<S> {
    inner: S,
}

impl<S, B, RB> Service<http::Request<B>> for RpcMetrics<S>
where
    S: Service<http::Request<B>, Response = http::Response<RB>> + Send,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = futures::future::BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let method = method_label(req.uri().path());
        let started = Instant::now();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let r = fut.await;
            let code = match &r {
                Ok(resp) => match resp
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                {
                    Some(c) => tonic::Code::from_bytes(c.as_bytes()),
                    None => tonic::Code::Ok,
                },
                Err(_) => tonic::Code::Unknown,
            };
            let code = format!("{code:?}");
            metrics::counter!("interlock_rpc_requests_total", "method" => method.clone(), "code" => code).increment(1);
            metrics::histogram!("interlock_rpc_duration_seconds", "method" => method)
                .record(started.elapsed().as_secs_f64());
            r
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn unknown_paths_share_one_label() {
        assert_eq!(
            super::method_label("/interlock.v1.Workflow/Submit"),
            "/interlock.v1.Workflow/Submit"
        );
        assert_eq!(
            super::method_label("/diskerase.Workflow/Status"),
            "/diskerase.Workflow/Status"
        );
        for reflection in [
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        ] {
            assert_eq!(super::method_label(reflection), reflection);
        }
        for junk in [
            "/x.Y/Z",
            "/interlock.v1.Workflow/",
            "/interlock.v1.Workflow/a/b",
            "/random-0192",
        ] {
            assert_eq!(super::method_label(junk), "other", "{junk}");
        }
    }
}
