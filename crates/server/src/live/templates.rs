//! Template files: `configs/templates/*.yaml` (and `.yml`, `.json`) kept
//! in the store as revisions, at start and whenever a file changes, so
//! templates can live in Git and be reviewed like any config.
//!
//! Rules, in the spirit of the other config files:
//! - A file is judged only once its content is stable (a half-written file
//!   is re-read, as in `reload.rs`); a file that does not parse is
//!   reported once (log, metric, audit) and changes nothing: the revision
//!   in force stays.
//! - Two files that define one template name are a conflict: neither is
//!   applied until one goes, and the conflict is reported naming both.
//! - A changed file becomes its template's next revision, recorded as
//!   created by `file:<path>`; an unchanged one adds nothing (the store
//!   compares content), so every replica may load the same files.
//! - A removed file removes nothing: revisions are never deleted; disable
//!   the template to stop its use.

use crate::audit::{Auditor, Caller};
use interlock_core::Escaped;
use interlock_engine::Engine;
use interlock_templates::Template;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The subdirectory of the config directory holding template files.
pub const DIR: &str = "templates";

const SETTLE: Duration = Duration::from_millis(100);
const MAX_ROUNDS: usize = 10;

/// Keeps the store's templates in step with the files.
pub struct TemplateFiles {
    dir: PathBuf,
    engine: Engine,
    audit: Auditor,
    /// Content last acted on, per file.
    seen: HashMap<PathBuf, Vec<u8>>,
    /// Problems already reported (file and message), to report each once.
    reported: HashSet<(PathBuf, String)>,
}

fn is_template_file(p: &Path) -> bool {
    matches!(
        p.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    )
}

impl TemplateFiles {
    pub fn new(configs: &Path, engine: Engine, audit: Auditor) -> Self {
        Self {
            dir: configs.join(DIR),
            engine,
            audit,
            seen: HashMap::new(),
            reported: HashSet::new(),
        }
    }

    /// Syncs once, then every `interval` until `stop`.
    pub fn spawn(mut self, interval: Duration, stop: CancellationToken) {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => self.sync().await,
                }
            }
        });
    }

    /// Reads every template file and stores what changed.
    pub async fn sync(&mut self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return; // no templates directory: nothing to keep in step
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && is_template_file(p))
            .collect();
        files.sort();
        // Every file is parsed on every change of any, so a conflict is
        // seen whichever file changed; only changed files are applied.
        let mut parsed: BTreeMap<String, Vec<(PathBuf, Template, Vec<u8>)>> = BTreeMap::new();
        for path in files {
            let Some((bytes, result)) = settled(&path).await else {
                continue;
            };
            match result {
                Ok(t) => {
                    parsed
                        .entry(t.name().to_string())
                        .or_default()
                        .push((path.clone(), t, bytes))
                }
                Err(e) => {
                    self.seen.insert(path.clone(), bytes);
                    let msg = format!("{e}; the template's revision in force stays");
                    self.problem(&path, msg).await;
                }
            }
        }
        for (name, defs) in parsed {
            if defs.len() > 1 {
                let names: Vec<String> = defs.iter().map(|d| self.rel(&d.0)).collect();
                let msg = format!(
                    "template {name:?} is defined by {}: none of them is applied until only one \
                     defines it",
                    names.join(" and ")
                );
                for (path, _, _) in &defs {
                    self.seen.remove(path);
                    self.problem(path, msg.clone()).await;
                }
                continue;
            }
            let (path, t, bytes) = defs.into_iter().next().expect("one definition");
            if self.seen.get(&path) == Some(&bytes) {
                continue;
            }
            self.apply(&path, &t, bytes).await;
        }
    }

    /// Stores `t`, read from `path` as `bytes` (what counts as seen once
    /// stored: an edit made meanwhile is read at the next look).
    async fn apply(&mut self, path: &Path, t: &Template, bytes: Vec<u8>) {
        let by = format!("file:{}", self.rel(path));
        let before = self.engine.template(t.name(), None).await.ok();
        match self.engine.store_template(t, &by).await {
            Ok(a) => {
                self.seen.insert(path.to_path_buf(), bytes);
                if !a.created {
                    return;
                }
                if let Some(prev) = before.filter(|b| b.created_by != by) {
                    tracing::warn!(template = %a.name, revision = a.revision, file = %self.rel(path),
                        replaced_by = %Escaped(&prev.created_by), "template file replaces a revision stored otherwise");
                }
                tracing::info!(template = %a.name, revision = a.revision, file = %self.rel(path), "template file stored");
                let mut entry = Caller::config_reload(
                    &self.rel(path),
                    "ok".into(),
                    format!("template {} revision {}", a.name, a.revision),
                );
                entry.action = "template.apply".into();
                entry.target = a.name.clone();
                self.audit.record(entry).await;
            }
            // The store is unavailable: try again at the next tick.
            Err(e) => {
                tracing::warn!(file = %self.rel(path), error = %e, "template file not stored yet")
            }
        }
    }

    /// Reports a problem with a file, once per file and message.
    async fn problem(&mut self, path: &Path, msg: String) {
        if !self.reported.insert((path.to_path_buf(), msg.clone())) {
            return;
        }
        tracing::error!(file = %self.rel(path), error = %Escaped(&msg), "template file not usable");
        metrics::counter!("interlock_config_reloads_total", "file" => "templates", "outcome" => "invalid")
            .increment(1);
        let file = self.rel(path);
        self.audit
            .record(Caller::config_reload(&file, "invalid".into(), msg))
            .await;
    }

    /// How a file is named in logs and the audit: `templates/NAME`.
    fn rel(&self, path: &Path) -> String {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        format!("{DIR}/{name}")
    }
}

/// A file's content once stable, and what it parses to.
async fn settled(path: &Path) -> Option<(Vec<u8>, Result<Template, String>)> {
    let parse = |b: &[u8]| -> Result<Template, String> {
        let text = std::str::from_utf8(b).map_err(|e| format!("not UTF-8 text: {e}"))?;
        Template::parse(text).map_err(|e| e.to_string())
    };
    let mut bytes = std::fs::read(path).ok()?;
    let mut result = parse(&bytes);
    for _ in 0..MAX_ROUNDS {
        if result.is_ok() {
            break;
        }
        tokio::time::sleep(SETTLE).await;
        let again = std::fs::read(path).ok()?;
        if again == bytes {
            break;
        }
        bytes = again;
        result = parse(&bytes);
    }
    Some((bytes, result))
}
