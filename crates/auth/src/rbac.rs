//! Role-based authorization from `rbac.json`:
//!
//! ```json
//! {
//!   "roles": {
//!     "operator": [{"actions": ["read", "submit", "exec"], "workflows": ["SatelliteDiskErase"]}],
//!     "viewer":   [{"actions": ["read"], "workflows": ["*"]}]
//!   },
//!   "bindings": [
//!     {"identity": "token:ci-bot", "roles": ["operator"]},
//!     {"identity": "cert:*.sre.example.com", "roles": ["viewer"]}
//!   ]
//! }
//! ```
//!
//! A role is a list of grants; a grant gives actions on workflow names, each
//! exact or a glob (`*`, `?`, `[...]`). A binding gives roles to identities
//! by their written form (`token:<name>`, `cert:<name or SAN>`), also exact
//! or glob. `admin` includes every other action.
//!
//! Invariants: nothing is allowed unless a grant says so; a file naming an
//! unknown action or role, or holding a malformed glob, is refused as a
//! whole (the caller keeps the last good one). Requests that concern every
//! workflow (the e-stop entry `"*"`, the audit log) are checked against the
//! workflow name `*`, which only a grant on the glob `*` covers.

use crate::{ConfigError, Identity, parse_json};
use glob::Pattern;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;

/// Something a caller may be allowed to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    /// Submit (and Validate, Clone) a workflow.
    Submit,
    /// Exec a submitted workflow; retry or skip an interrupted job.
    Exec,
    /// Status, Watch, List, and the read-only Control calls.
    Read,
    /// Cancel a workflow.
    Cancel,
    /// Pause and resume a workflow.
    Pause,
    /// Set or clear an emergency stop.
    Estop,
    /// Create, disable and enable workflow templates (its patterns match
    /// template names).
    Template,
    /// Serve jobs as a worker (its patterns match job type names).
    Work,
    /// Everything above, and the audit log.
    Admin,
}

impl Action {
    pub const ALL: [Action; 9] = [
        Action::Submit,
        Action::Exec,
        Action::Read,
        Action::Cancel,
        Action::Pause,
        Action::Estop,
        Action::Template,
        Action::Work,
        Action::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Submit => "submit",
            Action::Exec => "exec",
            Action::Read => "read",
            Action::Cancel => "cancel",
            Action::Pause => "pause",
            Action::Estop => "estop",
            Action::Template => "template",
            Action::Work => "work",
            Action::Admin => "admin",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Action {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Action::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| {
                let all: Vec<_> = Action::ALL.iter().map(|a| a.as_str()).collect();
                format!("unknown action {s:?}; expected one of {}", all.join(", "))
            })
    }
}

impl<'de> Deserialize<'de> for Action {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    roles: BTreeMap<String, Vec<GrantFile>>,
    #[serde(default)]
    bindings: Vec<BindingFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantFile {
    actions: Vec<Action>,
    workflows: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BindingFile {
    identity: String,
    roles: Vec<String>,
}

#[derive(Debug, Clone)]
struct Grant {
    actions: Vec<Action>,
    workflows: Vec<Pattern>,
}

#[derive(Debug, Clone)]
struct Binding {
    identity: Pattern,
    roles: Vec<String>,
}

/// A loaded `rbac.json`.
#[derive(Debug, Clone)]
pub struct Rbac {
    roles: BTreeMap<String, Vec<Grant>>,
    bindings: Vec<Binding>,
}

/// A refused request: who, what was missing, and what they do hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{identity} lacks the grant \"{action}\" on {scope} (its roles: {roles}); \
     bind it to a role granting that in rbac.json"
)]
pub struct Denied {
    pub identity: String,
    pub action: Action,
    /// `workflow "X"`, or `any workflow` for calls not about one workflow.
    pub scope: String,
    /// The caller's roles, comma-separated, or `none`.
    pub roles: String,
}

fn pattern(p: &str, at: &str) -> Result<Pattern, ConfigError> {
    if p.is_empty() {
        return Err(ConfigError(format!("rbac.json: {at}: empty pattern")));
    }
    Pattern::new(p).map_err(|e| ConfigError(format!("rbac.json: {at}: glob {p:?}: {e}")))
}

impl Rbac {
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let file: File = parse_json(text, "rbac.json")?;
        let mut roles = BTreeMap::new();
        for (name, grants) in file.roles {
            let mut parsed = Vec::new();
            for (i, g) in grants.into_iter().enumerate() {
                let at = format!("roles.{name}[{i}]");
                if g.actions.is_empty() || g.workflows.is_empty() {
                    return Err(ConfigError(format!(
                        "rbac.json: {at}: a grant needs at least one action and one workflow pattern"
                    )));
                }
                let workflows = g
                    .workflows
                    .iter()
                    .map(|w| pattern(w, &at))
                    .collect::<Result<_, _>>()?;
                parsed.push(Grant {
                    actions: g.actions,
                    workflows,
                });
            }
            roles.insert(name, parsed);
        }
        let mut bindings = Vec::new();
        for (i, b) in file.bindings.into_iter().enumerate() {
            let at = format!("bindings[{i}]");
            if let Some(r) = b.roles.iter().find(|r| !roles.contains_key(*r)) {
                let known: Vec<_> = roles.keys().map(String::as_str).collect();
                return Err(ConfigError(format!(
                    "rbac.json: {at}: unknown role {r:?}; roles defined: {}",
                    known.join(", ")
                )));
            }
            if !b.identity.contains(':') {
                return Err(ConfigError(format!(
                    "rbac.json: {at}: identity {:?} must say its kind, e.g. \"token:{0}\" or \"cert:{0}\"",
                    b.identity
                )));
            }
            bindings.push(Binding {
                identity: pattern(&b.identity, &at)?,
                roles: b.roles,
            });
        }
        Ok(Self { roles, bindings })
    }

    /// The roles bound to `who`, sorted and without repeats.
    pub fn roles_of(&self, who: &Identity) -> Vec<&str> {
        let forms: Vec<String> = who.written_forms().collect();
        let mut out: Vec<&str> = self
            .bindings
            .iter()
            .filter(|b| forms.iter().any(|f| b.identity.matches(f)))
            .flat_map(|b| b.roles.iter().map(String::as_str))
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    fn grants_of(&self, roles: &[&str]) -> Vec<&Grant> {
        roles
            .iter()
            .filter_map(|r| self.roles.get(*r))
            .flatten()
            .collect()
    }

    fn denied(&self, who: &Identity, action: Action, scope: String, roles: &[&str]) -> Denied {
        Denied {
            identity: who.to_string(),
            action,
            scope,
            roles: if roles.is_empty() {
                "none".into()
            } else {
                roles.join(", ")
            },
        }
    }

    /// Whether `who` may do `action` on the workflow named `workflow`.
    pub fn check(&self, who: &Identity, action: Action, workflow: &str) -> Result<(), Denied> {
        self.check_scoped(who, action, workflow, || format!("workflow {workflow:?}"))
    }

    /// Whether `who` may serve jobs of type `job_type` as a worker: the
    /// `work` grant, whose patterns match job type names.
    pub fn check_work(&self, who: &Identity, job_type: &str) -> Result<(), Denied> {
        self.check_scoped(who, Action::Work, job_type, || {
            format!("job type {job_type:?}")
        })
    }

    fn check_scoped(
        &self,
        who: &Identity,
        action: Action,
        name: &str,
        scope: impl FnOnce() -> String,
    ) -> Result<(), Denied> {
        let roles = self.roles_of(who);
        let allowed = self.grants_of(&roles).into_iter().any(|g| {
            g.actions
                .iter()
                .any(|a| *a == action || *a == Action::Admin)
                && g.workflows.iter().any(|p| p.matches(name))
        });
        if allowed {
            Ok(())
        } else {
            Err(self.denied(who, action, scope(), &roles))
        }
    }

    /// Whether `who` may do `action` on at least one workflow: the check for
    /// calls not about a particular workflow (the job catalog, bucket levels).
    pub fn check_any(&self, who: &Identity, action: Action) -> Result<(), Denied> {
        let roles = self.roles_of(who);
        if self.grants_of(&roles).into_iter().any(|g| {
            g.actions
                .iter()
                .any(|a| *a == action || *a == Action::Admin)
        }) {
            Ok(())
        } else {
            Err(self.denied(who, action, "any workflow".into(), &roles))
        }
    }
}

#[cfg(test)]
mod tests;
