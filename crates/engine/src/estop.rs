//! The emergency stop as read from `es.json`.
//!
//! Format: a JSON array of `{"Name": <workflow name or "*">, "Status": "go" |
//! "drain" | "stop", "Reason": <optional text>}`; the ancestor's form
//! (objects concatenated) is accepted too.
//!
//! `drain` refuses new work and starts no new job but lets jobs in flight
//! finish; `stop` also cancels jobs in flight.
//!
//! Fail closed: a name with no entry (and no `"*"` entry), a missing file
//! and a malformed file all mean STOP. A `"*"` entry that halts (drain or
//! stop) applies to every name whatever its own entry says; `"*": go` lets
//! names without their own entry run. Where several entries apply, the
//! most severe wins (stop over drain over go).

use interlock_core::{EsMode, Micros};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// One decision about a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EsEntry {
    pub mode: EsMode,
    pub reason: String,
}

/// Why a workflow name must not start new work: drained or stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Halt {
    /// `Drain` or `Stop`, never `Go`.
    pub mode: EsMode,
    /// Where the halt comes from and the operator's reason.
    pub reason: String,
}

impl std::fmt::Display for Halt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.mode {
            EsMode::Drain => write!(
                f,
                "draining (no new work, jobs in flight finish): {}",
                self.reason
            ),
            _ => f.write_str(&self.reason),
        }
    }
}

/// The emergency-stop state in force: this server's es.json, and the stops
/// shared by every server on the store. A name is stopped if either stops
/// it (the union): a shared "go" never overrides a stop in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EsState {
    entries: HashMap<String, EsEntry>,
    /// Shared entries in force (only those that halt), by name.
    shared: HashMap<String, EsEntry>,
    /// Set when the file is missing or malformed: everything is stopped.
    pub error: Option<String>,
    /// When this state was read.
    pub loaded_at: Micros,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "Status")]
    status: String,
    #[serde(rename = "Reason", default, skip_serializing_if = "String::is_empty")]
    reason: String,
}

/// The wildcard entry's name.
pub const WILDCARD: &str = "*";

impl EsState {
    /// Everything is stopped because the file could not be used.
    pub fn fail_closed(error: String) -> Self {
        Self {
            entries: HashMap::new(),
            shared: HashMap::new(),
            error: Some(error),
            loaded_at: interlock_core::now_micros(),
        }
    }

    /// Parses es.json. Errors name the entry and what is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let raw: Vec<RawEntry> = interlock_core::parse_records(text).map_err(|e| e.to_string())?;
        let mut entries = HashMap::new();
        for (i, r) in raw.into_iter().enumerate() {
            if r.name.is_empty() {
                return Err(format!("entry {i}: Name is empty"));
            }
            let Some(mode) = EsMode::parse(&r.status) else {
                return Err(format!(
                    "entry {i} ({:?}): Status is {:?}; it must be \"go\", \"drain\" or \"stop\"",
                    r.name, r.status
                ));
            };
            let e = EsEntry {
                mode,
                reason: r.reason,
            };
            if entries.insert(r.name.clone(), e).is_some() {
                return Err(format!("entry {i} ({:?}): duplicate Name", r.name));
            }
        }
        Ok(Self {
            entries,
            shared: HashMap::new(),
            error: None,
            loaded_at: interlock_core::now_micros(),
        })
    }

    /// This state with the shared entries in force (those that say go are
    /// left out: a shared go never lifts a halt in the file).
    pub fn with_shared<'a>(
        &self,
        stops: impl IntoIterator<Item = (&'a str, EsMode, &'a str)>,
    ) -> Self {
        let mut next = self.clone();
        next.shared = stops
            .into_iter()
            .filter(|(_, mode, _)| mode.halts())
            .map(|(name, mode, reason)| {
                (
                    name.to_string(),
                    EsEntry {
                        mode,
                        reason: reason.to_string(),
                    },
                )
            })
            .collect();
        next
    }

    /// Shared stops in force, sorted by name.
    pub fn shared(&self) -> Vec<(&str, &EsEntry)> {
        let mut v: Vec<_> = self.shared.iter().map(|(k, v)| (k.as_str(), v)).collect();
        v.sort_by_key(|(k, _)| *k);
        v
    }

    /// `Some(why)` when `workflow` must not start new work (drained or
    /// stopped), in words.
    pub fn stopped(&self, workflow: &str) -> Option<String> {
        self.halted(workflow).map(|h| h.to_string())
    }

    /// The halt in force for `workflow`, if any: the more severe of the
    /// shared entries and the file (the shared one on a tie).
    pub fn halted(&self, workflow: &str) -> Option<Halt> {
        let shared = [WILDCARD, workflow]
            .iter()
            .filter_map(|n| self.shared.get(*n))
            .max_by_key(|e| e.mode)
            .map(|e| Halt {
                mode: e.mode,
                reason: match (e.mode, e.reason.is_empty()) {
                    (EsMode::Stop, true) => "a shared emergency stop is in force".to_string(),
                    (EsMode::Stop, false) => format!("{} (shared emergency stop)", e.reason),
                    (_, true) => "a shared drain is in force".to_string(),
                    (_, false) => format!("{} (shared drain)", e.reason),
                },
            });
        match (shared, self.file_halted(workflow)) {
            (Some(s), Some(f)) if f.mode > s.mode => Some(f),
            (Some(s), _) => Some(s),
            (None, f) => f,
        }
    }

    fn file_halted(&self, workflow: &str) -> Option<Halt> {
        if let Some(e) = &self.error {
            return Some(Halt {
                mode: EsMode::Stop,
                reason: format!("es.json is unusable, so everything is stopped: {e}"),
            });
        }
        let said = |name: &str, e: &EsEntry| Halt {
            mode: e.mode,
            reason: if e.reason.is_empty() {
                format!("es.json says {} for {name:?}", e.mode)
            } else {
                format!("{} (es.json entry {name:?})", e.reason)
            },
        };
        let wildcard = self.entries.get(WILDCARD);
        let own = self.entries.get(workflow);
        if own.is_none() && wildcard.is_none() {
            return Some(Halt {
                mode: EsMode::Stop,
                reason: format!(
                    "es.json has no entry for workflow {workflow:?}; add {{\"Name\": {workflow:?}, \"Status\": \"go\"}} to allow it"
                ),
            });
        }
        // The more severe wins; on a tie the last, the wildcard: its halt is
        // the broader one to lift.
        [(workflow, own), (WILDCARD, wildcard)]
            .into_iter()
            .filter_map(|(n, e)| e.filter(|e| e.mode.halts()).map(|e| (n, e)))
            .max_by_key(|(_, e)| e.mode)
            .map(|(n, e)| said(n, e))
    }

    /// Entries by name, sorted.
    pub fn entries(&self) -> Vec<(&str, &EsEntry)> {
        let mut v: Vec<_> = self.entries.iter().map(|(k, v)| (k.as_str(), v)).collect();
        v.sort_by_key(|(k, _)| *k);
        v
    }
}

/// Why es.json could not be changed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EsFileError {
    /// No name given.
    #[error("name is empty: give a workflow name, or \"*\" for every workflow")]
    EmptyName,
    /// The file on disk is malformed, so everything is stopped already; a
    /// program must not guess what an operator meant to write.
    #[error(
        "{path} is malformed ({error}), so everything is already stopped; fix the file by hand"
    )]
    Malformed { path: String, error: String },
    /// Reading or writing failed.
    #[error("cannot update {path}: {error}")]
    Io { path: String, error: String },
}

/// Sets `name` to `mode` in the es.json at `path`, keeping every other
/// entry as written on disk (not as in force: entries written by hand since
/// the last reload are kept). The new file is written to a temporary file,
/// synced and renamed into place, so a reader never sees it half-written.
/// Callers serialize concurrent updates.
pub async fn set_entry(
    path: &Path,
    name: &str,
    mode: EsMode,
    reason: &str,
) -> Result<(), EsFileError> {
    if name.is_empty() {
        return Err(EsFileError::EmptyName);
    }
    let (path, name, reason) = (path.to_path_buf(), name.to_string(), reason.to_string());
    tokio::task::spawn_blocking(move || set_entry_blocking(&path, &name, mode, &reason))
        .await
        .map_err(|e| EsFileError::Io {
            path: String::new(),
            error: e.to_string(),
        })?
}

fn set_entry_blocking(
    path: &PathBuf,
    name: &str,
    mode: EsMode,
    reason: &str,
) -> Result<(), EsFileError> {
    let shown = path.display().to_string();
    let io = |e: std::io::Error| EsFileError::Io {
        path: shown.clone(),
        error: e.to_string(),
    };
    let mut entries: Vec<RawEntry> = match std::fs::read_to_string(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(io(e)),
        Ok(text) => {
            EsState::parse(&text).map_err(|error| EsFileError::Malformed {
                path: shown.clone(),
                error,
            })?;
            interlock_core::parse_records(&text).map_err(|e| EsFileError::Malformed {
                path: shown.clone(),
                error: e.to_string(),
            })?
        }
    };
    let status = mode.as_str();
    match entries.iter_mut().find(|e| e.name == name) {
        Some(e) => {
            e.status = status.into();
            e.reason = reason.into();
        }
        None => entries.push(RawEntry {
            name: name.into(),
            status: status.into(),
            reason: reason.into(),
        }),
    }
    let mut bytes = serde_json::to_vec_pretty(&entries).expect("plain data serializes");
    bytes.push(b'\n');
    write_atomically(path, &bytes).map_err(io)
}

/// Writes `bytes` to `path` atomically: temp file in the same directory,
/// fsync, rename, fsync of the directory.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.{}.tmp", uuid::Uuid::now_v7()));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions() {
        let s = EsState::parse(
            r#"[{"Name": "a", "Status": "go"}, {"Name": "b", "Status": "stop", "Reason": "incident 42"}]"#,
        )
        .unwrap();
        assert_eq!(s.stopped("a"), None);
        assert_eq!(s.stopped("b").unwrap(), "incident 42 (es.json entry \"b\")");
        assert!(
            s.stopped("c")
                .unwrap()
                .contains("no entry for workflow \"c\"")
        );

        let s = EsState::parse(r#"{"Name": "*", "Status": "go"}{"Name": "b", "Status": "stop"}"#)
            .unwrap();
        assert_eq!(
            s.stopped("c"),
            None,
            "wildcard go covers names without entries"
        );
        assert!(
            s.stopped("b").is_some(),
            "a specific stop beats wildcard go"
        );

        let s =
            EsState::parse(r#"[{"Name": "*", "Status": "stop"}, {"Name": "a", "Status": "go"}]"#)
                .unwrap();
        assert!(s.stopped("a").is_some(), "wildcard stop beats everything");
    }

    #[tokio::test]
    async fn set_entry_keeps_other_entries_and_refuses_a_malformed_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("es.json");
        std::fs::write(&path, r#"{"Name": "a", "Status": "go"}"#).unwrap();
        set_entry(&path, "b", EsMode::Stop, "drill").await.unwrap();
        set_entry(&path, "a", EsMode::Stop, "").await.unwrap();
        set_entry(&path, "c", EsMode::Drain, "finish the erase")
            .await
            .unwrap();
        let s = EsState::parse(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(s.stopped("b").unwrap(), "drill (es.json entry \"b\")");
        assert!(s.stopped("a").is_some());
        assert_eq!(s.halted("c").unwrap().mode, EsMode::Drain);
        assert!(matches!(
            set_entry(&path, "", EsMode::Stop, "x").await,
            Err(EsFileError::EmptyName)
        ));
        std::fs::write(&path, "[{").unwrap();
        assert!(matches!(
            set_entry(&path, "a", EsMode::Go, "").await,
            Err(EsFileError::Malformed { .. })
        ));
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "[{",
            "left as it was"
        );
    }

    #[test]
    fn shared_stops_add_to_the_file() {
        let s = EsState::parse(r#"[{"Name": "*", "Status": "go"}]"#).unwrap();
        assert_eq!(s.stopped("a"), None);
        let merged = s.with_shared([("a", EsMode::Stop, "rack fire"), ("b", EsMode::Go, "")]);
        assert_eq!(
            merged.stopped("a").unwrap(),
            "rack fire (shared emergency stop)"
        );
        assert_eq!(merged.stopped("b"), None);
        let all = s.with_shared([("*", EsMode::Stop, "")]);
        assert!(all.stopped("b").is_some());
        let broken = EsState::fail_closed("x".into()).with_shared([]);
        assert!(broken.stopped("a").is_some(), "a broken file still stops");
    }

    fn mode(s: &EsState, name: &str) -> EsMode {
        s.halted(name).map_or(EsMode::Go, |h| h.mode)
    }

    #[test]
    fn drain_sits_between_go_and_stop() {
        let s = EsState::parse(
            r#"[{"Name": "*", "Status": "go"}, {"Name": "a", "Status": "drain", "Reason": "rack work"}]"#,
        )
        .unwrap();
        assert_eq!(mode(&s, "a"), EsMode::Drain);
        assert_eq!(mode(&s, "b"), EsMode::Go);
        let h = s.halted("a").unwrap();
        assert_eq!(h.reason, "rack work (es.json entry \"a\")");
        assert!(
            s.stopped("a").unwrap().starts_with("draining"),
            "the refusal says it is a drain: {:?}",
            s.stopped("a")
        );

        // A halting wildcard applies to every name, whatever its own entry.
        let s = EsState::parse(
            r#"[{"Name": "*", "Status": "drain"}, {"Name": "a", "Status": "go"}, {"Name": "b", "Status": "stop"}]"#,
        )
        .unwrap();
        assert_eq!(mode(&s, "a"), EsMode::Drain);
        assert_eq!(mode(&s, "b"), EsMode::Stop, "the more severe wins");
        assert_eq!(mode(&s, "c"), EsMode::Drain);

        // The union with shared entries takes the more severe of the two.
        let file =
            EsState::parse(r#"[{"Name": "*", "Status": "go"}, {"Name": "b", "Status": "stop"}]"#)
                .unwrap();
        let merged = file.with_shared([("*", EsMode::Drain, "maintenance")]);
        assert_eq!(mode(&merged, "a"), EsMode::Drain);
        assert_eq!(
            merged.halted("a").unwrap().reason,
            "maintenance (shared drain)"
        );
        assert_eq!(
            mode(&merged, "b"),
            EsMode::Stop,
            "a shared drain never weakens a stop"
        );
        let merged = file.with_shared([("a", EsMode::Stop, ""), ("*", EsMode::Drain, "")]);
        assert_eq!(mode(&merged, "a"), EsMode::Stop);
        assert_eq!(mode(&merged, "c"), EsMode::Drain);
        let merged = EsState::parse(r#"[{"Name": "*", "Status": "drain"}]"#)
            .unwrap()
            .with_shared([("a", EsMode::Go, "")]);
        assert_eq!(
            mode(&merged, "a"),
            EsMode::Drain,
            "a shared go lifts nothing"
        );
    }

    #[test]
    fn malformed_files_are_errors() {
        for bad in [
            "",
            " \n",
            "[{\"Name\": \"a\", \"Status\": \"Go\"}]",
            "[{\"Name\": \"a\", \"Status\": \"DRAIN\"}]",
            "[{\"Name\": \"a\", \"Status\": \"pause\"}]",
            "[{\"Name\": \"a\"}]",
            "[{\"Name\": \"a\", \"Status\": \"go\"}, {\"Name\": \"a\", \"Status\": \"stop\"}]",
            "[{\"Name\": \"a\", \"Status\": \"go\"",
        ] {
            // An empty file is malformed (a write in progress), not "no
            // entries": the reloader must not take it as a configuration.
            assert!(EsState::parse(bad).is_err(), "{bad:?}");
        }
        assert!(
            EsState::fail_closed("x".into())
                .stopped("a")
                .unwrap()
                .contains("unusable")
        );
    }
}
