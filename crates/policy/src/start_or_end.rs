//! `startOrEnd {JobName, MustArgs, Start | End, AllowedBeforeOrAfter}`.
//!
//! With `Start`, the first block is scanned in list order: a job named
//! `JobName` must appear, only jobs named in `AllowedBeforeOrAfter` may come
//! before it, and it must carry every `MustArgs` key with exactly that value.
//! With `End`, the same holds for the last block scanned from its end.
//! Exactly one of `Start` and `End` must be set.

use crate::{Policy, known_arg, known_job};
use interlock_core::{Catalog, Violation, WorkReq};
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(rename = "JobName")]
    pub job_name: String,
    #[serde(rename = "MustArgs", default)]
    pub must_args: BTreeMap<String, String>,
    #[serde(rename = "Start", default)]
    pub start: bool,
    #[serde(rename = "End", default)]
    pub end: bool,
    #[serde(rename = "AllowedBeforeOrAfter", default)]
    pub allowed_before_or_after: Vec<String>,
}

pub struct StartOrEnd {
    s: Settings,
}

impl Policy for StartOrEnd {
    const NAME: &'static str = "startOrEnd";
    type Settings = Settings;

    fn new(s: Settings, jobs: &dyn Catalog) -> Result<Self, String> {
        if s.start == s.end {
            return Err("set exactly one of Start and End to true".into());
        }
        known_job(jobs, &s.job_name, "JobName")?;
        for k in s.must_args.keys() {
            known_arg(jobs, &s.job_name, k, "MustArgs")?;
        }
        for j in &s.allowed_before_or_after {
            known_job(jobs, j, "AllowedBeforeOrAfter")?;
        }
        Ok(Self { s })
    }

    fn check(&self, req: &WorkReq, _ctx: &crate::Ctx, out: &mut Vec<Violation>) {
        let s = &self.s;
        let (which, block) = if s.start {
            ("first", 0)
        } else {
            ("last", req.blocks.len().saturating_sub(1))
        };
        let Some(b) = req.blocks.get(block) else {
            out.push(Violation::new(
                Self::NAME,
                format!(
                    "the request has no blocks; its {which} block must contain {}",
                    s.job_name
                ),
            ));
            return;
        };
        let order: Box<dyn Iterator<Item = (usize, &interlock_core::Job)>> = if s.start {
            Box::new(b.jobs.iter().enumerate())
        } else {
            Box::new(b.jobs.iter().enumerate().rev())
        };
        let side = if s.start { "before" } else { "after" };
        for (ji, j) in order {
            let v = |m: String| Violation::new(Self::NAME, m).at_job(block, ji);
            if j.name == s.job_name {
                for (k, want) in &s.must_args {
                    match j.args.get(k) {
                        Some(got) if got == want => {}
                        Some(got) => out.push(v(format!(
                            "{} must have argument {k:?} = {want:?}, not {got:?}",
                            s.job_name
                        ))),
                        None => out.push(v(format!(
                            "{} must have argument {k:?} = {want:?}",
                            s.job_name
                        ))),
                    }
                }
                return;
            }
            if !s.allowed_before_or_after.contains(&j.name) {
                out.push(v(format!(
                    "job {:?} may not come {side} {} in the {which} block (allowed {side} it: {})",
                    j.name,
                    s.job_name,
                    if s.allowed_before_or_after.is_empty() {
                        "nothing".to_string()
                    } else {
                        s.allowed_before_or_after.join(", ")
                    }
                )));
            }
        }
        out.push(
            Violation::new(
                Self::NAME,
                format!("the {which} block must contain a {} job", s.job_name),
            )
            .at_block(block),
        );
    }
}

#[cfg(test)]
mod tests {
    use crate::testutil::*;

    const START: &str = r#"{"JobName": "tokenBucket", "Start": true,
        "MustArgs": {"bucket": "diskEraseSatellite", "fatal": "true"},
        "AllowedBeforeOrAfter": ["validateDecom"]}"#;
    const END: &str = r#"{"JobName": "sleep", "End": true, "MustArgs": {"seconds": "0"}}"#;

    #[test]
    fn start_table() {
        let p = build("startOrEnd", START);
        assert_eq!(
            violations(&p, &[&[validate("aab"), bucket()], &[erase("a", "aab")]]),
            vec![]
        );
        assert_eq!(
            violations(&p, &[&[bucket(), validate("aab")]]),
            vec![],
            "jobs after it are free"
        );
        // A disallowed job before it.
        assert_eq!(
            violations(&p, &[&[validate("aab"), sleep(), bucket()]]),
            vec![(Some(0), Some(1))]
        );
        // MustArgs value mismatch.
        let mut wrong = bucket();
        wrong.args.insert("fatal".into(), "false".into());
        let v = check(&p, &[&[wrong]]);
        assert_eq!(v.len(), 1);
        assert!(
            v[0].message.contains("\"fatal\" = \"true\", not \"false\""),
            "{}",
            v[0].message
        );
        // The job in the wrong block.
        assert_eq!(
            violations(&p, &[&[validate("aab")], &[bucket()]]),
            vec![(Some(0), None)]
        );
        // Empty request: no panic, one violation.
        assert_eq!(check(&p, &[]).len(), 1);
    }

    #[test]
    fn end_table() {
        let p = build("startOrEnd", END);
        assert_eq!(
            violations(&p, &[&[erase("a", "aab")], &[bucket(), sleep()]]),
            vec![]
        );
        // Nothing allowed after it: the job after is located.
        assert_eq!(
            violations(&p, &[&[erase("a", "aab")], &[sleep(), bucket()]]),
            vec![(Some(1), Some(1))]
        );
        // Only in a non-last block: missing from the last one.
        assert_eq!(
            violations(&p, &[&[sleep()], &[erase("a", "aab")]]),
            vec![(Some(1), Some(0)), (Some(1), None)]
        );
        // A one-job last block (the ancestor indexed past its end).
        assert_eq!(violations(&p, &[&[sleep()]]), vec![]);
    }

    #[test]
    fn settings_are_validated() {
        for (s, want) in [
            (r#"{"JobName": "sleep"}"#, "exactly one of Start and End"),
            (
                r#"{"JobName": "sleep", "Start": true, "End": true}"#,
                "exactly one",
            ),
            (r#"{"JobName": "nope", "Start": true}"#, "not registered"),
            (
                r#"{"JobName": "sleep", "Start": true, "MustArgs": {"Seconds": "1"}}"#,
                "does not take",
            ),
            (
                r#"{"JobName": "sleep", "Start": true, "Extra": 1}"#,
                "unknown field",
            ),
        ] {
            let e = try_build("startOrEnd", s).unwrap_err();
            assert!(e.contains(want), "{s}: {e}");
        }
    }
}
