//! A parsed, validated `policies.json`.
//!
//! Format: a JSON array of `{"Name": <workflow>, "Policies": [{"Name":
//! <policy>, "Settings": {...}}]}`. The ancestor's form — the same objects
//! concatenated without an array — is accepted too. Either the whole file is
//! valid or nothing of it is used.

use crate::{Check, Ctx, KINDS};
use interlock_core::{Catalog, Violation, WorkReq, now_micros};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;

/// Why a policy file was rejected, located by file, entry and field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {message}")]
pub struct ConfigError {
    pub file: String,
    pub message: String,
}

/// The outcome of checking one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// The workflow name has no entry: refuse.
    NoEntry,
    Violations(Vec<Violation>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    #[serde(rename = "Name")]
    name: String,
    /// Required: an empty list must be written explicitly.
    #[serde(rename = "Policies")]
    policies: Vec<PolicyEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyEntry {
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "Settings", default = "empty_object")]
    settings: serde_json::Value,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(Default::default())
}

/// One workflow's policies as written in the file: (policy, settings as
/// compact JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    pub workflow: String,
    pub policies: Vec<(String, String)>,
}

/// Policies by workflow name, with the version (hash) of the file they came from.
pub struct PolicySet {
    version: String,
    /// The file it was read from, named when a workflow has no entry.
    file: String,
    workflows: HashMap<String, Vec<Box<dyn Check>>>,
    /// The rules as written, per workflow, for operators to read back.
    rules: Vec<Rules>,
}

impl std::fmt::Debug for PolicySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicySet")
            .field("version", &self.version)
            .field("workflows", &self.workflow_names())
            .finish()
    }
}

/// The version of a policy file's content: its SHA-256, shortened.
pub fn version_of(text: &str) -> String {
    hex::encode(&Sha256::digest(text.as_bytes())[..8])
}

impl PolicySet {
    /// Parses and validates `text` (from `file`, named in errors).
    pub fn parse(text: &str, file: &str, jobs: &dyn Catalog) -> Result<Self, ConfigError> {
        let err = |message: String| ConfigError {
            file: file.to_string(),
            message,
        };
        let mut workflows = HashMap::new();
        let mut rules = Vec::new();
        for (i, value) in interlock_core::parse_records::<serde_json::Value>(text)
            .map_err(|e| err(e.to_string()))?
            .into_iter()
            .enumerate()
        {
            let entry: Entry =
                serde_json::from_value(value).map_err(|e| err(format!("entry {i}: {e}")))?;
            let at = format!("entry {i} (workflow {:?})", entry.name);
            if entry.name.is_empty() {
                return Err(err(format!("{at}: Name is empty")));
            }
            let mut checks = Vec::with_capacity(entry.policies.len());
            let mut written = Vec::with_capacity(entry.policies.len());
            for (j, p) in entry.policies.into_iter().enumerate() {
                let at = format!("{at}, policy {j} ({:?})", p.name);
                let kind = KINDS.iter().find(|k| k.name() == p.name).ok_or_else(|| {
                    let known: Vec<_> = KINDS.iter().map(|k| k.name()).collect();
                    err(format!(
                        "{at}: unknown policy{}; known policies: {}",
                        interlock_core::suggestion(&p.name, known.iter().copied()),
                        known.join(", ")
                    ))
                })?;
                written.push((p.name.clone(), p.settings.to_string()));
                let check = kind
                    .build(p.settings, jobs)
                    .map_err(|e| err(format!("{at}: Settings: {e}")))?;
                checks.push(check);
            }
            rules.push(Rules {
                workflow: entry.name.clone(),
                policies: written,
            });
            if workflows.insert(entry.name.clone(), checks).is_some() {
                return Err(err(format!(
                    "{at}: duplicate workflow name; merge its policies into one entry"
                )));
            }
        }
        rules.sort_by(|a, b| a.workflow.cmp(&b.workflow));
        Ok(Self {
            version: version_of(text),
            file: file.to_string(),
            workflows,
            rules,
        })
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    /// Every workflow's rules as written, sorted by workflow name.
    pub fn rules(&self) -> &[Rules] {
        &self.rules
    }

    /// Configured workflow names, sorted.
    pub fn workflow_names(&self) -> Vec<&str> {
        let mut v: Vec<_> = self.workflows.keys().map(String::as_str).collect();
        v.sort();
        v
    }

    /// [`PolicySet::admit_at`] now, on the system clock.
    pub fn admit(&self, req: &WorkReq) -> Result<(), Vec<Violation>> {
        self.admit_at(req, &Ctx { now: now_micros() })
    }

    /// Admission by this set: every violation of `req`. A workflow name
    /// with no entry is refused (an entry with no policies admits
    /// everything): nothing runs that the file does not mention.
    pub fn admit_at(&self, req: &WorkReq, ctx: &Ctx) -> Result<(), Vec<Violation>> {
        match self.check_at(req, ctx) {
            Verdict::Allowed => Ok(()),
            Verdict::Violations(v) => Err(v),
            Verdict::NoEntry => Err(vec![Violation::new(
                "policies",
                format!(
                    "no policy configured for workflow {:?}; add an entry for it to {} \
                     (an entry with \"Policies\": [] allows it without rules)",
                    req.name, self.file
                ),
            )]),
        }
    }

    /// [`PolicySet::check_at`] now, on the system clock.
    pub fn check(&self, req: &WorkReq) -> Verdict {
        self.check_at(req, &Ctx { now: now_micros() })
    }

    /// Why a running workflow of `req`'s name must pause now, if a policy
    /// says so (a change window that closed, with pause-at-end).
    pub fn pauses(&self, req: &WorkReq, ctx: &Ctx) -> Option<String> {
        self.workflows
            .get(&req.name)?
            .iter()
            .find_map(|c| c.pauses(req, ctx))
    }

    /// The approvals `req` needs before Exec: every rule of its name's
    /// requireApproval policies that applies (all must be met).
    pub fn approvals(&self, req: &WorkReq) -> Vec<interlock_core::ApprovalRule> {
        self.workflows
            .get(&req.name)
            .map(|cs| cs.iter().filter_map(|c| c.approval(req)).collect())
            .unwrap_or_default()
    }

    /// Checks `req` against every policy of its workflow name.
    pub fn check_at(&self, req: &WorkReq, ctx: &Ctx) -> Verdict {
        let Some(checks) = self.workflows.get(&req.name) else {
            return Verdict::NoEntry;
        };
        let mut out = Vec::new();
        for c in checks {
            c.check(req, ctx, &mut out);
        }
        if out.is_empty() {
            Verdict::Allowed
        } else {
            Verdict::Violations(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;

    fn parse(text: &str) -> Result<PolicySet, ConfigError> {
        PolicySet::parse(text, "policies.json", &catalog())
    }

    #[test]
    fn the_shipped_file_is_valid_and_passes_the_sample_request() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../configs/policies.json"
        ))
        .unwrap();
        let set = parse(&text).unwrap();
        let mut req = request(&[
            &[validate("aab"), bucket()],
            &[erase("aab00", "aab"), erase("aab01", "aab")],
            &[sleep()],
            &[erase("aab02", "aab")],
        ]);
        req.name = "SatelliteDiskErase".into();
        assert_eq!(set.check(&req), Verdict::Allowed);
        // Erasing a machine of another site in the same workflow is refused.
        req.blocks[3].jobs[0] = erase("aae00", "aae");
        assert!(matches!(set.check(&req), Verdict::Violations(v) if v.len() == 1));
    }

    #[test]
    fn ancestor_concatenated_form_loads() {
        let set = parse(r#"{"Name": "a", "Policies": []} {"Name": "b", "Policies": []}"#).unwrap();
        assert_eq!(set.workflow_names(), vec!["a", "b"]);
    }

    #[test]
    fn no_entry_and_explicitly_empty_entry() {
        let set = parse(r#"[{"Name": "open", "Policies": []}]"#).unwrap();
        let mut req = request(&[&[sleep()]]);
        req.name = "open".into();
        assert_eq!(set.check(&req), Verdict::Allowed);
        req.name = "other".into();
        assert_eq!(set.check(&req), Verdict::NoEntry);
        let refused = set.admit(&req).unwrap_err();
        assert!(
            refused[0]
                .message
                .contains("no policy configured for workflow \"other\"")
                && refused[0].message.contains("policies.json"),
            "{refused:?}"
        );
    }

    #[test]
    fn several_policies_where_only_one_fails_give_exactly_that_violation() {
        let set = parse(
            r#"[{"Name": "w", "Policies": [
                {"Name": "restrictJobTypes", "Settings": {"AllowedJobs": ["sleep", "diskErase"]}},
                {"Name": "sameArgs", "Settings": {"Jobs": {"diskErase": ["site"]}}},
                {"Name": "startOrEnd", "Settings": {"JobName": "sleep", "Start": true}}
            ]}]"#,
        )
        .unwrap();
        let req = request(&[&[sleep()], &[erase("a", "aab"), erase("b", "aae")]]);
        let Verdict::Violations(v) = set.check(&req) else {
            panic!()
        };
        assert_eq!(v.len(), 1);
        assert_eq!(
            (v[0].policy.as_str(), v[0].block, v[0].job),
            ("sameArgs", Some(1), Some(1))
        );
    }

    #[test]
    fn config_errors_name_file_entry_and_field() {
        for (text, want) in [
            (
                "[{\"Name\": \"w\", \"Policies\": [",
                "policies.json: line 1",
            ),
            (r#"[{"Name": "w"}]"#, "entry 0: missing field `Policies`"),
            (
                r#"[{"Name": "w", "Policies": [{"Name": "nope"}]}]"#,
                "entry 0 (workflow \"w\"), policy 0 (\"nope\"): unknown policy",
            ),
            (
                r#"[{"Name": "w", "Policies": [{"Name": "restrictJobType"}]}]"#,
                "unknown policy (did you mean \"restrictJobTypes\"?)",
            ),
            (
                r#"[{"Name": "w", "Policies": [{"Name": "restrictJobTypes", "Settings": {"AllowedJobs": ["diskerase"]}}]}]"#,
                "\"diskerase\", which is not registered (did you mean \"diskErase\"?)",
            ),
            (
                r#"[{"Name": "w", "Policies": []}, {"Name": "v", "Policies": [{"Name": "sameArgs", "Settings": {"Jobs": {"diskErase": ["Site"]}}}]}]"#,
                "entry 1 (workflow \"v\"), policy 0 (\"sameArgs\"): Settings: Jobs.diskErase names argument \"Site\"",
            ),
            (
                r#"[{"Name": "w", "Policies": []}, {"Name": "w", "Policies": []}]"#,
                "entry 1 (workflow \"w\"): duplicate",
            ),
            (
                r#"[{"Name": "w", "Policies": [{"Name": "startOrEnd", "Settings": {"JobName": "sleep"}}]}]"#,
                "exactly one of Start and End",
            ),
            (
                r#"[{"Name": "w", "Policies": [], "Extra": 1}]"#,
                "unknown field `Extra`",
            ),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(want), "{text}\n  got: {e}\n  want: {want}");
        }
    }

    #[test]
    fn version_is_a_content_hash() {
        let a = parse(r#"[{"Name": "w", "Policies": []}]"#).unwrap();
        let b = parse(r#"[{"Name": "w", "Policies": []}]"#).unwrap();
        let c = parse(r#"[{"Name": "v", "Policies": []}]"#).unwrap();
        assert_eq!(a.version(), b.version());
        assert_ne!(a.version(), c.version());
        assert_eq!(a.version().len(), 16);
    }
}
