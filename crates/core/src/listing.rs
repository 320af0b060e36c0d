//! What a listing asks for and returns, and the audit log's entries: plain
//! domain types shared by the engine (which pages and authorizes) and the
//! stores (which query).

use crate::{Micros, Status};
use std::collections::BTreeMap;

/// Which workflows a listing returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListFilter {
    pub name: Option<String>,
    pub statuses: Vec<Status>,
    /// Created at or after.
    pub created_from: Option<Micros>,
    /// Created before.
    pub created_to: Option<Micros>,
    /// Every (key, value) must match.
    pub labels: Vec<(String, String)>,
    /// Continue after this (created, id), exclusive; newest first.
    pub after: Option<(Micros, String)>,
    pub limit: usize,
}

/// One row of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub id: String,
    pub name: String,
    pub desc: String,
    pub status: Status,
    pub reason: String,
    pub had_errors: bool,
    pub created: Micros,
    pub started: Option<Micros>,
    pub ended: Option<Micros>,
    pub labels: BTreeMap<String, String>,
    pub trace_id: String,
}

/// One audited call or event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditEntry {
    /// Assigned by the store, increasing.
    pub id: i64,
    pub at: Micros,
    /// Who: an authenticated identity, or `anonymous@<ip>`.
    pub identity: String,
    /// What: e.g. `submit`, `exec`, `cancel`, `estop.set`, `config.reload`.
    pub action: String,
    /// On what: a workflow id or name, a file, an e-stop entry.
    pub target: String,
    /// The caller's request id (x-request-id), or one minted for the call.
    pub request_id: String,
    /// `ok`, or the refusal's gRPC code.
    pub outcome: String,
    pub detail: String,
    /// The caller's network address (empty for the server's own entries).
    pub peer: String,
}

/// Which audit entries to read, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Entries with an id below this (all when `None`).
    pub before: Option<i64>,
    pub limit: usize,
    /// At or after / before these times.
    pub from: Option<Micros>,
    pub to: Option<Micros>,
    /// Exact identity, when set.
    pub identity: Option<String>,
    /// Exact action, when set.
    pub action: Option<String>,
    /// Exact target (a workflow id, name or file), when set.
    pub target: Option<String>,
}

impl AuditQuery {
    /// Whether `e` passes every filter of the query (the id cursor included).
    pub fn matches(&self, e: &AuditEntry) -> bool {
        self.before.is_none_or(|b| e.id < b)
            && self.from.is_none_or(|t| e.at >= t)
            && self.to.is_none_or(|t| e.at < t)
            && self.identity.as_ref().is_none_or(|i| &e.identity == i)
            && self.action.as_ref().is_none_or(|a| &e.action == a)
            && self.target.as_ref().is_none_or(|t| &e.target == t)
    }
}
