//! `interlock template`: store, read, disable and enable workflow
//! templates (revisions are kept on the server; applying unchanged content
//! adds none).

use crate::Out;
use crate::fail::Fail;
use crate::output::{outln, print_json, rfc3339};
use crate::target::{Target, connect};
use interlock_proto::v1;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum TemplateCmd {
    /// Store template files (YAML or JSON) as their names' next revisions;
    /// a directory means every .yaml, .yml and .json file in it.
    Apply {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Every template at its latest revision.
    List,
    /// One template: parameters, state and text.
    Show {
        name: String,
        /// A revision other than the latest.
        #[arg(long)]
        revision: Option<u32>,
    },
    /// Every revision of a template, oldest first.
    Revisions { name: String },
    /// Refuse instantiation of a template until it is enabled again.
    Disable {
        name: String,
        /// Why (shown to whoever tries to run it).
        #[arg(long)]
        reason: String,
    },
    /// Allow instantiation of a disabled template again.
    Enable { name: String },
}

pub async fn run(cmd: TemplateCmd, t: &Target, json: bool) -> Out {
    let mut c = connect(t).await?.templates();
    match cmd {
        TemplateCmd::Apply { files } => {
            let mut out = Vec::new();
            for path in expand(&files)? {
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| Fail::Msg(2, format!("cannot read {}: {e}", path.display())))?;
                let r = c
                    .apply_template(v1::ApplyTemplateReq { text })
                    .await
                    .map_err(|s| {
                        Fail::Rpc(tonic::Status::new(
                            s.code(),
                            format!("{}: {}", path.display(), s.message()),
                        ))
                    })?
                    .into_inner();
                if !json {
                    let what = if r.created {
                        "stored as"
                    } else {
                        "unchanged at"
                    };
                    let off = if r.disabled { " (disabled)" } else { "" };
                    outln!("{}: {what} revision {}{off}", r.name, r.revision)?;
                }
                out.push(crate::output::json(&r));
            }
            if json {
                crate::output::print_value(&serde_json::Value::Array(out))?;
            }
        }
        TemplateCmd::List => {
            let r = c
                .list_templates(v1::ListTemplatesReq {})
                .await?
                .into_inner();
            if json {
                print_json(&r)?;
            } else if r.templates.is_empty() {
                outln!("no templates; store one with `interlock template apply FILE`")?;
            } else {
                outln!(
                    "{:<28} {:>4}  {:<10} {:<28} DESCRIPTION",
                    "NAME",
                    "REV",
                    "STATE",
                    "WORKFLOW"
                )?;
                for t in &r.templates {
                    let state = if t.disabled { "disabled" } else { "enabled" };
                    outln!(
                        "{:<28} {:>4}  {:<10} {:<28} {}",
                        t.name,
                        t.revision,
                        state,
                        t.workflow,
                        t.desc
                    )?;
                }
            }
        }
        TemplateCmd::Show { name, revision } => {
            let r = c
                .get_template(v1::GetTemplateReq {
                    name,
                    revision: revision.unwrap_or(0),
                })
                .await?
                .into_inner();
            if json {
                print_json(&r)?;
            } else {
                show(&r)?;
            }
        }
        TemplateCmd::Revisions { name } => {
            let r = c
                .template_revisions(v1::TemplateRevisionsReq { name })
                .await?
                .into_inner();
            if json {
                print_json(&r)?;
            } else {
                outln!("{:>4}  {:<28} {:<32} HASH", "REV", "CREATED", "BY")?;
                for t in &r.templates {
                    outln!(
                        "{:>4}  {:<28} {:<32} {}",
                        t.revision,
                        rfc3339(&t.created_at),
                        t.created_by,
                        &t.content_hash[..12.min(t.content_hash.len())]
                    )?;
                }
            }
        }
        TemplateCmd::Disable { name, reason } => {
            let r = c
                .set_template_disabled(v1::SetTemplateDisabledReq {
                    name,
                    disabled: true,
                    reason,
                })
                .await?
                .into_inner();
            done(&r, json)?;
        }
        TemplateCmd::Enable { name } => {
            let r = c
                .set_template_disabled(v1::SetTemplateDisabledReq {
                    name,
                    ..Default::default()
                })
                .await?
                .into_inner();
            done(&r, json)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn done(r: &v1::TemplateInfo, json: bool) -> Result<(), Fail> {
    if json {
        print_json(r)
    } else if r.disabled {
        outln!("{}: disabled ({})", r.name, r.disabled_reason)
    } else {
        outln!("{}: enabled", r.name)
    }
}

fn show(r: &v1::TemplateInfo) -> Result<(), Fail> {
    outln!("{} revision {} of {}", r.name, r.revision, r.latest)?;
    if !r.desc.is_empty() {
        outln!("  {}", r.desc)?;
    }
    outln!("workflow: {}", r.workflow)?;
    outln!("created {} by {}", rfc3339(&r.created_at), r.created_by)?;
    if r.disabled {
        outln!(
            "DISABLED by {} at {}: {}",
            r.disabled_by,
            rfc3339(&r.disabled_at),
            r.disabled_reason
        )?;
    }
    if !r.params.is_empty() {
        outln!("parameters:")?;
        for p in &r.params {
            let default = if p.has_default {
                format!(" = {}", p.default)
            } else {
                " (required)".into()
            };
            let rules = if p.rules.is_empty() {
                String::new()
            } else {
                format!(" [{}]", p.rules)
            };
            let desc = if p.desc.is_empty() {
                String::new()
            } else {
                format!("  {}", p.desc)
            };
            outln!("  {} {}{default}{rules}{desc}", p.name, p.r#type)?;
        }
    }
    outln!("---")?;
    crate::output::write(&r.text)
}

/// Files, with each directory replaced by its template files (sorted).
fn expand(paths: &[PathBuf]) -> Result<Vec<PathBuf>, Fail> {
    let mut out = Vec::new();
    for p in paths {
        if !p.is_dir() {
            out.push(p.clone());
            continue;
        }
        let mut found: Vec<PathBuf> = std::fs::read_dir(p)
            .map_err(|e| Fail::Msg(2, format!("cannot read {}: {e}", p.display())))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|f| is_template_file(f))
            .collect();
        if found.is_empty() {
            return Err(Fail::Msg(
                2,
                format!("{} holds no .yaml, .yml or .json file", p.display()),
            ));
        }
        found.sort();
        out.extend(found);
    }
    Ok(out)
}

fn is_template_file(p: &Path) -> bool {
    p.is_file()
        && matches!(
            p.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "json")
        )
}
