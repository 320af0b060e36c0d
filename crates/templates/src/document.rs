//! A template as written: YAML or JSON, the WorkReq's own field names
//! (`rateLimit`, `maxFailures`, ...) plus `params` and `forEach`.
//!
//! Parsing checks everything that does not depend on the caller's values:
//! field names (unknown ones are refused, so a typo is not silently
//! ignored), parameter declarations and their defaults, and that every
//! `{{reference}}` names a parameter or the block's loop variable. A
//! template that parses can fail to instantiate only because of the
//! caller's values or the inventory.

use crate::param::{Kind, ParamSpec};
use crate::text::{Text, is_name};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// The whole template file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Document {
    /// The template's name (its revisions share it).
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub desc: String,
    #[serde(default)]
    pub params: BTreeMap<String, ParamSpec>,
    pub workflow: WorkflowDoc,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WorkflowDoc {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub desc: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, Scalar>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<Scalar>,
    pub blocks: Vec<BlockDoc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BlockDoc {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub desc: String,
    #[serde(default = "one")]
    pub rate_limit: Scalar,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_failures: Option<Scalar>,
    /// Repeat `jobs` once per item.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub for_each: Option<ForEachDoc>,
    pub jobs: Vec<JobDoc>,
}

fn one() -> Scalar {
    Scalar("1".into())
}

/// Where a block's items come from: exactly one of `machinesOf` and `items`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ForEachDoc {
    /// Every machine of this site, by name, from the inventory at
    /// instantiation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machines_of: Option<String>,
    /// `{{p}}` for a list parameter `p`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<String>,
    /// The loop variable's name (default `machine` for `machinesOf`,
    /// `item` for `items`).
    #[serde(default, rename = "as", skip_serializing_if = "Option::is_none")]
    pub var: Option<String>,
    /// Split the items into consecutive blocks of at most this many.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wave: Option<Scalar>,
}

impl ForEachDoc {
    pub fn var_name(&self) -> &str {
        match (&self.var, &self.machines_of) {
            (Some(v), _) => v,
            (None, Some(_)) => "machine",
            (None, None) => "item",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct JobDoc {
    /// Names this job for the inputs of jobs in later blocks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The job type; never templated, so a reviewer sees what runs.
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub desc: String,
    #[serde(default)]
    pub args: BTreeMap<String, Scalar>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Scalar>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryDoc>,
    /// Arguments taken from an output of a job (by `id`) of an earlier
    /// block, when this job starts. In a `forEach` block over the same
    /// items as the named job's, each instance takes its own item's output.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub inputs: BTreeMap<String, InputDoc>,
}

/// `{job: ID, output: NAME}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct InputDoc {
    pub job: String,
    pub output: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RetryDoc {
    pub max_attempts: Scalar,
    pub initial_backoff: Scalar,
    pub max_backoff: Scalar,
}

/// A YAML/JSON scalar kept as text (`5`, `true` and `"5"` alike), so
/// arguments can be written naturally and still be the strings a job gets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Scalar(pub String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(s) => Ok(Scalar(s)),
            serde_json::Value::Number(n) => Ok(Scalar(n.to_string())),
            serde_json::Value::Bool(b) => Ok(Scalar(b.to_string())),
            other => Err(D::Error::custom(format!(
                "expected a string, number or boolean, found {other}"
            ))),
        }
    }
}

/// A template that parsed and passed every check that needs no values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    doc: Document,
    canonical: String,
}

/// Why a template text was refused: every problem, each with where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.join("; "))]
pub struct Invalid(pub Vec<String>);

/// Names of templates: what workflow names allow, and no spaces.
pub fn valid_template_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

impl Template {
    /// Parses a template written in YAML (JSON is YAML too).
    pub fn parse(text: &str) -> Result<Template, Invalid> {
        if text.trim().is_empty() {
            return Err(Invalid(vec!["the template is empty".into()]));
        }
        let de = serde_yaml_ng::Deserializer::from_str(text);
        let doc: Document = serde_path_to_error::deserialize(de).map_err(|e| {
            let at = e.path().to_string();
            let inner = e.into_inner();
            Invalid(vec![if at == "." {
                inner.to_string()
            } else {
                format!("{at}: {inner}")
            }])
        })?;
        Template::from_document(doc)
    }

    /// Checks a document (the stored form is one) and takes it.
    pub fn from_document(doc: Document) -> Result<Template, Invalid> {
        let problems = check(&doc);
        if !problems.is_empty() {
            return Err(Invalid(problems));
        }
        let canonical = serde_json::to_string(&doc).expect("a template serializes");
        Ok(Template { doc, canonical })
    }

    /// The stored form: canonical JSON (sorted maps), so equal content has
    /// equal text and hash.
    pub fn canonical(&self) -> &str {
        &self.canonical
    }

    /// SHA-256 of the canonical form.
    pub fn content_hash(&self) -> String {
        hex::encode(Sha256::digest(self.canonical.as_bytes()))
    }

    pub fn name(&self) -> &str {
        &self.doc.name
    }

    pub fn document(&self) -> &Document {
        &self.doc
    }

    /// The template as YAML, for people.
    pub fn to_yaml(&self) -> String {
        serde_yaml_ng::to_string(&self.doc).unwrap_or_else(|_| self.canonical.clone())
    }
}

/// Every problem in a document that needs no parameter values to find.
fn check(doc: &Document) -> Vec<String> {
    let mut out = Vec::new();
    if !valid_template_name(&doc.name) {
        out.push(format!(
            "name {:?} is not a template name: letters, digits, '.', '_' and '-', starting with a \
             letter or digit, at most 128 characters",
            doc.name
        ));
    }
    for (name, spec) in &doc.params {
        if !is_name(name) {
            out.push(format!(
                "params: {name:?} is not a parameter name (letters, digits and _, not starting \
                 with a digit)"
            ));
        }
        let problems = spec.problems(name, false);
        if problems.is_empty()
            && let Some(d) = &spec.default
            && let Err(e) = spec.check(name, d, None)
        {
            out.extend(e.into_iter().map(|m| format!("default of {m}")));
        }
        out.extend(problems);
    }
    let w = &doc.workflow;
    let scope = Scope {
        params: &doc.params,
        var: None,
    };
    scope.text(&mut out, "workflow.name", &w.name, Want::Text);
    scope.text(&mut out, "workflow.desc", &w.desc, Want::Text);
    for (k, v) in &w.labels {
        if k.starts_with("interlock.") {
            out.push(format!(
                "workflow.labels.{k}: labels starting with \"interlock.\" are set by the server \
                 (where a workflow came from); use another key"
            ));
        }
        scope.text(&mut out, &format!("workflow.labels.{k}"), &v.0, Want::Text);
    }
    if let Some(d) = &w.deadline {
        scope.text(&mut out, "workflow.deadline", &d.0, Want::Duration);
    }
    if w.blocks.is_empty() {
        out.push("workflow.blocks: a template needs at least one block".into());
    }
    // Job ids of the blocks before the one being checked.
    let mut earlier: Vec<&str> = Vec::new();
    for (bi, b) in w.blocks.iter().enumerate() {
        let at = format!("workflow.blocks[{bi}]");
        let mut scope = Scope {
            params: &doc.params,
            var: None,
        };
        let var = b
            .for_each
            .as_ref()
            .and_then(|f| check_for_each(&mut out, &at, f, &doc.params));
        scope.text(&mut out, &format!("{at}.desc"), &b.desc, Want::Text);
        scope.text(
            &mut out,
            &format!("{at}.rateLimit"),
            &b.rate_limit.0,
            Want::Int,
        );
        if let Some(m) = &b.max_failures {
            scope.text(&mut out, &format!("{at}.maxFailures"), &m.0, Want::Int);
        }
        if b.jobs.is_empty() {
            out.push(format!("{at}.jobs: a block needs at least one job"));
        }
        // The loop variable is the jobs', not the block's.
        scope.var = var;
        for (ji, j) in b.jobs.iter().enumerate() {
            let at = format!("{at}.jobs[{ji}]");
            match Text::parse(&j.name) {
                Ok(t) if t.is_literal() && !j.name.is_empty() => {}
                Ok(t) if t.is_literal() => out.push(format!("{at}.name: a job needs its type")),
                _ => out.push(format!(
                    "{at}.name: the job type {:?} must be written out, not a reference, so a \
                     reviewer sees what runs",
                    j.name
                )),
            }
            scope.text(&mut out, &format!("{at}.desc"), &j.desc, Want::Text);
            for (k, v) in &j.args {
                scope.text(&mut out, &format!("{at}.args.{k}"), &v.0, Want::Text);
            }
            if let Some(t) = &j.timeout {
                scope.text(&mut out, &format!("{at}.timeout"), &t.0, Want::Duration);
            }
            for (arg, input) in &j.inputs {
                if j.args.contains_key(arg) {
                    out.push(format!(
                        "{at}.inputs.{arg}: {arg:?} is also in args; an argument is one or the other"
                    ));
                }
                if !earlier.contains(&input.job.as_str()) {
                    out.push(format!(
                        "{at}.inputs.{arg}: no job with id {:?} in an earlier block",
                        input.job
                    ));
                }
                if input.output.is_empty() {
                    out.push(format!("{at}.inputs.{arg}: name the output to take"));
                }
            }
            if let Some(r) = &j.retry {
                scope.text(
                    &mut out,
                    &format!("{at}.retry.maxAttempts"),
                    &r.max_attempts.0,
                    Want::Int,
                );
                scope.text(
                    &mut out,
                    &format!("{at}.retry.initialBackoff"),
                    &r.initial_backoff.0,
                    Want::Duration,
                );
                scope.text(
                    &mut out,
                    &format!("{at}.retry.maxBackoff"),
                    &r.max_backoff.0,
                    Want::Duration,
                );
            }
        }
        for (ji, j) in b.jobs.iter().enumerate() {
            let Some(id) = &j.id else { continue };
            if !is_name(id) {
                out.push(format!(
                    "workflow.blocks[{bi}].jobs[{ji}].id: {id:?} is not an id (letters, digits, _)"
                ));
            } else if earlier.contains(&id.as_str())
                || b.jobs[..ji].iter().any(|o| o.id.as_ref() == Some(id))
            {
                out.push(format!(
                    "workflow.blocks[{bi}].jobs[{ji}].id: {id:?} is already the id of another job"
                ));
            }
        }
        earlier.extend(b.jobs.iter().filter_map(|j| j.id.as_deref()));
    }
    out
}

/// Checks a block's `forEach`; returns its loop variable when usable.
fn check_for_each(
    out: &mut Vec<String>,
    at: &str,
    f: &ForEachDoc,
    params: &BTreeMap<String, ParamSpec>,
) -> Option<String> {
    let scope = Scope { params, var: None };
    let at = format!("{at}.forEach");
    match (&f.machines_of, &f.items) {
        (Some(site), None) => scope.text(out, &format!("{at}.machinesOf"), site, Want::Text),
        (None, Some(items)) => match Text::parse(items)
            .ok()
            .and_then(|t| t.sole_ref().map(str::to_string))
        {
            Some(p) if params.get(&p).and_then(|s| s.kind) == Some(Kind::List) => {}
            Some(p) if params.contains_key(&p) => {
                out.push(format!("{at}.items: parameter {p:?} is not a list"))
            }
            Some(p) => out.push(format!(
                "{at}.items: unknown parameter {p:?}{}",
                hint(&p, params)
            )),
            None => out.push(format!(
                "{at}.items: write {{{{p}}}} naming one list parameter, not {items:?}"
            )),
        },
        _ => out.push(format!("{at}: give exactly one of machinesOf and items")),
    }
    if let Some(w) = &f.wave {
        scope.text(out, &format!("{at}.wave"), &w.0, Want::Int);
    }
    let var = f.var_name();
    if !is_name(var) {
        out.push(format!("{at}.as: {var:?} is not a variable name"));
        return None;
    }
    if params.contains_key(var) {
        out.push(format!(
            "{at}.as: the loop variable {var:?} would hide the parameter of that name; pick another"
        ));
        return None;
    }
    Some(var.to_string())
}

fn hint(name: &str, params: &BTreeMap<String, ParamSpec>) -> String {
    interlock_core::did_you_mean(name, params.keys().map(String::as_str))
        .map(|s| format!(" (did you mean {s:?}?)"))
        .unwrap_or_default()
}

/// What a field's text must turn into.
#[derive(Clone, Copy)]
enum Want {
    Text,
    Int,
    Duration,
}

/// The names a text may refer to: the parameters and, inside a `forEach`
/// block, its loop variable.
struct Scope<'a> {
    params: &'a BTreeMap<String, ParamSpec>,
    var: Option<String>,
}

impl Scope<'_> {
    fn text(&self, out: &mut Vec<String>, at: &str, s: &str, want: Want) {
        let t = match Text::parse(s) {
            Ok(t) => t,
            Err(e) => return out.push(format!("{at}: {e}")),
        };
        for r in t.refs() {
            if self.var.as_deref() == Some(r) {
                continue;
            }
            match self.params.get(r) {
                None => out.push(format!(
                    "{at}: unknown parameter {r:?}{}",
                    hint(r, self.params)
                )),
                Some(p) if p.kind == Some(Kind::List) => out.push(format!(
                    "{at}: parameter {r:?} is a list; a list can only be a forEach's items"
                )),
                Some(_) => {}
            }
        }
        if t.is_literal() {
            let bad = match want {
                Want::Text => false,
                Want::Int => s.trim().parse::<i64>().is_err(),
                Want::Duration => humantime::parse_duration(s.trim()).is_err(),
            };
            if bad {
                let what = if matches!(want, Want::Int) {
                    "an integer"
                } else {
                    "a duration such as 30s"
                };
                out.push(format!(
                    "{at}: {s:?} is not {what} (or a {{{{parameter}}}})"
                ));
            }
        }
    }
}
