//! interlockd: the Interlock gRPC server.
//!
//! Layout:
//! - [`audit`]: the audit log of mutating calls and config reloads.
//! - [`auth`]: authentication (a layer before every handler) and the
//!   per-RPC authorization guard over rbac.json.
//! - [`tls`]: the TLS listener, its certificates reloaded while serving.
//! - [`config`]: the one `Config` (defaults → file → env → flags).
//! - [`server`]: wiring: store, inventory, buckets, registry, engine, gRPC.
//! - [`service`]: thin handlers for `interlock.v1.Workflow` and the
//!   ancestor's `diskerase.Workflow`.
//! - [`lifecycle`]: Cancel, Pause, Resume, List, Watch, Clone.
//! - [`convert`]: wire ⇄ domain conversions.
//! - [`error`]: the only place domain errors become `tonic::Status`.
//! - [`limit`]: bounded in-flight RPCs.
//! - [`live`]: policies.json, es.json and buckets.json kept live (watch +
//!   periodic re-read + SIGHUP), last-known-good and fail-closed.
//! - [`control`]: the Control service (policy state, e-stop, buckets).
//! - [`metrics`]: Prometheus `/metrics` and the RPC metrics layer.
//! - [`http`]: the HTTP/JSON API, an adapter over the same services.
//! - [`web`]: the dashboard (pages, sign-in, assets, security headers).
//!
//! Architecture invariant: handlers hold no business logic; every check that
//! guards execution lives in the engine, so both protocols get the same.
#![forbid(unsafe_code)]

pub mod audit;
pub mod auth;
pub mod config;
pub mod control;
pub mod convert;
pub mod error;
pub mod http;
pub mod lifecycle;
pub mod limit;
pub mod live;
pub mod metrics;
pub mod notify;
pub mod server;
pub mod service;
pub mod tls;
pub mod web;

pub use config::{Args, Config};

/// Installs the global `tracing` subscriber: human text (colours only on a
/// terminal) or JSON lines, on stderr, filtered by `RUST_LOG` (default
/// `info`). Workflow work runs inside `workflow{id, name, trace_id}` and
/// `job{block, job, name}` spans, so every line names what it is about.
pub fn init_logs(format: config::LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Logs go to stderr: stdout carries the "listening on" line for scripts.
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(tty);
    match format {
        config::LogFormat::Json => b.json().init(),
        config::LogFormat::Text => b.init(),
    }
}
pub use server::{Running, ServerBuilder};
