//! This process as the store sees it: a registered instance whose heartbeat
//! keeps its workflows its own, and which takes over the workflows of
//! instances that died.
//!
//! Invariants:
//! - A job starts only while this process's lease is valid by its own
//!   monotonic clock: the last successful heartbeat was *sent* less than
//!   the lease ttl ago. The store's expiry is counted from a later moment
//!   (its commit), so this process gives up before anyone can take over,
//!   whatever the clocks of other machines say.
//! - When the lease lapses (a pause, a partition, a store that does not
//!   answer) every local run stops without recording anything; the
//!   workflows are someone else's to resume. The process registers again
//!   under a new id before it runs anything. On an exclusive store (one
//!   process per database) nobody can take over, so a lapse only waits.

use super::active::Cause;
use super::{Engine, Inner};
use crate::error::Result;
use interlock_store::{InstanceInfo, StoreError};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub(super) struct Instance {
    info: Mutex<InstanceInfo>,
    /// Until when this process may start jobs.
    valid_until: Mutex<Option<Instant>>,
    /// Whether other processes share the store (and so may take over).
    shared: bool,
}

impl Instance {
    pub fn new(template: &InstanceInfo, shared: bool) -> Self {
        let mut info = template.clone();
        info.id = uuid::Uuid::now_v7().to_string();
        info.pid = std::process::id();
        Self {
            info: Mutex::new(info),
            valid_until: Mutex::new(None),
            shared,
        }
    }

    pub fn id(&self) -> String {
        self.info.lock().expect("instance lock").id.clone()
    }

    fn info(&self) -> InstanceInfo {
        self.info.lock().expect("instance lock").clone()
    }

    fn renewed(&self, sent: Instant, ttl: Duration) {
        *self.valid_until.lock().expect("instance lock") = Some(sent + ttl);
    }

    fn lapse(&self) {
        *self.valid_until.lock().expect("instance lock") = None;
    }

    /// `Err(why)` when this process must not start a job, or record or
    /// cause a job's effects, now. Always `Ok` on an exclusive store: nobody
    /// else can take its workflows, so a late heartbeat changes nothing.
    pub fn may_run(&self) -> std::result::Result<(), String> {
        if !self.shared {
            return Ok(());
        }
        match *self.valid_until.lock().expect("instance lock") {
            Some(t) if Instant::now() < t => Ok(()),
            Some(_) => Err("this server's lease lapsed (no heartbeat within the lease ttl)".into()),
            None => Err("this server holds no lease (not registered with the store)".into()),
        }
    }

    /// `Err(why)` unless this process may act for a workflow it runs
    /// under `lease`: its lease is valid and it is still the registration
    /// that took the workflow (after a lost lease it registers again, but
    /// the workflows of its old registration may be someone else's).
    pub fn holds(&self, lease: &interlock_store::Lease) -> std::result::Result<(), String> {
        self.may_run()?;
        if self.shared && self.id() != lease.owner {
            return Err("this server lost its lease on the workflow and registered again".into());
        }
        Ok(())
    }

    /// A new identity, for registering again after the old one was lost.
    fn renew_identity(&self) -> String {
        let mut info = self.info.lock().expect("instance lock");
        info.id = uuid::Uuid::now_v7().to_string();
        info.id.clone()
    }
}

impl Engine {
    /// Registers this process with the store, takes over the workflows no
    /// live instance runs (resuming them through recovery), and keeps the
    /// registration alive from then on. Call once the server's ports are
    /// bound. Returns how many workflows resumed.
    pub async fn start(&self, started: interlock_core::Micros) -> Result<usize> {
        let inner = &self.inner;
        {
            let mut info = inner.instance.info.lock().expect("instance lock");
            info.started = started;
        }
        self.register_instance().await?;
        // Shared stops are in force before anything resumes.
        self.refresh_stops().await?;
        let resumed = self.take_over().await?;
        let this = self.clone();
        tokio::spawn(async move { this.heartbeat_loop().await });
        let this = self.clone();
        tokio::spawn(async move { this.expire_request_ids().await });
        let this = self.clone();
        tokio::spawn(async move { this.retention_loop().await });
        let this = self.clone();
        tokio::spawn(async move { this.scheduler_loop().await });
        Ok(resumed)
    }

    /// Forgets idempotency keys older than the window, once a minute (and
    /// at start).
    async fn expire_request_ids(self) {
        let inner = &self.inner;
        let window = inner.opts.request_id_window;
        let mut tick = tokio::time::interval(
            Duration::from_secs(60).min(window.max(Duration::from_millis(100))),
        );
        loop {
            tokio::select! {
                _ = inner.draining.cancelled() => return,
                _ = tick.tick() => {}
            }
            let before = inner.opts.clock.now() - window.as_micros() as interlock_core::Micros;
            if let Err(e) = inner.store.expire_request_ids(before).await {
                tracing::warn!(error = %e, "cannot expire old request ids");
            }
        }
    }

    async fn register_instance(&self) -> Result<()> {
        let inner = &self.inner;
        let sent = Instant::now();
        inner
            .store
            .register_instance(&inner.instance.info(), inner.opts.lease_ttl)
            .await?;
        inner.instance.renewed(sent, inner.opts.lease_ttl);
        inner.set_lease_error(None);
        Ok(())
    }

    /// Claims orphaned workflows and resumes them; returns how many resumed.
    async fn take_over(&self) -> Result<usize> {
        let inner = &self.inner;
        let mut resumed = 0;
        loop {
            let claimed = inner.store.claim_orphans(&inner.instance.id(), 64).await?;
            if claimed.is_empty() {
                return Ok(resumed);
            }
            for (rec, lease) in claimed {
                metrics::counter!("interlock_takeovers_total").increment(1);
                if self.resume_claimed(rec, lease).await? {
                    resumed += 1;
                }
            }
        }
    }

    /// Renews the registration every third of the lease ttl and takes over
    /// orphans, until shutdown.
    async fn heartbeat_loop(self) {
        let inner = self.inner.clone();
        let ttl = inner.opts.lease_ttl;
        let mut tick = tokio::time::interval(ttl / 3);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = inner.draining.cancelled() => return,
                _ = tick.tick() => {}
            }
            let sent = Instant::now();
            match inner.store.heartbeat(&inner.instance.id(), ttl).await {
                Ok(()) => {
                    inner.instance.renewed(sent, ttl);
                    inner.set_lease_error(None);
                }
                Err(StoreError::LeaseLost(_)) if inner.store.exclusive() => {
                    // Nobody else can hold this database: renew in place.
                    if self.register_instance().await.is_ok() {
                        tracing::warn!("heartbeat had lapsed; registration renewed");
                    }
                }
                Err(StoreError::LeaseLost(id)) => {
                    tracing::error!(instance = %id, "this server was declared dead; stopping its workflows and registering again");
                    inner.stop_all("this server's lease was lost; another instance may take its workflows over");
                    inner.instance.renew_identity();
                    if let Err(e) = self.register_instance().await {
                        tracing::error!(error = %e, "cannot register again");
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "heartbeat failed");
                    if !inner.store.exclusive() && inner.instance.may_run().is_err() {
                        let why = format!(
                            "cannot reach the store for longer than the lease ttl ({}s): {e}",
                            ttl.as_secs_f64()
                        );
                        inner.set_lease_error(Some(why.clone()));
                        inner.stop_all(&why);
                        inner.instance.lapse();
                        // The stopped workflows stay ours in the store until
                        // the old id expires; a heartbeat under it that got
                        // through later would leave them owned by a live
                        // process that no longer runs them. A new id makes
                        // them orphans that any instance (this one too)
                        // takes over through recovery.
                        inner.instance.renew_identity();
                    }
                }
            }
            if inner.instance.may_run().is_ok() {
                if let Err(e) = self.take_over().await {
                    tracing::warn!(error = %e, "cannot take over orphaned workflows now");
                }
                // Requests whose announcement was missed.
                self.act_on_pending().await;
            }
        }
    }
}

impl Inner {
    fn set_lease_error(&self, e: Option<String>) {
        self.health.lock().expect("health lock").lease_error = e;
    }

    /// Stops every local run without recording: another instance owns
    /// (or will own) them.
    fn stop_all(&self, why: &str) {
        let actives: Vec<_> = self
            .active
            .lock()
            .expect("active lock")
            .values()
            .cloned()
            .collect();
        if !actives.is_empty() {
            tracing::warn!(workflows = actives.len(), why = %interlock_core::Escaped(why), "stopping every local run");
        }
        for a in actives {
            a.stop(Cause::Unrecorded(why.to_string()));
        }
    }
}
