//! The audit log's writer: every mutating call and config reload is
//! appended to the store with who, from where, when, the request id and the
//! outcome. A failure to write the log is logged loudly; the call's own
//! outcome is not changed by it (the mutation has already happened).
//! Entries that must commit with the change they describe (Submit, Exec,
//! Clone) are handed to the engine call instead.

use crate::EngineError;
use crate::engine::clamp_page;
use interlock_core::{AuditEntry, AuditQuery};
use interlock_store::Store;
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

    /// Entries matching `q`, newest first, one page of them (the limit is
    /// clamped like every page size).
    pub async fn log(&self, mut q: AuditQuery) -> Result<AuditPage, EngineError> {
        q.limit = clamp_page(q.limit);
        let entries = self.store.audit_log(q.clone()).await?;
        let next_before_id = match entries.last() {
            Some(e) if entries.len() == q.limit => e.id,
            _ => 0,
        };
        Ok(AuditPage {
            entries,
            next_before_id,
        })
    }
}

/// One page of the audit log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    /// Pass as `before` to continue; 0 on the last page.
    pub next_before_id: i64,
}
