//! `configs/jobs.json`: the job types the operator lets workers serve.
//!
//! A declaration gives a remote type the same self-description a built-in
//! job has (arguments, idempotency), so Submit validates it, policies and
//! buckets apply to it, and recovery knows whether it may run twice. It
//! also says which identities may serve it and how long a task may take
//! when the request sets no timeout.
//!
//! A declaration may also name a built-in job (e.g. `diskErase`): that
//! *moves* the job to workers. Its schema, its Submit checks (the
//! inventory) and its bucket stay the server's; only where it runs
//! changes, so such a declaration gives nothing but `served_by` and
//! `timeout`.
//!
//! `reconcilable` is a promise about the worker's code: it saves a
//! checkpoint before acting on the world, and can tell from that
//! checkpoint whether the action happened. An attempt that starts with a
//! checkpoint is therefore sent as a reconcile request first.
//!
//! Schemas are handed out as `&'static` (the [`Catalog`] contract): each
//! distinct declaration is interned once for the life of the process, so
//! re-reading an unchanged file allocates nothing new and validation that
//! holds a schema across a reload stays sound.

use interlock_core::schema::{intern, leak};
use interlock_core::{ArgFormat, ArgSpec, Catalog, Idempotency, JobSchema};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// The file's name in the config directory.
pub const JOBS: &str = "jobs.json";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    jobs: Vec<TypeFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TypeFile {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    args: Option<Vec<ArgFile>>,
    #[serde(default)]
    idempotency: Option<IdempotencyFile>,
    #[serde(default, with = "humantime_serde")]
    timeout: Option<Duration>,
    /// Identities (exact) or `role:NAME` allowed to serve the type; empty
    /// means anyone holding the `work` grant on it.
    #[serde(default)]
    served_by: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ArgFile {
    name: String,
    #[serde(default)]
    required: bool,
    #[serde(default)]
    description: String,
    format: FormatFile,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum FormatFile {
    Text,
    Name,
    Seconds,
    Bool,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum IdempotencyFile {
    /// Re-running after a lost worker or a crash is harmless.
    Safe,
    /// Not safe to re-run, but a worker can find out whether it happened.
    Reconcilable,
    /// Neither: a lost run waits for an operator.
    Unsafe,
}

/// One declared remote job type.
#[derive(Debug, Clone)]
pub struct RemoteType {
    pub schema: &'static JobSchema,
    /// Limit of one attempt when the request sets none.
    pub timeout: Option<Duration>,
    /// A built-in job moved to workers.
    pub moved: bool,
    served_by: Vec<String>,
}

impl RemoteType {
    /// Whether `identity` (bound to `roles`) may serve this type, by the
    /// declaration's own list; the `work` grant is checked separately.
    pub fn may_serve(&self, identity: &str, roles: &[String]) -> bool {
        self.served_by.is_empty()
            || self
                .served_by
                .iter()
                .any(|s| match s.strip_prefix("role:") {
                    Some(role) => roles.iter().any(|r| r == role),
                    None => s == identity,
                })
    }

    /// The declaration's `served_by` list, for display.
    pub fn served_by(&self) -> &[String] {
        &self.served_by
    }
}

/// A loaded jobs.json.
#[derive(Debug, Clone, Default)]
pub struct Declarations {
    types: BTreeMap<String, Arc<RemoteType>>,
}

impl Declarations {
    /// Parses jobs.json. `builtins` are the types that run in the server: a
    /// declaration may not take one of their names.
    pub fn parse(text: &str, builtins: &dyn Catalog) -> Result<Self, String> {
        let de = &mut serde_json::Deserializer::from_str(text);
        let file: File = serde_path_to_error::deserialize(de)
            .map_err(|e| format!("{JOBS}: {}: {}", e.path(), e.inner()))?;
        let mut types = BTreeMap::new();
        for (i, t) in file.jobs.into_iter().enumerate() {
            let at = format!("{JOBS}: jobs[{i}] ({:?})", t.name);
            if let Err(e) = ArgFormat::Name.check(&t.name) {
                return Err(format!("{at}: name {e}"));
            }
            if types.contains_key(&t.name) {
                return Err(format!("{at}: declared twice"));
            }
            if t.name.starts_with("exec.") {
                return Err(format!(
                    "{at}: names starting with \"exec.\" belong to commands.json's commands"
                ));
            }
            if t.timeout.is_some_and(|d| d.is_zero()) {
                return Err(format!(
                    "{at}: timeout must be more than zero (leave it out for none)"
                ));
            }
            if let Some(s) = t.served_by.iter().find(|s| s.trim().is_empty()) {
                return Err(format!("{at}: served_by has an empty entry {s:?}"));
            }
            if let Some(builtin) = builtins.schema(&t.name) {
                if t.args.is_some() || t.idempotency.is_some() || !t.description.is_empty() {
                    return Err(format!(
                        "{at}: {:?} is built into the server; declaring it moves it to workers \
                         with its own arguments and idempotency, so give only served_by and timeout",
                        t.name
                    ));
                }
                types.insert(
                    t.name.clone(),
                    Arc::new(RemoteType {
                        schema: intern(
                            serde_json::to_string(builtin).expect("a schema serializes"),
                            || builtin.clone(),
                        ),
                        timeout: t.timeout,
                        moved: true,
                        served_by: t.served_by,
                    }),
                );
                continue;
            }
            let Some(idempotency) = t.idempotency else {
                return Err(format!(
                    "{at}: idempotency is required: \"safe\", \"reconcilable\" or \"unsafe\""
                ));
            };
            let mut args: Vec<&ArgFile> = Vec::new();
            for a in t.args.iter().flatten() {
                if let Err(e) = ArgFormat::Name.check(&a.name) {
                    return Err(format!("{at}: argument name {e}"));
                }
                if args.iter().any(|b| b.name == a.name) {
                    return Err(format!("{at}: argument {:?} declared twice", a.name));
                }
                args.push(a);
            }
            let key = serde_json::json!([
                t.name,
                t.description,
                args.iter()
                    .map(|a| (&a.name, a.required, &a.description, a.format as u8))
                    .collect::<Vec<_>>(),
                idempotency as u8
            ])
            .to_string();
            let schema = intern(key, || declared_schema(&t, idempotency));
            types.insert(
                t.name.clone(),
                Arc::new(RemoteType {
                    schema,
                    timeout: t.timeout,
                    moved: false,
                    served_by: t.served_by,
                }),
            );
        }
        Ok(Self { types })
    }

    pub fn get(&self, name: &str) -> Option<&Arc<RemoteType>> {
        self.types.get(name)
    }

    pub fn len(&self) -> usize {
        self.types.len()
    }

    pub fn is_empty(&self) -> bool {
        self.types.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &Arc<RemoteType>)> {
        self.types.iter()
    }
}

/// The schema a new type's declaration describes.
fn declared_schema(t: &TypeFile, idempotency: IdempotencyFile) -> JobSchema {
    let (idempotency, reconcilable) = match idempotency {
        IdempotencyFile::Safe => (Idempotency::Safe, false),
        IdempotencyFile::Reconcilable => (Idempotency::Unsafe, true),
        IdempotencyFile::Unsafe => (Idempotency::Unsafe, false),
    };
    // Called only for a declaration not seen before (see `intern`).
    JobSchema {
        name: leak(&t.name),
        description: leak(if t.description.is_empty() {
            "a job served by workers"
        } else {
            &t.description
        }),
        args: t
            .args
            .iter()
            .flatten()
            .map(|a| ArgSpec {
                name: leak(&a.name),
                required: a.required,
                description: leak(&a.description),
                format: match a.format {
                    FormatFile::Text => ArgFormat::Text,
                    FormatFile::Name => ArgFormat::Name,
                    FormatFile::Seconds => ArgFormat::Seconds,
                    FormatFile::Bool => ArgFormat::Bool,
                },
            })
            .collect(),
        idempotency,
        reconcilable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use interlock_core::StaticCatalog;

    fn builtins() -> StaticCatalog {
        StaticCatalog(vec![JobSchema {
            name: "sleep",
            description: "",
            args: vec![],
            idempotency: Idempotency::Safe,
            reconcilable: false,
        }])
    }

    const GOOD: &str = r#"{"jobs": [
        {"name": "rebootHost", "description": "Reboots a host",
         "args": [{"name": "host", "required": true, "format": "name", "description": "the host"}],
         "idempotency": "reconcilable", "timeout": "10m", "served_by": ["role:ops", "bot-1"]},
        {"name": "ping", "idempotency": "safe"}
    ]}"#;

    #[test]
    fn a_declaration_becomes_a_schema_with_its_idempotency() {
        let d = Declarations::parse(GOOD, &builtins()).unwrap();
        let r = d.get("rebootHost").unwrap();
        assert_eq!(r.schema.idempotency, Idempotency::Unsafe);
        assert!(r.schema.reconcilable);
        assert_eq!(r.timeout, Some(Duration::from_secs(600)));
        assert!(
            r.schema.check_args(&interlock_core::Args::new())[0]
                .contains("needs argument \"host\"")
        );
        let p = d.get("ping").unwrap();
        assert_eq!(p.schema.idempotency, Idempotency::Safe);
        assert!(p.may_serve("anyone", &[]));
        assert!(r.may_serve("bot-1", &[]));
        assert!(r.may_serve("alice", &["ops".into()]));
        assert!(!r.may_serve("alice", &["dev".into()]));
    }

    #[test]
    fn an_unchanged_declaration_is_interned_once() {
        let a = Declarations::parse(GOOD, &builtins()).unwrap();
        let b = Declarations::parse(GOOD, &builtins()).unwrap();
        assert!(std::ptr::eq(
            a.get("ping").unwrap().schema,
            b.get("ping").unwrap().schema
        ));
    }

    #[test]
    fn declaring_a_built_in_moves_it_with_its_own_schema() {
        let d = Declarations::parse(
            r#"{"jobs":[{"name":"sleep","served_by":["token:w"],"timeout":"1m"}]}"#,
            &builtins(),
        )
        .unwrap();
        let s = d.get("sleep").unwrap();
        assert!(s.moved);
        assert_eq!(s.schema.idempotency, Idempotency::Safe);
        assert_eq!(s.timeout, Some(Duration::from_secs(60)));
    }

    #[test]
    fn mistakes_are_refused_with_where_and_what() {
        for (text, want) in [
            (
                r#"{"jobs":[{"name":"sleep","idempotency":"safe"}]}"#,
                "give only served_by and timeout",
            ),
            (
                r#"{"jobs":[{"name":"a b","idempotency":"safe"}]}"#,
                "is not a name",
            ),
            (
                r#"{"jobs":[{"name":"a","idempotency":"safe"},{"name":"a","idempotency":"safe"}]}"#,
                "declared twice",
            ),
            (
                r#"{"jobs":[{"name":"a","idempotency":"maybe"}]}"#,
                "unknown variant",
            ),
            (
                r#"{"jobs":[{"name":"a","idempotency":"safe","timeout":"0s"}]}"#,
                "more than zero",
            ),
            (r#"{"jobs":[{"name":"a"}]}"#, "idempotency is required"),
            (
                r#"{"jobs":[{"name":"a","idempotency":"safe","colour":1}]}"#,
                "unknown field",
            ),
        ] {
            let e = Declarations::parse(text, &builtins()).unwrap_err();
            assert!(e.contains(want), "{text}: {e}");
        }
    }
}
