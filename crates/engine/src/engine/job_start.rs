//! Starting a job: everything between "this job is next" and its Running
//! record. Until that record is committed, a pause makes the job wait (and
//! ask for its limit slots again after), a change window that closed with
//! pause-at-end pauses the run, and a stop, cancel, drain or shutdown means
//! the job never starts (it stays NotStarted).
//!
//! The order is the invariant: pause, change window, blast-radius limits
//! (slots granted), then under the start gate the e-stop and the stop
//! cause, then the Running record. So in commit order no job turns Running
//! after a Pause, outside its window, past a limit or after an e-stop.

use super::Inner;
use super::active::{Active, Cause};
use interlock_core::{JobRecord, Status, WorkflowRecord};
use interlock_store::Change;

impl Inner {
    /// Waits until job `ji` of block `bi` may start and records it Running,
    /// with `extra` (taken when the record is attempted). `Some((holds limit
    /// slots, its record))` once started; `None` when it must not start.
    pub(super) async fn start_job(
        &self,
        rec: &WorkflowRecord,
        (bi, ji): (usize, usize),
        prior: &JobRecord,
        active: &Active,
        extra: &mut Option<Vec<Change>>,
    ) -> Option<(bool, JobRecord)> {
        // Until its Running record is committed, a pause makes the job wait
        // (and ask for its limit slots again after), and a stop or cancel
        // means it never starts: it stays NotStarted.
        loop {
            if !active.wait_unpaused().await {
                return None;
            }
            // A change window that closed (with pause-at-end) pauses the
            // run here, before anything new starts.
            if let Some(why) = self.admission.pauses(&rec.req, self.opts.clock.now()) {
                if !self.pause_for_window(rec, active, why).await {
                    return None;
                }
                continue;
            }
            // Blast-radius limits: a slot of each, held from before the
            // start is recorded until the end is.
            let holds = match self.take_slots(rec, bi, ji, active).await {
                Ok(holds) => holds,
                Err(asked) => {
                    if active.token.is_cancelled() || active.cause().is_some() {
                        if asked {
                            self.give_back_slots(rec, bi, ji, active).await;
                        }
                        return None;
                    }
                    // Paused while in line: its rows keep its place (and,
                    // no longer refreshed, hold nobody back meanwhile).
                    continue;
                }
            };
            let gate = active.start_gate.read().await;
            if let Some(h) = self.estop.borrow().halted(&active.name) {
                active.halt(h);
            }
            // The wait for slots may have been long: the lease and the
            // change window are asked again right before the record.
            if let Err(why) = self.instance.holds(active.lease()) {
                active.stop(Cause::Unrecorded(why));
            }
            let closed = self.admission.pauses(&rec.req, self.opts.clock.now());
            if let Some(why) = closed {
                drop(gate);
                if holds {
                    self.give_back_slots(rec, bi, ji, active).await;
                }
                if !self.pause_for_window(rec, active, why).await {
                    return None;
                }
                continue;
            }
            let paused = active.paused.get();
            if paused || active.token.is_cancelled() || active.cause().is_some() {
                drop(gate);
                if holds {
                    self.give_back_slots(rec, bi, ji, active).await;
                }
                if paused && !active.token.is_cancelled() && active.cause().is_none() {
                    continue;
                }
                return None;
            }
            let jr = JobRecord {
                status: Status::Running,
                started: prior.started.or(Some(self.opts.clock.now())),
                ..prior.clone()
            };
            let mut changes = extra.take().unwrap_or_default();
            changes.push(super::job_run::job_change(&rec.id, bi, ji, jr.clone()));
            if !self.persist(active, changes).await {
                return None;
            }
            return Some((holds, jr));
        }
    }

    /// Pauses the run because its change window closed; false when it
    /// could not be recorded (the run then stops here, unrecorded, or was
    /// already ending).
    async fn pause_for_window(&self, rec: &WorkflowRecord, active: &Active, why: String) -> bool {
        match self.pause_active(&rec.id, active, why.clone()).await {
            Ok(()) => {
                tracing::warn!(workflow = %rec.id, why = %interlock_core::Escaped(&why),
                    "workflow paused: its change window closed");
                true
            }
            Err(e) => {
                if active.cause().is_none() {
                    // A job must not be left behind silently: whoever runs
                    // the workflow next finds it as it was.
                    active.stop(Cause::Unrecorded(format!("pause not recorded: {e}")));
                }
                false
            }
        }
    }
}
