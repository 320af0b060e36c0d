//! Templates: stored revisions, and instantiation into an ordinary request.
//!
//! A template's text is parsed and checked here before it is stored, so a
//! stored revision always parses. Instantiation expands a revision with the
//! caller's values and hands the result to the one Submit path, so an
//! instantiated request meets every check a hand-written one meets
//! (structure, arguments, policies, the e-stop, idempotency). The workflow
//! records where it came from in two labels only the server sets.

use super::Engine;
use crate::EngineError;
use crate::error::Result;
use interlock_core::{AuditEntry, Violation, WorkReq};
use interlock_store::{StoredTemplate, TemplateDisabled, TemplatePut, TemplateRevision};
use interlock_templates::{Expansion, Template};
use std::collections::BTreeMap;

/// Labels starting with this are set by the server (where a workflow came
/// from); a caller's request may not carry them.
pub const RESERVED_LABEL_PREFIX: &str = "interlock.";
/// The template a workflow was instantiated from.
pub const TEMPLATE_LABEL: &str = "interlock.template";
/// ... and its revision.
pub const TEMPLATE_REVISION_LABEL: &str = "interlock.templateRevision";

/// A stored revision, parsed.
#[derive(Debug, Clone)]
pub struct TemplateView {
    pub template: Template,
    pub revision: u32,
    /// The template's newest revision.
    pub latest: u32,
    pub created_by: String,
    pub created_at: interlock_core::Micros,
    pub disabled: Option<TemplateDisabled>,
}

/// What storing a template did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateApplied {
    pub name: String,
    pub revision: u32,
    /// False when the latest revision already had this content.
    pub created: bool,
    pub disabled: bool,
}

/// A call to instantiate a template.
#[derive(Debug, Clone, Default)]
pub struct Instantiate {
    pub template: String,
    /// The latest revision when `None`.
    pub revision: Option<u32>,
    pub params: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    pub request_id: String,
    pub trace_id: String,
}

/// A template made into a request (not yet submitted).
#[derive(Debug, Clone)]
pub struct Instantiated {
    pub template: String,
    pub revision: u32,
    pub expansion: Expansion,
}

impl Instantiated {
    pub fn req(&self) -> &WorkReq {
        &self.expansion.req
    }
}

/// Violations for labels a caller may not set.
pub(crate) fn reserved_labels<'a>(labels: impl IntoIterator<Item = &'a String>) -> Vec<Violation> {
    labels
        .into_iter()
        .filter(|k| k.starts_with(RESERVED_LABEL_PREFIX))
        .map(|k| {
            Violation::new(
                Violation::STRUCTURE,
                format!(
                    "label {:?}: labels starting with {RESERVED_LABEL_PREFIX:?} are set by the \
                     server to record where a workflow came from; use another key",
                    interlock_core::Escaped(k)
                ),
            )
        })
        .collect()
}

fn invalid(problems: Vec<String>) -> EngineError {
    EngineError::Invalid(
        problems
            .into_iter()
            .map(|m| Violation::new("template", m))
            .collect(),
    )
}

fn view(t: StoredTemplate) -> Result<TemplateView> {
    let doc = serde_json::from_str(&t.revision.body).map_err(|e| {
        EngineError::Store(interlock_store::StoreError::Backend(format!(
            "stored template {} revision {} does not parse: {e}",
            t.revision.name, t.revision.revision
        )))
    })?;
    let template = Template::from_document(doc).map_err(|e| {
        EngineError::Store(interlock_store::StoreError::Backend(format!(
            "stored template {} revision {} is invalid: {e}",
            t.revision.name, t.revision.revision
        )))
    })?;
    Ok(TemplateView {
        template,
        revision: t.revision.revision,
        latest: t.latest,
        created_by: t.revision.created_by,
        created_at: t.revision.created_at,
        disabled: t.disabled,
    })
}

impl Engine {
    /// Parses and checks a template text (every problem, as an invalid
    /// request); [`Engine::store_template`] stores it.
    pub fn parse_template(&self, text: &str) -> Result<Template> {
        Template::parse(text).map_err(|e| invalid(e.0))
    }

    /// Stores a parsed template as the next revision of its name.
    pub async fn store_template(&self, t: &Template, by: &str) -> Result<TemplateApplied> {
        let put = self
            .inner
            .store
            .put_template(TemplateRevision {
                name: t.name().to_string(),
                revision: 0,
                body: t.canonical().to_string(),
                content_hash: t.content_hash(),
                created_by: by.to_string(),
                created_at: self.now(),
            })
            .await?;
        let (revision, created) = match put {
            TemplatePut::Created(n) => (n, true),
            TemplatePut::Unchanged(n) => (n, false),
        };
        let disabled = self.template(t.name(), None).await?.disabled.is_some();
        if created {
            tracing::info!(template = %t.name(), revision, by = %interlock_core::Escaped(by),
                "template revision stored");
        }
        Ok(TemplateApplied {
            name: t.name().to_string(),
            revision,
            created,
            disabled,
        })
    }

    /// One revision of a template (the latest when `revision` is `None`).
    pub async fn template(&self, name: &str, revision: Option<u32>) -> Result<TemplateView> {
        match self.inner.store.template(name, revision).await? {
            Some(t) => view(t),
            None => Err(self.no_template(name, revision).await),
        }
    }

    async fn no_template(&self, name: &str, revision: Option<u32>) -> EngineError {
        let latest = match revision {
            Some(_) => self
                .inner
                .store
                .template(name, None)
                .await
                .ok()
                .flatten()
                .map(|t| t.latest),
            None => None,
        };
        let names = match latest {
            Some(_) => Vec::new(),
            None => self
                .inner
                .store
                .templates()
                .await
                .unwrap_or_default()
                .into_iter()
                .map(|t| t.revision.name)
                .collect(),
        };
        EngineError::NoTemplate {
            name: name.chars().take(128).collect(),
            revision,
            latest,
            hint: interlock_core::did_you_mean(name, names.iter().map(String::as_str))
                .map(str::to_string),
        }
    }

    /// Every template at its latest revision.
    pub async fn templates(&self) -> Result<Vec<TemplateView>> {
        self.inner
            .store
            .templates()
            .await?
            .into_iter()
            .map(view)
            .collect()
    }

    /// Every revision of a template, oldest first.
    pub async fn template_revisions(&self, name: &str) -> Result<Vec<TemplateView>> {
        let head = self.template(name, None).await?;
        self.inner
            .store
            .template_revisions(name)
            .await?
            .into_iter()
            .map(|revision| {
                view(StoredTemplate {
                    revision,
                    latest: head.latest,
                    disabled: head.disabled.clone(),
                })
            })
            .collect()
    }

    /// Disables a template (with a reason) or enables it (`None`).
    pub async fn set_template_disabled(
        &self,
        name: &str,
        disabled: Option<(String, String)>,
    ) -> Result<()> {
        let d = disabled.map(|(by, reason)| TemplateDisabled {
            by,
            reason,
            at: self.now(),
        });
        if self.inner.store.set_template_disabled(name, d).await? {
            Ok(())
        } else {
            Err(self.no_template(name, None).await)
        }
    }

    /// Expands a template with the caller's values into a request, without
    /// storing anything. Refuses a disabled template, unknown or bad
    /// values (every one, each naming the parameter and the rule), an
    /// empty fan-out and reserved labels.
    pub async fn instantiate_dry(&self, call: &Instantiate) -> Result<Instantiated> {
        let v = self.template(&call.template, call.revision).await?;
        if let Some(d) = &v.disabled {
            return Err(EngineError::WrongState(format!(
                "template {:?} was disabled by {} ({}); enable it before instantiating it",
                call.template,
                d.by,
                if d.reason.is_empty() {
                    "no reason given"
                } else {
                    &d.reason
                }
            )));
        }
        let reserved = reserved_labels(call.labels.keys());
        if !reserved.is_empty() {
            return Err(EngineError::Invalid(reserved));
        }
        let inventory = self.inner.opts.inventory.clone();
        let mut expansion = v
            .template
            .expand(&call.params, inventory.as_ref())
            .map_err(invalid)?;
        let req = &mut expansion.req;
        // A template's labels are part of what was reviewed (a ticket
        // checked against its pattern): the caller adds labels, never
        // replaces one.
        let clashes: Vec<Violation> = call
            .labels
            .keys()
            .filter(|k| req.labels.contains_key(*k))
            .map(|k| {
                Violation::new(
                    "template",
                    format!(
                        "label {:?} is set by template {:?}; give its value through the \
                         template's parameters, or use another key",
                        interlock_core::Escaped(k),
                        call.template
                    ),
                )
            })
            .collect();
        if !clashes.is_empty() {
            return Err(EngineError::Invalid(clashes));
        }
        req.labels.extend(call.labels.clone());
        req.labels
            .insert(TEMPLATE_LABEL.into(), call.template.clone());
        req.labels
            .insert(TEMPLATE_REVISION_LABEL.into(), v.revision.to_string());
        req.request_id = call.request_id.clone();
        req.trace_id = call.trace_id.clone();
        Ok(Instantiated {
            template: call.template.clone(),
            revision: v.revision,
            expansion,
        })
    }

    /// Submits an expansion through the one Submit path; `audit` commits
    /// with it.
    pub async fn submit_instantiated(
        &self,
        inst: &Instantiated,
        audit: Option<AuditEntry>,
    ) -> Result<String> {
        self.submit_record(inst.req().clone(), audit, true, None)
            .await
    }

    /// The dry-run report of an expansion (every check Submit would make).
    pub async fn dry_run_instantiated(&self, inst: &Instantiated) -> super::DryRun {
        self.dry_run_as(inst.req(), true).await
    }
}
