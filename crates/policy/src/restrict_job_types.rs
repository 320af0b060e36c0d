//! `restrictJobTypes {AllowedJobs: [job]}`: every job of the request is one
//! of the allowed types.

use crate::{Policy, known_job};
use interlock_core::{Catalog, Violation, WorkReq};
use serde::Deserialize;
use std::collections::BTreeSet;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(rename = "AllowedJobs")]
    pub allowed_jobs: Vec<String>,
}

pub struct RestrictJobTypes {
    allowed: BTreeSet<String>,
    listed: String,
}

impl Policy for RestrictJobTypes {
    const NAME: &'static str = "restrictJobTypes";
    type Settings = Settings;

    fn new(s: Settings, jobs: &dyn Catalog) -> Result<Self, String> {
        for j in &s.allowed_jobs {
            known_job(jobs, j, "AllowedJobs")?;
        }
        let allowed: BTreeSet<String> = s.allowed_jobs.into_iter().collect();
        let listed = allowed.iter().cloned().collect::<Vec<_>>().join(", ");
        Ok(Self { allowed, listed })
    }

    fn check(&self, req: &WorkReq, _ctx: &crate::Ctx, out: &mut Vec<Violation>) {
        for (bi, b) in req.blocks.iter().enumerate() {
            for (ji, j) in b.jobs.iter().enumerate() {
                if !self.allowed.contains(&j.name) {
                    out.push(
                        Violation::new(
                            Self::NAME,
                            format!(
                                "job {:?} is not allowed in workflow {:?}; allowed jobs: {}",
                                j.name, req.name, self.listed
                            ),
                        )
                        .at_job(bi, ji),
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::testutil::*;

    #[test]
    fn table() {
        let p = build(
            "restrictJobTypes",
            r#"{"AllowedJobs": ["sleep", "diskErase"]}"#,
        );
        assert_eq!(
            violations(&p, &[&[sleep()], &[erase("aab00", "aab")]]),
            vec![]
        );
        assert_eq!(
            violations(
                &p,
                &[
                    &[sleep(), validate("aab")],
                    &[erase("aab00", "aab"), bucket()]
                ]
            ),
            vec![(Some(0), Some(1)), (Some(1), Some(1))]
        );
        let msg = &check(&p, &[&[bucket()]])[0].message;
        assert!(msg.contains("\"tokenBucket\" is not allowed"), "{msg}");
        assert!(msg.contains("allowed jobs: diskErase, sleep"), "{msg}");
    }

    #[test]
    fn settings_are_validated() {
        assert!(
            try_build("restrictJobTypes", r#"{"AllowedJobs": ["nope"]}"#)
                .unwrap_err()
                .contains("\"nope\", which is not registered")
        );
        assert!(
            try_build("restrictJobTypes", r#"{"AllowedJobs": [], "Extra": 1}"#)
                .unwrap_err()
                .contains("unknown field `Extra`")
        );
    }
}
