//! Working with the other server instances on a shared store.
//!
//! - **Requests to the owner.** Only the instance that runs a workflow can
//!   stop, pause or resume its jobs. Another instance asked to do so records
//!   a request in the store (published on the change feed at once, and
//!   found by the owner's heartbeat as a backstop), then waits until the
//!   workflow's record shows the outcome. The owner acts on requests for
//!   workflows it runs, exactly as if the call had come to it.
//! - **The shared emergency stop.** Stops written to the store apply to
//!   every instance; the state in force here is this instance's es.json
//!   united with them, re-read whenever the feed announces a change (and
//!   periodically, in case an announcement was lost).

use super::active::Cause;
use super::{Engine, Inner};
use crate::error::{EngineError, Result};
use crate::estop::EsState;
use interlock_core::{EsMode, Status};
use interlock_store::{ControlRequest, FeedItem, RequestKind, SharedStop};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, broadcast, watch};

/// How long a call waits for another instance to act on its request.
const PEER_WAIT: Duration = Duration::from_secs(10);
/// Re-read of the shared stops when no change was announced.
const STOPS_REFRESH: Duration = Duration::from_secs(5);

impl Engine {
    /// Asks the owner of `id` to act, and waits until the record shows the
    /// outcome (`done` holds for the workflow's status).
    pub(super) async fn ask_owner(
        &self,
        id: &str,
        owner: &str,
        kind: RequestKind,
        reason: &str,
        done: impl Fn(Status) -> bool,
    ) -> Result<Status> {
        let inner = &self.inner;
        // Subscribe first: the outcome may come right after the request.
        let mut feed = inner.store.subscribe();
        inner.store.request(id, kind, reason, self.now()).await?;
        tracing::info!(workflow = %id, %owner, kind = kind.as_str(), "asked the owning instance");
        let deadline = tokio::time::Instant::now() + PEER_WAIT;
        let mut recheck = tokio::time::interval(Duration::from_millis(250));
        loop {
            tokio::select! {
                item = feed.recv() => match item {
                    Ok(FeedItem::Event(e)) if e.workflow_id == id && e.block.is_none() && done(e.status) => {
                        return Ok(e.status);
                    }
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => {}
                },
                _ = recheck.tick() => {}
                _ = tokio::time::sleep_until(deadline) => {
                    let status = self.status(id).await?.status;
                    return if done(status) {
                        Ok(status)
                    } else {
                        Err(EngineError::Elsewhere {
                            id: id.to_string(),
                            owner: owner.to_string(),
                        })
                    };
                }
            }
            let status = self.status(id).await?.status;
            if done(status) {
                return Ok(status);
            }
        }
    }

    /// Acts on a request for a workflow this instance runs; ignores (and
    /// leaves) requests for workflows it does not run.
    async fn act_on(&self, r: ControlRequest) {
        let Some(a) = self.active(&r.workflow_id) else {
            // Another instance's, or already over here: the owner (or the
            // next owner, after a takeover) finds it in requests_for.
            match self.inner.store.get(&r.workflow_id).await {
                Ok(Some(rec)) if !rec.status.is_terminal() => return,
                _ => {}
            }
            let _ = self.inner.store.finish_request(r.id).await;
            return;
        };
        let outcome = match r.kind {
            RequestKind::Cancel => {
                a.stop(Cause::Cancelled(if r.reason.is_empty() {
                    "no reason given".to_string()
                } else {
                    r.reason.clone()
                }));
                Ok(())
            }
            RequestKind::Pause => self.pause(&r.workflow_id, &r.reason).await,
            RequestKind::Resume => self.resume(&r.workflow_id).await,
        };
        if let Err(e) = outcome {
            tracing::warn!(workflow = %r.workflow_id, kind = r.kind.as_str(), error = %e,
                "a request from another instance could not be carried out");
        }
        if let Err(e) = self.inner.store.finish_request(r.id).await {
            tracing::warn!(error = %e, "cannot mark a request done");
        }
    }

    /// Acts on every pending request for workflows this instance runs.
    pub(super) async fn act_on_pending(&self) {
        match self
            .inner
            .store
            .requests_for(&self.inner.instance.id())
            .await
        {
            Ok(rs) => {
                for r in rs {
                    self.act_on(r).await;
                }
            }
            Err(e) => tracing::debug!(error = %e, "cannot read pending requests"),
        }
    }

    /// Re-reads the shared stops and puts the united state in force.
    pub(super) async fn refresh_stops(&self) -> Result<()> {
        let stops = self.inner.store.stops().await?;
        self.inner.merge_stops(&stops);
        Ok(())
    }

    /// Follows the feed for requests and shared-stop changes, and merges
    /// es.json changes with the shared stops, until shutdown.
    pub(super) fn spawn_peer_tasks(&self, mut file: watch::Receiver<Arc<EsState>>) {
        let this = self.clone();
        let stops_changed = Arc::new(Notify::new());
        let wake = stops_changed.clone();
        let mut feed = self.inner.store.subscribe();
        tokio::spawn(async move {
            loop {
                let item = tokio::select! {
                    _ = this.inner.draining.cancelled() => return,
                    item = feed.recv() => item,
                };
                match item {
                    Ok(FeedItem::Request(r)) => {
                        let this = this.clone();
                        tokio::spawn(async move { this.act_on(r).await });
                    }
                    Ok(FeedItem::Stops) => wake.notify_one(),
                    Ok(FeedItem::Event(_) | FeedItem::Logs(_) | FeedItem::Task { .. }) => {}
                    Ok(FeedItem::Resync) | Err(broadcast::error::RecvError::Lagged(_)) => {
                        wake.notify_one();
                        let this = this.clone();
                        tokio::spawn(async move { this.act_on_pending().await });
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        let this = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(STOPS_REFRESH);
            loop {
                let reread = tokio::select! {
                    _ = this.inner.draining.cancelled() => return,
                    r = file.changed() => if r.is_err() { return } else { false },
                    _ = stops_changed.notified() => true,
                    _ = tick.tick() => true,
                };
                if !reread {
                    // An es.json change applies at once, with the shared
                    // stops as last read: no store round trip on the way.
                    this.inner.remerge_file();
                    continue;
                }
                if let Err(e) = this.refresh_stops().await {
                    // Without the store, the last shared stops stay in
                    // force; the file still applies at once.
                    tracing::debug!(error = %e, "cannot re-read the shared emergency stop");
                    this.inner.remerge_file();
                }
            }
        });
    }

    /// Sets one e-stop entry for every instance: in the store when it is
    /// shared by several instances, else in this instance's es.json at
    /// `file`. Returns once the new state is in force here.
    pub async fn set_stop(
        &self,
        file: &std::path::Path,
        name: &str,
        mode: EsMode,
        reason: &str,
        by: &str,
    ) -> Result<()> {
        if name.is_empty() {
            return Err(crate::estop::EsFileError::EmptyName.into());
        }
        if self.inner.store.exclusive() {
            return Ok(crate::estop::set_entry(file, name, mode, reason).await?);
        }
        self.inner
            .store
            .set_stop(SharedStop {
                name: name.to_string(),
                mode,
                reason: reason.to_string(),
                by: by.to_string(),
                at: self.now(),
            })
            .await?;
        self.refresh_stops().await
    }

    /// Writes a consistent copy of the store to `dest` while serving;
    /// returns its size in bytes.
    pub async fn backup(&self, dest: &std::path::Path) -> Result<u64> {
        Ok(self.inner.store.backup(dest).await?)
    }

    /// The emergency-stop state in force, as a channel that says when it
    /// changes.
    pub fn estop_watch(&self) -> watch::Receiver<Arc<EsState>> {
        self.inner.estop.clone()
    }

    /// (id, name) of each workflow submitted here AwaitingApproval, from
    /// now on.
    pub fn approval_requests(&self) -> broadcast::Receiver<(String, String)> {
        self.inner.approval_requests.subscribe()
    }

    /// Puts the es.json version just loaded in force now, instead of when
    /// the task following the file wakes: for a caller that changed the
    /// file and answers with the state in force.
    pub fn apply_file_stops(&self) {
        self.inner.remerge_file();
    }

    /// The emergency-stop state in force (es.json united with the shared
    /// stops).
    pub fn estop_state(&self) -> Arc<EsState> {
        self.inner.estop_tx.borrow().clone()
    }

    /// Whether e-stop changes are shared through the store (several
    /// instances) rather than written to this instance's es.json.
    pub fn stops_are_shared(&self) -> bool {
        !self.inner.store.exclusive()
    }
}

impl Inner {
    fn merge_stops(&self, stops: &[SharedStop]) {
        let mut shared = self.shared_stops.lock().expect("stops lock");
        *shared = stops.to_vec();
        self.publish_merged(&shared);
    }

    /// Re-merges es.json with the shared stops as last read. The lock is
    /// held throughout, so a fresher read merged meanwhile is never undone.
    fn remerge_file(&self) {
        let shared = self.shared_stops.lock().expect("stops lock");
        self.publish_merged(&shared);
    }

    fn publish_merged(&self, stops: &[SharedStop]) {
        let file = self.file_estop.borrow().clone();
        let merged = file.with_shared(
            stops
                .iter()
                .map(|s| (s.name.as_str(), s.mode, s.reason.as_str())),
        );
        let merged = Arc::new(merged);
        let changed = self.estop_tx.send_if_modified(|cur| {
            if **cur == *merged {
                false
            } else {
                *cur = merged.clone();
                true
            }
        });
        if changed {
            // Here, not in a task woken by the channel: one hop fewer
            // between an es.json write and the runs it stops.
            self.stop_halted(&merged);
        }
    }
}
