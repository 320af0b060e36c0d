//! The Interlock engine: how a workflow is checked, started, run, stopped
//! and resumed.
//!
//! Layout:
//! - [`job`]: the [`Job`] trait, the context a running attempt gets, and the
//!   [`JobRunner`] seam between the executor and whatever runs attempts.
//! - [`registry`]: the in-process runner over registered jobs.
//! - [`buckets`]: token buckets, decided and recorded by the store.
//! - [`admission`]: the seam through which policies reach the engine.
//! - [`audit`]: the audit log's writer and reader.
//! - [`estop`]: the emergency-stop state ([`EsState`]) and its file.
//! - [`engine`]: the domain API (Submit, Validate, Exec, Status, lifecycle
//!   actions, listing, audit) and the executor.
//! - [`error`]: [`EngineError`], one variant per thing a caller can do.
//!
//! Architecture invariants:
//! - The engine knows nothing about gRPC, HTTP or SQL: it persists through
//!   [`interlock_store::Store`] and reports [`EngineError`]s.
//! - Every state change is written to the store before anything can observe
//!   it, and under the workflow's lease.
//! - Every path that starts work (Exec, Resume, ResolveJob, recovery and
//!   takeover) goes through the same admission and emergency-stop checks,
//!   inside the engine.
//! - Time comes from the injected [`interlock_core::Clock`].
#![forbid(unsafe_code)]

pub mod admission;
pub mod audit;
pub mod buckets;
pub mod concurrency;
pub mod engine;
pub mod error;
pub mod estop;
pub mod job;
pub mod registry;

pub use admission::{Admission, AllowAll, Refusal};
pub use audit::{AuditPage, Auditor};
pub use buckets::{BucketDef, BucketError, BucketLevel, Buckets};
pub use concurrency::{ConcurrencyLimits, LimitDef};
pub use engine::{
    ApprovalTally, BucketNeed, CloneOptions, DryRun, Engine, EngineOptions, FireAuthorizer,
    Follower, Instantiate, Instantiated, LimitUsage, LogPage, Page, PartUsage,
    RESERVED_LABEL_PREFIX, Resolution, Retention, SCHEDULE_LABEL, ScheduleView, StoreHealth, Swept,
    TEMPLATE_LABEL, TEMPLATE_REVISION_LABEL, TemplateApplied, TemplateView, Verdict, Watched,
};
pub use error::EngineError;
pub use estop::EsState;
pub use interlock_store::FeedItem;
pub use job::{Job, JobCtx, JobError, JobRunner, JobSink, Outputs, Reconciled};
pub use registry::{LiveJobs, Registry};
