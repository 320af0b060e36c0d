//! The seam for admission (policies): the engine asks an [`Admission`] whether a
//! request may be accepted or started. The server plugs in the live policy
//! set; tests and embedders can plug in their own. It is consulted inside the
//! engine, so no RPC can reach execution without it.

use interlock_core::{Micros, Violation, WorkReq};

/// Why admission refused a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The request breaks policies of this version.
    Violations {
        version: String,
        violations: Vec<Violation>,
    },
    /// No decision possible (no valid policy file, no entry for the name):
    /// refuse, and say why.
    Unavailable(String),
}

/// Decides whether a request may be accepted or started now.
pub trait Admission: Send + Sync + 'static {
    /// `Ok(version)` of the policy set that accepted the request at `now`
    /// (the engine's clock).
    fn admit(&self, req: &WorkReq, now: Micros) -> Result<String, Refusal>;

    /// Why a running workflow of this request must pause at `now`, if it
    /// must (a change window that closed). Asked before each job start.
    fn pauses(&self, _req: &WorkReq, _now: Micros) -> Option<String> {
        None
    }

    /// The approval rules this request must meet before Exec (all of
    /// them); empty when none applies.
    fn approvals(&self, _req: &WorkReq) -> Vec<interlock_core::ApprovalRule> {
        Vec::new()
    }
}

/// Admits everything. For embedders and tests without policies.
#[derive(Debug, Default, Clone, Copy)]
pub struct AllowAll;

impl Admission for AllowAll {
    fn admit(&self, _req: &WorkReq, _now: Micros) -> Result<String, Refusal> {
        Ok("allow-all".into())
    }
}
