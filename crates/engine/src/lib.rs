//! The Interlock engine: what a job is, which jobs exist, and how a workflow runs.
//!
//! Layout:
//! - [`job`]: the [`Job`] trait, the context a running job gets, job errors.
//! - [`registry`]: registered jobs and their schemas (implements [`Catalog`]).
//! - [`jobs`]: the built-in jobs (diskErase, sleep, validateDecom, tokenBucket).
//! - [`buckets`]: token buckets whose spends are durable.
//! - [`gate`]: the seam through which policies reach the engine ([`Admission`]).
//! - [`estop`]: the emergency-stop state ([`EsState`]), fed to the engine as a
//!   `watch` channel so running workflows react to every change.
//! - [`engine`]: Submit/Exec/Status semantics and the executor.
//!
//! Architecture invariants:
//! - The engine knows nothing about gRPC or SQL: it persists through
//!   [`interlock_store::Store`] and reports [`EngineError`]s.
//! - Every state change is written to the store before anything can observe it.
//! - Every path that starts work (Exec, and later resume) goes through the
//!   same admission and emergency-stop checks, inside the engine.
//!
//! [`Catalog`]: interlock_core::Catalog
#![forbid(unsafe_code)]

pub mod buckets;
pub mod engine;
pub mod estop;
pub mod gate;
pub mod job;
pub mod jobs;
pub mod registry;

pub use buckets::{BucketDef, BucketError, BucketLevel, Buckets};
pub use engine::{CloneOptions, Engine, EngineError, EngineOptions, Event, Resolution};
pub use estop::EsState;
pub use gate::{Admission, AllowAll, Refusal};
pub use job::{Job, JobCtx, JobError, Outputs, Reconciled};
pub use registry::Registry;
