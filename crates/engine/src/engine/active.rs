//! The stop handle of a workflow executing in this process.
//!
//! Every executing workflow has an [`Active`] entry with a cancellation
//! token and a first-wins [`Cause`]. Cancel, the emergency stop, a fatal job
//! failure, the workflow deadline, a lost lease and shutdown all go through
//! it, so the executor has one place to ask "should I stop, and why".

use interlock_core::Status;
use interlock_store::Lease;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::watch;
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
    lease: std::sync::OnceLock<Lease>,
    pub token: CancellationToken,
    /// Cancelled (before `token`) when the run stops without recording:
    /// shutdown or a lost lease. Its jobs then leave external work running
    /// for whoever resumes the workflow, instead of aborting it.
    pub detach: CancellationToken,
    cause: Mutex<Option<Cause>>,
    /// True while paused: no new job starts.
    pub paused: watch::Sender<bool>,
    /// Job starts hold it shared from their last check until their Running
    /// record is committed; Pause holds it exclusively while it records
    /// Paused. So in commit order no job start follows the pause.
    pub start_gate: tokio::sync::RwLock<()>,
    /// Serializes Pause/Resume with the workflow's final write; `true` once
    /// the run is finishing (Pause is then refused).
    pub finishing: tokio::sync::Mutex<bool>,
    /// Set when the run has ended (its final state is recorded).
    pub done: watch::Sender<bool>,
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
            paused: watch::Sender::new(false),
            start_gate: tokio::sync::RwLock::new(()),
            finishing: tokio::sync::Mutex::new(false),
            done: watch::Sender::new(false),
        }
    }

    pub fn set_lease(&self, lease: Lease) {
        let _ = self.lease.set(lease);
    }

    /// The lease; set before the run starts.
    pub fn lease(&self) -> &Lease {
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
        let mut rx = self.paused.subscribe();
        tokio::select! {
            r = rx.wait_for(|p| !*p) => r.is_ok(),
            _ = self.token.cancelled() => false,
        }
    }

    /// Waits until the run's end is recorded, at most `limit`.
    pub async fn wait_done(&self, limit: Duration) {
        let mut done = self.done.subscribe();
        let _ = tokio::time::timeout(limit, done.wait_for(|d| *d)).await;
    }
}
