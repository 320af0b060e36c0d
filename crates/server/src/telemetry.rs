//! Logs and traces: the global `tracing` subscriber, and, when an OTLP
//! endpoint is configured, OpenTelemetry spans exported over OTLP/gRPC.
//!
//! Every `tracing` span the server opens (an `rpc` span per gRPC call, the
//! engine's `workflow`, `block` and `job` spans, admission steps) becomes
//! an OpenTelemetry span through `tracing-opentelemetry`; nothing in the
//! engine knows about OpenTelemetry. A gRPC call carrying a W3C
//! `traceparent` continues the caller's trace, and Submit stores that
//! trace's id with the workflow (`trace_id`) when the request names none.
//!
//! Invariants:
//! - With no endpoint configured nothing is exported and no `rpc` span is
//!   made (the hot path pays one relaxed load).
//! - Export never blocks a call: spans are batched and sent by the SDK's
//!   own worker; an unreachable collector loses spans, not requests.
//! - [`Telemetry::shutdown`] flushes what is batched before the process
//!   exits.

use crate::config::LogFormat;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use std::sync::atomic::{AtomicBool, Ordering};
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Whether spans are exported (an OTLP endpoint is configured).
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// What must be flushed at exit.
#[must_use = "call shutdown() before exiting, or batched spans are lost"]
pub struct Telemetry {
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Telemetry {
    /// Sends what is batched (bounded by the SDK's export timeout).
    pub fn shutdown(self) {
        if let Some(p) = self.provider
            && let Err(e) = p.shutdown()
        {
            eprintln!("interlockd: flushing traces: {e}");
        }
    }
}

/// Installs the global subscriber: human text (colours only on a terminal)
/// or JSON lines on stderr, filtered by `RUST_LOG` (default `info`); and,
/// with `otlp_endpoint`, an OpenTelemetry layer exporting to it.
pub fn init(format: LogFormat, otlp_endpoint: Option<&str>) -> Result<Telemetry, String> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Logs go to stderr: stdout carries the "listening on" line for scripts.
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(tty);
    let fmt = match format {
        LogFormat::Json => fmt.json().boxed(),
        LogFormat::Text => fmt.boxed(),
    };
    let (otel, provider) = match otlp_endpoint {
        None => (None, None),
        Some(endpoint) => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint)
                .with_timeout(std::time::Duration::from_secs(5))
                .build()
                .map_err(|e| format!("OTLP exporter for {endpoint}: {e}"))?;
            let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(
                    opentelemetry_sdk::Resource::builder()
                        .with_service_name("interlockd")
                        .build(),
                )
                .build();
            opentelemetry::global::set_text_map_propagator(
                opentelemetry_sdk::propagation::TraceContextPropagator::new(),
            );
            let tracer = provider.tracer("interlockd");
            EXPORTING.store(true, Ordering::Relaxed);
            // Per-span extras cost time on every poll (busy/idle tracking,
            // making the span's OpenTelemetry context the thread's current
            // one on each enter) or allocate attributes (source location,
            // thread); a span's name, fields, timing and parent are what a
            // trace needs. Nothing here reads the thread's current context:
            // trace ids are read from the tracing span (`current_traceparent`).
            let layer = tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_context_activation(false)
                .with_tracked_inactivity(false)
                .with_location(false)
                .with_threads(false);
            (Some(layer), Some(provider))
        }
    };
    // Each layer filters for itself: logs by RUST_LOG; traces take
    // Interlock's own spans down to debug (admission steps, store commits),
    // which cost nothing when no exporter wants them, and its events from
    // info up (a span event is built, its fields formatted, and exported
    // for each: the debug ones, such as one per Submit, are for a
    // developer's log, not for every trace).
    let otel = otel.map(|l| {
        use tracing_subscriber::filter::FilterExt as _;
        l.with_filter(
            tracing_subscriber::filter::Targets::new()
                .with_target("interlock", tracing::Level::DEBUG)
                .and(
                    tracing_subscriber::filter::filter_fn(|m| {
                        m.is_span() || *m.level() <= tracing::Level::INFO
                    })
                    // Without a hint the subscriber's most verbose level
                    // would be trace, and every `log::trace!` of a
                    // dependency would be offered to both layers.
                    .with_max_level_hint(tracing::level_filters::LevelFilter::DEBUG),
                ),
        )
    });
    tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .with(otel)
        .try_init()
        .map_err(|e| format!("logging: {e}"))?;
    Ok(Telemetry { provider })
}

struct Headers<'a>(&'a http::HeaderMap);

impl opentelemetry::propagation::Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// The span for one gRPC call, continuing the caller's trace when the call
/// carries a `traceparent`; a disabled span when nothing is exported.
pub fn rpc_span(method: &str, headers: &http::HeaderMap) -> tracing::Span {
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    if !exporting() {
        return tracing::Span::none();
    }
    // Debug, so only the trace layer takes it: the log layer (info by
    // default) would format its fields for every call, and logs read the
    // same whether traces are exported or not (without an exporter there
    // is no such span).
    let span = tracing::debug_span!("rpc", otel.name = %method, rpc.system = "grpc",
        otel.kind = "server");
    if headers.contains_key("traceparent") {
        let parent =
            opentelemetry::global::get_text_map_propagator(|p| p.extract(&Headers(headers)));
        let _ = span.set_parent(parent);
    }
    span
}

/// Puts a run's `workflow` span in the workflow's stored trace when its
/// parent (the Exec call, or nothing for a run resumed after a restart) is
/// in another trace, under a parent id derived from the workflow id: every
/// run of a workflow, across restarts and replicas, is in its one trace.
pub fn join_workflow_trace(span: &tracing::Span, workflow_id: &str, trace_id: &str) {
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState,
    };
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    if !exporting() {
        return;
    }
    let Ok(trace) = TraceId::from_hex(trace_id) else {
        return;
    };
    if trace == TraceId::INVALID
        || tracing::Span::current()
            .context()
            .span()
            .span_context()
            .trace_id()
            == trace
    {
        return;
    }
    let id = uuid::Uuid::parse_str(workflow_id)
        .map(|u| u.as_u64_pair().1)
        .unwrap_or(1)
        .max(1);
    let parent = SpanContext::new(
        trace,
        SpanId::from_bytes(id.to_be_bytes()),
        TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    );
    let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(parent));
}

/// The W3C `traceparent` of the current span, when traces are exported.
pub fn current_traceparent() -> Option<String> {
    use opentelemetry::trace::TraceContextExt as _;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    if !exporting() {
        return None;
    }
    let cx = tracing::Span::current().context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| {
        format!(
            "00-{}-{}-{:02x}",
            sc.trace_id(),
            sc.span_id(),
            sc.trace_flags().to_u8()
        )
    })
}

/// The trace id (32 lowercase hex digits) of a W3C `traceparent` value
/// (`00-<trace id>-<parent id>-<flags>`), if it is well formed and not
/// all zeros.
pub fn trace_id_of(traceparent: &str) -> Option<&str> {
    let mut parts = traceparent.trim().split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    let ok = hex(version, 2)
        && version != "ff"
        && hex(trace, 32)
        && trace.bytes().any(|b| b != b'0')
        && hex(parent, 16)
        && hex(flags, 2)
        && trace.bytes().all(|b| !b.is_ascii_uppercase());
    ok.then_some(trace)
}

#[cfg(test)]
mod tests {
    #[test]
    fn trace_ids_are_read_from_well_formed_traceparents_only() {
        let id = "4bf92f3577b34da6a3ce929d0e0e4736";
        assert_eq!(
            super::trace_id_of(&format!("00-{id}-00f067aa0ba902b7-01")),
            Some(id)
        );
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            assert_eq!(super::trace_id_of(bad), None, "{bad:?}");
        }
    }
}
