//! The one place where domain errors become gRPC statuses (and, for the
//! HTTP API, the same codes).
//!
//! Violations travel twice: readable in the message, one per line, and
//! structured as `google.rpc.BadRequest` (structure, arguments) or
//! `google.rpc.PreconditionFailure` (policy) details so clients can render
//! them field by field. Both are capped so an error reply always stays well
//! under the 8 KB of metadata common gRPC clients accept (grpcio refuses
//! more): the first violations that fit, then how many more there are.
//! Validate returns every violation in its response body instead.

use interlock_core::Violation;
use interlock_engine::EngineError;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// Bytes of the message, before percent-encoding (at most ×3).
const MESSAGE_BUDGET: usize = 1024;
/// Bytes of the encoded details, before base64 (×4/3).
const DETAILS_BUDGET: usize = 3 * 1024;
/// Longest single violation line.
const LINE: usize = 240;

fn location(v: &Violation) -> String {
    match (v.block, v.job) {
        (Some(b), Some(j)) => format!("blocks[{b}].jobs[{j}]"),
        (Some(b), None) => format!("blocks[{b}]"),
        _ => "request".into(),
    }
}

fn clip(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// A headline plus one line per violation, as many as fit.
fn message(headline: &str, violations: &[Violation]) -> String {
    let mut m = format!(
        "{headline} ({} violation{}):",
        violations.len(),
        if violations.len() == 1 { "" } else { "s" }
    );
    for (i, v) in violations.iter().enumerate() {
        let line = format!("\n  - {}", clip(&v.to_string(), LINE));
        if m.len() + line.len() > MESSAGE_BUDGET {
            m += &format!(
                "\n  … and {} more (Validate lists them all)",
                violations.len() - i
            );
            break;
        }
        m += &line;
    }
    m
}

/// Structured details for as many violations as fit, plus a count.
fn details(violations: &[Violation], precondition: bool) -> ErrorDetails {
    let mut d = ErrorDetails::new();
    let mut used = 0;
    for (i, v) in violations.iter().enumerate() {
        let (loc, text) = (location(v), clip(&v.message, LINE));
        used += loc.len() + text.len() + v.policy.len() + 16;
        if used > DETAILS_BUDGET {
            d.set_error_info(
                "TRUNCATED",
                "interlock",
                [
                    ("violations".to_string(), violations.len().to_string()),
                    ("shown".to_string(), i.to_string()),
                ],
            );
            break;
        }
        if precondition {
            d.add_precondition_failure_violation(v.policy.clone(), loc, text);
        } else {
            d.add_bad_request_violation(loc, format!("{}: {text}", v.policy));
        }
    }
    d
}

/// Maps an engine error to its gRPC status.
pub fn engine_status(e: EngineError) -> Status {
    match e {
        EngineError::Invalid(violations) => Status::with_error_details(
            Code::InvalidArgument,
            message("invalid request", &violations),
            details(&violations, false),
        ),
        EngineError::Denied {
            version,
            violations,
        } => Status::with_error_details(
            Code::FailedPrecondition,
            message(&format!("refused by policy version {version}"), &violations),
            details(&violations, true),
        ),
        e @ EngineError::NotAnApprover(_) => Status::permission_denied(e.to_string()),
        e @ (EngineError::NoDecision(_)
        | EngineError::NeedsApproval(_)
        | EngineError::Stale { .. }
        | EngineError::EmergencyStopped { .. }
        | EngineError::WrongState(_)) => Status::failed_precondition(e.to_string()),
        e @ (EngineError::NotFound(_)
        | EngineError::Pruned { .. }
        | EngineError::NoTemplate { .. }
        | EngineError::NoSchedule(_)) => Status::not_found(e.to_string()),
        e @ (EngineError::NoSuchJob { .. }
        | EngineError::BadArgument(_)
        | EngineError::BadId(_)
        | EngineError::AmbiguousId { .. }) => Status::invalid_argument(e.to_string()),
        e @ (EngineError::AlreadyStarted { .. }
        | EngineError::KeyReused { .. }
        | EngineError::ScheduleExists(_)) => Status::already_exists(e.to_string()),
        e @ (EngineError::Store(_) | EngineError::ShuttingDown | EngineError::Elsewhere { .. }) => {
            Status::unavailable(e.to_string())
        }
        EngineError::EsFile(f) => es_file_status(f),
        e => Status::internal(e.to_string()),
    }
}

fn es_file_status(e: interlock_engine::estop::EsFileError) -> Status {
    use interlock_engine::estop::EsFileError as E;
    match e {
        e @ E::EmptyName => Status::invalid_argument(e.to_string()),
        e @ E::Malformed { .. } => Status::failed_precondition(e.to_string()),
        e => Status::unavailable(e.to_string()),
    }
}

/// A worker's call the dispatcher refused.
pub fn dispatch_status(e: interlock_workers::DispatchError) -> Status {
    use interlock_workers::DispatchError as D;
    match e {
        e @ D::Invalid(_) => Status::invalid_argument(e.to_string()),
        e @ D::Undeclared(_) => Status::failed_precondition(e.to_string()),
        e @ D::NotAllowed(_) => {
            metrics::counter!("interlock_auth_denials_total", "action" => "work").increment(1);
            Status::permission_denied(e.to_string())
        }
        e @ D::LeaseLost(_) => {
            metrics::counter!("interlock_worker_results_refused_total").increment(1);
            Status::failed_precondition(e.to_string())
        }
        e @ (D::Checkpoint(_) | D::Closing) => Status::unavailable(e.to_string()),
    }
}

/// A request that could not even be converted (e.g. a negative duration).
pub fn bad_request(e: impl std::fmt::Display) -> Status {
    Status::invalid_argument(e.to_string())
}

/// The store failed under a read the server makes itself.
pub fn store_unavailable(e: impl std::fmt::Display) -> Status {
    Status::unavailable(format!("store unavailable: {e}"))
}

/// A call without usable credentials. `reason` labels the
/// `interlock_auth_failures_total` counter (none, malformed, bad_token,
/// expired_token, bad_certificate).
pub fn unauthenticated(reason: &'static str, msg: String) -> Status {
    metrics::counter!("interlock_auth_failures_total", "reason" => reason).increment(1);
    Status::unauthenticated(msg)
}

/// An authenticated caller without the grant the call needs.
pub fn permission_denied(d: interlock_auth::Denied) -> Status {
    metrics::counter!("interlock_auth_denials_total", "action" => d.action.as_str()).increment(1);
    Status::permission_denied(d.to_string())
}

/// Every call refused because no valid rbac.json is loaded (fail closed);
/// counted as a denial of `action` like any other.
pub fn no_rbac(action: interlock_auth::Action, error: Option<&str>) -> Status {
    metrics::counter!("interlock_auth_denials_total", "action" => action.as_str()).increment(1);
    Status::permission_denied(format!(
        "no valid rbac.json is loaded, so every call is refused until it is fixed: {}",
        error.unwrap_or("not read yet")
    ))
}

/// The concurrency limit is reached: the caller should back off and retry.
pub fn overloaded(limit: usize) -> Status {
    Status::resource_exhausted(format!(
        "server is at its limit of {limit} concurrent requests; retry with backoff"
    ))
}

/// A stream ended by the server's shutdown.
pub fn shutting_down(what: &str) -> Status {
    Status::unavailable(format!(
        "the server is shutting down; {what} again (on another replica, or after the restart)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn many_violations_stay_under_the_metadata_limit() {
        let violations: Vec<_> = (0..500)
            .map(|i| {
                Violation::new(
                    "structure",
                    format!("argument {i} is wrong: {}", "x".repeat(300)),
                )
                .at_job(i, 0)
            })
            .collect();
        for s in [
            engine_status(EngineError::Invalid(violations.clone())),
            engine_status(EngineError::Denied {
                version: "v".into(),
                violations,
            }),
        ] {
            let encoded = s.message().len() * 3 + s.details().len() * 4 / 3;
            assert!(encoded < 8 * 1024, "{encoded} bytes");
            assert!(s.message().contains("(500 violations)"), "{}", s.message());
            assert!(s.message().contains("more (Validate lists them all)"));
            let d = s.get_error_details();
            let info = d.error_info().expect("truncation noted");
            assert_eq!(info.metadata["violations"], "500");
        }
    }
}
