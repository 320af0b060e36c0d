//! `sameArgs {Jobs: {job: [argKey]}}`: for each listed job type, every job of
//! that type anywhere in the request carries each listed argument, all with
//! the same value. A missing argument is a violation, not a match.

use crate::{Policy, known_arg, known_job};
use interlock_core::{Catalog, Violation, WorkReq};
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(rename = "Jobs")]
    pub jobs: BTreeMap<String, Vec<String>>,
}

pub struct SameArgs {
    jobs: BTreeMap<String, Vec<String>>,
}

impl Policy for SameArgs {
    const NAME: &'static str = "sameArgs";
    type Settings = Settings;

    fn new(s: Settings, catalog: &dyn Catalog) -> Result<Self, String> {
        for (job, keys) in &s.jobs {
            known_job(catalog, job, "Jobs")?;
            if keys.is_empty() {
                return Err(format!(
                    "Jobs.{job} lists no argument; list at least one or remove it"
                ));
            }
            for k in keys {
                known_arg(catalog, job, k, &format!("Jobs.{job}"))?;
            }
        }
        Ok(Self { jobs: s.jobs })
    }

    fn check(&self, req: &WorkReq, _ctx: &crate::Ctx, out: &mut Vec<Violation>) {
        for (job, keys) in &self.jobs {
            for key in keys {
                // The first job of this type that carries the key sets the value.
                let mut first: Option<(usize, usize, &str)> = None;
                for (bi, b) in req.blocks.iter().enumerate() {
                    for (ji, j) in b.jobs.iter().enumerate() {
                        if &j.name != job {
                            continue;
                        }
                        let v = |m: String| Violation::new(Self::NAME, m).at_job(bi, ji);
                        match (j.args.get(key), first) {
                            (None, _) => out.push(v(format!(
                                "{job} has no argument {key:?}; every {job} in this workflow must carry it"
                            ))),
                            (Some(val), None) => first = Some((bi, ji, val)),
                            (Some(val), Some((fb, fj, fv))) if val != fv => out.push(v(format!(
                                "{job} argument {key:?} is {val:?}, but the {job} at block {fb}, job {fj} \
                                 has {fv:?}; all must be the same"
                            ))),
                            _ => {}
                        }
                    }
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
        let p = build("sameArgs", r#"{"Jobs": {"diskErase": ["site"]}}"#);
        // All the same, across blocks; other job types ignored.
        assert_eq!(
            violations(
                &p,
                &[
                    &[validate("zzz")],
                    &[erase("aab00", "aab")],
                    &[erase("aab01", "aab")]
                ]
            ),
            vec![]
        );
        // A different value in a later block is located there.
        assert_eq!(
            violations(
                &p,
                &[
                    &[erase("aab00", "aab"), erase("aae00", "aae")],
                    &[erase("aab01", "aab")]
                ]
            ),
            vec![(Some(0), Some(1))]
        );
        // A missing key is a violation, wherever it is.
        let mut no_site = erase("aab00", "aab");
        no_site.args.remove("site");
        assert_eq!(
            violations(&p, &[&[no_site.clone(), erase("aab01", "aab")]]),
            vec![(Some(0), Some(0))]
        );
        let msg = &check(&p, &[&[erase("a", "aab"), erase("b", "aae")]])[0].message;
        assert!(
            msg.contains("is \"aae\", but the diskErase at block 0, job 0 has \"aab\""),
            "{msg}"
        );
    }

    #[test]
    fn duplicated_job_types_each_checked() {
        let p = build(
            "sameArgs",
            r#"{"Jobs": {"diskErase": ["site"], "validateDecom": ["site"]}}"#,
        );
        assert_eq!(
            violations(
                &p,
                &[
                    &[validate("aab"), validate("aae")],
                    &[erase("x", "aab"), erase("y", "aab")]
                ]
            ),
            vec![(Some(0), Some(1))]
        );
    }

    #[test]
    fn wrong_case_keys_are_a_config_error_not_a_vacuous_pass() {
        let e = try_build("sameArgs", r#"{"Jobs": {"diskErase": ["Site"]}}"#).unwrap_err();
        assert!(
            e.contains("argument \"Site\" of job \"diskErase\", which it does not take"),
            "{e}"
        );
        assert!(try_build("sameArgs", r#"{"Jobs": {"nope": ["x"]}}"#).is_err());
        assert!(try_build("sameArgs", r#"{"Jobs": {"diskErase": []}}"#).is_err());
    }
}
