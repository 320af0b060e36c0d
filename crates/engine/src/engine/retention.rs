//! Retention: finished workflows older than the configured age, and audit
//! entries older than theirs, are deleted in the background.
//!
//! Invariants:
//! - Only terminal workflows are deleted (the store's contract); a running,
//!   paused, interrupted or waiting workflow stays whatever its age.
//! - Deletion goes in batches of `batch` rows, each one store transaction,
//!   with `pause` between batches, so the writer is never held for long and
//!   Submit keeps its latency while a large backlog is worked off.
//! - A pruned id leaves a tombstone: Status answers NotFound saying when
//!   and after how long it was pruned (and whether its audit entries are
//!   still there), until the audit retention passes its end time.

use super::Engine;
use interlock_core::Micros;
use std::time::Duration;

/// How long finished work is kept, and how deletion is paced.
#[derive(Clone, Debug)]
pub struct Retention {
    /// Finished workflows older than this (by end time) are deleted; `None`
    /// keeps them forever.
    pub workflows: Option<Duration>,
    /// Audit entries (and tombstones) older than this are deleted; `None`
    /// keeps them forever.
    pub audit: Option<Duration>,
    /// Rows deleted per store transaction.
    pub batch: usize,
    /// Pause between two batches.
    pub pause: Duration,
    /// How often a sweep starts (it runs until nothing old is left).
    pub interval: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            workflows: Some(Duration::from_secs(90 * 86_400)),
            audit: Some(Duration::from_secs(400 * 86_400)),
            batch: 20,
            pause: Duration::from_millis(100),
            interval: Duration::from_secs(60),
        }
    }
}

/// What one sweep deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Swept {
    pub workflows: usize,
    pub audit_entries: usize,
}

/// `d` as whole days for people (at least 1 when `d` is not zero).
pub(crate) fn days(d: Duration) -> u32 {
    let secs = d.as_secs();
    if secs == 0 {
        0
    } else {
        secs.div_ceil(86_400).min(u64::from(u32::MAX)) as u32
    }
}

impl Engine {
    /// Sweeps every `interval` until the engine drains; also keeps the
    /// database size gauge current.
    pub(super) async fn retention_loop(self) {
        let every = self.inner.opts.retention.interval;
        let mut tick = tokio::time::interval(every.max(Duration::from_millis(10)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.inner.draining.cancelled() => return,
                _ = tick.tick() => {}
            }
            if let Err(e) = self.sweep().await {
                tracing::warn!(error = %e, "retention sweep failed; it is retried");
            }
        }
    }

    /// Deletes what the retention settings say is too old, batch by batch,
    /// until nothing old is left (or the engine drains).
    pub async fn sweep(&self) -> crate::error::Result<Swept> {
        let inner = &self.inner;
        let r = &inner.opts.retention;
        let now = inner.opts.clock.now();
        let before = |keep: Duration| now - keep.as_micros().min(now.max(0) as u128) as Micros;
        let batch = r.batch.max(1);
        let mut swept = Swept::default();
        if let Some(keep) = r.workflows {
            loop {
                let n = inner
                    .store
                    .prune_workflows(before(keep), now, days(keep), batch)
                    .await?;
                metrics::counter!("interlock_pruned_workflows_total").increment(n as u64);
                swept.workflows += n;
                if n < batch || !self.pace().await {
                    break;
                }
            }
        }
        if let Some(keep) = r.audit {
            loop {
                // Entries and tombstones: either may have a backlog.
                let n = inner.store.prune_audit(before(keep), batch).await?;
                metrics::counter!("interlock_pruned_audit_entries_total").increment(n as u64);
                swept.audit_entries += n;
                if n < batch || !self.pace().await {
                    break;
                }
            }
        }
        if swept.workflows + swept.audit_entries > 0 {
            tracing::info!(
                workflows = swept.workflows,
                audit_entries = swept.audit_entries,
                "retention pruned old records"
            );
        }
        if let Some(bytes) = inner.store.size_bytes().await? {
            metrics::gauge!("interlock_db_size_bytes").set(bytes as f64);
        }
        Ok(swept)
    }

    /// The error for a workflow id with no record: pruned (saying when and
    /// why) or never known.
    pub(crate) async fn missing(&self, id: String) -> crate::error::EngineError {
        match self.inner.store.pruned(&id).await {
            Ok(Some(p)) => {
                let audit = interlock_core::AuditQuery {
                    target: Some(id.clone()),
                    limit: 1,
                    ..Default::default()
                };
                // Unknown counts as gone: the message must not promise.
                let audit_kept = self
                    .inner
                    .store
                    .audit_log(audit)
                    .await
                    .is_ok_and(|e| !e.is_empty());
                crate::error::EngineError::Pruned {
                    id,
                    ended: p.ended,
                    pruned_at: p.pruned_at,
                    days: p.kept_days,
                    audit_kept,
                }
            }
            // Failing to read the tombstone must not hide that the id is
            // unknown now.
            Ok(None) | Err(_) => crate::error::EngineError::NotFound(id),
        }
    }

    /// Waits out the pause between batches; false once the engine drains.
    async fn pace(&self) -> bool {
        tokio::select! {
            _ = self.inner.draining.cancelled() => false,
            _ = tokio::time::sleep(self.inner.opts.retention.pause) => true,
        }
    }
}
