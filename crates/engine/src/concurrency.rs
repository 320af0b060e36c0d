//! Blast-radius limits: concurrency limits across all workflows, from
//! `limits.json`.
//!
//! Format: a JSON array of
//! `{"Name", "Max", "Count", "Per"?, "Jobs"?}`:
//! - `Jobs`: the job types the limit applies to (all when left out);
//! - `Count`: what is counted in flight, at most `Max` at once: `"jobs"`,
//!   `"workflows"` (workflows with a job in flight), `"arg:NAME"` (distinct
//!   values of a job argument, e.g. sites) or `"label:NAME"` (distinct
//!   values of a workflow label);
//! - `Per`: partitions the limit, `Max` applying to each part: `"name"`
//!   (the workflow name), `"arg:NAME"` or `"label:NAME"`.
//!
//! A job holds a slot of every limit it falls under from before its start
//! is recorded until its end is (the store decides and records slots, see
//! `interlock_store::slots`), so a limit holds across restarts and
//! replicas. A job that would exceed a limit waits, in order of asking.
//! An argument or label a job lacks counts as one value, "(none)": jobs
//! are never let through for lacking it.

use interlock_core::{Catalog, WorkReq, parse_records};
use interlock_store::Slot;
use serde::Deserialize;
use std::sync::{Arc, RwLock};
use tokio::sync::Notify;

/// What a limit counts, or partitions by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    /// Each job (for `Count`).
    Jobs,
    /// Each workflow (for `Count`), or its name (for `Per`).
    Workflows,
    Name,
    Arg(String),
    Label(String),
}

impl Key {
    fn parse(s: &str, field: &str) -> Result<Key, String> {
        let named = |rest: &str, k: fn(String) -> Key| {
            if interlock_core::ArgFormat::Name.check(rest).is_ok() {
                Ok(k(rest.to_string()))
            } else {
                Err(format!("{field} {s:?} names no argument or label"))
            }
        };
        match (field, s) {
            ("Count", "jobs") => Ok(Key::Jobs),
            ("Count", "workflows") => Ok(Key::Workflows),
            ("Per", "name") => Ok(Key::Name),
            _ if s.starts_with("arg:") => named(&s[4..], Key::Arg),
            _ if s.starts_with("label:") => named(&s[6..], Key::Label),
            ("Count", _) => Err(format!(
                "Count is {s:?}; it must be \"jobs\", \"workflows\", \"arg:NAME\" or \"label:NAME\""
            )),
            _ => Err(format!(
                "Per is {s:?}; it must be \"name\", \"arg:NAME\" or \"label:NAME\""
            )),
        }
    }

    /// The value of this key for job `ji` of block `bi` of `req`.
    fn value(&self, id: &str, req: &WorkReq, bi: usize, ji: usize) -> String {
        let none = || "(none)".to_string();
        match self {
            Key::Jobs => format!("{id}/{bi}/{ji}"),
            Key::Workflows => id.to_string(),
            Key::Name => req.name.clone(),
            Key::Arg(a) => req.blocks[bi].jobs[ji]
                .args
                .get(a)
                .cloned()
                .unwrap_or_else(none),
            Key::Label(l) => req.labels.get(l).cloned().unwrap_or_else(none),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimit {
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "Max")]
    max: u32,
    #[serde(rename = "Count")]
    count: String,
    #[serde(rename = "Per", default)]
    per: Option<String>,
    #[serde(rename = "Jobs", default)]
    jobs: Option<Vec<String>>,
}

/// One limit as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitDef {
    pub name: String,
    pub max: u32,
    pub count: Key,
    pub per: Option<Key>,
    /// Job types it applies to; empty for all.
    pub jobs: Vec<String>,
    /// The text of `Count` and `Per`, for display.
    pub count_text: String,
    pub per_text: String,
}

impl LimitDef {
    /// Whether jobs of type `job` fall under this limit.
    pub fn applies_to(&self, job: &str) -> bool {
        self.jobs.is_empty() || self.jobs.iter().any(|j| j == job)
    }
}

/// Parses and validates `limits.json` against the job types `catalog`
/// knows: a limit on a misspelt job type or argument would silently limit
/// nothing, so it is an error.
pub fn parse_config(text: &str, catalog: &dyn Catalog) -> Result<Vec<LimitDef>, String> {
    let raw: Vec<RawLimit> = parse_records(text).map_err(|e| e.to_string())?;
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(raw.len());
    for (i, r) in raw.into_iter().enumerate() {
        let bad = |m: String| format!("entry {i} ({:?}): {m}", r.name);
        if r.name.is_empty() {
            return Err(bad("Name is empty".into()));
        }
        if !seen.insert(r.name.clone()) {
            return Err(bad("duplicate Name".into()));
        }
        if r.max == 0 {
            return Err(bad(
                "Max must be at least 1 (to let nothing run, use the emergency stop)".into(),
            ));
        }
        let count = Key::parse(&r.count, "Count").map_err(bad)?;
        let per = r
            .per
            .as_deref()
            .map(|p| Key::parse(p, "Per"))
            .transpose()
            .map_err(bad)?;
        let jobs = r.jobs.unwrap_or_default();
        for j in &jobs {
            let Some(schema) = catalog.schema(j) else {
                return Err(bad(format!("Jobs names {j:?}, which is not a job type")));
            };
            for k in [Some(&count), per.as_ref()].into_iter().flatten() {
                if let Key::Arg(a) = k
                    && !schema.args.iter().any(|s| s.name == *a)
                {
                    return Err(bad(format!("job type {j:?} has no argument {a:?}")));
                }
            }
        }
        out.push(LimitDef {
            name: r.name,
            max: r.max,
            count,
            per,
            jobs,
            count_text: r.count,
            per_text: r.per.unwrap_or_default(),
        });
    }
    Ok(out)
}

/// The limits in force, and the bell rung when a slot may have freed.
#[derive(Default)]
pub struct ConcurrencyLimits {
    defs: RwLock<Arc<Vec<LimitDef>>>,
    /// Set while limits.json is unusable and no limits were ever loaded:
    /// which jobs fall under a limit is unknown, so none starts (fail
    /// closed, like es.json).
    unusable: RwLock<Option<String>>,
    freed: Notify,
}

impl ConcurrencyLimits {
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the limits in force. Jobs already holding slots keep them;
    /// a lower `Max` lets nobody new in until enough have ended.
    pub fn configure(&self, defs: Vec<LimitDef>) {
        *self.defs.write().expect("limits lock") = Arc::new(defs);
        *self.unusable.write().expect("limits lock") = None;
        self.freed.notify_waiters();
    }

    /// Says limits.json could not be used. Before any limits were loaded
    /// this holds every job start until it is fixed; after, the last good
    /// limits stay in force.
    pub fn unusable_file(&self, why: String, loaded_before: bool) {
        if !loaded_before {
            *self.unusable.write().expect("limits lock") = Some(why);
        }
    }

    /// Why no job may start now, if limits.json is unusable.
    pub fn unusable(&self) -> Option<String> {
        self.unusable.read().expect("limits lock").clone()
    }

    pub fn defs(&self) -> Arc<Vec<LimitDef>> {
        self.defs.read().expect("limits lock").clone()
    }

    /// The slots job `ji` of block `bi` of workflow `id` needs.
    pub fn slots_for(&self, id: &str, req: &WorkReq, bi: usize, ji: usize) -> Vec<Slot> {
        let job = &req.blocks[bi].jobs[ji].name;
        self.defs()
            .iter()
            .filter(|d| d.applies_to(job))
            .map(|d| Slot {
                limit: d.name.clone(),
                part: d
                    .per
                    .as_ref()
                    .map(|p| p.value(id, req, bi, ji))
                    .unwrap_or_default(),
                holder: d.count.value(id, req, bi, ji),
                max: d.max,
            })
            .collect()
    }

    /// Wakes local waiters: a slot may have freed.
    pub fn freed(&self) {
        self.freed.notify_waiters();
    }

    /// Resolves at the next [`ConcurrencyLimits::freed`] (or configure)
    /// after it is enabled or first polled.
    pub fn wait_freed(&self) -> tokio::sync::futures::Notified<'_> {
        self.freed.notified()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use interlock_core::{ArgFormat, ArgSpec, Block, Idempotency, Job, JobSchema, StaticCatalog};

    fn catalog() -> StaticCatalog {
        StaticCatalog(vec![JobSchema {
            name: "diskErase",
            description: "",
            args: vec![ArgSpec::required("site", ArgFormat::Name, "")],
            idempotency: Idempotency::Unsafe,
            reconcilable: false,
        }])
    }

    #[test]
    fn config_is_validated_against_the_catalog() {
        let ok = parse_config(
            r#"[{"Name": "sites", "Max": 2, "Count": "arg:site", "Jobs": ["diskErase"]},
                {"Name": "perSite", "Max": 1, "Count": "workflows", "Per": "arg:site", "Jobs": ["diskErase"]},
                {"Name": "all", "Max": 20, "Count": "jobs"}]"#,
            &catalog(),
        )
        .unwrap();
        assert_eq!(ok[0].count, Key::Arg("site".into()));
        assert_eq!(ok[1].per, Some(Key::Arg("site".into())));
        assert!(ok[2].jobs.is_empty());
        for (bad, why) in [
            ("", "empty"),
            (
                r#"[{"Name": "a", "Max": 0, "Count": "jobs"}]"#,
                "at least 1",
            ),
            (r#"[{"Name": "a", "Max": 1, "Count": "sites"}]"#, "Count is"),
            (
                r#"[{"Name": "a", "Max": 1, "Count": "jobs", "Per": "jobs"}]"#,
                "Per is",
            ),
            (r#"[{"Name": "a", "Max": 1, "Count": "arg:"}]"#, "names no"),
            (
                r#"[{"Name": "a", "Max": 1, "Count": "jobs", "Jobs": ["diskerase"]}]"#,
                "not a job type",
            ),
            (
                r#"[{"Name": "a", "Max": 1, "Count": "arg:rack", "Jobs": ["diskErase"]}]"#,
                "no argument \"rack\"",
            ),
            (
                r#"[{"Name": "a", "Max": 1, "Count": "jobs"}, {"Name": "a", "Max": 1, "Count": "jobs"}]"#,
                "duplicate",
            ),
            (
                r#"[{"Name": "a", "Max": 1, "Count": "jobs", "Extra": 1}]"#,
                "unknown field",
            ),
        ] {
            let e = parse_config(bad, &catalog()).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn a_job_needs_a_slot_of_each_limit_it_falls_under() {
        let l = ConcurrencyLimits::new();
        l.configure(
            parse_config(
                r#"[{"Name": "sites", "Max": 2, "Count": "arg:site", "Jobs": ["diskErase"]},
                    {"Name": "perTeam", "Max": 1, "Count": "workflows", "Per": "label:team"}]"#,
                &catalog(),
            )
            .unwrap(),
        );
        let req = WorkReq {
            name: "erase".into(),
            labels: [("team".to_string(), "dc-ops".to_string())].into(),
            blocks: vec![Block {
                jobs: vec![
                    Job {
                        name: "diskErase".into(),
                        args: [("site".to_string(), "aab".to_string())].into(),
                        ..Default::default()
                    },
                    Job {
                        name: "sleep".into(),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }],
            ..Default::default()
        };
        let slots = l.slots_for("w1", &req, 0, 0);
        assert_eq!(
            slots
                .iter()
                .map(|s| (s.limit.as_str(), s.part.as_str(), s.holder.as_str(), s.max))
                .collect::<Vec<_>>(),
            [("sites", "", "aab", 2), ("perTeam", "dc-ops", "w1", 1)]
        );
        let slots = l.slots_for("w1", &req, 0, 1);
        assert_eq!(slots.len(), 1, "sleep falls under perTeam only");
    }
}
