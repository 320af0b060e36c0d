//! Prometheus metrics on a separate HTTP port (`/metrics`).
//!
//! Counters and histograms are recorded where things happen (RPC layer,
//! engine, store writer, config reloader) through the `metrics` facade;
//! gauges of current state (running workflows, bucket levels, e-stop) are
//! refreshed at each scrape. The recorder is process-wide (one per process,
//! shared by every server in it, as in tests).
//!
//! Every family carries `# HELP` and `# TYPE` (it passes `promtool check
//! metrics`): facade metrics are described once, from `DESCRIBED`, when the
//! recorder is installed; the standard `process_*` metrics are read from
//! `/proc` at scrape time and rendered here; `interlock_build_info` names the
//! version and git commit.
//!
//! Why one file over 600 lines: about 480 lines of code, and the tests of
//! the rendered exposition stay beside the renderer they check.

use crate::live::Live;
use interlock_core::EsMode;
use interlock_engine::Engine;
use metrics::Unit;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Instant;
use tower::{Layer, Service};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// One metric recorded through the `metrics` facade.
struct Described {
    name: &'static str,
    kind: Kind,
    unit: Unit,
    help: &'static str,
}

const fn m(name: &'static str, kind: Kind, unit: Unit, help: &'static str) -> Described {
    Described {
        name,
        kind,
        unit,
        help,
    }
}

/// Every metric name the workspace records, wherever it is recorded (a test
/// scans the sources so a new one cannot go undescribed). Names carry their
/// unit and counters end in `_total`, as Prometheus asks.
const DESCRIBED: &[Described] = {
    use Kind::*;
    &[
        m(
            "interlock_build_info",
            Gauge,
            Unit::Count,
            "Always 1; the labels name the interlockd version and the git commit it was built from.",
        ),
        m(
            "interlock_leases_held",
            Gauge,
            Unit::Count,
            "Running workflows this server owns (holds the lease of) and executes.",
        ),
        m(
            "interlock_pruned_workflows_total",
            Counter,
            Unit::Count,
            "Finished workflows retention deleted (their audit entries are kept longer).",
        ),
        m(
            "interlock_pruned_audit_entries_total",
            Counter,
            Unit::Count,
            "Audit entries, and tombstones of pruned workflows, retention deleted.",
        ),
        m(
            "interlock_db_size_bytes",
            Gauge,
            Unit::Bytes,
            "Size of the database (SQLite file pages, or the PostgreSQL database), refreshed each retention sweep.",
        ),
        m(
            "interlock_takeovers_total",
            Counter,
            Unit::Count,
            "Running workflows this server claimed because their owner's lease lapsed (or at start-up).",
        ),
        m(
            "interlock_notifications_total",
            Counter,
            Unit::Count,
            "Webhook notifications by outcome: delivered, retried (a failed try), given_up, dropped (queue full).",
        ),
        m(
            "interlock_workers_connected",
            Gauge,
            Unit::Count,
            "Worker sessions open on this server (jobs.json types served out of process).",
        ),
        m(
            "interlock_worker_dispatches_total",
            Counter,
            Unit::Count,
            "Tasks leased to workers (a re-dispatch after a lost worker counts again).",
        ),
        m(
            "interlock_workers_lost_total",
            Counter,
            Unit::Count,
            "Worker sessions lost: stream closed or silent past --worker-ttl.",
        ),
        m(
            "interlock_worker_results_refused_total",
            Counter,
            Unit::Count,
            "Checkpoints and results refused because the worker no longer held the task's lease.",
        ),
        m(
            "interlock_job_log_lines_dropped_total",
            Counter,
            Unit::Count,
            "Job log lines not recorded: logged faster than the store took them, or a failed write.",
        ),
        m(
            "interlock_limit_waits_total",
            Counter,
            Unit::Count,
            "Jobs that had to wait for a blast-radius limit (limits.json), by limit.",
        ),
        m(
            "interlock_fenced_writes_total",
            Counter,
            Unit::Count,
            "Progress writes refused because another server took the workflow over; the run stopped here.",
        ),
        m(
            "interlock_rpc_requests_total",
            Counter,
            Unit::Count,
            "gRPC calls answered, by method and status code (unknown paths share method=\"other\").",
        ),
        m(
            "interlock_rpc_duration_seconds",
            Histogram,
            Unit::Seconds,
            "Time from receiving a gRPC call to its response headers, by method.",
        ),
        m(
            "interlock_http_requests_total",
            Counter,
            Unit::Count,
            "HTTP/JSON API calls answered, by route (as declared, ids not expanded; unknown paths share route=\"other\"), method and HTTP status.",
        ),
        m(
            "interlock_http_duration_seconds",
            Histogram,
            Unit::Seconds,
            "Time from receiving an HTTP/JSON API call to its response headers, by route.",
        ),
        m(
            "interlock_http_signins_total",
            Counter,
            Unit::Count,
            "Dashboard sign-ins, by outcome (ok, refused).",
        ),
        m(
            "interlock_auth_failures_total",
            Counter,
            Unit::Count,
            "Calls refused for missing or invalid credentials (not audited), by reason.",
        ),
        m(
            "interlock_auth_denials_total",
            Counter,
            Unit::Count,
            "Authenticated calls refused for lack of a grant in rbac.json, by action.",
        ),
        m(
            "interlock_tls_handshake_failures_total",
            Counter,
            Unit::Count,
            "TLS handshakes that failed or timed out.",
        ),
        m(
            "interlock_config_reloads_total",
            Counter,
            Unit::Count,
            "Config loads (at start and on change), by file (or tls) and outcome (ok, or invalid: the last good one stays).",
        ),
        m(
            "interlock_workflows_running",
            Gauge,
            Unit::Count,
            "Workflows executing in this process.",
        ),
        m(
            "interlock_workflows_finished_total",
            Counter,
            Unit::Count,
            "Workflows that ended, by final status.",
        ),
        m(
            "interlock_jobs_started_total",
            Counter,
            Unit::Count,
            "Job attempts started, by job type.",
        ),
        m(
            "interlock_jobs_finished_total",
            Counter,
            Unit::Count,
            "Jobs that ended, by job type and final status.",
        ),
        m(
            "interlock_store_queue_depth",
            Gauge,
            Unit::Count,
            "Store writes waiting for the writer thread.",
        ),
        m(
            "interlock_store_batch_ops",
            Histogram,
            Unit::Count,
            "Store writes committed together in one transaction (group commit).",
        ),
        m(
            "interlock_store_commit_seconds",
            Histogram,
            Unit::Seconds,
            "Time to commit one group of store writes.",
        ),
        m(
            "interlock_bucket_tokens_available",
            Gauge,
            Unit::Count,
            "Tokens available now in each token bucket without keys, by bucket.",
        ),
        m(
            "interlock_estop_file_unusable",
            Gauge,
            Unit::Count,
            "1 while es.json is missing or malformed (everything is stopped: fail closed), else 0.",
        ),
        m(
            "interlock_estop_stopped_entries",
            Gauge,
            Unit::Count,
            "Entries of es.json that stop their workflow name.",
        ),
        m(
            "interlock_estop_drained_entries",
            Gauge,
            Unit::Count,
            "Entries of es.json that drain their workflow name (no new work, jobs in flight finish).",
        ),
        m(
            "interlock_policies_loaded",
            Gauge,
            Unit::Count,
            "1 while a valid policies.json is in force, else 0 (every request is refused).",
        ),
    ]
};

/// Describes every facade metric and sets `interlock_build_info`, on the
/// recorder in force where it is called.
fn describe() {
    for d in DESCRIBED {
        match d.kind {
            Kind::Counter => metrics::describe_counter!(d.name, d.unit, d.help),
            Kind::Gauge => metrics::describe_gauge!(d.name, d.unit, d.help),
            Kind::Histogram => metrics::describe_histogram!(d.name, d.unit, d.help),
        }
    }
    metrics::gauge!(
        "interlock_build_info",
        "version" => env!("CARGO_PKG_VERSION"),
        "commit" => env!("INTERLOCK_COMMIT"),
    )
    .set(1.0);
}

/// The process-wide recorder, installed on first use.
pub fn handle() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&[
                    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                    0.5, 1.0, 2.5,
                ])
                .expect("static buckets are valid")
                // A count, not seconds: the default buckets would put every
                // batch in the top two.
                .set_buckets_for_metric(
                    Matcher::Full("interlock_store_batch_ops".into()),
                    &[
                        1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
                    ],
                )
                .expect("static buckets are valid")
                .build_recorder();
            let handle = recorder.handle();
            match metrics::set_global_recorder(recorder) {
                Ok(()) => describe(),
                // Another recorder owns the process (an embedder's): keep a
                // private one so /metrics still answers, described too.
                Err(e) => metrics::with_local_recorder(&e.into_inner(), describe),
            }
            handle
        })
        .clone()
}

/// The standard process metrics, as Prometheus's client libraries export
/// them, rendered in the text format. They are rendered here rather than
/// through the facade because `process_cpu_seconds_total` is a counter of
/// fractional seconds, and facade counters are integers.
struct ProcessFamily {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
}

const PROCESS: [ProcessFamily; 6] = [
    ProcessFamily {
        name: "process_cpu_seconds_total",
        kind: "counter",
        help: "Total user and system CPU time spent in seconds.",
    },
    ProcessFamily {
        name: "process_open_fds",
        kind: "gauge",
        help: "Number of open file descriptors.",
    },
    ProcessFamily {
        name: "process_max_fds",
        kind: "gauge",
        help: "Maximum number of open file descriptors.",
    },
    ProcessFamily {
        name: "process_virtual_memory_bytes",
        kind: "gauge",
        help: "Virtual memory size in bytes.",
    },
    ProcessFamily {
        name: "process_resident_memory_bytes",
        kind: "gauge",
        help: "Resident memory size in bytes.",
    },
    ProcessFamily {
        name: "process_start_time_seconds",
        kind: "gauge",
        help: "Start time of the process since unix epoch in seconds.",
    },
];

/// Linux's USER_HZ, the unit of times in /proc/self/stat. It is part of the
/// kernel ABI (100 on every architecture we build for); reading it with
/// sysconf would need `unsafe`, which this workspace forbids. Prometheus's
/// own procfs library assumes the same.
const USER_HZ: f64 = 100.0;

/// Reads the process metrics, in [`PROCESS`] order; `None` where /proc
/// cannot tell (not Linux, or a field missing).
fn process_values() -> [Option<f64>; 6] {
    let read = |p: &str| std::fs::read_to_string(p).ok();
    // Fields after the command name, which is in parentheses and may hold
    // spaces: index 0 is field 3 (state) of proc(5).
    let stat = read("/proc/self/stat");
    let stat: Vec<&str> = stat
        .as_deref()
        .and_then(|s| s.rsplit_once(')'))
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let field = |n: usize| stat.get(n - 3).and_then(|v| v.parse::<f64>().ok());
    let cpu = field(14).zip(field(15)).map(|(u, s)| (u + s) / USER_HZ);
    let vsize = field(23);
    let boot = read("/proc/stat").and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse::<f64>().ok())
    });
    let start = boot.zip(field(22)).map(|(b, t)| b + t / USER_HZ);
    let rss = read("/proc/self/status").and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().strip_suffix("kB"))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map(|kb| kb * 1024.0)
    });
    let open = std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|d| d.count() as f64);
    // "Max open files  <soft>  <hard>  files": the soft limit is the one
    // that refuses the next open; "unlimited" has no number to report.
    let max = read("/proc/self/limits").and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Max open files"))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
    });
    [cpu, open, max, vsize, rss, start]
}

/// The process families in the text format, each with HELP and TYPE.
fn render_process() -> String {
    use std::fmt::Write;
    let mut out = String::new();
    for (f, v) in PROCESS.iter().zip(process_values()) {
        if let Some(v) = v {
            let _ = write!(
                out,
                "# HELP {0} {1}\n# TYPE {0} {2}\n{0} {v}\n\n",
                f.name, f.help, f.kind
            );
        }
    }
    out
}

async fn refresh(engine: &Engine, live: &Live) {
    metrics::gauge!("interlock_workflows_running").set(engine.active_count() as f64);
    metrics::gauge!("interlock_leases_held").set(engine.active_count() as f64);
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
    let count = |m: EsMode| es.entries().iter().filter(|(_, e)| e.mode == m).count() as f64;
    metrics::gauge!("interlock_estop_stopped_entries").set(count(EsMode::Stop));
    metrics::gauge!("interlock_estop_drained_entries").set(count(EsMode::Drain));
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
                handle.render() + &render_process()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen for metrics on {addr}: {e}"))?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    tracing::info!(addr = %bound, "serving /metrics");
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
        use tracing::Instrument as _;
        let method = method_label(req.uri().path());
        let started = Instant::now();
        // The handler runs inside the call's span, so what it starts (a
        // workflow's span, on Exec) belongs to the caller's trace.
        let span =
            crate::telemetry::rpc_span(req.uri().path().trim_start_matches('/'), req.headers());
        // Entered on each poll, not around `call` too: a tonic handler's
        // `call` only builds its future.
        let fut = self.inner.call(req).instrument(span);
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
    use super::{DESCRIBED, Kind, PROCESS};
    use std::collections::BTreeSet;
    use std::path::Path;

    /// Every `counter!`/`gauge!`/`histogram!` call in the workspace's
    /// sources, as (kind, name); panics on a name that is not a literal,
    /// which this check (and so DESCRIBED) could not follow.
    fn recorded_in(dir: &Path, out: &mut BTreeSet<(Kind, String)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy();
            if path.is_dir() {
                if !name.starts_with('.') && name != "target" {
                    recorded_in(&path, out);
                }
                continue;
            }
            if !name.ends_with(".rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for (kind, macro_name) in [
                (Kind::Counter, "counter"),
                (Kind::Gauge, "gauge"),
                (Kind::Histogram, "histogram"),
            ] {
                // Built, not written out, so this file's own text does not
                // match.
                let call = format!("{macro_name}!(");
                for (at, _) in text.match_indices(&call) {
                    let before = text[..at].chars().next_back();
                    if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                        continue; // describe_counter!(...) and the like
                    }
                    let args = text[at + call.len()..].trim_start();
                    let name = args
                        .strip_prefix('"')
                        .and_then(|a| a.split_once('"'))
                        .map(|(n, _)| n.to_string())
                        .unwrap_or_else(|| {
                            panic!("{}: a metric name that is not a literal", path.display())
                        });
                    out.insert((kind, name));
                }
            }
        }
    }

    #[test]
    fn every_recorded_metric_is_described_and_nothing_else() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut recorded = BTreeSet::new();
        recorded_in(&root, &mut recorded);
        let described: BTreeSet<_> = DESCRIBED
            .iter()
            .map(|d| (d.kind, d.name.to_string()))
            .collect();
        assert!(
            recorded.len() >= 15,
            "the scan found too little: {recorded:?}"
        );
        let undescribed: Vec<_> = recorded.difference(&described).collect();
        let unused: Vec<_> = described.difference(&recorded).collect();
        assert!(undescribed.is_empty(), "add to DESCRIBED: {undescribed:?}");
        assert!(
            unused.is_empty(),
            "described but never recorded: {unused:?}"
        );
    }

    #[test]
    fn names_follow_prometheus_conventions() {
        let mut seen = BTreeSet::new();
        for d in DESCRIBED {
            assert!(seen.insert(d.name), "{} described twice", d.name);
            assert!(d.name.starts_with("interlock_"), "{}", d.name);
            assert_eq!(
                d.kind == Kind::Counter,
                d.name.ends_with("_total"),
                "{}: counters, and only counters, end in _total",
                d.name
            );
            if d.unit == metrics::Unit::Seconds {
                assert!(d.name.ends_with("_seconds"), "{}", d.name);
            }
            assert!(
                d.help.ends_with('.') && !d.help.contains('\n'),
                "{}",
                d.name
            );
        }
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn process_metrics_are_read_from_proc() {
        let text = super::render_process();
        let value = |name: &str| -> f64 {
            let line = text
                .lines()
                .find(|l| l.starts_with(&format!("{name} ")))
                .unwrap_or_else(|| panic!("no {name} in\n{text}"));
            line[name.len() + 1..].parse().unwrap()
        };
        for f in PROCESS {
            assert!(text.contains(&format!("# HELP {} ", f.name)), "{text}");
            assert!(
                text.contains(&format!("# TYPE {} {}\n", f.name, f.kind)),
                "{text}"
            );
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let start = value("process_start_time_seconds");
        assert!(
            start <= now + 1.0 && start > now - 24.0 * 3600.0,
            "{start} vs {now}"
        );
        let rss = value("process_resident_memory_bytes");
        assert!(
            rss > 1e6 && rss <= value("process_virtual_memory_bytes"),
            "{text}"
        );
        let open = value("process_open_fds");
        assert!(open >= 3.0 && open <= value("process_max_fds"), "{text}");
        assert!(value("process_cpu_seconds_total") >= 0.0);
    }

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
