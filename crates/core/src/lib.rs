//! Interlock's domain vocabulary, shared by every layer.
//!
//! - [`args`]: a job's arguments, a compact sorted map.
//! - [`request`]: a work request (WorkReq → Blocks → Jobs) as the engine sees it.
//! - [`record`]: the durable record of one workflow's progress.
//! - [`schema`]: the self-description each job registers (arguments, idempotency).
//! - [`validate`]: structural checks of a request against the job catalog and limits.
//! - [`Violation`]: one reason a request is refused, shared with the policy engine.
//! - [`listing`]: listing filters and rows, audit entries (engine ⇄ store).
//! - [`log`]: job log lines and how to read them.
//! - [`clock`]: injected wall-clock time ([`Clock`]), pinnable in tests.
//! - [`records_text`]: the one reader of record files (JSON array or
//!   concatenated objects; empty text is malformed).
//!
//! Architecture invariant: this crate does no I/O and knows nothing about gRPC,
//! SQL or tokio. Everything here is plain data plus pure functions.
#![forbid(unsafe_code)]

pub mod args;
pub mod clock;
pub mod listing;
pub mod log;
pub mod record;
pub mod records_text;
pub mod request;
pub mod schema;
pub mod validate;

pub use args::Args;
pub use clock::{Clock, ManualClock, SystemClock};
pub use listing::{AuditEntry, AuditQuery, ListFilter, Summary};
pub use log::{LogLine, LogQuery, LogStream};
pub use record::{
    Approval, ApprovalRule, Attempt, BlockRecord, EsMode, Event, JobRecord, Status, WorkflowRecord,
};
pub use records_text::{RecordsError, parse_records};
pub use request::{Block, Job, OutputRef, RetryPolicy, WorkReq};
pub use schema::{ArgFormat, ArgSpec, Catalog, Idempotency, JobSchema, StaticCatalog};
pub use validate::{Limits, validate_structure};

use serde::{Deserialize, Serialize};
use std::fmt;

/// Microseconds since the Unix epoch. Wall-clock time: it is persisted and
/// compared across restarts, so a monotonic clock would not do.
pub type Micros = i64;

/// The current wall-clock time in microseconds since the Unix epoch.
pub fn now_micros() -> Micros {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as Micros)
        .unwrap_or(0)
}

/// One reason a request is refused, located as precisely as possible.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    /// The policy that objects, or [`Violation::STRUCTURE`] for structural checks.
    pub policy: String,
    /// Index of the offending block, when the violation is about one.
    pub block: Option<usize>,
    /// Index of the offending job within `block`, when about one.
    pub job: Option<usize>,
    /// What to change, as a sentence for a human.
    pub message: String,
}

impl Violation {
    /// The `policy` value of violations found by structural validation.
    pub const STRUCTURE: &'static str = "structure";

    pub fn new(policy: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            policy: policy.into(),
            block: None,
            job: None,
            message: message.into(),
        }
    }

    pub fn at_block(mut self, block: usize) -> Self {
        self.block = Some(block);
        self
    }

    pub fn at_job(mut self, block: usize, job: usize) -> Self {
        self.block = Some(block);
        self.job = Some(job);
        self
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.policy)?;
        match (self.block, self.job) {
            (Some(b), Some(j)) => write!(f, " (block {b}, job {j})")?,
            (Some(b), None) => write!(f, " (block {b})")?,
            _ => {}
        }
        write!(f, ": {}", self.message)
    }
}

/// The known name closest to a misspelled one, if any is close enough to
/// be what was meant (case-insensitive; at most a third of it differs).
pub fn did_you_mean<'a>(wrong: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let wrong_lower = wrong.to_lowercase();
    known
        .into_iter()
        .map(|k| (strsim::levenshtein(&wrong_lower, &k.to_lowercase()), k))
        .filter(|(d, k)| *d <= (k.len().max(wrong.len()) / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// ` (did you mean "x"?)` or nothing.
pub fn suggestion<'a>(wrong: &str, known: impl IntoIterator<Item = &'a str>) -> String {
    did_you_mean(wrong, known)
        .map(|k| format!(" (did you mean {k:?}?)"))
        .unwrap_or_default()
}

/// Joins violations into one line each, for error messages.
pub fn describe_violations(v: &[Violation]) -> String {
    v.iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

/// Displays a user-supplied string with control characters escaped, so a
/// newline in a workflow name or trace id cannot forge log lines. Use it
/// wherever a user string is logged.
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.0.chars().any(char::is_control) {
            return f.write_str(self.0);
        }
        for c in self.0.chars() {
            if c.is_control() {
                write!(f, "{}", c.escape_default())?;
            } else {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

#[cfg(test)]
mod did_you_mean_tests {
    use super::did_you_mean;

    #[test]
    fn close_names_are_suggested_and_far_ones_are_not() {
        let jobs = ["diskErase", "sleep", "validateDecom", "tokenBucket"];
        assert_eq!(did_you_mean("diskerase", jobs), Some("diskErase"));
        assert_eq!(did_you_mean("disk_erase", jobs), Some("diskErase"));
        assert_eq!(did_you_mean("slep", jobs), Some("sleep"));
        assert_eq!(did_you_mean("reboot", jobs), None);
    }
}

#[cfg(test)]
mod escaped_tests {
    use super::Escaped;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(Escaped("plain name").to_string(), "plain name");
        assert_eq!(
            Escaped("x\n2026-11-30T00:00:00Z INFO forged\r\u{1b}[31m").to_string(),
            "x\\n2026-11-30T00:00:00Z INFO forged\\r\\u{1b}[31m"
        );
    }
}
