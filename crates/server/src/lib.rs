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
//! - [`telemetry`]: the log subscriber and OpenTelemetry trace export.
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
pub mod inventory;
pub mod lifecycle;
pub mod limit;
pub mod live;
pub mod metrics;
pub mod notify;
pub mod schedules;
pub mod server;
pub mod service;
pub mod status;
pub mod telemetry;
pub mod templates;
pub mod tls;
pub mod web;
pub mod worker;

pub use config::{Args, Config};

pub use server::{Running, ServerBuilder};
