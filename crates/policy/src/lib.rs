//! The policy engine: checks a [`WorkReq`] against the policies configured
//! for its name in `policies.json`.
//!
//! - [`Policy`]: one kind of rule with typed settings (one module per kind:
//!   [`restrict_job_types`], [`same_args`], [`start_or_end`],
//!   [`change_window`], [`require_approval`]).
//! - [`KINDS`]: the registered kinds. Adding a policy is one new module plus
//!   one line there.
//! - [`PolicySet`]: a parsed, validated `policies.json` with its version hash.
//!
//! Architecture invariants: pure logic — no tokio, no gRPC, no I/O beyond
//! parsing text handed in; the time comes in with the check ([`Ctx`]), from
//! the engine's pinnable clock, and the time zone database is compiled in. Policies read the request through a shared
//! reference and cannot change it. A check returns every violation, not the
//! first. Settings are validated against the job catalog at load, so a
//! policy that names a job or argument that does not exist (and would
//! therefore pass vacuously) is a configuration error, never a silent pass.
#![forbid(unsafe_code)]

pub mod change_window;
pub mod require_approval;
pub mod restrict_job_types;
pub mod same_args;
mod set;
pub mod start_or_end;

pub use set::{ConfigError, PolicySet, Rules, Verdict};

use interlock_core::{Catalog, Micros, Violation, WorkReq};
use serde::de::DeserializeOwned;
use std::marker::PhantomData;

/// What a check knows besides the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ctx {
    /// Now, in microseconds since the Unix epoch, on the engine's clock.
    pub now: Micros,
}

/// One kind of policy.
pub trait Policy: Send + Sync + Sized + 'static {
    /// The name used in `policies.json`.
    const NAME: &'static str;
    /// Settings as written in the file; use `#[serde(deny_unknown_fields)]`.
    type Settings: DeserializeOwned;
    /// Validates settings against the registered jobs.
    fn new(settings: Self::Settings, jobs: &dyn Catalog) -> Result<Self, String>;
    /// Appends every violation of `req` to `out`.
    fn check(&self, req: &WorkReq, ctx: &Ctx, out: &mut Vec<Violation>);

    /// Why a workflow already running must pause now, if it must (a change
    /// window that closed, with pause-at-end). Most kinds never pause.
    fn pauses(&self, _req: &WorkReq, _ctx: &Ctx) -> Option<String> {
        None
    }

    /// The approvals `req` needs before Exec, if this policy asks for any.
    fn approval(&self, _req: &WorkReq) -> Option<interlock_core::ApprovalRule> {
        None
    }
}

/// Every registered policy kind. Add new kinds here.
pub const KINDS: &[&dyn Kind] = &[
    &Typed::<restrict_job_types::RestrictJobTypes>(PhantomData),
    &Typed::<same_args::SameArgs>(PhantomData),
    &Typed::<start_or_end::StartOrEnd>(PhantomData),
    &Typed::<change_window::ChangeWindow>(PhantomData),
    &Typed::<require_approval::RequireApproval>(PhantomData),
];

/// Object-safe face of a [`Policy`] kind: builds checks from JSON settings.
pub trait Kind: Sync {
    fn name(&self) -> &'static str;
    fn build(
        &self,
        settings: serde_json::Value,
        jobs: &dyn Catalog,
    ) -> Result<Box<dyn Check>, String>;
}

/// A configured policy, ready to check requests.
pub trait Check: Send + Sync {
    fn name(&self) -> &'static str;
    fn check(&self, req: &WorkReq, ctx: &Ctx, out: &mut Vec<Violation>);
    fn pauses(&self, req: &WorkReq, ctx: &Ctx) -> Option<String>;
    fn approval(&self, req: &WorkReq) -> Option<interlock_core::ApprovalRule>;
}

/// Adapts a typed [`Policy`] to [`Kind`].
pub struct Typed<P>(PhantomData<fn() -> P>);

impl<P: Policy> Kind for Typed<P> {
    fn name(&self) -> &'static str {
        P::NAME
    }

    fn build(
        &self,
        settings: serde_json::Value,
        jobs: &dyn Catalog,
    ) -> Result<Box<dyn Check>, String> {
        let s: P::Settings = serde_json::from_value(settings).map_err(|e| e.to_string())?;
        Ok(Box::new(P::new(s, jobs)?))
    }
}

impl std::fmt::Debug for dyn Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Check({})", self.name())
    }
}

impl<P: Policy> Check for P {
    fn name(&self) -> &'static str {
        P::NAME
    }

    fn check(&self, req: &WorkReq, ctx: &Ctx, out: &mut Vec<Violation>) {
        Policy::check(self, req, ctx, out)
    }

    fn pauses(&self, req: &WorkReq, ctx: &Ctx) -> Option<String> {
        Policy::pauses(self, req, ctx)
    }

    fn approval(&self, req: &WorkReq) -> Option<interlock_core::ApprovalRule> {
        Policy::approval(self, req)
    }
}

/// Settings-validation helper: the job must be registered.
pub(crate) fn known_job(jobs: &dyn Catalog, name: &str, field: &str) -> Result<(), String> {
    if jobs.schema(name).is_some() {
        return Ok(());
    }
    let mut known: Vec<_> = jobs.schemas().iter().map(|s| s.name).collect();
    known.sort_unstable();
    Err(format!(
        "{field} names job {name:?}, which is not registered{} (registered: {})",
        interlock_core::suggestion(name, known.iter().copied()),
        known.join(", ")
    ))
}

/// Settings-validation helper: the job takes this argument (keys are
/// case-sensitive: a policy on `Site` when the job's argument is `site`
/// would never match anything).
pub(crate) fn known_arg(
    jobs: &dyn Catalog,
    job: &str,
    arg: &str,
    field: &str,
) -> Result<(), String> {
    let schema = jobs
        .schema(job)
        .ok_or_else(|| format!("{field}: job {job:?} is not registered"))?;
    if schema.args.iter().any(|a| a.name == arg) {
        return Ok(());
    }
    let known: Vec<_> = schema.args.iter().map(|a| a.name).collect();
    Err(format!(
        "{field} names argument {arg:?} of job {job:?}, which it does not take{} (it takes {}; names are case-sensitive)",
        interlock_core::suggestion(arg, known.iter().copied()),
        known.join(", ")
    ))
}

#[cfg(test)]
pub(crate) mod testutil;
