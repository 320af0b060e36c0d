//! The audit log: every mutating call (submit, exec, cancel, pause, resume,
//! resolve, clone, e-stop changes) and every config reload, with who, from
//! where, when, the request id and the outcome, appended to the store.
//!
//! The identity is the authenticated caller (`token:<name>`,
//! `cert:<name>`), or `anonymous@<peer address>` with authentication off.
//! Refused calls are logged too, with the refusal as the outcome.
//! A failure to write the log is logged loudly; the call's own outcome is
//! not changed by it (the mutation has already happened).

use interlock_auth::Identity;
use interlock_core::now_micros;
use interlock_store::{AuditEntry, Store};
use std::sync::Arc;
use tonic::{Request, Status};

/// Who made a call, and its request id.
#[derive(Debug, Clone)]
pub struct Caller {
    /// As written in the log.
    pub identity: String,
    /// As authorization sees it.
    pub who: Identity,
    pub request_id: String,
    /// The network address the call came from.
    pub peer: String,
}

impl Caller {
    pub fn of<T>(r: &Request<T>) -> Self {
        let who = crate::auth::identity(r);
        let peer = crate::auth::peer(r.extensions()).map_or_else(String::new, |a| a.to_string());
        let request_id = r
            .metadata()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        Self {
            identity: who.to_string(),
            who,
            request_id,
            peer,
        }
    }

    /// The server itself (config reloads).
    pub fn server() -> Self {
        Self {
            identity: "interlockd".into(),
            who: Identity::anonymous("interlockd"),
            request_id: String::new(),
            peer: String::new(),
        }
    }
}

#[derive(Clone)]
pub struct Auditor {
    store: Arc<dyn Store>,
}

impl Auditor {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// Entries older than `before` (all when `None`), newest first.
    pub async fn log(
        &self,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, interlock_store::StoreError> {
        self.store.audit_log(before, limit).await
    }

    /// A successful call's entry, for the store to commit with the change
    /// itself (the store fills in the target).
    pub fn entry(who: &Caller, action: &str) -> AuditEntry {
        AuditEntry {
            id: 0,
            at: now_micros(),
            identity: who.identity.clone(),
            action: action.into(),
            target: String::new(),
            request_id: who.request_id.clone(),
            outcome: "ok".into(),
            detail: String::new(),
            peer: who.peer.clone(),
        }
    }

    /// Records a call's outcome.
    pub async fn call<T>(
        &self,
        who: &Caller,
        action: &str,
        target: &str,
        result: &Result<T, Status>,
    ) {
        let (outcome, detail) = match result {
            Ok(_) => ("ok".to_string(), String::new()),
            Err(s) => (format!("{:?}", s.code()), s.message().to_string()),
        };
        self.record(who, action, target, outcome, detail).await;
    }

    pub async fn record(
        &self,
        who: &Caller,
        action: &str,
        target: &str,
        outcome: String,
        detail: String,
    ) {
        let entry = AuditEntry {
            id: 0,
            at: now_micros(),
            identity: who.identity.clone(),
            action: action.into(),
            target: target.into(),
            request_id: who.request_id.clone(),
            outcome,
            detail,
            peer: who.peer.clone(),
        };
        if let Err(e) = self.store.audit(entry).await {
            tracing::error!(error = %e, action, target, "cannot write the audit log");
        }
    }
}
