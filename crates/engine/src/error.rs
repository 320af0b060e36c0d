//! Why an engine operation was refused. Each variant says what the caller
//! should do; the server maps each to one gRPC code (and, for the HTTP API,
//! one status) in its single error mapping.

use interlock_core::{Status, Violation, describe_violations};
use interlock_store::StoreError;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// Malformed request: fix every listed problem and resend.
    #[error("invalid request: {}", describe_violations(.0))]
    Invalid(Vec<Violation>),
    /// Policies refuse the request: change it as the violations say.
    #[error("refused by policy version {version}: {}", describe_violations(.violations))]
    Denied {
        version: String,
        violations: Vec<Violation>,
    },
    /// No admission decision is possible (e.g. no valid policy file): fix
    /// the server's configuration.
    #[error("{0}")]
    NoDecision(String),
    /// No such workflow: check the id.
    #[error("no workflow with id {0:?}")]
    NotFound(String),
    /// The workflow finished long ago and retention deleted it.
    #[error(
        "workflow {id} was pruned after {days} days: it ended {} and was deleted {}; {}",
        crate::error::when(*.ended),
        crate::error::when(*.pruned_at),
        if *.audit_kept {
            format!("its audit entries are kept (interlock audit --target {id})")
        } else {
            "its audit entries have been pruned too".to_string()
        }
    )]
    Pruned {
        id: String,
        ended: interlock_core::Micros,
        pruned_at: interlock_core::Micros,
        days: u32,
        /// Whether audit entries about it remain (they have their own,
        /// longer retention).
        audit_kept: bool,
    },
    /// The id is neither a workflow id nor a usable prefix of one.
    #[error(
        "{0:?} is not a workflow id (expected a UUID, or a unique prefix of at least 8 characters)"
    )]
    BadId(String),
    /// The prefix names several workflows: give more characters.
    #[error("id prefix {prefix:?} is ambiguous: it matches {}", .matches.join(", "))]
    AmbiguousId {
        prefix: String,
        matches: Vec<String>,
    },
    /// Exec of a workflow that already started: use Status to follow it.
    #[error("workflow {id} was already started; it is {status}")]
    AlreadyStarted { id: String, status: Status },
    /// A request_id reused with different content: pick a new key.
    #[error(
        "request_id {key:?} was already used for workflow {id} with different content; \
         use a new request_id for a different request"
    )]
    KeyReused { key: String, id: String },
    /// Too long between Submit and Exec: submit again.
    #[error(
        "workflow {id} was submitted {}s ago, more than the {}s allowed before Exec; submit it again",
        .age.as_secs(), .ttl.as_secs()
    )]
    Stale {
        id: String,
        age: Duration,
        ttl: Duration,
    },
    /// Exec before the approvals a requireApproval policy asks for.
    #[error("{0}")]
    NeedsApproval(String),
    /// The caller may not decide on this workflow's approval.
    #[error("{0}")]
    NotAnApprover(String),
    /// The emergency stop is on for this workflow name: wait for "go".
    #[error("workflow {name:?} is emergency-stopped: {reason}")]
    EmergencyStopped { name: String, reason: String },
    /// The store failed: retry later.
    #[error("store unavailable: {0}")]
    Store(#[from] StoreError),
    /// The server is shutting down: retry against the next instance.
    #[error("the server is shutting down")]
    ShuttingDown,
    /// The workflow is not in a state that allows this: check Status.
    #[error("{0}")]
    WrongState(String),
    /// A malformed argument of a call (not of a request): fix it and resend.
    #[error("{0}")]
    BadArgument(String),
    /// The block/job index does not exist in this workflow.
    #[error("workflow {id} has no job {job} in block {block}")]
    NoSuchJob {
        id: String,
        block: usize,
        job: usize,
    },
    /// Another server instance runs the workflow and did not act on the
    /// request in time: retry, or ask that instance.
    #[error(
        "workflow {id} is run by server instance {owner}, which did not confirm in time; retry"
    )]
    Elsewhere { id: String, owner: String },
    /// No such template (or revision of it).
    #[error("{}", no_template(.name, *.revision, *.latest, .hint.as_deref()))]
    NoTemplate {
        name: String,
        revision: Option<u32>,
        /// The template's newest revision, when the template exists.
        latest: Option<u32>,
        /// A template name close to `name`.
        hint: Option<String>,
    },
    /// No schedule has this name.
    #[error("no schedule named {0:?}; `interlock schedule list` shows them")]
    NoSchedule(String),
    /// A schedule of this name exists.
    #[error("a schedule named {0:?} exists; delete it first, or pick another name")]
    ScheduleExists(String),
    /// The e-stop file could not be changed.
    #[error(transparent)]
    EsFile(#[from] crate::estop::EsFileError),
}

fn no_template(
    name: &str,
    revision: Option<u32>,
    latest: Option<u32>,
    hint: Option<&str>,
) -> String {
    match (revision, latest) {
        (Some(r), Some(l)) => {
            format!("template {name:?} has no revision {r}; its revisions are 1 to {l}")
        }
        _ => format!(
            "no template named {name:?}{}; `interlock template list` shows them",
            hint.map(|h| format!(" (did you mean {h:?}?)"))
                .unwrap_or_default()
        ),
    }
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;

/// A stored time for people: RFC 3339, UTC, to the second.
pub(crate) fn when(t: interlock_core::Micros) -> String {
    jiff::Timestamp::from_microsecond(t)
        .map(|ts| ts.round(jiff::Unit::Second).unwrap_or(ts).to_string())
        .unwrap_or_else(|_| format!("at {t} µs"))
}
