//! The one place where domain errors become gRPC statuses.
//!
//! Violations travel twice: readable in the message, and structured as
//! `google.rpc.BadRequest` (structure) or `google.rpc.PreconditionFailure`
//! (policy) details so clients can render them field by field.

use interlock_core::Violation;
use interlock_engine::EngineError;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

fn location(v: &Violation) -> String {
    match (v.block, v.job) {
        (Some(b), Some(j)) => format!("blocks[{b}].jobs[{j}]"),
        (Some(b), None) => format!("blocks[{b}]"),
        _ => "request".into(),
    }
}

/// Maps an engine error to its gRPC status.
pub fn engine_status(e: EngineError) -> Status {
    let msg = e.to_string();
    match e {
        EngineError::Invalid(violations) => {
            let mut d = ErrorDetails::new();
            for v in &violations {
                d.add_bad_request_violation(location(v), format!("{}: {}", v.policy, v.message));
            }
            Status::with_error_details(Code::InvalidArgument, msg, d)
        }
        EngineError::Denied { violations, .. } => {
            let mut d = ErrorDetails::new();
            for v in &violations {
                d.add_precondition_failure_violation(
                    v.policy.clone(),
                    location(v),
                    v.message.clone(),
                );
            }
            Status::with_error_details(Code::FailedPrecondition, msg, d)
        }
        EngineError::NoDecision(_)
        | EngineError::Stale { .. }
        | EngineError::EmergencyStopped { .. } => Status::failed_precondition(msg),
        EngineError::NotFound(_) => Status::not_found(msg),
        EngineError::WrongState(_) => Status::failed_precondition(msg),
        EngineError::NoSuchJob { .. } => Status::invalid_argument(msg),
        EngineError::BadId(_) => Status::invalid_argument(msg),
        EngineError::AlreadyStarted { .. } | EngineError::KeyReused { .. } => {
            Status::already_exists(msg)
        }
        EngineError::Store(_) | EngineError::ShuttingDown => Status::unavailable(msg),
        _ => Status::internal(msg),
    }
}

/// A request that could not even be converted (e.g. a negative duration).
pub fn bad_request(msg: String) -> Status {
    Status::invalid_argument(msg)
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
