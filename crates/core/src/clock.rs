//! Wall-clock time, injected so tests can pin it.
//!
//! Everything Interlock persists or compares across restarts (created and
//! ended times, bucket arithmetic, leases, schedules, change windows) reads
//! time through a [`Clock`]. Production uses [`SystemClock`]; tests of
//! buckets, leases and windows use a [`ManualClock`] they move by hand
//! instead of sleeping. Waiting (timeouts, backoff) is tokio's business and
//! is tested with tokio's paused time.

use crate::Micros;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// A source of wall-clock time in microseconds since the Unix epoch.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Micros;
}

/// The system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Micros {
        crate::now_micros()
    }
}

/// A clock that moves only when told to.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(at: Micros) -> Arc<Self> {
        Arc::new(Self(AtomicI64::new(at)))
    }

    pub fn set(&self, at: Micros) {
        self.0.store(at, Ordering::SeqCst);
    }

    pub fn advance(&self, by: std::time::Duration) {
        self.0.fetch_add(by.as_micros() as Micros, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Micros {
        self.0.load(Ordering::SeqCst)
    }
}

/// The clock used when none is given.
pub fn system() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}
