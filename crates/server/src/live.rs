//! Live configuration: policies.json, es.json and buckets.json (and, with
//! authentication on, tokens.json and rbac.json), reloaded while the server
//! runs.
//!
//! The watcher observes the config *directory* (not the files), so editors
//! that write a temp file and rename it, and Kubernetes ConfigMap symlink
//! swaps, are both seen; a periodic re-read and SIGHUP back it up. Any
//! trigger re-reads all three files and acts only on the ones whose content
//! changed.
//!
//! Invariants:
//! - An invalid policies.json or buckets.json never replaces the set in
//!   force (last known good); with no valid policies ever loaded, admission
//!   refuses everything.
//! - An invalid tokens.json or rbac.json keeps the last good one; a missing
//!   tokens.json means no valid tokens (deleting it revokes them all), and
//!   with no rbac.json ever loaded every call is denied.
//! - A missing or malformed es.json means STOP for everything. Because an
//!   in-place write can be observed half-done, an unusable es.json is
//!   re-read once after a short settle delay before it stops running work.
//! - Consumers see changes through `watch` channels; nothing polls files on
//!   the request path.

use crate::audit::{Auditor, Caller};
use crate::auth::{AuthState, Loaded};
use interlock_auth::{Rbac, Tokens};
use interlock_core::{Catalog, Micros, WorkReq, now_micros};
use interlock_engine::{Admission, Buckets, EsState, Refusal, buckets};
use interlock_policy::{PolicySet, Verdict};
use notify::Watcher;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

pub const POLICIES: &str = "policies.json";
pub const ESTOP: &str = "es.json";
pub const BUCKETS: &str = "buckets.json";
pub const TOKENS: &str = "tokens.json";
pub const RBAC: &str = "rbac.json";

/// Time an unusable es.json gets to become usable (a write in progress)
/// before it stops everything.
const ES_SETTLE: Duration = Duration::from_millis(25);

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
    fn admit(&self, req: &WorkReq) -> Result<String, Refusal> {
        let st = self.0.borrow().clone();
        let Some(set) = &st.set else {
            return Err(Refusal::Unavailable(format!(
                "no valid policy file is loaded, so all work is refused until {} is fixed: {}",
                st.path.display(),
                st.last_error.as_deref().unwrap_or("not read yet")
            )));
        };
        match set.check(req) {
            Verdict::Allowed => Ok(set.version().to_string()),
            Verdict::NoEntry => Err(Refusal::Unavailable(format!(
                "no policy configured for workflow {:?}; add an entry for it to {}",
                req.name,
                st.path.display()
            ))),
            Verdict::Violations(violations) => Err(Refusal::Violations {
                version: set.version().to_string(),
                violations,
            }),
        }
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

struct Reloader {
    audit: Auditor,
    /// Reload outcomes not yet written to the audit log.
    outcomes: Vec<(&'static str, Result<(), String>)>,
    dir: PathBuf,
    catalog: Arc<dyn Catalog>,
    buckets: Arc<Buckets>,
    bucket_error: Arc<Mutex<Option<String>>>,
    policies: watch::Sender<Arc<PolicyState>>,
    estop: watch::Sender<Arc<EsState>>,
    auth: Option<watch::Sender<Arc<AuthState>>>,
    /// Last content seen per file (Err = the read error), to act on changes only.
    seen: HashMap<&'static str, Result<String, String>>,
}

fn read(dir: &Path, file: &str) -> Result<String, String> {
    let path = dir.join(file);
    std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

impl Reloader {
    /// Reads `file`; `None` when unchanged since last time.
    fn changed(&mut self, file: &'static str) -> Option<Result<String, String>> {
        let now = read(&self.dir, file);
        if self.seen.get(file) == Some(&now) {
            return None;
        }
        self.seen.insert(file, now.clone());
        Some(now)
    }

    async fn reload(&mut self) {
        self.reload_policies();
        self.reload_estop().await;
        self.reload_buckets().await;
        self.reload_auth();
        for (file, outcome) in std::mem::take(&mut self.outcomes) {
            let (outcome, detail) = match outcome {
                Ok(()) => ("ok".to_string(), String::new()),
                Err(e) => ("invalid".to_string(), e),
            };
            self.audit
                .record(Caller::config_reload(file, outcome, detail))
                .await;
        }
    }

    fn reload_policies(&mut self) {
        let Some(text) = self.changed(POLICIES) else {
            return;
        };
        let path = self.dir.join(POLICIES);
        let parsed = text.and_then(|t| {
            PolicySet::parse(&t, &path.display().to_string(), self.catalog.as_ref())
                .map_err(|e| e.to_string())
        });
        self.count_and_note(POLICIES, parsed.as_ref().map(|_| ()));
        self.policies.send_modify(|st| {
            let mut next = (**st).clone();
            match parsed {
                Ok(set) => {
                    tracing::info!(version = %set.version(), workflows = ?set.workflow_names(), "policies loaded");
                    next.set = Some(Arc::new(set));
                    next.loaded_at = Some(now_micros());
                    next.last_error = None;
                    next.last_error_at = None;
                }
                Err(e) => {
                    tracing::error!(error = %e, kept = ?next.set.as_ref().map(|s| s.version().to_string()),
                        "invalid policy file; keeping the last good policies");
                    next.last_error = Some(e);
                    next.last_error_at = Some(now_micros());
                }
            }
            *st = Arc::new(next);
        });
    }

    async fn reload_estop(&mut self) {
        let Some(mut text) = self.changed(ESTOP) else {
            return;
        };
        let parse = |t: &Result<String, String>| t.clone().and_then(|t| EsState::parse(&t));
        let mut state = parse(&text);
        if state.is_err() {
            tokio::time::sleep(ES_SETTLE).await;
            text = read(&self.dir, ESTOP);
            self.seen.insert(ESTOP, text.clone());
            state = parse(&text);
        }
        self.count_and_note(ESTOP, state.as_ref().map(|_| ()));
        let state = match state {
            Ok(s) => {
                tracing::info!(entries = s.entries().len(), "emergency-stop state loaded");
                s
            }
            Err(e) => {
                tracing::error!(error = %e, "es.json is missing or malformed: EVERYTHING IS STOPPED until it is fixed");
                EsState::fail_closed(e)
            }
        };
        self.estop.send_replace(Arc::new(state));
    }

    fn reload_auth(&mut self) {
        let Some(auth) = self.auth.clone() else {
            return;
        };
        if let Some(text) = self.changed(TOKENS) {
            let parsed = match text {
                // No file: no tokens (certificates may still be in use).
                Err(_) if !self.dir.join(TOKENS).exists() => Ok(Tokens::default()),
                t => t.and_then(|t| Tokens::parse(&t).map_err(|e| e.to_string())),
            };
            self.take_auth_file(&auth, TOKENS, parsed.map(Arc::new), |st| &mut st.tokens);
        }
        if let Some(text) = self.changed(RBAC) {
            let parsed = text.and_then(|t| Rbac::parse(&t).map_err(|e| e.to_string()));
            let parsed = parsed.map(|r| Some(Arc::new(r)));
            self.take_auth_file(&auth, RBAC, parsed, |st| &mut st.rbac);
        }
    }

    /// Counts and notes `file`'s reload, and publishes it into the slot of
    /// the auth state that `slot` picks (last good kept on error).
    fn take_auth_file<T>(
        &mut self,
        auth: &watch::Sender<Arc<AuthState>>,
        file: &'static str,
        parsed: Result<T, String>,
        slot: impl FnOnce(&mut AuthState) -> &mut Loaded<T>,
    ) {
        self.count_and_note(file, parsed.as_ref().map(|_| ()));
        match &parsed {
            Ok(_) => tracing::info!(file, "loaded"),
            Err(e) => {
                tracing::error!(file, error = %e, "invalid; keeping the last good version")
            }
        }
        auth.send_modify(|st| {
            let mut next = (**st).clone();
            slot(&mut next).apply(parsed);
            *st = Arc::new(next);
        });
    }

    /// Counts a reload outcome and queues it for the audit log.
    fn count_and_note(&mut self, file: &'static str, result: Result<(), &String>) {
        metrics::counter!("interlock_config_reloads_total", "file" => file, "outcome" => if result.is_ok() { "ok" } else { "invalid" })
            .increment(1);
        self.outcomes.push((file, result.map_err(Clone::clone)));
    }

    async fn reload_buckets(&mut self) {
        let Some(text) = self.changed(BUCKETS) else {
            return;
        };
        let result = text
            .and_then(|t| buckets::parse_config(&t).map_err(|e| e.to_string()))
            .map(|defs| self.buckets.configure(defs));
        self.count_and_note(BUCKETS, result.as_ref().map(|_| ()));
        match &result {
            Ok(()) => tracing::info!("buckets loaded"),
            Err(e) => {
                tracing::error!(error = %e, "invalid buckets file; keeping the last good buckets")
            }
        }
        *self.bucket_error.lock().expect("bucket error lock") = result.err();
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

/// Loads the configuration once, then keeps it live until `shutdown`.
pub async fn start(
    audit: Auditor,
    dir: PathBuf,
    catalog: Arc<dyn Catalog>,
    buckets: Arc<Buckets>,
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
    let mut r = Reloader {
        audit,
        outcomes: Vec::new(),
        dir: dir.clone(),
        catalog,
        buckets: buckets.clone(),
        bucket_error: bucket_error.clone(),
        policies,
        estop,
        auth: auth_tx,
        seen: HashMap::new(),
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
        auth: auth_rx,
        reload: reload_tx,
    }
}
