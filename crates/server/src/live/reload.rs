//! Re-reading the config files, with one rule for all of them.
//!
//! **A half-written file is never judged.** Editors and `cat > file`
//! truncate a file before writing it, and the watcher wakes in between: a
//! read that is empty, does not parse, or finds the file missing is
//! repeated after a settle delay, for as long as the content keeps changing
//! (bounded), and judged only once it is stable. The one exception: a file
//! missing at the process's first read is judged at once (nothing earlier
//! is in force, and missing means the safe side).
//!
//! **What a judged file means:**
//! - It parses: it replaces the version in force.
//! - It is present but empty, unreadable or malformed: a mistake. The last
//!   good version stays in force — except es.json, which then means STOP for
//!   everything (reported in health, EmergencyStopState and metrics).
//! - It is missing: an operator removed it, which is a decision to deny.
//!   policies.json: every workflow is refused. es.json: everything stops.
//!   buckets.json: no bucket, so every take is refused. tokens.json: no token
//!   is valid. rbac.json: no grant, so every call is denied. limits.json is
//!   the exception: removing it would lift every limit, so the last limits
//!   stay in force (write `[]` to lift them); with none ever loaded there
//!   are none.
//!
//! Each outcome is logged, counted (`interlock_config_reloads_total{file,
//! outcome}`) and audited; a rejected content is reported once, however
//! often it is re-read.

use super::{BUCKETS, ESTOP, LIMITS, NOTIFY, POLICIES, PolicyState, RBAC, TOKENS};
use crate::audit::{Auditor, Caller};
use crate::auth::AuthState;
use interlock_auth::{Rbac, Tokens};
use interlock_core::{Catalog, Escaped, now_micros};
use interlock_engine::{Buckets, ConcurrencyLimits, EsState, buckets, concurrency};
use interlock_policy::PolicySet;
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// How long a changing file is given before it is read again.
const SETTLE: Duration = Duration::from_millis(100);
/// Re-reads of a file that keeps changing before it is judged anyway.
const MAX_ROUNDS: usize = 10;
/// Rejected contents remembered per file (to report each once).
const REMEMBERED: usize = 32;

/// A file's raw state: missing, unreadable, or its bytes.
type Raw = Result<Option<Vec<u8>>, String>;

/// What a settled read found.
enum Judged<T> {
    Parsed(T),
    Missing,
    Bad(String),
}

fn read(dir: &Path, file: &str) -> Raw {
    let path = dir.join(file);
    match std::fs::read(&path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

fn judge<T>(raw: &Raw, parse: &impl Fn(&str) -> Result<T, String>) -> Judged<T> {
    match raw {
        Err(e) => Judged::Bad(e.clone()),
        Ok(None) => Judged::Missing,
        Ok(Some(bytes)) => match std::str::from_utf8(bytes) {
            Err(e) => Judged::Bad(format!("not UTF-8 text: {e}")),
            Ok(t) if t.trim().is_empty() => {
                Judged::Bad("the file is empty (an empty set is written as [])".into())
            }
            Ok(t) => match parse(t) {
                Ok(v) => Judged::Parsed(v),
                Err(e) => Judged::Bad(e),
            },
        },
    }
}

/// Re-reads `file` (first read: `raw`) until it is stable, and judges it;
/// returns the judgment and the content judged. A file missing at the
/// `first` read of this process is judged at once: no earlier version is
/// in force to protect, what missing means is the safe side anyway, and a
/// file that appears later wakes the watcher. (Waiting there cost every
/// start 100 ms per optional file absent.) An empty or malformed file is
/// still given time, at start-up too: it may be half written.
async fn settle<T>(
    dir: &Path,
    file: &str,
    mut raw: Raw,
    first: bool,
    parse: &impl Fn(&str) -> Result<T, String>,
) -> (Judged<T>, Raw) {
    let mut judged = judge(&raw, parse);
    for _ in 0..MAX_ROUNDS {
        if matches!(judged, Judged::Parsed(_)) || (first && matches!(judged, Judged::Missing)) {
            break;
        }
        tokio::time::sleep(SETTLE).await;
        let again = read(dir, file);
        if again == raw {
            break; // stable: judge it as it is
        }
        raw = again;
        judged = judge(&raw, parse);
    }
    (judged, raw)
}

fn hash_of(raw: &Raw) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    raw.hash(&mut h);
    h.finish()
}

pub(super) struct Reloader {
    pub audit: Auditor,
    pub dir: PathBuf,
    pub catalog: Arc<dyn Catalog>,
    pub workers: Arc<interlock_workers::Dispatcher>,
    pub commands: Arc<interlock_engine::LiveJobs>,
    pub http: Arc<interlock_jobs::http::LiveHttpConfig>,
    pub builtin: Arc<dyn Catalog>,
    pub buckets: Arc<Buckets>,
    pub bucket_error: Arc<Mutex<Option<String>>>,
    pub limits: Arc<ConcurrencyLimits>,
    pub limit_error: Arc<Mutex<Option<String>>>,
    /// Whether limits.json was ever loaded by this process.
    pub limits_loaded: bool,
    pub notifier: Arc<crate::notify::Notifier>,
    pub policies: watch::Sender<Arc<PolicyState>>,
    pub estop: watch::Sender<Arc<EsState>>,
    pub auth: Option<watch::Sender<Arc<AuthState>>>,
    /// The content last judged per file, to act on changes only.
    pub seen: HashMap<&'static str, Raw>,
    /// Rejected contents already reported, per file.
    pub reported: HashMap<&'static str, VecDeque<u64>>,
    /// Files whose content on disk was last judged invalid.
    pub refused: std::collections::HashSet<&'static str>,
}

impl Reloader {
    /// Reads `file` until it is stable, then judges it; `None` when it is
    /// what was judged last time.
    async fn settled<T>(
        &mut self,
        file: &'static str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Option<(Judged<T>, u64)> {
        let raw = read(&self.dir, file);
        if self.seen.get(file) == Some(&raw) {
            return None;
        }
        let first = !self.seen.contains_key(file);
        let (judged, raw) = settle(&self.dir, file, raw, first, &parse).await;
        let h = hash_of(&raw);
        self.seen.insert(file, raw);
        Some((judged, h))
    }

    /// Logs, counts and audits an outcome. A rejected content already
    /// reported is not reported again.
    async fn report(&mut self, file: &'static str, outcome: &'static str, detail: String, h: u64) {
        if outcome == "invalid" {
            self.refused.insert(file);
        } else {
            self.refused.remove(file);
        }
        if outcome == "invalid" {
            let seen = self.reported.entry(file).or_default();
            if seen.contains(&h) {
                return;
            }
            if seen.len() == REMEMBERED {
                seen.pop_front();
            }
            seen.push_back(h);
        }
        match outcome {
            "ok" => tracing::info!(file, "loaded"),
            "missing" => tracing::error!(file, detail = %Escaped(&detail), "config file removed"),
            _ => tracing::error!(file, error = %Escaped(&detail), "config file not usable"),
        }
        metrics::counter!("interlock_config_reloads_total", "file" => file, "outcome" => outcome)
            .increment(1);
        self.audit
            .record(Caller::config_reload(file, outcome.to_string(), detail))
            .await;
    }

    pub async fn reload(&mut self) {
        // First: policies may name the job types these declare.
        let jobs = self.reload_jobs().await;
        let commands = self.reload_commands().await;
        // A policy or limits file refused (perhaps for naming a job type
        // that did not exist yet) is judged again once the job types
        // change, though its own content may not change at all.
        if jobs || commands {
            for file in [POLICIES, LIMITS] {
                if self.refused.contains(file) {
                    self.seen.remove(file);
                }
            }
        }
        self.reload_http().await;
        self.reload_policies().await;
        self.reload_estop().await;
        self.reload_buckets().await;
        self.reload_limits().await;
        self.reload_notify().await;
        if self.auth.is_some() {
            self.reload_tokens().await;
            self.reload_rbac().await;
        }
    }

    /// Whether the job types changed (a file taken, or removed).
    async fn reload_jobs(&mut self) -> bool {
        use interlock_workers::{Declarations, JOBS};
        let builtin = self.builtin.clone();
        let parse = |t: &str| Declarations::parse(t, builtin.as_ref());
        let Some((judged, h)) = self.settled(JOBS, parse).await else {
            return false;
        };
        let (outcome, detail) = match judged {
            Judged::Parsed(d) => {
                let names: Vec<_> = d.iter().map(|(n, _)| n.clone()).collect();
                let detail = format!("{} remote job types: {}", d.len(), names.join(", "));
                self.workers.declare(d);
                ("ok", detail)
            }
            // Optional: without it every job runs in the server.
            Judged::Missing => {
                self.workers.declare(Declarations::default());
                (
                    "missing",
                    "no jobs.json: no job type is served by workers".to_string(),
                )
            }
            Judged::Bad(e) => (
                "invalid",
                format!("{e}; the last good job types stay in force"),
            ),
        };
        self.report(JOBS, outcome, detail, h).await;
        outcome != "invalid"
    }

    /// Whether the job types changed (a file taken, or removed).
    async fn reload_commands(&mut self) -> bool {
        use interlock_jobs::exec::{COMMANDS, Commands, Exec};
        let Some((judged, h)) = self.settled(COMMANDS, Commands::parse).await else {
            return false;
        };
        let (outcome, detail) = match judged {
            Judged::Parsed(c) => {
                let names: Vec<_> = c.0.iter().map(|c| c.schema.name).collect();
                let detail = format!("{} commands: {}", names.len(), names.join(", "));
                self.commands.replace(Exec::all(c));
                ("ok", detail)
            }
            // Optional: without it no command can run.
            Judged::Missing => {
                self.commands.replace(Vec::new());
                (
                    "missing",
                    "no commands.json: no exec job can run".to_string(),
                )
            }
            Judged::Bad(e) => (
                "invalid",
                format!("{e}; the last good commands stay in force"),
            ),
        };
        self.report(COMMANDS, outcome, detail, h).await;
        outcome != "invalid"
    }

    async fn reload_http(&mut self) {
        use interlock_jobs::http::{HTTP, HttpConfig};
        let Some((judged, h)) = self.settled(HTTP, HttpConfig::parse).await else {
            return;
        };
        let (outcome, detail) = match judged {
            Judged::Parsed(c) => {
                self.http.replace(c);
                ("ok", "the http job's allowed URLs".to_string())
            }
            // Deny by default: without it the http job may call nothing.
            Judged::Missing => {
                self.http.replace(HttpConfig::default());
                (
                    "missing",
                    "no http.json: the http job may call no URL".to_string(),
                )
            }
            Judged::Bad(e) => (
                "invalid",
                format!("{e}; the last good allowed URLs stay in force"),
            ),
        };
        self.report(HTTP, outcome, detail, h).await;
    }

    async fn reload_policies(&mut self) {
        let path = self.dir.join(POLICIES).display().to_string();
        let catalog = self.catalog.clone();
        let parse =
            |t: &str| PolicySet::parse(t, &path, catalog.as_ref()).map_err(|e| e.to_string());
        let Some((judged, h)) = self.settled(POLICIES, parse).await else {
            return;
        };
        let (outcome, detail) = match &judged {
            Judged::Parsed(set) => (
                "ok",
                format!(
                    "version {}, workflows {:?}",
                    set.version(),
                    set.workflow_names()
                ),
            ),
            Judged::Missing => (
                "missing",
                format!("{path} was removed: every workflow is refused until it is back"),
            ),
            // With none loaded since start (a restart on a broken file)
            // there is no last good set: every request is refused.
            Judged::Bad(e) if self.policies.borrow().set.is_none() => (
                "invalid",
                format!("{e}; no valid policies are loaded, so every request is refused"),
            ),
            Judged::Bad(e) => (
                "invalid",
                format!("{e}; the last good policies stay in force"),
            ),
        };
        self.policies.send_modify(|st| {
            let mut next = (**st).clone();
            match judged {
                Judged::Parsed(set) => {
                    next.set = Some(Arc::new(set));
                    next.loaded_at = Some(now_micros());
                    next.last_error = None;
                    next.last_error_at = None;
                }
                Judged::Missing => {
                    next.set = None;
                    next.last_error = Some(detail.clone());
                    next.last_error_at = Some(now_micros());
                }
                Judged::Bad(_) => {
                    next.last_error = Some(detail.clone());
                    next.last_error_at = Some(now_micros());
                }
            }
            *st = Arc::new(next);
        });
        self.report(POLICIES, outcome, detail, h).await;
    }

    async fn reload_estop(&mut self) {
        let Some((judged, h)) = self.settled(ESTOP, EsState::parse).await else {
            return;
        };
        let path = self.dir.join(ESTOP).display().to_string();
        let (state, outcome, detail) = match judged {
            Judged::Parsed(s) => {
                let d = format!("{} entries", s.entries().len());
                (s, "ok", d)
            }
            Judged::Missing => {
                let e = format!("{path} is missing");
                (EsState::fail_closed(e.clone()), "missing", e)
            }
            Judged::Bad(e) => (EsState::fail_closed(e.clone()), "invalid", e),
        };
        if state.error.is_some() {
            tracing::error!(error = %Escaped(&detail), "es.json is missing or malformed: EVERYTHING IS STOPPED until it is fixed");
        }
        self.estop.send_replace(Arc::new(state));
        self.report(ESTOP, outcome, detail, h).await;
    }

    async fn reload_buckets(&mut self) {
        let parse = |t: &str| buckets::parse_config(t).map_err(|e| e.to_string());
        let Some((judged, h)) = self.settled(BUCKETS, parse).await else {
            return;
        };
        let (outcome, detail) = match judged {
            Judged::Parsed(defs) => {
                let d = format!("{} buckets", defs.len());
                self.buckets.configure(defs);
                *self.bucket_error.lock().expect("bucket error lock") = None;
                ("ok", d)
            }
            Judged::Missing => {
                self.buckets.configure(Vec::new());
                let d = "buckets.json was removed: no bucket exists, so every take is refused"
                    .to_string();
                *self.bucket_error.lock().expect("bucket error lock") = Some(d.clone());
                ("missing", d)
            }
            Judged::Bad(e) => {
                let d = format!("{e}; the last good buckets stay in force");
                *self.bucket_error.lock().expect("bucket error lock") = Some(d.clone());
                ("invalid", d)
            }
        };
        self.report(BUCKETS, outcome, detail, h).await;
    }

    async fn reload_limits(&mut self) {
        let catalog = self.catalog.clone();
        let parse = |t: &str| concurrency::parse_config(t, catalog.as_ref());
        let Some((judged, h)) = self.settled(LIMITS, parse).await else {
            return;
        };
        let (outcome, detail) = match judged {
            Judged::Parsed(defs) => {
                let d = format!("{} limits", defs.len());
                self.limits.configure(defs);
                self.limits_loaded = true;
                *self.limit_error.lock().expect("limit error lock") = None;
                ("ok", d)
            }
            Judged::Missing if self.limits.defs().is_empty() => {
                // Never loaded or emptied on purpose: no limits (an absent
                // optional file is not a broken one).
                self.limits.configure(Vec::new());
                (
                    "missing",
                    "no limits.json: no blast-radius limit is in force".to_string(),
                )
            }
            Judged::Missing => {
                let d = "limits.json was removed; the last limits stay in force (write [] to lift them)"
                    .to_string();
                *self.limit_error.lock().expect("limit error lock") = Some(d.clone());
                ("missing", d)
            }
            Judged::Bad(e) => {
                let loaded = self.limits_loaded;
                let d = if loaded {
                    format!("{e}; the last good limits stay in force")
                } else {
                    format!("{e}; no limits were loaded yet, so no job starts until it is fixed")
                };
                self.limits.unusable_file(d.clone(), loaded);
                *self.limit_error.lock().expect("limit error lock") = Some(d.clone());
                ("invalid", d)
            }
        };
        self.report(LIMITS, outcome, detail, h).await;
    }

    async fn reload_notify(&mut self) {
        let parse = crate::notify::NotifyConfig::parse;
        let Some((judged, h)) = self.settled(NOTIFY, parse).await else {
            return;
        };
        let (outcome, detail) = match judged {
            Judged::Parsed(c) => {
                let d = format!("{} webhooks", c.hooks.len());
                self.notifier.configure(c);
                ("ok", d)
            }
            // Optional: without it nobody is told anything.
            Judged::Missing => {
                self.notifier.configure(Default::default());
                (
                    "missing",
                    "no notify.json: no webhook is called".to_string(),
                )
            }
            Judged::Bad(e) => (
                "invalid",
                format!("{e}; the last good webhooks stay in force"),
            ),
        };
        self.report(NOTIFY, outcome, detail, h).await;
    }

    async fn reload_tokens(&mut self) {
        let parse = |t: &str| Tokens::parse(t).map(Arc::new).map_err(|e| e.to_string());
        let Some((judged, h)) = self.settled(TOKENS, parse).await else {
            return;
        };
        let (outcome, detail) = self.apply_auth(
            judged,
            |st| &mut st.tokens,
            || {
                (
                    Arc::new(Tokens::default()),
                    "tokens.json was removed: no token is valid until it is back".to_string(),
                )
            },
        );
        self.report(TOKENS, outcome, detail, h).await;
    }

    async fn reload_rbac(&mut self) {
        let parse = |t: &str| {
            Rbac::parse(t)
                .map(|r| Some(Arc::new(r)))
                .map_err(|e| e.to_string())
        };
        let Some((judged, h)) = self.settled(RBAC, parse).await else {
            return;
        };
        let (outcome, detail) = self.apply_auth(
            judged,
            |st| &mut st.rbac,
            || {
                (
                    None,
                    "rbac.json was removed: every call is denied until it is back".to_string(),
                )
            },
        );
        self.report(RBAC, outcome, detail, h).await;
    }

    /// Publishes a judged auth file into the slot `slot` picks: parsed
    /// replaces, missing takes the deny-everything value `missing` gives,
    /// bad keeps the last good version.
    fn apply_auth<T>(
        &self,
        judged: Judged<T>,
        slot: impl FnOnce(&mut AuthState) -> &mut crate::auth::Loaded<T>,
        missing: impl FnOnce() -> (T, String),
    ) -> (&'static str, String) {
        let auth = self.auth.as_ref().expect("auth is on");
        let (outcome, detail) = match &judged {
            Judged::Parsed(_) => ("ok", String::new()),
            Judged::Missing => ("missing", String::new()),
            Judged::Bad(e) => (
                "invalid",
                format!("{e}; the last good version stays in force"),
            ),
        };
        let mut detail_out = detail.clone();
        auth.send_modify(|st| {
            let mut next = (**st).clone();
            let loaded = slot(&mut next);
            match judged {
                Judged::Parsed(v) => loaded.apply(Ok(v)),
                Judged::Missing => {
                    let (v, why) = missing();
                    loaded.good = v;
                    loaded.error = Some(why.clone());
                    detail_out = why;
                }
                Judged::Bad(_) => loaded.apply(Err(detail)),
            }
            *st = Arc::new(next);
        });
        (outcome, detail_out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(t: &str) -> Result<String, String> {
        serde_json::from_str::<serde_json::Value>(t)
            .map(|v| v.to_string())
            .map_err(|e| e.to_string())
    }

    /// What `settle` judged and how much (paused, virtual) time it took.
    async fn settle_now(dir: &Path, first: bool) -> (Judged<String>, Duration) {
        let t = tokio::time::Instant::now();
        let (judged, _) = settle(dir, "x.json", read(dir, "x.json"), first, &parse).await;
        (judged, t.elapsed())
    }

    #[tokio::test(start_paused = true)]
    async fn a_file_missing_at_start_is_judged_at_once_and_a_removal_later_settles() {
        let dir = tempfile::tempdir().unwrap();
        let (judged, took) = settle_now(dir.path(), true).await;
        assert!(matches!(judged, Judged::Missing));
        assert_eq!(took, Duration::ZERO);
        // Once running, a missing file may be mid-replacement: it waits.
        let (judged, took) = settle_now(dir.path(), false).await;
        assert!(matches!(judged, Judged::Missing));
        assert!(took >= SETTLE, "{took:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn an_empty_or_malformed_file_is_given_time_at_start_too() {
        let dir = tempfile::tempdir().unwrap();
        for text in ["", "[{\"Name\": "] {
            std::fs::write(dir.path().join("x.json"), text).unwrap();
            let (judged, took) = settle_now(dir.path(), true).await;
            assert!(matches!(judged, Judged::Bad(_)), "{text:?}");
            assert!(took >= SETTLE, "{text:?}: {took:?}");
        }
        std::fs::write(dir.path().join("x.json"), "[]").unwrap();
        let (judged, took) = settle_now(dir.path(), true).await;
        assert!(matches!(judged, Judged::Parsed(_)));
        assert_eq!(took, Duration::ZERO);
    }
}
