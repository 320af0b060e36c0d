//! The audit log's writer: every mutating call and config reload is
//! appended to the store with who, from where, when, the request id and the
//! outcome. A failure to write the log is logged loudly; the call's own
//! outcome is not changed by it (the mutation has already happened).
//! Entries that must commit with the change they describe (Submit, Exec,
//! Clone) are handed to the engine call instead.

use interlock_core::{AuditEntry, AuditQuery};
use interlock_store::{Store, StoreError};
use std::sync::Arc;

#[derive(Clone)]
pub struct Auditor {
    store: Arc<dyn Store>,
}

impl Auditor {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// Appends `entry`; a failure is logged, not returned.
    pub async fn record(&self, entry: AuditEntry) {
        let (action, target) = (entry.action.clone(), entry.target.clone());
        if let Err(e) = self.store.audit(entry).await {
            tracing::error!(error = %e, %action, target = %interlock_core::Escaped(&target),
                "cannot write the audit log");
        }
    }

    /// Entries matching `q`, newest first; the limit is clamped to 1..=1000
    /// (0 means 100).
    pub async fn log(&self, mut q: AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        q.limit = match q.limit {
            0 => 100,
            n => n.min(1000),
        };
        self.store.audit_log(q).await
    }
}
