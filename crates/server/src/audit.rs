//! Who made a call, as the audit log records it.
//!
//! The identity is the authenticated caller (`token:<name>`,
//! `cert:<name>`), or `anonymous` with authentication off; the caller's
//! address is kept in its own field, without the source port (which changes
//! with every connection and would make one caller look like many).
//! Refused calls are logged too, with the refusal as the outcome. Writing
//! happens through the engine's [`Auditor`].

use interlock_auth::Identity;
use interlock_core::{AuditEntry, now_micros};
pub use interlock_engine::Auditor;
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
            .filter(|v| !v.is_empty() && v.len() <= 128)
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

    /// The entry of a config file reload (`outcome` "ok" or "invalid").
    pub fn config_reload(file: &str, outcome: String, detail: String) -> AuditEntry {
        AuditEntry {
            target: file.into(),
            outcome,
            detail,
            ..Self::server().entry("config.reload")
        }
    }

    /// A successful call's entry, for the engine to commit with the change
    /// itself (the store fills in the target).
    pub fn entry(&self, action: &str) -> AuditEntry {
        AuditEntry {
            id: 0,
            at: now_micros(),
            identity: self.identity.clone(),
            action: action.into(),
            target: String::new(),
            request_id: self.request_id.clone(),
            outcome: "ok".into(),
            detail: String::new(),
            peer: self.peer.clone(),
        }
    }

    /// The entry of a call's outcome on `target`.
    pub fn outcome<T>(
        &self,
        action: &str,
        target: &str,
        detail: &str,
        result: &Result<T, Status>,
    ) -> AuditEntry {
        let (outcome, detail) = match result {
            Ok(_) => ("ok".to_string(), detail.to_string()),
            Err(s) if detail.is_empty() => (format!("{:?}", s.code()), s.message().to_string()),
            Err(s) => (
                format!("{:?}", s.code()),
                format!("{detail}; {}", s.message()),
            ),
        };
        AuditEntry {
            target: target.into(),
            outcome,
            detail,
            ..self.entry(action)
        }
    }
}
