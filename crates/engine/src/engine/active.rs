//! The stop handle of a workflow executing in this process.
//!
//! Every executing workflow has an [`Active`] entry with a cancellation
//! token and a first-wins [`Cause`]. Cancel, the emergency stop, a fatal job
//! failure, the workflow deadline, a lost lease and shutdown all go through
//! it, so the executor has one place to ask "should I stop, and why".

use interlock_core::Status;
use interlock_store::Lease;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Why an executing workflow is stopping. The first cause wins, except
/// that a drain gives way to any later cause: a drain only waits for jobs in
/// flight, and whatever comes next (a stop, a Cancel) is more urgent.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cause {
    EmergencyStop(String),
    /// The emergency stop says drain: nothing new starts, jobs in flight
    /// finish (nothing is cancelled).
    Drained(String),
    /// A Cancel request, with its reason.
    Cancelled(String),
    Fatal(String),
    Deadline(Duration),
    /// Shutdown, a lost lease or a closed store: nothing more is recorded,
    /// so the record stays truthful ("was running") for whoever picks the
    /// workflow up next.
    Unrecorded(String),
}

impl Cause {
    /// Status for jobs and blocks cut short by this cause; `None` when
    /// nothing is to be recorded.
    pub(crate) fn cut_status(&self) -> Option<Status> {
        match self {
            Cause::EmergencyStop(_) | Cause::Drained(_) => Some(Status::Stopped),
            Cause::Cancelled(_) | Cause::Fatal(_) | Cause::Deadline(_) => Some(Status::Cancelled),
            Cause::Unrecorded(_) => None,
        }
    }

    pub(crate) fn describe(&self) -> String {
        match self {
            Cause::EmergencyStop(r) => format!("emergency stop: {r}"),
            Cause::Drained(r) => format!("emergency drain: {r}"),
            Cause::Cancelled(r) => format!("cancelled: {r}"),
            Cause::Fatal(r) | Cause::Unrecorded(r) => r.clone(),
            Cause::Deadline(d) => format!("workflow deadline of {}s exceeded", d.as_secs_f64()),
        }
    }
}

/// An executing workflow's stop handle.
pub(crate) struct Active {
    pub name: String,
    /// The right to record this workflow's progress; set once acquired
    /// (the entry is registered before, so the e-stop can see it).
    /// Shared, so that each job attempt's log holds it without copying
    /// its strings.
    lease: std::sync::OnceLock<Arc<Lease>>,
    pub token: CancellationToken,
    /// Cancelled (before `token`) when the run stops without recording:
    /// shutdown or a lost lease. Its jobs then leave external work running
    /// for whoever resumes the workflow, instead of aborting it.
    pub detach: CancellationToken,
    cause: Mutex<Option<Cause>>,
    /// True while paused: no new job starts.
    pub paused: Flag,
    /// Job starts hold it shared from their last check until their Running
    /// record is committed; Pause holds it exclusively while it records
    /// Paused. So in commit order no job start follows the pause.
    pub start_gate: tokio::sync::RwLock<()>,
    /// Serializes Pause/Resume with the workflow's final write; `true` once
    /// the run is finishing (Pause is then refused).
    pub finishing: tokio::sync::Mutex<bool>,
    /// Set when the run has ended (its final state is recorded).
    pub done: Flag,
}

/// A boolean others can wait on. Lighter than a `watch` channel (whose
/// shared state holds nine wake-up lists): a running workflow holds two,
/// and a server may run a hundred thousand workflows.
#[derive(Default)]
pub(crate) struct Flag {
    on: std::sync::atomic::AtomicBool,
    changed: tokio::sync::Notify,
}

impl Flag {
    pub fn get(&self) -> bool {
        self.on.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn set(&self, on: bool) {
        if self.on.swap(on, std::sync::atomic::Ordering::SeqCst) != on {
            self.changed.notify_waiters();
        }
    }

    /// Returns once the flag is `on` (at once if it is).
    pub async fn wait_for(&self, on: bool) {
        loop {
            // Registered before the check, so a change between the two
            // still wakes it.
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.get() == on {
                return;
            }
            changed.await;
        }
    }
}

impl Active {
    /// `draining` is the server's shutdown token.
    pub fn new(name: &str, draining: &CancellationToken) -> Self {
        Self {
            name: name.to_string(),
            lease: std::sync::OnceLock::new(),
            token: CancellationToken::new(),
            detach: draining.child_token(),
            cause: Mutex::new(None),
            paused: Flag::default(),
            start_gate: tokio::sync::RwLock::new(()),
            finishing: tokio::sync::Mutex::new(false),
            done: Flag::default(),
        }
    }

    pub fn set_lease(&self, lease: Lease) {
        let _ = self.lease.set(Arc::new(lease));
    }

    /// Whether the run has started: the store made this process its owner.
    /// An Exec registers the run before it asks the store, so the e-stop
    /// sees it; until the answer, nothing can be recorded for it.
    pub fn has_lease(&self) -> bool {
        self.lease.get().is_some()
    }

    /// The lease; set before the run starts.
    pub fn lease(&self) -> &Lease {
        self.shared_lease()
    }

    /// The lease, to keep; set before the run starts.
    pub fn shared_lease(&self) -> &Arc<Lease> {
        self.lease.get().expect("lease set before the run starts")
    }

    /// Records the cause (if first) and cancels running jobs.
    pub fn stop(&self, cause: Cause) {
        self.set_cause(cause);
        if matches!(self.cause(), Some(Cause::Unrecorded(_))) {
            self.detach.cancel();
        }
        self.token.cancel();
    }

    /// Records the cause (if first, or replacing a drain) without
    /// cancelling: no new job starts, running ones finish.
    pub fn set_cause(&self, cause: Cause) {
        let mut c = self.cause.lock().expect("cause lock");
        if c.is_none() || matches!(*c, Some(Cause::Drained(_))) {
            *c = Some(cause);
        }
    }

    /// Acts on an emergency-stop halt: a stop cancels jobs in flight, a
    /// drain only keeps new ones from starting.
    pub fn halt(&self, h: crate::estop::Halt) {
        match h.mode {
            interlock_core::EsMode::Drain => self.set_cause(Cause::Drained(h.reason)),
            _ => self.stop(Cause::EmergencyStop(h.reason)),
        }
    }

    pub fn cause(&self) -> Option<Cause> {
        self.cause.lock().expect("cause lock").clone()
    }

    /// Waits while paused; returns false if the workflow was cancelled meanwhile.
    pub async fn wait_unpaused(&self) -> bool {
        tokio::select! {
            _ = self.paused.wait_for(false) => true,
            _ = self.token.cancelled() => false,
        }
    }

    /// Waits until the run's end is recorded, at most `limit`.
    pub async fn wait_done(&self, limit: Duration) {
        let _ = tokio::time::timeout(limit, self.done.wait_for(true)).await;
    }
}
