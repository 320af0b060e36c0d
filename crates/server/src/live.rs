//! Live configuration: jobs.json, commands.json, http.json, policies.json, es.json,
//! buckets.json, limits.json and notify.json (and, with authentication on, tokens.json
//! and rbac.json), reloaded while the server runs.
//!
//! The watcher observes the config *directory* (not the files), so editors
//! that write a temp file and rename it, and Kubernetes ConfigMap symlink
//! swaps, are both seen; a periodic re-read and SIGHUP back it up. Any
//! trigger re-reads every file and acts only on those whose content
//! changed. What a file's content means (parsed, half-written, malformed,
//! missing) is one rule for every file, in `reload`.
//!
//! Invariants:
//! - A malformed, empty or half-written file never replaces the version in
//!   force (es.json: it means STOP); a missing file denies (see `reload`).
//! - With no valid policies ever loaded, admission refuses everything; with
//!   no rbac.json ever loaded, every call is denied.
//! - Consumers see changes through `watch` channels; nothing polls files on
//!   the request path.

mod reload;
pub mod templates;

use crate::audit::Auditor;
use crate::auth::AuthState;
use interlock_core::{Catalog, Micros, WorkReq};
use interlock_engine::{Admission, Buckets, ConcurrencyLimits, EsState, Refusal};
use interlock_policy::{Ctx, PolicySet};
use notify::Watcher;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

pub const POLICIES: &str = "policies.json";
pub const ESTOP: &str = "es.json";
pub const BUCKETS: &str = "buckets.json";
pub const LIMITS: &str = "limits.json";
pub const NOTIFY: &str = "notify.json";
pub const TOKENS: &str = "tokens.json";
pub const RBAC: &str = "rbac.json";

/// The policy set in force and the reload history an operator needs.
#[derive(Debug, Clone)]
pub struct PolicyState {
    pub set: Option<Arc<PolicySet>>,
    pub loaded_at: Option<Micros>,
    pub last_error: Option<String>,
    pub last_error_at: Option<Micros>,
    pub path: PathBuf,
}

/// Admission backed by the live policy set.
pub struct LivePolicies(pub watch::Receiver<Arc<PolicyState>>);

impl Admission for LivePolicies {
    fn approvals(&self, req: &WorkReq) -> Vec<interlock_core::ApprovalRule> {
        let st = self.0.borrow().clone();
        st.set
            .as_ref()
            .map(|s| s.approvals(req))
            .unwrap_or_default()
    }

    fn pauses(&self, req: &WorkReq, now: Micros) -> Option<String> {
        let st = self.0.borrow().clone();
        st.set.as_ref()?.pauses(req, &Ctx { now })
    }

    fn admit(&self, req: &WorkReq, now: Micros) -> Result<String, Refusal> {
        let st = self.0.borrow().clone();
        let Some(set) = &st.set else {
            return Err(Refusal::Unavailable(format!(
                "no valid policy file is loaded, so all work is refused until {} is fixed: {}",
                st.path.display(),
                st.last_error.as_deref().unwrap_or("not read yet")
            )));
        };
        set.admit_at(req, &Ctx { now })
            .map(|()| set.version().to_string())
            .map_err(|violations| Refusal::Violations {
                version: set.version().to_string(),
                violations,
            })
    }
}

/// Handles to the live configuration.
#[derive(Clone)]
pub struct Live {
    pub dir: PathBuf,
    pub policies: watch::Receiver<Arc<PolicyState>>,
    pub estop: watch::Receiver<Arc<EsState>>,
    pub buckets: Arc<Buckets>,
    pub bucket_error: Arc<Mutex<Option<String>>>,
    pub limits: Arc<ConcurrencyLimits>,
    pub limit_error: Arc<Mutex<Option<String>>>,
    /// Credentials configuration; `None` when authentication is off.
    pub auth: Option<watch::Receiver<Arc<AuthState>>>,
    reload: mpsc::Sender<oneshot::Sender<()>>,
}

impl Live {
    /// Re-reads the files now and returns once any change is in force.
    pub async fn reload_now(&self) {
        let (tx, rx) = oneshot::channel();
        if self.reload.send(tx).await.is_ok() {
            let _ = rx.await;
        }
    }
}

/// Whether a directory event can mean a file's content changed. Opens and
/// reads are reported too — including our own re-reads, which must not wake
/// the reloader again.
fn changes_content(kind: &notify::EventKind) -> bool {
    use notify::EventKind as K;
    use notify::event::{AccessKind, AccessMode};
    match kind {
        K::Access(AccessKind::Close(AccessMode::Write)) => true,
        K::Access(_) => false,
        K::Any | K::Create(_) | K::Modify(_) | K::Remove(_) | K::Other => true,
    }
}

/// What the config files configure in place (rather than publish on a
/// channel).
pub struct Targets {
    /// Where jobs.json's declarations go.
    pub workers: Arc<interlock_workers::Dispatcher>,
    /// Where commands.json's exec.* jobs go.
    pub commands: Arc<interlock_engine::LiveJobs>,
    /// Where http.json's allowed URLs go.
    pub http: Arc<interlock_jobs::http::LiveHttpConfig>,
    /// The jobs built into the server (a declaration may not reuse a name).
    pub builtin: Arc<dyn Catalog>,
    pub buckets: Arc<Buckets>,
    pub limits: Arc<ConcurrencyLimits>,
    pub notifier: Arc<crate::notify::Notifier>,
}

/// Loads the configuration once, then keeps it live until `shutdown`.
pub async fn start(
    audit: Auditor,
    dir: PathBuf,
    catalog: Arc<dyn Catalog>,
    Targets {
        workers,
        commands,
        http,
        builtin,
        buckets,
        limits,
        notifier,
    }: Targets,
    interval: Duration,
    auth: bool,
    shutdown: CancellationToken,
) -> Live {
    let (auth_tx, auth_rx) = if auth {
        let (tx, rx) = watch::channel(Arc::new(AuthState::default()));
        (Some(tx), Some(rx))
    } else {
        (None, None)
    };
    let (policies, policies_rx) = watch::channel(Arc::new(PolicyState {
        set: None,
        loaded_at: None,
        last_error: None,
        last_error_at: None,
        path: dir.join(POLICIES),
    }));
    let (estop, estop_rx) = watch::channel(Arc::new(EsState::fail_closed(
        "es.json not read yet".into(),
    )));
    let bucket_error = Arc::new(Mutex::new(None));
    let limit_error = Arc::new(Mutex::new(None));
    let mut r = reload::Reloader {
        audit,
        dir: dir.clone(),
        catalog,
        workers,
        commands,
        http,
        builtin,
        buckets: buckets.clone(),
        bucket_error: bucket_error.clone(),
        limits: limits.clone(),
        limit_error: limit_error.clone(),
        limits_loaded: false,
        notifier,
        policies,
        estop,
        auth: auth_tx,
        seen: HashMap::new(),
        reported: HashMap::new(),
        refused: Default::default(),
    };
    r.reload().await;

    let (reload_tx, mut reload_rx) = mpsc::channel::<oneshot::Sender<()>>(16);
    let wake = Arc::new(Notify::new());
    let w = wake.clone();
    let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if res.is_ok_and(|e| changes_content(&e.kind)) {
            w.notify_one();
        }
    })
    .and_then(|mut watcher| {
        watcher.watch(&dir, notify::RecursiveMode::NonRecursive)?;
        Ok(watcher)
    });
    let watcher = match watcher {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot watch the config directory; relying on periodic re-reads");
            None
        }
    };
    tokio::spawn(async move {
        let _watcher = watcher;
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        loop {
            let mut done = None;
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = wake.notified() => {}
                _ = tick.tick() => {}
                Some(_) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                    tracing::info!("SIGHUP: re-reading configuration");
                }
                Some(ack) = reload_rx.recv() => done = Some(ack),
            }
            r.reload().await;
            if let Some(ack) = done {
                let _ = ack.send(());
            }
        }
    });
    Live {
        dir,
        policies: policies_rx,
        estop: estop_rx,
        buckets,
        bucket_error,
        limits,
        limit_error,
        auth: auth_rx,
        reload: reload_tx,
    }
}
