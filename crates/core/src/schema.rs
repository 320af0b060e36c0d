//! How a job describes itself: its arguments and whether it is safe to re-run.
//! The registry publishes these; Submit checks every job's args against them,
//! and the JobCatalog RPC shows them to users.

use serde::Serialize;

/// Whether running a job twice is harmless.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Idempotency {
    /// Re-running after an interruption is harmless (reads, sleeps).
    Safe,
    /// Must not run twice (erases, token takes): after a crash it is reconciled
    /// or left for an operator to decide.
    Unsafe,
}

/// Accepted shape of one argument value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ArgFormat {
    /// Any non-empty text.
    Text,
    /// A name: letters, digits, `-`, `_`, `.`, non-empty.
    Name,
    /// Non-negative decimal seconds, e.g. `0`, `1.5`.
    Seconds,
    /// Exactly `true` or `false`.
    Bool,
}

impl ArgFormat {
    /// Checks a value; the error says what is expected.
    pub fn check(self, value: &str) -> Result<(), String> {
        match self {
            ArgFormat::Text if value.is_empty() => Err("must not be empty".into()),
            ArgFormat::Text => Ok(()),
            ArgFormat::Name => {
                if !value.is_empty()
                    && value
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                {
                    Ok(())
                } else {
                    Err(format!(
                        "{value:?} is not a name (letters, digits, '-', '_', '.'; not empty)"
                    ))
                }
            }
            ArgFormat::Seconds => parse_seconds(value).map(|_| ()),
            ArgFormat::Bool => parse_bool(value).map(|_| ()),
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            ArgFormat::Text => "non-empty text",
            ArgFormat::Name => "name: letters, digits, '-', '_', '.'",
            ArgFormat::Seconds => "non-negative decimal seconds, e.g. 0.5",
            ArgFormat::Bool => "\"true\" or \"false\"",
        }
    }
}

/// Parses non-negative decimal seconds strictly (no sign, no exponent, finite).
pub fn parse_seconds(value: &str) -> Result<std::time::Duration, String> {
    let ok_chars = !value.is_empty()
        && value.chars().all(|c| c.is_ascii_digit() || c == '.')
        && value.chars().filter(|c| *c == '.').count() <= 1
        && value != ".";
    let secs: f64 = if ok_chars {
        value.parse().map_err(|_| String::new())?
    } else {
        f64::NAN
    };
    if !secs.is_finite() || secs > 1.0e9 {
        return Err(format!(
            "{value:?} is not non-negative decimal seconds (e.g. \"0\", \"1.5\")"
        ));
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

/// Parses a boolean strictly: `true` or `false`, nothing else.
pub fn parse_bool(value: &str) -> Result<bool, String> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        other => Err(format!("{other:?} is not \"true\" or \"false\"")),
    }
}

/// One argument a job accepts.
#[derive(Debug, Clone, Serialize)]
pub struct ArgSpec {
    pub name: &'static str,
    pub required: bool,
    pub description: &'static str,
    pub format: ArgFormat,
}

impl ArgSpec {
    pub const fn required(
        name: &'static str,
        format: ArgFormat,
        description: &'static str,
    ) -> Self {
        Self {
            name,
            required: true,
            description,
            format,
        }
    }

    pub const fn optional(
        name: &'static str,
        format: ArgFormat,
        description: &'static str,
    ) -> Self {
        Self {
            name,
            required: false,
            description,
            format,
        }
    }
}

/// A job's self-description.
#[derive(Debug, Clone, Serialize)]
pub struct JobSchema {
    pub name: &'static str,
    pub description: &'static str,
    pub args: Vec<ArgSpec>,
    pub idempotency: Idempotency,
    /// The job can find out after a crash whether its effect happened.
    pub reconcilable: bool,
}

impl JobSchema {
    /// Every problem with `args`, one sentence each.
    pub fn check_args(&self, args: &crate::Args) -> Vec<String> {
        self.check_args_pending(args, |_| false)
    }

    /// [`JobSchema::check_args`], with the arguments `pending` says are
    /// filled in later (inputs from earlier jobs) counted as present.
    pub fn check_args_pending(
        &self,
        args: &crate::Args,
        pending: impl Fn(&str) -> bool,
    ) -> Vec<String> {
        let mut problems = Vec::new();
        for spec in &self.args {
            match args.get(spec.name) {
                None if pending(spec.name) => {}
                None if spec.required => problems.push(format!(
                    "{} needs argument {:?} ({})",
                    self.name, spec.name, spec.description
                )),
                None => {}
                Some(v) => {
                    if let Err(e) = spec.format.check(v) {
                        problems.push(format!("argument {:?}: {e}", spec.name));
                    }
                }
            }
        }
        for key in args.keys() {
            if !self.args.iter().any(|s| s.name == key) {
                let known: Vec<_> = self.args.iter().map(|s| s.name).collect();
                problems.push(format!(
                    "{} has no argument {key:?} (it takes {})",
                    self.name,
                    known.join(", ")
                ));
            }
        }
        problems
    }
}

/// Read access to the registered jobs' schemas.
pub trait Catalog: Send + Sync {
    fn schema(&self, job: &str) -> Option<&JobSchema>;
    /// Every schema, sorted by name.
    fn schemas(&self) -> Vec<&JobSchema>;
    /// Where jobs of this type run, when not in the server itself (e.g.
    /// "workers (2 online)").
    fn location(&self, _job: &str) -> Option<String> {
        None
    }
}

/// The process-lifetime schema for `key`, made by `make` the first time
/// `key` is seen: for job types read from config files (jobs.json,
/// commands.json). [`Catalog`] hands out schemas by reference, and
/// validation may hold one across a reload, so they are never freed; each
/// distinct declaration is kept once, so re-reading an unchanged file
/// allocates nothing.
pub fn intern(key: String, make: impl FnOnce() -> JobSchema) -> &'static JobSchema {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static SEEN: OnceLock<Mutex<HashMap<String, &'static JobSchema>>> = OnceLock::new();
    let mut seen = SEEN
        .get_or_init(Default::default)
        .lock()
        .expect("intern lock");
    seen.entry(key)
        .or_insert_with(|| Box::leak(Box::new(make())))
}

/// `s` for the life of the process (a config file's names, for [`intern`]).
pub fn leak(s: &str) -> &'static str {
    Box::leak(s.to_owned().into_boxed_str())
}

/// A catalog over a fixed list of schemas: for tools, tests and benchmarks
/// that need job schemas without the engine's registry.
#[derive(Debug, Clone, Default)]
pub struct StaticCatalog(pub Vec<JobSchema>);

impl Catalog for StaticCatalog {
    fn schema(&self, job: &str) -> Option<&JobSchema> {
        self.0.iter().find(|s| s.name == job)
    }

    fn schemas(&self) -> Vec<&JobSchema> {
        let mut v: Vec<_> = self.0.iter().collect();
        v.sort_by_key(|s| s.name);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_are_strict() {
        assert_eq!(parse_seconds("0").unwrap(), std::time::Duration::ZERO);
        assert_eq!(
            parse_seconds("1.5").unwrap(),
            std::time::Duration::from_millis(1500)
        );
        for bad in ["", "-1", "1e3", "NaN", "inf", ".", "1.2.3", " 1", "1s"] {
            assert!(parse_seconds(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn bools_are_strict() {
        assert!(parse_bool("true").unwrap());
        assert!(!parse_bool("false").unwrap());
        for bad in ["True", "1", "yes", "", "false "] {
            assert!(parse_bool(bad).is_err(), "{bad:?} accepted");
        }
    }
}
