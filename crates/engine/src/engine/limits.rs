//! The executor's side of blast-radius limits: before a job's start is
//! recorded, it holds a slot of every limit it falls under (see
//! [`crate::concurrency`]); it gives them back in the write that records
//! its end.
//!
//! Waiting: the store answers with the job's place in the queue, recorded
//! where Status and other replicas can see it. The job asks again when a
//! local job gives slots back, when the limits change, and at least every
//! [`ASK_EVERY`] (slots freed by another replica, or a queue ahead that
//! moved). It stops waiting, without starting, when its workflow is
//! paused, stopped or cancelled; a paused job keeps its place but holds
//! nobody back (a waiter that stopped asking is passed after [`STALE`]).

use super::Inner;
use super::active::{Active, Cause};
use interlock_core::WorkflowRecord;
use interlock_store::{Change, SlotOutcome, SlotRequest, StoreError};
use std::time::Duration;

/// Longest time between two asks of a waiting job.
const ASK_EVERY: Duration = Duration::from_secs(1);

/// A waiter not seen for this long no longer holds anyone back.
const STALE: Duration = Duration::from_secs(5);

impl Inner {
    /// Waits until job `ji` of block `bi` holds a slot of every limit it
    /// falls under. `Ok(true)` once it does (it has slot rows to give back
    /// with its end), `Ok(false)` when no limit applies; `Err` when it must
    /// not start (paused, stopped, cancelled, or the run can no longer
    /// record here), saying whether it left rows to give back.
    pub(super) async fn take_slots(
        &self,
        rec: &WorkflowRecord,
        bi: usize,
        ji: usize,
        active: &Active,
    ) -> Result<bool, bool> {
        let limits = &self.opts.concurrency;
        let mut waiting_for: Option<String> = None;
        let mut held_back = false;
        loop {
            let asked = waiting_for.is_some();
            // Until a good limits.json was loaded, which limits a job falls
            // under is unknown: it waits like a job in line.
            let slots = match limits.unusable() {
                None => {
                    let slots = limits.slots_for(&rec.id, &rec.req, bi, ji);
                    if slots.is_empty() {
                        return Ok(asked);
                    }
                    Some(slots)
                }
                Some(why) => {
                    if !held_back {
                        tracing::error!(workflow = %rec.id, block = bi, job = ji,
                            why = %interlock_core::Escaped(&why),
                            "job held: limits.json is unusable, so no job starts until it is fixed");
                        held_back = true;
                    }
                    None
                }
            };
            // A drain or stop met while in line ends the wait (and, with
            // the cause set, the run) rather than waiting for a slot that
            // could not be used.
            if let Some(h) = self.estop.borrow().halted(&active.name) {
                active.halt(h);
            }
            if active.token.is_cancelled() || active.cause().is_some() || active.paused.get() {
                return Err(asked);
            }
            // Listen before asking, so a slot freed meanwhile is not missed.
            let freed = limits.wait_freed();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if let Some(slots) = slots {
                let now = self.opts.clock.now();
                let req = SlotRequest {
                    workflow_id: rec.id.clone(),
                    block: bi,
                    job: ji,
                    slots,
                    at: now,
                    fresh_after: now - STALE.as_micros() as i64,
                };
                match self.store.acquire_slots(active.lease(), req).await {
                    Ok(SlotOutcome::Granted) => {
                        if let Some(limit) = waiting_for {
                            tracing::info!(workflow = %rec.id, block = bi, job = ji, %limit,
                                "limit slot granted; the job starts");
                        }
                        return Ok(true);
                    }
                    Ok(SlotOutcome::Waiting(w)) => {
                        if waiting_for.as_deref() != Some(w.limit.as_str()) {
                            tracing::info!(workflow = %rec.id, block = bi, job = ji, limit = %w.limit,
                                part = %interlock_core::Escaped(&w.part), position = w.position,
                                held = w.held, max = w.max, "job waits for a limit");
                            metrics::counter!("interlock_limit_waits_total", "limit" => w.limit.clone())
                                .increment(1);
                            waiting_for = Some(w.limit);
                        }
                    }
                    Err(e @ StoreError::Fenced { .. }) => {
                        active.stop(Cause::Unrecorded(format!("not recorded: {e}")));
                        return Err(false);
                    }
                    Err(e) => {
                        tracing::warn!(workflow = %rec.id, error = %e, "cannot ask for limit slots; asking again");
                    }
                }
            }
            tokio::select! {
                _ = freed => {}
                _ = tokio::time::sleep(ASK_EVERY) => {}
                _ = active.paused.wait_for(true) => {}
                _ = active.token.cancelled() => {}
            }
        }
    }

    /// Gives back the slots of a job that will not start after all, and
    /// wakes local waiters. Best effort: if it cannot be recorded, the
    /// workflow's end gives them back.
    pub(super) async fn give_back_slots(
        &self,
        rec: &WorkflowRecord,
        bi: usize,
        ji: usize,
        active: &Active,
    ) {
        let release = Change::ReleaseSlots {
            id: rec.id.clone(),
            block: bi,
            job: ji,
        };
        if let Err(e) = self.store.write(Some(active.lease()), vec![release]).await {
            tracing::debug!(workflow = %rec.id, error = %e, "limit slots not given back now; the workflow's end will");
        }
        self.opts.concurrency.freed();
    }
}

impl super::Engine {
    /// Marks the jobs of `rec` that wait for a limit, from the store's
    /// slot rows (so a wait on another replica shows too).
    pub(super) async fn show_waits(&self, rec: &mut WorkflowRecord) -> crate::error::Result<()> {
        let fresh_after = self.now() - STALE.as_micros() as i64;
        for w in self.inner.store.slots(Some(&rec.id)).await? {
            if w.granted || w.seen < fresh_after {
                continue;
            }
            let Some(job) = rec
                .blocks
                .get_mut(w.block)
                .and_then(|b| b.jobs.get_mut(w.job))
            else {
                continue;
            };
            if job.status != interlock_core::Status::NotStarted || job.waiting.is_some() {
                continue;
            }
            let part = if w.part.is_empty() {
                String::new()
            } else {
                format!(" ({})", w.part)
            };
            job.waiting = Some(format!(
                "limit {}{part}: position {} in line, {} of {} in use, since {}",
                w.limit,
                w.position,
                w.held,
                w.max,
                humantime::format_rfc3339_seconds(
                    std::time::UNIX_EPOCH + Duration::from_micros(w.since.max(0) as u64)
                )
            ));
        }
        Ok(())
    }
}

/// One partition of a limit in use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartUsage {
    pub part: String,
    pub holders: Vec<String>,
    pub waiting: u32,
}

/// A limit in force, with its partitions in use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitUsage {
    pub def: crate::LimitDef,
    pub parts: Vec<PartUsage>,
}

impl super::Engine {
    /// The limits in force and, for each, who holds slots and how many
    /// wait (waiters that stopped asking are not counted).
    pub async fn limits(&self) -> crate::error::Result<Vec<LimitUsage>> {
        let defs = self.inner.opts.concurrency.defs();
        let rows = self.inner.store.slots(None).await?;
        let fresh_after = self.now() - STALE.as_micros() as i64;
        Ok(defs
            .iter()
            .map(|def| {
                let mut parts: Vec<PartUsage> = Vec::new();
                for r in rows.iter().filter(|r| r.limit == def.name) {
                    if !r.granted && r.seen < fresh_after {
                        continue;
                    }
                    let p = match parts.iter_mut().position(|p| p.part == r.part) {
                        Some(i) => &mut parts[i],
                        None => {
                            parts.push(PartUsage {
                                part: r.part.clone(),
                                holders: Vec::new(),
                                waiting: 0,
                            });
                            parts.last_mut().expect("just pushed")
                        }
                    };
                    if !r.granted {
                        p.waiting += 1;
                    } else if !p.holders.contains(&r.holder) {
                        p.holders.push(r.holder.clone());
                    }
                }
                LimitUsage {
                    def: def.clone(),
                    parts,
                }
            })
            .collect())
    }
}
