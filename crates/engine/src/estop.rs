//! The emergency stop as read from `es.json`.
//!
//! Format: a JSON array of `{"Name": <workflow name or "*">, "Status": "go" |
//! "stop", "Reason": <optional text>}`; the ancestor's form (objects
//! concatenated) is accepted too.
//!
//! Fail closed: a name with no entry (and no `"*": go`), a missing file and
//! a malformed file all mean STOP. `"*": stop` stops everything whatever the
//! other entries say; `"*": go` lets names without their own entry run.

use interlock_core::Micros;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// One decision about a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EsEntry {
    pub stop: bool,
    pub reason: String,
}

/// The emergency-stop state in force: this server's es.json, and the stops
/// shared by every server on the store. A name is stopped if either stops
/// it (the union): a shared "go" never overrides a stop in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EsState {
    entries: HashMap<String, EsEntry>,
    /// Shared stops in force (only those that stop), by name.
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
            let stop = match r.status.as_str() {
                "go" => false,
                "stop" => true,
                other => {
                    return Err(format!(
                        "entry {i} ({:?}): Status is {other:?}; it must be \"go\" or \"stop\"",
                        r.name
                    ));
                }
            };
            let e = EsEntry {
                stop,
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

    /// This state with the shared stops in force (entries that say stop).
    pub fn with_shared<'a>(&self, stops: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut next = self.clone();
        next.shared = stops
            .into_iter()
            .map(|(name, reason)| {
                (
                    name.to_string(),
                    EsEntry {
                        stop: true,
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

    /// `Some(reason)` when `workflow` must not run.
    pub fn stopped(&self, workflow: &str) -> Option<String> {
        if let Some(e) = self
            .shared
            .get(WILDCARD)
            .or_else(|| self.shared.get(workflow))
        {
            return Some(if e.reason.is_empty() {
                "a shared emergency stop is in force".to_string()
            } else {
                format!("{} (shared emergency stop)", e.reason)
            });
        }
        self.file_stopped(workflow)
    }

    fn file_stopped(&self, workflow: &str) -> Option<String> {
        if let Some(e) = &self.error {
            return Some(format!(
                "es.json is unusable, so everything is stopped: {e}"
            ));
        }
        let said = |name: &str, e: &EsEntry| {
            if e.reason.is_empty() {
                format!("es.json says stop for {name:?}")
            } else {
                format!("{} (es.json entry {name:?})", e.reason)
            }
        };
        if let Some(w) = self.entries.get(WILDCARD).filter(|w| w.stop) {
            return Some(said(WILDCARD, w));
        }
        match (self.entries.get(workflow), self.entries.get(WILDCARD)) {
            (Some(e), _) if e.stop => Some(said(workflow, e)),
            (Some(_), _) | (None, Some(_)) => None,
            (None, None) => Some(format!(
                "es.json has no entry for workflow {workflow:?}; add {{\"Name\": {workflow:?}, \"Status\": \"go\"}} to allow it"
            )),
        }
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

/// Sets `name` to stop or go in the es.json at `path`, keeping every other
/// entry as written on disk (not as in force: entries written by hand since
/// the last reload are kept). The new file is written to a temporary file,
/// synced and renamed into place, so a reader never sees it half-written.
/// Callers serialize concurrent updates.
pub async fn set_entry(
    path: &Path,
    name: &str,
    stop: bool,
    reason: &str,
) -> Result<(), EsFileError> {
    if name.is_empty() {
        return Err(EsFileError::EmptyName);
    }
    let (path, name, reason) = (path.to_path_buf(), name.to_string(), reason.to_string());
    tokio::task::spawn_blocking(move || set_entry_blocking(&path, &name, stop, &reason))
        .await
        .map_err(|e| EsFileError::Io {
            path: String::new(),
            error: e.to_string(),
        })?
}

fn set_entry_blocking(
    path: &PathBuf,
    name: &str,
    stop: bool,
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
    let status = if stop { "stop" } else { "go" };
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
        set_entry(&path, "b", true, "drill").await.unwrap();
        set_entry(&path, "a", true, "").await.unwrap();
        let s = EsState::parse(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(s.stopped("b").unwrap(), "drill (es.json entry \"b\")");
        assert!(s.stopped("a").is_some());
        assert!(matches!(
            set_entry(&path, "", true, "x").await,
            Err(EsFileError::EmptyName)
        ));
        std::fs::write(&path, "[{").unwrap();
        assert!(matches!(
            set_entry(&path, "a", false, "").await,
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
        let merged = s.with_shared([("a", "rack fire")]);
        assert_eq!(
            merged.stopped("a").unwrap(),
            "rack fire (shared emergency stop)"
        );
        assert_eq!(merged.stopped("b"), None);
        let all = s.with_shared([("*", "")]);
        assert!(all.stopped("b").is_some());
        let broken = EsState::fail_closed("x".into()).with_shared([]);
        assert!(broken.stopped("a").is_some(), "a broken file still stops");
    }

    #[test]
    fn malformed_files_are_errors() {
        for bad in [
            "",
            " \n",
            "[{\"Name\": \"a\", \"Status\": \"Go\"}]",
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
