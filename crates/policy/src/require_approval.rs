//! `requireApproval {Approvals?, Role, ExpiresAfter?, When?}`: a workflow
//! of this name needs `Approvals` (default 1) approvals before Exec can
//! start it, each from a distinct identity holding `Role`, none of them the
//! submitter; an approval counts for `ExpiresAfter` (default "24h") and
//! for the exact request content it was given for.
//!
//! `When` narrows it to matching requests: `{"MinJobs": {"diskErase": 5}}`
//! (at least that many jobs of a type) and/or `{"Args": {"type":
//! "satellite"}}` (some job has that argument value); either matching is
//! enough. Without `When`, every request of the name needs approval.
//!
//! Submit is not refused: the workflow waits, AwaitingApproval, until
//! approved (or rejected).

use crate::{Ctx, Policy, known_job};
use interlock_core::{ApprovalRule, Catalog, Violation, WorkReq};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(rename = "Approvals", default = "one")]
    pub approvals: u32,
    #[serde(rename = "Role")]
    pub role: String,
    #[serde(rename = "ExpiresAfter", default = "a_day", with = "humantime_serde")]
    pub expires_after: Duration,
    #[serde(rename = "When", default)]
    pub when: Option<When>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct When {
    #[serde(rename = "MinJobs", default)]
    pub min_jobs: BTreeMap<String, u32>,
    #[serde(rename = "Args", default)]
    pub args: BTreeMap<String, String>,
}

fn one() -> u32 {
    1
}

fn a_day() -> Duration {
    Duration::from_secs(24 * 3600)
}

pub struct RequireApproval {
    rule: ApprovalRule,
    when: Option<When>,
}

impl Policy for RequireApproval {
    const NAME: &'static str = "requireApproval";
    type Settings = Settings;

    fn new(s: Settings, jobs: &dyn Catalog) -> Result<Self, String> {
        if s.approvals == 0 {
            return Err("Approvals must be at least 1; remove the policy to need none".into());
        }
        if s.role.is_empty() {
            return Err("Role is empty: name the role approvers must hold (rbac.json)".into());
        }
        if s.expires_after.is_zero() {
            return Err("ExpiresAfter must be longer than zero".into());
        }
        if let Some(w) = &s.when {
            if w.min_jobs.is_empty() && w.args.is_empty() {
                return Err("When is empty; give MinJobs, Args or both, or leave When out".into());
            }
            for job in w.min_jobs.keys() {
                known_job(jobs, job, "When.MinJobs")?;
            }
            for arg in w.args.keys() {
                if !jobs
                    .schemas()
                    .iter()
                    .any(|sc| sc.args.iter().any(|a| a.name == arg))
                {
                    return Err(format!(
                        "When.Args names argument {arg:?}, which no job type takes"
                    ));
                }
            }
        }
        Ok(Self {
            rule: ApprovalRule {
                approvals: s.approvals,
                role: s.role,
                expires_after: s.expires_after,
            },
            when: s.when,
        })
    }

    /// Approval never refuses a request; it holds it before Exec.
    fn check(&self, _req: &WorkReq, _ctx: &Ctx, _out: &mut Vec<Violation>) {}

    fn approval(&self, req: &WorkReq) -> Option<ApprovalRule> {
        let Some(w) = &self.when else {
            return Some(self.rule.clone());
        };
        let jobs = || req.blocks.iter().flat_map(|b| &b.jobs);
        let many = w
            .min_jobs
            .iter()
            .any(|(job, k)| jobs().filter(|j| &j.name == job).count() as u64 >= u64::from(*k));
        let args = w
            .args
            .iter()
            .any(|(k, v)| jobs().any(|j| j.args.get(k) == Some(v)));
        (many || args).then(|| self.rule.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;

    fn policy(settings: serde_json::Value) -> Result<RequireApproval, String> {
        RequireApproval::new(
            serde_json::from_value(settings).map_err(|e| e.to_string())?,
            &catalog(),
        )
    }

    #[test]
    fn when_narrows_it_to_matching_requests() {
        let p = policy(serde_json::json!({
            "Approvals": 2, "Role": "approver", "ExpiresAfter": "8h",
            "When": {"MinJobs": {"diskErase": 3}, "Args": {"type": "cluster"}}
        }))
        .unwrap();
        let two = request(&[&[erase("aab00", "aab"), erase("aab01", "aab")]]);
        assert_eq!(p.approval(&two), None);
        let three = request(&[&[
            erase("aab00", "aab"),
            erase("aab01", "aab"),
            erase("aab02", "aab"),
        ]]);
        let rule = p.approval(&three).unwrap();
        assert_eq!(
            (rule.approvals, rule.role.as_str(), rule.expires_after),
            (2, "approver", Duration::from_secs(8 * 3600))
        );
        let mut cluster = validate("aab");
        cluster.args.insert("type".into(), "cluster".into());
        assert!(p.approval(&request(&[&[cluster]])).is_some());
        let always = policy(serde_json::json!({"Role": "approver"})).unwrap();
        assert_eq!(always.approval(&two).unwrap().approvals, 1);
    }

    #[test]
    fn settings_are_validated() {
        for (bad, why) in [
            (serde_json::json!({"Role": ""}), "Role is empty"),
            (
                serde_json::json!({"Role": "a", "Approvals": 0}),
                "at least 1",
            ),
            (
                serde_json::json!({"Role": "a", "When": {}}),
                "When is empty",
            ),
            (
                serde_json::json!({"Role": "a", "When": {"MinJobs": {"diskerase": 1}}}),
                "not registered",
            ),
            (
                serde_json::json!({"Role": "a", "When": {"Args": {"rack": "1"}}}),
                "no job type takes",
            ),
            (serde_json::json!({"Approvals": 1}), "missing field `Role`"),
        ] {
            let e = policy(bad.clone()).err().unwrap();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
