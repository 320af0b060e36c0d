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
use serde::Deserialize;
use std::collections::HashMap;

/// One decision about a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EsEntry {
    pub stop: bool,
    pub reason: String,
}

/// The emergency-stop state in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EsState {
    entries: HashMap<String, EsEntry>,
    /// Set when the file is missing or malformed: everything is stopped.
    pub error: Option<String>,
    /// When this state was read.
    pub loaded_at: Micros,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "Status")]
    status: String,
    #[serde(rename = "Reason", default)]
    reason: String,
}

/// The wildcard entry's name.
pub const WILDCARD: &str = "*";

impl EsState {
    /// Everything is stopped because the file could not be used.
    pub fn fail_closed(error: String) -> Self {
        Self {
            entries: HashMap::new(),
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
            error: None,
            loaded_at: interlock_core::now_micros(),
        })
    }

    /// `Some(reason)` when `workflow` must not run.
    pub fn stopped(&self, workflow: &str) -> Option<String> {
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
