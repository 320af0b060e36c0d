//! The Templates service: storing template revisions and instantiating
//! them.
//!
//! Managing a template needs `template` (or `admin`) on its name; reading
//! one needs `read` or `template` on its name. Instantiating needs `submit`
//! on the workflow name the expansion produces (`read` for a dry run, as
//! Validate), decided after expansion, and the request then takes the one
//! Submit path: nothing a template produces skips a check.

use crate::audit::{Auditor, Caller};
use crate::auth::{Guard, identity};
use crate::convert::{self, ts};
use crate::error::engine_status;
use interlock_auth::{Action, Identity};
use interlock_engine::{Engine, Instantiate, TemplateView};
use interlock_proto::v1::{self, templates_server::Templates};
use interlock_templates::{Kind, ParamSpec};
use tonic::{Request, Response, Status};

pub struct TemplatesApi {
    engine: Engine,
    audit: Auditor,
    guard: Guard,
}

impl TemplatesApi {
    pub fn new(engine: Engine, audit: Auditor, guard: Guard) -> Self {
        Self {
            engine,
            audit,
            guard,
        }
    }

    /// Whether `who` may see the template `name`.
    fn readable(&self, who: &Identity, name: &str) -> Result<(), Status> {
        self.guard
            .check(who, Action::Template, name)
            .or_else(|_| self.guard.check(who, Action::Read, name))
    }
}

/// A parameter's rules, in words.
fn rules(p: &ParamSpec) -> String {
    let mut out = Vec::new();
    if let Some(pat) = &p.pattern {
        out.push(format!("matches {pat}"));
    }
    match (p.min, p.max) {
        (Some(lo), Some(hi)) => out.push(format!("{lo} to {hi}")),
        (Some(lo), None) => out.push(format!("at least {lo}")),
        (None, Some(hi)) => out.push(format!("at most {hi}")),
        (None, None) => {}
    }
    if !p.values.is_empty() {
        out.push(format!("one of {}", p.values.join(", ")));
    }
    if let Some(item) = &p.items {
        let kind = item.kind.map(Kind::as_str).unwrap_or("?");
        let inner = rules(item);
        out.push(if inner.is_empty() {
            format!("items: {kind}")
        } else {
            format!("items: {kind} ({inner})")
        });
    }
    out.join("; ")
}

fn info(v: TemplateView) -> v1::TemplateInfo {
    let doc = v.template.document();
    let d = v.disabled.as_ref();
    v1::TemplateInfo {
        name: doc.name.clone(),
        revision: v.revision,
        latest: v.latest,
        desc: doc.desc.clone(),
        text: v.template.to_yaml(),
        created_by: v.created_by.clone(),
        created_at: ts(Some(v.created_at)),
        disabled: d.is_some(),
        disabled_by: d.map(|d| d.by.clone()).unwrap_or_default(),
        disabled_reason: d.map(|d| d.reason.clone()).unwrap_or_default(),
        disabled_at: ts(d.map(|d| d.at)),
        params: doc
            .params
            .iter()
            .map(|(name, p)| v1::TemplateParam {
                name: name.clone(),
                r#type: p.kind.map(Kind::as_str).unwrap_or_default().into(),
                desc: p.desc.clone(),
                default: p.default.clone().unwrap_or_default(),
                has_default: p.default.is_some(),
                rules: rules(p),
            })
            .collect(),
        workflow: doc.workflow.name.clone(),
        content_hash: v.template.content_hash(),
    }
}

#[tonic::async_trait]
impl Templates for TemplatesApi {
    async fn apply_template(
        &self,
        r: Request<v1::ApplyTemplateReq>,
    ) -> Result<Response<v1::ApplyTemplateResp>, Status> {
        let who = Caller::of(&r);
        let text = r.into_inner().text;
        // Only a caller who may manage some template learns what is wrong
        // with a text.
        self.guard.check_any(&who.who, Action::Template)?;
        let parsed = self.engine.parse_template(&text).map_err(engine_status);
        let name = parsed
            .as_ref()
            .map(|t| t.name().to_string())
            .unwrap_or_default();
        let result = async {
            let t = parsed?;
            self.guard.check(&who.who, Action::Template, t.name())?;
            self.engine
                .store_template(&t, &who.identity)
                .await
                .map_err(engine_status)
        }
        .await;
        let detail = match &result {
            Ok(a) if a.created => format!("revision {}", a.revision),
            Ok(a) => format!("unchanged at revision {}", a.revision),
            Err(_) => String::new(),
        };
        self.audit
            .record(who.outcome("template.apply", &name, &detail, &result))
            .await;
        let a = result?;
        Ok(Response::new(v1::ApplyTemplateResp {
            name: a.name,
            revision: a.revision,
            created: a.created,
            disabled: a.disabled,
        }))
    }

    async fn get_template(
        &self,
        r: Request<v1::GetTemplateReq>,
    ) -> Result<Response<v1::TemplateInfo>, Status> {
        let who = identity(&r);
        let q = r.into_inner();
        self.readable(&who, &q.name)?;
        let rev = (q.revision > 0).then_some(q.revision);
        let v = self
            .engine
            .template(&q.name, rev)
            .await
            .map_err(engine_status)?;
        Ok(Response::new(info(v)))
    }

    async fn list_templates(
        &self,
        r: Request<v1::ListTemplatesReq>,
    ) -> Result<Response<v1::ListTemplatesResp>, Status> {
        let who = identity(&r);
        let all = self.engine.templates().await.map_err(engine_status)?;
        Ok(Response::new(v1::ListTemplatesResp {
            templates: all
                .into_iter()
                .filter(|t| self.readable(&who, t.template.name()).is_ok())
                .map(info)
                .collect(),
        }))
    }

    async fn template_revisions(
        &self,
        r: Request<v1::TemplateRevisionsReq>,
    ) -> Result<Response<v1::ListTemplatesResp>, Status> {
        let who = identity(&r);
        let name = r.into_inner().name;
        self.readable(&who, &name)?;
        let revs = self
            .engine
            .template_revisions(&name)
            .await
            .map_err(engine_status)?;
        Ok(Response::new(v1::ListTemplatesResp {
            templates: revs.into_iter().map(info).collect(),
        }))
    }

    async fn set_template_disabled(
        &self,
        r: Request<v1::SetTemplateDisabledReq>,
    ) -> Result<Response<v1::TemplateInfo>, Status> {
        let who = Caller::of(&r);
        let q = r.into_inner();
        let action = if q.disabled {
            "template.disable"
        } else {
            "template.enable"
        };
        let result = async {
            self.guard.check(&who.who, Action::Template, &q.name)?;
            if q.disabled && q.reason.trim().is_empty() {
                return Err(Status::invalid_argument(
                    "say why the template is disabled (reason): whoever tries to run it is told",
                ));
            }
            let d = q.disabled.then(|| (who.identity.clone(), q.reason.clone()));
            self.engine
                .set_template_disabled(&q.name, d)
                .await
                .map_err(engine_status)?;
            self.engine
                .template(&q.name, None)
                .await
                .map_err(engine_status)
        }
        .await;
        self.audit
            .record(who.outcome(action, &q.name, &q.reason, &result))
            .await;
        Ok(Response::new(info(result?)))
    }

    async fn instantiate(
        &self,
        r: Request<v1::InstantiateReq>,
    ) -> Result<Response<v1::InstantiateResp>, Status> {
        let who = Caller::of(&r);
        let q = r.into_inner();
        let dry = q.dry_run;
        let need = if dry { Action::Read } else { Action::Submit };
        let call = Instantiate {
            template: q.template.clone(),
            revision: (q.revision > 0).then_some(q.revision),
            params: q.params,
            labels: q.labels,
            request_id: q.request_id,
            trace_id: q.trace_id,
        };
        let result = async {
            // Strangers learn nothing about templates, not even that one
            // exists.
            self.guard.check_any(&who.who, need)?;
            let inst = self
                .engine
                .instantiate_dry(&call)
                .await
                .map_err(engine_status)?;
            self.guard.check(&who.who, need, &inst.req().name)?;
            let mut resp = v1::InstantiateResp {
                id: String::new(),
                template: inst.template.clone(),
                revision: inst.revision,
                request: Some(convert::work_req_to_wire(inst.req())),
                fanouts: inst
                    .expansion
                    .fanouts
                    .iter()
                    .map(|f| v1::FanOut {
                        template_block: f.template_block as u32,
                        source: f.source.clone(),
                        items: f.items as u32,
                        blocks: f.blocks as u32,
                    })
                    .collect(),
                values: inst.expansion.values.clone(),
                validation: None,
            };
            if dry {
                let report = self.engine.dry_run_instantiated(&inst).await;
                resp.validation = Some(crate::service::validate_resp(report));
            } else {
                let mut entry = who.entry("instantiate");
                entry.detail = format!("template {} revision {}", inst.template, inst.revision);
                resp.id = self
                    .engine
                    .submit_instantiated(&inst, Some(entry))
                    .await
                    .map_err(engine_status)?;
            }
            Ok(resp)
        }
        .await;
        // A successful instantiation's entry commits with the workflow.
        if result.is_err() && !dry {
            let detail = format!("template {}", call.template);
            self.audit
                .record(who.outcome("instantiate", &call.template, &detail, &result))
                .await;
        }
        result.map(Response::new)
    }
}
